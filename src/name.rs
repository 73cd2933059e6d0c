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
        let value = String::deserialize(deserializer)?;
        Name::new(&value).map_err(serde::de::Error::custom)
    }
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
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $type(pub String);

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <String as serde::Deserialize>::deserialize(deserializer)?;
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

/// A list that refuses an item given twice, at that item's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueList<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de> + PartialEq + fmt::Debug> Deserialize<'de> for UniqueList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + PartialEq + fmt::Debug> serde::de::Visitor<'de> for Items<T> {
            type Value = UniqueList<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items: Vec<T> = Vec::new();
                while let Some(item) = seq.next_element::<T>()? {
                    if items.contains(&item) {
                        return Err(serde::de::Error::custom(format!("{item:?} is listed twice")));
                    }
                    items.push(item);
                }
                Ok(UniqueList(items))
            }
        }
        deserializer.deserialize_seq(Items(std::marker::PhantomData))
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
