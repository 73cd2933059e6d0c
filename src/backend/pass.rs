//! The `pass` backend: a password-store directory (the layout of `pass`, and of gopass's
//! default gpg store), read by decrypting `ROOT/PATH.gpg` with `gpg --batch --quiet
//! --decrypt` directly: no pass or gopass process, one program fewer between us and the value.
//!
//! ```yaml
//! stores:
//!   team: {backend: pass, root: /home/alice/.password-store/mxm, gpg: /usr/bin/gpg, timeout: 10}
//! ```
//!
//! `root` may start with `$VAR` (e.g. `$PASSWORD_STORE_DIR/mxm`), read when a secret is fetched;
//! an unset `$PASSWORD_STORE_DIR` means `~/.password-store`, as it does to pass.
//!
//! gpg runs with `--quiet`: without it, gpg looks up and prints the key's user ID for every
//! decryption, which made ten parallel fetches 20% slower. Quiet mode hides the line that
//! tells a locked key from a missing one ("Inappropriate ioctl for device"), so a failed
//! decryption is tried once more without it, to /dev/null, to read gpg's whole reason
//! ([`super::gpg::probe`]); only failures pay for that.

use std::process::Command;
use std::sync::Arc;

use serde::Deserialize;

use super::process;
use super::{
    Backend, FetchError, FetchRequest, Program, check_directory_root, expand_root_with, gpg, join,
    missing_program, program_failed, runnable, unset_root,
};
use crate::name::given;
use crate::secret::SecretValue;

/// The store keys of a pass store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default, deserialize_with = "given")]
    gpg: Option<Program>,
}

impl super::Options for Options {
    fn build(self, root: &str) -> Result<Arc<dyn Backend>, String> {
        check_directory_root(root)?;
        Ok(Arc::new(Pass { gpg: self.gpg.map_or_else(|| "gpg".to_owned(), |p| p.0) }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// The gpg program: a path, or a name looked up on PATH.
    pub gpg: String,
}

impl Backend for Pass {
    fn locate(&self, root: &str, path: &str) -> Result<String, String> {
        Ok(format!("{}.gpg", join(root, path)))
    }

    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        let location = request.location;
        let file = expand(location)?;
        match std::fs::metadata(&file) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(FetchError::Failed(format!("{} is not a regular file", file.display())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FetchError::NotFound(format!(
                    "the store has no file {}{}",
                    file.display(),
                    no_store_hint(&file)
                )));
            }
            Err(e) => {
                return Err(FetchError::Failed(format!("cannot read {}: {e}", file.display())));
            }
        }
        let mut command = Command::new(&self.gpg);
        command.args(["--batch", "--quiet", "--decrypt", "--"]).arg(&file);
        let finished = process::run_backend(command, &self.gpg, request).map_err(|e| match e {
            FetchError::Failed(_) => missing_program(&self.gpg, "gpg").unwrap_or(e),
            other => other,
        })?;
        if finished.status.success() {
            return Ok(finished.stdout);
        }
        let why = gpg::probe(&self.gpg, &file, request).or_else(|| gpg::diagnosis(&finished.stderr));
        Err(match why {
            Some(why) => {
                FetchError::Failed(format!("`{}` cannot decrypt {}: {why}", self.gpg, file.display()))
            }
            None => program_failed(&self.gpg, &finished),
        })
    }

    fn usable_here(&self, root: &str) -> Result<(), FetchError> {
        expand(root).and_then(|_| runnable(&self.gpg, "gpg"))
    }

    fn program(&self) -> Option<String> {
        Some(self.gpg.clone())
    }
}

/// When no directory at or above a missing entry is a password store (pass and gopass keep a
/// `.gpg-id` at its top), the root is wrong for this user, not the entry missing: most often
/// the launcher runs as another user, or without the PASSWORD_STORE_DIR the owner has.
fn no_store_hint(file: &std::path::Path) -> String {
    if file.ancestors().skip(1).any(|dir| dir.join(".gpg-id").exists()) {
        return String::new();
    }
    format!(
        "; no directory on its way is a password store (none holds a .gpg-id), as user {}: run as \
         the store's owner, or set PASSWORD_STORE_DIR (or the store's `root`) as the owner has it",
        gpg::user()
    )
}

/// A root (or location) with its variable read; an unset `$PASSWORD_STORE_DIR` is
/// `~/.password-store`, as pass has it.
pub(crate) fn expand(location: &str) -> Result<std::path::PathBuf, FetchError> {
    expand_root_with(location, |variable| {
        if variable != "PASSWORD_STORE_DIR" {
            return Err(unset_root(variable));
        }
        gpg::home_password_store().ok_or_else(|| {
            FetchError::Misconfigured(
                "the store's root names $PASSWORD_STORE_DIR, which is not set, and HOME is not set \
                 either, so there is no ~/.password-store: set PASSWORD_STORE_DIR (or HOME) as the \
                 store's owner has it"
                    .to_owned(),
            )
        })
    })
}
