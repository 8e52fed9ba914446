#!/usr/bin/env python3
"""The compatibility corpus: published crates' own tests under `cargo nextest run` and
under `cargo isotest run`, outcomes compared test by test. compat/run is the entry point
(it builds cargo-isotest and puts it first on PATH); see compat/README.md.

Subcommands:

  list [SELECTION]              print the selected crates
  run --jobs N [SELECTION]      fetch, verify, unpack, build and run the selected crates,
                                print the table, exit 1 on an unexpected disagreement

SELECTION: --quick, --style STYLE (repeatable), and crate names (NAME or NAME@VERSION);
nothing selects the whole corpus.

The fetching, the checksum check and the outcome parsing follow bench/run_overhead.py
(copied, not imported, so that changes to the benchmark cannot change this guard).
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "crates.toml"
DISAGREEMENTS = HERE / "disagreements.txt"
LOCKS = HERE / "locks"

STYLES = (
    "many-tiny",
    "temp-files",
    "own-binary",
    "loopback-server",
    "syscall-heavy",
    "pty",
    "snapshot",
    "threads-timing",
    "ids",
    "writable-source",
    "host-service",
)
OUTCOMES = ("passed", "failed", "ignored", "timed-out", "not-run")

# A test still running after this is timed out, by both runners alike: nextest through
# the slow-timeout written into the crate's .config/nextest.toml, isotest through
# --timeout. Without it one hanging test would hang the whole corpus.
TEST_TIMEOUT_S = 120
NEXTEST_SLOW_PERIOD_S = 60  # nextest terminates after 2 periods = TEST_TIMEOUT_S
# A whole runner invocation (build check, listing, every test) that takes longer than
# this is killed and the crate reported as an error.
RUNNER_WATCHDOG_S = 30 * 60
# Exit statuses that mean "the runner did its job": 0, and 100 when a test failed (both
# nextest and isotest use 100 for that).
RUNNER_OK = (0, 100)
COMPILING = re.compile(r"^\s+Compiling ", re.MULTILINE)

NEXTEST_CONFIG = f"""\
# Written by compat/run (cargo-isotest's compatibility corpus); not part of the crate.
[profile.default]
slow-timeout = {{ period = "{NEXTEST_SLOW_PERIOD_S}s", terminate-after = {TEST_TIMEOUT_S // NEXTEST_SLOW_PERIOD_S} }}

[profile.default.junit]
path = "junit.xml"
"""


def say(message):
    print(f"compat: {message}", file=sys.stderr, flush=True)


class Failure(Exception):
    """A crate could not be run (fetch, checksum, build, runner error): not a disagreement."""


# --- the corpus and the list of known disagreements -------------------------------------


def load_corpus():
    with open(CORPUS, "rb") as file:
        data = tomllib.load(file)
    crates, seen = [], set()
    for entry in data.get("crate", []):
        required = ("name", "version", "style") + (() if "path" in entry else ("sha256",))
        for field in required:
            if not isinstance(entry.get(field), str) or not entry[field]:
                sys.exit(f"{CORPUS}: an entry lacks `{field}`: {entry}")
        if entry["style"] not in STYLES:
            sys.exit(f"{CORPUS}: {entry['name']}: unknown style {entry['style']!r} (one of {', '.join(STYLES)})")
        if "path" in entry and not (HERE / entry["path"] / "Cargo.toml").is_file():
            sys.exit(f"{CORPUS}: {entry['name']}: {entry['path']} is not a crate under compat/")
        if "path" not in entry and not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]):
            sys.exit(f"{CORPUS}: {entry['name']}: sha256 must be 64 lowercase hex digits")
        if entry.get("server") not in (None, "http"):
            sys.exit(f"{CORPUS}: {entry['name']}: server must be \"http\"")
        entry.setdefault("isotest_args", [])
        entry.setdefault("expect_writes", [])
        entry.setdefault("args", [])
        entry.setdefault("skip", [])
        entry.setdefault("update", [])
        for test in entry["skip"]:
            if not re.fullmatch(r"[A-Za-z0-9_:]+", test):
                sys.exit(f"{CORPUS}: {entry['name']}: cannot skip {test!r}: only names of letters, digits, _ and ::")
        for spec in entry["update"]:
            if not re.fullmatch(r"[A-Za-z0-9_-]+@[0-9][^@\s]*", spec):
                sys.exit(f"{CORPUS}: {entry['name']}: update takes PACKAGE@VERSION, not {spec!r}")
        entry.setdefault("quick", False)
        entry.setdefault("covers", "")
        entry["id"] = f"{entry['name']}@{entry['version']}"
        entry["dir_name"] = f"{entry['name']}-{entry['version']}"
        if entry["name"] in seen:
            sys.exit(f"{CORPUS}: {entry['name']} is listed twice")
        seen.add(entry["name"])
        crates.append(entry)
    return crates


def select(crates, quick, styles, names):
    chosen = []
    for name in names:
        matches = [c for c in crates if name in (c["name"], c["id"])]
        if not matches:
            known = ", ".join(c["id"] for c in crates)
            print(f"compat: {name} is not in {CORPUS.relative_to(ROOT)} (it has {known})", file=sys.stderr)
            sys.exit(2)
        chosen += matches
    for style in styles:
        if style not in STYLES:
            print(f"compat: unknown style {style!r} (one of {', '.join(STYLES)})", file=sys.stderr)
            sys.exit(2)
        chosen += [c for c in crates if c["style"] == style]
    if quick:
        chosen += [c for c in crates if c["quick"]]
    if not (names or styles or quick):
        chosen = list(crates)
    unique = []
    for crate in chosen:
        if crate not in unique:
            unique.append(crate)
    return unique


def load_disagreements():
    """`<crate>@<ver> <binary_id> <test name> — <reason>`, one a line; `#` starts a comment."""
    known = {}
    if not DISAGREEMENTS.exists():
        return known
    for number, line in enumerate(DISAGREEMENTS.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        head, dash, reason = line.partition(" — ")
        fields = head.split()
        if not dash or len(fields) != 3 or "@" not in fields[0] or not reason.strip():
            sys.exit(
                f"{DISAGREEMENTS}:{number}: expected `<crate>@<ver> <binary_id> <test name> — <reason>`"
                f" (with an em dash), got: {line}"
            )
        known[tuple(fields)] = reason.strip()
    return known


# --- fetching, verifying, unpacking ------------------------------------------------------


def run_logged(argv, cwd, log, timeout=None, env=None):
    """Runs a command with its output in a log file; returns (status, wall seconds)."""
    with open(log, "wb") as output:
        start = time.monotonic()
        process = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Its own session: the runner and everything it started, and nothing else.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise Failure(f"`{' '.join(argv)}` still ran after {timeout}s and was killed; see {log}")
        return status, time.monotonic() - start


def tail(path, lines=25):
    text = Path(path).read_text(errors="replace").rstrip().splitlines()
    return "\n".join("    " + line for line in text[-lines:])


def lock_checksum(lockfile, name, version):
    with open(lockfile, "rb") as file:
        lock = tomllib.load(file)
    for package in lock.get("package", []):
        if package.get("name") == name and package.get("version") == version:
            if not package.get("checksum"):
                raise Failure(f"{lockfile}: {name} {version} has no checksum (not from a registry?)")
            return package["checksum"]
    raise Failure(f"{lockfile}: no package {name} {version}")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_local(crate, work):
    """A crate of this repository (compat/fixtures/...): copied afresh over its last copy,
    whose target/ is kept so that a second run does not rebuild."""
    directory = work / crate["dir_name"]
    source = HERE / crate["path"]
    for entry in directory.iterdir() if directory.exists() else []:
        if entry.name != "target":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    shutil.copytree(source, directory, dirs_exist_ok=True, ignore=shutil.ignore_patterns("target"))
    (directory / ".config").mkdir(exist_ok=True)
    (directory / ".config/nextest.toml").write_text(NEXTEST_CONFIG)
    return directory


class HostServer:
    """An HTTP server on the host's loopback for the crate's tests (Python's http.server,
    serving one token), started before both runners and stopped after them."""

    def __init__(self, work):
        self.root = Path(tempfile.mkdtemp(dir=work, prefix="server-"))
        self.token = os.urandom(8).hex()
        (self.root / "token.txt").write_text(self.token + "\n")
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{probe.getsockname()[1]}"
        probe.close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(self.root),
             self.address.rsplit(":", 1)[1]],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(self.address.rsplit(":", 1)[1])), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise Failure("the host's HTTP server for the crate did not start")
                time.sleep(0.1)

    def env(self):
        return {**os.environ, "COMPAT_SERVER": self.address, "COMPAT_TOKEN": self.token}

    def stop(self):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def prepare(crate, work, logs):
    """Fetches the crate with cargo, checks its archive against crates.toml and cargo's
    Cargo.lock, unpacks that archive as a standalone workspace; returns its directory."""
    name, version, expected = crate["name"], crate["version"], crate["sha256"]
    fetch = work / "fetch" / crate["dir_name"]
    (fetch / "src").mkdir(parents=True, exist_ok=True)
    (fetch / "src/lib.rs").write_text("")
    # Its own [workspace], or cargo would take it for a member of this repository's.
    (fetch / "Cargo.toml").write_text(
        f'[package]\nname = "compat-fetch"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
        f'[dependencies]\n{name} = "={version}"\n\n[workspace]\n'
    )
    status, _ = run_logged(["cargo", "fetch"], fetch, logs / "fetch.log")
    if status != 0:
        raise Failure(f"cargo fetch of {crate['id']} failed:\n{tail(logs / 'fetch.log')}")
    locked = lock_checksum(fetch / "Cargo.lock", name, version)
    if locked != expected:
        raise Failure(
            f"crates.io's checksum of {crate['id']} is {locked}, crates.toml pins {expected}:"
            " the published archive is not the one this corpus was made with"
        )
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    archive = None
    for candidate in sorted(cargo_home.glob(f"registry/cache/*/{crate['dir_name']}.crate")):
        if sha256_of(candidate) == expected:
            archive = candidate
            break
        say(f"{candidate} does not match the pinned sha256 {expected}")
    if archive is None:
        raise Failure(f"no {crate['dir_name']}.crate under {cargo_home}/registry/cache has sha256 {expected}")

    # The verified archive itself is unpacked, not cargo's unpacked copy of it, so what
    # runs is what was checked. It is kept between runs (with its target/, so that a
    # second run does not rebuild) while the checksum stays the same.
    directory = work / crate["dir_name"]
    stamp = directory / ".compat-source"
    if not stamp.exists() or stamp.read_text().strip() != expected:
        shutil.rmtree(directory, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            with tarfile.open(archive) as tar:
                tar.extractall(scratch, filter="data")
            unpacked = Path(scratch) / crate["dir_name"]
            if not unpacked.is_dir():
                raise Failure(f"{archive} did not unpack into {crate['dir_name']}/")
            unpacked.rename(directory)
        manifest = directory / "Cargo.toml"
        text = manifest.read_text()
        if not re.search(r"^\[workspace\]", text, re.MULTILINE):
            manifest.write_text(text + "\n# Added by compat/run: a workspace of its own.\n[workspace]\n")
        if (directory / ".config/nextest.toml").exists():
            raise Failure(
                f"{crate['id']} ships a .config/nextest.toml; its settings would change what nextest does"
            )
        (directory / ".config").mkdir(exist_ok=True)
        (directory / ".config/nextest.toml").write_text(NEXTEST_CONFIG)
        stamp.write_text(expected + "\n")

    # A published crate may ship its lockfile. Otherwise a pinned one from compat/locks/
    # is used if there is one, else cargo resolves one now (and the run says so).
    lock = directory / "Cargo.lock"
    pinned = LOCKS / f"{crate['dir_name']}.lock"
    if not lock.exists():
        if pinned.exists():
            shutil.copyfile(pinned, lock)
        else:
            status, _ = run_logged(["cargo", "generate-lockfile"], directory, logs / "lockfile.log")
            if status != 0:
                raise Failure(f"cargo generate-lockfile failed:\n{tail(logs / 'lockfile.log')}")
            say(f"{crate['id']} ships no Cargo.lock; resolved one now (pin it as {pinned.relative_to(ROOT)})")
    # Dependencies that the lockfile pins at a version today's rustc cannot build any more
    # are moved, each to an exact version named in crates.toml.
    for spec in crate["update"]:
        package, _, precise = spec.partition("@")
        with open(lock, "rb") as file:
            versions = [p["version"] for p in tomllib.load(file).get("package", []) if p["name"] == package]
        if versions == [precise]:
            continue
        status, _ = run_logged(
            ["cargo", "update", "-p", package, "--precise", precise], directory, logs / "update.log"
        )
        if status != 0:
            raise Failure(f"cargo update -p {package} --precise {precise} failed:\n{tail(logs / 'update.log')}")
    return directory


# --- outcomes ------------------------------------------------------------------------------


def nextest_outcomes(results):
    """nextest's JUnit leaves out the tests it did not run, so its list fills them in.
    Tests that the filters (--skip) leave out are not counted, as in isotest's report."""
    outcomes = {}
    listing = json.loads((results / "nextest-list.json").read_text())
    for binary_id, suite in listing["rust-suites"].items():
        for name, case in suite["testcases"].items():
            match = case.get("filter-match", {"status": "matches"})
            if match.get("status") == "mismatch" and match.get("reason") != "ignored":
                continue
            outcomes[(binary_id, name)] = "ignored" if case["ignored"] else "not-run"
    junit = results / "nextest-junit.xml"
    details = {}
    for suite in ElementTree.parse(junit).getroot().iter("testsuite"):
        for case in suite.iter("testcase"):
            key = (case.get("classname") or suite.get("name"), case.get("name"))
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is not None:
                kind = (problem.get("type") or "").lower()
                outcomes[key] = "timed-out" if "timeout" in kind else "failed"
                out = case.findtext("system-out") or ""
                err = case.findtext("system-err") or ""
                details[key] = (problem.get("message") or "", out, err)
            elif case.find("skipped") is not None:
                outcomes[key] = "ignored"
            else:
                outcomes[key] = "passed"
    return outcomes, details


def isotest_outcomes(results):
    report = json.loads((results / "isotest-report.json").read_text())
    tests = {(test["binary_id"], test["name"]): test for test in report["tests"]}
    return {key: test["outcome"] for key, test in tests.items()}, tests


def count_line(outcomes):
    counts = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    order = list(OUTCOMES)
    return ", ".join(f"{counts[o]} {o}" for o in sorted(counts, key=lambda o: (order + [o]).index(o))) or "no tests"


# --- running one crate -----------------------------------------------------------------------


def run_crate(crate, jobs, work):
    results = work / "results" / crate["dir_name"]
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    row = {"crate": crate, "results": results}
    directory = prepare_local(crate, work) if "path" in crate else prepare(crate, work, results)
    args = list(crate["args"])
    # The same selection for both: isotest takes libtest's `--skip NAME --exact`, nextest
    # a filterset. (nextest 0.9.143 ignores `-- --skip NAME --exact`: with --exact it
    # still runs the test.)
    filters, expression = [], []
    for test in crate["skip"]:
        filters += ["--skip", test]
    if filters:
        filters.append("--exact")
        expression = ["-E", "not (" + " | ".join(f"test(={test})" for test in crate["skip"]) + ")"]

    say(f"{crate['id']}: building its tests")
    status, row["build"] = run_logged(["cargo", "test", "--no-run", *args], directory, results / "build.log")
    if status != 0:
        raise Failure(f"`cargo test --no-run` failed for {crate['id']}:\n{tail(results / 'build.log')}")
    listing = ["cargo", "nextest", "list", "--message-format", "json", *args, *expression]
    with open(results / "nextest-list.json", "wb") as out, open(results / "nextest-list.log", "wb") as err:
        status = subprocess.run(listing, cwd=directory, stdin=subprocess.DEVNULL, stdout=out, stderr=err).returncode
    if status != 0:
        raise Failure(f"`cargo nextest list` failed for {crate['id']}:\n{tail(results / 'nextest-list.log')}")

    junit = directory / "target/nextest/default/junit.xml"
    junit.unlink(missing_ok=True)
    nextest = ["cargo", "nextest", "run", "--no-fail-fast", "-j", str(jobs), *args, *expression]
    isotest = [
        "cargo", "isotest", "run", "--no-fail-fast", "-j", str(jobs), *args, *crate["isotest_args"],
        "--timeout", f"{TEST_TIMEOUT_S}s", "--report-json", str(results / "isotest-report.json"), *filters,
    ]
    server = HostServer(work) if crate.get("server") else None
    env = server.env() if server else None
    if server:
        isotest[3:3] = ["--forward", server.address, "--env", "COMPAT_SERVER", "--env", "COMPAT_TOKEN"]
    row["commands"] = {"nextest": nextest, "isotest": isotest}
    try:
        run_runners(crate, directory, results, row, (("nextest", nextest), ("isotest", isotest)), env)
    finally:
        if server:
            server.stop()
    if not junit.exists():
        raise Failure(f"nextest wrote no JUnit file at {junit}")
    shutil.copyfile(junit, results / "nextest-junit.xml")

    row["nextest_outcomes"], row["nextest_details"] = nextest_outcomes(results)
    row["isotest_outcomes"], row["isotest_tests"] = isotest_outcomes(results)
    check_writes(crate, directory, row)
    return row


def check_writes(crate, directory, row):
    """`expect_writes`: isotest's report lists each path as written by some test, and the
    checkout does not have it (nextest's own copy was removed before isotest ran)."""
    written = {
        change["path"]
        for test in row["isotest_tests"].values()
        for layer in test.get("writes", [])
        for change in layer["changes"]
    }
    for path in crate["expect_writes"]:
        if path not in written:
            raise Failure(f"isotest's report lists no write of {path} (it lists {sorted(written)})")
        if (directory / path).exists():
            raise Failure(f"{path} reached the checkout under isotest --writable-source")


def run_runners(crate, directory, results, row, runners, env):
    for label, argv in runners:
        if label == "isotest":
            # What nextest wrote into the tree must not be mistaken for isotest's.
            for path in crate["expect_writes"]:
                (directory / path).unlink(missing_ok=True)
        say(f"{crate['id']}: {' '.join(argv)}")
        log = results / f"{label}.log"
        status, row[label] = run_logged(argv, directory, log, timeout=RUNNER_WATCHDOG_S, env=env)
        if status not in RUNNER_OK:
            raise Failure(f"{label} exited with {status} for {crate['id']}:\n  {' '.join(argv)}\n{tail(log)}")
        if COMPILING.search(log.read_text(errors="replace")):
            row.setdefault("warnings", []).append(f"{label} recompiled something: its wall includes compiling")
        row[f"{label}_status"] = status


# --- the report ----------------------------------------------------------------------------


def seconds(value):
    return "-" if value is None else f"{value:.2f}s"


def short(text, lines):
    # A panic's message comes before its backtrace: keep the message, drop the frames.
    text, backtrace, _ = text.partition("\nstack backtrace:\n")
    text = text.rstrip().splitlines() + (["[backtrace trimmed]"] if backtrace else [])
    kept = text[-lines:]
    prefix = [f"      [... {len(text) - len(kept)} earlier lines]"] if len(text) > len(kept) else []
    return "\n".join(prefix + ["      " + line for line in kept])


def explain(row, key):
    """What each runner said about a test whose outcomes differ."""
    lines = []
    test = row["isotest_tests"].get(key)
    if test is not None and test["outcome"] not in ("passed", "ignored"):
        exit_ = test.get("exit")
        lines.append(f"    isotest: {test['outcome']}, exit {json.dumps(exit_)}")
        for field in ("error", "hint"):
            if test.get(field):
                lines.append(f"    isotest {field}: {test[field]}")
        for stream in ("stdout", "stderr"):
            if test.get(stream, "").strip():
                lines.append(f"    isotest {stream}:\n{short(test[stream], 15)}")
    detail = row["nextest_details"].get(key)
    if detail is not None:
        message, out, err = detail
        lines.append(f"    nextest: {message}")
        for stream, text in (("stdout", out), ("stderr", err)):
            if text.strip():
                lines.append(f"    nextest {stream}:\n{short(text, 15)}")
    return "\n".join(lines)


def report(rows, failures, known, verbose_limit):
    header = ("crate", "style", "tests", "agree", "disagree", "nextest wall", "isotest wall", "ratio", "build")
    table = []
    expected, unexpected, stale = [], [], []
    for row in rows:
        crate = row["crate"]
        nextest, isotest = row["nextest_outcomes"], row["isotest_outcomes"]
        keys = sorted(set(nextest) | set(isotest))
        differ = [key for key in keys if nextest.get(key) != isotest.get(key)]
        new = 0
        for key in differ:
            entry = (crate["id"], *key)
            record = (row, key, nextest.get(key, "absent"), isotest.get(key, "absent"))
            if entry in known:
                expected.append(record + (known[entry],))
            else:
                unexpected.append(record)
                new += 1
        for entry, reason in known.items():
            if entry[0] == crate["id"] and (entry[1], entry[2]) not in differ:
                stale.append((entry, reason))
        disagree = f"{len(differ)}" + (f" ({new} new)" if new else "")
        table.append((
            crate["dir_name"], crate["style"], str(len(keys)), str(len(keys) - len(differ)), disagree,
            seconds(row["nextest"]), seconds(row["isotest"]), f"{row['isotest'] / row['nextest']:.2f}x",
            seconds(row["build"]),
        ))
    for crate, _ in failures:
        table.append((crate["dir_name"], crate["style"], "-", "-", "error", "-", "-", "-", "-"))

    widths = [max(len(header[i]), *(len(line[i]) for line in table)) if table else len(header[i]) for i in range(len(header))]
    def line(cells):
        return "  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(cells))
    print(line(header))
    for cells in table:
        print(line(cells))
    print()
    if rows:
        print("outcomes:")
        for row in rows:
            print(
                f"  {row['crate']['dir_name']}: nextest {count_line(row['nextest_outcomes'])};"
                f" isotest {count_line(row['isotest_outcomes'])}"
            )
        print()
    if expected:
        print(f"known disagreements ({len(expected)}), listed in compat/disagreements.txt:")
        for row, (binary_id, name), n, i, reason in expected:
            print(f"  {row['crate']['id']}  {binary_id}  {name}: nextest {n}, isotest {i} — {reason}")
        print()
    if unexpected:
        print(f"UNEXPECTED disagreements ({len(unexpected)}), not in compat/disagreements.txt:")
        for index, (row, key, n, i) in enumerate(unexpected):
            print(f"  {row['crate']['id']}  {key[0]}  {key[1]}: nextest {n}, isotest {i}")
            if index < verbose_limit:
                detail = explain(row, key)
                if detail:
                    print(detail)
        if len(unexpected) > verbose_limit:
            print(f"  (details of the first {verbose_limit} only; every report is under target/compat/results/)")
        print()
    elif rows:
        print("unexpected disagreements: none")
        print()
    for entry, reason in stale:
        print(
            f"note: {' '.join(entry)} — {reason}: listed as a known disagreement, but the runners"
            " now agree on it (or neither reports such a test); remove the line"
        )
    for row in rows:
        for warning in row.get("warnings", []):
            print(f"warning: {row['crate']['id']}: {warning}")
    for crate, message in failures:
        print(f"ERROR: {crate['id']}: {message}")
        print()
    return not unexpected and not failures


def write_summary(rows, failures, path):
    summary = {"crates": [], "errors": [{"crate": c["id"], "error": m} for c, m in failures]}
    for row in rows:
        nextest, isotest = row["nextest_outcomes"], row["isotest_outcomes"]
        keys = sorted(set(nextest) | set(isotest))
        summary["crates"].append({
            "crate": row["crate"]["id"],
            "style": row["crate"]["style"],
            "build_s": row["build"],
            "nextest_s": row["nextest"],
            "isotest_s": row["isotest"],
            "tests": [
                {"binary_id": b, "name": n, "nextest": nextest.get((b, n), "absent"), "isotest": isotest.get((b, n), "absent")}
                for b, n in keys
            ],
        })
    path.write_text(json.dumps(summary, indent=2))


# --- main ----------------------------------------------------------------------------------


def parse_selection(args):
    quick, styles, names, rest = False, [], [], {}
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg == "--quick":
            quick = True
        elif arg == "--style" and args:
            styles.append(args.pop(0))
        elif arg in ("--jobs", "--work", "--details") and args:
            rest[arg[2:]] = args.pop(0)
        elif arg.startswith("-"):
            sys.exit(f"compat: unknown option {arg}")
        else:
            names.append(arg)
    return quick, styles, names, rest


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    command = argv[1]
    quick, styles, names, rest = parse_selection(argv[2:])
    corpus = load_corpus()
    crates = select(corpus, quick, styles, names)
    known = load_disagreements()
    ids = {crate["id"] for crate in corpus}
    for entry in known:
        if entry[0] not in ids:
            say(f"{DISAGREEMENTS.name}: {entry[0]} is not in {CORPUS.name} (another version?); its line never applies")
    if command == "list":
        width = max(len(c["id"]) for c in crates)
        for crate in crates:
            flags = " [quick]" if crate["quick"] else ""
            print(f"{crate['id']:{width}}  {crate['style']:15}  {crate['covers']}{flags}")
        return 0
    if command != "run" or "jobs" not in rest:
        sys.exit("compat: usage: compat.py run --jobs N [--work DIR] [--details N] [SELECTION]")
    jobs = int(rest["jobs"])
    # Published crates that #![deny(warnings)] stop building when a new rustc adds a lint
    # (wait-timeout 0.2.1 does); cargo already caps lints for dependencies, this caps
    # them for the crate under test too. All three cargo commands (the build and both
    # runners) see the same flags, so none of them rebuilds for the others.
    flags = os.environ.get("RUSTFLAGS", "")
    if "--cap-lints" not in flags:
        os.environ["RUSTFLAGS"] = (flags + " --cap-lints=warn").strip()
    work = Path(rest.get("work", ROOT / "target/compat")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    rows, failures = [], []
    for crate in crates:
        try:
            rows.append(run_crate(crate, jobs, work))
        except Failure as failure:
            say(f"{crate['id']}: {failure}")
            failures.append((crate, str(failure)))
    print()
    print(f"== compat: {len(crates)} crate(s), -j {jobs}, {time.monotonic() - start:.0f}s in all ==")
    ok = report(rows, failures, known, int(rest.get("details", 20)))
    write_summary(rows, failures, work / "results/summary.json")
    print(f"(logs and both runners' reports: {work / 'results'}/<crate>/)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
