//! Random exception programs for differential testing of cranelift-exn.
//!
//! A [`Program`] is a small description — a call graph, per-function
//! behaviour and the host functions it calls — generated deterministically
//! from a seed or from fuzzer bytes ([`program::generate`]). It is printed
//! as CLIF ([`clif::print`]) and executed, with its host functions, on any
//! [`Machine`](cranelift_exn::machine::Machine) ([`harness`]); the
//! [`oracle`] computes the expected outcome from the
//! description alone, without Cranelift. On a mismatch, [`minimize`] shrinks
//! the program while the mismatch persists, and [`clif::run_test`] writes it
//! as a standalone `test run` file.

pub mod clif;
pub mod harness;
pub mod minimize;
pub mod oracle;
pub mod program;
pub mod sweep;

pub use harness::Mismatch;
pub use program::{Ending, Program};
