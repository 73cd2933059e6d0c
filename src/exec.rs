//! The process-level steps: make the launcher a poor place to find secrets in (no core
//! dumps, not dumpable, so not readable through /proc or ptrace by the same user), make its
//! backends die with it, start each backend with nothing it should not have, and replace the
//! launcher with the program, its descriptor secrets placed as sealed in-memory files and
//! its inherited signal state given back.
//!
//! The one module with `unsafe`: placing a descriptor at an exact number, code that runs
//! between fork and exec, signal handlers, and reading what this process inherited before
//! Rust's runtime started have no safe API.
#![allow(unsafe_code)]

use std::convert::Infallible;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, SealFlag, fcntl};
use nix::libc;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{Pid, Whence, lseek, write};

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

/// The core limit this process started with, kept by [`protect_early`] so that [`harden`]
/// hands the program the caller's limit, not the 0 set here.
static STARTING_CORE_LIMIT: std::sync::OnceLock<(libc::rlim_t, libc::rlim_t)> = std::sync::OnceLock::new();

/// The first thing `main` does: no core dump, and no reading of our memory by the same user.
/// The environment may hold env-backend secrets from our first instruction, and a SIGQUIT
/// while the config loads (before [`harden`]) wrote them to a `core` file.
pub fn protect_early() -> Result<(), Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_CORE).map_err(system("getrlimit(RLIMIT_CORE)"))?;
    STARTING_CORE_LIMIT.get_or_init(|| (soft, hard));
    setrlimit(Resource::RLIMIT_CORE, 0, hard).map_err(system("setrlimit(RLIMIT_CORE)"))?;
    prctl::set_dumpable(false).map_err(system("prctl(PR_SET_DUMPABLE)"))
}

/// Before any secret is in memory: no core dump can hold one, other processes of the same
/// user cannot read our memory through /proc or ptrace, and a SIGINT, SIGTERM or SIGHUP
/// takes the backends' process groups down with us (see [`kill_backends_on_signal`]).
pub fn harden() -> Result<Hardened, Error> {
    let (soft, hard) = match STARTING_CORE_LIMIT.get() {
        Some(&limits) => limits,
        None => getrlimit(Resource::RLIMIT_CORE).map_err(system("getrlimit(RLIMIT_CORE)"))?,
    };
    setrlimit(Resource::RLIMIT_CORE, 0, hard).map_err(system("setrlimit(RLIMIT_CORE)"))?;
    prctl::set_dumpable(false).map_err(system("prctl(PR_SET_DUMPABLE)"))?;
    kill_backends_on_signal()?;
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
    let ignore_sigpipe = inherited_sigpipe() == Some(true);
    let (soft, hard) = (hardened.core_soft_limit, hardened.core_hard_limit);
    // The core limit comes back as the very last step before execve, not before the command
    // is built: until then a SIGQUIT could dump the secrets it holds (on hosts whose
    // fs.suid_dumpable is 2, even a process that is not dumpable dumps).
    // SAFETY: the closure runs in this process just before execve (std's `exec` does not
    // fork) and only calls signal() and setrlimit(), which are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            restore_sigpipe(ignore_sigpipe)?;
            setrlimit(Resource::RLIMIT_CORE, soft, hard).map_err(io::Error::from)
        })
    };
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

/// Puts each file at its descriptor number, without close-on-exec there, using no number
/// above the targets and the ones already open (under `ulimit -n 1024`, `fd: 1023` is the
/// highest this process may hold). A file goes to its target once no other file still to be
/// placed sits there; when every remaining target is taken by another remaining file (a
/// cycle: the memfd for fd 4 got number 3 and the one for fd 3 got number 4), one of them
/// moves to the lowest free number first.
fn place(files: Vec<(i32, OwnedFd)>) -> Result<(), Error> {
    let mut pending = files;
    while !pending.is_empty() {
        let free = pending
            .iter()
            .position(|(target, _)| !pending.iter().any(|(_, file)| file.as_raw_fd() == *target));
        let Some(index) = free else {
            let (_, file) = &mut pending[0];
            let raw = fcntl(&*file, FcntlArg::F_DUPFD_CLOEXEC(0)).map_err(system("moving a memfd"))?;
            // SAFETY: F_DUPFD_CLOEXEC just returned `raw` as a new descriptor that nothing
            // else owns; the old one is closed when the replaced OwnedFd drops.
            *file = unsafe { OwnedFd::from_raw_fd(raw) };
            continue;
        };
        let (target, file) = pending.swap_remove(index);
        if file.as_raw_fd() == target {
            fcntl(&file, FcntlArg::F_SETFD(FdFlag::empty())).map_err(system("placing a memfd"))?;
            // Left without an owner, so that it stays open across exec.
            let _ = file.into_raw_fd();
            continue;
        }
        // SAFETY: dup2 only touches descriptor numbers: `file` is open and owned by us, and
        // `target` is no other pending file, so it is replaced whatever it was (an inherited
        // descriptor the manifest asked us to overwrite, a placed file cannot be there as
        // targets are distinct, or nothing). The new descriptor at `target` is deliberately
        // left without an owner, so that it stays open across exec; dup2 clears its
        // close-on-exec. `file` itself is closed when it drops.
        let placed = unsafe { libc::dup2(file.as_raw_fd(), target) };
        if placed != target {
            return Err(system("placing a memfd")(Errno::last()));
        }
    }
    Ok(())
}

/// The highest descriptor number this process may hold, plus one (`ulimit -n`).
pub fn descriptor_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(u64::MAX, |(soft, _)| soft)
}

// Signal state inherited from our parent. Rust's runtime sets SIGPIPE to ignored before
// `main` runs, and std's Command sets it to default in every child, so neither the ignored
// SIGPIPE that systemd gives its services nor the default that a shell gives survives to the
// program unless it is read before the runtime starts: in an `.init_array` constructor, which
// the C library runs before calling Rust's `main`.

const SIGPIPE_UNKNOWN: u8 = 0;
const SIGPIPE_DEFAULT: u8 = 1;
const SIGPIPE_IGNORED: u8 = 2;
static SIGPIPE_INHERITED: AtomicU8 = AtomicU8::new(SIGPIPE_UNKNOWN);

#[used]
// SAFETY: `.init_array` holds pointers to `extern "C" fn()` run once at start-up; this is one.
#[unsafe(link_section = ".init_array")]
static RECORD_INHERITED_SIGNALS: extern "C" fn() = record_inherited_signals;

extern "C" fn record_inherited_signals() {
    // SAFETY: sigaction with no new action only reads the disposition into `old`, a plain C
    // struct for which all zeroes is a valid value.
    let ignored = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0)
            .then_some(old.sa_sigaction == libc::SIG_IGN)
    };
    let state = match ignored {
        Some(true) => SIGPIPE_IGNORED,
        Some(false) => SIGPIPE_DEFAULT,
        None => SIGPIPE_UNKNOWN,
    };
    SIGPIPE_INHERITED.store(state, Ordering::Relaxed);
}

/// Whether SIGPIPE was ignored when this process started (`None`: not known, as in a test
/// harness that links this library without the constructor having run).
pub fn inherited_sigpipe() -> Option<bool> {
    // Keeps the constructor's object file in the link: nothing else names it.
    std::hint::black_box(&RECORD_INHERITED_SIGNALS);
    match SIGPIPE_INHERITED.load(Ordering::Relaxed) {
        SIGPIPE_IGNORED => Some(true),
        SIGPIPE_DEFAULT => Some(false),
        _ => None,
    }
}

/// Just before exec of the program, after std has set SIGPIPE to default: ignore it again if
/// that is what we inherited. (std leaves the signal mask as it is, so the inherited one
/// passes through without help, as under env(1).) Only async-signal-safe calls.
fn restore_sigpipe(ignore: bool) -> io::Result<()> {
    // SAFETY: setting a disposition to SIG_IGN installs no code; signal is async-signal-safe.
    if ignore && unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// Backends die with the launcher. Each backend runs in its own process group (so that a
// timeout kills whatever it started), which also means a Ctrl-C on the terminal does not
// reach it. So while backends run, SIGINT, SIGTERM and SIGHUP are caught: the handler kills
// every registered group and exits 128+N, as a shell reports a death by signal. A signal
// the launcher inherited as ignored stays ignored (as a shell leaves it): whoever started us
// did not want it to stop us. A caught signal is reset to default by execve, which is what it
// was when we started, so the program inherits exactly what we did.

/// Room for this many backend groups at once; far above any `--jobs`. A backend that finds
/// no room still dies with the launcher's thread that started it (PR_SET_PDEATHSIG).
const GROUP_SLOTS: usize = 256;
static GROUPS: [AtomicI32; GROUP_SLOTS] = [const { AtomicI32::new(0) }; GROUP_SLOTS];
const FATAL_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_fatal_signal(signal: libc::c_int) {
    for slot in &GROUPS {
        let group = slot.load(Ordering::SeqCst);
        if group > 0 {
            // SAFETY: kill is async-signal-safe; a registered group is unregistered before
            // its leader is reaped, so the number still names that group.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
    // SAFETY: _exit is async-signal-safe and ends every thread at once; each backend's
    // PR_SET_PDEATHSIG then fires too.
    unsafe { libc::_exit(128 + signal) }
}

/// Catches SIGINT, SIGTERM and SIGHUP unless they were ignored, see above.
fn kill_backends_on_signal() -> Result<(), Error> {
    for signal in FATAL_SIGNALS {
        // SAFETY: sigaction reads the current disposition into a zeroed C struct, then
        // installs a handler that only calls async-signal-safe functions (kill, _exit) and
        // reads atomics; its mask blocks the other fatal signals while it runs.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                return Err(system("reading a signal disposition")(Errno::last()));
            }
            if old.sa_sigaction != libc::SIG_DFL {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            for other in FATAL_SIGNALS {
                libc::sigaddset(&mut action.sa_mask, other);
            }
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(system("catching a signal")(Errno::last()));
            }
        }
    }
    Ok(())
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
