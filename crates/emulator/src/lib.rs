//! Runs cranelift-exn code for aarch64, riscv64, s390x and x86-64 in
//! unicorn-engine 2.1.5 (GPL-2.0, hence a crate of its own).
//!
//! [`EmulatedMachine`] implements [`cranelift_exn::machine::Machine`]: it
//! allocates and installs code, calls entry trampolines, dispatches calls to
//! host-function addresses to a [`cranelift_exn::machine::HostServices`], and
//! turns every emulator fault, runaway loop and host error into an
//! [`cranelift_exn::Error`]. [`EmulatedMemory`] gives the unwinder and host
//! services word access to the emulated memory in the target's byte order.
//!
//! CPU models (each chosen as the most capable unicorn 2.1.5 offers; details
//! in the per-architecture files under `src/arch/`):
//!
//! | arch | unicorn model | set-up before running |
//! |---|---|---|
//! | x86_64 | Haswell (SSE4.2, POPCNT, LZCNT, BMI1/2; no AVX in TCG) | none |
//! | aarch64 | max | `CPACR_EL1 |= 0x300000` (FP/SIMD on) |
//! | riscv64 | any (RV64IMAFDC) | `mstatus |= 0x6000` (FS on) |
//! | s390x | gen15a (z15) | `CR0 |= 0x60000` (AFP registers, vector) |

mod arch;
mod core;
mod machine;
mod memory;

pub use machine::{DEFAULT_INSTRUCTION_LIMIT, EmulatedMachine, Layout};
pub use memory::EmulatedMemory;
