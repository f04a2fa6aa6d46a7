//! Which Cranelift ISA flags the QEMU machine's CPUs can execute.
//!
//! Code compiled with a flag whose instructions the CPU lacks faults with
//! `SIGILL` (or, worse, computes a wrong result), so a runner asks
//! [`unsupported_reason`] first and skips such a target with the reason.
//!
//! The CPUs are those of Debian 12's `qemu-user` 7.2 with the `-cpu`
//! arguments [`crate::QemuMachine::cpu`] reports. Every ISA flag of
//! Cranelift 0.135 not listed below was checked to run correctly by
//! `clif-exn test --emulator qemu` on run tests built with it (upstream's
//! corpus and `crates/clif-exn/tests/emulators.rs`), except on x86_64, see
//! `X86_64` below.

use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::cpu_lacks;

/// A boolean ISA flag the QEMU CPU lacks, and what it stands for.
struct Lacking {
    flag: &'static str,
    what: &'static str,
}

const fn lacking(flag: &'static str, what: &'static str) -> Lacking {
    Lacking { flag, what }
}

/// RISC-V 64 on `rv64,v=true,vlen=128,elen=64,Zfh=true,zbkb=true`: QEMU
/// 7.2 predates Zfa, Zvfh, Zvbb, Zicond and Zcb (QEMU 8 has them; 7.2 has
/// no property to enable them), and a 128-bit `VLEN` cannot run code built
/// for a larger minimum (`has_zvl256b` and up). Zcb is not listed: QEMU
/// 7.2 stops with `SIGILL` at each of its 16-bit instructions and the
/// machine carries them out (`src/machine/zcb.rs`).
const RISCV64: &[Lacking] = &[
    lacking("has_zfa", "additional floating-point, QEMU 8"),
    lacking("has_zvfh", "vector half-precision, QEMU 8"),
    lacking("has_zvbb", "vector bit-manipulation, QEMU 8"),
    lacking("has_zicond", "integer conditional operations, QEMU 8"),
    lacking("has_zvl256b", "VLEN of 256 bits; the CPU has 128"),
    lacking("has_zvl512b", "VLEN of 512 bits; the CPU has 128"),
    lacking("has_zvl1024b", "VLEN of 1024 bits; the CPU has 128"),
    lacking("has_zvl2048b", "VLEN of 2048 bits; the CPU has 128"),
    lacking("has_zvl4096b", "VLEN of 4096 bits; the CPU has 128"),
    lacking("has_zvl8192b", "VLEN of 8192 bits; the CPU has 128"),
    lacking("has_zvl16384b", "VLEN of 16384 bits; the CPU has 128"),
    lacking("has_zvl32768b", "VLEN of 32768 bits; the CPU has 128"),
    lacking("has_zvl65536b", "VLEN of 65536 bits; the CPU has 128"),
];

/// s390x on QEMU 7.2's default user-mode CPU (z15-class with the vector
/// facilities): the z17 facilities are newer.
const S390X: &[Lacking] = &[
    lacking("has_mie4", "miscellaneous-instruction-extensions 4, z17"),
    lacking("has_vxrs_ext3", "vector-enhancements 3, z17"),
];

/// aarch64 on `max`: every flag Cranelift 0.135 has (LSE, PAuth, FP16,
/// dot product, I8MM) is implemented.
const AARCH64: &[Lacking] = &[];

/// x86_64 on `max`: QEMU 7.2's TCG implements no AVX-512 and no AVX-VNNI.
/// Its AVX, AVX2 and FMA3 (new in 7.2) were not checked — on an x86_64 host
/// runners run x86_64 natively — so they are listed too, and QEMU is not
/// taken for what it was not seen to run.
const X86_64: &[Lacking] = &[
    lacking("has_avx", "AVX, unchecked"),
    lacking("has_avx2", "AVX2, unchecked"),
    lacking("has_fma", "FMA3, unchecked"),
    lacking("has_avx_vnni", "AVX-VNNI"),
    lacking("has_avx512bitalg", "AVX-512 BITALG"),
    lacking("has_avx512dq", "AVX-512 DQ"),
    lacking("has_avx512vl", "AVX-512 VL"),
    lacking("has_avx512vbmi", "AVX-512 VBMI"),
    lacking("has_avx512f", "AVX-512 F"),
    lacking("has_avx512vnni", "AVX-512 VNNI"),
];

fn lacking_flags(arch: Arch) -> &'static [Lacking] {
    match arch {
        Arch::X86_64 => X86_64,
        Arch::Aarch64 => AARCH64,
        Arch::Riscv64 => RISCV64,
        Arch::S390x => S390X,
    }
}

/// Why code compiled for `isa` cannot run on the QEMU machine's CPU for its
/// architecture, or `None` when it can.
///
/// The reason names every enabled ISA flag the CPU lacks, e.g. `"riscv64
/// QEMU 7.2 CPU lacks has_zfa (additional floating-point, QEMU 8)"`; a
/// target the crate has no machine for (pulley, 32-bit ISAs) is reported as
/// such. Whether `qemu-<arch>` is installed is not checked here (see
/// [`crate::QemuMachine::is_installed`]).
pub fn unsupported_reason(isa: &dyn TargetIsa) -> Option<String> {
    let Some(arch) = Arch::from_triple(isa.triple()) else {
        return Some(format!("no QEMU machine for {}", isa.triple()));
    };
    let cpu = format!("{arch} QEMU 7.2 CPU");
    cpu_lacks(
        isa,
        &cpu,
        lacking_flags(arch).iter().map(|l| (l.flag, l.what)),
    )
}
