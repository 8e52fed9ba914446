//! JUnit XML for CI systems: one testsuite per binary.

use std::collections::BTreeMap;
use std::time::Duration;

use quick_junit::{
    FlakyOrRerun, NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use super::document::RunReport;
use crate::destination::Destination;
use crate::runner::record::{AttemptRecord, Panic, TestOutcome, TestRecord};

/// nextest's `junit` settings, and where the report goes.
#[derive(Clone, Debug)]
pub struct JunitOptions {
    pub destination: Destination,
    /// The `name` of `<testsuites>`.
    pub report_name: String,
    pub store_success_output: bool,
    pub store_failure_output: bool,
}

impl JunitOptions {
    /// The report at `destination` with nextest's defaults: failures' output only.
    pub fn new(destination: Destination) -> JunitOptions {
        JunitOptions {
            destination,
            report_name: "isotest-run".into(),
            store_success_output: false,
            store_failure_output: true,
        }
    }
}

pub fn write(report: &RunReport, options: &JunitOptions) -> anyhow::Result<()> {
    let xml = to_xml(report, options)?;
    Ok(options.destination.write(xml.as_bytes())?)
}

pub fn to_xml(report: &RunReport, options: &JunitOptions) -> anyhow::Result<String> {
    let mut junit = Report::new(options.report_name.as_str());
    junit.set_time(Duration::from_millis(report.summary.duration_ms));
    if let Some(started) = timestamp(Some(&report.info.started_at)) {
        junit.set_timestamp(started);
    }
    let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
    for record in &report.tests {
        let suite = suites
            .entry(&record.binary_id)
            .or_insert_with(|| TestSuite::new(record.binary_id.as_str()));
        // A suite starts with its earliest test; RFC 3339 in UTC sorts as text.
        if let Some(started) = timestamp(record.last.started_at.as_deref())
            && suite.timestamp.is_none_or(|t| started < t)
        {
            suite.set_timestamp(started);
        }
        suite.add_test_case(test_case(record, options));
    }
    junit.add_test_suites(suites.into_values());
    Ok(junit.to_string()?)
}

fn test_case(record: &TestRecord, options: &JunitOptions) -> TestCase {
    let last = &record.last;
    let mut status = match last.outcome {
        TestOutcome::Passed => TestCaseStatus::success(),
        TestOutcome::Ignored | TestOutcome::NotRun => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(if last.outcome == TestOutcome::Ignored {
                "ignored"
            } else {
                "not run"
            });
            status
        }
        TestOutcome::Failed | TestOutcome::TimedOut => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let (kind, message) = failure_kind(last);
            status.set_type(kind).set_message(message);
            if let Some(text) = failure_text(last) {
                status.set_description(text);
            }
            // Under a failure, earlier failures are reruns; <flakyFailure> belongs under a
            // pass only (Surefire's convention, which CI systems read).
            status.set_rerun_kind(FlakyOrRerun::Rerun);
            status
        }
    };
    // Earlier failed attempts: <flakyFailure> under a pass, <rerunFailure> under a failure.
    if record.stress.is_none() {
        let earlier = record
            .attempts
            .iter()
            .filter(|a| a.attempt != last.attempt && a.is_failure());
        status.add_reruns(earlier.map(rerun));
    }
    let mut case = TestCase::new(record.name.as_str(), status);
    case.set_classname(record.binary_id.as_str())
        .set_time(Duration::from_millis(last.duration_ms));
    if let Some(started) = timestamp(last.started_at.as_deref()) {
        case.set_timestamp(started);
    }
    case.add_properties(resource_properties(last));
    let store = if record.is_failure() {
        options.store_failure_output
    } else {
        options.store_success_output && last.outcome == TestOutcome::Passed
    };
    if store {
        case.set_system_out(last.output.stdout.lossy())
            .set_system_err(last.output.stderr.lossy());
    }
    if let Some(explanation) = &record.explanation {
        let relaxation = explanation.relaxation.map_or("none", |r| r.id());
        case.add_property(Property::new("isotest.explain.relaxation", relaxation));
        case.add_property(Property::new(
            "isotest.explain",
            explanation.message.as_str(),
        ));
    }
    case
}

fn rerun(attempt: &AttemptRecord) -> TestRerun {
    let (kind, message) = failure_kind(attempt);
    let mut rerun = TestRerun::new(NonSuccessKind::Failure);
    if let Some(text) = failure_text(attempt) {
        rerun.set_description(text);
    }
    if let Some(started) = timestamp(attempt.started_at.as_deref()) {
        rerun.set_timestamp(started);
    }
    rerun
        .set_type(kind)
        .set_message(message)
        .set_time(Duration::from_millis(attempt.duration_ms))
        .set_system_out(attempt.output.stdout.lossy())
        .set_system_err(attempt.output.stderr.lossy());
    rerun
}

/// What the attempt used, as `isotest.*` properties of its test case.
fn resource_properties(attempt: &AttemptRecord) -> Vec<Property> {
    let Some(r) = &attempt.resources else {
        return Vec::new();
    };
    let optional = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
    [
        ("isotest.mechanism", r.mechanism.as_str().to_string()),
        ("isotest.peak_memory_bytes", optional(r.peak_memory_bytes)),
        ("isotest.cpu_user_ms", r.cpu_user_ms.to_string()),
        ("isotest.cpu_system_ms", r.cpu_system_ms.to_string()),
        ("isotest.max_processes", optional(r.max_processes)),
        ("isotest.tmpfs_peak_bytes", r.tmpfs_peak_bytes.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| Property::new(name, value))
    .collect()
}

fn timestamp(text: Option<&str>) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text?).ok()
}

/// The body of a failure, as nextest gives it: the panic's text from its line on
/// (message, notes, backtrace); else isotest's own explanation.
fn failure_text(attempt: &AttemptRecord) -> Option<String> {
    let panic = Panic::find(&attempt.output.stderr.lossy()).map(|p| p.text);
    let notes = [attempt.error.clone(), attempt.hint.clone()];
    let text: Vec<String> = panic
        .into_iter()
        .chain(notes.into_iter().flatten())
        .collect();
    (!text.is_empty()).then(|| text.join("\n\n"))
}

/// A failure's type (what kind of end it was) and a one-line message: the panic's
/// message and location when it panicked, as nextest's.
fn failure_kind(attempt: &AttemptRecord) -> (String, String) {
    if attempt.outcome == TestOutcome::TimedOut {
        return ("timeout".into(), "the test timed out".into());
    }
    if let Some(hit) = &attempt.limit_exceeded {
        return ("limit-exceeded".into(), hit.to_string());
    }
    let panic = Panic::find(&attempt.output.stderr.lossy());
    match (&attempt.exit, &attempt.error, panic) {
        (_, Some(error), _) => ("isotest error".into(), error.clone()),
        (_, None, Some(panic)) => (
            "test failure".into(),
            match panic.location {
                Some(location) => format!("{} (at {location})", panic.message),
                None => panic.message,
            },
        ),
        (Some(isotest_runtime::Exit::Signal { name, .. }), _, _) => (
            name.clone(),
            format!("the test process was killed by {name}"),
        ),
        (Some(exit), _, _) => (
            "test failure".into(),
            format!("the test process ended with {exit}"),
        ),
        (None, _, _) => ("test failure".into(), "the test failed".into()),
    }
}
