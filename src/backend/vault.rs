//! The `vault` backend: KV version 2 of HashiCorp Vault or OpenBao, over HTTPS. This is how a
//! fleet outgrows one machine: many launchers, one replicated secret service.
//!
//! ```yaml
//! stores:
//!   fleet:
//!     backend: vault
//!     root: secret/mxm/red          # the KV v2 mount, then a prefix
//!     address: https://vault.internal:8200   # else $VAULT_ADDR, else $BAO_ADDR
//!     token_file: /run/secrets/vault-token   # else $VAULT_TOKEN, else $BAO_TOKEN
//!     ca_cert: /etc/ssl/vault-ca.pem          # else the system's roots
//!     namespace: team-a
//!   fleet_approle: {backend: vault, root: secret/mxm, role_id: 5f1c..., secret_id_file: /run/secrets/secret-id}
//! refs:
//!   db_password: {store: fleet, path: db/postgres, policy: p, field: password, version: 3}
//! ```
//!
//! A ref's `field` names the key of the secret's data; a secret with one key needs none.
//! Plain `http://` is allowed to loopback only, unless the store says `insecure_http: true`.
//! The AppRole login happens once, shared by all fetches from the store, over one connection
//! pool; it is renewed, for a process that stays (a supervisor, a broker): a failed login is
//! tried again at the next fetch, and a session is replaced by a new login once its token's
//! lease has run out, or once the token, having worked, is refused and the service no longer
//! knows it (a token file is read again instead: Vault Agent rewrites it). 404 is "not found"
//! (66), 403 "denied by the secret service" (77).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};
use zeroize::{Zeroize, Zeroizing};

use super::{Backend, FetchError, FetchRequest, FilePath};
use crate::name::{check_store_path, checked_string, given};
use crate::secret::SecretValue;

/// The store keys of a vault store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default, deserialize_with = "given")]
    address: Option<Address>,
    #[serde(default, deserialize_with = "given")]
    token_file: Option<FilePath>,
    #[serde(default, deserialize_with = "given")]
    role_id: Option<RoleId>,
    #[serde(default, deserialize_with = "given")]
    secret_id_file: Option<FilePath>,
    #[serde(default, deserialize_with = "given")]
    ca_cert: Option<FilePath>,
    #[serde(default, deserialize_with = "given")]
    namespace: Option<Namespace>,
    #[serde(default, deserialize_with = "given")]
    insecure_http: Option<bool>,
}

checked_string!(
    /// The service's URL (checked further once `insecure_http` is known).
    Address, "address", |what, value| {
        if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
            return Err(format!("{what} `{}` must be a URL like https://vault.internal:8200", value.escape_debug()));
        }
        Ok(())
    }
);
checked_string!(
    /// An AppRole's role ID: not a secret, but sent as given.
    RoleId, "role_id", |what, value| {
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{what} `{}` must be non-empty, without white space", value.escape_debug()));
        }
        Ok(())
    }
);
checked_string!(
    /// A Vault Enterprise namespace.
    Namespace, "namespace", |what, value| {
        if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
            return Err(format!("{what} `{}` must be non-empty text without surrounding white space", value.escape_debug()));
        }
        Ok(())
    }
);

impl super::Options for Options {
    fn build(self, root: &str) -> Result<Arc<dyn Backend>, String> {
        let text = |p: Option<FilePath>| p.map(|p| p.0);
        let auth = match (text(self.token_file), self.role_id.map(|r| r.0), text(self.secret_id_file)) {
            (file, None, None) => Auth::Token { file },
            (None, Some(role_id), Some(secret_id_file)) => Auth::AppRole { role_id, secret_id_file },
            (Some(_), Some(_), _) => return Err("give `token_file` or `role_id`, not both".to_owned()),
            (_, Some(_), None) | (_, None, Some(_)) => {
                return Err("AppRole needs both `role_id` and `secret_id_file`".to_owned());
            }
        };
        let vault = Vault::new(
            self.address.map(|a| a.0),
            auth,
            text(self.ca_cert),
            self.namespace.map(|n| n.0),
            self.insecure_http.unwrap_or(false),
        )?;
        check_store_path("root", root.trim_end_matches('/'))?;
        check_url_safe("root", root)?;
        Ok(Arc::new(vault))
    }
}

/// Responses larger than this are refused: a KV secret is small.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `token_file`, else `$VAULT_TOKEN`, else `$BAO_TOKEN`.
    Token { file: Option<String> },
    /// An AppRole login with `role_id` and the secret ID read from `secret_id_file`.
    AppRole { role_id: String, secret_id_file: String },
}

pub struct Vault {
    pub address: Option<String>,
    pub auth: Auth,
    pub ca_cert: Option<String>,
    pub namespace: Option<String>,
    pub insecure_http: bool,
    /// The connection pool and token, made at the first fetch, shared by all of them, and
    /// made again when it no longer works.
    sessions: Sessions,
}

/// The current session, or the failure of the last attempt to make one.
#[derive(Default)]
struct Sessions {
    state: Mutex<SessionState>,
    /// Attempts to make a session finished so far, read without the lock: a fetch shares the
    /// failure of an attempt that finished after it started (ten concurrent fetches, one
    /// failed login), and makes its own attempt otherwise (the next round of fetches).
    attempts: AtomicU64,
}

#[derive(Default)]
struct SessionState {
    current: Option<Arc<Session>>,
    /// The last attempt's failure and its number.
    failure: Option<(u64, FetchError)>,
}

struct Session {
    agent: ureq::Agent,
    address: String,
    token: SecretValue,
    /// When the token's lease runs out (somewhat before, to leave time for the fetch), when
    /// the login said; a token given as such has none we know of.
    expires: Option<Instant>,
    /// Whether the service has accepted the token: a refusal after that may be its end.
    worked: AtomicBool,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }
}

/// When a lease of `seconds` taken at `start` should be treated as over: a tenth early, at
/// most ten seconds early. No lease (0) never runs out.
fn lease_end(start: Instant, seconds: u64) -> Option<Instant> {
    if seconds == 0 {
        return None;
    }
    let lease = Duration::from_secs(seconds);
    Some(start + lease - (lease / 10).min(Duration::from_secs(10)))
}

impl Vault {
    pub fn new(
        address: Option<String>,
        auth: Auth,
        ca_cert: Option<String>,
        namespace: Option<String>,
        insecure_http: bool,
    ) -> Result<Vault, String> {
        if let Some(address) = &address {
            check_address(address, insecure_http)?;
        }
        Ok(Vault { address, auth, ca_cert, namespace, insecure_http, sessions: Sessions::default() })
    }

    /// Whether the token comes from the launcher's environment (which then must not pass it on).
    pub fn token_from_environment(&self) -> bool {
        matches!(self.auth, Auth::Token { file: None })
    }

    /// Whether a new session can hold another token: a new login, or a token file read again.
    fn renewable(&self) -> bool {
        !self.token_from_environment()
    }

    /// The session to use, for a fetch that began when `started` attempts had finished: the
    /// current one, unless it is `stale` or its lease has run out; else the failure of an
    /// attempt that finished since the fetch began; else a new attempt. One attempt at a time:
    /// concurrent fetches wait for it and share its outcome.
    fn session(
        &self,
        timeout: Duration,
        started: u64,
        stale: Option<&Arc<Session>>,
    ) -> Result<Arc<Session>, FetchError> {
        let mut state = self.sessions.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = &state.current {
            let replaced = stale.is_some_and(|s| Arc::ptr_eq(s, current));
            if !replaced && !current.expired(Instant::now()) {
                return Ok(Arc::clone(current));
            }
        }
        if let Some((number, failure)) = &state.failure
            && *number > started
        {
            return Err(failure.clone());
        }
        let result = self.connect(timeout);
        let number = self.sessions.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        match result {
            Ok(session) => {
                let session = Arc::new(session);
                state.current = Some(Arc::clone(&session));
                state.failure = None;
                Ok(session)
            }
            Err(failure) => {
                state.current = None;
                state.failure = Some((number, failure.clone()));
                Err(failure)
            }
        }
    }

    fn connect(&self, timeout: Duration) -> Result<Session, FetchError> {
        let variable = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let address = self
            .address
            .clone()
            .or_else(|| variable("VAULT_ADDR"))
            .or_else(|| variable("BAO_ADDR"))
            .ok_or_else(|| {
                FetchError::Misconfigured(
                    "no address: set the store's `address`, or VAULT_ADDR or BAO_ADDR".to_owned(),
                )
            })?;
        check_address(&address, self.insecure_http).map_err(FetchError::Misconfigured)?;
        let address = address.trim_end_matches('/').to_owned();
        let mut tls = ureq::tls::TlsConfig::builder();
        tls = match &self.ca_cert {
            Some(path) => {
                let (pem, _) = crate::files::read_text(std::path::Path::new(path), 1 << 20)
                    .map_err(|e| FetchError::Misconfigured(format!("ca_cert {path} {e}")))?;
                let certificates = ureq::tls::parse_pem(pem.as_bytes())
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                if certificates.is_empty() {
                    return Err(FetchError::Misconfigured(format!(
                        "ca_cert {path} holds no PEM certificate"
                    )));
                }
                tls.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certificates)))
            }
            None => tls.root_certs(ureq::tls::RootCerts::PlatformVerifier),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        let start = Instant::now();
        let (token, expires) = match &self.auth {
            Auth::Token { file: Some(path) } => (read_secret_file(path, "token_file")?, None),
            Auth::Token { file: None } => {
                let token = variable("VAULT_TOKEN").or_else(|| variable("BAO_TOKEN")).ok_or_else(|| {
                    FetchError::Misconfigured(
                        "no token: set token_file, VAULT_TOKEN or BAO_TOKEN, or role_id and secret_id_file"
                            .to_owned(),
                    )
                })?;
                (SecretValue::new(token.into_bytes()), None)
            }
            Auth::AppRole { role_id, secret_id_file } => {
                let secret_id = read_secret_file(secret_id_file, "secret_id_file")?;
                let (token, lease) = self.login(&agent, &address, role_id, &secret_id)?;
                (token, lease_end(start, lease))
            }
        };
        Ok(Session { agent, address, token, expires, worked: AtomicBool::new(false) })
    }

    /// Whether the service still knows the session's token (`lookup-self`, which every
    /// token's default policy allows): a refusal with a live token is the policy's, and a
    /// new login would not change it.
    fn token_alive(&self, session: &Session) -> bool {
        let Ok(token) = std::str::from_utf8(session.token.expose()) else {
            return false;
        };
        let url = format!("{}/v1/auth/token/lookup-self", session.address);
        let mut call = session.agent.get(&url).header("X-Vault-Token", token);
        if let Some(namespace) = &self.namespace {
            call = call.header("X-Vault-Namespace", namespace);
        }
        // Only the status matters; the body (which names the token) is never read.
        call.call().is_ok_and(|response| response.status().as_u16() == 200)
    }

    fn login(
        &self,
        agent: &ureq::Agent,
        address: &str,
        role_id: &str,
        secret_id: &SecretValue,
    ) -> Result<(SecretValue, u64), FetchError> {
        #[derive(serde::Serialize)]
        struct Login<'a> {
            role_id: &'a str,
            secret_id: &'a str,
        }
        let secret_id = std::str::from_utf8(secret_id.expose())
            .map_err(|_| FetchError::Misconfigured("secret_id_file is not UTF-8 text".to_owned()))?;
        let body = Zeroizing::new(serde_json::to_vec(&Login { role_id, secret_id }).unwrap_or_default());
        let url = format!("{address}/v1/auth/approle/login");
        let mut request = agent.post(&url).header("Content-Type", "application/json");
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        let response = request.send(&body[..]).map_err(|e| transport(address, e))?;
        let (status, body) = read_body(response, address)?;
        match status {
            200 => {}
            400 | 403 => {
                return Err(FetchError::Denied(format!(
                    "AppRole login refused: {}",
                    service_errors(&body, &[secret_id])
                )));
            }
            _ => {
                return Err(FetchError::Failed(format!(
                    "AppRole login: HTTP {status}: {}",
                    service_errors(&body, &[secret_id])
                )));
            }
        }
        #[derive(Deserialize)]
        struct LoginResponse {
            auth: Option<LoginAuth>,
        }
        #[derive(Deserialize)]
        struct LoginAuth {
            client_token: Sensitive,
            #[serde(default)]
            lease_duration: u64,
        }
        let parsed: LoginResponse = serde_json::from_slice(&body).map_err(|e| {
            FetchError::Failed(format!(
                "AppRole login: {}: expected an answer with auth.client_token",
                json_problem(&e)
            ))
        })?;
        parsed
            .auth
            .map(|a| (a.client_token.0, a.lease_duration))
            .ok_or_else(|| FetchError::Failed("AppRole login: the answer holds no token".to_owned()))
    }
}

/// Characters that mean something in a URL beyond the path: a path or root holding one is
/// refused at load, whatever the encoding below would make of it (`%2e%2e` is `..` to a
/// server that decodes, `?` and `#` would end the path).
const URL_SYNTAX: [char; 3] = ['%', '?', '#'];

/// A root or path without [`URL_SYNTAX`].
pub(crate) fn check_url_safe(what: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| URL_SYNTAX.contains(c)) {
        Some(c) => Err(format!(
            "{what} `{}` holds `{c}`, which a URL would read as syntax (`%` escapes, `?` a \
             query, `#` a fragment); vault paths may not contain `%`, `?` or `#`",
            value.escape_debug()
        )),
        None => Ok(()),
    }
}

/// Every segment percent-encoded (all but RFC 3986's unreserved characters), so what reaches
/// the server's router is the path that was authorized, byte for byte.
fn encode_path(location: &str) -> String {
    let mut encoded = String::with_capacity(location.len());
    for (index, segment) in location.split('/').enumerate() {
        if index > 0 {
            encoded.push('/');
        }
        for byte in segment.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                encoded.push(char::from(byte));
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    encoded
}

impl Backend for Vault {
    fn locate(&self, root: &str, path: &str) -> Result<String, String> {
        check_url_safe("root", root)?;
        check_url_safe("path", path)?;
        let root = root.trim_end_matches('/');
        Ok(match root.split_once('/') {
            Some((mount, prefix)) => format!("{mount}/data/{prefix}/{path}"),
            None => format!("{root}/data/{path}"),
        })
    }

    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        let started = self.sessions.attempts.load(Ordering::SeqCst);
        let session = self.session(request.timeout, started, None)?;
        match self.read(&session, request) {
            Err(FetchError::Denied(_))
                if self.renewable()
                    && session.worked.load(Ordering::SeqCst)
                    && !self.token_alive(&session) =>
            {
                // Once: a new session refused as well is the answer.
                let renewed = self.session(request.timeout, started, Some(&session))?;
                self.read(&renewed, request)
            }
            other => other,
        }
    }

    fn picks_fields(&self) -> bool {
        true
    }

    fn keeps_versions(&self) -> bool {
        true
    }

    fn credential_variables(&self) -> &'static [&'static str] {
        if self.token_from_environment() { &["VAULT_TOKEN", "BAO_TOKEN"] } else { &[] }
    }

    fn program(&self) -> Option<String> {
        self.address.clone()
    }
}

impl Vault {
    /// One read with `session`'s token.
    fn read(&self, session: &Session, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        let mut url = format!("{}/v1/{}", session.address, encode_path(request.location));
        if let Some(version) = request.version {
            url.push_str(&format!("?version={version}"));
        }
        let token = std::str::from_utf8(session.token.expose())
            .map_err(|_| FetchError::Misconfigured("the token is not UTF-8 text".to_owned()))?;
        let mut call = session.agent.get(&url).header("X-Vault-Token", token);
        if let Some(namespace) = &self.namespace {
            call = call.header("X-Vault-Namespace", namespace);
        }
        let response = call.call().map_err(|e| transport(&session.address, e))?;
        let (status, body) = read_body(response, &session.address)?;
        let location = request.location;
        if status == 200 || status == 404 {
            session.worked.store(true, Ordering::SeqCst);
        }
        match status {
            200 => {}
            404 => {
                return Err(FetchError::NotFound(format!("the secret service has no secret at {location}")));
            }
            403 => {
                return Err(FetchError::Denied(format!(
                    "the token may not read {location}: {}",
                    service_errors(&body, &[token])
                )));
            }
            _ => {
                return Err(FetchError::Failed(format!(
                    "HTTP {status}: {}",
                    service_errors(&body, &[token])
                )));
            }
        }
        #[derive(Deserialize)]
        struct Read {
            data: Option<ReadData>,
        }
        #[derive(Deserialize)]
        struct ReadData {
            data: Option<BTreeMap<String, Sensitive>>,
        }
        let read: Read = serde_json::from_slice(&body).map_err(|e| unexpected_answer(&e, location))?;
        let mut keys = read.data.and_then(|d| d.data).ok_or_else(|| {
            FetchError::NotFound(format!("the secret at {location} has no data (deleted or destroyed)"))
        })?;
        let names = keys_list(keys.keys());
        match request.field {
            Some(field) => keys.remove(field.key()).map(|v| v.0).ok_or_else(|| {
                FetchError::NotFound(format!(
                    "the secret at {location} has no key `{}` (keys: {names})",
                    field.key()
                ))
            }),
            None if keys.len() == 1 => Ok(keys.pop_first().map(|(_, v)| v.0).unwrap_or_default()),
            None => Err(FetchError::Misconfigured(format!(
                "the secret at {location} has keys {names}; give the ref a `field` to choose one"
            ))),
        }
    }
}

/// Why an answer could not be read, in words that never quote it: serde's own messages do
/// (`invalid type: string "VALUE"`), and the answer holds secrets.
pub(crate) fn json_problem(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Io | Category::Eof => "the answer ended early",
        Category::Syntax => "the answer is not JSON",
        Category::Data => "the answer has another shape",
    };
    format!("{what} (at line {} column {})", error.line(), error.column())
}

/// A read whose answer is not KV version 2's `{"data": {"data": {KEY: VALUE, ...}}}`.
fn unexpected_answer(error: &serde_json::Error, location: &str) -> FetchError {
    FetchError::Failed(format!(
        "reading {location}: {}; expected a KV version 2 answer with data.data an object of \
         string keys; is the mount KV version 1? (the store's root must start with a KV \
         version 2 mount)",
        json_problem(error)
    ))
}

pub(crate) fn keys_list<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let keys: Vec<String> = keys.map(|k| format!("`{}`", super::printable(k))).collect();
    if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
}

/// The status and the body, at most [`MAX_RESPONSE_BYTES`], in a buffer wiped when dropped.
fn read_body(
    mut response: ureq::http::Response<ureq::Body>,
    address: &str,
) -> Result<(u16, Zeroizing<Vec<u8>>), FetchError> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| transport(address, e))?;
    Ok((status, Zeroizing::new(body)))
}

fn transport(address: &str, error: ureq::Error) -> FetchError {
    match error {
        ureq::Error::Timeout(_) => FetchError::TimedOut,
        ureq::Error::BodyExceedsLimit(limit) => {
            FetchError::Failed(format!("{address} answered with more than {limit} bytes"))
        }
        other => FetchError::Failed(format!("cannot reach {address}: {other}")),
    }
}

/// The `errors` list of an error answer; never the body itself. A server (or a proxy in
/// front of it) may echo the request in its errors, and the request carried `credentials`
/// (the token, the AppRole secret_id): each is cut out, as sent and as JSON writes it.
fn service_errors(body: &[u8], credentials: &[&str]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    let mut text = match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => Zeroizing::new(e.errors.join("; ")),
        _ => return "no reason given".to_owned(),
    };
    for credential in credentials.iter().filter(|c| !c.is_empty()) {
        let quoted = Zeroizing::new(serde_json::to_string(credential).unwrap_or_default());
        let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default();
        for form in [*credential, inner] {
            if !form.is_empty() && text.contains(form) {
                text = Zeroizing::new(text.replace(form, "<redacted>"));
            }
        }
    }
    super::printable(&text)
}

fn read_secret_file(path: &str, what: &str) -> Result<SecretValue, FetchError> {
    let (mut text, _) = crate::files::read_text(std::path::Path::new(path), 64 * 1024)
        .map_err(|e| FetchError::Misconfigured(format!("{what} {path} {e}")))?;
    let value = SecretValue::new(text.trim().as_bytes().to_vec());
    text.zeroize();
    if value.is_empty() {
        return Err(FetchError::Misconfigured(format!("{what} {path} is empty")));
    }
    Ok(value)
}

/// `https://`, or `http://` to loopback (or anywhere with `insecure_http`).
fn check_address(address: &str, insecure_http: bool) -> Result<(), String> {
    let (scheme, rest) =
        address.split_once("://").ok_or_else(|| format!("address `{address}` must start with https://"))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(format!("address `{address}` names no host"));
    }
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(()),
        "http" if loopback || insecure_http => Ok(()),
        "http" => Err(format!(
            "address `{address}` is plain http to another machine: tokens and secrets would cross the \
             network unencrypted; use https, or set `insecure_http: true` if something else protects it"
        )),
        other => Err(format!("address `{address}`: scheme `{other}` is neither https nor http")),
    }
}

/// A string from a JSON answer that is a secret: it goes straight into a wiping buffer. A
/// value that is not a string (a number, a list) is kept as its JSON text.
pub(crate) struct Sensitive(pub(crate) SecretValue);

impl<'de> Deserialize<'de> for Sensitive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Sensitive;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sensitive, E> {
                Ok(Sensitive(SecretValue::new(v.as_bytes().to_vec())))
            }
            fn visit_string<E: serde::de::Error>(self, mut v: String) -> Result<Sensitive, E> {
                let value = SecretValue::new(v.as_bytes().to_vec());
                v.zeroize();
                Ok(Sensitive(value))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Sensitive, E> {
                self.visit_string(v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Sensitive, E> {
                self.visit_string(v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Sensitive, E> {
                self.visit_string(v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Sensitive, E> {
                self.visit_string(v.to_string())
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Sensitive, E> {
                Ok(Sensitive(SecretValue::default()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Sensitive, A::Error> {
                let value =
                    serde_json::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                self.visit_string(value.to_string())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Sensitive, A::Error> {
                let value =
                    serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                self.visit_string(value.to_string())
            }
        }
        deserializer.deserialize_any(Text)
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("address", &self.address)
            .field("auth", &self.auth)
            .field("ca_cert", &self.ca_cert)
            .field("namespace", &self.namespace)
            .field("insecure_http", &self.insecure_http)
            .finish_non_exhaustive()
    }
}

/// A store's settings compare equal whatever its session holds.
impl PartialEq for Vault {
    fn eq(&self, other: &Self) -> bool {
        (&self.address, &self.auth, &self.ca_cert, &self.namespace, self.insecure_http)
            == (&other.address, &other.auth, &other.ca_cert, &other.namespace, other.insecure_http)
    }
}

impl Eq for Vault {}

/// A copy starts without a session of its own.
impl Clone for Vault {
    fn clone(&self) -> Self {
        Vault {
            address: self.address.clone(),
            auth: self.auth.clone(),
            ca_cert: self.ca_cert.clone(),
            namespace: self.namespace.clone(),
            insecure_http: self.insecure_http,
            sessions: Sessions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for good in [
            "https://vault:8200",
            "https://10.0.0.1",
            "http://127.0.0.1:8200",
            "http://localhost:1",
            "http://[::1]:8200/",
        ] {
            check_address(good, false).unwrap();
        }
        for bad in [
            "http://vault:8200",
            "http://10.0.0.1:8200",
            "vault:8200",
            "ftp://x",
            "https://",
            "http://[::2]:1",
        ] {
            assert!(check_address(bad, false).is_err(), "{bad}");
        }
        check_address("http://vault:8200", true).unwrap();
    }

    #[test]
    fn answers_of_another_shape_are_never_quoted() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Read {
            data: Option<BTreeMap<String, BTreeMap<String, String>>>,
        }
        for body in [
            r#"{"data":{"data":"canary-v"}}"#,
            r#"{"data":"canary-v"}"#,
            r#"{"data":{"data":["canary-v"]}}"#,
            r#"{"data":{"data":{"k":"canary-v"}} canary-v"#,
            r#"canary-v"#,
            r#"{"data":{"data":{"k":"canary-v"#,
        ] {
            let error = serde_json::from_str::<Read>(body).unwrap_err();
            let FetchError::Failed(message) = unexpected_answer(&error, "kv/data/x") else { panic!() };
            assert!(!message.contains("canary"), "{message}");
            assert!(message.contains("expected a KV version 2 answer"), "{message}");
        }
    }

    #[test]
    fn locations() {
        let vault = Vault::new(None, Auth::Token { file: None }, None, None, false).unwrap();
        assert_eq!(vault.locate("secret/mxm/red", "db/pw").unwrap(), "secret/data/mxm/red/db/pw");
        assert_eq!(vault.locate("secret", "db").unwrap(), "secret/data/db");
        assert_eq!(vault.locate("secret/", "db").unwrap(), "secret/data/db");
        for bad in ["a%2e%2e", "a?version=1", "a#b", "%2e%2e/x"] {
            let message = vault.locate("secret", bad).unwrap_err();
            assert!(message.contains("vault paths may not contain"), "{message}");
            assert!(vault.locate(&format!("secret/{bad}"), "db").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_lease_ends_a_little_early_and_none_never() {
        let start = Instant::now();
        assert_eq!(lease_end(start, 0), None);
        assert_eq!(lease_end(start, 2), Some(start + Duration::from_millis(1800)));
        assert_eq!(lease_end(start, 3600), Some(start + Duration::from_secs(3590)));
    }

    #[test]
    fn every_segment_is_percent_encoded() {
        assert_eq!(encode_path("secret/data/mxm/db_pw-1.x~"), "secret/data/mxm/db_pw-1.x~");
        assert_eq!(encode_path("secret/data/a b+c/é"), "secret/data/a%20b%2Bc/%C3%A9");
        assert_eq!(encode_path("kv/data/%2e%2e?#"), "kv/data/%252e%252e%3F%23");
    }
}
