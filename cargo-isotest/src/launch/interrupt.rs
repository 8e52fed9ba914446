//! Ctrl-C, SIGTERM and SIGHUP during a run: stop handing out tests and tear every sandbox
//! down, so that the run can still write its partial report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

use super::helper::Pids;

/// Blocks the signals in this thread and every thread it starts later, and waits for them
/// on a thread of its own. Call before starting any other thread. On a signal, `stop` is
/// set and the helpers are killed; their sandboxes die with them, since each sandbox's
/// pid 1 has its helper's death as its own.
pub fn watch(stop: Arc<AtomicBool>, helpers: Pids) -> nix::Result<Arc<AtomicBool>> {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(signal);
    }
    signals.thread_block()?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            flag.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
            for &pid in helpers.lock().expect("pids lock").iter() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    });
    Ok(interrupted)
}
