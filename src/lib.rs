//! Link, load, run and unwind Cranelift code with exceptions on x86_64,
//! aarch64, riscv64 and s390x.

pub mod compile;
pub mod error;
pub mod isa;
pub mod machine;
pub mod memory;

pub use error::Error;
