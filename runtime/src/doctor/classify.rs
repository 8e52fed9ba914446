//! The classifier: from a failed setup step and the host's facts to its cause, whose
//! recipe in [`fixes`](super::fixes) says what it means and how to remove it.

use nix::errno::Errno;
use serde::Serialize;

use super::facts::{HostFacts, SeccompMode};
use super::fixes::{
    Caller, apparmor_restriction, docker_apparmor, max_user_namespaces, overlay_unavailable,
    proc_overmounted, seccomp, sys_refused, unknown, unprivileged_userns_clone,
};
use crate::error::{SetupError, Step};

/// Why a sandbox could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns=1`.
    AppArmorRestriction,
    /// A seccomp filter, usually Docker's default profile, refuses namespace flags.
    Seccomp,
    /// Docker's AppArmor profile (docker-default) denies mount.
    DockerAppArmor,
    /// `user.max_user_namespaces=0`.
    MaxUserNamespaces,
    /// Debian's `kernel.unprivileged_userns_clone=0`.
    UnprivilegedUsernsClone,
    /// Parts of /proc are covered by mounts, so no fresh /proc may be mounted.
    ProcOvermounted,
    /// overlayfs cannot be mounted in a user namespace here (kernel before 5.11, no
    /// `userxattr`, or a lower layer overlayfs refuses).
    OverlayUnavailable,
    /// The kernel refuses a fresh sysfs for the sandbox's network namespace.
    SysRefused,
    /// None of the known causes fits.
    Unknown,
}

/// A cause, what it means here, and the commands that fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub cause: Cause,
    pub summary: String,
    pub fix: String,
}

/// Classifies a failed setup step by its errno and the host's facts; the fixes name
/// `caller`.
///
/// Where several causes apply, the one the kernel meets first wins: a seccomp filter runs
/// before the syscall looks at any sysctl, and a masked /proc is certain where AppArmor's
/// part in a refused mount is only likely.
pub fn diagnose(failure: &SetupError, facts: &HostFacts, caller: &Caller) -> Diagnosis {
    let errno = failure.errno();
    let denied = matches!(errno, Errno::EPERM | Errno::EACCES);
    let filtered = facts.seccomp == Some(SeccompMode::Filter);
    match failure.step {
        Step::Clone if errno == Errno::ENOSPC && facts.max_user_namespaces == Some(0) => {
            max_user_namespaces()
        }
        Step::Clone if matches!(errno, Errno::EPERM | Errno::ENOSYS) && filtered => {
            seccomp(failure, facts)
        }
        Step::Clone if errno == Errno::EPERM && facts.userns_clone_forbids_us() => {
            unprivileged_userns_clone()
        }
        Step::Setgroups | Step::UidMap | Step::GidMap
            if denied && facts.apparmor_restricts_us() =>
        {
            apparmor_restriction(failure, facts, caller)
        }
        Step::Proc if errno == Errno::EPERM && !facts.proc_overmounts.is_empty() => {
            proc_overmounted(facts)
        }
        // Making the overlay itself (fsopen, fsconfig, the mount) failed; its other calls
        // (a directory the caller cannot enter, say) are no kernel's fault.
        Step::Overlay if failure.syscall.ends_with("(overlay)") => {
            overlay_unavailable(failure, facts)
        }
        Step::Sys if errno == Errno::EPERM && !facts.apparmor_restricts_us() => sys_refused(caller),
        step if is_mount_step(step) && denied && facts.apparmor_restricts_us() => {
            apparmor_restriction(failure, facts, caller)
        }
        step if is_mount_step(step) && denied && facts.dockerenv => docker_apparmor(failure),
        _ => unknown(failure, caller),
    }
}

fn is_mount_step(step: Step) -> bool {
    match step {
        Step::PrivateMounts
        | Step::BindSource
        | Step::RootTmpfs
        | Step::Bind
        | Step::Tmpfs
        | Step::Overlay
        | Step::Proc
        | Step::ProcReadOnly
        | Step::Dev
        | Step::Sys
        | Step::Cgroups
        | Step::PivotRoot
        | Step::Seal => true,
        Step::Clone
        | Step::DeathSignal
        | Step::Setgroups
        | Step::UidMap
        | Step::GidMap
        | Step::NamespaceLimit
        | Step::TimeNamespace
        | Step::Mountpoint
        | Step::Symlink
        | Step::Hostname
        | Step::Loopback
        | Step::Forward
        | Step::Session
        | Step::Terminal
        | Step::Cgroup
        | Step::Init => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    const CARGO_ISOTEST: Caller = Caller {
        name: "cargo isotest",
        binary: "cargo-isotest",
        doctor: "cargo isotest doctor",
    };

    fn diagnose(failure: &SetupError, facts: &HostFacts) -> Diagnosis {
        super::diagnose(failure, facts, &CARGO_ISOTEST)
    }

    fn failure(step: Step, syscall: &str, path: Option<&str>, errno: Errno) -> SetupError {
        SetupError::new(step, syscall, path.map(Path::new), errno)
    }

    /// An ordinary user on a host where nothing stands in the way.
    fn plain_host() -> HostFacts {
        HostFacts {
            kernel_release: "6.8.0-45-generic".into(),
            euid: 1000,
            cap_sys_admin: false,
            apparmor_restrict_unprivileged_userns: None,
            unprivileged_userns_clone: None,
            max_user_namespaces: Some(63_000),
            dockerenv: false,
            seccomp: Some(SeccompMode::Disabled),
            proc_overmounts: Vec::new(),
            executable: Some("/home/me/.cargo/bin/cargo-isotest".into()),
        }
    }

    fn ubuntu() -> HostFacts {
        HostFacts {
            apparmor_restrict_unprivileged_userns: Some(1),
            ..plain_host()
        }
    }

    fn docker() -> HostFacts {
        HostFacts {
            euid: 0,
            dockerenv: true,
            seccomp: Some(SeccompMode::Filter),
            proc_overmounts: ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/sys"]
                .map(PathBuf::from)
                .to_vec(),
            ..plain_host()
        }
    }

    fn clone_eperm() -> SetupError {
        failure(Step::Clone, "clone", None, Errno::EPERM)
    }

    #[test]
    fn ubuntu_apparmor_restriction_refusing_the_uid_map() {
        let failure = failure(
            Step::UidMap,
            "write",
            Some("/proc/self/uid_map"),
            Errno::EPERM,
        );
        let d = diagnose(&failure, &ubuntu());
        assert_eq!(d.cause, Cause::AppArmorRestriction);
        assert!(d.summary.contains("uid-map"), "{}", d.summary);
        assert!(
            d.fix.contains(
                "profile cargo-isotest /home/me/.cargo/bin/cargo-isotest flags=(unconfined) {"
            ),
            "{}",
            d.fix
        );
        for line in [
            "abi <abi/4.0>,",
            "include <tunables/global>",
            "userns,",
            "include if exists <local/cargo-isotest>",
            "sudo tee /etc/apparmor.d/cargo-isotest",
            "sudo apparmor_parser -r /etc/apparmor.d/cargo-isotest",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
            "/etc/sysctl.d/60-isotest.conf",
        ] {
            assert!(d.fix.contains(line), "missing {line:?} in\n{}", d.fix);
        }
    }

    #[test]
    fn ubuntu_apparmor_restriction_refusing_a_mount() {
        let failure = failure(Step::PrivateMounts, "mount", Some("/"), Errno::EACCES);
        assert_eq!(
            diagnose(&failure, &ubuntu()).cause,
            Cause::AppArmorRestriction
        );
    }

    #[test]
    fn an_overlay_that_cannot_be_mounted_names_the_kernel_and_userxattr() {
        let failure = failure(Step::Overlay, "mount(overlay)", Some("/w"), Errno::EINVAL);
        let d = diagnose(&failure, &plain_host());
        assert_eq!(d.cause, Cause::OverlayUnavailable);
        assert!(
            d.summary.contains("5.11") && d.summary.contains("userxattr"),
            "{}",
            d.summary
        );
        assert!(d.summary.contains("6.8.0-45-generic"), "{}", d.summary);
        assert!(d.fix.contains("--writable-source"), "{}", d.fix);
    }

    #[test]
    fn a_kernel_without_overlayfs_fails_its_fsopen() {
        let failure = failure(Step::Overlay, "fsopen(overlay)", Some("/w"), Errno::ENODEV);
        assert_eq!(
            diagnose(&failure, &plain_host()).cause,
            Cause::OverlayUnavailable
        );
    }

    #[test]
    fn an_overlay_directory_the_caller_cannot_enter_is_not_a_missing_overlayfs() {
        let failure = failure(Step::Overlay, "chdir", Some("/w"), Errno::EACCES);
        assert_eq!(diagnose(&failure, &plain_host()).cause, Cause::Unknown);
    }

    #[test]
    fn apparmor_profile_quotes_a_binary_path_with_spaces() {
        let facts = HostFacts {
            executable: Some("/opt/my tools/cargo-isotest".into()),
            ..ubuntu()
        };
        let failure = failure(
            Step::GidMap,
            "write",
            Some("/proc/self/gid_map"),
            Errno::EPERM,
        );
        let d = diagnose(&failure, &facts);
        assert!(
            d.fix
                .contains("profile cargo-isotest \"/opt/my tools/cargo-isotest\" flags"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn apparmor_restriction_spares_cap_sys_admin() {
        let facts = HostFacts {
            euid: 0,
            cap_sys_admin: true,
            ..ubuntu()
        };
        let failure = failure(
            Step::UidMap,
            "write",
            Some("/proc/self/uid_map"),
            Errno::EPERM,
        );
        assert_eq!(diagnose(&failure, &facts).cause, Cause::Unknown);
    }

    #[test]
    fn docker_seccomp_refusing_clone() {
        let d = diagnose(&clone_eperm(), &docker());
        assert_eq!(d.cause, Cause::Seccomp);
        assert!(d.summary.contains("Docker's default seccomp profile"));
        assert!(
            d.summary.contains("clone() returned EPERM"),
            "{}",
            d.summary
        );
        for flag in [
            "--security-opt seccomp=unconfined",
            "--security-opt apparmor=unconfined",
            "--security-opt systempaths=unconfined",
        ] {
            assert!(d.fix.contains(flag), "missing {flag} in\n{}", d.fix);
        }
        assert!(!d.fix.contains("unprivileged_userns_clone"), "{}", d.fix);
    }

    #[test]
    fn seccomp_filter_outside_docker() {
        let facts = HostFacts {
            dockerenv: false,
            ..docker()
        };
        let d = diagnose(&failure(Step::Clone, "clone3", None, Errno::ENOSYS), &facts);
        assert_eq!(d.cause, Cause::Seccomp);
        assert!(d.fix.contains("seccompProfile"), "{}", d.fix);
    }

    #[test]
    fn max_user_namespaces_zero() {
        let facts = HostFacts {
            max_user_namespaces: Some(0),
            ..plain_host()
        };
        let d = diagnose(&failure(Step::Clone, "clone3", None, Errno::ENOSPC), &facts);
        assert_eq!(d.cause, Cause::MaxUserNamespaces);
        assert!(
            d.fix
                .contains("sudo sysctl -w user.max_user_namespaces=15000")
        );
        assert!(d.fix.contains(
            "echo 'user.max_user_namespaces = 15000' | sudo tee /etc/sysctl.d/60-isotest.conf"
        ));
    }

    #[test]
    fn enospc_with_namespaces_allowed_is_not_the_sysctl() {
        let d = diagnose(
            &failure(Step::Clone, "clone3", None, Errno::ENOSPC),
            &plain_host(),
        );
        assert_eq!(d.cause, Cause::Unknown);
    }

    #[test]
    fn max_user_namespaces_beats_docker_on_enospc() {
        let facts = HostFacts {
            max_user_namespaces: Some(0),
            ..docker()
        };
        let d = diagnose(&failure(Step::Clone, "clone", None, Errno::ENOSPC), &facts);
        assert_eq!(d.cause, Cause::MaxUserNamespaces);
    }

    #[test]
    fn debian_unprivileged_userns_clone_zero() {
        let facts = HostFacts {
            unprivileged_userns_clone: Some(0),
            ..plain_host()
        };
        let d = diagnose(&clone_eperm(), &facts);
        assert_eq!(d.cause, Cause::UnprivilegedUsernsClone);
        assert!(
            d.fix
                .contains("sudo sysctl -w kernel.unprivileged_userns_clone=1")
        );
        assert!(d.fix.contains("/etc/sysctl.d/60-isotest.conf"));
    }

    #[test]
    fn debian_sysctl_does_not_stop_cap_sys_admin() {
        let facts = HostFacts {
            euid: 0,
            cap_sys_admin: true,
            unprivileged_userns_clone: Some(0),
            ..plain_host()
        };
        assert_eq!(diagnose(&clone_eperm(), &facts).cause, Cause::Unknown);
    }

    #[test]
    fn docker_seccomp_comes_before_the_debian_sysctl_and_names_both() {
        let facts = HostFacts {
            unprivileged_userns_clone: Some(0),
            ..docker()
        };
        let d = diagnose(&clone_eperm(), &facts);
        assert_eq!(d.cause, Cause::Seccomp);
        assert!(d.fix.contains("--security-opt seccomp=unconfined"));
        assert!(
            d.fix
                .contains("sudo sysctl -w kernel.unprivileged_userns_clone=1"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn debian_sysctl_in_docker_without_seccomp() {
        let facts = HostFacts {
            unprivileged_userns_clone: Some(0),
            seccomp: Some(SeccompMode::Disabled),
            ..docker()
        };
        assert_eq!(
            diagnose(&clone_eperm(), &facts).cause,
            Cause::UnprivilegedUsernsClone
        );
    }

    #[test]
    fn a_refused_sysfs_names_the_options_that_avoid_it() {
        let d = diagnose(
            &failure(Step::Sys, "mount", Some("/sys"), Errno::EPERM),
            &plain_host(),
        );
        assert_eq!(d.cause, Cause::SysRefused);
        assert!(
            d.fix.contains("--sys host") && d.fix.contains("--sys none"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn proc_overmounted_in_docker() {
        let facts = HostFacts {
            seccomp: Some(SeccompMode::Disabled),
            ..docker()
        };
        let d = diagnose(
            &failure(Step::Proc, "mount", Some("/proc"), Errno::EPERM),
            &facts,
        );
        assert_eq!(d.cause, Cause::ProcOvermounted);
        assert!(
            d.summary
                .contains("/proc/acpi, /proc/kcore, /proc/keys, /proc/sys"),
            "{}",
            d.summary
        );
        assert!(d.fix.contains("--security-opt systempaths=unconfined"));
        assert!(d.fix.contains("--security-opt unmask=ALL"));
        assert!(
            d.fix
                .contains("sudo umount /proc/acpi /proc/kcore /proc/keys /proc/sys"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn proc_overmounts_come_before_apparmor() {
        let facts = HostFacts {
            proc_overmounts: vec!["/proc/kcore".into()],
            ..ubuntu()
        };
        let d = diagnose(
            &failure(Step::Proc, "mount", Some("/proc"), Errno::EPERM),
            &facts,
        );
        assert_eq!(d.cause, Cause::ProcOvermounted);
        let facts = HostFacts {
            proc_overmounts: Vec::new(),
            ..facts
        };
        let d = diagnose(
            &failure(Step::Proc, "mount", Some("/proc"), Errno::EPERM),
            &facts,
        );
        assert_eq!(d.cause, Cause::AppArmorRestriction);
    }

    #[test]
    fn docker_apparmor_refusing_mounts() {
        let facts = HostFacts {
            seccomp: Some(SeccompMode::Disabled),
            ..docker()
        };
        let d = diagnose(
            &failure(Step::PrivateMounts, "mount", Some("/"), Errno::EACCES),
            &facts,
        );
        assert_eq!(d.cause, Cause::DockerAppArmor);
        assert!(d.fix.contains("--security-opt apparmor=unconfined"));
    }

    #[test]
    fn unknown_failure_is_stated_plainly() {
        let d = diagnose(
            &failure(
                Step::Loopback,
                "ioctl(SIOCSIFFLAGS)",
                Some("lo"),
                Errno::EPERM,
            ),
            &ubuntu(),
        );
        assert_eq!(d.cause, Cause::Unknown);
        for part in [
            "step `loopback`",
            "syscall ioctl(SIOCSIFFLAGS)",
            "path lo",
            "EPERM",
        ] {
            assert!(d.summary.contains(part), "missing {part} in {}", d.summary);
        }
        assert!(d.fix.contains("cargo isotest doctor"));
        assert!(d.fix.contains("/issues"));
    }

    #[test]
    fn fixes_name_the_caller_and_nothing_else() {
        let caller = Caller {
            name: "sandboxer",
            binary: "sbx",
            doctor: "sbx check",
        };
        let facts = HostFacts {
            executable: None,
            ..ubuntu()
        };
        let refused = failure(
            Step::UidMap,
            "write",
            Some("/proc/self/uid_map"),
            Errno::EPERM,
        );
        let d = super::diagnose(&refused, &facts, &caller);
        for part in [
            "allow user namespaces to sbx alone",
            "sudo tee /etc/apparmor.d/sbx <<'EOF'",
            "profile sbx /path/to/sbx flags=(unconfined) {",
            "include if exists <local/sbx>",
            "sudo apparmor_parser -r /etc/apparmor.d/sbx",
            "write it again if sbx moves",
        ] {
            assert!(d.fix.contains(part), "missing {part:?} in\n{}", d.fix);
        }
        let d = super::diagnose(
            &failure(Step::Loopback, "socket", None, Errno::EPERM),
            &facts,
            &caller,
        );
        assert!(
            d.summary.contains("a reason sandboxer does not recognise"),
            "{}",
            d.summary
        );
        assert!(
            d.fix.contains("with the output of `sbx check`"),
            "{}",
            d.fix
        );
        // The issue tracker is the runtime's own, wherever the caller comes from.
        for text in [d.summary, d.fix] {
            let text = text.replace(env!("CARGO_PKG_REPOSITORY"), "REPOSITORY");
            assert!(!text.contains("cargo"), "{text}");
        }
    }
}
