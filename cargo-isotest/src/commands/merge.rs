//! `cargo isotest merge`: the JSON reports of a CI matrix's shards as one report, and
//! its JUnit.

use std::path::PathBuf;

use clap::Args;

use crate::destination::Destination;
use crate::exit_code::{self, Failure};
use crate::report::junit;
use crate::report::merge::{self, Shard};
use crate::runner::verdict;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shards' JSON reports (`run --report-json`).
    #[arg(value_name = "REPORT", required = true)]
    reports: Vec<PathBuf>,
    /// Write the merged JSON report to OUT.
    #[arg(long, value_name = "OUT")]
    report_json: Option<PathBuf>,
    /// Write the merged JUnit XML report to OUT.
    #[arg(long, value_name = "OUT")]
    junit: Option<PathBuf>,
}

pub fn run(args: MergeArgs) -> i32 {
    execute(&args).unwrap_or_else(Failure::report)
}

fn execute(args: &MergeArgs) -> Result<i32, Failure> {
    let usage = |e: String| Failure::new(exit_code::USAGE, e);
    let json = args.report_json.clone().map(Destination::Given);
    let junit = args
        .junit
        .clone()
        .map(|path| junit::JunitOptions::new(Destination::Given(path)));
    // Before any report is read: a bad output path is the user's to fix at once.
    for destination in json.iter().chain(junit.iter().map(|j| &j.destination)) {
        destination.check().map_err(|e| usage(e.to_string()))?;
    }
    let mut shards = Vec::new();
    for path in &args.reports {
        let report = crate::report::json::read_full(path).map_err(|e| usage(format!("{e:#}")))?;
        shards.push(Shard {
            name: path.display().to_string(),
            report,
        });
    }
    let report = merge::merge(shards).map_err(|e| usage(format!("cannot merge: {e}")))?;
    let replay_from = args
        .report_json
        .as_ref()
        .map_or_else(|| "REPORT".into(), |p| p.display().to_string());
    crate::report::show(&report, replay_from);
    let failed = |e: anyhow::Error| Failure::new(exit_code::SETUP_FAILED, format!("{e:#}"));
    if let Some(json) = &json {
        report.write_json(json).map_err(failed)?;
    }
    if let Some(junit) = &junit {
        junit::write(&report, junit).map_err(failed)?;
    }
    Ok(if verdict::run_failed(&report.tests) {
        exit_code::TESTS_FAILED
    } else {
        0
    })
}
