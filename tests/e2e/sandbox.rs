//! `cargo isotest exec`: each scenario proves one promise of the sandbox from inside it.

use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;

use crate::ctx::{Ctx, describe, ensure, ensure_eq, output, probe_value, read_json, status_code};

pub type Scenario = fn(&Ctx) -> Result<(), Failed>;

pub const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "isolation::sees_only_its_own_processes",
        sees_only_its_own_processes,
    ),
    ("isolation::every_namespace_is_new", every_namespace_is_new),
    (
        "isolation::only_loopback_and_it_is_up",
        only_loopback_and_it_is_up,
    ),
    (
        "isolation::host_loopback_listener_is_unreachable",
        host_loopback_listener_is_unreachable,
    ),
    (
        "isolation::system_dirs_and_binds_are_read_only",
        system_dirs_and_binds_are_read_only,
    ),
    (
        "isolation::read_only_holds_for_submounts",
        read_only_holds_for_submounts,
    ),
    (
        "isolation::read_only_survives_locked_mount_flags",
        read_only_survives_locked_mount_flags,
    ),
    (
        "isolation::tmp_and_home_writes_stay_inside",
        tmp_and_home_writes_stay_inside,
    ),
    ("isolation::hostname_is_fixed", hostname_is_fixed),
    ("hygiene::no_inherited_fds", no_inherited_fds),
    ("hygiene::tiocsti_is_impossible", tiocsti_is_impossible),
    ("hygiene::no_capabilities", no_capabilities),
    ("hygiene::env_is_an_allowlist", env_is_an_allowlist),
    (
        "strays::reported_with_cmdlines_and_gone",
        strays_reported_with_cmdlines_and_gone,
    ),
    (
        "lifecycle::sigterm_ignored_is_killed_at_timeout",
        sigterm_ignored_is_killed_at_timeout,
    ),
    (
        "lifecycle::stopped_program_still_gets_sigterm",
        stopped_program_still_gets_sigterm,
    ),
    (
        "lifecycle::output_flood_stays_within_cap",
        output_flood_stays_within_cap,
    ),
    (
        "lifecycle::sigkill_of_exec_leaves_nothing",
        sigkill_of_exec_leaves_nothing,
    ),
    (
        "lifecycle::exit_codes_and_signals_pass_through",
        exit_codes_and_signals_pass_through,
    ),
    (
        "lifecycle::non_utf8_output_survives",
        non_utf8_output_survives,
    ),
    (
        "lifecycle::tty_gives_the_program_a_terminal",
        tty_gives_the_program_a_terminal,
    ),
    (
        "lifecycle::tty_follows_the_callers_window_size",
        tty_follows_the_callers_window_size,
    ),
];

fn sees_only_its_own_processes(ctx: &Ctx) -> Result<(), Failed> {
    let out = output(&mut ctx.probe(&[], &["pids"]))?;
    ensure_eq(
        probe_value(&out, "pids")?.as_str(),
        "[1, 2]",
        "pids visible inside (init, probe)",
    )
}

fn every_namespace_is_new(ctx: &Ctx) -> Result<(), Failed> {
    let host = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .unwrap()
            .display()
            .to_string()
    };
    let out = output(&mut ctx.probe(&[], &["namespaces"]))?;
    for ns in ["user", "pid", "mnt", "net", "uts", "ipc", "cgroup"] {
        let inside = probe_value(&out, &format!("ns-{ns}"))?;
        ensure(inside != host(ns), || {
            format!("{ns} namespace is the host's: {inside}")
        })?;
    }
    let shared = output(&mut ctx.probe(&["--net", "host"], &["namespaces"]))?;
    ensure_eq(
        probe_value(&shared, "ns-net")?,
        host("net"),
        "--net host shares the network namespace",
    )
}

fn only_loopback_and_it_is_up(ctx: &Ctx) -> Result<(), Failed> {
    let out = output(&mut ctx.probe(&[], &["net"]))?;
    ensure_eq(
        probe_value(&out, "interfaces")?.as_str(),
        "lo",
        "interfaces",
    )?;
    ensure_eq(
        probe_value(&out, "loopback")?.as_str(),
        "ping",
        "127.0.0.1 round trip",
    )?;
    let none = output(&mut ctx.probe(&["--net", "none"], &["net"]))?;
    ensure(!none.status.success(), || {
        format!("--net none must leave lo down; {}", describe(&none))
    })
}

fn host_loopback_listener_is_unreachable(ctx: &Ctx) -> Result<(), Failed> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port().to_string();
    let out = output(&mut ctx.probe(&[], &["connect", &port]))?;
    ensure_eq(
        probe_value(&out, "connect")?.as_str(),
        "ECONNREFUSED",
        "connect to the host's listener",
    )?;
    let shared = output(&mut ctx.probe(&["--net", "host"], &["connect", &port]))?;
    ensure_eq(
        probe_value(&shared, "connect")?.as_str(),
        "ok",
        "the same connect with --net host",
    )
}

fn system_dirs_and_binds_are_read_only(ctx: &Ctx) -> Result<(), Failed> {
    let bound = ctx.path("bound");
    std::fs::create_dir(&bound)?;
    crate::give_to_user(ctx, &bound)?;
    for (target, options) in [
        ("/usr/isotest-probe", vec![]),
        ("/etc/isotest-probe", vec![]),
        ("/isotest-probe", vec![]),
        (&*format!("{bound}/file"), vec!["--bind", bound.as_str()]),
    ] {
        let out = output(&mut ctx.probe(&options, &["write", target]))?;
        ensure_eq(probe_value(&out, "write")?.as_str(), "EROFS", target)?;
    }
    let remount = output(&mut ctx.probe(&[], &["remount", "/usr"]))?;
    ensure_eq(
        probe_value(&remount, "remount")?.as_str(),
        "EPERM",
        "remount /usr read-write",
    )?;
    let writable =
        output(&mut ctx.probe(&["--bind-rw", &bound], &["write", &format!("{bound}/file")]))?;
    ensure_eq(probe_value(&writable, "write")?.as_str(), "ok", "--bind-rw")?;
    ensure(
        std::path::Path::new(&format!("{bound}/file")).exists(),
        || "--bind-rw write did not reach the host".into(),
    )
}

/// /dev/shm is a separate, world-writable mount under /dev on nearly every host.
fn read_only_holds_for_submounts(ctx: &Ctx) -> Result<(), Failed> {
    let out = output(&mut ctx.probe(
        &["--bind", "/dev:/hostdev"],
        &["write", "/hostdev/shm/isotest-probe"],
    ))?;
    ensure_eq(
        probe_value(&out, "write")?.as_str(),
        "EROFS",
        "write to a submount of a read-only bind",
    )
}

/// A mount made in a more privileged namespace has its nosuid/nodev/noexec/atime flags
/// locked in ours; making it read-only must not trip over them.
fn read_only_survives_locked_mount_flags(ctx: &Ctx) -> Result<(), Failed> {
    let dir = ctx.path("locked");
    std::fs::create_dir(&dir)?;
    crate::give_to_user(ctx, &dir)?;
    let probe = ctx.probe(&["--bind", &dir], &["write", &format!("{dir}/file")]);
    let inner: Vec<String> = std::iter::once(probe.get_program())
        .chain(probe.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    let script = format!(
        "mount -t tmpfs -o nosuid,nodev,noexec,noatime isotest-locked {dir} && exec {}",
        inner.join(" ")
    );
    let mut unshare = std::process::Command::new("unshare");
    unshare
        .args(["-Urm", "--", "sh", "-c", &script])
        .current_dir(ctx.scratch.path())
        .stdin(Stdio::null());
    if let Some(user) = &ctx.user {
        unshare.uid(user.uid).gid(user.gid).env("HOME", &user.home);
    }
    let out = output(&mut unshare)?;
    ensure_eq(
        probe_value(&out, "write")?.as_str(),
        "EROFS",
        "write to a read-only bind of a nosuid,nodev,noexec mount",
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn tmp_and_home_writes_stay_inside(ctx: &Ctx) -> Result<(), Failed> {
    let marker = format!("isotest-marker-{}", std::process::id());
    let script = format!(
        "echo x > /tmp/{marker} && echo y > \"$HOME/{marker}\" && cat /tmp/{marker} \"$HOME/{marker}\""
    );
    let out = output(&mut ctx.exec(&["--", "sh", "-c", &script]))?;
    ensure_eq(
        String::from_utf8_lossy(&out.stdout).as_ref(),
        "x\ny\n",
        "writes inside the sandbox",
    )?;
    let home = ctx
        .user
        .as_ref()
        .map(|u| u.home.clone())
        .unwrap_or_else(|| std::env::var_os("HOME").unwrap().into());
    for path in [
        std::path::Path::new("/tmp").join(&marker),
        home.join(&marker),
    ] {
        ensure(!path.exists(), || {
            format!("{} reached the host", path.display())
        })?;
    }
    Ok(())
}

fn hostname_is_fixed(ctx: &Ctx) -> Result<(), Failed> {
    let out = output(&mut ctx.exec(&["--", "cat", "/proc/sys/kernel/hostname"]))?;
    ensure_eq(
        String::from_utf8_lossy(&out.stdout).trim(),
        "isotest",
        "default hostname",
    )?;
    let out = output(&mut ctx.exec(&[
        "--hostname",
        "box-7",
        "--",
        "cat",
        "/proc/sys/kernel/hostname",
    ]))?;
    ensure_eq(
        String::from_utf8_lossy(&out.stdout).trim(),
        "box-7",
        "--hostname",
    )
}

fn no_inherited_fds(ctx: &Ctx) -> Result<(), Failed> {
    let file = std::fs::File::open("/dev/null")?;
    let fd = file.as_raw_fd();
    // std opens close-on-exec; clear it so that exec really inherits this descriptor.
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )?;
    let out = output(&mut ctx.probe(&[], &["fds"]))?;
    drop(file);
    ensure_eq(
        probe_value(&out, "fds")?.as_str(),
        "[0, 1, 2]",
        &format!("open fds inside (host leaked fd {fd})"),
    )
}

/// exec runs with a controlling terminal here, so only the sandbox's own setsid and
/// /dev/null stdin stand between the program and the terminal's input queue.
fn tiocsti_is_impossible(ctx: &Ctx) -> Result<(), Failed> {
    let pty = nix::pty::openpty(None, None)?;
    let mut cmd = ctx.probe(&[], &["tiocsti"]);
    let slave = pty.slave.as_raw_fd();
    cmd.stdin(std::fs::File::from(pty.slave.try_clone()?))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    // SAFETY: setsid and ioctl are async-signal-safe and touch only the child.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            nix::errno::Errno::result(libc::ioctl(slave, libc::TIOCSCTTY, 0))?;
            Ok(())
        });
    }
    let out = output(&mut cmd)?;
    for key in ["tiocsti-fd0", "tiocsti-fd1", "tiocsti-fd2"] {
        let value = probe_value(&out, key)?;
        ensure(value.starts_with("Err"), || {
            format!("{key}: TIOCSTI succeeded: {value}")
        })?;
    }
    let tty = probe_value(&out, "tiocsti-devtty")?;
    ensure(tty.starts_with("open") || tty.starts_with("Err"), || {
        format!("TIOCSTI through /dev/tty: {tty}")
    })
}

fn no_capabilities(ctx: &Ctx) -> Result<(), Failed> {
    for options in [&[][..], &["--root"]] {
        let out = output(&mut ctx.probe(options, &["caps"]))?;
        for key in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
            ensure_eq(
                probe_value(&out, key)?.as_str(),
                "0000000000000000",
                &format!("{key} {options:?}"),
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

fn env_is_an_allowlist(ctx: &Ctx) -> Result<(), Failed> {
    let out = output(
        ctx.exec(&["--env", "PASSED", "--env", "SET=inside", "--", "env"])
            .env("GITHUB_TOKEN", "ghp_secret")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("PASSED", "from-host")
            .env("RUST_BACKTRACE", "1"),
    )?;
    let env = String::from_utf8_lossy(&out.stdout);
    for leaked in ["GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"] {
        ensure(!env.contains(leaked), || {
            format!("{leaked} leaked into the sandbox:\n{env}")
        })?;
    }
    for expected in [
        "PASSED=from-host",
        "SET=inside",
        "RUST_BACKTRACE=1",
        "HOME=",
    ] {
        ensure(env.lines().any(|l| l.starts_with(expected)), || {
            format!("{expected} missing:\n{env}")
        })?;
    }
    Ok(())
}

/// The host's processes as (pid, command line).
fn host_cmdlines() -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let parts: Vec<String> = raw
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            (pid, parts.join(" "))
        })
        .collect()
}

/// Every pid on the host whose command line is exactly `cmdline`.
fn host_processes(cmdline: &str) -> Vec<i32> {
    host_cmdlines()
        .into_iter()
        .filter(|(_, c)| c == cmdline)
        .map(|(pid, _)| pid)
        .collect()
}

/// Every pid on the host whose command line contains `text`, except this test process.
pub fn host_processes_containing(text: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    host_cmdlines()
        .into_iter()
        .filter(|(pid, c)| *pid != me && c.contains(text))
        .map(|(pid, _)| pid)
        .collect()
}

/// Sleep lengths unique to this scenario and user, so parallel scenarios never match
/// each other's processes.
fn unique_sleeps(ctx: &Ctx, base: u32) -> (String, String) {
    let salt = std::process::id() % 1000 + ctx.user.as_ref().map_or(0, |_| 1000);
    (
        format!("sleep {}{salt}", base),
        format!("sleep {}{salt}", base + 1),
    )
}

fn strays_reported_with_cmdlines_and_gone(ctx: &Ctx) -> Result<(), Failed> {
    let (plain, daemon) = unique_sleeps(ctx, 71);
    let report = ctx.path("strays.json");
    // The program waits until both strays have become `sleep`, so that the report names
    // them as such rather than as a shell half-way to them.
    let script = format!(
        "{plain} & setsid sh -c '{daemon} & exit 0'; \
         until ps -eo args | grep -qx '{plain}' && ps -eo args | grep -qx '{daemon}'; do :; done; exit 0"
    );
    let out = output(&mut ctx.exec(&["--report-json", &report, "--", "sh", "-c", &script]))?;
    ensure_eq(status_code(&out), Some(0), "exit status")?;
    let json = read_json(&report)?;
    let strays = json["strays"].as_array().ok_or("no strays array")?;
    let find = |cmd: &str| strays.iter().find(|s| s["cmdline"] == cmd).cloned();
    let plain_stray = find(&plain).ok_or_else(|| format!("{plain} not reported: {strays:?}"))?;
    let daemon_stray = find(&daemon).ok_or_else(|| format!("{daemon} not reported: {strays:?}"))?;
    ensure_eq(
        &plain_stray["detached"],
        &serde_json::Value::Bool(false),
        "background child is not detached",
    )?;
    ensure_eq(
        &daemon_stray["detached"],
        &serde_json::Value::Bool(true),
        "setsid daemon is detached",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(stderr.contains(&plain) && stderr.contains(&daemon), || {
        format!("strays not printed: {stderr}")
    })?;
    for cmd in [&plain, &daemon] {
        ensure(host_processes(cmd).is_empty(), || {
            format!("`{cmd}` survived on the host")
        })?;
    }
    Ok(())
}

fn sigterm_ignored_is_killed_at_timeout(ctx: &Ctx) -> Result<(), Failed> {
    let report = ctx.path("timeout.json");
    let out = output(&mut ctx.exec(&[
        "--timeout",
        "1s",
        "--grace",
        "300ms",
        "--report-json",
        &report,
        "--",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 1; done",
    ]))?;
    ensure_eq(status_code(&out), Some(124), "exit status after a timeout")?;
    let json = read_json(&report)?;
    ensure_eq(
        &json["timed_out"],
        &serde_json::Value::Bool(true),
        "timed_out",
    )?;
    ensure_eq(
        json["exit"]["name"].as_str(),
        Some("SIGKILL"),
        "how it ended",
    )
}

/// A stopped program would never see its SIGTERM without the SIGCONT that goes with it.
fn stopped_program_still_gets_sigterm(ctx: &Ctx) -> Result<(), Failed> {
    let report = ctx.path("stopped.json");
    let out = output(&mut ctx.exec(&[
        "--timeout",
        "500ms",
        "--grace",
        "20s",
        "--report-json",
        &report,
        "--",
        "sh",
        "-c",
        "kill -STOP $$",
    ]))?;
    ensure_eq(status_code(&out), Some(124), "exit status after a timeout")?;
    let json = read_json(&report)?;
    ensure_eq(
        json["exit"]["name"].as_str(),
        Some("SIGTERM"),
        "how the stopped program ended",
    )
}

fn output_flood_stays_within_cap(ctx: &Ctx) -> Result<(), Failed> {
    let report = ctx.path("flood.json");
    let mut cmd = ctx.exec(&[
        "--report-json",
        &report,
        "--",
        "sh",
        "-c",
        "head -c 300M /dev/zero; echo tail-marker",
    ]);
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let pid = child.id() as libc::pid_t;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waits for our own child; status and usage are valid out-pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    ensure_eq(waited, pid, "wait4")?;
    std::mem::forget(child);
    ensure_eq(libc::WEXITSTATUS(status), 0, "exit status")?;
    let json = read_json(&report)?;
    ensure_eq(
        json["stdout_bytes"].as_u64(),
        Some((300 << 20) + 12),
        "bytes counted",
    )?;
    ensure_eq(
        &json["stdout_truncated"],
        &serde_json::Value::Bool(true),
        "truncated",
    )?;
    let kept = json["stdout"].as_str().unwrap_or_default();
    ensure(kept.len() <= (4 << 20) + 100, || {
        format!("kept {} bytes", kept.len())
    })?;
    ensure(kept.ends_with("tail-marker\n"), || {
        "the tail was not kept".into()
    })?;
    let max_rss_mib = usage.ru_maxrss / 1024;
    ensure(max_rss_mib < 64, || {
        format!("exec peaked at {max_rss_mib} MiB for a 300 MiB flood")
    })
}

fn sigkill_of_exec_leaves_nothing(ctx: &Ctx) -> Result<(), Failed> {
    let (plain, daemon) = unique_sleeps(ctx, 91);
    let script = format!("{plain} & setsid {daemon} & wait");
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .count();
    let mut child = ctx.exec(&["--", "sh", "-c", &script]).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while host_processes(&plain).is_empty() || host_processes(&daemon).is_empty() {
        ensure(Instant::now() < deadline, || {
            "the sandbox never started its sleeps".into()
        })?;
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    child.wait()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !host_processes(&plain).is_empty() || !host_processes(&daemon).is_empty() {
        ensure(Instant::now() < deadline, || {
            format!("`{plain}` or `{daemon}` outlived a SIGKILLed exec")
        })?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .count();
    ensure_eq(
        mounts_after,
        mounts_before,
        "host mounts after the sandbox died",
    )
}

fn exit_codes_and_signals_pass_through(ctx: &Ctx) -> Result<(), Failed> {
    for (script, code) in [
        ("exit 0", 0),
        ("exit 42", 42),
        ("kill -SEGV $$", 139),
        ("kill -ABRT $$", 134),
    ] {
        let out = output(&mut ctx.exec(&["--", "sh", "-c", script]))?;
        ensure_eq(status_code(&out), Some(code), script)?;
    }
    let report = ctx.path("segv.json");
    output(&mut ctx.exec(&["--report-json", &report, "--", "sh", "-c", "kill -SEGV $$"]))?;
    let json = read_json(&report)?;
    ensure_eq(
        json["exit"].clone(),
        serde_json::json!({"signal": 11, "name": "SIGSEGV"}),
        "signal in the report",
    )?;
    let missing = output(&mut ctx.exec(&["--", "no-such-program-anywhere"]))?;
    ensure_eq(status_code(&missing), Some(127), "program not found")?;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    ensure(
        stderr.contains("no-such-program-anywhere") && stderr.contains("ENOENT"),
        || stderr.to_string(),
    )
}

fn non_utf8_output_survives(ctx: &Ctx) -> Result<(), Failed> {
    let report = ctx.path("bytes.json");
    let out = output(&mut ctx.exec(&["--report-json", &report, "--", "printf", r"\377ok\376"]))?;
    ensure_eq(
        out.stdout.as_slice(),
        b"\xffok\xfe".as_slice(),
        "raw bytes passed through",
    )?;
    let json = read_json(&report)?;
    ensure_eq(
        json["stdout"].as_str(),
        Some("\u{fffd}ok\u{fffd}"),
        "lossy text in the report",
    )
}

fn tty_gives_the_program_a_terminal(ctx: &Ctx) -> Result<(), Failed> {
    let pty = nix::pty::openpty(None, None)?;
    let exec = ctx.exec(&[
        "--tty",
        "--",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo has-a-tty; ps -o pid,tty,stat,comm",
    ]);
    let child = spawn_on_pty(exec, &pty.slave)?;
    drop(pty.slave);
    let screen = finish_on_pty(child, std::fs::File::from(pty.master), Vec::new())?;
    ensure(screen.contains("has-a-tty"), || {
        format!("no terminal inside; screen:\n{screen}")
    })
}

/// The program's terminal starts at the size of the caller's, and is resized with it when
/// the caller gets SIGWINCH.
fn tty_follows_the_callers_window_size(ctx: &Ctx) -> Result<(), Failed> {
    let size = |rows, cols| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(37, 101)), None)?;
    let exec = ctx.exec(&[
        "--tty",
        "--timeout",
        "20s",
        "--",
        "sh",
        "-c",
        "trap 'stty size; exit 0' WINCH; stty size; while :; do sleep 0.05; done",
    ]);
    let child = spawn_on_pty(exec, &pty.slave)?;
    let mut master = std::fs::File::from(pty.master);
    let mut screen = Vec::new();
    let mut chunk = [0u8; 4096];
    // The timeout above bounds this: when exec ends, reading the master fails with EIO.
    while !String::from_utf8_lossy(&screen).contains("37 101") {
        match master.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => screen.extend_from_slice(&chunk[..n]),
        }
    }
    let resized = rustix::termios::Winsize {
        ws_row: 50,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&pty.slave, resized)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )?;
    drop(pty.slave);
    let screen = finish_on_pty(child, master, screen)?;
    ensure(
        screen.contains("37 101") && screen.contains("50 120"),
        || format!("expected the sizes 37 101, then 50 120; screen:\n{screen}"),
    )
}

/// Starts `cmd` with the pty's slave as its stdin, stdout and stderr.
fn spawn_on_pty(
    mut cmd: std::process::Command,
    slave: &std::os::fd::OwnedFd,
) -> Result<std::process::Child, Failed> {
    let slave = || -> Result<std::fs::File, Failed> { Ok(std::fs::File::from(slave.try_clone()?)) };
    cmd.stdin(slave()?).stdout(slave()?).stderr(slave()?);
    Ok(cmd.spawn()?)
}

/// Reads the rest of the screen, waits for exec and requires that it succeeded.
fn finish_on_pty(
    mut child: std::process::Child,
    mut master: std::fs::File,
    mut screen: Vec<u8>,
) -> Result<String, Failed> {
    // Reading the master ends with EIO once every slave descriptor is closed.
    let _ = master.read_to_end(&mut screen);
    let status = child.wait()?;
    let screen = String::from_utf8_lossy(&screen).into_owned();
    ensure(status.success(), || {
        format!("exit {status:?}; screen:\n{screen}")
    })?;
    Ok(screen)
}
