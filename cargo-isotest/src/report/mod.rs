//! Report: what every test did, as one document (`isotest-report/2`), shown on the
//! terminal while the run goes on and written as JSON and JUnit. Reporters hear of the run
//! through the runner's events and decide nothing about it.

mod document;
pub mod json;
pub mod junit;
pub mod libtest_json;
pub mod merge;
mod stress;
pub mod terminal;

use std::path::Path;
use std::time::Instant;

use crate::config::{Effective, OutputDisplay};
use crate::destination::Destination;
use crate::exit_code::{self, Failure};
use crate::plan::Plan;
use crate::runner::events::{Reporter, RunEvent};
use crate::runner::policy::Policy;
use crate::runner::record::TestRecord;
use crate::sandbox;
pub use document::{BinaryInfo, Fingerprint, RunInfo, RunReport};
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
            show_writes: run.show_writes.as_ref().is_some_and(|s| s.value),
        }
    }
}

/// The JUnit report the run's settings ask for, if any; inside `target_dir` it is written
/// beneath it ([`Destination::chosen`]).
pub fn junit_options(run: &Effective, target_dir: &Path) -> Option<JunitOptions> {
    let junit = &run.junit;
    let path = &junit.path.as_ref()?.value;
    let defaults = JunitOptions::new(Destination::chosen(path, target_dir));
    Some(JunitOptions {
        report_name: junit
            .report_name
            .as_ref()
            .map_or(defaults.report_name.clone(), |n| n.value.clone()),
        store_success_output: junit
            .store_success_output
            .as_ref()
            .map_or(defaults.store_success_output, |s| s.value),
        store_failure_output: junit
            .store_failure_output
            .as_ref()
            .map_or(defaults.store_failure_output, |s| s.value),
        ..defaults
    })
}

/// Every view of a run: the terminal, the JSON report on disk, and at the end JUnit.
pub struct RunReporter {
    terminal: Terminal,
    checkpoint: json::Checkpoint,
    junit: Option<JunitOptions>,
    shuffled: bool,
    /// `run --message-format libtest-json`: events on stdout as they happen.
    stream: Option<libtest_json::Stream>,
}

impl RunReporter {
    /// Announces the plan. `attempts` is how many attempts the progress bar counts, when
    /// that is known; the JSON report goes to `outputs.json`, kept up to date as tests end.
    /// `info` says what the run was; `binaries` comes from the plan, each with the
    /// workspace it ran in and its binary as it is now, which replay checks.
    pub fn start(
        plan: &Plan,
        attempts: Option<usize>,
        outputs: Outputs,
        mut info: RunInfo,
        workspace_root: &Path,
        view: View,
        started: Instant,
    ) -> RunReporter {
        let terminal = Terminal::new(attempts, outputs.json.path().display().to_string(), view);
        terminal.header(
            plan.order.len(),
            plan.binaries,
            plan.listed - plan.order.len(),
        );
        info.seed = plan.seed;
        info.attempt_seeds = plan.attempt_seeds;
        info.binaries = plan
            .binary_specs
            .iter()
            .map(|(id, spec)| {
                let program = plan.tests.iter().find(|t| t.binary.id == *id);
                let binary = BinaryInfo {
                    spec: spec.clone(),
                    workspace_root: Some(workspace_root.to_path_buf()),
                    fingerprint: program.and_then(|t| Fingerprint::of(&t.binary.path)),
                };
                (id.clone(), binary)
            })
            .collect();
        // A test whose overrides change its sandbox: what the binary's spec and its argv
        // would not give back.
        let own_specs = plan
            .tests
            .iter()
            .zip(&plan.specs)
            .filter_map(|(test, spec)| {
                let spec = spec.as_ref()?;
                let binary = plan.binary_specs.get(&test.binary.id)?;
                (sandbox::with_test(binary, spec.argv.clone(), &test.name) != *spec)
                    .then(|| ((test.binary.id.clone(), test.name.clone()), spec.clone()))
            })
            .collect();
        let mut stream = outputs.libtest_json.then(libtest_json::Stream::stdout);
        if let Some(stream) = &mut stream {
            stream.suite_started(plan.order.len());
        }
        RunReporter {
            terminal,
            checkpoint: json::Checkpoint::new(
                outputs.json,
                info,
                outputs.keep_passing_output,
                started,
                own_specs,
            ),
            junit: outputs.junit,
            shuffled: plan.shuffled,
            stream,
        }
    }

    /// Shows the summary and writes the reports.
    pub fn finish(self, records: Vec<TestRecord>, cancelled: bool) -> Result<RunReport, Failure> {
        let report = self.checkpoint.report(records, cancelled);
        stress::show_results(&self.terminal, &report.tests);
        let seed_line = self.shuffled.then(|| {
            format!(
                "{:>12} shuffled with --shuffle={}",
                "seed", report.info.seed
            )
        });
        self.terminal.summary(&report, seed_line.as_deref());
        if let Some(stream) = self.stream {
            stream.suite_finished(&report);
        }
        let failed = |e| Failure::new(exit_code::SETUP_FAILED, e);
        report
            .write_json(self.checkpoint.destination())
            .map_err(failed)?;
        if let Some(options) = &self.junit {
            junit::write(&report, options).map_err(failed)?;
        }
        Ok(report)
    }
}

/// The closing view of a finished report (`merge`), as at the end of a run.
pub fn show(report: &RunReport, replay_from: String) {
    let terminal = Terminal::new(None, replay_from, View::default());
    stress::show_results(&terminal, &report.tests);
    terminal.summary(report, None);
}

/// Where a run's reports go.
pub struct Outputs {
    pub json: Destination,
    pub junit: Option<JunitOptions>,
    pub keep_passing_output: bool,
    pub libtest_json: bool,
}

impl Reporter for RunReporter {
    fn report(&mut self, event: RunEvent<'_>) {
        match event {
            RunEvent::Checkpoint(records) => self.checkpoint.write(records),
            event => {
                if let Some(stream) = &mut self.stream {
                    stream.report(&event);
                }
                self.terminal.report(event)
            }
        }
    }
}
