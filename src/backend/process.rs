//! Running a backend's program: stdin from `/dev/null`, descriptors 0-2 only, the
//! [`Environment`] it is given and nothing else, its own process group, output read with
//! bounds, and a deadline after which the whole group is killed; if the launcher dies first,
//! so does the program (see `exec::isolate_backend`). Shared by every backend that runs a
//! program, so each of them gets the same guarantees.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use zeroize::Zeroize;

use crate::exec;
use crate::secret::SecretValue;

/// The variables a backend's program runs with: the launcher's, less the ones that only the
/// launcher may read (control variables, env-backend sources, store credentials). Computed
/// once per launch by `inject::backend_environment` and handed to backends as data, so that
/// no backend decides for itself what to pass on.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Environment(Vec<(OsString, OsString)>);

impl Environment {
    pub fn new(variables: Vec<(OsString, OsString)>) -> Environment {
        Environment(variables)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.0.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }
}

/// Names only: values are the launcher's business.
impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| k)).finish()
    }
}

/// The most a backend may print on stdout: far above any real secret, far below trouble.
pub const STDOUT_LIMIT: usize = 1 << 20;
/// How much of a backend's stderr is kept for the error message.
const STDERR_KEPT: usize = 2048;
/// Without a pidfd (kernels before 5.3), how often a wait for output also checks whether the
/// program has exited, so that a grandchild holding the pipe open does not keep us waiting
/// for the deadline.
const EXIT_CHECK: Duration = Duration::from_millis(10);

/// A program that ran to its end within the deadline.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: SecretValue,
    /// The first part of stderr, lossily decoded and trimmed, for error messages.
    pub stderr: String,
}

#[derive(Debug)]
pub enum RunError {
    /// The program could not be started (not found, not executable).
    Spawn(io::Error),
    /// The deadline passed; the process group was killed.
    TimedOut,
    /// More than [`STDOUT_LIMIT`] bytes on stdout; the process group was killed.
    TooLarge,
    /// Reading its output failed.
    Io(io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "cannot run it: {e}"),
            RunError::TimedOut => f.write_str("timed out"),
            RunError::TooLarge => {
                write!(f, "it printed more than {} KiB, which no secret is", STDOUT_LIMIT / 1024)
            }
            RunError::Io(e) => write!(f, "cannot read its output: {e}"),
        }
    }
}

/// `run` for a backend: its failures as the backend's, naming `program`.
pub fn run_backend(
    command: Command,
    program: &str,
    request: &super::FetchRequest,
) -> Result<Finished, super::FetchError> {
    run(command, request.environment, request.timeout).map_err(|e| match e {
        RunError::TimedOut => super::FetchError::TimedOut,
        other => super::FetchError::Failed(format!("`{program}`: {other}")),
    })
}

/// Runs `command` with exactly `environment` to completion, or kills its process group when
/// `timeout` passes. Waits for the program on the calling thread, which its
/// PR_SET_PDEATHSIG needs.
pub(crate) fn run(
    mut command: Command,
    environment: &Environment,
    timeout: Duration,
) -> Result<Finished, RunError> {
    let deadline = Instant::now() + timeout;
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    command.env_clear().envs(environment.iter());
    exec::isolate_backend(&mut command);
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let pid = Pid::from_raw(child.id() as i32);
    let group = exec::BackendGroup::register(pid);
    let outcome = collect(&mut child, pid, deadline);
    // The child is not reaped yet, so its PID (the group's ID) cannot have been reused:
    // this kills only what the backend left behind, or all of it on timeout.
    let _ = killpg(pid, Signal::SIGKILL);
    drop(group);
    let status = child.wait().map_err(RunError::Io)?;
    let (stdout, stderr) = outcome?;
    Ok(Finished { status, stdout, stderr })
}

fn collect(child: &mut Child, pid: Pid, deadline: Instant) -> Result<(SecretValue, String), RunError> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Readable once the program has exited, so the wait below sleeps in one `poll` until
    // output or the exit comes. Kernels before 5.3 have no pidfd: then ask every EXIT_CHECK.
    let exit = exec::pidfd_open(pid).ok();
    let mut value = SecretValue::with_capacity(1024);
    let mut messages = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut exited = false;
    let result = loop {
        if stdout.is_none() && stderr.is_none() {
            break Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            break Err(RunError::TimedOut);
        }
        // Once the program has exited, only what is already in the pipes is still its output.
        let wait = match (exited, &exit) {
            (true, _) => Duration::ZERO,
            (false, Some(_)) => deadline - now,
            (false, None) => (deadline - now).min(EXIT_CHECK),
        };
        let ready = {
            let watched = [
                stdout.as_ref().map(AsFd::as_fd),
                stderr.as_ref().map(AsFd::as_fd),
                exit.as_ref().filter(|_| !exited).map(AsFd::as_fd),
            ];
            let mut fds: Vec<PollFd> =
                watched.iter().flatten().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
            match poll(&mut fds, poll_timeout(wait)) {
                Ok(0) => None,
                Ok(_) => {
                    let mut events = fds.iter().map(|fd| fd.any().unwrap_or(true));
                    Some(watched.map(|fd| fd.is_some() && events.next() == Some(true)))
                }
                Err(Errno::EINTR) => continue,
                Err(e) => break Err(RunError::Io(e.into())),
            }
        };
        // Nothing within `wait`: the pipes are drained, the deadline passed (seen above), or
        // without a pidfd it is time to ask again.
        let Some([stdout_ready, stderr_ready, gone]) = ready else {
            if exited {
                break Ok(());
            }
            if exit.is_none() {
                exited = has_exited(pid);
            }
            continue;
        };
        exited |= gone;
        if stdout_ready {
            match stdout.as_mut().map(|pipe| pipe.read(&mut buffer)) {
                Some(Ok(0)) => stdout = None,
                Some(Ok(n)) if value.len() + n > STDOUT_LIMIT => break Err(RunError::TooLarge),
                Some(Ok(n)) => value.extend_from_slice(&buffer[..n]),
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(e)) => break Err(RunError::Io(e)),
                None => {}
            }
        }
        if stderr_ready {
            let mut chunk = [0u8; 1024];
            match stderr.as_mut().map(|pipe| pipe.read(&mut chunk)) {
                Some(Ok(0)) => stderr = None,
                Some(Ok(n)) => {
                    let room = STDERR_KEPT.saturating_sub(messages.len());
                    messages.extend_from_slice(&chunk[..n.min(room)]);
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(e)) => break Err(RunError::Io(e)),
                None => {}
            }
        }
    };
    buffer.zeroize();
    result?;
    if !exited {
        match &exit {
            Some(exit) => wait_for_pidfd(exit, deadline)?,
            None => wait_for_exit(pid, deadline)?,
        }
    }
    Ok((value, super::printable(String::from_utf8_lossy(&messages).trim())))
}

/// `wait` for `poll`, rounded up to whole milliseconds so that a wait never ends just before
/// the deadline it was computed from (and spins until it passes).
fn poll_timeout(wait: Duration) -> PollTimeout {
    let millis = wait.as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}

/// Whether the child has exited, without reaping it (so its PID stays reserved).
fn has_exited(pid: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive))
}

/// The program closed its output; it normally exits at once. Sleeps in `poll` on its pidfd
/// until it has exited (without reaping it) or the deadline passes.
fn wait_for_pidfd(exit: &OwnedFd, deadline: Instant) -> Result<(), RunError> {
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match poll(&mut [PollFd::new(exit.as_fd(), PollFlags::POLLIN)], poll_timeout(wait)) {
            Ok(0) if wait.is_zero() => return Err(RunError::TimedOut),
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(RunError::Io(e.into())),
        }
    }
}

/// [`wait_for_pidfd`] without a pidfd (kernels before 5.3). Backs off from 50 µs so that
/// the common case costs nothing and a program that lingers costs little.
fn wait_for_exit(pid: Pid, deadline: Instant) -> Result<(), RunError> {
    let mut pause = Duration::from_micros(50);
    while !has_exited(pid) {
        if Instant::now() >= deadline {
            return Err(RunError::TimedOut);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait rounds up to whole milliseconds: never a `poll` that ends just before the
    /// deadline it was computed from, and never a zero wait for a deadline not yet passed.
    #[test]
    fn poll_waits_round_up() {
        let millis = |wait: Duration| i32::from(poll_timeout(wait));
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::from_micros(999)), 1);
        assert_eq!(millis(Duration::from_millis(1)), 1);
        assert_eq!(millis(Duration::from_micros(1001)), 2);
        assert_eq!(poll_timeout(Duration::from_secs(u64::MAX)), PollTimeout::MAX);
    }

    #[test]
    fn an_environment_shows_names_only() {
        let environment = Environment::new(vec![("TOKEN".into(), "CANARY-value".into())]);
        assert_eq!(format!("{environment:?}"), "[\"TOKEN\"]");
        let pairs: Vec<_> = environment.iter().collect();
        assert_eq!(pairs, [(OsStr::new("TOKEN"), OsStr::new("CANARY-value"))]);
    }

    #[test]
    fn run_errors_say_what_happened() {
        assert_eq!(RunError::TimedOut.to_string(), "timed out");
        assert_eq!(RunError::TooLarge.to_string(), "it printed more than 1024 KiB, which no secret is");
        let spawn = RunError::Spawn(io::Error::from(io::ErrorKind::NotFound)).to_string();
        assert!(spawn.starts_with("cannot run it: "), "{spawn}");
    }
}
