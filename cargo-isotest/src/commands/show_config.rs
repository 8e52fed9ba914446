//! `cargo isotest show-config`: the effective settings of the profile and of each
//! selected test, each value with the file, profile, override, variable or flag that set
//! it, so that "why does this test get that?" has an answer without reading every layer.

use clap::Args;

use crate::args::{ArchiveArgs, ConfigArgs, SandboxArgs};
use crate::cargo::CargoOptions;
use crate::config::{Entry, json_schema, test_keys};
use crate::discover::discover_with_sandbox_flags;
use crate::exit_code::Failure;
use crate::plan::{self, Filter};

#[derive(Args, Debug)]
pub struct ShowConfigArgs {
    #[command(flatten)]
    filter: Filter,
    /// Print the config file's JSON Schema (for editors) instead, without building.
    #[arg(long)]
    schema: bool,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    archive: ArchiveArgs,
    #[command(flatten)]
    cargo: CargoOptions,
}

pub fn run(args: ShowConfigArgs) -> i32 {
    execute(&args).unwrap_or_else(Failure::report)
}

fn execute(args: &ShowConfigArgs) -> Result<i32, Failure> {
    if args.schema {
        print!("{}", json_schema());
        return Ok(0);
    }
    let (filter, _) = args.filter.resolve()?;
    let session = discover_with_sandbox_flags(
        &args.cargo,
        &args.archive,
        &args.config,
        &args.sandbox,
        &filter.filtersets,
        Some(1),
    )?;
    let settings = &session.settings;
    let profile = settings.profile.profile();
    println!("profile {}", profile.chain().join(" → "));
    print_entries(&settings.run.entries());
    let groups = profile.test_groups();
    if !groups.is_empty() {
        println!("test-groups");
        for (name, max) in groups {
            let value = match max.value {
                crate::config::MaxThreads::Count(n) => n.to_string(),
                crate::config::MaxThreads::NumCpus => "\"num-cpus\"".into(),
            };
            println!("  {name}.max-threads = {value}  # {}", max.source);
        }
    }
    let keys = test_keys();
    for test in plan::selected(&session, &filter) {
        println!("test {} {}", test.binary.id, test.name);
        let entries: Vec<Entry> = settings
            .test(&test.binary, &test.name)
            .entries()
            .into_iter()
            .filter(|e| {
                let key = e.key.split(['.', '[']).next().unwrap_or_default();
                keys.iter().any(|k| k == key)
            })
            .collect();
        print_entries(&entries);
    }
    Ok(0)
}

fn print_entries(entries: &[Entry]) {
    for entry in entries {
        println!("  {entry}");
    }
}
