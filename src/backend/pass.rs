//! The `pass` backend: a password-store directory (the layout of `pass`, and of gopass's
//! default gpg store), read by decrypting `ROOT/PATH.gpg` with `gpg --batch --quiet
//! --decrypt` directly: no pass or gopass process, one program fewer between us and the value.
//!
//! ```yaml
//! stores:
//!   team: {backend: pass, root: /home/alice/.password-store/mxm, gpg: /usr/bin/gpg, timeout: 10}
//! ```
//!
//! `root` may start with `$VAR` (e.g. `$PASSWORD_STORE_DIR/mxm`), read when a secret is fetched.

use std::process::Command;

use super::process;
use super::{Backend, FetchError, FetchRequest, expand_root, join, program_failed};
use crate::secret::SecretValue;

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
        let file = expand_root(location)?;
        match std::fs::metadata(&file) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(FetchError::Failed(format!("{} is not a regular file", file.display())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FetchError::NotFound(format!("the store has no file {}", file.display())));
            }
            Err(e) => {
                return Err(FetchError::Failed(format!("cannot read {}: {e}", file.display())));
            }
        }
        let mut command = Command::new(&self.gpg);
        command.args(["--batch", "--quiet", "--decrypt", "--"]).arg(&file);
        let finished = process::run_backend(command, &self.gpg, request)?;
        if finished.status.success() {
            Ok(finished.stdout)
        } else {
            Err(program_failed(&self.gpg, &finished))
        }
    }
}
