//! Packing a build into an archive nextest can run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use cargo_metadata::camino::{Utf8Path, Utf8PathBuf};
use nextest_metadata::{BinaryListSummary, PlatformLibdirSummary};

use super::entry_path::relative_path;
use super::lists::{self, Fingerprint, Recorded, TestList, TestLists};
use super::{
    ArchiveError, BINARIES_METADATA, CARGO_METADATA, HOST_LIBDIR, TARGET_LIBDIR, TEST_LISTS,
};

/// A file or directory of the target directory to pack as well (nextest's
/// `archive.include` with `relative-to = "target"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraPath {
    /// Relative to the target directory; packed at the same place under `target/`.
    pub path: Utf8PathBuf,
    pub depth: Depth,
    pub on_missing: OnMissing,
}

/// How deep into a directory to go: `Finite(1)` takes the files directly in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    Finite(u32),
    Infinite,
}

impl Depth {
    fn deeper(self) -> Option<Depth> {
        match self {
            Depth::Finite(0) => None,
            Depth::Finite(n) => Some(Depth::Finite(n - 1)),
            Depth::Infinite => Some(Depth::Infinite),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnMissing {
    Warn,
    Ignore,
    Error,
}

pub struct PackInput<'a> {
    /// As `binary_list` made it, or as `cargo nextest list --list-type binaries-only
    /// --message-format json` prints it.
    pub binary_list: &'a BinaryListSummary,
    /// `cargo metadata --format-version=1` with dependencies (not `--no-deps`): nextest
    /// builds its package graph from it.
    pub cargo_metadata_json: &'a str,
    pub extra: &'a [ExtraPath],
    /// zstd's level: 0 is its default (3), 19 the smallest.
    pub zstd_level: i32,
}

#[derive(Debug, Default)]
pub struct Packed {
    pub files: usize,
    pub warnings: Vec<PackWarning>,
}

/// What packing left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackWarning {
    /// A build script asked to link from a directory that does not exist.
    LinkedPathMissing(PathBuf),
    ExtraMissing(PathBuf),
    /// No `libstd-*.so` in the libdir: a `-C prefer-dynamic` test will not start.
    NoStdlib {
        libdir: PathBuf,
        error: String,
    },
    /// A directory below the depth to pack, or a symbolic link to one (not followed, as
    /// it could loop).
    DirectorySkipped(PathBuf),
    /// A socket, FIFO, device or a link to nothing: nothing to pack.
    SpecialFileSkipped(PathBuf),
}

impl fmt::Display for PackWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackWarning::LinkedPathMissing(p) => write!(
                f,
                "a build script's link-search path `{}` does not exist; not packed",
                p.display()
            ),
            PackWarning::ExtraMissing(p) => {
                write!(
                    f,
                    "the extra path `{}` does not exist; not packed",
                    p.display()
                )
            }
            PackWarning::NoStdlib { libdir, error } => write!(
                f,
                "no standard library packed from `{}` ({error}): tests built with -C prefer-dynamic will not start from the archive",
                libdir.display()
            ),
            PackWarning::DirectorySkipped(p) => write!(
                f,
                "`{}` is beyond the depth to pack (or a link to a directory); not packed",
                p.display()
            ),
            PackWarning::SpecialFileSkipped(p) => {
                write!(f, "`{}` is not a regular file; not packed", p.display())
            }
        }
    }
}

/// Deterministic headers keep one build's archive byte for byte the same, for CI caches;
/// the time is tar-rs's deterministic one, so files from memory and disk agree.
const MTIME: u64 = 1_153_704_088;

/// The largest window (128 MiB) that decoders accept without being told to: zstd's
/// `ZSTD_WINDOWLOG_LIMIT_DEFAULT`, which nextest's decoder keeps.
const WINDOW_LOG: u32 = 27;

/// Writes the archive into `sink`, which the caller opened for `output` (the name its
/// errors give) and puts in place once [`Packing::finish`] returns it.
pub fn pack<'o, W: Write>(
    input: &PackInput<'_>,
    output: &'o Path,
    sink: W,
) -> Result<Packing<'o, W>, ArchiveError> {
    let summary = archive_summary(input.binary_list)?;
    check_metadata(input.cargo_metadata_json)?;
    let write_error = |source| ArchiveError::Write {
        path: output.to_path_buf(),
        source,
    };
    let mut encoder =
        zstd::Encoder::new(BufWriter::new(sink), input.zstd_level).map_err(write_error)?;
    encoder.include_checksum(true).map_err(write_error)?;
    // Test binaries repeat each other (std, the dependencies, their debug info) further
    // apart than level 3's window sees: matching across them makes the archive a third
    // of the size and faster to unpack. Every zstd decoder accepts this window by default.
    encoder.long_distance_matching(true).map_err(write_error)?;
    encoder.window_log(WINDOW_LOG).map_err(write_error)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    encoder.multithread(threads).map_err(write_error)?;
    let mut packer = Packer {
        builder: tar::Builder::new(encoder),
        added: BTreeSet::new(),
        packed: Packed::default(),
        output,
    };
    packer.builder.mode(tar::HeaderMode::Deterministic);
    // The binary list first: a reader knows what is coming before the big files.
    let binaries_json = serde_json::to_string_pretty(&summary)
        .map_err(|e| ArchiveError::BadInput(format!("cannot write the binary list: {e}")))?;
    packer.memory_file(BINARIES_METADATA, binaries_json.as_bytes())?;
    packer.memory_file(CARGO_METADATA, input.cargo_metadata_json.as_bytes())?;

    let meta = &input.binary_list.rust_build_meta;
    let target_dir = meta.target_directory.as_std_path();
    let build_dir = meta
        .build_directory
        .as_deref()
        .unwrap_or(&meta.target_directory)
        .as_std_path();
    let mut binaries = BTreeMap::new();
    for binary in input.binary_list.rust_binaries.values() {
        let rel = in_dir(&binary.binary_path, build_dir)?;
        let path = binary.binary_path.as_std_path();
        packer.file(path, &target_entry(rel))?;
        let fingerprint = fingerprint(path).map_err(|e| read_error(path, e))?;
        binaries.insert(binary.binary_id.to_string(), fingerprint);
    }
    for binary in meta.non_test_binaries.values().flatten() {
        let rel = checked_relative(&binary.path)?;
        packer.file(&target_dir.join(rel), &target_entry(rel))?;
    }
    for out_dir in meta.build_script_out_dirs.values() {
        let rel = checked_relative(out_dir)?;
        // All of OUT_DIR, where nextest takes one level: a test may read a generated
        // tree, and nextest unpacks whatever is under `target/`.
        packer.tree(&build_dir.join(rel), &target_entry(rel), Depth::Infinite)?;
    }
    for linked in &meta.linked_paths {
        let rel = checked_relative(linked)?;
        let source = build_dir.join(rel);
        if !source.exists() {
            packer.warn(PackWarning::LinkedPathMissing(source));
            continue;
        }
        // The dynamic loader does not search subdirectories.
        packer.tree(&source, &target_entry(rel), Depth::Finite(1))?;
    }
    for extra in input.extra {
        let rel = checked_relative(&extra.path)?;
        let source = target_dir.join(rel);
        if fs::symlink_metadata(&source).is_err() {
            match extra.on_missing {
                OnMissing::Error => return Err(ArchiveError::ExtraMissing { path: source }),
                OnMissing::Warn => packer.warn(PackWarning::ExtraMissing(source)),
                OnMissing::Ignore => {}
            }
            continue;
        }
        packer.tree(&source, &target_entry(rel), extra.depth)?;
    }
    let libdirs = [(meta_host_libdir(input.binary_list), HOST_LIBDIR)]
        .into_iter()
        .chain(
            meta.platforms
                .iter()
                .flat_map(|p| p.targets.first())
                .map(|t| (available(&t.libdir), TARGET_LIBDIR)),
        );
    for (libdir, entry_dir) in libdirs {
        let Some(libdir) = libdir else { continue };
        match find_std(libdir.as_std_path()) {
            Ok(std) => {
                let name = std
                    .file_name()
                    .expect("a file in the libdir")
                    .to_string_lossy();
                packer.file(&std, &format!("{entry_dir}/{name}"))?;
            }
            Err(error) => packer.warn(PackWarning::NoStdlib {
                libdir: libdir.into_std_path_buf(),
                error: error.to_string(),
            }),
        }
    }

    Ok(Packing { packer, binaries })
}

/// An archive with everything but the test lists, which may still be being listed.
pub struct Packing<'o, W: Write> {
    packer: Packer<'o, zstd::Encoder<'static, BufWriter<W>>>,
    /// The test binaries as packed, by binary id.
    binaries: BTreeMap<String, Fingerprint>,
}

impl<W: Write> Packing<'_, W> {
    /// Records `lists` (by binary id) and ends the archive.
    pub fn finish(self, lists: BTreeMap<String, TestList>) -> Result<(Packed, W), ArchiveError> {
        let Packing {
            mut packer,
            binaries,
        } = self;
        let output = packer.output;
        let write_error = |source| ArchiveError::Write {
            path: output.to_path_buf(),
            source,
        };
        let recorded: BTreeMap<String, Recorded> = lists
            .into_iter()
            .filter_map(|(id, list)| {
                let binary = *binaries.get(&id)?;
                Some((id, Recorded::new(list, binary)))
            })
            .collect();
        // Last, as only isotest reads it.
        if !recorded.is_empty() {
            let lists = TestLists {
                format: lists::FORMAT,
                binaries: recorded,
            };
            let json = serde_json::to_string_pretty(&lists)
                .map_err(|e| ArchiveError::BadInput(format!("cannot write the test lists: {e}")))?;
            packer.memory_file(TEST_LISTS, json.as_bytes())?;
        }
        let Packer {
            builder, packed, ..
        } = packer;
        let encoder = builder.into_inner().map_err(write_error)?;
        let sink = encoder
            .finish()
            .map_err(write_error)?
            .into_inner()
            .map_err(|e| write_error(e.into_error()))?;
        Ok((packed, sink))
    }
}

/// The binary list as nextest stores it: no separate build directory (everything is
/// under `target/` in the archive), test binaries' paths moved to the target directory.
fn archive_summary(list: &BinaryListSummary) -> Result<BinaryListSummary, ArchiveError> {
    let mut summary = list.clone();
    let meta = &list.rust_build_meta;
    let build_dir = meta
        .build_directory
        .as_ref()
        .unwrap_or(&meta.target_directory);
    for binary in summary.rust_binaries.values_mut() {
        let rel = in_dir(&binary.binary_path, build_dir.as_std_path())?;
        binary.binary_path = meta.target_directory.join(rel);
    }
    summary.rust_build_meta.build_directory = None;
    Ok(summary)
}

fn check_metadata(json: &str) -> Result<(), ArchiveError> {
    let metadata: cargo_metadata::Metadata = serde_json::from_str(json)
        .map_err(|e| ArchiveError::BadInput(format!("the cargo metadata is not valid: {e}")))?;
    if metadata.resolve.is_none() {
        return Err(ArchiveError::BadInput(
            "the cargo metadata has no dependency graph (it was made with --no-deps); \
             nextest needs it to run the archive"
                .into(),
        ));
    }
    Ok(())
}

fn meta_host_libdir(list: &BinaryListSummary) -> Option<Utf8PathBuf> {
    list.rust_build_meta
        .platforms
        .as_ref()
        .and_then(|p| available(&p.host.libdir))
}

fn available(libdir: &PlatformLibdirSummary) -> Option<Utf8PathBuf> {
    match libdir {
        PlatformLibdirSummary::Available { path } => Some(path.clone()),
        PlatformLibdirSummary::Unavailable { .. } => None,
    }
}

fn in_dir<'p>(path: &'p Utf8Path, dir: &Path) -> Result<&'p Utf8Path, ArchiveError> {
    path.strip_prefix(dir)
        .ok()
        .filter(|rel| relative_path(rel.as_str()).is_ok())
        .ok_or_else(|| {
            ArchiveError::BadInput(format!(
                "the test binary `{path}` is not in the build directory `{}`",
                dir.display()
            ))
        })
}

fn checked_relative(path: &Utf8Path) -> Result<&Utf8Path, ArchiveError> {
    relative_path(path.as_str()).map_err(|problem| {
        ArchiveError::BadInput(format!(
            "the binary list's path `{path}`, relative to the target directory, {problem}"
        ))
    })
}

fn target_entry(rel: &Utf8Path) -> String {
    format!("target/{rel}")
}

/// What a run from the archive checks a recorded list's binary against.
fn fingerprint(path: &Path) -> io::Result<Fingerprint> {
    use io::Read;
    let mut file = fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                hasher.update(&buffer[..read]);
                size += read as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Fingerprint {
        size,
        xxh64: hasher.digest(),
    })
}

/// `libstd-<hash>.so`: the one library of the toolchain that tests load at run time.
fn find_std(libdir: &Path) -> io::Result<PathBuf> {
    for entry in fs::read_dir(libdir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("libstd-") && name.ends_with(".so") {
            return Ok(entry.path());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no libstd-*.so in it",
    ))
}

struct Packer<'o, W: Write> {
    builder: tar::Builder<W>,
    /// An entry is packed once, whichever list names it first.
    added: BTreeSet<String>,
    packed: Packed,
    output: &'o Path,
}

impl<W: Write> Packer<'_, W> {
    fn warn(&mut self, warning: PackWarning) {
        self.packed.warnings.push(warning);
    }

    fn memory_file(&mut self, name: &str, contents: &[u8]) -> Result<(), ArchiveError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mtime(MTIME);
        header.set_mode(0o644);
        header.set_cksum();
        self.builder
            .append_data(&mut header, name, contents)
            .map_err(|source| ArchiveError::Write {
                path: self.output.to_path_buf(),
                source,
            })?;
        self.added.insert(name.to_string());
        self.packed.files += 1;
        Ok(())
    }

    /// A regular file (a symbolic link is packed as the file it points to).
    fn file(&mut self, source: &Path, entry: &str) -> Result<(), ArchiveError> {
        if !self.added.insert(entry.to_string()) {
            return Ok(());
        }
        // tar-rs names the file it failed to read only in some errors.
        let mut file = fs::File::open(source).map_err(|e| read_error(source, e))?;
        self.builder
            .append_file(entry, &mut file)
            .map_err(|e| read_error(source, e))?;
        self.packed.files += 1;
        Ok(())
    }

    /// A file, or a directory's files down to `depth` levels.
    fn tree(&mut self, source: &Path, entry: &str, depth: Depth) -> Result<(), ArchiveError> {
        // An explicit stack: a deep tree cannot overflow ours.
        let mut stack = vec![(source.to_path_buf(), entry.to_string(), depth)];
        while let Some((source, entry, depth)) = stack.pop() {
            let is_link = fs::symlink_metadata(&source)
                .map_err(|e| read_error(&source, e))?
                .is_symlink();
            let metadata = match fs::metadata(&source) {
                Ok(metadata) => metadata,
                // A link to nothing.
                Err(_) if is_link => {
                    self.warn(PackWarning::SpecialFileSkipped(source));
                    continue;
                }
                Err(e) => return Err(read_error(&source, e)),
            };
            if metadata.is_file() {
                self.file(&source, &entry)?;
            } else if metadata.is_dir() && !is_link {
                let Some(deeper) = depth.deeper() else {
                    self.warn(PackWarning::DirectorySkipped(source));
                    continue;
                };
                let mut children: Vec<_> = fs::read_dir(&source)
                    .and_then(|dir| dir.collect::<io::Result<Vec<_>>>())
                    .map_err(|e| read_error(&source, e))?;
                // Sorted, for the same archive from the same build.
                children.sort_by_key(|c| std::cmp::Reverse(c.file_name()));
                for child in children {
                    let name = child.file_name();
                    let Some(name) = name.to_str() else {
                        return Err(ArchiveError::BadInput(format!(
                            "`{}` has a name that is not UTF-8, which nextest's archives cannot hold",
                            child.path().display()
                        )));
                    };
                    stack.push((child.path(), format!("{entry}/{name}"), deeper));
                }
            } else if metadata.is_dir() {
                self.warn(PackWarning::DirectorySkipped(source));
            } else {
                self.warn(PackWarning::SpecialFileSkipped(source));
            }
        }
        Ok(())
    }
}

fn read_error(path: &Path, source: io::Error) -> ArchiveError {
    ArchiveError::Read {
        what: "the build output",
        path: path.to_path_buf(),
        source,
    }
}
