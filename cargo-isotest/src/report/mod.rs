//! Report: what every test did, as one document (`isotest-report/1`), shown on the
//! terminal while the run goes on and written as JSON and JUnit. Reporters hear of the run
//! through the runner's events and decide nothing about it.

pub mod json;
pub mod junit;
mod stress;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::exit_code::{self, Failure};
use crate::plan::Plan;
use crate::runner::events::{Reporter, RunEvent};
use crate::runner::record::{TestOutcome, TestRecord};
use terminal::Terminal;

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

/// Every view of a run: the terminal, the JSON report on disk, and at the end JUnit.
pub struct RunReporter {
    terminal: Terminal,
    checkpoint: json::Checkpoint,
    junit: Option<PathBuf>,
    started: Instant,
    seed: u64,
    shuffled: bool,
}

impl RunReporter {
    /// Announces the plan. `attempts` is how many attempts the progress bar counts, when
    /// that is known; the JSON report goes to `json_path`, kept up to date as tests end.
    pub fn start(
        plan: &Plan,
        attempts: Option<usize>,
        json_path: PathBuf,
        junit: Option<PathBuf>,
        started: Instant,
    ) -> RunReporter {
        if plan.tests.is_empty() {
            anstream::eprintln!(
                "warning: no test matches the filters; `cargo isotest list` shows them all"
            );
        }
        let terminal = Terminal::new(attempts, json_path.display().to_string());
        terminal.header(
            plan.order.len(),
            plan.binaries,
            plan.listed - plan.order.len(),
        );
        RunReporter {
            terminal,
            checkpoint: json::Checkpoint::new(json_path, plan.seed, started),
            junit,
            started,
            seed: plan.seed,
            shuffled: plan.shuffled,
        }
    }

    /// Shows the summary and writes the reports.
    pub fn finish(self, records: Vec<TestRecord>, cancelled: bool) -> Result<RunReport, Failure> {
        let report = RunReport::new(
            records,
            self.started.elapsed().as_millis() as u64,
            self.seed,
            cancelled,
        );
        stress::show_results(&self.terminal, &report.tests);
        let seed_line = self
            .shuffled
            .then(|| format!("{:>12} shuffled with --shuffle={}", "seed", self.seed));
        self.terminal.summary(&report, seed_line.as_deref());
        let failed = |e| Failure::new(exit_code::SETUP_FAILED, e);
        report.write_json(self.checkpoint.path()).map_err(failed)?;
        if let Some(path) = &self.junit {
            junit::write(&report, path).map_err(failed)?;
        }
        Ok(report)
    }
}

impl Reporter for RunReporter {
    fn report(&mut self, event: RunEvent<'_>) {
        match event {
            RunEvent::Checkpoint(records) => self.checkpoint.write(records),
            event => self.terminal.report(event),
        }
    }
}

/// Writes through a temporary file and a rename, so that a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
