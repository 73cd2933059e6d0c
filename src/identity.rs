//! Who is running ([`RuntimeIdentity`], always declared, never guessed) and the authority it
//! speaks as ([`Principal`]): the role, unless a `principals:` rule of the config says otherwise.
//!
//! **A principal that a rule produces is reserved.** With `{principal: human_admin, role:
//! admin, environment: dev}`, `human_admin` is what an admin in dev speaks as; were the role
//! `human_admin` the principal `human_admin`, anyone could walk around the rule with
//! `--role human_admin --environment prod`. So an identity whose role names a principal some
//! rule produces speaks as it only when a rule maps that identity to it; otherwise the
//! principal is marked [`reserved`](Principal::reserved) and the judge denies every secret,
//! saying why. A role that should also speak as itself says so with a rule of its own:
//! `{principal: research, role: research}`.

use serde::Deserialize;

use crate::name::{Label, Name, check_label, given};

/// The declared runtime identity. `role` is required and must be a valid name, because by
/// default it is the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeIdentity {
    pub role: Name,
    pub environment: Option<String>,
    pub machine: Option<String>,
    pub app: Option<String>,
    pub substrate: Option<String>,
}

impl RuntimeIdentity {
    /// An identity with only a role.
    pub fn new(role: &str) -> Result<RuntimeIdentity, IdentityError> {
        RuntimeIdentity::declared(role, None, None, None, None)
    }

    /// An identity from its five parts, each checked: the role is a name, the others are
    /// labels (not empty, no surrounding white space, no control characters).
    pub fn declared(
        role: &str,
        environment: Option<&str>,
        machine: Option<&str>,
        app: Option<&str>,
        substrate: Option<&str>,
    ) -> Result<RuntimeIdentity, IdentityError> {
        let role = Name::new(role).map_err(IdentityError::Role)?;
        let label = |what: &str, value: Option<&str>| -> Result<Option<String>, IdentityError> {
            value
                .map(|v| check_label(what, v).map(|()| v.to_owned()))
                .transpose()
                .map_err(IdentityError::Label)
        };
        Ok(RuntimeIdentity {
            role,
            environment: label("environment", environment)?,
            machine: label("machine", machine)?,
            app: label("app", app)?,
            substrate: label("substrate", substrate)?,
        })
    }
}

/// An identity that cannot be a principal; the launcher exits 64 with it (a usage error),
/// a broker would refuse the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The role is not a name, e.g. `Admin`; why.
    Role(String),
    /// The environment, machine, app or substrate is not a label; the sentence names which.
    Label(String),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityError::Role(why) => write!(f, "role: {why}"),
            IdentityError::Label(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for IdentityError {}

/// What the kernel says about whoever asks, beside what it declares ([`RuntimeIdentity`]):
/// the launcher fills it from its own real ids ([`Caller::local`]); a broker would fill it
/// from the peer credentials of the connection, a supervisor from its unit. The judge does
/// not read it yet; it travels with every request and into the audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The systemd unit the caller runs in, when known.
    pub unit: Option<String>,
}

impl Caller {
    /// This process's real uid and gid (who ran us, not what a set-id bit made us) and
    /// supplementary groups; no unit.
    pub fn local() -> Caller {
        use nix::unistd::{getgroups, getresgid, getresuid};
        // Both cannot fail on Linux; the plain getters stand in should they ever.
        let uid = getresuid().map_or_else(|_| nix::unistd::getuid(), |ids| ids.real).as_raw();
        let gid = getresgid().map_or_else(|_| nix::unistd::getgid(), |ids| ids.real).as_raw();
        let groups = getgroups().unwrap_or_default().into_iter().map(|g| g.as_raw()).collect();
        Caller { uid, gid, groups, unit: None }
    }
}

/// The authority a request speaks as; policies list principals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: Name,
    /// Which `principals:` rule produced it (index in the config), or `None` for the role.
    pub rule: Option<usize>,
    /// `Some(index)` when no rule matched and the role names a principal that rule `index`
    /// produces: the role may not claim it, and the judge denies (see the module docs).
    pub reserved: Option<usize>,
}

impl Principal {
    /// The role itself as the principal, as when no rule exists.
    pub fn of_role(identity: &RuntimeIdentity) -> Principal {
        Principal { name: identity.role.clone(), rule: None, reserved: None }
    }
}

/// `- {principal: human_admin, role: admin, environment: dev}`: an identity whose given
/// fields all match speaks as `principal`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRule")]
pub struct PrincipalRule {
    pub principal: Name,
    pub role: Option<Name>,
    pub environment: Option<String>,
    pub machine: Option<String>,
    pub app: Option<String>,
    pub substrate: Option<String>,
}

/// Every optional field is [`given`]: `environment:` with nothing after it is an error, not
/// a rule that matches any environment.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    principal: Name,
    #[serde(default, deserialize_with = "given")]
    role: Option<Name>,
    #[serde(default, deserialize_with = "given")]
    environment: Option<Label>,
    #[serde(default, deserialize_with = "given")]
    machine: Option<Label>,
    #[serde(default, deserialize_with = "given")]
    app: Option<Label>,
    #[serde(default, deserialize_with = "given")]
    substrate: Option<Label>,
}

impl TryFrom<RawRule> for PrincipalRule {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<Self, String> {
        let text = |label: Option<Label>| label.map(|l| l.0);
        let rule = PrincipalRule {
            principal: raw.principal,
            role: raw.role,
            environment: text(raw.environment),
            machine: text(raw.machine),
            app: text(raw.app),
            substrate: text(raw.substrate),
        };
        let labels = [&rule.environment, &rule.machine, &rule.app, &rule.substrate];
        if rule.role.is_none() && labels.iter().all(|v| v.is_none()) {
            return Err(format!(
                "the rule for principal `{}` has nothing to match (give at least one of \
                 role, environment, machine, app, substrate); a rule matching everyone would \
                 turn every role into `{}`",
                rule.principal, rule.principal
            ));
        }
        Ok(rule)
    }
}

/// As written in the config: `{principal: human_admin, role: admin, environment: dev}`.
impl std::fmt::Display for PrincipalRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{principal: {}", self.principal)?;
        let role = self.role.as_ref().map(Name::as_str);
        let fields = [
            ("role", role),
            ("environment", self.environment.as_deref()),
            ("machine", self.machine.as_deref()),
            ("app", self.app.as_deref()),
            ("substrate", self.substrate.as_deref()),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                write!(f, ", {key}: {value}")?;
            }
        }
        f.write_str("}")
    }
}

impl PrincipalRule {
    pub fn matches(&self, identity: &RuntimeIdentity) -> bool {
        fn field<T: PartialEq>(wanted: &Option<T>, actual: &Option<T>) -> bool {
            wanted.is_none() || wanted == actual
        }
        self.role.as_ref().is_none_or(|role| *role == identity.role)
            && field(&self.environment, &identity.environment)
            && field(&self.machine, &identity.machine)
            && field(&self.app, &identity.app)
            && field(&self.substrate, &identity.substrate)
    }
}

/// The first rule whose given fields all match wins; no match: the role, marked
/// [`reserved`](Principal::reserved) when a rule produces a principal of that name.
pub fn derive_principal(rules: &[PrincipalRule], identity: &RuntimeIdentity) -> Principal {
    match rules.iter().position(|rule| rule.matches(identity)) {
        Some(index) => Principal { name: rules[index].principal.clone(), rule: Some(index), reserved: None },
        None => Principal {
            reserved: rules.iter().position(|rule| rule.principal == identity.role),
            ..Principal::of_role(identity)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(principal: &str, role: Option<&str>, environment: Option<&str>) -> PrincipalRule {
        PrincipalRule {
            principal: Name::new(principal).unwrap(),
            role: role.map(|r| Name::new(r).unwrap()),
            environment: environment.map(str::to_owned),
            machine: None,
            app: None,
            substrate: None,
        }
    }

    #[test]
    fn the_role_is_the_principal_by_default() {
        let identity = RuntimeIdentity::new("marketdata").unwrap();
        let principal = derive_principal(&[], &identity);
        assert_eq!(principal.name.as_str(), "marketdata");
        assert_eq!(principal.rule, None);
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = [rule("human_admin", Some("admin"), Some("dev")), rule("ops", Some("admin"), None)];
        let dev = RuntimeIdentity::declared("admin", Some("dev"), None, None, None).unwrap();
        let prod = RuntimeIdentity::declared("admin", Some("prod"), None, None, None).unwrap();
        let undeclared = RuntimeIdentity::new("admin").unwrap();
        let other = RuntimeIdentity::declared("research", Some("dev"), None, None, None).unwrap();
        assert_eq!(derive_principal(&rules, &dev).name.as_str(), "human_admin");
        assert_eq!(derive_principal(&rules, &dev).rule, Some(0));
        assert_eq!(derive_principal(&rules, &prod).name.as_str(), "ops");
        assert_eq!(derive_principal(&rules, &undeclared).name.as_str(), "ops");
        assert_eq!(derive_principal(&rules, &other).name.as_str(), "research");
    }

    #[test]
    fn a_rule_for_an_environment_needs_the_identity_to_declare_it() {
        let rules = [rule("dev_reader", None, Some("dev"))];
        let none = RuntimeIdentity::new("research").unwrap();
        assert_eq!(derive_principal(&rules, &none).name.as_str(), "research");
    }

    /// Issue 11 item 4: `--role human_admin` must not walk around the rule that makes
    /// `human_admin` out of an admin in dev. Rows: rules, (role, environment), principal,
    /// reserved by rule.
    #[test]
    fn principals_that_rules_produce_are_reserved() {
        let admin_dev = rule("human_admin", Some("admin"), Some("dev"));
        let research_self = rule("research", Some("research"), None);
        let research_dev = rule("research", Some("intern"), Some("dev"));
        type Row<'a> = (&'a [PrincipalRule], (&'a str, Option<&'a str>), &'a str, Option<usize>);
        let table: &[Row] = &[
            (std::slice::from_ref(&admin_dev), ("admin", Some("dev")), "human_admin", None),
            (std::slice::from_ref(&admin_dev), ("admin", Some("prod")), "admin", None),
            (std::slice::from_ref(&admin_dev), ("human_admin", Some("prod")), "human_admin", Some(0)),
            (std::slice::from_ref(&admin_dev), ("human_admin", Some("dev")), "human_admin", Some(0)),
            (std::slice::from_ref(&admin_dev), ("human_admin", None), "human_admin", Some(0)),
            (std::slice::from_ref(&admin_dev), ("research", None), "research", None),
            // A rule that maps the role to itself makes the claim legitimate ...
            (&[research_dev.clone(), research_self.clone()], ("research", None), "research", None),
            (&[research_dev.clone(), research_self.clone()], ("intern", Some("dev")), "research", None),
            // ... and without it the role is reserved, whatever rule produces the name.
            (std::slice::from_ref(&research_dev), ("research", None), "research", Some(0)),
            (&[admin_dev.clone(), research_dev.clone()], ("research", Some("dev")), "research", Some(1)),
            (&[], ("human_admin", None), "human_admin", None),
        ];
        for (rules, (role, environment), name, reserved) in table {
            let identity = RuntimeIdentity::declared(role, *environment, None, None, None).unwrap();
            let principal = derive_principal(rules, &identity);
            assert_eq!(principal.name.as_str(), *name, "{role} {environment:?} under {rules:?}");
            assert_eq!(principal.reserved, *reserved, "{role} {environment:?} under {rules:?}");
        }
    }

    #[test]
    fn identities_are_checked() {
        assert!(RuntimeIdentity::new("Marketdata").is_err());
        assert!(RuntimeIdentity::new("").is_err());
        assert!(RuntimeIdentity::declared("a", Some(" dev"), None, None, None).is_err());
        assert!(RuntimeIdentity::declared("a", None, Some(""), None, None).is_err());
    }

    /// A rule's labels are checked when the config loads: `environment: ' dev'` would
    /// otherwise load and never match, since declared identities cannot carry the space.
    #[test]
    fn a_rule_with_a_bad_label_does_not_load() {
        let parse = |text: &str| serde_yaml::from_str::<PrincipalRule>(text).map_err(|e| e.to_string());
        for key in ["environment", "machine", "app", "substrate"] {
            let error = parse(&format!("{{principal: p, {key}: ' dev'}}")).unwrap_err();
            assert!(error.contains("white space"), "{key}: {error}");
            assert!(parse(&format!("{{principal: p, {key}: ''}}")).is_err(), "{key}: empty");
            assert!(parse(&format!("{{principal: p, {key}:}}")).is_err(), "{key}: not given");
        }
        assert!(parse("{principal: p, role: Admin}").is_err());
        assert!(parse("{principal: p}").unwrap_err().contains("nothing to match"));
        let rule =
            parse("{principal: p, role: r, environment: dev, machine: m, app: a, substrate: s}").unwrap();
        assert_eq!(
            rule.to_string(),
            "{principal: p, role: r, environment: dev, machine: m, app: a, substrate: s}"
        );
        let identity = RuntimeIdentity::declared("r", Some("dev"), Some("m"), Some("a"), Some("s")).unwrap();
        assert!(rule.matches(&identity));
        for differs in [
            RuntimeIdentity::declared("x", Some("dev"), Some("m"), Some("a"), Some("s")),
            RuntimeIdentity::declared("r", Some("prod"), Some("m"), Some("a"), Some("s")),
            RuntimeIdentity::declared("r", Some("dev"), Some("n"), Some("a"), Some("s")),
            RuntimeIdentity::declared("r", Some("dev"), Some("m"), Some("b"), Some("s")),
            RuntimeIdentity::declared("r", Some("dev"), Some("m"), Some("a"), None),
        ] {
            assert!(!rule.matches(&differs.unwrap()));
        }
    }
}
