//! The binary list nextest keeps in `binaries-metadata.json`, made from cargo's build
//! messages the way nextest makes it, so that both runners read the same facts: the test
//! binaries and their ids, the binaries and dylibs they need, build-script outputs and
//! linked paths, and the platforms' library directories.

use std::collections::{BTreeMap, BTreeSet};

use cargo_metadata::camino::{Utf8Path, Utf8PathBuf};
use cargo_metadata::{Artifact, BuildScript, Metadata, Package, PackageId, TargetKind};
use nextest_metadata::{
    BinaryListSummary, BuildPlatform, BuildPlatformsSummary, BuildScriptInfoSummary,
    HostPlatformSummary, PlatformLibdirSummary, PlatformLibdirUnavailable, RustBinaryId,
    RustBuildMetaSummary, RustNonTestBinaryKind, RustNonTestBinarySummary, RustTestBinaryKind,
    RustTestBinarySummary, TargetPlatformSummary,
};
use target_spec::summaries::PlatformSummary;

/// A platform's triple and the directory holding its standard library (`rustc --print
/// target-libdir`), if rustc told it.
#[derive(Clone, Debug)]
pub struct Platform {
    pub triple: String,
    pub libdir: Option<Utf8PathBuf>,
}

/// The host, and the `--target` platform when cross-compiling.
pub fn platforms(host: &Platform, target: Option<&Platform>) -> BuildPlatformsSummary {
    BuildPlatformsSummary {
        host: HostPlatformSummary {
            platform: PlatformSummary::new(&host.triple),
            libdir: libdir_summary(host),
        },
        targets: target
            .map(|t| TargetPlatformSummary {
                platform: PlatformSummary::new(&t.triple),
                libdir: libdir_summary(t),
            })
            .into_iter()
            .collect(),
    }
}

fn libdir_summary(platform: &Platform) -> PlatformLibdirSummary {
    match &platform.libdir {
        Some(path) => PlatformLibdirSummary::Available { path: path.clone() },
        None => PlatformLibdirSummary::Unavailable {
            reason: PlatformLibdirUnavailable::RUSTC_FAILED,
        },
    }
}

/// Where cargo put the build: `target_dir` gets the uplifted artifacts (binaries, dylibs),
/// `build_dir` (cargo's `build.build-dir`, else the target dir) the test binaries and
/// build-script outputs.
#[derive(Clone, Copy, Debug)]
pub struct Dirs<'a> {
    pub target_dir: &'a Utf8Path,
    pub build_dir: &'a Utf8Path,
}

/// The binary list of a `cargo test --no-run --message-format=json` build.
pub fn binary_list(
    metadata: &Metadata,
    dirs: Dirs<'_>,
    artifacts: &[Artifact],
    scripts: &[BuildScript],
    platforms: BuildPlatformsSummary,
) -> BinaryListSummary {
    let packages: BTreeMap<&PackageId, &Package> =
        metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let target_triple = platforms.targets.first().map(|t| t.platform.triple.clone());
    let mut meta = RustBuildMetaSummary {
        target_directory: dirs.target_dir.to_path_buf(),
        build_directory: (dirs.build_dir != dirs.target_dir).then(|| dirs.build_dir.to_path_buf()),
        build_script_info: Some(BTreeMap::new()),
        // The deprecated fields, for nextest versions before `platforms`.
        target_platforms: vec![PlatformSummary::new(
            target_triple
                .as_deref()
                .unwrap_or(&platforms.host.platform.triple),
        )],
        target_platform: target_triple.clone(),
        platforms: Some(platforms),
        ..RustBuildMetaSummary::default()
    };
    let non_test_platform = |path: &Utf8Path| match &target_triple {
        None => Some(BuildPlatform::Target),
        // cargo does not say; nextest's guess: under `<target dir>/<triple>/` is the target's.
        Some(triple) => [dirs.target_dir, dirs.build_dir]
            .iter()
            .filter_map(|root| path.strip_prefix(root).ok())
            .min_by_key(|rel| rel.as_str().len())
            .map(|rel| {
                if rel.starts_with(triple) {
                    BuildPlatform::Target
                } else {
                    BuildPlatform::Host
                }
            }),
    };
    let mut binaries = BTreeMap::new();
    for artifact in artifacts {
        let Some(package) = packages.get(&artifact.package_id) else {
            continue;
        };
        if let Some(path) = &artifact.executable {
            if let Some(base) = path
                .strip_prefix(dirs.build_dir)
                .ok()
                .and_then(base_output_dir)
            {
                meta.base_output_directories.insert(base.to_path_buf());
            }
            if artifact.profile.test {
                let (kind, build_platform) = test_kind(&artifact.target.kind);
                let id = RustBinaryId::from_parts(&package.name, &kind, &artifact.target.name);
                binaries.insert(
                    id.clone(),
                    RustTestBinarySummary {
                        binary_id: id,
                        binary_name: artifact.target.name.clone(),
                        package_id: artifact.package_id.repr.clone(),
                        kind,
                        binary_path: path.clone(),
                        build_platform,
                    },
                );
            } else if artifact.target.kind.contains(&TargetKind::Bin)
                && let Ok(rel) = path.strip_prefix(dirs.target_dir)
            {
                meta.non_test_binaries
                    .entry(artifact.package_id.repr.clone())
                    .or_default()
                    .insert(RustNonTestBinarySummary {
                        name: artifact.target.name.clone(),
                        kind: RustNonTestBinaryKind::BIN_EXE,
                        path: rel.to_path_buf(),
                        build_platform: non_test_platform(path),
                    });
            }
        } else if artifact
            .target
            .kind
            .iter()
            .any(|k| matches!(k, TargetKind::DyLib | TargetKind::CDyLib))
        {
            for file in &artifact.filenames {
                if let Ok(rel) = file.strip_prefix(dirs.target_dir) {
                    meta.non_test_binaries
                        .entry(artifact.package_id.repr.clone())
                        .or_default()
                        .insert(RustNonTestBinarySummary {
                            name: artifact.target.name.clone(),
                            kind: RustNonTestBinaryKind::DYLIB,
                            path: rel.to_path_buf(),
                            build_platform: non_test_platform(file),
                        });
                }
            }
        }
    }
    let workspace: BTreeSet<&PackageId> = metadata.workspace_members.iter().collect();
    let mut out_dirs = BTreeMap::new();
    let mut script_info = BTreeMap::new();
    for script in scripts {
        for linked in &script.linked_paths {
            // `cargo::rustc-link-search=[KIND=]PATH`; paths outside the build are the
            // system's, present on the other machine or not at all.
            let path = linked
                .as_str()
                .split_once('=')
                .map_or(linked.as_path(), |(_, path)| Utf8Path::new(path));
            if let Ok(rel) = path.strip_prefix(dirs.build_dir) {
                meta.linked_paths.insert(rel.to_path_buf());
            }
        }
        if !workspace.contains(&script.package_id) {
            continue;
        }
        if let Ok(rel) = script.out_dir.strip_prefix(dirs.build_dir) {
            out_dirs.insert(script.package_id.repr.clone(), rel.to_path_buf());
        }
        if !script.env.is_empty() {
            script_info.insert(
                script.package_id.repr.clone(),
                BuildScriptInfoSummary {
                    envs: script.env.iter().cloned().collect(),
                },
            );
        }
    }
    // Only the packages whose tests are in the list need their build scripts' outputs.
    let tested: BTreeSet<&str> = binaries.values().map(|b| b.package_id.as_str()).collect();
    out_dirs.retain(|package, _| tested.contains(package.as_str()));
    script_info.retain(|package, _| tested.contains(package.as_str()));
    meta.build_script_out_dirs = out_dirs;
    meta.build_script_info = Some(script_info);
    BinaryListSummary {
        rust_build_meta: meta,
        rust_binaries: binaries,
    }
}

/// nextest's kinds: every library crate type is `lib`; proc-macro tests run on the host.
fn test_kind(kinds: &[TargetKind]) -> (RustTestBinaryKind, BuildPlatform) {
    let library = kinds.iter().any(|k| {
        matches!(
            k,
            TargetKind::Lib
                | TargetKind::RLib
                | TargetKind::DyLib
                | TargetKind::CDyLib
                | TargetKind::StaticLib
        )
    });
    match kinds.first() {
        _ if library => (RustTestBinaryKind::LIB, BuildPlatform::Target),
        Some(TargetKind::ProcMacro) => (RustTestBinaryKind::PROC_MACRO, BuildPlatform::Host),
        Some(kind) => (
            RustTestBinaryKind::new(kind.to_string()),
            BuildPlatform::Target,
        ),
        None => (RustTestBinaryKind::LIB, BuildPlatform::Target),
    }
}

/// `[<triple>/]<profile>` of an artifact's path relative to the build dir: the directory
/// whose `deps/` (and the target dir's same directory) hold the dylibs tests load.
fn base_output_dir(rel: &Utf8Path) -> Option<&Utf8Path> {
    let parent = rel.parent()?;
    let base = match parent.file_name()? {
        "deps" | "examples" => parent.parent(),
        // cargo's build-dir layout v2: `<base>/build/<package>/<hash>/out/<binary>`.
        "out" => parent
            .ancestors()
            .nth(3)
            .filter(|a| a.file_name() == Some("build"))
            .and_then(Utf8Path::parent),
        _ => None,
    }?;
    (!base.as_str().is_empty()).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_output_dirs_of_both_layouts() {
        fn base(p: &str) -> Option<&str> {
            base_output_dir(Utf8Path::new(p)).map(Utf8Path::as_str)
        }
        assert_eq!(base("debug/deps/t-123"), Some("debug"));
        assert_eq!(
            base("x86_64-unknown-linux-gnu/release/examples/e"),
            Some("x86_64-unknown-linux-gnu/release")
        );
        assert_eq!(
            base("debug/build/pkg/f3694e28990a9310/out/t"),
            Some("debug")
        );
        assert_eq!(base("debug/build/pkg-f3694e28990a9310/out/t"), None);
        assert_eq!(base("debug/t"), None);
        assert_eq!(base("deps/t"), None);
    }

    #[test]
    fn test_kinds_follow_nextest() {
        assert_eq!(
            test_kind(&[TargetKind::CDyLib, TargetKind::RLib]).0,
            RustTestBinaryKind::LIB
        );
        assert_eq!(
            test_kind(&[TargetKind::ProcMacro]),
            (RustTestBinaryKind::PROC_MACRO, BuildPlatform::Host)
        );
        assert_eq!(test_kind(&[TargetKind::Bench]).0.as_str(), "bench");
        assert_eq!(test_kind(&[TargetKind::Example]).0.as_str(), "example");
    }
}
