//! The JSON report: written at the end of a run and checkpointed while it goes on, and
//! read back by `replay` and `--rerun-failed`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use isotest_runtime::Spec;
use serde::Deserialize;

use super::document::{Fingerprint, RunReport, SCHEMA};
use super::file::Destination;
use crate::exit_code::{self, Failure};
use crate::runner::record::TestRecord;

impl RunReport {
    pub fn write_json(&self, destination: &Destination) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        Ok(destination.write(&bytes)?)
    }
}

/// Keeps the JSON report on disk up to date while the run goes on, so that a runner
/// killed outright still leaves what it knew.
pub struct Checkpoint {
    destination: Destination,
    workspace_root: PathBuf,
    seed: u64,
    started: Instant,
}

impl Checkpoint {
    pub fn new(
        destination: Destination,
        workspace_root: PathBuf,
        seed: u64,
        started: Instant,
    ) -> Checkpoint {
        Checkpoint {
            destination,
            workspace_root,
            seed,
            started,
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    pub fn workspace_root(&self) -> &Path {
        &self.workspace_root
    }

    pub fn write(&self, records: Vec<TestRecord>) {
        let mut report = RunReport::new(
            &self.workspace_root,
            records,
            self.started.elapsed().as_millis() as u64,
            self.seed,
            false,
        );
        report.in_progress = true;
        // A failed checkpoint is not worth stopping the run for; the final write reports.
        let _ = report.write_json(&self.destination);
    }
}

/// The parts of a report that replay and --rerun-failed read.
#[derive(Deserialize)]
pub struct StoredReport {
    /// Missing from a report written before it was recorded.
    #[serde(default)]
    pub workspace_root: Option<PathBuf>,
    #[serde(default)]
    pub binaries: Vec<Fingerprint>,
    pub tests: Vec<StoredTest>,
}

#[derive(Deserialize)]
pub struct StoredTest {
    pub binary_id: String,
    pub name: String,
    pub outcome: String,
    pub attempt: u32,
    pub spec: Option<Spec>,
    #[serde(default)]
    pub attempts: Vec<StoredAttempt>,
    #[serde(default)]
    pub resources: Option<StoredResources>,
}

#[derive(Deserialize)]
pub struct StoredResources {
    pub peak_memory_bytes: Option<u64>,
}

#[derive(Deserialize)]
pub struct StoredAttempt {
    pub attempt: u32,
    pub outcome: String,
}

/// Whether a stored outcome is a failure.
pub fn failed(outcome: &str) -> bool {
    matches!(outcome, "failed" | "timed-out")
}

pub fn read(path: &Path) -> anyhow::Result<StoredReport> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read the report {}", path.display()))?;
    if text.iter().all(u8::is_ascii_whitespace) {
        bail!(
            "the report {} is empty: a run writes it when its first test ends, so this run ended (or was killed) before that; run the tests again for a new report",
            path.display()
        );
    }
    let schema: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        if e.is_eof() {
            anyhow::anyhow!(
                "the report {} is truncated (its JSON stops at line {}): was the run killed while writing it, or the disk full? Run the tests again for a whole report",
                path.display(),
                e.line()
            )
        } else {
            anyhow::anyhow!("{} is not JSON ({e}): give the path of a report `cargo isotest run --report-json` wrote", path.display())
        }
    })?;
    if schema["schema"] != SCHEMA {
        bail!(
            "{} is not a cargo isotest run report (its schema is {}, expected {SCHEMA})",
            path.display(),
            schema["schema"]
        );
    }
    serde_json::from_slice(&text)
        .with_context(|| format!("{} does not match {SCHEMA}", path.display()))
}

/// The memory peak of every test an earlier report measured, by `(binary id, name)`. A
/// missing or unreadable report teaches nothing: the first run has none.
pub fn peaks(path: &Path) -> BTreeMap<(String, String), u64> {
    let Ok(report) = read(path) else {
        return BTreeMap::new();
    };
    report
        .tests
        .into_iter()
        .filter_map(|t| {
            let peak = t.resources?.peak_memory_bytes?;
            Some(((t.binary_id, t.name), peak))
        })
        .collect()
}

/// The `(binary id, name)` of every test that failed (or timed out) in an earlier report.
pub fn failed_tests(path: &Path) -> Result<BTreeSet<(String, String)>, Failure> {
    let report = read(path).map_err(|e| Failure::new(exit_code::USAGE, format!("{e:#}")))?;
    Ok(report
        .tests
        .into_iter()
        .filter(|t| failed(&t.outcome))
        .map(|t| (t.binary_id, t.name))
        .collect())
}
