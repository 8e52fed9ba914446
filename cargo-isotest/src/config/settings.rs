//! Every setting, once: the tables of a config file that hold them (profile, override,
//! `ISOTEST_*`/command-line layer), and the effective value of each with its source.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::merge::Setting;
use super::policies::{FailFast, Junit, RetryPolicy, SlowTimeout, TestThreads, ThreadsRequired};
use super::source::Entry;
use super::source::Source;
use super::values::{
    Bind, Bytes, Chaos, CpuMax, FinalStatusLevel, FlakyResult, Forward, Hostname, IdMap,
    LimitsMechanism, Net, OutputDisplay, Period, Pid, StatusLevel, Strays, Sys, VarName,
};

/// What happens when the filters select no test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NoTests {
    Pass,
    Warn,
    Fail,
}

macro_rules! settings {
    (
        test { $( $(#[$tm:meta])* $t:ident : $tt:ty, )* }
        run { $( $(#[$rm:meta])* $r:ident : $rt:ty, )* }
    ) => {
        /// `[profile.NAME]`.
        #[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct ProfileTable {
            /// The profile whose settings this one starts from; `default` if unset.
            #[schemars(with = "Option<String>")]
            pub inherits: Option<Spanned<String>>,
            /// The tests a run selects when no filter is given, as a filterset.
            #[schemars(with = "Option<String>")]
            pub default_filter: Option<Spanned<String>>,
            /// Settings for the tests a filterset matches; for each setting the first
            /// matching override wins.
            #[serde(default)]
            pub overrides: Vec<OverrideTable>,
            $( $(#[$tm])* pub $t: Option<$tt>, )*
            $( $(#[$rm])* pub $r: Option<$rt>, )*
        }

        /// `[[profile.NAME.overrides]]`.
        #[derive(Clone, Debug, Deserialize, JsonSchema)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct OverrideTable {
            /// The tests this override applies to, as a filterset.
            #[schemars(with = "String")]
            pub filter: Spanned<String>,
            $( $(#[$tm])* pub $t: Option<$tt>, )*
        }

        /// One layer of settings without profiles: an `ISOTEST_*` variable, or the
        /// command line.
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct Layer {
            $( pub $t: Option<$tt>, )*
            $( pub $r: Option<$rt>, )*
        }

        /// The effective value of every setting, each with what set it.
        #[derive(Clone, Debug, Default)]
        pub struct Effective {
            $( pub $t: <$tt as Setting>::Effective, )*
            $( pub $r: <$rt as Setting>::Effective, )*
        }

        /// Keys an override may set.
        pub fn test_keys() -> Vec<String> {
            vec![$(key!($t)),*]
        }

        /// Keys only a profile (or the environment, or the command line) may set.
        pub fn run_keys() -> Vec<String> {
            vec![$(key!($r)),*]
        }

        impl Effective {
            /// The settings of `layer` alone, as flags set them: no file, no variable,
            /// no default (`wrap`, which nextest or cargo start once per test).
            pub fn of_flags(layer: &Layer, cwd: &Path) -> Effective {
                let mut effective = Effective::default();
                effective.apply_layer(layer, &Source::CommandLine, cwd);
                effective
            }

            pub(super) fn apply_profile(&mut self, table: &ProfileTable, source: &Source, base: &Path) {
                $( if let Some(v) = &table.$t { v.merge(&mut self.$t, source, base); } )*
                $( if let Some(v) = &table.$r { v.merge(&mut self.$r, source, base); } )*
            }

            pub(super) fn apply_override(&mut self, table: &OverrideTable, source: &Source, base: &Path) {
                $( if let Some(v) = &table.$t { v.merge(&mut self.$t, source, base); } )*
            }

            pub(super) fn apply_layer(&mut self, layer: &Layer, source: &Source, base: &Path) {
                $( if let Some(v) = &layer.$t { v.merge(&mut self.$t, source, base); } )*
                $( if let Some(v) = &layer.$r { v.merge(&mut self.$r, source, base); } )*
            }

            /// Every set value, in key order of the reference, for `show-config`.
            pub fn entries(&self) -> Vec<Entry> {
                let mut entries = Vec::new();
                $( <$tt as Setting>::entries(&self.$t, &key!($t), &mut entries); )*
                $( <$rt as Setting>::entries(&self.$r, &key!($r), &mut entries); )*
                entries
            }
        }
    };
}

/// A field's key in the file: its name in kebab case.
macro_rules! key {
    ($field:ident) => {
        stringify!($field).replace('_', "-")
    };
}

settings! {
    test {
        /// The test's network: `loopback` (only `lo`, up), `none` (no usable interface)
        /// or `host` (the host's network, no isolation).
        net: Net,
        /// The test's /sys: `sandbox` (a read-only sysfs of its own network namespace and
        /// cgroups), `host` (the host's, read-only) or `none`.
        sys: Sys,
        /// The test's processes: `sandbox` (a pid namespace of its own) or `host` (the
        /// host's, with its /proc read-only).
        pid: Pid,
        /// Host loopback addresses reachable inside the sandbox at the same address, such
        /// as `"127.0.0.1:5432"`; nothing else of the host's network is. Needs
        /// `net = "loopback"`.
        forward: Vec<Forward>,
        /// Host Unix sockets reachable inside at their own path, each bound read-only
        /// (the socket, not its directory).
        forward_unix: Vec<PathBuf>,
        /// Host paths shown read-only: `"SRC"` at the same path, or `"SRC:DST"`.
        bind_ro: Vec<Bind>,
        /// Host paths shown writable: `"SRC"` at the same path, or `"SRC:DST"`.
        bind_rw: Vec<Bind>,
        /// Show the workspace through an overlay: the test's writes succeed, are listed
        /// in the report, and never reach the checkout (the target directory stays
        /// read-only).
        writable_source: bool,
        /// Let the test keep CAP_NET_ADMIN over its own sandbox's network (firewall
        /// rules, routes, interfaces), and over nothing of the host's.
        net_admin: bool,
        /// Show cargo, rustc, rustup and cargo's registry cache to the test.
        toolchain: bool,
        /// Host variables passed through to the test, by name or glob (`"MY_APP_*"`);
        /// a glob never passes a name that looks like a secret (`*_TOKEN`, `*SECRET*`,
        /// `*PASSWORD*`, …): those pass only when named exactly.
        env_pass: Vec<VarName>,
        /// Variables set in the test's environment.
        env: BTreeMap<String, String>,
        /// End the test after this long: SIGTERM, then SIGKILL after the grace period.
        timeout: Period,
        /// When the test is marked slow, and optionally ended, as in nextest.
        slow_timeout: SlowTimeout,
        /// How often a failing test runs again, each time in a fresh sandbox.
        retries: RetryPolicy,
        /// Whether a test that passed only on a retry passes or fails.
        flaky_result: FlakyResult,
        /// What a test that leaves processes behind is: `warn` or `fail`.
        strays: Strays,
        /// How many of the run's test threads the test takes.
        threads_required: ThreadsRequired,
        /// The test group the test belongs to (`@global` for none): a group's
        /// `max-threads` caps how many of its tests run at once.
        #[schemars(with = "Option<String>")]
        test_group: Spanned<String>,
        /// The most memory the test's processes may use.
        memory_max: Bytes,
        /// The most processes and threads the test may have at once.
        pids_max: NonZeroU32,
        /// The share of the CPUs the test may use.
        cpu_max: CpuMax,
        /// The size cap of each private tmpfs: /tmp, HOME, /dev/shm and
        /// CARGO_TARGET_TMPDIR.
        tmpfs_size: Bytes,
        /// Give the test a pseudo-terminal instead of pipes.
        tty: bool,
        /// The hostname inside the sandbox.
        hostname: Hostname,
        /// Which host ids the sandbox maps: `auto` (the best the host gives), `single`
        /// (only the caller's), `subordinate` (the caller's /etc/subuid ranges too) or
        /// `full` (every id; root only).
        id_map: IdMap,
        /// The test runs as uid 0 and gid 0 inside: without capabilities when only the
        /// caller is mapped, with those that switch ids when other ids are too.
        root: bool,
        /// How many namespaces of each kind the test may create itself (a test that
        /// makes sandboxes or containers); 32 by default.
        nesting: u32,
        /// Let the test read git's, cargo's and other tools' credentials as they are
        /// (tokens in ~/.gitconfig, cargo's config, the workspace's .git/config,
        /// ~/.netrc, …), which it otherwise sees scrubbed or empty.
        pass_credentials: bool,
        /// Perturbations each attempt draws from its own seed, as `--chaos` names them:
        /// `"all"`, `"none"`, or kinds such as `"cpus,sched"`.
        chaos: Chaos,
        /// When to show the output of a passing test.
        success_output: OutputDisplay,
        /// When to show the output of a failing test.
        failure_output: OutputDisplay,
    }
    run {
        /// How many tests run at once.
        test_threads: TestThreads,
        /// When the run stops starting tests after failures.
        fail_fast: FailFast,
        /// Which results are shown as the run goes.
        status_level: StatusLevel,
        /// Which results the final summary repeats.
        final_status_level: FinalStatusLevel,
        /// What a run that selects no test does: `pass`, `warn` or `fail` (exit 4).
        no_tests: NoTests,
        /// The JUnit XML report.
        junit: Junit,
        /// Where the JSON report goes (relative to the workspace root).
        report_json: PathBuf,
        /// What enforces every test's limits: `auto`, `cgroup-v2`, `cgroup-v1` or
        /// `fallback`.
        limits_mechanism: LimitsMechanism,
        /// Start a test only when its memory fits beside the running ones: its peak in
        /// the last report, else its `memory-max`.
        memory_budget: Bytes,
        /// Keep the contents of what each test wrote (under `writable-source`, and in
        /// `bind-rw` directories) under DIR/<binary id>/<test name>/attempt-<N>
        /// (relative to the workspace root); `apply-writes` copies one test's into the
        /// checkout.
        keep_writes: PathBuf,
        /// List what every test wrote, not only the failing ones.
        show_writes: bool,
    }
}

/// `[test-groups.NAME]`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TestGroupTable {
    /// How many tests of the group may run at once.
    pub max_threads: super::policies::MaxThreads,
}

/// A whole config file.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(title = "cargo-isotest configuration")]
pub struct ConfigFile {
    /// The version of this file's format; this cargo-isotest reads version 1.
    #[schemars(with = "Option<u32>", range(min = 1, max = 1))]
    pub schema_version: Option<Spanned<i64>>,
    /// Named sets of settings; `default` always exists, and `--profile NAME` picks one.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ProfileTable>")]
    pub profile: BTreeMap<Spanned<String>, ProfileTable>,
    /// Groups of tests that must not run more than so many at once.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, TestGroupTable>")]
    pub test_groups: BTreeMap<Spanned<String>, TestGroupTable>,
}

/// Keys the schema has, whose value this build's runner cannot give yet: which key, and
/// why. A value equal to what the runner does anyway is accepted. Only run keys are left,
/// so an override never has one.
fn unsupported(fail_fast: Option<&FailFast>) -> Vec<(&'static str, &'static str)> {
    let mut found = Vec::new();
    if fail_fast.is_some_and(|f| f.terminate == super::policies::Terminate::Immediate) {
        found.push((
            "fail-fast.terminate",
            "ending running tests at the failure limit is not built yet (`wait` is)",
        ));
    }
    found
}

impl ProfileTable {
    pub fn unsupported(&self) -> Vec<(&'static str, &'static str)> {
        unsupported(self.fail_fast.as_ref())
    }
}

impl Layer {
    pub fn unsupported(&self) -> Vec<(&'static str, &'static str)> {
        unsupported(self.fail_fast.as_ref())
    }
}
