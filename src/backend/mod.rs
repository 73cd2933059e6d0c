//! Stores and the backends behind them. A backend knows how to address and fetch a value in
//! one kind of store, and nothing of names, policies or identities: it is only ever handed a
//! location that was already authorized.
//!
//! Adding a backend: a file here with its options struct (`#[derive(Deserialize)]`,
//! `#[serde(deny_unknown_fields)]`, fields optional through `crate::name::given`) and
//! `impl Options` (which checks the root and builds the backend), its `impl Backend` (only
//! `locate` and `fetch` are required; the capabilities have defaults), and one line in the
//! `registry!` below. Store parsing (`store`) learns its keys from the derive itself.

#[cfg(feature = "aws")]
pub(crate) mod aws;
#[cfg(not(feature = "aws"))]
#[path = "aws/unbuilt.rs"]
pub(crate) mod aws;
pub(crate) mod command;
pub(crate) mod env;
pub(crate) mod file;
pub(crate) mod gopass;
mod gpg;
#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod pass;
pub mod process;
pub(crate) mod store;
pub(crate) mod vault;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use store::SecretStore;

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
/// An unset variable is a config problem (78): retrying cannot set it.
pub(crate) fn expand_root(location: &str) -> Result<std::path::PathBuf, FetchError> {
    expand_root_with(location, |variable| Err(unset_root(variable)))
}

/// [`expand_root`], with `unset` deciding what an unset (or empty) variable means.
pub(crate) fn expand_root_with(
    location: &str,
    unset: impl Fn(&str) -> Result<std::path::PathBuf, FetchError>,
) -> Result<std::path::PathBuf, FetchError> {
    let Some(reference) = location.strip_prefix('$') else {
        return Ok(location.into());
    };
    let (variable, rest) = reference.split_once('/').map_or((reference, None), |(v, r)| (v, Some(r)));
    let mut path = match std::env::var_os(variable).filter(|v| !v.is_empty()) {
        Some(value) => std::path::PathBuf::from(value),
        None => unset(variable)?,
    };
    if let Some(rest) = rest {
        path.push(rest);
    }
    Ok(path)
}

/// A root variable that is not set; systemd's is explained, as it is the one that is set only
/// inside its unit.
pub(crate) fn unset_root(variable: &str) -> FetchError {
    let hint = if variable == "CREDENTIALS_DIRECTORY" {
        "systemd sets $CREDENTIALS_DIRECTORY only inside a unit with LoadCredential= or \
         SetCredential=: run this there (or under `systemd-run -p LoadCredential=...`)"
    } else {
        "set it, or give the directory itself as the store's `root`"
    };
    FetchError::Misconfigured(format!("the store's root names ${variable}, which is not set: {hint}"))
}

/// [`missing_program`] as a check: `Ok` when `program` can be run.
pub(crate) fn runnable(program: &str, option: &str) -> Result<(), FetchError> {
    missing_program(program, option).map_or(Ok(()), Err)
}

/// A backend's program that could not be started, explained when the cause is that it is
/// not where the store says: not on PATH (cron's PATH is `/usr/bin:/bin`), or no such file.
/// `option` is the store key that names the program. `None` when the program is there.
/// Misconfigured (78), not failed (69): no restart brings the program back, so systemd's
/// `RestartPreventExitStatus=78` must stop retrying.
pub(crate) fn missing_program(program: &str, option: &str) -> Option<FetchError> {
    let path = std::env::var_os("PATH");
    let error = crate::program::lookup(std::ffi::OsStr::new(program), path.as_deref()).err()?;
    let not_found = error == std::io::ErrorKind::NotFound;
    let detail = match (program.contains('/'), not_found) {
        (false, true) => format!(
            "`{program}` is not on PATH (PATH={}); cron's PATH is minimal: give the full path with the \
             store's `{option}:` option",
            path.as_deref().map_or("(not set)".into(), std::ffi::OsStr::to_string_lossy)
        ),
        (true, true) => format!("`{program}` does not exist: fix the store's `{option}:` option"),
        (_, false) => format!("`{program}` is not an executable file: fix the store's `{option}:` option"),
    };
    Some(FetchError::Misconfigured(detail))
}

/// A directory root: absolute, or `$VAR` optionally followed by `/more`; no `.` or `..`.
pub(crate) fn check_directory_root(root: &str) -> Result<(), String> {
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

/// What every backend does. Only `locate` and `fetch` are required; the rest are
/// capabilities with the defaults of a plain text store.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where a ref's `path` lives, given the store's `root`. Called for every ref when the
    /// config loads, so a path a backend cannot address is a config error, not a late surprise.
    fn locate(&self, root: &str, path: &str) -> Result<String, String>;

    /// The value at `request.location`, within `request.timeout`.
    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError>;

    /// Several values of this store in one go, one result per request, in order. The default
    /// asks [`fetch`](Backend::fetch) for each; a service with a batch call (AWS's
    /// `BatchGetSecretValue`, `GetParameters`) makes one call, with per-secret errors mapped
    /// to their requests. `resolve::fetch_all` hands it at most [`max_batch`](Backend::max_batch).
    fn fetch_many(&self, requests: &[FetchRequest]) -> Vec<Result<SecretValue, FetchError>> {
        requests.iter().map(|request| self.fetch(request)).collect()
    }

    /// How many requests one [`fetch_many`](Backend::fetch_many) call takes: 1 (each secret its
    /// own call, run concurrently) unless the service has a batch call.
    fn max_batch(&self) -> NonZeroUsize {
        NonZeroUsize::MIN
    }

    /// Whether this backend picks a ref's `field` itself (a key of a structured secret). For
    /// every other backend `field` picks a part of the text, the same way for all of them.
    fn picks_fields(&self) -> bool {
        false
    }

    /// Whether refs may pin a `version`.
    fn keeps_versions(&self) -> bool {
        false
    }

    /// Launcher variables the store reads credentials from, which neither the program nor
    /// any backend program may see.
    fn credential_variables(&self) -> &'static [&'static str] {
        &[]
    }

    /// The launcher variable a location reads, for backends whose secrets are variables.
    fn source_variable<'a>(&self, _location: &'a str) -> Option<&'a str> {
        None
    }

    /// A bound of the backend's own on concurrent calls (a store that serializes on a lock),
    /// under the store's `max_concurrent` and the process-wide bound.
    fn max_concurrent(&self) -> Option<NonZeroUsize> {
        None
    }

    /// Whether the store can be used at all here, without fetching: a root naming an unset
    /// variable cannot, nor can a backend program that is not on PATH (cron's).
    fn usable_here(&self, _root: &str) -> Result<(), FetchError> {
        Ok(())
    }

    /// The program or service it talks to, for diagnostics.
    fn program(&self) -> Option<String> {
        None
    }
}

/// A backend's options: one struct per backend, `#[serde(deny_unknown_fields)]`, each field
/// a key of the store beside the common `backend`, `root`, `timeout` and `max_concurrent`.
pub trait Options: DeserializeOwned {
    /// The backend for a store with `root`, checked here: what a root means is the backend's.
    fn build(self, root: &str) -> Result<Arc<dyn Backend>, String>;
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
#[non_exhaustive]
pub enum FetchError {
    NotFound(String),
    Failed(String),
    TimedOut,
    /// The store's own access control refused (Vault's 403), as opposed to our policy.
    Denied(String),
    /// The store is set up so that no fetch can work (no token, an ambiguous secret).
    Misconfigured(String),
    /// The service still refused for its rate limit after the client's own retries (AWS's
    /// throttling): temporary, as a timeout is.
    Throttled(String),
}

/// The failure of a program that exited non-zero, with its own message.
pub(crate) fn program_failed(program: &str, finished: &process::Finished) -> FetchError {
    FetchError::Failed(program_failed_text(program, finished))
}

/// "`PROGRAM` exited with status N: its stderr".
pub(crate) fn program_failed_text(program: &str, finished: &process::Finished) -> String {
    let status = match finished.status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    };
    let message = match finished.stderr.as_str() {
        "" => String::new(),
        stderr => format!(": {stderr}"),
    };
    format!("`{program}` {status}{message}")
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The registry: every backend's `backend:` word and options struct. Adding a backend is its
/// file (options struct with `impl Options`, backend with `impl Backend`) and one line here.
/// Lines after `#[cfg(test)]` exist only in the library's unit tests and are not in
/// [`BACKENDS`]: a release build does not know their words.
macro_rules! registry {
    ($($word:literal => $options:ty,)* #[cfg(test)] $($test_word:literal => $test_options:ty,)*) => {
        /// Every `backend:` word, in the order the docs list them.
        pub const BACKENDS: &[&str] = &[$($word),*];

        /// Every word a store's `backend:` may be: [`BACKENDS`], and in unit tests theirs.
        #[cfg(not(test))]
        pub(crate) const WORDS: &[&str] = BACKENDS;
        #[cfg(test)]
        pub(crate) const WORDS: &[&str] = &[$($word,)* $($test_word,)*];

        /// The option keys of backend `word` (none for a word that is not one).
        pub(crate) fn options_of(word: &str) -> &'static [&'static str] {
            match word {
                $($word => keys_of::<$options>(),)*
                $(#[cfg(test)] $test_word => keys_of::<$test_options>(),)*
                _ => &[],
            }
        }

        /// Reads backend `word`'s options from `access` (the rest of the store's mapping).
        pub(crate) fn read_options<'de, A: serde::de::MapAccess<'de>>(
            word: &str,
            access: A,
        ) -> Result<store::Builder, A::Error> {
            let access = serde::de::value::MapAccessDeserializer::new(access);
            match word {
                $($word => {
                    let options = <$options as Deserialize>::deserialize(access)?;
                    Ok(Box::new(move |root: &str| options.build(root)))
                })*
                $(#[cfg(test)] $test_word => {
                    let options = <$test_options as Deserialize>::deserialize(access)?;
                    Ok(Box::new(move |root: &str| options.build(root)))
                })*
                other => Err(serde::de::Error::unknown_variant(other, BACKENDS)),
            }
        }
    };
}

registry! {
    "gopass" => gopass::Options,
    "pass" => pass::Options,
    "env" => env::Options,
    "file" => file::Options,
    "command" => command::Options,
    "vault" => vault::Options,
    "aws_secrets_manager" => aws::secrets_manager::Options,
    "aws_ssm" => aws::ssm::Options,
    #[cfg(test)]
    "memory" => memory::Options,
}

/// The keys of an options struct, as its derived `Deserialize` names them: asked of the
/// derive itself, so the list cannot drift from the struct.
fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::value::Error;
    struct Keys<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Keys<'_> {
        type Error = Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(serde::de::Error::custom("only the keys are asked for"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("only the keys are asked for"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(Keys(&mut keys));
    keys
}

checked_string!(
    /// A program to run: a path or a name on PATH.
    Program, "program", |what, value| {
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            return Err(format!("{what} `{}` must name a program", value.escape_debug()));
        }
        Ok(())
    }
);
checked_string!(
    /// A file the backend reads (a token, a CA certificate): a path, never empty.
    FilePath, "file", |what, value| {
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            return Err(format!("{what} `{}` must name a file", value.escape_debug()));
        }
        Ok(())
    }
);
