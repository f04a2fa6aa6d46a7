//! Cranelift filetests outside the Cranelift repository.

pub mod bless;
pub mod subtest;
