//! The launcher's side of the init duties: it takes every signal it may (all but the
//! synchronous faults), reads them from a signalfd in the supervisor's one loop, and says
//! what each one means ([`action`], pure); it reaps every child that ends, its own program
//! and the orphans the kernel hands it as PID 1 or as a child subreaper ([`reap`]).

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::prctl;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::error::Error;

/// Faults the kernel raises in the thread that caused them: blocking them would turn a
/// crash into a hang (tini leaves the same ones alone).
const SYNCHRONOUS: [Signal; 7] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGABRT,
];

/// What the supervisor does with a signal it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGCHLD: a child changed state; reap (never forwarded: it is about our children).
    Reap,
    /// Passed on to the program as it is (by number: real-time signals have no [`Signal`]).
    Forward(i32),
    /// Passed on, then the launcher stops itself, so that the shell that started it sees
    /// the job stopped (SIGTSTP, SIGTTIN, SIGTTOU: dumb-init's job control).
    ForwardThenStop(i32),
    /// SIGWINCH: the program's pty (if it has one) takes our terminal's new size, then the
    /// program is told.
    Resize,
}

/// What signal number `signal` means to the supervisor.
pub fn action(signal: i32) -> Action {
    match Signal::try_from(signal) {
        Ok(Signal::SIGCHLD) => Action::Reap,
        Ok(Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU) => Action::ForwardThenStop(signal),
        Ok(Signal::SIGWINCH) => Action::Resize,
        _ => Action::Forward(signal),
    }
}

/// Sends signal number `signal` to `pid` (a group when negative); gone already is fine.
#[allow(unsafe_code)]
pub fn send(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes plain numbers and touches no memory of ours.
    unsafe { nix::libc::kill(pid, signal) };
}

/// Every signal this process takes over: all but SIGKILL, SIGSTOP and the faults.
fn taken() -> SigSet {
    let mut set = SigSet::all();
    for signal in SYNCHRONOUS {
        set.remove(signal);
    }
    set
}

/// The signals, blocked in this thread (and so in every thread it starts from now on) and
/// read from a descriptor instead, so that none runs a handler: the fatal-signal handler
/// of `exec::harden` (kill the backends, exit) is for a launcher with no program yet. Also
/// makes us the reaper of orphans when we are not PID 1 already.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    pub fn take_over() -> Result<Signals, Error> {
        let system = |what: &'static str| move |errno: Errno| Error::System(format!("{what}: {errno}"));
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&taken()), None).map_err(system("blocking signals"))?;
        let fd = SignalFd::with_flags(&taken(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(system("signalfd"))?;
        if std::process::id() != 1 {
            prctl::set_child_subreaper(true).map_err(system("prctl(PR_SET_CHILD_SUBREAPER)"))?;
        }
        Ok(Signals { fd })
    }

    /// The numbers of the signals received since the last call, in order; but not a
    /// SIGPIPE we raised ourselves by writing to a closed pipe (it is about our output, not
    /// for the program).
    pub fn received(&self) -> Vec<i32> {
        let us = std::process::id();
        let mut signals = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            let ours = info.ssi_pid == us;
            if !(ours && info.ssi_signo == libc::SIGPIPE as u32) {
                signals.push(info.ssi_signo as i32);
            }
        }
        signals
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What became of the program, if anything, after a SIGCHLD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramState {
    Running,
    /// Stopped by a job-control signal.
    Stopped,
    /// Ended, with its own code or by a signal.
    Ended(Ending),
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(u8),
    /// Killed by this signal number (a real-time one too).
    Killed(i32),
}

impl Ending {
    /// The code a shell reports for it: its own, or 128+N for signal N.
    pub fn code(self) -> u8 {
        match self {
            Ending::Exited(code) => code,
            Ending::Killed(signal) => 128u8.wrapping_add(signal as u8),
        }
    }
}

/// Reaps after a SIGCHLD: the program's state, and every other child that ended when
/// `orphans` (false while a re-fetch runs: a backend is a child too, and its runner waits
/// for it by its own pid, which a `waitpid(-1)` here would steal).
///
/// libc's waitpid, not nix's: nix reports a death by a real-time signal (which has no
/// `Signal`) as an error, after the kernel has already reaped the child, so the program's
/// end would be lost and the launcher would wait for ever.
#[allow(unsafe_code)]
pub fn reap(program: Pid, orphans: bool) -> ProgramState {
    let flags = libc::WNOHANG | libc::WUNTRACED;
    let target = if orphans { -1 } else { program.as_raw() };
    let mut state = ProgramState::Running;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int to a valid pointer.
        let pid = unsafe { libc::waitpid(target, &mut status, flags) };
        if pid <= 0 {
            return state; // 0: nothing more has ended; -1: no child left (ECHILD) or EINTR
        }
        if pid == program.as_raw() {
            if libc::WIFEXITED(status) {
                state = ProgramState::Ended(Ending::Exited(libc::WEXITSTATUS(status) as u8));
            } else if libc::WIFSIGNALED(status) {
                state = ProgramState::Ended(Ending::Killed(libc::WTERMSIG(status)));
            } else if libc::WIFSTOPPED(status) {
                state = ProgramState::Stopped;
            }
            if !orphans {
                return state;
            }
        }
        // Otherwise an orphan reaped (or stopped: nothing to do for it).
    }
}

/// Signals whose default action dumps core: a launcher killed by one of them is a core of
/// the launcher, values and all, should the host dump despite RLIMIT_CORE 0 and
/// PR_SET_DUMPABLE 0; for these the launcher exits 128+N instead of dying of them.
const DUMPING: [i32; 10] = [
    libc::SIGQUIT,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGSYS,
];

/// The program died of `signal`: the launcher dies of the same signal, so that its parent
/// sees what it would have seen after an exec (a shell's `$?` is 128+N either way, but
/// systemd counts a SIGTERM death as a clean stop and exit code 143 as a failure, and bash
/// ends a script whose child died of SIGINT, not one whose child exited 130). sudo does the
/// same; tini and dumb-init exit 128+N. Returns (the caller exits 128+N) when that cannot
/// be: as PID 1, whose own default-action signals the kernel discards, and for signals that
/// dump core ([`DUMPING`]) or whose default is not to terminate.
#[allow(unsafe_code)]
pub fn die_as(signal: i32) {
    if std::process::id() == 1 || DUMPING.contains(&signal) {
        return;
    }
    // SAFETY: plain calls on this thread's signal state with valid (local) arguments; the
    // default disposition installs no code of ours.
    unsafe {
        if libc::signal(signal, libc::SIG_DFL) == libc::SIG_ERR {
            return;
        }
        // Pending on this thread while blocked, delivered as soon as it is unblocked.
        libc::raise(signal);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    // Still here: the signal does not terminate by default (none of the program's deaths).
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_but_sigchld_is_forwarded_and_job_control_stops_us_too() {
        assert_eq!(action(Signal::SIGCHLD as i32), Action::Reap);
        assert_eq!(action(Signal::SIGWINCH as i32), Action::Resize);
        for signal in [Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU] {
            assert_eq!(action(signal as i32), Action::ForwardThenStop(signal as i32));
        }
        for signal in Signal::iterator().filter(|s| {
            ![Signal::SIGCHLD, Signal::SIGWINCH, Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU]
                .contains(s)
        }) {
            assert_eq!(action(signal as i32), Action::Forward(signal as i32), "{signal}");
        }
        // Real-time signals, which have no name in nix, are forwarded too.
        let realtime = nix::libc::SIGRTMIN() + 2;
        assert_eq!(action(realtime), Action::Forward(realtime));
    }

    #[test]
    fn faults_are_never_taken_over() {
        let set = taken();
        for signal in SYNCHRONOUS {
            assert!(!set.contains(signal), "{signal}");
        }
        assert!(
            set.contains(Signal::SIGTERM) && set.contains(Signal::SIGCHLD) && set.contains(Signal::SIGINT)
        );
    }
}
