//! `cargo isotest doctor`, and the diagnosis printed when a sandbox cannot be created.

use clap::Args;
use isotest_runtime::doctor::{
    self, CgroupInfo, CgroupLayout, Diagnosis, HostFacts, ProbeError, SeccompMode, Stage,
    StageResult, StageStatus,
};
use isotest_runtime::limits::HostLimits;
use isotest_runtime::{Error, IdMapping, Mechanism, Outcome, SetupError};
use serde::Serialize;

use crate::exit_code;
use crate::host::{self, PROBE_TIMEOUT_MS, indent};

/// Wide enough for the longest key, the AppArmor sysctl.
const KEY_WIDTH: usize = 46;

#[derive(Args, Debug)]
#[command(after_help = "Exits with 0 when sandboxes work on this host, and 125 when they do not.")]
pub struct DoctorArgs {
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Everything doctor found; the text and JSON outputs show the same.
#[derive(Serialize)]
struct Report {
    version: &'static str,
    sandbox_works: bool,
    host: HostFacts,
    sandbox: SandboxProbe,
    ids: IdsReport,
    diagnosis: Option<Diagnosis>,
    overlayfs: OverlayProbe,
    cgroup: CgroupInfo,
    limits: LimitsReport,
}

/// Which mechanism enforces `--memory-max` and the others here, and how to get a better one.
#[derive(Serialize)]
struct LimitsReport {
    #[serde(flatten)]
    host: HostLimits,
    /// How to enable cgroup v2 delegation, when this host does not give it.
    advice: Option<String>,
}

#[derive(Serialize)]
struct SandboxProbe {
    /// Absent when the sandbox failed outside its setup steps.
    stages: Option<Vec<StageResult>>,
    /// The setup step that failed.
    failure: Option<SetupError>,
    error: Option<String>,
}

/// The id-mapping mode this host gives the caller, and what a better one would need.
#[derive(Serialize)]
struct IdsReport {
    mapping: IdMapping,
    missing: Option<String>,
}

impl IdsReport {
    fn read() -> IdsReport {
        let host = isotest_runtime::host_ids();
        IdsReport {
            mapping: host.mapping,
            missing: host.missing.map(|m| m.to_string()),
        }
    }

    fn describe(&self) -> String {
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        let text = match &self.mapping {
            IdMapping::Full => {
                "full: every host id to itself, setgroups allowed (root)".to_string()
            }
            IdMapping::Subordinate { uids, gids } => format!(
                "subordinate: uid {uid} and {}-{}, gid {gid} and {}-{} (newuidmap, newgidmap), \
                 setgroups allowed",
                uids.start,
                u64::from(uids.start) + u64::from(uids.count) - 1,
                gids.start,
                u64::from(gids.start) + u64::from(gids.count) - 1,
            ),
            IdMapping::Single => format!(
                "single: only uid {uid} and gid {gid}; other ids show as 65534, setgroups denied"
            ),
        };
        match &self.missing {
            // Aligned under the value column of `Text::fact`.
            Some(missing) => format!(
                "{text}\n{:width$}for subordinate ranges: {missing}",
                "",
                width = KEY_WIDTH + 3
            ),
            None => text,
        }
    }
}

#[derive(Serialize)]
struct OverlayProbe {
    supported: bool,
    failure: Option<ProbeError>,
    error: Option<String>,
}

pub fn run(args: DoctorArgs) -> i32 {
    let host = HostFacts::read();
    let sandbox = probe_sandbox();
    let diagnosis = sandbox
        .failure
        .as_ref()
        .map(|f| doctor::diagnose(f, &host, &host::CALLER));
    let report = Report {
        version: env!("CARGO_PKG_VERSION"),
        sandbox_works: sandbox.error.is_none(),
        host,
        sandbox,
        ids: IdsReport::read(),
        diagnosis,
        overlayfs: probe_overlayfs(),
        cgroup: CgroupInfo::read(),
        limits: limits_report(HostLimits::read(), host_is_root()),
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("error: cannot write the report as JSON: {e}"),
        }
    } else {
        print!("{}", render(&report));
    }
    if report.sandbox_works {
        0
    } else {
        exit_code::NO_SANDBOX
    }
}

/// The host probe, with the stage each setup step belongs to.
fn probe_sandbox() -> SandboxProbe {
    match host::probe() {
        Ok(outcome) => {
            let problem = program_problem(&outcome);
            let stages = doctor::stage_results(problem.as_ref().map(|_| Stage::Program));
            SandboxProbe {
                stages: Some(stages),
                failure: None,
                error: problem,
            }
        }
        Err(Error::Setup(failure)) => SandboxProbe {
            stages: Some(doctor::stage_results(Some(Stage::of(&failure)))),
            error: Some(failure.to_string()),
            failure: Some(failure),
        },
        Err(other) => SandboxProbe {
            stages: None,
            failure: None,
            error: Some(other.to_string()),
        },
    }
}

/// Why `true` did not simply succeed in a sandbox that was created.
fn program_problem(outcome: &Outcome) -> Option<String> {
    if let Some(error) = &outcome.start_error {
        return Some(error.to_string());
    }
    if outcome.timed_out {
        return Some(format!(
            "`true` did not finish within {PROBE_TIMEOUT_MS} ms"
        ));
    }
    (!outcome.exit.success()).then(|| format!("`true` ended with {}", outcome.exit))
}

fn probe_overlayfs() -> OverlayProbe {
    let result = tempfile::Builder::new()
        .prefix("isotest-doctor-")
        .tempdir()
        .map_err(|e| ProbeError::Call {
            call: "mkdtemp".into(),
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })
        .and_then(|dir| doctor::probe_overlayfs(dir.path()));
    OverlayProbe {
        supported: result.is_ok(),
        error: result.as_ref().err().map(ToString::to_string),
        failure: result.err(),
    }
}

fn host_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn limits_report(host: HostLimits, root: bool) -> LimitsReport {
    let advice = (host.mechanism != Mechanism::CgroupV2).then(|| delegation_advice(root));
    LimitsReport { host, advice }
}

/// How to get a delegated cgroup v2 subtree, the best mechanism: on a laptop through
/// systemd's user manager, on GitHub's ubuntu-24.04 runners (unified cgroup v2, systemd
/// 255, passwordless sudo) likewise for the runner user, or as root.
fn delegation_advice(root: bool) -> String {
    let mut text = String::from(
        "cgroup v2 gives exact limits and peaks for every test. It needs a host booted with the unified \
         hierarchy only (systemd.unified_cgroup_hierarchy=1, the default on current distributions; a \
         hybrid host keeps its controllers on v1) and a subtree delegated to you.\n\n",
    );
    if root {
        text.push_str(
            "As root on a unified host, isotest uses the nearest cgroup of its own whose children get the \
             memory and pids controllers; nothing to set up.\n\n",
        );
    }
    text.push_str(
        "On a laptop (systemd): delegate the controllers to your user manager once, then run isotest in a \
         delegated scope:\n\
         \x20 sudo mkdir -p /etc/systemd/system/user@.service.d\n\
         \x20 printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' | sudo tee /etc/systemd/system/user@.service.d/delegate.conf\n\
         \x20 sudo systemctl daemon-reload   # then log out and back in\n\
         \x20 systemd-run --user --scope -p Delegate=yes -- cargo isotest run\n\n\
         On GitHub Actions (ubuntu-24.04): give the runner user a systemd user manager with the same \
         drop-in, then run in a delegated scope:\n\
         \x20 sudo mkdir -p /etc/systemd/system/user@.service.d\n\
         \x20 printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' | sudo tee /etc/systemd/system/user@.service.d/delegate.conf\n\
         \x20 sudo systemctl daemon-reload\n\
         \x20 sudo loginctl enable-linger \"$USER\"\n\
         \x20 export XDG_RUNTIME_DIR=/run/user/$(id -u)\n\
         \x20 systemd-run --user --scope -p Delegate=yes -- cargo isotest run\n\
         or run the tests as root: sudo -E env PATH=\"$PATH\" cargo isotest run",
    );
    text
}

fn render(report: &Report) -> String {
    let mut out = Text(format!("cargo-isotest {} doctor\n", report.version));
    let host = &report.host;
    let sysctl = |value: Option<u64>| value.map_or("not present".into(), |v| v.to_string());
    let yes_no = |yes: bool| if yes { "yes" } else { "no" };

    out.heading("host");
    out.fact("kernel release", &host.kernel_release);
    out.fact(
        "running as",
        &if host.euid == 0 {
            "root (euid 0)".to_string()
        } else {
            format!("euid {}, not root", host.euid)
        },
    );
    out.fact("CAP_SYS_ADMIN", yes_no(host.cap_sys_admin));
    out.fact("Docker container (/.dockerenv)", yes_no(host.dockerenv));
    out.fact(
        "seccomp",
        match host.seccomp {
            Some(SeccompMode::Disabled) => "disabled",
            Some(SeccompMode::Strict) => "strict",
            Some(SeccompMode::Filter) => "filter",
            None => "unknown",
        },
    );
    out.fact(
        "user.max_user_namespaces",
        &sysctl(host.max_user_namespaces),
    );
    out.fact(
        "kernel.unprivileged_userns_clone",
        &sysctl(host.unprivileged_userns_clone),
    );
    out.fact(
        "kernel.apparmor_restrict_unprivileged_userns",
        &sysctl(host.apparmor_restrict_unprivileged_userns),
    );
    let overmounts: Vec<String> = host
        .proc_overmounts
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    out.fact(
        "/proc overmounts",
        &if overmounts.is_empty() {
            "none".to_string()
        } else {
            overmounts.join(", ")
        },
    );

    out.heading("sandbox");
    let sandbox = &report.sandbox;
    for result in sandbox.stages.iter().flatten() {
        let status = match result.status {
            StageStatus::Passed => "✓".to_string(),
            StageStatus::Failed => format!("✗ {}", stage_error(sandbox)),
            StageStatus::NotReached => "– not reached".to_string(),
        };
        out.fact(result.stage.label(), &status);
    }
    match (&sandbox.error, &sandbox.stages) {
        (None, _) => out.fact("result", "sandboxes work"),
        (Some(error), None) => out.fact("result", &format!("no sandbox: {error}")),
        (Some(_), Some(_)) => out.fact("result", "no sandbox"),
    }
    out.fact("id mapping", &report.ids.describe());

    out.heading("later features");
    out.fact(
        "overlayfs in a user namespace (--writable-source)",
        &match &report.overlayfs.error {
            None => "yes".to_string(),
            Some(error) => format!(
                "no: {error} (it needs Linux 5.11 or newer with userxattr; without it \
                 --writable-source and --overlay fail)"
            ),
        },
    );
    let cgroup = &report.cgroup;
    out.fact(
        "cgroup layout",
        match cgroup.layout {
            CgroupLayout::Unified => "unified (cgroup v2 only)",
            CgroupLayout::Hybrid => "hybrid (cgroup v1 with a cgroup v2 hierarchy)",
            CgroupLayout::Legacy => "legacy (cgroup v1 only)",
            CgroupLayout::None => "no cgroup filesystem mounted",
        },
    );
    let or_none = |path: Option<String>| path.unwrap_or_else(|| "none".into());
    out.fact(
        "cgroup2 mount",
        &or_none(cgroup.mount_point.as_ref().map(|p| p.display().to_string())),
    );
    out.fact("cgroup of this process", &or_none(cgroup.path.clone()));
    out.fact(
        "cgroup directory",
        &cgroup
            .directory
            .as_ref()
            .map_or("not visible here".into(), |p| p.display().to_string()),
    );
    out.fact("cgroup directory writable", yes_no(cgroup.writable));
    out.fact(
        "cgroup.subtree_control",
        &match &cgroup.subtree_control {
            None => "unreadable".to_string(),
            Some(list) if list.is_empty() => "empty".to_string(),
            Some(list) => list.join(" "),
        },
    );

    out.heading("resource limits");
    let limits = &report.limits;
    out.fact("mechanism", limits.host.mechanism.as_str());
    out.fact(
        "cgroup v2 delegated subtree",
        &or_none(
            limits
                .host
                .cgroup_v2_parent
                .as_ref()
                .map(|p| p.display().to_string()),
        ),
    );
    let v1: Vec<String> = limits
        .host
        .cgroup_v1_parents
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    out.fact(
        "cgroup v1 controllers (as root)",
        &if v1.is_empty() {
            "none".into()
        } else {
            v1.join(", ")
        },
    );
    if let Some(advice) = &limits.advice {
        out.heading("how to enable cgroup v2 delegation");
        out.0.push_str(&format!("{}\n", indent(advice)));
    }

    if let Some(diagnosis) = &report.diagnosis {
        out.heading("diagnosis");
        out.0.push_str(&format!("  {}\n", diagnosis.summary));
        out.heading("how to fix it");
        out.0.push_str(&format!("{}\n", indent(&diagnosis.fix)));
    }
    out.0
}

/// Sections of `key value` lines, the values aligned.
struct Text(String);

impl Text {
    fn heading(&mut self, name: &str) {
        self.0.push_str(&format!("\n{name}\n"));
    }

    fn fact(&mut self, key: &str, value: &str) {
        self.0.push_str(&format!("  {key:KEY_WIDTH$} {value}\n"));
    }
}

/// The failing stage's detail: the call that failed, or why `true` did not run.
fn stage_error(sandbox: &SandboxProbe) -> String {
    match &sandbox.failure {
        Some(failure) => doctor::failed_call(failure),
        None => sandbox.error.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isotest_runtime::limits::Available;

    fn host(mechanism: Mechanism) -> HostLimits {
        HostLimits {
            mechanism,
            available: Available::default(),
            cgroup_v2_parent: None,
            cgroup_v1_parents: Vec::new(),
        }
    }

    #[test]
    fn advice_comes_only_without_cgroup_v2_and_names_the_drop_in() {
        assert!(
            limits_report(host(Mechanism::CgroupV2), false)
                .advice
                .is_none()
        );
        let advice = limits_report(host(Mechanism::Fallback), false)
            .advice
            .unwrap();
        assert!(advice.contains("/etc/systemd/system/user@.service.d/delegate.conf"));
        assert!(advice.contains("systemd-run --user --scope -p Delegate=yes"));
        assert!(advice.contains("ubuntu-24.04"));
        assert!(!advice.contains("As root"));
        let root = limits_report(host(Mechanism::CgroupV1), true)
            .advice
            .unwrap();
        assert!(root.contains("As root"));
    }
}
