//! systemd's `LoadCredential=` against a real broker (`serve --credentials-socket`): the
//! client does byte for byte what systemd's `xfopenat_unix_socket()` does (bind the abstract
//! address `\0<hex>/unit/<UNIT>/<ID>`, connect, shut the write side, read to EOF) and must get
//! the value, or more bytes than systemd accepts (docs/credentials.md). Needs root: systemd's
//! client is uid 0, and the broker believes no one else. CI runs as root.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{
    AddressFamily, Shutdown, SockFlag, SockType, UnixAddr, bind, connect, shutdown, socket,
};

use crate::broker::{Broker, broker_config};
use crate::util::{CANARY, Fixture};

/// systemd's `OVER_LIMIT_ANSWER` (src/broker/credentials.rs): past every limit systemd reads.
const REFUSAL: usize = 3 * (1024 * 1024 + 128 * 1024) + 1;

/// What systemd's client reads for `unit`'s credential `id` from the socket at `path`.
fn load_credential(path: &Path, unit: &str, id: &str) -> Vec<u8> {
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let name = format!("{:x}/unit/{unit}/{id}", std::process::id() as u64 * 1000 + rand_suffix());
    bind(fd.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes()).unwrap()).unwrap();
    connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    shutdown(fd.as_raw_fd(), Shutdown::Write).unwrap();
    let mut stream = UnixStream::from(fd);
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

/// Abstract names are shared by the whole host: a new one for each connection.
fn rand_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Needs root. The unit a rule names gets each value of its policy, byte for byte; another
/// unit, or a name it may not read, gets the over-limit answer; the log never holds a value.
#[test]
fn systemd_loads_credentials_from_the_broker_as_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (systemd's credential client is uid 0); CI runs as root");
        return;
    }
    let f = Fixture::new();
    let config = broker_config(&f, ", units: [feed.service]");
    let text = std::fs::read_to_string(&config).unwrap();
    f.config(&format!("{text}principals:\n  - {{principal: worker, unit: feed.service}}\n"));
    let socket = f.path("run/creds.sock");
    let broker = Broker::start(&f, &["--credentials-socket", &socket.display().to_string(), "-v"]);
    assert_eq!(load_credential(&socket, "feed.service", "api_key"), CANARY.as_bytes());
    assert_eq!(load_credential(&socket, "feed.service", "db_password"), b"db-value-1");
    for (unit, id) in [("cron.service", "api_key"), ("feed.service", "nothing_here")] {
        let answer = load_credential(&socket, unit, id);
        assert_eq!(answer.len(), REFUSAL, "{unit} {id}");
        assert!(!answer.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "{unit} {id}");
    }
    broker.wait_for("\"outcome\":\"refused\"");
    let log = broker.log();
    assert!(log.contains("no rule with `unit: cron.service` matches"), "{log}");
    assert!(broker.stop().success());
}
