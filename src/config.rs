//! The configuration: where it is found, who may have written it, and what it means.
//!
//! Both shapes of the reference load: `stores`/`refs`/`policies` (and our optional
//! `principals`) at the top level, or the same under `mxm_secrets:` beside other packages'
//! sections. Unknown keys, unknown backends, dangling references and unsafe paths are
//! refused at load, each error citing `file:line:column`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use crate::identity::PrincipalRule;
use crate::name::{Name, StorePath, did_you_mean, given, with_source};
use crate::origin::Origin;
use crate::value::{Field, Trim};

pub use crate::backend::SecretStore;
pub use crate::policy::SecretPolicy;

/// Config files larger than this are refused: a policy file has no reason to be big.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A public secret name's entry: where the secret lives and which policy guards it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawRef")]
pub struct SecretRef {
    pub store: Name,
    pub path: String,
    pub policy: Name,
    pub field: Option<Field>,
    pub trim: Trim,
    /// A pinned version, for stores that keep versions (`vault`, `aws_ssm`).
    pub version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRef {
    store: Defined<StoreKind>,
    path: StorePath,
    policy: Defined<PolicyKind>,
    #[serde(default, deserialize_with = "given")]
    field: Option<Field>,
    #[serde(default)]
    trim: Trim,
    #[serde(default, deserialize_with = "given")]
    version: Option<u64>,
}

impl From<RawRef> for SecretRef {
    fn from(raw: RawRef) -> Self {
        SecretRef {
            store: raw.store.0,
            path: raw.path.0,
            policy: raw.policy.0,
            field: raw.field,
            trim: raw.trim,
            version: raw.version,
        }
    }
}

/// A name that must be defined in another section ([`StoreKind`], [`PolicyKind`]); on the
/// second reading of a config it is checked where it stands.
struct Defined<K>(Name, PhantomData<K>);

trait Section {
    const WHAT: &'static str;
    fn names(known: &Known) -> &BTreeSet<Name>;
}
struct StoreKind;
struct PolicyKind;
impl Section for StoreKind {
    const WHAT: &'static str = "store";
    fn names(known: &Known) -> &BTreeSet<Name> {
        &known.stores
    }
}
impl Section for PolicyKind {
    const WHAT: &'static str = "policy";
    fn names(known: &Known) -> &BTreeSet<Name> {
        &known.policies
    }
}

impl<'de, K: Section> Deserialize<'de> for Defined<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Name::deserialize(deserializer)?;
        KNOWN.with(|known| match &*known.borrow() {
            Some(known) if !K::names(known).contains(&name) => {
                let defined = K::names(known);
                Err(serde::de::Error::custom(format!(
                    "{} `{name}` is not defined (defined: {}){}",
                    K::WHAT,
                    list(defined.iter()),
                    did_you_mean(name.as_str(), defined.iter().map(Name::as_str))
                )))
            }
            _ => Ok(Defined(name, PhantomData)),
        })
    }
}

/// Named entries of one kind, in name order. Loading refuses a name defined twice, which
/// YAML parsers (and the reference) otherwise resolve silently by keeping the last.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry<T>(BTreeMap<Name, T>);

pub type SecretStoreRegistry = Registry<SecretStore>;
pub type SecretRefRegistry = Registry<SecretRef>;
pub type SecretPolicyRegistry = Registry<SecretPolicy>;

impl<T> Registry<T> {
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.0.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Name, &T)> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Registry<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<T> {
            type Value = Registry<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to entries (write `{}` for none)")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Err(E::custom("is empty; write `{}` for a section with no entries"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = BTreeMap::new();
                while let Some(name) = map.next_key::<Name>()? {
                    if entries.contains_key(&name) {
                        return Err(serde::de::Error::custom(format!("`{name}` is defined twice")));
                    }
                    let entry = map.next_value()?;
                    entries.insert(name, entry);
                }
                Ok(Registry(entries))
            }
        }
        deserializer.deserialize_any(Entries(PhantomData))
    }
}

/// The loaded, checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (or what stood in for one), for messages.
    pub source: String,
    pub stores: SecretStoreRegistry,
    pub refs: SecretRefRegistry,
    pub policies: SecretPolicyRegistry,
    pub principals: Vec<PrincipalRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    stores: SecretStoreRegistry,
    refs: SecretRefRegistry,
    policies: SecretPolicyRegistry,
    #[serde(default, deserialize_with = "given")]
    principals: Option<Vec<PrincipalRule>>,
}

/// The `mxm_secrets:` shape: the other top-level keys belong to other packages.
#[derive(Deserialize)]
struct Wrapped {
    mxm_secrets: Sections,
}

#[derive(Deserialize)]
struct Peek {
    mxm_secrets: Option<serde::de::IgnoredAny>,
}

/// What the second reading of a config checks references against (see [`Config::parse`]).
struct Known {
    stores: BTreeSet<Name>,
    policies: BTreeSet<Name>,
}

thread_local! {
    static KNOWN: RefCell<Option<Known>> = const { RefCell::new(None) };
}

fn list<'a>(names: impl Iterator<Item = &'a Name>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// A config that is not there, cannot be read, is unsafe, or is invalid: exit 78.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No config file in any of the places looked at.
    NotFound { tried: Vec<PathBuf> },
    /// What is wrong, and where.
    Invalid { origin: Origin, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(origin: Origin, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { origin, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotFound { tried } => {
                f.write_str("no config file found; looked at:")?;
                for path in tried {
                    write!(f, "\n  {}", path.display())?;
                }
                f.write_str("\ngive one with --config FILE or MXM_SECRETS_CONFIG")
            }
            ConfigError::Invalid { origin, message } => write!(f, "config {origin}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks YAML config text. `source` names it in errors.
    ///
    /// The text is read twice: the first reading checks shape and values and learns the
    /// stores and policies; the second checks every reference against them. serde_yaml
    /// only knows line and column while it reads, so this is how a dangling reference gets
    /// an exact position. Config files are small; both readings together take microseconds.
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        check_nesting(text, source).map_err(|(origin, message)| ConfigError::invalid(origin, message))?;
        with_source(text, || Config::read(text, source))
    }

    /// [`Config::parse`] after the pre-checks, with `text` registered as the YAML source.
    fn read(text: &str, source: &str) -> Result<Config, ConfigError> {
        let wrapped = serde_yaml::from_str::<Peek>(text).is_ok_and(|p| p.mxm_secrets.is_some());
        let first = read_sections(text, source, wrapped)?;
        let known = Known {
            stores: first.stores.0.into_keys().collect(),
            policies: first.policies.0.into_keys().collect(),
        };
        KNOWN.with(|k| *k.borrow_mut() = Some(known));
        let second = read_sections(text, source, wrapped);
        KNOWN.with(|k| *k.borrow_mut() = None);
        let section = second?;
        let config = Config {
            source: source.to_owned(),
            stores: section.stores,
            refs: section.refs,
            policies: section.policies,
            principals: section.principals.unwrap_or_default(),
        };
        config.check_principal_rules()?;
        config.check_locations()?;
        Ok(config)
    }

    /// Loads a config file after checking that only its owner (or root) can change it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_protected(path)?;
        Config::parse(&text, &path.display().to_string())
    }

    /// The config file to use: `explicit`, else `$MXM_SECRETS_CONFIG`, else
    /// `$XDG_CONFIG_HOME/mxm/secrets.yaml` (`~/.config/...`), else `/etc/mxm/secrets.yaml`.
    pub fn discover(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
        if let Some(path) = explicit {
            return Ok(path.to_owned());
        }
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(path) = var("MXM_SECRETS_CONFIG") {
            return Ok(path);
        }
        let user = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")));
        let tried: Vec<PathBuf> = user
            .map(|dir| dir.join("mxm/secrets.yaml"))
            .into_iter()
            .chain([PathBuf::from("/etc/mxm/secrets.yaml")])
            .collect();
        match tried.iter().find(|p| p.exists()) {
            Some(found) => Ok(found.clone()),
            None => Err(ConfigError::NotFound { tried }),
        }
    }

    /// A rule that maps to a principal no policy allows can only ever deny: a typo, most likely.
    fn check_principal_rules(&self) -> Result<(), ConfigError> {
        let granted: BTreeSet<&str> =
            self.policies.iter().flat_map(|(_, p)| p.allowed_principals.iter().map(Name::as_str)).collect();
        for (index, rule) in self.principals.iter().enumerate() {
            if !granted.contains(rule.principal.as_str()) {
                return Err(ConfigError::invalid(
                    Origin::file(&self.source),
                    format!(
                        "principals[{index}]: principal `{}` is not allowed by any policy, so \
                         the rule could only deny{}",
                        rule.principal,
                        did_you_mean(rule.principal.as_str(), granted.iter().copied())
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every ref's path must be one its store's backend can address, and two refs must not
    /// read the same launcher variable (`db/pw` and `db-pw` both make `..._DB_PW`): one of
    /// them would silently get the other's secret.
    fn check_locations(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError::invalid(Origin::file(&self.source), message));
        let mut variables: BTreeMap<String, (&Name, &str)> = BTreeMap::new();
        for (name, secret) in self.refs.iter() {
            let Some(store) = self.stores.get(secret.store.as_str()) else {
                continue;
            };
            let location = match store.locate(&secret.path) {
                Ok(location) => location,
                Err(e) => {
                    return fail(format!("refs.{name}: store `{}` cannot use this path: {e}", secret.store));
                }
            };
            if secret.version.is_some() && !store.keeps_versions() {
                return fail(format!(
                    "refs.{name}: `version` is for stores that keep versions (vault, aws_ssm); store `{}` is {}",
                    secret.store,
                    store.backend.name()
                ));
            }
            let Some(variable) = store.source_variable(&location) else {
                continue;
            };
            match variables.insert(variable.to_owned(), (name, &secret.path)) {
                Some((other, path)) if path != secret.path => {
                    return fail(format!(
                        "refs `{other}` (path {path}) and `{name}` (path {}) both read variable \
                         {variable}; rename one path",
                        secret.path
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// One reading of the sections, under `mxm_secrets:` or at the top level.
fn read_sections(text: &str, source: &str, wrapped: bool) -> Result<Sections, ConfigError> {
    let result = if wrapped {
        serde_yaml::from_str::<Wrapped>(text).map(|w| w.mxm_secrets)
    } else {
        serde_yaml::from_str::<Sections>(text)
    };
    result.map_err(|e| {
        let (origin, message) = yaml_error(text, source, &e);
        ConfigError::invalid(origin, message)
    })
}

/// No real config or manifest nests flow collections (`[`, `{`) more than a few levels, and
/// libyaml's scanner takes time quadratic in that depth (100,000 levels: minutes). Refused
/// before parsing, at the position where the limit is passed.
pub(crate) const MAX_NESTING: usize = 64;

/// libyaml's cost grows with the square of the depth it actually reaches, and a pre-scan
/// that is not libyaml can be led astray (a quote it pairs differently, a comment it reads
/// differently). So, whatever the depth count says, no text may hold more `[` and `{` than
/// this, counted everywhere, comments and quotes included: no depth can exceed it, and
/// libyaml reaching that depth costs well under a second. A real config of ten thousand
/// flow collections would be a fleet's worth of secrets written inline, one per line.
pub(crate) const MAX_FLOW_OPENINGS: usize = 10_000;

/// Counts an upper bound of the flow nesting depth, following libyaml's scanner where it
/// matters and erring towards counting deeper wherever it does not follow it exactly:
///
/// - White space is what libyaml calls blank (` `, `\t`) and its line breaks (`\n`, `\r`,
///   U+0085, U+2028, U+2029), never Unicode's wider idea of it: `\u{a0}#` starts no comment.
/// - A comment surely starts at `#` after a blank, a break or the start of the text, and ends
///   at any line break. Nothing in it counts.
/// - A `#` right after an indicator or a quote (`[#`, `,#`, `'#`) is a comment to libyaml in
///   flow context and text elsewhere: until the line ends, an opening bracket counts and a
///   closing one does not, which is deeper than libyaml either way.
/// - A quote may start wherever a token may (a superset of where libyaml starts one); inside
///   it an opening bracket still counts and a closing one does not.
/// - Everything else: `[`/`{` count up, `]`/`}` count down.
pub(crate) fn check_nesting(text: &str, source: &str) -> Result<(), (Origin, String)> {
    #[derive(PartialEq)]
    enum Comment {
        No,
        Sure,
        Maybe,
    }
    let is_break = |c: char| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
    let is_blank = |c: char| c == ' ' || c == '\t';
    let chars: Vec<char> = text.chars().collect();
    let mut depth = 0usize;
    let mut openings = 0usize;
    let mut quote: Option<char> = None;
    let mut comment = Comment::No;
    let (mut line, mut column) = (1, 0);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let previous = if i == 0 { '\n' } else { chars[i - 1] };
        column += 1;
        if is_break(c) {
            comment = Comment::No;
            // `\r\n` is one break.
            if !(c == '\r' && chars.get(i + 1) == Some(&'\n')) {
                (line, column) = (line + 1, 0);
            }
        } else if comment == Comment::Sure {
        } else if let Some(q) = quote {
            match c {
                '\\' if q == '"' => i += 1,
                '\'' if q == '\'' && chars.get(i + 1) == Some(&'\'') => i += 1,
                c if c == q => quote = None,
                '[' | '{' => depth += 1,
                _ => {}
            }
        } else if comment == Comment::Maybe {
            if matches!(c, '[' | '{') {
                depth += 1;
            }
        } else {
            let after_space = is_blank(previous) || is_break(previous);
            let token_start = after_space || "[]{},:-?".contains(previous);
            match c {
                '#' if after_space => comment = Comment::Sure,
                '#' if token_start || matches!(previous, '\'' | '"' | '\u{feff}') => comment = Comment::Maybe,
                '"' | '\'' if token_start || previous == '\u{feff}' => quote = Some(c),
                '[' | '{' => depth += 1,
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if matches!(c, '[' | '{') {
            openings += 1;
        }
        if depth > MAX_NESTING || openings > MAX_FLOW_OPENINGS {
            let origin = Origin { source: source.to_owned(), line: Some(line), column: Some(column) };
            let message = if depth > MAX_NESTING {
                format!(
                    "`[` and `{{` nest more than {MAX_NESTING} levels deep here; no config or manifest needs that"
                )
            } else {
                format!(
                    "more than {MAX_FLOW_OPENINGS} `[` and `{{` by here (comments and quoted text \
                     included); no config or manifest needs that many: write long lists as \
                     block lists (`- item` lines)"
                )
            };
            return Err((origin, message));
        }
        i += 1;
    }
    Ok(())
}

/// A serde_yaml error as `(file:line:column, message)`, in the file's words: a tab or an odd
/// indentation named as the cause where one is, no Rust type names, and a "did you mean" for
/// unknown keys and names. `text` is what was parsed, to find the cause in.
pub(crate) fn yaml_error(text: &str, source: &str, error: &serde_yaml::Error) -> (Origin, String) {
    use crate::yaml_errors::{indenting_tab, odd_indentation, plain_words, without_positions};
    let location = error.location();
    let at = |line, column| Origin { source: source.to_owned(), line: Some(line), column: Some(column) };
    let error_line = location.as_ref().map_or(usize::MAX, |l| l.line());
    let mut message = plain_words(&without_positions(&error.to_string()));
    if let Some((line, column)) = indenting_tab(text).filter(|(line, _)| *line <= error_line) {
        return (at(line, column), "tabs cannot indent YAML; use spaces".to_owned());
    }
    // libyaml's own errors ("did not find expected key") have no serde path before them.
    let syntax = message.contains("while parsing") || message.contains("while scanning");
    if let Some((line, indent, open)) = odd_indentation(text) {
        let levels: Vec<String> = open.iter().map(ToString::to_string).collect();
        let why = format!(
            "line {line} is indented by {indent} spaces, but the lines it could belong to by {}; \
             YAML nests by indentation",
            levels.join(" or ")
        );
        if syntax && line <= error_line {
            return (at(line, indent + 1), format!("{why} (the parser said: {message})"));
        }
        if !syntax {
            message = format!("{message} ({why})");
        }
    }
    message.push_str(&suggestion_for_unknown(&message));
    let origin = Origin {
        source: source.to_owned(),
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
    };
    (origin, message)
}

/// serde words unknown keys as "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a` or `b`"): the candidates are in the message itself.
fn suggestion_for_unknown(message: &str) -> String {
    let Some(rest) =
        message.split("unknown field `").nth(1).or_else(|| message.split("unknown variant `").nth(1))
    else {
        return String::new();
    };
    let Some((word, expected)) = rest.split_once('`') else {
        return String::new();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    did_you_mean(word, candidates)
}

/// Reads a file that holds policy: a regular file that only root or we can change, reached
/// through directories and links that only root or we can change (sshd's StrictModes rule;
/// [`crate::files::read_trusted`] checks every step of the way).
fn read_protected(path: &Path) -> Result<String, ConfigError> {
    crate::files::read_trusted(path, MAX_CONFIG_BYTES, &crate::files::CONFIG)
        .map_err(|e| ConfigError::invalid(Origin::file(path.display().to_string()), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = "\
stores:
  red:
    backend: gopass
    root: mxm/red
refs:
  databento_api_key:
    store: red
    path: marketdata/databento/api_key
    policy: marketdata_access
policies:
  marketdata_access:
    allowed_principals:
      - marketdata
      - research
";

    fn error(text: &str) -> String {
        match Config::parse(text, "c.yaml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => {
                assert_eq!(crate::Error::from(e.clone()).exit_code(), 78, "{e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn the_reference_example_loads_with_its_meaning() {
        let config = Config::parse(REFERENCE, "c.yaml").unwrap();
        let secret = config.refs.get("databento_api_key").unwrap();
        assert_eq!(secret.store.as_str(), "red");
        assert_eq!(secret.path, "marketdata/databento/api_key");
        assert_eq!(secret.trim, Trim::Whitespace);
        let store = config.stores.get("red").unwrap();
        assert_eq!(store.locate(&secret.path).unwrap(), "mxm/red/marketdata/databento/api_key");
        assert_eq!(store.timeout, crate::backend::DEFAULT_TIMEOUT);
        let policy = config.policies.get("marketdata_access").unwrap();
        assert_eq!(policy.allowed_principals.len(), 2);
    }

    #[test]
    fn the_wrapped_shape_loads_beside_other_sections() {
        let indented: String = REFERENCE.lines().map(|l| format!("  {l}\n")).collect();
        let text = format!("mxm_datakraken:\n  anything: 1\nmxm_secrets:\n{indented}");
        let config = Config::parse(&text, "c.yaml").unwrap();
        assert!(config.refs.contains("databento_api_key"));
    }

    #[test]
    fn empty_sections_are_fine_missing_ones_are_not() {
        Config::parse("stores: {}\nrefs: {}\npolicies: {}\n", "c.yaml").unwrap();
        assert!(error("stores: {}\nrefs: {}\n").contains("missing field `policies`"));
        assert!(error("stores:\nrefs: {}\npolicies: {}\n").contains("stores"));
        assert!(error("").contains("missing field `stores`"));
    }

    #[test]
    fn a_root_with_a_trailing_slash_joins_like_the_reference() {
        let text = REFERENCE.replace("root: mxm/red", "root: mxm/red/");
        let config = Config::parse(&text, "c.yaml").unwrap();
        let store = config.stores.get("red").unwrap();
        assert_eq!(store.locate("a/b").unwrap(), "mxm/red/a/b");
    }

    #[test]
    fn unknown_keys_are_refused_with_a_suggestion_and_a_position() {
        let message = error(&REFERENCE.replace("    root: mxm/red", "    rot: mxm/red"));
        assert!(message.starts_with("config c.yaml:4:5: stores.red: unknown field `rot`"), "{message}");
        assert!(message.ends_with("did you mean `root`?"), "{message}");
        let message = error(
            &REFERENCE
                .replace("    policy: marketdata_access", "    policy: marketdata_access\n    polcy: x"),
        );
        assert!(message.contains("refs.databento_api_key: unknown field `polcy`"), "{message}");
        let message = error(&format!("{REFERENCE}principles: []\n"));
        assert!(message.contains("did you mean `principals`?"), "{message}");
    }

    #[test]
    fn unknown_backends_are_refused() {
        let message = error(&REFERENCE.replace("backend: gopass", "backend: gopas"));
        assert!(
            message.starts_with("config c.yaml:3:14: stores.red.backend: unknown variant `gopas`"),
            "{message}"
        );
        assert!(message.ends_with("did you mean `gopass`?"), "{message}");
        let message = error(&REFERENCE.replace("backend: gopass", "backend: keychain"));
        assert!(!message.contains("did you mean"), "{message}");
        let message = error(&REFERENCE.replace("root: mxm/red", "root: mxm/red\n    binary: ''"));
        assert!(message.contains("stores.red.binary: program `` must name a program"), "{message}");
        let message = error("stores: {e: {backend: env, root: x, binary: y}}\nrefs: {}\npolicies: {}\n");
        assert!(message.contains("`binary` is not an option of backend `env`"), "{message}");
    }

    /// Issue 13 item 2: a store takes its own backend's options and no other's, refused at the
    /// key's own line and column, whichever order the keys come in.
    #[test]
    fn options_of_other_backends_are_refused_where_they_stand() {
        let store = |body: &str| format!("stores:\n  s:\n{body}refs: {{}}\npolicies: {{}}\n");
        let message = error(&store(
            "    backend: gopass\n    root: mxm/red\n    address: 'https://vault:8200'\n    token_file: /t\n    ca_cert: /c\n",
        ));
        assert!(
            message.starts_with(
                "config c.yaml:5:5: stores.s: `address` is not an option of backend `gopass` (its options: \
                 binary; `address` is an option of backend `vault`)"
            ),
            "{message}"
        );
        let message = error(&store("    backend: gopass\n    root: mxm/red\n    token_file: /t\n"));
        assert!(
            message.starts_with("config c.yaml:5:5: stores.s: `token_file` is not an option"),
            "{message}"
        );
        let message =
            error("stores: {s: {backend: pass, root: /p, binary: gopass}}\nrefs: {}\npolicies: {}\n");
        assert!(
            message.contains("`binary` is not an option of backend `pass` (its options: gpg;"),
            "{message}"
        );
        let message = error("stores: {s: {backend: file, root: /p, command: [x]}}\nrefs: {}\npolicies: {}\n");
        assert!(
            message.contains("`command` is not an option of backend `file` (its options: none;"),
            "{message}"
        );
        let message = error("stores: {s: {backend: vault, root: s/x, gpg: gpg}}\nrefs: {}\npolicies: {}\n");
        assert!(message.contains("`gpg` is not an option of backend `vault`"), "{message}");
        // Options before `backend:` are held until it is read, and checked then, at its line.
        let message = error(&store("    root: mxm/red\n    token_file: /t\n    backend: gopass\n"));
        assert!(
            message.starts_with("config c.yaml:5:14: stores.s.backend: `token_file` is not an option"),
            "{message}"
        );
        let config =
            Config::parse(&store("    root: secret/x\n    token_file: /t\n    backend: vault\n"), "c.yaml")
                .unwrap();
        assert_eq!(config.stores.get("s").unwrap().backend.name(), "vault");
        let config = Config::parse(
            &store("    binary: /bin/gopass\n    root: r\n    backend: gopass\n    timeout: 3\n"),
            "c.yaml",
        )
        .unwrap();
        assert_eq!(config.stores.get("s").unwrap().backend.program().as_deref(), Some("/bin/gopass"));
        // Held values keep every rule: null and YAML 1.1 words are refused, naming the key.
        let message = error(&store("    root: r\n    binary: yes\n    backend: gopass\n"));
        assert!(message.contains("stores.s: binary: `yes` is a boolean in YAML 1.1"), "{message}");
        let message = error(&store("    root: r\n    binary:\n    backend: gopass\n"));
        assert!(message.contains("stores.s: binary: is null"), "{message}");
        // A key of no backend is refused where it stands, before `backend:` or after.
        let message = error(&store("    rot: x\n    backend: gopass\n"));
        assert!(message.starts_with("config c.yaml:3:5: stores.s: unknown field `rot`"), "{message}");
        assert!(message.ends_with("did you mean `root`?"), "{message}");
        let message = error(&store("    backend: gopass\n    root: r\n    binry: x\n"));
        assert!(message.ends_with("did you mean `binary`?"), "{message}");
        // Common keys are taken once, and `backend` is required.
        assert!(
            error(&store("    backend: gopass\n    root: r\n    root: s\n"))
                .contains("duplicate field `root`")
        );
        assert!(
            error(&store("    backend: gopass\n    root: r\n    backend: pass\n"))
                .contains("duplicate field `backend`")
        );
        assert!(error(&store("    root: r\n    binary: b\n")).contains("missing field `backend`"));
        assert!(error(&store("    backend: gopass\n")).contains("missing field `root`"));
    }

    #[test]
    fn dangling_references_are_refused_where_they_stand() {
        let message = error(&REFERENCE.replace("store: red", "store: rde"));
        assert!(message.starts_with("config c.yaml:7:5: refs.databento_api_key:"), "{message}");
        assert!(
            message.contains("store `rde` is not defined (defined: `red`); did you mean `red`?"),
            "{message}"
        );
        let message = error(&REFERENCE.replace("policy: marketdata_access", "policy: marketdata"));
        assert!(message.contains("policy `marketdata` is not defined"), "{message}");
    }

    #[test]
    fn bad_paths_and_names_are_refused() {
        for path in ["/etc/shadow", "../x", "a//b", "-rf", "a/./b", "' a'", "\"a\\tb\""] {
            let message =
                error(&REFERENCE.replace("path: marketdata/databento/api_key", &format!("path: {path}")));
            assert!(message.contains("refs.databento_api_key"), "{path}: {message}");
            assert!(message.contains("path"), "{path}: {message}");
        }
        let message = error(&REFERENCE.replace("databento_api_key:", "Databento:"));
        assert!(message.contains("not a valid name"), "{message}");
        let message = error(&REFERENCE.replace("- research", "- marketdata"));
        assert!(message.contains("listed twice"), "{message}");
        let message = error(&REFERENCE.replace("root: mxm/red", "root: ../red"));
        assert!(message.contains("root"), "{message}");
    }

    #[test]
    fn names_defined_twice_are_refused() {
        let text =
            REFERENCE.replace("policies:\n", "policies:\n  marketdata_access: {allowed_principals: []}\n");
        let message = error(&text);
        assert!(message.contains("`marketdata_access` is defined twice"), "{message}");
    }

    #[test]
    fn vault_stores() {
        let text = "stores:\n  v: {backend: vault, root: secret/mxm, address: 'https://vault:8200', namespace: a}\n  f: {backend: file, root: /run/secrets}\nrefs:\n  a: {store: v, path: db, policy: p, field: password, version: 3}\npolicies:\n  p: {allowed_principals: [x]}\n";
        let config = Config::parse(text, "c.yaml").unwrap();
        assert_eq!(config.refs.get("a").unwrap().version, Some(3));
        assert_eq!(config.stores.get("v").unwrap().locate("db").unwrap(), "secret/data/mxm/db");
        let message = error(&text.replace("store: v,", "store: f,"));
        assert!(
            message.contains(
                "refs.a: `version` is for stores that keep versions (vault, aws_ssm); store `f` is file"
            ),
            "{message}"
        );
        let message = error(&text.replace("'https://vault:8200'", "'http://vault:8200'"));
        assert!(message.contains("plain http to another machine"), "{message}");
        Config::parse(
            &text.replace("'https://vault:8200'", "'http://vault:8200', insecure_http: true"),
            "c.yaml",
        )
        .unwrap();
        let message = error(&text.replace("namespace: a", "role_id: r"));
        assert!(message.contains("AppRole needs both `role_id` and `secret_id_file`"), "{message}");
        let message = error(&text.replace("namespace: a", "role_id: r, secret_id_file: /s, token_file: /t"));
        assert!(message.contains("not both"), "{message}");
        let message = error(&text.replace("namespace: a", "tokenfile: /t"));
        assert!(message.contains("did you mean `token_file`?"), "{message}");
    }

    #[test]
    fn timeouts() {
        let with = |t: &str| REFERENCE.replace("root: mxm/red", &format!("root: mxm/red\n    timeout: {t}"));
        let config = Config::parse(&with("2.5"), "c.yaml").unwrap();
        assert_eq!(config.stores.get("red").unwrap().timeout.as_millis(), 2500);
        // A duration with a unit, as --watch and --stop-timeout take (crate::duration).
        for (given, millis) in
            [("500ms", 500), ("30s", 30_000), ("2m", 120_000), ("'1h'", 3_600_000), ("\"4\"", 4000)]
        {
            let config = Config::parse(&with(given), "c.yaml").unwrap();
            assert_eq!(config.stores.get("red").unwrap().timeout.as_millis(), millis, "{given}");
        }
        for bad in ["0", "-1", "100000", ".nan", "ten", "0s", "2h", "5d", "true"] {
            error(&with(bad));
        }
        assert!(error(&with("ten")).contains("`ten` is not a duration"));
    }

    #[test]
    fn principal_rules() {
        let with = |rules: &str| format!("{REFERENCE}principals:\n{rules}");
        let config = Config::parse(&with("  - {principal: research, role: analyst}\n"), "c.yaml").unwrap();
        assert_eq!(config.principals.len(), 1);
        let message = error(&with("  - {principal: reserch, role: analyst}\n"));
        assert!(message.contains("did you mean `research`?"), "{message}");
        let message = error(&with("  - {principal: research}\n"));
        assert!(message.contains("nothing to match"), "{message}");
        let message = error(&with("  - {principal: research, rol: x}\n"));
        assert!(message.contains("did you mean `role`?"), "{message}");
    }

    /// Users and groups are looked up while the config loads: an unknown name is refused at
    /// its line and key, like any other error, and so are bad types and duplicates.
    #[test]
    fn users_groups_and_units_are_checked_where_they_stand() {
        let with = |policy: &str, rules: &str| {
            format!(
                "stores: {{s: {{backend: gopass, root: r}}}}\nrefs: {{a: {{store: s, path: a, policy: p}}}}\npolicies:\n  p: {policy}\nprincipals:\n{rules}"
            )
        };
        let rule = "  - {principal: x, role: y}\n";
        let config = Config::parse(
            &with(
                "{allowed_principals: [x], users: [root, 4000000], groups: [root], units: [a.service]}",
                "  - {principal: x, user: root, group: 0, unit: b.service}\n",
            ),
            "c.yaml",
        )
        .unwrap();
        assert_eq!(config.principals[0].user.as_ref().map(|u| u.id), Some(0));
        for (policy, rules, expected) in [
            (
                "{allowed_principals: [x], users: [root, no_such_user_mxm]}",
                rule,
                "config c.yaml:4:46: policies.p.users[1]: there is no user named `no_such_user_mxm` on this system",
            ),
            (
                "{allowed_principals: [x], groups: [no_such_group_mxm]}",
                rule,
                "config c.yaml:4:41: policies.p.groups[0]: there is no group named `no_such_group_mxm`",
            ),
            (
                "{allowed_principals: [x]}",
                "  - {principal: x, user: no_such_user_mxm}\n",
                "config c.yaml:6:26: principals[0].user: there is no user named `no_such_user_mxm`",
            ),
            (
                "{allowed_principals: [x], users: [0, root]}",
                rule,
                "policies.p.users: user root (uid 0) is listed twice",
            ),
            ("{allowed_principals: [x], users: [true]}", rule, "policies.p.users[0]: `true` is a boolean"),
            ("{allowed_principals: [x], users: [-3]}", rule, "uid -3 is negative"),
            ("{allowed_principals: [x], groups: [{a: 1}]}", rule, "policies.p.groups[0]"),
            (
                "{allowed_principals: [x], units: [feed]}",
                rule,
                "config c.yaml:4:39: policies.p.units: unit `feed` is not a systemd unit name",
            ),
            ("{allowed_principals: [x], users: ~}", rule, "policies.p.users: is null"),
            ("{allowed_principals: [x], user: [root]}", rule, "unknown field `user`"),
            ("{allowed_principals: [x]}", "  - {principal: x, users: root}\n", "unknown field `users`"),
        ] {
            let message = error(&with(policy, rules));
            assert!(message.contains(expected), "{policy} {rules}: {message}");
            assert!(message.starts_with("config c.yaml:"), "{message}");
        }
    }

    #[test]
    fn env_variables_must_not_collide() {
        let text = "stores: {e: {backend: env, root: app}}\npolicies: {p: {allowed_principals: [a]}}\nrefs:\n  a: {store: e, path: db/pw, policy: p}\n  b: {store: e, path: db-pw, policy: p}\n";
        let message = error(text);
        assert!(
            message.contains("refs `a` (path db/pw) and `b` (path db-pw) both read variable APP_DB_PW"),
            "{message}"
        );
        // The same path twice (say, with different fields) is one variable, not a collision.
        let same_path = text.replace("path: db-pw, policy: p", "path: db/pw, policy: p, field: user");
        Config::parse(&same_path, "c.yaml").unwrap();
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep =
            |n: usize| format!("stores: {}{}\nrefs: {{}}\npolicies: {{}}\n", "[".repeat(n), "]".repeat(n));
        assert!(error(&deep(65)).starts_with("config c.yaml:1:73: `[` and `{` nest more than 64"));
        assert!(!error(&deep(64)).contains("nest more than"));
        let start = std::time::Instant::now();
        error(&deep(400_000));
        assert!(start.elapsed().as_secs() < 5, "refusing took {:?}", start.elapsed());
        // Closing brackets inside quotes or comments do not hide depth ...
        let hidden = format!("stores: {}\nrefs: {{}}\npolicies: {{}}\n", "[ ']]', ".repeat(70));
        assert!(error(&hidden).contains("nest more than"));
        let hidden = format!("stores: {}\nrefs: {{}}\npolicies: {{}}\n", "[ # ]]\n".repeat(70));
        assert!(error(&hidden).contains("nest more than"));
        let escaped = format!("stores: {}\nrefs: {{}}\npolicies: {{}}\n", "[ 'it''s ]', ".repeat(70));
        assert!(error(&escaped).contains("nest more than"));
        // ... and brackets in quoted strings and comments of a normal config do not count.
        let busy = format!(
            "{REFERENCE}{}",
            "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"
        );
        Config::parse(&busy, "c.yaml").unwrap();
    }

    #[test]
    fn nesting_follows_libyaml_white_space_and_breaks() {
        let deeper = |text: &str| check_nesting(text, "c").is_err();
        let open = "[".repeat(65);
        // Only ` ` and `\t` before `#` start a comment; any libyaml line break ends one.
        for blank in ['\u{a0}', '\u{2000}', '\u{3000}', '\u{feff}'] {
            assert!(deeper(&format!("a: [{blank}#{open}")), "{blank:?}");
        }
        for newline in ["\r", "\u{85}", "\u{2028}", "\u{2029}"] {
            assert!(deeper(&format!("a: # c{newline}{open}")), "{newline:?}");
        }
        // `[#]`: a comment to libyaml in flow context, so the `]` closes nothing.
        assert!(deeper(&"[#]\n".repeat(65)));
        // A real comment after a blank still hides everything up to the break.
        assert!(!deeper(&format!("a: 1 # {open}\nb: 2\t#{open}\r\nc: 3\n")));
        // A quote the pre-scan pairs differently from libyaml (`a 'b` is text inside a plain
        // scalar, so `'c ]]]'` is the quote) cannot hide depth: the count of openings bounds it.
        let resync = format!("x: {}\n", "[{x: a 'b, 'c ]]]' }, ".repeat(20_000));
        let start = std::time::Instant::now();
        let (_, message) = check_nesting(&resync, "c").unwrap_err();
        assert!(message.contains("more than 10000 `[` and `{`"), "{message}");
        assert!(start.elapsed().as_millis() < 1000);
        let many: String =
            (0..3000).map(|i| format!("  r{i}: {{store: s, path: p{i}, policy: p}}\n")).collect();
        check_nesting(&format!("refs:\n{many}"), "c").unwrap();
        // Lines are counted as libyaml counts them (`\r\n` is one break).
        let (origin, _) = check_nesting(&format!("a: 1\r\nb: 2\rc: {open}"), "c").unwrap_err();
        assert_eq!(origin.line, Some(3));
    }

    /// Issue 11 item 10: a null where a value or list may be left out is refused where it
    /// stands, for every optional key of policies, rules, refs and stores.
    #[test]
    fn nulls_are_refused_where_they_stand() {
        let store = "{backend: vault, root: secret/x}";
        let base = |store: &str, reference: &str, policy: &str, rule: &str| {
            format!(
                "stores:\n  s: {store}\nrefs:\n  r: {reference}\npolicies:\n  p: {policy}\nprincipals:\n  - {rule}\n"
            )
        };
        let reference = "{store: s, path: a, policy: p}";
        let policy = "{allowed_principals: [a, b]}";
        let rule = "{principal: a, role: x}";
        Config::parse(&base(store, reference, policy, rule), "c.yaml").unwrap();
        let mut cases = vec![
            // The issue's own: all items commented out.
            (
                base(
                    store,
                    reference,
                    "\n    allowed_principals: [a, b]\n    environments:\n      # - prod",
                    rule,
                ),
                "policies.p.environments",
            ),
            (
                base(store, reference, policy, "{principal: a, role: x, environment: }"),
                "principals[0].environment",
            ),
        ];
        for key in ["environments", "machines"] {
            cases
                .push((base(store, reference, &format!("{{allowed_principals: [a], {key}: ~}}"), rule), key));
        }
        for key in ["role", "environment", "machine", "app", "substrate"] {
            let other = if key == "role" { "machine: m" } else { "role: x" };
            cases.push((
                base(store, reference, policy, &format!("{{principal: a, {other}, {key}: null}}")),
                key,
            ));
        }
        for key in ["field", "version"] {
            cases.push((
                base(store, &format!("{{store: s, path: a, policy: p, {key}: }}"), policy, rule),
                key,
            ));
        }
        for key in [
            "timeout",
            "address",
            "token_file",
            "role_id",
            "secret_id_file",
            "ca_cert",
            "namespace",
            "insecure_http",
        ] {
            cases.push((
                base(&format!("{{backend: vault, root: secret/x, {key}: ~}}"), reference, policy, rule),
                key,
            ));
        }
        for (backend, key) in [("gopass", "binary"), ("pass", "gpg"), ("command", "command")] {
            let root = if backend == "pass" { "/p" } else { "p" };
            cases.push((
                base(&format!("{{backend: {backend}, root: {root}, {key}: }}"), reference, policy, rule),
                key,
            ));
        }
        for (text, key) in cases {
            let message = error(&text);
            assert!(message.contains(key), "{key}: {message}");
            assert!(message.contains("is null"), "{key}: {message}");
            assert!(message.starts_with("config c.yaml:"), "{key}: {message}");
            assert!(message.contains("or remove the key"), "{key}: {message}");
        }
        // Sections and lists that were already refused stay refused.
        for text in [
            base(store, reference, policy, rule)
                .replace("principals:\n  - {principal: a, role: x}\n", "principals:\n"),
            base(store, "{store: s, path: a, policy: p, trim: }", policy, rule),
            base(store, reference, "{allowed_principals: }", rule),
        ] {
            error(&text);
        }
    }

    #[test]
    fn syntax_errors_have_positions() {
        let message = error("stores: [\n");
        assert!(message.starts_with("config c.yaml:"), "{message}");
        let message = error("- just\n- a list\n");
        assert!(message.contains("c.yaml"), "{message}");
    }
}
