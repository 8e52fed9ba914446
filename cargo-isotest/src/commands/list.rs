//! `cargo isotest list`: what a run with the same flags would run, without running it.

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::args::SandboxArgs;
use crate::cargo::CargoOptions;
use crate::discover::{TestKind, discover};
use crate::plan::{self, Filter};

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    filter: Filter,
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
    let session = match discover(&args.cargo, &args.sandbox, None) {
        Ok(session) => session,
        Err(failure) => return failure.report(),
    };
    let selected = plan::select(&session.listings, &args.filter);
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
    0
}
