//! The mistakes a newcomer makes, each answered in the file's words through the binary: the
//! cause (a tab, a mis-indented line, a bare list, a missing `--`), the absolute path and
//! line to fix, and never a Rust type name.

use crate::util::{Args, CANARY, ENV_CONFIG, Fixture, Run};

const CONFIG: &str = ENV_CONFIG;

fn with_manifest(manifest: &str) -> (Fixture, Run) {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    f.config(CONFIG);
    f.write("m.yaml", manifest);
    let run = f.run(Args::check("worker").manifest("m.yaml"));
    (f, run)
}

fn with_config(config: &str) -> (Fixture, Run) {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    f.config(config);
    let run = f.run(Args::check("worker").secret("api_key"));
    (f, run)
}

/// Words of ours that must never reach a user: Rust type names and serde's "struct".
fn assert_no_rust_names(run: &Run) {
    for word in ["Raw", "struct ", "Sections", "Wrapped", "enum ", "BackendKind", "i64", "u64", "f64", "i32"]
    {
        assert!(!run.stderr().contains(word), "{word:?} in {}", run.stderr());
    }
}

#[test]
fn a_tab_says_tabs_cannot_indent() {
    let (f, run) = with_manifest("secrets:\n\t- name: api_key\n");
    let at = format!("manifest {}:2:1: tabs cannot indent YAML; use spaces", f.path("m.yaml").display());
    run.code(65).stderr_has(&at);
    let (f, run) = with_config(&CONFIG.replace("  api_key:", "\tapi_key:"));
    let at = format!("config {}:4:1: tabs cannot indent YAML; use spaces", f.path("config.yaml").display());
    run.code(78).stderr_has(&at);
}

#[test]
fn bad_indentation_points_at_the_line() {
    let (_, run) = with_manifest("secrets:\n  - name: api_key\n   env: API\n");
    run.code(65)
        .stderr_has("m.yaml:3:4: line 3 is indented by 3 spaces, but the lines it could belong to by 0 or 2");
    let (_, run) = with_config(
        &CONFIG.replace("  s: {backend: env, root: src}", "  s:\n    backend: env\n   root: src"),
    );
    run.code(78).stderr_has("missing field `root` (line 4 is indented by 3 spaces");
}

#[test]
fn a_bare_list_asks_for_secrets() {
    let (f, run) = with_manifest("- name: api_key\n");
    let at = format!(
        "manifest {}:1:1: invalid type: sequence, expected a `secrets:` list (write `secrets:` on the \
         first line, then the entries under it)",
        f.path("m.yaml").display()
    );
    run.code(65).stderr_has(&at);
    assert_no_rust_names(&run);
}

#[test]
fn no_message_names_a_rust_type() {
    let manifests = [
        "- name: api_key\n",
        "secrets:\n  - api_key\n",
        "secrets: 5\n",
        "secrets:\n  name: api_key\n",
        "secrets:\n  - [api_key]\n",
        "5\n",
        "secrets:\n  - {name: api_key, fd: [3]}\n",
        "secrets:\n  - {name: api_key, optional: maybe}\n",
        "secrets:\n  - {name: api_key, fd: 3.5}\n",
        "secrets:\n  - {name: api_key, fd: three}\n",
    ];
    for manifest in manifests {
        let (_, run) = with_manifest(manifest);
        run.code(65);
        assert_no_rust_names(&run);
    }
    let configs = [
        "- stores\n".to_owned(),
        "5\n".to_owned(),
        "mxm_secrets: []\n".to_owned(),
        "mxm_secrets: 5\n".to_owned(),
        CONFIG.replace("{store: s, path: api/key, policy: p}", "[s]"),
        CONFIG.replace("{backend: env, root: src}", "[env]"),
        CONFIG.replace("{backend: env, root: src}", "{backend: [env], root: src}"),
        CONFIG.replace("{allowed_principals: [worker]}", "[worker]"),
        CONFIG.replace("policy: p}", "policy: p, trim: [x]}"),
        CONFIG.replace("policy: p}", "policy: p, field: [x]}"),
        format!("{CONFIG}principals: [[x]]\n"),
        format!("{CONFIG}principals: {{a: 1}}\n"),
        CONFIG.replace("root: src}", "root: src, timeout: ten}"),
        CONFIG.replace("policy: p}", "policy: p, version: -1}"),
        CONFIG.replace("policy: p}", "policy: p, version: x}"),
    ];
    for config in configs {
        let (_, run) = with_config(&config);
        run.code(78);
        assert_no_rust_names(&run);
    }
}

#[test]
fn an_undefined_name_cites_the_manifest_line() {
    let (f, run) = with_manifest("secrets:\n  - name: api_key\n  # name: nope\n  - name: api_kye\n");
    let manifest = f.path("m.yaml").display().to_string();
    let config = f.path("config.yaml").display().to_string();
    run.code(65)
        .stderr_has(&format!("secret `api_kye`: not defined in the config {config}; did you mean `api_key`?"))
        .stderr_has(&format!("requested at manifest {manifest}:4:11"));
    let (_, run) = with_manifest("secrets: [{name: api_key}, {name: 'nope'}]\n");
    run.code(65).stderr_has("m.yaml:1:36");
}

#[test]
fn a_missing_separator_is_suggested() {
    let f = Fixture::new();
    f.run(["run", "--role", "x", "python", "feed.py"]).code(64).stderr_has(
        "tip: the program and its arguments go after `--`: mxm-secrets run --role x -- python feed.py",
    );
    let typo = f.run(["run", "--role", "x", "--bogus", "--", "true"]);
    assert!(!typo.code(64).stderr().contains("the program and its arguments"), "{}", typo.stderr());
}

#[test]
fn paths_in_messages_are_absolute() {
    let f = Fixture::new();
    f.config(CONFIG);
    let run = f.run(Args::check("worker"));
    run.code(65).stderr_has(&format!("manifest {}: cannot read it", f.path("mxm-secrets.yaml").display()));
    let run = f.run(Args::check("worker").config("nothing.yaml").secret("api_key"));
    run.code(78).stderr_has(&format!("config {}: cannot read it", f.path("nothing.yaml").display()));
}

#[test]
fn finding_the_cause_stays_fast_on_big_files() {
    // Many aliased entries (no `name:` to find) and a deep staircase of odd indentation.
    let mut manifest = String::from("secrets:\n  - &e {name: api_key, env: A}\n");
    manifest.push_str(&"  - *e\n".repeat(100_000));
    let start = std::time::Instant::now();
    let (_, run) = with_manifest(&manifest);
    run.code(65);
    let staircase: String = (0..20_000).map(|i| format!("{}k{i}:\n", " ".repeat(i % 200))).collect();
    let (_, run) = with_config(&format!("{staircase} odd: 1\n"));
    run.code(78);
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "took {:?}", start.elapsed());
}

/// A file that is not there is said once, in words: its absolute path, then what is missing
/// (the file, or a directory on the way), never twice the same path or Rust's "(os error 2)".
#[test]
fn a_missing_file_is_said_once_in_words() {
    let f = Fixture::new();
    f.config(CONFIG);
    let manifest = f.path("mxm-secrets.yaml").display().to_string();
    let run = f.run(Args::check("worker"));
    run.code(65).stderr_has(&format!(
        "manifest {manifest}: cannot read it: No such file or directory; give the secrets with"
    ));
    let config = f.path("nothing.yaml").display().to_string();
    let run = f.run(Args::check("worker").config("nothing.yaml").secret("api_key"));
    run.code(78).stderr_has(&format!("config {config}: cannot read it: No such file or directory\n"));
    // A directory on the way that is missing is named: that is the one to make.
    let dir = f.path("etc").display().to_string();
    let run = f.run(Args::check("worker").config("etc/mxm/secrets.yaml").secret("api_key"));
    run.code(78).stderr_has(&format!("cannot read it: {dir}: No such file or directory\n"));
    assert!(!run.stderr().contains("os error"), "{}", run.stderr());
}
