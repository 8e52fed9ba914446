//! `--chaos`: each kind is seen from inside the test, recorded in the report, and applied
//! again by `replay`; and `bisect` names a planted polluter.

use libtest_mimic::Failed;
use serde_json::Value;

use crate::ctx::{Ctx, describe, ensure, ensure_eq, output, status_code};
use crate::run::{run, run_keeping_report, test};
use crate::sandbox::Scenario;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    ("cpus_is_the_affinity_mask", cpus),
    ("uptime_is_a_time_namespace", uptime),
    ("resources_are_low_limits", resources),
    ("neighbours_are_busy_threads_of_init", neighbours),
    ("sched_pauses_and_freezes_threads", sched),
    ("net_without_forwards_says_why_it_is_skipped", net),
    ("net_delays_forwarded_connections", net_forwarded),
    ("stress_rates_per_perturbation", stress_rates),
    (
        "bisect_names_the_planted_polluter",
        bisect_names_the_polluter,
    ),
];

const OBSERVE: (&str, &str) = ("flaky-corpus::observe", "observe_chaos");

/// Runs the observing test once with `--chaos KIND`; returns what it saw, its record's
/// perturbation, and what it saw when replayed.
fn observe(ctx: &Ctx, kind: &str) -> Result<(Seen, Value, Seen, String), Failed> {
    observe_with(ctx, kind, &[])
}

/// [`observe`], with more flags for the run (the replay takes them from the report).
fn observe_with(
    ctx: &Ctx,
    kind: &str,
    flags: &[&str],
) -> Result<(Seen, Value, Seen, String), Failed> {
    let mut args = vec![
        "--test",
        "observe",
        "--chaos",
        kind,
        "--keep-passing-output",
    ];
    args.extend(flags);
    args.extend(["--exact", OBSERVE.1]);
    let (out, report, dir, path) = run_keeping_report(ctx, "flaky-corpus", &args)?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let record = test(&report, OBSERVE.0, OBSERVE.1)?;
    let seen = Seen::parse(record["stdout"].as_str().unwrap_or_default());
    let perturbation = record["perturbation"].clone();
    ensure(!perturbation.is_null(), || {
        format!("no perturbation in {record}")
    })?;
    let replay = output(ctx.isotest(&dir).args(["replay", &path, OBSERVE.1]))?;
    ensure_eq(status_code(&replay), Some(0), &describe(&replay))?;
    let replayed = Seen::parse(&String::from_utf8_lossy(&replay.stdout));
    let stderr = String::from_utf8_lossy(&replay.stderr).into_owned();
    Ok((seen, perturbation, replayed, stderr))
}

struct Seen(Vec<(String, u64)>, String);

impl Seen {
    fn parse(text: &str) -> Seen {
        Seen(
            text.lines()
                .filter_map(|l| l.split_once("CHAOS ").map(|(_, kv)| kv))
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect(),
            text.to_string(),
        )
    }

    fn get(&self, key: &str) -> Result<u64, Failed> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("the test did not report {key}:\n{}", self.1).into())
    }
}

/// The mask, and the batch policy that comes with one CPU in half the draws: seeds are
/// tried until one draws it, and every draw is checked on the way.
fn cpus(ctx: &Ctx) -> Result<(), Failed> {
    for seed in 1..=24 {
        let shuffle = format!("--shuffle={seed}");
        let (seen, p, replayed, _) = observe_with(ctx, "cpus", &[&shuffle])?;
        let drawn = p["cpus"].as_array().ok_or("no cpus recorded")?.len() as u64;
        ensure_eq(seen.get("cpus")?, drawn, "available_parallelism inside")?;
        ensure_eq(
            replayed.get("cpus")?,
            drawn,
            "available_parallelism on replay",
        )?;
        let batch = p["batch"].as_bool().unwrap_or(false);
        let policy = if batch { 3 } else { 0 };
        ensure_eq(
            seen.get("policy")?,
            policy,
            &format!("the policy under {p}"),
        )?;
        ensure_eq(replayed.get("policy")?, policy, "the policy on replay")?;
        if batch {
            return Ok(());
        }
    }
    Err("no seed from 1 to 24 drew one CPU with SCHED_BATCH".into())
}

/// Also with `--pid host`, whose /proc is the host's, read-only: the clocks' offsets are
/// written before the pivot.
fn uptime(ctx: &Ctx) -> Result<(), Failed> {
    for options in [&[][..], &["--pid", "host"]] {
        let (seen, p, replayed, _) = observe_with(ctx, "uptime", options)?;
        let drawn = p["uptime_s"].as_u64().ok_or("no uptime recorded")?;
        let near = |seen: u64| seen >= drawn && seen <= drawn + 3;
        ensure(near(seen.get("uptime_s")?), || {
            format!(
                "{options:?}: drawn {drawn}, seen {:?}",
                seen.get("uptime_s")
            )
        })?;
        ensure(near(replayed.get("uptime_s")?), || {
            format!(
                "{options:?}: drawn {drawn}, replayed {:?}",
                replayed.get("uptime_s")
            )
        })?;
    }
    Ok(())
}

fn resources(ctx: &Ctx) -> Result<(), Failed> {
    let (seen, p, replayed, _) = observe(ctx, "resources")?;
    for (key, recorded) in [("open_files", "open_files"), ("tmpfs_size", "tmpfs_size")] {
        let drawn = p[recorded].as_u64().ok_or("not recorded")?;
        ensure_eq(seen.get(key)?, drawn, key)?;
        ensure_eq(replayed.get(key)?, drawn, key)?;
    }
    Ok(())
}

/// Busy threads of pid 1, each pinned to one of the sandbox's CPUs, in bursts or as the
/// loaded machine that a third of the draws give: seeds are tried until both came, in
/// the run and in its replay.
fn neighbours(ctx: &Ctx) -> Result<(), Failed> {
    let (mut bursts, mut loaded) = (false, false);
    for seed in 1..=16 {
        let shuffle = format!("--shuffle={seed}");
        let (seen, p, replayed, stderr) = observe_with(ctx, "neighbours", &[&shuffle])?;
        let drawn = p["neighbours"].as_u64().ok_or("no neighbours recorded")?;
        let per_cpu = p["loaded_per_cpu"].as_u64();
        for (when, seen) in [("run", &seen), ("replay", &replayed)] {
            ensure_eq(
                seen.get("neighbours")?,
                drawn,
                &format!("{when}: busy threads"),
            )?;
            ensure_eq(
                seen.get("neighbours_pinned")?,
                1,
                &format!("{when}: pinned"),
            )?;
            // Bursts rest as long as they spin; a loaded machine's neighbours never do.
            let rested = seen.get("neighbours_rested")? == 1;
            ensure(per_cpu.is_none() == rested, || {
                format!("{when}: the neighbours rested: {rested}, under {p}")
            })?;
        }
        if let Some(per_cpu) = per_cpu {
            let said = stderr.contains(&format!("{drawn} full-duty neighbour"))
                && stderr.contains(&format!("({per_cpu} per CPU)"));
            ensure(said, || format!("replay said:\n{stderr}"))?;
        }
        bursts |= per_cpu.is_none();
        loaded |= per_cpu.is_some();
        if bursts && loaded {
            return Ok(());
        }
    }
    Err(format!("seeds 1 to 16 drew bursts: {bursts}, a loaded machine: {loaded}").into())
}

fn sched(ctx: &Ctx) -> Result<(), Failed> {
    let (seen, p, replayed, stderr) = observe(ctx, "sched")?;
    let pauses = &p["pauses"];
    ensure(pauses["threads"].as_u64() > Some(0), || format!("{p}"))?;
    for seen in [&seen, &replayed] {
        ensure(
            seen.get("frozen_seen")? == 1 || seen.get("max_gap_ms")? >= 5,
            || format!("no pause seen: {:?}", seen.0),
        )?;
    }
    let line = format!("{} thread freezes", pauses["threads"]);
    ensure(stderr.contains(&line), || format!("replay said:\n{stderr}"))
}

fn net(ctx: &Ctx) -> Result<(), Failed> {
    let (_, p, _, _) = observe(ctx, "net")?;
    let reason = p["skipped"]["net"].as_str().unwrap_or_default();
    ensure(
        reason.contains("sch_netem") && reason.contains("--forward"),
        || format!("{p}"),
    )
}

/// The request and the reply each wait the drawn delay in the relay, in the run and
/// again in its replay. Seeds are tried in turn until one draws a delay of 20 ms or
/// more, which no loopback round trip comes near by itself.
fn net_forwarded(ctx: &Ctx) -> Result<(), Failed> {
    for seed in 1..=12 {
        let address = crate::layers::echo_server(2)?;
        let env = format!("CHAOS_FORWARD={address}");
        let shuffle = format!("--shuffle={seed}");
        let flags = ["--forward", &address, "--env", &env, &shuffle];
        let (seen, p, replayed, _) = observe_with(ctx, "net", &flags)?;
        ensure(p["skipped"].get("net").is_none(), || format!("{p}"))?;
        let delay = p["net"]["delay_ms"]
            .as_u64()
            .ok_or_else(|| format!("no net delay recorded: {p}"))?;
        if delay < 20 {
            continue;
        }
        for (when, seen) in [("run", &seen), ("replay", &replayed)] {
            let took = seen.get("round_trip_ms")?;
            ensure(took >= 2 * delay, || {
                format!("{when}: a round trip of {took} ms under a delay of {delay} ms each way")
            })?;
        }
        return Ok(());
    }
    Err("no seed from 1 to 12 drew a net delay of 20 ms or more".into())
}

fn stress_rates(ctx: &Ctx) -> Result<(), Failed> {
    let (out, report, _) = run(
        ctx,
        "flaky-corpus",
        &[
            "--lib",
            "--stress",
            "30",
            "--chaos",
            "uptime,cpus",
            "--exact",
            "corpus::counts_events_of_the_last_five_minutes",
            "--color",
            "never",
        ],
    )?;
    ensure_eq(status_code(&out), Some(100), &describe(&out))?;
    let record = test(
        &report,
        "flaky-corpus",
        "corpus::counts_events_of_the_last_five_minutes",
    )?;
    let chaos = &record["stress"]["chaos"];
    let low = chaos["levels"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["level"] == "uptime < 60 s"))
        .ok_or_else(|| format!("no uptime level: {chaos}"))?;
    ensure_eq(
        low["failure_rate"].as_f64(),
        Some(1.0),
        "fails whenever young",
    )?;
    let smallest = chaos["smallest"]["description"]
        .as_str()
        .unwrap_or_default();
    ensure(smallest.starts_with("uptime "), || format!("{chaos}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        stderr.contains("smallest perturbation that reproduced it: attempt"),
        || stderr.to_string(),
    )
}

fn bisect_names_the_polluter(ctx: &Ctx) -> Result<(), Failed> {
    let shared = ctx.path("shared");
    std::fs::create_dir_all(&shared)?;
    crate::give_to_user(ctx, &shared)?;
    let env = format!("FLAKY_SHARED_DIR={shared}");
    let (out, report, dir, path) = run_keeping_report(
        ctx,
        "flaky-corpus",
        &[
            "--lib",
            "-j",
            "1",
            "--no-fail-fast",
            "--bind-rw",
            &shared,
            "--env",
            &env,
        ],
    )?;
    ensure_eq(status_code(&out), Some(100), &describe(&out))?;
    let victim = test(&report, "flaky-corpus", "corpus::settings_default_to_quiet")?;
    ensure_eq(victim["outcome"].as_str(), Some("failed"), "the victim")?;
    // The state as it was before the run: the polluter's file is gone again.
    std::fs::remove_file(format!("{shared}/settings"))?;
    let bisect = output(
        ctx.isotest(&dir)
            .args(["bisect", &path, "settings_default_to_quiet"]),
    )?;
    ensure_eq(status_code(&bisect), Some(0), &describe(&bisect))?;
    let stdout = String::from_utf8_lossy(&bisect.stdout);
    ensure(
        stdout.contains("fails when flaky-corpus corpus::saves_verbose_settings runs before it"),
        || describe(&bisect),
    )?;
    ensure(
        stdout.contains(&format!("it wrote {shared}/settings")),
        || describe(&bisect),
    )?;
    ensure(
        !std::path::Path::new(&format!("{shared}/settings")).exists(),
        || "bisect left the shared directory polluted".to_string(),
    )
}
