//! What isotest knows of cargo: the flags `run`, `list` and `shell` forward to `cargo test
//! --no-run`, and which cargo that is; the build ([`build`]), the config's `[env]`
//! ([`config_env`]) and the toolchain's paths ([`toolchain`]).

pub mod archive;
pub mod archived;
pub mod build;
pub mod config_env;
pub mod toolchain;
pub mod wrapped;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use clap::Args;

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Cargo options")]
pub struct CargoOptions {
    /// Package to test (see `cargo help pkgid`).
    #[arg(short = 'p', long = "package", value_name = "SPEC")]
    pub package: Vec<String>,
    /// Test all packages in the workspace.
    #[arg(long)]
    pub workspace: bool,
    /// Exclude packages from the test.
    #[arg(long, value_name = "SPEC")]
    pub exclude: Vec<String>,
    /// Space or comma separated list of features to activate.
    #[arg(short = 'F', long, value_name = "FEATURES")]
    pub features: Vec<String>,
    /// Activate all available features.
    #[arg(long)]
    pub all_features: bool,
    /// Do not activate the `default` feature.
    #[arg(long)]
    pub no_default_features: bool,
    /// Build artifacts in release mode, with optimizations.
    #[arg(long)]
    pub release: bool,
    /// Build artifacts with the specified cargo profile (`--profile` picks isotest's).
    #[arg(long, value_name = "NAME")]
    pub cargo_profile: Option<String>,
    /// Build for the target triple.
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// Directory for all generated artifacts.
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    /// Path to Cargo.toml.
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// Test only this package's library.
    #[arg(long)]
    pub lib: bool,
    /// Test all binaries.
    #[arg(long)]
    pub bins: bool,
    /// Test only the specified binary.
    #[arg(long, value_name = "NAME")]
    pub bin: Vec<String>,
    /// Test all integration tests.
    #[arg(long)]
    pub tests: bool,
    /// Test only the specified integration test target.
    #[arg(long = "test", value_name = "NAME")]
    pub test_targets: Vec<String>,
    /// Test all examples.
    #[arg(long)]
    pub examples: bool,
    /// Test only the specified example.
    #[arg(long, value_name = "NAME")]
    pub example: Vec<String>,
    /// Test all benches.
    #[arg(long)]
    pub benches: bool,
    /// Test only the specified bench target.
    #[arg(long, value_name = "NAME")]
    pub bench: Vec<String>,
    /// Test all targets.
    #[arg(long)]
    pub all_targets: bool,
    /// Require Cargo.lock and cache are up to date.
    #[arg(long)]
    pub frozen: bool,
    /// Require Cargo.lock is up to date.
    #[arg(long)]
    pub locked: bool,
    /// Run without accessing the network.
    #[arg(long)]
    pub offline: bool,
}

impl CargoOptions {
    /// The flags as cargo spells them.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut each = |flag: &str, values: &[String]| {
            for value in values {
                args.push(flag.into());
                args.push(value.into());
            }
        };
        each("--package", &self.package);
        each("--exclude", &self.exclude);
        each("--features", &self.features);
        each("--bin", &self.bin);
        each("--test", &self.test_targets);
        each("--example", &self.example);
        each("--bench", &self.bench);
        for (set, flag) in [
            (self.workspace, "--workspace"),
            (self.all_features, "--all-features"),
            (self.no_default_features, "--no-default-features"),
            (self.release, "--release"),
            (self.lib, "--lib"),
            (self.bins, "--bins"),
            (self.tests, "--tests"),
            (self.examples, "--examples"),
            (self.benches, "--benches"),
            (self.all_targets, "--all-targets"),
            (self.frozen, "--frozen"),
            (self.locked, "--locked"),
            (self.offline, "--offline"),
        ] {
            if set {
                args.push(flag.into());
            }
        }
        for (flag, value) in [
            ("--profile", self.cargo_profile.as_ref().map(OsString::from)),
            ("--target", self.target.as_ref().map(OsString::from)),
            ("--target-dir", self.target_dir.as_ref().map(OsString::from)),
            (
                "--manifest-path",
                self.manifest_path.as_ref().map(OsString::from),
            ),
        ] {
            if let Some(value) = value {
                args.push(flag.into());
                args.push(value);
            }
        }
        args
    }
}

/// The cargo that runs us (`$CARGO`), else the one on PATH. Tests get the same path as
/// `$CARGO`, as under `cargo test`.
pub fn cargo_path() -> PathBuf {
    if let Some(cargo) = std::env::var_os("CARGO") {
        return PathBuf::from(cargo);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("cargo"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

pub fn cargo_command() -> Command {
    Command::new(cargo_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_flags_as_cargo_spells_them() {
        let options = CargoOptions {
            package: vec!["a".into(), "b".into()],
            features: vec!["x y".into()],
            release: true,
            test_targets: vec!["it".into()],
            manifest_path: Some("w/Cargo.toml".into()),
            locked: true,
            ..Default::default()
        };
        let args: Vec<String> = options
            .to_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--package",
                "a",
                "--package",
                "b",
                "--features",
                "x y",
                "--test",
                "it",
                "--release",
                "--locked",
                "--manifest-path",
                "w/Cargo.toml"
            ]
        );
    }
}
