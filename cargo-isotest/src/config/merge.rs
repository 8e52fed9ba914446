//! How one layer's value of a setting combines with the layers below it.
//!
//! Layers are applied lowest precedence first. A scalar is replaced by a higher layer's;
//! lists and the `env` table add up, a higher layer's item replacing a lower one's with
//! the same identity (a bind's destination, a variable's name), so that an override
//! adding a bind for some tests keeps the profile's binds.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::Spanned;

use super::policies::{FailFast, Junit, RetryPolicy, SlowTimeout, TestThreads, ThreadsRequired};
use super::settings::NoTests;
use super::source::{Entry, Source, Sourced};
use super::values::{
    Bind, Bytes, Chaos, CpuMax, FinalStatusLevel, FlakyResult, Forward, Hostname, IdMap,
    LimitsMechanism, Net, OutputDisplay, Period, Pid, StatusLevel, Strays, Sys, VarName,
};

pub trait Setting {
    type Effective: Clone + Debug + Default;
    /// Puts this layer's value over `into`; relative paths are relative to `base`.
    fn merge(&self, into: &mut Self::Effective, source: &Source, base: &Path);
    /// The `show-config` lines of an effective value.
    fn entries(effective: &Self::Effective, key: &str, out: &mut Vec<Entry>);
}

/// A value in TOML syntax.
pub fn toml_text(value: &impl Serialize) -> String {
    match toml::Value::try_from(value) {
        Ok(value) => value.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

fn entry(key: &str, value: &impl Serialize, source: &Source) -> Entry {
    Entry {
        key: key.to_string(),
        value: toml_text(value),
        source: source.clone(),
    }
}

macro_rules! scalar {
    ($($ty:ty),*) => {$(
        impl Setting for $ty {
            type Effective = Option<Sourced<$ty>>;
            fn merge(&self, into: &mut Self::Effective, source: &Source, _: &Path) {
                *into = Some(Sourced { value: self.clone(), source: source.clone() });
            }
            fn entries(effective: &Self::Effective, key: &str, out: &mut Vec<Entry>) {
                out.extend(effective.iter().map(|s| entry(key, &s.value, &s.source)));
            }
        }
    )*};
}
scalar!(
    bool,
    u32,
    NonZeroU32,
    Net,
    Sys,
    Pid,
    FlakyResult,
    Strays,
    IdMap,
    Chaos,
    LimitsMechanism,
    OutputDisplay,
    StatusLevel,
    FinalStatusLevel,
    NoTests,
    Period,
    Bytes,
    CpuMax,
    Hostname,
    SlowTimeout,
    RetryPolicy,
    FailFast,
    ThreadsRequired,
    TestThreads
);

impl Setting for PathBuf {
    type Effective = Option<Sourced<PathBuf>>;
    fn merge(&self, into: &mut Self::Effective, source: &Source, base: &Path) {
        *into = Some(Sourced {
            value: base.join(self),
            source: source.clone(),
        });
    }
    fn entries(effective: &Self::Effective, key: &str, out: &mut Vec<Entry>) {
        out.extend(effective.iter().map(|s| entry(key, &s.value, &s.source)));
    }
}

impl Setting for Spanned<String> {
    type Effective = Option<Sourced<String>>;
    fn merge(&self, into: &mut Self::Effective, source: &Source, _: &Path) {
        *into = Some(Sourced {
            value: self.get_ref().clone(),
            source: source.clone(),
        });
    }
    fn entries(effective: &Self::Effective, key: &str, out: &mut Vec<Entry>) {
        out.extend(effective.iter().map(|s| entry(key, &s.value, &s.source)));
    }
}

/// An item of a list setting.
pub trait Item: Clone + Debug + Serialize {
    /// Items with the same identity are one item: the higher layer's wins.
    fn identity(&self) -> String;
    fn rebase(&self, _base: &Path) -> Self {
        self.clone()
    }
}

impl Item for Bind {
    fn identity(&self) -> String {
        self.dst.as_ref().unwrap_or(&self.src).display().to_string()
    }
    fn rebase(&self, base: &Path) -> Self {
        Bind {
            src: base.join(&self.src),
            dst: self.dst.clone(),
        }
    }
}

impl Item for VarName {
    fn identity(&self) -> String {
        self.0.clone()
    }
}

impl Item for Forward {
    fn identity(&self) -> String {
        self.to_string()
    }
}

/// A path of a list (`forward-unix`): relative to the workspace root in a file.
impl Item for PathBuf {
    fn identity(&self) -> String {
        self.display().to_string()
    }
    fn rebase(&self, base: &Path) -> Self {
        base.join(self)
    }
}

fn add<T: Item>(into: &mut Vec<Sourced<T>>, value: T, source: &Source) {
    let sourced = Sourced {
        value,
        source: source.clone(),
    };
    let identity = sourced.value.identity();
    match into.iter_mut().find(|s| s.value.identity() == identity) {
        Some(existing) => *existing = sourced,
        None => into.push(sourced),
    }
}

impl<T: Item> Setting for Vec<T> {
    type Effective = Vec<Sourced<T>>;
    fn merge(&self, into: &mut Self::Effective, source: &Source, base: &Path) {
        for item in self {
            add(into, item.rebase(base), source);
        }
    }
    fn entries(effective: &Self::Effective, key: &str, out: &mut Vec<Entry>) {
        out.extend(effective.iter().map(|s| entry(key, &s.value, &s.source)));
    }
}

/// One variable of the `env` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

impl Item for EnvVar {
    fn identity(&self) -> String {
        self.name.clone()
    }
}

impl Setting for BTreeMap<String, String> {
    type Effective = Vec<Sourced<EnvVar>>;
    fn merge(&self, into: &mut Self::Effective, source: &Source, _: &Path) {
        for (name, value) in self {
            let var = EnvVar {
                name: name.clone(),
                value: value.clone(),
            };
            add(into, var, source);
        }
    }
    fn entries(effective: &Self::Effective, key: &str, out: &mut Vec<Entry>) {
        out.extend(effective.iter().map(|s| {
            entry(
                &format!("{key}.{}", s.value.name),
                &s.value.value,
                &s.source,
            )
        }));
    }
}

/// `junit`, key by key, so that a profile can set the path and inherit the rest.
#[derive(Clone, Debug, Default)]
pub struct JunitEffective {
    pub path: Option<Sourced<PathBuf>>,
    pub report_name: Option<Sourced<String>>,
    pub store_success_output: Option<Sourced<bool>>,
    pub store_failure_output: Option<Sourced<bool>>,
}

impl Setting for Junit {
    type Effective = JunitEffective;
    fn merge(&self, into: &mut JunitEffective, source: &Source, base: &Path) {
        let set = |value| {
            Some(Sourced {
                value,
                source: source.clone(),
            })
        };
        if let Some(path) = &self.path {
            into.path = Some(Sourced {
                value: base.join(path),
                source: source.clone(),
            });
        }
        if let Some(name) = &self.report_name {
            into.report_name = Some(Sourced {
                value: name.clone(),
                source: source.clone(),
            });
        }
        if let Some(store) = self.store_success_output {
            into.store_success_output = set(store);
        }
        if let Some(store) = self.store_failure_output {
            into.store_failure_output = set(store);
        }
    }
    fn entries(effective: &JunitEffective, key: &str, out: &mut Vec<Entry>) {
        let mut one = |name: &str, value: Option<(&dyn ErasedSerialize, &Source)>| {
            if let Some((value, source)) = value {
                out.push(Entry {
                    key: format!("{key}.{name}"),
                    value: value.text(),
                    source: source.clone(),
                });
            }
        };
        one(
            "path",
            effective.path.as_ref().map(|s| (&s.value as _, &s.source)),
        );
        one(
            "report-name",
            effective
                .report_name
                .as_ref()
                .map(|s| (&s.value as _, &s.source)),
        );
        one(
            "store-success-output",
            effective
                .store_success_output
                .as_ref()
                .map(|s| (&s.value as _, &s.source)),
        );
        one(
            "store-failure-output",
            effective
                .store_failure_output
                .as_ref()
                .map(|s| (&s.value as _, &s.source)),
        );
    }
}

/// `Serialize` is not object safe; this is what `junit`'s entries need of it.
trait ErasedSerialize {
    fn text(&self) -> String;
}

impl<T: Serialize> ErasedSerialize for T {
    fn text(&self) -> String {
        toml_text(self)
    }
}
