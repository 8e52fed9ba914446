//! The reruns themselves: one sandbox per failing test and relaxation, through the pool,
//! until one passes.

use std::path::{Path, PathBuf};

use isotest_runtime::{Outcome, Spec};

use super::{
    COPY_AT_MOST, HostFacts, NOT_COPIED, ORDER, RERUN_CAPTURE, Relaxation, Tried, WritableCopy,
    next_relaxation, skip_reason, verdict,
};
use crate::launch::helper::{Helper, HelperError};
use crate::launch::pool::{Dispatch, Event, Next, Pool};
use crate::plan::Plan;
use crate::runner::events::{Reporter, RunEvent};
use crate::runner::policy::TestPolicy;
use crate::runner::record::{TestOutcome, TestRecord};

/// Reruns every failed test of `records` once per relaxation until one passes, and
/// records what that says: in the record's explanation and its hint.
pub fn explain_failures(
    pool: &Pool,
    plan: &Plan,
    records: &mut [TestRecord],
    host: &HostFacts,
    scratch_in: &Path,
    reporter: &mut dyn Reporter,
) {
    let (tests, specs) = (&plan.tests, &plan.specs);
    let ran = records
        .iter()
        .filter(|r| !matches!(r.last.outcome, TestOutcome::Ignored | TestOutcome::NotRun))
        .count();
    let failed: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].is_failure() && specs[i].is_some())
        .collect();
    if failed.is_empty() {
        return;
    }
    if let Some(reason) = skip_reason(failed.len(), ran) {
        reporter.report(RunEvent::Note(&reason));
        return;
    }
    reporter.report(RunEvent::Note(&format!(
        "--explain: rerunning {} failed test(s) with each sandbox rule relaxed in turn",
        failed.len()
    )));
    let _ = std::fs::create_dir_all(scratch_in);
    let scratch = tempfile::Builder::new()
        .prefix("explain")
        .tempdir_in(scratch_in)
        .ok();
    let mut queue = Reruns {
        tests: failed
            .iter()
            .map(|&index| {
                let spec = specs[index].as_ref().expect("only run tests failed");
                let package = &tests[index].binary.manifest_dir;
                // Whether a writable copy can be made is known only once it is made.
                let stand_in = WritableCopy {
                    dir: PathBuf::new(),
                    left_out: Vec::new(),
                };
                let applicable = ORDER
                    .iter()
                    .copied()
                    .filter(|r| r.apply(spec, host, package, Some(&stand_in)).is_some())
                    .filter(|r| *r != Relaxation::WritableSource || scratch.is_some())
                    .collect();
                Explaining {
                    index,
                    applicable,
                    tried: Vec::new(),
                    running: false,
                    copy: None,
                }
            })
            .collect(),
        plan,
        host,
        scratch: scratch.as_ref().map(|dir| dir.path()),
    };
    pool.run(
        |helper: &mut Helper, job: &Rerun| helper.run(&job.spec, RERUN_CAPTURE, None),
        &mut queue,
    );
    if pool.stopped() {
        // Interrupted: the reruns that did not run would read as failures.
        reporter.report(RunEvent::Note(
            "--explain interrupted: no explanation recorded",
        ));
        return;
    }
    for explaining in queue.tests {
        let index = explaining.index;
        let spec = specs[index].as_ref().expect("only run tests failed");
        let package = &tests[index].binary.manifest_dir;
        let output = format!(
            "{}{}",
            records[index].last.output.stdout.lossy(),
            records[index].last.output.stderr.lossy()
        );
        let explanation = verdict(explaining.tried, |r| {
            r.meaning(spec, host, package, &output)
        });
        let record = &mut records[index];
        record.last.hint = Some(match record.last.hint.take() {
            Some(hint) => format!("{}; {hint}", explanation.message),
            None => explanation.message.clone(),
        });
        record.explanation = Some(explanation);
        reporter.report(RunEvent::Explained(record));
    }
}

/// A copy of `package` (its `target` and `.git` left out) at `to`, for a rerun to write
/// into; `None` when it cannot be made or is too large to be worth it.
fn writable_copy(package: &Path, to: &Path) -> Option<WritableCopy> {
    /// Copies `from` into `to`; at the top, the directories of [`NOT_COPIED`] go to
    /// `left_out` instead.
    fn copy(
        from: &Path,
        to: &Path,
        budget: &mut u64,
        mut left_out: Option<&mut Vec<PathBuf>>,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let (source, target) = (entry.path(), to.join(entry.file_name()));
            if kind.is_dir() {
                match left_out.as_deref_mut() {
                    Some(list) if NOT_COPIED.iter().any(|n| entry.file_name() == *n) => {
                        list.push(source)
                    }
                    _ => copy(&source, &target, budget, None)?,
                }
            } else if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
            } else if kind.is_file() {
                *budget = budget
                    .checked_sub(entry.metadata()?.len())
                    .ok_or_else(|| std::io::Error::other("the package is too large to copy"))?;
                std::fs::copy(&source, &target)?;
            }
        }
        Ok(())
    }
    let mut budget = COPY_AT_MOST;
    let mut left_out = Vec::new();
    copy(package, to, &mut budget, Some(&mut left_out)).ok()?;
    Some(WritableCopy {
        dir: to.to_path_buf(),
        left_out,
    })
}

/// One rerun: which of the tests being explained, with what relaxed, in which sandbox.
#[derive(Clone)]
struct Rerun {
    test: usize,
    relaxation: Relaxation,
    spec: Spec,
}

/// One failed test being explained: the relaxations that apply to it, those tried, and
/// the writable copy of its package while a rerun uses it.
struct Explaining {
    index: usize,
    applicable: Vec<Relaxation>,
    tried: Vec<Tried>,
    running: bool,
    copy: Option<WritableCopy>,
}

/// Hands out each test's reruns one at a time, in order, until one passes: different
/// tests' reruns run in parallel. A package is copied only for its writable-source
/// rerun, and the copy is removed as soon as that rerun ends.
struct Reruns<'a> {
    tests: Vec<Explaining>,
    plan: &'a Plan,
    host: &'a HostFacts,
    scratch: Option<&'a Path>,
}

impl Reruns<'_> {
    fn rerun_of(&mut self, test: usize) -> Option<Rerun> {
        let explaining = &mut self.tests[test];
        let spec = self.plan.specs[explaining.index].as_ref()?;
        let package = &self.plan.tests[explaining.index].binary.manifest_dir;
        loop {
            let relaxation = next_relaxation(&explaining.applicable, &explaining.tried)?;
            if relaxation == Relaxation::WritableSource {
                let to = self.scratch?.join(explaining.index.to_string());
                explaining.copy = writable_copy(package, &to);
                if explaining.copy.is_none() {
                    let _ = std::fs::remove_dir_all(&to);
                    explaining.applicable.retain(|r| *r != relaxation);
                    continue;
                }
            }
            let relaxed = relaxation.apply(spec, self.host, package, explaining.copy.as_ref())?;
            return Some(Rerun {
                test,
                relaxation,
                spec: crate::sandbox::explain_spec(&relaxed, relaxation.id()),
            });
        }
    }
}

impl Dispatch<Rerun, Result<Outcome, HelperError>> for Reruns<'_> {
    fn next(&mut self) -> Next<Rerun> {
        let idle: Vec<usize> = (0..self.tests.len())
            .filter(|&t| !self.tests[t].running)
            .collect();
        let Some(rerun) = idle.into_iter().find_map(|test| self.rerun_of(test)) else {
            return Next::Done;
        };
        self.tests[rerun.test].running = true;
        Next::Job(rerun)
    }

    fn on_event(&mut self, event: Event<Rerun, Result<Outcome, HelperError>>) {
        if let Event::Finished(job, result) = event {
            let explaining = &mut self.tests[job.test];
            let name = &self.plan.tests[explaining.index].name;
            let record = verdict::attempt(name, 1, result, &TestPolicy::DEFAULT);
            explaining.running = false;
            if let Some(copy) = explaining.copy.take() {
                let _ = std::fs::remove_dir_all(copy.dir);
            }
            explaining.tried.push(Tried {
                relaxation: job.relaxation,
                passed: record.outcome == TestOutcome::Passed,
            });
        }
    }
}
