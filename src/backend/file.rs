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
//! file of at most 1 MiB below root, reached through links that stay below root (Kubernetes
//! mounts are relative links inside the mount, `key -> ..data/key`, `..data -> ..2024_x`,
//! and stay allowed). The path is resolved and opened in one step below an open handle on
//! root ([`crate::files::open_beneath`]), so a link swapped in while we read cannot lead out.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::num::NonZeroUsize;
use std::path::Path;

use std::sync::Arc;

use serde::Deserialize;
use zeroize::Zeroize;

use super::process::STDOUT_LIMIT;
use super::{Backend, FetchError, FetchRequest, check_directory_root, expand_root, join};
use crate::files::{OpenError, open_beneath};
use crate::secret::SecretValue;

/// A file store has no options of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {}

impl super::Options for Options {
    fn build(self, root: &str) -> Result<Arc<dyn Backend>, String> {
        check_directory_root(root)?;
        Ok(Arc::new(Files { root: root.to_owned() }))
    }
}

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
        let relative = location
            .strip_prefix(self.root.trim_end_matches('/'))
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| {
                FetchError::Failed(format!("{location} is not below the store's root {}", self.root))
            })?;
        let root = expand_root(&self.root)?;
        let (file, meta) = open_beneath(&root, Path::new(relative)).map_err(|e| match e {
            OpenError::Missing(_) => FetchError::NotFound(format!("there is no file {shown}")),
            OpenError::Unusable(message) => FetchError::Failed(format!("cannot read {shown}: {message}")),
            OpenError::Unsafe(message) => FetchError::Failed(format!("{shown}: {message}")),
        })?;
        if meta.len() > STDOUT_LIMIT as u64 {
            return Err(FetchError::Failed(format!(
                "{shown} is larger than {} KiB, which no secret is",
                STDOUT_LIMIT / 1024
            )));
        }
        read_bounded(file, meta.len() as usize)
            .map_err(|e| FetchError::Failed(format!("cannot read {shown}: {e}")))
    }

    fn usable_here(&self, root: &str) -> Result<(), FetchError> {
        expand_root(root).map(drop)
    }

    /// A file is read in this process in microseconds, less than a thread costs to start: a
    /// batch is read in one call, one file after another (`resolve::fetch_all` runs a lone
    /// batch in the calling thread), so ten file secrets start no thread at all. A hanging
    /// filesystem (NFS) then delays the rest of its batch, which a thread each would not.
    fn max_batch(&self) -> NonZeroUsize {
        const BATCH: NonZeroUsize = NonZeroUsize::new(16).expect("16 is not zero");
        BATCH
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A batch is read in one call, one file after another, each with its own answer: a
    /// missing file in the middle fails only itself.
    #[test]
    fn a_batch_answers_each_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "value-a").unwrap();
        std::fs::write(dir.path().join("c"), "value-c").unwrap();
        let root = dir.path().display().to_string();
        let files = Files { root: root.clone() };
        assert_eq!(files.max_batch().get(), 16);
        let environment = crate::backend::process::Environment::default();
        let locations: Vec<String> = ["a", "b", "c"].iter().map(|p| join(&root, p)).collect();
        let requests: Vec<FetchRequest> = locations
            .iter()
            .map(|location| FetchRequest {
                location,
                field: None,
                version: None,
                timeout: Duration::from_secs(5),
                environment: &environment,
            })
            .collect();
        let answers = files.fetch_many(&requests);
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[0].as_ref().unwrap().expose(), b"value-a");
        assert!(matches!(&answers[1], Err(FetchError::NotFound(why)) if why.contains("there is no file")));
        assert_eq!(answers[2].as_ref().unwrap().expose(), b"value-c");
    }
}
