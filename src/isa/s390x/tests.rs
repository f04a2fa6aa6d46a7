//! Unit tests of the s390x facts, relocation patching, unwind decoding and
//! stubs.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::compile::{CompiledFunction, RelocTarget, default_isa};
use crate::disassemble::disassemble;
use crate::isa::RegClass;
use crate::isa::tests::{compile_clif, symbol_sum_clif};

/// The address a RIL pc-relative instruction at `insn` refers to.
fn ril_target(code: &[u8], insn: usize, base: u64) -> u64 {
    let field = i32::from_be_bytes(code[insn + 2..insn + 6].try_into().unwrap());
    (base + insn as u64).wrapping_add_signed(2 * i64::from(field))
}

fn compile(clif: &str) -> Vec<CompiledFunction> {
    compile_clif(&*default_isa(Arch::S390x).unwrap(), clif)
}

/// Parse a capstone displacement/immediate such as `0x30`, `-0xb8`, `8`.
fn num(text: &str) -> i64 {
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let v = match t.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).unwrap(),
        None => t.parse().unwrap(),
    };
    if neg { -v } else { v }
}

/// `mnemonic` lines of a listing, split as (operands...).
fn operands<'a>(listing: &'a str, mnemonic: &str) -> Vec<Vec<&'a str>> {
    listing
        .lines()
        .filter_map(|l| l.strip_prefix(mnemonic)?.strip_prefix(' '))
        .map(|ops| ops.split(", ").collect())
        .collect()
}

/// `D(%r15)` → D.
fn sp_disp(operand: &str) -> i64 {
    num(operand
        .strip_suffix("(%r15)")
        .expect("an %r15-based operand"))
}

#[test]
fn registers_and_frame_facts() {
    let s = &SPEC;
    assert_eq!(s.payload_regs(), [Reg::int(6), Reg::int(7)]);
    assert_eq!(s.stack_pointer(), Reg::int(15));
    assert_eq!(s.frame_pointer(), None);
    assert_eq!(s.link_register(), Some(Reg::int(14)));
    assert_eq!(s.int_arg_regs(), &[R2, R3, R4, R5, R6]);
    let names: Vec<String> = s
        .callee_saved()
        .iter()
        .map(|r| s.register_name(*r))
        .collect();
    assert_eq!(
        names.join(" "),
        "%r6 %r7 %r8 %r9 %r10 %r11 %r12 %r13 %f8 %f9 %f10 %f11 %f12 %f13 %f14 %f15"
    );
    assert_eq!(
        s.frame_links(),
        FrameLinks {
            caller_fp_offset: 0,
            return_address_offset: 112,
            return_address_mask: u64::MAX,
        }
    );
    assert!(!s.uses_got(Reloc::S390xPCRel32Dbl));
    assert!(!s.uses_got(Reloc::S390xPLTRel32Dbl));
    assert!(!s.uses_got(Reloc::Abs8));
}

#[test]
fn plt_rel32_dbl_patches_brasl_and_jg() {
    let base = 0x1000_0000;
    // brasl %r14, . ; jg .
    let mut code = vec![0xc0, 0xe5, 0, 0, 0, 0, 0xc0, 0xf4, 0, 0, 0, 0];
    // Cranelift: offset = instruction + 2, addend = 2.
    SPEC.apply_at(Reloc::S390xPLTRel32Dbl, &mut code, 2, base, 0x1234_5678, 2)
        .unwrap();
    SPEC.apply_at(Reloc::S390xPLTRel32Dbl, &mut code, 8, base, 0x0fff_0000, 2)
        .unwrap();
    assert_eq!(ril_target(&code, 0, base), 0x1234_5678);
    assert_eq!(ril_target(&code, 6, base), 0x0fff_0000);
    // Disassembled at address 0, the targets read relative to `base`.
    assert_eq!(
        disassemble(Arch::S390x, &code).unwrap(),
        format!(
            "brasl %r14, {:#x}\njg -{:#x}",
            0x1234_5678 - base,
            base - 0x0fff_0000
        )
    );
}

#[test]
fn pc_rel32_dbl_patches_larl_and_relative_long_loads() {
    let base = 0x2000;
    // larl %r3, . ; lgrl %r4, . ; stgrl %r5, .
    let mut code = vec![
        0xc0, 0x30, 0, 0, 0, 0, 0xc4, 0x48, 0, 0, 0, 0, 0xc4, 0x5b, 0, 0, 0, 0,
    ];
    // (instruction, target, addend, where it must point); a symbol_value
    // with offset 6 has addend 6 + 2.
    let fields = [
        (0, 0x8_0000, 8, 0x8_0006),
        (6, 0x8_0000, 2, 0x8_0000),
        (12, 0x1000, 2, 0x1000),
    ];
    for (insn, target, addend, _) in fields {
        let kind = Reloc::S390xPCRel32Dbl;
        SPEC.apply_at(kind, &mut code, insn + 2, base, target, addend)
            .unwrap();
    }
    for (insn, _, _, points_to) in fields {
        assert_eq!(ril_target(&code, insn, base), points_to);
    }
    assert_eq!(
        disassemble(Arch::S390x, &code).unwrap(),
        "larl %r3, 0x7e006\nlgrl %r4, 0x7e000\nstgrl %r5, -0x1000"
    );
}

#[test]
fn pc_relative_range_and_alignment_errors() {
    let base = 0x2_0000_0000;
    let brasl = [0xc0, 0xe5, 0, 0, 0, 0];
    let larl = [0xc0, 0x10, 0, 0, 0, 0];
    // The largest reachable displacements: ±4 GiB in halfwords.
    let max_fwd = base + (i32::MAX as u64) * 2;
    let max_back = base - (1u64 << 32);
    for (target, ok) in [
        (max_fwd, true),
        (max_fwd + 2, false),
        (max_back, true),
        (max_back - 2, false),
    ] {
        let mut code = brasl.to_vec();
        let r = SPEC.apply_at(Reloc::S390xPLTRel32Dbl, &mut code, 2, base, target, 2);
        if ok {
            r.unwrap();
            assert_eq!(ril_target(&code, 0, base), target);
        } else {
            let value = target.wrapping_sub(base) as i64;
            assert_eq!(r, Err(RelocError::OutOfRange { value }));
            assert_eq!(code, brasl, "a failed patch leaves the code alone");
        }
    }
    // Odd distances cannot be encoded in halfwords.
    let mut code = larl.to_vec();
    assert_eq!(
        SPEC.apply_at(Reloc::S390xPCRel32Dbl, &mut code, 2, base, base + 0x101, 2),
        Err(RelocError::Misaligned { value: 0x101 })
    );
    let mut code = brasl.to_vec();
    assert_eq!(
        SPEC.apply_at(Reloc::S390xPLTRel32Dbl, &mut code, 2, base, base - 3, 2),
        Err(RelocError::Misaligned { value: -3 })
    );
}

#[test]
fn pc_relative_kinds_check_the_instruction() {
    let larl = [0xc0, 0x10, 0, 0, 0, 0];
    let brasl = [0xc0, 0xe5, 0, 0, 0, 0];
    let lg = [0xe3, 0x10, 0x10, 0x00, 0x00, 0x04];
    let cases: [(Reloc, &[u8], usize); 6] = [
        // A call relocation on a larl, or on a non-RIL instruction.
        (Reloc::S390xPLTRel32Dbl, &larl, 2),
        (Reloc::S390xPLTRel32Dbl, &lg, 2),
        (Reloc::S390xPCRel32Dbl, &lg, 2),
        // The field must sit 2 bytes into a whole 6-byte instruction.
        (Reloc::S390xPCRel32Dbl, &larl, 0),
        (Reloc::S390xPLTRel32Dbl, &brasl, 4),
        (Reloc::S390xPCRel32Dbl, &larl, 1),
    ];
    for (kind, bytes, offset) in cases {
        let mut code = bytes.to_vec();
        assert_eq!(
            SPEC.apply_at(kind, &mut code, offset, 0x1000, 0x2000, 2),
            Err(RelocError::UnexpectedInstruction),
            "{kind:?} at {offset} on {bytes:x?}"
        );
        assert_eq!(code, bytes);
    }
    // brasl is a valid PCRel32Dbl site too (it is pc-relative).
    let mut code = brasl.to_vec();
    SPEC.apply_at(Reloc::S390xPCRel32Dbl, &mut code, 2, 0x1000, 0x2000, 2)
        .unwrap();
}

#[test]
fn absolute_relocations_are_big_endian() {
    let mut code = vec![0xaa; 16];
    SPEC.apply_at(Reloc::Abs8, &mut code, 4, 0, 0x0102_0304_0506_0700, 8)
        .unwrap();
    assert_eq!(
        code,
        [
            0xaa, 0xaa, 0xaa, 0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 0xaa, 0xaa, 0xaa, 0xaa
        ]
    );
    let mut code = vec![0xaa; 6];
    SPEC.apply_at(Reloc::Abs4, &mut code, 1, 0, 0x8765_4320, 1)
        .unwrap();
    assert_eq!(code, [0xaa, 0x87, 0x65, 0x43, 0x21, 0xaa]);
    assert_eq!(
        SPEC.apply_at(Reloc::Abs4, &mut code, 1, 0, 0x1_0000_0000, 0),
        Err(RelocError::OutOfRange {
            value: 0x1_0000_0000
        })
    );
    assert_eq!(
        SPEC.apply_at(Reloc::Abs8, &mut code, 1, 0, 0, 0),
        Err(RelocError::OutOfRange { value: 0 }),
        "field past the end of the code"
    );
}

#[test]
fn tls_and_foreign_kinds_are_unsupported() {
    for kind in [
        Reloc::S390xTlsGd64,
        Reloc::S390xTlsGdCall,
        Reloc::X86PCRel4,
        Reloc::Arm64Call,
        Reloc::RiscvCallPlt,
    ] {
        let mut code = vec![0xc0, 0xe5, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            SPEC.apply_at(kind, &mut code, 2, 0, 0, 0),
            Err(RelocError::Unsupported),
            "{kind:?}"
        );
    }
}

/// Every kind Cranelift emits for s390x calls (plain, tail and try),
/// func_addr, symbol_value and symbol loads/stores, near and far.
fn relocs_clif() -> String {
    let (clif, sum) = symbol_sum_clif(
        "%refs",
        ("%near", "%far"),
        &[
            "colocated %near_data",
            "%far_data",
            "colocated %near_data+6",
        ],
        &[],
    );
    format!("{clif}return v{sum}\n}}\n{OTHER_RELOCS_CLIF}")
}

/// The rest of [`relocs_clif`]: loads and stores, tail and try calls.
const OTHER_RELOCS_CLIF: &str = r#"
function %loads(i64) -> i64 system_v {
gv0 = symbol colocated %near_data
block0(v0: i64):
v1 = symbol_value.i64 gv0
v2 = load.i64 notrap aligned v1
store notrap aligned v0, v1
return v2
}

function %tail_near(i64) -> i64 tail {
fn0 = colocated %near_tail(i64) -> i64 tail
block0(v0: i64):
return_call fn0(v0)
}

function %tail_far(i64) -> i64 tail {
fn0 = %far_tail(i64) -> i64 tail
block0(v0: i64):
return_call fn0(v0)
}

function %try(i64) -> i64 system_v {
sig0 = (i64) -> i64 system_v
fn0 = colocated %near(i64) -> i64 system_v
fn1 = %far(i64) -> i64 system_v
block0(v0: i64):
try_call fn0(v0), sig0, block1(ret0), [ default: block3(exn0) ]
block1(v1: i64):
try_call fn1(v1), sig0, block2(ret0), [ tag1: block3(exn1) ]
block2(v2: i64):
return v2
block3(v3: i64):
return v3
}
"#;

#[test]
fn every_relocation_cranelift_emits_is_applied() {
    let symbols: BTreeMap<&str, u64> = [
        ("%near", 0x4_0000),
        ("%near_tail", 0x4_1000),
        ("%near_data", 0x5_0008),
        ("%far", 0x1234_5678_9abc_def0),
        ("%far_tail", 0x0fed_cba9_8765_4320),
        ("%far_data", 0x7fff_0000_0000_0008),
    ]
    .into();
    let base = 0x1_0000;
    let mut kinds = BTreeSet::new();
    for func in compile(&relocs_clif()) {
        let mut code = func.code.clone();
        for r in &func.relocs {
            let RelocTarget::Symbol(name) = &r.target else {
                panic!("{}: unexpected label relocation {r:?}", func.name);
            };
            let target = symbols[name.as_str()];
            let offset = r.offset as usize;
            SPEC.apply_at(r.kind, &mut code, offset, base, target, r.addend)
                .unwrap_or_else(|e| panic!("{}: {r:?}: {e}", func.name));
            kinds.insert(format!("{:?}", r.kind));
            let expected = target.wrapping_add_signed(r.addend);
            match r.kind {
                Reloc::Abs8 => {
                    let word = code[offset..offset + 8].try_into().unwrap();
                    assert_eq!(u64::from_be_bytes(word), expected, "{r:?}");
                }
                Reloc::S390xPLTRel32Dbl | Reloc::S390xPCRel32Dbl => {
                    // The field is 2 bytes in and the addend carries +2.
                    assert_eq!(r.addend - 2, (expected - target) as i64 - 2);
                    assert_eq!(ril_target(&code, offset - 2, base), expected - 2, "{r:?}");
                }
                other => panic!("unexpected kind {other:?}"),
            }
        }
        // The patched code still disassembles, with the right targets
        // (capstone prints pc-relative targets as addresses from 0).
        let listing = disassemble(Arch::S390x, &code).unwrap();
        let rel = |sym: &str| format!("{:#x}", symbols[sym] - base);
        match func.name.as_str() {
            "%refs" => {
                assert!(listing.contains(&format!("brasl %r14, {}", rel("%near"))));
                assert!(
                    listing.contains(&format!(", {}\n", rel("%near"))),
                    "larl fn0"
                );
                assert!(listing.contains(&format!(", {}\n", rel("%near_data"))));
                let plus6 = format!("{:#x}", symbols["%near_data"] + 6 - base);
                assert!(listing.contains(&format!(", {plus6}\n")), "{listing}");
            }
            "%loads" => {
                for mnemonic in ["lgrl", "stgrl"] {
                    let ops = operands(&listing, mnemonic);
                    assert_eq!(ops.len(), 1, "{mnemonic} in {listing}");
                    assert_eq!(ops[0][1], rel("%near_data"));
                }
            }
            "%tail_near" => assert!(listing.contains(&format!("jg {}", rel("%near_tail")))),
            _ => {}
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["Abs8", "S390xPCRel32Dbl", "S390xPLTRel32Dbl"]
    );
}

/// A system_v function that keeps 15 integers and 32 floats live at
/// once, so that it clobbers %r6–%r14 and %f8–%f15: loads v2..v48 from
/// `v0`, stores them to `v1` in reverse.
fn clobber_clif() -> String {
    let ty = |i: usize| if i < 15 { "i64" } else { "f64" };
    let mut body = String::new();
    for i in 0..47 {
        body += &format!("    v{} = load.{} v0+{}\n", i + 2, ty(i), 8 * i);
    }
    for i in (0..47).rev() {
        body += &format!("    store v{}, v1+{}\n", i + 2, 8 * i);
    }
    format!(
        "function %clobber(i64, i64) system_v {{
block0(v0: i64, v1: i64):
{body}    return
}}"
    )
}

/// The prologue: the instructions before the first one that is not a
/// `stmg`, `lgr %r1`, `la %r1`, `aghi %r15`, `stg %r1, 0(%r15)` or a
/// `std` to the stack.
fn prologue(listing: &str) -> String {
    listing
        .lines()
        .take_while(|l| {
            l.starts_with("stmg ")
                || l.starts_with("lgr %r1, ")
                || l.starts_with("la %r1, ")
                || l.starts_with("aghi %r15, ")
                || *l == "stg %r1, 0(%r15)"
                || (l.starts_with("std ") && l.ends_with("(%r15)"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The expected slots, read off the prologue's `stmg`, `aghi` and `std`
/// instructions: `fp = entry %r15 + incoming`.
fn slots_from_prologue(listing: &str, incoming: i64) -> Vec<SavedRegister> {
    let prologue = prologue(listing);
    let stmg = &operands(&prologue, "stmg")[0];
    let first: u8 = stmg[0].trim_start_matches("%r").parse().unwrap();
    assert_eq!(stmg[1], "%r15");
    let stmg_disp = sp_disp(stmg[2]);
    let frame = -num(operands(&prologue, "aghi")[0][1]);
    let mut slots = Vec::new();
    for r in first..=13 {
        slots.push(SavedRegister {
            reg: Reg::int(r),
            // %rN at entry %r15 + stmg_disp + 8 (N - first).
            fp_offset: stmg_disp + 8 * i64::from(r - first) - incoming,
        });
    }
    for ops in operands(&prologue, "std") {
        let f: u8 = ops[0].trim_start_matches("%f").parse().unwrap();
        // Stored via the body %r15 = entry %r15 - frame.
        slots.push(SavedRegister {
            reg: Reg::float(f),
            fp_offset: sp_disp(ops[1]) - frame - incoming,
        });
    }
    slots
}

#[test]
fn saved_registers_match_a_system_v_prologue() {
    let func = compile(&clobber_clif()).remove(0);
    let listing = disassemble(Arch::S390x, &func.code).unwrap();
    assert!(listing.starts_with("stmg %r6, %r15, 0x30(%r15)\nlgr %r1, %r15\naghi %r15, -"));
    let expected = slots_from_prologue(&listing, 0);
    assert_eq!(func.saved_registers, expected);
    // Every callee-saved register of the crate's list is there, ints at
    // fp + 8*i in the caller-provided save area, floats in the clobber
    // area that ends at fp.
    let regs: Vec<Reg> = func.saved_registers.iter().map(|s| s.reg).collect();
    assert_eq!(regs, SPEC.callee_saved());
    for s in &func.saved_registers {
        match s.reg.class {
            RegClass::Int => assert_eq!(s.fp_offset, 8 * i64::from(s.reg.hw)),
            RegClass::Float => {
                assert_eq!(s.fp_offset, -64 + 8 * (i64::from(s.reg.hw) - 8))
            }
        }
    }
}

/// A `tail` function with two stack arguments: its fp is entry %r15 +
/// 16 + 160, it reads its fp and return address, passes a sixth
/// argument to a system_v callee and has a try_call.
const TAIL_CLIF: &str = r#"
function %tailargs(i64, i64, i64, i64, i64, i64, i64, i64) -> i64 tail {
sig0 = (i64, i64, i64, i64, i64, i64) -> i64 system_v
fn0 = colocated %callee(i64, i64, i64, i64, i64, i64) -> i64 system_v
block0(v0: i64, v1: i64, v2: i64, v3: i64, v4: i64, v5: i64, v6: i64, v7: i64):
v8 = get_frame_pointer.i64
v9 = get_return_address.i64
try_call fn0(v0, v1, v2, v3, v4, v7), sig0, block1(ret0), [ default: block2(exn0) ]
block1(v10: i64):
v11 = iadd v10, v8
v12 = iadd v11, v9
v13 = iadd v12, v6
return v13
block2(v14: i64):
return v14
}
"#;

#[test]
fn tail_frames_with_stack_arguments() {
    let func = compile(TAIL_CLIF).remove(0);
    let listing = disassemble(Arch::S390x, &func.code).unwrap();
    // Back chain = entry %r15 + incoming argument area (2 * 8 + 160).
    let incoming = 16 + 160;
    assert!(listing.contains(&format!("\nla %r1, {incoming:#x}(%r15)\n")));
    let frame = -num(operands(&listing, "aghi")[0][1]);
    assert!(listing.contains("\nstg %r1, 0(%r15)\n"));
    // STMG lands at fp + 8*N.
    let stmg = &operands(&listing, "stmg")[0];
    assert_eq!(sp_disp(stmg[2]) - incoming, 8 * 8);
    assert_eq!(stmg[0], "%r8");
    assert_eq!(
        func.saved_registers,
        slots_from_prologue(&listing, incoming)
    );
    // get_frame_pointer loads the back chain at 0(%r15);
    // get_return_address loads fp + 112 = body %r15 + frame + incoming + 112.
    assert!(
        operands(&listing, "lg")
            .iter()
            .any(|ops| ops[1] == "0(%r15)"),
        "get_frame_pointer loads 0(%r15)"
    );
    let ra = frame + incoming + 112;
    assert!(
        operands(&listing, "lg")
            .iter()
            .any(|ops| ops[1] == format!("{ra:#x}(%r15)")),
        "return address load at {ra:#x}"
    );
    // The sixth argument of a system_v call goes to 160(%r15).
    assert!(
        operands(&listing, "stg")
            .iter()
            .any(|ops| ops[1] == "0xa0(%r15)")
    );
    // frame_offset = fp - body %r15.
    let site = func
        .call_sites
        .iter()
        .find(|s| s.frame_offset.is_some())
        .unwrap();
    assert_eq!(i64::from(site.frame_offset.unwrap()), frame + incoming);
}

/// A `tail` function without stack arguments that tail-calls one with
/// stack arguments: Cranelift grows the frame by the outgoing tail-call
/// area (counted in the clobber size), which moves the float saves down
/// but leaves fp (= entry %r15) and the GPR saves where they were.
#[test]
fn grown_tail_frame_keeps_the_layout() {
    let mut body = String::new();
    for i in 0..32 {
        body += &format!("    v{} = load.f64 v0+{}\n", i + 2, 8 * i);
    }
    for i in (0..32).rev() {
        body += &format!("    store v{}, v1+{}\n", i + 2, 8 * i);
    }
    let clif = format!(
        "function %grow(i64, i64) -> i64 tail {{
fn0 = colocated %g(i64, i64, i64, i64, i64, i64, i64, i64, i64) -> i64 tail
block0(v0: i64, v1: i64):
{body}    return_call fn0(v0, v1, v0, v1, v0, v1, v0, v1, v0)
}}"
    );
    let func = compile(&clif).remove(0);
    let listing = disassemble(Arch::S390x, &func.code).unwrap();
    assert!(
        listing.contains("\nlgr %r1, %r15\n"),
        "no incoming arguments: {listing}"
    );
    assert_eq!(func.saved_registers, slots_from_prologue(&listing, 0));
    let floats: Vec<_> = func
        .saved_registers
        .iter()
        .filter(|s| s.reg.class == RegClass::Float)
        .collect();
    assert_eq!(floats.len(), 8, "{listing}");
    // Three stack arguments (24 bytes) + the 160-byte save area lie
    // between the float saves and fp.
    assert_eq!(floats[0].fp_offset, -(64 + 24 + 160), "{listing}");
    // The outgoing arguments go where the callee's incoming ones are:
    // right below fp, i.e. the callee's fp will be this fp.
    let frame = -num(operands(&prologue(&listing), "aghi")[0][1]);
    assert!(
        operands(&listing, "stg")
            .iter()
            .any(|ops| ops[1] == format!("{:#x}(%r15)", frame - 24)),
        "first stack argument at fp - 24: {listing}"
    );
}

#[test]
fn system_v_try_call_frame_offset() {
    let func = compile(&relocs_clif())
        .into_iter()
        .find(|f| f.name == "%try")
        .unwrap();
    let listing = disassemble(Arch::S390x, &func.code).unwrap();
    let frame = -num(operands(&listing, "aghi")[0][1]);
    let offsets: Vec<_> = func.call_sites.iter().map(|s| s.frame_offset).collect();
    assert_eq!(offsets, [Some(frame as u32), Some(frame as u32)]);
}
