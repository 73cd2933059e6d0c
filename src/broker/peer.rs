//! Who is asking, from the kernel rather than from the request: `SO_PEERCRED` gives the uid,
//! gid and pid the peer had when it connected; the pid is pinned by a pidfd (`SO_PEERPIDFD`,
//! Linux 6.5, or `pidfd_open` on older kernels), and every `/proc/PID` read (supplementary
//! groups, systemd unit, executable) is believed only if that same process is still alive
//! after it: otherwise the PID may already name another process. A peer in another PID
//! namespace (pid 0) or one that is gone cannot be identified and is denied.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{getsockopt, sockopt};
use nix::unistd::Pid;

use crate::identity::Caller;

/// The kernel's facts about the process at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// uid, gid, supplementary groups and unit: what policies match.
    pub caller: Caller,
    pub pid: u32,
    /// `/proc/PID/exe`, for the audit (a path, which the peer may have replaced since).
    pub exe: Option<String>,
    /// How the pid was pinned: `SO_PEERPIDFD`, or `pidfd_open` (racy: the pid may have been
    /// reused between connect and the call, which the uid check below narrows).
    pub pinned_by: &'static str,
}

/// A connection's peer as it connected: its credentials and its process, pinned.
#[derive(Debug)]
pub struct Pinned {
    pid: i32,
    uid: u32,
    gid: u32,
    pidfd: OwnedFd,
    pinned_by: &'static str,
}

/// Pins the peer's process: its credentials from `SO_PEERCRED`, its process as a pidfd, or
/// why it cannot be identified. The broker pins at accept and reads the facts
/// ([`Pinned::facts`]) once the request is in, so that they are as fresh as the decision.
pub fn pin(stream: &UnixStream) -> Result<Pinned, String> {
    let credentials = getsockopt(stream, sockopt::PeerCredentials)
        .map_err(|e| format!("the kernel gave no credentials for the connection (SO_PEERCRED: {e})"))?;
    let (pid, uid, gid) = (credentials.pid(), credentials.uid(), credentials.gid());
    if pid <= 0 {
        return Err(format!(
            "the caller (uid {uid}) runs in another PID namespace (its pid is 0 here), so the process \
             cannot be pinned; run the client in the broker's PID namespace"
        ));
    }
    let (pidfd, pinned_by) = match getsockopt(stream, sockopt::PeerPidfd) {
        Ok(pidfd) => (pidfd, "SO_PEERPIDFD"),
        Err(e) => match crate::exec::pidfd_open(Pid::from_raw(pid)) {
            Ok(pidfd) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    eprintln!(
                        "mxm-secrets serve: this kernel offers no SO_PEERPIDFD ({e}; Linux 6.5 has it): callers \
                         are pinned with pidfd_open(pid), which a pid reused since connect could fool \
                         (the uid is checked to narrow that)"
                    )
                });
                (pidfd, "pidfd_open")
            }
            Err(e) => return Err(format!("the caller (pid {pid}) is gone ({e})")),
        },
    };
    Ok(Pinned { pid, uid, gid, pidfd, pinned_by })
}

impl Pinned {
    /// `uid N pid N`, for log lines.
    pub fn who(&self) -> String {
        format!("uid {} pid {}", self.uid, self.pid)
    }

    /// Groups, unit and executable from `/proc/PID`, each read believed only if the pinned
    /// process outlived it.
    pub fn facts(&self) -> Result<Peer, String> {
        let Pinned { pid, uid, gid, ref pidfd, pinned_by } = *self;
        let gone = || format!("the caller (pid {pid}) exited before it could be identified");
        if !alive(pidfd) {
            return Err(gone());
        }
        let read = |what: &str| -> Result<String, String> {
            let path = format!("/proc/{pid}/{what}");
            let text = if what == "exe" {
                std::fs::read_link(&path).map(|p| p.to_string_lossy().into_owned())
            } else {
                std::fs::read_to_string(&path)
            };
            // Believed only if the process the pidfd pins outlived the read.
            if !alive(pidfd) {
                return Err(gone());
            }
            text.map_err(|e| format!("cannot read {path}: {e}"))
        };
        let status = read("status")?;
        // SO_PEERCRED carries the effective uid, the second number of `Uid:`; with
        // pidfd_open the pid may name a newer process, whose owner would differ.
        let effective = field(&status, "Uid:").and_then(|ids| ids.get(1).copied());
        if effective != Some(uid) {
            return Err(format!(
                "the caller (pid {pid}) is no longer the process that connected as uid {uid}"
            ));
        }
        let groups = field(&status, "Groups:").unwrap_or_default();
        let unit = read("cgroup").ok().and_then(|text| unit(&text));
        let exe = read("exe").ok();
        if !alive(pidfd) {
            return Err(gone());
        }
        Ok(Peer { caller: Caller { uid, gid, groups, unit }, pid: pid as u32, exe, pinned_by })
    }
}

/// Whether the process `pidfd` pins still runs: `pidfd_send_signal(pidfd, 0)` succeeds until
/// it is reaped, and the pidfd turns readable as soon as it exits (a zombie counts as gone).
fn alive(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let exited = match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => false,
        Ok(_) => fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP)),
        Err(_) => true,
    };
    !exited && crate::exec::pidfd_alive(pidfd)
}

/// The numbers of a `/proc/PID/status` line such as `Groups:\t4 24 27`.
fn field(status: &str, key: &str) -> Option<Vec<u32>> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    Some(line[key.len()..].split_whitespace().filter_map(|n| n.parse().ok()).collect())
}

/// The systemd unit in a cgroup v2 path (`0::/system.slice/foo.service` -> `foo.service`):
/// the first component below the slices, as systemd's own `cg_path_get_unit` reads it. Only
/// the system manager makes cgroups there; below a unit, whoever the unit delegates to may
/// make cgroups of any name, so a deeper component proves nothing. A user manager's services
/// are therefore the manager's unit (`.../user@1000.service/app.slice/feed.service` ->
/// `user@1000.service`): a user who names a cgroup of theirs `feed.service` is not the
/// system's `feed.service`.
pub fn unit(cgroup: &str) -> Option<String> {
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    let first = path.split('/').filter(|c| !c.is_empty()).find(|c| !c.ends_with(".slice"))?;
    (first.ends_with(".service") || first.ends_with(".scope")).then(|| first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_the_first_component_below_the_slices() {
        assert_eq!(unit("0::/system.slice/foo.service\n").as_deref(), Some("foo.service"));
        assert_eq!(unit("0::/system.slice/foo.service/payload\n").as_deref(), Some("foo.service"));
        assert_eq!(
            unit("0::/system.slice/system-getty.slice/getty@tty1.service\n").as_deref(),
            Some("getty@tty1.service")
        );
        // A user's delegated subtree may hold cgroups of any name: they are the manager's.
        assert_eq!(
            unit("0::/user.slice/user-1000.slice/user@1000.service/app.slice/feed.service\n").as_deref(),
            Some("user@1000.service")
        );
        assert_eq!(unit("0::/system.slice/foo.service/feed.service\n").as_deref(), Some("foo.service"));
        assert_eq!(
            unit("0::/user.slice/user-1000.slice/session-3.scope\n").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(unit("0::/\n"), None);
        assert_eq!(unit("0::/init.scope\n").as_deref(), Some("init.scope"));
        assert_eq!(unit("0::/mygroup/feed.service\n"), None);
        assert_eq!(unit("1:name=systemd:/system.slice/foo.service\n"), None);
    }

    #[test]
    fn groups_come_from_the_status_line() {
        let status = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 \n";
        assert_eq!(field(status, "Groups:"), Some(vec![4, 24, 27]));
        assert_eq!(field("Groups:\t\n", "Groups:"), Some(vec![]));
        assert_eq!(field(status, "Uid:").unwrap()[1], 1000);
    }

    /// This process, through a socket pair: its own uid, gid and groups, pinned alive.
    #[test]
    fn a_socket_pair_identifies_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = pin(&a).unwrap().facts().unwrap();
        assert_eq!(peer.pid, std::process::id());
        assert_eq!(peer.caller.uid, nix::unistd::geteuid().as_raw());
        assert!(peer.exe.is_some());
    }
}
