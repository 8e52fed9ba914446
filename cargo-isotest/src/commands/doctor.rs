//! `cargo isotest doctor`, and the diagnosis printed when a sandbox cannot be created.

use clap::Args;
use isotest_runtime::doctor::{
    self, CgroupInfo, CgroupLayout, Diagnosis, HostFacts, ProbeError, SeccompMode, Stage,
    StageResult, StageStatus,
};
use isotest_runtime::{Error, Outcome, SetupError};
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
    diagnosis: Option<Diagnosis>,
    overlayfs: OverlayProbe,
    cgroup: CgroupInfo,
}

#[derive(Serialize)]
struct SandboxProbe {
    /// Absent when the sandbox failed outside its setup steps.
    stages: Option<Vec<StageResult>>,
    /// The setup step that failed.
    failure: Option<SetupError>,
    error: Option<String>,
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
        diagnosis,
        overlayfs: probe_overlayfs(),
        cgroup: CgroupInfo::read(),
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

    out.heading("later features");
    out.fact(
        "overlayfs in a user namespace",
        &match &report.overlayfs.error {
            None => "yes".to_string(),
            Some(error) => format!("no: {error}"),
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
