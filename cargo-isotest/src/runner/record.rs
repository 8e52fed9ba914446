//! What the runner decided about each test and each attempt: the records the reporters
//! show and the JSON report stores as they are.

use isotest_runtime::{Captured, Exit, LimitExceeded, Resources, Stray, Writes};
use serde::{Deserialize, Serialize};

use super::chaos_rates::ChaosSummary;
use crate::chaos::Perturbation;
use crate::discover::TestKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stress: Option<StressSummary>,
    /// The command the test ran as, in its binary's sandbox (the report's `binaries`,
    /// with `ISOTEST_ATTEMPT` set per attempt); null when it did not run. Replaying needs
    /// nothing else.
    pub argv: Option<Vec<String>>,
    /// The test's whole sandbox, when its settings (a config override) make it differ
    /// from its binary's in the report's `binaries`; replay then reads this instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<isotest_runtime::Spec>,
    /// With `--explain`, for a failed test: the sandbox rule it depends on, found by
    /// rerunning it with each rule relaxed in turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<super::explain::Explanation>,
}

/// One run of one test in one fresh sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// What it created, changed or deleted in its writable layers (`--writable-source`,
    /// `--bind-rw` directories), and where that was kept (`--keep-writes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Writes>,
    /// Where it panicked, `file:line:column` as rustc printed it (relative to the
    /// workspace root for the workspace's own code), when it did.
    #[serde(default)]
    pub failure_location: Option<String>,
    /// When it started (RFC 3339, UTC); null when it did not run.
    #[serde(default)]
    pub started_at: Option<String>,
    /// The limit that stopped it, e.g. `{"kind": "processes", "limit": 200}`.
    #[serde(default)]
    pub limit_exceeded: Option<LimitExceeded>,
    /// What it used, and which mechanism measured and limited it; null when it did not run.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// When it started, in ms from the start of the run: with `duration_ms`, which tests
    /// ran before it and beside it (`cargo isotest bisect`).
    #[serde(default)]
    pub started_ms: u64,
    /// What `--chaos` drew for this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturbation: Option<Perturbation>,
}

/// Captured output: raw here, lossy UTF-8 with a truncation flag in JSON.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub stdout: Captured,
    pub stderr: Captured,
    /// Read back from a report (`merge`): whether the stored text was already cut.
    pub cut: [bool; 2],
}

impl Output {
    pub fn new(stdout: Captured, stderr: Captured) -> Output {
        Output {
            stdout,
            stderr,
            cut: [false; 2],
        }
    }
}

/// The JSON form of [`Output`].
#[derive(Serialize, Deserialize)]
struct StoredOutput {
    stdout: String,
    stdout_truncated: bool,
    stderr: String,
    stderr_truncated: bool,
}

impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredOutput {
            stdout: self.stdout.lossy(),
            stdout_truncated: self.stdout.truncated() || self.cut[0],
            stderr: self.stderr.lossy(),
            stderr_truncated: self.stderr.truncated() || self.cut[1],
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Output {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Output, D::Error> {
        let stored = StoredOutput::deserialize(deserializer)?;
        let captured = |text: String| {
            let len = text.len() as u64;
            Captured::from_parts(text.into_bytes(), Vec::new(), len)
        };
        Ok(Output {
            stdout: captured(stored.stdout),
            stderr: captured(stored.stderr),
            cut: [stored.stdout_truncated, stored.stderr_truncated],
        })
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
            writes: Vec::new(),
            failure_location: None,
            started_at: None,
            limit_exceeded: None,
            resources: None,
            started_ms: 0,
            perturbation: None,
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
        if let Some(panic) = Panic::find(&self.output.stderr.lossy()) {
            return panic.message;
        }
        match &self.exit {
            Some(exit) => format!("ended with {exit}"),
            None => "failed".into(),
        }
    }
}

/// The first panic in a test's stderr, as libtest's default hook prints it.
#[derive(Debug, PartialEq, Eq)]
pub struct Panic {
    pub message: String,
    pub location: Option<String>,
    /// From the `panicked at` line to the end: the message, the notes and any backtrace.
    pub text: String,
}

impl Panic {
    pub fn find(stderr: &str) -> Option<Panic> {
        let start = stderr.find("panicked at")?;
        let line_start = stderr[..start].rfind('\n').map_or(0, |i| i + 1);
        let text = stderr[line_start..].trim_end().to_string();
        let mut lines = text.lines();
        let first = lines.next()?;
        let after = first[first.find("panicked at")? + "panicked at".len()..].trim();
        // Since Rust 1.73: `panicked at FILE:LINE:COL:` and the message on the next line;
        // before: `panicked at 'MESSAGE', FILE:LINE:COL`.
        let (message, location) = match after.strip_suffix(':') {
            Some(location) => {
                let message = lines.next().filter(|l| !l.trim().is_empty());
                (message.map(|m| m.trim().to_string()), Some(location))
            }
            None => match after.rsplit_once("', ") {
                Some((message, location)) => (
                    Some(message.trim_start_matches('\'').to_string()),
                    Some(location),
                ),
                None => (None, None),
            },
        };
        Some(Panic {
            message: message.unwrap_or_else(|| first.trim().to_string()),
            location: location.map(str::to_string),
            text,
        })
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
            argv: None,
            spec: None,
            explanation: None,
        }
    }

    pub fn is_failure(&self) -> bool {
        self.last.is_failure()
    }
}

/// What many runs of one stressed test say.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// With `--chaos`: the failure rate per perturbation, and the smallest that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCount {
    pub message: String,
    pub count: u32,
}

#[cfg(test)]
mod tests {
    use super::Panic;

    #[test]
    fn a_panic_gives_its_message_location_and_the_text_from_its_line_on() {
        let stderr = "noise\nthread 'a::b' panicked at src/lib.rs:10:5:\nboom: 1 != 2\nnote: run with `RUST_BACKTRACE=1`\n";
        let panic = Panic::find(stderr).unwrap();
        assert_eq!(panic.message, "boom: 1 != 2");
        assert_eq!(panic.location.as_deref(), Some("src/lib.rs:10:5"));
        assert!(panic.text.starts_with("thread 'a::b' panicked"));
        assert!(panic.text.ends_with("RUST_BACKTRACE=1`"));
        let old = Panic::find("thread 'x' panicked at 'old style', src/x.rs:1:2\n").unwrap();
        assert_eq!(old.message, "old style");
        assert_eq!(old.location.as_deref(), Some("src/x.rs:1:2"));
        assert_eq!(Panic::find("no panic here"), None);
    }
}
