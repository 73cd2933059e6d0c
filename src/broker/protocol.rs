//! The broker's wire format (docs/broker.md): each message is a 4-byte big-endian length,
//! then that many bytes of JSON carrying `"version": 1`. A request names an operation, the
//! declared identity and the secret names; an answer says `ok` with its `exit_code`, and a
//! `fetch` answer's values travel as sealed memfds attached by `SCM_RIGHTS` to its first
//! byte, each secret naming the index of its descriptor: never a value inside a message.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identity::RuntimeIdentity;

pub const VERSION: u64 = 1;
/// The largest request the broker reads: names and an identity fit in far less.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The largest answer a client reads (a `check` of many names, each with its reason).
pub const MAX_ANSWER: usize = 1024 * 1024;
/// Names in one request; below the kernel's 253 descriptors per `SCM_RIGHTS` message.
pub const MAX_NAMES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// The values, as sealed memfds.
    Fetch,
    /// Every name's decision; no value, no backend asked.
    Check,
    /// The names this caller may read.
    List,
}

/// The declared identity, as the identity flags give it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireIdentity {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substrate: Option<String>,
}

impl From<&RuntimeIdentity> for WireIdentity {
    fn from(identity: &RuntimeIdentity) -> WireIdentity {
        WireIdentity {
            role: identity.role.to_string(),
            environment: identity.environment.clone(),
            machine: identity.machine.clone(),
            app: identity.app.clone(),
            substrate: identity.substrate.clone(),
        }
    }
}

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRequest {
    pub version: u64,
    pub op: Op,
    pub identity: WireIdentity,
    /// The secret names (`fetch`, `check`); ignored by `list`.
    #[serde(default)]
    pub names: Vec<String>,
    /// Names every manifest entry of which is `optional`: missing from the store, skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional: Vec<String>,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The deadline passed first.
    TimedOut,
    /// The length prefix announces more than the reader accepts.
    TooLarge(usize),
    /// The peer closed before a whole frame arrived (`0`: before any byte).
    Closed(usize),
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TimedOut => f.write_str("the message did not arrive in time"),
            FrameError::TooLarge(n) => write!(f, "a message of {n} bytes is over the limit"),
            FrameError::Closed(0) => f.write_str("the connection closed without a message"),
            FrameError::Closed(n) => write!(f, "the connection closed after {n} bytes of a message"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Sends `body` as one frame; `fds` ride on its first byte. A write that blocks past the
/// socket's send timeout fails (`SO_SNDTIMEO`), so a client that does not read cannot hold
/// a broker thread for ever.
pub fn send(stream: &UnixStream, body: &Value, fds: &[RawFd]) -> io::Result<()> {
    let text = serde_json::to_vec(body).map_err(io::Error::other)?;
    let length = u32::try_from(text.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + text.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&text);
    let mut sent = 0;
    while sent < frame.len() {
        let iov = [IoSlice::new(&frame[sent..])];
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if sent == 0 && !fds.is_empty() { &rights } else { &[] };
        match sendmsg::<UnixAddr>(stream.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The most descriptors one message can carry (the kernel's `SCM_MAX_FD`): room for all of
/// them, so that a list is never cut short (the kernel would install what fits, and a cut
/// list cannot be read back to close them).
const SCM_MAX_FD: usize = 253;

/// Whether descriptors sent with a frame are taken (the client: one memfd per value) or
/// refused (the broker: a client has none to send; with no room for them the kernel closes
/// them, so a client cannot fill the broker's descriptor table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Descriptors {
    Take,
    Refuse,
}

/// Reads one frame of at most `max` bytes by `deadline`, with any descriptors that came with
/// it (close-on-exec) when `descriptors` takes them. Each read waits only for what is left of
/// the deadline, so a peer that sends half a frame and stalls is dropped on time.
pub fn receive(
    stream: &UnixStream,
    max: usize,
    deadline: Instant,
    descriptors: Descriptors,
) -> Result<(Vec<u8>, Vec<OwnedFd>), FrameError> {
    let mut fds = Vec::new();
    let mut header = [0u8; 4];
    read_exact(stream, &mut header, deadline, descriptors, &mut fds, 0)?;
    let length = u32::from_be_bytes(header) as usize;
    if length > max {
        return Err(FrameError::TooLarge(length));
    }
    let mut body = vec![0u8; length];
    read_exact(stream, &mut body, deadline, descriptors, &mut fds, 4)?;
    Ok((body, fds))
}

fn read_exact(
    stream: &UnixStream,
    buffer: &mut [u8],
    deadline: Instant,
    descriptors: Descriptors,
    fds: &mut Vec<OwnedFd>,
    before: usize,
) -> Result<(), FrameError> {
    let mut filled = 0;
    let mut space = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    while filled < buffer.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FrameError::TimedOut);
        }
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).map_err(FrameError::Io)?;
        let mut iov = [IoSliceMut::new(&mut buffer[filled..])];
        let received = recvmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &mut iov,
            (descriptors == Descriptors::Take).then_some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let (bytes, passed) = match received {
            Ok(message) => {
                let mut passed = Vec::new();
                // A truncated list (more descriptors than asked for) is an error: keep none.
                if let Ok(cmsgs) = message.cmsgs() {
                    for cmsg in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = cmsg {
                            passed.extend(raw);
                        }
                    }
                }
                (message.bytes, passed)
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(FrameError::TimedOut),
            Err(e) => return Err(FrameError::Io(e.into())),
        };
        for raw in passed {
            fds.push(crate::exec::adopt(raw).map_err(FrameError::Io)?);
        }
        if bytes == 0 {
            return Err(FrameError::Closed(before + filled));
        }
        filled += bytes;
    }
    Ok(())
}

/// An error answer: the exit code the client exits with, and the broker's sentence.
pub fn error(exit_code: u8, message: &str) -> Value {
    serde_json::json!({"version": VERSION, "ok": false, "exit_code": exit_code, "error": message})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn later(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    /// Descriptors sent to a side that refuses them are closed by the kernel, not left open
    /// in the receiver: a client could otherwise fill the broker's descriptor table.
    #[test]
    fn refused_descriptors_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marker");
        let file = std::fs::File::create(&path).unwrap();
        let open_copies = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .filter(|target| *target == path)
                .count()
        };
        let (a, b) = UnixStream::pair().unwrap();
        send(&a, &serde_json::json!({"version": 1}), &[file.as_raw_fd(); 200]).unwrap();
        let (_, fds) = receive(&b, MAX_REQUEST, later(5000), Descriptors::Refuse).unwrap();
        assert!(fds.is_empty());
        assert_eq!(open_copies(), 1, "only our own descriptor of the file is open");
    }

    /// A frame and its descriptors arrive together, the descriptors close-on-exec.
    #[test]
    fn a_frame_carries_its_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        send(&a, &serde_json::json!({"version": 1, "ok": true}), &[file.as_raw_fd(), file.as_raw_fd()])
            .unwrap();
        let (body, fds) = receive(&b, MAX_ANSWER, later(5000), Descriptors::Take).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["ok"], true);
        assert_eq!(fds.len(), 2);
        let flags = nix::fcntl::fcntl(&fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(flags & nix::libc::FD_CLOEXEC != 0);
    }

    /// Over the limit is refused from the length alone; half a frame times out or, closed,
    /// says how much came.
    #[test]
    fn bounds_deadlines_and_short_frames() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&(MAX_REQUEST as u32 + 1).to_be_bytes()).unwrap();
        assert!(
            matches!(receive(&b, MAX_REQUEST, later(5000), Descriptors::Refuse), Err(FrameError::TooLarge(n)) if n == MAX_REQUEST + 1)
        );

        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[0, 0, 0, 9, b'{']).unwrap();
        assert!(matches!(
            receive(&b, MAX_REQUEST, later(50), Descriptors::Refuse),
            Err(FrameError::TimedOut)
        ));
        drop(a);
        assert!(matches!(
            receive(&b, MAX_REQUEST, later(5000), Descriptors::Refuse),
            Err(FrameError::Closed(0))
        ));

        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[0, 0, 0, 9, b'{', b'"']).unwrap();
        drop(a);
        assert!(matches!(
            receive(&b, MAX_REQUEST, later(5000), Descriptors::Refuse),
            Err(FrameError::Closed(6))
        ));
    }
}
