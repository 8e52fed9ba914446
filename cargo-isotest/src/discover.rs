//! Discover: the session every command that runs tests starts with. It checks that the
//! host can sandbox, builds the tests, starts the sandbox helpers, and lists each binary's
//! tests, each listing inside the binary's own sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use isotest_runtime::Spec;

use crate::args::{
    ArchiveArgs, ConfigArgs, MechanismArg, NetArg, PidArg, SandboxArgs, SysArg, check_env,
    setup_problem,
};
use crate::cargo::CargoOptions;
use crate::cargo::archive::lists::TestList;
use crate::cargo::archive::{self, ArchiveError};
use crate::cargo::archived;
use crate::cargo::build::{self, Build, BuildError, RustcPrint, TestBinary};
use crate::config::{
    Bind, Bytes, CompiledProfile, Config, CpuMax, Effective, Filterset, Forward, Inputs, Layer,
    LimitsMechanism, Net, Period, Pid, Sys, TestId, TestThreads, VarName, package_graph,
};
use crate::destination::Destination;
use crate::exit_code::{self, Failure};
use crate::launch::helper::{Helper, HelperError};
use crate::launch::interrupt;
use crate::launch::pool::{Dispatch, Event, Next, Pool};
use crate::sandbox::{self, CAPTURE_LIMIT, Listed, SandboxOptions};

/// Everything discovered: the build, the helpers, every binary's test list, and the
/// configuration the run resolves each test's settings from.
pub struct Session {
    pub build: Build,
    pub pool: Pool,
    pub listings: Vec<Listing>,
    /// The sandbox of the profile's own settings, which binaries are listed in.
    pub sandbox: SandboxOptions,
    pub settings: Settings,
    pub interrupted: Arc<AtomicBool>,
    /// The archive the tests came from, when they were not built here.
    pub archive: Option<ArchiveSource>,
}

/// An unpacked archive; a temporary unpacking is removed when this is dropped.
pub struct ArchiveSource {
    /// `sha256:<hex>` of the archive file.
    pub digest: String,
    _unpacked: Option<tempfile::TempDir>,
}

/// A binary's tests as listed, with which of them are `#[ignore]`d.
pub struct Listing {
    pub binary: Arc<TestBinary>,
    pub tests: Vec<ListedTest>,
    pub ignored: BTreeSet<String>,
}

pub use crate::cargo::archive::lists::{ListedTest, TestKind};

impl From<BuildError> for Failure {
    fn from(error: BuildError) -> Failure {
        let code = match error {
            // Cargo itself refused: the same problem `cargo test` would have.
            BuildError::BuildFailed { .. } | BuildError::Metadata(_) => exit_code::BUILD_FAILED,
            BuildError::Config(_) | BuildError::NoProject { .. } => exit_code::USAGE,
            _ => exit_code::SETUP_FAILED,
        };
        Failure::new(code, error)
    }
}

impl From<ArchiveError> for Failure {
    fn from(error: ArchiveError) -> Failure {
        let code = match error {
            ArchiveError::Write { .. } | ArchiveError::Destination { .. } => {
                exit_code::SETUP_FAILED
            }
            _ => exit_code::USAGE,
        };
        Failure::new(code, error)
    }
}

/// The loaded configuration: the profile with its filtersets compiled, the `-E`
/// expressions, and the run's own settings (the profile's, without overrides).
pub struct Settings {
    pub profile: CompiledProfile<'static>,
    pub filtersets: Vec<Filterset>,
    pub run: Effective,
    /// How many tests run at once.
    pub threads: usize,
}

impl Settings {
    /// Whether the `-E` expressions (or without any, the default filter) select a test.
    pub fn selects(&self, binary: &TestBinary, name: &str) -> bool {
        self.profile
            .selects(&self.filtersets, &test_id(binary, name))
    }

    /// One test's effective settings.
    pub fn test(&self, binary: &TestBinary, name: &str) -> Effective {
        self.profile.test_settings(&test_id(binary, name))
    }
}

/// The names a filterset matches a test by.
pub fn test_id<'a>(binary: &'a TestBinary, name: &'a str) -> TestId<'a> {
    TestId {
        package_id: &binary.package_id,
        binary_id: &binary.id,
        binary_kind: &binary.kind,
        binary_name: &binary.target_name,
        test_name: name,
    }
}

/// What a command asks discovery for.
pub struct Request<'a> {
    pub cargo: &'a CargoOptions,
    /// `--archive-file` and its companions: run an archive's tests instead of building.
    pub archive: &'a ArchiveArgs,
    pub config: &'a ConfigArgs,
    /// Settings given as flags: the command line's layer of the configuration.
    pub flags: Layer,
    /// `-E` expressions.
    pub filtersets: &'a [String],
    /// Helpers to start, where the command knows better than the settings (a shell: 1).
    pub jobs: Option<usize>,
    /// The command writes the run's reports (`run`): a `report-json` or `junit.path` that
    /// cannot be written, a flag's or a configuration's, is a usage error before the build.
    pub reports: bool,
}

/// The session of a command whose only settings flags are the sandbox's: `list`, `shell`,
/// `show-config`.
pub fn discover_with_sandbox_flags(
    cargo: &CargoOptions,
    archive: &ArchiveArgs,
    config: &ConfigArgs,
    sandbox: &SandboxArgs,
    filtersets: &[String],
    jobs: Option<usize>,
) -> Result<Session, Failure> {
    discover(&Request {
        cargo,
        archive,
        config,
        flags: sandbox_flags(sandbox)?,
        filtersets,
        jobs,
        reports: false,
    })
}

/// The command line's layer from the sandbox flags that `run`, `list` and `shell` share.
pub fn sandbox_flags(args: &SandboxArgs) -> Result<Layer, Failure> {
    let usage = |e: String| Failure::new(exit_code::USAGE, e);
    let mut layer = Layer {
        timeout: args.timeout.map(Period),
        net: args.net.map(|n| match n {
            NetArg::Loopback => Net::Loopback,
            NetArg::None => Net::None,
            NetArg::Host => Net::Host,
        }),
        sys: args.sys.map(|s| match s {
            SysArg::None => Sys::None,
            SysArg::Sandbox => Sys::Sandbox,
            SysArg::Host => Sys::Host,
        }),
        pid: args.pid.map(|p| match p {
            PidArg::Sandbox => Pid::Sandbox,
            PidArg::Host => Pid::Host,
        }),
        tmpfs_size: args.limits.tmpfs_size.map(Bytes),
        memory_max: args.limits.memory_max.map(Bytes),
        pids_max: args.limits.pids_max.map(|n| {
            NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
        }),
        cpu_max: args
            .limits
            .cpu_max
            .map(|millis| CpuMax(millis as f64 / 1000.0)),
        toolchain: args.no_toolchain.then_some(false),
        writable_source: args.writable_source.then_some(true),
        net_admin: args.net_admin.then_some(true),
        pass_credentials: args.pass_credentials.then_some(true),
        nesting: args.nesting,
        limits_mechanism: args.limits.limits_mechanism.map(|m| match m {
            MechanismArg::Auto => LimitsMechanism::Auto,
            MechanismArg::CgroupV2 => LimitsMechanism::CgroupV2,
            MechanismArg::CgroupV1 => LimitsMechanism::CgroupV1,
            MechanismArg::Fallback => LimitsMechanism::Fallback,
        }),
        ..Layer::default()
    };
    let binds = |values: &[String], flag: &str| -> Result<Option<Vec<Bind>>, Failure> {
        let binds = values
            .iter()
            .map(|v| Bind::parse(v).map_err(|e| usage(format!("{flag} {v}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!binds.is_empty()).then_some(binds))
    };
    layer.bind_ro = binds(&args.bind, "--bind")?;
    layer.bind_rw = binds(&args.bind_rw, "--bind-rw")?;
    if !args.forward.is_empty() {
        layer.forward = Some(args.forward.iter().copied().map(Forward).collect());
    }
    if !args.forward_unix.is_empty() {
        layer.forward_unix = Some(args.forward_unix.iter().map(PathBuf::from).collect());
    }
    check_env(&args.env).map_err(|e| usage(format!("{e:#}")))?;
    let (set, pass): (Vec<&String>, Vec<&String>) = args.env.iter().partition(|e| e.contains('='));
    if !pass.is_empty() {
        layer.env_pass = Some(pass.iter().map(|k| VarName(k.to_string())).collect());
    }
    if !set.is_empty() {
        layer.env = Some(
            set.iter()
                .filter_map(|e| e.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    Ok(layer)
}

/// A configuration mistake, rendered with its source, as a usage failure.
pub fn config_failure(error: &dyn miette::Diagnostic) -> Failure {
    let colour = anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never;
    let text = crate::config::render(error, colour);
    Failure::new(
        exit_code::USAGE,
        text.trim_start_matches(['\n', ' ', '×']).trim_end(),
    )
}

/// Reads the configuration against the workspace `metadata` describes, and compiles the
/// profile's filtersets and the `-E` expressions. `deps()` and `rdeps()` need every
/// dependency resolved: only when an expression uses them is `cargo metadata` run again
/// with the dependencies, which is several times slower.
fn load_settings(
    request: &Request<'_>,
    metadata: &mut cargo_metadata::Metadata,
    has_dependencies: bool,
) -> Result<Settings, Failure> {
    let root = metadata.workspace_root.clone().into_std_path_buf();
    let mut inputs =
        Inputs::from_process(&root, request.flags.clone(), request.config.profile.clone());
    inputs.workspace_config = request.config.config_file.clone();
    // One configuration per process, which every test of the run reads from.
    let config: &'static Config = Box::leak(Box::new(
        Config::load(inputs).map_err(|e| config_failure(&e))?,
    ));
    let profile = config.profile().map_err(|e| config_failure(&e))?;
    let uses_deps = |e: &str| e.contains("deps(");
    if !has_dependencies
        && (request.filtersets.iter().any(|e| uses_deps(e))
            || config.expressions().into_iter().any(uses_deps))
    {
        *metadata = build::metadata(request.cargo, true)?;
    }
    let graph = package_graph(metadata).map_err(|e| {
        Failure::new(
            exit_code::SETUP_FAILED,
            format!("cannot read cargo's package graph: {e}"),
        )
    })?;
    let run = profile.settings();
    let profile = profile.compile(&graph).map_err(|e| config_failure(&e))?;
    let filtersets = request
        .filtersets
        .iter()
        .map(|e| {
            profile
                .parse_filter(e, &graph)
                .map_err(|e| config_failure(&e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let threads = match request.jobs {
        Some(jobs) => jobs,
        None => test_threads(run.test_threads.as_ref().map(|t| t.value)),
    };
    Ok(Settings {
        profile,
        filtersets,
        run,
        threads,
    })
}

/// The run's report paths, checked before the build so that a bad one costs nothing. One
/// inside the target directory is checked once that exists, after the build
/// ([`Destination::chosen`]).
fn check_reports(run: &Effective, target_dir: &std::path::Path) -> Result<(), Failure> {
    let reports = [
        ("report-json", &run.report_json),
        ("junit.path", &run.junit.path),
    ];
    for (key, setting) in reports {
        let Some(setting) = setting else { continue };
        let destination = Destination::chosen(&setting.value, target_dir);
        if let Destination::Given(_) = destination {
            destination.check().map_err(|e| {
                Failure::new(
                    exit_code::USAGE,
                    format!("{e} (`{key}`, set by {})", setting.source),
                )
            })?;
        }
    }
    Ok(())
}

/// A forced limits mechanism the host lacks is a usage error; a limit it cannot enforce
/// is said once, on stderr.
pub fn warn_unenforced(limits: &isotest_runtime::Limits) -> Result<(), Failure> {
    let names = isotest_runtime::limits::check(limits)
        .map_err(|e| Failure::new(exit_code::USAGE, format!("{e:#}")))?;
    for name in names {
        let key = name.trim_end_matches("_millis").replace('_', "-");
        eprintln!(
            "warning: `{key}` is not enforced on this host (no cgroup gives it); `cargo isotest doctor` says how to get cgroup v2"
        );
    }
    Ok(())
}

/// nextest's `test-threads`: a count, or below 0 that many fewer than the CPUs.
fn test_threads(setting: Option<TestThreads>) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    match setting {
        Some(TestThreads::Count(n)) if n > 0 => n as usize,
        Some(TestThreads::Count(n)) => cpus.saturating_sub(n.unsigned_abs() as usize).max(1),
        Some(TestThreads::NumCpus) | None => cpus,
    }
}

/// Reads the configuration, probes the host, builds, starts the helpers and lists every
/// binary in a sandbox. Nothing is built with a broken configuration.
pub fn discover(request: &Request<'_>) -> Result<Session, Failure> {
    // An archive brings its own metadata, with the dependencies, and its build.
    let (mut metadata, build, archive, recorded) = match &request.archive.archive_file {
        None => (build::metadata(request.cargo, false)?, None, None, None),
        Some(file) => {
            let (metadata, build, source, recorded) = unpack(file, request.archive)?;
            (metadata, Some(build), Some(source), Some(recorded))
        }
    };
    let settings = load_settings(request, &mut metadata, archive.is_some())?;
    if request.reports {
        let target_dir = match &build {
            Some(build) => build.target_dir.clone(),
            None => build::target_dir(request.cargo, &metadata),
        };
        check_reports(&settings.run, &target_dir)?;
    }
    let mut options = SandboxOptions::from_settings(&settings.run)
        .map_err(|e| Failure::new(exit_code::USAGE, format!("{e:#}")))?;
    warn_unenforced(&options.limits)?;
    if !crate::host::check() {
        return Err(Failure::new(
            exit_code::NO_SANDBOX,
            "no sandbox can be created on this host",
        ));
    }
    let build = match build {
        Some(build) => build,
        None => build::build(request.cargo, &metadata)?,
    };
    // Before anything is written there (scrubbed credentials, the report): a test of an
    // earlier run may have planted a symlink in the runner's own directory.
    Destination::own_report(&build.target_dir)
        .check()
        .map_err(|e| Failure::new(exit_code::SETUP_FAILED, e))?;
    let pool = start_helpers(&build, &mut options, settings.threads)?;
    let interrupted = interrupt::watch(pool.stop_flag(), pool.pids()).map_err(|e| {
        Failure::new(
            exit_code::SETUP_FAILED,
            format!("cannot watch for Ctrl-C: {e}"),
        )
    })?;
    let listings = list_tests(&build, &pool, &options, recorded.unwrap_or_default())?;
    Ok(Session {
        build,
        pool,
        listings,
        sandbox: options,
        settings,
        interrupted,
        archive,
    })
}

/// What listing and running the binaries of `build` need on this host: the toolchain
/// bound into their sandboxes, `CARGO_TARGET_TMPDIR`, and `threads` helpers.
fn start_helpers(
    build: &Build,
    options: &mut SandboxOptions,
    threads: usize,
) -> Result<Pool, Failure> {
    options.add_toolchain();
    let tmpdir = sandbox::target_tmpdir(build);
    std::fs::create_dir_all(&tmpdir).map_err(|e| {
        Failure::new(
            exit_code::SETUP_FAILED,
            format!("cannot create {}: {e}", tmpdir.display()),
        )
    })?;
    Pool::start(threads).map_err(|e| {
        Failure::new(
            exit_code::SETUP_FAILED,
            format!("cannot start the sandbox helpers: {e}"),
        )
    })
}

/// Where `cargo isotest archive` lists the binaries whose lists it records: the sandbox a
/// run lists them in, with the workspace's default profile, on helpers started from here.
pub struct Lister<'b> {
    build: &'b Build,
    options: SandboxOptions,
    pool: Pool,
}

impl<'b> Lister<'b> {
    /// Checks that the host can sandbox and starts the helpers; must be called while the
    /// process is still single-threaded. `None` when this host cannot list (it cannot
    /// sandbox, or the configuration is broken), said on stderr: the archive is made
    /// without lists, and each run lists for itself.
    pub fn start(
        cargo: &CargoOptions,
        build: &'b Build,
        metadata: &mut cargo_metadata::Metadata,
    ) -> Result<Option<Lister<'b>>, Failure> {
        let request = Request {
            cargo,
            archive: &ArchiveArgs::default(),
            config: &ConfigArgs::default(),
            flags: Layer::default(),
            filtersets: &[],
            jobs: None,
            reports: false,
        };
        let mut start = || -> Result<Lister<'b>, String> {
            let settings = load_settings(&request, metadata, true).map_err(|f| f.message)?;
            let mut options =
                SandboxOptions::from_settings(&settings.run).map_err(|e| format!("{e:#}"))?;
            crate::host::probe().map_err(|e| format!("this host cannot create sandboxes: {e}"))?;
            let pool =
                start_helpers(build, &mut options, settings.threads).map_err(|f| f.message)?;
            Ok(Lister {
                build,
                options,
                pool,
            })
        };
        let lister = match start() {
            Ok(lister) => lister,
            Err(why) => {
                unlisted(&why);
                return Ok(None);
            }
        };
        interrupt::watch(lister.pool.stop_flag(), lister.pool.pids()).map_err(|e| {
            Failure::new(
                exit_code::SETUP_FAILED,
                format!("cannot watch for Ctrl-C: {e}"),
            )
        })?;
        Ok(Some(lister))
    }

    /// The lists of the binaries `record` accepts, by binary id; none when one of them
    /// cannot be listed (said on stderr), as a run from the archive would fail to list it
    /// too and say why.
    pub fn list(
        &self,
        record: impl Fn(&TestBinary) -> bool,
    ) -> Result<BTreeMap<String, TestList>, Failure> {
        let spec = |binary: &TestBinary, listed| {
            sandbox::list_spec(self.build, binary, &self.options, listed)
        };
        let binaries = self.build.binaries.iter().filter(|b| record(b));
        match list_in_sandboxes(binaries, spec, &self.pool) {
            Ok(lists) => Ok(lists),
            Err(failure) if failure.code == exit_code::INTERRUPTED => Err(failure),
            Err(failure) => {
                unlisted(&failure.message);
                Ok(BTreeMap::new())
            }
        }
    }
}

fn unlisted(why: &str) {
    anstream::eprintln!(
        "warning: the archive records no test lists ({why}); each run from it lists its binaries"
    );
}

/// The build of an archive, unpacked where `--extract-to` says or into a temporary dir,
/// with the cargo metadata it was built with (paths remapped), which the configuration's
/// filtersets are compiled against, and the test lists it recorded.
fn unpack(
    file: &std::path::Path,
    args: &ArchiveArgs,
) -> Result<
    (
        cargo_metadata::Metadata,
        Build,
        ArchiveSource,
        BTreeMap<String, TestList>,
    ),
    Failure,
> {
    let (dest, temporary) = match &args.extract_to {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("isotest-archive-")
                .tempdir()
                .map_err(|e| {
                    Failure::new(
                        exit_code::SETUP_FAILED,
                        format!("cannot create a directory to unpack the archive into: {e}"),
                    )
                })?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    // rustc runs while the archive unpacks, in the checkout whose toolchain file it follows.
    let sysroot = args
        .workspace_remap
        .as_deref()
        .map(|dir| RustcPrint::start("sysroot", dir, None));
    // The digest on a thread of its own while the archive unpacks, joined before the host
    // check, which needs this process single-threaded again.
    let (digest, unpacked) = std::thread::scope(|scope| {
        let digest = scope.spawn(|| archive::digest(file));
        let unpacked = archive::unpack(file, &dest, args.workspace_remap.as_deref());
        (digest.join().expect("hashing does not panic"), unpacked)
    });
    let (digest, unpacked) = (digest?, unpacked?);
    anstream::eprintln!(
        "{:>12} {} files of {} (built in {}, target {}) into {}",
        "Unpacked",
        unpacked.files,
        file.display(),
        unpacked.original_workspace_root,
        unpacked.original_target_dir,
        unpacked.dir
    );
    let sysroot = sysroot.unwrap_or_else(|| {
        RustcPrint::start("sysroot", unpacked.workspace_root.as_std_path(), None)
    });
    let build = archived::build(&unpacked, sysroot)?;
    Ok((
        unpacked.cargo_metadata,
        build,
        ArchiveSource {
            digest,
            _unpacked: temporary,
        },
        unpacked.recorded,
    ))
}

/// Every binary's tests: those `recorded` has (by binary id) from there, the others
/// listed inside their sandboxes. The first binary is listed in every case: its sandbox
/// is where a `--bind` that cannot be made stops the run, before any test.
fn list_tests(
    build: &Build,
    pool: &Pool,
    options: &SandboxOptions,
    mut recorded: BTreeMap<String, TestList>,
) -> Result<Vec<Listing>, Failure> {
    // A spec the options made impossible (HOME over /usr or the target directory) is the
    // user's to fix, and the same for every binary: say so once, before any sandbox.
    if let Some(binary) = build.binaries.first() {
        sandbox::list_spec(build, binary, options, Listed::Tests)
            .validate()
            .map_err(|e| Failure::new(exit_code::USAGE, e))?;
    }
    let listed = list_in_sandboxes(
        build
            .binaries
            .iter()
            .enumerate()
            .filter(|(index, b)| *index == 0 || !recorded.contains_key(&b.id))
            .map(|(_, b)| b),
        |binary, listed| sandbox::list_spec(build, binary, options, listed),
        pool,
    )?;
    recorded.extend(listed);
    Ok(build
        .binaries
        .iter()
        .map(|binary| {
            let list = recorded.remove(&binary.id).unwrap_or_default();
            Listing {
                binary: binary.clone(),
                tests: list.tests,
                ignored: list.ignored,
            }
        })
        .collect())
}

/// Lists each binary's tests and ignored tests, in one sandbox where the host has a
/// [`sandbox::LIST_SHELL`] (two otherwise), as `spec` gives it, and returns their lists by
/// binary id.
pub fn list_in_sandboxes<'b>(
    binaries: impl Iterator<Item = &'b Arc<TestBinary>>,
    spec: impl Fn(&TestBinary, Listed) -> Spec,
    pool: &Pool,
) -> Result<BTreeMap<String, TestList>, Failure> {
    let each: &[Listed] = match std::path::Path::new(sandbox::LIST_SHELL).is_file() {
        true => &[Listed::Both],
        false => &[Listed::Tests, Listed::Ignored],
    };
    let jobs: Vec<(&TestBinary, Listed, Spec)> = binaries
        .flat_map(|binary| {
            each.iter()
                .map(|&listed| (&**binary, listed, spec(binary, listed)))
        })
        .collect();
    let mut queue = Queue::new(jobs.len());
    pool.run(
        |helper: &mut Helper, &index: &usize| list_output(helper, &jobs[index].2),
        &mut queue,
    );
    if pool.stopped() {
        return Err(Failure::new(
            exit_code::INTERRUPTED,
            "interrupted while listing tests",
        ));
    }
    let mut lists: BTreeMap<String, TestList> = BTreeMap::new();
    for ((binary, listed, _), output) in jobs.iter().zip(queue.results) {
        let Some(output) = output else { continue };
        let text = output.map_err(|(code, e)| {
            Failure::new(
                code,
                format!("cannot list the tests of `{}`: {e}", binary.id),
            )
        })?;
        let parse = |text: &str| {
            parse_list(&binary.id, text).map_err(|e| Failure::new(exit_code::LIST_FAILED, e))
        };
        let names = |tests: Vec<ListedTest>| tests.into_iter().map(|t| t.name).collect();
        let list = lists.entry(binary.id.clone()).or_default();
        match listed {
            Listed::Tests => list.tests = parse(&text)?,
            Listed::Ignored => list.ignored = names(parse(&text)?),
            Listed::Both => {
                let (tests, ignored) = split_listings(&text).ok_or_else(|| {
                    Failure::new(
                        exit_code::LIST_FAILED,
                        format!(
                            "cannot list the tests of `{}`: its listing has no line `{}` between \
                             its tests and its ignored ones; its output was:\n{text}",
                            binary.id,
                            sandbox::LIST_BOUNDARY
                        ),
                    )
                })?;
                list.tests = parse(tests)?;
                list.ignored = names(parse(ignored)?);
            }
        }
    }
    Ok(lists)
}

/// The two listings of [`Listed::Both`]: the tests, then the ignored ones.
fn split_listings(text: &str) -> Option<(&str, &str)> {
    // A listing on a terminal (a `tty` profile) ends its lines with "\r\n".
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        if line.ends_with('\n') && line.trim_end_matches(['\n', '\r']) == sandbox::LIST_BOUNDARY {
            let tests = text[..start].trim_end_matches(['\n', '\r']);
            return Some((tests, &text[end..]));
        }
        start = end;
    }
    None
}

fn list_output(helper: &mut Helper, spec: &Spec) -> Result<String, (i32, String)> {
    let outcome = match helper.run(spec, CAPTURE_LIMIT, None) {
        Ok(outcome) => outcome,
        Err(HelperError::Sandbox {
            setup: Some(setup), ..
        }) if setup.is_spec_problem() => {
            return Err((exit_code::USAGE, setup_problem(&setup)));
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
    fn next(&mut self) -> Next<usize> {
        let index = self.next;
        if index < self.results.len() {
            self.next += 1;
            Next::Job(index)
        } else {
            Next::Done
        }
    }

    fn on_event(&mut self, event: Event<usize, R>) {
        if let Event::Finished(index, result) = event {
            self.results[index] = Some(result);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot parse the test list of `{binary_id}` (line {line}: {text:?}); its output was:\n{output}"
)]
pub struct ListError {
    pub binary_id: String,
    pub line: usize,
    pub text: String,
    pub output: String,
}

/// Parses `--list --format terse` output: `name: test` and `name: bench` lines.
fn parse_list(binary_id: &str, output: &str) -> Result<Vec<ListedTest>, ListError> {
    output
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let parsed = line.rsplit_once(": ").and_then(|(name, kind)| {
                let kind = match kind.trim() {
                    "test" => TestKind::Test,
                    "bench" | "benchmark" => TestKind::Bench,
                    _ => return None,
                };
                Some(ListedTest {
                    name: name.to_string(),
                    kind,
                })
            });
            parsed.ok_or_else(|| ListError {
                binary_id: binary_id.to_string(),
                line: index + 1,
                text: line.to_string(),
                output: output.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_accepts_tests_and_benches() {
        let output = "a::b: test\nweird: name: test\nmimic_bench: bench\nold: benchmark\n\n";
        let tests = parse_list("pkg", output).unwrap();
        let names: Vec<(&str, TestKind)> =
            tests.iter().map(|t| (t.name.as_str(), t.kind)).collect();
        assert_eq!(
            names,
            [
                ("a::b", TestKind::Test),
                ("weird: name", TestKind::Test),
                ("mimic_bench", TestKind::Bench),
                ("old", TestKind::Bench)
            ]
        );
    }

    #[test]
    fn both_listings_split_at_the_boundary_line() {
        let boundary = sandbox::LIST_BOUNDARY;
        let text = format!("a: test\nb: test\n{boundary}\nb: test\n");
        assert_eq!(
            split_listings(&text),
            Some(("a: test\nb: test", "b: test\n"))
        );
        let on_a_terminal = format!("a: test\r\n{boundary}\r\nb: test\r\n");
        assert_eq!(
            split_listings(&on_a_terminal),
            Some(("a: test", "b: test\r\n"))
        );
        let none_at_all = format!("{boundary}\n");
        assert_eq!(split_listings(&none_at_all), Some(("", "")));
        assert_eq!(split_listings("a: test\n"), None);
        let glued = format!("a: test{boundary}\n");
        assert_eq!(
            split_listings(&glued),
            None,
            "the boundary is a line of its own"
        );
    }

    #[test]
    fn list_rejects_what_it_cannot_read_and_names_the_binary() {
        let err = parse_list("pkg::it", "ok: test\n3 tests, 0 benchmarks\n").unwrap_err();
        assert_eq!(err.line, 2);
        let message = err.to_string();
        assert!(
            message.contains("pkg::it") && message.contains("3 tests, 0 benchmarks"),
            "{message}"
        );
    }
}
