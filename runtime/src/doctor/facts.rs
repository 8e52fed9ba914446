//! The facts of the host that decide whether a rootless sandbox can be created here.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::mountinfo::{MountEntry, parse_mountinfo};

const APPARMOR_RESTRICT: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
const UNPRIVILEGED_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
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

    pub(super) fn apparmor_restricts_us(&self) -> bool {
        self.apparmor_restrict_unprivileged_userns == Some(1) && !self.cap_sys_admin
    }

    pub(super) fn userns_clone_forbids_us(&self) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::mountinfo::tests::DOCKER_MOUNTINFO;

    #[test]
    fn a_docker_container_masks_parts_of_proc() {
        assert_eq!(
            proc_overmounts(&parse_mountinfo(DOCKER_MOUNTINFO)),
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
    fn binfmt_misc_and_proc_itself_are_not_overmounts() {
        let mounts = parse_mountinfo(
            "22 27 0:21 / /proc rw,relatime shared:13 - proc proc rw\n\
             45 22 0:40 / /proc/sys/fs/binfmt_misc rw,relatime shared:24 - autofs systemd-1 rw,fd=29\n\
             80 45 0:45 / /proc/sys/fs/binfmt_misc rw,nosuid,nodev,noexec,relatime shared:41 - binfmt_misc binfmt_misc rw\n\
             27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n",
        );
        assert!(proc_overmounts(&mounts).is_empty());
    }
}
