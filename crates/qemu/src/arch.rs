//! Per-architecture facts of the QEMU machine: the program and CPU to run,
//! the ELF machine number, GDB register numbers, the bytes of the stub page
//! and how a C function is entered and left.

use cranelift_exn::isa::{Arch, Reg, RegClass};

/// How one architecture is run under QEMU user mode.
pub(crate) struct QemuArch {
    /// Which architecture.
    pub arch: Arch,
    /// The QEMU user-mode program.
    pub program: &'static str,
    /// The `-cpu` argument, if any.
    pub cpu: Option<&'static str>,
    /// ELF `e_machine`.
    pub elf_machine: u16,
    /// ELF `e_flags`.
    pub elf_flags: u32,
    /// Bytes that fault when executed, repeated over the stub page.
    pub trap_fill: &'static [u8],
    /// The system-call instruction of the stub.
    pub syscall: &'static [u8],
    /// The GDB register holding the system-call number.
    pub syscall_number: usize,
    /// The GDB registers of the system-call arguments, in order; the first
    /// one also receives the result.
    pub syscall_args: [usize; 6],
    /// The GDB register of the system-call result.
    pub syscall_result: usize,
    /// `mprotect`'s system-call number.
    pub sys_mprotect: u64,
    /// The GDB register number of the program counter.
    pub pc: usize,
    /// The `kind` of a `Z0` breakpoint (the breakpoint instruction's length).
    pub breakpoint_kind: u32,
    /// The number of integer registers Cranelift numbers (`Reg::hw` below
    /// it).
    pub int_regs: u8,
    /// Bytes reserved below the stack top at a call (s390x: the register
    /// save area the callee may use).
    pub call_reserve: u64,
}

const X86_64: QemuArch = QemuArch {
    arch: Arch::X86_64,
    program: "qemu-x86_64",
    cpu: Some("max"),
    elf_machine: 62,
    elf_flags: 0,
    // ud2
    trap_fill: &[0x0f, 0x0b],
    // syscall
    syscall: &[0x0f, 0x05],
    // rax; rdi, rsi, rdx, r10, r8, r9 (GDB numbers)
    syscall_number: 0,
    syscall_args: [5, 4, 3, 10, 8, 9],
    syscall_result: 0,
    sys_mprotect: 10,
    pc: 16,
    breakpoint_kind: 1,
    int_regs: 16,
    call_reserve: 0,
};

const AARCH64: QemuArch = QemuArch {
    arch: Arch::Aarch64,
    program: "qemu-aarch64",
    cpu: Some("max"),
    elf_machine: 183,
    elf_flags: 0,
    // udf #0
    trap_fill: &[0, 0, 0, 0],
    // svc #0
    syscall: &[0x01, 0x00, 0x00, 0xd4],
    syscall_number: 8,
    syscall_args: [0, 1, 2, 3, 4, 5],
    syscall_result: 0,
    sys_mprotect: 226,
    pc: 32,
    breakpoint_kind: 4,
    // x0..x30 and sp (31)
    int_regs: 32,
    call_reserve: 0,
};

const RISCV64: QemuArch = QemuArch {
    arch: Arch::Riscv64,
    program: "qemu-riscv64",
    cpu: Some("rv64,v=true,vlen=128,elen=64,Zfh=true,zbkb=true"),
    elf_machine: 243,
    // RVC, double-float ABI
    elf_flags: 0x5,
    // The all-zero halfword is defined illegal.
    trap_fill: &[0, 0],
    // ecall
    syscall: &[0x73, 0x00, 0x00, 0x00],
    // a7; a0..a5
    syscall_number: 17,
    syscall_args: [10, 11, 12, 13, 14, 15],
    syscall_result: 10,
    sys_mprotect: 226,
    pc: 32,
    breakpoint_kind: 4,
    int_regs: 32,
    call_reserve: 0,
};

const S390X: QemuArch = QemuArch {
    arch: Arch::S390x,
    program: "qemu-s390x",
    cpu: None,
    elf_machine: 22,
    elf_flags: 0,
    // Opcode 0x00 is an operation exception.
    trap_fill: &[0, 0],
    // svc 0: the number in r1
    syscall: &[0x0a, 0x00],
    // GDB numbers r0..r15 are 2..17.
    syscall_number: 3,
    syscall_args: [4, 5, 6, 7, 8, 9],
    syscall_result: 4,
    sys_mprotect: 125,
    // pswa
    pc: 1,
    breakpoint_kind: 2,
    int_regs: 16,
    // The 160-byte register save area of the s390x ELF ABI.
    call_reserve: 160,
};

/// The facts for `arch`.
pub(crate) fn for_arch(arch: Arch) -> &'static QemuArch {
    match arch {
        Arch::X86_64 => &X86_64,
        Arch::Aarch64 => &AARCH64,
        Arch::Riscv64 => &RISCV64,
        Arch::S390x => &S390X,
    }
}

impl QemuArch {
    /// The GDB register number of integer register `reg`, if this machine
    /// can reach it.
    pub(crate) fn gdb_register(&self, reg: Reg) -> Option<usize> {
        if reg.class != RegClass::Int || reg.hw >= self.int_regs {
            return None;
        }
        let hw = usize::from(reg.hw);
        Some(match self.arch {
            // Cranelift: rax rcx rdx rbx rsp rbp rsi rdi r8..r15;
            // GDB: rax rbx rcx rdx rsi rdi rbp rsp r8..r15.
            Arch::X86_64 => [0, 2, 3, 1, 7, 6, 4, 5][..].get(hw).copied().unwrap_or(hw),
            Arch::Aarch64 | Arch::Riscv64 => hw,
            Arch::S390x => hw + 2,
        })
    }

    /// The GDB numbers of every integer register and the program counter:
    /// what a nested call saves and restores.
    pub(crate) fn saved_registers(&self) -> Vec<usize> {
        let mut regs: Vec<usize> = (0..self.int_regs)
            .filter_map(|hw| self.gdb_register(Reg::int(hw)))
            .collect();
        regs.push(self.pc);
        regs
    }
}
