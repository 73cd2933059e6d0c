//! [`SecretsApi`]: the one pipeline, for the launcher's commands and for Rust programs, as
//! the reference's `SecretsApi`. Every path from names to values goes through it:
//!
//! ```text
//! SecretsApi::judge(Request)  principal -> judge every name -> audit every decision
//! Judgement::allowed          all allowed, or an error naming every undefined or denied one
//! Allowed::fetch              fetch (concurrently, bounded) -> audit every outcome -> values
//! ```
//!
//! [`SecretsApi::resolve`] is the three at once (`get`); `run` does what an exec needs
//! between the last two (look the program up, harden), `check` reports the [`Judgement`]
//! and with `--fetch` asks [`Judgement::outcomes`]. A supervisor or a broker builds a
//! [`Request`] per launch or per connection, with its own [`Caller`].
//!
//! ```no_run
//! use mxm_secrets::{RuntimeIdentity, SecretsApi};
//! let api = SecretsApi::from_config_data(&std::fs::read_to_string("secrets.yaml")?)?;
//! let identity = RuntimeIdentity::new("marketdata")?;
//! let key = api.get_secret("databento_api_key", &identity)?;
//! assert!(!key.expose().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Borrow;
use std::path::Path;

use crate::audit::Audit;
use crate::config::Config;
use crate::error::{Error, FailureKind, SecretFailure};
use crate::identity::{Caller, Principal, RuntimeIdentity, derive_principal};
use crate::manifest::Manifest;
use crate::name::Name;
use crate::resolve::{self, Authorized, Fetched, Judged};
use crate::secret::SecretValue;

#[derive(Debug, Clone)]
pub struct SecretsApi {
    config: Config,
    audit: Audit,
}

/// One request: the names, who declares to ask ([`RuntimeIdentity`]) and what the kernel
/// says about the asker ([`Caller`]).
#[derive(Debug, Clone, Copy)]
pub struct Request<'r> {
    pub names: &'r [&'r Name],
    pub identity: &'r RuntimeIdentity,
    pub caller: &'r Caller,
    /// The manifest the names come from, if any: an undefined name cites where it was
    /// requested, and a name every entry of which is `optional` may be missing.
    pub manifest: Option<&'r Manifest>,
    /// At most this many fetches at once for this request (within the process's bound).
    pub jobs: usize,
}

/// Every name judged and audited; nothing fetched yet.
#[derive(Debug)]
pub struct Judgement<'c> {
    pub principal: Principal,
    pub judged: Vec<Judged<'c>>,
    fetcher: Fetcher<'c>,
}

/// Every name allowed; ready to fetch.
#[derive(Debug)]
pub struct Allowed<'c> {
    pub principal: Principal,
    pub authorized: Vec<Authorized<'c>>,
    fetcher: Fetcher<'c>,
}

/// What fetching needs beyond the authorized names: the config (for the backends'
/// environment), the request's audit, its optional names and bound.
#[derive(Debug)]
struct Fetcher<'c> {
    config: &'c Config,
    audit: Audit,
    optional: Vec<Name>,
    jobs: usize,
}

/// The values of a request, in the order of its names (optional missing ones left out).
#[derive(Debug)]
pub struct Resolved {
    pub principal: Principal,
    pub values: Vec<(Name, SecretValue)>,
}

impl SecretsApi {
    /// From config text (YAML, or JSON, which is YAML), either shape of the reference.
    pub fn from_config_data(text: &str) -> Result<SecretsApi, Error> {
        Ok(SecretsApi::from_config(Config::parse(text, "<config data>")?))
    }

    /// From a config file, with the same ownership and permission checks as the launcher.
    pub fn from_config_file(path: &Path) -> Result<SecretsApi, Error> {
        Ok(SecretsApi::from_config(Config::load(path)?))
    }

    pub fn from_config(config: Config) -> SecretsApi {
        SecretsApi { config, audit: Audit::quiet() }
    }

    /// Audit records on stderr for every decision and fetch (quiet by default).
    pub fn with_audit(self, audit: Audit) -> SecretsApi {
        SecretsApi { audit, ..self }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One secret for `identity`, asked by this process: authorized before its backend is
    /// asked, then fetched.
    pub fn get_secret(&self, name: &str, identity: &RuntimeIdentity) -> Result<SecretValue, Error> {
        let name = Name::new(name).map_err(|_| {
            Error::Secrets(vec![SecretFailure {
                name: name.escape_debug().to_string(),
                kind: resolve::undefined(&self.config, name),
            }])
        })?;
        let caller = Caller::local();
        let request = Request { names: &[&name], identity, caller: &caller, manifest: None, jobs: 1 };
        let mut resolved = self.resolve(&request)?;
        Ok(resolved.values.remove(0).1)
    }

    /// The whole pipeline: judge, audit, all allowed, fetch.
    pub fn resolve(&self, request: &Request) -> Result<Resolved, Error> {
        self.judge(request).allowed()?.fetch()
    }

    /// The principal, every name judged (calling no backend) and each decision audited.
    pub fn judge(&self, request: &Request) -> Judgement<'_> {
        let principal = derive_principal(&self.config.principals, request.identity, request.caller);
        let mut judged =
            resolve::judge_all(&self.config, request.names, &principal, request.identity, request.caller);
        let audit = self.audit.clone().caller(request.caller);
        let optional = match request.manifest {
            Some(manifest) => {
                cite_undefined(manifest, &mut judged);
                request
                    .names
                    .iter()
                    .filter(|name| manifest.entries.iter().filter(|e| e.name == ***name).all(|e| e.optional))
                    .map(|name| (*name).clone())
                    .collect()
            }
            None => Vec::new(),
        };
        audit.decisions(&principal, &judged);
        let fetcher = Fetcher { config: &self.config, audit, optional, jobs: request.jobs };
        Judgement { principal, judged, fetcher }
    }
}

impl<'c> Judgement<'c> {
    /// All of them authorized, or an error listing every name that is undefined or denied.
    pub fn allowed(self) -> Result<Allowed<'c>, Error> {
        let authorized = resolve::all_allowed(self.judged)?;
        Ok(Allowed { principal: self.principal, authorized, fetcher: self.fetcher })
    }

    /// Fetches every allowed name (denied ones are not asked) and audits each outcome; for
    /// diagnostics, which report each one rather than stop at the first failure.
    pub fn outcomes(&self) -> Vec<(Name, Fetched)> {
        let authorized: Vec<&Authorized> = self.judged.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
        self.fetcher.outcomes(&self.principal, &authorized)
    }
}

impl Allowed<'_> {
    /// The values of every authorized secret, or an error listing every one that failed.
    pub fn fetch(self) -> Result<Resolved, Error> {
        let mut values = Vec::with_capacity(self.authorized.len());
        let mut failures = Vec::new();
        for (name, outcome) in self.fetcher.outcomes(&self.principal, &self.authorized) {
            match outcome {
                Fetched::Value(value) => values.push((name, value)),
                Fetched::Skipped => {}
                Fetched::Failed(kind) => failures.push(SecretFailure { name: name.to_string(), kind }),
            }
        }
        if failures.is_empty() {
            Ok(Resolved { principal: self.principal, values })
        } else {
            Err(Error::Secrets(failures))
        }
    }
}

impl Fetcher<'_> {
    /// Fetches (concurrently, see [`resolve::fetch_all`]) and audits each outcome. Backend
    /// programs get the launcher's environment less what the config withholds.
    fn outcomes<'c, A: Borrow<Authorized<'c>> + Sync>(
        &self,
        principal: &Principal,
        authorized: &[A],
    ) -> Vec<(Name, Fetched)> {
        let environment = crate::inject::backend_environment(self.config, std::env::vars_os());
        let results = resolve::fetch_all(authorized, &environment, self.jobs);
        authorized
            .iter()
            .map(Borrow::borrow)
            .zip(results)
            .map(|(request, result)| {
                let name = &request.location.secret;
                let outcome = match result {
                    Ok(value) => Fetched::Value(value),
                    Err(FailureKind::NotFound { .. }) if self.optional.contains(name) => Fetched::Skipped,
                    Err(kind) => Fetched::Failed(kind),
                };
                let failure = match &outcome {
                    Fetched::Failed(kind) => Err(kind),
                    _ => Ok(()),
                };
                self.audit.fetched(principal, request, failure, matches!(outcome, Fetched::Skipped));
                (name.clone(), outcome)
            })
            .collect()
    }
}

/// Adds to each undefined name's failure where the manifest (or `--secret`) asks for it,
/// so the line to fix is named as config errors name theirs.
fn cite_undefined(manifest: &Manifest, judged: &mut [Judged]) {
    for (name, result) in judged.iter_mut() {
        let Err(FailureKind::Undefined { hint }) = result else { continue };
        for entry in manifest.entries.iter().filter(|e| e.name == *name) {
            let by = if entry.origin.source.starts_with("--secret") { "" } else { "manifest " };
            hint.push_str(&format!("; requested at {by}{}", entry.origin));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
stores:
  mem: {backend: memory, root: m, values: {a: alpha}, failures: {broken: failed}}
refs:
  present: {store: mem, path: a, policy: p}
  absent: {store: mem, path: nothing, policy: p}
  broken: {store: mem, path: broken, policy: p}
policies:
  p: {allowed_principals: [worker]}
";

    /// A secret missing from its store is skipped when every manifest entry for it is
    /// optional, and fails otherwise; any other failure fails even an optional secret.
    #[test]
    fn only_a_missing_optional_secret_is_skipped() {
        let api = SecretsApi::from_config(Config::parse(CONFIG, "c.yaml").unwrap());
        let identity = RuntimeIdentity::new("worker").unwrap();
        let caller = Caller::local();
        let outcomes = |manifest: &str| -> Vec<String> {
            let manifest = Manifest::parse(manifest, "m.yaml").unwrap();
            let names = manifest.names();
            let request = Request {
                names: &names,
                identity: &identity,
                caller: &caller,
                manifest: Some(&manifest),
                jobs: 2,
            };
            api.judge(&request)
                .outcomes()
                .into_iter()
                .map(|(name, outcome)| match outcome {
                    Fetched::Value(value) => format!("{name}={}", String::from_utf8_lossy(value.expose())),
                    Fetched::Skipped => format!("{name} skipped"),
                    Fetched::Failed(kind) => format!("{name} {}", kind.exit_code()),
                })
                .collect()
        };
        let optional = "secrets:\n  - {name: present, optional: true}\n  - {name: absent, optional: true}\n  - {name: broken, optional: true}\n";
        // `Manifest::names` gives each name once, sorted.
        assert_eq!(outcomes(optional), ["absent skipped", "broken 69", "present=alpha"]);
        let required = "secrets:\n  - {name: absent}\n  - {name: present}\n";
        assert_eq!(outcomes(required), ["absent 66", "present=alpha"]);
        // Optional in one entry and required in another: required.
        let both = "secrets:\n  - {name: absent, optional: true}\n  - {name: absent, env: AGAIN}\n";
        assert_eq!(outcomes(both), ["absent 66"]);
    }
}
