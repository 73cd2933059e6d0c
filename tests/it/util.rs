//! The fixture every test starts from: a temp dir of its own, a config written into it with
//! safe permissions, the launcher run with a clean environment, and, for store tests, a real
//! gpg key and password-store made there.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// Secret values in tests are canaries: unique strings that must never appear anywhere but
/// where a secret belongs.
pub const CANARY: &str = "canary-7d1f0c2e-never-print-me";

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

    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(args);
        let shown = format!("{command:?}");
        Run { command: shown, output: command.output().expect("launcher runs") }
    }
}

/// A finished launcher run, with assertions that print everything on failure.
pub struct Run {
    pub command: String,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn report(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.output.status.code(),
            self.stdout(),
            self.stderr()
        )
    }

    /// Asserts the exit code, and that no canary value reached stderr.
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(self.output.status.code(), Some(expected), "{}", self.report());
        self.no_canary_on_stderr()
    }

    pub fn no_canary_on_stderr(&self) -> &Run {
        assert!(!self.stderr().contains(CANARY), "a secret reached stderr\n{}", self.report());
        self
    }

    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(self.stderr().contains(needle), "stderr lacks {needle:?}\n{}", self.report());
        self
    }

    pub fn stdout_is(&self, expected: &str) -> &Run {
        assert_eq!(self.stdout(), expected, "{}", self.report());
        self
    }

    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(self.stdout().contains(needle), "stdout lacks {needle:?}\n{}", self.report());
        self
    }
}

/// A throwaway gpg key without passphrase and a password-store encrypted to it, made with the
/// real `gpg` and `pass`. Its gpg-agent is stopped when the store is dropped.
pub struct GpgStore {
    pub gnupghome: PathBuf,
    pub store: PathBuf,
}

impl GpgStore {
    pub fn new(fixture: &mut Fixture) -> GpgStore {
        let gnupghome = fixture.path("gnupg");
        let store = fixture.path("password-store");
        fs::create_dir(&gnupghome).unwrap();
        fs::set_permissions(&gnupghome, fs::Permissions::from_mode(0o700)).unwrap();
        fixture.env("GNUPGHOME", &gnupghome).env("PASSWORD_STORE_DIR", &store);
        let this = GpgStore { gnupghome, store };
        this.tool(
            "gpg",
            &[
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                "mxm test <mxm@example.invalid>",
                "ed25519",
                "cert,sign",
                "never",
            ],
            None,
        );
        let fingerprint = this.fingerprint();
        this.tool(
            "gpg",
            &["--batch", "--passphrase", "", "--quick-add-key", &fingerprint, "cv25519", "encr", "never"],
            None,
        );
        this.tool("pass", &["init", &fingerprint], None);
        this
    }

    fn fingerprint(&self) -> String {
        let listing = self.tool("gpg", &["--batch", "--with-colons", "--list-keys"], None);
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:").map(|rest| rest.trim_matches(':').to_owned()))
            .expect("a fingerprint")
    }

    /// `pass insert -m PATH` with `contents` on stdin.
    pub fn insert(&self, path: &str, contents: &[u8]) {
        self.tool("pass", &["insert", "-m", path], Some(contents));
    }

    fn tool(&self, program: &str, args: &[&str], input: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut child = Command::new(program)
            .args(args)
            .env("GNUPGHOME", &self.gnupghome)
            .env("PASSWORD_STORE_DIR", &self.store)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program} must be installed (apt-get install gnupg pass gopass): {e}")
            });
        child.stdin.take().unwrap().write_all(input.unwrap_or_default()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for GpgStore {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.gnupghome)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
