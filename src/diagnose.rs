//! The operator's questions, answered without reading code: `check` (is this launch going to
//! work?), `explain` (why may this identity read this secret, or not?), `list` (what may it
//! read?). Each answer is a [`Report`]: aligned text for people, JSON for programs, and the
//! outcome the exit code is taken from. A report never holds a value.
//!
//! JSON schemas are stable: fields are only ever added. Each object has `"schema"`:
//! `mxm-secrets/check/1`, `mxm-secrets/explain/1` or `mxm-secrets/list/1`.

use serde_json::{Value, json};

use crate::account::{Account, describe_gid, describe_uid};
use crate::audit::{Audit, failure_word};
use crate::backend::FetchError;
use crate::config::Config;
use crate::config::SecretPolicy;
use crate::error::{Error, FailureKind, SecretFailure};
use crate::identity::{Caller, Principal, PrincipalRule, RuntimeIdentity, derive_principal};
use crate::inject;
use crate::inputs::Inputs;
use crate::name::Name;
use crate::policy::DenyReason;
use crate::resolve::{self, Fetched, Judged};

/// An answer, in both forms, and how the command ends.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub json: Value,
    pub outcome: Result<(), Error>,
}

impl Report {
    /// JSON for an error that came before any report could be made (config not found, ...).
    pub fn error_json(schema: &str, error: &Error) -> Value {
        json!({"schema": schema, "ok": false, "exit_code": error.exit_code(), "error": error.to_string()})
    }
}

/// Words coloured for a terminal; plain otherwise (and always with `NO_COLOR`).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn good(self, word: &str) -> String {
        self.paint("32", word)
    }
    fn bad(self, word: &str) -> String {
        self.paint("31;1", word)
    }
    fn paint(self, code: &str, word: &str) -> String {
        if self.color { format!("\x1b[{code}m{word}\x1b[0m") } else { word.to_owned() }
    }
}

/// `check`, and `run --dry-run` (which is `check` without `fetch`): every requested name's
/// decision and target, and with `fetch`, whether its backend answers. Values fetched are
/// dropped (and wiped) at once.
pub fn check(inputs: &Inputs, fetch: bool, audit: &Audit, style: Style) -> Result<Report, Error> {
    let prepared = inputs.prepare(audit)?;
    let (config, manifest) = (prepared.api.config(), &prepared.manifest);
    let targets = inject::targets(manifest, inject::is_open)?;
    let names = manifest.names();
    let judgement = prepared.api.judge(&prepared.request(inputs, &names));
    let (principal, judged) = (&judgement.principal, &judgement.judged);
    // A store that cannot work here at all (a root naming an unset variable, a program not
    // on PATH) is found without asking any backend for a value.
    let unusable: Vec<(Name, FailureKind)> = judged
        .iter()
        .filter_map(|(name, result)| {
            let authorized = result.as_ref().ok()?;
            let store = authorized.location.store.clone();
            let kind = match authorized.store.usable_here().err()? {
                FetchError::Misconfigured(detail) => FailureKind::Misconfigured { store, detail },
                FetchError::NotFound(detail) => FailureKind::NotFound { store, detail },
                FetchError::Denied(detail) => FailureKind::ServiceDenied { store, detail },
                FetchError::Failed(detail) => FailureKind::Unavailable { store, detail },
                FetchError::TimedOut => FailureKind::TimedOut { store, after: authorized.store.timeout },
                FetchError::Throttled(detail) => FailureKind::Throttled { store, detail },
            };
            Some((name.clone(), kind))
        })
        .collect();
    // Each fetched name with its outcome word and, unless skipped, its failure.
    let mut fetched: Vec<(Name, &'static str, Option<FailureKind>)> = Vec::new();
    if fetch && unusable.is_empty() && judged.iter().all(|(_, r)| r.is_ok()) {
        let _hardened = crate::exec::harden()?;
        for (name, outcome) in judgement.outcomes() {
            let (word, failure) = match outcome {
                Fetched::Value(_) => ("ok", None),
                Fetched::Skipped => ("skipped", None),
                Fetched::Failed(kind) => (failure_word(&kind), Some(kind)),
            };
            fetched.push((name, word, failure));
        }
    }
    let mut rows = Vec::new();
    let mut entries = Vec::new();
    let mut failures = Vec::new();
    for (entry, target) in manifest.entries.iter().zip(&targets) {
        let (_, judgement) =
            judged.iter().find(|(name, _)| *name == entry.name).expect("every entry was judged");
        let fetch_result = fetched.iter().find(|(name, _, _)| *name == entry.name);
        let mut into = Vec::new();
        if let Some(fd) = target.fd {
            into.push(format!("fd {fd}"));
        }
        match (&target.env, target.fd) {
            (Some(env), Some(fd)) => into.push(format!("env {env}=/dev/fd/{fd}")),
            (Some(env), None) => into.push(format!("env {env}")),
            (None, _) => {}
        }
        let (decision, store, policy) = match judgement {
            Ok(a) => ("allowed", Some(a.location.store.as_str()), Some(a.secret.policy.as_str())),
            Err(kind) => {
                (failure_word(kind), None, config.refs.get(entry.name.as_str()).map(|r| r.policy.as_str()))
            }
        };
        let fetch_word = fetch_result.map(|(_, word, _)| *word);
        let problem = judgement
            .as_ref()
            .err()
            .or_else(|| unusable.iter().find(|(name, _)| *name == entry.name).map(|(_, kind)| kind))
            .or_else(|| fetch_result.and_then(|(_, _, failure)| failure.as_ref()));
        if let Some(kind) = problem
            && !failures.iter().any(|f: &SecretFailure| f.name == entry.name.as_str())
        {
            failures.push(SecretFailure { name: entry.name.to_string(), kind: kind.clone() });
        }
        let shown_decision =
            if judgement.is_ok() { style.good(decision) } else { style.bad(&decision.to_uppercase()) };
        let mut row = vec![
            entry.name.to_string(),
            shown_decision,
            store.map_or(String::new(), |s| format!("store {s}")),
            into.join(", ") + if entry.optional { " (optional)" } else { "" },
        ];
        if let Some((_, kind)) = unusable.iter().find(|(name, _)| *name == entry.name) {
            row.push(style.bad(&failure_word(kind).to_uppercase()));
        }
        if let Some(word) = fetch_word {
            let shown = if matches!(word, "ok" | "skipped") { style.good(word) } else { style.bad(word) };
            row.push(format!("fetch {shown}"));
        }
        rows.push(row);
        entries.push(json!({
            "name": entry.name.as_str(),
            "decision": decision,
            "store": store,
            "policy": policy,
            "optional": entry.optional,
            "target": {"env": target.env, "fd": target.fd},
            "fetch": fetch_word,
            "reason": problem.map(ToString::to_string),
        }));
    }
    let outcome = if failures.is_empty() { Ok(()) } else { Err(Error::Secrets(failures)) };
    let exit_code = outcome.as_ref().err().map_or(0, Error::exit_code);
    let mut text = format!("config     {}\n", config.source);
    text.push_str(&format!("principal  {}\n", describe_principal(principal)));
    text.push_str(&table(&rows, "  "));
    let json = json!({
        "schema": "mxm-secrets/check/1",
        "ok": outcome.is_ok(),
        "exit_code": exit_code,
        "config": config.source,
        "principal": principal_json(principal),
        "fetched": fetch && !fetched.is_empty(),
        "secrets": entries,
    });
    Ok(Report { text, json, outcome })
}

/// `explain NAME`: the whole resolution trace for one name, identity and caller, with every
/// fact of the caller that a rule or the policy asked about.
pub fn explain(
    config: &Config,
    name: &str,
    identity: &RuntimeIdentity,
    caller: &Caller,
    style: Style,
) -> Report {
    let principal = derive_principal(&config.principals, identity, caller);
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut line = |key: &str, value: String| lines.push(vec![key.to_owned(), value]);
    line("secret", name.to_owned());
    line("identity", describe_identity(identity));
    line("caller", describe_caller(caller));
    line("principal", describe_principal(&principal));
    let mut facts: Vec<Fact> = Vec::new();
    if let Some(index) = principal.rule {
        line("rule", format!("principals[{index}]: {}", config.principals[index]));
        facts.extend(rule_facts(index, &config.principals[index], caller));
    }
    let judged = Name::new(name).ok().map(|n| {
        let result = resolve::judge(config, &n, &principal, identity, caller);
        (n, result)
    });
    let secret = config.refs.get(name);
    let mut ref_json = Value::Null;
    let mut store_json = Value::Null;
    let mut policy_json = Value::Null;
    if let Some(secret) = secret {
        line(
            "ref",
            format!(
                "store {}, path {}, policy {}, field {}, trim {}",
                secret.store,
                secret.path,
                secret.policy,
                secret.field.as_ref().map_or("(whole)".to_owned(), ToString::to_string),
                secret.trim
            ),
        );
        ref_json = json!({"store": secret.store.as_str(), "path": secret.path, "policy": secret.policy.as_str(),
            "field": secret.field.as_ref().map(ToString::to_string), "trim": secret.trim.as_config_word()});
        if let Some(store) = config.stores.get(secret.store.as_str()) {
            line(
                "store",
                format!(
                    "{}: backend {}, root {}, timeout {}s{}",
                    secret.store,
                    store.backend.name(),
                    store.root,
                    store.timeout.as_secs_f64(),
                    store.backend.program().map_or(String::new(), |p| format!(", program {p}"))
                ),
            );
            let location = store.locate(&secret.path).ok();
            if let Some(location) = &location {
                line("location", format!("{} {location}", store.backend.name()));
            }
            store_json = json!({"name": secret.store.as_str(), "backend": store.backend.name(), "root": store.root,
                "timeout_seconds": store.timeout.as_secs_f64(), "location": location});
        }
        if let Some(policy) = config.policies.get(secret.policy.as_str()) {
            let list = |l: &[String]| if l.is_empty() { "(none)".to_owned() } else { l.join(", ") };
            let principals: Vec<String> = policy.allowed_principals.iter().map(Name::to_string).collect();
            let accounts = |l: &[Account]| list(&l.iter().map(ToString::to_string).collect::<Vec<_>>());
            // The kernel's facts only when the policy asks about them: most policies do not.
            let mut facts_asked = String::new();
            for (key, shown) in [
                ("users", policy.users.as_deref().map(accounts)),
                ("groups", policy.groups.as_deref().map(accounts)),
                ("units", policy.units.as_deref().map(list)),
            ] {
                if let Some(shown) = shown {
                    facts_asked.push_str(&format!("; {key} {shown}"));
                }
            }
            line(
                "policy",
                format!(
                    "{}: principals {}; environments {}; machines {}{facts_asked}",
                    secret.policy,
                    list(&principals),
                    policy.environments.as_deref().map_or("any".to_owned(), list),
                    policy.machines.as_deref().map_or("any".to_owned(), list),
                ),
            );
            let ids = |l: &[Account]| l.iter().map(account_json).collect::<Vec<_>>();
            policy_json = json!({"name": secret.policy.as_str(), "allowed_principals": principals,
                "environments": policy.environments, "machines": policy.machines,
                "users": policy.users.as_deref().map(ids), "groups": policy.groups.as_deref().map(ids),
                "units": policy.units});
            facts.extend(policy_facts(policy, caller));
        }
    }
    for fact in &facts {
        let verdict = if fact.matched { style.good("matches") } else { style.bad("does not match") };
        line("fact", format!("{} {}: caller {} {verdict} {}", fact.by, fact.key, fact.caller, fact.wanted));
    }
    let (decision, reason, outcome) = match judged {
        Some((_, Ok(_))) => ("allowed", None, Ok(())),
        Some((n, Err(kind))) => {
            let reason = kind.to_string();
            (
                failure_word(&kind),
                Some(reason),
                Err(Error::Secrets(vec![SecretFailure { name: n.to_string(), kind }])),
            )
        }
        None => {
            let kind = FailureKind::Undefined {
                hint: format!(" {} (`{name}` is not even a valid name)", config.source),
            };
            (
                "undefined",
                Some(kind.to_string()),
                Err(Error::Secrets(vec![SecretFailure { name: name.to_owned(), kind }])),
            )
        }
    };
    let shown = match &reason {
        None => style.good(decision),
        Some(reason) => format!("{}: {reason}", style.bad(&decision.to_uppercase())),
    };
    line("decision", shown);
    let json = json!({
        "schema": "mxm-secrets/explain/1",
        "ok": outcome.is_ok(),
        "exit_code": outcome.as_ref().err().map_or(0, Error::exit_code),
        "config": config.source,
        "secret": name,
        "identity": identity_json(identity),
        "caller": caller_json(caller),
        "principal": principal_json(&principal),
        "facts": facts.iter().map(|f| json!({"by": f.by, "key": f.key, "caller": f.caller,
            "wanted": f.wanted, "matched": f.matched})).collect::<Vec<_>>(),
        "ref": ref_json,
        "store": store_json,
        "policy": policy_json,
        "decision": decision,
        "reason": reason,
    });
    Report { text: table(&lines, ""), json, outcome }
}

/// The `list` report's text and JSON (schema `mxm-secrets/list/1`) for `principal` and the
/// `[name, store, policy]` of each secret it may read; `source` and `where_from` name where
/// the answer came from (`config`, or `broker` for `list --broker`). One builder, so the
/// local and the broker's answers keep one shape.
pub(crate) fn list_report(
    principal: &Principal,
    readable: &[[&str; 3]],
    source: &str,
    where_from: Value,
) -> (String, Value) {
    let rows: Vec<Vec<String>> = readable
        .iter()
        .map(|[name, store, policy]| {
            vec![name.to_string(), format!("store {store}"), format!("policy {policy}")]
        })
        .collect();
    let text = format!("principal  {}\n{}", describe_principal(principal), table(&rows, "  "));
    let mut json = serde_json::Map::new();
    json.insert("schema".to_owned(), json!("mxm-secrets/list/1"));
    json.insert("ok".to_owned(), json!(true));
    json.insert("exit_code".to_owned(), json!(0));
    json.insert(source.to_owned(), where_from);
    json.insert("principal".to_owned(), principal_json(principal));
    json.insert(
        "secrets".to_owned(),
        readable
            .iter()
            .map(|[name, store, policy]| json!({"name": name, "store": store, "policy": policy}))
            .collect(),
    );
    (text, Value::Object(json))
}

/// `list`: every secret this identity may read, with its store and policy. When it may read
/// nothing, the answer says why, and which policies would allow this principal with another
/// environment or machine.
pub fn list(config: &Config, identity: &RuntimeIdentity, caller: &Caller) -> Report {
    let principal = derive_principal(&config.principals, identity, caller);
    let names: Vec<&Name> = config.refs.names().collect();
    let judged: Vec<Judged> = resolve::judge_all(config, &names, &principal, identity, caller);
    let readable: Vec<_> = judged.iter().filter_map(|(n, r)| r.as_ref().ok().map(|a| (n, a))).collect();
    let rows: Vec<[&str; 3]> = readable
        .iter()
        .map(|(n, a)| [n.as_str(), a.location.store.as_str(), a.secret.policy.as_str()])
        .collect();
    let (mut text, mut json) = list_report(&principal, &rows, "config", json!(config.source));
    if readable.is_empty() {
        let (why, elsewhere) = nothing_readable(config, &principal, identity, &judged);
        text.push_str(&format!("nothing    {why}\n"));
        if !elsewhere.is_empty() {
            text.push_str(
                "elsewhere  these policies allow the principal with another environment or machine:\n",
            );
            let rows: Vec<Vec<String>> = elsewhere
                .iter()
                .map(|e| {
                    vec![
                        format!("policy {}", e.policy),
                        format!(
                            "environments {}",
                            e.environments.as_deref().map_or("any".to_owned(), |l| l.join(", "))
                        ),
                        format!(
                            "machines {}",
                            e.machines.as_deref().map_or("any".to_owned(), |l| l.join(", "))
                        ),
                        format!("secrets {}", e.secrets.join(", ")),
                    ]
                })
                .collect();
            text.push_str(&table(&rows, "  "));
        }
        json["nothing_readable"] = json!({
            "reason": why,
            "elsewhere": elsewhere.iter().map(|e| json!({"policy": e.policy, "environments": e.environments,
                "machines": e.machines, "secrets": e.secrets})).collect::<Vec<_>>(),
        });
    }
    Report { text, json, outcome: Ok(()) }
}

/// A policy that allows the principal, but not with the identity's environment or machine.
struct Elsewhere {
    policy: String,
    environments: Option<Vec<String>>,
    machines: Option<Vec<String>>,
    secrets: Vec<String>,
}

/// Why `list` found nothing: the principal, and the policies that would allow it elsewhere.
fn nothing_readable(
    config: &Config,
    principal: &Principal,
    identity: &RuntimeIdentity,
    judged: &[Judged],
) -> (String, Vec<Elsewhere>) {
    let mut elsewhere: Vec<Elsewhere> = Vec::new();
    // Secrets whose policy allows the principal but not this caller (its user, groups, unit).
    let mut by_facts: Vec<&Name> = Vec::new();
    for (name, result) in judged {
        let Err(FailureKind::Denied { policy, reason, .. }) = result else { continue };
        match reason {
            DenyReason::EnvironmentNotAllowed { .. } | DenyReason::MachineNotAllowed { .. } => {}
            DenyReason::UserNotAllowed { .. }
            | DenyReason::GroupNotAllowed { .. }
            | DenyReason::UnitNotAllowed { .. } => {
                by_facts.push(name);
                continue;
            }
            _ => continue,
        }
        let Some(rules) = config.policies.get(policy.as_str()) else { continue };
        match elsewhere.iter_mut().find(|e| e.policy == policy.as_str()) {
            Some(e) => e.secrets.push(name.to_string()),
            None => elsewhere.push(Elsewhere {
                policy: policy.to_string(),
                environments: rules.environments.clone(),
                machines: rules.machines.clone(),
                secrets: vec![name.to_string()],
            }),
        }
    }
    let declared = |what: &str, value: Option<&str>| match value {
        Some(value) => format!("{what} `{value}`"),
        None => format!("no {what}"),
    };
    let why = if config.refs.names().next().is_none() {
        "the config defines no secrets".to_owned()
    } else if !by_facts.is_empty() && elsewhere.is_empty() {
        let names: Vec<&str> = by_facts.iter().map(|n| n.as_str()).collect();
        format!(
            "policies allow principal `{}`, but not this caller (its user, groups or unit) for {}; \
             `mxm-secrets explain NAME` shows which fact decided",
            principal.name,
            names.join(", ")
        )
    } else if elsewhere.is_empty() {
        format!("no policy allows principal `{}`", principal.name)
    } else {
        format!(
            "no policy allows principal `{}` with {} and {}",
            principal.name,
            declared("environment", identity.environment.as_deref()),
            declared("machine", identity.machine.as_deref())
        )
    };
    (why, elsewhere)
}

pub(crate) fn describe_principal(principal: &Principal) -> String {
    match principal.rule {
        Some(index) => format!("{} (from principals[{index}] of the config)", principal.name),
        None => format!("{} (the role)", principal.name),
    }
}

pub(crate) fn principal_json(principal: &Principal) -> Value {
    json!({"name": principal.name.as_str(), "rule": principal.rule})
}

/// A fact of the caller that a rule or a policy asked about, and whether it matched.
struct Fact {
    /// `policy` or `principals[N]`.
    by: String,
    /// The config key: `users`, `groups`, `units`, `user`, `group`, `unit`.
    key: &'static str,
    /// The caller's fact, in words: `uid 1001`, `groups 1001, 10`, `unit feed.service`.
    caller: String,
    /// What the config asks for, in words.
    wanted: String,
    matched: bool,
}

/// The facts a matching rule asked about (all matched, or the rule would not have).
fn rule_facts(index: usize, rule: &PrincipalRule, caller: &Caller) -> Vec<Fact> {
    let by = format!("principals[{index}]");
    let mut facts = Vec::new();
    if let Some(user) = &rule.user {
        facts.push(user_fact(by.clone(), "user", std::slice::from_ref(user), caller));
    }
    if let Some(group) = &rule.group {
        facts.push(group_fact(by.clone(), "group", std::slice::from_ref(group), caller));
    }
    if let Some(unit) = &rule.unit {
        facts.push(unit_fact(by, "unit", std::slice::from_ref(unit), caller));
    }
    facts
}

/// The facts a policy asks about: its `users`, `groups`, `units`, when given.
fn policy_facts(policy: &SecretPolicy, caller: &Caller) -> Vec<Fact> {
    let by = || "policy".to_owned();
    let mut facts = Vec::new();
    if let Some(users) = &policy.users {
        facts.push(user_fact(by(), "users", users, caller));
    }
    if let Some(groups) = &policy.groups {
        facts.push(group_fact(by(), "groups", groups, caller));
    }
    if let Some(units) = &policy.units {
        facts.push(unit_fact(by(), "units", units, caller));
    }
    facts
}

fn one_of<T: ToString>(items: &[T]) -> String {
    match items {
        [one] => one.to_string(),
        [] => "one of nothing (the list is empty)".to_owned(),
        _ => format!("one of {}", items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

fn user_fact(by: String, key: &'static str, users: &[Account], caller: &Caller) -> Fact {
    let matched = users.iter().any(|u| u.id == caller.uid);
    Fact { by, key, caller: describe_uid(caller.uid), wanted: one_of(users), matched }
}

fn group_fact(by: String, key: &'static str, groups: &[Account], caller: &Caller) -> Fact {
    let matched = groups.iter().any(|g| caller.in_group(g.id));
    Fact { by, key, caller: format!("groups {}", caller_groups(caller)), wanted: one_of(groups), matched }
}

fn unit_fact(by: String, key: &'static str, units: &[String], caller: &Caller) -> Fact {
    let matched = caller.unit.as_ref().is_some_and(|u| units.contains(u));
    let shown = caller.unit.as_ref().map_or("in no systemd unit".to_owned(), |u| format!("unit {u}"));
    Fact { by, key, caller: shown, wanted: one_of(units), matched }
}

/// The primary group first, then the supplementary ones, each once.
fn caller_groups(caller: &Caller) -> String {
    let mut all = vec![caller.gid];
    all.extend(caller.groups.iter().filter(|g| **g != caller.gid));
    all.iter().map(|g| describe_gid(*g)).collect::<Vec<_>>().join(", ")
}

fn describe_caller(caller: &Caller) -> String {
    let unit = caller.unit.as_ref().map_or("no systemd unit".to_owned(), |u| format!("unit {u}"));
    format!("{}; groups {}; {unit}", describe_uid(caller.uid), caller_groups(caller))
}

fn caller_json(caller: &Caller) -> Value {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(caller.uid)).ok().flatten();
    json!({"uid": caller.uid, "user": user.map(|u| u.name), "gid": caller.gid, "groups": caller.groups,
        "unit": caller.unit})
}

fn account_json(account: &Account) -> Value {
    json!({"id": account.id, "name": account.name})
}

fn describe_identity(identity: &RuntimeIdentity) -> String {
    let mut parts = vec![format!("role={}", identity.role)];
    for (key, value) in identity_fields(identity) {
        if let Some(value) = value {
            parts.push(format!("{key}={value}"));
        }
    }
    parts.join(" ")
}

fn identity_fields(identity: &RuntimeIdentity) -> [(&'static str, Option<&str>); 4] {
    [
        ("environment", identity.environment.as_deref()),
        ("machine", identity.machine.as_deref()),
        ("app", identity.app.as_deref()),
        ("substrate", identity.substrate.as_deref()),
    ]
}

fn identity_json(identity: &RuntimeIdentity) -> Value {
    let mut object = json!({"role": identity.role.as_str()});
    for (key, value) in identity_fields(identity) {
        object[key] = json!(value);
    }
    object
}

/// Rows as aligned columns (widths ignore colour codes), each line prefixed by `indent`.
pub(crate) fn table(rows: &[Vec<String>], indent: &str) -> String {
    let visible = |s: &str| {
        let mut width = 0;
        let mut in_escape = false;
        for c in s.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, _) => width += 1,
                _ => {}
            }
        }
        width
    };
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| visible(s)).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - visible(cell) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
