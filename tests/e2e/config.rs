//! Configuration-driven runs on `fixtures/config`, whose `.config/isotest.toml` sets every
//! key: each scenario runs a profile and checks what the tests saw from inside their
//! sandboxes (`observe KEY VALUE` lines), the report, or `show-config`'s sources.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use libtest_mimic::Failed;
use serde_json::Value;

use crate::ctx::{Ctx, describe, ensure, ensure_eq, fixture, output, read_json, status_code};
use crate::run::test;
use crate::sandbox::Scenario;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "config::default_profile_sandbox_env_binds_and_overrides",
        default_profile,
    ),
    (
        "config::inherited_profile_net_hostname_toolchain_reports",
        inherited_profile,
    ),
    ("config::precedence_flags_env_workspace_user", precedence),
    (
        "config::test_groups_and_threads_required_keep_tests_apart",
        test_groups_and_threads_required,
    ),
    (
        "config::retries_strays_timeouts_and_the_missing_variable_hint",
        failures,
    ),
    (
        "config::strict_profile_flaky_fail_fast_and_output_levels",
        strict_profile,
    ),
    (
        "config::lenient_profile_tty_and_terminate_after",
        lenient_profile,
    ),
    (
        "config::no_tests_and_harness_arguments",
        no_tests_and_harness_arguments,
    ),
    (
        "config::overrides_set_sys_root_chaos_and_memory_max_per_test",
        per_test_sandbox_overrides,
    ),
    (
        "config::whole_run_id_map_limits_mechanism_and_memory_budget",
        whole_run_keys,
    ),
    (
        "config::an_archive_reads_the_checkout_config_and_shards_after_the_filters",
        archive_and_partitions,
    ),
    ("config::show_config_names_what_set_each_value", show_config),
    (
        "config::broken_or_unsupported_config_stops_before_the_build",
        broken_config,
    ),
];

const APP: &str = "cfg-app";

/// `cargo-isotest ARGS` in the config fixture with extra variables; the report is written
/// to the scratch dir unless the profile says where.
fn isotest(ctx: &Ctx, args: &[&str], env: &[(&str, &str)]) -> Result<(Output, Value), Failed> {
    let dir = fixture("config", ctx.user.as_ref());
    let report = ctx.path(&format!("config-{}.json", unique()));
    let mut cmd = command(ctx, &dir, env);
    // Passing tests' `observe` lines are in the report only when asked for.
    cmd.args(["--report-json", &report, "--keep-passing-output"])
        .args(args);
    let out = output(&mut cmd)?;
    let json = read_json(&report).map_err(|e| format!("{e:?}\n{}", describe(&out)))?;
    Ok((out, json))
}

fn command(ctx: &Ctx, dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = ctx.isotest(dir);
    // No user config but the one a scenario writes.
    cmd.env("XDG_CONFIG_HOME", ctx.path("no-user-config"));
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// A test's `observe KEY VALUE` lines.
fn observed(
    report: &Value,
    binary_id: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, Failed> {
    let record = test(report, binary_id, name)?;
    let stdout = record["stdout"].as_str().unwrap_or_default();
    Ok(stdout
        .lines()
        // libtest on one thread prints `test NAME ... ` before the test's own output.
        .filter_map(|l| l.find("observe ").map(|at| &l[at + "observe ".len()..]))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn expect(
    seen: &BTreeMap<String, String>,
    expected: &[(&str, &str)],
    what: &str,
) -> Result<(), Failed> {
    for (key, value) in expected {
        ensure_eq(
            seen.get(*key).map(String::as_str),
            Some(*value),
            &format!("{what}: {key}"),
        )?;
    }
    Ok(())
}

fn outcome(report: &Value, name: &str) -> Result<String, Failed> {
    Ok(test(report, APP, name)?["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

const OBSERVERS: &str = "test(=observe::env) | test(=observe::sandbox)";

fn default_profile(ctx: &Ctx) -> Result<(), Failed> {
    let env = [
        ("MY_APP_PLAIN", "plain"),
        ("MY_APP_TOKEN", "glob-must-not-pass-this"),
        ("EXACT_TOKEN", "named-exactly"),
    ];
    let (out, report) = isotest(ctx, &["-E", OBSERVERS], &env)?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exit code; {}", describe(&out)),
    )?;
    let seen = observed(&report, APP, "observe::env")?;
    expect(
        &seen,
        &[
            ("LAYER", "workspace"),
            ("FROM_OVERRIDE", "second"),
            ("ONLY_IN_CI", "-"),
            ("MY_APP_PLAIN", "plain"),
            ("MY_APP_TOKEN", "-"),
            ("EXACT_TOKEN", "named-exactly"),
        ],
        "env, env-pass and an override's env",
    )?;
    let seen = observed(&report, APP, "observe::sandbox")?;
    expect(
        &seen,
        &[
            ("loopback-works", "true"),
            ("hostname", "isotest"),
            ("bind-ro-read", "hello from the fixture"),
            ("bind-ro-write", "false"),
            ("bind-rw-write", "true"),
            ("toolchain", "true"),
            ("tty", "false"),
            ("tmp-size-mib", "512"),
            ("sys-present", "true"),
            ("own-pid-namespace", "true"),
        ],
        "the default profile's sandbox",
    )?;
    // default-filter: without -E, the tests that fail on purpose are not selected.
    let (out, report) = isotest(ctx, &[], &[])?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("default run; {}", describe(&out)),
    )?;
    let names: Vec<&str> = report["tests"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    ensure(
        !names.iter().any(|n| n.starts_with("fails::")) && names.len() == 13,
        || format!("default-filter selects: {names:?}"),
    )
}

fn inherited_profile(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("config", ctx.user.as_ref());
    let report_path = dir.join("target/isotest/ci.json");
    let junit_path = dir.join("target/isotest/ci-junit.xml");
    let _ = std::fs::remove_file(&report_path);
    let _ = std::fs::remove_file(&junit_path);
    let selection = format!("{OBSERVERS} | test(=serial::db_one)");
    // report-json and junit come from the profile: no --report-json here.
    let out = output(command(ctx, &dir, &[]).args([
        "-P",
        "ci",
        "-E",
        &selection,
        "--keep-passing-output",
    ]))?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exit code; {}", describe(&out)),
    )?;
    let report = read_json(&report_path)?;
    let seen = observed(&report, APP, "observe::env")?;
    expect(
        &seen,
        &[
            ("LAYER", "base"),
            ("ONLY_IN_CI", "yes"),
            ("MY_APP_PLAIN", "-"),
        ],
        "ci inherits base, which inherits default",
    )?;
    let seen = observed(&report, APP, "observe::sandbox")?;
    expect(
        &seen,
        &[
            ("loopback-works", "true"),
            ("hostname", "cfg-base"),
            ("toolchain", "false"),
            ("tmp-size-mib", "64"),
            ("bind-ro-read", "hello from the fixture"),
        ],
        "ci's sandbox",
    )?;
    // No override changes this test's sandbox: its binary's spec is its own.
    ensure(
        test(&report, APP, "observe::sandbox")?["spec"].is_null(),
        || "a test without overrides has no spec of its own".to_string(),
    )?;
    let spec = &report["binaries"][APP]["spec"];
    ensure_eq(spec["net"].as_str(), Some("host"), "ci's net")?;
    ensure_eq(
        spec["grace_ms"].as_u64(),
        Some(1000),
        "slow-timeout.grace-period",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(stderr.contains("observe LAYER base"), || {
        format!("success-output = immediate shows a passing test's output:\n{stderr}")
    })?;
    ensure(
        stderr.contains("SLOW") && stderr.contains("serial::db_one"),
        || format!("slow-timeout 200ms marks the 400 ms test slow:\n{stderr}"),
    )?;
    let summary = stderr.split("Summary").nth(1).unwrap_or_default();
    ensure(summary.matches("PASS").count() == 3, || {
        format!("final-status-level = all repeats every pass:\n{summary}")
    })?;
    let xml = std::fs::read_to_string(&junit_path)
        .map_err(|e| format!("{}: {e}", junit_path.display()))?;
    ensure(
        xml.contains(r#"<testsuites name="cfg-ci""#) && xml.contains("observe LAYER base"),
        || format!("junit report-name and store-success-output:\n{xml}"),
    )?;
    // ISOTEST_PROFILE picks a profile as -P does: base has no network.
    let (_, report) = isotest(ctx, &["-E", OBSERVERS], &[("ISOTEST_PROFILE", "base")])?;
    let seen = observed(&report, APP, "observe::sandbox")?;
    expect(
        &seen,
        &[("loopback-works", "false"), ("hostname", "cfg-base")],
        "net = none",
    )
}

fn precedence(ctx: &Ctx) -> Result<(), Failed> {
    let user_dir = ctx.scratch.path().join("xdg/isotest");
    std::fs::create_dir_all(&user_dir)?;
    std::fs::write(
        user_dir.join("config.toml"),
        "[profile.default]\nenv = { LAYER = \"user\", USER_ONLY = \"user\" }\n",
    )?;
    crate::give_to_user(ctx, &ctx.path("xdg"))?;
    crate::give_to_user(ctx, user_dir.to_str().unwrap_or_default())?;
    let xdg = ctx.path("xdg");
    let env = |extra: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&str, &str)> = vec![("XDG_CONFIG_HOME", xdg.as_str())];
        env.extend_from_slice(extra);
        env
    };
    let select = ["-E", "test(=observe::env)"];
    let (_, report) = isotest(ctx, &select, &env(&[]))?;
    expect(
        &observed(&report, APP, "observe::env")?,
        &[("LAYER", "workspace"), ("USER_ONLY", "user")],
        "the workspace file beats the user's, which still adds its own",
    )?;
    let from_env = [("ISOTEST_ENV", "{ LAYER = \"env\" }")];
    let (_, report) = isotest(ctx, &select, &env(&from_env))?;
    expect(
        &observed(&report, APP, "observe::env")?,
        &[("LAYER", "env"), ("USER_ONLY", "user")],
        "ISOTEST_* beats the files",
    )?;
    let mut args = select.to_vec();
    args.extend(["--env", "LAYER=cli"]);
    let (_, report) = isotest(ctx, &args, &env(&from_env))?;
    expect(
        &observed(&report, APP, "observe::env")?,
        &[("LAYER", "cli"), ("FROM_OVERRIDE", "second")],
        "the command line beats everything",
    )
}

/// `(start, end)` of each test, from its `observe span` line.
fn spans(report: &Value, names: &[&str]) -> Result<Vec<(u128, u128)>, Failed> {
    names
        .iter()
        .map(|name| {
            let seen = observed(report, APP, name)?;
            let span = seen
                .get("span")
                .ok_or_else(|| format!("{name} printed no span"))?;
            let (start, end) = span.split_once(' ').ok_or("a span is two numbers")?;
            Ok((start.parse()?, end.parse()?))
        })
        .collect()
}

fn overlap(a: (u128, u128), b: (u128, u128)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn test_groups_and_threads_required(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report) = isotest(ctx, &["-E", "test(/^serial::/)"], &[])?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exit code; {}", describe(&out)),
    )?;
    let db = spans(
        &report,
        &["serial::db_one", "serial::db_two", "serial::db_three"],
    )?;
    for (i, a) in db.iter().enumerate() {
        for b in &db[i + 1..] {
            ensure(!overlap(*a, *b), || {
                format!("group db (max-threads 1) overlapped: {db:?}")
            })?;
        }
    }
    let heavy = spans(&report, &["serial::heavy"])?[0];
    let others = spans(
        &report,
        &[
            "serial::db_one",
            "serial::db_two",
            "serial::db_three",
            "serial::light_one",
            "serial::light_two",
        ],
    )?;
    ensure(others.iter().all(|o| !overlap(heavy, *o)), || {
        format!("threads-required = num-test-threads ran beside others: {heavy:?} {others:?}")
    })
}

/// Two tests that overlap under the default profile run one at a time under a profile
/// whose memory budget holds only one of their memory limits; the same profile's id
/// mapping and limits mechanism are what the report records.
fn whole_run_keys(ctx: &Ctx) -> Result<(), Failed> {
    let pair = ["serial::light_one", "serial::light_two"];
    let selection = "test(=serial::light_one) | test(=serial::light_two)";
    let (out, report) = isotest(ctx, &["-E", selection], &[])?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let apart = spans(&report, &pair)?;
    ensure(overlap(apart[0], apart[1]), || {
        format!("without a budget the two ran apart: {apart:?}")
    })?;
    let (out, report) = isotest(ctx, &["--profile", "whole-run", "-E", selection], &[])?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let budgeted = spans(&report, &pair)?;
    ensure(!overlap(budgeted[0], budgeted[1]), || {
        format!("memory-budget = 100M ran two 64M tests together: {budgeted:?}")
    })?;
    let spec = &report["binaries"][APP]["spec"];
    ensure_eq(
        spec["ids"]["mode"].as_str(),
        Some("single"),
        &format!("id-map = \"single\" in the spec: {spec}"),
    )?;
    for name in pair {
        let record = test(&report, APP, name)?;
        ensure_eq(
            record["resources"]["mechanism"].as_str(),
            Some("fallback"),
            &format!("limits-mechanism = \"fallback\": {record}"),
        )?;
    }
    Ok(())
}

fn failures(ctx: &Ctx) -> Result<(), Failed> {
    let env = [("MISSING_SETTING", "the caller has it")];
    let (out, report) = isotest(ctx, &["-E", "test(/^fails::/)"], &env)?;
    ensure_eq(
        status_code(&out),
        Some(100),
        &format!("exit code; {}", describe(&out)),
    )?;
    let flaky = test(&report, APP, "fails::on_the_first_attempt")?;
    ensure(
        flaky["outcome"] == "passed" && flaky["flaky"] == true,
        || format!("retries (exponential) make it flaky: {flaky}"),
    )?;
    ensure_eq(
        outcome(&report, "fails::sleeps_too_long")?,
        "timed-out".into(),
        "timeout = 1s",
    )?;
    ensure_eq(
        outcome(&report, "fails::always")?,
        "failed".into(),
        "fail-fast = false runs all",
    )?;
    let leaky = test(&report, APP, "fails::leaves_a_process_behind")?;
    ensure(
        leaky["outcome"] == "failed"
            && leaky["error"]
                .as_str()
                .unwrap_or_default()
                .contains("strays"),
        || format!("strays = fail: {leaky}"),
    )?;
    let missing = test(&report, APP, "fails::reads_a_missing_variable")?;
    let hint = missing["hint"].as_str().unwrap_or_default();
    ensure(
        hint.contains("`MISSING_SETTING`") && hint.contains("env-pass = [\"MISSING_SETTING\"]"),
        || format!("the hint names the variable and the key: {missing}"),
    )
}

fn strict_profile(ctx: &Ctx) -> Result<(), Failed> {
    let args = [
        "-P",
        "strict",
        "-E",
        "test(=fails::on_the_first_attempt) | test(=fails::always)",
    ];
    let (out, report) = isotest(ctx, &args, &[])?;
    ensure_eq(
        status_code(&out),
        Some(100),
        &format!("exit code; {}", describe(&out)),
    )?;
    // One test thread and max-fail = 1: whichever fails first stops the run.
    let outcomes = [
        outcome(&report, "fails::always")?,
        outcome(&report, "fails::on_the_first_attempt")?,
    ];
    ensure(outcomes.contains(&"not-run".to_string()), || {
        format!("fail-fast max-fail = 1 with test-threads = 1: {outcomes:?}")
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(!stderr.contains("--- STDERR"), || {
        format!("failure-output = never:\n{stderr}")
    })?;
    ensure(stderr.contains("FAIL"), || {
        format!("status-level = fail shows failures:\n{stderr}")
    })?;
    // flaky-result = fail: a pass on a retry fails the run.
    let args = ["-P", "strict", "-E", "test(=fails::on_the_first_attempt)"];
    let (out, report) = isotest(ctx, &args, &[])?;
    ensure_eq(status_code(&out), Some(100), "flaky-result = fail")?;
    let record = test(&report, APP, "fails::on_the_first_attempt")?;
    ensure(
        record["flaky"] == true && record["outcome"] == "failed",
        || record.to_string(),
    )?;
    // status-level = fail: a pass is not shown.
    let (out, _) = isotest(ctx, &["-P", "strict", "-E", "test(=observe::env)"], &[])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(!stderr.contains("PASS"), || {
        format!("status-level = fail hides passes:\n{stderr}")
    })
}

fn lenient_profile(ctx: &Ctx) -> Result<(), Failed> {
    let args = [
        "-P",
        "lenient",
        "-E",
        "test(=observe::sandbox) | test(=fails::sleeps_too_long)",
    ];
    let (out, report) = isotest(ctx, &args, &[])?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exit code; {}", describe(&out)),
    )?;
    expect(
        &observed(&report, APP, "observe::sandbox")?,
        &[
            ("tty", "true"),
            ("sys-present", "false"),
            ("own-pid-namespace", "false"),
        ],
        "tty = true, sys = none, pid = host",
    )?;
    let ended = test(&report, APP, "fails::sleeps_too_long")?;
    ensure(
        ended["outcome"] == "passed" && ended["duration_ms"].as_u64().unwrap_or(u64::MAX) < 15_000,
        || format!("terminate-after ends the 20 s test and on-timeout = pass passes it: {ended}"),
    )
}

fn no_tests_and_harness_arguments(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("config", ctx.user.as_ref());
    let none = output(command(ctx, &dir, &[]).args(["-E", "none()"]))?;
    ensure_eq(
        status_code(&none),
        Some(4),
        &format!("no test selected; {}", describe(&none)),
    )?;
    let (warned, _) = isotest(ctx, &["-P", "strict", "-E", "none()"], &[])?;
    ensure_eq(status_code(&warned), Some(0), "no-tests = warn")?;
    ensure(
        String::from_utf8_lossy(&warned.stderr).contains("warning: no test to run"),
        || describe(&warned),
    )?;
    let (out, report) = isotest(ctx, &["--", "--nocapture"], &[])?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("-- --nocapture; {}", describe(&out)),
    )?;
    ensure_eq(
        report["summary"]["total"].as_u64(),
        Some(13),
        "--nocapture is not a filter",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(stderr.contains("observe core ran"), || {
        format!("--nocapture shows passing output:\n{stderr}")
    })?;
    let (_, report) = isotest(
        ctx,
        &["--", "--exact", "observe::env", "--skip", "nothing"],
        &[],
    )?;
    ensure_eq(
        report["summary"]["total"].as_u64(),
        Some(1),
        "-- --exact NAME",
    )
}

/// An override sets sandbox keys for two tests alone: `/sys`, uid 0 inside, chaos, and a
/// memory limit that stops one of them; a test of the same binary keeps the profile's
/// sandbox, and a flag beats the override.
fn per_test_sandbox_overrides(ctx: &Ctx) -> Result<(), Failed> {
    let selection = "test(=observe::overridden) | test(=observe::sandbox) \
                     | test(=fails::allocates_past_its_limit)";
    let (out, report) = isotest(ctx, &["-E", selection], &[])?;
    ensure_eq(
        status_code(&out),
        Some(100),
        &format!("the allocation fails the run; {}", describe(&out)),
    )?;
    expect(
        &observed(&report, APP, "observe::overridden")?,
        &[
            ("sys-present", "false"),
            ("uid", "0"),
            ("chaos", "cpus"),
            ("nesting", "5"),
        ],
        "the override's sys, root, chaos and nesting",
    )?;
    expect(
        &observed(&report, APP, "observe::sandbox")?,
        &[("sys-present", "true")],
        "the same binary's other test keeps the profile's /sys",
    )?;
    let record = test(&report, APP, "observe::overridden")?;
    let own = &record["spec"];
    ensure(
        own["sys"] == "none"
            && own["identity"] == "root"
            && own["limits"]["memory_max"].as_u64() == Some(64 << 20),
        || format!("the test's own spec in the report: {own}"),
    )?;
    ensure_eq(
        record["perturbation"]["kinds"].as_array().map(Vec::len),
        Some(1),
        "chaos = \"cpus\" draws one kind",
    )?;
    let binary = &report["binaries"][APP]["spec"];
    ensure(
        binary["sys"] == "sandbox" && binary["limits"]["memory_max"].is_null(),
        || format!("the binary's spec is the profile's: {binary}"),
    )?;
    ensure(
        test(&report, APP, "observe::sandbox")?["spec"].is_null(),
        || "a test no override changes has no spec of its own".to_string(),
    )?;
    let hog = test(&report, APP, "fails::allocates_past_its_limit")?;
    ensure(
        hog["outcome"] == "failed" && hog["limit_exceeded"]["kind"] == "memory",
        || format!("memory-max = 64M stops the allocation: {hog}"),
    )?;
    let hint = hog["hint"].as_str().unwrap_or_default();
    ensure(hint.contains("config key `memory-max`"), || {
        format!("the hint names the key: {hint}")
    })?;
    // The command line beats the override; what the flag does not set stays the override's.
    let args = ["-E", "test(=observe::overridden)", "--sys", "sandbox"];
    let (out, report) = isotest(ctx, &args, &[])?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exit code; {}", describe(&out)),
    )?;
    expect(
        &observed(&report, APP, "observe::overridden")?,
        &[("sys-present", "true"), ("uid", "0")],
        "--sys sandbox over the override's sys = none",
    )
}

/// The names `list --message-format json` lists.
fn listed(out: &Output) -> Result<Vec<String>, Failed> {
    let json: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("list's JSON: {e}; {}", describe(out)))?;
    Ok(json["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(String::from))
        .collect())
}

/// An archive run from a copy of the checkout elsewhere reads that checkout's config (its
/// default filter, its overrides), and `--partition` shards what the filters selected.
fn archive_and_partitions(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("config", ctx.user.as_ref());
    let archive = ctx.path("config.tar.zst");
    let out = output(command(ctx, &dir, &[]).args(["archive", "--archive-file", &archive]))?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let checkout = ctx.scratch.path().join("elsewhere/config");
    crate::ci::copy_sources(&dir, &checkout)?;
    if let Some(user) = &ctx.user {
        crate::ctx::chown_tree(&ctx.scratch.path().join("elsewhere"), user);
    }
    let remap = checkout.display().to_string();
    let from_archive = ["--archive-file", &archive, "--workspace-remap", &remap];
    let list = |extra: &[&str]| -> Result<Vec<String>, Failed> {
        let mut cmd = command(ctx, ctx.scratch.path(), &[]);
        cmd.arg("list")
            .args(from_archive)
            .args(["--message-format", "json"]);
        let out = output(cmd.args(extra))?;
        ensure_eq(status_code(&out), Some(0), &describe(&out))?;
        listed(&out)
    };
    let all = list(&[])?;
    ensure(
        all.len() == 13 && !all.iter().any(|n| n.starts_with("fails::")),
        || format!("the checkout's default-filter: {all:?}"),
    )?;
    let serial = ["-E", "test(/^serial::/)"];
    let first = list(&[&serial[..], &["--partition", "count:1/2"]].concat())?;
    let second = list(&[&serial[..], &["--partition", "count:2/2"]].concat())?;
    ensure(
        first.len() == 3
            && second.len() == 3
            && first
                .iter()
                .chain(&second)
                .all(|n| n.starts_with("serial::"))
            && !first.iter().any(|n| second.contains(n)),
        || format!("the shards of the filtered tests: {first:?} and {second:?}"),
    )?;
    let report = ctx.path(&format!("config-{}.json", unique()));
    let mut cmd = command(ctx, ctx.scratch.path(), &[]);
    cmd.arg("run").args(from_archive).args([
        "-E",
        "test(=observe::overridden)",
        "--report-json",
        &report,
        "--keep-passing-output",
    ]);
    let out = output(&mut cmd)?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    expect(
        &observed(&read_json(&report)?, APP, "observe::overridden")?,
        &[("sys-present", "false"), ("uid", "0")],
        "the checkout's override, from the archive",
    )
}

fn show_config(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("config", ctx.user.as_ref());
    let out = output(command(ctx, &dir, &[("ISOTEST_RETRIES", "3")]).args([
        "show-config",
        "-P",
        "ci",
        "-E",
        "test(=serial::db_one)",
        "--tmpfs-size",
        "32M",
    ]))?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exit code; {}", describe(&out)),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let file = ".config/isotest.toml";
    let expected = [
        "profile ci → base → default".to_string(),
        format!("net = \"host\"  # {}", dir.join(file).display()),
        "[profile.ci]".into(),
        "hostname = \"cfg-base\"".into(),
        "[profile.base]".into(),
        "retries = { backoff = \"fixed\", count = 3".into(),
        "# environment ISOTEST_RETRIES".into(),
        "tmpfs-size = \"32M\"  # command line".into(),
        "db.max-threads = 1".into(),
        "[test-groups.db]".into(),
        "test cfg-app serial::db_one".into(),
        "test-group = \"db\"".into(),
        "[profile.default.overrides[0]]".into(),
        "env.FROM_OVERRIDE = \"first\"".into(),
    ];
    for line in &expected {
        ensure(text.contains(line.as_str()), || {
            format!("show-config lacks `{line}`:\n{text}")
        })?;
    }
    ensure(!text.contains("test cfg-app serial::db_two"), || {
        format!("-E selects the tests shown:\n{text}")
    })
}

fn broken_config(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("config", ctx.user.as_ref());
    let cases = [
        (
            "[profile.default]\nnett = \"host\"\n",
            vec!["unknown key `nett`", "did you mean `net`", ":2:1"],
        ),
        (
            "[profile.default]\nforward = [\"10.0.0.5:5432\"]\n",
            vec![
                "`profile.default.forward[0]`",
                "only a loopback address",
                "net = \"host\"",
            ],
        ),
        (
            "[profile.default]\nfail-fast = { max-fail = 2, terminate = \"immediate\" }\n",
            vec!["`fail-fast.terminate`", "not supported by this build"],
        ),
        (
            "[[profile.default.overrides]]\nfilter = \"test(\"\nnet = \"host\"\n",
            vec!["is not a valid filterset", "test("],
        ),
    ];
    for (index, (text, wanted)) in cases.iter().enumerate() {
        let path = ctx.path(&format!("broken-{index}.toml"));
        std::fs::write(&path, text)?;
        let out = output(command(ctx, &dir, &[]).args(["list", "--config-file", &path]))?;
        ensure_eq(
            status_code(&out),
            Some(2),
            &format!("{text}: exit code; {}", describe(&out)),
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        for w in wanted {
            ensure(stderr.contains(w), || {
                format!("{text}: `{w}` missing from\n{stderr}")
            })?;
        }
        ensure(!stderr.contains("Compiling"), || {
            format!("built despite a broken config:\n{stderr}")
        })?;
    }
    let out = output(command(ctx, &dir, &[]).args(["list", "-E", "test(a) &"]))?;
    ensure_eq(status_code(&out), Some(2), "a bad -E")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        stderr.contains("expression:1:10") && stderr.contains("missing expression"),
        || format!("a caret under the mistake:\n{stderr}"),
    )
}
