//! x86-64 (System V): frame layout, registers, relocations and stubs.

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::isa::unwind::UnwindInst;

use super::{
    Arch, FrameLinks, IsaBehaviour, IsaSpec, Reg, RegisterNames, RelocError, RelocSite,
    SavedRegister, Stub, StubRow, field_mut, fp_relative_saved_registers, stub_code, stub_len,
};

/// The code of x86-64.
pub struct X64;

const RAX: Reg = Reg::int(0);
const RCX: Reg = Reg::int(1);
const RDX: Reg = Reg::int(2);
const RBX: Reg = Reg::int(3);
const RSP: Reg = Reg::int(4);
const RBP: Reg = Reg::int(5);
const RSI: Reg = Reg::int(6);
const RDI: Reg = Reg::int(7);
const R8: Reg = Reg::int(8);
const R9: Reg = Reg::int(9);

/// rbx, r12–r15; rbp is the frame pointer and handled on its own.
static CALLEE_SAVED: [Reg; 5] = [RBX, Reg::int(12), Reg::int(13), Reg::int(14), Reg::int(15)];
static INT_ARGS: [Reg; 6] = [RDI, RSI, RDX, RCX, R8, R9];

/// Throw-capture stub. The context (16 words = 128 bytes) is at the stack
/// pointer after `sub $0x88`: 136 bytes keep the stack 16-byte aligned at the
/// host call (it is 8 mod 16 on entry).
static THROW_CODE: [u8; stub_len(THROW_ROWS)] = stub_code(THROW_ROWS);

/// [`THROW_CODE`], one row per instruction (bytes, capstone AT&T text). The
/// host function is the word 8 bytes before the stub: `callq *-0x6d(%rip)` from
/// offset 0x5f+6.
#[rustfmt::skip]
const THROW_ROWS: &[StubRow] = &[
    (&[0x48, 0x81, 0xec, 0x88, 0x00, 0x00, 0x00], "subq $0x88, %rsp"),
    (&[0x48, 0x89, 0x7c, 0x24, 0x28], "movq %rdi, 0x28(%rsp)"),
    (&[0x48, 0x89, 0x74, 0x24, 0x30], "movq %rsi, 0x30(%rsp)"),
    (&[0x48, 0x89, 0x54, 0x24, 0x38], "movq %rdx, 0x38(%rsp)"),
    (&[0x48, 0x89, 0x4c, 0x24, 0x40], "movq %rcx, 0x40(%rsp)"),
    (&[0x4c, 0x89, 0x44, 0x24, 0x48], "movq %r8, 0x48(%rsp)"),
    (&[0x4c, 0x89, 0x4c, 0x24, 0x50], "movq %r9, 0x50(%rsp)"),
    (&[0x48, 0x89, 0x5c, 0x24, 0x58], "movq %rbx, 0x58(%rsp)"),
    (&[0x4c, 0x89, 0x64, 0x24, 0x60], "movq %r12, 0x60(%rsp)"),
    (&[0x4c, 0x89, 0x6c, 0x24, 0x68], "movq %r13, 0x68(%rsp)"),
    (&[0x4c, 0x89, 0x74, 0x24, 0x70], "movq %r14, 0x70(%rsp)"),
    (&[0x4c, 0x89, 0x7c, 0x24, 0x78], "movq %r15, 0x78(%rsp)"),
    (&[0x48, 0x89, 0x6c, 0x24, 0x10], "movq %rbp, 0x10(%rsp)"),
    (&[0x48, 0x8b, 0x84, 0x24, 0x88, 0x00, 0x00, 0x00], "movq 0x88(%rsp), %rax"),
    (&[0x48, 0x89, 0x04, 0x24], "movq %rax, (%rsp)"),
    (&[0x48, 0x8d, 0x84, 0x24, 0x90, 0x00, 0x00, 0x00], "leaq 0x90(%rsp), %rax"),
    (&[0x48, 0x89, 0x44, 0x24, 0x08], "movq %rax, 8(%rsp)"),
    (&[0x48, 0x89, 0xe7], "movq %rsp, %rdi"),
    (&[0xff, 0x15, 0x93, 0xff, 0xff, 0xff], "callq *-0x6d(%rip)"),
    (&[0x48, 0x89, 0xe7], "movq %rsp, %rdi"),
];

/// Resume stub: the context pointer arrives in rdi. The target pc goes
/// through rcx and the drop count through rsi, scratch registers that are
/// neither callee-saved nor payload registers; rsp is installed after every
/// other load, so each one reads the context while it is still intact.
///
/// Then, before the jump, it drops [`super::context::RETURN_STACK_DROPS`] entries
/// of the CPU's return-address predictor: one `push; ret` to the next
/// instruction each (the word pushed lies below the new stack pointer, in
/// memory the resumed frame does not use; rdi is free by then). Those
/// entries belong to the calls the throw abandoned; left in place, every
/// return the resumed code makes afterwards would be predicted to one of
/// them and mispredict, up the whole chain of callers.
static RESUME_CODE: [u8; stub_len(RESUME_ROWS)] = stub_code(RESUME_ROWS);

/// [`RESUME_CODE`], one row per instruction (bytes, capstone AT&T text). A drop
/// count of 0 or above [`RETURN_STACK_DEPTH`] (a context some other host code
/// resumes, whose word still holds the first argument) drops nothing.
#[rustfmt::skip]
const RESUME_ROWS: &[StubRow] = &[
    (&[0x48, 0x8b, 0x5f, 0x58], "movq 0x58(%rdi), %rbx"),
    (&[0x4c, 0x8b, 0x67, 0x60], "movq 0x60(%rdi), %r12"),
    (&[0x4c, 0x8b, 0x6f, 0x68], "movq 0x68(%rdi), %r13"),
    (&[0x4c, 0x8b, 0x77, 0x70], "movq 0x70(%rdi), %r14"),
    (&[0x4c, 0x8b, 0x7f, 0x78], "movq 0x78(%rdi), %r15"),
    (&[0x48, 0x8b, 0x47, 0x18], "movq 0x18(%rdi), %rax"),
    (&[0x48, 0x8b, 0x57, 0x20], "movq 0x20(%rdi), %rdx"),
    (&[0x48, 0x8b, 0x6f, 0x10], "movq 0x10(%rdi), %rbp"),
    (&[0x48, 0x8b, 0x77, 0x28], "movq 0x28(%rdi), %rsi"),
    (&[0x48, 0x8b, 0x0f], "movq (%rdi), %rcx"),
    (&[0x48, 0x8b, 0x67, 0x08], "movq 8(%rdi), %rsp"),
    (&[0x48, 0x85, 0xf6], "testq %rsi, %rsi"),
    (&[0x74, 0x14], "je 0x44"),
    (&[0x48, 0x83, 0xfe, 0x04], "cmpq $4, %rsi"),
    (&[0x77, 0x0e], "ja 0x44"),
    (&[0x48, 0x8d, 0x3d, 0x02, 0x00, 0x00, 0x00], "leaq 2(%rip), %rdi"),
    (&[0x57], "pushq %rdi"),
    (&[0xc3], "retq"),
    (&[0x48, 0xff, 0xce], "decq %rsi"),
    (&[0x75, 0xf2], "jne 0x36"),
    (&[0xff, 0xe1], "jmpq *%rcx"),
];

/// Return-address predictor entries the resume stub drops at most (the
/// `cmpq $4` of [`RESUME_CODE`]). Each drop is a `ret` the predictor gets
/// wrong, so dropping pays only while it costs fewer mispredictions than
/// the misaligned predictor would cause up the caller chain: throws that
/// leave a few frames. Deeper ones keep the plain jump.
const RETURN_STACK_DEPTH: usize = 4;

fn write_i32(code: &mut [u8], offset: usize, value: i64) -> Result<(), RelocError> {
    let field = i32::try_from(value).map_err(|_| RelocError::OutOfRange { value })?;
    field_mut(code, offset, 4)
        .ok_or(RelocError::OutOfRange { value })?
        .copy_from_slice(&field.to_le_bytes());
    Ok(())
}

/// Throw-to-entry stub ([`crate::abi::THROW_TO_ENTRY_SYMBOL`]): the O(1)
/// delivery, with no context. The tag and payloads arrive in edi, rsi and
/// rdx and go on, untouched, to the host function (the word 8 bytes before
/// the stub), which records them as the call's outcome and returns the
/// innermost call's buffer in rax. The stub then installs the handler record
/// the entry trampoline keeps in the buffer header (pc at 8, sp at 16, fp at
/// 24; pc through rcx, sp last) and jumps: the trampoline's handler needs
/// nothing but its frame ([`crate::trampoline`]). `pushq %rax` only aligns
/// the stack for the call (8 mod 16 on entry); nothing returns past it.
static TO_ENTRY_CODE: [u8; stub_len(TO_ENTRY_ROWS)] = stub_code(TO_ENTRY_ROWS);

/// [`TO_ENTRY_CODE`], one row per instruction (bytes, capstone AT&T text).
#[rustfmt::skip]
const TO_ENTRY_ROWS: &[StubRow] = &[
    (&[0x50], "pushq %rax"),
    (&[0xff, 0x15, 0xf1, 0xff, 0xff, 0xff], "callq *-0xf(%rip)"),
    (&[0x48, 0x8b, 0x48, 0x08], "movq 8(%rax), %rcx"),
    (&[0x48, 0x8b, 0x68, 0x18], "movq 0x18(%rax), %rbp"),
    (&[0x48, 0x8b, 0x60, 0x10], "movq 0x10(%rax), %rsp"),
    (&[0xff, 0xe1], "jmpq *%rcx"),
];

/// The facts of x86-64.
pub(super) const SPEC: IsaSpec = IsaSpec {
    arch: Arch::X86_64,
    // push %rbp; mov %rsp, %rbp: [rbp] = caller's rbp, [rbp+8] = return address.
    frame_links: FrameLinks {
        caller_fp_offset: 0,
        return_address_offset: 8,
        return_address_mask: u64::MAX,
    },
    payload_regs: [RAX, RDX],
    callee_saved: &CALLEE_SAVED,
    stack_pointer: RSP,
    frame_pointer: Some(RBP),
    int_arg_regs: &INT_ARGS,
    // The C convention's first integer result.
    result_register: RAX,
    trap_record_skew: 0,
    // The call instruction pushes the return address.
    link_register: None,
    prologue_frame_value: None,
    register_names: RegisterNames {
        int: &[
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ],
        int_prefix: "int",
        float: &[],
        float_prefix: "xmm",
    },
    got_relocations: &[Reloc::X86GOTPCRel4],
    throw_stub: Stub {
        code: &THROW_CODE,
        rows: THROW_ROWS,
    },
    resume_stub: Stub {
        code: &RESUME_CODE,
        rows: RESUME_ROWS,
    },
    to_entry_stub: Stub {
        code: &TO_ENTRY_CODE,
        rows: TO_ENTRY_ROWS,
    },
    return_stack_depth: RETURN_STACK_DEPTH,
    behaviour: &X64,
};

impl IsaBehaviour for X64 {
    fn apply_relocation(&self, site: RelocSite<'_>) -> Result<(), RelocError> {
        let value = site.value();
        let (kind, code, offset, place) = (site.kind, site.code, site.offset, site.place);
        match kind {
            // All are S + A - P into a 32-bit field; the -4 for the end of the
            // instruction is already in Cranelift's addend. The GOT kind
            // arrives with `target` = the GOT slot.
            Reloc::X86PCRel4
            | Reloc::X86CallPCRel4
            | Reloc::X86CallPLTRel4
            | Reloc::X86GOTPCRel4 => write_i32(code, offset, value.wrapping_sub(place) as i64),
            _ => Err(RelocError::Unsupported),
        }
    }

    fn saved_registers(&self, unwind: &[(u32, UnwindInst)]) -> Result<Vec<SavedRegister>, String> {
        fp_relative_saved_registers(unwind)
    }
}
