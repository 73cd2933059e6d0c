//! mxm-secrets: authorize, fetch and inject secrets, then exec the program that needs them.
//!
//! The pipeline, one module per step (read [`run::run`] top to bottom first):
//!
//! ```text
//! config   --load + validate-->  Config (stores, refs, policies, principal rules)
//! manifest --load + validate-->  the names a program needs and where they go
//! identity --derive----------->  Principal
//! policy   --judge every name->  all allowed, or an error naming every denied one
//! resolve  --fetch allowed---->  values, concurrently, each backend with its timeout
//! inject   --build------------>  the child's environment and sealed memfd descriptors
//! exec     --replace us------->  the program, same PID, nothing of ours left
//! ```
//!
//! Beside the pipeline: `backend/*` (one file per store kind behind one trait), `value`
//! (`field` and `trim`), `audit` (records on stderr), `diagnose` (check, explain, list),
//! `api` (the one entry of the pipeline, judge -> audit -> fetch, that run, get and check
//! call, and Rust programs too), `inputs` (what the commands start from).
#![deny(unsafe_code)]

pub mod api;
pub mod audit;
pub mod backend;
pub mod complete;
pub mod config;
pub mod diagnose;
pub mod error;
pub mod exec;
pub mod files;
pub mod identity;
pub mod inject;
pub mod inputs;
pub mod manifest;
pub mod manual;
pub mod name;
mod origin;
pub mod policy;
pub mod resolve;
pub mod run;
pub mod secret;
pub mod value;
mod yaml_errors;

/// README.md's Rust example compiles (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

pub use api::SecretsApi;
pub use config::{Config, SecretPolicy, SecretRef, SecretStore};
pub use error::{Error, FailureKind, SecretFailure};
pub use identity::{Caller, Principal, RuntimeIdentity};
pub use resolve::ResolvedSecretLocation;
pub use secret::SecretValue;
