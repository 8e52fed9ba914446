//! Inside the new namespaces: build the sandbox in the order the kernel sees it (maps,
//! mounts, pivot, network), then hand over to init.
//!
//! This runs in the child of clone, in a copy of a single-threaded process, so plain Rust
//! is fine here; everything the child needs was prepared by
//! [`Plan::new`](crate::prepare::Plan::new) beforehand.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags};

use crate::beneath::{Beneath, Kind};
use crate::error::{SetupError, Step};
use crate::prepare::{ChildFds, Plan, PlannedMount};
use crate::sys::{self, MountRef};

/// Where the new root is assembled before pivot_root. Mounting over /tmp hides the host's
/// /tmp only inside our private mount namespace, and bind sources were cloned before.
const STAGING: &str = "/tmp";

/// Device nodes bound from the host; a user namespace cannot mknod them.
const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

type Setup<T = ()> = Result<T, SetupError>;

fn fail(
    step: Step,
    syscall: &'static str,
    path: Option<&Path>,
) -> impl FnOnce(Errno) -> SetupError {
    move |errno| SetupError::new(step, syscall, path, errno)
}

fn io_fail(
    step: Step,
    syscall: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> SetupError {
    move |e| {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        SetupError::new(step, syscall, Some(path), errno)
    }
}

/// Builds the sandbox around the current process, which is pid 1 of its new namespaces:
/// one step a line, in the order the kernel sees them. A failure names its [`Step`].
pub(crate) fn build_sandbox(plan: &Plan, fds: &ChildFds) -> Setup {
    close_inherited_fds(fds);
    die_with_supervisor(fds)?;
    write_id_maps(plan)?;
    limit_namespaces(plan)?;
    make_mounts_private()?;
    let trees = clone_bind_sources(plan)?;
    let root = mount_root_tmpfs()?;
    populate_root(plan, trees, &root)?;
    mount_proc(&root)?;
    protect_kernel_proc()?;
    mount_dev(plan, &root)?;
    pivot_into_root()?;
    seal_root()?;
    set_hostname(plan)?;
    if plan.loopback_up {
        bring_up_loopback()?;
    }
    Ok(())
}

/// The supervisor's other descriptors (other sandboxes' pipes, its own files) must not
/// reach this sandbox.
fn close_inherited_fds(fds: &ChildFds) {
    // SAFETY: this is the cloned child, which ends in `sandbox_main`'s _exit; the owners of
    // the other descriptors sit in the supervisor's frames, which never resume here.
    unsafe { sys::close_fds_except(&fds.raw()) };
}

/// If the supervisor dies (even by SIGKILL), the kernel kills us, and with pid 1 the whole
/// sandbox. The lifeline catches a supervisor that died before the prctl took effect.
fn die_with_supervisor(fds: &ChildFds) -> Setup {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(fail(
        Step::DeathSignal,
        "prctl",
        None,
    ))?;
    let mut poll = [PollFd::new(fds.lifeline.as_fd(), PollFlags::POLLIN)];
    let ready = nix::poll::poll(&mut poll, PollTimeout::ZERO).map_err(fail(
        Step::DeathSignal,
        "poll",
        None,
    ))?;
    if ready > 0 {
        // SAFETY: _exit ends this process at once; nothing else runs after it.
        unsafe { libc::_exit(1) };
    }
    Ok(())
}

/// Maps our own uid and gid, 1:1 or to 0; nothing else works in the namespace until then.
fn write_id_maps(plan: &Plan) -> Setup {
    let write = |path: &str, text: &str, step: Step| -> Setup {
        std::fs::write(path, text).map_err(io_fail(step, "write", Path::new(path)))
    };
    // An unprivileged gid map requires setgroups to be denied first.
    match write("/proc/self/setgroups", "deny", Step::Setgroups) {
        Err(e) if e.errno() == Errno::ENOENT => {}
        other => other?,
    }
    write("/proc/self/uid_map", &plan.uid_map, Step::UidMap)?;
    write("/proc/self/gid_map", &plan.gid_map, Step::GidMap)
}

/// Namespace kinds the sandbox's own `user.max_*_namespaces` caps; a kernel without one
/// of them (time namespaces before 5.6) simply has no such file.
const NAMESPACE_KINDS: &[&str] = &["user", "net", "mnt", "pid", "ipc", "uts", "cgroup", "time"];

/// Caps what the program may create in our user namespace, and below it: the count would
/// otherwise be charged unbounded to the host user's own limits.
fn limit_namespaces(plan: &Plan) -> Setup {
    let limit = plan.namespace_limit.to_string();
    for kind in NAMESPACE_KINDS {
        // These files act on the writer's user namespace, so the host's /proc serves.
        let path = PathBuf::from(format!("/proc/sys/user/max_{kind}_namespaces"));
        match std::fs::write(&path, &limit) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_fail(Step::NamespaceLimit, "write", &path)(e)),
        }
    }
    Ok(())
}

/// Our mount namespace starts as a copy of the host's; private propagation keeps every
/// mount we make from reaching the host.
fn make_mounts_private() -> Setup {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(fail(Step::PrivateMounts, "mount", Some(Path::new("/"))))
}

/// A bind source cloned as a detached mount tree, made read-only (submounts included)
/// before it is ever attached.
struct Tree {
    fd: OwnedFd,
    is_dir: bool,
}

/// Clones every bind source now, while the host tree is still whole: the staging root
/// is about to hide /tmp.
fn clone_bind_sources(plan: &Plan) -> Setup<Vec<Option<Tree>>> {
    plan.mounts
        .iter()
        .map(|mount| {
            let PlannedMount::Bind { src, writable, .. } = mount else {
                return Ok(None);
            };
            let fail_at = |syscall| fail(Step::BindSource, syscall, Some(src));
            let flags = OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE;
            let fd = rustix::mount::open_tree(rustix::fs::CWD, src.as_path(), flags)
                .map_err(|e| fail_at("open_tree")(Errno::from_raw(e.raw_os_error())))?;
            if !writable {
                sys::make_read_only(MountRef::Tree(fd.as_fd()), true)
                    .map_err(fail_at("mount_setattr"))?;
            }
            let stat = rustix::fs::fstat(&fd)
                .map_err(|e| fail_at("fstat")(Errno::from_raw(e.raw_os_error())))?;
            let is_dir = rustix::fs::FileType::from_raw_mode(stat.st_mode)
                == rustix::fs::FileType::Directory;
            Ok(Some(Tree { fd, is_dir }))
        })
        .collect()
}

/// The sandbox's root is an empty tmpfs: only what the spec lists will be in it. Every
/// path in it is then resolved from it, never through a symlink.
fn mount_root_tmpfs() -> Setup<Beneath> {
    let staging = Path::new(STAGING);
    nix::mount::mount(
        Some("tmpfs"),
        staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(fail(Step::RootTmpfs, "mount", Some(staging)))?;
    nix::unistd::chdir(staging).map_err(fail(Step::RootTmpfs, "chdir", Some(staging)))?;
    Beneath::open(staging)
}

/// Paths in the staging root are relative to it, since it is our working directory.
fn staged(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// Attaches the spec's mounts, parents first, so that the root holds what the spec lists.
/// A planted symlink on the way is an error naming it, never followed onto the host.
fn populate_root(plan: &Plan, trees: Vec<Option<Tree>>, root: &Beneath) -> Setup {
    for (mount, tree) in plan.mounts.iter().zip(trees) {
        match (mount, tree) {
            (PlannedMount::Bind { dst, .. }, Some(tree)) => {
                let kind = if tree.is_dir { Kind::Dir } else { Kind::File };
                let target = root.mount_point(dst, kind)?;
                attach(tree.fd, &target, Step::Bind, dst)?;
            }
            (PlannedMount::Tmpfs { dst, options }, _) => {
                let target = root.mount_point(dst, Kind::Dir)?;
                attach(
                    new_tmpfs(options, Step::Tmpfs, dst)?,
                    &target,
                    Step::Tmpfs,
                    dst,
                )?;
            }
            (PlannedMount::Symlink { path, target }, _) => root.symlink(path, target)?,
            (PlannedMount::Bind { .. }, None) => unreachable!("every bind has a cloned tree"),
        }
    }
    Ok(())
}

/// Attaches a detached mount onto the mount point `target` was opened as.
fn attach(mount: OwnedFd, target: &OwnedFd, step: Step, shown: &Path) -> Setup {
    rustix::mount::move_mount(
        mount.as_fd(),
        c"",
        target.as_fd(),
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| fail(step, "move_mount", Some(shown))(Errno::from_raw(e.raw_os_error())))
}

/// A detached tmpfs with `options` (`size=…,mode=…`), nosuid and nodev.
fn new_tmpfs(options: &str, step: Step, shown: &Path) -> Setup<OwnedFd> {
    let fail_at = |syscall| {
        move |e: rustix::io::Errno| {
            fail(step, syscall, Some(shown))(Errno::from_raw(e.raw_os_error()))
        }
    };
    let fs =
        rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail_at("fsopen"))?;
    // `source` names it in mount listings, as mount(2) with "tmpfs" does.
    for option in
        std::iter::once("source=tmpfs").chain(options.split(',').filter(|o| !o.is_empty()))
    {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        rustix::mount::fsconfig_set_string(&fs, key, value).map_err(fail_at("fsconfig"))?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(fail_at("fsconfig"))?;
    rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(fail_at("fsmount"))
}

/// A fresh /proc shows only this pid namespace. The kernel refuses it when the host's
/// /proc has parts masked by overmounts (as container runtimes do).
fn mount_proc(root: &Beneath) -> Setup {
    let proc = Path::new("proc");
    root.mount_point(Path::new("/proc"), Kind::Dir)?;
    nix::mount::mount(
        Some("proc"),
        proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(fail(Step::Proc, "mount", Some(Path::new("/proc"))))
}

/// The parts of /proc that act on the whole host rather than this sandbox. For them the
/// sandbox's uid 0 (the host's root, when root runs us) passes the permission checks,
/// and `core_pattern` alone would run a program as host root.
const KERNEL_WIDE_PROC: &[&str] = &[
    "sys",
    "sysrq-trigger",
    "irq",
    "bus",
    "fs",
    "acpi",
    "driver",
    "scsi",
    "mtrr",
    "pressure",
    "tty",
];

/// Re-binds the kernel-wide parts of /proc read-only over themselves, as bubblewrap does
/// (and a few more); the program has no capability to undo it.
fn protect_kernel_proc() -> Setup {
    let proc = rustix::fs::open(
        "proc",
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        fail(Step::ProcReadOnly, "open", Some(Path::new("/proc")))(Errno::from_raw(
            e.raw_os_error(),
        ))
    })?;
    for name in KERNEL_WIDE_PROC {
        let shown_path = Path::new("/proc").join(name);
        let shown: &Path = &shown_path;
        let fail_at = |syscall| move |e: Errno| fail(Step::ProcReadOnly, syscall, Some(shown))(e);
        let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        let tree = match rustix::mount::open_tree(&proc, *name, flags) {
            Ok(tree) => tree,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(fail_at("open_tree")(Errno::from_raw(e.raw_os_error()))),
        };
        sys::make_read_only(MountRef::Tree(tree.as_fd()), true)
            .map_err(fail_at("mount_setattr"))?;
        rustix::mount::move_mount(
            tree.as_fd(),
            c"",
            &proc,
            *name,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| fail_at("move_mount")(Errno::from_raw(e.raw_os_error())))?;
    }
    Ok(())
}

/// A minimal /dev: the harmless host nodes, the usual links, private ptys and shm. The
/// nodes are bound read-only: their data still flows, but `chmod` or `touch` of one
/// would change the host's node.
fn mount_dev(plan: &Plan, root: &Beneath) -> Setup {
    let dev = Path::new("/dev");
    let target = root.mount_point(dev, Kind::Dir)?;
    attach(
        new_tmpfs("mode=0755,size=64k", Step::Dev, dev)?,
        &target,
        Step::Dev,
        dev,
    )?;
    for node in DEV_NODES {
        let host_path = dev.join(node);
        let host: &Path = &host_path;
        let fail_at = |syscall| move |e: Errno| fail(Step::Dev, syscall, Some(host))(e);
        let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        let tree = rustix::mount::open_tree(rustix::fs::CWD, host, flags)
            .map_err(|e| fail_at("open_tree")(Errno::from_raw(e.raw_os_error())))?;
        sys::make_read_only(MountRef::Tree(tree.as_fd()), false)
            .map_err(fail_at("mount_setattr"))?;
        let target = root.mount_point(host, Kind::File)?;
        attach(tree, &target, Step::Dev, host)?;
    }
    for (name, target) in DEV_LINKS {
        root.symlink(&dev.join(name), Path::new(target))?;
    }
    let pts = Path::new("/dev/pts");
    root.mount_point(pts, Kind::Dir)?;
    nix::mount::mount(
        Some("devpts"),
        staged(pts),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(fail(Step::Dev, "mount", Some(pts)))?;
    let shm = Path::new("/dev/shm");
    let target = root.mount_point(shm, Kind::Dir)?;
    attach(
        new_tmpfs(&plan.shm_options, Step::Dev, shm)?,
        &target,
        Step::Dev,
        shm,
    )
}

/// Swaps the staging tmpfs in as `/` and detaches the host's root entirely, so no path
/// leads back to it.
fn pivot_into_root() -> Setup {
    let here = Path::new(".");
    nix::unistd::pivot_root(here, here).map_err(fail(
        Step::PivotRoot,
        "pivot_root",
        Some(Path::new(STAGING)),
    ))?;
    nix::mount::umount2(here, MntFlags::MNT_DETACH).map_err(fail(
        Step::PivotRoot,
        "umount2",
        Some(Path::new("/")),
    ))?;
    nix::unistd::chdir("/").map_err(fail(Step::PivotRoot, "chdir", Some(Path::new("/"))))
}

/// With every mountpoint made, the root and /dev themselves become read-only, so the
/// only writable places are the ones the spec asked for.
fn seal_root() -> Setup {
    for path in [c"/", c"/dev"] {
        sys::make_read_only(MountRef::Path(path), false).map_err(fail(
            Step::Seal,
            "mount_setattr",
            Some(Path::new(OsStr::from_bytes(path.to_bytes()))),
        ))?;
    }
    Ok(())
}

/// The sandbox's own UTS namespace takes a fixed hostname; the host's stays as it is.
fn set_hostname(plan: &Plan) -> Setup {
    nix::unistd::sethostname(&plan.hostname).map_err(fail(Step::Hostname, "sethostname", None))
}

nix::ioctl_read_bad!(get_interface_flags, libc::SIOCGIFFLAGS, libc::ifreq);
nix::ioctl_write_ptr_bad!(set_interface_flags, libc::SIOCSIFFLAGS, libc::ifreq);

/// A new network namespace has `lo` down; tests that connect to 127.0.0.1 need it up.
fn bring_up_loopback() -> Setup {
    let lo = Path::new("lo");
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail(Step::Loopback, "socket", None))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the socket is open and request is a valid ifreq naming an interface.
    unsafe { get_interface_flags(socket.as_raw_fd(), &mut request) }.map_err(fail(
        Step::Loopback,
        "ioctl(SIOCGIFFLAGS)",
        Some(lo),
    ))?;
    // SAFETY: ifru_flags is the union member SIOCGIFFLAGS filled in.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above, with the flags to set.
    unsafe { set_interface_flags(socket.as_raw_fd(), &request) }.map_err(fail(
        Step::Loopback,
        "ioctl(SIOCSIFFLAGS)",
        Some(lo),
    ))?;
    Ok(())
}
