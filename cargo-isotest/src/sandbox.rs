//! The one place that decides what sandbox a test gets: the environment `cargo test` would
//! give it, inside a sandbox that shows the source tree, the build outputs and the
//! toolchain read-only at their own paths; then what it is told about itself (every
//! `ISOTEST_*` variable, the seed) for listing, for a test, for one attempt, for a shell.
//!
//! Discover lists binaries in [`list_spec`], plan gives each test its [`test_spec`], the
//! runner each attempt its [`attempt_spec`]; `replay` and `shell` derive theirs from the
//! same functions, so that what they show is what the run ran.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use isotest_runtime::{
    HostIds, IdMapping, Identity, Limits, Mechanism, Mount, Net, Pid, Spec, Sys,
};

use crate::args::unix_socket_bind;
use crate::cargo::build::{Build, TestBinary};
use crate::cargo::{cargo_path, toolchain};
use crate::chaos::{self, Kind, Perturbation};
use crate::config::{self, Bind, Bytes, Effective, IdMap, LimitsMechanism, Period, Sourced};
use crate::credentials;
use crate::destination::Destination;

/// Bytes of each output stream kept per run: head and tail halves.
pub const CAPTURE_LIMIT: usize = 4 << 20;
/// A binary that takes longer than this to list its tests is not answering.
const LIST_TIMEOUT_MS: u64 = 60_000;

/// What the settings may change about a test's sandbox.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxOptions {
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL at a timeout.
    pub grace: Duration,
    pub net: Net,
    pub sys: Sys,
    pub pid: Pid,
    /// Extra binds, read-only then writable (`bind-ro`, `bind-rw`).
    pub binds: Vec<Mount>,
    pub tmpfs_size: u64,
    /// Whether the toolchain is shown (`toolchain`).
    pub show_toolchain: bool,
    /// `memory-max`, `pids-max`, `cpu-max`, and the mechanism that enforces them.
    pub limits: Limits,
    /// Host paths that make the cargo and rustc that built the tests usable inside,
    /// read-only ([`toolchain::paths`], once the build has filled cargo's home); empty
    /// for a stricter sandbox.
    pub toolchain: Vec<PathBuf>,
    /// `env-pass`: host variables passed through, by name or glob.
    pub env_pass: Vec<String>,
    /// `env`: variables set.
    pub env_set: BTreeMap<String, String>,
    pub hostname: String,
    pub tty: bool,
    /// `id-map`: which host ids the sandbox maps.
    pub ids: IdMapping,
    /// `root`: uid 0 inside.
    pub identity: Identity,
    /// `writable-source`: the workspace is an overlay, writable inside, unchanged outside.
    pub writable_source: bool,
    /// `forward`: loopback addresses that reach the same address on the host.
    pub forwards: Vec<SocketAddr>,
    /// `net-admin`: CAP_NET_ADMIN over the sandbox's own network.
    pub net_admin: bool,
    /// `chaos` (`--chaos`): the perturbations drawn per attempt ([`attempt_spec`]).
    pub chaos: Vec<Kind>,
    /// Whether tests read the host's credential files as they are (`--pass-credentials`)
    /// instead of scrubbed copies.
    pub pass_credentials: bool,
    /// Namespaces of each kind a test may create.
    pub namespace_limit: u32,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            timeout: None,
            grace: Duration::from_millis(isotest_runtime::DEFAULT_GRACE_MS),
            net: Net::Loopback,
            sys: Sys::Sandbox,
            pid: Pid::Sandbox,
            binds: Vec::new(),
            tmpfs_size: isotest_runtime::DEFAULT_TMPFS_SIZE,
            show_toolchain: true,
            limits: Limits::default(),
            toolchain: Vec::new(),
            env_pass: Vec::new(),
            env_set: BTreeMap::new(),
            hostname: isotest_runtime::DEFAULT_HOSTNAME.to_string(),
            tty: false,
            ids: isotest_runtime::host_ids().mapping,
            identity: Identity::Caller,
            writable_source: false,
            forwards: Vec::new(),
            net_admin: false,
            chaos: Vec::new(),
            pass_credentials: false,
            namespace_limit: isotest_runtime::DEFAULT_NAMESPACE_LIMIT,
        }
    }
}

impl SandboxOptions {
    /// The sandbox one test's effective settings ask for. The toolchain's paths are left
    /// out: they exist only once the build has run ([`SandboxOptions::add_toolchain`]).
    pub fn from_settings(settings: &Effective) -> anyhow::Result<SandboxOptions> {
        let mechanism = config::value(&settings.limits_mechanism).and_then(|m| match m {
            LimitsMechanism::Auto => None,
            LimitsMechanism::CgroupV2 => Some(Mechanism::CgroupV2),
            LimitsMechanism::CgroupV1 => Some(Mechanism::CgroupV1),
            LimitsMechanism::Fallback => Some(Mechanism::Fallback),
        });
        let defaults = SandboxOptions::default();
        let limits = Limits {
            memory_max: config::value(&settings.memory_max).map(|b: Bytes| b.0),
            pids_max: config::value(&settings.pids_max).map(|n| u64::from(n.get())),
            cpu_max_millis: config::value(&settings.cpu_max)
                .map(|c: config::CpuMax| (c.0 * 1000.0).round().max(1.0) as u64),
            mechanism,
            ..Limits::default()
        };
        let slow = settings.slow_timeout.as_ref().map(|s| s.value);
        // `slow-timeout`'s `terminate-after` ends a test as `timeout` does: the earlier wins.
        let slow_limit = slow.and_then(|s| {
            s.terminate_after
                .map(|n| s.period.0.saturating_mul(n.get()))
        });
        if let Some(set) = &settings.timeout
            && set.value.0.is_zero()
        {
            anyhow::bail!(
                "`timeout` = \"0s\" (set by {}) would stop every test at once; give a positive \
                 duration (e.g. \"30s\"), or leave it out for none",
                set.source
            );
        }
        let timeout = config::value(&settings.timeout).map(|p: Period| p.0);
        let timeout = match (timeout, slow_limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut binds = Vec::new();
        for (list, writable) in [(&settings.bind_ro, false), (&settings.bind_rw, true)] {
            for bind in list {
                binds.push(bind_mount(&bind.value, writable).with_context(|| {
                    format!(
                        "`{}` = {:?} (set by {})",
                        key(writable),
                        bind.value.to_string(),
                        bind.source
                    )
                })?);
            }
        }
        for socket in &settings.forward_unix {
            binds.push(unix_socket_bind(&socket.value).with_context(|| {
                format!(
                    "`forward-unix` = {:?} (set by {})",
                    socket.value.display().to_string(),
                    socket.source
                )
            })?);
        }
        let net = config::value(&settings.net).map_or(defaults.net, |n: config::Net| match n {
            config::Net::Loopback => Net::Loopback,
            config::Net::None => Net::None,
            config::Net::Host => Net::Host,
        });
        if let (Some(forward), Some(set)) = (settings.forward.first(), &settings.net)
            && net != Net::Loopback
        {
            anyhow::bail!(
                "`forward` = \"{}\" (set by {}) needs the sandbox's own loopback network, but \
                 `net` is \"{}\" (set by {}): give the tests that forward \
                 `net = \"loopback\"`, or drop the forward",
                forward.value,
                forward.source,
                net_name(set.value),
                set.source
            );
        }
        Ok(SandboxOptions {
            timeout,
            grace: slow.map_or(defaults.grace, |s| s.grace_period.0),
            net,
            sys: config::value(&settings.sys).map_or(defaults.sys, |s: config::Sys| match s {
                config::Sys::None => Sys::None,
                config::Sys::Sandbox => Sys::Sandbox,
                config::Sys::Host => Sys::Host,
            }),
            pid: config::value(&settings.pid).map_or(defaults.pid, |p: config::Pid| match p {
                config::Pid::Sandbox => Pid::Sandbox,
                config::Pid::Host => Pid::Host,
            }),
            binds,
            tmpfs_size: config::value(&settings.tmpfs_size)
                .map_or(defaults.tmpfs_size, |b: Bytes| b.0),
            show_toolchain: config::value(&settings.toolchain).unwrap_or(defaults.show_toolchain),
            limits,
            toolchain: Vec::new(),
            env_pass: settings
                .env_pass
                .iter()
                .map(|v| v.value.0.clone())
                .collect(),
            env_set: settings
                .env
                .iter()
                .map(|v| (v.value.name.clone(), v.value.value.clone()))
                .collect(),
            hostname: settings
                .hostname
                .as_ref()
                .map_or(defaults.hostname, |h| h.value.0.clone()),
            tty: config::value(&settings.tty).unwrap_or(defaults.tty),
            ids: match &settings.id_map {
                Some(setting) => id_mapping(setting, &isotest_runtime::host_ids())?,
                None => defaults.ids,
            },
            identity: match config::value(&settings.root) {
                Some(true) => Identity::Root,
                _ => defaults.identity,
            },
            writable_source: config::value(&settings.writable_source)
                .unwrap_or(defaults.writable_source),
            forwards: settings.forward.iter().map(|f| f.value.0).collect(),
            net_admin: config::value(&settings.net_admin).unwrap_or(defaults.net_admin),
            chaos: config::value(&settings.chaos).map_or(defaults.chaos, |c| c.0),
            pass_credentials: config::value(&settings.pass_credentials)
                .unwrap_or(defaults.pass_credentials),
            namespace_limit: config::value(&settings.nesting).unwrap_or(defaults.namespace_limit),
        })
    }

    /// Makes the toolchain visible, unless the settings say `toolchain = false`.
    pub fn add_toolchain(&mut self) {
        if self.show_toolchain {
            self.toolchain = toolchain::paths();
        }
    }
}

/// The mapping `id-map` asks for, if the host gives it: `auto` is the host's best, and
/// a mode better than the host's is an error that says what is missing.
fn id_mapping(setting: &Sourced<IdMap>, host: &HostIds) -> anyhow::Result<IdMapping> {
    let best = &host.mapping;
    let mapping = match (setting.value, best) {
        (IdMap::Auto, _) => Some(best.clone()),
        (IdMap::Single, _) => Some(IdMapping::Single),
        (IdMap::Subordinate, IdMapping::Subordinate { .. }) | (IdMap::Full, IdMapping::Full) => {
            Some(best.clone())
        }
        _ => None,
    };
    mapping.ok_or_else(|| {
        let why = match (&host.missing, setting.value) {
            (_, IdMap::Full) => "only root maps every id".to_string(),
            (Some(missing), _) => missing.to_string(),
            (None, _) => "as root the mapping is `full` (or `single`)".to_string(),
        };
        anyhow::anyhow!(
            "`id-map` = \"{}\" (set by {}): this host gives `{}`: {why}",
            mode_name(setting.value),
            setting.source,
            mode_name(match best {
                IdMapping::Single => IdMap::Single,
                IdMapping::Subordinate { .. } => IdMap::Subordinate,
                IdMapping::Full => IdMap::Full,
            }),
        )
    })
}

fn net_name(net: config::Net) -> &'static str {
    match net {
        config::Net::Loopback => "loopback",
        config::Net::None => "none",
        config::Net::Host => "host",
    }
}

fn mode_name(mode: IdMap) -> &'static str {
    match mode {
        IdMap::Auto => "auto",
        IdMap::Single => "single",
        IdMap::Subordinate => "subordinate",
        IdMap::Full => "full",
    }
}

fn key(writable: bool) -> &'static str {
    if writable { "bind-rw" } else { "bind-ro" }
}

/// A bind's source resolved on the host; its destination is its own path unless given.
fn bind_mount(bind: &Bind, writable: bool) -> anyhow::Result<Mount> {
    let src = std::fs::canonicalize(&bind.src)
        .with_context(|| format!("cannot use {}", bind.src.display()))?;
    let dst = bind.dst.clone().unwrap_or_else(|| bind.src.clone());
    Ok(Mount::Bind { src, dst, writable })
}

/// Names that usually hold credentials: an `env-pass` glob never passes them (only the
/// exact name does), and `--explain` never hands them to a rerun.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "API_KEY",
        "PRIVATE_KEY",
        "ACCESS_KEY",
        "AUTH",
        "SESSION",
        "COOKIE",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// The host variables `env-pass` passes: each exact name, and each variable a glob
/// (`*`, `?`, `[…]`) matches unless its name looks like a secret.
pub fn passed_names(patterns: &[String], host: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let globs: Vec<globset::GlobMatcher> = patterns
        .iter()
        .filter(|p| p.contains(['*', '?', '[']))
        .filter_map(|p| globset::Glob::new(p).ok())
        .map(|g| g.compile_matcher())
        .collect();
    names.extend(
        patterns
            .iter()
            .filter(|p| !p.contains(['*', '?', '[']))
            .cloned(),
    );
    if !globs.is_empty() {
        for name in host {
            if !looks_secret(&name) && globs.iter().any(|g| g.is_match(&name)) {
                names.push(name);
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// A fresh seed for `ISOTEST_SEED`, below 2^53 so that JSON readers that use doubles
/// (JavaScript, jq) keep it exact.
pub fn fresh_seed() -> u64 {
    fastrand::u64(..1 << 53)
}

/// `CARGO_TARGET_TMPDIR`: a private tmpfs per test, where cargo's own would be shared.
pub fn target_tmpdir(build: &Build) -> PathBuf {
    build.target_dir.join("tmp")
}

/// What one listing sandbox lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listed {
    /// `--list --format terse`.
    Tests,
    /// `--list --format terse --ignored`.
    Ignored,
    /// Both, one after the other, the ignored ones after [`LIST_BOUNDARY`]; through the
    /// host's `/bin/sh` ([`LIST_SHELL`]), which the sandbox shows, as one sandbox costs
    /// more than the listing.
    Both,
}

/// The shell that runs both listings in one sandbox; without it, two sandboxes.
pub const LIST_SHELL: &str = "/bin/sh";

/// The line between the two listings of [`Listed::Both`]: not one a listing prints, as
/// every line of one ends in `: test` or `: bench`.
pub const LIST_BOUNDARY: &str = "isotest: the ignored tests follow";

/// The sandbox `binary` lists its tests in.
pub fn list_spec(
    build: &Build,
    binary: &TestBinary,
    options: &SandboxOptions,
    listed: Listed,
) -> Spec {
    let mut spec = binary_spec(build, binary, options);
    let path = binary.path.display().to_string();
    let list = ["--list", "--format", "terse"].map(String::from);
    spec.argv = match listed {
        Listed::Tests => [vec![path], list.to_vec()].concat(),
        Listed::Ignored => [vec![path], list.to_vec(), vec!["--ignored".into()]].concat(),
        Listed::Both => vec![
            LIST_SHELL.into(),
            "-c".into(),
            format!(
                "\"$0\" --list --format terse && echo '{LIST_BOUNDARY}' && exec \"$0\" --list --format terse --ignored"
            ),
            path,
        ],
    };
    spec.timeout_ms = Some(LIST_TIMEOUT_MS);
    spec
}

/// The sandbox every test of a binary runs in, before it is told which test it runs.
/// Every test gets the run's seed as `ISOTEST_SEED`, so that a test that seeds its
/// randomness from it can be replayed exactly.
pub fn binary_test_spec(
    build: &Build,
    binary: &TestBinary,
    options: &SandboxOptions,
    seed: u64,
) -> Spec {
    let mut spec = binary_spec(build, binary, options);
    spec.env.set.insert("ISOTEST_SEED".into(), seed.to_string());
    if !options.chaos.is_empty() {
        spec.env
            .set
            .insert(chaos::ENV.into(), chaos::format_kinds(&options.chaos));
    }
    spec
}

/// The sandbox one test runs in: its binary's, with the test's command and name.
pub fn test_spec(binary_spec: &Spec, binary: &TestBinary, name: &str, ignored: bool) -> Spec {
    with_test(binary_spec, test_argv(binary, name, ignored), name)
}

/// `<binary> --exact <name> --nocapture [--ignored]`, as cargo test and nextest run it.
fn test_argv(binary: &TestBinary, name: &str, ignored: bool) -> Vec<String> {
    let mut argv = vec![
        binary.path.display().to_string(),
        "--exact".into(),
        name.to_string(),
        "--nocapture".into(),
    ];
    if ignored {
        argv.push("--ignored".into());
    }
    argv
}

/// The sandbox of one attempt: the test's own, telling the test which attempt it is.
/// With `attempt_seed`, the run's seed, the attempt gets a seed of its own
/// ([`attempt_seed`]). The perturbations `ISOTEST_CHAOS` asks for are drawn from the
/// attempt's seed.
pub fn attempt_spec(spec: &Spec, number: u32, attempt_seed: Option<u64>) -> Spec {
    let mut spec = spec.clone();
    spec.env
        .set
        .insert("ISOTEST_ATTEMPT".into(), number.to_string());
    if let Some(base) = attempt_seed {
        spec.env.set.insert(
            "ISOTEST_SEED".into(),
            self::attempt_seed(base, number).to_string(),
        );
    }
    if let Some(draw) = chaos_draw(&spec, number) {
        let p = &draw.perturbation;
        if let Some(size) = p.tmpfs_size {
            spec.set_tmpfs_sizes(size);
        }
        // Never above a limit the user set.
        let lower = |limit: &mut Option<u64>, drawn: Option<u64>| {
            if let Some(drawn) = drawn {
                *limit = Some(limit.map_or(drawn, |l| l.min(drawn)));
            }
        };
        lower(&mut spec.limits.open_files_max, p.open_files);
        lower(&mut spec.limits.memory_max, p.memory_max);
        spec.chaos = draw.chaos;
    }
    spec
}

/// The seed of attempt `number` (from 1) under `--stress-shard`: the run's seed moved on
/// by the attempt's global number, so runs on different shards never share a seed.
pub fn attempt_seed(base: u64, number: u32) -> u64 {
    base.wrapping_add(u64::from(number) - 1)
}

/// A test's sandbox from its binary's (as a report stores it) and its argv.
pub fn with_test(binary_spec: &Spec, argv: Vec<String>, name: &str) -> Spec {
    with_command(binary_spec, argv, Some(name))
}

/// A binary's sandbox running `argv`: one test when `name` says which (`wrap` under
/// nextest), else the whole binary (`wrap` as cargo's target runner).
pub fn with_command(binary_spec: &Spec, argv: Vec<String>, name: Option<&str>) -> Spec {
    let mut spec = binary_spec.clone();
    spec.argv = argv;
    if let Some(name) = name {
        spec.env
            .set
            .insert("ISOTEST_TEST_NAME".into(), name.to_string());
    }
    spec
}

/// What attempt `number` of the test in `spec` is perturbed with, if the run used `--chaos`:
/// what [`attempt_spec`] applies, with the same seeds.
pub fn attempt_perturbation(
    spec: &Spec,
    number: u32,
    attempt_seed: Option<u64>,
) -> Option<Perturbation> {
    chaos_draw(&attempt_spec(spec, number, attempt_seed), number).map(|d| d.perturbation)
}

fn chaos_draw(spec: &Spec, number: u32) -> Option<chaos::Draw> {
    let var = |key: &str| spec.env.set.get(key).map(String::as_str);
    let kinds = chaos::parse_kinds(var(chaos::ENV)?).ok()?;
    let run_seed = var("ISOTEST_SEED")?.parse().ok()?;
    let seed = chaos::attempt_seed(run_seed, var("ISOTEST_TEST_NAME").unwrap_or(""), number);
    let forwarded = !spec.forwards.is_empty();
    Some(chaos::draw(&kinds, seed, chaos::Host::current(), forwarded))
}

/// The sandbox of an `--explain` rerun: the test's, with one rule relaxed, told which.
pub fn explain_spec(relaxed: &Spec, relaxation: &str) -> Spec {
    let mut spec = attempt_spec(relaxed, 1, None);
    spec.env
        .set
        .insert("ISOTEST_EXPLAIN".into(), relaxation.to_string());
    spec
}

/// An interactive shell on a terminal in a test's sandbox, with no time limit.
pub fn shell_spec(test_spec: &Spec) -> Spec {
    let mut spec = test_spec.clone();
    let shell = if Path::new("/usr/bin/bash").exists() || Path::new("/bin/bash").exists() {
        "bash"
    } else {
        "sh"
    };
    // No rc files: the prompt below says where the shell is (HOME is empty anyway).
    spec.argv = match shell {
        "bash" => vec!["bash".into(), "--norc".into(), "-i".into()],
        _ => vec![shell.into(), "-i".into()],
    };
    spec.tty = true;
    spec.timeout_ms = None;
    spec.env.set.insert("PS1".into(), "isotest:\\w\\$ ".into());
    spec
}

/// The sandbox `binary` runs in, without a program yet.
fn binary_spec(build: &Build, binary: &TestBinary, options: &SandboxOptions) -> Spec {
    let mut spec = Spec::new(Vec::new());
    if options.writable_source {
        spec.mounts.push(Mount::Overlay {
            src: build.workspace_root.clone(),
            dst: build.workspace_root.clone(),
            size: options.tmpfs_size,
        });
    }
    // The toolchain's libraries are always needed (`-C prefer-dynamic`); its programs
    // only when the toolchain is visible.
    let toolchain_libraries = build.sysroot.join("lib");
    let mut read_only = vec![
        build.workspace_root.clone(),
        build.target_dir.clone(),
        binary.manifest_dir.clone(),
        toolchain_libraries,
    ];
    read_only.extend(binary.link_paths.iter().filter(|p| p.is_dir()).cloned());
    if !options.toolchain.is_empty() {
        read_only.push(build.sysroot.clone());
        read_only.extend(options.toolchain.iter().cloned());
    }
    // Parents first, so that a path inside one already bound is not bound again.
    read_only.sort_by_key(|p| p.components().count());
    for path in read_only {
        // Inside a writable source, the build outputs stay read-only: they are bound on top.
        let covered = spec.mounts.iter().any(|m| match m {
            Mount::Bind { dst, .. } => path.starts_with(dst),
            Mount::Overlay { dst, .. } => path.starts_with(dst) && path != build.target_dir,
            _ => false,
        });
        if !covered && path.exists() {
            spec.mounts.push(Mount::Bind {
                src: path.clone(),
                dst: path,
                writable: false,
            });
        }
    }
    spec.mounts.push(Mount::Tmpfs {
        dst: target_tmpdir(build),
        size: options.tmpfs_size,
    });
    spec.mounts.extend(options.binds.iter().cloned());
    spec.set_tmpfs_sizes(options.tmpfs_size);
    spec.limits = options.limits.clone();
    spec.cwd = binary.manifest_dir.clone();
    spec.net = options.net;
    spec.hostname = options.hostname.clone();
    spec.tty = options.tty;
    spec.ids = options.ids.clone();
    spec.identity = options.identity;
    spec.forwards = options.forwards.clone();
    spec.net_admin = options.net_admin;
    spec.sys = options.sys;
    spec.pid = options.pid;
    spec.timeout_ms = options.timeout.map(|t| t.as_millis() as u64);
    spec.grace_ms = options.grace.as_millis() as u64;
    spec.env.set = test_env(build, binary, &mut spec.env.pass);
    if !options.toolchain.is_empty() {
        spec.env
            .pass
            .extend(TOOLCHAIN_ENV.iter().map(|v| v.to_string()));
    }
    let host = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    spec.env.pass.extend(passed_names(&options.env_pass, host));
    spec.env
        .set
        .extend(options.env_set.iter().map(|(k, v)| (k.clone(), v.clone())));
    spec.namespace_limit = options.namespace_limit;
    if !options.pass_credentials {
        hide_credentials(&mut spec, build);
    }
    spec
}

/// Puts scrubbed copies over every credential-bearing file the spec makes visible. The
/// copies live in the target directory, so that replaying a report finds them; one that
/// cannot be written leaves its bind source missing, and the sandbox is refused rather
/// than shown the original.
fn hide_credentials(spec: &mut Spec, build: &Build) {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
    let replacements = credentials::replacements(spec, home.as_deref(), cargo_home.as_deref());
    let store = credentials::store(&build.target_dir);
    for replacement in &replacements {
        let relative = store
            .strip_prefix(&build.target_dir)
            .unwrap_or(&store)
            .join(credentials::copy_name(&replacement.original));
        let copy = Destination::Own {
            base: build.target_dir.clone(),
            relative,
        };
        let _ = copy.write(replacement.content.as_bytes());
    }
    credentials::hide(spec, &store, &replacements);
}

/// Variables that tell cargo, rustc and rustup's proxies where the toolchain is.
const TOOLCHAIN_ENV: &[&str] = &[
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTDOC",
    "RUSTFMT",
];

/// Cargo's variables for the binary, the config's `[env]`, a library path that makes
/// `-C prefer-dynamic` work, and isotest's own markers.
fn test_env(
    build: &Build,
    binary: &TestBinary,
    pass: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut env = binary.env.clone();
    for entry in &build.config_env {
        if !entry.force && std::env::var_os(&entry.key).is_some() {
            // As under `cargo test`, a variable the environment already has wins.
            pass.push(entry.key.clone());
        } else {
            env.insert(entry.key.clone(), entry.value.clone());
        }
    }
    env.insert("LD_LIBRARY_PATH".into(), library_path(build, binary));
    env.insert(
        "CARGO_TARGET_TMPDIR".into(),
        target_tmpdir(build).display().to_string(),
    );
    env.insert("CARGO".into(), cargo_path().display().to_string());
    env.insert("ISOTEST".into(), "1".into());
    env.insert("ISOTEST_BINARY_ID".into(), binary.id.clone());
    env
}

fn library_path(build: &Build, binary: &TestBinary) -> String {
    let deps = binary.path.parent().unwrap_or(Path::new("/"));
    let profile = deps.parent().unwrap_or(deps);
    let mut dirs: Vec<PathBuf> = binary.link_paths.clone();
    dirs.extend([
        profile.to_path_buf(),
        deps.to_path_buf(),
        build.target_libdir.clone(),
        build.sysroot.join("lib"),
    ]);
    let mut text: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if let Ok(existing) = std::env::var("LD_LIBRARY_PATH")
        && !existing.is_empty()
    {
        text.push(existing);
    }
    text.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary() -> TestBinary {
        TestBinary {
            id: "pkg".into(),
            path: "/t/pkg-1".into(),
            manifest_dir: "/w/pkg".into(),
            env: Default::default(),
            link_paths: Vec::new(),
            package_id: "pkg 0.1.0 (path+file:///w/pkg)".into(),
            kind: "lib".into(),
            target_name: "pkg".into(),
        }
    }

    #[test]
    fn ignored_tests_run_with_the_ignored_flag() {
        assert_eq!(
            test_argv(&binary(), "ignored_one", true),
            [
                "/t/pkg-1",
                "--exact",
                "ignored_one",
                "--nocapture",
                "--ignored"
            ]
        );
        assert_eq!(test_argv(&binary(), "ignored_one", false).len(), 4);
    }

    #[test]
    fn env_pass_globs_never_pass_secrets_but_exact_names_do() {
        let host = [
            "MY_APP_URL",
            "MY_APP_TOKEN",
            "MY_APP_DB_PASSWORD",
            "OTHER",
            "CI_TOKEN",
        ]
        .map(String::from);
        let patterns = ["MY_APP_*".to_string(), "CI_TOKEN".to_string()];
        assert_eq!(passed_names(&patterns, host), ["CI_TOKEN", "MY_APP_URL"]);
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY") && looks_secret("github_token"));
        assert!(!looks_secret("RUST_LOG"));
    }

    #[test]
    fn a_test_is_told_its_name_and_an_attempt_its_number() {
        let base = Spec::new(Vec::new());
        let spec = attempt_spec(&test_spec(&base, &binary(), "a::b", false), 3, None);
        assert_eq!(spec.argv[2], "a::b");
        assert_eq!(spec.env.set["ISOTEST_TEST_NAME"], "a::b");
        assert_eq!(spec.env.set["ISOTEST_ATTEMPT"], "3");
        assert!(fresh_seed() < 1 << 53);
    }

    #[test]
    fn id_map_gives_the_host_s_mode_or_less_and_says_what_a_better_one_lacks() {
        use isotest_runtime::{HostIds, Missing, SubordinateRange};
        let set = |mode| Sourced {
            value: mode,
            source: config::Source::CommandLine,
        };
        let range = SubordinateRange {
            start: 100_000,
            count: 65_536,
        };
        let subordinate = HostIds {
            mapping: IdMapping::Subordinate {
                uids: range,
                gids: range,
            },
            missing: None,
        };
        assert_eq!(
            id_mapping(&set(IdMap::Auto), &subordinate).unwrap(),
            subordinate.mapping
        );
        assert_eq!(
            id_mapping(&set(IdMap::Single), &subordinate).unwrap(),
            IdMapping::Single
        );
        let full = id_mapping(&set(IdMap::Full), &subordinate).unwrap_err();
        assert!(
            full.to_string().contains("only root maps every id"),
            "{full}"
        );
        let single = HostIds {
            mapping: IdMapping::Single,
            missing: Some(Missing::Tool("newuidmap")),
        };
        let error = id_mapping(&set(IdMap::Subordinate), &single)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`id-map` = \"subordinate\" (set by command line)")
                && error.contains("gives `single`")
                && error.contains("newuidmap is not installed"),
            "{error}"
        );
    }
}
