//! The last two steps: make the launcher a poor place to find secrets in (no core dumps,
//! not dumpable, so not readable through /proc or ptrace by the same user), and replace it
//! with the program, its descriptor secrets placed as sealed in-memory files.
//!
//! The one module with `unsafe`: placing a descriptor at an exact number that this process
//! does not own yet has no safe API.
#![allow(unsafe_code)]

use std::convert::Infallible;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{Whence, lseek, write};

use crate::error::Error;
use crate::inject::{LaunchPlan, as_os_str};
use crate::name::Name;
use crate::secret::SecretValue;

/// Proof that [`harden`] ran, carrying what [`exec`] gives back to the program.
#[derive(Debug)]
#[must_use]
pub struct Hardened {
    core_soft_limit: nix::libc::rlim_t,
    core_hard_limit: nix::libc::rlim_t,
}

fn system(what: &str) -> impl Fn(Errno) -> Error + '_ {
    move |errno| Error::System(format!("{what}: {errno}"))
}

/// Before any secret is in memory: no core dump can hold one, and other processes of the
/// same user cannot read our memory through /proc or ptrace.
pub fn harden() -> Result<Hardened, Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_CORE).map_err(system("getrlimit(RLIMIT_CORE)"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, hard).map_err(system("setrlimit(RLIMIT_CORE)"))?;
    prctl::set_dumpable(false).map_err(system("prctl(PR_SET_DUMPABLE)"))?;
    Ok(Hardened { core_soft_limit: soft, core_hard_limit: hard })
}

/// Replaces this process with the program: same PID, signals go straight to it, and our
/// memory, secrets included, is gone. Returns only if that fails (126, or 127 not found).
/// The kernel makes the new program dumpable again; its core limit is restored here.
pub fn exec(plan: LaunchPlan, hardened: Hardened) -> Result<Infallible, Error> {
    let files = plan
        .descriptors
        .iter()
        .map(|(fd, name, value)| sealed_file(name, value).map(|file| (*fd, file)))
        .collect::<Result<Vec<_>, Error>>()?;
    place(files)?;
    let mut command = Command::new(&plan.program);
    command.args(&plan.args).env_clear().envs(plan.env.iter().map(|(k, v)| (k, v)));
    for (variable, value) in &plan.secrets {
        command.env(variable, as_os_str(value));
    }
    setrlimit(Resource::RLIMIT_CORE, hardened.core_soft_limit, hardened.core_hard_limit)
        .map_err(system("restoring RLIMIT_CORE"))?;
    let source = command.exec();
    // Still here: the exec failed. Put the protection back before the plan's secrets are
    // dropped (and wiped) on the way out.
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, hardened.core_hard_limit);
    Err(Error::Exec { program: plan.program.to_string_lossy().into_owned(), source })
}

/// An in-memory file holding `value`, sealed against writing, growing, shrinking and further
/// sealing, read position at 0 (a child reading the inherited descriptor itself, `cat <&3`,
/// shares that position). Close-on-exec until [`place`] puts it where the program expects it.
fn sealed_file(name: &Name, value: &SecretValue) -> Result<OwnedFd, Error> {
    let label = format!("mxm-secrets:{name}");
    let file = memfd_create(label.as_str(), MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(system("memfd_create"))?;
    let mut rest = value.expose();
    while !rest.is_empty() {
        match write(&file, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(system("writing a memfd")(e)),
        }
    }
    let seals =
        SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_SEAL;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(system("sealing a memfd"))?;
    lseek(&file, 0, Whence::SeekSet).map_err(system("rewinding a memfd"))?;
    Ok(file)
}

/// Puts each file at its descriptor number, without close-on-exec there. All are first moved
/// above the highest target, so that placing one never closes another still to be placed.
fn place(files: Vec<(i32, OwnedFd)>) -> Result<(), Error> {
    let Some(highest) = files.iter().map(|(fd, _)| *fd).max() else { return Ok(()) };
    let mut moved = Vec::with_capacity(files.len());
    for (target, file) in files {
        let raw = fcntl(&file, FcntlArg::F_DUPFD_CLOEXEC(highest + 1)).map_err(system("moving a memfd"))?;
        // SAFETY: F_DUPFD_CLOEXEC just returned `raw` as a new descriptor that nothing else owns.
        moved.push((target, unsafe { OwnedFd::from_raw_fd(raw) }));
    }
    for (target, file) in &moved {
        // SAFETY: dup2 only touches descriptor numbers: `file` is open and owned by us, and
        // `target` is replaced whatever it was (an inherited descriptor the manifest asked us
        // to overwrite, or nothing). The new descriptor at `target` is deliberately left
        // without an owner, so that it stays open across exec; dup2 clears its close-on-exec.
        let placed = unsafe { nix::libc::dup2(file.as_raw_fd(), *target) };
        if placed != *target {
            return Err(system("placing a memfd")(Errno::last()));
        }
    }
    Ok(())
}
