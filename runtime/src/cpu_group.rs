//! One CPU scheduling group for every sandbox, instead of one per sandbox.
//!
//! Each sandbox's init leads a session of its own (so that `getsid()` names a process
//! inside). Where the kernel groups sessions for scheduling (`kernel.sched_autogroup_enabled`,
//! for processes in the root of the cpu controller), that makes every sandbox its own
//! scheduling group: a many-threaded test then gets one group's share of each CPU rather
//! than one share per thread, and its threads migrate between CPUs several times as often
//! (measured: parking_lot's condvar suite at 1.34x nextest's wall time). The kernel ignores
//! autogroups for processes in any other cpu cgroup, so the supervisors of one run that
//! move themselves into one cgroup of the run's give its sandboxes the single group that
//! a runner's children have under nextest (whose session is one autogroup), without
//! touching the sysctl.

use std::path::{Path, PathBuf};

use crate::doctor::parse_mountinfo;

/// A run's cgroup is this prefix and the run's id, right below the root of the cpu
/// controller's hierarchy, so that each run weighs as one session's autogroup does.
const PREFIX: &str = "isotest-run-";

/// What [`share_cpu_group`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuGroup {
    /// Sessions do not form scheduling groups here: autogrouping is off, or this process
    /// already sits in a cpu cgroup other than the root.
    NotNeeded,
    /// This process (and every sandbox it creates from now on) is in this cgroup.
    Joined(PathBuf),
    /// Sessions form groups, and the shared cgroup could not be joined: why.
    Unavailable(String),
}

/// Moves the calling process into the cpu cgroup of run `run` (the runner's pid, shared
/// by all its supervisors) when autogrouping would otherwise give each of its sandboxes
/// a group of its own. Only root can usually do it. Empty groups of runs that have ended
/// (or were killed) are removed on the way.
pub fn share_cpu_group(run: u32) -> CpuGroup {
    let autogroup = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled");
    if autogroup.map_or(true, |v| v.trim() == "0") {
        return CpuGroup::NotNeeded;
    }
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(hierarchy) = cpu_hierarchy(&cgroups, &mounts) else {
        return CpuGroup::Unavailable("no cpu controller is mounted".into());
    };
    if hierarchy.cgroup != Path::new("/") {
        return CpuGroup::NotNeeded;
    }
    remove_ended_runs(&hierarchy.mount);
    let group = hierarchy.mount.join(format!("{PREFIX}{run}"));
    // Twice: another run's cleanup may remove the group between its mkdir and our join.
    let mut result = join(&group);
    if result.is_err() {
        result = join(&group);
    }
    match result {
        Ok(()) => CpuGroup::Joined(group),
        Err(why) => CpuGroup::Unavailable(why),
    }
}

fn join(group: &Path) -> Result<(), String> {
    match std::fs::create_dir(group) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", group.display())),
    }
    let procs = group.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .map_err(|e| format!("cannot join {}: {e}", procs.display()))
}

/// rmdir of a cgroup fails while it holds a process, so only ended runs' groups go.
fn remove_ended_runs(mount: &Path) {
    let Ok(entries) = std::fs::read_dir(mount) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(PREFIX) {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Where the cpu controller is mounted, and this process's cgroup in it.
#[derive(Debug, PartialEq, Eq)]
struct Hierarchy {
    mount: PathBuf,
    cgroup: PathBuf,
}

/// The cgroup v1 hierarchy holding `cpu`, else cgroup2 when its root hands `cpu` down.
fn cpu_hierarchy(cgroups: &str, mountinfo: &str) -> Option<Hierarchy> {
    let mounts = parse_mountinfo(mountinfo);
    let cgroup_of = |wanted: &dyn Fn(&str) -> bool| {
        cgroups.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            wanted(controllers).then(|| PathBuf::from(path))
        })
    };
    let v1 = cgroup_of(&|controllers| controllers.split(',').any(|c| c == "cpu"));
    if let Some(cgroup) = v1 {
        let mount = mounts.iter().find(|m| {
            m.fs_type == "cgroup"
                && m.root == Path::new("/")
                && m.super_options.split(',').any(|option| option == "cpu")
        })?;
        return Some(Hierarchy {
            mount: mount.mount_point.clone(),
            cgroup,
        });
    }
    let mount = mounts
        .iter()
        .find(|m| m.fs_type == "cgroup2" && m.root == Path::new("/"))?;
    let delegated = std::fs::read_to_string(mount.mount_point.join("cgroup.subtree_control"))
        .unwrap_or_default();
    if !delegated.split_whitespace().any(|c| c == "cpu") {
        return None;
    }
    Some(Hierarchy {
        mount: mount.mount_point.clone(),
        cgroup: cgroup_of(&|controllers| controllers.is_empty())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
35 25 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
40 35 0:35 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu
41 35 0:36 / /sys/fs/cgroup/cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpuacct
";

    #[test]
    fn finds_the_v1_cpu_hierarchy_and_our_place_in_it() {
        let cgroups = "4:memory:/x\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        assert_eq!(
            cpu_hierarchy(cgroups, MOUNTS),
            Some(Hierarchy {
                mount: "/sys/fs/cgroup/cpu".into(),
                cgroup: "/".into()
            })
        );
    }

    #[test]
    fn a_co_mounted_cpu_controller_counts() {
        let mounts = "40 35 0:35 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let cgroups = "3:cpu,cpuacct:/user.slice\n";
        assert_eq!(
            cpu_hierarchy(cgroups, mounts),
            Some(Hierarchy {
                mount: "/sys/fs/cgroup/cpu,cpuacct".into(),
                cgroup: "/user.slice".into()
            })
        );
    }

    #[test]
    fn no_cpu_controller_anywhere() {
        let mounts = "41 35 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        assert_eq!(cpu_hierarchy("5:pids:/\n", mounts), None);
    }
}
