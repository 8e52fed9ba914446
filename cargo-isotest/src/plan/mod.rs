//! Plan: from every listed test, pick what runs, give each one its sandbox (decided in
//! [`crate::sandbox`]) and its place in the order of first runs.

pub mod partition;
mod select;
pub mod stress_shard;

use std::collections::{BTreeMap, BTreeSet};

use isotest_runtime::Spec;

pub use partition::Partition;
pub use select::{Filter, HarnessRun, TestInstance, select};

use crate::config::Effective;
use crate::discover::Session;
use crate::exit_code::{self, Failure};
use crate::sandbox::{self, SandboxOptions};

/// What a run will do, before it starts.
pub struct Plan {
    /// The selected tests, in binary then name order.
    pub tests: Vec<TestInstance>,
    /// Each selected test's sandbox; `None` for a test reported without running.
    pub specs: Vec<Option<Spec>>,
    /// Each selected test's effective settings (its profile's, and its overrides').
    pub settings: Vec<Effective>,
    /// The order of first runs, as indices into `tests`: the selection's, or shuffled.
    pub order: Vec<usize>,
    /// Given to every test as `ISOTEST_SEED`, and the order's seed when shuffled.
    pub seed: u64,
    pub shuffled: bool,
    /// How many tests the binaries listed, selected or not.
    pub listed: usize,
    /// How many binaries the selected tests come from.
    pub binaries: usize,
    /// Each binary's sandbox under the profile's own settings, before it is told its
    /// test: the JSON report stores it once per binary, and a test whose overrides give it
    /// another sandbox stores its own.
    pub binary_specs: BTreeMap<String, Spec>,
    /// With `--stress-shard`: each attempt gets its own seed (see
    /// [`sandbox::attempt_seed`]), so that no two runs of a test on any shard share one.
    pub attempt_seeds: bool,
}

/// What of the selection this machine runs: a `--partition` shard of the tests, and
/// whether attempts get seeds of their own (`--stress-shard`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sharding {
    pub partition: Option<Partition>,
    pub attempt_seeds: bool,
}

/// Keeps the tests of the partition's shard, after the filters.
pub fn partition(tests: &mut Vec<TestInstance>, partition: Option<Partition>) {
    let Some(partition) = partition else { return };
    let candidates: Vec<partition::Candidate> = tests
        .iter()
        .map(|t| partition::Candidate {
            binary_id: &t.binary.id,
            name: &t.name,
            ignored: t.ignored,
        })
        .collect();
    let mut keep = partition.select(&candidates).into_iter();
    tests.retain(|_| keep.next().unwrap_or(false));
}

/// Each test's sandbox options from its effective settings, with what the session knows:
/// the toolchain's paths, and which limits were already checked against the host.
pub struct TestOptions<'s> {
    session: &'s Session,
    toolchain: Option<Vec<std::path::PathBuf>>,
    /// Limits an override sets are checked against the host once per distinct set.
    checked: Vec<isotest_runtime::Limits>,
}

impl<'s> TestOptions<'s> {
    pub fn new(session: &'s Session) -> TestOptions<'s> {
        TestOptions {
            session,
            toolchain: None,
            checked: vec![session.sandbox.limits.clone()],
        }
    }

    /// The sandbox options of `test`, whose effective settings are `settings`.
    pub fn of(
        &mut self,
        test: &TestInstance,
        settings: &Effective,
    ) -> Result<SandboxOptions, Failure> {
        let mut options = SandboxOptions::from_settings(settings).map_err(|e| {
            Failure::new(
                exit_code::USAGE,
                format!("{} {}: {e:#}", test.binary.id, test.name),
            )
        })?;
        if options.show_toolchain {
            // The profile's sandbox has the paths unless it hides the toolchain.
            let session = &self.session.sandbox.toolchain;
            options.toolchain = self
                .toolchain
                .get_or_insert_with(|| {
                    if session.is_empty() {
                        crate::cargo::toolchain::paths()
                    } else {
                        session.clone()
                    }
                })
                .clone();
        }
        if !self.checked.contains(&options.limits) {
            crate::discover::warn_unenforced(&options.limits)?;
            self.checked.push(options.limits.clone());
        }
        Ok(options)
    }
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

/// The tests `filter`, the `-E` expressions and the profile's default filter select.
pub fn selected(session: &Session, filter: &Filter) -> Vec<TestInstance> {
    let settings = &session.settings;
    select(&session.listings, filter, &|binary, name| {
        settings.selects(binary, name)
    })
}

/// Selects with `filter` and, with `--rerun-failed`, only the `(binary id, name)` pairs in
/// `rerun`; gives every runnable test its sandbox from its own settings; shuffles the
/// order with `seed` if asked.
pub fn plan(
    session: &Session,
    filter: &Filter,
    rerun: Option<&BTreeSet<(String, String)>>,
    seed: u64,
    shuffle: bool,
    sharding: Sharding,
) -> Result<Plan, Failure> {
    let mut tests = selected(session, filter);
    if let Some(failed) = rerun {
        tests.retain(|t| failed.contains(&(t.binary.id.clone(), t.name.clone())));
    }
    partition(&mut tests, sharding.partition);
    let listed = session.listings.iter().map(|l| l.tests.len()).sum();
    let binaries = tests
        .iter()
        .map(|t| &t.binary.id)
        .collect::<BTreeSet<_>>()
        .len();
    let settings: Vec<Effective> = tests
        .iter()
        .map(|t| session.settings.test(&t.binary, &t.name))
        .collect();
    // Everything but the command and the test's name is the binary's and its settings':
    // worked out once per binary and distinct sandbox, not once per test.
    let mut distinct: BTreeMap<&str, Vec<(SandboxOptions, Spec)>> = BTreeMap::new();
    // The sandbox of each binary under the profile's own settings, which the report
    // stores once; a test whose overrides change it has its own spec in its record.
    let mut binary_specs: BTreeMap<String, Spec> = BTreeMap::new();
    let mut specs = Vec::with_capacity(tests.len());
    let mut options = TestOptions::new(session);
    for (t, settings) in tests.iter().zip(&settings) {
        if !t.run {
            specs.push(None);
            continue;
        }
        let options = options.of(t, settings)?;
        binary_specs.entry(t.binary.id.clone()).or_insert_with(|| {
            sandbox::binary_test_spec(&session.build, &t.binary, &session.sandbox, seed)
        });
        let known = distinct.entry(&t.binary.id).or_default();
        let index = match known.iter().position(|(o, _)| *o == options) {
            Some(index) => index,
            None => {
                let spec = sandbox::binary_test_spec(&session.build, &t.binary, &options, seed);
                known.push((options, spec));
                known.len() - 1
            }
        };
        specs.push(Some(sandbox::test_spec(
            &known[index].1,
            &t.binary,
            &t.name,
            t.ignored,
        )));
    }
    let mut order: Vec<usize> = (0..tests.len()).filter(|&i| specs[i].is_some()).collect();
    if shuffle {
        fastrand::Rng::with_seed(seed).shuffle(&mut order);
    }
    Ok(Plan {
        tests,
        specs,
        settings,
        order,
        seed,
        shuffled: shuffle,
        listed,
        binaries,
        binary_specs,
        attempt_seeds: sharding.attempt_seeds,
    })
}
