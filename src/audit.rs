//! The audit trail: one record per decision and per fetch, quiet unless asked (`-v`). Text
//! for people, JSON lines (`--log-format json`) for log shippers; on stderr, or straight to
//! syslog or journald (`--audit-log`) so that systemd and cron need no redirection.
//!
//! Every record is schema `mxm-secrets/audit/1` (README, "Audit records"): when (RFC 3339
//! UTC), where (host, pid), what was launched (argv[0] only: arguments can hold anything),
//! who declared itself (the identity flags), then the principal, the secret, the decision
//! or fetch outcome and the store; the backend path only at `-vv`; never a value.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::error::FailureKind;
use crate::identity::{Caller, Principal, RuntimeIdentity};
use crate::resolve::{Authorized, Judged};

/// The `schema` of every record; fields are only ever added to it.
pub const SCHEMA: &str = "mxm-secrets/audit/1";
/// Where syslog listens.
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// journald's native protocol socket.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";
/// syslog facility `authpriv` (10): records about who was given which secret.
const FACILITY_AUTHPRIV: u8 = 10;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where records go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sink {
    #[default]
    Stderr,
    /// syslog(3)'s datagrams to a syslog socket (normally [`SYSLOG_SOCKET`]).
    Syslog(PathBuf),
    /// journald's native protocol to its socket (normally [`JOURNALD_SOCKET`]).
    Journald(PathBuf),
}

impl Sink {
    /// journald when this process's stderr is the journal (`$JOURNAL_STREAM`, set by systemd)
    /// and its socket is there; else stderr.
    pub fn auto(journald_socket: &Path) -> Sink {
        if std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty()) && journald_socket.exists() {
            Sink::Journald(journald_socket.to_owned())
        } else {
            Sink::Stderr
        }
    }
}

/// Who is asking and for which program: the same in every record of one launch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub identity: Option<RuntimeIdentity>,
    /// The program being launched: argv[0] only, never its arguments.
    pub program: Option<String>,
    /// Who asked, as the kernel says (uid and gid go into every record).
    pub caller: Option<Caller>,
    /// The process that asked a broker (its pid and executable go into `caller`).
    pub process: Option<Process>,
}

/// The process at the other end of a broker's connection, as the kernel says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// `/proc/PID/exe`, when it could be read.
    pub exe: Option<String>,
}

/// Where audit records go, and how much of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// 0: nothing; 1: decisions and outcomes; 2: also backend paths.
    pub verbosity: u8,
    pub format: LogFormat,
    pub sink: Sink,
    pub context: Context,
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
        FailureKind::Throttled { .. } => "throttled",
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

    /// One record per secret whose value a re-fetch found changed, before the program is
    /// restarted: the name, never the value.
    pub fn rotated(&self, changed: &[String]) {
        for name in changed {
            self.emit(json!({ "event": "rotate", "secret": name, "action": "restart" }), None);
        }
    }

    /// One record per systemd credential request (`--credentials-socket`), beside the
    /// pipeline's own decision and fetch records: the peer's pid, the unit and secret its
    /// address names, and the answer: `ok` (the value was written), `refused` (the over-limit
    /// answer systemd fails the unit on) or `closed` (nothing: the peer is not root).
    pub(crate) fn credential(
        &self,
        peer_pid: i32,
        unit: Option<&str>,
        secret: Option<&str>,
        outcome: &str,
        reason: Option<&str>,
    ) {
        self.emit(
            json!({
                "event": "credential",
                "unit": unit,
                "secret": secret,
                "outcome": outcome,
                "reason": reason,
                "peer_pid": peer_pid,
            }),
            None,
        );
    }

    /// The same audit for records about `identity` (and the program, when one is launched).
    pub fn about(self, identity: &RuntimeIdentity, program: Option<&std::ffi::OsStr>) -> Audit {
        let program = program.map(|p| p.to_string_lossy().into_owned());
        Audit { context: Context { identity: Some(identity.clone()), program, ..self.context }, ..self }
    }

    /// The same audit for records about a request from `caller`.
    pub fn caller(self, caller: &Caller) -> Audit {
        Audit { context: Context { caller: Some(caller.clone()), ..self.context }, ..self }
    }

    /// The same audit for records about a request from `process` (a broker's peer).
    pub fn process(self, process: Process) -> Audit {
        Audit { context: Context { process: Some(process), ..self.context }, ..self }
    }

    fn emit(&self, record: serde_json::Value, path: Option<&str>) {
        if self.verbosity == 0 {
            return;
        }
        // The record's own fields first (text lines read best that way), then the context.
        let mut full = json!({ "schema": SCHEMA });
        if let serde_json::Value::Object(fields) = record {
            for (key, value) in fields {
                full[key] = value;
            }
        }
        let identity = self.context.identity.as_ref();
        let field = |f: fn(&RuntimeIdentity) -> Option<&str>| identity.and_then(f);
        full["time"] = json!(rfc3339(SystemTime::now()));
        full["host"] = json!(host());
        full["pid"] = json!(std::process::id());
        full["program"] = json!(self.context.program);
        full["identity"] = json!({
            "role": field(|i| i.declared_role().map(crate::name::Name::as_str)),
            "environment": field(|i| i.environment.as_deref()),
            "machine": field(|i| i.machine.as_deref()),
            "app": field(|i| i.app.as_deref()),
            "substrate": field(|i| i.substrate.as_deref()),
        });
        if let Some(caller) = &self.context.caller {
            full["caller"] = json!({"uid": caller.uid, "gid": caller.gid});
        }
        if let Some(process) = &self.context.process {
            // Named apart from the record's own `pid` (the broker's), which text lines flatten beside it.
            full["caller"]["caller_pid"] = json!(process.pid);
            full["caller"]["caller_exe"] = json!(process.exe);
        }
        if self.verbosity >= 2
            && let Some(path) = path
        {
            full["path"] = json!(path);
        }
        // The unit, when the caller has one: what `units` and `unit:` rules were judged on.
        if let Some(unit) = self.context.caller.as_ref().and_then(|c| c.unit.as_deref()) {
            full["caller"]["unit"] = json!(unit);
        }
        let line = match self.format {
            LogFormat::Json => full.to_string(),
            LogFormat::Text => text_line(&full),
        };
        let sent = match &self.sink {
            Sink::Stderr => Err(None),
            Sink::Syslog(socket) => send(socket, syslog_datagram(&full, &line).as_bytes()),
            Sink::Journald(socket) => send(socket, &journald_datagram(&full, &line)),
        };
        if let Err(why) = sent {
            // JSON lines stay bare JSON, one object per line; text says whose it is.
            let mut text = match self.format {
                LogFormat::Json => format!("{line}\n"),
                LogFormat::Text => format!("mxm-secrets: {line}\n"),
            };
            // The note is said once per run: every record after it goes the same way.
            if let Some(why) = why
                && !LOG_UNREACHABLE_NOTED.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                text =
                    format!("mxm-secrets: audit: cannot send to the log ({why}); on stderr instead\n{text}");
            }
            // One write per record, so concurrent writers cannot interleave inside a line.
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }
}

/// Whether this run has said that its log could not be reached.
static LOG_UNREACHABLE_NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One datagram, or why not, in the system's words (not Rust's "(os error N)").
fn send(socket: &Path, datagram: &[u8]) -> Result<(), Option<String>> {
    let words = |e: std::io::Error| match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
    };
    let sender = UnixDatagram::unbound().map_err(|e| Some(words(e)))?;
    sender
        .send_to(datagram, socket)
        .map(drop)
        .map_err(|e| Some(format!("{}: {}", socket.display(), words(e))))
}

/// A refusal or failure is a warning; the rest is information.
fn severity(record: &serde_json::Value) -> u8 {
    let word = record.get("decision").or_else(|| record.get("outcome")).and_then(|w| w.as_str());
    if matches!(word, Some("allowed" | "ok" | "skipped") | None) { 6 } else { 4 }
}

/// What glibc's syslog(3) sends to the local socket (RFC 3164 without the host name):
/// `<PRI>Mmm dd hh:mm:ss mxm-secrets[PID]: MSG`, facility authpriv. Not RFC 5424: journald,
/// which serves `/dev/log` on most systems, parses only this form (systemd issue 19251).
/// The header's time is UTC (rsyslog and journald stamp local records on receipt anyway);
/// the record's own `time` is the exact one.
fn syslog_datagram(record: &serde_json::Value, line: &str) -> String {
    let time = record.get("time").and_then(|t| t.as_str()).unwrap_or("");
    format!(
        "<{}>{} mxm-secrets[{}]: {line}",
        FACILITY_AUTHPRIV * 8 + severity(record),
        rfc3164_time(time),
        std::process::id()
    )
}

/// `2026-11-02T04:27:00.123Z` as `Nov  2 04:27:00`.
fn rfc3164_time(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month: usize = rfc3339.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let day: u32 = rfc3339.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    let clock = rfc3339.get(11..19).unwrap_or("00:00:00");
    format!("{} {day:>2} {clock}", MONTHS[month.clamp(1, 12) - 1])
}

/// journald's native protocol: `KEY=value` lines; a value holding a newline is sent as
/// `KEY`, newline, its length as 64-bit little-endian, the value, newline. Every record
/// field becomes `MXM_<FIELD>` (`MXM_SECRET`, `MXM_ROLE`, ...), so `journalctl
/// MXM_SECRET=databento_api_key` finds them.
fn journald_datagram(record: &serde_json::Value, line: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut field = |key: &str, value: &str| {
        if value.contains('\n') {
            out.extend_from_slice(key.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        } else {
            out.extend_from_slice(format!("{key}={value}\n").as_bytes());
        }
    };
    field("MESSAGE", line);
    field("PRIORITY", &severity(record).to_string());
    field("SYSLOG_IDENTIFIER", "mxm-secrets");
    field("SYSLOG_FACILITY", &FACILITY_AUTHPRIV.to_string());
    for (key, value) in flat_fields(record) {
        field(&format!("MXM_{}", key.to_ascii_uppercase()), &value);
    }
    out
}

/// A record's fields, `identity` spread into its parts, nulls left out.
fn flat_fields(record: &serde_json::Value) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let Some(object) = record.as_object() else { return fields };
    for (key, value) in object {
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::Object(inner) => {
                for (key, value) in inner {
                    match value {
                        serde_json::Value::Null => {}
                        serde_json::Value::String(s) => fields.push((key.clone(), s.clone())),
                        other => fields.push((key.clone(), other.to_string())),
                    }
                }
            }
            serde_json::Value::String(s) => fields.push((key.clone(), s.clone())),
            other => fields.push((key.clone(), other.to_string())),
        }
    }
    fields
}

/// `audit: decision secret=x principal=y decision=allowed store=red ...`.
fn text_line(record: &serde_json::Value) -> String {
    let mut line = String::from("audit:");
    if let Some(event) = record.get("event").and_then(|e| e.as_str()) {
        line.push_str(&format!(" {event}"));
    }
    for (key, value) in flat_fields(record) {
        if key == "event" || key == "schema" {
            continue;
        }
        if value.contains(|c: char| c.is_whitespace() || c == '"') {
            line.push_str(&format!(" {key}={value:?}"));
        } else {
            line.push_str(&format!(" {key}={value}"));
        }
    }
    line
}

/// The host's name as uname(2) gives it (the UTS namespace's), without a libc call; read
/// once per process, since a broker writes two records per secret of every request (a host
/// renamed while a broker runs is named anew when it restarts).
fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "-".to_owned())
    })
}

/// `2026-11-29T04:27:00.123Z`: RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_250)), "2000-02-29T00:00:00.250Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_926_896)), "2026-11-29T04:34:56.000Z");
    }

    #[test]
    fn syslog_times() {
        assert_eq!(rfc3164_time("2026-11-02T04:27:00.123Z"), "Nov  2 04:27:00");
        assert_eq!(rfc3164_time("2026-01-31T23:59:59.000Z"), "Jan 31 23:59:59");
    }

    #[test]
    fn a_value_with_a_newline_is_sent_with_its_length() {
        let datagram = journald_datagram(&json!({"event": "fetch", "reason": "a\nb"}), "m");
        let expected = [b"MXM_REASON\n".as_slice(), &3u64.to_le_bytes(), b"a\nb\n"].concat();
        assert!(datagram.windows(expected.len()).any(|w| w == expected.as_slice()));
    }
}
