//! `cargo isotest list`: what a run with the same flags would run, without running it.

use clap::{Args, ValueEnum};
use serde::Serialize;

use std::collections::BTreeMap;

use serde_json::json;

use crate::args::{ArchiveArgs, ConfigArgs, SandboxArgs};
use crate::cargo::CargoOptions;
use crate::discover::{TestKind, discover_with_sandbox_flags};
use crate::exit_code::Failure;
use crate::plan::{self, Filter, Partition};

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    filter: Filter,
    #[command(flatten)]
    config: ConfigArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human, value_name = "FORMAT", help_heading = "Output")]
    message_format: Format,
    /// List only shard K of N of the selected tests (as `run --partition`).
    #[arg(long, value_name = "KIND:K/N", help_heading = "Test selection")]
    partition: Option<Partition>,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    archive: ArchiveArgs,
    #[command(flatten)]
    cargo: CargoOptions,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Serialize)]
struct Listed<'a> {
    binary_id: &'a str,
    name: &'a str,
    binary_path: String,
    package_name: &'a str,
    kind: TestKind,
    ignored: bool,
    /// Whether `run` with the same filters would run it (rather than report it ignored).
    runs: bool,
}

pub fn run(args: ListArgs) -> i32 {
    execute(&args).unwrap_or_else(Failure::report)
}

fn execute(args: &ListArgs) -> Result<i32, Failure> {
    let (filter, _) = args.filter.resolve()?;
    let session = discover_with_sandbox_flags(
        &args.cargo,
        &args.archive,
        &args.config,
        &args.sandbox,
        &filter.filtersets,
        None,
    )?;
    // The filters first, then the partition's shard of what they select, as in nextest.
    let mut selected = plan::selected(&session, &filter);
    plan::partition(&mut selected, args.partition);
    let listed: Vec<Listed> = selected
        .iter()
        .map(|t| Listed {
            binary_id: &t.binary.id,
            name: &t.name,
            binary_path: t.binary.path.display().to_string(),
            package_name: t
                .binary
                .env
                .get("CARGO_PKG_NAME")
                .map_or("", String::as_str),
            kind: t.kind,
            ignored: t.ignored,
            runs: t.run,
        })
        .collect();
    match args.message_format {
        Format::Json => {
            let document = json!({
                "schema": "isotest-list/1",
                "tests": listed,
                "test-count": listed.len(),
                "rust-suites": nextest_suites(&listed, &session),
            });
            println!("{document:#}");
        }
        Format::Human => {
            for test in &listed {
                let mut notes = Vec::new();
                if test.kind == TestKind::Bench {
                    notes.push("bench");
                }
                if test.ignored {
                    notes.push("ignored");
                }
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join(", "))
                };
                println!("{} {}{notes}", test.binary_id, test.name);
            }
        }
    }
    Ok(0)
}

/// The tests as `cargo nextest list --message-format json` groups them: by binary, in
/// nextest's field names where the concepts match.
fn nextest_suites(listed: &[Listed], session: &crate::discover::Session) -> serde_json::Value {
    let mut suites: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    for test in listed {
        let suite = suites.entry(test.binary_id).or_insert_with(|| {
            let cwd = session
                .build
                .binaries
                .iter()
                .find(|b| b.id == test.binary_id)
                .map(|b| b.manifest_dir.display().to_string());
            json!({
                "binary-id": test.binary_id,
                "binary-path": test.binary_path,
                "package-name": test.package_name,
                "cwd": cwd,
                "status": "listed",
                "testcases": {},
            })
        });
        let status = if test.runs {
            json!({ "status": "matches" })
        } else {
            json!({ "status": "mismatch", "reason": "ignored" })
        };
        suite["testcases"][test.name] = json!({
            "kind": test.kind,
            "ignored": test.ignored,
            "filter-match": status,
        });
    }
    json!(suites)
}
