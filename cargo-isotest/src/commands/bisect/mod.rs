//! `cargo isotest bisect REPORT TEST`: a test that failed in a run but passes alone
//! depends on other tests of that run. Which ones, and how: by what they left behind
//! (rw binds and other shared state: they ran *before* it) or by running *beside* it
//! (contention). Delta debugging over the tests that ran before or beside it names the
//! culprits, in about 2·log2(n) sandbox runs for one culprit; then what it wrote.

mod search;
mod shared;

use std::path::PathBuf;

use clap::Args;
use isotest_runtime::{Mount, Outcome, Spec};

use crate::exit_code::{self, Failure};
use crate::launch::helper::{Helper, HelperError};
use crate::launch::pool::{Dispatch, Event, Next, Pool};
use crate::report::json::{self, StoredReport, StoredTest};
use crate::runner::policy::TestPolicy;
use crate::runner::verdict;
use crate::sandbox::{self, CAPTURE_LIMIT};
use shared::SharedState;

#[derive(Args, Debug)]
pub struct BisectArgs {
    /// A JSON report of the run in which the test failed.
    #[arg(value_name = "REPORT")]
    report: PathBuf,
    /// The test: `<binary id> <name>`, its name, or a part of either that only it matches.
    #[arg(value_name = "TEST")]
    filter: String,
    /// Sandboxes at once while the other tests of a trial run [default: the number of CPUs].
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,
    /// Bisect with a report of another workspace, or one whose test binaries changed
    /// since: a report says what to run and with which binds, so run only the ones you
    /// trust.
    #[arg(long)]
    trust_report: bool,
}

/// How the other tests of a trial run with the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// All of them first, then the target: what they leave behind.
    Before,
    /// The target first, with them beside it: contention.
    Beside,
}

pub fn run(args: BisectArgs) -> i32 {
    execute(&args).unwrap_or_else(Failure::report)
}

fn execute(args: &BisectArgs) -> Result<i32, Failure> {
    let usage = |e: anyhow::Error| Failure::new(exit_code::USAGE, format!("{e:#}"));
    let report = json::read(&args.report).map_err(usage)?;
    let target = json::find(&report.tests, &args.filter).map_err(usage)?;
    let label = |t: &StoredTest| format!("{} {}", t.binary_id, t.name);
    if report.test_sandbox(target).is_none() {
        return Err(Failure::new(
            exit_code::USAGE,
            format!(
                "{} did not run, so there is nothing to bisect",
                label(target)
            ),
        ));
    }
    let ran: Vec<bool> = report
        .tests
        .iter()
        .map(|t| report.test_sandbox(t).is_some())
        .collect();
    let suspects: Vec<&StoredTest> = suspects(&report.tests, &ran, target)
        .into_iter()
        .map(|i| &report.tests[i])
        .collect();
    if !args.trust_report {
        let every: Vec<&StoredTest> = suspects.iter().copied().chain([target]).collect();
        report.check_trusted(&every).map_err(usage)?;
    }
    let specs: Vec<Spec> = suspects
        .iter()
        .chain([&target])
        .filter_map(|t| recorded_spec(&report, t))
        .collect();
    let shared = SharedState::snapshot(&writable_binds(specs.iter()))
        .map_err(|e| Failure::new(exit_code::SETUP_FAILED, format!("{e:#}")))?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = Pool::start(jobs).map_err(|e| {
        Failure::new(
            exit_code::NO_SANDBOX,
            format!("cannot start sandbox helpers: {e}"),
        )
    })?;
    eprintln!(
        "isotest: bisecting {}: {} tests ran before or beside it",
        label(target),
        suspects.len()
    );
    let mut trials = Trials {
        report: &report,
        pool: &pool,
        shared: &shared,
        target,
        runs: 0,
    };
    let code = match find_culprits(&mut trials, &suspects) {
        Verdict::FailsAlone => {
            println!(
                "{} fails alone too ({} run): it does not depend on other tests{}",
                label(target),
                trials.runs,
                shared.hint()
            );
            exit_code::TESTS_FAILED
        }
        Verdict::NotReproduced => {
            println!(
                "{} passed after and beside the {} tests that ran with it ({} runs): the \
                 failure did not come back; try `--stress` with `--chaos`",
                label(target),
                suspects.len(),
                trials.runs
            );
            exit_code::TESTS_FAILED
        }
        Verdict::Found(mode, culprits) => {
            let how = match mode {
                Mode::Before => "runs before it (state left behind)",
                Mode::Beside => "runs beside it (contention)",
            };
            let runs = trials.runs;
            for culprit in &culprits {
                println!("{} fails when {} {how}", label(target), label(culprit));
                if mode == Mode::Before {
                    for path in trials.written_by(culprit) {
                        println!("  it wrote {}", path.display());
                    }
                }
            }
            println!("found in {runs} sandbox runs");
            0
        }
    };
    shared
        .restore()
        .map_err(|e| Failure::new(exit_code::SETUP_FAILED, format!("{e:#}")))?;
    Ok(code)
}

enum Verdict<'a> {
    FailsAlone,
    NotReproduced,
    Found(Mode, Vec<&'a StoredTest>),
}

/// Alone, after all suspects, beside all of them; then the smallest set that still
/// makes it fail.
fn find_culprits<'a>(trials: &mut Trials, suspects: &[&'a StoredTest]) -> Verdict<'a> {
    if trials.fails(&[], Mode::Before) {
        return Verdict::FailsAlone;
    }
    let Some(mode) = [Mode::Before, Mode::Beside]
        .into_iter()
        .find(|&mode| trials.fails(suspects, mode))
    else {
        return Verdict::NotReproduced;
    };
    Verdict::Found(mode, search::ddmin(suspects, |set| trials.fails(set, mode)))
}

/// The tests that started before the target ended: before it or beside it, in the order
/// they started.
fn suspects(tests: &[StoredTest], ran: &[bool], target: &StoredTest) -> Vec<usize> {
    let end = target.started_ms + target.duration_ms;
    let mut suspects: Vec<usize> = (0..tests.len())
        .filter(|&i| {
            let t = &tests[i];
            ran[i]
                && (&t.binary_id, &t.name) != (&target.binary_id, &target.name)
                && t.started_ms < end
        })
        .collect();
    suspects.sort_by_key(|&i| tests[i].started_ms);
    suspects
}

/// The sandbox of the attempt the report recorded, with the seeds it had.
fn recorded_spec(report: &StoredReport, test: &StoredTest) -> Option<Spec> {
    let (binary_spec, argv) = report.test_sandbox(test)?;
    let spec = match argv {
        Some(argv) => sandbox::with_test(binary_spec, argv.to_vec(), &test.name),
        None => binary_spec.clone(),
    };
    let seed = report.attempt_seeds.then_some(report.seed);
    Some(sandbox::attempt_spec(&spec, test.attempt, seed))
}

/// Every writable host path the sandboxes share.
fn writable_binds<'a>(specs: impl Iterator<Item = &'a Spec>) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = specs
        .flat_map(|s| s.mounts.iter())
        .filter_map(|m| match m {
            Mount::Bind {
                src,
                writable: true,
                ..
            } => Some(src.clone()),
            _ => None,
        })
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// Sandbox runs of the recorded tests, each trial from the shared state as it was.
struct Trials<'a> {
    report: &'a StoredReport,
    pool: &'a Pool,
    shared: &'a SharedState,
    target: &'a StoredTest,
    runs: usize,
}

impl Trials<'_> {
    /// Whether the target fails with `others` run in `mode`, from the initial state.
    fn fails(&mut self, others: &[&StoredTest], mode: Mode) -> bool {
        self.runs += 1;
        if let Err(e) = self.shared.restore() {
            eprintln!("warning: {e:#}");
        }
        let target = [self.target];
        // The target is always the first of its batch, so it starts first beside them.
        let batch = match mode {
            Mode::Before => {
                run_all(self.report, self.pool, others);
                target.to_vec()
            }
            Mode::Beside => [&target[..], others].concat(),
        };
        run_all(self.report, self.pool, &batch)[0]
    }

    /// The paths in the shared state that `test`, run alone from the initial state,
    /// created or changed.
    fn written_by(&mut self, test: &StoredTest) -> Vec<PathBuf> {
        if let Err(e) = self.shared.restore() {
            eprintln!("warning: {e:#}");
            return Vec::new();
        }
        run_all(self.report, self.pool, &[test]);
        self.shared.changes()
    }
}

/// Runs `tests` on the pool, each in the sandbox and with the attempt the report
/// recorded, and says for each (in order) whether it failed.
fn run_all(report: &StoredReport, pool: &Pool, tests: &[&StoredTest]) -> Vec<bool> {
    let specs: Vec<Spec> = tests
        .iter()
        .map(|t| recorded_spec(report, t).expect("suspects ran"))
        .collect();
    let mut dispatch = Runs {
        next: 0,
        count: specs.len(),
        failed: vec![false; specs.len()],
        names: tests.iter().map(|t| t.name.clone()).collect(),
    };
    pool.run(
        |helper: &mut Helper, &i: &usize| -> Result<Outcome, HelperError> {
            helper.run(&specs[i], CAPTURE_LIMIT, None)
        },
        &mut dispatch,
    );
    dispatch.failed
}

struct Runs {
    next: usize,
    count: usize,
    failed: Vec<bool>,
    names: Vec<String>,
}

impl Dispatch<usize, Result<Outcome, HelperError>> for Runs {
    fn next(&mut self) -> Next<usize> {
        if self.next == self.count {
            return Next::Done;
        }
        self.next += 1;
        Next::Job(self.next - 1)
    }

    fn on_event(&mut self, event: Event<usize, Result<Outcome, HelperError>>) {
        if let Event::Finished(i, result) = event {
            let record = verdict::attempt(&self.names[i], 1, result, &TestPolicy::DEFAULT);
            self.failed[i] = record.is_failure();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(name: &str, started_ms: u64, duration_ms: u64, ran: bool) -> StoredTest {
        StoredTest {
            binary_id: "b".into(),
            name: name.into(),
            outcome: "passed".into(),
            attempt: 1,
            spec: ran.then(|| Spec::new(vec!["t".into()])),
            argv: None,
            attempts: Vec::new(),
            resources: None,
            writes: Vec::new(),
            started_ms,
            duration_ms,
        }
    }

    #[test]
    fn suspects_are_the_tests_that_started_before_the_target_ended() {
        let tests = [
            stored("late", 500, 10, true),
            stored("beside", 150, 100, true),
            stored("target", 100, 200, true),
            stored("before", 0, 20, true),
            stored("not-run", 0, 0, false),
        ];
        let ran: Vec<bool> = tests.iter().map(|t| t.spec.is_some()).collect();
        let names: Vec<&str> = suspects(&tests, &ran, &tests[2])
            .into_iter()
            .map(|i| tests[i].name.as_str())
            .collect();
        assert_eq!(names, ["before", "beside"]);
    }

    #[test]
    fn writable_binds_are_collected_once() {
        let mut spec = Spec::new(vec!["t".into()]);
        spec.mounts.push(Mount::Bind {
            src: "/scratch".into(),
            dst: "/scratch".into(),
            writable: true,
        });
        assert_eq!(
            writable_binds([spec.clone(), spec].iter()),
            [PathBuf::from("/scratch")]
        );
    }
}
