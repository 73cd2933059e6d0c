//! `mxm-secrets run`, top to bottom: load config -> load manifest -> identity -> authorize
//! all -> harden -> fetch all -> build plan -> exec. Whoever reads [`run`] knows where every
//! other module fits.

use std::convert::Infallible;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
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
    /// `--jobs`: at most this many fetches at once (at least 1).
    pub jobs: usize,
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
    find_program(&config, &request.inherit, &request.command[0])?;
    let hardened = exec::harden()?;
    let values =
        fetch_required(&config, &manifest, &authorized, &principal, &request.audit, request.inputs.jobs)?;
    let plan =
        inject::plan(&config, &manifest, std::env::vars_os(), &request.inherit, &values, request.command)?;
    drop(values);
    exec::exec(plan, hardened)
}

/// Where `program` will be found when it is exec'd: looked up as `execvp` will, on the PATH
/// the program inherits (none with `--clean-env` unless kept: then libc's default), before
/// any store is touched, so that a typo is 127 (or 126) with no secret fetched.
pub fn find_program(config: &Config, inherit: &Inherit, program: &OsStr) -> Result<PathBuf, Error> {
    let inherited = !inherit.clean || inherit.keep.iter().any(|k| k == "PATH");
    let path =
        std::env::var_os("PATH").filter(|_| inherited && !inject::source_variables(config).contains("PATH"));
    lookup(program, path.as_deref())
}

/// glibc's `execvp` search: a name with a `/` is itself; otherwise each PATH entry in turn
/// (empty means the current directory), the first executable file wins, and a file found but
/// not executable makes the answer "cannot execute" rather than "not found".
pub(crate) fn lookup(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Error> {
    use nix::unistd::{AccessFlags, access};
    let failed = |kind: std::io::ErrorKind| Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source: std::io::Error::from(kind),
    };
    let executable = |candidate: &Path| {
        let meta = std::fs::metadata(candidate).ok()?;
        Some(meta.is_file() && access(candidate, AccessFlags::X_OK).is_ok())
    };
    if program.is_empty() {
        return Err(failed(std::io::ErrorKind::NotFound));
    }
    if program.as_bytes().contains(&b'/') {
        let candidate = PathBuf::from(program);
        return match executable(&candidate) {
            Some(true) => Ok(candidate),
            Some(false) => Err(failed(std::io::ErrorKind::PermissionDenied)),
            None => Err(failed(std::io::ErrorKind::NotFound)),
        };
    }
    let mut denied = false;
    let search = path.map_or_else(|| OsStr::new(DEFAULT_PATH).to_owned(), OsStr::to_owned);
    for directory in search.as_bytes().split(|&b| b == b':') {
        let directory =
            if directory.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(directory)) };
        let candidate = directory.join(program);
        match executable(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) => denied = true,
            None => {}
        }
    }
    Err(failed(if denied { std::io::ErrorKind::PermissionDenied } else { std::io::ErrorKind::NotFound }))
}

/// What glibc's `execvp` searches when the environment has no PATH.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

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
    jobs: usize,
) -> Vec<(Name, Fetched)> {
    let environment = inject::backend_environment(config, std::env::vars_os());
    let results = resolve::fetch_all(authorized, &environment, jobs);
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
    jobs: usize,
) -> Result<Vec<(Name, SecretValue)>, Error> {
    let mut values = Vec::with_capacity(authorized.len());
    let mut failures = Vec::new();
    for (name, outcome) in fetch_outcomes(config, manifest, authorized, principal, audit, jobs) {
        match outcome {
            Fetched::Value(value) => values.push((name, value)),
            Fetched::Skipped => {}
            Fetched::Failed(kind) => failures.push(SecretFailure { name: name.to_string(), kind }),
        }
    }
    if failures.is_empty() { Ok(values) } else { Err(Error::Secrets(failures)) }
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
        let config = Config::parse(CONFIG, "c.yaml").unwrap();
        let identity = RuntimeIdentity::new("worker").unwrap();
        let principal = derive_principal(&config.principals, &identity);
        let outcomes = |manifest: &str| -> Vec<String> {
            let manifest = Manifest::parse(manifest, "m.yaml").unwrap();
            let names = manifest.names();
            let judged = resolve::judge_all(&config, &names, &principal, &identity);
            let authorized = resolve::all_allowed(judged).unwrap();
            fetch_outcomes(&config, &manifest, &authorized, &principal, &Audit::quiet(), 2)
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
