//! Instructions unicorn's CPUs lack, run in QEMU: RISC-V V (`vadd.vx`,
//! `vmul.vv`), RISC-V Zfh (`fadd.h`) and
//! s390x miscellaneous-instruction-extensions 3 (`ncgrk`, `ocgrk`, `popcnt` with a mask), each
//! compiled with the library, shown in Cranelift's listing and checked by
//! its results.

use cranelift_exn::ModuleBuilder;
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::isa::OwnedTargetIsa;
use cranelift_exn::isa::Arch;
use cranelift_exn_qemu::QemuMachine;
use cranelift_exn_testkit::codegen::{self, isa};
use cranelift_exn_testkit::outcome::one;

/// Cranelift's instruction listing of the first function of `clif`.
fn listing(isa: &OwnedTargetIsa, clif: &str) -> String {
    codegen::compile(&**isa, codegen::parse(clif)).1
}

const INPUTS: [(i64, i64); 5] = [
    (0, 0),
    (1, 2),
    (-1, 0x1234_5678_9abc_def0),
    (i64::MIN, i64::MAX),
    (0x0f0f_0f0f_0f0f_0f0f, 0x00ff_00ff_00ff_00ff),
];

/// `(a, b, f(a, b))` for each of [`INPUTS`].
fn on_inputs(f: fn(i64, i64) -> i64) -> Vec<(i64, i64, i64)> {
    INPUTS.iter().map(|&(a, b)| (a, b, f(a, b))).collect()
}

/// Compile `%f(v0: i64, v1: i64) -> i64` with `body` for `arch` with
/// `flags`, check its listing shows `insn`, and run it in QEMU: `%f(a, b)`
/// must be `want` for each `(a, b, want)` of `cases`.
fn run(arch: Arch, flags: &[&str], body: &str, insn: &str, cases: &[(i64, i64, i64)]) {
    let clif = format!("function %f(i64, i64) -> i64 {{\nblock0(v0: i64, v1: i64):\n{body}\n}}");
    let isa = isa(arch, flags);
    let vcode = listing(&isa, &clif);
    assert!(vcode.contains(insn), "{arch}: no {insn} in\n{vcode}");
    let mut builder = ModuleBuilder::new(isa);
    builder.define_clif(&clif).unwrap();
    let module = builder
        .finalize(Box::new(
            QemuMachine::new(arch).unwrap_or_else(|e| panic!("{e}")),
        ))
        .unwrap();
    for &(a, b, want) in cases {
        assert_eq!(
            one(module.call("f", &[DataValue::I64(a), DataValue::I64(b)])),
            want,
            "{arch} {flags:?}: f({a:#x}, {b:#x})"
        );
    }
}

#[test]
fn riscv64_vector_add() {
    run(
        Arch::Riscv64,
        &["has_v"],
        "    v3 = splat.i64x2 v0
    v4 = splat.i64x2 v1
    v5 = iadd v3, v4
    v6 = extractlane v5, 1
    return v6",
        "vadd.vx",
        &on_inputs(|a, b| a.wrapping_add(b)),
    );
}

#[test]
fn riscv64_vector_lanes_of_memory() {
    // Two i32x4 vectors built from the arguments' halves, multiplied lane
    // by lane, reduced by hand.
    run(
        Arch::Riscv64,
        &["has_v"],
        "    v2 = scalar_to_vector.i64x2 v0
    v3 = insertlane v2, v1, 1
    v4 = bitcast.i32x4 little v3
    v5 = imul v4, v4
    v6 = bitcast.i64x2 little v5
    v7 = extractlane v6, 0
    v8 = extractlane v6, 1
    v9 = bxor v7, v8
    return v9",
        "vmul.vv",
        &on_inputs(|a, b| {
            let square = |x: i64| {
                let lo = (x as u32).wrapping_mul(x as u32) as u64;
                let hi = ((x >> 32) as u32).wrapping_mul((x >> 32) as u32) as u64;
                (lo | hi << 32) as i64
            };
            square(a) ^ square(b)
        }),
    );
}

#[test]
fn s390x_and_not_of_mie3() {
    run(
        Arch::S390x,
        &["has_mie3"],
        "    v3 = bnot v1
    v4 = band v0, v3
    return v4",
        "ncgrk",
        &on_inputs(|a, b| a & !b),
    );
}

#[test]
fn s390x_or_not_and_population_count_of_mie3() {
    run(
        Arch::S390x,
        &["has_mie3"],
        "    v5 = bnot v1
    v2 = bor v0, v5
    v3 = popcnt v2
    v6 = bxor v2, v3
    v4 = bnot v6
    return v4",
        "ocgrk",
        &on_inputs(|a, b| {
            let or_not = a | !b;
            !(or_not ^ i64::from(or_not.count_ones() as u8))
        }),
    );
}

#[test]
fn riscv64_half_precision_add() {
    // Binary16: 1.5 = 0x3e00, 2.25 = 0x4080, -0.5 = 0xb800;
    // (1.5 + 2.25) * 1.5 = 5.625 = 0x45a0; (-0.5 + 2.25) * -0.5 = -0.875 = 0xbb00.
    run(
        Arch::Riscv64,
        &["has_zfhmin", "has_zfh"],
        "    v2 = ireduce.i16 v0
    v3 = ireduce.i16 v1
    v4 = bitcast.f16 v2
    v5 = bitcast.f16 v3
    v6 = fadd v4, v5
    v7 = fmul v6, v4
    v8 = bitcast.i16 v7
    v9 = uextend.i64 v8
    return v9",
        "fadd.h",
        &[(0x3e00, 0x4080, 0x45a0), (0xb800, 0x4080, 0xbb00)],
    );
}
