//! Where the toolchain that built the tests lives on this host.

use std::path::PathBuf;

/// What tests that run the toolchain (insta's `cargo metadata`, rustfmt, `rustc
/// --version`) need to see, each at its own path: `$CARGO`, the rustup home with its
/// settings and toolchains, and of cargo's home the proxies, config and registry cache,
/// but not its credentials.
pub fn paths() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let dir = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
    };
    let mut paths = Vec::new();
    if let Ok(cargo) = std::fs::canonicalize(super::cargo_path())
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
