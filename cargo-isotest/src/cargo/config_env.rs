//! The `[env]` table of cargo's configuration files, which `cargo test` applies to tests.
//!
//! Files are read the way cargo finds them: `.cargo/config.toml` (or `.cargo/config`) in
//! the current directory and each parent, then `$CARGO_HOME/config.toml`; the deeper file
//! wins a key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read cargo config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cargo config {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("cargo config {path}: `env.{key}` must be a string or a table with a string `value`")]
    Shape { path: PathBuf, key: String },
}

/// One `[env]` entry, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEnv {
    pub key: String,
    pub value: String,
    /// Overrides a variable the environment already has.
    pub force: bool,
}

pub fn read(cwd: &Path) -> Result<Vec<ConfigEnv>, ConfigError> {
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(home) = cargo_home() {
        files.push(home.join("config.toml"));
    }
    let ancestors: Vec<&Path> = cwd.ancestors().collect();
    for dir in ancestors.into_iter().rev() {
        let dot_cargo = dir.join(".cargo");
        let toml = dot_cargo.join("config.toml");
        files.push(if toml.exists() {
            toml
        } else {
            dot_cargo.join("config")
        });
    }
    let mut merged: BTreeMap<String, ConfigEnv> = BTreeMap::new();
    for path in files.iter().filter(|p| p.is_file()) {
        for entry in read_file(path)? {
            merged.insert(entry.key.clone(), entry);
        }
    }
    Ok(merged.into_values().collect())
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
}

fn read_file(path: &Path) -> Result<Vec<ConfigEnv>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let Some(env) = table.get("env").and_then(|e| e.as_table()) else {
        return Ok(Vec::new());
    };
    // `relative = true` values are relative to the directory holding `.cargo/`.
    let base = path
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"));
    env.iter()
        .map(|(key, value)| {
            let shape = || ConfigError::Shape {
                path: path.to_path_buf(),
                key: key.clone(),
            };
            let (value, force, relative) = match value {
                toml::Value::String(s) => (s.clone(), false, false),
                toml::Value::Table(t) => {
                    let value = t.get("value").and_then(|v| v.as_str()).ok_or_else(shape)?;
                    let flag = |name| t.get(name).and_then(|v| v.as_bool()).unwrap_or(false);
                    (value.to_string(), flag("force"), flag("relative"))
                }
                _ => return Err(shape()),
            };
            let value = if relative {
                base.join(value).display().to_string()
            } else {
                value
            };
            Ok(ConfigEnv {
                key: key.clone(),
                value,
                force,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeper_config_wins_and_relative_values_resolve() {
        let root = tempfile::tempdir().unwrap();
        let inner = root.path().join("ws/member");
        std::fs::create_dir_all(inner.join(".cargo")).unwrap();
        std::fs::create_dir_all(root.path().join(".cargo")).unwrap();
        std::fs::write(
            root.path().join(".cargo/config.toml"),
            "[env]\nA = \"outer\"\nB = \"outer\"\n",
        )
        .unwrap();
        std::fs::write(
            inner.join(".cargo/config.toml"),
            "[env]\nA = \"inner\"\nC = { value = \"data\", relative = true, force = true }\n",
        )
        .unwrap();
        let env = read(&inner).unwrap();
        let get = |k: &str| env.iter().find(|e| e.key == k).cloned().unwrap();
        assert_eq!(get("A").value, "inner");
        assert_eq!(get("B").value, "outer");
        assert_eq!(get("C").value, inner.join("data").display().to_string());
        assert!(get("C").force);
    }

    #[test]
    fn a_broken_config_names_the_file() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(".cargo")).unwrap();
        std::fs::write(root.path().join(".cargo/config.toml"), "[env]\nA = [1]\n").unwrap();
        let err = read(root.path()).unwrap_err().to_string();
        assert!(
            err.contains("config.toml") && err.contains("env.A"),
            "{err}"
        );
    }
}
