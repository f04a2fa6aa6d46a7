//! Addresses computed by JIT code equal what the linker and the exception
//! table say, on every ISA (x86_64 natively, the others emulated).

use cranelift_exn::Module;
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::settings::{self, Configurable};
use cranelift_exn::compile::{Handler, build_isa};
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::native::NativeMachine;
use cranelift_exn_emulator::EmulatedMachine;

fn machine(arch: Arch) -> Box<dyn Machine> {
    if Some(arch) == Arch::host() {
        Box::new(NativeMachine::new().unwrap())
    } else {
        Box::new(EmulatedMachine::new(arch).unwrap())
    }
}

fn module(arch: Arch, pic: bool, text: &str) -> Module {
    let mut flags = settings::builder();
    flags
        .set("is_pic", if pic { "true" } else { "false" })
        .unwrap();
    let isa = build_isa(arch, &settings::Flags::new(flags), &[]).unwrap();
    let funcs = cranelift_exn::reader::parse_functions(text).unwrap();
    Module::new(machine(arch), isa.as_ref(), funcs).unwrap()
}

const HANDLERS: &str = "
function %g() tail {
block0:
    return
}
";

fn handler_function(index: usize) -> String {
    format!(
        "function %h{index}() -> i64 {{
    sig0 = () tail
    fn0 = %g() tail
block0:
    v0 = get_exception_handler_address.i64 block1, {index}
    jump block1
block1:
    try_call fn0(), sig0, block4(), [ tag1: block2(exn0), tag2: block3(), default: block3() ]
block2(v1: i64):
    return v1
block3:
    v2 = iconst.i64 3
    return v2
block4:
    return v0
}}
"
    )
}

#[test]
fn handler_addresses_equal_the_exception_table_on_every_isa() {
    let text = format!(
        "{HANDLERS}{}{}{}",
        handler_function(0),
        handler_function(1),
        handler_function(2)
    );
    for arch in Arch::ALL {
        let m = module(arch, false, &text);
        for index in 0..3 {
            let name = format!("%h{index}");
            let got = match m.call(&name, &[]).unwrap()[..] {
                [DataValue::I64(v)] => v as u64,
                ref other => panic!("{arch} {name}: {other:?}"),
            };
            let table = &m.image().table;
            let i = table
                .function_index(m.image().symbol(&name).unwrap())
                .unwrap();
            let f = &table.functions()[i];
            // The table holds only call sites with handlers.
            let site = table.call_sites(i).next().unwrap().to_call_site();
            assert!(!site.handlers.is_empty());
            let expected = match site.handlers[index] {
                Handler::Tag { offset, .. } | Handler::Default { offset } => {
                    f.start + u64::from(offset)
                }
                Handler::Context(_) => unreachable!(),
            };
            assert_eq!(got, expected, "{arch} {name}");
        }
    }
}

/// `%target` and `%near`, which takes its address with a colocated
/// `func_addr`.
const TARGET_AND_NEAR: &str = "
function %target() -> i64 {
block0:
    v0 = iconst.i64 9
    return v0
}

function %near() -> i64 {
    fn0 = colocated %target() -> i64
block0:
    v0 = func_addr.i64 fn0
    return v0
}
";

#[test]
fn func_addr_and_symbol_value_land_on_the_symbol_on_every_isa() {
    let rest = "
function %far() -> i64 {
    fn0 = %target() -> i64
block0:
    v0 = func_addr.i64 fn0
    return v0
}

function %sym() -> i64 {
    gv0 = symbol %target
block0:
    v0 = symbol_value.i64 gv0
    return v0
}

function %sym_near() -> i64 {
    gv0 = symbol colocated %target
block0:
    v0 = symbol_value.i64 gv0
    return v0
}

function %calls() -> i64 {
    fn0 = colocated %target() -> i64
    fn1 = %target() -> i64
block0:
    v0 = call fn0()
    v1 = call fn1()
    v2 = iadd v0, v1
    return v2
}
";
    let text = [TARGET_AND_NEAR, rest].concat();
    for arch in Arch::ALL {
        for pic in [false, true] {
            let m = module(arch, pic, &text);
            let target = m.image().symbol("%target").unwrap();
            for name in ["%near", "%far", "%sym", "%sym_near"] {
                assert_eq!(
                    m.call(name, &[]).unwrap(),
                    vec![DataValue::I64(target as i64)],
                    "{arch} is_pic={pic} {name}"
                );
            }
            assert_eq!(
                m.call("%calls", &[]).unwrap(),
                vec![DataValue::I64(18)],
                "{arch} is_pic={pic}"
            );
        }
    }
}

/// RISC-V's `%pcrel_lo` relocation targets a label (the `auipc` it pairs
/// with). After linking, the pair as the disassembler reads it must point at
/// the symbol.
#[test]
fn riscv64_label_relocations_land_where_the_disassembly_says() {
    use cranelift_exn::compile::{RelocTarget, compile_function};
    use cranelift_exn::link::link;
    use std::collections::HashMap;

    let arch = Arch::Riscv64;
    let text = TARGET_AND_NEAR;
    let isa = build_isa(arch, &settings::Flags::new(settings::builder()), &[]).unwrap();
    let functions: Vec<_> = cranelift_exn::reader::parse_functions(text)
        .unwrap()
        .into_iter()
        .map(|f| compile_function(isa.as_ref(), f).unwrap())
        .collect();
    let near = &functions[1];
    let lo = near
        .relocs
        .iter()
        .find(|r| matches!(r.target, RelocTarget::Label(_)))
        .expect("a label relocation");
    let RelocTarget::Label(auipc_offset) = lo.target else {
        unreachable!()
    };

    let base = 0x7654_3000;
    let image = link(arch, &functions, base, &HashMap::new()).unwrap();
    let start = image.symbol("%near").unwrap();
    let code = &image.code[(start - base) as usize..];
    let cs = isa.to_capstone().unwrap();
    let insns = cs.disasm_all(&code[..near.code.len()], start).unwrap();
    let at = |addr: u64| {
        insns
            .iter()
            .find(|i| i.address() == addr)
            .map(|i| {
                (
                    i.mnemonic().unwrap().to_string(),
                    i.op_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    let immediate = |ops: &str| -> i64 {
        let last = ops.rsplit(", ").next().unwrap().trim();
        let (neg, digits) = last.strip_prefix('-').map_or((false, last), |d| (true, d));
        let v = digits.strip_prefix("0x").map_or_else(
            || digits.parse::<i64>().unwrap(),
            |h| i64::from_str_radix(h, 16).unwrap(),
        );
        if neg { -v } else { v }
    };
    let auipc_addr = start + u64::from(auipc_offset);
    let (m1, ops1) = at(auipc_addr);
    let (m2, ops2) = at(start + u64::from(lo.offset));
    assert_eq!(m1, "auipc", "{ops1}");
    assert_eq!(m2, "addi", "{ops2}");
    let computed = auipc_addr.wrapping_add_signed((immediate(&ops1) << 12) + immediate(&ops2));
    assert_eq!(
        computed,
        image.symbol("%target").unwrap(),
        "auipc {ops1}; addi {ops2}"
    );
}
