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
use std::path::Path;

use serde::Deserialize;

use crate::config::yaml_error;
use crate::files::OpenError;
use crate::name::{Name, is_env_var_name};
use crate::origin::Origin;

pub const DEFAULT_MANIFEST: &str = "mxm-secrets.yaml";
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Variables a secret may not be injected as: each makes a program load or run code, or
/// changes how it starts, so a secret there would be code, or a path code is loaded from
/// (the list is a floor). A name ending in `*` is a prefix. Matched without
/// regard to case: some runtimes fold case (Windows' environment, a few tools' lower-case
/// twins), and a lower-case spelling must not slip past a list that means the upper-case one.
///
/// Sources: glibc's `sysdeps/generic/unsecvars.h` (what the loader strips for setuid
/// programs), sudo's `initial_badenv_table` (what sudo strips for any command), and each
/// runtime's manual. Deliberately not listed: `SSL_CERT_FILE`, `SSL_CERT_DIR`,
/// `NODE_EXTRA_CA_CERTS`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE` (they pick trusted CAs, not
/// code, and a CA bundle handed over as `fd: N` + `env: SSL_CERT_FILE` is a good use),
/// `KRB5_KTNAME` and `KRB5CCNAME` (a keytab is itself a secret), `http_proxy` and its kin
/// (proxy URLs carry credentials), `TZ`, `LANG`, `LC_*`.
const FORBIDDEN: &[(&str, &str)] = &[
    // The dynamic loader: libraries preloaded, searched, audited (glibc `ld.so(8)`; macOS
    // dyld, for manifests shared with Macs).
    ("LD_*", LOADER),
    ("DYLD_*", LOADER),
    // glibc outside the loader (unsecvars.h): iconv modules (GCONV_PATH loads a shared
    // object), tunables, locale and message catalogues, resolver files, malloc tracing
    // (MALLOC_TRACE writes where it says), temp and zoneinfo directories.
    ("GCONV_PATH", LIBC),
    ("GETCONF_DIR", LIBC),
    ("GLIBC_TUNABLES", LIBC),
    ("HOSTALIASES", LIBC),
    ("LOCALDOMAIN", LIBC),
    ("LOCPATH", LIBC),
    ("MALLOC_*", LIBC),
    ("NIS_PATH", LIBC),
    ("NLSPATH", LIBC),
    ("RESOLV_HOST_CONF", LIBC),
    ("RES_OPTIONS", LIBC),
    ("TMPDIR", LIBC),
    ("TZDIR", LIBC),
    // Terminal descriptions, parsed by curses at start-up (sudo strips them).
    ("TERMINFO", LIBC),
    ("TERMINFO_DIRS", LIBC),
    ("TERMPATH", LIBC),
    ("TERMCAP", LIBC),
    // Shells: files sourced at start-up (BASH_ENV, ENV, ZDOTDIR), options (SHELLOPTS,
    // BASHOPTS), strings expanded with command substitution (prompts, PS4 under `set -x`,
    // PROMPT_COMMAND), word splitting and lookup (IFS, CDPATH, GLOBIGNORE), where functions
    // and modules load from (FPATH, BASH_LOADABLES_PATH, zsh's MODULE_PATH), and zsh's
    // commands for bare redirections.
    ("BASH_ENV", SHELL),
    ("ENV", SHELL),
    ("ZDOTDIR", SHELL),
    ("SHELLOPTS", SHELL),
    ("BASHOPTS", SHELL),
    ("PROMPT_COMMAND", SHELL),
    ("PS0", SHELL),
    ("PS1", SHELL),
    ("PS2", SHELL),
    ("PS3", SHELL),
    ("PS4", SHELL),
    ("IFS", SHELL),
    ("CDPATH", SHELL),
    ("GLOBIGNORE", SHELL),
    ("FPATH", SHELL),
    ("BASH_LOADABLES_PATH", SHELL),
    ("MODULE_PATH", SHELL),
    ("NULLCMD", SHELL),
    ("READNULLCMD", SHELL),
    // Programs found or run by what the variable says: the search path, the home whose dot
    // files programs read, and the commands other programs start (`man` runs $PAGER through
    // a shell, `sudo -A` runs $SUDO_ASKPASS), and vi's start-up commands.
    ("PATH", COMMAND),
    ("HOME", COMMAND),
    ("SHELL", COMMAND),
    ("PAGER", COMMAND),
    ("MANPAGER", COMMAND),
    ("EDITOR", COMMAND),
    ("VISUAL", COMMAND),
    ("BROWSER", COMMAND),
    ("SSH_ASKPASS", COMMAND),
    ("SUDO_ASKPASS", COMMAND),
    ("VIMINIT", COMMAND),
    ("EXINIT", COMMAND),
    // less runs LESSOPEN and LESSCLOSE as commands (`|cmd %s`) for every file it opens,
    // and git, man and systemctl page through less.
    ("LESSOPEN", COMMAND),
    ("LESSCLOSE", COMMAND),
    // Where programs read their configuration when it is not under HOME (git's
    // `$XDG_CONFIG_HOME/git/config` names commands, as GIT_CONFIG_GLOBAL does).
    ("XDG_CONFIG_HOME", COMMAND),
    ("XDG_CONFIG_DIRS", COMMAND),
    // git runs these as commands or reads configuration from them, and configuration can
    // name commands (core.sshCommand, core.pager, alias.*); a token belongs in a credential
    // helper, not in git's configuration.
    ("GIT_SSH", COMMAND),
    ("GIT_SSH_COMMAND", COMMAND),
    ("GIT_ASKPASS", COMMAND),
    ("GIT_EXEC_PATH", COMMAND),
    ("GIT_PROXY_COMMAND", COMMAND),
    ("GIT_EXTERNAL_DIFF", COMMAND),
    ("GIT_PAGER", COMMAND),
    ("GIT_EDITOR", COMMAND),
    ("GIT_SEQUENCE_EDITOR", COMMAND),
    ("GIT_TEMPLATE_DIR", COMMAND),
    ("GIT_CONFIG", COMMAND),
    ("GIT_CONFIG_GLOBAL", COMMAND),
    ("GIT_CONFIG_SYSTEM", COMMAND),
    ("GIT_CONFIG_PARAMETERS", COMMAND),
    ("GIT_CONFIG_COUNT", COMMAND),
    ("GIT_CONFIG_KEY_*", COMMAND),
    ("GIT_CONFIG_VALUE_*", COMMAND),
    // Python (`python(1)`, "Environment variables"): a script run at start, the import path
    // and prefix, `-W` filters (PYTHONWARNINGS imports the category's module), the
    // breakpoint hook (imports a callable), interactive mode after the script, the user
    // site directory (its .pth files run), the bytecode cache read instead of sources.
    ("PYTHONSTARTUP", RUNTIME),
    ("PYTHONPATH", RUNTIME),
    ("PYTHONHOME", RUNTIME),
    ("PYTHONPLATLIBDIR", RUNTIME),
    ("PYTHONWARNINGS", RUNTIME),
    ("PYTHONBREAKPOINT", RUNTIME),
    ("PYTHONINSPECT", RUNTIME),
    ("PYTHONUSERBASE", RUNTIME),
    ("PYTHONPYCACHEPREFIX", RUNTIME),
    ("PYTHONEXECUTABLE", RUNTIME),
    // Perl (`perlrun`): options as if on the command line (-M loads modules), library
    // paths, the debugger command.
    ("PERL5OPT", RUNTIME),
    ("PERL5LIB", RUNTIME),
    ("PERLLIB", RUNTIME),
    ("PERL5DB", RUNTIME),
    // Ruby: options (-r requires), load path, gem directories, and bundler's Gemfile (Ruby
    // code it evaluates).
    ("RUBYOPT", RUNTIME),
    ("RUBYLIB", RUNTIME),
    ("GEM_HOME", RUNTIME),
    ("GEM_PATH", RUNTIME),
    ("BUNDLE_GEMFILE", RUNTIME),
    // Node.js: options (--require, --import), module path, the REPL's module.
    ("NODE_OPTIONS", RUNTIME),
    ("NODE_PATH", RUNTIME),
    ("NODE_REPL_EXTERNAL_MODULE", RUNTIME),
    // The JVM reads the first three as options (-javaagent loads code); JAVA_OPTS and
    // JAVA_HOME are how launch scripts (Tomcat, Gradle, Maven) pick options and the java
    // binary; CLASSPATH is where classes load from.
    ("JAVA_TOOL_OPTIONS", RUNTIME),
    ("_JAVA_OPTIONS", RUNTIME),
    ("JDK_JAVA_OPTIONS", RUNTIME),
    ("JAVA_OPTS", RUNTIME),
    ("JAVA_HOME", RUNTIME),
    ("CLASSPATH", RUNTIME),
    // Build tools' launch scripts pass these to the JVM as JAVA_OPTS (-javaagent).
    ("MAVEN_OPTS", RUNTIME),
    ("GRADLE_OPTS", RUNTIME),
    // PHP reads php.ini from these (auto_prepend_file runs code); R sources its profile and
    // environment files at start; the Erlang VM takes flags from ERL_*FLAGS (-eval, -s);
    // Julia loads startup.jl and packages from its depot and load path.
    ("PHPRC", RUNTIME),
    ("PHP_INI_SCAN_DIR", RUNTIME),
    ("R_PROFILE", RUNTIME),
    ("R_PROFILE_USER", RUNTIME),
    ("R_ENVIRON", RUNTIME),
    ("R_ENVIRON_USER", RUNTIME),
    ("ERL_AFLAGS", RUNTIME),
    ("ERL_ZFLAGS", RUNTIME),
    ("ERL_FLAGS", RUNTIME),
    ("JULIA_DEPOT_PATH", RUNTIME),
    ("JULIA_LOAD_PATH", RUNTIME),
    // .NET: startup hooks and extra dependencies load assemblies; CORECLR_* loads a profiler.
    ("DOTNET_STARTUP_HOOKS", RUNTIME),
    ("DOTNET_ADDITIONAL_DEPS", RUNTIME),
    ("CORECLR_*", RUNTIME),
    // Lua runs LUA_INIT (and LUA_INIT_5_4, ...) as code; the paths pick modules.
    ("LUA_INIT*", RUNTIME),
    ("LUA_PATH*", RUNTIME),
    ("LUA_CPATH*", RUNTIME),
    ("TCLLIBPATH", RUNTIME),
    // `go` commands take flags from GOFLAGS (-toolexec runs a program).
    ("GOFLAGS", RUNTIME),
    // OpenSSL's configuration can load engines and providers (shared objects), from the
    // directories the other two name.
    ("OPENSSL_CONF", RUNTIME),
    ("OPENSSL_ENGINES", RUNTIME),
    ("OPENSSL_MODULES", RUNTIME),
];

const LOADER: &str = "the dynamic loader reads it to choose which libraries to load";
const LIBC: &str =
    "the C library reads it at start-up to choose files to load (glibc drops it for setuid programs)";
const SHELL: &str = "shells read it at start-up and source, run or expand what it says";
const COMMAND: &str = "programs find or run commands by what it says";
const RUNTIME: &str = "a language runtime reads it at start-up to choose code to load or run";

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
// The next step, not only the shape: a bare list is the usual first manifest.
#[serde(
    deny_unknown_fields,
    expecting = "a `secrets:` list (write `secrets:` on the first line, then the entries under it)"
)]
struct RawManifest {
    secrets: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an entry like `- name: api_key`")]
struct RawEntry {
    name: Name,
    // A null `env` or `fd` (`fd:` with its number commented out) is an error, not absent:
    // absent would put the secret in a variable, where the writer meant a descriptor.
    #[serde(default, deserialize_with = "crate::name::given")]
    env: Option<String>,
    #[serde(default, deserialize_with = "crate::name::given")]
    fd: Option<FdNumber>,
    #[serde(default)]
    file: bool,
    #[serde(default)]
    optional: bool,
}

/// A manifest or `--secret` that cannot be read or is invalid: what is wrong, and where
/// (exit 65).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestError {
    pub origin: Origin,
    pub message: String,
}

impl ManifestError {
    pub(crate) fn new(origin: Origin, message: impl Into<String>) -> ManifestError {
        ManifestError { origin, message: message.into() }
    }
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "manifest {}: {}", self.origin, self.message)
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    pub fn parse(text: &str, source: &str) -> Result<Manifest, ManifestError> {
        crate::config::check_nesting(text, source)
            .map_err(|(origin, message)| ManifestError::new(origin, message))?;
        // As in the config, a name that YAML 1.1 reads as something else (`yes`, `on`) must
        // be quoted: the same name must mean the same thing in both files.
        let raw: RawManifest =
            crate::name::with_source(text, || serde_yaml::from_str(text)).map_err(|e| {
                let (origin, message) = yaml_error(text, source, &e);
                ManifestError::new(origin, message)
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

    /// Reads a manifest file, trusted like the config: whoever can edit it chooses where the
    /// secrets go (a variable the program logs, say), so it, every directory on the way and
    /// every link must be owned by root or the caller and not writable by others.
    /// Group-writable is allowed, for deploy groups.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let source = path.display().to_string();
        let text =
            crate::files::read_trusted(path, MAX_MANIFEST_BYTES, &crate::files::MANIFEST).map_err(|e| {
                let message = match e {
                    OpenError::Unsafe(message) => message,
                    OpenError::Missing(message) | OpenError::Unusable(message) => {
                        format!("{message}; give the secrets with --manifest FILE or --secret NAME")
                    }
                };
                ManifestError::new(Origin::file(&source), message)
            })?;
        Manifest::parse(&text, &source)
    }

    /// Adds an entry, refusing a second one for the same variable or descriptor.
    pub fn push(&mut self, entry: ManifestEntry) -> Result<(), ManifestError> {
        let clash = |what: String, other: &ManifestEntry| {
            Err(ManifestError::new(
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

    /// The manifest file (given, or the default one unless `--secret` stands in for it)
    /// plus every `--secret`.
    pub fn requested(path: Option<&Path>, secrets: &[String]) -> Result<Manifest, ManifestError> {
        let mut manifest = match (path, secrets.is_empty()) {
            (Some(path), _) => Manifest::load(path)?,
            (None, true) => Manifest::load(Path::new(DEFAULT_MANIFEST))?,
            (None, false) => Manifest::default(),
        };
        for secret in secrets {
            manifest.push(ManifestEntry::from_arg(secret)?)?;
        }
        if manifest.entries.is_empty() {
            return Err(ManifestError::new(
                Origin::file(path.map_or("--secret".to_owned(), |p| p.display().to_string())),
                "requests no secrets; a launcher with nothing to inject is a mistake",
            ));
        }
        Ok(manifest)
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
    ) -> Result<ManifestEntry, ManifestError> {
        let env = match (env, fd) {
            (Some(env), _) => Some(env),
            (None, Some(Descriptor::Fixed(_))) => None,
            (None, _) => Some(name.as_str().to_ascii_uppercase()),
        };
        if let Some(env) = &env {
            check_variable(env).map_err(|message| ManifestError::new(origin.clone(), message))?;
        }
        Ok(ManifestEntry { name, env, fd, optional, origin })
    }

    /// `--secret NAME[=ENV]`.
    pub fn from_arg(arg: &str) -> Result<ManifestEntry, ManifestError> {
        let origin = Origin::file(format!("--secret {}", arg.escape_debug()));
        let (name, env) = match arg.split_once('=') {
            Some((name, env)) => (name, Some(env.to_owned())),
            None => (arg, None),
        };
        let name = Name::new(name).map_err(|e| ManifestError::new(origin.clone(), e))?;
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
    if let Some((pattern, why)) = forbidden(env) {
        return Err(format!(
            "a secret may not be injected as {env} ({pattern}, in any case): {why}, so a secret \
             there could become code or choose the code that runs. Fix: inject it as another \
             variable (`env: OTHER` in the manifest, `--secret NAME=OTHER` on the command line)"
        ));
    }
    Ok(())
}

/// The entry of [`FORBIDDEN`] that `env` matches, in any case.
fn forbidden(env: &str) -> Option<(&'static str, &'static str)> {
    let upper = env.to_ascii_uppercase();
    FORBIDDEN.iter().copied().find(|(pattern, _)| match pattern.strip_suffix('*') {
        Some(prefix) => upper.starts_with(prefix),
        None => upper == *pattern,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        let e = Manifest::parse(text, "m.yaml").expect_err(text);
        assert_eq!(crate::Error::from(e.clone()).exit_code(), 65, "{e}");
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
    fn every_forbidden_target_is_refused_in_any_spelling() {
        for (pattern, _) in FORBIDDEN {
            let name = pattern.replace('*', "X");
            let mixed: String = (name.chars().enumerate())
                .map(|(i, c)| if i % 2 == 0 { c.to_ascii_lowercase() } else { c })
                .collect();
            for env in [name.clone(), name.to_ascii_lowercase(), mixed] {
                let e = ManifestEntry::from_arg(&format!("a={env}")).expect_err(&env);
                assert_eq!(crate::Error::from(e.clone()).exit_code(), 65);
                let message = e.to_string();
                assert!(message.starts_with(&format!("manifest --secret a={env}: ")), "{message}");
                assert!(
                    message.contains(&format!("injected as {env} ({pattern}, in any case)")),
                    "{message}"
                );
            }
        }
        for allowed in ["LDAP_PASSWORD", "PATHS", "MY_PATH", "SSL_CERT_FILE", "GIT_CREDENTIALS", "PS5"] {
            assert!(check_variable(allowed).is_ok(), "{allowed}");
        }
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
            assert_eq!(crate::Error::from(e.clone()).exit_code(), 65);
            assert!(e.to_string().starts_with("manifest --secret"), "{e}");
        }
    }
}
