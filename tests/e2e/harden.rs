//! A sandbox that holds as root and against hostile tests: each scenario is one attack
//! from issue 9, checked from inside, and the host is checked unchanged afterwards.
//!
//! Nothing here writes a real host sysctl or device node. Kernel-wide files are opened
//! for writing without a write, or rewritten with the value they already have; device
//! nodes are attacked only through a scratch /dev that a private mount namespace puts in
//! place of the host's (see `Ctx::exec_over_dev`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;

use crate::ctx::{Ctx, describe, ensure, ensure_eq, output, probe_value, status_code};
use crate::sandbox::Scenario;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "host::kernel_wide_proc_is_read_only",
        kernel_wide_proc_is_read_only,
    ),
    (
        "host::kernel_views_are_read_only_in_every_mode",
        kernel_views_are_read_only_in_every_mode,
    ),
    (
        "host::device_node_metadata_is_read_only",
        device_node_metadata_is_read_only,
    ),
    (
        "host::planted_symlink_is_not_followed_by_setup",
        planted_symlink_is_not_followed_by_setup,
    ),
    (
        "host::pid1_cmdline_shows_nothing_given",
        pid1_cmdline_shows_nothing_given,
    ),
    ("host::nesting_is_bounded", nesting_is_bounded),
];

/// What a scenario must leave as it found it on the host.
#[derive(Debug, PartialEq)]
pub struct HostState {
    sysctls: Vec<(&'static str, String)>,
    /// Type, mode and mtime of each device node.
    nodes: Vec<(PathBuf, String)>,
    mount_points: Vec<String>,
}

const WATCHED_SYSCTLS: &[&str] = &[
    "kernel/printk_ratelimit",
    "kernel/core_pattern",
    "kernel/hostname",
    "user/max_user_namespaces",
    "vm/overcommit_memory",
];

const NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

impl HostState {
    pub fn take(extra_dev: Option<&Path>) -> HostState {
        let sysctls = WATCHED_SYSCTLS
            .iter()
            .map(|name| {
                let value = std::fs::read_to_string(Path::new("/proc/sys").join(name));
                (*name, value.unwrap_or_else(|e| format!("unreadable: {e}")))
            })
            .collect();
        let mut dirs = vec![PathBuf::from("/dev")];
        dirs.extend(extra_dev.map(Path::to_path_buf));
        let nodes = dirs
            .iter()
            .flat_map(|dir| NODES.iter().map(move |n| dir.join(n)))
            .chain(std::iter::once(PathBuf::from("/dev/stdout")))
            .map(|path| {
                let text = match std::fs::symlink_metadata(&path) {
                    Ok(m) => format!(
                        "{:?} {:o} {}.{}",
                        m.file_type(),
                        m.mode(),
                        m.mtime(),
                        m.mtime_nsec()
                    ),
                    Err(e) => format!("missing: {e}"),
                };
                (path, text)
            })
            .collect();
        let mut mount_points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .collect();
        mount_points.sort();
        HostState {
            sysctls,
            nodes,
            mount_points,
        }
    }

    pub fn unchanged_since(&self, before: &HostState) -> Result<(), Failed> {
        ensure_eq(&self.sysctls, &before.sysctls, "host sysctl values")?;
        ensure_eq(&self.nodes, &before.nodes, "host device nodes")?;
        ensure_eq(
            &self.mount_points,
            &before.mount_points,
            "host mount points",
        )
    }
}

/// A copy of the harmless device nodes in the scratch directory, for `exec_over_dev`.
/// Only root can make device nodes; otherwise the scenario runs against the real /dev,
/// which an unprivileged user cannot change anyway.
pub fn scratch_dev(ctx: &Ctx) -> Result<Option<PathBuf>, Failed> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let dev = ctx.scratch.path().join("dev");
    std::fs::create_dir(&dev)?;
    std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o755))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        nix::sys::stat::mknod(
            &dev.join(name),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        )?;
        std::fs::set_permissions(dev.join(name), std::fs::Permissions::from_mode(0o666))?;
    }
    for (name, target) in [
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("stdin", "/proc/self/fd/0"),
        ("fd", "/proc/self/fd"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name))?;
    }
    for dir in ["pts", "shm"] {
        std::fs::create_dir(dev.join(dir))?;
    }
    Ok(Some(dev))
}

/// The mount options inside the sandbox of each mount point listed.
fn mount_options(out: &Output, points: &[&str]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&out.stdout);
    points
        .iter()
        .map(|point| {
            // The last mount at a point is the one on top.
            let options = text
                .lines()
                .rev()
                .find_map(|l| {
                    let fields: Vec<&str> = l.split(' ').collect();
                    (fields.get(4) == Some(point)).then(|| fields.get(5).copied())?
                })
                .unwrap_or("not mounted");
            (
                point.to_string(),
                options.split(',').next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Fails unless, in a sandbox with `options`, no file below `roots` opens for writing.
fn nothing_opens_for_writing(ctx: &Ctx, options: &[&str], roots: &[&str]) -> Result<(), Failed> {
    let mut probe = vec!["writable"];
    probe.extend(roots);
    let out = output(&mut ctx.probe(options, &probe))?;
    ensure_eq(status_code(&out), Some(0), &format!("probe {options:?}"))?;
    ensure_eq(
        probe_value(&out, "writable")?.as_str(),
        "0",
        &format!(
            "files open for writing {options:?} (first: {})",
            probe_value(&out, "first-writable")?
        ),
    )
}

/// The parts of /proc that act on the whole host, as the runtime lists them.
const KERNEL_WIDE_PROC: &[&str] = &[
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
    "/proc/acpi",
    "/proc/asound",
    "/proc/driver",
    "/proc/scsi",
    "/proc/mtrr",
    "/proc/pressure",
    "/proc/tty",
    "/proc/latency_stats",
    "/proc/timer_stats",
];

/// The program as itself, and as uid 0: where other ids are mapped (root's full map, a
/// user's subordinate ranges) uid 0 keeps the capabilities that override file modes.
const IDENTITIES: &[&[&str]] = &[&[], &["--root"]];

/// /proc/sys, /proc/sysrq-trigger, /proc/irq, /proc/bus, /proc/fs and the rest act on
/// the whole host; as root the sandbox's uid 0 is the host's for their permission checks.
fn kernel_wide_proc_is_read_only(ctx: &Ctx) -> Result<(), Failed> {
    let before = HostState::take(None);
    for identity in IDENTITIES {
        nothing_opens_for_writing(ctx, identity, KERNEL_WIDE_PROC)?;
        // The reproduction itself, rewriting the value the host already has.
        let mut args = identity.to_vec();
        args.extend([
            "--",
            "sh",
            "-c",
            "v=$(cat /proc/sys/kernel/printk_ratelimit) && echo \"$v\" > /proc/sys/kernel/printk_ratelimit && echo written",
        ]);
        let rewrite = output(&mut ctx.exec(&args))?;
        let stderr = String::from_utf8_lossy(&rewrite.stderr);
        ensure(
            !rewrite.status.success() && stderr.contains("Read-only file system"),
            || {
                format!(
                    "printk_ratelimit must be read-only (EROFS) {identity:?}; {}",
                    describe(&rewrite)
                )
            },
        )?;
    }
    let mounts = output(&mut ctx.exec(&["--", "cat", "/proc/self/mountinfo"]))?;
    let present: Vec<&str> = KERNEL_WIDE_PROC
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    for (point, first) in mount_options(&mounts, &present) {
        ensure_eq(first.as_str(), "ro", &format!("{point} inside"))?;
    }
    HostState::take(None).unchanged_since(&before)
}

/// The kernel's other views a sandbox shows, in every mode that changes them: /sys (fresh
/// or the host's) with its cgroup view, /dev's block-device placeholders, and under
/// `--pid host` the host's whole /proc, host init's own files included. Nothing in them
/// opens for writing, as the program or as uid 0 among mapped ids. The same holds with
/// `CAP_NET_ADMIN` kept (over the sandbox's own network namespace, or none of the
/// host's with `--net host`) and with a writable overlay (as `--writable-source` makes
/// of the workspace), whose host directory stays as it was.
fn kernel_views_are_read_only_in_every_mode(ctx: &Ctx) -> Result<(), Failed> {
    let before = HostState::take(None);
    let source = ctx.path("workspace");
    std::fs::create_dir(&source)?;
    std::fs::write(format!("{source}/lib.rs"), "// as it was\n")?;
    if let Some(user) = &ctx.user {
        crate::ctx::chown_tree(Path::new(&source), user);
    }
    let overlay = format!("{source}:{source}");
    let modes: &[&[&str]] = &[
        &[],
        &["--sys", "host"],
        &["--pid", "host"],
        &["--net-admin"],
        &["--net-admin", "--net", "host"],
        &["--overlay", &overlay],
    ];
    for mode in modes {
        for identity in IDENTITIES {
            let options: Vec<&str> = mode.iter().chain(identity.iter()).copied().collect();
            let mut roots = vec!["/sys", "/dev"];
            roots.extend(KERNEL_WIDE_PROC);
            if mode.contains(&"--pid") {
                roots.push("/proc/1");
            }
            nothing_opens_for_writing(ctx, &options, &roots)?;
            if mode.contains(&"--net-admin") {
                keeps_net_admin(ctx, &options)?;
            }
            if mode.contains(&"--overlay") {
                writes_stay_in_the_overlay(ctx, &options, &source)?;
            }
        }
        let mut args = mode.to_vec();
        args.extend(["--", "cat", "/proc/self/mountinfo"]);
        let mounts = output(&mut ctx.exec(&args))?;
        let mut points = vec!["/sys"];
        if mode.contains(&"--pid") {
            points.push("/proc");
        }
        let text = String::from_utf8_lossy(&mounts.stdout);
        let cgroups = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with("/sys/fs/cgroup"));
        points.extend(cgroups);
        for (point, first) in mount_options(&mounts, &points) {
            ensure_eq(first.as_str(), "ro", &format!("{point} inside {mode:?}"))?;
        }
    }
    HostState::take(None).unchanged_since(&before)
}

/// The program really has `CAP_NET_ADMIN` (bit 12 of its effective set) with `options`,
/// so that the views above were tried with it.
fn keeps_net_admin(ctx: &Ctx, options: &[&str]) -> Result<(), Failed> {
    let mut args = options.to_vec();
    args.extend(["--", "sh", "-c", "grep CapEff /proc/self/status"]);
    let out = output(&mut ctx.exec(&args))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mask = text
        .split_whitespace()
        .nth(1)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| format!("no CapEff {options:?}; {}", describe(&out)))?;
    ensure(mask & (1 << 12) != 0, || {
        format!("CAP_NET_ADMIN is not kept {options:?}: CapEff {mask:x}")
    })
}

/// Rewrites, creates and deletes in the overlay with `options` (as the program, and as
/// uid 0 with the capabilities that override file modes): all succeed inside, and the
/// host directory is unchanged.
fn writes_stay_in_the_overlay(ctx: &Ctx, options: &[&str], source: &str) -> Result<(), Failed> {
    let script = format!(
        "cd {source} && echo changed > lib.rs && echo new > made.rs && rm lib.rs && \
         mkdir -p deep/er && echo x > deep/er/f && chmod 0777 . && echo done"
    );
    let mut args = options.to_vec();
    args.extend(["--", "sh", "-c", &script]);
    let out = output(&mut ctx.exec(&args))?;
    ensure(
        String::from_utf8_lossy(&out.stdout).contains("done"),
        || format!("writes in the overlay {options:?}; {}", describe(&out)),
    )?;
    let mut names: Vec<String> = std::fs::read_dir(source)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    ensure_eq(names, vec!["lib.rs".to_string()], "host directory entries")?;
    ensure_eq(
        std::fs::read_to_string(format!("{source}/lib.rs"))?.as_str(),
        "// as it was\n",
        "host file",
    )?;
    let mode = std::fs::metadata(source)?.permissions().mode() & 0o777;
    ensure(mode != 0o777, || {
        format!("the host directory's mode changed to {mode:o}")
    })
}

/// `touch -m /dev/full` and `chmod 0666 /dev/null` changed the host's nodes. Aimed here at
/// a scratch /dev: the sandbox binds whatever /dev its caller sees.
fn device_node_metadata_is_read_only(ctx: &Ctx) -> Result<(), Failed> {
    let dev = scratch_dev(ctx)?;
    let before = HostState::take(dev.as_deref());
    let script = "touch -m /dev/full; echo touch=$?; chmod 0600 /dev/null; echo chmod=$?; \
                  echo x > /dev/null && echo write-null=ok; head -c 4 /dev/zero | wc -c";
    let mut cmd = match &dev {
        Some(dev) => ctx.exec_over_dev(dev, &["--", "sh", "-c", script]),
        // Unprivileged harness: the real /dev, which this user cannot change; the mount
        // flags below are what proves the rule.
        None => ctx.exec(&["--", "sh", "-c", "true"]),
    };
    let out = output(&mut cmd)?;
    if dev.is_some() {
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure(text.contains("touch=1") && text.contains("chmod=1"), || {
            format!(
                "touch -m and chmod of a device node must fail; {}",
                describe(&out)
            )
        })?;
        ensure(stderr.matches("Read-only file system").count() >= 2, || {
            format!("both must fail with EROFS; {}", describe(&out))
        })?;
        ensure(text.contains("write-null=ok") && text.contains('4'), || {
            format!("the nodes must still work; {}", describe(&out))
        })?;
    }
    let mounts = output(&mut ctx.exec(&["--", "cat", "/proc/self/mountinfo"]))?;
    let points: Vec<String> = NODES.iter().map(|n| format!("/dev/{n}")).collect();
    let points: Vec<&str> = points.iter().map(String::as_str).collect();
    for (point, first) in mount_options(&mounts, &points) {
        ensure_eq(first.as_str(), "ro", &format!("{point} inside"))?;
    }
    HostState::take(dev.as_deref()).unchanged_since(&before)
}

/// A writable bind holding a link to elsewhere, and a second bind whose destination goes
/// through that link: setup created the destination wherever the link pointed.
fn planted_symlink_is_not_followed_by_setup(ctx: &Ctx) -> Result<(), Failed> {
    let before = HostState::take(None);
    let (shared, victim, source) = (ctx.path("sh2"), ctx.path("v2"), ctx.path("src"));
    for dir in [&shared, &victim, &source] {
        std::fs::create_dir(dir)?;
        crate::give_to_user(ctx, dir)?;
    }
    std::fs::write(format!("{source}/file"), "x")?;
    // Relative, so that it leads to /v inside the sandbox while setup still runs: an
    // absolute host path under /tmp would miss, hidden by the staging root, by accident.
    std::os::unix::fs::symlink("../v", format!("{shared}/link"))?;
    let file_source = format!("{source}/file");
    for (what, bind) in [
        ("a directory bind", format!("{source}:/s/link/planted")),
        ("a file bind", format!("{file_source}:/s/link/planted")),
        (
            "a bind onto the link itself",
            format!("{file_source}:/s/link"),
        ),
    ] {
        let out = output(&mut ctx.exec(&[
            "--bind-rw",
            &format!("{shared}:/s"),
            "--bind-rw",
            &format!("{victim}:/v"),
            "--bind",
            &bind,
            "--",
            "true",
        ]))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure_eq(status_code(&out), Some(2), &format!("exit code of {what}"))?;
        ensure(
            stderr.contains("/s/link") && stderr.contains("symlink"),
            || format!("{what}: the error must name the link; {}", describe(&out)),
        )?;
        let planted: Vec<_> = std::fs::read_dir(&victim)?.flatten().collect();
        ensure(planted.is_empty(), || {
            format!("{what}: setup created {planted:?} through the link")
        })?;
    }
    // The same plant made by one run's test, followed by the next run's setup.
    std::fs::remove_file(format!("{shared}/link"))?;
    let plant = output(&mut ctx.exec(&[
        "--bind-rw",
        &format!("{shared}:/s"),
        "--",
        "ln",
        "-s",
        "../v",
        "/s/link",
    ]))?;
    ensure(plant.status.success(), || describe(&plant))?;
    let follow = output(&mut ctx.exec(&[
        "--bind-rw",
        &format!("{shared}:/s"),
        "--bind-rw",
        &format!("{victim}:/v"),
        "--bind",
        &format!("{source}:/s/link/planted"),
        "--",
        "true",
    ]))?;
    ensure_eq(
        status_code(&follow),
        Some(2),
        "exit code after a planted link",
    )?;
    ensure(std::fs::read_dir(&victim)?.next().is_none(), || {
        "the next run's setup followed the planted link".into()
    })?;
    HostState::take(None).unchanged_since(&before)
}

/// pid 1 is a copy of exec, whose argv held `--env` values and host bind sources.
fn pid1_cmdline_shows_nothing_given(ctx: &Ctx) -> Result<(), Failed> {
    let secret = format!("isotest-secret-{}", std::process::id());
    let hidden = ctx.path("hidden-source");
    std::fs::create_dir(&hidden)?;
    let out = output(&mut ctx.exec(&[
        "--env",
        &format!("UNUSED={secret}"),
        "--bind",
        &format!("{hidden}:/elsewhere"),
        "--",
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/environ 2>&1 | head -c 200",
    ]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.success() && !text.contains(&secret) && !text.contains(&hidden),
        || {
            format!(
                "pid 1 shows what the program was not given; {}",
                describe(&out)
            )
        },
    )?;
    ensure(text.starts_with("isotest-init"), || {
        format!("pid 1 names itself; {}", describe(&out))
    })
}

/// One sandbox created 300 namespaces, charged to the host user's limits.
fn nesting_is_bounded(ctx: &Ctx) -> Result<(), Failed> {
    let limit = output(&mut ctx.exec(&["--", "cat", "/proc/sys/user/max_net_namespaces"]))?;
    ensure_eq(
        String::from_utf8_lossy(&limit.stdout).trim(),
        "32",
        "the sandbox's own max_net_namespaces",
    )?;
    let bounded = output(&mut ctx.probe(&[], &["nest", "40"]))?;
    let made: u32 = probe_value(&bounded, "namespaces")?.parse()?;
    ensure(made < 32, || {
        format!(
            "a sandbox made {made} network namespaces; {}",
            describe(&bounded)
        )
    })?;
    ensure_eq(
        probe_value(&bounded, "nest-error")?.as_str(),
        "ENOSPC",
        "what stops it",
    )?;
    let raised = output(&mut ctx.probe(&["--nesting", "64"], &["nest", "40"]))?;
    ensure_eq(
        probe_value(&raised, "namespaces")?.as_str(),
        "40",
        "namespaces made with --nesting 64",
    )?;
    // Setup's own mount namespaces (one per bind source until it is attached) are made
    // before the cap: more binds than the cap still make a sandbox.
    let binds: Vec<String> = (0..40)
        .flat_map(|i| ["--bind".to_string(), format!("/usr/share:/mnt/b{i}")])
        .collect();
    let mut args: Vec<&str> = binds.iter().map(String::as_str).collect();
    args.extend(["--nesting", "2", "--", "true"]);
    let many = output(&mut ctx.exec(&args))?;
    ensure_eq(
        status_code(&many),
        Some(0),
        &format!("40 binds under --nesting 2; {}", describe(&many)),
    )
}

/// Waits for `child`, killing it if it outlives `limit`: a hang is a failure, not a stall.
pub fn wait_or_kill(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, Failed> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            child.wait()?;
            return Err(format!("still running after {limit:?}; killed").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
