//! Report: what every test did, as one document (`isotest-report/1`), with the terminal,
//! JSON and JUnit views of it.

pub mod junit;
pub mod terminal;

use std::path::Path;

use isotest_runtime::{Captured, Exit, Spec, Stray};
use serde::Serialize;

use crate::discover::TestKind;

pub const SCHEMA: &str = "isotest-report/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestOutcome {
    Passed,
    Failed,
    Ignored,
    TimedOut,
    /// Not started: the run stopped first (fail-fast, or cancelled).
    NotRun,
}

/// One test's record, in the JSON report as it is here.
#[derive(Clone, Debug, Serialize)]
pub struct TestRecord {
    pub binary_id: String,
    pub name: String,
    pub kind: TestKind,
    pub outcome: TestOutcome,
    /// How the test process ended; null when it did not run.
    pub exit: Option<Exit>,
    pub duration_ms: u64,
    #[serde(serialize_with = "lossy")]
    pub stdout: Captured,
    pub stdout_truncated: bool,
    #[serde(serialize_with = "lossy")]
    pub stderr: Captured,
    pub stderr_truncated: bool,
    pub strays: Vec<Stray>,
    /// Left processes behind (whether or not that failed it).
    pub leaky: bool,
    /// isotest's own explanation of a failure the exit status does not tell.
    pub error: Option<String>,
    /// A sandbox rule that likely caused the failure, and how to relax it.
    pub hint: Option<String>,
    /// The sandbox it ran in; replaying needs nothing else.
    pub spec: Option<Spec>,
}

fn lossy<S: serde::Serializer>(captured: &Captured, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&captured.lossy())
}

impl TestRecord {
    /// A test that was selected but not run (ignored, or stopped before its turn).
    pub fn not_run(
        binary_id: &str,
        name: &str,
        kind: TestKind,
        outcome: TestOutcome,
    ) -> TestRecord {
        TestRecord {
            binary_id: binary_id.to_string(),
            name: name.to_string(),
            kind,
            outcome,
            exit: None,
            duration_ms: 0,
            stdout: Captured::default(),
            stdout_truncated: false,
            stderr: Captured::default(),
            stderr_truncated: false,
            strays: Vec::new(),
            leaky: false,
            error: None,
            hint: None,
            spec: None,
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, TestOutcome::Failed | TestOutcome::TimedOut)
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    pub timed_out: usize,
    pub leaky: usize,
    pub not_run: usize,
    pub duration_ms: u64,
}

impl Summary {
    pub fn of(tests: &[TestRecord], duration_ms: u64) -> Summary {
        let count = |outcome| tests.iter().filter(|t| t.outcome == outcome).count();
        Summary {
            total: tests.len(),
            passed: count(TestOutcome::Passed),
            failed: count(TestOutcome::Failed),
            ignored: count(TestOutcome::Ignored),
            timed_out: count(TestOutcome::TimedOut),
            not_run: count(TestOutcome::NotRun),
            leaky: tests.iter().filter(|t| t.leaky).count(),
            duration_ms,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub schema: &'static str,
    pub summary: Summary,
    /// The run was interrupted; tests it did not reach are `not-run`.
    pub cancelled: bool,
    pub tests: Vec<TestRecord>,
}

impl RunReport {
    pub fn new(tests: Vec<TestRecord>, duration_ms: u64, cancelled: bool) -> RunReport {
        RunReport {
            schema: SCHEMA,
            summary: Summary::of(&tests, duration_ms),
            cancelled,
            tests,
        }
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        crate::write_atomically(path, &bytes)
            .map_err(|e| anyhow::anyhow!("cannot write the JSON report to {}: {e}", path.display()))
    }
}
