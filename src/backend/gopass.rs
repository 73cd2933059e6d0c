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

use std::sync::Arc;

use serde::Deserialize;

use super::process;
use super::{
    Backend, FetchError, FetchRequest, Program, gpg, join, missing_program, program_failed_text, runnable,
};
use crate::name::{check_store_path, given};
use crate::secret::SecretValue;

/// The store keys of a gopass store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default, deserialize_with = "given")]
    binary: Option<Program>,
}

impl super::Options for Options {
    fn build(self, root: &str) -> Result<Arc<dyn Backend>, String> {
        check_store_path("root", root.trim_end_matches('/'))?;
        Ok(Arc::new(Gopass { binary: self.binary.map_or_else(|| "gopass".to_owned(), |p| p.0) }))
    }
}

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
        let finished = process::run_backend(command, &self.binary, request).map_err(|e| match e {
            FetchError::Failed(_) => missing_program(&self.binary, "binary").unwrap_or(e),
            other => other,
        })?;
        if finished.status.success() {
            return Ok(finished.stdout);
        }
        let lower = finished.stderr.to_lowercase();
        if finished.status.code() == Some(EXIT_NOT_FOUND)
            || NOT_FOUND_MESSAGES.iter().any(|m| lower.contains(m))
        {
            return Err(FetchError::NotFound(format!(
                "gopass has no entry `{location}` ({}; gopass's store: {}, user {}: run as the store's \
                 owner, or set PASSWORD_STORE_DIR as the owner has it)",
                gpg::lines_that_matter(&finished.stderr).trim_end_matches('.'),
                gpg::store_directory(),
                gpg::user()
            )));
        }
        Err(explain_failure(&self.binary, request, &finished))
    }

    fn usable_here(&self, _root: &str) -> Result<(), FetchError> {
        runnable(&self.binary, "binary")
    }

    fn program(&self) -> Option<String> {
        Some(self.binary.clone())
    }
}

/// gopass's failure with its cause: gpg's words when gopass relays them; otherwise (Debian's
/// gopass says only "exit status 2") gpg's own reason, read by decrypting the same entry to
/// /dev/null; otherwise where gopass looked for its store and keyring.
fn explain_failure(binary: &str, request: &FetchRequest, finished: &process::Finished) -> FetchError {
    let location = request.location;
    let failed = program_failed_text(binary, finished);
    if let Some(why) = gpg::diagnosis(&finished.stderr) {
        return FetchError::Failed(format!("{failed}; {why}"));
    }
    let probed =
        gpg::password_store().and_then(|d| gpg::probe("gpg", &d.join(format!("{location}.gpg")), request));
    FetchError::Failed(match probed {
        Some(why) => format!("{failed}; its gpg call failed: {why}"),
        None => format!(
            "{failed} (gopass's store: {}; keyring: {}; user {})",
            gpg::store_directory(),
            gpg::keyring(),
            gpg::user()
        ),
    })
}
