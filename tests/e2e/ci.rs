//! CI at scale on one machine: an archive built in one directory, run by shards from a
//! copy of the checkout at another path, merged back into one run; stress shards; and
//! `wrap` under cargo-nextest's wrapper scripts.

use std::path::{Path, PathBuf};
use std::process::Output;

use libtest_mimic::Failed;
use serde_json::Value;

use crate::ctx::{
    Ctx, chown_tree, describe, ensure, ensure_eq, fixture, output, read_json, status_code,
};
use crate::run::test;

type Scenario = fn(&Ctx) -> Result<(), Failed>;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "archive::shards_merge_into_a_single_run",
        shards_merge_into_a_single_run,
    ),
    (
        "archive::stress_shards_merge_to_the_totals",
        stress_shards_merge_to_the_totals,
    ),
    (
        "nextest::wrapper_script_sandboxes_and_reports_strays",
        wrapper_script_sandboxes_and_reports_strays,
    ),
];

/// `cargo-isotest ARGS` in `dir`.
fn isotest(ctx: &Ctx, dir: &Path, args: &[&str]) -> Result<Output, Failed> {
    output(ctx.isotest(dir).args(args))
}

/// The outcomes fixture archived from its checkout, and a copy of the checkout (sources
/// only) at another path, owned by the scenario's user.
fn archived(ctx: &Ctx) -> Result<(PathBuf, PathBuf), Failed> {
    let source = fixture("outcomes", ctx.user.as_ref());
    let archive = ctx.scratch.path().join("tests.tar.zst");
    let out = isotest(
        ctx,
        &source,
        &["archive", "--archive-file", archive.to_str().unwrap()],
    )?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    // This host sandboxes: the shards take the libtest binaries' lists from the archive.
    ensure(
        !String::from_utf8_lossy(&out.stderr).contains("records no test lists"),
        || format!("the archive recorded no test lists:\n{}", describe(&out)),
    )?;
    let entries = tar::Archive::new(zstd::Decoder::new(std::fs::File::open(&archive)?)?)
        .entries()?
        .map(|e| e.map(|e| e.path_bytes().into_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    ensure(
        entries.last().map(Vec::as_slice) == Some(b"target/nextest/isotest-test-lists.json"),
        || "the archive does not end with its test lists".to_string(),
    )?;
    let checkout = ctx.scratch.path().join("elsewhere/outcomes");
    copy_sources(&source, &checkout)?;
    if let Some(user) = &ctx.user {
        chown_tree(&ctx.scratch.path().join("elsewhere"), user);
    }
    Ok((archive, checkout))
}

/// Copies a checkout without its `target/`.
pub fn copy_sources(from: &Path, to: &Path) -> Result<(), Failed> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "target" {
                copy_sources(&entry.path(), &dest)?;
            }
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Every file under `dir` with its size, to show that a run wrote nothing there.
fn tree(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(tree(&path));
        } else {
            files.push((path.clone(), entry.metadata().map_or(0, |m| m.len())));
        }
    }
    files.sort();
    files
}

fn outcomes(report: &Value) -> Vec<(String, String, String)> {
    report["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let field = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (field("binary_id"), field("name"), field("outcome"))
        })
        .collect()
}

fn shards_merge_into_a_single_run(ctx: &Ctx) -> Result<(), Failed> {
    let (archive, checkout) = archived(ctx)?;
    let before = tree(&checkout);
    let archive = archive.to_str().unwrap();
    let remap = checkout.to_str().unwrap();
    let from_archive = [
        "run",
        "--archive-file",
        archive,
        "--workspace-remap",
        remap,
        "--no-fail-fast",
    ];
    let single = ctx.path("single.json");
    let out = isotest(
        ctx,
        ctx.scratch.path(),
        &[&from_archive[..], &["--report-json", &single]].concat(),
    )?;
    ensure_eq(status_code(&out), Some(100), &describe(&out))?;
    ensure(!out.stderr.windows(9).any(|w| w == b"Compiling"), || {
        format!("a run from an archive built something:\n{}", describe(&out))
    })?;
    let mut shards = Vec::new();
    for k in 1..=3 {
        let report = ctx.path(&format!("shard{k}.json"));
        let partition = format!("hash:{k}/3");
        let args = [
            &from_archive[..],
            &["--partition", &partition, "--report-json", &report],
        ]
        .concat();
        let out = isotest(ctx, ctx.scratch.path(), &args)?;
        ensure(matches!(status_code(&out), Some(0 | 100)), || {
            describe(&out)
        })?;
        let json = read_json(&report)?;
        ensure_eq(
            json["partition"].as_str(),
            Some(partition.as_str()),
            "the report records its shard",
        )?;
        ensure(
            json["archive"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:")),
            || "the report records the archive's digest".into(),
        )?;
        shards.push(report);
    }
    ensure_eq(
        tree(&checkout),
        before,
        "nothing is written into the remapped checkout",
    )?;

    let merged = ctx.path("merged.json");
    let junit = ctx.path("merged.xml");
    let mut args = vec!["merge", "--report-json", &merged, "--junit", &junit];
    args.extend(shards.iter().map(String::as_str));
    let out = isotest(ctx, ctx.scratch.path(), &args)?;
    ensure_eq(status_code(&out), Some(100), &describe(&out))?;
    let single = read_json(&single)?;
    let merged_json = read_json(&merged)?;
    ensure_eq(
        outcomes(&merged_json),
        outcomes(&single),
        "merged outcomes against a single run",
    )?;
    ensure_eq(
        &merged_json["summary"]["failed"],
        &single["summary"]["failed"],
        "summary",
    )?;

    // JUnit: the panic's message and location, and its text as the failure's body.
    let xml = std::fs::read_to_string(&junit)?;
    let failure = xml
        .split("<testcase name=\"fails_panic\"")
        .nth(1)
        .and_then(|rest| rest.split("</testcase>").next())
        .ok_or("no fails_panic in the JUnit")?;
    ensure(
        failure.contains(r#"message="distinctive panic message 7c1f (at src/lib.rs:"#)
            && failure.contains("panicked at src/lib.rs:")
            && failure.contains("timestamp="),
        || format!("the JUnit failure lacks the panic: {failure}"),
    )?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&junit)?.permissions());
    ensure_eq(
        mode & 0o777,
        0o644,
        "a report file has the umask's mode (022)",
    )?;

    // What cannot be one run is refused, by name.
    let out = isotest(ctx, ctx.scratch.path(), &["merge", &shards[0], &shards[2]])?;
    ensure_eq(status_code(&out), Some(2), &describe(&out))?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("--partition hash:2/3 missing"),
        || describe(&out),
    )?;
    let out = isotest(
        ctx,
        ctx.scratch.path(),
        &["merge", &shards[0], &shards[0], &shards[1], &shards[2]],
    )?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("is in 2 reports"),
        || describe(&out),
    )?;
    let mut other: Value = read_json(&shards[1])?;
    other["archive"] = "sha256:0000".into();
    let other_path = ctx.path("other-archive.json");
    std::fs::write(&other_path, other.to_string())?;
    let out = isotest(
        ctx,
        ctx.scratch.path(),
        &["merge", &shards[0], &other_path, &shards[2]],
    )?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("merge only the shards of one archive"),
        || describe(&out),
    )?;

    // --rerun-failed reads schema 2, from the merged report too.
    let out = isotest(
        ctx,
        ctx.scratch.path(),
        &[
            &from_archive[..],
            &[
                "--rerun-failed",
                &merged,
                "--report-json",
                &ctx.path("rerun.json"),
            ],
        ]
        .concat(),
    )?;
    let rerun = read_json(ctx.path("rerun.json"))?;
    ensure_eq(
        rerun["summary"]["total"].as_u64(),
        single["summary"]["failed"]
            .as_u64()
            .map(|f| f + single["summary"]["timed_out"].as_u64().unwrap_or(0)),
        &describe(&out),
    )?;

    // The live stream: libtest's JSON lines on stdout, nextest's `binary$test` names.
    let stream = [
        &from_archive[..],
        &[
            "--message-format",
            "libtest-json",
            "--exact",
            "passes",
            "fails_panic",
        ],
    ]
    .concat();
    let out = isotest(ctx, ctx.scratch.path(), &stream)?;
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("a line of the stream is not JSON ({e}): {}", describe(&out)))?;
    let event = |name: &str, event: &str| {
        lines
            .iter()
            .any(|l| l["name"] == name && l["event"] == event)
    };
    ensure(
        lines
            .first()
            .is_some_and(|l| l["type"] == "suite" && l["event"] == "started")
            && event("outcomes$passes", "ok")
            && event("outcomes$fails_panic", "failed")
            && lines
                .last()
                .is_some_and(|l| l["type"] == "suite" && l["event"] == "failed"),
        || format!("unexpected stream: {}", describe(&out)),
    )?;

    // list: a shard of the archive, in nextest's shape as well.
    let out = isotest(
        ctx,
        ctx.scratch.path(),
        &[
            "list",
            "--archive-file",
            archive,
            "--workspace-remap",
            remap,
            "--partition",
            "hash:1/3",
            "--message-format",
            "json",
        ],
    )?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    let listed: Value = serde_json::from_slice(&out.stdout)?;
    let shard1 = read_json(&shards[0])?;
    ensure_eq(
        listed["test-count"].as_u64(),
        shard1["summary"]["total"].as_u64(),
        "list's shard against run's",
    )?;
    ensure_eq(
        listed["rust-suites"]["outcomes"]["package-name"].as_str(),
        Some("outcomes"),
        "nextest-shaped suites",
    )
}

fn stress_shards_merge_to_the_totals(ctx: &Ctx) -> Result<(), Failed> {
    let (archive, checkout) = archived(ctx)?;
    let (archive, remap) = (archive.to_str().unwrap(), checkout.to_str().unwrap());
    let mut shards = Vec::new();
    for k in 1..=3 {
        let report = ctx.path(&format!("stress{k}.json"));
        let shard = format!("{k}/3");
        let args = [
            "run",
            "--archive-file",
            archive,
            "--workspace-remap",
            remap,
            "--stress",
            "7",
            "--stress-shard",
            &shard,
            "--shuffle=11",
            "--exact",
            "passes",
            "fails_panic",
            "--report-json",
            &report,
        ];
        let out = isotest(ctx, ctx.scratch.path(), &args)?;
        ensure_eq(status_code(&out), Some(100), &describe(&out))?;
        shards.push(report);
    }
    let first = read_json(&shards[0])?;
    let runs = test(&first, "outcomes", "fails_panic")?["stress"]["runs"].as_u64();
    ensure_eq(runs, Some(3), "shard 1 of 3 runs 3 of 7 (shares 3, 2, 2)")?;
    let merged = ctx.path("stress.json");
    let mut args = vec!["merge", "--report-json", &merged];
    args.extend(shards.iter().map(String::as_str));
    let out = isotest(ctx, ctx.scratch.path(), &args)?;
    ensure_eq(status_code(&out), Some(100), &describe(&out))?;
    let merged = read_json(&merged)?;
    let failing = &test(&merged, "outcomes", "fails_panic")?["stress"];
    ensure_eq(failing["runs"].as_u64(), Some(7), "runs over every shard")?;
    ensure_eq(
        failing["failures"].as_u64(),
        Some(7),
        "failures over every shard",
    )?;
    ensure_eq(
        &failing["first_failures"],
        &serde_json::json!([1, 2, 3, 4, 5]),
        "global attempt numbers",
    )?;
    let passing = &test(&merged, "outcomes", "passes")?["stress"];
    ensure_eq(
        (passing["runs"].as_u64(), passing["failures"].as_u64()),
        (Some(7), Some(0)),
        "passes",
    )?;
    ensure(
        passing["ci95"][1]
            .as_f64()
            .is_some_and(|hi| (hi - 0.3543).abs() < 1e-3),
        || format!("the interval is the totals' (0/7): {passing}"),
    )
}

/// `.config/nextest.toml` running every test through `cargo-isotest isotest wrap`.
fn wrapper_config(ctx: &Ctx, dir: &Path) -> Result<(), Failed> {
    let config = format!(
        "experimental = [\"wrapper-scripts\"]\n\n\
         [scripts.wrapper.isotest]\n\
         command = [\"{}\", \"isotest\", \"wrap\"]\n\n\
         [[profile.default.scripts]]\n\
         filter = \"all()\"\n\
         run-wrapper = \"isotest\"\n",
        ctx.isotest_path().display()
    );
    std::fs::create_dir_all(dir.join(".config"))?;
    std::fs::write(dir.join(".config/nextest.toml"), config)?;
    if let Some(user) = &ctx.user {
        chown_tree(&dir.join(".config"), user);
    }
    Ok(())
}

fn nextest(ctx: &Ctx, dir: &Path, args: &[&str]) -> Result<Output, Failed> {
    let mut cmd = ctx.command(Path::new("cargo"), dir);
    cmd.args([
        "nextest",
        "run",
        "--no-fail-fast",
        "--success-output",
        "immediate",
    ])
    .args(args);
    output(&mut cmd)
}

fn wrapper_script_sandboxes_and_reports_strays(ctx: &Ctx) -> Result<(), Failed> {
    if std::process::Command::new("cargo-nextest")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err("cargo-nextest is not installed; .ci/run installs it".into());
    }
    // A test that fails unless it runs in isotest's sandbox proves the wrapper is in
    // effect, before tests that must never run outside one.
    let flaky = fixture("flaky", ctx.user.as_ref());
    wrapper_config(ctx, &flaky)?;
    let out = nextest(ctx, &flaky, &["-E", "test(=reports_attempt_and_seed)"])?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("attempt=1 seed="),
        || describe(&out),
    )?;

    // The same test under plain `cargo test`, with wrap as cargo's target runner.
    let rustc =
        std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .arg("-vV")
            .output()?;
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or("rustc -vV names no host")?;
    let runner = format!(
        "CARGO_TARGET_{}_RUNNER",
        host.to_uppercase().replace('-', "_")
    );
    let mut cargo = ctx.command(Path::new("cargo"), &flaky);
    cargo
        .args([
            "test",
            "--lib",
            "--",
            "--exact",
            "reports_attempt_and_seed",
            "--nocapture",
        ])
        .env(
            runner,
            format!("{} isotest wrap", ctx.isotest_path().display()),
        );
    let out = output(&mut cargo)?;
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    ensure(
        String::from_utf8_lossy(&out.stdout).contains("attempt=1 seed="),
        || describe(&out),
    )?;

    let isolation = fixture("isolation", ctx.user.as_ref());
    wrapper_config(ctx, &isolation)?;
    let junit_dir = "target/nextest/default";
    let mut config = std::fs::read_to_string(isolation.join(".config/nextest.toml"))?;
    config
        .push_str("\n[profile.default.junit]\npath = \"junit.xml\"\nstore-success-output = true\n");
    std::fs::write(isolation.join(".config/nextest.toml"), config)?;
    let out = nextest(
        ctx,
        &isolation,
        &[
            "-E",
            "test(=leaves_stray_sleep) | test(=tmp_claim_a) | test(=tmp_claim_b)",
        ],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure_eq(status_code(&out), Some(0), &describe(&out))?;
    ensure(stderr.contains("3 passed"), || describe(&out))?;
    ensure(!stderr.contains("LEAK"), || {
        format!("nextest saw a leak: {}", describe(&out))
    })?;
    ensure(
        stderr.contains("stray process was left behind and killed")
            && stderr.contains("sleep 3600"),
        || format!("wrap did not report the stray: {}", describe(&out)),
    )?;
    let junit = std::fs::read_to_string(isolation.join(junit_dir).join("junit.xml"))?;
    ensure(junit.contains("sleep 3600"), || {
        format!("the stray is not in nextest's JUnit: {junit}")
    })
}
