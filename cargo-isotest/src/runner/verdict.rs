//! Verdicts: pure functions from what a sandbox produced and the run's policy to what an
//! attempt, a test and the run are (passed, failed, flaky, leaky), with a hint at the cause.

use isotest_runtime::{Outcome, Spec};

use super::policy::{FlakyPolicy, StraysPolicy, TestPolicy};
use super::protocol;
use super::record::{AttemptRecord, Output, Panic, TestOutcome, TestRecord};
use super::stress::{self, KEPT_FAILURES};
use crate::args::limit_hint;
use crate::launch::helper::HelperError;
use crate::plan::TestInstance;

/// Turns a sandbox's outcome into attempt `number`'s record. A cancelled run leaves the
/// attempt not run, saying so; a helper lost otherwise fails it, with the cause.
pub fn attempt(
    name: &str,
    number: u32,
    result: Result<Outcome, HelperError>,
    policy: &TestPolicy,
) -> AttemptRecord {
    let strays = policy.strays;
    let mut record = AttemptRecord::for_test(number);
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(HelperError::Cancelled) => {
            record.error = Some(
                "the run was cancelled (Ctrl-C, SIGTERM or SIGHUP) while it ran; its sandbox was killed"
                    .into(),
            );
            return record;
        }
        Err(error @ HelperError::Lost { .. }) => {
            record.outcome = TestOutcome::Failed;
            record.error = Some(format!("it did not finish: {error}"));
            record.failure_message = Some(record.describe_failure());
            return record;
        }
        Err(HelperError::Sandbox { message, setup }) => {
            record.outcome = TestOutcome::Failed;
            // Without a setup step the sandbox was made, and lost later (its init killed).
            record.error = Some(match setup {
                Some(_) => format!("the test's sandbox could not be created: {message}"),
                None => format!("the test's sandbox failed: {message}"),
            });
            record.failure_message = Some(record.describe_failure());
            return record;
        }
    };
    record.duration_ms = outcome.duration.as_millis() as u64;
    record.leaky = !outcome.strays.is_empty();
    record.outcome = if outcome.timed_out && policy.timeout_passes {
        TestOutcome::Passed
    } else if outcome.timed_out {
        TestOutcome::TimedOut
    } else if outcome.exit.success() {
        TestOutcome::Passed
    } else {
        TestOutcome::Failed
    };
    if let Some(error) = &outcome.start_error {
        record.error = Some(error.to_string());
    } else if record.outcome == TestOutcome::Passed
        // A test that `on-timeout = "pass"` lets pass was ended before it could say so.
        && !outcome.timed_out
        && let Err(not_proven) = protocol::ran_and_passed(&outcome.stdout.lossy(), name)
    {
        record.outcome = TestOutcome::Failed;
        record.error = Some(not_proven.to_string());
    }
    if record.outcome == TestOutcome::Passed && record.leaky && strays == StraysPolicy::Fail {
        record.outcome = TestOutcome::Failed;
        record.error = Some(format!(
            "it left {} process(es) behind (strays = \"fail\")",
            outcome.strays.len()
        ));
    }
    if let Some(hit) = &outcome.limit_exceeded {
        // The limit is what stopped it; the exit status (often SIGKILL) only follows.
        record.error = Some(hit.to_string());
    }
    record.exit = Some(outcome.exit);
    record.strays = outcome.strays;
    record.writes = outcome.writes;
    record.resources = Some(outcome.resources);
    record.output = Output::new(outcome.stdout, outcome.stderr);
    if record.is_failure() {
        record.hint = match &outcome.limit_exceeded {
            Some(hit) => Some(limit_hint(hit)),
            None => sandbox_hint(&record.output),
        };
        record.failure_message = Some(record.describe_failure());
        record.failure_location = Panic::find(&record.output.stderr.lossy())
            .and_then(|p| p.location)
            .filter(|_| record.error.is_none());
    }
    record.limit_exceeded = outcome.limit_exceeded;
    record
}

/// Whether a failed attempt runs again: within the test's `retries`, outside stress runs,
/// while the run goes on.
pub fn retry(record: &AttemptRecord, policy: &TestPolicy, stressed: bool, stopped: bool) -> bool {
    !stressed && record.is_failure() && record.attempt <= policy.retries && !stopped
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
    policy: &TestPolicy,
    stressed: bool,
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
        argv: Some(spec.argv.clone()),
        spec: None,
        explanation: None,
    };
    if stressed {
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
            "flaky: it failed {} time(s) before passing on attempt {} (flaky-result = \"fail\")",
            attempts.len() - 1,
            last.attempt
        ));
    }
    if attempts.len() > 1 {
        record.attempts = attempts.to_vec();
    }
    record
}

/// Whether the run failed: a test failed, a stressed test failed at least once, or a
/// selected test never ran. A run passes only when every selected test ran and passed.
pub fn run_failed(records: &[TestRecord]) -> bool {
    records.iter().any(|t| {
        t.is_failure()
            || t.last.outcome == TestOutcome::NotRun
            || t.stress.as_ref().is_some_and(|s| s.failures > 0)
    })
}

/// For a failure whose output shows a variable read as missing: the variables named in
/// the output that the caller has but the sandbox was not given (`in_sandbox`), and how to
/// pass them. `host_has` says whether the caller's environment has a variable.
pub fn missing_variable_hint(
    output: &Output,
    in_sandbox: &dyn Fn(&str) -> bool,
    host_has: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let text = format!("{}{}", output.stdout.lossy(), output.stderr.lossy());
    if !text.contains("NotPresent") && !text.contains("environment variable not found") {
        return None;
    }
    let mut names: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.len() > 1 && w.starts_with(|c: char| c.is_ascii_uppercase() || c == '_'))
        .filter(|w| {
            w.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .filter(|w| host_has(w) && !in_sandbox(w))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Some(
            "the output shows a variable read as missing. The sandbox passes only a few host \
             variables (PATH, TERM, locale, RUST_*); pass others with `env-pass = [\"NAME\"]` in \
             .config/isotest.toml, or set one with `env = { NAME = \"value\" }` or --env."
                .into(),
        );
    }
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let which = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "the output shows a variable read as missing, and your environment has {which}, which \
         the sandbox does not pass through. Pass it with `env-pass = [{list}]` in the profile or an \
         override of .config/isotest.toml (or --env {}).",
        names[0]
    ))
}

/// Points at the sandbox rule a failure's output suggests it ran into. Only the kernel's
/// own error texts count, and it is phrased as a possibility.
fn sandbox_hint(output: &Output) -> Option<String> {
    let text = format!("{}{}", output.stdout.lossy(), output.stderr.lossy());
    if text.contains("Read-only file system") || text.contains("os error 30") {
        return Some(
            "the output mentions a read-only file system. In the sandbox the source tree, the target \
             directory and the system directories are read-only; a test can write to $CARGO_TARGET_TMPDIR, \
             /tmp or $HOME, which are private to it. To let tests write into the source tree without \
             changing it, pass --writable-source or set `writable-source = true` in .config/isotest.toml; \
             to let them write somewhere else, pass --bind-rw PATH or set `bind-rw = [\"PATH\"]`."
                .into(),
        );
    }
    if text.contains("Network is unreachable") || text.contains("os error 101") {
        return Some(
            "the output mentions an unreachable network. In the sandbox only the loopback interface exists \
             (127.0.0.1 and ::1 work). To give tests the host's network, pass --net host, or set \
             `net = \"host\"` for them in .config/isotest.toml."
                .into(),
        );
    }
    super::explain::output_hint(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::test_support::{failed, instance, outcome, passed};

    fn with_strays(strays: StraysPolicy) -> TestPolicy {
        TestPolicy {
            strays,
            ..TestPolicy::DEFAULT
        }
    }

    fn run(result: Result<Outcome, HelperError>, strays: StraysPolicy) -> AttemptRecord {
        attempt("a", 1, result, &with_strays(strays))
    }

    #[test]
    fn a_test_stopped_by_a_limit_says_which_and_how_to_raise_it() {
        let mut outcome = outcome(0, "running 1 test\n", 0);
        outcome.exit = isotest_runtime::Exit::from_signal(9);
        outcome.limit_exceeded = Some(isotest_runtime::LimitExceeded::Processes { limit: 200 });
        let record = run(Ok(outcome), StraysPolicy::Warn);
        assert_eq!(record.outcome, TestOutcome::Failed);
        assert_eq!(
            record.failure_message.as_deref(),
            Some("exceeded process limit 200")
        );
        assert!(
            record
                .hint
                .unwrap()
                .contains("pass --pids-max N (config key `pids-max`)")
        );
        assert!(record.resources.is_some());
    }

    #[test]
    fn a_passing_test_passes_and_a_failing_one_says_why() {
        let record = run(Ok(passed()), StraysPolicy::Warn);
        assert_eq!(record.outcome, TestOutcome::Passed);
        assert_eq!(record.failure_message, None);
        let record = run(Ok(failed("boom")), StraysPolicy::Warn);
        assert_eq!(record.outcome, TestOutcome::Failed);
        assert_eq!(record.failure_message.as_deref(), Some("boom"));
    }

    #[test]
    fn strays_make_a_test_leaky_or_with_strays_fail_failed() {
        let pass = "running 1 test\ntest a ... ok\ntest result: ok. 1 passed\n";
        let leaky = run(Ok(outcome(0, pass, 2)), StraysPolicy::Warn);
        assert_eq!(leaky.outcome, TestOutcome::Passed);
        assert!(leaky.leaky && leaky.error.is_none());
        let failed = run(Ok(outcome(0, pass, 2)), StraysPolicy::Fail);
        assert_eq!(failed.outcome, TestOutcome::Failed);
        assert!(failed.leaky);
        let error = failed.error.unwrap();
        assert!(
            error.contains("2 process(es)") && error.contains("strays = \"fail\""),
            "{error}"
        );
    }

    #[test]
    fn a_binary_that_ran_no_test_fails() {
        let record = run(Ok(outcome(0, "running 0 tests\n", 0)), StraysPolicy::Warn);
        assert_eq!(record.outcome, TestOutcome::Failed);
        let error = record.error.unwrap();
        assert!(
            error.contains("ran no test") && error.contains("`a`"),
            "{error}"
        );
    }

    #[test]
    fn a_lost_helper_or_a_failed_sandbox_fails_the_attempt_and_a_cancel_does_not() {
        let lost = HelperError::Lost {
            pid: 7,
            ended: "was killed by SIGKILL".into(),
            source: std::io::ErrorKind::UnexpectedEof.into(),
        };
        let record = run(Err(lost), StraysPolicy::Warn);
        assert_eq!(record.outcome, TestOutcome::Failed);
        assert!(record.error.unwrap().contains("SIGKILL"));
        let cancelled = run(Err(HelperError::Cancelled), StraysPolicy::Warn);
        assert_eq!(cancelled.outcome, TestOutcome::NotRun);
        let broken = HelperError::Sandbox {
            message: "mount failed".into(),
            setup: None,
        };
        let record = run(Err(broken), StraysPolicy::Warn);
        assert_eq!(record.outcome, TestOutcome::Failed);
        assert!(record.error.unwrap().contains("mount failed"));
    }

    #[test]
    fn a_read_only_file_system_gets_a_hint() {
        let record = run(
            Ok(failed("Read-only file system (os error 30)")),
            StraysPolicy::Warn,
        );
        assert!(record.hint.unwrap().contains("--bind-rw"));
    }

    #[test]
    fn a_missing_variable_the_caller_has_is_named_with_the_key() {
        let record = run(
            Ok(failed(
                "MY_SETTING: NotPresent\nat src/lib.rs (PATH and HOME are fine)",
            )),
            StraysPolicy::Warn,
        );
        let host = |name: &str| ["MY_SETTING", "PATH", "HOME"].contains(&name);
        let in_sandbox = |name: &str| ["PATH", "HOME"].contains(&name);
        let hint = missing_variable_hint(&record.output, &in_sandbox, &host).unwrap();
        assert!(
            hint.contains("`MY_SETTING`") && hint.contains("env-pass = [\"MY_SETTING\"]"),
            "{hint}"
        );
        assert!(!hint.contains("`PATH`"), "{hint}");
        let unknown = run(
            Ok(failed("environment variable not found")),
            StraysPolicy::Warn,
        );
        let hint = missing_variable_hint(&unknown.output, &in_sandbox, &host).unwrap();
        assert!(hint.contains("env-pass"), "{hint}");
        let other = run(Ok(failed("MY_SETTING is wrong")), StraysPolicy::Warn);
        assert_eq!(
            missing_variable_hint(&other.output, &in_sandbox, &host),
            None
        );
    }

    #[test]
    fn a_timeout_passes_when_the_test_says_so() {
        let mut timed_out = failed("slow");
        timed_out.timed_out = true;
        assert_eq!(
            run(Ok(timed_out.clone()), StraysPolicy::Warn).outcome,
            TestOutcome::TimedOut
        );
        let lenient = TestPolicy {
            timeout_passes: true,
            ..TestPolicy::DEFAULT
        };
        assert_eq!(
            attempt("a", 1, Ok(timed_out), &lenient).outcome,
            TestOutcome::Passed
        );
    }

    fn attempts(results: Vec<Outcome>) -> Vec<AttemptRecord> {
        results
            .into_iter()
            .enumerate()
            .map(|(i, o)| attempt("a", i as u32 + 1, Ok(o), &TestPolicy::DEFAULT))
            .collect()
    }

    #[test]
    fn a_pass_after_failures_is_flaky_and_with_flaky_fail_a_failure() {
        let spec = isotest_runtime::Spec::new(Vec::new());
        let history = attempts(vec![failed("first"), passed()]);
        let mut policy = TestPolicy {
            retries: 1,
            ..TestPolicy::DEFAULT
        };
        let record = test(&instance("a"), Some(&spec), &history, &policy, false);
        assert!(record.flaky && !record.is_failure());
        assert_eq!(record.attempts.len(), 2);
        assert!(!run_failed(std::slice::from_ref(&record)));

        policy.flaky = FlakyPolicy::Fail;
        let record = test(&instance("a"), Some(&spec), &history, &policy, false);
        assert!(record.is_failure(), "the failing attempt is what to show");
        assert_eq!(record.last.attempt, 1);
        assert!(record.last.error.unwrap().contains("flaky-result"));
        assert!(run_failed(std::slice::from_ref(&test(
            &instance("a"),
            Some(&spec),
            &history,
            &policy,
            false
        ))));
    }

    #[test]
    fn retries_stop_at_the_limit_and_when_the_run_stops() {
        let policy = TestPolicy {
            retries: 2,
            ..TestPolicy::DEFAULT
        };
        let failure = |n| attempt("a", n, Ok(failed("x")), &policy);
        assert!(retry(&failure(1), &policy, false, false));
        assert!(retry(&failure(2), &policy, false, false));
        assert!(!retry(&failure(3), &policy, false, false));
        assert!(!retry(&failure(1), &policy, false, true));
        assert!(
            !retry(&failure(1), &policy, true, false),
            "not in a stress run"
        );
        let pass = attempt("a", 1, Ok(passed()), &policy);
        assert!(!retry(&pass, &policy, false, false));
    }

    #[test]
    fn a_stressed_test_keeps_its_first_failures_and_counts_the_rest() {
        let failure = attempt("a", 1, Ok(failed("x")), &TestPolicy::DEFAULT);
        assert!(keep_stress_output(&failure, KEPT_FAILURES - 1));
        assert!(!keep_stress_output(&failure, KEPT_FAILURES));
        let pass = attempt("a", 1, Ok(passed()), &TestPolicy::DEFAULT);
        assert!(!keep_stress_output(&pass, 0));
    }

    #[test]
    fn ignored_and_unreached_tests_are_not_run() {
        let policy = TestPolicy::DEFAULT;
        let spec = isotest_runtime::Spec::new(Vec::new());
        assert_eq!(
            test(&instance("a"), None, &[], &policy, false).last.outcome,
            TestOutcome::Ignored
        );
        assert_eq!(
            test(&instance("a"), Some(&spec), &[], &policy, false)
                .last
                .outcome,
            TestOutcome::NotRun
        );
    }
}
