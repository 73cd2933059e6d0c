//! The `memory` backend, compiled only into the library's unit tests: values given in the
//! config (or in code) and no process, so the judge, `fetch_all` and the injection plan can be
//! tested without gpg. It is not in [`BACKENDS`](super::BACKENDS) and a release build does not
//! know the word, so no production config can name it.
//!
//! ```yaml
//! stores:
//!   mem:
//!     backend: memory
//!     root: unused
//!     values: {db/pw: hunter2}
//!     failures: {db/gone: not_found, db/slow: timed_out}
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::{Backend, FetchError, FetchRequest};
use crate::secret::SecretValue;

/// Values by path, and paths whose fetch fails in a given way.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default)]
    values: BTreeMap<String, String>,
    #[serde(default)]
    failures: BTreeMap<String, Failure>,
}

/// How a fetch fails, one word per [`FetchError`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    NotFound,
    Failed,
    TimedOut,
    Denied,
    Misconfigured,
}

impl Failure {
    fn error(self, path: &str) -> FetchError {
        match self {
            Failure::NotFound => FetchError::NotFound(format!("memory: no entry {path}")),
            Failure::Failed => FetchError::Failed(format!("memory: {path} failed")),
            Failure::TimedOut => FetchError::TimedOut,
            Failure::Denied => FetchError::Denied(format!("memory: {path} is refused")),
            Failure::Misconfigured => FetchError::Misconfigured(format!("memory: {path} is misconfigured")),
        }
    }
}

impl super::Options for Options {
    fn build(self, _root: &str) -> Result<Arc<dyn Backend>, String> {
        let mut memory = Memory::new(self.values.iter().map(|(p, v)| (p.as_str(), v.as_bytes())));
        memory.failures = self.failures;
        Ok(Arc::new(memory))
    }
}

/// The store: its locations are the refs' paths (the root is ignored).
#[derive(Default)]
pub struct Memory {
    values: BTreeMap<String, Vec<u8>>,
    failures: BTreeMap<String, Failure>,
}

impl Memory {
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Memory {
        let values = values.into_iter().map(|(path, value)| (path.to_owned(), value.to_vec())).collect();
        Memory { values, ..Memory::default() }
    }
}

/// The paths only: values stay out of Debug output, as everywhere.
impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("paths", &self.values.keys().collect::<Vec<_>>())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Backend for Memory {
    fn locate(&self, _root: &str, path: &str) -> Result<String, String> {
        Ok(path.to_owned())
    }

    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        let path = request.location;
        if let Some(failure) = self.failures.get(path) {
            return Err(failure.error(path));
        }
        match self.values.get(path) {
            Some(value) => Ok(SecretValue::new(value.clone())),
            None => Err(Failure::NotFound.error(path)),
        }
    }
}
