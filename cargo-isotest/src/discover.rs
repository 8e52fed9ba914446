//! Discover: the session every command that runs tests starts with. It checks that the
//! host can sandbox, builds the tests, starts the sandbox helpers, and lists each binary's
//! tests, each listing inside the binary's own sandbox.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use isotest_runtime::Spec;

use crate::args::{ArchiveArgs, SandboxArgs, setup_problem};
use crate::cargo::CargoOptions;
use crate::cargo::archive::{self, ArchiveError};
use crate::cargo::archived;
use crate::cargo::build::{self, Build, BuildError, TestBinary};
use crate::destination::Destination;
use crate::exit_code::{self, Failure};
use crate::launch::helper::{Helper, HelperError};
use crate::launch::interrupt;
use crate::launch::pool::{Dispatch, Event, Pool};
use crate::sandbox::{self, CAPTURE_LIMIT, SandboxOptions};

/// Everything discovered: the build, the helpers, and every binary's test list.
pub struct Session {
    pub build: Build,
    pub pool: Pool,
    pub listings: Vec<Listing>,
    pub sandbox: SandboxOptions,
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

/// One test as a binary lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedTest {
    pub name: String,
    pub kind: TestKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    Test,
    Bench,
}

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

/// Probes the host, builds (or unpacks `archive`'s file), starts `jobs` helpers
/// (default: one per CPU) and lists every binary in a sandbox.
pub fn discover(
    cargo: &CargoOptions,
    archive: &ArchiveArgs,
    args: &SandboxArgs,
    jobs: Option<usize>,
) -> Result<Session, Failure> {
    let mut options = SandboxOptions::from_args(args)
        .map_err(|e| Failure::new(exit_code::USAGE, format!("{e:#}")))?;
    if !crate::host::check() {
        return Err(Failure::new(
            exit_code::NO_SANDBOX,
            "no sandbox can be created on this host",
        ));
    }
    let (build, archive) = match &archive.archive_file {
        None => (build::build(cargo)?, None),
        Some(file) => {
            let (build, source) = unpack(file, archive)?;
            (build, Some(source))
        }
    };
    // Before anything is written there (scrubbed credentials, the report): a test of an
    // earlier run may have planted a symlink in the runner's own directory.
    Destination::own_report(&build.target_dir)
        .check()
        .map_err(|e| Failure::new(exit_code::SETUP_FAILED, e))?;
    options.add_toolchain(args);
    let tmpdir = sandbox::target_tmpdir(&build);
    std::fs::create_dir_all(&tmpdir).map_err(|e| {
        Failure::new(
            exit_code::SETUP_FAILED,
            format!("cannot create {}: {e}", tmpdir.display()),
        )
    })?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = Pool::start(jobs).map_err(|e| {
        Failure::new(
            exit_code::SETUP_FAILED,
            format!("cannot start the sandbox helpers: {e}"),
        )
    })?;
    let interrupted = interrupt::watch(pool.stop_flag(), pool.pids()).map_err(|e| {
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
        archive,
    })
}

/// The build of an archive, unpacked where `--extract-to` says or into a temporary dir.
fn unpack(file: &std::path::Path, args: &ArchiveArgs) -> Result<(Build, ArchiveSource), Failure> {
    let digest = archive::digest(file)?;
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
    let unpacked = archive::unpack(file, &dest, args.workspace_remap.as_deref())?;
    anstream::eprintln!(
        "{:>12} {} files of {} (built in {}, target {}) into {}",
        "Unpacked",
        unpacked.files,
        file.display(),
        unpacked.original_workspace_root,
        unpacked.original_target_dir,
        unpacked.dir
    );
    let build = archived::build(&unpacked)?;
    Ok((
        build,
        ArchiveSource {
            digest,
            _unpacked: temporary,
        },
    ))
}

/// Lists every binary twice, all tests and ignored ones, each inside a sandbox.
fn list_tests(
    build: &Build,
    pool: &Pool,
    options: &SandboxOptions,
) -> Result<Vec<Listing>, Failure> {
    let jobs: Vec<(usize, bool, Spec)> = build
        .binaries
        .iter()
        .enumerate()
        .flat_map(|(index, binary)| {
            [false, true].map(|ignored| {
                (
                    index,
                    ignored,
                    sandbox::list_spec(build, binary, options, ignored),
                )
            })
        })
        .collect();
    // A spec the options made impossible (HOME over /usr or the target directory) is the
    // user's to fix, and the same for every binary: say so once, before any sandbox.
    if let Some((_, _, spec)) = jobs.first() {
        spec.validate()
            .map_err(|e| Failure::new(exit_code::USAGE, e))?;
    }
    let mut queue = Queue::new(jobs.len());
    pool.run(
        |helper: &mut Helper, &index: &usize| list_output(helper, &jobs[index].2),
        &mut queue,
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
    for ((index, ignored, _), output) in jobs.iter().zip(queue.results) {
        let listing = &mut listings[*index];
        let Some(output) = output else { continue };
        let text = output.map_err(|(code, e)| {
            Failure::new(
                code,
                format!("cannot list the tests of `{}`: {e}", listing.binary.id),
            )
        })?;
        let tests = parse_list(&listing.binary.id, &text)
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
