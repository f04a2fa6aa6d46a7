//! Which Cranelift ISA flags the emulated CPUs can execute.
//!
//! A run test compiled with an ISA flag whose instructions the emulated CPU
//! lacks either faults (an illegal-instruction exception) or, worse, runs and
//! computes a wrong result. [`unsupported_reason`] names such flags so that a
//! runner reports the target as skipped instead of failing or passing it.
//!
//! A few instructions of a supported flag set are mis-executed, silently.
//! The emulator carries out those Cranelift emits itself (a code hook on
//! each, set when code is installed); [`unsupported_code`] finds the rest in
//! compiled code, so that a runner can skip the target with the instruction
//! named.
//!
//! Each architecture's file under `src/arch/` lists the boolean ISA flags
//! that unicorn-engine 2.1.5 (QEMU 5.0's TCG) cannot execute on the CPU
//! model this crate selects (`MISSING_FLAGS`); every flag not listed was
//! checked to run correctly. The evidence, one test per flag group, is in
//! `tests/capabilities.rs`.

use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::cpu_lacks;

/// Why code compiled for `isa` cannot run in this crate's emulator, or `None`
/// when it can.
///
/// The reason names every enabled ISA flag the emulated CPU for the target's
/// architecture lacks, e.g. `"riscv64 emulated CPU lacks has_v (vector),
/// has_zfa (additional floating-point)"`. A target this crate has no CPU for (pulley,
/// 32-bit ISAs) is reported as such. Shared flags select no instructions the
/// emulated CPUs lack, so only the ISA flags are consulted.
pub fn unsupported_reason(isa: &dyn TargetIsa) -> Option<String> {
    let Some(arch) = Arch::from_triple(isa.triple()) else {
        return Some(format!("no emulated CPU for {}", isa.triple()));
    };
    let missing = crate::arch::for_arch(arch).missing_flags();
    let cpu = format!("{arch} emulated CPU");
    cpu_lacks(isa, &cpu, missing.iter().map(|m| (m.flag, m.what)))
}

/// Why machine code for `arch` would compute wrong results in this crate's
/// emulator although the emulated CPU has every flag it was built with, or
/// `None` when no such instruction is found.
///
/// unicorn 2.1.5 (QEMU 5.0's TCG) executes a few instructions wrongly
/// without any exception. The emulator carries out those Cranelift emits
/// itself, from a code hook on each of their addresses (set when code is
/// installed): on s390x the signed add/subtract register forms whose
/// overflow condition code is read, the conversions to logical (a NaN gives
/// 0, not all ones) and test-only `rxsbg`/`rosbg`/`rnsbg`; on aarch64 the
/// LSE signed minimum/maximum of narrow values; on riscv64 the Zcb
/// instructions. What remains is reported
/// here so that a runner skips the target:
///
/// * s390x: a signed add or subtract with a storage operand (`a`, `ay`,
///   `ag`, `s`, `sy`, `sg`) whose condition code is read before it is set
///   again — QEMU 5 reports no overflow for `MIN + MIN` and `0 - MIN`.
///   Cranelift 0.135.8 tests the overflow of register forms only.
///
/// The code (one function) is decoded linearly; other architectures have
/// nothing left to report.
pub fn unsupported_code(arch: Arch, code: &[u8]) -> Option<String> {
    crate::arch::for_arch(arch).mis_executed(code)
}
