//! Report: what every test did, as one document (`isotest-report/1`), with the terminal,
//! JSON and JUnit views of it.

pub mod junit;
pub mod terminal;

use std::path::Path;

use isotest_runtime::{Captured, Exit, Spec, Stray};
use serde::Serialize;

use crate::cargo::build::TestKind;
use crate::runner::stress::StressSummary;

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

/// One test's record, in the JSON report as it is here. Its outcome, exit, output and
/// strays are those of its last attempt.
#[derive(Clone, Debug, Serialize)]
pub struct TestRecord {
    pub binary_id: String,
    pub name: String,
    pub kind: TestKind,
    #[serde(flatten)]
    pub last: AttemptRecord,
    /// Passed after failing (with `--retries`).
    pub flaky: bool,
    /// Every attempt, when there was more than one (retries), or the failing attempts a
    /// stress run kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stress: Option<StressSummary>,
    /// The sandbox it ran in, with `ISOTEST_ATTEMPT` set per attempt; replaying needs
    /// nothing else.
    pub spec: Option<Spec>,
}

/// One run of one test in one fresh sandbox.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    /// 1 for the first run.
    pub attempt: u32,
    pub outcome: TestOutcome,
    /// How the test process ended; null when it did not run.
    pub exit: Option<Exit>,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub output: Output,
    pub strays: Vec<Stray>,
    /// Left processes behind (whether or not that failed it).
    pub leaky: bool,
    /// isotest's own explanation of a failure the exit status does not tell.
    pub error: Option<String>,
    /// A sandbox rule that likely caused the failure, and how to relax it.
    pub hint: Option<String>,
    /// Why it failed in one line: the panic message, else how it ended.
    pub failure_message: Option<String>,
}

/// Captured output: raw here, lossy UTF-8 with a truncation flag in JSON.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub stdout: Captured,
    pub stderr: Captured,
}

impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Output", 4)?;
        out.serialize_field("stdout", &self.stdout.lossy())?;
        out.serialize_field("stdout_truncated", &self.stdout.truncated())?;
        out.serialize_field("stderr", &self.stderr.lossy())?;
        out.serialize_field("stderr_truncated", &self.stderr.truncated())?;
        out.end()
    }
}

impl AttemptRecord {
    /// An attempt that has not run (yet); its fields are filled in as it ends.
    pub fn for_test(attempt: u32) -> AttemptRecord {
        AttemptRecord {
            attempt,
            outcome: TestOutcome::NotRun,
            exit: None,
            duration_ms: 0,
            output: Output::default(),
            strays: Vec::new(),
            leaky: false,
            error: None,
            hint: None,
            failure_message: None,
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, TestOutcome::Failed | TestOutcome::TimedOut)
    }
}

impl TestRecord {
    /// A test that was selected but did not run: ignored, or stopped before its turn.
    pub fn not_run(
        binary_id: &str,
        name: &str,
        kind: TestKind,
        outcome: TestOutcome,
    ) -> TestRecord {
        let mut last = AttemptRecord::for_test(0);
        last.outcome = outcome;
        TestRecord {
            binary_id: binary_id.to_string(),
            name: name.to_string(),
            kind,
            last,
            flaky: false,
            attempts: Vec::new(),
            stress: None,
            spec: None,
        }
    }

    pub fn is_failure(&self) -> bool {
        self.last.is_failure()
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

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        crate::write_atomically(path, &bytes)
            .map_err(|e| anyhow::anyhow!("cannot write the JSON report to {}: {e}", path.display()))
    }
}
