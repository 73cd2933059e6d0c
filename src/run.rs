//! `mxm-secrets run`, top to bottom: load config and manifest -> judge all (the pipeline of
//! [`SecretsApi`](crate::SecretsApi)) -> look the program up -> harden -> fetch all -> build
//! plan -> exec. Whoever reads [`run`] knows where every other module fits; this module owns
//! only what is particular to exec.

use std::convert::Infallible;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::audit::Audit;
use crate::config::Config;
use crate::error::Error;
use crate::exec;
use crate::inject::{self, Inherit};
use crate::inputs::Inputs;

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub inputs: Inputs,
    /// `--clean-env` and `--keep`.
    pub inherit: Inherit,
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// Audit records on stderr (`-v`, `--log-format`).
    pub audit: Audit,
}

/// Runs the pipeline and execs the program; returns only with the reason it could not.
pub fn run(request: RunRequest) -> Result<Infallible, Error> {
    if request.command.is_empty() {
        return Err(Error::Usage("no command to run; give it after `--`".to_owned()));
    }
    let prepared = request.inputs.prepare(&request.audit)?;
    let (api, manifest) = (&prepared.api, &prepared.manifest);
    // Descriptors the program could not hold (beyond `ulimit -n`) are refused before any
    // backend is asked; `inject::plan` places them after.
    inject::targets(manifest, inject::is_open)?;
    let names = manifest.names();
    let allowed = api.judge(&prepared.request(&request.inputs, &names)).allowed()?;
    find_program(api.config(), &request.inherit, &request.command[0])?;
    let hardened = exec::harden()?;
    let values = allowed.fetch()?.values;
    let plan = inject::plan(
        api.config(),
        manifest,
        std::env::vars_os(),
        &request.inherit,
        &values,
        request.command,
    )?;
    drop(values);
    exec::exec(plan, hardened)
}

/// Where `program` will be found when it is exec'd: looked up as `execvp` will, on the PATH
/// the program inherits (none with `--clean-env` unless kept: then libc's default), before
/// any store is touched, so that a typo is 127 (or 126) with no secret fetched.
pub fn find_program(config: &Config, inherit: &Inherit, program: &OsStr) -> Result<PathBuf, Error> {
    let inherited = !inherit.clean || inherit.keep.iter().any(|k| k == "PATH");
    let path =
        std::env::var_os("PATH").filter(|_| inherited && !inject::source_variables(config).contains("PATH"));
    lookup(program, path.as_deref())
}

/// glibc's `execvp` search: a name with a `/` is itself; otherwise each PATH entry in turn
/// (empty means the current directory), the first executable file wins, and a file found but
/// not executable makes the answer "cannot execute" rather than "not found".
pub(crate) fn lookup(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Error> {
    use nix::unistd::{AccessFlags, access};
    let failed = |kind: std::io::ErrorKind| Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source: std::io::Error::from(kind),
    };
    let executable = |candidate: &Path| {
        let meta = std::fs::metadata(candidate).ok()?;
        Some(meta.is_file() && access(candidate, AccessFlags::X_OK).is_ok())
    };
    if program.is_empty() {
        return Err(failed(std::io::ErrorKind::NotFound));
    }
    if program.as_bytes().contains(&b'/') {
        let candidate = PathBuf::from(program);
        return match executable(&candidate) {
            Some(true) => Ok(candidate),
            Some(false) => Err(failed(std::io::ErrorKind::PermissionDenied)),
            None => Err(failed(std::io::ErrorKind::NotFound)),
        };
    }
    let mut denied = false;
    let search = path.map_or_else(|| OsStr::new(DEFAULT_PATH).to_owned(), OsStr::to_owned);
    for directory in search.as_bytes().split(|&b| b == b':') {
        let directory =
            if directory.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(directory)) };
        let candidate = directory.join(program);
        match executable(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) => denied = true,
            None => {}
        }
    }
    Err(failed(if denied { std::io::ErrorKind::PermissionDenied } else { std::io::ErrorKind::NotFound }))
}

/// What glibc's `execvp` searches when the environment has no PATH.
const DEFAULT_PATH: &str = "/bin:/usr/bin";
