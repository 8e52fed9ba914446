//! Report: what every test did, as one document (`isotest-report/1`), shown on the
//! terminal while the run goes on and written as JSON and JUnit. Reporters hear of the run
//! through the runner's events and decide nothing about it.

mod document;
mod file;
pub mod json;
pub mod junit;
mod stress;
pub mod terminal;

use std::path::PathBuf;
use std::time::Instant;

use crate::exit_code::{self, Failure};
use crate::plan::Plan;
use crate::runner::events::{Reporter, RunEvent};
use crate::runner::record::TestRecord;
pub use document::{Fingerprint, RunReport};
pub use file::Destination;
use terminal::Terminal;

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
        json_path: Destination,
        junit: Option<PathBuf>,
        workspace_root: PathBuf,
        started: Instant,
    ) -> RunReporter {
        if plan.tests.is_empty() {
            anstream::eprintln!(
                "warning: no test matches the filters; `cargo isotest list` shows them all"
            );
        }
        let terminal = Terminal::new(attempts, json_path.path().display().to_string());
        terminal.header(
            plan.order.len(),
            plan.binaries,
            plan.listed - plan.order.len(),
        );
        RunReporter {
            terminal,
            checkpoint: json::Checkpoint::new(json_path, workspace_root, plan.seed, started),
            junit,
            started,
            seed: plan.seed,
            shuffled: plan.shuffled,
        }
    }

    /// Shows the summary and writes the reports.
    pub fn finish(self, records: Vec<TestRecord>, cancelled: bool) -> Result<RunReport, Failure> {
        let report = RunReport::new(
            self.checkpoint.workspace_root(),
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
        report
            .write_json(self.checkpoint.destination())
            .map_err(failed)?;
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
