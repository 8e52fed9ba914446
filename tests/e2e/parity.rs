//! Filterset parity with nextest: the same expressions select the same tests under
//! `cargo nextest list -E` and `cargo isotest list -E`, on the fixtures.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use libtest_mimic::Failed;
use serde_json::Value;

use crate::ctx::{Ctx, describe, ensure, fixture, output};

/// Expressions over every predicate and operator, on a two-package workspace
/// (`cfg-app` depends on `cfg-core`) with a library, an integration test and modules.
pub const EXPRESSIONS: &[&str] = &[
    "test(serial)",
    "test(=observe::env)",
    "test(/^serial::db_/)",
    "test(#*light*)",
    "test(~answer)",
    "package(cfg-core)",
    "binary(integration)",
    "binary(=cfg_app)",
    "binary_id(cfg-app::integration)",
    "kind(test)",
    "deps(cfg-app)",
    "rdeps(cfg-core) - package(cfg-app)",
    "all() - test(/observe/)",
    "none() | test(=uses_the_app)",
    "package(cfg-app) and not (test(serial) or kind(test))",
];

/// The `(binary id, test)` pairs nextest's JSON list says match.
fn nextest_selection(dir: &Path, expr: &str) -> Result<BTreeSet<(String, String)>, Failed> {
    let out = output(
        Command::new("cargo")
            .current_dir(dir)
            .env_remove("CARGO_TARGET_DIR")
            .args(["nextest", "list", "--message-format", "json", "-E", expr]),
    )?;
    ensure(out.status.success(), || {
        format!("cargo nextest list -E {expr}: {}", describe(&out))
    })?;
    let list: Value = serde_json::from_slice(&out.stdout)?;
    let mut selected = BTreeSet::new();
    for (binary_id, suite) in list["rust-suites"].as_object().into_iter().flatten() {
        for (name, case) in suite["testcases"].as_object().into_iter().flatten() {
            if case["filter-match"]["status"] == "matches" {
                selected.insert((binary_id.clone(), name.clone()));
            }
        }
    }
    Ok(selected)
}

fn isotest_selection(
    ctx: &Ctx,
    dir: &Path,
    expr: &str,
) -> Result<BTreeSet<(String, String)>, Failed> {
    let out = output(
        ctx.isotest(dir)
            .args(["list", "--message-format", "json", "-E", expr]),
    )?;
    ensure(out.status.success(), || {
        format!("cargo isotest list -E {expr}: {}", describe(&out))
    })?;
    let list: Value = serde_json::from_slice(&out.stdout)?;
    Ok(list["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["runs"] == true)
        .map(|t| {
            let text = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (text("binary_id"), text("name"))
        })
        .collect())
}

pub fn filtersets_select_what_nextest_selects(ctx: &Ctx) -> Result<(), Failed> {
    let dir = fixture("config", ctx.user.as_ref());
    let mut table = Vec::new();
    let mut differ = Vec::new();
    for expr in EXPRESSIONS {
        let nextest = nextest_selection(&dir, expr)?;
        let isotest = isotest_selection(ctx, &dir, expr)?;
        table.push(format!("{:>3} {:>3}  {expr}", nextest.len(), isotest.len()));
        if nextest != isotest {
            differ.push(format!(
                "{expr}:\n  nextest {nextest:?}\n  isotest {isotest:?}"
            ));
        }
    }
    eprintln!("nextest isotest  expression\n{}", table.join("\n"));
    ensure(differ.is_empty(), || differ.join("\n"))
}
