//! `cargo isotest`: run tests, or any command, in fresh rootless Linux sandboxes.

mod doctor;
mod exec;
mod exit_code;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo-isotest",
    bin_name = "cargo isotest",
    version,
    about = "Run every test in its own fresh rootless Linux sandbox",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one command in a fresh sandbox.
    Exec(Box<exec::ExecArgs>),
    /// Check whether this host can create sandboxes; if not, say why and how to fix it.
    Doctor(doctor::DoctorArgs),
}

fn main() {
    let cli = Cli::parse_from(cargo_args(std::env::args_os()));
    let code = match cli.command {
        Command::Exec(args) => exec::run(*args),
        Command::Doctor(args) => doctor::run(args),
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

/// Writes through a temporary file and a rename, so that a reader never sees half a file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
