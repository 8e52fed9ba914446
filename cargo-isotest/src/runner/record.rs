//! What the runner decided about each test and each attempt: the records the reporters
//! show and the JSON report stores as they are.

use isotest_runtime::{Captured, Exit, LimitExceeded, Resources, Spec, Stray};
use serde::Serialize;

use crate::discover::TestKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestOutcome {
    Passed,
    Failed,
    Ignored,
    TimedOut,
    /// Not started: the run stopped first (fail-fast, or cancelled).
    NotRun,
}

/// One test's record, in the JSON report as it is here. Its outcome, exit, output and
/// strays are those of its last attempt.
#[derive(Clone, Debug, Serialize)]
pub struct TestRecord {
    pub binary_id: String,
    pub name: String,
    pub kind: TestKind,
    #[serde(flatten)]
    pub last: AttemptRecord,
    /// Passed after failing (with `--retries`).
    pub flaky: bool,
    /// Every attempt, when there was more than one (retries), or the failing attempts a
    /// stress run kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stress: Option<StressSummary>,
    /// The sandbox it ran in, with `ISOTEST_ATTEMPT` set per attempt; replaying needs
    /// nothing else.
    pub spec: Option<Spec>,
    /// With `--explain`, for a failed test: the sandbox rule it depends on, found by
    /// rerunning it with each rule relaxed in turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<super::explain::Explanation>,
}

/// One run of one test in one fresh sandbox.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    /// 1 for the first run.
    pub attempt: u32,
    pub outcome: TestOutcome,
    /// How the test process ended; null when it did not run.
    pub exit: Option<Exit>,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub output: Output,
    pub strays: Vec<Stray>,
    /// Left processes behind (whether or not that failed it).
    pub leaky: bool,
    /// isotest's own explanation of a failure the exit status does not tell.
    pub error: Option<String>,
    /// A sandbox rule that likely caused the failure, and how to relax it.
    pub hint: Option<String>,
    /// Why it failed in one line: the panic message, else how it ended.
    pub failure_message: Option<String>,
    /// The limit that stopped it, e.g. `{"kind": "processes", "limit": 200}`.
    pub limit_exceeded: Option<LimitExceeded>,
    /// What it used, and which mechanism measured and limited it; null when it did not run.
    pub resources: Option<Resources>,
}

/// Captured output: raw here, lossy UTF-8 with a truncation flag in JSON.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub stdout: Captured,
    pub stderr: Captured,
}

impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Output", 4)?;
        out.serialize_field("stdout", &self.stdout.lossy())?;
        out.serialize_field("stdout_truncated", &self.stdout.truncated())?;
        out.serialize_field("stderr", &self.stderr.lossy())?;
        out.serialize_field("stderr_truncated", &self.stderr.truncated())?;
        out.end()
    }
}

impl AttemptRecord {
    /// An attempt that has not run (yet); its fields are filled in as it ends.
    pub fn for_test(attempt: u32) -> AttemptRecord {
        AttemptRecord {
            attempt,
            outcome: TestOutcome::NotRun,
            exit: None,
            duration_ms: 0,
            output: Output::default(),
            strays: Vec::new(),
            leaky: false,
            error: None,
            hint: None,
            failure_message: None,
            limit_exceeded: None,
            resources: None,
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, TestOutcome::Failed | TestOutcome::TimedOut)
    }

    /// The first line that says why an attempt failed: the panic message, else how it ended.
    /// Taken when the attempt ends, while its output is still there.
    pub fn describe_failure(&self) -> String {
        if self.outcome == TestOutcome::TimedOut {
            return "timed out".into();
        }
        if let Some(error) = &self.error {
            return error.clone();
        }
        let stderr = self.output.stderr.lossy();
        let mut lines = stderr.lines();
        while let Some(line) = lines.next() {
            if line.contains("panicked at") {
                // Since Rust 1.73 the message follows on the next line; before, after the location.
                let message = lines.next().filter(|l| !l.trim().is_empty());
                return message.map_or_else(|| line.trim().to_string(), |m| m.trim().to_string());
            }
        }
        match &self.exit {
            Some(exit) => format!("ended with {exit}"),
            None => "failed".into(),
        }
    }
}

impl TestRecord {
    /// A test that was selected but did not run: ignored, or stopped before its turn.
    pub fn not_run(
        binary_id: &str,
        name: &str,
        kind: TestKind,
        outcome: TestOutcome,
    ) -> TestRecord {
        let mut last = AttemptRecord::for_test(0);
        last.outcome = outcome;
        TestRecord {
            binary_id: binary_id.to_string(),
            name: name.to_string(),
            kind,
            last,
            flaky: false,
            attempts: Vec::new(),
            stress: None,
            spec: None,
            explanation: None,
        }
    }

    pub fn is_failure(&self) -> bool {
        self.last.is_failure()
    }
}

/// What many runs of one stressed test say.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StressSummary {
    pub runs: u32,
    pub failures: u32,
    pub failure_rate: f64,
    /// The Wilson score interval at 95%: unlike the normal approximation it stays inside
    /// [0, 1] and is honest for rates near 0 or 1 and for few runs.
    pub ci95: [f64; 2],
    pub duration_ms: Durations,
    /// Distinct failure messages, most frequent first.
    pub failure_messages: Vec<MessageCount>,
    /// Attempt numbers of the first failures.
    pub first_failures: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Durations {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageCount {
    pub message: String,
    pub count: u32,
}
