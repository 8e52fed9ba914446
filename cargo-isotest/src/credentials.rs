//! File-borne credentials: what a test must not read even though the file it lives in
//! is visible (git's and cargo's configs, the workspace's `.git/config`, which
//! `actions/checkout` fills with an `http.extraheader` token).
//!
//! Configs a test's tools need are replaced by scrubbed copies: `git config user.name`
//! still answers, a token does not. Files that hold nothing but credentials are replaced
//! by an empty file. `--pass-credentials` opts out.

use std::path::{Path, PathBuf};

use isotest_runtime::{Mount, Spec};

/// Files under HOME that hold only credentials.
pub const HOME_SECRETS: &[&str] = &[
    ".git-credentials",
    ".config/git/credentials",
    ".netrc",
    ".docker/config.json",
    ".config/gh/hosts.yml",
    ".npmrc",
    ".pypirc",
    ".aws/credentials",
    ".kube/config",
];

/// Files under CARGO_HOME that hold only credentials.
pub const CARGO_HOME_SECRETS: &[&str] = &["credentials.toml", "credentials"];

/// Git configs: kept, but scrubbed.
pub const HOME_GIT_CONFIGS: &[&str] = &[".gitconfig", ".config/git/config"];

/// Cargo configs: kept, but scrubbed.
pub const CARGO_CONFIGS: &[&str] = &["config.toml", "config"];

/// Where a run's scrubbed copies are kept, under its target directory, so that a
/// replay of its report finds them.
pub fn store(target_dir: &Path) -> PathBuf {
    target_dir.join("isotest/scrubbed")
}

/// What the copies stand in for; the host side of each replacement.
#[derive(Debug, PartialEq, Eq)]
pub struct Replacement {
    /// The path as the sandbox shows it (and the host has it).
    pub original: PathBuf,
    /// The scrubbed content, or empty for a file of credentials only.
    pub content: String,
}

/// Every credential-bearing file the spec makes visible, with what the test sees instead.
pub fn replacements(
    spec: &Spec,
    home: Option<&Path>,
    cargo_home: Option<&Path>,
) -> Vec<Replacement> {
    let mut found = Vec::new();
    let mut consider = |path: PathBuf, scrub: fn(&str) -> String| {
        if !spec.is_visible(&path)
            || !path.is_file()
            || found.iter().any(|r: &Replacement| r.original == path)
        {
            return;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        found.push(Replacement {
            original: path,
            content: scrub(&text),
        });
    };
    let nothing: fn(&str) -> String = |_| String::new();
    if let Some(home) = home {
        for name in HOME_GIT_CONFIGS {
            consider(home.join(name), scrub_git_config);
        }
        for name in HOME_SECRETS {
            consider(home.join(name), nothing);
        }
    }
    if let Some(cargo_home) = cargo_home {
        for name in CARGO_CONFIGS {
            consider(cargo_home.join(name), scrub_cargo_config);
        }
        for name in CARGO_HOME_SECRETS {
            consider(cargo_home.join(name), nothing);
        }
    }
    // Every bound directory's own repository config, the workspace's among them.
    let sources: Vec<PathBuf> = spec
        .mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Bind { src, dst, .. } if src == dst => Some(dst.join(".git/config")),
            _ => None,
        })
        .collect();
    for path in sources {
        consider(path, scrub_git_config);
    }
    found
}

/// Binds each replacement's copy (written to `store`) read-only over its original.
pub fn hide(spec: &mut Spec, store: &Path, replacements: &[Replacement]) {
    for replacement in replacements {
        spec.mounts.push(Mount::Bind {
            src: store.join(copy_name(&replacement.original)),
            dst: replacement.original.clone(),
            writable: false,
        });
    }
}

/// The copy's file name in the store: the original path, flattened.
pub fn copy_name(original: &Path) -> String {
    original
        .to_string_lossy()
        .trim_start_matches('/')
        .replace('/', "%")
}

/// A URL with userinfo (`https://user:token@host/`) carries a credential.
fn has_userinfo(text: &str) -> bool {
    text.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', '"', ' ', '\t']).next().unwrap_or("");
        authority.contains('@')
    })
}

/// A git config without credentials: `[credential]` sections, `extraheader`s, keys
/// naming a token or password, and `insteadOf` rewrites (or any value) whose URL carries
/// userinfo. Everything else, `[user]` included, stays as it was.
pub fn scrub_git_config(text: &str) -> String {
    let mut out = String::new();
    let mut dropping_section = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let header = trimmed.to_ascii_lowercase();
            dropping_section = header.starts_with("[credential") || has_userinfo(trimmed);
            if !dropping_section {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        if dropping_section {
            continue;
        }
        let key = trimmed
            .split(['=', ' ', '\t'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let secret = key == "extraheader"
            || key.contains("token")
            || key.contains("password")
            || key.contains("credential")
            || has_userinfo(trimmed);
        if !secret {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A cargo config without `token`s (registry's and each registry's) or userinfo URLs.
/// Unparsable text is dropped whole: it cannot be scrubbed, and cargo would reject it.
pub fn scrub_cargo_config(text: &str) -> String {
    fn scrub(table: &mut toml::Table) {
        table.retain(|key, value| match value {
            toml::Value::String(s) => {
                key != "token" && !key.ends_with("-token") && !has_userinfo(s)
            }
            _ => true,
        });
        for (_, value) in table.iter_mut() {
            if let toml::Value::Table(inner) = value {
                scrub(inner);
            }
        }
    }
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return String::new();
    };
    scrub(&mut table);
    toml::to_string(&table).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_config_loses_tokens_and_keeps_the_rest() {
        let text = "[user]\n\tname = Ada\n\temail = ada@example.com\n\
            [url \"https://x-access-token:ghs_secret@github.com/\"]\n\tinsteadOf = https://github.com/\n\
            [http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic c2VjcmV0\n\
            [credential]\n\thelper = store\n\
            [remote \"origin\"]\n\turl = https://tok:secret@example.com/r.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n\
            [core]\n\tbare = false\n";
        let scrubbed = scrub_git_config(text);
        for secret in ["ghs_secret", "c2VjcmV0", "helper", "tok:secret"] {
            assert!(!scrubbed.contains(secret), "{secret} in\n{scrubbed}");
        }
        for kept in [
            "name = Ada",
            "[core]",
            "bare = false",
            "fetch =",
            "[remote \"origin\"]",
        ] {
            assert!(scrubbed.contains(kept), "{kept} missing from\n{scrubbed}");
        }
    }

    #[test]
    fn cargo_config_loses_tokens_and_keeps_the_rest() {
        let text = "[registry]\ntoken = \"cio_secret\"\ndefault = \"crates-io\"\n\
            [registries.private]\nindex = \"sparse+https://u:pw@example.com/\"\ntoken = \"priv\"\n\
            [build]\njobs = 2\n";
        let scrubbed = scrub_cargo_config(text);
        assert!(
            !scrubbed.contains("cio_secret")
                && !scrubbed.contains("priv\"")
                && !scrubbed.contains("u:pw"),
            "{scrubbed}"
        );
        assert!(
            scrubbed.contains("jobs = 2") && scrubbed.contains("default = \"crates-io\""),
            "{scrubbed}"
        );
    }

    #[test]
    fn only_visible_files_are_replaced() {
        let home = tempfile::tempdir().unwrap();
        let repo = home.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::write(repo.join(".git/config"), "[http]\nextraheader = x\n").unwrap();
        std::fs::write(home.path().join(".netrc"), "machine m password p").unwrap();
        std::fs::write(home.path().join(".gitconfig"), "[user]\nname = Ada\n").unwrap();
        let mut spec = Spec::new(vec!["true".into()]);
        spec.mounts.push(Mount::Bind {
            src: repo.clone(),
            dst: repo.clone(),
            writable: false,
        });
        let found = replacements(&spec, Some(home.path()), None);
        let originals: Vec<&Path> = found.iter().map(|r| r.original.as_path()).collect();
        assert_eq!(originals, [repo.join(".git/config").as_path()]);
        assert_eq!(found[0].content, "[http]\n");
        spec.mounts.push(Mount::Bind {
            src: home.path().to_path_buf(),
            dst: home.path().to_path_buf(),
            writable: false,
        });
        let found = replacements(&spec, Some(home.path()), None);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .any(|r| r.original.ends_with(".netrc") && r.content.is_empty())
        );
    }
}
