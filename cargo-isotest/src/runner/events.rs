//! What the runner tells the reporters while a run goes on, in the order it happens. The
//! runner decides; a reporter only shows or stores what it is told.

use super::record::{AttemptRecord, TestRecord};

pub enum RunEvent<'a> {
    /// An attempt went to a helper. `test` indexes the plan's tests.
    AttemptStarted {
        test: usize,
        attempt: u32,
        label: &'a str,
    },
    /// An attempt's sandbox is gone; what it means follows.
    AttemptEnded { test: usize, attempt: u32 },
    /// A failed attempt that will run again, as attempt `attempt.attempt + 1` of `of`.
    Retrying {
        label: &'a str,
        attempt: &'a AttemptRecord,
        of: u32,
    },
    /// One attempt of a stressed test.
    StressAttempt {
        label: &'a str,
        attempt: &'a AttemptRecord,
    },
    /// A test's final record. `test` indexes the plan's tests.
    TestFinished { test: usize, record: &'a TestRecord },
    /// Something the user should know about the run, such as what `--explain` does.
    Note(&'a str),
    /// `--explain` found what a failed test depends on: the record has its explanation.
    Explained(&'a TestRecord),
    /// Nothing happened for a moment: a chance to refresh a view.
    Tick,
    /// Every test's record as it stands, sent now and then while results come in, so that
    /// a runner killed outright still leaves what it knew.
    Checkpoint(Vec<TestRecord>),
}

pub trait Reporter {
    fn report(&mut self, event: RunEvent<'_>);
}
