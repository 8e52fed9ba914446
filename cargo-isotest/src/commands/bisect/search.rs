//! Delta debugging (Zeller and Hildebrandt's ddmin): the smallest set of tests whose
//! presence makes the target fail, asking an oracle that runs a subset and says whether
//! the target failed. One culprit among n takes at most 2·log2(n) questions.

/// A 1-minimal subset of `items` for which `fails` holds, given that it holds for
/// `items`: removing any one element of the result makes it pass.
pub fn ddmin<T: Clone>(items: &[T], mut fails: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let mut current = items.to_vec();
    let mut n = 2;
    while current.len() >= 2 {
        let chunks = split(&current, n);
        if let Some(chunk) = chunks.iter().find(|chunk| fails(chunk)) {
            current = chunk.clone();
            n = 2;
            continue;
        }
        // With two chunks each is the other's complement, already asked about.
        let complement = (n > 2)
            .then(|| {
                (0..chunks.len())
                    .map(|skip| complement_of(&chunks, skip))
                    .find(|rest| fails(rest))
            })
            .flatten();
        if let Some(rest) = complement {
            current = rest;
            n = (n - 1).max(2);
        } else if n >= current.len() {
            break;
        } else {
            n = (2 * n).min(current.len());
        }
    }
    current
}

/// `items` in `n` contiguous chunks of nearly equal size, keeping their order.
fn split<T: Clone>(items: &[T], n: usize) -> Vec<Vec<T>> {
    let n = n.min(items.len()).max(1);
    (0..n)
        .map(|i| items[i * items.len() / n..(i + 1) * items.len() / n].to_vec())
        .collect()
}

fn complement_of<T: Clone>(chunks: &[Vec<T>], skip: usize) -> Vec<T> {
    chunks
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != skip)
        .flat_map(|(_, c)| c.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks `fails` through a counter: the number of sandbox runs a bisect would take.
    fn counted(items: &[u32], culprits: &[u32]) -> (Vec<u32>, usize) {
        let mut asked = 0;
        let found = ddmin(items, |subset| {
            asked += 1;
            culprits.iter().all(|c| subset.contains(c))
        });
        (found, asked)
    }

    #[test]
    fn one_polluter_among_a_thousand_in_at_most_23_runs() {
        let tests: Vec<u32> = (0..1000).collect();
        for polluter in (0..1000).step_by(7).chain([999]) {
            let (found, asked) = counted(&tests, &[polluter]);
            assert_eq!(found, [polluter]);
            // Plus the target alone and the whole set, as bisect asks first: 25 at most.
            assert!(asked <= 23, "polluter {polluter}: {asked} runs");
        }
    }

    #[test]
    fn two_tests_that_pollute_only_together_are_both_found() {
        let tests: Vec<u32> = (0..200).collect();
        let (found, asked) = counted(&tests, &[3, 150]);
        assert_eq!(found, [3, 150]);
        assert!(asked < 100, "{asked}");
        let (found, _) = counted(&tests, &[10, 11, 12]);
        assert_eq!(found, [10, 11, 12]);
    }

    #[test]
    fn a_single_test_is_its_own_answer_and_order_is_kept() {
        assert_eq!(counted(&[5], &[5]), (vec![5], 0));
        assert_eq!(split(&[1, 2, 3, 4, 5], 2), [vec![1, 2], vec![3, 4, 5]]);
        assert_eq!(split(&[1, 2], 4), [vec![1], vec![2]]);
    }
}
