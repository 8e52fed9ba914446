//! Did the requested test run and pass? Judged from the harness's own protocol lines in
//! their own positions, never from look-alikes a test may print: the header is the first
//! line, the requested test's status line the last one naming it before the result, and
//! the result the last line.
//!
//! With `--nocapture` a test's own output lands around its status line: libtest prints
//! `test NAME ... ` when the test starts and the result word (`ok`) when it ends, so
//! what the test prints meanwhile comes between the two, and a test that prints without
//! a final newline shares its line with either.

/// Why an exit-0 run does not count as a pass.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotProven {
    #[error(
        "the binary printed nothing when asked to run `{0}`: a libtest harness prints `running 1 test`, the test's status and a result, so its harness ignored the request"
    )]
    Silent(String),
    #[error(
        "the binary's output does not start with libtest's `running N tests` header, so whether `{0}` ran cannot be told; its harness does not speak libtest's protocol"
    )]
    NoHeader(String),
    #[error(
        "the binary listed `{0}` but ran no test when asked for it by exact name: its harness does not honour `--exact`"
    )]
    RanNothing(String),
    #[error(
        "the binary's output does not end with libtest's `test result:` line, so `{0}` did not finish as its harness reports it"
    )]
    NoResult(String),
    #[error("the harness printed no `test {0} ... ok` before its result")]
    NoStatus(String),
}

/// For a run that exited 0: `Ok` only when the protocol shows `name` ran and passed.
pub fn ran_and_passed(stdout: &str, name: &str) -> Result<(), NotProven> {
    let lines: Vec<&str> = stdout
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return Err(NotProven::Silent(name.into()));
    };
    let count = header_count(first).ok_or_else(|| NotProven::NoHeader(name.into()))?;
    if count == 0 {
        return Err(NotProven::RanNothing(name.into()));
    }
    if lines.len() < 2 || !last.starts_with("test result: ") {
        return Err(NotProven::NoResult(name.into()));
    }
    // libtest marks a `#[should_panic]` test in its status line.
    let prefixes = [
        format!("test {name} ... "),
        format!("test {name} - should panic ... "),
    ];
    let body = &lines[1..lines.len() - 1];
    let status = body.iter().enumerate().rev().find_map(|(at, line)| {
        prefixes.iter().find_map(|prefix| {
            line.rfind(prefix.as_str())
                .map(|start| (at, &line[start + prefix.len()..]))
        })
    });
    // The result word ends the status line, or, after output the test printed while it
    // ran, the last line before the result.
    let word = match status {
        Some((at, rest)) if at + 1 == body.len() => rest,
        Some(_) => body[body.len() - 1],
        None => return Err(NotProven::NoStatus(name.into())),
    };
    if word.ends_with("ok") && last.starts_with("test result: ok.") {
        Ok(())
    } else {
        Err(NotProven::NoStatus(name.into()))
    }
}

/// `running 3 tests` → 3.
fn header_count(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("running ")?;
    let (number, word) = rest.split_once(' ')?;
    matches!(word, "test" | "tests")
        .then(|| number.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "\nrunning 1 test\ntest a ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out; finished in 0.00s\n\n";

    #[test]
    fn a_real_pass_passes() {
        assert_eq!(ran_and_passed(PASS, "a"), Ok(()));
        let shared_line =
            "\nrunning 1 test\nno newlinetest a ... ok\n\ntest result: ok. 1 passed\n";
        assert_eq!(ran_and_passed(shared_line, "a"), Ok(()));
        let should_panic =
            "\nrunning 1 test\ntest sp - should panic ... ok\n\ntest result: ok. 1 passed\n";
        assert_eq!(ran_and_passed(should_panic, "sp"), Ok(()));
        let printed_while_running = "\nrunning 1 test\ntest a ... CHAOS cpus=1\nCHAOS uptime_s=9\nok\n\ntest result: ok. 1 passed\n";
        assert_eq!(ran_and_passed(printed_while_running, "a"), Ok(()));
        let no_final_newline =
            "\nrunning 1 test\ntest a ... one\ntwook\n\ntest result: ok. 1 passed\n";
        assert_eq!(ran_and_passed(no_final_newline, "a"), Ok(()));
    }

    #[test]
    fn look_alikes_in_the_test_output_change_nothing() {
        let fooled = "\nrunning 1 test\nrunning 0 tests\ntest x ... FAILED\ntest result: FAILED. 0 passed\ntest a ... ok\n\ntest result: ok. 1 passed; 0 failed\n";
        assert_eq!(ran_and_passed(fooled, "a"), Ok(()));
        let faked_ok = "\nrunning 1 test\ntest a ... ok\ntest result: ok. 1 passed\ntest a ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed\n";
        assert!(ran_and_passed(faked_ok, "a").is_err());
    }

    #[test]
    fn silence_and_empty_runs_do_not_pass() {
        assert_eq!(ran_and_passed("", "a"), Err(NotProven::Silent("a".into())));
        assert_eq!(
            ran_and_passed("\nrunning 0 tests\n\ntest result: ok. 0 passed\n", "a"),
            Err(NotProven::RanNothing("a".into()))
        );
        assert_eq!(
            ran_and_passed("hello\n", "a"),
            Err(NotProven::NoHeader("a".into()))
        );
        assert_eq!(
            ran_and_passed("\nrunning 1 test\ntest a ... ok\n", "a"),
            Err(NotProven::NoResult("a".into()))
        );
        assert_eq!(
            ran_and_passed(
                "\nrunning 1 test\ntest b ... ok\n\ntest result: ok. 1 passed\n",
                "a"
            ),
            Err(NotProven::NoStatus("a".into()))
        );
    }
}
