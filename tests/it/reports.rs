//! What the diagnostics print speaks the config's words (never Rust's), and `list` explains
//! an empty answer.

use serde_json::Value;

use crate::util::{Args, CANARY, Fixture};

const CONFIG: &str = "\
stores:
  s: {backend: env, root: src}
refs:
  user: {store: s, path: app, policy: market, field: user, trim: newline}
  first: {store: s, path: app, policy: market, field: password}
  whole: {store: s, path: app, policy: market}
  exact: {store: s, path: app, policy: lab, trim: none}
  ops: {store: s, path: app, policy: ops_box}
  admin: {store: s, path: app, policy: admins}
policies:
  market: {allowed_principals: [marketdata]}
  lab: {allowed_principals: [research], environments: [dev, staging]}
  ops_box: {allowed_principals: [research], machines: [ops1]}
  admins: {allowed_principals: [admin]}
";

fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.config(CONFIG);
    f.env("SRC_APP", format!("{CANARY}\nuser: bob\n"));
    f
}

fn json(run: &crate::util::Run) -> Value {
    serde_json::from_slice(&run.output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout()))
}

/// Every string in a report: none is Rust's `Debug` of a value (`Key("user")`, `Password`,
/// `Some(..)`), none holds the canary.
fn assert_config_words(value: &Value, at: &str) {
    match value {
        Value::String(s) => {
            for rust in ["Key(", "Password", "Whitespace", "Newline", "Some(", "None", "\\\"", "\""] {
                assert!(!s.contains(rust), "{at} is Rust's Debug ({rust}): {s:?}");
            }
            assert!(!s.contains(CANARY), "{at} holds a value");
        }
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| assert_config_words(v, &format!("{at}[{i}]")))
        }
        Value::Object(fields) => {
            fields.iter().for_each(|(k, v)| assert_config_words(v, &format!("{at}.{k}")))
        }
        _ => {}
    }
}

fn explain(f: &Fixture, name: &str, role: &str, format: &str) -> crate::util::Run {
    f.run(Args::new("explain").arg(name).role(role).args(["--format", format]))
}

#[test]
fn explain_speaks_the_configs_words() {
    let f = fixture();
    let report = json(explain(&f, "user", "marketdata", "json").code(0));
    assert_eq!(report["ref"]["field"], "user");
    assert_eq!(report["ref"]["trim"], "newline");
    assert_config_words(&report, "explain");
    let report = json(explain(&f, "first", "marketdata", "json").code(0));
    assert_eq!(report["ref"]["field"], "password");
    assert_eq!(report["ref"]["trim"], "whitespace");
    assert_config_words(&report, "explain");
    let report = json(explain(&f, "exact", "marketdata", "json").code(77));
    assert_eq!(report["ref"]["field"], Value::Null);
    assert_eq!(report["ref"]["trim"], "none");
    assert_config_words(&report, "explain");
    explain(&f, "user", "marketdata", "text").code(0).stdout_has("field user, trim newline\n");
    explain(&f, "first", "marketdata", "text").code(0).stdout_has("field password, trim whitespace\n");
    explain(&f, "exact", "research", "text").code(77).stdout_has("trim none\n");
}

#[test]
fn check_and_list_speak_the_configs_words() {
    let f = fixture();
    for role in ["marketdata", "research"] {
        let run = f.run(Args::check(role).secrets(["user", "exact"]).args(["--fetch", "--format", "json"]));
        assert_config_words(&json(&run), "check");
        let run = f.run(Args::new("list").role(role).args(["--format", "json"]));
        assert_config_words(&json(run.code(0)), "list");
    }
}

#[test]
fn list_with_nothing_allowed_says_why_and_what_would_be() {
    let f = fixture();
    // research may read `exact` in dev or staging and `ops` on ops1, but declares neither.
    let run = f.run(Args::new("list").role("research").args(["--environment", "prod"]));
    run.code(0)
        .stdout_has("principal  research (the role)\n")
        .stdout_has(
            "nothing    no policy allows principal `research` with environment `prod` and no machine\n",
        )
        .stdout_has("elsewhere  these policies allow the principal with another environment or machine:\n")
        .stdout_has("  policy lab      environments dev, staging  machines any   secrets exact\n")
        .stdout_has("  policy ops_box  environments any           machines ops1  secrets ops\n");
    let report =
        json(&f.run(Args::new("list").role("research").args(["--environment", "prod", "--format", "json"])));
    assert_eq!(report["secrets"], serde_json::json!([]));
    assert_eq!(
        report["nothing_readable"]["reason"],
        "no policy allows principal `research` with environment `prod` and no machine"
    );
    assert_eq!(
        report["nothing_readable"]["elsewhere"],
        serde_json::json!([
            {"policy": "lab", "environments": ["dev", "staging"], "machines": null, "secrets": ["exact"]},
            {"policy": "ops_box", "environments": null, "machines": ["ops1"], "secrets": ["ops"]},
        ])
    );
    // A principal no policy names at all: nothing elsewhere either.
    let run = f.run(Args::new("list").role("intern"));
    run.code(0).stdout_is("principal  intern (the role)\nnothing    no policy allows principal `intern`\n");
    let report = json(&f.run(Args::new("list").role("intern").args(["--format", "json"])));
    assert_eq!(report["nothing_readable"]["elsewhere"], serde_json::json!([]));
    // Something readable: the answer is the list alone, as before.
    let report = json(&f.run(Args::new("list").role("marketdata").args(["--format", "json"])));
    assert_eq!(report["nothing_readable"], Value::Null);
}
