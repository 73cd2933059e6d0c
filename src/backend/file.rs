//! The `file` backend: `ROOT/PATH` in a directory of one-secret files: `/run/secrets`,
//! systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`), a Kubernetes secret mount.
//!
//! ```yaml
//! stores:
//!   creds: {backend: file, root: $CREDENTIALS_DIRECTORY}
//!   k8s: {backend: file, root: /var/run/secrets/app}
//! ```
//!
//! `root` may start with `$VAR`, read when a secret is fetched. The file must be a regular
//! file inside root once every symlink is resolved (Kubernetes mounts are symlinks inside the
//! mount, and stay allowed), and at most 1 MiB.

use std::fs::File;
use std::io::{ErrorKind, Read};

use zeroize::Zeroize;

use super::process::STDOUT_LIMIT;
use super::{Backend, FetchError, FetchRequest, expand_root, join};
use crate::files::open_regular;
use crate::secret::SecretValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The store's root, as configured: the fence that resolved paths must stay inside.
    pub root: String,
}

impl Backend for Files {
    fn locate(&self, root: &str, path: &str) -> Result<String, String> {
        Ok(join(root, path))
    }

    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        let location = request.location;
        let path = expand_root(location)?;
        let shown = path.display();
        let resolved = match path.canonicalize() {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(FetchError::NotFound(format!("there is no file {shown}")));
            }
            Err(e) => return Err(FetchError::Failed(format!("cannot read {shown}: {e}"))),
        };
        let root = expand_root(&self.root)?
            .canonicalize()
            .map_err(|e| FetchError::Failed(format!("the store's root {} cannot be used: {e}", self.root)))?;
        if !resolved.starts_with(&root) {
            return Err(FetchError::Failed(format!(
                "{shown} resolves to {}, outside the store's root {}; refusing to follow the link",
                resolved.display(),
                root.display()
            )));
        }
        let (file, meta) =
            open_regular(&resolved).map_err(|e| FetchError::Failed(format!("cannot read {shown}: {e}")))?;
        if meta.len() > STDOUT_LIMIT as u64 {
            return Err(FetchError::Failed(format!(
                "{shown} is larger than {} KiB, which no secret is",
                STDOUT_LIMIT / 1024
            )));
        }
        read_bounded(file, meta.len() as usize)
            .map_err(|e| FetchError::Failed(format!("cannot read {shown}: {e}")))
    }
}

fn read_bounded(file: File, expected: usize) -> std::io::Result<SecretValue> {
    let mut value = SecretValue::with_capacity(expected + 1);
    let mut buffer = [0u8; 8192];
    let mut reader = file.take(STDOUT_LIMIT as u64);
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => value.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                buffer.zeroize();
                return Err(e);
            }
        }
    }
    buffer.zeroize();
    Ok(value)
}
