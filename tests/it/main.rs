//! One integration test binary (it links once); a module per feature.

mod util;

mod api;
mod audit;
mod aws;
mod backends;
mod broker;
mod catalogue;
mod completions;
mod config;
mod credentials;
mod diagnose;
mod env_backend;
mod facts;
mod gopass;
mod help;
mod inject;
mod jobs;
mod newcomer;
mod processes;
mod program_lookup;
mod properties;
mod readme;
mod reports;
mod run;
mod store_failures;
mod supervise;
mod vault;
