//! `cargo isotest run` and `list` on the fixtures, asserting on the JSON report, the JUnit
//! file and the exit code, never on timing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use serde_json::{Value, json};

use crate::ctx::{Ctx, describe, ensure, ensure_eq, fixture, output, read_json, status_code};
use crate::sandbox::Scenario;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "outcomes::every_outcome_is_classified",
        every_outcome_is_classified,
    ),
    (
        "outcomes::junit_has_a_suite_per_binary",
        junit_has_a_suite_per_binary,
    ),
    (
        "select::ignored_and_include_ignored",
        ignored_and_include_ignored,
    ),
    (
        "select::filters_skip_and_an_empty_run_exits_4",
        filters_skip_and_an_empty_run_exits_4,
    ),
    (
        "select::fail_fast_stops_handing_out_tests",
        fail_fast_stops_handing_out_tests,
    ),
    ("select::list_as_json", list_as_json),
    (
        "terminal::colours_follow_color_and_no_color",
        colours_follow_color_and_no_color,
    ),
    (
        "harness::custom_harness_bin_exe_build_script_and_config_env",
        custom_harness_and_cargo_env,
    ),
    ("harness::prefer_dynamic_dylib", prefer_dynamic_dylib),
    ("isolation::colliding_tests_pass", colliding_tests_pass),
    (
        "isolation::strays_mark_tests_leaky_or_fail_them",
        strays_mark_tests_leaky_or_fail_them,
    ),
    (
        "isolation::checkout_stays_unchanged",
        checkout_stays_unchanged,
    ),
    (
        "isolation::network_denial_gets_a_hint",
        network_denial_gets_a_hint,
    ),
    (
        "misbehaving::harness_ignoring_exact_fails",
        harness_ignoring_exact_fails,
    ),
    (
        "misbehaving::unreadable_list_names_the_binary",
        unreadable_list_names_the_binary,
    ),
    ("misbehaving::timeout", timeout),
    (
        "misbehaving::ctrl_c_writes_a_partial_report",
        ctrl_c_writes_a_partial_report,
    ),
    (
        "misbehaving::sigkill_of_the_runner_leaves_nothing",
        sigkill_of_the_runner_leaves_nothing,
    ),
    (
        "toolchain::tests_that_run_cargo_rustc_and_rustfmt_pass",
        toolchain_is_usable,
    ),
    (
        "toolchain::no_toolchain_is_stricter",
        no_toolchain_is_stricter,
    ),
    ("exit::build_failure", build_failure),
    ("exit::bad_usage", bad_usage),
];

/// Scenarios that touch shared host state, run once rather than once per user.
pub const ONCE: &[(&str, Scenario)] = &[(
    "isolation::tmp_pair_collides_under_plain_cargo_test",
    tmp_pair_collides_under_plain_cargo_test,
)];

/// `cargo-isotest ARGS` in a fixture, writing the JSON report to the scratch dir.
pub fn run(ctx: &Ctx, name: &str, args: &[&str]) -> Result<(Output, Value, PathBuf), Failed> {
    run_keeping_report(ctx, name, args).map(|(out, json, dir, _)| (out, json, dir))
}

/// [`run`], also giving the report's path, for the commands that read it (replay, bisect).
pub fn run_keeping_report(
    ctx: &Ctx,
    name: &str,
    args: &[&str],
) -> Result<(Output, Value, PathBuf, String), Failed> {
    let dir = fixture(name, ctx.user.as_ref());
    let report = ctx.path(&format!("{name}-{}.json", unique()));
    let mut cmd = ctx.isotest(&dir);
    cmd.args(args).args(["--report-json", &report]);
    let out = output(&mut cmd)?;
    let json = read_json(&report).map_err(|e| format!("{e:?}\n{}", describe(&out)))?;
    Ok((out, json, dir, report))
}

pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Fails unless the record's text field contains `text`.
pub fn ensure_field_contains(record: &Value, field: &str, text: &str) -> Result<(), Failed> {
    let value = record[field].as_str().unwrap_or_default();
    ensure(value.contains(text), || {
        format!(
            "{} {}: `{text}` missing from {field}:\n{value}",
            record["binary_id"], record["name"]
        )
    })
}

pub fn test<'a>(report: &'a Value, binary_id: &str, name: &str) -> Result<&'a Value, Failed> {
    report["tests"]
        .as_array()
        .and_then(|tests| {
            tests
                .iter()
                .find(|t| t["binary_id"] == binary_id && t["name"] == name)
        })
        .ok_or_else(|| format!("no record of {binary_id} {name} in the report").into())
}

fn outcome_of(report: &Value, binary_id: &str, name: &str) -> Result<String, Failed> {
    Ok(test(report, binary_id, name)?["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn every_outcome_is_classified(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "outcomes", &["--no-fail-fast"])?;
    ensure_eq(status_code(&out), Some(100), "exit code with failing tests")?;
    ensure_eq(
        report["schema"].as_str(),
        Some("isotest-report/2"),
        "schema",
    )?;
    let expected = [
        ("outcomes", "passes", "passed", json!({"code": 0})),
        ("outcomes", "fails_assert", "failed", json!({"code": 101})),
        ("outcomes", "fails_panic", "failed", json!({"code": 101})),
        (
            "outcomes",
            "should_panic_passes",
            "passed",
            json!({"code": 0}),
        ),
        ("outcomes", "ignored_passes", "ignored", Value::Null),
        ("outcomes", "ignored_with_reason", "ignored", Value::Null),
        (
            "outcomes",
            "aborts",
            "failed",
            json!({"signal": 6, "name": "SIGABRT"}),
        ),
        (
            "outcomes",
            "segfaults",
            "failed",
            json!({"signal": 11, "name": "SIGSEGV"}),
        ),
        ("outcomes", "exits_with_code", "failed", json!({"code": 7})),
        (
            "outcomes",
            "non_utf8_output",
            "failed",
            json!({"code": 101}),
        ),
        (
            "outcomes",
            "outer::inner::deep_name",
            "passed",
            json!({"code": 0}),
        ),
        ("outcomes", "ünïcödé_名前", "passed", json!({"code": 0})),
        ("outcomes", "λ_fails", "failed", json!({"code": 101})),
        (
            "outcomes::integration",
            "integration_passes",
            "passed",
            json!({"code": 0}),
        ),
        (
            "outcomes::integration",
            "integration_fails",
            "failed",
            json!({"code": 101}),
        ),
        (
            "outcomes::integration",
            "reads_manifest_dir",
            "passed",
            json!({"code": 0}),
        ),
    ];
    for (binary, name, outcome, exit) in &expected {
        let record = test(&report, binary, name)?;
        ensure_eq(
            record["outcome"].as_str(),
            Some(*outcome),
            &format!("{name} outcome"),
        )?;
        ensure_eq(&record["exit"], exit, &format!("{name} exit"))?;
    }
    ensure_eq(
        report["summary"].clone(),
        json!({"total": 16, "passed": 6, "failed": 8, "ignored": 2, "timed_out": 0, "leaky": 0, "flaky": 0, "not_run": 0,
               "duration_ms": report["summary"]["duration_ms"]}),
        "summary",
    )?;
    for (name, stream, text) in [
        ("fails_assert", "stderr", "left: 2"),
        ("fails_panic", "stderr", "distinctive panic message 7c1f"),
        ("non_utf8_output", "stdout", "bytes: \u{fffd}\u{fffd} end"),
    ] {
        ensure_field_contains(test(&report, "outcomes", name)?, stream, text)?;
    }
    let passes = test(&report, "outcomes", "passes")?;
    ensure_eq(
        passes["stdout"].as_str(),
        Some(""),
        "a passing test's output is not kept",
    )?;
    let spec = &report["binaries"]["outcomes"]["spec"];
    let argv = passes["argv"]
        .as_array()
        .map(|a| a[1..].to_vec())
        .unwrap_or_default();
    ensure_eq(
        argv,
        vec![json!("--exact"), json!("passes"), json!("--nocapture")],
        "argv",
    )?;
    ensure_eq(spec["net"].as_str(), Some("loopback"), "spec net")?;
    let ignored = test(&report, "outcomes", "ignored_passes")?;
    ensure_eq(
        &ignored["argv"],
        &Value::Null,
        "an ignored test has no sandbox",
    )
}

fn junit_has_a_suite_per_binary(ctx: &Ctx) -> Result<(), Failed> {
    let junit = ctx.path("outcomes.xml");
    let (out, _, _) = run(ctx, "outcomes", &["--no-fail-fast", "--junit", &junit])?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    let xml = std::fs::read_to_string(&junit)?;
    for needle in [
        r#"<testsuite name="outcomes" tests="13""#,
        r#"<testsuite name="outcomes::integration" tests="3""#,
        r#"type="SIGSEGV""#,
        r#"message="the test process ended with exit code 7""#,
        "<skipped",
        "<system-err>",
        "distinctive panic message 7c1f",
    ] {
        ensure(xml.contains(needle), || {
            format!("JUnit lacks {needle}:\n{xml}")
        })?;
    }
    Ok(())
}

fn ignored_and_include_ignored(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "outcomes", &["--ignored", "--no-fail-fast"])?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    ensure_eq(
        report["summary"]["total"].as_u64(),
        Some(2),
        "only ignored tests are selected",
    )?;
    ensure_eq(
        outcome_of(&report, "outcomes", "ignored_passes")?,
        "passed".into(),
        "ignored_passes run",
    )?;
    ensure_eq(
        outcome_of(&report, "outcomes", "ignored_with_reason")?,
        "failed".into(),
        "ignored_with_reason run",
    )?;
    let (out, report, _) = run(
        ctx,
        "outcomes",
        &["--include-ignored", "--exact", "ignored_passes", "passes"],
    )?;
    ensure_eq(status_code(&out), Some(0), "exit code")?;
    ensure_eq(
        report["summary"]["passed"].as_u64(),
        Some(2),
        "both ran and passed",
    )
}

fn filters_skip_and_an_empty_run_exits_4(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "outcomes", &["passes", "--skip", "should"])?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exit code; {}", describe(&out)),
    )?;
    let names: Vec<&str> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    ensure_eq(
        names,
        vec!["ignored_passes", "passes", "integration_passes"],
        "selected tests",
    )?;
    // As in nextest, a run that selects nothing is an error (exit 4) unless told otherwise.
    let dir = fixture("outcomes", ctx.user.as_ref());
    let none = output(ctx.isotest(&dir).arg("no-test-is-called-this"))?;
    ensure_eq(
        status_code(&none),
        Some(4),
        &format!("exit code when nothing matches; {}", describe(&none)),
    )?;
    let stderr = String::from_utf8_lossy(&none.stderr);
    ensure(stderr.contains("no test to run"), || stderr.to_string())?;
    let (warned, report, _) = run(
        ctx,
        "outcomes",
        &["no-test-is-called-this", "--no-tests", "warn"],
    )?;
    ensure_eq(
        status_code(&warned),
        Some(0),
        "exit code with --no-tests=warn",
    )?;
    ensure_eq(
        report["summary"]["total"].as_u64(),
        Some(0),
        "nothing selected",
    )?;
    let stderr = String::from_utf8_lossy(&warned.stderr);
    ensure(stderr.contains("warning: no test to run"), || {
        stderr.to_string()
    })
}

fn fail_fast_stops_handing_out_tests(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "outcomes", &["-j", "1"])?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    ensure_eq(
        outcome_of(&report, "outcomes", "aborts")?,
        "failed".into(),
        "first test",
    )?;
    let not_run = report["summary"]["not_run"].as_u64().unwrap_or(0);
    ensure(not_run >= 10, || {
        format!("fail-fast left only {not_run} tests unrun")
    })
}

fn colours_follow_color_and_no_color(ctx: &Ctx) -> Result<(), Failed> {
    const ESCAPE: &str = "\u{1b}[";
    let colored = |out: &Output| String::from_utf8_lossy(&out.stderr).contains(ESCAPE);
    let (always, _, _) = run(ctx, "outcomes", &["--exact", "passes", "--color", "always"])?;
    ensure(colored(&always), || {
        format!("--color always printed no colour: {}", describe(&always))
    })?;
    let (never, _, _) = run(ctx, "outcomes", &["--exact", "passes", "--color", "never"])?;
    ensure(!colored(&never), || {
        format!("--color never printed colour: {}", describe(&never))
    })?;
    // Not a terminal: `auto` means none, and NO_COLOR is honoured on top.
    let dir = fixture("outcomes", ctx.user.as_ref());
    let auto = output(
        ctx.isotest(&dir)
            .args(["--exact", "passes"])
            .env("NO_COLOR", "1"),
    )?;
    ensure(!colored(&auto), || {
        format!("colour on a pipe: {}", describe(&auto))
    })?;
    // cargo's own setting, as `cargo test` honours it; --color wins over it.
    let cargo_says = output(
        ctx.isotest(&dir)
            .args(["--exact", "passes"])
            .env("CARGO_TERM_COLOR", "always"),
    )?;
    ensure(colored(&cargo_says), || {
        format!(
            "CARGO_TERM_COLOR=always printed no colour: {}",
            describe(&cargo_says)
        )
    })?;
    let flag_wins = output(
        ctx.isotest(&dir)
            .args(["--exact", "passes", "--color", "never"])
            .env("CARGO_TERM_COLOR", "always"),
    )?;
    ensure(!colored(&flag_wins), || {
        format!(
            "--color never lost to CARGO_TERM_COLOR: {}",
            describe(&flag_wins)
        )
    })
}

fn list_as_json(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("outcomes", ctx.user.as_ref());
    // A global option before the subcommand must not turn it into a filter.
    let out =
        output(
            ctx.isotest(&dir)
                .args(["--color", "never", "list", "--message-format", "json"]),
        )?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let json: Value = serde_json::from_slice(&out.stdout)?;
    let tests = json["tests"].as_array().ok_or("no tests array")?;
    ensure_eq(tests.len(), 16, "listed tests")?;
    let ignored = tests
        .iter()
        .find(|t| t["name"] == "ignored_passes")
        .ok_or("ignored_passes missing")?;
    ensure_eq(ignored["ignored"].as_bool(), Some(true), "ignored flag")?;
    ensure_eq(
        ignored["runs"].as_bool(),
        Some(false),
        "would not run by default",
    )?;
    let human = output(ctx.isotest(&dir).args(["list", "deep"]))?;
    ensure_eq(
        String::from_utf8_lossy(&human.stdout).as_ref(),
        "outcomes outer::inner::deep_name\n",
        "human list",
    )
}

fn custom_harness_and_cargo_env(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "harness", &["--no-fail-fast"])?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    for (binary, name, outcome) in [
        ("harness::mimic", "mimic_passes", "passed"),
        ("harness::mimic", "mimic_fails", "failed"),
        ("harness::mimic", "mimic_ignored", "ignored"),
        ("harness::mimic", "mimic_bench", "passed"),
        ("harness::bin_exe", "runs_own_binary", "passed"),
        ("harness::bin_exe", "uses_runtime_bin_env", "passed"),
        ("harness", "build_script_env", "passed"),
        ("harness", "config_env", "passed"),
    ] {
        let record = test(&report, binary, name)?;
        ensure_eq(
            record["outcome"].as_str(),
            Some(outcome),
            &format!("{binary} {name}: {}", record["stderr"]),
        )?;
    }
    ensure_eq(
        test(&report, "harness::mimic", "mimic_bench")?["kind"].as_str(),
        Some("bench"),
        "bench kind",
    )?;
    ensure_field_contains(
        test(&report, "harness::mimic", "mimic_fails")?,
        "stdout",
        "mimic failure 3b9",
    )
}

fn prefer_dynamic_dylib(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "dylib", &[])?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    ensure_eq(
        outcome_of(&report, "dylib-user", "uses_dylib")?,
        "passed".into(),
        "uses_dylib",
    )
}

fn colliding_tests_pass(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "isolation", &["tmp_claim", "port_", "--no-fail-fast"])?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    for name in ["tmp_claim_a", "tmp_claim_b", "port_a", "port_b"] {
        ensure_eq(
            outcome_of(&report, "isolation", name)?,
            "passed".into(),
            name,
        )?;
    }
    Ok(())
}

fn tmp_pair_collides_under_plain_cargo_test(ctx: &Ctx) -> Result<(), Failed> {
    const CLAIM: &str = "/tmp/isotest-fixture-claim";
    let dir = fixture("isolation", ctx.user.as_ref());
    let _ = std::fs::remove_file(CLAIM);
    let out = output(
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "test",
                "--",
                "--test-threads=1",
                "--exact",
                "tmp_claim_a",
                "tmp_claim_b",
            ])
            .env_remove("CARGO_TARGET_DIR")
            .current_dir(&dir),
    );
    let _ = std::fs::remove_file(CLAIM);
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(
        !out.status.success() && stdout.contains("1 passed; 1 failed"),
        || describe(&out),
    )
}

fn strays_mark_tests_leaky_or_fail_them(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "isolation", &["leaves_"])?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    ensure_eq(report["summary"]["leaky"].as_u64(), Some(2), "leaky count")?;
    for (name, cmdline) in [
        ("leaves_stray_sleep", "sleep 3600"),
        ("leaves_detached_daemon", "sleep 3601"),
    ] {
        let record = test(&report, "isolation", name)?;
        ensure_eq(record["outcome"].as_str(), Some("passed"), name)?;
        ensure_eq(record["leaky"].as_bool(), Some(true), name)?;
        let strays = record["strays"].as_array().ok_or("no strays")?;
        ensure(strays.iter().any(|s| s["cmdline"] == cmdline), || {
            format!("{name}: {strays:?}")
        })?;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        stderr.contains("LEAKY") && stderr.contains("sleep 3600"),
        || stderr.to_string(),
    )?;
    let (out, report, _) = run(
        ctx,
        "isolation",
        &["leaves_", "--strays=fail", "--no-fail-fast"],
    )?;
    ensure_eq(status_code(&out), Some(100), "exit code with --strays=fail")?;
    ensure_eq(report["summary"]["failed"].as_u64(), Some(2), "both fail")?;
    let error = test(&report, "isolation", "leaves_stray_sleep")?["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure(error.contains("strays = \"fail\""), || error.clone())
}

/// The fixture's files and their contents, without the build output.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "target" {
                    stack.push(path);
                }
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    files.sort();
    files
}

fn checkout_stays_unchanged(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("isolation", ctx.user.as_ref());
    let before = snapshot(&dir);
    let (out, report, _) = run(ctx, "isolation", &["writes_to_source_dir"])?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    let record = test(&report, "isolation", "writes_to_source_dir")?;
    ensure_field_contains(record, "stderr", "Read-only file system")?;
    ensure(
        record["hint"]
            .as_str()
            .is_some_and(|h| h.contains("--bind-rw")),
        || format!("hint: {}", record["hint"]),
    )?;
    ensure(snapshot(&dir) == before, || "the checkout changed".into())
}

fn network_denial_gets_a_hint(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "isolation", &["connects_outside"])?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    let record = test(&report, "isolation", "connects_outside")?;
    ensure(
        record["hint"]
            .as_str()
            .is_some_and(|h| h.contains("--net host")),
        || format!("hint: {}", record["hint"]),
    )
}

fn harness_ignoring_exact_fails(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "misbehaving", &["--test", "liar"])?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    let record = test(&report, "misbehaving::liar", "phantom")?;
    ensure_eq(record["outcome"].as_str(), Some("failed"), "phantom")?;
    ensure(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("--exact")),
        || record["error"].to_string(),
    )
}

fn unreadable_list_names_the_binary(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("misbehaving", ctx.user.as_ref());
    let out = output(ctx.isotest(&dir).args(["--test", "garbled"]))?;
    ensure_eq(status_code(&out), Some(104), "exit code")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        stderr.contains("misbehaving::garbled") && stderr.contains("here be no tests"),
        || stderr.to_string(),
    )
}

fn timeout(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(
        ctx,
        "misbehaving",
        &["--test", "sleeper", "--timeout", "1s"],
    )?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    ensure_eq(
        report["summary"]["timed_out"].as_u64(),
        Some(1),
        "timed out count",
    )?;
    ensure_eq(
        outcome_of(&report, "misbehaving::sleeper", "sleeps_for_minutes")?,
        "timed-out".into(),
        "outcome",
    )
}

fn ctrl_c_writes_a_partial_report(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("misbehaving", ctx.user.as_ref());
    let report = ctx.path("cancelled.json");
    let mut child = ctx
        .isotest(&dir)
        .args(["--test", "sleeper", "--report-json", &report])
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Other scenarios run the same sleeper; this one's descends from this run.
    let runner = child.id() as i32;
    let running = || {
        crate::sandbox::host_processes_containing("--exact sleeps_for_minutes")
            .into_iter()
            .any(|pid| descends_from(pid, runner))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !running() {
        ensure(Instant::now() < deadline, || {
            "the sleeper never started".into()
        })?;
        ensure(child.try_wait()?.is_none(), || {
            "cargo-isotest ended before the sleeper started".into()
        })?;
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let status = child.wait()?;
    ensure_eq(status.code(), Some(130), "exit code after Ctrl-C")?;
    let json = read_json(&report)?;
    ensure_eq(json["cancelled"].as_bool(), Some(true), "cancelled")?;
    ensure_eq(
        outcome_of(&json, "misbehaving::sleeper", "sleeps_for_minutes")?,
        "not-run".into(),
        "outcome",
    )?;
    // The test that was running says why it has no verdict.
    ensure_field_contains(
        test(&json, "misbehaving::sleeper", "sleeps_for_minutes")?,
        "error",
        "cancelled",
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while running() {
        ensure(Instant::now() < deadline, || {
            "the sleeper outlived the cancelled run".into()
        })?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Also: what the runner knew is on disk, as a checkpoint of the report.
fn sigkill_of_the_runner_leaves_nothing(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("misbehaving", ctx.user.as_ref());
    let report = ctx.path("killed.json");
    let args = [
        "--test",
        "sleeper",
        "--test",
        "liar",
        "--no-fail-fast",
        "-j",
        "2",
        "--report-json",
        &report,
    ];
    let mut child = ctx
        .isotest(&dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let runner = child.id() as i32;
    let ours = |text: &str| -> Vec<i32> {
        crate::sandbox::host_processes_containing(text)
            .into_iter()
            .filter(|pid| descends_from(*pid, runner))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let sleepers = loop {
        let found = ours("--exact sleeps_for_minutes");
        if !found.is_empty() {
            break found;
        }
        ensure(Instant::now() < deadline, || {
            "the sleeper never started".into()
        })?;
        ensure(child.try_wait()?.is_none(), || {
            "cargo-isotest ended before the sleeper started".into()
        })?;
        std::thread::sleep(Duration::from_millis(50));
    };
    let helpers = ours("__sandbox-helper");
    ensure(!helpers.is_empty(), || {
        "no sandbox helper found under the runner".into()
    })?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    child.wait()?;
    let alive = |pid: &i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sleepers.iter().chain(&helpers).any(alive) {
        ensure(Instant::now() < deadline, || {
            "a helper or the sleeper outlived the SIGKILLed runner".into()
        })?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Whether `ancestor` is among `pid`'s parents, following the host's ppid links.
pub fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..8 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, f)| f.split_whitespace().nth(1)?.parse::<i32>().ok());
        match ppid {
            Some(parent) if parent == ancestor => return true,
            Some(parent) if parent > 1 => pid = parent,
            _ => return false,
        }
    }
    false
}

fn toolchain_is_usable(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "toolchain", &["--no-fail-fast"])?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    ensure_eq(
        report["summary"]["passed"].as_u64(),
        Some(11),
        "every test passed",
    )?;
    let mounts = report["binaries"]["toolchain::toolchain"]["spec"]["mounts"]
        .as_array()
        .ok_or("no mounts in the spec")?;
    let bound = |suffix: &str| {
        mounts
            .iter()
            .any(|m| m["src"].as_str().is_some_and(|s| s.ends_with(suffix)))
    };
    ensure(bound("/registry"), || {
        format!("the spec does not record cargo's registry cache: {mounts:?}")
    })?;
    ensure(mounts.iter().all(|m| m["writable"] != true), || {
        "a toolchain path was bound writable".into()
    })
}

fn no_toolchain_is_stricter(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(ctx, "toolchain", &["--no-fail-fast", "--no-toolchain"])?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    for name in [
        "cargo_metadata_finds_the_workspace",
        "rustc_reports_its_version",
        "rustfmt_formats_generated_code",
    ] {
        ensure_eq(
            outcome_of(&report, "toolchain::toolchain", name)?,
            "failed".into(),
            name,
        )?;
    }
    ensure_eq(
        report["summary"]["failed"].as_u64(),
        Some(3),
        "only the toolchain tests fail",
    )
}

fn build_failure(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("broken", ctx.user.as_ref());
    let out = output(&mut ctx.isotest(&dir))?;
    ensure_eq(status_code(&out), Some(101), "exit code")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        stderr.contains("mismatched types") && stderr.contains("build failed"),
        || stderr.to_string(),
    )
}

fn bad_usage(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("outcomes", ctx.user.as_ref());
    let out = output(ctx.isotest(&dir).args(["run", "--jobs", "many"]))?;
    ensure_eq(status_code(&out), Some(2), "exit code")?;
    let out = output(ctx.isotest(&dir).args(["run", "--bind", "/no/such/path"]))?;
    ensure_eq(
        status_code(&out),
        Some(2),
        "exit code for a missing --bind source",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(stderr.contains("/no/such/path"), || stderr.to_string())
}
