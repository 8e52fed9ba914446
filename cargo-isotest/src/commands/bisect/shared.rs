//! The state tests share through writable binds: copied aside before bisecting, put back
//! before every trial (so that each starts from what the failing run started from) and
//! at the end, and compared with the copy to name what a culprit wrote.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub struct SharedState {
    /// Each shared directory and its copy.
    dirs: Vec<(PathBuf, PathBuf)>,
    _copies: Option<tempfile::TempDir>,
}

impl SharedState {
    /// Copies every directory of `paths` aside; files and missing paths are left as they are.
    pub fn snapshot(paths: &[PathBuf]) -> anyhow::Result<SharedState> {
        let dirs: Vec<&PathBuf> = paths.iter().filter(|p| p.is_dir()).collect();
        if dirs.is_empty() {
            return Ok(SharedState {
                dirs: Vec::new(),
                _copies: None,
            });
        }
        let copies = tempfile::Builder::new()
            .prefix("isotest-bisect")
            .tempdir()
            .context("cannot create a directory for the copies of the shared state")?;
        let mut pairs = Vec::new();
        for (i, dir) in dirs.into_iter().enumerate() {
            let copy = copies.path().join(i.to_string());
            copy_tree(dir, &copy)?;
            pairs.push((dir.clone(), copy));
        }
        Ok(SharedState {
            dirs: pairs,
            _copies: Some(copies),
        })
    }

    /// Puts every shared directory back as it was when bisect started.
    pub fn restore(&self) -> anyhow::Result<()> {
        for (dir, copy) in &self.dirs {
            for entry in std::fs::read_dir(dir)
                .with_context(|| format!("cannot read the shared directory {}", dir.display()))?
            {
                let path = entry?.path();
                let removed = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.with_context(|| format!("cannot reset {}", path.display()))?;
            }
            copy_tree(copy, dir)?;
        }
        Ok(())
    }

    /// Files in the shared directories that differ from the copy: new or changed.
    pub fn changes(&self) -> Vec<PathBuf> {
        let mut changed = Vec::new();
        for (dir, copy) in &self.dirs {
            for path in files(dir) {
                let relative = path.strip_prefix(dir).expect("under its directory");
                let before = std::fs::read(copy.join(relative)).ok();
                if before != std::fs::read(&path).ok() {
                    changed.push(path);
                }
            }
        }
        changed.sort();
        changed
    }

    /// What to check when the target fails even alone.
    pub fn hint(&self) -> String {
        if self.dirs.is_empty() {
            return String::new();
        }
        let dirs: Vec<String> = self
            .dirs
            .iter()
            .map(|(d, _)| d.display().to_string())
            .collect();
        format!(
            " as the shared directories are now; if an earlier run left something in {}, \
             clean it and bisect again",
            dirs.join(", ")
        )
    }
}

/// `cp -a SRC/. DST`: contents, modes, times and symlinks as they are.
fn copy_tree(src: &Path, dst: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(src.join("."))
        .arg(dst)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!(
            "cp -a {} {} failed ({status})",
            src.display(),
            dst.display()
        );
    }
    Ok(())
}

/// Every regular file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => files(&path),
                Ok(t) if t.is_file() => vec![path],
                _ => Vec::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_starts_from_the_snapshot_and_changes_name_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir_all(shared.join("sub")).unwrap();
        std::fs::write(shared.join("kept"), "a").unwrap();
        let state = SharedState::snapshot(std::slice::from_ref(&shared)).unwrap();
        std::fs::write(shared.join("sub/new"), "b").unwrap();
        std::fs::write(shared.join("kept"), "changed").unwrap();
        assert_eq!(
            state.changes(),
            [shared.join("kept"), shared.join("sub/new")]
        );
        state.restore().unwrap();
        assert_eq!(state.changes(), Vec::<PathBuf>::new());
        assert_eq!(std::fs::read_to_string(shared.join("kept")).unwrap(), "a");
        assert!(!shared.join("sub/new").exists());
        assert!(state.hint().contains("clean it"));
    }
}
