//! An archive is untrusted input: what one of its entries may be before it is written
//! anywhere, and what a relative path in its metadata may be before it is joined to the
//! extraction directory.

use std::fmt;

use cargo_metadata::camino::{Utf8Component, Utf8Path};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryProblem {
    NotUtf8,
    Empty,
    Absolute,
    /// `..`, `.` or a Windows prefix.
    Component(String),
    OutsideTarget,
    /// Symbolic and hard links, devices, FIFOs: none of them belongs in an archive of build
    /// outputs, and a link could point the next entry outside the extraction directory.
    Kind(String),
    Duplicate,
    /// Its directory, checked on disk, is reached through a symbolic link.
    Refused,
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryProblem::NotUtf8 => write!(f, "has a path that is not UTF-8"),
            EntryProblem::Empty => write!(f, "has an empty path"),
            EntryProblem::Absolute => write!(f, "has an absolute path"),
            EntryProblem::Component(c) => write!(f, "has the path component `{c}`"),
            EntryProblem::OutsideTarget => write!(f, "is not under `target/`"),
            EntryProblem::Kind(kind) => write!(
                f,
                "is a {kind}; only regular files and directories are unpacked"
            ),
            EntryProblem::Duplicate => write!(f, "appears twice"),
            EntryProblem::Refused => write!(f, "would be written outside the directory"),
        }
    }
}

/// The entry's path, if it is a plain relative path under `target/`.
pub fn entry_path(bytes: &[u8]) -> Result<&Utf8Path, EntryProblem> {
    let text = std::str::from_utf8(bytes).map_err(|_| EntryProblem::NotUtf8)?;
    // GNU tar writes directories as `dir/`; the trailing slash is no component.
    let path = relative_path(text.strip_suffix('/').unwrap_or(text))?;
    if path.components().next() != Some(Utf8Component::Normal("target")) {
        return Err(EntryProblem::OutsideTarget);
    }
    Ok(path)
}

/// A path made only of normal components, such as the metadata's paths relative to the
/// target directory.
pub fn relative_path(text: &str) -> Result<&Utf8Path, EntryProblem> {
    if text.is_empty() {
        return Err(EntryProblem::Empty);
    }
    if text.starts_with('/') {
        return Err(EntryProblem::Absolute);
    }
    // By the text, not by `Path::components`, which silently drops `.` and `//`.
    for part in text.split('/') {
        if matches!(part, "" | "." | "..") {
            return Err(EntryProblem::Component(part.to_string()));
        }
    }
    Ok(Utf8Path::new(text))
}

/// Whether an entry of this type may be unpacked.
pub fn check_kind(kind: tar::EntryType) -> Result<(), EntryProblem> {
    use tar::EntryType::*;
    match kind {
        // tar-rs packs a file with holes (a linked binary often is) as a GNU sparse file.
        Regular | Continuous | GNUSparse | Directory => Ok(()),
        Symlink => Err(EntryProblem::Kind("symbolic link".into())),
        Link => Err(EntryProblem::Kind("hard link".into())),
        Char | Block => Err(EntryProblem::Kind("device".into())),
        Fifo => Err(EntryProblem::Kind("FIFO".into())),
        other => Err(EntryProblem::Kind(format!("tar entry of type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_under_target_pass() {
        for path in [
            "target/nextest/binaries-metadata.json",
            "target/debug/deps/t-123",
            "target/debug/build/p-1/out/",
            "target/a b/ü",
        ] {
            assert!(entry_path(path.as_bytes()).is_ok(), "{path}");
        }
    }

    #[test]
    fn escaping_and_odd_paths_are_refused() {
        for (path, problem) in [
            ("/etc/passwd", EntryProblem::Absolute),
            (
                "target/../../etc/passwd",
                EntryProblem::Component("..".into()),
            ),
            ("target/./x", EntryProblem::Component(".".into())),
            ("./target/x", EntryProblem::Component(".".into())),
            ("..", EntryProblem::Component("..".into())),
            ("", EntryProblem::Empty),
            ("src/lib.rs", EntryProblem::OutsideTarget),
            ("targetx/a", EntryProblem::OutsideTarget),
            ("target//x", EntryProblem::Component(String::new())),
        ] {
            assert_eq!(entry_path(path.as_bytes()), Err(problem), "{path}");
        }
        assert_eq!(entry_path(b"target/\xff"), Err(EntryProblem::NotUtf8));
        assert_eq!(
            relative_path("debug/../x"),
            Err(EntryProblem::Component("..".into()))
        );
    }

    #[test]
    fn only_files_and_directories_are_unpacked() {
        assert!(check_kind(tar::EntryType::Regular).is_ok());
        assert!(check_kind(tar::EntryType::Directory).is_ok());
        assert!(check_kind(tar::EntryType::GNUSparse).is_ok());
        for kind in [
            tar::EntryType::Symlink,
            tar::EntryType::Link,
            tar::EntryType::Char,
            tar::EntryType::Block,
            tar::EntryType::Fifo,
            tar::EntryType::GNULongName,
        ] {
            assert!(check_kind(kind).is_err(), "{kind:?}");
        }
    }
}
