//! `cargo isotest replay`: run one recorded test again, in the very sandbox the report
//! recorded (binds, environment, seed, attempt number, arguments), with its output live.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use isotest_runtime::{Identity, Mount, Net, Spec};

use crate::exit_code;
use crate::launch::foreground;
use crate::report::Fingerprint;
use crate::report::json::{self, StoredTest};
use crate::report::terminal::shell_quote;
use crate::sandbox::attempt_spec;

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
        Ok((label, spec)) => {
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
            let relaxed = relaxations(&spec);
            if !relaxed.is_empty() {
                eprintln!(
                    "isotest: this sandbox is less strict than the default:\n  {}",
                    relaxed.join("\n  ")
                );
            }
            foreground::run(&spec, |_| {})
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code::USAGE
        }
    }
}

fn prepare(args: &ReplayArgs) -> anyhow::Result<(String, Spec)> {
    let report = json::read(&args.report)?;
    let test = find(&report.tests, &args.filter)?;
    if !args.trust_report {
        trusted(&report, test)?;
    }
    let Some(spec) = &test.spec else {
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
    Ok((label, attempt_spec(spec, attempt)))
}

/// Refuses a report that is not this workspace's, or whose binary is not the one that
/// ran: either could make replay run something other than what the user thinks.
fn trusted(report: &json::StoredReport, test: &StoredTest) -> anyhow::Result<()> {
    let here = std::env::current_dir().unwrap_or_default();
    match &report.workspace_root {
        Some(root) if here.starts_with(root) => {}
        Some(root) => bail!(
            "the report is of the workspace {}, not of this directory ({}): replay it from there, or pass --trust-report to run what it says anyway",
            root.display(),
            here.display()
        ),
        None => bail!(
            "the report does not say which workspace it is of; pass --trust-report to run what it says anyway"
        ),
    }
    let Some(program) = test.spec.as_ref().and_then(|s| s.argv.first()) else {
        return Ok(());
    };
    let recorded = report
        .binaries
        .iter()
        .find(|b| b.path == std::path::Path::new(program));
    let now = Fingerprint::of(std::path::Path::new(program));
    if recorded.is_none() || recorded != now.as_ref() {
        bail!(
            "the test binary {program} changed since the report was written (rebuilt?), so replaying would not run what ran: run the tests again, or pass --trust-report to replay with the binary as it is"
        );
    }
    Ok(())
}

/// What the spec allows beyond a default test sandbox, one line each.
fn relaxations(spec: &Spec) -> Vec<String> {
    let mut lines = Vec::new();
    for mount in &spec.mounts {
        if let Mount::Bind { src, dst, writable } = mount {
            if *writable {
                lines.push(format!(
                    "writable bind: {} at {} (--bind-rw)",
                    src.display(),
                    dst.display()
                ));
            } else if src != dst {
                lines.push(format!("bind: {} at {}", src.display(), dst.display()));
            }
        }
    }
    match spec.net {
        Net::Loopback => {}
        Net::None => {}
        Net::Host => lines.push("the host's network (--net host)".into()),
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

/// The one test the filter names: an exact `<binary id> <name>` or name first, else the
/// only test containing it.
fn find<'a>(tests: &'a [StoredTest], filter: &str) -> anyhow::Result<&'a StoredTest> {
    let full = |t: &StoredTest| format!("{} {}", t.binary_id, t.name);
    let exact: Vec<&StoredTest> = tests
        .iter()
        .filter(|t| full(t) == filter || t.name == filter)
        .collect();
    let matches = if exact.is_empty() {
        tests.iter().filter(|t| full(t).contains(filter)).collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut closest: Vec<(f64, String)> = tests
                .iter()
                .map(|t| {
                    (
                        strsim::jaro_winkler(filter, &t.name)
                            .max(strsim::jaro_winkler(filter, &full(t))),
                        full(t),
                    )
                })
                .collect();
            closest.sort_by(|a, b| b.0.total_cmp(&a.0));
            let names: Vec<String> = closest
                .into_iter()
                .take(5)
                .map(|(_, n)| format!("  {n}"))
                .collect();
            bail!(
                "no test in the report matches `{filter}`; the closest names are:\n{}",
                names.join("\n")
            )
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .take(20)
                .map(|t| format!("  {}", full(t)))
                .collect();
            bail!(
                "`{filter}` matches {} tests; name one of them:\n{}",
                many.len(),
                names.join("\n")
            )
        }
    }
}
