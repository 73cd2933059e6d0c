//! `run --supervise`: the launcher stays as the program's parent, to do
//! what an init does ([`signals`]: forward every signal, reap orphans, exit with the
//! program's code), to mask values in its output ([`mask`], on a [`pty`] when the output is
//! a terminal), and to restart it when a secret rotates ([`watch`]). Everything happens in
//! one loop ([`supervise`]) driven by events: a signal, the program's end, a re-fetch done,
//! a timer. Output is copied by one thread per stream, so a slow reader of our stdout never
//! holds up a signal; a re-fetch runs in a thread of its own for the same reason.
//!
//! The values the program was given are kept in `exec::LockedValues` (locked, left out of
//! core dumps, wiped on drop). std's `Command` never holds an env value: `exec::spawn` execs
//! an image of its own, wiped once the program has started. What is not wiped: the masking
//! automaton's own copies of the forms it looks for (see [`mask`]).

mod mask;
mod pty;
mod signals;
mod watch;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::unistd::{Pid, getpid};

use crate::audit::Audit;
use crate::error::Error;
use crate::exec::{self, Hardened, LockedValues, Streams, Supervision};
use crate::inject::LaunchPlan;
use crate::name::Name;
use crate::secret::SecretValue;
use mask::Masker;
use pty::Terminal;
use signals::{Action, Ending, ProgramState, Signals};

/// How often a program's ptys take our terminal's size (see the loop).
const RESIZE_EVERY: Duration = Duration::from_millis(250);

/// The values of one fetch, in the order of the manifest's names.
pub type Values = Vec<(Name, SecretValue)>;

/// How to supervise (`run` flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// `--mask`.
    pub mask: bool,
    /// `--watch INTERVAL`.
    pub watch: Option<Duration>,
    /// `--stop-signal` (default SIGTERM).
    pub stop_signal: Signal,
    /// `--stop-timeout` (default 10 s), then SIGKILL.
    pub stop_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            mask: false,
            watch: None,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// Whether to supervise: when asked (`--supervise`, `--mask`, `--watch`), or when we are
/// PID 1 (exec would leave nobody to reap, and the program as PID 1 ignores SIGTERM), unless
/// `--exec` says to exec all the same.
pub fn wanted(asked: bool, force_exec: bool, pid: u32) -> bool {
    asked || (pid == 1 && !force_exec)
}

/// The steps of the one pipeline that a supervisor repeats, given by `run` so that there is
/// no second copy of them: fetch every value again, and build the plan from values.
pub struct Pipeline<'p> {
    pub fetch: &'p (dyn Fn() -> Result<Values, Error> + Sync),
    pub plan: &'p dyn Fn(&Values) -> Result<LaunchPlan, Error>,
    pub audit: &'p Audit,
}

/// Starts the program with `values` and stays until it ends; returns its exit code (128+N
/// when signal N killed it). Fails only if the program cannot be started (126, 127), then
/// or at a restart.
pub fn supervise(
    options: &Options,
    hardened: Hardened,
    values: Values,
    pipeline: Pipeline,
) -> Result<u8, Error> {
    // Before the first thread or child: every thread started from here on inherits the mask.
    let signals = Signals::take_over()?;
    let terminal = Terminal::foreground();
    let plan = (pipeline.plan)(&values)?;
    let mut current = watch::lock(values)?;
    if let Some(note) = current.note() {
        warn(format_args!("{note}"));
    }
    let mut program = Program::start(plan, &hardened, terminal, options.mask.then_some(&current))?;
    let (wake_read, wake_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|e| Error::System(format!("pipe: {e}")))?;
    let wake_write = Arc::new(wake_write);
    std::thread::scope(|scope| {
        let (results, arrived) = mpsc::channel::<Result<Values, Error>>();
        let mut fetching: Option<std::thread::ScopedJoinHandle<'_, ()>> = None;
        let mut next_fetch = options.watch.map(|interval| watch::next_fetch(Instant::now(), interval));
        // A restart under way: when the old program must be gone by, and the new values.
        let mut stopping: Option<(Instant, Values)> = None;
        loop {
            let now = Instant::now();
            let due = [
                next_fetch.filter(|_| fetching.is_none() && stopping.is_none()),
                stopping.as_ref().map(|(deadline, _)| *deadline),
                // Our terminal sends SIGWINCH to its foreground, the program, never to us:
                // its ptys follow the terminal's size by looking now and then.
                (!program.ptys.is_empty()).then(|| now + RESIZE_EVERY),
            ];
            let timeout = due.into_iter().flatten().min().map(|at| at.saturating_duration_since(now));
            let timeout = timeout.map_or(PollTimeout::NONE, |t| {
                PollTimeout::try_from(t.as_millis().min(60_000) as u32 + 1).unwrap_or(PollTimeout::MAX)
            });
            let mut fds = [
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake_read.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, timeout);
            program.resize();

            for signal in signals.received() {
                match signals::action(signal) {
                    Action::Reap => match signals::reap(program.pid, fetching.is_none()) {
                        ProgramState::Running => {}
                        ProgramState::Stopped => program.stopped(terminal),
                        ProgramState::Ended(ending) => {
                            program.finish();
                            let Some((_, values)) = stopping.take() else {
                                return finish(terminal, ending, fetching.is_some(), current);
                            };
                            // A restart that cannot start the program ends us: the terminal
                            // goes back to our group first, not left with the ended one.
                            let give_back = |error: Error| {
                                if let Some(terminal) = terminal {
                                    terminal.take_back();
                                }
                                error
                            };
                            let plan = (pipeline.plan)(&values).map_err(give_back)?;
                            current = watch::lock(values).map_err(give_back)?;
                            program =
                                Program::start(plan, &hardened, terminal, options.mask.then_some(&current))
                                    .map_err(give_back)?;
                            next_fetch = options.watch.map(|i| watch::next_fetch(Instant::now(), i));
                        }
                    },
                    Action::Forward(signal) => signals::send(program.pid.as_raw(), signal),
                    Action::ForwardThenStop(signal) => {
                        signals::send(program.pid.as_raw(), signal);
                        signals::send(getpid().as_raw(), Signal::SIGSTOP as i32);
                    }
                    Action::Resize => {
                        program.resize();
                        signals::send(program.pid.as_raw(), Signal::SIGWINCH as i32);
                    }
                }
            }

            // A re-fetch came back.
            let mut byte = [0u8; 16];
            while nix::unistd::read(&wake_read, &mut byte).is_ok_and(|n| n > 0) {}
            if let Ok(result) = arrived.try_recv() {
                if let Some(handle) = fetching.take() {
                    let _ = handle.join();
                }
                match result {
                    Ok(values) => {
                        let changed = watch::changed(&current, &values);
                        if changed.is_empty() {
                            next_fetch = options.watch.map(|i| watch::next_fetch(Instant::now(), i));
                        } else {
                            pipeline.audit.rotated(&changed);
                            signals::send(program.pid.as_raw(), options.stop_signal as i32);
                            stopping = Some((Instant::now() + options.stop_timeout, values));
                        }
                    }
                    Err(error) => {
                        warn(format_args!(
                            "fetching the secrets again failed; the program keeps running with the values it has, and the next interval tries again: {error}"
                        ));
                        next_fetch = options.watch.map(|i| watch::next_fetch(Instant::now(), i));
                    }
                }
                // Children that ended while the re-fetch ran (it had backends of its own, so
                // only the program was reaped): the next turn reaps them all.
                signals::send(getpid().as_raw(), Signal::SIGCHLD as i32);
            }

            let now = Instant::now();
            if let Some((deadline, _)) = &mut stopping
                && now >= *deadline
            {
                // The stop signal was not enough: the program and whatever it started.
                signals::send(-program.pid.as_raw(), Signal::SIGKILL as i32);
                signals::send(program.pid.as_raw(), Signal::SIGKILL as i32);
                *deadline = now + Duration::from_secs(3600);
            }
            if fetching.is_none() && stopping.is_none() && next_fetch.is_some_and(|at| now >= at) {
                next_fetch = None;
                let (results, wake) = (results.clone(), Arc::clone(&wake_write));
                let fetch = pipeline.fetch;
                fetching = Some(scope.spawn(move || {
                    let _ = results.send(fetch());
                    let _ = nix::unistd::write(wake.as_fd(), b"!");
                }));
            }
        }
    })
}

/// The program has ended: the terminal back to us, the values wiped, and its code. A
/// re-fetch still running would hold the exit up for as long as its store takes: its
/// backends are killed and the process ends here. A program killed by a signal: see
/// [`signals::die_as`].
fn finish(
    terminal: Option<Terminal>,
    ending: Ending,
    fetching: bool,
    current: LockedValues,
) -> Result<u8, Error> {
    if let Some(terminal) = terminal {
        terminal.take_back();
    }
    drop(current);
    if fetching {
        exec::kill_backends();
    }
    if let Ending::Killed(signal) = ending {
        signals::die_as(signal);
    }
    if fetching {
        std::process::exit(i32::from(ending.code()));
    }
    Ok(ending.code())
}

/// One run of the program: its pid, the values it was given, and the threads copying its
/// output when it is masked.
struct Program {
    pid: Pid,
    _values: LockedValues,
    pumps: Vec<JoinHandle<()>>,
    /// Closed to tell the pumps the program has ended.
    stop: Option<OwnedFd>,
    /// The ptys' masters with our descriptor each stands for, for SIGWINCH. Weak: a pump
    /// that stops (our terminal went away) closes its master, so the program's writes fail
    /// as they would on that terminal, rather than block once the pty's buffer is full.
    ptys: Vec<(Weak<OwnedFd>, i32)>,
}

impl Program {
    fn start(
        plan: LaunchPlan,
        hardened: &Hardened,
        terminal: Option<Terminal>,
        mask: Option<&LockedValues>,
    ) -> Result<Program, Error> {
        let supervision = Supervision { terminal: terminal.map(Terminal::fd), parent: getpid() };
        let Some(values) = mask else {
            let spawned = exec::spawn(plan, hardened, Streams::default(), Some(supervision))?;
            return Ok(Program {
                pid: spawned.pid(),
                _values: spawned.values,
                pumps: vec![],
                stop: None,
                ptys: vec![],
            });
        };
        let (masker, short) = Masker::new(values.iter());
        for name in short {
            warn(format_args!(
                "secret `{name}` is shorter than {} bytes and is not masked in the program's output",
                mask::MIN_MASKED
            ));
        }
        let masker = Arc::new(masker);
        let (stop_read, stop_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::System(format!("pipe: {e}")))?;
        let stop_read = Arc::new(stop_read);
        // Each output stream: a pty when it is a terminal with us, else a pipe.
        let mut sources = Vec::new();
        let mut ends = Vec::new();
        let mut ptys = Vec::new();
        for fd in [1, 2] {
            let (ours, theirs) = match pty::for_output(fd)? {
                Some(pty) => {
                    let master = Arc::new(pty.master);
                    ptys.push((Arc::downgrade(&master), fd));
                    (master, pty.slave)
                }
                None => {
                    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                        .map_err(|e| Error::System(format!("pipe: {e}")))?;
                    (Arc::new(read), write)
                }
            };
            sources.push(ours);
            ends.push(theirs);
        }
        let stderr = ends.pop().expect("two streams");
        let stdout = ends.pop().expect("two streams");
        let streams =
            Streams { stdin: Stdio::inherit(), stdout: Stdio::from(stdout), stderr: Stdio::from(stderr) };
        let spawned = exec::spawn(plan, hardened, streams, Some(supervision))?;
        let pumps = sources
            .into_iter()
            .zip([1, 2])
            .map(|(source, fd)| {
                let (masker, stop) = (Arc::clone(&masker), Arc::clone(&stop_read));
                std::thread::spawn(move || mask::pump(source, sink(fd), masker, stop))
            })
            .collect();
        Ok(Program { pid: spawned.pid(), _values: spawned.values, pumps, stop: Some(stop_write), ptys })
    }

    /// After the program's end: the pumps copy what it left and stop.
    fn finish(&mut self) {
        self.stop = None;
        for pump in self.pumps.drain(..) {
            let _ = pump.join();
        }
    }

    fn resize(&self) {
        for (master, fd) in &self.ptys {
            if let Some(master) = master.upgrade() {
                pty::resize(master.as_fd(), *fd);
            }
        }
    }

    /// The program stopped (Ctrl-Z reached its group): as a shell would, take the terminal
    /// back and stop ourselves, so that the shell that started us sees the job stopped;
    /// once continued (`fg`), give the terminal back and continue the program.
    fn stopped(&self, terminal: Option<Terminal>) {
        let Some(terminal) = terminal else { return };
        terminal.take_back();
        signals::send(getpid().as_raw(), Signal::SIGSTOP as i32);
        // Here again after SIGCONT.
        terminal.give(self.pid);
        signals::send(-self.pid.as_raw(), Signal::SIGCONT as i32);
    }
}

/// A warning on our stderr. Not `eprintln!`, which panics when stderr is a pipe nobody reads
/// any more: the launcher stays for the program, whatever became of its own stderr.
fn warn(message: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "mxm-secrets: warning: {message}");
}

fn sink(fd: i32) -> BorrowedFd<'static> {
    pty::stdio(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervises_when_asked_or_as_pid_1_unless_exec_is_forced() {
        assert!(!wanted(false, false, 4242));
        assert!(wanted(true, false, 4242));
        assert!(wanted(false, false, 1));
        assert!(!wanted(false, true, 1));
    }
}
