//! Unit tests of the aarch64 facts, relocation patching, unwind decoding and
//! stubs.

use std::collections::HashMap;

use cranelift_codegen::settings::{self, Configurable};

use super::*;
use crate::compile::{CompiledFunction, RelocTarget, build_isa};
use crate::disassemble::disassemble;
use crate::isa::RegClass;
use crate::isa::tests::{TLS_CLIF, compile_clif, symbol_sum_clif};

// Instruction words with zero immediates, as Cranelift emits them.
const BL: u32 = 0x9400_0000; // bl #0
const B: u32 = 0x1400_0000; // b #0
const ADRP_X0: u32 = 0x9000_0000; // adrp x0, #0
const ADD_X0: u32 = 0x9100_0000; // add x0, x0, #0
const LDR_X1: u32 = 0xf940_0021; // ldr x1, [x1]
const NOP: u32 = 0xd503_201f;

fn words(insns: &[u32]) -> Vec<u8> {
    insns.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn word(code: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(code[offset..offset + 4].try_into().unwrap())
}

fn sign_extend(value: u32, bits: u32) -> i64 {
    (i64::from(value) << (64 - bits)) >> (64 - bits)
}

// Independent decoders of the patched fields.

/// Target of `b`/`bl` at `place`.
fn branch_target(insn: u32, place: u64) -> u64 {
    place.wrapping_add_signed(sign_extend(insn & 0x3ff_ffff, 26) * 4)
}

/// Page address `adrp` at `place` computes.
fn adrp_target(insn: u32, place: u64) -> u64 {
    let imm = ((insn >> 5) & 0x7_ffff) << 2 | ((insn >> 29) & 3);
    (place & !0xfff).wrapping_add_signed(sign_extend(imm, 21) << 12)
}

/// Immediate of `add xd, xn, #imm` / byte offset of `ldr xt, [xn, #imm]`.
fn add_imm(insn: u32) -> u64 {
    u64::from((insn >> 10) & 0xfff)
}
fn ldr_offset(insn: u32) -> u64 {
    u64::from((insn >> 10) & 0xfff) * 8
}

#[test]
fn registers() {
    let spec = Arch::Aarch64.spec();
    assert_eq!(spec.arch(), Arch::Aarch64);
    assert_eq!(spec.payload_regs(), [Reg::int(0), Reg::int(1)]);
    assert_eq!(spec.frame_pointer(), Some(Reg::int(29)));
    assert_eq!(spec.link_register(), Some(Reg::int(30)));
    assert_eq!(spec.stack_pointer(), Reg::int(31));
    assert_eq!(spec.int_arg_regs().len(), 8);
    let saved = spec.callee_saved();
    assert_eq!(saved.len(), 18);
    assert!(!saved.contains(&Reg::int(29)) && !saved.contains(&Reg::int(30)));
    let names: Vec<String> = saved.iter().map(|&r| spec.register_name(r)).collect();
    assert_eq!(names.first().map(String::as_str), Some("x19"));
    assert_eq!(names.last().map(String::as_str), Some("d15"));
    assert_eq!(spec.register_name(Reg::int(31)), "sp");
    assert_eq!(spec.register_name(Reg::int(29)), "x29");
    assert_eq!(
        spec.frame_links(),
        FrameLinks {
            caller_fp_offset: 0,
            return_address_offset: 8,
            return_address_mask: (1 << 48) - 1,
        }
    );
}

#[test]
fn stubs_fit_the_context_layout() {
    assert_eq!(context::size_bytes(CALLEE_SAVED.len()), 240);
    // The literal load is at throw-stub offset 0x40 and reads stub - 8.
    let ldr = word(&THROW_CODE, 0x40);
    assert_eq!(ldr & 0xff00_001f, 0x5800_0010, "ldr x16, literal");
    assert_eq!(0x40 + sign_extend((ldr >> 5) & 0x7_ffff, 19) * 4, -8);
    assert_eq!(THROW_CODE.len() % 4, 0);
    assert_eq!(RESUME_CODE.len() % 4, 0);
}

#[test]
fn arm64_call_patches_imm26() {
    let base = 0x4000_0000u64;
    for (insn, disp) in [
        (BL, 0x0123_4568),
        (BL, -0x40),
        (B, (1 << 27) - 4),
        (BL, -(1 << 27)),
        (BL, 0),
    ] {
        let mut code = words(&[NOP, insn]);
        let target = (base + 4).wrapping_add_signed(disp - 8);
        SPEC.apply_at(Reloc::Arm64Call, &mut code, 4, base, target, 8)
            .unwrap();
        let patched = word(&code, 4);
        assert_eq!(patched & 0xfc00_0000, insn, "opcode kept");
        assert_eq!(
            branch_target(patched, base + 4),
            target + 8,
            "disp {disp:#x}"
        );
    }
}

#[test]
fn arm64_call_errors() {
    let mut code = words(&[BL]);
    let base = 0x1000_0000u64;
    let err = |code: &mut [u8], target| SPEC.apply_at(Reloc::Arm64Call, code, 0, base, target, 0);
    assert_eq!(
        err(&mut code, base + (1 << 27)),
        Err(RelocError::OutOfRange { value: 1 << 27 })
    );
    assert_eq!(
        err(&mut code, base - (1 << 27) - 4),
        Err(RelocError::OutOfRange {
            value: -(1 << 27) - 4
        })
    );
    assert_eq!(
        err(&mut code, base + 0x102),
        Err(RelocError::Misaligned { value: 0x102 })
    );
    assert_eq!(word(&code, 0), BL, "failed patches leave the code alone");
    let mut nop = words(&[NOP]);
    assert_eq!(
        err(&mut nop, base + 0x100),
        Err(RelocError::UnexpectedInstruction)
    );
    let mut adrp = words(&[ADRP_X0]);
    assert_eq!(
        err(&mut adrp, base + 0x100),
        Err(RelocError::UnexpectedInstruction)
    );
    // A site past the end of the code.
    let mut short = vec![0u8; 2];
    assert_eq!(
        err(&mut short, base + 0x100),
        Err(RelocError::UnexpectedInstruction)
    );
}

#[test]
fn adrp_add_pair() {
    for (base, value) in [
        (0x5555_0000_1234u64, 0x5555_8765_4321u64),
        (0x5555_8765_4ff8, 0x5555_0000_0008),
        (0x7000_0000, 0x7000_0fff),
        (0x1_0000_0000, 0x1_0000_0000 + (1 << 32) - 1),
        (0x2_0000_0ffc, 0x2_0000_0000 - (1 << 32)),
    ] {
        let mut code = words(&[ADRP_X0, ADD_X0]);
        let addend = 0x30;
        SPEC.apply_at(
            Reloc::Aarch64AdrPrelPgHi21,
            &mut code,
            0,
            base,
            value - 0x30,
            addend,
        )
        .unwrap();
        SPEC.apply_at(
            Reloc::Aarch64AddAbsLo12Nc,
            &mut code,
            4,
            base,
            value - 0x30,
            addend,
        )
        .unwrap();
        let (adrp, add) = (word(&code, 0), word(&code, 4));
        assert_eq!(adrp & 0x9f00_001f, ADRP_X0, "opcode and rd kept");
        assert_eq!(add & 0xffc0_03ff, ADD_X0, "opcode and regs kept");
        assert_eq!(
            adrp_target(adrp, base) + add_imm(add),
            value,
            "{base:#x} -> {value:#x}"
        );
    }
}

#[test]
fn adrp_errors() {
    let base = 0x2_0000_0000u64;
    let mut code = words(&[ADRP_X0]);
    for kind in [Reloc::Aarch64AdrPrelPgHi21, Reloc::Aarch64AdrGotPage21] {
        assert_eq!(
            SPEC.apply_at(kind, &mut code, 0, base + 0x10, base + (1 << 32), 0),
            Err(RelocError::OutOfRange { value: 1 << 32 })
        );
        assert_eq!(
            SPEC.apply_at(kind, &mut code, 0, base, base - (1 << 32) - 0x1000, 0),
            Err(RelocError::OutOfRange {
                value: -(1 << 32) - 0x1000
            })
        );
        let mut add = words(&[ADD_X0]);
        assert_eq!(
            SPEC.apply_at(kind, &mut add, 0, base, base, 0),
            Err(RelocError::UnexpectedInstruction)
        );
    }
    let mut adrp = words(&[ADRP_X0]);
    assert_eq!(
        SPEC.apply_at(Reloc::Aarch64AddAbsLo12Nc, &mut adrp, 0, base, base, 0),
        Err(RelocError::UnexpectedInstruction)
    );
    let mut ldr = words(&[LDR_X1]);
    assert_eq!(
        SPEC.apply_at(Reloc::Aarch64AddAbsLo12Nc, &mut ldr, 0, base, base, 0),
        Err(RelocError::UnexpectedInstruction)
    );
}

#[test]
fn got_pair() {
    let spec = Arch::Aarch64.spec();
    assert!(spec.uses_got(Reloc::Aarch64AdrGotPage21));
    assert!(spec.uses_got(Reloc::Aarch64Ld64GotLo12Nc));
    assert!(!spec.uses_got(Reloc::Aarch64AdrPrelPgHi21));
    assert!(!spec.uses_got(Reloc::Arm64Call));
    assert!(!spec.uses_got(Reloc::Abs8));
    let base = 0x7f00_0000_0ff8u64;
    for slot in [
        0x7f00_0040_0ff8u64,
        0x7eff_f000_0000,
        0x7f00_0000_0000 + 0xab8,
    ] {
        let mut code = words(&[0x9000_0001, LDR_X1]); // adrp x1; ldr x1, [x1]
        SPEC.apply_at(Reloc::Aarch64AdrGotPage21, &mut code, 0, base, slot, 0)
            .unwrap();
        SPEC.apply_at(Reloc::Aarch64Ld64GotLo12Nc, &mut code, 4, base, slot, 0)
            .unwrap();
        let (adrp, ldr) = (word(&code, 0), word(&code, 4));
        assert_eq!(ldr & 0xffc0_03ff, LDR_X1, "opcode and regs kept");
        assert_eq!(adrp_target(adrp, base) + ldr_offset(ldr), slot);
    }
    let mut code = words(&[LDR_X1]);
    assert_eq!(
        SPEC.apply_at(Reloc::Aarch64Ld64GotLo12Nc, &mut code, 0, base, 0x1004, 0),
        Err(RelocError::Misaligned { value: 0x1004 })
    );
    let mut add = words(&[ADD_X0]);
    assert_eq!(
        SPEC.apply_at(Reloc::Aarch64Ld64GotLo12Nc, &mut add, 0, base, 0x1000, 0),
        Err(RelocError::UnexpectedInstruction)
    );
}

#[test]
fn absolute_words() {
    let mut code = vec![0u8; 16];
    SPEC.apply_at(
        Reloc::Abs8,
        &mut code,
        4,
        0x1000,
        0x1122_3344_5566_7700,
        0x88,
    )
    .unwrap();
    assert_eq!(&code[4..12], &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(code[..4], [0; 4]);
    assert_eq!(code[12..], [0; 4]);
    assert!(
        SPEC.apply_at(Reloc::Abs8, &mut code, 12, 0x1000, 1, 0)
            .is_err()
    );

    let mut code = vec![0u8; 8];
    SPEC.apply_at(Reloc::Abs4, &mut code, 4, 0, 0xffff_fff0, 0xf)
        .unwrap();
    assert_eq!(&code[4..], &0xffff_ffffu32.to_le_bytes());
    SPEC.apply_at(Reloc::Abs4, &mut code, 0, 0, 0, -(1 << 31))
        .unwrap();
    assert_eq!(&code[..4], &0x8000_0000u32.to_le_bytes());
    assert_eq!(
        SPEC.apply_at(Reloc::Abs4, &mut code, 0, 0, 1 << 32, 0),
        Err(RelocError::OutOfRange { value: 1 << 32 })
    );
    assert_eq!(
        SPEC.apply_at(Reloc::Abs4, &mut code, 0, 0, 0, -(1 << 31) - 1),
        Err(RelocError::OutOfRange {
            value: -(1 << 31) - 1
        })
    );
}

#[test]
fn tls_and_foreign_kinds_are_unsupported() {
    let mut code = words(&[ADRP_X0, ADD_X0]);
    for kind in [
        Reloc::Aarch64TlsDescAdrPage21,
        Reloc::Aarch64TlsDescLd64Lo12,
        Reloc::Aarch64TlsDescAddLo12,
        Reloc::Aarch64TlsDescCall,
        Reloc::MachOAarch64TlsAdrPage21,
        Reloc::MachOAarch64TlsAdrPageOff12,
        Reloc::X86PCRel4,
        Reloc::X86CallPCRel4,
        Reloc::Arm32Call,
    ] {
        assert_eq!(
            SPEC.apply_at(kind, &mut code, 0, 0x1000, 0x2000, 0),
            Err(RelocError::Unsupported),
            "{kind:?}"
        );
    }
}

/// Patched at address 0, capstone prints the absolute targets.
#[test]
fn patched_code_disassembles_to_its_targets() {
    let mut code = words(&[BL, B, ADRP_X0, ADD_X0, 0x9000_0001, LDR_X1, 0, 0]);
    SPEC.apply_at(Reloc::Arm64Call, &mut code, 0, 0, 0x7ff_fffc, 0)
        .unwrap();
    SPEC.apply_at(Reloc::Arm64Call, &mut code, 4, 0, 0x100, 0x24)
        .unwrap();
    SPEC.apply_at(
        Reloc::Aarch64AdrPrelPgHi21,
        &mut code,
        8,
        0,
        0xfedc_b000,
        0xa98,
    )
    .unwrap();
    SPEC.apply_at(
        Reloc::Aarch64AddAbsLo12Nc,
        &mut code,
        12,
        0,
        0xfedc_b000,
        0xa98,
    )
    .unwrap();
    SPEC.apply_at(Reloc::Aarch64AdrGotPage21, &mut code, 16, 0, 0x1234_5670, 0)
        .unwrap();
    SPEC.apply_at(
        Reloc::Aarch64Ld64GotLo12Nc,
        &mut code,
        20,
        0,
        0x1234_5670,
        0,
    )
    .unwrap();
    let text = disassemble(Arch::Aarch64, &code[..24]).unwrap();
    assert_eq!(
        text,
        "bl #0x7fffffc\n\
         b #0x124\n\
         adrp x0, #0xfedcb000\n\
         add x0, x0, #0xa98\n\
         adrp x1, #0x12345000\n\
         ldr x1, [x1, #0x670]"
    );
}

// Real Cranelift output.

fn aarch64_isa(is_pic: bool, tls: bool) -> cranelift_codegen::isa::OwnedTargetIsa {
    let mut flags = settings::builder();
    flags
        .set("is_pic", if is_pic { "true" } else { "false" })
        .unwrap();
    if tls {
        flags.set("tls_model", "elf_gd").unwrap();
    }
    build_isa(Arch::Aarch64, &settings::Flags::new(flags), &[]).unwrap()
}

fn compile_all(clif: &str, is_pic: bool, tls: bool) -> Vec<CompiledFunction> {
    compile_clif(&*aarch64_isa(is_pic, tls), clif)
}

/// Calls, function addresses and data addresses, near and far, and a
/// tail call.
fn reloc_clif() -> String {
    let (clif, sum) = symbol_sum_clif(
        "%relocs",
        ("%near", "%far"),
        &["colocated %data_near+16", "%data_far+8"],
        &[],
    );
    format!(
        "{clif}return v{sum}
}}

function %tail_caller(i64) -> i64 tail {{
fn0 = colocated %near_tail(i64) -> i64 tail
block0(v0: i64):
return_call fn0(v0)
}}
"
    )
}

/// Link `funcs` one after another from `base`, resolving symbols from
/// `symbols` and GOT references to `got` slots; then check every
/// relocated field decodes to what it should.
fn link_and_check(
    funcs: &mut [CompiledFunction],
    base: u64,
    symbols: &HashMap<&str, u64>,
    got: &HashMap<&str, u64>,
) -> Vec<Reloc> {
    let mut kinds = Vec::new();
    let mut start = base;
    for func in funcs.iter_mut() {
        for reloc in &func.relocs {
            let RelocTarget::Symbol(name) = &reloc.target else {
                panic!("unexpected label relocation {reloc:?}");
            };
            let target = if SPEC.uses_got(reloc.kind) {
                got[name.as_str()]
            } else {
                symbols[name.as_str()]
            };
            SPEC.apply_at(
                reloc.kind,
                &mut func.code,
                reloc.offset as usize,
                start,
                target,
                reloc.addend,
            )
            .unwrap_or_else(|e| panic!("{reloc:?} in {}: {e}", func.name));
            kinds.push(reloc.kind);
        }
        // Check each field against the intended value.
        for (i, reloc) in func.relocs.iter().enumerate() {
            let RelocTarget::Symbol(name) = &reloc.target else {
                unreachable!()
            };
            let off = reloc.offset as usize;
            let place = start + off as u64;
            let value = if SPEC.uses_got(reloc.kind) {
                got[name.as_str()]
            } else {
                symbols[name.as_str()]
            }
            .wrapping_add_signed(reloc.addend);
            // The lo12 half of a pair is the next relocation.
            let lo = func.relocs.get(i + 1);
            match reloc.kind {
                Reloc::Arm64Call => {
                    assert_eq!(branch_target(word(&func.code, off), place), value)
                }
                Reloc::Abs8 => assert_eq!(
                    u64::from_le_bytes(func.code[off..off + 8].try_into().unwrap()),
                    value
                ),
                Reloc::Aarch64AdrPrelPgHi21 | Reloc::Aarch64AdrGotPage21 => {
                    // The low half: an `add` of the address, or an `ldr`
                    // from the GOT slot.
                    let (lo_kind, lo_bits): (_, fn(u32) -> u64) =
                        if reloc.kind == Reloc::Aarch64AdrPrelPgHi21 {
                            (Reloc::Aarch64AddAbsLo12Nc, add_imm)
                        } else {
                            (Reloc::Aarch64Ld64GotLo12Nc, ldr_offset)
                        };
                    let lo = lo.unwrap();
                    assert_eq!(lo.kind, lo_kind);
                    let low = lo_bits(word(&func.code, lo.offset as usize));
                    assert_eq!(adrp_target(word(&func.code, off), place) + low, value);
                }
                Reloc::Aarch64AddAbsLo12Nc | Reloc::Aarch64Ld64GotLo12Nc => {}
                other => panic!("unexpected kind {other:?}"),
            }
        }
        start += (func.code.len() as u64).next_multiple_of(16);
    }
    kinds
}

fn symbols(base: u64) -> HashMap<&'static str, u64> {
    HashMap::from([
        ("%near", base + 0x7f0_0000),
        ("%near_tail", base - 0x7ff_0000),
        ("%far", 0xdead_beef_0000),
        ("%data_near", base + 0xfff0_1234),
        ("%data_far", 0x1122_3344_5566_7700),
    ])
}

/// Each of `expected` is among the `kinds` linked.
fn assert_kinds_seen(kinds: &[Reloc], expected: &[Reloc]) {
    for kind in expected {
        assert!(kinds.contains(kind), "{kind:?} not seen in {kinds:?}");
    }
}

#[test]
fn cranelift_relocations_non_pic() {
    let mut funcs = compile_all(&reloc_clif(), false, false);
    let base = 0x0000_5555_1234_0000u64;
    let kinds = link_and_check(&mut funcs, base, &symbols(base), &HashMap::new());
    assert_kinds_seen(
        &kinds,
        &[
            Reloc::Arm64Call,
            Reloc::Aarch64AdrPrelPgHi21,
            Reloc::Aarch64AddAbsLo12Nc,
            Reloc::Abs8,
        ],
    );
    // `return_call` uses `b`, plain calls `bl`.
    let tail = &funcs[1];
    let b = tail
        .relocs
        .iter()
        .find(|r| r.kind == Reloc::Arm64Call)
        .unwrap();
    assert_eq!(word(&tail.code, b.offset as usize) >> 26, 0b000101);
}

#[test]
fn cranelift_relocations_pic() {
    let mut funcs = compile_all(&reloc_clif(), true, false);
    let base = 0x0000_7f00_0000_8000u64;
    let got = HashMap::from([
        ("%near", base + 0x10_0000),
        ("%far", base + 0x10_0008),
        ("%data_near", base - 0x2000_0000),
        ("%data_far", base + 0xffff_0ff8),
    ]);
    let kinds = link_and_check(&mut funcs, base, &symbols(base), &got);
    let pic = [
        Reloc::Arm64Call,
        Reloc::Aarch64AdrGotPage21,
        Reloc::Aarch64Ld64GotLo12Nc,
    ];
    assert_kinds_seen(&kinds, &pic);
    assert!(!kinds.contains(&Reloc::Abs8));
}

/// TLS symbols compile to TLSDESC relocations, which are refused.
#[test]
fn cranelift_tls_relocations_are_unsupported() {
    let funcs = compile_all(TLS_CLIF, false, true);
    let mut code = funcs[0].code.clone();
    assert!(!funcs[0].relocs.is_empty());
    for reloc in &funcs[0].relocs {
        assert_eq!(
            SPEC.apply_at(
                reloc.kind,
                &mut code,
                reloc.offset as usize,
                0x1000,
                0x2000,
                0
            ),
            Err(RelocError::Unsupported),
            "{reloc:?}"
        );
    }
}

/// Walk the prologue's pre-indexed pushes after the (last) `mov x29, sp`
/// and record where each register lands relative to x29.
fn prologue_saves(code: &[u8]) -> Vec<SavedRegister> {
    let insns: Vec<u32> = code
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let start = insns
        .iter()
        .rposition(|&i| i == 0x9100_03fd) // mov x29, sp
        .expect("frame setup");
    let mut sp = 0i64;
    let mut saves = Vec::new();
    for &insn in &insns[start + 1..] {
        if (insn >> 5) & 31 != 31 {
            break; // not sp-based: past the pushes
        }
        let (rt, rt2) = ((insn & 31) as u8, ((insn >> 10) & 31) as u8);
        // A pre-indexed `stp` of a pair or `str` of one register (x or d):
        // how far sp moves, whether the registers are integers, which.
        let (delta, int, regs) = match (insn & 0xffc0_0000, insn & 0xffe0_0c00) {
            (pair @ (0xa980_0000 | 0x6d80_0000), _) => (
                sign_extend((insn >> 15) & 0x7f, 7) * 8,
                pair == 0xa980_0000,
                vec![rt, rt2],
            ),
            (_, one @ (0xf800_0c00 | 0xfc00_0c00)) => (
                sign_extend((insn >> 12) & 0x1ff, 9),
                one == 0xf800_0c00,
                vec![rt],
            ),
            _ => break,
        };
        sp += delta;
        let reg = if int { Reg::int } else { Reg::float };
        for (i, &r) in regs.iter().enumerate() {
            saves.push(SavedRegister {
                reg: reg(r),
                fp_offset: sp + 8 * i as i64,
            });
        }
    }
    saves
}

/// A function keeping `ints` integers live across a call (so they need
/// callee-saved registers), then `floats` floats live at once without a
/// call in between (Cranelift treats every vector register as clobbered
/// by calls, since AAPCS64 keeps only the low halves of v8–v15, so d8–d15
/// are used only under pressure: more than the 24 other registers).
fn clobbering_clif(ints: usize, floats: usize) -> String {
    let mut text = String::from(
        "function %clobbers(i64) -> i64 system_v {\n    fn0 = colocated %g() system_v\nblock0(v0: i64):\n",
    );
    for i in 0..ints {
        text += &format!("    v{} = load.i64 v0+{}\n", 1 + i, i * 8);
    }
    text += "    call fn0()\n";
    for i in 0..floats {
        text += &format!("    v{} = load.f64 v0+{}\n", 1001 + i, i * 8);
    }
    let mut acc = "v0".to_string();
    for i in 0..ints {
        text += &format!("    v{} = iadd {acc}, v{}\n", 2001 + i, 1 + i);
        acc = format!("v{}", 2001 + i);
    }
    if floats > 0 {
        let mut facc = "v1001".to_string();
        for i in 1..floats {
            text += &format!("    v{} = fadd {facc}, v{}\n", 3001 + i, 1001 + i);
            facc = format!("v{}", 3001 + i);
        }
        text += &format!("    v4000 = bitcast.i64 {facc}\n    v4001 = iadd {acc}, v4000\n");
        acc = "v4001".to_string();
    }
    text += &format!("    return {acc}\n}}\n");
    text
}

fn sorted(mut saves: Vec<SavedRegister>) -> Vec<(Reg, i64)> {
    let mut v: Vec<(Reg, i64)> = saves.drain(..).map(|s| (s.reg, s.fp_offset)).collect();
    v.sort();
    v
}

/// `fp_relative_saved_registers` agrees with what the prologue does.
#[test]
fn saved_registers_match_prologue() {
    for (ints, floats, want_int, want_float) in [(20, 32, 10, 8), (2, 0, 3, 0), (0, 25, 1, 1)] {
        let clif = clobbering_clif(ints, floats);
        let func = compile_all(&clif, false, false).remove(0);
        let from_unwind = sorted(func.saved_registers.clone());
        let from_code = sorted(prologue_saves(&func.code));
        assert_eq!(from_unwind, from_code, "{clif}");
        let count = |class| from_unwind.iter().filter(|(r, _)| r.class == class).count();
        assert_eq!(count(RegClass::Int), want_int, "{clif}");
        assert_eq!(count(RegClass::Float), want_float, "{clif}");
        for (reg, offset) in &from_unwind {
            assert!(CALLEE_SAVED.contains(reg), "{reg:?}");
            assert!(*offset < 0 && offset % 8 == 0, "{offset}");
        }
    }
}

/// A `tail` function whose `return_call` needs more stack-argument space
/// than it received grows its incoming-argument area first: the prologue
/// moves the (fp, lr) pair down and sets x29 again before the clobber
/// pushes. The frame links and the save slots stay fp-relative as usual.
#[test]
fn grown_tail_frame_keeps_the_layout() {
    let params = ["i64"; 12].join(", ");
    let args: Vec<String> = (0..12).map(|i| format!("v{}", i % 5)).collect();
    let clif = format!(
        "function %grow(i64) -> i64 tail {{
fn0 = colocated %g({params}) -> i64 tail
fn1 = colocated %h() tail
block0(v0: i64):
v1 = load.i64 v0
v2 = load.i64 v0+8
v3 = load.i64 v0+16
v4 = load.i64 v0+24
call fn1()
return_call fn0({})
}}",
        args.join(", ")
    );
    let func = compile_all(&clif, false, false).remove(0);
    let text = disassemble(Arch::Aarch64, &func.code).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "stp x29, x30, [sp, #-0x10]!", "{text}");
    assert_eq!(lines[1], "mov x29, sp", "{text}");
    assert!(lines[2].starts_with("sub sp, sp, #"), "frame grown: {text}");
    assert_eq!(lines[4], "stp x29, x30, [sp]", "{text}");
    assert_eq!(lines[5], "mov x29, sp", "{text}");
    let from_unwind = sorted(func.saved_registers.clone());
    assert_eq!(from_unwind, sorted(prologue_saves(&func.code)), "{text}");
    assert_eq!(from_unwind.len(), 5, "x19–x23: {text}");
}
