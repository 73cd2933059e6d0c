//! Who is running ([`RuntimeIdentity`], always declared, never guessed) and the authority it
//! speaks as ([`Principal`]): the role, unless a `principals:` rule of the config says otherwise.

use serde::Deserialize;

use crate::error::Error;
use crate::name::{Name, check_label};

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
    pub fn new(role: &str) -> Result<RuntimeIdentity, Error> {
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
    ) -> Result<RuntimeIdentity, Error> {
        let role = Name::new(role).map_err(|e| Error::Identity(format!("role: {e}")))?;
        let label = |what: &str, value: Option<&str>| -> Result<Option<String>, Error> {
            value.map(|v| check_label(what, v).map(|()| v.to_owned())).transpose().map_err(Error::Identity)
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

/// The authority a request speaks as; policies list principals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: Name,
    /// Which `principals:` rule produced it (index in the config), or `None` for the role.
    pub rule: Option<usize>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    principal: Name,
    role: Option<Name>,
    environment: Option<String>,
    machine: Option<String>,
    app: Option<String>,
    substrate: Option<String>,
}

impl TryFrom<RawRule> for PrincipalRule {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<Self, String> {
        let labels = [
            ("environment", &raw.environment),
            ("machine", &raw.machine),
            ("app", &raw.app),
            ("substrate", &raw.substrate),
        ];
        for (what, value) in labels {
            if let Some(value) = value {
                check_label(what, value)?;
            }
        }
        if raw.role.is_none() && labels.iter().all(|(_, v)| v.is_none()) {
            return Err(format!(
                "the rule for principal `{}` has nothing to match (give at least one of \
                 role, environment, machine, app, substrate); a rule matching everyone would \
                 turn every role into `{}`",
                raw.principal, raw.principal
            ));
        }
        Ok(PrincipalRule {
            principal: raw.principal,
            role: raw.role,
            environment: raw.environment,
            machine: raw.machine,
            app: raw.app,
            substrate: raw.substrate,
        })
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

/// The first rule whose given fields all match wins; no match: the role.
pub fn derive_principal(rules: &[PrincipalRule], identity: &RuntimeIdentity) -> Principal {
    match rules.iter().position(|rule| rule.matches(identity)) {
        Some(index) => Principal { name: rules[index].principal.clone(), rule: Some(index) },
        None => Principal { name: identity.role.clone(), rule: None },
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

    #[test]
    fn identities_are_checked() {
        assert!(RuntimeIdentity::new("Marketdata").is_err());
        assert!(RuntimeIdentity::new("").is_err());
        assert!(RuntimeIdentity::declared("a", Some(" dev"), None, None, None).is_err());
        assert!(RuntimeIdentity::declared("a", None, Some(""), None, None).is_err());
    }
}
