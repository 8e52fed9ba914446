//! What `cargo isotest doctor` knows about a host: the facts that decide whether rootless
//! sandboxes work, a classifier from a failed setup step to its cause and exact fix, and
//! probes for features that need more than the sandbox itself (overlayfs, cgroups).
//!
//! The classifier is a pure function of a [`SetupError`] and [`HostFacts`], because the
//! hosts it knows about (Ubuntu's AppArmor restriction, Docker's seccomp profile, Debian's
//! sysctl) cannot all be reproduced on one machine; its tests inject what each produces.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::sys::wait::WaitStatus;
use serde::Serialize;

use crate::error::{SetupError, Step, errno_text};

const APPARMOR_RESTRICT: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
const UNPRIVILEGED_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
/// Where the sysctl fixes are persisted, so that they survive a reboot.
const SYSCTL_FILE: &str = "/etc/sysctl.d/60-isotest.conf";
const APPARMOR_PROFILE: &str = "/etc/apparmor.d/cargo-isotest";
/// The one mount under /proc that the kernel tolerates: it sits on a permanently empty
/// directory, so it hides nothing.
const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";
const CAP_SYS_ADMIN: u32 = 21;

/// Everything about the host that the diagnosis depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub kernel_release: String,
    pub euid: u32,
    /// CAP_SYS_ADMIN is effective: the userns sysctls and the AppArmor restriction spare it.
    pub cap_sys_admin: bool,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10 and later).
    pub apparmor_restrict_unprivileged_userns: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian's kernels).
    pub unprivileged_userns_clone: Option<u64>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `/.dockerenv` exists: this is a Docker container.
    pub dockerenv: bool,
    pub seccomp: Option<SeccompMode>,
    /// Mounts on top of parts of /proc, which stop a fresh /proc from being mounted.
    pub proc_overmounts: Vec<PathBuf>,
    /// This program, which an AppArmor profile has to name.
    pub executable: Option<PathBuf>,
}

/// The `Seccomp:` line of /proc/self/status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompMode {
    Disabled,
    Strict,
    Filter,
}

impl HostFacts {
    /// Reads the facts of the host this process runs on.
    pub fn read() -> HostFacts {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let cap_eff = status_field(&status, "CapEff")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .unwrap_or(0);
        let seccomp = match status_field(&status, "Seccomp") {
            Some("0") => Some(SeccompMode::Disabled),
            Some("1") => Some(SeccompMode::Strict),
            Some("2") => Some(SeccompMode::Filter),
            _ => None,
        };
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        HostFacts {
            kernel_release: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            euid: nix::unistd::geteuid().as_raw(),
            cap_sys_admin: cap_eff & (1 << CAP_SYS_ADMIN) != 0,
            apparmor_restrict_unprivileged_userns: read_sysctl(APPARMOR_RESTRICT),
            unprivileged_userns_clone: read_sysctl(UNPRIVILEGED_USERNS_CLONE),
            max_user_namespaces: read_sysctl(MAX_USER_NAMESPACES),
            dockerenv: Path::new("/.dockerenv").exists(),
            seccomp,
            proc_overmounts: proc_overmounts(&parse_mountinfo(&mountinfo)),
            executable: std::env::current_exe().ok(),
        }
    }

    fn apparmor_restricts_us(&self) -> bool {
        self.apparmor_restrict_unprivileged_userns == Some(1) && !self.cap_sys_admin
    }

    fn userns_clone_forbids_us(&self) -> bool {
        self.unprivileged_userns_clone == Some(0) && !self.cap_sys_admin
    }
}

fn read_sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of a `Name:\tvalue` line of /proc/self/status.
fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

/// One line of /proc/self/mountinfo, with the kernel's octal escapes undone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    /// The directory of the filesystem that appears at `mount_point`.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Parses /proc/self/mountinfo, skipping lines it cannot read.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            // Optional fields (shared:N, master:N) vary in number; a lone `-` ends them.
            let separator = fields.iter().skip(6).position(|f| *f == "-")? + 6;
            Some(MountEntry {
                root: PathBuf::from(OsStr::from_bytes(&unescape(fields.get(3)?))),
                mount_point: PathBuf::from(OsStr::from_bytes(&unescape(fields.get(4)?))),
                fs_type: String::from_utf8_lossy(&unescape(fields.get(separator + 1)?))
                    .into_owned(),
                source: String::from_utf8_lossy(&unescape(fields.get(separator + 2)?)).into_owned(),
            })
        })
        .collect()
}

/// Undoes the `\ooo` escapes the kernel writes for space, tab, newline and backslash.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3'
        });
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |n, d| n * 8 + (d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Mounts that cover part of /proc. The kernel mounts a fresh proc in a user namespace only
/// when an existing one is fully visible (mnt_already_visible), so each of these blocks it.
pub fn proc_overmounts(mounts: &[MountEntry]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for mount in mounts {
        let path = &mount.mount_point;
        if path.starts_with("/proc")
            && path != Path::new("/proc")
            && path != Path::new(BINFMT_MISC)
            && !paths.contains(path)
        {
            paths.push(path.clone());
        }
    }
    paths
}

/// Why a sandbox could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns=1`.
    AppArmorRestriction,
    /// A seccomp filter, usually Docker's default profile, refuses namespace flags.
    Seccomp,
    /// Docker's AppArmor profile (docker-default) denies mount.
    DockerAppArmor,
    /// `user.max_user_namespaces=0`.
    MaxUserNamespaces,
    /// Debian's `kernel.unprivileged_userns_clone=0`.
    UnprivilegedUsernsClone,
    /// Parts of /proc are covered by mounts, so no fresh /proc may be mounted.
    ProcOvermounted,
    /// None of the known causes fits.
    Unknown,
}

/// A cause, what it means here, and the commands that fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub cause: Cause,
    pub summary: String,
    pub fix: String,
}

/// Classifies a failed setup step by its errno and the host's facts.
///
/// Where several causes apply, the one the kernel meets first wins: a seccomp filter runs
/// before the syscall looks at any sysctl, and a masked /proc is certain where AppArmor's
/// part in a refused mount is only likely.
pub fn diagnose(failure: &SetupError, facts: &HostFacts) -> Diagnosis {
    let errno = failure.errno();
    let denied = matches!(errno, Errno::EPERM | Errno::EACCES);
    let filtered = facts.seccomp == Some(SeccompMode::Filter);
    match failure.step {
        Step::Clone if errno == Errno::ENOSPC && facts.max_user_namespaces == Some(0) => {
            max_user_namespaces()
        }
        Step::Clone if matches!(errno, Errno::EPERM | Errno::ENOSYS) && filtered => {
            seccomp(failure, facts)
        }
        Step::Clone if errno == Errno::EPERM && facts.userns_clone_forbids_us() => {
            unprivileged_userns_clone()
        }
        Step::Setgroups | Step::UidMap | Step::GidMap
            if denied && facts.apparmor_restricts_us() =>
        {
            apparmor_restriction(failure, facts)
        }
        Step::Proc if errno == Errno::EPERM && !facts.proc_overmounts.is_empty() => {
            proc_overmounted(facts)
        }
        step if is_mount_step(step) && denied && facts.apparmor_restricts_us() => {
            apparmor_restriction(failure, facts)
        }
        step if is_mount_step(step) && denied && facts.dockerenv => docker_apparmor(failure),
        _ => unknown(failure),
    }
}

fn is_mount_step(step: Step) -> bool {
    match step {
        Step::PrivateMounts
        | Step::BindSource
        | Step::RootTmpfs
        | Step::Bind
        | Step::Tmpfs
        | Step::Proc
        | Step::Dev
        | Step::PivotRoot
        | Step::Seal => true,
        Step::Clone
        | Step::DeathSignal
        | Step::Setgroups
        | Step::UidMap
        | Step::GidMap
        | Step::Mountpoint
        | Step::Symlink
        | Step::Hostname
        | Step::Loopback
        | Step::Init => false,
    }
}

/// `mount(/proc) returned EPERM (Operation not permitted)`.
pub fn failed_call(failure: &SetupError) -> String {
    let path = failure
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!(
        "{}({path}) returned {}",
        failure.syscall,
        errno_text(failure.errno)
    )
}

/// Shell lines that set a sysctl now and at every boot.
fn sysctl_fix(key: &str, value: &str) -> String {
    format!("  sudo sysctl -w {key}={value}\n  echo '{key} = {value}' | sudo tee {SYSCTL_FILE}")
}

fn max_user_namespaces() -> Diagnosis {
    Diagnosis {
        cause: Cause::MaxUserNamespaces,
        summary: "user namespaces are disabled on this host (user.max_user_namespaces=0), \
                  so creating one fails with ENOSPC"
            .into(),
        fix: format!(
            "Allow user namespaces again:\n{}",
            sysctl_fix("user.max_user_namespaces", "15000")
        ),
    }
}

fn unprivileged_userns_clone() -> Diagnosis {
    Diagnosis {
        cause: Cause::UnprivilegedUsernsClone,
        summary: "unprivileged user namespaces are disabled on this host \
                  (kernel.unprivileged_userns_clone=0), so creating one fails with EPERM \
                  for users without CAP_SYS_ADMIN"
            .into(),
        fix: format!(
            "Allow unprivileged user namespaces:\n{}",
            sysctl_fix("kernel.unprivileged_userns_clone", "1")
        ),
    }
}

fn seccomp(failure: &SetupError, facts: &HostFacts) -> Diagnosis {
    let call = failed_call(failure);
    let (summary, mut fix) = if facts.dockerenv {
        (
            format!(
                "this is a Docker container, and Docker's default seccomp profile refuses \
                 to create namespaces: {call}"
            ),
            "Start the container without Docker's seccomp filter:\n  \
             docker run --security-opt seccomp=unconfined ...\n\
             or with a custom profile (--security-opt seccomp=PROFILE.json) that allows clone, \
             clone3, unshare, setns and mount with namespace flags.\n\
             Docker's AppArmor profile also forbids mount, so on AppArmor hosts add\n  \
             --security-opt apparmor=unconfined\n\
             and the sandbox's fresh /proc also needs Docker's masked /proc paths lifted:\n  \
             --security-opt systempaths=unconfined"
                .to_string(),
        )
    } else {
        (
            format!(
                "this process runs under a seccomp filter (Seccomp: 2 in /proc/self/status), \
                 most likely a container runtime's default profile, and it refuses to create \
                 namespaces: {call}"
            ),
            "Start the container without the seccomp filter, or with a profile that allows \
             clone, clone3, unshare, setns and mount with namespace flags:\n  \
             docker/podman: --security-opt seccomp=unconfined\n  \
             Kubernetes: securityContext.seccompProfile.type: Unconfined"
                .to_string(),
        )
    };
    if facts.userns_clone_forbids_us() {
        fix.push_str(&format!(
            "\nThe host also disables unprivileged user namespaces \
             (kernel.unprivileged_userns_clone=0); on the host, run:\n{}",
            sysctl_fix("kernel.unprivileged_userns_clone", "1")
        ));
    }
    Diagnosis {
        cause: Cause::Seccomp,
        summary,
        fix,
    }
}

fn apparmor_restriction(failure: &SetupError, facts: &HostFacts) -> Diagnosis {
    let binary = facts
        .executable
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/path/to/cargo-isotest".into());
    // AppArmor reads an unquoted path up to the first blank.
    let attach = if binary.contains(char::is_whitespace) {
        format!("\"{binary}\"")
    } else {
        binary
    };
    Diagnosis {
        cause: Cause::AppArmorRestriction,
        summary: format!(
            "AppArmor restricts unprivileged user namespaces on this host \
             (kernel.apparmor_restrict_unprivileged_userns=1): the namespaces were created, \
             but then {step} was refused: {}",
            failed_call(failure),
            step = failure.step,
        ),
        fix: format!(
            "Best: allow user namespaces to cargo-isotest alone, with an AppArmor profile:\n  \
             sudo tee {APPARMOR_PROFILE} <<'EOF'\n  \
             abi <abi/4.0>,\n  \
             include <tunables/global>\n\n  \
             profile cargo-isotest {attach} flags=(unconfined) {{\n    \
             userns,\n\n    \
             include if exists <local/cargo-isotest>\n  \
             }}\n  \
             EOF\n  \
             sudo apparmor_parser -r {APPARMOR_PROFILE}\n\
             The profile names the binary by its path: write it again if cargo-isotest moves.\n\
             Or lift the restriction for every program:\n{}",
            sysctl_fix("kernel.apparmor_restrict_unprivileged_userns", "0")
        ),
    }
}

fn proc_overmounted(facts: &HostFacts) -> Diagnosis {
    let paths: Vec<String> = facts
        .proc_overmounts
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Diagnosis {
        cause: Cause::ProcOvermounted,
        summary: format!(
            "parts of /proc are masked by mounts ({}), and the kernel refuses a fresh /proc \
             in a user namespace while any part of the existing one is hidden",
            paths.join(", ")
        ),
        fix: format!(
            "Start the container with /proc unmasked:\n  \
             Docker: docker run --security-opt systempaths=unconfined ...\n  \
             Podman: podman run --security-opt unmask=ALL ...\n  \
             Kubernetes: securityContext.procMount: Unmasked (with hostUsers: false)\n\
             Outside a container runtime, unmount them:\n  \
             sudo umount {}",
            paths.join(" ")
        ),
    }
}

fn docker_apparmor(failure: &SetupError) -> Diagnosis {
    Diagnosis {
        cause: Cause::DockerAppArmor,
        summary: format!(
            "this is a Docker container, and Docker's AppArmor profile (docker-default) \
             forbids mount: {}",
            failed_call(failure)
        ),
        fix: "Start the container without Docker's AppArmor profile:\n  \
              docker run --security-opt apparmor=unconfined ...\n\
              The sandbox's fresh /proc also needs Docker's masked /proc paths lifted:\n  \
              --security-opt systempaths=unconfined"
            .into(),
    }
}

fn unknown(failure: &SetupError) -> Diagnosis {
    let path = failure
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into());
    Diagnosis {
        cause: Cause::Unknown,
        summary: format!(
            "sandbox setup failed for a reason cargo isotest does not recognise: step `{}`, \
             syscall {}, path {path}, errno {}",
            failure.step,
            failure.syscall,
            errno_text(failure.errno)
        ),
        fix: format!(
            "Please file an issue at {}/issues with the output of `cargo isotest doctor`.",
            env!("CARGO_PKG_REPOSITORY")
        ),
    }
}

/// The parts of sandbox setup that doctor reports, in the order setup does them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Namespaces,
    IdMaps,
    Mounts,
    Proc,
    Dev,
    PivotRoot,
    Hostname,
    Loopback,
    Program,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Namespaces,
        Stage::IdMaps,
        Stage::Mounts,
        Stage::Proc,
        Stage::Dev,
        Stage::PivotRoot,
        Stage::Hostname,
        Stage::Loopback,
        Stage::Program,
    ];

    /// The stage a failure belongs to. Mountpoints for /proc and /dev are made by those
    /// stages, after the spec's mounts, so their path decides.
    pub fn of(failure: &SetupError) -> Stage {
        match failure.step {
            Step::Clone | Step::DeathSignal => Stage::Namespaces,
            Step::Setgroups | Step::UidMap | Step::GidMap => Stage::IdMaps,
            Step::Mountpoint => match &failure.path {
                Some(path) if path.starts_with("/proc") => Stage::Proc,
                Some(path) if path.starts_with("/dev") => Stage::Dev,
                _ => Stage::Mounts,
            },
            Step::PrivateMounts
            | Step::BindSource
            | Step::RootTmpfs
            | Step::Bind
            | Step::Tmpfs
            | Step::Symlink => Stage::Mounts,
            Step::Proc => Stage::Proc,
            Step::Dev => Stage::Dev,
            Step::PivotRoot | Step::Seal => Stage::PivotRoot,
            Step::Hostname => Stage::Hostname,
            Step::Loopback => Stage::Loopback,
            Step::Init => Stage::Program,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Stage::Namespaces => "namespaces",
            Stage::IdMaps => "uid/gid maps",
            Stage::Mounts => "mounts",
            Stage::Proc => "proc",
            Stage::Dev => "dev",
            Stage::PivotRoot => "pivot_root",
            Stage::Hostname => "hostname",
            Stage::Loopback => "loopback",
            Stage::Program => "program start",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    Passed,
    Failed,
    NotReached,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StageResult {
    pub stage: Stage,
    pub status: StageStatus,
}

/// Every stage's result, given the stage that failed, if any: setup stops at the first
/// failure, so the stages before it passed and those after it never ran.
pub fn stage_results(failed: Option<Stage>) -> Vec<StageResult> {
    Stage::ALL
        .iter()
        .map(|&stage| StageResult {
            stage,
            status: match failed {
                Some(f) if stage == f => StageStatus::Failed,
                Some(f) if stage > f => StageStatus::NotReached,
                _ => StageStatus::Passed,
            },
        })
        .collect()
}

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
        Some(c"lowerdir=lower,upperdir=rw/upper,workdir=rw/work"),
    )
    .map_err(at(7))
}

/// How the host's cgroup filesystems are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupLayout {
    /// Only cgroup2: the layout that allows delegation to unprivileged users.
    Unified,
    /// cgroup v1 hierarchies, with a cgroup2 one beside them.
    Hybrid,
    /// cgroup v1 only.
    Legacy,
    /// No cgroup filesystem is mounted.
    None,
}

/// This process's cgroup2, and whether it can make child cgroups for sandboxes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupInfo {
    pub layout: CgroupLayout,
    /// Where cgroup2 is mounted.
    pub mount_point: Option<PathBuf>,
    /// The `0::/path` entry of /proc/self/cgroup.
    pub path: Option<String>,
    /// That cgroup's directory, when it is visible in this mount namespace.
    pub directory: Option<PathBuf>,
    pub writable: bool,
    /// Controllers enabled for child cgroups, from cgroup.subtree_control.
    pub subtree_control: Option<Vec<String>>,
}

impl CgroupInfo {
    pub fn read() -> CgroupInfo {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = parse_mountinfo(&mountinfo);
        let path = cgroup2_path(&own);
        let located = path.as_deref().and_then(|p| cgroup2_directory(&mounts, p));
        let directory = located.as_ref().map(|(_, dir)| dir.clone());
        let writable = directory.as_ref().is_some_and(|dir| {
            rustix::fs::access(dir.as_path(), rustix::fs::Access::WRITE_OK).is_ok()
        });
        let subtree_control = directory.as_ref().and_then(|dir| {
            let text = std::fs::read_to_string(dir.join("cgroup.subtree_control")).ok()?;
            Some(text.split_whitespace().map(str::to_string).collect())
        });
        CgroupInfo {
            layout: cgroup_layout(&mounts),
            mount_point: located.map(|(mount, _)| mount).or_else(|| {
                cgroup2_mounts(&mounts)
                    .next()
                    .map(|m| m.mount_point.clone())
            }),
            path,
            directory,
            writable,
            subtree_control,
        }
    }
}

fn cgroup2_mounts(mounts: &[MountEntry]) -> impl Iterator<Item = &MountEntry> {
    mounts.iter().filter(|m| m.fs_type == "cgroup2")
}

pub fn cgroup_layout(mounts: &[MountEntry]) -> CgroupLayout {
    let v2 = cgroup2_mounts(mounts).next().is_some();
    let v1 = mounts.iter().any(|m| m.fs_type == "cgroup");
    match (v2, v1) {
        (true, false) => CgroupLayout::Unified,
        (true, true) => CgroupLayout::Hybrid,
        (false, true) => CgroupLayout::Legacy,
        (false, false) => CgroupLayout::None,
    }
}

/// The path of the `0::/path` line of /proc/self/cgroup.
pub fn cgroup2_path(proc_self_cgroup: &str) -> Option<String> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_string)
}

/// The cgroup2 mount that shows `path`, and the directory of `path` under it. A mount's
/// root is the cgroup it shows at its mount point (not `/` when a container has no cgroup
/// namespace of its own).
pub fn cgroup2_directory(mounts: &[MountEntry], path: &str) -> Option<(PathBuf, PathBuf)> {
    cgroup2_mounts(mounts).find_map(|mount| {
        let rest = Path::new(path).strip_prefix(&mount.root).ok()?;
        // Joining an empty path would add a trailing slash.
        let directory = if rest.as_os_str().is_empty() {
            mount.mount_point.clone()
        } else {
            mount.mount_point.join(rest)
        };
        Some((mount.mount_point.clone(), directory))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(step: Step, syscall: &str, path: Option<&str>, errno: Errno) -> SetupError {
        SetupError::new(step, syscall, path.map(Path::new), errno)
    }

    /// An ordinary user on a host where nothing stands in the way.
    fn plain_host() -> HostFacts {
        HostFacts {
            kernel_release: "6.8.0-45-generic".into(),
            euid: 1000,
            cap_sys_admin: false,
            apparmor_restrict_unprivileged_userns: None,
            unprivileged_userns_clone: None,
            max_user_namespaces: Some(63_000),
            dockerenv: false,
            seccomp: Some(SeccompMode::Disabled),
            proc_overmounts: Vec::new(),
            executable: Some("/home/me/.cargo/bin/cargo-isotest".into()),
        }
    }

    fn ubuntu() -> HostFacts {
        HostFacts {
            apparmor_restrict_unprivileged_userns: Some(1),
            ..plain_host()
        }
    }

    fn docker() -> HostFacts {
        HostFacts {
            euid: 0,
            dockerenv: true,
            seccomp: Some(SeccompMode::Filter),
            proc_overmounts: ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/sys"]
                .map(PathBuf::from)
                .to_vec(),
            ..plain_host()
        }
    }

    fn clone_eperm() -> SetupError {
        failure(Step::Clone, "clone", None, Errno::EPERM)
    }

    #[test]
    fn ubuntu_apparmor_restriction_refusing_the_uid_map() {
        let failure = failure(
            Step::UidMap,
            "write",
            Some("/proc/self/uid_map"),
            Errno::EPERM,
        );
        let d = diagnose(&failure, &ubuntu());
        assert_eq!(d.cause, Cause::AppArmorRestriction);
        assert!(d.summary.contains("uid-map"), "{}", d.summary);
        assert!(
            d.fix.contains(
                "profile cargo-isotest /home/me/.cargo/bin/cargo-isotest flags=(unconfined) {"
            ),
            "{}",
            d.fix
        );
        for line in [
            "abi <abi/4.0>,",
            "include <tunables/global>",
            "userns,",
            "include if exists <local/cargo-isotest>",
            "sudo tee /etc/apparmor.d/cargo-isotest",
            "sudo apparmor_parser -r /etc/apparmor.d/cargo-isotest",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
            "/etc/sysctl.d/60-isotest.conf",
        ] {
            assert!(d.fix.contains(line), "missing {line:?} in\n{}", d.fix);
        }
    }

    #[test]
    fn ubuntu_apparmor_restriction_refusing_a_mount() {
        let failure = failure(Step::PrivateMounts, "mount", Some("/"), Errno::EACCES);
        assert_eq!(
            diagnose(&failure, &ubuntu()).cause,
            Cause::AppArmorRestriction
        );
    }

    #[test]
    fn apparmor_profile_quotes_a_binary_path_with_spaces() {
        let facts = HostFacts {
            executable: Some("/opt/my tools/cargo-isotest".into()),
            ..ubuntu()
        };
        let failure = failure(
            Step::GidMap,
            "write",
            Some("/proc/self/gid_map"),
            Errno::EPERM,
        );
        let d = diagnose(&failure, &facts);
        assert!(
            d.fix
                .contains("profile cargo-isotest \"/opt/my tools/cargo-isotest\" flags"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn apparmor_restriction_spares_cap_sys_admin() {
        let facts = HostFacts {
            euid: 0,
            cap_sys_admin: true,
            ..ubuntu()
        };
        let failure = failure(
            Step::UidMap,
            "write",
            Some("/proc/self/uid_map"),
            Errno::EPERM,
        );
        assert_eq!(diagnose(&failure, &facts).cause, Cause::Unknown);
    }

    #[test]
    fn docker_seccomp_refusing_clone() {
        let d = diagnose(&clone_eperm(), &docker());
        assert_eq!(d.cause, Cause::Seccomp);
        assert!(d.summary.contains("Docker's default seccomp profile"));
        assert!(
            d.summary.contains("clone() returned EPERM"),
            "{}",
            d.summary
        );
        for flag in [
            "--security-opt seccomp=unconfined",
            "--security-opt apparmor=unconfined",
            "--security-opt systempaths=unconfined",
        ] {
            assert!(d.fix.contains(flag), "missing {flag} in\n{}", d.fix);
        }
        assert!(!d.fix.contains("unprivileged_userns_clone"), "{}", d.fix);
    }

    #[test]
    fn seccomp_filter_outside_docker() {
        let facts = HostFacts {
            dockerenv: false,
            ..docker()
        };
        let d = diagnose(&failure(Step::Clone, "clone3", None, Errno::ENOSYS), &facts);
        assert_eq!(d.cause, Cause::Seccomp);
        assert!(d.fix.contains("seccompProfile"), "{}", d.fix);
    }

    #[test]
    fn max_user_namespaces_zero() {
        let facts = HostFacts {
            max_user_namespaces: Some(0),
            ..plain_host()
        };
        let d = diagnose(&failure(Step::Clone, "clone3", None, Errno::ENOSPC), &facts);
        assert_eq!(d.cause, Cause::MaxUserNamespaces);
        assert!(
            d.fix
                .contains("sudo sysctl -w user.max_user_namespaces=15000")
        );
        assert!(d.fix.contains(
            "echo 'user.max_user_namespaces = 15000' | sudo tee /etc/sysctl.d/60-isotest.conf"
        ));
    }

    #[test]
    fn enospc_with_namespaces_allowed_is_not_the_sysctl() {
        let d = diagnose(
            &failure(Step::Clone, "clone3", None, Errno::ENOSPC),
            &plain_host(),
        );
        assert_eq!(d.cause, Cause::Unknown);
    }

    #[test]
    fn max_user_namespaces_beats_docker_on_enospc() {
        let facts = HostFacts {
            max_user_namespaces: Some(0),
            ..docker()
        };
        let d = diagnose(&failure(Step::Clone, "clone", None, Errno::ENOSPC), &facts);
        assert_eq!(d.cause, Cause::MaxUserNamespaces);
    }

    #[test]
    fn debian_unprivileged_userns_clone_zero() {
        let facts = HostFacts {
            unprivileged_userns_clone: Some(0),
            ..plain_host()
        };
        let d = diagnose(&clone_eperm(), &facts);
        assert_eq!(d.cause, Cause::UnprivilegedUsernsClone);
        assert!(
            d.fix
                .contains("sudo sysctl -w kernel.unprivileged_userns_clone=1")
        );
        assert!(d.fix.contains("/etc/sysctl.d/60-isotest.conf"));
    }

    #[test]
    fn debian_sysctl_does_not_stop_cap_sys_admin() {
        let facts = HostFacts {
            euid: 0,
            cap_sys_admin: true,
            unprivileged_userns_clone: Some(0),
            ..plain_host()
        };
        assert_eq!(diagnose(&clone_eperm(), &facts).cause, Cause::Unknown);
    }

    #[test]
    fn docker_seccomp_comes_before_the_debian_sysctl_and_names_both() {
        let facts = HostFacts {
            unprivileged_userns_clone: Some(0),
            ..docker()
        };
        let d = diagnose(&clone_eperm(), &facts);
        assert_eq!(d.cause, Cause::Seccomp);
        assert!(d.fix.contains("--security-opt seccomp=unconfined"));
        assert!(
            d.fix
                .contains("sudo sysctl -w kernel.unprivileged_userns_clone=1"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn debian_sysctl_in_docker_without_seccomp() {
        let facts = HostFacts {
            unprivileged_userns_clone: Some(0),
            seccomp: Some(SeccompMode::Disabled),
            ..docker()
        };
        assert_eq!(
            diagnose(&clone_eperm(), &facts).cause,
            Cause::UnprivilegedUsernsClone
        );
    }

    #[test]
    fn proc_overmounted_in_docker() {
        let facts = HostFacts {
            seccomp: Some(SeccompMode::Disabled),
            ..docker()
        };
        let d = diagnose(
            &failure(Step::Proc, "mount", Some("/proc"), Errno::EPERM),
            &facts,
        );
        assert_eq!(d.cause, Cause::ProcOvermounted);
        assert!(
            d.summary
                .contains("/proc/acpi, /proc/kcore, /proc/keys, /proc/sys"),
            "{}",
            d.summary
        );
        assert!(d.fix.contains("--security-opt systempaths=unconfined"));
        assert!(d.fix.contains("--security-opt unmask=ALL"));
        assert!(
            d.fix
                .contains("sudo umount /proc/acpi /proc/kcore /proc/keys /proc/sys"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn proc_overmounts_come_before_apparmor() {
        let facts = HostFacts {
            proc_overmounts: vec!["/proc/kcore".into()],
            ..ubuntu()
        };
        let d = diagnose(
            &failure(Step::Proc, "mount", Some("/proc"), Errno::EPERM),
            &facts,
        );
        assert_eq!(d.cause, Cause::ProcOvermounted);
        let facts = HostFacts {
            proc_overmounts: Vec::new(),
            ..facts
        };
        let d = diagnose(
            &failure(Step::Proc, "mount", Some("/proc"), Errno::EPERM),
            &facts,
        );
        assert_eq!(d.cause, Cause::AppArmorRestriction);
    }

    #[test]
    fn docker_apparmor_refusing_mounts() {
        let facts = HostFacts {
            seccomp: Some(SeccompMode::Disabled),
            ..docker()
        };
        let d = diagnose(
            &failure(Step::PrivateMounts, "mount", Some("/"), Errno::EACCES),
            &facts,
        );
        assert_eq!(d.cause, Cause::DockerAppArmor);
        assert!(d.fix.contains("--security-opt apparmor=unconfined"));
    }

    #[test]
    fn unknown_failure_is_stated_plainly() {
        let d = diagnose(
            &failure(
                Step::Loopback,
                "ioctl(SIOCSIFFLAGS)",
                Some("lo"),
                Errno::EPERM,
            ),
            &ubuntu(),
        );
        assert_eq!(d.cause, Cause::Unknown);
        for part in [
            "step `loopback`",
            "syscall ioctl(SIOCSIFFLAGS)",
            "path lo",
            "EPERM",
        ] {
            assert!(d.summary.contains(part), "missing {part} in {}", d.summary);
        }
        assert!(d.fix.contains("cargo isotest doctor"));
        assert!(d.fix.contains("/issues"));
    }

    /// /proc/self/mountinfo of `docker run` with the default security options, with a bind
    /// whose path has a space, a tab and a backslash.
    const DOCKER_MOUNTINFO: &str = "\
1015 862 0:84 / / rw,relatime master:405 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/0f3c/diff,workdir=/var/lib/docker/overlay2/0f3c/work
1016 1015 0:87 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1017 1015 0:88 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
1018 1017 0:89 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
1019 1015 0:90 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1020 1019 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot
1021 1017 0:86 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw
1022 1017 0:91 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k,inode64
1023 1015 259:2 /var/lib/docker/containers/0f3c/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
1024 1015 259:2 /var/lib/docker/containers/0f3c/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
1025 1015 259:2 /var/lib/docker/containers/0f3c/hosts /etc/hosts rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
1026 1015 259:2 /home/me/My\\040Project\\011(old)\\134x /work rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
863 1016 0:87 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw
864 1016 0:87 /fs /proc/fs ro,nosuid,nodev,noexec,relatime - proc proc rw
865 1016 0:87 /irq /proc/irq ro,nosuid,nodev,noexec,relatime - proc proc rw
866 1016 0:87 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
867 1016 0:87 /sysrq-trigger /proc/sysrq-trigger ro,nosuid,nodev,noexec,relatime - proc proc rw
868 1016 0:92 / /proc/acpi ro,relatime - tmpfs tmpfs ro,inode64
869 1016 0:88 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
870 1016 0:88 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
871 1016 0:88 /null /proc/timer_list rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
872 1016 0:93 / /proc/scsi ro,relatime - tmpfs tmpfs ro,inode64
873 1019 0:94 / /sys/firmware ro,relatime - tmpfs tmpfs ro,inode64
";

    #[test]
    fn mountinfo_of_a_docker_container() {
        let mounts = parse_mountinfo(DOCKER_MOUNTINFO);
        assert_eq!(mounts.len(), 23);
        assert_eq!(mounts[0].mount_point, Path::new("/"));
        assert_eq!(mounts[0].fs_type, "overlay");
        assert_eq!(mounts[1].fs_type, "proc");
        let work = mounts
            .iter()
            .find(|m| m.mount_point == Path::new("/work"))
            .unwrap();
        assert_eq!(work.root, Path::new("/home/me/My Project\t(old)\\x"));
        assert_eq!(work.source, "/dev/nvme0n1p2");
        assert_eq!(
            proc_overmounts(&mounts),
            [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
                "/proc/acpi",
                "/proc/kcore",
                "/proc/keys",
                "/proc/timer_list",
                "/proc/scsi",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn mountinfo_escapes_in_mount_points() {
        let mounts = parse_mountinfo(
            "40 27 0:50 / /mnt/a\\040b\\012c rw - tmpfs none\\040x rw\n\
             41 27 0:51 / /mnt/d\\\\x rw - tmpfs none rw\n\
             not a mountinfo line\n",
        );
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].mount_point, Path::new("/mnt/a b\nc"));
        assert_eq!(mounts[0].source, "none x");
        // A backslash not followed by an octal escape is kept as it is.
        assert_eq!(mounts[1].mount_point, Path::new("/mnt/d\\\\x"));
    }

    #[test]
    fn binfmt_misc_and_proc_itself_are_not_overmounts() {
        let mounts = parse_mountinfo(
            "22 27 0:21 / /proc rw,relatime shared:13 - proc proc rw\n\
             45 22 0:40 / /proc/sys/fs/binfmt_misc rw,relatime shared:24 - autofs systemd-1 rw,fd=29\n\
             80 45 0:45 / /proc/sys/fs/binfmt_misc rw,nosuid,nodev,noexec,relatime shared:41 - binfmt_misc binfmt_misc rw\n\
             27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n",
        );
        assert!(proc_overmounts(&mounts).is_empty());
    }

    #[test]
    fn cgroup_of_a_unified_host() {
        let mounts = parse_mountinfo(
            "35 27 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(cgroup_layout(&mounts), CgroupLayout::Unified);
        let path = cgroup2_path("0::/user.slice/user-1000.slice/session-2.scope\n").unwrap();
        assert_eq!(
            cgroup2_directory(&mounts, &path),
            Some((
                "/sys/fs/cgroup".into(),
                "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope".into()
            ))
        );
    }

    #[test]
    fn cgroup_of_a_hybrid_host_and_a_container_without_cgroupns() {
        let mounts = parse_mountinfo(
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             41 31 0:38 /docker/0f3c /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(cgroup_layout(&mounts), CgroupLayout::Hybrid);
        let own = "1:cpu:/docker/0f3c\n0::/docker/0f3c/init.scope\n";
        assert_eq!(
            cgroup2_directory(&mounts, &cgroup2_path(own).unwrap()),
            Some((
                "/sys/fs/cgroup/unified".into(),
                "/sys/fs/cgroup/unified/init.scope".into()
            ))
        );
        assert_eq!(cgroup2_directory(&mounts, "/elsewhere"), None);
        assert_eq!(
            cgroup2_directory(&mounts, "/docker/0f3c").map(|(_, dir)| dir),
            Some("/sys/fs/cgroup/unified".into())
        );
        assert_eq!(cgroup_layout(&mounts[..2]), CgroupLayout::Legacy);
        assert_eq!(cgroup_layout(&[]), CgroupLayout::None);
    }

    #[test]
    fn stages_before_the_failure_passed() {
        let failure = failure(Step::Proc, "mount", Some("/proc"), Errno::EPERM);
        let results = stage_results(Some(Stage::of(&failure)));
        let status = |stage| results.iter().find(|r| r.stage == stage).unwrap().status;
        assert_eq!(status(Stage::Mounts), StageStatus::Passed);
        assert_eq!(status(Stage::Proc), StageStatus::Failed);
        assert_eq!(status(Stage::Loopback), StageStatus::NotReached);
        assert!(
            stage_results(None)
                .iter()
                .all(|r| r.status == StageStatus::Passed)
        );
    }

    #[test]
    fn mountpoints_of_proc_and_dev_belong_to_those_stages() {
        let at = |path| {
            Stage::of(&failure(
                Step::Mountpoint,
                "mkdir",
                Some(path),
                Errno::EROFS,
            ))
        };
        assert_eq!(at("/dev/pts"), Stage::Dev);
        assert_eq!(at("/proc"), Stage::Proc);
        assert_eq!(at("/home/me/project"), Stage::Mounts);
    }
}
