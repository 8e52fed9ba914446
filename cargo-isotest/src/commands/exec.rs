//! `cargo isotest exec`: one command in one fresh sandbox, with the program's exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use std::net::SocketAddr;

use isotest_runtime::{
    Error, Exit, Identity, LimitExceeded, Mount, Outcome, Resources, Spec, Stray, Writes,
};
use serde::Serialize;

use crate::args::{
    LimitArgs, NetArg, PidArg, SysArg, check_env, forward_unix_binds, parse_binds, parse_duration,
    parse_forward, parse_timeout,
};
use crate::destination::Destination;
use crate::exit_code;
use crate::launch::foreground;

#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLES:\n  cargo isotest exec -- sh -c 'hostname; id; ls /'\n  \
                        cargo isotest exec --bind . --cwd . -- ls\n  \
                        cargo isotest exec --tty -- /bin/sh"
)]
pub struct ExecArgs {
    /// After this long, send SIGTERM to the program (e.g. 30s, 2m, 500ms); no limit by default.
    #[arg(long, value_parser = parse_timeout, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// After the timeout's SIGTERM (or a SIGTERM, SIGINT or SIGHUP sent to exec), how long
    /// the program may take to exit before everything left in the sandbox gets SIGKILL. A
    /// second such signal kills at once.
    #[arg(long, value_parser = parse_duration, default_value = "2s", value_name = "DURATION")]
    grace: Duration,
    /// Network: only `lo` (up), no usable interface, or the host's network.
    #[arg(long, value_enum, default_value_t = NetArg::Loopback)]
    net: NetArg,
    /// /sys: the sandbox's own read-only view, the host's (read-only), or none.
    #[arg(long, value_enum, default_value_t = SysArg::Sandbox, value_name = "SYS")]
    sys: SysArg,
    /// Processes: a pid namespace of the sandbox's own, or the host's (a read-only host
    /// /proc; the program can see and signal the host's processes of its user).
    #[arg(long, value_enum, default_value_t = PidArg::Sandbox, value_name = "PID")]
    pid: PidArg,
    /// Make a host path visible read-only, at DST or at the same path.
    #[arg(long, value_name = "SRC[:DST]")]
    bind: Vec<String>,
    /// Make a host path visible and writable, at DST or at the same path.
    #[arg(long, value_name = "SRC[:DST]")]
    bind_rw: Vec<String>,
    /// Make a host directory writable inside through a private overlay, at DST or at the
    /// same path: writes succeed, are listed, and never reach the host.
    #[arg(long, value_name = "SRC[:DST]")]
    overlay: Vec<String>,
    /// Keep the contents of what the program wrote (overlays, writable binds) under DIR.
    #[arg(long, value_name = "DIR")]
    keep_writes: Option<PathBuf>,
    /// Make this loopback address inside reach the same address on the host; repeatable.
    #[arg(long, value_parser = parse_forward, value_name = "ADDR:PORT")]
    forward: Vec<SocketAddr>,
    /// Make a host Unix socket reachable at its own path (a bind of it); repeatable.
    #[arg(long, value_name = "PATH")]
    forward_unix: Vec<String>,
    /// Keep CAP_NET_ADMIN over the sandbox's own network namespace (its firewall rules).
    #[arg(long)]
    net_admin: bool,
    #[command(flatten)]
    limits: LimitArgs,
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
    /// How many namespaces of each kind the program may create (for programs that make
    /// sandboxes or containers themselves).
    #[arg(long, default_value_t = isotest_runtime::DEFAULT_NAMESPACE_LIMIT, value_name = "N")]
    nesting: u32,
    /// Write a JSON report of the run (exit, strays, output, spec) to PATH.
    #[arg(long, value_name = "PATH")]
    report_json: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "PROGRAM")]
    command: Vec<String>,
}

pub fn run(args: ExecArgs) -> i32 {
    let report = args.report_json.clone().map(Destination::Given);
    let keep_writes = args.keep_writes.clone();
    let spec = report
        .iter()
        .try_for_each(|r| r.check().map_err(anyhow::Error::from))
        .and_then(|()| keep_writes.iter().try_for_each(|dir| check_keep_dir(dir)))
        .and_then(|()| build_spec(args));
    let spec = match spec {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit_code::USAGE;
        }
    };
    let mut unwritten = false;
    let status = foreground::run(&spec, keep_writes.as_deref(), |result| {
        if let Some(report) = &report
            && let Err(e) = write_report(report, &spec, result)
        {
            eprintln!("error: {e:#}");
            unwritten = true;
        }
    });
    // The program's own failure says more than the report's.
    if unwritten && status == 0 {
        exit_code::SETUP_FAILED
    } else {
        status
    }
}

fn build_spec(args: ExecArgs) -> anyhow::Result<Spec> {
    check_env(&args.env)?;
    let mut spec = Spec::new(args.command);
    spec.mounts.extend(parse_binds(&args.bind, &args.bind_rw)?);
    spec.namespace_limit = args.nesting;
    spec.mounts.extend(overlays(&args.overlay)?);
    spec.mounts.extend(forward_unix_binds(&args.forward_unix)?);
    spec.forwards = args.forward;
    spec.net_admin = args.net_admin;
    if let Some(size) = args.limits.tmpfs_size {
        spec.set_tmpfs_sizes(size);
    }
    spec.limits = args.limits.checked_limits()?;
    for item in &args.env {
        spec.env.add(item);
    }
    spec.hostname = args.hostname;
    spec.net = args.net.into();
    spec.sys = args.sys.into();
    spec.pid = args.pid.into();
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

/// `--overlay SRC[:DST]`: like a bind, but as an overlay over SRC.
fn overlays(values: &[String]) -> anyhow::Result<Vec<Mount>> {
    let binds = parse_binds(values, &[])
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().replacen("--bind", "--overlay", 1)))?;
    Ok(binds
        .into_iter()
        .filter_map(|m| match m {
            Mount::Bind { src, dst, .. } => Some(Mount::Overlay {
                src,
                dst,
                size: isotest_runtime::DEFAULT_TMPFS_SIZE,
            }),
            _ => None,
        })
        .collect())
}

/// Kept writes go into a directory of their own: an existing one must be empty.
fn check_keep_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            Some(_) => bail!(
                "--keep-writes {}: the directory is not empty; give a new or empty one",
                dir.display()
            ),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("--keep-writes {}: {e}", dir.display())),
    }
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
    #[serde(skip_serializing_if = "<[Writes]>::is_empty")]
    writes: &'a [Writes],
    limit_exceeded: Option<&'a LimitExceeded>,
    resources: Option<&'a Resources>,
    spec: &'a Spec,
}

fn write_report(
    destination: &Destination,
    spec: &Spec,
    result: &Result<Outcome, Error>,
) -> anyhow::Result<()> {
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
        writes: outcome.map_or(&[], |o| &o.writes),
        limit_exceeded: outcome.and_then(|o| o.limit_exceeded.as_ref()),
        resources: outcome.map(|o| &o.resources),
        spec,
    };
    Ok(destination.write(&serde_json::to_vec_pretty(&report)?)?)
}
