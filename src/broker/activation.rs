//! Listening sockets from systemd socket activation (`sd_listen_fds(3)`): `LISTEN_PID` is
//! ours, `LISTEN_FDS` sockets start at descriptor 3, and `LISTEN_FDNAMES` (the socket
//! units' `FileDescriptorName=`) tells the broker's socket (`broker`) from the credentials
//! socket (`credentials`). A single unnamed socket is the broker's.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;

use nix::sys::socket::{getsockopt, sockopt};

use crate::error::Error;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST: i32 = 3;

#[derive(Debug, Default)]
pub struct Activated {
    pub broker: Option<UnixListener>,
    pub credentials: Option<UnixListener>,
}

/// The sockets systemd passed us, or `None` when we were not socket-activated.
pub fn listeners() -> Result<Option<Activated>, Error> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(pid), Some(count)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else { return Ok(None) };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        // Meant for another process (our parent's): not ours to take.
        return Ok(None);
    }
    let bad = |why: String| Error::Usage(format!("socket activation: {why}"));
    let count: i32 = count
        .parse()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .ok_or_else(|| bad(format!("LISTEN_FDS={count} is not a count of 1 to 16 sockets")))?;
    let names: Vec<String> = match var("LISTEN_FDNAMES") {
        Some(names) => names.split(':').map(str::to_owned).collect(),
        None => Vec::new(),
    };
    let mut activated = Activated::default();
    for index in 0..count {
        let fd: OwnedFd = crate::exec::adopt(FIRST + index)
            .map_err(|e| bad(format!("descriptor {} is not open: {e}", FIRST + index)))?;
        if !getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
            return Err(bad(format!(
                "descriptor {} is not a listening socket (use ListenStream=)",
                FIRST + index
            )));
        }
        let name = names.get(index as usize).map(String::as_str).unwrap_or("");
        let slot = match name {
            "broker" => &mut activated.broker,
            "credentials" => &mut activated.credentials,
            // systemd names an unnamed socket after its unit; one socket is the broker's.
            _ if count == 1 => &mut activated.broker,
            other => {
                return Err(bad(format!(
                    "socket {other:?}: name the sockets FileDescriptorName=broker and \
                     FileDescriptorName=credentials in the socket units"
                )));
            }
        };
        if slot.is_some() {
            return Err(bad(format!("two sockets are named {name:?}")));
        }
        *slot = Some(UnixListener::from(fd));
    }
    Ok(Some(activated))
}
