//! A build from an unpacked archive, with no cargo: the same [`Build`] a local build
//! gives, its paths pointing at the unpacked target directory and the remapped checkout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use cargo_metadata::camino::Utf8Path;
use cargo_metadata::{Package, PackageId};
use nextest_metadata::RustNonTestBinaryKind;

use super::archive::Unpacked;
use super::build::{Build, BuildError, CrateTarget, RustcPrint, TestBinary, cargo_env};
use super::config_env;

/// The build an archive holds. The toolchain is this machine's when it has one
/// (`sysroot`, `rustc --print sysroot` started in the checkout); otherwise the archive's
/// own copy of libstd serves.
pub fn build(unpacked: &Unpacked, sysroot: RustcPrint) -> Result<Build, BuildError> {
    let workspace_root = unpacked.workspace_root.clone().into_std_path_buf();
    let target_dir = unpacked.target_dir.clone().into_std_path_buf();
    let archived_libdir = unpacked
        .target_libdir
        .clone()
        .or_else(|| unpacked.host_libdir.clone())
        .map(|d| d.into_std_path_buf());
    let sysroot = sysroot
        .finish()
        .or_else(|e| archived_libdir.clone().map(|d| d.join("..")).ok_or(e))?;
    let target_libdir = archived_libdir.unwrap_or_else(|| sysroot.join("lib"));
    Ok(Build {
        binaries: test_binaries(unpacked),
        config_env: config_env::read(&workspace_root)?,
        sysroot,
        target_libdir,
        workspace_root,
        target_dir,
    })
}

fn test_binaries(unpacked: &Unpacked) -> Vec<Arc<TestBinary>> {
    let packages: BTreeMap<&PackageId, &Package> = unpacked
        .cargo_metadata
        .packages
        .iter()
        .map(|p| (&p.id, p))
        .collect();
    let meta = &unpacked.binary_list.rust_build_meta;
    let target = &unpacked.target_dir;
    let under_target = |rel: &Utf8Path| target.join(rel).into_std_path_buf();
    let link_paths: Vec<PathBuf> = meta.linked_paths.iter().map(|p| under_target(p)).collect();
    let mut binaries: Vec<Arc<TestBinary>> = unpacked
        .binary_list
        .rust_binaries
        .values()
        .filter_map(|binary| {
            let package = packages.get(&PackageId {
                repr: binary.package_id.clone(),
            })?;
            let kind = binary.kind.0.as_ref();
            let crate_target = CrateTarget {
                name: &binary.binary_name,
                is_bin: kind == "bin",
                integration: matches!(kind, "test" | "bench"),
            };
            let out_dir = meta
                .build_script_out_dirs
                .get(&binary.package_id)
                .map(|rel| target.join(rel).to_string());
            let script_env: Vec<(String, String)> = meta
                .build_script_info
                .as_ref()
                .and_then(|info| info.get(&binary.package_id))
                .map(|info| info.envs.clone().into_iter().collect())
                .unwrap_or_default();
            let bin_exes = meta
                .non_test_binaries
                .get(&binary.package_id)
                .into_iter()
                .flatten()
                .filter(|b| b.kind == RustNonTestBinaryKind::BIN_EXE)
                .map(|b| (b.name.clone(), under_target(&b.path)));
            Some(Arc::new(TestBinary {
                id: binary.binary_id.to_string(),
                path: binary.binary_path.clone().into_std_path_buf(),
                manifest_dir: package.manifest_path.parent()?.to_path_buf().into(),
                env: cargo_env(
                    package,
                    &crate_target,
                    out_dir.as_deref().map(|d| (d, &script_env[..])),
                    bin_exes,
                ),
                link_paths: link_paths.clone(),
                package_id: binary.package_id.clone(),
                kind: kind.to_string(),
                target_name: binary.binary_name.clone(),
            }))
        })
        .collect();
    binaries.sort_by(|a, b| a.id.cmp(&b.id));
    binaries
}
