//! Runs cranelift-exn code for aarch64, riscv64, s390x and x86-64 in a QEMU
//! user-mode process (`qemu-<arch>`, Debian's `qemu-user`), for the
//! instructions unicorn's older CPUs lack: RISC-V V and Zfh, s390x z15
//! facilities, the aarch64 `max` CPU.
//!
//! [`QemuMachine`] implements [`cranelift_exn::machine::Machine`] by writing
//! a minimal static ELF image (no libc), starting `qemu-<arch> -g <socket>`
//! on it and driving the stopped process through QEMU's GDB stub: memory
//! reads and writes, registers, breakpoints on the host-function slots and
//! on the return address of each call, continue, and stop replies. Host
//! functions run when the process stops at their breakpoint; `SIGSEGV`,
//! `SIGBUS`, `SIGILL` and `SIGFPE` stops become faults, delivered as traps
//! the way the unicorn machine delivers them. [`QemuMemory`] gives host
//! services the process's memory in its byte order. On riscv64 the 16-bit
//! Zcb instructions, which QEMU 7.2 stops at with `SIGILL`, are carried
//! out by the machine at those stops, with the library's
//! `cranelift_exn::isa::riscv64::zcb` semantics.
//!
//! Limits of QEMU 7.2's user-mode stub, and what they cost: it offers no
//! `qXfer:siginfo`, so a memory fault carries no data address (a fault with
//! the stack pointer in the stack's lowest page or below is taken for a stack
//! overflow); it has no `QStartNoAckMode`, so every packet is acknowledged
//! (a register or memory packet takes about 20 µs); it reads no Ctrl-C while
//! the target runs, so a timeout interrupts the process with `SIGINT`. A
//! continue up to the next stop costs far more than a packet: measured on a
//! loaded 2-core machine, a plain call takes about 0.7–1.5 ms, a packet about
//! 20 µs, starting a machine about 50 ms.
//!
//! QEMU runs as a separate program, so this crate (unlike the unicorn one)
//! links no GPL code.

#![warn(missing_docs)]

mod arch;
pub mod capabilities;
mod elf;
mod gdb;
mod machine;

pub use capabilities::unsupported_reason;
pub use machine::{QemuMachine, QemuMemory};
