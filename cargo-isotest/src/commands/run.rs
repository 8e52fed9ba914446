//! `cargo isotest run`: discover → plan → run → report, each test in its own sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use isotest_runtime::{Mount, Net, Spec};

use crate::cargo::CargoOptions;
use crate::cargo::build::{self as discover, Build, DiscoverError};
use crate::commands::exec::{parse_bind, parse_duration, parse_size};
use crate::exit_code;
use crate::plan::{self, Filter, Listing};
use crate::pool::helper::{Helper, HelperError};
use crate::pool::{Dispatch, Event, Pool};
use crate::report::terminal::Terminal;
use crate::report::{RunReport, junit};
use crate::runner::attempts::{
    Attempt, FlakyPolicy, Policy, StraysPolicy, Stress, Tests, attempt_spec,
};
use crate::sandbox::{SandboxOptions, binary_spec, target_tmpdir};

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
    pub flaky: FlakyArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
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
    /// Write the JSON report (schema isotest-report/1) to PATH, even if the run fails
    /// [default: <target-dir>/isotest/last-run.json].
    #[arg(long, value_name = "PATH")]
    pub report_json: Option<PathBuf>,
    /// Write a JUnit XML report to PATH.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Run only the tests that failed in an earlier JSON report.
    #[arg(long, value_name = "REPORT")]
    pub rerun_failed: Option<PathBuf>,
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
    /// With --stress or --stress-duration: stop at the first failure.
    #[arg(long, requires = "stress_mode")]
    pub stress_until_fail: bool,
    /// Run tests in a random order; give a SEED to repeat an order.
    #[arg(long, value_name = "SEED", num_args = 0..=1, default_missing_value = "random")]
    pub shuffle: Option<String>,
    /// Keep N threads busy beside the tests, to provoke timing bugs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub cpu_load: usize,
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
    /// Do not make cargo, rustc, rustup and cargo's registry cache visible to tests.
    #[arg(long)]
    pub no_toolchain: bool,
    /// Pass a host variable through to every test (KEY) or set one (KEY=VALUE).
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
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
        for item in &self.env {
            let key = item.split_once('=').map_or(item.as_str(), |(key, _)| key);
            if key.is_empty() || key.contains('\0') {
                anyhow::bail!("--env {item}: give a variable name, as KEY or KEY=VALUE");
            }
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
            toolchain: if self.no_toolchain {
                Vec::new()
            } else {
                defaults.toolchain
            },
            env: self.env.clone(),
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
            // Cargo itself refused: the same problem `cargo test` would have.
            DiscoverError::BuildFailed { .. } | DiscoverError::Metadata(_) => {
                exit_code::BUILD_FAILED
            }
            DiscoverError::Config(_) => exit_code::USAGE,
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
    let mut options = sandbox
        .options()
        .map_err(|e| Failure::new(exit_code::USAGE, format!("{e:#}")))?;
    if !crate::commands::doctor::check_host() {
        return Err(Failure::new(
            exit_code::NO_SANDBOX,
            "no sandbox can be created on this host",
        ));
    }
    let build = discover::build(cargo)?;
    if !sandbox.no_toolchain {
        options.toolchain = crate::sandbox::toolchain_paths();
    }
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
    let interrupted =
        crate::pool::interrupt::watch(pool.stop_flag(), pool.pids()).map_err(|e| {
            Failure::new(
                exit_code::SETUP_FAILED,
                format!("cannot watch for Ctrl-C: {e}"),
            )
        })?;
    let listings = list_tests(&build, &pool, &options)?;
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
        sandbox: options,
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
    let mut queue = Queue::new(jobs.len());
    pool.run(
        |helper: &mut Helper, &index: &usize| list_output(helper, &jobs[index].2),
        &mut queue,
    );
    let outputs = queue.results;
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
        let text = output.map_err(|(code, e)| {
            Failure::new(
                code,
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

fn list_output(helper: &mut Helper, spec: &Spec) -> Result<String, (i32, String)> {
    let outcome = match helper.run(spec, CAPTURE_LIMIT) {
        Ok(outcome) => outcome,
        Err(HelperError::Sandbox {
            message,
            setup: Some(setup),
        }) if setup.is_spec_problem() => {
            return Err((
                exit_code::USAGE,
                format!(
                    "{message}; {}",
                    crate::commands::exec::BIND_DESTINATION_HINT
                ),
            ));
        }
        Err(e) => return Err((exit_code::LIST_FAILED, e.to_string())),
    };
    let failed = |text: String| Err((exit_code::LIST_FAILED, text));
    if let Some(error) = &outcome.start_error {
        return failed(error.to_string());
    }
    if !outcome.exit.success() || outcome.timed_out {
        let what = if outcome.timed_out {
            "timed out".to_string()
        } else {
            outcome.exit.to_string()
        };
        return failed(format!(
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
    let seed = seed(args.flaky.shuffle.as_deref())?;
    let rerun = args
        .runner
        .rerun_failed
        .as_deref()
        .map(failed_tests)
        .transpose()?;
    let session = discover(&args.cargo, &args.sandbox, args.runner.jobs)?;
    let mut selected = plan::select(&session.listings, &args.filter);
    if let Some(failed) = &rerun {
        selected.retain(|t| failed.contains(&(t.binary.id.clone(), t.name.clone())));
    }
    let listed: usize = session.listings.iter().map(|l| l.tests.len()).sum();
    let binaries = selected
        .iter()
        .map(|t| &t.binary.id)
        .collect::<BTreeSet<_>>()
        .len();
    // Everything but the command and the test's name is the binary's: worked out once
    // per binary, not once per test.
    let mut binary_specs: BTreeMap<&str, Spec> = BTreeMap::new();
    let specs: Vec<Option<Spec>> = selected
        .iter()
        .map(|t| {
            t.run.then(|| {
                let base = binary_specs.entry(&t.binary.id).or_insert_with(|| {
                    let mut spec =
                        plan::binary_test_spec(&session.build, &t.binary, &session.sandbox);
                    spec.env.set.insert("ISOTEST_SEED".into(), seed.to_string());
                    spec
                });
                plan::test_spec(base, t)
            })
        })
        .collect();
    let mut order: Vec<usize> = (0..selected.len())
        .filter(|&i| specs[i].is_some())
        .collect();
    if args.flaky.shuffle.is_some() {
        fastrand::Rng::with_seed(seed).shuffle(&mut order);
    }
    let policy = policy(args);
    let report_path = args
        .runner
        .report_json
        .clone()
        .unwrap_or_else(|| session.build.target_dir.join("isotest/last-run.json"));
    let attempts = match &policy.stress {
        Some(stress) => stress.count.map(|count| order.len() * count as usize),
        None => Some(order.len()),
    };
    if selected.is_empty() {
        anstream::eprintln!(
            "warning: no test matches the filters; `cargo isotest list` shows them all"
        );
    }
    let mut terminal = Terminal::new(attempts, report_path.display().to_string());
    terminal.header(order.len(), binaries, listed - order.len());
    let load = CpuLoad::start(args.flaky.cpu_load);
    if let Some(parent) = report_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut tests = Tests::new(&selected, &specs, &order, &policy, &mut terminal);
    let mut checkpointed = Checkpointed {
        tests: &mut tests,
        path: &report_path,
        seed,
        started,
        written: Instant::now(),
        dirty: false,
    };
    session.pool.run(
        |helper: &mut Helper, attempt: &Attempt| {
            let spec = attempt_spec(
                specs[attempt.test]
                    .as_ref()
                    .expect("only runnable tests are dispatched"),
                attempt.number,
            );
            helper.run(&spec, CAPTURE_LIMIT)
        },
        &mut checkpointed,
    );
    let records = tests.records();
    drop(load);
    let cancelled = session
        .interrupted
        .load(std::sync::atomic::Ordering::SeqCst);
    let report = RunReport::new(
        records,
        started.elapsed().as_millis() as u64,
        seed,
        cancelled,
    );
    terminal.stress_results(&report.tests);
    let seed_line = args
        .flaky
        .shuffle
        .is_some()
        .then(|| format!("{:>12} shuffled with --shuffle={seed}", "seed"));
    terminal.summary(&report, seed_line.as_deref());
    report
        .write_json(&report_path)
        .map_err(|e| Failure::new(exit_code::SETUP_FAILED, e))?;
    write_reports(&report, &args.runner)?;
    let failed = report
        .tests
        .iter()
        .any(|t| t.is_failure() || t.stress.as_ref().is_some_and(|s| s.failures > 0));
    Ok(if cancelled {
        exit_code::INTERRUPTED
    } else if failed {
        exit_code::TESTS_FAILED
    } else {
        0
    })
}

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
        }),
    }
}

/// The run's seed: the one given to --shuffle, else a fresh one. Every test gets it as
/// `ISOTEST_SEED`, so a test that seeds its randomness from it can be replayed exactly.
fn seed(shuffle: Option<&str>) -> Result<u64, Failure> {
    match shuffle {
        // Below 2^53, so that JSON readers that use doubles (JavaScript, jq) keep it exact.
        None | Some("random") => Ok(fastrand::u64(..1 << 53)),
        Some(text) => text.parse().map_err(|_| {
            Failure::new(
                exit_code::USAGE,
                format!(
                    "--shuffle={text}: a seed is a whole number from 0 to {}",
                    u64::MAX
                ),
            )
        }),
    }
}

/// The tests that failed (or timed out) in an earlier report.
fn failed_tests(path: &std::path::Path) -> Result<BTreeSet<(String, String)>, Failure> {
    let report = crate::commands::replay::read_report(path)
        .map_err(|e| Failure::new(exit_code::USAGE, format!("{e:#}")))?;
    Ok(report
        .tests
        .into_iter()
        .filter(|t| matches!(t.outcome.as_str(), "failed" | "timed-out"))
        .map(|t| (t.binary_id, t.name))
        .collect())
}

/// How often the report on disk is brought up to date while tests finish.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// Keeps the JSON report on disk up to date while the run goes on, so that a runner
/// killed outright still leaves what it knew.
struct Checkpointed<'t, 'a> {
    tests: &'t mut Tests<'a>,
    path: &'t std::path::Path,
    seed: u64,
    started: Instant,
    written: Instant,
    dirty: bool,
}

impl Dispatch<Attempt, Result<isotest_runtime::Outcome, HelperError>> for Checkpointed<'_, '_> {
    fn next(&mut self) -> Option<Attempt> {
        self.tests.next()
    }

    fn on_event(&mut self, event: Event<Attempt, Result<isotest_runtime::Outcome, HelperError>>) {
        self.dirty |= matches!(event, Event::Finished(..));
        self.tests.on_event(event);
        if self.dirty && self.written.elapsed() >= CHECKPOINT_EVERY {
            let mut report = RunReport::new(
                self.tests.records(),
                self.started.elapsed().as_millis() as u64,
                self.seed,
                false,
            );
            report.in_progress = true;
            // A failed checkpoint is not worth stopping the run for; the final write reports.
            let _ = report.write_json(self.path);
            self.written = Instant::now();
            self.dirty = false;
        }
    }
}

/// Threads that keep CPUs busy beside the tests until dropped.
struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    fn start(threads: usize) -> CpuLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x: u64 = 1;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        CpuLoad { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A fixed list of jobs, by index, with their results in order.
struct Queue<R> {
    next: usize,
    results: Vec<Option<R>>,
}

impl<R> Queue<R> {
    fn new(len: usize) -> Queue<R> {
        Queue {
            next: 0,
            results: std::iter::repeat_with(|| None).take(len).collect(),
        }
    }
}

impl<R> Dispatch<usize, R> for Queue<R> {
    fn next(&mut self) -> Option<usize> {
        let index = self.next;
        (index < self.results.len()).then(|| {
            self.next += 1;
            index
        })
    }

    fn on_event(&mut self, event: Event<usize, R>) {
        if let Event::Finished(index, result) = event {
            self.results[index] = Some(result);
        }
    }
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
