//! Archives: build and pack the tests on one machine, run them on others. The format is
//! cargo-nextest's, so `cargo nextest run --archive-file` runs our archives and we run
//! nextest's: a zstd-compressed tar whose every entry is under `target/`:
//!
//! - `target/nextest/binaries-metadata.json`: nextest's binary list (`BinaryListSummary`),
//!   paths as on the building machine;
//! - `target/nextest/cargo-metadata.json`: `cargo metadata --format-version=1` as built;
//! - `target/<path in the target dir>`: the test binaries, the binaries they run
//!   (`CARGO_BIN_EXE_*`), workspace dylibs, build-script `OUT_DIR`s, linked paths and the
//!   configured extra files;
//! - `target/nextest/libdirs/host/` and `target/nextest/libdirs/target/0/`: the toolchain's
//!   `libstd-*.so`, for `-C prefer-dynamic` builds and proc-macro tests;
//! - `target/nextest/isotest-test-lists.json`, isotest's own, last: the test lists of the
//!   libtest binaries, as listed when the archive was made ([`lists`]).
//!
//! The sources are not in it: they come from the checkout on the running machine, given
//! as `--workspace-remap DIR`.

mod binary_list;
mod entry_path;
pub mod lists;
mod pack;
mod unpack;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use binary_list::{Dirs, Platform, binary_list, platforms};
pub use entry_path::relative_path;
pub use pack::{Depth, ExtraPath, OnMissing, PackInput, pack};
#[cfg(test)]
pub use pack::{PackWarning, Packed};
pub use unpack::{Unpacked, unpack};

/// nextest's names; nextest reads an archive by them.
pub const BINARIES_METADATA: &str = "target/nextest/binaries-metadata.json";
pub const CARGO_METADATA: &str = "target/nextest/cargo-metadata.json";
pub const HOST_LIBDIR: &str = "target/nextest/libdirs/host";
/// nextest numbers target platforms for a future with several; today there is one.
pub const TARGET_LIBDIR: &str = "target/nextest/libdirs/target/0";
/// Ours: nextest unpacks it with the rest and never reads it.
pub const TEST_LISTS: &str = "target/nextest/isotest-test-lists.json";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {what} `{}`: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the archive `{}` is not a zstd-compressed tar: {source}", archive.display())]
    Format {
        archive: PathBuf,
        source: std::io::Error,
    },
    #[error("the archive `{}` is unsafe to unpack: entry `{entry}` {problem}", archive.display())]
    UnsafeEntry {
        archive: PathBuf,
        entry: String,
        problem: entry_path::EntryProblem,
    },
    #[error("the archive `{}` has no `{name}`: it was not made by `cargo isotest archive` or `cargo nextest archive`", archive.display())]
    MissingMetadata {
        archive: PathBuf,
        name: &'static str,
    },
    #[error("`{name}` in the archive `{}` cannot be read: {detail}", archive.display())]
    BadMetadata {
        archive: PathBuf,
        name: &'static str,
        detail: String,
    },
    #[error("cannot pack the build: {0}")]
    BadInput(String),
    #[error("the extra file `{}` does not exist (it is listed with on-missing = \"error\")", path.display())]
    ExtraMissing { path: PathBuf },
    #[error("--workspace-remap {}: {problem}", dir.display())]
    WorkspaceRemap { dir: PathBuf, problem: String },
    #[error("cannot unpack into `{}`: {problem}", dir.display())]
    Destination { dir: PathBuf, problem: String },
}

/// `sha256:<hex>` of the archive file, recorded in every report run from it so that
/// `merge` can tell shards of one archive from shards of another.
pub fn digest(archive: &std::path::Path) -> Result<String, ArchiveError> {
    use sha2::Digest;
    let read = |source| ArchiveError::Read {
        what: "the archive",
        path: archive.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(archive).map_err(read)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(read)?;
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}
