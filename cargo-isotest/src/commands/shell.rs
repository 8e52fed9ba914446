//! `cargo isotest shell`: an interactive shell inside a sandbox identical to the one a
//! test runs in (binds, environment, working directory, hostname, network), on a real
//! terminal, with the test's own command printed first.

use clap::Args;

use crate::args::{ArchiveArgs, ConfigArgs, SandboxArgs};
use crate::cargo::CargoOptions;
use crate::discover::discover_with_sandbox_flags;
use crate::exit_code::{self, Failure};
use crate::launch::helper::{self, ReexecError};
use crate::plan::{self, Filter};
use crate::report::terminal::shell_quote;
use crate::sandbox;

#[derive(Args, Debug)]
pub struct ShellArgs {
    #[command(flatten)]
    filter: Filter,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    cargo: CargoOptions,
}

pub fn run(args: ShellArgs) -> i32 {
    let session = match session(&args) {
        Ok(session) => session,
        Err(failure) => return failure.report(),
    };
    let mut filter = args.filter.clone();
    filter.include_ignored = true;
    let matches = plan::selected(&session, &filter);
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
    // The test's own sandbox: its settings, overrides included.
    let settings = session.settings.test(&test.binary, &test.name);
    let options = match plan::TestOptions::new(&session).of(test, &settings) {
        Ok(options) => options,
        Err(failure) => return failure.report(),
    };
    let binary_spec = sandbox::binary_test_spec(
        &session.build,
        &test.binary,
        &options,
        sandbox::fresh_seed(),
    );
    let test_spec = sandbox::attempt_spec(
        &sandbox::test_spec(&binary_spec, &test.binary, &test.name, test.ignored),
        1,
        None,
    );
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
    // Threads now run in this process (helpers' drivers, the signal watcher), and a
    // sandbox must be created from a single-threaded one: a fresh image of this binary.
    match helper::exec_foreground(&sandbox::shell_spec(&test_spec)) {
        ReexecError::Encode(e) => eprintln!("error: {e}"),
        ReexecError::Exec(e) => eprintln!("error: cannot start the shell: {e}"),
    }
    exit_code::SETUP_FAILED
}

fn session(args: &ShellArgs) -> Result<crate::discover::Session, Failure> {
    let (filter, _) = args.filter.resolve()?;
    discover_with_sandbox_flags(
        &args.cargo,
        &ArchiveArgs::default(),
        &args.config,
        &args.sandbox,
        &filter.filtersets,
        Some(1),
    )
}
