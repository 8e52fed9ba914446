//! Running jobs on a pool of sandbox helpers, one job per helper at a time, with the
//! results handed back to the calling thread in the order they finish.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helper::Helper;

/// How often the caller gets a chance to refresh its view while jobs run.
const TICK: Duration = Duration::from_millis(200);

pub enum Event<R> {
    Started(usize),
    Finished(usize, R),
    /// Nothing happened for a moment: a chance to refresh the view.
    Tick,
}

pub struct Pool {
    helpers: Vec<Mutex<Helper>>,
    /// Set to stop handing out jobs: fail-fast, or a cancelled run.
    stop: Arc<AtomicBool>,
}

impl Pool {
    /// Starts `size` helpers from the calling thread, which must outlive the pool.
    pub fn start(size: usize) -> std::io::Result<Pool> {
        let helpers = (0..size.max(1))
            .map(|_| Helper::start().map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Pool {
            helpers,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.helpers
            .iter()
            .map(|h| h.lock().expect("helper lock").pid())
            .collect()
    }

    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs `job` for every item until done or stopped. `on_event` runs on this thread
    /// and returns true to stop handing out jobs.
    pub fn run<T: Sync, R: Send>(
        &self,
        items: &[T],
        job: impl Fn(&mut Helper, &T) -> R + Sync,
        mut on_event: impl FnMut(Event<R>) -> bool,
    ) {
        let next = AtomicUsize::new(0);
        let (events, inbox) = channel();
        std::thread::scope(|scope| {
            for helper in &self.helpers {
                let events = events.clone();
                let (next, job, stop) = (&next, &job, &self.stop);
                scope.spawn(move || {
                    let mut helper = helper.lock().expect("helper lock");
                    loop {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = items.get(index) else { return };
                        let _ = events.send(Event::Started(index));
                        let result = job(&mut helper, item);
                        let _ = events.send(Event::Finished(index, result));
                    }
                });
            }
            drop(events);
            loop {
                let event = match inbox.recv_timeout(TICK) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => Event::Tick,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                if on_event(event) {
                    self.stop.store(true, Ordering::SeqCst);
                }
            }
        });
    }
}
