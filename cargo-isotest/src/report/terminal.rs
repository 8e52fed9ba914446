//! The live terminal view: a line per finished test, failing output in delimited blocks, a
//! progress bar on terminals, slow tests flagged, and a closing summary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::document::RunReport;
use crate::runner::events::{Reporter, RunEvent};
use crate::runner::record::{AttemptRecord, TestOutcome, TestRecord};

/// Tests running longer than this are shown as slow, once.
pub const SLOW_AFTER: Duration = Duration::from_secs(60);

pub(super) const GREEN: Style = AnsiColor::Green.on_default().bold();
pub(super) const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const DIM: Style = Style::new().dimmed();
pub(super) const BOLD: Style = Style::new().bold();

pub struct Terminal {
    bar: ProgressBar,
    /// Running attempts by (test, attempt number).
    running: BTreeMap<(usize, u32), (Instant, String)>,
    slow_shown: BTreeSet<(usize, u32)>,
    /// The report that `replay` lines point at.
    replay_report: String,
    /// `--show-writes`: list every test's writes, not only failing tests'.
    show_writes: bool,
}

impl Terminal {
    /// `total` is the number of attempts the bar counts, when it is known in advance
    /// (not for `--stress-duration`).
    pub fn new(total: Option<usize>, replay_report: String, show_writes: bool) -> Terminal {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(total.map(|t| t as u64), target);
        let colour = anstream::ColorChoice::global() != anstream::ColorChoice::Never;
        let template = match (total.is_some(), colour) {
            (true, true) => {
                "{prefix:>12.cyan.bold} [{elapsed_precise}] {wide_bar} {pos}/{len}: {msg}"
            }
            (true, false) => "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len}: {msg}",
            (false, true) => "{prefix:>12.cyan.bold} [{elapsed_precise}] {pos} runs: {msg}",
            (false, false) => "{prefix:>12} [{elapsed_precise}] {pos} runs: {msg}",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix("Running");
        Terminal {
            bar,
            running: BTreeMap::new(),
            slow_shown: BTreeSet::new(),
            replay_report,
            show_writes,
        }
    }

    pub(super) fn line(&self, text: String) {
        self.bar.suspend(|| anstream::eprintln!("{text}"));
    }

    pub fn header(&self, tests: usize, binaries: usize, skipped: usize) {
        let skipped = if skipped > 0 {
            format!(" ({skipped} skipped)")
        } else {
            String::new()
        };
        self.line(format!(
            "{GREEN}{:>12}{GREEN:#} {tests} test{} across {binaries} binar{}{skipped}, each in its own sandbox",
            "Starting",
            if tests == 1 { "" } else { "s" },
            if binaries == 1 { "y" } else { "ies" }
        ));
    }

    pub fn started(&mut self, test: usize, attempt: u32, label: String) {
        self.bar.set_message(label.clone());
        self.running
            .insert((test, attempt), (Instant::now(), label));
    }

    pub fn ended(&mut self, test: usize, attempt: u32) {
        self.running.remove(&(test, attempt));
        self.slow_shown.remove(&(test, attempt));
        self.bar.inc(1);
    }

    /// A test's final result, with its output and a replay command if it failed.
    pub fn finished(&mut self, record: &TestRecord) {
        self.line(status_line(record));
        if record.is_failure() {
            let mut block = failure_output(
                &format!("{} {}", record.binary_id, record.name),
                &record.last,
            );
            block.push('\n');
            block.push_str(&self.replay_line(record, record.last.attempt));
            self.line(block);
        } else if self.show_writes && !record.last.writes.is_empty() {
            self.line(writes_lines(&record.last));
        }
    }

    /// What `--explain`'s reruns found for a failed test.
    fn explained(&self, record: &TestRecord) {
        if let Some(explanation) = &record.explanation {
            self.line(format!(
                "{YELLOW}{:>12}{YELLOW:#} {} {}: {}",
                "EXPLAIN", record.binary_id, record.name, explanation.message
            ));
        }
    }

    /// A failed attempt that will be retried.
    pub fn retrying(&mut self, label: &str, attempt: &AttemptRecord, attempts: u32) {
        self.line(format!(
            "{YELLOW}{:>12}{YELLOW:#} [{}] {label} (attempt {}/{attempts} failed: {})",
            "RETRY",
            seconds(Duration::from_millis(attempt.duration_ms)),
            attempt.attempt,
            attempt.failure_message.as_deref().unwrap_or("failed")
        ));
    }

    /// One stress attempt: only failures are worth a line while the run goes on.
    pub fn stress_attempt(&mut self, attempt: &AttemptRecord) {
        if attempt.is_failure() {
            self.bar.suspend(|| {
                anstream::eprintln!(
                    "{RED}{:>12}{RED:#} attempt {}: {}",
                    "FAIL",
                    attempt.attempt,
                    attempt.failure_message.as_deref().unwrap_or("failed")
                )
            });
        }
    }

    pub(super) fn replay_line(&self, record: &TestRecord, attempt: u32) -> String {
        let attempt = if attempt > 1 {
            format!(" --attempt {attempt}")
        } else {
            String::new()
        };
        format!(
            "{DIM}{:>12}{DIM:#} cargo isotest replay {} {}{attempt}",
            "replay",
            shell_quote(&self.replay_report),
            shell_quote(&format!("{} {}", record.binary_id, record.name))
        )
    }

    /// Shows tests that crossed the slow threshold since the last tick.
    pub fn tick(&mut self) {
        let slow: Vec<((usize, u32), Duration, String)> = self
            .running
            .iter()
            .filter(|(index, (start, _))| {
                start.elapsed() >= SLOW_AFTER && !self.slow_shown.contains(index)
            })
            .map(|(index, (start, label))| (*index, start.elapsed(), label.clone()))
            .collect();
        for (index, elapsed, label) in slow {
            self.slow_shown.insert(index);
            self.line(format!(
                "{YELLOW}{:>12}{YELLOW:#} [{}] {label}",
                "SLOW",
                seconds(elapsed)
            ));
        }
    }

    pub fn summary(&self, report: &RunReport, seed_line: Option<&str>) {
        self.bar.finish_and_clear();
        let s = &report.summary;
        let mut parts = vec![format!("{} passed", s.passed)];
        for (count, what) in [
            (s.failed, "failed"),
            (s.timed_out, "timed out"),
            (s.leaky, "leaky"),
            (s.ignored, "ignored"),
            (s.not_run, "not run"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {what}"));
            }
        }
        let ran = s.passed + s.failed + s.timed_out;
        let style = if s.failed + s.timed_out > 0 || report.cancelled {
            RED
        } else {
            GREEN
        };
        let mut text = format!(
            "{DIM}------------{DIM:#}\n{style}{:>12}{style:#} [{}] {ran} test{} run: {}",
            if report.cancelled {
                "Cancelled"
            } else {
                "Summary"
            },
            seconds(Duration::from_millis(s.duration_ms)),
            if ran == 1 { "" } else { "s" },
            parts.join(", ")
        );
        for record in report
            .tests
            .iter()
            .filter(|t| t.is_failure() || t.last.leaky || t.flaky)
        {
            text.push('\n');
            text.push_str(&status_line(record));
        }
        for record in heaviest(&report.tests, HEAVIEST_SHOWN) {
            text.push('\n');
            text.push_str(&heavy_line(record));
        }
        if let Some(seed) = seed_line {
            text.push('\n');
            text.push_str(seed);
        }
        anstream::eprintln!("{text}");
    }
}

impl Reporter for Terminal {
    fn report(&mut self, event: RunEvent<'_>) {
        match event {
            RunEvent::AttemptStarted {
                test,
                attempt,
                label,
            } => self.started(test, attempt, label.to_string()),
            RunEvent::AttemptEnded { test, attempt } => self.ended(test, attempt),
            RunEvent::Retrying { label, attempt, of } => self.retrying(label, attempt, of),
            RunEvent::StressAttempt { attempt, .. } => self.stress_attempt(attempt),
            RunEvent::TestFinished(record) => self.finished(record),
            RunEvent::Note(text) => self.line(format!("{YELLOW}{:>12}{YELLOW:#} {text}", "note")),
            RunEvent::Explained(record) => self.explained(record),
            RunEvent::Tick => self.tick(),
            RunEvent::Checkpoint(_) => {}
        }
    }
}

/// How many of a test's stray processes its summary line names.
const STRAYS_SHOWN: usize = 5;

/// How many of the heaviest tests the summary names.
const HEAVIEST_SHOWN: usize = 3;

/// The tests that used the most memory at their peak, most first; CPU time breaks ties.
fn heaviest(tests: &[TestRecord], count: usize) -> Vec<&TestRecord> {
    let weight = |t: &TestRecord| {
        let r = t.last.resources.as_ref()?;
        Some((r.peak_memory_bytes?, r.cpu_user_ms + r.cpu_system_ms))
    };
    let mut weighed: Vec<_> = tests.iter().filter_map(|t| Some((weight(t)?, t))).collect();
    weighed.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
    weighed.into_iter().take(count).map(|(_, t)| t).collect()
}

fn heavy_line(record: &TestRecord) -> String {
    let r = record.last.resources.as_ref().expect("only weighed tests");
    let cpu = Duration::from_millis(r.cpu_user_ms + r.cpu_system_ms);
    let mut what = format!(
        "{} peak, {:.2}s CPU",
        isotest_runtime::format_bytes(r.peak_memory_bytes.unwrap_or(0)),
        cpu.as_secs_f64()
    );
    if let Some(processes) = r.max_processes.filter(|&n| n > 2) {
        what.push_str(&format!(", {processes} processes"));
    }
    format!(
        "{DIM}{:>12}{DIM:#} {BOLD}{}{BOLD:#} {} ({what})",
        "HEAVIEST", record.binary_id, record.name
    )
}

fn seconds(duration: Duration) -> String {
    format!("{:>8.3}s", duration.as_secs_f64())
}

fn status_line(record: &TestRecord) -> String {
    let last = &record.last;
    let (word, style) = match last.outcome {
        TestOutcome::Passed if record.flaky => ("FLAKY".to_string(), YELLOW),
        TestOutcome::Passed if last.leaky => ("LEAKY".to_string(), YELLOW),
        TestOutcome::Passed => ("PASS".to_string(), GREEN),
        TestOutcome::Failed if last.limit_exceeded.is_some() => ("LIMIT".to_string(), RED),
        TestOutcome::Failed => match &last.exit {
            Some(isotest_runtime::Exit::Signal { name, .. }) => (name.clone(), RED),
            _ => ("FAIL".to_string(), RED),
        },
        TestOutcome::TimedOut => ("TIMEOUT".to_string(), RED),
        TestOutcome::Ignored => ("IGNORED".to_string(), YELLOW),
        TestOutcome::NotRun => ("NOT RUN".to_string(), DIM),
    };
    let mut line = format!(
        "{style}{word:>12}{style:#} [{}] {BOLD}{}{BOLD:#} {}",
        seconds(Duration::from_millis(last.duration_ms)),
        record.binary_id,
        record.name
    );
    if record.attempts.len() > 1 && record.stress.is_none() {
        line.push_str(&format!(" (after {} attempts)", record.attempts.len()));
    }
    if last.leaky {
        let mut strays: Vec<String> = last
            .strays
            .iter()
            .take(STRAYS_SHOWN)
            .map(|s| format!("pid {} `{}`", s.pid, s.cmdline))
            .collect();
        if last.strays.len() > STRAYS_SHOWN {
            // A fork storm leaves hundreds; the JSON report has them all.
            strays.push(format!("and {} more", last.strays.len() - STRAYS_SHOWN));
        }
        line.push_str(&format!(
            " {YELLOW}(left behind: {}){YELLOW:#}",
            strays.join(", ")
        ));
    }
    line
}

/// The failing attempt's stdout then stderr, clearly delimited, and what isotest knows.
pub(super) fn failure_output(id: &str, attempt: &AttemptRecord) -> String {
    let mut text = String::new();
    for (stream, captured) in [
        ("STDOUT", &attempt.output.stdout),
        ("STDERR", &attempt.output.stderr),
    ] {
        if captured.total() == 0 {
            continue;
        }
        text.push_str(&format!("{RED}--- {stream}: {id} ---{RED:#}\n"));
        let body = captured.lossy();
        text.push_str(&body);
        if !body.ends_with('\n') {
            text.push('\n');
        }
    }
    let mut notes: Vec<(&str, String)> = Vec::new();
    if let Some(exit) = &attempt.exit {
        notes.push(("note", format!("the test process ended with {exit}")));
    }
    notes.extend(attempt.error.clone().map(|e| ("error", e)));
    notes.extend(attempt.hint.clone().map(|h| ("hint", h)));
    for (label, note) in notes {
        text.push_str(&format!("{YELLOW}{label:>12}{YELLOW:#} {note}\n"));
    }
    if !attempt.writes.is_empty() {
        text.push_str(&writes_lines(attempt));
    }
    text.trim_end().to_string()
}

/// What an attempt wrote, layer by layer, a line per change.
fn writes_lines(attempt: &AttemptRecord) -> String {
    let mut text = String::new();
    for layer in &attempt.writes {
        let fate = match layer.layer {
            isotest_runtime::Layer::Overlay => "discarded",
            isotest_runtime::Layer::Bind => "on the host",
        };
        text.push_str(&format!(
            "{YELLOW}{:>12}{YELLOW:#} in {} ({fate}):\n",
            "writes",
            layer.path.display()
        ));
        for change in &layer.changes {
            text.push_str(&format!("{:>12} {change}\n", ""));
        }
        if layer.truncated {
            text.push_str(&format!("{:>12} (and more, not listed)\n", ""));
        }
        if let Some(kept) = &layer.kept {
            text.push_str(&format!("{:>12} kept in {}\n", "", kept.display()));
        }
    }
    text
}

/// Quotes for a POSIX shell, so that the printed command can be pasted as it is.
pub fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_past_the_threshold_are_flagged_slow_once() {
        let mut terminal = Terminal::new(Some(2), "report.json".into(), false);
        terminal.started(0, 1, "pkg slow_one".into());
        terminal.started(1, 1, "pkg fast_one".into());
        let long_ago = Instant::now()
            .checked_sub(SLOW_AFTER + Duration::from_secs(1))
            .expect("a past instant");
        terminal.running.get_mut(&(0, 1)).expect("running").0 = long_ago;
        terminal.tick();
        assert!(terminal.slow_shown.contains(&(0, 1)));
        assert!(!terminal.slow_shown.contains(&(1, 1)));
        terminal.ended(0, 1);
        assert!(terminal.slow_shown.is_empty());
    }

    #[test]
    fn the_heaviest_tests_are_the_ones_with_the_highest_peaks() {
        use crate::discover::TestKind;
        use crate::runner::record::TestOutcome;
        let record = |name: &str, peak: Option<u64>| {
            let mut record = TestRecord::not_run("pkg", name, TestKind::Test, TestOutcome::Passed);
            record.last.resources = peak.map(|peak| isotest_runtime::Resources {
                peak_memory_bytes: Some(peak),
                ..Default::default()
            });
            record
        };
        let tests = [
            record("small", Some(1 << 20)),
            record("unmeasured", None),
            record("big", Some(300 << 20)),
            record("medium", Some(20 << 20)),
        ];
        let names: Vec<&str> = heaviest(&tests, 2)
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["big", "medium"]);
        assert!(heavy_line(&tests[2]).contains("300 MiB peak"));
    }

    #[test]
    fn replay_commands_are_quoted_for_a_shell() {
        assert_eq!(
            shell_quote("target/isotest/last-run.json"),
            "target/isotest/last-run.json"
        );
        assert_eq!(shell_quote("pkg a::b"), "'pkg a::b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
