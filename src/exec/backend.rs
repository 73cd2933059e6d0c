//! Starting a backend with nothing it should not have, and making it die with the launcher:
//! descriptors 0-2 only (so a backend started while a supervised program runs never holds
//! the program's descriptors), PR_SET_PDEATHSIG, its process group registered for the fatal
//! signal handler of [`super::harden`], and a pidfd to wait on.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;
use nix::unistd::Pid;

use super::descriptor_limit;

/// Room for this many backend groups at once; far above any `--jobs`. A backend that finds
/// no room still dies with the launcher's thread that started it (PR_SET_PDEATHSIG).
const GROUP_SLOTS: usize = 256;
static GROUPS: [AtomicI32; GROUP_SLOTS] = [const { AtomicI32::new(0) }; GROUP_SLOTS];

/// Called from a signal handler: only atomics and kill.
pub(super) fn kill_registered_groups() {
    for slot in &GROUPS {
        let group = slot.load(Ordering::SeqCst);
        if group > 0 {
            // SAFETY: kill is async-signal-safe; a registered group is unregistered before
            // its leader is reaped, so the number still names that group.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

/// A backend's process group, killed with SIGKILL if the launcher gets a fatal signal while
/// this value lives. Drop it before reaping the group's leader.
#[derive(Debug)]
#[must_use]
pub struct BackendGroup(Option<usize>);

impl BackendGroup {
    pub fn register(group: Pid) -> BackendGroup {
        let slot = GROUPS.iter().position(|slot| {
            slot.compare_exchange(0, group.as_raw(), Ordering::SeqCst, Ordering::SeqCst).is_ok()
        });
        BackendGroup(slot)
    }
}

impl Drop for BackendGroup {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            GROUPS[slot].store(0, Ordering::SeqCst);
        }
    }
}

/// Makes `command`, a backend's program, start with descriptors 0-2 only and die when the
/// launcher's thread that starts it ends (PR_SET_PDEATHSIG: the kernel sends it when the
/// *thread* that forked exits, so it must be started by a thread that waits for it, as
/// `backend::process::run` does, whether on the main thread or a fetch worker).
pub fn isolate_backend(command: &mut Command) {
    let launcher = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (prctl, getppid, close_range or fcntl, getrlimit).
    unsafe { command.pre_exec(move || backend_child(launcher)) };
}

fn backend_child(launcher: Pid) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes nothing else.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The launcher died before the line above: no signal will come, so do not run at all.
    if nix::unistd::getppid() != launcher {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    close_on_exec_from(3)
}

/// Marks every descriptor from `first` up close-on-exec (not closed: std reports a failed
/// exec through one of them, itself close-on-exec).
fn close_on_exec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptor numbers.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return Ok(());
    }
    // Kernels before 5.11: one descriptor at a time, up to the limit.
    let limit = descriptor_limit().min(i32::MAX as u64) as RawFd;
    for fd in first..limit {
        // SAFETY: F_SETFD on a descriptor number; EBADF for numbers not open is expected.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// A descriptor that becomes readable once process `pid` has exited (`pidfd_open(2)`,
/// Linux 5.3), close-on-exec, so that a wait for a backend can sleep in `poll` until the
/// program or its output moves instead of waking up on a timer. `pid` must be an unreaped
/// child, so that it names that child and no other process. ENOSYS on older kernels.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and passes no memory; it returns a new
    // descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to this thread; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
