//! Paths beneath the sandbox's new root, created and opened without ever following a
//! symlink: a writable bind lets a test plant links that a later mount point would
//! otherwise follow onto the host.
//!
//! Every component is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, and
//! made first with `mkdirat` (which never follows a link) only where it is missing, so a
//! link anywhere on the way is an `ELOOP` naming that link, and mounts land on the
//! descriptor that was checked.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::{SetupError, Step};
use crate::sys::errno;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// The root being assembled, as a descriptor every path is resolved from.
pub(crate) struct Beneath {
    root: OwnedFd,
}

/// What a mount point is made as when missing.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Dir,
    File,
}

impl Beneath {
    /// `root` is the host path of the new root (a fresh tmpfs, so it holds no link yet).
    pub fn open(root: &Path) -> Result<Beneath, SetupError> {
        rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(|root| Beneath { root })
        .map_err(|e| SetupError::new(Step::RootTmpfs, "open", Some(root), errno(e)))
    }

    /// Makes `path` (absolute, as the sandbox will see it) a mount point of `kind`,
    /// parents included, and returns a descriptor of it to mount onto.
    pub fn mount_point(&self, path: &Path, kind: Kind) -> Result<OwnedFd, SetupError> {
        let (parent, name) = self.parent(path)?;
        match kind {
            Kind::Dir => self.enter(parent.as_fd(), name, path, true),
            Kind::File => {
                make_file(parent.as_fd(), name, path)?;
                self.enter(parent.as_fd(), name, path, false)
            }
        }
    }

    /// Creates the symlink `path` → `target`, its parents made beneath the root; a
    /// failure is one of `step`.
    pub fn symlink(&self, path: &Path, target: &Path, step: Step) -> Result<(), SetupError> {
        let (parent, name) = self.parent(path)?;
        rustix::fs::symlinkat(target, parent.as_fd(), name)
            .map_err(|e| SetupError::new(step, "symlinkat", Some(path), errno(e)))
    }

    /// Creates the empty file `path` with `mode` unless something is there already (a
    /// link is never followed); a failure is one of `step`.
    pub fn empty_file(&self, path: &Path, mode: u32, step: Step) -> Result<(), SetupError> {
        let (parent, name) = self.parent(path)?;
        create_file(parent.as_fd(), name, mode)
            .map_err(|e| SetupError::new(step, "openat", Some(path), e))
    }

    /// Makes the new directory `path`, which must not exist yet, and returns it to mount
    /// onto; a failure is one of `step`.
    pub fn new_dir(&self, path: &Path, step: Step) -> Result<OwnedFd, SetupError> {
        let (parent, name) = self.parent(path)?;
        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| SetupError::new(step, "mkdirat", Some(path), errno(e)))?;
        self.enter(parent.as_fd(), name, path, false)
    }

    /// Opens the directory `path` as it is now, mounts included, never through a symlink.
    pub fn dir(&self, path: &Path) -> Result<OwnedFd, SetupError> {
        let (parent, name) = self.parent(path)?;
        self.enter(parent.as_fd(), name, path, false)
    }

    /// The directory holding `path`, made and opened component by component, and the
    /// last component's name.
    fn parent<'p>(&self, path: &'p Path) -> Result<(OwnedFd, &'p OsStr), SetupError> {
        let names: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect();
        let Some((last, dirs)) = names.split_last() else {
            return Err(SetupError::new(
                Step::Mountpoint,
                "openat2",
                Some(path),
                Errno::EINVAL,
            ));
        };
        // openat2 refuses a link anywhere on a path as well as at its end, so a parent
        // that exists is opened in one call; the walk below makes missing components and
        // names the link that an ELOOP met.
        if !dirs.is_empty() {
            let relative: PathBuf = dirs.iter().collect();
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            if let Ok(dir) =
                rustix::fs::openat2(&self.root, &relative, flags, Mode::empty(), RESOLVE)
            {
                return Ok((dir, last));
            }
        }
        let mut seen = PathBuf::from("/");
        let mut dir = rustix::io::fcntl_dupfd_cloexec(&self.root, 0)
            .map_err(|e| SetupError::new(Step::Mountpoint, "dup", Some(path), errno(e)))?;
        for name in dirs {
            seen.push(name);
            dir = self.enter(dir.as_fd(), name, &seen, true)?;
        }
        Ok((dir, last))
    }

    /// Opens `name` in `dir` (making it first when a directory is wanted), refusing links.
    fn enter(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        shown: &Path,
        make_dir: bool,
    ) -> Result<OwnedFd, SetupError> {
        let fail = |syscall, e| SetupError::new(Step::Mountpoint, syscall, Some(shown), e);
        let mut flags = OFlags::PATH | OFlags::CLOEXEC;
        if make_dir {
            flags |= OFlags::DIRECTORY;
        }
        let open = || rustix::fs::openat2(dir, name, flags, Mode::empty(), RESOLVE);
        // Most components exist already (a parent of several mount points, a directory
        // of a bind): opened first, made only when missing.
        match open() {
            Err(rustix::io::Errno::NOENT) if make_dir => {}
            opened => return opened.map_err(|e| fail("openat2", errno(e))),
        }
        // mkdirat never follows a link; one made meanwhile is opened like any other.
        match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(fail("mkdirat", errno(e))),
        }
        open().map_err(|e| fail("openat2", errno(e)))
    }
}

/// An empty file to bind a file onto; an existing one (but not a link) is reused.
fn make_file(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<(), SetupError> {
    create_file(dir, name, 0o644)
        .map_err(|e| SetupError::new(Step::Mountpoint, "openat", Some(shown), e))
}

/// A new empty file at `name`; whatever is there already is left as it is (`O_EXCL` never
/// follows a link, so a planted one is not written through).
fn create_file(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<(), Errno> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode)) {
        Ok(_) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(errno(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Beneath) {
        let dir = tempfile::tempdir().unwrap();
        let beneath = Beneath::open(dir.path()).unwrap();
        (dir, beneath)
    }

    #[test]
    fn makes_parents_and_the_mount_point() {
        let (dir, beneath) = root();
        beneath.mount_point(Path::new("/a/b/c"), Kind::Dir).unwrap();
        beneath
            .mount_point(Path::new("/a/f/file"), Kind::File)
            .unwrap();
        assert!(dir.path().join("a/b/c").is_dir());
        assert!(dir.path().join("a/f/file").is_file());
        // Existing ones are reused.
        beneath.mount_point(Path::new("/a/b/c"), Kind::Dir).unwrap();
    }

    #[test]
    fn a_planted_link_is_an_error_naming_it_and_nothing_is_made_outside() {
        let (dir, beneath) = root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("s/link")).unwrap();
        for kind in [Kind::Dir, Kind::File] {
            let error = beneath
                .mount_point(Path::new("/s/link/planted"), kind)
                .unwrap_err();
            assert_eq!(error.crossed_symlink(), Some(Path::new("/s/link")));
        }
        // The link itself as the last component is refused too.
        let error = beneath
            .mount_point(Path::new("/s/link"), Kind::File)
            .unwrap_err();
        assert_eq!(error.crossed_symlink(), Some(Path::new("/s/link")));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn placeholders_and_opened_dirs_never_follow_a_link() {
        let (dir, beneath) = root();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dev")).unwrap();
        let error = beneath
            .empty_file(Path::new("/dev/sda"), 0o000, Step::Dev)
            .unwrap_err();
        assert_eq!(error.errno(), Errno::ELOOP);
        assert!(beneath.dir(Path::new("/dev")).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        beneath
            .empty_file(Path::new("/real/sda"), 0o000, Step::Dev)
            .unwrap();
        let meta = std::fs::metadata(dir.path().join("real/sda")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0
        );
        beneath.dir(Path::new("/real")).unwrap();
    }

    #[test]
    fn an_absolute_link_cannot_escape_either() {
        let (dir, beneath) = root();
        std::os::unix::fs::symlink("/", dir.path().join("up")).unwrap();
        let error = beneath
            .mount_point(Path::new("/up/tmp/x"), Kind::Dir)
            .unwrap_err();
        assert_eq!(error.crossed_symlink(), Some(Path::new("/up")));
    }
}
