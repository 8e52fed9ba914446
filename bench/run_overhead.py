#!/usr/bin/env python3
"""The parts of bench/run-overhead and bench/stress-overhead that are easier in Python than
in bash: generating the trivial crate, timing whole runner commands, and reading the
runners' reports.

Subcommands (those two scripts are the only callers; see bench/README.md):

  generate DIR COUNT            write a standalone crate with COUNT trivial tests
  lock-checksum LOCK NAME VER   print the registry checksum that Cargo.lock records
  time [options] --case LABEL PROGRAM [ARG...] --case ...
                                time whole commands, interleaved, into a JSON file;
                                {run} in an argument becomes the run's name
                                (warmup, 1, 2, ...), e.g. for a report per run
  report-trivial TIMING COUNT   part 1's table: medians, ratio, per-test overhead
  report-crates DIR...          part 2's table: walls and per-test agreement
  report-stress TIMING COUNT    stress-overhead's table: medians, ratio, failure counts
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

# Reading the two runners' results is the compatibility corpus's job; part 2 here is a
# small corpus of its own, compared the same way.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compat"))
from compat import count_line, isotest_outcomes, nextest_outcomes  # noqa: E402

# Exit statuses that mean "the runner did its job": 0, and 100 when a test failed (both
# nextest and isotest use 100 for that). Anything else is the runner's own failure (a
# build error, a crash, a bad flag), after which its time means nothing.
RUNNER_OK = (0, 100)

# cargo's line for a crate it rebuilds; after the warm-up no timed run should print it.
COMPILING = re.compile(r"^\s+Compiling ", re.MULTILINE)
# The closing line both runners print, with their own clock of the run (see report_trivial).
SUMMARY = re.compile(r"^\s+Summary \[\s*([0-9.]+)s\]", re.MULTILINE)


# The script on whose behalf this runs, for the progress lines.
CALLER = os.environ.get("BENCH_CALLER", "run-overhead")


def say(message):
    print(f"{CALLER}: {message}", file=sys.stderr, flush=True)


def fail(message):
    say(message)
    sys.exit(1)


# --- generate ---------------------------------------------------------------------------


def generate(directory, count):
    directory = Path(directory)
    (directory / "src").mkdir(parents=True, exist_ok=True)
    # Its own [workspace] so that no workspace above it (this repository's, when the crate
    # sits under target/) claims it.
    manifest = '[package]\nname = "trivial"\nversion = "0.1.0"\nedition = "2021"\npublish = false\n\n[workspace]\n'
    width = len(str(count - 1))
    tests = "".join(
        f"    #[test]\n    fn t{i:0{width}}() {{\n        assert_eq!(1 + 1, 2);\n    }}\n"
        for i in range(count)
    )
    source = f"//! {count} tests that do nothing: what is left is the runner's cost per test.\n\n#[cfg(test)]\nmod tests {{\n{tests}}}\n"
    # Rewriting identical files would touch their mtime and make cargo rebuild for nothing.
    for path, text in ((directory / "Cargo.toml", manifest), (directory / "src/lib.rs", source)):
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


# --- lock-checksum ----------------------------------------------------------------------


def lock_checksum(lockfile, name, version):
    with open(lockfile, "rb") as file:
        lock = tomllib.load(file)
    for package in lock.get("package", []):
        if package.get("name") == name and package.get("version") == version:
            checksum = package.get("checksum")
            if not checksum:
                fail(f"{lockfile}: {name} {version} has no checksum (not from a registry?)")
            print(checksum)
            return
    fail(f"{lockfile}: no package {name} {version}")


# --- time -------------------------------------------------------------------------------


def parse_time_args(args):
    options = {"rounds": 5, "warmup": 1, "out": None, "log_dir": None, "cases": []}
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg == "--case":
            if not args:
                fail("--case needs a label")
            options["cases"].append({"label": args.pop(0), "argv": []})
        elif options["cases"]:
            options["cases"][-1]["argv"].append(arg)
        elif arg in ("--rounds", "--warmup", "--out", "--log-dir") and args:
            key = arg[2:].replace("-", "_")
            value = args.pop(0)
            options[key] = int(value) if key in ("rounds", "warmup") else value
        else:
            fail(f"time: unexpected argument {arg!r}")
    if options["rounds"] < 1 or not options["out"] or not options["log_dir"]:
        fail("time: needs --rounds N (at least 1), --out FILE and --log-dir DIR")
    if len(options["cases"]) < 2 or any(not case["argv"] for case in options["cases"]):
        fail("time: needs at least two cases, each with a program")
    return options


def run_once(case, log, name):
    """Runs one command with its output in a log file; the wall time covers spawn to exit."""
    argv = [arg.replace("{run}", name) for arg in case["argv"]]
    with open(log, "wb") as output:
        start = time.monotonic_ns()
        status = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        ).returncode
        elapsed = (time.monotonic_ns() - start) / 1e9
    text = Path(log).read_text(errors="replace")
    if status not in RUNNER_OK:
        tail = "\n".join("    " + line for line in text.rstrip().splitlines()[-25:])
        fail(
            f"{case['label']} failed with exit status {status}, so its time would mean"
            f" nothing.\n  command: {' '.join(argv)}\n  its last lines ({log}):\n{tail}"
        )
    summary = SUMMARY.findall(text)
    return {
        "run": name,
        "wall": elapsed,
        "status": status,
        "rebuilt": bool(COMPILING.search(text)),
        "own_clock": float(summary[-1]) if summary else None,
        "log": str(log),
    }


def time_cases(args):
    options = parse_time_args(args)
    cases = options["cases"]
    log_dir = Path(options["log_dir"])
    log_dir.mkdir(parents=True, exist_ok=True)
    load = load_average()
    for case in cases:
        case["runs"] = []
    total = options["warmup"] + options["rounds"]
    for round_index in range(total):
        warm = round_index < options["warmup"]
        name = "warm-up" if warm else f"round {round_index - options['warmup'] + 1}/{options['rounds']}"
        # Rotating the start drifts the machine's slow changes (frequency, caches) and the
        # "right after the other runner" position over every case alike.
        order = [cases[(round_index + step) % len(cases)] for step in range(len(cases))]
        line = []
        run_name = "warmup" if warm else str(round_index - options["warmup"] + 1)
        for case in order:
            log = log_dir / f"{case['label']}.{run_name}.log"
            run = run_once(case, log, run_name)
            line.append(f"{case['label']} {run['wall']:.2f}s")
            if not warm:
                case["runs"].append(run)
        say(f"{name}: {', '.join(line)}")
    result = {
        "load_before": load,
        "load_after": load_average(),
        "rounds": options["rounds"],
        "warmup": options["warmup"],
        "cases": cases,
    }
    Path(options["out"]).write_text(json.dumps(result, indent=2))


# --- reports ----------------------------------------------------------------------------


def load_average():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_line():
    kernel = Path("/proc/sys/kernel/osrelease").read_text().strip()
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = f" ({line.split(':', 1)[1].strip()})"
            break
    return f"kernel {kernel}, {os.cpu_count()} CPUs{model}"


def case_stats(case):
    walls = [run["wall"] for run in case["runs"]]
    clocks = [run["own_clock"] for run in case["runs"] if run["own_clock"] is not None]
    return {
        "median": statistics.median(walls),
        "min": min(walls),
        "max": max(walls),
        "own_clock": statistics.median(clocks) if len(clocks) == len(walls) else None,
        "rebuilt": sum(run["rebuilt"] for run in case["runs"]),
        "statuses": sorted({run["status"] for run in case["runs"]}),
    }


def seconds(value):
    return "-" if value is None else f"{value:.3f}s"


def timing_warnings(label, timing, stats, statuses=True):
    """What would make the medians misleading, said next to them rather than hidden.
    statuses=False leaves out the varying exit status, for runs of a test that is flaky
    on purpose."""
    warnings = []
    for case in timing["cases"]:
        s = stats[case["label"]]
        if s["rebuilt"]:
            warnings.append(
                f"{label}{case['label']}: cargo recompiled in {s['rebuilt']} timed run(s):"
                " the runners do not share a fresh build, so those times include compiling"
            )
        if statuses and len(s["statuses"]) > 1:
            warnings.append(
                f"{label}{case['label']}: exit status varied between rounds {s['statuses']}:"
                " some test is flaky"
            )
    return warnings


def report_trivial(timing_path, count):
    timing = json.loads(Path(timing_path).read_text())
    stats = {case["label"]: case_stats(case) for case in timing["cases"]}
    nextest, isotest = stats["nextest"], stats["isotest"]
    print(machine_line())
    print(f"load average {timing['load_before']} (1, 5, 15 min) before the timed runs")
    print(
        f"N = {timing['rounds']} rounds (after {timing['warmup']} warm-up round), each runner"
        " once per round, alternating which goes first"
    )
    print()
    for case in timing["cases"]:
        print(f"  {case['label']:8} {' '.join(case['argv'])}")
    print()
    print(f"{'runner':16}  {'median':>8}  {'min':>8}  {'max':>8}  {'own clock':>10}  {'per test':>9}")
    for label in stats:
        s = stats[label]
        per_test = s["median"] / count * 1e3
        print(
            f"{label:16}  {seconds(s['median']):>8}  {seconds(s['min']):>8}"
            f"  {seconds(s['max']):>8}  {seconds(s['own_clock']):>10}  {per_test:>7.2f}ms"
        )
    ratio = isotest["median"] / nextest["median"]
    overhead = (isotest["median"] - nextest["median"]) / count * 1e3
    print()
    print(
        f"isotest/nextest = {ratio:.2f}x (target: within 1.20x, {'met' if ratio <= 1.2 else 'not met'})"
    )
    print(f"per-test overhead over nextest = {overhead:+.2f}ms  ((isotest - nextest) / {count})")
    for label in ("isotest+limits", "isotest+fallback"):
        limited = stats.get(label)
        if limited:
            extra = limited["median"] / isotest["median"]
            print(
                f"{label}/isotest = {extra:.2f}x (goal: under 1.05x,"
                f" {'met' if extra < 1.05 else 'not met'}); per test"
                f" {(limited['median'] - isotest['median']) / count * 1e3:+.2f}ms"
            )
    print(
        "(own clock: the median time on the runner's closing Summary line; the two clocks"
        " do not start at the same point, see bench/README.md)"
    )
    for warning in timing_warnings("", timing, stats):
        print(f"warning: {warning}")


def report_crates(directories):
    rows, disagreements, warnings, notes = [], [], [], []
    timings = []
    for directory in map(Path, directories):
        label = directory.name
        timing = json.loads((directory / "timing.json").read_text())
        timings.append(timing)
        stats = {case["label"]: case_stats(case) for case in timing["cases"]}
        warnings += timing_warnings(f"{label}: ", timing, stats)
        nextest, isotest = nextest_outcomes(directory)[0], isotest_outcomes(directory)[0]
        keys = sorted(set(nextest) | set(isotest))
        disagree = [key for key in keys if nextest.get(key) != isotest.get(key)]
        disagreements += [(label, key, nextest.get(key, "absent"), isotest.get(key, "absent")) for key in disagree]
        n, i = stats["nextest"]["median"], stats["isotest"]["median"]
        rows.append((label, len(keys), len(keys) - len(disagree), len(disagree), n, i, i / n))
        notes.append(f"  {label}: nextest {count_line(nextest)}; isotest {count_line(isotest)}")

    print(machine_line())
    loads = ", ".join(timing["load_before"] for timing in timings)
    print(f"load average before each crate's timed runs: {loads}")
    print(
        f"N = {timings[0]['rounds']} rounds per crate (after {timings[0]['warmup']} warm-up"
        " round), each runner once per round, alternating which goes first; outcomes are"
        " those of the last round"
    )
    print()
    header = ("crate", "tests", "agree", "disagree", "nextest wall", "isotest wall", "ratio")
    width = max([len(header[0])] + [len(row[0]) for row in rows])
    print(f"{header[0]:{width}}  {header[1]:>5}  {header[2]:>5}  {header[3]:>8}  {header[4]:>12}  {header[5]:>12}  {header[6]:>6}")
    for label, tests, agree, disagree, n, i, ratio in rows:
        print(
            f"{label:{width}}  {tests:>5}  {agree:>5}  {disagree:>8}  {seconds(n):>12}"
            f"  {seconds(i):>12}  {ratio:>5.2f}x"
        )
    print()
    print("outcomes:")
    print("\n".join(notes))
    print()
    if disagreements:
        print(f"disagreements ({len(disagreements)}):")
        for label, (binary_id, name), n, i in disagreements:
            print(f"  {label}  {binary_id}  {name}: nextest {n}, isotest {i}")
    else:
        print("disagreements: none")
    for warning in warnings:
        print(f"warning: {warning}")


# nextest's closing line of a stress run, e.g. "Summary [   1.159s] 200/200 stress run
# iterations: 153 passed, 47 failed" (0.9.143; outcomes with no count are left out).
STRESS_SUMMARY = re.compile(
    r"^\s+Summary \[\s*[0-9.]+s\] (\d+)/(\d+) stress run iterations: (.*)$", re.MULTILINE
)
# Both runners' opening line, e.g. "Starting 1 test across 1 binary (3 skipped)".
STARTING = re.compile(r"^\s+Starting (\d+) tests? across", re.MULTILINE)


def nextest_stress_counts(log):
    """nextest's own count of the iterations and their outcomes, from its closing line."""
    text = Path(log).read_text(errors="replace")
    summary = STRESS_SUMMARY.findall(text)
    if not summary:
        return None
    done, requested, outcomes = summary[-1]
    counts = {}
    for part in outcomes.split(", "):
        number, _, outcome = part.strip().partition(" ")
        if number.isdigit():
            counts[outcome] = int(number)
    started = STARTING.findall(text)
    return {
        "runs": int(done),
        "requested": int(requested),
        "failures": int(done) - counts.get("passed", 0),
        "outcomes": counts,
        "tests": int(started[0]) if started else None,
    }


def isotest_stress_counts(path):
    """isotest's own count, from its JSON report: tests[0].stress."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    tests = report.get("tests", [])
    stress = tests[0].get("stress") if tests else None
    if not stress:
        return None
    return {
        "runs": stress["runs"],
        "failures": stress["failures"],
        "tests": len(tests),
        "cancelled": report.get("cancelled", False),
    }


def fraction(counts):
    if counts is None:
        return "?"
    rate = f" ({counts['failures'] / counts['runs']:.1%})" if counts["runs"] else ""
    return f"{counts['failures']}/{counts['runs']}{rate}"


def report_stress(timing_path, count):
    timing = json.loads(Path(timing_path).read_text())
    cases = {case["label"]: case for case in timing["cases"]}
    stats = {label: case_stats(case) for label, case in cases.items()}
    nextest, isotest = stats["nextest"], stats["isotest"]
    # isotest writes one report per run: the --report-json argument, with {run} filled in.
    argv = cases["isotest"]["argv"]
    report = argv[argv.index("--report-json") + 1]
    counts = {
        "nextest": [nextest_stress_counts(run["log"]) for run in cases["nextest"]["runs"]],
        "isotest": [isotest_stress_counts(report.replace("{run}", run["run"])) for run in cases["isotest"]["runs"]],
    }

    print(machine_line())
    print(
        f"load average {timing['load_before']} before the timed runs,"
        f" {timing.get('load_after', 'unknown')} after (1, 5, 15 min)"
    )
    print(
        f"N = {timing['rounds']} rounds (after {timing['warmup']} warm-up round), each runner"
        " once per round, alternating which goes first"
    )
    print()
    for case in timing["cases"]:
        print(f"  {case['label']:8} {' '.join(case['argv'])}")
    print()
    print(
        f"{'runner':8}  {'median':>8}  {'min':>8}  {'max':>8}  {'own clock':>10}"
        f"  {'per run':>8}  {'exit':>7}"
    )
    for label in ("nextest", "isotest"):
        s = stats[label]
        per_run = s["median"] / count * 1e3
        exits = ",".join(map(str, s["statuses"]))
        print(
            f"{label:8}  {seconds(s['median']):>8}  {seconds(s['min']):>8}"
            f"  {seconds(s['max']):>8}  {seconds(s['own_clock']):>10}  {per_run:>6.2f}ms  {exits:>7}"
        )
    ratio = isotest["median"] / nextest["median"]
    print()
    print(
        f"isotest/nextest = {ratio:.2f}x (goal: at most 1.00x, {'met' if ratio <= 1.0 else 'not met'})"
    )
    print()
    print("failures/runs each runner counted itself (nextest: its Summary line; isotest: its")
    print("report's tests[0].stress):")
    print(f"{'round':>5}  {'nextest':>16}  {'isotest':>16}")
    for index in range(timing["rounds"]):
        print(f"{index + 1:>5}  {fraction(counts['nextest'][index]):>16}  {fraction(counts['isotest'][index]):>16}")
    totals = {}
    for label, runs in counts.items():
        known = [c for c in runs if c is not None]
        totals[label] = {
            "failures": sum(c["failures"] for c in known),
            "runs": sum(c["runs"] for c in known),
        }
    print(f"{'all':>5}  {fraction(totals['nextest']):>16}  {fraction(totals['isotest']):>16}")

    warnings = timing_warnings("", timing, stats, statuses=False)
    for label, runs in counts.items():
        for index, c in enumerate(runs, 1):
            if c is None:
                warnings.append(f"{label} round {index}: no count found (see its log)")
                continue
            if c["runs"] != count:
                warnings.append(f"{label} round {index}: {c['runs']} runs, not {count}")
            if c["tests"] != 1:
                warnings.append(f"{label} round {index}: {c['tests']} tests selected, not 1")
            if c.get("cancelled"):
                warnings.append(f"{label} round {index}: the run was cancelled")
    # nextest 0.9.143 under --stress-count --no-fail-fast exits with the status of its last
    # iteration only; said here so that its 0 is not read as "nothing failed".
    for run, c in zip(cases["nextest"]["runs"], counts["nextest"]):
        if c is not None and c["failures"] and run["status"] == 0:
            print()
            print(
                "note: nextest exited 0 in rounds where iterations failed: its exit status"
                " follows the last iteration only, so the counts above come from its Summary line"
            )
            break
    for warning in warnings:
        print(f"warning: {warning}")


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return
    command, args = argv[1], argv[2:]
    if command == "generate" and len(args) == 2:
        generate(args[0], int(args[1]))
    elif command == "lock-checksum" and len(args) == 3:
        lock_checksum(*args)
    elif command == "time":
        time_cases(args)
    elif command == "report-trivial" and len(args) == 2:
        report_trivial(args[0], int(args[1]))
    elif command == "report-crates" and args:
        report_crates(args)
    elif command == "report-stress" and len(args) == 2:
        report_stress(args[0], int(args[1]))
    else:
        fail(f"bad arguments: {' '.join(argv[1:])} (see --help)")


if __name__ == "__main__":
    main(sys.argv)
