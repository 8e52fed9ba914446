//! What a sandbox run produced: how the program ended, what it left behind, what it printed.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::limits::watch::InitUsage;
use crate::limits::{LimitExceeded, Resources};
use crate::output::Captured;
use crate::writes::Writes;

/// How the program ended: `{"code": N}` or `{"signal": N, "name": "SIGSEGV"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Exit {
    Code { code: i32 },
    Signal { signal: i32, name: String },
}

impl Exit {
    pub fn from_signal(signal: i32) -> Exit {
        Exit::Signal {
            signal,
            name: signal_name(signal),
        }
    }

    pub fn success(&self) -> bool {
        matches!(self, Exit::Code { code: 0 })
    }

    /// The status a shell would report: the code, or 128 + the signal number.
    pub fn shell_status(&self) -> i32 {
        match self {
            Exit::Code { code } => *code,
            Exit::Signal { signal, .. } => 128 + signal,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code { code } => write!(f, "exit code {code}"),
            Exit::Signal { signal, name } => write!(f, "signal {signal} ({name})"),
        }
    }
}

pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{signal}"))
}

/// A process still alive in the sandbox when the program ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stray {
    /// Its pid inside the sandbox's pid namespace.
    pub pid: i32,
    pub cmdline: String,
    /// It left the program's session or process group (a daemon).
    pub detached: bool,
}

/// The report pid 1 sends when the program has ended and the sandbox is empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finish {
    pub exit: Exit,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub strays: Vec<Stray>,
    /// Set when the program never started; its exit is then 127.
    pub start_error: Option<StartError>,
    pub usage: InitUsage,
}

/// Why the program could not be started inside an otherwise working sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("cannot {action} `{path}` in the sandbox: {}", crate::error::errno_text(*.errno))]
pub struct StartError {
    pub action: String,
    pub path: String,
    pub errno: i32,
}

/// Everything one sandbox run produced. In serde form (which crosses process boundaries,
/// such as a runner's helper's pipe) the captured output is left out, to travel as raw
/// bytes beside it: it need not be UTF-8.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub exit: Exit,
    pub timed_out: bool,
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
    pub strays: Vec<Stray>,
    pub start_error: Option<StartError>,
    /// What the program created, changed or deleted in each writable layer (overlays and
    /// writable binds), with where it was kept if asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Writes>,
    #[serde(skip)]
    pub stdout: Captured,
    #[serde(skip)]
    pub stderr: Captured,
    /// What it used, and what measured and limited it.
    pub resources: Resources,
    /// The limit that stopped the program, if one did.
    pub limit_exceeded: Option<LimitExceeded>,
}

/// A duration as whole milliseconds, as the rest of the reports count time.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_serializes_as_the_documented_shapes() {
        let code = serde_json::to_string(&Exit::Code { code: 3 }).unwrap();
        assert_eq!(code, r#"{"code":3}"#);
        let signal = serde_json::to_string(&Exit::from_signal(11)).unwrap();
        assert_eq!(signal, r#"{"signal":11,"name":"SIGSEGV"}"#);
        let back: Exit = serde_json::from_str(&signal).unwrap();
        assert_eq!(back.shell_status(), 139);
    }

    #[test]
    fn an_outcome_round_trips_without_its_output() {
        let mut stdout = Captured::new(64);
        stdout.push(b"\xff not utf-8");
        let outcome = Outcome {
            exit: Exit::from_signal(9),
            timed_out: true,
            duration: Duration::from_millis(1234),
            strays: vec![Stray {
                pid: 3,
                cmdline: "sleep 9".into(),
                detached: true,
            }],
            start_error: None,
            writes: Vec::new(),
            stdout,
            stderr: Captured::default(),
            resources: Resources {
                peak_memory_bytes: Some(4096),
                ..Resources::default()
            },
            limit_exceeded: Some(LimitExceeded::Processes { limit: 9 }),
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["duration_ms"], 1234);
        assert!(json.get("stdout").is_none());
        let back: Outcome = serde_json::from_value(json).unwrap();
        assert_eq!(back.duration, outcome.duration);
        assert_eq!(
            (back.exit, back.timed_out, back.strays),
            (outcome.exit, true, outcome.strays)
        );
        assert_eq!(back.stdout.total(), 0);
        assert_eq!(back.resources, outcome.resources);
        assert_eq!(back.limit_exceeded, outcome.limit_exceeded);
    }
}
