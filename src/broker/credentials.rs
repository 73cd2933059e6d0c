//! systemd's `LoadCredential=ID:PATH` client, answered on the broker's credentials socket
//! (what systemd does, read from its source, is in docs/credentials.md).
//!
//! systemd (PID 1, uid 0) binds its socket to the abstract address
//! `\0<hex>/unit/<UNIT>/<ID>`, connects, shuts down its write side and reads to EOF, refusing
//! (E2BIG) an answer longer than it takes. [`answer`] serves one such connection:
//!
//! - The address is believed only from a peer whose `SO_PEERCRED` uid is 0: anyone can bind
//!   any abstract name. Any other peer gets the connection closed, nothing written, and an
//!   audit record.
//! - Who asks is the unit alone: [`RuntimeIdentity::unit_only`] (no role is declared) and a
//!   [`Caller`] with uid 0 and the unit, so only a `principals:` rule naming the unit gives a
//!   principal, and a policy's `units` narrows as usual. The name is `ID`. Judging and
//!   fetching are the one pipeline's: `SecretsApi::judge`, `allowed`, `fetch`.
//! - Allowed and fetched: the value's bytes, nothing around them, then the connection is
//!   closed, which is the EOF systemd reads to.
//! - Anything else (denied, undefined, missing, failed, too large, an address that is not
//!   systemd's): [`OVER_LIMIT_ANSWER`] bytes of a filler line, which systemd refuses, failing
//!   the unit. A close alone would hand the unit an empty credential (systemd#27373), and a
//!   unix socket cannot be reset towards a peer that sent nothing. The audit says why.

use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, getsockopt, send, sockopt::PeerCredentials};

use crate::account::check_unit;
use crate::api::{Request, SecretsApi};
use crate::audit::Audit;
use crate::identity::{Caller, RuntimeIdentity};
use crate::name::Name;
use crate::secret::SecretValue;

/// systemd's `CREDENTIAL_SIZE_MAX` (src/shared/creds-util.h): the most `LoadCredential=`
/// reads from a file or socket; one byte more and it fails with E2BIG.
pub(crate) const CREDENTIAL_SIZE_MAX: usize = 1024 * 1024;

/// systemd's `CREDENTIAL_ENCRYPTED_SIZE_MAX`: the decoded limit of `LoadCredentialEncrypted=`.
pub(crate) const CREDENTIAL_ENCRYPTED_SIZE_MAX: usize = CREDENTIAL_SIZE_MAX + 128 * 1024;

/// systemd's `READ_FULL_FILE_ENCODED_STRING_AMPLIFICATION_BOUNDARY` (src/basic/fileio.c): an
/// encrypted credential is base64, so its raw read limit is three times the decoded one.
const ENCODED_AMPLIFICATION: usize = 3;

/// The refusal: more bytes than systemd reads for any credential, plain or encrypted, so
/// that it gives up with E2BIG whichever of `LoadCredential=` and `LoadCredentialEncrypted=`
/// names this socket (the filler is not base64 either). systemd stops reading one byte past
/// its limit and closes, so usually only that much is ever copied.
pub(crate) const OVER_LIMIT_ANSWER: usize = ENCODED_AMPLIFICATION * CREDENTIAL_ENCRYPTED_SIZE_MAX + 1;

// Checked when the crate builds: past every limit systemd reads a credential with.
const _: () = assert!(OVER_LIMIT_ANSWER > CREDENTIAL_SIZE_MAX + 1);
const _: () = assert!(OVER_LIMIT_ANSWER > ENCODED_AMPLIFICATION * CREDENTIAL_ENCRYPTED_SIZE_MAX);

/// What the refusal is made of: should a truncated refusal ever reach a unit, it says what
/// it is rather than looking like a secret.
const FILLER: &[u8] = b"mxm-secrets refused this credential; the broker's audit log says why\n";

/// A reader that stops reading (systemd never does) cannot hold a connection for longer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The unit and credential ID of systemd's address, `\0<hex>/unit/<UNIT>/<ID>` as
/// `getpeername(2)` gives it (the leading NUL marks an abstract address): `<hex>` is a random
/// 64-bit number in lowercase hex of any length, `<UNIT>` a unit name, `<ID>` not empty.
/// Anything else is not systemd's: `None`.
pub(crate) fn parse_peer_address(address: &[u8]) -> Option<(String, String)> {
    let name = std::str::from_utf8(address.strip_prefix(b"\0")?).ok()?;
    let mut parts = name.split('/');
    let (hex, unit_word, unit, id) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex_ok = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let id_ok = !id.is_empty() && !id.contains(|c: char| c.is_control());
    if parts.next().is_some() || !hex_ok || unit_word != "unit" || !id_ok || check_unit("unit", unit).is_err()
    {
        return None;
    }
    Some((unit.to_owned(), id.to_owned()))
}

/// The peer's address as `getpeername(2)` gives it, if it is abstract: `\0` and the name.
fn peer_address(stream: &UnixStream) -> Option<Vec<u8>> {
    let address = stream.peer_addr().ok()?;
    address.as_abstract_name().map(|name| [b"\0", name].concat())
}

/// What a request from systemd is answered with.
enum Answer {
    Value(SecretValue),
    /// The over-limit answer, and why (for the audit; never a value).
    Refuse(String),
}

/// Serves one connection of the credentials socket (module docs). Never panics; every way
/// it ends is audited, and the connection is closed when it returns.
pub(crate) fn answer(stream: UnixStream, api: &SecretsApi, audit: &Audit) {
    let peer = match getsockopt(&stream, PeerCredentials) {
        Ok(peer) => peer,
        Err(errno) => {
            let reason = format!("cannot read the peer's credentials (SO_PEERCRED): {}", errno.desc());
            audit.credential(0, None, None, "closed", Some(&reason));
            return;
        }
    };
    let pid = peer.pid();
    if peer.uid() != 0 {
        let reason = format!(
            "the peer is uid {}, not root: only systemd (uid 0) is believed, since anyone can bind \
             any abstract address",
            peer.uid()
        );
        audit.credential(pid, None, None, "closed", Some(&reason));
        return;
    }
    // A broker that cannot write to a reader that stopped reading gives up after this long.
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let address = peer_address(&stream);
    let Some((unit, id)) = address.as_deref().and_then(parse_peer_address) else {
        let shown = address.as_deref().map_or("none".to_owned(), |a| a.escape_ascii().to_string());
        let reason = format!("the peer's address ({shown}) is not systemd's `\\0<hex>/unit/<UNIT>/<ID>`");
        refuse(&stream, audit, pid, None, None, reason);
        return;
    };
    let caller = Caller { uid: 0, gid: peer.gid(), groups: Vec::new(), unit: Some(unit.clone()) };
    let audit = audit.clone().caller(&caller);
    // The pipeline does not panic short of a bug; if it ever does, systemd still gets a refusal.
    let decided = catch_unwind(AssertUnwindSafe(|| decide(api, &caller, &id)))
        .unwrap_or_else(|_| Answer::Refuse("an internal error stopped the answer".to_owned()));
    match decided {
        Answer::Value(value) => {
            let (outcome, reason) = match send_all(&stream, value.expose()) {
                (_, None) => ("ok", None),
                // The peer may take the part it read for the whole value: say so.
                (sent, Some(e)) => (
                    "failed",
                    Some(format!(
                        "writing the value stopped after {sent} of {} bytes: {e}",
                        value.expose().len()
                    )),
                ),
            };
            audit.credential(pid, Some(&unit), Some(&id), outcome, reason.as_deref());
        }
        Answer::Refuse(reason) => refuse(&stream, &audit, pid, Some(&unit), Some(&id), reason),
    }
}

/// Refuses a connection without judging it, e.g. when the broker is serving its maximum of
/// connections: the over-limit answer to a root peer (a close alone would give systemd an
/// empty credential and start the unit), a close to any other; audited with `reason`.
pub(crate) fn turn_away(stream: UnixStream, audit: &Audit, reason: &str) {
    let peer = getsockopt(&stream, PeerCredentials).ok();
    let pid = peer.map_or(0, |p| p.pid());
    if peer.is_none_or(|p| p.uid() != 0) {
        audit.credential(pid, None, None, "closed", Some(reason));
        return;
    }
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let address = peer_address(&stream);
    let parsed = address.as_deref().and_then(parse_peer_address);
    let (unit, id) = (parsed.as_ref().map(|p| p.0.as_str()), parsed.as_ref().map(|p| p.1.as_str()));
    refuse(&stream, audit, pid, unit, id, reason.to_owned());
}

/// The unit's request through the one pipeline: judge, all allowed, fetch.
fn decide(api: &SecretsApi, caller: &Caller, id: &str) -> Answer {
    let Ok(name) = Name::new(id) else {
        return Answer::Refuse(format!(
            "credential ID `{}` is not a secret name (^[a-z][a-z0-9_]*$); LoadCredential=ID: must name one",
            id.escape_debug()
        ));
    };
    let identity = RuntimeIdentity::unit_only();
    let request = Request { names: &[&name], identity: &identity, caller, manifest: None, jobs: 1 };
    let resolved = match api.judge(&request).allowed().and_then(|allowed| allowed.fetch()) {
        Ok(resolved) => resolved,
        Err(error) => return Answer::Refuse(error.to_string()),
    };
    match resolved.values.into_iter().next() {
        Some((_, value)) if value.expose().len() > CREDENTIAL_SIZE_MAX => Answer::Refuse(format!(
            "the value is {} bytes; systemd takes at most {CREDENTIAL_SIZE_MAX} for a credential",
            value.expose().len()
        )),
        Some((_, value)) => Answer::Value(value),
        None => Answer::Refuse("the pipeline gave no value".to_owned()),
    }
}

/// Writes the over-limit answer and audits the refusal.
fn refuse(
    stream: &UnixStream,
    audit: &Audit,
    pid: i32,
    unit: Option<&str>,
    id: Option<&str>,
    mut reason: String,
) {
    let (sent, error) = send_over_limit(stream);
    // systemd closes one byte past its limit, and writing then fails: that is the refusal
    // working. Stopping before the limit is not: a reader then sees a short answer.
    if sent <= CREDENTIAL_SIZE_MAX
        && let Some(error) = error
    {
        reason.push_str(&format!(
            "; the over-limit answer stopped after {sent} bytes ({error}), so a reader may have \
             taken it for a credential"
        ));
    }
    audit.credential(pid, unit, id, "refused", Some(&reason));
}

/// Sends [`OVER_LIMIT_ANSWER`] bytes of [`FILLER`], or as many as the peer takes before it
/// closes: how many were sent, and the error that stopped it early.
fn send_over_limit(stream: &UnixStream) -> (usize, Option<io::Error>) {
    let chunk: Vec<u8> = FILLER.iter().copied().cycle().take(64 * 1024).collect();
    let mut sent = 0;
    while sent < OVER_LIMIT_ANSWER {
        let part = &chunk[..chunk.len().min(OVER_LIMIT_ANSWER - sent)];
        let (n, error) = send_all(stream, part);
        sent += n;
        if error.is_some() {
            return (sent, error);
        }
    }
    (sent, None)
}

/// `send(2)` until all of `bytes` is sent, with `MSG_NOSIGNAL`: a peer that closed is an
/// error here (EPIPE), never a SIGPIPE that would end the broker. How many bytes were sent,
/// and the error that stopped it before the end.
fn send_all(stream: &UnixStream, bytes: &[u8]) -> (usize, Option<io::Error>) {
    let mut sent = 0;
    while sent < bytes.len() {
        match send(stream.as_raw_fd(), &bytes[sent..], MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return (sent, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(Errno::EINTR) => {}
            Err(errno) => return (sent, Some(io::Error::from(errno))),
        }
    }
    (sent, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemds_address_is_parsed_and_nothing_else() {
        let parse = |a: &[u8]| parse_peer_address(a).map(|(u, i)| format!("{u} {i}"));
        assert_eq!(
            parse(b"\0f3a9c1d2e4b5a697/unit/feed.service/db_password").as_deref(),
            Some("feed.service db_password")
        );
        // The hex is not zero-padded: any length.
        assert_eq!(parse(b"\0a/unit/feed.service/db_password").as_deref(), Some("feed.service db_password"));
        assert_eq!(parse(b"\x000123456789abcdef0/unit/w@2.service/x").as_deref(), Some("w@2.service x"));
        for bad in [
            b"f3a9/unit/feed.service/db_password".as_slice(), // a path, not abstract
            b"\0/unit/feed.service/db_password",              // no hex
            b"\0F3A9/unit/feed.service/db_password",          // systemd writes lowercase
            b"\0f3g9/unit/feed.service/db_password",
            b"\0f3a9/units/feed.service/db_password",
            b"\0f3a9/unit/feed/db_password", // not a unit name
            b"\0f3a9/unit/feed.service/",
            b"\0f3a9/unit/feed.service",
            b"\0f3a9/unit/feed.service/db/password",
            b"\0f3a9/unit/feed.service/db_password\0",
            b"\0f3a9/unit/feed.service/db\xffpassword",
            b"\0",
            b"",
        ] {
            assert_eq!(parse(bad), None, "{}", bad.escape_ascii());
        }
    }

    /// The numbers are systemd's (docs/credentials.md): 1 MiB for `LoadCredential=`, 1 MiB +
    /// 128 KiB decoded for `LoadCredentialEncrypted=`, read as base64 up to three times that.
    #[test]
    fn the_refusal_is_longer_than_systemd_reads_for_any_credential() {
        assert_eq!(CREDENTIAL_SIZE_MAX, 1_048_576);
        assert_eq!(CREDENTIAL_ENCRYPTED_SIZE_MAX, 1_179_648);
        assert_eq!(OVER_LIMIT_ANSWER, 3_538_945);
        // Not base64 (`:`, `;`, `'` and spaces are not in its alphabet), so an encrypted
        // credential's decoding fails on it too.
        assert!(FILLER.iter().any(|b| !(b.is_ascii_alphanumeric() || b"+/=\n".contains(b))));
    }

    /// Real sockets, as systemd uses them: a listener in a temp dir served by [`answer`], a
    /// client that binds systemd's abstract address, connects, shuts its write side and reads.
    /// Needs root (the peer must be uid 0, and another uid needs `setpriv`); CI runs as root.
    mod sockets {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::net::{UnixDatagram, UnixListener};
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicU32, Ordering};

        use nix::sys::socket::{
            AddressFamily, Shutdown, SockFlag, SockType, UnixAddr, bind, connect, shutdown, socket,
        };

        use super::*;
        use crate::audit::{LogFormat, Sink};
        use crate::config::Config;

        const CANARY: &str = "canary-5b2e9d41-credential-never-print-me";

        fn root_or_skip(test: &str) -> bool {
            let root = nix::unistd::geteuid().is_root();
            if !root {
                eprintln!(
                    "skipped {test}: needs root (systemd's peer is uid 0; other uids via setpriv); CI runs as root"
                );
            }
            root
        }

        /// A credentials socket and its audit log (syslog datagrams to a socket of the test).
        struct Served {
            _dir: tempfile::TempDir,
            socket: PathBuf,
            listener: UnixListener,
            log: UnixDatagram,
            api: SecretsApi,
            audit: Audit,
        }

        impl Served {
            fn new() -> Served {
                let dir = tempfile::Builder::new().prefix("mxm-creds-").tempdir().unwrap();
                // Reachable by another uid: a 0755 directory and a socket anyone may connect to.
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
                let socket = dir.path().join("creds.sock");
                let listener = UnixListener::bind(&socket).unwrap();
                std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
                let log_path = dir.path().join("log.sock");
                let log = UnixDatagram::bind(&log_path).unwrap();
                log.set_nonblocking(true).unwrap();
                let audit = Audit {
                    verbosity: 1,
                    format: LogFormat::Json,
                    sink: Sink::Syslog(log_path),
                    ..Audit::default()
                };
                let exactly_max = "m".repeat(CREDENTIAL_SIZE_MAX);
                let too_big = "b".repeat(CREDENTIAL_SIZE_MAX + 1);
                let config = format!(
                    "stores:
  mem: {{backend: memory, root: m, values: {{db: {CANARY}, max: {exactly_max}, big: {too_big}}}, failures: {{gone: not_found, broken: failed}}}}
refs:
  db_password: {{store: mem, path: db, policy: feed, trim: none}}
  gone: {{store: mem, path: gone, policy: feed}}
  broken: {{store: mem, path: broken, policy: feed}}
  max: {{store: mem, path: max, policy: feed, trim: none}}
  big: {{store: mem, path: big, policy: feed, trim: none}}
  cron_only: {{store: mem, path: db, policy: cron, trim: none}}
policies:
  feed: {{allowed_principals: [feed], units: [feed.service]}}
  cron: {{allowed_principals: [cron]}}
principals:
  - {{principal: feed, unit: feed.service}}
  - {{principal: feed, unit: other.service}}
  - {{principal: cron, role: cron}}
"
                );
                let api = SecretsApi::from_config(Config::parse(&config, "creds.yaml").unwrap())
                    .with_audit(audit.clone());
                Served { _dir: dir, socket, listener, log, api, audit }
            }

            /// Serves one connection while `client` runs; what the client returns.
            fn one<T: Send>(&self, client: impl FnOnce(&Path) -> T + Send) -> T {
                std::thread::scope(|scope| {
                    let server = scope.spawn(|| {
                        // A client that never connects fails the test instead of hanging it.
                        self.listener.set_nonblocking(true).unwrap();
                        let deadline = std::time::Instant::now() + Duration::from_secs(20);
                        let stream = loop {
                            match self.listener.accept() {
                                Ok((stream, _)) => break stream,
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                    assert!(std::time::Instant::now() < deadline, "no client connected");
                                    std::thread::sleep(Duration::from_millis(10));
                                }
                                Err(e) => panic!("accept: {e}"),
                            }
                        };
                        stream.set_nonblocking(false).unwrap();
                        answer(stream, &self.api, &self.audit);
                    });
                    let result = client(&self.socket);
                    server.join().expect("answer does not panic");
                    result
                })
            }

            /// The audit records sent since the last call, as JSON.
            fn records(&self) -> Vec<serde_json::Value> {
                let mut records = Vec::new();
                let mut buffer = vec![0; 65536];
                while let Ok(n) = self.log.recv(&mut buffer) {
                    let datagram = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    assert!(!datagram.contains(CANARY), "a value reached the audit: {datagram}");
                    let json = datagram.split_once("]: ").expect("a syslog datagram").1;
                    records.push(serde_json::from_str(json).unwrap());
                }
                records
            }
        }

        /// A fresh `<hex>` for each connection: abstract names are shared by the whole host.
        fn hex() -> String {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            format!("{:x}{:x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
        }

        /// systemd's client (`xfopenat_unix_socket`): bind `name` (abstract; `None`: no bind),
        /// connect, shut the write side, then read until EOF or until `limit` bytes are read.
        fn systemd_client(socket: &Path, name: Option<&str>, limit: usize) -> Vec<u8> {
            let fd = socket_stream();
            if let Some(name) = name {
                bind(fd.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes()).unwrap()).unwrap();
            }
            connect(fd.as_raw_fd(), &UnixAddr::new(socket).unwrap()).unwrap();
            shutdown(fd.as_raw_fd(), Shutdown::Write).unwrap();
            let mut answer = Vec::new();
            UnixStream::from(fd).take(limit as u64).read_to_end(&mut answer).unwrap();
            answer
        }

        fn socket_stream() -> std::os::fd::OwnedFd {
            socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap()
        }

        fn ask(served: &Served, unit: &str, id: &str) -> Vec<u8> {
            let name = format!("{}/unit/{unit}/{id}", hex());
            served.one(|socket| systemd_client(socket, Some(&name), usize::MAX))
        }

        /// The one record of `event` among `records`.
        fn record<'r>(records: &'r [serde_json::Value], event: &str) -> &'r serde_json::Value {
            let found: Vec<_> = records.iter().filter(|r| r["event"] == event).collect();
            assert_eq!(found.len(), 1, "{event} in {records:?}");
            found[0]
        }

        fn is_refusal(answer: &[u8]) -> bool {
            answer.len() == OVER_LIMIT_ANSWER
                && answer.starts_with(FILLER)
                && !answer.windows(CANARY.len()).any(|w| w == CANARY.as_bytes())
        }

        /// Needs root. The unit a rule names gets the value and nothing else; every other
        /// answer is longer than systemd takes, and the audit says why.
        #[test]
        fn systemd_gets_the_value_or_more_than_it_accepts_as_root() {
            if !root_or_skip("systemd_gets_the_value_or_more_than_it_accepts_as_root") {
                return;
            }
            let served = Served::new();
            assert_eq!(ask(&served, "feed.service", "db_password"), CANARY.as_bytes());
            let records = served.records();
            let sent = record(&records, "credential");
            assert_eq!(sent["outcome"], "ok");
            assert_eq!(sent["unit"], "feed.service");
            assert_eq!(sent["secret"], "db_password");
            assert_eq!(sent["caller"]["uid"], 0);
            assert_eq!(sent["caller"]["unit"], "feed.service");
            assert_eq!(sent["peer_pid"], std::process::id());
            assert_eq!(record(&records, "decision")["decision"], "allowed");
            assert_eq!(record(&records, "decision")["principal"], "feed");
            assert_eq!(record(&records, "decision")["identity"]["role"], serde_json::Value::Null);
            assert_eq!(record(&records, "fetch")["outcome"], "ok");

            // Exactly systemd's limit is a credential; one byte more is refused.
            let max = ask(&served, "feed.service", "max");
            assert_eq!(max.len(), CREDENTIAL_SIZE_MAX);
            served.records();
            let rows: &[(&str, &str, &str)] = &[
                // No rule names the unit: no principal (the role of rule 2 cannot be declared).
                ("cron.service", "cron_only", "a systemd credential request declares no role"),
                ("nobody.service", "db_password", "no rule with `unit: nobody.service` matches"),
                // A rule gives the principal, the policy's `units` refuses the unit.
                (
                    "other.service",
                    "db_password",
                    "systemd unit `other.service` (allowed units: `feed.service`)",
                ),
                ("feed.service", "gone", "does not exist in store `mem`"),
                ("feed.service", "broken", "store `mem` failed"),
                ("feed.service", "undefined_name", "not defined in the config"),
                ("feed.service", "Not_A_Name", "is not a secret name"),
                ("feed.service", "big", "the value is 1048577 bytes; systemd takes at most 1048576"),
            ];
            for (unit, id, why) in rows {
                let answer = ask(&served, unit, id);
                assert!(is_refusal(&answer), "{unit} {id}: {} bytes", answer.len());
                let records = served.records();
                let refused = record(&records, "credential");
                assert_eq!(refused["outcome"], "refused", "{unit} {id}");
                assert_eq!((refused["unit"].as_str(), refused["secret"].as_str()), (Some(*unit), Some(*id)));
                let reason = refused["reason"].as_str().unwrap();
                assert!(reason.contains(why), "{unit} {id}: {reason}");
                assert!(!reason.contains("stopped after"), "{reason}");
            }
        }

        /// Needs root. systemd reads one byte past its limit and closes (`read_full_stream_full`
        /// with `READ_FULL_FILE_FAIL_WHEN_LARGER`): it has its E2BIG, and the broker's writer
        /// stops at once, with no error worth reporting.
        #[test]
        fn a_reader_that_stops_past_the_limit_ends_the_answer_as_root() {
            if !root_or_skip("a_reader_that_stops_past_the_limit_ends_the_answer_as_root") {
                return;
            }
            let served = Served::new();
            let name = format!("{}/unit/nobody.service/db_password", hex());
            let answer = served.one(|socket| systemd_client(socket, Some(&name), CREDENTIAL_SIZE_MAX + 1));
            assert_eq!(answer.len(), CREDENTIAL_SIZE_MAX + 1, "systemd's E2BIG: more than it takes");
            let records = served.records();
            let reason = record(&records, "credential")["reason"].as_str().unwrap().to_owned();
            assert!(!reason.contains("stopped after"), "{reason}");
        }

        /// Needs root. A root peer whose address is not systemd's (another name, or none at
        /// all) cannot be told from a systemd of another format: it gets the refusal, never a
        /// value and never an empty answer.
        #[test]
        fn a_root_peer_with_another_address_is_refused_as_root() {
            if !root_or_skip("a_root_peer_with_another_address_is_refused_as_root") {
                return;
            }
            let served = Served::new();
            for name in [Some(format!("{}-not-systemd", hex())), None] {
                let answer = served.one(|socket| systemd_client(socket, name.as_deref(), usize::MAX));
                assert!(is_refusal(&answer), "{name:?}: {} bytes", answer.len());
                let records = served.records();
                let refused = record(&records, "credential");
                assert_eq!(refused["outcome"], "refused");
                assert!(refused["reason"].as_str().unwrap().contains("is not systemd's"), "{refused}");
            }
        }

        /// Needs root. Turned away unjudged (the broker at its connection bound): systemd
        /// still gets more than it accepts, never an empty credential.
        #[test]
        fn turned_away_is_refused_not_closed_as_root() {
            if !root_or_skip("turned_away_is_refused_not_closed_as_root") {
                return;
            }
            let served = Served::new();
            let name = format!("{}/unit/feed.service/db_password", hex());
            let answer = std::thread::scope(|scope| {
                let server = scope.spawn(|| {
                    let (stream, _) = served.listener.accept().unwrap();
                    turn_away(stream, &served.audit, "the broker is serving its maximum of 1 connections");
                });
                let answer = systemd_client(&served.socket, Some(&name), usize::MAX);
                server.join().unwrap();
                answer
            });
            assert!(is_refusal(&answer), "{} bytes", answer.len());
            let records = served.records();
            let refused = record(&records, "credential");
            assert_eq!(
                (refused["outcome"].as_str(), refused["unit"].as_str()),
                (Some("refused"), Some("feed.service"))
            );
            assert!(refused["reason"].as_str().unwrap().contains("maximum of 1 connections"), "{refused}");
        }

        /// Needs root (`setpriv`). The same request from uid 65534 (nobody): the address means
        /// nothing, the connection is closed, no byte is written, and the audit says so.
        #[test]
        fn another_uid_gets_the_connection_closed_as_root() {
            if !root_or_skip("another_uid_gets_the_connection_closed_as_root") {
                return;
            }
            let served = Served::new();
            let name = format!("{}/unit/feed.service/db_password", hex());
            // Python's socket module does what systemd's client does; it prints only a count.
            let script = "import socket, sys\n\
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
                s.bind(b'\\0' + sys.argv[2].encode())\n\
                s.connect(sys.argv[1])\n\
                s.shutdown(socket.SHUT_WR)\n\
                n = 0\n\
                while True:\n    d = s.recv(65536)\n    if not d: break\n    n += len(d)\n\
                print(n)\n";
            let output = served.one(|socket| {
                // The system's python: uid 65534 cannot reach root's own (pyenv under /root).
                let python =
                    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
                std::process::Command::new("setpriv")
                    .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", python, "-c", script])
                    .arg(socket)
                    .arg(&name)
                    .output()
                    .expect("setpriv and python3 run")
            });
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            assert_eq!(stdout.trim(), "0", "bytes the other uid read");
            let records = served.records();
            let closed = record(&records, "credential");
            assert_eq!(closed["outcome"], "closed");
            assert!(
                closed["reason"].as_str().unwrap().contains("the peer is uid 65534, not root"),
                "{closed}"
            );
            assert_eq!(closed["unit"], serde_json::Value::Null, "the address is not even read");
            assert!(records.iter().all(|r| r["event"] == "credential"), "nothing was judged: {records:?}");
        }
    }
}
