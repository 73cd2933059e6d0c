//! For the broker: taking ownership of descriptor numbers the kernel handed us (systemd's
//! `LISTEN_FDS`, `SCM_RIGHTS`), and `pidfd_send_signal`, which nix does not wrap.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;

/// Owns `fd`, a descriptor number this process was just given and nothing else owns: one of
/// systemd's `LISTEN_FDS` (checked open here), or one that arrived by `SCM_RIGHTS`.
/// Close-on-exec is set, so no backend or program inherits it.
pub(crate) fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD/F_SETFD only read and set the flags of a descriptor number.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the number is open (F_GETFD succeeded) and, per the caller, unowned.
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// `pidfd_send_signal(pidfd, 0)`: succeeds while the process the pidfd pins has not been
/// reaped; no signal is sent.
pub(crate) fn pidfd_alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: the syscall takes a descriptor, a signal number (0: none), a null siginfo and
    // flags; it passes no memory of ours.
    let result = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0 as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    result == 0
}
