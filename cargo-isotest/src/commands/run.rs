//! `cargo isotest run`: discover → plan → run → report, each test in its own sandbox.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use clap::ValueEnum;
use isotest_runtime::KeepWrites;

use crate::args::{
    ArchiveArgs, ConfigArgs, SandboxArgs, parse_duration, parse_setting, parse_size,
};
use crate::cargo::CargoOptions;
use crate::chaos::{self, Kind};
use crate::config::{
    Bytes, Chaos, FailFast, FinalStatusLevel, FlakyResult, Junit, Layer, MaxFail, NoTests,
    OutputDisplay, Period, RetryPolicy, SlowTimeout, StatusLevel, Strays, TestThreads,
};
use crate::destination::{self, Destination};
use crate::discover::{Request, discover, sandbox_flags};
use crate::exit_code::{self, Failure};
use crate::plan::stress_shard::{self, StressShard};
use crate::plan::{self, Filter, HarnessRun, Partition, Sharding};
use crate::report::{Outputs, RunInfo, RunReporter, View, json, junit_options};
use crate::runner::budget::MemoryBudget;
use crate::runner::policy::{FlakyPolicy, Policy, StraysPolicy, Stress};
use crate::runner::{self, explain, verdict};

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub filter: Filter,
    #[command(flatten)]
    pub runner: RunnerArgs,
    #[command(flatten)]
    pub reporter: ReporterArgs,
    #[command(flatten)]
    pub flaky: FlakyArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[command(flatten)]
    pub cargo: CargoOptions,
}

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Runner options")]
pub struct RunnerArgs {
    /// Number of tests to run at once [default: the number of CPUs]; below 0, that many
    /// fewer than the CPUs. More than the CPUs oversubscribes them, which can shake timing
    /// bugs loose.
    #[arg(
        short = 'j',
        long = "test-threads",
        visible_alias = "jobs",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub jobs: Option<i32>,
    /// Run every test even after one fails (as `--max-fail=all`).
    #[arg(long, conflicts_with = "max_fail")]
    pub no_fail_fast: bool,
    /// Stop starting tests after N failures, or never (`all`) [default: 1].
    #[arg(long, value_name = "N|all", value_parser = parse_max_fail)]
    pub max_fail: Option<MaxFail>,
    /// What a test that leaves processes behind is: `warn` marks it leaky, `fail` fails it.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub strays: Option<StraysPolicy>,
    /// When a test is marked slow (e.g. 30s) [default: 60s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub slow_timeout: Option<Duration>,
    /// What a run that selects no test does: `fail` (exit 4), `warn` or `pass`.
    #[arg(long, value_name = "ACTION", value_parser = parse_setting::<NoTests>)]
    pub no_tests: Option<NoTests>,
    /// Write the JSON report (schema isotest-report/2) to PATH, even if the run fails
    /// [default: <target-dir>/isotest/last-run.json].
    #[arg(long, value_name = "PATH")]
    pub report_json: Option<PathBuf>,
    /// Write a JUnit XML report to PATH.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Run only the tests that failed in an earlier JSON report.
    #[arg(long, value_name = "REPORT")]
    pub rerun_failed: Option<PathBuf>,
    /// Keep the contents of what each test wrote (with --writable-source, and in --bind-rw
    /// directories) under DIR/<binary id>/<test name>/attempt-<N>; `apply-writes` copies
    /// one test's into the checkout.
    #[arg(long, value_name = "DIR")]
    pub keep_writes: Option<PathBuf>,
    /// List what every test wrote, not only the failing ones.
    #[arg(long)]
    pub show_writes: bool,
    /// Rerun each failed test once per sandbox rule relaxed (host network, writable
    /// source, host /sys, host environment, host HOME, no pid namespace), and report the
    /// first that makes it pass.
    #[arg(long)]
    pub explain: bool,
    /// Start a test only when its memory fits beside the running ones: its peak in the
    /// last report, else its --memory-max (e.g. 8G).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub memory_budget: Option<u64>,
    /// Run only shard K of N of the selected tests: hash:K/N, count:K/N or slice:K/N
    /// (cargo-nextest's meanings).
    #[arg(long, value_name = "KIND:K/N")]
    pub partition: Option<Partition>,
    /// Keep passing tests' output in the JSON report (failures' output is always kept).
    #[arg(long)]
    pub keep_passing_output: bool,
    /// `human` on stderr only, or besides it `libtest-json`: one JSON line per event on
    /// stdout as it happens, in libtest's and nextest's shape.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human, value_name = "FORMAT")]
    pub message_format: MessageFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    #[default]
    Human,
    LibtestJson,
}

/// nextest's reporter flags.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Reporter options")]
pub struct ReporterArgs {
    /// Show each test's output as it ends, one test at a time (as `cargo test -- --nocapture`).
    #[arg(long, visible_alias = "nocapture")]
    pub no_capture: bool,
    /// Which results to show as the run goes: none, fail, retry, slow, leak, pass, skip, all.
    #[arg(long, value_name = "LEVEL", value_parser = parse_setting::<StatusLevel>)]
    pub status_level: Option<StatusLevel>,
    /// Which results the summary repeats: none, fail, flaky, slow, skip, leak, pass, all.
    #[arg(long, value_name = "LEVEL", value_parser = parse_setting::<FinalStatusLevel>)]
    pub final_status_level: Option<FinalStatusLevel>,
    /// When to show a passing test's output: immediate, immediate-final, final, never.
    #[arg(long, value_name = "WHEN", value_parser = parse_setting::<OutputDisplay>)]
    pub success_output: Option<OutputDisplay>,
    /// When to show a failing test's output: immediate, immediate-final, final, never.
    #[arg(long, value_name = "WHEN", value_parser = parse_setting::<OutputDisplay>)]
    pub failure_output: Option<OutputDisplay>,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub hide_progress_bar: bool,
}

/// Options for chasing flaky tests.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Flaky tests")]
#[command(group(clap::ArgGroup::new("stress_mode").args(["stress", "stress_duration"]).multiple(false)))]
pub struct FlakyArgs {
    /// Rerun a failing test in a fresh sandbox up to N times.
    #[arg(long, value_name = "N", conflicts_with_all = ["stress", "stress_duration"])]
    pub retries: Option<u32>,
    /// Whether a test that passed only on a retry passes (`pass`) or fails the run (`fail`).
    #[arg(
        long,
        visible_alias = "flaky-result",
        value_enum,
        value_name = "RESULT"
    )]
    pub flaky: Option<FlakyPolicy>,
    /// Run each selected test N times, each in a fresh sandbox, in parallel up to -j.
    #[arg(long, value_name = "N", conflicts_with = "stress_duration", value_parser = clap::value_parser!(u32).range(1..))]
    pub stress: Option<u32>,
    /// Run each selected test again and again for this long (e.g. 30s, 10m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub stress_duration: Option<Duration>,
    /// With --stress N: run only shard K of M's share of the N runs (global attempt
    /// numbers, a seed per run); needs --shuffle=SEED, the same on every shard.
    #[arg(long, value_name = "K/M", requires = "stress", requires = "shuffle")]
    pub stress_shard: Option<StressShard>,
    /// With --stress or --stress-duration: stop at the first failure.
    #[arg(long, requires = "stress_mode")]
    pub stress_until_fail: bool,
    /// Run tests in a random order; give a SEED to repeat an order.
    #[arg(long, value_name = "SEED", num_args = 0..=1, default_missing_value = "random")]
    pub shuffle: Option<String>,
    /// Keep N threads busy beside the tests, to provoke timing bugs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub cpu_load: usize,
    /// Perturb each attempt, drawn from its own seed and recorded for replay: fewer CPUs,
    /// pauses, a fresh or ancient uptime, low limits, busy neighbours (`all`, or a list
    /// of cpus, sched, uptime, net, resources, neighbours).
    #[arg(long, value_name = "KIND,...", num_args = 0..=1, default_missing_value = "all", value_parser = parse_chaos)]
    pub chaos: Option<Chaos>,
}

/// `--chaos`: as the `chaos` key, `none` included.
fn parse_chaos(text: &str) -> Result<Chaos, String> {
    match text {
        "none" => Ok(Chaos(Vec::new())),
        _ => chaos::parse_kinds(text).map(Chaos),
    }
}

/// `--max-fail N|all`.
fn parse_max_fail(text: &str) -> Result<MaxFail, String> {
    parse_setting::<MaxFail>(text).or_else(|_| {
        match text.parse::<u32>().ok().and_then(NonZeroU32::new) {
            Some(n) => Ok(MaxFail::Count(n)),
            None => Err(format!(
                "`{text}`: give a number of failures from 1, or `all`"
            )),
        }
    })
}

pub fn run(args: RunArgs) -> i32 {
    execute(&args).unwrap_or_else(Failure::report)
}

/// The command line's layer of settings: the sandbox flags, and run's own.
fn flags(args: &RunArgs, harness: &HarnessRun) -> Result<Layer, Failure> {
    let mut layer = sandbox_flags(&args.sandbox)?;
    let runner = &args.runner;
    let reporter = &args.reporter;
    let threads = runner.jobs.or(harness.test_threads.map(|n| n as i32));
    if threads == Some(0) {
        return Err(Failure::new(
            exit_code::USAGE,
            "--test-threads 0: give a number other than 0",
        ));
    }
    let no_capture = reporter.no_capture || harness.no_capture;
    // Output shown as each test ends makes sense one test at a time, as in nextest.
    layer.test_threads = if no_capture {
        Some(TestThreads::Count(1))
    } else {
        threads.map(TestThreads::Count)
    };
    layer.fail_fast = match (runner.no_fail_fast, runner.max_fail) {
        (true, _) => Some(FailFast::new(MaxFail::All)),
        (false, max) => max.map(FailFast::new),
    };
    layer.strays = runner.strays.map(|s| match s {
        StraysPolicy::Warn => Strays::Warn,
        StraysPolicy::Fail => Strays::Fail,
    });
    layer.slow_timeout = runner.slow_timeout.map(|d| SlowTimeout::new(Period(d)));
    layer.no_tests = runner.no_tests;
    layer.report_json = runner.report_json.clone();
    layer.junit = runner.junit.clone().map(|path| Junit {
        path: Some(path),
        ..Junit::default()
    });
    layer.retries = args.flaky.retries.map(RetryPolicy::count);
    layer.flaky_result = args.flaky.flaky.map(|f| match f {
        FlakyPolicy::Pass => FlakyResult::Pass,
        FlakyPolicy::Fail => FlakyResult::Fail,
    });
    layer.chaos = args.flaky.chaos.clone();
    layer.memory_budget = runner.memory_budget.map(Bytes);
    layer.keep_writes = runner.keep_writes.clone();
    layer.show_writes = runner.show_writes.then_some(true);
    layer.status_level = reporter.status_level;
    layer.final_status_level = reporter.final_status_level;
    let immediate = no_capture.then_some(OutputDisplay::Immediate);
    layer.success_output = reporter.success_output.or(immediate);
    layer.failure_output = reporter.failure_output.or(immediate);
    Ok(layer)
}

fn execute(args: &RunArgs) -> Result<i32, Failure> {
    let started = Instant::now();
    // What the flags ask for is checked before the build, which takes long.
    let (filter, harness) = args.filter.resolve()?;
    let seed = plan::seed(args.flaky.shuffle.as_deref())?;
    let rerun = args
        .runner
        .rerun_failed
        .as_deref()
        .map(json::failed_tests)
        .transpose()?;

    if args.flaky.stress_shard.is_some() && args.flaky.shuffle.as_deref() == Some("random") {
        return Err(Failure::new(
            exit_code::USAGE,
            "--stress-shard needs --shuffle=SEED with the same SEED on every shard, so that \
             the shards' runs get disjoint seeds",
        ));
    }
    let started_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let request = Request {
        cargo: &args.cargo,
        archive: &args.archive,
        config: &args.config,
        flags: flags(args, &harness)?,
        filtersets: &filter.filtersets,
        jobs: None,
        reports: true,
    };
    let session = discover(&request)?;
    let run = &session.settings.run;
    let json_path = report_destination(args, run, &session)?;
    let sharding = Sharding {
        partition: args.runner.partition,
        attempt_seeds: args.flaky.stress_shard.is_some(),
    };
    let plan = plan::plan(
        &session,
        &filter,
        rerun.as_ref(),
        seed,
        args.flaky.shuffle.is_some(),
        sharding,
    )?;
    if plan.order.is_empty() && plan.tests.iter().all(|t| !t.run) {
        match run.no_tests.as_ref().map_or(NoTests::Fail, |n| n.value) {
            NoTests::Fail => {
                return Err(Failure::new(
                    exit_code::NO_TESTS,
                    "no test to run: the filters select none (`cargo isotest list` shows them \
                     all; --no-tests=warn or no-tests = \"warn\" accepts an empty run)",
                ));
            }
            NoTests::Warn => anstream::eprintln!(
                "warning: no test to run: the filters select none; `cargo isotest list` shows them all"
            ),
            NoTests::Pass => {}
        }
    }
    warn_about_skipped_chaos(&plan.settings);
    // Before the tests run: a test of an earlier run may have planted a symlink where a
    // report goes inside the target directory, which is not followed.
    let junit = junit_options(run, &session.build.target_dir);
    for destination in std::iter::once(&json_path).chain(junit.iter().map(|j| &j.destination)) {
        destination
            .check()
            .map_err(|e| Failure::new(exit_code::SETUP_FAILED, e))?;
    }
    let info = RunInfo {
        started_at,
        archive: session.archive.as_ref().map(|a| a.digest.clone()),
        partition: args.runner.partition.map(|p| p.to_string()),
        stress_shard: args
            .flaky
            .stress_shard
            .map(|s| format!("{}/{}", s.shard, s.total)),
        stress_runs: args.flaky.stress,
        ..RunInfo::default()
    };
    let outputs = Outputs {
        json: json_path,
        junit,
        keep_passing_output: args.runner.keep_passing_output,
        libtest_json: args.runner.message_format == MessageFormat::LibtestJson,
    };
    let mut policy = Policy::new(
        run,
        &plan.settings,
        session.settings.threads,
        session.settings.profile.profile().test_groups(),
        stress(&args.flaky),
    );
    // Learned from the report this run is about to replace.
    policy.memory_budget = run.memory_budget.as_ref().map(|total| {
        MemoryBudget::new(
            total.value.0,
            &plan.tests,
            &plan.specs,
            &json::peaks(&outputs.json.path()),
        )
    });
    policy.keep_writes = run
        .keep_writes
        .as_ref()
        .map(|dir| keep_writes(&dir.value, &session.build.target_dir));
    let view = View::new(run, &plan, &policy, args.reporter.hide_progress_bar);
    let mut reporter = RunReporter::start(
        &plan,
        runner::planned_attempts(&plan, &policy),
        outputs,
        info,
        &session.build.workspace_root,
        view,
        started,
    );
    let mut records = runner::run(
        &session.pool,
        &plan,
        &policy,
        args.flaky.cpu_load,
        &mut reporter,
    );
    if args.runner.explain && policy.stress.is_none() {
        let host = explain::HostFacts {
            env: std::env::vars().collect(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            toolchain: crate::cargo::toolchain::paths(),
        };
        explain::explain_failures(
            &session.pool,
            &plan,
            &mut records,
            &host,
            &session.build.target_dir.join("isotest"),
            &mut reporter,
        );
    }
    let cancelled = session
        .interrupted
        .load(std::sync::atomic::Ordering::SeqCst);
    let report = reporter.finish(records, cancelled)?;

    Ok(if cancelled {
        exit_code::INTERRUPTED
    } else if verdict::run_failed(&report.tests) {
        exit_code::TESTS_FAILED
    } else {
        0
    })
}

/// `keep-writes` (`--keep-writes DIR`): the directory taken as given, and what is below it,
/// made without following a symlink. Inside the target directory (the suggested
/// `target/isotest/writes`), only the target directory itself is taken as given: a test
/// with a writable bind of it could have planted a link on the way.
fn keep_writes(dir: &Path, target_dir: &Path) -> KeepWrites {
    match destination::below(dir, target_dir) {
        Some(below) => KeepWrites {
            base: target_dir.to_path_buf(),
            below,
        },
        None => {
            KeepWrites::into_dir(&std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()))
        }
    }
}

/// Where the JSON report goes: `report-json`, else the target directory's
/// `isotest/last-run.json`; from an archive, whose unpacked target directory is
/// temporary, `./isotest-report.json`, which must not be inside the remapped checkout.
fn report_destination(
    args: &RunArgs,
    run: &crate::config::Effective,
    session: &crate::discover::Session,
) -> Result<Destination, Failure> {
    let target_dir = &session.build.target_dir;
    if let Some(path) = &run.report_json {
        return Ok(Destination::chosen(&path.value, target_dir));
    }
    if args.archive.archive_file.is_none() {
        return Ok(Destination::own_report(target_dir));
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let checkout = args
        .archive
        .workspace_remap
        .as_ref()
        .and_then(|d| d.canonicalize().ok());
    if let (Ok(here), Some(checkout)) = (cwd.canonicalize(), checkout)
        && here.starts_with(&checkout)
    {
        return Err(Failure::new(
            exit_code::USAGE,
            "a run from an archive writes nothing into the checkout, and the JSON report \
             would go to ./isotest-report.json inside it; give --report-json PATH",
        ));
    }
    Ok(Destination::Given(cwd.join("isotest-report.json")))
}

/// What a kind cannot do on this host is said once, before the run; each attempt records
/// what it skipped.
fn warn_about_skipped_chaos(tests: &[crate::config::Effective]) {
    let net = tests.iter().any(|t| {
        t.chaos
            .as_ref()
            .is_some_and(|c| c.value.0.contains(&Kind::Net))
    });
    if net && let Some(reason) = &chaos::Host::current().no_netem {
        eprintln!(
            "warning: chaos kind `net` delays only forwarded connections here (`forward`, --forward), not the sandbox's own loopback: {reason}"
        );
    }
}

/// The stress run the flags ask for. A `--stress-duration` starts now, once the build is done.
fn stress(flaky: &FlakyArgs) -> Option<Stress> {
    let stressed = flaky.stress.is_some() || flaky.stress_duration.is_some();
    stressed.then(|| Stress {
        count: flaky.stress,
        until: flaky.stress_duration.map(|d| Instant::now() + d),
        until_fail: flaky.stress_until_fail,
        share: flaky
            .stress_shard
            .zip(flaky.stress)
            .map(|(shard, runs)| stress_shard::share(runs, shard)),
    })
}
