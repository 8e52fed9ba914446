//! `--explain`: which sandbox rule a failing test depends on. Each failing test runs again
//! once per relaxation, in a fixed order, until one makes it pass; what that means, and
//! the hints read from a failure's output alone, are decided here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isotest_runtime::{Mount, Net, Outcome, Pid, Spec, Sys};
use serde::Serialize;

use super::events::{Reporter, RunEvent};
use super::policy::StraysPolicy;
use super::record::{TestOutcome, TestRecord};
use super::verdict;
use crate::launch::helper::{Helper, HelperError};
use crate::launch::pool::{Dispatch, Event, Pool};
use crate::plan::Plan;

/// Bytes of each output stream a rerun keeps: only whether it passed matters.
const RERUN_CAPTURE: usize = 64 << 10;
/// A package directory larger than this is not copied for a writable-source rerun.
const COPY_AT_MOST: u64 = 256 << 20;

/// At most this many failed tests are explained, or a tenth of the run if that is more
/// (Chromium's test launcher stops retrying at the same bound): past it the run is broken
/// as a whole, and reruns would only make it slower.
const EXPLAIN_AT_MOST: usize = 20;

/// One sandbox rule lifted for one rerun.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relaxation {
    /// The host's network (and with it the host's /sys/class/net).
    HostNet,
    /// A private writable copy of the package directory in place of the read-only one.
    WritableSource,
    /// The host's /sys instead of the sandbox's own.
    HostSys,
    /// Every host variable but those named like secrets.
    HostEnv,
    /// The caller's real HOME (read-only) instead of an empty private one, and the toolchain.
    HostHome,
    /// No pid namespace: the host's processes and /proc.
    HostPid,
}

/// The order of the reruns: the commonest and cheapest first, the widest last.
pub const ORDER: &[Relaxation] = &[
    Relaxation::HostNet,
    Relaxation::WritableSource,
    Relaxation::HostSys,
    Relaxation::HostEnv,
    Relaxation::HostHome,
    Relaxation::HostPid,
];

/// A private copy of a package directory for a rerun to write into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritableCopy {
    pub dir: PathBuf,
    /// Paths of the package directory not copied (`target`, `.git`), to show as they are.
    pub left_out: Vec<PathBuf>,
}

/// Directories of a package that a writable copy leaves out: large, and not sources.
const NOT_COPIED: &[&str] = &["target", ".git"];

/// What the reruns need from the host, gathered once.
#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    /// The caller's environment.
    pub env: BTreeMap<String, String>,
    /// The caller's HOME.
    pub home: Option<PathBuf>,
    /// The toolchain paths the default sandbox shows, for a run that hid them.
    pub toolchain: Vec<PathBuf>,
}

impl Relaxation {
    pub fn id(self) -> &'static str {
        match self {
            Relaxation::HostNet => "host-net",
            Relaxation::WritableSource => "writable-source",
            Relaxation::HostSys => "host-sys",
            Relaxation::HostEnv => "host-env",
            Relaxation::HostHome => "host-home",
            Relaxation::HostPid => "host-pid",
        }
    }

    /// The spec of the rerun, or `None` when the test's sandbox already allows this.
    /// `writable_copy` is the private copy of the package directory, for
    /// [`Relaxation::WritableSource`].
    pub fn apply(
        self,
        spec: &Spec,
        host: &HostFacts,
        package_dir: &Path,
        writable_copy: Option<&WritableCopy>,
    ) -> Option<Spec> {
        let mut relaxed = spec.clone();
        match self {
            Relaxation::HostNet if spec.net != Net::Host => relaxed.net = Net::Host,
            Relaxation::WritableSource => {
                let copy = writable_copy?;
                relaxed.mounts.push(Mount::Bind {
                    src: copy.dir.clone(),
                    dst: package_dir.to_path_buf(),
                    writable: true,
                });
                // What the copy left out (the build outputs) stays visible, read-only.
                relaxed
                    .mounts
                    .extend(copy.left_out.iter().map(|path| Mount::Bind {
                        src: path.clone(),
                        dst: path.clone(),
                        writable: false,
                    }));
            }
            Relaxation::HostSys if spec.sys != Sys::Host => relaxed.sys = Sys::Host,
            Relaxation::HostEnv => {
                let added = added_variables(spec, host);
                if added.is_empty() {
                    return None;
                }
                relaxed.env.pass.extend(added);
            }
            Relaxation::HostHome => {
                let home = host.home.as_ref().filter(|h| h.is_dir())?;
                relaxed.mounts.push(Mount::Bind {
                    src: home.clone(),
                    dst: spec.home.clone(),
                    writable: false,
                });
                relaxed.env.set.remove("HOME");
                for path in &host.toolchain {
                    if !relaxed.is_visible(path) {
                        relaxed.mounts.push(Mount::Bind {
                            src: path.clone(),
                            dst: path.clone(),
                            writable: false,
                        });
                    }
                }
            }
            Relaxation::HostPid if spec.pid != Pid::Host => relaxed.pid = Pid::Host,
            _ => return None,
        }
        Some(relaxed)
    }

    /// The sentence a pass with this relaxation earns: what the test needs, and how to
    /// allow it for this test alone. `output` is the failure's, which may name the
    /// variable a test missed.
    pub fn meaning(
        self,
        spec: &Spec,
        host: &HostFacts,
        package_dir: &Path,
        output: &str,
    ) -> String {
        match self {
            Relaxation::HostNet => "passes with --net host: this test needs the host's network \
                 interfaces; allow it per test with net = \"host\""
                .to_string(),
            Relaxation::WritableSource => format!(
                "passes with a writable source tree: this test writes into its package \
                 directory {}; make it write under $CARGO_TARGET_TMPDIR, or allow it per test \
                 with writable-source = true",
                package_dir.display()
            ),
            Relaxation::HostSys => "passes with --sys host: this test reads host facts from \
                 /sys that the sandbox's own read-only view does not show; allow it per test \
                 with sys = \"host\""
                .to_string(),
            Relaxation::HostEnv => {
                let added = added_variables(spec, host);
                let named: Vec<&String> =
                    added.iter().filter(|name| mentions(output, name)).collect();
                if let [name] = named[..] {
                    return format!(
                        "passes with the host's environment: this test reads {name}, which the \
                         sandbox withholds; pass it with --env {name}, or per test with \
                         env-pass = [\"{name}\"]"
                    );
                }
                let shown: Vec<&str> = added.iter().take(8).map(String::as_str).collect();
                let more = added.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!(
                    "passes with the host's environment: this test reads a variable the \
                     sandbox withholds (one of {}{more}); pass it with --env NAME, or per test \
                     with env-pass = [\"NAME\"]",
                    shown.join(", ")
                )
            }
            Relaxation::HostHome => "passes with the host's HOME (read-only) and toolchain: \
                 this test reads files from $HOME; make them visible with --bind PATH, or per \
                 test with bind-ro = [\"PATH\"]"
                .to_string(),
            Relaxation::HostPid => "passes without a pid namespace: this test needs to see \
                 processes beyond its own (process lists, CPU use of other processes); allow \
                 it per test with pid = \"host\" (--pid host), which lets it see and signal \
                 the host's processes"
                .to_string(),
        }
    }
}

/// Whether `text` has `name` as a word of its own, not inside a longer identifier.
fn mentions(text: &str, name: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    text.match_indices(name).any(|(at, _)| {
        !word(text[..at].chars().next_back()) && !word(text[at + name.len()..].chars().next())
    })
}

/// Host variables the sandbox does not already pass or set, secrets left out.
fn added_variables(spec: &Spec, host: &HostFacts) -> Vec<String> {
    host.env
        .keys()
        .filter(|key| !spec.env.pass.contains(key) && !spec.env.set.contains_key(*key))
        .filter(|key| *key != "HOME" && !looks_secret(key))
        .cloned()
        .collect()
}

/// Names that usually hold credentials; never handed to a rerun.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "API_KEY",
        "PRIVATE_KEY",
        "ACCESS_KEY",
        "AUTH",
        "SESSION",
        "COOKIE",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// Whether a run with `failed` failures among `total` tests is explained at all, and if
/// not, why.
pub fn skip_reason(failed: usize, total: usize) -> Option<String> {
    let bound = EXPLAIN_AT_MOST.max(total.div_ceil(10));
    (failed > bound).then(|| {
        format!(
            "--explain skipped: {failed} of {total} tests failed, more than max({EXPLAIN_AT_MOST}, 10%) = {bound}; \
             that many failures are rarely each a sandbox rule"
        )
    })
}

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
        |helper: &mut Helper, job: &Rerun| helper.run(&job.spec, RERUN_CAPTURE),
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
    fn next(&mut self) -> Option<Rerun> {
        let idle: Vec<usize> = (0..self.tests.len())
            .filter(|&t| !self.tests[t].running)
            .collect();
        let rerun = idle.into_iter().find_map(|test| self.rerun_of(test))?;
        self.tests[rerun.test].running = true;
        Some(rerun)
    }

    fn on_event(&mut self, event: Event<Rerun, Result<Outcome, HelperError>>) {
        if let Event::Finished(job, result) = event {
            let explaining = &mut self.tests[job.test];
            let name = &self.plan.tests[explaining.index].name;
            let record = verdict::attempt(name, 1, result, StraysPolicy::Warn);
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

/// What the reruns found for one test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The first relaxation that made it pass; `None` if none did.
    pub relaxation: Option<Relaxation>,
    /// Every rerun, in order, and whether it passed.
    pub tried: Vec<Tried>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tried {
    pub relaxation: Relaxation,
    pub passed: bool,
}

/// The next relaxation to try after `tried`, from those that change the test's sandbox;
/// `None` once one passed or all were tried.
pub fn next_relaxation(applicable: &[Relaxation], tried: &[Tried]) -> Option<Relaxation> {
    if tried.iter().any(|t| t.passed) {
        return None;
    }
    applicable
        .iter()
        .copied()
        .find(|r| !tried.iter().any(|t| t.relaxation == *r))
}

/// The verdict of the reruns: the first pass, or that none passed.
pub fn verdict(tried: Vec<Tried>, meaning: impl Fn(Relaxation) -> String) -> Explanation {
    let relaxation = tried.iter().find(|t| t.passed).map(|t| t.relaxation);
    let message = match relaxation {
        Some(r) => meaning(r),
        None if tried.is_empty() => {
            "--explain found no sandbox rule to relax for this test".to_string()
        }
        None => {
            let ids: Vec<&str> = tried.iter().map(|t| t.relaxation.id()).collect();
            format!(
                "fails with each sandbox rule relaxed on its own ({}): most likely the failure \
                 is the test's own, not the sandbox's, or it needs several rules relaxed at once",
                ids.join(", ")
            )
        }
    };
    Explanation {
        relaxation,
        tried,
        message,
    }
}

/// A hint from a failure's output alone, for the host facts the sandbox hides: /sys paths
/// in errors, missing network interfaces, empty disk lists.
pub fn output_hint(text: &str) -> Option<String> {
    let explain = " Run with --explain to find out which rule the test depends on.";
    if let Some(path) = sys_path(text) {
        let missing = text.contains("No such file or directory") || text.contains("os error 2)");
        let what = if missing {
            format!("the output shows {path} missing")
        } else {
            format!("the output mentions {path}")
        };
        return Some(format!(
            "{what}. In the sandbox /sys is its own read-only view: the sandbox's network \
             interfaces and cgroups, the host's devices; nothing under it is writable. For the \
             host's /sys, pass --sys host (per test: sys = \"host\").{explain}"
        ));
    }
    let lower = text.to_ascii_lowercase();
    let interfaces = [
        "eth0",
        "enp",
        "wlan",
        "ens",
        "docker0",
        "mac address",
        "mac_addr",
    ];
    if text.contains("No such device")
        || text.contains("os error 19)")
        || (lower.contains("network") || lower.contains("interface"))
            && interfaces.iter().any(|i| lower.contains(i))
    {
        return Some(format!(
            "the output mentions a network interface. In the sandbox the only interface is \
             lo; for the host's interfaces, pass --net host (per test: net = \"host\").{explain}"
        ));
    }
    let cpu_of_processes = lower.contains("process") && lower.contains("cpu_usage");
    if cpu_of_processes || lower.contains("no cpu") {
        return Some(format!(
            "the output mentions the CPU use of processes. In the sandbox a test sees only its \
             own processes (a pid namespace of its own, whose pid 1 is the sandbox's init), so \
             no other process's CPU use is visible; for the host's processes, pass --pid host \
             (per test: pid = \"host\").{explain}"
        ));
    }
    if lower.contains("disk") && (lower.contains("is_empty") || lower.contains("no disk")) {
        return Some(format!(
            "the output mentions an empty disk list. The sandbox shows only the disks behind \
             its own mounts, with an unreadable placeholder in /dev for each.{explain}"
        ));
    }
    None
}

/// The first `/sys/...` path in `text`.
fn sys_path(text: &str) -> Option<&str> {
    let start = text
        .match_indices("/sys/")
        .map(|(i, _)| i)
        .find(|&i| i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric())?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || "\"'`),:;".contains(c))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        let mut spec = Spec::new(vec!["/t/bin".into()]);
        spec.env.pass = vec!["PATH".into()];
        spec
    }

    fn host() -> HostFacts {
        HostFacts {
            env: [
                ("PATH", "/usr/bin"),
                ("MY_SETTING", "1"),
                ("GITHUB_TOKEN", "x"),
                ("HOME", "/root"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            home: Some("/".into()),
            toolchain: vec!["/opt/rust".into()],
        }
    }

    #[test]
    fn each_relaxation_changes_only_its_rule() {
        let (spec, host, pkg) = (spec(), host(), Path::new("/w/pkg"));
        let net = Relaxation::HostNet.apply(&spec, &host, pkg, None).unwrap();
        assert_eq!((net.net, net.sys, net.pid), (Net::Host, spec.sys, spec.pid));
        assert_eq!(net.mounts, spec.mounts);
        let sys = Relaxation::HostSys.apply(&spec, &host, pkg, None).unwrap();
        assert_eq!((sys.net, sys.sys), (spec.net, Sys::Host));
        let pid = Relaxation::HostPid.apply(&spec, &host, pkg, None).unwrap();
        assert_eq!(pid.pid, Pid::Host);
        let env = Relaxation::HostEnv.apply(&spec, &host, pkg, None).unwrap();
        assert_eq!(env.env.pass, ["PATH", "MY_SETTING"]);
        let copy = WritableCopy {
            dir: "/scratch/copy".into(),
            left_out: vec!["/w/pkg/target".into()],
        };
        let source = Relaxation::WritableSource
            .apply(&spec, &host, pkg, Some(&copy))
            .unwrap();
        assert_eq!(
            source.mounts[spec.mounts.len()..],
            [
                Mount::Bind {
                    src: "/scratch/copy".into(),
                    dst: pkg.into(),
                    writable: true
                },
                Mount::Bind {
                    src: "/w/pkg/target".into(),
                    dst: "/w/pkg/target".into(),
                    writable: false
                }
            ]
        );
        let home = Relaxation::HostHome.apply(&spec, &host, pkg, None).unwrap();
        assert!(home.mounts.contains(&Mount::Bind {
            src: "/".into(),
            dst: spec.home.clone(),
            writable: false
        }));
        assert!(home.is_visible(Path::new("/opt/rust")));
    }

    #[test]
    fn a_relaxation_already_in_the_sandbox_is_not_rerun() {
        let (mut spec, host, pkg) = (spec(), host(), Path::new("/w/pkg"));
        spec.net = Net::Host;
        spec.sys = Sys::Host;
        spec.pid = Pid::Host;
        spec.env.pass.push("MY_SETTING".into());
        for r in [
            Relaxation::HostNet,
            Relaxation::HostSys,
            Relaxation::HostPid,
            Relaxation::HostEnv,
        ] {
            assert_eq!(r.apply(&spec, &host, pkg, None), None, "{r:?}");
        }
        assert_eq!(
            Relaxation::WritableSource.apply(&spec, &host, pkg, None),
            None
        );
    }

    #[test]
    fn secrets_never_reach_a_rerun() {
        for name in [
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "DB_PASSWORD",
            "npm_config__auth",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["PATH", "MY_SETTING", "RUST_LOG", "CI"] {
            assert!(!looks_secret(name), "{name}");
        }
        let host = host();
        let meaning = Relaxation::HostEnv.meaning(&spec(), &host, Path::new("/w"), "");
        assert!(meaning.contains("MY_SETTING") && !meaning.contains("GITHUB_TOKEN"));
        let named = Relaxation::HostEnv.meaning(
            &spec(),
            &host,
            Path::new("/w"),
            "MY_SETTING is set: NotPresent (see PATH_X and x_MY_SETTING)",
        );
        assert!(
            named.contains("reads MY_SETTING") && named.contains("--env MY_SETTING"),
            "{named}"
        );
    }

    #[test]
    fn too_many_failures_skip_the_reruns() {
        assert_eq!(skip_reason(20, 30), None);
        assert!(skip_reason(21, 30).is_some());
        assert_eq!(skip_reason(50, 500), None);
        let text = skip_reason(51, 500).unwrap();
        assert!(
            text.contains("51 of 500") && text.contains("= 50"),
            "{text}"
        );
    }

    #[test]
    fn reruns_go_in_order_and_stop_at_the_first_pass() {
        let applicable = [
            Relaxation::HostNet,
            Relaxation::HostSys,
            Relaxation::HostPid,
        ];
        assert_eq!(next_relaxation(&applicable, &[]), Some(Relaxation::HostNet));
        let failed_net = [Tried {
            relaxation: Relaxation::HostNet,
            passed: false,
        }];
        assert_eq!(
            next_relaxation(&applicable, &failed_net),
            Some(Relaxation::HostSys)
        );
        let passed_sys = [
            failed_net[0].clone(),
            Tried {
                relaxation: Relaxation::HostSys,
                passed: true,
            },
        ];
        assert_eq!(next_relaxation(&applicable, &passed_sys), None);
        let explanation = verdict(passed_sys.to_vec(), |r| r.id().to_string());
        assert_eq!(explanation.relaxation, Some(Relaxation::HostSys));
        assert_eq!(explanation.message, "host-sys");
    }

    #[test]
    fn no_pass_says_the_failure_is_likely_the_tests_own() {
        let tried = vec![Tried {
            relaxation: Relaxation::HostNet,
            passed: false,
        }];
        let explanation = verdict(tried, |_| unreachable!());
        assert_eq!(explanation.relaxation, None);
        assert!(
            explanation.message.contains("host-net"),
            "{}",
            explanation.message
        );
        assert!(explanation.message.contains("the test's own"));
    }

    #[test]
    fn the_net_hint_names_the_flag_and_the_per_test_key() {
        let text = Relaxation::HostNet.meaning(&spec(), &host(), Path::new("/w"), "");
        assert_eq!(
            text,
            "passes with --net host: this test needs the host's network interfaces; allow it \
             per test with net = \"host\""
        );
    }

    #[test]
    fn output_hints_name_sys_paths_interfaces_and_disks() {
        let enoent = "Error: Os { code: 2, kind: NotFound, message: \"No such file or directory\" } reading \"/sys/class/net/eth0/address\"";
        let hint = output_hint(enoent).unwrap();
        assert!(
            hint.starts_with("the output shows /sys/class/net/eth0/address missing"),
            "{hint}"
        );
        assert!(hint.contains("--sys host") && hint.contains("--explain"));
        let mention = output_hint("cannot parse /sys/fs/cgroup/cpu.max: bad").unwrap();
        assert!(
            mention.starts_with("the output mentions /sys/fs/cgroup/cpu.max."),
            "{mention}"
        );
        let nic = output_hint(
            "assertion failed: networks.iter().any(|(name, _)| name == \"eth0\")\n network list",
        )
        .unwrap();
        assert!(nic.contains("--net host"), "{nic}");
        let disks = output_hint("assertion failed: !disks.list().is_empty()").unwrap();
        assert!(disks.contains("disk"), "{disks}");
        for cpu in [
            "assertion failed: s.processes().iter().any(|(_, p)| p.cpu_usage() > 0.0)",
            "using NO CPU: failed at iteration 0",
        ] {
            let hint = output_hint(cpu).unwrap();
            assert!(hint.contains("--pid host"), "{hint}");
        }
        assert_eq!(output_hint("assertion failed: 1 == 2"), None);
        assert_eq!(output_hint("see /usr/sys/x and mysys/y"), None);
    }
}
