//! `cargo isotest replay`: run one recorded test again, in the very sandbox the report
//! recorded (binds, environment, seed, attempt number, arguments), with its output live.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use isotest_runtime::Spec;

use crate::chaos::{self, Perturbation};
use crate::exit_code;
use crate::launch::foreground;
use crate::report::json;
use crate::report::terminal::shell_quote;
use crate::sandbox;

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
        Ok((label, spec, perturbation)) => {
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
            if let Some(perturbation) = perturbation {
                eprintln!(
                    "isotest: with the same chaos: {}",
                    chaos::describe(&perturbation)
                );
            }
            foreground::run(&spec, None, |_| {})
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code::USAGE
        }
    }
}

fn prepare(args: &ReplayArgs) -> anyhow::Result<(String, Spec, Option<Perturbation>)> {
    let report = json::read(&args.report)?;
    let test = json::find(&report.tests, &args.filter)?;
    let Some((binary_spec, argv)) = report.test_sandbox(test) else {
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
    let spec = match argv {
        Some(argv) => sandbox::with_test(binary_spec, argv.to_vec(), &test.name),
        None => binary_spec.clone(),
    };
    let seed = report.attempt_seeds.then_some(report.seed);
    Ok((
        label,
        sandbox::attempt_spec(&spec, attempt, seed),
        sandbox::attempt_perturbation(&spec, attempt, seed),
    ))
}
