//! `cargo isotest run`: discover → plan → run → report, each test in its own sandbox.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use clap::ValueEnum;
use isotest_runtime::KeepWrites;

use crate::args::{ArchiveArgs, SandboxArgs, parse_duration, parse_size};
use crate::cargo::CargoOptions;
use crate::chaos::{self, Kind};
use crate::destination::Destination;
use crate::discover::discover;
use crate::exit_code::{self, Failure};
use crate::plan::stress_shard::{self, StressShard};
use crate::plan::{self, Filter, Partition, Sharding};
use crate::report::{Outputs, RunInfo, RunReporter, json};
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
    pub flaky: FlakyArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[command(flatten)]
    pub cargo: CargoOptions,
}

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Runner options")]
pub struct RunnerArgs {
    /// Number of tests to run at once [default: the number of CPUs]; more than the CPUs
    /// oversubscribes them, which can shake timing bugs loose.
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Run every test even after one fails.
    #[arg(long)]
    pub no_fail_fast: bool,
    /// What a test that leaves processes behind is: `warn` marks it leaky, `fail` fails it.
    #[arg(long, value_enum, default_value_t = StraysPolicy::Warn, value_name = "POLICY")]
    pub strays: StraysPolicy,
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

/// Options for chasing flaky tests.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Flaky tests")]
#[command(group(clap::ArgGroup::new("stress_mode").args(["stress", "stress_duration"]).multiple(false)))]
pub struct FlakyArgs {
    /// Rerun a failing test in a fresh sandbox up to N times.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with_all = ["stress", "stress_duration"])]
    pub retries: u32,
    /// Whether a test that passed only on a retry passes (`pass`) or fails the run (`fail`).
    #[arg(long, value_enum, default_value_t = FlakyPolicy::Pass, value_name = "RESULT")]
    pub flaky: FlakyPolicy,
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
    pub chaos: Option<ChaosKinds>,
}

/// The kinds `--chaos` names.
#[derive(Clone, Debug)]
pub struct ChaosKinds(pub Vec<Kind>);

fn parse_chaos(text: &str) -> Result<ChaosKinds, String> {
    chaos::parse_kinds(text).map(ChaosKinds)
}

pub fn run(args: RunArgs) -> i32 {
    execute(&args).unwrap_or_else(Failure::report)
}

fn execute(args: &RunArgs) -> Result<i32, Failure> {
    let started = Instant::now();
    // What the flags ask for is checked before the build, which takes long.
    let seed = plan::seed(args.flaky.shuffle.as_deref())?;
    for path in args.runner.report_json.iter().chain(&args.runner.junit) {
        Destination::Given(path.clone())
            .check()
            .map_err(|e| Failure::new(exit_code::USAGE, e))?;
    }
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
    if let (Some(_), None) = (&args.archive.archive_file, &args.runner.report_json) {
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|d| d.canonicalize().ok());
        let checkout = args
            .archive
            .workspace_remap
            .as_ref()
            .and_then(|d| d.canonicalize().ok());
        if let (Some(cwd), Some(checkout)) = (cwd, checkout)
            && cwd.starts_with(&checkout)
        {
            return Err(Failure::new(
                exit_code::USAGE,
                "a run from an archive writes nothing into the checkout, and the JSON report \
                 would go to ./isotest-report.json inside it; give --report-json PATH",
            ));
        }
    }
    let started_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();

    let mut session = discover(&args.cargo, &args.archive, &args.sandbox, args.runner.jobs)?;
    if let Some(ChaosKinds(kinds)) = &args.flaky.chaos {
        warn_about_skipped_chaos(kinds);
        session.sandbox.chaos = kinds.clone();
    }
    let sharding = Sharding {
        partition: args.runner.partition,
        attempt_seeds: args.flaky.stress_shard.is_some(),
    };
    let plan = plan::plan(
        &session,
        &args.filter,
        rerun.as_ref(),
        seed,
        args.flaky.shuffle.is_some(),
        sharding,
    );
    let json_path = match (&args.runner.report_json, &args.archive.archive_file) {
        (Some(path), _) => Destination::Given(path.clone()),
        // The unpacked target directory is temporary: nothing is written into the checkout.
        (None, Some(_)) => Destination::Given(
            std::env::current_dir()
                .unwrap_or_default()
                .join("isotest-report.json"),
        ),
        (None, None) => Destination::own_report(&session.build.target_dir),
    };
    json_path
        .check()
        .map_err(|e| Failure::new(exit_code::SETUP_FAILED, e))?;
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
        junit: args.runner.junit.clone().map(Destination::Given),
        keep_passing_output: args.runner.keep_passing_output,
        libtest_json: args.runner.message_format == MessageFormat::LibtestJson,
    };
    let mut policy = policy(args);
    policy.keep_writes = args
        .runner
        .keep_writes
        .as_deref()
        .map(|dir| keep_writes(dir, &session.build.target_dir));
    // Learned from the report this run is about to replace.
    policy.memory_budget = args.runner.memory_budget.map(|total| {
        MemoryBudget::new(
            total,
            &plan.tests,
            &plan.specs,
            &json::peaks(&outputs.json.path()),
        )
    });
    let mut reporter = RunReporter::start(
        &plan,
        runner::planned_attempts(&plan, &policy),
        outputs,
        info,
        &session.build.workspace_root,
        started,
        args.runner.show_writes,
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

/// `--keep-writes DIR`: the directory taken as given, and what is below it, made without
/// following a symlink. Inside the target directory (the suggested
/// `target/isotest/writes`), only the target directory itself is taken as given: a test
/// with `--bind-rw` of it could have planted a link on the way.
fn keep_writes(dir: &Path, target_dir: &Path) -> KeepWrites {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    match dir.strip_prefix(target_dir) {
        Ok(below)
            if below
                .components()
                .all(|c| matches!(c, Component::Normal(_))) =>
        {
            KeepWrites {
                base: target_dir.to_path_buf(),
                below: below.to_path_buf(),
            }
        }
        _ => KeepWrites::into_dir(&dir),
    }
}

/// Kinds this host cannot apply are said once, before the run; each attempt records them.
fn warn_about_skipped_chaos(kinds: &[Kind]) {
    if kinds.contains(&Kind::Net)
        && let Some(reason) = &chaos::Host::current().no_net
    {
        eprintln!("warning: --chaos net is skipped: {reason}");
    }
}

/// The policy the flags ask for. A `--stress-duration` starts now, once the build is done.
fn policy(args: &RunArgs) -> Policy {
    let flaky = &args.flaky;
    let stressed = flaky.stress.is_some() || flaky.stress_duration.is_some();
    Policy {
        retries: flaky.retries,
        flaky: flaky.flaky,
        strays: args.runner.strays,
        fail_fast: !args.runner.no_fail_fast && !stressed,
        stress: stressed.then(|| Stress {
            count: flaky.stress,
            until: flaky.stress_duration.map(|d| Instant::now() + d),
            until_fail: flaky.stress_until_fail,
            share: flaky
                .stress_shard
                .zip(flaky.stress)
                .map(|(shard, runs)| stress_shard::share(runs, shard)),
        }),
        keep_writes: None,
        memory_budget: None,
    }
}
