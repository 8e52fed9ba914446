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
pub mod stress;
#[cfg(test)]
mod test_support;
pub mod verdict;

use isotest_runtime::Outcome;

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
            let seed = plan.attempt_seeds.then_some(plan.seed);
            match helper.run(&attempt_spec(spec, attempt.number, seed), CAPTURE_LIMIT) {
                // Cancelling kills the helpers: that loss is the cancel, not a failure.
                Err(HelperError::Lost { .. }) if pool.stopped() => Err(HelperError::Cancelled),
                result => result,
            }
        },
        &mut attempts,
    );
    attempts.records()
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
