//! Made-up tests and sandbox outcomes for the runner's unit tests.

use std::sync::Arc;
use std::time::Duration;

use isotest_runtime::{Captured, Exit, Outcome, Stray};

use super::events::{Reporter, RunEvent};
use crate::cargo::build::TestBinary;
use crate::discover::TestKind;
use crate::plan::TestInstance;

pub fn instance(name: &str) -> TestInstance {
    TestInstance {
        binary: Arc::new(TestBinary {
            id: "pkg".into(),
            path: "/t/pkg-1".into(),
            manifest_dir: "/w/pkg".into(),
            env: Default::default(),
            link_paths: Vec::new(),
            package_id: "pkg 0.1.0 (path+file:///w/pkg)".into(),
            kind: "lib".into(),
            target_name: "pkg".into(),
        }),
        name: name.into(),
        kind: TestKind::Test,
        ignored: false,
        run: true,
    }
}

fn captured(text: &str) -> Captured {
    let mut captured = Captured::new(4096);
    captured.push(text.as_bytes());
    captured
}

/// A test process that ended with `code`, printing `stdout`, leaving `strays` behind.
pub fn outcome(code: i32, stdout: &str, strays: usize) -> Outcome {
    Outcome {
        exit: Exit::Code { code },
        timed_out: false,
        duration: Duration::from_millis(5),
        strays: (0..strays)
            .map(|i| Stray {
                pid: 2 + i as i32,
                cmdline: "sleep 100".into(),
                detached: false,
            })
            .collect(),
        start_error: None,
        writes: Vec::new(),
        stdout: captured(stdout),
        stderr: captured(""),
        resources: Default::default(),
        limit_exceeded: None,
    }
}

/// A passing libtest run of one test.
pub fn passed() -> Outcome {
    outcome(
        0,
        "\nrunning 1 test\ntest a ... ok\n\ntest result: ok. 1 passed; 0 failed\n",
        0,
    )
}

/// A failing libtest run of one test, with its panic message.
pub fn failed(message: &str) -> Outcome {
    let mut outcome = outcome(101, "running 1 test\ntest a ... FAILED\n", 0);
    outcome.stderr = captured(&format!(
        "thread 'a' panicked at src/lib.rs:1:1:\n{message}\n"
    ));
    outcome
}

/// Every event, as a short word and the attempt it is about.
#[derive(Default)]
pub struct Log(pub Vec<String>);

impl Reporter for Log {
    fn report(&mut self, event: RunEvent<'_>) {
        self.0.push(match event {
            RunEvent::AttemptStarted { attempt, .. } => format!("start {attempt}"),
            RunEvent::AttemptEnded { attempt, .. } => format!("end {attempt}"),
            RunEvent::Retrying { attempt, of, .. } => format!("retry {}/{of}", attempt.attempt),
            RunEvent::StressAttempt { attempt, .. } => format!("stress {}", attempt.attempt),
            RunEvent::TestFinished { record, .. } => format!("finished {:?}", record.last.outcome),
            RunEvent::Note(text) => format!("note {text}"),
            RunEvent::Explained(record) => format!("explained {}", record.name),
            RunEvent::Tick => "tick".into(),
            RunEvent::Checkpoint(_) => "checkpoint".into(),
        });
    }
}
