//! Value post-processing (`field`, `trim`): any bytes, any key, any mode. The first byte picks
//! the mode and field, the bytes up to the first NUL after it are the key, the rest the value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxm_secrets::SecretValue;
use mxm_secrets::value::{Field, Trim, extract};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (key, value) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b"user"[..], rest),
    };
    let trim = [Trim::Whitespace, Trim::Newline, Trim::None][usize::from(mode % 3)];
    let field = match mode / 3 % 3 {
        0 => None,
        1 => Some(Field::Password),
        _ => Some(Field::Key(String::from_utf8_lossy(key).into_owned())),
    };
    let value = SecretValue::new(value.to_vec());
    if let Some(out) = extract(&value, field.as_ref(), trim) {
        assert!(out.len() <= value.len());
    }
});
