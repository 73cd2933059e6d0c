//! Sealed in-memory files: how a descriptor secret reaches the program.
//! `memfd_secret` would keep the bytes out of the kernel's direct map, but cannot be read
//! with `read()` nor opened by path, so it does not serve.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::unistd::{Whence, lseek, write};

use super::system;
use crate::error::Error;
use crate::name::Name;
use crate::secret::SecretValue;

/// The label every memfd of ours carries in /proc/PID/fd (`memfd:mxm-secrets:NAME`).
pub(super) const LABEL_PREFIX: &str = "mxm-secrets:";

/// An in-memory file holding `value`, sealed against writing, growing, shrinking and further
/// sealing, read position at 0 (a child reading the inherited descriptor itself, `cat <&3`,
/// shares that position). Close-on-exec: only the placement between fork (or not) and exec
/// puts a copy where the program expects it, without that flag.
pub(crate) fn sealed(name: &Name, value: &SecretValue) -> Result<OwnedFd, Error> {
    sealed_bytes(name.as_str(), value.expose())
}

/// [`sealed`], from bytes that live elsewhere (the broker's [`super::LockedValues`]).
pub(crate) fn sealed_bytes(name: &str, value: &[u8]) -> Result<OwnedFd, Error> {
    let label = format!("{LABEL_PREFIX}{name}");
    let file = memfd_create(label.as_str(), MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(system("memfd_create"))?;
    let mut rest = value;
    while !rest.is_empty() {
        match write(&file, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(system("writing a memfd")(e)),
        }
    }
    let seals =
        SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_SEAL;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(system("sealing a memfd"))?;
    lseek(&file, 0, Whence::SeekSet).map_err(system("rewinding a memfd"))?;
    Ok(file)
}
