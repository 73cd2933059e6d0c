//! [`SecretValue`]: the bytes of one secret, wiped when dropped and never printable.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret's bytes. No `Clone`, no way to print it: `Debug` and `Display` say `<redacted>`.
/// Growing it moves the bytes into a new buffer and wipes the old one, so no copy is left
/// behind in freed memory.
#[derive(Default, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Takes ownership of `bytes`; they are wiped when the value is dropped.
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(Zeroizing::new(bytes))
    }

    pub fn with_capacity(capacity: usize) -> SecretValue {
        SecretValue::new(Vec::with_capacity(capacity))
    }

    /// The bytes, for the one place that must hand them on (the child, a descriptor, stdout).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends without leaving a stale copy: when the buffer must grow, the bytes move to a
    /// new one and the old one is wiped.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.0.capacity() - self.0.len() < bytes.len() {
            let wanted = (self.0.len() + bytes.len()).max(self.0.capacity() * 2).max(64);
            let mut grown = Vec::with_capacity(wanted);
            grown.extend_from_slice(&self.0);
            self.0.zeroize();
            *self.0 = grown;
        }
        self.0.extend_from_slice(bytes);
    }

    /// An explicit copy, for a secret injected in two places. (No `Clone`: copies of a
    /// secret should be visible in the code.)
    pub fn copy(&self) -> SecretValue {
        self.slice(0..self.len())
    }

    /// A new value holding `range` of this one (used by `field` and `trim`).
    pub fn slice(&self, range: std::ops::Range<usize>) -> SecretValue {
        let mut part = SecretValue::with_capacity(range.len());
        part.extend_from_slice(&self.0[range]);
        part
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let value = SecretValue::new(b"canary-3f9a".to_vec());
        assert_eq!(format!("{value:?}"), "<redacted>");
        assert_eq!(format!("{value}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&value)), "Some(<redacted>)");
    }

    #[test]
    fn grows_and_slices() {
        let mut value = SecretValue::default();
        for chunk in [&b"abc"[..], &[b'x'; 100][..], b"\0\n"] {
            value.extend_from_slice(chunk);
        }
        assert_eq!(value.len(), 105);
        assert_eq!(&value.expose()[..3], b"abc");
        assert_eq!(value.slice(103..105).expose(), b"\0\n");
    }
}
