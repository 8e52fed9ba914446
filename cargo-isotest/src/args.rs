//! Flag groups and value parsers that several commands share, so that a flag means the
//! same thing, and fails the same way, wherever it appears.

use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use isotest_runtime::{LimitExceeded, Limits, Mechanism, Mount, Net, Pid, Sys};

/// What to do when a bind's destination cannot be created.
pub const BIND_DESTINATION_HINT: &str =
    "a --bind destination must be outside the read-only binds, or exist in them already";

/// A mount point the spec asked for that cannot be made, and what to do about it.
pub fn setup_problem(error: &isotest_runtime::SetupError) -> String {
    if let Some(socket) = error.replaced_socket() {
        return format!(
            "the forwarded socket {} is a symlink or no socket now, which it was not when the sandbox was planned (a test with a writable bind of its directory can do that); setup binds neither: restore the socket, or give --forward-unix the socket itself",
            socket.display()
        );
    }
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

/// `--sys`: what of the host's /sys a sandbox shows.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum SysArg {
    None,
    #[default]
    Sandbox,
    Host,
}

impl From<SysArg> for Sys {
    fn from(sys: SysArg) -> Sys {
        match sys {
            SysArg::None => Sys::None,
            SysArg::Sandbox => Sys::Sandbox,
            SysArg::Host => Sys::Host,
        }
    }
}

/// `--pid`: whether a sandbox has a pid namespace of its own.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum PidArg {
    #[default]
    Sandbox,
    Host,
}

impl From<PidArg> for Pid {
    fn from(pid: PidArg) -> Pid {
        match pid {
            PidArg::Sandbox => Pid::Sandbox,
            PidArg::Host => Pid::Host,
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
    /// /sys of each test: the sandbox's own read-only view (its network interfaces and
    /// cgroups, the host's devices), the host's (read-only), or none.
    #[arg(long, value_enum, value_name = "SYS")]
    pub sys: Option<SysArg>,
    /// Processes of each test: a pid namespace of its own, or the host's (a read-only
    /// host /proc; the test can see and signal the host's processes of its user).
    #[arg(long, value_enum, value_name = "PID")]
    pub pid: Option<PidArg>,
    /// Make a host path visible read-only in every test's sandbox.
    #[arg(long, value_name = "SRC[:DST]")]
    pub bind: Vec<String>,
    /// Make a host path visible and writable in every test's sandbox.
    #[arg(long, value_name = "SRC[:DST]")]
    pub bind_rw: Vec<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
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
    /// Let tests write into the workspace through a private overlay: their writes succeed,
    /// are listed in the report, and never reach the checkout (the target dir stays
    /// read-only).
    #[arg(long)]
    pub writable_source: bool,
    /// Make this loopback address (e.g. 127.0.0.1:5432) inside each sandbox reach the
    /// same address on the host; repeatable. Nothing else of the host's network is reachable.
    #[arg(long, value_parser = parse_forward, value_name = "ADDR:PORT")]
    pub forward: Vec<SocketAddr>,
    /// Make a host Unix socket (e.g. /run/postgresql/.s.PGSQL.5432) reachable at its own
    /// path, as a bind of that socket; repeatable.
    #[arg(long, value_name = "PATH")]
    pub forward_unix: Vec<String>,
    /// Let tests keep CAP_NET_ADMIN over their own sandbox's network (firewall rules,
    /// routes, interfaces), and over nothing of the host's.
    #[arg(long)]
    pub net_admin: bool,
}

/// Which configuration a command reads: `run`, `list`, `shell` and `show-config`.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Configuration")]
pub struct ConfigArgs {
    /// The isotest profile to use ([profile.NAME] in .config/isotest.toml) [env: ISOTEST_PROFILE]
    /// [default: default].
    #[arg(short = 'P', long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Read this config file instead of <workspace>/.config/isotest.toml.
    #[arg(long, value_name = "PATH")]
    pub config_file: Option<PathBuf>,
}

/// Running from an archive instead of a build: `run`, `list` and `show-config`.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Archive options")]
pub struct ArchiveArgs {
    /// Run the tests of this archive (`cargo isotest archive` or `cargo nextest archive`)
    /// instead of building: no cargo runs.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["package", "workspace", "exclude", "features", "all_features", "no_default_features", "release", "cargo_profile", "target", "target_dir", "manifest_path"])]
    pub archive_file: Option<PathBuf>,
    /// The checkout the archive was built from, at its path on this machine; nothing is
    /// written into it.
    #[arg(long, value_name = "DIR", requires = "archive_file")]
    pub workspace_remap: Option<PathBuf>,
    /// Unpack into DIR (new or empty) and keep it; else into a temporary directory
    /// removed afterwards.
    #[arg(long, value_name = "DIR", requires = "archive_file")]
    pub extract_to: Option<PathBuf>,
}

/// `--limits-mechanism`: which mechanism enforces the limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum MechanismArg {
    /// The best this host gives: cgroup v2, else cgroup v1 (as root), else the fallback.
    #[default]
    Auto,
    CgroupV2,
    CgroupV1,
    /// The sandbox's pid 1 watches and kills; works everywhere.
    Fallback,
}

/// Resource limits of each sandbox: `run`, `list`, `shell` and `exec`. For the commands
/// that read the configuration they are the command line's layer of the same keys.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Resource limits")]
pub struct LimitArgs {
    /// Memory of each sandbox, its tmpfs contents included (e.g. 256M, 2G); none by default.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub memory_max: Option<u64>,
    /// Processes and threads alive at once in each sandbox; none by default.
    #[arg(long, value_parser = parse_count, value_name = "N")]
    pub pids_max: Option<u64>,
    /// CPU of each sandbox: a number of CPUs (2, 1.5) or a share of one (50%).
    #[arg(long, value_parser = parse_cpus, value_name = "CPUS")]
    pub cpu_max: Option<u64>,
    /// Size cap of each private tmpfs (/tmp, HOME, CARGO_TARGET_TMPDIR, /dev/shm)
    /// [default: 512M, or --memory-max if smaller].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub tmpfs_size: Option<u64>,
    /// What enforces the limits and measures each sandbox's use [default: auto].
    #[arg(long, value_enum, value_name = "MECHANISM")]
    pub limits_mechanism: Option<MechanismArg>,
}

impl LimitArgs {
    /// The limits, checked against what this host gives: a forced mechanism it lacks is
    /// an error, and a limit it cannot enforce is said once, on stderr.
    pub fn checked_limits(&self) -> anyhow::Result<Limits> {
        let limits = self.limits();
        for name in isotest_runtime::limits::check(&limits)? {
            let flag = name.trim_end_matches("_millis").replace('_', "-");
            eprintln!(
                "warning: --{flag} is not enforced on this host (no cgroup gives it); `cargo isotest doctor` says how to get cgroup v2"
            );
        }
        Ok(limits)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            memory_max: self.memory_max,
            pids_max: self.pids_max,
            cpu_max_millis: self.cpu_max,
            mechanism: match self.limits_mechanism {
                None | Some(MechanismArg::Auto) => None,
                Some(MechanismArg::CgroupV2) => Some(Mechanism::CgroupV2),
                Some(MechanismArg::CgroupV1) => Some(Mechanism::CgroupV1),
                Some(MechanismArg::Fallback) => Some(Mechanism::Fallback),
            },
            ..Limits::default()
        }
    }
}

/// How to raise the limit that stopped a test: the flag, and the config key it will have.
pub fn limit_hint(hit: &LimitExceeded) -> String {
    let key = hit.setting().replace('_', "-");
    let (what, note) = match hit {
        LimitExceeded::Memory { .. } => ("--memory-max SIZE", ""),
        LimitExceeded::Processes { .. } => ("--pids-max N", ""),
        LimitExceeded::Tmpfs { .. } => (
            "--tmpfs-size SIZE",
            " A tmpfs is never larger than --memory-max, which its contents count against.",
        ),
        LimitExceeded::FileSize { .. } => ("a larger file_size_max in the spec", ""),
    };
    format!("to raise the {key} limit, pass {what} (config key `{key}`).{note}")
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

/// `--forward` values: a loopback address with a port.
pub fn parse_forward(text: &str) -> Result<SocketAddr, String> {
    let address: SocketAddr = text.parse().map_err(|_| {
        format!("`{text}` is not an address with a port (e.g. 127.0.0.1:5432, [::1]:6379)")
    })?;
    if !address.ip().is_loopback() || address.port() == 0 {
        return Err(format!(
            "`{text}`: only a loopback address (127.0.0.0/8 or ::1) with a port can be forwarded, since the sandbox's only interface is lo"
        ));
    }
    Ok(address)
}

/// `--forward-unix` values (of `exec`): host Unix sockets, each bound at its own path.
pub fn forward_unix_binds(paths: &[String]) -> anyhow::Result<Vec<Mount>> {
    paths
        .iter()
        .map(|value| {
            let path = std::path::absolute(value)
                .with_context(|| format!("--forward-unix {value}: not a usable path"))?;
            unix_socket_bind(&path).with_context(|| format!("--forward-unix {value}"))
        })
        .collect()
}

/// A host Unix socket, bound read-only at its own path (`--forward-unix`,
/// `forward-unix`). The socket is bound, not its directory, so the sandbox sees nothing
/// else there; a server that recreates its socket needs its directory bound instead.
pub fn unix_socket_bind(path: &Path) -> anyhow::Result<Mount> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot use {}", path.display()))?;
    if !meta.file_type().is_socket() {
        bail!(
            "{} is not a Unix socket; give the socket a server listens on (or bind its directory: --bind DIR, `bind-ro = [\"DIR\"]`)",
            path.display()
        );
    }
    // Resolved now, as the user means it (/var/run is often a link to /run): the
    // sandbox then follows no link to it, whatever a test plants there later.
    let src = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    Ok(Mount::Socket {
        src,
        dst: path.to_path_buf(),
    })
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

/// A setting's value as its config key takes it (`--status-level fail` as
/// `status-level = "fail"`), so that a flag accepts exactly what the file does.
pub fn parse_setting<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::Value::String(text.to_string())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())
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
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{text}` is not a size (use e.g. 512M, 2G)"))
}

fn parse_count(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{text}` is not a count (use a whole number from 1)"))
}

fn parse_cpus(text: &str) -> Result<u64, String> {
    isotest_runtime::parse_cpus(text)
        .ok_or_else(|| format!("`{text}` is not a CPU amount (use e.g. 2, 1.5 or 50%)"))
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
    fn limits_parse_with_their_units() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_count("0").unwrap_err().contains("whole number"));
        assert_eq!(parse_cpus("50%"), Ok(500));
        let args = LimitArgs {
            pids_max: Some(200),
            limits_mechanism: Some(MechanismArg::Fallback),
            ..LimitArgs::default()
        };
        let limits = args.limits();
        assert_eq!(limits.pids_max, Some(200));
        assert_eq!(limits.mechanism, Some(Mechanism::Fallback));
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

    #[test]
    fn only_loopback_addresses_with_ports_are_forwarded() {
        assert_eq!(
            parse_forward("127.0.0.1:5432"),
            Ok("127.0.0.1:5432".parse().unwrap())
        );
        assert!(parse_forward("[::1]:6379").is_ok());
        assert!(
            parse_forward("10.0.0.5:5432")
                .unwrap_err()
                .contains("loopback")
        );
        assert!(parse_forward("127.0.0.1:0").is_err());
        assert!(parse_forward("localhost").unwrap_err().contains("e.g."));
        let dir = tempfile::tempdir().unwrap();
        let err = forward_unix_binds(&[dir.path().display().to_string()]).unwrap_err();
        assert!(format!("{err:#}").contains("not a Unix socket"), "{err:#}");
    }
}
