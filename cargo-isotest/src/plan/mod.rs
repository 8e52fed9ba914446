//! Plan: from every listed test, pick what runs, give each one its sandbox (decided in
//! [`crate::sandbox`]) and its place in the order of first runs.

mod select;

use std::collections::{BTreeMap, BTreeSet};

use isotest_runtime::Spec;

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
) -> Result<Plan, Failure> {
    let mut tests = selected(session, filter);
    if let Some(failed) = rerun {
        tests.retain(|t| failed.contains(&(t.binary.id.clone(), t.name.clone())));
    }
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
    let mut binary_specs: BTreeMap<&str, Vec<(SandboxOptions, Spec)>> = BTreeMap::new();
    let mut specs = Vec::with_capacity(tests.len());
    // Limits an override sets are checked against the host once per distinct set.
    let mut unenforced_checked = Vec::new();
    for (t, settings) in tests.iter().zip(&settings) {
        if !t.run {
            specs.push(None);
            continue;
        }
        let mut options = SandboxOptions::from_settings(settings, session.settings.mechanism)
            .map_err(|e| {
                Failure::new(
                    exit_code::USAGE,
                    format!("{} {}: {e:#}", t.binary.id, t.name),
                )
            })?;
        if options.show_toolchain {
            options.toolchain = session.sandbox.toolchain.clone();
        }
        if options.limits != session.sandbox.limits && !unenforced_checked.contains(&options.limits)
        {
            crate::discover::warn_unenforced(&options.limits)?;
            unenforced_checked.push(options.limits.clone());
        }
        let known = binary_specs.entry(&t.binary.id).or_default();
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
    })
}
