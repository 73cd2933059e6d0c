//! Making the launcher a poor place to find secrets in: no core dumps, not dumpable (so not
//! readable through /proc or ptrace by the same user), and a SIGINT, SIGTERM or SIGHUP that
//! takes the backends' process groups down with it. Also what the program is owed back: the
//! core limit and the SIGPIPE disposition this process started with.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::libc;
use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

use super::{backend, system};
use crate::error::Error;

/// Proof that [`harden`] ran, carrying what the program is given back when it starts.
#[derive(Debug)]
#[must_use]
pub struct Hardened {
    pub(super) core_soft_limit: libc::rlim_t,
    pub(super) core_hard_limit: libc::rlim_t,
}

/// The core limit this process started with, kept by [`protect_early`] so that [`harden`]
/// hands the program the caller's limit, not the 0 set here.
static STARTING_CORE_LIMIT: OnceLock<(libc::rlim_t, libc::rlim_t)> = OnceLock::new();

/// The first thing `main` does: no core dump, and no reading of our memory by the same user.
/// The environment may hold env-backend secrets from our first instruction, and a SIGQUIT
/// while the config loads (before [`harden`]) wrote them to a `core` file.
/// Returns the core limit the process started with (from its first call: later calls see
/// the 0 set here).
pub fn protect_early() -> Result<(libc::rlim_t, libc::rlim_t), Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_CORE).map_err(system("getrlimit(RLIMIT_CORE)"))?;
    let starting = *STARTING_CORE_LIMIT.get_or_init(|| (soft, hard));
    setrlimit(Resource::RLIMIT_CORE, 0, hard).map_err(system("setrlimit(RLIMIT_CORE)"))?;
    prctl::set_dumpable(false).map_err(system("prctl(PR_SET_DUMPABLE)"))?;
    Ok(starting)
}

/// Before any secret is in memory: no core dump can hold one, other processes of the same
/// user cannot read our memory through /proc or ptrace, and a SIGINT, SIGTERM or SIGHUP
/// takes the backends' process groups down with us (see [`kill_backends_on_signal`]).
pub fn harden() -> Result<Hardened, Error> {
    // Library callers and tests never ran protect_early: this call records their limit.
    let (soft, hard) = protect_early()?;
    kill_backends_on_signal()?;
    Ok(Hardened { core_soft_limit: soft, core_hard_limit: hard })
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
/// The signal mask this process started with, one bit per signal (bit N-1 for signal N), and
/// whether it was read: std empties the mask in every child it starts, and a supervisor
/// blocks every signal in itself, so the program is given this back (as env(1) passes it).
static MASK_INHERITED: AtomicU64 = AtomicU64::new(0);
static MASK_KNOWN: AtomicU8 = AtomicU8::new(0);

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
    // SAFETY: sigprocmask with no new set only reads the mask into `mask`, a plain C struct
    // for which all zeroes is a valid value; sigismember only reads it.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask) == 0 {
            let bits =
                (1..=64).filter(|&n| libc::sigismember(&mask, n) == 1).fold(0u64, |b, n| b | 1 << (n - 1));
            MASK_INHERITED.store(bits, Ordering::Relaxed);
            MASK_KNOWN.store(1, Ordering::Relaxed);
        }
    }
}

/// The signal mask this process started with (`None`: not known, see [`inherited_sigpipe`]).
pub(super) fn inherited_mask() -> Option<libc::sigset_t> {
    std::hint::black_box(&RECORD_INHERITED_SIGNALS);
    if MASK_KNOWN.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let bits = MASK_INHERITED.load(Ordering::Relaxed);
    // SAFETY: sigemptyset and sigaddset only write the local set; an all-zero sigset_t is valid.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        for n in (1..=64).filter(|n| bits & (1 << (n - 1)) != 0) {
            libc::sigaddset(&mut mask, n);
        }
        Some(mask)
    }
}

/// Just before exec: the signal mask back to what we inherited. Only async-signal-safe calls.
pub(super) fn restore_mask(mask: Option<&libc::sigset_t>) -> io::Result<()> {
    let Some(mask) = mask else { return Ok(()) };
    // SAFETY: sets this thread's mask from a valid set; async-signal-safe.
    match unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) } {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
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
pub(super) fn restore_sigpipe(ignore: bool) -> io::Result<()> {
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

const FATAL_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_fatal_signal(signal: libc::c_int) {
    backend::kill_registered_groups();
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
