//! `--memory-budget`: a test starts only when its memory need fits beside the tests
//! already running. A test's need is its peak in the last report (learned), else its
//! `--memory-max` (declared), else unknown (it fits anywhere). A test that needs more than
//! the whole budget still runs, alone.

use std::collections::BTreeMap;

use isotest_runtime::Spec;

use crate::plan::TestInstance;

/// The run's memory budget and what each selected test needs of it.
#[derive(Clone, Debug, Default)]
pub struct MemoryBudget {
    pub total: u64,
    /// Bytes per selected test (indices as in the plan's tests).
    pub needs: Vec<u64>,
}

impl MemoryBudget {
    /// `learned` maps `(binary id, name)` to the peak the last report recorded.
    pub fn new(
        total: u64,
        tests: &[TestInstance],
        specs: &[Option<Spec>],
        learned: &BTreeMap<(String, String), u64>,
    ) -> MemoryBudget {
        let needs = tests
            .iter()
            .zip(specs)
            .map(|(test, spec)| {
                let key = (test.binary.id.clone(), test.name.clone());
                let declared = spec.as_ref().and_then(|s| s.limits.memory_max);
                need(learned.get(&key).copied(), declared)
            })
            .collect();
        MemoryBudget { total, needs }
    }
}

/// What a test is expected to use: what it used last time, else at most its limit.
pub fn need(learned: Option<u64>, declared: Option<u64>) -> u64 {
    learned.or(declared).unwrap_or(0)
}

/// Whether a test needing `need` bytes fits in `total` beside `reserved` bytes held by
/// `running` tests; with nothing running, it always does.
pub fn fits(need: u64, total: u64, reserved: u64, running: usize) -> bool {
    running == 0 || reserved.saturating_add(need) <= total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learned_peak_beats_the_declared_limit() {
        assert_eq!(need(Some(10), Some(100)), 10);
        assert_eq!(need(None, Some(100)), 100);
        assert_eq!(need(None, None), 0);
    }

    #[test]
    fn only_tests_that_fit_beside_the_running_ones_start() {
        // 1 GiB budget, 700 MiB held: a 400 MiB test waits, a 200 MiB one behind it starts.
        let (gib, mib) = (1u64 << 30, 1u64 << 20);
        assert!(!fits(400 * mib, gib, 700 * mib, 1));
        assert!(fits(200 * mib, gib, 700 * mib, 1));
        // Alone, even a test larger than the budget starts.
        assert!(fits(2 * gib, gib, 0, 0));
    }

    #[test]
    fn needs_come_from_the_last_report_then_the_spec() {
        use crate::runner::test_support::instance;
        let tests = [instance("a"), instance("b"), instance("c")];
        let mut limited = Spec::new(Vec::new());
        limited.limits.memory_max = Some(64 << 20);
        let specs = [Some(limited.clone()), Some(limited), None];
        let learned = BTreeMap::from([(("pkg".to_string(), "a".to_string()), 5 << 20)]);
        let budget = MemoryBudget::new(1 << 30, &tests, &specs, &learned);
        assert_eq!(budget.needs, [5 << 20, 64 << 20, 0]);
    }
}
