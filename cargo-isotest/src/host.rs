//! Whether this host can create sandboxes: the probe every command runs before its first
//! sandbox, and the diagnosis printed when one cannot be created. `doctor` shows the same
//! probe in full.

use isotest_runtime::doctor::{self, HostFacts};
use isotest_runtime::{Echo, Error, Outcome, Sandbox, Spec};

/// `true` takes milliseconds; a probe that takes longer is wedged and must not hang.
pub const PROBE_TIMEOUT_MS: u64 = 10_000;

/// How the runtime's fixes name us.
pub const CALLER: doctor::Caller = doctor::Caller {
    name: "cargo isotest",
    binary: "cargo-isotest",
    doctor: "cargo isotest doctor",
};

/// Runs `true` in a default sandbox: every setup step the real runs need, once.
pub fn probe() -> Result<Outcome, Error> {
    let mut spec = Spec::new(vec!["true".into()]);
    spec.timeout_ms = Some(PROBE_TIMEOUT_MS);
    Sandbox::spawn(&spec).and_then(|sandbox| sandbox.wait(Echo::None, None))
}

/// The probe a command runs once before its first sandbox, so that a host that cannot
/// sandbox is explained up front rather than through every test failing. Must be called
/// while the process is still single-threaded.
pub fn check() -> bool {
    match probe() {
        Ok(_) => true,
        Err(error) => {
            eprintln!("error: this host cannot create sandboxes: {error}");
            explain_failure(&error);
            false
        }
    }
}

/// Prints why the sandbox could not be created and how to fix it, when setup failed.
pub fn explain_failure(error: &Error) {
    if let Error::Setup(failure) = error {
        let diagnosis = doctor::diagnose(failure, &HostFacts::read(), &CALLER);
        eprintln!(
            "isotest: {}\nhow to fix it:\n{}\nRun `cargo isotest doctor` for a full report on this host.",
            diagnosis.summary,
            indent(&diagnosis.fix)
        );
    }
}

/// Every line two spaces in, under a heading.
pub fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
