//! Store failures name the real cause and the next step, through the binary, against real
//! gpg, pass and gopass: a locked key with no terminal, no secret key, no gpg-agent, the
//! wrong store directory, a program not on PATH, and root variables that are not set.

use std::fs;
use std::process::{Command, Stdio};

use crate::util::{Args, CANARY, Fixture, GpgStore, Run};

const REFS: &str = "\
refs:
  key: {store: s, path: app/key, policy: p}
  missing: {store: s, path: app/missing, policy: p}
policies:
  p: {allowed_principals: [worker]}
";

fn get(f: &Fixture, name: &str) -> Run {
    f.run(Args::get(name, "worker"))
}

/// `get` without some of the fixture's variables (as cron or a bare service would run it).
fn get_without(f: &Fixture, name: &str, unset: &[&str]) -> Run {
    let mut command = f.command(Args::get(name, "worker"));
    for variable in unset {
        command.env_remove(variable);
    }
    Run::of(command)
}

fn gpg(gnupghome: &std::path::Path, args: &[&str]) {
    let output =
        Command::new("gpg").args(args).env("GNUPGHOME", gnupghome).stdin(Stdio::null()).output().unwrap();
    assert!(output.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn kill_agent(f: &Fixture) {
    let _ = Command::new("gpgconf").args(["--kill", "gpg-agent"]).env("GNUPGHOME", f.path("gnupg")).status();
}

/// A store holding the canary at `mxm/app/key`; with `passphrase`, its key is locked.
fn store(f: &mut Fixture, passphrase: bool) -> GpgStore {
    let store = GpgStore::new(f);
    if passphrase {
        // A second key, with a passphrase, that the store is re-encrypted to; the first goes.
        let home = store.gnupghome.clone();
        let lock = ["--batch", "--pinentry-mode", "loopback", "--passphrase", "s3cret-phrase"];
        gpg(
            &home,
            &[
                &lock[..],
                &["--quick-gen-key", "locked <locked@example.invalid>", "ed25519", "cert,sign", "never"],
            ]
            .concat(),
        );
        let listing = Command::new("gpg")
            .args(["--batch", "--with-colons", "--list-keys", "locked@example.invalid"])
            .env("GNUPGHOME", &home)
            .output()
            .unwrap();
        let fingerprint = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:").map(|r| r.trim_matches(':').to_owned()))
            .unwrap();
        gpg(&home, &[&lock[..], &["--quick-add-key", &fingerprint, "cv25519", "encr", "never"]].concat());
        let init = Command::new("pass")
            .args(["init", &fingerprint])
            .env("GNUPGHOME", &home)
            .env("PASSWORD_STORE_DIR", &store.store)
            .output()
            .unwrap();
        assert!(init.status.success(), "pass init: {}", String::from_utf8_lossy(&init.stderr));
    }
    store.insert("mxm/app/key", CANARY.as_bytes());
    // No passphrase stays cached from making the key.
    kill_agent(f);
    store
}

fn pass_config(f: &Fixture, store: &GpgStore) {
    f.config(&format!("stores:\n  s: {{backend: pass, root: '{}/mxm'}}\n{REFS}", store.store.display()));
}

fn gopass_config(f: &Fixture) {
    f.config(&format!("stores:\n  s: {{backend: gopass, root: mxm}}\n{REFS}"));
}

const LOCKED: &str = "the key is locked: unlock it once with gpg-preset-passphrase, or use a key without a passphrase for services";

#[test]
fn a_locked_key_without_a_terminal_says_so() {
    let mut f = Fixture::new();
    let store = store(&mut f, true);
    pass_config(&f, &store);
    get(&f, "key")
        .code(69)
        .stderr_has(LOCKED)
        .stderr_has("gpg said: ")
        .stderr_has("Inappropriate ioctl for device")
        .stdout_is("");
    gopass_config(&f);
    get(&f, "key")
        .code(69)
        .stderr_has("`gopass` exited with status")
        .stderr_has("its gpg call failed: ")
        .stderr_has(LOCKED);
}

#[test]
fn no_secret_key_names_the_keyring_and_the_user() {
    let mut f = Fixture::new();
    let store = store(&mut f, false);
    fs::remove_dir_all(store.gnupghome.join("private-keys-v1.d")).unwrap();
    kill_agent(&f);
    let keyring = format!("in the keyring gpg looked in, GNUPGHOME={} (user ", store.gnupghome.display());
    pass_config(&f, &store);
    get(&f, "key")
        .code(69)
        .stderr_has("no secret key for this entry")
        .stderr_has(&keyring)
        .stderr_has("set GNUPGHOME to that keyring, or import the key")
        .stderr_has("gpg: decryption failed: No secret key");
    gopass_config(&f);
    get(&f, "key")
        .code(69)
        .stderr_has("its gpg call failed: no secret key for this entry")
        .stderr_has(&keyring);
}

#[test]
fn a_gpg_agent_that_cannot_start_says_so() {
    let mut f = Fixture::new();
    let store = store(&mut f, false);
    fs::write(store.gnupghome.join("gpg.conf"), "agent-program /nonexistent/gpg-agent\n").unwrap();
    kill_agent(&f);
    pass_config(&f, &store);
    let agent = "gpg-agent is not running and gpg could not start it";
    get(&f, "key")
        .code(69)
        .stderr_has(agent)
        .stderr_has("gpgconf --launch gpg-agent")
        .stderr_has("probably not installed");
    gopass_config(&f);
    get(&f, "key").code(69).stderr_has(agent);
}

#[test]
fn the_wrong_store_directory_is_named() {
    let mut f = Fixture::new();
    let _store = store(&mut f, false);
    gopass_config(&f);
    get(&f, "key").code(0).stdout_is(CANARY);
    let elsewhere = f.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    f.env("PASSWORD_STORE_DIR", &elsewhere);
    get(&f, "key")
        .code(66)
        .stderr_has("gopass has no entry `mxm/app/key`")
        .stderr_has(&format!("gopass's store: PASSWORD_STORE_DIR={}", elsewhere.display()))
        .stderr_has("run as the store's owner, or set PASSWORD_STORE_DIR");
    // No HOME and no PASSWORD_STORE_DIR (a bare service): said as such.
    get_without(&f, "key", &["HOME", "PASSWORD_STORE_DIR"])
        .code(66)
        .stderr_has("~/.password-store, but PASSWORD_STORE_DIR and HOME are both unset");
}

#[test]
fn a_program_not_on_path_points_at_the_stores_option() {
    let mut f = Fixture::new();
    let store = store(&mut f, false);
    f.env("PATH", "/nonexistent-mxm");
    gopass_config(&f);
    get(&f, "key").code(78).stderr_has(
        "`gopass` is not on PATH (PATH=/nonexistent-mxm); cron's PATH is minimal: give the full path with the store's `binary:` option",
    );
    pass_config(&f, &store);
    get(&f, "key")
        .code(78)
        .stderr_has("`gpg` is not on PATH (PATH=/nonexistent-mxm)")
        .stderr_has("the store's `gpg:` option");
    // A full path that is wrong.
    f.config(&format!("stores:\n  s: {{backend: gopass, root: mxm, binary: /opt/nowhere/gopass}}\n{REFS}"));
    get(&f, "key")
        .code(78)
        .stderr_has("`/opt/nowhere/gopass` does not exist: fix the store's `binary:` option");
    // The control: with the full paths, both work on that PATH.
    f.config(&format!("stores:\n  s: {{backend: gopass, root: mxm, binary: /usr/bin/gopass}}\n{REFS}"));
    f.env("PATH", "/usr/bin:/bin");
    get(&f, "key").code(0).stdout_is(CANARY);
}

#[test]
fn pass_defaults_an_unset_password_store_dir_as_pass_does() {
    let mut f = Fixture::new();
    let store = store(&mut f, false);
    std::os::unix::fs::symlink(&store.store, f.path("home/.password-store")).unwrap();
    f.config(&format!("stores:\n  s: {{backend: pass, root: $PASSWORD_STORE_DIR/mxm}}\n{REFS}"));
    get_without(&f, "key", &["PASSWORD_STORE_DIR"]).code(0).stdout_is(CANARY);
    let run = get_without(&f, "key", &["PASSWORD_STORE_DIR", "HOME"]);
    run.code(78).stderr_has("$PASSWORD_STORE_DIR, which is not set, and HOME is not set either");
    assert!(
        !run.stderr().contains("CREDENTIALS_DIRECTORY"),
        "a pass store got systemd's hint: {}",
        run.stderr()
    );
    // Any other variable stays an error of its own.
    f.config(&format!("stores:\n  s: {{backend: pass, root: $MXM_TEST_UNSET_ROOT/mxm}}\n{REFS}"));
    let run = get(&f, "key");
    run.code(78).stderr_has("$MXM_TEST_UNSET_ROOT, which is not set: set it, or give the directory itself");
    assert!(!run.stderr().contains("CREDENTIALS_DIRECTORY"));
}

#[test]
fn an_unset_credentials_directory_is_a_config_problem_check_finds() {
    let f = Fixture::new();
    f.config(&format!("stores:\n  s: {{backend: file, root: $CREDENTIALS_DIRECTORY}}\n{REFS}"));
    let marker = f.path("started");
    let systemd = "systemd sets $CREDENTIALS_DIRECTORY only inside a unit with LoadCredential=";
    f.run(Args::run("worker").secret("key").program(["touch", marker.to_str().unwrap()]))
    .code(78)
    .stderr_has(
        "store `s` cannot work as set up: the store's root names $CREDENTIALS_DIRECTORY, which is not set",
    )
    .stderr_has(systemd);
    assert!(!marker.exists());
    // check finds it without --fetch, in text and JSON.
    f.run(Args::check("worker").secret("key"))
        .code(78)
        .stdout_has("  key  allowed  store s  env KEY  MISCONFIGURED\n")
        .stderr_has(systemd);
    let run = f.run(Args::check("worker").secret("key").args(["--format", "json"]));
    run.code(78);
    let report: serde_json::Value = serde_json::from_slice(&run.output.stdout).unwrap();
    assert_eq!(report["exit_code"], 78);
    assert!(report["secrets"][0]["reason"].as_str().unwrap().contains(systemd), "{report}");
    // Set, it works.
    let mut f = f;
    f.write("creds/app/key", CANARY);
    f.env("CREDENTIALS_DIRECTORY", f.path("creds"));
    f.run(Args::check("worker").secret("key")).code(0);
    get(&f, "key").code(0).stdout_is(CANARY);
}

/// `check` (a unit's ExecStartPre) finds a store's program missing from PATH without
/// `--fetch`, as it finds an unset root: "will this launch work?" must not answer yes when
/// the run will fail to start gopass.
#[test]
fn check_finds_a_program_not_on_path_without_fetching() {
    let mut f = Fixture::new();
    let store = store(&mut f, false);
    f.env("PATH", "/nonexistent-mxm");
    let check = |f: &Fixture| f.run(Args::check("worker").secret("key"));
    gopass_config(&f);
    check(&f)
        .code(78)
        .stdout_has("  key  allowed  store s  env KEY  MISCONFIGURED\n")
        .stderr_has("`gopass` is not on PATH (PATH=/nonexistent-mxm)")
        .stderr_has("the store's `binary:` option");
    pass_config(&f, &store);
    check(&f).code(78).stderr_has("`gpg` is not on PATH").stderr_has("the store's `gpg:` option");
    f.config(&format!("stores:\n  s: {{backend: command, root: mxm, command: [summon-nowhere]}}\n{REFS}"));
    check(&f)
        .code(78)
        .stderr_has("`summon-nowhere` is not on PATH")
        .stderr_has("the store's `command:` option");
    // And the run itself says the same of a provider, not "cannot run it: ... (os error 2)".
    get(&f, "key")
        .code(78)
        .stderr_has("`summon-nowhere` is not on PATH")
        .stderr_has("the store's `command:` option");
    // With full paths, check passes on the same PATH.
    f.config(&format!("stores:\n  s: {{backend: gopass, root: mxm, binary: /usr/bin/gopass}}\n{REFS}"));
    check(&f).code(0);
}

/// A pass store read as the wrong user (or with the wrong PASSWORD_STORE_DIR) is not a missing
/// entry: no directory at or above the file is a password store, and the message says so,
/// with the user and what to set. An entry missing from a real store stays plain.
#[test]
fn a_pass_root_that_is_no_store_is_named() {
    let mut f = Fixture::new();
    let _store = store(&mut f, false);
    f.config(&format!("stores:\n  s: {{backend: pass, root: $PASSWORD_STORE_DIR/mxm}}\n{REFS}"));
    get(&f, "key").code(0).stdout_is(CANARY);
    let plain = get(&f, "missing");
    plain.code(66).stderr_has("the store has no file ");
    assert!(!plain.stderr().contains("password store"), "{}", plain.stderr());
    let elsewhere = f.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    f.env("PASSWORD_STORE_DIR", &elsewhere);
    get(&f, "key")
        .code(66)
        .stderr_has(&format!("the store has no file {}/mxm/app/key.gpg", elsewhere.display()))
        .stderr_has("; no directory on its way is a password store (none holds a .gpg-id), as user `")
        .stderr_has(
            "run as the store's owner, or set PASSWORD_STORE_DIR (or the store's `root`) as the owner has it",
        );
}
