//! With `--stress --chaos`: how often a test failed at each level of each perturbation
//! ("31% with 1 CPU, 0% with 2"), which level stands out, and the smallest perturbation
//! that reproduced the failure, to replay.

use serde::{Deserialize, Serialize};

use super::record::AttemptRecord;
use super::stress::wilson_interval;
use crate::chaos::{self, Kind, Perturbation};

/// The failure rate of the attempts that had one level of one perturbation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelRate {
    pub kind: Kind,
    pub level: String,
    pub runs: u32,
    pub failures: u32,
    pub failure_rate: f64,
    pub ci95: [f64; 2],
    /// Fails more often than the attempts at the other levels of the same perturbation,
    /// beyond both 95% intervals.
    pub stands_out: bool,
}

/// The failing attempt with the fewest perturbations on, and among those one without a
/// loaded machine, the most costly level of any kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Smallest {
    pub attempt: u32,
    pub kinds: Vec<Kind>,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosSummary {
    /// By perturbation, then level.
    pub levels: Vec<LevelRate>,
    /// The level that stands out the most, as a likely cause.
    pub cause: Option<String>,
    pub smallest: Option<Smallest>,
}

/// What a factor calls an attempt's level of it.
type LevelOf = fn(&Perturbation) -> String;

/// The factors a perturbation is judged by: one per kind, three for `resources` and two
/// for `net`.
const FACTORS: [(Kind, LevelOf); 9] = [
    (Kind::Cpus, cpus_level),
    (Kind::Uptime, uptime_level),
    (Kind::Sched, sched_level),
    (Kind::Resources, open_files_level),
    (Kind::Resources, tmpfs_level),
    (Kind::Resources, memory_level),
    (Kind::Neighbours, neighbours_level),
    (Kind::Net, net_delay_level),
    (Kind::Net, net_loss_level),
];

fn cpus_level(p: &Perturbation) -> String {
    match &p.cpus {
        None => "all CPUs".into(),
        Some(cpus) if p.batch => format!("{}, SCHED_BATCH", chaos::cpu_count(cpus.len())),
        Some(cpus) => chaos::cpu_count(cpus.len()),
    }
}

fn uptime_level(p: &Perturbation) -> String {
    match p.uptime_s {
        None => "host uptime".into(),
        Some(s) if s <= 60 => "uptime < 60 s".into(),
        Some(_) => "uptime ≥ 100 days".into(),
    }
}

fn sched_level(p: &Perturbation) -> String {
    if p.pauses.is_some() {
        "pauses".into()
    } else {
        "no pauses".into()
    }
}

fn open_files_level(p: &Perturbation) -> String {
    p.open_files.map_or_else(
        || "default RLIMIT_NOFILE".into(),
        |n| format!("RLIMIT_NOFILE {n}"),
    )
}

fn tmpfs_level(p: &Perturbation) -> String {
    p.tmpfs_size.map_or_else(
        || "default tmpfs".into(),
        |s| format!("tmpfs {} MiB", s >> 20),
    )
}

fn memory_level(p: &Perturbation) -> String {
    p.memory_max.map_or_else(
        || "default memory".into(),
        |m| format!("memory {} MiB", m >> 20),
    )
}

/// Bursts by their number; a loaded machine by its neighbours per CPU, which is what
/// sets how much of its CPU each of the program's threads still gets.
fn neighbours_level(p: &Perturbation) -> String {
    match (p.neighbours, p.loaded_per_cpu) {
        (None, _) => "no neighbours".into(),
        (Some(_), Some(per_cpu)) => format!(
            "{per_cpu} full-duty neighbour{} per CPU",
            chaos::plural(per_cpu)
        ),
        (Some(n), None) => format!("{n} busy neighbour{}", chaos::plural(n)),
    }
}

fn net_delay_level(p: &Perturbation) -> String {
    match p.net.map(|n| n.delay_ms) {
        None => "undelayed forwards".into(),
        Some(0..10) => "forwards delayed 1-9 ms".into(),
        Some(10..50) => "forwards delayed 10-49 ms".into(),
        Some(_) => "forwards delayed 50 ms or more".into(),
    }
}

fn net_loss_level(p: &Perturbation) -> String {
    match p.net.map(|n| n.loss_percent) {
        None | Some(0) => "no loss".into(),
        Some(loss) => format!("{loss}% loss"),
    }
}

/// Rates per level of every perturbation the run asked for; `None` without `--chaos`.
pub fn summarize(attempts: &[AttemptRecord]) -> Option<ChaosSummary> {
    let drawn: Vec<(&Perturbation, bool)> = attempts
        .iter()
        .filter_map(|a| Some((a.perturbation.as_ref()?, a.is_failure())))
        .collect();
    if drawn.is_empty() {
        return None;
    }
    // A kind was asked for if some attempt had it on.
    let asked = |kind: Kind| drawn.iter().any(|(p, _)| p.kinds.contains(&kind));
    let mut levels = Vec::new();
    for (kind, level_of) in FACTORS.into_iter().filter(|(k, _)| asked(*k)) {
        let mut names: Vec<String> = drawn.iter().map(|(p, _)| level_of(p)).collect();
        names.sort_by_key(|name| level_order(name));
        names.dedup();
        for level in names {
            let (at, rest): (Vec<_>, Vec<_>) =
                drawn.iter().partition(|(p, _)| level_of(p) == level);
            let count = |set: &[&(&Perturbation, bool)]| {
                (
                    set.len() as u32,
                    set.iter().filter(|(_, f)| *f).count() as u32,
                )
            };
            let (runs, failures) = count(&at);
            let (rest_runs, rest_failures) = count(&rest);
            let ci95 = wilson_interval(failures, runs);
            levels.push(LevelRate {
                kind,
                level,
                runs,
                failures,
                failure_rate: f64::from(failures) / f64::from(runs),
                ci95,
                stands_out: rest_runs > 0 && ci95[0] > wilson_interval(rest_failures, rest_runs)[1],
            });
        }
    }
    let cause = levels
        .iter()
        .filter(|l| l.stands_out)
        .max_by(|a, b| a.ci95[0].total_cmp(&b.ci95[0]))
        .map(|l| l.level.clone());
    let smallest = attempts
        .iter()
        .filter(|a| a.is_failure())
        .filter_map(|a| Some((a.attempt, a.perturbation.as_ref()?)))
        .min_by_key(|(attempt, p)| (p.kinds.len(), p.loaded_per_cpu.is_some(), *attempt))
        .map(|(attempt, p)| Smallest {
            attempt,
            kinds: p.kinds.clone(),
            description: chaos::describe(p),
        });
    Some(ChaosSummary {
        levels,
        cause,
        smallest,
    })
}

/// Levels in a reading order: by their first number (1 CPU before 2 CPUs), the
/// unperturbed level last.
fn level_order(level: &str) -> (bool, u64, String) {
    let unperturbed = ["all ", "host ", "no ", "default "]
        .iter()
        .any(|p| level.starts_with(p));
    let number = level
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    (unperturbed, number, level.to_string())
}

/// "cpus: 1 CPU 52% (45–59%) of 120, all CPUs 0% (0–3%) of 130": one line per kind.
pub fn lines(summary: &ChaosSummary) -> Vec<String> {
    let percent = |x: f64| format!("{:.0}%", x * 100.0);
    let mut lines: Vec<String> = Vec::new();
    let mut current: Option<Kind> = None;
    for level in &summary.levels {
        let text = format!(
            "{}{} {} ({}–{}) of {}",
            if level.stands_out { "▲ " } else { "" },
            level.level,
            percent(level.failure_rate),
            percent(level.ci95[0]),
            percent(level.ci95[1]),
            level.runs
        );
        match lines.last_mut() {
            Some(line) if current == Some(level.kind) => {
                line.push_str(", ");
                line.push_str(&text);
            }
            _ => lines.push(format!("{}: {text}", level.kind)),
        }
        current = Some(level.kind);
    }
    if let Some(cause) = &summary.cause {
        lines.push(format!("stands out: fails most with {cause}"));
    }
    if let Some(smallest) = &summary.smallest {
        lines.push(format!(
            "smallest perturbation that reproduced it: attempt {} ({})",
            smallest.attempt, smallest.description
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::record::TestOutcome;

    fn attempt(number: u32, failed: bool, p: Perturbation) -> AttemptRecord {
        let mut record = AttemptRecord::for_test(number);
        record.outcome = if failed {
            TestOutcome::Failed
        } else {
            TestOutcome::Passed
        };
        record.perturbation = Some(p);
        record
    }

    fn with(cpus: Option<usize>, uptime_s: Option<u64>) -> Perturbation {
        let mut kinds = Vec::new();
        if cpus.is_some() {
            kinds.push(Kind::Cpus);
        }
        if uptime_s.is_some() {
            kinds.push(Kind::Uptime);
        }
        Perturbation {
            kinds,
            cpus: cpus.map(|n| (0..n).collect()),
            uptime_s,
            ..Perturbation::default()
        }
    }

    /// A test that fails exactly with one CPU, whatever the uptime.
    fn one_cpu_bug() -> Vec<AttemptRecord> {
        let mut attempts = Vec::new();
        for i in 0..200u32 {
            let cpus = match i % 4 {
                0 => Some(1),
                1 => Some(2),
                _ => None,
            };
            let uptime = (i % 3 == 0).then_some(30);
            attempts.push(attempt(i + 1, cpus == Some(1), with(cpus, uptime)));
        }
        attempts
    }

    #[test]
    fn the_level_that_fails_stands_out_and_the_others_do_not() {
        let summary = summarize(&one_cpu_bug()).unwrap();
        let names: Vec<&str> = summary.levels.iter().map(|l| l.level.as_str()).collect();
        assert_eq!(
            names,
            [
                "1 CPU",
                "2 CPUs",
                "all CPUs",
                "uptime < 60 s",
                "host uptime"
            ]
        );
        let one = &summary.levels[0];
        assert_eq!((one.runs, one.failures, one.failure_rate), (50, 50, 1.0));
        assert!(one.stands_out);
        assert!(summary.levels[1..].iter().all(|l| !l.stands_out));
        assert_eq!(summary.levels[1].failures, 0);
        assert_eq!(summary.cause.as_deref(), Some("1 CPU"));
    }

    #[test]
    fn the_smallest_failing_perturbation_has_the_fewest_kinds_on() {
        let summary = summarize(&one_cpu_bug()).unwrap();
        let smallest = summary.smallest.unwrap();
        // Attempt 1 has one CPU and a 30 s uptime; attempt 5 has one CPU alone.
        assert_eq!(smallest.attempt, 5);
        assert_eq!(smallest.kinds, [Kind::Cpus]);
        assert_eq!(smallest.description, "1 CPU (cpu 0)");
    }

    #[test]
    fn a_run_without_chaos_has_no_summary_and_a_flat_rate_nothing_stands_out() {
        let plain: Vec<AttemptRecord> = (1..=10).map(AttemptRecord::for_test).collect();
        assert_eq!(summarize(&plain), None);
        let flat: Vec<AttemptRecord> = (0..100u32)
            .map(|i| attempt(i + 1, i % 3 == 0, with((i % 2 == 0).then_some(1), None)))
            .collect();
        let summary = summarize(&flat).unwrap();
        assert!(summary.levels.iter().all(|l| !l.stands_out));
        assert_eq!(summary.cause, None);
    }

    fn neighbours(n: Option<u32>, loaded_per_cpu: Option<u32>) -> Perturbation {
        Perturbation {
            kinds: n.map(|_| vec![Kind::Neighbours]).unwrap_or_default(),
            neighbours: n,
            loaded_per_cpu,
            ..Perturbation::default()
        }
    }

    /// A timeout too tight: fails with two or more never-resting neighbours per CPU.
    fn timeout_bug() -> Vec<AttemptRecord> {
        (0..240u32)
            .map(|i| {
                let p = match i % 6 {
                    0 => neighbours(Some(2), Some(i % 4 / 2 + 2)),
                    1 => neighbours(Some(2), Some(1)),
                    2 => neighbours(Some(3), None),
                    3 => neighbours(Some(4), None),
                    _ => neighbours(None, None),
                };
                let failed = p.loaded_per_cpu >= Some(2);
                attempt(i + 1, failed, p)
            })
            .collect()
    }

    #[test]
    fn a_loaded_machine_is_a_level_by_neighbours_per_cpu_and_stands_out() {
        let summary = summarize(&timeout_bug()).unwrap();
        let names: Vec<&str> = summary.levels.iter().map(|l| l.level.as_str()).collect();
        assert_eq!(
            names,
            [
                "1 full-duty neighbour per CPU",
                "2 full-duty neighbours per CPU",
                "3 busy neighbours",
                "3 full-duty neighbours per CPU",
                "4 busy neighbours",
                "no neighbours"
            ]
        );
        let standing: Vec<&str> = summary
            .levels
            .iter()
            .filter(|l| l.stands_out)
            .map(|l| l.level.as_str())
            .collect();
        assert_eq!(
            standing,
            [
                "2 full-duty neighbours per CPU",
                "3 full-duty neighbours per CPU"
            ]
        );
        assert!(
            summary
                .cause
                .unwrap()
                .ends_with("full-duty neighbours per CPU")
        );
    }

    #[test]
    fn the_smallest_prefers_bursts_to_a_loaded_machine_with_as_many_kinds() {
        let attempts = vec![
            attempt(1, true, neighbours(Some(3), Some(3))),
            attempt(2, true, neighbours(Some(2), None)),
            attempt(3, true, with(Some(1), Some(5))),
        ];
        let smallest = summarize(&attempts).unwrap().smallest.unwrap();
        assert_eq!(smallest.attempt, 2);
        assert_eq!(smallest.description, "2 busy neighbours");
    }

    #[test]
    fn the_terminal_gets_a_line_per_kind() {
        let summary = summarize(&one_cpu_bug()).unwrap();
        let lines = lines(&summary);
        assert_eq!(
            lines[0],
            "cpus: ▲ 1 CPU 100% (93%–100%) of 50, 2 CPUs 0% (0%–7%) of 50, all CPUs 0% (0%–4%) of 100"
        );
        assert!(
            lines[1].starts_with("uptime: uptime < 60 s "),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "stands out: fails most with 1 CPU");
        assert!(lines[3].starts_with("smallest perturbation that reproduced it: attempt 5"));
    }
}
