//! Opening the files the launcher reads (config, manifest, `file`-backend secrets): regular
//! files only, opened so that a FIFO or device put in their place cannot block us.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for reading, without blocking and without acquiring a terminal, and checks
/// that what was opened (not what the path named a moment before) is a regular file.
pub fn open_regular(path: &Path) -> Result<(File, Metadata), std::io::Error> {
    let file =
        File::options().read(true).custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("it is not a regular file (a directory, FIFO or device)"));
    }
    Ok((file, meta))
}

/// A small UTF-8 file: at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<(String, Metadata), String> {
    let (file, meta) = open_regular(path).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.len() > limit {
        return Err(format!("is {} bytes, more than the {limit} it may have", meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("grew past the {limit} bytes it may have while being read"));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("is not UTF-8 text (byte {} is invalid)", e.utf8_error().valid_up_to()))?;
    Ok((text, meta))
}
