//! [`SecretsApi`]: the pipeline for Rust programs, as the reference's `SecretsApi`.
//!
//! ```no_run
//! use mxm_secrets::{RuntimeIdentity, SecretsApi};
//! let api = SecretsApi::from_config_data(&std::fs::read_to_string("secrets.yaml")?)?;
//! let identity = RuntimeIdentity::new("marketdata")?;
//! let key = api.get_secret("databento_api_key", &identity)?;
//! assert!(!key.expose().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use crate::audit::Audit;
use crate::config::Config;
use crate::error::{Error, SecretFailure};
use crate::identity::{RuntimeIdentity, derive_principal};
use crate::name::Name;
use crate::resolve;
use crate::secret::SecretValue;

#[derive(Debug, Clone)]
pub struct SecretsApi {
    config: Config,
    audit: Audit,
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

    /// One secret for `identity`: authorized before its backend is asked, then fetched.
    pub fn get_secret(&self, name: &str, identity: &RuntimeIdentity) -> Result<SecretValue, Error> {
        let name = Name::new(name).map_err(|_| {
            Error::Secrets(vec![SecretFailure {
                name: name.escape_debug().to_string(),
                kind: resolve::undefined(&self.config, name),
            }])
        })?;
        let principal = derive_principal(&self.config.principals, identity);
        let judged = resolve::judge_all(&self.config, &[&name], &principal, identity);
        self.audit.decisions(&principal, &judged);
        let authorized = resolve::all_allowed(judged)?;
        let environment = crate::inject::backend_environment(&self.config, std::env::vars_os());
        let result = resolve::fetch(&authorized[0], &environment);
        self.audit.fetched(&principal, &authorized[0], result.as_ref().map(drop), false);
        result.map_err(|kind| Error::Secrets(vec![SecretFailure { name: name.to_string(), kind }]))
    }
}
