//! The process-level steps, split as sudo-rs splits `exec/`: [`harden`] makes the launcher a
//! poor place to find secrets in, [`backend`] starts each backend with nothing it should not
//! have and makes it die with us, [`memfd`] holds descriptor secrets in sealed in-memory
//! files, and the program starts either in our place ([`replace::exec`], the default) or as
//! our child ([`spawn::spawn`], for a parent that stays). Both apply the
//! same [`LaunchPlan`] through [`prepare`]: one `pre_exec` hook places the descriptors and
//! gives back the signal state and core limit, whether it runs in a forked child or in this
//! process just before execve. [`locked`] keeps values a staying parent still needs.
//!
//! The one module tree with `unsafe`: placing a descriptor at an exact number, code that runs
//! between fork and exec, signal handlers, locked memory, and reading what this process
//! inherited before Rust's runtime started have no safe API; nor have taking ownership of
//! descriptors the kernel hands over and `pidfd_send_signal` (`adopt.rs`, for the broker).
#![allow(unsafe_code)]

mod adopt;
mod backend;
mod harden;
mod locked;
mod memfd;
mod replace;
mod spawn;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

pub(crate) use adopt::{adopt, pidfd_alive};
pub use backend::{BackendGroup, isolate_backend, pidfd_open};
pub use harden::{Hardened, harden, inherited_sigpipe, protect_early};
pub use locked::LockedValues;
/// The broker hands values over as these same sealed memfds, made from values it keeps
/// locked ([`LockedValues`]) until they are sent.
pub(crate) use memfd::sealed_bytes as sealed_memfd_bytes;
pub use replace::exec;
use spawn::ExecImage;
pub use spawn::{Streams, Supervision, spawn};

use crate::error::Error;
use crate::inject::{LaunchPlan, as_os_str};

fn system(what: &str) -> impl Fn(Errno) -> Error + '_ {
    move |errno| Error::System(format!("{what}: {errno}"))
}

/// Kills every backend's process group that is running now (a supervisor ending while a
/// re-fetch runs).
pub fn kill_backends() {
    backend::kill_registered_groups();
}

/// The highest descriptor number this process may hold, plus one (`ulimit -n`).
pub fn descriptor_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(u64::MAX, |(soft, _)| soft)
}

/// Whether the memfds should first be copied to their target numbers in this process, where
/// those numbers are free. A spawning parent does, so that nothing std opens for the spawn
/// (the pipe through which the child reports a failed exec) can sit at a target and be
/// overwritten by the placement; replacing ourselves needs no such care.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reserve {
    Targets,
    Nothing,
}

/// The program's command with `plan` applied: arguments, the environment rebuilt from the
/// plan alone, env secrets, and the `pre_exec` hook of [`Placement`]. The returned files are
/// the sealed memfds (close-on-exec) that the hook places: keep them open until the program
/// has started, then drop them, so that this process holds none.
///
/// With `image` (spawn), the env secrets are not given to the command at all: the hook execs
/// the image itself, as its last step, so that std never copies them (see [`ExecImage`]).
fn prepare(
    plan: &LaunchPlan,
    hardened: &Hardened,
    reserve: Reserve,
    supervision: Option<Supervision>,
    image: Option<ExecImage>,
) -> Result<(Command, Vec<OwnedFd>), Error> {
    let mut files = Vec::with_capacity(plan.descriptors.len() * 2);
    let mut moves = Vec::with_capacity(plan.descriptors.len());
    for (target, name, value) in &plan.descriptors {
        let file = memfd::sealed(name, value)?;
        let mut source = file.as_raw_fd();
        files.push(file);
        if reserve == Reserve::Targets
            && let Ok(copy) = fcntl(&files[files.len() - 1], FcntlArg::F_DUPFD_CLOEXEC(*target))
        {
            // SAFETY: F_DUPFD_CLOEXEC just returned `copy` as a new descriptor nothing owns.
            let copy = unsafe { OwnedFd::from_raw_fd(copy) };
            if copy.as_raw_fd() == *target {
                source = *target;
                files.push(copy);
            }
        }
        moves.push((*target, source));
    }
    let mut placement = Placement {
        moves,
        ignore_sigpipe: inherited_sigpipe() == Some(true),
        core_soft_limit: hardened.core_soft_limit,
        core_hard_limit: hardened.core_hard_limit,
        mask: harden::inherited_mask(),
        supervision,
        image,
    };
    let mut command = Command::new(&plan.program);
    command.args(&plan.args).env_clear().envs(plan.env.iter().map(|(k, v)| (k, v)));
    if placement.image.is_none() {
        for (variable, value) in &plan.secrets {
            command.env(variable, as_os_str(value));
        }
    }
    if supervision.is_some() {
        // std's own setpgid in the child, before the hook: the group exists when the hook
        // makes it the terminal's foreground.
        command.process_group(0);
    }
    // SAFETY: the hook runs just before execve, in a forked child (spawn) or in this process
    // (exec, which does not fork), and `Placement::apply` allocates nothing and makes only
    // async-signal-safe calls (fcntl, dup2, signal, sigprocmask, tcsetpgrp, prctl, getppid,
    // setrlimit).
    unsafe { command.pre_exec(move || placement.apply()) };
    Ok((command, files))
}

/// What happens between fork (or not) and execve, after std has set up stdio and reset
/// SIGPIPE: each memfd goes to its descriptor number without close-on-exec, SIGPIPE is
/// ignored again if we inherited it so, and the core limit comes back, as the very last
/// step: until then a SIGQUIT could dump the secrets this process holds (on hosts whose
/// fs.suid_dumpable is 2, even a process that is not dumpable dumps).
struct Placement {
    /// `(target, source)`: put the file open at `source` at `target`.
    moves: Vec<(RawFd, RawFd)>,
    ignore_sigpipe: bool,
    core_soft_limit: libc::rlim_t,
    core_hard_limit: libc::rlim_t,
    /// The mask we inherited (std empties it in a child; a supervisor blocks everything).
    mask: Option<libc::sigset_t>,
    supervision: Option<Supervision>,
    image: Option<ExecImage>,
}

impl Placement {
    fn apply(&mut self) -> io::Result<()> {
        if let Some(supervision) = self.supervision {
            supervision.apply()?;
        }
        place(&mut self.moves)?;
        harden::restore_sigpipe(self.ignore_sigpipe)?;
        harden::restore_mask(self.mask.as_ref())?;
        setrlimit(Resource::RLIMIT_CORE, self.core_soft_limit, self.core_hard_limit)
            .map_err(io::Error::from)?;
        match &self.image {
            Some(image) => Err(image.exec()),
            None => Ok(()),
        }
    }
}

/// Puts each source at its target number, without close-on-exec there, using no number
/// above the targets and the ones already open (under `ulimit -n 1024`, `fd: 1023` is the
/// highest a process may hold). A file goes to its target once no other file still to be
/// placed sits there; when every remaining target is taken by another remaining file (a
/// cycle: the memfd for fd 4 got number 3 and the one for fd 3 got number 4), one of them
/// moves to the lowest free number first. Nothing is closed (the sources are close-on-exec,
/// and in this process they are owned by the caller) and nothing allocated: this runs
/// between fork and exec.
fn place(pending: &mut Vec<(RawFd, RawFd)>) -> io::Result<()> {
    while !pending.is_empty() {
        let free = (0..pending.len()).find(|&i| {
            let target = pending[i].0;
            !pending.iter().enumerate().any(|(j, &(_, source))| j != i && source == target)
        });
        let Some(index) = free else {
            // SAFETY: F_DUPFD_CLOEXEC only makes a new descriptor number for an open file;
            // the old number stays open (close-on-exec) and is overwritten or left behind.
            let moved = unsafe { libc::fcntl(pending[0].1, libc::F_DUPFD_CLOEXEC, 0) };
            if moved < 0 {
                return Err(io::Error::last_os_error());
            }
            pending[0].1 = moved;
            continue;
        };
        let (target, source) = pending.swap_remove(index);
        let placed = if source == target {
            // SAFETY: F_SETFD with no flags only clears close-on-exec on an open number.
            unsafe { libc::fcntl(target, libc::F_SETFD, 0) }
        } else {
            // SAFETY: dup2 only touches descriptor numbers: `source` is open, and `target`
            // is no other pending source, so it is replaced whatever it was (an inherited
            // descriptor the manifest asked us to overwrite, or nothing). dup2 clears
            // close-on-exec on the copy, so it stays open across exec.
            unsafe { libc::dup2(source, target) }
        };
        if placed < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::Name;
    use crate::secret::SecretValue;

    /// Two memfds that each sit at the other's target (the memfd for fd 4 got number 3 and
    /// the one for fd 3 got number 4, in general): one moves aside first, both arrive.
    #[test]
    fn places_descriptors_that_sit_at_each_others_targets() {
        let first =
            memfd::sealed(&Name::new("cycle_first").unwrap(), &SecretValue::new(b"first".to_vec())).unwrap();
        let second =
            memfd::sealed(&Name::new("cycle_second").unwrap(), &SecretValue::new(b"second".to_vec()))
                .unwrap();
        let (a, b) = (first.as_raw_fd(), second.as_raw_fd());
        let mut moves = vec![(b, a), (a, b)];
        let mut command = Command::new("sh");
        command.args(["-c", &format!("cat /dev/fd/{a}; echo; cat /dev/fd/{b}")]);
        // SAFETY: `place` allocates nothing and only calls fcntl and dup2 in the child.
        unsafe { command.pre_exec(move || place(&mut moves)) };
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "second\nfirst");
    }
}
