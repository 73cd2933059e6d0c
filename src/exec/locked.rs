//! Values a parent that stays keeps while the program runs (masking its
//! output, comparing a re-fetch): copied into one private mapping of their own, locked so
//! that they are never swapped out, left out of core dumps, zeroed in any process forked
//! from us (a backend started while the program runs), and wiped when dropped. Their own
//! pages, because `mlock` is not counted: unlocking a value that shared a heap page with
//! another would unlock both.

use std::ffi::c_void;
use std::fmt;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mlock, mmap_anonymous, munlock, munmap};
use zeroize::Zeroize;

use super::system;
use crate::error::Error;
use crate::secret::SecretValue;

/// Labelled secret values in locked memory. No `Clone`; `Debug` shows the labels (variable
/// or secret names, never values) and whether the memory is locked.
pub struct LockedValues {
    region: NonNull<c_void>,
    size: usize,
    /// Why the memory could not be locked (`None`: it is).
    lock_error: Option<Errno>,
    /// `(label, offset, length)` of each value in the region.
    entries: Vec<(String, usize, usize)>,
}

// SAFETY: the region is a private mapping owned by this value alone, written only in `new`
// and unmapped only in `drop`; shared references only read it.
unsafe impl Send for LockedValues {}
// SAFETY: as above, nothing writes through `&LockedValues`.
unsafe impl Sync for LockedValues {}

impl LockedValues {
    /// Moves `values` into locked memory (the originals are wiped as they drop). When the
    /// memory cannot be locked (`RLIMIT_MEMLOCK`, 64 KiB to 8 MiB by default, is used up)
    /// the values are kept all the same and [`LockedValues::note`] says so: locking is a
    /// defence in depth, never a reason not to launch.
    pub fn new(values: impl IntoIterator<Item = (String, SecretValue)>) -> Result<LockedValues, Error> {
        // SAFETY: the lock is asked for the mapping just made, of exactly that length.
        LockedValues::with_lock(values, |region, size| unsafe { mlock(region, size) })
    }

    fn with_lock(
        values: impl IntoIterator<Item = (String, SecretValue)>,
        lock: impl FnOnce(NonNull<c_void>, usize) -> nix::Result<()>,
    ) -> Result<LockedValues, Error> {
        let values: Vec<(String, SecretValue)> = values.into_iter().collect();
        let total: usize = values.iter().map(|(_, value)| value.len()).sum();
        let page =
            nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as usize;
        let size = total.div_ceil(page).max(1) * page;
        let length = NonZeroUsize::new(size).expect("at least one page");
        // SAFETY: a new private anonymous mapping at an address of the kernel's choosing
        // touches no memory we already have.
        let region = unsafe {
            mmap_anonymous(None, length, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_PRIVATE)
        }
        .map_err(system("mmap for locked values"))?;
        let lock_error = lock(region, size).err();
        for advice in [MmapAdvise::MADV_DONTDUMP, MmapAdvise::MADV_WIPEONFORK] {
            // SAFETY: advice on the whole of our own mapping; these two change what a core
            // dump or a fork sees of it, not its contents here. Older kernels refuse
            // MADV_WIPEONFORK (4.14): the backends' close-on-exec still applies.
            let _ = unsafe { madvise(region, size, advice) };
        }
        let mut stored = LockedValues { region, size, lock_error, entries: Vec::with_capacity(values.len()) };
        let mut offset = 0;
        for (label, value) in values {
            stored.bytes_mut()[offset..offset + value.len()].copy_from_slice(value.expose());
            stored.entries.push((label, offset, value.len()));
            offset += value.len();
        }
        Ok(stored)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `region` is our mapping of `size` readable bytes, alive until drop.
        unsafe { std::slice::from_raw_parts(self.region.as_ptr().cast::<u8>(), self.size) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.region.as_ptr().cast::<u8>(), self.size) }
    }

    /// Each value with its label (the variable, or the secret's name for a descriptor), in
    /// the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(label, offset, len)| (label.as_str(), &self.bytes()[*offset..offset + len]))
    }

    /// How many values.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the values are locked in memory (never swapped out).
    pub fn is_locked(&self) -> bool {
        self.lock_error.is_none()
    }

    /// When the values could not be locked: a warning for the user, naming no value.
    pub fn note(&self) -> Option<String> {
        self.lock_error.map(|errno| {
            format!(
                "the secrets' values could not be locked in memory ({errno}), so they may be \
                 swapped out; raise the locked-memory limit (`ulimit -l`, LimitMEMLOCK= in a \
                 systemd unit) to lock them"
            )
        })
    }
}

impl fmt::Debug for LockedValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedValues")
            .field("labels", &self.entries.iter().map(|(label, ..)| label).collect::<Vec<_>>())
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

impl Drop for LockedValues {
    fn drop(&mut self) {
        // Wiped while still locked, so no unwiped page can be swapped out in between.
        self.bytes_mut().zeroize();
        // SAFETY: our own mapping, of that size; nothing refers to it once `self` drops.
        unsafe {
            if self.lock_error.is_none() {
                let _ = munlock(self.region, self.size);
            }
            let _ = munmap(self.region, self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-locked-5d0e2c";

    fn values() -> Vec<(String, SecretValue)> {
        vec![
            ("API_TOKEN".to_owned(), SecretValue::new(CANARY.as_bytes().to_vec())),
            ("db-password".to_owned(), SecretValue::new(b"second\0value".to_vec())),
            ("EMPTY".to_owned(), SecretValue::default()),
        ]
    }

    /// The `Locked:` size, in kB, of the mapping of /proc/self/smaps that holds `address`.
    fn locked_kb(address: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) =
                    (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
            {
                inside = (start..end).contains(&address);
            } else if inside && let Some(size) = line.strip_prefix("Locked:") {
                return size.trim().trim_end_matches("kB").trim().parse().unwrap();
            }
        }
        panic!("no mapping holds {address:#x}");
    }

    #[test]
    fn keeps_values_in_locked_memory() {
        let kept = LockedValues::new(values()).unwrap();
        let seen: Vec<(&str, &[u8])> = kept.iter().collect();
        assert_eq!(
            seen,
            vec![
                ("API_TOKEN", CANARY.as_bytes()),
                ("db-password", &b"second\0value"[..]),
                ("EMPTY", &b""[..])
            ]
        );
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK).unwrap();
        if soft >= 64 * 1024 {
            // One page must fit in any default limit.
            assert!(kept.is_locked(), "{:?}", kept.note());
            assert!(locked_kb(kept.region.as_ptr() as usize) > 0);
        }
        let shown = format!("{kept:?}");
        assert!(!shown.contains(CANARY), "{shown}");
        assert!(shown.contains("API_TOKEN"), "{shown}");
    }

    #[test]
    fn memory_that_cannot_be_locked_keeps_the_values_with_a_note() {
        let kept = LockedValues::with_lock(values(), |_, _| Err(Errno::ENOMEM)).unwrap();
        assert!(!kept.is_locked());
        assert_eq!(kept.iter().next(), Some(("API_TOKEN", CANARY.as_bytes())));
        let note = kept.note().unwrap();
        assert!(note.contains("ulimit -l") && !note.contains(CANARY), "{note}");
        assert_eq!(locked_kb(kept.region.as_ptr() as usize), 0);
    }

    #[test]
    fn no_values_still_makes_a_valid_holder() {
        let kept = LockedValues::new(Vec::new()).unwrap();
        assert_eq!(kept.iter().count(), 0);
    }
}
