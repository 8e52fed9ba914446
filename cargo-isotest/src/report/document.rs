//! The run report as one document, `isotest-report/1`: every test's record, a summary
//! and the seed. JSON stores it as it is; JUnit and the terminal summary show it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// The workspace the run was in; `replay` refuses a report of another one unless told.
    pub workspace_root: PathBuf,
    /// Every test binary as it was when it ran; `replay` refuses one that changed since.
    pub binaries: Vec<Fingerprint>,
    pub tests: Vec<TestRecord>,
}

/// What tells a rebuilt binary from the one that ran: its size and modification time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fingerprint {
    pub path: PathBuf,
    pub len: u64,
    pub modified_ns: i128,
}

impl Fingerprint {
    pub fn of(path: &Path) -> Option<Fingerprint> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Fingerprint {
            path: path.to_path_buf(),
            len: meta.len(),
            modified_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        })
    }
}

impl RunReport {
    pub fn new(
        workspace_root: &Path,
        tests: Vec<TestRecord>,
        duration_ms: u64,
        seed: u64,
        cancelled: bool,
    ) -> RunReport {
        let mut programs: Vec<&str> = tests
            .iter()
            .filter_map(|t| t.spec.as_ref()?.argv.first().map(String::as_str))
            .collect();
        programs.sort_unstable();
        programs.dedup();
        RunReport {
            schema: SCHEMA,
            summary: Summary::of(&tests, duration_ms),
            seed,
            cancelled,
            in_progress: false,
            workspace_root: workspace_root.to_path_buf(),
            binaries: programs
                .into_iter()
                .filter_map(|p| Fingerprint::of(Path::new(p)))
                .collect(),
            tests,
        }
    }
}
