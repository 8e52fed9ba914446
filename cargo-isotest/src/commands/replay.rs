//! `cargo isotest replay`: run one recorded test again, in the very sandbox the report
//! recorded (binds, environment, seed, attempt number, arguments), with its output live.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use isotest_runtime::Spec;

use crate::exit_code;
use crate::launch::foreground;
use crate::report::json::{self, StoredTest};
use crate::report::terminal::shell_quote;
use crate::sandbox::attempt_spec;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A JSON report written by `cargo isotest run`.
    #[arg(value_name = "REPORT")]
    report: PathBuf,
    /// The test: `<binary id> <name>`, its name, or a part of either that only it matches.
    #[arg(value_name = "TEST")]
    filter: String,
    /// Which attempt to replay [default: the first that failed, else the last].
    #[arg(long, value_name = "N")]
    attempt: Option<u32>,
}

pub fn run(args: ReplayArgs) -> i32 {
    match prepare(&args) {
        Ok((label, spec)) => {
            eprintln!(
                "isotest: replaying {label} from {}:\n  cd {} && {}",
                args.report.display(),
                shell_quote(&spec.cwd.display().to_string()),
                spec.argv
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            foreground::run(&spec, |_| {})
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code::USAGE
        }
    }
}

fn prepare(args: &ReplayArgs) -> anyhow::Result<(String, Spec)> {
    let report = json::read(&args.report)?;
    let test = find(&report.tests, &args.filter)?;
    let Some(spec) = &test.spec else {
        bail!(
            "{} {} did not run ({}), so there is no sandbox to replay",
            test.binary_id,
            test.name,
            test.outcome
        );
    };
    let attempt = args.attempt.unwrap_or_else(|| {
        test.attempts
            .iter()
            .find(|a| json::failed(&a.outcome))
            .map_or(test.attempt, |a| a.attempt)
    });
    let label = format!("{} {} (attempt {attempt})", test.binary_id, test.name);
    Ok((label, attempt_spec(spec, attempt)))
}

/// The one test the filter names: an exact `<binary id> <name>` or name first, else the
/// only test containing it.
fn find<'a>(tests: &'a [StoredTest], filter: &str) -> anyhow::Result<&'a StoredTest> {
    let full = |t: &StoredTest| format!("{} {}", t.binary_id, t.name);
    let exact: Vec<&StoredTest> = tests
        .iter()
        .filter(|t| full(t) == filter || t.name == filter)
        .collect();
    let matches = if exact.is_empty() {
        tests.iter().filter(|t| full(t).contains(filter)).collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("no test in the report matches `{filter}`"),
        many => {
            let names: Vec<String> = many
                .iter()
                .take(20)
                .map(|t| format!("  {}", full(t)))
                .collect();
            bail!(
                "`{filter}` matches {} tests; name one of them:\n{}",
                many.len(),
                names.join("\n")
            )
        }
    }
}
