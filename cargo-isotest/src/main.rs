//! `cargo isotest`: run tests, or any command, in fresh rootless Linux sandboxes.
//!
//! `run` is a pipeline: discover (build, find binaries, list tests) → plan (select, give
//! each test its command and sandbox) → run (helpers create one sandbox per test) →
//! report (terminal, JSON, JUnit).

mod args;
mod cargo;
mod chaos;
mod commands;
mod credentials;
mod destination;
mod discover;
mod exit_code;
mod host;
mod launch;
#[cfg(test)]
mod nextest_fixture;
mod plan;
mod report;
mod runner;
mod sandbox;

use std::ffi::OsString;

use clap::{Parser, Subcommand, ValueEnum};

use commands::{
    apply_writes, archive, bisect, doctor, exec, list, merge, replay, run, shell, wrap,
};

#[derive(Parser)]
#[command(
    name = "cargo-isotest",
    bin_name = "cargo isotest",
    version,
    about = "Run every test in its own fresh rootless Linux sandbox",
    propagate_version = true,
    subcommand_precedence_over_arg = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// When to use colours (NO_COLOR is honoured under `auto`).
    #[arg(long, value_enum, global = true, default_value_t = Color::Auto, value_name = "WHEN")]
    color: Color,
    /// Without a subcommand: `run`.
    #[command(flatten)]
    run: run::RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Build the tests and run each one in its own sandbox (the default).
    Run(Box<run::RunArgs>),
    /// List the tests a run would select.
    List(Box<list::ListArgs>),
    /// Run one test of a JSON report again, in the sandbox the report recorded.
    Replay(replay::ReplayArgs),
    /// Copy what one test wrote into the checkout, after showing it (--keep-writes).
    ApplyWrites(apply_writes::ApplyWritesArgs),
    /// Find the tests that make a test fail: those that ran before it or beside it.
    Bisect(bisect::BisectArgs),
    /// Open a shell inside the sandbox a test runs in.
    Shell(Box<shell::ShellArgs>),
    /// Run one command in a fresh sandbox.
    Exec(Box<exec::ExecArgs>),
    /// Check whether this host can create sandboxes; if not, say why and how to fix it.
    Doctor(doctor::DoctorArgs),
    /// Build the tests and pack them into an archive (cargo-nextest's format) to run
    /// elsewhere with `run --archive-file`.
    Archive(Box<archive::ArchiveArgs>),
    /// Merge the JSON reports of a CI matrix's shards into one report.
    Merge(merge::MergeArgs),
    /// Run one test-binary invocation in the sandbox `run` gives it: a nextest wrapper
    /// script or a cargo target runner.
    Wrap(wrap::WrapArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

fn main() {
    let args = cargo_args(std::env::args_os());
    if let Some(code) = launch::helper::hidden_mode(&args) {
        std::process::exit(code);
    }
    let cli = Cli::parse_from(args);
    match cli.color {
        Color::Auto => {}
        Color::Always => anstream::ColorChoice::Always.write_global(),
        Color::Never => anstream::ColorChoice::Never.write_global(),
    }
    let code = match cli.command {
        None => run::run(cli.run),
        Some(Command::Run(args)) => run::run(*args),
        Some(Command::List(args)) => list::run(*args),
        Some(Command::Replay(args)) => replay::run(args),
        Some(Command::ApplyWrites(args)) => apply_writes::run(args),
        Some(Command::Bisect(args)) => bisect::run(args),
        Some(Command::Shell(args)) => shell::run(*args),
        Some(Command::Exec(args)) => exec::run(*args),
        Some(Command::Doctor(args)) => doctor::run(args),
        Some(Command::Archive(args)) => archive::run(*args),
        Some(Command::Merge(args)) => merge::run(args),
        Some(Command::Wrap(args)) => wrap::run(args),
    };
    std::process::exit(code);
}

/// Cargo runs us as `cargo-isotest isotest ARGS`; a direct call has no `isotest`.
fn cargo_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.collect();
    if args.get(1).is_some_and(|a| a == "isotest") {
        args.remove(1);
    }
    args
}
