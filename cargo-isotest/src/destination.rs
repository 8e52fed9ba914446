//! Writing a file where the user asked (a report, a merged report, an archive, the
//! libtest-json stream), without destroying what is there.
//!
//! A FIFO, a character device or a descriptor alias such as `/dev/stdout` is written into
//! in place; a regular file is replaced atomically (a temporary file renamed onto it) and
//! gets the mode the umask gives; the runner's own directory is never entered through a
//! symlink, since a test with `--bind-rw` of the target directory could plant one.

use std::fs::File;
use std::io::Write;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Why a file cannot go where it was asked to, with what to do instead.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to {}: {reason}; {fix}", .path.display())]
pub struct DestinationError {
    pub path: PathBuf,
    pub reason: String,
    pub fix: &'static str,
}

const CHOOSE: &str = "choose a file in a directory you can write, or a FIFO";

fn error(path: &Path, reason: impl Into<String>, fix: &'static str) -> DestinationError {
    DestinationError {
        path: path.to_path_buf(),
        reason: reason.into(),
        fix,
    }
}

fn errno_error(path: &Path, action: &str, errno: Errno) -> DestinationError {
    let fix = match errno {
        Errno::ENOENT => "create the directory first, or choose another path",
        Errno::EACCES | Errno::EPERM | Errno::EROFS => CHOOSE,
        Errno::ELOOP => "a symlink is in the way: remove it (a test may have planted it)",
        _ => CHOOSE,
    };
    error(path, format!("{action}: {}", errno.desc()), fix)
}

fn io_error(path: &Path, action: &str, e: &std::io::Error) -> DestinationError {
    errno_error(
        path,
        action,
        Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    )
}

/// Where a file goes: a path the user gave, the runner's own place beneath the target
/// directory (which a test may have tampered with), or this process's stdout.
#[derive(Clone, Debug)]
pub enum Destination {
    Given(PathBuf),
    Own { base: PathBuf, relative: PathBuf },
    Stdout,
}

impl Destination {
    /// The runner's own report, `<target dir>/isotest/last-run.json`.
    pub fn own_report(target_dir: &Path) -> Destination {
        Destination::Own {
            base: target_dir.to_path_buf(),
            relative: PathBuf::from("isotest/last-run.json"),
        }
    }

    /// A path the user chose for a run's file (a flag's or a configuration's). Inside the
    /// target directory it is entered beneath it without following a symlink, as the
    /// runner's own report is: a test with a writable bind of the target directory could
    /// have planted one on the way. Elsewhere it is taken as given.
    pub fn chosen(path: &Path, target_dir: &Path) -> Destination {
        match below(path, target_dir) {
            Some(relative) if relative.file_name().is_some() => Destination::Own {
                base: target_dir.to_path_buf(),
                relative,
            },
            _ => Destination::Given(path.to_path_buf()),
        }
    }

    pub fn path(&self) -> PathBuf {
        match self {
            Destination::Given(path) => path.clone(),
            Destination::Own { base, relative } => base.join(relative),
            Destination::Stdout => PathBuf::from("/dev/stdout"),
        }
    }

    /// Checks before the work that the file will be writable, so that a bad path fails
    /// before the tests run (or the archive is packed) rather than after.
    pub fn check(&self) -> Result<(), DestinationError> {
        match self {
            Destination::Given(path) => check(path),
            Destination::Own { base, relative } => open_beneath(base, relative).map(drop),
            Destination::Stdout => Ok(()),
        }
    }

    /// Writes `bytes` as the whole file.
    pub fn write(&self, bytes: &[u8]) -> Result<(), DestinationError> {
        let mut sink = self.open()?;
        sink.write_all(bytes)
            .map_err(|e| io_error(&sink.shown, "write", &e))?;
        sink.finish()
    }

    /// Opens the destination for writing in pieces (a stream of events, an archive). A
    /// replaced file appears only at [`Sink::finish`]; a sink dropped before leaves the
    /// old file as it was.
    pub fn open(&self) -> Result<Sink, DestinationError> {
        let shown = self.path();
        let target = match self {
            Destination::Given(path) => target(path)?,
            Destination::Own { base, relative } => {
                let dir = open_beneath(base, relative)?;
                let name = relative
                    .file_name()
                    .ok_or_else(|| error(&shown, "it has no file name", CHOOSE))?;
                return Sink::replacing(shown.clone(), dir, Path::new(name));
            }
            Destination::Stdout => Target::Descriptor(libc::STDOUT_FILENO),
        };
        match target {
            Target::Descriptor(fd) => Ok(Sink {
                shown,
                to: To::Descriptor(fd),
            }),
            Target::Stream(stream) => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&stream)
                    .map_err(|e| io_error(&shown, "open", &e))?;
                Ok(Sink {
                    shown,
                    to: To::Stream(file),
                })
            }
            Target::Replace(file) => {
                let dir = nix::fcntl::open(
                    parent(&file),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| errno_error(&shown, "open its directory", e))?;
                let name = file
                    .file_name()
                    .ok_or_else(|| error(&shown, "it has no file name", CHOOSE))?;
                Sink::replacing(shown.clone(), dir, Path::new(name))
            }
        }
    }
}

/// A destination open for writing.
pub struct Sink {
    /// The path as the user knows it, for messages.
    shown: PathBuf,
    to: To,
}

enum To {
    /// One of our own descriptors, written as it is.
    Descriptor(i32),
    /// A FIFO, device or socket, opened in place.
    Stream(File),
    /// A temporary file beside `name` in `dir`, renamed onto it at the end.
    Replace {
        dir: OwnedFd,
        name: PathBuf,
        tmp: PathBuf,
        file: Option<File>,
    },
}

impl Sink {
    /// A temporary file beside `name`, created with the umask's mode. The rename at the end
    /// replaces whatever `name` is, a planted symlink included, never its target.
    fn replacing(shown: PathBuf, dir: OwnedFd, name: &Path) -> Result<Sink, DestinationError> {
        let tmp = PathBuf::from(format!(
            ".{}.{}.{}.tmp",
            name.display(),
            std::process::id(),
            fastrand::u32(..)
        ));
        let file: OwnedFd = nix::fcntl::openat(
            &dir,
            &tmp,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )
        .map_err(|e| errno_error(&shown, "create a temporary file beside it", e))?;
        Ok(Sink {
            shown,
            to: To::Replace {
                dir,
                name: name.to_path_buf(),
                tmp,
                file: Some(File::from(file)),
            },
        })
    }

    /// Ends the file: a replaced one takes its place now.
    pub fn finish(mut self) -> Result<(), DestinationError> {
        let To::Replace {
            dir,
            name,
            tmp,
            file,
        } = &mut self.to
        else {
            return Ok(());
        };
        drop(file.take());
        let renamed = nix::fcntl::renameat(&*dir, tmp.as_path(), &*dir, name.as_path())
            .map_err(|e| errno_error(&self.shown, "write", e));
        if renamed.is_err() {
            let _ = nix::unistd::unlinkat(
                &*dir,
                tmp.as_path(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        renamed
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match &mut self.to {
            To::Descriptor(fd) => {
                // SAFETY: the descriptor is one of ours that the caller named (or stdout);
                // it is only written to here and stays open for the process's life.
                let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
                loop {
                    match nix::unistd::write(fd, bytes) {
                        Err(Errno::EINTR) => continue,
                        result => return result.map_err(std::io::Error::from),
                    }
                }
            }
            To::Stream(file) => file.write(bytes),
            To::Replace { file, .. } => file.as_mut().expect("not finished").write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Sink {
    /// A replacement never finished leaves no temporary file behind.
    fn drop(&mut self) {
        if let To::Replace {
            dir,
            tmp,
            file: Some(_),
            ..
        } = &self.to
        {
            let _ =
                nix::unistd::unlinkat(dir, tmp.as_path(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// How a file reaches its path.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// One of our own descriptors, named as `/dev/stdout`, `/dev/fd/N` or `/proc/self/fd/N`.
    Descriptor(i32),
    /// Something that is not a file to replace: opened and written in place.
    Stream(PathBuf),
    /// A regular file (or none yet) at this path, replaced atomically.
    Replace(PathBuf),
}

fn target(path: &Path) -> Result<Target, DestinationError> {
    if let Some(fd) = descriptor_alias(path) {
        return Ok(Target::Descriptor(fd));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(error(
            path,
            "it is a directory",
            "give a file name inside it, such as DIR/report.json",
        )),
        Ok(meta) if meta.is_file() => Ok(Target::Replace(
            // Through a symlink to a file, that file is the one replaced, not the link.
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        )),
        Ok(meta)
            if meta.file_type().is_fifo()
                || meta.file_type().is_char_device()
                || meta.file_type().is_socket() =>
        {
            Ok(Target::Stream(path.to_path_buf()))
        }
        Ok(_) => Err(error(
            path,
            "it is not a file, FIFO or character device",
            CHOOSE,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Target::Replace(path.to_path_buf()))
        }
        Err(e) => Err(io_error(path, "cannot look at it", &e)),
    }
}

/// `/dev/stdout` and friends: following the links by hand, since the last one is a magic
/// link whose target (`pipe:[…]`) is no path at all.
fn descriptor_alias(path: &Path) -> Option<i32> {
    let mut current = path.to_path_buf();
    for _ in 0..8 {
        let text = current.to_str()?;
        for prefix in ["/proc/self/fd/", "/dev/fd/", "/proc/thread-self/fd/"] {
            if let Some(fd) = text.strip_prefix(prefix).and_then(|n| n.parse().ok()) {
                return Some(fd);
            }
        }
        let own = format!("/proc/{}/fd/", std::process::id());
        if let Some(fd) = text.strip_prefix(own.as_str()).and_then(|n| n.parse().ok()) {
            return Some(fd);
        }
        let link = std::fs::read_link(&current).ok()?;
        current = match current.parent() {
            Some(parent) if link.is_relative() => parent.join(link),
            _ => link,
        };
    }
    None
}

fn check(path: &Path) -> Result<(), DestinationError> {
    match target(path)? {
        Target::Descriptor(_) | Target::Stream(_) => Ok(()),
        Target::Replace(file) => {
            let dir = parent(&file);
            nix::unistd::access(
                dir,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .map_err(|e| errno_error(path, &format!("its directory {}", dir.display()), e))
        }
    }
}

/// The directory `relative` goes in, made and entered beneath `base` without following
/// a symlink.
fn open_beneath(base: &Path, relative: &Path) -> Result<OwnedFd, DestinationError> {
    let shown = base.join(relative);
    let fail = |action: &str| {
        let shown = shown.clone();
        let action = action.to_string();
        move |e| errno_error(&shown, &action, e)
    };
    let mut dir = nix::fcntl::open(
        base,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("open the target directory"))?;
    for part in relative.parent().into_iter().flat_map(Path::components) {
        match nix::sys::stat::mkdirat(&dir, part.as_os_str(), Mode::from_bits_truncate(0o777)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(fail("create its directory")(e)),
        }
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        dir = nix::fcntl::openat2(&dir, part.as_os_str(), how).map_err(fail(&format!(
            "enter {} without following a symlink",
            part.as_os_str().to_string_lossy()
        )))?;
    }
    Ok(dir)
}

/// Where `path` is inside `dir`, if it is, spelled with plain names only (no `..`), so
/// that it can be entered beneath `dir`.
pub fn below(path: &Path, dir: &Path) -> Option<PathBuf> {
    let path = std::path::absolute(path).ok()?;
    let relative = path.strip_prefix(dir).ok()?;
    relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| relative.to_path_buf())
}

fn parent(file: &Path) -> &Path {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, bytes: &[u8]) -> Result<(), DestinationError> {
        Destination::Given(path.to_path_buf()).write(bytes)
    }

    #[test]
    fn a_chosen_path_inside_the_target_directory_is_entered_beneath_it() {
        let target = Path::new("/w/target");
        assert!(matches!(
            Destination::chosen(Path::new("/w/target/isotest/r.json"), target),
            Destination::Own { base, relative }
                if base == target && relative == Path::new("isotest/r.json")
        ));
        for elsewhere in [
            "/w/r.json",
            "/w/target/../r.json",
            "/w/target",
            "/w/targets/r.json",
        ] {
            assert!(
                matches!(
                    Destination::chosen(Path::new(elsewhere), target),
                    Destination::Given(path) if path == Path::new(elsewhere)
                ),
                "{elsewhere}"
            );
        }
    }

    #[test]
    fn a_planted_link_in_the_target_directory_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir_all(target.join("isotest")).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "mine").unwrap();
        let report = target.join("isotest/report.json");
        std::os::unix::fs::symlink(&victim, &report).unwrap();
        Destination::chosen(&report, &target)
            .write(b"report")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
        assert!(std::fs::symlink_metadata(&report).unwrap().is_file());

        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::remove_dir_all(target.join("isotest")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, target.join("isotest")).unwrap();
        let destination = Destination::chosen(&report, &target);
        let error = destination.check().unwrap_err();
        assert!(error.to_string().contains("symlink"), "{error}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn descriptor_aliases_are_recognised() {
        assert_eq!(descriptor_alias(Path::new("/dev/fd/5")), Some(5));
        assert_eq!(descriptor_alias(Path::new("/proc/self/fd/1")), Some(1));
        if Path::new("/dev/stdout").exists() {
            assert_eq!(descriptor_alias(Path::new("/dev/stdout")), Some(1));
        }
        assert_eq!(descriptor_alias(Path::new("/tmp/report.json")), None);
    }

    #[test]
    fn a_regular_file_is_replaced_with_the_umask_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let umask = umask();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_file_written_in_pieces_appears_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.zst");
        std::fs::write(&path, "old").unwrap();
        let destination = Destination::Given(path.clone());
        let mut sink = destination.open().unwrap();
        sink.write_all(b"first ").unwrap();
        sink.write_all(b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        sink.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first second");
        let mut abandoned = destination.open().unwrap();
        abandoned.write_all(b"half").unwrap();
        drop(abandoned);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first second");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    /// The process's umask, read without changing it.
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
    }

    #[test]
    fn a_fifo_is_streamed_into() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write(&fifo, b"report").unwrap();
        assert_eq!(reader.join().unwrap(), b"report");
        let meta = std::fs::symlink_metadata(&fifo).unwrap();
        assert!(meta.file_type().is_fifo());
    }

    #[test]
    fn a_missing_directory_is_named_with_the_fix() {
        let e = check(Path::new("/nonexistent-isotest-dir/r.json")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/nonexistent-isotest-dir/r.json"), "{text}");
        assert!(text.contains("create the directory"), "{text}");
        let e = write(Path::new("/"), b"x").unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn the_own_directory_is_never_entered_through_a_symlink() {
        let base = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), base.path().join("isotest")).unwrap();
        let own = Destination::own_report(base.path());
        let e = own.write(b"{}").unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        std::fs::remove_file(base.path().join("isotest")).unwrap();
        own.write(b"{}").unwrap();
        assert_eq!(
            std::fs::read_to_string(base.path().join("isotest/last-run.json")).unwrap(),
            "{}"
        );
    }
}
