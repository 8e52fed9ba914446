//! What a test sees: the environment `cargo test` would give it, inside a sandbox that shows
//! the source tree, the build outputs and the toolchain read-only at their own paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use isotest_runtime::{Mount, Net, Spec};

use crate::cargo::build::{Build, TestBinary};

/// What the user may change about every test's sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    pub timeout: Option<Duration>,
    pub net: Net,
    /// Extra binds, read-only or writable, from `--bind` and `--bind-rw`.
    pub binds: Vec<Mount>,
    pub tmpfs_size: u64,
    /// Host paths that make the cargo and rustc that built the tests usable inside,
    /// read-only ([`toolchain_paths`], once the build has filled cargo's home); empty for
    /// a stricter sandbox.
    pub toolchain: Vec<PathBuf>,
    /// `KEY` passes a host variable through, `KEY=VALUE` sets one.
    pub env: Vec<String>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            timeout: None,
            net: Net::Loopback,
            binds: Vec::new(),
            tmpfs_size: isotest_runtime::DEFAULT_TMPFS_SIZE,
            toolchain: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// What tests that run the toolchain (insta's `cargo metadata`, rustfmt, `rustc
/// --version`) need to see, each at its own path: `$CARGO`, the rustup home with its
/// settings and toolchains, and of cargo's home the proxies, config and registry cache,
/// but not its credentials.
pub fn toolchain_paths() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let dir = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
    };
    let mut paths = Vec::new();
    if let Ok(cargo) = std::fs::canonicalize(crate::cargo::cargo_path())
        && let Some(bin) = cargo.parent()
    {
        paths.push(bin.to_path_buf());
    }
    paths.extend(dir("RUSTUP_HOME", ".rustup"));
    if let Some(cargo_home) = dir("CARGO_HOME", ".cargo") {
        for entry in ["bin", "registry", "git", "config.toml", "config", "env"] {
            paths.push(cargo_home.join(entry));
        }
    }
    paths.extend(home.map(|h| h.join(".gitconfig")));
    paths.retain(|p| p.exists());
    paths
}

/// `CARGO_TARGET_TMPDIR`: a private tmpfs per test, where cargo's own would be shared.
pub fn target_tmpdir(build: &Build) -> PathBuf {
    build.target_dir.join("tmp")
}

/// The sandbox `binary` runs in, for the program `argv`.
pub fn binary_spec(
    build: &Build,
    binary: &TestBinary,
    options: &SandboxOptions,
    argv: Vec<String>,
) -> Spec {
    let mut spec = Spec::new(argv);
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
        let covered = spec
            .mounts
            .iter()
            .any(|m| matches!(m, Mount::Bind { dst, .. } if path.starts_with(dst)));
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
    spec.cwd = binary.manifest_dir.clone();
    spec.net = options.net;
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
    spec
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
    env.insert(
        "CARGO".into(),
        crate::cargo::cargo_path().display().to_string(),
    );
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
