//! Runs cranelift-exn code for aarch64, riscv64, s390x and x86-64 in
//! unicorn-engine 2.1.5 (GPL-2.0, hence a crate of its own).
//!
//! [`EmulatedMachine`] implements [`cranelift_exn::machine::Machine`]: it
//! allocates and installs code, calls entry trampolines, dispatches calls to
//! host-function addresses to a [`cranelift_exn::machine::HostServices`], and
//! turns every other emulator fault, runaway loop and host error into an
//! [`cranelift_exn::Error`]. [`EmulatedMemory`] gives the unwinder and host
//! services word access to the emulated memory in the target's byte order.
//!
//! CPU models and set-up (details, and how each was checked, in the
//! per-architecture files under `src/arch/`):
//!
//! | arch | unicorn model | set-up before running |
//! |---|---|---|
//! | x86_64 | Haswell: SSE4.2, POPCNT, LZCNT, BMI1/2 run; **not** AVX/FMA | `MXCSR = 0x1f80` |
//! | aarch64 | max | `CPACR_EL1 \|= 0x300000` (FP/SIMD on) |
//! | riscv64 | any (RV64IMAFDC) | `mstatus \|= 0x6000` (FS on) |
//! | s390x | gen15a (z15) | `CR0 \|= 0x60000` (AFP, vector), `PSWM \|= 0x1_8000_0000` (64-bit addressing), virtual TLB |
//!
//! unicorn 2.1.5 is QEMU 5.0's TCG. On s390x it lacks z14 instructions that
//! Cranelift emits by default (`MSGRKC`/`MSRKC`/`MGRK` for multiplies, the
//! vector-enhancements-1 float forms — `vf{a,s,m,d,sq,i}sb`, `vfce`/`vfch`,
//! `vfmin`/`vfmax` in every mode and their `w…` single-element forms —
//! `vbperm` and `vpopct` on wide lanes), and on riscv64 every Zba, Zbb, Zbs,
//! Zbkb and Zicond instruction; the machine carries those out itself from an
//! interrupt hook (`src/arch/s390x.rs`, `src/arch/s390x/vector.rs`,
//! `src/arch/riscv64/bitmanip.rs`).
//!
//! Instructions unicorn executes *wrongly*, without any exception, are found
//! when code is installed and carried out by the machine from a code hook on
//! exactly each of their addresses (hooks are replaced when code is
//! reinstalled, and the range's translations flushed, so that the hooks take
//! effect; other instructions run at full speed): on s390x the signed
//! add/subtract register forms whose overflow condition code is read
//! (QEMU 5 misses the overflow of `MIN + MIN` and `0 - MIN`), the
//! conversions to logical (`cl[fg][edx]br`, `vclgd`: a NaN gives 0, not all
//! ones) and `rnsbg`/`rosbg`/`rxsbg` with the test-only bit
//! (`src/arch/s390x/intercept.rs`); on aarch64 the LSE `ldsmax*`/`ldsmin*`,
//! which QEMU 5 compares unsigned on narrow values (`src/arch/aarch64.rs`);
//! on riscv64 the 16-bit Zcb instructions, which QEMU 5 runs as other
//! instructions (`src/arch/riscv64.rs`, with the library's
//! `cranelift_exn::isa::riscv64::zcb`; their unmapped or read-only accesses
//! are delivered as memory faults at their pc).
//! [`EmulatedMachine::intercepted`] lists the hooked addresses. What is
//! still mis-executed is found in compiled code by
//! [`capabilities::unsupported_code`], and target flags whose instructions
//! unicorn lacks by [`unsupported_reason`], so that runners skip them with a
//! reason.
//!
//! Faults in JIT code (trap instructions, unmapped accesses, a stack overflow
//! below the 8 MiB stack) that the call's services accept are delivered to
//! the entry trampoline's handler, as natively; a host function may call back
//! into JIT code (nested `emu_start`, registers saved and restored around it).

#![warn(missing_docs)]

mod arch;
pub mod capabilities;
mod core;
mod engine;
mod machine;
mod memory;

pub use capabilities::unsupported_reason;
pub use machine::{DEFAULT_INSTRUCTION_LIMIT, EmulatedMachine, Layout};
pub use memory::EmulatedMemory;

use cranelift_exn::Error;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::{Machine, MachineKind};
use cranelift_exn::native::NativeMachine;

/// A fresh machine of `kind` for `arch`: the host CPU ([`NativeMachine`],
/// an error unless `arch` is the host's) or unicorn ([`EmulatedMachine`]).
/// With [`MachineKind::for_arch`]: native if host, else emulated.
pub fn new_machine(arch: Arch, kind: MachineKind) -> Result<Box<dyn Machine>, Error> {
    match kind {
        MachineKind::Native if Arch::host() == Some(arch) => Ok(Box::new(NativeMachine::new()?)),
        MachineKind::Native => Err(Error::Machine(format!(
            "no native machine for {arch}: the host is {}",
            Arch::host().map_or("unsupported".to_string(), |a| a.to_string())
        ))),
        MachineKind::Emulated => Ok(Box::new(EmulatedMachine::new(arch)?)),
        MachineKind::Qemu => Err(Error::Machine(format!(
            "no QEMU machine for {arch} here: the unicorn emulator crate makes native and \
             emulated machines; QEMU's is cranelift-exn-qemu's QemuMachine"
        ))),
    }
}
