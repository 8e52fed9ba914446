//! Build the tests with cargo, and find every test binary and what cargo would give it at
//! run time.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use cargo_metadata::{
    Artifact, BuildScript, Message, Metadata, MetadataCommand, Package, PackageId, TargetKind,
};

use super::config_env::{self, ConfigEnv};
use super::{CargoOptions, cargo_command, cargo_path};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("the build failed (`cargo test --no-run` exited with {status})")]
    BuildFailed { status: std::process::ExitStatus },
    #[error("cannot read cargo's build messages: {0}")]
    Messages(std::io::Error),
    #[error("`cargo metadata` failed: {0}")]
    Metadata(#[from] cargo_metadata::Error),
    #[error(
        "could not find `Cargo.toml` in `{}` or any parent directory\nhint: run cargo isotest in a cargo project, or point at one with --manifest-path PATH/Cargo.toml",
        dir.display()
    )]
    NoProject { dir: PathBuf },
    #[error("`rustc --print {what}` failed: {detail}")]
    Rustc { what: &'static str, detail: String },
    #[error(transparent)]
    Config(#[from] config_env::ConfigError),
}

/// What cargo knows about the build as a whole.
#[derive(Debug)]
pub struct Build {
    pub workspace_root: PathBuf,
    pub target_dir: PathBuf,
    /// The toolchain's root: its libraries must be visible for `-C prefer-dynamic`.
    pub sysroot: PathBuf,
    pub target_libdir: PathBuf,
    pub binaries: Vec<Arc<TestBinary>>,
    pub config_env: Vec<ConfigEnv>,
}

/// One test executable and the environment `cargo test` would run it with.
#[derive(Debug)]
pub struct TestBinary {
    /// nextest's convention: `pkg`, `pkg::test`, `pkg::bin/name`, `pkg::example/name`, `pkg::bench/name`.
    pub id: String,
    pub path: PathBuf,
    pub manifest_dir: PathBuf,
    /// `CARGO_PKG_*`, `CARGO_MANIFEST_DIR`, `CARGO_CRATE_NAME`, `CARGO_BIN_EXE_*`, `OUT_DIR`
    /// and the build script's `rustc-env` values.
    pub env: BTreeMap<String, String>,
    /// Directories the build scripts asked the linker to search, for `LD_LIBRARY_PATH`.
    pub link_paths: Vec<PathBuf>,
    /// cargo's package id (`cargo metadata`'s `id`), which filtersets match packages by.
    pub package_id: String,
    /// nextest's kind of binary: `lib`, `test`, `bench`, `bin`, `example`, `proc-macro`.
    pub kind: String,
    /// The target's name.
    pub target_name: String,
}

/// A build with what archiving it needs besides: cargo's full metadata (with
/// dependencies, as nextest reads it) and the build's messages.
pub struct ArchivableBuild {
    pub build: Build,
    pub metadata: Metadata,
    pub metadata_json: String,
    pub artifacts: Vec<Artifact>,
    pub scripts: Vec<BuildScript>,
    /// The host's triple, from `rustc -vV`.
    pub host_triple: String,
}

/// Runs `cargo test --no-run`, letting its human output through, and collects the binaries
/// of the workspace `metadata` describes.
pub fn build(options: &CargoOptions, metadata: &Metadata) -> Result<Build, BuildError> {
    let (build, _, _) = build_with(options, metadata)?;
    Ok(build)
}

/// [`build`], keeping what `cargo isotest archive` packs.
pub fn build_for_archive(options: &CargoOptions) -> Result<ArchivableBuild, BuildError> {
    let (metadata, metadata_json) = metadata_with_json(options, true)?;
    // Asked while cargo builds, as the build's own rustc questions are.
    let version = RustcPrint::version(metadata.workspace_root.as_std_path());
    let (build, artifacts, scripts) = build_with(options, &metadata)?;
    let text = version.finish_text()?;
    let host_triple = text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or_else(|| BuildError::Rustc {
            what: "-vV",
            detail: "it named no host".into(),
        })?
        .to_string();
    Ok(ArchivableBuild {
        build,
        metadata,
        metadata_json,
        artifacts,
        scripts,
        host_triple,
    })
}

fn build_with(
    options: &CargoOptions,
    metadata: &Metadata,
) -> Result<(Build, Vec<Artifact>, Vec<BuildScript>), BuildError> {
    let workspace_root = metadata.workspace_root.clone().into_std_path_buf();
    // rustc answers while cargo builds: neither changes the toolchain.
    let sysroot = RustcPrint::start("sysroot", &workspace_root, None);
    let target_libdir =
        RustcPrint::start("target-libdir", &workspace_root, options.target.as_deref());
    let mut cargo = cargo_command();
    cargo
        .args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(options.to_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let command = "cargo test --no-run --message-format=json-render-diagnostics";
    let mut child = cargo.spawn().map_err(|source| BuildError::Spawn {
        command: command.into(),
        source,
    })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut artifacts = Vec::new();
    let mut scripts = Vec::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        match message.map_err(BuildError::Messages)? {
            Message::CompilerArtifact(artifact) => artifacts.push(artifact),
            Message::BuildScriptExecuted(script) => scripts.push(script),
            _ => {}
        }
    }
    let status = child.wait().map_err(|source| BuildError::Spawn {
        command: command.into(),
        source,
    })?;
    if !status.success() {
        return Err(BuildError::BuildFailed { status });
    }
    let target_dir = target_dir(options, metadata);
    let cwd = std::env::current_dir().unwrap_or_else(|_| workspace_root.clone());
    let build = Build {
        sysroot: sysroot.finish()?,
        target_libdir: target_libdir.finish()?,
        binaries: test_binaries(metadata, &artifacts, &scripts),
        config_env: config_env::read(&cwd)?,
        workspace_root,
        target_dir,
    };
    Ok((build, artifacts, scripts))
}

/// The target directory the build writes to: `--target-dir`, else cargo's.
pub fn target_dir(options: &CargoOptions, metadata: &Metadata) -> PathBuf {
    match &options.target_dir {
        Some(dir) => std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
        None => metadata.target_directory.clone().into_std_path_buf(),
    }
}

/// `cargo metadata` of the workspace. `with_dependencies` resolves every dependency, which
/// filtersets' `deps()` and `rdeps()` and an archive need; without, it reads only the
/// workspace's own manifests, which is several times faster and never downloads.
pub fn metadata(options: &CargoOptions, with_dependencies: bool) -> Result<Metadata, BuildError> {
    Ok(metadata_with_json(options, with_dependencies)?.0)
}

/// [`metadata`], and its JSON text, which an archive stores.
fn metadata_with_json(
    options: &CargoOptions,
    with_dependencies: bool,
) -> Result<(Metadata, String), BuildError> {
    // Cargo's own words for this go to the terminal, not into the error: say it here,
    // with what to do, as a usage error rather than a failed build.
    if options.manifest_path.is_none() {
        let dir = std::env::current_dir().unwrap_or_default();
        if !dir.ancestors().any(|d| d.join("Cargo.toml").is_file()) {
            return Err(BuildError::NoProject { dir });
        }
    }
    let mut command = MetadataCommand::new();
    command.cargo_path(cargo_path());
    if let Some(path) = &options.manifest_path {
        command.manifest_path(path);
    }
    let mut other = Vec::new();
    for (set, flag) in [
        (options.frozen, "--frozen"),
        (options.locked, "--locked"),
        (options.offline, "--offline"),
    ] {
        if set {
            other.push(flag.to_string());
        }
    }
    if !with_dependencies {
        command.no_deps();
    }
    for feature in &options.features {
        other.extend(["--features".to_string(), feature.clone()]);
    }
    for (set, flag) in [
        (options.all_features, "--all-features"),
        (options.no_default_features, "--no-default-features"),
    ] {
        if set {
            other.push(flag.to_string());
        }
    }
    let output = command
        .other_options(other)
        .cargo_command()
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| BuildError::Spawn {
            command: "cargo metadata".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(BuildError::Metadata(cargo_metadata::Error::CargoMetadata {
            stderr: String::new(),
        }));
    }
    let json = String::from_utf8(output.stdout)
        .map_err(|e| BuildError::Metadata(cargo_metadata::Error::Utf8(e.utf8_error())))?;
    let metadata = MetadataCommand::parse(&json)?;
    Ok((metadata, json))
}

/// `rustc --print WHAT` (`sysroot`, `target-libdir`) in `dir`, whose toolchain file rustup
/// follows.
pub fn rustc_print(
    what: &'static str,
    dir: &Path,
    target: Option<&str>,
) -> Result<PathBuf, BuildError> {
    RustcPrint::start(what, dir, target).finish()
}

/// A `rustc --print` started, to run while the caller does something else.
pub struct RustcPrint {
    what: &'static str,
    child: std::io::Result<std::process::Child>,
}

impl RustcPrint {
    pub fn start(what: &'static str, dir: &Path, target: Option<&str>) -> RustcPrint {
        let mut args = vec!["--print", what];
        if let Some(target) = target {
            args.extend(["--target", target]);
        }
        RustcPrint::spawn(what, &args, dir)
    }

    /// `rustc -vV`, whose `host:` line names the host's triple.
    pub fn version(dir: &Path) -> RustcPrint {
        RustcPrint::spawn("-vV", &["-vV"], dir)
    }

    fn spawn(what: &'static str, args: &[&str], dir: &Path) -> RustcPrint {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let child = std::process::Command::new(rustc)
            .args(args)
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        RustcPrint { what, child }
    }

    pub fn finish(self) -> Result<PathBuf, BuildError> {
        self.finish_text().map(PathBuf::from)
    }

    /// What rustc printed, trimmed.
    pub fn finish_text(self) -> Result<String, BuildError> {
        let what = self.what;
        let output = self
            .child
            .and_then(|child| child.wait_with_output())
            .map_err(|e| BuildError::Rustc {
                what,
                detail: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(BuildError::Rustc {
                what,
                detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }
}

fn test_binaries(
    metadata: &Metadata,
    artifacts: &[Artifact],
    scripts: &[BuildScript],
) -> Vec<Arc<TestBinary>> {
    let packages: BTreeMap<&PackageId, &Package> =
        metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let mut binaries: Vec<Arc<TestBinary>> = artifacts
        .iter()
        .filter(|a| a.profile.test)
        .filter_map(|artifact| {
            let path = artifact.executable.as_ref()?.clone().into_std_path_buf();
            let package = packages.get(&artifact.package_id)?;
            let script = scripts.iter().find(|s| s.package_id == artifact.package_id);
            let bin_exes = artifacts
                .iter()
                .filter(|a| a.package_id == artifact.package_id && !a.profile.test)
                .filter(|a| a.target.kind.contains(&TargetKind::Bin))
                .filter_map(|a| {
                    Some((
                        a.target.name.clone(),
                        a.executable.clone()?.into_std_path_buf(),
                    ))
                });
            Some(Arc::new(TestBinary {
                id: binary_id(package, artifact),
                path,
                manifest_dir: package
                    .manifest_path
                    .parent()?
                    .to_path_buf()
                    .into_std_path_buf(),
                env: cargo_env(
                    package,
                    &CrateTarget::of(artifact),
                    script.map(|s| (s.out_dir.as_str(), &s.env[..])),
                    bin_exes,
                ),
                link_paths: script.map(link_paths).unwrap_or_default(),
                package_id: artifact.package_id.repr.clone(),
                kind: nextest_kind(artifact).to_string(),
                target_name: artifact.target.name.clone(),
            }))
        })
        .collect();
    binaries.sort_by(|a, b| a.id.cmp(&b.id));
    binaries.dedup_by(|a, b| a.path == b.path);
    binaries
}

/// nextest's binary ids, so that people can move between the two tools.
fn binary_id(package: &Package, artifact: &Artifact) -> String {
    let name = &package.name;
    let target = &artifact.target;
    let kind = target.kind.first().cloned().unwrap_or(TargetKind::Lib);
    match kind {
        TargetKind::Lib
        | TargetKind::RLib
        | TargetKind::DyLib
        | TargetKind::CDyLib
        | TargetKind::StaticLib
        | TargetKind::ProcMacro => name.to_string(),
        TargetKind::Test => format!("{name}::{}", target.name),
        TargetKind::Bin => format!("{name}::bin/{}", target.name),
        TargetKind::Example => format!("{name}::example/{}", target.name),
        TargetKind::Bench => format!("{name}::bench/{}", target.name),
        other => format!("{name}::{other}/{}", target.name),
    }
}

/// The kind nextest gives a binary, which `kind()` in a filterset matches.
fn nextest_kind(artifact: &Artifact) -> &'static str {
    match artifact.target.kind.first() {
        Some(TargetKind::ProcMacro) => "proc-macro",
        Some(TargetKind::Bin) => "bin",
        Some(TargetKind::Test) => "test",
        Some(TargetKind::Bench) => "bench",
        Some(TargetKind::Example) => "example",
        _ => "lib",
    }
}

/// What `cargo test` tells a test about its own crate target.
pub struct CrateTarget<'a> {
    pub name: &'a str,
    pub is_bin: bool,
    /// An integration test or bench, which gets `CARGO_BIN_EXE_*`.
    pub integration: bool,
}

impl CrateTarget<'_> {
    fn of(artifact: &Artifact) -> CrateTarget<'_> {
        let kinds = &artifact.target.kind;
        CrateTarget {
            name: &artifact.target.name,
            is_bin: kinds.contains(&TargetKind::Bin),
            integration: kinds
                .iter()
                .any(|k| matches!(k, TargetKind::Test | TargetKind::Bench)),
        }
    }
}

/// Cargo's variables for one test binary; `script` is its package's build script's
/// `OUT_DIR` and `rustc-env` values.
pub fn cargo_env(
    package: &Package,
    target: &CrateTarget<'_>,
    script: Option<(&str, &[(String, String)])>,
    bin_exes: impl Iterator<Item = (String, PathBuf)>,
) -> BTreeMap<String, String> {
    let version = &package.version;
    let manifest_dir = package
        .manifest_path
        .parent()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let optional = |v: Option<&String>| v.cloned().unwrap_or_default();
    let mut env: BTreeMap<String, String> = [
        ("CARGO_MANIFEST_DIR", manifest_dir),
        ("CARGO_MANIFEST_PATH", package.manifest_path.to_string()),
        ("CARGO_PKG_NAME", package.name.to_string()),
        ("CARGO_PKG_VERSION", version.to_string()),
        ("CARGO_PKG_VERSION_MAJOR", version.major.to_string()),
        ("CARGO_PKG_VERSION_MINOR", version.minor.to_string()),
        ("CARGO_PKG_VERSION_PATCH", version.patch.to_string()),
        ("CARGO_PKG_VERSION_PRE", version.pre.to_string()),
        ("CARGO_PKG_AUTHORS", package.authors.join(":")),
        (
            "CARGO_PKG_DESCRIPTION",
            optional(package.description.as_ref()),
        ),
        ("CARGO_PKG_HOMEPAGE", optional(package.homepage.as_ref())),
        (
            "CARGO_PKG_REPOSITORY",
            optional(package.repository.as_ref()),
        ),
        ("CARGO_PKG_LICENSE", optional(package.license.as_ref())),
        (
            "CARGO_PKG_LICENSE_FILE",
            package
                .license_file
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ),
        (
            "CARGO_PKG_RUST_VERSION",
            package
                .rust_version
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ),
        (
            "CARGO_PKG_README",
            package
                .readme
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ),
        ("CARGO_CRATE_NAME", target.name.replace('-', "_")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if target.is_bin {
        env.insert("CARGO_BIN_NAME".into(), target.name.to_string());
    }
    if target.integration {
        for (name, path) in bin_exes {
            env.insert(format!("CARGO_BIN_EXE_{name}"), path.display().to_string());
        }
    }
    if let Some((out_dir, script_env)) = script {
        env.insert("OUT_DIR".into(), out_dir.to_string());
        env.extend(script_env.iter().cloned());
    }
    env
}

/// `cargo:rustc-link-search=[KIND=]PATH` values, without their kind.
fn link_paths(script: &BuildScript) -> Vec<PathBuf> {
    script
        .linked_paths
        .iter()
        .map(|p| {
            let text = p.as_str();
            let path = text.split_once('=').map_or(text, |(_, path)| path);
            PathBuf::from(path)
        })
        .collect()
}
