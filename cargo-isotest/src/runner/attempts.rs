//! Run: which attempt of which test goes to the next idle helper (first runs, retries,
//! stress rounds), and what each result makes of the test's record.

use std::collections::VecDeque;
use std::time::Instant;

use clap::ValueEnum;
use isotest_runtime::{Captured, Outcome, Spec};

use crate::plan::TestInstance;
use crate::pool::helper::HelperError;
use crate::pool::{Dispatch, Event};
use crate::report::terminal::Terminal;
use crate::report::{AttemptRecord, Output, TestOutcome, TestRecord};
use crate::runner::stress::{self, KEPT_FAILURES};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum StraysPolicy {
    #[default]
    Warn,
    Fail,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum FlakyPolicy {
    /// A test that passes on a retry counts as passed.
    #[default]
    Pass,
    /// A test that needed a retry to pass fails the run.
    Fail,
}

/// How a run treats results.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub retries: u32,
    pub flaky: FlakyPolicy,
    pub strays: StraysPolicy,
    pub fail_fast: bool,
    pub stress: Option<Stress>,
}

/// Many runs of every selected test, in parallel.
#[derive(Clone, Debug)]
pub struct Stress {
    /// Runs per test; `None` runs until `until`.
    pub count: Option<u32>,
    pub until: Option<Instant>,
    pub until_fail: bool,
}

/// One run of one test: the index into the selected tests and its number, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub test: usize,
    pub number: u32,
}

/// The sandbox of one attempt: the test's own, telling the test which attempt it is.
pub fn attempt_spec(spec: &Spec, number: u32) -> Spec {
    let mut spec = spec.clone();
    spec.env
        .set
        .insert("ISOTEST_ATTEMPT".into(), number.to_string());
    spec
}

/// The run's state, fed by the helpers' results.
pub struct Tests<'a> {
    tests: &'a [TestInstance],
    specs: &'a [Option<Spec>],
    policy: &'a Policy,
    terminal: &'a mut Terminal,
    queue: VecDeque<Attempt>,
    attempts: Vec<Vec<AttemptRecord>>,
    started: Vec<u32>,
    stopped: bool,
}

impl<'a> Tests<'a> {
    /// `order` is the order of first runs (the selection's, or shuffled).
    pub fn new(
        tests: &'a [TestInstance],
        specs: &'a [Option<Spec>],
        order: &[usize],
        policy: &'a Policy,
        terminal: &'a mut Terminal,
    ) -> Tests<'a> {
        let rounds = policy.stress.as_ref().and_then(|s| s.count).unwrap_or(1);
        // Stress rounds interleave, so every test makes progress and runs beside the others.
        let queue = (1..=rounds)
            .flat_map(|number| order.iter().map(move |&test| Attempt { test, number }))
            .collect();
        Tests {
            tests,
            specs,
            policy,
            terminal,
            queue,
            attempts: vec![Vec::new(); tests.len()],
            started: vec![0; tests.len()],
            stopped: false,
        }
    }

    fn label(&self, attempt: Attempt) -> String {
        let test = &self.tests[attempt.test];
        format!("{} {}", test.binary.id, test.name)
    }

    /// Another round of every test, while a `--stress-duration` lasts.
    fn refill(&mut self) {
        let Some(until) = self.policy.stress.as_ref().and_then(|s| s.until) else {
            return;
        };
        if Instant::now() >= until {
            return;
        }
        for test in (0..self.tests.len()).filter(|&t| self.specs[t].is_some()) {
            self.queue.push_back(Attempt {
                test,
                number: self.started[test] + 1,
            });
            self.started[test] += 1;
        }
    }

    fn finished(&mut self, attempt: Attempt, result: Result<Outcome, HelperError>) {
        let test = &self.tests[attempt.test];
        let mut record = classify(test, attempt.number, result, self.policy.strays);
        if record.outcome == TestOutcome::NotRun {
            return;
        }
        if record.is_failure() {
            record.failure_message = Some(stress::failure_message(&record));
        }
        if let Some(stress) = &self.policy.stress {
            self.terminal.stress_attempt(&record);
            let failures = self.attempts[attempt.test]
                .iter()
                .filter(|a| a.is_failure())
                .count();
            if !record.is_failure() || failures >= KEPT_FAILURES {
                // Only the first failures are kept whole; the rest count in the summary.
                record.output = Output::default();
            }
            if record.is_failure() && stress.until_fail {
                self.stopped = true;
            }
            self.attempts[attempt.test].push(record);
            return;
        }
        let retry = record.is_failure() && attempt.number <= self.policy.retries && !self.stopped;
        if retry {
            self.terminal
                .retrying(&self.label(attempt), &record, self.policy.retries + 1);
            self.queue.push_front(Attempt {
                test: attempt.test,
                number: attempt.number + 1,
            });
            self.attempts[attempt.test].push(record);
            return;
        }
        self.attempts[attempt.test].push(record);
        let final_record = self.record(attempt.test);
        self.terminal.finished(&final_record);
        if final_record.is_failure() && self.policy.fail_fast {
            self.stopped = true;
        }
    }

    /// The test's record as it stands.
    pub fn record(&self, index: usize) -> TestRecord {
        let test = &self.tests[index];
        let attempts = &self.attempts[index];
        let Some(spec) = &self.specs[index] else {
            return TestRecord::not_run(
                &test.binary.id,
                &test.name,
                test.kind,
                TestOutcome::Ignored,
            );
        };
        let Some(last) = attempts.last() else {
            return TestRecord::not_run(
                &test.binary.id,
                &test.name,
                test.kind,
                TestOutcome::NotRun,
            );
        };
        let mut record = TestRecord {
            binary_id: test.binary.id.clone(),
            name: test.name.clone(),
            kind: test.kind,
            last: last.clone(),
            flaky: false,
            attempts: Vec::new(),
            stress: None,
            spec: Some(spec.clone()),
        };
        if self.policy.stress.is_some() {
            let summary = stress::summarize(attempts);
            let failing: Vec<AttemptRecord> = attempts
                .iter()
                .filter(|a| a.is_failure())
                .take(KEPT_FAILURES)
                .cloned()
                .collect();
            if let Some(first) = failing.first() {
                record.last = first.clone();
            }
            record.attempts = failing;
            record.stress = Some(summary);
            return record;
        }
        record.flaky = !last.is_failure() && attempts.len() > 1;
        if record.flaky
            && self.policy.flaky == FlakyPolicy::Fail
            && let Some(first_failure) = attempts.iter().find(|a| a.is_failure())
        {
            // The run fails because of the failing attempt: that is what to show and replay.
            record.last = first_failure.clone();
            record.last.error = Some(format!(
                "flaky: it failed {} time(s) before passing on attempt {} (--flaky=fail)",
                attempts.len() - 1,
                last.attempt
            ));
        }
        if attempts.len() > 1 {
            record.attempts = attempts.clone();
        }
        record
    }

    pub fn records(&self) -> Vec<TestRecord> {
        (0..self.tests.len()).map(|i| self.record(i)).collect()
    }
}

impl Dispatch<Attempt, Result<Outcome, HelperError>> for Tests<'_> {
    fn next(&mut self) -> Option<Attempt> {
        if self.stopped {
            return None;
        }
        if self.queue.is_empty() {
            self.refill();
        }
        let attempt = self.queue.pop_front()?;
        self.started[attempt.test] = self.started[attempt.test].max(attempt.number);
        Some(attempt)
    }

    fn on_event(&mut self, event: Event<Attempt, Result<Outcome, HelperError>>) {
        match event {
            Event::Started(attempt) => {
                let label = self.label(attempt);
                self.terminal.started(attempt.test, attempt.number, label);
            }
            Event::Finished(attempt, result) => {
                self.terminal.ended(attempt.test, attempt.number);
                self.finished(attempt, result);
            }
            Event::Tick => self.terminal.tick(),
        }
    }
}

/// Turns a sandbox's outcome into the attempt's record.
pub fn classify(
    test: &TestInstance,
    number: u32,
    result: Result<Outcome, HelperError>,
    strays: StraysPolicy,
) -> AttemptRecord {
    let mut record = AttemptRecord::for_test(number);
    let outcome = match result {
        Ok(outcome) => outcome,
        // The helper was killed: the run is being cancelled.
        Err(HelperError::Lost { .. }) => return record,
        Err(error @ HelperError::Sandbox { .. }) => {
            record.outcome = TestOutcome::Failed;
            record.error = Some(format!("the test's sandbox could not be created: {error}"));
            return record;
        }
    };
    record.duration_ms = outcome.duration.as_millis() as u64;
    record.leaky = !outcome.strays.is_empty();
    record.outcome = if outcome.timed_out {
        TestOutcome::TimedOut
    } else if outcome.exit.success() {
        TestOutcome::Passed
    } else {
        TestOutcome::Failed
    };
    if let Some(error) = &outcome.start_error {
        record.error = Some(error.to_string());
    } else if record.outcome == TestOutcome::Passed && ran_no_test(&outcome.stdout) {
        record.outcome = TestOutcome::Failed;
        record.error = Some(format!(
            "the binary listed `{}` but ran no test when asked for it by exact name: its harness does not honour `--exact`",
            test.name
        ));
    }
    if record.outcome == TestOutcome::Passed && record.leaky && strays == StraysPolicy::Fail {
        record.outcome = TestOutcome::Failed;
        record.error = Some(format!(
            "it left {} process(es) behind (--strays=fail)",
            outcome.strays.len()
        ));
    }
    record.exit = Some(outcome.exit);
    record.strays = outcome.strays;
    record.output = Output {
        stdout: outcome.stdout,
        stderr: outcome.stderr,
    };
    if record.is_failure() {
        record.hint = sandbox_hint(&record.output);
    }
    record
}

/// libtest's and libtest-mimic's own words for an empty run.
fn ran_no_test(stdout: &Captured) -> bool {
    stdout
        .lossy()
        .lines()
        .any(|line| line.trim() == "running 0 tests")
}

/// Points at the sandbox rule a failure's output suggests it ran into. Only the kernel's
/// own error texts count, and it is phrased as a possibility.
fn sandbox_hint(output: &Output) -> Option<String> {
    let text = format!("{}{}", output.stdout.lossy(), output.stderr.lossy());
    if text.contains("Read-only file system") || text.contains("os error 30") {
        return Some(
            "the output mentions a read-only file system. In the sandbox the source tree, the target \
             directory and the system directories are read-only; a test can write to $CARGO_TARGET_TMPDIR, \
             /tmp or $HOME, which are private to it. To let tests write somewhere else, pass --bind-rw PATH."
                .into(),
        );
    }
    if text.contains("Network is unreachable") || text.contains("os error 101") {
        return Some(
            "the output mentions an unreachable network. In the sandbox only the loopback interface exists \
             (127.0.0.1 and ::1 work). To give tests the host's network, pass --net host."
                .into(),
        );
    }
    None
}
