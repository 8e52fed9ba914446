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

use crate::config::{Effective, OutputDisplay};
use crate::exit_code::{self, Failure};
use crate::plan::Plan;
use crate::runner::events::{Reporter, RunEvent};
use crate::runner::policy::Policy;
use crate::runner::record::TestRecord;
pub use document::RunReport;
pub use file::write_atomically;
use junit::JunitOptions;
pub use terminal::View;
use terminal::{Terminal, TestView};

impl View {
    /// What the run's settings and each test's ask the terminal to show.
    pub fn new(run: &Effective, plan: &Plan, policy: &Policy, hide_progress_bar: bool) -> View {
        let defaults = View::default();
        View {
            status_level: run
                .status_level
                .as_ref()
                .map_or(defaults.status_level, |s| s.value),
            final_status_level: run
                .final_status_level
                .as_ref()
                .map_or(defaults.final_status_level, |s| s.value),
            tests: plan
                .settings
                .iter()
                .enumerate()
                .map(|(index, settings)| TestView {
                    success_output: settings
                        .success_output
                        .as_ref()
                        .map_or(OutputDisplay::Never, |s| s.value),
                    failure_output: settings
                        .failure_output
                        .as_ref()
                        .map_or(OutputDisplay::Immediate, |s| s.value),
                    slow: policy.test(index).slow,
                })
                .collect(),
            hide_progress_bar,
            to_run: plan.order.len(),
        }
    }
}

/// The JUnit report the run's settings ask for, if any.
pub fn junit_options(run: &Effective) -> Option<JunitOptions> {
    let junit = &run.junit;
    Some(JunitOptions {
        path: junit.path.as_ref()?.value.clone(),
        report_name: junit
            .report_name
            .as_ref()
            .map_or_else(|| "isotest-run".into(), |n| n.value.clone()),
        store_success_output: junit.store_success_output.as_ref().is_some_and(|s| s.value),
        store_failure_output: junit.store_failure_output.as_ref().is_none_or(|s| s.value),
    })
}

/// Every view of a run: the terminal, the JSON report on disk, and at the end JUnit.
pub struct RunReporter {
    terminal: Terminal,
    checkpoint: json::Checkpoint,
    junit: Option<JunitOptions>,
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
        junit: Option<JunitOptions>,
        view: View,
        started: Instant,
    ) -> RunReporter {
        let terminal = Terminal::new(attempts, json_path.display().to_string(), view);
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
        if let Some(options) = &self.junit {
            junit::write(&report, options).map_err(failed)?;
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
