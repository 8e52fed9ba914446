//! Plan: from every listed test, pick what runs (libtest's filters) and give each one its
//! command line and sandbox.

use std::collections::BTreeSet;
use std::sync::Arc;

use clap::Args;
use isotest_runtime::Spec;

use crate::cargo::build::{Build, ListedTest, TestBinary, TestKind};
use crate::sandbox::{SandboxOptions, binary_spec};

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

/// A binary's tests as listed, with which of them are `#[ignore]`d.
pub struct Listing {
    pub binary: Arc<TestBinary>,
    pub tests: Vec<ListedTest>,
    pub ignored: BTreeSet<String>,
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

/// `<binary> --exact <name> --nocapture [--ignored]`, as cargo test and nextest run it.
pub fn test_argv(test: &TestInstance) -> Vec<String> {
    let mut argv = vec![
        test.binary.path.display().to_string(),
        "--exact".into(),
        test.name.clone(),
        "--nocapture".into(),
    ];
    if test.ignored {
        argv.push("--ignored".into());
    }
    argv
}

/// The sandbox every test of a binary runs in, before it is told which test it runs.
pub fn binary_test_spec(build: &Build, binary: &TestBinary, options: &SandboxOptions) -> Spec {
    binary_spec(build, binary, options, Vec::new())
}

/// The sandbox one test runs in: its binary's, with the test's command and name.
pub fn test_spec(binary_spec: &Spec, test: &TestInstance) -> Spec {
    let mut spec = binary_spec.clone();
    spec.argv = test_argv(test);
    spec.env
        .set
        .insert("ISOTEST_TEST_NAME".into(), test.name.clone());
    spec
}

/// `<binary> --list --format terse [--ignored]`.
pub fn list_argv(binary: &TestBinary, ignored: bool) -> Vec<String> {
    let mut argv = vec![
        binary.path.display().to_string(),
        "--list".into(),
        "--format".into(),
        "terse".into(),
    ];
    if ignored {
        argv.push("--ignored".into());
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn ignored_tests_run_with_the_ignored_flag() {
        let mut test = select(&[listing()], &Filter::default()).pop().unwrap();
        assert_eq!(test.name, "ignored_one");
        assert_eq!(
            test_argv(&test),
            [
                "/t/pkg-1",
                "--exact",
                "ignored_one",
                "--nocapture",
                "--ignored"
            ]
        );
        test.ignored = false;
        assert_eq!(test_argv(&test).len(), 4);
    }
}
