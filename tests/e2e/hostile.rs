//! Issue 9's reproductions against `run`, `exec` and `replay` themselves: what a hostile
//! test, a crafted report or a careless command line can make of them. Destructive cases
//! aim only at FIFOs, scratch directories and a scratch /dev (see `harden.rs`).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use serde_json::Value;

use crate::ctx::{
    Ctx, chown_tree, describe, ensure, ensure_eq, fixture, output, read_json, status_code,
};
use crate::harden::{HostState, scratch_dev, wait_or_kill};
use crate::run::{ensure_field_contains, run, test};
use crate::sandbox::{Scenario, host_processes_containing};

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "verdict::lookalike_lines_decide_nothing",
        lookalike_lines_decide_nothing,
    ),
    (
        "credentials::file_borne_secrets_are_hidden",
        file_borne_secrets_are_hidden,
    ),
    (
        "helper::a_lost_helper_is_never_a_pass",
        a_lost_helper_is_never_a_pass,
    ),
    ("exec::a_broken_pipe_ends_exec", a_broken_pipe_ends_exec),
    ("exec::grace_escalates_to_kill", grace_escalates_to_kill),
    (
        "exec::second_ctrl_c_kills_at_once",
        second_ctrl_c_kills_at_once,
    ),
    (
        "reports::written_in_place_or_replaced",
        reports_written_in_place_or_replaced,
    ),
    (
        "reports::own_directory_is_not_followed",
        own_report_directory_is_not_followed,
    ),
    (
        "reports::merge_junit_and_archive_write_the_same_way",
        merge_junit_and_archive_write_the_same_way,
    ),
    (
        "replay::shows_relaxations_and_refuses_foreign_reports",
        replay_shows_relaxations_and_refuses_foreign_reports,
    ),
    (
        "input::bad_exec_input_is_a_usage_error",
        bad_exec_input_is_a_usage_error,
    ),
    (
        "input::bad_reports_and_names_in_replay",
        bad_reports_and_names_in_replay,
    ),
    ("input::outside_a_cargo_project", outside_a_cargo_project),
    (
        "writes::keeping_follows_no_link_the_test_planted",
        keeping_follows_no_link_the_test_planted,
    ),
    (
        "forward::a_swapped_socket_is_refused",
        a_swapped_socket_is_refused,
    ),
    (
        "config::report_and_keep_paths_follow_no_planted_link",
        config_paths_follow_no_planted_link,
    ),
    (
        "writes::writable_source_and_net_admin_change_nothing_of_the_host",
        writable_source_and_net_admin_change_nothing_of_the_host,
    ),
];

/// Look-alike protocol lines in a test's output neither fail a passing test nor pass a
/// failing one, and a harness that prints nothing when asked to run a test fails it.
fn lookalike_lines_decide_nothing(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(
        ctx,
        "misbehaving",
        &["--test", "lookalike", "--test", "silent", "--no-fail-fast"],
    )?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    let outcome = |binary: &str, name: &str| -> Result<String, Failed> {
        Ok(test(&report, binary, name)?["outcome"]
            .as_str()
            .unwrap_or("")
            .to_string())
    };
    ensure_eq(
        outcome("misbehaving::lookalike", "prints_protocol_lookalikes")?.as_str(),
        "passed",
        "a passing test printing `running 0 tests`",
    )?;
    ensure_eq(
        outcome("misbehaving::lookalike", "fakes_a_pass_then_panics")?.as_str(),
        "failed",
        "a failing test printing its own `ok`",
    )?;
    ensure_eq(
        outcome("misbehaving::silent", "hush")?.as_str(),
        "failed",
        "a harness that prints nothing",
    )?;
    ensure_field_contains(
        test(&report, "misbehaving::silent", "hush")?,
        "error",
        "printed nothing",
    )
}

const GIT_TOKEN: &str = "ghs_isotestFakeToken1";
const HEADER_TOKEN: &str = "aXNvdGVzdDpmYWtl";
const CARGO_TOKEN: &str = "cio_isotestFakeToken2";
const NETRC_TOKEN: &str = "isotestFakeNetrc3";

/// A fake HOME and CARGO_HOME full of fake tokens, and a workspace `.git/config` with the
/// `http.extraheader` that actions/checkout writes: none of it reaches the test, except
/// what the opt-in passes; `git config user.name` still answers.
fn file_borne_secrets_are_hidden(ctx: &Ctx) -> Result<(), Failed> {
    let home = ctx.scratch.path().join("home");
    let cargo_home = home.join(".cargo");
    std::fs::create_dir_all(&cargo_home)?;
    std::fs::write(
        home.join(".gitconfig"),
        format!(
            "[user]\n\tname = Ada Example\n[url \"https://x-access-token:{GIT_TOKEN}@github.com/\"]\n\tinsteadOf = https://github.com/\n"
        ),
    )?;
    std::fs::write(
        home.join(".git-credentials"),
        format!("https://u:{GIT_TOKEN}@example.com\n"),
    )?;
    std::fs::write(
        home.join(".netrc"),
        format!("machine example.com login u password {NETRC_TOKEN}\n"),
    )?;
    std::fs::write(
        cargo_home.join("config.toml"),
        format!("[registry]\ntoken = \"{CARGO_TOKEN}\"\n[term]\nverbose = false\n"),
    )?;
    std::fs::write(
        cargo_home.join("credentials.toml"),
        format!("[registry]\ntoken = \"{CARGO_TOKEN}\"\n"),
    )?;
    if let Some(user) = &ctx.user {
        chown_tree(&home, user);
    }
    let dir = fixture("misbehaving", ctx.user.as_ref());
    let git_config = dir.join(".git/config");
    std::fs::create_dir_all(dir.join(".git"))?;
    std::fs::write(
        &git_config,
        format!(
            "[core]\n\trepositoryformatversion = 0\n[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic {HEADER_TOKEN}\n"
        ),
    )?;
    let shown = |extra: &[&str]| -> Result<String, Failed> {
        let report = ctx.path(&format!("credentials{}.json", extra.len()));
        let mut cmd = ctx.isotest(&dir);
        with_home(&mut cmd, &home, &cargo_home);
        // A passing test's output is in the report only when asked for.
        cmd.args(["--test", "credentials", "--keep-passing-output"])
            .args(["--report-json", &report])
            .args(extra);
        let out = output(&mut cmd)?;
        ensure_eq(
            status_code(&out),
            Some(0),
            &format!("exit code; {}", describe(&out)),
        )?;
        let json = read_json(&report)?;
        Ok(
            test(&json, "misbehaving::credentials", "shows_credential_files")?["stdout"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    let hidden = shown(&[])?;
    for secret in [GIT_TOKEN, HEADER_TOKEN, CARGO_TOKEN, NETRC_TOKEN] {
        ensure(!hidden.contains(secret), || {
            format!("{secret} reached the test:\n{hidden}")
        })?;
    }
    ensure(hidden.contains("git-user-name=Ada Example"), || {
        format!("git config user.name must still answer:\n{hidden}")
    })?;
    let passed = shown(&["--pass-credentials"])?;
    for secret in [GIT_TOKEN, HEADER_TOKEN, CARGO_TOKEN] {
        ensure(passed.contains(secret), || {
            format!("--pass-credentials must pass {secret}:\n{passed}")
        })?;
    }
    // The same for one test through an override of the project's configuration.
    let config = ctx.scratch.path().join("pass-credentials.toml");
    std::fs::write(
        &config,
        "schema-version = 1\n\n[[profile.default.overrides]]\n\
         filter = \"test(=shows_credential_files)\"\npass-credentials = true\n",
    )?;
    if let Some(user) = &ctx.user {
        chown_tree(&config, user);
    }
    let config = config.display().to_string();
    let passed = shown(&["--config-file", &config])?;
    for secret in [GIT_TOKEN, HEADER_TOKEN, CARGO_TOKEN] {
        ensure(passed.contains(secret), || {
            format!("pass-credentials = true must pass {secret}:\n{passed}")
        })?;
    }
    std::fs::remove_dir_all(dir.join(".git"))?;
    Ok(())
}

/// Where rustup keeps the toolchain for this suite, for a runner given another HOME.
fn rustup_home() -> std::path::PathBuf {
    std::env::var_os("RUSTUP_HOME")
        .map(Into::into)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".rustup")))
        .unwrap_or_default()
}

/// The runner with `home` as HOME and `cargo_home` as CARGO_HOME, still finding its
/// toolchain (rustup's proxies look for it under HOME otherwise).
fn with_home(cmd: &mut Command, home: &Path, cargo_home: &Path) {
    cmd.env("RUSTUP_HOME", rustup_home());
    if cmd.get_envs().all(|(k, _)| k != "CARGO") {
        let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
        if let Ok(sysroot) = sysroot {
            let bin = Path::new(String::from_utf8_lossy(&sysroot.stdout).trim()).join("bin");
            cmd.env("CARGO", bin.join("cargo"))
                .env("RUSTC", bin.join("rustc"));
        }
    }
    cmd.env("HOME", home).env("CARGO_HOME", cargo_home);
}

/// `kill -9` of the helper running the only test: the run said `0 tests run` and exited 0.
fn a_lost_helper_is_never_a_pass(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("misbehaving", ctx.user.as_ref());
    let report = ctx.path("lost-helper.json");
    let mut child = ctx
        .isotest(&dir)
        .args(["--test", "sleeper", "--report-json", &report])
        .stderr(Stdio::piped())
        .spawn()?;
    let runner = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(120);
    let helper = loop {
        let sleeping = host_processes_containing("--exact sleeps_for_minutes")
            .into_iter()
            .any(|pid| crate::run::descends_from(pid, runner));
        let helpers: Vec<i32> = host_processes_containing("__sandbox-helper")
            .into_iter()
            .filter(|pid| crate::run::descends_from(*pid, runner))
            .collect();
        if sleeping && let Some(helper) = helpers.first() {
            break *helper;
        }
        ensure(Instant::now() < deadline, || {
            "the sleeper never started".into()
        })?;
        ensure(child.try_wait()?.is_none(), || {
            "the run ended before the sleeper started".into()
        })?;
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, stderr) = kill_and_wait(&mut child, helper)?;
    ensure(status.code().is_some_and(|c| c != 0), || {
        format!("a run whose helper was killed exited {status:?}:\n{stderr}")
    })?;
    let json = read_json(&report)?;
    let record = test(&json, "misbehaving::sleeper", "sleeps_for_minutes")?;
    ensure_eq(record["outcome"].as_str(), Some("failed"), "outcome")?;
    ensure_field_contains(record, "error", "SIGKILL")?;
    ensure(stderr.contains("SIGKILL"), || {
        format!("the cause must be shown:\n{stderr}")
    })
}

/// SIGKILLs `victim` (a process `child` depends on), then waits for `child`'s status and
/// stderr.
fn kill_and_wait(
    child: &mut std::process::Child,
    victim: i32,
) -> Result<(std::process::ExitStatus, String), Failed> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let status = wait_or_kill(child, Duration::from_secs(120))?;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)?;
    Ok((status, stderr))
}

/// `exec -- yes | head -1` never ended: exec drained the pipe at full CPU.
fn a_broken_pipe_ends_exec(ctx: &Ctx) -> Result<(), Failed> {
    let mut child = ctx
        .exec(&["--", "yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    // Dropping the reader is `head -1` exiting.
    ensure_eq(line.as_str(), "y\n", "first line")?;
    let status = wait_or_kill(&mut child, Duration::from_secs(60))?;
    ensure_eq(
        status.code(),
        Some(128 + libc::SIGPIPE),
        "exec's status: the program's SIGPIPE",
    )
}

/// `exec --grace GRACE` of a program that ignores SIGTERM, SIGINT and SIGHUP, once it
/// has started.
fn spawn_stubborn(ctx: &Ctx, grace: &str) -> Result<std::process::Child, Failed> {
    let mut child = ctx
        .exec(&[
            "--grace",
            grace,
            "--",
            "sh",
            "-c",
            "trap '' TERM INT HUP; echo ready; while :; do sleep 1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    ensure_eq(line.as_str(), "ready\n", "the program started")?;
    Ok(child)
}

/// A program ignoring SIGTERM kept exec alive forever after exec got SIGTERM.
fn grace_escalates_to_kill(ctx: &Ctx) -> Result<(), Failed> {
    let mut child = spawn_stubborn(ctx, "1s")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = wait_or_kill(&mut child, Duration::from_secs(60))?;
    ensure_eq(
        status.code(),
        Some(128 + libc::SIGKILL),
        "exec's status after the grace period",
    )
}

/// What a FIFO gets, read without blocking: until a writer has come and gone, or `limit`.
fn read_fifo(path: &Path, limit: Duration) -> std::io::Result<String> {
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let (mut text, mut buf) = (Vec::new(), [0u8; 4096]);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match fifo.read(&mut buf) {
            // No writer: either none yet, or the one that wrote has finished.
            Ok(0) if !text.is_empty() => break,
            Ok(0) => std::thread::sleep(Duration::from_millis(10)),
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// A second Ctrl-C kills at once, however long the grace period.
fn second_ctrl_c_kills_at_once(ctx: &Ctx) -> Result<(), Failed> {
    let mut child = spawn_stubborn(ctx, "1h")?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
    std::thread::sleep(Duration::from_millis(300));
    ensure(child.try_wait()?.is_none(), || {
        "one Ctrl-C must leave the grace period".into()
    })?;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
    let status = wait_or_kill(&mut child, Duration::from_secs(60))?;
    ensure_eq(
        status.code(),
        Some(128 + libc::SIGKILL),
        "exec's status after a second Ctrl-C",
    )
}

/// `--report-json` onto a FIFO, /dev/null and /dev/stdout replaced them with regular files
/// (as root) or failed silently with exit 0; every report was mode 0600.
fn reports_written_in_place_or_replaced(ctx: &Ctx) -> Result<(), Failed> {
    let dev = scratch_dev(ctx)?;
    let exec_report = |path: &str, stdout: Stdio| -> Result<std::process::Output, Failed> {
        let args = ["--report-json", path, "--", "true"];
        let mut cmd = match &dev {
            Some(dev) => ctx.exec_over_dev(dev, &args),
            None => ctx.exec(&args),
        };
        // SAFETY: umask is async-signal-safe and changes only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        output(cmd.stdout(stdout))
    };
    // A FIFO gets the report and stays a FIFO.
    let (fifo, reader) = fifo_with_reader(ctx, "report.fifo", Duration::from_secs(60))?;
    let out = exec_report(fifo.to_str().expect("utf-8"), Stdio::null());
    let streamed = reader.join().map_err(|_| "FIFO reader panicked")??;
    let out = out?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exec into a FIFO; {}", describe(&out)),
    )?;
    ensure(streamed.contains("isotest-exec/1"), || {
        format!("the FIFO got: {streamed}")
    })?;
    ensure(kind_of(&fifo)?.is_fifo(), || "the FIFO was replaced".into())?;
    if let Some(dev) = &dev {
        // Seen through the scratch /dev: the sandbox's caller has it at /dev.
        let out = exec_report("/dev/null", Stdio::null())?;
        ensure_eq(
            status_code(&out),
            Some(0),
            &format!("exec into /dev/null; {}", describe(&out)),
        )?;
        ensure(kind_of(&dev.join("null"))?.is_char_device(), || {
            "/dev/null was replaced".into()
        })?;
        let out = exec_report("/dev/stdout", Stdio::piped())?;
        ensure(
            String::from_utf8_lossy(&out.stdout).contains("isotest-exec/1"),
            || format!("/dev/stdout got no report; {}", describe(&out)),
        )?;
        ensure(kind_of(&dev.join("stdout"))?.is_symlink(), || {
            "/dev/stdout was replaced".into()
        })?;
    }
    // A regular file gets the umask's mode.
    let file = ctx.path("report.json");
    let out = exec_report(&file, Stdio::null())?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exec into a file; {}", describe(&out)),
    )?;
    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    ensure_eq(mode, 0o644, "a new report's mode under umask 022")?;
    // A path that cannot be written: named, with the fix, and not exit 0.
    let missing = ctx.path("no-such-dir/report.json");
    let out = exec_report(&missing, Stdio::null())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        status_code(&out) == Some(2)
            && stderr.contains(&missing)
            && stderr.contains("create the directory"),
        || format!("an unwritable report path; {}", describe(&out)),
    )
}

/// `merge`'s JSON and JUnit, `run --junit` and `archive` write as `--report-json` does:
/// into a FIFO in place, and a path that cannot be written is a usage error before any
/// work (the build, reading the shards), leaving nothing behind.
fn merge_junit_and_archive_write_the_same_way(ctx: &Ctx) -> Result<(), Failed> {
    let (junit, reader) = fifo_with_reader(ctx, "junit.fifo", Duration::from_secs(300))?;
    let junit_arg = junit.to_str().expect("utf-8");
    let (out, _, dir) = run(
        ctx,
        "misbehaving",
        &["--test", "liar", "--junit", junit_arg],
    )?;
    let streamed = reader.join().map_err(|_| "FIFO reader panicked")??;
    ensure(streamed.contains("<testsuites"), || {
        format!(
            "run --junit into a FIFO got: {streamed}; {}",
            describe(&out)
        )
    })?;
    ensure(kind_of(&junit)?.is_fifo(), || {
        "run replaced the FIFO".into()
    })?;
    let shard = ctx.path("shard.json");
    output(
        ctx.isotest(&dir)
            .args(["--test", "liar", "--report-json", &shard]),
    )?;
    let (merged, reader) = fifo_with_reader(ctx, "merged.fifo", Duration::from_secs(60))?;
    let merged_arg = merged.to_str().expect("utf-8");
    let out = output(
        ctx.isotest(&dir)
            .args(["merge", &shard, "--report-json", merged_arg]),
    )?;
    let streamed = reader.join().map_err(|_| "FIFO reader panicked")??;
    ensure(streamed.contains("isotest-report/2"), || {
        format!("merge into a FIFO got: {streamed}; {}", describe(&out))
    })?;
    ensure(kind_of(&merged)?.is_fifo(), || {
        "merge replaced the FIFO".into()
    })?;
    let missing = ctx.path("no-such-dir/out");
    for args in [
        vec!["merge", &shard, "--junit", &missing],
        vec!["archive", "--archive-file", &missing],
    ] {
        let out = output(ctx.isotest(&dir).args(&args))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure(
            status_code(&out) == Some(2)
                && stderr.contains(&missing)
                && stderr.contains("create the directory")
                && !stderr.contains("Compiling"),
            || format!("{args:?} into a missing directory; {}", describe(&out)),
        )?;
    }
    Ok(())
}

/// A FIFO in the scratch directory that the scenario's user can open, and a thread that
/// reads it for at most `limit`. Never blocking: a runner that replaces the FIFO instead
/// of opening it must fail the scenario, not hang it.
fn fifo_with_reader(
    ctx: &Ctx,
    name: &str,
    limit: Duration,
) -> Result<(PathBuf, JoinHandle<std::io::Result<String>>), Failed> {
    let fifo = ctx.scratch.path().join(name);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666))?;
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666))?;
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || read_fifo(&fifo, limit))
    };
    Ok((fifo, reader))
}

fn kind_of(path: &Path) -> std::io::Result<std::fs::FileType> {
    std::fs::symlink_metadata(path).map(|m| m.file_type())
}

/// A test with `--bind-rw` of the target directory can replace `target/isotest` with a
/// symlink; the runner followed it.
fn own_report_directory_is_not_followed(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("misbehaving", ctx.user.as_ref());
    let target = ctx.scratch.path().join("target");
    let victim = ctx.scratch.path().join("victim");
    std::fs::create_dir_all(&target)?;
    std::fs::create_dir_all(&victim)?;
    std::os::unix::fs::symlink(&victim, target.join("isotest"))?;
    if let Some(user) = &ctx.user {
        chown_tree(ctx.scratch.path(), user);
    }
    let mut cmd = ctx.isotest(&dir);
    cmd.env("CARGO_TARGET_DIR", &target)
        .args(["--test", "liar"]);
    let out = output(&mut cmd)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(std::fs::read_dir(&victim)?.next().is_none(), || {
        format!(
            "the runner wrote through the planted link; {}",
            describe(&out)
        )
    })?;
    ensure(
        status_code(&out) == Some(96) && stderr.contains("symlink") && stderr.contains("isotest"),
        || format!("the planted link must be named; {}", describe(&out)),
    )
}

/// A configuration's `report-json`, `junit` and `keep-writes` inside the target directory,
/// where a test with a writable bind of it planted links to the victim's files and
/// directory: the reports replace the links, the writes are not kept through the link,
/// and the victim is untouched, as with the flags.
fn config_paths_follow_no_planted_link(ctx: &Ctx) -> Result<(), Failed> {
    let target = ctx.scratch.path().join("target");
    let isotest = target.join("isotest");
    let victim = ctx.scratch.path().join("victim");
    std::fs::create_dir_all(&isotest)?;
    std::fs::create_dir_all(&victim)?;
    let (report_victim, junit_victim) = (victim.join("report"), victim.join("junit"));
    for file in [&report_victim, &junit_victim] {
        std::fs::write(file, "mine")?;
    }
    let kept_victim = victim.join("kept");
    std::fs::create_dir(&kept_victim)?;
    if let Some(user) = &ctx.user {
        chown_tree(ctx.scratch.path(), user);
    }
    let report = isotest.join("report.json");
    let junit = isotest.join("junit.xml");
    let writes = isotest.join("writes");
    std::os::unix::fs::symlink(&report_victim, &report)?;
    std::os::unix::fs::symlink(&junit_victim, &junit)?;
    std::os::unix::fs::symlink(&kept_victim, &writes)?;
    let config = ctx.scratch.path().join("planted.toml");
    std::fs::write(
        &config,
        format!(
            "[profile.default]\nreport-json = {report:?}\njunit = {junit:?}\n\
             keep-writes = {writes:?}\n\n\
             [[profile.default.overrides]]\nfilter = \"test(=tests::regenerates_its_sources)\"\n\
             writable-source = true\n"
        ),
    )?;
    let dir = fixture("layers", ctx.user.as_ref());
    let mut cmd = ctx.isotest(&dir);
    cmd.env("CARGO_TARGET_DIR", &target)
        .env("XDG_CONFIG_HOME", ctx.scratch.path().join("no-user-config"))
        .arg("--config-file")
        .arg(&config)
        .args(["tests::regenerates_its_sources", "--exact"]);
    let out = output(&mut cmd)?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exit code; {}", describe(&out)),
    )?;
    for file in [&report_victim, &junit_victim] {
        ensure_eq(
            std::fs::read_to_string(file)?.as_str(),
            "mine",
            &format!("{} through the planted link", file.display()),
        )?;
    }
    ensure(std::fs::read_dir(&kept_victim)?.next().is_none(), || {
        format!(
            "writes were kept through the planted link; {}",
            describe(&out)
        )
    })?;
    for file in [&report, &junit] {
        ensure(kind_of(file)?.is_file(), || {
            format!("{} is no report file of its own", file.display())
        })?;
    }
    let json = read_json(&report)?;
    let record = test(&json, "layers", "tests::regenerates_its_sources")?;
    let errors = record["writes"][0]["errors"].to_string();
    ensure(errors.contains("cannot create"), || {
        format!("the refused keep is not in the report: {errors}")
    })?;
    ensure(
        std::fs::read_to_string(&junit)?.contains("regenerates_its_sources"),
        || "the JUnit report".into(),
    )
}

/// Replay ran a crafted report's command with a writable bind and the host network after
/// printing only the command line.
fn replay_shows_relaxations_and_refuses_foreign_reports(ctx: &Ctx) -> Result<(), Failed> {
    let (_, mut report, dir) = run(
        ctx,
        "misbehaving",
        &["--test", "lookalike", "--no-fail-fast"],
    )?;
    let writable = ctx.path("writable");
    std::fs::create_dir(&writable)?;
    crate::give_to_user(ctx, &writable)?;
    let spec = &mut report["binaries"]["misbehaving::lookalike"]["spec"];
    ensure(spec.is_object(), || "no binary spec in the report".into())?;
    spec["net"] = Value::from("host");
    spec["mounts"].as_array_mut().ok_or("no mounts")?.push(
        serde_json::json!({"type": "bind", "src": writable, "dst": "/relaxed", "writable": true}),
    );
    spec["env"]["set"]["EXTRA_VARIABLE"] = Value::from("1");
    let crafted = ctx.path("crafted.json");
    std::fs::write(&crafted, serde_json::to_vec(&report)?)?;
    let replay = |dir: &Path, extra: &[&str]| -> Result<std::process::Output, Failed> {
        let mut cmd = ctx.isotest(dir);
        cmd.args(["replay", &crafted, "prints_protocol_lookalikes"])
            .args(extra);
        output(&mut cmd)
    };
    let out = replay(&dir, &[])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    for relaxation in ["--net host", "/relaxed", "EXTRA_VARIABLE"] {
        ensure(stderr.contains(relaxation), || {
            format!(
                "replay must show `{relaxation}` before running; {}",
                describe(&out)
            )
        })?;
    }
    // Elsewhere than its workspace, the report is refused without the confirming flag.
    let elsewhere = fixture("outcomes", ctx.user.as_ref());
    let refused = replay(&elsewhere, &[])?;
    ensure(
        status_code(&refused) == Some(2)
            && String::from_utf8_lossy(&refused.stderr).contains("--trust-report"),
        || {
            format!(
                "a report of another workspace must be refused; {}",
                describe(&refused)
            )
        },
    )?;
    let confirmed = replay(&elsewhere, &["--trust-report"])?;
    ensure_eq(
        status_code(&confirmed),
        Some(0),
        &format!("confirmed replay; {}", describe(&confirmed)),
    )?;
    // A changed binary is refused the same way. Only its time changes: other scenarios
    // may be running it.
    let binary = record_binary(&report)?;
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        Path::new(&binary),
        &nix::sys::time::TimeSpec::UTIME_NOW,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )?;
    let changed = replay(&dir, &[])?;
    ensure(
        status_code(&changed) == Some(2)
            && String::from_utf8_lossy(&changed.stderr).contains("changed"),
        || format!("a changed binary must be refused; {}", describe(&changed)),
    )
}

fn record_binary(report: &Value) -> Result<String, Failed> {
    let record = report["tests"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "prints_protocol_lookalikes"))
        .ok_or("no record")?;
    Ok(record["argv"][0].as_str().ok_or("no argv")?.to_string())
}

/// Each a clear error naming the problem and the fix, exit code 2.
fn bad_exec_input_is_a_usage_error(ctx: &Ctx) -> Result<(), Failed> {
    let usage = |args: &[&str], env: &[(&str, &str)], says: &str| -> Result<(), Failed> {
        let mut cmd = ctx.exec(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = output(&mut cmd)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure(
            status_code(&out) == Some(2) && stderr.contains(says),
            || {
                format!(
                    "{args:?} {env:?} must be a usage error saying `{says}`; {}",
                    describe(&out)
                )
            },
        )
    };
    usage(&["--env", "A B=1", "--", "true"], &[], "A B")?;
    usage(&["--timeout", "0", "--", "true"], &[], "--timeout")?;
    usage(&["--", "true"], &[("HOME", "/usr")], "HOME")?;
    usage(&["--", "true"], &[("HOME", "/etc")], "HOME")?;
    // The init killed after the sandbox started (nothing inside can kill it; the host
    // can) is not a sandbox that could not be created.
    let mut child = ctx
        .exec(&["--", "sh", "-c", "echo ready; sleep 60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let exec = child.id() as i32;
    let init = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .and_then(|(_, f)| f.split_whitespace().nth(1)?.parse::<i32>().ok())
                == Some(exec)
        })
        .ok_or("no sandbox init under exec")?;
    let (status, stderr) = kill_and_wait(&mut child, init)?;
    ensure(
        status.code() == Some(128 + libc::SIGKILL)
            && stderr.contains("killed")
            && !stderr.contains("could not be created"),
        || format!("init killed from the host: {status:?}\n{stderr}"),
    )
}

/// Truncated and empty reports, a missing test, a missing bind source.
fn bad_reports_and_names_in_replay(ctx: &Ctx) -> Result<(), Failed> {
    let (_, report, dir) = run(
        ctx,
        "misbehaving",
        &["--test", "lookalike", "--no-fail-fast"],
    )?;
    let text = serde_json::to_string(&report)?;
    let replay = |path: &str, name: &str| -> Result<std::process::Output, Failed> {
        output(ctx.isotest(&dir).args(["replay", path, name]))
    };
    let says = |out: &std::process::Output, code: i32, text: &str| -> Result<(), Failed> {
        ensure(
            status_code(out) == Some(code) && String::from_utf8_lossy(&out.stderr).contains(text),
            || format!("expected exit {code} saying `{text}`; {}", describe(out)),
        )
    };
    let truncated = ctx.path("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2])?;
    says(
        &replay(&truncated, "prints_protocol_lookalikes")?,
        2,
        "truncated",
    )?;
    let empty = ctx.path("empty.json");
    std::fs::write(&empty, "")?;
    says(&replay(&empty, "prints_protocol_lookalikes")?, 2, "empty")?;
    let whole = ctx.path("whole.json");
    std::fs::write(&whole, &text)?;
    says(
        &replay(&whole, "prints_protocol_lookalikez")?,
        2,
        "prints_protocol_lookalikes",
    )?;
    says(&replay(&whole, "no_such_test")?, 2, "closest")?;
    let gone = ctx.path("gone");
    let mut crafted = report.clone();
    for binary in crafted["binaries"]
        .as_object_mut()
        .ok_or("no binaries")?
        .values_mut()
    {
        if let Some(mounts) = binary["spec"]["mounts"].as_array_mut() {
            mounts.push(
                serde_json::json!({"type": "bind", "src": gone, "dst": "/gone", "writable": false}),
            );
        }
    }
    std::fs::write(&whole, serde_json::to_vec(&crafted)?)?;
    let out = output(ctx.isotest(&dir).args([
        "replay",
        &whole,
        "prints_protocol_lookalikes",
        "--trust-report",
    ]))?;
    says(&out, 2, &gone)
}

/// In a directory that is not a cargo project, `run` says how to point at one; a HOME
/// inside the target directory would hide the test binaries.
fn outside_a_cargo_project(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("misbehaving", ctx.user.as_ref());
    let home = dir.join("target");
    let out = output(
        ctx.isotest(&dir)
            .env("HOME", &home)
            .env("RUSTUP_HOME", rustup_home())
            .args(["--test", "liar"]),
    )?;
    ensure(
        status_code(&out) == Some(2) && String::from_utf8_lossy(&out.stderr).contains("HOME"),
        || format!("HOME at the target directory; {}", describe(&out)),
    )?;
    let out = output(&mut ctx.isotest(ctx.scratch.path()))?;
    ensure(
        status_code(&out) == Some(2)
            && String::from_utf8_lossy(&out.stderr).contains("--manifest-path"),
        || format!("outside a cargo project; {}", describe(&out)),
    )
}

/// A test with a writable bind of the keep directory plants a link where its overlay's
/// writes are about to be kept: the supervisor (root, when root runs it) copies them
/// only into a directory it made, never through the link. What it leaves in the bind, a
/// FIFO nobody writes and a link to `/`, is listed and kept without being read or
/// followed.
fn keeping_follows_no_link_the_test_planted(ctx: &Ctx) -> Result<(), Failed> {
    let (keep, victim, source) = (ctx.path("keep"), ctx.path("victim"), ctx.path("src"));
    for dir in [&keep, &victim, &source] {
        std::fs::create_dir(dir)?;
        crate::give_to_user(ctx, dir)?;
    }
    let report = ctx.path("keep.json");
    let script = format!(
        "ln -s {victim} /k/layer-0 && echo payload > /w/planted && mkfifo /k/fifo && ln -s / /k/up"
    );
    let out = output(&mut ctx.exec(&[
        "--bind-rw",
        &format!("{keep}:/k"),
        "--overlay",
        &format!("{source}:/w"),
        "--keep-writes",
        &keep,
        "--report-json",
        &report,
        "--",
        "sh",
        "-c",
        &script,
    ]))?;
    ensure_eq(status_code(&out), Some(0), "exit code")?;
    ensure(std::fs::read_dir(&victim)?.next().is_none(), || {
        format!(
            "the kept writes went through the planted link; {}",
            describe(&out)
        )
    })?;
    let json = read_json(&report)?;
    let overlay = json["writes"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["layer"] == "overlay"))
        .ok_or_else(|| format!("no overlay layer in {}", json["writes"]))?;
    let errors = overlay["errors"].to_string();
    ensure(errors.contains("layer-0: cannot create"), || {
        format!("the refusal is not in the report: {errors}")
    })?;
    let bind = json["writes"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["layer"] == "bind"))
        .ok_or_else(|| format!("no bind layer in {}", json["writes"]))?;
    let kinds: Vec<(String, String)> = bind["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["path"].to_string(), c["kind"].to_string()))
        .collect();
    ensure(
        kinds.contains(&("\"fifo\"".into(), "\"other\"".into()))
            && kinds.contains(&("\"up\"".into(), "\"symlink\"".into())),
        || format!("the bind's list: {kinds:?}"),
    )?;
    let kept = Path::new(bind["kept"].as_str().unwrap_or_default());
    ensure_eq(
        std::fs::read_link(kept.join("up"))?,
        PathBuf::from("/"),
        "the kept link",
    )?;
    ensure(!kept.join("fifo").exists(), || {
        "a FIFO is not a file to keep".into()
    })
}

/// `--forward-unix` resolves its socket once; a test with a writable bind of the socket's
/// directory may swap it afterwards, for a link to another socket (to hand a later
/// sandbox, say, the Docker socket) or for a file. The spec such a sandbox runs is
/// replayed here after the swap: setup refuses the link, validation the file.
fn a_swapped_socket_is_refused(ctx: &Ctx) -> Result<(), Failed> {
    let dir = ctx.path("sockets");
    std::fs::create_dir(&dir)?;
    crate::give_to_user(ctx, &dir)?;
    let (socket, other) = (format!("{dir}/app.sock"), format!("{dir}/other.sock"));
    let _listeners = (
        std::os::unix::net::UnixListener::bind(&socket)?,
        std::os::unix::net::UnixListener::bind(&other)?,
    );
    let report = ctx.path("socket.json");
    let made = output(&mut ctx.exec(&[
        "--forward-unix",
        &socket,
        "--report-json",
        &report,
        "--",
        "true",
    ]))?;
    ensure_eq(status_code(&made), Some(0), "exit code with the socket")?;
    let spec = read_json(&report)?["spec"].to_string();
    let replay = |what: &str| -> Result<std::process::Output, Failed> {
        let mut cmd = ctx.command(ctx.isotest_path(), ctx.scratch.path());
        cmd.arg("__exec-spec").env("ISOTEST_EXEC_SPEC", &spec);
        let out = output(&mut cmd)?;
        ensure(!out.status.success(), || {
            format!(
                "a sandbox ran with {what} in place of the socket; {}",
                describe(&out)
            )
        })?;
        Ok(out)
    };
    std::fs::remove_file(&socket)?;
    std::os::unix::fs::symlink(&other, &socket)?;
    let linked = replay("a link")?;
    ensure_eq(status_code(&linked), Some(2), "exit code with a link")?;
    ensure(
        String::from_utf8_lossy(&linked.stderr).contains("is a symlink or no socket now"),
        || format!("setup must refuse the link itself; {}", describe(&linked)),
    )?;
    std::fs::remove_file(&socket)?;
    std::fs::write(&socket, "not a socket")?;
    let file = replay("a file")?;
    ensure(
        String::from_utf8_lossy(&file.stderr).contains("not a Unix socket"),
        || describe(&file),
    )
}

/// `run --writable-source` (with `--net-admin` too): the test that writes into its source
/// tree passes, since its write lands in the overlay; the checkout, the host's sysctls,
/// device nodes and mount table are as they were.
fn writable_source_and_net_admin_change_nothing_of_the_host(ctx: &Ctx) -> Result<(), Failed> {
    let before = HostState::take(None);
    let name = "writes_to_source_dir";
    for extra in [&[][..], &["--net-admin"][..]] {
        let mut args = vec!["--writable-source"];
        args.extend(extra);
        args.extend([name, "--exact"]);
        let (out, report, dir) = run(ctx, "isolation", &args)?;
        ensure_eq(
            test(&report, "isolation", name)?["outcome"].as_str(),
            Some("passed"),
            &format!("{name} with {extra:?}; {}", describe(&out)),
        )?;
        ensure(!dir.join("written-by-test.txt").exists(), || {
            format!("the write reached the checkout with {extra:?}")
        })?;
    }
    HostState::take(None).unchanged_since(&before)
}
