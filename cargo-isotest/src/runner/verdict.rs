//! Verdicts: pure functions from what a sandbox produced and the run's policy to what an
//! attempt, a test and the run are (passed, failed, flaky, leaky), with a hint at the cause.

use isotest_runtime::{Captured, Outcome, Spec};

use super::policy::{FlakyPolicy, Policy, StraysPolicy};
use super::record::{AttemptRecord, Output, TestOutcome, TestRecord};
use super::stress::{self, KEPT_FAILURES};
use crate::launch::helper::HelperError;
use crate::plan::TestInstance;

/// Turns a sandbox's outcome into attempt `number`'s record. A lost helper means the run
/// is being cancelled: the attempt stays not run.
pub fn attempt(
    name: &str,
    number: u32,
    result: Result<Outcome, HelperError>,
    strays: StraysPolicy,
) -> AttemptRecord {
    let mut record = AttemptRecord::for_test(number);
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(HelperError::Lost { .. }) => return record,
        Err(error @ HelperError::Sandbox { .. }) => {
            record.outcome = TestOutcome::Failed;
            record.error = Some(format!("the test's sandbox could not be created: {error}"));
            record.failure_message = Some(record.describe_failure());
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
            "the binary listed `{name}` but ran no test when asked for it by exact name: its harness does not honour `--exact`"
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
        record.failure_message = Some(record.describe_failure());
    }
    record
}

/// Whether a failed attempt runs again: within `--retries`, outside stress runs, while the
/// run goes on.
pub fn retry(record: &AttemptRecord, policy: &Policy, stopped: bool) -> bool {
    policy.stress.is_none() && record.is_failure() && record.attempt <= policy.retries && !stopped
}

/// Whether a stress attempt keeps its output, given how many failures the test had before
/// it: only the first failures are kept whole; the rest count in the summary.
pub fn keep_stress_output(record: &AttemptRecord, earlier_failures: usize) -> bool {
    record.is_failure() && earlier_failures < KEPT_FAILURES
}

/// A test's record from its attempts so far. `spec` is `None` for a test that is reported
/// without running (ignored).
pub fn test(
    test: &TestInstance,
    spec: Option<&Spec>,
    attempts: &[AttemptRecord],
    policy: &Policy,
) -> TestRecord {
    let Some(spec) = spec else {
        return TestRecord::not_run(&test.binary.id, &test.name, test.kind, TestOutcome::Ignored);
    };
    let Some(last) = attempts.last() else {
        return TestRecord::not_run(&test.binary.id, &test.name, test.kind, TestOutcome::NotRun);
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
    if policy.stress.is_some() {
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
        && policy.flaky == FlakyPolicy::Fail
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
        record.attempts = attempts.to_vec();
    }
    record
}

/// Whether the run failed: a test failed, or a stressed test failed at least once.
pub fn run_failed(records: &[TestRecord]) -> bool {
    records
        .iter()
        .any(|t| t.is_failure() || t.stress.as_ref().is_some_and(|s| s.failures > 0))
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
