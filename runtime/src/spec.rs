//! The sandbox spec: plain data that fully describes one sandbox, so that it can be
//! recorded in a report and replayed later.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chaos::{Chaos, ChaosError};
use crate::idmap::IdMapping;

/// Host variables that pass into a sandbox unless the spec says otherwise. Locale, terminal
/// and Rust diagnostics only: nothing that carries credentials.
pub const DEFAULT_ENV_PASS: &[&str] = &[
    "PATH",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "USER",
    "LOGNAME",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "RUST_LOG",
    "RUST_MIN_STACK",
];

/// Host directories that hold what programs need to run. Bound read-only when they are
/// directories and recreated as symlinks when they are symlinks (merged /usr).
pub const DEFAULT_SYSTEM_PATHS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// Each private tmpfs (/tmp, HOME, CARGO_TARGET_TMPDIR) holds at most this much unless the
/// spec says otherwise; a memory limit caps them further (see [`Spec::tmpfs_size`]).
pub const DEFAULT_TMPFS_SIZE: u64 = 512 << 20;
pub const DEFAULT_HOSTNAME: &str = "isotest";
pub const DEFAULT_GRACE_MS: u64 = 2_000;
/// Namespaces of each kind the program may create: enough for tests that make a few,
/// too few to charge hundreds to the host user's limits.
pub const DEFAULT_NAMESPACE_LIMIT: u32 = 32;

/// Host trees that act on the whole kernel or its devices: never bound writable.
pub const KERNEL_TREES: &[&str] = &["/proc", "/sys", "/dev"];

/// Whether `src`, its links resolved, is in one of the [`KERNEL_TREES`].
fn in_kernel_tree(src: &Path) -> bool {
    let real = std::fs::canonicalize(src).unwrap_or_else(|_| src.to_path_buf());
    KERNEL_TREES.iter().any(|tree| real.starts_with(tree))
}

/// Everything that defines one sandbox and the program it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The program and its arguments; a name without `/` is looked up in the sandbox's `PATH`.
    pub argv: Vec<String>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    pub env: Env,
    /// Applied parents first (by depth of `dst`), then in list order.
    pub mounts: Vec<Mount>,
    /// Value of `HOME` inside; the default spec puts a private tmpfs there.
    pub home: PathBuf,
    pub hostname: String,
    pub net: Net,
    pub identity: Identity,
    /// Which host ids the namespace maps; reports from before it existed ran with one.
    #[serde(default = "IdMapping::single")]
    pub ids: IdMapping,
    /// After this, SIGTERM goes to the program; `None` waits forever.
    pub timeout_ms: Option<u64>,
    /// Time between SIGTERM and SIGKILL of the whole sandbox.
    pub grace_ms: u64,
    /// Give the program a pseudo-terminal instead of pipes, and relay the caller's terminal.
    pub tty: bool,
    /// The sandbox's own `user.max_*_namespaces`: how many namespaces of each kind the
    /// program and its children may create.
    #[serde(default = "default_namespace_limit")]
    pub namespace_limit: u32,
    /// Loopback addresses that, inside, reach the same address on the host: the
    /// supervisor relays each connection. Nothing else of the host's network is reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<SocketAddr>,
    /// Let the program keep CAP_NET_ADMIN over the sandbox's own network namespace (and
    /// nothing else), so that it can set its own firewall rules and routes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub net_admin: bool,
    /// What of the host's /sys the sandbox shows; a report written before /sys existed in
    /// the sandbox had none.
    #[serde(default = "Sys::absent")]
    pub sys: Sys,
    /// Whether the sandbox has a pid namespace of its own.
    #[serde(default)]
    pub pid: Pid,
    /// Resource limits; absent in reports written before they existed.
    #[serde(default)]
    pub limits: Limits,
    /// Perturbations pid 1 applies to the program (none by default).
    #[serde(default, skip_serializing_if = "Chaos::is_empty")]
    pub chaos: Chaos,
}

/// What one sandbox may use; `None` is unlimited. Enforced by the best mechanism the host
/// gives (see [`crate::Mechanism`]), and every run's record says which one that was.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory of the whole sandbox in bytes, its tmpfs contents included.
    pub memory_max: Option<u64>,
    /// Processes and threads alive at once in the sandbox, its pid 1 included.
    pub pids_max: Option<u64>,
    /// CPU bandwidth in thousandths of a CPU: 1500 is one and a half CPUs.
    pub cpu_max_millis: Option<u64>,
    /// User namespaces the sandbox may create inside itself (`user.max_user_namespaces`).
    pub max_user_namespaces: Option<u64>,
    /// Largest file a process may write (RLIMIT_FSIZE), in bytes.
    pub file_size_max: Option<u64>,
    /// Open descriptors per process (RLIMIT_NOFILE).
    pub open_files_max: Option<u64>,
    /// Address space per process (RLIMIT_AS), in bytes. Not derived from `memory_max`:
    /// threads and allocators reserve far more address space than they touch.
    pub address_space_max: Option<u64>,
    /// Force one mechanism instead of the best available one.
    pub mechanism: Option<crate::limits::Mechanism>,
}

impl Limits {
    /// Whether any limit the sandbox as a whole must keep is set.
    pub fn any_sandbox_limit(&self) -> bool {
        self.memory_max.is_some() || self.pids_max.is_some() || self.cpu_max_millis.is_some()
    }
}

fn default_namespace_limit() -> u32 {
    DEFAULT_NAMESPACE_LIMIT
}

/// The environment inside: exactly `set`, plus the listed host variables that exist.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Env {
    pub pass: Vec<String>,
    pub set: BTreeMap<String, String>,
}

impl Env {
    /// Adds a command-line `KEY` (pass the host's value through) or `KEY=VALUE` (set it).
    pub fn add(&mut self, item: &str) {
        match item.split_once('=') {
            Some((key, value)) => {
                self.set.insert(key.to_string(), value.to_string());
            }
            None => self.pass.push(item.to_string()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Mount {
    /// A host path made visible at `dst`, with all its submounts; read-only unless `writable`.
    Bind {
        src: PathBuf,
        dst: PathBuf,
        writable: bool,
    },
    /// A private, empty, writable tmpfs capped at `size` bytes.
    Tmpfs { dst: PathBuf, size: u64 },
    /// A host directory made writable without letting a write reach it: an overlay whose
    /// lower layer is `src`, read-only, and whose upper layer is a tmpfs of the sandbox's
    /// own, capped at `size` bytes and gone with it. What the program created, changed or
    /// deleted there is reported in [`Outcome::writes`](crate::Outcome::writes).
    Overlay {
        src: PathBuf,
        dst: PathBuf,
        size: u64,
    },
    /// A host Unix socket made reachable at `dst` (`--forward-unix`), as a read-only
    /// bind of it: connecting works, nothing else of its directory is seen. `src` is
    /// resolved already; setup opens it without following a symlink and refuses it
    /// unless it is a socket, whatever a test with a writable bind of its directory made
    /// of it since.
    Socket { src: PathBuf, dst: PathBuf },
    /// A symlink in the sandbox's root, as merged-/usr hosts have for /bin and /lib.
    Symlink { path: PathBuf, target: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Net {
    /// A private network namespace whose only interface, `lo`, is up.
    Loopback,
    /// A private network namespace whose `lo` stays down: no usable interface at all.
    None,
    /// The host's network.
    Host,
}

/// The sandbox's /sys. Every variant is read-only throughout, submounts included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sys {
    /// No /sys at all.
    None,
    /// A fresh sysfs of the sandbox's own network namespace (its `/sys/class/net` lists
    /// the sandbox's interfaces, the rest is the host's devices, block devices, buses and
    /// kernel), with the sandbox's own cgroups at `/sys/fs/cgroup`. With [`Net::Host`] the
    /// kernel refuses a fresh sysfs, so the host's is bound instead, as with [`Sys::Host`].
    Sandbox,
    /// The host's /sys bound as it is (the host's network interfaces), with the sandbox's
    /// own cgroups at `/sys/fs/cgroup`.
    Host,
}

impl Sys {
    fn absent() -> Sys {
        Sys::None
    }
}

/// The sandbox's process view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pid {
    /// A pid namespace of its own: the program sees only its own processes, and pid 1 is
    /// the sandbox's init.
    #[default]
    Sandbox,
    /// The host's pid namespace and its /proc, read-only. The program sees, and can
    /// signal, every host process its user owns; init is a subreaper that still reports
    /// and kills what the program leaves behind.
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    /// The caller's own uid and gid, mapped 1:1.
    Caller,
    /// The caller appears as uid 0 and gid 0: without capabilities when only the caller
    /// is mapped, with those that switch ids and own files when others are too
    /// ([`IdMapping::maps_other_ids`]).
    Root,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the sandbox has no program to run (argv is empty)")]
    EmptyArgv,
    #[error("`{0}` must be an absolute path inside the sandbox")]
    NotAbsolute(PathBuf),
    #[error("`{0}` must not contain `.` or `..` components")]
    NotNormal(PathBuf),
    #[error("`{0}` is managed by the sandbox itself and cannot be a mount destination")]
    Reserved(PathBuf),
    #[error("bind source `{path}` is not usable: {source}")]
    BindSource {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hostname `{0}` is not valid: use 1 to 64 characters of [A-Za-z0-9.-]")]
    Hostname(String),
    #[error(
        "environment variable name `{0}` is not valid: use a non-empty name without `=`, spaces or NUL (e.g. --env NAME=value)"
    )]
    EnvName(String),
    #[error("overlay source `{0}` is not a directory")]
    OverlaySource(PathBuf),
    #[error(
        "`{0}` is not a Unix socket (at an absolute path): give the socket a server listens on, or bind its directory"
    )]
    NotASocket(PathBuf),
    #[error(
        "cannot forward {0}: only loopback addresses (127.0.0.0/8, ::1) with a port can be forwarded, since `lo` is the sandbox's only interface"
    )]
    ForwardAddress(SocketAddr),
    #[error(
        "cannot forward {0}: forwarding needs the sandbox's own loopback network (net = loopback)"
    )]
    ForwardNet(SocketAddr),
    #[error(transparent)]
    Chaos(#[from] ChaosError),
    #[error(
        "the spec maps every host id (`ids` mode `full`), which only root may do; \
         use mode `single`, or `subordinate` with this user's /etc/subuid and /etc/subgid ranges"
    )]
    FullMapNeedsRoot,
    #[error(
        "HOME is {0}, which the sandbox would hide under its private HOME: set HOME to a directory outside the system directories and the workspace (e.g. HOME=/home/$USER)"
    )]
    HomeHides(PathBuf),
    #[error(
        "the private tmpfs at {0} would hide the mount at the same path: give it a path of its own"
    )]
    TmpfsHides(PathBuf),
    #[error(
        "`{0}` cannot be bound writable: it acts on the whole host's kernel or devices; bind it read-only (--bind) or not at all"
    )]
    WritableKernelTree(PathBuf),
}

impl Spec {
    /// The default sandbox for `argv`, taking the system directories, `HOME` and the
    /// environment from the calling host.
    pub fn new(argv: Vec<String>) -> Spec {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute() && h != Path::new("/"))
            .unwrap_or_else(|| PathBuf::from("/home/isotest"));
        let mut mounts = system_mounts();
        // /var/tmp too, which programs use for files that should outlive a reboot
        // (tempfile's `tempdir_in("/var/tmp")` in nix's tests): private, like /tmp.
        for dir in ["/tmp", "/var/tmp"] {
            mounts.push(Mount::Tmpfs {
                dst: PathBuf::from(dir),
                size: DEFAULT_TMPFS_SIZE,
            });
        }
        mounts.push(Mount::Tmpfs {
            dst: home.clone(),
            size: DEFAULT_TMPFS_SIZE,
        });
        Spec {
            argv,
            cwd: home.clone(),
            env: Env {
                pass: DEFAULT_ENV_PASS.iter().map(|s| s.to_string()).collect(),
                set: BTreeMap::new(),
            },
            mounts,
            home,
            hostname: DEFAULT_HOSTNAME.to_string(),
            net: Net::Loopback,
            identity: Identity::Caller,
            ids: crate::idmap::host_ids().mapping,
            timeout_ms: None,
            grace_ms: DEFAULT_GRACE_MS,
            tty: false,
            namespace_limit: DEFAULT_NAMESPACE_LIMIT,
            forwards: Vec::new(),
            net_admin: false,
            sys: Sys::Sandbox,
            pid: Pid::Sandbox,
            limits: Limits::default(),
            chaos: Chaos::default(),
        }
    }

    /// Caps every private tmpfs (/tmp, HOME, an overlay's upper layer, any other) at `bytes`.
    pub fn set_tmpfs_sizes(&mut self, bytes: u64) {
        for mount in &mut self.mounts {
            if let Mount::Tmpfs { size, .. } | Mount::Overlay { size, .. } = mount {
                *size = bytes;
            }
        }
    }

    /// The size a tmpfs of `size` bytes is mounted with: never more than the memory limit,
    /// which its contents count against.
    pub fn tmpfs_size(&self, size: u64) -> u64 {
        self.limits.memory_max.map_or(size, |max| size.min(max))
    }

    /// The size of /dev/shm: capped like /tmp.
    pub fn shm_size(&self) -> u64 {
        let tmp = self.mounts.iter().find_map(|m| match m {
            Mount::Tmpfs { dst, size } if dst == Path::new("/tmp") => Some(*size),
            _ => None,
        });
        self.tmpfs_size(tmp.unwrap_or(DEFAULT_TMPFS_SIZE))
    }

    /// Whether `path` exists in the sandbox as the spec builds it: at or under a bind, or
    /// exactly at a tmpfs (which starts empty).
    pub fn is_visible(&self, path: &Path) -> bool {
        self.mounts.iter().any(|m| match m {
            Mount::Bind { dst, .. } | Mount::Overlay { dst, .. } => path.starts_with(dst),
            Mount::Tmpfs { dst, .. } | Mount::Socket { dst, .. } => path == dst,
            Mount::Symlink { path: p, .. } => path == p,
        })
    }

    /// Checks what the kernel would otherwise reject deep inside setup, with a better message.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.argv.is_empty() {
            return Err(SpecError::EmptyArgv);
        }
        check_sandbox_path(&self.cwd)?;
        check_sandbox_path(&self.home)?;
        for mount in &self.mounts {
            let dst = match mount {
                Mount::Bind { src, dst, writable } => {
                    std::fs::metadata(src).map_err(|source| SpecError::BindSource {
                        path: src.clone(),
                        source,
                    })?;
                    // Only a writable bind can be refused, and resolving every component
                    // of a path costs a readlink each, in every sandbox a helper makes.
                    if *writable && in_kernel_tree(src) {
                        return Err(SpecError::WritableKernelTree(src.clone()));
                    }
                    dst
                }
                Mount::Overlay { src, dst, .. } => {
                    let meta = std::fs::metadata(src).map_err(|source| SpecError::BindSource {
                        path: src.clone(),
                        source,
                    })?;
                    if !meta.is_dir() {
                        return Err(SpecError::OverlaySource(src.clone()));
                    }
                    dst
                }
                Mount::Socket { src, dst } => {
                    use std::os::unix::fs::FileTypeExt;
                    let meta = std::fs::metadata(src).map_err(|source| SpecError::BindSource {
                        path: src.clone(),
                        source,
                    })?;
                    if !src.is_absolute() || !meta.file_type().is_socket() {
                        return Err(SpecError::NotASocket(src.clone()));
                    }
                    dst
                }
                Mount::Tmpfs { dst, .. } => dst,
                Mount::Symlink { path, .. } => path,
            };
            check_sandbox_path(dst)?;
            let reserved = ["/proc", "/dev"]
                .iter()
                .chain((self.sys != Sys::None).then_some(&"/sys"))
                .any(|r| dst.starts_with(r));
            if dst == Path::new("/") || reserved {
                return Err(SpecError::Reserved(dst.clone()));
            }
        }
        self.check_tmpfs_hides_nothing()?;
        let valid_host = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if self.hostname.is_empty()
            || self.hostname.len() > 64
            || !self.hostname.chars().all(valid_host)
        {
            return Err(SpecError::Hostname(self.hostname.clone()));
        }
        for key in self.env.set.keys().chain(&self.env.pass) {
            if key.is_empty() || key.contains(['=', '\0']) || key.contains(char::is_whitespace) {
                return Err(SpecError::EnvName(key.clone()));
            }
        }
        for &address in &self.forwards {
            if !address.ip().is_loopback() || address.port() == 0 {
                return Err(SpecError::ForwardAddress(address));
            }
            if self.net != Net::Loopback {
                return Err(SpecError::ForwardNet(address));
            }
        }
        self.chaos.validate()?;
        Ok(())
    }

    /// A private tmpfs at the same path as an earlier mount would hide it (`HOME=/usr`
    /// emptied /usr; HOME at the target directory hid the test binaries).
    fn check_tmpfs_hides_nothing(&self) -> Result<(), SpecError> {
        let dst_of = |m: &Mount| match m {
            Mount::Bind { dst, .. }
            | Mount::Tmpfs { dst, .. }
            | Mount::Overlay { dst, .. }
            | Mount::Socket { dst, .. } => dst.clone(),
            Mount::Symlink { path, .. } => path.clone(),
        };
        for (i, mount) in self.mounts.iter().enumerate() {
            let Mount::Tmpfs { dst, .. } = mount else {
                continue;
            };
            // At the same path the later mount is on top: one listed after the tmpfs (a
            // bind of the host's HOME over the private one) is meant to cover it.
            let hidden = self
                .mounts
                .iter()
                .take(i)
                .any(|other| dst_of(other) == *dst);
            // HOME below a read-only bind hides what is there, or cannot be made at all.
            let inside_bind = self.mounts.iter().any(|other| {
                matches!(other, Mount::Bind { dst: bind, writable: false, .. }
                    if dst.starts_with(bind) && dst != bind)
            });
            if hidden || (inside_bind && *dst == self.home) {
                return Err(if *dst == self.home {
                    SpecError::HomeHides(dst.clone())
                } else {
                    SpecError::TmpfsHides(dst.clone())
                });
            }
        }
        Ok(())
    }

    /// The environment the program gets: `set`, the passed host variables, and `HOME`.
    pub fn resolved_env(&self, host: impl Fn(&str) -> Option<OsString>) -> Vec<(String, OsString)> {
        let mut env: BTreeMap<String, OsString> = BTreeMap::new();
        for key in &self.env.pass {
            if let Some(value) = host(key) {
                env.insert(key.clone(), value);
            }
        }
        env.insert("HOME".into(), self.home.clone().into_os_string());
        for (key, value) in &self.env.set {
            env.insert(key.clone(), value.into());
        }
        env.into_iter().collect()
    }
}

/// The host's system directories as mounts: read-only binds, or symlinks where the host has
/// symlinks.
pub fn system_mounts() -> Vec<Mount> {
    DEFAULT_SYSTEM_PATHS
        .iter()
        .map(Path::new)
        .filter_map(|path| {
            let meta = std::fs::symlink_metadata(path).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(path).ok()?;
                Some(Mount::Symlink {
                    path: path.to_path_buf(),
                    target,
                })
            } else if meta.is_dir() {
                Some(Mount::Bind {
                    src: path.to_path_buf(),
                    dst: path.to_path_buf(),
                    writable: false,
                })
            } else {
                None
            }
        })
        .collect()
}

fn check_sandbox_path(path: &Path) -> Result<(), SpecError> {
    if !path.is_absolute() {
        return Err(SpecError::NotAbsolute(path.to_path_buf()));
    }
    let normal = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !normal || path.as_os_str().as_bytes().contains(&0) {
        return Err(SpecError::NotNormal(path.to_path_buf()));
    }
    Ok(())
}

/// Parses sizes such as `512M`, `1G`, `64k` or a plain byte count.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// Parses a CPU bandwidth: a number of CPUs (`2`, `1.5`) or a share of one (`50%`), into
/// thousandths of a CPU.
pub fn parse_cpus(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = match text.strip_suffix('%') {
        Some(percent) => (percent.trim(), 10.0),
        None => (text, 1000.0),
    };
    let value: f64 = number.parse().ok()?;
    let millis = (value * scale).round();
    (value.is_finite() && (1.0..=1_000_000.0).contains(&millis)).then_some(millis as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64KiB"), Some(64 << 10));
        assert_eq!(parse_size("1T"), None);
        assert_eq!(parse_size("G"), None);
    }

    #[test]
    fn cpus_parse_as_counts_or_shares() {
        assert_eq!(parse_cpus("2"), Some(2000));
        assert_eq!(parse_cpus("1.5"), Some(1500));
        assert_eq!(parse_cpus("50%"), Some(500));
        assert_eq!(parse_cpus("0"), None);
        assert_eq!(parse_cpus("-1"), None);
        assert_eq!(parse_cpus("many"), None);
    }

    #[test]
    fn a_memory_limit_caps_every_tmpfs() {
        let mut spec = Spec::new(vec!["true".into()]);
        assert_eq!(spec.tmpfs_size(DEFAULT_TMPFS_SIZE), DEFAULT_TMPFS_SIZE);
        spec.limits.memory_max = Some(64 << 20);
        assert_eq!(spec.tmpfs_size(DEFAULT_TMPFS_SIZE), 64 << 20);
    }

    #[test]
    fn a_spec_without_limits_still_reads() {
        let spec = Spec::new(vec!["true".into()]);
        let mut json = serde_json::to_value(&spec).unwrap();
        json.as_object_mut().unwrap().remove("limits");
        let back: Spec = serde_json::from_value(json).unwrap();
        assert_eq!(back.limits, Limits::default());
    }

    #[test]
    fn default_spec_round_trips_through_json() {
        let spec = Spec::new(vec!["/bin/true".into()]);
        let json = serde_json::to_string(&spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(spec, back);
        assert!(json.contains(r#""type":"tmpfs""#), "{json}");
    }

    #[test]
    fn default_spec_has_private_tmp_and_home() {
        let spec = Spec::new(vec!["true".into()]);
        assert!(spec.mounts.contains(&Mount::Tmpfs {
            dst: "/tmp".into(),
            size: DEFAULT_TMPFS_SIZE
        }));
        assert!(spec.is_visible(&spec.home));
        spec.validate().unwrap();
    }

    #[test]
    fn a_spec_from_before_sys_and_pid_replays_without_them() {
        let spec = Spec::new(vec!["true".into()]);
        let mut json = serde_json::to_value(&spec).unwrap();
        let fields = json.as_object_mut().unwrap();
        assert_eq!(fields["sys"], "sandbox");
        assert_eq!(fields["pid"], "sandbox");
        fields.remove("sys");
        fields.remove("pid");
        let back: Spec = serde_json::from_value(json).unwrap();
        assert_eq!((back.sys, back.pid), (Sys::None, Pid::Sandbox));
    }

    #[test]
    fn sys_is_reserved_only_when_the_sandbox_mounts_one() {
        let mut spec = Spec::new(vec!["true".into()]);
        spec.cwd = "/".into();
        spec.mounts.push(Mount::Tmpfs {
            dst: "/sys/x".into(),
            size: 1,
        });
        assert!(matches!(spec.validate(), Err(SpecError::Reserved(p)) if p == Path::new("/sys/x")));
        spec.sys = Sys::None;
        spec.validate().unwrap();
    }

    #[test]
    fn env_is_exactly_set_plus_passed_variables() {
        let mut spec = Spec::new(vec!["true".into()]);
        spec.env.set.insert("A".into(), "1".into());
        let host = |k: &str| match k {
            "PATH" => Some(OsString::from("/usr/bin")),
            "GITHUB_TOKEN" => Some(OsString::from("secret")),
            _ => None,
        };
        let env = spec.resolved_env(host);
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["A", "HOME", "PATH"]);
    }

    #[test]
    fn validation_names_the_bad_path() {
        let mut spec = Spec::new(vec!["true".into()]);
        spec.cwd = "relative".into();
        assert!(
            matches!(spec.validate(), Err(SpecError::NotAbsolute(p)) if p == Path::new("relative"))
        );
        spec.cwd = "/a/../b".into();
        assert!(
            matches!(spec.validate(), Err(SpecError::NotNormal(p)) if p == Path::new("/a/../b"))
        );
        spec.cwd = "/".into();
        spec.mounts.push(Mount::Tmpfs {
            dst: "/proc/x".into(),
            size: 1,
        });
        assert!(
            matches!(spec.validate(), Err(SpecError::Reserved(p)) if p == Path::new("/proc/x"))
        );
        spec.mounts.pop();
        spec.hostname = "bad host".into();
        assert!(matches!(spec.validate(), Err(SpecError::Hostname(h)) if h == "bad host"));
    }

    #[test]
    fn env_names_with_spaces_are_refused() {
        let mut spec = Spec::new(vec!["true".into()]);
        spec.env.add("A B=1");
        assert!(matches!(spec.validate(), Err(SpecError::EnvName(k)) if k == "A B"));
    }

    #[test]
    fn a_home_over_a_system_directory_is_refused() {
        let mut spec = Spec::new(vec!["true".into()]);
        let usr = spec
            .mounts
            .iter()
            .any(|m| matches!(m, Mount::Bind { dst, .. } if dst == Path::new("/usr")));
        spec.mounts
            .retain(|m| !matches!(m, Mount::Tmpfs { dst, .. } if *dst == spec.home));
        spec.home = "/usr".into();
        spec.cwd = "/usr".into();
        spec.mounts.push(Mount::Tmpfs {
            dst: "/usr".into(),
            size: 1,
        });
        if usr {
            assert!(
                matches!(spec.validate(), Err(SpecError::HomeHides(p)) if p == Path::new("/usr"))
            );
        }
    }

    #[test]
    fn kernel_trees_are_never_bound_writable() {
        let mut spec = Spec::new(vec!["true".into()]);
        spec.mounts.push(Mount::Bind {
            src: "/proc".into(),
            dst: "/hostproc".into(),
            writable: true,
        });
        assert!(matches!(
            spec.validate(),
            Err(SpecError::WritableKernelTree(_))
        ));
        spec.mounts.pop();
        spec.mounts.push(Mount::Bind {
            src: "/proc".into(),
            dst: "/hostproc".into(),
            writable: false,
        });
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn reports_without_a_namespace_limit_get_the_default() {
        let mut value = serde_json::to_value(Spec::new(vec!["true".into()])).unwrap();
        value.as_object_mut().unwrap().remove("namespace_limit");
        let spec: Spec = serde_json::from_value(value).unwrap();
        assert_eq!(spec.namespace_limit, DEFAULT_NAMESPACE_LIMIT);
    }
}
