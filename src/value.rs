//! What a ref makes of the bytes its backend returns: `field` picks a part, `trim` decides
//! what white space goes. The same for every backend.

use serde::Deserialize;

use crate::secret::SecretValue;

/// Which part of a text secret a ref wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The first line (the pass/gopass convention: password first, then `key: value` lines).
    Password,
    /// The value of the first `KEY: value` line after the first line.
    Key(String),
}

impl Field {
    /// The word as the config wrote it (`password`, or the key).
    pub fn key(&self) -> &str {
        match self {
            Field::Password => "password",
            Field::Key(key) => key,
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        if word.is_empty() || word.contains(':') || word.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(serde::de::Error::custom(format!(
                "field `{}` must be `password` or a key word without `:` or white space",
                word.escape_debug()
            )));
        }
        Ok(if word == "password" { Field::Password } else { Field::Key(word) })
    }
}

/// How much white space to remove; the default strips it on both sides, as the reference does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trim {
    #[default]
    Whitespace,
    /// One trailing `\n` (or `\r\n`), nothing else.
    Newline,
    /// The exact bytes.
    None,
}

/// `raw` as the ref wants it, or `None` when the field is not in the secret.
pub fn extract(raw: &SecretValue, field: Option<&Field>, trim: Trim) -> Option<SecretValue> {
    let bytes = raw.expose();
    let range = match field {
        None => 0..bytes.len(),
        Some(Field::Password) => {
            let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
            0..end
        }
        Some(Field::Key(key)) => key_range(bytes, key.as_bytes())?,
    };
    let range = trimmed(bytes, range, trim);
    Some(raw.slice(range))
}

fn key_range(bytes: &[u8], key: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut start = bytes.iter().position(|&b| b == b'\n')? + 1;
    while start < bytes.len() {
        let end = bytes[start..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| start + i);
        let line = &bytes[start..end];
        if line.len() > key.len() && line.starts_with(key) && line[key.len()] == b':' {
            let mut value_start = start + key.len() + 1;
            if bytes.get(value_start) == Some(&b' ') {
                value_start += 1;
            }
            let value_end = if bytes[..end].ends_with(b"\r") { end - 1 } else { end };
            return Some(value_start..value_end.max(value_start));
        }
        start = end + 1;
    }
    None
}

fn trimmed(bytes: &[u8], range: std::ops::Range<usize>, trim: Trim) -> std::ops::Range<usize> {
    let (mut start, mut end) = (range.start, range.end);
    match trim {
        Trim::None => {}
        Trim::Newline => {
            if bytes[start..end].ends_with(b"\r\n") {
                end -= 2;
            } else if bytes[start..end].ends_with(b"\n") {
                end -= 1;
            }
        }
        Trim::Whitespace => {
            while start < end && bytes[start].is_ascii_whitespace() {
                start += 1;
            }
            while end > start && bytes[end - 1].is_ascii_whitespace() {
                end -= 1;
            }
        }
    }
    start..end
}

/// The word a config writes for a field: `password`, or the key (`user`). Reports and JSON
/// speak the config's words, never Rust's.
impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl Trim {
    /// The word a config writes for this mode: `whitespace`, `newline` or `none`.
    pub fn as_config_word(self) -> &'static str {
        match self {
            Trim::Whitespace => "whitespace",
            Trim::Newline => "newline",
            Trim::None => "none",
        }
    }
}

impl std::fmt::Display for Trim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_config_word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(raw: &str, field: Option<Field>, trim: Trim) -> Option<String> {
        extract(&SecretValue::new(raw.as_bytes().to_vec()), field.as_ref(), trim)
            .map(|v| String::from_utf8(v.expose().to_vec()).unwrap())
    }

    #[test]
    fn trim_modes() {
        assert_eq!(get("  s3cret \n\n", None, Trim::Whitespace).unwrap(), "s3cret");
        assert_eq!(get("  s3cret \n\n", None, Trim::Newline).unwrap(), "  s3cret \n");
        assert_eq!(get("s3cret\r\n", None, Trim::Newline).unwrap(), "s3cret");
        assert_eq!(get("  s3cret \n\n", None, Trim::None).unwrap(), "  s3cret \n\n");
        assert_eq!(get("", None, Trim::Whitespace).unwrap(), "");
        assert_eq!(get(" \n", None, Trim::Whitespace).unwrap(), "");
    }

    #[test]
    fn fields() {
        let entry = "pw1 \nuser: bob\nurl:https://x\nempty:\nuser2: carol\r\n";
        assert_eq!(get(entry, Some(Field::Password), Trim::Whitespace).unwrap(), "pw1");
        assert_eq!(get(entry, Some(Field::Password), Trim::None).unwrap(), "pw1 ");
        let key = |k: &str| Some(Field::Key(k.to_owned()));
        assert_eq!(get(entry, key("user"), Trim::Whitespace).unwrap(), "bob");
        assert_eq!(get(entry, key("url"), Trim::Whitespace).unwrap(), "https://x");
        assert_eq!(get(entry, key("empty"), Trim::Whitespace).unwrap(), "");
        assert_eq!(get(entry, key("user2"), Trim::None).unwrap(), "carol");
        assert_eq!(get(entry, key("missing"), Trim::Whitespace), None);
        // The first line is the password, never a key line.
        assert_eq!(get("user: x\n", key("user"), Trim::Whitespace), None);
        assert_eq!(get("only-a-password", key("user"), Trim::Whitespace), None);
        assert_eq!(
            get("only-a-password", Some(Field::Password), Trim::Whitespace).unwrap(),
            "only-a-password"
        );
    }
}
