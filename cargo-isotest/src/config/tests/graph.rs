//! The package graph of `fixtures/harness`, from a real `cargo metadata`.

use std::sync::OnceLock;

use guppy::graph::PackageGraph;

use crate::config::TestId;

pub fn harness() -> &'static PackageGraph {
    static GRAPH: OnceLock<PackageGraph> = OnceLock::new();
    GRAPH.get_or_init(|| {
        let manifest = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/harness/Cargo.toml"
        );
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(manifest)
            .exec()
            .expect("cargo metadata of fixtures/harness");
        crate::config::package_graph(&metadata).expect("a package graph")
    })
}

/// The package id of the fixture's one package.
pub fn package_id() -> String {
    let graph = harness();
    let package = graph
        .workspace()
        .member_by_path("")
        .expect("the fixture is its own workspace root");
    package.id().repr().to_string()
}

/// A test of the fixture: `kind` `lib`, `test` or `bin`, the binary's name, the test's.
pub fn test<'a>(
    package_id: &'a str,
    kind: &'a str,
    binary: &'a str,
    name: &'a str,
    binary_id: &'a str,
) -> TestId<'a> {
    TestId {
        package_id,
        binary_id,
        binary_kind: kind,
        binary_name: binary,
        test_name: name,
    }
}

/// The fixture's integration test `harness::bin_exe runs_own_binary`, which the tests'
/// overrides match with `test(runs_own)`.
pub fn runs_own_binary(package_id: &str) -> TestId<'_> {
    test(
        package_id,
        "test",
        "bin_exe",
        "runs_own_binary",
        "harness::bin_exe",
    )
}
