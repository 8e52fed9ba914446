//! Errors of sandbox creation, each carrying the step, syscall, path and errno.

use std::path::PathBuf;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use crate::limits::LimitsError;
use crate::spec::SpecError;

/// The steps of sandbox setup, in the order the kernel sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Creating the namespaces.
    Clone,
    /// Tying the sandbox's life to its supervisor.
    DeathSignal,
    /// Denying setgroups, which unprivileged gid maps require.
    Setgroups,
    UidMap,
    GidMap,
    /// Stopping mount events from propagating back to the host.
    PrivateMounts,
    /// Cloning a bind source's mount tree before the host root is hidden.
    BindSource,
    /// The tmpfs that becomes the sandbox's root.
    RootTmpfs,
    /// Making a mount point beneath the new root, never through a symlink.
    Mountpoint,
    Bind,
    Tmpfs,
    /// Layering a writable overlay over a read-only host directory (kernel 5.11 or newer,
    /// with `userxattr`, in a user namespace).
    Overlay,
    Symlink,
    Proc,
    /// Making the kernel-wide parts of /proc (sys, sysrq-trigger, irq, bus, fs, …) read-only.
    ProcReadOnly,
    Dev,
    /// The read-only /sys: a fresh sysfs, or the host's.
    Sys,
    /// Waiting until the supervisor has placed pid 1 in its cgroups.
    Cgroup,
    /// The sandbox's own cgroups at /sys/fs/cgroup.
    Cgroups,
    /// The time namespace whose clocks `--chaos uptime` sets, entered before the pivot.
    TimeNamespace,
    /// Capping the namespaces the program may create (`user.max_*_namespaces`).
    NamespaceLimit,
    PivotRoot,
    /// Making the root and /dev read-only once populated.
    Seal,
    Hostname,
    Loopback,
    /// Listening inside on the forwarded addresses and handing the sockets out.
    Forward,
    /// pid 1 taking the sandbox's session, so that the program is not a session leader.
    Session,
    /// Opening the program's pty in the sandbox's own devpts and passing its master out.
    Terminal,
    /// pid 1 preparing to start the program.
    Init,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self).ok();
        let name = text.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
        f.write_str(name)
    }
}

/// A setup step that failed inside the new namespaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("sandbox setup failed at step `{step}`: {syscall}({}) returned {}", .path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(), errno_text(*.errno))]
pub struct SetupError {
    pub step: Step,
    pub syscall: String,
    pub path: Option<PathBuf>,
    pub errno: i32,
}

impl SetupError {
    pub fn new(step: Step, syscall: &str, path: Option<&std::path::Path>, errno: Errno) -> Self {
        SetupError {
            step,
            syscall: syscall.to_string(),
            path: path.map(|p| p.to_path_buf()),
            errno: errno as i32,
        }
    }

    pub fn errno(&self) -> Errno {
        Errno::from_raw(self.errno)
    }

    /// The spec asked for a mount point that cannot exist (inside a read-only bind): the
    /// caller's options are wrong, not the host.
    pub fn is_spec_problem(&self) -> bool {
        self.step == Step::Mountpoint || self.replaced_socket().is_some()
    }

    /// The `--forward-unix` socket that is not one any more, or is now reached through
    /// a symlink: setup neither follows the link nor binds anything else.
    pub fn replaced_socket(&self) -> Option<&std::path::Path> {
        (self.step == Step::BindSource && matches!(self.errno(), Errno::ELOOP | Errno::ENOTSOCK))
            .then_some(self.path.as_deref())
            .flatten()
    }

    /// The symlink a mount point's path crossed, which setup refuses to follow.
    pub fn crossed_symlink(&self) -> Option<&std::path::Path> {
        (self.step == Step::Mountpoint && self.errno() == Errno::ELOOP)
            .then_some(self.path.as_deref())
            .flatten()
    }
}

/// `ENOENT (No such file or directory)`.
pub fn errno_text(errno: i32) -> String {
    let e = Errno::from_raw(errno);
    format!("{e:?} ({})", e.desc())
}

/// Everything that can go wrong running a sandbox, seen from the host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(
        "the sandbox must be created from a single-threaded process, but this one has {0} threads"
    )]
    MultiThreaded(usize),
    #[error("{syscall} failed on the host: {}", errno_text(*.errno as i32))]
    Host { syscall: &'static str, errno: Errno },
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(
        "{tool} could not map the sandbox's ids to this user's subordinate range ({status}): {stderr}\n\
         check this user's lines in /etc/subuid and /etc/subgid (`cargo isotest doctor`)"
    )]
    IdMapTool {
        tool: &'static str,
        status: String,
        stderr: String,
    },
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// pid 1 died without its report: killed from outside (a kill of its pid, the OOM
    /// killer), since nothing inside the sandbox can kill it. The sandbox was created.
    #[error(
        "the sandbox's init (host pid {pid}) ended without a report ({status}): something outside the sandbox killed it, such as a kill of that pid or the OOM killer"
    )]
    InitLost {
        pid: i32,
        status: String,
        signal: Option<i32>,
    },
    #[error("the sandbox's init sent an unreadable report: {0}")]
    Protocol(String),
    /// Setup handed the supervisor a descriptor it did not ask for, or not of its kind;
    /// the sandbox was killed.
    #[error("{0}")]
    Handover(String),
}

impl Error {
    pub(crate) fn host(syscall: &'static str) -> impl FnOnce(Errno) -> Error {
        move |errno| Error::Host { syscall, errno }
    }
}
