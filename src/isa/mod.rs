//! Everything that differs by architecture, behind one trait.
//!
//! Each supported ISA has one directory here (`x64`, `aarch64`, `riscv64`,
//! `s390x`): `mod.rs` holds its frame layout, registers, relocation patching
//! and the hand-written throw, resume and throw-to-entry stubs, `tests.rs` its unit tests. Its facts are one `const` [`IsaSpec`]
//! (data); what is code — relocation patching and unwind decoding — is its
//! [`IsaBehaviour`]. The rest of the crate reaches an ISA only through the
//! [`IsaSpec`] of [`Arch::spec`].
//!
//! One ISA module is public for what machines outside the crate need:
//! [`riscv64::zcb`], the decoding and semantics of the Zcb instructions
//! that emulated CPUs lacking them carry out.

use std::fmt;

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::isa::unwind::UnwindInst;

mod aarch64;
pub mod riscv64;
mod s390x;
mod x64;

/// One of the four architectures cranelift-exn supports (all Linux, 64-bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    /// x86-64 (System V ABI).
    X86_64,
    /// AArch64 (AAPCS64).
    Aarch64,
    /// RISC-V RV64GC (LP64D).
    Riscv64,
    /// IBM z/Architecture (s390x ELF ABI), big-endian.
    S390x,
}

impl Arch {
    /// All supported architectures, in a stable order.
    pub const ALL: [Arch; 4] = [Arch::X86_64, Arch::Aarch64, Arch::Riscv64, Arch::S390x];

    /// The architecture named by a target triple, if supported.
    pub fn from_triple(triple: &target_lexicon::Triple) -> Option<Arch> {
        use target_lexicon::Architecture as A;
        match triple.architecture {
            A::X86_64 => Some(Arch::X86_64),
            A::Aarch64(_) => Some(Arch::Aarch64),
            A::Riscv64(_) => Some(Arch::Riscv64),
            A::S390x => Some(Arch::S390x),
            _ => None,
        }
    }

    /// The architecture this process runs on, if it is one of the four.
    pub fn host() -> Option<Arch> {
        Arch::from_triple(&target_lexicon::Triple::host())
    }

    /// The name used on filetest `target` lines (`x86_64`, `aarch64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv64",
            Arch::S390x => "s390x",
        }
    }

    /// The Linux target triple for this architecture.
    pub fn triple(self) -> target_lexicon::Triple {
        let name = match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
            Arch::Riscv64 => "riscv64gc-unknown-linux-gnu",
            Arch::S390x => "s390x-unknown-linux-gnu",
        };
        name.parse().expect("static triple parses")
    }

    /// Byte order of data in memory.
    pub fn endianness(self) -> Endianness {
        match self {
            Arch::S390x => Endianness::Big,
            _ => Endianness::Little,
        }
    }

    /// The facts and code for this architecture.
    pub fn spec(self) -> &'static IsaSpec {
        match self {
            Arch::X86_64 => &x64::SPEC,
            Arch::Aarch64 => &aarch64::SPEC,
            Arch::Riscv64 => &riscv64::SPEC,
            Arch::S390x => &s390x::SPEC,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endianness {
    /// Least significant byte first.
    Little,
    /// Most significant byte first.
    Big,
}

impl Endianness {
    /// Whether this is the host's byte order.
    pub fn is_native(self) -> bool {
        self == if cfg!(target_endian = "big") {
            Endianness::Big
        } else {
            Endianness::Little
        }
    }

    /// Decode a 64-bit word.
    pub fn read_u64(self, bytes: [u8; 8]) -> u64 {
        match self {
            Endianness::Little => u64::from_le_bytes(bytes),
            Endianness::Big => u64::from_be_bytes(bytes),
        }
    }

    /// Encode a 64-bit word.
    pub fn write_u64(self, value: u64) -> [u8; 8] {
        match self {
            Endianness::Little => value.to_le_bytes(),
            Endianness::Big => value.to_be_bytes(),
        }
    }
}

/// A register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegClass {
    /// General-purpose (integer) registers.
    Int,
    /// Floating-point / vector registers (only the low 64 bits are callee-saved
    /// on any of the four ISAs).
    Float,
}

/// A machine register: its file and its hardware encoding, as Cranelift's
/// `RealReg::hw_enc` numbers it (x86-64: rax=0 … r15=15; aarch64: x0…x30;
/// riscv64: x0…x31; s390x: r0…r15; floats likewise per file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg {
    /// Register file.
    pub class: RegClass,
    /// Hardware number within the file.
    pub hw: u8,
}

impl Reg {
    /// An integer register.
    pub const fn int(hw: u8) -> Reg {
        Reg {
            class: RegClass::Int,
            hw,
        }
    }

    /// A floating-point register.
    pub const fn float(hw: u8) -> Reg {
        Reg {
            class: RegClass::Float,
            hw,
        }
    }

    /// Convert Cranelift's register description.
    pub fn from_cranelift(reg: cranelift_codegen::RealReg) -> Option<Reg> {
        use cranelift_codegen::RegClass as C;
        match reg.class() {
            C::Int => Some(Reg::int(reg.hw_enc())),
            C::Float => Some(Reg::float(reg.hw_enc())),
            C::Vector => None,
        }
    }
}

/// Where a frame keeps its link to the caller, relative to the frame's
/// frame-pointer value (on s390x, the back-chain value: the frame's incoming
/// stack pointer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLinks {
    /// Offset of the caller's frame-pointer value.
    pub caller_fp_offset: i64,
    /// Offset of the return address into the caller.
    pub return_address_offset: i64,
    /// The bits of a stored return address that hold the address; the
    /// others carry a signature to strip (aarch64 pointer authentication).
    pub return_address_mask: u64,
}

/// A callee-saved register a function stores in its frame, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedRegister {
    /// The register.
    pub reg: Reg,
    /// Offset of its 8-byte slot from the function's frame-pointer value.
    pub fp_offset: i64,
}

/// One instruction of a hand-written stub: its machine code and its text,
/// `mnemonic operands` exactly as capstone prints it (as in Cranelift's
/// disassembly) with the stub at address 0.
pub type StubRow = (&'static [u8], &'static str);

/// A hand-written machine-code stub, one [`StubRow`] per instruction. The
/// same instructions are in `src/isa/<arch>/stubs.s`, which
/// `scripts/check-stubs` assembles with GNU as to compare the bytes.
#[derive(Clone, Copy, Debug)]
pub struct Stub {
    /// Machine code: the rows' bytes, in order.
    pub code: &'static [u8],
    /// The instructions, one row each.
    pub rows: &'static [StubRow],
}

impl Stub {
    /// The rows' instructions, one per line.
    pub fn listing(&self) -> String {
        let lines: Vec<&str> = self.rows.iter().map(|(_, text)| *text).collect();
        lines.join("\n")
    }
}

// Every ISA's throw-to-entry stub loads the entry's handler record from the
// call buffer at these offsets (its rows hard-code them as displacements):
// moving the record must fail the build, not the stubs.
const _: () = assert!(
    crate::abi::HANDLER_PC_OFFSET == 8
        && crate::abi::HANDLER_SP_OFFSET == 16
        && crate::abi::HANDLER_FP_OFFSET == 24
);

/// Number of bytes of a stub's rows.
pub(crate) const fn stub_len(rows: &[StubRow]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < rows.len() {
        len += rows[i].0.len();
        i += 1;
    }
    len
}

/// A stub's rows' bytes, in order, as one array (`N` is [`stub_len`]).
pub(crate) const fn stub_code<const N: usize>(rows: &[StubRow]) -> [u8; N] {
    let mut code = [0; N];
    let mut at = 0;
    let mut i = 0;
    while i < rows.len() {
        let bytes = rows[i].0;
        let mut j = 0;
        while j < bytes.len() {
            code[at] = bytes[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(at == N, "stub length differs from its rows");
    code
}

/// Word indices in the register context shared by the throw stub, the host
/// unwinder and the resume stub. The context is an array of 64-bit words in the
/// target's byte order.
pub mod context {
    /// Program counter: on capture, the throw stub's return address; on resume,
    /// where to jump.
    pub const PC: usize = 0;
    /// Stack pointer: on capture, the caller's stack pointer once the throw stub
    /// has returned; on resume, the value to install.
    pub const SP: usize = 1;
    /// Frame pointer: on capture, the caller's frame-pointer value (s390x: the
    /// back chain stored at the caller's stack pointer); on resume, the value
    /// to install (ignored on s390x, which has no frame-pointer register).
    pub const FP: usize = 2;
    /// First exception payload, installed in the ISA's first payload register.
    pub const PAYLOAD0: usize = 3;
    /// Second exception payload.
    pub const PAYLOAD1: usize = 4;
    /// The six integer arguments the throw stub was called with, in order:
    /// `entry_fp, exit_fp, exit_pc, tag, payload1, payload2`.
    pub const ARGS: usize = 5;
    /// Number of argument words.
    pub const ARG_COUNT: usize = 6;
    /// First callee-saved register, in [`super::IsaSpec::callee_saved`] order.
    pub const SAVED: usize = ARGS + ARG_COUNT;
    /// On resume, the word of the first argument holds how many entries of
    /// the CPU's return-address predictor the resume stub drops before it
    /// jumps: the return addresses of the calls the throw abandoned (the
    /// throw stub's and one per frame left), when they still fit the
    /// predictor ([`super::IsaSpec::return_stack_depth`]), else 0. Resume
    /// stubs whose ISA reports a depth of 0 ignore it.
    pub const RETURN_STACK_DROPS: usize = ARGS;

    /// Size in bytes of a context for an ISA with `saved` callee-saved
    /// registers, rounded up to 16 bytes.
    pub const fn size_bytes(saved: usize) -> usize {
        ((SAVED + saved) * 8).div_ceil(16) * 16
    }
}

/// One relocation to apply, with everything an ISA needs to patch it.
pub struct RelocSite<'a> {
    /// The relocation kind.
    pub kind: Reloc,
    /// The whole function's code; the field to patch starts at `offset`.
    pub code: &'a mut [u8],
    /// Offset of the field in `code`.
    pub offset: usize,
    /// Absolute address of `code[offset]` once loaded.
    pub place: u64,
    /// Absolute address of the target: a symbol, a GOT slot (see
    /// [`IsaSpec::uses_got`]), or for a label relocation the labelled offset
    /// inside this same function.
    pub target: u64,
    /// Cranelift's addend.
    pub addend: i64,
    /// `target + addend` of the relocation applied at a given absolute
    /// address, if any: a RISC-V `%pcrel_lo` relocation names its `auipc`
    /// by label and takes its value from the `%pcrel_hi`/`%got_hi`
    /// relocation there.
    pub value_at: &'a dyn Fn(u64) -> Option<u64>,
}

impl RelocSite<'_> {
    /// `S + A`: the target plus the addend.
    pub fn value(&self) -> u64 {
        self.target.wrapping_add_signed(self.addend)
    }
}

/// A relocation the ISA could not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelocError {
    /// This ISA does not implement the relocation kind.
    Unsupported,
    /// The displacement does not fit the instruction field.
    OutOfRange {
        /// The displacement (or value) that was to be encoded.
        value: i64,
    },
    /// The value is not aligned as the field requires.
    Misaligned {
        /// The displacement (or value) that was to be encoded.
        value: i64,
    },
    /// The bytes at the site are not the instruction the relocation expects.
    UnexpectedInstruction,
}

impl fmt::Display for RelocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelocError::Unsupported => f.write_str("unsupported relocation kind for this ISA"),
            RelocError::OutOfRange { value } => {
                write!(f, "value {value:#x} out of range for the field")
            }
            RelocError::Misaligned { value } => write!(f, "value {value:#x} is misaligned"),
            RelocError::UnexpectedInstruction => {
                f.write_str("instruction at the site does not match the relocation")
            }
        }
    }
}

/// Register names as the ISA's assembler (and capstone) print them.
#[derive(Clone, Copy, Debug)]
pub struct RegisterNames {
    /// Integer registers by hardware number, as far as the table goes.
    pub int: &'static [&'static str],
    /// Prefix of `hw` for integer registers past the table.
    pub int_prefix: &'static str,
    /// Float registers by hardware number, as far as the table goes.
    pub float: &'static [&'static str],
    /// Prefix of `hw` for float registers past the table.
    pub float_prefix: &'static str,
}

impl RegisterNames {
    /// The name of `reg`.
    pub fn name(&self, reg: Reg) -> String {
        let (table, prefix) = match reg.class {
            RegClass::Int => (self.int, self.int_prefix),
            RegClass::Float => (self.float, self.float_prefix),
        };
        table
            .get(usize::from(reg.hw))
            .map_or_else(|| format!("{prefix}{}", reg.hw), |n| n.to_string())
    }
}

/// The facts of one architecture, as data (one `const` per ISA module), and
/// its [`IsaBehaviour`] for what is code.
///
/// Stub contracts (all stubs are entered with the platform C calling
/// convention and use the [`context`] layout):
///
/// * **throw stub** — what JIT code calls as `__cranelift_throw(entry_fp,
///   exit_fp, exit_pc, tag, payload1, payload2)`. It reserves a context of
///   [`context::size_bytes`]`(callee_saved().len())` bytes on its own stack
///   (keeping the stack aligned for a call), stores PC, SP, FP, the six
///   arguments and every register of [`IsaSpec::callee_saved`], then calls the
///   host function whose address is the 8-byte word (target byte order)
///   immediately *before* the stub's first byte, with the context's address as
///   its only argument. When the host function returns, the context holds a
///   resume state; the stub puts the context address in the resume stub's
///   input register and falls through into the resume stub, which is placed
///   immediately after it.
/// * **resume stub** — takes the context address in the first C argument
///   register. Installs every `SAVED` register, then both payload registers
///   (payloads win where a payload register is also callee-saved, as on
///   s390x), then FP (where the ISA has a frame-pointer register), then SP, and
///   jumps to PC. It never writes a register it still has to read from.
///
/// The fields are read through the accessors of the same names.
pub struct IsaSpec {
    arch: Arch,
    frame_links: FrameLinks,
    payload_regs: [Reg; 2],
    callee_saved: &'static [Reg],
    stack_pointer: Reg,
    frame_pointer: Option<Reg>,
    int_arg_regs: &'static [Reg],
    result_register: Reg,
    trap_record_skew: u32,
    link_register: Option<Reg>,
    prologue_frame_value: Option<Reg>,
    register_names: RegisterNames,
    got_relocations: &'static [Reloc],
    throw_stub: Stub,
    resume_stub: Stub,
    to_entry_stub: Stub,
    return_stack_depth: usize,
    behaviour: &'static dyn IsaBehaviour,
}

/// What differs by ISA as code rather than data.
pub trait IsaBehaviour: Sync {
    /// Patch one relocation (see [`RelocSite`]) of a kind other than the
    /// data words `Abs8` and `Abs4`, which [`IsaSpec::apply_relocation`]
    /// patches for every ISA in its byte order.
    fn apply_relocation(&self, site: RelocSite<'_>) -> Result<(), RelocError>;
    /// Where a function saves callee-saved registers, from Cranelift's unwind
    /// instructions for it, as offsets from the frame-pointer value.
    fn saved_registers(&self, unwind: &[(u32, UnwindInst)]) -> Result<Vec<SavedRegister>, String>;
    /// Rewrite, in place and at the same length, code sequences Cranelift
    /// 0.135 emits wrongly for this ISA, before the code runs; returns how
    /// many it rewrote. The default rewrites nothing.
    fn repair_code(&self, code: &mut [u8]) -> usize {
        let _ = code;
        0
    }
}

impl IsaSpec {
    /// Which architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }
    /// Where each frame links to its caller.
    pub fn frame_links(&self) -> FrameLinks {
        self.frame_links
    }
    /// The two exception payload registers (`exn0`, `exn1`).
    pub fn payload_regs(&self) -> [Reg; 2] {
        self.payload_regs
    }
    /// Callee-saved registers the throw stub captures and the resume stub
    /// installs, in context order. Excludes the stack and frame pointers.
    pub fn callee_saved(&self) -> &'static [Reg] {
        self.callee_saved
    }
    /// The stack-pointer register.
    pub fn stack_pointer(&self) -> Reg {
        self.stack_pointer
    }
    /// The frame-pointer register, if the ISA has one.
    pub fn frame_pointer(&self) -> Option<Reg> {
        self.frame_pointer
    }
    /// Integer argument registers of the C calling convention, in order.
    pub fn int_arg_regs(&self) -> &'static [Reg] {
        self.int_arg_regs
    }
    /// The register of a C function's first integer result.
    pub fn result_register(&self) -> Reg {
        self.result_register
    }
    /// How far past a faulting instruction's address Cranelift may record
    /// its trap site (0: at the instruction).
    pub fn trap_record_skew(&self) -> u32 {
        self.trap_record_skew
    }
    /// The register holding the return address on entry to a function, or
    /// `None` when the call instruction pushes it (x86-64).
    pub fn link_register(&self) -> Option<Reg> {
        self.link_register
    }
    /// On an ISA without a frame-pointer register (s390x), the register
    /// holding a frame's fp value (its incoming stack pointer) while the
    /// prologue stores it as the back chain: after a stack overflow faults on
    /// that store, the word at the stack pointer is unreadable and this
    /// register is where a backtrace starts. `None` elsewhere.
    pub fn prologue_frame_value(&self) -> Option<Reg> {
        self.prologue_frame_value
    }
    /// The assembler name of a register.
    pub fn register_name(&self, reg: Reg) -> String {
        self.register_names.name(reg)
    }
    /// Whether relocations of this kind refer to a GOT slot holding the
    /// symbol's address rather than to the symbol itself (the linker then
    /// passes the slot's address as `target`).
    pub fn uses_got(&self, kind: Reloc) -> bool {
        self.got_relocations.contains(&kind)
    }
    /// Patch one relocation. See [`RelocSite`].
    pub fn apply_relocation(&self, site: RelocSite<'_>) -> Result<(), RelocError> {
        match site.kind {
            Reloc::Abs8 | Reloc::Abs4 => apply_absolute(
                site.kind,
                site.code,
                site.offset,
                site.value(),
                self.arch.endianness(),
            ),
            _ => self.behaviour.apply_relocation(site),
        }
    }
    /// Rewrite what Cranelift emits wrongly for this ISA in one function's
    /// code (see [`IsaBehaviour::repair_code`]); how many sequences.
    pub fn repair_code(&self, code: &mut [u8]) -> usize {
        self.behaviour.repair_code(code)
    }
    /// Where a function saves callee-saved registers, from Cranelift's unwind
    /// instructions for it, as offsets from the frame-pointer value.
    pub fn saved_registers(
        &self,
        unwind: &[(u32, UnwindInst)],
    ) -> Result<Vec<SavedRegister>, String> {
        self.behaviour.saved_registers(unwind)
    }
    /// The throw-capture stub.
    pub fn throw_stub(&self) -> Stub {
        self.throw_stub
    }
    /// The resume stub.
    pub fn resume_stub(&self) -> Stub {
        self.resume_stub
    }
    /// The throw-to-entry stub ([`crate::abi::THROW_TO_ENTRY_SYMBOL`]): it
    /// passes its arguments to the host function whose address is the word
    /// before it, then installs the handler record of the buffer that call
    /// returns and jumps to it.
    pub fn to_entry_stub(&self) -> Stub {
        self.to_entry_stub
    }
    /// How many entries of the return-address predictor the resume stub
    /// drops at most (see [`context::RETURN_STACK_DROPS`]); 0 for a stub
    /// that drops none.
    pub fn return_stack_depth(&self) -> usize {
        self.return_stack_depth
    }
}

/// The `len` bytes at `offset` in `code`, if the code has them.
pub(crate) fn field_mut(code: &mut [u8], offset: usize, len: usize) -> Option<&mut [u8]> {
    code.get_mut(offset..offset.checked_add(len)?)
}

/// The little-endian 32-bit word at `offset` (an instruction on aarch64 and
/// riscv64), if the code has it.
pub(crate) fn read_le32(code: &[u8], offset: usize) -> Option<u32> {
    let bytes = code.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Overwrite the little-endian 32-bit word at `offset`, which the caller has
/// read with [`read_le32`].
pub(crate) fn write_le32(code: &mut [u8], offset: usize, word: u32) {
    code[offset..offset + 4].copy_from_slice(&word.to_le_bytes());
}

/// The data relocations `Abs8` and `Abs4`, which differ between the ISAs only
/// in byte order. `value` is `target + addend`. `Abs4` takes any value that
/// fits 32 bits signed or unsigned (the ELF ABS32 rule); anything else, or a
/// field outside the code, is [`RelocError::OutOfRange`].
pub(crate) fn apply_absolute(
    kind: Reloc,
    code: &mut [u8],
    offset: usize,
    value: u64,
    endianness: Endianness,
) -> Result<(), RelocError> {
    let out_of_range = RelocError::OutOfRange {
        value: value as i64,
    };
    match kind {
        Reloc::Abs8 => {
            let field = field_mut(code, offset, 8).ok_or(out_of_range)?;
            field.copy_from_slice(&endianness.write_u64(value));
            Ok(())
        }
        Reloc::Abs4 => {
            if u32::try_from(value).is_err() && i32::try_from(value as i64).is_err() {
                return Err(out_of_range);
            }
            let word = value as u32;
            let bytes = match endianness {
                Endianness::Little => word.to_le_bytes(),
                Endianness::Big => word.to_be_bytes(),
            };
            field_mut(code, offset, 4)
                .ok_or(out_of_range)?
                .copy_from_slice(&bytes);
            Ok(())
        }
        _ => Err(RelocError::Unsupported),
    }
}

/// The common decoding of Cranelift's unwind instructions for ISAs whose
/// frame-pointer register points at the saved (caller FP, return address)
/// pair: a `SaveReg` slot sits at `FP - offset_downward_to_clobbers +
/// clobber_offset`.
pub(crate) fn fp_relative_saved_registers(
    unwind: &[(u32, UnwindInst)],
) -> Result<Vec<SavedRegister>, String> {
    let mut downward = None;
    let mut saved = Vec::new();
    for (_, inst) in unwind {
        match inst {
            UnwindInst::DefineNewFrame {
                offset_downward_to_clobbers,
                ..
            } => downward = Some(i64::from(*offset_downward_to_clobbers)),
            UnwindInst::SaveReg {
                clobber_offset,
                reg,
            } => {
                let downward =
                    downward.ok_or("unwind info saves a register before defining a frame")?;
                let reg =
                    Reg::from_cranelift(*reg).ok_or("unwind info saves a vector-class register")?;
                saved.push(SavedRegister {
                    reg,
                    fp_offset: i64::from(*clobber_offset) - downward,
                });
            }
            _ => {}
        }
    }
    Ok(saved)
}

#[cfg(test)]
mod tests;
