//! What a program wrote into its writable layers, found on the host after the sandbox has
//! ended: an overlay's upper layer read through the descriptor setup sent us, and a
//! writable bind's directory compared with the snapshot taken before the clone.
//!
//! Everything here reads a tree the sandbox controlled, so no path is ever followed: each
//! component is opened relative to its parent with `O_NOFOLLOW`, and symlinks are read as
//! links, never through.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

/// A layer lists at most this many changes; the rest only sets `truncated`.
pub const MAX_CHANGES: usize = 10_000;
/// A writable bind's snapshot stops after this many entries (and says so).
const MAX_SNAPSHOT: usize = 100_000;
/// Directories nested deeper than this are not walked (and the list says so): the
/// supervisor recurses once per level of a tree the sandbox made.
const MAX_DEPTH: usize = 256;
/// Only user xattrs work in a user namespace; overlayfs then names its own `user.overlay.*`.
const OPAQUE_XATTR: &str = "user.overlay.opaque";

/// The changes in one writable layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writes {
    /// Where the layer is in the sandbox.
    pub path: PathBuf,
    /// The host directory behind it.
    pub source: PathBuf,
    pub layer: Layer,
    /// Sorted by path, which is relative to `path`.
    pub changes: Vec<Change>,
    /// More than [`MAX_CHANGES`] changes (or entries to compare): the list is incomplete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Where the changed files' contents were kept, when asked to keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<PathBuf>,
    /// What could not be read or kept, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// An overlay: the writes were discarded with the sandbox; the host never saw them.
    Overlay,
    /// A writable bind: the writes are on the host.
    Bind,
}

/// One created, changed or deleted entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Relative to the layer's `path`.
    pub path: PathBuf,
    pub change: ChangeKind,
    pub kind: FileKind,
    /// Bytes: the new size, or for a deletion the old one.
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Created,
    Changed,
    Deleted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let change = match self.change {
            ChangeKind::Created => "created",
            ChangeKind::Changed => "changed",
            ChangeKind::Deleted => "deleted",
        };
        let path = self.path.display();
        match self.kind {
            FileKind::Dir => write!(f, "{change:8} {path}/"),
            FileKind::Symlink => write!(f, "{change:8} {path} (symlink)"),
            FileKind::Other => write!(f, "{change:8} {path} (special file)"),
            FileKind::File => write!(f, "{change:8} {path} ({} bytes)", self.size),
        }
    }
}

/// Whether `path` is a relative path of plain names: one that cannot leave the directory
/// it is joined to.
pub(crate) fn is_plain_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.as_os_str().as_bytes().contains(&0)
}

/// What `statat` says, kept small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    kind: FileKind,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    whiteout: bool,
}

fn meta_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Meta, Errno> {
    let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    let kind = match file_type {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    };
    Ok(Meta {
        kind,
        size: stat.st_size as u64,
        mtime: (stat.st_mtime as i64, stat.st_mtime_nsec as i64),
        ctime: (stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        ino: stat.st_ino,
        // overlayfs marks a deleted lower entry with a 0/0 character device.
        whiteout: file_type == FileType::CharacterDevice && stat.st_rdev == 0,
    })
}

/// The names in a directory, sorted, without `.` and `..`.
fn names(dir: BorrowedFd<'_>) -> Result<Vec<OsString>, Errno> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = OsStr::from_bytes(entry?.file_name().to_bytes()).to_os_string();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Opens a subdirectory without following a symlink in its place.
fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens a host directory for reading its tree.
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Collects changes up to [`MAX_CHANGES`], and what went wrong along the way.
#[derive(Default)]
struct Found {
    changes: Vec<Change>,
    truncated: bool,
    errors: Vec<String>,
}

impl Found {
    fn push(&mut self, path: PathBuf, change: ChangeKind, meta: &Meta) {
        if self.changes.len() >= MAX_CHANGES {
            self.truncated = true;
            return;
        }
        self.changes.push(Change {
            path,
            change,
            kind: meta.kind,
            size: if meta.kind == FileKind::Dir {
                0
            } else {
                meta.size
            },
        });
    }

    fn error(&mut self, path: &Path, what: &str, errno: Errno) {
        if self.errors.len() < 20 {
            self.errors
                .push(format!("{}: {what}: {}", path.display(), errno));
        }
    }

    fn into_writes(self, path: &Path, source: &Path, layer: Layer) -> Writes {
        let mut changes = self.changes;
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        Writes {
            path: path.to_path_buf(),
            source: source.to_path_buf(),
            layer,
            changes,
            truncated: self.truncated,
            kept: None,
            errors: self.errors,
        }
    }
}

/// The changes an overlay's upper layer holds over its lower one: entries that are new,
/// replaced, or whited out. A directory that only exists in the upper layer because
/// something inside it changed is not itself a change.
pub(crate) fn overlay_changes(upper: BorrowedFd<'_>, lower: &Path, dst: &Path) -> Writes {
    let mut found = Found::default();
    let lower_fd = open_dir(lower);
    if let Err(errno) = &lower_fd {
        found.error(lower, "open", *errno);
    }
    walk_upper(
        upper,
        lower_fd.as_ref().ok().map(|fd| fd.as_fd()),
        Path::new(""),
        &mut found,
        0,
    );
    found.into_writes(dst, lower, Layer::Overlay)
}

fn walk_upper(
    upper: BorrowedFd<'_>,
    lower: Option<BorrowedFd<'_>>,
    relative: &Path,
    found: &mut Found,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        found.truncated = true;
        return;
    }
    let names = match names(upper) {
        Ok(names) => names,
        Err(errno) => return found.error(relative, "readdir", errno),
    };
    for name in names {
        // A full list is not walked on for nothing.
        if found.truncated {
            return;
        }
        let path = relative.join(&name);
        let meta = match meta_at(upper, &name) {
            Ok(meta) => meta,
            Err(errno) => {
                found.error(&path, "stat", errno);
                continue;
            }
        };
        let below = lower.and_then(|lower| meta_at(lower, &name).ok());
        if meta.whiteout {
            if let Some(below) = below {
                found.push(path, ChangeKind::Deleted, &below);
            }
            continue;
        }
        if meta.kind != FileKind::Dir {
            let change = if below.is_some() {
                ChangeKind::Changed
            } else {
                ChangeKind::Created
            };
            found.push(path, change, &meta);
            continue;
        }
        let dir = match open_dir_at(upper, &name) {
            Ok(dir) => dir,
            Err(errno) => {
                found.error(&path, "open", errno);
                continue;
            }
        };
        let lower_dir = match (lower, below) {
            (Some(lower), Some(below)) if below.kind == FileKind::Dir => {
                open_dir_at(lower, &name).ok()
            }
            _ => None,
        };
        match (below, lower_dir) {
            (Some(_), Some(lower_dir)) if is_opaque(dir.as_fd()) => {
                // Deleted and made again: what was below is gone, what is here is new.
                found.push(path.clone(), ChangeKind::Changed, &meta);
                list_deleted_below(dir.as_fd(), lower_dir.as_fd(), &path, found);
                walk_upper(dir.as_fd(), None, &path, found, depth + 1);
            }
            (Some(_), Some(lower_dir)) => walk_upper(
                dir.as_fd(),
                Some(lower_dir.as_fd()),
                &path,
                found,
                depth + 1,
            ),
            (below, _) => {
                let change = if below.is_some() {
                    ChangeKind::Changed
                } else {
                    ChangeKind::Created
                };
                found.push(path.clone(), change, &meta);
                walk_upper(dir.as_fd(), None, &path, found, depth + 1);
            }
        }
    }
}

fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut value = [0u8; 4];
    matches!(rustix::fs::fgetxattr(dir, OPAQUE_XATTR, &mut value), Ok(n) if value[..n] == *b"y")
}

/// Under an opaque directory, the lower entries that the upper one does not have again.
fn list_deleted_below(
    upper: BorrowedFd<'_>,
    lower: BorrowedFd<'_>,
    relative: &Path,
    found: &mut Found,
) {
    let Ok(lower_names) = names(lower) else {
        return;
    };
    for name in lower_names {
        if meta_at(upper, &name).is_err()
            && let Ok(meta) = meta_at(lower, &name)
        {
            found.push(relative.join(&name), ChangeKind::Deleted, &meta);
        }
    }
}

/// A writable bind's directory before the program ran.
pub(crate) struct Snapshot {
    path: PathBuf,
    source: PathBuf,
    /// The directory as opened before the clone: the walk after the run goes through the
    /// same descriptor, whatever became of the path.
    root: Option<OwnedFd>,
    entries: Entries,
}

/// What a walk of a tree found, by relative path.
#[derive(Default)]
struct Entries {
    metas: BTreeMap<PathBuf, Meta>,
    /// More than [`MAX_SNAPSHOT`] entries, or deeper than [`MAX_DEPTH`]: not all seen.
    truncated: bool,
}

impl Entries {
    /// Walks `dir` without following symlinks (or opening anything but directories).
    fn walk(&mut self, dir: BorrowedFd<'_>, relative: &Path, depth: usize) {
        let Ok(names) = names(dir) else { return };
        for name in names {
            if self.metas.len() >= MAX_SNAPSHOT {
                self.truncated = true;
                return;
            }
            let Ok(meta) = meta_at(dir, &name) else {
                continue;
            };
            let path = relative.join(&name);
            self.metas.insert(path.clone(), meta);
            if meta.kind != FileKind::Dir {
                continue;
            }
            if depth >= MAX_DEPTH {
                self.truncated = true;
            } else if let Ok(sub) = open_dir_at(dir, &name) {
                self.walk(sub.as_fd(), &path, depth + 1);
            }
        }
    }
}

impl Snapshot {
    /// Walks `source` (without following symlinks), which the sandbox sees at `path`.
    pub fn take(source: &Path, path: &Path) -> Snapshot {
        let root = open_dir(source).ok();
        let mut entries = Entries::default();
        if let Some(root) = &root {
            entries.walk(root.as_fd(), Path::new(""), 0);
        }
        Snapshot {
            path: path.to_path_buf(),
            source: source.to_path_buf(),
            root,
            entries,
        }
    }

    /// The directory, as it was opened before the run.
    pub fn tree(&self) -> Option<BorrowedFd<'_>> {
        self.root.as_ref().map(|fd| fd.as_fd())
    }

    /// What differs now: new entries, gone ones (a gone directory stands for everything in
    /// it), and entries whose type, inode, size or timestamps changed. The ctime cannot be
    /// set back by a program, so a rewrite that restores the mtime still shows.
    pub fn changes_since(&self) -> Writes {
        let mut after = Entries::default();
        if let Some(root) = self.tree() {
            after.walk(root, Path::new(""), 0);
        }
        let mut found = Found {
            truncated: self.entries.truncated || after.truncated,
            ..Found::default()
        };
        let before = &self.entries.metas;
        for (path, now) in &after.metas {
            match before.get(path) {
                None => found.push(path.clone(), ChangeKind::Created, now),
                Some(before) if before.kind != now.kind || before.ino != now.ino => {
                    found.push(path.clone(), ChangeKind::Changed, now)
                }
                Some(before)
                    if now.kind != FileKind::Dir
                        && (before.size != now.size
                            || before.mtime != now.mtime
                            || before.ctime != now.ctime) =>
                {
                    found.push(path.clone(), ChangeKind::Changed, now)
                }
                Some(_) => {}
            }
        }
        for (path, was) in before {
            let parent_gone = path
                .parent()
                .is_some_and(|p| !p.as_os_str().is_empty() && !after.metas.contains_key(p));
            if !after.metas.contains_key(path) && !parent_gone {
                found.push(path.clone(), ChangeKind::Deleted, was);
            }
        }
        found.into_writes(&self.path, &self.source, Layer::Bind)
    }
}

/// Where a sandbox's kept writes go: `below` (plain names) inside `base`. The caller
/// chose `base`, which is taken as given (and made if missing); everything below it is
/// made here and never entered through a symlink, since a test with a writable bind of
/// it (the target directory, say) could have planted one for a later sandbox's writes
/// to follow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepWrites {
    pub base: PathBuf,
    pub below: PathBuf,
}

impl KeepWrites {
    /// `dir` itself, which must be new or empty.
    pub fn into_dir(dir: &Path) -> KeepWrites {
        KeepWrites {
            base: dir.to_path_buf(),
            below: PathBuf::new(),
        }
    }

    /// Removes what an earlier run left at `below`, so that it never mixes with this
    /// one's, and with `make` makes it afresh and opens it. The path returned with it is
    /// `base` resolved and `below` (which has no symlink): one that `apply` can then
    /// open without following any.
    pub(crate) fn renew(&self, make: bool) -> Result<Option<(OwnedFd, PathBuf)>, Errno> {
        let names: Vec<&OsStr> = self
            .below
            .components()
            .map(|c| match c {
                Component::Normal(name) => Ok(name),
                _ => Err(Errno::INVAL),
            })
            .collect::<Result<_, _>>()?;
        if make {
            std::fs::create_dir_all(&self.base)
                .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
        }
        let missing = |errno: Errno| errno == Errno::NOENT && !make;
        let mut dir = match open_dir(&self.base) {
            Err(errno) if missing(errno) => return Ok(None),
            other => other?,
        };
        let resolved = std::fs::canonicalize(&self.base)
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?
            .join(&self.below);
        let Some((last, parents)) = names.split_last() else {
            return Ok(make.then_some((dir, resolved)));
        };
        for name in parents {
            if make {
                make_dir_at(dir.as_fd(), name)?;
            }
            dir = match open_dir_at(dir.as_fd(), name) {
                Err(errno) if missing(errno) => return Ok(None),
                other => other?,
            };
        }
        match meta_at(dir.as_fd(), last) {
            Ok(meta) if meta.kind == FileKind::Dir => remove_tree_at(dir.as_fd(), last)?,
            Ok(_) => rustix::fs::unlinkat(&dir, *last, AtFlags::empty())?,
            Err(Errno::NOENT) => {}
            Err(errno) => return Err(errno),
        }
        if !make {
            return Ok(None);
        }
        rustix::fs::mkdirat(&dir, *last, Mode::from_bits_truncate(0o755))?;
        Ok(Some((open_dir_at(dir.as_fd(), last)?, resolved)))
    }
}

/// Copies the created and changed entries of `writes` from `tree` (the layer's files, as
/// a directory descriptor) into a new directory `name` of `into`, which `shown` names.
/// Deletions are in the list only. Symlinks are copied as symlinks; special files are
/// skipped. Nothing is followed on either side: `tree` is the sandbox's, and `into` may
/// be reachable from another sandbox.
pub(crate) fn keep(
    tree: BorrowedFd<'_>,
    writes: &mut Writes,
    into: BorrowedFd<'_>,
    name: &str,
    shown: &Path,
) {
    let made = rustix::fs::mkdirat(into, name, Mode::from_bits_truncate(0o755))
        .and_then(|()| open_dir_at(into, OsStr::new(name)));
    let dir = match made {
        Ok(dir) => dir,
        Err(errno) => {
            writes
                .errors
                .push(format!("{}: cannot create: {errno}", shown.display()));
            return;
        }
    };
    let mut errors = Vec::new();
    for change in &writes.changes {
        if change.change == ChangeKind::Deleted || !is_plain_relative(&change.path) {
            continue;
        }
        if let Err(errno) = keep_one(tree, change, dir.as_fd()) {
            errors.push(format!("{}: not kept: {errno}", change.path.display()));
        }
    }
    writes.errors.extend(errors.into_iter().take(20));
    writes.kept = Some(shown.to_path_buf());
}

fn keep_one(tree: BorrowedFd<'_>, change: &Change, into: BorrowedFd<'_>) -> Result<(), Errno> {
    let name = change.path.file_name().ok_or(Errno::INVAL)?;
    let from = open_parent(tree, &change.path)?;
    let to = make_parents(into, &change.path)?;
    match change.kind {
        FileKind::Dir => {
            make_dir_at(to.as_fd(), name)?;
            open_dir_at(to.as_fd(), name).map(drop)
        }
        FileKind::Symlink => {
            let link = rustix::fs::readlinkat(&from, name, Vec::new())?;
            rustix::fs::symlinkat(link.as_c_str(), &to, name)
        }
        FileKind::File => copy_file_at(from.as_fd(), name, to.as_fd(), name),
        FileKind::Other => Ok(()),
    }
}

/// Makes the directory `name` in `dir` unless something is there: whether that is a
/// directory is for the `open_dir_at` that follows to find out.
fn make_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match rustix::fs::mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(errno) => Err(errno),
    }
}

/// The directory that will hold `path` inside `root`, made one component at a time and
/// entered without following a symlink.
fn make_parents(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    let mut dir = rustix::io::dup(root)?;
    if let Some(parent) = path.parent() {
        for part in parent.components() {
            let Component::Normal(name) = part else {
                return Err(Errno::INVAL);
            };
            make_dir_at(dir.as_fd(), name)?;
            dir = open_dir_at(dir.as_fd(), name)?;
        }
    }
    Ok(dir)
}

/// The directory holding `path` inside `root`, reached one component at a time without
/// following a symlink anywhere.
pub(crate) fn open_parent(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    let mut dir = rustix::io::dup(root)?;
    if let Some(parent) = path.parent() {
        for part in parent.components() {
            let Component::Normal(name) = part else {
                return Err(Errno::INVAL);
            };
            dir = open_dir_at(dir.as_fd(), name)?;
        }
    }
    Ok(dir)
}

/// Applies a layer's kept writes (`kept`, as [`keep`] left them) to the directory `to`:
/// creates and replaces what the program created and changed, and deletes what it
/// deleted. The list is untrusted: only plain relative paths are taken, every component
/// is opened without following a symlink, and a file or link is written beside its
/// target and renamed over it, which replaces a symlink there rather than writing
/// through it. Returns one line per change that could not be applied.
pub fn apply(changes: &[Change], kept: &Path, to: &Path) -> Vec<String> {
    let (kept_root, root) = match (open_kept(kept), open_dir(to)) {
        (Ok(kept), Ok(to)) => (kept, to),
        (Err(Errno::LOOP), _) => {
            return vec![format!(
                "{}: cannot open: a symlink is in the way, which keeping never leaves (one was planted since?)",
                kept.display()
            )];
        }
        (Err(errno), _) => return vec![format!("{}: cannot open: {errno}", kept.display())],
        (_, Err(errno)) => return vec![format!("{}: cannot open: {errno}", to.display())],
    };
    let mut ordered: Vec<&Change> = changes.iter().collect();
    // Parents before children, so that a new directory exists before what goes in it.
    ordered.sort_by(|a, b| a.path.cmp(&b.path));
    ordered
        .into_iter()
        .filter_map(|change| {
            let result = if is_plain_relative(&change.path) {
                apply_one(change, kept_root.as_fd(), root.as_fd())
            } else {
                Err(Errno::INVAL)
            };
            result
                .err()
                .map(|errno| format!("{}: not applied: {errno}", change.path.display()))
        })
        .collect()
}

/// Opens a directory [`keep`] recorded, whose path (resolved when it was made) has no
/// symlink in it: never through one.
fn open_kept(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

fn apply_one(change: &Change, kept: BorrowedFd<'_>, root: BorrowedFd<'_>) -> Result<(), Errno> {
    let name = change.path.file_name().ok_or(Errno::INVAL)?;
    let parent = open_parent(root, &change.path)?;
    let existing = meta_at(parent.as_fd(), name).ok();
    if change.change == ChangeKind::Deleted {
        return match existing {
            Some(meta) if meta.kind == FileKind::Dir => remove_tree_at(parent.as_fd(), name),
            Some(_) => rustix::fs::unlinkat(&parent, name, AtFlags::empty()),
            None => Ok(()),
        };
    }
    if change.kind == FileKind::Dir {
        return match existing {
            Some(meta) if meta.kind == FileKind::Dir => Ok(()),
            Some(_) => Err(Errno::EXIST),
            None => rustix::fs::mkdirat(&parent, name, Mode::from_bits_truncate(0o755)),
        };
    }
    let source_parent = open_parent(kept, &change.path)?;
    let staged = OsString::from(format!(".isotest-apply-{}", std::process::id()));
    let _ = rustix::fs::unlinkat(&parent, &staged, AtFlags::empty());
    match change.kind {
        FileKind::Symlink => {
            let target = rustix::fs::readlinkat(&source_parent, name, Vec::new())?;
            rustix::fs::symlinkat(target.as_c_str(), &parent, &staged)?;
        }
        FileKind::File => copy_file_at(source_parent.as_fd(), name, parent.as_fd(), &staged)?,
        FileKind::Dir | FileKind::Other => return Ok(()),
    }
    rustix::fs::renameat(&parent, &staged, &parent, name).inspect_err(|_| {
        let _ = rustix::fs::unlinkat(&parent, &staged, AtFlags::empty());
    })
}

/// Copies a regular file between two directories, neither name followed if a symlink.
fn copy_file_at(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> Result<(), Errno> {
    let source = rustix::fs::openat(
        from_dir,
        from,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&source)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(Errno::INVAL);
    }
    let mode = if stat.st_mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    let target = rustix::fs::openat(
        to_dir,
        to,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_bits_truncate(mode),
    )?;
    let mut source = std::fs::File::from(source);
    let mut target = std::fs::File::from(target);
    std::io::copy(&mut source, &mut target)
        .map(drop)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

/// `rm -r` of one entry, never leaving the directory through a symlink.
fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let sub = open_dir_at(dir, name)?;
    for entry in names(sub.as_fd())? {
        match meta_at(sub.as_fd(), &entry)?.kind {
            FileKind::Dir => remove_tree_at(sub.as_fd(), &entry)?,
            _ => rustix::fs::unlinkat(&sub, &entry, AtFlags::empty())?,
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, change: ChangeKind, kind: FileKind, size: u64) -> Change {
        Change {
            path: path.into(),
            change,
            kind,
            size,
        }
    }

    #[test]
    fn a_bind_snapshot_sees_created_changed_and_deleted_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("kept"), "same").unwrap();
        std::fs::write(root.join("edited"), "old").unwrap();
        std::fs::write(root.join("removed"), "gone").unwrap();
        std::fs::create_dir_all(root.join("old-dir/inner")).unwrap();
        std::fs::write(root.join("old-dir/inner/file"), "x").unwrap();
        let before = Snapshot::take(root, Path::new("/data"));
        std::fs::write(root.join("edited"), "new!").unwrap();
        std::fs::remove_file(root.join("removed")).unwrap();
        std::fs::remove_dir_all(root.join("old-dir")).unwrap();
        std::fs::create_dir(root.join("new-dir")).unwrap();
        std::fs::write(root.join("new-dir/made"), "12345").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let writes = before.changes_since();
        assert_eq!(writes.layer, Layer::Bind);
        assert_eq!(writes.path, Path::new("/data"));
        assert_eq!(
            writes.changes,
            [
                change("edited", ChangeKind::Changed, FileKind::File, 4),
                change("link", ChangeKind::Created, FileKind::Symlink, 11),
                change("new-dir", ChangeKind::Created, FileKind::Dir, 0),
                change("new-dir/made", ChangeKind::Created, FileKind::File, 5),
                change("old-dir", ChangeKind::Deleted, FileKind::Dir, 0),
                change("removed", ChangeKind::Deleted, FileKind::File, 4),
            ]
        );
    }

    #[test]
    fn kept_files_are_copied_and_symlinks_stay_links() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/file"), "contents").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", tree.join("sub/link")).unwrap();
        nix::unistd::mkfifo(
            &tree.join("sub/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let mut writes = Writes {
            path: "/w".into(),
            source: "/w".into(),
            layer: Layer::Overlay,
            changes: vec![
                change("sub/file", ChangeKind::Created, FileKind::File, 8),
                change("sub/link", ChangeKind::Created, FileKind::Symlink, 11),
                // A link planted where a directory is expected is not followed.
                change("sub/link/x", ChangeKind::Created, FileKind::File, 1),
                // A FIFO where the list says file (swapped since) is never read.
                change("sub/fifo", ChangeKind::Created, FileKind::File, 0),
                change("../escape", ChangeKind::Created, FileKind::File, 1),
            ],
            truncated: false,
            kept: None,
            errors: Vec::new(),
        };
        let root = open_dir(&tree).unwrap();
        let parent = open_dir(dir.path()).unwrap();
        let into = dir.path().join("kept");
        keep(root.as_fd(), &mut writes, parent.as_fd(), "kept", &into);
        assert_eq!(writes.kept.as_deref(), Some(into.as_path()));
        assert_eq!(
            std::fs::read_to_string(into.join("sub/file")).unwrap(),
            "contents"
        );
        assert_eq!(
            std::fs::read_link(into.join("sub/link")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert!(!dir.path().join("escape").exists());
        assert!(!into.join("sub/fifo").exists());
        assert_eq!(writes.errors.len(), 2, "{:?}", writes.errors);
        assert!(
            writes.errors[0].starts_with("sub/link/x") && writes.errors[1].starts_with("sub/fifo"),
            "{:?}",
            writes.errors
        );
    }

    #[test]
    fn keeping_never_follows_a_link_planted_where_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let base = dir.path().join("keep");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(base.join("bin")).unwrap();
        // An earlier test planted a link where a later one's writes go, and one inside
        // the directory an earlier run of the same attempt left.
        std::os::unix::fs::symlink(&outside, base.join("bin/test")).unwrap();
        let keep = |below: &str| KeepWrites {
            base: base.clone(),
            below: below.into(),
        };
        let refused = keep("bin/test/attempt-1").renew(true).unwrap_err();
        assert!(matches!(refused, Errno::LOOP | Errno::NOTDIR), "{refused}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        std::fs::create_dir_all(base.join("bin/other/attempt-1")).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("bin/other/attempt-1/layer-0")).unwrap();
        std::fs::write(outside.join("victim"), "safe").unwrap();
        let (fresh, path) = keep("bin/other/attempt-1").renew(true).unwrap().unwrap();
        assert_eq!(
            path,
            base.canonicalize().unwrap().join("bin/other/attempt-1")
        );
        assert_eq!(
            names(fresh.as_fd()).unwrap().len(),
            0,
            "the old one is gone"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "safe"
        );
        // A link planted inside the fresh directory while it is filled is not followed.
        std::os::unix::fs::symlink(&outside, path.join("layer-0")).unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("victim"), "payload").unwrap();
        let mut writes = Writes {
            path: "/w".into(),
            source: "/w".into(),
            layer: Layer::Bind,
            changes: vec![change("victim", ChangeKind::Changed, FileKind::File, 7)],
            truncated: false,
            kept: None,
            errors: Vec::new(),
        };
        let root = open_dir(tree.path()).unwrap();
        keep_dir(root.as_fd(), &mut writes, fresh.as_fd(), &path);
        assert!(
            writes.errors[0].contains("cannot create"),
            "{:?}",
            writes.errors
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "safe"
        );
        // Without writes to keep, only what an earlier run left goes.
        std::fs::create_dir_all(base.join("bin/third/attempt-2/layer-0")).unwrap();
        assert!(keep("bin/third/attempt-2").renew(false).unwrap().is_none());
        assert!(!base.join("bin/third/attempt-2").exists());
        assert!(base.join("bin/third").exists());
    }

    /// `keep` as the sandbox calls it for its first layer.
    fn keep_dir(tree: BorrowedFd<'_>, writes: &mut Writes, into: BorrowedFd<'_>, path: &Path) {
        keep(tree, writes, into, "layer-0", &path.join("layer-0"));
    }

    #[test]
    fn a_snapshot_reads_no_file_and_stays_on_the_directory_it_opened() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("data");
        std::fs::create_dir_all(&source).unwrap();
        nix::unistd::mkfifo(
            &source.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let before = Snapshot::take(&source, Path::new("/data"));
        // A FIFO nobody writes would hang a reader; a snapshot never opens one.
        std::fs::write(source.join("new"), "x").unwrap();
        // The path now leads elsewhere; the walk after the run does not follow it.
        let moved = dir.path().join("moved");
        std::fs::rename(&source, &moved).unwrap();
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("decoy"), "y").unwrap();
        let writes = before.changes_since();
        assert_eq!(
            writes.changes,
            [change("new", ChangeKind::Created, FileKind::File, 1)]
        );
    }

    #[test]
    fn a_deep_tree_is_walked_to_a_bounded_depth() {
        let dir = tempfile::tempdir().unwrap();
        let root = open_dir(dir.path()).unwrap();
        let before = Snapshot::take(dir.path(), Path::new("/data"));
        let mut here = rustix::io::dup(&root).unwrap();
        for _ in 0..MAX_DEPTH + 10 {
            rustix::fs::mkdirat(&here, "d", Mode::from_bits_truncate(0o755)).unwrap();
            here = open_dir_at(here.as_fd(), OsStr::new("d")).unwrap();
        }
        let writes = before.changes_since();
        assert!(writes.truncated);
        assert_eq!(writes.changes.len(), MAX_DEPTH + 1);
        let overlay = overlay_changes(root.as_fd(), &dir.path().join("none"), Path::new("/w"));
        assert!(overlay.truncated);
        assert!(
            overlay.changes.len() <= MAX_DEPTH + 2,
            "{}",
            overlay.changes.len()
        );
    }

    #[test]
    fn applying_kept_writes_replaces_symlinks_instead_of_following_them() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, checkout, outside) = (
            dir.path().join("kept"),
            dir.path().join("checkout"),
            dir.path().join("outside"),
        );
        for d in [&kept, &checkout, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::create_dir_all(kept.join("new")).unwrap();
        std::fs::write(kept.join("new/file"), "made").unwrap();
        std::fs::write(kept.join("planted"), "payload").unwrap();
        std::fs::write(outside.join("victim"), "safe").unwrap();
        std::fs::write(checkout.join("old"), "bye").unwrap();
        // A symlink in the checkout where the test wrote a file, and one as a directory.
        std::os::unix::fs::symlink(outside.join("victim"), checkout.join("planted")).unwrap();
        std::os::unix::fs::symlink(&outside, checkout.join("via")).unwrap();
        // A kept entry that is a symlink where the list says file is not read through.
        std::os::unix::fs::symlink(outside.join("victim"), kept.join("sneaky")).unwrap();
        let changes = [
            change("new", ChangeKind::Created, FileKind::Dir, 0),
            change("new/file", ChangeKind::Created, FileKind::File, 4),
            change("old", ChangeKind::Deleted, FileKind::File, 3),
            change("planted", ChangeKind::Changed, FileKind::File, 7),
            change("sneaky", ChangeKind::Created, FileKind::File, 4),
            change("via", ChangeKind::Created, FileKind::Dir, 0),
            change("via/victim", ChangeKind::Changed, FileKind::File, 7),
            change("via/made", ChangeKind::Created, FileKind::File, 4),
            change("../outside/victim", ChangeKind::Changed, FileKind::File, 7),
            Change {
                path: outside.join("victim"),
                ..change("absolute", ChangeKind::Deleted, FileKind::File, 0)
            },
        ];
        let errors = apply(&changes, &kept, &checkout);
        assert_eq!(errors.len(), 6, "{errors:?}");
        // A link planted on the way to the kept directory since it was made.
        std::os::unix::fs::symlink(&kept, dir.path().join("kept-link")).unwrap();
        let errors = apply(&changes, &dir.path().join("kept-link"), &checkout);
        assert!(errors[0].contains("symlink"), "{errors:?}");
        assert!(!checkout.join("sneaky").exists());
        assert!(!outside.join("made").exists());
        assert_eq!(
            std::fs::read_to_string(checkout.join("new/file")).unwrap(),
            "made"
        );
        assert!(!checkout.join("old").exists());
        assert!(!checkout.join("planted").is_symlink());
        assert_eq!(
            std::fs::read_to_string(checkout.join("planted")).unwrap(),
            "payload"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "safe"
        );
    }

    #[test]
    fn only_plain_relative_paths_pass() {
        assert!(is_plain_relative(Path::new("a/b.snap.new")));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert!(!is_plain_relative(Path::new(bad)), "{bad}");
        }
    }
}
