//! Where a value came from, for `show-config` and for messages that say which key to
//! change.

use std::fmt;
use std::path::PathBuf;

/// What set a value. The variants are in precedence order, lowest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// cargo-isotest's own default.
    Default,
    /// A `[profile.NAME]` table of a config file.
    Profile { file: PathBuf, profile: String },
    /// The `index`th (from 0) `[[profile.NAME.overrides]]` of a config file.
    Override {
        file: PathBuf,
        profile: String,
        index: usize,
        filter: String,
    },
    /// A `[test-groups.NAME]` table of a config file.
    TestGroup { file: PathBuf, group: String },
    /// An `ISOTEST_*` environment variable.
    Env { var: String },
    /// A command-line flag.
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Profile { file, profile } => {
                write!(f, "{} [profile.{profile}]", file.display())
            }
            Source::Override {
                file,
                profile,
                index,
                filter,
            } => write!(
                f,
                "{} [profile.{profile}.overrides[{index}]] (filter = {filter:?})",
                file.display()
            ),
            Source::TestGroup { file, group } => {
                write!(f, "{} [test-groups.{group}]", file.display())
            }
            Source::Env { var } => write!(f, "environment {var}"),
            Source::CommandLine => f.write_str("command line"),
        }
    }
}

/// A value and what set it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// The value of a setting, whatever set it.
pub fn value<T: Clone>(setting: &Option<Sourced<T>>) -> Option<T> {
    setting.as_ref().map(|s| s.value.clone())
}

/// One line of `show-config`: `key = value`, and what set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `net`, `env.NAME`, `junit.path`; a list has one entry per item.
    pub key: String,
    /// The value in TOML syntax.
    pub value: String,
    pub source: Source,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}  # {}", self.key, self.value, self.source)
    }
}
