//! From requested names to values: authorize every name first (no backend is asked about a
//! name until all of them are allowed), then fetch the allowed ones concurrently.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use crate::backend::process::Environment;
use crate::backend::{FetchError, FetchRequest, SecretStore};
use crate::config::{Config, SecretRef};
use crate::error::{Error, FailureKind, SecretFailure};
use crate::identity::{Caller, Principal, RuntimeIdentity};
use crate::name::{Name, did_you_mean};
use crate::policy::Decision;
use crate::secret::SecretValue;
use crate::value;

/// At most this many fetches run at once, in the whole process, unless `--jobs` (or
/// [`set_process_fetch_limit`]) says otherwise: ten secrets cost about what the slowest
/// costs, and a manifest of hundreds does not start hundreds of gpg processes.
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

/// How one fetch ended, once the manifest's `optional` is applied.
#[derive(Debug)]
#[non_exhaustive]
pub enum Fetched {
    Value(SecretValue),
    /// Missing from its store, and every manifest entry for it is optional.
    Skipped,
    Failed(FailureKind),
}

/// A name and the judge's answer for it.
pub type Judged<'c> = (Name, Result<Authorized<'c>, FailureKind>);

/// Judges every name. Calls no backend.
pub(crate) fn judge_all<'c>(
    config: &'c Config,
    names: &[&Name],
    principal: &Principal,
    identity: &RuntimeIdentity,
    caller: &Caller,
) -> Vec<Judged<'c>> {
    names.iter().map(|name| ((*name).clone(), judge(config, name, principal, identity, caller))).collect()
}

/// All of them authorized, or an error listing every name that is undefined or denied.
pub(crate) fn all_allowed(judged: Vec<Judged<'_>>) -> Result<Vec<Authorized<'_>>, Error> {
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

/// A name the config does not define, with the closest one it does.
pub(crate) fn undefined(config: &Config, name: &str) -> FailureKind {
    let hint = did_you_mean(name, config.refs.names().map(Name::as_str));
    FailureKind::Undefined { hint: format!(" {}{hint}", config.source) }
}

/// One name: defined, allowed for this principal, identity and caller, and addressable in
/// its store.
pub(crate) fn judge<'c>(
    config: &'c Config,
    name: &Name,
    principal: &Principal,
    identity: &RuntimeIdentity,
    caller: &Caller,
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
    if let Decision::Denied(reason) = policy.evaluate(principal, identity, caller) {
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

/// The process-wide bound on backend calls, shared by every [`fetch_all`] in the process (a
/// supervisor re-fetching while a broker serves): at most [`set_process_fetch_limit`] calls
/// at once in all, and at most a store's [`concurrency`](SecretStore::concurrency) from it.
static PROCESS: FetchLimits = FetchLimits::new(MAX_CONCURRENT_FETCHES);

/// Sets how many backend calls may run at once in this process, across all fetches. A
/// one-shot launch sets it to its `--jobs`; a daemon to its own bound.
pub fn set_process_fetch_limit(limit: NonZeroUsize) {
    PROCESS.set_limit(limit);
}

/// Fetches every authorized secret, at most `jobs` calls at a time (at least one) for this
/// call, within the process-wide bound and each store's own, any program a backend runs
/// getting `environment`. A store's requests go to its backend in batches of its
/// [`max_batch`](crate::backend::Backend::max_batch), one [`fetch_many`] call per batch (one
/// secret per call for every backend that has no batch call). The results are in the order
/// of `requests`.
///
/// [`fetch_many`]: crate::backend::Backend::fetch_many
pub(crate) fn fetch_all<'c, A: Borrow<Authorized<'c>> + Sync>(
    requests: &[A],
    environment: &Environment,
    jobs: usize,
) -> Vec<Result<SecretValue, FailureKind>> {
    fetch_all_within(&PROCESS, requests, environment, jobs)
}

/// [`fetch_all`] under `limits`.
fn fetch_all_within<'c, A: Borrow<Authorized<'c>> + Sync>(
    limits: &FetchLimits,
    requests: &[A],
    environment: &Environment,
    jobs: usize,
) -> Vec<Result<SecretValue, FailureKind>> {
    let batches = batches(requests);
    let mut results: Vec<Option<Result<SecretValue, FailureKind>>> = requests.iter().map(|_| None).collect();
    if batches.len() == 1 {
        let _permit = limits.acquire(requests[batches[0][0]].borrow().store);
        for (index, result) in fetch_batch(requests, &batches[0], environment) {
            results[index] = Some(result);
        }
    } else if !batches.is_empty() {
        let pending = Mutex::new((0..batches.len()).collect::<Vec<usize>>());
        let store_of = |batch: usize| requests[batches[batch][0]].borrow().store;
        let worker = || {
            let mut done = Vec::new();
            while let Some((batch, _permit)) = limits.take(&pending, store_of) {
                done.extend(fetch_batch(requests, &batches[batch], environment));
            }
            done
        };
        thread::scope(|scope| {
            let workers: Vec<_> = (0..batches.len().min(jobs.max(1))).map(|_| scope.spawn(worker)).collect();
            for handle in workers {
                // A worker cannot panic short of a bug; its unfinished fetches then fail below.
                for (index, result) in handle.join().unwrap_or_default() {
                    results[index] = Some(result);
                }
            }
        });
    }
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

/// The requests (as indexes) grouped by store, in batches of at most the backend's
/// `max_batch`, in the order of their first request.
fn batches<'c, A: Borrow<Authorized<'c>>>(requests: &[A]) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    // Per store: its batch still taking requests.
    let mut open: Vec<(usize, usize)> = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let store = request.borrow().store;
        let identity = store.backend.identity();
        let room = store.backend.max_batch().get();
        match open.iter_mut().find(|(id, _)| *id == identity) {
            Some((_, batch)) if batches[*batch].len() < room => batches[*batch].push(index),
            Some((_, batch)) => {
                *batch = batches.len();
                batches.push(vec![index]);
            }
            None => {
                open.push((identity, batches.len()));
                batches.push(vec![index]);
            }
        }
    }
    batches
}

/// One backend call for a batch of one store's requests, and each result finished.
fn fetch_batch<'c, A: Borrow<Authorized<'c>>>(
    requests: &[A],
    batch: &[usize],
    environment: &Environment,
) -> Vec<(usize, Result<SecretValue, FailureKind>)> {
    let store = requests[batch[0]].borrow().store;
    let fetches: Vec<FetchRequest> = batch
        .iter()
        .map(|index| {
            let request = requests[*index].borrow();
            let secret = request.secret;
            store.request(&request.location.backend_path, secret.field.as_ref(), secret.version, environment)
        })
        .collect();
    let mut raw = store.backend.fetch_many(&fetches).into_iter();
    batch
        .iter()
        .map(|index| {
            // A backend that answers fewer requests than it was given fails the rest.
            let answer = raw.next().unwrap_or_else(|| {
                Err(FetchError::Failed("the backend gave no answer for this secret".to_owned()))
            });
            (*index, finish(requests[*index].borrow(), answer))
        })
        .collect()
}

/// How many backend calls run, in all and per store, under a bound for each; shared by
/// every fetch in the process ([`PROCESS`]), or by those of a test.
struct FetchLimits {
    state: Mutex<LimitState>,
    changed: Condvar,
}

struct LimitState {
    limit: usize,
    running: usize,
    /// Per store (by [`identity`](crate::backend::store::StoreBackend::identity)): calls running.
    stores: BTreeMap<usize, usize>,
}

impl FetchLimits {
    const fn new(limit: usize) -> FetchLimits {
        FetchLimits {
            state: Mutex::new(LimitState { limit, running: 0, stores: BTreeMap::new() }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LimitState> {
        // The state stays consistent whatever a panicking holder did: counts only.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_limit(&self, limit: NonZeroUsize) {
        self.lock().limit = limit.get();
        self.changed.notify_all();
    }

    /// Whether a call to `store` may start now.
    fn room(state: &LimitState, store: &SecretStore) -> bool {
        let running = state.stores.get(&store.backend.identity()).copied().unwrap_or(0);
        state.running < state.limit && store.concurrency().is_none_or(|bound| running < bound.get())
    }

    fn start<'l>(&'l self, state: &mut LimitState, store: &SecretStore) -> Permit<'l> {
        let identity = store.backend.identity();
        state.running += 1;
        *state.stores.entry(identity).or_insert(0) += 1;
        Permit { limits: self, store: identity }
    }

    /// Waits until a call to `store` may start.
    fn acquire(&self, store: &SecretStore) -> Permit<'_> {
        let mut state = self.lock();
        while !Self::room(&state, store) {
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        self.start(&mut state, store)
    }

    /// The first of `pending` whose store has room, once one has; `None` when none is left.
    fn take<'l, 's>(
        &'l self,
        pending: &Mutex<Vec<usize>>,
        store_of: impl Fn(usize) -> &'s SecretStore,
    ) -> Option<(usize, Permit<'l>)> {
        let mut state = self.lock();
        loop {
            {
                let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
                if pending.is_empty() {
                    return None;
                }
                if let Some(position) = pending.iter().position(|b| Self::room(&state, store_of(*b))) {
                    let batch = pending.remove(position);
                    return Some((batch, self.start(&mut state, store_of(batch))));
                }
            }
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A call under way; its counts go down when it ends, even by a panic, so that no worker
/// waits for ever on a store that has room.
struct Permit<'l> {
    limits: &'l FetchLimits,
    store: usize,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.limits.lock();
        state.running -= 1;
        if let Some(running) = state.stores.get_mut(&self.store) {
            *running -= 1;
            if *running == 0 {
                state.stores.remove(&self.store);
            }
        }
        drop(state);
        self.limits.changed.notify_all();
    }
}

/// A backend's answer for one secret, as the run sees it: its failure in the run's words,
/// or the value with the ref's `field` (unless the backend picked it) and `trim` applied.
fn finish(request: &Authorized, answer: Result<SecretValue, FetchError>) -> Result<SecretValue, FailureKind> {
    let store = request.location.store.clone();
    let secret = request.secret;
    let raw = answer.map_err(|e| match e {
        FetchError::NotFound(detail) => FailureKind::NotFound { store: store.clone(), detail },
        FetchError::Failed(detail) => FailureKind::Unavailable { store: store.clone(), detail },
        FetchError::TimedOut => FailureKind::TimedOut { store: store.clone(), after: request.store.timeout },
        FetchError::Denied(detail) => FailureKind::ServiceDenied { store: store.clone(), detail },
        FetchError::Misconfigured(detail) => FailureKind::Misconfigured { store: store.clone(), detail },
        FetchError::Throttled(detail) => FailureKind::Throttled { store: store.clone(), detail },
    })?;
    let field = if request.store.backend.picks_fields() { None } else { secret.field.as_ref() };
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::backend::store::StoreBackend;
    use crate::backend::{Backend, FetchRequest};
    use crate::policy::DenyReason;
    use crate::value::Trim;

    /// Judging then all-or-nothing, as the pipeline's entry does it.
    fn authorize<'c>(
        config: &'c Config,
        names: &[&Name],
        principal: &Principal,
        identity: &RuntimeIdentity,
    ) -> Result<Vec<Authorized<'c>>, Error> {
        all_allowed(judge_all(config, names, principal, identity, &nobody_special()))
    }

    /// A caller no policy of these tests names: uid and gid 1000, no unit.
    fn nobody_special() -> Caller {
        Caller { uid: 1000, gid: 1000, groups: vec![], unit: None }
    }

    /// One request through [`fetch_all`], the only way values are fetched.
    fn fetch(request: &Authorized, environment: &Environment) -> Result<SecretValue, FailureKind> {
        fetch_all(std::slice::from_ref(request), environment, 1).remove(0)
    }

    /// An in-memory store that counts how many calls run at once (here and in the process
    /// of the test, through `shared`), and records the size of every call.
    #[derive(Debug, Default)]
    struct Counting {
        batch: usize,
        running: AtomicUsize,
        peak: AtomicUsize,
        shared: Option<Arc<(AtomicUsize, AtomicUsize)>>,
        calls: Mutex<Vec<usize>>,
    }

    impl Backend for Counting {
        fn locate(&self, root: &str, path: &str) -> Result<String, String> {
            Ok(format!("{root}/{path}"))
        }

        fn fetch(&self, _: &FetchRequest) -> Result<SecretValue, FetchError> {
            unreachable!("fetch_all calls fetch_many")
        }

        fn fetch_many(&self, requests: &[FetchRequest]) -> Vec<Result<SecretValue, FetchError>> {
            let count = |running: &AtomicUsize, peak: &AtomicUsize| {
                peak.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            };
            count(&self.running, &self.peak);
            if let Some(shared) = &self.shared {
                count(&shared.0, &shared.1);
            }
            self.calls.lock().unwrap().push(requests.len());
            thread::sleep(Duration::from_millis(30));
            self.running.fetch_sub(1, Ordering::SeqCst);
            if let Some(shared) = &self.shared {
                shared.0.fetch_sub(1, Ordering::SeqCst);
            }
            requests
                .iter()
                .map(|r| match r.location.strip_suffix("/missing") {
                    Some(_) => Err(FetchError::NotFound("no such entry".to_owned())),
                    None => Ok(SecretValue::new(format!("value of {}", r.location).into_bytes())),
                })
                .collect()
        }

        fn max_batch(&self) -> NonZeroUsize {
            NonZeroUsize::new(self.batch).unwrap_or(NonZeroUsize::MIN)
        }
    }

    fn store(backend: &Arc<Counting>, max_concurrent: Option<usize>) -> SecretStore {
        SecretStore {
            root: "r".to_owned(),
            timeout: Duration::from_secs(5),
            backend: StoreBackend::new("memory", Arc::clone(backend) as Arc<dyn Backend>),
            max_concurrent: max_concurrent.and_then(NonZeroUsize::new),
        }
    }

    fn secret(path: &str) -> SecretRef {
        SecretRef {
            store: Name::new("s").unwrap(),
            path: path.to_owned(),
            policy: Name::new("p").unwrap(),
            field: None,
            trim: Trim::None,
            version: None,
        }
    }

    fn authorized<'c>(store: &'c SecretStore, secret: &'c SecretRef) -> Authorized<'c> {
        Authorized {
            secret,
            store,
            location: ResolvedSecretLocation {
                secret: Name::new("x").unwrap(),
                store: Name::new("s").unwrap(),
                backend: "memory",
                backend_path: store.locate(&secret.path).unwrap(),
            },
        }
    }

    fn text(result: &Result<SecretValue, FailureKind>) -> String {
        match result {
            Ok(value) => String::from_utf8(value.expose().to_vec()).unwrap(),
            Err(e) => format!("{e:?}"),
        }
    }

    /// Two rounds of fetches at once (a supervisor re-fetching while a broker serves) share
    /// the process's bound: 3 in all, though each round may run 3 itself.
    #[test]
    fn the_bound_is_shared_by_every_round_in_the_process() {
        let limits = FetchLimits::new(3);
        let shared = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let backends: Vec<Arc<Counting>> = (0..2)
            .map(|_| Arc::new(Counting { shared: Some(Arc::clone(&shared)), ..Counting::default() }))
            .collect();
        let stores: Vec<SecretStore> = backends.iter().map(|b| store(b, None)).collect();
        let secrets: Vec<SecretRef> = (0..6).map(|i| secret(&format!("p{i}"))).collect();
        thread::scope(|scope| {
            for store in &stores {
                let (limits, secrets) = (&limits, &secrets);
                scope.spawn(move || {
                    let requests: Vec<Authorized> = secrets.iter().map(|s| authorized(store, s)).collect();
                    let results = fetch_all_within(limits, &requests, &Environment::default(), 3);
                    assert_eq!(text(&results[5]), "value of r/p5");
                });
            }
        });
        assert_eq!(shared.1.load(Ordering::SeqCst), 3, "the process-wide bound 3");
        for backend in &backends {
            assert!(backend.peak.load(Ordering::SeqCst) <= 3);
        }
    }

    /// `--jobs` bounds one round under a larger process bound, and a store's bound holds
    /// across rounds.
    #[test]
    fn jobs_bound_a_round_and_a_store_bound_holds_across_rounds() {
        let limits = FetchLimits::new(8);
        let backend = Arc::new(Counting::default());
        let one = store(&backend, None);
        let secrets: Vec<SecretRef> = (0..6).map(|i| secret(&format!("p{i}"))).collect();
        let requests: Vec<Authorized> = secrets.iter().map(|s| authorized(&one, s)).collect();
        fetch_all_within(&limits, &requests, &Environment::default(), 2);
        assert_eq!(backend.peak.load(Ordering::SeqCst), 2);

        let bounded = Arc::new(Counting::default());
        let two = store(&bounded, Some(2));
        thread::scope(|scope| {
            for _ in 0..3 {
                let (limits, secrets, two) = (&limits, &secrets, &two);
                scope.spawn(move || {
                    let requests: Vec<Authorized> = secrets.iter().map(|s| authorized(two, s)).collect();
                    fetch_all_within(limits, &requests, &Environment::default(), 8);
                });
            }
        });
        assert_eq!(bounded.peak.load(Ordering::SeqCst), 2, "max_concurrent 2, over three rounds");
        assert_eq!(limits.lock().running, 0);
        assert!(limits.lock().stores.is_empty());
    }

    /// A backend with a batch call gets one call per batch of its size; one without gets one
    /// call per secret. Results stay in request order, failures at their own secret.
    #[test]
    fn a_batched_backend_costs_one_call_per_batch() {
        let limits = FetchLimits::new(8);
        let batched = Arc::new(Counting { batch: 3, ..Counting::default() });
        let single = Arc::new(Counting::default());
        let (a, b) = (store(&batched, None), store(&single, None));
        let secrets: Vec<SecretRef> =
            (0..7).map(|i| secret(&if i == 4 { "missing".to_owned() } else { format!("p{i}") })).collect();
        let requests: Vec<Authorized> = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| authorized(if i % 3 == 2 { &b } else { &a }, s))
            .collect();
        let results = fetch_all_within(&limits, &requests, &Environment::default(), 8);
        let shown: Vec<String> = results.iter().map(text).collect();
        assert_eq!(shown[0], "value of r/p0");
        assert_eq!(shown[2], "value of r/p2");
        assert!(shown[4].starts_with("NotFound"), "{}", shown[4]);
        assert_eq!(shown[6], "value of r/p6");
        let mut calls = batched.calls.lock().unwrap().clone();
        calls.sort_unstable();
        assert_eq!(calls, [2, 3], "secrets 0 1 3 4 6 of store a: batches of 3");
        assert_eq!(*single.calls.lock().unwrap(), [1, 1], "secrets 2 and 5 of store b, one call each");
    }

    /// A config on the test-only `memory` backend: no process anywhere.
    const MEMORY: &str = "\
stores:
  mem:
    backend: memory
    root: m
    values: {a: alpha, b: beta, blank: '', entry: \"pw\\nuser: u\\n\"}
    failures: {gone: not_found, broken: failed, slow: timed_out, refused: denied, odd: misconfigured}
refs:
  open: {store: mem, path: a, policy: everyone, trim: none}
  other: {store: mem, path: b, policy: everyone, trim: none}
  blank: {store: mem, path: blank, policy: everyone}
  user: {store: mem, path: entry, policy: everyone, field: user}
  nouser: {store: mem, path: entry, policy: everyone, field: nobody}
  gone: {store: mem, path: gone, policy: everyone}
  broken: {store: mem, path: broken, policy: everyone}
  slow: {store: mem, path: slow, policy: everyone}
  refused: {store: mem, path: refused, policy: everyone}
  odd: {store: mem, path: odd, policy: everyone}
  dev: {store: mem, path: a, policy: dev_only}
  bridge: {store: mem, path: a, policy: on_bridge}
  closed: {store: mem, path: a, policy: nobody}
policies:
  everyone: {allowed_principals: [worker, human_admin]}
  dev_only: {allowed_principals: [worker], environments: [dev]}
  on_bridge: {allowed_principals: [worker], machines: [bridge]}
  nobody: {allowed_principals: []}
principals:
  - {principal: human_admin, role: admin, environment: dev}
";

    fn config() -> Config {
        Config::parse(MEMORY, "memory.yaml").unwrap()
    }

    fn name(text: &str) -> Name {
        Name::new(text).unwrap()
    }

    /// The judge's answer for `secret`, asked by (role, environment, machine).
    fn judged(
        config: &Config,
        secret: &str,
        who: (&str, Option<&str>, Option<&str>),
    ) -> Result<String, FailureKind> {
        let identity = RuntimeIdentity::declared(who.0, who.1, who.2, None, None).unwrap();
        judged_as(config, secret, &identity, &nobody_special())
    }

    /// The judge's answer for `secret`, asked by `identity` from `caller`.
    fn judged_as(
        config: &Config,
        secret: &str,
        identity: &RuntimeIdentity,
        caller: &Caller,
    ) -> Result<String, FailureKind> {
        let principal = crate::identity::derive_principal(&config.principals, identity, caller);
        judge(config, &name(secret), &principal, identity, caller).map(|a| {
            assert_eq!(a.location.secret, name(secret));
            format!("{}:{}:{}", a.location.store, a.location.backend, a.location.backend_path)
        })
    }

    fn denial(result: Result<String, FailureKind>) -> (String, String, DenyReason) {
        match result {
            Err(FailureKind::Denied { principal, policy, reason }) => {
                (principal.to_string(), policy.to_string(), reason)
            }
            other => panic!("not denied: {other:?}"),
        }
    }

    #[test]
    fn the_judge_allows_and_locates() {
        let config = config();
        assert_eq!(judged(&config, "open", ("worker", None, None)).unwrap(), "mem:memory:a");
        assert_eq!(judged(&config, "dev", ("worker", Some("dev"), None)).unwrap(), "mem:memory:a");
        assert_eq!(judged(&config, "bridge", ("worker", None, Some("bridge"))).unwrap(), "mem:memory:a");
        // A rule's principal is what the identity speaks as.
        assert_eq!(judged(&config, "open", ("admin", Some("dev"), None)).unwrap(), "mem:memory:a");
    }

    #[test]
    fn the_judge_names_an_undefined_secret_and_the_closest_one() {
        let Err(FailureKind::Undefined { hint }) = judged(&config(), "opne", ("worker", None, None)) else {
            panic!("not undefined")
        };
        assert!(hint.contains("memory.yaml"), "{hint}");
        assert!(hint.contains("did you mean `open`?"), "{hint}");
    }

    #[test]
    fn the_judge_denies_with_each_reason() {
        use crate::policy::DenyReason::*;
        let config = config();
        let (principal, policy, reason) = denial(judged(&config, "open", ("intruder", None, None)));
        assert_eq!((principal.as_str(), policy.as_str()), ("intruder", "everyone"));
        assert_eq!(reason, PrincipalNotAllowed { allowed: vec![name("worker"), name("human_admin")] });
        let (_, policy, reason) = denial(judged(&config, "closed", ("worker", None, None)));
        assert_eq!((policy.as_str(), reason), ("nobody", PrincipalNotAllowed { allowed: vec![] }));
        let (_, _, reason) = denial(judged(&config, "dev", ("worker", Some("prod"), None)));
        assert_eq!(
            reason,
            EnvironmentNotAllowed { declared: Some("prod".into()), allowed: vec!["dev".into()] }
        );
        let (_, _, reason) = denial(judged(&config, "dev", ("worker", None, None)));
        assert_eq!(reason, EnvironmentNotAllowed { declared: None, allowed: vec!["dev".into()] });
        let (_, _, reason) = denial(judged(&config, "bridge", ("worker", None, Some("laptop"))));
        assert_eq!(
            reason,
            MachineNotAllowed { declared: Some("laptop".into()), allowed: vec!["bridge".into()] }
        );
        let (_, _, reason) = denial(judged(&config, "bridge", ("worker", Some("dev"), None)));
        assert_eq!(reason, MachineNotAllowed { declared: None, allowed: vec!["bridge".into()] });
        // `--role human_admin` in prod does not walk around the rule that makes it.
        let (principal, _, reason) = denial(judged(&config, "open", ("human_admin", Some("prod"), None)));
        assert_eq!(principal, "human_admin");
        assert_eq!(reason, ReservedPrincipal { principal: name("human_admin"), rule: 0 });
    }

    /// `users`, `groups`, `units` and the rules' `user` / `unit` decide by the caller's facts,
    /// through the same judge; the config names users by name and number (root is uid 0).
    #[test]
    fn the_judge_decides_by_the_callers_facts() {
        use crate::policy::DenyReason::*;
        let config = Config::parse(
            "stores: {mem: {backend: memory, root: m, values: {a: alpha}}}
refs:
  by_user: {store: mem, path: a, policy: users}
  by_group: {store: mem, path: a, policy: groups}
  by_unit: {store: mem, path: a, policy: units}
policies:
  users: {allowed_principals: [worker, feed, ops], users: [root, 4000000]}
  groups: {allowed_principals: [worker], groups: [4000010]}
  units: {allowed_principals: [worker, feed], units: [feed.service]}
principals:
  - {principal: feed, unit: feed.service}
  - {principal: ops, user: 4000001}
",
            "facts.yaml",
        )
        .unwrap();
        let worker = RuntimeIdentity::new("worker").unwrap();
        let who = |uid: u32, groups: &[u32], unit: Option<&str>| Caller {
            uid,
            gid: 4_000_020,
            groups: groups.to_vec(),
            unit: unit.map(str::to_owned),
        };
        assert!(judged_as(&config, "by_user", &worker, &who(4_000_000, &[], None)).is_ok());
        assert!(judged_as(&config, "by_user", &worker, &who(0, &[], None)).is_ok());
        let (_, policy, reason) = denial(judged_as(&config, "by_user", &worker, &who(4_000_002, &[], None)));
        assert_eq!(policy, "users");
        assert!(matches!(reason, UserNotAllowed { uid: 4_000_002, .. }), "{reason:?}");
        assert!(judged_as(&config, "by_group", &worker, &who(7, &[1, 4_000_010], None)).is_ok());
        let (_, _, reason) = denial(judged_as(&config, "by_group", &worker, &who(7, &[1], None)));
        assert!(matches!(reason, GroupNotAllowed { gid: 4_000_020, .. }), "{reason:?}");
        assert!(judged_as(&config, "by_unit", &worker, &who(7, &[], Some("feed.service"))).is_ok());
        let (_, _, reason) = denial(judged_as(&config, "by_unit", &worker, &who(7, &[], None)));
        assert_eq!(reason, UnitNotAllowed { unit: None, allowed: vec!["feed.service".into()] });
        // A rule on the user gives its principal; the policy's users still narrow it.
        let (principal, _, reason) =
            denial(judged_as(&config, "by_user", &worker, &who(4_000_001, &[], None)));
        assert_eq!(principal, "ops");
        assert!(matches!(reason, UserNotAllowed { uid: 4_000_001, .. }), "{reason:?}");
        // systemd's credential request: the unit alone, through its rule, or nothing.
        let unit_only = RuntimeIdentity::unit_only();
        assert!(judged_as(&config, "by_unit", &unit_only, &who(0, &[], Some("feed.service"))).is_ok());
        let (principal, _, reason) =
            denial(judged_as(&config, "by_unit", &unit_only, &who(0, &[], Some("cron.service"))));
        assert_eq!(principal, "none");
        assert_eq!(reason, NoRuleForUnit { unit: Some("cron.service".into()) });
        // uid 0 is allowed by `users: [root]`, yet a credential request (uid 0) without a
        // unit rule gets nothing from it.
        let (_, _, reason) =
            denial(judged_as(&config, "by_user", &unit_only, &who(0, &[], Some("cron.service"))));
        assert_eq!(reason, NoRuleForUnit { unit: Some("cron.service".into()) });
    }

    /// Loading checks that every ref's policy and store exist; a library caller can build a
    /// `Config` that breaks that, and the judge must then deny, never allow.
    #[test]
    fn a_hand_built_config_missing_the_policy_or_store_is_refused() {
        let mut config = config();
        let stranger = Config::parse(
            "stores: {x: {backend: memory, root: x}}\nrefs: {}\npolicies: {unrelated: {allowed_principals: [worker]}}\n",
            "other.yaml",
        )
        .unwrap();
        config.policies = stranger.policies.clone();
        let (principal, policy, reason) = denial(judged(&config, "open", ("worker", None, None)));
        assert_eq!((principal.as_str(), policy.as_str()), ("worker", "everyone"));
        assert_eq!(reason, DenyReason::PrincipalNotAllowed { allowed: vec![] });

        let mut config = self::config();
        config.stores = stranger.stores.clone();
        match judged(&config, "open", ("worker", None, None)) {
            Err(FailureKind::Unavailable { store, detail }) => {
                assert_eq!((store.as_str(), detail.as_str()), ("mem", "the store is not defined"));
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    /// Every name is judged, in order; `all_allowed` (and `authorize`) lists every refusal at
    /// its own name, and passes the allowed ones through only when nothing was refused.
    #[test]
    fn every_refusal_is_listed_at_its_name() {
        let config = config();
        let identity = RuntimeIdentity::new("worker").unwrap();
        let principal = Principal::of_role(&identity);
        let names = [name("open"), name("closed"), name("missing"), name("other"), name("dev")];
        let refs: Vec<&Name> = names.iter().collect();
        let judged = judge_all(&config, &refs, &principal, &identity, &nobody_special());
        let order: Vec<&str> = judged.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(order, ["open", "closed", "missing", "other", "dev"]);
        let Err(Error::Secrets(failures)) = all_allowed(judged) else { panic!("allowed") };
        let listed: Vec<(&str, u8)> =
            failures.iter().map(|f| (f.name.as_str(), f.kind.exit_code())).collect();
        assert_eq!(listed, [("closed", 77), ("missing", 65), ("dev", 77)]);
        assert!(authorize(&config, &refs, &principal, &identity).is_err());

        let allowed = authorize(&config, &[&names[3], &names[0]], &principal, &identity).unwrap();
        let paths: Vec<&str> = allowed.iter().map(|a| a.location.secret.as_str()).collect();
        assert_eq!(paths, ["other", "open"]);
        assert!(authorize(&config, &[], &principal, &identity).unwrap().is_empty());
    }

    fn all_of<'c>(config: &'c Config, names: &[&str]) -> Vec<Authorized<'c>> {
        let identity = RuntimeIdentity::new("worker").unwrap();
        let principal = Principal::of_role(&identity);
        let names: Vec<Name> = names.iter().map(|n| name(n)).collect();
        let refs: Vec<&Name> = names.iter().collect();
        authorize(config, &refs, &principal, &identity).unwrap()
    }

    /// Each backend failure becomes the run's failure of its kind, at its own secret; the
    /// others are fetched all the same, in request order, with `field` applied.
    #[test]
    fn fetch_all_keeps_order_and_maps_every_failure() {
        let config = config();
        let names = ["other", "gone", "broken", "open", "slow", "refused", "odd", "blank", "user", "nouser"];
        let requests = all_of(&config, &names);
        let results = fetch_all_within(&FetchLimits::new(8), &requests, &Environment::default(), 3);
        let shown: Vec<String> = results
            .iter()
            .map(|r| match r {
                Ok(value) => String::from_utf8(value.expose().to_vec()).unwrap(),
                Err(kind) => format!("{}", kind.exit_code()),
            })
            .collect();
        assert_eq!(shown, ["beta", "66", "69", "alpha", "75", "77", "78", "69", "u", "66"]);
        let Err(FailureKind::TimedOut { store, after }) = &results[4] else { panic!() };
        assert_eq!((store.as_str(), *after), ("mem", crate::backend::DEFAULT_TIMEOUT));
        let Err(FailureKind::Unavailable { detail, .. }) = &results[7] else { panic!() };
        assert_eq!(detail, "the value is empty");
        let Err(FailureKind::NotFound { detail, .. }) = &results[9] else { panic!() };
        assert_eq!(detail, "the entry has no field `nobody`");
        // One request: no worker thread, same answer.
        let one = fetch_all_within(&FetchLimits::new(1), &requests[..1], &Environment::default(), 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].as_ref().unwrap().expose(), b"beta");
        assert!(fetch_all(&requests[..0], &Environment::default(), 4).is_empty());
        // `fetch_all`, under the process-wide bound, answers the same as under a test's own.
        let shown: Vec<Result<Vec<u8>, u8>> = fetch_all(&requests[..4], &Environment::default(), 2)
            .iter()
            .map(|r| r.as_ref().map(|v| v.expose().to_vec()).map_err(FailureKind::exit_code))
            .collect();
        assert_eq!(shown, [Ok(b"beta".to_vec()), Err(66), Err(69), Ok(b"alpha".to_vec())]);
        // `fetch` (one secret, outside a round) answers the same.
        assert_eq!(fetch(&requests[3], &Environment::default()).unwrap().expose(), b"alpha");
        assert_eq!(fetch(&requests[1], &Environment::default()).unwrap_err().exit_code(), 66);
    }

    #[test]
    fn the_memory_backend_is_for_tests_only() {
        assert!(!crate::backend::BACKENDS.contains(&"memory"));
        let text = MEMORY.replace("values:", "value:");
        let error = Config::parse(&text, "memory.yaml").unwrap_err().to_string();
        assert!(error.contains("value"), "{error}");
    }

    /// `--jobs` sets the process-wide bound (other tests' fetches may run meanwhile, under
    /// whichever bound they meet: both are at least one).
    #[test]
    fn the_process_bound_is_set_by_its_setter() {
        set_process_fetch_limit(NonZeroUsize::new(5).unwrap());
        assert_eq!(PROCESS.lock().limit, 5);
        set_process_fetch_limit(NonZeroUsize::new(MAX_CONCURRENT_FETCHES).unwrap());
        assert_eq!(PROCESS.lock().limit, MAX_CONCURRENT_FETCHES);
    }
}
