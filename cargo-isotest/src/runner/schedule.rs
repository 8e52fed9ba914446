//! Which waiting attempt may start now, as nextest schedules: a test takes its
//! `threads-required` of the run's threads, and a test group's tests together take at most
//! the group's `max-threads`. A pure decision over what is running, with unit tests.

use std::collections::BTreeMap;

use super::policy::TestPolicy;

/// The threads in use, in all and by group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    pub total: usize,
    pub used: usize,
    pub groups: BTreeMap<String, usize>,
}

impl Slots {
    pub fn new(total: usize) -> Slots {
        Slots {
            total: total.max(1),
            ..Slots::default()
        }
    }

    pub fn take(&mut self, test: &TestPolicy) {
        self.used += test.threads;
        if let Some(group) = &test.group {
            *self.groups.entry(group.clone()).or_default() += test.threads;
        }
    }

    pub fn release(&mut self, test: &TestPolicy) {
        self.used = self.used.saturating_sub(test.threads);
        if let Some(group) = &test.group
            && let Some(used) = self.groups.get_mut(group)
        {
            *used = used.saturating_sub(test.threads);
        }
    }

    /// Whether the test's group has room for it. A group's limit is at least one test, so
    /// that a test needing more threads than its group has still runs, alone.
    fn group_has_room(&self, test: &TestPolicy, limits: &BTreeMap<String, usize>) -> bool {
        let Some(group) = &test.group else {
            return true;
        };
        let used = self.groups.get(group).copied().unwrap_or(0);
        let limit = limits.get(group).copied().unwrap_or(usize::MAX);
        used == 0 || used + test.threads <= limit
    }
}

/// The position in `waiting` of the attempt to start now, if one may. `waiting` is in queue
/// order, each with its test's policy and whether it is ready (a retry's delay is over).
///
/// An attempt whose group is full is passed over, so that other tests run meanwhile. The
/// first one that is ready and whose group has room but that needs more threads than are
/// free holds back those behind it, so that a test needing many threads is not starved by
/// smaller ones.
pub fn pick<'a>(
    waiting: impl IntoIterator<Item = (&'a TestPolicy, bool)>,
    slots: &Slots,
    limits: &BTreeMap<String, usize>,
) -> Option<usize> {
    let free = slots.total.saturating_sub(slots.used);
    for (position, (test, ready)) in waiting.into_iter().enumerate() {
        if !ready || !slots.group_has_room(test, limits) {
            continue;
        }
        return (test.threads.min(slots.total) <= free).then_some(position);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(threads: usize, group: Option<&str>) -> TestPolicy {
        TestPolicy {
            threads,
            group: group.map(String::from),
            ..TestPolicy::DEFAULT
        }
    }

    fn limits() -> BTreeMap<String, usize> {
        [("db".to_string(), 1), ("pair".to_string(), 2)].into()
    }

    #[test]
    fn a_full_group_is_passed_over_for_the_next_test() {
        let db = test(1, Some("db"));
        let free = test(1, None);
        let mut slots = Slots::new(4);
        assert_eq!(
            pick([(&db, true), (&free, true)], &slots, &limits()),
            Some(0)
        );
        slots.take(&db);
        assert_eq!(
            pick([(&db, true), (&free, true)], &slots, &limits()),
            Some(1)
        );
        assert_eq!(pick([(&db, true)], &slots, &limits()), None);
        slots.release(&db);
        assert_eq!(pick([(&db, true)], &slots, &limits()), Some(0));
    }

    #[test]
    fn a_group_takes_up_to_its_max_threads() {
        let pair = test(1, Some("pair"));
        let mut slots = Slots::new(8);
        slots.take(&pair);
        assert_eq!(pick([(&pair, true)], &slots, &limits()), Some(0));
        slots.take(&pair);
        assert_eq!(pick([(&pair, true)], &slots, &limits()), None);
        assert_eq!(slots.groups["pair"], 2);
    }

    #[test]
    fn a_test_waits_for_the_threads_it_requires_and_holds_back_the_rest() {
        let big = test(3, None);
        let small = test(1, None);
        let mut slots = Slots::new(4);
        slots.take(&small);
        slots.take(&small);
        assert_eq!(
            pick([(&big, true), (&small, true)], &slots, &limits()),
            None
        );
        slots.release(&small);
        assert_eq!(
            pick([(&big, true), (&small, true)], &slots, &limits()),
            Some(0)
        );
        slots.take(&big);
        assert_eq!(slots.used, 4);
        assert_eq!(pick([(&small, true)], &slots, &limits()), None);
    }

    #[test]
    fn an_attempt_waiting_out_its_retry_delay_lets_others_start() {
        let a = test(1, None);
        let slots = Slots::new(1);
        assert_eq!(pick([(&a, false), (&a, true)], &slots, &limits()), Some(1));
        assert_eq!(pick([(&a, false)], &slots, &limits()), None);
    }

    #[test]
    fn a_test_needing_more_than_its_group_allows_runs_alone() {
        let wide = test(2, Some("db"));
        let mut slots = Slots::new(4);
        assert_eq!(pick([(&wide, true)], &slots, &limits()), Some(0));
        slots.take(&wide);
        assert_eq!(pick([(&wide, true)], &slots, &limits()), None);
    }
}
