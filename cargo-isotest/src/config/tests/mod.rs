//! Loading, precedence, overrides and messages, on config texts written in the tests.

mod errors;
mod filters;
mod graph;
mod resolution;

use std::path::Path;

use super::error::Document;
use super::load::{LoadedFile, parse_file};
use super::{Config, ConfigError, Inputs, Layer};

pub const WORKSPACE: &str = "/ws";

/// A config file's text, as the workspace's (`/ws/.config/isotest.toml`) or the user's.
pub fn file(path: &str, text: &str) -> Result<LoadedFile, ConfigError> {
    parse_file(
        Document::new(Path::new(path), text.to_string()),
        Path::new(WORKSPACE),
    )
}

pub fn workspace(text: &str) -> LoadedFile {
    file(".config/isotest.toml", text).unwrap()
}

pub fn user(text: &str) -> LoadedFile {
    file("~/.config/isotest/config.toml", text).unwrap()
}

pub fn inputs(env: &[(&str, &str)], cli: Layer, profile: Option<&str>) -> Inputs {
    Inputs {
        workspace_root: WORKSPACE.into(),
        workspace_config: None,
        cwd: "/cwd".into(),
        user_config: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cli,
        cli_profile: profile.map(String::from),
    }
}

pub fn config(
    files: Vec<LoadedFile>,
    env: &[(&str, &str)],
    profile: Option<&str>,
) -> Result<Config, ConfigError> {
    Config::from_files(files, inputs(env, Layer::default(), profile))
}
