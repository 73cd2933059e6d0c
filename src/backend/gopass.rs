//! The `gopass` backend: `gopass show -- ROOT/PATH`; its whole output is the secret.
//!
//! ```yaml
//! stores:
//!   red: {backend: gopass, root: mxm/red, binary: /usr/bin/gopass, timeout: 10}
//! ```
//!
//! Upstream gopass exits 10 for a missing entry; Debian's `gopass` (aviau/gopass) exits 1
//! and says "could not find password". Both read as "not found" (66); anything else is a
//! failure (69) with gopass's own message.

use std::process::Command;

use super::process;
use super::{Backend, FetchError, FetchRequest, join, program_failed};
use crate::secret::SecretValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gopass {
    /// The program to run: a path, or a name looked up on PATH.
    pub binary: String,
}

/// Upstream gopass's `ExitNotFound`.
const EXIT_NOT_FOUND: i32 = 10;
const NOT_FOUND_MESSAGES: [&str; 2] = ["could not find password", "entry is not in the password store"];

impl Backend for Gopass {
    fn locate(&self, root: &str, path: &str) -> Result<String, String> {
        Ok(join(root, path))
    }

    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        let location = request.location;
        let mut command = Command::new(&self.binary);
        command.arg("show").arg("--").arg(location);
        let finished = process::run_backend(command, &self.binary, request)?;
        if finished.status.success() {
            return Ok(finished.stdout);
        }
        let lower = finished.stderr.to_lowercase();
        if finished.status.code() == Some(EXIT_NOT_FOUND)
            || NOT_FOUND_MESSAGES.iter().any(|m| lower.contains(m))
        {
            return Err(FetchError::NotFound(format!("gopass has no entry `{location}`")));
        }
        Err(program_failed(&self.binary, &finished))
    }
}
