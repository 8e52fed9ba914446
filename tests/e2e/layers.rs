//! Writable layers, port forwarding and a test's own firewall: what a test may get from
//! the host without the host seeing its writes or the rest of its network.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Output;

use libtest_mimic::Failed;
use serde_json::Value;

use crate::ctx::{Ctx, describe, ensure, ensure_eq, output, probe_value, read_json, status_code};
use crate::run::{run, test};
use crate::sandbox::Scenario;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "overlay::writes_succeed_inside_are_listed_and_kept",
        overlay_writes_are_listed_and_kept,
    ),
    (
        "overlay::bind_rw_leftovers_are_listed",
        bind_rw_leftovers_are_listed,
    ),
    (
        "overlay::writable_source_keep_and_apply",
        writable_source_keep_and_apply,
    ),
    (
        "forward::only_the_forwarded_address_reaches_the_host",
        only_the_forwarded_address_reaches_the_host,
    ),
    (
        "forward::unix_socket_is_reachable_as_a_bind",
        unix_socket_is_reachable,
    ),
    (
        "forward::a_test_talks_to_a_host_server",
        a_test_talks_to_a_host_server,
    ),
    (
        "firewall::net_admin_lets_a_test_set_its_own_rules",
        net_admin_lets_a_test_set_its_own_rules,
    ),
    (
        "config::an_override_gives_one_test_a_writable_source",
        an_override_gives_one_test_a_writable_source,
    ),
    (
        "config::a_profile_s_forward_reaches_a_host_server",
        a_profile_s_forward_reaches_a_host_server,
    ),
];

/// The overlay scenario that depends on the id mapping: it also runs as a user without
/// subordinate ranges (the single map), besides root (full) and the user with ranges.
pub const IN_EVERY_ID_MODE: &[(&str, Scenario)] = &[(
    "overlay::looks_like_its_host_directory_in_every_id_mode",
    overlay_looks_like_its_host_directory,
)];

/// A directory the scenario's user owns, with `files` in it.
fn user_dir(ctx: &Ctx, name: &str, files: &[(&str, &str)]) -> Result<String, Failed> {
    let dir = ctx.path(name);
    std::fs::create_dir_all(&dir)?;
    for (file, text) in files {
        std::fs::write(Path::new(&dir).join(file), text)?;
    }
    if let Some(user) = &ctx.user {
        crate::ctx::chown_tree(Path::new(&dir), user);
    }
    Ok(dir)
}

/// `[(change, path, kind)]` of a report's layer at `path`.
fn changes(writes: &Value, path: &str) -> Result<Vec<(String, String, String)>, Failed> {
    let layer = writes
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["path"] == path))
        .ok_or_else(|| format!("no writes for {path} in {writes}"))?;
    Ok(layer["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_string();
            (text("change"), text("path"), text("kind"))
        })
        .collect())
}

/// `exec OPTIONS -- sh -c SCRIPT`, which must succeed.
fn sh(ctx: &Ctx, options: &[&str], script: &str) -> Result<std::process::Output, Failed> {
    let mut args = options.to_vec();
    args.extend(["--", "sh", "-c", script]);
    let out = output(&mut ctx.exec(&args))?;
    ensure_eq(status_code(&out), Some(0), "exit code")?;
    Ok(out)
}

fn entry(change: &str, path: &str, kind: &str) -> (String, String, String) {
    (change.into(), path.into(), kind.into())
}

fn overlay_writes_are_listed_and_kept(ctx: &Ctx) -> Result<(), Failed> {
    let dir = user_dir(
        ctx,
        "tree",
        &[("kept", "same"), ("edited", "old"), ("gone", "x")],
    )?;
    let report = ctx.path("exec.json");
    let kept = ctx.path("kept");
    let script = format!(
        "cd {dir} && echo new > edited && echo made > created && rm gone && mkdir d && \
         echo deep > d/f && cat edited"
    );
    let out = sh(
        ctx,
        &[
            "--overlay",
            &dir,
            "--keep-writes",
            &kept,
            "--report-json",
            &report,
        ],
        &script,
    )?;
    ensure_eq(
        String::from_utf8_lossy(&out.stdout).trim(),
        "new",
        "the write is visible inside",
    )?;
    ensure_eq(
        std::fs::read_to_string(Path::new(&dir).join("edited"))?.as_str(),
        "old",
        "host file",
    )?;
    ensure(Path::new(&dir).join("gone").exists(), || {
        "deleted on the host".into()
    })?;
    ensure(!Path::new(&dir).join("created").exists(), || {
        "created on the host".into()
    })?;
    let json = read_json(&report)?;
    ensure_eq(
        changes(&json["writes"], &dir)?,
        vec![
            entry("created", "created", "file"),
            entry("created", "d", "dir"),
            entry("created", "d/f", "file"),
            entry("changed", "edited", "file"),
            entry("deleted", "gone", "file"),
        ],
        "listed writes",
    )?;
    let layer = Path::new(&kept).join("layer-0");
    ensure_eq(
        std::fs::read_to_string(layer.join("d/f"))?.as_str(),
        "deep\n",
        "kept d/f",
    )?;
    ensure_eq(
        std::fs::read_to_string(layer.join("edited"))?.as_str(),
        "new\n",
        "kept edited",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(stderr.contains("created  d/f (5 bytes)"), || describe(&out))
}

fn bind_rw_leftovers_are_listed(ctx: &Ctx) -> Result<(), Failed> {
    let dir = user_dir(ctx, "scratch", &[("old", "x")])?;
    let report = ctx.path("exec.json");
    let script = format!("echo twelve-bytes > {dir}/left && rm {dir}/old");
    sh(ctx, &["--bind-rw", &dir, "--report-json", &report], &script)?;
    ensure(Path::new(&dir).join("left").exists(), || {
        "a --bind-rw write reaches the host".into()
    })?;
    let json = read_json(&report)?;
    ensure_eq(
        changes(&json["writes"], &dir)?,
        vec![
            entry("created", "left", "file"),
            entry("deleted", "old", "file"),
        ],
        "listed writes",
    )?;
    ensure_eq(json["writes"][0]["layer"].as_str(), Some("bind"), "layer")
}

/// `tests::regenerates_its_sources` under an overlay of the checkout `dir`: its writes
/// are listed, and none reached the checkout.
fn generator_wrote_only_into_the_overlay(record: &Value, dir: &Path) -> Result<(), Failed> {
    ensure_eq(
        changes(&record["writes"], &dir.display().to_string())?,
        vec![
            entry("changed", "data.txt", "file"),
            entry("created", "generated.rs", "file"),
            entry("deleted", "obsolete.txt", "file"),
        ],
        "the generator's writes",
    )?;
    ensure_eq(
        std::fs::read_to_string(dir.join("data.txt"))?.as_str(),
        "old data\n",
        "checkout",
    )?;
    ensure(
        dir.join("obsolete.txt").exists() && !dir.join("generated.rs").exists(),
        || "the checkout changed".into(),
    )
}

fn writable_source_keep_and_apply(ctx: &Ctx) -> Result<(), Failed> {
    let kept = ctx.path("kept");
    let tests = [
        "tests::regenerates_its_sources",
        "tests::snapshot_of_the_greeting",
        "--exact",
    ];
    // Read-only by default: the generator fails.
    let (_, report, dir) = run(ctx, "layers", &tests)?;
    ensure_eq(
        test(&report, "layers", "tests::regenerates_its_sources")?["outcome"].as_str(),
        Some("failed"),
        "the generator without --writable-source",
    )?;
    let mut args = vec!["--writable-source", "--keep-writes", &kept];
    args.extend(tests);
    let (out, report, _) = run(ctx, "layers", &args)?;
    ensure_eq(
        status_code(&out),
        Some(100),
        "exit code (the snapshot test fails)",
    )?;
    let generator = test(&report, "layers", "tests::regenerates_its_sources")?;
    ensure_eq(
        generator["outcome"].as_str(),
        Some("passed"),
        "the generator",
    )?;
    generator_wrote_only_into_the_overlay(generator, &dir)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        stderr.contains("snapshots/greeting.snap.new (15 bytes)"),
        || {
            format!(
                "the failing test's writes are not shown:\n{}",
                describe(&out)
            )
        },
    )?;
    let report_path = ctx.path("applied.json");
    std::fs::write(&report_path, serde_json::to_vec(&report)?)?;
    let mut apply = ctx.isotest(&dir);
    apply.args([
        "apply-writes",
        &report_path,
        "tests::snapshot_of_the_greeting",
    ]);
    let refused = output(&mut apply)?;
    ensure_eq(
        status_code(&refused),
        Some(2),
        "apply-writes without a terminal or --yes",
    )?;
    ensure(!dir.join("snapshots/greeting.snap.new").exists(), || {
        "applied unasked".into()
    })?;
    let mut apply = ctx.isotest(&dir);
    apply.args([
        "apply-writes",
        &report_path,
        "tests::snapshot_of_the_greeting",
        "--yes",
    ]);
    let applied = output(&mut apply)?;
    ensure_eq(status_code(&applied), Some(0), "apply-writes --yes")?;
    ensure_eq(
        std::fs::read_to_string(dir.join("snapshots/greeting.snap.new"))?.as_str(),
        "Hello, sandbox\n",
        "the applied snapshot",
    )?;
    std::fs::remove_file(dir.join("snapshots/greeting.snap.new"))?;
    apply_writes_refuses_what_it_should_not_trust(ctx, &dir, report)
}

/// apply-writes writes where a report says, from where it says: a report whose writes
/// are outside its workspace is refused, and so is a kept copy reached through a link
/// planted since (a test with `--bind-rw` of the keep directory could plant one).
fn apply_writes_refuses_what_it_should_not_trust(
    ctx: &Ctx,
    dir: &Path,
    mut report: Value,
) -> Result<(), Failed> {
    let name = "tests::snapshot_of_the_greeting";
    let apply = |report: &Value, file: &str| -> Result<std::process::Output, Failed> {
        let path = ctx.path(file);
        std::fs::write(&path, serde_json::to_vec(report)?)?;
        let mut apply = ctx.isotest(dir);
        apply.args(["apply-writes", &path, name, "--yes"]);
        output(&mut apply)
    };
    let layer = report["tests"]
        .as_array_mut()
        .and_then(|tests| tests.iter_mut().find(|t| t["name"] == name))
        .map(|t| &mut t["writes"][0])
        .ok_or("no writes of the snapshot test")?;
    let kept = std::path::PathBuf::from(layer["kept"].as_str().unwrap_or_default());
    let source = layer["source"].clone();
    let elsewhere = ctx.path("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;
    layer["source"] = Value::from(elsewhere.as_str());
    let refused = apply(&report, "elsewhere.json")?;
    ensure_eq(status_code(&refused), Some(2), "apply-writes of elsewhere")?;
    ensure(
        String::from_utf8_lossy(&refused.stderr).contains("not in the report's workspace"),
        || describe(&refused),
    )?;
    ensure(std::fs::read_dir(&elsewhere)?.next().is_none(), || {
        "applied outside the workspace".into()
    })?;
    // The kept copy swapped for a link to a decoy of the same shape.
    let layer = report["tests"]
        .as_array_mut()
        .and_then(|tests| tests.iter_mut().find(|t| t["name"] == name))
        .map(|t| &mut t["writes"][0])
        .ok_or("no writes of the snapshot test")?;
    layer["source"] = source;
    let attempt = kept.parent().ok_or("a kept layer has a parent")?;
    let decoy = ctx.path("decoy");
    std::fs::create_dir_all(Path::new(&decoy).join("layer-0/snapshots"))?;
    std::fs::write(
        Path::new(&decoy).join("layer-0/snapshots/greeting.snap.new"),
        "planted\n",
    )?;
    std::fs::remove_dir_all(attempt)?;
    std::os::unix::fs::symlink(&decoy, attempt)?;
    let refused = apply(&report, "planted.json")?;
    ensure_eq(
        status_code(&refused),
        Some(2),
        "apply-writes through a link",
    )?;
    ensure(
        String::from_utf8_lossy(&refused.stderr).contains("symlink is in the way"),
        || describe(&refused),
    )?;
    ensure(!dir.join("snapshots/greeting.snap.new").exists(), || {
        "applied what the planted link led to".into()
    })
}

/// An upper-casing echo server on a fresh host loopback port, for `connections` clients.
pub(crate) fn echo_server(connections: usize) -> Result<String, Failed> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections).flatten() {
            serve(stream);
        }
    });
    Ok(address)
}

fn serve(mut stream: impl Read + Write) {
    let mut text = String::new();
    if stream.read_to_string(&mut text).is_ok() {
        let _ = stream.write_all(text.to_uppercase().as_bytes());
    }
}

fn only_the_forwarded_address_reaches_the_host(ctx: &Ctx) -> Result<(), Failed> {
    let forwarded = echo_server(1)?;
    let other = TcpListener::bind("127.0.0.1:0")?;
    let other = other.local_addr()?.to_string();
    let out = output(&mut ctx.probe(&["--forward", &forwarded], &["echo", &forwarded]))?;
    ensure_eq(
        probe_value(&out, "echo")?.as_str(),
        "PING",
        "through the forward",
    )?;
    let out = output(&mut ctx.probe(&["--forward", &forwarded], &["echo", &other]))?;
    ensure_eq(
        probe_value(&out, "echo")?.as_str(),
        "ECONNREFUSED",
        "a host listener that is not forwarded",
    )?;
    let out = output(&mut ctx.exec(&["--forward", "10.0.0.1:5432", "--", "true"]))?;
    ensure_eq(status_code(&out), Some(2), "a non-loopback forward")?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        || describe(&out),
    )
}

fn unix_socket_is_reachable(ctx: &Ctx) -> Result<(), Failed> {
    let dir = user_dir(ctx, "sock", &[])?;
    let path = format!("{dir}/db.sock");
    let listener = UnixListener::bind(&path)?;
    if let Some(user) = &ctx.user {
        crate::ctx::chown_tree(Path::new(&path), user);
    }
    std::thread::spawn(move || {
        if let Some(Ok(stream)) = listener.incoming().next() {
            serve(stream);
        }
    });
    let out = output(&mut ctx.probe(&["--forward-unix", &path], &["echo", &path]))?;
    ensure_eq(
        probe_value(&out, "echo")?.as_str(),
        "PING",
        "through the bound socket",
    )?;
    let out = output(&mut ctx.exec(&["--forward-unix", &dir, "--", "true"]))?;
    ensure_eq(status_code(&out), Some(2), "a directory is not a socket")
}

fn a_test_talks_to_a_host_server(ctx: &Ctx) -> Result<(), Failed> {
    let address = echo_server(1)?;
    let env = format!("LAYERS_SERVER={address}");
    let args = ["--env", &env, "tests::talks_to_the_host_server", "--exact"];
    let (_, report, _) = run(ctx, "layers", &args)?;
    let record = test(&report, "layers", "tests::talks_to_the_host_server")?;
    ensure_eq(
        record["outcome"].as_str(),
        Some("failed"),
        "without --forward",
    )?;
    let hint = record["hint"].as_str().unwrap_or_default();
    ensure(hint.contains(&format!("--forward {address}")), || {
        format!("the refused connection's hint: {hint}")
    })?;
    let mut forwarded = vec!["--forward", &address];
    forwarded.extend(args);
    let (out, report, _) = run(ctx, "layers", &forwarded)?;
    ensure_eq(status_code(&out), Some(0), "exit code")?;
    ensure_eq(
        test(&report, "layers", "tests::talks_to_the_host_server")?["outcome"].as_str(),
        Some("passed"),
        "with --forward",
    )
}

fn net_admin_lets_a_test_set_its_own_rules(ctx: &Ctx) -> Result<(), Failed> {
    if !Path::new("/usr/sbin/nft").exists() {
        return Err("nft is not installed (apt-get install nftables); .ci/run installs it".into());
    }
    // By path: an unprivileged user's PATH may lack /usr/sbin.
    let rules = "nft=/usr/sbin/nft; $nft add table inet t && \
                 $nft add chain inet t c '{ type filter hook output priority 0; }' && \
                 $nft add rule inet t c tcp dport 9 reject && $nft list ruleset";
    let out = output(&mut ctx.exec(&["--", "sh", "-c", rules]))?;
    ensure(!out.status.success(), || {
        format!("nft without --net-admin: {}", describe(&out))
    })?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        || describe(&out),
    )?;
    let out = output(&mut ctx.exec(&["--net-admin", "--", "sh", "-c", rules]))?;
    ensure_eq(status_code(&out), Some(0), "nft with --net-admin")?;
    ensure(
        String::from_utf8_lossy(&out.stdout).contains("tcp dport 9 reject"),
        || describe(&out),
    )?;
    // The rules were the sandbox's own: the host's ruleset has no table t.
    let host = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()?;
    ensure(
        !String::from_utf8_lossy(&host.stdout).contains("table inet t"),
        || "the rule reached the host".into(),
    )?;
    Ok(())
}

/// The merged directory shows its upper layer's owner and mode, which setup gives from
/// the host directory: as root (full map) a directory owned by someone else, as a user
/// (subordinate or single map) the user's own, seen as uid 0 with --root. Writes copy up
/// and are listed and kept in every mode, so the supervisor can read the upper layer.
fn overlay_looks_like_its_host_directory(ctx: &Ctx) -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    let dir = user_dir(ctx, "tree", &[("edited", "old\n")])?;
    let (uid, gid) = match &ctx.user {
        Some(user) => (user.uid, user.gid),
        None => {
            // Root maps every id: a directory of another owner keeps that owner inside.
            let (uid, gid) = (1234, 5678);
            crate::ctx::chown_tree(
                Path::new(&dir),
                &crate::ctx::User {
                    name: "other".into(),
                    uid,
                    gid,
                    home: "/".into(),
                },
            );
            (uid, gid)
        }
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))?;
    let script = format!(
        "stat -c '%u:%g %a' {dir} && echo new >> {dir}/edited && echo made > {dir}/created && \
         stat -c '%u:%g' {dir}/edited"
    );
    for (options, owner) in [
        (vec![], format!("{uid}:{gid}")),
        (
            vec!["--root"],
            match ctx.user {
                Some(_) => "0:0".to_string(),
                None => format!("{uid}:{gid}"),
            },
        ),
    ] {
        let report = ctx.path("exec.json");
        let kept = ctx.path(&format!("kept{}", options.len()));
        let mut args = options.clone();
        args.extend([
            "--overlay",
            &dir,
            "--keep-writes",
            &kept,
            "--report-json",
            &report,
        ]);
        let out = sh(ctx, &args, &script)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        ensure_eq(
            lines,
            vec![format!("{owner} 750").as_str(), owner.as_str()],
            &format!("owner and mode inside, then the copied-up file's owner {options:?}"),
        )?;
        ensure_eq(
            changes(&read_json(&report)?["writes"], &dir)?,
            vec![
                entry("created", "created", "file"),
                entry("changed", "edited", "file"),
            ],
            "listed writes",
        )?;
        ensure_eq(
            std::fs::read_to_string(Path::new(&kept).join("layer-0/edited"))?.as_str(),
            "old\nnew\n",
            "kept edited",
        )?;
    }
    ensure_eq(
        std::fs::read_to_string(Path::new(&dir).join("edited"))?.as_str(),
        "old\n",
        "the host file",
    )?;
    ensure(!Path::new(&dir).join("created").exists(), || {
        "created on the host".into()
    })
}

/// A run of the layers fixture with `text` as its `.config/isotest.toml` (through
/// `--config-file`, since scenarios share the fixture's copy) and no user config.
fn run_configured(ctx: &Ctx, text: &str, args: &[&str]) -> Result<(Output, Value), Failed> {
    let config = ctx.path(&format!("layers-config-{}.toml", crate::run::unique()));
    std::fs::write(&config, text)?;
    let no_user_config = ctx.path("no-user-config");
    let mut all = vec!["--config-file", &config];
    all.extend(args);
    let dir = crate::ctx::fixture("layers", ctx.user.as_ref());
    let report = ctx.path(&format!("layers-{}.json", crate::run::unique()));
    let mut cmd = ctx.isotest(&dir);
    cmd.env("XDG_CONFIG_HOME", &no_user_config)
        .args(all)
        .args(["--report-json", &report]);
    let out = output(&mut cmd)?;
    let json = read_json(&report).map_err(|e| format!("{e:?}\n{}", describe(&out)))?;
    Ok((out, json))
}

/// `writable-source = true` in an override: the generator it matches writes into its
/// source tree, its writes listed, kept (`keep-writes`) and shown (`show-writes`); the
/// snapshot test beside it keeps the read-only tree and gets EROFS. The checkout stays.
fn an_override_gives_one_test_a_writable_source(ctx: &Ctx) -> Result<(), Failed> {
    let kept = ctx.path("kept-by-config");
    let text = format!(
        "[profile.default]\nkeep-writes = {kept:?}\nshow-writes = true\n\n\
         [[profile.default.overrides]]\nfilter = \"test(=tests::regenerates_its_sources)\"\n\
         writable-source = true\n"
    );
    let generator = "tests::regenerates_its_sources";
    let snapshot = "tests::snapshot_of_the_greeting";
    let (out, report) = run_configured(ctx, &text, &[generator, snapshot, "--exact"])?;
    ensure_eq(
        status_code(&out),
        Some(100),
        &format!("exit code (the snapshot test fails); {}", describe(&out)),
    )?;
    let dir = crate::ctx::fixture("layers", ctx.user.as_ref());
    let record = test(&report, "layers", generator)?;
    ensure_eq(
        record["outcome"].as_str(),
        Some("passed"),
        "the generator under the override",
    )?;
    generator_wrote_only_into_the_overlay(record, &dir)?;
    let kept_in = record["writes"][0]["kept"].as_str().unwrap_or_default();
    ensure(kept_in.starts_with(&kept), || {
        format!("keep-writes = {kept}, kept in {kept_in:?}")
    })?;
    ensure_eq(
        std::fs::read_to_string(Path::new(kept_in).join("generated.rs"))?.as_str(),
        "pub const X: u32 = 1;\n",
        "the kept copy",
    )?;
    // The override changed its sandbox: the test has a spec of its own, with the overlay.
    let overlay = r#""type":"overlay""#;
    let own_spec = record["spec"]["mounts"].to_string();
    ensure(own_spec.contains(overlay), || {
        format!("the generator's own spec: {own_spec}")
    })?;
    let binary_spec = report["binaries"]["layers"]["spec"]["mounts"].to_string();
    ensure(!binary_spec.contains(overlay), || {
        format!("the profile's spec has no overlay: {binary_spec}")
    })?;
    let failed = test(&report, "layers", snapshot)?;
    ensure_eq(
        failed["outcome"].as_str(),
        Some("failed"),
        "the snapshot test",
    )?;
    let stderr = failed["stderr"].as_str().unwrap_or_default();
    ensure(
        stderr.contains("Read-only file system") || stderr.contains("os error 30"),
        || format!("the snapshot test's write without the override: {stderr}"),
    )?;
    let hint = failed["hint"].as_str().unwrap_or_default();
    ensure(hint.contains("`writable-source = true`"), || {
        format!("the read-only hint names the key: {hint}")
    })?;
    ensure(failed["writes"].is_null(), || {
        format!("no layer, no writes: {}", failed["writes"])
    })?;
    let terminal = String::from_utf8_lossy(&out.stderr);
    ensure(terminal.contains("created  generated.rs"), || {
        format!("show-writes lists the passing test's writes:\n{terminal}")
    })
}

/// `forward` in a profile reaches the echo server the scenario starts on the host's
/// loopback; the same profile with `net = "none"` is refused before anything runs.
fn a_profile_s_forward_reaches_a_host_server(ctx: &Ctx) -> Result<(), Failed> {
    let address = echo_server(1)?;
    let text = format!(
        "[profile.services]\nforward = [{address:?}]\nenv = {{ LAYERS_SERVER = {address:?} }}\n\n\
         [profile.offline]\ninherits = \"services\"\nnet = \"none\"\n"
    );
    let name = "tests::talks_to_the_host_server";
    let (out, report) = run_configured(ctx, &text, &["-P", "services", name, "--exact"])?;
    ensure_eq(
        status_code(&out),
        Some(0),
        &format!("exit code; {}", describe(&out)),
    )?;
    ensure_eq(
        test(&report, "layers", name)?["outcome"].as_str(),
        Some("passed"),
        "through the profile's forward",
    )?;
    ensure_eq(
        report["binaries"]["layers"]["spec"]["forwards"][0].as_str(),
        Some(address.as_str()),
        "the binary's spec",
    )?;
    let config = ctx.path("layers-offline.toml");
    std::fs::write(&config, &text)?;
    let dir = crate::ctx::fixture("layers", ctx.user.as_ref());
    let refused =
        output(
            ctx.isotest(&dir)
                .args(["--config-file", &config, "-P", "offline", name]),
        )?;
    ensure_eq(status_code(&refused), Some(2), "forward with net = none")?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure(
        stderr.contains("`forward` = ") && stderr.contains("`net` is \"none\""),
        || format!("the error names both keys:\n{stderr}"),
    )?;
    ensure(!stderr.contains("Compiling"), || {
        format!("built despite the conflict:\n{stderr}")
    })
}
