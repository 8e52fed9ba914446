//! Where this process's cgroup2 is, and whether sandboxes could get child cgroups there.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::mountinfo::{MountEntry, parse_mountinfo};

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
}
