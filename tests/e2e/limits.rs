//! Resource limits: a test past its limit fails with the limit named, the runner stays
//! responsive, and the host keeps nothing of it: no process, no cgroup. As root the
//! limits are cgroup v1's here; as the unprivileged user, the pid 1 fallback's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use serde_json::Value;

use crate::ctx::{Ctx, describe, ensure, ensure_eq, output, read_json, status_code};
use crate::run::{ensure_field_contains, run, test};
use crate::sandbox::Scenario;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "fork_storm_stops_at_the_process_limit",
        fork_storm_stops_at_the_process_limit,
    ),
    (
        "a_gibibyte_stops_at_the_memory_limit",
        a_gibibyte_stops_at_the_memory_limit,
    ),
    ("tmp_fills_to_its_size", tmp_fills_to_its_size),
    ("every_test_is_accounted", every_test_is_accounted),
    (
        "tests_sharing_a_slot_each_get_their_own_peak",
        tests_sharing_a_slot_each_get_their_own_peak,
    ),
    ("exec_names_the_limit", exec_names_the_limit),
    ("limits_are_visible_inside", limits_are_visible_inside),
    (
        "cpu_max_throttles_or_says_it_cannot",
        cpu_max_throttles_or_says_it_cannot,
    ),
    (
        "sigkill_of_the_runner_leaves_no_cgroup",
        sigkill_of_the_runner_leaves_no_cgroup,
    ),
    (
        "ctrl_c_of_the_runner_leaves_no_cgroup",
        ctrl_c_of_the_runner_leaves_no_cgroup,
    ),
];

/// The mechanism this host gives the scenario's user.
fn expected_mechanism(ctx: &Ctx) -> &'static str {
    if ctx.user.is_none() && nix::unistd::geteuid().is_root() {
        "cgroup-v1"
    } else {
        "fallback"
    }
}

/// Runs one `limits` fixture test with `flags`, expecting it to fail, and checks what
/// every limit scenario promises: the limit named in the record, JUnit and terminal, a
/// hint naming the flag, a runner that finished in good time, and a clean host.
fn stopped_by(
    ctx: &Ctx,
    name: &str,
    flags: &[&str],
    words: &str,
    flag: &str,
    mechanism: &str,
) -> Result<Value, Failed> {
    let junit = ctx.path(&format!("{name}.xml"));
    let mut args = vec!["--test", "hostile", name, "--exact", "--junit", &junit];
    args.extend(flags);
    let started = Instant::now();
    let (out, report, _) = run(ctx, "limits", &args)?;
    // Building the fixture is most of it; a test stuck at its limit would take minutes.
    ensure(started.elapsed() < Duration::from_secs(240), || {
        format!("the run took {:?}", started.elapsed())
    })?;
    ensure_eq(status_code(&out), Some(100), "exit code of a failed run")?;
    let record = test(&report, "limits::hostile", name)?.clone();
    ensure_eq(record["outcome"].as_str(), Some("failed"), "outcome")?;
    ensure_field_contains(&record, "error", words)?;
    ensure_field_contains(&record, "failure_message", words)?;
    ensure_field_contains(&record, "hint", flag)?;
    ensure_eq(
        record["resources"]["mechanism"].as_str(),
        Some(mechanism),
        "mechanism",
    )?;
    let xml = std::fs::read_to_string(&junit)?;
    ensure(
        xml.contains(r#"type="limit-exceeded""#) && xml.contains(words),
        || format!("JUnit lacks the limit failure:\n{xml}"),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(stdout.contains(words) || stderr.contains(words), || {
        format!("the terminal does not name the limit; {}", describe(&out))
    })?;
    host_is_clean()?;
    Ok(record)
}

fn fork_storm_stops_at_the_process_limit(ctx: &Ctx) -> Result<(), Failed> {
    let record = stopped_by(
        ctx,
        "fork_storm",
        &["--pids-max", "200"],
        "exceeded process limit 200",
        "--pids-max",
        expected_mechanism(ctx),
    )?;
    ensure_eq(
        record["limit_exceeded"]["kind"].as_str(),
        Some("processes"),
        "limit_exceeded.kind",
    )?;
    let most = record["resources"]["max_processes"].as_u64().unwrap_or(0);
    // The fallback watches; as root nothing in the kernel stops forks, so it may see a
    // few past the limit before it kills the sandbox.
    ensure((190..=260).contains(&most), || {
        format!("max_processes {most} is not near the limit of 200")
    })
}

fn a_gibibyte_stops_at_the_memory_limit(ctx: &Ctx) -> Result<(), Failed> {
    let record = stopped_by(
        ctx,
        "allocates_a_gibibyte",
        &["--memory-max", "256M"],
        "exceeded memory limit 256 MiB (peak ",
        "--memory-max",
        expected_mechanism(ctx),
    )?;
    // The fallback samples: on a loaded machine a fast allocation gets further past the
    // limit before pid 1 looks, but never to the whole gibibyte.
    let peak = record["resources"]["peak_memory_bytes"]
        .as_u64()
        .unwrap_or(0);
    ensure((200 << 20..1 << 30).contains(&peak), || {
        format!("peak_memory_bytes {peak} is not between the limit of 256 MiB and 1 GiB")
    })
}

fn tmp_fills_to_its_size(ctx: &Ctx) -> Result<(), Failed> {
    let record = stopped_by(
        ctx,
        "fills_tmp",
        &["--tmpfs-size", "16M"],
        "filled the tmpfs at /tmp (limit 16 MiB)",
        "--tmpfs-size",
        "fallback",
    )?;
    ensure_eq(
        record["resources"]["tmpfs_peak_bytes"].as_u64(),
        Some(16 << 20),
        "tmpfs_peak_bytes",
    )
}

fn every_test_is_accounted(ctx: &Ctx) -> Result<(), Failed> {
    let junit = ctx.path("modest.xml");
    let (out, report, _) = run(ctx, "limits", &["modest", "--junit", &junit])?;
    ensure(out.status.success(), || describe(&out))?;
    let record = test(&report, "limits::hostile", "modest")?;
    let resources = &record["resources"];
    let peak = resources["peak_memory_bytes"].as_u64().unwrap_or(0);
    ensure(peak >= 8 << 20, || {
        format!("peak {peak} below the 8 MiB it used")
    })?;
    ensure(
        resources["tmpfs_peak_bytes"].as_u64().unwrap_or(0) >= 1 << 20,
        || format!("tmpfs_peak_bytes misses the 1 MiB written: {resources}"),
    )?;
    ensure(
        resources["max_processes"].as_u64().unwrap_or(0) >= 1,
        || format!("max_processes: {resources}"),
    )?;
    ensure(
        resources["cpu_user_ms"].is_u64() && resources["cpu_system_ms"].is_u64(),
        || format!("cpu times: {resources}"),
    )?;
    let xml = std::fs::read_to_string(&junit)?;
    ensure(xml.contains(r#"name="isotest.peak_memory_bytes""#), || {
        format!("JUnit has no resource properties:\n{xml}")
    })?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("HEAVIEST"),
        || format!("no heaviest tests in the summary; {}", describe(&out)),
    )
}

/// One helper (`-j 1`) runs both tests in turn; as root they share its slot's v1 memory
/// cgroup, whose peak is reset between them: the gibibyte's is not the next test's. The
/// slot goes with the run.
fn tests_sharing_a_slot_each_get_their_own_peak(ctx: &Ctx) -> Result<(), Failed> {
    let args = [
        "--test",
        "hostile",
        "--exact",
        "allocates_a_gibibyte",
        "modest",
        "-j",
        "1",
        "--memory-max",
        "2G",
    ];
    let (out, report, _) = run(ctx, "limits", &args)?;
    ensure(out.status.success(), || describe(&out))?;
    let peak = |name: &str| -> Result<u64, Failed> {
        let record = test(&report, "limits::hostile", name)?;
        ensure_eq(
            record["resources"]["mechanism"].as_str(),
            Some(expected_mechanism(ctx)),
            "mechanism",
        )?;
        Ok(record["resources"]["peak_memory_bytes"]
            .as_u64()
            .unwrap_or(0))
    };
    let (big, small) = (peak("allocates_a_gibibyte")?, peak("modest")?);
    // The fallback samples, and may miss the last few chunks before the test ends.
    ensure(big >= 512 << 20, || {
        format!("the gibibyte's peak {big} is below half of it")
    })?;
    ensure((8 << 20..256 << 20).contains(&small), || {
        format!("modest's peak {small} is not its own 8 MiB or so (the gibibyte's was {big})")
    })?;
    host_is_clean()
}

fn exec_names_the_limit(ctx: &Ctx) -> Result<(), Failed> {
    let report = ctx.path("storm.json");
    let out = output(&mut ctx.probe(
        &["--pids-max", "50", "--report-json", &report],
        &["fork-storm", "120"],
    ))?;
    ensure(!out.status.success(), || describe(&out))?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("exceeded process limit 50"),
        || describe(&out),
    )?;
    let json = read_json(&report)?;
    ensure_eq(
        json["limit_exceeded"]["kind"].as_str(),
        Some("processes"),
        "exec report's limit_exceeded",
    )?;
    ensure_eq(
        json["resources"]["mechanism"].as_str(),
        Some(expected_mechanism(ctx)),
        "exec report's mechanism",
    )?;
    host_is_clean()
}

fn sigkill_of_the_runner_leaves_no_cgroup(ctx: &Ctx) -> Result<(), Failed> {
    runner_stopped_leaves_no_cgroup(ctx, nix::sys::signal::Signal::SIGKILL)
}

fn ctrl_c_of_the_runner_leaves_no_cgroup(ctx: &Ctx) -> Result<(), Failed> {
    runner_stopped_leaves_no_cgroup(ctx, nix::sys::signal::Signal::SIGINT)
}

/// A test can see its own limits: under cgroups in its own /sys/fs/cgroup, rooted at the
/// sandbox's cgroup; under the fallback as its process rlimit.
fn limits_are_visible_inside(ctx: &Ctx) -> Result<(), Failed> {
    let script = if expected_mechanism(ctx) == "fallback" {
        "grep 'Max processes' /proc/self/limits"
    } else {
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes; \
         grep -E ':(pids|memory):' /proc/self/cgroup"
    };
    let out = output(&mut ctx.exec(&[
        "--pids-max",
        "50",
        "--memory-max",
        "64M",
        "--",
        "sh",
        "-c",
        script,
    ]))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let shows = if expected_mechanism(ctx) == "fallback" {
        stdout.split_whitespace().collect::<Vec<_>>()
            == ["Max", "processes", "50", "50", "processes"]
    } else {
        stdout.starts_with(&format!("50\n{}\n", 64 << 20))
    };
    ensure(shows, || describe(&out))?;
    if expected_mechanism(ctx) != "fallback" {
        ensure(
            stdout.contains(":pids:/\n") && stdout.contains(":memory:/\n"),
            || format!("the sandbox's cgroups are not its root; {}", describe(&out)),
        )?;
    }
    Ok(())
}

/// A second of busy loop under a fifth of a CPU: cgroups give it about 200 ms of CPU; the
/// fallback cannot throttle, and says so on stderr and in the record.
fn cpu_max_throttles_or_says_it_cannot(ctx: &Ctx) -> Result<(), Failed> {
    let report = ctx.path("cpu.json");
    let out = output(&mut ctx.exec(&[
        "--cpu-max",
        "0.2",
        "--report-json",
        &report,
        "--",
        "timeout",
        "1",
        "sh",
        "-c",
        "while :; do :; done",
    ]))?;
    let json = read_json(&report)?;
    let resources = &json["resources"];
    let cpu = resources["cpu_user_ms"].as_u64().unwrap_or(0)
        + resources["cpu_system_ms"].as_u64().unwrap_or(0);
    if expected_mechanism(ctx) == "fallback" {
        ensure_eq(
            resources["unenforced"].clone(),
            serde_json::json!(["cpu_max_millis"]),
            "unenforced",
        )?;
        ensure(
            String::from_utf8_lossy(&out.stderr).contains("--cpu-max is not enforced"),
            || describe(&out),
        )
    } else {
        ensure((100..=450).contains(&cpu), || {
            format!("a fifth of a CPU for a second used {cpu} ms: {resources}")
        })
    }
}

/// A limited test running when the runner gets `signal`: its cgroup goes anyway.
fn runner_stopped_leaves_no_cgroup(
    ctx: &Ctx,
    signal: nix::sys::signal::Signal,
) -> Result<(), Failed> {
    let dir = crate::ctx::fixture("misbehaving", ctx.user.as_ref());
    let mut child = ctx
        .isotest(&dir)
        .args([
            "--test",
            "sleeper",
            "--memory-max",
            "512M",
            "--pids-max",
            "64",
        ])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let runner = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(120);
    let helpers = loop {
        let sleeping = crate::sandbox::host_processes_containing("--exact sleeps_for_minutes")
            .into_iter()
            .any(|pid| crate::run::descends_from(pid, runner));
        let helpers: Vec<i32> = crate::sandbox::host_processes_containing("__sandbox-helper")
            .into_iter()
            .filter(|pid| crate::run::descends_from(*pid, runner))
            .collect();
        if sleeping && !helpers.is_empty() {
            break helpers;
        }
        ensure(Instant::now() < deadline, || {
            "the sleeper never started".into()
        })?;
        ensure(child.try_wait()?.is_none(), || {
            "cargo-isotest ended before the sleeper started".into()
        })?;
        std::thread::sleep(Duration::from_millis(50));
    };
    if expected_mechanism(ctx) != "fallback" {
        ensure(!cgroups_of(&helpers).is_empty(), || {
            format!("no cgroup of the helpers {helpers:?} while the sleeper runs")
        })?;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(runner), signal)?;
    child.wait()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = cgroups_of(&helpers);
        if left.is_empty() {
            break;
        }
        ensure(Instant::now() < deadline, || {
            format!("cgroups outlived the runner stopped by {signal}: {left:?}")
        })?;
        std::thread::sleep(Duration::from_millis(50));
    }
    host_is_clean()
}

/// Every sandbox cgroup on the host (`isotest.<owner pid>.<n>`), with its owner.
fn sandbox_cgroups() -> Vec<(i32, PathBuf)> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<(i32, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name
                .strip_prefix("isotest.")
                .and_then(|rest| rest.split('.').next()?.parse::<i32>().ok());
            match owner {
                Some(pid) => found.push((pid, path)),
                None if depth > 0 => walk(&path, depth - 1, found),
                None => {}
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 4, &mut found);
    found
}

fn cgroups_of(owners: &[i32]) -> Vec<PathBuf> {
    sandbox_cgroups()
        .into_iter()
        .filter(|(pid, _)| owners.contains(pid))
        .map(|(_, path)| path)
        .collect()
}

/// No sandbox cgroup whose owner is dead: each is removed when its sandbox ends, and by
/// the owner's janitor when the owner is killed.
fn host_is_clean() -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stale: Vec<PathBuf> = sandbox_cgroups()
            .into_iter()
            .filter(|(pid, _)| !Path::new(&format!("/proc/{pid}")).exists())
            .map(|(_, path)| path)
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        ensure(Instant::now() < deadline, || {
            format!("cgroups left behind by dead owners: {stale:?}")
        })?;
        std::thread::sleep(Duration::from_millis(50));
    }
}
