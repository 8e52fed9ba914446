//! Run a command in a fresh rootless Linux sandbox described by a plain-data [`Spec`].
//!
//! The sandbox gets new user, pid, mount, network, UTS, IPC and cgroup namespaces, a tmpfs
//! root holding read-only binds at their host paths, a fresh /proc, a minimal /dev, a
//! read-only /sys of its own (with its own cgroups), a private /tmp and HOME, and
//! loopback-only networking. Its pid 1 starts the program,
//! and when the program ends reports every process it left behind and kills them.
//!
//! This crate knows nothing about cargo or tests.

mod beneath;
mod chaos;
mod cpu_group;
pub mod doctor;
mod error;
mod forward;
mod handover;
mod hostview;
mod idmap;
mod init;
pub mod limits;
mod outcome;
mod output;
mod perturb;
mod prepare;
mod sandbox;
mod setup;
mod spec;
mod sys;
mod writes;

pub use chaos::{
    Chaos, ChaosError, MAX_DELAY_PERCENT, MAX_NEIGHBOURS, MAX_NET_DELAY_MS, MAX_PAUSE_MS, NetDelay,
    Pause, Paused, RETRANSMIT_MS, affordable,
};
pub use cpu_group::{CpuGroup, share_cpu_group};
pub use error::{Error, SetupError, Step, errno_text};
pub use idmap::{HostIds, IdMapping, Missing, SubordinateRange, host_ids};
pub use limits::{CgroupSlot, LimitExceeded, Mechanism, Resources, format_bytes};
pub use outcome::{Exit, Outcome, StartError, Stray, signal_name};
pub use output::{Captured, DEFAULT_CAPTURE_LIMIT};
pub use sandbox::{Echo, Sandbox, forwarded_signals};
pub use spec::{
    DEFAULT_ENV_PASS, DEFAULT_GRACE_MS, DEFAULT_HOSTNAME, DEFAULT_NAMESPACE_LIMIT,
    DEFAULT_SYSTEM_PATHS, DEFAULT_TMPFS_SIZE, Env, Identity, Limits, Mount, Net, Pid, Spec,
    SpecError, Sys, parse_cpus, parse_size, system_mounts,
};
pub use writes::{Change, ChangeKind, FileKind, KeepWrites, Layer, MAX_CHANGES, Writes, apply};
