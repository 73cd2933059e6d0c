//! mxm-secrets: authorize, fetch and inject secrets, then exec the program that needs them.
//!
//! The pipeline, one module per step (read `run.rs` top to bottom first):
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
//! call, and Rust programs too), `inputs` (what the commands start from), [`cli`] (the
//! command itself; `main.rs` only calls [`cli::main`]).
//!
//! The public API is what a Rust program needs: [`SecretsApi`] with its [`api::Request`],
//! [`RuntimeIdentity`], [`Caller`], [`Principal`], the config types, [`SecretValue`],
//! [`Error`] and [`FailureKind`] (and the layers' errors), [`audit::Audit`]; plus the parsers
//! the fuzzers and property tests drive ([`Config::parse`], [`manifest::Manifest::parse`],
//! [`value::extract`]). How the launcher execs, hardens and runs backends is the crate's own.
#![deny(unsafe_code)]

pub mod account;
pub mod api;
pub mod audit;
pub mod backend;
pub(crate) mod broker;
pub mod cli;
pub(crate) mod complete;
pub mod config;
pub(crate) mod diagnose;
pub mod error;
pub(crate) mod exec;
pub(crate) mod files;
pub mod identity;
pub(crate) mod inject;
pub(crate) mod inputs;
pub mod manifest;
pub(crate) mod manual;
pub mod name;
mod origin;
pub mod policy;
pub(crate) mod program;
pub mod resolve;
pub(crate) mod run;
pub mod secret;
pub mod value;
mod yaml_errors;

/// README.md's Rust example compiles (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

pub use api::{Request, Resolved, SecretsApi};
pub use config::{Config, SecretPolicy, SecretRef, SecretStore};
pub use error::{Error, FailureKind, SecretFailure};
pub use identity::{Caller, Principal, RuntimeIdentity};
pub use resolve::ResolvedSecretLocation;
pub use secret::SecretValue;

/// How the launcher replaces itself and runs backends is not API:
///
/// ```compile_fail
/// let _ = mxm_secrets::exec::harden();
/// ```
///
/// ```compile_fail
/// let _ = mxm_secrets::backend::process::run;
/// ```
///
/// ```compile_fail
/// let _ = mxm_secrets::run::run;
/// ```
///
/// while the command is, as one call:
///
/// ```no_run
/// let code: std::process::ExitCode = mxm_secrets::cli::main(["mxm-secrets", "--help"].map(Into::into));
/// ```
#[cfg(doctest)]
struct NarrowApi;
