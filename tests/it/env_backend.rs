//! The env backend and the child's environment, asserted whole.

use std::collections::BTreeMap;

use crate::util::{Args, CANARY, Fixture};

const CONFIG: &str = "\
stores:
  app: {backend: env, root: mxm_app}
refs:
  api_key: {store: app, path: api/key, policy: p}
  db_password: {store: app, path: db-password, policy: p}
  unrequested: {store: app, path: other, policy: p}
policies:
  p: {allowed_principals: [worker]}
";

fn env_of(output: &str) -> BTreeMap<String, String> {
    output.lines().filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))).collect()
}

#[test]
fn the_readme_example_runs() {
    let mut f = Fixture::new();
    f.env("MXM_DEMO_DATABENTO_API_KEY", "demo");
    let example = |name: &str| format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    f.run(
        Args::run("marketdata")
            .config(example("config.yaml"))
            .manifest(example("mxm-secrets.yaml"))
            .program(["printenv", "DATABENTO_API_KEY"]),
    )
    .code(0)
    .stdout_is("demo\n");
}

#[test]
fn the_child_environment_is_exactly_what_it_should_be() {
    let mut f = Fixture::new();
    let config = f.config(CONFIG);
    f.env("MXM_APP_API_KEY", CANARY)
        .env("MXM_APP_DB_PASSWORD", "pw")
        .env("MXM_APP_OTHER", "not requested, still a secret source")
        .env("MXM_ROLE", "worker")
        .env("MXM_ENVIRONMENT", "dev")
        .env("MXM_SECRETS_CONFIG", &config)
        .env("KEPT", "yes")
        .env("MXM_UNRELATED", "an app's own setting");
    let run = f.run(["run", "--secret", "api_key", "--secret", "db_password=PGPASSWORD", "--", "env"]);
    run.code(0);
    let mut env = env_of(&run.stdout());
    assert_eq!(env.remove("API_KEY").as_deref(), Some(CANARY));
    assert_eq!(env.remove("PGPASSWORD").as_deref(), Some("pw"));
    assert_eq!(env.remove("KEPT").as_deref(), Some("yes"));
    assert_eq!(env.remove("MXM_UNRELATED").as_deref(), Some("an app's own setting"));
    env.remove("PATH").expect("PATH passes through");
    env.remove("HOME").expect("HOME passes through");
    assert!(env.is_empty(), "unexpected variables reached the child: {env:?}");
}

#[test]
fn a_secret_replaces_an_inherited_variable_of_the_same_name() {
    let mut f = Fixture::new();
    let config = f.config(CONFIG);
    f.env("MXM_APP_API_KEY", CANARY).env("API_KEY", "stale");
    let run = f.run(Args::run("worker").config(config.to_str().unwrap()).secret("api_key").program(["env"]));
    run.code(0);
    let env = env_of(&run.stdout());
    assert_eq!(env.get("API_KEY").map(String::as_str), Some(CANARY));
}

#[test]
fn an_unset_variable_is_a_missing_secret() {
    let f = Fixture::new();
    let config = f.config(CONFIG);
    f.run(Args::run("worker").config(config.to_str().unwrap()).secret("api_key").program(["true"]))
        .code(66)
        .stderr_has("secret `api_key`: does not exist in store `app`: variable MXM_APP_API_KEY is not set");
}

#[test]
fn one_secret_can_go_into_two_variables() {
    let mut f = Fixture::new();
    let config = f.config(CONFIG);
    f.env("MXM_APP_API_KEY", CANARY);
    let run = f.run(
        Args::run("worker")
            .config(config.to_str().unwrap())
            .secrets(["api_key=FIRST", "api_key=SECOND"])
            .program(["env"]),
    );
    run.code(0);
    let env = env_of(&run.stdout());
    assert_eq!(env.get("FIRST").map(String::as_str), Some(CANARY));
    assert_eq!(env.get("SECOND").map(String::as_str), Some(CANARY));
}
