//! The gopass backend against a real store: a throwaway gpg key and a password-store made
//! by `pass`, read by the real `gopass`.

use std::fs;

use crate::util::{Args, CANARY, Fixture, GpgStore};

fn config(binary: Option<&str>, timeout: Option<f64>) -> String {
    let mut store = "{backend: gopass, root: mxm/red".to_owned();
    if let Some(binary) = binary {
        store.push_str(&format!(", binary: '{binary}'"));
    }
    if let Some(timeout) = timeout {
        store.push_str(&format!(", timeout: {timeout}"));
    }
    format!(
        "\
stores:
  red: {store}}}
refs:
  api_key: {{store: red, path: marketdata/api_key, policy: market}}
  user: {{store: red, path: marketdata/api_key, policy: market, field: user}}
  first_line: {{store: red, path: marketdata/api_key, policy: market, field: password}}
  raw: {{store: red, path: marketdata/api_key, policy: market, trim: none}}
  missing: {{store: red, path: marketdata/nope, policy: market}}
  admin: {{store: red, path: admin/token, policy: admins}}
policies:
  market: {{allowed_principals: [marketdata]}}
  admins: {{allowed_principals: [admin]}}
"
    )
}

fn with_store() -> (Fixture, GpgStore) {
    let mut f = Fixture::new();
    let store = GpgStore::new(&mut f);
    store.insert("mxm/red/marketdata/api_key", format!("{CANARY}\nuser: bob\n").as_bytes());
    store.insert("mxm/red/admin/token", CANARY.as_bytes());
    (f, store)
}

fn get(f: &Fixture, name: &str) -> crate::util::Run {
    f.run(Args::get(name, "marketdata"))
}

#[test]
fn values_come_from_the_real_store() {
    let (f, _store) = with_store();
    f.config(&config(None, None));
    f.run(Args::run("marketdata").secret("api_key").program(["printenv", "API_KEY"]))
        .code(0)
        .stdout_is(&format!("{CANARY}\nuser: bob\n"));
    get(&f, "user").code(0).stdout_is("bob");
    get(&f, "first_line").code(0).stdout_is(CANARY);
    get(&f, "raw").code(0).stdout_is(&format!("{CANARY}\nuser: bob\n"));
}

#[test]
fn a_denied_name_never_reaches_gopass() {
    let (f, _store) = with_store();
    let log = f.path("gopass-calls.log");
    let wrapper =
        f.script("bin/gopass-logged", &format!("echo \"$@\" >> {}\nexec gopass \"$@\"", log.display()));
    f.config(&config(Some(wrapper.to_str().unwrap()), None));
    get(&f, "admin").code(77).stderr_has("denied to principal `marketdata` by policy `admins`");
    assert!(!log.exists(), "gopass was called for a denied name: {:?}", fs::read_to_string(&log));
    // A run asking for an allowed and a denied name: still no backend call at all.
    f.run(Args::run("marketdata").secrets(["api_key", "admin"]).program(["true"])).code(77);
    assert!(!log.exists(), "gopass was called before every name was authorized");
    // The control: the wrapper does log when gopass is called.
    get(&f, "api_key").code(0);
    assert_eq!(fs::read_to_string(&log).unwrap(), "show -- mxm/red/marketdata/api_key\n");
}

#[test]
fn a_missing_entry_is_66() {
    let (f, _store) = with_store();
    f.config(&config(None, None));
    get(&f, "missing").code(66).stderr_has("secret `missing`: does not exist in store `red`");
}

#[test]
fn a_missing_field_is_66() {
    let (f, store) = with_store();
    store.insert("mxm/red/marketdata/api_key", CANARY.as_bytes());
    f.config(&config(None, None));
    get(&f, "user").code(66).stderr_has("the entry has no field `user`");
}

#[test]
fn a_failing_gopass_is_69_with_its_message_never_its_output() {
    let f = Fixture::new();
    let broken = f.script(
        "bin/gopass-broken",
        &format!("echo {CANARY}\necho 'gpg: decryption failed: No secret key' >&2\nexit 3"),
    );
    f.config(&config(Some(broken.to_str().unwrap()), None));
    get(&f, "api_key")
        .code(69)
        .stderr_has("store `red` failed")
        .stderr_has("exited with status 3: gpg: decryption failed: No secret key")
        .stdout_is("");
    let absent = f.path("bin/not-there");
    f.config(&config(Some(absent.to_str().unwrap()), None));
    get(&f, "api_key").code(78).stderr_has("does not exist: fix the store's `binary:` option");
}

#[test]
fn a_hanging_gopass_is_killed_at_its_timeout_with_what_it_started() {
    let f = Fixture::new();
    let pids = f.path("pids");
    // The grandchild holds stdout open; only killing the whole group ends the wait.
    let hanging =
        f.script("bin/gopass-hangs", &format!("sleep 300 &\necho $! > {}\nsleep 300", pids.display()));
    // One second: time enough, even on a loaded machine, for the script to record its child.
    f.config(&config(Some(hanging.to_str().unwrap()), Some(1.0)));
    let marker = f.path("started");
    f.run(Args::run("marketdata").secret("api_key").program(["touch", marker.to_str().unwrap()]))
        .code(75)
        .stderr_has("did not answer within 1s");
    assert!(!marker.exists(), "the program started after a timeout");
    let recorded = fs::read_to_string(&pids).unwrap_or_default();
    let grandchild: i32 =
        recorded.trim().parse().unwrap_or_else(|_| panic!("the script recorded no pid: {recorded:?}"));
    // SIGKILL is delivered at once, but the exit may take a moment to show in /proc.
    let gone = || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(grandchild), None).is_err()
            || fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default().contains(") Z ")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !gone() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(gone(), "the backend's grandchild {grandchild} survived the timeout");
}

#[test]
fn a_backend_that_exits_but_leaves_a_child_holding_the_pipe_does_not_stall() {
    let f = Fixture::new();
    let quick = f.script("bin/gopass-forks", &format!("sleep 300 &\necho {CANARY}"));
    // A 300 s timeout: were the launcher to wait for the pipe to close, the test would hang.
    f.config(&config(Some(quick.to_str().unwrap()), Some(300.0)));
    get(&f, "api_key").code(0).stdout_is(CANARY);
}

/// Issue 11, reference compatibility: the default trim reads gopass's output as the
/// reference does, as text with universal newlines stripped by Python's `str.strip()`;
/// `trim: none` keeps the exact bytes.
#[test]
fn the_default_trim_is_the_references() {
    let (f, store) = with_store();
    let stored = format!("\u{a0}\u{3000}\x0b\x1c{CANARY}\r\nline2\rline3\r\n\u{2028}\u{85}\x1f\n");
    store.insert("mxm/red/marketdata/api_key", stored.as_bytes());
    f.config(&config(None, None));
    get(&f, "api_key").code(0).stdout_is(&format!("{CANARY}\nline2\nline3"));
    // (gopass itself trims the start of the first line; the rest is its exact output.)
    get(&f, "raw").code(0).stdout_has(&format!("{CANARY}\r\nline2\rline3\r\n\u{2028}\u{85}\x1f\n"));
    // Not UTF-8: the bytes inside stay, ASCII white space at the ends goes.
    store.insert("mxm/red/marketdata/api_key", b"\x0b \xff\xa0x\r\ny \r\n");
    let run = get(&f, "api_key");
    run.code(0);
    assert_eq!(run.output.stdout, b"\xff\xa0x\r\ny");
}
