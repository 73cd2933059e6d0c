//! Starting the program as our child, for a parent that stays: the same
//! placement as [`super::exec`], done in `pre_exec` of the child, so that this process never
//! holds the program's descriptors at their numbers and, once the child has started, holds
//! no memfd at all (a backend started later cannot inherit one). The values move into
//! [`LockedValues`] for masking and comparison. What the child does for a supervisor
//! ([`Supervision`]: its own process group, the terminal's foreground, PR_SET_PDEATHSIG) is
//! here too, since it runs in the same hook; the forwarding and reaping are `supervise`'s.

use std::io;
use std::os::fd::RawFd;
use std::process::{Child, Command, Stdio};

use nix::libc;
use nix::unistd::Pid;

use super::{Hardened, LockedValues, Reserve, prepare};
use crate::error::Error;
use crate::inject::LaunchPlan;

/// Where the program's standard streams go (all inherited by default).
#[derive(Debug)]
pub struct Streams {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl Default for Streams {
    fn default() -> Streams {
        Streams { stdin: Stdio::inherit(), stdout: Stdio::inherit(), stderr: Stdio::inherit() }
    }
}

/// What a supervised program gets in the child, before its descriptors are placed: its own
/// process group (set by std), the terminal's foreground group when there is a terminal (so
/// that Ctrl-C reaches the program once, from the terminal, and not a second time through
/// us: dumb-init#30), and SIGKILL when we die (PR_SET_PDEATHSIG; a launcher that is gone
/// already by then means no start at all).
#[derive(Debug, Clone, Copy)]
pub struct Supervision {
    /// The terminal (a descriptor of ours open on it) whose foreground the program takes.
    pub terminal: Option<RawFd>,
    /// This process: the child checks it still has us as its parent.
    pub parent: Pid,
}

impl Supervision {
    /// In the forked child: only async-signal-safe calls, nothing allocated.
    pub(super) fn apply(&self) -> io::Result<()> {
        // SAFETY: prctl, getppid, getpid, sigemptyset/sigaddset on a local set,
        // pthread_sigmask and tcsetpgrp are async-signal-safe and touch no Rust state.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != self.parent.as_raw() {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            if let Some(terminal) = self.terminal {
                // Our group is in the background now, and tcsetpgrp from the background
                // raises SIGTTOU unless it is blocked; the placement restores the mask.
                let mut ttou: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut ttou);
                libc::sigaddset(&mut ttou, libc::SIGTTOU);
                libc::pthread_sigmask(libc::SIG_BLOCK, &ttou, std::ptr::null_mut());
                // Not fatal: a terminal that is not our controlling one refuses, and the
                // program then runs as it would under a shell's `&`.
                libc::tcsetpgrp(terminal, libc::getpid());
            }
        }
        Ok(())
    }
}

/// What the child execs: the program's path, argv and whole environment, env secrets
/// included, as C strings in one buffer of ours (wiped when the command drops; not in
/// [`LockedValues`], whose pages a fork sees zeroed), with
/// the pointer arrays execve takes. std's `Command` would copy each env value into buffers
/// of its own (its environment map, then the `envp` it builds for the spawn) and free them
/// unwiped; given only the variables that are no secret, it copies none. The hook calls
/// execve with this image as its last step, so std's own exec never runs.
///
/// The path is found as execvp finds it ([`crate::program::lookup`], on the program's own
/// PATH), before the fork; unlike execvp, a file without `#!` that the kernel refuses
/// (ENOEXEC) is not retried with /bin/sh, and fails as "cannot execute" (126).
pub(super) struct ExecImage {
    /// Keeps the strings alive; `path`, `argv` and `envp` point into it. Never resized.
    _strings: zeroize::Zeroizing<Vec<u8>>,
    path: *const libc::c_char,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into `_strings`, a buffer owned by this value and never written
// after `new`; the image is only read, by the child's hook.
unsafe impl Send for ExecImage {}
// SAFETY: as above.
unsafe impl Sync for ExecImage {}

impl ExecImage {
    fn new(plan: &LaunchPlan) -> Result<ExecImage, Error> {
        use std::os::unix::ffi::OsStrExt;
        let path_variable =
            plan.env.iter().find(|(key, _)| key == "PATH").map(|(_, value)| value.as_os_str());
        let path = crate::program::lookup(&plan.program, path_variable).map_err(|kind| Error::Exec {
            program: plan.program.to_string_lossy().into_owned(),
            source: kind.into(),
        })?;
        // Sized once: a buffer that grew would leave unwiped copies behind in the old ones.
        let size = path.as_os_str().len()
            + 1
            + std::iter::once(&plan.program).chain(&plan.args).map(|a| a.len() + 1).sum::<usize>()
            + plan.env.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>()
            + plan.secrets.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(size));
        let mut offsets = Vec::new(); // where each string starts: path, argv..., env...
        let mut push = |bytes: &mut Vec<u8>, parts: &[&[u8]]| {
            offsets.push(bytes.len());
            for part in parts {
                bytes.extend_from_slice(part);
            }
            bytes.push(0);
        };
        push(&mut bytes, &[path.as_os_str().as_bytes()]);
        for arg in std::iter::once(&plan.program).chain(&plan.args) {
            push(&mut bytes, &[arg.as_bytes()]);
        }
        for (key, value) in &plan.env {
            push(&mut bytes, &[key.as_bytes(), b"=", value.as_bytes()]);
        }
        for (key, value) in &plan.secrets {
            push(&mut bytes, &[key.as_bytes(), b"=", value.expose()]);
        }
        let argc = 1 + plan.args.len();
        if bytes.iter().filter(|&&b| b == 0).count() != offsets.len() {
            // A NUL inside an argument or variable: std's Command refuses the same.
            return Err(Error::Exec {
                program: plan.program.to_string_lossy().into_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "an argument or variable holds a NUL byte",
                ),
            });
        }
        debug_assert_eq!(bytes.len(), size, "the buffer never grew");
        let base = bytes.as_ptr();
        // SAFETY: every offset is within the buffer, which is not resized from here on.
        let at = |i: usize| unsafe { base.add(offsets[i]) }.cast::<libc::c_char>();
        let argv = (1..=argc).map(at).chain([std::ptr::null()]).collect();
        let envp = (argc + 1..offsets.len()).map(at).chain([std::ptr::null()]).collect();
        Ok(ExecImage { path: at(0), argv, envp, _strings: bytes })
    }

    /// In the child: execve, which returns only with the reason it failed.
    pub(super) fn exec(&self) -> io::Error {
        // SAFETY: path, argv and envp are NUL-terminated strings and NULL-terminated arrays
        // in memory that lives as long as `self`; execve is async-signal-safe.
        unsafe { libc::execve(self.path, self.argv.as_ptr(), self.envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// A started program: the child to wait on (a supervisor reaps it by its pid, with every
/// orphan, on SIGCHLD), and the values it was given, locked in memory.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub values: LockedValues,
}

impl Spawned {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

/// Starts the program of `plan` as a child of this process, its descriptor secrets placed
/// and its signal state and core limit given back in the child only. This process stays
/// hardened. Fails as [`super::exec`] does (126, or 127 not found), with no child left.
/// With `supervision`, the child also does what [`Supervision`] says.
pub fn spawn(
    plan: LaunchPlan,
    hardened: &Hardened,
    streams: Streams,
    supervision: Option<Supervision>,
) -> Result<Spawned, Error> {
    let image = ExecImage::new(&plan)?;
    let (mut command, files) = prepare(&plan, hardened, Reserve::Targets, supervision, Some(image))?;
    command.stdin(streams.stdin).stdout(streams.stdout).stderr(streams.stderr);
    // Kept before the child starts, so that a failure here leaves no child behind. Whether
    // they could be locked is the caller's to report (`values.note()`).
    let LaunchPlan { program, secrets, descriptors, .. } = plan;
    let labelled =
        secrets.into_iter().chain(descriptors.into_iter().map(|(_, name, value)| (name.to_string(), value)));
    let values = LockedValues::new(labelled)?;
    let started = command.spawn();
    // The hook holds the exec image (wiped as it drops) and the memfd numbers: both go as
    // soon as the child has its own, as do our memfds.
    drop::<Command>(command);
    drop(files);
    let child =
        started.map_err(|source| Error::Exec { program: program.to_string_lossy().into_owned(), source })?;
    Ok(Spawned { child, values })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::io::Read;
    use std::path::PathBuf;

    use super::*;
    use crate::exec::harden;
    use crate::name::Name;
    use crate::secret::SecretValue;

    const CANARY_FD: &str = "canary-fd-7c41e0";
    const CANARY_ENV: &str = "canary-env-91b2aa";
    const SECRET: &str = "spawn_test_db_password";
    const PIPE: &str = "spawn_test_pipe_";
    const MISSING: &str = "spawn_test_missing_program";

    /// Our memfds carrying `secret`'s name, as /proc/self/fd shows them. (Each test names
    /// its own secret: tests run in parallel in this process.)
    fn our_memfds(secret: &str) -> Vec<(String, PathBuf)> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let target = std::fs::read_link(entry.path()).ok()?;
                let shown = target.to_string_lossy().into_owned();
                shown.contains(secret).then(|| (entry.file_name().to_string_lossy().into_owned(), target))
            })
            .collect()
    }

    #[test]
    fn spawns_the_program_with_its_secrets_placed_in_the_child_only() {
        let plan = LaunchPlan {
            program: OsString::from("sh"),
            args: vec![OsString::from("-c"), OsString::from(r#"cat /dev/fd/3; echo "$X""#)],
            env: vec![(OsString::from("PATH"), std::env::var_os("PATH").unwrap_or_default())],
            secrets: vec![("X".to_owned(), SecretValue::new(CANARY_ENV.as_bytes().to_vec()))],
            descriptors: vec![(
                3,
                Name::new(SECRET).unwrap(),
                SecretValue::new(CANARY_FD.as_bytes().to_vec()),
            )],
        };
        let hardened = harden().unwrap();
        let streams = Streams { stdin: Stdio::null(), stdout: Stdio::piped(), stderr: Stdio::piped() };
        let mut spawned = spawn(plan, &hardened, streams, None).unwrap();

        // The parent: nothing of ours at descriptor 3 (whatever else the harness has there),
        // and no memfd of ours left open anywhere.
        let fd3 = std::fs::read_link("/proc/self/fd/3").map(|t| t.to_string_lossy().into_owned());
        assert!(!fd3.as_deref().unwrap_or("").contains(SECRET), "{fd3:?}");
        assert_eq!(our_memfds(SECRET), vec![]);

        // A backend started while the program runs holds none of the program's descriptors.
        let mut backend = Command::new("ls");
        backend.args(["-l", "/proc/self/fd/"]);
        crate::exec::isolate_backend(&mut backend);
        let listing = backend.output().unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains(" 0 -> ") && !listing.contains("mxm-secrets"), "{listing}");

        let mut out = String::new();
        spawned.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let mut err = String::new();
        spawned.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = spawned.child.wait().unwrap();
        assert!(status.success(), "status {status}, stderr {err:?}");
        assert_eq!(out, format!("{CANARY_FD}{CANARY_ENV}\n"));
        assert_eq!(err, "");

        // The values are kept, locked, for masking and comparison; their Debug names none.
        let kept: Vec<(&str, &[u8])> = spawned.values.iter().collect();
        assert_eq!(kept, vec![("X", CANARY_ENV.as_bytes()), (SECRET, CANARY_FD.as_bytes())]);
        let shown = format!("{spawned:?}");
        assert!(!shown.contains(CANARY_FD) && !shown.contains(CANARY_ENV), "{shown}");
        assert_eq!(our_memfds(SECRET), vec![]);
    }

    #[test]
    fn a_program_that_cannot_start_is_an_exec_error_and_leaves_no_memfd() {
        let plan = LaunchPlan {
            program: OsString::from("/nonexistent/mxm-secrets-test-program"),
            args: vec![],
            env: vec![],
            secrets: vec![],
            descriptors: vec![(
                4,
                Name::new(MISSING).unwrap(),
                SecretValue::new(CANARY_FD.as_bytes().to_vec()),
            )],
        };
        let error = spawn(plan, &harden().unwrap(), Streams::default(), None).unwrap_err();
        assert!(matches!(error, Error::Exec { .. }), "{error:?}");
        assert_eq!(error.exit_code(), 127);
        assert_eq!(our_memfds(MISSING), vec![]);
    }

    /// std reports a failed exec through a pipe it opens just before forking, at the lowest
    /// free numbers. A placement over that pipe's number in the child would lose the report
    /// (the spawn would seem to succeed): targets free in the parent are taken for the time
    /// of the spawn, so the pipe cannot sit at one. Here the targets cover the numbers just
    /// above where the memfds themselves land, which is where the pipe would go.
    #[test]
    fn a_failed_exec_is_reported_even_when_targets_cover_the_lowest_free_numbers() {
        let lowest = {
            let probe = std::fs::File::open("/dev/null").unwrap();
            std::os::fd::AsRawFd::as_raw_fd(&probe)
        };
        let descriptors = (0..16)
            .map(|i| {
                let name = Name::new(&format!("{PIPE}{i}")).unwrap();
                (lowest + 16 + i, name, SecretValue::new(CANARY_FD.as_bytes().to_vec()))
            })
            .collect();
        let plan = LaunchPlan {
            program: OsString::from("/nonexistent/mxm-secrets-test-program"),
            args: vec![],
            env: vec![],
            secrets: vec![],
            descriptors,
        };
        match spawn(plan, &harden().unwrap(), Streams::default(), None) {
            Err(error) => assert_eq!(error.exit_code(), 127, "{error:?}"),
            Ok(mut spawned) => panic!("spawned, status {:?}", spawned.child.wait()),
        }
        assert_eq!(our_memfds(PIPE), vec![]);
    }
}
