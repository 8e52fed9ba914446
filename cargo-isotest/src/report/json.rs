//! The JSON report: written at the end of a run and checkpointed while it goes on, and
//! read back by `replay` and `--rerun-failed`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use isotest_runtime::{Spec, Writes};
use serde::Deserialize;

use super::document::{BinaryInfo, Fingerprint, RunInfo, RunReport, SCHEMA};
use crate::destination::Destination;
use crate::exit_code::{self, Failure};
use crate::runner::record::TestRecord;

/// The schema before the spec was stored once per binary; replay and --rerun-failed
/// still read it.
const SCHEMA_1: &str = "isotest-report/1";

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
    info: RunInfo,
    keep_passing_output: bool,
    started: Instant,
    /// The sandboxes of the tests whose own differs from their binary's, by binary id and
    /// name: their records carry it whole.
    own_specs: BTreeMap<(String, String), Spec>,
}

impl Checkpoint {
    pub fn new(
        destination: Destination,
        info: RunInfo,
        keep_passing_output: bool,
        started: Instant,
        own_specs: BTreeMap<(String, String), Spec>,
    ) -> Checkpoint {
        Checkpoint {
            destination,
            info,
            keep_passing_output,
            started,
            own_specs,
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// The final report of `records`.
    pub fn report(&self, mut records: Vec<TestRecord>, cancelled: bool) -> RunReport {
        for record in records.iter_mut().filter(|r| r.argv.is_some()) {
            let key = (record.binary_id.clone(), record.name.clone());
            record.spec = self.own_specs.get(&key).cloned();
        }
        RunReport::new(
            records,
            self.started.elapsed().as_millis() as u64,
            self.info.clone(),
            cancelled,
            self.keep_passing_output,
        )
    }

    pub fn write(&self, records: Vec<TestRecord>) {
        let mut report = self.report(records, false);
        report.in_progress = true;
        // A failed checkpoint is not worth stopping the run for; the final write reports.
        let _ = report.write_json(&self.destination);
    }
}

/// The parts of a report that replay and --rerun-failed read: schema 2, and schema 1's
/// spec per test.
#[derive(Deserialize)]
pub struct StoredReport {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub attempt_seeds: bool,
    #[serde(default)]
    pub binaries: BTreeMap<String, BinaryInfo>,
    pub tests: Vec<StoredTest>,
}

#[derive(Deserialize)]
pub struct StoredTest {
    pub binary_id: String,
    pub name: String,
    pub outcome: String,
    pub attempt: u32,
    /// Schema 1.
    #[serde(default)]
    pub spec: Option<Spec>,
    /// Schema 2: the argv, in `binaries[binary_id].spec`.
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    #[serde(default)]
    pub attempts: Vec<StoredAttempt>,
    /// The last attempt's writes, with where they were kept.
    #[serde(default)]
    pub writes: Vec<Writes>,
    #[serde(default)]
    pub resources: Option<StoredResources>,
    /// When its last attempt started, in ms from the start of the run (0 in reports of
    /// versions before bisect).
    #[serde(default)]
    pub started_ms: u64,
    #[serde(default)]
    pub duration_ms: u64,
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

impl StoredReport {
    /// The binary's part of a test's sandbox and the test's argv; `None` when it did not run.
    pub fn test_sandbox<'a>(
        &'a self,
        test: &'a StoredTest,
    ) -> Option<(&'a Spec, Option<&'a [String]>)> {
        match (&test.spec, &test.argv) {
            (Some(spec), _) => Some((spec, None)),
            (None, Some(argv)) => Some((&self.binaries.get(&test.binary_id)?.spec, Some(argv))),
            (None, None) => None,
        }
    }

    /// Refuses to run `tests` from a report of another workspace, or whose binaries are
    /// not the ones that ran: either would run something other than what the user
    /// thinks, with the binds the report names. `--trust-report` skips this.
    pub fn check_trusted(&self, tests: &[&StoredTest]) -> anyhow::Result<()> {
        let mut checked = BTreeSet::new();
        for &test in tests {
            if !checked.insert(&test.binary_id) {
                continue;
            }
            self.workspace_of(test, "run what it says")?;
            let binary = self.binaries.get(&test.binary_id);
            let Some(program) = self
                .test_sandbox(test)
                .and_then(|(spec, argv)| argv.unwrap_or(&spec.argv).first())
            else {
                continue;
            };
            let recorded = binary.and_then(|b| b.fingerprint.as_ref());
            match (recorded, Fingerprint::of(Path::new(program))) {
                (Some(recorded), Some(now)) if *recorded == now => {}
                (_, None) => bail!(
                    "the test binary {program} is gone since the report was written: run the tests again, or pass --trust-report to run what it says anyway"
                ),
                _ => bail!(
                    "the test binary {program} changed since the report was written (rebuilt?), so this would not run what ran: run the tests again, or pass --trust-report to run the binary as it is"
                ),
            }
        }
        Ok(())
    }

    /// The workspace `test` ran in, which the current directory must be in: a report of
    /// another one (or one that does not say) is refused, with what `--trust-report`
    /// would `do` anyway.
    pub fn workspace_of(&self, test: &StoredTest, what: &str) -> anyhow::Result<&Path> {
        let here = std::env::current_dir().unwrap_or_default();
        let binary = self.binaries.get(&test.binary_id);
        match binary.and_then(|b| b.workspace_root.as_deref()) {
            Some(root) if here.starts_with(root) => Ok(root),
            Some(root) => bail!(
                "the report is of the workspace {}, not of this directory ({}): run it from there, or pass --trust-report to {what} anyway",
                root.display(),
                here.display()
            ),
            None => bail!(
                "the report does not say which workspace it is of; pass --trust-report to {what} anyway"
            ),
        }
    }
}

/// Whether a stored outcome is a failure.
pub fn failed(outcome: &str) -> bool {
    matches!(outcome, "failed" | "timed-out")
}

/// The report's JSON, or what is wrong with it in words that say what to do.
fn parse(path: &Path, text: &[u8]) -> anyhow::Result<serde_json::Value> {
    if text.iter().all(u8::is_ascii_whitespace) {
        bail!(
            "the report {} is empty: a run writes it when its first test ends, so this run ended (or was killed) before that; run the tests again for a new report",
            path.display()
        );
    }
    serde_json::from_slice(text).map_err(|e| {
        if e.is_eof() {
            anyhow::anyhow!(
                "the report {} is truncated (its JSON stops at line {}): was the run killed while writing it, or the disk full? Run the tests again for a whole report",
                path.display(),
                e.line()
            )
        } else {
            anyhow::anyhow!(
                "{} is not JSON ({e}): give the path of a report `cargo isotest run --report-json` wrote",
                path.display()
            )
        }
    })
}

pub fn read(path: &Path) -> anyhow::Result<StoredReport> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read the report {}", path.display()))?;
    let schema = parse(path, &text)?;
    if schema["schema"] != SCHEMA && schema["schema"] != SCHEMA_1 {
        bail!(
            "{} is not a cargo isotest run report (its schema is {}, expected {SCHEMA})",
            path.display(),
            schema["schema"]
        );
    }
    serde_json::from_slice(&text)
        .with_context(|| format!("{} does not match {SCHEMA}", path.display()))
}

/// A whole report of this schema, for `merge`.
pub fn read_full(path: &Path) -> anyhow::Result<RunReport> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read the report {}", path.display()))?;
    let value = parse(path, &text)?;
    if value["schema"] != SCHEMA {
        bail!(
            "{} is not a cargo isotest run report of schema {SCHEMA} (its schema is {}); \
             merge reads reports of runs by this version",
            path.display(),
            value["schema"]
        );
    }
    serde_json::from_value(value)
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

/// The one test the filter names: an exact `<binary id> <name>` or name first, else the
/// only test containing it.
pub fn find<'a>(tests: &'a [StoredTest], filter: &str) -> anyhow::Result<&'a StoredTest> {
    let full = |t: &StoredTest| format!("{} {}", t.binary_id, t.name);
    let exact: Vec<&StoredTest> = tests
        .iter()
        .filter(|t| full(t) == filter || t.name == filter)
        .collect();
    let matches = if exact.is_empty() {
        tests.iter().filter(|t| full(t).contains(filter)).collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut closest: Vec<(f64, String)> = tests
                .iter()
                .map(|t| {
                    let similar = strsim::jaro_winkler(filter, &t.name)
                        .max(strsim::jaro_winkler(filter, &full(t)));
                    (similar, full(t))
                })
                .collect();
            closest.sort_by(|a, b| b.0.total_cmp(&a.0));
            let names: Vec<String> = closest
                .into_iter()
                .take(5)
                .map(|(_, n)| format!("  {n}"))
                .collect();
            bail!(
                "no test in the report matches `{filter}`; the closest names are:\n{}",
                names.join("\n")
            )
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .take(20)
                .map(|t| format!("  {}", full(t)))
                .collect();
            bail!(
                "`{filter}` matches {} tests; name one of them:\n{}",
                many.len(),
                names.join("\n")
            )
        }
    }
}
