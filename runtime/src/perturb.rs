//! In pid 1: apply a spec's [`Chaos`] to the program. What the program inherits is set
//! before the fork: its clocks during setup, while /proc/self is still writable, its CPUs
//! and its scheduling policy in init; what happens while it runs (busy neighbours, or a
//! loaded machine's, pauses, frozen threads) is driven from init's loop.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use rustix::time::ClockId;

use crate::chaos::{Chaos, Pause, Paused, affordable};
use crate::error::{SetupError, Step};

/// How often a thread let go is tried again until its ptrace stop has come.
const RELEASE_RETRY: Duration = Duration::from_millis(1);
/// How long the end of the run waits for that; pid 1's exit detaches the rest anyway.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// What the program inherits from pid 1 itself, its CPUs and its scheduling policy, set
/// just before the fork.
pub(crate) fn before_program(chaos: &Chaos) -> Result<(), SetupError> {
    pin_cpus(chaos)?;
    schedule_as_batch(chaos)
}

fn chaos_fail(syscall: &'static str, path: Option<&Path>) -> impl FnOnce(Errno) -> SetupError {
    move |errno| SetupError::new(Step::Init, syscall, path, errno)
}

/// Fewer CPUs: the mask passes to every process and thread of the sandbox, and
/// `available_parallelism()` reads it.
fn pin_cpus(chaos: &Chaos) -> Result<(), SetupError> {
    let Some(cpus) = &chaos.cpus else {
        return Ok(());
    };
    let set = cpu_set(cpus).map_err(chaos_fail("sched_setaffinity", None))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(chaos_fail("sched_setaffinity", None))
}

/// No preemption on wakeup: the policy passes to every process and thread of the program,
/// and lowering one's own policy to batch needs no privilege.
fn schedule_as_batch(chaos: &Chaos) -> Result<(), SetupError> {
    if !chaos.batch {
        return Ok(());
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call; pid 0 is
    // this process, and the call only changes its scheduling policy.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        return Err(chaos_fail("sched_setscheduler(SCHED_BATCH)", None)(
            Errno::last(),
        ));
    }
    Ok(())
}

fn cpu_set(cpus: &[usize]) -> nix::Result<CpuSet> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    Ok(set)
}

/// A time namespace makes the program's monotonic and boot clocks start near
/// `uptime_s`. `unshare` moves only our future children into it, and its offsets can
/// be written only until the first of them exists: pid 1 forks none before the program.
/// Setup calls this before the pivot, through the /proc it still has: under `--pid host`
/// the sandbox's /proc is the host's, read-only.
pub(crate) fn enter_time_namespace(chaos: &Chaos) -> Result<(), SetupError> {
    let Some(uptime) = chaos.uptime_s else {
        return Ok(());
    };
    let fail = |syscall, path, errno| SetupError::new(Step::TimeNamespace, syscall, path, errno);
    // SAFETY: CLONE_NEWTIME shares or unshares no memory, descriptors or credentials;
    // it only changes which clocks pid 1's future children see.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWTIME) }
        .map_err(|e| fail("unshare(CLONE_NEWTIME)", None, errno(e)))?;
    let offsets = Path::new("/proc/self/timens_offsets");
    let offset = |clock| uptime as i64 - rustix::time::clock_gettime(clock).tv_sec;
    let text = format!(
        "monotonic {} 0\nboottime {} 0\n",
        offset(ClockId::Monotonic),
        offset(ClockId::Boottime)
    );
    std::fs::write(offsets, text).map_err(|e| {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        fail("write", Some(offsets), errno)
    })
}

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

/// The processes of the sandbox as init sees them: its own pid namespace, or its
/// descendants when it shares the host's.
pub(crate) trait Members {
    /// Every process of the sandbox but init.
    fn pids(&self) -> Vec<i32>;
    /// Sends `signal` to every member.
    fn signal_all(&self, signal: Signal) -> bool;
}

/// What is applied while the program runs: started after the fork, driven by init's loop
/// through [`During::next_at`] and [`During::tick`], and undone by [`During::end`].
pub(crate) struct During<'a> {
    members: &'a dyn Members,
    pauses: &'a [Pause],
    next: usize,
    started: Instant,
    delayed_ms: u64,
    active: Option<(Instant, Held)>,
    /// Threads let go whose ptrace stop has not come yet: released as soon as it does.
    releasing: Vec<(Pid, Option<Signal>)>,
    neighbours: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// What a pause holds still.
enum Held {
    Sandbox,
    /// A thread in a ptrace stop, and a signal it met there, to deliver on release.
    Thread(Pid, Option<Signal>),
}

impl<'a> During<'a> {
    /// While `program` runs: the neighbours go off duty as soon as it has exited.
    pub fn start(chaos: &'a Chaos, members: &'a dyn Members, program: Pid) -> During<'a> {
        let stop = Arc::new(AtomicBool::new(false));
        During {
            members,
            pauses: &chaos.pauses,
            next: 0,
            started: Instant::now(),
            delayed_ms: 0,
            active: None,
            releasing: Vec::new(),
            neighbours: start_neighbours(chaos, &stop, program),
            stop,
        }
    }

    /// When the loop must call [`During::tick`] next.
    pub fn next_at(&self) -> Option<Instant> {
        if !self.releasing.is_empty() {
            return Some(Instant::now() + RELEASE_RETRY);
        }
        match &self.active {
            Some((ends, _)) => Some(*ends),
            None => self
                .pauses
                .get(self.next)
                .map(|p| self.started + Duration::from_millis(p.at_ms)),
        }
    }

    /// Ends the pause that is over, then starts the one that is due, if the budget allows.
    /// Called on every turn of init's loop, so that a frozen thread that died is reaped.
    pub fn tick(&mut self, now: Instant) {
        if let Some((_, Held::Thread(tid, signal))) = &mut self.active
            && !still_held(*tid, signal)
        {
            self.active = None;
        }
        if let Some((ends, _)) = &self.active {
            if now < *ends {
                return;
            }
            let (_, held) = self.active.take().expect("checked above");
            self.release(held);
        }
        self.releasing
            .retain_mut(|(tid, signal)| !try_thaw(*tid, signal));
        let elapsed_ms = now.duration_since(self.started).as_millis() as u64;
        while let Some(pause) = self.pauses.get(self.next) {
            if pause.at_ms > elapsed_ms {
                return;
            }
            self.next += 1;
            // A pause whose time passed during another one is skipped, not shifted.
            if elapsed_ms > pause.at_ms + pause.for_ms
                || !affordable(self.delayed_ms, elapsed_ms, pause.for_ms)
            {
                continue;
            }
            if let Some(held) = hold(pause.what, self.members) {
                self.delayed_ms += pause.for_ms;
                self.active = Some((now + Duration::from_millis(pause.for_ms), held));
                return;
            }
        }
    }

    fn release(&mut self, held: Held) {
        match held {
            Held::Sandbox => {
                self.members.signal_all(Signal::SIGCONT);
            }
            Held::Thread(tid, mut signal) => {
                if !try_thaw(tid, &mut signal) {
                    self.releasing.push((tid, signal));
                }
            }
        }
    }

    /// Lets everything run again and stops the neighbours, before init looks for strays.
    pub fn end(mut self) {
        if let Some((_, held)) = self.active.take() {
            self.release(held);
        }
        let deadline = Instant::now() + RELEASE_WAIT;
        while !self.releasing.is_empty() && Instant::now() < deadline {
            std::thread::sleep(RELEASE_RETRY);
            self.releasing
                .retain_mut(|(tid, signal)| !try_thaw(*tid, signal));
        }
        self.stop.store(true, Ordering::Relaxed);
        for neighbour in &self.neighbours {
            neighbour.thread().unpark();
        }
        for neighbour in self.neighbours.drain(..) {
            let _ = neighbour.join();
        }
    }
}

/// Busy threads of pid 1 itself, each busy half of the time, or all of it when the
/// machine is `loaded`: not processes of the sandbox, so never strays, and gone with
/// pid 1 whatever happens.
fn start_neighbours(chaos: &Chaos, stop: &Arc<AtomicBool>, program: Pid) -> Vec<JoinHandle<()>> {
    if chaos.neighbours == 0 {
        return Vec::new();
    }
    let cpus: Vec<usize> = match &chaos.cpus {
        Some(cpus) => cpus.clone(),
        None => sched_getaffinity(Pid::from_raw(0))
            .map(|set| {
                (0..CpuSet::count())
                    .filter(|&c| set.is_set(c).unwrap_or(false))
                    .collect()
            })
            .unwrap_or_default(),
    };
    // Without a pidfd the neighbours still stop at `During::end`, only later.
    let program = rustix::process::Pid::from_raw(program.as_raw())
        .and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok())
        .map(Arc::new);
    (0..chaos.neighbours as usize)
        .filter_map(|i| {
            let cpu = *cpus.get(i % cpus.len().max(1))?;
            let duty = Duty {
                stop: stop.clone(),
                program: program.clone(),
                looked: Instant::now(),
            };
            let loaded = chaos.loaded;
            std::thread::Builder::new()
                .name("isotest-neighbour".into())
                .spawn(move || {
                    if let Ok(set) = cpu_set(&[cpu]) {
                        let _ = sched_setaffinity(Pid::from_raw(0), &set);
                    }
                    if loaded {
                        spin_until(duty);
                    } else {
                        spin_in_bursts(i, duty);
                    }
                })
                .ok()
        })
        .collect()
}

/// How often a neighbour looks whether the program has exited.
const LOOK_EVERY: Duration = Duration::from_micros(100);

/// Whether a neighbour is still on duty: until [`During::end`], or until the program has
/// exited, when init has its outcome to report and a neighbour in its way on the CPU
/// would only delay that by time slices.
struct Duty {
    stop: Arc<AtomicBool>,
    program: Option<Arc<OwnedFd>>,
    looked: Instant,
}

impl Duty {
    fn on(&mut self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let Some(program) = &self.program else {
            return true;
        };
        if self.looked.elapsed() < LOOK_EVERY {
            return true;
        }
        self.looked = Instant::now();
        // A pidfd is readable once its process has exited.
        let mut poll = [PollFd::new(program.as_fd(), PollFlags::POLLIN)];
        !matches!(nix::poll::poll(&mut poll, PollTimeout::ZERO), Ok(n) if n > 0)
    }
}

/// A loaded machine's neighbour: always runnable, so the program's threads on this CPU
/// get their fair share of it and no more, while it is on duty.
fn spin_until(mut duty: Duty) {
    while duty.on() {
        std::hint::spin_loop();
    }
}

/// Bursts of 1 to 8 ms, each followed by a rest as long: a noisy machine rather than a
/// stalled one, at half the cost to the host.
fn spin_in_bursts(first: usize, mut duty: Duty) {
    let mut round = first;
    while duty.on() {
        let burst = Duration::from_millis(1 + (round * 5 % 8) as u64);
        let until = Instant::now() + burst;
        while Instant::now() < until && duty.on() {
            std::hint::spin_loop();
        }
        std::thread::park_timeout(burst);
        round += 1;
    }
}

/// Starts a pause; `None` when there is nothing to hold (no thread to pick).
fn hold(what: Paused, members: &dyn Members) -> Option<Held> {
    match what {
        Paused::Sandbox => members.signal_all(Signal::SIGSTOP).then_some(Held::Sandbox),
        Paused::Thread { pick } => {
            let threads = secondary_threads(members);
            let tid = *threads.get(pick as usize % threads.len().max(1))?;
            freeze(tid)
        }
    }
}

/// Every thread of the sandbox's processes but their main threads, in tid order. Main
/// threads are left alone: their ptrace stops would reach init's reaping loop.
fn secondary_threads(members: &dyn Members) -> Vec<Pid> {
    let numbers = |dir: &Path| -> Vec<i32> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut threads: Vec<Pid> = members
        .pids()
        .into_iter()
        .flat_map(|pid| {
            numbers(&Path::new("/proc").join(pid.to_string()).join("task"))
                .into_iter()
                .filter(move |&tid| tid != pid)
        })
        .map(Pid::from_raw)
        .collect();
    threads.sort();
    threads
}

/// Stops one thread while its process runs on: a ptrace stop, which, unlike SCHED_IDLE
/// or nice 19, a process without CAP_SYS_NICE in the host's namespace can undo. The
/// stop comes when the thread next runs; release waits for it.
fn freeze(tid: Pid) -> Option<Held> {
    ptrace::seize(tid, ptrace::Options::empty()).ok()?;
    if ptrace::interrupt(tid).is_err() {
        let _ = ptrace::detach(tid, None);
        return None;
    }
    Some(Held::Thread(tid, None))
}

/// Whether a frozen thread is still there. A traced thread that exits stays a zombie until
/// its tracer reaps it, and its process cannot end before, so this reaps it. A signal
/// that stopped it (signal-delivery-stop) is kept, to deliver on release.
fn still_held(tid: Pid, signal: &mut Option<Signal>) -> bool {
    loop {
        match waitpid(tid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Stopped(_, late)) => *signal = signal.or(Some(late)),
            Ok(WaitStatus::PtraceEvent(..)) => continue,
            Ok(WaitStatus::StillAlive) => return true,
            Ok(_) | Err(_) => return false,
        }
    }
}

/// Lets a frozen thread run again; false while it has not reached its stop yet.
fn try_thaw(tid: Pid, signal: &mut Option<Signal>) -> bool {
    if !still_held(tid, signal) {
        return true;
    }
    ptrace::detach(tid, *signal) != Err(Errno::ESRCH)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_loaded_machines_neighbours_go_off_duty_when_the_program_exits() {
        let mut program = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .unwrap();
        let chaos = Chaos {
            neighbours: 2,
            loaded: true,
            ..Chaos::default()
        };
        // Never set: only the program's exit can stop them.
        let stop = Arc::new(AtomicBool::new(false));
        let neighbours = start_neighbours(&chaos, &stop, Pid::from_raw(program.id() as i32));
        assert_eq!(neighbours.len(), 2);
        program.wait().unwrap();
        let (done, ended) = mpsc::channel();
        std::thread::spawn(move || {
            for neighbour in neighbours {
                neighbour.join().unwrap();
            }
            done.send(()).unwrap();
        });
        let waited = ended.recv_timeout(Duration::from_secs(10));
        // Stop them anyway, so that a failure does not leave them spinning.
        stop.store(true, Ordering::Relaxed);
        assert!(
            waited.is_ok(),
            "the neighbours still spin after the program exited"
        );
    }
}
