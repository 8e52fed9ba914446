//! The run report as one document, `isotest-report/2`: every test's record, each
//! binary's sandbox once, a summary, the seed, and where the run stands in a CI matrix
//! (archive, partition, stress shard). JSON stores it as it is; JUnit and the terminal
//! summary show it; `merge` reads shards of it back.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use isotest_runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::runner::record::{Output, TestOutcome, TestRecord};

pub const SCHEMA: &str = "isotest-report/2";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    pub timed_out: usize,
    pub leaky: usize,
    pub flaky: usize,
    pub not_run: usize,
    pub duration_ms: u64,
}

impl Summary {
    pub fn of(tests: &[TestRecord], duration_ms: u64) -> Summary {
        let count = |outcome| tests.iter().filter(|t| t.last.outcome == outcome).count();
        Summary {
            total: tests.len(),
            passed: count(TestOutcome::Passed),
            failed: count(TestOutcome::Failed),
            ignored: count(TestOutcome::Ignored),
            timed_out: count(TestOutcome::TimedOut),
            not_run: count(TestOutcome::NotRun),
            leaky: tests.iter().filter(|t| t.last.leaky).count(),
            flaky: tests.iter().filter(|t| t.flaky).count(),
            duration_ms,
        }
    }
}

/// What a run was, besides its tests: the same for every record of it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunInfo {
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// Given to every test as `ISOTEST_SEED`, and the order's seed with `--shuffle`.
    pub seed: u64,
    /// Each attempt had a seed of its own, `seed + attempt - 1` (`--stress-shard`).
    pub attempt_seeds: bool,
    /// `sha256:<hex>` of the archive the tests ran from; null when built here.
    pub archive: Option<String>,
    /// `--partition`, as `hash:K/N`.
    pub partition: Option<String>,
    /// `--stress-shard`, as `K/N`.
    pub stress_shard: Option<String>,
    /// `--stress N`: the runs per test of the whole stress test, over every shard.
    pub stress_runs: Option<u32>,
    /// Each binary's sandbox before it is told its test (the test's `argv` and
    /// `ISOTEST_TEST_NAME` complete it), by binary id.
    pub binaries: BTreeMap<String, BinaryInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BinaryInfo {
    pub spec: Spec,
    /// The workspace the binary's tests ran in; `replay` and `bisect` refuse a report of
    /// another one unless told. Missing from reports written before it was recorded.
    #[serde(default)]
    pub workspace_root: Option<PathBuf>,
    /// The binary as it was when its tests ran; `replay` and `bisect` refuse one that
    /// changed since unless told. Missing when it could not be read, or in older reports.
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub schema: String,
    pub summary: Summary,
    #[serde(flatten)]
    pub info: RunInfo,
    /// The run was interrupted; tests it did not reach are `not-run`.
    pub cancelled: bool,
    /// A checkpoint written while the run still went on: what a runner that was killed
    /// outright (SIGKILL, out of memory) knew. A finished run's report says false.
    pub in_progress: bool,
    pub tests: Vec<TestRecord>,
}

/// What tells a rebuilt binary from the one that ran: its size and modification time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fingerprint {
    pub path: PathBuf,
    pub len: u64,
    /// Nanoseconds since the epoch: 64 bits hold them until 2262, and JSON readers that
    /// go through a generic value (`merge`) take no wider integer.
    pub modified_ns: i64,
}

impl Fingerprint {
    pub fn of(path: &Path) -> Option<Fingerprint> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Fingerprint {
            path: path.to_path_buf(),
            len: meta.len(),
            modified_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        })
    }
}

impl RunReport {
    /// The report of `tests`; unless `keep_passing_output`, passing attempts' output is
    /// left out of it.
    pub fn new(
        mut tests: Vec<TestRecord>,
        duration_ms: u64,
        info: RunInfo,
        cancelled: bool,
        keep_passing_output: bool,
    ) -> RunReport {
        if !keep_passing_output {
            for test in &mut tests {
                for attempt in std::iter::once(&mut test.last).chain(&mut test.attempts) {
                    if attempt.outcome == TestOutcome::Passed {
                        attempt.output = Output::default();
                    }
                }
            }
        }
        RunReport {
            schema: SCHEMA.into(),
            summary: Summary::of(&tests, duration_ms),
            info,
            cancelled,
            in_progress: false,
            tests,
        }
    }
}
