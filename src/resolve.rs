//! From requested names to values: authorize every name first (no backend is asked about a
//! name until all of them are allowed), then fetch the allowed ones concurrently.

use std::borrow::Borrow;
use std::num::NonZeroUsize;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use crate::backend::process::Environment;
use crate::backend::{FetchError, SecretStore};
use crate::config::{Config, SecretRef};
use crate::error::{Error, FailureKind, SecretFailure};
use crate::identity::{Principal, RuntimeIdentity};
use crate::name::{Name, did_you_mean};
use crate::policy::Decision;
use crate::secret::SecretValue;
use crate::value;

/// At most this many fetches run at once unless `--jobs` says otherwise: ten secrets cost
/// about what the slowest costs, and a manifest of hundreds does not start hundreds of gpg
/// processes.
pub const MAX_CONCURRENT_FETCHES: usize = 8;

/// Where an authorized secret lives. Shown to operators by diagnostics; never to the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSecretLocation {
    pub secret: Name,
    pub store: Name,
    pub backend: &'static str,
    pub backend_path: String,
}

/// A name that the policy allows, with everything needed to fetch it.
#[derive(Debug)]
pub struct Authorized<'c> {
    pub secret: &'c SecretRef,
    pub store: &'c SecretStore,
    pub location: ResolvedSecretLocation,
}

/// A name and the judge's answer for it.
pub type Judged<'c> = (Name, Result<Authorized<'c>, FailureKind>);

/// Judges every name. Calls no backend.
pub fn judge_all<'c>(
    config: &'c Config,
    names: &[&Name],
    principal: &Principal,
    identity: &RuntimeIdentity,
) -> Vec<Judged<'c>> {
    names.iter().map(|name| ((*name).clone(), judge(config, name, principal, identity))).collect()
}

/// All of them authorized, or an error listing every name that is undefined or denied.
pub fn all_allowed(judged: Vec<Judged<'_>>) -> Result<Vec<Authorized<'_>>, Error> {
    let mut allowed = Vec::with_capacity(judged.len());
    let mut failures = Vec::new();
    for (name, result) in judged {
        match result {
            Ok(authorized) => allowed.push(authorized),
            Err(kind) => failures.push(SecretFailure { name: name.to_string(), kind }),
        }
    }
    if failures.is_empty() { Ok(allowed) } else { Err(Error::Secrets(failures)) }
}

/// [`judge_all`] then [`all_allowed`].
pub fn authorize<'c>(
    config: &'c Config,
    names: &[&Name],
    principal: &Principal,
    identity: &RuntimeIdentity,
) -> Result<Vec<Authorized<'c>>, Error> {
    all_allowed(judge_all(config, names, principal, identity))
}

/// A name the config does not define, with the closest one it does.
pub fn undefined(config: &Config, name: &str) -> FailureKind {
    let hint = did_you_mean(name, config.refs.names().map(Name::as_str));
    FailureKind::Undefined { hint: format!(" {}{hint}", config.source) }
}

/// One name: defined, allowed for this principal and identity, and addressable in its store.
pub fn judge<'c>(
    config: &'c Config,
    name: &Name,
    principal: &Principal,
    identity: &RuntimeIdentity,
) -> Result<Authorized<'c>, FailureKind> {
    let Some(secret) = config.refs.get(name.as_str()) else {
        return Err(undefined(config, name.as_str()));
    };
    // Config loading checked both references; a miss here is a library caller's hand-built
    // Config, and denying is the safe answer.
    let denied = |reason| FailureKind::Denied {
        principal: principal.name.clone(),
        policy: secret.policy.clone(),
        reason,
    };
    let policy = config
        .policies
        .get(secret.policy.as_str())
        .ok_or_else(|| denied(crate::policy::DenyReason::PrincipalNotAllowed { allowed: Vec::new() }))?;
    if let Decision::Denied(reason) = policy.evaluate(principal, identity) {
        return Err(denied(reason));
    }
    let store = config.stores.get(secret.store.as_str()).ok_or_else(|| FailureKind::Unavailable {
        store: secret.store.clone(),
        detail: "the store is not defined".to_owned(),
    })?;
    let backend_path = store
        .locate(&secret.path)
        .map_err(|detail| FailureKind::Unavailable { store: secret.store.clone(), detail })?;
    let location = ResolvedSecretLocation {
        secret: name.clone(),
        store: secret.store.clone(),
        backend: store.backend.name(),
        backend_path,
    };
    Ok(Authorized { secret, store, location })
}

/// Fetches every authorized secret, at most `jobs` at a time (at least one) and at most a
/// store's `max_concurrent` at a time from that store, any program a backend runs getting
/// `environment`. The results are in the order of `requests`.
pub fn fetch_all<'c, A: Borrow<Authorized<'c>> + Sync>(
    requests: &[A],
    environment: &Environment,
    jobs: usize,
) -> Vec<Result<SecretValue, FailureKind>> {
    if requests.len() <= 1 {
        return requests.iter().map(|r| fetch(r.borrow(), environment)).collect();
    }
    let queue = Queue::new(requests.iter().map(|r| r.borrow().store.max_concurrent).collect(), requests);
    let worker = || {
        let mut done = Vec::new();
        while let Some(slot) = queue.take() {
            done.push((slot.index, fetch(requests[slot.index].borrow(), environment)));
        }
        done
    };
    let mut results: Vec<Option<Result<SecretValue, FailureKind>>> = requests.iter().map(|_| None).collect();
    thread::scope(|scope| {
        let workers: Vec<_> = (0..requests.len().min(jobs.max(1))).map(|_| scope.spawn(worker)).collect();
        for handle in workers {
            // A worker cannot panic short of a bug; its unfinished fetches then fail below.
            for (index, result) in handle.join().unwrap_or_default() {
                results[index] = Some(result);
            }
        }
    });
    results
        .into_iter()
        .zip(requests)
        .map(|(result, request)| {
            result.unwrap_or_else(|| {
                Err(FailureKind::Unavailable {
                    store: request.borrow().location.store.clone(),
                    detail: "the fetch stopped unexpectedly".to_owned(),
                })
            })
        })
        .collect()
}

/// The fetches not yet started, and how many run per store: a worker takes the first one
/// whose store has room, or waits until a fetch of a full store ends.
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
    /// Per request: its store (as an index into `limits`).
    store_of: Vec<usize>,
    limits: Vec<Option<NonZeroUsize>>,
}

struct QueueState {
    pending: Vec<usize>,
    running: Vec<usize>,
}

impl Queue {
    fn new<'c, A: Borrow<Authorized<'c>>>(bounds: Vec<Option<NonZeroUsize>>, requests: &[A]) -> Queue {
        let mut stores: Vec<&str> = Vec::new();
        let mut limits = Vec::new();
        let store_of = requests
            .iter()
            .zip(bounds)
            .map(|(request, bound)| {
                let store = request.borrow().location.store.as_str();
                stores.iter().position(|s| *s == store).unwrap_or_else(|| {
                    stores.push(store);
                    limits.push(bound);
                    stores.len() - 1
                })
            })
            .collect();
        let state = QueueState { pending: (0..requests.len()).collect(), running: vec![0; stores.len()] };
        Queue { state: Mutex::new(state), changed: Condvar::new(), store_of, limits }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state stays consistent whatever a panicking holder did: counts only.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next request to fetch, or `None` when every one has been taken.
    fn take(&self) -> Option<Slot<'_>> {
        let mut state = self.lock();
        loop {
            if state.pending.is_empty() {
                return None;
            }
            let room = |index: &usize| {
                let store = self.store_of[*index];
                self.limits[store].is_none_or(|limit| state.running[store] < limit.get())
            };
            if let Some(position) = state.pending.iter().position(room) {
                let index = state.pending.remove(position);
                state.running[self.store_of[index]] += 1;
                return Some(Slot { queue: self, index });
            }
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A fetch under way; its store's count goes down when it ends, even by a panic, so that no
/// worker waits for ever on a store that has room.
struct Slot<'q> {
    queue: &'q Queue,
    index: usize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.queue.lock().running[self.queue.store_of[self.index]] -= 1;
        self.queue.changed.notify_all();
    }
}

/// One secret: ask the backend (any program it runs gets `environment`), then apply the
/// ref's `field` (unless the backend picked it) and `trim`.
pub fn fetch(request: &Authorized, environment: &Environment) -> Result<SecretValue, FailureKind> {
    let store = request.location.store.clone();
    let secret = request.secret;
    let raw = request
        .store
        .fetch(&request.location.backend_path, secret.field.as_ref(), secret.version, environment)
        .map_err(|e| match e {
            FetchError::NotFound(detail) => FailureKind::NotFound { store: store.clone(), detail },
            FetchError::Failed(detail) => FailureKind::Unavailable { store: store.clone(), detail },
            FetchError::TimedOut => {
                FailureKind::TimedOut { store: store.clone(), after: request.store.timeout }
            }
            FetchError::Denied(detail) => FailureKind::ServiceDenied { store: store.clone(), detail },
            FetchError::Misconfigured(detail) => FailureKind::Misconfigured { store: store.clone(), detail },
        })?;
    let field = if request.store.backend.as_backend().picks_fields() { None } else { secret.field.as_ref() };
    let value = value::extract(&raw, field, secret.trim).ok_or_else(|| FailureKind::NotFound {
        store: store.clone(),
        detail: format!("the entry has no field `{}`", field.map_or("", value::Field::key)),
    })?;
    // An empty secret is almost always a broken store or a wrong `field`; injecting "" would
    // let the program start and fail later, far from the cause.
    if value.is_empty() {
        return Err(FailureKind::Unavailable { store, detail: "the value is empty".to_owned() });
    }
    Ok(value)
}
