//! JUnit XML for CI systems: one testsuite per binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{RunReport, TestOutcome, TestRecord};

pub fn write(report: &RunReport, path: &Path) -> anyhow::Result<()> {
    let xml = to_xml(report)?;
    crate::write_atomically(path, xml.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write the JUnit report to {}: {e}", path.display()))
}

pub fn to_xml(report: &RunReport) -> anyhow::Result<String> {
    let mut junit = Report::new("cargo-isotest");
    junit.set_time(Duration::from_millis(report.summary.duration_ms));
    let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
    for record in &report.tests {
        suites
            .entry(&record.binary_id)
            .or_insert_with(|| TestSuite::new(record.binary_id.as_str()))
            .add_test_case(test_case(record));
    }
    junit.add_test_suites(suites.into_values());
    Ok(junit.to_string()?)
}

fn test_case(record: &TestRecord) -> TestCase {
    let status = match record.outcome {
        TestOutcome::Passed => TestCaseStatus::success(),
        TestOutcome::Ignored | TestOutcome::NotRun => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(if record.outcome == TestOutcome::Ignored {
                "ignored"
            } else {
                "not run"
            });
            status
        }
        TestOutcome::Failed | TestOutcome::TimedOut => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let (kind, message) = failure_kind(record);
            status.set_type(kind).set_message(message);
            status
        }
    };
    let mut case = TestCase::new(record.name.as_str(), status);
    case.set_classname(record.binary_id.as_str())
        .set_time(Duration::from_millis(record.duration_ms));
    if record.is_failure() {
        case.set_system_out(record.stdout.lossy())
            .set_system_err(record.stderr.lossy());
    }
    case
}

/// A failure's type (what kind of end it was) and a one-line message.
fn failure_kind(record: &TestRecord) -> (String, String) {
    if record.outcome == TestOutcome::TimedOut {
        return ("timeout".into(), "the test timed out".into());
    }
    match (&record.exit, &record.error) {
        (_, Some(error)) => ("isotest error".into(), error.clone()),
        (Some(isotest_runtime::Exit::Signal { name, .. }), _) => (
            name.clone(),
            format!("the test process was killed by {name}"),
        ),
        (Some(exit), _) => (
            "test failure".into(),
            format!("the test process ended with {exit}"),
        ),
        (None, _) => ("test failure".into(), "the test failed".into()),
    }
}
