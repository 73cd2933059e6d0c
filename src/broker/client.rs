//! The client side (`run`, `get`, `check`, `list` with `--broker PATH` or
//! `MXM_SECRETS_BROKER`): no config is read; the declared identity and the names go to the
//! broker, and its answer comes back as values (each a sealed memfd, checked sealed before
//! it is read), decisions or names. A broker's error is passed on with its exit code and
//! sentence; a broker that cannot be reached is 69, naming the socket.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::stat::fstat;
use nix::sys::uio::pread;
use serde_json::{Value, json};

use super::protocol::{self, ClientRequest, MAX_ANSWER, Op, VERSION};
use crate::diagnose::{Report, list_report};
use crate::error::{EX_UNAVAILABLE, Error};
use crate::identity::{Principal, RuntimeIdentity};
use crate::manifest::Manifest;
use crate::name::Name;
use crate::secret::SecretValue;

/// How long a client waits for the answer: fetches are bounded by each store's timeout.
const ANSWER_WAIT: Duration = Duration::from_secs(300);
/// The largest value a client takes from a memfd.
const MAX_VALUE: i64 = 64 * 1024 * 1024;
/// The seals every value's memfd must carry: nobody, the broker included, can change it.
const SEALS: SealFlag = SealFlag::F_SEAL_WRITE
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_SEAL);

fn unavailable(socket: &Path, why: impl std::fmt::Display) -> Error {
    Error::Broker { exit_code: EX_UNAVAILABLE, message: format!("the broker at {}: {why}", socket.display()) }
}

/// Sends one request and reads the answer (with its descriptors): the answer when `ok`,
/// else the broker's own exit code and sentence.
fn ask(socket: &Path, request: &ClientRequest) -> Result<(Value, Vec<OwnedFd>), Error> {
    let (answer, fds) = exchange(socket, request)?;
    outcome(&answer)?;
    Ok((answer, fds))
}

/// One request and its answer, whatever the answer says.
fn exchange(socket: &Path, request: &ClientRequest) -> Result<(Value, Vec<OwnedFd>), Error> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        unavailable(
            socket,
            format!("cannot be reached ({e}); is `mxm-secrets serve` running, and may you connect?"),
        )
    })?;
    stream.set_write_timeout(Some(Duration::from_secs(30))).map_err(|e| unavailable(socket, e))?;
    let body = serde_json::to_value(request).map_err(|e| unavailable(socket, e))?;
    // A broker that answered at once (75 when overloaded) may have closed already: read on.
    let sent = protocol::send(&stream, &body, &[]);
    let (answer, fds) = match protocol::receive(
        &stream,
        MAX_ANSWER,
        Instant::now() + ANSWER_WAIT,
        protocol::Descriptors::Take,
    ) {
        Ok(answer) => answer,
        Err(e) => {
            let why = match sent {
                Err(sent) => format!("the request could not be sent ({sent})"),
                Ok(()) => format!("no answer ({e})"),
            };
            return Err(unavailable(socket, why));
        }
    };
    let answer: Value = serde_json::from_slice(&answer)
        .map_err(|e| unavailable(socket, format!("an answer that is not JSON ({e})")))?;
    if answer["version"].as_u64() != Some(VERSION) {
        return Err(unavailable(
            socket,
            format!("it speaks protocol version {}, not {VERSION}", answer["version"]),
        ));
    }
    Ok((answer, fds))
}

/// `Ok` for an answer that says `ok`, else the broker's exit code and sentence.
pub fn outcome(answer: &Value) -> Result<(), Error> {
    if answer["ok"].as_bool() == Some(true) {
        return Ok(());
    }
    let exit_code = answer["exit_code"].as_u64().and_then(|c| u8::try_from(c).ok()).filter(|c| *c != 0);
    let message = answer["error"].as_str().unwrap_or("the broker refused, without saying why");
    Err(Error::Broker { exit_code: exit_code.unwrap_or(EX_UNAVAILABLE), message: message.to_owned() })
}

fn request(op: Op, identity: &RuntimeIdentity, names: Vec<String>, optional: Vec<String>) -> ClientRequest {
    ClientRequest { version: VERSION, op, identity: identity.into(), names, optional }
}

/// The values of every name of `manifest`, in its order (optional missing ones left out).
pub fn fetch(
    socket: &Path,
    identity: &RuntimeIdentity,
    manifest: &Manifest,
) -> Result<Vec<(Name, SecretValue)>, Error> {
    let names = manifest.names();
    let optional: Vec<String> = names
        .iter()
        .filter(|name| manifest.entries.iter().filter(|e| e.name == ***name).all(|e| e.optional))
        .map(|name| name.to_string())
        .collect();
    let asked: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let (answer, fds) = ask(socket, &request(Op::Fetch, identity, asked, optional.clone()))?;
    let mut values = Vec::new();
    for secret in answer["secrets"].as_array().into_iter().flatten() {
        let name = secret["name"].as_str().and_then(|n| Name::new(n).ok());
        let Some(name) = name.filter(|n| names.contains(&n)) else {
            return Err(unavailable(
                socket,
                format!("it answered a name that was not asked for: {}", secret["name"]),
            ));
        };
        let fd = secret["fd"]
            .as_u64()
            .and_then(|i| fds.get(i as usize))
            .ok_or_else(|| unavailable(socket, format!("no descriptor came with secret `{name}`")))?;
        let value = read_sealed(fd).map_err(|why| unavailable(socket, format!("secret `{name}`: {why}")))?;
        values.push((name, value));
    }
    // Each memfd closes here; the values are ours alone.
    drop(fds);
    // All or nothing, as a local run: a required name without its value is not launched.
    let skipped: Vec<&&Name> = names
        .iter()
        .filter(|name| !values.iter().any(|(got, _)| got == **name) && !optional.contains(&name.to_string()))
        .collect();
    if let Some(name) = skipped.first() {
        return Err(unavailable(socket, format!("it sent no value for the required secret `{name}`")));
    }
    Ok(values)
}

/// A value from a memfd that must be sealed against any change (so what is checked and used
/// is what stays), read whole from offset 0.
fn read_sealed(fd: &OwnedFd) -> Result<SecretValue, String> {
    let seals = fcntl(fd, FcntlArg::F_GET_SEALS).map_err(|e| format!("not a sealable memfd ({e})"))?;
    if !SealFlag::from_bits_truncate(seals).contains(SEALS) {
        return Err("its memfd is not sealed against writing, growing, shrinking and resealing".to_owned());
    }
    let size = fstat(fd).map_err(|e| format!("fstat: {e}"))?.st_size;
    if !(0..=MAX_VALUE).contains(&size) {
        return Err(format!("a value of {size} bytes is over the limit of {MAX_VALUE}"));
    }
    // Wiped if reading fails half way.
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; size as usize]);
    let mut filled = 0;
    while filled < bytes.len() {
        match pread(fd, &mut bytes[filled..], filled as i64) {
            Ok(0) => return Err("the memfd ended early".to_owned()),
            Ok(n) => filled += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(SecretValue::new(std::mem::take(&mut *bytes)))
}

/// `check --broker`: each name's decision, as the broker judged it for this caller; a
/// denial is an answer too (see [`outcome`]), with the decisions.
pub fn check(socket: &Path, identity: &RuntimeIdentity, manifest: &Manifest) -> Result<Value, Error> {
    let names = manifest.names().iter().map(|n| n.to_string()).collect();
    let (answer, _) = exchange(socket, &request(Op::Check, identity, names, Vec::new()))?;
    if answer["secrets"].is_array() { Ok(answer) } else { outcome(&answer).map(|()| answer) }
}

/// `list --broker`: the names this caller may read, as the report `list` makes locally
/// (`diagnose::list`, schema `mxm-secrets/list/1`), with `broker` where it has `config`. A
/// caller that may read nothing is told so, without the local report's hints about other
/// policies (the broker tells a client nothing of the config).
pub fn list(socket: &Path, identity: &RuntimeIdentity) -> Result<Report, Error> {
    let (answer, _) = ask(socket, &request(Op::List, identity, Vec::new(), Vec::new()))?;
    let name = answer["principal"].as_str().and_then(|n| Name::new(n).ok());
    let Some(name) = name else {
        return Err(unavailable(
            socket,
            format!("an answer without a valid principal: {}", answer["principal"]),
        ));
    };
    let rule = answer["principal_rule"].as_u64().map(|i| i as usize);
    let principal = Principal { name, rule, reserved: None };
    fn field<'a>(secret: &'a Value, key: &str) -> &'a str {
        secret[key].as_str().unwrap_or("?")
    }
    let secrets: Vec<[&str; 3]> = answer["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| [field(s, "name"), field(s, "store"), field(s, "policy")])
        .collect();
    let (mut text, mut json) = list_report(&principal, &secrets, "broker", json!(socket));
    if secrets.is_empty() {
        let why =
            "the broker allows this caller no secret; the broker's log has each decision (ask its operator)";
        text.push_str(&format!("nothing    {why}\n"));
        json["nothing_readable"] = json!({"reason": why, "elsewhere": []});
    }
    Ok(Report { text, json, outcome: Ok(()) })
}
