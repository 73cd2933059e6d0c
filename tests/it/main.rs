//! One integration test binary (it links once); a module per feature.

mod util;

mod api;
mod audit;
mod backends;
mod catalogue;
mod completions;
mod config;
mod diagnose;
mod env_backend;
mod gopass;
mod help;
mod inject;
mod newcomer;
mod processes;
mod properties;
mod readme;
mod run;
mod vault;
