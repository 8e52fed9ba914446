//! `run --message-format libtest-json`: a live stream of JSON lines on stdout, in
//! libtest's `--format json` shape as nextest prints it (a test's name is
//! `<binary id>$<test name>`), so that tools which follow `cargo test -- -Z
//! unstable-options --format json` or nextest's stream can follow a run.

use std::io::Write;

use serde_json::{Value, json};

use super::document::RunReport;
use crate::destination::{Destination, Sink};
use crate::runner::events::RunEvent;
use crate::runner::record::{AttemptRecord, TestOutcome, TestRecord};

pub struct Stream {
    /// Stderr is the terminal's; a closed stdout ends the stream (`None`), not the run.
    sink: Option<Sink>,
}

impl Stream {
    /// The stream on stdout, written through the one writer of every file isotest makes.
    pub fn stdout() -> Stream {
        Stream {
            sink: Destination::Stdout.open().ok(),
        }
    }

    fn emit(&mut self, value: Value) {
        let Some(sink) = &mut self.sink else {
            return;
        };
        // One write a line, so that no line is ever split by another writer's.
        if sink.write_all(format!("{value}\n").as_bytes()).is_err() {
            self.sink = None;
        }
    }

    pub fn suite_started(&mut self, tests: usize) {
        self.emit(json!({ "type": "suite", "event": "started", "test_count": tests }));
    }

    pub fn report(&mut self, event: &RunEvent<'_>) {
        match event {
            RunEvent::AttemptStarted { label, attempt, .. } => {
                self.emit(json!({
                    "type": "test",
                    "event": "started",
                    "name": stream_name(label),
                    "attempt": attempt,
                }));
            }
            RunEvent::Retrying { label, attempt, .. } => {
                let mut line = attempt_line(&stream_name(label), attempt);
                line["event"] = "retry-failed".into();
                self.emit(line);
            }
            RunEvent::StressAttempt { label, attempt } => {
                self.emit(attempt_line(&stream_name(label), attempt));
            }
            RunEvent::TestFinished { record, .. } => self.emit(test_line(record)),
            _ => {}
        }
    }

    pub fn suite_finished(mut self, report: &RunReport) {
        for record in report
            .tests
            .iter()
            .filter(|t| t.last.outcome == TestOutcome::Ignored || t.stress.is_some())
        {
            self.emit(test_line(record));
        }
        let summary = &report.summary;
        let failed = summary.failed + summary.timed_out;
        self.emit(json!({
            "type": "suite",
            "event": if failed > 0 || report.cancelled { "failed" } else { "ok" },
            "passed": summary.passed,
            "failed": failed,
            "ignored": summary.ignored,
            "measured": 0,
            "filtered_out": 0,
            "exec_time": summary.duration_ms as f64 / 1000.0,
        }));
        if let Some(sink) = self.sink {
            // Stdout is written as it goes: there is nothing left to put in place.
            let _ = sink.finish();
        }
    }
}

/// nextest's `<binary id>$<test name>`.
fn stream_name(label: &str) -> String {
    label.replacen(' ', "$", 1)
}

fn event_name(outcome: TestOutcome) -> &'static str {
    match outcome {
        TestOutcome::Passed => "ok",
        TestOutcome::Failed | TestOutcome::TimedOut => "failed",
        TestOutcome::Ignored => "ignored",
        TestOutcome::NotRun => "not-run",
    }
}

fn attempt_line(name: &str, attempt: &AttemptRecord) -> Value {
    let mut line = json!({
        "type": "test",
        "event": event_name(attempt.outcome),
        "name": name,
        "attempt": attempt.attempt,
        "exec_time": attempt.duration_ms as f64 / 1000.0,
    });
    if attempt.is_failure() {
        line["stdout"] = format!(
            "{}{}",
            attempt.output.stdout.lossy(),
            attempt.output.stderr.lossy()
        )
        .into();
        line["message"] = attempt.failure_message.clone().into();
    }
    line
}

fn test_line(record: &TestRecord) -> Value {
    let mut line = attempt_line(
        &format!("{}${}", record.binary_id, record.name),
        &record.last,
    );
    if let Some(stress) = &record.stress {
        line["event"] = if stress.failures > 0 { "failed" } else { "ok" }.into();
        line["stress"] = serde_json::to_value(stress).unwrap_or(Value::Null);
    }
    if record.flaky {
        line["flaky"] = true.into();
    }
    line
}
