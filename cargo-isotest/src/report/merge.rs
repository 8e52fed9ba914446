//! `merge`: the reports of a CI matrix's shards (`--partition`, `--stress-shard`) as the
//! one report a single machine would have written, up to timings. Refuses what cannot be
//! one run: reports of different archives, missing or repeated shards, a test in two
//! partitions.

use std::collections::BTreeMap;

use super::document::{RunInfo, RunReport, SCHEMA, Summary};
use crate::runner::record::TestRecord;
use crate::runner::stress;

/// A report and the name it is known by in messages (its path).
pub struct Shard {
    pub name: String,
    pub report: RunReport,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error(
        "{name} is {schema}, not {SCHEMA}; merge reads reports of this version of cargo isotest"
    )]
    Schema { name: String, schema: String },
    #[error(
        "{first} ran {first_archive} and {other} ran {other_archive}: merge only the shards of one archive"
    )]
    Archives {
        first: String,
        first_archive: String,
        other: String,
        other_archive: String,
    },
    #[error(
        "{first} has {what} {first_value} and {other} has {other_value}: the shards of one matrix share the same kind and count"
    )]
    Mismatch {
        what: &'static str,
        first: String,
        first_value: String,
        other: String,
        other_value: String,
    },
    #[error("{}", .0.join("; "))]
    Shards(Vec<String>),
    #[error("{0}")]
    Duplicates(String),
}

/// How a report's shard is named: `--partition` and `--stress-shard`, either absent.
fn shard_key(info: &RunInfo) -> (Option<String>, Option<String>) {
    (info.partition.clone(), info.stress_shard.clone())
}

/// `hash:3/8` → (`hash`, 3, 8); `3/8` → (``, 3, 8).
fn split(value: &str) -> Option<(String, u64, u64)> {
    let (kind, shards) = value.rsplit_once(':').unwrap_or(("", value));
    let (k, n) = shards.split_once('/')?;
    Some((kind.to_string(), k.parse().ok()?, n.parse().ok()?))
}

/// One dimension of the matrix (partitions or stress shards): every report must be of
/// the same kind and count; says which shards are missing or repeated.
fn check_dimension(
    what: &'static str,
    flag: &str,
    values: &[(String, Option<String>)],
    problems: &mut Vec<String>,
) -> Result<Option<u64>, MergeError> {
    let Some((first_name, Some(first))) = values.first().cloned() else {
        if let Some((name, Some(value))) = values.iter().find(|(_, v)| v.is_some()) {
            return Err(MergeError::Mismatch {
                what,
                first: values[0].0.clone(),
                first_value: "none".into(),
                other: name.clone(),
                other_value: value.clone(),
            });
        }
        return Ok(None);
    };
    let (kind, _, total) = split(&first).unwrap_or_default();
    let mut seen: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (name, value) in values {
        let parsed = value.as_deref().and_then(split);
        match parsed {
            Some((k, shard, n)) if k == kind && n == total => {
                seen.entry(shard).or_default().push(name);
            }
            _ => {
                return Err(MergeError::Mismatch {
                    what,
                    first: first_name,
                    first_value: first,
                    other: name.clone(),
                    other_value: value.clone().unwrap_or_else(|| "none".into()),
                });
            }
        }
    }
    let prefix = if kind.is_empty() {
        String::new()
    } else {
        format!("{kind}:")
    };
    for shard in 1..=total {
        if !seen.contains_key(&shard) {
            problems.push(format!("{flag} {prefix}{shard}/{total} missing"));
        }
    }
    Ok(Some(total))
}

/// Merges the shards into one report. Tests are in a single run's order: binary id,
/// then name.
pub fn merge(shards: Vec<Shard>) -> Result<RunReport, MergeError> {
    for shard in &shards {
        if shard.report.schema != SCHEMA {
            return Err(MergeError::Schema {
                name: shard.name.clone(),
                schema: shard.report.schema.clone(),
            });
        }
    }
    let first = &shards[0];
    for other in &shards[1..] {
        if other.report.info.archive != first.report.info.archive {
            let show = |a: &Option<String>| a.clone().unwrap_or_else(|| "a local build".into());
            return Err(MergeError::Archives {
                first: first.name.clone(),
                first_archive: show(&first.report.info.archive),
                other: other.name.clone(),
                other_archive: show(&other.report.info.archive),
            });
        }
        if other.report.info.stress_runs != first.report.info.stress_runs {
            let show = |n: Option<u32>| n.map_or("no --stress".into(), |n| format!("--stress {n}"));
            return Err(MergeError::Mismatch {
                what: "stress runs",
                first: first.name.clone(),
                first_value: show(first.report.info.stress_runs),
                other: other.name.clone(),
                other_value: show(other.report.info.stress_runs),
            });
        }
    }
    let mut problems = Vec::new();
    let partitions: Vec<(String, Option<String>)> = shards
        .iter()
        .map(|s| (s.name.clone(), s.report.info.partition.clone()))
        .collect();
    let stress_shards: Vec<(String, Option<String>)> = shards
        .iter()
        .map(|s| (s.name.clone(), s.report.info.stress_shard.clone()))
        .collect();
    check_dimension("partition", "--partition", &partitions, &mut problems)?;
    let stressed = check_dimension(
        "stress shard",
        "--stress-shard",
        &stress_shards,
        &mut problems,
    )?;
    let mut by_key: BTreeMap<(Option<String>, Option<String>), Vec<&str>> = BTreeMap::new();
    for shard in &shards {
        by_key
            .entry(shard_key(&shard.report.info))
            .or_default()
            .push(&shard.name);
    }
    for ((partition, stress_shard), names) in &by_key {
        if names.len() > 1 {
            let what: Vec<String> = [
                partition.as_ref().map(|p| format!("--partition {p}")),
                stress_shard.as_ref().map(|s| format!("--stress-shard {s}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            let what = if what.is_empty() {
                "the same unsharded run".to_string()
            } else {
                what.join(" ")
            };
            problems.push(format!(
                "{what} is in {} reports: {}",
                names.len(),
                names.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        return Err(MergeError::Shards(problems));
    }

    // A test stressed on several shards has one record per stress shard; otherwise a test
    // belongs to one partition only.
    let mut tests: BTreeMap<(String, String), Vec<(&str, &TestRecord)>> = BTreeMap::new();
    for shard in &shards {
        for test in &shard.report.tests {
            tests
                .entry((test.binary_id.clone(), test.name.clone()))
                .or_default()
                .push((&shard.name, test));
        }
    }
    let expected = stressed.unwrap_or(1) as usize;
    let duplicates: Vec<String> = tests
        .iter()
        .filter(|(_, records)| records.len() > expected)
        .take(20)
        .map(|((binary, name), records)| {
            let names: Vec<&str> = records.iter().map(|(n, _)| *n).collect();
            format!("{binary} {name} is in {}", names.join(", "))
        })
        .collect();
    if !duplicates.is_empty() {
        return Err(MergeError::Duplicates(format!(
            "tests are in more than one report, so these are not disjoint shards: {}",
            duplicates.join("; ")
        )));
    }
    let records: Vec<TestRecord> = tests
        .into_values()
        .map(|records| merge_test(records.into_iter().map(|(_, r)| r).collect()))
        .collect();

    let mut info = first.report.info.clone();
    info.partition = None;
    info.stress_shard = None;
    info.started_at = shards
        .iter()
        .map(|s| s.report.info.started_at.clone())
        .min()
        .unwrap_or_default();
    for shard in &shards[1..] {
        for (id, binary) in &shard.report.info.binaries {
            info.binaries
                .entry(id.clone())
                .or_insert_with(|| binary.clone());
        }
    }
    // The matrix takes as long as its longest shard.
    let duration_ms = shards
        .iter()
        .map(|s| s.report.summary.duration_ms)
        .max()
        .unwrap_or(0);
    Ok(RunReport {
        schema: SCHEMA.into(),
        summary: Summary::of(&records, duration_ms),
        info,
        cancelled: shards.iter().any(|s| s.report.cancelled),
        in_progress: shards.iter().any(|s| s.report.in_progress),
        tests: records,
    })
}

/// One test's records from the stress shards (or its one record): counts added up, the
/// kept failures in attempt order, the first failure shown.
fn merge_test(records: Vec<&TestRecord>) -> TestRecord {
    let mut merged = records[0].clone();
    if records.len() == 1 {
        return merged;
    }
    let summaries: Vec<_> = records.iter().filter_map(|r| r.stress.as_ref()).collect();
    let summary = stress::combine(&summaries);
    let mut failing: Vec<_> = records
        .iter()
        .flat_map(|r| r.attempts.iter().cloned())
        .collect();
    failing.sort_by_key(|a| a.attempt);
    failing.truncate(stress::KEPT_FAILURES);
    if let Some(first) = failing.first() {
        merged.last = first.clone();
    } else if let Some(last) = records.iter().map(|r| &r.last).max_by_key(|a| a.attempt) {
        merged.last = last.clone();
    }
    merged.argv = records.iter().find_map(|r| r.argv.clone());
    merged.spec = records.iter().find_map(|r| r.spec.clone());
    merged.attempts = failing;
    merged.stress = Some(summary);
    merged
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::discover::TestKind;
    use crate::runner::record::TestOutcome;

    fn report(partition: Option<&str>, stress_shard: Option<&str>, tests: &[&str]) -> RunReport {
        let records = tests
            .iter()
            .map(|name| TestRecord::not_run("pkg", name, TestKind::Test, TestOutcome::Ignored))
            .collect();
        let info = RunInfo {
            archive: Some("sha256:aa".into()),
            partition: partition.map(str::to_string),
            stress_shard: stress_shard.map(str::to_string),
            ..RunInfo::default()
        };
        RunReport::new(records, 1, info, false, false)
    }

    fn shard(name: &str, report: RunReport) -> Shard {
        Shard {
            name: name.into(),
            report,
        }
    }

    #[test]
    fn partitions_merge_in_a_single_runs_order() {
        let merged = merge(vec![
            shard("b", report(Some("hash:2/2"), None, &["z", "a"])),
            shard("a", report(Some("hash:1/2"), None, &["m"])),
        ])
        .unwrap();
        let names: Vec<&str> = merged.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "m", "z"]);
        assert_eq!(merged.summary.total, 3);
        assert_eq!(merged.info.partition, None);
    }

    /// Each shard's binaries keep the workspace and fingerprint replay checks, through the
    /// JSON `merge` reads and writes.
    #[test]
    fn binaries_keep_what_replay_trusts() {
        use super::super::document::{BinaryInfo, Fingerprint};
        let binary = |root: &str| BinaryInfo {
            spec: isotest_runtime::Spec::new(vec!["/t/pkg-1".into()]),
            workspace_root: Some(root.into()),
            fingerprint: Some(Fingerprint {
                path: "/t/pkg-1".into(),
                len: 7,
                modified_ns: 1_700_000_000_123_456_789,
            }),
        };
        let mut first = report(Some("hash:1/2"), None, &["a"]);
        first.info.binaries.insert("pkg".into(), binary("/ws/one"));
        let mut second = report(Some("hash:2/2"), None, &["b"]);
        second
            .info
            .binaries
            .insert("other".into(), binary("/ws/two"));
        let merged = merge(vec![shard("1", first), shard("2", second)]).unwrap();
        let text = serde_json::to_string(&merged).unwrap();
        let back: RunReport = serde_json::from_value(serde_json::from_str(&text).unwrap()).unwrap();
        let roots: Vec<_> = back
            .info
            .binaries
            .values()
            .map(|b| b.workspace_root.clone().unwrap())
            .collect();
        assert_eq!(roots, [PathBuf::from("/ws/two"), PathBuf::from("/ws/one")]);
        assert_eq!(
            back.info.binaries["pkg"].fingerprint,
            binary("/ws/one").fingerprint
        );
    }

    #[test]
    fn missing_and_repeated_shards_are_named() {
        let err = merge(vec![
            shard("one", report(Some("count:1/8"), None, &["a"])),
            shard("two", report(Some("count:2/8"), None, &["b"])),
            shard("again", report(Some("count:2/8"), None, &["c"])),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--partition count:3/8 missing"), "{err}");
        assert!(err.contains("--partition count:8/8 missing"), "{err}");
        assert!(
            err.contains("--partition count:2/8 is in 2 reports: two, again"),
            "{err}"
        );
    }

    #[test]
    fn a_test_in_two_partitions_and_other_archives_are_refused() {
        let err = merge(vec![
            shard("one", report(Some("hash:1/2"), None, &["a"])),
            shard("two", report(Some("hash:2/2"), None, &["a"])),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("pkg a is in one, two"), "{err}");
        let mut other = report(Some("hash:2/2"), None, &["b"]);
        other.info.archive = Some("sha256:bb".into());
        let err = merge(vec![
            shard("one", report(Some("hash:1/2"), None, &["a"])),
            shard("two", other),
        ])
        .unwrap_err();
        assert!(matches!(err, MergeError::Archives { .. }), "{err}");
        let err = merge(vec![
            shard("one", report(Some("hash:1/2"), None, &["a"])),
            shard("two", report(Some("slice:2/2"), None, &["b"])),
        ])
        .unwrap_err();
        assert!(matches!(err, MergeError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn stress_shards_of_a_test_are_one_test() {
        // A test whose override gave it its own sandbox keeps it.
        let mut two = report(None, Some("2/2"), &["a"]);
        two.tests[0].spec = Some(isotest_runtime::Spec::new(vec!["t".into()]));
        let merged = merge(vec![
            shard("one", report(None, Some("1/2"), &["a"])),
            shard("two", two),
        ])
        .unwrap();
        assert_eq!(merged.tests.len(), 1);
        assert!(merged.tests[0].spec.is_some());
        let err = merge(vec![shard("one", report(None, Some("1/3"), &["a"]))])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--stress-shard 2/3 missing") && err.contains("3/3 missing"),
            "{err}"
        );
    }
}
