//! The launcher among processes: what its backends inherit, how it hardens while it holds a
//! value, that its backends die with it, the signal state its program inherits, and
//! descriptors placed within `ulimit -n`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{Args, CANARY, Fixture, LAUNCHER};

/// A command store whose provider is `provider`, an env store, and a vault store that reads
/// its token from the launcher's environment (never asked: it only makes VAULT_TOKEN and
/// BAO_TOKEN credentials to withhold).
fn fixture(provider_body: &str) -> Fixture {
    let mut f = Fixture::new();
    let provider = f.script("bin/provider", provider_body);
    f.config(&format!(
        "stores:
  slow: {{backend: command, root: r, command: ['{}'], timeout: 60}}
  sources: {{backend: env, root: src}}
  bank: {{backend: vault, root: secret/mxm, address: 'https://127.0.0.1:9'}}
refs:
  probe: {{store: slow, path: probe, policy: p}}
  second: {{store: slow, path: second, policy: p}}
  other: {{store: sources, path: other, policy: p}}
  more: {{store: sources, path: more, policy: p}}
  banked: {{store: bank, path: x, policy: p}}
policies:
  p: {{allowed_principals: [worker]}}
",
        provider.display()
    ));
    f.env("SRC_OTHER", CANARY).env("SRC_MORE", "second-value");
    f
}

fn shown(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `bash -c SCRIPT` that ends in `exec "$@"`, running the launcher with `args`: how a test
/// gives the launcher inherited descriptors, limits and signal dispositions without unsafe code.
fn under_bash(f: &Fixture, script: &str, args: &[&str]) -> Command {
    let mut command = f.tool("bash");
    command.args(["-c", &format!("{script}; exec \"$@\""), "bash", LAUNCHER]).args(args);
    command
}

/// `(descriptor, what it points at)` from `ls -l /proc/self/fd` output.
fn descriptors(listing: &str) -> Vec<(i32, String)> {
    listing
        .lines()
        .filter_map(|line| {
            let (left, target) = line.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_owned()))
        })
        .collect()
}

#[test]
fn backends_get_descriptors_0_to_2_and_none_of_the_launchers_secrets() {
    let mut f = fixture("ls -l /proc/self/fd; echo '--- env'; env");
    let config = f.path("config.yaml");
    f.env("VAULT_TOKEN", "vault-token-canary")
        .env("BAO_TOKEN", "bao-token-canary")
        .env("MXM_ROLE", "worker")
        .env("MXM_ENVIRONMENT", "dev")
        .env("MXM_SECRETS_CONFIG", config);
    let marker = f.write("inherited-marker", "x");
    // Descriptors 7 and 9 open without close-on-exec, as a parent's leak or a systemd socket.
    let inherit = format!("exec 7<'{0}' 9<'{0}'", marker.display());
    let output = under_bash(&f, &inherit, &["get", "probe"]).output().unwrap();
    assert!(output.status.success(), "{}", shown(&output));
    let seen = String::from_utf8_lossy(&output.stdout).into_owned();
    let (listing, env) = seen.split_once("--- env").expect("the provider's report");

    let fds = descriptors(listing);
    assert_eq!(fds.iter().find(|(fd, _)| *fd == 0).map(|(_, t)| t.as_str()), Some("/dev/null"), "{seen}");
    for (fd, target) in &fds {
        // Above 2, only the directory `ls` itself opened to list them.
        assert!(
            *fd <= 2 || target.starts_with("/proc/"),
            "the backend inherited fd {fd} -> {target}\n{seen}"
        );
    }
    assert!(!listing.contains("inherited-marker"), "{seen}");
    for withheld in ["SRC_OTHER=", "SRC_MORE=", "VAULT_TOKEN=", "BAO_TOKEN=", "MXM_"] {
        assert!(!env.lines().any(|l| l.starts_with(withheld)), "the backend saw {withheld}\n{seen}");
    }
    for value in [CANARY, "vault-token-canary", "bao-token-canary"] {
        assert!(!seen.contains(value), "the backend saw a withheld value\n{seen}");
    }
    // What a backend needs from the launcher's environment still reaches it.
    assert!(
        env.lines().any(|l| l.starts_with("PATH=")) && env.lines().any(|l| l.starts_with("HOME=")),
        "{seen}"
    );

    // The program, unlike its backends, inherits the launcher's descriptors, as under env(1).
    let output = under_bash(&f, &inherit, &["run", "--secret", "other", "--", "ls", "-l", "/proc/self/fd"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", shown(&output));
    let program = descriptors(&String::from_utf8_lossy(&output.stdout));
    for fd in [7, 9] {
        assert!(
            program.iter().any(|(n, t)| *n == fd && t.ends_with("inherited-marker")),
            "{}",
            shown(&output)
        );
    }
}

/// Waits until `path` exists (a provider writes it when it starts), or panics.
fn wait_for(path: &Path, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the launcher ended before {} appeared: {status:?}", path.display());
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        thread::sleep(Duration::from_millis(20));
    }
}

/// A provider that records its PID and a grandchild's in the test's directory, then waits
/// for 30 s: as good as hung, well inside its 60 s timeout.
const SLOW_PROVIDER: &str = r#"dir=$(dirname "$0")
name=${1##*/}
sleep 30 &
echo $! > "$dir/$name.grandchild.tmp" && mv "$dir/$name.grandchild.tmp" "$dir/$name.grandchild"
echo $$ > "$dir/$name.pid.tmp" && mv "$dir/$name.pid.tmp" "$dir/$name.pid"
wait"#;

#[test]
fn get_hardens_before_it_asks_a_backend() {
    let f = fixture(SLOW_PROVIDER);
    let root = nix_uid() == 0;
    // Run as another user where we can, so that /proc shows dumpability: the kernel makes a
    // process's /proc/PID files owned by root while it is not dumpable.
    // The provider writes its PID next to itself, so its directory is writable by all.
    for (path, mode) in [("", 0o755), ("bin", 0o777), ("bin/provider", 0o755), ("config.yaml", 0o644)] {
        fs::set_permissions(f.path(path), fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut command = under_bash(
        &f,
        "ulimit -S -c unlimited",
        &["get", "probe", "--config", "config.yaml", "--role", "worker"],
    );
    if root {
        command.uid(65534).gid(65534);
    }
    let mut launcher = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = launcher.id();
    wait_for(&f.path("bin/probe.pid"), &mut launcher);

    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap().to_owned();
    let words: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(words[4], "0", "soft core limit while get waits on its backend: {core}");
    let status = fs::metadata(format!("/proc/{pid}/status")).unwrap();
    let runs_as = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:").map(|u| u.split_whitespace().next().unwrap().parse::<u32>().unwrap())
        })
        .unwrap();
    if runs_as != 0 {
        assert_eq!(
            status.uid(),
            0,
            "/proc/{pid} of a uid {runs_as} process is root's only when not dumpable"
        );
    }
    let _ = launcher.kill();
    let _ = launcher.wait();
    if let Ok(pid) = fs::read_to_string(f.path("bin/probe.grandchild")) {
        let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
    }
}

fn nix_uid() -> u32 {
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

/// Whether process `pid` is gone (or a zombie nobody reaps, which holds nothing).
fn gone(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn all_gone_within(pids: &[String], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pids.iter().all(|p| gone(p)) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Starts `run` with two slow secrets (two fetch threads), its own process group, and waits
/// until both providers and their grandchildren run. Returns the launcher and the PIDs.
fn launch_slow(f: &Fixture) -> (Child, Vec<String>, Vec<String>) {
    for name in ["probe", "second"] {
        let _ = fs::remove_file(f.path(&format!("bin/{name}.pid")));
        let _ = fs::remove_file(f.path(&format!("bin/{name}.grandchild")));
    }
    let mut launcher = f
        .command(Args::run("worker").secrets(["probe", "second"]).program(["true"]))
        .process_group(0)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut providers = Vec::new();
    let mut grandchildren = Vec::new();
    for name in ["probe", "second"] {
        providers.push(wait_for(&f.path(&format!("bin/{name}.pid")), &mut launcher));
        grandchildren.push(wait_for(&f.path(&format!("bin/{name}.grandchild")), &mut launcher));
    }
    (launcher, providers, grandchildren)
}

fn kill(signal: &str, target: &str) {
    let status = Command::new("kill").args([signal, "--", target]).status().unwrap();
    assert!(status.success(), "kill {signal} {target}");
}

#[test]
fn backends_and_their_groups_die_with_the_launcher() {
    let f = fixture(SLOW_PROVIDER);
    for (signal, number, to_group) in
        [("-INT", 2, false), ("-INT", 2, true), ("-TERM", 15, false), ("-HUP", 1, true)]
    {
        let (mut launcher, providers, grandchildren) = launch_slow(&f);
        let pid = launcher.id().to_string();
        kill(signal, &if to_group { format!("-{pid}") } else { pid });
        let status = launcher.wait().unwrap();
        assert_eq!(status.code(), Some(128 + number), "{signal} (group: {to_group}): {status:?}");
        let all: Vec<String> = providers.iter().chain(&grandchildren).cloned().collect();
        assert!(
            all_gone_within(&all, Duration::from_secs(1)),
            "{signal} (group: {to_group}) left backends running: {all:?}"
        );
    }
    // SIGKILL cannot be caught: each backend's PR_SET_PDEATHSIG still ends it, although
    // each was started by a fetch thread rather than the main one.
    let (mut launcher, providers, grandchildren) = launch_slow(&f);
    kill("-KILL", &launcher.id().to_string());
    assert_eq!(launcher.wait().unwrap().signal(), Some(9));
    assert!(
        all_gone_within(&providers, Duration::from_secs(1)),
        "SIGKILL left providers running: {providers:?}"
    );
    for pid in grandchildren {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    }
}

/// Bit `signal` of a `Sig*` mask line of /proc/self/status as the program saw it.
fn has_signal(status: &str, field: &str, signal: u32) -> bool {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap() & (1 << (signal - 1)) != 0
}

fn program_status(mut command: Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", shown(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const SHOW_STATUS: [&str; 10] = [
    "run",
    "--config",
    "config.yaml",
    "--role",
    "worker",
    "--secret",
    "other",
    "--",
    "cat",
    "/proc/self/status",
];

#[test]
fn the_program_inherits_the_launchers_signal_dispositions_and_mask() {
    let f = fixture("true");
    const SIGHUP: u32 = 1;
    const SIGINT: u32 = 2;
    const SIGUSR1: u32 = 10;
    const SIGPIPE: u32 = 13;
    // systemd starts services with SIGPIPE ignored.
    let status = program_status(under_bash(&f, "trap '' PIPE", &SHOW_STATUS));
    assert!(has_signal(&status, "SigIgn:", SIGPIPE), "{status}");
    // A shell starts programs with it at default.
    let status = program_status(under_bash(&f, "trap - PIPE", &SHOW_STATUS));
    assert!(!has_signal(&status, "SigIgn:", SIGPIPE), "{status}");
    // A background job has SIGINT ignored; the launcher's own handlers leave that alone, and
    // what they catch is default again in the program.
    let status = program_status(under_bash(&f, "trap '' INT", &SHOW_STATUS));
    assert!(has_signal(&status, "SigIgn:", SIGINT), "{status}");
    assert!(!has_signal(&status, "SigIgn:", SIGHUP) && !has_signal(&status, "SigCgt:", SIGHUP), "{status}");
    // A blocked signal stays blocked, as under env(1).
    let mut command = f.tool("python3");
    command
        .args([
            "-c",
            "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1}); os.execv(sys.argv[1], sys.argv[1:])",
            LAUNCHER,
        ])
        .args(SHOW_STATUS);
    let status = program_status(command);
    assert!(has_signal(&status, "SigBlk:", SIGUSR1), "{status}");
}

fn descriptor_case(f: &Fixture, ulimit: u32, manifest: &str, program: &str) -> Output {
    let path: PathBuf = f.write("manifest.yaml", manifest);
    let args = ["run", "--config", "config.yaml", "--role", "worker", "--manifest"];
    let mut command = under_bash(f, &format!("ulimit -n {ulimit}"), &args);
    command.arg(&path).args(["--", "sh", "-c", program]);
    command.output().unwrap()
}

#[test]
fn descriptors_are_placed_within_the_limit() {
    let f = fixture("true");
    // The highest descriptor the limit allows.
    let output = descriptor_case(&f, 1024, "secrets:\n  - {name: other, fd: 1023}\n", "cat /dev/fd/1023");
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), CANARY);
    // Two memfds made at each other's targets (the first at 3, the second at 4).
    let output = descriptor_case(
        &f,
        1024,
        "secrets:\n  - {name: other, fd: 4}\n  - {name: more, fd: 3}\n",
        "cat /dev/fd/4; echo; cat <&3",
    );
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{CANARY}\nsecond-value"));
}

#[test]
fn descriptors_beyond_the_limit_are_refused_before_any_backend_is_asked() {
    let f = fixture("touch \"$(dirname \"$0\")/asked\"; echo value");
    let output = descriptor_case(&f, 512, "secrets:\n  - {name: probe, fd: 600}\n", "true");
    assert_eq!(output.status.code(), Some(65), "{}", shown(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("manifest.yaml") && stderr.contains("fd 600"), "{}", shown(&output));
    assert!(stderr.contains("descriptor limit (512, `ulimit -n`)"), "{}", shown(&output));
    assert!(!f.path("bin/asked").exists(), "the backend was asked");
    // Within the limit the same manifest works, so the refusal is the limit's.
    let output = descriptor_case(&f, 1024, "secrets:\n  - {name: probe, fd: 600}\n", "cat /dev/fd/600");
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "value");
}

/// While a backend runs, the launcher sleeps in `poll` on the backend's pipes and a pidfd
/// until output or the exit comes, never on a timer: waking every 10 ms to ask whether the
/// program exited cost ~50 wake-ups over this half second, and up to 10 ms on every fetch.
#[test]
fn the_launcher_waits_for_a_backend_without_waking_up() {
    let f = fixture(&format!("sleep 0.5\necho {CANARY}"));
    let summary = f.path("syscalls");
    let output = f
        .tool("strace")
        .args(["-f", "-c", "-o", summary.to_str().unwrap()])
        .args(["-e", "trace=poll,ppoll,nanosleep,clock_nanosleep", "--", LAUNCHER])
        .args(["get", "probe", "--config", "config.yaml", "--role", "worker"])
        .output()
        .expect("strace must be installed (apt-get install strace)");
    assert!(output.status.success(), "{}", shown(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), CANARY);
    assert!(!String::from_utf8_lossy(&output.stderr).contains(CANARY));
    // `strace -c` prints `% time  seconds  usecs/call  calls  [errors]  syscall` per call.
    let summary = fs::read_to_string(&summary).unwrap();
    let calls = |names: &[&str]| -> u64 {
        summary
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|columns| columns.len() >= 5 && names.contains(columns.last().unwrap()))
            .map(|columns| columns[3].parse::<u64>().unwrap())
            .sum()
    };
    // A few polls: the output, the pipes closing and the exit, draining what is left.
    assert!(calls(&["poll", "ppoll"]) <= 8, "the launcher woke up to poll:\n{summary}");
    // The provider's `sleep` is the one sleep allowed.
    assert!(calls(&["nanosleep", "clock_nanosleep"]) <= 1, "something slept:\n{summary}");
}

/// On kernels without `pidfd_open` (before 5.3; here strace makes the call fail with ENOSYS)
/// the launcher falls back to asking whether the program exited: a grandchild holding the
/// pipe still does not keep it waiting, and a deadline still kills the whole group.
#[test]
fn without_pidfds_the_waits_keep_their_guarantees() {
    let f = Fixture::new();
    let forks = f.script("bin/forks", &format!("sleep 300 &\necho {CANARY}"));
    let hangs = f.script("bin/hangs", "sleep 300 &\nsleep 300");
    f.config(&format!(
        "stores:
  forks: {{backend: command, root: r, command: ['{}'], timeout: 300}}
  hangs: {{backend: command, root: r, command: ['{}'], timeout: 1}}
refs:
  forked: {{store: forks, path: x, policy: p}}
  hung: {{store: hangs, path: x, policy: p}}
policies:
  p: {{allowed_principals: [worker]}}
",
        forks.display(),
        hangs.display()
    ));
    let trace = f.path("trace");
    let get = |name: &str| {
        let started = Instant::now();
        let output = f
            .tool("strace")
            .args(["-f", "-qq", "-o", trace.to_str().unwrap(), "-e", "trace=pidfd_open"])
            .args(["-e", "inject=pidfd_open:error=ENOSYS", "--", LAUNCHER])
            .args(["get", name, "--config", "config.yaml", "--role", "worker"])
            .output()
            .expect("strace must be installed (apt-get install strace)");
        assert!(!String::from_utf8_lossy(&output.stderr).contains(CANARY));
        assert!(fs::read_to_string(&trace).unwrap().contains("ENOSYS"), "pidfd_open was not refused");
        (output, started.elapsed())
    };
    let (output, took) = get("forked");
    assert!(output.status.success(), "{}", shown(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), CANARY);
    assert!(took < Duration::from_secs(30), "waited {took:?} for a grandchild holding the pipe");
    let (output, took) = get("hung");
    assert_eq!(output.status.code(), Some(75), "{}", shown(&output));
    assert!(took < Duration::from_secs(30), "the 1 s deadline took {took:?}");
}
