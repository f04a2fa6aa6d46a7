//! The host's call of an entry trampoline.
//!
//! An exception or trap delivered to the entry trampoline's handler arrives
//! with the trampoline's recorded sp and fp, and with whatever the code that
//! threw or trapped left in every other register; the trampoline's epilogue
//! restores only the callee-saved registers it saved itself
//! ([`crate::trampoline`]). So the call below tells the compiler that it
//! clobbers *every* register the C convention asks a callee to preserve —
//! the compiler then keeps nothing it needs in them — and saves by hand the
//! ones an `asm!` block may not name (the compiler reserves them). The frame
//! pointer needs neither: the trampoline's epilogue restores it from the
//! frame it returns through.

/// Call the entry trampoline `entry(callee, buffer)` (C convention) as a
/// function that may clobber every register but the stack and frame
/// pointers.
///
/// # Safety
///
/// `entry` is an entry trampoline in executable memory, `callee` a function
/// of its signature, `buffer` a 16-byte aligned buffer the signature's
/// size, live for the call.
#[inline(always)]
pub(super) unsafe fn call_entry(entry: u64, callee: u64, buffer: u64) {
    // SAFETY: our caller's contract; the sequence keeps the stack pointer's
    // ABI alignment at the call and leaves it as it found it.
    unsafe { call_entry_on_host(entry, callee, buffer) }
}

/// x86-64 System V: rbx, rbp and r12–r15 are callee-saved; `asm!` may not
/// name rbx (or rbp), so rbx is pushed (with a pad word to keep rsp 16-byte
/// aligned at the call) and popped.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn call_entry_on_host(entry: u64, callee: u64, buffer: u64) {
    // SAFETY: see `call_entry`.
    unsafe {
        std::arch::asm!(
            "push rbx",
            "sub rsp, 8",
            "call {entry}",
            "add rsp, 8",
            "pop rbx",
            entry = in(reg) entry,
            in("rdi") callee,
            in("rsi") buffer,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("C"),
        );
    }
}

/// AArch64 AAPCS64: x19–x28, x29 and the low halves of v8–v15 are
/// callee-saved; `asm!` may not name x19 (LLVM's base pointer) or x29, so
/// x19 is stored below the stack pointer (16 bytes, keeping sp aligned).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn call_entry_on_host(entry: u64, callee: u64, buffer: u64) {
    // SAFETY: see `call_entry`.
    unsafe {
        std::arch::asm!(
            "str x19, [sp, #-16]!",
            "blr {entry}",
            "ldr x19, [sp], #16",
            entry = in(reg) entry,
            in("x0") callee,
            in("x1") buffer,
            out("x20") _,
            out("x21") _,
            out("x22") _,
            out("x23") _,
            out("x24") _,
            out("x25") _,
            out("x26") _,
            out("x27") _,
            out("x28") _,
            out("v8") _,
            out("v9") _,
            out("v10") _,
            out("v11") _,
            out("v12") _,
            out("v13") _,
            out("v14") _,
            out("v15") _,
            clobber_abi("C"),
        );
    }
}

/// RISC-V LP64D: s0–s11 and fs0–fs11 are callee-saved; `asm!` may not name
/// s0 (the frame pointer) or s1 (LLVM's base pointer), so s1 is stored
/// below the stack pointer (16 bytes, keeping sp aligned).
#[cfg(target_arch = "riscv64")]
#[inline(always)]
unsafe fn call_entry_on_host(entry: u64, callee: u64, buffer: u64) {
    // SAFETY: see `call_entry`.
    unsafe {
        std::arch::asm!(
            "addi sp, sp, -16",
            "sd s1, 0(sp)",
            "jalr {entry}",
            "ld s1, 0(sp)",
            "addi sp, sp, 16",
            entry = in(reg) entry,
            in("a0") callee,
            in("a1") buffer,
            out("s2") _,
            out("s3") _,
            out("s4") _,
            out("s5") _,
            out("s6") _,
            out("s7") _,
            out("s8") _,
            out("s9") _,
            out("s10") _,
            out("s11") _,
            out("fs0") _,
            out("fs1") _,
            out("fs2") _,
            out("fs3") _,
            out("fs4") _,
            out("fs5") _,
            out("fs6") _,
            out("fs7") _,
            out("fs8") _,
            out("fs9") _,
            out("fs10") _,
            out("fs11") _,
            clobber_abi("C"),
        );
    }
}

/// s390x ELF ABI: r6–r13 and f8–f15 are callee-saved; `asm!` may not name
/// r11 (the frame pointer), so it is stored in the 8 bytes above the
/// 160-byte register save area the callee may write into (the caller
/// provides that area; `asm!` code is not a call to the compiler, so this
/// block allocates it).
#[cfg(target_arch = "s390x")]
#[inline(always)]
unsafe fn call_entry_on_host(entry: u64, callee: u64, buffer: u64) {
    // SAFETY: see `call_entry`.
    unsafe {
        std::arch::asm!(
            "aghi %r15, -168",
            "stg %r11, 160(%r15)",
            "basr %r14, {entry}",
            "lg %r11, 160(%r15)",
            "aghi %r15, 168",
            entry = in(reg_addr) entry,
            in("r2") callee,
            in("r3") buffer,
            out("r6") _,
            out("r7") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r12") _,
            out("r13") _,
            out("f8") _,
            out("f9") _,
            out("f10") _,
            out("f11") _,
            out("f12") _,
            out("f13") _,
            out("f14") _,
            out("f15") _,
            clobber_abi("C"),
        );
    }
}

/// Any other host: [`super::NativeMachine::new`] refuses to make a machine
/// (no trap delivery), so no entry is ever called here; this plain call
/// only keeps the crate building.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "s390x"
)))]
#[inline(always)]
unsafe fn call_entry_on_host(entry: u64, callee: u64, buffer: u64) {
    // SAFETY: see `call_entry`.
    let f: extern "C" fn(u64, u64) = unsafe { std::mem::transmute(entry as usize) };
    f(callee, buffer);
}
