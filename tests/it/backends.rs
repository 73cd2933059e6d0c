//! Every backend from a config file, against the real thing: a gpg key and a store made by
//! `pass`, real files and links, real provider scripts. `conformance` runs the same checks
//! on each, so `field`, `trim` and "not found" mean one thing everywhere.

use std::fs;
use std::os::unix::fs::symlink;

use crate::util::{Args, CANARY, Fixture, GpgStore};

/// How a test puts an entry into one backend's store.
type Put<'a> = &'a dyn Fn(&mut Fixture, &str, &[u8]);

const REFS: &str = "\
refs:
  whole: {store: s, path: app/key, policy: p}
  user: {store: s, path: app/key, policy: p, field: user}
  first: {store: s, path: app/key, policy: p, field: password}
  exact: {store: s, path: app/key, policy: p, trim: none}
  newline: {store: s, path: app/key, policy: p, trim: newline}
  missing: {store: s, path: app/missing, policy: p}
policies:
  p: {allowed_principals: [worker]}
";

fn get(f: &Fixture, name: &str) -> crate::util::Run {
    f.run(Args::get(name, "worker"))
}

/// What a backend can hold, beyond the text every backend holds.
struct Holds {
    /// The stored bytes come back untouched (gopass prints entries its own way, so its
    /// `trim` starts from that).
    exact_bytes: bool,
    /// Any byte, NUL included (a variable cannot hold NUL).
    binary: bool,
}

const ANY_BYTES: Holds = Holds { exact_bytes: true, binary: true };

/// The behaviour every backend shares.
fn conformance(f: &mut Fixture, store: &str, put: Put, holds: Holds) {
    f.config(&format!("stores:\n  s: {store}\n{REFS}"));
    put(f, "app/key", format!(" {CANARY}\nuser: bob\n\n").as_bytes());
    get(f, "whole").code(0).stdout_is(&format!("{CANARY}\nuser: bob"));
    get(f, "user").code(0).stdout_is("bob");
    get(f, "first").code(0).stdout_is(CANARY);
    get(f, "missing").code(66).stderr_has("secret `missing`: does not exist in store `s`");
    if !holds.exact_bytes {
        return;
    }
    get(f, "exact").code(0).stdout_is(&format!(" {CANARY}\nuser: bob\n\n"));
    get(f, "newline").code(0).stdout_is(&format!(" {CANARY}\nuser: bob\n"));
    if !holds.binary {
        return;
    }
    put(f, "app/key", b"\x00\xffbinary\n\n");
    let run = get(f, "exact");
    run.code(0);
    assert_eq!(run.output.stdout, b"\x00\xffbinary\n\n");
    f.run(Args::run("worker").secret("exact").program(["true"]))
        .code(65)
        .stderr_has("secret `exact`: the value contains a NUL byte, so it cannot be the variable EXACT");
}

#[test]
fn env_conforms() {
    let mut f = Fixture::new();
    conformance(
        &mut f,
        "{backend: env, root: src}",
        &|f, path, bytes| {
            let name = format!("SRC_{}", path.replace('/', "_").to_uppercase());
            f.env(&name, String::from_utf8(bytes.to_vec()).unwrap());
        },
        Holds { exact_bytes: true, binary: false },
    );
}

#[test]
fn file_conforms() {
    let mut f = Fixture::new();
    let root = f.path("secrets");
    conformance(
        &mut f,
        &format!("{{backend: file, root: '{}'}}", root.display()),
        &|f, path, bytes| drop(f.write(&format!("secrets/{path}"), bytes)),
        ANY_BYTES,
    );
}

#[test]
fn command_conforms() {
    let mut f = Fixture::new();
    let provider = f.script(
        "bin/provider",
        &format!("[ -f {0}/\"$2\" ] || exit 66\ncat {0}/\"$2\"", f.path("vault").display()),
    );
    conformance(
        &mut f,
        &format!("{{backend: command, root: prefix, command: ['{}', fixed-arg]}}", provider.display()),
        &|f, path, bytes| drop(f.write(&format!("vault/prefix/{path}"), bytes)),
        ANY_BYTES,
    );
}

#[test]
fn pass_conforms() {
    let mut f = Fixture::new();
    let store = GpgStore::new(&mut f);
    let root = store.store.join("mxm");
    conformance(
        &mut f,
        &format!("{{backend: pass, root: '{}'}}", root.display()),
        &|_, path, bytes| store.insert(&format!("mxm/{path}"), bytes),
        ANY_BYTES,
    );
}

#[test]
fn gopass_conforms() {
    let mut f = Fixture::new();
    let store = GpgStore::new(&mut f);
    conformance(
        &mut f,
        "{backend: gopass, root: mxm}",
        &|_, path, bytes| store.insert(&format!("mxm/{path}"), bytes),
        Holds { exact_bytes: false, binary: false },
    );
}

#[test]
fn pass_reads_a_root_from_a_variable_and_never_runs_pass() {
    let mut f = Fixture::new();
    let store = GpgStore::new(&mut f);
    store.insert("mxm/app/key", CANARY.as_bytes());
    let log = f.path("gpg.log");
    let gpg = f.script("bin/gpg-logged", &format!("echo \"$@\" >> {}\nexec gpg \"$@\"", log.display()));
    f.config(&format!(
        "stores:\n  s: {{backend: pass, root: $PASSWORD_STORE_DIR/mxm, gpg: '{}'}}\n{REFS}",
        gpg.display()
    ));
    get(&f, "whole").code(0).stdout_is(CANARY);
    let calls = fs::read_to_string(&log).unwrap();
    assert_eq!(calls, format!("--batch --quiet --decrypt -- {}/mxm/app/key.gpg\n", store.store.display()));
    // Without the key, gpg fails: 69 with gpg's own words.
    fs::remove_dir_all(f.path("gnupg/private-keys-v1.d")).unwrap();
    let _ = std::process::Command::new("gpgconf")
        .args(["--kill", "gpg-agent"])
        .env("GNUPGHOME", f.path("gnupg"))
        .status();
    get(&f, "whole").code(69).stderr_has("store `s` failed").stderr_has("gpg");
}

#[test]
fn file_refuses_what_is_not_a_secret_file() {
    let mut f = Fixture::new();
    let root = f.path("creds");
    fs::create_dir_all(root.join("app")).unwrap();
    f.config(&format!("stores:\n  s: {{backend: file, root: $CREDENTIALS_DIRECTORY}}\n{REFS}"));
    get(&f, "whole").code(78).stderr_has("$CREDENTIALS_DIRECTORY, which is not set");
    f.env("CREDENTIALS_DIRECTORY", &root);
    // Kubernetes-style: a link to a file inside root is fine.
    fs::create_dir_all(root.join("..data")).unwrap();
    fs::write(root.join("..data/key"), CANARY).unwrap();
    symlink(root.join("..data/key"), root.join("app/key")).unwrap();
    get(&f, "whole").code(0).stdout_is(CANARY);
    // A link that leaves root is refused.
    fs::remove_file(root.join("app/key")).unwrap();
    f.write("outside", CANARY);
    symlink(f.path("outside"), root.join("app/key")).unwrap();
    get(&f, "whole").code(69).stderr_has("outside the store's root");
    fs::remove_file(root.join("app/key")).unwrap();
    fs::create_dir(root.join("app/key")).unwrap();
    get(&f, "whole").code(69).stderr_has("not a regular file");
    fs::remove_dir(root.join("app/key")).unwrap();
    nix::unistd::mkfifo(&root.join("app/key"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    get(&f, "whole").code(69).stderr_has("not a regular file");
    fs::remove_file(root.join("app/key")).unwrap();
    fs::write(root.join("app/key"), vec![b'x'; 2 << 20]).unwrap();
    get(&f, "whole").code(69).stderr_has("larger than 1024 KiB");
}

#[test]
fn command_passes_fixed_arguments_then_the_location() {
    let f = Fixture::new();
    let log = f.path("argv");
    let provider =
        f.script("bin/provider", &format!("printf '%s|' \"$@\" > {}\necho {CANARY}", log.display()));
    f.config(&format!(
        "stores:\n  s: {{backend: command, root: secret/mxm, command: ['{}', '-field', value]}}\n{REFS}",
        provider.display()
    ));
    get(&f, "whole").code(0).stdout_is(CANARY);
    assert_eq!(fs::read_to_string(&log).unwrap(), "-field|value|secret/mxm/app/key|");
}

#[test]
fn a_failing_provider_shows_its_stderr_never_its_stdout() {
    let f = Fixture::new();
    let provider = f
        .script("bin/provider", &format!("echo {CANARY}\nhead -c 100000 /dev/zero | tr '\\0' e >&2\nexit 2"));
    f.config(&format!(
        "stores:\n  s: {{backend: command, root: r, command: ['{}']}}\n{REFS}",
        provider.display()
    ));
    let run = get(&f, "whole");
    run.code(69).stderr_has("exited with status 2: eeee").stdout_is("");
    assert!(run.stderr().len() < 4096, "the provider's stderr is bounded: {} bytes", run.stderr().len());
    f.config(&format!("stores:\n  s: {{backend: command, root: r}}\n{REFS}"));
    get(&f, "whole").code(78).stderr_has("backend `command` needs `command`");
}

#[test]
fn a_provider_printing_too_much_is_stopped() {
    let f = Fixture::new();
    let provider = f.script("bin/provider", "exec cat /dev/zero");
    f.config(&format!(
        "stores:\n  s: {{backend: command, root: r, command: ['{}']}}\n{REFS}",
        provider.display()
    ));
    get(&f, "whole").code(69).stderr_has("more than 1024 KiB");
}

/// Ten secrets from a provider that takes a while: they are fetched side by side, at most
/// eight at a time. Each call records how many calls were running when it was.
#[test]
fn fetches_overlap_up_to_the_bound() {
    let f = Fixture::new();
    let running = f.path("running");
    fs::create_dir(&running).unwrap();
    let counts = f.path("counts");
    let provider = f.script(
        "bin/provider",
        &format!(
            "touch {r}/$$\nsleep 0.4\nls {r} | wc -l >> {c}\nrm {r}/$$\necho value-$1",
            r = running.display(),
            c = counts.display()
        ),
    );
    let mut config =
        format!("stores:\n  s: {{backend: command, root: r, command: ['{}']}}\nrefs:\n", provider.display());
    let mut args = Args::run("worker");
    for i in 0..10 {
        config.push_str(&format!("  s{i}: {{store: s, path: p{i}, policy: p}}\n"));
        args = args.secret(&format!("s{i}"));
    }
    config.push_str("policies:\n  p: {allowed_principals: [worker]}\n");
    f.config(&config);
    f.run(args.program(["sh", "-c", "echo $S0 $S9"])).code(0).stdout_is("value-r/p0 value-r/p9\n");
    let seen: Vec<usize> =
        fs::read_to_string(&counts).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(seen.len(), 10, "every secret fetched once: {seen:?}");
    let most = *seen.iter().max().unwrap();
    assert!(most >= 2, "fetches ran one at a time: {seen:?}");
    assert!(most <= 8, "more than 8 fetches ran at once: {seen:?}");
}

#[test]
fn one_failure_among_many_starts_nothing_and_every_failure_is_listed() {
    let f = Fixture::new();
    let provider = f.script("bin/provider", "case $1 in *bad*) echo 'vault sealed' >&2; exit 1;; *gone*) exit 66;; *slow*) sleep 30;; esac\necho ok");
    let marker = f.path("started");
    f.config(&format!(
        "stores:\n  s: {{backend: command, root: r, command: ['{}'], timeout: 0.5}}\nrefs:\n  good: {{store: s, path: good, policy: p}}\n  bad: {{store: s, path: bad, policy: p}}\n  gone: {{store: s, path: gone, policy: p}}\n  slow: {{store: s, path: slow, policy: p}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n",
        provider.display()
    ));
    let run = f.run(
        Args::run("worker")
            .secrets(["good", "bad", "gone", "slow"])
            .program(["touch", marker.to_str().unwrap()]),
    );
    run.code(66)
        .stderr_has("3 secrets failed")
        .stderr_has("secret `bad`: store `s` failed: ")
        .stderr_has("vault sealed")
        .stderr_has("secret `gone`: does not exist in store `s`")
        .stderr_has("secret `slow`: store `s` did not answer within 0.5s");
    assert!(!marker.exists(), "the program started although secrets failed");
    f.run(Args::run("worker").secrets(["good", "slow"]).program(["true"])).code(75);
}

#[test]
fn pass_reads_entries_that_gopass_wrote() {
    let mut f = Fixture::new();
    let store = GpgStore::new(&mut f);
    // Debian's gopass only inserts multi-line entries through $EDITOR, into existing folders.
    fs::create_dir_all(store.store.join("mxm/app")).unwrap();
    let editor = f.script("bin/editor", &format!("printf '{CANARY}\\nuser: bob\\n' > \"$1\""));
    let inserted = std::process::Command::new("gopass")
        .args(["insert", "-m", "-f", "mxm/app/key"])
        .env("GNUPGHOME", &store.gnupghome)
        .env("PASSWORD_STORE_DIR", &store.store)
        .env("HOME", f.path("home"))
        .env("EDITOR", &editor)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(inserted.status.success(), "gopass insert: {}", String::from_utf8_lossy(&inserted.stderr));
    f.config(&format!("stores:\n  s: {{backend: pass, root: '{}/mxm'}}\n{REFS}", store.store.display()));
    get(&f, "whole").code(0).stdout_is(&format!("{CANARY}\nuser: bob"));
    get(&f, "user").code(0).stdout_is("bob");
}
