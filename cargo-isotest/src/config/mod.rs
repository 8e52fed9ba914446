//! Configuration: `.config/isotest.toml` profiles and per-test overrides, the user's
//! config, `ISOTEST_*` variables and flags, resolved into the effective settings of a run
//! and of each test, each value with what set it.
//!
//! - [`Config::load`] reads and checks every layer; a broken one is a [`ConfigError`]
//!   that names the file, line, column and key ([`render`] shows it with the source).
//! - [`Config::profile`] picks the profile; [`Profile::settings`] is its effective
//!   settings, [`Profile::compile`] compiles its filtersets against the package graph
//!   ([`package_graph`]), and [`CompiledProfile::test_settings`] gives one test's.
//! - [`Filterset`] is nextest's `-E` language, through nextest's own crate.

mod error;
mod filterset;
mod load;
mod merge;
mod policies;
mod profile;
mod resolve;
mod schema;
mod settings;
mod source;
mod values;

pub use error::render;
pub use filterset::{Filterset, TestId, package_graph};
pub use policies::{
    Backoff, FailFast, Junit, MaxFail, MaxThreads, OnTimeout, RetryPolicy, SlowTimeout,
    TestThreads, ThreadsRequired,
};
pub use profile::CompiledProfile;
pub use resolve::{Config, GLOBAL_GROUP, Inputs};
pub use schema::json_schema;
pub use settings::{Effective, Layer, NoTests, test_keys};
pub use source::{Entry, Sourced, value};
pub use values::{
    Bind, Bytes, Chaos, CpuMax, FinalStatusLevel, FlakyResult, Forward, IdMap, LimitsMechanism,
    Net, OutputDisplay, Period, Pid, StatusLevel, Strays, Sys, VarName,
};
#[cfg(test)]
pub use {error::ConfigError, filterset::FilterKind, load::user_config_path, source::Source};

#[cfg(test)]
mod tests;
