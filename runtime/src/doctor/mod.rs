//! What a host doctor needs to know: the facts that decide whether rootless sandboxes
//! work, a classifier from a failed setup step to its cause and exact fix, the stages a
//! report shows, and probes for features that need more than the sandbox itself
//! (overlayfs, cgroups).
//!
//! The classifier is a pure function of a [`SetupError`](crate::SetupError),
//! [`HostFacts`] and the [`Caller`] whose name the fixes use, because the hosts it knows
//! about (Ubuntu's AppArmor restriction, Docker's seccomp profile, Debian's sysctl) cannot
//! all be reproduced on one machine; its tests inject what each produces.

mod cgroup;
mod classify;
mod facts;
mod fixes;
mod mountinfo;
mod overlayfs;
mod stages;

pub use cgroup::{CgroupInfo, CgroupLayout, cgroup_layout, cgroup2_directory, cgroup2_path};
pub use classify::{Cause, Diagnosis, diagnose};
pub use facts::{HostFacts, SeccompMode, proc_overmounts};
pub use fixes::{Caller, failed_call};
pub use mountinfo::{MountEntry, parse_mountinfo};
pub use overlayfs::{ProbeError, probe_overlayfs};
pub use stages::{Stage, StageResult, StageStatus, stage_results};
