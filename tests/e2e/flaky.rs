//! Chasing flaky tests: retries, stress, shuffle, replay, rerun-failed, and a shell in a
//! test's sandbox driven through a pseudo-terminal.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use serde_json::Value;

use crate::ctx::{Ctx, describe, ensure, ensure_eq, fixture, output, read_json, status_code};
use crate::run::{ensure_field_contains, run, test};
use crate::sandbox::Scenario;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "retries::flaky_test_ends_passed_with_attempts",
        retries_end_passed_with_attempts,
    ),
    (
        "retries::second_attempt_pass_is_flaky_in_json_and_junit",
        second_attempt_pass_is_flaky,
    ),
    (
        "stress::failure_rate_lies_in_a_narrow_interval",
        stress_failure_rate,
    ),
    (
        "stress::until_fail_keeps_the_failing_attempt",
        stress_until_fail,
    ),
    (
        "stress::duration_runs_until_the_time_is_up",
        stress_duration,
    ),
    (
        "shuffle::seed_repeats_the_order_and_reaches_tests",
        shuffle_seed_repeats_the_order,
    ),
    (
        "replay::deterministic_failure_reproduces",
        replay_reproduces_the_failure,
    ),
    (
        "replay::rerun_failed_runs_only_failures",
        rerun_failed_runs_only_failures,
    ),
    (
        "shell::a_terminal_in_the_test_sandbox",
        shell_in_the_test_sandbox,
    ),
];

fn stress_of(report: &Value, name: &str) -> Result<Value, Failed> {
    Ok(test(report, "flaky", name)?["stress"].clone())
}

fn retries_end_passed_with_attempts(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(
        ctx,
        "flaky",
        &["--retries", "30", "--exact", "flaky_30_percent"],
    )?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let record = test(&report, "flaky", "flaky_30_percent")?;
    ensure_eq(record["outcome"].as_str(), Some("passed"), "final outcome")?;
    let attempts = record["attempts"].as_array().cloned().unwrap_or_default();
    ensure_eq(
        record["flaky"].as_bool(),
        Some(!attempts.is_empty()),
        "flaky exactly when retried",
    )?;
    if let Some((last, earlier)) = attempts.split_last() {
        ensure_eq(last["outcome"].as_str(), Some("passed"), "last attempt")?;
        for attempt in earlier {
            ensure_eq(
                attempt["outcome"].as_str(),
                Some("failed"),
                "earlier attempts",
            )?;
            ensure_field_contains(attempt, "stderr", "unlucky draw")?;
        }
    }
    Ok(())
}

fn second_attempt_pass_is_flaky(ctx: &Ctx) -> Result<(), Failed> {
    let junit = ctx.path("flaky.xml");
    let (out, report, _) = run(
        ctx,
        "flaky",
        &[
            "--retries",
            "2",
            "--exact",
            "passes_on_second_attempt",
            "--junit",
            &junit,
        ],
    )?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let record = test(&report, "flaky", "passes_on_second_attempt")?;
    ensure_eq(record["flaky"].as_bool(), Some(true), "flaky")?;
    ensure_eq(record["attempt"].as_u64(), Some(2), "the final attempt")?;
    let outcomes: Vec<&str> = record["attempts"]
        .as_array()
        .ok_or("no attempts")?
        .iter()
        .filter_map(|a| a["outcome"].as_str())
        .collect();
    ensure_eq(outcomes, vec!["failed", "passed"], "attempts")?;
    ensure_eq(
        report["summary"]["flaky"].as_u64(),
        Some(1),
        "summary.flaky",
    )?;
    let xml = std::fs::read_to_string(&junit)?;
    ensure(xml.contains("<flakyFailure"), || {
        format!("no flakyFailure in JUnit:\n{xml}")
    })?;
    let (out, report, _) = run(
        ctx,
        "flaky",
        &[
            "--retries",
            "2",
            "--exact",
            "passes_on_second_attempt",
            "--flaky",
            "fail",
        ],
    )?;
    ensure_eq(status_code(&out), Some(100), "exit code with --flaky=fail")?;
    ensure_eq(
        test(&report, "flaky", "passes_on_second_attempt")?["outcome"].as_str(),
        Some("failed"),
        "outcome with --flaky=fail",
    )?;
    // The run fails because of the failing attempt: that is the one shown and replayed.
    let record = test(&report, "flaky", "passes_on_second_attempt")?;
    ensure_eq(
        record["attempt"].as_u64(),
        Some(1),
        "the attempt a --flaky=fail failure shows",
    )?;
    ensure_field_contains(
        record,
        "failure_message",
        "first attempts of this test always fail",
    )?;
    let (out, report, _) = run(
        ctx,
        "flaky",
        &[
            "--retries",
            "2",
            "--exact",
            "fails_deterministically",
            "--junit",
            &junit,
        ],
    )?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    ensure_eq(
        test(&report, "flaky", "fails_deterministically")?["attempts"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "attempts",
    )?;
    let xml = std::fs::read_to_string(&junit)?;
    ensure(xml.matches("<rerunFailure").count() == 2, || {
        format!("expected two rerunFailure elements:\n{xml}")
    })
}

fn stress_failure_rate(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(
        ctx,
        "flaky",
        &["--stress", "200", "-j", "2", "--exact", "flaky_30_percent"],
    )?;
    ensure_eq(
        status_code(&out),
        Some(100),
        "a stress run with failures fails",
    )?;
    let stress = stress_of(&report, "flaky_30_percent")?;
    ensure_eq(stress["runs"].as_u64(), Some(200), "runs")?;
    let failures = stress["failures"].as_f64().ok_or("failures")?;
    let rate = stress["failure_rate"].as_f64().ok_or("failure_rate")?;
    let (lo, hi) = (
        stress["ci95"][0].as_f64().ok_or("ci95")?,
        stress["ci95"][1].as_f64().ok_or("ci95")?,
    );
    ensure((rate - failures / 200.0).abs() < 1e-9, || {
        format!("rate {rate} for {failures}/200")
    })?;
    ensure(lo <= rate && rate <= hi, || {
        format!("{rate} outside [{lo}, {hi}]")
    })?;
    ensure(hi - lo < 0.2, || {
        format!("interval [{lo}, {hi}] is not narrower than 0.2")
    })?;
    // A 30% failure rate measured over 200 runs: far outside this range means a broken draw.
    ensure(0.1 < rate && rate < 0.55, || {
        format!("measured rate {rate} is implausible for a 30% test")
    })?;
    let message = stress["failure_messages"][0]["message"]
        .as_str()
        .unwrap_or_default();
    ensure(message.contains("unlucky draw"), || {
        format!("failure messages: {}", stress["failure_messages"])
    })?;
    ensure(
        stress["first_failures"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        || "no first failures".into(),
    )
}

fn stress_until_fail(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(
        ctx,
        "flaky",
        &[
            "--stress",
            "1000",
            "--stress-until-fail",
            "--exact",
            "flaky_30_percent",
        ],
    )?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    let record = test(&report, "flaky", "flaky_30_percent")?;
    let stress = &record["stress"];
    let runs = stress["runs"].as_u64().unwrap_or(0);
    ensure(
        runs < 1000 && stress["failures"].as_u64() >= Some(1),
        || format!("it did not stop at the first failure: {stress}"),
    )?;
    ensure_field_contains(&record["attempts"][0], "stderr", "unlucky draw")?;
    ensure(record["argv"].is_array(), || {
        "the failing attempt's command was not kept".into()
    })
}

fn stress_duration(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(
        ctx,
        "flaky",
        &[
            "--stress-duration",
            "1s",
            "--exact",
            "reports_attempt_and_seed",
        ],
    )?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let stress = stress_of(&report, "reports_attempt_and_seed")?;
    ensure(stress["runs"].as_u64() > Some(1), || {
        format!("it ran only {} time(s)", stress["runs"])
    })?;
    ensure_eq(stress["failures"].as_u64(), Some(0), "failures")
}

/// The order in which tests ended, from the terminal lines (-j 1 runs them in order).
/// The tests of each result line, in order, without the `(N/M)` counter.
fn finish_order(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.split("] ").nth(1))
        .map(|rest| match rest.split_once(") ") {
            Some((counter, test)) if counter.starts_with('(') => test,
            _ => rest,
        })
        .filter(|test| test.starts_with("outcomes"))
        .map(str::to_string)
        .collect()
}

fn shuffle_seed_repeats_the_order(ctx: &Ctx) -> Result<(), Failed> {
    let args = [
        "--shuffle=4242",
        "-j",
        "1",
        "--no-fail-fast",
        "--color",
        "never",
    ];
    let (first, report, _) = run(ctx, "outcomes", &args)?;
    let (second, _, _) = run(ctx, "outcomes", &args)?;
    ensure_eq(report["seed"].as_u64(), Some(4242), "seed in the report")?;
    let order = finish_order(&first);
    ensure(order.len() >= 14, || {
        format!("expected a line per test: {order:?}")
    })?;
    ensure_eq(
        finish_order(&second),
        order.clone(),
        "the same seed, the same order",
    )?;
    let (other, _, _) = run(
        ctx,
        "outcomes",
        &[
            "--shuffle=7",
            "-j",
            "1",
            "--no-fail-fast",
            "--color",
            "never",
        ],
    )?;
    ensure(finish_order(&other) != order, || {
        "another seed gave the same order".into()
    })?;
    ensure(
        String::from_utf8_lossy(&first.stderr).contains("--shuffle=4242"),
        || "the seed was not printed".into(),
    )?;
    let (out, report, _) = run(
        ctx,
        "flaky",
        &[
            "--shuffle=4242",
            "--keep-passing-output",
            "--exact",
            "reports_attempt_and_seed",
        ],
    )?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let stdout = test(&report, "flaky", "reports_attempt_and_seed")?["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure(stdout.contains("attempt=1 seed=4242"), || {
        format!("the test saw: {stdout}")
    })
}

fn replay_reproduces_the_failure(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report_json, dir) = run(
        ctx,
        "flaky",
        &["--exact", "fails_deterministically", "--color", "never"],
    )?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let replay_line = stderr
        .lines()
        .find(|l| l.contains("cargo isotest replay"))
        .ok_or_else(|| format!("no replay line:\n{stderr}"))?;
    ensure(
        replay_line.contains("'flaky fails_deterministically'"),
        || replay_line.to_string(),
    )?;
    let original = test(&report_json, "flaky", "fails_deterministically")?["stderr"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure(original.contains("deterministic failure 9d2"), || {
        original.clone()
    })?;
    let report = replay_line
        .split_whitespace()
        .nth(4)
        .ok_or("no report path in the replay line")?
        .trim_matches('\'');
    let replay =
        output(
            ctx.isotest(&dir)
                .args(["replay", report, "flaky fails_deterministically"]),
        )?;
    ensure_eq(
        status_code(&replay),
        Some(101),
        "the replayed test's exit code",
    )?;
    let replayed =
        String::from_utf8_lossy(&replay.stdout) + String::from_utf8_lossy(&replay.stderr);
    ensure(replayed.contains("deterministic failure 9d2"), || {
        format!("replay did not reproduce the failure:\n{replayed}")
    })?;
    let ambiguous = output(
        ctx.isotest(&dir)
            .args(["replay", report, "nothing-like-this"]),
    )?;
    ensure_eq(
        status_code(&ambiguous),
        Some(2),
        "a filter that matches nothing",
    )
}

fn rerun_failed_runs_only_failures(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("flaky", ctx.user.as_ref());
    let earlier = ctx.path("earlier.json");
    let out = output(ctx.isotest(&dir).args([
        "--no-fail-fast",
        "--skip",
        "flaky_30",
        "--report-json",
        &earlier,
    ]))?;
    ensure_eq(status_code(&out), Some(100), "the earlier run")?;
    let rerun = ctx.path("rerun.json");
    let out =
        output(
            ctx.isotest(&dir)
                .args(["--rerun-failed", &earlier, "--report-json", &rerun]),
        )?;
    ensure_eq(status_code(&out), Some(100), &describe(&out))?;
    let json = read_json(&rerun)?;
    let names: Vec<&str> = json["tests"]
        .as_array()
        .ok_or("no tests")?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    ensure_eq(
        names,
        vec!["fails_deterministically", "passes_on_second_attempt"],
        "rerun tests",
    )
}

/// Drives `cargo isotest shell` through a pseudo-terminal like a person would.
fn shell_in_the_test_sandbox(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("flaky", ctx.user.as_ref());
    // Build first, so that the shell's own discovery is quick.
    output(ctx.isotest(&dir).arg("list"))?;
    let pty = nix::pty::openpty(None, None)?;
    let mut cmd = ctx.isotest(&dir);
    cmd.args([
        "shell",
        "--exact",
        "reports_attempt_and_seed",
        "--color",
        "never",
    ]);
    let slave = pty.slave.as_raw_fd();
    let file =
        || -> Result<std::fs::File, Failed> { Ok(std::fs::File::from(pty.slave.try_clone()?)) };
    cmd.stdin(file()?).stdout(file()?).stderr(file()?);
    // SAFETY: setsid and ioctl are async-signal-safe and touch only the child.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            nix::errno::Errno::result(libc::ioctl(slave, libc::TIOCSCTTY, 0))?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(cmd);
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let screen = screen.clone();
        let mut master = master.try_clone()?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let seen = |text: &str| String::from_utf8_lossy(&screen.lock().unwrap()).contains(text);
    let wait_for = |text: &str| -> Result<(), Failed> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen(text) {
            ensure(Instant::now() < deadline, || {
                format!(
                    "`{text}` never appeared; screen:\n{}",
                    String::from_utf8_lossy(&screen.lock().unwrap())
                )
            })?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    wait_for("Leave with `exit`")?;
    wait_for("isotest")?;
    master.write_all(
        b"echo \"H=$(hostname) C=$(pwd) P=$(ls -d /proc/[0-9]* | wc -l) A=$ISOTEST_ATTEMPT\"\n",
    )?;
    wait_for("H=isotest C=")?;
    master.write_all(b"exit\n")?;
    let status = child.wait()?;
    let _ = reader.join();
    let screen = String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    ensure(status.success(), || {
        format!("shell exited with {status:?}; screen:\n{screen}")
    })?;
    ensure(
        screen.contains("--exact reports_attempt_and_seed --nocapture"),
        || format!("the test's command was not printed:\n{screen}"),
    )?;
    // The answer, not the echoed command: the shell expanded it.
    let line = screen
        .lines()
        .find_map(|l| l.find("H=isotest C=").map(|at| &l[at..]))
        .ok_or_else(|| format!("no answer on the screen:\n{screen}"))?;
    ensure(line.contains(&format!("C={}", dir.display())), || {
        format!("cwd is not the package's: {line}")
    })?;
    ensure(line.contains("A=1"), || {
        format!("ISOTEST_ATTEMPT missing: {line}")
    })?;
    let processes: usize = line
        .split("P=")
        .nth(1)
        .and_then(|p| p.split_whitespace().next()?.parse().ok())
        .ok_or("no count")?;
    ensure(processes < 10, || {
        format!("{processes} processes visible: not the sandbox's own pid namespace")
    })
}
