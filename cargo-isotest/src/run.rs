//! `cargo isotest run`: discover → plan → run → report, each test in its own sandbox.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use isotest_runtime::{Mount, Net, Outcome, Spec};

use crate::cargo_options::CargoOptions;
use crate::discover::{self, Build, DiscoverError};
use crate::environment::{SandboxOptions, binary_spec, target_tmpdir};
use crate::exec::{parse_bind, parse_duration, parse_size};
use crate::exit_code;
use crate::helper::{Helper, HelperError};
use crate::plan::{self, Filter, Listing, TestInstance};
use crate::report::terminal::Terminal;
use crate::report::{RunReport, TestOutcome, TestRecord, junit};
use crate::schedule::{Event, Pool};

/// Bytes of each output stream kept per test: head and tail halves.
const CAPTURE_LIMIT: usize = 4 << 20;
/// A binary that takes longer than this to list its tests is not answering.
const LIST_TIMEOUT_MS: u64 = 60_000;

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub filter: Filter,
    #[command(flatten)]
    pub runner: RunnerArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub cargo: CargoOptions,
}

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Runner options")]
pub struct RunnerArgs {
    /// Number of tests to run at once [default: the number of CPUs].
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Run every test even after one fails.
    #[arg(long)]
    pub no_fail_fast: bool,
    /// What a test that leaves processes behind is: `warn` marks it leaky, `fail` fails it.
    #[arg(long, value_enum, default_value_t = StraysPolicy::Warn, value_name = "POLICY")]
    pub strays: StraysPolicy,
    /// Write the JSON report (schema isotest-report/1) to PATH, even if the run fails.
    #[arg(long, value_name = "PATH")]
    pub report_json: Option<PathBuf>,
    /// Write a JUnit XML report to PATH.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum StraysPolicy {
    #[default]
    Warn,
    Fail,
}

/// Rules of every test's sandbox that a user may relax.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Sandbox options")]
pub struct SandboxArgs {
    /// Kill a test after this long (e.g. 30s, 5m); no limit by default.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Network of each test: only `lo` (up), no usable interface, or the host's.
    #[arg(long, value_enum, value_name = "NET")]
    pub net: Option<NetArg>,
    /// Make a host path visible read-only in every test's sandbox.
    #[arg(long, value_name = "SRC[:DST]")]
    pub bind: Vec<String>,
    /// Make a host path visible and writable in every test's sandbox.
    #[arg(long, value_name = "SRC[:DST]")]
    pub bind_rw: Vec<String>,
    /// Size cap of each test's private /tmp, HOME and CARGO_TARGET_TMPDIR.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub tmpfs_size: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NetArg {
    Loopback,
    None,
    Host,
}

impl SandboxArgs {
    pub fn options(&self) -> anyhow::Result<SandboxOptions> {
        let mut binds: Vec<Mount> = Vec::new();
        for value in &self.bind {
            binds.push(parse_bind(value, false)?);
        }
        for value in &self.bind_rw {
            binds.push(parse_bind(value, true)?);
        }
        let defaults = SandboxOptions::default();
        Ok(SandboxOptions {
            timeout: self.timeout,
            net: match self.net {
                None => defaults.net,
                Some(NetArg::Loopback) => Net::Loopback,
                Some(NetArg::None) => Net::None,
                Some(NetArg::Host) => Net::Host,
            },
            binds,
            tmpfs_size: self.tmpfs_size.unwrap_or(defaults.tmpfs_size),
        })
    }
}

/// A failure of the run itself, with the exit code that says which kind.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    fn new(code: i32, message: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

impl From<DiscoverError> for Failure {
    fn from(error: DiscoverError) -> Failure {
        let code = match error {
            DiscoverError::BuildFailed { .. } => exit_code::BUILD_FAILED,
            _ => exit_code::SETUP_FAILED,
        };
        Failure::new(code, error)
    }
}

/// Everything discovered: the build, the helpers, and every binary's test list.
pub struct Session {
    pub build: Build,
    pub pool: Pool,
    pub listings: Vec<Listing>,
    pub sandbox: SandboxOptions,
    pub interrupted: Arc<AtomicBool>,
}

/// Discover: probe the host, build, start the helpers, list every binary in a sandbox.
pub fn discover(
    cargo: &CargoOptions,
    sandbox: &SandboxArgs,
    jobs: Option<usize>,
) -> Result<Session, Failure> {
    let sandbox = sandbox
        .options()
        .map_err(|e| Failure::new(exit_code::USAGE, format!("{e:#}")))?;
    if !crate::doctor::check_host() {
        return Err(Failure::new(
            exit_code::NO_SANDBOX,
            "no sandbox can be created on this host",
        ));
    }
    let build = discover::build(cargo)?;
    std::fs::create_dir_all(target_tmpdir(&build)).map_err(|e| {
        Failure::new(
            exit_code::SETUP_FAILED,
            format!("cannot create {}: {e}", target_tmpdir(&build).display()),
        )
    })?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = Pool::start(jobs).map_err(|e| {
        Failure::new(
            exit_code::SETUP_FAILED,
            format!("cannot start the sandbox helpers: {e}"),
        )
    })?;
    let interrupted = crate::interrupt::watch(pool.stop_flag(), pool.pids()).map_err(|e| {
        Failure::new(
            exit_code::SETUP_FAILED,
            format!("cannot watch for Ctrl-C: {e}"),
        )
    })?;
    let listings = list_tests(&build, &pool, &sandbox)?;
    if pool.stopped() {
        return Err(Failure::new(
            exit_code::INTERRUPTED,
            "interrupted while listing tests",
        ));
    }
    Ok(Session {
        build,
        pool,
        listings,
        sandbox,
        interrupted,
    })
}

/// Lists every binary twice, all tests and ignored ones, each inside a sandbox.
fn list_tests(
    build: &Build,
    pool: &Pool,
    sandbox: &SandboxOptions,
) -> Result<Vec<Listing>, Failure> {
    let jobs: Vec<(usize, bool, Spec)> = build
        .binaries
        .iter()
        .enumerate()
        .flat_map(|(index, binary)| {
            [false, true].map(|ignored| {
                let mut spec =
                    binary_spec(build, binary, sandbox, plan::list_argv(binary, ignored));
                spec.timeout_ms = Some(LIST_TIMEOUT_MS);
                (index, ignored, spec)
            })
        })
        .collect();
    let mut outputs: Vec<Option<Result<String, String>>> = vec![None; jobs.len()];
    pool.run(
        &jobs,
        |helper: &mut Helper, (_, _, spec)| list_output(helper, spec),
        |event| {
            if let Event::Finished(index, result) = event {
                outputs[index] = Some(result);
            }
            false
        },
    );
    let mut listings: Vec<Listing> = build
        .binaries
        .iter()
        .map(|binary| Listing {
            binary: binary.clone(),
            tests: Vec::new(),
            ignored: BTreeSet::new(),
        })
        .collect();
    for ((index, ignored, _), output) in jobs.iter().zip(outputs) {
        let listing = &mut listings[*index];
        let Some(output) = output else { continue };
        let text = output.map_err(|e| {
            Failure::new(
                exit_code::LIST_FAILED,
                format!("cannot list the tests of `{}`: {e}", listing.binary.id),
            )
        })?;
        let tests = discover::parse_list(&listing.binary.id, &text)
            .map_err(|e| Failure::new(exit_code::LIST_FAILED, e))?;
        if *ignored {
            listing.ignored = tests.into_iter().map(|t| t.name).collect();
        } else {
            listing.tests = tests;
        }
    }
    Ok(listings)
}

fn list_output(helper: &mut Helper, spec: &Spec) -> Result<String, String> {
    let outcome = helper.run(spec, CAPTURE_LIMIT).map_err(|e| e.to_string())?;
    if let Some(error) = &outcome.start_error {
        return Err(error.to_string());
    }
    if !outcome.exit.success() || outcome.timed_out {
        let what = if outcome.timed_out {
            "timed out".to_string()
        } else {
            outcome.exit.to_string()
        };
        return Err(format!(
            "`{}` ended with {what}; its output was:\n{}{}",
            spec.argv.join(" "),
            outcome.stdout.lossy(),
            outcome.stderr.lossy()
        ));
    }
    Ok(outcome.stdout.lossy())
}

pub fn run(args: RunArgs) -> i32 {
    match execute(&args) {
        Ok(code) => code,
        Err(failure) => {
            anstream::eprintln!("error: {}", failure.message);
            failure.code
        }
    }
}

fn execute(args: &RunArgs) -> Result<i32, Failure> {
    let started = Instant::now();
    let session = discover(&args.cargo, &args.sandbox, args.runner.jobs)?;
    let selected = plan::select(&session.listings, &args.filter);
    let listed: usize = session.listings.iter().map(|l| l.tests.len()).sum();
    let binaries = selected
        .iter()
        .map(|t| &t.binary.id)
        .collect::<BTreeSet<_>>()
        .len();
    let runnable: Vec<(usize, Spec)> = selected
        .iter()
        .enumerate()
        .filter(|(_, t)| t.run)
        .map(|(i, t)| (i, plan::test_spec(&session.build, t, &session.sandbox)))
        .collect();
    let mut terminal = Terminal::new(runnable.len());
    terminal.header(runnable.len(), binaries, listed - runnable.len());
    let mut records: Vec<Option<TestRecord>> = vec![None; selected.len()];
    let fail_fast = !args.runner.no_fail_fast;
    session.pool.run(
        &runnable,
        |helper: &mut Helper, (_, spec)| helper.run(spec, CAPTURE_LIMIT),
        |event| match event {
            Event::Started(job) => {
                let test = &selected[runnable[job].0];
                terminal.started(job, format!("{} {}", test.binary.id, test.name));
                false
            }
            Event::Finished(job, result) => {
                let (index, spec) = &runnable[job];
                let record = classify(&selected[*index], spec, result, args.runner.strays);
                terminal.finished(job, &record);
                let stop = fail_fast && record.is_failure();
                records[*index] = Some(record);
                stop
            }
            Event::Tick => {
                terminal.tick();
                false
            }
        },
    );
    let cancelled = session
        .interrupted
        .load(std::sync::atomic::Ordering::SeqCst);
    let tests: Vec<TestRecord> = selected
        .iter()
        .zip(records)
        .map(|(test, record)| {
            record.unwrap_or_else(|| {
                let outcome = if test.run {
                    TestOutcome::NotRun
                } else {
                    TestOutcome::Ignored
                };
                TestRecord::not_run(&test.binary.id, &test.name, test.kind, outcome)
            })
        })
        .collect();
    let report = RunReport::new(tests, started.elapsed().as_millis() as u64, cancelled);
    terminal.summary(&report, None);
    write_reports(&report, &args.runner)?;
    Ok(if cancelled {
        exit_code::INTERRUPTED
    } else if report.summary.failed + report.summary.timed_out > 0 {
        exit_code::TESTS_FAILED
    } else {
        0
    })
}

fn write_reports(report: &RunReport, runner: &RunnerArgs) -> Result<(), Failure> {
    if let Some(path) = &runner.report_json {
        report
            .write_json(path)
            .map_err(|e| Failure::new(exit_code::SETUP_FAILED, e))?;
    }
    if let Some(path) = &runner.junit {
        junit::write(report, path).map_err(|e| Failure::new(exit_code::SETUP_FAILED, e))?;
    }
    Ok(())
}

/// Turns a sandbox's outcome into the test's record.
pub fn classify(
    test: &TestInstance,
    spec: &Spec,
    result: Result<Outcome, HelperError>,
    strays: StraysPolicy,
) -> TestRecord {
    let mut record =
        TestRecord::not_run(&test.binary.id, &test.name, test.kind, TestOutcome::Failed);
    record.spec = Some(spec.clone());
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(HelperError::Lost { .. }) => {
            record.outcome = TestOutcome::NotRun;
            return record;
        }
        Err(error @ HelperError::Sandbox { .. }) => {
            record.error = Some(format!("the test's sandbox could not be created: {error}"));
            return record;
        }
    };
    record.duration_ms = outcome.duration.as_millis() as u64;
    record.stdout_truncated = outcome.stdout.truncated();
    record.stderr_truncated = outcome.stderr.truncated();
    record.leaky = !outcome.strays.is_empty();
    record.outcome = if outcome.timed_out {
        TestOutcome::TimedOut
    } else if outcome.exit.success() {
        TestOutcome::Passed
    } else {
        TestOutcome::Failed
    };
    if let Some(error) = &outcome.start_error {
        record.error = Some(error.to_string());
    } else if record.outcome == TestOutcome::Passed && ran_no_test(&outcome) {
        record.outcome = TestOutcome::Failed;
        record.error = Some(format!(
            "the binary listed `{}` but ran no test when asked for it by exact name: its harness does not honour `--exact`",
            test.name
        ));
    }
    if record.outcome == TestOutcome::Passed && record.leaky && strays == StraysPolicy::Fail {
        record.outcome = TestOutcome::Failed;
        record.error = Some(format!(
            "it left {} process(es) behind (--strays=fail)",
            outcome.strays.len()
        ));
    }
    record.exit = Some(outcome.exit);
    record.strays = outcome.strays;
    record.stdout = outcome.stdout;
    record.stderr = outcome.stderr;
    if record.is_failure() {
        record.hint = sandbox_hint(&record);
    }
    record
}

/// libtest's and libtest-mimic's own words for an empty run.
fn ran_no_test(outcome: &Outcome) -> bool {
    outcome
        .stdout
        .lossy()
        .lines()
        .any(|line| line.trim() == "running 0 tests")
}

/// Points at the sandbox rule a failure's output suggests it ran into. Only the kernel's
/// own error texts count, and it is phrased as a possibility.
fn sandbox_hint(record: &TestRecord) -> Option<String> {
    let text = format!("{}{}", record.stdout.lossy(), record.stderr.lossy());
    if text.contains("Read-only file system") || text.contains("os error 30") {
        return Some(
            "the output mentions a read-only file system. In the sandbox the source tree, the target \
             directory and the system directories are read-only; a test can write to $CARGO_TARGET_TMPDIR, \
             /tmp or $HOME, which are private to it. To let tests write somewhere else, pass --bind-rw PATH."
                .into(),
        );
    }
    if text.contains("Network is unreachable") || text.contains("os error 101") {
        return Some(
            "the output mentions an unreachable network. In the sandbox only the loopback interface exists \
             (127.0.0.1 and ::1 work). To give tests the host's network, pass --net host."
                .into(),
        );
    }
    None
}
