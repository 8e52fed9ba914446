//! `--stress N --stress-shard K/M`: shard K's share of a test's N runs, so that M machines
//! together run each test exactly N times and `merge` adds their runs up.
//!
//! Runs are numbered 1..=N across all shards and dealt in contiguous blocks, the first
//! `N % M` shards taking one more, so shares differ by at most one. A run's number is its
//! `ISOTEST_ATTEMPT` and picks its seed, so no two runs of the whole stress test, on
//! whatever shard, see the same attempt number or the same seed.

use std::ops::RangeInclusive;
use std::str::FromStr;

use super::partition::{ShardParseError, parse_shard};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StressShard {
    /// From 1.
    pub shard: u32,
    pub total: u32,
}

impl FromStr for StressShard {
    type Err = ShardParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |problem| ShardParseError::new("--stress-shard", input, problem);
        let (shard, total) = parse_shard(input).map_err(error)?;
        let total =
            u32::try_from(total).map_err(|_| error(format!("at most {} shards", u32::MAX)))?;
        Ok(StressShard {
            shard: shard as u32,
            total,
        })
    }
}

/// Shard `shard`'s runs among `runs` (global numbers from 1); empty when there are more
/// shards than runs. Each run's seed is [`crate::sandbox::attempt_seed`] of its number,
/// so with the same base seed on every shard no two runs share a seed.
pub fn share(runs: u32, shard: StressShard) -> RangeInclusive<u32> {
    let index = shard.shard - 1;
    let (each, extra) = (runs / shard.total, runs % shard.total);
    let count = each + u32::from(index < extra);
    // Runs before this shard: `each` per earlier shard plus one for each earlier big one.
    let before = each * index + index.min(extra);
    // With no runs this is (before + 1)..=before: empty, and still says where it would start.
    (before + 1)..=(before + count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(text: &str) -> StressShard {
        text.parse().unwrap()
    }

    #[test]
    fn parses_k_of_n_and_rejects_nonsense() {
        assert_eq!(shard("3/8"), StressShard { shard: 3, total: 8 });
        assert_eq!(shard("1/1"), StressShard { shard: 1, total: 1 });
        for (text, needle) in [
            ("0/3", "must be from 1 to 3, got 0"),
            ("4/3", "must be from 1 to 3, got 4"),
            ("1/0", "at least 1"),
            ("3", "expected K/N"),
            ("a/3", "`a` is not a whole number"),
            ("1/99999999999", "at most 4294967295 shards"),
        ] {
            let error = text.parse::<StressShard>().unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
            assert!(error.starts_with(&format!("--stress-shard {text}: ")));
        }
    }

    #[test]
    fn shares_are_balanced_contiguous_and_sum_to_n() {
        for runs in [0, 1, 2, 7, 10, 100, 1000, 1001] {
            for total in [1, 2, 3, 7, 8, 13] {
                let shares: Vec<RangeInclusive<u32>> = (1..=total)
                    .map(|k| share(runs, StressShard { shard: k, total }))
                    .collect();
                let counts: Vec<u32> = shares.iter().map(|s| s.clone().count() as u32).collect();
                assert_eq!(counts.iter().sum::<u32>(), runs);
                let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                assert!(max - min <= 1, "{runs} over {total}: {counts:?}");
                // Together the shards number the runs 1..=N, each once, in order.
                let all: Vec<u32> = shares.iter().flat_map(|s| s.clone()).collect();
                assert_eq!(all, (1..=runs).collect::<Vec<_>>(), "{runs} over {total}");
            }
        }
    }

    #[test]
    fn the_first_shards_take_the_remainder() {
        let of = |k| share(10, StressShard { shard: k, total: 4 });
        assert_eq!([of(1), of(2), of(3), of(4)], [1..=3, 4..=6, 7..=8, 9..=10]);
        assert!(share(2, StressShard { shard: 3, total: 4 }).is_empty());
    }

    #[test]
    fn seeds_are_disjoint_across_shards_even_when_they_wrap() {
        let base = u64::MAX - 5;
        let mut seen = std::collections::BTreeSet::new();
        let seed = |attempt| crate::sandbox::attempt_seed(base, attempt);
        for k in 1..=3 {
            for attempt in share(20, StressShard { shard: k, total: 3 }) {
                assert!(seen.insert(seed(attempt)), "attempt {attempt}'s seed twice");
            }
        }
        assert_eq!(seen.len(), 20);
        assert_eq!(seed(1), base);
        assert_eq!(seed(7), 0);
    }
}
