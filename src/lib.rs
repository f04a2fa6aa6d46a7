//! Link, load, run and unwind Cranelift code with exceptions on x86_64,
//! aarch64, riscv64 and s390x.
//!
//! The data path: CLIF ([`compile`]) → per-function artifacts → [`link`]
//! (pure: bytes, symbols and an [`exception_table`] for a base address) → a
//! [`machine::Machine`] (the host CPU, [`native::NativeMachine`], or an
//! emulator from the separate emulator crate) → calls through generated
//! [`trampoline`]s. Throws go through each ISA's throw stub to the
//! [`unwind`]er and back through its resume stub.
//!
//! Embedders use [`JitModule`], which implements
//! `cranelift_module::Module` ([`module::jit`]), or the [`ModuleBuilder`] layer
//! over it.

pub mod abi;
pub mod clif_text;
pub mod compile;
pub mod disassemble;
pub mod error;
pub mod exception_table;
pub mod host;
pub mod interrupt;
pub mod isa;
pub mod link;
pub mod machine;
pub mod memory;
pub mod module;
pub mod native;

pub mod trampoline;
pub mod typed;
pub mod unwind;
pub mod values;

pub use error::Error;
pub use host::{HostResult, HostThrow};
pub use interrupt::InterruptHandle;
pub use module::{BacktraceFrame, CallError, JitModule, Module, ModuleBuilder, Outcome};
pub use typed::TypedFunc;

/// Re-exported Cranelift crates, at the exact versions this crate uses.
pub use cranelift_codegen as codegen;
pub use cranelift_frontend as frontend;
pub use cranelift_module;
pub use cranelift_reader as reader;
