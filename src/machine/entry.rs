//! What a machine does around an entry trampoline's call: where an
//! emulated machine puts its arguments and buffer, where a nested
//! [`Machine::call_entry`] runs, whether a fault has somewhere to go (and
//! the buffer's record that tells), and the registers that resume at the
//! entry trampoline's handler.
//!
//! [`Machine::call_entry`]: super::Machine::call_entry

use crate::error::Error;
use crate::isa::{Arch, Reg};
use crate::memory::Memory;
use crate::trampoline::{HANDLER_FP_OFFSET, HANDLER_PC_OFFSET, HANDLER_SP_OFFSET};

/// The first three integer argument registers of `arch`'s C calling
/// convention: where an entry trampoline takes `callee` and `buffer` (the
/// first two), and a host function its arguments.
pub fn argument_registers(arch: Arch) -> Result<[Reg; 3], Error> {
    match *arch.spec().int_arg_regs() {
        [first, second, third, ..] => Ok([first, second, third]),
        _ => Err(Error::Machine(format!(
            "{arch}: the ISA spec names fewer than three argument registers"
        ))),
    }
}

/// The first three integer arguments of a host-function call on `arch`,
/// each read with `read` from its register: what an emulated machine
/// passes to [`super::dispatch_host_function`].
pub fn host_arguments(
    arch: Arch,
    mut read: impl FnMut(Reg) -> Result<u64, Error>,
) -> Result<[u64; 3], Error> {
    let [first, second, third] = argument_registers(arch)?;
    Ok([read(first)?, read(second)?, read(third)?])
}

/// How far below the interrupted code's stack pointer a nested entry's
/// buffer starts, and how far below that buffer its stack starts (past any
/// red zone).
pub const NESTED_GAP: u64 = 0x400;

/// Where a [`Machine::call_entry`](super::Machine::call_entry) puts the
/// buffer it copies in and out, and where its stack starts. The outermost
/// call of a machine uses fixed ones; a nested call (a host function
/// calling back into JIT code) puts both on the interrupted code's stack
/// ([`CallFrame::nested_below`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallFrame {
    /// The 16-byte-aligned address the buffer is copied to.
    pub buffer: u64,
    /// The 16-byte-aligned top of the call's stack.
    pub stack_top: u64,
}

impl CallFrame {
    /// The frame of a nested call with a buffer of `len` bytes, the
    /// interrupted code's stack pointer at `sp` and the stack's lowest
    /// address at `stack_base`; `Err` when the stack has no room left.
    pub fn nested_below(
        arch: Arch,
        sp: u64,
        len: u64,
        stack_base: u64,
    ) -> Result<CallFrame, Error> {
        let buffer = sp
            .checked_sub(NESTED_GAP + len)
            .map(|a| a & !15)
            .filter(|&a| a >= stack_base + NESTED_GAP)
            .ok_or_else(|| Error::Machine(format!("{arch}: no stack left for a nested call")))?;
        Ok(CallFrame {
            buffer,
            stack_top: (buffer - NESTED_GAP) & !15,
        })
    }
}

/// The entry trampoline's handler, as it records it in the header of its
/// buffer: where a fault or interrupt delivered to the entry resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHandler {
    /// The handler's address.
    pub pc: u64,
    /// The stack pointer to resume with.
    pub sp: u64,
    /// The frame pointer to resume with (unused on ISAs without one).
    pub fp: u64,
}

impl EntryHandler {
    /// Mark `buffer`'s handler record as not recorded (its address word
    /// zero), as [`crate::machine::Machine::call_entry`] requires of a
    /// buffer: one reused from an earlier call still holds that call's
    /// record — stack addresses of a frame that is gone — which a fault or
    /// interrupt arriving before the trampoline records its own would
    /// otherwise be delivered to. A buffer too short to hold the word is
    /// left alone.
    pub fn clear(buffer: &mut [u8]) {
        let at = HANDLER_PC_OFFSET as usize;
        if let Some(pc) = buffer.get_mut(at..at + 8) {
            pc.fill(0);
        }
    }

    /// Whether the entry trampoline whose buffer is at `buffer` has recorded
    /// its handler yet: before that there is nowhere to deliver a fault to.
    pub fn is_recorded(memory: &dyn Memory, buffer: u64) -> bool {
        memory
            .read_u64(buffer + HANDLER_PC_OFFSET as u64)
            .is_ok_and(|pc| pc != 0)
    }

    /// The handler recorded in the buffer at `buffer`.
    pub fn read(memory: &dyn Memory, buffer: u64) -> Result<EntryHandler, Error> {
        Ok(EntryHandler {
            pc: memory.read_u64(buffer + HANDLER_PC_OFFSET as u64)?,
            sp: memory.read_u64(buffer + HANDLER_SP_OFFSET as u64)?,
            fp: memory.read_u64(buffer + HANDLER_FP_OFFSET as u64)?,
        })
    }

    /// The registers to write, in this order, before jumping to
    /// [`EntryHandler::pc`] on `arch`: the stack pointer, the frame pointer
    /// (where the ISA has one) and the payload registers, which are zero.
    pub fn registers(&self, arch: Arch) -> Vec<(Reg, u64)> {
        let spec = arch.spec();
        let mut registers = vec![(spec.stack_pointer(), self.sp)];
        if let Some(fp) = spec.frame_pointer() {
            registers.push((fp, self.fp));
        }
        registers.extend(spec.payload_regs().into_iter().map(|reg| (reg, 0)));
        registers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Endianness;

    /// 64 bytes of little-endian memory at address 0x100.
    struct Bytes([u8; 64]);

    impl Memory for Bytes {
        fn endianness(&self) -> Endianness {
            Endianness::Little
        }

        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
            let start = addr.checked_sub(0x100).map(|a| a as usize);
            match start.and_then(|s| self.0.get(s..s + buf.len())) {
                Some(bytes) => {
                    buf.copy_from_slice(bytes);
                    Ok(())
                }
                None => Err(Error::Memory {
                    address: addr,
                    message: "outside".into(),
                }),
            }
        }

        fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
            let start = (addr - 0x100) as usize;
            self.0[start..start + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    #[test]
    fn every_isa_passes_three_arguments_in_registers() {
        for arch in Arch::ALL {
            let registers = argument_registers(arch).unwrap();
            assert_eq!(arch.spec().int_arg_regs()[..3], registers, "{arch}");
        }
    }

    /// Host-function arguments are read from those registers, in order.
    #[test]
    fn host_arguments_read_the_argument_registers_in_order() {
        for arch in Arch::ALL {
            let registers = argument_registers(arch).unwrap();
            let args = host_arguments(arch, |reg| {
                let i = registers.iter().position(|r| *r == reg).unwrap();
                Ok(10 + i as u64)
            });
            assert_eq!(args, Ok([10, 11, 12]), "{arch}");
        }
    }

    #[test]
    fn a_nested_call_starts_below_the_stack_pointer() {
        let nested = CallFrame::nested_below(Arch::X86_64, 0x3000_8008, 0x28, 0x3000_0000).unwrap();
        assert_eq!(nested.buffer, (0x3000_8008 - 0x400 - 0x28) & !15);
        assert_eq!(nested.stack_top, (nested.buffer - 0x400) & !15);
        // The lowest buffer still leaves a gap above the stack's base.
        assert_eq!(
            CallFrame::nested_below(Arch::Aarch64, 0x3000_0900, 0x100, 0x3000_0000)
                .unwrap()
                .buffer,
            0x3000_0400
        );
        assert_eq!(
            CallFrame::nested_below(Arch::Aarch64, 0x3000_08f0, 0x100, 0x3000_0000),
            Err(Error::Machine(
                "aarch64: no stack left for a nested call".into()
            ))
        );
        assert!(CallFrame::nested_below(Arch::S390x, 0x100, 0x200, 0).is_err());
    }

    #[test]
    fn the_handler_is_read_from_the_buffer_header() {
        let mut memory = Bytes([0; 64]);
        assert!(!EntryHandler::is_recorded(&memory, 0x100));
        assert!(!EntryHandler::is_recorded(&memory, 0x1000));
        memory
            .write_u64(0x100 + HANDLER_PC_OFFSET as u64, 0x4000_0010)
            .unwrap();
        memory
            .write_u64(0x100 + HANDLER_SP_OFFSET as u64, 0x3000_0f00)
            .unwrap();
        memory
            .write_u64(0x100 + HANDLER_FP_OFFSET as u64, 0x3000_0f10)
            .unwrap();
        assert!(EntryHandler::is_recorded(&memory, 0x100));
        let handler = EntryHandler::read(&memory, 0x100).unwrap();
        assert_eq!(
            handler,
            EntryHandler {
                pc: 0x4000_0010,
                sp: 0x3000_0f00,
                fp: 0x3000_0f10,
            }
        );
        assert!(EntryHandler::read(&memory, 0x1000).is_err());
    }

    #[test]
    fn resuming_sets_sp_fp_and_clears_the_payloads() {
        let handler = EntryHandler {
            pc: 1,
            sp: 2,
            fp: 3,
        };
        for arch in [Arch::X86_64, Arch::Aarch64, Arch::Riscv64, Arch::S390x] {
            let spec = arch.spec();
            let registers = handler.registers(arch);
            assert_eq!(registers[0], (spec.stack_pointer(), 2));
            let payloads = match spec.frame_pointer() {
                Some(fp) => {
                    assert_eq!(registers[1], (fp, 3));
                    &registers[2..]
                }
                None => &registers[1..],
            };
            let expected: Vec<(Reg, u64)> =
                spec.payload_regs().into_iter().map(|r| (r, 0)).collect();
            assert_eq!(payloads, expected);
        }
    }
}
