//! The small validated words of the model: identifiers, identity labels, variable names and
//! store paths, plus the "did you mean" used by every error that names an unknown word.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A store, ref, policy, principal or role name: `^[a-z][a-z0-9_]*$`, as in the reference.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn new(value: &str) -> Result<Name, String> {
        let mut chars = value.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(Name(value.to_owned()))
        } else {
            Err(format!(
                "`{}` is not a valid name: names match ^[a-z][a-z0-9_]*$ (lowercase letter first, then lowercase letters, digits, `_`)",
                value.escape_debug()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Text::deserialize(deserializer)?.0;
        Name::new(&value).map_err(serde::de::Error::custom)
    }
}

/// Text where the model expects text: the one place that refuses every other scalar.
///
/// serde_yaml hands a string visitor (`String::deserialize`) the raw characters of any
/// scalar, so `null`, `true`, `123` and `~` all arrive as text, where the reference (PyYAML)
/// sees null, a boolean or a number and refuses them. `Text` asks for any type instead:
/// serde_yaml then resolves plain scalars (YAML 1.2: null, booleans, numbers) and a quoted
/// `'123'` stays text. A plain scalar that YAML 1.1 (PyYAML) reads as something other than
/// text (`yes`, `on`, `0o7`, `1_000`, `2024-01-01`, ...) is refused as well, when its
/// position in the source shows it plain (see [`with_source`]): the two YAMLs disagree on
/// it, and quoting settles that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        fn not_text<E: serde::de::Error>(what: &str, shown: &str) -> E {
            E::custom(format!(
                "`{shown}` is {what}, not text; write it in quotes ('{shown}') if the text is meant"
            ))
        }
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("text")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text, E> {
                if is_plain_in_source(v)
                    && let Some(what) = yaml11_non_text(v)
                {
                    return Err(not_text(&format!("{what} in YAML 1.1 (the reference's YAML)"), v));
                }
                Ok(Text(v.to_owned()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Text, E> {
                Err(E::custom(
                    "is null (no value, `~` or `null`), not text; write the text, or remove the key",
                ))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Err(not_text("a boolean", &v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Err(not_text("a number", &v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Err(not_text("a number", &v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                Err(not_text("a number", &v.to_string()))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// The YAML text being read on this thread, and where it starts in memory.
struct Source {
    start: usize,
    text: String,
}

thread_local! {
    static SOURCE: std::cell::RefCell<Option<Source>> = const { std::cell::RefCell::new(None) };
}

/// Runs `read` (a serde_yaml reading of `text`) with `text` known as the source, so that
/// [`Text`] can tell a plain scalar from a quoted one: serde_yaml hands plain and simple
/// quoted scalars as slices of the input, and a quoted one has its quotes on either side.
pub fn with_source<T>(text: &str, read: impl FnOnce() -> T) -> T {
    let source = Source { start: text.as_ptr() as usize, text: text.to_owned() };
    let previous = SOURCE.with(|s| s.borrow_mut().replace(source));
    let result = read();
    SOURCE.with(|s| *s.borrow_mut() = previous);
    result
}

/// Whether `v` is a slice of the registered source with no quote on both sides. A value that
/// is not such a slice (an escaped, folded or block scalar, or no source registered) counts
/// as quoted: it is written in a way no YAML resolves to anything but text.
fn is_plain_in_source(v: &str) -> bool {
    SOURCE.with(|source| {
        let source = source.borrow();
        let Some(source) = source.as_ref() else {
            return false;
        };
        let Some(offset) = (v.as_ptr() as usize).checked_sub(source.start) else {
            return false;
        };
        let Some(end) = offset.checked_add(v.len()) else {
            return false;
        };
        if source.text.get(offset..end) != Some(v) {
            return false;
        }
        let before = source.text[..offset].chars().next_back();
        let after = source.text[end..].chars().next();
        !(matches!(before, Some('\'' | '"')) && before == after)
    })
}

/// What PyYAML's resolver (YAML 1.1) makes of a plain scalar, when it is not text. Each
/// pattern is the resolver's own regular expression, spelled out by hand.
pub fn yaml11_non_text(v: &str) -> Option<&'static str> {
    const BOOLEANS: [&str; 18] = [
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on", "On",
        "ON", "off", "Off", "OFF",
    ];
    if BOOLEANS.contains(&v) {
        Some("a boolean")
    } else if matches!(v, "" | "~" | "null" | "Null" | "NULL") {
        Some("null")
    } else if v == "=" || v == "<<" {
        Some("a special key")
    } else if yaml11::int(v) || yaml11::float(v) {
        Some("a number")
    } else if yaml11::timestamp(v) {
        Some("a date")
    } else {
        None
    }
}

/// PyYAML's int, float and timestamp patterns (resolver.py), one function each.
mod yaml11 {
    fn all(s: &str, f: impl Fn(u8) -> bool) -> bool {
        !s.is_empty() && s.bytes().all(f)
    }
    fn digits_(s: &str) -> bool {
        s.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    }
    fn unsigned(v: &str) -> &str {
        v.strip_prefix(['-', '+']).unwrap_or(v)
    }
    /// `[0-5]?[0-9]`
    fn sexagesimal_part(s: &str) -> bool {
        match s.as_bytes() {
            [d] => d.is_ascii_digit(),
            [t, d] => (b'0'..=b'5').contains(t) && d.is_ascii_digit(),
            _ => false,
        }
    }
    /// `[0-9][0-9_]*` (or `[1-9][0-9_]*` when `nonzero`)
    fn leading(s: &str, nonzero: bool) -> bool {
        let first_ok = |b: &u8| if nonzero { (b'1'..=b'9').contains(b) } else { b.is_ascii_digit() };
        s.as_bytes().first().is_some_and(first_ok) && digits_(&s[1..])
    }
    /// `([eE][-+][0-9]+)?`
    fn exponent(s: &str) -> bool {
        s.is_empty()
            || s.strip_prefix(['e', 'E'])
                .and_then(|s| s.strip_prefix(['-', '+']))
                .is_some_and(|d| all(d, |b| b.is_ascii_digit()))
    }

    pub fn int(v: &str) -> bool {
        let u = unsigned(v);
        if let Some(bits) = u.strip_prefix("0b") {
            return all(bits, |b| b == b'0' || b == b'1' || b == b'_');
        }
        if let Some(hex) = u.strip_prefix("0x") {
            return all(hex, |b| b.is_ascii_hexdigit() || b == b'_');
        }
        if let Some(octal) = u.strip_prefix('0')
            && !octal.is_empty()
        {
            return all(octal, |b| (b'0'..=b'7').contains(&b) || b == b'_');
        }
        if u == "0" || leading(u, true) {
            return true;
        }
        let mut parts = u.split(':');
        parts.next().is_some_and(|first| leading(first, true))
            && u.contains(':')
            && parts.all(sexagesimal_part)
    }

    pub fn float(v: &str) -> bool {
        if matches!(v, ".nan" | ".NaN" | ".NAN") {
            return true;
        }
        let u = unsigned(v);
        if matches!(u, ".inf" | ".Inf" | ".INF") {
            return true;
        }
        // `\.[0-9][0-9_]*` with an exponent, unsigned only.
        if let Some(rest) = v.strip_prefix('.') {
            let end = rest.find(['e', 'E']).unwrap_or(rest.len());
            return leading(&rest[..end], false) && exponent(&rest[end..]);
        }
        let Some((whole, fraction)) = u.split_once('.') else {
            return false;
        };
        // `[0-9][0-9_]*\.[0-9_]*` with an exponent ...
        let end = fraction.find(['e', 'E']).unwrap_or(fraction.len());
        if leading(whole, false) && digits_(&fraction[..end]) && exponent(&fraction[end..]) {
            return true;
        }
        // ... or `[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*`.
        let mut parts = whole.split(':');
        parts.next().is_some_and(|first| leading(first, false))
            && whole.contains(':')
            && parts.all(sexagesimal_part)
            && digits_(fraction)
    }

    pub fn timestamp(v: &str) -> bool {
        let b = v.as_bytes();
        let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
        if b.len() == 10 && (0..4).all(digit) && b[4] == b'-' && digit(5) && digit(6) && b[7] == b'-' {
            return digit(8) && digit(9);
        }
        // `YYYY-M?M-D?D(T|[ \t]+)h?h:mm:ss(\.f*)?([ \t]*(Z|[-+]h?h(:mm)?))?`
        let mut i = 0;
        let digits = |i: &mut usize, min: usize, max: usize| {
            let start = *i;
            while *i - start < max && digit(*i) {
                *i += 1;
            }
            *i - start >= min
        };
        let at = |i: usize, c: u8| b.get(i) == Some(&c);
        if !(digits(&mut i, 4, 4) && at(i, b'-')) {
            return false;
        }
        i += 1;
        if !(digits(&mut i, 1, 2) && at(i, b'-')) {
            return false;
        }
        i += 1;
        if !digits(&mut i, 1, 2) {
            return false;
        }
        if at(i, b'T') || at(i, b't') {
            i += 1;
        } else {
            let start = i;
            while at(i, b' ') || at(i, b'\t') {
                i += 1;
            }
            if i == start {
                return false;
            }
        }
        if !(digits(&mut i, 1, 2) && at(i, b':')) {
            return false;
        }
        i += 1;
        if !(digits(&mut i, 2, 2) && at(i, b':')) {
            return false;
        }
        i += 1;
        if !digits(&mut i, 2, 2) {
            return false;
        }
        if at(i, b'.') {
            i += 1;
            digits(&mut i, 0, usize::MAX);
        }
        if i == b.len() {
            return true;
        }
        while at(i, b' ') || at(i, b'\t') {
            i += 1;
        }
        if at(i, b'Z') {
            return i + 1 == b.len();
        }
        if !(at(i, b'-') || at(i, b'+')) {
            return false;
        }
        i += 1;
        if !digits(&mut i, 1, 2) {
            return false;
        }
        if at(i, b':') {
            i += 1;
            if !digits(&mut i, 2, 2) {
                return false;
            }
        }
        i == b.len()
    }
}

/// For a key that may be left out but not left empty: absent is `None`, and a null value
/// (`key:` with nothing after it, `~`, or a list whose items are all commented out) is an
/// error instead of silently meaning "no restriction". Use with
/// `#[serde(default, deserialize_with = "crate::name::given")]`.
///
/// It asks for any type and hands what it gets on to `T`: asked for an option, serde_yaml
/// would report a null without the key's path.
pub fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    use serde::de::IntoDeserializer;
    use serde::de::value::{
        BorrowedStrDeserializer, EnumAccessDeserializer, MapAccessDeserializer, SeqAccessDeserializer,
    };
    struct Visit<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a value")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<T>, E> {
            Err(E::custom(
                "is null (nothing after the key, `~`, or a list whose items are all commented out); \
                 a null is refused, not guessed at (it could mean no restriction, or a \
                 different one). Write the value (`[]` for an empty \
                 list, which allows none), or remove the key",
            ))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<T>, E> {
            self.visit_unit()
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Option<T>, E> {
            T::deserialize(BorrowedStrDeserializer::new(v)).map(Some)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<T>, E> {
            T::deserialize(v.to_owned().into_deserializer()).map(Some)
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Option<T>, E> {
            T::deserialize(v.into_deserializer()).map(Some)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<T>, E> {
            T::deserialize(v.into_deserializer()).map(Some)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<T>, E> {
            T::deserialize(v.into_deserializer()).map(Some)
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Option<T>, E> {
            T::deserialize(v.into_deserializer()).map(Some)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Option<T>, A::Error> {
            T::deserialize(SeqAccessDeserializer::new(seq)).map(Some)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
        fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Option<T>, A::Error> {
            T::deserialize(EnumAccessDeserializer::new(data)).map(Some)
        }
    }
    deserializer.deserialize_any(Visit(std::marker::PhantomData))
}

/// An identity attribute value (environment, machine, app, substrate): free text, but not
/// empty, without surrounding white space and without control characters, so that what a
/// policy lists is what an operator reads.
pub fn check_label(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.trim() != value {
        return Err(format!("{what} `{}` has surrounding white space", value.escape_debug()));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} `{}` contains a control character", value.escape_debug()));
    }
    Ok(())
}

/// A field whose value is checked where it stands, so that serde_yaml reports the error at
/// that field's line and column. `check` names the rule.
macro_rules! checked_string {
    ($(#[$doc:meta])* $type:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $type(pub String);

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <$crate::name::Text as serde::Deserialize>::deserialize(deserializer)?.0;
                let check: fn(&str, &str) -> Result<(), String> = $check;
                check($what, &value).map_err(serde::de::Error::custom)?;
                Ok($type(value))
            }
        }
    };
}

pub(crate) use checked_string;

checked_string!(
    /// A ref's path inside its store (see [`check_store_path`]).
    StorePath, "path", check_store_path
);
checked_string!(
    /// An identity label in a policy or rule (see [`check_label`]).
    Label, "value", check_label
);

/// A list that refuses an item given twice, at that item's position, in linear time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueList<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de> + Eq + std::hash::Hash + Clone + fmt::Debug> Deserialize<'de>
    for UniqueList<T>
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Eq + std::hash::Hash + Clone + fmt::Debug> serde::de::Visitor<'de>
            for Items<T>
        {
            type Value = UniqueList<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // A set beside the list: a search of the list per item is quadratic, and a
                // 1 MiB flow list of 100k names took minutes.
                let mut items: Vec<T> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(item) = seq.next_element::<T>()? {
                    if !seen.insert(item.clone()) {
                        return Err(serde::de::Error::custom(format!("{item:?} is listed twice")));
                    }
                    items.push(item);
                }
                Ok(UniqueList(items))
            }
            // `allowed_principals:` with every item commented out: null, which is an error
            // (it must not loosen a policy), where asking for a sequence read it as empty.
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Err(E::custom(
                    "is null (nothing after the key, `~`, or a list whose items are all commented \
                     out); write the list (`[]` for an empty one, which allows none)",
                ))
            }
        }
        deserializer.deserialize_any(Items(std::marker::PhantomData))
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`: the names a shell and `env(1)` accept for variables.
pub fn is_env_var_name(value: &str) -> bool {
    let mut chars = value.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A path inside a store, as a ref gives it. Refused: empty, surrounding white space,
/// absolute, empty segments (`a//b`, trailing `/`), `.` or `..` segments, control
/// characters, a leading `-` (it would read as an option to the backend's program).
pub fn check_store_path(what: &str, value: &str) -> Result<(), String> {
    let shown = value.escape_debug();
    let problem = if value.is_empty() {
        Some("is empty")
    } else if value.trim() != value {
        Some("has surrounding white space")
    } else if value.starts_with('/') {
        Some("is absolute; paths are relative to the store's root")
    } else if value.starts_with('-') {
        Some("starts with `-`, which a backend program would read as an option")
    } else if value.chars().any(char::is_control) {
        Some("contains a control character")
    } else if value.split('/').any(str::is_empty) {
        Some("has an empty segment (`//` or a trailing `/`)")
    } else if value.split('/').any(|s| s == "." || s == "..") {
        Some("has a `.` or `..` segment, which could leave the store's root")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("{what} `{shown}` {problem}")),
        None => Ok(()),
    }
}

/// Words longer than this get no suggestion: no name anyone typed by hand is longer, and a
/// hostile megabyte-long name must not cost seconds of edit distances.
pub const MAX_SUGGESTED_LEN: usize = 128;

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
/// Bounded work: a word or candidate longer than [`MAX_SUGGESTED_LEN`] is skipped, so is a
/// candidate whose length alone puts it out of reach, and each distance stops once the limit
/// is passed.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.len() > MAX_SUGGESTED_LEN * 4 {
        return None;
    }
    let word: Vec<char> = word.chars().collect();
    if word.len() > MAX_SUGGESTED_LEN {
        return None;
    }
    let limit = (word.len() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| c.len() <= MAX_SUGGESTED_LEN * 4)
        .filter_map(|c| {
            let chars: Vec<char> = c.chars().collect();
            if chars.len() > MAX_SUGGESTED_LEN || chars.len().abs_diff(word.len()) > limit {
                return None;
            }
            edit_distance(&word, &chars, limit).map(|d| (d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `"; did you mean `x`?"`, or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(word, candidates).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default()
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment),
/// since `rde` for `red` is the most common typo of all; `None` once it surely exceeds
/// `limit`. Three rows, so memory is linear in the candidate's length.
fn edit_distance(a: &[char], b: &[char], limit: usize) -> Option<usize> {
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        // Every later row is at least the smallest entry of this one, less one for a swap
        // that reaches back two rows.
        if current.iter().min().is_some_and(|&m| m > limit + 1) {
            return None;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    Some(previous[b.len()]).filter(|&d| d <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_reference_pattern() {
        for good in ["a", "red", "marketdata_access", "a1_b2", "human_admin"] {
            assert!(Name::new(good).is_ok(), "{good}");
        }
        for bad in ["", "Red", "1a", "_a", "a-b", "a b", " a", "a ", "é", "a.b", "a\n"] {
            assert!(Name::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn store_paths_refuse_every_trick() {
        check_store_path("path", "marketdata/databento/api_key").unwrap();
        check_store_path("path", "a.b/c-d/e_f").unwrap();
        for bad in [
            "",
            " a",
            "a ",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            ".",
            "a//b",
            "a/",
            "-rf",
            "a\0b",
            "a\nb",
            "a\x1bb",
        ] {
            assert!(check_store_path("path", bad).is_err(), "{bad:?}");
        }
    }

    /// PyYAML 6.0.3's `yaml.safe_load` on each plain scalar, checked on this machine with
    /// `python3 -c 'import yaml; print(type(yaml.safe_load(S)).__name__)'`: `true` where it
    /// is not `str` (bool, NoneType, int, float, date, datetime, or a constructor error).
    #[test]
    fn yaml11_resolution_matches_pyyaml() {
        let table = [
            ("yes", true),
            ("Yes", true),
            ("YES", true),
            ("no", true),
            ("NO", true),
            ("on", true),
            ("On", true),
            ("off", true),
            ("OFF", true),
            ("y", false),
            ("n", false),
            ("Y", false),
            ("true", true),
            ("True", true),
            ("false", true),
            ("null", true),
            ("Null", true),
            ("~", true),
            ("", true),
            ("=", true),
            ("<<", true),
            ("0", true),
            ("7", true),
            ("-7", true),
            ("+7", true),
            ("0b101", true),
            ("0b", false),
            ("0x1F", true),
            ("0x", false),
            ("0o17", false),
            ("017", true),
            ("018", false),
            ("08", false),
            ("1_000", true),
            ("1__0", true),
            ("_1", false),
            ("1:30", true),
            ("1:60", false),
            ("190:20:30", true),
            ("0:30", false),
            ("1e5", false),
            ("1.5", true),
            ("1.", true),
            ("-1.5e+3", true),
            ("1.5e3", false),
            (".5", true),
            (".5e-1", true),
            ("-.5", false),
            (".inf", true),
            ("-.Inf", true),
            ("+.INF", true),
            (".nan", true),
            (".NaN", true),
            ("-.nan", false),
            ("1:30.5", true),
            ("0:30.5", true),
            ("1_0.0_1", true),
            ("2024-01-01", true),
            ("2024-1-1", false),
            ("2024-01-01T10:00:00", true),
            ("2001-12-14t21:59:43.10-05:00", true),
            ("2001-12-14 21:59:43.10 -5", true),
            ("2001-12-15 2:59:43.10", true),
            ("2001-12-14T21:59:43Z", true),
            ("2024-01-01T1:00:00", true),
            ("20240101", true),
            ("2024-01-1", false),
            ("dev", false),
            ("prod", false),
            ("marketdata", false),
            ("a/b", false),
            ("db/2024-01-01", false),
            ("1-2", false),
            ("10-0-0-1", false),
            ("1.2.3", false),
            ("v1", false),
            ("0.0.0.0", false),
            ("127.0.0.1", false),
            ("1_", true),
            ("x1", false),
            ("inf", false),
            (".inf1", false),
            ("e5", false),
            ("0x1G", false),
            ("0b102", false),
            ("+", false),
            (".", false),
        ];
        for (scalar, non_text) in table {
            assert_eq!(yaml11_non_text(scalar).is_some(), non_text, "{scalar:?}");
        }
    }

    #[test]
    fn env_var_names() {
        for good in ["A", "_", "PGPASSWORD", "a_1"] {
            assert!(is_env_var_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A=B", "A B", "Ä"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }

    #[test]
    fn labels() {
        check_label("environment", "dev").unwrap();
        check_label("machine", "bridge-01.example").unwrap();
        for bad in ["", " dev", "dev ", "d\tv"] {
            assert!(check_label("environment", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        let names = ["databento_api_key", "postgres_password", "red"];
        assert_eq!(suggest("databento_api_kye", names), Some("databento_api_key"));
        assert_eq!(suggest("rde", names), Some("red"));
        assert_eq!(suggest("sentry_dsn", names), None);
        assert_eq!(did_you_mean("xyz", names), "");
        assert_eq!(suggest("ab", ["ba"]), Some("ba"));
        assert_eq!(suggest("red", ["re"]), Some("re"));
    }

    #[test]
    fn suggestions_are_bounded() {
        let long = "a".repeat(1_000_000);
        let names: Vec<String> = (0..300).map(|i| format!("secret_number_{i}")).collect();
        let start = std::time::Instant::now();
        assert_eq!(suggest(&long, names.iter().map(String::as_str)), None);
        assert_eq!(suggest("secret_number_1", [long.as_str()]), None);
        let near = format!("{}b", "a".repeat(MAX_SUGGESTED_LEN - 1));
        let word = "a".repeat(MAX_SUGGESTED_LEN);
        assert_eq!(suggest(&word, [near.as_str()]), Some(near.as_str()));
        assert_eq!(suggest(&format!("{word}a"), [near.as_str()]), None);
        assert!(start.elapsed().as_millis() < 500, "took {:?}", start.elapsed());
    }
}
