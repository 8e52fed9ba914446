//! Which attempt of which test goes to the next idle helper (first runs, retries, stress
//! rounds), and what each result makes of the test: a state machine fed by the pool,
//! which tells the reporters what happened through [`RunEvent`]s.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use isotest_runtime::{Outcome, Spec};

use super::events::{Reporter, RunEvent};
use super::policy::Policy;
use super::record::{AttemptRecord, Output, TestOutcome, TestRecord};
use super::schedule::{self, Slots};
use super::{budget, verdict};
use crate::launch::helper::HelperError;
use crate::launch::pool::{Dispatch, Event, Next};
use crate::plan::TestInstance;
use crate::sandbox::attempt_perturbation;

/// How often the reporters get every record while tests finish.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// One run of one test: the index into the selected tests and its number, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub test: usize,
    pub number: u32,
}

/// The run's state, fed by the helpers' results.
pub struct Attempts<'a> {
    tests: &'a [TestInstance],
    specs: &'a [Option<Spec>],
    policy: &'a Policy,
    reporter: &'a mut dyn Reporter,
    /// Attempts waiting to start, each with when it may (a retry's delay).
    queue: VecDeque<(Attempt, Option<Instant>)>,
    attempts: Vec<Vec<AttemptRecord>>,
    started: Vec<u32>,
    slots: Slots,
    /// Tests that ended failed, for `fail-fast`'s `max-fail`.
    failures: u32,
    stopped: bool,
    /// When each running attempt started, for its record.
    started_at: std::collections::HashMap<(usize, u32), SystemTime>,
    /// A result came in since the last checkpoint.
    dirty: bool,
    checkpointed: Instant,
    /// Memory held by the running attempts under `--memory-budget`, and how many run.
    reserved: u64,
    running: usize,
    began: Instant,
    /// When each running attempt started, in ms since `began`.
    start_ms: HashMap<(usize, u32), u64>,
    /// The run's seed when every attempt gets a seed of its own (`--stress-shard`).
    attempt_seed: Option<u64>,
}

impl<'a> Attempts<'a> {
    /// `order` is the order of first runs (the selection's, or shuffled).
    pub fn new(
        tests: &'a [TestInstance],
        specs: &'a [Option<Spec>],
        order: &[usize],
        policy: &'a Policy,
        reporter: &'a mut dyn Reporter,
    ) -> Attempts<'a> {
        let rounds = policy
            .stress
            .as_ref()
            .and_then(|s| s.attempts())
            .unwrap_or(1..=1);
        // Stress rounds interleave, so every test makes progress and runs beside the others.
        let queue = rounds
            .flat_map(|number| {
                order
                    .iter()
                    .map(move |&test| (Attempt { test, number }, None))
            })
            .collect();
        Attempts {
            tests,
            specs,
            policy,
            reporter,
            queue,
            attempts: vec![Vec::new(); tests.len()],
            started: vec![0; tests.len()],
            slots: Slots::new(policy.threads),
            failures: 0,
            stopped: false,
            started_at: Default::default(),
            dirty: false,
            checkpointed: Instant::now(),
            reserved: 0,
            running: 0,
            began: Instant::now(),
            start_ms: HashMap::new(),
            attempt_seed: None,
        }
    }

    fn need(&self, attempt: Attempt) -> u64 {
        self.policy
            .memory_budget
            .as_ref()
            .map_or(0, |b| b.needs[attempt.test])
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
            let number = self.started[test] + 1;
            self.queue.push_back((Attempt { test, number }, None));
            self.started[test] += 1;
        }
    }

    fn finished(&mut self, attempt: Attempt, result: Result<Outcome, HelperError>) {
        let test = &self.tests[attempt.test];
        let policy = self.policy.test(attempt.test);
        let mut record = verdict::attempt(&test.name, attempt.number, result, policy);
        let started_at = self.started_at.remove(&(attempt.test, attempt.number));
        if record.outcome == TestOutcome::NotRun {
            // Cancelled while it ran: the test gets its own line, saying so.
            if self.policy.stress.is_none() {
                self.attempts[attempt.test].push(record);
                let final_record = self.record(attempt.test);
                self.reporter.report(RunEvent::TestFinished {
                    test: attempt.test,
                    record: &final_record,
                });
            }
            return;
        }
        record.started_at = started_at.map(|t| humantime::format_rfc3339_millis(t).to_string());
        self.stamp(attempt, &mut record);
        if record.is_failure()
            && record.hint.is_none()
            && let Some(spec) = &self.specs[attempt.test]
        {
            let in_sandbox = |name: &str| {
                spec.env.set.contains_key(name) || spec.env.pass.iter().any(|p| p == name)
            };
            let host_has = |name: &str| std::env::var_os(name).is_some();
            record.hint = verdict::missing_variable_hint(&record.output, &in_sandbox, &host_has);
        }
        if let Some(stress) = &self.policy.stress {
            let label = self.label(attempt);
            self.reporter.report(RunEvent::StressAttempt {
                label: &label,
                attempt: &record,
            });
            let failures = self.attempts[attempt.test]
                .iter()
                .filter(|a| a.is_failure())
                .count();
            if !verdict::keep_stress_output(&record, failures) {
                record.output = Output::default();
            }
            if record.is_failure() && stress.until_fail {
                self.stopped = true;
            }
            self.attempts[attempt.test].push(record);
            return;
        }
        if verdict::retry(&record, policy, false, self.stopped) {
            let label = self.label(attempt);
            self.reporter.report(RunEvent::Retrying {
                label: &label,
                attempt: &record,
                of: policy.retries + 1,
            });
            let next = attempt.number + 1;
            let delay = policy.delay.before(next, fastrand::f64());
            let ready = (!delay.is_zero()).then(|| Instant::now() + delay);
            let retry = Attempt {
                test: attempt.test,
                number: next,
            };
            self.queue.push_front((retry, ready));
            self.attempts[attempt.test].push(record);
            return;
        }
        self.attempts[attempt.test].push(record);
        let final_record = self.record(attempt.test);
        self.reporter.report(RunEvent::TestFinished {
            test: attempt.test,
            record: &final_record,
        });
        if final_record.is_failure() {
            self.failures += 1;
            if self.policy.max_fail.is_some_and(|max| self.failures >= max) {
                self.stopped = true;
            }
        }
    }

    /// Draws each attempt's perturbation as the runner's attempt specs do.
    pub fn with_attempt_seed(mut self, attempt_seed: Option<u64>) -> Self {
        self.attempt_seed = attempt_seed;
        self
    }

    /// When the attempt started, and what `--chaos` drew for it.
    fn stamp(&mut self, attempt: Attempt, record: &mut AttemptRecord) {
        let key = (attempt.test, attempt.number);
        record.started_ms = self.start_ms.remove(&key).unwrap_or_default();
        record.perturbation = self.specs[attempt.test]
            .as_ref()
            .and_then(|spec| attempt_perturbation(spec, attempt.number, self.attempt_seed));
    }

    /// The test's record as it stands.
    pub fn record(&self, index: usize) -> TestRecord {
        verdict::test(
            &self.tests[index],
            self.specs[index].as_ref(),
            &self.attempts[index],
            self.policy.test(index),
            self.policy.stress.is_some(),
        )
    }

    pub fn records(&self) -> Vec<TestRecord> {
        (0..self.tests.len()).map(|i| self.record(i)).collect()
    }
}

impl Dispatch<Attempt, Result<Outcome, HelperError>> for Attempts<'_> {
    fn next(&mut self) -> Next<Attempt> {
        if self.stopped {
            return Next::Done;
        }
        if self.queue.is_empty() {
            self.refill();
        }
        if self.queue.is_empty() {
            return Next::Done;
        }
        let now = Instant::now();
        let policy = self.policy;
        let (reserved, running) = (self.reserved, self.running);
        // A retry waiting out its delay, or a test whose memory need does not fit the
        // budget beside the running ones, is not ready yet.
        let waiting = self.queue.iter().map(|(attempt, ready)| {
            let fits = policy
                .memory_budget
                .as_ref()
                .is_none_or(|b| budget::fits(b.needs[attempt.test], b.total, reserved, running));
            (
                policy.test(attempt.test),
                fits && ready.is_none_or(|ready| ready <= now),
            )
        });
        let Some(position) = schedule::pick(waiting, &self.slots, &policy.groups) else {
            return Next::Wait;
        };
        let (attempt, _) = self.queue.remove(position).expect("a picked attempt");
        self.slots.take(policy.test(attempt.test));
        self.reserved += self.need(attempt);
        self.running += 1;
        self.started[attempt.test] = self.started[attempt.test].max(attempt.number);
        Next::Job(attempt)
    }

    fn on_event(&mut self, event: Event<Attempt, Result<Outcome, HelperError>>) {
        match event {
            Event::Started(attempt) => {
                self.started_at
                    .insert((attempt.test, attempt.number), SystemTime::now());
                let started = self.began.elapsed().as_millis() as u64;
                self.start_ms
                    .insert((attempt.test, attempt.number), started);
                let label = self.label(attempt);
                self.reporter.report(RunEvent::AttemptStarted {
                    test: attempt.test,
                    attempt: attempt.number,
                    label: &label,
                });
            }
            Event::Finished(attempt, result) => {
                self.dirty = true;
                self.slots.release(self.policy.test(attempt.test));
                self.reserved -= self.need(attempt);
                self.running -= 1;
                self.reporter.report(RunEvent::AttemptEnded {
                    test: attempt.test,
                    attempt: attempt.number,
                });
                self.finished(attempt, result);
            }
            Event::Tick => self.reporter.report(RunEvent::Tick),
        }
        if self.dirty && self.checkpointed.elapsed() >= CHECKPOINT_EVERY {
            let records = self.records();
            self.reporter.report(RunEvent::Checkpoint(records));
            self.checkpointed = Instant::now();
            self.dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::policy::{FlakyPolicy, Stress, TestPolicy};
    use crate::runner::stress::KEPT_FAILURES;
    use crate::runner::test_support::{Log, failed, instance, passed};

    /// Runs one test under `policy`, answering its attempts with `results` in turn, and
    /// returns its record and what the reporters were told.
    fn drive(policy: &Policy, mut results: Vec<Outcome>) -> (TestRecord, Vec<String>) {
        let tests = [instance("a")];
        let specs = [Some(Spec::new(Vec::new()))];
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0], policy, &mut log);
        results.reverse();
        while let Next::Job(attempt) = attempts.next() {
            attempts.on_event(Event::Started(attempt));
            let result = results.pop().expect("no more attempts than results");
            attempts.on_event(Event::Finished(attempt, Ok(result)));
        }
        let record = attempts.record(0);
        (record, log.0)
    }

    #[test]
    fn under_a_memory_budget_a_test_waits_until_it_fits() {
        use crate::runner::budget::MemoryBudget;
        let tests = [instance("big"), instance("also_big"), instance("small")];
        let specs = [
            Some(Spec::new(Vec::new())),
            Some(Spec::new(Vec::new())),
            Some(Spec::new(Vec::new())),
        ];
        let policy = Policy {
            memory_budget: Some(MemoryBudget {
                total: 100,
                needs: vec![60, 60, 30],
            }),
            threads: 3,
            ..Policy::default()
        };
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0, 1, 2], &policy, &mut log);
        let Next::Job(first) = attempts.next() else {
            panic!("the first always starts")
        };
        attempts.on_event(Event::Started(first));
        // 60 held: the second big one waits, the small one behind it starts.
        let Next::Job(second) = attempts.next() else {
            panic!("the small one fits")
        };
        assert_eq!((first.test, second.test), (0, 2));
        attempts.on_event(Event::Started(second));
        assert!(matches!(attempts.next(), Next::Wait));
        attempts.on_event(Event::Finished(first, Ok(passed())));
        assert!(matches!(attempts.next(), Next::Job(a) if a.test == 1));
    }

    #[test]
    fn a_failing_test_is_retried_until_it_passes() {
        let policy = Policy {
            tests: vec![TestPolicy {
                retries: 3,
                ..TestPolicy::DEFAULT
            }],
            ..Policy::default()
        };
        let (record, log) = drive(&policy, vec![failed("1"), failed("2"), passed()]);
        assert!(record.flaky && !record.is_failure());
        assert_eq!(record.last.attempt, 3);
        assert_eq!(
            log,
            [
                "start 1",
                "end 1",
                "retry 1/4",
                "start 2",
                "end 2",
                "retry 2/4",
                "start 3",
                "end 3",
                "finished Passed"
            ]
        );
    }

    #[test]
    fn retries_end_at_the_limit_and_flaky_fail_fails_a_late_pass() {
        let policy = Policy {
            tests: vec![TestPolicy {
                retries: 1,
                ..TestPolicy::DEFAULT
            }],
            ..Policy::default()
        };
        let (record, _) = drive(&policy, vec![failed("1"), failed("2")]);
        assert!(record.is_failure() && !record.flaky);
        assert_eq!(record.attempts.len(), 2);
        let policy = Policy {
            tests: vec![TestPolicy {
                retries: 1,
                flaky: FlakyPolicy::Fail,
                ..TestPolicy::DEFAULT
            }],
            ..Policy::default()
        };
        let (record, log) = drive(&policy, vec![failed("1"), passed()]);
        assert!(record.is_failure() && record.flaky);
        assert_eq!(log.last().unwrap(), "finished Failed");
    }

    #[test]
    fn a_stress_run_keeps_the_first_failures_whole_and_counts_every_run() {
        let runs = KEPT_FAILURES as u32 + 3;
        let policy = Policy {
            stress: Some(Stress {
                count: Some(runs),
                until: None,
                until_fail: false,
                share: None,
            }),
            ..Policy::default()
        };
        let mut results: Vec<Outcome> = (0..runs).map(|i| failed(&format!("run {i}"))).collect();
        results[0] = passed();
        let (record, log) = drive(&policy, results);
        let stress = record.stress.as_ref().unwrap();
        assert_eq!((stress.runs, stress.failures), (runs, runs - 1));
        assert_eq!(record.attempts.len(), KEPT_FAILURES);
        assert!(record.attempts.iter().all(|a| a.output.stderr.total() > 0));
        assert_eq!(
            record.last.attempt, 2,
            "the first failure is the one to show"
        );
        assert_eq!(
            log.iter().filter(|e| e.starts_with("stress")).count(),
            runs as usize
        );
        assert!(!log.iter().any(|e| e.starts_with("finished")));
    }

    #[test]
    fn a_stress_shard_runs_its_share_under_the_global_attempt_numbers() {
        let policy = Policy {
            stress: Some(Stress {
                count: Some(9),
                until: None,
                until_fail: false,
                share: Some(4..=6),
            }),
            ..Policy::default()
        };
        let (record, log) = drive(&policy, vec![passed(), failed("x"), passed()]);
        let stress = record.stress.as_ref().unwrap();
        assert_eq!((stress.runs, stress.failures), (3, 1));
        assert_eq!(stress.first_failures, [5]);
        assert_eq!(record.last.attempt, 5);
        assert_eq!(log.iter().filter(|e| e.starts_with("stress")).count(), 3);
    }

    #[test]
    fn a_stress_run_until_fail_stops_at_the_first_failure() {
        let policy = Policy {
            stress: Some(Stress {
                count: Some(10),
                until: None,
                until_fail: true,
                share: None,
            }),
            ..Policy::default()
        };
        let (record, _) = drive(&policy, vec![passed(), failed("x")]);
        assert_eq!(record.stress.unwrap().runs, 2);
    }

    #[test]
    fn fail_fast_stops_handing_out_tests() {
        let tests = [instance("a"), instance("b")];
        let specs = [Some(Spec::new(Vec::new())), Some(Spec::new(Vec::new()))];
        let policy = Policy {
            max_fail: Some(1),
            ..Policy::default()
        };
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0, 1], &policy, &mut log);
        let Next::Job(first) = attempts.next() else {
            panic!("a first attempt")
        };
        attempts.on_event(Event::Finished(first, Ok(failed("x"))));
        assert!(matches!(attempts.next(), Next::Done));
        assert_eq!(attempts.record(1).last.outcome, TestOutcome::NotRun);
    }

    #[test]
    fn a_cancelled_attempt_leaves_the_test_not_run_with_a_line_of_its_own() {
        let tests = [instance("a")];
        let specs = [Some(Spec::new(Vec::new()))];
        let policy = Policy {
            tests: vec![TestPolicy {
                retries: 2,
                ..TestPolicy::DEFAULT
            }],
            ..Policy::default()
        };
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0], &policy, &mut log);
        let Next::Job(attempt) = attempts.next() else {
            panic!("a first attempt")
        };
        attempts.on_event(Event::Finished(attempt, Err(HelperError::Cancelled)));
        assert!(
            matches!(attempts.next(), Next::Done),
            "a cancelled attempt is not retried"
        );
        let record = attempts.record(0);
        assert_eq!(record.last.outcome, TestOutcome::NotRun);
        assert!(record.last.error.unwrap().contains("cancelled"));
        assert_eq!(log.0, ["end 1", "finished NotRun"]);
    }

    #[test]
    fn a_lost_helper_fails_the_attempt_which_retries_may_run_again() {
        let tests = [instance("a")];
        let specs = [Some(Spec::new(Vec::new()))];
        let policy = Policy {
            tests: vec![TestPolicy {
                retries: 1,
                ..TestPolicy::DEFAULT
            }],
            ..Policy::default()
        };
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0], &policy, &mut log);
        let Next::Job(attempt) = attempts.next() else {
            panic!("a first attempt")
        };
        let lost = HelperError::Lost {
            pid: 7,
            ended: "was killed by SIGKILL".into(),
            source: std::io::ErrorKind::UnexpectedEof.into(),
        };
        attempts.on_event(Event::Finished(attempt, Err(lost)));
        assert!(
            matches!(attempts.next(), Next::Job(a) if a.number == 2),
            "retried"
        );
    }

    #[test]
    fn a_test_group_keeps_its_tests_apart_while_others_run() {
        let tests = [instance("db1"), instance("db2"), instance("free")];
        let specs = [
            Some(Spec::new(Vec::new())),
            Some(Spec::new(Vec::new())),
            Some(Spec::new(Vec::new())),
        ];
        let db = TestPolicy {
            group: Some("db".into()),
            ..TestPolicy::DEFAULT
        };
        let policy = Policy {
            tests: vec![db.clone(), db, TestPolicy::DEFAULT],
            threads: 3,
            groups: [("db".to_string(), 1)].into(),
            ..Policy::default()
        };
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0, 1, 2], &policy, &mut log);
        let Next::Job(first) = attempts.next() else {
            panic!("db1 starts")
        };
        assert_eq!(first.test, 0);
        let Next::Job(second) = attempts.next() else {
            panic!("free starts beside db1")
        };
        assert_eq!(second.test, 2, "db2 waits for db1");
        assert!(matches!(attempts.next(), Next::Wait));
        attempts.on_event(Event::Finished(first, Ok(passed())));
        let Next::Job(third) = attempts.next() else {
            panic!("db2 starts once db1 is done")
        };
        assert_eq!(third.test, 1);
    }
}
