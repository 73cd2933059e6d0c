//! What the shell completes from the config, as `just` completes recipes: secret names,
//! roles, environments, machines and store names of the config the command on the line would
//! load (`--config` on the line, else the discovery order). A config that cannot be loaded
//! completes nothing, silently: a completion is no place for an error message.
//!
//! The shell side is clap_complete's dynamic completion: the script `mxm-secrets completions
//! bash` prints calls the binary back with [`COMPLETE_VAR`] set, and `main` answers.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::name::Name;

/// The variable that turns a launch into a completion request. Deliberately not clap's
/// default `COMPLETE`: a launcher whose service environment happens to hold `COMPLETE=bash`
/// would print candidates instead of starting the program.
pub const COMPLETE_VAR: &str = "_MXM_SECRETS_COMPLETE";

/// The kinds of words a config offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Public secret names (`get`, `explain`, `--secret`).
    Secret,
    /// Roles: every principal a policy allows (a role is its own principal unless a rule maps
    /// it) and every role a `principals:` rule matches.
    Role,
    /// Environments named by policies and rules.
    Environment,
    /// Machines named by policies and rules.
    Machine,
}

/// The words of one kind in `config`, sorted, each once.
pub fn words_in(config: &Config, kind: Kind) -> Vec<String> {
    let policies = || config.policies.iter().map(|(_, p)| p);
    let words: BTreeSet<String> = match kind {
        Kind::Secret => config.refs.names().map(ToString::to_string).collect(),
        Kind::Role => policies()
            .flat_map(|p| p.allowed_principals.iter().map(Name::to_string))
            .chain(config.principals.iter().filter_map(|r| r.role.as_ref().map(Name::to_string)))
            .collect(),
        Kind::Environment => policies()
            .flat_map(|p| p.environments.iter().flatten().cloned())
            .chain(config.principals.iter().filter_map(|r| r.environment.clone()))
            .collect(),
        Kind::Machine => policies()
            .flat_map(|p| p.machines.iter().flatten().cloned())
            .chain(config.principals.iter().filter_map(|r| r.machine.clone()))
            .collect(),
    };
    words.into_iter().collect()
}

/// The words of one kind in the config the command would load; none when it cannot be.
pub fn words(kind: Kind, explicit_config: Option<&Path>) -> Vec<String> {
    Config::discover(explicit_config)
        .and_then(|path| Config::load(&path))
        .map(|config| words_in(&config, kind))
        .unwrap_or_default()
}

/// The `--config FILE` (or `--config=FILE`) on a command line being completed, if any. The
/// word being completed itself may be it, half typed; the last complete one counts.
pub fn config_on_line(words: &[OsString]) -> Option<PathBuf> {
    let mut found = None;
    let mut iter = words.iter().peekable();
    while let Some(word) = iter.next() {
        if word == "--" {
            break;
        }
        let text = word.to_string_lossy();
        if text == "--config" {
            if let Some(next) = iter.peek() {
                found = Some(PathBuf::from(next));
            }
        } else if let Some(path) = text.strip_prefix("--config=") {
            found = Some(PathBuf::from(path));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_of_each_kind() {
        let config = Config::parse(
            "stores: {red: {backend: env, root: a}, blue: {backend: env, root: b}}\nrefs:\n  \
             b_key: {store: red, path: x, policy: p}\n  a_key: {store: blue, path: y, policy: q}\n\
             policies:\n  p: {allowed_principals: [research, feed], environments: [prod]}\n  \
             q: {allowed_principals: [feed], machines: [db1]}\nprincipals:\n  \
             - {principal: research, role: analyst, environment: staging}\n",
            "c.yaml",
        )
        .unwrap();
        assert_eq!(words_in(&config, Kind::Secret), ["a_key", "b_key"]);
        assert_eq!(words_in(&config, Kind::Role), ["analyst", "feed", "research"]);
        assert_eq!(words_in(&config, Kind::Environment), ["prod", "staging"]);
        assert_eq!(words_in(&config, Kind::Machine), ["db1"]);
    }

    #[test]
    fn the_config_on_the_line() {
        let line = |words: &[&str]| config_on_line(&words.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(line(&["mxm-secrets", "get", "--config", "a.yaml", ""]), Some("a.yaml".into()));
        assert_eq!(line(&["mxm-secrets", "get", "--config=b.yaml", "x"]), Some("b.yaml".into()));
        assert_eq!(line(&["mxm-secrets", "get", "--config"]), None);
        assert_eq!(line(&["mxm-secrets", "run", "--", "prog", "--config", "c"]), None);
    }
}
