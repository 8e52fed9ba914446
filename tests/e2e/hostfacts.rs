//! Host facts inside the sandbox: a read-only /sys of the sandbox's own, the cgroup the
//! sandbox is in at /sys/fs/cgroup, and `--explain` naming the rule a failing test needs.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use libtest_mimic::Failed;

use crate::ctx::{Ctx, describe, ensure, ensure_eq, fixture, output, read_json, status_code};
use crate::sandbox::Scenario;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    ("sys::read_only_throughout", sys_read_only_throughout),
    (
        "sys::shows_the_sandbox_network_and_host_devices",
        sys_shows_the_sandbox_network_and_host_devices,
    ),
    (
        "sys::cgroup_limits_are_visible_inside",
        cgroup_limits_are_visible_inside,
    ),
    (
        "pid::host_pid_still_kills_strays",
        host_pid_still_kills_strays,
    ),
    (
        "explain::names_the_rule_each_hostfacts_test_needs",
        explain_names_the_rule_each_test_needs,
    ),
];

fn sh(ctx: &Ctx, options: &[&str], script: &str) -> Result<std::process::Output, Failed> {
    let mut args: Vec<&str> = options.to_vec();
    args.extend(["--", "sh", "-c", script]);
    output(&mut ctx.exec(&args))
}

/// Every write under /sys fails with EROFS: sysfs attributes, the cgroup files, the
/// cgroup tmpfs, and a remount does not help.
fn sys_read_only_throughout(ctx: &Ctx) -> Result<(), Failed> {
    for options in [&[][..], &["--sys", "host"][..], &["--net", "host"][..]] {
        let out = sh(
            ctx,
            options,
            "for p in /sys/x /sys/class/net/lo/mtu /sys/fs/cgroup/x \
             /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cgroup.procs /sys/kernel/mm/ksm/run; do \
               [ -e \"$(dirname $p)\" ] || continue; \
               if ( : > $p ) 2>/dev/null; then echo \"writable $p\"; fi; done; \
             mount -o remount,rw /sys 2>/dev/null && echo remounted; \
             grep ' /sys' /proc/self/mountinfo | grep -v ' ro,' | sed 's/^/rw-mount /'; echo checked",
        )?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure(out.status.success() && stdout.contains("checked"), || {
            describe(&out)
        })?;
        ensure(
            !stdout.contains("writable")
                && !stdout.contains("remounted")
                && !stdout.contains("rw-mount"),
            || {
                format!(
                    "{options:?}: something under /sys is writable\n{}",
                    describe(&out)
                )
            },
        )?;
    }
    Ok(())
}

/// A fresh sysfs: lo only in /sys/class/net, the host's block devices, and an empty,
/// unreadable placeholder in /dev for the disk behind the binds.
fn sys_shows_the_sandbox_network_and_host_devices(ctx: &Ctx) -> Result<(), Failed> {
    let out = sh(
        ctx,
        &[],
        "echo net $(ls /sys/class/net); echo block $(ls /sys/block | wc -l); \
         for d in /dev/*; do [ -f \"$d\" ] && echo placeholder $d $(stat -c %a:%s \"$d\"); done; \
         cat /dev/vda >/dev/null 2>&1 && echo readable",
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(stdout.contains("net lo\n"), || describe(&out))?;
    ensure(!stdout.contains("block 0\n"), || describe(&out))?;
    let root_device = host_root_device();
    if let Some(device) = &root_device {
        ensure(
            stdout.contains(&format!("placeholder {device} 0:0")),
            || format!("no placeholder for {device}\n{}", describe(&out)),
        )?;
    }
    ensure(!stdout.contains("readable"), || describe(&out))?;
    let host = sh(ctx, &["--sys", "host"], "ls /sys/class/net")?;
    let host_sees = String::from_utf8_lossy(&host.stdout);
    let host_has = std::fs::read_dir("/sys/class/net")?.count();
    ensure_eq(
        host_sees.lines().count(),
        host_has,
        "interfaces with --sys host",
    )?;
    let none = sh(
        ctx,
        &["--sys", "none"],
        "[ -e /sys ] && echo present || echo absent",
    )?;
    ensure_eq(
        String::from_utf8_lossy(&none.stdout).trim(),
        "absent",
        "--sys none",
    )
}

/// The block device the host's /usr is on, as /dev/NAME.
fn host_root_device() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let usr = mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some((fields[4], fields.get(sep + 2)?.to_string()))
        })
        .filter(|(point, _)| Path::new("/usr").starts_with(point))
        .max_by_key(|(point, _)| point.len())?;
    let source = usr.1;
    let is_block = std::fs::metadata(&source)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));
    is_block.then_some(source)
}

/// Cgroups the scenario sets up as root (v1 `pids` and `cpu`, as this machine has them):
/// the sandbox of a runner placed in them sees them as its root, with their limits, and
/// std's `available_parallelism` honours the CPU quota.
fn cgroup_limits_are_visible_inside(ctx: &Ctx) -> Result<(), Failed> {
    let (pids, cpu) = (
        Path::new("/sys/fs/cgroup/pids"),
        Path::new("/sys/fs/cgroup/cpu"),
    );
    ensure(
        pids.join("cgroup.procs").exists() && cpu.join("cpu.cfs_quota_us").exists(),
        || {
            "this scenario needs the cgroup v1 pids and cpu hierarchies (hybrid or legacy host)"
                .into()
        },
    )?;
    if !nix::unistd::geteuid().is_root() {
        return Err("this scenario sets up its cgroups as root".into());
    }
    let pids = Cgroup::create(pids, "pids", ctx)?;
    let cpu = Cgroup::create(cpu, "cpu", ctx)?;
    std::fs::write(pids.path.join("pids.max"), "123")?;
    std::fs::write(cpu.path.join("cpu.cfs_period_us"), "100000")?;
    std::fs::write(cpu.path.join("cpu.cfs_quota_us"), "100000")?;
    let join = |cmd: &mut std::process::Command| {
        let procs = [
            pids.path.join("cgroup.procs"),
            cpu.path.join("cgroup.procs"),
        ];
        // After become_user: the scenario's user moves itself, as a runner put in a
        // cgroup by its CI would be.
        // SAFETY: only write(2)s to paths prepared before the fork.
        unsafe {
            cmd.pre_exec(move || procs.iter().try_for_each(|p| std::fs::write(p, "0")));
        }
    };
    let mut cmd = ctx.exec(&[
        "--",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us; \
         grep -E ':(pids|cpu):' /proc/self/cgroup",
    ]);
    join(&mut cmd);
    let out = output(&mut cmd)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(stdout.starts_with("123\n100000\n"), || describe(&out))?;
    ensure(
        stdout.contains(":pids:/\n") && stdout.contains(":cpu:/\n"),
        || describe(&out),
    )?;
    let mut probe = ctx.probe(&[], &["parallelism"]);
    join(&mut probe);
    let out = output(&mut probe)?;
    ensure_eq(
        crate::ctx::probe_value(&out, "parallelism")?,
        "1".to_string(),
        "available_parallelism under a one-CPU quota",
    )
}

/// A scratch cgroup, given to the scenario's user and removed at the end.
struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    fn create(hierarchy: &Path, controller: &str, ctx: &Ctx) -> Result<Cgroup, Failed> {
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let parent = own
            .lines()
            .find_map(|l| {
                let mut fields = l.splitn(3, ':').skip(1);
                let controllers = fields.next()?;
                let path = fields.next()?;
                controllers
                    .split(',')
                    .any(|c| c == controller)
                    .then_some(path)
            })
            .unwrap_or("/");
        let path = hierarchy.join(parent.trim_start_matches('/')).join(format!(
            "isotest-e2e-{}",
            std::process::id() as u64 * 1000 + next_id()
        ));
        std::fs::create_dir(&path)?;
        if let Some(user) = &ctx.user {
            for file in ["", "cgroup.procs", "tasks"] {
                let _ = nix::unistd::chown(
                    &path.join(file),
                    Some(nix::unistd::Uid::from_raw(user.uid)),
                    Some(nix::unistd::Gid::from_raw(user.gid)),
                );
            }
        }
        Ok(Cgroup { path })
    }
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Its processes have ended with the command; a leftover would be a leak.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Without a pid namespace the program sees the host's processes, and what it leaves
/// behind is still reported and killed, and nothing else is.
fn host_pid_still_kills_strays(ctx: &Ctx) -> Result<(), Failed> {
    let out = sh(
        ctx,
        &["--pid", "host"],
        "echo visible $(ls /proc | grep -c '^[0-9]'); (sleep 3171 &); \
         setsid sleep 3172 & echo started",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let visible: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("visible "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    ensure(visible > 3, || {
        format!("only {visible} processes visible\n{}", describe(&out))
    })?;
    ensure(
        stderr.contains("sleep 3171") && stderr.contains("sleep 3172"),
        || describe(&out),
    )?;
    let left = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 317[12]$"])
        .output()?;
    ensure(left.stdout.is_empty(), || {
        format!("strays survived: {}", String::from_utf8_lossy(&left.stdout))
    })
}

/// Each hostfacts test needs one rule; `--explain` names it, in the hint, the JSON record
/// and JUnit.
fn explain_names_the_rule_each_test_needs(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("hostfacts", ctx.user.as_ref());
    let home = ctx.scratch.path().join("home");
    std::fs::create_dir_all(&home)?;
    std::fs::write(home.join(".hostfacts"), "")?;
    crate::give_to_user(ctx, home.to_str().expect("utf-8"))?;
    crate::give_to_user(ctx, home.join(".hostfacts").to_str().expect("utf-8"))?;
    let report = ctx.path("hostfacts.json");
    let junit = ctx.path("hostfacts.xml");
    let mut cmd = ctx.isotest(&dir);
    cmd.args([
        "run",
        "--no-fail-fast",
        "--explain",
        "--report-json",
        &report,
        "--junit",
        &junit,
    ])
    .env("HOSTFACTS_SETTING", "on")
    .env("HOME", &home);
    let out = output(&mut cmd)?;
    ensure_eq(status_code(&out), Some(100), "exit code")?;
    let json = read_json(&report).map_err(|e| format!("{e:?}\n{}", describe(&out)))?;
    let xml = std::fs::read_to_string(&junit)?;
    for (name, relaxation, words) in [
        (
            "tests::net_needs_a_host_interface",
            "host-net",
            "--net host",
        ),
        (
            "tests::source_writes_beside_its_manifest",
            "writable-source",
            "writable-source",
        ),
        (
            "tests::sys_reads_host_interfaces_over_a_private_network",
            "host-sys",
            "--sys host",
        ),
        (
            "tests::env_reads_a_host_variable",
            "host-env",
            "env-pass = [\"HOSTFACTS_SETTING\"]",
        ),
        ("tests::home_reads_a_dotfile", "host-home", "$HOME"),
        (
            "tests::pid_sees_its_grandparent",
            "host-pid",
            "pid = \"host\"",
        ),
    ] {
        let record = crate::run::test(&json, "hostfacts", name)?;
        ensure_eq(
            record["explanation"]["relaxation"].as_str(),
            Some(relaxation),
            name,
        )?;
        let hint = record["hint"].as_str().unwrap_or_default();
        ensure(hint.contains(words), || format!("{name}: hint {hint}"))?;
        ensure(
            xml.contains(&format!(
                "name=\"isotest.explain.relaxation\" value=\"{relaxation}\""
            )),
            || format!("{name}: JUnit lacks the relaxation\n{xml}"),
        )?;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        stderr.contains(
            "EXPLAIN hostfacts tests::net_needs_a_host_interface: passes with --net host",
        ),
        || describe(&out),
    )?;
    // The writable-source rerun wrote into a private copy, never into the checkout, and
    // the copy is gone.
    ensure(!dir.join("written-by-hostfacts.txt").exists(), || {
        "the checkout was written to".into()
    })?;
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("target/isotest"))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("explain"))
        .map(|e| e.path())
        .collect();
    ensure(leftovers.is_empty(), || {
        format!("copies left behind: {leftovers:?}")
    })
}
