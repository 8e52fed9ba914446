//! `cargo isotest`: run tests, or any command, in fresh rootless Linux sandboxes.
//!
//! `run` is a pipeline: discover (build, find binaries, list tests) → plan (select, give
//! each test its command and sandbox) → run (helpers create one sandbox per test) →
//! report (terminal, JSON, JUnit).

mod args;
mod cargo;
mod chaos;
mod commands;
mod config;
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
    apply_writes, archive, bisect, doctor, exec, list, merge, replay, run, shell, show_config, wrap,
};

#[derive(Parser)]
#[command(
    name = "cargo-isotest",
    bin_name = "cargo isotest",
    version,
    about = "Run every test in its own fresh rootless Linux sandbox",
    propagate_version = true,
    after_help = "Without a subcommand, `cargo isotest [OPTIONS]` is `cargo isotest run [OPTIONS]`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// When to use colours [default: CARGO_TERM_COLOR, else auto] (NO_COLOR is honoured
    /// under `auto`).
    #[arg(long, value_enum, global = true, value_name = "WHEN")]
    color: Option<Color>,
}

/// Each subcommand's flags are built only when it is the one invoked: building all of
/// them took half a millisecond of every `exec` and `wrap`.
#[derive(Subcommand)]
#[command(defer = true)]
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
    /// Print the effective settings of the profile and of each selected test, and what set
    /// each value.
    ShowConfig(Box<show_config::ShowConfigArgs>),
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
    let cli = Cli::parse_from(with_default_subcommand(args));
    let choice = colour(cli.color, std::env::var("CARGO_TERM_COLOR").ok().as_deref());
    if let Some(flag) = cli.color {
        let word = flag.to_possible_value().expect("no variant is skipped");
        // SAFETY: nothing else runs yet (no thread is started before this point), so no
        // one reads the environment while it changes. Cargo, which builds the tests,
        // then colours its output as --color says, as under nextest.
        unsafe { std::env::set_var("CARGO_TERM_COLOR", word.get_name()) };
    }
    match choice {
        Color::Auto => {}
        Color::Always => anstream::ColorChoice::Always.write_global(),
        Color::Never => anstream::ColorChoice::Never.write_global(),
    }
    let code = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::List(args) => list::run(*args),
        Command::Replay(args) => replay::run(args),
        Command::ApplyWrites(args) => apply_writes::run(args),
        Command::Bisect(args) => bisect::run(args),
        Command::Shell(args) => shell::run(*args),
        Command::ShowConfig(args) => show_config::run(*args),
        Command::Exec(args) => exec::run(*args),
        Command::Doctor(args) => doctor::run(args),
        Command::Archive(args) => archive::run(*args),
        Command::Merge(args) => merge::run(args),
        Command::Wrap(args) => wrap::run(args),
    };
    std::process::exit(code);
}

/// `--color`, else cargo's `CARGO_TERM_COLOR` (which cargo also sets for a subcommand
/// when its own `--color` is given), else auto.
fn colour(flag: Option<Color>, cargo_term_color: Option<&str>) -> Color {
    flag.or_else(|| Color::from_str(cargo_term_color?, true).ok())
        .unwrap_or(Color::Auto)
}

/// Cargo runs us as `cargo-isotest isotest ARGS`; a direct call has no `isotest`.
fn cargo_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.collect();
    if args.get(1).is_some_and(|a| a == "isotest") {
        args.remove(1);
    }
    args
}

/// `run` is the default subcommand: it goes where the first argument that is neither the
/// global `--color` nor a request for the top-level help or version names no subcommand.
fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    let mut at = 1;
    while let Some(arg) = args.get(at).and_then(|a| a.to_str()) {
        match arg {
            "--color" => at += 2,
            _ if arg.starts_with("--color=") => at += 1,
            "-h" | "--help" | "-V" | "--version" | "help" => return args,
            _ if <Command as Subcommand>::has_subcommand(arg) => return args,
            _ => break,
        }
    }
    args.insert(at.min(args.len()), "run".into());
    args
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn colour_follows_the_flag_then_cargo_term_color() {
        assert!(matches!(colour(None, Some("always")), Color::Always));
        assert!(matches!(
            colour(Some(Color::Never), Some("always")),
            Color::Never
        ));
        assert!(matches!(colour(None, Some("bogus")), Color::Auto));
        assert!(matches!(colour(None, None), Color::Auto));
    }

    fn parse(args: &[&str]) -> Cli {
        let args = args.iter().map(OsString::from).collect();
        Cli::try_parse_from(with_default_subcommand(args)).unwrap()
    }

    #[test]
    fn run_is_the_default_subcommand() {
        let Command::Run(args) = parse(&["cargo-isotest", "--", "--nocapture"]).command else {
            panic!("run")
        };
        assert_eq!(args.filter.harness, ["--nocapture"]);
        assert!(args.filter.patterns.is_empty());
        let cli = parse(&["cargo-isotest", "--color", "never", "-P", "ci", "parser"]);
        assert!(matches!(cli.color, Some(Color::Never)));
        let Command::Run(args) = cli.command else {
            panic!("run")
        };
        assert_eq!(args.config.profile.as_deref(), Some("ci"));
        assert_eq!(args.filter.patterns, ["parser"]);
        assert!(matches!(parse(&["cargo-isotest"]).command, Command::Run(_)));
        assert!(matches!(
            parse(&["cargo-isotest", "--color=always", "exec", "--", "true"]).command,
            Command::Exec(_)
        ));
        let top = with_default_subcommand(vec!["cargo-isotest".into(), "--help".into()]);
        assert_eq!(top, ["cargo-isotest", "--help"]);
    }

    #[test]
    fn arguments_after_the_double_dash_go_to_the_harness() {
        let cli = Cli::try_parse_from([
            "cargo-isotest",
            "run",
            "-P",
            "ci",
            "--cargo-profile",
            "release",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("run")
        };
        assert_eq!(args.config.profile.as_deref(), Some("ci"));
        assert_eq!(args.cargo.cargo_profile.as_deref(), Some("release"));
    }
}
