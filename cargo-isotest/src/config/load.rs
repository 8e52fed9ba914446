//! Finding and reading the layers: the workspace's `.config/isotest.toml`, the user's
//! `config.toml`, and `ISOTEST_*` variables. Each file is checked on its own here; what
//! spans files (inheritance, test groups) is checked when they are put together.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Document, suggest};
use super::settings::{ConfigFile, Layer, run_keys, test_keys};
use super::source::Source;

/// The workspace's config file, relative to the workspace root (nextest's is
/// `.config/nextest.toml`).
pub const WORKSPACE_CONFIG: &str = ".config/isotest.toml";
/// The `schema-version` this build reads.
pub const SCHEMA_VERSION: i64 = 1;
/// The variable that picks a profile, as `--profile` does.
pub const PROFILE_VAR: &str = "ISOTEST_PROFILE";
const ENV_PREFIX: &str = "ISOTEST_";
/// Variables isotest sets inside the sandboxes it runs whose names would read as a
/// setting: a `cargo isotest` started inside one must not take them for the user's.
const SANDBOX_VARS: &[&str] = &[crate::chaos::ENV];

/// One config file, parsed and checked on its own.
#[derive(Clone, Debug)]
pub struct LoadedFile {
    pub doc: Document,
    pub file: ConfigFile,
    /// What relative paths in the file are relative to: the workspace root.
    pub base: PathBuf,
}

/// The user's config file: `$XDG_CONFIG_HOME/isotest/config.toml`, else
/// `$HOME/.config/isotest/config.toml`.
pub fn user_config_path(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let non_empty = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let config_home = non_empty("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| non_empty("HOME").map(|home| home.join(".config")))?;
    Some(config_home.join("isotest").join("config.toml"))
}

/// Reads and checks a config file; a file that does not exist is no layer.
pub fn read_file(path: &Path, base: &Path) -> Result<Option<LoadedFile>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_file(Document::new(path, text), base).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses a config file's text and checks what it can alone: its schema version, and
/// the names of its profiles and test groups.
pub fn parse_file(doc: Document, base: &Path) -> Result<LoadedFile, ConfigError> {
    let file: ConfigFile = toml::from_str(&doc.text).map_err(|e| doc.toml_error(&e))?;
    if let Some(version) = &file.schema_version {
        check_version(&doc, version)?;
    }
    for name in file.profile.keys() {
        check_name(&doc, name, "profile")?;
    }
    for name in file.test_groups.keys() {
        check_name(&doc, name, "test group")?;
    }
    Ok(LoadedFile {
        doc,
        file,
        base: base.to_path_buf(),
    })
}

fn check_version(doc: &Document, version: &toml::Spanned<i64>) -> Result<(), ConfigError> {
    let v = *version.get_ref();
    let (message, help) = if v > SCHEMA_VERSION {
        (
            format!("this file is written for config schema version {v}"),
            format!(
                "this cargo-isotest ({}) reads version {SCHEMA_VERSION}: upgrade cargo-isotest, or write the file for version {SCHEMA_VERSION}",
                env!("CARGO_PKG_VERSION")
            ),
        )
    } else if v < 1 {
        (
            format!("there is no config schema version {v}"),
            format!("versions start at 1; this cargo-isotest reads version {SCHEMA_VERSION}"),
        )
    } else {
        return Ok(());
    };
    Err(doc
        .error(version.span(), message, "schema version".into())
        .with_help(help)
        .into())
}

/// Profile and group names are what nextest allows: letters, digits, `-` and `_`.
fn check_name(doc: &Document, name: &toml::Spanned<String>, what: &str) -> Result<(), ConfigError> {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        return Ok(());
    }
    Err(doc
        .error(
            name.span(),
            format!("`{text}` is not a valid {what} name"),
            "name".into(),
        )
        .with_help("use letters, digits, `-` and `_`")
        .into())
}

/// What the environment says: a layer per `ISOTEST_*` setting, and a profile.
#[derive(Debug, Default)]
pub struct EnvLayers {
    pub layers: Vec<(Layer, Source)>,
    /// `ISOTEST_PROFILE`.
    pub profile: Option<String>,
}

/// The `ISOTEST_*` layers, one per variable, and the profile `ISOTEST_PROFILE` picks.
/// `ISOTEST_SLOW_TIMEOUT` sets `slow-timeout`; a value is read as a TOML value (`3`,
/// `true`, `["A", "B"]`, `{ period = "30s" }`), else as a string. Variables that name
/// no setting (`ISOTEST_BINARY_ID`, which isotest sets inside sandboxes) are not settings,
/// nor is `ISOTEST_CHAOS`, which isotest sets inside sandboxes too.
pub fn env_layers<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<EnvLayers, ConfigError> {
    let keys: Vec<String> = test_keys().into_iter().chain(run_keys()).collect();
    let mut layers = Vec::new();
    let mut profile = None;
    for (var, value) in vars {
        if var == PROFILE_VAR {
            profile = Some(value.to_string()).filter(|p| !p.is_empty());
            continue;
        }
        if SANDBOX_VARS.contains(&var) {
            continue;
        }
        let Some(key) = var
            .strip_prefix(ENV_PREFIX)
            .map(|k| k.to_ascii_lowercase().replace('_', "-"))
            .filter(|k| keys.contains(k))
        else {
            continue;
        };
        let layer = env_value(&key, value).map_err(|message| ConfigError::Env {
            var: var.to_string(),
            value: value.to_string(),
            message,
            help: format!(
                "{var} sets `{key}` as a config file does: see `cargo isotest show-config` and the book's configuration reference"
            ),
        })?;
        layers.push((
            layer,
            Source::Env {
                var: var.to_string(),
            },
        ));
    }
    Ok(EnvLayers { layers, profile })
}

fn env_value(key: &str, value: &str) -> Result<Layer, String> {
    let as_toml = toml::from_str::<Layer>(&format!("{key} = {value}"));
    as_toml.or_else(|first| {
        // A value that is not TOML is a string, or a list of that one string; report
        // the error that makes more sense.
        let text = toml::Value::String(value.to_string());
        let with = |value: toml::Value| {
            let mut table = toml::Table::new();
            table.insert(key.to_string(), value);
            toml::Value::Table(table).try_into::<Layer>()
        };
        let as_string =
            with(text.clone()).or_else(|e| with(toml::Value::Array(vec![text])).map_err(|_| e));
        as_string.map_err(|second| {
            if value.trim_start().starts_with(['[', '{']) {
                first.message().to_string()
            } else {
                second.message().to_string()
            }
        })
    })
}

/// For an unknown profile: the profiles there are, and the nearest.
pub fn profile_help(name: &str, known: &[String]) -> String {
    suggest(name, known, "profiles")
}
