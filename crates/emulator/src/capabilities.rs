//! Which Cranelift ISA flags the emulated CPUs can execute.
//!
//! A run test compiled with an ISA flag whose instructions the emulated CPU
//! lacks either faults (an illegal-instruction exception) or, worse, runs and
//! computes a wrong result. [`unsupported_reason`] names such flags so that a
//! runner reports the target as skipped instead of failing or passing it.
//!
//! Each table below lists, per architecture, the boolean ISA flags that
//! unicorn-engine 2.1.5 (QEMU 5.0's TCG) cannot execute on the CPU model this
//! crate selects (see `src/arch/*.rs`); every flag not listed was checked to
//! run correctly. The evidence, one test per flag group, is in
//! `tests/capabilities.rs`.

use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::isa::Arch;

/// A flag the emulated CPU cannot execute, with what it enables.
struct Missing {
    /// The Cranelift ISA flag.
    flag: &'static str,
    /// The extension or facility, for the message.
    what: &'static str,
}

const fn missing(flag: &'static str, what: &'static str) -> Missing {
    Missing { flag, what }
}

/// x86-64 on the `Haswell` model: QEMU 5.0's TCG implements no VEX/EVEX
/// instruction set correctly (AVX decodes but some instructions compute wrong
/// results; FMA3 is an invalid opcode), so every AVX-family flag is out.
/// SSE3–SSE4.2, POPCNT, LZCNT, BMI1/2 and CMPXCHG16B run.
const X86_64: &[Missing] = &[
    missing("has_avx", "AVX"),
    missing("has_avx2", "AVX2"),
    missing("has_fma", "FMA3"),
    missing("has_avx_vnni", "AVX-VNNI"),
    missing("has_avx512bitalg", "AVX-512 BITALG"),
    missing("has_avx512dq", "AVX-512 DQ"),
    missing("has_avx512vl", "AVX-512 VL"),
    missing("has_avx512vbmi", "AVX-512 VBMI"),
    missing("has_avx512f", "AVX-512 F"),
    missing("has_avx512vnni", "AVX-512 VNNI"),
];

/// AArch64 on the `max` model of QEMU 5.0: no FEAT_I8MM (`usdot` is
/// undefined), and the LSE signed minimum/maximum of narrow values
/// (`ldsmax`/`ldsmin` on 32-bit values here, 16-bit ones in upstream's
/// `atomic-rmw-subword-little.clif`) compare unsigned, so `has_lse` code
/// computes wrong results although every other LSE operation is right.
/// FP16, DotProd, PAuth (`sign_return_address*`, `has_pauth`), BTI and CSDB
/// run correctly.
const AARCH64: &[Missing] = &[
    missing(
        "has_lse",
        "LSE: ldsmax/ldsmin of narrow values compare unsigned",
    ),
    missing("has_i8mm", "FEAT_I8MM"),
];

/// RISC-V 64 on the `any` model (RV64IMAFDC): QEMU 5.0 predates the ratified
/// vector, bit-manipulation, half-precision, Zfa, Zicond and Zcb extensions.
/// Their instructions raise illegal-instruction exceptions, except Zcb's,
/// which QEMU 5.0 decodes as something else (wrong results, no fault). The
/// CPU lacks Zbc too, but Cranelift 0.135.8 emits no Zbc instruction, so
/// `has_zbc` code runs; Zca/Zcd (`has_c`), M, A, F, D, Zicsr and Zifencei
/// run.
const RISCV64: &[Missing] = &[
    missing("has_v", "vector"),
    missing("has_zvfh", "vector half-precision"),
    missing("has_zvbb", "vector bit-manipulation"),
    missing("has_zfa", "additional floating-point"),
    missing("has_zfhmin", "minimal half-precision"),
    missing("has_zfh", "half-precision"),
    missing("has_zcb", "extra compressed"),
    missing("has_zbkb", "bit-manipulation for cryptography"),
    missing("has_zba", "address generation"),
    missing("has_zbb", "basic bit-manipulation"),
    missing("has_zbs", "single-bit"),
    missing("has_zicond", "integer conditional operations"),
];

/// s390x on `gen15a`: QEMU 5.0's TCG implements neither the z15 nor the z17
/// facilities.
const S390X: &[Missing] = &[
    missing("has_mie3", "miscellaneous-instruction-extensions 3, z15"),
    missing("has_vxrs_ext2", "vector-enhancements 2, z15"),
    missing("has_mie4", "miscellaneous-instruction-extensions 4, z17"),
    missing("has_vxrs_ext3", "vector-enhancements 3, z17"),
];

fn table(arch: Arch) -> &'static [Missing] {
    match arch {
        Arch::X86_64 => X86_64,
        Arch::Aarch64 => AARCH64,
        Arch::Riscv64 => RISCV64,
        Arch::S390x => S390X,
    }
}

/// Why code compiled for `isa` cannot run in this crate's emulator, or `None`
/// when it can.
///
/// The reason names every enabled ISA flag the emulated CPU for the target's
/// architecture lacks, e.g. `"riscv64 emulated CPU lacks has_v (vector),
/// has_zcb (extra compressed)"`. A target this crate has no CPU for (pulley,
/// 32-bit ISAs) is reported as such. Shared flags select no instructions the
/// emulated CPUs lack, so only the ISA flags are consulted.
pub fn unsupported_reason(isa: &dyn TargetIsa) -> Option<String> {
    let Some(arch) = Arch::from_triple(isa.triple()) else {
        return Some(format!("no emulated CPU for {}", isa.triple()));
    };
    let flags = isa.isa_flags();
    let lacking: Vec<String> = table(arch)
        .iter()
        .filter(|m| {
            flags
                .iter()
                .any(|v| v.name == m.flag && v.as_bool() == Some(true))
        })
        .map(|m| format!("{} ({})", m.flag, m.what))
        .collect();
    if lacking.is_empty() {
        None
    } else {
        Some(format!("{arch} emulated CPU lacks {}", lacking.join(", ")))
    }
}
