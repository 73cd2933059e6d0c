//! The manifest: which secrets a program needs and where each one goes. Kept beside the
//! program (`./mxm-secrets.yaml`), or given as `--secret NAME[=ENV]`.
//!
//! ```yaml
//! secrets:
//!   - name: databento_api_key      # env DATABENTO_API_KEY
//!   - name: postgres_password
//!     env: PGPASSWORD
//!   - name: tls_private_key
//!     fd: 3                        # a sealed in-memory file at descriptor 3 ...
//!     env: TLS_KEY_FILE            # ... and TLS_KEY_FILE=/dev/fd/3
//!   - name: ca_bundle
//!     file: true                   # the next free descriptor from 3; CA_BUNDLE=/dev/fd/N
//!   - name: sentry_dsn
//!     optional: true               # missing in the store: skipped
//! ```

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
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

/// Descriptors a manifest may ask for: above stdin, stdout and stderr, below the usual
/// 1024 open-file limit.
pub const MAX_DESCRIPTOR: i32 = 1023;

/// One secret the program needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub name: Name,
    /// The variable it is injected as: the value itself, or `/dev/fd/N` when `fd` is set.
    pub env: Option<String>,
    /// Where the value goes as a sealed in-memory file, if it does.
    pub fd: Option<Descriptor>,
    /// A secret missing from its store is skipped instead of failing the launch. A denied
    /// one still fails: optional is about existence, never about permission.
    pub optional: bool,
    /// Where the entry was written, for messages.
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Descriptor {
    /// `fd: N`.
    Fixed(i32),
    /// `file: true`: the lowest descriptor from 3 that nothing else uses, chosen at launch.
    Next,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a `secrets:` list")]
struct RawManifest {
    secrets: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an entry like `- name: api_key`")]
struct RawEntry {
    name: Name,
    env: Option<String>,
    fd: Option<FdNumber>,
    #[serde(default)]
    file: bool,
    #[serde(default)]
    optional: bool,
}

impl Manifest {
    pub fn parse(text: &str, source: &str) -> Result<Manifest, Error> {
        crate::config::check_nesting(text, source)
            .map_err(|(origin, message)| Error::manifest(origin, message))?;
        let raw: RawManifest = serde_yaml::from_str(text).map_err(|e| {
            let (origin, message) = yaml_error(text, source, &e);
            Error::manifest(origin, message)
        })?;
        let mut manifest = Manifest::default();
        let names: Vec<&str> = raw.secrets.iter().map(|e| e.name.as_str()).collect();
        let positions = entry_positions(text, &names);
        for ((index, entry), position) in raw.secrets.into_iter().enumerate().zip(positions) {
            let origin = match position {
                Some((line, column)) => {
                    Origin { source: source.to_owned(), line: Some(line), column: Some(column) }
                }
                None => Origin::file(format!("{source}: secrets[{index}]")),
            };
            let fd = match (entry.fd, entry.file) {
                (Some(FdNumber(n)), _) => Some(Descriptor::Fixed(n)),
                (None, true) => Some(Descriptor::Next),
                (None, false) => None,
            };
            manifest.push(ManifestEntry::new(entry.name, entry.env, fd, entry.optional, origin)?)?;
        }
        Ok(manifest)
    }

    /// Reads a manifest file. One that anybody may write is refused: whoever edits it chooses
    /// where the secrets go (a variable the program logs, say). Group-writable is allowed, for
    /// deploy groups.
    pub fn load(path: &Path) -> Result<Manifest, Error> {
        let source = path.display().to_string();
        let fail = |message: String| Error::manifest(Origin::file(&source), message);
        let (text, meta) = crate::files::read_text(path, MAX_MANIFEST_BYTES).map_err(|message| {
            fail(format!("{message}; give the secrets with --manifest FILE or --secret NAME"))
        })?;
        if meta.mode() & 0o002 != 0 {
            return Err(fail(format!(
                "is writable by anyone (mode {:04o}); whoever edits it chooses where the secrets go. \
                 Fix: chmod o-w {source}",
                meta.mode() & 0o7777
            )));
        }
        Manifest::parse(&text, &source)
    }

    /// Adds an entry, refusing a second one for the same variable or descriptor.
    pub fn push(&mut self, entry: ManifestEntry) -> Result<(), Error> {
        let clash = |what: String, other: &ManifestEntry| {
            Err(Error::manifest(
                entry.origin.clone(),
                format!(
                    "`{}` and `{}` ({}) both inject {what}; give one of them another",
                    entry.name, other.name, other.origin
                ),
            ))
        };
        for other in &self.entries {
            if let (Some(a), Some(b)) = (&entry.env, &other.env)
                && a == b
            {
                return clash(format!("variable {a}"), other);
            }
            if let (Some(Descriptor::Fixed(a)), Some(Descriptor::Fixed(b))) = (entry.fd, other.fd)
                && a == b
            {
                return clash(format!("descriptor {a}"), other);
            }
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Adds to each undefined name's failure where the manifest (or `--secret`) asks for it,
    /// so the line to fix is named as config errors name theirs.
    pub fn cite_undefined(&self, judged: &mut [crate::resolve::Judged]) {
        for (name, result) in judged.iter_mut() {
            let Err(crate::error::FailureKind::Undefined { hint }) = result else { continue };
            for entry in self.entries.iter().filter(|e| e.name == *name) {
                let by = if entry.origin.source.starts_with("--secret") { "" } else { "manifest " };
                hint.push_str(&format!("; requested at {by}{}", entry.origin));
            }
        }
    }

    /// The requested names, each once, in name order.
    pub fn names(&self) -> Vec<&Name> {
        let unique: BTreeMap<&Name, ()> = self.entries.iter().map(|e| (&e.name, ())).collect();
        unique.into_keys().collect()
    }
}

impl ManifestEntry {
    /// Without `env`, a value goes into `NAME` upper-cased, and so does the path of a
    /// `file: true` descriptor (the program cannot know its number otherwise); a fixed `fd`
    /// alone sets no variable.
    fn new(
        name: Name,
        env: Option<String>,
        fd: Option<Descriptor>,
        optional: bool,
        origin: Origin,
    ) -> Result<ManifestEntry, Error> {
        let env = match (env, fd) {
            (Some(env), _) => Some(env),
            (None, Some(Descriptor::Fixed(_))) => None,
            (None, _) => Some(name.as_str().to_ascii_uppercase()),
        };
        if let Some(env) = &env {
            check_variable(env).map_err(|message| Error::manifest(origin.clone(), message))?;
        }
        Ok(ManifestEntry { name, env, fd, optional, origin })
    }

    /// `--secret NAME[=ENV]`.
    pub fn from_arg(arg: &str) -> Result<ManifestEntry, Error> {
        let origin = Origin::file(format!("--secret {}", arg.escape_debug()));
        let (name, env) = match arg.split_once('=') {
            Some((name, env)) => (name, Some(env.to_owned())),
            None => (arg, None),
        };
        let name = Name::new(name).map_err(|e| Error::manifest(origin.clone(), e))?;
        ManifestEntry::new(name, env, None, false, origin)
    }
}

/// Where each entry's name is written, `(line, column)`, found by reading the text forward
/// for `name: N` (quoted or not) in entry order, comments skipped. serde_yaml gives positions
/// only with errors; names are plain identifiers, so a textual scan finds them exactly. An
/// entry written some other way (an alias) gets no position, and its index is cited instead.
fn entry_positions(text: &str, names: &[&str]) -> Vec<Option<(usize, usize)>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut at = Some((0usize, 0usize));
    names
        .iter()
        .map(|name| {
            // After one miss the rest are not looked for: each search could read to the end,
            // and a manifest of many aliases would make that quadratic.
            let found = find_name(&lines, at?, name);
            at = found.map(|(line, column)| (line, column + 1));
            let (line, column) = found?;
            Some((line + 1, column + 1))
        })
        .collect()
}

/// The first `name:` key whose value is `name`, from `(line, byte)` on; 0-based.
fn find_name(lines: &[&str], from: (usize, usize), name: &str) -> Option<(usize, usize)> {
    for (index, line) in lines.iter().enumerate().skip(from.0) {
        let code = match line.find('#') {
            Some(hash) if hash == 0 || line[..hash].ends_with([' ', '\t']) => &line[..hash],
            _ => line,
        };
        let start = if index == from.0 { from.1.min(code.len()) } else { 0 };
        let mut offset = start;
        while let Some(found) = code[offset..].find("name") {
            let key = offset + found;
            offset = key + 1;
            let before = code[..key].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = code[key + 4..].trim_start_matches([' ', '\t']);
            let Some(value) = rest.strip_prefix(':') else { continue };
            let value = value.trim_start_matches([' ', '\t']).trim_start_matches(['"', '\'']);
            let column = code.len() - value.len();
            let after = value.strip_prefix(name).and_then(|v| v.chars().next());
            if value.starts_with(name) && !after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                return Some((index, column));
            }
        }
    }
    None
}

/// A descriptor number, checked where it stands.
struct FdNumber(i32);

impl<'de> Deserialize<'de> for FdNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(deserializer)?;
        check_descriptor(n).map(FdNumber).map_err(serde::de::Error::custom)
    }
}

fn check_descriptor(n: i64) -> Result<i32, String> {
    match i32::try_from(n) {
        Ok(n @ 3..=MAX_DESCRIPTOR) => Ok(n),
        _ if (0..=2).contains(&n) => Err(format!(
            "fd {n} is {}; secrets go to descriptors 3 to {MAX_DESCRIPTOR}",
            ["stdin", "stdout", "stderr"][n as usize]
        )),
        _ => Err(format!("fd {n} is out of range; secrets go to descriptors 3 to {MAX_DESCRIPTOR}")),
    }
}

fn check_variable(env: &str) -> Result<(), String> {
    if !is_env_var_name(env) {
        return Err(format!("`{}` is not a variable name (^[A-Za-z_][A-Za-z0-9_]*$)", env.escape_debug()));
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
        let envs: Vec<&str> = m.entries.iter().filter_map(|e| e.env.as_deref()).collect();
        assert_eq!(envs, ["DATABENTO_API_KEY", "PGPASSWORD", "SENTRY_DSN"]);
        assert!(m.entries[2].optional && !m.entries[0].optional);
    }

    #[test]
    fn bad_entries() {
        assert!(error("secrets:\n  - name: a\n    env: 1X\n").contains("not a variable name"));
        assert!(error("secrets:\n  - name: a\n    env: LD_PRELOAD\n").contains("LD_PRELOAD"));
        assert!(error("secrets:\n  - name: a\n    env: PATH\n").contains("may not be injected as PATH"));
        assert!(error("secrets:\n  - name: a\n  - name: b\n    env: A\n").contains("both inject variable A"));
        let message = error("secrets:\n  - name: a\n    evn: X\n");
        assert!(message.starts_with("manifest m.yaml:3:5: secrets[0]: unknown field `evn`"), "{message}");
        assert!(message.contains("did you mean `env`?"), "{message}");
        assert!(error("secrets:\n  - name: A\n").contains("not a valid name"));
        assert!(error("{}\n").contains("missing field `secrets`"));
        assert!(
            error("secrets:\n  - {name: a, fd: 3}\n  - {name: b, fd: 3}\n")
                .contains("both inject descriptor 3")
        );
        let message = error("secrets:\n  - {name: a, fd: 1}\n");
        assert!(message.starts_with("manifest m.yaml:2:"), "{message}");
        assert!(message.contains("fd 1 is stdout"), "{message}");
        assert!(error("secrets:\n  - {name: a, fd: 0}\n").contains("fd 0 is stdin"));
        assert!(error("secrets:\n  - {name: a, fd: 1024}\n").contains("out of range"));
        assert!(error("secrets:\n  - {name: a, fd: -3}\n").contains("out of range"));
        assert!(error("secrets:\n  - {name: a, fd: 99999999999}\n").contains("out of range"));
        assert!(error("secrets:\n  - {name: a, fd: three}\n").contains("secrets[0].fd"));
    }

    #[test]
    fn descriptors() {
        let m = Manifest::parse(
            "secrets:\n  - {name: tls, fd: 3, env: TLS_KEY_FILE}\n  - {name: ca, file: true}\n  - {name: raw, fd: 7}\n",
            "m.yaml",
        )
        .unwrap();
        let targets: Vec<_> = m.entries.iter().map(|e| (e.env.as_deref(), e.fd)).collect();
        assert_eq!(
            targets,
            [
                (Some("TLS_KEY_FILE"), Some(Descriptor::Fixed(3))),
                (Some("CA"), Some(Descriptor::Next)),
                (None, Some(Descriptor::Fixed(7)))
            ]
        );
    }

    #[test]
    fn secret_arguments() {
        let e = ManifestEntry::from_arg("postgres_password=PGPASSWORD").unwrap();
        assert_eq!((e.name.as_str(), e.env.as_deref()), ("postgres_password", Some("PGPASSWORD")));
        assert_eq!(ManifestEntry::from_arg("api_key").unwrap().env.as_deref(), Some("API_KEY"));
        for bad in ["Api", "a=", "a=B C", "a=LD_AUDIT", "", "=X"] {
            let e = ManifestEntry::from_arg(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 65);
            assert!(e.to_string().starts_with("manifest --secret"), "{e}");
        }
    }
}
