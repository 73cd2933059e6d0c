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
//! `{principal: research, role: research}`. Rules that match on the kernel's facts (`user`,
//! `group`, `unit`) reserve their principal the same way: `--role deploy` from anyone but the
//! user a rule `{principal: deploy, user: deployer}` names speaks as nobody.
//!
//! **An identity may declare no role**: systemd's credential requests
//! ([`RuntimeIdentity::unit_only`]) carry only the unit. Then only a rule that names a `unit:`
//! (and no `role:`) can give the principal, and without one the judge denies: a credential
//! request never falls back to a role, nor to a rule written for a user or group.

use serde::Deserialize;

use crate::account::{Account, ConfigGroup, ConfigUser, Unit};
use crate::name::{Label, Name, check_label, given};

/// The declared runtime identity. `role` is required and must be a valid name, because by
/// default it is the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeIdentity {
    /// The declared role; for an identity that declares none ([`RuntimeIdentity::unit_only`])
    /// a placeholder that nothing may read as a role: use [`RuntimeIdentity::declared_role`].
    pub role: Name,
    pub environment: Option<String>,
    pub machine: Option<String>,
    pub app: Option<String>,
    pub substrate: Option<String>,
    /// False only for [`RuntimeIdentity::unit_only`].
    role_declared: bool,
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
            role_declared: true,
        })
    }

    /// The identity of a request that declares nothing, as systemd's `LoadCredential=`
    /// requests do: who asks is only the caller's unit ([`Caller::unit`]). Its principal can
    /// only come from a `principals:` rule naming that unit (module docs).
    pub fn unit_only() -> RuntimeIdentity {
        RuntimeIdentity {
            role: Name::new(UNDECLARED_ROLE).expect("a valid name"),
            environment: None,
            machine: None,
            app: None,
            substrate: None,
            role_declared: false,
        }
    }

    /// The role, unless the identity declares none ([`RuntimeIdentity::unit_only`]).
    pub fn declared_role(&self) -> Option<&Name> {
        self.role_declared.then_some(&self.role)
    }
}

/// What stands in the `role` of an identity that declares none, and so names the principal
/// in the denial of such a request when no rule gives it one.
const UNDECLARED_ROLE: &str = "none";

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
/// from the peer credentials of the connection, a supervisor from its unit. Policies'
/// `users` / `groups` / `units` and rules' `user` / `group` / `unit` are judged against it;
/// it travels with every request and into the audit records.
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

    /// Whether `gid` is the caller's primary group or one of its supplementary groups.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
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
/// fields all match speaks as `principal`. `user`, `group` and `unit` match the caller as the
/// kernel reports it: its uid, its primary or any supplementary group, its systemd unit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRule")]
pub struct PrincipalRule {
    pub principal: Name,
    pub role: Option<Name>,
    pub environment: Option<String>,
    pub machine: Option<String>,
    pub app: Option<String>,
    pub substrate: Option<String>,
    pub user: Option<Account>,
    pub group: Option<Account>,
    pub unit: Option<String>,
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
    #[serde(default, deserialize_with = "given")]
    user: Option<ConfigUser>,
    #[serde(default, deserialize_with = "given")]
    group: Option<ConfigGroup>,
    #[serde(default, deserialize_with = "given")]
    unit: Option<Unit>,
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
            user: raw.user.map(|u| u.0),
            group: raw.group.map(|g| g.0),
            unit: raw.unit.map(|u| u.0),
        };
        let labels = [&rule.environment, &rule.machine, &rule.app, &rule.substrate, &rule.unit];
        if rule.role.is_none()
            && labels.iter().all(|v| v.is_none())
            && rule.user.is_none()
            && rule.group.is_none()
        {
            return Err(format!(
                "the rule for principal `{}` has nothing to match (give at least one of \
                 role, environment, machine, app, substrate, user, group, unit); a rule matching \
                 everyone would turn every role into `{}`",
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
        // As the config gave them: by name, or by number.
        for (key, account) in [("user", &self.user), ("group", &self.group)] {
            if let Some(account) = account {
                match &account.name {
                    Some(name) => write!(f, ", {key}: {name}")?,
                    None => write!(f, ", {key}: {}", account.id)?,
                }
            }
        }
        if let Some(unit) = &self.unit {
            write!(f, ", unit: {unit}")?;
        }
        f.write_str("}")
    }
}

impl PrincipalRule {
    /// Whether every field the rule gives matches: the declared ones `identity`'s, `user`,
    /// `group` and `unit` the `caller`'s. An identity that declares no role is matched only
    /// by a rule that names a unit (module docs).
    pub fn matches(&self, identity: &RuntimeIdentity, caller: &Caller) -> bool {
        fn field<T: PartialEq>(wanted: &Option<T>, actual: &Option<T>) -> bool {
            wanted.is_none() || wanted == actual
        }
        let role = identity.declared_role();
        (role.is_some() || self.unit.is_some())
            && self.role.as_ref().is_none_or(|wanted| Some(wanted) == role)
            && field(&self.environment, &identity.environment)
            && field(&self.machine, &identity.machine)
            && field(&self.app, &identity.app)
            && field(&self.substrate, &identity.substrate)
            && self.user.as_ref().is_none_or(|user| user.id == caller.uid)
            && self.group.as_ref().is_none_or(|group| caller.in_group(group.id))
            && field(&self.unit, &caller.unit)
    }
}

/// The first rule whose given fields all match wins; no match: the role, marked
/// [`reserved`](Principal::reserved) when a rule produces a principal of that name. (With no
/// role declared and no rule matching, the principal is a placeholder the judge denies.)
pub fn derive_principal(rules: &[PrincipalRule], identity: &RuntimeIdentity, caller: &Caller) -> Principal {
    match rules.iter().position(|rule| rule.matches(identity, caller)) {
        Some(index) => Principal { name: rules[index].principal.clone(), rule: Some(index), reserved: None },
        None => Principal {
            reserved: identity
                .declared_role()
                .and_then(|role| rules.iter().position(|rule| rule.principal == *role)),
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
            user: None,
            group: None,
            unit: None,
        }
    }

    /// A caller with uid 1000, gid 1000, supplementary groups `groups`, in `unit`.
    fn caller(groups: &[u32], unit: Option<&str>) -> Caller {
        Caller { uid: 1000, gid: 1000, groups: groups.to_vec(), unit: unit.map(str::to_owned) }
    }

    #[test]
    fn the_role_is_the_principal_by_default() {
        let identity = RuntimeIdentity::new("marketdata").unwrap();
        let principal = derive_principal(&[], &identity, &caller(&[], None));
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
        assert_eq!(derive_principal(&rules, &dev, &caller(&[], None)).name.as_str(), "human_admin");
        assert_eq!(derive_principal(&rules, &dev, &caller(&[], None)).rule, Some(0));
        assert_eq!(derive_principal(&rules, &prod, &caller(&[], None)).name.as_str(), "ops");
        assert_eq!(derive_principal(&rules, &undeclared, &caller(&[], None)).name.as_str(), "ops");
        assert_eq!(derive_principal(&rules, &other, &caller(&[], None)).name.as_str(), "research");
    }

    #[test]
    fn a_rule_for_an_environment_needs_the_identity_to_declare_it() {
        let rules = [rule("dev_reader", None, Some("dev"))];
        let none = RuntimeIdentity::new("research").unwrap();
        assert_eq!(derive_principal(&rules, &none, &caller(&[], None)).name.as_str(), "research");
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
            let principal = derive_principal(rules, &identity, &caller(&[], None));
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
        assert!(rule.matches(&identity, &caller(&[], None)));
        for differs in [
            RuntimeIdentity::declared("x", Some("dev"), Some("m"), Some("a"), Some("s")),
            RuntimeIdentity::declared("r", Some("prod"), Some("m"), Some("a"), Some("s")),
            RuntimeIdentity::declared("r", Some("dev"), Some("n"), Some("a"), Some("s")),
            RuntimeIdentity::declared("r", Some("dev"), Some("m"), Some("b"), Some("s")),
            RuntimeIdentity::declared("r", Some("dev"), Some("m"), Some("a"), None),
        ] {
            assert!(!rule.matches(&differs.unwrap(), &caller(&[], None)));
        }
    }

    fn fact_rule(
        principal: &str,
        user: Option<u32>,
        group: Option<u32>,
        unit: Option<&str>,
    ) -> PrincipalRule {
        PrincipalRule {
            user: user.map(Account::user),
            group: group.map(Account::group),
            unit: unit.map(str::to_owned),
            ..rule(principal, None, None)
        }
    }

    fn as_caller(uid: u32, gid: u32, groups: &[u32], unit: Option<&str>) -> Caller {
        Caller { uid, gid, groups: groups.to_vec(), unit: unit.map(str::to_owned) }
    }

    /// `user`, `group` and `unit` match the caller's facts, beside the declared fields, and
    /// the principals they produce stay reserved: `--role deploy` from another user, or from
    /// outside the unit, is denied, not `deploy`. Rows: rules, role (None: undeclared),
    /// caller, principal, rule, reserved.
    #[test]
    fn fact_rules_match_the_caller_and_reserve_their_principal() {
        let deployer = fact_rule("deploy", Some(1001), None, None);
        let wheel = fact_rule("admin", None, Some(10), None);
        let feed = fact_rule("feed", None, None, Some("feed.service"));
        let feed_as_feeder = PrincipalRule { user: Some(Account::user(1001)), ..feed.clone() };
        let by_role = rule("research", Some("analyst"), None);
        type Row<'a> = (&'a [PrincipalRule], Option<&'a str>, Caller, &'a str, Option<usize>, Option<usize>);
        let table: &[Row] = &[
            (
                std::slice::from_ref(&deployer),
                Some("ci"),
                as_caller(1001, 1001, &[], None),
                "deploy",
                Some(0),
                None,
            ),
            (std::slice::from_ref(&deployer), Some("ci"), as_caller(1002, 1001, &[], None), "ci", None, None),
            (
                std::slice::from_ref(&deployer),
                Some("deploy"),
                as_caller(1002, 1001, &[1001], None),
                "deploy",
                None,
                Some(0),
            ),
            (
                std::slice::from_ref(&wheel),
                Some("ops"),
                as_caller(1002, 1002, &[4, 10], None),
                "admin",
                Some(0),
                None,
            ),
            (
                std::slice::from_ref(&wheel),
                Some("ops"),
                as_caller(1002, 10, &[], None),
                "admin",
                Some(0),
                None,
            ),
            (
                std::slice::from_ref(&wheel),
                Some("admin"),
                as_caller(1002, 1002, &[4], None),
                "admin",
                None,
                Some(0),
            ),
            (
                std::slice::from_ref(&feed),
                Some("x"),
                as_caller(0, 0, &[], Some("feed.service")),
                "feed",
                Some(0),
                None,
            ),
            (
                std::slice::from_ref(&feed),
                Some("feed"),
                as_caller(0, 0, &[], Some("cron.service")),
                "feed",
                None,
                Some(0),
            ),
            (std::slice::from_ref(&feed), Some("feed"), as_caller(0, 0, &[], None), "feed", None, Some(0)),
            // Every given field must match.
            (
                std::slice::from_ref(&feed_as_feeder),
                Some("x"),
                as_caller(1001, 1, &[], Some("feed.service")),
                "feed",
                Some(0),
                None,
            ),
            (
                std::slice::from_ref(&feed_as_feeder),
                Some("x"),
                as_caller(1002, 1, &[], Some("feed.service")),
                "x",
                None,
                None,
            ),
            // No role declared (systemd credentials): only a rule naming the unit can match ...
            (
                &[deployer.clone(), feed.clone()],
                None,
                as_caller(1001, 1001, &[], Some("feed.service")),
                "feed",
                Some(1),
                None,
            ),
            (
                &[by_role.clone(), feed.clone()],
                None,
                as_caller(0, 0, &[], Some("feed.service")),
                "feed",
                Some(1),
                None,
            ),
            // ... not a user, group or role rule, and nothing is reserved: the judge denies.
            (
                &[deployer.clone(), wheel.clone(), by_role.clone()],
                None,
                as_caller(1001, 10, &[], Some("feed.service")),
                "none",
                None,
                None,
            ),
            (
                std::slice::from_ref(&feed),
                None,
                as_caller(0, 0, &[], Some("cron.service")),
                "none",
                None,
                None,
            ),
        ];
        for (rules, role, who, name, rule, reserved) in table {
            let identity = match role {
                Some(role) => RuntimeIdentity::new(role).unwrap(),
                None => RuntimeIdentity::unit_only(),
            };
            let principal = derive_principal(rules, &identity, who);
            let context = format!("{role:?} {who:?} under {rules:?}");
            assert_eq!(principal.name.as_str(), *name, "{context}");
            assert_eq!(principal.rule, *rule, "{context}");
            assert_eq!(principal.reserved, *reserved, "{context}");
        }
    }

    #[test]
    fn an_identity_without_a_role_says_so() {
        let unit = RuntimeIdentity::unit_only();
        assert_eq!(unit.declared_role(), None);
        assert_eq!(RuntimeIdentity::new("none").unwrap().declared_role().map(Name::as_str), Some("none"));
        assert_ne!(unit, RuntimeIdentity::new("none").unwrap());
    }

    #[test]
    fn fact_rules_load_checked_and_show_as_written() {
        let parse = |text: &str| serde_yaml::from_str::<PrincipalRule>(text).map_err(|e| e.to_string());
        let rule = parse("{principal: p, user: root, group: 0, unit: feed.service}").unwrap();
        assert_eq!(rule.user, Some(Account::user(0)));
        assert_eq!(rule.group, Some(Account::group(0)));
        assert_eq!(rule.to_string(), "{principal: p, user: root, group: 0, unit: feed.service}");
        for only in ["user: 5", "group: root", "unit: a.service"] {
            parse(&format!("{{principal: p, {only}}}")).unwrap();
        }
        assert!(parse("{principal: p, user: no_such_user_mxm}").unwrap_err().contains("no user named"));
        assert!(parse("{principal: p, group: no_such_group_mxm}").unwrap_err().contains("no group named"));
        assert!(parse("{principal: p, unit: feed}").unwrap_err().contains("not a systemd unit name"));
        assert!(parse("{principal: p, user: [root]}").is_err());
        assert!(parse("{principal: p, users: [root]}").unwrap_err().contains("unknown field"));
        for key in ["user", "group", "unit"] {
            let error = parse(&format!("{{principal: p, {key}: ~}}")).unwrap_err();
            assert!(error.contains("null"), "{key}: {error}");
        }
        assert!(parse("{principal: p}").unwrap_err().contains("user, group, unit"));
    }
}
