//! The 16-bit Zcb instructions on riscv64, which QEMU 7.2's CPUs lack (it
//! has no property to enable them; QEMU 8 has): carried out over the GDB
//! stub.
//!
//! QEMU 7.2 decodes every Zcb encoding as a reserved one: executing it
//! raises an illegal-instruction exception and the process stops with
//! `SIGILL`, the pc at the instruction (checked by `tests/zcb.rs`; unlike
//! QEMU 5 in unicorn, which runs them silently as other instructions). So
//! no breakpoints are needed: at a `SIGILL` stop whose pc is in installed
//! code and whose halfword decodes as Zcb ([`zcb::decode`]), the machine
//! carries the instruction out with the shared semantics
//! ([`zcb::Zcb::execute`]) through the stub's register and memory packets,
//! moves the pc past it and continues; the signal is discarded. Anything
//! else at a `SIGILL` stop stays an illegal-instruction fault.
//!
//! A load or store whose memory the stub refuses (unmapped, or a store to
//! memory that is not writable, such as installed code, read-only data or
//! the stub page) is the memory-access fault the instruction would raise:
//! the stop is handled as a `SIGSEGV` at the instruction, changing no
//! register. Each Zcb instruction executed costs a stop and a continue
//! (about a millisecond), like a host call.

use std::io;

use cranelift_exn::Error;
use cranelift_exn::isa::riscv64::zcb::{self, Hart};
use cranelift_exn::isa::{Arch, Reg};

use super::QemuMachine;
use crate::gdb;

/// What became of a `SIGILL` stop.
pub(super) enum Carried {
    /// A Zcb instruction was carried out; the pc is past it.
    Done,
    /// A Zcb load or store accessed memory the program may not: a memory
    /// fault at the instruction.
    Faulted,
    /// Not a Zcb instruction in installed code: the stop stays a fault.
    NotZcb,
}

/// Why carrying an instruction out stopped.
enum Failure {
    /// The stub refused a memory access: the program's fault.
    Refused,
    /// The machine failed.
    Machine(Error),
}

/// The process's registers and memory, as the Zcb semantics use them.
struct GdbHart<'m> {
    machine: &'m QemuMachine,
}

impl GdbHart<'_> {
    fn access_error(&self, e: io::Error) -> Failure {
        if gdb::is_refused(&e) {
            Failure::Refused
        } else {
            Failure::Machine(self.machine.gdb_error(e))
        }
    }
}

impl Hart for GdbHart<'_> {
    type Error = Failure;

    fn x(&mut self, n: u8) -> Result<u64, Failure> {
        self.machine.read_reg(Reg::int(n)).map_err(Failure::Machine)
    }

    fn set_x(&mut self, n: u8, value: u64) -> Result<(), Failure> {
        self.machine
            .write_reg(Reg::int(n), value)
            .map_err(Failure::Machine)
    }

    fn load(&mut self, address: u64, bytes: &mut [u8]) -> Result<(), Failure> {
        let result = self.machine.gdb.borrow_mut().read_memory(address, bytes);
        result.map_err(|e| self.access_error(e))
    }

    fn store(&mut self, address: u64, bytes: &[u8]) -> Result<(), Failure> {
        // Every byte must be mapped before any is written: a halfword
        // store whose second byte is unmapped writes nothing.
        let mut old = [0u8; 2];
        let old = &mut old[..bytes.len().min(2)];
        let read = self.machine.gdb.borrow_mut().read_memory(address, old);
        read.map_err(|e| self.access_error(e))?;
        let written = self.machine.gdb.borrow_mut().write_memory(address, bytes);
        written.map_err(|e| self.access_error(e))
    }
}

impl QemuMachine {
    /// Carry out the Zcb instruction a `SIGILL` stop at `pc` reports, if
    /// it is one in installed riscv64 code.
    pub(super) fn carry_out_zcb(&self, pc: u64) -> Result<Carried, Error> {
        if self.arch.arch != Arch::Riscv64 || !self.in_installed_code(pc) {
            return Ok(Carried::NotZcb);
        }
        let mut half = [0u8; 2];
        self.gdb
            .borrow_mut()
            .read_memory(pc, &mut half)
            .map_err(|e| self.gdb_error(e))?;
        let Some(insn) = zcb::decode(u16::from_le_bytes(half)) else {
            return Ok(Carried::NotZcb);
        };
        match insn.execute(&mut GdbHart { machine: self }) {
            Ok(()) => {
                self.set_pc(pc.wrapping_add(zcb::LEN))?;
                Ok(Carried::Done)
            }
            Err(Failure::Refused) => Ok(Carried::Faulted),
            Err(Failure::Machine(e)) => Err(e),
        }
    }

    /// Whether the [`zcb::LEN`] bytes at `pc` are in a code region with
    /// code installed.
    fn in_installed_code(&self, pc: u64) -> bool {
        self.code.is_installed_code(pc)
            && self.code.is_installed_code(pc.wrapping_add(zcb::LEN - 1))
    }
}
