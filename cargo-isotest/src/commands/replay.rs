//! `cargo isotest replay`: run one recorded test again, in the very sandbox the report
//! recorded (binds, environment, seed, attempt number, arguments), with its output live.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use isotest_runtime::{Identity, Mount, Net, Pid, Spec, Sys};

use crate::chaos::{self, Perturbation};
use crate::exit_code;
use crate::launch::foreground;
use crate::report::json;
use crate::report::terminal::shell_quote;
use crate::sandbox;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A JSON report written by `cargo isotest run`.
    #[arg(value_name = "REPORT")]
    report: PathBuf,
    /// The test: `<binary id> <name>`, its name, or a part of either that only it matches.
    #[arg(value_name = "TEST")]
    filter: String,
    /// Which attempt to replay [default: the first that failed, else the last].
    #[arg(long, value_name = "N")]
    attempt: Option<u32>,
    /// Replay a report of another workspace, or one whose test binary changed since:
    /// a report says what to run and with which binds, so run only the ones you trust.
    #[arg(long)]
    trust_report: bool,
}

pub fn run(args: ReplayArgs) -> i32 {
    match prepare(&args) {
        Ok((label, spec, perturbation)) => {
            eprintln!(
                "isotest: replaying {label} from {}:\n  cd {} && {}",
                args.report.display(),
                shell_quote(&spec.cwd.display().to_string()),
                spec.argv
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            if let Some(perturbation) = perturbation {
                eprintln!(
                    "isotest: with the same chaos: {}",
                    chaos::describe(&perturbation)
                );
            }
            let relaxed = relaxations(&spec);
            if !relaxed.is_empty() {
                eprintln!(
                    "isotest: this sandbox is less strict than the default:\n  {}",
                    relaxed.join("\n  ")
                );
            }
            foreground::run(&spec, None, |_| {})
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code::USAGE
        }
    }
}

fn prepare(args: &ReplayArgs) -> anyhow::Result<(String, Spec, Option<Perturbation>)> {
    let report = json::read(&args.report)?;
    let test = json::find(&report.tests, &args.filter)?;
    if !args.trust_report {
        report.check_trusted(&[test])?;
    }
    let Some((binary_spec, argv)) = report.test_sandbox(test) else {
        bail!(
            "{} {} did not run ({}), so there is no sandbox to replay",
            test.binary_id,
            test.name,
            test.outcome
        );
    };
    let attempt = args.attempt.unwrap_or_else(|| {
        test.attempts
            .iter()
            .find(|a| json::failed(&a.outcome))
            .map_or(test.attempt, |a| a.attempt)
    });
    let label = format!("{} {} (attempt {attempt})", test.binary_id, test.name);
    let spec = match argv {
        Some(argv) => sandbox::with_test(binary_spec, argv.to_vec(), &test.name),
        None => binary_spec.clone(),
    };
    let seed = report.attempt_seeds.then_some(report.seed);
    Ok((
        label,
        sandbox::attempt_spec(&spec, attempt, seed),
        sandbox::attempt_perturbation(&spec, attempt, seed),
    ))
}

/// What the spec allows beyond a default test sandbox, one line each.
fn relaxations(spec: &Spec) -> Vec<String> {
    let mut lines = Vec::new();
    for mount in &spec.mounts {
        match mount {
            Mount::Bind { src, dst, writable } if *writable => lines.push(format!(
                "writable bind: {} at {} (--bind-rw)",
                src.display(),
                dst.display()
            )),
            Mount::Bind { src, dst, .. } if src != dst => {
                lines.push(format!("bind: {} at {}", src.display(), dst.display()))
            }
            Mount::Socket { src, dst } => lines.push(format!(
                "host socket: {} at {} (--forward-unix)",
                src.display(),
                dst.display()
            )),
            _ => {}
        }
    }
    match spec.net {
        Net::Loopback => {}
        Net::None => {}
        Net::Host => lines.push("the host's network (--net host)".into()),
    }
    if !spec.forwards.is_empty() {
        let addresses: Vec<String> = spec.forwards.iter().map(|a| a.to_string()).collect();
        lines.push(format!(
            "host services reachable at {} (--forward)",
            addresses.join(", ")
        ));
    }
    if spec.net_admin {
        lines.push("CAP_NET_ADMIN over the sandbox's own network (--net-admin)".into());
    }
    if spec.pid == Pid::Host {
        lines.push("the host's processes and /proc (--pid host)".into());
    }
    if spec.sys == Sys::Host {
        lines.push("the host's /sys (--sys host)".into());
    }
    if spec.identity == Identity::Root {
        lines.push("uid 0 inside (--root)".into());
    }
    if spec.namespace_limit > isotest_runtime::DEFAULT_NAMESPACE_LIMIT {
        lines.push(format!(
            "up to {} namespaces of each kind (--nesting)",
            spec.namespace_limit
        ));
    }
    let standard = |key: &str| {
        key.starts_with("CARGO")
            || key.starts_with("ISOTEST_")
            || key.starts_with("RUST")
            || key == "LD_LIBRARY_PATH"
            || key == "OUT_DIR"
    };
    let extra: Vec<&str> = spec
        .env
        .set
        .keys()
        .map(String::as_str)
        .filter(|k| !standard(k))
        .chain(
            spec.env
                .pass
                .iter()
                .map(String::as_str)
                .filter(|k| !isotest_runtime::DEFAULT_ENV_PASS.contains(k) && !standard(k)),
        )
        .collect();
    if !extra.is_empty() {
        lines.push(format!("extra environment: {} (--env)", extra.join(", ")));
    }
    if !spec.env.pass.iter().any(|k| k == "CARGO_HOME") {
        lines.push("no toolchain visible (--no-toolchain)".into());
    }
    lines
}
