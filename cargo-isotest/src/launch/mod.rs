//! Where sandboxes are created. Not a stage of the pipeline but the layer under it:
//! discover lists tests here, the runner runs them here, and `exec`, `replay` and `shell`
//! run one spec here. It knows specs and outcomes, nothing about tests or cargo.
//!
//! A sandbox must be created from a single-threaded process (namespaces are set up by a
//! fork), and the runner is multi-threaded; so captured runs go to helpers, fresh
//! single-threaded images of this binary ([`helper`]), driven by the [`pool`].

pub mod foreground;
pub mod helper;
pub mod interrupt;
pub mod pool;
