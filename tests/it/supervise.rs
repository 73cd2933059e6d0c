//! `run --supervise` with real processes: signals reach the program and its code comes
//! back, orphans are reaped with the launcher as PID 1, Ctrl-C on a terminal arrives once,
//! `--mask` hides every form of a value in both streams, and `--watch` restarts the program
//! when (and only when) a file-backend secret changes, riding out a failing store.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{Args, CANARY, ENV_CONFIG, Fixture, Run};

fn env_fixture(value: &str) -> Fixture {
    let mut f = Fixture::new();
    f.config(ENV_CONFIG);
    f.env("SRC_API_KEY", value);
    f
}

/// Lines of a child's stdout as they come, through a channel (so a test can wait with a
/// deadline).
fn lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

#[track_caller]
fn expect_line(lines: &mpsc::Receiver<String>, wanted: &str, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line == wanted => return Instant::now(),
            Ok(_) => {}
            Err(e) => panic!("no line `{wanted}` within {within:?}: {e}"),
        }
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
    text
}

fn signal(child: &Child, signal: i32) {
    // The launcher, not the program: forwarding is what is tested.
    let status =
        std::process::Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
    assert!(status.unwrap().success());
}

/// TERM, INT, HUP and USR1 sent to the launcher reach the program: a program that traps
/// them exits with its own code; one that does not dies of them, and so does the launcher
/// (its parent sees the death by signal an exec would have shown it, not an exit 128+N).
#[test]
fn signals_reach_the_program_and_its_code_comes_back() {
    let f = env_fixture("v");
    for (number, name) in [(15, "TERM"), (2, "INT"), (1, "HUP"), (10, "USR1")] {
        for trapped in [true, false] {
            let script = if trapped {
                format!("trap 'echo got-{name}; exit 42' {name}; echo ready; while :; do sleep 0.02; done")
            } else {
                "echo ready; exec sleep 10".to_owned()
            };
            let args =
                Args::run("worker").secret("api_key").arg("--supervise").program(["sh", "-c", &script]);
            let mut child = f.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            let out = lines(child.stdout.take().unwrap());
            expect_line(&out, "ready", Duration::from_secs(5));
            signal(&child, number);
            let status = child.wait().unwrap();
            let stderr = stderr_of(&mut child);
            if trapped {
                expect_line(&out, &format!("got-{name}"), Duration::from_secs(2));
                assert_eq!(status.code(), Some(42), "{name}: {stderr}");
            } else {
                assert_eq!(status.signal(), Some(number), "{name}: {status} {stderr}");
            }
            assert_eq!(stderr, "", "the launcher adds no output");
        }
    }
}

/// Root only (a new PID namespace): with the launcher as PID 1 (supervising by default), an
/// orphan of the program is reaped, a dozen ending at once too (their SIGCHLDs coalesce into
/// one); with `--exec` the program is PID 1, does not reap, and the zombies stay, which
/// shows the count can fail.
#[test]
fn orphans_are_reaped_with_the_launcher_as_pid_1_needs_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: a new PID namespace (unshare --pid) needs root");
        return;
    }
    let f = env_fixture("v");
    let program = "import os, glob, time\n\
        os.system('for i in 1 2 3 4 5 6 7 8 9 10 11 12; do (sleep 0.05 &); done')\n\
        time.sleep(0.5)\n\
        zombies = [p for p in glob.glob('/proc/[0-9]*/status') if '\\nState:\\tZ' in open(p).read()]\n\
        print('pid', os.getpid(), 'zombies', len(zombies), flush=True)\n\
        raise SystemExit(5)";
    for (mode, expected) in [(None, "pid 2 zombies 0"), (Some("--exec"), "pid 1 zombies 12")] {
        let mut args = Args::run("worker").secret("api_key");
        if let Some(mode) = mode {
            args = args.arg(mode);
        }
        let mut unshare = f.tool("unshare");
        unshare
            .args(["--fork", "--pid", "--mount-proc", crate::util::LAUNCHER])
            .args(args.program(["python3", "-c", program]));
        let run = Run::of(unshare);
        run.code(5).stdout_is(&format!("{expected}\n"));
        assert_eq!(run.stderr(), "", "{mode:?}");
    }
}

/// On a terminal, the program is the foreground group: Ctrl-C reaches it once, from the
/// terminal, and not a second time through the launcher (dumb-init#30). A pty made by
/// Python's pty module plays the terminal; the launcher is its session leader, as a shell's
/// job would be the foreground.
#[test]
fn ctrl_c_on_a_terminal_reaches_the_program_once() {
    let f = env_fixture("v");
    let program = "import signal, time\n\
        count = []\n\
        signal.signal(signal.SIGINT, lambda *a: count.append(1))\n\
        print('ready', flush=True)\n\
        time.sleep(1.0)\n\
        print('interrupts', len(count), flush=True)\n\
        raise SystemExit(len(count) + 20)";
    let run = on_a_terminal(&f, Args::run("worker").secret("api_key").arg("--supervise"), program, b"\x03");
    run.code(0);
    let out = run.stdout();
    assert!(out.contains("interrupts 1\n") && out.ends_with("exit 21\n"), "{out}");
}

/// Runs the launcher with `args` and `program` (Python) as the session leader of a new
/// pty, as a shell's foreground job; once the program prints `ready`, types `keys`. Its
/// stdout: everything the terminal showed, then `exit N`.
fn on_a_terminal(f: &Fixture, args: Args, program: &str, keys: &[u8]) -> Run {
    on_a_terminal_with(f, args, program, "", &format!("os.write(fd, bytes({keys:?}))"))
}

/// As [`on_a_terminal`], with Python statements to run (`fd` the terminal's end, `pid` the
/// launcher's): `setup` before anything is read, `at_ready` once the program prints
/// `ready`. Its stdout: what they print, everything the terminal showed, then `exit N`.
fn on_a_terminal_with(f: &Fixture, args: Args, program: &str, setup: &str, at_ready: &str) -> Run {
    let harness = r#"
import fcntl, os, pty, signal, struct, sys, termios
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[3], sys.argv[3:])
exec(sys.argv[1])
seen = b''
while b'ready' not in seen:
    seen += os.read(fd, 1024)
exec(sys.argv[2])
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode().replace('\r', '') + 'exit %d\n' % os.waitstatus_to_exitcode(status))
"#;
    let mut python = f.tool("python3");
    python
        .args(["-c", harness, setup, at_ready, crate::util::LAUNCHER])
        .args(args.program(["python3", "-c", program]));
    Run::of(python)
}

/// On a terminal, `--mask` gives the program a pty: it still sees a terminal, and what it
/// prints is masked on the way to ours.
#[test]
fn mask_on_a_terminal_gives_the_program_a_terminal() {
    let f = env_fixture(CANARY);
    let program = "import os, sys\n\
        print('ready', sys.stdout.isatty(), sys.stderr.isatty(), os.environ['API_KEY'], flush=True)";
    let run = on_a_terminal(&f, Args::run("worker").secret("api_key").arg("--mask"), program, b"");
    run.code(0);
    assert_eq!(run.stdout(), "ready True True ***\nexit 0\n");
    // Its ptys reach it as 1 and 2 only: no end of either at any other number (openpty's
    // descriptors are inherited across exec unless told otherwise).
    let program = "import os\n\
        ptys = sorted(n for n in os.listdir('/proc/self/fd') if int(n) > 2 and os.path.lexists('/proc/self/fd/' + n) and \
            os.readlink('/proc/self/fd/' + n).startswith(('/dev/pts', '/dev/ptmx')))\n\
        print('ready', ptys, flush=True)";
    let run = on_a_terminal(&f, Args::run("worker").secret("api_key").arg("--mask"), program, b"");
    run.code(0);
    assert_eq!(run.stdout(), "ready []\nexit 0\n");
}

/// A fixture with one secret, `token`, in a file store whose directory (returned) a test
/// writes and rewrites, for the tests that watch a value change.
fn token_fixture() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new();
    let secrets = f.path("secrets");
    std::fs::create_dir(&secrets).unwrap();
    f.config(&format!(
        "stores:\n  files: {{backend: file, root: '{}'}}\nrefs:\n  token: {{store: files, path: token, policy: p}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n",
        secrets.display()
    ));
    (f, secrets)
}

/// A program that ignores the stop signal is killed after `--stop-timeout` and restarted.
#[test]
fn watch_kills_a_program_that_ignores_the_stop_signal_after_the_stop_timeout() {
    let (f, secrets) = token_fixture();
    std::fs::write(secrets.join("token"), "stubborn-one").unwrap();
    let args = Args::run("worker")
        .secret("token")
        .args(["--watch", "300ms", "--stop-timeout", "300ms", "--stop-signal", "USR1"])
        .program(["sh", "-c", "trap '' USR1; echo \"start $TOKEN\"; while :; do sleep 0.05; done"]);
    let mut child = f.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = lines(child.stdout.take().unwrap());
    expect_line(&out, "start stubborn-one", Duration::from_secs(5));
    std::fs::write(secrets.join("token"), "stubborn-two").unwrap();
    let changed = Instant::now();
    let seen = expect_line(&out, "start stubborn-two", Duration::from_secs(3));
    let took = seen - changed;
    assert!(
        took >= Duration::from_millis(300) && took <= Duration::from_millis(330 + 300 + 1000),
        "{took:?}"
    );
    signal(&child, 9);
    child.wait().unwrap();
}

/// The signal mask the launcher inherited reaches the program, exec'd or supervised, as
/// under env(1) (std empties it in a child, and a supervisor blocks everything in itself).
#[test]
fn the_inherited_signal_mask_reaches_the_program_in_both_modes() {
    let f = env_fixture("v");
    for mode in [None, Some("--supervise")] {
        let mut args = Args::run("worker").secret("api_key");
        if let Some(mode) = mode {
            args = args.arg(mode);
        }
        let mut python = f.tool("python3");
        python
            .args([
                "-c",
                "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1}); os.execv(sys.argv[1], sys.argv[1:])",
                crate::util::LAUNCHER,
            ])
            .args(args.program(["grep", "SigBlk", "/proc/self/status"]));
        Run::of(python).code(0).stdout_is("SigBlk:\t0000000000000200\n");
    }
}

/// Every form of a value a program is likely to print is masked, in both streams, even
/// when written in two halves; the bytes around it, and text that only looks like part of
/// it (a JSON secret's braces, a `%`), pass as they were.
#[test]
fn mask_hides_every_form_of_a_value_split_across_writes_in_both_streams() {
    let value = format!("{CANARY} \"q/%\u{e9}");
    let f = env_fixture(&value);
    let program = r#"
import os, sys, base64, json, time, urllib.parse
v = os.environ['API_KEY'].encode()
forms = [v, base64.b64encode(v), base64.b64encode(b'a' + v), base64.b64encode(b'ab' + v),
         base64.urlsafe_b64encode(b'a' + v), json.dumps(v.decode()).encode()[1:-1],
         urllib.parse.quote(v, safe='').encode(), urllib.parse.quote_plus(v).encode()]
for i, form in enumerate(forms):
    for fd in (1, 2):
        line = b'<%d:' % i + form + b':%d>\n' % i
        half = len(line) // 2
        os.write(fd, line[:half]); time.sleep(0.01); os.write(fd, line[half:])
os.write(1, b'{\n}\n100% done\n')
"#;
    let run = f.run(Args::run("worker").secret("api_key").arg("--mask").program(["python3", "-c", program]));
    run.code(0);
    for (stream, text) in [("stdout", run.stdout()), ("stderr", run.stderr())] {
        let mut lines = text.lines();
        for i in 0..8 {
            let line = lines.next().unwrap_or_else(|| panic!("{stream}: line {i} missing in {text:?}"));
            let inner = line
                .strip_prefix(&format!("<{i}:"))
                .and_then(|l| l.strip_suffix(&format!(":{i}>")))
                .unwrap_or_else(|| panic!("{stream}: surroundings of form {i} changed: {line:?}"));
            // What is left beside the marker is at most the few base64 characters that
            // also depend on the bytes around the value.
            assert!(
                inner.contains("***") && inner.replace("***", "").len() <= 6,
                "{stream} form {i}: {line:?}"
            );
            assert!(!line.contains(CANARY), "{stream}: {line:?}");
        }
        if stream == "stdout" {
            assert_eq!(lines.collect::<Vec<_>>(), ["{", "}", "100% done"]);
        }
    }
}

/// A value under 4 bytes is not masked (it would hide innocent text everywhere), and the
/// warning names its secret, never its value.
#[test]
fn a_value_too_short_to_mask_is_named_in_a_warning() {
    let f = env_fixture("xyz");
    let run =
        f.run(Args::run("worker").secret("api_key").arg("--mask").program(["sh", "-c", "echo $API_KEY"]));
    run.code(0).stdout_is("xyz\n").stderr_has("secret `api_key` is shorter than 4 bytes and is not masked");
    assert!(!run.stderr().contains("xyz"));
}

/// `--watch 300ms` on a file-backend secret: a change on disk restarts the program with the
/// new value within the interval plus jitter plus a second; no change, no restart; a store
/// that fails keeps the program running, and the next good fetch restarts it. The audit
/// names what changed, never the value.
#[test]
fn watch_restarts_on_a_changed_value_only_and_rides_out_a_failing_store() {
    let (f, secrets) = token_fixture();
    let token = secrets.join("token");
    std::fs::write(&token, "rotation-one").unwrap();
    let args = Args::run("worker")
        .secret("token")
        .args(["-v", "--watch", "300ms", "--stop-timeout", "2s"])
        .program(["sh", "-c", "echo \"start $TOKEN\"; exec sleep 30"]);
    let mut child = f.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = lines(child.stdout.take().unwrap());
    expect_line(&out, "start rotation-one", Duration::from_secs(5));

    // Unchanged: three intervals and more, no restart.
    assert!(out.recv_timeout(Duration::from_millis(1200)).is_err(), "restarted with nothing changed");

    std::fs::write(&token, "rotation-two").unwrap();
    let changed = Instant::now();
    let seen = expect_line(&out, "start rotation-two", Duration::from_secs(3));
    assert!(seen - changed <= Duration::from_millis(330 + 1000), "{:?}", seen - changed);

    // The store fails (the file is gone: 66): the program keeps running, nothing restarts.
    std::fs::remove_file(&token).unwrap();
    assert!(out.recv_timeout(Duration::from_millis(1000)).is_err(), "restarted while the store failed");
    assert!(child.try_wait().unwrap().is_none(), "the launcher ended while the store failed");
    std::fs::write(&token, "rotation-three").unwrap();
    expect_line(&out, "start rotation-three", Duration::from_secs(3));

    signal(&child, 15);
    let status = child.wait().unwrap();
    let stderr = stderr_of(&mut child);
    assert_eq!(status.signal(), Some(15), "{status}: {stderr}");
    assert!(stderr.contains("fetching the secrets again failed"), "{stderr}");
    assert_eq!(stderr.matches("audit: rotate").count(), 2, "{stderr}");
    assert!(stderr.contains("audit: rotate secret=token action=restart"), "{stderr}");
    assert!(!stderr.contains("rotation-"), "a value reached stderr: {stderr}");
}

/// Under `--mask`, a process the program leaves behind holding its output does not keep the
/// launcher waiting once the program has ended: what the program wrote comes through, and
/// its code comes back.
#[test]
fn mask_does_not_wait_for_a_leftover_process_holding_the_output() {
    let f = env_fixture(CANARY);
    let started = Instant::now();
    let run = f.run(Args::run("worker").secret("api_key").arg("--mask").program([
        "sh",
        "-c",
        "(sleep 5 &); echo \"last $API_KEY\"; exit 3",
    ]));
    run.code(3).stdout_is("last ***\n");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

/// Ctrl-Z on a terminal stops the program (its group is the foreground); the launcher then
/// takes the terminal back and stops too, so the shell sees the job stopped; continued (as
/// `fg` does), it hands the terminal back and continues the program, which finishes.
#[test]
fn ctrl_z_stops_the_job_and_fg_continues_it() {
    let f = env_fixture("v");
    let program = "import time\nprint('ready', flush=True)\ntime.sleep(0.5)\nprint('done', flush=True)";
    let at_ready = "os.write(fd, b'\\x1a')\n\
        _, status = os.waitpid(pid, os.WUNTRACED)\n\
        print('launcher stopped' if os.WIFSTOPPED(status) else 'launcher not stopped: %d' % status, flush=True)\n\
        os.kill(pid, signal.SIGCONT)";
    let args = Args::run("worker").secret("api_key").arg("--supervise");
    let run = on_a_terminal_with(&f, args, program, "", at_ready);
    run.code(0);
    let out = run.stdout();
    assert!(
        out.starts_with("launcher stopped\n") && out.contains("done") && out.ends_with("exit 0\n"),
        "{out}"
    );
}

/// Bad supervising flags are usage errors (64) that say what to give, before anything is
/// read or fetched.
#[test]
fn bad_supervising_flags_are_usage_errors() {
    let f = env_fixture("v");
    for (flags, message) in [
        (&["--watch", "soon"][..], "`soon` is not a duration"),
        (&["--watch", "0s"], "`0s` is zero"),
        (&["--watch", "1s", "--stop-timeout", "-1"], "`-1` is not a duration"),
        (&["--watch", "1s", "--stop-signal", "NOPE"], "`NOPE` is not a signal"),
        (&["--stop-signal", "INT"], "--watch <INTERVAL>"),
        (&["--mask", "--exec"], "cannot be used with"),
    ] {
        let run = f.run(Args::run("worker").secret("api_key").args(flags).program(["true"]));
        run.code(64).stderr_has(message);
    }
    // Signals by name, with or without SIG, or by number.
    for signal in ["INT", "sigint", "2"] {
        f.run(
            Args::run("worker")
                .secret("api_key")
                .args(["--watch", "1h", "--stop-signal", signal])
                .program(["true"]),
        )
        .code(0);
    }
}

/// A program that cannot be started is 127 (not found) or 126 (not executable) supervised
/// too, with the variables it would have had (secrets among them) reaching it exactly.
#[test]
fn supervised_programs_start_as_exec_would_find_them() {
    let f = env_fixture(CANARY);
    let not_executable = f.write("plain.txt", "not a program");
    f.run(Args::run("worker").secret("api_key").arg("--supervise").program(["no-such-program-mxm"]))
        .code(127);
    f.run(Args::run("worker").secret("api_key").arg("--supervise").program([&not_executable])).code(126);
    let run = f.run(Args::run("worker").secret("api_key").arg("--supervise").program(["env"]));
    let mut seen: Vec<String> = run.code(0).stdout().lines().map(str::to_owned).collect();
    seen.sort();
    let home = f.path("home").display().to_string();
    let expected = [
        format!("API_KEY={CANARY}"),
        format!("HOME={home}"),
        format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
    ];
    assert_eq!(seen, expected);
}

/// Root only (a new PID namespace): the kernel drops a signal sent to a PID 1 that has no
/// handler for it, unless it is blocked; the launcher as PID 1 blocks and reads them, so a
/// SIGTERM from outside (as `docker stop` sends) reaches the program.
#[test]
fn sigterm_reaches_the_program_through_the_launcher_as_pid_1_needs_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: a new PID namespace (unshare --pid) needs root");
        return;
    }
    let f = env_fixture("v");
    let mut unshare = f.tool("unshare");
    unshare.args(["--fork", "--pid", "--mount-proc", crate::util::LAUNCHER]).args(
        Args::run("worker").secret("api_key").program([
            "sh",
            "-c",
            "trap 'echo got-TERM; exit 42' TERM; echo ready; while :; do sleep 0.02; done",
        ]),
    );
    let mut child = unshare.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = lines(child.stdout.take().unwrap());
    expect_line(&out, "ready", Duration::from_secs(5));
    // The launcher, PID 1 inside, is unshare's only child outside.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let launcher = children.split_whitespace().next().expect("unshare has its child");
    let status = std::process::Command::new("kill").args(["-TERM", launcher]).status().unwrap();
    assert!(status.success());
    expect_line(&out, "got-TERM", Duration::from_secs(5));
    assert_eq!(child.wait().unwrap().code(), Some(42), "{}", stderr_of(&mut child));
}

/// `--watch` with `--mask`: each run of the program has its output masked with its own
/// values, the old run's output is all through before the new one starts.
#[test]
fn watch_and_mask_together_mask_each_run_with_its_own_values() {
    let (f, secrets) = token_fixture();
    std::fs::write(secrets.join("token"), format!("{CANARY}-one")).unwrap();
    let args = Args::run("worker").secret("token").args(["--watch", "300ms", "--mask"]).program([
        "sh",
        "-c",
        "trap 'echo \"bye $TOKEN\"; exit 0' TERM; echo \"start $TOKEN\"; while :; do sleep 0.02; done",
    ]);
    let mut child = f.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = lines(child.stdout.take().unwrap());
    let next = || out.recv_timeout(Duration::from_secs(5)).expect("a line");
    assert_eq!(next(), "start ***");
    std::fs::write(secrets.join("token"), format!("{CANARY}-two")).unwrap();
    // Every line, in order: nothing unmasked in between.
    assert_eq!(next(), "bye ***");
    assert_eq!(next(), "start ***");
    signal(&child, 15);
    assert_eq!(next(), "bye ***");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(stderr_of(&mut child), "");
    assert!(out.recv().is_err(), "more output than expected");
}

/// Under `--mask` on a terminal, the program's pty has the terminal's size, and follows it
/// when the terminal is resized (the terminal tells the program, not the launcher).
#[test]
fn mask_on_a_terminal_follows_its_size() {
    let f = env_fixture("v-long-enough");
    let program = "import os, time\n\
        print('ready', os.get_terminal_size(1).columns, flush=True)\n\
        time.sleep(0.8)\n\
        print('now', os.get_terminal_size(1).columns, flush=True)";
    let size = |rows: u16, columns: u16| {
        format!("fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', {rows}, {columns}, 0, 0))")
    };
    let args = Args::run("worker").secret("api_key").arg("--mask");
    let run = on_a_terminal_with(&f, args, program, &size(30, 77), &size(40, 123));
    run.code(0).stdout_is("ready 77\nnow 123\nexit 0\n");
}

/// Waits for `child` at most `limit`; a launcher still running then is killed and the test
/// fails (a lost end of the program would otherwise hang the suite).
#[track_caller]
fn wait_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the launcher did not end within {limit:?}");
}

/// A program killed by a real-time signal (no name in nix, whose waitpid reported it as an
/// error after the kernel had reaped the child): its end is seen, and the launcher dies of
/// the same signal.
#[test]
fn a_program_killed_by_a_real_time_signal_ends_the_launcher() {
    let f = env_fixture("v");
    let realtime = nix::libc::SIGRTMIN() + 6;
    let script = format!("kill -{realtime} $$; sleep 5");
    let args = Args::run("worker").secret("api_key").arg("--supervise").program(["sh", "-c", &script]);
    let mut child = f.command(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let status = wait_within(&mut child, Duration::from_secs(5));
    assert_eq!(status.signal(), Some(realtime), "{status}: {}", stderr_of(&mut child));
}

/// A program that dies of a signal whose default dumps core: the launcher exits 128+N
/// rather than die of it (that would be a core of the launcher, should the host dump one).
#[test]
fn a_program_killed_by_a_dumping_signal_is_128_plus_n() {
    let f = env_fixture("v");
    let args =
        Args::run("worker").secret("api_key").arg("--supervise").program(["sh", "-c", "kill -QUIT $$"]);
    let mut child = f.command(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let status = wait_within(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(128 + 3), "{status}: {}", stderr_of(&mut child));
}

/// Root only (a broker owning its config, a throwaway user): `run --broker --mask --watch`
/// masks values the broker served (the canary on a descriptor, a variable), and a re-fetch
/// asks the broker again: a value rotated in the broker's store restarts the program.
#[test]
fn broker_values_are_masked_and_rotated_under_supervise_needs_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: a broker owning its config and a throwaway user need root");
        return;
    }
    let (f, user, broker) = crate::broker::served_with("sup", "", &[]);
    let script = "echo \"start len=${#DB_PASSWORD} $DB_PASSWORD\"; cat <&3; echo; exec sleep 30";
    let socket = broker.socket.display().to_string();
    let args = [
        "run",
        "--broker",
        &socket,
        "--role",
        "worker",
        "--manifest",
        "m.yaml",
        "--mask",
        "--watch",
        "300ms",
        "--",
        "sh",
        "-c",
        script,
    ];
    let mut child = user.command(&f, crate::util::LAUNCHER, args);
    let mut child = child.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = lines(child.stdout.take().unwrap());
    expect_line(&out, "start len=10 ***", Duration::from_secs(5));
    expect_line(&out, "***", Duration::from_secs(2));
    f.write("secrets/db/password", "db-value-two");
    expect_line(&out, "start len=12 ***", Duration::from_secs(4));
    expect_line(&out, "***", Duration::from_secs(2));
    signal(&child, 15);
    let status = wait_within(&mut child, Duration::from_secs(5));
    let stderr = stderr_of(&mut child);
    assert_eq!(status.signal(), Some(15), "{status}: {stderr}");
    for value in [CANARY, "db-value-1", "db-value-two"] {
        assert!(!stderr.contains(value), "a value reached stderr: {stderr}");
    }
    assert!(broker.stop().success());
}

/// A value whose halves come a while apart (a buffered writer flushing mid-value, then
/// nothing until its buffer fills again) is still masked: the few bytes that could begin a
/// value are held until the rest decides, never flushed on a timer, since a log read later
/// joins the halves. What cannot begin one passes at once, a prompt included.
#[test]
fn mask_holds_a_split_value_however_long_the_pause_and_nothing_else() {
    let f = env_fixture(CANARY);
    let (head, tail) = CANARY.split_at(9);
    let script = format!(
        "printf 'prompt> '; sleep 0.8; printf 'key={head}'; sleep 0.6; printf '{tail} end\\n'; sleep 0.3"
    );
    let args = Args::run("worker").secret("api_key").arg("--mask").program(["sh", "-c", &script]);
    let mut child = f.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 256];
    // The prompt arrives before the program goes on (it cannot begin the value).
    while !seen.ends_with(b"prompt> ") {
        let n = stdout.read(&mut buffer).unwrap();
        assert!(n > 0, "{:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..n]);
    }
    assert!(start.elapsed() < Duration::from_millis(700), "the prompt was held");
    stdout.read_to_end(&mut seen).unwrap();
    let status = wait_within(&mut child, Duration::from_secs(5));
    assert!(status.success(), "{status}: {}", stderr_of(&mut child));
    assert_eq!(String::from_utf8_lossy(&seen), "prompt> key=*** end\n");
}

/// SIGPIPE sent to the launcher is forwarded like any other signal (Rust's runtime ignores
/// it, and an ignored signal was dropped on arrival): the program dies of it, and so does
/// the launcher.
#[test]
fn sigpipe_sent_to_the_launcher_reaches_the_program() {
    let f = env_fixture("v");
    let args = Args::run("worker").secret("api_key").arg("--supervise").program([
        "sh",
        "-c",
        "echo ready; exec sleep 10",
    ]);
    let mut child = f.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = lines(child.stdout.take().unwrap());
    expect_line(&out, "ready", Duration::from_secs(5));
    signal(&child, 13);
    let status = wait_within(&mut child, Duration::from_secs(3));
    assert_eq!(status.signal(), Some(13), "{status}: {}", stderr_of(&mut child));
}

/// The launcher's own stderr is a pipe nobody reads any more when it warns (a value too
/// short to mask): its write fails, and the SIGPIPE that raised in the launcher is its own
/// business, not forwarded to the program, which runs on as it would after exec.
#[test]
fn a_sigpipe_the_launcher_raises_itself_is_not_forwarded() {
    let f = env_fixture("xyz");
    let script = "trap 'echo got-PIPE; exit 9' PIPE; sleep 0.5; echo fine";
    let args = Args::run("worker").secret("api_key").arg("--mask").program(["sh", "-c", script]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = f.command(args).stdout(Stdio::piped()).stderr(writer).spawn().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = wait_within(&mut child, Duration::from_secs(5));
    assert_eq!((status.code(), out.as_str()), (Some(0), "fine\n"));
}

/// `--mask` with our stdout a terminal that goes away (its master closed; not our
/// controlling one, so no SIGHUP comes): the program's own pty goes with it, so its writes
/// fail (EIO) as they would on the dead terminal itself, instead of blocking for ever once
/// the pty's buffer is full.
#[test]
fn mask_on_a_terminal_that_goes_away_lets_the_program_see_it() {
    let f = env_fixture("v");
    let pty = nix::pty::openpty(None, None).unwrap();
    // Not inherited by the launcher (nor by what other tests start meanwhile): only we may
    // hold the master, so that dropping it hangs the terminal up.
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).unwrap();
    }
    let args = Args::run("worker").secret("api_key").arg("--mask").program(["yes"]);
    let mut child =
        f.command(args).stdin(Stdio::null()).stdout(pty.slave).stderr(Stdio::piped()).spawn().unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut buffer = [0u8; 4096];
    let n = master.read(&mut buffer).unwrap();
    assert!(n > 0 && buffer[..n].starts_with(b"y"), "{:?}", String::from_utf8_lossy(&buffer[..n]));
    drop(master);
    let status = wait_within(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{status}: {}", stderr_of(&mut child));
}
