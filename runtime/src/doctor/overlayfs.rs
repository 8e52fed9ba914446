//! The overlayfs probe: whether this host lets an unprivileged user namespace mount
//! overlayfs, which layered sandboxes need.

use std::ffi::{CStr, CString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::sys::wait::WaitStatus;
use serde::Serialize;

use crate::error::errno_text;

/// Why the overlayfs probe could not mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProbeError {
    #[error("{call} returned {}", errno_text(*.errno))]
    Call { call: String, errno: i32 },
    #[error("the probe's child ended without a report ({status})")]
    Lost { status: String },
}

impl ProbeError {
    fn call(call: &str) -> impl FnOnce(Errno) -> ProbeError + '_ {
        move |errno| ProbeError::Call {
            call: call.to_string(),
            errno: errno as i32,
        }
    }
}

/// What the probe's child does, in order; a failure reports its index here.
const OVERLAY_CALLS: [&str; 8] = [
    "unshare(CLONE_NEWUSER|CLONE_NEWNS)",
    "write(/proc/self/setgroups)",
    "write(/proc/self/uid_map)",
    "write(/proc/self/gid_map)",
    "chdir",
    "mount(tmpfs)",
    "mkdir",
    "mount(overlay)",
];

/// Mounts overlayfs inside a new user and mount namespace, in a forked child, under `dir`
/// (an empty directory the caller owns and removes).
///
/// The lower layer is a directory of the host's filesystem and the upper one a tmpfs, as a
/// sandbox would layer them, so nothing the overlay writes lands on the host.
pub fn probe_overlayfs(dir: &Path) -> Result<(), ProbeError> {
    for sub in ["lower", "rw", "merged"] {
        std::fs::create_dir(dir.join(sub)).map_err(|e| {
            ProbeError::call("mkdir")(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        })?;
    }
    // Everything the child touches is prepared here, so that it makes only raw syscalls
    // and is sound even if this process had other threads.
    let dir = CString::new(dir.as_os_str().as_bytes()).map_err(|_| ProbeError::Call {
        call: "chdir".into(),
        errno: libc::EINVAL,
    })?;
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    let uid_map = format!("{uid} {uid} 1\n");
    let gid_map = format!("{gid} {gid} 1\n");
    let (report_r, report_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(ProbeError::call("pipe2"))?;
    // SAFETY: the child only makes syscalls on memory prepared above, then _exits.
    match unsafe { nix::unistd::fork() }.map_err(ProbeError::call("fork"))? {
        nix::unistd::ForkResult::Child => {
            if let Err((index, errno)) = overlay_child(&dir, &uid_map, &gid_map) {
                crate::sys::send_failure(report_w.as_fd(), index, errno);
            }
            // SAFETY: _exit ends the child at once, without running the parent's cleanup.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(report_w);
            let failure = crate::sys::receive_failure(report_r.as_fd());
            let status = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Err(Errno::EINTR) => continue,
                    other => break other.map_err(ProbeError::call("waitpid"))?,
                }
            };
            if let Some((index, errno)) = failure {
                let call = OVERLAY_CALLS
                    .get(usize::from(index))
                    .unwrap_or(&"?")
                    .to_string();
                return Err(ProbeError::Call {
                    call,
                    errno: errno as i32,
                });
            }
            match status {
                WaitStatus::Exited(_, 0) => Ok(()),
                other => Err(ProbeError::Lost {
                    status: format!("{other:?}"),
                }),
            }
        }
    }
}

/// The probe's child: each failure carries its index in [`OVERLAY_CALLS`].
fn overlay_child(dir: &CStr, uid_map: &str, gid_map: &str) -> Result<(), (u8, Errno)> {
    let at = |index: u8| move |errno: Errno| (index, errno);
    // A mount namespace owned by a new user namespace cannot propagate mounts back to the
    // host, so nothing done here needs undoing.
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(at(0))?;
    let write_file = |path: &CStr, text: &str| -> nix::Result<()> {
        let fd = nix::fcntl::open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        nix::unistd::write(&fd, text.as_bytes()).map(drop)
    };
    match write_file(c"/proc/self/setgroups", "deny") {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(errno) => return Err((1, errno)),
    }
    write_file(c"/proc/self/uid_map", uid_map).map_err(at(2))?;
    write_file(c"/proc/self/gid_map", gid_map).map_err(at(3))?;
    nix::unistd::chdir(dir).map_err(at(4))?;
    nix::mount::mount(
        Some(c"tmpfs"),
        c"rw",
        Some(c"tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(c"mode=0700"),
    )
    .map_err(at(5))?;
    for sub in [c"rw/upper", c"rw/work"] {
        nix::unistd::mkdir(sub, Mode::from_bits_truncate(0o700)).map_err(at(6))?;
    }
    // Relative layer paths keep the temp directory's name out of the option string,
    // where a comma or colon in it would be misread.
    nix::mount::mount(
        Some(c"overlay"),
        c"merged",
        Some(c"overlay"),
        MsFlags::empty(),
        Some(c"lowerdir=lower,upperdir=rw/upper,workdir=rw/work,userxattr"),
    )
    .map_err(at(7))
}
