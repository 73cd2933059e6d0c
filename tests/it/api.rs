//! The library: `SecretsApi::from_config_data` and `get_secret`, as Rust programs use them.

use std::fs;

use mxm_secrets::{RuntimeIdentity, SecretsApi};

use crate::util::{CANARY, Fixture};

fn config(f: &Fixture) -> String {
    let log = f.path("calls");
    let provider = f.script("bin/provider", &format!("echo \"$1\" >> {}\necho ' {CANARY} '", log.display()));
    format!(
        "stores:\n  s: {{backend: command, root: r, command: ['{}']}}\nrefs:\n  api_key: {{store: s, path: api_key, policy: market}}\n  admin: {{store: s, path: admin, policy: admins}}\npolicies:\n  market: {{allowed_principals: [marketdata]}}\n  admins: {{allowed_principals: []}}\n",
        provider.display()
    )
}

#[test]
fn get_secret_authorizes_then_fetches() {
    let f = Fixture::new();
    let api = SecretsApi::from_config_data(&config(&f)).unwrap();
    let identity = RuntimeIdentity::new("marketdata").unwrap();
    let value = api.get_secret("api_key", &identity).unwrap();
    assert_eq!(value.expose(), CANARY.as_bytes());
    assert_eq!(format!("{value:?} {value}"), "<redacted> <redacted>");

    let denied = api.get_secret("admin", &identity).unwrap_err();
    assert_eq!(denied.exit_code(), 77);
    assert!(denied.to_string().contains("allowed: nobody (the list is empty)"), "{denied}");
    let undefined = api.get_secret("api_kye", &identity).unwrap_err();
    assert_eq!(undefined.exit_code(), 65);
    assert!(undefined.to_string().contains("did you mean `api_key`?"), "{undefined}");
    assert_eq!(
        fs::read_to_string(f.path("calls")).unwrap(),
        "r/api_key\n",
        "the backend was asked only for the allowed name"
    );
}

#[test]
fn both_config_shapes_and_their_errors() {
    let f = Fixture::new();
    let text = config(&f);
    let wrapped: String = text.lines().map(|l| format!("  {l}\n")).collect();
    let api = SecretsApi::from_config_data(&format!("mxm_secrets:\n{wrapped}")).unwrap();
    assert!(api.config().refs.contains("api_key"));
    let error = SecretsApi::from_config_data("stores: {}\nrefs: {}\n").unwrap_err();
    assert_eq!(error.exit_code(), 78);
    assert!(error.to_string().starts_with("config <config data>:"), "{error}");
}

#[test]
fn errors_and_debug_output_hold_no_value() {
    let f = Fixture::new();
    let api = SecretsApi::from_config_data(&config(&f)).unwrap();
    let identity = RuntimeIdentity::new("marketdata").unwrap();
    let value = api.get_secret("api_key", &identity);
    assert!(!format!("{value:?}").contains(CANARY));
    assert!(!format!("{api:?}").contains(CANARY));
}
