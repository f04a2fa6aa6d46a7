//! RISC-V extensions QEMU 5.0 (unicorn 2.1.5) lacks and the emulator
//! carries out itself: the 32-bit instructions of Zba, Zbb, Zbs, Zbkb and
//! Zicond (illegal there, run from the interrupt hook) and the 16-bit Zcb
//! instructions (run as other instructions there, carried out from code
//! hooks).
//!
//! Each instruction Cranelift 0.135.8 emits is reached through CLIF compiled
//! with the flag, after checking that the function's code contains it (its
//! VCode mnemonic; for Zcb, which VCode shows uncompressed, its 16-bit
//! encoding in the machine code), and run on edge values (0, -1, MIN, MAX,
//! single bits, 32-bit boundaries; every byte value for the byte-wise
//! operations). Instructions Cranelift never emits (`orc.b`, `packh`,
//! `pack` of two registers) are hand-assembled. Expected results come from
//! Rust's own integer operations. Faults stay faults: an instruction the
//! emulator does not carry out, Cranelift's trap instruction and Zcb
//! accesses of unmapped or read-only memory are reported at their own pc.

use Shows::Insn;
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_exn::isa::{Arch, Reg};
use cranelift_exn::machine::{HostServices, Machine};
use cranelift_exn::memory::Memory;
use cranelift_exn::{CallError, Error, Module};
use cranelift_exn_emulator::{EmulatedMachine, unsupported_reason};
use cranelift_exn_testkit::codegen as common;
use cranelift_exn_testkit::zcb::{C_LBU, C_SH, ZCB_CASES, find_compressed};

/// The riscv64 ISA with `flags` enabled.
fn isa(flags: &[&str]) -> OwnedTargetIsa {
    common::isa(Arch::Riscv64, flags)
}

/// Machine code and VCode listing of `body` compiled for `isa`.
fn compile(isa: &dyn TargetIsa, body: &str) -> (Vec<u8>, String) {
    common::compile(isa, common::binary_function(body))
}

/// How a case proves its instruction is in the code.
#[derive(Clone, Copy, Debug)]
enum Shows {
    /// This mnemonic starts an instruction of the VCode listing.
    Insn(&'static str),
    /// A 16-bit instruction (decoding the code linearly) whose bits under
    /// `.0` equal `.1`.
    Compressed(u16, u16),
}

/// Edge values: zero, small numbers and bit indices, byte/halfword/word
/// boundaries, MIN, MAX, all ones, single bits and mixed patterns.
const VALUES: &[u64] = &[
    0,
    1,
    2,
    7,
    31,
    32,
    33,
    63,
    64,
    0x80,
    0xff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 40,
    1 << 62,
    0x0123_4567_89ab_cdef,
    0xfedc_ba98_7654_3210,
    0x00ff_00ff_00ff_00ff,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    0xffff_ffff_ffff_fffe,
    u64::MAX,
];

/// One instruction's case.
struct Case {
    flags: &'static [&'static str],
    body: &'static str,
    shows: Shows,
    expected: fn(u64, u64) -> u64,
}

/// Compile `case`, check its code, and compare its results with `expected`
/// on every pair of [`VALUES`] (and `extra` first operands with every
/// value).
fn check(case: &Case, extra: &[u64]) {
    let isa = isa(case.flags);
    assert_eq!(unsupported_reason(&*isa), None, "{:?}", case.flags);
    let (code, vcode) = compile(&*isa, case.body);
    let found = match case.shows {
        Shows::Insn(mnemonic) => vcode.lines().any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|word| word == mnemonic)
        }),
        Shows::Compressed(mask, want) => find_compressed(&code, (mask, want)).is_some(),
    };
    assert!(
        found,
        "{:?} {:?}: not in the code\n{}\n{vcode}\n{code:02x?}",
        case.flags, case.shows, case.body
    );
    let machine = Box::new(EmulatedMachine::new(Arch::Riscv64).unwrap());
    let module = Module::new(machine, &*isa, vec![common::binary_function(case.body)]).unwrap();
    let firsts: Vec<u64> = VALUES.iter().chain(extra).copied().collect();
    common::assert_binary_results(&module, &firsts, VALUES, case.expected, &case.shows);
}

/// [`check`] every case with no extra first operands.
fn run_all(cases: &[Case]) {
    run_with(cases, &[]);
}

/// [`check`] every case with `extra` first operands.
fn run_with(cases: &[Case], extra: &[u64]) {
    for case in cases {
        check(case, extra);
    }
}

/// Cases that enable `flags`, one a row: what shows the instruction is in
/// the code, the function body (instructions separated by `; `), then `=>`
/// the expected result of `|a, b|`.
macro_rules! cases {
    ($flags:expr; $($shows:expr, $body:expr => $expected:expr;)*) => {
        &[$(Case { flags: $flags, body: $body, shows: $shows, expected: $expected }),*]
    };
}

/// A 32-bit value sign-extended.
fn sext32(x: u32) -> u64 {
    x as i32 as i64 as u64
}

/// Every byte value, in every byte position, next to other patterns.
fn byte_patterns() -> Vec<u64> {
    (0..=255u8)
        .map(|b| {
            u64::from_le_bytes([
                b,
                b ^ 0x5a,
                b.wrapping_add(1),
                !b,
                b.rotate_left(3),
                0,
                0xff,
                b.reverse_bits(),
            ])
        })
        .collect()
}

#[test]
fn zba() {
    run_all(cases! {&["has_zba"];
        Insn("add.uw"), "v2 = ireduce.i32 v1; v3 = uextend.i64 v2; v4 = iadd v0, v3; return v4"
            => |a, b| a.wrapping_add(b & 0xffff_ffff);
        Insn("zext.w"), "v2 = ireduce.i32 v0; v3 = uextend.i64 v2; return v3"
            => |a, _| a & 0xffff_ffff;
        Insn("sh1add"), "v2 = iconst.i64 1; v3 = ishl v1, v2; v4 = iadd v0, v3; return v4"
            => |a, b| a.wrapping_add(b << 1);
        Insn("sh2add"), "v2 = iconst.i64 2; v3 = ishl v1, v2; v4 = iadd v0, v3; return v4"
            => |a, b| a.wrapping_add(b << 2);
        Insn("sh3add"), "v2 = iconst.i64 3; v3 = ishl v1, v2; v4 = iadd v0, v3; return v4"
            => |a, b| a.wrapping_add(b << 3);
        Insn("sh1add.uw"), "v2 = ireduce.i32 v1; v3 = uextend.i64 v2; v4 = iconst.i64 1; v5 = ishl v3, v4; v6 = iadd v0, v5; return v6"
            => |a, b| a.wrapping_add((b & 0xffff_ffff) << 1);
        Insn("sh2add.uw"), "v2 = ireduce.i32 v1; v3 = uextend.i64 v2; v4 = iconst.i64 2; v5 = ishl v3, v4; v6 = iadd v0, v5; return v6"
            => |a, b| a.wrapping_add((b & 0xffff_ffff) << 2);
        Insn("sh3add.uw"), "v2 = ireduce.i32 v1; v3 = uextend.i64 v2; v4 = iconst.i64 3; v5 = ishl v3, v4; v6 = iadd v0, v5; return v6"
            => |a, b| a.wrapping_add((b & 0xffff_ffff) << 3);
        Insn("slli.uw"), "v2 = ireduce.i32 v0; v3 = uextend.i64 v2; v4 = iconst.i64 37; v5 = ishl v3, v4; return v5"
            => |a, _| (a & 0xffff_ffff) << 37;
    });
}

#[test]
fn zbb_logic_min_max_and_extensions() {
    run_all(cases! {&["has_zbb"];
        Insn("andn"), "v2 = bnot v1; v3 = band v0, v2; return v3"
            => |a, b| a & !b;
        Insn("orn"), "v2 = bnot v1; v3 = bor v0, v2; return v3"
            => |a, b| a | !b;
        Insn("xnor"), "v2 = bxor v0, v1; v3 = bnot v2; return v3"
            => |a, b| !(a ^ b);
        Insn("max"), "v2 = smax v0, v1; return v2"
            => |a, b| (a as i64).max(b as i64) as u64;
        Insn("maxu"), "v2 = umax v0, v1; return v2"
            => |a, b| a.max(b);
        Insn("min"), "v2 = smin v0, v1; return v2"
            => |a, b| (a as i64).min(b as i64) as u64;
        Insn("minu"), "v2 = umin v0, v1; return v2"
            => |a, b| a.min(b);
        Insn("sext.b"), "v2 = ireduce.i8 v0; v3 = sextend.i64 v2; return v3"
            => |a, _| a as i8 as i64 as u64;
        Insn("sext.h"), "v2 = ireduce.i16 v0; v3 = sextend.i64 v2; return v3"
            => |a, _| a as i16 as i64 as u64;
        Insn("zext.h"), "v2 = ireduce.i16 v0; v3 = uextend.i64 v2; return v3"
            => |a, _| a & 0xffff;
    });
}

#[test]
fn zbb_counts() {
    run_all(cases! {&["has_zbb"];
        Insn("clz"), "v2 = clz v0; return v2"
            => |a, _| u64::from(a.leading_zeros());
        Insn("clzw"), "v2 = ireduce.i32 v0; v3 = clz v2; v4 = uextend.i64 v3; return v4"
            => |a, _| u64::from((a as u32).leading_zeros());
        Insn("ctz"), "v2 = ctz v0; return v2"
            => |a, _| u64::from(a.trailing_zeros());
        Insn("ctzw"), "v2 = ireduce.i32 v0; v3 = ctz v2; v4 = uextend.i64 v3; return v4"
            => |a, _| u64::from((a as u32).trailing_zeros());
        Insn("cpop"), "v2 = popcnt v0; return v2"
            => |a, _| u64::from(a.count_ones());
        Insn("cpopw"), "v2 = ireduce.i32 v0; v3 = popcnt v2; v4 = uextend.i64 v3; return v4"
            => |a, _| u64::from((a as u32).count_ones());
    });
}

#[test]
fn zbb_rotates_and_rev8() {
    run_all(cases! {&["has_zbb"];
        Insn("rol"), "v2 = rotl v0, v1; return v2"
            => |a, b| a.rotate_left((b % 64) as u32);
        Insn("ror"), "v2 = rotr v0, v1; return v2"
            => |a, b| a.rotate_right((b % 64) as u32);
        Insn("rolw"), "v2 = ireduce.i32 v0; v3 = ireduce.i32 v1; v4 = rotl v2, v3; v5 = sextend.i64 v4; return v5"
            => |a, b| sext32((a as u32).rotate_left((b % 32) as u32));
        Insn("rorw"), "v2 = ireduce.i32 v0; v3 = ireduce.i32 v1; v4 = rotr v2, v3; v5 = sextend.i64 v4; return v5"
            => |a, b| sext32((a as u32).rotate_right((b % 32) as u32));
        Insn("rori"), "v2 = iconst.i64 13; v3 = rotr v0, v2; return v3"
            => |a, _| a.rotate_right(13);
        Insn("rori"), "v2 = iconst.i64 9; v3 = rotl v0, v2; return v3"
            => |a, _| a.rotate_left(9);
        Insn("roriw"), "v2 = ireduce.i32 v0; v3 = iconst.i32 7; v4 = rotr v2, v3; v5 = sextend.i64 v4; return v5"
            => |a, _| sext32((a as u32).rotate_right(7));
    });
    run_with(
        cases! {&["has_zbb"];
            Insn("rev8"), "v2 = bswap v0; return v2"
                => |a, _| a.swap_bytes();
        },
        &byte_patterns(),
    );
}

#[test]
fn zbs() {
    run_all(cases! {&["has_zbs"];
        Insn("bclr"), "v2 = iconst.i64 1; v3 = ishl v2, v1; v4 = bnot v3; v5 = band v0, v4; return v5"
            => |a, b| a & !(1 << (b % 64));
        Insn("bclri"), "v2 = iconst.i64 0xfffffeffffffffff; v3 = band v0, v2; return v3"
            => |a, _| a & !(1 << 40);
        Insn("bext"), "v2 = ushr v0, v1; v3 = iconst.i64 1; v4 = band v2, v3; return v4"
            => |a, b| (a >> (b % 64)) & 1;
        Insn("bexti"), "v2 = iconst.i64 37; v3 = ushr v0, v2; v4 = iconst.i64 1; v5 = band v3, v4; return v5"
            => |a, _| (a >> 37) & 1;
        Insn("binv"), "v2 = iconst.i64 1; v3 = ishl v2, v1; v4 = bxor v0, v3; return v4"
            => |a, b| a ^ (1 << (b % 64));
        Insn("binvi"), "v2 = iconst.i64 0x0004000000000000; v3 = bxor v0, v2; return v3"
            => |a, _| a ^ (1 << 50);
        Insn("bset"), "v2 = iconst.i64 1; v3 = ishl v2, v1; v4 = bor v0, v3; return v4"
            => |a, b| a | (1 << (b % 64));
        Insn("bseti"), "v2 = iconst.i64 0x8000000000000000; v3 = bor v0, v2; return v3"
            => |a, _| a | (1 << 63);
    });
}

#[test]
fn zbkb() {
    run_all(cases! {&["has_zbkb"];
        Insn("packw"), "v2 = ireduce.i16 v0; v3 = uextend.i64 v2; v4 = iadd v3, v1; return v4"
            => |a, b| (a & 0xffff).wrapping_add(b);
        Insn("pack"), "v2 = ireduce.i32 v0; v3 = uextend.i64 v2; v4 = iadd v3, v1; return v4"
            => |a, b| (a & 0xffff_ffff).wrapping_add(b);
    });
    run_with(
        cases! {&["has_zbkb"];
            Insn("brev8"), "v2 = bitrev v0; return v2"
                => |a, _| a.reverse_bits();
        },
        &byte_patterns(),
    );
    // Cranelift 0.135.8 uses rev8 for bswap only with Zbb (above).
}

#[test]
fn zicond() {
    run_all(cases! {&["has_zicond"];
        Insn("czero.eqz"), "v2 = iconst.i64 0; v3 = icmp ne v1, v2; v4 = select v3, v0, v2; return v4"
            => |a, b| if b != 0 { a } else { 0 };
        Insn("czero.nez"), "v2 = iconst.i64 0; v3 = icmp eq v1, v2; v4 = select v3, v0, v2; return v4"
            => |a, b| if b == 0 { a } else { 0 };
        Insn("czero.nez"), "v2 = icmp ult v0, v1; v3 = select v2, v0, v1; v4 = bxor v3, v1; return v4"
            => |a, b| if a < b { a ^ b } else { 0 };
    });
}

/// Each of the testkit's [`ZCB_CASES`], its encoding found in the code.
#[test]
fn zcb_instructions() {
    for case in ZCB_CASES {
        let (mask, want) = case.encoding;
        let shows = Shows::Compressed(mask, want);
        check(
            &Case {
                flags: case.flags,
                body: case.body,
                shows,
                expected: case.expected,
            },
            &[],
        );
    }
}

/// Host services for code that must not call the host.
struct NoHost;

impl HostServices for NoHost {
    fn throw(&mut self, _: &mut dyn Memory, context: u64, _: u64) -> Result<(), Error> {
        panic!("unexpected host call with context {context:#x}");
    }
}

const RET: u32 = 0x0000_8067;
/// `c.nop`.
const C_NOP: u16 = 0x0001;

fn r_type(funct7: u32, rs2: u32, rs1: u32, funct3: u32, rd: u32, opcode: u32) -> u32 {
    funct7 << 25 | rs2 << 20 | rs1 << 15 | funct3 << 12 | rd << 7 | opcode
}

fn i_type(imm12: u32, rs1: u32, funct3: u32, rd: u32, opcode: u32) -> u32 {
    imm12 << 20 | rs1 << 15 | funct3 << 12 | rd << 7 | opcode
}

/// Hand-assembled `code` in a fresh machine.
fn install(code: &[u8]) -> (EmulatedMachine, u64) {
    let mut m = EmulatedMachine::new(Arch::Riscv64).unwrap();
    let base = m.allocate_code(code.len()).unwrap();
    m.install_code(base, code).unwrap();
    (m, base)
}

/// Run `insn` (a0 = op(a2, a3)) then `ret`; returns a0. (`call_entry`
/// sets a0 and a1 itself.)
fn run_raw(insn: u32, a2: u64, a3: u64) -> u64 {
    let mut code = insn.to_le_bytes().to_vec();
    code.extend(RET.to_le_bytes());
    let (mut m, base) = install(&code);
    m.write_reg(Reg::int(12), a2).unwrap();
    m.write_reg(Reg::int(13), a3).unwrap();
    m.call_entry(base, 0, &mut [0; 16], &mut NoHost)
        .unwrap_or_else(|e| panic!("{insn:#010x}: {e}"));
    m.read_reg(Reg::int(10)).unwrap()
}

#[test]
fn hand_assembled_forms() {
    // orc.b a0, a2 on every byte value in every position.
    let orc_b = i_type(0x287, 12, 0b101, 10, 0x13);
    let brev8 = i_type(0x687, 12, 0b101, 10, 0x13);
    let rev8 = i_type(0x6b8, 12, 0b101, 10, 0x13);
    for value in byte_patterns().into_iter().chain(VALUES.iter().copied()) {
        let bytes = value.to_le_bytes();
        let want = u64::from_le_bytes(bytes.map(|b| if b == 0 { 0 } else { 0xff }));
        assert_eq!(run_raw(orc_b, value, 0), want, "orc.b {value:#x}");
        let want = u64::from_le_bytes(bytes.map(u8::reverse_bits));
        assert_eq!(run_raw(brev8, value, 0), want, "brev8 {value:#x}");
        assert_eq!(
            run_raw(rev8, value, 0),
            u64::from_be_bytes(bytes),
            "rev8 {value:#x}"
        );
    }
    let pack = r_type(0b000_0100, 13, 12, 0b100, 10, 0x33);
    let packh = r_type(0b000_0100, 13, 12, 0b111, 10, 0x33);
    let packw = r_type(0b000_0100, 13, 12, 0b100, 10, 0x3b);
    for &a in VALUES {
        for &b in VALUES {
            assert_eq!(run_raw(pack, a, b), (a & 0xffff_ffff) | (b << 32));
            assert_eq!(run_raw(packh, a, b), (a & 0xff) | ((b & 0xff) << 8));
            assert_eq!(
                run_raw(packw, a, b),
                sext32(((a & 0xffff) | ((b & 0xffff) << 16)) as u32)
            );
        }
    }
    // W forms: Cranelift extends their results explicitly, so only raw
    // code sees that the upper 32 bits are the sign of the 32-bit result.
    let rolw = r_type(0b011_0000, 13, 12, 0b001, 10, 0x3b);
    let rorw = r_type(0b011_0000, 13, 12, 0b101, 10, 0x3b);
    let roriw = i_type(0b011_0000 << 5 | 7, 12, 0b101, 10, 0x1b);
    let [clzw, ctzw, cpopw] = [0x600, 0x601, 0x602].map(|f| i_type(f, 12, 0b001, 10, 0x1b));
    for &a in VALUES {
        let w = a as u32;
        for &b in VALUES {
            let n = (b % 32) as u32;
            assert_eq!(
                run_raw(rolw, a, b),
                sext32(w.rotate_left(n)),
                "rolw {a:#x} {b:#x}"
            );
            assert_eq!(
                run_raw(rorw, a, b),
                sext32(w.rotate_right(n)),
                "rorw {a:#x} {b:#x}"
            );
        }
        assert_eq!(
            run_raw(roriw, a, 0),
            sext32(w.rotate_right(7)),
            "roriw {a:#x}"
        );
        assert_eq!(run_raw(clzw, a, 0), u64::from(w.leading_zeros()));
        assert_eq!(run_raw(ctzw, a, 0), u64::from(w.trailing_zeros()));
        assert_eq!(run_raw(cpopw, a, 0), u64::from(w.count_ones()));
    }
    // A result written to x0 is dropped: `clz x0, a2` leaves a0 (the
    // callee argument, 0) alone.
    assert_eq!(run_raw(i_type(0x600, 12, 0b001, 0, 0x13), 1, 0), 0);
}

/// The message of a failed raw call: it must name `pc`.
fn assert_fails_at(result: Result<(), Error>, pc: u64, what: &str) {
    let message = result.expect_err(what).to_string();
    assert!(
        message.contains(&format!("pc {pc:#x}")),
        "{what}: {message}"
    );
}

#[test]
fn instructions_not_carried_out_still_fault_at_their_pc() {
    // c.nop; clmul a0, a2, a3 (Zbc: QEMU 5 lacks it and the emulator does
    // not carry it out); ret. The fault is at the clmul, 2 bytes in.
    let clmul = r_type(0b000_0101, 13, 12, 0b001, 10, 0x33);
    let mut code = C_NOP.to_le_bytes().to_vec();
    code.extend(clmul.to_le_bytes());
    code.extend(RET.to_le_bytes());
    let (m, base) = install(&code);
    assert_fails_at(
        m.call_entry(base, 0, &mut [0; 16], &mut NoHost),
        base + 2,
        "clmul",
    );
    // The CPU is left at the faulting instruction, not 4 bytes past it.
    assert_eq!(m.pc().unwrap(), base + 2);
    // A reserved Zbb-like encoding (`clz` with rs2 = 3) faults too.
    let (m, base) = install(
        &[i_type(0x603, 12, 0b001, 10, 0x13), RET]
            .map(u32::to_le_bytes)
            .concat(),
    );
    assert_fails_at(
        m.call_entry(base, 0, &mut [0; 16], &mut NoHost),
        base,
        "reserved",
    );
    // And after an emulated instruction the next fault is still exact:
    // clz a0, a2; c.unimp (0x0000).
    let mut code = i_type(0x600, 12, 0b001, 10, 0x13).to_le_bytes().to_vec();
    code.extend([0, 0, 0, 0]);
    let (m, base) = install(&code);
    assert_fails_at(
        m.call_entry(base, 0, &mut [0; 16], &mut NoHost),
        base + 4,
        "c.unimp after clz",
    );
}

/// The trap a call of `body` with `args` (compiled with `flags`) ends in.
fn trap(flags: &[&str], body: &str, args: [u64; 2]) -> (TrapCode, u64) {
    let isa = isa(flags);
    let machine = Box::new(EmulatedMachine::new(Arch::Riscv64).unwrap());
    let module = Module::new(machine, &*isa, vec![common::binary_function(body)]).unwrap();
    match module.call("%f", &args.map(|x| DataValue::I64(x as i64))) {
        Err(CallError::Trap { code, pc, .. }) => (code, pc),
        other => panic!("{flags:?} {args:?}: not a trap: {other:?}"),
    }
}

#[test]
fn cranelift_traps_stay_traps() {
    // `trapnz` after emulated Zbb instructions: Cranelift's trap (an
    // all-zero word) is not carried out but delivered with its code.
    let body = "    v2 = clz v0
    v3 = popcnt v1
    v4 = iadd v2, v3
    trapnz v1, user7
    return v4";
    let user7 = TrapCode::user(7).unwrap();
    assert_eq!(trap(&["has_zbb"], body, [1, 1]).0, user7);
    let isa = isa(&["has_zbb"]);
    let module = Module::new(
        Box::new(EmulatedMachine::new(Arch::Riscv64).unwrap()),
        &*isa,
        vec![common::binary_function(body)],
    )
    .unwrap();
    assert_eq!(
        module
            .call("%f", &[DataValue::I64(1), DataValue::I64(0)])
            .unwrap(),
        [DataValue::I64(63)]
    );
    // Division by zero with Zicond, Zba and Zcb code around it.
    let body = "    v2 = udiv v0, v1
    v3 = imul v2, v0
    return v3";
    assert_eq!(
        trap(&["has_c", "has_zcb", "has_zicond", "has_zba"], body, [5, 0]).0,
        TrapCode::INTEGER_DIVISION_BY_ZERO
    );
}

#[test]
// The binary literal is grouped by instruction field.
#[allow(clippy::unusual_byte_groupings)]
fn zcb_accesses_of_unmapped_or_read_only_memory_fault() {
    let flags = &["has_c", "has_zcb"];
    let load = "    v2 = uload8.i64 v0+1
    return v2";
    let (code, _) = compile(&*isa(flags), load);
    assert!(find_compressed(&code, C_LBU).is_some(), "{code:02x?}");
    // Address 1 is unmapped: the load's trap, at the load.
    let (trap_code, _) = trap(flags, load, [0, 0]);
    assert_eq!(trap_code, TrapCode::HEAP_OUT_OF_BOUNDS);

    let store = "    istore16 v1, v0+2
    return v1";
    let (code, _) = compile(&*isa(flags), store);
    assert!(find_compressed(&code, C_SH).is_some(), "{code:02x?}");
    assert_eq!(
        trap(flags, store, [0x10, 7]).0,
        TrapCode::HEAP_OUT_OF_BOUNDS
    );
    // The host-function page is mapped but read-only: the store faults and
    // leaves it unchanged.
    let host = EmulatedMachine::new(Arch::Riscv64)
        .unwrap()
        .layout()
        .host_functions;
    assert_eq!(
        trap(flags, store, [host + 0x100, 7]).0,
        TrapCode::HEAP_OUT_OF_BOUNDS
    );
    // Reading it is fine.
    let module = Module::new(
        Box::new(EmulatedMachine::new(Arch::Riscv64).unwrap()),
        &*isa(flags),
        vec![common::binary_function(load)],
    )
    .unwrap();
    assert_eq!(
        module
            .call("%f", &[DataValue::I64(host as i64), DataValue::I64(0)])
            .unwrap(),
        [DataValue::I64(0xff)]
    );

    // Raw: c.sb a3, 0(a2) with a2 unmapped reports a write fault at its pc
    // (no handler is recorded, so the call fails naming it).
    let c_sb: u16 = 0b100_010_100_00_101_00;
    let mut code = C_NOP.to_le_bytes().to_vec();
    code.extend(c_sb.to_le_bytes());
    code.extend(RET.to_le_bytes());
    let (mut m, base) = install(&code);
    assert_eq!(m.intercepted(), [base + 2]);
    m.write_reg(Reg::int(12), 0x40).unwrap();
    let message = m
        .call_entry(base, 0, &mut [0; 16], &mut NoHost)
        .expect_err("c.sb to unmapped memory")
        .to_string();
    assert!(
        message.contains(&format!("pc {:#x}", base + 2)),
        "{message}"
    );
    assert!(message.contains("write to unmapped memory"), "{message}");
}
