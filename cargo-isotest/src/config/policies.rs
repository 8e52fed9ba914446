//! The settings written as a scalar or as a table, with nextest's syntax: `retries = 3` or
//! `retries = { backoff = "exponential", count = 3, delay = "1s" }`.
//!
//! Each table type derives its own (de)serialization as an inherent function
//! (`serde(remote = "Self")`), and the trait impls try the scalar form first.

use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, json_schema};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::values::{FromScalar, Period, Scalar, ScalarVisitor, deserialize_scalar};

/// A type written as one scalar or as a table.
trait ScalarOrTable: FromScalar {
    fn from_table<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

struct OrTableVisitor<T>(ScalarVisitor<T>);

impl<'de, T: ScalarOrTable> Visitor<'de> for OrTableVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", T::EXPECTING)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.0.visit_i64(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.0.visit_u64(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.0.visit_f64(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.0.visit_bool(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.0.visit_str(v)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_table(map)
    }
}

/// The trait impls over the derived inherent functions, and a schema that also takes
/// the scalar form.
macro_rules! scalar_or_table {
    ($ty:ty, $scalar:tt) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(OrTableVisitor::<$ty>(ScalarVisitor::default()))
            }
        }
        impl ScalarOrTable for $ty {
            fn from_table<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
                let table = <$ty>::deserialize(de::value::MapAccessDeserializer::new(map))?;
                table.check().map_err(de::Error::custom)?;
                Ok(table)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$ty>::serialize(self, serializer)
            }
        }
        impl $ty {
            /// The schema of the table, widened to take the scalar form too.
            fn or_scalar(schema: &mut Schema) {
                let table = std::mem::replace(schema, json_schema!({}));
                *schema = json_schema!({
                    "description": <$ty as FromScalar>::EXPECTING,
                    "anyOf": [$scalar, table],
                });
            }
        }
    };
}

/// nextest's `slow-timeout`: when a test is marked slow, and whether to end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(transform = SlowTimeout::or_scalar)]
pub struct SlowTimeout {
    /// After this long the test is marked SLOW, and again after each further period.
    pub period: Period,
    /// End the test after this many periods (SIGTERM, then SIGKILL after
    /// `grace-period`); never by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_after: Option<NonZeroU32>,
    /// Time between SIGTERM and SIGKILL of the whole sandbox.
    #[serde(default = "default_grace_period")]
    pub grace_period: Period,
    /// What a test ended by `terminate-after` is.
    #[serde(default = "default_on_timeout")]
    pub on_timeout: OnTimeout,
}

/// What a test stopped for taking too long is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    Fail,
    Pass,
}

fn default_grace_period() -> Period {
    Period(std::time::Duration::from_millis(
        isotest_runtime::DEFAULT_GRACE_MS,
    ))
}

fn default_on_timeout() -> OnTimeout {
    OnTimeout::Fail
}

impl SlowTimeout {
    pub fn new(period: Period) -> SlowTimeout {
        SlowTimeout {
            period,
            terminate_after: None,
            grace_period: default_grace_period(),
            on_timeout: OnTimeout::Fail,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.period.0.is_zero() {
            return Err("`period` must be more than 0".into());
        }
        Ok(())
    }
}

impl FromScalar for SlowTimeout {
    const EXPECTING: &'static str = "a duration such as \"60s\", or a table { period, terminate-after, grace-period, on-timeout }";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        let period = Period::from_scalar(scalar)?.map(SlowTimeout::new);
        Some(period.and_then(|t| t.check().map(|()| t)))
    }
}
scalar_or_table!(SlowTimeout, { "type": "string" });

/// nextest's `retries`: how often a failing test runs again, each time in a fresh sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(transform = RetryPolicy::or_scalar)]
pub struct RetryPolicy {
    /// How the delay between attempts grows.
    pub backoff: Backoff,
    /// Runs after the first.
    pub count: u32,
    /// Wait before each retry (the first one, with `exponential`).
    #[serde(default = "zero")]
    pub delay: Period,
    /// Randomise each delay, so that retries of many tests spread out.
    #[serde(default)]
    pub jitter: bool,
    /// With `exponential`: the longest delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Period>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Backoff {
    Fixed,
    Exponential,
}

fn zero() -> Period {
    Period(std::time::Duration::ZERO)
}

impl RetryPolicy {
    pub fn count(count: u32) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::Fixed,
            count,
            delay: zero(),
            jitter: false,
            max_delay: None,
        }
    }

    fn check(&self) -> Result<(), String> {
        match self.backoff {
            Backoff::Exponential if self.delay.0.is_zero() => {
                Err("`exponential` backoff needs a `delay` more than 0".into())
            }
            Backoff::Fixed if self.max_delay.is_some() => {
                Err("`max-delay` goes only with `backoff = \"exponential\"`".into())
            }
            _ if self.max_delay.is_some_and(|max| max < self.delay) => {
                Err("`max-delay` is shorter than `delay`".into())
            }
            _ => Ok(()),
        }
    }
}

impl FromScalar for RetryPolicy {
    const EXPECTING: &'static str =
        "a number of retries, or a table { backoff, count, delay, jitter, max-delay }";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        match scalar {
            Scalar::Int(count) => Some(
                u32::try_from(count)
                    .map(RetryPolicy::count)
                    .map_err(|_| format!("{count} retries: give 0 or more")),
            ),
            _ => None,
        }
    }
}
scalar_or_table!(RetryPolicy, { "type": "integer", "minimum": 0 });

/// nextest's `fail-fast`: when a run stops starting tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(transform = FailFast::or_scalar)]
pub struct FailFast {
    /// Stop after this many failures, or never (`"all"`).
    pub max_fail: MaxFail,
    /// On stopping, let running tests finish (`wait`) or end them (`immediate`).
    #[serde(default = "default_terminate")]
    pub terminate: Terminate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Terminate {
    Wait,
    Immediate,
}

fn default_terminate() -> Terminate {
    Terminate::Wait
}

impl FailFast {
    pub fn new(max_fail: MaxFail) -> FailFast {
        FailFast {
            max_fail,
            terminate: Terminate::Wait,
        }
    }

    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

impl FromScalar for FailFast {
    const EXPECTING: &'static str = "true, false, or a table { max-fail = N or \"all\", terminate = \"wait\" or \"immediate\" }";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        match scalar {
            Scalar::Bool(true) => Some(Ok(FailFast::new(MaxFail::Count(NonZeroU32::MIN)))),
            Scalar::Bool(false) => Some(Ok(FailFast::new(MaxFail::All))),
            _ => None,
        }
    }
}
scalar_or_table!(FailFast, { "type": "boolean" });

/// A count from 1, or a word for "as many as there are".
macro_rules! count_or_word {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident = $word:literal),* }, $expecting:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $ty {
            Count(NonZeroU32),
            $($variant,)*
        }

        impl FromScalar for $ty {
            const EXPECTING: &'static str = $expecting;
            fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
                match scalar {
                    Scalar::Int(n) => Some(
                        u32::try_from(n)
                            .ok()
                            .and_then(NonZeroU32::new)
                            .map($ty::Count)
                            .ok_or_else(|| format!("{n}: give 1 or more")),
                    ),
                    $(Scalar::Str($word) => Some(Ok($ty::$variant)),)*
                    Scalar::Str(other) => Some(Err(format!("`{other}`: expected {}", $expecting))),
                    _ => None,
                }
            }
        }

        deserialize_scalar!($ty);

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $ty::Count(n) => serializer.serialize_u32(n.get()),
                    $($ty::$variant => serializer.serialize_str($word),)*
                }
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> Schema {
                json_schema!({
                    "description": $expecting,
                    "anyOf": [
                        { "type": "integer", "minimum": 1 },
                        $({ "const": $word },)*
                    ],
                })
            }
        }
    };
}

count_or_word!(
    /// `max-fail`: a number of failures, or `"all"`.
    MaxFail { All = "all" },
    "a number of failures from 1, or \"all\""
);
count_or_word!(
    /// `threads-required`: the share of the run's threads one test takes.
    ThreadsRequired { NumCpus = "num-cpus", NumTestThreads = "num-test-threads" },
    "a number of threads from 1, \"num-cpus\" or \"num-test-threads\""
);
count_or_word!(
    /// `max-threads` of a test group.
    MaxThreads { NumCpus = "num-cpus" },
    "a number of threads from 1, or \"num-cpus\""
);

/// nextest's `test-threads`: how many tests run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestThreads {
    /// That many; below 0, that many fewer than the CPUs.
    Count(i32),
    NumCpus,
}

impl FromScalar for TestThreads {
    const EXPECTING: &'static str =
        "a number of threads (below 0: that many fewer than the CPUs), or \"num-cpus\"";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        match scalar {
            Scalar::Int(n) => Some(match i32::try_from(n) {
                Ok(0) | Err(_) => Err(format!("{n}: give a number other than 0")),
                Ok(n) => Ok(TestThreads::Count(n)),
            }),
            Scalar::Str("num-cpus") => Some(Ok(TestThreads::NumCpus)),
            Scalar::Str(other) => Some(Err(format!("`{other}`: expected {}", Self::EXPECTING))),
            _ => None,
        }
    }
}

deserialize_scalar!(TestThreads);

impl Serialize for TestThreads {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TestThreads::Count(n) => serializer.serialize_i32(*n),
            TestThreads::NumCpus => serializer.serialize_str("num-cpus"),
        }
    }
}

impl JsonSchema for TestThreads {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TestThreads".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> Schema {
        json_schema!({
            "description": Self::EXPECTING,
            "anyOf": [{ "type": "integer", "not": { "const": 0 } }, { "const": "num-cpus" }],
        })
    }
}

/// nextest's `junit`, which also takes just the report's path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(transform = Junit::or_scalar)]
pub struct Junit {
    /// Write a JUnit XML report here (relative to the workspace root); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The `name` of the report's `<testsuites>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_name: Option<String>,
    /// Keep the output of passing tests in the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_success_output: Option<bool>,
    /// Keep the output of failing tests in the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_failure_output: Option<bool>,
}

impl Junit {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

impl FromScalar for Junit {
    const EXPECTING: &'static str =
        "a path, or a table { path, report-name, store-success-output, store-failure-output }";
    fn from_scalar(scalar: Scalar<'_>) -> Option<Result<Self, String>> {
        match scalar {
            Scalar::Str(path) => Some(Ok(Junit {
                path: Some(path.into()),
                ..Junit::default()
            })),
            _ => None,
        }
    }
}
scalar_or_table!(Junit, { "type": "string" });
