//! Unit tests of the riscv64 facts, relocation patching, unwind decoding and
//! stubs.

use std::collections::{BTreeSet, HashMap};

use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};

use super::*;
use crate::compile::{CompiledFunction, RelocTarget, build_isa};
use crate::disassemble::disassemble;
use crate::isa::RegClass;
use crate::isa::context;
use crate::isa::tests::{TLS_CLIF, compile_clif, no_values, symbol_sum_clif};

// ---- instruction encoders and decoders (independent of the code above) ----

const T0: u32 = 5;
const RA_N: u32 = 1;
const A0_N: u32 = 10;
const A1_N: u32 = 11;

fn auipc(rd: u32, imm20: u32) -> u32 {
    (imm20 << 12) | (rd << 7) | 0x17
}
fn i_type(opcode: u32, funct3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    (((imm as u32) & 0xfff) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
}
fn jalr(rd: u32, rs1: u32) -> u32 {
    i_type(0x67, 0, rd, rs1, 0)
}
fn addi(rd: u32, rs1: u32) -> u32 {
    i_type(0x13, 0, rd, rs1, 0)
}
fn ld(rd: u32, rs1: u32) -> u32 {
    i_type(0x03, 3, rd, rs1, 0)
}
/// The value `auipc` adds to the pc (sign-extended on RV64).
fn u_imm(insn: u32) -> i64 {
    i64::from((insn & 0xffff_f000) as i32)
}
fn i_imm(insn: u32) -> i64 {
    i64::from((insn as i32) >> 20)
}
fn word(code: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(code[offset..offset + 4].try_into().unwrap())
}
fn words(insns: &[u32]) -> Vec<u8> {
    insns.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[allow(clippy::too_many_arguments)]
fn apply(
    kind: Reloc,
    code: &mut [u8],
    offset: usize,
    place: u64,
    target: u64,
    addend: i64,
    value_at: &dyn Fn(u64) -> Option<u64>,
) -> Result<(), RelocError> {
    SPEC.apply_relocation(RelocSite {
        kind,
        code,
        offset,
        place,
        target,
        addend,
        value_at,
    })
}

/// Displacements around every interesting edge of the hi20/lo12 split.
const DISPLACEMENTS: [i64; 20] = [
    0,
    4,
    -4,
    0x7fe,
    0x7ff,
    0x800,
    0x801,
    0xffe,
    0xfff,
    0x1000,
    -0x7ff,
    -0x800,
    -0x801,
    -0x1000,
    0x1234_5ffe,
    -0x1234_5802,
    (1 << 31) - 0x802,
    (1 << 31) - 0x801,
    -(1 << 31),
    -(1 << 31) - 0x800,
];

const BASE: u64 = 0x0000_7f00_8000_0000;

#[test]
fn split_rounds_and_sign_extends() {
    assert_eq!(split_hi20_lo12(0x7ff), Ok((0, 0x7ff)));
    assert_eq!(split_hi20_lo12(0x800), Ok((1, -0x800)));
    assert_eq!(split_hi20_lo12(0xfff), Ok((1, -1)));
    assert_eq!(split_hi20_lo12(0x1000), Ok((1, 0)));
    assert_eq!(split_hi20_lo12(-0x800), Ok((0, -0x800)));
    assert_eq!(split_hi20_lo12(-0x801), Ok((-1, 0x7ff)));
    assert_eq!(
        split_hi20_lo12((1 << 31) - 0x801),
        Ok(((1 << 19) - 1, 0x7ff))
    );
    assert_eq!(
        split_hi20_lo12(-(1 << 31) - 0x800),
        Ok((-(1 << 19), -0x800))
    );
    for value in [(1 << 31) - 0x800, -(1 << 31) - 0x801, i64::MAX, i64::MIN] {
        assert_eq!(
            split_hi20_lo12(value),
            Err(RelocError::OutOfRange { value })
        );
    }
}

#[test]
fn call_plt_patches_the_auipc_jalr_pair() {
    // jalr targets are even: odd displacements are `Misaligned` (below).
    for (i, &d) in DISPLACEMENTS
        .iter()
        .enumerate()
        .filter(|(_, d)| *d & 1 == 0)
    {
        for (link, tmp) in [(RA_N, RA_N), (0, T0 + 1)] {
            let mut code = words(&[addi(0, 0), auipc(tmp, 0), jalr(link, tmp)]);
            let place = BASE + 0x100 * i as u64 + 4;
            // Split the value between target and addend to check both count.
            let target = place.wrapping_add_signed(d - 2);
            apply(
                Reloc::RiscvCallPlt,
                &mut code,
                4,
                place,
                target,
                2,
                &no_values,
            )
            .unwrap();
            let (a, j) = (word(&code, 4), word(&code, 8));
            assert_eq!(a & 0xfff, auipc(tmp, 0), "auipc rd/opcode kept");
            assert_eq!(j & 0xfffff, jalr(link, tmp), "jalr rd/rs1/opcode kept");
            assert_eq!(u_imm(a) + i_imm(j), d, "displacement {d:#x}");
            assert_eq!(word(&code, 0), addi(0, 0), "neighbour untouched");
        }
    }
}

#[test]
fn call_plt_is_checked_against_capstone() {
    let mut code = words(&[auipc(RA_N, 0), jalr(RA_N, RA_N)]);
    let place = BASE;
    apply(
        Reloc::RiscvCallPlt,
        &mut code,
        0,
        place,
        place + 0x1234_5ffe,
        0,
        &no_values,
    )
    .unwrap();
    assert_eq!(
        disassemble(Arch::Riscv64, &code).unwrap(),
        "auipc ra, 0x12346\njalr ra, ra, -2"
    );
    let mut code = words(&[auipc(RA_N, 0), jalr(RA_N, RA_N)]);
    apply(
        Reloc::RiscvCallPlt,
        &mut code,
        0,
        place,
        place - 0x801,
        0,
        &no_values,
    )
    .unwrap_err();
    let mut code = words(&[auipc(RA_N, 0), jalr(RA_N, RA_N)]);
    apply(
        Reloc::RiscvCallPlt,
        &mut code,
        0,
        place,
        place - 0x802,
        0,
        &no_values,
    )
    .unwrap();
    assert_eq!(
        disassemble(Arch::Riscv64, &code).unwrap(),
        "auipc ra, 0xfffff\njalr ra, ra, 0x7fe"
    );
}

#[test]
fn call_plt_errors() {
    let fresh = || words(&[auipc(RA_N, 0), jalr(RA_N, RA_N)]);
    let place = BASE;
    for d in [(1i64 << 31) - 0x800, -(1 << 31) - 0x802, 1 << 40] {
        let mut code = fresh();
        let r = apply(
            Reloc::RiscvCallPlt,
            &mut code,
            0,
            place,
            place.wrapping_add_signed(d),
            0,
            &no_values,
        );
        assert_eq!(r, Err(RelocError::OutOfRange { value: d }));
        assert_eq!(code, fresh(), "nothing written on error");
    }
    let mut code = fresh();
    let r = apply(
        Reloc::RiscvCallPlt,
        &mut code,
        0,
        place,
        place + 0x101,
        0,
        &no_values,
    );
    assert_eq!(r, Err(RelocError::Misaligned { value: 0x101 }));
    // Not an auipc; a jalr through another register; not a jalr; a
    // compressed pair; a truncated site.
    for bad in [
        words(&[addi(RA_N, RA_N), jalr(RA_N, RA_N)]),
        words(&[auipc(RA_N, 0), jalr(RA_N, T0)]),
        words(&[auipc(RA_N, 0), addi(RA_N, RA_N)]),
        vec![0x01, 0x00, 0x01, 0x00, 0x82, 0x80, 0x01, 0x00],
        words(&[auipc(RA_N, 0)]),
    ] {
        let mut code = bad.clone();
        let r = apply(
            Reloc::RiscvCallPlt,
            &mut code,
            0,
            place,
            place + 0x100,
            0,
            &no_values,
        );
        assert_eq!(r, Err(RelocError::UnexpectedInstruction), "{bad:x?}");
        assert_eq!(code, bad);
    }
}

/// `auipc rd; <lo12 insn> rd, rd` at offset 8 of a 24-byte function,
/// relocated as a hi20 of `kind` and a label-targeted `%pcrel_lo12`.
fn patch_pair(
    hi_kind: Reloc,
    lo_insn: u32,
    target: u64,
    addend: i64,
    base: u64,
) -> Result<Vec<u8>, RelocError> {
    let mut code = words(&[addi(0, 0), addi(0, 0), auipc(A0_N, 0), lo_insn, addi(0, 0)]);
    let auipc_at = base + 8;
    let hi_value = target.wrapping_add_signed(addend);
    let value_at = move |a: u64| (a == auipc_at).then_some(hi_value);
    // Lo first: it must not depend on the auipc having been patched.
    apply(
        Reloc::RiscvPCRelLo12I,
        &mut code,
        12,
        base + 12,
        auipc_at,
        0,
        &value_at,
    )?;
    apply(hi_kind, &mut code, 8, auipc_at, target, addend, &value_at)?;
    Ok(code)
}

#[test]
fn pcrel_hi20_lo12_pairs() {
    for hi_kind in [Reloc::RiscvPCRelHi20, Reloc::RiscvGotHi20] {
        let lo_insn = if hi_kind == Reloc::RiscvGotHi20 {
            ld(A0_N, A0_N)
        } else {
            addi(A0_N, A0_N)
        };
        for (i, &d) in DISPLACEMENTS.iter().enumerate() {
            let base = BASE + 0x40 * i as u64;
            let auipc_at = base + 8;
            let addend = if hi_kind == Reloc::RiscvGotHi20 {
                0
            } else {
                -24
            };
            let target = auipc_at.wrapping_add_signed(d - addend);
            let code = patch_pair(hi_kind, lo_insn, target, addend, base).unwrap();
            let (a, l) = (word(&code, 8), word(&code, 12));
            assert_eq!(a & 0xfff, auipc(A0_N, 0));
            assert_eq!(l & 0xfffff, lo_insn & 0xfffff);
            assert_eq!(u_imm(a) + i_imm(l), d, "{hi_kind:?} {d:#x}");
            if (d & 0xfff) >= 0x800 {
                assert!(i_imm(l) < 0, "lo12 of {d:#x} is negative");
            }
        }
    }
}

#[test]
fn pcrel_hi20_errors() {
    for kind in [Reloc::RiscvPCRelHi20, Reloc::RiscvGotHi20] {
        let mut code = words(&[auipc(A0_N, 0)]);
        let d = (1i64 << 31) - 0x800;
        let r = apply(kind, &mut code, 0, BASE, BASE + d as u64, 0, &no_values);
        assert_eq!(r, Err(RelocError::OutOfRange { value: d }));
        let mut code = words(&[addi(A0_N, A0_N)]);
        let r = apply(kind, &mut code, 0, BASE, BASE + 0x10, 0, &no_values);
        assert_eq!(r, Err(RelocError::UnexpectedInstruction));
    }
}

#[test]
fn pcrel_lo12_errors() {
    let auipc_at = BASE + 8;
    let ok = move |a: u64| (a == auipc_at).then_some(BASE + 0x1000);
    let run = |insns: &[u32], label: u64, value_at: &dyn Fn(u64) -> Option<u64>| {
        let mut code = words(insns);
        apply(
            Reloc::RiscvPCRelLo12I,
            &mut code,
            12,
            BASE + 12,
            label,
            0,
            value_at,
        )
    };
    let nop = addi(0, 0);
    let good = [nop, nop, auipc(A0_N, 0), addi(A0_N, A0_N)];
    assert_eq!(run(&good, auipc_at, &ok), Ok(()));
    // The hi20 relocation is missing.
    assert_eq!(
        run(&good, auipc_at, &no_values),
        Err(RelocError::UnexpectedInstruction)
    );
    // The label is not an auipc / outside the function.
    assert_eq!(
        run(&good, BASE + 4, &|_| Some(BASE)),
        Err(RelocError::UnexpectedInstruction)
    );
    assert_eq!(
        run(&good, BASE - 4, &|_| Some(BASE)),
        Err(RelocError::UnexpectedInstruction)
    );
    assert_eq!(
        run(&good, BASE + 16, &|_| Some(BASE)),
        Err(RelocError::UnexpectedInstruction)
    );
    // The lo12 instruction reads another register than the auipc writes.
    let other = [nop, nop, auipc(A0_N, 0), addi(A0_N, A1_N)];
    assert_eq!(
        run(&other, auipc_at, &ok),
        Err(RelocError::UnexpectedInstruction)
    );
    // Not an I-type instruction (sd a0, 0(a0)).
    let store = [nop, nop, auipc(A0_N, 0), 0x00a5_3023];
    assert_eq!(
        run(&store, auipc_at, &ok),
        Err(RelocError::UnexpectedInstruction)
    );
    // The paired value is out of reach.
    let far = move |a: u64| (a == auipc_at).then_some(auipc_at + (1 << 31));
    assert_eq!(
        run(&good, auipc_at, &far),
        Err(RelocError::OutOfRange { value: 1 << 31 })
    );
}

#[test]
fn absolute_relocations() {
    let mut code = vec![0xaa; 12];
    apply(
        Reloc::Abs8,
        &mut code,
        2,
        BASE + 2,
        0x1122_3344_5566_7788,
        -8,
        &no_values,
    )
    .unwrap();
    assert_eq!(&code[2..10], &0x1122_3344_5566_7780u64.to_le_bytes());
    assert_eq!((code[1], code[10]), (0xaa, 0xaa));
    let r = apply(Reloc::Abs8, &mut code, 6, BASE, 1, 0, &no_values);
    assert_eq!(r, Err(RelocError::OutOfRange { value: 1 }));

    for (target, addend, field) in [
        (0xffff_fff0u64, 0xfi64, 0xffff_ffffu32),
        (0x10, -0x20, 0xffff_fff0),
        (0x7fff_ffff, 0, 0x7fff_ffff),
    ] {
        let mut code = vec![0xaa; 8];
        apply(Reloc::Abs4, &mut code, 4, BASE, target, addend, &no_values).unwrap();
        assert_eq!(&code[4..8], &field.to_le_bytes());
        assert_eq!(&code[..4], &[0xaa; 4]);
    }
    for (target, addend) in [(0x1_0000_0000u64, 0i64), (0, -(1 << 31) - 1)] {
        let mut code = vec![0; 4];
        let value = target.wrapping_add_signed(addend) as i64;
        let r = apply(Reloc::Abs4, &mut code, 0, BASE, target, addend, &no_values);
        assert_eq!(r, Err(RelocError::OutOfRange { value }));
    }
}

#[test]
fn other_kinds_are_unsupported() {
    let mut code = words(&[auipc(A0_N, 0), addi(A0_N, A0_N)]);
    for kind in [
        Reloc::RiscvTlsGdHi20,
        Reloc::X86PCRel4,
        Reloc::Arm64Call,
        Reloc::S390xTlsGd64,
    ] {
        let r = apply(kind, &mut code, 0, BASE, BASE, 0, &no_values);
        assert_eq!(r, Err(RelocError::Unsupported), "{kind:?}");
    }
    assert!(SPEC.uses_got(Reloc::RiscvGotHi20));
    for kind in [
        Reloc::RiscvPCRelHi20,
        Reloc::RiscvPCRelLo12I,
        Reloc::RiscvCallPlt,
        Reloc::Abs8,
        Reloc::Abs4,
    ] {
        assert!(!SPEC.uses_got(kind), "{kind:?}");
    }
}

#[test]
fn registers() {
    let spec = &SPEC;
    let names = |regs: &[Reg]| {
        regs.iter()
            .map(|r| spec.register_name(*r))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(spec.callee_saved()).join(" "),
        "s1 s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 \
         fs0 fs1 fs2 fs3 fs4 fs5 fs6 fs7 fs8 fs9 fs10 fs11"
    );
    assert_eq!(
        names(spec.int_arg_regs()).join(" "),
        "a0 a1 a2 a3 a4 a5 a6 a7"
    );
    assert_eq!(names(&spec.payload_regs()), ["a0", "a1"]);
    assert_eq!(spec.register_name(spec.stack_pointer()), "sp");
    assert_eq!(spec.register_name(spec.frame_pointer().unwrap()), "s0");
    assert_eq!(spec.register_name(spec.link_register().unwrap()), "ra");
    assert_eq!(spec.register_name(Reg::int(0)), "zero");
    assert_eq!(spec.register_name(Reg::float(31)), "ft11");
    assert_eq!(spec.register_name(Reg::int(40)), "x40");
    assert!(!spec.callee_saved().contains(&S0));
    assert!(!spec.callee_saved().contains(&SP));
    assert_eq!(context::size_bytes(spec.callee_saved().len()), 0x110);
}

/// The stubs use the context layout of `super::context`: every offset in
/// the listings is derived here rather than trusted.
#[test]
fn stubs_follow_the_context_layout() {
    let spec = &SPEC;
    let size = context::size_bytes(spec.callee_saved().len());
    // Capstone prints immediates below 10 in decimal.
    let off = |word: usize| match word * 8 {
        small @ 0..10 => small.to_string(),
        large => format!("{large:#x}"),
    };
    let mut throw = vec![
        format!("addi sp, sp, -{size:#x}"),
        format!("sd ra, {}(sp)", off(context::PC)),
        format!("addi t0, sp, {size:#x}"),
        format!("sd t0, {}(sp)", off(context::SP)),
        format!("sd s0, {}(sp)", off(context::FP)),
    ];
    for (i, reg) in spec.int_arg_regs()[..context::ARG_COUNT].iter().enumerate() {
        throw.push(format!(
            "sd {}, {}(sp)",
            spec.register_name(*reg),
            off(context::ARGS + i)
        ));
    }
    let mut resume = Vec::new();
    for (i, reg) in spec.callee_saved().iter().enumerate() {
        let (st, ldi) = match reg.class {
            RegClass::Int => ("sd", "ld"),
            RegClass::Float => ("fsd", "fld"),
        };
        let name = spec.register_name(*reg);
        throw.push(format!("{st} {name}, {}(sp)", off(context::SAVED + i)));
        resume.push(format!("{ldi} {name}, {}(a0)", off(context::SAVED + i)));
    }
    let auipc_at = throw.len() * 4;
    throw.push("auipc t1, 0".into());
    throw.push(format!("ld t1, -{:#x}(t1)", auipc_at + 8));
    throw.extend(["mv a0, sp", "jalr t1", "mv a0, sp"].map(String::from));
    resume.push(format!("ld a1, {}(a0)", off(context::PAYLOAD1)));
    resume.push(format!("ld t1, {}(a0)", off(context::PC)));
    resume.push(format!("ld t2, {}(a0)", off(context::FP)));
    resume.push(format!("ld t3, {}(a0)", off(context::SP)));
    resume.push(format!("ld a0, {}(a0)", off(context::PAYLOAD0)));
    resume.extend(["mv s0, t2", "mv sp, t3", "jr t1"].map(String::from));
    let (throw_stub, resume_stub) = (spec.throw_stub(), spec.resume_stub());
    assert_eq!(throw_stub.listing(), throw.join("\n"));
    assert_eq!(resume_stub.listing(), resume.join("\n"));
    assert_eq!(
        disassemble(Arch::Riscv64, &THROW_CODE).unwrap(),
        throw_stub.listing()
    );
    assert_eq!(
        disassemble(Arch::Riscv64, &RESUME_CODE).unwrap(),
        resume_stub.listing()
    );
    // Uncompressed only: every instruction is a 32-bit word.
    for code in [&THROW_CODE[..], &RESUME_CODE[..]] {
        assert!(code.chunks(4).all(|w| w.len() == 4 && w[0] & 3 == 3));
    }
}

// ---- real Cranelift output ----

fn isa(is_pic: bool, has_c: bool) -> OwnedTargetIsa {
    isa_with(is_pic, has_c, &[])
}

fn isa_with_isa_flags(enable: &[&str]) -> OwnedTargetIsa {
    let shared = settings::Flags::new(settings::builder());
    let mut isa_builder = cranelift_codegen::isa::lookup(Arch::Riscv64.triple()).unwrap();
    for flag in enable {
        isa_builder.enable(flag).unwrap();
    }
    let flags = isa_builder.finish(shared.clone()).unwrap().isa_flags();
    build_isa(Arch::Riscv64, &shared, &flags).unwrap()
}

fn isa_with(is_pic: bool, has_c: bool, extra: &[(&str, &str)]) -> OwnedTargetIsa {
    let mut shared = settings::builder();
    shared
        .set("is_pic", if is_pic { "true" } else { "false" })
        .unwrap();
    for (name, value) in extra {
        shared.set(name, value).unwrap();
    }
    let shared = settings::Flags::new(shared);
    let mut isa_builder = cranelift_codegen::isa::lookup(Arch::Riscv64.triple()).unwrap();
    if has_c {
        isa_builder.enable("has_c").unwrap();
    }
    let flags = isa_builder.finish(shared.clone()).unwrap().isa_flags();
    build_isa(Arch::Riscv64, &shared, &flags).unwrap()
}

fn compile(isa: &dyn TargetIsa, clif: &str) -> Vec<CompiledFunction> {
    compile_clif(isa, clif)
}

/// Calls (plain, try and tail), function addresses and data addresses,
/// near and far, with data addends.
fn reloc_clif() -> String {
    let (clif, sum) = symbol_sum_clif(
        "%relocs",
        ("%near_fn", "%far_fn"),
        &[
            "colocated %near_data",
            "%far_data",
            "colocated %near_data+4660",
            "%far_data-8",
        ],
        &[
            "sig0 = (i64) -> i64 tail",
            "fn2 = colocated %near_tail(i64) -> i64 tail",
            "fn3 = %far_tail(i64) -> i64 tail",
        ],
    );
    let (a, b, c) = (sum + 1, sum + 2, sum + 3);
    format!(
        "{clif}try_call fn2(v{sum}), sig0, block1(ret0), [ default: block3(exn0) ]
block1(v{a}: i64):
try_call fn3(v{a}), sig0, block2(ret0), [ default: block3(exn0) ]
block2(v{b}: i64):
return v{b}
block3(v{c}: i64):
return v{c}
}}

function %tails(i64) -> i64 tail {{
fn0 = colocated %near_tail(i64) -> i64 tail
fn1 = %far_tail(i64) -> i64 tail
block0(v0: i64):
brif v0, block1, block2
block1:
return_call fn0(v0)
block2:
return_call fn1(v0)
}}
"
    )
}

/// A toy linker: each function at `base`, symbols and GOT slots at fixed
/// addresses chosen so hi20/lo12 splits need rounding and negative lo12.
struct Layout {
    symbols: HashMap<String, u64>,
    got: HashMap<String, u64>,
}

impl Layout {
    fn new(base: u64) -> Layout {
        let names = [
            "%near_fn",
            "%far_fn",
            "%near_tail",
            "%far_tail",
            "%near_data",
            "%far_data",
        ];
        let offsets: [i64; 6] = [
            0x1234_5ffe,
            -0x2345_6802,
            0x800,
            -0x7fe,
            0x7fff_0ff8,
            -0x8000_0000,
        ];
        let symbols = names
            .iter()
            .zip(offsets)
            .map(|(n, o)| (n.to_string(), base.wrapping_add_signed(o)))
            .collect();
        let got = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), base + 0x10_0ff8 + 8 * i as u64))
            .collect();
        Layout { symbols, got }
    }

    /// `target` for a relocation, as a linker passes it.
    fn target(&self, base: u64, kind: Reloc, target: &RelocTarget) -> u64 {
        match target {
            RelocTarget::Symbol(name) if SPEC.uses_got(kind) => self.got[name],
            RelocTarget::Symbol(name) => self.symbols[name],
            RelocTarget::Label(offset) => base + u64::from(*offset),
        }
    }

    /// Apply every relocation of `func` at `base`; returns the patched
    /// code or the first error.
    fn link(&self, func: &CompiledFunction, base: u64) -> Result<Vec<u8>, RelocError> {
        let values: HashMap<u64, u64> = func
            .relocs
            .iter()
            .map(|r| {
                let target = self.target(base, r.kind, &r.target);
                (
                    base + u64::from(r.offset),
                    target.wrapping_add_signed(r.addend),
                )
            })
            .collect();
        let value_at = |a: u64| values.get(&a).copied();
        let mut code = func.code.clone();
        for r in &func.relocs {
            apply(
                r.kind,
                &mut code,
                r.offset as usize,
                base + u64::from(r.offset),
                self.target(base, r.kind, &r.target),
                r.addend,
                &value_at,
            )?;
        }
        Ok(code)
    }
}

/// Links [`reloc_clif`] and checks, by decoding the patched instructions,
/// that every relocation computes its intended address. Returns the kinds
/// seen.
fn link_and_check(is_pic: bool, has_c: bool) -> BTreeSet<String> {
    let isa = isa(is_pic, has_c);
    let mut kinds = BTreeSet::new();
    let mut compressed = false;
    for (n, func) in compile(&*isa, &reloc_clif()).iter().enumerate() {
        let base = BASE + 0x1_0000 * n as u64;
        let layout = Layout::new(base);
        let code = layout.link(func, base).unwrap_or_else(|e| {
            panic!(
                "pic={is_pic} c={has_c} {}: {e}\n{:#?}",
                func.name, func.relocs
            )
        });
        let cs = isa.to_capstone().unwrap();
        compressed |= cs
            .disasm_all(&code, 0)
            .unwrap()
            .iter()
            .any(|i| i.bytes().len() == 2);
        for r in &func.relocs {
            let off = r.offset as usize;
            let place = base + u64::from(r.offset);
            let expected = layout
                .target(base, r.kind, &r.target)
                .wrapping_add_signed(r.addend);
            kinds.insert(format!("{:?}", r.kind));
            match r.kind {
                Reloc::RiscvCallPlt => {
                    let got = place
                        .wrapping_add_signed(u_imm(word(&code, off)) + i_imm(word(&code, off + 4)));
                    assert_eq!(got, expected, "{r:?}");
                }
                Reloc::RiscvPCRelHi20 | Reloc::RiscvGotHi20 => {
                    let lo = func
                        .relocs
                        .iter()
                        .find(|l| {
                            l.kind == Reloc::RiscvPCRelLo12I
                                && l.target == RelocTarget::Label(r.offset)
                        })
                        .expect("hi20 has a lo12 partner");
                    let lo_insn = word(&code, lo.offset as usize);
                    let want_op = if r.kind == Reloc::RiscvGotHi20 {
                        ld(0, 0)
                    } else {
                        addi(0, 0)
                    };
                    assert_eq!(lo_insn & 0x707f, want_op, "{lo:?}");
                    let got = place.wrapping_add_signed(u_imm(word(&code, off)) + i_imm(lo_insn));
                    assert_eq!(got, expected, "{r:?}");
                    if r.kind == Reloc::RiscvGotHi20 {
                        let RelocTarget::Symbol(name) = &r.target else {
                            panic!()
                        };
                        assert_eq!(got, layout.got[name]);
                    }
                }
                Reloc::RiscvPCRelLo12I => {
                    assert!(matches!(r.target, RelocTarget::Label(_)), "{r:?}");
                    assert_eq!(r.addend, 0);
                }
                Reloc::Abs8 => {
                    let got = u64::from_le_bytes(code[off..off + 8].try_into().unwrap());
                    assert_eq!(got, expected, "{r:?}");
                }
                other => panic!("unexpected kind {other:?}"),
            }
        }
    }
    assert_eq!(compressed, has_c, "has_c={has_c} emits compressed code");
    kinds
}

fn set(kinds: &[&str]) -> BTreeSet<String> {
    kinds.iter().map(|k| k.to_string()).collect()
}

#[test]
fn links_cranelift_relocations_non_pic() {
    for has_c in [false, true] {
        assert_eq!(
            link_and_check(false, has_c),
            set(&["Abs8", "RiscvCallPlt", "RiscvPCRelHi20", "RiscvPCRelLo12I"]),
            "has_c={has_c}"
        );
    }
}

#[test]
fn links_cranelift_relocations_pic() {
    for has_c in [false, true] {
        assert_eq!(
            link_and_check(true, has_c),
            set(&["RiscvCallPlt", "RiscvGotHi20", "RiscvPCRelLo12I"]),
            "has_c={has_c}"
        );
    }
}

#[test]
fn cranelift_call_out_of_range_is_an_error() {
    let isa = isa(false, false);
    let funcs = compile(&*isa, &reloc_clif());
    let base = BASE;
    let mut layout = Layout::new(base);
    layout.symbols.insert("%near_fn".into(), base + (1 << 32));
    let err = layout.link(&funcs[0], base).unwrap_err();
    assert!(matches!(err, RelocError::OutOfRange { .. }), "{err:?}");
}

#[test]
fn cranelift_tls_is_unsupported() {
    let isa = isa_with(true, false, &[("tls_model", "elf_gd")]);
    let funcs = compile(&*isa, TLS_CLIF);
    let kinds: Vec<_> = funcs[0].relocs.iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&Reloc::RiscvTlsGdHi20), "{kinds:?}");
    let r = funcs[0]
        .relocs
        .iter()
        .find(|r| r.kind == Reloc::RiscvTlsGdHi20)
        .unwrap();
    let mut code = funcs[0].code.clone();
    let e = apply(
        r.kind,
        &mut code,
        r.offset as usize,
        BASE,
        BASE,
        0,
        &no_values,
    );
    assert_eq!(e, Err(RelocError::Unsupported));
}

const PRESSURE_CLIF: &str = "
function %pressure(i64, f64) -> i64, f64 system_v {
fn0 = %ext(i64) -> i64 system_v
block0(v0: i64, v1: f64):
v2 = imul v0, v0
v3 = iadd v2, v0
v4 = imul v3, v2
v5 = bxor v4, v3
v6 = iadd v5, v4
v7 = imul v6, v5
v8 = bxor v7, v6
v9 = iadd v8, v7
v10 = imul v9, v8
v11 = bxor v10, v9
v12 = iadd v11, v10
v13 = imul v12, v11
v20 = fadd v1, v1
v21 = fmul v1, v1
v22 = fsub v21, v1
v23 = fdiv v21, v20
v24 = fadd v23, v22
v25 = fmul v24, v23
v30 = call fn0(v0)
v31 = iadd v30, v2
v32 = iadd v31, v3
v33 = iadd v32, v4
v34 = iadd v33, v5
v35 = iadd v34, v6
v36 = iadd v35, v7
v37 = iadd v36, v8
v38 = iadd v37, v9
v39 = iadd v38, v10
v40 = iadd v39, v11
v41 = iadd v40, v12
v42 = iadd v41, v13
v50 = fadd v20, v21
v51 = fadd v50, v22
v52 = fadd v51, v23
v53 = fadd v52, v24
v54 = fadd v53, v25
return v42, v54
}
";

/// The clobber stores of a Cranelift prologue, as fp-relative slots,
/// decoded instruction by instruction: after the last `mv s0, sp` of the
/// prologue comes `addi sp, sp, -N`, then one `sd`/`fsd` per register at
/// `X(sp)`, i.e. at `s0 - N + X`.
fn decode_clobber_stores(code: &[u8]) -> Vec<SavedRegister> {
    const MV_S0_SP: u32 = 0x0001_0413;
    let mut offset = (0..64)
        .step_by(4)
        .rfind(|&o| word(code, o) == MV_S0_SP)
        .expect("prologue sets s0")
        + 4;
    let adjust = word(code, offset);
    assert_eq!(adjust & 0xfffff, addi(2, 2), "sp adjustment: {adjust:#x}");
    let frame = -i_imm(adjust);
    offset += 4;
    let mut stored = Vec::new();
    loop {
        let insn = word(code, offset);
        let (opcode, funct3, base) = (insn & 0x7f, (insn >> 12) & 7, (insn >> 15) & 0x1f);
        let class = match (opcode, funct3, base) {
            (0x23, 3, 2) => RegClass::Int,
            (0x27, 3, 2) => RegClass::Float,
            _ => break,
        };
        let imm = i64::from((((insn >> 25) << 5) | ((insn >> 7) & 0x1f)) as i32) << 52 >> 52;
        let reg = Reg {
            class,
            hw: ((insn >> 20) & 0x1f) as u8,
        };
        stored.push(SavedRegister {
            reg,
            fp_offset: imm - frame,
        });
        offset += 4;
    }
    stored
}

/// Checks `frame_links` and `saved_registers` against the prologue
/// Cranelift actually emits.
#[test]
fn prologue_matches_frame_links_and_saved_registers() {
    let isa = isa(false, false);
    let func = &compile(&*isa, PRESSURE_CLIF)[0];
    let listing = disassemble(Arch::Riscv64, &func.code[..16]).unwrap();
    assert_eq!(
        listing,
        "addi sp, sp, -0x10\nsd ra, 8(sp)\nsd s0, 0(sp)\nmv s0, sp"
    );
    let links = SPEC.frame_links();
    assert_eq!(
        (links.caller_fp_offset, links.return_address_offset),
        (0, 8)
    );
    let saved = func.saved_registers.clone();
    assert_eq!(saved, decode_clobber_stores(&func.code));
    let ints = saved
        .iter()
        .filter(|s| s.reg.class == RegClass::Int)
        .count();
    let floats = saved
        .iter()
        .filter(|s| s.reg.class == RegClass::Float)
        .count();
    assert!(ints >= 8 && floats >= 4, "{saved:?}");
    for s in &saved {
        assert!(SPEC.callee_saved().contains(&s.reg), "{s:?}");
        assert!(s.fp_offset < 0 && s.fp_offset % 8 == 0, "{s:?}");
    }
}

/// A `tail` function whose `return_call` needs more stack-argument space
/// than it received grows its incoming-argument area in the prologue: it
/// moves the (s0, ra) pair down and points s0 at it again before saving
/// clobbers, so the frame links and the fp-relative slots still hold.
#[test]
fn grown_tail_frame_keeps_the_layout() {
    let isa = isa(false, false);
    let func = &compile(
        &*isa,
        "function %grow(i64) -> i64 tail {
            fn0 = %ext(i64) -> i64 tail
            fn1 = %many(i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64) -> i64 tail
        block0(v0: i64):
            v1 = imul v0, v0
            v2 = call fn0(v0)
            v3 = iadd v1, v2
            return_call fn1(v3, v0, v1, v2, v3, v0, v1, v2, v3, v0, v1, v2)
        }",
    )[0];
    let listing = disassemble(Arch::Riscv64, &func.code[..36]).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "addi sp, sp, -0x10",
            "sd ra, 8(sp)",
            "sd s0, 0(sp)",
            "mv s0, sp"
        ]
    );
    // addi sp, sp, -D; sd ra, 8(sp); ld s0, D(sp); sd s0, 0(sp); mv s0, sp
    let grow = lines[4].strip_prefix("addi sp, sp, -").expect(&listing);
    assert_eq!(
        lines[5..9],
        [
            "sd ra, 8(sp)".to_string(),
            format!("ld s0, {grow}(sp)"),
            "sd s0, 0(sp)".to_string(),
            "mv s0, sp".to_string()
        ]
    );
    assert!(!func.saved_registers.is_empty());
    assert_eq!(func.saved_registers, decode_clobber_stores(&func.code));
}

/// `preserve_all` with vector code saves vector registers too; they are
/// left out (see `saved_registers`) instead of failing the compile, and
/// the scalar slots still match the prologue.
#[test]
fn preserve_all_vector_saves_are_skipped() {
    let isa = isa_with_isa_flags(&["has_v"]);
    let func = &compile(
        &*isa,
        "function %pa(i64, i64) preserve_all {
        block0(v0: i64, v1: i64):
            v2 = splat.i64x2 v0
            v3 = splat.i64x2 v1
            v4 = iadd v2, v3
            v5 = imul v4, v3
            store v5, v1
            return
        }",
    )[0];
    let saved = &func.saved_registers;
    assert!(!saved.is_empty());
    assert_eq!(*saved, decode_clobber_stores(&func.code));
    // The vector saves that were skipped: a `vse8.v vN, (sp)` (STORE-FP
    // major opcode, width field 0, base sp) follows the scalar stores.
    let vector_save = func.code.chunks(4).any(|w| {
        let insn = u32::from_le_bytes(w.try_into().unwrap());
        insn & 0x7f == 0x27 && (insn >> 12) & 7 == 0 && (insn >> 15) & 0x1f == 2
    });
    assert!(vector_save);
}

/// `%deep` with a `slot`-byte frame: more than three probe intervals take
/// Cranelift's stack-probe loop.
fn deep_clif(slot: u32) -> String {
    format!(
        "function %deep(i64) -> i64 system_v {{
    ss0 = explicit_slot {slot}
    fn0 = %deep(i64) -> i64 system_v
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    store notrap aligned v0, v1
    v2 = iconst.i64 1
    v3 = iadd v0, v2
    v4 = call fn0(v3)
    return v4
}}"
    )
}

fn occurrences(code: &[u8], pattern: &[u8]) -> usize {
    code.windows(pattern.len())
        .filter(|w| *w == pattern)
        .count()
}

/// The probe-loop rows are one instruction each, as capstone reads them.
#[test]
fn probe_loop_rows_match_capstone() {
    let isa = isa(false, true);
    let cs = isa.to_capstone().unwrap();
    for rows in [
        &PROBE_LOOP_ROWS,
        &PROBE_LOOP_C_ROWS,
        &ORDERED_PROBE_LOOP_ROWS,
        &ORDERED_PROBE_LOOP_C_ROWS,
    ] {
        let code: Vec<u8> = rows.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        let insns = cs.disasm_all(&code, 0).unwrap();
        let got: Vec<(Vec<u8>, String)> = insns
            .iter()
            .map(|i| {
                (
                    i.bytes().to_vec(),
                    format!("{} {}", i.mnemonic().unwrap(), i.op_str().unwrap()),
                )
            })
            .collect();
        let want: Vec<(Vec<u8>, String)> = rows
            .iter()
            .map(|(b, t)| (b.to_vec(), t.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}

/// Cranelift's loop is found in a compiled function, with and without
/// compressed instructions, and rewritten to probe from the stack pointer
/// down; nothing else changes.
#[test]
fn the_stack_probe_loop_is_rewritten_to_probe_from_the_stack_pointer_down() {
    for has_c in [false, true] {
        let isa = isa_with(
            false,
            has_c,
            &[
                ("enable_probestack", "true"),
                ("probestack_strategy", "inline"),
                ("probestack_size_log2", "12"),
                ("preserve_frame_pointers", "true"),
            ],
        );
        let (old, new): (&[u8], &[u8]) = if has_c {
            (&PROBE_LOOP_C, &ORDERED_PROBE_LOOP_C)
        } else {
            (&PROBE_LOOP, &ORDERED_PROBE_LOOP)
        };
        let original = compile(&*isa, &deep_clif(64 * 1024)).remove(0).code;
        assert_eq!(occurrences(&original, old), 1, "has_c={has_c}");
        let mut code = original.clone();
        assert_eq!(Riscv64.repair_code(&mut code), 1, "has_c={has_c}");
        assert_eq!(occurrences(&code, old), 0, "has_c={has_c}");
        assert_eq!(occurrences(&code, new), 1, "has_c={has_c}");
        let at = code.windows(new.len()).position(|w| w == new).unwrap();
        assert_eq!(code[..at], original[..at]);
        assert_eq!(code[at + new.len()..], original[at + new.len()..]);
        // Three probe intervals or fewer are unrolled in order: nothing to do.
        let mut small = compile(&*isa, &deep_clif(12 * 1024)).remove(0).code;
        assert_eq!(Riscv64.repair_code(&mut small), 0, "has_c={has_c}");
    }
}
