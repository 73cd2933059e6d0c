//! What a broker's client is told when its request fails. The broker is a boundary, so an
//! unprivileged client learns what it needs to act and nothing of the config: each failing
//! name with its decision, the principal it was judged as, and its own facts that did not
//! match (its uid, its groups, its unit, what it declared), never a policy's allowed lists,
//! a config or store path, a backend's detail or a "did you mean". The whole reason goes to
//! the broker's audit records and log, and the client's message says so. `check`/`explain`
//! run locally (by whoever can read the config) still say everything.

use crate::account::{describe_gid, describe_uid};
use crate::error::{Error, FailureKind};
use crate::policy::DenyReason;

/// Ends every message that leaves something out.
const SEE_LOG: &str = "the broker's log has the whole reason; ask its operator";

/// The sentence for the client, for an error whose whole text goes to the broker's log.
pub fn error(error: &Error) -> String {
    match error {
        // The client's own request: nothing of the config in these.
        Error::Usage(_) | Error::Identity(_) | Error::Manifest(_) => error.to_string(),
        Error::Secrets(failures) => {
            let each = |f: &crate::error::SecretFailure| format!("secret `{}`: {}", f.name, kind(&f.kind));
            match failures.as_slice() {
                [failure] => format!("{} ({SEE_LOG})", each(failure)),
                _ => {
                    let mut text = format!("{} secrets failed:", failures.len());
                    for failure in failures {
                        text.push_str(&format!("\n  {}", each(failure)));
                    }
                    format!("{text}\n({SEE_LOG})")
                }
            }
        }
        Error::Config(_) => format!("the broker's config cannot serve this request ({SEE_LOG})"),
        Error::System(_) | Error::Exec { .. } | Error::Output(_) | Error::Broker { .. } => {
            format!("the broker failed ({SEE_LOG})")
        }
    }
}

/// One name's failure, as the client is told it.
pub fn kind(kind: &FailureKind) -> String {
    match kind {
        FailureKind::Undefined { .. } => "not defined in the broker's config".to_owned(),
        // Where the manifest puts the value: the client's own request.
        FailureKind::Unusable(why) => why.clone(),
        FailureKind::Denied { principal, reason: why, .. } => {
            format!("denied to principal `{principal}`: {}", reason(why))
        }
        FailureKind::NotFound { store, .. } => format!("does not exist in store `{store}`"),
        FailureKind::Unavailable { store, .. } => format!("store `{store}` failed"),
        FailureKind::TimedOut { .. } => kind.to_string(),
        FailureKind::Throttled { store, .. } => {
            format!("store `{store}`'s secret service is throttling requests; try again later")
        }
        FailureKind::ServiceDenied { store, .. } => {
            format!("denied by the secret service behind store `{store}`")
        }
        FailureKind::Misconfigured { store, .. } => format!("store `{store}` cannot work as set up"),
    }
}

/// A denial, saying what about the caller did not match and not what would have.
pub fn reason(reason: &DenyReason) -> String {
    let declared = |what: &str, value: &Option<String>| match value {
        Some(value) => format!("{what} `{value}` is not one the policy allows"),
        None => format!("no {what} was declared, and the policy requires one"),
    };
    match reason {
        DenyReason::PrincipalNotAllowed { .. } => "the principal is not allowed".to_owned(),
        DenyReason::EnvironmentNotAllowed { declared: d, .. } => declared("environment", d),
        DenyReason::MachineNotAllowed { declared: d, .. } => declared("machine", d),
        DenyReason::ReservedPrincipal { principal, .. } => format!(
            "role `{principal}` names a principal that only a `principals:` rule gives, and no rule \
             gives it to this caller"
        ),
        DenyReason::NoRuleForUnit { unit: Some(unit) } => {
            format!("no `principals:` rule gives a principal to systemd unit `{unit}`")
        }
        DenyReason::NoRuleForUnit { unit: None } => {
            "the request declares no role and comes from no systemd unit".to_owned()
        }
        DenyReason::UserNotAllowed { uid, .. } => {
            format!("{} is not one of the policy's users", describe_uid(*uid))
        }
        DenyReason::GroupNotAllowed { gid, groups, .. } => {
            let mut all = vec![*gid];
            all.extend(groups.iter().filter(|g| *g != gid));
            let shown: Vec<String> = all.iter().map(|g| describe_gid(*g)).collect();
            format!("none of the caller's groups ({}) is one of the policy's groups", shown.join(", "))
        }
        DenyReason::UnitNotAllowed { unit: Some(unit), .. } => {
            format!("systemd unit `{unit}` is not one of the policy's units")
        }
        DenyReason::UnitNotAllowed { unit: None, .. } => {
            "the caller runs in no systemd unit, and the policy requires one".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Account;
    use crate::error::SecretFailure;
    use crate::name::Name;

    /// Every reason a policy gives, with lists and paths in it: the client's sentence holds
    /// none of them, and names the caller's own facts.
    #[test]
    fn a_client_is_told_its_own_facts_and_no_list_or_path() {
        let secret = "/etc/mxm/secret-store/api/key";
        let reasons = [
            DenyReason::PrincipalNotAllowed { allowed: vec![Name::new("listed_principal").unwrap()] },
            DenyReason::EnvironmentNotAllowed {
                declared: Some("dev".into()),
                allowed: vec!["listed_env".into()],
            },
            DenyReason::MachineNotAllowed { declared: None, allowed: vec!["listed_machine".into()] },
            DenyReason::UserNotAllowed {
                uid: 4_000_000,
                allowed: vec![Account::user(4_000_001).named("listed_user")],
            },
            DenyReason::GroupNotAllowed {
                gid: 4_000_000,
                groups: vec![4_000_003],
                allowed: vec![Account::group(4_000_002).named("listed_group")],
            },
            DenyReason::UnitNotAllowed { unit: None, allowed: vec!["listed.service".into()] },
            DenyReason::UnitNotAllowed {
                unit: Some("cron.service".into()),
                allowed: vec!["listed.service".into()],
            },
        ];
        let mut failures: Vec<SecretFailure> = reasons
            .into_iter()
            .map(|reason| SecretFailure {
                name: "api_key".into(),
                kind: FailureKind::Denied {
                    principal: Name::new("guest").unwrap(),
                    policy: Name::new("listed_policy").unwrap(),
                    reason,
                },
            })
            .collect();
        let store = Name::new("files").unwrap();
        failures.push(SecretFailure {
            name: "gone".into(),
            kind: FailureKind::NotFound { store: store.clone(), detail: format!("{secret}: no such file") },
        });
        failures.push(SecretFailure {
            name: "broken".into(),
            kind: FailureKind::Unavailable { store: store.clone(), detail: format!("{secret}: EIO") },
        });
        failures.push(SecretFailure {
            name: "typo".into(),
            kind: FailureKind::Undefined {
                hint: " /etc/mxm/secrets.yaml; did you mean `listed_name`?".into(),
            },
        });
        let all = Error::Secrets(failures);
        let (full, told) = (all.to_string(), error(&all));
        for hidden in ["listed_", "/etc/mxm", "allowed:", "did you mean"] {
            assert!(full.contains(hidden), "the full text should hold {hidden}: {full}");
            assert!(!told.contains(hidden), "the client was told {hidden}: {told}");
        }
        for said in [
            "denied to principal `guest`: the principal is not allowed",
            "environment `dev` is not one the policy allows",
            "no machine was declared, and the policy requires one",
            "uid 4000000 is not one of the policy's users",
            "none of the caller's groups (gid 4000000, gid 4000003) is one of the policy's groups",
            "the caller runs in no systemd unit",
            "systemd unit `cron.service` is not one of the policy's units",
            "secret `gone`: does not exist in store `files`",
            "secret `broken`: store `files` failed",
            "secret `typo`: not defined in the broker's config",
            SEE_LOG,
        ] {
            assert!(told.contains(said), "{said:?} missing from: {told}");
        }
        // A system failure says nothing of what failed; a usage error is the client's own.
        assert_eq!(error(&Error::System("open /etc/mxm/x".into())), format!("the broker failed ({SEE_LOG})"));
        assert_eq!(error(&Error::Usage("bad flag".into())), "bad flag");
    }
}
