//! What a user sees for a broken config: snapshots of the rendered messages.

use super::{config, file, workspace};
use crate::config::render;

fn file_error(text: &str) -> String {
    let error = file(".config/isotest.toml", text).unwrap_err();
    render(&error, false)
}

fn config_error(text: &str) -> String {
    let error = config(vec![workspace(text)], &[], None).unwrap_err();
    render(&error, false)
}

#[test]
fn bad_toml() {
    insta::assert_snapshot!(file_error("[profile.ci]\nretries = = 3\n"));
}

#[test]
fn bad_type() {
    insta::assert_snapshot!(file_error("[profile.ci]\nretries = \"three\"\n"));
}

#[test]
fn bad_value() {
    insta::assert_snapshot!(file_error("[profile.default]\nnet = \"hots\"\n"));
}

#[test]
fn bad_duration() {
    insta::assert_snapshot!(file_error(
        "[profile.default]\nslow-timeout = { period = \"5 parsecs\" }\n"
    ));
}

#[test]
fn unknown_key() {
    insta::assert_snapshot!(file_error("[profile.ci]\nnett = \"host\"\n"));
}

#[test]
fn unknown_key_in_an_override() {
    insta::assert_snapshot!(file_error(
        "[[profile.default.overrides]]\nfilter = 'all()'\nbind-rww = [\"/srv\"]\n"
    ));
}

#[test]
fn run_key_in_an_override() {
    insta::assert_snapshot!(file_error(
        "[[profile.default.overrides]]\nfilter = 'all()'\ntest-threads = 2\n"
    ));
}

#[test]
fn future_schema_version() {
    insta::assert_snapshot!(file_error("schema-version = 2\n"));
}

#[test]
fn bad_inherits() {
    insta::assert_snapshot!(config_error("[profile.ci]\ninherits = \"defualt\"\n"));
}

#[test]
fn inheritance_cycle() {
    insta::assert_snapshot!(config_error(
        "[profile.a]\ninherits = \"b\"\n\n[profile.b]\ninherits = \"c\"\n\n[profile.c]\ninherits = \"a\"\n"
    ));
}

#[test]
fn unknown_test_group() {
    insta::assert_snapshot!(config_error(
        "[test-groups.database]\nmax-threads = 1\n\n[[profile.default.overrides]]\nfilter = 'all()'\ntest-group = \"databse\"\n"
    ));
}

#[test]
fn bad_env_variable() {
    let error = config(vec![], &[("ISOTEST_RETRIES", "many")], None).unwrap_err();
    insta::assert_snapshot!(render(&error, false));
}

#[test]
fn unknown_profile() {
    let config = config(vec![workspace("[profile.ci]\n")], &[], Some("cl")).unwrap();
    insta::assert_snapshot!(render(&config.profile().unwrap_err(), false));
}
