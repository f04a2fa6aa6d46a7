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

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_exn::isa::{Arch, Reg};
use cranelift_exn::machine::{HostFunction, HostServices, Machine};
use cranelift_exn::memory::Memory;
use cranelift_exn::{CallError, Error, Module};
use cranelift_exn_qemu::{QemuMachine, unsupported_reason};
use cranelift_exn_testkit::codegen;
use cranelift_exn_testkit::zcb::{C_LBU, C_SH, ZCB_CASES, ZcbCase, find_compressed};

fn machine() -> QemuMachine {
    assert!(
        QemuMachine::is_installed(Arch::Riscv64),
        "qemu-riscv64 is not on PATH: install qemu-user (scripts/dev does)"
    );
    QemuMachine::new(Arch::Riscv64).unwrap_or_else(|e| panic!("{e}"))
}

/// The riscv64 ISA with `flags` enabled.
fn isa(flags: &[&str]) -> OwnedTargetIsa {
    codegen::isa(Arch::Riscv64, flags)
}

/// The machine code of `body` compiled for `isa`.
fn compile(isa: &dyn TargetIsa, body: &str) -> Vec<u8> {
    codegen::compile(isa, codegen::binary_function(body)).0
}

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

/// Compile each case, check its code holds the encoding, and compare its
/// results on every pair of [`VALUES`] with `expected`.
fn run_all(cases: &[ZcbCase]) {
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
        let module = Module::new(
            Box::new(machine()),
            &*isa,
            vec![codegen::binary_function(case.body)],
        )
        .unwrap();
        codegen::assert_binary_results(&module, VALUES, VALUES, case.expected, &case.body);
    }
}

#[test]
fn zcb_instructions() {
    run_all(ZCB_CASES);
}

/// Compile `body` with Zcb, check it holds `encoding`, and call it with
/// `args`: it must trap with a heap-out-of-bounds code exactly at the
/// instruction of `encoding`.
fn assert_traps_at(body: &str, encoding: (u16, u16), args: [u64; 2]) {
    let isa = isa(&["has_c", "has_zcb"]);
    let code = compile(&*isa, body);
    let offset = find_compressed(&code, encoding)
        .unwrap_or_else(|| panic!("{encoding:04x?} not in {code:02x?}"));
    let module = Module::new(
        Box::new(machine()),
        &*isa,
        vec![codegen::binary_function(body)],
    )
    .unwrap();
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
    let module = Module::new(
        Box::new(machine()),
        &*isa,
        vec![codegen::binary_function(load)],
    )
    .unwrap();
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
