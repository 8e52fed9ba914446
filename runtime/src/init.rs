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
use crate::limits::Enforcement;
use crate::limits::watch::Watch;
use crate::outcome::{Exit, Finish, StartError, Stray};
use crate::perturb;
use crate::prepare::{ChildFds, ChildStdio, Plan, Program};
use crate::sys::{self, errno};

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
pub(crate) fn run(
    plan: &Plan,
    fds: &ChildFds,
    terminal: Option<OwnedFd>,
    limits: &Enforcement,
) -> Result<Finish, SetupError> {
    let init_fail = |syscall| move |errno| SetupError::new(Step::Init, syscall, None, errno);
    hide_command_line(plan.argument_area);
    let reach = if plan.host_pid {
        // Orphans would go to the host's init; as a subreaper we get them, so whatever
        // the program leaves behind stays among our descendants.
        nix::sys::prctl::set_child_subreaper(true).map_err(init_fail("prctl"))?;
        Reach::Descendants
    } else {
        Reach::Namespace
    };
    let signals = block_signals().map_err(init_fail("signalfd"))?;
    let (start_r, start_w) = start_error_pipe().map_err(init_fail("pipe2"))?;
    let mut watch = Watch::new(limits.watch.clone());
    perturb::before_program(&plan.chaos)?;
    let started = Instant::now();
    // SAFETY: pid 1 is single-threaded; the child only execs or _exits.
    let program = match unsafe { nix::unistd::fork() }.map_err(init_fail("fork"))? {
        ForkResult::Child => exec_program(plan, fds, terminal.as_ref(), &limits.rlimits, start_w),
        ForkResult::Parent { child } => child,
    };
    drop(start_w);
    watch.watch_program(program.as_raw() as u32);
    let start_error = read_start_error(start_r, &plan.program);
    let mut chaos = perturb::During::start(&plan.chaos, &reach, program);
    let (status, timed_out) = supervise(
        program,
        reach,
        &signals,
        plan.timeout,
        plan.grace,
        &mut watch,
        &mut chaos,
    );
    let duration = started.elapsed();
    chaos.end();
    watch.program_ended();
    let strays = collect_strays(program, reach);
    empty_the_sandbox(reach);
    Ok(Finish {
        exit: status,
        timed_out,
        duration_ms: duration.as_millis() as u64,
        strays,
        start_error,
        usage: watch.finish(),
    })
}

/// pid 1 is a copy of the supervisor, whose argv holds every `--env` value and bind
/// source; blanking it leaves /proc/1/cmdline showing only a name. Its environment is
/// already out of the program's reach: reading /proc/1/environ needs pid 1's capabilities.
fn hide_command_line(area: Option<(usize, usize)>) {
    let Some((start, end)) = area else { return };
    const NAME: &[u8] = b"isotest-init";
    let len = end - start;
    // SAFETY: [arg_start, arg_end) is the supervisor's argument area on its initial stack,
    // which this copy of it has at the same addresses, mapped writable; nothing in pid 1
    // reads argv after setup, and the last byte stays NUL so the kernel reads no further
    // than the area.
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
fn exec_program(
    plan: &Plan,
    fds: &ChildFds,
    terminal: Option<&OwnedFd>,
    rlimits: &[(Resource, u64)],
    report: OwnedFd,
) -> ! {
    let program = &plan.program;
    let failed = |attempt: Attempt, errno: Errno| -> ! {
        sys::send_failure(report.as_fd(), attempt as u8, errno);
        // SAFETY: _exit ends this process at once; nothing else runs after it.
        unsafe { libc::_exit(127) }
    };
    if let Err(errno) = prepare_process(plan, fds, terminal, rlimits, report.as_raw_fd()) {
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

/// Everything the program's process needs before exec: its own process group, its stdio,
/// defaults for signals, no inherited descriptors, and no way to regain privileges.
fn prepare_process(
    plan: &Plan,
    fds: &ChildFds,
    terminal: Option<&OwnedFd>,
    rlimits: &[(Resource, u64)],
    keep: RawFd,
) -> Result<(), Errno> {
    // A group of its own in pid 1's session, but no session: a tty it opens never becomes
    // its controlling terminal, and it has none to push keystrokes into (TIOCSTI).
    rustix::process::setpgid(None, None).map_err(errno)?;
    match (&fds.stdio, terminal) {
        (ChildStdio::Pipes { stdout, stderr }, _) => {
            let null =
                nix::fcntl::open(c"/dev/null", OFlag::O_RDONLY, nix::sys::stat::Mode::empty())?;
            dup2_stdin(null)?;
            dup2_stdout(stdout)?;
            dup2_stderr(stderr)?;
        }
        (ChildStdio::Tty, Some(slave)) => {
            dup2_stdin(slave)?;
            dup2_stdout(slave)?;
            dup2_stderr(slave)?;
            // The foreground group of the session's terminal, so that it may read and gets
            // ^C; as a shell does, with SIGTTOU blocked while a background group asks.
            let mut ttou = SigSet::empty();
            ttou.add(Signal::SIGTTOU);
            sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None)?;
            rustix::termios::tcsetpgrp(slave, rustix::process::getpid()).map_err(errno)?;
        }
        (ChildStdio::Tty, None) => return Err(Errno::ENOTTY),
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    for signal in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: restoring the default disposition installs no handler code.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }?;
    }
    // SAFETY: pid 2 ends in exec or _exit (`exec_program`), and after this it touches none
    // of pid 1's descriptors, whose owners sit in frames that never resume here.
    unsafe { sys::close_fds_except(&[keep]) };
    drop_capabilities(kept_capabilities(plan))?;
    nix::sys::prctl::set_no_new_privs()?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    for &(resource, value) in rlimits {
        setrlimit(resource, value, value)?;
    }
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
}

/// What a program running as uid 0 among other mapped ids keeps: enough to switch ids,
/// set its groups and own and change files as those ids, as root's tests expect. Never
/// CAP_SYS_ADMIN (which could undo the sandbox's mounts) or CAP_SYS_PTRACE, and
/// CAP_NET_ADMIN only when asked for ([`kept_capabilities`]).
const ID_CAPABILITIES: rustix::thread::CapabilitySet = rustix::thread::CapabilitySet::CHOWN
    .union(rustix::thread::CapabilitySet::DAC_OVERRIDE)
    .union(rustix::thread::CapabilitySet::DAC_READ_SEARCH)
    .union(rustix::thread::CapabilitySet::FOWNER)
    .union(rustix::thread::CapabilitySet::FSETID)
    .union(rustix::thread::CapabilitySet::KILL)
    .union(rustix::thread::CapabilitySet::SETGID)
    .union(rustix::thread::CapabilitySet::SETUID)
    .union(rustix::thread::CapabilitySet::SETPCAP)
    .union(rustix::thread::CapabilitySet::NET_BIND_SERVICE)
    .union(rustix::thread::CapabilitySet::SYS_CHROOT);

/// The capabilities the program may hold after exec: the id capabilities for uid 0
/// among other mapped ids, and CAP_NET_ADMIN (over the sandbox's own network namespace)
/// with `--net-admin`.
fn kept_capabilities(plan: &Plan) -> rustix::thread::CapabilitySet {
    let mut keep = rustix::thread::CapabilitySet::empty();
    if plan.keep_id_capabilities {
        keep |= ID_CAPABILITIES;
    }
    if plan.program.net_admin {
        keep |= rustix::thread::CapabilitySet::NET_ADMIN;
    }
    keep
}

/// Empties the bounding set but for `keep`, and the ambient set, so that exec grants a
/// uid-0 program nothing else. A program with another uid gets nothing from exec but
/// CAP_NET_ADMIN when kept, which it can have only through the ambient set.
fn drop_capabilities(keep: rustix::thread::CapabilitySet) -> Result<(), Errno> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    // Capability sets are 64 bits wide.
    for cap in 0..=last.min(63) {
        let bit = rustix::thread::CapabilitySet::from_bits_retain(1 << cap);
        if keep.contains(bit) {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(bit) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    rustix::thread::clear_ambient_capability_set().map_err(errno)?;
    if keep.contains(rustix::thread::CapabilitySet::NET_ADMIN) {
        keep_through_exec(rustix::thread::CapabilitySet::NET_ADMIN).map_err(errno)?;
    }
    Ok(())
}

/// A program that is not uid 0 keeps a capability through exec only from the ambient set,
/// and raising one there needs it inheritable first. Its power ends at the sandbox's own
/// namespaces, which this user namespace owns.
fn keep_through_exec(caps: rustix::thread::CapabilitySet) -> rustix::io::Result<()> {
    let mut sets = rustix::thread::capabilities(None)?;
    sets.inheritable |= caps;
    rustix::thread::set_capabilities(None, sets)?;
    rustix::thread::configure_capability_in_ambient_set(caps, true)
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
/// SIGCONT, and after the grace period SIGKILL to everything. Samples the sandbox when
/// due, and kills everything past a limit pid 1 enforces.
fn supervise(
    program: Pid,
    reach: Reach,
    signals: &SignalFd,
    timeout: Option<Duration>,
    grace: Duration,
    watch: &mut Watch,
    chaos: &mut perturb::During,
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
        chaos.tick(now);
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
            reach.signal_all(Signal::SIGKILL);
        }
        if watch.sample().is_some() {
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        }
        let wait = [term_at, kill_at, Some(watch.due()), chaos.next_at()]
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
fn collect_strays(program: Pid, reach: Reach) -> Vec<Stray> {
    if !reach.signal_all(Signal::SIGSTOP) {
        return Vec::new();
    }
    let deadline = Instant::now() + FREEZE_WAIT;
    let mut strays = loop {
        let snapshot = process_snapshot(program, reach);
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

/// Every process of the sandbox but init, with its state letter from /proc/PID/stat.
fn process_snapshot(program: Pid, reach: Reach) -> Vec<(char, Stray)> {
    reach
        .members()
        .into_iter()
        .filter_map(|pid| read_stray(pid, program.as_raw()))
        .collect()
}

/// Which processes make up the sandbox, for init's signals to all of them.
#[derive(Clone, Copy)]
enum Reach {
    /// Our own pid namespace, in which init is pid 1 and kill(-1) reaches everyone else.
    Namespace,
    /// The host's pid namespace (`pid = "host"`), in which kill(-1) would reach every
    /// process the user owns on the host: only init's descendants, which it keeps as a
    /// subreaper even when their parents die.
    Descendants,
}

/// How many times init looks again for processes forked while it was stopping others.
const FREEZE_ROUNDS: usize = 64;

impl perturb::Members for Reach {
    fn pids(&self) -> Vec<i32> {
        self.members()
    }

    fn signal_all(&self, signal: Signal) -> bool {
        Reach::signal_all(*self, signal)
    }
}

impl Reach {
    /// Every process of the sandbox but init.
    fn members(self) -> Vec<i32> {
        let pids = proc_pids();
        match self {
            Reach::Namespace => pids.into_iter().filter(|&pid| pid != 1).collect(),
            Reach::Descendants => {
                let parents: Vec<(i32, i32)> = pids
                    .into_iter()
                    .filter_map(|pid| Some((pid, parent_of(pid)?)))
                    .collect();
                descendants(nix::unistd::getpid().as_raw(), &parents)
            }
        }
    }

    /// Sends `signal` to every member; false if it reached none that exists.
    fn signal_all(self, signal: Signal) -> bool {
        match self {
            Reach::Namespace => kill(Pid::from_raw(-1), signal).is_ok(),
            Reach::Descendants => {
                // A member may fork between the listing and the signal: look again until
                // a listing finds nobody new.
                let mut signalled = std::collections::BTreeSet::new();
                for _ in 0..FREEZE_ROUNDS {
                    let new: Vec<i32> = self
                        .members()
                        .into_iter()
                        .filter(|pid| !signalled.contains(pid))
                        .collect();
                    if new.is_empty() {
                        break;
                    }
                    for pid in new {
                        let _ = kill(Pid::from_raw(pid), signal);
                        signalled.insert(pid);
                    }
                }
                !signalled.is_empty()
            }
        }
    }
}

fn proc_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// The parent pid, field 4 of /proc/PID/stat.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    fields.split_whitespace().nth(1)?.parse().ok()
}

/// Every pid whose chain of parents in `parents` (pid, parent pairs) leads to `root`.
fn descendants(root: i32, parents: &[(i32, i32)]) -> Vec<i32> {
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        for &(pid, ppid) in parents {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
            }
        }
        next += 1;
    }
    found.remove(0);
    found.sort_unstable();
    found
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
        // Everything starts in init's session (init led it, so its id is init's pid: 1,
        // or the host's pid with `pid = host`) and the program's group; setsid or
        // setpgid leaves them, as daemons do.
        detached: *session != nix::unistd::getpid().to_string() || *pgrp != program,
    };
    Some((state.chars().next()?, stray))
}

/// Kills everything left and waits until init has no child at all. Without a pid
/// namespace, a process forked just before its parent was killed becomes our child
/// afterwards, so each round kills whoever is left before it waits.
fn empty_the_sandbox(reach: Reach) {
    loop {
        reach.signal_all(Signal::SIGKILL);
        match waitpid(Pid::from_raw(-1), None) {
            Err(Errno::ECHILD) => return,
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::descendants;

    #[test]
    fn descendants_follow_parent_links_and_nothing_else() {
        // 10 is init; 11 and 12 its children, 13 a grandchild, 20 and 21 host processes,
        // 14 an orphan reparented to init.
        let parents = [
            (11, 10),
            (12, 10),
            (13, 11),
            (14, 10),
            (20, 1),
            (21, 20),
            (10, 5),
        ];
        assert_eq!(descendants(10, &parents), [11, 12, 13, 14]);
        assert!(descendants(13, &parents).is_empty());
        // A loop in a stale listing ends rather than spins.
        assert_eq!(descendants(30, &[(31, 30), (30, 31)]), [31]);
    }
}
