//! `mxm-secrets serve`: the listening loop and one connection's life. One thread polls the
//! listeners and a signalfd (SIGHUP reloads, SIGTERM and SIGINT drain); each accepted
//! connection gets a thread of its own, so a client that connects and stalls holds only its
//! own thread, and only until its deadline. Connections are counted: past
//! `--max-connections` a newcomer is answered 75 at once, and so is one whose uid already
//! holds its share ([`Limits::per_uid`]), so that one allowed user cannot starve the others. Every request goes through the one
//! pipeline, `SecretsApi::judge(..).allowed()?.fetch()`, with the kernel's facts about the
//! peer as its `Caller`.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{getsockopt, sockopt};
use nix::unistd::{Gid, Group};
use serde_json::{Value, json};

use super::activation;
use super::peer::{self, Peer};
use super::protocol::{self, ClientRequest, FrameError, MAX_NAMES, MAX_REQUEST, Op, VERSION};
use crate::api::{Request, SecretsApi};
use crate::audit::{Audit, Process, failure_word};
use crate::config::Config;
use crate::error::{EX_NOPERM, EX_TEMPFAIL, EX_USAGE, Error, SecretFailure};
use crate::identity::RuntimeIdentity;
use crate::manifest::{Manifest, ManifestEntry};
use crate::name::Name;
use crate::origin::Origin;

/// What `serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: PathBuf,
    pub socket: Option<PathBuf>,
    pub credentials_socket: Option<PathBuf>,
    /// `--socket-mode`, for the sockets we create (default 0660).
    pub socket_mode: u32,
    /// `--socket-group`: the group that may connect.
    pub socket_group: Option<String>,
    pub limits: Limits,
    /// At most this many fetches at once in the whole broker.
    pub jobs: usize,
    pub audit: Audit,
}

/// The bounds on what one client may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; the next is answered 75.
    pub max_connections: usize,
    /// A whole request must arrive within this, and each answer write finish within it.
    pub timeout: Duration,
}

impl Limits {
    /// Connections one uid may hold at once: a quarter of the whole, at least one. uid 0 is
    /// not bounded by it (root can stop the broker anyway, and systemd asks for credentials
    /// as root, many units at once at boot).
    pub fn per_uid(&self) -> usize {
        (self.max_connections / 4).max(1)
    }
}

/// What every connection thread shares.
struct Shared {
    api: RwLock<Arc<SecretsApi>>,
    active: AtomicUsize,
    /// Connections held per uid (uid 0 not counted), for [`Limits::per_uid`].
    by_uid: Mutex<HashMap<u32, usize>>,
    limits: Limits,
    jobs: usize,
    /// The audit the broker was started with; each request adds its caller.
    audit: Audit,
}

/// Which listener a connection came from.
#[derive(Clone, Copy)]
enum Kind {
    Broker,
    Credentials,
}

fn log(message: impl std::fmt::Display) {
    eprintln!("mxm-secrets serve: {message}");
}

/// Serves until SIGTERM or SIGINT, then drains: stops accepting, lets every connection in
/// flight finish, and returns.
pub fn serve(options: ServeOptions) -> Result<(), Error> {
    // Before the first value is in memory: no core, not dumpable.
    let _hardened = crate::exec::harden()?;
    if let Some(jobs) = std::num::NonZeroUsize::new(options.jobs) {
        crate::resolve::set_process_fetch_limit(jobs);
    }
    let api = SecretsApi::from_config(Config::load(&options.config)?).with_audit(options.audit.clone());
    // Blocked in this thread before any other starts, so every thread inherits the mask and
    // the signals arrive only through the signalfd polled below.
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(signal);
    }
    mask.thread_block().map_err(|e| Error::System(format!("blocking signals: {e}")))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::System(format!("signalfd: {e}")))?;

    let mut created = Vec::new();
    let (broker, credentials) = match activation::listeners()? {
        Some(activated) => (activated.broker, activated.credentials),
        None => {
            let group = options.socket_group.as_deref().map(group).transpose()?;
            let mut bind_one = |path: &Option<PathBuf>, mode: u32| -> Result<Option<UnixListener>, Error> {
                let Some(path) = path else { return Ok(None) };
                let listener = bind(path, mode, group)?;
                created.push(path.clone());
                Ok(Some(listener))
            };
            // Only systemd (root, which file modes do not stop) is believed on the
            // credentials socket: nobody else needs to connect, so nobody else may.
            (bind_one(&options.socket, options.socket_mode)?, bind_one(&options.credentials_socket, 0o600)?)
        }
    };
    if broker.is_none() && credentials.is_none() {
        return Err(Error::Usage(
            "nothing to serve: give --socket PATH (and/or --credentials-socket PATH), or start it by systemd socket activation".to_owned(),
        ));
    }
    let listeners: Vec<(UnixListener, Kind)> = [(broker, Kind::Broker), (credentials, Kind::Credentials)]
        .into_iter()
        .filter_map(|(l, k)| l.map(|l| (l, k)))
        .collect();
    for (listener, _) in &listeners {
        listener.set_nonblocking(true).map_err(|e| Error::System(format!("listener: {e}")))?;
    }
    let shared = Arc::new(Shared {
        api: RwLock::new(Arc::new(api)),
        active: AtomicUsize::new(0),
        by_uid: Mutex::new(HashMap::new()),
        limits: options.limits,
        jobs: options.jobs,
        audit: options.audit.clone(),
    });
    log(format!(
        "serving {} with {} (at most {} connections, {} s each)",
        listeners.iter().map(|(l, _)| shown(l)).collect::<Vec<_>>().join(" and "),
        options.config.display(),
        options.limits.max_connections,
        options.limits.timeout.as_secs_f64()
    ));

    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    'serving: loop {
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        fds.extend(listeners.iter().map(|(l, _)| PollFd::new(l.as_fd(), PollFlags::POLLIN)));
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::System(format!("poll: {e}"))),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGHUP) => reload(&shared, &options),
                    Ok(signal) => {
                        log(format!(
                            "{signal}: draining {} connection(s), accepting no more",
                            shared.active.load(Ordering::SeqCst)
                        ));
                        break 'serving;
                    }
                    Err(_) => {}
                }
            }
        }
        for ((listener, kind), ready) in listeners.iter().zip(&ready[1..]) {
            if !ready {
                continue;
            }
            // Everything waiting, so a burst is not served one poll round at a time.
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(handle) = dispatch(stream, *kind, &shared) {
                            handles.push(handle);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // Out of descriptors, say: the connections in flight still run; the
                        // pause keeps a listener that stays readable from spinning this loop.
                        log(format!("accept: {e}"));
                        std::thread::sleep(Duration::from_millis(50));
                        break;
                    }
                }
            }
        }
        handles.retain(|h| !h.is_finished());
    }
    drop(listeners);
    for path in &created {
        let _ = fs::remove_file(path);
    }
    for handle in handles {
        let _ = handle.join();
    }
    log("drained; exiting");
    Ok(())
}

fn shown(listener: &UnixListener) -> String {
    listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
        .unwrap_or_else(|| "a socket from systemd".to_owned())
}

/// SIGHUP: the new config, or, when it does not load, the old one kept and the reason logged.
fn reload(shared: &Shared, options: &ServeOptions) {
    match Config::load(&options.config) {
        Ok(config) => {
            let api = SecretsApi::from_config(config).with_audit(options.audit.clone());
            *shared.api.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(api);
            log(format!("reloaded {}", options.config.display()));
        }
        Err(e) => log(format!("reload refused, still serving the config loaded before: {e}")),
    }
}

/// One connection's slot in the count (and in its uid's share), given back when its thread
/// ends.
struct Slot(Arc<Shared>, Option<u32>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(uid) = self.1 {
            let mut by_uid = self.0.by_uid.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(held) = by_uid.get_mut(&uid) {
                *held -= 1;
                if *held == 0 {
                    by_uid.remove(&uid);
                }
            }
        }
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a connection from `uid` against its share, or says it has none left.
fn take_share(shared: &Shared, uid: u32) -> Result<(), usize> {
    let share = shared.limits.per_uid();
    let mut by_uid = shared.by_uid.lock().unwrap_or_else(|e| e.into_inner());
    let held = by_uid.entry(uid).or_insert(0);
    if *held >= share {
        return Err(*held);
    }
    *held += 1;
    Ok(())
}

/// A thread for `stream`, or, past the bound, a 75 answer now.
fn dispatch(stream: UnixStream, kind: Kind, shared: &Arc<Shared>) -> Option<JoinHandle<()>> {
    let limit = shared.limits.max_connections;
    if shared.active.fetch_add(1, Ordering::SeqCst) >= limit {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        match kind {
            Kind::Broker => overloaded(
                &stream,
                &format!("the broker is serving its maximum of {limit} connections; try again shortly"),
            ),
            // A close would be an empty credential to systemd: it gets the over-limit answer,
            // which fails the unit (root peers only; anyone else is closed on).
            Kind::Credentials => {
                let reason = format!("the broker is serving its maximum of {limit} connections");
                log(format!("a credentials request was refused: {reason}"));
                super::credentials::turn_away(stream, &shared.audit, &reason);
            }
        }
        return None;
    }
    // The uid as it connected (SO_PEERCRED does not block); a peer without one is pinned and
    // refused in its own thread, as always. systemd's credential requests come as root.
    let uid = match kind {
        Kind::Broker => {
            getsockopt(&stream, sockopt::PeerCredentials).ok().map(|c| c.uid()).filter(|u| *u != 0)
        }
        Kind::Credentials => None,
    };
    if let Some(uid) = uid
        && let Err(held) = take_share(shared, uid)
    {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        log(format!("uid {uid}: refused a connection over its share ({held} held)"));
        overloaded(
            &stream,
            &format!(
                "uid {uid} already holds {held} connection(s) to the broker, the most one user may hold \
                 at once (a quarter of its {limit}); finish those, or try again shortly"
            ),
        );
        return None;
    }
    let slot = Slot(Arc::clone(shared), uid);
    let spawned = std::thread::Builder::new().name("mxm-connection".to_owned()).stack_size(512 * 1024).spawn(
        move || {
            let shared = Arc::clone(&slot.0);
            match kind {
                Kind::Broker => connection(stream, &shared),
                Kind::Credentials => {
                    let api = Arc::clone(&shared.api.read().unwrap_or_else(|e| e.into_inner()));
                    super::credentials::answer(stream, &api, &shared.audit);
                }
            }
            drop(slot);
        },
    );
    // A thread that cannot start drops its connection (and slot): the client sees it closed.
    spawned.map_err(|e| log(format!("no thread for a connection: {e}"))).ok()
}

/// 75, without waiting: a client that does not read loses the answer, nobody else waits.
fn overloaded(stream: &UnixStream, message: &str) {
    let _ = stream.set_nonblocking(true);
    let _ = protocol::send(stream, &protocol::error(EX_TEMPFAIL, message), &[]);
}

/// One client: identify it, read its request by the deadline, answer.
fn connection(stream: UnixStream, shared: &Shared) {
    let deadline = Instant::now() + shared.limits.timeout;
    let _ = stream.set_write_timeout(Some(shared.limits.timeout));
    // Pinned at once; the facts are read once the request is in, just before the decision.
    let pinned = match peer::pin(&stream) {
        Ok(pinned) => pinned,
        Err(why) => return refuse(&stream, &why),
    };
    let who = pinned.who();
    let body = match protocol::receive(&stream, MAX_REQUEST, deadline, protocol::Descriptors::Refuse) {
        Ok((body, _descriptors)) => body,
        Err(FrameError::Closed(0)) => return,
        Err(FrameError::TooLarge(n)) => {
            log(format!("{who}: refused a request of {n} bytes"));
            let message = format!("a request of {n} bytes is over the broker's limit of {MAX_REQUEST} bytes");
            let _ = protocol::send(&stream, &protocol::error(EX_USAGE, &message), &[]);
            return;
        }
        Err(e) => {
            log(format!("{who}: dropped: {e}"));
            return;
        }
    };
    let peer = match pinned.facts() {
        Ok(peer) => peer,
        Err(why) => return refuse(&stream, &why),
    };
    let api = Arc::clone(&shared.api.read().unwrap_or_else(|e| e.into_inner()));
    let (answer, files) = match answer(&body, &api, &shared.audit, &peer, shared.jobs) {
        Ok(answer) => answer,
        Err(e) => {
            // The whole reason here, for the operator; the client only what it may know.
            let code = e.exit_code();
            log(format!("{who}: answered {code}: {e}"));
            (protocol::error(code, &super::told::error(&e)), Vec::new())
        }
    };
    let raw: Vec<RawFd> = files.iter().map(AsRawFd::as_raw_fd).collect();
    if let Err(e) = protocol::send(&stream, &answer, &raw) {
        log(format!("{who}: the answer could not be sent: {e}"));
    }
    // The memfds close here: the client holds the only copies now.
    drop(files);
}

/// 77 for a caller that cannot be identified: nothing else is done for it.
fn refuse(stream: &UnixStream, why: &str) {
    log(format!("denied a caller that cannot be identified: {why}"));
    let _ = protocol::send(stream, &protocol::error(EX_NOPERM, &format!("denied: {why}")), &[]);
}

/// The answer to one request and the memfds that go with it.
fn answer(
    body: &[u8],
    api: &SecretsApi,
    audit: &Audit,
    peer: &Peer,
    jobs: usize,
) -> Result<(Value, Vec<OwnedFd>), Error> {
    let request: ClientRequest = serde_json::from_slice(body)
        .map_err(|e| Error::Usage(format!("a malformed request ({e}); see docs/broker.md")))?;
    if request.version != VERSION {
        return Err(Error::Usage(format!(
            "protocol version {} is not spoken here; this broker speaks version {VERSION}",
            request.version
        )));
    }
    if request.names.len() > MAX_NAMES {
        return Err(Error::Manifest(crate::error::ManifestError::new(
            Origin::file("the request to the broker"),
            format!(
                "{} names; one request may name at most {MAX_NAMES}: split the manifest",
                request.names.len()
            ),
        )));
    }
    let w = &request.identity;
    let identity = RuntimeIdentity::declared(
        &w.role,
        w.environment.as_deref(),
        w.machine.as_deref(),
        w.app.as_deref(),
        w.substrate.as_deref(),
    )?;
    let audit = audit
        .clone()
        .about(&identity, peer.exe.as_deref().map(std::ffi::OsStr::new))
        .process(Process { pid: peer.pid, exe: peer.exe.clone() });
    let api = api.clone().with_audit(audit);
    let config = api.config();
    let names: Vec<Name> = match request.op {
        Op::List => config.refs.names().cloned().collect(),
        _ => parse_names(config, &request.names)?,
    };
    // The names as `--secret` entries, so that optional ones may be missing.
    let manifest = Manifest {
        entries: names
            .iter()
            .map(|name| ManifestEntry {
                name: name.clone(),
                env: None,
                fd: None,
                optional: request.optional.iter().any(|o| o == name.as_str()),
                origin: Origin::file("--secret (sent to the broker)"),
            })
            .collect(),
    };
    let refs: Vec<&Name> = names.iter().collect();
    let pipeline_request =
        Request { names: &refs, identity: &identity, caller: &peer.caller, manifest: Some(&manifest), jobs };
    let judgement = api.judge(&pipeline_request);
    let principal = judgement.principal.name.to_string();
    match request.op {
        Op::Fetch => {
            let mut resolved = judgement.allowed()?.fetch()?;
            // Into locked pages at once (each fetched buffer is wiped as it is moved in), so
            // nothing the broker holds can be swapped out while the answer is made and sent.
            let values = crate::exec::LockedValues::new(
                std::mem::take(&mut resolved.values)
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), value)),
            )?;
            if let Some(note) = values.note() {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| log(note));
            }
            let mut files = Vec::with_capacity(values.len());
            let mut secrets = Vec::with_capacity(values.len());
            for (index, (name, value)) in values.iter().enumerate() {
                files.push(crate::exec::sealed_memfd_bytes(name, value)?);
                secrets.push(json!({"name": name, "fd": index}));
            }
            // Wiped (and unlocked) here; the sealed memfds hold the values now.
            drop(values);
            let answer = json!({"version": VERSION, "ok": true, "exit_code": 0, "principal": principal, "secrets": secrets});
            Ok((answer, files))
        }
        Op::Check => {
            let mut failures = Vec::new();
            let decisions: Vec<Value> = judgement
                .judged
                .iter()
                .map(|(name, result)| {
                    if let Err(kind) = result {
                        failures.push(SecretFailure { name: name.to_string(), kind: kind.clone() });
                    }
                    json!({
                        "name": name.as_str(),
                        "decision": result.as_ref().map_or_else(failure_word, |_| "allowed"),
                        "reason": result.as_ref().err().map(super::told::kind),
                    })
                })
                .collect();
            let outcome = if failures.is_empty() { None } else { Some(Error::Secrets(failures)) };
            Ok((
                json!({
                    "version": VERSION,
                    "ok": outcome.is_none(),
                    "exit_code": outcome.as_ref().map_or(0, Error::exit_code),
                    "error": outcome.as_ref().map(super::told::error),
                    "principal": principal,
                    "secrets": decisions,
                }),
                Vec::new(),
            ))
        }
        Op::List => {
            // What `list` shows locally for the names this caller may read: their store and
            // policy names (never a path); nothing about the names it may not.
            let readable: Vec<Value> = judgement
                .judged
                .iter()
                .filter_map(|(name, result)| {
                    let authorized = result.as_ref().ok()?;
                    Some(json!({"name": name.as_str(), "store": authorized.location.store.as_str(),
                        "policy": authorized.secret.policy.as_str()}))
                })
                .collect();
            Ok((
                json!({"version": VERSION, "ok": true, "exit_code": 0, "principal": principal,
                    "principal_rule": judgement.principal.rule, "secrets": readable}),
                Vec::new(),
            ))
        }
    }
}

/// Each requested name, or every bad or unknown one named (65), as the launcher names them.
fn parse_names(config: &Config, names: &[String]) -> Result<Vec<Name>, Error> {
    let mut parsed = Vec::with_capacity(names.len());
    let mut failures = Vec::new();
    for name in names {
        match Name::new(name) {
            Ok(name) if !parsed.contains(&name) => parsed.push(name),
            Ok(_) => {}
            Err(_) => failures.push(SecretFailure {
                name: name.escape_debug().to_string(),
                kind: crate::resolve::undefined(config, name),
            }),
        }
    }
    if failures.is_empty() { Ok(parsed) } else { Err(Error::Secrets(failures)) }
}

/// `--socket-group`: a group name or number.
fn group(name: &str) -> Result<Gid, Error> {
    if let Ok(number) = name.parse::<u32>() {
        return Ok(Gid::from_raw(number));
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid),
        _ => Err(Error::Usage(format!("--socket-group {name}: no such group"))),
    }
}

/// A socket we create at `path`: its directory must not be writable by everyone (anyone
/// could put their own socket in its place); made 0750 if missing. A stale socket file is
/// replaced; a live one (another broker answers) is not.
fn bind(path: &Path, mode: u32, group: Option<Gid>) -> Result<UnixListener, Error> {
    let unsafe_config = |why: String| {
        Error::Config(crate::error::ConfigError::invalid(Origin::file(path.display().to_string()), why))
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(unsafe_config(format!("{} is not a directory", dir.display())));
        }
        Ok(meta) if meta.mode() & 0o002 != 0 => {
            return Err(unsafe_config(format!(
                "the socket's directory {} is writable by everyone, so anyone could replace the socket; \
                 give the broker a directory of its own (RuntimeDirectory=mxm-secrets in its unit, or \
                 /run/mxm-secrets)",
                dir.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(dir)
                .map_err(|e| unsafe_config(format!("cannot create {}: {e}", dir.display())))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o750))
                .map_err(|e| unsafe_config(format!("chmod 0750 {}: {e}", dir.display())))?;
            if let Some(group) = group {
                nix::unistd::chown(dir, None, Some(group))
                    .map_err(|e| unsafe_config(format!("chgrp {}: {e}", dir.display())))?;
            }
        }
        Err(e) => return Err(unsafe_config(format!("cannot use {}: {e}", dir.display()))),
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(unsafe_config(
                "exists and is not a socket; remove it or choose another path".to_owned(),
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(unsafe_config("another broker already serves this socket".to_owned()));
        }
        let _ = fs::remove_file(path);
    }
    let listener =
        UnixListener::bind(path).map_err(|e| Error::System(format!("binding {}: {e}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::System(format!("chmod {mode:o} {}: {e}", path.display())))?;
    if let Some(group) = group {
        nix::unistd::chown(path, None, Some(group))
            .map_err(|e| Error::System(format!("chgrp {}: {e}", path.display())))?;
    }
    Ok(listener)
}
