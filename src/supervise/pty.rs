//! The terminal, when there is one: whether we hold its foreground (then the program takes
//! it, and gives it back when it stops or ends), and, under `--mask`, a pseudo-terminal for
//! each of the program's output streams that is a terminal with us, so that the program
//! still sees a terminal (colours, line buffering) while its output passes through us.
//! Output processing is off on the pty: the bytes reach our terminal, which does its own.
//! A resize of our terminal is signalled to its foreground, the program, not to us: the
//! supervisor's loop copies the size over every quarter of a second.
#![allow(unsafe_code)]

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::pty::{Winsize, openpty};
use nix::sys::termios::{OutputFlags, SetArg, tcgetattr, tcsetattr};
use nix::unistd::{Pid, getpgrp, tcgetpgrp, tcsetpgrp};

use crate::error::Error;

nix::ioctl_read_bad!(get_window_size, nix::libc::TIOCGWINSZ, Winsize);
nix::ioctl_write_ptr_bad!(set_window_size, nix::libc::TIOCSWINSZ, Winsize);

/// Our terminal, when our process group is its foreground: the descriptor we reach it by.
#[derive(Debug, Clone, Copy)]
pub struct Terminal(RawFd);

impl Terminal {
    /// The first of stdin, stdout, stderr that is a terminal whose foreground we are (in
    /// the background, as under `&`, the program stays there too).
    pub fn foreground() -> Option<Terminal> {
        [0, 1, 2].into_iter().find_map(|fd| {
            let borrowed = stdio(fd);
            (borrowed.is_terminal() && tcgetpgrp(borrowed).ok() == Some(getpgrp())).then_some(Terminal(fd))
        })
    }

    pub fn fd(self) -> RawFd {
        self.0
    }

    /// Makes `group` the foreground (our SIGTTOU is blocked, as every signal is).
    pub fn give(self, group: Pid) {
        let _ = tcsetpgrp(stdio(self.0), group);
    }

    /// Takes the foreground back for our own group.
    pub fn take_back(self) {
        self.give(getpgrp());
    }
}

pub(super) fn stdio(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: 0-2 stay open for the life of the process (std reopens them on /dev/null if
    // they were closed at start).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// A pseudo-terminal: we read `master`; the program writes to `slave`.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// A pty for our descriptor `fd` (1 or 2) if it is a terminal, sized as it is.
pub fn for_output(fd: RawFd) -> Result<Option<Pty>, Error> {
    let ours = stdio(fd);
    if !ours.is_terminal() {
        return Ok(None);
    }
    let size = window_size(ours);
    let pair = openpty(size.as_ref(), None).map_err(|e| Error::System(format!("openpty: {e}")))?;
    // openpty's descriptors are inherited across exec: the program (and any backend a
    // re-fetch starts) would hold both ends of its pty at stray numbers, and a master the
    // program holds keeps the pty alive after ours closes. Its slave reaches it as 1 or 2
    // only (dup2 there clears the flag).
    for fd in [&pair.master, &pair.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| Error::System(format!("fcntl: {e}")))?;
    }
    if let Ok(mut settings) = tcgetattr(&pair.slave) {
        settings.output_flags.remove(OutputFlags::OPOST);
        let _ = tcsetattr(&pair.slave, SetArg::TCSANOW, &settings);
    }
    Ok(Some(Pty { master: pair.master, slave: pair.slave }))
}

/// Gives `pty` the size of our descriptor `fd`'s terminal (after a SIGWINCH).
pub fn resize(pty_master: BorrowedFd, fd: RawFd) {
    if let Some(size) = window_size(stdio(fd)) {
        // SAFETY: TIOCSWINSZ reads one Winsize from a valid pointer.
        let _ = unsafe { set_window_size(pty_master.as_raw_fd(), &size) };
    }
}

fn window_size(fd: impl AsFd) -> Option<Winsize> {
    let mut size = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one Winsize to a valid pointer.
    unsafe { get_window_size(fd.as_fd().as_raw_fd(), &mut size) }.ok().map(|_| size)
}
