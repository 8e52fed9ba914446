//! One profile: its effective settings, and once its filtersets are compiled, each
//! test's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use guppy::graph::PackageGraph;
use toml::Spanned;

use super::error::{ConfigError, Document};
use super::filterset::{FilterKind, Filterset, FiltersetError, TestId};
use super::load::LoadedFile;
use super::policies::{
    FailFast, Junit, MaxFail, MaxThreads, RetryPolicy, SlowTimeout, TestThreads, ThreadsRequired,
};
use super::resolve::{Config, GLOBAL_GROUP};
use super::settings::{Effective, Layer, NoTests, OverrideTable, ProfileTable};
use super::source::{Source, Sourced};
use super::values::{
    Bytes, Chaos, FinalStatusLevel, FlakyResult, Hostname, IdMap, LimitsMechanism, Net,
    OutputDisplay, Period, Pid, StatusLevel, Strays, Sys,
};

/// One profile and the chain it inherits.
#[derive(Debug)]
pub struct Profile<'c> {
    pub(super) config: &'c Config,
    /// The profile, its parent, …, `default`.
    pub(super) chain: Vec<String>,
}

impl<'c> Profile<'c> {
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    /// The configuration's `[test-groups]`.
    pub fn test_groups(&self) -> &'c BTreeMap<String, Sourced<MaxThreads>> {
        self.config.test_groups()
    }

    /// Each profile table of the chain, higher precedence first.
    fn tables(&self) -> impl Iterator<Item = (&'c LoadedFile, &'c ProfileTable, &'_ str)> + '_ {
        self.chain
            .iter()
            .flat_map(|p| self.config.tables(p).map(move |(f, t)| (f, t, p.as_str())))
    }

    /// Defaults and the profile chain, without overrides, environment or flags.
    fn profile_layers(&self) -> Effective {
        let mut effective = Effective::default();
        effective.apply_layer(&defaults(), &Source::Default, &self.config.cwd);
        let tables: Vec<_> = self.tables().collect();
        for (file, table, profile) in tables.into_iter().rev() {
            let source = Source::Profile {
                file: file.doc.path.clone(),
                profile: profile.to_string(),
            };
            effective.apply_profile(table, &source, &file.base);
        }
        effective
    }

    fn apply_top(&self, effective: &mut Effective) {
        for (layer, source) in &self.config.env {
            effective.apply_layer(layer, source, &self.config.cwd);
        }
        effective.apply_layer(&self.config.cli, &Source::CommandLine, &self.config.cwd);
    }

    /// The profile's effective settings, as they apply to a test no override matches.
    pub fn settings(&self) -> Effective {
        let mut effective = self.profile_layers();
        self.apply_top(&mut effective);
        effective
    }

    /// Compiles the filtersets of every profile's overrides and `default-filter` against
    /// the workspace, so that no broken filter waits for the test it would match.
    pub fn compile(self, graph: &PackageGraph) -> Result<CompiledProfile<'c>, ConfigError> {
        let groups: Vec<String> = self.config.groups.keys().cloned().collect();
        let compile = |doc: &Document, expr: &Spanned<String>, kind| {
            Filterset::parse(expr.get_ref(), graph, kind, &groups)
                .map_err(|e| filter_error(doc, expr, e))
        };
        let mut overrides = Vec::new();
        let mut default_filters = Vec::new();
        for loaded in &self.config.files {
            for (name, table) in &loaded.file.profile {
                let in_chain = self.chain.contains(name.get_ref());
                if let Some(expr) = &table.default_filter {
                    let compiled = compile(&loaded.doc, expr, FilterKind::Default)?;
                    if in_chain {
                        default_filters.push((self.rank(name.get_ref(), loaded), compiled));
                    }
                }
                for (index, table) in table.overrides.iter().enumerate() {
                    let filter = compile(&loaded.doc, &table.filter, FilterKind::Override)?;
                    if in_chain {
                        let source = Source::Override {
                            file: loaded.doc.path.clone(),
                            profile: name.get_ref().clone(),
                            index,
                            filter: table.filter.get_ref().clone(),
                        };
                        let rank = (self.rank(name.get_ref(), loaded), index);
                        overrides.push(CompiledOverride {
                            rank,
                            table,
                            filter,
                            source,
                            base: loaded.base.clone(),
                        });
                    }
                }
            }
        }
        overrides.sort_by_key(|o| o.rank);
        Ok(CompiledProfile {
            settings: self.profile_layers(),
            default_filter: default_filters
                .into_iter()
                .min_by_key(|(r, _)| *r)
                .map(|(_, f)| f),
            profile: self,
            overrides,
        })
    }

    /// How near a profile's table is: its place in the chain, then the file's.
    fn rank(&self, profile: &str, file: &LoadedFile) -> (usize, usize) {
        let in_chain = self
            .chain
            .iter()
            .position(|p| p == profile)
            .unwrap_or(usize::MAX);
        let in_files = self
            .config
            .files
            .iter()
            .position(|f| std::ptr::eq(f, file))
            .unwrap_or(usize::MAX);
        (in_chain, in_files)
    }
}

fn filter_error(doc: &Document, expr: &Spanned<String>, error: FiltersetError) -> ConfigError {
    doc.error(
        expr.span(),
        format!("`{}` is not a valid filterset", expr.get_ref()),
        "this filter".into(),
    )
    .with_related(error)
    .into()
}

struct CompiledOverride<'c> {
    /// Precedence: lower first.
    rank: ((usize, usize), usize),
    table: &'c OverrideTable,
    filter: Filterset,
    source: Source,
    base: PathBuf,
}

/// A profile whose filters are compiled: it can say what applies to each test.
pub struct CompiledProfile<'c> {
    profile: Profile<'c>,
    /// Defaults and the chain, before overrides.
    settings: Effective,
    default_filter: Option<Filterset>,
    overrides: Vec<CompiledOverride<'c>>,
}

impl CompiledProfile<'_> {
    pub fn profile(&self) -> &Profile<'_> {
        &self.profile
    }

    /// The effective settings of one test.
    pub fn test_settings(&self, test: &TestId<'_>) -> Effective {
        let mut effective = self.settings.clone();
        let matching: Vec<&CompiledOverride<'_>> = self
            .overrides
            .iter()
            .filter(|o| {
                o.filter
                    .matches(test, self.default_filter.as_ref(), &|_| GLOBAL_GROUP.into())
            })
            .collect();
        // Lowest precedence first, so that the first matching override is applied last.
        for o in matching.into_iter().rev() {
            effective.apply_override(o.table, &o.source, &o.base);
        }
        self.profile.apply_top(&mut effective);
        effective
    }

    /// A test's group: `@global` unless a setting names one.
    pub fn test_group(&self, test: &TestId<'_>) -> String {
        self.test_settings(test)
            .test_group
            .map_or_else(|| GLOBAL_GROUP.to_string(), |g| g.value)
    }

    /// Parses an `-E` expression with what this profile knows (its test groups).
    pub fn parse_filter(
        &self,
        expr: &str,
        graph: &PackageGraph,
    ) -> Result<Filterset, FiltersetError> {
        let groups: Vec<String> = self.profile.config.groups.keys().cloned().collect();
        Filterset::parse(expr, graph, FilterKind::Run, &groups)
    }

    /// Whether a run selects `test`: any of the `-E` expressions, or without any, the
    /// profile's `default-filter`.
    pub fn selects(&self, expressions: &[Filterset], test: &TestId<'_>) -> bool {
        let group_of = |t: &TestId<'_>| self.test_group(t);
        if expressions.is_empty() {
            return self
                .default_filter
                .as_ref()
                .is_none_or(|d| d.matches(test, None, &group_of));
        }
        expressions
            .iter()
            .any(|e| e.matches(test, self.default_filter.as_ref(), &group_of))
    }
}

/// cargo-isotest's defaults: what a run does with no config and no flags.
fn defaults() -> Layer {
    Layer {
        net: Some(Net::Loopback),
        sys: Some(Sys::Sandbox),
        pid: Some(Pid::Sandbox),
        writable_source: Some(false),
        net_admin: Some(false),
        toolchain: Some(true),
        slow_timeout: Some(SlowTimeout::new(Period(std::time::Duration::from_secs(60)))),
        retries: Some(RetryPolicy::count(0)),
        flaky_result: Some(FlakyResult::Pass),
        strays: Some(Strays::Warn),
        threads_required: Some(ThreadsRequired::Count(std::num::NonZeroU32::MIN)),
        test_group: Some(Spanned::new(0..0, GLOBAL_GROUP.to_string())),
        tmpfs_size: Some(Bytes(isotest_runtime::DEFAULT_TMPFS_SIZE)),
        tty: Some(false),
        hostname: Some(Hostname(isotest_runtime::DEFAULT_HOSTNAME.to_string())),
        id_map: Some(IdMap::Auto),
        root: Some(false),
        chaos: Some(Chaos(Vec::new())),
        success_output: Some(OutputDisplay::Never),
        failure_output: Some(OutputDisplay::Immediate),
        test_threads: Some(TestThreads::NumCpus),
        fail_fast: Some(FailFast::new(MaxFail::Count(std::num::NonZeroU32::MIN))),
        status_level: Some(StatusLevel::Pass),
        final_status_level: Some(FinalStatusLevel::Flaky),
        no_tests: Some(NoTests::Fail),
        limits_mechanism: Some(LimitsMechanism::Auto),
        show_writes: Some(false),
        junit: Some(Junit {
            path: None,
            report_name: Some("isotest-run".into()),
            store_success_output: Some(false),
            store_failure_output: Some(true),
        }),
        ..Layer::default()
    }
}
