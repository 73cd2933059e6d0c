//! The failure catalogue: hostile and broken inputs, each with the exact exit code and a
//! message that names what is wrong, in bounded time, never a panic and never a value.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::util::{CANARY, Fixture};

const GOOD: &str = "\
stores:
  s: {backend: env, root: src}
refs:
  api_key: {store: s, path: api/key, policy: p}
policies:
  p: {allowed_principals: [worker]}
";

/// Runs `check` on `config` and asserts code and message; also that it took under 5 s and
/// did not panic (a panic exits 101 and says "panicked").
fn config_case(config: &str, code: i32, message: &str) {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    f.config(config);
    let start = Instant::now();
    let run = f.run(["check", "--config", "config.yaml", "--role", "worker", "--secret", "api_key"]);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?} on\n{config:.300}", start.elapsed());
    run.code(code).stderr_has(message);
    assert!(!run.stderr().contains("panicked"));
}

#[test]
fn malformed_yaml() {
    config_case("stores: [\n", 78, "config config.yaml:1:9: stores: invalid type: sequence");
    config_case("stores: {\n", 78, "config config.yaml:2:1: ");
    config_case("stores: {a: 1\nrefs: {}\n", 78, "config config.yaml:");
    config_case("\t- tab\n", 78, "config config.yaml:1:");
    config_case("", 78, "missing field `stores`");
    config_case("--- []\n", 78, "invalid type: sequence");
    config_case("a\u{0}b: 1\n", 78, "config config.yaml:");
}

#[test]
fn wrong_types() {
    config_case("stores: 5\nrefs: {}\npolicies: {}\n", 78, "stores: invalid type: integer `5`");
    config_case(
        &GOOD.replace("{store: s, path: api/key, policy: p}", "5"),
        78,
        "refs.api_key: invalid type: integer `5`",
    );
    config_case(
        &GOOD.replace("root: src}", "root: src, timeout: ten}"),
        78,
        "stores.s.timeout: invalid type: string \"ten\", expected f64",
    );
    config_case(
        &GOOD.replace("[worker]", "worker"),
        78,
        "policies.p.allowed_principals: invalid type: string \"worker\"",
    );
    config_case(&GOOD.replace("path: api/key", "path: [a]"), 78, "refs.api_key.path: invalid type: sequence");
    config_case(
        &GOOD.replace("trim: none", "").replace("policy: p}", "policy: p, trim: all}"),
        78,
        "unknown variant `all`, expected one of `whitespace`, `newline`, `none`",
    );
}

#[test]
fn unknown_and_duplicate_keys() {
    config_case(&GOOD.replace("root: src", "roots: src"), 78, "stores.s: unknown field `roots`");
    config_case(&GOOD.replace("root: src", "roots: src"), 78, "did you mean `root`?");
    config_case(
        &GOOD.replace("policy: p}", "policy: p, policy: p}"),
        78,
        "refs.api_key: duplicate field `policy`",
    );
    config_case(&format!("{GOOD}refs: {{}}\n"), 78, "duplicate field `refs`");
    config_case(
        &GOOD.replace("policies:\n", "policies:\n  p: {allowed_principals: []}\n"),
        78,
        "`p` is defined twice",
    );
    config_case(
        &format!("{GOOD}principals:\n  - {{principal: worker, role: a, role: b}}\n"),
        78,
        "duplicate field `role`",
    );
}

#[test]
fn bombs_and_depth_are_bounded() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", ")));
    }
    config_case(&format!("{bomb}{GOOD}"), 78, "unknown field `a0`");
    let hidden = bomb.lines().map(|l| format!("  {l}\n")).collect::<String>();
    config_case(
        &format!("mxm_other:\n{hidden}mxm_secrets:\n  stores: {{}}\n  refs: {{}}\n  policies: {{}}\n"),
        65,
        "not defined",
    );
    config_case(
        &format!("stores: {}{}\n", "[".repeat(200_000), "]".repeat(200_000)),
        78,
        "nest more than 64 levels",
    );
    config_case(
        &format!("stores: {}1{}\n", "{a: ".repeat(10_000), "}".repeat(10_000)),
        78,
        "nest more than 64 levels",
    );
    let block: String = (0..300).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
    config_case(&format!("stores:\n{block}"), 78, "config config.yaml:");
}

#[test]
fn files_that_are_not_configs() {
    let f = Fixture::new();
    fs::write(f.path("binary.yaml"), [0x7f, b'E', b'L', b'F', 0, 0xff, 0xfe]).unwrap();
    fs::set_permissions(f.path("binary.yaml"), fs::Permissions::from_mode(0o600)).unwrap();
    let check =
        |config: &str| f.run(["check", "--config", config, "--role", "worker", "--secret", "api_key"]);
    check("binary.yaml").code(78).stderr_has("is not UTF-8 text (byte 5 is invalid)");
    f.write("huge.yaml", "# padding\n".repeat(200_000));
    check("huge.yaml").code(78).stderr_has("is 2000000 bytes, more than the 1048576 it may have");
    nix::unistd::mkfifo(&f.path("fifo.yaml"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    check("fifo.yaml").code(78).stderr_has("not a regular file");
    check(".").code(78).stderr_has("not a regular file");
    check("/dev/null").code(78).stderr_has("not a regular file");
}

#[test]
fn path_tricks() {
    let cases = [
        ("/etc/shadow", "is absolute"),
        ("../../etc/shadow", "`..` segment"),
        ("a/../../b", "`..` segment"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("-rf", "starts with `-`"),
        ("\"a\\0b\"", "control character"),
        ("\"a\\nb\"", "control character"),
        ("\"a\\x1b[31mb\"", "control character"),
        ("' a'", "surrounding white space"),
        ("''", "is empty"),
    ];
    for (path, message) in cases {
        config_case(&GOOD.replace("path: api/key", &format!("path: {path}")), 78, message);
    }
    // A name that is not a name cannot slip into a store path either.
    config_case(&GOOD.replace("api_key:", "\"api key\":"), 78, "not a valid name");
    config_case(&GOOD.replace("root: src", "root: \"sr\\tc\""), 78, "root");
}

fn manifest_case(manifest: &str, code: i32, message: &str) {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    f.config(GOOD);
    f.write("m.yaml", manifest);
    f.run(["check", "--config", "config.yaml", "--manifest", "m.yaml", "--role", "worker"])
        .code(code)
        .stderr_has(message);
}

#[test]
fn manifest_catalogue() {
    manifest_case("secrets:\n  - {name: api_key, env: 'A-B'}\n", 65, "`A-B` is not a variable name");
    manifest_case("secrets:\n  - {name: api_key, env: 'A B'}\n", 65, "is not a variable name");
    manifest_case("secrets:\n  - {name: api_key, env: ''}\n", 65, "is not a variable name");
    manifest_case(
        "secrets:\n  - {name: api_key, env: LD_LIBRARY_PATH}\n",
        65,
        "may not be injected as LD_LIBRARY_PATH",
    );
    manifest_case(
        "secrets:\n  - {name: api_key, env: NODE_OPTIONS}\n",
        65,
        "may not be injected as NODE_OPTIONS",
    );
    manifest_case("secrets:\n  - {name: api_key, fd: 2}\n", 65, "fd 2 is stderr");
    manifest_case("secrets:\n  - {name: api_key, fd: 4096}\n", 65, "fd 4096 is out of range");
    manifest_case("secrets:\n  - {name: api_key, fd: 3.5}\n", 65, "manifest m.yaml:2:");
    manifest_case("secrets: []\n", 65, "requests no secrets");
    manifest_case("secrets:\n  - {name: api_key, optional: maybe}\n", 65, "invalid type: string \"maybe\"");
    manifest_case("secrets:\n  - name: api_key\n  - name: api_key\n", 65, "both inject variable API_KEY");
    manifest_case(&format!("secrets: {}{}\n", "[".repeat(100), "]".repeat(100)), 65, "nest more than 64");
    let f = Fixture::new();
    f.config(GOOD);
    f.write("m.yaml", "secrets:\n  - {name: api_key}\n");
    fs::set_permissions(f.path("m.yaml"), fs::Permissions::from_mode(0o666)).unwrap();
    f.run(["check", "--config", "config.yaml", "--manifest", "m.yaml", "--role", "worker"])
        .code(65)
        .stderr_has("is writable by anyone (mode 0666)");
    fs::set_permissions(f.path("m.yaml"), fs::Permissions::from_mode(0o664)).unwrap();
    f.run(["check", "--config", "config.yaml", "--manifest", "m.yaml", "--role", "worker"]).code(0);
    nix::unistd::mkfifo(&f.path("fifo.yaml"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    f.run(["check", "--config", "config.yaml", "--manifest", "fifo.yaml", "--role", "worker"])
        .code(65)
        .stderr_has("not a regular file");
}

/// A command store whose provider is `body`; fetching `api_key` must fail with `code`.
fn fault_case(body: &str, code: i32, message: &str) {
    let f = Fixture::new();
    let provider = f.script("bin/provider", body);
    f.config(&format!(
        "stores:\n  s: {{backend: command, root: r, command: ['{}'], timeout: 1}}\nrefs:\n  api_key: {{store: s, path: k, policy: p}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n",
        provider.display()
    ));
    let marker = f.path("started");
    let start = Instant::now();
    let run = f.run([
        "run",
        "--config",
        "config.yaml",
        "--role",
        "worker",
        "--secret",
        "api_key",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    run.code(code).stderr_has(message).stdout_is("");
    assert!(!marker.exists(), "the program started after: {message}");
}

#[test]
fn backend_faults() {
    fault_case("kill -SEGV $$", 69, "was killed by a signal");
    fault_case(&format!("echo {CANARY}; kill -KILL $$"), 69, "was killed by a signal");
    fault_case("exit 0", 69, "the value is empty");
    fault_case("printf '  \\n\\n'", 69, "the value is empty");
    fault_case("exec cat /dev/urandom", 69, "more than 1024 KiB");
    fault_case("exec sleep 60", 75, "did not answer within 1s");
    fault_case("sleep 60 & exec sleep 60", 75, "did not answer within 1s");
    fault_case("exec 1>&- 2>&-; sleep 60", 75, "did not answer within 1s");
    fault_case(
        &format!("echo {CANARY}; echo 'token expired' >&2; exit 3"),
        69,
        "exited with status 3: token expired",
    );
    let f = Fixture::new();
    f.config(
        &GOOD.replace("{backend: env, root: src}", "{backend: gopass, root: x, binary: /nonexistent/gopass}"),
    );
    f.run(["get", "api_key", "--config", "config.yaml", "--role", "worker"])
        .code(69)
        .stderr_has("`/nonexistent/gopass` does not exist: fix the store's `binary:` option");
}

#[test]
fn garbage_output_is_a_value_not_a_crash() {
    let f = Fixture::new();
    let provider = f.script("bin/provider", "printf '\\377\\376\\000\\033[31m'");
    f.config(&format!(
        "stores:\n  s: {{backend: command, root: r, command: ['{}']}}\nrefs:\n  api_key: {{store: s, path: k, policy: p, trim: none}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n",
        provider.display()
    ));
    let run = f.run(["get", "api_key", "--config", "config.yaml", "--role", "worker"]);
    run.code(0);
    assert_eq!(run.output.stdout, b"\xff\xfe\x00\x1b[31m");
}
