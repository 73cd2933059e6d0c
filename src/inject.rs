//! The child's inputs, built on purpose. Its environment: the launcher's own variables pass
//! through (or only the `--keep` ones with `--clean-env`), never the ones that describe the
//! launcher (`MXM_*` control variables) nor the ones that held secrets (env-backend sources);
//! then each secret goes in under its variable. Its descriptors: each `fd`/`file` secret at
//! its number, placed by `exec` as a sealed in-memory file.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use zeroize::Zeroize;

use crate::backend::process::Environment;
use crate::config::Config;
use crate::error::{Error, FailureKind, SecretFailure};
use crate::manifest::{Descriptor, MAX_DESCRIPTOR, Manifest};
use crate::name::Name;
use crate::secret::SecretValue;

/// Variables that steer mxm-secrets itself. They describe the launcher's identity and
/// config, not the program's, so the program does not see them.
pub const CONTROL_VARIABLES: [&str; 7] = [
    "MXM_ROLE",
    "MXM_ENVIRONMENT",
    "MXM_MACHINE",
    "MXM_APP",
    "MXM_SUBSTRATE",
    "MXM_SECRETS_CONFIG",
    "MXM_SECRETS_BROKER",
];

/// What the program inherits from the launcher's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inherit {
    /// `--clean-env`: nothing but `keep`.
    pub clean: bool,
    /// `--keep VAR`: variables passed through even with `clean`.
    pub keep: Vec<String>,
}

/// Where one manifest entry goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub env: Option<String>,
    pub fd: Option<i32>,
}

/// Everything `exec` needs. Secret values stay in their wiping buffers until the last moment.
#[derive(Debug)]
pub struct LaunchPlan {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The variables passed through, and `VAR=/dev/fd/N` for descriptors: no secrets.
    pub env: Vec<(OsString, OsString)>,
    /// `(variable, value)` for every secret injected as a variable.
    pub secrets: Vec<(String, SecretValue)>,
    /// `(descriptor, name, value)` for every secret injected as a descriptor.
    pub descriptors: Vec<(i32, Name, SecretValue)>,
}

/// Every variable of the launcher that the config names as a secret's source (env backend),
/// whether or not this run asked for that secret, and every credential a store reads from
/// the environment (a vault token): neither ever leaks to a child.
pub fn source_variables(config: &Config) -> BTreeSet<String> {
    let sources = config.refs.iter().filter_map(|(_, secret)| {
        let store = config.stores.get(secret.store.as_str())?;
        let location = store.locate(&secret.path).ok()?;
        store.source_variable(&location).map(str::to_owned)
    });
    let credentials =
        config.stores.iter().flat_map(|(_, store)| store.credential_variables()).map(|v| v.to_string());
    sources.chain(credentials).collect()
}

/// Every variable of the launcher that no process it starts may see, neither the program nor
/// a backend: the control variables and [`source_variables`].
pub fn withheld(config: &Config) -> BTreeSet<String> {
    let mut withheld = source_variables(config);
    withheld.extend(CONTROL_VARIABLES.iter().map(|v| v.to_string()));
    withheld
}

/// The environment of every backend program: `inherited` (the launcher's) less
/// [`withheld`]. Our copies of the withheld values are wiped.
pub fn backend_environment(
    config: &Config,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) -> Environment {
    let withheld = withheld(config);
    let mut passed = Vec::new();
    for (key, value) in inherited {
        if withheld.contains(key.to_string_lossy().as_ref()) {
            value.into_vec().zeroize();
        } else {
            passed.push((key, value));
        }
    }
    Environment::new(passed)
}

/// The target of every manifest entry, in order. A `file: true` entry gets the lowest
/// descriptor from 3 that no entry asks for and `is_open` says the launcher does not hold
/// (an inherited descriptor, such as a systemd socket, is left alone). A descriptor at or
/// above this process's limit (`ulimit -n`) is refused: neither we nor the program could
/// hold it.
pub fn targets(manifest: &Manifest, is_open: impl Fn(i32) -> bool) -> Result<Vec<Target>, Error> {
    let limit = crate::exec::descriptor_limit();
    let within = |n: i32| u64::try_from(n).is_ok_and(|n| n < limit);
    if let Some((entry, n)) = manifest.entries.iter().find_map(|e| match e.fd {
        Some(Descriptor::Fixed(n)) if !within(n) => Some((e, n)),
        _ => None,
    }) {
        return Err(Error::manifest(
            entry.origin.clone(),
            format!(
                "fd {n} is not below this process's descriptor limit ({limit}, `ulimit -n`): choose a \
                 lower number, or raise the limit"
            ),
        ));
    }
    let mut taken: BTreeSet<i32> = manifest
        .entries
        .iter()
        .filter_map(|e| match e.fd {
            Some(Descriptor::Fixed(n)) => Some(n),
            _ => None,
        })
        .collect();
    let mut targets = Vec::with_capacity(manifest.entries.len());
    for entry in &manifest.entries {
        let fd = match entry.fd {
            None => None,
            Some(Descriptor::Fixed(n)) => Some(n),
            Some(Descriptor::Next) => {
                let free =
                    (3..=MAX_DESCRIPTOR).take_while(|n| within(*n)).find(|n| !taken.contains(n) && !is_open(*n)).ok_or_else(|| {
                        Error::manifest(entry.origin.clone(), format!("no free descriptor below the limit ({limit}, `ulimit -n`) is left for `file: true`"))
                    })?;
                taken.insert(free);
                Some(free)
            }
        };
        targets.push(Target { env: entry.env.clone(), fd });
    }
    Ok(targets)
}

/// Whether this process holds descriptor `n` (read from /proc, which needs no unsafe code).
pub fn is_open(n: i32) -> bool {
    std::fs::symlink_metadata(format!("/proc/self/fd/{n}")).is_ok()
}

/// Builds the plan from the launcher's environment `inherited`, the fetched `values` (by
/// name; a name missing from it was optional and is skipped) and the command line. A name
/// injected twice gets a copy per target; `values` is wiped when the caller drops it.
pub fn plan(
    config: &Config,
    manifest: &Manifest,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    inherit: &Inherit,
    values: &[(Name, SecretValue)],
    command: Vec<OsString>,
) -> Result<LaunchPlan, Error> {
    let mut command = command.into_iter();
    let program =
        command.next().ok_or_else(|| Error::Usage("no command to run was given after `--`".to_owned()))?;
    let withheld = withheld(config);
    let forbidden = |key: &str| withheld.contains(key);
    if let Some(key) = inherit.keep.iter().find(|k| forbidden(k)) {
        return Err(Error::Usage(format!(
            "--keep {key}: that variable steers mxm-secrets or holds a secret's source, and never reaches the program"
        )));
    }
    let targets = targets(manifest, is_open)?;
    let injected: BTreeSet<&str> = targets.iter().filter_map(|t| t.env.as_deref()).collect();
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    for (key, value) in inherited {
        let name = key.to_string_lossy();
        let passes = !forbidden(&name)
            && !injected.contains(name.as_ref())
            && (!inherit.clean || inherit.keep.iter().any(|k| *k == name));
        if passes {
            env.push((key, value));
        } else {
            // It may be a secret's source: wipe our copy of it.
            value.into_vec().zeroize();
        }
    }
    let mut secrets = Vec::new();
    let mut descriptors = Vec::new();
    let mut failures = Vec::new();
    for (entry, target) in manifest.entries.iter().zip(targets) {
        let Some((_, value)) = values.iter().find(|(name, _)| *name == entry.name) else { continue };
        match (target.fd, target.env) {
            (Some(fd), variable) => {
                descriptors.push((fd, entry.name.clone(), value.copy()));
                if let Some(variable) = variable {
                    env.push((variable.into(), format!("/dev/fd/{fd}").into()));
                }
            }
            (None, Some(variable)) if value.expose().contains(&0) => failures.push(SecretFailure {
                name: entry.name.to_string(),
                kind: FailureKind::Unusable(format!(
                    "the value contains a NUL byte, so it cannot be the variable {variable} (a descriptor can hold it: `fd` or `file: true`)"
                )),
            }),
            (None, Some(variable)) => secrets.push((variable, value.copy())),
            (None, None) => {}
        }
    }
    if !failures.is_empty() {
        return Err(Error::Secrets(failures));
    }
    Ok(LaunchPlan { program, args: command.collect(), env, secrets, descriptors })
}

/// The bytes of a value as an `OsStr`, for `Command::env`.
pub fn as_os_str(value: &SecretValue) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(value.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An env store (its sources are withheld) and the test-only memory store.
    const CONFIG: &str = "\
stores:
  src: {backend: env, root: mxm_src}
  mem: {backend: memory, root: m}
refs:
  token: {store: mem, path: t, policy: p}
  from_env: {store: src, path: db, policy: p}
policies:
  p: {allowed_principals: [worker]}
";

    fn config() -> Config {
        Config::parse(CONFIG, "c.yaml").unwrap()
    }

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    fn value(name: &str, bytes: &[u8]) -> (Name, SecretValue) {
        (Name::new(name).unwrap(), SecretValue::new(bytes.to_vec()))
    }

    const INHERITED: &[(&str, &str)] = &[
        ("PATH", "/bin"),
        ("MXM_ROLE", "worker"),
        ("MXM_SRC_DB", "source"),
        ("TOKEN", "stale"),
        ("HOME", "/root"),
        ("MXM_SECRETS_CONFIG", "c.yaml"),
    ];

    fn planned(
        manifest: &str,
        inherit: &Inherit,
        values: &[(Name, SecretValue)],
    ) -> Result<LaunchPlan, Error> {
        let manifest = Manifest::parse(manifest, "m.yaml").unwrap();
        let command = vec!["prog".into(), "one".into(), "two".into()];
        plan(&config(), &manifest, os(INHERITED), inherit, values, command)
    }

    fn env_of(plan: &LaunchPlan) -> Vec<(String, String)> {
        plan.env.iter().map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into())).collect()
    }

    fn secrets_of(plan: &LaunchPlan) -> Vec<(String, Vec<u8>)> {
        plan.secrets.iter().map(|(k, v)| (k.clone(), v.expose().to_vec())).collect()
    }

    #[test]
    fn variables_pass_except_control_sources_and_injected_ones() {
        let values = [value("token", b"t0k"), value("from_env", b"pw")];
        let plan = planned(
            "secrets:\n  - {name: token}\n  - {name: from_env, env: DB}\n",
            &Inherit::default(),
            &values,
        )
        .unwrap();
        assert_eq!((plan.program.to_str(), plan.args.len()), (Some("prog"), 2));
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(env_of(&plan), [pair("PATH", "/bin"), pair("HOME", "/root")]);
        assert_eq!(
            secrets_of(&plan),
            [("TOKEN".to_owned(), b"t0k".to_vec()), ("DB".to_owned(), b"pw".to_vec())]
        );
        assert!(plan.descriptors.is_empty());
        // The source of an env secret is withheld even when this run did not ask for it.
        let plan = planned("secrets:\n  - {name: token}\n", &Inherit::default(), &values[..1]).unwrap();
        assert_eq!(env_of(&plan), [pair("PATH", "/bin"), pair("HOME", "/root")]);
        assert!(withheld(&config()).contains("MXM_SRC_DB"));
    }

    #[test]
    fn clean_env_keeps_only_what_is_asked_and_never_a_withheld_variable() {
        let values = [value("token", b"t0k")];
        let manifest = "secrets:\n  - {name: token}\n";
        let inherit = Inherit { clean: true, keep: vec!["HOME".into()] };
        let plan = planned(manifest, &inherit, &values).unwrap();
        assert_eq!(env_of(&plan), [("HOME".to_owned(), "/root".to_owned())]);
        assert_eq!(secrets_of(&plan).len(), 1);
        let plan = planned(manifest, &Inherit { clean: true, keep: vec![] }, &values).unwrap();
        assert!(plan.env.is_empty());
        for key in ["MXM_ROLE", "MXM_SRC_DB"] {
            let inherit = Inherit { clean: false, keep: vec![key.into()] };
            let error = planned(manifest, &inherit, &values).unwrap_err();
            assert_eq!(error.exit_code(), 64, "{error}");
            assert!(error.to_string().contains(&format!("--keep {key}")), "{error}");
        }
    }

    /// A name missing from `values` was optional and skipped; a command is required.
    #[test]
    fn skipped_names_and_a_missing_command() {
        let skipped =
            planned("secrets:\n  - {name: token}\n  - {name: from_env, fd: 4}\n", &Inherit::default(), &[])
                .unwrap();
        assert!(skipped.secrets.is_empty() && skipped.descriptors.is_empty());
        let manifest = Manifest::parse("secrets:\n  - {name: token}\n", "m.yaml").unwrap();
        let error = plan(&config(), &manifest, os(&[]), &Inherit::default(), &[], vec![]).unwrap_err();
        assert_eq!(error.exit_code(), 64);
    }

    /// A NUL byte cannot be in a variable (65, at the secret's name) but a descriptor takes it.
    #[test]
    fn a_nul_byte_goes_to_a_descriptor_only() {
        let values = [value("token", b"a\0b")];
        let Err(Error::Secrets(failures)) =
            planned("secrets:\n  - {name: token}\n", &Inherit::default(), &values)
        else {
            panic!("a NUL byte went into a variable")
        };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].name, "token");
        assert_eq!(failures[0].kind.exit_code(), 65);
        assert!(failures[0].kind.to_string().contains("NUL byte"), "{}", failures[0].kind);
        let plan =
            planned("secrets:\n  - {name: token, fd: 7, env: TOKEN_FILE}\n", &Inherit::default(), &values)
                .unwrap();
        assert_eq!(plan.descriptors.len(), 1);
        assert_eq!((plan.descriptors[0].0, plan.descriptors[0].2.expose()), (7, &b"a\0b"[..]));
        assert!(env_of(&plan).contains(&("TOKEN_FILE".to_owned(), "/dev/fd/7".to_owned())));
        assert!(plan.secrets.is_empty());
    }

    /// `file: true` takes the lowest descriptor from 3 that no entry asks for and the
    /// launcher does not hold; fixed ones stay where they are asked.
    #[test]
    fn file_true_picks_the_lowest_free_descriptor() {
        let manifest = Manifest::parse(
            "secrets:\n  - {name: a, file: true}\n  - {name: b, fd: 3}\n  - {name: c, file: true}\n  - {name: d}\n",
            "m.yaml",
        )
        .unwrap();
        let fds = |open: &dyn Fn(i32) -> bool| -> Vec<Option<i32>> {
            targets(&manifest, open).unwrap().iter().map(|t| t.fd).collect()
        };
        assert_eq!(fds(&|_| false), [Some(4), Some(3), Some(5), None]);
        assert_eq!(fds(&|n| n == 4 || n == 6), [Some(5), Some(3), Some(7), None]);
        let targets = targets(&manifest, |_| false).unwrap();
        assert_eq!(targets[3].env.as_deref(), Some("D"));
        // Nothing free below the limit: a manifest error naming the entry.
        let error = super::targets(&manifest, |_| true).unwrap_err();
        assert_eq!(error.exit_code(), 65);
        assert!(error.to_string().contains("no free descriptor"), "{error}");
    }
}
