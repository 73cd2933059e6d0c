//! The pipeline end to end on the env backend: authorization, all-or-nothing, exec.

use crate::util::{Args, CANARY, Fixture};

const CONFIG: &str = "\
stores:
  app: {backend: env, root: src}
refs:
  api_key: {store: app, path: api_key, policy: market}
  db_password: {store: app, path: db_password, policy: market}
  admin_token: {store: app, path: admin_token, policy: admins}
  dev_token: {store: app, path: dev_token, policy: dev_only}
  sentry_dsn: {store: app, path: sentry_dsn, policy: market}
policies:
  market: {allowed_principals: [marketdata, research]}
  admins: {allowed_principals: [human_admin]}
  dev_only: {allowed_principals: [marketdata], environments: [dev]}
principals:
  - {principal: human_admin, role: admin, environment: dev}
";

fn fixture() -> (Fixture, String) {
    let mut f = Fixture::new();
    let config = f.config(CONFIG).display().to_string();
    f.env("SRC_API_KEY", CANARY)
        .env("SRC_DB_PASSWORD", CANARY)
        .env("SRC_ADMIN_TOKEN", CANARY)
        .env("SRC_DEV_TOKEN", CANARY);
    (f, config)
}

#[test]
fn the_child_keeps_the_launchers_pid() {
    let (f, config) = fixture();
    let mut command =
        f.command(Args::run("marketdata").config(&config).secret("api_key").program(["sh", "-c", "echo $$"]));
    let child = command.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), pid.to_string());
}

#[test]
fn the_childs_exit_code_is_the_launchers() {
    let (f, config) = fixture();
    f.run(Args::run("marketdata").config(&config).secret("api_key").program(["sh", "-c", "exit 42"]))
        .code(42);
}

#[test]
fn programs_that_cannot_run() {
    let (f, config) = fixture();
    let base = Args::run("marketdata").config(&config).secret("api_key");
    f.run(base.clone().program(["no-such-program-mxm"]))
        .code(127)
        .stderr_has("no-such-program-mxm: command not found");
    let script = f.write("not-executable.sh", "#!/bin/sh\n");
    f.run(base.program([&script])).code(126).stderr_has("cannot execute");
}

#[test]
fn denied_names_are_all_listed_and_nothing_runs() {
    let (f, config) = fixture();
    let marker = f.path("started");
    let touch = format!("touch {}", marker.display());
    f.run(
        Args::run("research")
            .config(&config)
            .secrets(["admin_token", "dev_token", "api_key"])
            .program(["sh", "-c", &touch]),
    )
    .code(77)
    .stderr_has("2 secrets failed")
    .stderr_has("secret `admin_token`: denied to principal `research` by policy `admins`")
    .stderr_has("secret `dev_token`: denied to principal `research` by policy `dev_only`");
    assert!(!marker.exists(), "the program started although secrets were denied");
}

#[test]
fn environments_narrow_and_principal_rules_map() {
    let (f, config) = fixture();
    let run = |role: &str, environment: Option<&str>, secret: &str| {
        let mut args = Args::run(role).config(&config).secret(secret);
        if let Some(e) = environment {
            args = args.args(["--environment", e]);
        }
        f.run(args.program(["true"]))
    };
    run("marketdata", Some("dev"), "dev_token").code(0);
    run("marketdata", Some("prod"), "dev_token")
        .code(77)
        .stderr_has("environment `prod` (allowed environments: `dev`)");
    run("marketdata", None, "dev_token").code(77).stderr_has("no environment was declared");
    run("admin", Some("dev"), "admin_token").code(0);
    run("admin", Some("prod"), "admin_token").code(77).stderr_has("denied to principal `admin`");
}

#[test]
fn undefined_names_are_manifest_errors_with_a_suggestion() {
    let (f, config) = fixture();
    f.run(Args::run("marketdata").config(&config).secret("api_kye").program(["true"]))
        .code(65)
        .stderr_has("secret `api_kye`: not defined in the config")
        .stderr_has("did you mean `api_key`?");
}

#[test]
fn a_missing_optional_secret_is_skipped_a_denied_one_is_not() {
    let (f, config) = fixture();
    f.write("mxm-secrets.yaml", "secrets:\n  - name: api_key\n  - name: sentry_dsn\n    optional: true\n");
    let run = f.run(Args::run("marketdata").config(&config).program(["env"]));
    run.code(0).stdout_has(&format!("API_KEY={CANARY}"));
    assert!(!run.stdout().contains("SENTRY_DSN"));
    f.write("mxm-secrets.yaml", "secrets:\n  - name: admin_token\n    optional: true\n");
    f.run(Args::run("marketdata").config(&config).program(["true"])).code(77);
    f.write("mxm-secrets.yaml", "secrets:\n  - name: sentry_dsn\n");
    f.run(Args::run("marketdata").config(&config).program(["true"])).code(66);
}

#[test]
fn manifest_errors() {
    let (f, config) = fixture();
    f.run(Args::run("marketdata").config(&config).program(["true"]))
        .code(65)
        .stderr_has("/mxm-secrets.yaml: cannot read it");
    f.write("m.yaml", "secrets:\n  - name: api_key\n    env: LD_PRELOAD\n");
    f.run(Args::run("marketdata").config(&config).manifest("m.yaml").program(["true"]))
        .code(65)
        .stderr_has("may not be injected as LD_PRELOAD");
    f.write("m.yaml", "secrets:\n  - name: api_key\n    envv: X\n");
    f.run(Args::run("marketdata").config(&config).manifest("m.yaml").program(["true"]))
        .code(65)
        .stderr_has("/m.yaml:3:5: secrets[0]: unknown field `envv`");
    f.run(
        Args::run("marketdata").config(&config).secrets(["api_key=API", "db_password=API"]).program(["true"]),
    )
    .code(65)
    .stderr_has("both inject variable API");
}

#[test]
fn command_line_errors_are_64() {
    let (f, config) = fixture();
    f.run(Args::new("run").config(&config).secret("api_key").program(["true"])).code(64).stderr_has("--role");
    f.run(Args::run("Market").config(&config).secret("api_key").program(["true"]))
        .code(64)
        .stderr_has("not a valid name");
    f.run(Args::run("marketdata").config(&config).secret("api_key")).code(64);
    f.run(["frobnicate"]).code(64);
}

#[test]
fn the_role_can_come_from_the_environment() {
    let (mut f, config) = fixture();
    f.env("MXM_ROLE", "marketdata");
    f.run(Args::new("run").config(&config).secret("api_key").program(["true"])).code(0);
}

#[test]
fn get_prints_exactly_the_value() {
    let (f, config) = fixture();
    f.run(Args::get("api_key", "marketdata").config(&config)).code(0).stdout_is(CANARY);
    f.run(Args::get("admin_token", "marketdata").config(&config)).code(77).stdout_is("");
    f.run(Args::get("nope", "marketdata").config(&config)).code(65);
    f.run(Args::get("Bad Name", "marketdata").config(&config)).code(65).stderr_has("not defined");
}
