//! The operator's commands: check, explain, list, the audit trail, completions and man.

use serde_json::Value;

use crate::util::{Args, CANARY, Fixture, LAUNCHER};

fn fixture() -> Fixture {
    let mut f = Fixture::new();
    let provider = f.script(
        "bin/provider",
        &format!("case $1 in *gone*) exit 66;; *broken*) echo 'provider broke' >&2; exit 1;; *slow*) sleep 30;; esac\necho {CANARY}"),
    );
    f.config(&format!(
        "\
stores:
  vault: {{backend: command, root: kv, command: ['{}'], timeout: 0.5}}
refs:
  api_key: {{store: vault, path: api, policy: market}}
  gone: {{store: vault, path: gone, policy: market}}
  broken: {{store: vault, path: broken, policy: market}}
  slow: {{store: vault, path: slow, policy: market}}
  admin_token: {{store: vault, path: admin, policy: admins}}
policies:
  market: {{allowed_principals: [marketdata, research], environments: [dev, prod]}}
  admins: {{allowed_principals: [human_admin]}}
principals:
  - {{principal: human_admin, role: admin, environment: dev}}
",
        provider.display()
    ));
    f.env("MXM_ENVIRONMENT", "dev");
    f
}

fn json(run: &crate::util::Run) -> Value {
    serde_json::from_slice(&run.output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout()))
}

fn check(f: &Fixture, args: &[&str]) -> crate::util::Run {
    f.run(Args::check("marketdata").args(args))
}

#[test]
fn check_answers_with_the_exit_code_of_each_failure_class() {
    let f = fixture();
    check(&f, &["--secret", "api_key"]).code(0).stdout_has("  api_key  allowed  store vault  env API_KEY\n");
    check(&f, &["--secret", "api_key", "--fetch"]).code(0).stdout_has("fetch ok").stdout_has("api_key");
    check(&f, &["--secret", "admin_token"])
        .code(77)
        .stdout_has("admin_token  DENIED")
        .stderr_has("denied to principal `marketdata`");
    check(&f, &["--secret", "api_kye"])
        .code(65)
        .stdout_has("api_kye  UNDEFINED")
        .stderr_has("did you mean `api_key`?");
    check(&f, &["--secret", "gone", "--fetch"]).code(66).stdout_has("fetch not_found");
    check(&f, &["--secret", "broken", "--fetch"]).code(69).stderr_has("provider broke");
    check(&f, &["--secret", "slow", "--fetch"]).code(75).stdout_has("fetch timed_out");
    f.write("m.yaml", "secrets:\n  - {name: gone, optional: true}\n");
    check(&f, &["--manifest", "m.yaml", "--fetch"]).code(0).stdout_has("fetch skipped");
    f.run(Args::check("marketdata").config("missing.yaml").secret("api_key")).code(78);
    // Without --fetch, no backend is asked: the slow one would time out.
    check(&f, &["--secret", "slow"]).code(0);
    let run = check(&f, &["--secret", "api_key", "--fetch"]);
    assert!(!run.stdout().contains(CANARY), "check printed a value");
}

#[test]
fn check_json_schema() {
    let f = fixture();
    let run =
        check(&f, &["--secret", "api_key=KEY", "--secret", "admin_token", "--fetch", "--format", "json"]);
    run.code(77);
    let report = json(&run);
    assert_eq!(report["schema"], "mxm-secrets/check/1");
    assert_eq!(report["ok"], false);
    assert_eq!(report["exit_code"], 77);
    assert_eq!(report["config"], f.path("config.yaml").display().to_string());
    assert_eq!(report["principal"]["name"], "marketdata");
    assert_eq!(report["principal"]["rule"], Value::Null);
    assert_eq!(report["fetched"], false, "nothing is fetched while a name is denied");
    let secrets = report["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2);
    assert_eq!(secrets[0]["name"], "api_key");
    assert_eq!(secrets[0]["decision"], "allowed");
    assert_eq!(secrets[0]["store"], "vault");
    assert_eq!(secrets[0]["policy"], "market");
    assert_eq!(secrets[0]["optional"], false);
    assert_eq!(secrets[0]["target"]["env"], "KEY");
    assert_eq!(secrets[0]["target"]["fd"], Value::Null);
    assert_eq!(secrets[0]["reason"], Value::Null);
    assert_eq!(secrets[1]["decision"], "denied");
    assert!(secrets[1]["reason"].as_str().unwrap().contains("by policy `admins`"));
    let run = f.run(Args::check("x").config("nope.yaml").secret("a").args(["--format", "json"]));
    run.code(78);
    let error = json(&run);
    assert_eq!(
        (error["schema"].as_str(), error["ok"].as_bool(), error["exit_code"].as_i64()),
        (Some("mxm-secrets/check/1"), Some(false), Some(78))
    );
    assert!(error["error"].as_str().unwrap().contains("nope.yaml"));
}

#[test]
fn explain_traces_a_decision() {
    let f = fixture();
    let run = f.run(Args::new("explain").arg("api_key").role("research"));
    run.code(0)
        .stdout_has("identity   role=research environment=dev\n")
        .stdout_has("principal  research (the role)\n")
        .stdout_has("ref        store vault, path api, policy market")
        .stdout_has("location   command kv/api\n")
        .stdout_has(
            "policy     market: principals marketdata, research; environments dev, prod; machines any\n",
        )
        .stdout_has("decision   allowed\n");
    let run = f.run(Args::new("explain").arg("admin_token").role("admin"));
    run.code(0)
        .stdout_has("principal  human_admin (from principals[0] of the config)\n")
        .stdout_has("rule       principals[0]: {principal: human_admin, role: admin, environment: dev}\n");
    let mut prod = fixture();
    prod.env("MXM_ENVIRONMENT", "prod");
    prod.run(["explain", "admin_token", "--config", "config.yaml", "--role", "admin"])
        .code(77)
        .stdout_has("decision   DENIED: denied to principal `admin` by policy `admins`");
    f.run(Args::new("explain").arg("nope").role("admin")).code(65).stdout_has("decision   UNDEFINED");
    let report =
        json(&f.run(Args::new("explain").arg("api_key").role("execution").args(["--format", "json"])));
    assert_eq!(report["schema"], "mxm-secrets/explain/1");
    assert_eq!(report["exit_code"], 77);
    assert_eq!(report["decision"], "denied");
    assert_eq!(report["identity"]["role"], "execution");
    assert_eq!(report["identity"]["environment"], "dev");
    assert_eq!(report["identity"]["machine"], Value::Null);
    assert_eq!(report["ref"]["path"], "api");
    assert_eq!(report["store"]["backend"], "command");
    assert_eq!(report["store"]["location"], "kv/api");
    assert_eq!(report["policy"]["allowed_principals"], serde_json::json!(["marketdata", "research"]));
    assert!(report["reason"].as_str().unwrap().contains("the principal is not allowed"));
}

#[test]
fn list_shows_what_an_identity_may_read() {
    let f = fixture();
    let run = f.run(Args::new("list").role("admin"));
    run.code(0).stdout_is("principal  human_admin (from principals[0] of the config)\n  admin_token  store vault  policy admins\n");
    let report = json(&f.run(Args::new("list").role("marketdata").args(["--format", "json"])));
    assert_eq!(report["schema"], "mxm-secrets/list/1");
    let names: Vec<&str> =
        report["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api_key", "broken", "gone", "slow"]);
    assert_eq!(report["secrets"][0]["store"], "vault");
    assert_eq!(report["secrets"][0]["policy"], "market");
}

#[test]
fn audit_records_decisions_and_fetches_without_values() {
    let f = fixture();
    let base =
        ["run", "--config", "config.yaml", "--role", "marketdata", "--secret", "api_key", "--", "true"];
    let quiet = f.run(base);
    quiet.code(0);
    assert_eq!(quiet.stderr(), "", "quiet by default");
    let run = f.run(["-v"].into_iter().chain(base));
    run.code(0)
        .stderr_has(
            "mxm-secrets: audit: decision principal=marketdata secret=api_key decision=allowed store=vault ",
        )
        .stderr_has("mxm-secrets: audit: fetch principal=marketdata secret=api_key store=vault outcome=ok ");
    assert!(!run.stderr().contains("kv/api"), "a path at -v");
    f.run(["-vv"].into_iter().chain(base)).code(0).stderr_has("path=kv/api");
    let denied = f.run([
        "-v",
        "--log-format",
        "json",
        "run",
        "--config",
        "config.yaml",
        "--role",
        "marketdata",
        "--secret",
        "admin_token",
        "--",
        "true",
    ]);
    denied.code(77);
    let record: Value = serde_json::from_str(denied.stderr().lines().next().unwrap()).unwrap();
    assert_eq!(record["event"], "decision");
    assert_eq!(record["principal"], "marketdata");
    assert_eq!(record["secret"], "admin_token");
    assert_eq!(record["decision"], "denied");
    assert!(record["reason"].as_str().unwrap().contains("policy `admins`"));
    assert!(record.get("path").is_none());
    // get is audited the same way.
    let run = f.run(["-v", "get", "api_key", "--config", "config.yaml", "--role", "marketdata"]);
    run.code(0)
        .stderr_has("audit: decision principal=marketdata secret=api_key decision=allowed store=vault ")
        .stderr_has("audit: fetch principal=marketdata secret=api_key store=vault outcome=ok ");
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let mut f = fixture();
    let on_terminal = |f: &Fixture| {
        let line = format!("{LAUNCHER} explain api_key --config config.yaml --role research");
        // script(1) gives the launcher a terminal for stdout.
        let output =
            f.tool("script").args(["-qec", &line, "/dev/null"]).output().expect("script (bsdutils) runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(on_terminal(&f).contains("\x1b[32mallowed\x1b[0m"), "{:?}", on_terminal(&f));
    f.env("NO_COLOR", "1");
    let plain = on_terminal(&f);
    assert!(plain.contains("allowed") && !plain.contains('\x1b'), "{plain:?}");
    let piped = f.run(Args::new("explain").arg("api_key").role("research"));
    assert!(!piped.stdout().contains('\x1b'));
}

#[test]
fn completions_and_man_page() {
    let f = Fixture::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = f.run(["completions", shell]);
        run.code(0).stdout_has("mxm-secrets").stdout_has("_MXM_SECRETS_COMPLETE");
    }
    f.run(["completions", "tcsh"]).code(64);
    f.run(["man"]).code(0).stdout_has(".TH mxm-secrets 1").stdout_has("mxm\\-secrets\\-run(1)");
    f.run(["man", "run"]).code(0).stdout_has(".TH mxm-secrets-run 1").stdout_has("clean\\-env");
    f.run(["man", "rnu"]).code(64).stderr_has("no command `rnu`");
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let f = Fixture::new();
    for command in ["run", "get", "check", "explain", "list", "completions", "man"] {
        f.run([command, "--help"]).code(0).stdout_has("Example");
    }
}
