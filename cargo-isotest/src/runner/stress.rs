//! What many runs of one test say: its failure rate with a confidence interval, how long
//! it takes, and how it fails.

use std::collections::BTreeMap;

use super::chaos_rates;
use super::record::{AttemptRecord, Durations, MessageCount, StressSummary};

/// How many failing attempts are named in `first_failures` and kept in full.
pub const KEPT_FAILURES: usize = 5;

/// The 95% Wilson score interval for `failures` out of `runs`.
pub fn wilson_interval(failures: u32, runs: u32) -> [f64; 2] {
    if runs == 0 {
        return [0.0, 1.0];
    }
    const Z: f64 = 1.959_963_984_540_054;
    let n = f64::from(runs);
    let p = f64::from(failures) / n;
    let z2 = Z * Z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    [(center - half).max(0.0), (center + half).min(1.0)]
}

/// A message with every run of digits replaced by `#`.
fn shape(message: &str) -> String {
    let mut shape = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !shape.ends_with('#') {
                shape.push('#');
            }
        } else {
            shape.push(c);
        }
    }
    shape
}

pub fn summarize(attempts: &[AttemptRecord]) -> StressSummary {
    let runs = attempts.len() as u32;
    let failed: Vec<&AttemptRecord> = attempts.iter().filter(|a| a.is_failure()).collect();
    let failures = failed.len() as u32;
    let mut durations: Vec<u64> = attempts.iter().map(|a| a.duration_ms).collect();
    durations.sort_unstable();
    // Messages that differ only in their numbers (a random draw, a port, a pid) are one
    // kind of failure: grouped by shape, shown by their first example.
    let mut groups: BTreeMap<String, MessageCount> = BTreeMap::new();
    for attempt in &failed {
        let message = attempt
            .failure_message
            .clone()
            .unwrap_or_else(|| attempt.describe_failure());
        groups
            .entry(shape(&message))
            .or_insert(MessageCount { message, count: 0 })
            .count += 1;
    }
    let mut failure_messages: Vec<MessageCount> = groups.into_values().collect();
    failure_messages.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.message.cmp(&b.message))
    });
    // In the order they ended, like the failing attempts a stress run keeps whole.
    let first_failures: Vec<u32> = failed
        .iter()
        .map(|a| a.attempt)
        .take(KEPT_FAILURES)
        .collect();
    StressSummary {
        runs,
        failures,
        failure_rate: if runs == 0 {
            0.0
        } else {
            f64::from(failures) / f64::from(runs)
        },
        ci95: wilson_interval(failures, runs),
        duration_ms: Durations {
            min: durations.first().copied().unwrap_or(0),
            median: durations.get(durations.len() / 2).copied().unwrap_or(0),
            max: durations.last().copied().unwrap_or(0),
        },
        failure_messages,
        first_failures,
        chaos: chaos_rates::summarize(attempts),
    }
}

/// One summary of a test stressed on several machines (`--stress-shard`), each summary
/// one shard's share: counts add up and the interval is the totals'. The median is the
/// runs-weighted median of the shards' medians, as the shards kept no durations.
pub fn combine(shards: &[&StressSummary]) -> StressSummary {
    let runs: u32 = shards.iter().map(|s| s.runs).sum();
    let failures: u32 = shards.iter().map(|s| s.failures).sum();
    let ran: Vec<&&StressSummary> = shards.iter().filter(|s| s.runs > 0).collect();
    let mut medians: Vec<(u64, u32)> = ran.iter().map(|s| (s.duration_ms.median, s.runs)).collect();
    medians.sort_unstable();
    let mut seen = 0;
    let median = medians
        .iter()
        .find(|(_, n)| {
            seen += n;
            seen * 2 > runs
        })
        .map_or(0, |(m, _)| *m);
    let mut groups: BTreeMap<String, MessageCount> = BTreeMap::new();
    for message in shards.iter().flat_map(|s| &s.failure_messages) {
        groups
            .entry(shape(&message.message))
            .or_insert(MessageCount {
                message: message.message.clone(),
                count: 0,
            })
            .count += message.count;
    }
    let mut failure_messages: Vec<MessageCount> = groups.into_values().collect();
    failure_messages.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.message.cmp(&b.message))
    });
    let mut first_failures: Vec<u32> = shards
        .iter()
        .flat_map(|s| s.first_failures.iter().copied())
        .collect();
    first_failures.sort_unstable();
    first_failures.truncate(KEPT_FAILURES);
    StressSummary {
        runs,
        failures,
        failure_rate: if runs == 0 {
            0.0
        } else {
            f64::from(failures) / f64::from(runs)
        },
        ci95: wilson_interval(failures, runs),
        duration_ms: Durations {
            min: ran.iter().map(|s| s.duration_ms.min).min().unwrap_or(0),
            median,
            max: ran.iter().map(|s| s.duration_ms.max).max().unwrap_or(0),
        },
        failure_messages,
        first_failures,
        // Shards keep their attempts' perturbations but not the attempts themselves:
        // the levels are each shard's own.
        chaos: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::record::TestOutcome;

    #[test]
    fn shards_combine_into_the_totals_and_their_interval() {
        let shard = |runs, failures, median, first: Vec<u32>, message: &str| StressSummary {
            runs,
            failures,
            failure_rate: 0.0,
            ci95: [0.0, 1.0],
            duration_ms: Durations {
                min: median - 1,
                median,
                max: median + 1,
            },
            failure_messages: vec![MessageCount {
                message: message.into(),
                count: failures,
            }],
            first_failures: first,
            chaos: None,
        };
        let a = shard(50, 3, 10, vec![4, 9, 30], "value 7");
        let b = shard(50, 27, 20, vec![51, 52, 53, 54, 55], "value 12");
        let merged = combine(&[&a, &b]);
        assert_eq!((merged.runs, merged.failures), (100, 30));
        assert_eq!(merged.failure_rate, 0.3);
        assert_eq!(merged.ci95, wilson_interval(30, 100));
        assert_eq!(merged.first_failures, [4, 9, 30, 51, 52]);
        assert_eq!(merged.failure_messages.len(), 1, "one shape: value #");
        assert_eq!(merged.failure_messages[0].count, 30);
        assert_eq!((merged.duration_ms.min, merged.duration_ms.max), (9, 21));
        assert_eq!(merged.duration_ms.median, 20);
    }

    #[test]
    fn wilson_interval_matches_published_values() {
        // 30 failures in 100 runs: 0.2189 to 0.3958 (Wilson 1927; any statistics table).
        let [lo, hi] = wilson_interval(30, 100);
        assert!(
            (lo - 0.2189).abs() < 1e-4 && (hi - 0.3958).abs() < 1e-4,
            "{lo} {hi}"
        );
        let [lo, hi] = wilson_interval(0, 20);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.1611).abs() < 1e-4, "{hi}");
        assert_eq!(wilson_interval(5, 5)[1], 1.0);
    }

    #[test]
    fn interval_holds_the_observed_rate_and_narrows_with_runs() {
        for (failures, runs) in [(1, 10), (60, 200), (199, 200)] {
            let [lo, hi] = wilson_interval(failures, runs);
            let rate = f64::from(failures) / f64::from(runs);
            assert!(lo <= rate && rate <= hi);
        }
        let width = |f, n| {
            let [lo, hi] = wilson_interval(f, n);
            hi - lo
        };
        assert!(width(60, 200) < width(6, 20));
        assert!(width(60, 200) < 0.2);
    }

    fn attempt(number: u32, outcome: TestOutcome, stderr: &str, duration_ms: u64) -> AttemptRecord {
        let mut record = AttemptRecord::for_test(number);
        record.outcome = outcome;
        record.duration_ms = duration_ms;
        record.output.stderr = isotest_runtime::Captured::new(4096);
        record.output.stderr.push(stderr.as_bytes());
        record
    }

    #[test]
    fn summary_groups_messages_and_names_first_failures() {
        let panic = |m: &str| format!("\nthread 'x' panicked at src/lib.rs:3:5:\n{m}\nnote: ...\n");
        let attempts = vec![
            attempt(1, TestOutcome::Passed, "", 3),
            attempt(2, TestOutcome::Failed, &panic("draw was 0.1"), 5),
            attempt(6, TestOutcome::Failed, &panic("draw was 0.25"), 5),
            attempt(3, TestOutcome::Failed, &panic("connection reset"), 4),
            attempt(4, TestOutcome::Failed, &panic("connection reset"), 9),
            attempt(5, TestOutcome::TimedOut, "", 1000),
        ];
        let summary = summarize(&attempts);
        assert_eq!((summary.runs, summary.failures), (6, 5));
        assert_eq!(summary.first_failures, [2, 6, 3, 4, 5]);
        assert_eq!(
            summary.failure_messages,
            [
                MessageCount {
                    message: "connection reset".into(),
                    count: 2
                },
                MessageCount {
                    message: "draw was 0.1".into(),
                    count: 2
                },
                MessageCount {
                    message: "timed out".into(),
                    count: 1
                },
            ]
        );
        assert_eq!(
            summary.duration_ms,
            Durations {
                min: 3,
                median: 5,
                max: 1000
            }
        );
    }
}
