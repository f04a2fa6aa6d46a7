//! Cranelift filetests outside the Cranelift repository: the file format,
//! test kinds and verdicts of upstream's `clif-util test`, plus `test run`
//! executed on every target (natively or emulated, through a
//! [`run::MachineProvider`]).
//!
//! [`runner::collect`] finds files (each once, unreadable paths reported in
//! place); [`runner::run_files`] runs them in parallel in this process;
//! [`runone::run_file`] runs one, [`runone::run_part`] a part of one (its
//! `test run` targets apart, for finer scheduling; `clif-exn test` runs
//! parts in supervised worker processes); [`kinds::new_subtest`] maps a
//! `test` line to its [`subtest::SubTest`].

pub mod alias_analysis;
pub mod bless;
pub mod cat;
pub mod compile;
pub mod domtree;
pub mod inline;
pub mod interpret;
pub mod kinds;
pub mod optimize;
pub mod panics;
pub mod per_function;
pub mod print_cfg;
pub mod run;
pub mod runner;
pub mod runone;
pub mod subtest;
pub mod verifier;

#[cfg(test)]
mod test_support;
