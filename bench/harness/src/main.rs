//! Times commands against each other and prints their wall-time distributions.
//!
//! Every round runs each command once, starting one place later in the list each round, so
//! that slow drift in the machine (clock frequency, caches, other load) and the position
//! right after another command fall on all commands alike. Timing from here, around spawn
//! and wait, leaves out the fork-and-exec noise of a shell measuring itself.

use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: bench-harness [--rounds N] [--warmup N] [--reference LABEL]
                     --case LABEL PROGRAM [ARG...] [--case LABEL PROGRAM [ARG...]]...

Runs every case once per round, in rotating order, for N rounds (default 300) after
the warm-up rounds (default 10, not recorded), and prints median, p10 and p90 per case.
The first case is the floor the others' overhead is measured from; ratios are against
the reference case (default: the last). A case's arguments run up to the next --case.";

struct Case {
    label: String,
    argv: Vec<String>,
    samples: Vec<Duration>,
}

struct Options {
    rounds: usize,
    warmup: usize,
    reference: usize,
    cases: Vec<Case>,
}

fn main() -> ExitCode {
    // Other work on the machine widens every distribution; the reader should know of it.
    let load = load_average();
    let mut options = match parse_args(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bench-harness: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(message) = run_rounds(&mut options) {
        eprintln!("bench-harness: {message}");
        return ExitCode::FAILURE;
    }
    print_report(&options, &load);
    ExitCode::SUCCESS
}

fn parse_args(args: Vec<String>) -> Result<Options, String> {
    let mut rounds = 300;
    let mut warmup = 10;
    let mut reference = None;
    let mut cases: Vec<Case> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--rounds" if cases.is_empty() => rounds = parse_count("--rounds", &value(&arg)?)?,
            "--warmup" if cases.is_empty() => warmup = parse_count("--warmup", &value(&arg)?)?,
            "--reference" if cases.is_empty() => reference = Some(value(&arg)?),
            "--case" => cases.push(Case {
                label: value(&arg)?,
                argv: Vec::new(),
                samples: Vec::new(),
            }),
            _ => match cases.last_mut() {
                Some(case) => case.argv.push(arg),
                None => return Err(format!("unexpected `{arg}` before the first --case")),
            },
        }
    }
    if rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    if cases.len() < 2 {
        return Err("give at least two cases: a floor and something to compare with it".into());
    }
    if let Some(case) = cases.iter().find(|c| c.argv.is_empty()) {
        return Err(format!("case `{}` has no program", case.label));
    }
    let reference = match reference {
        None => cases.len() - 1,
        Some(label) => cases
            .iter()
            .position(|c| c.label == label)
            .ok_or(format!("--reference {label}: no case has that label"))?,
    };
    Ok(Options {
        rounds,
        warmup,
        reference,
        cases,
    })
}

fn parse_count(name: &str, text: &str) -> Result<usize, String> {
    text.parse()
        .map_err(|_| format!("{name} {text}: not a whole number"))
}

fn run_rounds(options: &mut Options) -> Result<(), String> {
    let count = options.cases.len();
    for round in 0..options.warmup + options.rounds {
        for step in 0..count {
            let case = &mut options.cases[(round + step) % count];
            let elapsed = time_once(case)?;
            if round >= options.warmup {
                case.samples.push(elapsed);
            }
        }
    }
    Ok(())
}

fn time_once(case: &Case) -> Result<Duration, String> {
    let mut command = Command::new(&case.argv[0]);
    command
        .args(&case.argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("{}: cannot run {}: {e}", case.label, case.argv[0]))?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(describe_failure(case, status));
    }
    Ok(elapsed)
}

/// Timed runs discard the output, so a failure is run again to show what it said.
fn describe_failure(case: &Case, status: ExitStatus) -> String {
    let mut message = format!(
        "{} failed ({status}); a bad sample would skew the numbers, so nothing is reported.\n  command: {}",
        case.label,
        case.argv.join(" ")
    );
    if let Ok(output) = Command::new(&case.argv[0])
        .args(&case.argv[1..])
        .stdin(Stdio::null())
        .output()
    {
        let said = String::from_utf8_lossy(&output.stderr);
        if !said.trim().is_empty() {
            message.push_str("\n  on a second run it said:");
            for line in said.trim_end().lines() {
                message.push_str(&format!("\n    {line}"));
            }
        }
    }
    message
}

struct Summary {
    median: f64,
    p10: f64,
    p90: f64,
}

/// In milliseconds; percentiles interpolate linearly between the two nearest samples.
fn summarize(samples: &[Duration]) -> Summary {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        let position = p * (ms.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        ms[low] + (ms[high] - ms[low]) * (position - low as f64)
    };
    Summary {
        median: percentile(0.5),
        p10: percentile(0.1),
        p90: percentile(0.9),
    }
}

fn print_report(options: &Options, load: &str) {
    let cases = &options.cases;
    let summaries: Vec<Summary> = cases.iter().map(|c| summarize(&c.samples)).collect();
    let floor = &cases[0];
    let reference = &cases[options.reference];
    let reference_median = summaries[options.reference].median;

    println!(
        "kernel {}, {} CPUs{}",
        kernel_release(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model().map_or(String::new(), |m| format!(" ({m})")),
    );
    println!("load average {load} (1, 5, 15 min) before the run");
    println!(
        "N = {} rounds (after {} warm-up rounds), each command once per round in rotating order",
        options.rounds, options.warmup
    );
    println!();
    let width = cases
        .iter()
        .map(|c| c.label.len())
        .max()
        .unwrap_or(0)
        .max(7);
    for case in cases {
        println!("  {:width$}  {}", case.label, case.argv.join(" "));
    }
    println!();
    let over = format!("over {}", floor.label);
    let versus = format!("vs {}", reference.label);
    println!(
        "{:width$}  {:>9}  {:>9}  {:>9}  {:>over_width$}  {:>versus_width$}",
        "command",
        "median",
        "p10",
        "p90",
        over,
        versus,
        over_width = over.len().max(9),
        versus_width = versus.len().max(6),
    );
    for (case, summary) in cases.iter().zip(&summaries) {
        println!(
            "{:width$}  {:>9}  {:>9}  {:>9}  {:>over_width$}  {:>versus_width$}",
            case.label,
            ms(summary.median),
            ms(summary.p10),
            ms(summary.p90),
            ms(summary.median - summaries[0].median),
            format!("{:.2}x", summary.median / reference_median),
            over_width = over.len().max(9),
            versus_width = versus.len().max(6),
        );
    }
    let peers: Vec<String> = cases
        .iter()
        .zip(&summaries)
        .enumerate()
        .filter(|(i, _)| *i != 0 && *i != options.reference)
        .map(|(_, (case, summary))| {
            format!(
                "{}/{} = {:.2}x ({:+.2}ms)",
                reference.label,
                case.label,
                reference_median / summary.median,
                reference_median - summary.median
            )
        })
        .collect();
    if !peers.is_empty() {
        println!();
        println!("{}", peers.join("   "));
    }
}

fn ms(value: f64) -> String {
    format!("{value:.2}ms")
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
}

fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}
