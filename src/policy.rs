//! Policies and the judge: a pure function from (policy, principal, identity, caller) to a
//! [`Decision`]. No I/O and no logging here; callers enforce and report. The config's user
//! and group names were resolved to ids when it loaded ([`crate::account`]), so the judge
//! compares numbers with what the kernel says about the caller ([`Caller`]).

use std::fmt;

use serde::Deserialize;

use crate::account::{Account, ConfigGroup, ConfigUser, Unit};
use crate::identity::{Caller, Principal, RuntimeIdentity};
use crate::name::{Label, Name, UniqueList, given};

/// Who may read the secrets that name this policy. An empty `allowed_principals` denies
/// everyone. `environments` / `machines`, when given, narrow it: the identity must declare
/// one of those listed (an identity that declares none is denied). `users` / `groups` /
/// `units`, when given, narrow it by what the kernel says rather than what is declared: the
/// caller's uid must be one of `users`, its primary or any supplementary group one of
/// `groups`, its systemd unit one of `units` (a caller in no unit is denied).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawPolicy")]
pub struct SecretPolicy {
    pub allowed_principals: Vec<Name>,
    pub environments: Option<Vec<String>>,
    pub machines: Option<Vec<String>>,
    pub users: Option<Vec<Account>>,
    pub groups: Option<Vec<Account>>,
    pub units: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    allowed_principals: UniqueList<Name>,
    #[serde(default, deserialize_with = "given")]
    environments: Option<UniqueList<Label>>,
    #[serde(default, deserialize_with = "given")]
    machines: Option<UniqueList<Label>>,
    #[serde(default, deserialize_with = "given")]
    users: Option<UniqueList<ConfigUser>>,
    #[serde(default, deserialize_with = "given")]
    groups: Option<UniqueList<ConfigGroup>>,
    #[serde(default, deserialize_with = "given")]
    units: Option<UniqueList<Unit>>,
}

impl From<RawPolicy> for SecretPolicy {
    fn from(raw: RawPolicy) -> Self {
        let labels = |list: UniqueList<Label>| list.0.into_iter().map(|l| l.0).collect();
        SecretPolicy {
            allowed_principals: raw.allowed_principals.0,
            environments: raw.environments.map(labels),
            machines: raw.machines.map(labels),
            users: raw.users.map(|list| list.0.into_iter().map(|u| u.0).collect()),
            groups: raw.groups.map(|list| list.0.into_iter().map(|g| g.0).collect()),
            units: raw.units.map(|list| list.0.into_iter().map(|u| u.0).collect()),
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
    /// The identity declares no role (systemd's credential requests) and no `principals:`
    /// rule with a `unit:` matches the caller's unit: such a request has no principal.
    NoRuleForUnit { unit: Option<String> },
    /// The policy names users and the caller's uid is not one of them.
    UserNotAllowed { uid: u32, allowed: Vec<Account> },
    /// The policy names groups and neither the caller's gid nor any of its supplementary
    /// groups is one of them.
    GroupNotAllowed { gid: u32, groups: Vec<u32>, allowed: Vec<Account> },
    /// The policy names systemd units and the caller runs in another one, or in none.
    UnitNotAllowed { unit: Option<String>, allowed: Vec<String> },
}

impl SecretPolicy {
    /// Whether `principal`, derived from `identity` and `caller`, may read this policy's
    /// secrets. The declared parts (principal, environment, machine) are judged first, then
    /// the kernel's facts (user, groups, unit); the first that fails is the reason.
    pub fn evaluate(&self, principal: &Principal, identity: &RuntimeIdentity, caller: &Caller) -> Decision {
        if let Some(rule) = principal.reserved {
            return Decision::Denied(DenyReason::ReservedPrincipal {
                principal: principal.name.clone(),
                rule,
            });
        }
        if identity.declared_role().is_none() && principal.rule.is_none() {
            return Decision::Denied(DenyReason::NoRuleForUnit { unit: caller.unit.clone() });
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
        if let Some(allowed) = &self.users
            && !allowed.iter().any(|user| user.id == caller.uid)
        {
            return Decision::Denied(DenyReason::UserNotAllowed {
                uid: caller.uid,
                allowed: allowed.clone(),
            });
        }
        if let Some(allowed) = &self.groups
            && !allowed.iter().any(|group| caller.in_group(group.id))
        {
            return Decision::Denied(DenyReason::GroupNotAllowed {
                gid: caller.gid,
                groups: caller.groups.clone(),
                allowed: allowed.clone(),
            });
        }
        if let Some(allowed) = &self.units
            && !caller.unit.as_ref().is_some_and(|unit| allowed.contains(unit))
        {
            return Decision::Denied(DenyReason::UnitNotAllowed {
                unit: caller.unit.clone(),
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
            DenyReason::NoRuleForUnit { unit: Some(unit) } => write!(
                f,
                "a systemd credential request declares no role, so its principal comes only from \
                 a `principals:` rule naming its unit, and no rule with `unit: {unit}` matches; \
                 add one, e.g. `{{principal: NAME, unit: {unit}}}`"
            ),
            DenyReason::NoRuleForUnit { unit: None } => f.write_str(
                "the request declares no role and comes from no systemd unit, so no principal \
                 can be derived",
            ),
            DenyReason::UserNotAllowed { uid, allowed } => write!(
                f,
                "{} is not one of the policy's users (allowed: {})",
                crate::account::describe_uid(*uid),
                list(allowed)
            ),
            DenyReason::GroupNotAllowed { gid, groups, allowed } => {
                let mut all = vec![*gid];
                all.extend(groups.iter().filter(|g| *g != gid));
                let shown: Vec<String> = all.iter().map(|g| crate::account::describe_gid(*g)).collect();
                write!(
                    f,
                    "none of the caller's groups ({}) is one of the policy's groups (allowed: {})",
                    shown.join(", "),
                    list(allowed)
                )
            }
            DenyReason::UnitNotAllowed { unit: Some(unit), allowed } => {
                write!(f, "systemd unit `{unit}` (allowed units: {})", list(allowed))
            }
            DenyReason::UnitNotAllowed { unit: None, allowed } => {
                write!(f, "the caller runs in no systemd unit (allowed units: {})", list(allowed))
            }
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
            users: None,
            groups: None,
            units: None,
        }
    }

    /// A caller with uid 1000, gid 1000 and no supplementary group or unit: what the
    /// declared-identity tests run as (no policy of theirs names facts).
    fn plain() -> Caller {
        Caller { uid: 1000, gid: 1000, groups: vec![], unit: None }
    }

    fn who(role: &str, environment: Option<&str>, machine: Option<&str>) -> (Principal, RuntimeIdentity) {
        let identity = RuntimeIdentity::declared(role, environment, machine, None, None).unwrap();
        (Principal::of_role(&identity), identity)
    }

    macro_rules! pass {
        ($policy:expr, $who:expr) => {{
            let (p, i) = $who;
            assert_eq!($policy.evaluate(&p, &i, &plain()), Decision::Allowed, "{:?} should be allowed", i);
        }};
    }
    macro_rules! fail {
        ($policy:expr, $who:expr) => {{
            let (p, i) = $who;
            assert!(
                matches!($policy.evaluate(&p, &i, &plain()), Decision::Denied(_)),
                "{:?} should be denied",
                i
            );
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
        let Decision::Denied(reason) = nobody.evaluate(&p, &i, &plain()) else { panic!() };
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
        let Decision::Denied(reason) = admins.evaluate(&p, &i, &plain()) else { panic!("allowed") };
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
        let text = |policy: &SecretPolicy, who: (Principal, RuntimeIdentity)| match policy.evaluate(
            &who.0,
            &who.1,
            &plain(),
        ) {
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

    fn caller(uid: u32, gid: u32, groups: &[u32], unit: Option<&str>) -> Caller {
        Caller { uid, gid, groups: groups.to_vec(), unit: unit.map(str::to_owned) }
    }

    /// `users`, `groups` and `units` narrow a policy by the caller's kernel facts, after the
    /// principal is allowed. Rows: (users, groups, units), caller, allowed.
    #[test]
    fn facts_narrow() {
        let feed = |users: Option<&[u32]>, groups: Option<&[u32]>, units: Option<&[&str]>| SecretPolicy {
            users: users.map(|l| l.iter().map(|id| Account::user(*id)).collect()),
            groups: groups.map(|l| l.iter().map(|id| Account::group(*id)).collect()),
            units: units.map(|l| l.iter().map(|u| u.to_string()).collect()),
            ..policy(&["feed"], None, None)
        };
        let (principal, identity) = who("feed", None, None);
        type Row<'a> = (Option<&'a [u32]>, Option<&'a [u32]>, Option<&'a [&'a str]>, Caller, bool);
        let table: &[Row] = &[
            (None, None, None, caller(1001, 1001, &[], None), true),
            (Some(&[1001, 1002]), None, None, caller(1001, 1001, &[], None), true),
            (Some(&[1001, 1002]), None, None, caller(1003, 1001, &[1001], None), false),
            // uid 0 is a uid like any other: not in the list, not allowed.
            (Some(&[1001]), None, None, caller(0, 0, &[], None), false),
            (Some(&[]), None, None, caller(1001, 1001, &[], None), false),
            // The primary group counts ...
            (None, Some(&[50]), None, caller(1001, 50, &[], None), true),
            // ... and so does any supplementary one.
            (None, Some(&[50]), None, caller(1001, 1001, &[7, 50], None), true),
            (None, Some(&[50]), None, caller(1001, 1001, &[7, 51], None), false),
            // A gid equal to the uid is not the uid's group unless the caller has it.
            (None, Some(&[1001]), None, caller(1001, 100, &[], None), false),
            (None, None, Some(&["feed.service"]), caller(0, 0, &[], Some("feed.service")), true),
            (None, None, Some(&["feed.service"]), caller(0, 0, &[], Some("feed2.service")), false),
            (None, None, Some(&["feed.service"]), caller(0, 0, &[], None), false),
            // All given lists must match.
            (
                Some(&[1001]),
                Some(&[50]),
                Some(&["feed.service"]),
                caller(1001, 50, &[], Some("feed.service")),
                true,
            ),
            (
                Some(&[1001]),
                Some(&[50]),
                Some(&["feed.service"]),
                caller(1001, 51, &[], Some("feed.service")),
                false,
            ),
            (Some(&[1001]), Some(&[50]), Some(&["feed.service"]), caller(1001, 50, &[], None), false),
        ];
        for (users, groups, units, who, allowed) in table {
            let decision = feed(*users, *groups, *units).evaluate(&principal, &identity, who);
            assert_eq!(
                decision == Decision::Allowed,
                *allowed,
                "{users:?} {groups:?} {units:?} {who:?}: {decision:?}"
            );
        }
        // Facts never admit a principal the policy does not name.
        let (stranger, identity) = who("intruder", None, None);
        let open = feed(Some(&[1001]), None, None);
        assert!(matches!(
            open.evaluate(&stranger, &identity, &caller(1001, 1001, &[], None)),
            Decision::Denied(DenyReason::PrincipalNotAllowed { .. })
        ));
    }

    #[test]
    fn fact_denials_say_what_the_caller_is_and_what_is_allowed() {
        let (principal, identity) = who("feed", None, None);
        let denied = |policy: SecretPolicy, who: Caller| match policy.evaluate(&principal, &identity, &who) {
            Decision::Denied(reason) => (reason.to_string(), reason),
            Decision::Allowed => panic!("allowed"),
        };
        // uid and gid 4000000: no such user or group on any test machine, so no name.
        let users = SecretPolicy {
            users: Some(vec![Account::user(0).named("root"), Account::user(4_000_001)]),
            ..policy(&["feed"], None, None)
        };
        let (text, reason) = denied(users, caller(4_000_000, 4_000_000, &[], None));
        assert_eq!(
            reason,
            DenyReason::UserNotAllowed {
                uid: 4_000_000,
                allowed: vec![Account::user(0), Account::user(4_000_001)]
            }
        );
        assert_eq!(
            text,
            "uid 4000000 is not one of the policy's users (allowed: `root (uid 0)`, `uid 4000001`)"
        );
        let (text, _) = denied(
            SecretPolicy { users: Some(vec![Account::user(4_000_001)]), ..policy(&["feed"], None, None) },
            caller(0, 0, &[], None),
        );
        assert!(text.starts_with("user root (uid 0) is not one"), "{text}");
        let groups = SecretPolicy {
            groups: Some(vec![Account::group(4_000_002).named("ops")]),
            ..policy(&["feed"], None, None)
        };
        let (text, _) = denied(groups, caller(4_000_000, 4_000_000, &[4_000_000, 0], None));
        assert_eq!(
            text,
            "none of the caller's groups (gid 4000000, root (gid 0)) is one of the policy's groups \
             (allowed: `ops (gid 4000002)`)"
        );
        let units =
            SecretPolicy { units: Some(vec!["feed.service".into()]), ..policy(&["feed"], None, None) };
        let (text, _) = denied(units.clone(), caller(0, 0, &[], Some("cron.service")));
        assert_eq!(text, "systemd unit `cron.service` (allowed units: `feed.service`)");
        let (text, _) = denied(units, caller(0, 0, &[], None));
        assert_eq!(text, "the caller runs in no systemd unit (allowed units: `feed.service`)");
    }

    /// A request that declares no role has a principal only from a rule (identity.rs); with
    /// none, whatever the policy allows, it is denied, naming the unit to write a rule for.
    #[test]
    fn an_undeclared_role_needs_a_rule() {
        let everyone = policy(&["none", "feed"], None, None);
        let identity = RuntimeIdentity::unit_only();
        let unit = caller(0, 0, &[], Some("feed.service"));
        let placeholder = Principal::of_role(&identity);
        let Decision::Denied(reason) = everyone.evaluate(&placeholder, &identity, &unit) else {
            panic!("allowed without a rule")
        };
        assert_eq!(reason, DenyReason::NoRuleForUnit { unit: Some("feed.service".into()) });
        assert!(reason.to_string().contains("add one, e.g. `{principal: NAME, unit: feed.service}`"));
        let from_rule = Principal { name: Name::new("feed").unwrap(), rule: Some(0), reserved: None };
        assert_eq!(everyone.evaluate(&from_rule, &identity, &unit), Decision::Allowed);
    }

    #[test]
    fn fact_lists_load_checked() {
        let parse = |text: &str| serde_yaml::from_str::<SecretPolicy>(text).map_err(|e| e.to_string());
        let policy =
            parse("{allowed_principals: [a], users: [root, 4000000], groups: [root], units: [feed.service]}")
                .unwrap();
        assert_eq!(policy.users, Some(vec![Account::user(0), Account::user(4_000_000)]));
        assert_eq!(policy.users.as_ref().unwrap()[0].name.as_deref(), Some("root"));
        assert_eq!(policy.groups, Some(vec![Account::group(0)]));
        assert_eq!(policy.units, Some(vec!["feed.service".to_owned()]));
        // The same user by name and by number is listed twice.
        let twice = parse("{allowed_principals: [a], users: [root, 0]}").unwrap_err();
        assert!(twice.contains("user uid 0 is listed twice"), "{twice}");
        assert!(parse("{allowed_principals: [a], groups: [0, root]}").unwrap_err().contains("listed twice"));
        assert!(
            parse("{allowed_principals: [a], units: [a.service, a.service]}")
                .unwrap_err()
                .contains("listed twice")
        );
        assert!(
            parse("{allowed_principals: [a], users: [no_such_user_mxm]}")
                .unwrap_err()
                .contains("no user named")
        );
        assert!(parse("{allowed_principals: [a], units: [feed]}").unwrap_err().contains("no type suffix"));
        assert!(parse("{allowed_principals: [a], users: root}").is_err());
        assert!(parse("{allowed_principals: [a], users: }").unwrap_err().contains("is null"));
        assert!(parse("{allowed_principals: [a], user: [root]}").unwrap_err().contains("unknown field"));
        assert_eq!(parse("{allowed_principals: [a], users: []}").unwrap().users, Some(vec![]));
    }
}
