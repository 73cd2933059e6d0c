//! The broker (`mxm-secrets serve`), with real processes: a broker started by the test as
//! root with a 0600 config, clients run as throwaway users (`useradd` here, `userdel` on
//! drop, `setpriv` to become them) and a raw protocol client for what the launcher's own
//! client never sends (stalls, half frames, oversized frames). Tests that need root say so
//! in their name and skip with the reason when not root; CI runs as root.

use std::fs;
use std::io::{ErrorKind, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
use nix::unistd::Pid;

use crate::util::{Args, CANARY, Fixture, LAUNCHER, TestGroup, TestUser};

/// A config with a file-backend store under `secrets/` (the canary is `api_key`, a second
/// value `db_password`) allowed to role `worker`, plus whatever `extra_policy` adds to
/// policy `p` (`users: [...]` and `groups: [...]` once the judge knows them).
pub fn broker_config(f: &Fixture, extra_policy: &str) -> PathBuf {
    f.write("secrets/api/key", CANARY);
    f.write("secrets/db/password", "db-value-1");
    let root = f.path("secrets");
    f.config(&format!(
        "stores:\n  files: {{backend: file, root: '{}'}}\nrefs:\n  api_key: {{store: files, path: api/key, policy: p}}\n  \
         db_password: {{store: files, path: db/password, policy: p}}\npolicies:\n  p: {{allowed_principals: [worker]{extra_policy}}}\n",
        root.display()
    ))
}

fn is_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped: needs root (a broker owning its config, throwaway users); CI runs as root");
    }
    root
}

/// A broker started by the test, stopped (SIGTERM, then SIGKILL) by it; its stderr (log
/// lines and audit records) goes to `broker.log` in the fixture's dir.
pub struct Broker {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
}

impl Broker {
    /// `serve --config config.yaml --socket run/broker.sock` plus `extra`, once its socket is there.
    pub fn start(f: &Fixture, extra: &[&str]) -> Broker {
        let socket = f.path("run/broker.sock");
        let log = f.path("broker.log");
        let mut command = f.command(["serve", "--config", "config.yaml", "--log-format", "json", "--socket"]);
        command.arg(&socket).args(extra).stdout(Stdio::null());
        command.stderr(fs::File::create(&log).unwrap());
        let child = command.spawn().expect("the broker starts");
        let broker = Broker { child, socket, log };
        broker.wait_for("serving ");
        broker
    }

    /// What the broker has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 20 s) until the log holds `needle`; panics with the log otherwise.
    pub fn wait_for(&self, needle: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the broker never logged {needle:?}; its log:\n{}", self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// SIGTERM, then its exit status; the log must hold no canary.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        let status = self.wait(Duration::from_secs(20)).expect("the broker exits on SIGTERM");
        assert!(!self.log().contains(CANARY), "a secret reached the broker's log:\n{}", self.log());
        status
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fixture whose dir other users may pass through (not list), with the broker config
/// (policy `p` plus `extra_policy`, see [`broker_config`]), a broker started with `extra`
/// whose socket group is `user`'s, and a root-owned manifest they may read.
pub fn served_with(tag: &str, extra_policy: &str, extra: &[&str]) -> (Fixture, TestUser, Broker) {
    let f = Fixture::new();
    fs::set_permissions(f.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    broker_config(&f, extra_policy);
    let user = TestUser::new(&format!("b{tag}"));
    let manifest = f.write("m.yaml", "secrets:\n  - {name: api_key, fd: 3}\n  - {name: db_password}\n");
    fs::set_permissions(&manifest, fs::Permissions::from_mode(0o644)).unwrap();
    let group = user.gid.to_string();
    let mut args = vec!["--socket-group", &group];
    args.extend_from_slice(extra);
    let broker = Broker::start(&f, &args);
    (f, user, broker)
}

fn served(tag: &str, extra: &[&str]) -> (Fixture, TestUser, Broker) {
    served_with(tag, "", extra)
}

/// `run --broker SOCKET --role ROLE` and the rest.
fn via(broker: &Broker, subcommand: &str, role: &str) -> Vec<String> {
    vec![
        subcommand.to_owned(),
        "--broker".to_owned(),
        broker.socket.display().to_string(),
        "--role".to_owned(),
        role.to_owned(),
    ]
}

fn with<S: ToString>(mut args: Vec<String>, more: impl IntoIterator<Item = S>) -> Vec<String> {
    args.extend(more.into_iter().map(|s| s.to_string()));
    args
}

#[test]
fn as_root_a_throwaway_user_gets_values_from_a_config_it_cannot_read() {
    if !is_root() {
        return;
    }
    let (f, user, broker) = served("a", &[]);
    // The user can read neither the config nor the store: without the broker, nothing.
    let cat = user.command(&f, "cat", [f.path("config.yaml")]).output().unwrap();
    assert!(!cat.status.success(), "the client read the broker's config");
    user.run(&f, with(argv(Args::run("worker")), ["--secret", "api_key", "--", "true"])).code(78);
    // Through the broker: the descriptor and the variable, exactly as a local run places them.
    let script = "cat <&3; echo; printf %s \"$DB_PASSWORD\"; echo; readlink /proc/self/fd/3";
    let run =
        user.run(&f, with(via(&broker, "run", "worker"), ["--manifest", "m.yaml", "--", "sh", "-c", script]));
    run.code(0);
    let out = run.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], [CANARY, "db-value-1"], "{out}");
    assert!(lines[2].starts_with("/memfd:mxm-secrets:api_key"), "{out}");
    // get, check and list through the broker too; a role the policy does not allow is 77.
    user.run(&f, with(via(&broker, "get", "worker"), ["api_key"])).code(0).stdout_is(CANARY);
    user.run(&f, with(via(&broker, "check", "worker"), ["--manifest", "m.yaml"]))
        .code(0)
        .stdout_has("api_key  allowed");
    user.run(&f, with(via(&broker, "list", "worker"), Vec::<String>::new()))
        .code(0)
        .stdout_has("db_password");
    user.run(&f, with(via(&broker, "run", "intruder"), ["--secret", "api_key", "--", "true"]))
        .code(77)
        .stderr_has("denied to principal `intruder`");
    // MXM_SECRETS_BROKER does what --broker does, and the program does not inherit it.
    let mut env_run = user.command(
        &f,
        LAUNCHER,
        [
            "run",
            "--role",
            "worker",
            "--secret",
            "db_password",
            "--",
            "sh",
            "-c",
            "echo \"$DB_PASSWORD:${MXM_SECRETS_BROKER-unset}\"",
        ],
    );
    env_run.env("MXM_SECRETS_BROKER", &broker.socket);
    crate::util::Run::of(env_run).code(0).stdout_is("db-value-1:unset\n");
    // The audit names the caller as the kernel gave it: uid, pid, executable.
    let log = broker.log();
    assert!(log.contains(&format!("\"uid\":{}", user.uid)), "{log}");
    assert!(log.contains("\"caller_pid\":"), "{log}");
    assert!(log.contains(&format!("\"caller_exe\":\"{LAUNCHER}\"")), "{log}");
    assert!(broker.stop().success());
}

/// The raw client: one request frame; the answer and the descriptors that came with it.
fn exchange(socket: &Path, body: &[u8]) -> (serde_json::Value, Vec<OwnedFd>) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    stream.write_all(body).unwrap();
    receive(&stream)
}

fn receive(stream: &UnixStream) -> (serde_json::Value, Vec<OwnedFd>) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut bytes = Vec::new();
    let mut fds = Vec::new();
    let mut space = nix::cmsg_space!([RawFd; 16]);
    loop {
        let mut chunk = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut chunk)];
        let message =
            recvmsg::<UnixAddr>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                .unwrap();
        for cmsg in message.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel just installed these descriptors in this process for us.
                fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        let n = message.bytes;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() >= 4 && bytes.len() >= 4 + u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize
        {
            break;
        }
    }
    assert!(bytes.len() >= 4, "no answer");
    let text = &bytes[4..];
    assert!(!text.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "a value inside a message");
    (serde_json::from_slice(text).unwrap(), fds)
}

fn request(op: &str, names: &[&str]) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"version": 1, "op": op, "identity": {"role": "worker"}, "names": names}),
    )
    .unwrap()
}

#[test]
fn as_root_values_arrive_as_sealed_memfds_never_inside_a_message() {
    if !is_root() {
        return;
    }
    let (_f, _user, broker) = served("s", &[]);
    // Hardened before any value is in memory: no core file can hold one.
    let limits = fs::read_to_string(format!("/proc/{}/limits", broker.pid())).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    let (answer, fds) = exchange(&broker.socket, &request("fetch", &["api_key", "db_password"]));
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(fds.len(), 2);
    let all =
        SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_SEAL;
    for secret in answer["secrets"].as_array().unwrap() {
        let fd = &fds[secret["fd"].as_u64().unwrap() as usize];
        let seals = SealFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GET_SEALS).unwrap());
        assert!(seals.contains(all), "{secret}: seals {seals:?}");
        let mut value = String::new();
        fs::File::from(fd.try_clone().unwrap()).read_to_string(&mut value).unwrap();
        let expected = if secret["name"] == "api_key" { CANARY } else { "db-value-1" };
        assert_eq!(value, expected);
    }
    // check and list answer without any value or descriptor.
    let (answer, fds) = exchange(&broker.socket, &request("check", &["api_key", "nope"]));
    assert_eq!((answer["exit_code"].as_u64(), fds.len()), (Some(65), 0), "{answer}");
    assert_eq!(answer["secrets"][1]["decision"], "undefined");
    let (answer, fds) = exchange(&broker.socket, &request("list", &[]));
    let names: Vec<&str> =
        answer["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!((names, fds.len()), (vec!["api_key", "db_password"], 0), "{answer}");
    // Another protocol version is refused, saying which one is spoken.
    let (answer, _) =
        exchange(&broker.socket, br#"{"version": 2, "op": "list", "identity": {"role": "worker"}}"#);
    assert_eq!(answer["exit_code"], 64);
    assert!(answer["error"].as_str().unwrap().contains("speaks version 1"), "{answer}");
    assert!(broker.stop().success());
}

/// Whether the broker has closed `stream` (EOF) rather than still waiting on it.
fn closed(stream: &UnixStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

#[test]
fn as_root_a_stalled_client_delays_nobody_and_is_dropped_at_its_deadline() {
    if !is_root() {
        return;
    }
    let (f, user, broker) = served("t", &["--client-timeout", "60"]);
    // One says nothing, one sends half a length prefix, one a prefix and half its body.
    let silent = UnixStream::connect(&broker.socket).unwrap();
    let mut half_prefix = UnixStream::connect(&broker.socket).unwrap();
    half_prefix.write_all(&[0, 0]).unwrap();
    let mut half_body = UnixStream::connect(&broker.socket).unwrap();
    half_body.write_all(&100u32.to_be_bytes()).unwrap();
    half_body.write_all(b"{\"version\":").unwrap();
    // Another client is served while all three still hold their connections: were they
    // served one after another, theirs would have to end (60 s deadline, then closed) first.
    user.run(&f, with(via(&broker, "run", "worker"), ["--secret", "api_key", "--", "true"])).code(0);
    for stalled in [&silent, &half_prefix, &half_body] {
        assert!(!closed(stalled), "a stalled connection was dropped before another client was served");
    }
    drop((silent, half_prefix, half_body));
    assert!(broker.stop().success());

    // With a short deadline the stalled client is dropped, with no answer.
    let f = Fixture::new();
    broker_config(&f, "");
    let broker = Broker::start(&f, &["--client-timeout", "0.5"]);
    let mut half = UnixStream::connect(&broker.socket).unwrap();
    half.write_all(&[0, 0, 0]).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(half.read_to_end(&mut rest).unwrap(), 0, "the broker answered a stalled client");
    broker.wait_for("dropped: the message did not arrive in time");
    assert!(broker.stop().success());
}

#[test]
fn as_root_oversized_requests_and_too_many_names_are_refused() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    broker_config(&f, "");
    let broker = Broker::start(&f, &[]);
    // A length prefix over the limit is answered at once, without reading the body.
    let mut stream = UnixStream::connect(&broker.socket).unwrap();
    stream.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    let (answer, _) = receive(&stream);
    assert_eq!(answer["exit_code"], 64, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("over the broker's limit of 65536 bytes"), "{answer}");
    // 129 names: more than one request may carry.
    let mut args = argv(Args::check("worker").arg("--broker").arg(&broker.socket));
    args.retain(|a| a != "--config" && a != "config.yaml");
    for i in 0..129 {
        args.extend(["--secret".to_owned(), format!("name_{i}")]);
    }
    f.run(args).code(65).stderr_has("129 names; one request may name at most 128");
    assert!(broker.stop().success());
}

#[test]
fn as_root_past_max_connections_a_client_is_told_75_at_once() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    broker_config(&f, "");
    let broker = Broker::start(&f, &["--max-connections", "2", "--client-timeout", "60"]);
    let held = [UnixStream::connect(&broker.socket).unwrap(), UnixStream::connect(&broker.socket).unwrap()];
    f.run(
        ["get", "api_key", "--role", "worker", "--broker"]
            .map(String::from)
            .into_iter()
            .chain([broker.socket.display().to_string()]),
    )
    .code(75)
    .stderr_has("the broker is serving its maximum of 2 connections; try again shortly");
    drop(held);
    // Once they are gone, it serves again.
    let start = Instant::now();
    loop {
        let get = f
            .command(["get", "api_key", "--role", "worker", "--broker"])
            .arg(&broker.socket)
            .output()
            .unwrap();
        if get.status.success() {
            assert_eq!(get.stdout, CANARY.as_bytes());
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never served again: {get:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(broker.stop().success());
}

#[test]
fn as_root_sighup_reloads_and_a_broken_config_keeps_the_old_one() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    broker_config(&f, "");
    let broker = Broker::start(&f, &[]);
    let get = |role: &str| {
        f.command(["get", "api_key", "--role", role, "--broker"]).arg(&broker.socket).output().unwrap()
    };
    assert!(get("worker").status.success());
    // A broken config: refused, logged, and the old one still answers.
    f.config("stores: [this is not\n");
    broker.signal(Signal::SIGHUP);
    broker.wait_for("reload refused, still serving the config loaded before");
    assert!(get("worker").status.success());
    // A good one replaces it: now `auditor` reads, `worker` no longer.
    broker_config(&f, "");
    let text = fs::read_to_string(f.path("config.yaml")).unwrap().replace("[worker]", "[auditor]");
    f.config(&text);
    broker.signal(Signal::SIGHUP);
    broker.wait_for("reloaded ");
    assert_eq!(get("worker").status.code(), Some(77));
    assert_eq!(get("auditor").stdout, CANARY.as_bytes());
    assert!(broker.stop().success());
}

#[test]
fn as_root_sigterm_finishes_what_is_in_flight_then_exits_0() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    // A store that takes a moment: the request is in flight when SIGTERM comes.
    let slow = f.script("slow", &format!("sleep 1; printf %s '{CANARY}'"));
    f.config(&format!(
        "stores:\n  slow: {{backend: command, root: r, command: ['{}']}}\nrefs:\n  api_key: {{store: slow, path: k, policy: p}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n",
        slow.display()
    ));
    let broker = Broker::start(&f, &[]);
    let client = f
        .command(["get", "api_key", "--role", "worker", "--broker"])
        .arg(&broker.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    broker.wait_for("\"decision\":\"allowed\"");
    let socket = broker.socket.clone();
    let status = broker.stop();
    assert!(status.success(), "{status}");
    let output = client.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, CANARY.as_bytes());
    // It accepts nobody after: its socket is gone, and a client says where it looked (69).
    f.run(
        ["get", "api_key", "--role", "worker", "--broker"]
            .map(String::from)
            .into_iter()
            .chain([socket.display().to_string()]),
    )
    .code(69)
    .stderr_has(&format!("the broker at {}: cannot be reached", socket.display()));
}

#[test]
fn an_unreachable_broker_is_69_naming_the_socket() {
    let f = Fixture::new();
    f.run([
        "run",
        "--broker",
        "/nonexistent/mxm/broker.sock",
        "--role",
        "worker",
        "--secret",
        "api_key",
        "--",
        "true",
    ])
    .code(69)
    .stderr_has("the broker at /nonexistent/mxm/broker.sock: cannot be reached");
    // MXM_SECRETS_BROKER stands in for --broker; a --config on the line wins over it, and
    // --config with --broker is a usage error.
    let mut f = Fixture::new();
    f.config(crate::util::ENV_CONFIG);
    f.env("SRC_API_KEY", CANARY).env("MXM_SECRETS_BROKER", "/nonexistent/mxm/env.sock");
    f.run(["get", "api_key", "--role", "worker"])
        .code(69)
        .stderr_has("the broker at /nonexistent/mxm/env.sock");
    f.run(argv(Args::get("api_key", "worker"))).code(0).stdout_is(CANARY);
    f.run(argv(Args::get("api_key", "worker").args(["--broker", "/x.sock"])))
        .code(64)
        .stderr_has("'--config <FILE>' cannot be used with '--broker <SOCKET>'");
}

#[test]
fn a_socket_in_a_directory_anyone_may_write_is_refused_with_78() {
    let f = Fixture::new();
    broker_config(&f, "");
    let open = f.path("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    f.run(["serve", "--config", "config.yaml", "--socket", &open.join("b.sock").display().to_string()])
        .code(78)
        .stderr_has("is writable by everyone, so anyone could replace the socket");
}

#[test]
fn as_root_a_caller_from_another_pid_namespace_is_denied() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    broker_config(&f, "");
    // The broker in a PID namespace of its own: the client's pid is 0 there.
    let log = f.path("ns.log");
    let socket = f.path("run/ns.sock");
    let mut broker = f.tool("unshare");
    broker
        .args(["--pid", "--fork", "--kill-child", LAUNCHER, "serve", "--config", "config.yaml", "--socket"])
        .arg(&socket)
        .stderr(fs::File::create(&log).unwrap());
    let mut child = broker.spawn().unwrap();
    let start = Instant::now();
    while !socket.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = f.run(["get", "api_key", "--role", "worker", "--broker", &socket.display().to_string()]);
    let _ = child.kill();
    let _ = child.wait();
    run.code(77).stderr_has("runs in another PID namespace (its pid is 0 here)");
}

/// The argv of an [`Args`], to extend.
fn argv(args: Args) -> Vec<String> {
    args.into_iter().collect()
}

/// Socket activation as systemd does it (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`), by
/// systemd's own `systemd-socket-activate`: the broker's socket is the one named `broker`.
#[test]
fn systemd_socket_activation_hands_over_the_named_sockets() {
    let Ok(activate) = which("systemd-socket-activate") else {
        eprintln!("skipped: systemd-socket-activate is not installed (package systemd)");
        return;
    };
    let f = Fixture::new();
    broker_config(&f, "");
    let (socket, credentials) = (f.path("broker.sock"), f.path("credentials.sock"));
    let mut command = f.tool(&activate.display().to_string());
    command
        .arg("-l")
        .arg(&credentials)
        .arg("-l")
        .arg(&socket)
        .arg("--fdname=credentials:broker")
        .args([LAUNCHER, "serve", "--config", "config.yaml"])
        .stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    let start = Instant::now();
    while !socket.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let get = f.run(["get", "api_key", "--role", "worker", "--broker", &socket.display().to_string()]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    get.code(0).stdout_is(CANARY);
    assert!(status.success(), "{status}");

    // Sockets it cannot tell apart are refused: a usage error, before anything is served.
    let other = f.path("other.sock");
    let mut command = f.tool(&activate.display().to_string());
    command.arg("-l").arg(&other).arg("-l").arg(f.path("x.sock")).arg("--fdname=a:b");
    command.args([LAUNCHER, "serve", "--config", "config.yaml"]).stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    let start = Instant::now();
    while !other.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first connection starts it.
    let _ = UnixStream::connect(&other);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("FileDescriptorName=broker"), "{output:?}");
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(())
}

/// `--credentials-socket`: made 0600 whatever `--socket-mode` says (only systemd, as root,
/// needs it), and each connection handed to the credentials handler, which ends it.
#[test]
fn the_credentials_socket_is_its_owners_alone_and_each_connection_is_answered() {
    let f = Fixture::new();
    broker_config(&f, "");
    let credentials = f.path("run/credentials.sock");
    let broker = Broker::start(&f, &["--credentials-socket", &credentials.display().to_string()]);
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&broker.socket), mode(&credentials)), (0o660, 0o600));
    let mut stream = UnixStream::connect(&credentials).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the connection is ended, not left open");
    assert!(!answer.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));
    assert!(broker.stop().success());
}

/// The process that connected has exited by the time its request is complete (a child it
/// forked holds the connection and sends the request): the pid may name anyone now, so the
/// caller cannot be identified and is denied.
#[test]
fn as_root_a_caller_whose_process_has_gone_is_denied() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    broker_config(&f, "");
    let broker = Broker::start(&f, &[]);
    let script = r#"
import json, os, socket, struct, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
if os.fork() == 0:
    time.sleep(0.5)  # the connecting parent has exited by now (a zombie till the test reaps it)
    body = json.dumps({"version": 1, "op": "fetch", "identity": {"role": "worker"}, "names": ["api_key"]}).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    sys.stdout.write(data[4:].decode())
    sys.stdout.flush()
    os._exit(0)
os._exit(0)
"#;
    let mut command = f.tool("python3");
    command.args(["-c", script]).arg(&broker.socket).stdout(Stdio::piped());
    let parent = command.spawn().unwrap();
    // The grandchild inherited the stdout pipe: reading it to the end waits for its answer.
    let output = parent.wait_with_output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("an answer");
    assert_eq!(answer["exit_code"], 77, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("exited before it could be identified"), "{answer}");
    assert!(broker.log().contains("denied a caller that cannot be identified"));
    assert!(broker.stop().success());
}

/// The socket's directory opened to everyone, for tests whose second user is outside the
/// socket's group: the policy, not the file mode, must be what stops it.
fn open_to_all(broker: &Broker) {
    fs::set_permissions(broker.socket.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
}

/// A client's stderr: no value, no allowed list, no store path.
fn says_nothing_more(run: &crate::util::Run, f: &Fixture) {
    let stderr = run.stderr();
    assert!(!stderr.contains(CANARY), "{stderr}");
    assert!(!stderr.contains("allowed:"), "a denied client was told the policy's list: {stderr}");
    assert!(!stderr.contains(&f.path("secrets").display().to_string()), "a store path: {stderr}");
    assert!(!stderr.contains("config.yaml"), "the config's path: {stderr}");
    assert!(stderr.contains("the broker's log has the whole reason; ask its operator"), "{stderr}");
}

/// `users` decides through the broker: of two throwaway users declaring the same role, the
/// one listed gets the value, the other is denied 77, told which user it is (its own fact)
/// and neither the value nor the list.
#[test]
fn as_root_policy_users_decide_through_the_broker() {
    if !is_root() {
        return;
    }
    let listed = TestUser::name_for("bu");
    let (f, user, broker) = served_with("u", &format!(", users: [{listed}]"), &["--socket-mode", "0666"]);
    let other = TestUser::new("bv");
    open_to_all(&broker);
    user.run(&f, with(via(&broker, "get", "worker"), ["api_key"])).code(0).stdout_is(CANARY);
    let denied = other.run(&f, with(via(&broker, "get", "worker"), ["api_key"]));
    denied
        .code(77)
        .stderr_has(&format!("user {} (uid {}) is not one of the policy's users", other.name, other.uid));
    says_nothing_more(&denied, &f);
    assert!(!denied.stderr().contains(&listed), "the denied client learnt who is allowed");
    // The broker's log has the whole reason, with the list.
    broker.wait_for(&format!("(allowed: `{listed} (uid {})`)", user.uid));
    assert!(broker.stop().success());
}

/// `groups` decides by a supplementary group the kernel reports (`groupadd` here, the user
/// made a member after it exists, `setpriv --init-groups` takes it up).
#[test]
fn as_root_policy_groups_decide_through_a_supplementary_group() {
    if !is_root() {
        return;
    }
    let group = TestGroup::new("g");
    let (f, user, broker) =
        served_with("g", &format!(", groups: [{}]", group.name), &["--socket-mode", "0666"]);
    let other = TestUser::new("bh");
    open_to_all(&broker);
    // Before it is a member: denied, naming its own groups.
    user.run(&f, with(via(&broker, "get", "worker"), ["api_key"]))
        .code(77)
        .stderr_has("none of the caller's groups");
    group.add(&user);
    user.run(&f, with(via(&broker, "get", "worker"), ["api_key"])).code(0).stdout_is(CANARY);
    let denied = other.run(&f, with(via(&broker, "get", "worker"), ["api_key"]));
    denied.code(77).stderr_has(&format!("none of the caller's groups ({} (gid {}))", other.name, other.gid));
    says_nothing_more(&denied, &f);
    assert!(!denied.stderr().contains(&group.name), "the denied client learnt the allowed group");
    assert!(broker.stop().success());
}

/// `units`: this machine runs no systemd as PID 1, so no caller here runs in a unit, and a
/// policy that names one denies it (the cgroup-to-unit path is unit-tested in
/// `broker::peer`).
#[test]
fn as_root_policy_units_deny_a_caller_in_no_unit() {
    if !is_root() {
        return;
    }
    let (f, user, broker) = served_with("n", ", units: [feed.service]", &[]);
    let denied = user.run(&f, with(via(&broker, "get", "worker"), ["api_key"]));
    denied.code(77).stderr_has("the caller runs in no systemd unit");
    says_nothing_more(&denied, &f);
    assert!(!denied.stderr().contains("feed.service"), "the denied client learnt the allowed unit");
    assert!(broker.stop().success());
}

/// A principal rule with `user:` gives its principal through the broker: that user, whatever
/// role it declares, speaks as `worker`; another user declaring `worker` itself is refused,
/// since a rule produces that principal.
#[test]
fn as_root_a_principal_rule_with_user_gives_the_principal_through_the_broker() {
    if !is_root() {
        return;
    }
    let (f, user, broker) = served_with("r", "", &["--socket-mode", "0666"]);
    let other = TestUser::new("bq");
    open_to_all(&broker);
    let text = fs::read_to_string(f.path("config.yaml")).unwrap();
    f.config(&format!("{text}principals:\n  - {{principal: worker, user: {}}}\n", user.name));
    broker.signal(Signal::SIGHUP);
    broker.wait_for("reloaded ");
    user.run(&f, with(via(&broker, "get", "guest"), ["api_key"])).code(0).stdout_is(CANARY);
    user.run(&f, with(via(&broker, "list", "guest"), Vec::<String>::new()))
        .code(0)
        .stdout_has("principal  worker (from principals[0] of the config)");
    let denied = other.run(&f, with(via(&broker, "get", "worker"), ["api_key"]));
    denied.code(77).stderr_has("denied to principal `worker`");
    says_nothing_more(&denied, &f);
    other
        .run(&f, with(via(&broker, "get", "guest"), ["api_key"]))
        .code(77)
        .stderr_has("denied to principal `guest`");
    assert!(broker.stop().success());
}

/// A connection held by `user`, stalled (it sends nothing) until the returned child is
/// killed; it has connected once it printed `held`.
fn hold_as(user: &TestUser, f: &Fixture, socket: &Path) -> Child {
    let script = "import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                  print('held', flush=True)\ntime.sleep(120)\n";
    let mut command = user.command(f, "/usr/bin/python3", ["-c", script]);
    command.arg(socket).stdout(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut line = [0u8; 5];
    child.stdout.as_mut().unwrap().read_exact(&mut line).unwrap();
    assert_eq!(&line, b"held\n");
    child
}

/// One allowed user holding its share of connections (a quarter of `--max-connections`)
/// cannot starve the others: its next connection is told 75, naming its share, while
/// another user and root are served; once it lets go, it is served again.
#[test]
fn as_root_one_uid_holds_at_most_its_share_of_the_connections() {
    if !is_root() {
        return;
    }
    let (f, user, broker) =
        served("c", &["--max-connections", "4", "--client-timeout", "60", "--socket-mode", "0666"]);
    let other = TestUser::new("bd");
    open_to_all(&broker);
    let mut held = hold_as(&user, &f, &broker.socket);
    // The broker accepts the held connection in its own time: until then a client may still
    // be served.
    let get = with(via(&broker, "get", "worker"), ["api_key"]);
    let start = Instant::now();
    let refused = loop {
        let run = user.command(&f, LAUNCHER, &get).output().unwrap();
        if run.status.code() == Some(75) {
            break String::from_utf8_lossy(&run.stderr).into_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never refused: {run:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(refused.contains(&format!(
        "uid {} already holds 1 connection(s) to the broker, the most one user may hold at once (a quarter of its 4)",
        user.uid
    )), "{refused}");
    other.run(&f, get.clone()).code(0).stdout_is(CANARY);
    f.run(["get", "api_key", "--role", "worker", "--broker", &broker.socket.display().to_string()])
        .code(0)
        .stdout_is(CANARY);
    held.kill().unwrap();
    held.wait().unwrap();
    let start = Instant::now();
    while !user.command(&f, LAUNCHER, &get).output().unwrap().status.success() {
        assert!(start.elapsed() < Duration::from_secs(20), "never served again");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(broker.stop().success());
}

/// What a refused client learns: its names, the decision, its principal, its own facts; never
/// a policy's lists, a config or store path, a backend's detail, a similar name. The broker's
/// log has all of it.
#[test]
fn as_root_a_refused_client_learns_no_policy_list_and_no_path() {
    if !is_root() {
        return;
    }
    let (f, user, broker) = served("x", &[]);
    let text = fs::read_to_string(f.path("config.yaml")).unwrap().replace(
        "refs:\n",
        "refs:\n  gone: {store: files, path: gone/away, policy: p}\n  prod_key: {store: files, path: api/key, policy: prod}\n",
    );
    f.config(&format!("{text}  prod: {{allowed_principals: [worker, auditor], environments: [prod]}}\n"));
    broker.signal(Signal::SIGHUP);
    broker.wait_for("reloaded ");
    let get = |role: &str, name: &str| user.run(&f, with(via(&broker, "get", role), [name]));
    let intruder = get("intruder", "api_key");
    intruder
        .code(77)
        .stderr_has("secret `api_key`: denied to principal `intruder`: the principal is not allowed");
    says_nothing_more(&intruder, &f);
    let env = get("worker", "prod_key");
    env.code(77).stderr_has("no environment was declared, and the policy requires one");
    says_nothing_more(&env, &f);
    assert!(!env.stderr().contains("auditor") && !env.stderr().contains("[prod]"), "{}", env.stderr());
    let gone = get("worker", "gone");
    gone.code(66).stderr_has("secret `gone`: does not exist in store `files`");
    says_nothing_more(&gone, &f);
    // A near miss of a defined name is not suggested: that would list the config's names.
    let typo = get("worker", "api_kye");
    typo.code(65).stderr_has("secret `api_kye`: not defined in the broker's config");
    says_nothing_more(&typo, &f);
    assert!(!typo.stderr().contains("api_key"), "{}", typo.stderr());
    // check --broker: the same words in its text and JSON.
    let check = user.run(
        &f,
        with(
            via(&broker, "check", "intruder"),
            ["--secret", "api_key", "--secret", "gone", "--format", "json"],
        ),
    );
    check.code(77);
    says_nothing_more(&check, &f);
    for hidden in ["allowed:", "config.yaml", "gone/away", &f.path("secrets").display().to_string()] {
        assert!(!check.stdout().contains(hidden), "check told {hidden}: {}", check.stdout());
    }
    // The operator's log has the whole of it.
    let log = broker.log();
    assert!(log.contains("the principal is not allowed (allowed: `worker`)"), "{log}");
    assert!(log.contains(&f.path("secrets/gone/away").display().to_string()), "{log}");
    assert!(broker.stop().success());
}

/// `list --broker` is the report `list` makes locally, text and JSON (`mxm-secrets/list/1`),
/// with `broker` where the local one has `config`; a caller that may read nothing is told so
/// without the local report's hints about other policies.
#[test]
fn as_root_list_through_the_broker_looks_like_list_without_it() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    broker_config(&f, "");
    let broker = Broker::start(&f, &[]);
    let socket = broker.socket.display().to_string();
    for format in ["text", "json"] {
        let local = f.run(["list", "--config", "config.yaml", "--role", "worker", "--format", format]);
        let brokered = f.run(["list", "--broker", &socket, "--role", "worker", "--format", format]);
        local.code(0);
        brokered.code(0);
        if format == "text" {
            assert_eq!(brokered.stdout(), local.stdout());
            assert!(local.stdout().contains("db_password  store files  policy p"), "{}", local.stdout());
        } else {
            let mut local: serde_json::Value = serde_json::from_str(&local.stdout()).unwrap();
            let mut brokered: serde_json::Value = serde_json::from_str(&brokered.stdout()).unwrap();
            assert_eq!(brokered["broker"], socket.as_str());
            local.as_object_mut().unwrap().remove("config");
            brokered.as_object_mut().unwrap().remove("broker");
            assert_eq!(brokered, local);
        }
    }
    let nothing = f.run(["list", "--broker", &socket, "--role", "intruder", "--format", "json"]);
    nothing.code(0);
    let json: serde_json::Value = serde_json::from_str(&nothing.stdout()).unwrap();
    assert_eq!(json["schema"], "mxm-secrets/list/1");
    assert_eq!(json["secrets"], serde_json::json!([]));
    assert_eq!(json["nothing_readable"]["elsewhere"], serde_json::json!([]));
    assert!(json["nothing_readable"]["reason"].as_str().unwrap().contains("ask its operator"), "{json}");
    assert!(broker.stop().success());
}
