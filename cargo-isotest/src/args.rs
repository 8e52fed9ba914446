//! Flag groups and value parsers that several commands share, so that a flag means the
//! same thing, and fails the same way, wherever it appears.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use isotest_runtime::{Mount, Net};

/// What to do when a bind's destination cannot be created.
pub const BIND_DESTINATION_HINT: &str =
    "a --bind destination must be outside the read-only binds, or exist in them already";

/// A mount point the spec asked for that cannot be made, and what to do about it.
pub fn setup_problem(error: &isotest_runtime::SetupError) -> String {
    match error.crossed_symlink() {
        Some(link) => format!(
            "a mount destination crosses the symlink {} inside the sandbox; setup never follows symlinks there, since one could lead out of the sandbox: bind to the path the link points to instead, or remove the link",
            link.display()
        ),
        None => format!("{error}; {BIND_DESTINATION_HINT}"),
    }
}

/// `--net`: the network a sandbox gets.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NetArg {
    Loopback,
    None,
    Host,
}

impl From<NetArg> for Net {
    fn from(net: NetArg) -> Net {
        match net {
            NetArg::Loopback => Net::Loopback,
            NetArg::None => Net::None,
            NetArg::Host => Net::Host,
        }
    }
}

/// Rules of every test's sandbox that a user may relax: `run`, `list` and `shell`.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Sandbox options")]
pub struct SandboxArgs {
    /// Kill a test after this long (e.g. 30s, 5m); no limit by default.
    #[arg(long, value_parser = parse_timeout, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Network of each test: only `lo` (up), no usable interface, or the host's.
    #[arg(long, value_enum, value_name = "NET")]
    pub net: Option<NetArg>,
    /// Make a host path visible read-only in every test's sandbox.
    #[arg(long, value_name = "SRC[:DST]")]
    pub bind: Vec<String>,
    /// Make a host path visible and writable in every test's sandbox.
    #[arg(long, value_name = "SRC[:DST]")]
    pub bind_rw: Vec<String>,
    /// Size cap of each test's private /tmp, HOME and CARGO_TARGET_TMPDIR.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub tmpfs_size: Option<u64>,
    /// Do not make cargo, rustc, rustup and cargo's registry cache visible to tests.
    #[arg(long)]
    pub no_toolchain: bool,
    /// Pass a host variable through to every test (KEY) or set one (KEY=VALUE).
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Let tests read git's, cargo's and other tools' credentials (tokens in
    /// ~/.gitconfig, cargo's config, the workspace's .git/config, ~/.netrc, ...), which
    /// they otherwise see scrubbed or empty.
    #[arg(long)]
    pub pass_credentials: bool,
    /// How many namespaces of each kind a test may create (for tests that make sandboxes
    /// or containers themselves).
    #[arg(long, value_name = "N")]
    pub nesting: Option<u32>,
}

/// `--bind` values then `--bind-rw` values, each resolved on the host.
pub fn parse_binds(read_only: &[String], writable: &[String]) -> anyhow::Result<Vec<Mount>> {
    let read_only = read_only.iter().map(|b| (b, false));
    read_only
        .chain(writable.iter().map(|b| (b, true)))
        .map(|(value, writable)| parse_bind(value, writable))
        .collect()
}

/// `SRC[:DST]`, with SRC resolved on the host and DST defaulting to SRC's absolute path.
fn parse_bind(value: &str, writable: bool) -> anyhow::Result<Mount> {
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

/// `--env` values: each must name a variable.
pub fn check_env(items: &[String]) -> anyhow::Result<()> {
    for item in items {
        let key = item.split_once('=').map_or(item.as_str(), |(key, _)| key);
        if key.is_empty() || key.contains('\0') || key.contains(char::is_whitespace) {
            bail!(
                "--env {item}: `{key}` is not a variable name; give KEY or KEY=VALUE, with no spaces in KEY"
            );
        }
    }
    Ok(())
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (use e.g. 30s, 2m, 500ms)"))
}

/// A `--timeout`: a duration, but not zero, which would kill at once.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(
            "a timeout of 0 would stop the program at once; give a positive duration (e.g. 30s), or leave --timeout out for none".into(),
        ),
        d => Ok(d),
    }
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    isotest_runtime::parse_size(text)
        .ok_or_else(|| format!("`{text}` is not a size (use e.g. 512M, 2G)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_units() {
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("30s"));
    }

    #[test]
    fn bind_destinations_must_be_absolute_and_env_needs_a_name() {
        let err = parse_binds(&["/:relative".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        let binds = parse_binds(&["/".into()], &["/tmp:/scratch".into()]).unwrap();
        assert!(
            matches!(&binds[1], Mount::Bind { dst, writable: true, .. } if dst == Path::new("/scratch"))
        );
        assert!(check_env(&["A=1".into(), "B".into()]).is_ok());
        assert!(check_env(&["=1".into()]).is_err());
        assert!(check_env(&["A B=1".into()]).is_err());
        assert!(parse_timeout("0").unwrap_err().contains("positive"));
        assert_eq!(parse_timeout("1s"), Ok(Duration::from_secs(1)));
    }
}
