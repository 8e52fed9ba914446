//! Which attempt of which test goes to the next idle helper (first runs, retries, stress
//! rounds), and what each result makes of the test: a state machine fed by the pool,
//! which tells the reporters what happened through [`RunEvent`]s.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use isotest_runtime::{Outcome, Spec};

use super::events::{Reporter, RunEvent};
use super::policy::Policy;
use super::record::{AttemptRecord, Output, TestOutcome, TestRecord};
use super::{budget, verdict};
use crate::launch::helper::HelperError;
use crate::launch::pool::{Dispatch, Event};
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
    queue: VecDeque<Attempt>,
    attempts: Vec<Vec<AttemptRecord>>,
    started: Vec<u32>,
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
            .flat_map(|number| order.iter().map(move |&test| Attempt { test, number }))
            .collect();
        Attempts {
            tests,
            specs,
            policy,
            reporter,
            queue,
            attempts: vec![Vec::new(); tests.len()],
            started: vec![0; tests.len()],
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

    /// The next attempt to start: the queue's first, or under a memory budget the first
    /// whose test fits beside the running ones.
    fn take_next(&mut self) -> Option<Attempt> {
        let index = match &self.policy.memory_budget {
            None => 0,
            Some(budget) => {
                let waiting = self.queue.iter().map(|a| budget.needs[a.test]);
                budget::pick(waiting, budget.total, self.reserved, self.running)?
            }
        };
        let attempt = self.queue.remove(index)?;
        self.reserved += self.need(attempt);
        self.running += 1;
        Some(attempt)
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
            self.queue.push_back(Attempt {
                test,
                number: self.started[test] + 1,
            });
            self.started[test] += 1;
        }
    }

    fn finished(&mut self, attempt: Attempt, result: Result<Outcome, HelperError>) {
        let test = &self.tests[attempt.test];
        let mut record = verdict::attempt(&test.name, attempt.number, result, self.policy.strays);
        let started_at = self.started_at.remove(&(attempt.test, attempt.number));
        if record.outcome == TestOutcome::NotRun {
            // Cancelled while it ran: the test gets its own line, saying so.
            if self.policy.stress.is_none() {
                self.attempts[attempt.test].push(record);
                let final_record = self.record(attempt.test);
                self.reporter.report(RunEvent::TestFinished(&final_record));
            }
            return;
        }
        record.started_at = started_at.map(|t| humantime::format_rfc3339_millis(t).to_string());
        self.stamp(attempt, &mut record);
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
        if verdict::retry(&record, self.policy, self.stopped) {
            let label = self.label(attempt);
            self.reporter.report(RunEvent::Retrying {
                label: &label,
                attempt: &record,
                of: self.policy.retries + 1,
            });
            self.queue.push_front(Attempt {
                test: attempt.test,
                number: attempt.number + 1,
            });
            self.attempts[attempt.test].push(record);
            return;
        }
        self.attempts[attempt.test].push(record);
        let final_record = self.record(attempt.test);
        self.reporter.report(RunEvent::TestFinished(&final_record));
        if final_record.is_failure() && self.policy.fail_fast {
            self.stopped = true;
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
            self.policy,
        )
    }

    pub fn records(&self) -> Vec<TestRecord> {
        (0..self.tests.len()).map(|i| self.record(i)).collect()
    }
}

impl Dispatch<Attempt, Result<Outcome, HelperError>> for Attempts<'_> {
    fn next(&mut self) -> Option<Attempt> {
        if self.stopped {
            return None;
        }
        if self.queue.is_empty() {
            self.refill();
        }
        let attempt = self.take_next()?;
        self.started[attempt.test] = self.started[attempt.test].max(attempt.number);
        Some(attempt)
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
    use crate::runner::policy::{FlakyPolicy, Stress};
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
        while let Some(attempt) = attempts.next() {
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
            ..Policy::default()
        };
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0, 1, 2], &policy, &mut log);
        let first = attempts.next().expect("the first always starts");
        attempts.on_event(Event::Started(first));
        // 60 held: the second big one waits, the small one behind it starts.
        let second = attempts.next().expect("the small one fits");
        assert_eq!((first.test, second.test), (0, 2));
        attempts.on_event(Event::Started(second));
        assert_eq!(attempts.next(), None);
        attempts.on_event(Event::Finished(first, Ok(passed())));
        assert_eq!(attempts.next().map(|a| a.test), Some(1));
    }

    #[test]
    fn a_failing_test_is_retried_until_it_passes() {
        let policy = Policy {
            retries: 3,
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
            retries: 1,
            ..Policy::default()
        };
        let (record, _) = drive(&policy, vec![failed("1"), failed("2")]);
        assert!(record.is_failure() && !record.flaky);
        assert_eq!(record.attempts.len(), 2);
        let policy = Policy {
            retries: 1,
            flaky: FlakyPolicy::Fail,
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
            fail_fast: true,
            ..Policy::default()
        };
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0, 1], &policy, &mut log);
        let first = attempts.next().unwrap();
        attempts.on_event(Event::Finished(first, Ok(failed("x"))));
        assert_eq!(attempts.next(), None);
        assert_eq!(attempts.record(1).last.outcome, TestOutcome::NotRun);
    }

    #[test]
    fn a_cancelled_attempt_leaves_the_test_not_run_with_a_line_of_its_own() {
        let tests = [instance("a")];
        let specs = [Some(Spec::new(Vec::new()))];
        let policy = Policy {
            retries: 2,
            ..Policy::default()
        };
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0], &policy, &mut log);
        let attempt = attempts.next().unwrap();
        attempts.on_event(Event::Finished(attempt, Err(HelperError::Cancelled)));
        assert_eq!(attempts.next(), None, "a cancelled attempt is not retried");
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
            retries: 1,
            ..Policy::default()
        };
        let mut log = Log::default();
        let mut attempts = Attempts::new(&tests, &specs, &[0], &policy, &mut log);
        let attempt = attempts.next().unwrap();
        let lost = HelperError::Lost {
            pid: 7,
            ended: "was killed by SIGKILL".into(),
            source: std::io::ErrorKind::UnexpectedEof.into(),
        };
        attempts.on_event(Event::Finished(attempt, Err(lost)));
        assert_eq!(attempts.next().map(|a| a.number), Some(2), "retried");
    }
}
