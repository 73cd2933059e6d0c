//! `--watch`: when to fetch again ([`next_fetch`], the interval give or take 10 %, so that a
//! fleet started together does not ask its store together) and whether a re-fetch calls
//! for a restart ([`changed`]: the names whose value differs from the ones the program has,
//! compared in locked memory). Both pure: the supervisor's loop does the fetching.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use crate::exec::LockedValues;
use crate::name::Name;
use crate::secret::SecretValue;

/// `interval` scaled by a factor in [0.9, 1.1] that `random` picks.
pub fn jittered(interval: Duration, random: u64) -> Duration {
    let fraction = random as f64 / u64::MAX as f64; // 0..=1
    interval.mul_f64(0.9 + 0.2 * fraction)
}

/// When the next re-fetch is due, counted from `now`.
pub fn next_fetch(now: Instant, interval: Duration) -> Instant {
    // Each RandomState is seeded afresh: enough randomness to spread a fleet, with no
    // dependency for it.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    now + jittered(interval, random)
}

/// The names, in `fetched`'s order, whose value differs from the one in `current` (labelled
/// by name), or that are new; then those `current` has and `fetched` lacks (an optional
/// secret that disappeared).
pub fn changed(current: &LockedValues, fetched: &[(Name, SecretValue)]) -> Vec<String> {
    let mut names: Vec<String> = fetched
        .iter()
        .filter(|(name, value)| {
            current
                .iter()
                .find(|(label, _)| *label == name.as_str())
                .is_none_or(|(_, kept)| kept != value.expose())
        })
        .map(|(name, _)| name.to_string())
        .collect();
    names.extend(
        current
            .iter()
            .filter(|(label, _)| !fetched.iter().any(|(name, _)| name.as_str() == *label))
            .map(|(label, _)| label.to_owned()),
    );
    names
}

/// Values labelled by secret name, locked: what the running program was given.
pub fn lock(values: Vec<(Name, SecretValue)>) -> Result<LockedValues, crate::error::Error> {
    LockedValues::new(values.into_iter().map(|(name, value)| (name.to_string(), value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> Vec<(Name, SecretValue)> {
        pairs.iter().map(|(n, v)| (Name::new(n).unwrap(), SecretValue::new(v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let interval = Duration::from_secs(10);
        assert_eq!(jittered(interval, 0), Duration::from_secs(9));
        assert_eq!(jittered(interval, u64::MAX), Duration::from_secs(11));
        let now = Instant::now();
        for _ in 0..100 {
            let due = next_fetch(now, interval) - now;
            assert!(due >= Duration::from_secs(9) && due <= Duration::from_secs(11), "{due:?}");
        }
    }

    #[test]
    fn only_names_whose_value_changed_are_reported() {
        let current = lock(values(&[("a", "one"), ("b", "two"), ("gone", "x")])).unwrap();
        assert_eq!(
            changed(&current, &values(&[("a", "one"), ("b", "two"), ("gone", "x")])),
            Vec::<String>::new()
        );
        assert_eq!(
            changed(&current, &values(&[("a", "one"), ("b", "TWO"), ("new", "n")])),
            ["b", "new", "gone"]
        );
    }
}
