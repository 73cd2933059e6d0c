//! What every command that reads a manifest starts from ([`Inputs`]: the paths, names and
//! identity of its command line), and the first steps they share ([`Inputs::prepare`]).

use std::path::PathBuf;

use crate::api::{Request, SecretsApi};
use crate::audit::Audit;
use crate::config::Config;
use crate::error::Error;
use crate::identity::{Caller, RuntimeIdentity};
use crate::manifest::Manifest;

#[derive(Debug, Clone)]
pub struct Inputs {
    /// `--config`; when `None`, the discovery order of [`Config::discover`].
    pub config: Option<PathBuf>,
    /// `--manifest`; when `None`, `./mxm-secrets.yaml` unless `--secret` was given.
    pub manifest: Option<PathBuf>,
    /// `--secret NAME[=ENV]`, in order.
    pub secrets: Vec<String>,
    pub identity: RuntimeIdentity,
    /// Who runs us: the local launcher's own real ids.
    pub caller: Caller,
    /// `--jobs`: at most this many fetches at once (at least 1).
    pub jobs: usize,
}

/// The pipeline over the loaded config, and the manifest.
#[derive(Debug)]
pub struct Prepared {
    pub api: SecretsApi,
    pub manifest: Manifest,
}

impl Inputs {
    /// The shared first steps: config, manifest; records go to `audit`.
    pub fn prepare(&self, audit: &Audit) -> Result<Prepared, Error> {
        let config = Config::load(&Config::discover(self.config.as_deref())?)?;
        let manifest = Manifest::requested(self.manifest.as_deref(), &self.secrets)?;
        Ok(Prepared { api: SecretsApi::from_config(config).with_audit(audit.clone()), manifest })
    }
}

impl Prepared {
    /// The request for every name of the manifest (`names` is [`Manifest::names`]).
    pub fn request<'r>(&'r self, inputs: &'r Inputs, names: &'r [&'r crate::name::Name]) -> Request<'r> {
        Request {
            names,
            identity: &inputs.identity,
            caller: &inputs.caller,
            manifest: Some(&self.manifest),
            jobs: inputs.jobs,
        }
    }
}
