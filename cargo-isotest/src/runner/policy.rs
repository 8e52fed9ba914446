//! How a run treats results and schedules tests: the choices the settings make (for the
//! run, and for each test from its own effective settings), which the verdicts and the
//! scheduler apply.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use isotest_runtime::KeepWrites;

use super::budget::MemoryBudget;
use crate::config::{
    self, Backoff, Effective, FailFast, MaxFail, MaxThreads, OnTimeout, Sourced, ThreadsRequired,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum StraysPolicy {
    #[default]
    Warn,
    Fail,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum FlakyPolicy {
    /// A test that passes on a retry counts as passed.
    #[default]
    Pass,
    /// A test that needed a retry to pass fails the run.
    Fail,
}

/// The run's choices, and each test's.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Stop starting tests after this many failures; `None` runs every test.
    pub max_fail: Option<u32>,
    pub stress: Option<Stress>,
    /// By index of the plan's tests; a test past the end gets [`TestPolicy::DEFAULT`].
    pub tests: Vec<TestPolicy>,
    /// How many tests run at once (the helpers).
    pub threads: usize,
    /// `[test-groups]`: the most threads each group's tests take at once.
    pub groups: BTreeMap<String, usize>,
    /// `--memory-budget`: what each test needs of it.
    pub memory_budget: Option<MemoryBudget>,
    /// `--keep-writes`: where each attempt's writes are kept, below by test name.
    pub keep_writes: Option<KeepWrites>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_fail: None,
            stress: None,
            tests: Vec::new(),
            threads: 1,
            groups: BTreeMap::new(),
            memory_budget: None,
            keep_writes: None,
        }
    }
}

impl Policy {
    /// The run's policy from its settings (`run`, the profile's) and each test's.
    pub fn new(
        run: &Effective,
        tests: &[Effective],
        threads: usize,
        groups: &BTreeMap<String, Sourced<MaxThreads>>,
        stress: Option<Stress>,
    ) -> Policy {
        // A host fact that cannot change during the run: read once, not once per test.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Policy {
            // A stress run is about every test: it never stops at a failure.
            max_fail: if stress.is_some() {
                None
            } else {
                max_fail(run.fail_fast.as_ref().map(|f| f.value))
            },
            stress,
            tests: tests
                .iter()
                .map(|t| TestPolicy::from_settings(t, threads, cpus))
                .collect(),
            threads,
            groups: group_limits(groups, cpus),
            memory_budget: None,
            keep_writes: None,
        }
    }

    pub fn test(&self, index: usize) -> &TestPolicy {
        self.tests.get(index).unwrap_or(&TestPolicy::DEFAULT)
    }
}

/// One test's choices, from its effective settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TestPolicy {
    pub retries: u32,
    pub delay: RetryDelay,
    pub flaky: FlakyPolicy,
    pub strays: StraysPolicy,
    /// Of the run's threads, how many the test takes while it runs.
    pub threads: usize,
    /// Its test group; `None` for `@global`, which has no limit.
    pub group: Option<String>,
    /// When it is shown as slow.
    pub slow: Duration,
    /// A test ended by its timeout passes (`on-timeout = "pass"`).
    pub timeout_passes: bool,
}

/// The wait before a retry, as nextest's `retries` table says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryDelay {
    pub delay: Duration,
    pub exponential: bool,
    pub max_delay: Option<Duration>,
    pub jitter: bool,
}

impl RetryDelay {
    pub const NONE: RetryDelay = RetryDelay {
        delay: Duration::ZERO,
        exponential: false,
        max_delay: None,
        jitter: false,
    };

    /// The wait before attempt `next` (2 or more); `random` is in [0, 1).
    pub fn before(&self, next: u32, random: f64) -> Duration {
        let retry = next.saturating_sub(2);
        let mut delay = if self.exponential {
            self.delay
                .saturating_mul(2u32.saturating_pow(retry.min(30)))
        } else {
            self.delay
        };
        if let Some(max) = self.max_delay {
            delay = delay.min(max);
        }
        if self.jitter {
            // nextest's jitter: somewhere between half the delay and all of it.
            delay = delay.mul_f64(0.5 + random / 2.0);
        }
        delay
    }
}

impl TestPolicy {
    pub const DEFAULT: TestPolicy = TestPolicy {
        retries: 0,
        delay: RetryDelay::NONE,
        flaky: FlakyPolicy::Pass,
        strays: StraysPolicy::Warn,
        threads: 1,
        group: None,
        slow: Duration::from_secs(60),
        timeout_passes: false,
    };

    /// What a test's effective settings choose, in a run of `threads` test threads on a
    /// host of `cpus` CPUs.
    pub fn from_settings(settings: &Effective, threads: usize, cpus: usize) -> TestPolicy {
        let default = TestPolicy::DEFAULT;
        let retries = config::value(&settings.retries);
        let slow = config::value(&settings.slow_timeout);
        let required = match config::value(&settings.threads_required) {
            Some(ThreadsRequired::Count(n)) => n.get() as usize,
            Some(ThreadsRequired::NumCpus) => cpus,
            Some(ThreadsRequired::NumTestThreads) => threads,
            None => 1,
        };
        TestPolicy {
            retries: retries.map_or(0, |r| r.count),
            delay: retries.map_or(RetryDelay::NONE, |r| RetryDelay {
                delay: r.delay.0,
                exponential: r.backoff == Backoff::Exponential,
                max_delay: r.max_delay.map(|d| d.0),
                jitter: r.jitter,
            }),
            flaky: match config::value(&settings.flaky_result) {
                Some(config::FlakyResult::Fail) => FlakyPolicy::Fail,
                _ => FlakyPolicy::Pass,
            },
            strays: match config::value(&settings.strays) {
                Some(config::Strays::Fail) => StraysPolicy::Fail,
                _ => StraysPolicy::Warn,
            },
            // As in nextest, a test never waits for more threads than the run has.
            threads: required.clamp(1, threads.max(1)),
            group: settings
                .test_group
                .as_ref()
                .map(|g| g.value.clone())
                .filter(|g| g != config::GLOBAL_GROUP),
            slow: slow.map_or(default.slow, |s| s.period.0),
            timeout_passes: slow.is_some_and(|s| s.on_timeout == OnTimeout::Pass),
        }
    }
}

/// `fail-fast`: the failures after which the run starts no more tests.
pub fn max_fail(fail_fast: Option<FailFast>) -> Option<u32> {
    match fail_fast.map(|f| f.max_fail) {
        Some(MaxFail::Count(n)) => Some(n.get()),
        Some(MaxFail::All) | None => None,
    }
}

/// Each group's `max-threads` as a number of threads, on a host of `cpus` CPUs.
pub fn group_limits(
    groups: &BTreeMap<String, Sourced<MaxThreads>>,
    cpus: usize,
) -> BTreeMap<String, usize> {
    groups
        .iter()
        .map(|(name, max)| {
            let threads = match max.value {
                MaxThreads::Count(n) => n.get() as usize,
                MaxThreads::NumCpus => cpus,
            };
            (name.clone(), threads)
        })
        .collect()
}

/// Many runs of every selected test, in parallel.
#[derive(Clone, Debug)]
pub struct Stress {
    /// Runs per test; `None` runs until `until`.
    pub count: Option<u32>,
    pub until: Option<Instant>,
    pub until_fail: bool,
    /// With `--stress-shard`: this shard's runs among the `count` (global numbers, from 1).
    pub share: Option<RangeInclusive<u32>>,
}

impl Stress {
    /// The attempt numbers this machine runs of each test, when they are known.
    pub fn attempts(&self) -> Option<RangeInclusive<u32>> {
        self.share
            .clone()
            .or_else(|| self.count.map(|count| 1..=count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_cpus_is_the_cpus_given_within_the_runs_threads() {
        fn sourced<T>(value: T) -> config::Sourced<T> {
            config::Sourced {
                value,
                source: config::Source::Default,
            }
        }
        let settings = Effective {
            threads_required: Some(sourced(ThreadsRequired::NumCpus)),
            ..Effective::default()
        };
        assert_eq!(TestPolicy::from_settings(&settings, 8, 3).threads, 3);
        assert_eq!(TestPolicy::from_settings(&settings, 2, 3).threads, 2);
        let groups = BTreeMap::from([("serial".to_string(), sourced(MaxThreads::NumCpus))]);
        assert_eq!(group_limits(&groups, 5)["serial"], 5);
    }

    #[test]
    fn exponential_delays_double_up_to_the_cap_and_jitter_shortens_them() {
        let delay = RetryDelay {
            delay: Duration::from_secs(1),
            exponential: true,
            max_delay: Some(Duration::from_secs(3)),
            jitter: false,
        };
        assert_eq!(delay.before(2, 0.0), Duration::from_secs(1));
        assert_eq!(delay.before(3, 0.0), Duration::from_secs(2));
        assert_eq!(delay.before(4, 0.0), Duration::from_secs(3));
        let jittered = RetryDelay {
            jitter: true,
            ..delay
        };
        assert_eq!(jittered.before(2, 0.0), Duration::from_millis(500));
        assert_eq!(RetryDelay::NONE.before(5, 0.9), Duration::ZERO);
    }
}
