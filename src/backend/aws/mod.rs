//! What the two AWS backends share: the store keys `region`, `profile` and `endpoint`, the
//! async runtime the SDK needs, the SDK's configuration (the standard credential chain, as
//! every AWS SDK resolves it), and the mapping of AWS's errors to exit codes.
//!
//! The SDK is async; the launcher is not. One tokio runtime (current-thread, no worker
//! threads) is made the first time an AWS store is fetched, and never for a launch that reads
//! no AWS store: the other backends' launch path pays nothing for it. Each batch is one
//! `block_on` on the thread `resolve::fetch_all` gave it; concurrent batches share the
//! runtime's drivers, as tokio's current-thread runtime allows.
//!
//! Errors: not found is 66, AccessDenied 77 (denied by the secret service), throttling left
//! after the SDK's own retries 75, the store's `timeout` 75, anything else 69 with AWS's
//! error code and message, made printable and cut to a line, with the launcher's AWS
//! credentials cut out should a proxy echo them.

pub(crate) mod secrets_manager;
pub(crate) mod ssm;

use std::future::Future;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::{FetchError, join};
use crate::name::checked_string;
use crate::secret::SecretValue;

/// Variables the SDK reads credentials from: the program must not get the launcher's keys to
/// every secret its policy did not hand it.
pub(crate) const CREDENTIAL_VARIABLES: &[&str] =
    &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"];

checked_string!(
    /// An AWS region, like `eu-west-1`.
    Region, "region", |what, value| {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(format!("{what} `{}` must be a region like eu-west-1", value.escape_debug()));
        }
        Ok(())
    }
);
checked_string!(
    /// A profile of the shared config and credentials files.
    Profile, "profile", |what, value| {
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{what} `{}` must be a profile name without white space", value.escape_debug()));
        }
        Ok(())
    }
);
checked_string!(
    /// A service endpoint URL (checked further by [`check_endpoint`]).
    Endpoint, "endpoint", |what, value| {
        if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
            return Err(format!("{what} `{}` must be a URL like https://vpce-1a2b.secretsmanager.eu-west-1.vpce.amazonaws.com", value.escape_debug()));
        }
        Ok(())
    }
);

/// Where and as whom a store talks to AWS: the keys both AWS backends take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint: Option<String>,
}

impl Settings {
    pub(crate) fn new(
        region: Option<Region>,
        profile: Option<Profile>,
        endpoint: Option<Endpoint>,
    ) -> Result<Settings, String> {
        let endpoint = endpoint.map(|e| e.0);
        if let Some(endpoint) = &endpoint {
            check_endpoint(endpoint)?;
        }
        Ok(Settings { region: region.map(|r| r.0), profile: profile.map(|p| p.0), endpoint })
    }

    /// For diagnostics: the endpoint, or the service in the store's region.
    pub(crate) fn describe(&self, service: &str) -> String {
        match (&self.endpoint, &self.region) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(region)) => format!("AWS {service} in {region}"),
            (None, None) => format!("AWS {service}"),
        }
    }
}

/// `https://` anywhere; plain `http://` only to loopback (moto or LocalStack in tests): the
/// request is signed, not encrypted, and the answer is the secret.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    // `user:password@` in an endpoint is a credential: no message quotes such an endpoint.
    let shown = if endpoint.contains('@') { "(it holds user information, not shown)" } else { endpoint };
    let (scheme, rest) =
        endpoint.split_once("://").ok_or_else(|| format!("endpoint `{shown}` must start with https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if host.is_empty() || authority.contains('@') {
        return Err(format!("endpoint `{shown}` must name a host (and no user)"));
    }
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "endpoint `{shown}` is plain http to another machine: secrets would cross the network \
             unencrypted; use https (plain http is only for a loopback emulator)"
        )),
        other => Err(format!("endpoint `{shown}`: scheme `{other}` is neither https nor http")),
    }
}

/// The one runtime, made at the first AWS fetch.
fn runtime() -> Result<&'static tokio::runtime::Runtime, FetchError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            // Signals are for the main thread (its handlers, a supervisor's signalfd): a
            // runtime thread that took a SIGCHLD would lose the program's exit, one that took a
            // SIGTERM would run the handler in the wrong place. The SDK's DNS lookups run on
            // blocking-pool threads that outlive the fetch by seconds.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_start(|| {
                    let _ = nix::sys::signal::SigSet::all().thread_block();
                })
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| FetchError::Failed(format!("cannot start the AWS SDK's runtime: {e}")))
}

/// Runs `call` on the runtime, within `timeout` (the store's): past it, 75.
pub(crate) fn run<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, FetchError>>,
) -> Result<T, FetchError> {
    runtime()?
        .block_on(async { tokio::time::timeout(timeout, call).await.unwrap_or(Err(FetchError::TimedOut)) })
}

/// A store's SDK client, made at its first fetch and shared by every later one (one
/// connection pool, one credentials cache). A failure is not kept: the next fetch tries again.
pub(crate) struct Lazy<C> {
    client: Mutex<Option<C>>,
}

impl<C> Default for Lazy<C> {
    fn default() -> Self {
        Lazy { client: Mutex::new(None) }
    }
}

impl<C: Clone> Lazy<C> {
    /// `call` with the store's client, made from the SDK config for `settings` by `make` when
    /// there is none yet; both within one `timeout`. `endpoint_variable` is the service's own
    /// endpoint variable (`AWS_ENDPOINT_URL_SSM`). The client is made under the lock but
    /// outside any future, so no lock is ever held across an await.
    pub(crate) fn call<T, F: Future<Output = Result<T, FetchError>>>(
        &self,
        settings: &Settings,
        endpoint_variable: &str,
        timeout: Duration,
        make: impl FnOnce(&SdkConfig) -> C,
        call: impl FnOnce(C) -> F,
    ) -> Result<T, FetchError> {
        let start = Instant::now();
        let client = {
            let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
            match client.as_ref() {
                Some(client) => client.clone(),
                None => {
                    let config = run(timeout, async { Ok(load_config(settings).await) })?;
                    if config.region().is_none() {
                        return Err(FetchError::Misconfigured(
                            "no AWS region: set the store's `region`, or AWS_REGION, or `region` in the profile"
                                .to_owned(),
                        ));
                    }
                    if settings.endpoint.is_none() {
                        check_configured_endpoints(&config, endpoint_variable)?;
                    }
                    client.insert(make(&config)).clone()
                }
            }
        };
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(FetchError::TimedOut);
        }
        run(left, call(client))
    }
}

/// An endpoint the SDK found itself (`AWS_ENDPOINT_URL`, the profile's `endpoint_url`, the
/// service's own variable) is held to the store key's rule: no plain http off the machine.
fn check_configured_endpoints(config: &SdkConfig, variable: &str) -> Result<(), FetchError> {
    let service = std::env::var(variable).ok().filter(|v| !v.is_empty());
    let found = [
        ("AWS_ENDPOINT_URL or the profile's endpoint_url", config.endpoint_url().map(str::to_owned)),
        (variable, service),
    ];
    for (origin, endpoint) in found {
        if let Some(endpoint) = endpoint {
            check_endpoint(&endpoint)
                .map_err(|e| FetchError::Misconfigured(format!("{e} (from {origin})")))?;
        }
    }
    Ok(())
}

/// The SDK's own configuration, as every AWS SDK resolves it (environment, shared files and
/// profiles, `credential_process`, SSO, web identity, container and instance credentials),
/// with the store's keys over it. TLS is rustls with ring, which the vault backend already
/// links, rather than the SDK's default aws-lc (a C build of its own).
async fn load_config(settings: &Settings) -> SdkConfig {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// An AWS error code, in the exit code it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meaning {
    NotFound,
    Denied,
    Throttled,
    Other,
}

pub(crate) fn meaning(code: Option<&str>, status: Option<u16>) -> Meaning {
    match code {
        Some(
            "ResourceNotFoundException"
            | "ParameterNotFound"
            | "ParameterVersionNotFound"
            | "ParameterVersionLabelNotFound",
        ) => Meaning::NotFound,
        Some("AccessDeniedException" | "AccessDenied") => Meaning::Denied,
        Some(
            "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException",
        ) => Meaning::Throttled,
        Some(_) => Meaning::Other,
        None => match status {
            Some(403) => Meaning::Denied,
            Some(429) => Meaning::Throttled,
            _ => Meaning::Other,
        },
    }
}

/// The error for `what` (a secret's name, or the call) from AWS's code and message.
pub(crate) fn service_error(
    what: &str,
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> FetchError {
    let said = match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        (None, Some(message)) => message.to_owned(),
        (None, None) => match status {
            Some(status) => format!("HTTP {status}, no error code"),
            None => "no error code".to_owned(),
        },
    };
    let said = clean(&said);
    match meaning(code, status) {
        Meaning::NotFound => FetchError::NotFound(format!("AWS has no {what} ({said})")),
        Meaning::Denied => FetchError::Denied(format!("{what}: {said}")),
        Meaning::Throttled => {
            FetchError::Throttled(format!("{what}: still throttled after the SDK's retries ({said})"))
        }
        Meaning::Other => FetchError::Failed(format!("{what}: {said}")),
    }
}

/// A failed call for `what`, by how it failed: never answered in time (75), never reached
/// AWS (69, with the SDK's own reason), or answered with an error.
pub(crate) fn call_error<E>(
    what: &str,
    error: SdkError<E, aws_sdk_ssm::config::http::HttpResponse>,
) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        SdkError::TimeoutError(_) => FetchError::TimedOut,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => FetchError::TimedOut,
        SdkError::ServiceError(context) => {
            let raw = context.raw();
            let status = raw.status().as_u16();
            let (code, message) = match (context.err().code(), context.err().message()) {
                (None, None) => xml_error(raw.body().bytes().unwrap_or_default()),
                (code, message) => (code.map(str::to_owned), message.map(str::to_owned)),
            };
            service_error(what, code.as_deref(), message.as_deref(), Some(status))
        }
        _ => FetchError::Failed(format!("{what}: {}", clean(&DisplayErrorContext(&error).to_string()))),
    }
}

/// `<Code>` and `<Message>` of an XML error answer: what an IAM-level refusal looks like
/// when it comes from something in front of a JSON service (moto's IAM, a proxy).
fn xml_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(body.get(..4096).unwrap_or(body));
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find("</")? + start;
        Some(text[start..end].to_owned()).filter(|s| !s.is_empty())
    };
    (element("Code"), element("Message"))
}

/// Where `path` under `root` is, checked by the service's own naming rule (`check`, given
/// `"path"` and the name): both services address a secret by the joined name.
pub(crate) fn locate(
    root: &str,
    path: &str,
    check: fn(&str, &str) -> Result<(), String>,
) -> Result<String, String> {
    let name = join(root, path);
    check("path", &name)?;
    Ok(name)
}

/// A single fetch is a batch of one (both services answer in batches, so one path serves
/// both): its answer is the batch's only one.
pub(crate) fn only_answer(
    mut answers: Vec<Result<SecretValue, FetchError>>,
) -> Result<SecretValue, FetchError> {
    answers.pop().unwrap_or(Err(FetchError::Failed("the backend gave no answer for this secret".to_owned())))
}

/// Text from AWS (or from whatever answered in its place): printable, one line of at most
/// 300 characters, and without the launcher's own credentials, should it echo them.
pub(crate) fn clean(text: &str) -> String {
    let mut text = text.to_owned();
    for variable in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"] {
        if let Some(credential) = std::env::var(variable).ok().filter(|c| c.len() >= 8)
            && text.contains(&credential)
        {
            text = text.replace(&credential, "<redacted>");
        }
    }
    let text = super::printable(&text.replace(['\n', '\t'], " "));
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for good in ["https://vpce.example", "http://127.0.0.1:5000", "http://localhost:1", "http://[::1]:9/"]
        {
            check_endpoint(good).unwrap();
        }
        for bad in [
            "http://moto:5000",
            "http://10.0.0.1",
            "127.0.0.1:5000",
            "ftp://x",
            "https://",
            "http://u@127.0.0.1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        // A password in an endpoint is never quoted back.
        for with_password in ["https://alice:hunter2canary@[::1", "http://alice:hunter2canary@10.0.0.1"] {
            let message = check_endpoint(with_password).unwrap_err();
            assert!(!message.contains("hunter2canary"), "{message}");
        }
    }

    #[test]
    fn codes_and_their_exit_codes() {
        assert_eq!(meaning(Some("ResourceNotFoundException"), Some(400)), Meaning::NotFound);
        assert_eq!(meaning(Some("ParameterNotFound"), None), Meaning::NotFound);
        assert_eq!(meaning(Some("AccessDeniedException"), Some(400)), Meaning::Denied);
        assert_eq!(meaning(None, Some(403)), Meaning::Denied);
        assert_eq!(meaning(Some("ThrottlingException"), Some(400)), Meaning::Throttled);
        assert_eq!(meaning(None, Some(429)), Meaning::Throttled);
        assert_eq!(meaning(Some("InternalServiceError"), Some(500)), Meaning::Other);
        assert_eq!(meaning(Some("SignatureDoesNotMatch"), Some(403)), Meaning::Other);
        let FetchError::Throttled(message) =
            service_error("secret `a/b`", Some("ThrottlingException"), Some("Rate exceeded"), Some(400))
        else {
            panic!()
        };
        assert_eq!(
            message,
            "secret `a/b`: still throttled after the SDK's retries (ThrottlingException: Rate exceeded)"
        );
    }

    #[test]
    fn xml_errors_and_clean_text() {
        let body = b"<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>AccessDenied</Code>\
                     <Message>User: u is not authorized</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_error(body), (Some("AccessDenied".into()), Some("User: u is not authorized".into())));
        assert_eq!(xml_error(b"not xml"), (None, None));
        assert_eq!(clean("a\x1b[2Jb\nc"), "a\\u{1b}[2Jb c");
        assert_eq!(clean(&"x".repeat(400)).len(), 303);
    }
}
