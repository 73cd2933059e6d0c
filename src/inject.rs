//! The child's environment, built on purpose: the launcher's own variables pass through,
//! except the ones that describe the launcher (`MXM_*` control variables) and the ones that
//! held secrets (env-backend sources); then each secret goes in under its variable.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::config::Config;
use crate::error::{Error, FailureKind, SecretFailure};
use crate::manifest::Manifest;
use crate::name::Name;
use crate::secret::SecretValue;

/// Variables that steer mxm-secrets itself. They describe the launcher's identity and
/// config, not the program's, so the program does not see them.
pub const CONTROL_VARIABLES: [&str; 6] = [
    "MXM_ROLE",
    "MXM_ENVIRONMENT",
    "MXM_MACHINE",
    "MXM_APP",
    "MXM_SUBSTRATE",
    "MXM_SECRETS_CONFIG",
];

/// Everything `exec` needs. Secret values stay in their wiping buffers until the last moment.
#[derive(Debug)]
pub struct LaunchPlan {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The variables passed through, without secrets.
    pub env: Vec<(OsString, OsString)>,
    /// `(variable, value)` for every injected secret.
    pub secrets: Vec<(String, SecretValue)>,
}

/// Every variable of the launcher that the config names as a secret's source (env backend),
/// whether or not this run asked for that secret: a source never leaks to a child.
pub fn source_variables(config: &Config) -> BTreeSet<String> {
    config
        .refs
        .iter()
        .filter_map(|(_, secret)| {
            let store = config.stores.get(secret.store.as_str())?;
            let location = store.locate(&secret.path).ok()?;
            store.source_variable(&location).map(str::to_owned)
        })
        .collect()
}

/// Builds the plan from the launcher's environment `inherited`, the fetched `values` (by
/// name; a name missing from it was optional and is skipped) and the command line. A name
/// injected twice gets a copy per variable; `values` is wiped when the caller drops it.
pub fn plan(
    config: &Config,
    manifest: &Manifest,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    values: &[(Name, SecretValue)],
    command: Vec<OsString>,
) -> Result<LaunchPlan, Error> {
    let mut command = command.into_iter();
    let program = command
        .next()
        .ok_or_else(|| Error::Usage("no command to run was given after `--`".to_owned()))?;
    let removed = source_variables(config);
    let injected: BTreeSet<&str> = manifest.entries.iter().map(|e| e.env.as_str()).collect();
    let env = inherited
        .into_iter()
        .filter(|(key, _)| {
            let key = key.to_string_lossy();
            !CONTROL_VARIABLES.contains(&key.as_ref())
                && !removed.contains(key.as_ref())
                && !injected.contains(key.as_ref())
        })
        .collect();
    let mut secrets = Vec::with_capacity(manifest.entries.len());
    let mut failures = Vec::new();
    for entry in &manifest.entries {
        let Some((_, value)) = values.iter().find(|(name, _)| *name == entry.name) else {
            continue;
        };
        if value.expose().contains(&0) {
            failures.push(SecretFailure {
                name: entry.name.to_string(),
                kind: FailureKind::Unusable(format!(
                    "the value contains a NUL byte, so it cannot be the variable {}",
                    entry.env
                )),
            });
            continue;
        }
        secrets.push((entry.env.clone(), value.copy()));
    }
    if !failures.is_empty() {
        return Err(Error::Secrets(failures));
    }
    Ok(LaunchPlan {
        program,
        args: command.collect(),
        env,
        secrets,
    })
}

/// The bytes of a value as an `OsStr`, for `Command::env`.
pub fn as_os_str(value: &SecretValue) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(value.expose())
}
