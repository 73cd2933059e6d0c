//! A configured store: the keys every store has (`backend`, `root`, `timeout`,
//! `max_concurrent`) and its backend's own options, typed by the backend.
//!
//! The mapping is read in one pass through the YAML parser, so every error keeps its
//! `file:line:column`: common keys are read where they stand, and once `backend:` is read
//! the rest of the mapping goes to that backend's options struct, whose derive refuses what
//! it does not know. A key that is an option of another backend is refused at its own line,
//! naming the backend it belongs to. Option keys written before `backend:` cannot be typed
//! yet (serde reads a mapping once, in order): they are held as YAML values and checked when
//! `backend:` is read, their errors then citing the store rather than their own line.
//! serde's internally tagged enums (`#[serde(tag = "backend")]`) would buffer the whole
//! mapping that way, and do not combine with `deny_unknown_fields`.

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, de};

use super::{BACKENDS, Backend, DEFAULT_TIMEOUT, FetchError, FetchRequest, options_of, read_options};
use crate::name::{checked_string, did_you_mean};
use crate::secret::SecretValue;
use crate::value::Field;

use super::process;

const MAX_TIMEOUT_SECONDS: f64 = 3600.0;

/// The keys every store takes, whatever its backend.
const COMMON: [&str; 4] = ["backend", "root", "timeout", "max_concurrent"];

/// A store's backend, still to be given its root.
pub(crate) type Builder = Box<dyn FnOnce(&str) -> Result<Arc<dyn Backend>, String>>;

/// A configured store: a backend with its options, a root, and a timeout.
#[derive(Debug, Clone)]
pub struct SecretStore {
    pub root: String,
    pub timeout: Duration,
    pub backend: StoreBackend,
    /// `max_concurrent`: at most this many fetches from this store at once (a backend that
    /// serializes on a lock, a rate-limited service), within the process's bound.
    pub max_concurrent: Option<NonZeroUsize>,
}

/// A store's backend and its `backend:` word. Copies of a store share it (and so its
/// connections, sessions and fetch counts).
#[derive(Debug, Clone)]
pub struct StoreBackend {
    name: &'static str,
    backend: Arc<dyn Backend>,
}

impl StoreBackend {
    pub fn new(name: &'static str, backend: Arc<dyn Backend>) -> StoreBackend {
        StoreBackend { name, backend }
    }

    /// The `backend:` word.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Which store this is, for counting its fetches across the process: copies share it.
    pub(crate) fn identity(&self) -> usize {
        Arc::as_ptr(&self.backend).cast::<()>() as usize
    }
}

impl std::ops::Deref for StoreBackend {
    type Target = dyn Backend;
    fn deref(&self) -> &(dyn Backend + 'static) {
        self.backend.as_ref()
    }
}

impl SecretStore {
    pub fn locate(&self, path: &str) -> Result<String, String> {
        self.backend.locate(&self.root, path)
    }

    pub fn fetch(
        &self,
        location: &str,
        field: Option<&Field>,
        version: Option<u64>,
        environment: &process::Environment,
    ) -> Result<SecretValue, FetchError> {
        self.backend.fetch(&self.request(location, field, version, environment))
    }

    /// One fetch from this store, with its timeout.
    pub fn request<'a>(
        &self,
        location: &'a str,
        field: Option<&'a Field>,
        version: Option<u64>,
        environment: &'a process::Environment,
    ) -> FetchRequest<'a> {
        FetchRequest { location, field, version, timeout: self.timeout, environment }
    }

    /// Whether the store can be used at all in this environment, without fetching: a root
    /// that names an unset variable cannot, nor can a backend program that is not on PATH
    /// (cron's); `check` reports both without `--fetch`.
    pub fn usable_here(&self) -> Result<(), FetchError> {
        self.backend.usable_here(&self.root)
    }

    /// Whether refs may pin a `version`.
    pub fn keeps_versions(&self) -> bool {
        self.backend.keeps_versions()
    }

    /// Launcher variables the store reads credentials from, which the program must not see.
    pub fn credential_variables(&self) -> &'static [&'static str] {
        self.backend.credential_variables()
    }

    /// The launcher variable a location reads, for backends that read one.
    pub fn source_variable<'a>(&self, location: &'a str) -> Option<&'a str> {
        self.backend.source_variable(location)
    }

    /// At most this many fetches from this store at once: its `max_concurrent`, and the
    /// backend's own bound.
    pub fn concurrency(&self) -> Option<NonZeroUsize> {
        match (self.max_concurrent, self.backend.max_concurrent()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl<'de> Deserialize<'de> for SecretStore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StoreVisitor)
    }
}

struct StoreVisitor;

impl<'de> Visitor<'de> for StoreVisitor {
    type Value = SecretStore;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a store like `{backend: pass, root: some/dir}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretStore, A::Error> {
        let mut common = Common::default();
        let mut early: Vec<(String, Held<'de>)> = Vec::new();
        let mut built: Option<(&'static str, Builder)> = None;
        while built.is_none() {
            let mut no_seed: Option<PhantomData<de::IgnoredAny>> = None;
            let Some(key) = map.next_key_seed(KeySeed { seed: &mut no_seed, backend: None })? else {
                break;
            };
            match key {
                Key::Common(key) => common.read(key, &mut map)?,
                Key::Early(key) => {
                    let value = map.next_value::<Held<'de>>()?;
                    early.push((key, value));
                }
                Key::Backend => {
                    let word = map.next_value_seed(BackendWord { early: &early })?;
                    let rest = Rest {
                        map: &mut map,
                        common: &mut common,
                        backend: word,
                        early: std::mem::take(&mut early).into_iter(),
                        pending: None,
                    };
                    built = Some((word, read_options(word, rest)?));
                }
                Key::Option(_) => unreachable!("no option key is read before `backend`"),
            }
        }
        let Some((name, builder)) = built else {
            return Err(de::Error::missing_field("backend"));
        };
        let root = common.root.ok_or_else(|| de::Error::missing_field("root"))?;
        let backend = builder(&root).map_err(de::Error::custom)?;
        Ok(SecretStore {
            root,
            timeout: common.timeout.unwrap_or(DEFAULT_TIMEOUT),
            backend: StoreBackend::new(name, backend),
            max_concurrent: common.max_concurrent,
        })
    }
}

/// The common keys read so far.
#[derive(Default)]
struct Common {
    root: Option<String>,
    timeout: Option<Duration>,
    max_concurrent: Option<NonZeroUsize>,
}

impl Common {
    /// The value of common key `key`, read where it stands.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error> {
        let duplicate = |given: bool| {
            if given { Err(de::Error::duplicate_field(key)) } else { Ok(()) }
        };
        match key {
            "root" => {
                duplicate(self.root.is_some())?;
                self.root = Some(map.next_value::<Root>()?.0);
            }
            "timeout" => {
                duplicate(self.timeout.is_some())?;
                self.timeout = Some(map.next_value::<Given<Timeout>>()?.0.0);
            }
            _ => {
                duplicate(self.max_concurrent.is_some())?;
                self.max_concurrent = Some(map.next_value::<Given<MaxConcurrent>>()?.0.0);
            }
        }
        Ok(())
    }
}

/// A value refused when null, as every optional key is (see [`crate::name::given`]).
struct Given<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Given<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::name::given(deserializer)?.map(Given).ok_or_else(|| de::Error::custom("is null"))
    }
}

/// A store key, as read: common, `backend`, an option of the store's backend (read by the
/// options struct's own seed), or, before `backend` is known, an option of some backend.
enum Key<V> {
    Common(&'static str),
    Backend,
    Option(V),
    Early(String),
}

/// Reads a key where it stands, so that an unknown key is refused at its own position.
struct KeySeed<'s, K> {
    /// The options struct's key seed, taken when the key is one of its options.
    seed: &'s mut Option<K>,
    /// The store's backend, once known.
    backend: Option<&'static str>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a store key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if key == "backend" {
            return Ok(Key::Backend);
        }
        if let Some(common) = COMMON.iter().find(|c| **c == key) {
            return Ok(Key::Common(common));
        }
        let owners: Vec<&str> =
            super::WORDS.iter().copied().filter(|b| options_of(b).contains(&key)).collect();
        match self.backend {
            None if !owners.is_empty() => Ok(Key::Early(key.to_owned())),
            None => Err(unknown_key(key, BACKENDS)),
            Some(backend) if owners.contains(&backend) => match self.seed.take() {
                Some(seed) => seed.deserialize(key.into_deserializer()).map(Key::Option),
                None => Err(E::custom("a store key was read twice")),
            },
            Some(backend) if owners.is_empty() => Err(unknown_key(key, &[backend])),
            Some(backend) => Err(E::custom(not_an_option(key, backend, &owners))),
        }
    }
}

/// "unknown field `x`, expected one of ..." with the keys of `backends`: serde's words, which
/// the config's error reporting turns into a "did you mean".
fn unknown_key<E: de::Error>(key: &str, backends: &[&str]) -> E {
    let mut keys: Vec<&str> = COMMON.to_vec();
    for backend in backends {
        keys.extend(options_of(backend).iter().filter(|k| !keys.contains(k)).collect::<Vec<_>>());
    }
    let listed: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    E::custom(format!("unknown field `{key}`, expected one of {}", listed.join(", ")))
}

/// A key that another backend takes.
fn not_an_option(key: &str, backend: &str, owners: &[&str]) -> String {
    let options = options_of(backend);
    let owners: Vec<String> = owners.iter().map(|o| format!("`{o}`")).collect();
    format!(
        "`{key}` is not an option of backend `{backend}` (its options: {}; `{key}` is an option of \
         backend {}){}",
        if options.is_empty() { "none".to_owned() } else { options.join(", ") },
        owners.join(", "),
        if options.is_empty() { String::new() } else { did_you_mean(key, options.iter().copied()) }
    )
}

/// The `backend:` word; an unknown one is refused with the known ones listed, and option
/// keys given before it that it does not take are refused here.
struct BackendWord<'e, 'de> {
    early: &'e [(String, Held<'de>)],
}

impl<'de> DeserializeSeed<'de> for BackendWord<'_, 'de> {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<&'static str, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A visitor, so that its errors are raised while the parser stands on the value and carry
/// its position. Every scalar goes through [`crate::name::Text`] for its rules.
impl<'de> Visitor<'de> for BackendWord<'_, 'de> {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a backend name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<&'static str, E> {
        let text = crate::name::Text::deserialize(de::value::BorrowedStrDeserializer::<E>::new(v))?;
        self.check(&text.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<&'static str, E> {
        let text = crate::name::Text::deserialize(v.into_deserializer())?;
        self.check(&text.0)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<&'static str, E> {
        self.check(&crate::name::Text::deserialize(v.into_deserializer())?.0)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<&'static str, E> {
        self.check(&crate::name::Text::deserialize(v.into_deserializer())?.0)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<&'static str, E> {
        self.check(&crate::name::Text::deserialize(v.into_deserializer())?.0)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<&'static str, E> {
        self.check(&crate::name::Text::deserialize(v.into_deserializer())?.0)
    }
    fn visit_unit<E: de::Error>(self) -> Result<&'static str, E> {
        self.check(&crate::name::Text::deserialize(().into_deserializer())?.0)
    }
}

impl BackendWord<'_, '_> {
    fn check<E: de::Error>(self, word: &str) -> Result<&'static str, E> {
        let Some(backend) = super::WORDS.iter().copied().find(|b| *b == word) else {
            return Err(de::Error::unknown_variant(word, BACKENDS));
        };
        for (key, _) in self.early {
            if !options_of(backend).contains(&key.as_str()) {
                let owners: Vec<&str> =
                    BACKENDS.iter().copied().filter(|b| options_of(b).contains(&key.as_str())).collect();
                return Err(de::Error::custom(not_an_option(key, backend, &owners)));
            }
        }
        Ok(backend)
    }
}

/// The rest of a store's mapping, as its backend's options struct reads it: option keys held
/// from before `backend:` first, then the mapping itself, with common keys read on the way.
struct Rest<'m, 'de, A> {
    map: &'m mut A,
    common: &'m mut Common,
    backend: &'static str,
    early: std::vec::IntoIter<(String, Held<'de>)>,
    /// The held value of the key just handed over.
    pending: Option<(String, Held<'de>)>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Rest<'_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        if let Some((key, value)) = self.early.next() {
            let read = seed.deserialize(key.as_str().into_deserializer())?;
            self.pending = Some((key, value));
            return Ok(Some(read));
        }
        let mut seed = Some(seed);
        loop {
            let key = KeySeed { seed: &mut seed, backend: Some(self.backend) };
            match self.map.next_key_seed(key)? {
                None => return Ok(None),
                Some(Key::Option(read)) => return Ok(Some(read)),
                Some(Key::Common(key)) => self.common.read(key, self.map)?,
                Some(Key::Backend) => return Err(de::Error::duplicate_field("backend")),
                Some(Key::Early(_)) => unreachable!("the backend is known"),
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            Some((key, value)) => seed
                .deserialize(HeldDeserializer::<de::value::Error>(value, PhantomData))
                .map_err(|e| de::Error::custom(format!("{key}: {e}"))),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// A value held until its store's backend is known: what the parser gave, borrowed text kept
/// borrowed, so that [`crate::name::Text`] still tells a plain scalar from a quoted one.
#[derive(Debug)]
enum Held<'de> {
    Borrowed(&'de str),
    Owned(String),
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Unit,
    Seq(Vec<Held<'de>>),
    Map(Vec<(Held<'de>, Held<'de>)>),
}

impl<'de> Deserialize<'de> for Held<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hold;
        impl<'de> Visitor<'de> for Hold {
            type Value = Held<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Held<'de>, E> {
                Ok(Held::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Held<'de>, E> {
                Ok(Held::Owned(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Held<'de>, E> {
                Ok(Held::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Held<'de>, E> {
                Ok(Held::I64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Held<'de>, E> {
                Ok(Held::U64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Held<'de>, E> {
                Ok(Held::F64(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Held<'de>, E> {
                Ok(Held::Unit)
            }
            fn visit_none<E: de::Error>(self) -> Result<Held<'de>, E> {
                Ok(Held::Unit)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Held<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Held::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Held<'de>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Held::Map(entries))
            }
        }
        deserializer.deserialize_any(Hold)
    }
}

impl<'de, E: de::Error> IntoDeserializer<'de, E> for Held<'de> {
    type Deserializer = HeldDeserializer<'de, E>;
    fn into_deserializer(self) -> HeldDeserializer<'de, E> {
        HeldDeserializer(self, PhantomData)
    }
}

/// A [`Held`] value read again.
struct HeldDeserializer<'de, E>(Held<'de>, PhantomData<E>);

impl<'de, E: de::Error> Deserializer<'de> for HeldDeserializer<'de, E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Held::Borrowed(v) => visitor.visit_borrowed_str(v),
            Held::Owned(v) => visitor.visit_string(v),
            Held::Bool(v) => visitor.visit_bool(v),
            Held::I64(v) => visitor.visit_i64(v),
            Held::U64(v) => visitor.visit_u64(v),
            Held::F64(v) => visitor.visit_f64(v),
            Held::Unit => visitor.visit_unit(),
            Held::Seq(items) => visitor.visit_seq(de::value::SeqDeserializer::new(items.into_iter())),
            Held::Map(entries) => visitor.visit_map(de::value::MapDeserializer::new(entries.into_iter())),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Held::Unit => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

checked_string!(
    /// A store's root: what it means is the backend's business, but it is never empty, never
    /// padded, and never holds control characters.
    Root, "root", |what, value| {
        if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
            return Err(format!("{what} `{}` must be non-empty text without surrounding white space or control characters", value.escape_debug()));
        }
        Ok(())
    }
);
/// Seconds (a plain number, as the reference has it) or a duration with a unit (`500ms`,
/// `30s`, `5m`: [`crate::duration`]), more than 0 and at most an hour.
struct Timeout(Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let out_of_range = |shown: &dyn std::fmt::Display| {
            serde::de::Error::custom(format!(
                "timeout {shown} is out of range: give seconds, more than 0 and at most {MAX_TIMEOUT_SECONDS}"
            ))
        };
        let seconds = match serde_yaml::Value::deserialize(deserializer)? {
            serde_yaml::Value::String(text) => {
                crate::duration::parse(&text).map_err(serde::de::Error::custom)?.as_secs_f64()
            }
            other => other.as_f64().ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "timeout {} is not a duration: give seconds (`10`) or a number with a unit (`500ms`, `30s`, `5m`)",
                    shown(&other)
                ))
            })?,
        };
        if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_TIMEOUT_SECONDS {
            Ok(Timeout(Duration::from_secs_f64(seconds)))
        } else {
            Err(out_of_range(&seconds))
        }
    }
}

/// A positive whole number of fetches.
struct MaxConcurrent(std::num::NonZeroUsize);

impl<'de> Deserialize<'de> for MaxConcurrent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let invalid = |shown: String| {
            serde::de::Error::custom(format!(
                "max_concurrent {shown} is not a positive whole number: give how many fetches from this \
                 store may run at once, e.g. `max_concurrent: 1`"
            ))
        };
        let value = serde_yaml::Value::deserialize(deserializer)?;
        let number = value.as_u64().ok_or_else(|| invalid(shown(&value)))?;
        usize::try_from(number)
            .ok()
            .and_then(std::num::NonZeroUsize::new)
            .map(MaxConcurrent)
            .ok_or_else(|| invalid(number.to_string()))
    }
}

fn shown(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => format!("`{}`", s.escape_debug()),
        serde_yaml::Value::Number(n) => n.to_string(),
        other => {
            serde_yaml::to_string(other).map_or_else(|_| "(this value)".to_owned(), |s| s.trim().to_owned())
        }
    }
}
