//! Exit codes of cargo isotest itself, documented in the book's "Exit codes" chapter.
//! `exec` otherwise exits with the program's own status, as shells do.

/// The command line or a configuration is wrong (clap also uses 2).
pub const USAGE: i32 = 2;
/// `exec`: the program did not finish before its timeout.
pub const TIMED_OUT: i32 = 124;
/// No sandbox could be created on this host; doctor's diagnosis was printed.
pub const NO_SANDBOX: i32 = 125;
/// `exec`: the program was found but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// `exec`: the program was not found in the sandbox.
pub const NOT_FOUND: i32 = 127;
