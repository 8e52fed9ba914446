//! One spec in the foreground, output and terminal passed through, with the status a shell
//! would report: what `exec`, `replay` and `shell` end in.

use std::path::Path;
use std::time::Duration;

use isotest_runtime::{Echo, Error, KeepWrites, Layer, Outcome, Sandbox, Spec, Stray, Writes};

use crate::args::{limit_hint, setup_problem};
use crate::{exit_code, host};

/// Runs `spec` from this (single-threaded) process and returns its status; `result` sees
/// the outcome first, to keep a record of it. `keep_writes` keeps the contents of what
/// the program wrote in its writable layers there.
pub fn run(
    spec: &Spec,
    keep_writes: Option<&Path>,
    result: impl FnOnce(&Result<Outcome, Error>),
) -> i32 {
    let outcome = run_sandbox(spec, keep_writes);
    result(&outcome);
    match outcome {
        Ok(outcome) => finish(spec, &outcome),
        Err(Error::Setup(e)) if e.is_spec_problem() => {
            eprintln!("error: {}", setup_problem(&e));
            exit_code::USAGE
        }
        Err(e @ Error::Spec(_)) => {
            eprintln!("error: {e}");
            exit_code::USAGE
        }
        Err(e @ Error::InitLost { signal, .. }) => {
            eprintln!("error: {e}");
            signal.map_or(exit_code::NO_SANDBOX, |s| 128 + s)
        }
        Err(e) => {
            eprintln!("error: {e}");
            host::explain_failure(&e);
            exit_code::NO_SANDBOX
        }
    }
}

fn run_sandbox(spec: &Spec, keep_writes: Option<&Path>) -> Result<Outcome, Error> {
    let signals = isotest_runtime::forwarded_signals(spec.tty)?;
    let mut sandbox = Sandbox::spawn(spec)?;
    if let Some(dir) = keep_writes {
        sandbox = sandbox.keep_writes(KeepWrites::into_dir(dir));
    }
    sandbox.wait(Echo::Inherit, Some(&signals))
}

/// Tells the user what happened besides the program's own output, and picks the status.
fn finish(spec: &Spec, outcome: &Outcome) -> i32 {
    if !outcome.strays.is_empty() {
        eprintln!("{}", describe_strays(&outcome.strays));
    }
    for layer in &outcome.writes {
        eprintln!("{}", describe_writes(layer));
    }
    if let Some(hit) = &outcome.limit_exceeded {
        eprintln!("isotest: {hit} (the program ended with {})", outcome.exit);
        eprintln!("hint: {}", limit_hint(hit));
    }
    if let Some(error) = &outcome.start_error {
        eprintln!("error: {error}");
        if error.errno == libc::ENOENT && error.action == "execute" {
            eprintln!(
                "hint: only the system directories and --bind paths are visible; bind the program's directory, or check PATH ({})",
                spec.env
                    .set
                    .get("PATH")
                    .map(String::as_str)
                    .unwrap_or("from the host")
            );
            return exit_code::NOT_FOUND;
        }
        return exit_code::CANNOT_EXECUTE;
    }
    if outcome.timed_out {
        eprintln!(
            "isotest: timed out after {}: the program got SIGTERM, and whatever was still running {} later got SIGKILL (it ended with {})",
            humantime::format_duration(Duration::from_millis(spec.timeout_ms.unwrap_or_default())),
            humantime::format_duration(Duration::from_millis(spec.grace_ms)),
            outcome.exit
        );
        return exit_code::TIMED_OUT;
    }
    outcome.exit.shell_status()
}

/// `isotest: wrote in /w (an overlay: discarded, the host is unchanged):` and a line each.
pub fn describe_writes(layer: &Writes) -> String {
    let fate = match layer.layer {
        Layer::Overlay => "an overlay: discarded, the host is unchanged",
        Layer::Bind => "a writable bind: on the host",
    };
    let mut text = format!("isotest: wrote in {} ({fate}):", layer.path.display());
    for change in &layer.changes {
        text.push_str(&format!("\n  {change}"));
    }
    if layer.truncated {
        text.push_str(&format!(
            "\n  (only the first {} changes are listed)",
            isotest_runtime::MAX_CHANGES
        ));
    }
    if let Some(kept) = &layer.kept {
        text.push_str(&format!("\n  kept in {}", kept.display()));
    }
    for error in &layer.errors {
        text.push_str(&format!("\n  warning: {error}"));
    }
    text
}

fn describe_strays(strays: &[Stray]) -> String {
    let mut text = format!(
        "isotest: {} stray process{} left behind and killed:",
        strays.len(),
        if strays.len() == 1 { " was" } else { "es were" },
    );
    for stray in strays {
        let detached = if stray.detached { " (detached)" } else { "" };
        text.push_str(&format!(
            "\n  pid {}{}: {}",
            stray.pid, detached, stray.cmdline
        ));
    }
    text
}
