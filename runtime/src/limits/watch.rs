//! The fallback's eyes, in the sandbox's pid 1: samples the sandbox's processes and tmpfs
//! mounts at a short interval, kills the sandbox past a limit, and keeps the peaks for the
//! report. Under cgroups it only watches the tmpfs mounts, which cgroups do not tell apart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often the sandbox is sampled when pid 1 enforces a limit: a 1 GiB allocation
/// takes a few hundred milliseconds, so it is stopped within a few percent of its limit.
pub const ENFORCING_INTERVAL: Duration = Duration::from_millis(10);
/// How often it is sampled only to measure it.
pub const MEASURING_INTERVAL: Duration = Duration::from_millis(100);
/// Sampling may take at most this share of the time (one part in this many).
const COST_SHARE: u32 = 10;

/// What pid 1 watches, prepared before clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Kill the sandbox past these; set only when pid 1 is the mechanism.
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    /// Count processes and their memory (when no cgroup does).
    pub processes: bool,
    /// Every private tmpfs and its size.
    pub tmpfs: Vec<(PathBuf, u64)>,
    pub interval: Duration,
}

/// Why pid 1 killed the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Killed {
    Memory,
    Processes,
}

/// What pid 1 measured, sent in its report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitUsage {
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    /// The largest single process's resident set, from the kernel's own accounting.
    pub largest_rss_bytes: u64,
    /// The highest sampled total of PSS and tmpfs contents.
    pub peak_memory_bytes: Option<u64>,
    pub max_processes: Option<u64>,
    pub tmpfs_peak_bytes: u64,
    /// A tmpfs found full: its path and size.
    pub tmpfs_full: Option<(PathBuf, u64)>,
    pub killed_for: Option<Killed>,
}

/// The limit a sample is over, if any.
pub fn over_limit(config: &Config, memory: u64, processes: u64) -> Option<Killed> {
    if config.memory_max.is_some_and(|max| memory > max) {
        return Some(Killed::Memory);
    }
    if config.pids_max.is_some_and(|max| processes > max) {
        return Some(Killed::Processes);
    }
    None
}

pub struct Watch {
    config: Config,
    usage: InitUsage,
    next: Instant,
    interval: Duration,
    last_processes: u64,
    last_memory: Option<u64>,
    /// The program's own pid in the sandbox, and its tasks when last sampled.
    program: u32,
    program_tasks: u64,
}

impl Watch {
    pub fn new(config: Config) -> Watch {
        Watch {
            interval: config.interval,
            // A test that ends within one interval costs only the look at its end.
            next: Instant::now() + config.interval,
            usage: InitUsage::default(),
            last_processes: 0,
            last_memory: None,
            program: 0,
            program_tasks: 0,
            config,
        }
    }

    /// When the next sample is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Takes a sample if one is due; returns the limit the sandbox is over, once.
    pub fn sample(&mut self) -> Option<Killed> {
        if Instant::now() < self.next {
            return None;
        }
        self.sample_now()
    }

    /// The program's pid in the sandbox, once started.
    pub fn watch_program(&mut self, pid: u32) {
        self.program = pid;
    }

    /// The look as the program ends, while what it left still runs: the program was alive
    /// beside all of it a moment ago, with the tasks it had when last seen. A program
    /// stopped by a process limit fails at its last fork and exits at once, between two
    /// samples.
    pub fn program_ended(&mut self) {
        if self.sample_now().is_none()
            && let Some(max) = &mut self.usage.max_processes
        {
            *max = (*max).max(self.last_processes + self.program_tasks.max(1));
        }
    }

    /// Takes a sample now.
    fn sample_now(&mut self) -> Option<Killed> {
        let started = Instant::now();
        let tmpfs = self.sample_tmpfs();
        let mut verdict = None;
        if self.config.processes {
            let (processes, pss, program_tasks) = sample_processes(self.program);
            if program_tasks > 0 {
                self.program_tasks = program_tasks;
            }
            let memory = pss + tmpfs;
            self.last_memory = Some(memory);
            let peak = self.usage.peak_memory_bytes.get_or_insert(0);
            *peak = (*peak).max(memory);
            let max = self.usage.max_processes.get_or_insert(0);
            *max = (*max).max(processes);
            self.last_processes = processes;
            if self.usage.killed_for.is_none() {
                verdict = over_limit(&self.config, memory, processes);
                self.usage.killed_for = verdict;
            }
        }
        let cost = started.elapsed();
        self.interval = self.next_interval().max(cost * COST_SHARE);
        self.next = Instant::now() + self.interval;
        verdict
    }

    /// The closer memory is to its limit, the sooner the next look: a sandbox at half its
    /// limit is sampled twice as often, down to every millisecond.
    fn next_interval(&self) -> Duration {
        let (Some(max), Some(used)) = (self.config.memory_max, self.last_memory) else {
            return self.config.interval;
        };
        let headroom = max.saturating_sub(used) as f64 / max.max(1) as f64;
        self.config
            .interval
            .mul_f64(headroom)
            .max(Duration::from_millis(1))
    }

    fn sample_tmpfs(&mut self) -> u64 {
        let mut total = 0;
        for (path, size) in &self.config.tmpfs {
            let Some((used, full)) = tmpfs_use(path) else {
                continue;
            };
            total += used;
            if full && self.usage.tmpfs_full.is_none() {
                self.usage.tmpfs_full = Some((path.clone(), *size));
            }
        }
        self.usage.tmpfs_peak_bytes = self.usage.tmpfs_peak_bytes.max(total);
        total
    }

    /// The last look, once the sandbox is empty: the tmpfs contents are still there, and
    /// every process has been reaped into pid 1's children's usage.
    pub fn finish(mut self) -> InitUsage {
        self.sample_tmpfs();
        use nix::sys::resource::{UsageWho, getrusage};
        if let Ok(children) = getrusage(UsageWho::RUSAGE_CHILDREN) {
            let ms = |t: nix::sys::time::TimeVal| {
                (t.tv_sec() as u64) * 1000 + (t.tv_usec() as u64) / 1000
            };
            self.usage.cpu_user_ms = ms(children.user_time());
            self.usage.cpu_system_ms = ms(children.system_time());
            self.usage.largest_rss_bytes = (children.max_rss().max(0) as u64) * 1024;
        }
        self.usage
    }
}

/// Bytes used on the tmpfs at `path`, and whether it is full.
fn tmpfs_use(path: &Path) -> Option<(u64, bool)> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let used = (stat.blocks() - stat.blocks_free()) as u64 * stat.fragment_size() as u64;
    Some((used, stat.blocks() > 0 && stat.blocks_available() == 0))
}

/// Tasks (threads count, as for pids.max) of every process this pid namespace's /proc
/// shows, the total PSS of all but the watcher itself, and the tasks of `program` alone.
fn sample_processes(program: u32) -> (u64, u64, u64) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (0, 0, 0);
    };
    let mut tasks = 0;
    let mut program_tasks = 0;
    let mut pss = 0;
    let own = std::process::id();
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let these = threads(&stat).unwrap_or(1);
        tasks += these;
        if pid == program {
            program_tasks = these;
        }
        // pid 1's memory is the runner's copy, not the test's; walking its page tables
        // was the costliest part of every look.
        if pid == own {
            continue;
        }
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"));
        pss += rollup.ok().and_then(|r| pss_bytes(&r)).unwrap_or(0);
    }
    (tasks, pss, program_tasks)
}

/// `num_threads`, the 20th field of /proc/PID/stat.
fn threads(stat: &str) -> Option<u64> {
    let (_, fields) = stat.rsplit_once(')')?;
    fields.split_whitespace().nth(17)?.parse().ok()
}

/// The `Pss:` line of /proc/PID/smaps_rollup, in bytes.
fn pss_bytes(rollup: &str) -> Option<u64> {
    rollup.lines().find_map(|line| {
        let kb = line.strip_prefix("Pss:")?.trim().strip_suffix("kB")?;
        kb.trim().parse::<u64>().ok().map(|kb| kb * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_kept_to_the_byte() {
        let config = Config {
            memory_max: Some(100),
            pids_max: Some(10),
            ..Config::default()
        };
        assert_eq!(over_limit(&config, 100, 10), None);
        assert_eq!(over_limit(&config, 101, 10), Some(Killed::Memory));
        assert_eq!(over_limit(&config, 50, 11), Some(Killed::Processes));
        assert_eq!(over_limit(&Config::default(), u64::MAX, u64::MAX), None);
    }

    #[test]
    fn near_its_memory_limit_the_sandbox_is_watched_more_often() {
        let mut watch = Watch::new(Config {
            memory_max: Some(100),
            interval: ENFORCING_INTERVAL,
            ..Config::default()
        });
        assert_eq!(watch.next_interval(), ENFORCING_INTERVAL);
        watch.last_memory = Some(50);
        assert_eq!(watch.next_interval(), ENFORCING_INTERVAL / 2);
        watch.last_memory = Some(100);
        assert_eq!(watch.next_interval(), Duration::from_millis(1));
    }

    #[test]
    fn proc_files_parse() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 7 0 100 0";
        assert_eq!(threads(stat), Some(7));
        let rollup = "00400000-7ffd [rollup]\nRss:  2048 kB\nPss:  1536 kB\nPss_Anon: 1024 kB\n";
        assert_eq!(pss_bytes(rollup), Some(1536 * 1024));
    }

    #[test]
    fn this_process_is_sampled() {
        let (tasks, pss, mine) = sample_processes(std::process::id());
        assert!(tasks >= 1 && pss > 0 && mine >= 1, "{tasks} {pss} {mine}");
        let dir = tempfile::tempdir().unwrap();
        assert!(tmpfs_use(dir.path()).is_some());
    }
}
