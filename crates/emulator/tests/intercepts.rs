//! Instructions unicorn 2.1.5 executes without any exception but wrongly,
//! which `EmulatedMachine` carries out itself from a code hook on each of
//! their addresses (`src/arch/s390x/intercept.rs`, `src/arch/aarch64.rs`).
//!
//! Each family is checked twice: compiled CLIF whose code really contains
//! the instruction (checked in Cranelift's VCode listing), run on edge cases
//! (MIN, MAX, 0, -1; NaNs, infinities, out-of-range values; every width and
//! position of a sub-word compare-and-swap), and hand-assembled forms
//! Cranelift does not emit (every register form, rounding mode, size and
//! ordering; checked with capstone). Expected results are computed here with
//! Rust's own arithmetic, independently of the emulator's code.

use cranelift_exn_testkit::codegen::{self as common, isa};

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::compile::default_isa;
use cranelift_exn::disassemble::disassemble;
use cranelift_exn::isa::{Arch, Reg};
use cranelift_exn::machine::{HostServices, Machine};
use cranelift_exn::memory::Memory;
use cranelift_exn::{Error, Module};
use cranelift_exn_emulator::EmulatedMachine;
use cranelift_exn_emulator::capabilities::unsupported_code;

// ---- compiling and running CLIF ----

/// Whether Cranelift's VCode listing of `clif` for `isa` has `mnemonic` as
/// an instruction (also inside `;`-separated pseudo-instruction sequences).
fn emits(isa: &dyn TargetIsa, clif: &str, mnemonic: &str) -> bool {
    let (_, listing) = common::compile(isa, common::parse(clif));
    common::listing_has(&listing, mnemonic)
}

/// `clif` (one function, `%f`) loaded into an emulator, after checking that
/// its code uses `mnemonic`; nothing in it may be reported as mis-executed.
fn load(isa: &dyn TargetIsa, clif: &str, mnemonic: &str) -> Module {
    assert!(emits(isa, clif, mnemonic), "no {mnemonic} in\n{clif}");
    let arch = Arch::from_triple(isa.triple()).unwrap();
    let machine = Box::new(EmulatedMachine::new(arch).unwrap());
    let module = Module::new(machine, isa, vec![common::parse(clif)]).unwrap();
    assert_eq!(unsupported_code(arch, &module.image().code), None);
    module
}

fn call(module: &Module, args: &[DataValue]) -> Vec<DataValue> {
    module
        .call("%f", args)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn int(ty: &str, value: i64) -> DataValue {
    match ty {
        "i8" => DataValue::I8(value as i8),
        "i16" => DataValue::I16(value as i16),
        "i32" => DataValue::I32(value as i32),
        _ => DataValue::I64(value),
    }
}

fn bits_of(value: &DataValue) -> u64 {
    match value {
        DataValue::I8(x) => *x as u8 as u64,
        DataValue::I16(x) => *x as u16 as u64,
        DataValue::I32(x) => *x as u32 as u64,
        DataValue::I64(x) => *x as u64,
        other => panic!("not an integer: {other:?}"),
    }
}

/// Host services for code that must not call the host.
struct NoHost;

impl HostServices for NoHost {
    fn throw(&mut self, _: &mut dyn Memory, context: u64, _: u64) -> Result<(), Error> {
        panic!("unexpected host call with context {context:#x}");
    }
}

/// Hand-assembled `code` installed in a fresh machine for `arch`, after
/// checking capstone's listing of it.
fn raw(arch: Arch, code: &[u8], listing: &str) -> (EmulatedMachine, u64) {
    assert_eq!(disassemble(arch, code).unwrap(), listing);
    let mut m = EmulatedMachine::new(arch).unwrap();
    let base = m.allocate_code(code.len()).unwrap();
    m.install_code(base, code).unwrap();
    (m, base)
}

/// An immediate as capstone prints it: decimal up to 9, else hex.
fn imm(value: u8) -> String {
    imm_u64(value.into())
}

fn imm_u64(value: u64) -> String {
    if value > 9 {
        format!("{value:#x}")
    } else {
        value.to_string()
    }
}

// ---- s390x signed add and subtract ----

/// MIN, MIN + 1, -1, 0, 1, MAX - 1, MAX of a `bits`-bit integer.
fn edges(bits: u32) -> [i64; 7] {
    let min = i64::MIN >> (64 - bits);
    let max = i64::MAX >> (64 - bits);
    [min, min + 1, -1, 0, 1, max - 1, max]
}

/// `x op y` in `bits` bits: the wrapped result and whether it overflowed.
fn overflowing(subtract: bool, bits: u32, x: i64, y: i64) -> (i64, bool) {
    let exact = if subtract {
        i128::from(x) - i128::from(y)
    } else {
        i128::from(x) + i128::from(y)
    };
    let shift = 128 - bits;
    let wrapped = (exact << shift) >> shift;
    (wrapped as i64, wrapped != exact)
}

#[test]
fn s390x_sadd_ssub_overflow_of_every_width() {
    let isa = default_isa(Arch::S390x).unwrap();
    for (ty, bits) in [("i64", 64), ("i32", 32), ("i16", 16), ("i8", 8)] {
        for (op, subtract) in [("sadd_overflow", false), ("ssub_overflow", true)] {
            let clif = format!(
                "function %f({ty}, {ty}) -> {ty}, i8 {{\nblock0(v0: {ty}, v1: {ty}):\n    v2, v3 = {op} v0, v1\n    return v2, v3\n}}\n"
            );
            // Wide: agrk/sgrk (or agr/sgr); narrower: the 32-bit forms,
            // narrow values shifted to the top of the word first.
            let base = match (bits, subtract) {
                (64, false) => "agr",
                (64, true) => "sgr",
                (_, false) => "ar",
                (_, true) => "sr",
            };
            let mnemonic = [format!("{base}k"), base.to_string()]
                .into_iter()
                .find(|m| emits(&*isa, &clif, m))
                .unwrap_or_else(|| panic!("{ty} {op}: neither {base}k nor {base}"));
            let module = load(&*isa, &clif, &mnemonic);
            for x in edges(bits) {
                for y in edges(bits) {
                    let (want, overflow) = overflowing(subtract, bits, x, y);
                    let got = call(&module, &[int(ty, x), int(ty, y)]);
                    assert_eq!(
                        got,
                        [int(ty, want), DataValue::I8(i8::from(overflow))],
                        "{ty} {op}({x}, {y})"
                    );
                }
            }
        }
    }
}

/// `insn` followed by `ipm %r2` (condition code to r2 bits 34–35) and a
/// return, run with the given registers; returns (condition code, final
/// registers r4–r6).
fn run_s390x_cc(insn: &[u8], listing: &str, regs: [(u8, u64); 2]) -> (u64, [u64; 3]) {
    let mut code = insn.to_vec();
    code.extend([0xb2, 0x22, 0x00, 0x20, 0x07, 0xfe]);
    let (mut m, base) = raw(Arch::S390x, &code, &format!("{listing}\nipm %r2\nbr %r14"));
    assert_eq!(m.intercepted(), [base], "{listing}: not intercepted");
    m.write_reg(Reg::int(6), 0x5555_5555_5555_5555).unwrap();
    for (r, value) in regs {
        m.write_reg(Reg::int(r), value).unwrap();
    }
    m.call_entry(base, 0, &mut [0; 8], &mut NoHost).unwrap();
    let r2 = m.read_reg(Reg::int(2)).unwrap();
    let regs = [4, 5, 6].map(|r| m.read_reg(Reg::int(r)).unwrap());
    ((r2 >> 28) & 3, regs)
}

/// The condition code of a signed result: 0 zero, 1 negative, 2 positive,
/// 3 overflow.
fn arith_cc(result: i64, overflow: bool) -> u64 {
    if overflow {
        3
    } else if result == 0 {
        0
    } else if result < 0 {
        1
    } else {
        2
    }
}

#[test]
fn s390x_every_register_form_sets_the_architected_condition_code() {
    // (bytes, listing, subtract, 64-bit, three-operand (r6 = r4 op r5; the
    // others r4 = r4 op r5))
    let forms: [(&[u8], &str, bool, bool, bool); 8] = [
        (&[0x1a, 0x45], "ar %r4, %r5", false, false, false),
        (&[0x1b, 0x45], "sr %r4, %r5", true, false, false),
        (
            &[0xb9, 0x08, 0x00, 0x45],
            "agr %r4, %r5",
            false,
            true,
            false,
        ),
        (&[0xb9, 0x09, 0x00, 0x45], "sgr %r4, %r5", true, true, false),
        (
            &[0xb9, 0xf8, 0x50, 0x64],
            "ark %r6, %r4, %r5",
            false,
            false,
            true,
        ),
        (
            &[0xb9, 0xf9, 0x50, 0x64],
            "srk %r6, %r4, %r5",
            true,
            false,
            true,
        ),
        (
            &[0xb9, 0xe8, 0x50, 0x64],
            "agrk %r6, %r4, %r5",
            false,
            true,
            true,
        ),
        (
            &[0xb9, 0xe9, 0x50, 0x64],
            "sgrk %r6, %r4, %r5",
            true,
            true,
            true,
        ),
    ];
    // High words that 32-bit forms must keep.
    const HIGH4: u64 = 0xaaaa_0000_0000_0000;
    for (insn, listing, subtract, wide, three) in forms {
        let bits = if wide { 64 } else { 32 };
        for x in edges(bits) {
            for y in edges(bits) {
                let (want, overflow) = overflowing(subtract, bits, x, y);
                // 32-bit forms see only the low words.
                let reg = |v: i64| {
                    if wide {
                        v as u64
                    } else {
                        HIGH4 | u64::from(v as u32)
                    }
                };
                let (cc, [r4, _, r6]) = run_s390x_cc(insn, listing, [(4, reg(x)), (5, reg(y))]);
                assert_eq!(cc, arith_cc(want, overflow), "{listing} ({x}, {y})");
                let (target, before) = if three {
                    (r6, 0x5555_5555_5555_5555)
                } else {
                    (r4, reg(x))
                };
                let expected = if wide {
                    want as u64
                } else {
                    (before & 0xffff_ffff_0000_0000) | u64::from(want as u32)
                };
                assert_eq!(target, expected, "{listing} ({x}, {y}) result");
            }
        }
    }
    // AFI: the 32-bit immediate MIN added to MIN.
    for (imm, x) in [(i32::MIN, i32::MIN), (i32::MIN, 0), (i32::MAX, 1), (-1, 1)] {
        let mut insn = vec![0xc2, 0x49];
        insn.extend(imm.to_be_bytes());
        let (want, overflow) = overflowing(false, 32, i64::from(x), i64::from(imm));
        let (cc, [r4, ..]) = run_s390x_cc(
            &insn,
            &format!(
                "afi %r4, {}{}",
                if imm < 0 { "-" } else { "" },
                imm_u64(i64::from(imm).unsigned_abs())
            ),
            [(4, HIGH4 | u64::from(x as u32)), (5, 0)],
        );
        assert_eq!(cc, arith_cc(want, overflow), "afi {x} + {imm}");
        assert_eq!(r4, HIGH4 | u64::from(want as u32), "afi {x} + {imm}");
    }
}

#[test]
fn s390x_adds_whose_condition_code_is_not_read_run_unhooked() {
    // agrk then a return; agrk then a compare that replaces the condition
    // code before the branch reads it.
    let unread = [0xb9, 0xe8, 0x50, 0x64, 0x07, 0xfe];
    let (m, _) = raw(Arch::S390x, &unread, "agrk %r6, %r4, %r5\nbr %r14");
    assert_eq!(m.intercepted(), Vec::<u64>::new());
    let replaced = [
        0xb9, 0xe8, 0x50, 0x64, 0xb9, 0x20, 0x00, 0x45, 0xa7, 0x84, 0x00, 0x02, 0x07, 0xfe,
    ];
    let (m, _) = raw(
        Arch::S390x,
        &replaced,
        "agrk %r6, %r4, %r5\ncgr %r4, %r5\nje 0xc\nbr %r14",
    );
    assert_eq!(m.intercepted(), Vec::<u64>::new());
}

#[test]
fn installed_code_and_its_hooks_cannot_be_replaced() {
    // ark ; ipm ; br — then an attempt to install a plain return over it.
    let add = [0xb9, 0xf8, 0x50, 0x64, 0xb2, 0x22, 0x00, 0x20, 0x07, 0xfe];
    let (mut m, base) = raw(Arch::S390x, &add, "ark %r6, %r4, %r5\nipm %r2\nbr %r14");
    assert_eq!(m.intercepted(), [base]);
    let mut plain = [0x07u8; 10];
    plain[..4].copy_from_slice(&[0xa7, 0x29, 0x00, 0x07]); // lghi %r2, 7
    plain[4..6].copy_from_slice(&[0x07, 0xfe]);
    let error = m.install_code(base, &plain).unwrap_err().to_string();
    assert!(error.contains("already installed"), "{error}");
    assert_eq!(m.intercepted(), [base]);
    let min = u64::from(i32::MIN as u32);
    m.write_reg(Reg::int(4), min).unwrap();
    m.write_reg(Reg::int(5), min).unwrap();
    m.call_entry(base, 0, &mut [0; 8], &mut NoHost).unwrap();
    // Still the add (overflow: condition code 3), not `lghi %r2, 7`.
    assert_eq!((m.read_reg(Reg::int(2)).unwrap() >> 28) & 3, 3);
}

// ---- s390x conversions to logical ----

/// Special doubles: NaNs (quiet, signalling, negative), infinities, zeros,
/// fractions that round either way, the edges of the 32- and 64-bit
/// ranges, the largest finite, a subnormal.
const DOUBLES: &[u64] = &[
    0x7ff8_0000_0000_0000, // qNaN
    0xfff8_0000_0000_0123, // -qNaN with payload
    0x7ff0_0000_0000_0001, // sNaN
    0x7ff0_0000_0000_0000, // +inf
    0xfff0_0000_0000_0000, // -inf
    0x0000_0000_0000_0000, // +0
    0x8000_0000_0000_0000, // -0
    0x3fe0_0000_0000_0000, // 0.5
    0xbfe0_0000_0000_0000, // -0.5
    0xbff0_0000_0000_0000, // -1
    0x3ff8_0000_0000_0000, // 1.5
    0x4004_0000_0000_0000, // 2.5
    0xc004_0000_0000_0000, // -2.5
    0x41ef_ffff_ffe0_0000, // 2^32 - 1
    0x41f0_0000_0000_0000, // 2^32
    0x43e0_0000_0000_0000, // 2^63
    0x43ef_ffff_ffff_ffff, // 2^64 - 2048
    0x43f0_0000_0000_0000, // 2^64
    0x7fef_ffff_ffff_ffff, // largest finite
    0x0000_0000_0000_0001, // smallest subnormal
];

fn floats() -> Vec<u32> {
    let mut v: Vec<u32> = DOUBLES
        .iter()
        .map(|&d| (f64::from_bits(d) as f32).to_bits())
        .collect();
    // A signalling NaN the f64 → f32 cast would quiet, and 2^32 - 256.
    v.extend([0x7f80_0001, 0x4f7f_ffff]);
    v
}

#[test]
fn s390x_fcvt_to_uint_sat_scalars() {
    let isa = default_isa(Arch::S390x).unwrap();
    for (from, to) in [
        ("f64", "i64"),
        ("f64", "i32"),
        ("f32", "i64"),
        ("f32", "i32"),
    ] {
        let clif = format!(
            "function %f({from}) -> {to} {{\nblock0(v0: {from}):\n    v1 = fcvt_to_uint_sat.{to} v0\n    return v1\n}}\n"
        );
        let module = load(&*isa, &clif, "wclgdb");
        let inputs: Vec<(DataValue, f64)> = if from == "f64" {
            DOUBLES
                .iter()
                .map(|&d| (DataValue::F64(f64::from_bits(d).into()), f64::from_bits(d)))
                .collect()
        } else {
            floats()
                .into_iter()
                .map(|f| {
                    let x = f32::from_bits(f);
                    (DataValue::F32(x.into()), f64::from(x))
                })
                .collect()
        };
        for (arg, x) in inputs {
            // Rust's `as` saturates like `fcvt_to_uint_sat`: NaN to 0.
            let want = if to == "i64" {
                DataValue::I64(x as u64 as i64)
            } else {
                DataValue::I32(x as u32 as i32)
            };
            assert_eq!(call(&module, &[arg]), [want], "{from} -> {to}: {x:e}");
        }
    }
}

#[test]
fn s390x_fcvt_to_uint_sat_vectors() {
    let isa = default_isa(Arch::S390x).unwrap();
    let clif = "function %f(f64x2) -> i64x2 {\nblock0(v0: f64x2):\n    v1 = fcvt_to_uint_sat.i64x2 v0\n    return v1\n}\n";
    let module = load(&*isa, clif, "vclgdb");
    for pair in DOUBLES.chunks(2) {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&pair[0].to_le_bytes());
        bytes[8..].copy_from_slice(&pair[1].to_le_bytes());
        let mut want = [0u8; 16];
        for (i, &d) in pair.iter().enumerate() {
            want[i * 8..i * 8 + 8].copy_from_slice(&(f64::from_bits(d) as u64).to_le_bytes());
        }
        assert_eq!(
            call(&module, &[DataValue::V128(bytes)]),
            [DataValue::V128(want)],
            "{pair:x?}"
        );
    }
    let clif = "function %f(f32x4) -> i32x4 {\nblock0(v0: f32x4):\n    v1 = fcvt_to_uint_sat.i32x4 v0\n    return v1\n}\n";
    let module = load(&*isa, clif, "vclgdb");
    for quad in floats().chunks(4) {
        let mut bytes = [0u8; 16];
        let mut want = [0u8; 16];
        for (i, &f) in quad.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&f.to_le_bytes());
            want[i * 4..i * 4 + 4].copy_from_slice(&(f32::from_bits(f) as u32).to_le_bytes());
        }
        assert_eq!(
            call(&module, &[DataValue::V128(bytes)]),
            [DataValue::V128(want)],
            "{quad:x?}"
        );
    }
}

/// The rounding of a BFP rounding-method field (M3/M5 1, 3–7; 0 is the
/// FPC's, round to nearest even here), applied to a finite `x`.
fn round(mode: u8, x: f64) -> f64 {
    match mode {
        0 | 4 => x.round_ties_even(),
        1 => x.round(),
        // Prepare for shorter precision: see `to_logical`.
        3 | 5 => x.trunc(),
        6 => x.ceil(),
        7 => x.floor(),
        _ => unreachable!("rounding mode {mode}"),
    }
}

/// CONVERT TO LOGICAL of `x` to `bits` bits with rounding `mode`, as the
/// Principles of Operation define it: (result, condition code). Preparing
/// for shorter precision truncates and sets the rightmost bit of an inexact
/// result, so a negative fraction becomes -1: invalid.
fn to_logical(mode: u8, bits: u32, x: f64) -> (u64, u64) {
    let max = u64::MAX >> (64 - bits);
    if x.is_nan() {
        return (0, 3);
    }
    let r = round(mode, x);
    let odd = mode == 3 && r != x;
    if r < 0.0 || (odd && x < 0.0) {
        return (0, 3);
    }
    if r >= 2f64.powi(bits as i32) {
        return (max, 3);
    }
    let value = r as u64 | u64::from(odd);
    let cc = if x == 0.0 {
        0
    } else if x < 0.0 {
        1
    } else {
        2
    };
    (value, cc)
}

/// The extended-format bits of the double `d` (exact).
fn extended(d: u64) -> (u64, u64) {
    let sign = d >> 63;
    let exponent = (d >> 52) & 0x7ff;
    let fraction = d & ((1 << 52) - 1);
    let (exponent, fraction) = match exponent {
        0 if fraction == 0 => (0, 0),
        0 => {
            // Subnormal: normalise.
            let shift = fraction.leading_zeros() - 11;
            let normal = (fraction << shift) & ((1 << 52) - 1);
            (15361 - u64::from(shift), normal)
        }
        0x7ff => (0x7fff, fraction),
        e => (e + 16383 - 1023, fraction),
    };
    // 112-bit fraction: the 52 bits at its top.
    let fraction = u128::from(fraction) << 60;
    let high = sign << 63 | exponent << 48 | (fraction >> 64) as u64;
    (high, fraction as u64)
}

#[test]
fn s390x_scalar_conversions_round_and_set_the_condition_code() {
    // (opcode, name, source format, result bits)
    let forms = [
        (0xb39c_u16, "clfebr", 32, 32),
        (0xb39d, "clfdbr", 64, 32),
        (0xb39e, "clfxbr", 128, 32),
        (0xb3ac, "clgebr", 32, 64),
        (0xb3ad, "clgdbr", 64, 64),
        (0xb3ae, "clgxbr", 128, 64),
    ];
    for (opcode, name, format, bits) in forms {
        for mode in [0u8, 1, 3, 4, 5, 6, 7] {
            // cl..br %r4, mode, %f1 (extended: %f1 is not a pair start; use
            // %f4/%f6), M4 = 4 (inexact suppressed) for half of them.
            let m4 = if mode % 2 == 0 { 4 } else { 0 };
            let fr = if format == 128 { 4 } else { 1 };
            let [op1, op2] = opcode.to_be_bytes();
            let insn = [op1, op2, mode << 4 | m4, 0x40 | fr];
            let listing = format!("{name} %r4, {mode}, %f{fr}, {m4}");
            let mut code = insn.to_vec();
            code.extend([0xb2, 0x22, 0x00, 0x20, 0x07, 0xfe]);
            let (mut m, base) = raw(Arch::S390x, &code, &format!("{listing}\nipm %r2\nbr %r14"));
            assert_eq!(m.intercepted(), [base]);
            let sources: Vec<u64> = match format {
                32 => floats()
                    .into_iter()
                    .map(|f| f64::from(f32::from_bits(f)).to_bits())
                    .collect(),
                _ => DOUBLES.to_vec(),
            };
            for d in sources {
                match format {
                    32 => {
                        let f = (f64::from_bits(d) as f32).to_bits();
                        m.write_reg(Reg::float(1), u64::from(f) << 32).unwrap();
                    }
                    64 => m.write_reg(Reg::float(1), d).unwrap(),
                    _ => {
                        let (high, low) = extended(d);
                        m.write_reg(Reg::float(4), high).unwrap();
                        m.write_reg(Reg::float(6), low).unwrap();
                    }
                }
                const HIGH: u64 = 0x1234_5678_0000_0000;
                m.write_reg(Reg::int(4), HIGH | 0x9abc).unwrap();
                m.call_entry(base, 0, &mut [0; 8], &mut NoHost).unwrap();
                let x = f64::from_bits(d);
                let (want, cc) = to_logical(mode, bits, x);
                let r4 = m.read_reg(Reg::int(4)).unwrap();
                let got = if bits == 32 {
                    assert_eq!(r4 & !0xffff_ffff, HIGH, "{listing} {x:e}: high word");
                    r4 & 0xffff_ffff
                } else {
                    r4
                };
                assert_eq!(got, want, "{listing} {x:e} ({d:#x})");
                let got_cc = (m.read_reg(Reg::int(2)).unwrap() >> 28) & 3;
                assert_eq!(got_cc, cc, "{listing} {x:e}: condition code");
            }
        }
    }
}

#[test]
fn s390x_vclgd_converts_each_element_with_its_rounding_mode() {
    // vl %v2, 16(%r3) ; vclgd %v1, %v2, 3, M4, M5 ; vst %v1, 0(%r3) ; br %r14
    for single in [false, true] {
        for mode in [0u8, 1, 3, 4, 5, 6, 7] {
            let m4 = if single { 8 } else { 0 } | if mode == 5 { 4 } else { 0 };
            let code = [
                0xe7,
                0x20,
                0x30,
                0x10,
                0x00,
                0x06, //
                0xe7,
                0x12,
                0x00,
                mode << 4 | m4,
                0x30,
                0xc0, //
                0xe7,
                0x10,
                0x30,
                0x00,
                0x00,
                0x0e, //
                0x07,
                0xfe,
            ];
            let (m, base) = raw(
                Arch::S390x,
                &code,
                &format!(
                    "vl %v2, 0x10(%r3)\n{}, {}, {mode}\nvst %v1, 0(%r3)\nbr %r14",
                    if single {
                        "wclgdb %f1, %f2"
                    } else {
                        "vclgdb %v1, %v2"
                    },
                    // capstone shows M4 without the single-element bit.
                    m4 & 7
                ),
            );
            assert_eq!(m.intercepted(), [base + 6]);
            for pair in DOUBLES.chunks(2) {
                let mut buffer = [0u8; 32];
                buffer[16..24].copy_from_slice(&pair[0].to_be_bytes());
                buffer[24..].copy_from_slice(&pair[1].to_be_bytes());
                m.call_entry(base, 0, &mut buffer, &mut NoHost).unwrap();
                let element =
                    |i: usize| u64::from_be_bytes(buffer[i * 8..i * 8 + 8].try_into().unwrap());
                let want0 = to_logical(mode, 64, f64::from_bits(pair[0])).0;
                let want1 = if single {
                    0
                } else {
                    to_logical(mode, 64, f64::from_bits(pair[1])).0
                };
                assert_eq!(
                    (element(0), element(1)),
                    (want0, want1),
                    "mode {mode} {pair:x?}"
                );
            }
        }
    }
}

// ---- s390x test-only rotate then and/or/xor selected bits ----

/// The sub-word compare-and-swap Cranelift builds around `rxsbg` with the
/// test-only bit, at each byte and halfword position of a doubleword, in
/// both byte orders, with the expected value matching and not.
#[test]
fn s390x_subword_atomic_cas_at_every_position() {
    let isa = default_isa(Arch::S390x).unwrap();
    const MEMORY: u64 = 0x0123_4567_89ab_cdef;
    for (ty, bytes) in [("i8", 1usize), ("i16", 2)] {
        for endianness in ["big", "little"] {
            for offset in (0..8).step_by(bytes) {
                let clif = format!(
                    "function %f(i64, {ty}, {ty}) -> {ty}, i64 {{\n\
                     ss0 = explicit_slot 8, align = 8\n\
                     block0(v0: i64, v1: {ty}, v2: {ty}):\n\
                     \x20   v3 = stack_addr.i64 ss0\n\
                     \x20   store big v0, v3\n\
                     \x20   v7 = iconst.i64 {offset}\n\
                     \x20   v4 = iadd v3, v7\n\
                     \x20   v5 = atomic_cas {endianness} v4, v1, v2\n\
                     \x20   v6 = load.i64 big v3\n\
                     \x20   return v5, v6\n}}\n"
                );
                let module = load(&*isa, &clif, "rxsbg");
                let memory = MEMORY.to_be_bytes();
                let field = &memory[offset..offset + bytes];
                let current = if endianness == "big" {
                    field.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
                } else {
                    field
                        .iter()
                        .rev()
                        .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
                };
                let replacement = 0xa55a & (u64::MAX >> (64 - 8 * bytes));
                for expected in [current, current ^ 1] {
                    let mut after = memory;
                    if expected == current {
                        let encoded = replacement.to_be_bytes();
                        let mut new = encoded[8 - bytes..].to_vec();
                        if endianness == "little" {
                            new.reverse();
                        }
                        after[offset..offset + bytes].copy_from_slice(&new);
                    }
                    let got = call(
                        &module,
                        &[
                            DataValue::I64(MEMORY as i64),
                            int(ty, expected as i64),
                            int(ty, replacement as i64),
                        ],
                    );
                    assert_eq!(bits_of(&got[0]), current, "{ty} {endianness} +{offset} old");
                    assert_eq!(
                        bits_of(&got[1]),
                        u64::from_be_bytes(after),
                        "{ty} {endianness} +{offset} expected {expected:#x}"
                    );
                }
            }
        }
    }
}

#[test]
fn s390x_test_only_rotate_forms_set_the_condition_code_only() {
    // r{n,o,x}sbg %r4, %r5, 0x80|start, end, rotate
    type Op = (u8, &'static str, fn(u64, u64) -> u64);
    let ops: [Op; 3] = [
        (0x54, "rnsbg", |a, b| a & b),
        (0x56, "rosbg", |a, b| a | b),
        (0x57, "rxsbg", |a, b| a ^ b),
    ];
    let values = [0u64, u64::MAX, 0x0123_4567_89ab_cdef, 0x8000_0000_0000_0001];
    let ranges = [
        (0u8, 63u8, 0u8),
        (32, 47, 16),
        (48, 63, 8),
        (60, 3, 60),
        (5, 5, 1),
    ];
    for (op, name, f) in ops {
        for (start, end, rotate) in ranges {
            let insn = [0xec, 0x45, 0x80 | start, end, rotate, op];
            let listing = format!(
                "{name} %r4, %r5, 0x{:x}, {}, {}",
                0x80 | start,
                imm(end),
                imm(rotate)
            );
            for &a in &values {
                for &b in &values {
                    let (cc, [r4, r5, _]) = run_s390x_cc(&insn, &listing, [(4, a), (5, b)]);
                    // Bit i (0 leftmost) is selected if it lies from start to
                    // end, going round after 63.
                    let combined = f(a, b.rotate_left(u32::from(rotate)));
                    let mut any = false;
                    let mut i = start;
                    loop {
                        any |= combined >> (63 - i) & 1 != 0;
                        if i == end {
                            break;
                        }
                        i = (i + 1) % 64;
                    }
                    assert_eq!(cc, u64::from(any), "{listing} ({a:#x}, {b:#x})");
                    assert_eq!((r4, r5), (a, b), "{listing}: operands changed");
                }
            }
        }
    }
}

// ---- aarch64 LSE signed minimum and maximum ----

#[test]
fn aarch64_atomic_smin_smax_with_lse_of_every_width() {
    let isa = isa(Arch::Aarch64, &["has_lse"]);
    for (ty, bits, suffix) in [
        ("i8", 8, "b"),
        ("i16", 16, "h"),
        ("i32", 32, ""),
        ("i64", 64, ""),
    ] {
        for (op, mnemonic) in [("smax", "ldsmaxal"), ("smin", "ldsminal")] {
            let clif = format!(
                "function %f(i64, {ty}) -> {ty}, i64 {{\n\
                 ss0 = explicit_slot 8, align = 8\n\
                 block0(v0: i64, v1: {ty}):\n\
                 \x20   v2 = stack_addr.i64 ss0\n\
                 \x20   store v0, v2\n\
                 \x20   v3 = atomic_rmw.{ty} {op} v2, v1\n\
                 \x20   v4 = load.i64 v2\n\
                 \x20   return v3, v4\n}}\n"
            );
            let module = load(&*isa, &clif, &format!("{mnemonic}{suffix}"));
            const HIGH: u64 = 0x5a5a_5a5a_5a5a_5a5a;
            let mask = u64::MAX >> (64 - bits);
            for x in edges(bits) {
                for y in edges(bits) {
                    // Little-endian: the value is the doubleword's low bits.
                    let memory = (HIGH & !mask) | (x as u64 & mask);
                    let new = if op == "smax" { x.max(y) } else { x.min(y) };
                    let got = call(&module, &[DataValue::I64(memory as i64), int(ty, y)]);
                    assert_eq!(
                        got,
                        [
                            int(ty, x),
                            DataValue::I64(((HIGH & !mask) | (new as u64 & mask)) as i64)
                        ],
                        "{ty} {op}({x}, {y})"
                    );
                }
            }
        }
    }
}

#[test]
fn aarch64_lse_signed_min_max_in_every_size_and_ordering() {
    // ld{smax,smin}{,a,l,al}{b,h,,} w/x6, w/x7, [x1] then ret; x1 is the
    // call buffer. Also the `stsmax`/`stsmin` aliases (Rt = zero register).
    let mut cases = Vec::new();
    for size in 0..4u32 {
        for opc in [4u32, 5] {
            for (a, r) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                for rt in [7u32, 31] {
                    let word = size << 30
                        | 0x3820_0000
                        | a << 23
                        | r << 22
                        | 6 << 16
                        | opc << 12
                        | 1 << 5
                        | rt;
                    cases.push((word, size, opc == 5, rt));
                }
            }
        }
    }
    for (word, size, min, rt) in cases {
        let mut code = word.to_le_bytes().to_vec();
        code.extend(0xd65f_03c0u32.to_le_bytes()); // ret
        let listing = disassemble(Arch::Aarch64, &code).unwrap();
        let expected_name = format!(
            "{}{}{}{}",
            if rt == 31 { "st" } else { "ld" },
            if min { "smin" } else { "smax" },
            match (word >> 23 & 1, word >> 22 & 1, rt) {
                (1, 1, 31) | (0, 1, 31) => "l",
                (_, _, 31) => "",
                (1, 1, _) => "al",
                (1, 0, _) => "a",
                (0, 1, _) => "l",
                _ => "",
            },
            ["b", "h", "", ""][size as usize]
        );
        let first = listing.lines().next().unwrap();
        // capstone spells the acquire-only aliases of st* as ld* with the
        // zero register; only the operation and size matter here.
        assert!(
            first.starts_with(&expected_name)
                || (rt == 31 && first.contains(if min { "smin" } else { "smax" })),
            "{word:#010x}: {first}, want {expected_name}"
        );
        let (mut m, base) = raw(Arch::Aarch64, &code, &listing);
        assert_eq!(m.intercepted(), [base], "{first}");
        let bits = 8 << size;
        let mask = u64::MAX >> (64 - bits);
        for x in edges(bits) {
            for y in edges(bits) {
                let mut buffer = [0xa5u8; 16];
                buffer[..8].copy_from_slice(&(x as u64).to_le_bytes());
                m.write_reg(Reg::int(6), y as u64).unwrap();
                m.write_reg(Reg::int(7), 0xdead).unwrap();
                m.call_entry(base, 0, &mut buffer, &mut NoHost).unwrap();
                let new = if min { x.min(y) } else { x.max(y) } as u64 & mask;
                let mut want = [0xa5u8; 16];
                want[..8].copy_from_slice(&(x as u64).to_le_bytes());
                want[..bits as usize / 8].copy_from_slice(&new.to_le_bytes()[..bits as usize / 8]);
                assert_eq!(buffer, want, "{first} ({x}, {y}) memory");
                let old = if rt == 31 { 0xdead } else { x as u64 & mask };
                assert_eq!(
                    m.read_reg(Reg::int(7)).unwrap(),
                    old,
                    "{first} ({x}, {y}) Rt"
                );
            }
        }
    }
}

#[test]
fn aarch64_lse_faults_stay_faults() {
    // ldsmaxal w6, w7, [x1] with x1 misaligned by the caller: `add x1, x1,
    // #1` first; and with x1 pointing into the read-only host page.
    let misaligned = [
        0x21, 0x04, 0x00, 0x91, // add x1, x1, #1
        0x27, 0x40, 0xe6, 0xb8, // ldsmaxal w6, w7, [x1]
        0xc0, 0x03, 0x5f, 0xd6, // ret
    ];
    let (m, base) = raw(
        Arch::Aarch64,
        &misaligned,
        "add x1, x1, #1\nldsmaxal w6, w7, [x1]\nret",
    );
    assert_eq!(m.intercepted(), [base + 4]);
    let result = m.call_entry(base, 0, &mut [0; 16], &mut NoHost);
    assert!(result.is_err(), "misaligned atomic ran: {result:?}");
    // The callee argument (x0) points into the read-only host page.
    let store = [
        0xe1, 0x03, 0x00, 0xaa, // mov x1, x0
        0x27, 0x40, 0xe6, 0xb8, // ldsmaxal w6, w7, [x1]
        0xc0, 0x03, 0x5f, 0xd6, // ret
    ];
    let (mut m, base) = raw(
        Arch::Aarch64,
        &store,
        "mov x1, x0\nldsmaxal w6, w7, [x1]\nret",
    );
    let host = m.layout().host_functions;
    let mut before = [0u8; 4];
    m.memory().read(host, &mut before).unwrap();
    // 0xdec0 (the page's fill) is below i32::MAX: a signed maximum with it
    // would store.
    m.write_reg(Reg::int(6), 0x7fff_ffff).unwrap();
    let result = m.call_entry(base, host, &mut [0; 16], &mut NoHost);
    assert!(
        result.is_err(),
        "store to the read-only page ran: {result:?}"
    );
    let mut after = [0u8; 4];
    m.memory().read(host, &mut after).unwrap();
    assert_eq!(before, after);
}
