//! For unit tests that compare with cargo-nextest: the fixtures, built by cargo into a
//! target directory of their own, and the installed `cargo nextest`.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cargo_metadata::camino::Utf8PathBuf;
use cargo_metadata::{Artifact, BuildScript, Message, Metadata};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .canonicalize()
        .expect("the fixture exists")
}

/// Under the workspace's `target/`, so that builds are incremental across test runs.
pub fn target_dir(name: &str) -> Utf8PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/unit-fixtures");
    std::fs::create_dir_all(&dir).expect("create the fixtures' target dir");
    Utf8PathBuf::from_path_buf(dir.canonicalize().expect("canonical").join(name))
        .expect("a UTF-8 path")
}

/// `cargo` in the fixture's directory, so that its `.cargo/config.toml` applies.
pub fn cargo(name: &str) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(fixture(name))
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null());
    command
}

/// `cargo nextest` in the fixture's directory, or `None` (saying so) when cargo-nextest
/// is not installed. CI installs it, so there these tests always run.
pub fn nextest(name: &str) -> Option<Command> {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| d.join("cargo-nextest").is_file())
    });
    if !found {
        eprintln!(
            "skipped: cargo-nextest is not on PATH (`cargo install cargo-nextest` to run this comparison)"
        );
        return None;
    }
    let mut command = cargo(name);
    command.arg("nextest");
    Some(command)
}

/// Runs `command`, failing the test with its output unless it succeeds.
pub fn output(command: &mut Command) -> String {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// What `cargo test --no-run` said about a fixture's build, and its full metadata.
pub struct Built {
    pub metadata: Metadata,
    pub metadata_json: String,
    pub target_dir: Utf8PathBuf,
    pub artifacts: Vec<Artifact>,
    pub scripts: Vec<BuildScript>,
}

pub fn build(name: &str) -> Built {
    let target_dir = target_dir(name);
    let metadata_json = output(
        cargo(name)
            .args(["metadata", "--format-version=1", "--all-features"])
            .env("CARGO_TARGET_DIR", &target_dir),
    );
    let metadata: Metadata = serde_json::from_str(&metadata_json).expect("cargo metadata");
    let mut child = cargo(name)
        .args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cargo test --no-run");
    let mut artifacts = Vec::new();
    let mut scripts = Vec::new();
    let stdout = child.stdout.take().expect("piped");
    for message in Message::parse_stream(BufReader::new(stdout)) {
        match message.expect("cargo's messages") {
            Message::CompilerArtifact(artifact) => artifacts.push(artifact),
            Message::BuildScriptExecuted(script) => scripts.push(script),
            _ => {}
        }
    }
    assert!(child.wait().expect("wait").success(), "building {name}");
    Built {
        metadata,
        metadata_json,
        target_dir,
        artifacts,
        scripts,
    }
}

/// `rustc -vV`'s host and `--print target-libdir`.
pub fn host_platform() -> crate::cargo::archive::Platform {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = output(Command::new(&rustc).arg("-vV"));
    let triple = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string();
    let libdir = output(Command::new(&rustc).args(["--print", "target-libdir"]));
    crate::cargo::archive::Platform {
        triple,
        libdir: Some(Utf8PathBuf::from(libdir.trim())),
    }
}

/// A copy of the fixture's checkout (without `target/`) at `to`, a new directory.
pub fn copy_checkout(name: &str, to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir(to).expect("create a directory of the copy");
        for entry in std::fs::read_dir(from).expect("read the fixture") {
            let entry = entry.expect("read the fixture");
            let kind = entry.file_type().expect("file type");
            let dest = to.join(entry.file_name());
            if kind.is_dir() {
                if entry.file_name() != "target" {
                    copy(&entry.path(), &dest);
                }
            } else {
                std::fs::copy(entry.path(), &dest).expect("copy a file");
            }
        }
    }
    copy(&fixture(name), to);
}
