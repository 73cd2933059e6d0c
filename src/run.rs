//! `mxm-secrets run`, top to bottom: load config -> load manifest -> identity -> authorize
//! all -> harden -> fetch all -> build plan -> exec. Whoever reads [`run`] knows where every
//! other module fits.

use std::convert::Infallible;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::audit::Audit;
use crate::config::Config;
use crate::error::{Error, FailureKind, Origin, SecretFailure};
use crate::exec;
use crate::identity::{Principal, RuntimeIdentity, derive_principal};
use crate::inject::{self, Inherit};
use crate::manifest::{DEFAULT_MANIFEST, Manifest, ManifestEntry};
use crate::name::Name;
use crate::resolve;
use crate::secret::SecretValue;

/// What every command that reads a manifest starts from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `--config`; when `None`, the discovery order of [`Config::discover`].
    pub config: Option<PathBuf>,
    /// `--manifest`; when `None`, `./mxm-secrets.yaml` unless `--secret` was given.
    pub manifest: Option<PathBuf>,
    /// `--secret NAME[=ENV]`, in order.
    pub secrets: Vec<String>,
    pub identity: RuntimeIdentity,
}

/// The loaded config and manifest, and the principal the identity speaks as.
#[derive(Debug)]
pub struct Prepared {
    pub config: Config,
    pub manifest: Manifest,
    pub principal: Principal,
}

impl Inputs {
    /// The shared first steps: config, manifest, principal.
    pub fn prepare(&self) -> Result<Prepared, Error> {
        let config = Config::load(&Config::discover(self.config.as_deref())?)?;
        let manifest = load_manifest(self.manifest.as_deref(), &self.secrets)?;
        let principal = derive_principal(&config.principals, &self.identity);
        Ok(Prepared { config, manifest, principal })
    }
}

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub inputs: Inputs,
    /// `--clean-env` and `--keep`.
    pub inherit: Inherit,
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// Audit records on stderr (`-v`, `--log-format`).
    pub audit: Audit,
}

/// Runs the pipeline and execs the program; returns only with the reason it could not.
pub fn run(request: RunRequest) -> Result<Infallible, Error> {
    if request.command.is_empty() {
        return Err(Error::Usage("no command to run; give it after `--`".to_owned()));
    }
    let Prepared { config, manifest, principal } = request.inputs.prepare()?;
    // Descriptors the program could not hold (beyond `ulimit -n`) are refused before any
    // backend is asked; `inject::plan` places them after.
    inject::targets(&manifest, inject::is_open)?;
    let mut judged = resolve::judge_all(&config, &manifest.names(), &principal, &request.inputs.identity);
    manifest.cite_undefined(&mut judged);
    request.audit.decisions(&principal, &judged);
    let authorized = resolve::all_allowed(judged)?;
    let hardened = exec::harden()?;
    let values = fetch_required(&config, &manifest, &authorized, &principal, &request.audit)?;
    let plan =
        inject::plan(&config, &manifest, std::env::vars_os(), &request.inherit, &values, request.command)?;
    drop(values);
    exec::exec(plan, hardened)
}

/// The manifest file (given, or the default one unless `--secret` stands in for it) plus
/// every `--secret`.
pub fn load_manifest(path: Option<&Path>, secrets: &[String]) -> Result<Manifest, Error> {
    let mut manifest = match (path, secrets.is_empty()) {
        (Some(path), _) => Manifest::load(path)?,
        (None, true) => Manifest::load(Path::new(DEFAULT_MANIFEST))?,
        (None, false) => Manifest::default(),
    };
    for secret in secrets {
        manifest.push(ManifestEntry::from_arg(secret)?)?;
    }
    if manifest.entries.is_empty() {
        return Err(Error::manifest(
            Origin::file(path.map_or("--secret".to_owned(), |p| p.display().to_string())),
            "requests no secrets; a launcher with nothing to inject is a mistake",
        ));
    }
    Ok(manifest)
}

/// How one fetch ended, once the manifest's `optional` is applied.
pub enum Fetched {
    Value(SecretValue),
    /// Missing from its store, and every manifest entry for it is optional.
    Skipped,
    Failed(FailureKind),
}

/// Fetches every authorized secret (concurrently, see [`resolve::fetch_all`]) and audits
/// each outcome. Backend programs get the launcher's environment less what `config` withholds.
pub fn fetch_outcomes<'c, A: std::borrow::Borrow<resolve::Authorized<'c>> + Sync>(
    config: &Config,
    manifest: &Manifest,
    authorized: &[A],
    principal: &Principal,
    audit: &Audit,
) -> Vec<(Name, Fetched)> {
    let environment = inject::backend_environment(config, std::env::vars_os());
    let results = resolve::fetch_all(authorized, &environment);
    authorized
        .iter()
        .map(std::borrow::Borrow::borrow)
        .zip(results)
        .map(|(request, result)| {
            let name = &request.location.secret;
            let optional = manifest.entries.iter().filter(|e| e.name == *name).all(|e| e.optional);
            let outcome = match result {
                Ok(value) => Fetched::Value(value),
                Err(FailureKind::NotFound { .. }) if optional => Fetched::Skipped,
                Err(kind) => Fetched::Failed(kind),
            };
            let failure = match &outcome {
                Fetched::Failed(kind) => Err(kind),
                _ => Ok(()),
            };
            audit.fetched(principal, request, failure, matches!(outcome, Fetched::Skipped));
            (name.clone(), outcome)
        })
        .collect()
}

/// The values of every authorized secret, or an error listing every one that failed.
pub fn fetch_required(
    config: &Config,
    manifest: &Manifest,
    authorized: &[resolve::Authorized],
    principal: &Principal,
    audit: &Audit,
) -> Result<Vec<(Name, SecretValue)>, Error> {
    let mut values = Vec::with_capacity(authorized.len());
    let mut failures = Vec::new();
    for (name, outcome) in fetch_outcomes(config, manifest, authorized, principal, audit) {
        match outcome {
            Fetched::Value(value) => values.push((name, value)),
            Fetched::Skipped => {}
            Fetched::Failed(kind) => failures.push(SecretFailure { name: name.to_string(), kind }),
        }
    }
    if failures.is_empty() { Ok(values) } else { Err(Error::Secrets(failures)) }
}
