//! The `aws_ssm` backend: parameter `ROOT/PATH` of AWS Systems Manager Parameter Store,
//! decrypted (a `SecureString` comes back as its text).
//!
//! ```yaml
//! stores:
//!   params: {backend: aws_ssm, root: /mxm/red, region: eu-west-1}
//! refs:
//!   db_password: {store: params, path: db/password, policy: p}
//!   db_old: {store: params, path: db/password, policy: p, version: 3}   # parameter version 3
//! ```
//!
//! The root is a parameter path, so it starts with `/`. Several parameters of a store go in
//! one `GetParameters` call, at most 10 a call; the names it lists as `InvalidParameters`
//! do not exist (66). A ref's `version` pins the parameter's version (`NAME:3`). `field` and
//! `trim` read the text as for every text backend.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use aws_sdk_ssm::Client;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Endpoint, Lazy, Profile, Region, Settings, call_error};
use crate::backend::{Backend, FetchError, FetchRequest};
use crate::name::given;
use crate::secret::SecretValue;

/// `GetParameters`' limit on names per call.
const MAX_BATCH: usize = 10;

/// The store keys of an `aws_ssm` store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default, deserialize_with = "given")]
    region: Option<Region>,
    #[serde(default, deserialize_with = "given")]
    profile: Option<Profile>,
    #[serde(default, deserialize_with = "given")]
    endpoint: Option<Endpoint>,
}

impl crate::backend::Options for Options {
    fn build(self, root: &str) -> Result<Arc<dyn Backend>, String> {
        let backend = Ssm {
            settings: Settings::new(self.region, self.profile, self.endpoint)?,
            client: Lazy::default(),
        };
        if !root.starts_with('/') {
            return Err(format!(
                "root `{}` must be a parameter path starting with `/`, like /mxm/red",
                root.escape_debug()
            ));
        }
        check_name("root", root.trim_end_matches('/'))?;
        Ok(Arc::new(backend))
    }
}

pub struct Ssm {
    pub settings: Settings,
    client: Lazy<Client>,
}

impl fmt::Debug for Ssm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ssm").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Parameter names are letters, digits and `/_.-`; a `:` would select a version or label.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || "/_.-".contains(*c))) {
        Some(c) => Err(format!(
            "{what} `{}` holds `{}`: parameter names are letters, digits and /_.- (pin a version \
             with the ref's `version`)",
            name.escape_debug(),
            c.escape_debug()
        )),
        None if name.len() > 1011 => Err(format!("{what} is longer than Parameter Store's 1011 characters")),
        None => Ok(()),
    }
}

/// The name a request asks `GetParameters` for: with its version, `NAME:VERSION`.
fn selector(request: &FetchRequest) -> String {
    match request.version {
        Some(version) => format!("{}:{version}", request.location),
        None => request.location.to_owned(),
    }
}

/// One parameter as AWS gave it, its value wiped when dropped.
struct Answer {
    name: String,
    selector: Option<String>,
    version: i64,
    value: Zeroizing<String>,
}

/// The answer to `asked` (`NAME` or `NAME:VERSION`): AWS says which by the answer's
/// `Selector` (`:3`); an answer without one is the latest version, or, from a service that
/// leaves it out (moto), the version asked for.
fn answered<'a>(parameters: &'a [Answer], asked: &str) -> Option<&'a Answer> {
    let (name, version) = match asked.rsplit_once(':') {
        Some((name, version)) => (name, version.parse::<i64>().ok()),
        None => (asked, None),
    };
    let named = parameters.iter().filter(|p| p.name == name);
    match version {
        Some(version) => named
            .clone()
            .find(|p| p.selector.as_deref() == Some(&asked[name.len()..]))
            .or_else(|| named.clone().find(|p| p.selector.is_none() && p.version == version)),
        None => named.filter(|p| p.selector.is_none()).max_by_key(|p| p.version),
    }
}

impl Ssm {
    /// `names` (at most [`MAX_BATCH`], no two alike) in one `GetParameters`, decrypted.
    async fn get(
        &self,
        client: &Client,
        names: &[String],
    ) -> Result<BTreeMap<String, Result<SecretValue, FetchError>>, FetchError> {
        let output = client
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| call_error("GetParameters", e))?;
        let parameters: Vec<Answer> = output
            .parameters
            .unwrap_or_default()
            .into_iter()
            .map(|p| Answer {
                name: p.name.unwrap_or_default(),
                selector: p.selector,
                version: p.version,
                value: Zeroizing::new(p.value.unwrap_or_default()),
            })
            .collect();
        let invalid = output.invalid_parameters.unwrap_or_default();
        let mut answers = BTreeMap::new();
        for asked in names {
            let answer = if invalid.contains(asked) {
                Err(FetchError::NotFound(format!("AWS has no parameter `{asked}` (InvalidParameters)")))
            } else {
                match answered(&parameters, asked) {
                    Some(answer) => Ok(SecretValue::new(answer.value.as_bytes().to_vec())),
                    None => Err(FetchError::Failed(format!(
                        "AWS answered without parameter `{asked}` or an error for it"
                    ))),
                }
            };
            answers.insert(asked.clone(), answer);
        }
        Ok(answers)
    }
}

impl Backend for Ssm {
    fn locate(&self, root: &str, path: &str) -> Result<String, String> {
        super::locate(root, path, check_name)
    }

    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        super::only_answer(self.fetch_many(std::slice::from_ref(request)))
    }

    fn fetch_many(&self, requests: &[FetchRequest]) -> Vec<Result<SecretValue, FetchError>> {
        let Some(first) = requests.first() else { return Vec::new() };
        let mut names: Vec<String> = requests.iter().map(selector).collect();
        names.sort_unstable();
        names.dedup();
        let answers = self.client.call(
            &self.settings,
            "AWS_ENDPOINT_URL_SSM",
            first.timeout,
            Client::new,
            |client| async move { self.get(&client, &names).await },
        );
        let answers = match answers {
            Ok(answers) => answers,
            Err(error) => return requests.iter().map(|_| Err(error.clone())).collect(),
        };
        requests
            .iter()
            .map(|request| {
                let name = selector(request);
                match answers.get(&name) {
                    Some(Ok(value)) => Ok(value.copy()),
                    Some(Err(error)) => Err(error.clone()),
                    None => Err(FetchError::Failed(format!("no answer for parameter `{name}`"))),
                }
            })
            .collect()
    }

    fn max_batch(&self) -> NonZeroUsize {
        NonZeroUsize::new(MAX_BATCH).unwrap_or(NonZeroUsize::MIN)
    }

    fn keeps_versions(&self) -> bool {
        true
    }

    fn credential_variables(&self) -> &'static [&'static str] {
        super::CREDENTIAL_VARIABLES
    }

    fn program(&self) -> Option<String> {
        Some(self.settings.describe("SSM Parameter Store"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_by_selector_or_version() {
        let answer = |selector: Option<&str>, version, value: &str| Answer {
            name: "/a".to_owned(),
            selector: selector.map(str::to_owned),
            version,
            value: Zeroizing::new(value.to_owned()),
        };
        let aws = [answer(None, 3, "latest"), answer(Some(":1"), 1, "first")];
        assert_eq!(answered(&aws, "/a").unwrap().value.as_str(), "latest");
        assert_eq!(answered(&aws, "/a:1").unwrap().value.as_str(), "first");
        assert!(answered(&aws, "/a:2").is_none());
        let moto = [answer(None, 3, "latest"), answer(None, 1, "first")];
        assert_eq!(answered(&moto, "/a").unwrap().value.as_str(), "latest");
        assert_eq!(answered(&moto, "/a:1").unwrap().value.as_str(), "first");
        assert!(answered(&moto, "/b").is_none());
    }

    #[test]
    fn names() {
        check_name("path", "/mxm/red/db_pw-1.x").unwrap();
        for bad in ["/a:3", "/a b", "/a+b"] {
            assert!(check_name("path", bad).is_err(), "{bad}");
        }
    }
}
