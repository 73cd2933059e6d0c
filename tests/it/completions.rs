//! Shell completion through bash itself: the script `completions bash` prints is sourced in
//! `bash --norc`, its function is called as bash would call it on TAB, and COMPREPLY is read.

use crate::util::{Args, CANARY, Fixture};

const CONFIG: &str = "\
stores:
  red: {backend: env, root: src}
  blue: {backend: env, root: other}
refs:
  databento_api_key: {store: red, path: api/key, policy: market}
  db_password: {store: blue, path: db/pw, policy: reports}
policies:
  market: {allowed_principals: [marketdata, research], environments: [prod, staging]}
  reports: {allowed_principals: [reporting], machines: [db1]}
principals:
  - {principal: research, role: analyst, environment: lab}
";

/// What bash offers for `line` (the cursor at its end), one candidate per output line.
fn complete(f: &Fixture, line: &str) -> Vec<String> {
    let script = f.run(["completions", "bash"]);
    script.code(0);
    f.write("completion.bash", script.output.stdout.clone());
    let body = format!(
        r#"source ./completion.bash
COMP_LINE={line:?}
COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMPREPLY=()
_clap_complete_mxm_secrets mxm-secrets "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#
    );
    let output = f.tool("bash").args(["--norc", "--noprofile", "-c", &body]).output().expect("bash runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "bash failed on {line:?}: {stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(CANARY));
    String::from_utf8_lossy(&output.stdout).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    f.config(CONFIG);
    f
}

/// The candidates that are not options.
fn words(candidates: Vec<String>) -> Vec<String> {
    candidates.into_iter().filter(|c| !c.starts_with('-')).collect()
}

#[test]
fn options_after_the_subcommand_complete() {
    let f = fixture();
    assert_eq!(complete(&f, "mxm-secrets ru"), ["run"]);
    assert_eq!(complete(&f, "mxm-secrets run --ro"), ["--role"]);
    assert_eq!(complete(&f, "mxm-secrets check --fe"), ["--fetch"]);
    assert_eq!(complete(&f, "mxm-secrets list --format j"), ["json"]);
}

#[test]
fn secret_names_complete_from_the_config_on_the_line() {
    let f = fixture();
    assert_eq!(
        words(complete(&f, "mxm-secrets get --config config.yaml ")),
        ["databento_api_key", "db_password"]
    );
    assert_eq!(complete(&f, "mxm-secrets explain --config config.yaml data"), ["databento_api_key"]);
    assert_eq!(complete(&f, "mxm-secrets run --config=config.yaml --secret db_"), ["db_password"]);
}

#[test]
fn roles_environments_and_machines_complete() {
    let f = fixture();
    assert_eq!(
        complete(&f, "mxm-secrets run --config config.yaml --role "),
        ["analyst", "marketdata", "reporting", "research"]
    );
    assert_eq!(
        complete(&f, "mxm-secrets check --config config.yaml --environment "),
        ["lab", "prod", "staging"]
    );
    assert_eq!(complete(&f, "mxm-secrets list --config config.yaml --machine "), ["db1"]);
}

#[test]
fn without_config_on_the_line_the_discovery_order_is_used() {
    let mut f = Fixture::new();
    assert!(words(complete(&f, "mxm-secrets get ")).is_empty());
    f.write("home/.config/mxm/secrets.yaml", CONFIG);
    assert_eq!(words(complete(&f, "mxm-secrets get db")), ["db_password"]);
    let named = f.write("named.yaml", CONFIG.replace("db_password", "dbx_password"));
    f.env("MXM_SECRETS_CONFIG", &named);
    assert_eq!(words(complete(&f, "mxm-secrets get db")), ["dbx_password"]);
}

#[test]
fn a_config_that_cannot_load_completes_nothing_silently() {
    let f = fixture();
    f.write("broken.yaml", "stores: [\n");
    assert!(words(complete(&f, "mxm-secrets get --config broken.yaml ")).is_empty());
    assert!(words(complete(&f, "mxm-secrets get --config missing.yaml ")).is_empty());
}

#[test]
fn zsh_and_fish_scripts_call_back_the_same_way() {
    let f = fixture();
    for shell in ["zsh", "fish"] {
        let run = f.run(["completions", shell]);
        run.code(0).stdout_has("_MXM_SECRETS_COMPLETE").stdout_has(crate::util::LAUNCHER);
    }
}

#[test]
fn a_completion_variable_set_by_accident_does_not_hijack_a_launch() {
    let mut f = fixture();
    f.env("COMPLETE", "bash");
    f.run(
        Args::run("marketdata").args(["--environment", "prod"]).secret("databento_api_key").program(["true"]),
    )
    .code(0)
    .stdout_is("");
}
