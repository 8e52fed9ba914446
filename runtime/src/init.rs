//! pid 1 of the sandbox: starts the program as pid 2, reaps every child, enforces the
//! timeout, and when the program ends lists and kills whatever it left behind.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, dup2_stderr, dup2_stdin, dup2_stdout};

use crate::error::{SetupError, Step};
use crate::outcome::{Exit, Finish, StartError, Stray};
use crate::prepare::{ChildFds, ChildStdio, Plan, Program};
use crate::sys;

/// Signals pid 1 passes on to the program; SIGCHLD is its own.
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Runs the program to its end and empties the sandbox.
pub(crate) fn run(plan: &Plan, fds: &ChildFds) -> Result<Finish, SetupError> {
    let init_fail = |syscall| move |errno| SetupError::new(Step::Init, syscall, None, errno);
    hide_command_line();
    let signals = block_signals().map_err(init_fail("signalfd"))?;
    let (start_r, start_w) = start_error_pipe().map_err(init_fail("pipe2"))?;
    let started = Instant::now();
    // SAFETY: pid 1 is single-threaded; the child only execs or _exits.
    let program = match unsafe { nix::unistd::fork() }.map_err(init_fail("fork"))? {
        ForkResult::Child => exec_program(&plan.program, fds, start_w),
        ForkResult::Parent { child } => child,
    };
    drop(start_w);
    let start_error = read_start_error(start_r, &plan.program);
    let (status, timed_out) = supervise(program, &signals, plan.timeout, plan.grace);
    let duration = started.elapsed();
    let strays = collect_strays(program);
    empty_the_sandbox();
    Ok(Finish {
        exit: status,
        timed_out,
        duration_ms: duration.as_millis() as u64,
        strays,
        start_error,
    })
}

/// pid 1 is a copy of the supervisor, whose argv holds every `--env` value and bind
/// source; blanking it leaves /proc/1/cmdline showing only a name. Its environment is
/// already out of the program's reach: reading /proc/1/environ needs pid 1's capabilities.
fn hide_command_line() {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // arg_start and arg_end are fields 48 and 49; the fields after `)` start at field 3.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(45).take(2))
        .into_iter()
        .flatten()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [start, end] = fields[..] else { return };
    if end <= start {
        return;
    }
    const NAME: &[u8] = b"isotest-init";
    let len = (end - start) as usize;
    // SAFETY: [arg_start, arg_end) is this process's own argument area on its initial
    // stack, mapped writable; nothing in pid 1 reads argv after setup, and the last byte
    // stays NUL so the kernel reads no further than the area.
    unsafe {
        let area = start as *mut u8;
        std::ptr::write_bytes(area, 0, len);
        std::ptr::copy_nonoverlapping(NAME.as_ptr(), area, NAME.len().min(len - 1));
    }
}

/// Blocked signals still reach pid 1 from outside, and a signalfd turns them and SIGCHLD
/// into events we poll together with the timeout.
fn block_signals() -> nix::Result<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for &signal in FORWARDED {
        mask.add(signal);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// A close-on-exec pipe: EOF means execve succeeded, data means it did not. Its write end
/// is kept above the standard descriptors, which the program's stdio will take.
fn start_error_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let high = rustix::io::fcntl_dupfd_cloexec(&w, 3).map_err(errno)?;
    Ok((r, high))
}

/// What the program's child reports before it gives up: the errno and what it tried.
#[derive(Clone, Copy)]
enum Attempt {
    EnterCwd = 1,
    Execute = 2,
    Prepare = 3,
}

/// pid 2: becomes the program. Only returns by exec; any failure is reported and exits 127.
fn exec_program(program: &Program, fds: &ChildFds, report: OwnedFd) -> ! {
    let failed = |attempt: Attempt, errno: Errno| -> ! {
        sys::send_failure(report.as_fd(), attempt as u8, errno);
        // SAFETY: _exit ends this process at once; nothing else runs after it.
        unsafe { libc::_exit(127) }
    };
    if let Err(errno) = prepare_process(fds, report.as_raw_fd()) {
        failed(Attempt::Prepare, errno);
    }
    if let Err(errno) = nix::unistd::chdir(program.cwd.as_c_str()) {
        failed(Attempt::EnterCwd, errno);
    }
    let mut last = Errno::ENOENT;
    for candidate in &program.candidates {
        let Err(errno) = nix::unistd::execve(candidate, &program.argv, &program.envp);
        // Like execvp: remember a permission problem over a plain miss, keep looking.
        if errno != Errno::ENOENT && errno != Errno::ENOTDIR {
            last = errno;
        }
        if !matches!(errno, Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES) {
            break;
        }
    }
    failed(Attempt::Execute, last)
}

/// Everything the program's process needs before exec: defaults for signals, its own
/// session, its stdio, no inherited descriptors, and no way to regain privileges.
fn prepare_process(fds: &ChildFds, keep: RawFd) -> Result<(), Errno> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    for signal in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: restoring the default disposition installs no handler code.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }?;
    }
    // A new session: no controlling terminal to push keystrokes into (TIOCSTI).
    nix::unistd::setsid()?;
    match &fds.stdio {
        ChildStdio::Pipes { stdout, stderr } => {
            let null =
                nix::fcntl::open(c"/dev/null", OFlag::O_RDONLY, nix::sys::stat::Mode::empty())?;
            dup2_stdin(null)?;
            dup2_stdout(stdout)?;
            dup2_stderr(stderr)?;
        }
        ChildStdio::Tty { slave } => {
            dup2_stdin(slave)?;
            dup2_stdout(slave)?;
            dup2_stderr(slave)?;
            // We lead a session without a terminal, so the pty becomes ours.
            rustix::process::ioctl_tiocsctty(slave).map_err(errno)?;
        }
    }
    // SAFETY: pid 2 ends in exec or _exit (`exec_program`), and after this it touches none
    // of pid 1's descriptors, whose owners sit in frames that never resume here.
    unsafe { sys::close_fds_except(&[keep]) };
    drop_capabilities()?;
    nix::sys::prctl::set_no_new_privs()?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
}

/// Empties the bounding and ambient sets, so that exec grants no capability even when the
/// program runs as uid 0 in the namespace.
fn drop_capabilities() -> Result<(), Errno> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    // Capability sets are 64 bits wide.
    for cap in 0..=last.min(63) {
        let bit = rustix::thread::CapabilitySet::from_bits_retain(1 << cap);
        match rustix::thread::remove_capability_from_bounding_set(bit) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    rustix::thread::clear_ambient_capability_set().map_err(errno)
}

/// rustix's errno as nix's, the type every step here reports.
fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

fn read_start_error(pipe: OwnedFd, program: &Program) -> Option<StartError> {
    let (attempt, errno) = sys::receive_failure(pipe.as_fd())?;
    let text = |c: &CString| c.to_string_lossy().into_owned();
    let (action, path) = match attempt {
        1 => ("enter working directory", text(&program.cwd)),
        2 => ("execute", text(&program.argv[0])),
        _ => ("prepare the process for", text(&program.argv[0])),
    };
    Some(StartError {
        action: action.to_string(),
        path,
        errno: errno as i32,
    })
}

/// Waits for the program, reaping orphans meanwhile; at the timeout sends SIGTERM and
/// SIGCONT, and after the grace period SIGKILL to everything.
fn supervise(
    program: Pid,
    signals: &SignalFd,
    timeout: Option<Duration>,
    grace: Duration,
) -> (Exit, bool) {
    let start = Instant::now();
    let mut term_at = timeout.map(|t| start + t);
    let mut kill_at: Option<Instant> = None;
    let mut timed_out = false;
    loop {
        if let Some(exit) = reap_until(program) {
            return (exit, timed_out);
        }
        let now = Instant::now();
        if term_at.is_some_and(|t| now >= t) {
            timed_out = true;
            term_at = None;
            // SIGTERM first: a stopped program keeps it pending and meets it as soon as
            // SIGCONT wakes it, before it can run on and exit by itself.
            let _ = kill(program, Signal::SIGTERM);
            let _ = kill(program, Signal::SIGCONT);
            kill_at = Some(now + grace);
        }
        if kill_at.is_some_and(|t| now >= t) {
            kill_at = None;
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        }
        let wait = [term_at, kill_at]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now));
        let timeout = wait.map_or(PollTimeout::NONE, |d| {
            PollTimeout::try_from(d.as_millis().min(i32::MAX as u128) as i32 + 1)
                .unwrap_or(PollTimeout::MAX)
        });
        let mut poll = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if matches!(nix::poll::poll(&mut poll, timeout), Ok(n) if n > 0) {
            while let Ok(Some(info)) = signals.read_signal() {
                let signal = info.ssi_signo as i32;
                if signal != libc::SIGCHLD
                    && let Ok(signal) = Signal::try_from(signal)
                {
                    let _ = kill(program, signal);
                }
            }
        }
    }
}

/// Reaps every exited child; returns the program's exit once it is among them.
fn reap_until(program: Pid) -> Option<Exit> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == program => {
                return Some(Exit::Code { code });
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == program => {
                return Some(Exit::from_signal(signal as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// How long pid 1 waits for SIGSTOP to take hold before it reads the process list anyway.
const FREEZE_WAIT: Duration = Duration::from_millis(50);

/// Lists every live process but us. Stopping them all first means nothing forks while we
/// look; waiting until they have all stopped means none is caught half-way through an
/// exec, with its old command line or none at all.
fn collect_strays(program: Pid) -> Vec<Stray> {
    if kill(Pid::from_raw(-1), Signal::SIGSTOP).is_err() {
        return Vec::new();
    }
    let deadline = Instant::now() + FREEZE_WAIT;
    let mut strays = loop {
        let snapshot = process_snapshot(program);
        let settled = snapshot
            .iter()
            .all(|(state, _)| matches!(state, 'T' | 't' | 'Z' | 'X'));
        if settled || Instant::now() >= deadline {
            break snapshot;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    strays.retain(|(state, _)| !matches!(state, 'Z' | 'X'));
    let mut strays: Vec<Stray> = strays.into_iter().map(|(_, stray)| stray).collect();
    strays.sort_by_key(|s| s.pid);
    strays
}

/// Every process but pid 1, with its state letter from /proc/PID/stat.
fn process_snapshot(program: Pid) -> Vec<(char, Stray)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != 1)
        .filter_map(|pid| read_stray(pid, program.as_raw()))
        .collect()
}

fn read_stray(pid: i32, program: i32) -> Option<(char, Stray)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields start after the last ')'.
    let (head, fields) = stat.rsplit_once(')')?;
    let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("?");
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let (state, pgrp, session) = (fields.first()?, fields.get(2)?, fields.get(3)?);
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = raw
        .split(|&b| b == 0)
        .filter(|part| !part.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    let program = program.to_string();
    let stray = Stray {
        pid,
        cmdline: if cmdline.is_empty() {
            format!("[{comm}]")
        } else {
            cmdline
        },
        detached: *session != program || *pgrp != program,
    };
    Some((state.chars().next()?, stray))
}

/// Kills everything left and waits until pid 1 has no child at all.
fn empty_the_sandbox() {
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Err(Errno::ECHILD) => return,
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(_) => return,
        }
    }
}
