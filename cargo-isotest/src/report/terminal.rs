//! The live terminal view: a line per finished test, failing output in delimited blocks, a
//! progress bar on terminals, slow tests flagged, and a closing summary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{RunReport, TestOutcome, TestRecord};

/// Tests running longer than this are shown as slow, once.
pub const SLOW_AFTER: Duration = Duration::from_secs(60);

const GREEN: Style = AnsiColor::Green.on_default().bold();
const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

pub struct Terminal {
    bar: ProgressBar,
    running: BTreeMap<usize, (Instant, String)>,
    slow_shown: BTreeSet<usize>,
}

impl Terminal {
    pub fn new(total: usize) -> Terminal {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12.cyan.bold} [{elapsed_precise}] {wide_bar} {pos}/{len}: {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix("Running");
        Terminal {
            bar,
            running: BTreeMap::new(),
            slow_shown: BTreeSet::new(),
        }
    }

    fn line(&self, text: String) {
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

    pub fn started(&mut self, index: usize, label: String) {
        self.bar.set_message(label.clone());
        self.running.insert(index, (Instant::now(), label));
    }

    pub fn finished(&mut self, index: usize, record: &TestRecord) {
        self.running.remove(&index);
        self.slow_shown.remove(&index);
        self.bar.inc(1);
        self.line(status_line(record));
        if record.is_failure() {
            self.line(failure_output(record));
        }
    }

    /// Shows tests that crossed the slow threshold since the last tick.
    pub fn tick(&mut self) {
        let slow: Vec<(usize, Duration, String)> = self
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
        for record in report.tests.iter().filter(|t| t.is_failure() || t.leaky) {
            text.push('\n');
            text.push_str(&status_line(record));
        }
        if let Some(seed) = seed_line {
            text.push('\n');
            text.push_str(seed);
        }
        anstream::eprintln!("{text}");
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:>8.3}s", duration.as_secs_f64())
}

fn status_line(record: &TestRecord) -> String {
    let (word, style) = match record.outcome {
        TestOutcome::Passed if record.leaky => ("LEAKY".to_string(), YELLOW),
        TestOutcome::Passed => ("PASS".to_string(), GREEN),
        TestOutcome::Failed => match &record.exit {
            Some(isotest_runtime::Exit::Signal { name, .. }) => (name.clone(), RED),
            _ => ("FAIL".to_string(), RED),
        },
        TestOutcome::TimedOut => ("TIMEOUT".to_string(), RED),
        TestOutcome::Ignored => ("IGNORED".to_string(), YELLOW),
        TestOutcome::NotRun => ("NOT RUN".to_string(), DIM),
    };
    let mut line = format!(
        "{style}{word:>12}{style:#} [{}] {BOLD}{}{BOLD:#} {}",
        seconds(Duration::from_millis(record.duration_ms)),
        record.binary_id,
        record.name
    );
    if record.leaky {
        let strays: Vec<String> = record
            .strays
            .iter()
            .map(|s| format!("pid {} `{}`", s.pid, s.cmdline))
            .collect();
        line.push_str(&format!(
            " {YELLOW}(left behind: {}){YELLOW:#}",
            strays.join(", ")
        ));
    }
    line
}

/// The failing test's stdout then stderr, clearly delimited, and what isotest knows.
fn failure_output(record: &TestRecord) -> String {
    let id = format!("{} {}", record.binary_id, record.name);
    let mut text = String::new();
    for (stream, captured) in [("STDOUT", &record.stdout), ("STDERR", &record.stderr)] {
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
    if let Some(exit) = &record.exit {
        notes.push(("note", format!("the test process ended with {exit}")));
    }
    notes.extend(record.error.clone().map(|e| ("error", e)));
    notes.extend(record.hint.clone().map(|h| ("hint", h)));
    for (label, note) in notes {
        text.push_str(&format!("{YELLOW}{label:>12}{YELLOW:#} {note}\n"));
    }
    text.trim_end().to_string()
}
