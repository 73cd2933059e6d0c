//! A throwaway gpg key and a password-store encrypted to it, made with the real `gpg` and
//! `pass`: shared by the integration tests (`tests/it/util.rs`) and the bench
//! (`benches/launch.rs`), each including this file with `#[path]`, so the key type, `pass
//! init` and the agent's cleanup are said once.
//!
//! The key is ed25519 (certify, sign) with a cv25519 encryption subkey: with an rsa key the
//! gpg-agent serializes private-key work and parallel fetches gain little, which would skew
//! both the bench and the tests that time concurrent fetches.

// Each of the two targets uses its own part of this file.
#![allow(dead_code)]

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A key without passphrase in `gnupghome` and a store in `store`. Its gpg-agent is stopped
/// when it is dropped.
pub struct GpgStore {
    pub gnupghome: PathBuf,
    pub store: PathBuf,
}

impl GpgStore {
    /// Makes `gnupghome` (mode 0700), a key there and `pass init`s `store` to it.
    pub fn create(gnupghome: PathBuf, store: PathBuf) -> GpgStore {
        fs::create_dir(&gnupghome).unwrap();
        fs::set_permissions(&gnupghome, fs::Permissions::from_mode(0o700)).unwrap();
        let this = GpgStore { gnupghome, store };
        let uid = "mxm test <mxm@example.invalid>";
        this.tool(
            "gpg",
            &["--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "cert,sign", "never"],
            b"",
        );
        let fingerprint = this.fingerprint();
        this.tool(
            "gpg",
            &["--batch", "--passphrase", "", "--quick-add-key", &fingerprint, "cv25519", "encr", "never"],
            b"",
        );
        this.tool("pass", &["init", &fingerprint], b"");
        this
    }

    fn fingerprint(&self) -> String {
        let listing = self.tool("gpg", &["--batch", "--with-colons", "--list-keys"], b"");
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:").map(|rest| rest.trim_matches(':').to_owned()))
            .expect("a fingerprint")
    }

    /// The curve of the encryption subkey as gpg names it (`cv25519`), for the bench to print.
    pub fn encryption_curve(&self) -> String {
        let listing = self.tool("gpg", &["--batch", "--with-colons", "--list-keys"], b"");
        listing
            .lines()
            .filter(|l| l.starts_with("sub:"))
            .find_map(|l| l.split(':').nth(16))
            .unwrap_or("?")
            .to_owned()
    }

    /// `pass insert -m PATH` with `contents` on stdin.
    pub fn insert(&self, path: &str, contents: &[u8]) {
        self.tool("pass", &["insert", "-m", path], contents);
    }

    /// Runs `program` on this keyring and store with `input` on stdin; its stdout.
    fn tool(&self, program: &str, args: &[&str], input: &[u8]) -> String {
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
        child.stdin.take().unwrap().write_all(input).unwrap();
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
