//! Entry trampolines: the only way host code calls JIT code.
//!
//! For a signature `S`, one function is generated in CLIF, C convention,
//! `(callee, buffer)`. It presets the status word to "exception" and
//! records its handler in the buffer header: its stack pointer and
//! frame-pointer value, then the address of its own catch-all handler
//! (`get_exception_handler_address`). The address goes last because a
//! nonzero address is what tells a fault or interrupt that arrives
//! meanwhile that the record is complete (a buffer arrives with it zero:
//! see [`crate::machine::Machine::call_entry`]). It then loads the
//! arguments from the buffer's slots, `try_call`s `callee` with `S` and a
//! `default` handler, and on return stores the results and sets the status
//! to "returned". The handler only returns: an exception (or a trap) nobody
//! else catches lands there with the status still preset.
//!
//! What the handler may rely on is the frame alone. It is reached with the
//! recorded sp and fp, but every other register may hold what the code
//! that threw or trapped left in it — for a `system_v` callee Cranelift
//! assumes the callee-saved registers survive the exceptional edge, which
//! an O(1) delivery does not make true. The handler reads none of them (it
//! uses no value defined before the call), and the epilogue restores the
//! registers the trampoline itself saved from its own frame. The others of
//! the host's callee-saved registers are not restored: the host calls the
//! trampoline as a function that clobbers every register (the native
//! machine's call does, `crate::native`), except when the callee cannot
//! throw or trap, which is the only way to call it as a plain C function.
//! (For a `tail` callee Cranelift treats every register as clobbered on the
//! exceptional edge, so that trampoline saves and restores all of them.)
//!
//! A callee of any other convention is called by an inner `system_v`
//! trampoline, which moves the values through the buffer around its plain
//! call; the entry trampoline `try_call`s that one instead.

use cranelift_codegen::ir::{self, types};
use cranelift_codegen::isa::CallConv;

pub use crate::abi::{
    HANDLER_FP_OFFSET, HANDLER_PC_OFFSET, HANDLER_SP_OFFSET, SLOT_SIZE, STATUS_EXCEPTION,
    STATUS_OFFSET, STATUS_RETURNED, VALUES_OFFSET,
};
use crate::exception_table::ENTRY_TRAMPOLINE_PREFIX;

/// Sixteen bytes of call buffer, 16-byte aligned on every host as the
/// trampoline's `aligned` loads and stores require (`u128` is only 8-byte
/// aligned on s390x, which made an "aligned" buffer unaligned there).
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub(crate) struct BufferWord([u8; 16]);

impl BufferWord {
    /// Sixteen zero bytes.
    pub(crate) const ZERO: BufferWord = BufferWord([0; 16]);
}

/// Bytes a buffer needs for `sig`.
pub fn buffer_size(sig: &ir::Signature) -> usize {
    let slots = sig.params.len().max(sig.returns.len());
    VALUES_OFFSET as usize + slots * SLOT_SIZE as usize
}

/// Name of the entry trampoline for signature number `index`.
pub fn name(index: usize) -> String {
    format!("{ENTRY_TRAMPOLINE_PREFIX}{index}")
}

/// Name of the inner trampoline for signature number `index`, when its
/// convention needs one ([`clif`]).
fn inner_name(index: usize) -> String {
    format!("%__cranelift_exn_inner_{index}")
}

/// CLIF text of the entry trampoline for `sig` (and of its inner
/// trampoline, a plain `system_v` caller, for a callee that is neither
/// `system_v` nor `tail`: Cranelift cannot `try_call` `fast`, and a `winch`
/// callee has no exception payload registers); `index` makes the names
/// unique.
pub fn clif(sig: &ir::Signature, index: usize) -> String {
    let entry = name(index);
    let moves = Moves::of(sig);
    // The two conventions whose `try_call` has the payload registers the
    // handler names.
    if matches!(sig.call_conv, CallConv::SystemV | CallConv::Tail) {
        let call = format!("try_call_indirect v0({})", moves.args.join(", "));
        return entry_clif(&entry, &sig.to_string(), &call, &moves);
    }
    let inner = inner_name(index);
    let assign = if moves.results.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = moves.results.iter().map(|(v, _)| v.as_str()).collect();
        format!("{} = ", names.join(", "))
    };
    let ptr = types::I64;
    let inner_clif = format!(
        "function {inner}({ptr}, {ptr}) system_v {{
    sig0 = {sig}
block0(v0: {ptr}, v1: {ptr}):
{loads}    {assign}call_indirect sig0, v0({args})
{stores}    return
}}

",
        loads = moves.loads,
        args = moves.args.join(", "),
        stores = moves.stores,
    );
    let sig0 = format!("({ptr}, {ptr}) system_v\n    fn0 = colocated {inner} sig0");
    let nothing_to_move = Moves::default();
    inner_clif + &entry_clif(&entry, &sig0, "try_call fn0(v0, v1)", &nothing_to_move)
}

/// A signature's values moved through the buffer at `v1`: the loads of the
/// arguments (`v10`, …), the call's arguments, its results with their
/// types, and the stores of the results.
#[derive(Default)]
struct Moves {
    loads: String,
    args: Vec<String>,
    results: Vec<(String, ir::Type)>,
    stores: String,
}

impl Moves {
    fn of(sig: &ir::Signature) -> Moves {
        let slot = |i: usize| VALUES_OFFSET + SLOT_SIZE * i as i32;
        let mut moves = Moves::default();
        for (i, p) in sig.params.iter().enumerate() {
            let v = format!("v{}", 10 + i);
            moves.loads.push_str(&format!(
                "    {v} = load.{} notrap aligned v1+{}\n",
                p.value_type,
                slot(i)
            ));
            moves.args.push(v);
        }
        for (i, r) in sig.returns.iter().enumerate() {
            let v = format!("v{}", 10 + sig.params.len() + i);
            moves
                .stores
                .push_str(&format!("    store notrap aligned {v}, v1+{}\n", slot(i)));
            moves.results.push((v, r.value_type));
        }
        moves
    }
}

/// The entry trampoline `entry`: records its handler, presets the status,
/// makes `call` (with the signature `sig0` declares) amid `moves`, and
/// sets the status when the call returns.
fn entry_clif(entry: &str, sig0: &str, call: &str, moves: &Moves) -> String {
    let ptr = types::I64;
    let rets: Vec<String> = (0..moves.results.len())
        .map(|i| format!("ret{i}"))
        .collect();
    let params: Vec<String> = moves
        .results
        .iter()
        .map(|(v, ty)| format!("{v}: {ty}"))
        .collect();
    format!(
        "function {entry}({ptr}, {ptr}) system_v {{
    sig0 = {sig0}
block0(v0: {ptr}, v1: {ptr}):
    v2 = get_exception_handler_address.{ptr} block1, 0
    v3 = get_stack_pointer.{ptr}
    v4 = get_frame_pointer.{ptr}
    v5 = iconst.{ptr} {STATUS_EXCEPTION}
    store notrap aligned v5, v1+{STATUS_OFFSET}
    store notrap aligned v3, v1+{HANDLER_SP_OFFSET}
    store notrap aligned v4, v1+{HANDLER_FP_OFFSET}
    store notrap aligned v2, v1+{HANDLER_PC_OFFSET}
{loads}    jump block1
block1:
    {call}, sig0, block2({rets}), [ default: block3(exn0, exn1) ]
block2({params}):
{stores}    v6 = iconst.{ptr} {STATUS_RETURNED}
    store notrap aligned v6, v1+{STATUS_OFFSET}
    return
block3(v7: {ptr}, v8: {ptr}):
    return
}}
",
        loads = moves.loads,
        rets = rets.join(", "),
        params = params.join(", "),
        stores = moves.stores,
    )
}

#[cfg(test)]
mod tests {
    use cranelift_codegen::ir::AbiParam;

    use super::*;
    use crate::compile::{compile_function, default_isa};
    use crate::isa::Arch;

    /// The displacement of `line` (one instruction of `arch`'s
    /// disassembly) if it stores to the buffer, which arrives in the second
    /// argument register.
    fn buffer_store(arch: Arch, line: &str) -> Option<i64> {
        let (mnemonic, operands) = line.split_once(' ')?;
        let (stores, base) = match arch {
            Arch::X86_64 => (mnemonic.starts_with("mov"), "(%rsi)"),
            Arch::Aarch64 => (matches!(mnemonic, "str" | "stur"), "[x1"),
            Arch::Riscv64 => (mnemonic == "sd", "(a1)"),
            Arch::S390x => (matches!(mnemonic, "stg" | "mvghi"), "(%r3)"),
        };
        // The memory operand: the destination (x86-64 puts it last,
        // s390x's `mvghi` first).
        let memory = operands
            .split(", ")
            .position(|o| o.contains(base))
            .map(|i| operands.split(", ").skip(i).collect::<Vec<_>>().join(", "))?;
        if !stores || (arch == Arch::X86_64 && !operands.ends_with(base)) {
            return None;
        }
        let displacement = match arch {
            Arch::Aarch64 => memory.split_once('#').map_or("0", |(_, d)| d),
            _ => memory.split_once('(').map_or("", |(d, _)| d),
        }
        .trim_end_matches(']');
        let parsed = match displacement.strip_prefix("0x") {
            _ if displacement.is_empty() => Ok(0),
            Some(hex) => i64::from_str_radix(hex, 16),
            None => displacement.parse(),
        };
        Some(parsed.unwrap_or_else(|_| panic!("{arch}: displacement of {line}")))
    }

    /// In the machine code of every ISA, the header stores come before the
    /// call in the order that keeps the record complete whenever its
    /// handler address is nonzero: status, sp, fp, then the address
    /// (Cranelift keeps stores in program order; this checks that it did).
    #[test]
    fn the_handler_address_is_recorded_last() {
        let header = [
            STATUS_OFFSET,
            HANDLER_PC_OFFSET,
            HANDLER_SP_OFFSET,
            HANDLER_FP_OFFSET,
        ]
        .map(i64::from);
        let calls = ["callq", "blr", "bl", "jalr", "basr", "brasl"];
        for arch in Arch::ALL {
            let isa = default_isa(arch).unwrap();
            for call_conv in [CallConv::SystemV, CallConv::Tail, CallConv::Fast] {
                let mut sig = ir::Signature::new(call_conv);
                sig.params.push(AbiParam::new(types::I64));
                sig.returns.push(AbiParam::new(types::I64));
                // The entry trampoline comes last (after an inner one).
                let func = cranelift_reader::parse_functions(&clif(&sig, 0))
                    .unwrap()
                    .pop()
                    .unwrap();
                let code = compile_function(&*isa, func).unwrap().code;
                let text = crate::disassemble::disassemble(arch, &code).unwrap();
                let before_call = text
                    .lines()
                    .take_while(|l| !calls.contains(&l.split(' ').next().unwrap_or_default()));
                let stores: Vec<i64> = before_call
                    .filter_map(|l| buffer_store(arch, l))
                    .filter(|d| header.contains(d))
                    .collect();
                assert_eq!(
                    stores,
                    [
                        STATUS_OFFSET,
                        HANDLER_SP_OFFSET,
                        HANDLER_FP_OFFSET,
                        HANDLER_PC_OFFSET
                    ]
                    .map(i64::from),
                    "{arch} {call_conv}:\n{text}"
                );
            }
        }
    }

    /// Every convention a callee may have gets trampolines that compile on
    /// every ISA: `system_v` and `tail` callees one function, the others an
    /// inner trampoline too.
    #[test]
    fn trampolines_compile_for_every_callee_convention() {
        for arch in Arch::ALL {
            let isa = default_isa(arch).unwrap();
            let mut conventions = vec![
                CallConv::SystemV,
                CallConv::Tail,
                CallConv::Fast,
                CallConv::PreserveAll,
            ];
            if arch == Arch::X86_64 {
                conventions.push(CallConv::Winch);
            }
            for call_conv in conventions {
                let mut sig = ir::Signature::new(call_conv);
                sig.params.push(AbiParam::new(types::I64));
                sig.params.push(AbiParam::new(types::F64));
                // (`preserve_all` functions return nothing.)
                if call_conv != CallConv::PreserveAll {
                    sig.returns.push(AbiParam::new(types::I32));
                }
                let text = clif(&sig, 3);
                let funcs = cranelift_reader::parse_functions(&text).unwrap();
                let direct = matches!(call_conv, CallConv::SystemV | CallConv::Tail);
                assert_eq!(
                    funcs.len(),
                    if direct { 1 } else { 2 },
                    "{arch} {call_conv}"
                );
                for func in funcs {
                    let compiled = compile_function(&*isa, func);
                    assert!(compiled.is_ok(), "{arch} {call_conv}: {compiled:?}");
                }
            }
        }
    }
}
