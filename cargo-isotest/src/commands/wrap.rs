//! `cargo-isotest isotest wrap <test-binary> <args…>`: one test-binary invocation in the
//! sandbox `run` would give it, for cargo-nextest's wrapper scripts and cargo's target
//! runners. Nextest and cargo start it as a fresh process, so it stays single-threaded
//! until the sandbox exists; it ends with the test's status, and reports strays (killed
//! with the sandbox) on stderr, where nextest's output and JUnit show them.

use std::collections::BTreeMap;

use clap::Args;

use crate::args::SandboxArgs;
use crate::cargo::build::rustc_print;
use crate::cargo::config_env;
use crate::cargo::wrapped::{self, Toolchain};
use crate::config::Effective;
use crate::discover::sandbox_flags;
use crate::exit_code::{self, Failure};
use crate::launch::foreground;
use crate::sandbox::{self, SandboxOptions};

#[derive(Args, Debug)]
#[command(after_help = "AS A NEXTEST WRAPPER SCRIPT (.config/nextest.toml):\n  \
                  [scripts.wrapper.isotest]\n  \
                  command = [\"cargo-isotest\", \"isotest\", \"wrap\"]\n\n  \
                  [[profile.default.scripts]]\n  \
                  filter = \"all()\"\n  \
                  run-wrapper = \"isotest\"\n\n\
                  AS A CARGO TARGET RUNNER:\n  \
                  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=\"cargo-isotest isotest wrap\" cargo test")]
pub struct WrapArgs {
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// The test binary and its arguments, as nextest or cargo pass them.
    #[arg(
        value_name = "TEST-BINARY ARGS",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

pub fn run(args: WrapArgs) -> i32 {
    execute(&args).unwrap_or_else(Failure::report)
}

fn execute(args: &WrapArgs) -> Result<i32, Failure> {
    let usage = |e: String| Failure::new(exit_code::USAGE, e);
    let setup = |e: String| Failure::new(exit_code::SETUP_FAILED, e);
    let (program, rest) = args
        .command
        .split_first()
        .expect("clap requires the binary");
    let binary = std::fs::canonicalize(program).map_err(|e| {
        usage(format!(
            "wrap {program}: {e}; give the test binary's path first"
        ))
    })?;
    let cwd = std::env::current_dir()
        .map_err(|e| setup(format!("cannot read the working directory: {e}")))?;
    let vars: BTreeMap<String, String> = std::env::vars().collect();
    let toolchain = Toolchain {
        sysroot: rustc_print("sysroot", &cwd, None).map_err(|e| setup(e.to_string()))?,
        target_libdir: rustc_print("target-libdir", &cwd, None)
            .map_err(|e| setup(e.to_string()))?,
    };
    let mut wrapped = wrapped::wrapped(&binary, rest, &vars, &cwd, toolchain);
    wrapped.build.config_env = config_env::read(&cwd).map_err(|e| usage(e.to_string()))?;
    // Only the flags: nextest's own config selects and schedules the tests it wraps.
    let flags = Effective::of_flags(&sandbox_flags(&args.sandbox)?, &cwd);
    let mut options = SandboxOptions::from_settings(&flags).map_err(|e| usage(format!("{e:#}")))?;
    crate::discover::warn_unenforced(&options.limits)?;
    options.add_toolchain();
    let tmpdir = sandbox::target_tmpdir(&wrapped.build);
    std::fs::create_dir_all(&tmpdir)
        .map_err(|e| setup(format!("cannot create {}: {e}", tmpdir.display())))?;
    let seed = vars
        .get("ISOTEST_SEED")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(sandbox::fresh_seed);
    let base = sandbox::binary_test_spec(&wrapped.build, &wrapped.binary, &options, seed);
    let argv: Vec<String> = std::iter::once(binary.display().to_string())
        .chain(rest.iter().cloned())
        .collect();
    let spec = sandbox::with_command(&base, argv, wrapped.test_name.as_deref());
    // nextest numbers a retried test's attempts; cargo runs each once.
    let attempt = vars
        .get("NEXTEST_ATTEMPT")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    Ok(foreground::run(
        &sandbox::attempt_spec(&spec, attempt, None),
        None,
        |_| {},
    ))
}
