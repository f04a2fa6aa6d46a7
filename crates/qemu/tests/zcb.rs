//! riscv64 Zcb on the QEMU machine: QEMU 7.2's CPU stops with `SIGILL` at
//! each 16-bit Zcb instruction and the machine carries it out over the GDB
//! stub with the library's semantics (`cranelift_exn::isa::riscv64::zcb`).
//!
//! Each instruction Cranelift 0.135.8 emits is reached through CLIF
//! compiled with `has_zcb`, after checking that the machine code holds its
//! 16-bit encoding (VCode shows it uncompressed), and run on edge values
//! against Rust's own integer operations. Faults stay faults: a Zcb load
//! from unmapped memory and a store to read-only memory are memory faults
//! at their own pc, and a reserved encoding next to Zcb's stays an illegal
//! instruction.

use cranelift_exn::codegen::Context;
use cranelift_exn::codegen::control::ControlPlane;
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{self, TrapCode};
use cranelift_exn::codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_exn::codegen::settings::{self, Configurable};
use cranelift_exn::compile::build_isa;
use cranelift_exn::isa::{Arch, Reg};
use cranelift_exn::machine::{HostFunction, HostServices, Machine};
use cranelift_exn::memory::Memory;
use cranelift_exn::{CallError, Error, Module};
use cranelift_exn_qemu::{QemuMachine, unsupported_reason};

fn machine() -> QemuMachine {
    assert!(
        QemuMachine::is_installed(Arch::Riscv64),
        "qemu-riscv64 is not on PATH: install qemu-user (scripts/dev does)"
    );
    QemuMachine::new(Arch::Riscv64).unwrap_or_else(|e| panic!("{e}"))
}

/// The riscv64 ISA with `flags` enabled (and the flags every cranelift-exn
/// compilation forces).
fn isa(flags: &[&str]) -> OwnedTargetIsa {
    let mut builder = cranelift_exn::codegen::isa::lookup(Arch::Riscv64.triple()).unwrap();
    for flag in flags {
        builder
            .enable(flag)
            .unwrap_or_else(|e| panic!("{flag}: {e}"));
    }
    let raw = builder
        .finish(settings::Flags::new(settings::builder()))
        .unwrap();
    build_isa(
        Arch::Riscv64,
        &settings::Flags::new(settings::builder()),
        &raw.isa_flags(),
    )
    .unwrap()
}

/// `function %f(i64, i64) -> i64` with `body` (instructions separated by
/// `; `) after `block0(v0, v1)`; `ssN = ...` declarations go before it.
fn function(body: &str) -> ir::Function {
    let (slots, insts): (Vec<&str>, Vec<&str>) =
        body.split("; ").partition(|part| part.starts_with("ss"));
    let text = format!(
        "function %f(i64, i64) -> i64 system_v {{\n{}\nblock0(v0: i64, v1: i64):\n{}\n}}\n",
        slots.join("\n"),
        insts.join("\n")
    );
    cranelift_exn::reader::parse_functions(&text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .remove(0)
}

/// The machine code of `body` compiled for `isa`.
fn compile(isa: &dyn TargetIsa, body: &str) -> Vec<u8> {
    let mut ctx = Context::for_function(function(body));
    ctx.compile(isa, &mut ControlPlane::default())
        .unwrap_or_else(|e| panic!("{:?}", e.inner))
        .code_buffer()
        .to_vec()
}

/// The offset of the first 16-bit instruction `h` with `h & mask == want`
/// in the linear decoding of `code`.
fn find_compressed(code: &[u8], (mask, want): (u16, u16)) -> Option<u64> {
    let mut at = 0;
    while at + 2 <= code.len() {
        let h = u16::from_le_bytes([code[at], code[at + 1]]);
        if h & 3 == 3 {
            at += 4;
        } else if h & mask == want {
            return Some(at as u64);
        } else {
            at += 2;
        }
    }
    None
}

/// `c.*` encodings: mask and value of a 16-bit instruction, any registers.
const C_LBU: (u16, u16) = (0xfc03, 0x8000);
const C_LHU: (u16, u16) = (0xfc43, 0x8400);
const C_LH: (u16, u16) = (0xfc43, 0x8440);
const C_SB: (u16, u16) = (0xfc03, 0x8800);
const C_SH: (u16, u16) = (0xfc43, 0x8c00);
const C_ZEXT_B: (u16, u16) = (0xfc7f, 0x9c61);
const C_SEXT_B: (u16, u16) = (0xfc7f, 0x9c65);
const C_ZEXT_H: (u16, u16) = (0xfc7f, 0x9c69);
const C_SEXT_H: (u16, u16) = (0xfc7f, 0x9c6d);
const C_ZEXT_W: (u16, u16) = (0xfc7f, 0x9c71);
const C_NOT: (u16, u16) = (0xfc7f, 0x9c75);
const C_MUL: (u16, u16) = (0xfc63, 0x9c41);

/// Edge values: zero, bytes, halfwords and words at their sign boundaries,
/// MIN, MAX, all ones and mixed patterns.
const VALUES: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x8000_0000,
    0xffff_ffff,
    0x0123_4567_89ab_cdef,
    0xfedc_ba98_7654_8081,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// One instruction's case: the flags, the function body, the encoding
/// that must be in the code and the expected result of `|a, b|`.
struct Case {
    flags: &'static [&'static str],
    body: &'static str,
    encoding: (u16, u16),
    expected: fn(u64, u64) -> u64,
}

/// Compile each case, check its code holds the encoding, and compare its
/// results on every pair of [`VALUES`] with `expected`.
fn run_all(cases: &[Case]) {
    for case in cases {
        let isa = isa(case.flags);
        assert_eq!(unsupported_reason(&*isa), None, "{:?}", case.flags);
        let code = compile(&*isa, case.body);
        assert!(
            find_compressed(&code, case.encoding).is_some(),
            "{:?} {:04x?}: not in the code\n{}\n{code:02x?}",
            case.flags,
            case.encoding,
            case.body
        );
        let module = Module::new(Box::new(machine()), &*isa, vec![function(case.body)]).unwrap();
        for &a in VALUES {
            for &b in VALUES {
                let args = [DataValue::I64(a as i64), DataValue::I64(b as i64)];
                let got = module
                    .call("%f", &args)
                    .unwrap_or_else(|e| panic!("{} ({a:#x}, {b:#x}): {e}", case.body));
                let want = (case.expected)(a, b);
                assert_eq!(
                    got,
                    [DataValue::I64(want as i64)],
                    "{} ({a:#x}, {b:#x}): want {want:#x}",
                    case.body
                );
            }
        }
    }
}

macro_rules! cases {
    ($flags:expr; $($encoding:expr, $body:expr => $expected:expr;)*) => {
        &[$(Case { flags: $flags, body: $body, encoding: $encoding, expected: $expected }),*]
    };
}

#[test]
fn zcb_arithmetic() {
    run_all(cases! {&["has_c", "has_zcb"];
        C_MUL, "v2 = imul v0, v1; return v2" => |a, b| a.wrapping_mul(b);
        C_NOT, "v2 = bnot v0; return v2" => |a, _| !a;
        C_ZEXT_B, "v2 = iconst.i64 0xff; v3 = band v0, v2; return v3" => |a, _| a & 0xff;
    });
    run_all(cases! {&["has_c", "has_zcb", "has_zbb"];
        C_SEXT_B, "v2 = ireduce.i8 v0; v3 = sextend.i64 v2; return v3"
            => |a, _| a as i8 as i64 as u64;
        C_ZEXT_H, "v2 = ireduce.i16 v0; v3 = uextend.i64 v2; return v3" => |a, _| a & 0xffff;
        C_SEXT_H, "v2 = ireduce.i16 v0; v3 = sextend.i64 v2; return v3"
            => |a, _| a as i16 as i64 as u64;
    });
    run_all(cases! {&["has_c", "has_zcb", "has_zba"];
        C_ZEXT_W, "v2 = ireduce.i32 v0; v3 = uextend.i64 v2; return v3"
            => |a, _| a & 0xffff_ffff;
    });
}

/// Stores `v0` and `v1` in a stack slot, then passes its address through
/// `v1 - v1 + addr` so that the access uses a register base (compressible)
/// rather than `sp`.
macro_rules! slot_body {
    ($tail:literal) => {
        concat!(
            "ss0 = explicit_slot 16, align = 8; v2 = stack_addr.i64 ss0; store v0, v2; ",
            "store v1, v2+8; v3 = isub v1, v1; v4 = iadd v2, v3; ",
            $tail
        )
    };
}

#[test]
fn zcb_loads_and_stores() {
    run_all(cases! {&["has_c", "has_zcb"];
        C_LBU, slot_body!("v5 = uload8.i64 v4+3; return v5") => |a, _| (a >> 24) & 0xff;
        C_LHU, slot_body!("v5 = uload16.i64 v4+2; return v5") => |a, _| (a >> 16) & 0xffff;
        C_LH, slot_body!("v5 = sload16.i64 v4+2; return v5")
            => |a, _| (a >> 16) as i16 as i64 as u64;
        C_SB, slot_body!("istore8 v1, v4+2; v5 = load.i64 v4; return v5")
            => |a, b| (a & !0xff_0000) | ((b & 0xff) << 16);
        C_SH, slot_body!("istore16 v1, v4+2; v5 = load.i64 v4; return v5")
            => |a, b| (a & !0xffff_0000) | ((b & 0xffff) << 16);
    });
}

/// Compile `body` with Zcb, check it holds `encoding`, and call it with
/// `args`: it must trap with a heap-out-of-bounds code exactly at the
/// instruction of `encoding`.
fn assert_traps_at(body: &str, encoding: (u16, u16), args: [u64; 2]) {
    let isa = isa(&["has_c", "has_zcb"]);
    let code = compile(&*isa, body);
    let offset = find_compressed(&code, encoding)
        .unwrap_or_else(|| panic!("{encoding:04x?} not in {code:02x?}"));
    let module = Module::new(Box::new(machine()), &*isa, vec![function(body)]).unwrap();
    match module.call("%f", &args.map(|x| DataValue::I64(x as i64))) {
        Err(CallError::Trap {
            code, backtrace, ..
        }) => {
            assert_eq!(code, TrapCode::HEAP_OUT_OF_BOUNDS, "{body} {args:x?}");
            let frame = &backtrace[0];
            assert_eq!(
                (frame.function.as_str(), frame.offset),
                ("%f", offset),
                "{body} {args:x?}"
            );
        }
        other => panic!("{body} {args:x?}: not a trap: {other:?}"),
    }
}

#[test]
fn zcb_accesses_of_unmapped_or_read_only_memory_fault_at_their_pc() {
    // Address 1 (and 1 + 2^63) is unmapped: the c.lbu's own trap.
    let load = "v2 = uload8.i64 v0+1; return v2";
    assert_traps_at(load, C_LBU, [0, 0]);
    assert_traps_at(load, C_LBU, [1 << 63, 0]);
    let store = "istore16 v1, v0+2; return v1";
    assert_traps_at(store, C_SH, [0x10, 7]);
    // The stub page with the host-function slots is mapped read-only and
    // executable: a store faults, a load reads it.
    let slot = machine()
        .host_function_address(HostFunction::Throw)
        .unwrap();
    assert_traps_at(store, C_SH, [slot, 7]);
    let isa = isa(&["has_c", "has_zcb"]);
    let module = Module::new(Box::new(machine()), &*isa, vec![function(load)]).unwrap();
    assert!(
        module
            .call("%f", &[DataValue::I64(slot as i64 - 1), DataValue::I64(0)])
            .is_ok()
    );
}

/// Host services for code that must not call the host.
struct NoHost;

impl HostServices for NoHost {
    fn throw(&mut self, _: &mut dyn Memory, context: u64, _: u64) -> Result<(), Error> {
        panic!("unexpected host call with context {context:#x}");
    }
}

/// `ret`.
const RET: [u8; 4] = 0x0000_8067u32.to_le_bytes();

/// Run the 16-bit instructions `code` then `ret` on a fresh machine, with
/// a2..a5 set to `regs` (`call_entry` sets a0 and a1 itself): the machine
/// and its code's address, and the call's outcome.
fn run_raw(code: &[u16], regs: [u64; 4]) -> (QemuMachine, u64, Result<(), Error>) {
    let mut bytes: Vec<u8> = code.iter().flat_map(|h| h.to_le_bytes()).collect();
    bytes.extend(RET);
    let mut m = machine();
    let base = m.allocate_code(bytes.len()).unwrap();
    // SAFETY: the code is installed in the emulated process, not the host.
    unsafe { m.install_code(base, &bytes) }.unwrap();
    for (i, value) in regs.into_iter().enumerate() {
        m.write_reg(Reg::int(12 + i as u8), value).unwrap();
    }
    // SAFETY: as above; the entry is the code itself.
    let outcome = unsafe { m.call_entry(base, 0, &mut [0; 16], &mut NoHost) };
    (m, base, outcome)
}

// Binary literals are grouped by instruction field.
#[allow(clippy::unusual_byte_groupings)]
#[test]
fn hand_assembled_sequences_and_faults() {
    // c.mul a2, a3; c.not a2; c.sext.h a3; c.lh a4, 2(a5); c.lhu a5, 2(a5):
    // each result checked in its register.
    let c_mul = 0b100_111_100_10_101_01;
    let c_not = 0b100_111_100_11_101_01;
    let c_sext_h = 0b100_111_101_11_011_01;
    let c_lh = 0b100_001_111_11_110_00;
    let c_lhu = 0b100_001_111_01_111_00;
    let (a, b) = (0x1234_5678_9abc_def1u64, 0x0fed_cba9_8765_c321u64);
    let (m, _, outcome) = run_raw(&[c_mul, c_not, c_sext_h], [a, b, 0, 0]);
    outcome.unwrap();
    assert_eq!(m.read_reg(Reg::int(12)).unwrap(), !a.wrapping_mul(b));
    assert_eq!(m.read_reg(Reg::int(13)).unwrap(), 0xffff_ffff_ffff_c321);

    // Loads: the halfword at +2 of 0x0000_0000_8001_fffe is 0x8001.
    let mut m = machine();
    let data = m.allocate_data(8, 8).unwrap();
    m.install_data(data, &0x8001_fffe_u64.to_le_bytes(), true)
        .unwrap();
    let mut bytes: Vec<u8> = [c_lh, c_lhu]
        .iter()
        .flat_map(|h: &u16| h.to_le_bytes())
        .collect();
    bytes.extend(RET);
    let code = m.allocate_code(bytes.len()).unwrap();
    // SAFETY: the code is installed in the emulated process.
    unsafe { m.install_code(code, &bytes) }.unwrap();
    m.write_reg(Reg::int(15), data).unwrap();
    // SAFETY: as above.
    unsafe { m.call_entry(code, 0, &mut [0; 16], &mut NoHost) }.unwrap();
    assert_eq!(m.read_reg(Reg::int(14)).unwrap(), 0xffff_ffff_ffff_8001);
    assert_eq!(m.read_reg(Reg::int(15)).unwrap(), 0x8001);

    // c.nop; c.lbu a3, 0(a2) with a2 unmapped: a memory fault at the
    // c.lbu (no handler is recorded, so the call fails naming it), a3
    // untouched.
    let c_lbu = 0b100_000_100_00_101_00;
    let (m, base, outcome) = run_raw(&[0x0001, c_lbu], [0x40, 0x5555, 0, 0]);
    let message = outcome.expect_err("c.lbu of unmapped memory").to_string();
    assert!(
        message.contains(&format!("pc {:#x} (MemoryAccess)", base + 2)),
        "{message}"
    );
    assert_eq!(m.pc().unwrap(), base + 2);
    assert_eq!(m.read_reg(Reg::int(13)).unwrap(), 0x5555);

    // A reserved encoding next to the Zcb unary ones (funct 110) stays an
    // illegal instruction at its pc.
    let reserved = 0b100_111_100_11_110_01;
    let (_, base, outcome) = run_raw(&[0x0001, reserved], [0; 4]);
    let message = outcome.expect_err("reserved encoding").to_string();
    assert!(
        message.contains(&format!(
            "SIGILL at pc {:#x} (IllegalInstruction)",
            base + 2
        )),
        "{message}"
    );
}
