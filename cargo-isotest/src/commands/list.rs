//! `cargo isotest list`: what a run with the same flags would run, without running it.

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::args::{ConfigArgs, SandboxArgs};
use crate::cargo::CargoOptions;
use crate::discover::{TestKind, discover_with_sandbox_flags};
use crate::exit_code::Failure;
use crate::plan::{self, Filter};

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    filter: Filter,
    #[command(flatten)]
    config: ConfigArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human, value_name = "FORMAT", help_heading = "Output")]
    message_format: Format,
    #[command(flatten)]
    sandbox: SandboxArgs,
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
        &args.config,
        &args.sandbox,
        &filter.filtersets,
        None,
    )?;
    let selected = plan::selected(&session, &filter);
    let listed: Vec<Listed> = selected
        .iter()
        .map(|t| Listed {
            binary_id: &t.binary.id,
            name: &t.name,
            kind: t.kind,
            ignored: t.ignored,
            runs: t.run,
        })
        .collect();
    match args.message_format {
        Format::Json => {
            let document = serde_json::json!({ "schema": "isotest-list/1", "tests": listed });
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
