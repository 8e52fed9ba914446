//! Inside the new namespaces: build the sandbox in the order the kernel sees it (maps,
//! mounts, pivot, network), then hand over to init.
//!
//! This runs in the child of clone, in a copy of a single-threaded process, so plain Rust
//! is fine here; everything the child needs was prepared by
//! [`Plan::new`](crate::prepare::Plan::new) beforehand.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use rustix::fs::OFlags;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags};
use rustix::pty::OpenptFlags;

use crate::beneath::{Beneath, Kind};
use crate::error::{SetupError, Step};
use crate::hostview::{DEV_LINKS, DEV_NODES};
use crate::idmap::map_text;
use crate::perturb;
use crate::prepare::{ChildFds, ChildStdio, Plan, PlannedMount, UpperRoot};
use crate::sys::{self, Handed, MountRef, errno};

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
/// Returns the program's terminal (the pty's slave) when it gets one.
pub(crate) fn build_sandbox(plan: &Plan, fds: &mut ChildFds) -> Setup<Option<OwnedFd>> {
    close_inherited_fds(fds);
    die_with_supervisor(fds)?;
    join_v1_cgroups(fds)?;
    if plan.ids.maps_other_ids() {
        wait_for_id_maps(fds)?;
    } else {
        write_own_id_maps(plan)?;
    }
    make_mounts_private()?;
    let trees = clone_bind_sources(plan)?;
    let root = mount_root_tmpfs()?;
    populate_root(plan, trees, &root, fds)?;
    mount_proc(plan, &root)?;
    protect_kernel_proc(plan, &root)?;
    mount_dev(plan, &root)?;
    add_block_device_placeholders(plan, &root)?;
    mount_sys(plan, &root)?;
    wait_until_placed(fds)?;
    mount_cgroups(plan, &root)?;
    perturb::enter_time_namespace(&plan.chaos)?;
    limit_namespaces(plan)?;
    pivot_into_root()?;
    seal_root()?;
    set_hostname(plan)?;
    if plan.loopback_up {
        bring_up_loopback()?;
    }
    listen_for_forwards(plan, fds)?;
    lead_session()?;
    let terminal = match &fds.stdio {
        ChildStdio::Tty => open_terminal(plan, fds).map(Some)?,
        ChildStdio::Pipes { .. } => None,
    };
    close_handover(fds);
    Ok(terminal)
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

/// Everything the sandbox allocates from here on is charged to its own v1 cgroups, and
/// everything it starts inherits them: pid 1 moves its only thread there itself, which
/// the kernel does without the global lock a move by the supervisor takes.
fn join_v1_cgroups(fds: &mut ChildFds) -> Setup {
    for tasks in fds.cgroup_tasks.drain(..) {
        nix::unistd::write(&tasks, b"0").map_err(fail(Step::Cgroup, "write(tasks)", None))?;
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
fn write_own_id_maps(plan: &Plan) -> Setup {
    let write = |path: &str, text: &str, step: Step| -> Setup {
        std::fs::write(path, text).map_err(io_fail(step, "write", Path::new(path)))
    };
    // An unprivileged gid map requires setgroups to be denied first.
    match write("/proc/self/setgroups", "deny", Step::Setgroups) {
        Err(e) if e.errno() == Errno::ENOENT => {}
        other => other?,
    }
    write("/proc/self/uid_map", &map_text(&plan.uid_map), Step::UidMap)?;
    write("/proc/self/gid_map", &map_text(&plan.gid_map), Step::GidMap)
}

/// Maps of more than our own ids need privilege over the parent namespace, which only the
/// supervisor has (as root, or through newuidmap): wait until it has written them. At EOF
/// it failed and reports why itself, so we leave without a word.
fn wait_for_id_maps(fds: &ChildFds) -> Setup {
    let pipe = fds
        .maps_written
        .as_ref()
        .expect("maps from outside come with their pipe");
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(pipe, &mut byte) {
            Ok(1) => return Ok(()),
            Err(Errno::EINTR) => continue,
            // SAFETY: _exit ends this process at once; nothing else runs after it.
            Ok(_) => unsafe { libc::_exit(1) },
            Err(errno) => return Err(SetupError::new(Step::UidMap, "read", None, errno)),
        }
    }
}

/// Namespace kinds the sandbox's own `user.max_*_namespaces` caps; a kernel without one
/// of them (time namespaces before 5.6) simply has no such file.
const NAMESPACE_KINDS: &[&str] = &["user", "net", "mnt", "pid", "ipc", "uts", "cgroup", "time"];

/// Caps what the program may create in our user namespace, and below it: the count would
/// otherwise be charged unbounded to the host user's own limits. Written last before the
/// pivot, once setup's own are made: each bind source cloned with `open_tree` holds an
/// anonymous mount namespace until it is attached, which a low cap would refuse.
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
            let (src, writable) = match mount {
                PlannedMount::Bind { src, writable, .. } => (src, *writable),
                // An overlay's lower layer is a read-only bind like any other.
                PlannedMount::Overlay { src, .. } => (src, false),
                PlannedMount::Socket { src, .. } => return clone_socket(src).map(Some),
                _ => return Ok(None),
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

/// A host socket, cloned read-only. Its path was resolved when the spec was made, so a
/// symlink on it now was planted since (by a test with a writable bind of its
/// directory, to hand a later sandbox another socket): it is refused, and so is anything
/// but a socket.
fn clone_socket(src: &Path) -> Setup<Tree> {
    let fail_at =
        |syscall| move |e: rustix::io::Errno| fail(Step::BindSource, syscall, Some(src))(errno(e));
    let path = rustix::fs::openat2(
        rustix::fs::CWD,
        src,
        OFlags::PATH | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
        rustix::fs::ResolveFlags::NO_SYMLINKS | rustix::fs::ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(fail_at("openat2"))?;
    let stat = rustix::fs::fstat(&path).map_err(fail_at("fstat"))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        return Err(fail(Step::BindSource, "fstat", Some(src))(Errno::ENOTSOCK));
    }
    let flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    let fd = rustix::mount::open_tree(&path, c"", flags).map_err(fail_at("open_tree"))?;
    sys::make_read_only(MountRef::Tree(fd.as_fd()), false)
        .map_err(|e| fail(Step::BindSource, "mount_setattr", Some(src))(e))?;
    Ok(Tree { fd, is_dir: false })
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

/// Attaches the spec's mounts, parents first, so that the root holds what the spec lists.
/// A planted symlink on the way is an error naming it, never followed onto the host.
fn populate_root(plan: &Plan, trees: Vec<Option<Tree>>, root: &Beneath, fds: &ChildFds) -> Setup {
    for (index, (mount, tree)) in plan.mounts.iter().zip(trees).enumerate() {
        match (mount, tree) {
            (PlannedMount::Bind { dst, .. } | PlannedMount::Socket { dst, .. }, Some(tree)) => {
                attach_bind(root, dst, tree)?
            }
            (
                PlannedMount::Overlay {
                    dst,
                    upper_options,
                    upper_root,
                    ..
                },
                Some(tree),
            ) => {
                attach_bind(root, dst, tree)?;
                layer_overlay(root, dst, upper_options, *upper_root, index, fds)?;
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
            (PlannedMount::Symlink { path, target }, _) => {
                root.symlink(path, target, Step::Symlink)?
            }
            (
                PlannedMount::Bind { .. }
                | PlannedMount::Overlay { .. }
                | PlannedMount::Socket { .. },
                None,
            ) => unreachable!("every bind, overlay and socket has a cloned tree"),
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
    .map_err(|e| fail(step, "move_mount", Some(shown))(errno(e)))
}

/// Attaches a cloned bind source at `dst`, which is made as a directory or a file like it.
fn attach_bind(root: &Beneath, dst: &Path, tree: Tree) -> Setup {
    let kind = if tree.is_dir { Kind::Dir } else { Kind::File };
    let target = root.mount_point(dst, kind)?;
    attach(tree.fd, &target, Step::Bind, dst)
}

/// Layers a private tmpfs over the read-only bind just attached at `dst`, so that writes
/// succeed inside and never reach the host; the supervisor gets the upper layer to list
/// (and keep) them once the sandbox has ended.
fn layer_overlay(
    root: &Beneath,
    dst: &Path,
    upper_options: &str,
    upper_root: UpperRoot,
    index: usize,
    fds: &ChildFds,
) -> Setup {
    let at =
        |syscall| move |e: rustix::io::Errno| fail(Step::Overlay, syscall, Some(dst))(errno(e));
    // overlayfs only takes layers that are mounted in our namespace, so the upper tmpfs
    // is attached at a scratch point of the staging root until the overlay holds it.
    let name = format!(".overlay-{index}");
    let scratch = Path::new("/").join(&name);
    let point = root.new_dir(&scratch, Step::Overlay)?;
    let upper_fs = new_tmpfs(upper_options, Step::Overlay, dst)?;
    for sub in ["upper", "work"] {
        rustix::fs::mkdirat(&upper_fs, sub, rustix::fs::Mode::from_raw_mode(0o755))
            .map_err(at("mkdirat"))?;
    }
    let layer = |sub| {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&upper_fs, sub, flags, rustix::fs::Mode::empty()).map_err(at("openat"))
    };
    let (upper, work) = (layer("upper")?, layer("work")?);
    take_host_owner_and_mode(dst, &upper, upper_root)?;
    attach(upper_fs, &point, Step::Overlay, dst)?;
    let lower = root.dir(dst)?;
    let overlay = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(at("fsopen(overlay)"))?;
    // overlayfs looks each layer up by path, following links: /proc/self/fd/N is exactly
    // the descriptor opened (and checked) here, and holds no comma or colon to misread.
    let fd_path = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
    for (key, value) in [
        ("source", "overlay".to_string()),
        ("lowerdir", fd_path(&lower)),
        ("upperdir", fd_path(&upper)),
        ("workdir", fd_path(&work)),
    ] {
        rustix::mount::fsconfig_set_string(&overlay, key, value.as_str())
            .map_err(at("fsconfig(overlay)"))?;
    }
    rustix::mount::fsconfig_set_flag(&overlay, "userxattr").map_err(at("fsconfig(overlay)"))?;
    rustix::mount::fsconfig_create(&overlay).map_err(at("mount(overlay)"))?;
    let merged = rustix::mount::fsmount(
        &overlay,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(at("fsmount"))?;
    attach(merged, &lower, Step::Overlay, dst)?;
    // The overlay holds its own reference to the upper layer; the scratch mount point
    // would only show it to the program.
    rustix::mount::unmount(
        name.as_str(),
        rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW,
    )
    .map_err(at("umount2"))?;
    rustix::fs::unlinkat(
        rustix::fs::CWD,
        name.as_str(),
        rustix::fs::AtFlags::REMOVEDIR,
    )
    .map_err(at("rmdir"))?;
    hand_over(fds, Handed::Upper(index as u32), upper.as_fd())
        .map_err(|e| fail(Step::Overlay, "sendmsg", Some(dst))(e))
}

/// Gives the upper layer the owner (where mapped) and mode of the host directory, which
/// the merged directory then shows ([`UpperRoot`]).
fn take_host_owner_and_mode(dst: &Path, upper: &OwnedFd, root: UpperRoot) -> Setup {
    let at =
        |syscall| move |e: rustix::io::Errno| fail(Step::Overlay, syscall, Some(dst))(errno(e));
    if root.uid.is_some() || root.gid.is_some() {
        rustix::fs::fchown(
            upper,
            root.uid.map(rustix::fs::Uid::from_raw),
            root.gid.map(rustix::fs::Gid::from_raw),
        )
        .map_err(at("fchown"))?;
    }
    rustix::fs::fchmod(upper, rustix::fs::Mode::from_raw_mode(root.mode)).map_err(at("fchmod"))
}

/// A detached tmpfs with `options` (`size=…,mode=…`), nosuid and nodev.
fn new_tmpfs(options: &str, step: Step, shown: &Path) -> Setup<OwnedFd> {
    new_mount(
        "tmpfs",
        options,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
        step,
        shown,
    )
}

/// A detached new filesystem of `fs_type`, configured with `options` as mount(2) takes
/// them (`key=value` or a flag, comma-separated), mounted with `attrs`.
fn new_mount(
    fs_type: &str,
    options: &str,
    attrs: MountAttrFlags,
    step: Step,
    shown: &Path,
) -> Setup<OwnedFd> {
    let fail_at = |syscall| move |e: rustix::io::Errno| fail(step, syscall, Some(shown))(errno(e));
    let fs =
        rustix::mount::fsopen(fs_type, FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail_at("fsopen"))?;
    // `source` names it in mount listings, as mount(2)'s first argument does.
    rustix::mount::fsconfig_set_string(&fs, "source", fs_type).map_err(fail_at("fsconfig"))?;
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some((key, value)) => rustix::mount::fsconfig_set_string(&fs, key, value),
            None => rustix::mount::fsconfig_set_flag(&fs, option),
        }
        .map_err(fail_at("fsconfig"))?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(fail_at("fsconfig"))?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(fail_at("fsmount"))
}

/// The host's tree at `path`, submounts included, cloned and made read-only before it is
/// ever attached. The host's root is still ours until the pivot: only /tmp is hidden, by
/// the staging root.
fn clone_host_read_only(path: &Path, step: Step) -> Setup<OwnedFd> {
    let fail_at = |syscall| fail(step, syscall, Some(path));
    let flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_RECURSIVE;
    let tree = rustix::mount::open_tree(rustix::fs::CWD, path, flags)
        .map_err(|e| fail_at("open_tree")(errno(e)))?;
    sys::make_read_only(MountRef::Tree(tree.as_fd()), true).map_err(fail_at("mount_setattr"))?;
    Ok(tree)
}

/// The host's tree at `path`, read-only, at the same path in the new root.
fn bind_host_read_only(root: &Beneath, path: &Path, kind: Kind, step: Step) -> Setup {
    let target = root.mount_point(path, kind)?;
    attach(clone_host_read_only(path, step)?, &target, step, path)
}

/// A fresh /proc shows only this pid namespace. The kernel refuses it when the host's
/// /proc has parts masked by overmounts (as container runtimes do). Without a pid
/// namespace of our own the kernel refuses a fresh one too, so the host's is bound.
fn mount_proc(plan: &Plan, root: &Beneath) -> Setup {
    let proc = Path::new("/proc");
    if plan.host_pid {
        return bind_host_read_only(root, proc, Kind::Dir, Step::Proc);
    }
    let target = root.mount_point(proc, Kind::Dir)?;
    let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    attach(
        new_mount("proc", "", attrs, Step::Proc, proc)?,
        &target,
        Step::Proc,
        proc,
    )
}

/// The parts of /proc that act on the whole host rather than this sandbox. For them the
/// sandbox's uid 0 (the host's root, when root runs us, with every id mapped and the
/// capabilities that override file modes) passes the permission checks, and
/// `core_pattern` alone would run a program as host root.
const KERNEL_WIDE_PROC: &[&str] = &[
    "sys",
    "sysrq-trigger",
    "irq",
    "bus",
    "fs",
    "acpi",
    "asound",
    "driver",
    "scsi",
    "mtrr",
    "pressure",
    "tty",
    "latency_stats",
    "timer_stats",
];

/// Re-binds the kernel-wide parts of /proc read-only over themselves, as bubblewrap does
/// (and a few more); the program has no capability to undo it.
fn protect_kernel_proc(plan: &Plan, root: &Beneath) -> Setup {
    // The host's /proc, bound under `--pid host`, is read-only as a whole.
    if plan.host_pid {
        return Ok(());
    }
    let proc = root.dir(Path::new("/proc"))?;
    for name in KERNEL_WIDE_PROC {
        let shown_path = Path::new("/proc").join(name);
        let shown: &Path = &shown_path;
        let fail_at = |syscall| move |e: Errno| fail(Step::ProcReadOnly, syscall, Some(shown))(e);
        let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        let tree = match rustix::mount::open_tree(&proc, *name, flags) {
            Ok(tree) => tree,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(fail_at("open_tree")(errno(e))),
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
        .map_err(|e| fail_at("move_mount")(errno(e)))?;
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
        bind_host_read_only(root, &dev.join(node), Kind::File, Step::Dev)?;
    }
    for (name, target) in DEV_LINKS {
        root.symlink(&dev.join(name), Path::new(target), Step::Dev)?;
    }
    let pts = dev.join("pts");
    let target = root.mount_point(&pts, Kind::Dir)?;
    let devpts = new_mount(
        "devpts",
        "newinstance,ptmxmode=0666,mode=620",
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        Step::Dev,
        &pts,
    )?;
    attach(devpts, &target, Step::Dev, &pts)?;
    let shm = dev.join("shm");
    let target = root.mount_point(&shm, Kind::Dir)?;
    attach(
        new_tmpfs(&plan.shm_options, Step::Dev, &shm)?,
        &target,
        Step::Dev,
        &shm,
    )
}

/// Disk tools read a disk's name from /proc/mounts and look it up in /dev; an empty file
/// of mode 0000 by that name lets them, without giving anyone the device.
fn add_block_device_placeholders(plan: &Plan, root: &Beneath) -> Setup {
    for name in &plan.block_devices {
        root.empty_file(&Path::new("/dev").join(name), 0o000, Step::Dev)?;
    }
    Ok(())
}

/// A read-only /sys. A fresh sysfs shows our own network namespace's interfaces; only
/// that namespace's owner may mount one, so with the host's network the host's is bound.
fn mount_sys(plan: &Plan, root: &Beneath) -> Setup {
    let Some(sys) = &plan.sys else {
        return Ok(());
    };
    let path = Path::new("/sys");
    if !sys.fresh {
        return bind_host_read_only(root, path, Kind::Dir, Step::Sys);
    }
    let target = root.mount_point(path, Kind::Dir)?;
    let sysfs = new_mount("sysfs", "", read_only_attrs(), Step::Sys, path)?;
    attach(sysfs, &target, Step::Sys, path)
}

/// What every kernel view the sandbox gets (/sys, the cgroup hierarchies) is mounted with.
fn read_only_attrs() -> MountAttrFlags {
    MountAttrFlags::MOUNT_ATTR_RDONLY
        | MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC
}

/// `/sys/fs/cgroup` shows the cgroup we are in as its root, with its limits: a cgroup
/// namespace entered now is rooted wherever the supervisor placed us, and each of the
/// host's hierarchies is mounted from it, read-only, where the host has it.
fn mount_cgroups(plan: &Plan, root: &Beneath) -> Setup {
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
    let top = Path::new("/sys/fs/cgroup");
    // v1: a tmpfs holds one directory per hierarchy and the host's links between them,
    // read-only once they are made.
    if cgroups.tmpfs {
        let target = root.mount_point(top, Kind::Dir)?;
        let tmpfs = new_tmpfs("mode=0755,size=64k", Step::Cgroups, top)?;
        attach(tmpfs, &target, Step::Cgroups, top)?;
        for (name, target) in &cgroups.links {
            root.symlink(&top.join(name), target, Step::Cgroups)?;
        }
    }
    for hierarchy in &cgroups.hierarchies {
        let dst = top.join(&hierarchy.dir);
        let target = root.mount_point(&dst, Kind::Dir)?;
        let (fs_type, options) = match &hierarchy.v1_options {
            Some(options) => ("cgroup", options.as_str()),
            None => ("cgroup2", ""),
        };
        let view = new_mount(fs_type, options, read_only_attrs(), Step::Cgroups, &dst)?;
        attach(view, &target, Step::Cgroups, &dst)?;
    }
    if cgroups.tmpfs {
        let tmpfs = root.dir(top)?;
        sys::make_read_only(MountRef::Tree(tmpfs.as_fd()), false).map_err(fail(
            Step::Cgroups,
            "mount_setattr",
            Some(top),
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

/// Listens on each forwarded address inside, now that `lo` is up, and hands the sockets
/// to the supervisor, which accepts on them and relays each connection to the host.
fn listen_for_forwards(plan: &Plan, fds: &ChildFds) -> Setup {
    for (index, address) in plan.forwards.iter().enumerate() {
        let text = PathBuf::from(address.to_string());
        let at = |syscall| fail(Step::Forward, syscall, Some(&text));
        let errno = |e: rustix::io::Errno| Errno::from_raw(e.raw_os_error());
        let family = match address {
            SocketAddr::V4(_) => rustix::net::AddressFamily::INET,
            SocketAddr::V6(_) => rustix::net::AddressFamily::INET6,
        };
        let socket = rustix::net::socket_with(
            family,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| at("socket")(errno(e)))?;
        rustix::net::bind(&socket, address).map_err(|e| at("bind")(errno(e)))?;
        rustix::net::listen(&socket, 128).map_err(|e| at("listen")(errno(e)))?;
        hand_over(fds, Handed::Listener(index as u32), socket.as_fd()).map_err(at("sendmsg"))?;
    }
    Ok(())
}

/// Sends the supervisor `fd` for what `handed` says; [`Plan::hands_over`] made the socket.
fn hand_over(fds: &ChildFds, handed: Handed, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let socket = fds.handover.as_ref().ok_or(Errno::EBADF)?;
    sys::send_fd(socket.as_fd(), handed, fd)
}

/// Everything is handed over: from here on nothing in the sandbox can send the
/// supervisor a descriptor, and the supervisor sees the end of the handover.
fn close_handover(fds: &mut ChildFds) {
    fds.handover = None;
}

/// The sandbox's session belongs to pid 1, so that the program is not a session leader
/// (a tty it opens does not become its controlling terminal, and closing it hangs
/// nothing up) and getsid() inside names a process inside.
fn lead_session() -> Setup {
    rustix::process::setsid()
        .map(drop)
        .map_err(|e| SetupError::new(Step::Session, "setsid", None, errno(e)))
}

/// A pty from the sandbox's own devpts, so that the program's terminal is one it can see
/// (`tty`, `ttyname()`); the master goes to the supervisor, the slave becomes the
/// session's controlling terminal and the program's stdio.
fn open_terminal(plan: &Plan, fds: &ChildFds) -> Setup<OwnedFd> {
    let ptmx = Path::new("/dev/pts/ptmx");
    let fail_at = |syscall| move |e| SetupError::new(Step::Terminal, syscall, Some(ptmx), errno(e));
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master =
        rustix::fs::open(ptmx, flags.into(), rustix::fs::Mode::empty()).map_err(fail_at("open"))?;
    rustix::pty::unlockpt(&master).map_err(fail_at("ioctl(TIOCSPTLCK)"))?;
    let slave =
        rustix::pty::ioctl_tiocgptpeer(&master, flags).map_err(fail_at("ioctl(TIOCGPTPEER)"))?;
    if let Some(size) = plan.tty_size {
        rustix::termios::tcsetwinsize(&slave, size).map_err(fail_at("ioctl(TIOCSWINSZ)"))?;
    }
    rustix::process::ioctl_tiocsctty(&slave).map_err(fail_at("ioctl(TIOCSCTTY)"))?;
    hand_over(fds, Handed::Terminal, master.as_fd())
        .map_err(|e| SetupError::new(Step::Terminal, "sendmsg", None, e))?;
    Ok(slave)
}
