//! What many runs of one test say: its failure rate with a confidence interval, how long
//! it takes, and how it fails.

use std::collections::BTreeMap;

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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::record::TestOutcome;

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
