//! Exec in our own place, the default: same PID, signals go straight to
//! the program, and our memory, secrets included, is gone.

use std::convert::Infallible;
use std::os::unix::process::CommandExt;

use nix::sys::resource::{Resource, setrlimit};

use super::{Hardened, Reserve, prepare};
use crate::error::Error;
use crate::inject::LaunchPlan;

/// Replaces this process with the program. Returns only if that fails (126, or 127 not
/// found). The kernel makes the new program dumpable again; its core limit is restored by
/// the placement hook, the last step before execve.
pub fn exec(plan: LaunchPlan, hardened: Hardened) -> Result<Infallible, Error> {
    let (mut command, files) = prepare(&plan, &hardened, Reserve::Nothing, None, None)?;
    let source = command.exec();
    // Still here: the exec failed. Put the protection back before the plan's secrets are
    // dropped (and wiped) on the way out.
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, hardened.core_hard_limit);
    drop(files);
    Err(Error::Exec { program: plan.program.to_string_lossy().into_owned(), source })
}
