//! Which Cranelift ISA flags the emulated CPUs can execute.
//!
//! A run test compiled with an ISA flag whose instructions the emulated CPU
//! lacks either faults (an illegal-instruction exception) or, worse, runs and
//! computes a wrong result. [`unsupported_reason`] names such flags so that a
//! runner reports the target as skipped instead of failing or passing it.
//!
//! A few instructions of a supported flag set are mis-executed, silently:
//! [`unsupported_code`] finds them in compiled code, so that a runner can
//! skip the target with the instruction named.
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

/// Why machine code for `arch` would compute wrong results in this crate's
/// emulator although the emulated CPU has every flag it was built with, or
/// `None` when no such instruction is found.
///
/// unicorn 2.1.5 (QEMU 5.0's TCG) executes a few s390x instructions that
/// Cranelift's baseline emits but gets their results wrong, without any
/// exception, so they cannot be carried out by this crate's
/// missing-instruction hook (which only sees exceptions). A runner skips the
/// target instead:
///
/// * `rxsbg`/`rosbg`/`rnsbg` with the test-only bit (I3 bit 0): QEMU 5
///   combines the rotated operand with an uninitialised temporary instead of
///   the first operand, so the condition code is wrong (Cranelift's
///   sub-word `atomic_cas` loop never sees its comparison succeed).
/// * `vclgd`/`wclgdb` and the `cl[fg][ed]br` conversions to logical: a NaN
///   converts to all ones, where the architecture (and Cranelift's
///   `fcvt_to_uint_sat`) gives 0.
/// * A signed add or subtract (`ark`, `srk`, `agrk`, …) whose overflow is
///   tested (a condition mask of 1, i.e. condition code 3 only, with at
///   most three loads or moves in between): QEMU 5 reports no overflow for `MIN + MIN`
///   (the sum is 0) and for `0 - MIN`.
///
/// The code is decoded linearly; other architectures have no such
/// instruction.
pub fn unsupported_code(arch: Arch, code: &[u8]) -> Option<String> {
    match arch {
        Arch::S390x => s390x::unsupported_code(code),
        Arch::X86_64 | Arch::Aarch64 | Arch::Riscv64 => None,
    }
}

/// The s390x instructions [`unsupported_code`] looks for.
mod s390x {
    /// Length of the instruction starting with `first`, from its two
    /// leftmost bits.
    fn length(first: u8) -> usize {
        match first >> 6 {
            0 => 2,
            1 | 2 => 4,
            _ => 6,
        }
    }

    /// The signed add or subtract `insn` is, by mnemonic: the instructions
    /// whose overflow condition code QEMU 5 computes wrongly.
    fn signed_add_sub(insn: &[u8]) -> Option<&'static str> {
        let op16 = |i: usize| u16::from_be_bytes([insn[0], insn[i]]);
        Some(match insn.len() {
            2 => match insn[0] {
                0x1a => "ar",
                0x1b => "sr",
                _ => return None,
            },
            4 => match (insn[0], op16(1), insn[1] & 0xf) {
                (0x5a, _, _) => "a",
                (0x5b, _, _) => "s",
                (0x4a, _, _) => "ah",
                (0x4b, _, _) => "sh",
                (0xa7, _, 0xa) => "ahi",
                (0xa7, _, 0xb) => "aghi",
                (0xb9, 0xb908, _) => "agr",
                (0xb9, 0xb909, _) => "sgr",
                (0xb9, 0xb918, _) => "agfr",
                (0xb9, 0xb919, _) => "sgfr",
                (0xb9, 0xb9f8, _) => "ark",
                (0xb9, 0xb9f9, _) => "srk",
                (0xb9, 0xb9e8, _) => "agrk",
                (0xb9, 0xb9e9, _) => "sgrk",
                _ => return None,
            },
            _ => match (insn[0], insn[5], insn[1] & 0xf) {
                (0xe3, 0x5a, _) => "ay",
                (0xe3, 0x5b, _) => "sy",
                (0xe3, 0x08, _) => "ag",
                (0xe3, 0x09, _) => "sg",
                (0xe3, 0x18, _) => "agf",
                (0xe3, 0x19, _) => "sgf",
                (0xe3, 0x7a, _) => "ahy",
                (0xe3, 0x7b, _) => "shy",
                (0xe3, 0x38, _) => "agh",
                (0xe3, 0x39, _) => "sgh",
                (0xec, 0xd8, _) => "ahik",
                (0xec, 0xd9, _) => "aghik",
                (0xeb, 0x6a, _) => "asi",
                (0xeb, 0x7a, _) => "agsi",
                (0xc2, _, 0x9) => "afi",
                (0xc2, _, 0x8) => "agfi",
                _ => return None,
            },
        })
    }

    /// The condition mask of a conditional branch, load or select, if
    /// `insn` is one.
    fn condition_mask(insn: &[u8]) -> Option<u8> {
        let op16 = u16::from_be_bytes([insn[0], insn[1]]);
        match insn.len() {
            // BCR M1,R2 (not the `bcr 0` no-op forms).
            2 if insn[0] == 0x07 => Some(insn[1] >> 4),
            // BC M1,D2(X2,B2).
            4 if insn[0] == 0x47 => Some(insn[1] >> 4),
            // BRC M1,RI2.
            4 if insn[0] == 0xa7 && insn[1] & 0xf == 4 => Some(insn[1] >> 4),
            // LOCR/LOCGR/LOCFHR/SELR/SELGR: M3 in bits 16–19.
            4 if matches!(op16, 0xb9f2 | 0xb9e2 | 0xb9e0 | 0xb9f0 | 0xb9e3) => Some(insn[2] >> 4),
            // BRCL M1,RI2.
            6 if insn[0] == 0xc0 && insn[1] & 0xf == 4 => Some(insn[1] >> 4),
            // LOCHI/LOCGHI/LOCHHI (M3 in bits 12–15), LOC/LOCG/STOC/STOCG
            // (M3 likewise).
            6 if (insn[0] == 0xec && matches!(insn[5], 0x42 | 0x46 | 0x4e))
                || (insn[0] == 0xeb && matches!(insn[5], 0xf2 | 0xe2 | 0xf3 | 0xe3)) =>
            {
                Some(insn[1] & 0xf)
            }
            _ => None,
        }
    }

    /// Whether `insn` is one of the loads and moves Cranelift puts between
    /// a flag producer and its consumer, none of which sets the condition
    /// code: `lhi`, `lghi`, `lr`, `lgr`, `la`, `lay`, `l`, `lg`, `lgfi`,
    /// `iilf`, `llilf`.
    fn keeps_cc(insn: &[u8]) -> bool {
        match insn.len() {
            2 => insn[0] == 0x18,
            4 => {
                matches!(insn[0], 0x41 | 0x58)
                    || (insn[0] == 0xa7 && matches!(insn[1] & 0xf, 8 | 9))
                    || u16::from_be_bytes([insn[0], insn[1]]) == 0xb904
            }
            _ => {
                (insn[0] == 0xe3 && matches!(insn[5], 0x71 | 0x04))
                    || (insn[0] == 0xc0 && matches!(insn[1] & 0xf, 0x1 | 0x9 | 0xf))
            }
        }
    }

    /// A conversion to logical from BFP, by mnemonic.
    fn convert_to_logical(insn: &[u8]) -> Option<&'static str> {
        let op16 = u16::from_be_bytes([insn[0], insn[1]]);
        match insn.len() {
            4 => Some(match op16 {
                0xb39c => "clfebr",
                0xb39d => "clfdbr",
                0xb39e => "clfxbr",
                0xb3ac => "clgebr",
                0xb3ad => "clgdbr",
                0xb3ae => "clgxbr",
                _ => return None,
            }),
            // VCLGD: M4 bit 8 selects the single-element form.
            6 if insn[0] == 0xe7 && insn[5] == 0xc0 => Some(if insn[3] & 0xf & 8 != 0 {
                "wclgdb"
            } else {
                "vclgdb"
            }),
            _ => None,
        }
    }

    /// `rxsbg`/`rosbg`/`rnsbg` with the test-only bit, by mnemonic.
    fn test_only_rotate(insn: &[u8]) -> Option<&'static str> {
        if insn.len() != 6 || insn[0] != 0xec || insn[2] & 0x80 == 0 {
            return None;
        }
        match insn[5] {
            0x54 => Some("rnsbg"),
            0x56 => Some("rosbg"),
            0x57 => Some("rxsbg"),
            _ => None,
        }
    }

    pub(super) fn unsupported_code(code: &[u8]) -> Option<String> {
        let mut insns = Vec::new();
        let mut at = 0;
        while at < code.len() {
            let len = length(code[at]);
            let Some(insn) = code.get(at..at + len) else {
                break;
            };
            insns.push(insn);
            at += len;
        }
        let mut found: Vec<String> = Vec::new();
        let mut note = |reason: String| {
            if !found.contains(&reason) {
                found.push(reason);
            }
        };
        for (i, insn) in insns.iter().enumerate() {
            if let Some(name) = test_only_rotate(insn) {
                note(format!(
                    "{name} with the test-only bit (QEMU 5 tests an uninitialised \
                     value: wrong condition code)"
                ));
            }
            if let Some(name) = convert_to_logical(insn) {
                note(format!(
                    "{name} (a NaN converts to all ones; the architecture gives 0)"
                ));
            }
            if condition_mask(insn) == Some(1) {
                // The instruction that set the condition code: the nearest
                // earlier one that is not a plain load or move.
                let producer = insns[..i]
                    .iter()
                    .rev()
                    .take(4)
                    .find(|p| !keeps_cc(p))
                    .and_then(|p| signed_add_sub(p));
                if let Some(name) = producer {
                    note(format!(
                        "the overflow condition code of {name} (QEMU 5 reports no \
                         overflow for MIN + MIN and 0 - MIN)"
                    ));
                }
            }
        }
        (!found.is_empty()).then(|| format!("emulated s390x CPU mis-executes {}", found.join("; ")))
    }
}
