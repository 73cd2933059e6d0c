//! The last two steps: make the launcher a poor place to find secrets in (no core dumps,
//! not dumpable, not ptrace-attachable by the same user), and replace it with the program.

use std::convert::Infallible;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::error::Error;
use crate::inject::{LaunchPlan, as_os_str};

/// Proof that [`harden`] ran, carrying what [`exec`] gives back to the program.
#[derive(Debug)]
#[must_use]
pub struct Hardened {
    core_soft_limit: nix::libc::rlim_t,
    core_hard_limit: nix::libc::rlim_t,
}

/// Before any secret is in memory: no core dump can hold one, and other processes of the
/// same user cannot read our memory through /proc or ptrace.
pub fn harden() -> Result<Hardened, Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_CORE)
        .map_err(|e| Error::Hardening(format!("getrlimit(RLIMIT_CORE): {e}")))?;
    setrlimit(Resource::RLIMIT_CORE, 0, hard)
        .map_err(|e| Error::Hardening(format!("setrlimit(RLIMIT_CORE): {e}")))?;
    prctl::set_dumpable(false)
        .map_err(|e| Error::Hardening(format!("prctl(PR_SET_DUMPABLE): {e}")))?;
    Ok(Hardened {
        core_soft_limit: soft,
        core_hard_limit: hard,
    })
}

/// Replaces this process with the program: same PID, signals go straight to it, and our
/// memory, secrets included, is gone. Returns only if that fails (126, or 127 not found).
/// The kernel makes the new program dumpable again; its core limit is restored here.
pub fn exec(plan: LaunchPlan, hardened: Hardened) -> Result<Infallible, Error> {
    let mut command = Command::new(&plan.program);
    command
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)));
    for (variable, value) in &plan.secrets {
        command.env(variable, as_os_str(value));
    }
    setrlimit(
        Resource::RLIMIT_CORE,
        hardened.core_soft_limit,
        hardened.core_hard_limit,
    )
    .map_err(|e| Error::Hardening(format!("restoring RLIMIT_CORE: {e}")))?;
    let source = command.exec();
    // Still here: the exec failed. Put the protection back before the plan's secrets are
    // dropped (and wiped) on the way out.
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, hardened.core_hard_limit);
    Err(Error::Exec {
        program: plan.program.to_string_lossy().into_owned(),
        source,
    })
}
