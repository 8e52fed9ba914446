//! nextest's filtersets, matched against the tests of `fixtures/harness`.

use super::graph::{harness, package_id, test};
use super::{config, workspace};
use crate::config::{FilterKind, Filterset, TestId, render};

/// The fixture's tests: (binary id, kind, binary name, test name).
const TESTS: &[(&str, &str, &str, &str)] = &[
    ("harness", "lib", "harness", "build_script_env"),
    ("harness", "lib", "harness", "config_env"),
    ("harness::bin_exe", "test", "bin_exe", "runs_own_binary"),
    (
        "harness::bin_exe",
        "test",
        "bin_exe",
        "uses_runtime_bin_env",
    ),
    ("harness::mimic", "test", "mimic", "mimic::passes"),
    ("harness::bin/greeter", "bin", "greeter", "greets"),
];

/// The names of the tests `expr` selects, as "binary-id name".
fn selected(expr: &str) -> Vec<String> {
    let filter = Filterset::parse(expr, harness(), FilterKind::Run, &[]).unwrap();
    let package = package_id();
    TESTS
        .iter()
        .filter(|(id, kind, binary, name)| {
            filter.matches(&test(&package, kind, binary, name, id), None, &|_| {
                "@global".into()
            })
        })
        .map(|(id, _, _, name)| format!("{id} {name}"))
        .collect()
}

#[test]
fn each_predicate_and_operator_selects_as_in_nextest() {
    assert_eq!(
        selected("test(runs_own)"),
        ["harness::bin_exe runs_own_binary"]
    );
    assert_eq!(selected("test(=config_env)"), ["harness config_env"]);
    assert_eq!(
        selected("test(/^uses_.*env$/)"),
        ["harness::bin_exe uses_runtime_bin_env"]
    );
    assert_eq!(
        selected("test(#*_env) & kind(lib)"),
        ["harness build_script_env", "harness config_env"]
    );
    assert_eq!(selected("binary(mimic)"), ["harness::mimic mimic::passes"]);
    assert_eq!(
        selected("binary_id(harness::bin/greeter)"),
        ["harness::bin/greeter greets"]
    );
    assert_eq!(selected("kind(bin) or binary(=mimic)").len(), 2);
    assert_eq!(selected("package(harness) - kind(test)").len(), 3);
    assert_eq!(
        selected("not kind(lib) and not kind(test)"),
        ["harness::bin/greeter greets"]
    );
    assert_eq!(selected("all()").len(), TESTS.len());
    assert!(selected("none()").is_empty());
    // A package is among its own dependencies and reverse dependencies.
    assert_eq!(selected("deps(harness)").len(), TESTS.len());
    assert_eq!(selected("rdeps(=harness) & test(greets)").len(), 1);
}

#[test]
fn group_matches_the_group_an_override_puts_a_test_in() {
    let text = "[test-groups.serial]\nmax-threads = 1\n\n\
                [[profile.default.overrides]]\nfilter = 'binary(bin_exe)'\ntest-group = 'serial'\n";
    let config = config(vec![workspace(text)], &[], None).unwrap();
    let profile = config.profile().unwrap().compile(harness()).unwrap();
    let filter = profile.parse_filter("group(serial)", harness()).unwrap();
    let package = package_id();
    let chosen: Vec<&str> = TESTS
        .iter()
        .filter(|(id, kind, binary, name)| {
            profile.selects(
                std::slice::from_ref(&filter),
                &test(&package, kind, binary, name, id),
            )
        })
        .map(|t| t.3)
        .collect();
    assert_eq!(chosen, ["runs_own_binary", "uses_runtime_bin_env"]);
}

#[test]
fn default_filter_selects_when_no_expression_is_given() {
    let text = "[profile.default]\ndefault-filter = 'not binary(greeter)'\n\n\
                [profile.ci]\ndefault-filter = 'kind(lib)'\n";
    let config = config(vec![workspace(text)], &[], Some("ci")).unwrap();
    let profile = config.profile().unwrap().compile(harness()).unwrap();
    let package = package_id();
    let id = |t: &(&'static str, &'static str, &'static str, &'static str)| -> TestId<'static> {
        let package: &'static str = Box::leak(package.clone().into_boxed_str());
        test(package, t.1, t.2, t.3, t.0)
    };
    let by_default: Vec<&str> = TESTS
        .iter()
        .filter(|t| profile.selects(&[], &id(t)))
        .map(|t| t.3)
        .collect();
    assert_eq!(by_default, ["build_script_env", "config_env"]);
    // `default()` in an expression is the profile's default filter.
    let filter = profile
        .parse_filter("default() | binary(mimic)", harness())
        .unwrap();
    let chosen = TESTS
        .iter()
        .filter(|t| profile.selects(std::slice::from_ref(&filter), &id(t)))
        .count();
    assert_eq!(chosen, 3);
}

#[test]
fn bad_filter() {
    let error = Filterset::parse(
        "test(foo) | & package(harness",
        harness(),
        FilterKind::Run,
        &[],
    )
    .unwrap_err();
    insta::assert_snapshot!(render(&error, false));
}

#[test]
fn unknown_package() {
    let error = Filterset::parse("package(harnes)", harness(), FilterKind::Run, &[]).unwrap_err();
    insta::assert_snapshot!(render(&error, false));
}

/// The message for an override whose filter is `filter`.
fn override_error(filter: &str) -> String {
    let text = format!("[[profile.default.overrides]]\nfilter = '{filter}'\nretries = 2\n");
    let config = config(vec![workspace(&text)], &[], None).unwrap();
    let error = config.profile().unwrap().compile(harness()).err().unwrap();
    render(&error, false)
}

#[test]
fn bad_filter_in_an_override() {
    insta::assert_snapshot!(override_error("test(a) &"));
}

#[test]
fn an_override_filter_cannot_use_group() {
    insta::assert_snapshot!(override_error("group(serial)"));
}
