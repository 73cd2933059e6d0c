//! The `aws_secrets_manager` backend: secret `ROOT/PATH` of AWS Secrets Manager.
//!
//! ```yaml
//! stores:
//!   aws:
//!     backend: aws_secrets_manager
//!     root: mxm/red               # a name prefix
//!     region: eu-west-1           # else AWS_REGION, else the profile's
//!     profile: prod               # else AWS_PROFILE, else `default`
//!   aws_previous: {backend: aws_secrets_manager, root: mxm/red, version_stage: AWSPREVIOUS}
//! refs:
//!   db_password: {store: aws, path: db, policy: p, field: password}   # a key of a JSON secret
//!   tls_key: {store: aws, path: tls/key, policy: p, trim: none}       # a binary secret's bytes
//! ```
//!
//! A ref's `field` picks a key of a JSON `SecretString`; without one the whole string is the
//! value, and a binary secret is its bytes. Versions are a store's: `version_stage`
//! (default `AWSCURRENT`) or `version_id`, so that every secret a store hands out comes from
//! the same stage (a rotation's `AWSPENDING`, a rollback's `AWSPREVIOUS`).
//!
//! Batching: several secrets of a store at the current stage are fetched by
//! `BatchGetSecretValue`, at most 20 a call, each per-secret error mapped to its name.
//! That call has no version parameters, so a store pinned to another stage or to a version
//! id fetches each secret by `GetSecretValue` (concurrently, as for any backend without a
//! batch call); so does a batch of one. An identity allowed `GetSecretValue` but not
//! `BatchGetSecretValue` (policies older than that call) still works: a batch refused as a
//! whole is fetched secret by secret, and each secret then answers for itself.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use aws_sdk_secretsmanager::Client;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Endpoint, Lazy, Profile, Region, Settings, call_error, service_error};
use crate::backend::vault::{Sensitive, json_problem, keys_list};
use crate::backend::{Backend, FetchError, FetchRequest};
use crate::name::{checked_string, given};
use crate::secret::SecretValue;
use crate::value::Field;

/// `BatchGetSecretValue`'s limit on secret ids per call.
const MAX_BATCH: usize = 20;

const CURRENT: &str = "AWSCURRENT";

/// The store keys of an `aws_secrets_manager` store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default, deserialize_with = "given")]
    region: Option<Region>,
    #[serde(default, deserialize_with = "given")]
    profile: Option<Profile>,
    #[serde(default, deserialize_with = "given")]
    endpoint: Option<Endpoint>,
    #[serde(default, deserialize_with = "given")]
    version_stage: Option<Version>,
    #[serde(default, deserialize_with = "given")]
    version_id: Option<Version>,
}

checked_string!(
    /// A version stage (`AWSCURRENT`, `AWSPENDING`, `AWSPREVIOUS`, a label) or version id.
    Version, "version", |what, value| {
        if value.is_empty() || value.len() > 256 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{what} `{}` must be 1 to 256 characters without white space", value.escape_debug()));
        }
        Ok(())
    }
);

impl crate::backend::Options for Options {
    fn build(self, root: &str) -> Result<Arc<dyn Backend>, String> {
        let version = match (self.version_stage, self.version_id) {
            (Some(_), Some(_)) => {
                return Err("give `version_stage` or `version_id`, not both".to_owned());
            }
            (None, Some(id)) => Pin::Id(id.0),
            (stage, None) => Pin::Stage(stage.map_or_else(|| CURRENT.to_owned(), |s| s.0)),
        };
        let backend = SecretsManager {
            settings: Settings::new(self.region, self.profile, self.endpoint)?,
            version,
            client: Lazy::default(),
        };
        check_name("root", root.trim_end_matches('/'))?;
        Ok(Arc::new(backend))
    }
}

/// Which version of every secret a store reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    Stage(String),
    Id(String),
}

pub struct SecretsManager {
    pub settings: Settings,
    pub version: Pin,
    client: Lazy<Client>,
}

impl fmt::Debug for SecretsManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManager")
            .field("settings", &self.settings)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Secret names are letters, digits and `/_+=.@-`; anything else is refused at load rather
/// than sent.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c))) {
        Some(c) => Err(format!(
            "{what} `{}` holds `{}`: Secrets Manager names are letters, digits and /_+=.@-",
            name.escape_debug(),
            c.escape_debug()
        )),
        None if name.len() > 512 => Err(format!("{what} is longer than Secrets Manager's 512 characters")),
        None => Ok(()),
    }
}

/// One secret as AWS gave it, wiped when dropped.
struct Answer {
    string: Option<Zeroizing<String>>,
    binary: Option<Zeroizing<Vec<u8>>>,
}

impl Answer {
    fn new(string: Option<String>, binary: Option<aws_sdk_secretsmanager::primitives::Blob>) -> Answer {
        Answer { string: string.map(Zeroizing::new), binary: binary.map(|b| Zeroizing::new(b.into_inner())) }
    }

    /// The value a ref wants: the whole string or the bytes, or a key of a JSON string.
    fn value(&self, name: &str, field: Option<&Field>) -> Result<SecretValue, FetchError> {
        match (field, &self.string, &self.binary) {
            (None, Some(string), _) => Ok(SecretValue::new(string.as_bytes().to_vec())),
            (None, None, Some(bytes)) => Ok(SecretValue::new(bytes.to_vec())),
            (None, None, None) => Ok(SecretValue::default()),
            (Some(field), Some(string), _) => {
                let mut keys: BTreeMap<String, Sensitive> = serde_json::from_str(string).map_err(|e| {
                    FetchError::NotFound(format!(
                        "secret `{name}` has no key `{}`: a `field` picks a key of a JSON object, and its \
                         SecretString is not one ({})",
                        field.key(),
                        json_problem(&e)
                    ))
                })?;
                let names = keys_list(keys.keys());
                keys.remove(field.key()).map(|v| v.0).ok_or_else(|| {
                    FetchError::NotFound(format!(
                        "secret `{name}` has no key `{}` (keys: {names})",
                        field.key()
                    ))
                })
            }
            (Some(field), None, _) => Err(FetchError::NotFound(format!(
                "secret `{name}` is binary and has no key `{}`: a `field` picks a key of a JSON SecretString",
                field.key()
            ))),
        }
    }
}

impl SecretsManager {
    /// Whether secrets can go in `BatchGetSecretValue`, which reads the current stage only.
    fn batches(&self) -> bool {
        self.version == Pin::Stage(CURRENT.to_owned())
    }

    async fn get_one(client: Client, id: String, version: Pin) -> Result<Answer, FetchError> {
        let call = client.get_secret_value().secret_id(&id);
        let call = match version {
            Pin::Stage(stage) if stage == CURRENT => call,
            Pin::Stage(stage) => call.version_stage(stage),
            Pin::Id(version) => call.version_id(version),
        };
        let what = format!("secret `{id}`");
        let output = call.send().await.map_err(|e| call_error(&what, e))?;
        Ok(Answer::new(output.secret_string, output.secret_binary))
    }

    /// Each of `ids` by its own `GetSecretValue`, all at once.
    async fn get_each(&self, client: &Client, ids: &[&str]) -> BTreeMap<String, Result<Answer, FetchError>> {
        let mut calls = tokio::task::JoinSet::new();
        for id in ids {
            let (client, id, version) = (client.clone(), (*id).to_owned(), self.version.clone());
            calls.spawn(async move { (id.clone(), Self::get_one(client, id, version).await) });
        }
        let mut answers = BTreeMap::new();
        while let Some(done) = calls.join_next().await {
            // A call task cannot panic short of a bug; its secret then gets no answer.
            if let Ok((id, answer)) = done {
                answers.insert(id, answer);
            }
        }
        answers
    }

    /// `ids` (at most [`MAX_BATCH`], no two alike) in one `BatchGetSecretValue`.
    async fn get_batch(&self, client: &Client, ids: &[&str]) -> BTreeMap<String, Result<Answer, FetchError>> {
        let list = ids.iter().map(|id| (*id).to_owned()).collect();
        let output = match client.batch_get_secret_value().set_secret_id_list(Some(list)).send().await {
            Ok(output) => output,
            Err(error) => {
                let error = call_error("BatchGetSecretValue", error);
                if matches!(error, FetchError::Denied(_)) {
                    return self.get_each(client, ids).await;
                }
                return ids.iter().map(|id| ((*id).to_owned(), Err(error.clone()))).collect();
            }
        };
        let mut answers = BTreeMap::new();
        for entry in output.secret_values.unwrap_or_default() {
            if let Some(name) = entry.name {
                answers.insert(name, Ok(Answer::new(entry.secret_string, entry.secret_binary)));
            }
        }
        for error in output.errors.unwrap_or_default() {
            if let Some(id) = error.secret_id {
                let what = format!("secret `{id}`");
                let failure =
                    service_error(&what, error.error_code.as_deref(), error.message.as_deref(), None);
                answers.insert(id, Err(failure));
            }
        }
        answers
    }
}

impl Backend for SecretsManager {
    fn locate(&self, root: &str, path: &str) -> Result<String, String> {
        super::locate(root, path, check_name)
    }

    fn fetch(&self, request: &FetchRequest) -> Result<SecretValue, FetchError> {
        super::only_answer(self.fetch_many(std::slice::from_ref(request)))
    }

    fn fetch_many(&self, requests: &[FetchRequest]) -> Vec<Result<SecretValue, FetchError>> {
        let Some(first) = requests.first() else { return Vec::new() };
        let mut ids: Vec<&str> = requests.iter().map(|r| r.location).collect();
        ids.sort_unstable();
        ids.dedup();
        let answers = self.client.call(
            &self.settings,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            first.timeout,
            Client::new,
            |client| async move {
                Ok(if ids.len() == 1 || !self.batches() {
                    self.get_each(&client, &ids).await
                } else {
                    self.get_batch(&client, &ids).await
                })
            },
        );
        let answers = match answers {
            Ok(answers) => answers,
            Err(error) => return requests.iter().map(|_| Err(error.clone())).collect(),
        };
        requests
            .iter()
            .map(|request| match answers.get(request.location) {
                Some(Ok(answer)) => answer.value(request.location, request.field),
                Some(Err(error)) => Err(error.clone()),
                None => Err(FetchError::Failed(format!(
                    "AWS answered without secret `{}` or an error for it",
                    request.location
                ))),
            })
            .collect()
    }

    fn max_batch(&self) -> NonZeroUsize {
        if self.batches() {
            NonZeroUsize::new(MAX_BATCH).unwrap_or(NonZeroUsize::MIN)
        } else {
            NonZeroUsize::MIN
        }
    }

    fn picks_fields(&self) -> bool {
        true
    }

    fn credential_variables(&self) -> &'static [&'static str] {
        super::CREDENTIAL_VARIABLES
    }

    fn program(&self) -> Option<String> {
        Some(self.settings.describe("Secrets Manager"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(string: &str) -> Answer {
        Answer::new(Some(string.to_owned()), None)
    }

    #[test]
    fn fields_pick_keys_of_a_json_string_and_never_quote_it() {
        let key = |k: &str| Field::Key(k.to_owned());
        let json = answer(r#"{"user": "bob", "password": "canary-v", "port": 5432}"#);
        assert_eq!(json.value("a", Some(&Field::Password)).unwrap().expose(), b"canary-v");
        assert_eq!(json.value("a", Some(&key("port"))).unwrap().expose(), b"5432");
        assert_eq!(json.value("a", None).unwrap().len(), 53);
        let FetchError::NotFound(message) = json.value("a", Some(&key("nope"))).unwrap_err() else {
            panic!()
        };
        assert_eq!(message, "secret `a` has no key `nope` (keys: `password`, `port`, `user`)");
        let FetchError::NotFound(message) = answer("canary-v").value("a", Some(&key("k"))).unwrap_err()
        else {
            panic!()
        };
        assert!(message.contains("is not one (the answer is not JSON"), "{message}");
        assert!(!message.contains("canary"), "{message}");
        let binary = Answer::new(None, Some(aws_sdk_secretsmanager::primitives::Blob::new(vec![0, 255])));
        assert_eq!(binary.value("b", None).unwrap().expose(), [0, 255]);
        assert!(binary.value("b", Some(&key("k"))).is_err());
    }

    #[test]
    fn names() {
        check_name("path", "mxm/red/db_pw+1=x.y@z-w").unwrap();
        for bad in ["a b", "a:b", "a%2e", "é"] {
            assert!(check_name("path", bad).is_err(), "{bad}");
        }
    }
}
