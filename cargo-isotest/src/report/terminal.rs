//! The live terminal view: a line per finished test, failing output in delimited blocks, a
//! progress bar on terminals, slow tests flagged, and a closing summary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::document::RunReport;
use crate::config::{FinalStatusLevel, OutputDisplay, StatusLevel};
use crate::runner::events::{Reporter, RunEvent};
use crate::runner::record::{AttemptRecord, TestOutcome, TestRecord};

pub(super) const GREEN: Style = AnsiColor::Green.on_default().bold();
pub(super) const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const DIM: Style = Style::new().dimmed();
pub(super) const BOLD: Style = Style::new().bold();

/// What the view shows: nextest's status levels, and each test's output display and slow
/// period from its settings.
#[derive(Clone, Debug)]
pub struct View {
    pub status_level: StatusLevel,
    pub final_status_level: FinalStatusLevel,
    /// By index of the plan's tests.
    pub tests: Vec<TestView>,
    pub hide_progress_bar: bool,
    /// Tests that will run, for the `(N/M)` counter.
    pub to_run: usize,
    /// `--show-writes`: list every test's writes, not only failing tests'.
    pub show_writes: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct TestView {
    pub success_output: OutputDisplay,
    pub failure_output: OutputDisplay,
    pub slow: Duration,
}

impl TestView {
    const DEFAULT: TestView = TestView {
        success_output: OutputDisplay::Never,
        failure_output: OutputDisplay::Immediate,
        slow: Duration::from_secs(60),
    };
}

impl Default for View {
    fn default() -> Self {
        View {
            status_level: StatusLevel::Pass,
            final_status_level: FinalStatusLevel::Flaky,
            tests: Vec::new(),
            hide_progress_bar: false,
            to_run: 0,
            show_writes: false,
        }
    }
}

impl View {
    fn test(&self, index: usize) -> &TestView {
        self.tests.get(index).unwrap_or(&TestView::DEFAULT)
    }
}

/// One running attempt: when it started, its label, and its line under the bar.
struct Running {
    start: Instant,
    label: String,
    line: ProgressBar,
}

pub struct Terminal {
    view: View,
    multi: MultiProgress,
    bar: ProgressBar,
    /// Running attempts by (test, attempt number).
    running: BTreeMap<(usize, u32), Running>,
    slow_shown: BTreeSet<(usize, u32)>,
    /// Tests that have ended, for the `(N/M)` counter.
    done: usize,
    /// Outputs kept for the end (`final`, `immediate-final`).
    deferred: Vec<String>,
    /// The report that `replay` lines point at.
    replay_report: String,
}

/// One line per running test under the bar: its elapsed time and name.
const RUNNING_TEMPLATE: &str = "{prefix:>12.dim} [{elapsed_precise}] {msg}";

impl Terminal {
    /// `total` is the number of attempts the bar counts, when it is known in advance
    /// (not for `--stress-duration`).
    pub fn new(total: Option<usize>, replay_report: String, view: View) -> Terminal {
        let target = if std::io::stderr().is_terminal() && !view.hide_progress_bar {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let bar = multi.add(ProgressBar::new(total.map_or(0, |t| t as u64)));
        if total.is_none() {
            bar.unset_length();
        }
        let colour = anstream::ColorChoice::global() != anstream::ColorChoice::Never;
        let template = match (total.is_some(), colour) {
            (true, true) => "{prefix:>12.cyan.bold} [{elapsed_precise}] {wide_bar} {pos}/{len}",
            (true, false) => "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len}",
            (false, true) => "{prefix:>12.cyan.bold} [{elapsed_precise}] {pos} runs",
            (false, false) => "{prefix:>12} [{elapsed_precise}] {pos} runs",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix("Running");
        Terminal {
            view,
            multi,
            bar,
            running: BTreeMap::new(),
            slow_shown: BTreeSet::new(),
            done: 0,
            deferred: Vec::new(),
            replay_report,
        }
    }

    pub(super) fn line(&self, text: String) {
        self.multi.suspend(|| anstream::eprintln!("{text}"));
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
        let line = self.multi.add(ProgressBar::new_spinner());
        line.set_style(ProgressStyle::with_template(RUNNING_TEMPLATE).expect("valid template"));
        line.set_prefix(if attempt > 1 {
            format!("TRY {attempt}")
        } else {
            "RUNNING".to_string()
        });
        line.set_message(label.clone());
        self.running.insert(
            (test, attempt),
            Running {
                start: Instant::now(),
                label,
                line,
            },
        );
    }

    pub fn ended(&mut self, test: usize, attempt: u32) {
        if let Some(running) = self.running.remove(&(test, attempt)) {
            running.line.finish_and_clear();
            self.multi.remove(&running.line);
        }
        self.slow_shown.remove(&(test, attempt));
        self.bar.inc(1);
    }

    /// A test's final result, with its output and a replay command as its settings say.
    pub fn finished(&mut self, test: usize, record: &TestRecord) {
        self.done += 1;
        let level = self.view.status_level;
        let shown = if record.is_failure() {
            level >= StatusLevel::Fail
        } else if record.flaky {
            level >= StatusLevel::Retry
        } else if record.last.leaky {
            level >= StatusLevel::Leak
        } else {
            level >= StatusLevel::Pass
        };
        let counter = format!("({}/{})", self.done, self.view.to_run.max(self.done));
        if shown {
            self.line(status_line(record, Some(&counter)));
        }
        self.output(test, record);
        // A failing test's writes are among its notes, shown with its output.
        if !record.is_failure() && self.view.show_writes && !record.last.writes.is_empty() {
            self.line(writes_lines(&record.last));
        }
    }

    /// A finished test's output, now or kept for the end, as its output display says.
    fn output(&mut self, test: usize, record: &TestRecord) {
        let display = *self.view.test(test);
        let (when, failed) = if record.is_failure() {
            (display.failure_output, true)
        } else {
            (display.success_output, false)
        };
        let immediate = matches!(
            when,
            OutputDisplay::Immediate | OutputDisplay::ImmediateFinal
        );
        let at_end = matches!(when, OutputDisplay::Final | OutputDisplay::ImmediateFinal);
        if !immediate && !at_end {
            return;
        }
        let mut block = if failed {
            failure_output(
                &format!("{} {}", record.binary_id, record.name),
                &record.last,
            )
        } else {
            streams(
                &format!("{} {}", record.binary_id, record.name),
                &record.last,
            )
        };
        if failed {
            block.push('\n');
            block.push_str(&self.replay_line(record, record.last.attempt));
        }
        if block.trim().is_empty() {
            return;
        }
        if at_end {
            self.deferred.push(block.clone());
        }
        if immediate {
            self.line(block);
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
        if self.view.status_level < StatusLevel::Retry {
            return;
        }
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

    /// Refreshes the running tests' times, and shows tests that crossed their slow
    /// threshold since the last tick.
    pub fn tick(&mut self) {
        for running in self.running.values() {
            running.line.tick();
        }
        let slow: Vec<((usize, u32), Duration, String)> = self
            .running
            .iter()
            .filter(|(index, running)| {
                running.start.elapsed() >= self.view.test(index.0).slow
                    && !self.slow_shown.contains(index)
            })
            .map(|(index, running)| (*index, running.start.elapsed(), running.label.clone()))
            .collect();
        for (index, elapsed, label) in slow {
            self.slow_shown.insert(index);
            if self.view.status_level < StatusLevel::Slow {
                continue;
            }
            self.line(format!(
                "{YELLOW}{:>12}{YELLOW:#} [{}] {label}",
                "SLOW",
                seconds(elapsed)
            ));
        }
    }

    pub fn summary(&self, report: &RunReport, seed_line: Option<&str>) {
        self.bar.finish_and_clear();
        for block in &self.deferred {
            anstream::eprintln!("{block}");
        }
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
        let level = self.view.final_status_level;
        for record in report.tests.iter().filter(|t| {
            if t.is_failure() {
                level >= FinalStatusLevel::Fail
            } else if t.flaky {
                level >= FinalStatusLevel::Flaky
            } else if t.last.outcome == TestOutcome::Ignored {
                level >= FinalStatusLevel::Skip
            } else if t.last.leaky {
                level >= FinalStatusLevel::Leak
            } else {
                t.last.outcome == TestOutcome::Passed && level >= FinalStatusLevel::Pass
            }
        }) {
            text.push('\n');
            text.push_str(&status_line(record, None));
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
            RunEvent::TestFinished { test, record } => self.finished(test, record),
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

/// A test's result on one line; `counter` is `(N/M)`, for a result as it comes in.
fn status_line(record: &TestRecord, counter: Option<&str>) -> String {
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
    let counter = counter.map(|c| format!("{c} ")).unwrap_or_default();
    let mut line = format!(
        "{style}{word:>12}{style:#} [{}] {counter}{BOLD}{}{BOLD:#} {}",
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
    let mut text = streams(id, attempt);
    if !text.is_empty() {
        text.push('\n');
    }
    notes(attempt, &mut text);
    text.trim_end().to_string()
}

/// An attempt's stdout then stderr, each under a header naming the stream and the test.
fn streams(id: &str, attempt: &AttemptRecord) -> String {
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
    text.trim_end().to_string()
}

/// What isotest knows of a failed attempt, after its output.
fn notes(attempt: &AttemptRecord, text: &mut String) {
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
        let view = View {
            tests: vec![
                TestView {
                    slow: Duration::from_secs(5),
                    ..TestView::DEFAULT
                },
                TestView::DEFAULT,
            ],
            ..View::default()
        };
        let mut terminal = Terminal::new(Some(2), "report.json".into(), view);
        terminal.started(0, 1, "pkg slow_one".into());
        terminal.started(1, 1, "pkg fast_one".into());
        let past = |secs| {
            Instant::now()
                .checked_sub(Duration::from_secs(secs))
                .expect("a past instant")
        };
        terminal.running.get_mut(&(0, 1)).expect("running").start = past(6);
        terminal.running.get_mut(&(1, 1)).expect("running").start = past(6);
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
