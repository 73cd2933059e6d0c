//! The library's error: every sentence a user reads, and the exit code that goes with it
//! (docs/design.md, sysexits so systemd can be told what not to restart). Identity,
//! config and manifest say theirs in their own types, converted with `From`; this module
//! depends on them, none of them on it.

use std::fmt;
use std::io;
use std::time::Duration;

pub use crate::config::ConfigError;
pub use crate::identity::IdentityError;
pub use crate::manifest::ManifestError;
use crate::name::Name;
pub use crate::origin::Origin;
use crate::policy::DenyReason;

pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOINPUT: u8 = 66;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_OSERR: u8 = 71;
pub const EX_IOERR: u8 = 74;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_NOPERM: u8 = 77;
pub const EX_CONFIG: u8 = 78;
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
pub const EXIT_NOT_FOUND: u8 = 127;

#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A bad command line (64).
    Usage(String),
    /// An identity that cannot be a principal, e.g. `--role Admin` (64).
    Identity(IdentityError),
    /// No config file found, or one that cannot be read, is unsafe, or is invalid (78).
    Config(ConfigError),
    /// A manifest or `--secret` that cannot be read or is invalid (65).
    Manifest(ManifestError),
    /// One or more requested secrets failed; nothing was started.
    Secrets(Vec<SecretFailure>),
    /// A system call the launcher needs failed: hardening itself, making descriptors (71).
    System(String),
    /// The program could not be started (126, or 127 when it was not found).
    Exec { program: String, source: io::Error },
    /// A value could not be written to stdout (`get`) (74).
    Output(io::Error),
    /// Through a broker: its answer (its exit code and sentence, passed on as they are), or
    /// that it cannot be reached (69, naming the socket).
    Broker { exit_code: u8, message: String },
}

/// One secret that cannot be handed over, and why.
#[derive(Debug)]
pub struct SecretFailure {
    pub name: String,
    pub kind: FailureKind,
}

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FailureKind {
    /// The config defines no such secret (65).
    Undefined { hint: String },
    /// The value cannot go where the manifest puts it (65).
    Unusable(String),
    /// The policy does not allow this principal (77).
    Denied { principal: Name, policy: Name, reason: DenyReason },
    /// The store has no such entry (66).
    NotFound { store: Name, detail: String },
    /// The backend failed or could not be run (69).
    Unavailable { store: Name, detail: String },
    /// The backend did not answer in time; its processes were killed (75).
    TimedOut { store: Name, after: Duration },
    /// The service still refused for its rate limit after the client's retries (75).
    Throttled { store: Name, detail: String },
    /// The store's own access control refused, e.g. Vault's 403 (77).
    ServiceDenied { store: Name, detail: String },
    /// The store is set up so that no fetch can work: no credentials, an ambiguous secret (78).
    Misconfigured { store: Name, detail: String },
}

impl FailureKind {
    pub fn exit_code(&self) -> u8 {
        match self {
            FailureKind::Undefined { .. } | FailureKind::Unusable(_) => EX_DATAERR,
            FailureKind::Denied { .. } | FailureKind::ServiceDenied { .. } => EX_NOPERM,
            FailureKind::Misconfigured { .. } => EX_CONFIG,
            FailureKind::NotFound { .. } => EX_NOINPUT,
            FailureKind::Unavailable { .. } => EX_UNAVAILABLE,
            FailureKind::TimedOut { .. } | FailureKind::Throttled { .. } => EX_TEMPFAIL,
        }
    }

    /// When several secrets fail differently, the exit code is that of the most permanent
    /// failure: a retry (75) should only be suggested when nothing else is wrong.
    fn precedence(&self) -> u8 {
        match self {
            FailureKind::Misconfigured { .. } => 0,
            FailureKind::Undefined { .. } | FailureKind::Unusable(_) => 0,
            FailureKind::Denied { .. } | FailureKind::ServiceDenied { .. } => 1,
            FailureKind::NotFound { .. } => 2,
            FailureKind::Unavailable { .. } => 3,
            FailureKind::TimedOut { .. } | FailureKind::Throttled { .. } => 4,
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Identity(_) => EX_USAGE,
            Error::Config(_) => EX_CONFIG,
            Error::Manifest(_) => EX_DATAERR,
            Error::Secrets(failures) => failures
                .iter()
                .map(|f| &f.kind)
                .min_by_key(|k| k.precedence())
                .map_or(EX_DATAERR, FailureKind::exit_code),
            Error::System(_) => EX_OSERR,
            Error::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => EXIT_NOT_FOUND,
            Error::Exec { .. } => EXIT_CANNOT_EXECUTE,
            Error::Output(_) => EX_IOERR,
            Error::Broker { exit_code, .. } => *exit_code,
        }
    }

    pub(crate) fn manifest(origin: Origin, message: impl Into<String>) -> Error {
        Error::Manifest(ManifestError::new(origin, message))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => f.write_str(message),
            Error::Identity(error) => error.fmt(f),
            Error::Config(error) => error.fmt(f),
            Error::Manifest(error) => error.fmt(f),
            Error::Secrets(failures) => {
                if let [failure] = failures.as_slice() {
                    write!(f, "{failure}")?;
                } else {
                    write!(f, "{} secrets failed:", failures.len())?;
                    for failure in failures {
                        write!(f, "\n  {failure}")?;
                    }
                }
                Ok(())
            }
            Error::System(message) => write!(f, "system call failed: {message}"),
            Error::Exec { program, source } => match source.kind() {
                io::ErrorKind::NotFound => write!(f, "{program}: command not found"),
                _ => write!(f, "{program}: cannot execute: {source}"),
            },
            Error::Output(source) => write!(f, "cannot write the value to stdout: {source}"),
            Error::Broker { message, .. } => f.write_str(message),
        }
    }
}

impl fmt::Display for SecretFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret `{}`: {}", self.name, self.kind)
    }
}

/// Why a secret failed, without its name (audit records and JSON carry the name apart).
impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Undefined { hint } => write!(f, "not defined in the config{hint}"),
            FailureKind::Unusable(why) => f.write_str(why),
            FailureKind::Denied { principal, policy, reason } => {
                write!(f, "denied to principal `{principal}` by policy `{policy}`: {reason}")
            }
            FailureKind::NotFound { store, detail } => {
                write!(f, "does not exist in store `{store}`: {detail}")
            }
            FailureKind::Unavailable { store, detail } => write!(f, "store `{store}` failed: {detail}"),
            FailureKind::ServiceDenied { store, detail } => {
                write!(f, "denied by the secret service behind store `{store}`: {detail}")
            }
            FailureKind::Misconfigured { store, detail } => {
                write!(f, "store `{store}` cannot work as set up: {detail}")
            }
            FailureKind::Throttled { store, detail } => {
                write!(f, "store `{store}` is rate-limited; retrying later may help: {detail}")
            }
            FailureKind::TimedOut { store, after } => write!(
                f,
                "store `{store}` did not answer within {}s and was stopped; retrying may help, or \
                 raise the store's `timeout`",
                after.as_secs_f64()
            ),
        }
    }
}

/// The layers say the whole sentence themselves; [`Error`] adds nothing to it, so its
/// source is theirs. An exec or output failure's source is the system's error.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Identity(error) => error.source(),
            Error::Config(error) => error.source(),
            Error::Manifest(error) => error.source(),
            Error::Exec { source, .. } | Error::Output(source) => Some(source),
            Error::Usage(_) | Error::Secrets(_) | Error::System(_) | Error::Broker { .. } => None,
        }
    }
}

impl From<IdentityError> for Error {
    fn from(error: IdentityError) -> Error {
        Error::Identity(error)
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Error {
        Error::Config(error)
    }
}

impl From<ManifestError> for Error {
    fn from(error: ManifestError) -> Error {
        Error::Manifest(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::RuntimeIdentity;

    #[test]
    fn each_layer_keeps_its_words_and_its_exit_code() {
        let role = RuntimeIdentity::new("Admin").unwrap_err();
        assert!(matches!(role, IdentityError::Role(_)), "{role:?}");
        assert!(role.to_string().starts_with("role: `Admin` is not a valid name"), "{role}");
        let label = RuntimeIdentity::declared("a", Some(" dev"), None, None, None).unwrap_err();
        assert_eq!(label.to_string(), "environment ` dev` has surrounding white space");
        for identity in [role, label] {
            let error = Error::from(identity.clone());
            assert_eq!((error.exit_code(), error.to_string()), (EX_USAGE, identity.to_string()));
        }
        let invalid = crate::config::Config::parse("stores: [", "c.yaml").unwrap_err();
        assert!(matches!(invalid, ConfigError::Invalid { .. }), "{invalid:?}");
        let missing = ConfigError::NotFound { tried: vec!["/etc/mxm/secrets.yaml".into()] };
        assert!(missing.to_string().starts_with("no config file found; looked at:\n  /etc/mxm/secrets.yaml"));
        for config in [invalid, missing] {
            let error = Error::from(config.clone());
            assert_eq!((error.exit_code(), error.to_string()), (EX_CONFIG, config.to_string()));
        }
        let manifest = crate::manifest::ManifestEntry::from_arg("Api").unwrap_err();
        assert_eq!(manifest.origin.source, "--secret Api");
        let error = Error::from(manifest.clone());
        assert_eq!((error.exit_code(), error.to_string()), (EX_DATAERR, manifest.to_string()));
    }

    #[test]
    fn the_source_is_the_systems_error_where_there_is_one() {
        use std::error::Error as _;
        let exec = Error::Exec { program: "p".to_owned(), source: io::Error::from(io::ErrorKind::NotFound) };
        assert_eq!(exec.source().unwrap().to_string(), io::Error::from(io::ErrorKind::NotFound).to_string());
        assert!(Error::from(ConfigError::NotFound { tried: Vec::new() }).source().is_none());
    }

    fn kinds() -> Vec<(&'static str, FailureKind)> {
        let store = || Name::new("s").unwrap();
        let detail = String::new;
        vec![
            ("timed_out", FailureKind::TimedOut { store: store(), after: Duration::from_secs(1) }),
            ("unavailable", FailureKind::Unavailable { store: store(), detail: detail() }),
            ("not_found", FailureKind::NotFound { store: store(), detail: detail() }),
            ("service_denied", FailureKind::ServiceDenied { store: store(), detail: detail() }),
            (
                "denied",
                FailureKind::Denied {
                    principal: store(),
                    policy: store(),
                    reason: DenyReason::PrincipalNotAllowed { allowed: vec![] },
                },
            ),
            ("unusable", FailureKind::Unusable(detail())),
            ("undefined", FailureKind::Undefined { hint: detail() }),
            ("misconfigured", FailureKind::Misconfigured { store: store(), detail: detail() }),
        ]
    }

    fn code(names: &[&str]) -> u8 {
        let failures = kinds()
            .into_iter()
            .filter(|(word, _)| names.contains(word))
            .map(|(word, kind)| SecretFailure { name: word.to_owned(), kind })
            .collect();
        Error::Secrets(failures).exit_code()
    }

    /// Several secrets failing differently: the most permanent failure's code, whatever the
    /// order; 78 and 65 before 77, before 66, before 69, before 75 (retry only when nothing
    /// else is wrong).
    #[test]
    fn the_most_permanent_failure_decides_the_exit_code() {
        assert_eq!(code(&["timed_out"]), 75);
        assert_eq!(code(&["timed_out", "unavailable"]), 69);
        assert_eq!(code(&["timed_out", "unavailable", "not_found"]), 66);
        assert_eq!(code(&["timed_out", "unavailable", "not_found", "service_denied"]), 77);
        assert_eq!(code(&["timed_out", "not_found", "denied"]), 77);
        assert_eq!(code(&["timed_out", "unavailable", "not_found", "denied", "unusable"]), 65);
        assert_eq!(code(&["timed_out", "denied", "undefined"]), 65);
        assert_eq!(code(&["unavailable", "denied", "misconfigured"]), 78);
        // 65 and 78 rank alike: the first listed decides.
        assert_eq!(code(&["undefined", "misconfigured"]), 65);
        assert_eq!(
            Error::Secrets(
                kinds().into_iter().rev().map(|(w, kind)| SecretFailure { name: w.into(), kind }).collect()
            )
            .exit_code(),
            78
        );
        assert_eq!(Error::Secrets(Vec::new()).exit_code(), 65);
    }

    #[test]
    fn every_error_has_its_exit_code() {
        let origin = || Origin::file("f");
        let exec = |kind| Error::Exec { program: "p".into(), source: io::Error::from(kind) };
        let table = [
            (Error::Usage(String::new()), 64),
            (Error::Identity(IdentityError::Role(String::new())), 64),
            (Error::Config(ConfigError::NotFound { tried: vec![] }), 78),
            (Error::Config(ConfigError::invalid(origin(), "m")), 78),
            (Error::Manifest(ManifestError::new(origin(), "m")), 65),
            (Error::System(String::new()), 71),
            (exec(io::ErrorKind::NotFound), 127),
            (exec(io::ErrorKind::PermissionDenied), 126),
            (Error::Output(io::Error::from(io::ErrorKind::BrokenPipe)), 74),
        ];
        for (error, code) in table {
            assert_eq!(error.exit_code(), code, "{error:?}");
        }
        let codes: Vec<u8> = kinds().iter().map(|(_, kind)| kind.exit_code()).collect();
        assert_eq!(codes, [75, 69, 66, 77, 77, 65, 65, 78]);
        // Throttling left after a client's retries is temporary, as a timeout is.
        let throttled = FailureKind::Throttled { store: Name::new("s").unwrap(), detail: String::new() };
        assert_eq!(throttled.exit_code(), 75);
        assert_eq!(throttled.precedence(), kinds()[0].1.precedence());
    }

    #[test]
    fn origins_print_as_compilers_do() {
        let mut origin = Origin::file("c.yaml");
        assert_eq!(origin.to_string(), "c.yaml");
        origin.column = Some(3);
        assert_eq!(origin.to_string(), "c.yaml", "a column without a line is not shown");
        origin.line = Some(2);
        assert_eq!(origin.to_string(), "c.yaml:2:3");
        origin.column = None;
        assert_eq!(origin.to_string(), "c.yaml:2");
    }
}
