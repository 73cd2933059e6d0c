//! Durations as people write them: a number of seconds (`10`, `0.5`), or
//! a number with a unit (`500ms`, `30s`, `5m`, `1h`). One parser for `--watch`,
//! `--stop-timeout` and a store's `timeout`, so the three accept the same words.

use std::time::Duration;

/// The units, longest suffix first so that `ms` is not read as `m` followed by garbage.
const UNITS: [(&str, f64); 4] = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

/// `text` as a duration, or what is wrong with it (for a message naming where it came from).
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let (number, scale) = UNITS
        .iter()
        .find_map(|(unit, scale)| trimmed.strip_suffix(unit).map(|n| (n.trim_end(), *scale)))
        .unwrap_or((trimmed, 1.0));
    let well_formed = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let seconds = number.parse::<f64>().ok().filter(|_| well_formed).map(|n| n * scale);
    match seconds {
        Some(seconds) if seconds.is_finite() && seconds <= u32::MAX as f64 => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(format!(
            "`{}` is not a duration: give seconds (`10`, `0.5`) or a number with a unit (`500ms`, `30s`, `5m`, `1h`)",
            text.escape_debug()
        )),
    }
}

/// [`parse`], refusing zero: for clap's `value_parser`.
pub fn positive(text: &str) -> Result<Duration, String> {
    match parse(text)? {
        Duration::ZERO => Err(format!("`{}` is zero: give a duration above 0", text.escape_debug())),
        duration => Ok(duration),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_seconds_and_units() {
        let ms = Duration::from_millis;
        for (text, expected) in [
            ("10", ms(10_000)),
            ("0.5", ms(500)),
            ("500ms", ms(500)),
            ("30s", ms(30_000)),
            ("1.5s", ms(1500)),
            ("5m", ms(300_000)),
            ("1h", ms(3_600_000)),
            (" 2 s ", ms(2000)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in ["", "s", "ms", "-1", "1d", "1 h m", "1e3", "inf", "NaN", "1..2", "10x", "+5"] {
            let error = parse(text).unwrap_err();
            assert!(error.contains("not a duration") && error.contains("500ms"), "{text}: {error}");
        }
        assert!(positive("0s").unwrap_err().contains("zero"));
        assert_eq!(positive("300ms"), Ok(Duration::from_millis(300)));
    }
}
