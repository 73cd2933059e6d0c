//! Policies and the judge: a pure function from (policy, principal, identity) to a
//! [`Decision`]. No I/O and no logging here; callers enforce and report.

use std::fmt;

use serde::Deserialize;

use crate::identity::{Principal, RuntimeIdentity};
use crate::name::{Label, Name, UniqueList, given};

/// Who may read the secrets that name this policy. An empty `allowed_principals` denies
/// everyone. `environments` / `machines`, when given, narrow it: the identity must declare
/// one of those listed (an identity that declares none is denied).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawPolicy")]
pub struct SecretPolicy {
    pub allowed_principals: Vec<Name>,
    pub environments: Option<Vec<String>>,
    pub machines: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    allowed_principals: UniqueList<Name>,
    #[serde(default, deserialize_with = "given")]
    environments: Option<UniqueList<Label>>,
    #[serde(default, deserialize_with = "given")]
    machines: Option<UniqueList<Label>>,
}

impl From<RawPolicy> for SecretPolicy {
    fn from(raw: RawPolicy) -> Self {
        let labels = |list: UniqueList<Label>| list.0.into_iter().map(|l| l.0).collect();
        SecretPolicy {
            allowed_principals: raw.allowed_principals.0,
            environments: raw.environments.map(labels),
            machines: raw.machines.map(labels),
        }
    }
}

/// The judge's answer. `#[must_use]`: a decision that nobody looks at is a bug.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    Allowed,
    Denied(DenyReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// The principal is not in `allowed_principals` (which may be empty: deny all).
    PrincipalNotAllowed { allowed: Vec<Name> },
    /// The policy names environments and the identity declares another one, or none.
    EnvironmentNotAllowed { declared: Option<String>, allowed: Vec<String> },
    /// The policy names machines and the identity declares another one, or none.
    MachineNotAllowed { declared: Option<String>, allowed: Vec<String> },
    /// The role names a principal that `principals:` rule `rule` produces, and no rule maps
    /// this identity to it (see [`crate::identity`]).
    ReservedPrincipal { principal: Name, rule: usize },
}

impl SecretPolicy {
    pub fn evaluate(&self, principal: &Principal, identity: &RuntimeIdentity) -> Decision {
        if let Some(rule) = principal.reserved {
            return Decision::Denied(DenyReason::ReservedPrincipal {
                principal: principal.name.clone(),
                rule,
            });
        }
        if !self.allowed_principals.contains(&principal.name) {
            return Decision::Denied(DenyReason::PrincipalNotAllowed {
                allowed: self.allowed_principals.clone(),
            });
        }
        if let Some(allowed) = &self.environments
            && !identity.environment.as_ref().is_some_and(|e| allowed.contains(e))
        {
            return Decision::Denied(DenyReason::EnvironmentNotAllowed {
                declared: identity.environment.clone(),
                allowed: allowed.clone(),
            });
        }
        if let Some(allowed) = &self.machines
            && !identity.machine.as_ref().is_some_and(|m| allowed.contains(m))
        {
            return Decision::Denied(DenyReason::MachineNotAllowed {
                declared: identity.machine.clone(),
                allowed: allowed.clone(),
            });
        }
        Decision::Allowed
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Display>(items: &[T]) -> String {
            if items.is_empty() {
                return "nobody (the list is empty)".to_owned();
            }
            items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
        }
        fn declared(what: &str, value: &Option<String>) -> String {
            match value {
                Some(value) => format!("{what} `{value}`"),
                None => format!("no {what} was declared"),
            }
        }
        match self {
            DenyReason::PrincipalNotAllowed { allowed } => {
                write!(f, "the principal is not allowed (allowed: {})", list(allowed))
            }
            DenyReason::EnvironmentNotAllowed { declared: d, allowed } => {
                write!(f, "{} (allowed environments: {})", declared("environment", d), list(allowed))
            }
            DenyReason::MachineNotAllowed { declared: d, allowed } => {
                write!(f, "{} (allowed machines: {})", declared("machine", d), list(allowed))
            }
            DenyReason::ReservedPrincipal { principal, rule } => write!(
                f,
                "role `{principal}` names a principal that rule principals[{rule}] produces, and no \
                 rule maps this identity to it, so the role cannot claim it; if role `{principal}` \
                 should speak as itself, add the rule `{{principal: {principal}, role: {principal}}}` \
                 to the config's `principals:`"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(principals: &[&str], environments: Option<&[&str]>, machines: Option<&[&str]>) -> SecretPolicy {
        let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        SecretPolicy {
            allowed_principals: principals.iter().map(|p| Name::new(p).unwrap()).collect(),
            environments: environments.map(strings),
            machines: machines.map(strings),
        }
    }

    fn who(role: &str, environment: Option<&str>, machine: Option<&str>) -> (Principal, RuntimeIdentity) {
        let identity = RuntimeIdentity::declared(role, environment, machine, None, None).unwrap();
        (Principal::of_role(&identity), identity)
    }

    macro_rules! pass {
        ($policy:expr, $who:expr) => {{
            let (p, i) = $who;
            assert_eq!($policy.evaluate(&p, &i), Decision::Allowed, "{:?} should be allowed", i);
        }};
    }
    macro_rules! fail {
        ($policy:expr, $who:expr) => {{
            let (p, i) = $who;
            assert!(matches!($policy.evaluate(&p, &i), Decision::Denied(_)), "{:?} should be denied", i);
        }};
    }

    #[test]
    fn principals() {
        let market = policy(&["marketdata", "research"], None, None);
        pass!(market, who("marketdata", None, None));
        pass!(market, who("research", Some("prod"), Some("bridge")));
        fail!(market, who("execution", None, None));
    }

    #[test]
    fn empty_policy_denies_all() {
        let nobody = policy(&[], None, None);
        fail!(nobody, who("marketdata", None, None));
        fail!(nobody, who("admin", Some("dev"), None));
        let (p, i) = who("admin", None, None);
        let Decision::Denied(reason) = nobody.evaluate(&p, &i) else { panic!() };
        assert!(reason.to_string().contains("nobody"), "{reason}");
    }

    #[test]
    fn environments_and_machines_narrow() {
        let dev_only = policy(&["research"], Some(&["dev"]), None);
        pass!(dev_only, who("research", Some("dev"), None));
        fail!(dev_only, who("research", Some("prod"), None));
        fail!(dev_only, who("research", None, None));
        let on_bridge = policy(&["research"], None, Some(&["bridge"]));
        pass!(on_bridge, who("research", None, Some("bridge")));
        fail!(on_bridge, who("research", None, Some("laptop")));
        fail!(on_bridge, who("research", Some("dev"), None));
        let no_env = policy(&["research"], Some(&[]), None);
        fail!(no_env, who("research", Some("dev"), None));
    }

    #[test]
    fn a_reserved_principal_is_denied_whatever_the_policy_says() {
        let admins = policy(&["human_admin", "admin"], None, None);
        let (mut p, i) = who("human_admin", Some("prod"), None);
        pass!(admins, (p.clone(), i.clone()));
        p.reserved = Some(0);
        let Decision::Denied(reason) = admins.evaluate(&p, &i) else { panic!("allowed") };
        assert_eq!(reason, DenyReason::ReservedPrincipal { principal: p.name.clone(), rule: 0 });
        let text = reason.to_string();
        assert!(text.contains("rule principals[0] produces"), "{text}");
        assert!(text.contains("add the rule `{principal: human_admin, role: human_admin}`"), "{text}");
    }

    #[test]
    fn duplicates_and_bad_labels_are_refused() {
        let parse = |text: &str| serde_yaml::from_str::<SecretPolicy>(text).map_err(|e| e.to_string());
        assert!(parse("allowed_principals: [a, b, a]").unwrap_err().contains("\"a\" is listed twice"));
        assert!(
            parse("{allowed_principals: [a], environments: [dev, dev]}")
                .unwrap_err()
                .contains("listed twice")
        );
        assert!(parse("{allowed_principals: [a], machines: [' m']}").unwrap_err().contains("white space"));
        assert!(parse("{allowed_principals: [a], hosts: [m]}").unwrap_err().contains("unknown field"));
        assert!(parse("{}").unwrap_err().contains("missing field `allowed_principals`"));
        assert_eq!(parse("allowed_principals: []").unwrap().allowed_principals, []);
    }

    /// Each reason says what was declared (or that nothing was) and what is allowed.
    #[test]
    fn deny_reasons_say_what_was_declared_and_what_is_allowed() {
        let text = |policy: &SecretPolicy, who: (Principal, RuntimeIdentity)| match policy
            .evaluate(&who.0, &who.1)
        {
            Decision::Denied(reason) => reason.to_string(),
            Decision::Allowed => panic!("allowed"),
        };
        let dev_only = policy(&["research"], Some(&["dev", "test"]), None);
        assert_eq!(
            text(&dev_only, who("research", Some("prod"), None)),
            "environment `prod` (allowed environments: `dev`, `test`)"
        );
        assert_eq!(
            text(&dev_only, who("research", None, None)),
            "no environment was declared (allowed environments: `dev`, `test`)"
        );
        let on_bridge = policy(&["research"], None, Some(&["bridge"]));
        assert_eq!(
            text(&on_bridge, who("research", None, Some("laptop"))),
            "machine `laptop` (allowed machines: `bridge`)"
        );
        assert_eq!(
            text(&on_bridge, who("research", None, None)),
            "no machine was declared (allowed machines: `bridge`)"
        );
        assert_eq!(
            text(&on_bridge, who("intern", None, None)),
            "the principal is not allowed (allowed: `research`)"
        );
    }
}
