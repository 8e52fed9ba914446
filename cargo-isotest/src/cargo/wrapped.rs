//! A build seen from inside one test-binary invocation, as nextest (a wrapper script) or
//! cargo (a target runner) starts it: no cargo runs; the workspace, target directory,
//! binary id and test name come from the environment, the working directory and argv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::build::{Build, TestBinary};

/// What one invocation is.
#[derive(Debug)]
pub struct Wrapped {
    pub build: Build,
    pub binary: Arc<TestBinary>,
    /// The one test it runs (`--exact NAME`, as nextest runs a test), when it runs one.
    pub test_name: Option<String>,
}

/// The toolchain's directories, asked of rustc by the caller.
pub struct Toolchain {
    pub sysroot: PathBuf,
    pub target_libdir: PathBuf,
}

/// The variables cargo and nextest give a test that the sandbox passes on: cargo's own,
/// nextest's, and a build script's `OUT_DIR`.
fn passed_on(key: &str) -> bool {
    key.starts_with("CARGO_") || key.starts_with("NEXTEST_") || key == "OUT_DIR"
}

/// `binary` with `args`, started in `cwd` with `vars`.
pub fn wrapped(
    binary: &Path,
    args: &[String],
    vars: &BTreeMap<String, String>,
    cwd: &Path,
    toolchain: Toolchain,
) -> Wrapped {
    let manifest_dir = vars
        .get("CARGO_MANIFEST_DIR")
        .map_or_else(|| cwd.to_path_buf(), PathBuf::from);
    let workspace_root = vars
        .get("NEXTEST_WORKSPACE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root(&manifest_dir));
    let target_dir = vars
        .get("CARGO_TARGET_DIR")
        .map(|d| workspace_root.join(d))
        .unwrap_or_else(|| target_dir(binary));
    let id = vars
        .get("NEXTEST_BINARY_ID")
        .cloned()
        .unwrap_or_else(|| binary_id(binary, vars));
    let test_name = args
        .iter()
        .position(|a| a == "--exact")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let env = vars
        .iter()
        .filter(|(k, _)| passed_on(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Wrapped {
        build: Build {
            workspace_root,
            target_dir,
            sysroot: toolchain.sysroot,
            target_libdir: toolchain.target_libdir,
            binaries: Vec::new(),
            config_env: Vec::new(),
        },
        binary: Arc::new(TestBinary {
            id,
            path: binary.to_path_buf(),
            manifest_dir,
            env,
            link_paths: Vec::new(),
            // What filtersets match a binary by: wrap is handed its one binary and
            // selects nothing, so neither cargo's ids nor nextest's kinds are known.
            package_id: String::new(),
            kind: String::new(),
            target_name: String::new(),
        }),
        test_name,
    }
}

/// The outermost directory above `dir` whose Cargo.toml has a `[workspace]`, else `dir`.
fn workspace_root(dir: &Path) -> PathBuf {
    dir.ancestors()
        .filter(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .is_ok_and(|text| text.lines().any(|l| l.trim() == "[workspace]"))
        })
        .last()
        .unwrap_or(dir)
        .to_path_buf()
}

/// Cargo marks its target directory with `CACHEDIR.TAG`; else `<target>/<profile>/deps/bin`.
fn target_dir(binary: &Path) -> PathBuf {
    binary
        .ancestors()
        .skip(1)
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .or_else(|| binary.ancestors().nth(3))
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// nextest's id from what cargo tells a target runner: `pkg` for the library's unit
/// tests, else `pkg::<target>` with the binary's name less its hash.
fn binary_id(binary: &Path, vars: &BTreeMap<String, String>) -> String {
    let package = vars.get("CARGO_PKG_NAME").cloned().unwrap_or_default();
    let stem = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = stem
        .rsplit_once('-')
        .map_or(stem.as_str(), |(name, _)| name);
    if package.is_empty() {
        return target.to_string();
    }
    if target == package.replace('-', "_") {
        package
    } else {
        format!("{package}::{target}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toolchain() -> Toolchain {
        Toolchain {
            sysroot: "/rust".into(),
            target_libdir: "/rust/lib".into(),
        }
    }

    #[test]
    fn nextest_s_variables_and_argv_name_the_test() {
        let vars: BTreeMap<String, String> = [
            ("NEXTEST_BINARY_ID", "outcomes::it"),
            ("NEXTEST_WORKSPACE_ROOT", "/w"),
            ("CARGO_MANIFEST_DIR", "/w/outcomes"),
            ("CARGO_PKG_NAME", "outcomes"),
            ("HOME", "/root"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let args: Vec<String> = ["--exact", "a::b", "--nocapture"]
            .map(String::from)
            .to_vec();
        let w = wrapped(
            Path::new("/w/target/debug/deps/it-0123"),
            &args,
            &vars,
            Path::new("/w/outcomes"),
            toolchain(),
        );
        assert_eq!(w.binary.id, "outcomes::it");
        assert_eq!(w.test_name.as_deref(), Some("a::b"));
        assert_eq!(w.build.workspace_root, Path::new("/w"));
        assert_eq!(w.build.target_dir, Path::new("/w/target"));
        assert_eq!(w.binary.manifest_dir, Path::new("/w/outcomes"));
        assert!(w.binary.env.contains_key("CARGO_PKG_NAME"));
        assert!(
            !w.binary.env.contains_key("HOME"),
            "the sandbox decides HOME"
        );
    }

    #[test]
    fn a_target_runner_gets_the_id_from_cargo_s_variables() {
        let vars: BTreeMap<String, String> = [("CARGO_PKG_NAME", "my-crate")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let id = |file: &str| binary_id(Path::new(file), &vars);
        assert_eq!(id("/t/debug/deps/my_crate-abc"), "my-crate");
        assert_eq!(id("/t/debug/deps/integration-abc"), "my-crate::integration");
    }
}
