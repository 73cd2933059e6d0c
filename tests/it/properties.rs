//! Properties over generated inputs: configs round-trip, policies deny by default, the env
//! backend's naming never lets two paths share a variable silently, and no input panics.

use std::collections::BTreeMap;

use mxm_secrets::SecretValue;
use mxm_secrets::config::Config;
use mxm_secrets::identity::{Principal, RuntimeIdentity};
use mxm_secrets::manifest::Manifest;
use mxm_secrets::name::Name;
use mxm_secrets::policy::{Decision, SecretPolicy};
use mxm_secrets::value::{Field, Trim, extract};
use proptest::prelude::*;

/// A name as a config writes it unquoted: YAML 1.1's words (`no`, `on`, `yes`, `off`) need
/// quotes there, and the configs below are rendered without.
fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,8}".prop_filter("a YAML 1.1 word", |n| {
        !matches!(n.as_str(), "yes" | "no" | "on" | "off" | "true" | "false" | "null")
    })
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9][a-z0-9._-]{0,6}", 1..4).prop_map(|segments| segments.join("/"))
}

#[derive(Debug, Clone)]
struct Generated {
    stores: BTreeMap<String, (&'static str, String)>,
    refs: BTreeMap<String, (String, String, String)>,
    policies: BTreeMap<String, Vec<String>>,
}

fn generated() -> impl Strategy<Value = Generated> {
    let backends = prop::sample::select(vec!["gopass", "file", "command"]);
    (
        prop::collection::btree_map(name(), (backends, path()), 1..4),
        prop::collection::btree_map(name(), prop::collection::btree_set(name(), 0..4), 1..4),
        prop::collection::btree_map(
            name(),
            (any::<prop::sample::Index>(), path(), any::<prop::sample::Index>()),
            0..6,
        ),
    )
        .prop_map(|(stores, policies, refs)| {
            let store_names: Vec<&String> = stores.keys().collect();
            let policy_names: Vec<&String> = policies.keys().collect();
            let refs = refs
                .into_iter()
                .map(|(n, (s, p, q))| {
                    (n, (s.get(&store_names).to_string(), p, q.get(&policy_names).to_string()))
                })
                .collect();
            let stores = stores
                .into_iter()
                .map(|(n, (b, root))| {
                    let root = if b == "file" { format!("/{root}") } else { root };
                    (n, (b, root))
                })
                .collect();
            Generated {
                stores,
                refs,
                policies: policies.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect(),
            }
        })
}

/// Names are quoted: a valid name such as `no` or `on` is a boolean to YAML 1.1 unquoted,
/// and refused there as the reference refuses it.
fn render(g: &Generated) -> String {
    let mut text = String::from("stores:\n");
    for (name, (backend, root)) in &g.stores {
        let extra = if *backend == "command" { ", command: [provider]" } else { "" };
        text.push_str(&format!("  '{name}': {{backend: {backend}, root: '{root}'{extra}}}\n"));
    }
    text.push_str(if g.refs.is_empty() { "refs: {}\n" } else { "refs:\n" });
    for (name, (store, path, policy)) in &g.refs {
        text.push_str(&format!("  '{name}': {{store: '{store}', path: '{path}', policy: '{policy}'}}\n"));
    }
    text.push_str("policies:\n");
    for (name, principals) in &g.policies {
        let quoted: Vec<String> = principals.iter().map(|p| format!("'{p}'")).collect();
        text.push_str(&format!("  '{name}': {{allowed_principals: [{}]}}\n", quoted.join(", ")));
    }
    text
}

proptest! {
    #[test]
    fn configs_round_trip(g in generated()) {
        let config = Config::parse(&render(&g), "generated").unwrap();
        let stores: Vec<&str> = config.stores.names().map(Name::as_str).collect();
        prop_assert_eq!(stores, g.stores.keys().map(String::as_str).collect::<Vec<_>>());
        for (name, (backend, root)) in &g.stores {
            let store = config.stores.get(name).unwrap();
            prop_assert_eq!(store.backend.name(), *backend);
            prop_assert_eq!(&store.root, root);
        }
        prop_assert_eq!(config.refs.len(), g.refs.len());
        for (name, (store, path, policy)) in &g.refs {
            let secret = config.refs.get(name).unwrap();
            prop_assert_eq!((secret.store.as_str(), secret.path.as_str(), secret.policy.as_str()), (store.as_str(), path.as_str(), policy.as_str()));
        }
        for (name, principals) in &g.policies {
            let policy = config.policies.get(name).unwrap();
            let allowed: Vec<&str> = policy.allowed_principals.iter().map(Name::as_str).collect();
            prop_assert_eq!(allowed, principals.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    #[test]
    fn policies_deny_whoever_they_do_not_name(allowed in prop::collection::vec(name(), 0..5), who in name(), environments in prop::option::of(prop::collection::vec(name(), 0..3))) {
        let policy = SecretPolicy {
            allowed_principals: allowed.iter().map(|n| Name::new(n).unwrap()).collect(),
            environments: environments.clone(),
            machines: None,
            users: None,
            groups: None,
            units: None,
        };
        let identity = RuntimeIdentity::new(&who).unwrap();
        let principal = Principal::of_role(&identity);
        let decision = policy.evaluate(&principal, &identity, &mxm_secrets::Caller::local());
        if !allowed.contains(&who) || environments.is_some() {
            // Not named, or the policy names environments and this identity declares none.
            prop_assert!(matches!(decision, Decision::Denied(_)), "{:?}", decision);
        } else {
            prop_assert_eq!(decision, Decision::Allowed);
        }
    }

    #[test]
    fn two_paths_never_silently_share_a_variable(
        (a, b) in prop_oneof![
            (path(), path()),
            // Pairs built to collide: the same segments joined by different separators.
            (prop::collection::vec("[a-z0-9]{1,4}", 2..4), prop::sample::select(vec!["-", ".", "_"]))
                .prop_map(|(segments, separator)| (segments.join("/"), segments.join(separator))),
        ]
    ) {
        let text = format!(
            "stores: {{e: {{backend: env, root: app}}}}\nrefs:\n  a: {{store: e, path: '{a}', policy: p}}\n  b: {{store: e, path: '{b}', policy: p}}\npolicies: {{p: {{allowed_principals: [x]}}}}\n"
        );
        let variable = |p: &str| format!("app/{p}").replace(['/', '-', '.'], "_").to_uppercase();
        match Config::parse(&text, "generated") {
            Ok(_) => prop_assert!(a == b || variable(&a) != variable(&b)),
            Err(e) => {
                prop_assert!(a != b && variable(&a) == variable(&b), "{}", e);
                prop_assert!(e.to_string().contains("both read variable"), "{}", e);
            }
        }
    }

    #[test]
    fn no_text_makes_the_config_or_manifest_reader_panic(text in ".{0,300}") {
        let _ = Config::parse(&text, "generated");
        let _ = Manifest::parse(&text, "generated");
    }

    #[test]
    fn no_yaml_shaped_text_panics(text in "[a-z:{}\\[\\], \\-'\"#&*!|>\n]{0,200}") {
        let _ = Config::parse(&text, "generated");
        let _ = Manifest::parse(&text, "generated");
        let _ = Config::parse(&format!("stores: {{}}\nrefs: {{}}\npolicies: {{}}\nprincipals: {text}"), "generated");
    }

    #[test]
    fn no_value_makes_field_or_trim_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), key in "[a-z]{1,5}", trim in 0..3usize) {
        let value = SecretValue::new(bytes.clone());
        let trim = [Trim::Whitespace, Trim::Newline, Trim::None][trim];
        for field in [None, Some(Field::Password), Some(Field::Key(key.clone()))] {
            if let Some(out) = extract(&value, field.as_ref(), trim) {
                prop_assert!(out.len() <= bytes.len());
            }
        }
        let whole = extract(&value, None, Trim::None).unwrap();
        prop_assert_eq!(whole.expose(), &bytes[..]);
    }
}
