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

pub use error::{ConfigError, FileError, render};
pub use filterset::{FilterKind, Filterset, FiltersetError, TestId, package_graph};
pub use load::{PROFILE_VAR, SCHEMA_VERSION, WORKSPACE_CONFIG, user_config_path};
pub use merge::{EnvVar, JunitEffective};
pub use policies::{
    Backoff, FailFast, Junit, MaxFail, MaxThreads, OnTimeout, RetryPolicy, SlowTimeout, Terminate,
    TestThreads, ThreadsRequired,
};
pub use profile::{CompiledProfile, Profile};
pub use resolve::{Config, DEFAULT_PROFILE, GLOBAL_GROUP, Inputs};
pub use schema::json_schema;
pub use settings::{Effective, Layer, NoTests};
pub use source::{Entry, Source, Sourced};
pub use values::{
    Bind, Bytes, CpuMax, FinalStatusLevel, FlakyResult, Hostname, IdMap, Net, OutputDisplay,
    Period, StatusLevel, Strays, VarName,
};

#[cfg(test)]
mod tests;
