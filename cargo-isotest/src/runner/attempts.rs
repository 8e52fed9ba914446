//! Which attempt of which test goes to the next idle helper (first runs, retries, stress
//! rounds), and what each result makes of the test: a state machine fed by the pool,
//! which tells the reporters what happened through [`RunEvent`]s.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use isotest_runtime::{Outcome, Spec};

use super::events::{Reporter, RunEvent};
use super::policy::Policy;
use super::record::{AttemptRecord, Output, TestOutcome, TestRecord};
use super::verdict;
use crate::launch::helper::HelperError;
use crate::launch::pool::{Dispatch, Event};
use crate::plan::TestInstance;

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
    /// A result came in since the last checkpoint.
    dirty: bool,
    checkpointed: Instant,
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
        let rounds = policy.stress.as_ref().and_then(|s| s.count).unwrap_or(1);
        // Stress rounds interleave, so every test makes progress and runs beside the others.
        let queue = (1..=rounds)
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
            dirty: false,
            checkpointed: Instant::now(),
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
        let mut record = verdict::attempt(&test.name, attempt.number, result, self.policy.strays);
        if record.outcome == TestOutcome::NotRun {
            return;
        }
        if let Some(stress) = &self.policy.stress {
            self.reporter.report(RunEvent::StressAttempt(&record));
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
        let attempt = self.queue.pop_front()?;
        self.started[attempt.test] = self.started[attempt.test].max(attempt.number);
        Some(attempt)
    }

    fn on_event(&mut self, event: Event<Attempt, Result<Outcome, HelperError>>) {
        match event {
            Event::Started(attempt) => {
                let label = self.label(attempt);
                self.reporter.report(RunEvent::AttemptStarted {
                    test: attempt.test,
                    attempt: attempt.number,
                    label: &label,
                });
            }
            Event::Finished(attempt, result) => {
                self.dirty = true;
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
