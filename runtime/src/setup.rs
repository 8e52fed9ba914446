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
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags};

use crate::beneath::{Beneath, Kind};
use crate::error::{SetupError, Step};
use crate::hostview::{DEV_LINKS, DEV_NODES};
use crate::prepare::{ChildFds, Plan, PlannedMount};
use crate::sys::{self, MountRef};

/// Where the new root is assembled before pivot_root. Mounting over /tmp hides the host's
/// /tmp only inside our private mount namespace, and bind sources were cloned before.
const STAGING: &str = "/tmp";

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
    mount_proc(plan)?;
    protect_kernel_proc(plan)?;
    mount_dev(plan)?;
    add_block_device_placeholders(plan)?;
    mount_sys(plan)?;
    wait_until_placed(fds)?;
    mount_cgroups(plan)?;
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

/// The limits must hold before the program starts, and the cgroup namespace about to be
/// entered must be rooted at the sandbox's own cgroups: the supervisor moves pid 1 into
/// them while the sandbox is built (the kernel's slow part overlaps ours), then says so.
fn wait_until_placed(fds: &ChildFds) -> Setup {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fds.placed.as_fd(), &mut byte) {
            Ok(1) => return Ok(()),
            // The supervisor could not place us (and kills us), or is gone.
            Ok(_) => return Err(SetupError::new(Step::Cgroup, "read", None, Errno::EPIPE)),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(SetupError::new(Step::Cgroup, "read", None, errno)),
        }
    }
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
    for kind in NAMESPACE_KINDS {
        let limit = match *kind {
            "user" => plan.max_user_namespaces,
            _ => plan.namespace_limit,
        }
        .to_string();
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

/// mkdir -p inside the staging root. An existing directory is fine even inside a read-only
/// bind, because the kernel reports EEXIST before EROFS.
fn make_dir_all(path: &Path) -> Setup {
    let mut partial = PathBuf::new();
    for part in staged(path).components() {
        partial.push(part);
        match nix::unistd::mkdir(&partial, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => {
                return Err(SetupError::new(
                    Step::Mountpoint,
                    "mkdir",
                    Some(&Path::new("/").join(&partial)),
                    errno,
                ));
            }
        }
    }
    Ok(())
}

/// A file to bind a file onto.
fn make_file(path: &Path) -> Setup {
    if let Some(parent) = path.parent() {
        make_dir_all(parent)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(staged(path))
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_fail(Step::Mountpoint, "open", path)(e)),
    }
}

fn mount_tmpfs(dst: &Path, options: &str, step: Step) -> Setup {
    nix::mount::mount(
        Some("tmpfs"),
        dst,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(fail(step, "mount", Some(&Path::new("/").join(dst))))
}

/// A fresh /proc shows only this pid namespace. The kernel refuses it when the host's
/// /proc has parts masked by overmounts (as container runtimes do). Without a pid
/// namespace of our own the kernel refuses a fresh one too, so the host's is bound.
fn mount_proc(plan: &Plan) -> Setup {
    let proc = Path::new("/proc");
    make_dir_all(proc)?;
    if plan.host_pid {
        return bind_host_read_only(proc, Step::Proc);
    }
    nix::mount::mount(
        Some("proc"),
        staged(proc),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(fail(Step::Proc, "mount", Some(proc)))
}

/// The host's tree at `path`, submounts included, made read-only before it is attached at
/// the same path in the new root. The host's root is still ours until the pivot: only
/// /tmp is hidden, by the staging root.
fn bind_host_read_only(path: &Path, step: Step) -> Setup {
    let fail_at = |syscall| fail(step, syscall, Some(path));
    let errno = |e: rustix::io::Errno| Errno::from_raw(e.raw_os_error());
    let flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_RECURSIVE;
    let tree = rustix::mount::open_tree(rustix::fs::CWD, path, flags)
        .map_err(|e| fail_at("open_tree")(errno(e)))?;
    sys::make_read_only(MountRef::Tree(tree.as_fd()), true).map_err(fail_at("mount_setattr"))?;
    rustix::mount::move_mount(
        tree.as_fd(),
        c"",
        rustix::fs::CWD,
        staged(path),
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| fail_at("move_mount")(errno(e)))
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
fn protect_kernel_proc(plan: &Plan) -> Setup {
    // The host's /proc, bound under `--pid host`, is read-only as a whole.
    if plan.host_pid {
        return Ok(());
    }
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
fn mount_dev(plan: &Plan) -> Setup {
    make_dir_all(Path::new("/dev"))?;
    mount_tmpfs(Path::new("dev"), "mode=0755,size=64k", Step::Dev)?;
    for node in DEV_NODES {
        let host = Path::new("/dev").join(node);
        make_file(&host)?;
        bind_host_read_only(&host, Step::Dev)?;
    }
    for (name, target) in DEV_LINKS {
        let link = Path::new("dev").join(name);
        std::os::unix::fs::symlink(target, &link).map_err(io_fail(Step::Dev, "symlink", &link))?;
    }
    let pts = Path::new("/dev/pts");
    make_dir_all(pts)?;
    nix::mount::mount(
        Some("devpts"),
        staged(pts),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(fail(Step::Dev, "mount", Some(pts)))?;
    make_dir_all(Path::new("/dev/shm"))?;
    mount_tmpfs(Path::new("dev/shm"), &plan.shm_options, Step::Dev)
}

/// Disk tools read a disk's name from /proc/mounts and look it up in /dev; an empty file
/// of mode 0000 by that name lets them, without giving anyone the device.
fn add_block_device_placeholders(plan: &Plan) -> Setup {
    use std::os::unix::fs::OpenOptionsExt;
    for name in &plan.block_devices {
        let path = Path::new("/dev").join(name);
        if let Some(parent) = path.parent() {
            make_dir_all(parent)?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(staged(&path))
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_fail(Step::Dev, "open", &path)(e)),
        }
    }
    Ok(())
}

/// A read-only /sys. A fresh sysfs shows our own network namespace's interfaces; only
/// that namespace's owner may mount one, so with the host's network the host's is bound.
fn mount_sys(plan: &Plan) -> Setup {
    let Some(sys) = &plan.sys else {
        return Ok(());
    };
    let path = Path::new("/sys");
    make_dir_all(path)?;
    if !sys.fresh {
        return bind_host_read_only(path, Step::Sys);
    }
    nix::mount::mount(
        Some("sysfs"),
        staged(path),
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(fail(Step::Sys, "mount", Some(path)))
}

/// `/sys/fs/cgroup` shows the cgroup we are in as its root, with its limits: a cgroup
/// namespace entered now is rooted wherever the supervisor placed us, and each of the
/// host's hierarchies is mounted from it, read-only, where the host has it.
fn mount_cgroups(plan: &Plan) -> Setup {
    let Some(cgroups) = plan.sys.as_ref().map(|s| s.cgroups) else {
        return Ok(());
    };
    if cgroups.hierarchies.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(fail(
        Step::Cgroups,
        "unshare(CLONE_NEWCGROUP)",
        None,
    ))?;
    let root = Path::new("/sys/fs/cgroup");
    make_dir_all(root)?;
    if cgroups.tmpfs {
        mount_tmpfs(staged(root), "mode=0755,size=64k", Step::Cgroups)?;
        for (name, target) in &cgroups.links {
            let link = root.join(name);
            std::os::unix::fs::symlink(target, staged(&link)).map_err(io_fail(
                Step::Cgroups,
                "symlink",
                &link,
            ))?;
        }
    }
    for hierarchy in &cgroups.hierarchies {
        let dst = root.join(&hierarchy.dir);
        make_dir_all(&dst)?;
        let (fs_type, options) = match &hierarchy.v1_options {
            Some(options) => ("cgroup", Some(options.as_str())),
            None => ("cgroup2", None),
        };
        nix::mount::mount(
            Some(fs_type),
            staged(&dst),
            Some(fs_type),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            options,
        )
        .map_err(fail(Step::Cgroups, "mount", Some(&dst)))?;
    }
    if cgroups.tmpfs {
        sys::make_read_only(MountRef::Path(c"sys/fs/cgroup"), false).map_err(fail(
            Step::Cgroups,
            "mount_setattr",
            Some(root),
        ))?;
    }
    Ok(())
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
