//! The host side: clone a sandbox, drain its output, relay its terminal, collect its report.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;
use rustix::termios::Winsize;
use serde::{Deserialize, Serialize};

use crate::error::{Error, SetupError, Step};
use crate::forward::Forwarder;
use crate::handover::{Expected, Refused};
use crate::idmap::{IdMapping, Kind, find_tool, map_text, tool_args};
use crate::init;
use crate::limits::{Enforcement, Enforcer};
use crate::outcome::{Finish, Outcome};
use crate::output::{Captured, DEFAULT_CAPTURE_LIMIT};
use crate::prepare::{ChildFds, ChildStdio, Plan, PlannedMount};
use crate::setup;
use crate::spec::{Mount, Spec};
use crate::sys::{self, Forked, Handed, Received};
use crate::writes::{self, KeepWrites, Snapshot, Writes};

/// Extra time the host waits past the spec's timeout and grace before it kills pid 1
/// itself; only a wedged init ever needs it.
const BACKSTOP: Duration = Duration::from_secs(10);
const CHUNK: usize = 64 * 1024;
/// Ctrl-D, the default VEOF of a fresh pty.
const END_OF_FILE: u8 = 0x04;

/// The one message pid 1 writes on its status pipe before it exits.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Message {
    SetupFailed(SetupError),
    Finished(Finish),
}

/// Where the program's output goes besides the capture.
pub enum Echo<'a> {
    /// Captured only.
    None,
    /// Also written as it arrives to this process's stdout and stderr.
    Inherit,
    /// Also handed to a callback, with `true` for stderr.
    Callback(&'a mut dyn FnMut(bool, &[u8])),
}

/// A running sandbox, seen from the host.
pub struct Sandbox {
    pid: Pid,
    pidfd: OwnedFd,
    status: OwnedFd,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// The program has a terminal: its pty's master arrives on the handover socket.
    terminal: bool,
    /// The pty master once it arrived; its output counts as stdout.
    tty: Option<OwnedFd>,
    /// Held open for the child's sake; see `ChildFds::lifeline`.
    _lifeline: OwnedFd,
    backstop: Option<Instant>,
    capture_limit: usize,
    /// Between a forwarded SIGTERM (or SIGINT, SIGHUP, SIGQUIT) and the SIGKILL of the
    /// whole sandbox, when the program ignores it.
    grace: Duration,
    /// When the host kills the sandbox because the program outlived that grace period.
    kill_at: Option<Instant>,
    /// How many terminating signals were forwarded; the second kills at once.
    terminations: u32,
    /// The host killed the sandbox itself, so pid 1 cannot report.
    killed: bool,
    started: Instant,
    /// Where setup hands over descriptors (the pty's master, forwarded listeners,
    /// overlays' upper layers), until pid 1 exits.
    handover: Option<OwnedFd>,
    /// What may still come on it.
    expected: Expected,
    /// A descriptor that was not what setup should have handed over: the sandbox is
    /// killed, and this is its error.
    refused: Option<Refused>,
    forwards: Vec<SocketAddr>,
    forwarder: Forwarder,
    /// The overlays, by their plan index: where they are, their host directory, and their
    /// upper layer once setup has handed it over.
    overlays: Vec<(usize, PathBuf, PathBuf, Option<OwnedFd>)>,
    /// The writable binds' directories as they were before the clone.
    snapshots: Vec<Snapshot>,
    keep_writes: Option<KeepWrites>,
    /// The sandbox's cgroup, removed once pid 1 is reaped (or on drop).
    limits: Enforcer,
    /// The outcome may be returned once pid 1 has reported, while it is still exiting;
    /// it is reaped once the next sandbox of this process is cloned.
    reap_later: bool,
}

/// Pids 1 that reported and were left exiting, by their pidfds, each with its cgroups
/// to remove (or its slot to keep) once it is gone.
static EXITING: std::sync::Mutex<Vec<(OwnedFd, Enforcer)>> = std::sync::Mutex::new(Vec::new());

/// Waits for every pid 1 left exiting, once the next sandbox is cloned: the kernel tears
/// their namespaces down (an RCU grace period for the mounts) while the caller reads its
/// next request and plans, and the rest of the wait overlaps the new sandbox's setup.
/// Their cgroups go then; one that cannot is the janitor's, as after a killed runner.
pub(crate) fn reap_exiting() {
    let exiting = std::mem::take(&mut *EXITING.lock().unwrap_or_else(|e| e.into_inner()));
    for (pidfd, limits) in exiting {
        let _ = rustix::process::waitid(
            rustix::process::WaitId::PidFd(pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED,
        );
        let _ = limits.release();
    }
}

impl Sandbox {
    /// Creates the sandbox and starts the spec's program in it.
    ///
    /// Must be called from a single-threaded process: forking a multi-threaded one leaves
    /// the child with locks held by threads that no longer exist.
    pub fn spawn(spec: &Spec) -> Result<Sandbox, Error> {
        let plan = Plan::new(spec)?;
        check_single_threaded()?;
        ensure_standard_fds();
        let (limits, enforcement) = Enforcer::prepare(spec)?;
        let (status_r, status_w) = pipe().map_err(Error::host("pipe2"))?;
        let (lifeline_r, lifeline_w) = pipe().map_err(Error::host("pipe2"))?;
        let (handover_r, handover_w) = if plan.hands_over() {
            let (ours, theirs) = rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::SEQPACKET,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| Error::host("socketpair")(Errno::from_raw(e.raw_os_error())))?;
            (Some(ours), Some(theirs))
        } else {
            (None, None)
        };
        let snapshots = writable_bind_snapshots(spec);
        let overlays = overlays(&plan);
        let (placed_r, placed_w) = pipe().map_err(Error::host("pipe2"))?;
        let cgroup_tasks = limits.cgroup_tasks().map_err(|e| Error::Limits(e.into()))?;
        let (parent_io, child_io) = if spec.tty {
            (ParentIo::Tty, ChildStdio::Tty)
        } else {
            let (out_r, out_w) = pipe().map_err(Error::host("pipe2"))?;
            let (err_r, err_w) = pipe().map_err(Error::host("pipe2"))?;
            (
                ParentIo::Pipes(out_r, err_r),
                ChildStdio::Pipes {
                    stdout: out_w,
                    stderr: err_w,
                },
            )
        };
        let (maps_r, maps_w) = if plan.ids.maps_other_ids() {
            let (r, w) = pipe().map_err(Error::host("pipe2"))?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        // SAFETY: checked single-threaded above; the child ends in `sandbox_main`'s _exit.
        match unsafe { sys::fork_into(plan.clone_flags, limits.clone_into()) } {
            Err((syscall, errno)) => Err(SetupError::new(Step::Clone, syscall, None, errno).into()),
            Ok(Forked::Child) => sandbox_main(
                &plan,
                &enforcement,
                ChildFds {
                    status: status_w,
                    lifeline: lifeline_r,
                    maps_written: maps_r,
                    placed: placed_r,
                    cgroup_tasks,
                    stdio: child_io,
                    handover: handover_w,
                },
            ),
            Ok(Forked::Parent {
                pid,
                pidfd,
                into_cgroup,
            }) => {
                drop(placed_r);
                drop(maps_r);
                drop(cgroup_tasks);
                if let Err(e) = limits.place(pid, into_cgroup) {
                    // Its setup waits for word from us; it ends now, and is reaped before
                    // its cgroup goes.
                    let _ =
                        rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
                    let _ = rustix::process::waitid(
                        rustix::process::WaitId::PidFd(pidfd.as_fd()),
                        rustix::process::WaitIdOptions::EXITED,
                    );
                    return Err(Error::Limits(e.into()));
                }
                // A child whose setup already failed has closed its end (EPIPE): its report
                // on the status pipe says why, and `wait` reads it.
                match write_all(placed_w.as_fd(), b"1") {
                    Ok(()) | Err(Errno::EPIPE) => {}
                    Err(errno) => return Err(Error::host("write")(errno)),
                }
                if let Some(maps_w) = maps_w {
                    if let Err(e) = map_ids_from_outside(pid, &plan) {
                        // The child reads EOF and leaves; reap it before reporting.
                        drop(maps_w);
                        let _ = rustix::process::waitid(
                            rustix::process::WaitId::PidFd(pidfd.as_fd()),
                            rustix::process::WaitIdOptions::EXITED,
                        );
                        return Err(e);
                    }
                    write_all(maps_w.as_fd(), &[1]).map_err(Error::host("write"))?;
                }
                reap_exiting();
                let (stdout, stderr) = match parent_io {
                    ParentIo::Pipes(out, err) => (Some(out), Some(err)),
                    ParentIo::Tty => (None, None),
                };
                Ok(Sandbox {
                    pid,
                    pidfd,
                    status: status_r,
                    stdout,
                    stderr,
                    terminal: spec.tty,
                    tty: None,
                    _lifeline: lifeline_w,
                    backstop: plan
                        .timeout
                        .map(|t| Instant::now() + t + plan.grace + BACKSTOP),
                    capture_limit: DEFAULT_CAPTURE_LIMIT,
                    grace: plan.grace,
                    kill_at: None,
                    terminations: 0,
                    killed: false,
                    started: Instant::now(),
                    handover: handover_r,
                    expected: Expected::new(
                        plan.tty,
                        &plan.forwards,
                        &overlays.iter().map(|o| o.0).collect::<Vec<_>>(),
                    ),
                    refused: None,
                    forwards: spec.forwards.clone(),
                    forwarder: Forwarder::new(spec.chaos.net),
                    overlays,
                    snapshots,
                    keep_writes: None,
                    limits,
                    reap_later: false,
                })
            }
        }
    }

    /// Bytes of each stream kept in memory (head and tail); the rest is only counted.
    pub fn capture_limit(mut self, bytes: usize) -> Sandbox {
        self.capture_limit = bytes;
        self
    }

    /// Returns the outcome as soon as pid 1 has reported and every stream has ended,
    /// without waiting for the kernel to tear its namespaces down (a few hundred
    /// microseconds of mounts); the next [`Sandbox::spawn`] of this process reaps it
    /// once it has cloned, and only then removes its cgroups (their counters were read
    /// at the report).
    pub fn reap_later(mut self) -> Sandbox {
        self.reap_later = true;
        self
    }

    /// Copies what the program wrote in each writable layer into `keep` (one directory
    /// per layer), besides listing it in [`Outcome::writes`].
    pub fn keep_writes(mut self, keep: KeepWrites) -> Sandbox {
        self.keep_writes = Some(keep);
        self
    }

    /// The host pid of the sandbox's pid 1.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Kills the whole sandbox at once: when pid 1 dies the kernel kills its namespace.
    /// Without a pid namespace of its own (`pid = host`) this kills init, and the
    /// program with it (its parent death signal), but not what the program started.
    pub fn kill(&self) -> Result<(), Error> {
        rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL)
            .map_err(|e| Error::host("pidfd_send_signal")(Errno::from_raw(e.raw_os_error())))
    }

    /// Drains output until the sandbox is empty and returns what happened. `signals`, if
    /// given, is a signalfd whose signals are forwarded to the program (SIGWINCH resizes
    /// its terminal).
    pub fn wait(
        mut self,
        mut echo: Echo<'_>,
        signals: Option<&SignalFd>,
    ) -> Result<Outcome, Error> {
        let mut stdout = Captured::new(self.capture_limit);
        let mut stderr = Captured::new(self.capture_limit);
        let mut report = Vec::new();
        let _raw = self.terminal.then(RawMode::enter).flatten();
        // Relayed from the moment the pty's master arrives.
        let mut stdin_open = self.terminal;
        let mut status_open = true;
        let mut init_running = true;
        let mut buf = vec![0u8; CHUNK];
        while (init_running && !(self.reap_later && !status_open && !report.is_empty()))
            || status_open
            || self.stdout.is_some()
            || self.stderr.is_some()
            || self.tty.is_some()
            || self.handover.is_some()
        {
            let stdin = std::io::stdin();
            let mut watched: Vec<(Source, BorrowedFd<'_>)> = Vec::with_capacity(7);
            if init_running {
                watched.push((Source::Init, self.pidfd.as_fd()));
            }
            if status_open {
                watched.push((Source::Status, self.status.as_fd()));
            }
            if let Some(fd) = &self.stdout {
                watched.push((Source::Stdout, fd.as_fd()));
            }
            if let Some(fd) = &self.stderr {
                watched.push((Source::Stderr, fd.as_fd()));
            }
            if let Some(fd) = &self.tty {
                watched.push((Source::Tty, fd.as_fd()));
            }
            if stdin_open && self.tty.is_some() {
                watched.push((Source::Stdin, stdin.as_fd()));
            }
            if let Some(fd) = signals {
                watched.push((Source::Signals, fd.as_fd()));
            }
            if let Some(fd) = &self.handover {
                watched.push((Source::Handover, fd.as_fd()));
            }
            let mut fds: Vec<PollFd<'_>> = watched
                .iter()
                .map(|&(_, fd)| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            let mut relayed = Vec::new();
            if init_running {
                for (token, fd, events) in self.forwarder.interest() {
                    relayed.push(token);
                    fds.push(PollFd::new(fd, events));
                }
            }
            // The host's own deadlines (the backstop past the timeout, the end of a
            // signal's grace period), then the next delayed relay write.
            let deadline = [self.backstop, self.kill_at]
                .into_iter()
                .flatten()
                .min()
                .filter(|_| init_running);
            let relay_due = self.forwarder.next_due().filter(|_| init_running);
            let timeout = match deadline.into_iter().chain(relay_due).min() {
                Some(at) => {
                    let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            match nix::poll::poll(&mut fds, timeout) {
                Ok(0) if deadline.is_some_and(|at| Instant::now() >= at) => {
                    self.kill()?;
                    self.killed |= self.kill_at.is_some_and(|at| Instant::now() >= at);
                    self.backstop = None;
                    self.kill_at = None;
                    continue;
                }
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(Error::host("poll")(errno)),
            }
            // Collected first, so that handling a source may close its descriptor.
            let events: Vec<PollFlags> = fds
                .iter()
                .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);
            if relay_due.is_some() {
                self.forwarder.release(Instant::now());
            }
            let ready: Vec<Source> = watched
                .iter()
                .zip(&events)
                .filter(|(_, events)| !events.is_empty())
                .map(|(&(source, _), _)| source)
                .collect();
            for (token, events) in relayed.into_iter().zip(&events[watched.len()..]) {
                if !events.is_empty() {
                    self.forwarder.ready(token, *events);
                }
            }
            for source in ready {
                match source {
                    Source::Init => init_running = false,
                    Source::Status => {
                        status_open =
                            read_into(&self.status, &mut buf, |b| report.extend_from_slice(b))
                    }
                    Source::Stdout => {
                        let mut wanted = true;
                        if !read_into(self.stdout.as_ref().expect("polled"), &mut buf, |b| {
                            stdout.push(b);
                            wanted = echo.emit(false, b);
                        }) || !wanted
                        {
                            // Closing our end passes a broken pipe on: the program's next
                            // write gets SIGPIPE, as it would outside.
                            self.stdout = None;
                        }
                    }
                    Source::Stderr => {
                        let mut wanted = true;
                        if !read_into(self.stderr.as_ref().expect("polled"), &mut buf, |b| {
                            stderr.push(b);
                            wanted = echo.emit(true, b);
                        }) || !wanted
                        {
                            self.stderr = None;
                        }
                    }
                    Source::Tty => {
                        if !read_into(self.tty.as_ref().expect("polled"), &mut buf, |b| {
                            stdout.push(b);
                            let _ = echo.emit(false, b);
                        }) {
                            self.tty = None;
                            stdin_open = false;
                        }
                    }
                    Source::Stdin => {
                        let master = self.tty.as_ref().expect("stdin is relayed only to a tty");
                        stdin_open = read_into(&stdin, &mut buf, |b| {
                            let _ = write_all(master.as_fd(), b);
                        });
                        if !stdin_open {
                            // The end of piped input reaches the program as the terminal's
                            // end-of-file character, as if typed.
                            let _ = write_all(master.as_fd(), &[END_OF_FILE]);
                        }
                    }
                    Source::Signals => self.forward_signals(signals.expect("polled")),
                    Source::Handover => self.take_handed_over(),
                }
            }
        }
        self.finish(report, stdout, stderr)
    }

    /// Takes what setup handed over: the pty's master is relayed, forwarded listeners go
    /// to the relay, upper layers wait for the end. EOF (pid 1 has exited) ends the
    /// handover.
    fn take_handed_over(&mut self) {
        let Some(socket) = &self.handover else { return };
        loop {
            match sys::receive_fd(socket.as_fd()) {
                Ok(Received::Fd(handed, fd)) => {
                    if let Err(refused) = self.expected.take(handed, &fd) {
                        return self.refuse(refused);
                    }
                    match handed {
                        Handed::Terminal => self.tty = Some(fd),
                        Handed::Listener(index) => self
                            .forwarder
                            .add_listener(fd, self.forwards[index as usize]),
                        Handed::Upper(index) => {
                            if let Some(overlay) =
                                self.overlays.iter_mut().find(|o| o.0 == index as usize)
                            {
                                overlay.3 = Some(fd);
                            }
                        }
                    }
                    // Nothing more is expected, so nothing more is read.
                    if self.expected.is_complete() {
                        self.handover = None;
                        return;
                    }
                }
                Ok(Received::Empty) => return,
                Err(Errno::EINTR) => continue,
                // A message without its descriptor, or with more than one.
                Err(Errno::EBADMSG | Errno::ENOBUFS) => return self.refuse(Refused::malformed()),
                Ok(Received::Closed) | Err(_) => {
                    self.handover = None;
                    return;
                }
            }
        }
    }

    /// Stops reading the handover socket and kills the sandbox: its setup sent what it
    /// never should, and whatever else it sends is not to be trusted either.
    fn refuse(&mut self, refused: Refused) {
        self.refused = Some(refused);
        self.handover = None;
        let _ = self.kill();
    }

    /// Lists (and keeps, if asked) what the program wrote in each writable layer. Runs
    /// once the sandbox is empty, so nothing can write there any more.
    fn collect_writes(&mut self) -> Vec<Writes> {
        let mut layers = Vec::new();
        for (_, dst, src, upper) in &self.overlays {
            let Some(upper) = upper else { continue };
            layers.push((
                writes::overlay_changes(upper.as_fd(), src, dst),
                Some(upper.as_fd()),
            ));
        }
        for snapshot in &self.snapshots {
            layers.push((snapshot.changes_since(), snapshot.tree()));
        }
        let keep = self.keep_writes.as_ref().map(|keep| {
            let any = layers
                .iter()
                .any(|(layer, tree)| tree.is_some() && !layer.changes.is_empty());
            (keep, keep.renew(any))
        });
        layers
            .into_iter()
            .enumerate()
            .map(|(index, (mut layer, tree))| {
                match (&keep, tree) {
                    (Some((_, Ok(Some((into, path))))), Some(tree))
                        if !layer.changes.is_empty() =>
                    {
                        let name = format!("layer-{index}");
                        writes::keep(tree, &mut layer, into.as_fd(), &name, &path.join(&name));
                    }
                    (Some((keep, Err(errno))), Some(_)) if !layer.changes.is_empty() => {
                        let dir = keep.base.join(&keep.below);
                        layer
                            .errors
                            .push(format!("{}: cannot create: {errno}", dir.display()))
                    }
                    _ => {}
                }
                layer
            })
            .filter(|layer| !layer.changes.is_empty() || !layer.errors.is_empty())
            .collect()
    }

    /// Passes signals on to the program. A terminating one starts the grace period after
    /// which the host kills the sandbox; a second one kills it at once.
    fn forward_signals(&mut self, signals: &SignalFd) {
        while let Ok(Some(info)) = signals.read_signal() {
            let signal = info.ssi_signo as i32;
            if matches!(
                signal,
                libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
            ) {
                self.terminations += 1;
                let now = Instant::now();
                self.kill_at = Some(if self.terminations > 1 {
                    now
                } else {
                    now + self.grace
                });
            }
            if signal == libc::SIGWINCH {
                if let (Some(master), Some(size)) =
                    (&self.tty, terminal_size(std::io::stdin().as_fd()))
                {
                    let _ = rustix::termios::tcsetwinsize(master, size);
                }
            } else if let Some(signal) = rustix::process::Signal::from_named_raw(signal) {
                let _ = rustix::process::pidfd_send_signal(&self.pidfd, signal);
            }
        }
    }

    /// Reaps pid 1 (or leaves it exiting, with `reap_later`), turns its report into the
    /// outcome, and releases its cgroups.
    fn finish(
        mut self,
        report: Vec<u8>,
        stdout: Captured,
        stderr: Captured,
    ) -> Result<Outcome, Error> {
        // pid 1 reported before it exited, so its exit status says nothing more.
        let mut later = None;
        let status = if self.reap_later && !report.is_empty() {
            later = Some(
                rustix::io::fcntl_dupfd_cloexec(&self.pidfd, 0)
                    .map_err(|e| Error::host("dup")(Errno::from_raw(e.raw_os_error())))?,
            );
            Ok(None)
        } else {
            rustix::process::waitid(
                rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            )
        };
        let outcome = self.outcome(report, stdout, stderr, status);
        let released = release_limits(self.limits, later);
        // The sandbox's own failure says more than one to remove its cgroups.
        outcome.and_then(|outcome| released.map(|()| outcome))
    }

    fn outcome(
        &mut self,
        report: Vec<u8>,
        stdout: Captured,
        stderr: Captured,
        status: rustix::io::Result<Option<rustix::process::WaitIdStatus>>,
    ) -> Result<Outcome, Error> {
        let describe = || match &status {
            Ok(Some(s)) => match (s.exit_status(), s.terminating_signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (_, Some(signal)) => format!("killed by {}", crate::outcome::signal_name(signal)),
                _ => "unknown status".to_string(),
            },
            Ok(None) => "still running".to_string(),
            Err(e) => format!("waitid failed: {e}"),
        };
        if let Some(refused) = self.refused.take() {
            return Err(Error::Handover(refused.to_string()));
        }
        if report.is_empty() && self.killed {
            let exit = crate::outcome::Exit::from_signal(libc::SIGKILL);
            let duration = self.started.elapsed();
            let writes = self.collect_writes();
            let (resources, limit_exceeded) =
                self.limits.account(&Default::default(), &exit, false);
            return Ok(Outcome {
                exit,
                timed_out: false,
                duration,
                strays: Vec::new(),
                start_error: None,
                writes,
                stdout,
                stderr,
                resources,
                limit_exceeded,
            });
        }
        if report.is_empty() {
            return Err(Error::InitLost {
                pid: self.pid.as_raw(),
                status: describe(),
                signal: status.ok().flatten().and_then(|s| s.terminating_signal()),
            });
        }
        let message: Message =
            serde_json::from_slice(&report).map_err(|e| Error::Protocol(e.to_string()))?;
        match message {
            Message::SetupFailed(e) => Err(e.into()),
            Message::Finished(finish) => {
                let writes = self.collect_writes();
                let (resources, limit_exceeded) =
                    self.limits
                        .account(&finish.usage, &finish.exit, finish.timed_out);
                Ok(Outcome {
                    exit: finish.exit,
                    timed_out: finish.timed_out,
                    duration: Duration::from_millis(finish.duration_ms),
                    strays: finish.strays,
                    start_error: finish.start_error,
                    writes,
                    stdout,
                    stderr,
                    resources,
                    limit_exceeded,
                })
            }
        }
    }
}

/// A sandbox's cgroups removed (or its slot kept) now that pid 1 is gone, or with `later`,
/// its pidfd, once it is: see [`reap_exiting`].
fn release_limits(limits: Enforcer, later: Option<OwnedFd>) -> Result<(), Error> {
    match later {
        Some(pidfd) => {
            EXITING
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((pidfd, limits));
            Ok(())
        }
        None => limits.release().map_err(|e| Error::Limits(e.into())),
    }
}

impl Echo<'_> {
    /// Whether the stream still has a reader: false once ours is a broken pipe.
    fn emit(&mut self, is_stderr: bool, bytes: &[u8]) -> bool {
        let written = match self {
            Echo::None => Ok(()),
            Echo::Inherit if is_stderr => std::io::stderr().write_all(bytes),
            Echo::Inherit => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Echo::Callback(f) => {
                f(is_stderr, bytes);
                Ok(())
            }
        };
        // Any other error (a full non-blocking terminal, say) must not stop the draining:
        // the capture still gets everything.
        !matches!(written, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

#[derive(Clone, Copy)]
enum Source {
    Init,
    Status,
    Stdout,
    Stderr,
    Tty,
    Stdin,
    Signals,
    Handover,
}

enum ParentIo {
    Pipes(OwnedFd, OwnedFd),
    Tty,
}

/// The plan's overlays, each by its index, waiting for its upper layer.
fn overlays(plan: &Plan) -> Vec<(usize, PathBuf, PathBuf, Option<OwnedFd>)> {
    plan.mounts
        .iter()
        .enumerate()
        .filter_map(|(index, m)| match m {
            PlannedMount::Overlay { src, dst, .. } => Some((index, dst.clone(), src.clone(), None)),
            _ => None,
        })
        .collect()
}

/// Snapshots of the writable binds that are directories, to tell afterwards what the
/// program left there. Taken before the clone: nothing in the sandbox runs yet.
fn writable_bind_snapshots(spec: &Spec) -> Vec<Snapshot> {
    spec.mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Bind {
                src,
                dst,
                writable: true,
            } if src.is_dir() => Some(Snapshot::take(src, dst)),
            _ => None,
        })
        .collect()
}

/// Runs in the cloned child: build the sandbox, run init, send the one report, exit.
fn sandbox_main(plan: &Plan, limits: &Enforcement, mut fds: ChildFds) -> ! {
    let message = match setup::build_sandbox(plan, &mut fds) {
        Err(e) => Message::SetupFailed(e),
        Ok(terminal) => match init::run(plan, &fds, terminal, limits) {
            Ok(finish) => Message::Finished(finish),
            Err(e) => Message::SetupFailed(e),
        },
    };
    let bytes = serde_json::to_vec(&message).unwrap_or_default();
    let _ = write_all(fds.status.as_fd(), &bytes);
    hang_up();
    // SAFETY: _exit ends this process at once, skipping the parent's atexit handlers.
    unsafe { libc::_exit(0) }
}

/// The supervisor is done with a sandbox once the status pipe and the output pipes are
/// closed; exit would close them only after tearing down pid 1's address space, so pid 1
/// closes them itself and the supervisor goes on meanwhile.
fn hang_up() {
    // SAFETY: only `_exit` follows, and it uses no descriptor; the owners of these sit in
    // frames that never resume.
    unsafe { sys::close_fds_except(&[]) };
}

/// Writes the child's maps of more than its own ids, which needs privilege over this
/// namespace: root writes them itself (and leaves setgroups allowed), anyone else has
/// newuidmap and newgidmap write the subordinate ranges that /etc/subuid grants.
fn map_ids_from_outside(pid: Pid, plan: &Plan) -> Result<(), Error> {
    for (kind, extents) in [(Kind::Uid, &plan.uid_map), (Kind::Gid, &plan.gid_map)] {
        match &plan.ids {
            IdMapping::Single => unreachable!("a single id maps itself from inside"),
            IdMapping::Full => {
                let path = std::path::PathBuf::from(format!("/proc/{pid}/{}", kind.map_file()));
                std::fs::write(&path, map_text(extents)).map_err(|e| {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                    let step = match kind {
                        Kind::Uid => Step::UidMap,
                        Kind::Gid => Step::GidMap,
                    };
                    SetupError::new(step, "write", Some(&path), errno)
                })?;
            }
            IdMapping::Subordinate { .. } => run_map_tool(kind, pid, extents)?,
        }
    }
    Ok(())
}

fn run_map_tool(kind: Kind, pid: Pid, extents: &[crate::idmap::Extent]) -> Result<(), Error> {
    let tool = kind.tool();
    let failed = |status: String, stderr: String| Error::IdMapTool {
        tool,
        status,
        stderr,
    };
    let path = find_tool(kind).ok_or_else(|| failed("not installed".into(), String::new()))?;
    let output = std::process::Command::new(path)
        .arg(pid.to_string())
        .args(tool_args(extents))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| failed("could not start".into(), e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(failed(output.status.to_string(), stderr));
    }
    Ok(())
}

/// One read; calls `f` with the data and returns false at EOF (or a pty's EIO).
fn read_into(fd: impl AsFd, buf: &mut [u8], mut f: impl FnMut(&[u8])) -> bool {
    loop {
        match nix::unistd::read(fd.as_fd(), buf) {
            Ok(0) => return false,
            Ok(n) => {
                f(&buf[..n]);
                return true;
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
}

fn check_single_threaded() -> Result<(), Error> {
    // procfs counts a process's threads into its task directory's links, beside . and ..
    let threads = std::fs::metadata("/proc/self/task").map_or(1, |m| m.nlink().saturating_sub(2));
    if threads > 1 {
        return Err(Error::MultiThreaded(threads as usize));
    }
    Ok(())
}

/// With 0, 1 or 2 closed, our pipes could land there and be clobbered by the program's
/// stdio; /dev/null fills the gaps.
fn ensure_standard_fds() {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    for fd in [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()] {
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            let null = nix::fcntl::open(c"/dev/null", OFlag::O_RDWR, nix::sys::stat::Mode::empty());
            // The lowest free number is `fd`, which is where it must stay.
            std::mem::forget(null);
        }
    }
}

fn terminal_size(fd: BorrowedFd<'_>) -> Option<Winsize> {
    rustix::termios::tcgetwinsize(fd).ok()
}

/// The caller's terminal in raw mode while it is relayed, restored on drop.
struct RawMode(Termios);

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.0);
    }
}

/// Blocks the signals a foreground supervisor forwards and returns a signalfd for them.
/// Call before `spawn`, so that none is lost in between.
pub fn forwarded_signals(with_winch: bool) -> Result<SignalFd, Error> {
    let mut mask = nix::sys::signal::SigSet::empty();
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        mask.add(signal);
    }
    if with_winch {
        mask.add(Signal::SIGWINCH);
    }
    mask.thread_block().map_err(Error::host("sigprocmask"))?;
    SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .map_err(Error::host("signalfd"))
}
