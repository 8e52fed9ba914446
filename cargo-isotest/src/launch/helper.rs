//! This binary re-executed in a hidden single-threaded mode, to create sandboxes for a
//! process that has threads. Forking a multi-threaded process to set up namespaces is
//! unsound (the child gets one thread and every other thread's locks, held forever), so:
//!
//! - `__sandbox-helper` serves the runner: one sandbox per request, captured, until its
//!   stdin closes. Each of the pool's worker threads drives one helper.
//! - `__exec-spec` runs one spec in the foreground on the terminal: `shell` execs into it
//!   once discovery has started threads.
//!
//! Protocol, over the helper's stdin and stdout: a request is one JSON line; a response is
//! one JSON header line followed by the raw captured output it announces (stdout head and
//! tail, then stderr head and tail), so that non-UTF-8 output arrives intact.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isotest_runtime::{Captured, Echo, Error, KeepWrites, Outcome, Sandbox, SetupError, Spec};
use serde::{Deserialize, Serialize};

/// The hidden argument that starts helper mode.
const HELPER_ARG: &str = "__sandbox-helper";
const PARENT_ENV: &str = "ISOTEST_HELPER_PARENT";
/// The hidden argument under which this binary runs one spec in the foreground.
const EXEC_SPEC_ARG: &str = "__exec-spec";
/// Where that spec is, as JSON.
const SPEC_ENV: &str = "ISOTEST_EXEC_SPEC";
/// How long a dropped helper gets to end by itself once its stdin is closed.
const EXIT_PATIENCE: Duration = Duration::from_secs(1);

/// Runs a hidden mode when `args` (the command line, program name first) asks for one,
/// and returns its exit status.
pub fn hidden_mode(args: &[OsString]) -> Option<i32> {
    let mode = args.get(1)?;
    if mode == HELPER_ARG {
        Some(serve())
    } else if mode == EXEC_SPEC_ARG {
        Some(exec_spec())
    } else {
        None
    }
}

/// Why this process could not become a fresh image running a spec.
#[derive(Debug, thiserror::Error)]
pub enum ReexecError {
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    #[error("{0}")]
    Exec(#[from] std::io::Error),
}

/// Replaces this process by a fresh single-threaded image of this binary that runs
/// `spec` in the foreground; returns only if that fails.
pub fn exec_foreground(spec: &Spec) -> ReexecError {
    let json = match serde_json::to_string(spec) {
        Ok(json) => json,
        Err(e) => return e.into(),
    };
    // The spec goes in the environment, which only its owner can read, not on the
    // command line, which every user can.
    match std::env::current_exe() {
        Ok(exe) => Command::new(exe)
            .arg(EXEC_SPEC_ARG)
            .env(SPEC_ENV, &json)
            .exec()
            .into(),
        Err(e) => e.into(),
    }
}

/// The `__exec-spec` mode: run the spec it was given in the foreground.
fn exec_spec() -> i32 {
    let json = std::env::var(SPEC_ENV).unwrap_or_default();
    match serde_json::from_str(&json) {
        Ok(spec) => super::foreground::run(&spec, None, |_| {}),
        Err(e) => {
            eprintln!("error: unreadable sandbox spec: {e}");
            crate::exit_code::USAGE
        }
    }
}

/// A request as the helper reads it.
#[derive(Deserialize)]
struct Request {
    spec: Spec,
    capture_limit: usize,
    /// Where to keep the contents of what the program writes in its writable layers.
    keep_writes: Option<KeepWrites>,
}

/// The same request as the runner writes it, borrowing the spec: no copy per test.
#[derive(Serialize)]
struct RequestRef<'a> {
    spec: &'a Spec,
    capture_limit: usize,
    keep_writes: Option<&'a KeepWrites>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Response {
    /// The outcome's own serde form, without its output; the lengths say how much of the
    /// raw output follows the header line.
    Outcome {
        outcome: Box<Outcome>,
        stdout: Lengths,
        stderr: Lengths,
    },
    Error {
        message: String,
        setup: Option<SetupError>,
    },
}

#[derive(Serialize, Deserialize)]
struct Lengths {
    head: usize,
    tail: usize,
    total: u64,
}

/// Why a helper could not deliver an outcome.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The sandbox could not be created; `setup` says at which step.
    #[error("{message}")]
    Sandbox {
        message: String,
        setup: Option<SetupError>,
    },
    /// The helper is gone: killed from outside, crashed, or killed on cancellation.
    /// `ended` says how, with the signal when it was one.
    #[error("the sandbox helper (pid {pid}) running it {ended} ({source})")]
    Lost {
        pid: u32,
        ended: String,
        source: std::io::Error,
    },
    /// The run was cancelled (Ctrl-C, SIGTERM, SIGHUP), which kills every helper.
    #[error("the run was cancelled while it ran")]
    Cancelled,
}

/// Live helpers' pids, each kept up to date when its helper is replaced, for whoever must
/// kill them all at once (Ctrl-C).
pub type Pids = Arc<Mutex<Vec<u32>>>;

/// Helper mode: serve requests until stdin closes. Never starts a thread.
fn serve() -> i32 {
    // The runner may die without a word (even SIGKILL): follow it, and with us every
    // sandbox we started, whose pid 1 dies with its parent.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let parent = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    if parent != Some(nix::unistd::getppid().as_raw()) {
        return 1;
    }
    // Every sandbox of the run in one CPU scheduling group, as a runner's children are
    // under nextest, rather than one group per sandbox's session; where this cannot be
    // done, sandboxes still work, only many-threaded tests run slower.
    if let Some(runner) = parent {
        let _ = isotest_runtime::share_cpu_group(runner as u32);
    }
    // One sandbox at a time: each runs in the cgroups the last one ran in, removed when
    // stdin closes (by the janitor if this helper is killed first).
    let _slot = isotest_runtime::CgroupSlot::keep();
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => run_one(&request),
            Err(e) => (
                Response::Error {
                    message: format!("the helper got an unreadable request: {e}"),
                    setup: None,
                },
                Vec::new(),
            ),
        };
        if send(&mut stdout, &response.0, &response.1).is_err() {
            return 0;
        }
    }
}

fn run_one(request: &Request) -> (Response, Vec<u8>) {
    let result = Sandbox::spawn(&request.spec).and_then(|s| {
        let s = s.capture_limit(request.capture_limit).reap_later();
        match &request.keep_writes {
            Some(keep) => s.keep_writes(keep.clone()),
            None => s,
        }
        .wait(Echo::None, None)
    });
    match result {
        Ok(outcome) => {
            let mut bytes = Vec::new();
            let mut lengths = |c: &Captured| {
                let tail = c.tail();
                bytes.extend_from_slice(c.head());
                bytes.extend_from_slice(&tail);
                Lengths {
                    head: c.head().len(),
                    tail: tail.len(),
                    total: c.total(),
                }
            };
            let stdout = lengths(&outcome.stdout);
            let stderr = lengths(&outcome.stderr);
            let response = Response::Outcome {
                outcome: Box::new(outcome),
                stdout,
                stderr,
            };
            (response, bytes)
        }
        Err(error) => {
            let setup = match &error {
                Error::Setup(e) => Some(e.clone()),
                _ => None,
            };
            (
                Response::Error {
                    message: error.to_string(),
                    setup,
                },
                Vec::new(),
            )
        }
    }
}

fn send(out: &mut impl Write, response: &Response, bytes: &[u8]) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, response)?;
    out.write_all(b"\n")?;
    out.write_all(bytes)?;
    out.flush()
}

/// The runner's end of one helper.
pub struct Helper {
    child: Child,
    /// Closed (taken) first when the helper is dropped, to end it.
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Where this helper's pid is listed, and at which index.
    pids: Pids,
    slot: usize,
}

/// A helper process and its pipes.
struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    /// Starts a helper whose pid goes at `slot` in `pids`. Call from a thread that lives
    /// as long as the run: the helper's parent-death signal fires when the thread that
    /// forked it ends.
    pub fn start(pids: &Pids, slot: usize) -> std::io::Result<Helper> {
        let Process {
            child,
            stdin,
            stdout,
        } = Helper::spawn()?;
        let mut list = pids.lock().expect("pids lock");
        if list.len() <= slot {
            list.resize(slot + 1, 0);
        }
        list[slot] = child.id();
        drop(list);
        Ok(Helper {
            child,
            stdin: Some(stdin),
            stdout,
            pids: pids.clone(),
            slot,
        })
    }

    fn spawn() -> std::io::Result<Process> {
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        command
            .arg(HELPER_ARG)
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Out of the terminal's process group: Ctrl-C is the runner's to handle.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and affects only the new child.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Process {
            child,
            stdin,
            stdout,
        })
    }

    /// A fresh helper in place of one that is gone, so that one lost helper costs one
    /// test, not every test after it.
    fn replace_if_gone(&mut self) -> std::io::Result<()> {
        if self.child.try_wait()?.is_none() {
            return Ok(());
        }
        let fresh = Helper::spawn()?;
        self.child = fresh.child;
        self.stdin = Some(fresh.stdin);
        self.stdout = fresh.stdout;
        self.pids.lock().expect("pids lock")[self.slot] = self.child.id();
        Ok(())
    }

    /// How the helper ended, once it has: its signal or exit code.
    fn how_it_ended(&mut self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return match (status.signal(), status.code()) {
                        (Some(signal), _) => {
                            format!("was killed by {}", isotest_runtime::signal_name(signal))
                        }
                        (_, Some(code)) => format!("exited with code {code}"),
                        _ => "ended".into(),
                    };
                }
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return "stopped answering".into(),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs one sandbox to its end, keeping what it writes in `keep_writes` if given.
    pub fn run(
        &mut self,
        spec: &Spec,
        capture_limit: usize,
        keep_writes: Option<&KeepWrites>,
    ) -> Result<Outcome, HelperError> {
        if let Err(source) = self.replace_if_gone() {
            return Err(HelperError::Lost {
                pid: self.pid(),
                ended: "is gone and could not be replaced".into(),
                source,
            });
        }
        match self.exchange(spec, capture_limit, keep_writes) {
            Ok(result) => result,
            Err(source) => Err(HelperError::Lost {
                pid: self.pid(),
                ended: self.how_it_ended(),
                source,
            }),
        }
    }

    /// One request and its response; an I/O error means the helper is gone.
    fn exchange(
        &mut self,
        spec: &Spec,
        capture_limit: usize,
        keep_writes: Option<&KeepWrites>,
    ) -> std::io::Result<Result<Outcome, HelperError>> {
        let request = RequestRef {
            spec,
            capture_limit,
            keep_writes,
        };
        let mut line = serde_json::to_vec(&request)?;
        line.push(b'\n');
        let stdin = self
            .stdin
            .as_mut()
            .expect("open until the helper is dropped");
        stdin.write_all(&line)?;
        stdin.flush()?;
        let mut header = String::new();
        if self.stdout.read_line(&mut header)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        match serde_json::from_str(&header)? {
            Response::Error { message, setup } => Ok(Err(HelperError::Sandbox { message, setup })),
            Response::Outcome {
                mut outcome,
                stdout,
                stderr,
            } => {
                outcome.stdout = self.read_captured(&stdout)?;
                outcome.stderr = self.read_captured(&stderr)?;
                Ok(Ok(*outcome))
            }
        }
    }

    fn read_captured(&mut self, lengths: &Lengths) -> std::io::Result<Captured> {
        let mut head = vec![0; lengths.head];
        self.stdout.read_exact(&mut head)?;
        let mut tail = vec![0; lengths.tail];
        self.stdout.read_exact(&mut tail)?;
        Ok(Captured::from_parts(head, tail, lengths.total))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing its stdin ends the helper's loop, and the helper removes its cgroups on
        // its way out; one still in a sandbox after a moment is killed (its janitor then
        // removes them).
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + EXIT_PATIENCE;
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
