//! Stores and the backends behind them. A backend knows how to address and fetch a value in
//! one kind of store, and nothing of names, policies or identities: it is only ever handed a
//! location that was already authorized.
//!
//! Adding a backend: a file here with its options struct and `impl Backend`, a variant of
//! [`BackendConfig`], and its keys in `RawStore`.

pub mod command;
pub mod env;
pub mod file;
pub mod gopass;
pub mod pass;
pub mod process;
pub mod vault;

use std::time::Duration;

use serde::Deserialize;

use crate::name::{check_store_path, checked_string};
use crate::secret::SecretValue;
use crate::value::Field;

/// Text from outside the launcher (a backend's stderr, a secret service's error list, the
/// keys of a secret it returned), made safe for a terminal and a log line: control
/// characters other than newline and tab are written as escapes, so that such text cannot
/// clear or retitle the terminal it lands on, nor hide what came before it with a carriage
/// return.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `ROOT/PATH`, however many slashes the root ends with (the reference's join).
pub(crate) fn join(root: &str, path: &str) -> String {
    format!("{}/{path}", root.trim_end_matches('/'))
}

/// `$VAR` or `$VAR/rest` at the start of a directory root names a variable, read when a
/// secret is fetched (systemd sets `$CREDENTIALS_DIRECTORY` only for the service it starts).
pub(crate) fn expand_root(location: &str) -> Result<std::path::PathBuf, FetchError> {
    let Some(reference) = location.strip_prefix('$') else {
        return Ok(location.into());
    };
    let (variable, rest) = reference.split_once('/').map_or((reference, None), |(v, r)| (v, Some(r)));
    let value = std::env::var_os(variable).filter(|v| !v.is_empty()).ok_or_else(|| {
        FetchError::Failed(format!(
            "the store's root names ${variable}, which is not set (systemd sets \
             $CREDENTIALS_DIRECTORY for units with LoadCredential=)"
        ))
    })?;
    let mut path = std::path::PathBuf::from(value);
    if let Some(rest) = rest {
        path.push(rest);
    }
    Ok(path)
}

/// A directory root: absolute, or `$VAR` optionally followed by `/more`; no `.` or `..`.
fn check_directory_root(root: &str) -> Result<(), String> {
    let rest = if let Some(reference) = root.strip_prefix('$') {
        let (variable, rest) = reference.split_once('/').unwrap_or((reference, ""));
        if !crate::name::is_env_var_name(variable) {
            return Err(format!("root `{root}`: `${variable}` is not a variable name"));
        }
        rest
    } else if let Some(rest) = root.strip_prefix('/') {
        rest
    } else {
        return Err(format!("root `{root}` must be an absolute directory or start with `$VARIABLE`"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        Ok(())
    } else {
        check_store_path("root", rest).map_err(|e| format!("{e} (in `{root}`)"))
    }
}

/// What every backend does.
pub trait Backend: Send + Sync {
    /// Where a ref's `path` lives, given the store's `root`. Called for every ref when the
    /// config loads, so a path a backend cannot address is a config error, not a late surprise.
    fn locate(&self, root: &str, path: &str) -> Result<String, String>;

    /// The value at `request.location`, within `request.timeout`.
    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError>;

    /// Whether this backend picks a ref's `field` itself (a key of a structured secret). For
    /// every other backend `field` picks a part of the text, the same way for all of them.
    fn picks_fields(&self) -> bool {
        false
    }
}

/// One fetch: where, what part (for backends that [pick fields](Backend::picks_fields)),
/// which version (for backends that keep versions), how long it may take, and the
/// environment of any program it runs.
#[derive(Debug, Clone, Copy)]
pub struct FetchRequest<'a> {
    pub location: &'a str,
    pub field: Option<&'a Field>,
    pub version: Option<u64>,
    pub timeout: Duration,
    pub environment: &'a process::Environment,
}

/// How a fetch fails. Messages come from the backend's stderr or our own words, never from
/// its stdout (which may hold the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    NotFound(String),
    Failed(String),
    TimedOut,
    /// The store's own access control refused (Vault's 403), as opposed to our policy.
    Denied(String),
    /// The store is set up so that no fetch can work (no token, an ambiguous secret).
    Misconfigured(String),
}

/// The failure of a program that exited non-zero, with its own message.
pub(crate) fn program_failed(program: &str, finished: &process::Finished) -> FetchError {
    let status = match finished.status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    };
    let message = match finished.stderr.as_str() {
        "" => String::new(),
        stderr => format!(": {stderr}"),
    };
    FetchError::Failed(format!("`{program}` {status}{message}"))
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT_SECONDS: f64 = 3600.0;

/// A configured store: a backend with its options, a root, and a timeout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawStore")]
pub struct SecretStore {
    pub root: String,
    pub timeout: Duration,
    pub backend: BackendConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    Gopass(gopass::Gopass),
    Pass(pass::Pass),
    Env(env::Env),
    File(file::Files),
    Command(command::Provider),
    /// Boxed: its connection pool and session make it much larger than the others.
    Vault(Box<vault::Vault>),
}

impl BackendConfig {
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::Gopass(_) => "gopass",
            BackendConfig::Pass(_) => "pass",
            BackendConfig::Env(_) => "env",
            BackendConfig::File(_) => "file",
            BackendConfig::Command(_) => "command",
            BackendConfig::Vault(_) => "vault",
        }
    }

    pub fn as_backend(&self) -> &dyn Backend {
        match self {
            BackendConfig::Gopass(b) => b,
            BackendConfig::Pass(b) => b,
            BackendConfig::Env(b) => b,
            BackendConfig::File(b) => b,
            BackendConfig::Command(b) => b,
            BackendConfig::Vault(b) => b.as_ref(),
        }
    }
}

/// The `backend:` word; an unknown one is refused with the known ones listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackendKind {
    Gopass,
    Pass,
    Env,
    File,
    Command,
    Vault,
}

impl SecretStore {
    pub fn locate(&self, path: &str) -> Result<String, String> {
        self.backend.as_backend().locate(&self.root, path)
    }

    pub fn fetch(
        &self,
        location: &str,
        field: Option<&Field>,
        version: Option<u64>,
        environment: &process::Environment,
    ) -> Result<SecretValue, FetchError> {
        let request = FetchRequest { location, field, version, timeout: self.timeout, environment };
        self.backend.as_backend().fetch(&request)
    }

    /// Whether refs may pin a `version`.
    pub fn keeps_versions(&self) -> bool {
        matches!(self.backend, BackendConfig::Vault(_))
    }

    /// Launcher variables the store reads credentials from, which the program must not see.
    pub fn credential_variables(&self) -> &'static [&'static str] {
        match &self.backend {
            BackendConfig::Vault(v) if v.token_from_environment() => &["VAULT_TOKEN", "BAO_TOKEN"],
            _ => &[],
        }
    }

    /// The launcher variable a location reads, for backends that read one.
    pub fn source_variable<'a>(&self, location: &'a str) -> Option<&'a str> {
        matches!(self.backend, BackendConfig::Env(_)).then_some(location)
    }
}

/// Every key any backend takes; [`SecretStore::try_from`] refuses the ones that are not
/// its backend's, so unknown keys are errors at load time either way. Each field checks
/// itself, so its errors point at its own line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    backend: BackendKind,
    root: Root,
    #[serde(default, deserialize_with = "crate::name::given")]
    timeout: Option<Timeout>,
    #[serde(default, deserialize_with = "crate::name::given")]
    binary: Option<Program>,
    #[serde(default, deserialize_with = "crate::name::given")]
    gpg: Option<Program>,
    #[serde(default, deserialize_with = "crate::name::given")]
    command: Option<Vec<Program>>,
    #[serde(default, deserialize_with = "crate::name::given")]
    address: Option<Program>,
    #[serde(default, deserialize_with = "crate::name::given")]
    token_file: Option<Program>,
    #[serde(default, deserialize_with = "crate::name::given")]
    role_id: Option<Program>,
    #[serde(default, deserialize_with = "crate::name::given")]
    secret_id_file: Option<Program>,
    #[serde(default, deserialize_with = "crate::name::given")]
    ca_cert: Option<Program>,
    #[serde(default, deserialize_with = "crate::name::given")]
    namespace: Option<Program>,
    #[serde(default, deserialize_with = "crate::name::given")]
    insecure_http: Option<bool>,
}

impl TryFrom<RawStore> for SecretStore {
    type Error = String;

    fn try_from(raw: RawStore) -> Result<Self, String> {
        let given = [
            ("binary", raw.binary.is_some()),
            ("gpg", raw.gpg.is_some()),
            ("command", raw.command.is_some()),
        ];
        let (backend, options): (BackendConfig, &[&str]) = match raw.backend {
            BackendKind::Gopass => (
                BackendConfig::Gopass(gopass::Gopass {
                    binary: raw.binary.map_or_else(|| "gopass".to_owned(), |p| p.0),
                }),
                &["binary"],
            ),
            BackendKind::Pass => (
                BackendConfig::Pass(pass::Pass { gpg: raw.gpg.map_or_else(|| "gpg".to_owned(), |p| p.0) }),
                &["gpg"],
            ),
            BackendKind::Env => (BackendConfig::Env(env::Env), &[]),
            BackendKind::File => (BackendConfig::File(file::Files { root: raw.root.0.clone() }), &[]),
            BackendKind::Command => {
                let command: Vec<String> = raw.command.unwrap_or_default().into_iter().map(|p| p.0).collect();
                if command.is_empty() {
                    return Err("backend `command` needs `command`: the program and its fixed arguments, \
                                e.g. `command: [summon-vault]`"
                        .to_owned());
                }
                (BackendConfig::Command(command::Provider { command }), &["command"])
            }
            BackendKind::Vault => {
                let text = |p: Option<Program>| p.map(|p| p.0);
                let auth = match (
                    text(raw.token_file.clone()),
                    text(raw.role_id.clone()),
                    text(raw.secret_id_file.clone()),
                ) {
                    (file, None, None) => vault::Auth::Token { file },
                    (None, Some(role_id), Some(secret_id_file)) => {
                        vault::Auth::AppRole { role_id, secret_id_file }
                    }
                    (Some(_), Some(_), _) => {
                        return Err("give `token_file` or `role_id`, not both".to_owned());
                    }
                    (_, Some(_), None) | (_, None, Some(_)) => {
                        return Err("AppRole needs both `role_id` and `secret_id_file`".to_owned());
                    }
                };
                let vault = vault::Vault::new(
                    text(raw.address.clone()),
                    auth,
                    text(raw.ca_cert.clone()),
                    text(raw.namespace.clone()),
                    raw.insecure_http.unwrap_or(false),
                )?;
                (
                    BackendConfig::Vault(Box::new(vault)),
                    &[
                        "address",
                        "token_file",
                        "role_id",
                        "secret_id_file",
                        "ca_cert",
                        "namespace",
                        "insecure_http",
                    ],
                )
            }
        };
        if let Some((key, _)) = given.iter().find(|(key, set)| *set && !options.contains(key)) {
            return Err(format!(
                "`{key}` is not an option of backend `{}` (its options: {})",
                backend.name(),
                if options.is_empty() { "none".to_owned() } else { options.join(", ") }
            ));
        }
        check_root(&backend, &raw.root.0)?;
        Ok(SecretStore { root: raw.root.0, timeout: raw.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0), backend })
    }
}

checked_string!(
    /// A store's root: what it means is the backend's business, but it is never empty, never
    /// padded, and never holds control characters.
    Root, "root", |what, value| {
        if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
            return Err(format!("{what} `{}` must be non-empty text without surrounding white space or control characters", value.escape_debug()));
        }
        Ok(())
    }
);
checked_string!(
    /// A program to run: a path or a name on PATH.
    Program, "program", |what, value| {
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            return Err(format!("{what} `{}` must name a program", value.escape_debug()));
        }
        Ok(())
    }
);

/// Seconds, more than 0 and at most an hour.
struct Timeout(Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_TIMEOUT_SECONDS {
            Ok(Timeout(Duration::from_secs_f64(seconds)))
        } else {
            Err(serde::de::Error::custom(format!(
                "timeout {seconds} is out of range: give seconds, more than 0 and at most {MAX_TIMEOUT_SECONDS}"
            )))
        }
    }
}

fn check_root(backend: &BackendConfig, root: &str) -> Result<(), String> {
    match backend {
        BackendConfig::Gopass(_) | BackendConfig::Command(_) => {
            check_store_path("root", root.trim_end_matches('/'))
        }
        BackendConfig::Vault(_) => {
            check_store_path("root", root.trim_end_matches('/'))?;
            vault::check_url_safe("root", root)
        }
        BackendConfig::Pass(_) | BackendConfig::File(_) => check_directory_root(root),
        // A root alone must already make a valid variable prefix.
        BackendConfig::Env(_) => {
            backend.as_backend().locate(root, "x").map(drop).map_err(|e| format!("root: {e}"))
        }
    }
}
