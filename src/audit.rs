//! The audit trail: one record per decision and per fetch, on stderr, quiet unless asked
//! (`-v`). Text for people, JSON lines (`--log-format json`) for journald and log shippers.
//! A record names the principal, the secret, the decision, the store and the outcome; the
//! backend path only at `-vv`; never a value.

use std::io::Write;

use serde_json::json;

use crate::error::FailureKind;
use crate::identity::Principal;
use crate::resolve::{Authorized, Judged};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where audit records go, and how much of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audit {
    /// 0: nothing; 1: decisions and outcomes; 2: also backend paths.
    pub verbosity: u8,
    pub format: LogFormat,
}

/// The word for a failure, as records and JSON output spell it.
pub fn failure_word(kind: &FailureKind) -> &'static str {
    match kind {
        FailureKind::Undefined { .. } => "undefined",
        FailureKind::Unusable(_) => "unusable",
        FailureKind::Denied { .. } => "denied",
        FailureKind::NotFound { .. } => "not_found",
        FailureKind::Unavailable { .. } => "failed",
        FailureKind::TimedOut { .. } => "timed_out",
        FailureKind::ServiceDenied { .. } => "denied_by_store",
        FailureKind::Misconfigured { .. } => "misconfigured",
    }
}

impl Audit {
    pub fn quiet() -> Audit {
        Audit::default()
    }

    /// One record per judged name.
    pub fn decisions(&self, principal: &Principal, judged: &[Judged]) {
        for (name, result) in judged {
            let (decision, store, reason) = match result {
                Ok(authorized) => ("allowed", Some(authorized.location.store.as_str()), None),
                Err(kind) => (failure_word(kind), None, Some(kind)),
            };
            let path = result.as_ref().ok().map(|a| a.location.backend_path.as_str());
            self.emit(
                json!({
                    "event": "decision",
                    "principal": principal.name.as_str(),
                    "secret": name.as_str(),
                    "decision": decision,
                    "store": store,
                    "reason": reason.map(ToString::to_string),
                }),
                path,
            );
        }
    }

    /// One record per fetch: `ok`, `skipped` (optional and missing) or the failure.
    pub fn fetched(
        &self,
        principal: &Principal,
        request: &Authorized,
        outcome: Result<(), &FailureKind>,
        skipped: bool,
    ) {
        let word = match outcome {
            Ok(()) => "ok",
            Err(_) if skipped => "skipped",
            Err(kind) => failure_word(kind),
        };
        self.emit(
            json!({
                "event": "fetch",
                "principal": principal.name.as_str(),
                "secret": request.location.secret.as_str(),
                "store": request.location.store.as_str(),
                "outcome": word,
                "reason": outcome.err().map(ToString::to_string),
            }),
            Some(&request.location.backend_path),
        );
    }

    fn emit(&self, mut record: serde_json::Value, path: Option<&str>) {
        if self.verbosity == 0 {
            return;
        }
        if self.verbosity >= 2
            && let Some(path) = path
        {
            record["path"] = json!(path);
        }
        let line = match self.format {
            LogFormat::Json => record.to_string(),
            LogFormat::Text => text_line(&record),
        };
        // One write per record, so concurrent writers cannot interleave inside a line.
        let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
    }
}

/// `mxm-secrets: audit: decision secret=x principal=y decision=allowed store=red`.
fn text_line(record: &serde_json::Value) -> String {
    let mut line = String::from("mxm-secrets: audit:");
    if let Some(fields) = record.as_object() {
        for (key, value) in fields {
            match value {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) if key == "event" => line.push_str(&format!(" {s}")),
                serde_json::Value::String(s) if s.contains(' ') => line.push_str(&format!(" {key}={s:?}")),
                serde_json::Value::String(s) => line.push_str(&format!(" {key}={s}")),
                other => line.push_str(&format!(" {key}={other}")),
            }
        }
    }
    line
}
