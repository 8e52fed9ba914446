//! Plan: from every listed test, pick what runs, give each one its sandbox (decided in
//! [`crate::sandbox`]) and its place in the order of first runs.

mod select;

use std::collections::{BTreeMap, BTreeSet};

use isotest_runtime::Spec;

pub use select::{Filter, TestInstance, select};

use crate::discover::Session;
use crate::exit_code::{self, Failure};
use crate::sandbox;

/// What a run will do, before it starts.
pub struct Plan {
    /// The selected tests, in binary then name order.
    pub tests: Vec<TestInstance>,
    /// Each selected test's sandbox; `None` for a test reported without running.
    pub specs: Vec<Option<Spec>>,
    /// The order of first runs, as indices into `tests`: the selection's, or shuffled.
    pub order: Vec<usize>,
    /// Given to every test as `ISOTEST_SEED`, and the order's seed when shuffled.
    pub seed: u64,
    pub shuffled: bool,
    /// How many tests the binaries listed, selected or not.
    pub listed: usize,
    /// How many binaries the selected tests come from.
    pub binaries: usize,
}

/// The run's seed: the one given to `--shuffle`, else a fresh one.
pub fn seed(shuffle: Option<&str>) -> Result<u64, Failure> {
    match shuffle {
        None | Some("random") => Ok(sandbox::fresh_seed()),
        Some(text) => text.parse().map_err(|_| {
            Failure::new(
                exit_code::USAGE,
                format!(
                    "--shuffle={text}: a seed is a whole number from 0 to {}",
                    u64::MAX
                ),
            )
        }),
    }
}

/// Selects with `filter` and, with `--rerun-failed`, only the `(binary id, name)` pairs in
/// `rerun`; gives every runnable test its sandbox; shuffles the order with `seed` if asked.
pub fn plan(
    session: &Session,
    filter: &Filter,
    rerun: Option<&BTreeSet<(String, String)>>,
    seed: u64,
    shuffle: bool,
) -> Plan {
    let mut tests = select(&session.listings, filter);
    if let Some(failed) = rerun {
        tests.retain(|t| failed.contains(&(t.binary.id.clone(), t.name.clone())));
    }
    let listed = session.listings.iter().map(|l| l.tests.len()).sum();
    let binaries = tests
        .iter()
        .map(|t| &t.binary.id)
        .collect::<BTreeSet<_>>()
        .len();
    // Everything but the command and the test's name is the binary's: worked out once
    // per binary, not once per test.
    let mut binary_specs: BTreeMap<&str, Spec> = BTreeMap::new();
    let specs: Vec<Option<Spec>> = tests
        .iter()
        .map(|t| {
            t.run.then(|| {
                let base = binary_specs.entry(&t.binary.id).or_insert_with(|| {
                    sandbox::binary_test_spec(&session.build, &t.binary, &session.sandbox, seed)
                });
                sandbox::test_spec(base, &t.binary, &t.name, t.ignored)
            })
        })
        .collect();
    let mut order: Vec<usize> = (0..tests.len()).filter(|&i| specs[i].is_some()).collect();
    if shuffle {
        fastrand::Rng::with_seed(seed).shuffle(&mut order);
    }
    Plan {
        tests,
        specs,
        order,
        seed,
        shuffled: shuffle,
        listed,
        binaries,
    }
}
