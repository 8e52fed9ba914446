//! The fix recipes: for each cause, what it means on this host and the exact commands
//! that remove it, naming the program that asked.

use super::classify::{Cause, Diagnosis};
use super::facts::HostFacts;
use crate::error::{SetupError, errno_text};

/// Where the sysctl fixes are persisted, so that they survive a reboot.
const SYSCTL_FILE: &str = "/etc/sysctl.d/60-isotest.conf";

/// The program that creates the sandboxes, as the fixes must name it: the runtime knows
/// nothing of its callers.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// How a user refers to it in prose.
    pub name: &'a str,
    /// Its binary's file name, after which its AppArmor profile is named.
    pub binary: &'a str,
    /// The command that prints a full report on this host.
    pub doctor: &'a str,
}

/// `mount(/proc) returned EPERM (Operation not permitted)`.
pub fn failed_call(failure: &SetupError) -> String {
    let path = failure
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!(
        "{}({path}) returned {}",
        failure.syscall,
        errno_text(failure.errno)
    )
}

/// Shell lines that set a sysctl now and at every boot.
fn sysctl_fix(key: &str, value: &str) -> String {
    format!("  sudo sysctl -w {key}={value}\n  echo '{key} = {value}' | sudo tee {SYSCTL_FILE}")
}

pub(super) fn max_user_namespaces() -> Diagnosis {
    Diagnosis {
        cause: Cause::MaxUserNamespaces,
        summary: "user namespaces are disabled on this host (user.max_user_namespaces=0), \
                  so creating one fails with ENOSPC"
            .into(),
        fix: format!(
            "Allow user namespaces again:\n{}",
            sysctl_fix("user.max_user_namespaces", "15000")
        ),
    }
}

pub(super) fn unprivileged_userns_clone() -> Diagnosis {
    Diagnosis {
        cause: Cause::UnprivilegedUsernsClone,
        summary: "unprivileged user namespaces are disabled on this host \
                  (kernel.unprivileged_userns_clone=0), so creating one fails with EPERM \
                  for users without CAP_SYS_ADMIN"
            .into(),
        fix: format!(
            "Allow unprivileged user namespaces:\n{}",
            sysctl_fix("kernel.unprivileged_userns_clone", "1")
        ),
    }
}

pub(super) fn seccomp(failure: &SetupError, facts: &HostFacts) -> Diagnosis {
    let call = failed_call(failure);
    let (summary, mut fix) = if facts.dockerenv {
        (
            format!(
                "this is a Docker container, and Docker's default seccomp profile refuses \
                 to create namespaces: {call}"
            ),
            "Start the container without Docker's seccomp filter:\n  \
             docker run --security-opt seccomp=unconfined ...\n\
             or with a custom profile (--security-opt seccomp=PROFILE.json) that allows clone, \
             clone3, unshare, setns and mount with namespace flags.\n\
             Docker's AppArmor profile also forbids mount, so on AppArmor hosts add\n  \
             --security-opt apparmor=unconfined\n\
             and the sandbox's fresh /proc also needs Docker's masked /proc paths lifted:\n  \
             --security-opt systempaths=unconfined"
                .to_string(),
        )
    } else {
        (
            format!(
                "this process runs under a seccomp filter (Seccomp: 2 in /proc/self/status), \
                 most likely a container runtime's default profile, and it refuses to create \
                 namespaces: {call}"
            ),
            "Start the container without the seccomp filter, or with a profile that allows \
             clone, clone3, unshare, setns and mount with namespace flags:\n  \
             docker/podman: --security-opt seccomp=unconfined\n  \
             Kubernetes: securityContext.seccompProfile.type: Unconfined"
                .to_string(),
        )
    };
    if facts.userns_clone_forbids_us() {
        fix.push_str(&format!(
            "\nThe host also disables unprivileged user namespaces \
             (kernel.unprivileged_userns_clone=0); on the host, run:\n{}",
            sysctl_fix("kernel.unprivileged_userns_clone", "1")
        ));
    }
    Diagnosis {
        cause: Cause::Seccomp,
        summary,
        fix,
    }
}

pub(super) fn apparmor_restriction(
    failure: &SetupError,
    facts: &HostFacts,
    caller: &Caller,
) -> Diagnosis {
    let binary = facts
        .executable
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("/path/to/{}", caller.binary));
    // AppArmor reads an unquoted path up to the first blank.
    let attach = if binary.contains(char::is_whitespace) {
        format!("\"{binary}\"")
    } else {
        binary
    };
    let name = caller.binary;
    let profile = format!("/etc/apparmor.d/{name}");
    Diagnosis {
        cause: Cause::AppArmorRestriction,
        summary: format!(
            "AppArmor restricts unprivileged user namespaces on this host \
             (kernel.apparmor_restrict_unprivileged_userns=1): the namespaces were created, \
             but then {step} was refused: {}",
            failed_call(failure),
            step = failure.step,
        ),
        fix: format!(
            "Best: allow user namespaces to {name} alone, with an AppArmor profile:\n  \
             sudo tee {profile} <<'EOF'\n  \
             abi <abi/4.0>,\n  \
             include <tunables/global>\n\n  \
             profile {name} {attach} flags=(unconfined) {{\n    \
             userns,\n\n    \
             include if exists <local/{name}>\n  \
             }}\n  \
             EOF\n  \
             sudo apparmor_parser -r {profile}\n\
             The profile names the binary by its path: write it again if {name} moves.\n\
             Or lift the restriction for every program:\n{}",
            sysctl_fix("kernel.apparmor_restrict_unprivileged_userns", "0")
        ),
    }
}

pub(super) fn proc_overmounted(facts: &HostFacts) -> Diagnosis {
    let paths: Vec<String> = facts
        .proc_overmounts
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Diagnosis {
        cause: Cause::ProcOvermounted,
        summary: format!(
            "parts of /proc are masked by mounts ({}), and the kernel refuses a fresh /proc \
             in a user namespace while any part of the existing one is hidden",
            paths.join(", ")
        ),
        fix: format!(
            "Start the container with /proc unmasked:\n  \
             Docker: docker run --security-opt systempaths=unconfined ...\n  \
             Podman: podman run --security-opt unmask=ALL ...\n  \
             Kubernetes: securityContext.procMount: Unmasked (with hostUsers: false)\n\
             Outside a container runtime, unmount them:\n  \
             sudo umount {}",
            paths.join(" ")
        ),
    }
}

pub(super) fn sys_refused(caller: &Caller<'_>) -> Diagnosis {
    Diagnosis {
        cause: Cause::SysRefused,
        summary: "the kernel refuses a fresh sysfs for the sandbox's own network namespace: \
                  in a user namespace it mounts one only while the host's /sys is fully \
                  visible, and container runtimes mask parts of it (such as /sys/firmware)"
            .into(),
        fix: format!(
            "Give the sandbox the host's /sys (read-only, with the host's network interfaces) \
             or none:\n  {name} --sys host ...\n  {name} --sys none ...\n\
             Or start the container with /sys unmasked:\n  \
             Docker: docker run --security-opt systempaths=unconfined ...",
            name = caller.name
        ),
    }
}

pub(super) fn docker_apparmor(failure: &SetupError) -> Diagnosis {
    Diagnosis {
        cause: Cause::DockerAppArmor,
        summary: format!(
            "this is a Docker container, and Docker's AppArmor profile (docker-default) \
             forbids mount: {}",
            failed_call(failure)
        ),
        fix: "Start the container without Docker's AppArmor profile:\n  \
              docker run --security-opt apparmor=unconfined ...\n\
              The sandbox's fresh /proc also needs Docker's masked /proc paths lifted:\n  \
              --security-opt systempaths=unconfined"
            .into(),
    }
}

pub(super) fn unknown(failure: &SetupError, caller: &Caller) -> Diagnosis {
    let path = failure
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into());
    Diagnosis {
        cause: Cause::Unknown,
        summary: format!(
            "sandbox setup failed for a reason {} does not recognise: step `{}`, \
             syscall {}, path {path}, errno {}",
            caller.name,
            failure.step,
            failure.syscall,
            errno_text(failure.errno)
        ),
        fix: format!(
            "Please file an issue at {}/issues with the output of `{}`.",
            env!("CARGO_PKG_REPOSITORY"),
            caller.doctor
        ),
    }
}

pub(super) fn overlay_unavailable(failure: &SetupError, facts: &HostFacts) -> Diagnosis {
    Diagnosis {
        cause: Cause::OverlayUnavailable,
        summary: format!(
            "a writable layer (an overlay over a read-only directory) could not be mounted: \
             {}. overlayfs in a user namespace needs Linux 5.11 or newer with its `userxattr` \
             option (this kernel is {}), and a lower layer it accepts (not itself an overlay \
             two levels deep, nor a network filesystem)",
            failed_call(failure),
            facts.kernel_release
        ),
        fix: "Run without the writable layer (drop --writable-source or --overlay), or on a \
              host with a newer kernel; `doctor` shows whether overlayfs works here."
            .into(),
    }
}
