//! `mxm-secrets run`, top to bottom: load config -> load manifest -> identity -> authorize
//! all -> harden -> fetch all -> build plan -> exec. Whoever reads [`run`] knows where every
//! other module fits.

use std::convert::Infallible;
use std::ffi::OsString;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, FailureKind, Origin, SecretFailure};
use crate::exec;
use crate::identity::{Principal, RuntimeIdentity, derive_principal};
use crate::inject::{self, Inherit};
use crate::manifest::{DEFAULT_MANIFEST, Manifest, ManifestEntry};
use crate::name::Name;
use crate::resolve;
use crate::secret::SecretValue;

#[derive(Debug, Clone)]
pub struct RunRequest {
    /// `--config`; when `None`, the discovery order of [`Config::discover`].
    pub config: Option<PathBuf>,
    /// `--manifest`; when `None`, `./mxm-secrets.yaml` unless `--secret` was given.
    pub manifest: Option<PathBuf>,
    /// `--secret NAME[=ENV]`, in order.
    pub secrets: Vec<String>,
    pub identity: RuntimeIdentity,
    /// `--clean-env` and `--keep`.
    pub inherit: Inherit,
    /// The program and its arguments.
    pub command: Vec<OsString>,
}

/// Runs the pipeline and execs the program; returns only with the reason it could not.
pub fn run(request: RunRequest) -> Result<Infallible, Error> {
    let (config, manifest, principal) = prepare(&request)?;
    let authorized = resolve::authorize(&config, &manifest.names(), &principal, &request.identity)?;
    let hardened = exec::harden()?;
    let values = fetch_required(&manifest, &authorized)?;
    let plan =
        inject::plan(&config, &manifest, std::env::vars_os(), &request.inherit, &values, request.command)?;
    drop(values);
    exec::exec(plan, hardened)
}

/// What `--dry-run` shows, and how the run would end.
#[derive(Debug)]
pub struct DryRun {
    /// The plan: principal, every name with its decision and target. Never a value.
    pub report: String,
    /// `Err` with the error `run` would stop with before fetching, if any.
    pub outcome: Result<(), Error>,
}

/// `run --dry-run`: everything up to the first backend call, then a report instead.
pub fn dry_run(request: &RunRequest) -> Result<DryRun, Error> {
    let (config, manifest, principal) = prepare(request)?;
    let targets = inject::targets(&manifest, inject::is_open)?;
    let mut report = String::new();
    let by = match principal.rule {
        Some(index) => format!("principals[{index}] of the config"),
        None => "the role".to_owned(),
    };
    let _ = writeln!(report, "principal: {} (from {by})", principal.name);
    let command: Vec<String> = request.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let _ = writeln!(report, "command: {}", command.join(" "));
    let width = manifest.entries.iter().map(|e| e.name.as_str().len()).max().unwrap_or(0);
    let mut failures = Vec::new();
    for (entry, target) in manifest.entries.iter().zip(&targets) {
        let decision = match resolve::judge(&config, &entry.name, &principal, &request.identity) {
            Ok(authorized) => format!("allowed  store {}", authorized.location.store),
            Err(kind) => {
                let word = if matches!(kind, FailureKind::Denied { .. }) { "DENIED" } else { "UNDEFINED" };
                if !failures.iter().any(|f: &SecretFailure| f.name == entry.name.as_str()) {
                    failures.push(SecretFailure { name: entry.name.to_string(), kind });
                }
                word.to_owned()
            }
        };
        let mut into = Vec::new();
        if let Some(fd) = target.fd {
            into.push(format!("fd {fd}"));
        }
        match (&target.env, target.fd) {
            (Some(env), Some(fd)) => into.push(format!("env {env}=/dev/fd/{fd}")),
            (Some(env), None) => into.push(format!("env {env}")),
            (None, _) => {}
        }
        let optional = if entry.optional { " (optional)" } else { "" };
        let _ = writeln!(
            report,
            "  {:width$}  -> {}{optional}  {decision}",
            entry.name.as_str(),
            into.join(", ")
        );
    }
    let outcome = if failures.is_empty() { Ok(()) } else { Err(Error::Secrets(failures)) };
    Ok(DryRun { report, outcome })
}

/// The shared first steps: config, manifest, principal.
fn prepare(request: &RunRequest) -> Result<(Config, Manifest, Principal), Error> {
    if request.command.is_empty() {
        return Err(Error::Usage("no command to run; give it after `--`".to_owned()));
    }
    let config = Config::load(&Config::discover(request.config.as_deref())?)?;
    let manifest = load_manifest(request.manifest.as_deref(), &request.secrets)?;
    let principal = derive_principal(&config.principals, &request.identity);
    Ok((config, manifest, principal))
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

/// Fetches every authorized secret. A secret missing from its store is skipped when every
/// manifest entry for it is optional; any other failure fails the run, and the error lists
/// every failed secret.
fn fetch_required(
    manifest: &Manifest,
    authorized: &[resolve::Authorized],
) -> Result<Vec<(Name, SecretValue)>, Error> {
    let results = resolve::fetch_all(authorized);
    let mut values = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    for (request, result) in authorized.iter().zip(results) {
        let name = &request.location.secret;
        match result {
            Ok(value) => values.push((name.clone(), value)),
            Err(FailureKind::NotFound { .. })
                if manifest.entries.iter().filter(|e| e.name == *name).all(|e| e.optional) => {}
            Err(kind) => failures.push(SecretFailure { name: name.to_string(), kind }),
        }
    }
    if failures.is_empty() { Ok(values) } else { Err(Error::Secrets(failures)) }
}
