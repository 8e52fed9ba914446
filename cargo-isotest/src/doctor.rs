//! `cargo isotest doctor`, and the diagnosis printed when a sandbox cannot be created.

use clap::Args;
use isotest_runtime::Error;

#[derive(Args, Debug)]
pub struct DoctorArgs {}

pub fn run(_args: DoctorArgs) -> i32 {
    0
}

pub fn explain_failure(_error: &Error) {}
