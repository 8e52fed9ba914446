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

use isotest_runtime::{Limits, Mount, Net, Pid, Spec, Sys};

use crate::args::{SandboxArgs, check_env, forward_unix_binds, parse_binds};
use crate::cargo::build::{Build, TestBinary};
use crate::cargo::{cargo_path, toolchain};
use crate::chaos::{self, Kind, Perturbation};
use crate::credentials;
use crate::destination::Destination;

/// Bytes of each output stream kept per run: head and tail halves.
pub const CAPTURE_LIMIT: usize = 4 << 20;
/// A binary that takes longer than this to list its tests is not answering.
const LIST_TIMEOUT_MS: u64 = 60_000;

/// What the user may change about every test's sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    pub timeout: Option<Duration>,
    pub net: Net,
    pub sys: Sys,
    pub pid: Pid,
    /// Extra binds, read-only or writable, from `--bind` and `--bind-rw`.
    pub binds: Vec<Mount>,
    pub tmpfs_size: u64,
    pub limits: Limits,
    /// Host paths that make the cargo and rustc that built the tests usable inside,
    /// read-only ([`toolchain::paths`], once the build has filled cargo's home); empty
    /// for a stricter sandbox.
    pub toolchain: Vec<PathBuf>,
    /// `KEY` passes a host variable through, `KEY=VALUE` sets one.
    pub env: Vec<String>,
    /// The workspace is an overlay: writable inside, unchanged outside.
    pub writable_source: bool,
    pub forwards: Vec<SocketAddr>,
    pub net_admin: bool,
    /// The perturbations `--chaos` asks for, drawn per attempt ([`attempt_spec`]).
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
            net: Net::Loopback,
            sys: Sys::Sandbox,
            pid: Pid::Sandbox,
            binds: Vec::new(),
            tmpfs_size: isotest_runtime::DEFAULT_TMPFS_SIZE,
            limits: Limits::default(),
            toolchain: Vec::new(),
            env: Vec::new(),
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
    /// The options the flags ask for. The toolchain is left out: its paths exist only
    /// once the build has run ([`SandboxOptions::add_toolchain`]).
    pub fn from_args(args: &SandboxArgs) -> anyhow::Result<SandboxOptions> {
        let mut binds = parse_binds(&args.bind, &args.bind_rw)?;
        binds.extend(forward_unix_binds(&args.forward_unix)?);
        check_env(&args.env)?;
        let defaults = SandboxOptions::default();
        let net = args.net.map_or(defaults.net, Net::from);
        if let (Some(address), false) = (args.forward.first(), net == Net::Loopback) {
            anyhow::bail!(
                "--forward {address} needs the sandbox's own loopback network; drop --net or pass --net loopback"
            );
        }
        Ok(SandboxOptions {
            timeout: args.timeout,
            net,
            sys: args.sys.into(),
            pid: args.pid.into(),
            binds,
            tmpfs_size: args.limits.tmpfs_size.unwrap_or(defaults.tmpfs_size),
            limits: args.limits.checked_limits()?,
            toolchain: defaults.toolchain,
            env: args.env.clone(),
            writable_source: args.writable_source,
            forwards: args.forward.clone(),
            net_admin: args.net_admin,
            chaos: defaults.chaos,
            pass_credentials: args.pass_credentials,
            namespace_limit: args.nesting.unwrap_or(defaults.namespace_limit),
        })
    }

    /// Makes the toolchain visible, unless the flags said `--no-toolchain`.
    pub fn add_toolchain(&mut self, args: &SandboxArgs) {
        if !args.no_toolchain {
            self.toolchain = toolchain::paths();
        }
    }
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

/// The sandbox `binary` lists its tests in: `--list --format terse [--ignored]`.
pub fn list_spec(
    build: &Build,
    binary: &TestBinary,
    options: &SandboxOptions,
    ignored: bool,
) -> Spec {
    let mut spec = binary_spec(build, binary, options);
    spec.argv = vec![
        binary.path.display().to_string(),
        "--list".into(),
        "--format".into(),
        "terse".into(),
    ];
    if ignored {
        spec.argv.push("--ignored".into());
    }
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
    Some(chaos::draw(&kinds, seed, chaos::Host::current()))
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
    spec.forwards = options.forwards.clone();
    spec.net_admin = options.net_admin;
    spec.sys = options.sys;
    spec.pid = options.pid;
    spec.timeout_ms = options.timeout.map(|t| t.as_millis() as u64);
    spec.env.set = test_env(build, binary, &mut spec.env.pass);
    if !options.toolchain.is_empty() {
        spec.env
            .pass
            .extend(TOOLCHAIN_ENV.iter().map(|v| v.to_string()));
    }
    for item in &options.env {
        spec.env.add(item);
    }
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
    fn a_test_is_told_its_name_and_an_attempt_its_number() {
        let base = Spec::new(Vec::new());
        let spec = attempt_spec(&test_spec(&base, &binary(), "a::b", false), 3, None);
        assert_eq!(spec.argv[2], "a::b");
        assert_eq!(spec.env.set["ISOTEST_TEST_NAME"], "a::b");
        assert_eq!(spec.env.set["ISOTEST_ATTEMPT"], "3");
        assert!(fresh_seed() < 1 << 53);
    }
}
