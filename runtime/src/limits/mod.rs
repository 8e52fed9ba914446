//! Resource limits and accounting: which mechanism enforces a sandbox's [`Limits`], what
//! the sandbox used, and whether a limit is what stopped it.
//!
//! The mechanisms, best first: a cgroup v2 child of a delegated subtree, cgroup v1
//! controllers (root only), and a fallback that works everywhere: the sandbox's pid 1
//! watches its processes and tmpfs mounts and kills the sandbox past a limit, with
//! rlimits where a per-process limit is the right one. The choices and verdicts here are
//! pure functions; [`cgroup`] and [`watch`] do the work.

pub(crate) mod cgroup;
mod janitor;
mod slot;
pub(crate) mod watch;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;

use nix::sys::resource::Resource;
use serde::{Deserialize, Serialize};

use crate::outcome::Exit;
use crate::spec::{Limits, Mount, Spec};
pub use cgroup::CgroupError;
use cgroup::{CgroupUsage, Group, Parents};
pub use slot::CgroupSlot;
use watch::{InitUsage, Killed};

/// What enforced a sandbox's limits and measured its use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// One cgroup v2 child per sandbox in a delegated subtree.
    CgroupV2,
    /// cgroup v1 controllers (as root): a memory (and cpu) cgroup kept per slot, a pids
    /// cgroup per sandbox.
    CgroupV1,
    /// The sandbox's pid 1 watches and kills; rlimits per process.
    #[default]
    Fallback,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::CgroupV2 => "cgroup-v2",
            Mechanism::CgroupV1 => "cgroup-v1",
            Mechanism::Fallback => "fallback",
        }
    }
}

/// Which mechanisms the host can give a sandbox right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Available {
    pub cgroup_v2: bool,
    /// The v2 `cpu` controller is delegated too, for `cpu_max_millis`.
    pub cgroup_v2_cpu: bool,
    pub cgroup_v1: bool,
    /// The v1 `cpu` controller is mounted too.
    pub cgroup_v1_cpu: bool,
}

/// A forced mechanism the host cannot give.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the limits mechanism `{}` was asked for, but this host does not offer it (`cargo isotest doctor` shows what it offers and how to enable cgroup v2 delegation)", .0.as_str())]
pub struct Unavailable(pub Mechanism);

/// The best mechanism available, or the forced one if the host has it. cgroup v1 only
/// serves a sandbox with a limit: its directories cost a few syscalls each, while pid 1
/// measures an unlimited sandbox for free.
pub fn choose(
    available: Available,
    forced: Option<Mechanism>,
    limited: bool,
) -> Result<Mechanism, Unavailable> {
    let has = |m| match m {
        Mechanism::CgroupV2 => available.cgroup_v2,
        Mechanism::CgroupV1 => available.cgroup_v1,
        Mechanism::Fallback => true,
    };
    let worth = |m| m != Mechanism::CgroupV1 || limited;
    match forced {
        Some(m) if has(m) => Ok(m),
        Some(m) => Err(Unavailable(m)),
        None => Ok([Mechanism::CgroupV2, Mechanism::CgroupV1]
            .into_iter()
            .find(|&m| has(m) && worth(m))
            .unwrap_or(Mechanism::Fallback)),
    }
}

/// The limits `mechanism` cannot enforce, by their spec names: the record says so rather
/// than pretend.
pub fn unenforced(mechanism: Mechanism, available: Available, limits: &Limits) -> Vec<String> {
    let cpu_enforced = match mechanism {
        Mechanism::CgroupV2 => available.cgroup_v2_cpu,
        Mechanism::CgroupV1 => available.cgroup_v1_cpu,
        Mechanism::Fallback => false,
    };
    let mut missing = Vec::new();
    if limits.cpu_max_millis.is_some() && !cpu_enforced {
        missing.push("cpu_max_millis".to_string());
    }
    missing
}

/// Why a sandbox's limits could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("cannot set up the sandbox's cgroup: {0}")]
    Cgroup(#[from] CgroupError),
}

/// What the host offers, looked up once per process.
fn parents() -> &'static Parents {
    static PARENTS: OnceLock<Parents> = OnceLock::new();
    PARENTS.get_or_init(Parents::discover)
}

/// What this host offers sandboxes for their limits, for doctor.
#[derive(Clone, Debug, Serialize)]
pub struct HostLimits {
    /// The mechanism a sandbox without a forced one gets.
    pub mechanism: Mechanism,
    pub available: Available,
    /// The delegated cgroup2 directory sandbox cgroups would be made in.
    pub cgroup_v2_parent: Option<PathBuf>,
    /// The cgroup v1 directories (memory, pids, cpu) they would be made in.
    pub cgroup_v1_parents: Vec<PathBuf>,
}

impl HostLimits {
    pub fn read() -> HostLimits {
        let parents = parents();
        let available = parents.available();
        HostLimits {
            mechanism: choose(available, None, true).unwrap_or_default(),
            available,
            cgroup_v2_parent: parents.v2.clone(),
            cgroup_v1_parents: parents.dirs(Mechanism::CgroupV1),
        }
    }
}

/// Whether this host can give a sandbox `limits`: an error for a forced mechanism it
/// lacks, else the limits the chosen mechanism cannot enforce, by their spec names.
pub fn check(limits: &Limits) -> Result<Vec<String>, Unavailable> {
    let available = parents().available();
    let mechanism = choose(available, limits.mechanism, limits.any_sandbox_limit())?;
    Ok(unenforced(mechanism, available, limits))
}

/// What the sandbox's own side does for its limits, prepared before clone.
pub(crate) struct Enforcement {
    /// Set on the program's process before exec.
    pub rlimits: Vec<(Resource, u64)>,
    pub watch: watch::Config,
}

/// The host's side of one sandbox's limits: its cgroup, if any, until it is removed or
/// handed back to its slot.
pub(crate) struct Enforcer {
    mechanism: Mechanism,
    limits: Limits,
    group: Option<Group>,
    unenforced: Vec<String>,
}

impl Enforcer {
    /// Chooses the mechanism and, for a cgroup one, makes the sandbox's cgroup. Call from
    /// a single-threaded process: the first cgroup starts the janitor.
    pub fn prepare(spec: &Spec) -> Result<(Enforcer, Enforcement), LimitsError> {
        let parents = parents();
        let available = parents.available();
        let limited = spec.limits.any_sandbox_limit();
        let mechanism = choose(available, spec.limits.mechanism, limited)?;
        let name = cgroup::next_name();
        if mechanism != Mechanism::Fallback {
            // Every parent, whichever mechanism later sandboxes of this process get.
            let mut dirs = parents.dirs(Mechanism::CgroupV2);
            dirs.extend(parents.dirs(Mechanism::CgroupV1));
            janitor::ensure(&dirs);
        }
        let group = match mechanism {
            Mechanism::CgroupV2 => {
                let parent = parents.v2.as_deref().expect("chosen only when found");
                Some(Group::create_v2(parent, &name, &spec.limits)?)
            }
            Mechanism::CgroupV1 => Some(Group::create_v1(
                &parents.v1,
                slot::take(),
                &name,
                &spec.limits,
            )?),
            Mechanism::Fallback => None,
        };
        let enforcement = Enforcement {
            rlimits: rlimits(&spec.limits, mechanism),
            watch: watch_config(spec, mechanism),
        };
        let enforcer = Enforcer {
            mechanism,
            limits: spec.limits.clone(),
            group,
            unenforced: unenforced(mechanism, available, &spec.limits),
        };
        Ok((enforcer, enforcement))
    }

    /// Moves pid 1 (host pid `pid`) into the sandbox's cgroup2 group when clone3 could not
    /// start it there. The sandbox's setup runs meanwhile and waits for this only at its
    /// end.
    pub fn place(&self, pid: nix::unistd::Pid, into_cgroup: bool) -> Result<(), CgroupError> {
        match &self.group {
            Some(group) if !into_cgroup => group.place(pid),
            _ => Ok(()),
        }
    }

    /// The cgroup2 directory clone3 places pid 1 in.
    pub fn clone_into(&self) -> Option<BorrowedFd<'_>> {
        self.group.as_ref().and_then(Group::clone_into)
    }

    /// Copies of the v1 `tasks` files pid 1 joins its cgroups by, for the child to own
    /// and close once it has joined.
    pub fn cgroup_tasks(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        self.group.as_ref().map_or(Ok(Vec::new()), Group::tasks)
    }

    /// What the sandbox used and which limit stopped it, once pid 1 has reported: the
    /// sandbox is empty then but for pid 1, so its counters no longer move.
    pub fn account(
        &self,
        init: &InitUsage,
        exit: &Exit,
        timed_out: bool,
    ) -> (Resources, Option<LimitExceeded>) {
        let cgroup = self.group.as_ref().map(Group::usage);
        let resources = account(
            self.mechanism,
            cgroup.as_ref(),
            init,
            self.unenforced.clone(),
        );
        let observed = observe(exit, timed_out, cgroup.as_ref(), init, &self.limits);
        let hit = verdict(&self.limits, &observed, resources.peak_memory_bytes);
        (resources, hit)
    }

    /// Once pid 1 has been reaped: its cgroup removed, or its slot kept for the next
    /// sandbox.
    pub fn release(mut self) -> Result<(), CgroupError> {
        if let Some(slot) = self.group.take().map(Group::end).transpose()?.flatten() {
            slot::give_back(slot)?;
        }
        Ok(())
    }
}

/// The per-process limits: RLIMIT_NPROC counts the processes of one user in one user
/// namespace, so in the sandbox's own namespace it is a per-sandbox process limit (the
/// kernel exempts only global root, where pid 1 enforces it instead).
fn rlimits(limits: &Limits, mechanism: Mechanism) -> Vec<(Resource, u64)> {
    let nproc = limits
        .pids_max
        .filter(|_| mechanism == Mechanism::Fallback)
        .map(|n| (Resource::RLIMIT_NPROC, n));
    [
        nproc,
        limits.file_size_max.map(|n| (Resource::RLIMIT_FSIZE, n)),
        limits.open_files_max.map(|n| (Resource::RLIMIT_NOFILE, n)),
        limits.address_space_max.map(|n| (Resource::RLIMIT_AS, n)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What pid 1 watches: under the fallback everything, at a short interval when it
/// enforces a limit; under cgroups only the tmpfs mounts.
fn watch_config(spec: &Spec, mechanism: Mechanism) -> watch::Config {
    let fallback = mechanism == Mechanism::Fallback;
    let mut tmpfs: Vec<(PathBuf, u64)> = spec
        .mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Tmpfs { dst, size } => Some((dst.clone(), spec.tmpfs_size(*size))),
            _ => None,
        })
        .collect();
    tmpfs.push(("/dev/shm".into(), spec.shm_size()));
    let memory_max = spec.limits.memory_max.filter(|_| fallback);
    let pids_max = spec.limits.pids_max.filter(|_| fallback);
    let enforcing = memory_max.is_some() || pids_max.is_some();
    watch::Config {
        memory_max,
        pids_max,
        processes: fallback,
        tmpfs,
        interval: if enforcing {
            watch::ENFORCING_INTERVAL
        } else {
            watch::MEASURING_INTERVAL
        },
    }
}

/// The record of what the sandbox used: the cgroup's counters where there is one, pid 1's
/// samples and its children's rusage otherwise.
fn account(
    mechanism: Mechanism,
    cgroup: Option<&CgroupUsage>,
    init: &InitUsage,
    unenforced: Vec<String>,
) -> Resources {
    let rss = Some(init.largest_rss_bytes).filter(|&b| b > 0);
    Resources {
        mechanism,
        peak_memory_bytes: cgroup
            .and_then(|c| c.peak_memory)
            .or(init.peak_memory_bytes.max(rss)),
        cpu_user_ms: cgroup
            .and_then(|c| c.cpu_user_ms)
            .unwrap_or(init.cpu_user_ms),
        cpu_system_ms: cgroup
            .and_then(|c| c.cpu_system_ms)
            .unwrap_or(init.cpu_system_ms),
        max_processes: cgroup.and_then(|c| c.pids_peak).or(init.max_processes),
        tmpfs_peak_bytes: init.tmpfs_peak_bytes,
        unenforced,
    }
}

fn observe(
    exit: &Exit,
    timed_out: bool,
    cgroup: Option<&CgroupUsage>,
    init: &InitUsage,
    limits: &Limits,
) -> Observed {
    let at_pid_limit = limits
        .pids_max
        .is_some_and(|max| init.max_processes.is_some_and(|n| n >= max));
    Observed {
        failed: timed_out || !exit.success(),
        memory_killed: cgroup.is_some_and(|c| c.memory_killed)
            || init.killed_for == Some(Killed::Memory),
        pids_refused: cgroup.is_some_and(|c| c.pids_refused)
            || init.killed_for == Some(Killed::Processes)
            || at_pid_limit,
        tmpfs_full: init.tmpfs_full.clone(),
        file_size_signal: matches!(exit, Exit::Signal { signal, .. } if *signal == libc::SIGXFSZ),
    }
}

/// What one sandbox used, for every run whether or not it had limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub mechanism: Mechanism,
    /// Memory at its highest: the cgroup's peak (tmpfs contents included), else the
    /// highest sampled total of the processes' PSS and the tmpfs contents, else the
    /// largest single process's RSS.
    pub peak_memory_bytes: Option<u64>,
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    /// Processes and threads alive at once, at most; pid 1 included.
    pub max_processes: Option<u64>,
    /// The most the private tmpfs mounts held at once.
    pub tmpfs_peak_bytes: u64,
    /// Limits this mechanism could not enforce, by their spec names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unenforced: Vec<String>,
}

/// A limit that stopped the sandbox's program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LimitExceeded {
    Memory {
        limit_bytes: u64,
        peak_bytes: Option<u64>,
    },
    Processes {
        limit: u64,
    },
    Tmpfs {
        path: PathBuf,
        limit_bytes: u64,
    },
    FileSize {
        limit_bytes: u64,
    },
}

impl LimitExceeded {
    /// The setting that raises this limit: the spec field, which the command line and
    /// config spell the same way with dashes.
    pub fn setting(&self) -> &'static str {
        match self {
            LimitExceeded::Memory { .. } => "memory_max",
            LimitExceeded::Processes { .. } => "pids_max",
            LimitExceeded::Tmpfs { .. } => "tmpfs_size",
            LimitExceeded::FileSize { .. } => "file_size_max",
        }
    }
}

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitExceeded::Memory {
                limit_bytes,
                peak_bytes,
            } => {
                write!(f, "exceeded memory limit {}", format_bytes(*limit_bytes))?;
                match peak_bytes {
                    Some(peak) => write!(f, " (peak {})", format_bytes(*peak)),
                    None => Ok(()),
                }
            }
            LimitExceeded::Processes { limit } => write!(f, "exceeded process limit {limit}"),
            LimitExceeded::Tmpfs { path, limit_bytes } => write!(
                f,
                "filled the tmpfs at {} (limit {})",
                path.display(),
                format_bytes(*limit_bytes)
            ),
            LimitExceeded::FileSize { limit_bytes } => {
                write!(f, "exceeded file size limit {}", format_bytes(*limit_bytes))
            }
        }
    }
}

/// `256 MiB`, `1.5 GiB`, `512 KiB`, `17 B`: binary units, one decimal when not whole.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0} {unit}")
    } else {
        format!("{rounded:.1} {unit}")
    }
}

/// What the mechanism saw happen, the inputs of [`verdict`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The program did not succeed (a non-zero exit, a signal, or a timeout).
    pub failed: bool,
    /// The kernel's OOM killer acted in the sandbox's cgroup, or pid 1 killed the
    /// sandbox for its memory.
    pub memory_killed: bool,
    /// The cgroup refused a fork, or pid 1 saw the process count reach the limit.
    pub pids_refused: bool,
    /// A tmpfs was full when pid 1 looked: its path and size.
    pub tmpfs_full: Option<(PathBuf, u64)>,
    /// The program was killed by SIGXFSZ.
    pub file_size_signal: bool,
}

/// Whether a limit stopped the program, and which. Only a failed program was stopped:
/// one that passed despite a refused fork or a full disk handled it. Memory comes first
/// because running out of it makes everything else fail too.
pub fn verdict(
    limits: &Limits,
    observed: &Observed,
    peak_memory: Option<u64>,
) -> Option<LimitExceeded> {
    if !observed.failed {
        return None;
    }
    if let (true, Some(limit_bytes)) = (observed.memory_killed, limits.memory_max) {
        return Some(LimitExceeded::Memory {
            limit_bytes,
            peak_bytes: peak_memory,
        });
    }
    if let (true, Some(limit)) = (observed.pids_refused, limits.pids_max) {
        return Some(LimitExceeded::Processes { limit });
    }
    if let Some((path, limit_bytes)) = &observed.tmpfs_full {
        return Some(LimitExceeded::Tmpfs {
            path: path.clone(),
            limit_bytes: *limit_bytes,
        });
    }
    if let (true, Some(limit_bytes)) = (observed.file_size_signal, limits.file_size_max) {
        return Some(LimitExceeded::FileSize { limit_bytes });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Available = Available {
        cgroup_v2: true,
        cgroup_v2_cpu: true,
        cgroup_v1: true,
        cgroup_v1_cpu: true,
    };

    #[test]
    fn the_best_available_mechanism_wins() {
        assert_eq!(choose(ALL, None, false), Ok(Mechanism::CgroupV2));
        let hybrid_root = Available {
            cgroup_v2: false,
            ..ALL
        };
        assert_eq!(choose(hybrid_root, None, true), Ok(Mechanism::CgroupV1));
        assert_eq!(
            choose(Available::default(), None, true),
            Ok(Mechanism::Fallback)
        );
    }

    #[test]
    fn an_unlimited_sandbox_is_measured_by_pid_1_rather_than_moved_into_cgroup_v1() {
        let hybrid_root = Available {
            cgroup_v2: false,
            ..ALL
        };
        assert_eq!(choose(hybrid_root, None, false), Ok(Mechanism::Fallback));
        assert_eq!(
            choose(hybrid_root, Some(Mechanism::CgroupV1), false),
            Ok(Mechanism::CgroupV1)
        );
    }

    #[test]
    fn a_forced_mechanism_must_be_there() {
        assert_eq!(
            choose(ALL, Some(Mechanism::Fallback), true),
            Ok(Mechanism::Fallback)
        );
        let none = Available::default();
        assert_eq!(
            choose(none, Some(Mechanism::CgroupV1), true),
            Err(Unavailable(Mechanism::CgroupV1))
        );
    }

    #[test]
    fn the_fallback_cannot_cap_cpu() {
        let limits = Limits {
            cpu_max_millis: Some(500),
            ..Limits::default()
        };
        assert_eq!(
            unenforced(Mechanism::Fallback, ALL, &limits),
            ["cpu_max_millis"]
        );
        assert!(unenforced(Mechanism::CgroupV2, ALL, &limits).is_empty());
        let no_cpu = Available {
            cgroup_v1_cpu: false,
            ..ALL
        };
        assert_eq!(
            unenforced(Mechanism::CgroupV1, no_cpu, &limits),
            ["cpu_max_millis"]
        );
    }

    #[test]
    fn verdicts_name_the_limit_in_the_documented_words() {
        let limits = Limits {
            memory_max: Some(256 << 20),
            pids_max: Some(200),
            ..Limits::default()
        };
        let memory = Observed {
            failed: true,
            memory_killed: true,
            pids_refused: true,
            ..Observed::default()
        };
        let hit = verdict(&limits, &memory, Some(262 << 20)).unwrap();
        assert_eq!(
            hit.to_string(),
            "exceeded memory limit 256 MiB (peak 262 MiB)"
        );
        assert_eq!(hit.setting(), "memory_max");
        let pids = Observed {
            memory_killed: false,
            ..memory.clone()
        };
        assert_eq!(
            verdict(&limits, &pids, None).unwrap().to_string(),
            "exceeded process limit 200"
        );
        let tmpfs = Observed {
            failed: true,
            tmpfs_full: Some(("/tmp".into(), 16 << 20)),
            ..Observed::default()
        };
        assert_eq!(
            verdict(&limits, &tmpfs, None).unwrap().to_string(),
            "filled the tmpfs at /tmp (limit 16 MiB)"
        );
    }

    #[test]
    fn a_test_that_passed_was_not_stopped() {
        let limits = Limits {
            pids_max: Some(10),
            ..Limits::default()
        };
        let observed = Observed {
            failed: false,
            pids_refused: true,
            ..Observed::default()
        };
        assert_eq!(verdict(&limits, &observed, None), None);
        // A refused fork without a limit of ours is someone else's limit.
        let observed = Observed {
            failed: true,
            memory_killed: true,
            ..Observed::default()
        };
        assert_eq!(verdict(&Limits::default(), &observed, None), None);
    }

    #[test]
    fn the_fallback_limits_processes_per_sandbox_and_watches_at_a_short_interval() {
        let mut spec = Spec::new(vec!["true".into()]);
        spec.limits.pids_max = Some(200);
        spec.limits.file_size_max = Some(1 << 20);
        let fallback = rlimits(&spec.limits, Mechanism::Fallback);
        assert_eq!(
            fallback,
            [
                (Resource::RLIMIT_NPROC, 200),
                (Resource::RLIMIT_FSIZE, 1 << 20)
            ]
        );
        assert_eq!(
            rlimits(&spec.limits, Mechanism::CgroupV1),
            [(Resource::RLIMIT_FSIZE, 1 << 20)]
        );
        let config = watch_config(&spec, Mechanism::Fallback);
        assert_eq!(config.interval, watch::ENFORCING_INTERVAL);
        assert_eq!(config.pids_max, Some(200));
        assert!(
            config
                .tmpfs
                .iter()
                .any(|(p, _)| p == std::path::Path::new("/tmp"))
        );
        let cgroup = watch_config(&spec, Mechanism::CgroupV1);
        assert_eq!((cgroup.pids_max, cgroup.processes), (None, false));
        assert_eq!(cgroup.interval, watch::MEASURING_INTERVAL);
    }

    #[test]
    fn cgroup_counters_win_over_samples() {
        let init = InitUsage {
            cpu_user_ms: 5,
            largest_rss_bytes: 4096,
            max_processes: Some(3),
            tmpfs_peak_bytes: 10,
            ..InitUsage::default()
        };
        let cgroup = CgroupUsage {
            peak_memory: Some(1 << 20),
            cpu_user_ms: Some(7),
            ..CgroupUsage::default()
        };
        let with = account(Mechanism::CgroupV1, Some(&cgroup), &init, Vec::new());
        assert_eq!(with.peak_memory_bytes, Some(1 << 20));
        assert_eq!(with.cpu_user_ms, 7);
        assert_eq!(with.max_processes, Some(3));
        let without = account(Mechanism::Fallback, None, &init, Vec::new());
        assert_eq!(without.peak_memory_bytes, Some(4096));
        assert_eq!(without.cpu_user_ms, 5);
        assert_eq!(without.tmpfs_peak_bytes, 10);
    }

    #[test]
    fn the_process_limit_reached_under_the_fallback_counts_as_refused() {
        let limits = Limits {
            pids_max: Some(200),
            ..Limits::default()
        };
        let init = InitUsage {
            max_processes: Some(200),
            ..InitUsage::default()
        };
        let observed = observe(&Exit::Code { code: 101 }, false, None, &init, &limits);
        assert!(observed.failed && observed.pids_refused);
        let killed = observe(
            &Exit::from_signal(libc::SIGXFSZ),
            false,
            None,
            &InitUsage::default(),
            &limits,
        );
        assert!(killed.file_size_signal && !killed.pids_refused);
    }

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(format_bytes(17), "17 B");
        assert_eq!(format_bytes(512 << 10), "512 KiB");
        assert_eq!(format_bytes(256 << 20), "256 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    }
}
