//! Sessions, terminals, and the id-mapping modes: each scenario runs as root (full map), as
//! the unprivileged user with subordinate ranges, and as one without (single map).

use libtest_mimic::Failed;

use crate::ctx::{
    Ctx, IdMode, describe, ensure, ensure_eq, host_ranges, output, probe_value, read_json,
    status_code,
};
use crate::sandbox::{Scenario, screen_of_tty_script};

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "sessions::the_program_is_not_a_session_leader",
        the_program_is_not_a_session_leader,
    ),
    (
        "sessions::tty_is_the_sandboxs_own_pty",
        tty_is_the_sandboxs_own_pty,
    ),
    ("ids::mapping_is_the_hosts_best", mapping_is_the_hosts_best),
    (
        "ids::root_inside_switches_ids_where_they_are_mapped",
        root_inside_switches_ids_where_they_are_mapped,
    ),
    (
        "ids::capabilities_only_for_root_among_mapped_ids",
        capabilities_only_for_root_among_mapped_ids,
    ),
    (
        "ids::kept_capabilities_cannot_undo_read_only",
        kept_capabilities_cannot_undo_read_only,
    ),
    ("ids::doctor_names_the_mode", doctor_names_the_mode),
];

/// The reproduction: a pty slave opened without O_NOCTTY, then both ends closed.
/// As a session leader the program would die of SIGHUP (status 129).
fn the_program_is_not_a_session_leader(ctx: &Ctx) -> Result<(), Failed> {
    let out = output(&mut ctx.probe(&[], &["session"]))?;
    ensure_eq(status_code(&out), Some(0), "exit status")?;
    ensure_eq(probe_value(&out, "pid")?.as_str(), "2", "the program's pid")?;
    ensure_eq(
        probe_value(&out, "pgid")?.as_str(),
        "2",
        "its own process group",
    )?;
    ensure_eq(probe_value(&out, "sid")?.as_str(), "1", "pid 1's session")?;
    let sti = probe_value(&out, "tiocsti-own-pty")?;
    ensure(sti.starts_with("Err"), || {
        format!("TIOCSTI into a pty that is not its terminal: {sti}")
    })?;
    ensure_eq(
        probe_value(&out, "pty-closed")?.as_str(),
        "survived",
        "closing the pty",
    )
}

/// Under --tty the terminal is a pty of the sandbox's own devpts, so tty(1) names it and
/// it is the program's controlling terminal, with the program in the foreground.
fn tty_is_the_sandboxs_own_pty(ctx: &Ctx) -> Result<(), Failed> {
    let screen = screen_of_tty_script(ctx, "tty; ps -o pid=,sid=,pgid=,tpgid=,tty= -p $$")?;
    ensure(screen.lines().any(|l| l.trim() == "/dev/pts/0"), || {
        format!("tty should name the sandbox's /dev/pts/0; screen:\n{screen}")
    })?;
    let ps: Vec<&str> = screen
        .lines()
        .find(|l| l.trim_start().starts_with("2 "))
        .ok_or_else(|| format!("no ps line for pid 2; screen:\n{screen}"))?
        .split_whitespace()
        .collect();
    ensure_eq(
        ps,
        vec!["2", "1", "2", "2", "pts/0"],
        "pid sid pgid tpgid tty",
    )
}

fn maps(out: &std::process::Output) -> (Vec<[u64; 3]>, Vec<[u64; 3]>, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut uid = Vec::new();
    let mut gid = Vec::new();
    let mut setgroups = String::new();
    let mut section = 0;
    for line in text.lines() {
        match line.trim() {
            "--gid" => section = 1,
            "--setgroups" => section = 2,
            line if section == 2 => setgroups = line.to_string(),
            line => {
                let numbers: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
                if let [inside, outside, count] = numbers[..] {
                    [&mut uid, &mut gid][section].push([inside, outside, count]);
                }
            }
        }
    }
    (uid, gid, setgroups)
}

/// Root gets every id to itself, a user with ranges gets itself plus its ranges, anyone
/// else only its own ids; the spec in the report says which.
fn mapping_is_the_hosts_best(ctx: &Ctx) -> Result<(), Failed> {
    let report = ctx.path("ids.json");
    let script = "cat /proc/self/uid_map; echo --gid; cat /proc/self/gid_map; echo --setgroups; cat /proc/self/setgroups";
    let out = output(&mut ctx.exec(&["--report-json", &report, "--", "sh", "-c", script]))?;
    ensure_eq(status_code(&out), Some(0), "exit status")?;
    let (uid_map, gid_map, setgroups) = maps(&out);
    let mode = IdMode::of(ctx.user.as_ref());
    let json = read_json(&report)?;
    let recorded = json["spec"]["ids"]["mode"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let (uid, gid) = ctx
        .user
        .as_ref()
        .map_or((0, 0), |u| (u64::from(u.uid), u64::from(u.gid)));
    match mode {
        IdMode::Full => {
            ensure_eq(uid_map, vec![[0, 0, 4294967295]], "uid map")?;
            ensure_eq(gid_map, vec![[0, 0, 4294967295]], "gid map")?;
            ensure_eq(setgroups.as_str(), "allow", "setgroups")?;
            ensure_eq(recorded.as_str(), "full", "mode in the spec")
        }
        IdMode::Single => {
            ensure_eq(uid_map, vec![[uid, uid, 1]], "uid map")?;
            ensure_eq(gid_map, vec![[gid, gid, 1]], "gid map")?;
            ensure_eq(setgroups.as_str(), "deny", "setgroups")?;
            ensure_eq(recorded.as_str(), "single", "mode in the spec")
        }
        IdMode::Subordinate => {
            let user = ctx.user.as_ref().expect("only users have ranges");
            let ((uid_start, uid_count), _) = host_ranges(user).expect("ranges");
            ensure_eq(
                uid_map.first().copied(),
                Some([uid, uid, 1]),
                "the user as itself",
            )?;
            let mapped: u64 = uid_map.iter().map(|e| e[2]).sum();
            ensure_eq(
                mapped,
                u64::from(uid_count) + 1,
                "ids mapped: the user and its range",
            )?;
            ensure(uid_map.iter().any(|e| e[1] == u64::from(uid_start)), || {
                format!("the range from {uid_start} is not in the map: {uid_map:?}")
            })?;
            ensure_eq(
                gid_map.first().copied(),
                Some([gid, gid, 1]),
                "the group as itself",
            )?;
            ensure_eq(setgroups.as_str(), "allow", "setgroups")?;
            ensure_eq(recorded.as_str(), "subordinate", "mode in the spec")?;
            ensure_eq(
                json["spec"]["ids"]["uids"]["start"].as_u64(),
                Some(u64::from(uid_start)),
                "range in the spec",
            )
        }
    }
}

/// What nix's test_setgroups, test_initgroups and chown tests need: uid 0 inside may set
/// its groups, give a file to other ids and become another user, where those ids are
/// mapped; with the single map the kernel refuses, as it always did.
fn root_inside_switches_ids_where_they_are_mapped(ctx: &Ctx) -> Result<(), Failed> {
    let out = output(&mut ctx.probe(&["--root"], &["switch-ids", "/tmp"]))?;
    ensure_eq(status_code(&out), Some(0), "exit status")?;
    ensure_eq(probe_value(&out, "uid")?.as_str(), "0", "uid inside")?;
    let mode = IdMode::of(ctx.user.as_ref());
    let expect = |key: &str, ok: &str, refused: &str| -> Result<(), Failed> {
        let want = if mode == IdMode::Single { refused } else { ok };
        ensure_eq(
            probe_value(&out, key)?.as_str(),
            want,
            &format!("{key} ({mode:?})"),
        )
    };
    // With one id mapped, setgroups is denied, and other ids do not exist inside.
    expect("setgroups", "ok", "EPERM")?;
    expect("chown", "ok", "EINVAL")?;
    expect("owner", "1234:5678", "0:0")?;
    expect("setgid", "ok", "EINVAL")?;
    expect("setuid", "ok", "EINVAL")?;
    expect("now", "1000:1000", "0:0")
}

/// Id capabilities: exactly CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, KILL,
/// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE and SYS_CHROOT.
const ID_CAPABILITIES: &str = "00000000000405ff";
const NONE: &str = "0000000000000000";

/// A program keeps capabilities only as uid 0 among other mapped ids, and then only those
/// that switch ids and own files; otherwise none, as before. no_new_privs always.
fn capabilities_only_for_root_among_mapped_ids(ctx: &Ctx) -> Result<(), Failed> {
    let mode = IdMode::of(ctx.user.as_ref());
    for root in [false, true] {
        let options: &[&str] = if root { &["--root"] } else { &[] };
        let out = output(&mut ctx.probe(options, &["caps"]))?;
        let uid_zero = root || ctx.user.is_none();
        let (effective, bounding) = match mode {
            IdMode::Single => (NONE, NONE),
            _ if uid_zero => (ID_CAPABILITIES, ID_CAPABILITIES),
            _ => (NONE, ID_CAPABILITIES),
        };
        for (key, want) in [
            ("CapEff", effective),
            ("CapPrm", effective),
            ("CapBnd", bounding),
            ("CapInh", NONE),
            ("CapAmb", NONE),
        ] {
            ensure_eq(
                probe_value(&out, key)?.as_str(),
                want,
                &format!("{key} {options:?} ({mode:?})"),
            )?;
        }
        ensure_eq(
            probe_value(&out, "NoNewPrivs")?.as_str(),
            "1",
            "no_new_privs",
        )?;
    }
    Ok(())
}

/// The capabilities kept for root cannot make a read-only bind writable, remount anything
/// or change a bound file's owner or mode: the file on the host stays as it was.
fn kept_capabilities_cannot_undo_read_only(ctx: &Ctx) -> Result<(), Failed> {
    let file = ctx.path("precious");
    std::fs::write(&file, b"keep")?;
    crate::give_to_user(ctx, &file)?;
    let before = std::fs::metadata(&file)?;
    let script = "chown 1234:5678 /precious; echo chown=$?; chmod 0777 /precious; echo chmod=$?; \
                  echo x > /precious; echo write=$?; touch -m -d @0 /precious; echo touch=$?";
    let out = output(&mut ctx.exec(&[
        "--root",
        "--bind",
        &format!("{file}:/precious"),
        "--",
        "sh",
        "-c",
        script,
    ]))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for key in ["chown", "chmod", "write", "touch"] {
        ensure(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{key}=")) && !l.ends_with("=0")),
            || format!("{key} succeeded on a read-only bind; {}", describe(&out)),
        )?;
    }
    let remount = output(&mut ctx.probe(&["--root"], &["remount", "/"]))?;
    ensure_eq(
        probe_value(&remount, "remount")?.as_str(),
        "EPERM",
        "remount of /",
    )?;
    let after = std::fs::metadata(&file)?;
    use std::os::unix::fs::MetadataExt;
    ensure_eq(
        (
            after.uid(),
            after.gid(),
            after.mode(),
            after.mtime(),
            std::fs::read(&file)?,
        ),
        (
            before.uid(),
            before.gid(),
            before.mode(),
            before.mtime(),
            b"keep".to_vec(),
        ),
        "the host's file (owner, mode, mtime, contents)",
    )
}

/// doctor says which mode this host gives this user, and without ranges how to add them.
fn doctor_names_the_mode(ctx: &Ctx) -> Result<(), Failed> {
    let out = output(ctx.isotest(ctx.scratch.path()).args(["isotest", "doctor"]))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("id mapping"))
        .ok_or_else(|| format!("doctor printed no id mapping line; {}", describe(&out)))?;
    let (word, hint) = match IdMode::of(ctx.user.as_ref()) {
        IdMode::Full => ("full", None),
        IdMode::Subordinate => ("subordinate", None),
        IdMode::Single => ("single", Some("usermod --add-subuids")),
    };
    ensure(line.contains(word), || {
        format!("expected `{word}` in: {line}")
    })?;
    if let Some(hint) = hint {
        ensure(stdout.contains(hint), || {
            format!("doctor should say how to add ranges ({hint}):\n{stdout}")
        })?;
    }
    Ok(())
}
