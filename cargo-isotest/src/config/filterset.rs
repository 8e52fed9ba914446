//! nextest's filterset language, through the crate nextest itself uses, so that an
//! expression selects the same tests under `cargo nextest` and `cargo isotest`.

use std::collections::HashSet;
use std::fmt;

use guppy::PackageId;
use guppy::graph::PackageGraph;
use guppy::graph::cargo::BuildPlatform;
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use nextest_filtering::errors::ParseSingleError;
use nextest_filtering::{
    BinaryQuery, CompiledExpr, EvalContext, Filterset as Parsed, FiltersetKind, GroupLookup,
    KnownGroups, NameMatcher, ParseContext, TestQuery,
};
use nextest_metadata::{RustBinaryId, RustTestBinaryKind, TestCaseName};

/// Where an expression is written, which decides what it may use: an override's filter
/// and `default-filter` cannot use `group()`, `default-filter` cannot use `default()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// `-E` on the command line.
    Run,
    /// `filter` of an override.
    Override,
    /// A profile's `default-filter`.
    Default,
}

/// The cargo package graph that `package()`, `deps()` and `rdeps()` resolve against, from
/// the `cargo metadata` that discovery already ran (run without `--no-deps`, or `deps()`
/// sees no dependency).
pub fn package_graph(metadata: &cargo_metadata::Metadata) -> Result<PackageGraph, guppy::Error> {
    let value = serde_json::to_value(metadata).map_err(guppy::Error::MetadataSerializeError)?;
    let metadata: guppy::CargoMetadata =
        serde_json::from_value(value).map_err(guppy::Error::MetadataParseError)?;
    metadata.build_graph()
}

/// The names a test is known by: what a filterset matches against.
#[derive(Clone, Copy, Debug)]
pub struct TestId<'a> {
    /// cargo's package id (`cargo metadata`'s `id`).
    pub package_id: &'a str,
    /// nextest's binary id: `pkg`, `pkg::test`, `pkg::bin/name`.
    pub binary_id: &'a str,
    /// `lib`, `test`, `bin`, `bench`, `example` or `proc-macro`.
    pub binary_kind: &'a str,
    /// The target's name.
    pub binary_name: &'a str,
    /// The test's full name, as the harness lists it.
    pub test_name: &'a str,
}

/// A parsed and compiled expression.
#[derive(Clone, Debug)]
pub struct Filterset {
    parsed: Parsed,
}

impl Filterset {
    /// Parses `expr` against the workspace; `groups` are the configured test groups,
    /// which `group()` may name.
    pub fn parse(
        expr: &str,
        graph: &PackageGraph,
        kind: FilterKind,
        groups: &[String],
    ) -> Result<Filterset, FiltersetError> {
        let known = KnownGroups::Known {
            custom_groups: groups.iter().cloned().collect::<HashSet<_>>(),
        };
        let kind = match kind {
            FilterKind::Run => FiltersetKind::Test,
            FilterKind::Override => FiltersetKind::OverrideFilter,
            FilterKind::Default => FiltersetKind::DefaultFilter,
        };
        Parsed::parse(expr.to_string(), &ParseContext::new(graph), kind, &known)
            .map(|parsed| Filterset { parsed })
            .map_err(|e| FiltersetError {
                // A space past the end, so that a caret can point just after the text.
                src: NamedSource::new("expression", format!("{} ", e.input)),
                input: e.input,
                errors: e.errors,
            })
    }

    /// Whether the expression selects `test`. `default` is the profile's default filter
    /// (what `default()` means); `group_of` gives a test's group, for `group()`.
    pub fn matches(
        &self,
        test: &TestId<'_>,
        default: Option<&Filterset>,
        group_of: &dyn Fn(&TestId<'_>) -> String,
    ) -> bool {
        let package_id = PackageId::new(test.package_id);
        let binary_id = RustBinaryId::new(test.binary_id);
        let kind = RustTestBinaryKind::new(test.binary_kind.to_string());
        let test_name = TestCaseName::new(test.test_name);
        let query = TestQuery {
            binary_query: BinaryQuery {
                package_id: &package_id,
                binary_id: &binary_id,
                binary_name: test.binary_name,
                kind: &kind,
                platform: BuildPlatform::Target,
            },
            test_name: &test_name,
        };
        let cx = EvalContext {
            default_filter: default.map_or(&CompiledExpr::ALL, |d| &d.parsed.compiled),
        };
        if self.parsed.compiled.has_group_matchers() {
            let groups = Groups {
                id: *test,
                group_of,
            };
            self.parsed.matches_test_with_groups(&query, &cx, &groups)
        } else {
            self.parsed.matches_test(&query, &cx)
        }
    }
}

/// `group()` asks which group the test being matched is in.
struct Groups<'a> {
    id: TestId<'a>,
    group_of: &'a dyn Fn(&TestId<'_>) -> String,
}

impl fmt::Debug for Groups<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Groups").field("id", &self.id).finish()
    }
}

impl GroupLookup for Groups<'_> {
    fn is_member_test(&self, _: &TestQuery<'_>, matcher: &NameMatcher) -> bool {
        matcher.is_match(&(self.group_of)(&self.id))
    }
}

/// An expression that does not parse, shown with carets under each mistake.
#[derive(Debug, Clone)]
pub struct FiltersetError {
    pub input: String,
    src: NamedSource<String>,
    errors: Vec<ParseSingleError>,
}

impl fmt::Display for FiltersetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what: Vec<String> = self.errors.iter().map(|e| e.to_string()).collect();
        write!(f, "invalid filterset `{}`: {}", self.input, what.join("; "))
    }
}

impl std::error::Error for FiltersetError {}

impl Diagnostic for FiltersetError {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(
            self.errors.iter().filter_map(|e| e.labels()).flatten(),
        ))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(
            "the language is nextest's: see https://nexte.st/docs/filtersets/",
        ))
    }
}
