//! Removes the sandbox cgroups of a process that died without removing them itself
//! (SIGKILL, or killed with its runner): cgroups outlive their processes, and a leftover
//! cgroup is a leak on the host.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::cgroup;

/// The write end of the janitor's pipe, held until this process ends.
static LIFELINE: OnceLock<OwnedFd> = OnceLock::new();

/// Before this process makes its first sandbox cgroup: removes the cgroups that dead
/// processes left under `parents`, and forks a janitor that waits for this process to
/// end and then removes whatever it left. Later calls do nothing.
///
/// Call only from a single-threaded process (as [`crate::Sandbox::spawn`] checks).
pub(crate) fn ensure(parents: &[PathBuf]) {
    if LIFELINE.get().is_some() {
        return;
    }
    cgroup::sweep(parents, None);
    let Ok((read, write)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    let owner = std::process::id() as i32;
    // SAFETY: the caller is single-threaded; the child only polls, removes directories
    // and _exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(write);
            wait_and_sweep(read, parents, owner)
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            let _ = LIFELINE.set(write);
        }
        Err(_) => {}
    }
}

fn wait_and_sweep(read: OwnedFd, parents: &[PathBuf], owner: i32) -> ! {
    // Out of the owner's session, so that the terminal's Ctrl-C does not end it early,
    // and holding none of its descriptors, so that nobody waits for our end of a pipe.
    let _ = nix::unistd::setsid();
    if let Ok(null) = nix::fcntl::open(
        c"/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    ) {
        for fd in 0..3 {
            // SAFETY: dup2 onto a standard descriptor; both are plain integers here.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    // SAFETY: this forked child ends in _exit below, and the owners of the descriptors it
    // closes sit in the owner's frames, which never resume here.
    unsafe { crate::sys::close_fds_except(&[read.as_raw_fd()]) };
    let mut poll = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
    // Only the owner's end of the pipe closing (its exit) wakes us.
    while !matches!(nix::poll::poll(&mut poll, PollTimeout::NONE), Ok(n) if n > 0) {}
    cgroup::sweep(parents, Some(owner));
    // SAFETY: _exit ends this process at once, skipping the owner's atexit handlers.
    unsafe { libc::_exit(0) }
}
