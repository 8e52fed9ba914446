//! Putting the layers together: the effective settings of a profile, and of one test in
//! it, each value with what set it.
//!
//! Precedence, highest first: the command line; `ISOTEST_*` variables; the overrides
//! that match the test (for each setting the first match wins; the profile's own
//! overrides, then those of the profiles it inherits from); the profile, then the
//! profiles it inherits from, ending at `default` (in each profile the workspace file
//! before the user file); cargo-isotest's defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{ConfigError, Document};
use super::load::{self, LoadedFile, WORKSPACE_CONFIG};
use super::policies::MaxThreads;
use super::profile::Profile;
use super::settings::{Layer, ProfileTable};
use super::source::{Source, Sourced};

pub const DEFAULT_PROFILE: &str = "default";
/// The group of tests in no custom group, as in nextest.
pub const GLOBAL_GROUP: &str = "@global";

/// What the configuration is read from.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub workspace_root: PathBuf,
    /// What relative paths on the command line and in variables are relative to.
    pub cwd: PathBuf,
    /// `--config-file`: the workspace's config file in place of `.config/isotest.toml`.
    pub workspace_config: Option<PathBuf>,
    /// The user's config file, if there is one to read ([`load::user_config_path`]).
    pub user_config: Option<PathBuf>,
    /// The process's environment (only `ISOTEST_*` is read).
    pub env: Vec<(String, String)>,
    /// The settings given as flags.
    pub cli: Layer,
    /// `--profile`.
    pub cli_profile: Option<String>,
}

impl Inputs {
    /// The inputs of this process: its environment, its directory, the user's file.
    pub fn from_process(workspace_root: &Path, cli: Layer, cli_profile: Option<String>) -> Inputs {
        Inputs {
            workspace_root: workspace_root.to_path_buf(),
            workspace_config: None,
            cwd: std::env::current_dir().unwrap_or_else(|_| workspace_root.to_path_buf()),
            user_config: load::user_config_path(|v| std::env::var_os(v)),
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            cli,
            cli_profile,
        }
    }
}

/// Every layer, read and checked: nothing runs unless this loads.
#[derive(Debug)]
pub struct Config {
    /// The workspace file, then the user file: higher precedence first.
    pub(super) files: Vec<LoadedFile>,
    pub(super) env: Vec<(Layer, Source)>,
    pub(super) cli: Layer,
    pub(super) cwd: PathBuf,
    selected: String,
    pub(super) groups: BTreeMap<String, Sourced<MaxThreads>>,
}

impl Config {
    /// Reads the files and variables of `inputs`.
    pub fn load(inputs: Inputs) -> Result<Config, ConfigError> {
        let root = &inputs.workspace_root;
        let mut files = Vec::new();
        match &inputs.workspace_config {
            // A file named on the command line must exist.
            Some(path) => match load::read_file(path, root)? {
                Some(file) => files.push(file),
                None => {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        source: std::io::ErrorKind::NotFound.into(),
                    });
                }
            },
            None => files.extend(load::read_file(&root.join(WORKSPACE_CONFIG), root)?),
        }
        if let Some(user) = &inputs.user_config {
            files.extend(load::read_file(user, root)?);
        }
        Config::from_files(files, inputs)
    }

    /// Puts parsed files (higher precedence first) together with the other inputs.
    pub fn from_files(files: Vec<LoadedFile>, inputs: Inputs) -> Result<Config, ConfigError> {
        let env = load::env_layers(inputs.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let mut groups = BTreeMap::new();
        for loaded in files.iter().rev() {
            for (name, group) in &loaded.file.test_groups {
                let sourced = Sourced {
                    value: group.max_threads,
                    source: Source::TestGroup {
                        file: loaded.doc.path.clone(),
                        group: name.get_ref().clone(),
                    },
                };
                groups.insert(name.get_ref().clone(), sourced);
            }
        }
        let config = Config {
            files,
            env: env.layers,
            cli: inputs.cli,
            cwd: inputs.cwd,
            selected: inputs
                .cli_profile
                .or(env.profile)
                .unwrap_or_else(|| DEFAULT_PROFILE.to_string()),
            groups,
        };
        config.check_profiles()?;
        config.check_supported()?;
        Ok(config)
    }

    /// Every profile's chain ends at `default`, and every `test-group` names a group.
    fn check_profiles(&self) -> Result<(), ConfigError> {
        for loaded in &self.files {
            for (name, table) in &loaded.file.profile {
                if let Some(parent) = &table.inherits {
                    self.check_inherits(&loaded.doc, name.get_ref(), parent)?;
                }
                let groups = table
                    .test_group
                    .iter()
                    .chain(table.overrides.iter().filter_map(|o| o.test_group.as_ref()));
                for group in groups {
                    self.check_group(&loaded.doc, group)?;
                }
            }
        }
        Ok(())
    }

    /// No layer sets a key this build cannot act on.
    fn check_supported(&self) -> Result<(), ConfigError> {
        let fail = |(key, why): (&'static str, &'static str), place: String| {
            Err(ConfigError::Unsupported {
                key: key.to_string(),
                place,
                why,
            })
        };
        for loaded in &self.files {
            let file = loaded.doc.path.display();
            for (name, table) in &loaded.file.profile {
                let name = name.get_ref();
                if let Some(found) = table.unsupported().into_iter().next() {
                    return fail(found, format!("in {file} [profile.{name}]"));
                }
            }
        }
        for (layer, source) in &self.env {
            if let Some(found) = layer.unsupported().into_iter().next() {
                return fail(found, format!("by {source}"));
            }
        }
        match self.cli.unsupported().into_iter().next() {
            Some(found) => fail(found, "on the command line".into()),
            None => Ok(()),
        }
    }

    /// Every filterset any file writes (overrides' filters and `default-filter`s).
    pub fn expressions(&self) -> Vec<&str> {
        let mut found = Vec::new();
        for loaded in &self.files {
            for table in loaded.file.profile.values() {
                found.extend(table.default_filter.as_ref().map(|f| f.get_ref().as_str()));
                found.extend(table.overrides.iter().map(|o| o.filter.get_ref().as_str()));
            }
        }
        found
    }

    fn check_inherits(
        &self,
        doc: &Document,
        name: &str,
        parent: &Spanned<String>,
    ) -> Result<(), ConfigError> {
        let fail = |message: String, label: &str, help: String| {
            let error = doc.error(parent.span(), message, label.into());
            Err(error.with_help(help).into())
        };
        if name == DEFAULT_PROFILE {
            return fail(
                "the `default` profile cannot inherit".into(),
                "inherits",
                "every other profile inherits from `default`; remove this key".into(),
            );
        }
        let known = self.profile_names();
        if !known.contains(parent.get_ref()) {
            return fail(
                format!(
                    "`{name}` inherits from `{}`, which is no profile",
                    parent.get_ref()
                ),
                "no such profile",
                load::profile_help(parent.get_ref(), &known),
            );
        }
        let mut chain = vec![name.to_string()];
        let mut current = parent.get_ref().clone();
        while current != DEFAULT_PROFILE {
            if chain.contains(&current) {
                chain.push(current);
                return fail(
                    format!("profiles inherit in a cycle: {}", chain.join(" → ")),
                    "cycle",
                    "one profile of the cycle must inherit from `default`, or from none".into(),
                );
            }
            chain.push(current.clone());
            current = self
                .inherits(&current)
                .unwrap_or_else(|| DEFAULT_PROFILE.to_string());
        }
        Ok(())
    }

    fn check_group(&self, doc: &Document, group: &Spanned<String>) -> Result<(), ConfigError> {
        let name = group.get_ref();
        if name == GLOBAL_GROUP || self.groups.contains_key(name) {
            return Ok(());
        }
        let mut known: Vec<String> = self.groups.keys().cloned().collect();
        known.push(GLOBAL_GROUP.into());
        let error = doc.error(
            group.span(),
            format!("there is no test group `{name}`"),
            "no such group".into(),
        );
        Err(error
            .with_help(format!(
                "define it as [test-groups.{name}] with `max-threads`; {}",
                super::error::suggest(name, &known, "groups")
            ))
            .into())
    }

    /// A profile's parent as the highest file that says.
    fn inherits(&self, profile: &str) -> Option<String> {
        self.tables(profile)
            .find_map(|(_, t)| t.inherits.as_ref().map(|p| p.get_ref().clone()))
    }

    /// A profile's tables, higher precedence first.
    pub(super) fn tables(
        &self,
        profile: &str,
    ) -> impl Iterator<Item = (&LoadedFile, &ProfileTable)> {
        let profile = profile.to_string();
        self.files
            .iter()
            .filter_map(move |f| f.file.profile.get(profile.as_str()).map(|t| (f, t)))
    }

    /// Every profile any file defines, and `default`.
    pub fn profile_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .files
            .iter()
            .flat_map(|f| f.file.profile.keys().map(|k| k.get_ref().clone()))
            .chain([DEFAULT_PROFILE.to_string()])
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The `[test-groups]` of every file, the workspace's winning a name.
    pub fn test_groups(&self) -> &BTreeMap<String, Sourced<MaxThreads>> {
        &self.groups
    }

    /// The profile `--profile`, else `ISOTEST_PROFILE`, else `default`.
    pub fn profile(&self) -> Result<Profile<'_>, ConfigError> {
        self.named_profile(&self.selected)
    }

    pub fn named_profile(&self, name: &str) -> Result<Profile<'_>, ConfigError> {
        let known = self.profile_names();
        if !known.iter().any(|k| k == name) {
            return Err(ConfigError::UnknownProfile {
                name: name.to_string(),
                help: format!(
                    "{}; profiles are [profile.NAME] tables in {WORKSPACE_CONFIG} or the user's config",
                    load::profile_help(name, &known)
                ),
            });
        }
        // Checked at load: the chain ends at `default`.
        let mut chain = vec![name.to_string()];
        while let Some(last) = chain.last().filter(|l| *l != DEFAULT_PROFILE) {
            let parent = self
                .inherits(last)
                .unwrap_or_else(|| DEFAULT_PROFILE.to_string());
            chain.push(parent);
        }
        Ok(Profile {
            config: self,
            chain,
        })
    }
}
