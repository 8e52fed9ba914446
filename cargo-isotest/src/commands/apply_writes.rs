//! `cargo isotest apply-writes`: copy what one test wrote under `--writable-source` (and
//! `--keep-writes` kept) into the checkout, after showing it: the review step of snapshot
//! tests (insta's `.snap.new`) and generators, without ever letting a test write there.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use isotest_runtime::{Layer, Writes};

use crate::exit_code;
use crate::report::json;

#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLE:\n  cargo isotest run --writable-source --keep-writes target/isotest/writes\n  \
                        cargo isotest apply-writes target/isotest/last-run.json snapshot_of_the_greeting"
)]
pub struct ApplyWritesArgs {
    /// A JSON report written by `cargo isotest run --keep-writes DIR`.
    #[arg(value_name = "REPORT")]
    report: PathBuf,
    /// The test: `<binary id> <name>`, its name, or a part of either that only it matches.
    #[arg(value_name = "TEST")]
    filter: String,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Only show what would be applied.
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
    /// Apply a report of another workspace, or writes whose directory is outside the
    /// report's workspace: a report says where to write, so apply only the ones you trust.
    #[arg(long)]
    trust_report: bool,
}

pub fn run(args: ApplyWritesArgs) -> i32 {
    match apply(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code::USAGE
        }
    }
}

fn apply(args: &ApplyWritesArgs) -> anyhow::Result<i32> {
    let report = json::read(&args.report)?;
    let test = json::find(&report.tests, &args.filter)?;
    let label = format!("{} {}", test.binary_id, test.name);
    let layers = appliable(&test.writes, &label)?;
    if !args.trust_report {
        let root = report.workspace_of(test, "apply its writes")?;
        if let Some((outside, _)) = layers.iter().find(|(l, _)| !l.source.starts_with(root)) {
            bail!(
                "{label} wrote in {}, which is not in the report's workspace {}; pass --trust-report to apply there anyway",
                outside.source.display(),
                root.display()
            );
        }
    }
    for (layer, kept) in &layers {
        eprintln!(
            "isotest: {label} wrote in {} (kept in {}):",
            layer.source.display(),
            kept.display()
        );
        for change in &layer.changes {
            eprintln!("  {change}");
        }
    }
    if args.dry_run {
        return Ok(0);
    }
    if !args.yes && !confirm(&layers)? {
        eprintln!("isotest: nothing applied");
        return Ok(0);
    }
    let mut failed = 0;
    for (layer, kept) in &layers {
        let errors = isotest_runtime::apply(&layer.changes, kept, &layer.source);
        for error in &errors {
            eprintln!("warning: {error}");
        }
        failed += errors.len();
        eprintln!(
            "isotest: applied {} of {} change(s) to {}",
            layer.changes.len() - errors.len(),
            layer.changes.len(),
            layer.source.display()
        );
    }
    Ok(if failed > 0 { exit_code::USAGE } else { 0 })
}

/// The overlay layers whose writes were kept: bind layers wrote on the host already.
fn appliable<'a>(
    writes: &'a [Writes],
    label: &str,
) -> anyhow::Result<Vec<(&'a Writes, &'a PathBuf)>> {
    let overlays: Vec<&Writes> = writes
        .iter()
        .filter(|w| w.layer == Layer::Overlay && !w.changes.is_empty())
        .collect();
    if overlays.is_empty() {
        bail!(
            "{label} wrote nothing into its source tree in this report; run it with --writable-source --keep-writes DIR"
        );
    }
    overlays
        .into_iter()
        .map(|w| match &w.kept {
            Some(kept) => Ok((w, kept)),
            None => bail!(
                "{label}'s writes in {} were listed but not kept; run it again with --keep-writes DIR",
                w.path.display()
            ),
        })
        .collect()
}

/// Asks on the terminal; without one, `--yes` must say so.
fn confirm(layers: &[(&Writes, &PathBuf)]) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("not applied: pass --yes to apply without a terminal to ask on (or --dry-run)");
    }
    let count: usize = layers.iter().map(|(l, _)| l.changes.len()).sum();
    eprint!("Apply these {count} change(s)? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
