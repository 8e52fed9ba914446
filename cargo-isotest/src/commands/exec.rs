//! `cargo isotest exec`: one command in one fresh sandbox, with the program's exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use isotest_runtime::{Echo, Error, Exit, Identity, Mount, Net, Outcome, Sandbox, Spec, Stray};
use serde::Serialize;

use crate::exit_code;

#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLES:\n  cargo isotest exec -- sh -c 'hostname; id; ls /'\n  \
                        cargo isotest exec --bind . --cwd . -- ls\n  \
                        cargo isotest exec --tty -- /bin/sh"
)]
pub struct ExecArgs {
    /// After this long, send SIGTERM to the program (e.g. 30s, 2m, 500ms); no limit by default.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// After the timeout's SIGTERM, how long the program may take to exit before everything
    /// left in the sandbox gets SIGKILL.
    #[arg(long, value_parser = parse_duration, default_value = "2s", value_name = "DURATION")]
    grace: Duration,
    /// Network: only `lo` (up), no usable interface, or the host's network.
    #[arg(long, value_enum, default_value_t = NetArg::Loopback)]
    net: NetArg,
    /// Make a host path visible read-only, at DST or at the same path.
    #[arg(long, value_name = "SRC[:DST]")]
    bind: Vec<String>,
    /// Make a host path visible and writable, at DST or at the same path.
    #[arg(long, value_name = "SRC[:DST]")]
    bind_rw: Vec<String>,
    /// Size cap of the private /tmp and HOME (e.g. 512M, 2G).
    #[arg(long, value_parser = parse_size, default_value = "1G", value_name = "SIZE")]
    tmpfs_size: u64,
    /// Pass a host variable through (KEY) or set one (KEY=VALUE).
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Hostname inside the sandbox.
    #[arg(long, default_value = isotest_runtime::DEFAULT_HOSTNAME, value_name = "NAME")]
    hostname: String,
    /// Appear as uid 0 inside (still without capabilities).
    #[arg(long)]
    root: bool,
    /// Working directory inside; default: the current directory if it is bound, else HOME.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Give the program a terminal of its own and relay this one to it.
    #[arg(long)]
    tty: bool,
    /// Write a JSON report of the run (exit, strays, output, spec) to PATH.
    #[arg(long, value_name = "PATH")]
    report_json: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "PROGRAM")]
    command: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum NetArg {
    Loopback,
    None,
    Host,
}

pub fn run(args: ExecArgs) -> i32 {
    let report_path = args.report_json.clone();
    match build_spec(args) {
        Ok(spec) => run_spec(&spec, report_path.as_deref()),
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code::USAGE
        }
    }
}

/// Runs a spec in the foreground, output and terminal passed through, and returns the
/// status a shell would: shared by `exec`, `replay` and `shell`.
pub(crate) fn run_spec(spec: &Spec, report_path: Option<&Path>) -> i32 {
    let result = run_sandbox(spec);
    if let Some(path) = report_path
        && let Err(e) = write_report(path, spec, &result)
    {
        eprintln!("error: {e:#}");
    }
    match result {
        Ok(outcome) => finish(spec, &outcome),
        Err(Error::Setup(e)) if e.is_spec_problem() => {
            eprintln!("error: {e}; {BIND_DESTINATION_HINT}");
            exit_code::USAGE
        }
        Err(e) => {
            eprintln!("error: {e}");
            crate::commands::doctor::explain_failure(&e);
            exit_code::NO_SANDBOX
        }
    }
}

fn run_sandbox(spec: &Spec) -> Result<Outcome, Error> {
    let signals = isotest_runtime::forwarded_signals(spec.tty)?;
    Sandbox::spawn(spec)?.wait(Echo::Inherit, Some(&signals))
}

/// What to do when a bind's destination cannot be created.
pub(crate) const BIND_DESTINATION_HINT: &str =
    "a --bind destination must be outside the read-only binds, or exist in them already";

/// Tells the user what happened besides the program's own output, and picks the status.
fn finish(spec: &Spec, outcome: &Outcome) -> i32 {
    if !outcome.strays.is_empty() {
        eprintln!("{}", describe_strays(&outcome.strays));
    }
    if let Some(error) = &outcome.start_error {
        eprintln!("error: {error}");
        if error.errno == libc::ENOENT && error.action == "execute" {
            eprintln!(
                "hint: only the system directories and --bind paths are visible; bind the program's directory, or check PATH ({})",
                spec.env
                    .set
                    .get("PATH")
                    .map(String::as_str)
                    .unwrap_or("from the host")
            );
            return exit_code::NOT_FOUND;
        }
        return exit_code::CANNOT_EXECUTE;
    }
    if outcome.timed_out {
        eprintln!(
            "isotest: timed out after {}: the program got SIGTERM, and whatever was still running {} later got SIGKILL (it ended with {})",
            humantime::format_duration(Duration::from_millis(spec.timeout_ms.unwrap_or_default())),
            humantime::format_duration(Duration::from_millis(spec.grace_ms)),
            outcome.exit
        );
        return exit_code::TIMED_OUT;
    }
    outcome.exit.shell_status()
}

fn describe_strays(strays: &[Stray]) -> String {
    let mut text = format!(
        "isotest: {} stray process{} left behind and killed:",
        strays.len(),
        if strays.len() == 1 { " was" } else { "es were" },
    );
    for stray in strays {
        let detached = if stray.detached { " (detached)" } else { "" };
        text.push_str(&format!(
            "\n  pid {}{}: {}",
            stray.pid, detached, stray.cmdline
        ));
    }
    text
}

fn build_spec(args: ExecArgs) -> anyhow::Result<Spec> {
    let mut spec = Spec::new(args.command);
    for (value, writable) in args
        .bind
        .iter()
        .map(|b| (b, false))
        .chain(args.bind_rw.iter().map(|b| (b, true)))
    {
        spec.mounts.push(parse_bind(value, writable)?);
    }
    spec.set_tmpfs_sizes(args.tmpfs_size);
    for item in &args.env {
        spec.env.add(item);
    }
    spec.hostname = args.hostname;
    spec.net = match args.net {
        NetArg::Loopback => Net::Loopback,
        NetArg::None => Net::None,
        NetArg::Host => Net::Host,
    };
    if args.root {
        spec.identity = Identity::Root;
    }
    spec.timeout_ms = args.timeout.map(|t| t.as_millis() as u64);
    spec.grace_ms = args.grace.as_millis() as u64;
    spec.tty = args.tty;
    spec.cwd = match args.cwd {
        Some(dir) => {
            std::path::absolute(&dir).with_context(|| format!("--cwd {}", dir.display()))?
        }
        None => std::env::current_dir()
            .ok()
            .filter(|dir| spec.is_visible(dir))
            .unwrap_or_else(|| spec.home.clone()),
    };
    if !spec.is_visible(&spec.cwd) {
        bail!(
            "--cwd {} is not visible in the sandbox; bind it (e.g. --bind {0}) or choose a bound directory",
            spec.cwd.display()
        );
    }
    spec.validate()?;
    Ok(spec)
}

/// `SRC[:DST]`, with SRC resolved on the host and DST defaulting to SRC's absolute path.
pub(crate) fn parse_bind(value: &str, writable: bool) -> anyhow::Result<Mount> {
    let flag = if writable { "--bind-rw" } else { "--bind" };
    let (src, dst) = match value.split_once(':') {
        Some((src, dst)) => (Path::new(src), Some(PathBuf::from(dst))),
        None => (Path::new(value), None),
    };
    let src = std::fs::canonicalize(src)
        .with_context(|| format!("{flag} {value}: cannot use {}", src.display()))?;
    let dst = match dst {
        Some(dst) if !dst.is_absolute() => {
            bail!("{flag} {value}: the destination must be an absolute path")
        }
        Some(dst) => dst,
        None => std::path::absolute(value).unwrap_or_else(|_| src.clone()),
    };
    Ok(Mount::Bind { src, dst, writable })
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (use e.g. 30s, 2m, 500ms)"))
}

pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    isotest_runtime::parse_size(text)
        .ok_or_else(|| format!("`{text}` is not a size (use e.g. 512M, 2G)"))
}

#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    exit: Option<&'a Exit>,
    timed_out: bool,
    duration_ms: u64,
    strays: &'a [Stray],
    stdout: String,
    stdout_bytes: u64,
    stdout_truncated: bool,
    stderr: String,
    stderr_bytes: u64,
    stderr_truncated: bool,
    error: Option<String>,
    spec: &'a Spec,
}

fn write_report(path: &Path, spec: &Spec, result: &Result<Outcome, Error>) -> anyhow::Result<()> {
    let empty = isotest_runtime::Captured::default();
    let (outcome, error) = match result {
        Ok(o) => (Some(o), o.start_error.as_ref().map(|e| e.to_string())),
        Err(e) => (None, Some(e.to_string())),
    };
    let (stdout, stderr) = outcome.map_or((&empty, &empty), |o| (&o.stdout, &o.stderr));
    let report = Report {
        schema: "isotest-exec/1",
        exit: outcome.map(|o| &o.exit),
        timed_out: outcome.is_some_and(|o| o.timed_out),
        duration_ms: outcome.map_or(0, |o| o.duration.as_millis() as u64),
        strays: outcome.map_or(&[], |o| &o.strays),
        stdout: stdout.lossy(),
        stdout_bytes: stdout.total(),
        stdout_truncated: stdout.truncated(),
        stderr: stderr.lossy(),
        stderr_bytes: stderr.total(),
        stderr_truncated: stderr.truncated(),
        error,
        spec,
    };
    crate::write_atomically(path, &serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write the report to {}", path.display()))
}
