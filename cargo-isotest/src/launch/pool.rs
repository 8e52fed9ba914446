//! Running jobs on a pool of sandbox helpers, one job per helper at a time. The calling
//! thread dispatches: it hands each idle helper the next job and sees every result first,
//! so retries, stress runs and fail-fast are decisions made in one place.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::helper::{Helper, Pids};

/// How often the caller gets a chance to refresh its view while jobs run.
const TICK: Duration = Duration::from_millis(200);

/// What the dispatcher has for an idle helper.
pub enum Next<J> {
    Job(J),
    /// Nothing that may start now, but more later (a retry's delay, a full test group).
    Wait,
    /// No more jobs.
    Done,
}

pub enum Event<J, R> {
    Started(J),
    Finished(J, R),
    /// Nothing happened for a moment: a chance to refresh the view.
    Tick,
}

pub struct Pool {
    helpers: Vec<Mutex<Helper>>,
    pids: Pids,
    /// Set to stop handing out jobs: a cancelled run.
    stop: Arc<AtomicBool>,
}

impl Pool {
    /// Starts `size` helpers from the calling thread, which must outlive the pool.
    pub fn start(size: usize) -> std::io::Result<Pool> {
        let pids = Pids::default();
        let helpers = (0..size.max(1))
            .map(|slot| Helper::start(&pids, slot).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Pool {
            helpers,
            pids,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The live helpers' pids, kept up to date as lost helpers are replaced.
    pub fn pids(&self) -> Pids {
        self.pids.clone()
    }

    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs jobs until the dispatcher has none left (or the pool is stopped) and every job
    /// handed out has finished.
    pub fn run<J: Clone + Send, R: Send>(
        &self,
        job: impl Fn(&mut Helper, &J) -> R + Sync,
        dispatcher: &mut impl Dispatch<J, R>,
    ) {
        let (results, inbox) = channel::<(usize, J, R)>();
        std::thread::scope(|scope| {
            let workers: Vec<Sender<J>> = self
                .helpers
                .iter()
                .enumerate()
                .map(|(worker, helper)| {
                    let (jobs, queue) = channel::<J>();
                    let (results, job) = (results.clone(), &job);
                    scope.spawn(move || {
                        let mut helper = helper.lock().expect("helper lock");
                        for item in queue {
                            let result = job(&mut helper, &item);
                            if results.send((worker, item, result)).is_err() {
                                return;
                            }
                        }
                    });
                    jobs
                })
                .collect();
            let mut idle: Vec<usize> = (0..workers.len()).rev().collect();
            let mut in_flight = 0;
            loop {
                let mut waiting = false;
                while !self.stopped() && !idle.is_empty() {
                    let item = match dispatcher.next() {
                        Next::Job(item) => item,
                        Next::Wait => {
                            waiting = true;
                            break;
                        }
                        Next::Done => break,
                    };
                    let worker = idle.pop().expect("an idle helper");
                    dispatcher.on_event(Event::Started(item.clone()));
                    if workers[worker].send(item).is_ok() {
                        in_flight += 1;
                    }
                }
                if in_flight == 0 && (!waiting || self.stopped()) {
                    return;
                }
                match inbox.recv_timeout(TICK) {
                    Ok((worker, item, result)) => {
                        in_flight -= 1;
                        idle.push(worker);
                        dispatcher.on_event(Event::Finished(item, result));
                    }
                    Err(RecvTimeoutError::Timeout) => dispatcher.on_event(Event::Tick),
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
    }
}

/// The caller's side of a run: which job comes next, and what to do with each event.
/// A result may create more jobs (a retry, another stress run) for `next` to return.
/// The caller never hands out more jobs at once than the pool has helpers: each job runs
/// on one, and a job that needs more threads makes the dispatcher wait until its share
/// is free.
pub trait Dispatch<J, R> {
    fn next(&mut self) -> Next<J>;
    fn on_event(&mut self, event: Event<J, R>);
}
