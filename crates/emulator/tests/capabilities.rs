//! Evidence for `unsupported_reason`: for each group of ISA flags, a
//! function Cranelift lowers to an instruction of that extension is compiled
//! with the flags and run in the emulator.
//!
//! * A group `unsupported_reason` lists must really fail there: the call
//!   errors (illegal instruction) or computes a wrong result for some input,
//!   while the same function compiled without the flags computes the right
//!   one — so the skip is needed.
//! * A group it leaves unlisted must compute the right result for every
//!   input — so the skip would be a loss.
//!
//! Each probe also checks, in Cranelift's VCode listing, that the flags
//! really selected the extension's instruction (or, for compressed
//! encodings, which VCode does not show, that the machine code changed).
//!
//! The probes are tables, one test a row (see [`probes!`]), checked by
//! [`check`].

use cranelift_exn_testkit::codegen::{self as common, isa};

use Shows::{DifferentCode, Disasm, Insn, SameCode};
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir;
use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::isa::Arch::{self, Aarch64, Riscv64, S390x, X86_64};
use cranelift_exn::{CallError, Module};
use cranelift_exn_emulator::{EmulatedMachine, unsupported_reason};

/// What a probe's compiled code must show.
#[derive(Clone, Copy, Debug)]
enum Shows {
    /// This whole word in the VCode listing.
    Insn(&'static str),
    /// This mnemonic in capstone's disassembly of the machine code (for
    /// instructions VCode only shows as a pseudo-instruction).
    Disasm(&'static str),
    /// Different machine code than with the `baseline` flags.
    DifferentCode,
    /// The same machine code as with the `baseline` flags (a flag
    /// Cranelift 0.135.8 never consults for this code).
    SameCode,
}

/// One flag group on one architecture.
struct Probe {
    arch: Arch,
    /// ISA flags (and presets) enabled for the probe.
    flags: &'static [&'static str],
    /// ISA flags of the reference compilation (usually none).
    baseline: &'static [&'static str],
    /// Whether the reference compilation can run (it cannot when it needs a
    /// libcall, which plain modules do not provide).
    baseline_runs: bool,
    /// Whether `unsupported_reason` must leave the flags unlisted (the
    /// emulator carries their instructions out).
    unlisted: bool,
    /// Body of `function %probe(i64, i64, i64) -> i64 system_v` after
    /// `block0(v0: i64, v1: i64, v2: i64):`, returning its result; its
    /// instructions separated by new lines or by `; `.
    body: &'static str,
    shows: Shows,
    inputs: &'static [[u64; 3]],
    expected: fn(u64, u64, u64) -> u64,
}

/// A probe of `flags` on `arch` whose baseline is the same body compiled
/// without flags, and runs.
fn probe(
    arch: Arch,
    flags: &'static [&'static str],
    body: &'static str,
    shows: Shows,
    inputs: &'static [[u64; 3]],
    expected: fn(u64, u64, u64) -> u64,
) -> Probe {
    Probe {
        arch,
        flags,
        baseline: &[],
        baseline_runs: true,
        unlisted: false,
        body,
        shows,
        inputs,
        expected,
    }
}

impl Probe {
    /// Compare with code compiled with `baseline` rather than no flags.
    fn baseline(self, baseline: &'static [&'static str]) -> Self {
        Probe { baseline, ..self }
    }

    /// The baseline is only compiled, not run.
    fn baseline_cannot_run(self) -> Self {
        Probe {
            baseline_runs: false,
            ..self
        }
    }

    /// Also assert that `unsupported_reason` leaves the flags unlisted.
    fn unlisted(self) -> Self {
        Probe {
            unlisted: true,
            ..self
        }
    }
}

/// The probe function `%probe(i64, i64, i64) -> i64` with `body`.
fn probe_function(body: &str) -> ir::Function {
    common::function(
        "function %probe(i64, i64, i64) -> i64 system_v",
        "block0(v0: i64, v1: i64, v2: i64)",
        body,
    )
}

/// Run the probe for every input in the emulator; `Err` describes the
/// first failure or wrong result.
fn run(arch: Arch, isa: &dyn TargetIsa, probe: &Probe) -> Result<(), String> {
    let machine = Box::new(EmulatedMachine::new(arch).unwrap());
    let module = Module::new(machine, isa, vec![probe_function(probe.body)])
        .map_err(|e| format!("module: {e}"))?;
    for &[a, b, c] in probe.inputs {
        let args = [a, b, c].map(|x| DataValue::I64(x as i64));
        let want = (probe.expected)(a, b, c);
        match module.call("%probe", &args) {
            Ok(values) if values == [DataValue::I64(want as i64)] => {}
            Ok(values) => {
                return Err(format!(
                    "({a:#x}, {b:#x}, {c:#x}): got {values:?}, want {want:#x}"
                ));
            }
            Err(CallError::Failed(e)) => return Err(format!("({a:#x}, {b:#x}, {c:#x}): {e}")),
            Err(e) => return Err(format!("({a:#x}, {b:#x}, {c:#x}): {e}")),
        }
    }
    Ok(())
}

fn check(probe: &Probe) {
    let arch = probe.arch;
    let what = format!("{arch} {:?}", probe.flags);
    let flagged = isa(arch, probe.flags);
    if probe.unlisted {
        assert_eq!(unsupported_reason(&*flagged), None, "{what}");
    }
    let baseline = isa(arch, probe.baseline);
    let (code, vcode) = common::compile(&*flagged, probe_function(probe.body));
    let base_code = || common::compile(&*baseline, probe_function(probe.body)).0;
    match probe.shows {
        Insn(insn) => assert!(
            vcode
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|word| word == insn),
            "{what}: no {insn} in\n{vcode}"
        ),
        Disasm(mnemonic) => {
            let listing = cranelift_exn::disassemble::disassemble(arch, &code).unwrap();
            assert!(
                listing
                    .lines()
                    .any(|line| line.split_whitespace().any(|w| w == mnemonic)),
                "{what}: no {mnemonic} in\n{listing}"
            );
        }
        DifferentCode => assert_ne!(code, base_code(), "{what}: same code as baseline"),
        SameCode => assert_eq!(code, base_code(), "{what}: code changed"),
    }
    if probe.baseline_runs {
        run(arch, &*baseline, probe)
            .unwrap_or_else(|e| panic!("{what}: baseline {:?} failed: {e}", probe.baseline));
    }
    let reason = unsupported_reason(&*flagged);
    let outcome = run(arch, &*flagged, probe);
    match &reason {
        Some(reason) => {
            let outcome = outcome.err().unwrap_or_else(|| {
                panic!("{what}: listed ({reason}) but runs correctly in the emulator")
            });
            eprintln!("{what}: skipped ({reason}); running it gives {outcome}");
        }
        None => {
            if let Err(e) = outcome {
                panic!("{what}: not listed, but fails in the emulator: {e}");
            }
        }
    }
}

/// A table of probes, one test a row: its name, then the probes it
/// [`check`]s.
macro_rules! probes {
    ($($(#[$attr:meta])* $name:ident: $($probe:expr),+;)*) => {
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                $(check(&$probe);)+
            }
        )*
    };
}

const INPUTS: &[[u64; 3]] = &[
    [0x0123_4567_89ab_cdef, 0x0000_0000_0000_0003, 0x10],
    [0xffff_ffff_ffff_fff0, 0x0000_0000_0000_001f, 0x7],
    [0x8000_0000_0000_0001, 0x0000_0000_0000_0011, 0xffff],
];

const F64_INPUTS: &[[u64; 3]] = &[
    [
        0x3ff8_0000_0000_0000,
        0x4002_0000_0000_0000,
        0xbfe0_0000_0000_0000,
    ], // 1.5 2.25 -0.5
    [
        0xc01c_0000_0000_0000,
        0x4008_0000_0000_0000,
        0x4059_0000_0000_0000,
    ], // -7 3 100
    [
        0x4000_0000_0000_0000,
        0x4000_0000_0000_0000,
        0x3fb9_9999_9999_999a,
    ], // 2 2 0.1
];

fn f64(x: u64) -> f64 {
    f64::from_bits(x)
}

fn assert_listed(arch: Arch, flags: &[&str], listed: &[&str]) {
    let reason = unsupported_reason(&*isa(arch, flags));
    for flag in listed {
        let reason = reason
            .as_deref()
            .unwrap_or_else(|| panic!("{arch} {flags:?}: no reason"));
        assert!(
            reason.split([' ', ',']).any(|w| w == *flag),
            "{arch} {flags:?}: {flag} not in {reason}"
        );
    }
}

#[test]
fn default_flags_run_everywhere() {
    for arch in Arch::ALL {
        assert_eq!(unsupported_reason(&*isa(arch, &[])), None, "{arch}");
    }
}

#[test]
fn reason_names_every_lacking_flag_and_the_arch() {
    let reason = unsupported_reason(&*isa(
        Riscv64,
        &["has_v", "has_zfa", "has_zbb", "has_zcb", "has_c"],
    ))
    .unwrap();
    assert!(
        reason.starts_with("riscv64 emulated CPU lacks "),
        "{reason}"
    );
    assert!(reason.contains("has_v (vector)"), "{reason}");
    assert!(reason.contains("has_zfa ("), "{reason}");
    // Supported flags (emulated ones included) are not named.
    for flag in ["has_zca", "has_zbb", "has_zcb"] {
        assert!(!reason.contains(flag), "{reason}");
    }
    assert_listed(
        S390x,
        &["arch15"],
        &["has_mie3", "has_mie4", "has_vxrs_ext2", "has_vxrs_ext3"],
    );
    assert_listed(X86_64, &["skylake"], &["has_avx", "has_avx2", "has_fma"]);
}

// ---- x86-64 (Haswell model) ----

/// `f64x2` arithmetic whose VEX three-operand forms need the second source.
const F64X2_SUB_MUL: &str = "    v3 = bitcast.f64 v0
    v4 = bitcast.f64 v1
    v5 = bitcast.f64 v2
    v6 = splat.f64x2 v3
    v7 = splat.f64x2 v4
    v8 = splat.f64x2 v5
    v9 = fsub v6, v7
    v10 = fmul v9, v8
    v11 = fsub v8, v10
    v12 = extractlane v11, 0
    v13 = bitcast.i64 v12
    return v13";

fn f64x2_sub_mul(a: u64, b: u64, c: u64) -> u64 {
    (f64(c) - (f64(a) - f64(b)) * f64(c)).to_bits()
}

/// `i32x4` subtraction of splatted low words; lane 2.
const I32X4_SUB: &str = "    v3 = ireduce.i32 v0
    v4 = ireduce.i32 v1
    v5 = splat.i32x4 v3
    v6 = splat.i32x4 v4
    v7 = isub v5, v6
    v8 = extractlane v7, 2
    v9 = uextend.i64 v8
    return v9";

/// Scalar `f64` fused multiply-add.
const F64_FMA: &str = "    v3 = bitcast.f64 v0
    v4 = bitcast.f64 v1
    v5 = bitcast.f64 v2
    v6 = fma v3, v4, v5
    v7 = bitcast.i64 v6
    return v7";

/// The i8 dot-product tree Cranelift folds into one instruction where the
/// target has one: `a` widened with `$wa`, `b` with `$wb`; lane 0 and 3 of
/// the `i32x4` result, plus the accumulator `v2`.
macro_rules! dot_tree {
    ($wa:literal, $wb:literal) => {
        concat!(
            "    v3 = splat.i64x2 v0
    v4 = splat.i64x2 v1
    v5 = bitcast.i8x16 little v3
    v6 = bitcast.i8x16 little v4
    v7 = ireduce.i32 v2
    v8 = splat.i32x4 v7
    v10 = ",
            $wa,
            "_low v5
    v11 = ",
            $wb,
            "_low v6
    v12 = imul v10, v11
    v13 = ",
            $wa,
            "_high v5
    v14 = ",
            $wb,
            "_high v6
    v15 = imul v13, v14
    v16 = swiden_low v12
    v17 = swiden_high v12
    v18 = iadd_pairwise v16, v17
    v19 = swiden_low v15
    v20 = swiden_high v15
    v21 = iadd_pairwise v19, v20
    v22 = iadd_pairwise v18, v21
    v23 = iadd v22, v8
    v24 = extractlane v23, 0
    v25 = extractlane v23, 3
    v26 = uextend.i64 v24
    v27 = uextend.i64 v25
    v30 = iconst.i64 32
    v28 = ishl v27, v30
    v29 = bor v26, v28
    return v29"
        )
    };
}

/// Rust model of [`dot_tree!`]: lane `i` of the result is the sum of the
/// four products of bytes `4i..4i+4` (the input is `x` in both halves).
fn dot(a: u64, b: u64, c: u64, a_signed: bool, b_signed: bool) -> u64 {
    let byte = |x: u64, i: usize, signed: bool| {
        let v = (x >> (8 * (i % 8))) as u8;
        if signed {
            i32::from(v as i8)
        } else {
            i32::from(v)
        }
    };
    let lane = |l: usize| {
        (4 * l..4 * l + 4)
            .map(|i| byte(a, i, a_signed).wrapping_mul(byte(b, i, b_signed)))
            .fold(c as i32, i32::wrapping_add) as u32
    };
    u64::from(lane(0)) | u64::from(lane(3)) << 32
}

/// Bit counts, shifts, `floor` and `iabs` of SSE3 to SSE4.2, POPCNT,
/// LZCNT, BMI1 and BMI2.
const SSE_BIT_MIX: &str = "    v3 = popcnt v0
    v4 = clz v1
    v5 = ctz v2
    v6 = ishl v0, v3
    v21 = bnot v6
    v7 = band v1, v21
    v8 = iadd v3, v4
    v9 = iadd v8, v5
    v10 = iadd v9, v7
    v11 = bitcast.f64 v0
    v12 = floor v11
    v13 = bitcast.i64 v12
    v14 = bxor v10, v13
    v15 = ireduce.i8 v1
    v16 = splat.i8x16 v15
    v17 = iabs v16
    v18 = extractlane v17, 5
    v19 = uextend.i64 v18
    v20 = iadd v14, v19
    return v20";

fn sse_bit_mix(a: u64, b: u64, c: u64) -> u64 {
    let p = u64::from(a.count_ones());
    let sum = p + u64::from(b.leading_zeros()) + u64::from(c.trailing_zeros());
    let sum = sum.wrapping_add(b & !(a << (p % 64)));
    let floor = f64(a).floor().to_bits();
    (sum ^ floor).wrapping_add(u64::from((b as i8).unsigned_abs()))
}

/// An `i128` atomic add to a stack slot holding `v0:v1`.
const I128_ATOMIC_ADD: &str = "    ss0 = explicit_slot 16, align = 16
    v3 = stack_addr.i64 ss0
    v4 = iconcat v0, v1
    store v4, v3
    v5 = iconcat v2, v2
    v6 = atomic_rmw.i128 add v3, v5
    v7 = load.i128 v3
    v8, v9 = isplit v7
    v10, v11 = isplit v6
    v12 = bxor v8, v11
    v13 = bxor v12, v9
    return v13";

fn i128_atomic_add(a: u64, b: u64, c: u64) -> u64 {
    let old = u128::from(a) | u128::from(b) << 64;
    let new = old.wrapping_add(u128::from(c) | u128::from(c) << 64);
    (new as u64) ^ b ^ ((new >> 64) as u64)
}

probes! {
    x86_64_avx_is_listed_and_wrong_in_the_emulator:
        probe(X86_64, &["has_avx"], F64X2_SUB_MUL, Insn("vsubpd"), F64_INPUTS, f64x2_sub_mul);
    x86_64_avx2_is_listed_and_fails_in_the_emulator:
        probe(X86_64, &["has_avx", "has_avx2"], I32X4_SUB, Insn("vpbroadcastd"), INPUTS,
            |a, b, _| u64::from((a as u32).wrapping_sub(b as u32)));
    // Without FMA3, `fma` is a libcall.
    x86_64_fma_is_listed_and_fails_in_the_emulator:
        probe(X86_64, &["has_avx", "has_fma"], F64_FMA, Insn("vfmadd213sd"), F64_INPUTS,
            |a, b, c| f64(a).mul_add(f64(b), f64(c)).to_bits())
        .baseline_cannot_run();
    x86_64_avx512_is_listed_and_fails_in_the_emulator:
        probe(
            X86_64,
            &["has_avx", "has_avx2", "has_avx512f", "has_avx512vl", "has_avx512dq"],
            "v3 = splat.i64x2 v0; v4 = splat.i64x2 v1; v5 = imul v3, v4; v6 = extractlane v5, 1; return v6",
            Insn("vpmullq"), INPUTS, |a, b, _| a.wrapping_mul(b));
    x86_64_avx_vnni_is_listed_and_fails_in_the_emulator:
        probe(X86_64, &["has_avx", "has_avx_vnni"], dot_tree!("swiden", "uwiden"), Insn("vpdpbusd"), INPUTS,
            |a, b, c| dot(a, b, c, true, false))
        .baseline(&["sse42"]);
    /// SSE3 to SSE4.2, POPCNT, LZCNT, BMI1 and BMI2 (the Haswell model has
    /// them): not listed, and correct.
    x86_64_sse_popcnt_lzcnt_bmi_run_in_the_emulator:
        probe(X86_64, &["sse42", "has_popcnt", "has_lzcnt", "has_bmi1", "has_bmi2"], SSE_BIT_MIX,
            Insn("popcntq"), INPUTS, sse_bit_mix);
    x86_64_cmpxchg16b_runs_in_the_emulator:
        probe(X86_64, &["has_cmpxchg16b"], I128_ATOMIC_ADD, Disasm("cmpxchg16b"), INPUTS, i128_atomic_add)
        .baseline_cannot_run();
}

// ---- aarch64 (max model) ----

/// An `i32` atomic read-modify-write of a stack slot holding `v0`'s low
/// word with `$op` and `v1`'s low word; returns `old | new << 32`.
macro_rules! atomic_rmw_i32 {
    ($op:literal) => {
        concat!(
            "ss0 = explicit_slot 8, align = 8; v3 = stack_addr.i64 ss0; ",
            "v4 = ireduce.i32 v0; v5 = ireduce.i32 v1; store v4, v3; ",
            "v6 = atomic_rmw.i32 ",
            $op,
            " v3, v5; v7 = load.i32 v3; ",
            "v8 = uextend.i64 v6; v9 = uextend.i64 v7; v10 = iconst.i64 32; ",
            "v11 = ishl v9, v10; v12 = bor v8, v11; return v12"
        )
    };
}

const SIGNED_I32_INPUTS: &[[u64; 3]] = &[
    [0xffff_ffff, 1, 0],
    [1, 0xffff_ffff, 0],
    [0x8000_0000, 0x7fff_ffff, 0],
    [5, 3, 0],
];

/// The `atomic_rmw_i32!("add")` probe.
fn lse_add() -> Probe {
    probe(
        Aarch64,
        &["has_lse"],
        atomic_rmw_i32!("add"),
        Insn("ldaddal"),
        SIGNED_I32_INPUTS,
        |a, b, _| (a & 0xffff_ffff) | u64::from((a as u32).wrapping_add(b as u32)) << 32,
    )
}

#[test]
fn aarch64_lse_add_alone_would_run() {
    // The other LSE operations are right in unicorn itself: only the signed
    // min/max need the machine's own implementation.
    let isa = isa(Aarch64, &["has_lse"]);
    let probe = lse_add();
    assert!(
        common::compile(&*isa, probe_function(probe.body))
            .1
            .contains("ldaddal")
    );
    run(Aarch64, &*isa, &probe).unwrap();
}

/// `f16` values moved through FP registers and selected there: `v2 != 0 ?
/// v0 : v1` on their low halfwords. (Cranelift 0.135.8's aarch64 backend
/// has no `f16` arithmetic; FEAT_FP16 changes how `f16` values move and are
/// selected.)
const F16_SELECT: &str = "    v3 = ireduce.i16 v0
    v4 = ireduce.i16 v1
    v5 = bitcast.f16 v3
    v6 = bitcast.f16 v4
    v7 = select v2, v5, v6
    v8 = bitcast.i16 v7
    v9 = uextend.i64 v8
    return v9";

/// A leaf function: signed only with `sign_return_address_all`.
const LEAF: &str = "v3 = iadd v0, v1; v4 = iadd v3, v2; return v4";

fn add3(a: u64, b: u64, c: u64) -> u64 {
    a.wrapping_add(b).wrapping_add(c)
}

probes! {
    // unicorn 2.1.5 (QEMU 5.0) compares `ldsmaxal w..`'s 32-bit values as
    // unsigned (smax(-1, 1) would store -1); the machine carries the
    // instruction out itself, so `has_lse` is not listed and must compute
    // the right results.
    aarch64_lse_signed_max_runs_in_the_emulator:
        probe(Aarch64, &["has_lse"], atomic_rmw_i32!("smax"), Insn("ldsmaxal"), SIGNED_I32_INPUTS,
            |a, b, _| (a & 0xffff_ffff) | u64::from((a as i32).max(b as i32) as u32) << 32);
    aarch64_fp16_runs_in_the_emulator:
        probe(Aarch64, &["has_fp16"], F16_SELECT, DifferentCode,
            &[[0x3e00, 0x4080, 1], [0xc700, 0xabcd, 0], [0x1_0001, 0x7c01, 0]],
            |a, b, c| if c != 0 { a & 0xffff } else { b & 0xffff });
    aarch64_dotprod_runs_in_the_emulator:
        probe(Aarch64, &["has_dotprod"], dot_tree!("swiden", "swiden"), Insn("sdot"), INPUTS,
            |a, b, c| dot(a, b, c, true, true));
    aarch64_i8mm_is_listed_and_fails_in_the_emulator:
        probe(Aarch64, &["has_i8mm"], dot_tree!("uwiden", "swiden"), Insn("usdot"), INPUTS,
            |a, b, c| dot(a, b, c, false, true));
    // `sign_return_address_all` signs even this leaf function; with
    // `has_pauth` the return is the combined `retaa`/`retab`, which the
    // model implements (its keys are whatever reset left; signing and
    // authenticating agree).
    aarch64_pointer_authentication_and_bti_run_in_the_emulator:
        probe(Aarch64, &["sign_return_address", "sign_return_address_all"], LEAF, Insn("paciasp"), INPUTS, add3),
        probe(Aarch64, &["has_pauth", "sign_return_address", "sign_return_address_all"], LEAF,
            Insn("retaasp"), INPUTS, add3),
        probe(
            Aarch64,
            &["has_pauth", "sign_return_address", "sign_return_address_all", "sign_return_address_with_bkey"],
            LEAF, Insn("retabsp"), INPUTS, add3),
        probe(Aarch64, &["use_bti"], LEAF, Insn("bti"), INPUTS, add3);
    aarch64_csdb_runs_in_the_emulator:
        probe(Aarch64, &["use_csdb"], "v3 = icmp ult v0, v1; v4 = select_spectre_guard v3, v0, v2; return v4",
            Insn("csdb"), INPUTS, |a, b, c| if a < b { a } else { c });
}

// ---- riscv64 (`any` model, RV64IMAFDC) ----

/// Edge values for the riscv64 bit-manipulation probes: zero, all ones,
/// `MIN`, `MAX`, single bits, 32-bit boundaries and mixed patterns.
const RISCV64_INPUTS: &[[u64; 3]] = &[
    [0, 0, 0],
    [u64::MAX, u64::MAX, u64::MAX],
    [0x8000_0000_0000_0000, 0x7fff_ffff_ffff_ffff, 1],
    [0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, 0],
    [0x0000_0000_8000_0000, 0x0000_0000_7fff_ffff, 0x8000_0000],
    [0xffff_ffff_0000_0001, 0x0000_0001_ffff_ffff, 63],
    [0x0123_4567_89ab_cdef, 0x0000_0000_0000_0003, 0x10],
    [0xffff_ffff_ffff_fff0, 0x0000_0000_0000_001f, 0x7],
    [0x8000_0000_0000_0001, 0x0000_0000_0000_0011, 0xffff],
    [1, 0x40, 0x20],
];

/// One riscv64 probe of a flag the emulator carries out: not listed, and
/// right for every input (the flags' instruction is in the code, and the
/// baseline without the flags computes the same).
fn riscv64_emulated(
    flags: &'static [&'static str],
    body: &'static str,
    shows: Shows,
    expected: fn(u64, u64, u64) -> u64,
) -> Probe {
    probe(Riscv64, flags, body, shows, RISCV64_INPUTS, expected).unlisted()
}

/// Binary16 values (bits) whose sums are exact: 1.5 + 2.25, -7 + 3,
/// 0.5 + 0.5.
const F16_INPUTS: &[[u64; 3]] = &[
    [0x3e00, 0x4080, 0],
    [0xc700, 0x4200, 0],
    [0x3800, 0x3800, 0],
];

/// `f16` addition of the low halfwords of `v0` and `v1`.
const F16_ADD: &str = "    v3 = ireduce.i16 v0
    v4 = ireduce.i16 v1
    v5 = bitcast.f16 v3
    v6 = bitcast.f16 v4
    v7 = fadd v5, v6
    v8 = bitcast.i16 v7
    v9 = uextend.i64 v8
    return v9";

/// `f16` promotion of the low halfword of `v0` to `f32`.
const F16_PROMOTE: &str = "    v3 = ireduce.i16 v0
    v4 = bitcast.f16 v3
    v5 = fpromote.f32 v4
    v6 = bitcast.i32 v5
    v7 = uextend.i64 v6
    return v7";

/// The binary16 sum of two normal binary16 values whose sum is exactly
/// representable (asserted).
fn f16_add(a: u64, b: u64, _: u64) -> u64 {
    fn to_f16(x: f32) -> u16 {
        let bits = x.to_bits();
        let sign = ((bits >> 16) & 0x8000) as u16;
        let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
        assert!(
            bits & 0x1fff == 0 && (1..31).contains(&exp),
            "{x} not exact"
        );
        sign | (exp as u16) << 10 | ((bits >> 13) & 0x3ff) as u16
    }
    u64::from(to_f16(f16_to_f32(a as u16) + f16_to_f32(b as u16)))
}

/// A normal binary16 value (asserted) as `f32`.
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    assert!((1..31).contains(&exp), "normal numbers only");
    sign * (1.0 + frac / 1024.0) * 2f32.powi(exp - 15)
}

/// Multiplications, loads and stores of a stack slot, with compressed
/// forms under Zca/Zcd (`has_c`).
const COMPRESSIBLE: &str = "    ss0 = explicit_slot 16, align = 8
    v3 = imul v0, v1
    v4 = iadd v3, v2
    v10 = stack_addr.i64 ss0
    store v4, v10
    v5 = bitcast.f64 v1
    store v5, v10+8
    v6 = load.i64 v10
    v7 = load.i64 v10+8
    v8 = isub v6, v7
    v9 = bxor v8, v0
    return v9";

fn mul_wide_xor_rotl(a: u64, b: u64, c: u64) -> u64 {
    let wide = u128::from(a) * u128::from(b);
    ((wide as u64) ^ ((wide >> 64) as u64)).rotate_left((c % 64) as u32)
}

probes! {
    // Without V, Cranelift 0.135.8 cannot lower vector code for riscv64.
    riscv64_v_is_listed_and_fails_in_the_emulator:
        probe(Riscv64, &["has_v"],
            "v3 = splat.i64x2 v0; v4 = splat.i64x2 v1; v5 = iadd v3, v4; v6 = extractlane v5, 1; return v6",
            Insn("vadd.vx"), INPUTS, |a, b, _| a.wrapping_add(b))
        .baseline_cannot_run();
    riscv64_zbb_runs_in_the_emulator:
        riscv64_emulated(&["has_zbb"], "v3 = clz v0; v4 = iadd v3, v1; return v4", Insn("clz"),
            |a, b, _| u64::from(a.leading_zeros()).wrapping_add(b));
    riscv64_zba_runs_in_the_emulator:
        riscv64_emulated(&["has_zba"], "v3 = ireduce.i32 v1; v4 = uextend.i64 v3; v5 = iadd v0, v4; return v5",
            Insn("add.uw"), |a, b, _| a.wrapping_add(b & 0xffff_ffff));
    riscv64_zbs_runs_in_the_emulator:
        riscv64_emulated(
            &["has_zbs"],
            "v3 = ireduce.i32 v0; v4 = ireduce.i32 v1; v5 = iconst.i32 1; v6 = ishl v5, v4; v7 = bnot v6; \
             v8 = band v3, v7; v9 = uextend.i64 v8; return v9",
            Insn("bclr"), |a, b, _| u64::from((a as u32) & !(1u32 << (b % 32))));
    riscv64_zbkb_runs_in_the_emulator:
        riscv64_emulated(&["has_zbkb"], "v3 = ireduce.i16 v0; v4 = uextend.i64 v3; v5 = iadd v4, v1; return v5",
            Insn("packw"), |a, b, _| (a & 0xffff).wrapping_add(b));
    riscv64_zicond_runs_in_the_emulator:
        riscv64_emulated(&["has_zicond"], "v3 = iconst.i64 0; v4 = icmp ult v0, v1; v5 = select v4, v2, v3; return v5",
            Insn("czero.eqz"), |a, b, c| if a < b { c } else { 0 });
    riscv64_zfa_is_listed_and_fails_in_the_emulator:
        probe(Riscv64, &["has_zfa"], "v3 = bitcast.f64 v0; v4 = bitcast.f64 v1; v5 = fmin v3, v4; v6 = bitcast.i64 v5; return v6",
            Insn("fminm.d"), F64_INPUTS, |a, b, _| f64(a).min(f64(b)).to_bits());
    // Without Zfhmin, `fpromote` of `f16` is a libcall; without Zfh, `f16`
    // arithmetic is unsupported.
    riscv64_zfh_and_zfhmin_are_listed_and_fail_in_the_emulator:
        probe(Riscv64, &["has_zfhmin"], F16_PROMOTE, Insn("fcvt.s.h"), F16_INPUTS,
            |a, _, _| u64::from(f16_to_f32(a as u16).to_bits()))
        .baseline_cannot_run(),
        probe(Riscv64, &["has_zfhmin", "has_zfh"], F16_ADD, Insn("fadd.h"), F16_INPUTS, f16_add)
        .baseline_cannot_run();
    // QEMU 5.0 decodes the Zcb encodings (`c.mul`, `c.zext.*`, ...) as
    // something else (no fault, wrong results: `c.mul` leaves rd alone); the
    // emulator carries them out itself, so the flag is not listed.
    riscv64_zcb_runs_in_the_emulator:
        probe(Riscv64, &["has_c", "has_zcb"], "v3 = imul v0, v1; v4 = imul v3, v2; v5 = imul v4, v0; return v5",
            DifferentCode, INPUTS, |a, b, c| a.wrapping_mul(b).wrapping_mul(c).wrapping_mul(a))
        .baseline(&["has_c"])
        .unlisted();
    /// The compressed instructions of Zca/Zcd (`has_c`) run.
    riscv64_compressed_runs_in_the_emulator:
        probe(Riscv64, &["has_c"], COMPRESSIBLE, DifferentCode, INPUTS,
            |a, b, c| (a.wrapping_mul(b).wrapping_add(c).wrapping_sub(b)) ^ a);
    /// Cranelift 0.135.8 emits no Zbc instruction (no rule consults `has_zbc`),
    /// so the flag changes nothing and code built with it runs.
    riscv64_zbc_changes_no_code_and_runs:
        probe(Riscv64, &["has_zbc"], "v3 = imul v0, v1; v4 = umulhi v0, v1; v5 = bxor v3, v4; v6 = rotl v5, v2; return v6",
            SameCode, INPUTS, mul_wide_xor_rotl);
}

// ---- s390x (gen15a model) ----

/// `u32` addition of 5, then shifted left by 3 and added to `v1`.
const ADD5_SHL3_ADD: &str = "    v3 = ireduce.i32 v0
    v4 = iconst.i32 5
    v5 = iadd v3, v4
    v6 = uextend.i64 v5
    v7 = iconst.i64 3
    v8 = ishl v6, v7
    v9 = iadd v8, v1
    return v9";

fn i128_abs_xor(a: u64, b: u64, _: u64) -> u64 {
    let x = (u128::from(a) | u128::from(b) << 64) as i128;
    let y = x.unsigned_abs();
    (y as u64) ^ ((y >> 64) as u64)
}

probes! {
    s390x_mie3_is_listed_and_fails_in_the_emulator:
        probe(S390x, &["has_mie3"], "v3 = bnot v1; v4 = band v0, v3; return v4", Insn("ncgrk"), INPUTS, |a, b, _| a & !b);
    s390x_vxrs_ext2_is_listed_and_fails_in_the_emulator:
        probe(S390x, &["has_vxrs_ext2"],
            "v3 = ireduce.i32 v0; v4 = fcvt_from_sint.f32 v3; v5 = bitcast.i32 v4; v6 = uextend.i64 v5; return v6",
            Insn("wcefb"), INPUTS, |a, _, _| u64::from(((a as i32) as f32).to_bits()));
    s390x_mie4_is_listed_and_fails_in_the_emulator:
        probe(S390x, &["has_mie4"], ADD5_SHL3_ADD, Insn("llxag"), INPUTS,
            |a, b, _| (u64::from((a as u32).wrapping_add(5)) << 3).wrapping_add(b));
    s390x_vxrs_ext3_is_listed_and_fails_in_the_emulator:
        probe(S390x, &["has_vxrs_ext3"], "v3 = iconcat v0, v1; v4 = iabs v3; v5, v6 = isplit v4; v7 = bxor v5, v6; return v7",
            Insn("vlpq"), INPUTS, i128_abs_xor);
}
