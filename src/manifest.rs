//! The manifest: which secrets a program needs and where each one goes. Kept beside the
//! program (`./mxm-secrets.yaml`), or given as `--secret NAME[=ENV]`.
//!
//! ```yaml
//! secrets:
//!   - name: databento_api_key      # env DATABENTO_API_KEY
//!   - name: postgres_password
//!     env: PGPASSWORD
//!   - name: sentry_dsn
//!     optional: true               # missing in the store: skipped
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::config::yaml_error;
use crate::error::{Error, Origin};
use crate::name::{Name, is_env_var_name};

pub const DEFAULT_MANIFEST: &str = "mxm-secrets.yaml";
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Variables that change how programs load or start: a secret there could run code.
const FORBIDDEN_EXACT: [&str; 11] = [
    "BASH_ENV",
    "ENV",
    "PROMPT_COMMAND",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "NODE_OPTIONS",
    "PERL5OPT",
    "RUBYOPT",
    "PATH",
    "HOME",
    "IFS",
];
const FORBIDDEN_PREFIX: &str = "LD_";

/// One secret the program needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub name: Name,
    /// The variable it is injected as.
    pub env: String,
    /// A secret missing from its store is skipped instead of failing the launch. A denied
    /// one still fails: optional is about existence, never about permission.
    pub optional: bool,
    /// Where the entry was written, for messages.
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    secrets: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: Name,
    env: Option<String>,
    #[serde(default)]
    optional: bool,
}

impl Manifest {
    pub fn parse(text: &str, source: &str) -> Result<Manifest, Error> {
        let raw: RawManifest = serde_yaml::from_str(text).map_err(|e| {
            let (origin, message) = yaml_error(source, &e);
            Error::manifest(origin, message)
        })?;
        let mut manifest = Manifest::default();
        for (index, entry) in raw.secrets.into_iter().enumerate() {
            let origin = Origin::file(format!("{source}: secrets[{index}]"));
            manifest.push(ManifestEntry::new(
                entry.name,
                entry.env,
                entry.optional,
                origin,
            )?)?;
        }
        Ok(manifest)
    }

    pub fn load(path: &Path) -> Result<Manifest, Error> {
        let source = path.display().to_string();
        let fail = |message: String| Error::manifest(Origin::file(&source), message);
        let file = std::fs::File::open(path).map_err(|e| {
            fail(format!(
                "cannot read it: {e}; give the secrets with --manifest FILE or --secret NAME"
            ))
        })?;
        let meta = file
            .metadata()
            .map_err(|e| fail(format!("cannot read it: {e}")))?;
        if !meta.is_file() {
            return Err(fail("is not a regular file".to_owned()));
        }
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(fail(format!("is larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot read it: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8 text".to_owned()))?;
        Manifest::parse(&text, &source)
    }

    /// Adds an entry, refusing a second one for the same variable.
    pub fn push(&mut self, entry: ManifestEntry) -> Result<(), Error> {
        if let Some(other) = self.entries.iter().find(|e| e.env == entry.env) {
            return Err(Error::manifest(
                entry.origin.clone(),
                format!(
                    "`{}` and `{}` ({}) both inject variable {}; give one of them another `env`",
                    entry.name, other.name, other.origin, entry.env
                ),
            ));
        }
        self.entries.push(entry);
        Ok(())
    }

    /// The requested names, each once, in name order.
    pub fn names(&self) -> Vec<&Name> {
        let unique: BTreeMap<&Name, ()> = self.entries.iter().map(|e| (&e.name, ())).collect();
        unique.into_keys().collect()
    }
}

impl ManifestEntry {
    fn new(
        name: Name,
        env: Option<String>,
        optional: bool,
        origin: Origin,
    ) -> Result<ManifestEntry, Error> {
        let env = env.unwrap_or_else(|| name.as_str().to_ascii_uppercase());
        check_variable(&env).map_err(|message| Error::manifest(origin.clone(), message))?;
        Ok(ManifestEntry {
            name,
            env,
            optional,
            origin,
        })
    }

    /// `--secret NAME[=ENV]`.
    pub fn from_arg(arg: &str) -> Result<ManifestEntry, Error> {
        let origin = Origin::file(format!("--secret {}", arg.escape_debug()));
        let (name, env) = match arg.split_once('=') {
            Some((name, env)) => (name, Some(env.to_owned())),
            None => (arg, None),
        };
        let name = Name::new(name).map_err(|e| Error::manifest(origin.clone(), e))?;
        ManifestEntry::new(name, env, false, origin)
    }
}

fn check_variable(env: &str) -> Result<(), String> {
    if !is_env_var_name(env) {
        return Err(format!(
            "`{}` is not a variable name (^[A-Za-z_][A-Za-z0-9_]*$)",
            env.escape_debug()
        ));
    }
    if env.starts_with(FORBIDDEN_PREFIX) || FORBIDDEN_EXACT.contains(&env) {
        return Err(format!(
            "a secret may not be injected as {env}: that variable changes how programs load or \
             start (refused: LD_*, {})",
            FORBIDDEN_EXACT.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        let e = Manifest::parse(text, "m.yaml").expect_err(text);
        assert_eq!(e.exit_code(), 65, "{e}");
        e.to_string()
    }

    #[test]
    fn the_design_example() {
        let m = Manifest::parse(
            "secrets:\n  - name: databento_api_key\n  - name: postgres_password\n    env: PGPASSWORD\n  - name: sentry_dsn\n    optional: true\n",
            "m.yaml",
        )
        .unwrap();
        let envs: Vec<&str> = m.entries.iter().map(|e| e.env.as_str()).collect();
        assert_eq!(envs, ["DATABENTO_API_KEY", "PGPASSWORD", "SENTRY_DSN"]);
        assert!(m.entries[2].optional && !m.entries[0].optional);
    }

    #[test]
    fn bad_entries() {
        assert!(error("secrets:\n  - name: a\n    env: 1X\n").contains("not a variable name"));
        assert!(error("secrets:\n  - name: a\n    env: LD_PRELOAD\n").contains("LD_PRELOAD"));
        assert!(
            error("secrets:\n  - name: a\n    env: PATH\n").contains("may not be injected as PATH")
        );
        assert!(
            error("secrets:\n  - name: a\n  - name: b\n    env: A\n")
                .contains("both inject variable A")
        );
        let message = error("secrets:\n  - name: a\n    evn: X\n");
        assert!(
            message.starts_with("manifest m.yaml:3:5: secrets[0]: unknown field `evn`"),
            "{message}"
        );
        assert!(message.contains("did you mean `env`?"), "{message}");
        assert!(error("secrets:\n  - name: A\n").contains("not a valid name"));
        assert!(error("{}\n").contains("missing field `secrets`"));
    }

    #[test]
    fn secret_arguments() {
        let e = ManifestEntry::from_arg("postgres_password=PGPASSWORD").unwrap();
        assert_eq!(
            (e.name.as_str(), e.env.as_str()),
            ("postgres_password", "PGPASSWORD")
        );
        assert_eq!(ManifestEntry::from_arg("api_key").unwrap().env, "API_KEY");
        for bad in ["Api", "a=", "a=B C", "a=LD_AUDIT", "", "=X"] {
            let e = ManifestEntry::from_arg(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 65);
            assert!(e.to_string().starts_with("manifest --secret"), "{e}");
        }
    }
}
