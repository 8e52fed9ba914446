//! `cargo isotest shell`: an interactive shell inside a sandbox identical to the one a
//! test runs in (binds, environment, working directory, hostname, network), on a real
//! terminal, with the test's own command printed first.

use std::os::unix::process::CommandExt;
use std::path::Path;

use clap::Args;

use crate::cargo::CargoOptions;
use crate::commands::run::{SandboxArgs, discover};
use crate::exit_code;
use crate::plan::{self, Filter};
use crate::report::terminal::shell_quote;
use crate::runner::attempts::attempt_spec;

/// The hidden argument under which this binary runs one spec in the foreground.
pub const EXEC_SPEC_ARG: &str = "__exec-spec";
/// Where that spec is, as JSON.
const SPEC_ENV: &str = "ISOTEST_EXEC_SPEC";

#[derive(Args, Debug)]
pub struct ShellArgs {
    #[command(flatten)]
    filter: Filter,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    cargo: CargoOptions,
}

pub fn run(args: ShellArgs) -> i32 {
    let session = match discover(&args.cargo, &args.sandbox, Some(1)) {
        Ok(session) => session,
        Err(failure) => {
            anstream::eprintln!("error: {}", failure.message);
            return failure.code;
        }
    };
    let mut filter = args.filter.clone();
    filter.include_ignored = true;
    let matches = plan::select(&session.listings, &filter);
    let test = match matches.as_slice() {
        [one] => one,
        [] => {
            eprintln!(
                "error: no test matches `{}`; `cargo isotest list` shows them all",
                args.filter.patterns.join(" ")
            );
            return exit_code::USAGE;
        }
        many => {
            eprintln!(
                "error: {} tests match; name one of them (add --exact for a whole name):",
                many.len()
            );
            for test in many.iter().take(30) {
                eprintln!("  {} {}", test.binary.id, test.name);
            }
            return exit_code::USAGE;
        }
    };
    let binary_spec = plan::binary_test_spec(&session.build, &test.binary, &session.sandbox);
    let mut test_spec = attempt_spec(&plan::test_spec(&binary_spec, test), 1);
    test_spec
        .env
        .set
        .insert("ISOTEST_SEED".into(), fastrand::u64(..1 << 53).to_string());
    eprintln!(
        "isotest: a shell in the sandbox of {} {}. The test runs as:\n  cd {} && {}\nLeave with `exit`.",
        test.binary.id,
        test.name,
        shell_quote(&test_spec.cwd.display().to_string()),
        test_spec
            .argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut spec = test_spec;
    let shell = if Path::new("/usr/bin/bash").exists() || Path::new("/bin/bash").exists() {
        "bash"
    } else {
        "sh"
    };
    // No rc files: the prompt below says where the shell is (HOME is empty anyway).
    spec.argv = match shell {
        "bash" => vec!["bash".into(), "--norc".into(), "-i".into()],
        _ => vec![shell.into(), "-i".into()],
    };
    spec.tty = true;
    spec.timeout_ms = None;
    spec.env.set.insert("PS1".into(), "isotest:\\w\\$ ".into());
    let json = match serde_json::to_string(&spec) {
        Ok(json) => json,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::SETUP_FAILED;
        }
    };
    // Threads now run in this process (helpers' drivers, the signal watcher), and a
    // sandbox must be created from a single-threaded one: a fresh image of this binary.
    // The spec goes in the environment, which only its owner can read, not on the
    // command line, which every user can.
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe)
            .arg(EXEC_SPEC_ARG)
            .env(SPEC_ENV, &json)
            .exec(),
        Err(e) => e,
    };
    eprintln!("error: cannot start the shell: {error}");
    exit_code::SETUP_FAILED
}

/// The hidden mode `shell` execs into: run the spec it was given in the foreground.
pub fn exec_spec() -> i32 {
    let json = std::env::var(SPEC_ENV).unwrap_or_default();
    match serde_json::from_str(&json) {
        Ok(spec) => crate::commands::exec::run_spec(&spec, None),
        Err(e) => {
            eprintln!("error: unreadable sandbox spec: {e}");
            exit_code::USAGE
        }
    }
}
