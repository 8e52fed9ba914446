//! Which listed tests a run selects: libtest's filters, and `#[ignore]`.

use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::cargo::build::TestBinary;
use crate::discover::{Listing, TestKind};
use crate::exit_code::{self, Failure};

/// libtest's selection flags, and nextest's filtersets.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Test selection")]
pub struct Filter {
    /// Run only tests whose name contains one of these strings.
    #[arg(value_name = "FILTER")]
    pub patterns: Vec<String>,
    /// Select tests with a filterset, nextest's language (e.g. 'test(db) & package(app)');
    /// several are or-ed, and a test must match them and the name filters.
    #[arg(
        short = 'E',
        long = "filterset",
        visible_alias = "filter-expr",
        value_name = "EXPR"
    )]
    pub filtersets: Vec<String>,
    /// Which tests run: `default` (not #[ignore]d), `only` (only ignored), `all`.
    #[arg(long, value_enum, value_name = "WHICH")]
    pub run_ignored: Option<RunIgnored>,
    /// Arguments for the test harness, as with `cargo test -- ARGS`: filters, `--exact`,
    /// `--skip`, `--ignored`, `--include-ignored`, `--nocapture`, `--test-threads`.
    #[arg(last = true, value_name = "HARNESS ARGS", allow_hyphen_values = true)]
    pub harness: Vec<String>,
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

/// nextest's `--run-ignored`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RunIgnored {
    Default,
    Only,
    All,
}

/// What the arguments after `--` ask of the run itself, rather than of the selection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HarnessRun {
    /// `--nocapture` (or `--no-capture`).
    pub no_capture: bool,
    /// `--test-threads N`.
    pub test_threads: Option<usize>,
}

impl Filter {
    /// Folds the harness arguments (after `--`) and `--run-ignored` into the selection,
    /// as `cargo test` would read them, and returns what they ask of the run. An argument
    /// libtest has but isotest cannot honour is an error, not a silent filter.
    pub fn resolve(&self) -> Result<(Filter, HarnessRun), Failure> {
        self.read_harness_args()
            .map_err(|e| Failure::new(exit_code::USAGE, e))
    }

    fn read_harness_args(&self) -> Result<(Filter, HarnessRun), String> {
        let mut filter = self.clone();
        filter.harness.clear();
        match self.run_ignored {
            Some(RunIgnored::Only) => filter.ignored = true,
            Some(RunIgnored::All) => filter.include_ignored = true,
            Some(RunIgnored::Default) | None => {}
        }
        let mut run = HarnessRun::default();
        let mut args = self.harness.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = |what: &str| {
                inline
                    .clone()
                    .or_else(|| args.next().cloned())
                    .ok_or_else(|| format!("`-- {flag}` needs {what}"))
            };
            match flag {
                "--nocapture" | "--no-capture" => run.no_capture = true,
                "--exact" => filter.exact = true,
                "--ignored" => filter.ignored = true,
                "--include-ignored" => filter.include_ignored = true,
                "--skip" => filter.skip.push(value("a filter")?),
                "--test-threads" => {
                    let text = value("a number")?;
                    let threads =
                        text.parse::<usize>()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or_else(|| {
                                format!("`-- --test-threads {text}`: give a number from 1")
                            })?;
                    run.test_threads = Some(threads);
                }
                // Output formats are isotest's own business: its reporters show every test.
                "--quiet" | "-q" | "--show-output" | "--color" | "--format" => {
                    return Err(format!(
                        "`-- {flag}` is a libtest output option; isotest's output is set with \
                         --status-level, --success-output and --failure-output"
                    ));
                }
                other if other.starts_with('-') => {
                    return Err(format!(
                        "`-- {other}` is not a test harness option isotest knows; it takes \
                         --nocapture, --exact, --skip, --ignored, --include-ignored and --test-threads"
                    ));
                }
                pattern => filter.patterns.push(pattern.to_string()),
            }
        }
        if filter.ignored && filter.include_ignored {
            return Err("--ignored and --include-ignored cannot be used together".into());
        }
        Ok((filter, run))
    }

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

/// The tests the filters select, in binary then name order: those the name filters and
/// `chosen` (the filtersets, or the profile's default filter) both accept.
pub fn select(
    listings: &[Listing],
    filter: &Filter,
    chosen: &dyn Fn(&TestBinary, &str) -> bool,
) -> Vec<TestInstance> {
    let mut selected = Vec::new();
    for listing in listings {
        for test in &listing.tests {
            if !filter.matches(&test.name) || !chosen(&listing.binary, &test.name) {
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
            package_id: "pkg 0.1.0 (path+file:///w/pkg)".into(),
            kind: "lib".into(),
            target_name: "pkg".into(),
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
        select(&[listing()], &filter, &|_, _| true)
            .into_iter()
            .map(|t| (t.name, t.run))
            .collect()
    }

    #[test]
    fn arguments_after_the_double_dash_are_read_as_cargo_test_does() {
        let filter = Filter {
            harness: [
                "--nocapture",
                "fast",
                "--skip=b::",
                "--test-threads",
                "2",
                "--exact",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        };
        let (resolved, run) = filter.resolve().unwrap();
        assert_eq!(
            run,
            HarnessRun {
                no_capture: true,
                test_threads: Some(2)
            }
        );
        assert_eq!(resolved.patterns, ["fast"]);
        assert_eq!(resolved.skip, ["b::"]);
        assert!(resolved.exact && resolved.harness.is_empty());
        let only_nocapture = Filter {
            harness: vec!["--nocapture".into()],
            ..Default::default()
        };
        let (resolved, _) = only_nocapture.resolve().unwrap();
        assert!(resolved.patterns.is_empty(), "--nocapture is not a filter");
        for bad in ["--bogus", "--format", "--test-threads"] {
            let filter = Filter {
                harness: vec![bad.into()],
                ..Default::default()
            };
            assert!(filter.resolve().unwrap_err().message.contains(bad), "{bad}");
        }
        let all = Filter {
            run_ignored: Some(RunIgnored::All),
            ..Default::default()
        };
        assert!(all.resolve().unwrap().0.include_ignored);
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
