//! What a ref makes of the bytes its backend returns: `field` picks a part, `trim` decides
//! what white space goes. The same for every backend.
//!
//! The default, `trim: whitespace`, is the reference's own reading, exactly: it reads a
//! backend's output as text, with Python's universal newlines (`\r\n` and a lone `\r`
//! become `\n`, everywhere in the value), and strips it with `str.strip()`, which removes
//! every character Python's `str.isspace()` calls white space from both ends
//! ([`is_python_space`]). A value that is not UTF-8 cannot be read as text: it keeps its
//! bytes, newlines included, and loses only what Python's `bytes.strip()` removes, ASCII
//! white space (` `, `\t`, `\n`, `\r`, `\x0b`, `\x0c`) at either end. `newline` and `none`
//! are for exact bytes: one trailing newline removed, or nothing at all.

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
        let word = crate::name::Text::deserialize(deserializer)?.0;
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

/// Whether Python's `str.isspace()` is true for `c`: Unicode's White_Space characters
/// (what Rust's `char::is_whitespace` answers) and the four ASCII separators `\x1c`-`\x1f`,
/// which Python counts as well.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's universal newlines over the whole value: `\r\n` and a lone `\r` become `\n`.
fn universal_newlines(raw: &SecretValue) -> SecretValue {
    let bytes = raw.expose();
    let mut text = SecretValue::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| b == b'\r') {
        text.extend_from_slice(&rest[..at]);
        text.extend_from_slice(b"\n");
        let skip = if rest.get(at + 1) == Some(&b'\n') { 2 } else { 1 };
        rest = &rest[at + skip..];
    }
    text.extend_from_slice(rest);
    text
}

/// `raw` as the ref wants it, or `None` when the field is not in the secret.
pub fn extract(raw: &SecretValue, field: Option<&Field>, trim: Trim) -> Option<SecretValue> {
    // Text or bytes is decided by the whole value, as the reference decodes the whole output.
    if trim == Trim::Whitespace && std::str::from_utf8(raw.expose()).is_ok() {
        return extract_from(&universal_newlines(raw), field, trim, true);
    }
    extract_from(raw, field, trim, false)
}

fn extract_from(raw: &SecretValue, field: Option<&Field>, trim: Trim, text: bool) -> Option<SecretValue> {
    let bytes = raw.expose();
    let range = match field {
        None => 0..bytes.len(),
        Some(Field::Password) => {
            let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
            0..end
        }
        Some(Field::Key(key)) => key_range(bytes, key.as_bytes())?,
    };
    let range = trimmed(bytes, range, trim, text);
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

fn trimmed(bytes: &[u8], range: std::ops::Range<usize>, trim: Trim, text: bool) -> std::ops::Range<usize> {
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
        Trim::Whitespace => match std::str::from_utf8(&bytes[start..end]).ok().filter(|_| text) {
            Some(text) => {
                start += text.len() - text.trim_start_matches(is_python_space).len();
                end -= text.len() - text.trim_end_matches(is_python_space).len();
                end = end.max(start);
            }
            None => {
                // Python's `bytes.strip()`: ASCII white space, `\x0b` included.
                let space = |b: u8| b.is_ascii_whitespace() || b == 0x0b;
                while start < end && space(bytes[start]) {
                    start += 1;
                }
                while end > start && space(bytes[end - 1]) {
                    end -= 1;
                }
            }
        },
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

    /// Every character for which Python's `str.isspace()` is true, as printed on this
    /// machine by `python3 -c "print([hex(c) for c in range(0x110000) if chr(c).isspace()])"`
    /// (Python 3, Unicode database of its release).
    const PYTHON_SPACE: [u32; 29] = [
        0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002,
        0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f,
        0x3000,
    ];

    #[test]
    fn white_space_is_pythons() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(is_python_space(c), PYTHON_SPACE.contains(&(c as u32)), "U+{:04X}", c as u32);
        }
        // Each one is stripped from both ends and kept inside (a `\r` inside becomes `\n`).
        for c in PYTHON_SPACE.iter().filter_map(|&c| char::from_u32(c)) {
            let inside = if c == '\r' { '\n' } else { c };
            let value = format!("{c}{c}s3{c}cret{c}");
            assert_eq!(
                get(&value, None, Trim::Whitespace).unwrap(),
                format!("s3{inside}cret"),
                "U+{:04X}",
                c as u32
            );
        }
        // Look-alikes that are not white space to Python stay.
        for c in ['\u{200b}', '\u{feff}', '\u{180e}', '\u{2060}', '\0', '\x7f', '\x1b'] {
            let value = format!("{c}x{c}");
            assert_eq!(get(&value, None, Trim::Whitespace).unwrap(), value, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn text_is_read_with_universal_newlines() {
        assert_eq!(get("line1\r\nline2\r\n", None, Trim::Whitespace).unwrap(), "line1\nline2");
        assert_eq!(get("a\rb\r\r\nc\r", None, Trim::Whitespace).unwrap(), "a\nb\n\nc");
        assert_eq!(get("pw\ruser: bob\r", Some(Field::Password), Trim::Whitespace).unwrap(), "pw");
        assert_eq!(get("pw\ruser: bob\r", Some(Field::Key("user".into())), Trim::Whitespace).unwrap(), "bob");
        // `newline` and `none` keep exact bytes.
        assert_eq!(get("line1\r\nline2\r\n", None, Trim::Newline).unwrap(), "line1\r\nline2");
        assert_eq!(get("\u{a0}a\rb\r\n", None, Trim::None).unwrap(), "\u{a0}a\rb\r\n");
    }

    #[test]
    fn bytes_that_are_not_utf8_keep_their_inside() {
        let raw = SecretValue::new(b"\x0b \xffa\r\nb\xa0\x1c\xc2\xa0\r\n\x0c".to_vec());
        let value = extract(&raw, None, Trim::Whitespace).unwrap();
        assert_eq!(value.expose(), b"\xffa\r\nb\xa0\x1c\xc2\xa0");
        // The whole value decides: a UTF-8 first line of a value that is not is bytes too.
        let raw = SecretValue::new(b"\xc2\xa0pw\xc2\xa0\nkey: \xff".to_vec());
        let value = extract(&raw, Some(&Field::Password), Trim::Whitespace).unwrap();
        assert_eq!(value.expose(), b"\xc2\xa0pw\xc2\xa0");
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
