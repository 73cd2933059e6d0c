//! The `env` backend: the launcher's own variable `ROOT_PATH`, upper-cased, with `/`, `-`
//! and `.` turned to `_` (root `mxm_red`, path `db/pw` -> `MXM_RED_DB_PW`). The variable is
//! a secret's source, so it never reaches the child (see `inject`).
//!
//! ```yaml
//! stores:
//!   demo: {backend: env, root: mxm_demo}
//! ```

use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use serde::Deserialize;

use super::{Backend, FetchError, FetchRequest};
use crate::name::is_env_var_name;
use crate::secret::SecretValue;

/// An env store has no options of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {}

impl super::Options for Options {
    fn build(self, root: &str) -> Result<Arc<dyn Backend>, String> {
        // A root alone must already make a valid variable prefix.
        Env.locate(root, "x").map_err(|e| format!("root: {e}"))?;
        Ok(Arc::new(Env))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env;

/// The variable name for `root` and `path`, by the rule above.
pub fn variable_name(root: &str, path: &str) -> String {
    format!("{root}/{path}")
        .chars()
        .map(|c| match c {
            '/' | '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

impl Backend for Env {
    fn locate(&self, root: &str, path: &str) -> Result<String, String> {
        let name = variable_name(root.trim_end_matches('/'), path);
        if is_env_var_name(&name) {
            Ok(name)
        } else {
            Err(format!(
                "`{}` is not a valid variable name (the env backend reads variable ROOT_PATH, \
                 upper-cased, with `/`, `-`, `.` as `_`)",
                name.escape_debug()
            ))
        }
    }

    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        let location = request.location;
        match std::env::var_os(location) {
            Some(value) => Ok(SecretValue::new(value.into_vec())),
            None => Err(FetchError::NotFound(format!("variable {location} is not set"))),
        }
    }

    fn source_variable<'a>(&self, location: &'a str) -> Option<&'a str> {
        Some(location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_rule_of_the_design() {
        assert_eq!(Env.locate("mxm_red", "db/pw").unwrap(), "MXM_RED_DB_PW");
        assert_eq!(Env.locate("mxm_red/", "a-b/c.d").unwrap(), "MXM_RED_A_B_C_D");
        assert!(Env.locate("mxm", "a b").is_err());
        assert!(Env.locate("1x", "a").is_err());
    }
}
