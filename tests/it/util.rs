//! The fixture every test starts from: a temp dir of its own, a config written into it with
//! safe permissions, the launcher run with a clean environment, and, for store tests, a real
//! gpg key and password-store made there.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use assert_cmd::assert::Assert;
use predicates::prelude::*;
use tempfile::TempDir;

/// Secret values in tests are canaries: unique strings that must never appear anywhere but
/// where a secret belongs.
pub const CANARY: &str = "canary-7d1f0c2e-never-print-me";

/// The smallest working config: one env-backend secret, `api_key`, read from `SRC_API_KEY`
/// and allowed to role `worker`.
pub const ENV_CONFIG: &str = "\
stores:
  s: {backend: env, root: src}
refs:
  api_key: {store: s, path: api/key, policy: p}
policies:
  p: {allowed_principals: [worker]}
";

pub const LAUNCHER: &str = env!("CARGO_BIN_EXE_mxm-secrets");

pub struct Fixture {
    pub dir: TempDir,
    env: Vec<(String, String)>,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new().prefix("mxm-it-").tempdir().expect("temp dir");
        let home = dir.path().join("home");
        fs::create_dir(&home).unwrap();
        let env = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".to_owned(), home.display().to_string()),
        ];
        Fixture { dir, env }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes a file readable and writable by its owner only, making its directories.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Writes an executable script.
    pub fn script(&self, relative: &str, body: &str) -> PathBuf {
        let path = self.write(relative, format!("#!/bin/sh\n{body}\n"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    pub fn config(&self, yaml: &str) -> PathBuf {
        self.write("config.yaml", yaml)
    }

    /// Sets a variable for every launcher this fixture runs.
    pub fn env(&mut self, key: &str, value: impl AsRef<OsStr>) -> &mut Fixture {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.as_ref().to_string_lossy().into_owned()));
        self
    }

    /// The launcher, in the fixture's dir, with only the fixture's environment.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.tool(LAUNCHER);
        command.args(args);
        command
    }

    /// Any program, in the fixture's dir, with only the fixture's environment (to run the
    /// launcher under strace or on a terminal).
    pub fn tool(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.current_dir(self.dir.path()).env_clear().stdin(Stdio::null());
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs the launcher with `args` (a list, or an [`Args`] builder) and checks that no
    /// canary reached its stderr.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::of(self.command(args))
    }
}

/// The launcher's argv, built up so that tests say only what differs: `Args::run("worker")`
/// is `run --config config.yaml --role worker`, the config every fixture writes.
#[derive(Clone, Debug)]
pub struct Args(Vec<String>);

impl Args {
    /// `SUBCOMMAND --config config.yaml`.
    pub fn new(subcommand: &str) -> Args {
        Args(vec![subcommand.to_owned(), "--config".to_owned(), "config.yaml".to_owned()])
    }

    /// `run --config config.yaml --role ROLE`.
    pub fn run(role: &str) -> Args {
        Args::new("run").role(role)
    }

    /// `get NAME --config config.yaml --role ROLE`.
    pub fn get(name: &str, role: &str) -> Args {
        Args::new("get").arg(name).role(role)
    }

    /// `check --config config.yaml --role ROLE`.
    pub fn check(role: &str) -> Args {
        Args::new("check").role(role)
    }

    /// Replaces the config path (`config.yaml` in the fixture's dir by default).
    pub fn config(mut self, path: impl AsRef<OsStr>) -> Args {
        self.0[2] = path.as_ref().to_string_lossy().into_owned();
        self
    }

    pub fn role(self, role: &str) -> Args {
        self.args(["--role", role])
    }

    pub fn secret(self, name: &str) -> Args {
        self.args(["--secret", name])
    }

    pub fn secrets<'a>(self, names: impl IntoIterator<Item = &'a str>) -> Args {
        names.into_iter().fold(self, Args::secret)
    }

    pub fn manifest(self, path: impl AsRef<OsStr>) -> Args {
        self.arg("--manifest").arg(path)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Args {
        self.0.push(arg.as_ref().to_string_lossy().into_owned());
        self
    }

    pub fn args<S: AsRef<OsStr>>(self, args: impl IntoIterator<Item = S>) -> Args {
        args.into_iter().fold(self, Args::arg)
    }

    /// `-- PROGRAM ARGS...`: what `run` executes; the last thing added.
    pub fn program<S: AsRef<OsStr>>(self, argv: impl IntoIterator<Item = S>) -> Args {
        self.arg("--").args(argv)
    }
}

impl IntoIterator for Args {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A finished launcher run: its output kept, the assertions those of `assert_cmd`, which on
/// failure print the command, exit code, stdout and stderr.
pub struct Run {
    pub command: String,
    pub output: Output,
}

impl Run {
    /// Runs `command` to the end (stdin empty, output captured) and checks at once that no
    /// canary reached stderr, so that no test can forget it.
    #[track_caller]
    pub fn of(command: Command) -> Run {
        let mut command = assert_cmd::Command::from_std(command);
        let shown = format!("{command:?}");
        let output = command.output().unwrap_or_else(|e| panic!("{shown} does not start: {e}"));
        let run = Run { command: shown, output };
        run.no_canary_on_stderr();
        run
    }

    /// A fresh `assert_cmd` assertion on this run's output (they consume themselves).
    fn assert(&self) -> Assert {
        Assert::new(self.output.clone()).append_context("command", self.command.clone())
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts the exit code, and that no canary value reached stderr.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        self.assert().code(expected);
        self.no_canary_on_stderr()
    }

    /// Compared as bytes: stderr need not be UTF-8, and a check that gave up on invalid
    /// UTF-8 would pass exactly where it should look hardest.
    #[track_caller]
    pub fn no_canary_on_stderr(&self) -> &Run {
        let canary = CANARY.as_bytes();
        let no_canary =
            predicate::function(|stderr: &[u8]| !stderr.windows(canary.len()).any(|w| w == canary))
                .fn_name("a secret reached stderr: no canary");
        self.assert().stderr(no_canary);
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        self.assert().stderr(predicate::str::contains(needle));
        self
    }

    #[track_caller]
    pub fn stdout_is(&self, expected: &str) -> &Run {
        self.assert().stdout(predicate::str::diff(expected.to_owned()));
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        self.assert().stdout(predicate::str::contains(needle));
        self
    }
}

#[path = "../support/gpg_store.rs"]
mod gpg_store;

pub use gpg_store::GpgStore;

impl GpgStore {
    /// A key and store in the fixture's dir, which every launcher it runs then uses.
    pub fn new(fixture: &mut Fixture) -> GpgStore {
        let store = GpgStore::create(fixture.path("gnupg"), fixture.path("password-store"));
        fixture.env("GNUPGHOME", &store.gnupghome).env("PASSWORD_STORE_DIR", &store.store);
        store
    }
}

/// The fixture's own guard: a run whose stderr carries a canary fails, even when the test
/// asserts nothing about stderr, and even when stderr is not UTF-8.
#[test]
#[should_panic(expected = "a secret reached stderr")]
fn a_canary_on_stderr_fails_every_run() {
    let f = Fixture::new();
    let mut leak = f.tool("sh");
    leak.args(["-c", &format!("printf '\\377{CANARY}' >&2")]);
    Run::of(leak);
}

/// Runs `program` with `args`, retrying while `/etc/passwd` or `/etc/group` is locked by
/// another test's useradd (tests run at once); `ok` are the exit codes that count as done.
pub fn admin(program: &str, args: &[&str], ok: &[i32]) {
    let mut last = String::new();
    for _ in 0..50 {
        let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        if out.status.code().is_some_and(|c| ok.contains(&c)) {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{program} {args:?} kept failing: {last}");
}

/// A throwaway group: `groupadd` here, `groupdel` on drop.
pub struct TestGroup {
    pub name: String,
    pub gid: u32,
}

impl TestGroup {
    /// `mxmg{tag}{pid}`: callers in different test files use tags of their own.
    pub fn new(tag: &str) -> TestGroup {
        let name = format!("mxmg{tag}{}", std::process::id() % 100_000);
        admin("groupadd", &[&name], &[0]);
        let gid = nix::unistd::Group::from_name(&name).unwrap().expect("the new group").gid.as_raw();
        TestGroup { name, gid }
    }

    /// Makes `user` a member (a supplementary group, as `useradd -G` would).
    pub fn add(&self, user: &TestUser) {
        admin("usermod", &["-a", "-G", &self.name, &user.name], &[0]);
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        // 6: no such group; it is gone either way.
        admin("groupdel", &[&self.name], &[0, 6]);
    }
}

/// A throwaway local user with a group of its own (and any supplementary groups): `useradd`
/// here, `userdel` on drop, so a failing test leaves no user behind. Becoming it is
/// `setpriv`; making it needs root (see [`root_or_skip`]).
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// The name [`TestUser::new`] gives for `tag`, for a config written before the user exists.
    pub fn name_for(tag: &str) -> String {
        format!("mxm{tag}{}", std::process::id() % 100_000)
    }

    pub fn new(tag: &str) -> TestUser {
        TestUser::with_groups(tag, &[])
    }

    pub fn with_groups(tag: &str, extra: &[&TestGroup]) -> TestUser {
        let name = TestUser::name_for(tag);
        let joined = extra.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(",");
        let mut args = vec!["--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin"];
        if !extra.is_empty() {
            args.extend(["--groups", &joined]);
        }
        args.push(&name);
        admin("useradd", &args, &[0]);
        let user = nix::unistd::User::from_name(&name).unwrap().expect("the new user");
        TestUser { name, uid: user.uid.as_raw(), gid: user.gid.as_raw() }
    }

    /// `user NAME (uid N)`, as denials name a caller.
    pub fn shown(&self) -> String {
        format!("user {} (uid {})", self.name, self.uid)
    }

    /// `setpriv` to this user (its own groups), then `program` with `args`, in the fixture.
    pub fn command<S: AsRef<OsStr>>(
        &self,
        f: &Fixture,
        program: &str,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        self.command_with(f, "--init-groups", program, args)
    }

    /// As [`TestUser::command`], with `groups` the setpriv groups option: `--init-groups`
    /// (its groups from /etc/group) or `--clear-groups`.
    pub fn command_with<S: AsRef<OsStr>>(
        &self,
        f: &Fixture,
        groups: &str,
        program: &str,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        let mut command = f.tool("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg(groups)
            .arg("--")
            .arg(program)
            .args(args);
        command
    }

    /// The launcher as this user.
    pub fn run<S: AsRef<OsStr>>(&self, f: &Fixture, args: impl IntoIterator<Item = S>) -> Run {
        Run::of(self.command(f, LAUNCHER, args))
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // 6: no such user; 12: no home to remove (we made none). Gone either way. Its own
        // group goes with it (`--user-group`).
        admin("userdel", &[&self.name], &[0, 6, 12]);
    }
}

/// Who runs the tests: root can make users and become them. Otherwise the test says why it
/// skips; CI runs as root.
pub fn root_or_skip(what: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped: {what} needs root (useradd, setpriv); CI runs as root");
    }
    root
}

/// A loopback port that was free a moment ago, for a daemon the test starts there.
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `command` as a test's daemon: HOME a temp dir of its own (`home`, so it reads no
/// user config), stdin and output discarded.
pub fn spawn_daemon(mut command: Command, home: &std::path::Path) -> std::process::Child {
    command.env("HOME", home).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    command.spawn().unwrap()
}

/// Waits up to 30 s for a daemon the test started to answer `ready`; fails naming `what`.
pub fn wait_until_up(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
