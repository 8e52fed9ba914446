//! The cgroup mechanisms, host side: where a sandbox's cgroup goes, creating it with its
//! limits written, reading what the sandbox used, removing it.
//!
//! Every function takes the directories it works in as parameters, so the cgroup v2 code
//! is tested against a temporary directory laid out like a cgroup2 filesystem.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::Available;
use crate::doctor::{MountEntry, cgroup2_directory, cgroup2_path};
use crate::spec::Limits;

/// Every sandbox cgroup is named `isotest.<owner pid>.<n>`: a stale one, whose owner is
/// dead, is recognisable from its name alone.
const PREFIX: &str = "isotest.";
/// CPU bandwidth is granted per period of this many microseconds.
const CPU_PERIOD_US: u64 = 100_000;
/// How long removal retries while the kernel finishes tearing the sandbox down.
const REMOVE_PATIENCE: Duration = Duration::from_secs(2);
/// A kept v1 slot that still holds more memory than this when a sandbox would start in
/// it (the page cache of files an earlier sandbox wrote, say) is replaced by a fresh one:
/// a sandbox's memory limit is for its own use.
const HELD_MAX: u64 = 16 << 20;

/// A cgroup operation that failed, with the file and the errno.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cgroup {syscall}({}) failed: {}", .path.display(), crate::error::errno_text(*.errno))]
pub struct CgroupError {
    pub syscall: String,
    pub path: PathBuf,
    pub errno: i32,
}

fn fail<'a>(syscall: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> CgroupError + 'a {
    move |errno| CgroupError {
        syscall: syscall.to_string(),
        path: path.to_path_buf(),
        errno: errno as i32,
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Where sandbox cgroups can be made on this host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parents {
    /// A delegated cgroup2 directory with memory and pids enabled for its children.
    pub v2: Option<PathBuf>,
    /// Whether `cpu` is enabled there too.
    pub v2_cpu: bool,
    pub v1: V1Parents,
}

/// This process's own cgroup in each v1 hierarchy isotest uses, when writable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V1Parents {
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
}

impl Parents {
    /// Looks at this process's cgroups as the kernel shows them.
    pub fn discover() -> Parents {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = crate::hostview::host_mounts();
        let v2 = cgroup2_path(&own)
            .and_then(|path| cgroup2_directory(mounts, &path))
            .and_then(|(mount, dir)| v2_parent(&dir, &mount, &["memory", "pids"]));
        let v2_cpu = v2
            .as_deref()
            .is_some_and(|dir| enabled_for_children(dir, &["cpu"]));
        let root = nix::unistd::geteuid().is_root();
        Parents {
            v2,
            v2_cpu,
            v1: if root {
                v1_parents(mounts, &own)
            } else {
                V1Parents::default()
            },
        }
    }

    pub fn available(&self) -> Available {
        Available {
            cgroup_v2: self.v2.is_some(),
            cgroup_v2_cpu: self.v2_cpu,
            cgroup_v1: self.v1.memory.is_some() && self.v1.pids.is_some(),
            cgroup_v1_cpu: self.v1.cpu.is_some(),
        }
    }

    /// Every directory sandbox cgroups are made in.
    pub fn dirs(&self, mechanism: super::Mechanism) -> Vec<PathBuf> {
        match mechanism {
            super::Mechanism::CgroupV2 => self.v2.iter().cloned().collect(),
            super::Mechanism::CgroupV1 => [&self.v1.memory, &self.v1.pids, &self.v1.cpu]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            super::Mechanism::Fallback => Vec::new(),
        }
    }
}

/// The deepest of `own` and its ancestors up to `mount` that this process may write and
/// whose children get `controllers`: a delegated subtree (user@UID.service, a scope with
/// Delegate=yes) or, as root, the nearest cgroup whose controllers are enabled.
pub fn v2_parent(own: &Path, mount: &Path, controllers: &[&str]) -> Option<PathBuf> {
    own.ancestors()
        .take_while(|dir| dir.starts_with(mount))
        .find(|dir| writable(dir) && enabled_for_children(dir, controllers))
        .map(Path::to_path_buf)
}

fn writable(dir: &Path) -> bool {
    let ok = |p: &Path| rustix::fs::access(p, rustix::fs::Access::WRITE_OK).is_ok();
    ok(dir) && ok(&dir.join("cgroup.procs"))
}

fn enabled_for_children(dir: &Path, controllers: &[&str]) -> bool {
    let text = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let enabled: Vec<&str> = text.split_whitespace().collect();
    controllers.iter().all(|c| enabled.contains(c))
}

/// The v1 hierarchies are told apart by a file only their controller has, or (since a
/// root cgroup lacks some, as pids does) by the usual mount point name, `pids` or
/// `cpu,cpuacct`; this process's cgroup in each comes from /proc/self/cgroup.
fn v1_parents(mounts: &[MountEntry], own: &str) -> V1Parents {
    let find = |controller: &str, marker: &str| -> Option<PathBuf> {
        let path = own.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            names.split(',').any(|n| n == controller).then_some(path)
        })?;
        mounts
            .iter()
            .filter(|m| {
                let named = m.mount_point.file_name().and_then(|n| n.to_str());
                m.fs_type == "cgroup"
                    && (m.mount_point.join(marker).exists()
                        || named.is_some_and(|n| n.split(',').any(|c| c == controller)))
            })
            .find_map(|m| {
                let rest = Path::new(path).strip_prefix(&m.root).ok()?;
                let dir = m.mount_point.join(rest);
                writable(&dir).then_some(dir)
            })
    };
    V1Parents {
        memory: find("memory", "memory.limit_in_bytes"),
        pids: find("pids", "pids.max"),
        cpu: find("cpu", "cpu.cfs_quota_us"),
    }
}

/// A fresh name for a sandbox cgroup of this process.
pub fn next_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{}.{n}", std::process::id())
}

/// The owner's pid in a sandbox cgroup's name.
pub fn owner_of(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, n) = rest.split_once('.')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// One sandbox's cgroup (one directory per v1 hierarchy), removed on drop. Under v1 its
/// memory and cpu cgroups are its slot's ([`V1Slot`]), which may serve the next sandbox.
pub struct Group {
    kind: Kind,
    /// Directories still to remove, children of the parents.
    dirs: Vec<PathBuf>,
}

enum Kind {
    V2 {
        dir: PathBuf,
        fd: OwnedFd,
    },
    V1 {
        slot: V1Slot,
        /// The sandbox's own pids cgroup, and its `tasks` file for pid 1 to join by.
        pids: PathBuf,
        pids_tasks: OwnedFd,
        /// Whether pid 1 joins the slot's cpu cgroup: only for a CPU limit.
        cpu: bool,
        start: Baseline,
    },
    /// Directories made earlier (or by a runner now dead), only to remove.
    Leftover,
}

/// A slot's cumulative counters as a sandbox starts in it: the sandbox's own are what
/// they grew by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Baseline {
    oom_kills: u64,
    /// What the slot's memory cgroup still held from earlier sandboxes, where the
    /// sandbox's peak starts: the kernel's per-CPU reserve of charges (up to 256 KiB a
    /// CPU, a fresh cgroup's peak has it too), kernel objects not yet freed, cache.
    held: u64,
}

/// A slot's v1 memory cgroup, and its cpu cgroup once a sandbox had a CPU limit. A slot
/// is a process's place for one sandbox at a time; a process that keeps it
/// ([`super::CgroupSlot`]) runs sandbox after sandbox in the same cgroups, since making
/// and removing a memory cgroup costs every sandbox the kernel's allocation and later
/// offlining of it, while its peak is reset by one write and its limits are rewritten only
/// when they change. The pids cgroup stays per sandbox: `pids.peak` cannot be reset, and
/// a pids cgroup is cheap to make.
pub struct V1Slot {
    /// The memory cgroup, then the cpu one once made; each dropped from here as it is
    /// removed.
    dirs: Vec<PathBuf>,
    /// Their `tasks` files, in the same order, for pid 1 to join by.
    tasks: Vec<OwnedFd>,
    /// The limits written in them now.
    memory_max: Option<u64>,
    cpu_max_millis: Option<u64>,
}

impl V1Slot {
    fn create(memory_parent: &Path, name: &str) -> Result<V1Slot, CgroupError> {
        let mut slot = V1Slot {
            dirs: Vec::new(),
            tasks: Vec::new(),
            memory_max: None,
            cpu_max_millis: None,
        };
        slot.make(memory_parent, name)?;
        Ok(slot)
    }

    /// Makes a cgroup of the slot, named like its memory cgroup, and opens its `tasks`.
    fn make(&mut self, parent: &Path, name: &str) -> Result<(), CgroupError> {
        let dir = parent.join(name);
        make_dir(&dir)?;
        self.dirs.push(dir.clone());
        self.tasks.push(open_tasks(&dir)?);
        Ok(())
    }

    fn memory(&self) -> &Path {
        &self.dirs[0]
    }

    /// Writes the limits that differ from those the cgroups have.
    fn apply(&mut self, cpu_parent: Option<&Path>, limits: &Limits) -> Result<(), CgroupError> {
        if self.memory_max != limits.memory_max {
            let value = limits
                .memory_max
                .map_or_else(|| "-1".to_string(), |max| max.to_string());
            let memsw = self.memory().join("memory.memsw.limit_in_bytes").exists();
            for file in memory_limit_files(self.memory_max, limits.memory_max, memsw) {
                write_control(&self.dirs[0], file, &value)?;
            }
            self.memory_max = limits.memory_max;
        }
        let (Some(millis), Some(parent)) = (limits.cpu_max_millis, cpu_parent) else {
            return Ok(());
        };
        if self.dirs.len() == 1 {
            let name = self.dirs[0]
                .file_name()
                .expect("a cgroup's name")
                .to_owned();
            self.make(parent, &name.to_string_lossy())?;
            write_control(
                &self.dirs[1],
                "cpu.cfs_period_us",
                &CPU_PERIOD_US.to_string(),
            )?;
        }
        if self.cpu_max_millis != Some(millis) {
            let quota = millis * CPU_PERIOD_US / 1000;
            write_control(&self.dirs[1], "cpu.cfs_quota_us", &quota.to_string())?;
            self.cpu_max_millis = Some(millis);
        }
        Ok(())
    }

    /// Readies the slot for a sandbox: the memory peak reset to what the slot holds now
    /// (the kernel sets it to the current use), and what it holds and the OOM kills so
    /// far counted.
    fn start(&self) -> Result<Baseline, CgroupError> {
        let peak = self.memory().join("memory.max_usage_in_bytes");
        write_control(self.memory(), "memory.max_usage_in_bytes", "0")?;
        let held = std::fs::read_to_string(&peak).map_err(|e| fail("read", &peak)(io_errno(e)))?;
        let control = std::fs::read_to_string(self.memory().join("memory.oom_control"));
        Ok(Baseline {
            oom_kills: control
                .ok()
                .and_then(|t| keyed(&t, "oom_kill"))
                .unwrap_or(0),
            held: held.trim().parse().unwrap_or(0),
        })
    }

    /// Removes the slot's cgroups, once no sandbox is in them.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        remove_dirs(&mut self.dirs)
    }
}

impl Drop for V1Slot {
    fn drop(&mut self) {
        let _ = remove_dirs(&mut self.dirs);
    }
}

/// The files a v1 memory limit is written to, in order, going from `old` to `new` (`None`:
/// no limit). Memory plus swap (`memsw`, where swap is accounted) is capped at the same
/// value, so that swap holds nothing past the limit; the kernel keeps it at or above the
/// memory limit, so a rise writes it first and a fall last.
fn memory_limit_files(old: Option<u64>, new: Option<u64>, memsw: bool) -> &'static [&'static str] {
    let rise = match (old, new) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(old), Some(new)) => new > old,
    };
    match (memsw, rise) {
        (false, _) => &["memory.limit_in_bytes"],
        (true, true) => &["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"],
        (true, false) => &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
    }
}

/// Writes `value` to the control file `dir/file`.
fn write_control(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|e| fail("write", &path)(io_errno(e)))
}

fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir(dir).map_err(|e| fail("mkdir", dir)(io_errno(e)))
}

impl Group {
    /// A cgroup v2 child of `parent` with `limits` written, opened for CLONE_INTO_CGROUP.
    pub fn create_v2(parent: &Path, name: &str, limits: &Limits) -> Result<Group, CgroupError> {
        let mut group = Group::existing(Vec::new());
        let dir = group.make(parent, name)?;
        group.kind = Kind::V2 {
            fd: open_dir(&dir)?,
            dir: dir.clone(),
        };
        if let Some(max) = limits.memory_max {
            write_control(&dir, "memory.max", &max.to_string())?;
            // Swapping out would let the sandbox hold more than its limit.
            if dir.join("memory.swap.max").exists() {
                write_control(&dir, "memory.swap.max", "0")?;
            }
        }
        // An out-of-memory kill takes the whole sandbox, not one process of it (where the
        // parent gives its children the memory controller, as a chosen parent does).
        if enabled_for_children(parent, &["memory"]) {
            write_control(&dir, "memory.oom.group", "1")?;
        }
        if let Some(max) = limits.pids_max {
            write_control(&dir, "pids.max", &max.to_string())?;
        }
        if let Some(millis) = limits.cpu_max_millis {
            let quota = millis * CPU_PERIOD_US / 1000;
            write_control(&dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
        }
        Ok(group)
    }

    /// The sandbox's v1 cgroups: the memory one of `kept`, the slot its process kept
    /// from its last sandbox, with `limits` written where they changed (and the cpu one,
    /// for a CPU limit), and a pids cgroup of its own. Without a kept slot, or where it
    /// cannot take these limits (a memory limit below what it still holds), a fresh slot.
    /// CPU time comes from pid 1's accounting of its children, which is exact too.
    pub fn create_v1(
        parents: &V1Parents,
        kept: Option<V1Slot>,
        name: &str,
        limits: &Limits,
    ) -> Result<Group, CgroupError> {
        let (Some(memory_parent), Some(pids_parent)) = (&parents.memory, &parents.pids) else {
            return Err(fail("mkdir", Path::new("/sys/fs/cgroup/memory"))(
                Errno::ENOENT,
            ));
        };
        let cpu_parent = parents.cpu.as_deref();
        // A kept slot that refuses the limits, or holds too much, is dropped (so removed).
        let reused = kept.and_then(|mut slot| {
            slot.apply(cpu_parent, limits).ok()?;
            let start = slot.start().ok().filter(|s| s.held <= HELD_MAX)?;
            Some((slot, start))
        });
        let (slot, start) = match reused {
            Some(reused) => reused,
            None => {
                let mut slot = V1Slot::create(memory_parent, name)?;
                slot.apply(cpu_parent, limits)?;
                let start = slot.start()?;
                (slot, start)
            }
        };
        let mut group = Group::existing(Vec::new());
        let pids = group.make(pids_parent, name)?;
        let pids_tasks = open_tasks(&pids)?;
        if let Some(max) = limits.pids_max {
            write_control(&pids, "pids.max", &max.to_string())?;
        }
        group.kind = Kind::V1 {
            start,
            cpu: limits.cpu_max_millis.is_some() && slot.dirs.len() > 1,
            slot,
            pids,
            pids_tasks,
        };
        Ok(group)
    }

    /// Directories made earlier (or by a runner now dead), to remove.
    fn existing(dirs: Vec<PathBuf>) -> Group {
        Group {
            kind: Kind::Leftover,
            dirs,
        }
    }

    fn make(&mut self, parent: &Path, name: &str) -> Result<PathBuf, CgroupError> {
        let dir = parent.join(name);
        make_dir(&dir)?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// The cgroup2 directory for clone3's CLONE_INTO_CGROUP.
    pub fn clone_into(&self) -> Option<BorrowedFd<'_>> {
        match &self.kind {
            Kind::V2 { fd, .. } => Some(fd.as_fd()),
            Kind::V1 { .. } | Kind::Leftover => None,
        }
    }

    /// Moves the process `pid` (and so everything it will start) into a cgroup2 group
    /// that clone3 could not start it in. A v1 group is joined by pid 1 itself instead
    /// ([`Group::tasks`]).
    pub fn place(&self, pid: nix::unistd::Pid) -> Result<(), CgroupError> {
        match &self.kind {
            Kind::V2 { dir, .. } => write_control(dir, "cgroup.procs", &pid.to_string()),
            Kind::V1 { .. } | Kind::Leftover => Ok(()),
        }
    }

    /// Copies of the v1 `tasks` files (memory, pids, then cpu for a CPU limit), for pid 1
    /// to write `0` to while it is its only thread. Moving oneself by thread skips the
    /// kernel's global threadgroup lock, whose taking waits for an RCU grace period (about
    /// 12 ms on an idle host) when a supervisor writes a pid to `cgroup.procs`. The kernel
    /// checks the credentials the file was opened with, the supervisor's, so pid 1 may do
    /// it from its new user namespace.
    pub fn tasks(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        let Kind::V1 {
            slot,
            pids,
            pids_tasks,
            cpu,
            ..
        } = &self.kind
        else {
            return Ok(Vec::new());
        };
        let mut joined = vec![
            (slot.memory(), &slot.tasks[0]),
            (pids.as_path(), pids_tasks),
        ];
        if *cpu {
            joined.push((&slot.dirs[1], &slot.tasks[1]));
        }
        joined
            .into_iter()
            .map(|(dir, fd)| {
                fd.try_clone()
                    .map_err(|e| fail("fcntl(F_DUPFD_CLOEXEC)", &dir.join("tasks"))(io_errno(e)))
            })
            .collect()
    }

    /// What the sandbox used, read once it has ended.
    pub fn usage(&self) -> CgroupUsage {
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).ok();
        let number = |dir: &Path, file: &str| read(dir, file)?.trim().parse::<u64>().ok();
        let key = |dir: &Path, file: &str, k: &str| read(dir, file).and_then(|t| keyed(&t, k));
        match &self.kind {
            Kind::V2 { dir, .. } => CgroupUsage {
                peak_memory: number(dir, "memory.peak"),
                memory_killed: key(dir, "memory.events", "oom_kill").is_some_and(|n| n > 0),
                pids_peak: number(dir, "pids.peak"),
                pids_refused: key(dir, "pids.events", "max").is_some_and(|n| n > 0),
                cpu_user_ms: key(dir, "cpu.stat", "user_usec").map(|us| us / 1000),
                cpu_system_ms: key(dir, "cpu.stat", "system_usec").map(|us| us / 1000),
            },
            Kind::V1 {
                slot, pids, start, ..
            } => CgroupUsage {
                peak_memory: number(slot.memory(), "memory.max_usage_in_bytes"),
                memory_killed: key(slot.memory(), "memory.oom_control", "oom_kill")
                    .is_some_and(|n| n > start.oom_kills),
                pids_peak: number(pids, "pids.peak"),
                pids_refused: key(pids, "pids.events", "max").is_some_and(|n| n > 0),
                cpu_user_ms: None,
                cpu_system_ms: None,
            },
            Kind::Leftover => CgroupUsage::default(),
        }
    }

    /// Removes the cgroup once the sandbox is gone. The kernel refuses while the last
    /// processes are still exiting, so this retries for a while.
    pub fn remove(&mut self) -> Result<(), CgroupError> {
        remove_dirs(&mut self.dirs)
    }

    /// Removes the sandbox's own cgroups once it is gone, and hands back its slot: empty
    /// then, since every process of the sandbox was in its pids cgroup too.
    pub fn end(mut self) -> Result<Option<V1Slot>, CgroupError> {
        self.remove()?;
        Ok(match std::mem::replace(&mut self.kind, Kind::Leftover) {
            Kind::V1 { slot, .. } => Some(slot),
            Kind::V2 { .. } | Kind::Leftover => None,
        })
    }
}

/// Removes `dirs`, last first, each dropped from the list once gone. The kernel refuses
/// while the last processes are still exiting, so this retries for a while.
fn remove_dirs(dirs: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let deadline = Instant::now() + REMOVE_PATIENCE;
    while let Some(dir) = dirs.last() {
        match remove_dir(dir) {
            Ok(()) => {
                dirs.pop();
            }
            Err(Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(errno) => return Err(fail("rmdir", dir)(errno)),
        }
    }
    Ok(())
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, CgroupError> {
    rustix::fs::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| fail("open", dir)(Errno::from_raw(e.raw_os_error())))
}

fn open_tasks(dir: &Path) -> Result<OwnedFd, CgroupError> {
    let path = dir.join("tasks");
    rustix::fs::open(
        &path,
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| fail("open", &path)(Errno::from_raw(e.raw_os_error())))
}

/// rmdir; an already removed directory counts as removed.
fn remove_dir(dir: &Path) -> Result<(), Errno> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_errno(e)),
    }
}

/// What a sandbox's cgroup recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    pub peak_memory: Option<u64>,
    pub memory_killed: bool,
    pub pids_peak: Option<u64>,
    pub pids_refused: bool,
    pub cpu_user_ms: Option<u64>,
    pub cpu_system_ms: Option<u64>,
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Removes the sandbox cgroups under `parents` whose owner is `owner`, or with `None`
/// those whose owner is dead. Their processes, orphans of a killed runner, are killed
/// first. Returns how many were removed.
pub fn sweep(parents: &[PathBuf], owner: Option<i32>) -> usize {
    let mut removed = 0;
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(owner_of) else {
                continue;
            };
            let stale = match owner {
                Some(owner) => pid == owner,
                None => !alive(pid),
            };
            if !stale {
                continue;
            }
            let dir = entry.path();
            kill_members(&dir);
            if Group::existing(vec![dir]).remove().is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

fn alive(pid: i32) -> bool {
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

fn kill_members(dir: &Path) {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    use crate::doctor::parse_mountinfo;
    use crate::limits::Mechanism;

    /// A directory laid out like a cgroup2 filesystem: the same file names and formats.
    /// What the kernel would do (create interface files, count usage) the test does.
    fn cgroup2_tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("cgroup.subtree_control", "cpu memory pids\n");
        write("cgroup.procs", "");
        write("user.slice/cgroup.subtree_control", "memory pids\n");
        write("user.slice/cgroup.procs", "");
        write("user.slice/session-1.scope/cgroup.subtree_control", "");
        write("user.slice/session-1.scope/cgroup.procs", "4242\n");
        root
    }

    #[test]
    fn the_v2_parent_is_the_nearest_cgroup_that_delegates_the_controllers() {
        let tree = cgroup2_tree();
        let own = tree.path().join("user.slice/session-1.scope");
        assert_eq!(
            v2_parent(&own, tree.path(), &["memory", "pids"]),
            Some(tree.path().join("user.slice"))
        );
        assert_eq!(
            v2_parent(&own, tree.path(), &["memory", "pids", "cpu"]),
            Some(tree.path().to_path_buf())
        );
        assert_eq!(v2_parent(&own, tree.path(), &["io"]), None);
    }

    #[test]
    fn a_v2_group_gets_its_limits_and_reports_what_the_kernel_counted() {
        let tree = cgroup2_tree();
        let parent = tree.path().join("user.slice");
        let name = next_name();
        let limits = Limits {
            memory_max: Some(256 << 20),
            pids_max: Some(200),
            cpu_max_millis: Some(1500),
            ..Limits::default()
        };
        let mut group = Group::create_v2(&parent, &name, &limits).unwrap();
        let dir = parent.join(&name);
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(read("memory.max"), "268435456");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("pids.max"), "200");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert!(group.clone_into().is_some());
        group.place(nix::unistd::Pid::from_raw(4242)).unwrap();
        assert_eq!(read("cgroup.procs"), "4242");

        // The kernel's counters, in its formats.
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
        write("memory.peak", "274726912\n");
        write(
            "memory.events",
            "low 0\nhigh 0\nmax 31\noom 1\noom_kill 1\noom_group_kill 1\n",
        );
        write("pids.peak", "200\n");
        write("pids.events", "max 412\n");
        write(
            "cpu.stat",
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n",
        );
        assert_eq!(
            group.usage(),
            CgroupUsage {
                peak_memory: Some(274726912),
                memory_killed: true,
                pids_peak: Some(200),
                pids_refused: true,
                cpu_user_ms: Some(2000),
                cpu_system_ms: Some(500),
            }
        );
        // The kernel's interface files vanish with the cgroup; here the test removes them.
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        group.remove().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn an_unlimited_v2_group_still_accounts() {
        let tree = cgroup2_tree();
        let parent = tree.path().join("user.slice");
        let group = Group::create_v2(&parent, &next_name(), &Limits::default()).unwrap();
        assert_eq!(group.usage(), CgroupUsage::default());
        assert!(!parent.join(&group.dirs[0]).join("memory.max").exists());
    }

    #[test]
    fn stale_groups_are_recognised_by_their_owner() {
        assert_eq!(owner_of("isotest.4242.7"), Some(4242));
        assert_eq!(owner_of("isotest.4242"), None);
        assert_eq!(owner_of("user.slice"), None);
        let tree = cgroup2_tree();
        let parent = tree.path().join("user.slice");
        // A pid that cannot be alive: above the kernel's limit.
        std::fs::create_dir(parent.join("isotest.2147483646.0")).unwrap();
        let mine = next_name();
        std::fs::create_dir(parent.join(&mine)).unwrap();
        assert_eq!(sweep(std::slice::from_ref(&parent), None), 1);
        assert!(parent.join(&mine).exists());
        assert_eq!(
            sweep(
                std::slice::from_ref(&parent),
                Some(std::process::id() as i32)
            ),
            1
        );
        assert!(!parent.join(&mine).exists());
    }

    #[test]
    fn discovered_parents_say_which_mechanisms_exist() {
        let parents = Parents {
            v2: Some("/sys/fs/cgroup/user.slice".into()),
            v2_cpu: false,
            v1: V1Parents::default(),
        };
        let available = parents.available();
        assert!(available.cgroup_v2 && !available.cgroup_v2_cpu && !available.cgroup_v1);
        assert_eq!(
            parents.dirs(Mechanism::CgroupV2),
            [PathBuf::from("/sys/fs/cgroup/user.slice")]
        );
        assert!(parents.dirs(Mechanism::Fallback).is_empty());
    }

    /// The real cgroup2 hierarchy, where this host has one we may write (root on a hybrid
    /// host's /sys/fs/cgroup/unified, which has no controllers): clone3 starts the child in
    /// the sandbox's cgroup, and the kernel's own cpu.stat reads.
    #[test]
    fn clone3_starts_the_child_in_a_real_cgroup2_directory() {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(mount) = parse_mountinfo(&mountinfo).into_iter().find(|m| {
            m.fs_type == "cgroup2" && m.root == Path::new("/") && writable(&m.mount_point)
        }) else {
            eprintln!("no writable cgroup2 hierarchy here: the real clone3 path is not checked");
            return;
        };
        let name = next_name();
        let mut group = Group::create_v2(&mount.mount_point, &name, &Limits::default()).unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        // SAFETY: the child makes only async-signal-safe calls (open, read, write, _exit)
        // on buffers of its own stack, as a fork of a multi-threaded test process must.
        match unsafe { crate::sys::fork_into(nix::sched::CloneFlags::empty(), group.clone_into()) }
            .unwrap()
        {
            crate::sys::Forked::Child => {
                let mut buf = [0u8; 512];
                // SAFETY: a valid C string and a buffer of the length passed.
                let n = unsafe {
                    let fd = libc::open(c"/proc/self/cgroup".as_ptr(), libc::O_RDONLY);
                    libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
                };
                // SAFETY: the pipe's write end and the bytes read; then _exit at once.
                unsafe {
                    libc::write(write.as_raw_fd(), buf.as_ptr().cast(), n.max(0) as usize);
                    libc::_exit(0)
                }
            }
            crate::sys::Forked::Parent {
                pidfd, into_cgroup, ..
            } => {
                drop(write);
                assert!(into_cgroup, "clone3 did not take CLONE_INTO_CGROUP");
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut text).unwrap();
                let _ = rustix::process::waitid(
                    rustix::process::WaitId::PidFd(pidfd.as_fd()),
                    rustix::process::WaitIdOptions::EXITED,
                );
                assert!(text.lines().any(|l| l == format!("0::/{name}")), "{text}");
            }
        }
        assert!(group.usage().cpu_user_ms.is_some(), "cpu.stat unreadable");
        group.remove().unwrap();
        assert!(!mount.mount_point.join(&name).exists());
    }

    #[test]
    fn a_memory_limit_keeps_memory_plus_swap_at_or_above_it() {
        const MEMSW: &str = "memory.memsw.limit_in_bytes";
        const LIMIT: &str = "memory.limit_in_bytes";
        assert_eq!(
            memory_limit_files(None, Some(1 << 30), true),
            [LIMIT, MEMSW]
        );
        assert_eq!(
            memory_limit_files(Some(1 << 30), Some(1 << 31), true),
            [MEMSW, LIMIT]
        );
        assert_eq!(
            memory_limit_files(Some(1 << 30), None, true),
            [MEMSW, LIMIT]
        );
        assert_eq!(
            memory_limit_files(Some(1 << 31), Some(1 << 30), true),
            [LIMIT, MEMSW]
        );
        assert_eq!(memory_limit_files(None, Some(1 << 30), false), [LIMIT]);
    }

    /// Starts a process that joins `group` as pid 1 would, touches `bytes` of memory and
    /// exits; waits for it.
    fn run_in(group: &Group, bytes: usize) {
        let tasks = group.tasks().unwrap();
        // SAFETY: the child makes only async-signal-safe calls (write, mmap, _exit) on
        // memory of its own, as a fork of a multi-threaded test process must.
        match unsafe { crate::sys::fork_into(nix::sched::CloneFlags::empty(), None) }.unwrap() {
            // SAFETY: raw syscalls on descriptors this child holds and on the mapping it
            // makes itself, of the length it asked for; then _exit at once.
            crate::sys::Forked::Child => unsafe {
                for fd in &tasks {
                    libc::write(fd.as_raw_fd(), c"0".as_ptr().cast(), 1);
                }
                if bytes > 0 {
                    let anonymous = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                    let rw = libc::PROT_READ | libc::PROT_WRITE;
                    let memory = libc::mmap(std::ptr::null_mut(), bytes, rw, anonymous, -1, 0);
                    libc::memset(memory, 1, bytes);
                }
                libc::_exit(0)
            },
            crate::sys::Forked::Parent { pidfd, .. } => {
                drop(tasks);
                let _ = rustix::process::waitid(
                    rustix::process::WaitId::PidFd(pidfd.as_fd()),
                    rustix::process::WaitIdOptions::EXITED,
                );
            }
        }
    }

    /// The real v1 hierarchies, as root on a hybrid host: a slot kept from one sandbox
    /// serves the next with its peak reset and only its changed limits rewritten, and
    /// each sandbox gets a fresh pids cgroup.
    #[test]
    fn a_kept_v1_slot_serves_the_next_sandbox_with_its_own_counters() {
        let parents = Parents::discover();
        if !parents.available().cgroup_v1 {
            eprintln!("no writable cgroup v1 memory and pids here: the v1 slot is not checked");
            return;
        }
        let limits = Limits {
            memory_max: Some(256 << 20),
            pids_max: Some(20),
            ..Limits::default()
        };
        let first = Group::create_v1(&parents.v1, None, &next_name(), &limits).unwrap();
        run_in(&first, 16 << 20);
        let used = first.usage();
        assert!(used.peak_memory.unwrap() >= 16 << 20, "{used:?}");
        assert_eq!(used.pids_peak, Some(1));
        let slot = first.end().unwrap().expect("a v1 group has a slot");
        let memory = slot.memory().to_path_buf();

        let lower = Limits {
            memory_max: Some(128 << 20),
            ..limits.clone()
        };
        let second = Group::create_v1(&parents.v1, Some(slot), &next_name(), &lower).unwrap();
        let Kind::V1 { slot, pids, .. } = &second.kind else {
            unreachable!()
        };
        assert_eq!(slot.memory(), memory, "the kept memory cgroup");
        let read = |file: &str| std::fs::read_to_string(memory.join(file)).unwrap();
        assert_eq!(
            read("memory.limit_in_bytes").trim(),
            (128u64 << 20).to_string()
        );
        assert_eq!(
            std::fs::read_to_string(pids.join("pids.max"))
                .unwrap()
                .trim(),
            "20"
        );
        run_in(&second, 0);
        let used = second.usage();
        assert!(
            used.peak_memory.unwrap() < 16 << 20,
            "peak not reset: {used:?}"
        );
        assert!(!used.memory_killed && !used.pids_refused);
        let slot = second.end().unwrap().unwrap();
        slot.remove().unwrap();
        assert!(!memory.exists());
    }

    #[test]
    fn keyed_files_read_by_key() {
        assert_eq!(keyed("max 3\n", "max"), Some(3));
        assert_eq!(keyed("oom 1\noom_kill 2\n", "oom_kill"), Some(2));
        assert_eq!(keyed("oom_kill_disable 0\n", "oom_kill"), None);
    }
}
