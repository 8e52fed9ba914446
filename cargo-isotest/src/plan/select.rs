//! Which listed tests a run selects: libtest's filters, and `#[ignore]`.

use std::sync::Arc;

use clap::Args;

use crate::cargo::build::TestBinary;
use crate::discover::{Listing, TestKind};

/// libtest's selection flags.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Test selection")]
pub struct Filter {
    /// Run only tests whose name contains one of these strings.
    #[arg(value_name = "FILTER")]
    pub patterns: Vec<String>,
    /// Filters must match test names exactly.
    #[arg(long)]
    pub exact: bool,
    /// Skip tests whose name contains this string (exactly, with --exact).
    #[arg(long, value_name = "FILTER")]
    pub skip: Vec<String>,
    /// Run only ignored tests.
    #[arg(long, conflicts_with = "include_ignored")]
    pub ignored: bool,
    /// Run ignored tests too.
    #[arg(long)]
    pub include_ignored: bool,
}

impl Filter {
    fn matches(&self, name: &str) -> bool {
        let hit = |pattern: &String| {
            if self.exact {
                name == pattern
            } else {
                name.contains(pattern.as_str())
            }
        };
        (self.patterns.is_empty() || self.patterns.iter().any(hit)) && !self.skip.iter().any(hit)
    }

    fn runs(&self, ignored: bool) -> bool {
        if self.ignored {
            ignored
        } else {
            self.include_ignored || !ignored
        }
    }
}

/// One selected test.
#[derive(Clone, Debug)]
pub struct TestInstance {
    pub binary: Arc<TestBinary>,
    pub name: String,
    pub kind: TestKind,
    /// Marked `#[ignore]` in the source.
    pub ignored: bool,
    /// False for an ignored test that this run reports without running.
    pub run: bool,
}

/// The tests the filters select, in binary then name order.
pub fn select(listings: &[Listing], filter: &Filter) -> Vec<TestInstance> {
    let mut selected = Vec::new();
    for listing in listings {
        for test in &listing.tests {
            if !filter.matches(&test.name) {
                continue;
            }
            let ignored = listing.ignored.contains(&test.name);
            if filter.ignored && !ignored {
                continue;
            }
            selected.push(TestInstance {
                binary: listing.binary.clone(),
                name: test.name.clone(),
                kind: test.kind,
                ignored,
                run: filter.runs(ignored),
            });
        }
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::ListedTest;

    fn listing() -> Listing {
        let binary = Arc::new(TestBinary {
            id: "pkg".into(),
            path: "/t/pkg-1".into(),
            manifest_dir: "/w/pkg".into(),
            env: Default::default(),
            link_paths: Vec::new(),
        });
        let names = ["a::fast", "a::slow", "b::fast", "ignored_one"];
        Listing {
            binary,
            tests: names
                .iter()
                .map(|n| ListedTest {
                    name: n.to_string(),
                    kind: TestKind::Test,
                })
                .collect(),
            ignored: ["ignored_one".to_string()].into(),
        }
    }

    fn names(filter: Filter) -> Vec<(String, bool)> {
        select(&[listing()], &filter)
            .into_iter()
            .map(|t| (t.name, t.run))
            .collect()
    }

    #[test]
    fn substring_filters_and_skip_combine() {
        let filter = Filter {
            patterns: vec!["fast".into()],
            skip: vec!["b::".into()],
            ..Default::default()
        };
        assert_eq!(names(filter), [("a::fast".to_string(), true)]);
    }

    #[test]
    fn exact_matches_whole_names_only() {
        let filter = Filter {
            patterns: vec!["a::fast".into(), "fast".into()],
            exact: true,
            ..Default::default()
        };
        assert_eq!(names(filter), [("a::fast".to_string(), true)]);
    }

    #[test]
    fn ignored_tests_are_reported_not_run_unless_asked() {
        let default = names(Filter::default());
        assert!(default.contains(&("ignored_one".to_string(), false)));
        let only = names(Filter {
            ignored: true,
            ..Default::default()
        });
        assert_eq!(only, [("ignored_one".to_string(), true)]);
        let include = names(Filter {
            include_ignored: true,
            ..Default::default()
        });
        assert!(include.iter().all(|(_, run)| *run) && include.len() == 4);
    }
}
