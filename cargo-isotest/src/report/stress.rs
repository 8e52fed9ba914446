//! How a stressed test is shown once the run is over: its failure rate and how sure that
//! is, its durations, how it failed, and the first failure in full.

use super::terminal::{BOLD, GREEN, RED, Terminal, failure_output};
use crate::runner::record::{StressSummary, TestRecord};

/// The statistics of each stressed test, once the run is over.
pub fn show_results(terminal: &Terminal, records: &[TestRecord]) {
    for record in records {
        let Some(stress) = &record.stress else {
            continue;
        };
        terminal.line(stress_block(record, stress));
        if let Some(first) = record.attempts.first() {
            let mut block = failure_output(
                &format!(
                    "{} {} (attempt {})",
                    record.binary_id, record.name, first.attempt
                ),
                first,
            );
            block.push('\n');
            block.push_str(&terminal.replay_line(record, first.attempt));
            terminal.line(block);
        }
    }
}

/// A stressed test: how often it failed, how sure that is, how long it took, and how.
fn stress_block(record: &TestRecord, stress: &StressSummary) -> String {
    let style = if stress.failures > 0 { RED } else { GREEN };
    let percent = |x: f64| format!("{:.1}%", x * 100.0);
    let mut text = format!(
        "{style}{:>12}{style:#} {BOLD}{} {}{BOLD:#}: {}/{} runs failed ({}, 95% CI {}–{}); duration min {} ms, median {} ms, max {} ms",
        "STRESS",
        record.binary_id,
        record.name,
        stress.failures,
        stress.runs,
        percent(stress.failure_rate),
        percent(stress.ci95[0]),
        percent(stress.ci95[1]),
        stress.duration_ms.min,
        stress.duration_ms.median,
        stress.duration_ms.max
    );
    for message in &stress.failure_messages {
        text.push_str(&format!(
            "\n{:>12} {:>5}× {}",
            "", message.count, message.message
        ));
    }
    if !stress.first_failures.is_empty() {
        let numbers: Vec<String> = stress.first_failures.iter().map(u32::to_string).collect();
        text.push_str(&format!(
            "\n{:>12} first failing attempts: {}",
            "",
            numbers.join(", ")
        ));
    }
    text
}
