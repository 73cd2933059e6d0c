//! The `command` backend: any secret manager with a command line, by the summon provider
//! protocol: run `command` (program and fixed arguments) with `ROOT/PATH` as the last
//! argument; stdout is the value, exit 0 means found. Vault, AWS and 1Password CLIs plug in
//! through a small script.
//!
//! ```yaml
//! stores:
//!   vault: {backend: command, root: secret/mxm, command: [summon-vault], timeout: 5}
//! ```
//!
//! A provider that exits 66 (EX_NOINPUT) says "no such secret", so that `optional` entries
//! can be skipped; any other failure is the provider failing (69), shown with its stderr.

use std::process::Command;
use std::sync::Arc;

use serde::Deserialize;

use super::process;
use super::{Backend, FetchError, FetchRequest, Program, join, missing_program, program_failed, runnable};
use crate::name::{check_store_path, given};
use crate::secret::SecretValue;

/// The store keys of a command store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default, deserialize_with = "given")]
    command: Option<Vec<Program>>,
}

impl super::Options for Options {
    fn build(self, root: &str) -> Result<Arc<dyn Backend>, String> {
        let command: Vec<String> = self.command.unwrap_or_default().into_iter().map(|p| p.0).collect();
        if command.is_empty() {
            return Err("backend `command` needs `command`: the program and its fixed arguments, \
                        e.g. `command: [summon-vault]`"
                .to_owned());
        }
        check_store_path("root", root.trim_end_matches('/'))?;
        Ok(Arc::new(Provider { command }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The program, then its fixed arguments.
    pub command: Vec<String>,
}

const EXIT_NOT_FOUND: i32 = 66;

impl Backend for Provider {
    fn locate(&self, root: &str, path: &str) -> Result<String, String> {
        Ok(join(root, path))
    }

    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        let location = request.location;
        let program = &self.command[0];
        let mut command = Command::new(program);
        command.args(&self.command[1..]).arg(location);
        let finished = process::run_backend(command, program, request).map_err(|e| match e {
            FetchError::Failed(_) => missing_program(program, "command").unwrap_or(e),
            other => other,
        })?;
        match finished.status.code() {
            Some(0) => Ok(finished.stdout),
            Some(EXIT_NOT_FOUND) => {
                Err(FetchError::NotFound(format!("`{program}` has no secret `{location}`")))
            }
            _ => Err(program_failed(program, &finished)),
        }
    }

    fn usable_here(&self, _root: &str) -> Result<(), FetchError> {
        runnable(&self.command[0], "command")
    }

    fn program(&self) -> Option<String> {
        Some(self.command.join(" "))
    }
}
