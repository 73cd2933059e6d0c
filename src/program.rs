//! Where a program will be found when it is exec'd: glibc's `execvp` search, for the
//! launched program (before any store is touched) and for a backend's (to explain why it
//! could not start). A leaf: `NotFound` (127) or `PermissionDenied` (126), no more.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// glibc's `execvp` search: a name with a `/` is itself; otherwise each PATH entry in turn
/// (empty means the current directory), the first executable file wins, and a file found but
/// not executable makes the answer "cannot execute" rather than "not found".
pub(crate) fn lookup(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, ErrorKind> {
    use nix::unistd::{AccessFlags, access};
    let executable = |candidate: &Path| {
        let meta = std::fs::metadata(candidate).ok()?;
        Some(meta.is_file() && access(candidate, AccessFlags::X_OK).is_ok())
    };
    if program.is_empty() {
        return Err(ErrorKind::NotFound);
    }
    if program.as_bytes().contains(&b'/') {
        let candidate = PathBuf::from(program);
        return match executable(&candidate) {
            Some(true) => Ok(candidate),
            Some(false) => Err(ErrorKind::PermissionDenied),
            None => Err(ErrorKind::NotFound),
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
    Err(if denied { ErrorKind::PermissionDenied } else { ErrorKind::NotFound })
}

/// What glibc's `execvp` searches when the environment has no PATH.
const DEFAULT_PATH: &str = "/bin:/usr/bin";
