//! Unpacking an archive (ours or nextest's) to run it on another machine, against a
//! checkout that may be at another path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use cargo_metadata::Metadata;
use cargo_metadata::camino::{Utf8Path, Utf8PathBuf};
use nextest_metadata::{BinaryListSummary, PlatformLibdirSummary, PlatformLibdirUnavailable};
use xxhash_rust::xxh64::Xxh64;

use super::entry_path::{EntryProblem, check_kind, entry_path, relative_path};
use super::lists::{self, Fingerprint, TestList};
use super::{
    ArchiveError, BINARIES_METADATA, CARGO_METADATA, HOST_LIBDIR, TARGET_LIBDIR, TEST_LISTS,
};

/// An unpacked archive, its metadata's paths pointing at where things are now: the
/// target directory at `<dir>/target`, the workspace at the remapped checkout.
#[derive(Debug)]
pub struct Unpacked {
    pub dir: Utf8PathBuf,
    pub target_dir: Utf8PathBuf,
    pub workspace_root: Utf8PathBuf,
    /// Where the archive was built.
    pub original_workspace_root: Utf8PathBuf,
    pub original_target_dir: Utf8PathBuf,
    /// Test binaries' paths under `target_dir`; the relative paths (non-test binaries,
    /// build-script out dirs, linked paths) are relative to it; the libdirs are the
    /// unpacked ones.
    pub binary_list: BinaryListSummary,
    /// The workspace root, the workspace's manifests and sources under `workspace_root`,
    /// the target directory `target_dir`.
    pub cargo_metadata: Metadata,
    pub host_libdir: Option<Utf8PathBuf>,
    pub target_libdir: Option<Utf8PathBuf>,
    pub files: usize,
    /// By binary id, the lists the archive recorded for binaries unpacked as they were
    /// listed; the other binaries are to be listed here.
    pub recorded: BTreeMap<String, TestList>,
}

/// Unpacks `archive` into `dest` (made if missing; it must not hold a `target/` yet).
/// With `workspace_remap`, paths under the archive's workspace root are rewritten to it;
/// nothing is ever written there.
pub fn unpack(
    archive: &Path,
    dest: &Path,
    workspace_remap: Option<&Path>,
) -> Result<Unpacked, ArchiveError> {
    let remap = workspace_remap.map(checked_remap).transpose()?;
    let dest_error = |problem: String| ArchiveError::Destination {
        dir: dest.to_path_buf(),
        problem,
    };
    fs::create_dir_all(dest).map_err(|e| dest_error(e.to_string()))?;
    let dir = utf8(fs::canonicalize(dest).map_err(|e| dest_error(e.to_string()))?)
        .map_err(|_| dest_error("its path is not UTF-8".into()))?;
    if dir.join("target").symlink_metadata().is_ok() {
        return Err(dest_error(
            "it already has a `target` directory; unpack into an empty directory".into(),
        ));
    }
    if let Some(remap) = &remap
        && dir.starts_with(remap)
    {
        return Err(dest_error(format!(
            "it is inside the checkout `{remap}`, and unpacking writes nothing there; \
             choose a directory outside it"
        )));
    }

    let extracted = extract(archive, &dir)?;
    let read = |name: &'static str| {
        fs::read_to_string(dir.join(name)).map_err(|source| ArchiveError::Read {
            what: "the unpacked metadata",
            path: dir.join(name).into_std_path_buf(),
            source,
        })
    };
    let bad = |name: &'static str, detail: String| ArchiveError::BadMetadata {
        archive: archive.to_path_buf(),
        name,
        detail,
    };
    let mut recorded = match extracted
        .fingerprints
        .contains_key(Utf8Path::new(TEST_LISTS))
    {
        true => lists::parse(&read(TEST_LISTS)?).map_err(|e| bad(TEST_LISTS, e))?,
        false => None,
    };
    let mut binary_list: BinaryListSummary = serde_json::from_str(&read(BINARIES_METADATA)?)
        .map_err(|e| bad(BINARIES_METADATA, e.to_string()))?;
    let mut cargo_metadata: Metadata = serde_json::from_str(&read(CARGO_METADATA)?)
        .map_err(|e| bad(CARGO_METADATA, e.to_string()))?;

    let target_dir = dir.join("target");
    let mut listed = BTreeMap::new();
    let meta = &mut binary_list.rust_build_meta;
    let original_target_dir = meta.target_directory.clone();
    // Archives have everything of the build directory under `target/` too.
    let original_build_dir = meta
        .build_directory
        .take()
        .unwrap_or_else(|| original_target_dir.clone());
    for binary in binary_list.rust_binaries.values_mut() {
        let rel = binary
            .binary_path
            .strip_prefix(&original_target_dir)
            .or_else(|_| binary.binary_path.strip_prefix(&original_build_dir))
            .ok()
            .filter(|rel| relative_path(rel.as_str()).is_ok())
            .ok_or_else(|| {
                bad(
                    BINARIES_METADATA,
                    format!(
                        "the test binary `{}` is not in the target directory `{original_target_dir}`",
                        binary.binary_path
                    ),
                )
            })?;
        let path = target_dir.join(rel);
        let Some(fingerprint) = extracted
            .fingerprints
            .get(&Utf8Path::new("target").join(rel))
        else {
            return Err(bad(
                BINARIES_METADATA,
                format!("it lists the test binary `target/{rel}`, which is not in the archive"),
            ));
        };
        binary.binary_path = path;
        // A binary unpacked other than it was listed (an archive packed again) is listed.
        if let Some(list) = recorded
            .as_mut()
            .and_then(|lists| lists.binaries.remove(binary.binary_id.as_str()))
            .and_then(|recorded| recorded.list_of(*fingerprint))
        {
            listed.insert(binary.binary_id.to_string(), list);
        }
    }
    let meta = &mut binary_list.rust_build_meta;
    let relatives = meta
        .non_test_binaries
        .values()
        .flatten()
        .map(|b| &b.path)
        .chain(meta.build_script_out_dirs.values())
        .chain(&meta.linked_paths);
    for rel in relatives {
        relative_path(rel.as_str()).map_err(|problem| {
            bad(
                BINARIES_METADATA,
                format!("the path `{rel}`, relative to the target directory, {problem}"),
            )
        })?;
    }
    meta.target_directory = target_dir.clone();
    if let Some(platforms) = &mut meta.platforms {
        platforms.host.libdir = unpacked_libdir(extracted.host.as_ref());
        for target in &mut platforms.targets {
            target.libdir = unpacked_libdir(extracted.target.as_ref());
        }
    }

    let original_workspace_root = cargo_metadata.workspace_root.clone();
    let workspace_root = match remap {
        Some(remap) => remap,
        None if original_workspace_root.is_dir() => original_workspace_root.clone(),
        None => {
            return Err(ArchiveError::WorkspaceRemap {
                dir: original_workspace_root.into_std_path_buf(),
                problem: "the archive was built in this checkout, which is not here; \
                          give the checkout's path with --workspace-remap DIR"
                    .into(),
            });
        }
    };
    remap_metadata(
        &mut cargo_metadata,
        &original_workspace_root,
        &workspace_root,
        &target_dir,
    );
    Ok(Unpacked {
        target_dir,
        workspace_root,
        original_workspace_root,
        original_target_dir,
        binary_list,
        cargo_metadata,
        host_libdir: extracted.host,
        target_libdir: extracted.target,
        files: extracted.files,
        recorded: listed,
        dir,
    })
}

fn checked_remap(dir: &Path) -> Result<Utf8PathBuf, ArchiveError> {
    let error = |problem: String| ArchiveError::WorkspaceRemap {
        dir: dir.to_path_buf(),
        problem,
    };
    let canonical = fs::canonicalize(dir)
        .map_err(|e| error(format!("{e}; it must be the checkout's workspace root")))?;
    if !canonical.is_dir() {
        return Err(error("it is not a directory".into()));
    }
    if !canonical.join("Cargo.toml").is_file() {
        return Err(error(
            "it has no Cargo.toml; give the workspace root of the checkout the archive was built from".into(),
        ));
    }
    utf8(canonical).map_err(|_| error("its path is not UTF-8".into()))
}

fn utf8(path: PathBuf) -> Result<Utf8PathBuf, PathBuf> {
    Utf8PathBuf::from_path_buf(path)
}

fn unpacked_libdir(libdir: Option<&Utf8PathBuf>) -> PlatformLibdirSummary {
    match libdir {
        Some(path) => PlatformLibdirSummary::Available { path: path.clone() },
        None => PlatformLibdirSummary::Unavailable {
            reason: PlatformLibdirUnavailable::NOT_IN_ARCHIVE,
        },
    }
}

/// Moves the workspace's paths to the checkout and the target directory to the unpacked
/// one; packages outside the workspace (the registry's, git's) keep their paths.
fn remap_metadata(metadata: &mut Metadata, from: &Utf8Path, to: &Utf8Path, target: &Utf8Path) {
    let moved = |path: &mut Utf8PathBuf| {
        if let Ok(rel) = path.strip_prefix(from) {
            *path = to.join(rel);
        }
    };
    moved(&mut metadata.workspace_root);
    for package in &mut metadata.packages {
        moved(&mut package.manifest_path);
        for target in &mut package.targets {
            moved(&mut target.src_path);
        }
    }
    metadata.target_directory = target.to_path_buf();
    metadata.build_directory = Some(target.to_path_buf());
}

struct Extracted {
    host: Option<Utf8PathBuf>,
    target: Option<Utf8PathBuf>,
    files: usize,
    /// Every regular file's size and hash, by its entry path.
    fingerprints: BTreeMap<Utf8PathBuf, Fingerprint>,
}

/// Writes every entry under `dir`, after checking it: regular files and directories only,
/// plain relative paths under `target/`, each once.
fn extract(archive: &Path, dir: &Utf8Path) -> Result<Extracted, ArchiveError> {
    let file = fs::File::open(archive).map_err(|source| ArchiveError::Read {
        what: "the archive",
        path: archive.to_path_buf(),
        source,
    })?;
    let format = |source| ArchiveError::Format {
        archive: archive.to_path_buf(),
        source,
    };
    let decoder = zstd::Decoder::new(BufReader::new(file)).map_err(format)?;
    std::thread::scope(|scope| {
        let ahead = ReadAhead::start(scope, decoder);
        extract_entries(archive, dir, ahead)
    })
}

/// The entries of the tar stream `stream` written under `dir`, each checked first.
fn extract_entries(
    archive: &Path,
    dir: &Utf8Path,
    stream: impl Read,
) -> Result<Extracted, ArchiveError> {
    let format = |source| ArchiveError::Format {
        archive: archive.to_path_buf(),
        source,
    };
    let mut tar = tar::Archive::new(stream);
    let mut seen = BTreeSet::new();
    let mut extracted = Extracted {
        host: None,
        target: None,
        files: 0,
        fingerprints: BTreeMap::new(),
    };
    let mut buffer = vec![0; WRITE_CHUNK];
    for entry in tar.entries().map_err(format)? {
        let mut entry = entry.map_err(format)?;
        let unsafe_entry = |entry: String, problem| ArchiveError::UnsafeEntry {
            archive: archive.to_path_buf(),
            entry,
            problem,
        };
        let bytes = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        let path = entry_path(&bytes).map_err(|p| unsafe_entry(shown.clone(), p))?;
        let kind = entry.header().entry_type();
        check_kind(kind).map_err(|p| unsafe_entry(shown.clone(), p))?;
        if !seen.insert(path.to_path_buf()) {
            return Err(unsafe_entry(shown, EntryProblem::Duplicate));
        }
        let dst = dir.join(path);
        let write = |source| ArchiveError::Write {
            path: dst.clone().into_std_path_buf(),
            source,
        };
        let mode = entry.header().mode().map_err(format)? & 0o777;
        let mtime = entry.header().mtime().map_err(format)?;
        if kind.is_dir() {
            if !checked_dir(&dst).map_err(write)? {
                return Err(unsafe_entry(shown, EntryProblem::Refused));
            }
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).map_err(write)?;
        } else {
            let parent = dst.parent().unwrap_or(dir);
            if !checked_dir(parent).map_err(write)? {
                return Err(unsafe_entry(shown, EntryProblem::Refused));
            }
            let fingerprint =
                write_file(&mut entry, &dst, mode, mtime, &mut buffer).map_err(|e| match e {
                    Copy::Read(source) => format(source),
                    Copy::Write(source) => write(source),
                })?;
            extracted
                .fingerprints
                .insert(path.to_path_buf(), fingerprint);
            extracted.files += 1;
        }
        if path.starts_with(HOST_LIBDIR) {
            extracted.host = Some(dir.join(HOST_LIBDIR));
        } else if path.starts_with(TARGET_LIBDIR) {
            extracted.target = Some(dir.join(TARGET_LIBDIR));
        }
    }
    for name in [BINARIES_METADATA, CARGO_METADATA] {
        if !seen.contains(Utf8Path::new(name)) {
            return Err(ArchiveError::MissingMetadata {
                archive: archive.to_path_buf(),
                name,
            });
        }
    }
    Ok(extracted)
}

/// Big writes: with tar-rs's 8 KiB copies, unpacking took a third longer.
const WRITE_CHUNK: usize = 1 << 20;

/// How many decoded chunks may wait for the writer, besides the one it reads.
const CHUNKS_AHEAD: usize = 4;

/// A stream decoded on a thread of its own, a few chunks ahead of its reader: decoding
/// and writing the files each take about half of unpacking, and took turns on one CPU.
/// Chunks go back to the decoder once read, so that no new memory is faulted in for each.
struct ReadAhead {
    chunks: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    spent: std::sync::mpsc::SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl ReadAhead {
    fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        mut source: impl Read + Send + 'scope,
    ) -> ReadAhead {
        let (send, chunks) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
        let (spent, returned) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHUNKS_AHEAD + 2);
        scope.spawn(move || {
            loop {
                let mut chunk = returned.try_recv().unwrap_or_default();
                chunk.resize(WRITE_CHUNK, 0);
                let filled = match fill(&mut source, &mut chunk) {
                    Ok(filled) => filled,
                    Err(e) => {
                        let _ = send.send(Err(e));
                        return;
                    }
                };
                chunk.truncate(filled);
                // The reader is gone (an entry was refused) or the stream has ended.
                if send.send(Ok(chunk)).is_err() || filled == 0 {
                    return;
                }
            }
        });
        ReadAhead {
            chunks,
            spent,
            current: Vec::new(),
            at: 0,
        }
    }
}

/// Reads into all of `chunk` unless the stream ends first; how much it read.
fn fill(source: &mut impl Read, chunk: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < chunk.len() {
        match source.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.current.len() {
            let next = match self.chunks.recv() {
                Ok(chunk) => chunk?,
                // The decoder sent the empty chunk of the stream's end, and stopped.
                Err(_) => return Ok(0),
            };
            let spent = std::mem::replace(&mut self.current, next);
            let _ = self.spent.try_send(spent);
            self.at = 0;
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Makes `path` (under the extraction directory) a directory, and says whether it is one
/// reached without a symbolic link: everything below that directory was made here, so
/// anything else means another process put a link in the way.
fn checked_dir(path: &Utf8Path) -> std::io::Result<bool> {
    fs::create_dir_all(path)?;
    Ok(fs::canonicalize(path)? == path.as_std_path())
}

enum Copy {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Writes a new file (never one already there) with the entry's mode and time, and
/// returns what it holds.
fn write_file(
    entry: &mut impl Read,
    dst: &Utf8Path,
    mode: u32,
    mtime: u64,
    buffer: &mut [u8],
) -> Result<Fingerprint, Copy> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dst)
        .map_err(Copy::Write)?;
    let mut hasher = Xxh64::new(0);
    let mut size = 0;
    loop {
        let read = match entry.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read]).map_err(Copy::Write)?;
        size += read as u64;
    }
    // As tar-rs unpacks: the mode whatever the umask, for the sandbox's other ids.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(Copy::Write)?;
    file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
        .map_err(Copy::Write)?;
    Ok(Fingerprint {
        size,
        xxh64: hasher.digest(),
    })
}
