//! The values a setting takes: each parses from the TOML a user writes (and from an
//! `ISOTEST_*` variable), shows itself back in the same syntax, and describes itself in
//! the JSON schema.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The network a test gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Net {
    /// No usable interface.
    None,
    /// Only `lo`, up.
    Loopback,
    /// The host's network: no network isolation.
    Host,
}

/// What of the host's /sys a test sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Sys {
    /// No /sys at all.
    None,
    /// A read-only sysfs of the sandbox's own network namespace and cgroups.
    Sandbox,
    /// The host's /sys, read-only, with the sandbox's own cgroups.
    Host,
}

/// Whether a test has a pid namespace of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Pid {
    /// Its own: it sees only its processes.
    Sandbox,
    /// The host's, and its /proc read-only.
    Host,
}

/// Whether a test that passed only on a retry passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FlakyResult {
    Pass,
    Fail,
}

/// What a test that leaves processes behind is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strays {
    /// Marked leaky; its result stands.
    Warn,
    /// Failed.
    Fail,
}

/// nextest's `status-level`: which results are shown while the run goes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum StatusLevel {
    None,
    Fail,
    Retry,
    Slow,
    Leak,
    Pass,
    Skip,
    All,
}

/// nextest's `final-status-level`: which results the summary repeats.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum FinalStatusLevel {
    None,
    Fail,
    #[serde(alias = "retry")]
    Flaky,
    Slow,
    Skip,
    Leak,
    Pass,
    All,
}

/// nextest's `success-output` and `failure-output`: when a test's output is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OutputDisplay {
    Immediate,
    ImmediateFinal,
    Final,
    Never,
}

/// Which host ids the sandbox's user namespace maps (the runtime's id-mapping modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IdMap {
    /// The best the host gives: `full` as root, `subordinate` where the caller has
    /// ranges and newuidmap, else `single`.
    Auto,
    /// Only the caller's uid and gid; every other id shows as 65534.
    Single,
    /// The caller plus its ranges in /etc/subuid and /etc/subgid (through newuidmap).
    Subordinate,
    /// Every id to itself, as outside; root only.
    Full,
}

/// What enforces the limits and measures each sandbox's use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LimitsMechanism {
    /// The best the host gives: cgroup v2, else cgroup v1 (as root), else the fallback.
    Auto,
    CgroupV2,
    CgroupV1,
    /// The sandbox's pid 1 watches and kills; works everywhere.
    Fallback,
}

/// `chaos`: the perturbations each attempt draws, as `--chaos` names them: `"all"`, a
/// list such as `"cpus,sched"`, or `"none"` (also `true` and `false`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chaos(pub Vec<crate::chaos::Kind>);

impl fmt::Display for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("none")
        } else if self.0 == crate::chaos::ALL {
            f.write_str("all")
        } else {
            f.write_str(&crate::chaos::format_kinds(&self.0))
        }
    }
}

impl FromScalar for Chaos {
    const EXPECTING: &'static str = "\"all\", \"none\", or chaos kinds such as \"cpus,sched\" (cpus, sched, uptime, net, resources, neighbours)";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        match scalar {
            Scalar::Bool(true) => Some(Ok(Chaos(crate::chaos::ALL.to_vec()))),
            Scalar::Bool(false) => Some(Ok(Chaos(Vec::new()))),
            Scalar::Str("none") => Some(Ok(Chaos(Vec::new()))),
            // An empty string would read as `all`, as `--chaos` alone does: say what.
            Scalar::Str("") => Some(Err("give \"all\", \"none\" or a list of kinds".into())),
            Scalar::Str(text) => Some(crate::chaos::parse_kinds(text).map(Chaos)),
            _ => None,
        }
    }
}

/// A length of time: `"30s"`, `"2m"`, `"500ms"`, or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(pub Duration);

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl FromScalar for Period {
    const EXPECTING: &'static str = "a duration such as \"30s\", \"2m\" or \"500ms\"";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        let text = match scalar {
            Scalar::Str(text) => text.to_string(),
            Scalar::Int(seconds) if seconds >= 0 => seconds.to_string(),
            Scalar::Float(seconds) if seconds >= 0.0 => seconds.to_string(),
            _ => return None,
        };
        Some(crate::args::parse_duration(&text).map(Period))
    }
}

/// A size in bytes: `"512M"`, `"2G"`, or a number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(30, "G"), (20, "M"), (10, "K")];
        match units
            .iter()
            .find(|(shift, _)| self.0 != 0 && self.0.is_multiple_of(1 << shift))
        {
            Some((shift, unit)) => write!(f, "{}{unit}", self.0 >> shift),
            None => write!(f, "{}", self.0),
        }
    }
}

impl FromScalar for Bytes {
    const EXPECTING: &'static str = "a size such as \"512M\" or \"2G\", or a number of bytes";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        match scalar {
            Scalar::Int(bytes) => Some(u64::try_from(bytes).map(Bytes).map_err(|e| e.to_string())),
            Scalar::Str(text) => Some(crate::args::parse_size(text).map(Bytes)),
            _ => None,
        }
    }
}

/// A share of the CPUs: `1.5` (CPUs) or `"150%"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuMax(pub f64);

impl fmt::Display for CpuMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromScalar for CpuMax {
    const EXPECTING: &'static str =
        "a number of CPUs such as 1.5, or a percentage such as \"150%\"";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        let cpus = match scalar {
            Scalar::Int(cpus) => cpus as f64,
            Scalar::Float(cpus) => cpus,
            Scalar::Str(text) => match text.strip_suffix('%').map(|p| p.trim().parse::<f64>()) {
                Some(Ok(percent)) => percent / 100.0,
                _ => {
                    return Some(Err(format!(
                        "`{text}` is not a percentage such as \"150%\""
                    )));
                }
            },
            Scalar::Bool(_) => return None,
        };
        Some(if cpus > 0.0 && cpus.is_finite() {
            Ok(CpuMax(cpus))
        } else {
            Err(format!("{cpus} CPUs: the share must be more than 0"))
        })
    }
}

impl Bind {
    /// A `--bind` value, as a config file would write it.
    pub fn parse(text: &str) -> Result<Bind, String> {
        Bind::from_scalar(Scalar::Str(text)).expect("a string is a bind's type")
    }
}

/// `"SRC[:DST]"`: a host path shown at DST, or at its own path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// Relative to the workspace root in a config file, else to the current directory.
    pub src: PathBuf,
    pub dst: Option<PathBuf>,
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.src.display())?;
        if let Some(dst) = &self.dst {
            write!(f, ":{}", dst.display())?;
        }
        Ok(())
    }
}

impl FromScalar for Bind {
    const EXPECTING: &'static str = "a path, or \"SRC:DST\" with an absolute DST";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        let Scalar::Str(text) = scalar else {
            return None;
        };
        let (src, dst) = match text.split_once(':') {
            Some((src, dst)) => (src, Some(PathBuf::from(dst))),
            None => (text, None),
        };
        Some(if src.is_empty() {
            Err(format!("`{text}`: the source path is empty"))
        } else if dst.as_ref().is_some_and(|d| !d.is_absolute()) {
            Err(format!(
                "`{text}`: the destination must be an absolute path"
            ))
        } else {
            Ok(Bind {
                src: src.into(),
                dst,
            })
        })
    }
}

/// A loopback address with a port that reaches the same address on the host: `forward`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward(pub SocketAddr);

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromScalar for Forward {
    const EXPECTING: &'static str =
        "a loopback address with a port, such as \"127.0.0.1:5432\" or \"[::1]:6379\"";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        let Scalar::Str(text) = scalar else {
            return None;
        };
        // The same check as `--forward`'s; a host elsewhere is reached with `net = "host"`.
        Some(crate::args::parse_forward(text).map(Forward).map_err(|e| {
            match text.parse::<SocketAddr>() {
                Ok(address) if !address.ip().is_loopback() => {
                    format!("{e}; to reach another host, give the test `net = \"host\"` instead")
                }
                _ => e,
            }
        }))
    }
}

/// An environment variable's name, or a glob of names (`*`, `?`, `[…]`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VarName(pub String);

impl FromScalar for VarName {
    const EXPECTING: &'static str = "a variable name, or a glob such as \"MY_APP_*\"";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        let Scalar::Str(name) = scalar else {
            return None;
        };
        Some(if name.is_empty() || name.contains(['=', '\0']) {
            Err(format!(
                "`{name}` is not a variable name (no `=`, not empty)"
            ))
        } else if let Err(e) = globset::Glob::new(name) {
            Err(format!("`{name}` is not a valid glob: {e}"))
        } else {
            Ok(VarName(name.to_string()))
        })
    }
}

/// The sandbox's hostname: 1 to 64 bytes, no `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hostname(pub String);

impl FromScalar for Hostname {
    const EXPECTING: &'static str = "a hostname";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        let Scalar::Str(name) = scalar else {
            return None;
        };
        // The kernel's limit (HOST_NAME_MAX).
        Some(
            if name.is_empty() || name.len() > 64 || name.contains(['/', '\0']) {
                Err(format!(
                    "`{name}` is not a hostname (1 to 64 bytes, no `/`)"
                ))
            } else {
                Ok(Hostname(name.to_string()))
            },
        )
    }
}

/// A TOML scalar, as the visitors see it.
#[derive(Clone, Copy, Debug)]
pub enum Scalar<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'a str),
}

/// A value written as one TOML scalar. `None` is the wrong type (serde then says what
/// was expected); `Some(Err)` the right type with a value that is not allowed.
pub trait FromScalar: Sized {
    const EXPECTING: &'static str;
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>>;
}

/// Deserializes a [`FromScalar`] from whatever scalar the document holds.
pub struct ScalarVisitor<T>(std::marker::PhantomData<T>);

impl<T> Default for ScalarVisitor<T> {
    fn default() -> Self {
        ScalarVisitor(std::marker::PhantomData)
    }
}

impl<T: FromScalar> ScalarVisitor<T> {
    fn take<E: de::Error>(&self, scalar: Scalar<'_>, unexpected: Unexpected<'_>) -> Result<T, E> {
        match T::from_scalar(scalar) {
            Some(result) => result.map_err(E::custom),
            None => Err(E::invalid_type(unexpected, self)),
        }
    }
}

impl<'de, T: FromScalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.take(Scalar::Int(v), Unexpected::Signed(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.take(Scalar::Float(v), Unexpected::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.take(Scalar::Bool(v), Unexpected::Bool(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.take(Scalar::Str(v), Unexpected::Str(v))
    }
}

/// Deserializes each type from whatever scalar the document holds.
macro_rules! deserialize_scalar {
    ($($ty:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any($crate::config::values::ScalarVisitor::<$ty>::default())
            }
        }
    )*};
}
pub(super) use deserialize_scalar;
deserialize_scalar!(
    Period, Bytes, CpuMax, Bind, Forward, VarName, Hostname, Chaos
);

/// Names checked when read, shown as they are.
macro_rules! display_name {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_name!(VarName, Hostname);

/// Values shown as their `Display` text, which parses back to the same value.
macro_rules! display_serialize {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}
display_serialize!(Period, Bytes, Bind, Forward, VarName, Hostname, Chaos);

impl Serialize for CpuMax {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

/// Schemas of the scalar values: a name, and what the document may hold.
macro_rules! scalar_schema {
    ($($ty:ty => $name:literal $schema:tt),* $(,)?) => {$(
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let mut schema = json_schema!($schema);
                schema.insert("description".into(), <$ty as FromScalar>::EXPECTING.into());
                schema
            }
        }
    )*};
}
scalar_schema! {
    Period => "Duration" { "type": ["string", "number"], "minimum": 0 },
    Bytes => "Size" { "type": ["string", "integer"], "minimum": 0, "pattern": "^[0-9]+ *([kKmMgG]([iI]?[bB])?|[bB])?$" },
    CpuMax => "CpuMax" { "type": ["number", "string"], "exclusiveMinimum": 0, "pattern": "^[0-9.]+ *%$" },
    Bind => "Bind" { "type": "string", "minLength": 1 },
    Forward => "Forward" { "type": "string", "pattern": "^(127\\.[0-9.]+|\\[::1\\]):[0-9]+$" },
    VarName => "VarName" { "type": "string", "minLength": 1, "pattern": "^[^=]+$" },
    Hostname => "Hostname" { "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^/]+$" },
    Chaos => "Chaos" { "type": ["string", "boolean"], "pattern": "^(all|none|(cpus|sched|uptime|net|resources|neighbours)(, *(cpus|sched|uptime|net|resources|neighbours))*)$" },
}
