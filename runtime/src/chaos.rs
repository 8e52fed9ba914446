//! Perturbations a spec asks the sandbox to apply to its program, so that a flaky test
//! fails on demand: fewer CPUs, a recently booted clock, busy neighbours (in bursts, or
//! without rest: a loaded machine) and pauses (pid 1 applies those), and a slow, lossy
//! network on forwarded connections (the supervisor's relay). Low limits are the spec's
//! own `limits`. Plain data, drawn by the caller; the runtime only applies what it is
//! given, so that a recorded spec replays the very same perturbation.

use serde::{Deserialize, Serialize};

/// No more than this share of the run may be spent paused or frozen (rr's chaos mode cap).
pub const MAX_DELAY_PERCENT: u64 = 20;
/// The longest single pause or freeze, like rr's longest starvation.
pub const MAX_PAUSE_MS: u64 = 2_000;
/// Busy threads beside the program; more only slows the host.
pub const MAX_NEIGHBOURS: u32 = 64;
/// The longest one-way delay of forwarded traffic, jitter included.
pub const MAX_NET_DELAY_MS: u32 = 2_000;
/// How long TCP takes to resend a lost segment at the least: Linux's minimum
/// retransmission timeout. A segment the relay "loses" arrives this much later.
pub const RETRANSMIT_MS: u32 = 200;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chaos {
    /// The host CPUs the sandbox may run on; `available_parallelism()` follows the mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Vec<usize>>,
    /// The program's threads are `SCHED_BATCH`: a thread that wakes up (a new one among
    /// them) waits for the running one's time slice to end instead of preempting it, as
    /// on a core too busy to reschedule at once. On one CPU a spawned thread runs late.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
    /// What `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` (and `/proc/uptime`) read when the
    /// program starts, through a time namespace. The wall clock is not shifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    /// Busy threads of pid 1, pinned round-robin to the sandbox's CPUs for the whole run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub neighbours: u32,
    /// The neighbours spin without rest instead of in bursts: a loaded machine, whose
    /// run queues are never empty, slows every thread of the program for the whole run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loaded: bool,
    /// Pauses, in time order, from the program's start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<Pause>,
    /// Delay, jitter and loss on every connection relayed for `Spec::forwards`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetDelay>,
}

/// What the relay of forwarded connections does to each chunk of bytes it carries, in
/// each direction: holds it `delay_ms` plus up to `jitter_ms`, and with `loss_percent`
/// chance [`RETRANSMIT_MS`] more, as TCP delivers a lost segment late, never out of order.
/// `seed` drives those draws, per connection in the order they are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetDelay {
    pub delay_ms: u32,
    #[serde(default)]
    pub jitter_ms: u32,
    #[serde(default)]
    pub loss_percent: u32,
    #[serde(default)]
    pub seed: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One interval in which part of the sandbox does not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    pub at_ms: u64,
    pub for_ms: u64,
    pub what: Paused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Paused {
    /// Every process of the sandbox (SIGSTOP, then SIGCONT).
    Sandbox,
    /// One thread that is not a process's main thread: the `pick`th, modulo their number,
    /// in thread-id order when the pause starts. It is stopped alone while the others run.
    Thread { pick: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("chaos.cpus is empty: a sandbox needs at least one CPU")]
    NoCpu,
    #[error("chaos.cpus names CPU {0}, beyond the {max} CPUs the kernel's mask can hold", max = nix::sched::CpuSet::count())]
    CpuOutOfRange(usize),
    #[error("chaos.neighbours is {0}, above the limit of {MAX_NEIGHBOURS}")]
    Neighbours(u32),
    #[error("chaos.loaded asks the neighbours to spin, but chaos.neighbours is 0")]
    LoadedWithoutNeighbours,
    #[error("a chaos pause lasts {0} ms, above the limit of {MAX_PAUSE_MS} ms")]
    PauseTooLong(u64),
    #[error("chaos pauses must be in time order without overlapping (at {0} ms)")]
    PauseOrder(u64),
    #[error(
        "chaos.net delays by up to {0} ms with its jitter, above the limit of {MAX_NET_DELAY_MS} ms"
    )]
    NetDelayTooLong(u64),
    #[error("chaos.net.loss_percent is {0}; a share of chunks is at most 100")]
    NetLoss(u32),
}

impl Chaos {
    pub fn is_empty(&self) -> bool {
        self == &Chaos::default()
    }

    pub fn validate(&self) -> Result<(), ChaosError> {
        if let Some(cpus) = &self.cpus {
            if cpus.is_empty() {
                return Err(ChaosError::NoCpu);
            }
            if let Some(&cpu) = cpus.iter().find(|&&c| c >= nix::sched::CpuSet::count()) {
                return Err(ChaosError::CpuOutOfRange(cpu));
            }
        }
        if self.neighbours > MAX_NEIGHBOURS {
            return Err(ChaosError::Neighbours(self.neighbours));
        }
        if self.loaded && self.neighbours == 0 {
            return Err(ChaosError::LoadedWithoutNeighbours);
        }
        let mut free_from = 0;
        for pause in &self.pauses {
            if pause.for_ms > MAX_PAUSE_MS {
                return Err(ChaosError::PauseTooLong(pause.for_ms));
            }
            if pause.at_ms < free_from {
                return Err(ChaosError::PauseOrder(pause.at_ms));
            }
            free_from = pause.at_ms + pause.for_ms;
        }
        if let Some(net) = &self.net {
            let longest = u64::from(net.delay_ms) + u64::from(net.jitter_ms);
            if longest > u64::from(MAX_NET_DELAY_MS) {
                return Err(ChaosError::NetDelayTooLong(longest));
            }
            if net.loss_percent > 100 {
                return Err(ChaosError::NetLoss(net.loss_percent));
            }
        }
        Ok(())
    }
}

/// Whether a pause of `for_ms` that starts `elapsed_ms` into the run keeps the time spent
/// paused (`delayed_ms` so far) within [`MAX_DELAY_PERCENT`] of the run when it ends.
pub fn affordable(delayed_ms: u64, elapsed_ms: u64, for_ms: u64) -> bool {
    (delayed_ms + for_ms) * 100 <= MAX_DELAY_PERCENT * (elapsed_ms + for_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_budget_is_a_fifth_of_the_run_at_every_pause_end() {
        assert!(affordable(0, 40, 10), "10 of 50 ms");
        assert!(!affordable(0, 39, 10), "10 of 49 ms");
        assert!(!affordable(100, 400, 10), "110 of 410 ms");
        assert!(affordable(100, 1000, 100));
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let pause = |at_ms, for_ms| Pause {
            at_ms,
            for_ms,
            what: Paused::Sandbox,
        };
        let mut chaos = Chaos {
            cpus: Some(vec![]),
            ..Chaos::default()
        };
        assert!(matches!(chaos.validate(), Err(ChaosError::NoCpu)));
        chaos.cpus = Some(vec![0]);
        chaos.pauses = vec![pause(10, 20), pause(25, 5)];
        assert!(matches!(chaos.validate(), Err(ChaosError::PauseOrder(25))));
        chaos.pauses = vec![pause(10, 20), pause(30, 5000)];
        assert!(matches!(
            chaos.validate(),
            Err(ChaosError::PauseTooLong(5000))
        ));
        chaos.pauses = vec![pause(10, 20), pause(30, 5)];
        chaos.validate().unwrap();
        let net = |delay_ms, jitter_ms, loss_percent| NetDelay {
            delay_ms,
            jitter_ms,
            loss_percent,
            seed: 1,
        };
        chaos.net = Some(net(1_500, 600, 0));
        assert!(matches!(
            chaos.validate(),
            Err(ChaosError::NetDelayTooLong(2_100))
        ));
        chaos.net = Some(net(20, 5, 101));
        assert!(matches!(chaos.validate(), Err(ChaosError::NetLoss(101))));
        chaos.net = Some(net(20, 5, 3));
        chaos.validate().unwrap();
        chaos.loaded = true;
        assert!(matches!(
            chaos.validate(),
            Err(ChaosError::LoadedWithoutNeighbours)
        ));
        chaos.neighbours = 2;
        chaos.validate().unwrap();
        assert!(Chaos::default().is_empty());
    }

    #[test]
    fn chaos_round_trips_and_an_empty_one_is_left_out() {
        let chaos = Chaos {
            cpus: Some(vec![1]),
            batch: true,
            uptime_s: Some(12),
            neighbours: 2,
            loaded: true,
            pauses: vec![Pause {
                at_ms: 3,
                for_ms: 4,
                what: Paused::Thread { pick: 7 },
            }],
            net: Some(NetDelay {
                delay_ms: 30,
                jitter_ms: 10,
                loss_percent: 2,
                seed: 9,
            }),
        };
        let json = serde_json::to_string(&chaos).unwrap();
        assert!(json.contains(r#""what":{"thread":{"pick":7}}"#), "{json}");
        assert_eq!(serde_json::from_str::<Chaos>(&json).unwrap(), chaos);
        assert_eq!(serde_json::to_string(&Chaos::default()).unwrap(), "{}");
    }
}
