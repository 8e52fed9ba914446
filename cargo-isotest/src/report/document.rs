//! The run report as one document, `isotest-report/1`: every test's record, a summary
//! and the seed. JSON stores it as it is; JUnit and the terminal summary show it.

use serde::Serialize;

use crate::runner::record::{TestOutcome, TestRecord};

pub const SCHEMA: &str = "isotest-report/1";

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
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

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub schema: &'static str,
    pub summary: Summary,
    /// Given to every test as `ISOTEST_SEED`, and the order's seed with `--shuffle`.
    pub seed: u64,
    /// The run was interrupted; tests it did not reach are `not-run`.
    pub cancelled: bool,
    /// A checkpoint written while the run still went on: what a runner that was killed
    /// outright (SIGKILL, out of memory) knew. A finished run's report says false.
    pub in_progress: bool,
    pub tests: Vec<TestRecord>,
}

impl RunReport {
    pub fn new(tests: Vec<TestRecord>, duration_ms: u64, seed: u64, cancelled: bool) -> RunReport {
        RunReport {
            schema: SCHEMA,
            summary: Summary::of(&tests, duration_ms),
            seed,
            cancelled,
            in_progress: false,
            tests,
        }
    }
}
