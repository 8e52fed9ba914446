//! `--partition hash:K/N | count:K/N | slice:K/N`: which of the selected tests shard K of N
//! runs, with cargo-nextest's exact meanings, so that a test lands in the same shard under
//! both runners:
//!
//! - `hash`: `xxh64(test name, seed 0) % N == K - 1`. Stateless, so a test keeps its shard
//!   however the other tests change. nextest hashes the name alone, not the binary id: the
//!   same name in two binaries lands in the same shard (parity beats the finer key).
//! - `count`: round robin within each binary, over its tests sorted by name.
//! - `slice`: one round robin across all binaries, in nextest's binary order, so shards are
//!   even however the tests are spread over binaries.
//!
//! Partitioning applies to the tests the filters selected; `#[ignore]`d ones (selected with
//! `--ignored` or `--include-ignored`) count in a round robin of their own, as in nextest.

use std::fmt;
use std::str::FromStr;

use nextest_metadata::RustBinaryId;
use xxhash_rust::xxh64::xxh64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    Hash { shard: u64, total: u64 },
    Count { shard: u64, total: u64 },
    Slice { shard: u64, total: u64 },
}

/// A bad `--partition` or `--stress-shard` value.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {input}: {problem}")]
pub struct ShardParseError {
    pub flag: &'static str,
    pub input: String,
    pub problem: String,
}

impl ShardParseError {
    pub fn new(flag: &'static str, input: &str, problem: String) -> Self {
        ShardParseError {
            flag,
            input: input.to_string(),
            problem,
        }
    }
}

impl FromStr for Partition {
    type Err = ShardParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |problem| ShardParseError::new("--partition", input, problem);
        let (kind, shards) = input.split_once(':').ok_or_else(|| {
            error("expected hash:K/N, count:K/N or slice:K/N (shard K of N, from 1)".into())
        })?;
        let make = match kind {
            "hash" => |shard, total| Partition::Hash { shard, total },
            "count" => |shard, total| Partition::Count { shard, total },
            "slice" => |shard, total| Partition::Slice { shard, total },
            other => {
                return Err(error(format!(
                    "unknown kind `{other}`; the kinds are hash, count and slice"
                )));
            }
        };
        let (shard, total) =
            parse_shard(shards).map_err(|problem| error(format!("{problem} (in {kind}:K/N)")))?;
        Ok(make(shard, total))
    }
}

/// `K/N` with `1 <= K <= N`; the error says what is wrong, for the caller to place.
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (shard, total) = text
        .split_once('/')
        .ok_or_else(|| format!("expected K/N, shard K of N, got `{text}`"))?;
    let number = |part: &str, what: &str| {
        part.parse::<u64>()
            .map_err(|_| format!("{what} `{part}` is not a whole number"))
    };
    let shard = number(shard, "the shard K")?;
    let total = number(total, "the shard count N")?;
    if total == 0 {
        return Err("the shard count N must be at least 1".into());
    }
    if !(1..=total).contains(&shard) {
        return Err(format!(
            "the shard K must be from 1 to {total}, got {shard} (shards count from 1)"
        ));
    }
    Ok((shard, total))
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, shard, total) = match self {
            Partition::Hash { shard, total } => ("hash", shard, total),
            Partition::Count { shard, total } => ("count", shard, total),
            Partition::Slice { shard, total } => ("slice", shard, total),
        };
        write!(f, "{kind}:{shard}/{total}")
    }
}

/// A test the filters selected, as partitioning sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// nextest's binary id (`pkg`, `pkg::test`, `pkg::bin/name`, ...).
    pub binary_id: &'a str,
    pub name: &'a str,
    /// `#[ignore]`d: such tests are dealt in a round robin of their own.
    pub ignored: bool,
}

impl Partition {
    /// Whether each candidate (in the given order) belongs to this shard.
    pub fn select(&self, candidates: &[Candidate<'_>]) -> Vec<bool> {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        // nextest's order: binaries by their id's components (package, then kind and
        // name), tests by name; the round robin's position depends on it.
        let ids: Vec<RustBinaryId> = candidates
            .iter()
            .map(|c| RustBinaryId::new(c.binary_id))
            .collect();
        order.sort_by(|&a, &b| {
            ids[a]
                .cmp(&ids[b])
                .then_with(|| candidates[a].name.cmp(candidates[b].name))
        });
        let mut chosen = vec![false; candidates.len()];
        match *self {
            Partition::Hash { shard, total } => {
                for (i, candidate) in candidates.iter().enumerate() {
                    // Fixed to xxh64 with seed 0 for all of cargo-nextest 0.9.
                    chosen[i] = xxh64(candidate.name.as_bytes(), 0) % total == shard - 1;
                }
            }
            Partition::Count { shard, total } => {
                let mut start = 0;
                while start < order.len() {
                    let binary = &ids[order[start]];
                    let end = start
                        + order[start..]
                            .iter()
                            .take_while(|&&i| &ids[i] == binary)
                            .count();
                    deal(&order[start..end], candidates, shard, total, &mut chosen);
                    start = end;
                }
            }
            Partition::Slice { shard, total } => {
                deal(&order, candidates, shard, total, &mut chosen);
            }
        }
        chosen
    }
}

/// One round robin over `indices` for the tests that are not ignored, another for those
/// that are.
fn deal(
    indices: &[usize],
    candidates: &[Candidate<'_>],
    shard: u64,
    total: u64,
    chosen: &mut [bool],
) {
    for ignored in [false, true] {
        let dealt = indices
            .iter()
            .filter(|&&i| candidates[i].ignored == ignored);
        for (position, &i) in (0u64..).zip(dealt) {
            chosen[i] = position % total == shard - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Partition, String> {
        text.parse::<Partition>().map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_three_kinds_and_prints_them_back() {
        for (text, partition) in [
            ("hash:1/2", Partition::Hash { shard: 1, total: 2 }),
            ("count:3/3", Partition::Count { shard: 3, total: 3 }),
            ("slice:1/1", Partition::Slice { shard: 1, total: 1 }),
            (
                "hash:99/200",
                Partition::Hash {
                    shard: 99,
                    total: 200,
                },
            ),
        ] {
            assert_eq!(parse(text), Ok(partition));
            assert_eq!(partition.to_string(), text);
        }
    }

    #[test]
    fn bad_partitions_say_what_is_wrong() {
        for (text, needle) in [
            ("foo", "expected hash:K/N, count:K/N or slice:K/N"),
            ("hash", "expected hash:K/N"),
            ("ring:1/2", "unknown kind `ring`"),
            ("hash:", "expected K/N"),
            ("hash:1", "expected K/N"),
            ("hash:1/", "the shard count N `` is not a whole number"),
            ("hash:0/2", "must be from 1 to 2, got 0"),
            ("count:3/2", "must be from 1 to 2, got 3"),
            ("slice:1/0", "at least 1"),
            ("hash:m/2", "the shard K `m` is not a whole number"),
            ("hash:1/2/3", "`2/3` is not a whole number"),
            ("hash:-1/2", "`-1` is not a whole number"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
            assert!(
                error.starts_with(&format!("--partition {text}: ")),
                "{error}"
            );
        }
    }

    fn candidates<'a>(tests: &[(&'a str, &'a str, bool)]) -> Vec<Candidate<'a>> {
        tests
            .iter()
            .map(|&(binary_id, name, ignored)| Candidate {
                binary_id,
                name,
                ignored,
            })
            .collect()
    }

    fn chosen<'a>(partition: &str, tests: &[Candidate<'a>]) -> Vec<(&'a str, &'a str)> {
        let partition: Partition = partition.parse().unwrap();
        partition
            .select(tests)
            .into_iter()
            .zip(tests)
            .filter(|(chosen, _)| *chosen)
            .map(|(_, c)| (c.binary_id, c.name))
            .collect()
    }

    #[test]
    fn count_deals_within_each_binary_in_name_order() {
        // nextest's own example: binary 1 sorted is alpha, beta, delta, gamma; binary 2 is
        // one, three, two. Shard 1 of 2 gets alpha, delta and one, two.
        let tests = candidates(&[
            ("pkg::binary2", "two", false),
            ("pkg::binary1", "gamma", false),
            ("pkg::binary1", "alpha", false),
            ("pkg::binary2", "one", false),
            ("pkg::binary1", "beta", false),
            ("pkg::binary1", "delta", false),
            ("pkg::binary2", "three", false),
        ]);
        let mut got = chosen("count:1/2", &tests);
        got.sort();
        assert_eq!(
            got,
            [
                ("pkg::binary1", "alpha"),
                ("pkg::binary1", "delta"),
                ("pkg::binary2", "one"),
                ("pkg::binary2", "two"),
            ]
        );
    }

    #[test]
    fn slice_deals_across_binaries_and_ignored_tests_separately() {
        let tests = candidates(&[
            ("a", "t1", false),
            ("a", "t2", false),
            ("a", "i1", true),
            ("b", "t1", false),
            ("b", "i1", true),
            ("b", "t2", false),
        ]);
        // Not ignored, in order: a/t1 a/t2 b/t1 b/t2 → shard 1 of 2 gets a/t1, b/t1.
        // Ignored, in order: a/i1 b/i1 → shard 1 gets a/i1.
        let mut got = chosen("slice:1/2", &tests);
        got.sort();
        assert_eq!(got, [("a", "i1"), ("a", "t1"), ("b", "t1")]);
        // count restarts in each binary: a/t1, a/i1, b/t1, b/i1.
        let mut got = chosen("count:1/2", &tests);
        got.sort();
        assert_eq!(got, [("a", "i1"), ("a", "t1"), ("b", "i1"), ("b", "t1")]);
    }

    #[test]
    fn binaries_sort_by_their_ids_components_not_as_strings() {
        // As strings `pkg-x` < `pkg::t`; by components the package `pkg` comes first.
        let tests = candidates(&[("pkg-x", "a", false), ("pkg::t", "a", false)]);
        assert_eq!(chosen("slice:1/2", &tests), [("pkg::t", "a")]);
    }

    #[test]
    fn every_test_lands_in_exactly_one_shard() {
        let names: Vec<String> = (0..200).map(|i| format!("module::test_{i}")).collect();
        let tests: Vec<Candidate> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Candidate {
                binary_id: ["a", "b::it", "c::bin/x"][i % 3],
                name,
                ignored: i % 7 == 0,
            })
            .collect();
        for kind in ["hash", "count", "slice"] {
            for total in [1, 2, 3, 7] {
                let mut seen = vec![0; tests.len()];
                let mut sizes = Vec::new();
                for shard in 1..=total {
                    let partition: Partition = format!("{kind}:{shard}/{total}").parse().unwrap();
                    let chosen = partition.select(&tests);
                    sizes.push(chosen.iter().filter(|c| **c).count());
                    for (i, c) in chosen.into_iter().enumerate() {
                        seen[i] += usize::from(c);
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{kind} /{total}");
                if kind == "slice" {
                    // Two round robins (ignored and not) each differ by at most one.
                    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                    assert!(max - min <= 2, "{kind} /{total}: {sizes:?}");
                }
            }
        }
    }

    #[test]
    fn hash_uses_nextests_function_and_ignores_position() {
        // xxh64's published value for the empty input: another hash function (or seed)
        // would move tests between shards and break parity with nextest.
        assert_eq!(xxh64(b"", 0), 0xef46_db37_51d8_e999);
        let alone = candidates(&[("x", "some::test", false)]);
        let crowded = candidates(&[
            ("y", "other", false),
            ("x", "some::test", false),
            ("a", "first", true),
        ]);
        let shard = (xxh64(b"some::test", 0) % 5) + 1;
        let partition = Partition::Hash { shard, total: 5 };
        assert_eq!(partition.select(&alone), [true]);
        assert!(partition.select(&crowded)[1]);
    }

    #[test]
    fn picks_the_tests_nextest_picks_on_the_fixtures() {
        use nextest_metadata::{FilterMatch, MismatchReason, TestListSummary};
        let partitions = [
            "hash:1/3",
            "hash:2/3",
            "hash:3/3",
            "count:1/2",
            "count:2/3",
            "slice:1/3",
            "slice:2/2",
        ];
        let mut compared = 0;
        for fixture in ["outcomes", "flaky", "dylib"] {
            for run_ignored in ["default", "all"] {
                for text in partitions {
                    let Some(mut nextest) = crate::nextest_fixture::nextest(fixture) else {
                        return;
                    };
                    let json = crate::nextest_fixture::output(
                        nextest
                            .args(["list", "--message-format", "json", "--target-dir"])
                            .arg(crate::nextest_fixture::target_dir(fixture))
                            .args(["--partition", text, "--run-ignored", run_ignored]),
                    );
                    let list = TestListSummary::parse_json(&json).expect("nextest's list");
                    // The tests the filters selected: those nextest kept, and those only
                    // the partition dropped.
                    let mut candidates = Vec::new();
                    let mut expected = Vec::new();
                    for (binary_id, suite) in &list.rust_suites {
                        for (name, case) in &suite.test_cases {
                            let kept = match case.filter_match {
                                FilterMatch::Matches => true,
                                FilterMatch::Mismatch {
                                    reason: MismatchReason::Partition,
                                } => false,
                                FilterMatch::Mismatch { .. } => continue,
                            };
                            candidates.push(Candidate {
                                binary_id: binary_id.as_str(),
                                name: name.as_str(),
                                ignored: case.ignored,
                            });
                            expected.push(kept);
                        }
                    }
                    // Handed over in reverse: our order must not depend on the caller's.
                    candidates.reverse();
                    expected.reverse();
                    let partition: Partition = text.parse().unwrap();
                    assert_eq!(
                        partition.select(&candidates),
                        expected,
                        "{fixture} --partition {text} --run-ignored {run_ignored}: {candidates:?}"
                    );
                    compared += candidates.len();
                }
            }
        }
        assert!(compared > 100, "only {compared} tests compared");
    }
}
