//! How a run treats results: the choices the flags make, which the verdicts apply.

use std::ops::RangeInclusive;
use std::time::Instant;

use clap::ValueEnum;
use isotest_runtime::KeepWrites;

use super::budget::MemoryBudget;

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

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub retries: u32,
    pub flaky: FlakyPolicy,
    pub strays: StraysPolicy,
    pub fail_fast: bool,
    pub stress: Option<Stress>,
    /// `--keep-writes`: where each attempt's writes are kept, below by test name.
    pub keep_writes: Option<KeepWrites>,
    pub memory_budget: Option<MemoryBudget>,
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
