//! Exit codes of cargo isotest itself, documented in the book's "Exit codes" chapter.
//! `exec` otherwise exits with the program's own status, as shells do.
//! A [`Failure`] carries one of them up to the command that prints it.

/// The command line or a configuration is wrong (clap also uses 2).
pub const USAGE: i32 = 2;
/// `run`: the filters selected no test (with `no-tests = "fail"`, the default), as nextest.
pub const NO_TESTS: i32 = 4;
/// `run`: the tests ran, and at least one failed or timed out.
pub const TESTS_FAILED: i32 = 100;
/// `run`, `list`: cargo could not build the tests.
pub const BUILD_FAILED: i32 = 101;
/// `run`, `list`: a test binary's list of tests could not be obtained or read.
pub const LIST_FAILED: i32 = 104;
/// `run`, `list`: something else the run needs failed (starting helpers, writing reports).
pub const SETUP_FAILED: i32 = 96;
/// `exec`: the program did not finish before its timeout.
pub const TIMED_OUT: i32 = 124;
/// No sandbox could be created on this host; doctor's diagnosis was printed.
pub const NO_SANDBOX: i32 = 125;
/// `exec`: the program was found but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// `exec`: the program was not found in the sandbox.
pub const NOT_FOUND: i32 = 127;
/// `run`: cancelled by Ctrl-C (or SIGTERM, SIGHUP); the partial report was written.
pub const INTERRUPTED: i32 = 130;

/// A failure of a command itself, with the exit code that says which kind.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            message: message.to_string(),
        }
    }

    /// Says what failed and returns the exit code.
    pub fn report(self) -> i32 {
        anstream::eprintln!("error: {}", self.message);
        self.code
    }
}
