//! `mxm-secrets run`, top to bottom: load config and manifest -> judge all (the pipeline of
//! [`SecretsApi`](crate::SecretsApi)) -> look the program up -> harden -> fetch all -> build
//! plan -> exec (or, the last step only, supervise: [`crate::supervise`]). With `--broker`
//! the values come from a broker instead (manifest only, no config). Whoever reads [`run`]
//! knows where every other module fits; this module owns only what is particular to exec.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::audit::Audit;
use crate::config::Config;
use crate::error::Error;
use crate::exec;
use crate::inject::{self, Inherit};
use crate::inputs::Inputs;
use crate::manifest::Manifest;
use crate::supervise::{self, Values};

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub inputs: Inputs,
    /// `--clean-env` and `--keep`.
    pub inherit: Inherit,
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// Audit records on stderr (`-v`, `--log-format`).
    pub audit: Audit,
    /// `--broker PATH`: the values come from a broker, and no config is read.
    pub broker: Option<PathBuf>,
    /// Stay as the program's parent (`--supervise`, or PID 1) instead of exec.
    pub supervise: Option<supervise::Options>,
}

/// Runs the pipeline and execs the program, returning only with the reason it could not;
/// or, supervising, starts it and returns its exit code once it ends.
pub fn run(request: RunRequest) -> Result<u8, Error> {
    if request.command.is_empty() {
        return Err(Error::Usage("no command to run; give it after `--`".to_owned()));
    }
    match &request.broker {
        None => from_config(&request),
        Some(socket) => from_broker(socket, &request),
    }
}

/// The values from the config and its stores, fetched here: judge all, look the program up,
/// harden, fetch all, launch. A re-fetch (supervising) is the same pipeline, judged anew.
fn from_config(request: &RunRequest) -> Result<u8, Error> {
    let prepared = request.inputs.prepare(&request.audit)?;
    let (api, manifest) = (&prepared.api, &prepared.manifest);
    // Descriptors the program could not hold (beyond `ulimit -n`) are refused before any
    // backend is asked; `inject::plan` places them after.
    inject::targets(manifest, inject::is_open)?;
    let names = manifest.names();
    let allowed = api.judge(&prepared.request(&request.inputs, &names)).allowed()?;
    find_program(api.config(), &request.inherit, &request.command[0])?;
    let hardened = exec::harden()?;
    let values = allowed.fetch()?.values;
    let again = || Ok(api.judge(&prepared.request(&request.inputs, &names)).allowed()?.fetch()?.values);
    launch(request, api.config(), manifest, hardened, values, &again)
}

/// The values from a broker (`--broker`): only the manifest is read here; the broker judges
/// and fetches, and hands each value over as a sealed memfd. No config here means nothing
/// to withhold from the program but the control variables: the stores' sources live in the
/// broker's environment, not ours.
fn from_broker(socket: &Path, request: &RunRequest) -> Result<u8, Error> {
    let manifest = Manifest::requested(request.inputs.manifest.as_deref(), &request.inputs.secrets)?;
    inject::targets(&manifest, inject::is_open)?;
    let config = Config::parse("stores: {}\nrefs: {}\npolicies: {}\n", "<broker>")?;
    find_program(&config, &request.inherit, &request.command[0])?;
    let hardened = exec::harden()?;
    let again = || crate::broker::client::fetch(socket, &request.inputs.identity, &manifest);
    let values = again()?;
    launch(request, &config, &manifest, hardened, values, &again)
}

/// The last step, whichever the source: exec the program in our place, or start it and stay
/// (`again` fetches every value anew for `--watch`).
fn launch(
    request: &RunRequest,
    config: &Config,
    manifest: &Manifest,
    hardened: exec::Hardened,
    values: Values,
    again: &(dyn Fn() -> Result<Values, Error> + Sync),
) -> Result<u8, Error> {
    let plan = |values: &Values| {
        inject::plan(config, manifest, std::env::vars_os(), &request.inherit, values, request.command.clone())
    };
    let Some(options) = &request.supervise else {
        let plan = plan(&values)?;
        drop(values);
        match exec::exec(plan, hardened)? {}
    };
    let pipeline = supervise::Pipeline { fetch: again, plan: &plan, audit: &request.audit };
    supervise::supervise(options, hardened, values, pipeline)
}

/// Where `program` will be found when it is exec'd: looked up as `execvp` will, on the PATH
/// the program inherits (none with `--clean-env` unless kept: then libc's default), before
/// any store is touched, so that a typo is 127 (or 126) with no secret fetched.
pub fn find_program(config: &Config, inherit: &Inherit, program: &OsStr) -> Result<PathBuf, Error> {
    let inherited = !inherit.clean || inherit.keep.iter().any(|k| k == "PATH");
    let path =
        std::env::var_os("PATH").filter(|_| inherited && !inject::source_variables(config).contains("PATH"));
    crate::program::lookup(program, path.as_deref())
        .map_err(|kind| Error::Exec { program: program.to_string_lossy().into_owned(), source: kind.into() })
}
