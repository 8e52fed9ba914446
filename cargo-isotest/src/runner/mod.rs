//! Run: every planned test on the helper pool, each attempt in a fresh sandbox. The
//! [`attempts`] state machine decides what runs next (retries, stress rounds, fail-fast),
//! the [`verdict`]s decide what each result means, and the reporters hear of it through
//! [`events`].

pub mod attempts;
pub mod budget;
pub mod chaos_rates;
pub mod events;
pub mod explain;
mod load;
pub mod policy;
mod protocol;
pub mod record;
mod schedule;
pub mod stress;
#[cfg(test)]
mod test_support;
pub mod verdict;

use isotest_runtime::{KeepWrites, Outcome};

use crate::launch::helper::{Helper, HelperError};
use crate::launch::pool::Pool;
use crate::plan::Plan;
use crate::sandbox::{CAPTURE_LIMIT, attempt_spec};
use attempts::{Attempt, Attempts};
use events::Reporter;
use policy::Policy;
use record::TestRecord;

/// Runs the plan's tests with `cpu_load` busy threads beside them, until every attempt
/// the policy asks for has run or the run stops; returns every selected test's record.
pub fn run(
    pool: &Pool,
    plan: &Plan,
    policy: &Policy,
    cpu_load: usize,
    reporter: &mut dyn Reporter,
) -> Vec<TestRecord> {
    let _load = load::CpuLoad::start(cpu_load);
    let mut attempts = Attempts::new(&plan.tests, &plan.specs, &plan.order, policy, reporter)
        .with_attempt_seed(plan.attempt_seeds.then_some(plan.seed));
    pool.run(
        |helper: &mut Helper, attempt: &Attempt| -> Result<Outcome, HelperError> {
            let spec = plan.specs[attempt.test]
                .as_ref()
                .expect("only runnable tests are dispatched");
            let test = &plan.tests[attempt.test];
            let keep = policy
                .keep_writes
                .as_ref()
                .map(|keep| kept_writes(keep, &test.binary.id, &test.name, attempt.number));
            let seed = plan.attempt_seeds.then_some(plan.seed);
            match helper.run(
                &attempt_spec(spec, attempt.number, seed),
                CAPTURE_LIMIT,
                keep.as_ref(),
            ) {
                // Cancelling kills the helpers: that loss is the cancel, not a failure.
                Err(HelperError::Lost { .. }) if pool.stopped() => Err(HelperError::Cancelled),
                result => result,
            }
        },
        &mut attempts,
    );
    attempts.records()
}

/// Where an attempt's writes are kept under `--keep-writes DIR`:
/// `DIR/<binary id>/<test name>/attempt-<N>`, each name made one safe path component.
/// The sandbox removes what an earlier run left there.
pub fn kept_writes(keep: &KeepWrites, binary_id: &str, name: &str, attempt: u32) -> KeepWrites {
    KeepWrites {
        base: keep.base.clone(),
        below: keep
            .below
            .join(path_component(binary_id))
            .join(path_component(name))
            .join(format!("attempt-{attempt}")),
    }
}

/// A name as one path component that reads like the name: `/` and `%` are escaped, and so
/// is a leading `.`, so that nothing becomes `..` or hidden.
fn path_component(name: &str) -> String {
    let mut text = String::with_capacity(name.len());
    for (index, c) in name.chars().enumerate() {
        match c {
            '%' => text.push_str("%25"),
            '/' => text.push_str("%2F"),
            '\0' => text.push_str("%00"),
            '.' if index == 0 => text.push_str("%2E"),
            c => text.push(c),
        }
    }
    if text.is_empty() {
        text.push_str("%20");
    }
    text
}

/// How many attempts the policy will run, when that is known in advance (not for
/// `--stress-duration`).
pub fn planned_attempts(plan: &Plan, policy: &Policy) -> Option<usize> {
    match &policy.stress {
        Some(stress) => stress
            .attempts()
            .map(|runs| plan.order.len() * runs.count()),
        None => Some(plan.order.len()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn kept_writes_go_under_safe_names() {
        let keep = KeepWrites {
            base: "/target".into(),
            below: "isotest/writes".into(),
        };
        let kept = kept_writes(&keep, "pkg::it", "a/../b", 2);
        assert_eq!(kept.base, Path::new("/target"));
        assert_eq!(
            kept.below,
            Path::new("isotest/writes/pkg::it/a%2F..%2Fb/attempt-2")
        );
        assert_eq!(path_component(".."), "%2E.");
        assert_eq!(path_component("50%"), "50%25");
    }
}
