//! Which host facts the sandbox's /sys and /dev show, worked out on the host before clone:
//! the cgroup hierarchies to mount at `/sys/fs/cgroup`, and the names of the block devices
//! behind the sandbox's binds.

use std::collections::BTreeSet;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use crate::doctor::{MountEntry, parse_mountinfo};

/// Where the host keeps its cgroup hierarchies.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Device nodes bound from the host; a user namespace cannot mknod them.
pub(crate) const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
pub(crate) const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// The v1 controllers whose files tell a program the limits it runs under: CPUs
/// (`available_parallelism` reads the quota), memory and processes. The sandbox shows
/// only the hierarchies that hold one; each other mount would cost every sandbox its
/// setup and teardown while no test reads it.
const LIMIT_CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "pids"];

/// Directories of the sandbox's /dev beside its nodes and links.
const DEV_DIRS: &[&str] = &["pts", "shm"];

/// The host's `/sys/fs/cgroup`, as the sandbox rebuilds it from its own cgroup namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupMounts {
    /// `/sys/fs/cgroup` is a tmpfs holding one directory per hierarchy (legacy and hybrid
    /// hosts), rather than the v2 hierarchy itself.
    pub tmpfs: bool,
    pub hierarchies: Vec<Hierarchy>,
    /// Symlinks beside the hierarchies, such as `cpu -> cpu,cpuacct`.
    pub links: Vec<(PathBuf, PathBuf)>,
}

/// The host's mounts, read once per process: they do not change while tests run, and a
/// runner's helpers create thousands of sandboxes.
pub(crate) fn host_mounts() -> &'static [MountEntry] {
    static MOUNTS: OnceLock<Vec<MountEntry>> = OnceLock::new();
    MOUNTS.get_or_init(|| {
        parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    })
}

/// This host's cgroup hierarchies, read once per process.
pub(crate) fn host_cgroups() -> &'static CgroupMounts {
    static CGROUPS: OnceLock<CgroupMounts> = OnceLock::new();
    CGROUPS.get_or_init(|| {
        // /proc/cgroups: `#subsys_name hierarchy num_cgroups enabled`, one controller a line.
        let subsystems: Vec<String> = std::fs::read_to_string("/proc/cgroups")
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_whitespace().next().map(str::to_string))
            .collect();
        let links = std::fs::read_dir(CGROUP_ROOT)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let target = std::fs::read_link(entry.path()).ok()?;
                Some((PathBuf::from(entry.file_name()), target))
            })
            .collect();
        cgroup_layout(host_mounts(), &subsystems, links)
    })
}

/// The block devices behind binds of `sources`, as names below /dev that are block
/// devices on this host.
pub(crate) fn host_block_devices(sources: &[PathBuf]) -> Vec<PathBuf> {
    block_device_names(host_mounts(), sources)
        .into_iter()
        .filter(|name| {
            std::fs::metadata(Path::new("/dev").join(name))
                .is_ok_and(|m| m.file_type().is_block_device())
        })
        .collect()
}

/// One cgroup hierarchy to mount read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// Below `/sys/fs/cgroup`; empty for `/sys/fs/cgroup` itself.
    pub dir: PathBuf,
    /// The v1 mount options that name the hierarchy (`memory`, `cpu,cpuacct`,
    /// `none,name=systemd`); `None` for cgroup2.
    pub v1_options: Option<String>,
}

/// The host's cgroup mounts at and directly below `/sys/fs/cgroup`, as `mounts` (from
/// /proc/self/mountinfo) lists them; `subsystems` are the controller names of
/// /proc/cgroups, which tell a v1 hierarchy's name apart from its other options.
pub(crate) fn cgroup_layout(
    mounts: &[MountEntry],
    subsystems: &[String],
    links: Vec<(PathBuf, PathBuf)>,
) -> CgroupMounts {
    let root = Path::new(CGROUP_ROOT);
    // A later mount at the same place hides an earlier one.
    let top = mounts.iter().rev().find(|m| m.mount_point == root);
    match top.map(|m| m.fs_type.as_str()) {
        Some("cgroup2") => {
            return CgroupMounts {
                tmpfs: false,
                hierarchies: vec![Hierarchy {
                    dir: PathBuf::new(),
                    v1_options: None,
                }],
                links: Vec::new(),
            };
        }
        Some("tmpfs") => {}
        _ => return CgroupMounts::default(),
    }
    let mut seen = BTreeSet::new();
    let mut hierarchies: Vec<Hierarchy> = mounts
        .iter()
        .rev()
        .filter(|m| m.mount_point.parent() == Some(root))
        .filter(|m| seen.insert(m.mount_point.clone()))
        .filter_map(|m| {
            let dir = PathBuf::from(m.mount_point.file_name()?);
            let v1_options = match m.fs_type.as_str() {
                "cgroup2" => None,
                "cgroup" => {
                    let options = v1_name(&m.super_options, subsystems)?;
                    if !shows_limits(&options) {
                        return None;
                    }
                    Some(options)
                }
                _ => return None,
            };
            Some(Hierarchy { dir, v1_options })
        })
        .collect();
    hierarchies.sort_by(|a, b| a.dir.cmp(&b.dir));
    let names: BTreeSet<&Path> = hierarchies.iter().map(|h| h.dir.as_path()).collect();
    let links = links
        .into_iter()
        .filter(|(name, target)| {
            is_plain_name(name)
                && names.contains(target.as_path())
                && !names.contains(name.as_path())
        })
        .collect();
    CgroupMounts {
        tmpfs: true,
        hierarchies,
        links,
    }
}

/// The options that pick an existing v1 hierarchy: its controllers and its name. Anything
/// else (`release_agent`, `clone_children`, `xattr`) is the host's to set, and a user
/// namespace may not.
fn v1_name(super_options: &str, subsystems: &[String]) -> Option<String> {
    let mut controllers = Vec::new();
    let mut name = None;
    for option in super_options.split(',') {
        if subsystems.iter().any(|s| s == option) {
            controllers.push(option);
        } else if option.starts_with("name=") {
            name = Some(option);
        }
    }
    if controllers.is_empty() {
        return name.map(|name| format!("none,{name}"));
    }
    controllers.extend(name);
    Some(controllers.join(","))
}

fn shows_limits(v1_options: &str) -> bool {
    v1_options
        .split(',')
        .any(|option| LIMIT_CONTROLLERS.contains(&option))
}

fn is_plain_name(path: &Path) -> bool {
    let mut parts = path.components();
    matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none()
}

/// The `/dev` names (relative to /dev) of the block devices the host's mounts come from,
/// for the mounts a sandbox with binds of `sources` shows in its /proc/mounts: the mount
/// that holds each source, and every mount below one.
///
/// Tools read a disk's name from /proc/mounts and resolve it in /dev (sysinfo's disk list
/// does); an empty, unreadable placeholder by that name lets them, without a device node.
pub(crate) fn block_device_names(mounts: &[MountEntry], sources: &[PathBuf]) -> Vec<PathBuf> {
    let mut names = BTreeSet::new();
    for source in sources {
        let holder = mounts
            .iter()
            .rev()
            .filter(|m| source.starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.components().count());
        let below = mounts
            .iter()
            .filter(|m| m.mount_point.starts_with(source) && &m.mount_point != source);
        for mount in holder.into_iter().chain(below) {
            if let Some(name) = dev_name(&mount.source) {
                names.insert(name);
            }
        }
    }
    names.into_iter().collect()
}

/// `/dev/vda1` → `vda1`, `/dev/mapper/root` → `mapper/root`; `None` for anything that is
/// not a plain path below /dev or that would shadow what the sandbox puts there.
fn dev_name(source: &str) -> Option<PathBuf> {
    let name = Path::new(source).strip_prefix("/dev").ok()?;
    let mut parts = name.components();
    let first = match parts.next()? {
        Component::Normal(first) => first,
        _ => return None,
    };
    let normal = name.components().all(|c| matches!(c, Component::Normal(_)));
    // A placeholder never takes a name the sandbox's /dev already has.
    let reserved = DEV_NODES
        .iter()
        .chain(DEV_LINKS.iter().map(|(name, _)| name))
        .chain(DEV_DIRS)
        .any(|r| first == *r);
    (normal && !reserved).then(|| name.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's: hybrid, v1 controllers with the empty v2 hierarchy at `unified`.
    const HYBRID: &str = "\
22 1 253:0 / / rw,relatime - ext4 /dev/vda rw
23 22 0:21 / /sys rw,relatime - sysfs sysfs rw
24 23 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
25 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
26 24 0:24 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory,clone_children
27 24 0:25 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
28 24 0:26 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
29 24 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
30 22 253:1 / /home rw,relatime - ext4 /dev/vdb rw
31 30 0:40 / /home/me/mnt rw,relatime - ext4 /dev/mapper/vg-data rw
32 22 0:41 / /tmp rw - tmpfs tmpfs rw
33 22 0:5 / /dev rw - devtmpfs udev rw
";

    fn subsystems() -> Vec<String> {
        ["cpu", "cpuacct", "memory", "pids", "net_cls", "net_prio"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn a_hybrid_host_gets_a_tmpfs_with_each_limit_hierarchy_by_its_name() {
        let links = vec![
            ("cpu".into(), "cpu,cpuacct".into()),
            ("net_cls".into(), "net_cls,net_prio".into()),
            ("bogus".into(), "missing".into()),
            ("../escape".into(), "cpu".into()),
        ];
        let layout = cgroup_layout(&parse_mountinfo(HYBRID), &subsystems(), links);
        assert!(layout.tmpfs);
        let found: Vec<(&str, Option<&str>)> = layout
            .hierarchies
            .iter()
            .map(|h| (h.dir.to_str().unwrap(), h.v1_options.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                ("cpu,cpuacct", Some("cpu,cpuacct")),
                ("memory", Some("memory")),
                ("unified", None),
            ]
        );
        assert_eq!(
            layout.links,
            [(PathBuf::from("cpu"), PathBuf::from("cpu,cpuacct"))]
        );
    }

    #[test]
    fn a_v2_host_gets_one_cgroup2_at_the_root() {
        let mounts = parse_mountinfo(
            "23 1 0:21 / /sys rw - sysfs sysfs rw\n\
             24 23 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
        );
        let layout = cgroup_layout(&mounts, &subsystems(), Vec::new());
        assert_eq!(
            layout,
            CgroupMounts {
                tmpfs: false,
                hierarchies: vec![Hierarchy {
                    dir: PathBuf::new(),
                    v1_options: None
                }],
                links: Vec::new(),
            }
        );
    }

    #[test]
    fn a_host_without_cgroups_gets_none() {
        let mounts = parse_mountinfo("23 1 0:21 / /sys rw - sysfs sysfs rw\n");
        assert_eq!(
            cgroup_layout(&mounts, &subsystems(), Vec::new()),
            CgroupMounts::default()
        );
    }

    #[test]
    fn block_devices_are_those_behind_the_binds_and_below_them() {
        let mounts = parse_mountinfo(HYBRID);
        let names = block_device_names(&mounts, &["/usr".into(), "/home/me".into()]);
        assert_eq!(
            names,
            [
                PathBuf::from("mapper/vg-data"),
                PathBuf::from("vda"),
                PathBuf::from("vdb")
            ]
        );
        assert!(block_device_names(&mounts, &["/tmp/x".into()]).is_empty());
    }

    #[test]
    fn device_names_never_shadow_the_sandbox_dev_or_leave_it() {
        assert_eq!(dev_name("/dev/vda1"), Some(PathBuf::from("vda1")));
        assert_eq!(dev_name("/dev/null"), None);
        assert_eq!(dev_name("/dev/pts/0"), None);
        assert_eq!(dev_name("/dev/../etc/passwd"), None);
        assert_eq!(dev_name("/dev/"), None);
        assert_eq!(dev_name("tmpfs"), None);
        assert_eq!(dev_name("/devices/x"), None);
    }
}
