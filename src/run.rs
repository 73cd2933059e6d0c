//! `mxm-secrets run`, top to bottom: load config -> load manifest -> identity -> authorize
//! all -> harden -> fetch all -> build plan -> exec. Whoever reads this function knows where
//! every other module fits.

use std::convert::Infallible;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, FailureKind, SecretFailure};
use crate::exec;
use crate::identity::{RuntimeIdentity, derive_principal};
use crate::inject;
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
    /// The program and its arguments.
    pub command: Vec<OsString>,
}

/// Runs the pipeline and execs the program; returns only with the reason it could not.
pub fn run(request: RunRequest) -> Result<Infallible, Error> {
    if request.command.is_empty() {
        return Err(Error::Usage(
            "no command to run; give it after `--`".to_owned(),
        ));
    }
    let config = Config::load(&Config::discover(request.config.as_deref())?)?;
    let manifest = load_manifest(request.manifest.as_deref(), &request.secrets)?;
    let principal = derive_principal(&config.principals, &request.identity);
    let names = manifest.names();
    let authorized = resolve::authorize(&config, &names, &principal, &request.identity)?;
    let hardened = exec::harden()?;
    let values = fetch_required(&manifest, &authorized)?;
    let plan = inject::plan(
        &config,
        &manifest,
        std::env::vars_os(),
        &values,
        request.command,
    )?;
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
            crate::error::Origin::file(
                path.map_or("--secret".to_owned(), |p| p.display().to_string()),
            ),
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
                if manifest
                    .entries
                    .iter()
                    .filter(|e| e.name == *name)
                    .all(|e| e.optional) => {}
            Err(kind) => failures.push(SecretFailure {
                name: name.to_string(),
                kind,
            }),
        }
    }
    if failures.is_empty() {
        Ok(values)
    } else {
        Err(Error::Secrets(failures))
    }
}
