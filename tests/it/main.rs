//! One integration test binary (it links once); a module per feature.

mod util;

mod api;
mod backends;
mod catalogue;
mod config;
mod diagnose;
mod env_backend;
mod gopass;
mod inject;
mod jobs;
mod program_lookup;
mod properties;
mod readme;
mod reports;
mod run;
mod store_failures;
mod vault;
