//! serde_yaml's errors in a newcomer's words. The parser reports the token it choked on; the
//! cause is usually a line or two before: a tab used for indentation, or a line indented
//! unlike its siblings. And serde's messages name our Rust types (`expected struct RawEntry`),
//! which mean nothing to whoever wrote the file.

/// A leading tab: YAML forbids tabs in indentation, and libyaml says only "found character
/// that cannot start any token". Returns `(line, column)` of the first such tab.
pub(crate) fn indenting_tab(text: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(index, line)| {
        let indent: String = line.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
        let tab = indent.find('\t')?;
        // A tab inside a block scalar's text or a comment-only line is harmless text.
        let rest = line.trim_start_matches([' ', '\t']);
        (!rest.is_empty() && !rest.starts_with('#')).then_some((index + 1, tab + 1))
    })
}

/// A line indented to a level that none of the lines it could belong to use: `root:` at 3
/// spaces under `backend:` at 4 and `s:` at 2. Returns `(line, its indent, the levels open)`.
///
/// Block-structure lines only: lines inside block scalars (`key: |`) and flow collections
/// (`{`, `[` over several lines) are skipped, since YAML lets their text be indented freely.
pub(crate) fn odd_indentation(text: &str) -> Option<(usize, usize, Vec<usize>)> {
    // Indents of the open block levels; a `- ` item opens its own level where its content starts.
    let mut levels: Vec<usize> = vec![0];
    let mut scalar_above: Option<usize> = None;
    let mut flow_depth: i32 = 0;
    // The last block-structure line, which decides whether a deeper one may follow.
    let mut previous = "";
    for (index, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') || content.starts_with("---") {
            continue;
        }
        if let Some(parent) = scalar_above {
            if indent > parent {
                continue;
            }
            scalar_above = None;
        }
        let code = content.split(" #").next().unwrap_or(content);
        if flow_depth > 0 {
            flow_depth += brackets(code);
            continue;
        }
        while levels.last().is_some_and(|top| *top > indent) {
            levels.pop();
        }
        match levels.last() {
            Some(top) if *top == indent => {}
            Some(_) if levels.len() > 1 && !opens_block(previous) => {
                let mut open = levels.clone();
                open.dedup();
                return Some((index + 1, indent, open));
            }
            _ => levels.push(indent),
        }
        // `- name: x`: the mapping inside the item starts where `name` does.
        let mut item = content;
        let mut at = indent;
        while let Some(rest) = item.strip_prefix("- ") {
            let rest_trimmed = rest.trim_start_matches(' ');
            at += item.len() - rest_trimmed.len();
            levels.push(at);
            item = rest_trimmed;
        }
        let trimmed = code.trim_end();
        if ["|", ">", "|-", ">-", "|+", ">+"]
            .iter()
            .any(|s| trimmed.ends_with(&format!(" {s}")) || trimmed == *s)
        {
            scalar_above = Some(indent);
        }
        flow_depth += brackets(code);
        previous = code;
    }
    None
}

/// Whether a line lets the next one go deeper: `key:` or `- key:` with nothing after the colon.
fn opens_block(line: &str) -> bool {
    let code = line.split(" #").next().unwrap_or(line).trim_end();
    code.ends_with(':') || code.trim_start() == "-"
}

/// Opening minus closing flow brackets on a line, quotes ignored.
fn brackets(code: &str) -> i32 {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for c in code.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// The words a config uses for what serde calls by our type names. Any type not listed still
/// loses its Rust name (see [`plain_words`]).
const TYPE_WORDS: [(&str, &str); 9] = [
    (
        "struct RawManifest",
        "a `secrets:` list (write `secrets:` on the first line, then the entries under it)",
    ),
    ("struct RawEntry", "an entry like `- name: api_key`"),
    ("struct Sections", "a mapping with `stores`, `refs` and `policies`"),
    ("struct Wrapped", "a mapping with an `mxm_secrets` section"),
    ("struct RawRef", "a ref like `{store: s, path: a/b, policy: p}`"),
    ("struct RawPolicy", "a policy like `{allowed_principals: [role]}`"),
    ("struct RawRule", "a rule like `{principal: p, role: r}`"),
    ("enum Trim", "one of `whitespace`, `newline`, `none`"),
    ("enum Field", "a field name"),
];

/// serde names numbers by their Rust types (`expected f64`).
const PRIMITIVE_WORDS: [(&str, &str); 12] = [
    ("i8", "an integer"),
    ("i16", "an integer"),
    ("i32", "an integer"),
    ("i64", "an integer"),
    ("isize", "an integer"),
    ("u8", "a whole number (0 or more)"),
    ("u16", "a whole number (0 or more)"),
    ("u32", "a whole number (0 or more)"),
    ("u64", "a whole number (0 or more)"),
    ("usize", "a whole number (0 or more)"),
    ("f32", "a number"),
    ("f64", "a number"),
];

/// serde's message with every Rust type name replaced by what it stands for in the file.
pub(crate) fn plain_words(message: &str) -> String {
    let mut message = message.to_owned();
    for (rust, words) in TYPE_WORDS {
        message = message.replace(rust, words);
    }
    for (rust, words) in PRIMITIVE_WORDS {
        for end in [",", " ", ")", ";"] {
            message = message.replace(&format!("expected {rust}{end}"), &format!("expected {words}{end}"));
        }
        if let Some(stripped) = message.strip_suffix(&format!("expected {rust}")) {
            message = format!("{stripped}expected {words}");
        }
    }
    for (kind, words) in [("struct ", "a mapping"), ("enum ", "a name")] {
        while let Some(start) = message.find(&format!("expected {kind}")) {
            let name_start = start + "expected ".len() + kind.len();
            let name_end = message[name_start..]
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .map_or(message.len(), |n| name_start + n);
            message.replace_range(start + "expected ".len()..name_end, words);
        }
    }
    message
}

/// libyaml's own position words (" at line 3 column 4") repeat what `file:line:column` says;
/// dropped wherever they occur, not only at the end.
pub(crate) fn without_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at line ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + " at line ".len()..];
        let digits = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
        let tail = &after[digits..];
        if digits > 0 && tail.starts_with(" column ") {
            let column = &tail[" column ".len()..];
            let n = column.find(|c: char| !c.is_ascii_digit()).unwrap_or(column.len());
            rest = &column[n..];
        } else {
            out.push_str(" at line ");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs() {
        assert_eq!(indenting_tab("a:\n\tb: 1\n"), Some((2, 1)));
        assert_eq!(indenting_tab("a:\n  \tb: 1\n"), Some((2, 3)));
        assert_eq!(indenting_tab("a:\tb\n"), None);
        assert_eq!(indenting_tab("a: 1\n\t# comment\n"), None);
    }

    #[test]
    fn indentation() {
        let config = "stores:\n  s:\n    backend: env\n   root: src\nrefs: {}\n";
        assert_eq!(odd_indentation(config), Some((4, 3, vec![0, 2])));
        let manifest = "secrets:\n  - name: a\n   env: X\n";
        assert_eq!(odd_indentation(manifest).map(|(l, i, _)| (l, i)), Some((3, 3)));
        for fine in [
            "secrets:\n  - name: a\n    env: X\n  - name: b\n",
            "secrets:\n- name: a\n  env: X\n",
            "a:\n  b: |\n      x\n     y\n  c: 1\n",
            "a: {b: 1,\n     c: 2}\nd: 1\n",
            "stores:\n  s:\n    backend: env\nrefs: {}\n# c\n",
        ] {
            assert_eq!(odd_indentation(fine), None, "{fine}");
        }
    }

    #[test]
    fn rust_names_become_words() {
        assert_eq!(
            plain_words("invalid type: sequence, expected struct Sections"),
            "invalid type: sequence, expected a mapping with `stores`, `refs` and `policies`"
        );
        assert_eq!(plain_words("x, expected struct Whatever"), "x, expected a mapping");
        assert_eq!(
            plain_words("invalid type: string \"ten\", expected f64"),
            "invalid type: string \"ten\", expected a number"
        );
        assert_eq!(
            plain_words("invalid value: integer `-1`, expected u64 (x)"),
            "invalid value: integer `-1`, expected a whole number (0 or more) (x)"
        );
        assert_eq!(plain_words("x, expected enum Other here"), "x, expected a name here");
        assert_eq!(
            without_positions(
                "did not find expected '-' indicator at line 3 column 4, while parsing a block collection at line 2 column 3"
            ),
            "did not find expected '-' indicator, while parsing a block collection"
        );
    }
}
