//! `--chaos`: which perturbations a run asks for, and what one attempt draws from its own
//! seed. The draw is a pure function of the run's seed, the test's name, the attempt's
//! number and the host's CPUs, so `replay --attempt N` draws exactly what attempt N got.
//!
//! With more than one kind asked for, each kind is on in half the attempts (drawn like the
//! rest): the attempts where it was off are what its failure rate is compared with.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use clap::ValueEnum;
use isotest_runtime::{Chaos, MAX_NEIGHBOURS, NetDelay, Pause, Paused, affordable};
use serde::{Deserialize, Serialize};

/// The spec's variable that names the kinds; with `ISOTEST_SEED` and `ISOTEST_TEST_NAME`
/// it is all an attempt's draw needs.
pub const ENV: &str = "ISOTEST_CHAOS";

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An affinity mask of 1..N CPUs; on one CPU, SCHED_BATCH in half the draws.
    Cpus,
    /// Pauses of the whole sandbox and of single threads, at most 20% of the run.
    Sched,
    /// Clocks that say the machine booted under a minute ago, or hundreds of days ago.
    Uptime,
    /// Delay, jitter and loss on `--forward`ed connections.
    Net,
    /// A small tmpfs (ENOSPC), a low RLIMIT_NOFILE (EMFILE), a memory cap (pressure).
    Resources,
    /// Busy threads on the sandbox's CPUs: in bursts, or in a third of the draws 1 to 3
    /// per CPU that never rest (a loaded machine).
    Neighbours,
}

pub const ALL: [Kind; 6] = [
    Kind::Cpus,
    Kind::Sched,
    Kind::Uptime,
    Kind::Net,
    Kind::Resources,
    Kind::Neighbours,
];

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.to_possible_value().expect("no kind is skipped");
        f.write_str(value.get_name())
    }
}

/// `--chaos` or `--chaos all` is every kind; else a comma-separated list.
pub fn parse_kinds(text: &str) -> Result<Vec<Kind>, String> {
    if text.is_empty() || text == "all" {
        return Ok(ALL.to_vec());
    }
    let mut kinds = Vec::new();
    for word in text.split(',').map(str::trim) {
        let kind = Kind::from_str(word, true).map_err(|_| {
            format!(
                "unknown chaos kind `{word}`; the kinds are {} (or `all`)",
                ALL.map(|k| k.to_string()).join(", ")
            )
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds.sort();
    Ok(kinds)
}

pub fn format_kinds(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(Kind::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// What one attempt got, as the report records it: enough to explain a failure and to
/// group the failure rates; the full pause schedule is in the spec it draws again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perturbation {
    /// The seed this attempt drew from.
    pub seed: u64,
    /// The kinds that were on in this attempt.
    pub kinds: Vec<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Vec<usize>>,
    /// The program ran `SCHED_BATCH` (only ever on one CPU).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pauses: Option<PauseSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbours: Option<u32>,
    /// The neighbours never rested, this many on each CPU of the sandbox: a loaded machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_per_cpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetDelay>,
    /// Kinds asked for that this host cannot apply, with the reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<Kind, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseSummary {
    /// Pauses of the whole sandbox.
    pub sandbox: u32,
    /// Freezes of one thread.
    pub threads: u32,
    /// Planned time paused, if the test runs long enough to meet every pause.
    pub total_ms: u64,
    pub first_at_ms: u64,
}

/// A draw: what the report records and what the sandbox applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Draw {
    pub perturbation: Perturbation,
    pub chaos: Chaos,
}

/// The host as the draw needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// CPUs the runner may use, in order.
    pub cpus: Vec<usize>,
    /// Why net chaos cannot delay the sandbox's own loopback here, if it cannot.
    pub no_netem: Option<String>,
}

impl Host {
    /// This host, probed once per process.
    pub fn current() -> &'static Host {
        static HOST: std::sync::OnceLock<Host> = std::sync::OnceLock::new();
        HOST.get_or_init(Host::probe)
    }

    fn probe() -> Host {
        Host {
            cpus: allowed_cpus(),
            no_netem: netem_missing(Path::new("/sys/module"), &kernel_modules()),
        }
    }
}

fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    let Ok(set) = sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return vec![0];
    };
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

fn kernel_modules() -> std::path::PathBuf {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("/lib/modules").join(release)
}

/// Why net chaos cannot delay the sandbox's own loopback on this host: that needs netem,
/// which is neither loaded (`/sys/module/sch_netem`) nor installed as a module here; and
/// even with netem, this version does not drive it yet. `--forward`ed connections it
/// delays anyway, in the supervisor's relay.
pub fn netem_missing(sys_module: &Path, modules: &Path) -> Option<String> {
    let loaded = sys_module.join("sch_netem").exists();
    let installed = ["ko", "ko.xz", "ko.zst", "ko.gz"].iter().any(|ext| {
        modules
            .join(format!("kernel/net/sched/sch_netem.{ext}"))
            .exists()
    });
    Some(if loaded || installed {
        "net chaos drives sch_netem with tc inside the sandbox's network namespace, which \
         this version of cargo isotest does not do yet"
            .to_string()
    } else {
        "this kernel has no sch_netem (neither loaded nor installed as a module): net chaos \
         needs netem's delay and loss on the sandbox's loopback"
            .to_string()
    })
}

/// The seed of one attempt: the run's seed, the test and the attempt number, mixed
/// (FNV-1a over the name, then SplitMix64), stable across versions and hosts.
pub fn attempt_seed(run_seed: u64, name: &str, attempt: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = run_seed ^ hash ^ u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    // Below 2^53, like the run's seed, so that JSON readers using doubles keep it exact.
    (z ^ (z >> 31)) >> 11
}

/// Tmpfs sizes a `resources` draw picks from: a few writes fill the smallest.
pub const TMPFS_SIZES: [u64; 4] = [1 << 20, 4 << 20, 16 << 20, 64 << 20];
/// Descriptor limits a `resources` draw picks from.
pub const OPEN_FILES: [u64; 4] = [32, 64, 256, 1024];
/// Memory caps of the whole sandbox a `resources` draw picks from: pressure, through the
/// limits' own mechanism.
pub const MEMORY_SIZES: [u64; 4] = [64 << 20, 128 << 20, 256 << 20, 512 << 20];
/// Pauses are planned over the first this many ms of a run.
const SCHEDULE_MS: u64 = 10_000;
const MAX_PAUSES: usize = 128;

/// What an attempt with `seed` gets of `kinds` on `host`; `forwarded` says whether its
/// sandbox relays any `--forward`ed connection, which is what net chaos delays.
pub fn draw(kinds: &[Kind], seed: u64, host: &Host, forwarded: bool) -> Draw {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut p = Perturbation {
        seed,
        ..Perturbation::default()
    };
    let mut chaos = Chaos::default();
    // Each kind is decided in a fixed order and always takes its draws, so that adding
    // a kind to the list leaves the others' values as they were.
    for kind in ALL {
        let on = rng.bool() || kinds.len() == 1;
        let mut sub = fastrand::Rng::with_seed(rng.u64(..));
        if !kinds.contains(&kind) || !on {
            continue;
        }
        match kind {
            Kind::Cpus => {
                let cpus = draw_cpus(&mut sub, &host.cpus);
                // On one CPU the kernel lets a woken thread preempt the running one, so
                // a thread that "always" starts at once still does; batch takes that away.
                let batch = sub.bool() && cpus.len() == 1;
                chaos.cpus = Some(cpus.clone());
                chaos.batch = batch;
                p.cpus = Some(cpus);
                p.batch = batch;
            }
            Kind::Uptime => {
                let uptime = if sub.bool() {
                    sub.u64(0..=60)
                } else {
                    sub.u64(100 * 86_400..1000 * 86_400)
                };
                chaos.uptime_s = Some(uptime);
                p.uptime_s = Some(uptime);
            }
            Kind::Sched => {
                chaos.pauses = draw_pauses(&mut sub);
                p.pauses = Some(summarize_pauses(&chaos.pauses));
            }
            Kind::Net => {
                if !forwarded {
                    p.skipped.insert(Kind::Net, net_skipped(host));
                    continue;
                }
                let net = draw_net(&mut sub);
                chaos.net = Some(net);
                p.net = Some(net);
            }
            Kind::Resources => {
                // Through the spec's own limits ([`crate::sandbox::attempt_spec`]).
                p.tmpfs_size = Some(TMPFS_SIZES[sub.usize(..TMPFS_SIZES.len())]);
                p.open_files = Some(OPEN_FILES[sub.usize(..OPEN_FILES.len())]);
                p.memory_max = Some(MEMORY_SIZES[sub.usize(..MEMORY_SIZES.len())]);
            }
            Kind::Neighbours => {
                let cpus = chaos.cpus.as_ref().map_or(host.cpus.len(), Vec::len);
                let n = draw_neighbours(&mut sub, cpus.max(1) as u32);
                chaos.neighbours = n.count;
                chaos.loaded = n.loaded_per_cpu.is_some();
                p.neighbours = Some(n.count);
                p.loaded_per_cpu = n.loaded_per_cpu;
            }
        }
        p.kinds.push(kind);
    }
    Draw {
        perturbation: p,
        chaos,
    }
}

/// In how many `neighbours` draws, one in this many, the machine is loaded.
const LOADED_ONE_IN: u32 = 3;
/// The most never-resting neighbours a loaded machine has per CPU of the sandbox.
const LOADED_MAX_PER_CPU: u32 = 3;

/// What a `neighbours` draw gives a sandbox of `cpus` CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Neighbours {
    count: u32,
    loaded_per_cpu: Option<u32>,
}

/// Most draws give one or two neighbours per CPU in bursts at half duty: a noisy machine,
/// not a stalled one. A minority give a loaded one, as a shared CI runner is: 1 to 3 per
/// CPU that never rest, so each of the program's threads gets a half to a quarter of its
/// CPU for the whole run. That sustained slowdown, not the bursts nor `sched`'s pauses
/// (a fifth of the run at most), is what a timeout too tight or a sleep-based wait
/// fails under; a minority, so that chaos stays within twice the plain run's time.
fn draw_neighbours(rng: &mut fastrand::Rng, cpus: u32) -> Neighbours {
    let bursts = rng.u32(1..=2 * cpus);
    if rng.u32(..LOADED_ONE_IN) != 0 {
        return Neighbours {
            count: bursts.min(MAX_NEIGHBOURS),
            loaded_per_cpu: None,
        };
    }
    let per_cpu = rng.u32(1..=LOADED_MAX_PER_CPU);
    Neighbours {
        count: per_cpu.saturating_mul(cpus).min(MAX_NEIGHBOURS),
        loaded_per_cpu: Some(per_cpu),
    }
}

/// Why an attempt without forwarded connections gets no net chaos.
fn net_skipped(host: &Host) -> String {
    let netem = host
        .no_netem
        .as_deref()
        .unwrap_or("the sandbox's loopback is not delayed");
    format!("{netem}; net chaos delays only --forward'ed connections, and this test has none")
}

/// A link from a LAN's to a slow WAN's: 1 to 200 ms each way (log-uniform), jitter up
/// to half of it, and no loss or 1, 2 or 5%.
fn draw_net(rng: &mut fastrand::Rng) -> NetDelay {
    let delay_ms = (200f64.powf(rng.f64())).round().max(1.0) as u32;
    NetDelay {
        delay_ms,
        jitter_ms: rng.u32(..=delay_ms / 2),
        loss_percent: [0, 1, 2, 5][rng.usize(..4)],
        seed: rng.u64(..),
    }
}

/// One CPU in half the draws, where most single-core races live; else 2..=N.
fn draw_cpus(rng: &mut fastrand::Rng, host: &[usize]) -> Vec<usize> {
    let mut cpus = host.to_vec();
    if cpus.is_empty() {
        cpus.push(0);
    }
    rng.shuffle(&mut cpus);
    let n = if cpus.len() == 1 || rng.bool() {
        1
    } else {
        rng.usize(2..=cpus.len())
    };
    cpus.truncate(n);
    cpus.sort_unstable();
    cpus
}

/// rr's starvation, in the sandbox: pauses from 1 ms to 200 ms (log-uniform), two thirds
/// of them freezing one thread and one third the whole sandbox, with random gaps; each
/// shortened to keep every pause's end within the 20% budget.
fn draw_pauses(rng: &mut fastrand::Rng) -> Vec<Pause> {
    let mut pauses = Vec::new();
    let mut at = rng.u64(0..=5);
    let mut delayed = 0;
    while at < SCHEDULE_MS && pauses.len() < MAX_PAUSES {
        let wanted = (200f64.powf(rng.f64())).round() as u64;
        let mut for_ms = wanted.max(1);
        while for_ms > 0 && !affordable(delayed, at, for_ms) {
            for_ms /= 2;
        }
        if for_ms > 0 {
            let what = if rng.u32(..3) == 0 {
                Paused::Sandbox
            } else {
                Paused::Thread { pick: rng.u32(..) }
            };
            pauses.push(Pause {
                at_ms: at,
                for_ms,
                what,
            });
            delayed += for_ms;
        }
        at += for_ms + 1 + (rng.f64() * rng.f64() * 60.0) as u64;
    }
    pauses
}

fn summarize_pauses(pauses: &[Pause]) -> PauseSummary {
    let sandbox = pauses.iter().filter(|p| p.what == Paused::Sandbox).count() as u32;
    PauseSummary {
        sandbox,
        threads: pauses.len() as u32 - sandbox,
        total_ms: pauses.iter().map(|p| p.for_ms).sum(),
        first_at_ms: pauses.first().map_or(0, |p| p.at_ms),
    }
}

/// "1 CPU (cpu 1), uptime 12 s, 40 pauses (93 ms)…": an attempt's perturbation in a line.
pub fn describe(p: &Perturbation) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(cpus) = &p.cpus {
        let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
        parts.push(format!(
            "{} (cpu {}){}",
            cpu_count(cpus.len()),
            list.join(","),
            if p.batch { ", SCHED_BATCH" } else { "" }
        ));
    }
    if let Some(uptime) = p.uptime_s {
        parts.push(format!("uptime {}", uptime_text(uptime)));
    }
    if let Some(s) = &p.pauses {
        parts.push(format!(
            "{} sandbox pauses and {} thread freezes ({} ms planned, from {} ms)",
            s.sandbox, s.threads, s.total_ms, s.first_at_ms
        ));
    }
    if let Some(size) = p.tmpfs_size {
        parts.push(format!("tmpfs {} MiB", size >> 20));
    }
    if let Some(files) = p.open_files {
        parts.push(format!("RLIMIT_NOFILE {files}"));
    }
    if let Some(memory) = p.memory_max {
        parts.push(format!("memory {} MiB", memory >> 20));
    }
    if let Some(net) = &p.net {
        parts.push(format!(
            "forwarded connections delayed {} ms (jitter {} ms, loss {}%)",
            net.delay_ms, net.jitter_ms, net.loss_percent
        ));
    }
    match (p.neighbours, p.loaded_per_cpu) {
        (Some(n), Some(per_cpu)) => parts.push(format!(
            "{n} full-duty neighbour{} ({per_cpu} per CPU)",
            plural(n)
        )),
        (Some(n), None) => parts.push(format!("{n} busy neighbour{}", plural(n))),
        (None, _) => {}
    }
    for (kind, reason) in &p.skipped {
        parts.push(format!("{kind} skipped: {reason}"));
    }
    if parts.is_empty() {
        "no perturbation".into()
    } else {
        parts.join(", ")
    }
}

pub fn cpu_count(n: usize) -> String {
    format!("{n} CPU{}", plural(n as u32))
}

pub fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub fn uptime_text(seconds: u64) -> String {
    if seconds < 86_400 {
        format!("{seconds} s")
    } else {
        format!("{} days", seconds / 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            cpus: vec![0, 1, 2, 3],
            no_netem: Some("no netem".into()),
        }
    }

    #[test]
    fn kinds_parse_from_a_list_or_all() {
        assert_eq!(parse_kinds("").unwrap(), ALL.to_vec());
        assert_eq!(parse_kinds("all").unwrap(), ALL.to_vec());
        assert_eq!(
            parse_kinds("uptime,cpus,cpus").unwrap(),
            [Kind::Cpus, Kind::Uptime]
        );
        let error = parse_kinds("cpu").unwrap_err();
        assert!(
            error.contains("`cpu`") && error.contains("neighbours"),
            "{error}"
        );
        assert_eq!(format_kinds(&[Kind::Cpus, Kind::Sched]), "cpus,sched");
    }

    #[test]
    fn an_attempt_draws_the_same_every_time_and_attempts_differ() {
        let seed = attempt_seed(42, "a::b", 3);
        assert_eq!(seed, attempt_seed(42, "a::b", 3));
        assert_ne!(seed, attempt_seed(42, "a::b", 4));
        assert_ne!(seed, attempt_seed(42, "a::c", 3));
        assert_eq!(
            draw(&ALL, seed, &host(), false),
            draw(&ALL, seed, &host(), false)
        );
        let draws: Vec<Draw> = (0..50).map(|s| draw(&ALL, s, &host(), false)).collect();
        assert!(draws.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn batch_comes_only_with_one_cpu_in_about_half_of_those_draws() {
        let draws: Vec<Draw> = (0..400)
            .map(|s| draw(&[Kind::Cpus], s, &host(), false))
            .collect();
        let one_cpu: Vec<&Draw> = draws
            .iter()
            .filter(|d| d.chaos.cpus.as_ref().unwrap().len() == 1)
            .collect();
        let batch = one_cpu.iter().filter(|d| d.chaos.batch).count();
        assert!(
            (one_cpu.len() * 3 / 10..=one_cpu.len() * 7 / 10).contains(&batch),
            "{batch} of {}",
            one_cpu.len()
        );
        for d in &draws {
            assert_eq!(d.perturbation.batch, d.chaos.batch);
            assert!(!d.chaos.batch || d.chaos.cpus.as_ref().unwrap().len() == 1);
        }
        let batch = one_cpu.iter().find(|d| d.chaos.batch).unwrap();
        assert!(
            describe(&batch.perturbation).contains("1 CPU (cpu "),
            "{}",
            describe(&batch.perturbation)
        );
        assert!(describe(&batch.perturbation).contains(", SCHED_BATCH"));
    }

    #[test]
    fn a_single_kind_is_always_on_and_others_are_on_about_half_the_time() {
        for seed in 0..100 {
            let d = draw(&[Kind::Cpus], seed, &host(), false);
            let cpus = d.chaos.cpus.expect("always on alone");
            assert!((1..=4).contains(&cpus.len()));
            assert!(cpus.iter().all(|c| host().cpus.contains(c)));
            assert!(d.chaos.uptime_s.is_none() && d.chaos.pauses.is_empty());
        }
        let on = (0..400)
            .filter(|&s| draw(&ALL, s, &host(), false).chaos.uptime_s.is_some())
            .count();
        assert!((140..=260).contains(&on), "{on}");
        let one_cpu = (0..400)
            .filter(|&s| {
                draw(&[Kind::Cpus], s, &host(), false)
                    .chaos
                    .cpus
                    .unwrap()
                    .len()
                    == 1
            })
            .count();
        assert!((150..=250).contains(&one_cpu), "{one_cpu}");
    }

    #[test]
    fn adding_a_kind_keeps_the_other_kinds_values() {
        for seed in 0..50 {
            let two = draw(&[Kind::Cpus, Kind::Uptime], seed, &host(), false);
            let three = draw(
                &[Kind::Cpus, Kind::Uptime, Kind::Sched],
                seed,
                &host(),
                false,
            );
            assert_eq!(two.chaos.cpus, three.chaos.cpus);
            assert_eq!(two.chaos.uptime_s, three.chaos.uptime_s);
        }
    }

    #[test]
    fn uptime_is_under_a_minute_or_hundreds_of_days() {
        for seed in 0..200 {
            let uptime = draw(&[Kind::Uptime], seed, &host(), false)
                .chaos
                .uptime_s
                .unwrap();
            assert!(uptime <= 60 || (100 * 86_400..1000 * 86_400).contains(&uptime));
        }
    }

    #[test]
    fn pauses_stay_within_the_budget_at_every_end_and_validate() {
        for seed in 0..200 {
            let d = draw(&[Kind::Sched], seed, &host(), false);
            assert!(!d.chaos.pauses.is_empty());
            let mut delayed = 0;
            for pause in &d.chaos.pauses {
                assert!(affordable(delayed, pause.at_ms, pause.for_ms), "{pause:?}");
                delayed += pause.for_ms;
            }
            d.chaos.validate().unwrap();
            let summary = d.perturbation.pauses.unwrap();
            assert_eq!(summary.total_ms, delayed);
        }
    }

    #[test]
    fn net_delays_forwarded_connections_or_says_why_not_and_resources_are_low() {
        let net = draw(&[Kind::Net], 7, &host(), false).perturbation;
        let reason = &net.skipped[&Kind::Net];
        assert!(reason.starts_with("no netem; "), "{reason}");
        assert!(reason.contains("only --forward'ed connections"), "{reason}");
        assert!(net.kinds.is_empty());
        for seed in 0..200 {
            let d = draw(&[Kind::Net], seed, &host(), true);
            let delay = d.chaos.net.expect("forwarded connections are delayed");
            assert!((1..=200).contains(&delay.delay_ms), "{delay:?}");
            assert!(delay.jitter_ms <= delay.delay_ms / 2, "{delay:?}");
            assert!([0, 1, 2, 5].contains(&delay.loss_percent), "{delay:?}");
            assert_eq!(d.perturbation.net, Some(delay));
            assert_eq!(d.perturbation.kinds, [Kind::Net]);
            d.chaos.validate().unwrap();
        }
        let p = draw(&[Kind::Resources], 7, &host(), false).perturbation;
        assert!(OPEN_FILES.contains(&p.open_files.unwrap()));
        assert!(TMPFS_SIZES.contains(&p.tmpfs_size.unwrap()));
        assert!(MEMORY_SIZES.contains(&p.memory_max.unwrap()));
    }

    #[test]
    fn neighbours_fit_the_sandbox_cpus_and_a_minority_are_a_loaded_machine() {
        let mut loaded = 0;
        let mut loaded_on_one_cpu = 0;
        for seed in 0..600 {
            let d = draw(&[Kind::Cpus, Kind::Neighbours], seed, &host(), false);
            d.chaos.validate().unwrap();
            let cpus = d.chaos.cpus.as_ref().map_or(4, Vec::len) as u32;
            let (n, p) = (d.chaos.neighbours, &d.perturbation);
            assert_eq!(p.neighbours, (n > 0).then_some(n));
            assert_eq!(d.chaos.loaded, p.loaded_per_cpu.is_some(), "{p:?}");
            match p.loaded_per_cpu {
                Some(per_cpu) => {
                    assert!((1..=LOADED_MAX_PER_CPU).contains(&per_cpu), "{p:?}");
                    assert_eq!(n, per_cpu * cpus, "{p:?}");
                    loaded += 1;
                    loaded_on_one_cpu += usize::from(cpus == 1);
                }
                None => assert!(n <= 2 * cpus, "{p:?}"),
            }
        }
        // Neighbours are on in about half of these draws, and loaded in a third of those.
        assert!((60..=140).contains(&loaded), "{loaded} of 600");
        assert!(loaded_on_one_cpu > 10, "{loaded_on_one_cpu}");
        let alone = (0..300)
            .filter(|&s| draw(&[Kind::Neighbours], s, &host(), false).chaos.loaded)
            .count();
        assert!((70..=130).contains(&alone), "{alone} of 300");
    }

    #[test]
    fn a_big_host_gets_no_more_neighbours_than_the_runtime_takes() {
        let big = Host {
            cpus: (0..128).collect(),
            no_netem: None,
        };
        for seed in 0..100 {
            let d = draw(&[Kind::Neighbours], seed, &big, false);
            assert!(d.chaos.neighbours <= MAX_NEIGHBOURS);
            d.chaos.validate().unwrap();
        }
    }

    #[test]
    fn a_loaded_machine_keeps_the_burst_draws_of_other_seeds() {
        // The burst count is drawn first either way: a seed that draws bursts draws the
        // same number of them as before the loaded level existed, so reports of earlier
        // versions replay the same neighbours.
        let mut bursts = 0;
        for seed in 0..100 {
            let before = fastrand::Rng::with_seed(seed).u32(1..=4);
            let n = draw_neighbours(&mut fastrand::Rng::with_seed(seed), 2);
            if n.loaded_per_cpu.is_none() {
                assert_eq!(n.count, before, "seed {seed}");
                bursts += 1;
            }
        }
        assert!(bursts > 50, "{bursts}");
    }

    #[test]
    fn netem_is_missing_without_the_module() {
        let dir = tempfile::tempdir().unwrap();
        let reason = netem_missing(dir.path(), dir.path()).unwrap();
        assert!(reason.contains("no sch_netem"), "{reason}");
        std::fs::create_dir(dir.path().join("sch_netem")).unwrap();
        let reason = netem_missing(dir.path(), dir.path()).unwrap();
        assert!(reason.contains("does not do yet"), "{reason}");
    }

    #[test]
    fn a_perturbation_reads_as_a_line() {
        let p = Perturbation {
            cpus: Some(vec![1]),
            uptime_s: Some(12),
            open_files: Some(64),
            neighbours: Some(1),
            ..Perturbation::default()
        };
        assert_eq!(
            describe(&p),
            "1 CPU (cpu 1), uptime 12 s, RLIMIT_NOFILE 64, 1 busy neighbour"
        );
        let loaded = Perturbation {
            cpus: Some(vec![0, 1]),
            neighbours: Some(6),
            loaded_per_cpu: Some(3),
            ..Perturbation::default()
        };
        assert_eq!(
            describe(&loaded),
            "2 CPUs (cpu 0,1), 6 full-duty neighbours (3 per CPU)"
        );
        assert_eq!(uptime_text(200 * 86_400 + 5), "200 days");
    }
}
