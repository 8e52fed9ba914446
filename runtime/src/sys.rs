//! The few syscalls that neither nix nor rustix wrap, each behind a small safe-as-possible
//! function.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// rustix's errno as nix's, the type every setup step reports.
pub fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

/// `struct clone_args` of clone3(2), as of Linux 5.7.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3's flag to start the child in the cgroup2 directory `clone_args.cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Whether clone(2) may stand in for clone3. s390 takes the stack before the flags, and
/// sparc returns the parent's pid to the child, so there a filtered clone3 is an error.
const CLONE_FALLBACK: bool = !cfg!(any(
    target_arch = "s390x",
    target_arch = "sparc",
    target_arch = "sparc64"
));

pub enum Forked {
    Child,
    Parent {
        pid: Pid,
        pidfd: OwnedFd,
        /// The child started in the cgroup asked for.
        into_cgroup: bool,
    },
}

/// Forks into new namespaces and returns a pidfd for the child, so that the host side can
/// wait for and signal it without pid-reuse races.
///
/// clone3 is tried first; clone(2) is the fallback where clone3 is filtered to ENOSYS
/// (Docker's default seccomp profile does this). The error names the syscall that failed.
///
/// With `cgroup` (a cgroup2 directory), the child starts in that cgroup (CLONE_INTO_CGROUP)
/// where the kernel can; where it cannot, it starts where the caller is, to be moved.
///
/// # Safety
/// The caller must be single-threaded: the child continues on a copy of this one thread, and
/// must end with `_exit` without returning into the caller's frames.
pub unsafe fn fork_into(
    flags: CloneFlags,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Forked, (&'static str, Errno)> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags.bits() as u64 | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: args is a valid clone_args of the size passed; without a stack the child
    // resumes here like fork(2), which the caller's single-threadedness makes sound.
    let clone3 = |args: &mut CloneArgs| unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let mut ret = clone3(&mut args);
    if ret == -1 && cgroup.is_some() && Errno::last() != Errno::ENOSYS {
        // A kernel before 5.7, or a cgroup clone3 cannot enter: the caller moves the child.
        args.flags &= !CLONE_INTO_CGROUP;
        args.cgroup = 0;
        ret = clone3(&mut args);
    }
    let mut syscall = "clone3";
    if ret == -1 && Errno::last() == Errno::ENOSYS && CLONE_FALLBACK {
        syscall = "clone";
        let raw_flags = flags.bits() as libc::c_ulong
            | libc::CLONE_PIDFD as libc::c_ulong
            | libc::SIGCHLD as libc::c_ulong;
        // SAFETY: as above; where CLONE_FALLBACK holds, the raw clone(2) takes flags, stack
        // and parent_tid first, stores the pidfd through parent_tid, and returns 0 in the
        // child.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                raw_flags,
                0usize,
                &mut pidfd as *mut RawFd,
                0usize,
                0usize,
            )
        };
    }
    match ret {
        -1 => Err((syscall, Errno::last())),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            into_cgroup: syscall == "clone3" && args.flags & CLONE_INTO_CGROUP != 0,
            pid: Pid::from_raw(pid as i32),
            // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Where a mount to make read-only is: a path, or a detached mount tree from open_tree.
pub enum MountRef<'a> {
    Path(&'a CStr),
    Tree(BorrowedFd<'a>),
}

/// Sets only the read-only flag, leaving every other flag as it is. The kernel locks
/// nosuid/nodev/noexec/atime on mounts inherited from a more privileged namespace, and
/// the classic `MS_REMOUNT|MS_BIND|MS_RDONLY` fails with EPERM unless it repeats them;
/// mount_setattr changes only what it is told to, and with AT_RECURSIVE it reaches every
/// submount too.
pub fn make_read_only(mount: MountRef<'_>, recursive: bool) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = if recursive { AT_RECURSIVE } else { 0 };
    let (dirfd, path) = match mount {
        MountRef::Path(path) => (libc::AT_FDCWD, path),
        MountRef::Tree(fd) => {
            flags |= libc::AT_EMPTY_PATH as libc::c_uint;
            (fd.as_raw_fd(), c"")
        }
    };
    // SAFETY: path is a valid C string and attr a valid mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// Closes every descriptor above 2 except those in `keep`.
///
/// # Safety
/// The descriptors closed still have owners (`OwnedFd`s, files) in this process's memory.
/// None of them may be used or dropped afterwards, or it would act on whatever reuses the
/// number: call this only in a forked child that ends in exec or `_exit`, before which
/// those owners are not touched.
pub unsafe fn close_fds_except(keep: &[RawFd]) {
    let close_range = |first: u32, last: u32| {
        if first <= last {
            // SAFETY: our caller guarantees that no owner of these descriptors uses them
            // again; close_range takes plain integers.
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        }
    };
    let mut keep: Vec<u32> = keep
        .iter()
        .map(|&fd| fd as u32)
        .filter(|&fd| fd > 2)
        .collect();
    keep.sort_unstable();
    let mut next = 3u32;
    for fd in keep {
        if fd > next {
            close_range(next, fd - 1);
        }
        next = next.max(fd + 1);
    }
    close_range(next, u32::MAX);
}

/// A forked child's last word before `_exit`: which of its steps failed, and the errno.
/// Sent on a close-on-exec pipe, so that the parent reads EOF when the child execs or
/// exits cleanly instead.
pub fn send_failure(pipe: BorrowedFd<'_>, step: u8, errno: Errno) {
    let mut message = [0u8; 5];
    message[0] = step;
    message[1..].copy_from_slice(&(errno as i32).to_le_bytes());
    let _ = nix::unistd::write(pipe, &message);
}

/// Reads what [`send_failure`] sent, or `None` at EOF.
pub fn receive_failure(pipe: BorrowedFd<'_>) -> Option<(u8, Errno)> {
    let mut message = [0u8; 5];
    let mut read = 0;
    while read < message.len() {
        match nix::unistd::read(pipe, &mut message[read..]) {
            Ok(0) => return None,
            Ok(n) => read += n,
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
    let errno = i32::from_le_bytes(message[1..].try_into().expect("four bytes"));
    Some((message[0], Errno::from_raw(errno)))
}

/// What a descriptor that setup hands the supervisor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handed {
    /// The master of the program's pty, from the sandbox's own devpts.
    Terminal,
    /// A listening socket inside the sandbox for `Spec::forwards[index]`.
    Listener(u32),
    /// The upper directory of the overlay that is the plan's mount number `index`.
    Upper(u32),
}

/// Sends `fd` with what it is for, as one datagram on a SEQPACKET socket.
pub fn send_fd(socket: BorrowedFd<'_>, handed: Handed, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let (tag, index) = match handed {
        Handed::Terminal => (b'T', 0),
        Handed::Listener(index) => (b'L', index),
        Handed::Upper(index) => (b'U', index),
    };
    let mut message = [0u8; 5];
    message[0] = tag;
    message[1..].copy_from_slice(&index.to_le_bytes());
    let iov = [std::io::IoSlice::new(&message)];
    let fds = [fd.as_raw_fd()];
    let control = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &control,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// What [`receive_fd`] found.
pub enum Received {
    Fd(Handed, OwnedFd),
    /// Nothing waiting yet.
    Empty,
    /// The other end is closed.
    Closed,
}

/// Receives one [`send_fd`] datagram, without blocking.
pub fn receive_fd(socket: BorrowedFd<'_>) -> Result<Received, Errno> {
    let mut message = [0u8; 5];
    let mut iov = [std::io::IoSliceMut::new(&mut message)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let received = match nix::sys::socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(received) => received,
        Err(Errno::EAGAIN) => return Ok(Received::Empty),
        Err(errno) => return Err(errno),
    };
    let mut fd = None;
    for cmsg in received.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed this descriptor in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fd.get_or_insert(owned);
            }
        }
    }
    let bytes = received.bytes;
    if bytes == 0 {
        return Ok(Received::Closed);
    }
    let (Some(fd), 5) = (fd, bytes) else {
        return Err(Errno::EBADMSG);
    };
    let index = u32::from_le_bytes(message[1..].try_into().expect("four bytes"));
    match message[0] {
        b'T' => Ok(Received::Fd(Handed::Terminal, fd)),
        b'L' => Ok(Received::Fd(Handed::Listener(index), fd)),
        b'U' => Ok(Received::Fd(Handed::Upper(index), fd)),
        _ => Err(Errno::EBADMSG),
    }
}
