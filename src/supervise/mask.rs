//! `--mask`: the program's stdout and stderr pass through the launcher, and every injected
//! value, in its plain form and the forms a program is likely to print it in (base64 at the
//! three byte alignments, standard and URL-safe; JSON-escaped; URL-encoded), is replaced by
//! [`MARKER`]. One multi-pattern matcher (the `aho-corasick` crate) finds them all in one
//! pass; [`Stream`] holds back only the few trailing bytes that could begin a value, so a
//! value split over two reads is still masked, and [`pump`] is the thread that copies one
//! stream.
//!
//! Learned from GitHub Actions' masker: a value is masked whole, never line by line (a JSON
//! secret's one-character lines `{` and `}` masked every brace, and the base64 of `{` every
//! `e`: actions/runner#326; its other lines then printed in clear: #1488, #2232); values too
//! short to mask are left alone with a warning rather than masking common text; and a value
//! holding `%` is matched as bytes, with no escaping of ours in between (#2960).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use zeroize::Zeroizing;

/// What a masked value is replaced with: names no value, nor its length.
pub const MARKER: &[u8] = b"***";

/// Values shorter than this are not masked (each would mask innocent text everywhere).
pub const MIN_MASKED: usize = 4;

/// After the program's end, how long the rest of its output may take to arrive.
const DRAIN_WAIT_MS: u8 = 20;

/// How much is read at once.
const CHUNK: usize = 128 * 1024;

/// The forms of every value, found in one pass.
pub struct Masker {
    matcher: Option<AhoCorasick>,
    /// The same forms, sorted, to tell whether the end of a read could begin one; wiped
    /// when dropped. The matcher keeps copies of its own in its tables, in ordinary heap
    /// memory that is freed, not wiped (the process is not dumpable and writes no core).
    sorted: Vec<Zeroizing<Vec<u8>>>,
    /// Whether a form begins with this byte: most positions are ruled out with one look.
    first: [bool; 256],
}

impl Masker {
    /// A matcher for `values` (`(label, bytes)`); every value shorter than [`MIN_MASKED`]
    /// is left out and its label returned, for a warning.
    pub fn new<'v>(values: impl IntoIterator<Item = (&'v str, &'v [u8])>) -> (Masker, Vec<String>) {
        let mut forms: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut short = Vec::new();
        for (label, value) in values {
            if value.len() < MIN_MASKED {
                short.push(label.to_owned());
                continue;
            }
            forms.extend(encodings(value));
        }
        forms.retain(|form| !form.is_empty());
        forms.sort_by(|a, b| a.as_slice().cmp(b.as_slice()));
        forms.dedup_by(|a, b| a.as_slice() == b.as_slice());
        let mut first = [false; 256];
        for form in &forms {
            first[form[0] as usize] = true;
        }
        let matcher = (!forms.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(forms.iter().map(|f| f.as_slice()))
                .expect("a few thousand short patterns always build")
        });
        (Masker { matcher, sorted: forms, first }, short)
    }

    /// Whether `tail` could be the start of a form that the next read completes.
    fn could_begin(&self, tail: &[u8]) -> bool {
        if !self.first[tail[0] as usize] {
            return false;
        }
        // The forms that start with `tail` sort together, right from the first one not below
        // it, which may be `tail` itself (complete, not a beginning): then the next.
        let at = self.sorted.partition_point(|form| form.as_slice() < tail);
        self.sorted[at..].iter().take(2).any(|form| form.len() > tail.len() && form.starts_with(tail))
    }

    fn longest(&self) -> usize {
        self.sorted.iter().map(|form| form.len()).max().unwrap_or(0)
    }
}

/// Every form of `value` that is masked.
fn encodings(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let mut forms = vec![Zeroizing::new(value.to_vec())];
    for alphabet in [STANDARD, URL_SAFE] {
        for offset in 0..3 {
            forms.push(base64_inside(value, offset, alphabet));
        }
    }
    forms.push(json_escaped(value, false, false));
    forms.push(json_escaped(value, true, false));
    forms.push(json_escaped(value, false, true));
    forms.push(url_encoded(value, false));
    forms.push(url_encoded(value, true));
    forms
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The base64 characters that `value` alone decides when it starts `offset` bytes (0-2)
/// into an encoded stream: those whose six bits all fall inside the value.
fn base64_inside(value: &[u8], offset: usize, alphabet: &[u8; 64]) -> Zeroizing<Vec<u8>> {
    let bits = |i: usize| -> u8 {
        // Bit i of the stream (most significant first), the offset's bytes being zero.
        let byte = i / 8;
        if byte < offset { 0 } else { (value[byte - offset] >> (7 - i % 8)) & 1 }
    };
    let (start_bit, end_bit) = (offset * 8, (offset + value.len()) * 8);
    let first = start_bit.div_ceil(6);
    let last = end_bit / 6; // exclusive: the character covering bits [6c, 6c+6)
    let mut form = Zeroizing::new(Vec::with_capacity(last.saturating_sub(first)));
    for c in first..last {
        let index = (0..6).fold(0usize, |acc, k| acc << 1 | bits(6 * c + k) as usize);
        form.push(alphabet[index]);
    }
    form
}

/// As a JSON string's contents: `"`, `\` and control characters escaped; with `slash`, `/`
/// as `\/` (PHP, some Java); with `ascii`, everything beyond ASCII as `\uXXXX` (Python's
/// default). A value that is not UTF-8 is escaped byte by byte where it is ASCII.
fn json_escaped(value: &[u8], slash: bool, ascii: bool) -> Zeroizing<Vec<u8>> {
    // `\\uXXXX` per byte at worst: never a reallocation that leaves an unwiped copy.
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 12 + 8));
    let push_unit = |out: &mut Vec<u8>, unit: u32| out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
    let text = if ascii { std::str::from_utf8(value).ok() } else { None };
    let escape = |out: &mut Vec<u8>, c: char, bytes: &[u8]| match c {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        '/' if slash => out.extend_from_slice(b"\\/"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\r' => out.extend_from_slice(b"\\r"),
        '\t' => out.extend_from_slice(b"\\t"),
        '\u{8}' => out.extend_from_slice(b"\\b"),
        '\u{c}' => out.extend_from_slice(b"\\f"),
        c if (c as u32) < 0x20 => push_unit(out, c as u32),
        c if ascii && !c.is_ascii() => {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                push_unit(out, u32::from(*unit));
            }
        }
        _ => out.extend_from_slice(bytes),
    };
    match text {
        Some(text) => {
            let mut buffer = [0u8; 4];
            for c in text.chars() {
                let bytes = c.encode_utf8(&mut buffer).as_bytes().to_vec();
                escape(&mut out, c, &bytes);
            }
        }
        None => {
            for &byte in value {
                escape(&mut out, if byte.is_ascii() { byte as char } else { '\u{80}' }, &[byte]);
            }
        }
    }
    out
}

/// Percent-encoded as `encodeURIComponent` does (everything but unreserved characters), or
/// as an HTML form does (`space` as `+`).
fn url_encoded(value: &[u8], form: bool) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for &byte in value {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte),
            b' ' if form => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{byte:02X}").as_bytes()),
        }
    }
    out
}

/// One output stream being masked: what was read, less what was written.
pub struct Stream<'m> {
    masker: &'m Masker,
    /// Trailing bytes that could begin a form; wiped when replaced (they may be a value's
    /// first bytes).
    held: Zeroizing<Vec<u8>>,
    longest: usize,
}

impl<'m> Stream<'m> {
    pub fn new(masker: &'m Masker) -> Stream<'m> {
        // Room for a whole read and a held tail from the start: a buffer that grew would leave
        // its old, unwiped copy of the program's output (values included) in freed memory.
        let longest = masker.longest();
        Stream { masker, held: Zeroizing::new(Vec::with_capacity(CHUNK + longest)), longest }
    }

    /// Masks `chunk` (after what is held), appending what can be written to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(matcher) = &self.masker.matcher else {
            out.extend_from_slice(chunk);
            return;
        };
        let mut buffer = std::mem::take(&mut self.held);
        buffer.extend_from_slice(chunk);
        // The longest tail that could begin a form: nothing before it can be part of a form
        // that is not complete yet (it would be a longer such tail).
        let search_from = buffer.len().saturating_sub(self.longest.saturating_sub(1));
        let hold = (search_from..buffer.len())
            .find(|&at| self.masker.could_begin(&buffer[at..]))
            .unwrap_or(buffer.len());
        let mut written = 0;
        for found in matcher.find_iter(buffer.as_slice()) {
            if found.start() >= hold {
                break;
            }
            out.extend_from_slice(&buffer[written..found.start()]);
            out.extend_from_slice(MARKER);
            written = found.end();
        }
        let hold = if written > hold {
            (written..buffer.len()).find(|&at| self.masker.could_begin(&buffer[at..])).unwrap_or(buffer.len())
        } else {
            hold
        };
        out.extend_from_slice(&buffer[written..hold]);
        // The tail moves to the front of the same buffer: no allocation, and no 128 KiB wipe
        // per chunk (the buffer is wiped, whole, when the stream drops).
        buffer.drain(..hold);
        self.held = buffer;
    }

    /// At the end: what is still held can no longer become a value; it is written as is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.held);
        self.held.clear();
    }
}

/// Copies `source` (the program's end of a pipe or pty) to `sink` (our stdout or stderr),
/// masked, until it ends, or until `stop` is closed: then what is already in `source` is
/// read (the program has exited, so all it wrote is there) and the copy ends, even if a
/// process the program left behind still holds the pipe. When `sink` is closed (EPIPE), the
/// source is closed too, so the program learns it as it would writing there itself.
///
/// There is no flush on idle, by choice: what is held is only a tail that could begin a
/// form (at most the longest form less a byte; a prompt, which cannot, passes at once),
/// and a timer that let it go would print half a value whenever a program's buffered
/// writer flushes mid-value and then stays quiet until its buffer fills again (common on
/// a pipe); a log read later joins the halves. The tail comes out when more output
/// decides it, or at the program's end.
pub fn pump(source: Arc<OwnedFd>, sink: BorrowedFd<'static>, masker: Arc<Masker>, stop: Arc<OwnedFd>) {
    let _ = fcntl(&*source, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut stream = Stream::new(&masker);
    let mut input = Zeroizing::new(vec![0u8; CHUNK]);
    let mut output: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(CHUNK + masker.longest()));
    let mut stopping = false;
    loop {
        if stopping {
            // A pty hands the program's last writes over a moment later: a short wait for
            // them, paid only when something the program left behind still holds the stream
            // (otherwise its end, or EIO, comes at once).
            let mut fds = [PollFd::new(source.as_fd(), PollFlags::POLLIN)];
            if !poll(&mut fds, PollTimeout::from(DRAIN_WAIT_MS)).is_ok_and(|n| n > 0) {
                break;
            }
        } else {
            let mut fds = [
                PollFd::new(source.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            stopping = fds[1].any().unwrap_or(false);
        }
        match nix::unistd::read(&*source, &mut input) {
            Ok(0) | Err(Errno::EIO) => break, // EIO: a pty whose other side is all closed
            Ok(n) => {
                output.clear();
                stream.push(&input[..n], &mut output);
                if write_all(sink, &output).is_err() {
                    return;
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    output.clear();
    stream.finish(&mut output);
    let _ = write_all(sink, &output);
}

fn write_all(sink: BorrowedFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(sink, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                // Our stdout is non-blocking (someone else's choice): wait until it drains.
                let mut fds = [PollFd::new(sink, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::NONE);
            }
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &[u8] = b"canary-mask-7f3a\"/\xc3\xa9 %x";

    fn mask_in(chunks: &[&[u8]], values: &[&[u8]]) -> Vec<u8> {
        let (masker, _) = Masker::new(values.iter().map(|v| ("v", *v)));
        let mut stream = Stream::new(&masker);
        let mut out = Vec::new();
        for chunk in chunks {
            stream.push(chunk, &mut out);
        }
        stream.finish(&mut out);
        out
    }

    fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> Vec<u8> {
        let mut out = Vec::new();
        for group in bytes.chunks(3) {
            let n = group.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
            for k in 0..=group.len() {
                out.push(alphabet[(n >> (18 - 6 * k) & 63) as usize]);
            }
            out.extend(std::iter::repeat_n(b'=', 3 - group.len()));
        }
        out
    }

    #[test]
    fn every_form_is_masked_at_every_split_with_its_surroundings_intact() {
        let mut forms = vec![CANARY.to_vec()];
        for alphabet in [STANDARD, URL_SAFE] {
            for prefix in [&b""[..], b"a", b"ab", b"abc"] {
                // The value inside a longer encoded text, at each alignment.
                let encoded = base64(&[prefix, CANARY, b"tail"].concat(), alphabet);
                forms.push(encoded);
            }
        }
        forms.push(serde_json::to_vec(std::str::from_utf8(CANARY).unwrap()).unwrap());
        forms.push(url_encoded(CANARY, false).to_vec());
        for form in &forms {
            let text = [&b"before:"[..], form, b":after"].concat();
            for split in 0..=text.len() {
                let out = mask_in(&[&text[..split], &text[split..]], &[CANARY]);
                let shown = String::from_utf8_lossy(&out);
                assert!(!out.windows(CANARY.len()).any(|w| w == CANARY), "{shown}");
                assert!(shown.starts_with("before:") && shown.ends_with(":after"), "{shown}");
                assert!(shown.contains("***"), "{shown} (form {})", String::from_utf8_lossy(form));
            }
        }
    }

    #[test]
    fn plain_text_passes_byte_for_byte_even_when_it_begins_like_a_value() {
        let text = b"can canary- canary-mask-7f3 {\n}\n%25 \xff\x00";
        for split in 0..=text.len() {
            assert_eq!(mask_in(&[&text[..split], &text[split..]], &[CANARY]), text);
        }
        assert_eq!(mask_in(&[b"abc"], &[]), b"abc");
    }

    /// GitHub Actions masked each line of a multi-line secret, so a JSON secret's `{` and
    /// `}` lines masked every brace; and a value with `%` was mangled by escaping.
    #[test]
    fn a_json_secret_is_masked_whole_and_a_percent_value_as_bytes() {
        let json: &[u8] = b"{\n  \"user\": \"svc\",\n  \"pass\": \"hunter2-x\"\n}";
        let out = mask_in(&[b"conf=", json, b"\n{\n}\n"], &[json]);
        assert_eq!(out, b"conf=***\n{\n}\n");
        let percent: &[u8] = b"p%40ss%word";
        let out = mask_in(&[b"a p%40ss%word b p%2540ss%25word c %40 %"], &[percent]);
        assert_eq!(out, b"a *** b *** c %40 %");
    }

    #[test]
    fn short_values_are_named_and_not_masked() {
        let (masker, short) = Masker::new([("pin", &b"123"[..]), ("token", &b"long-enough"[..])]);
        assert_eq!(short, ["pin"]);
        let mut stream = Stream::new(&masker);
        let mut out = Vec::new();
        stream.push(b"123 long-enough", &mut out);
        stream.finish(&mut out);
        assert_eq!(out, b"123 ***");
    }

    /// One value a prefix of another: the longer one is masked whole, even split.
    #[test]
    fn the_longest_value_wins_across_a_split() {
        for split in 0..=16 {
            let text = b"xx abcdefghij yy";
            let out = mask_in(&[&text[..split], &text[split..]], &[b"abcd", b"abcdefghij"]);
            assert_eq!(out, b"xx *** yy", "split at {split}");
        }
    }
}
