//! The stages of sandbox setup that a doctor's report shows, and which of them a failure
//! stopped at.

use serde::Serialize;

use crate::error::{SetupError, Step};

/// The parts of sandbox setup that doctor reports, in the order setup does them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Namespaces,
    IdMaps,
    Mounts,
    Proc,
    Dev,
    Sys,
    PivotRoot,
    Hostname,
    Loopback,
    Program,
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Namespaces,
        Stage::IdMaps,
        Stage::Mounts,
        Stage::Proc,
        Stage::Dev,
        Stage::Sys,
        Stage::PivotRoot,
        Stage::Hostname,
        Stage::Loopback,
        Stage::Program,
    ];

    /// The stage a failure belongs to. Mountpoints for /proc and /dev are made by those
    /// stages, after the spec's mounts, so their path decides.
    pub fn of(failure: &SetupError) -> Stage {
        match failure.step {
            Step::Clone | Step::DeathSignal | Step::TimeNamespace => Stage::Namespaces,
            Step::Setgroups | Step::UidMap | Step::GidMap | Step::NamespaceLimit => Stage::IdMaps,
            Step::Mountpoint => match &failure.path {
                Some(path) if path.starts_with("/proc") => Stage::Proc,
                Some(path) if path.starts_with("/dev") => Stage::Dev,
                Some(path) if path.starts_with("/sys") => Stage::Sys,
                _ => Stage::Mounts,
            },
            Step::PrivateMounts
            | Step::BindSource
            | Step::RootTmpfs
            | Step::Bind
            | Step::Tmpfs
            | Step::Overlay
            | Step::Symlink => Stage::Mounts,
            Step::Proc | Step::ProcReadOnly => Stage::Proc,
            Step::Dev => Stage::Dev,
            Step::Sys | Step::Cgroups => Stage::Sys,
            Step::PivotRoot | Step::Seal => Stage::PivotRoot,
            Step::Hostname => Stage::Hostname,
            Step::Loopback | Step::Forward => Stage::Loopback,
            Step::Session | Step::Terminal | Step::Cgroup | Step::Init => Stage::Program,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Stage::Namespaces => "namespaces",
            Stage::IdMaps => "uid/gid maps",
            Stage::Mounts => "mounts",
            Stage::Proc => "proc",
            Stage::Dev => "dev",
            Stage::Sys => "sys",
            Stage::PivotRoot => "pivot_root",
            Stage::Hostname => "hostname",
            Stage::Loopback => "loopback",
            Stage::Program => "program start",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    Passed,
    Failed,
    NotReached,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StageResult {
    pub stage: Stage,
    pub status: StageStatus,
}

/// Every stage's result, given the stage that failed, if any: setup stops at the first
/// failure, so the stages before it passed and those after it never ran.
pub fn stage_results(failed: Option<Stage>) -> Vec<StageResult> {
    Stage::ALL
        .iter()
        .map(|&stage| StageResult {
            stage,
            status: match failed {
                Some(f) if stage == f => StageStatus::Failed,
                Some(f) if stage > f => StageStatus::NotReached,
                _ => StageStatus::Passed,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use nix::errno::Errno;

    use super::*;

    fn failure(step: Step, syscall: &str, path: Option<&str>, errno: Errno) -> SetupError {
        SetupError::new(step, syscall, path.map(Path::new), errno)
    }

    #[test]
    fn stages_before_the_failure_passed() {
        let failure = failure(Step::Proc, "mount", Some("/proc"), Errno::EPERM);
        let results = stage_results(Some(Stage::of(&failure)));
        let status = |stage| results.iter().find(|r| r.stage == stage).unwrap().status;
        assert_eq!(status(Stage::Mounts), StageStatus::Passed);
        assert_eq!(status(Stage::Proc), StageStatus::Failed);
        assert_eq!(status(Stage::Loopback), StageStatus::NotReached);
        assert!(
            stage_results(None)
                .iter()
                .all(|r| r.status == StageStatus::Passed)
        );
    }

    #[test]
    fn mountpoints_of_proc_and_dev_belong_to_those_stages() {
        let at = |path| {
            Stage::of(&failure(
                Step::Mountpoint,
                "mkdir",
                Some(path),
                Errno::EROFS,
            ))
        };
        assert_eq!(at("/dev/pts"), Stage::Dev);
        assert_eq!(at("/proc"), Stage::Proc);
        assert_eq!(at("/home/me/project"), Stage::Mounts);
    }
}
