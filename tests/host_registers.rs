//! The host's values survive a call whatever way it ends. An exception or
//! trap delivered to the entry in O(1) arrives with the registers the JIT
//! code left, not the host's: the native machine's call tells the compiler
//! that every register is clobbered (`src/native/call.rs`). Here JIT code
//! fills every callee-saved register it can with its own values before it
//! throws or traps, and the Rust caller keeps values live across the call,
//! which the compiler would hold in callee-saved registers if it were told
//! they survive.

use std::hint::black_box;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::module::RawEntry;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::trampoline::VALUES_OFFSET;
use cranelift_exn::values::encode_arguments;
use cranelift_exn::{CallError, Module, ModuleBuilder};

/// `%clobber_CC(kind)` (below) holds 15 integers and 8 floats (all
/// different, all depending on `kind`) across its call of `%act(kind)`, so
/// register allocation puts them in the callee-saved registers, then
/// spills. `%act` returns (0), throws to the entry in O(1) (1), throws with
/// no handler on the way (2: the walk restores `%clobber_CC`'s saves, as a
/// return would), or traps (3).
const PROGRAM: &str = "
function %act(i64) -> i64 system_v {
    sig0 = (i32, i64, i64) system_v
    fn0 = %__cranelift_exn_throw_to_entry sig0
    sig1 = (i64, i64, i64, i32, i64, i64) system_v
    fn1 = %__cranelift_throw sig1
block0(v0: i64):
    v1 = ireduce.i32 v0
    br_table v1, block1, [block1, block2, block3, block4]
block1:
    return v0
block2:
    v10 = iconst.i32 7
    v11 = iconst.i64 11
    call fn0(v10, v11, v11)
    return v0
block3:
    v20 = iconst.i64 0
    v21 = get_frame_pointer.i64
    v22 = iconst.i32 9
    call fn1(v20, v21, v20, v22, v0, v20)
    return v0
block4:
    trap user1
}

";

/// `%clobber_CC`: the same body in each calling convention an entry
/// trampoline handles its own way (`fast` cannot be `try_call`ed: its
/// trampoline calls an inner one).
const CLOBBER: &str = "
function %clobber_CC(i64) -> i64 CC {
    sig0 = (i64) -> i64 system_v
    fn0 = %act sig0
block0(v0: i64):
    v17 = iconst.i64 0x0101010101010101
    v1 = imul v0, v17
    v102 = iconst.i64 0x1111
    v2 = iadd v1, v102
    v103 = iconst.i64 0x2222
    v3 = iadd v1, v103
    v104 = iconst.i64 0x3333
    v4 = iadd v1, v104
    v105 = iconst.i64 0x4444
    v5 = iadd v1, v105
    v106 = iconst.i64 0x5555
    v6 = iadd v1, v106
    v107 = iconst.i64 0x6666
    v7 = iadd v1, v107
    v108 = iconst.i64 0x7777
    v8 = iadd v1, v108
    v109 = iconst.i64 0x8888
    v9 = iadd v1, v109
    v110 = iconst.i64 0x9999
    v10 = iadd v1, v110
    v111 = iconst.i64 0xaaaa
    v11 = iadd v1, v111
    v112 = iconst.i64 0xbbbb
    v12 = iadd v1, v112
    v113 = iconst.i64 0xcccc
    v13 = iadd v1, v113
    v114 = iconst.i64 0xdddd
    v14 = iadd v1, v114
    v115 = iconst.i64 0xeeee
    v15 = iadd v1, v115
    v116 = iconst.i64 0xffff
    v16 = iadd v1, v116
    v20 = fcvt_from_sint.f64 v2
    v21 = f64const 0x1.1p1
    v22 = fadd v20, v21
    v23 = fadd v22, v21
    v24 = fadd v23, v21
    v25 = fadd v24, v21
    v26 = fadd v25, v21
    v27 = fadd v26, v21
    v28 = fadd v27, v21
    v29 = fadd v28, v21
    v30 = call fn0(v0)
    v31 = iadd v2, v3
    v32 = iadd v31, v4
    v33 = iadd v32, v5
    v34 = iadd v33, v6
    v35 = iadd v34, v7
    v36 = iadd v35, v8
    v37 = iadd v36, v9
    v38 = iadd v37, v10
    v39 = iadd v38, v11
    v40 = iadd v39, v12
    v41 = iadd v40, v13
    v42 = iadd v41, v14
    v43 = iadd v42, v15
    v44 = iadd v43, v16
    v45 = iadd v44, v30
    v50 = fadd v22, v23
    v51 = fadd v50, v24
    v52 = fadd v51, v25
    v53 = fadd v52, v26
    v54 = fadd v53, v27
    v55 = fadd v54, v28
    v56 = fadd v55, v29
    v57 = fcvt_to_sint_sat.i64 v56
    v58 = iadd v45, v57
    return v58
}
";

const CONVENTIONS: [&str; 3] = ["system_v", "tail", "fast"];

fn module() -> Module {
    let arch = Arch::host().expect("a supported host");
    let mut builder = ModuleBuilder::new(default_isa(arch).unwrap());
    let mut program = PROGRAM.to_string();
    for cc in CONVENTIONS {
        program.push_str(&CLOBBER.replace("CC", cc));
    }
    builder.define_clif(&program).unwrap();
    builder
        .finalize(Box::new(NativeMachine::new().unwrap()))
        .unwrap()
}

/// Ten integers and eight floats from `seed`, live across `call_raw` of
/// `entry` (a `%clobber_CC(kind)`); returns the call's outcome and what
/// they hold after.
#[inline(never)]
fn call_keeping_values(
    module: &Module,
    entry: &RawEntry,
    buffer: &mut [u8],
    seed: u64,
) -> (Result<(), CallError>, [u64; 10], [f64; 8]) {
    let i: [u64; 10] =
        std::array::from_fn(|k| black_box(seed.rotate_left(k as u32 * 6) ^ k as u64));
    let f: [f64; 8] = std::array::from_fn(|k| black_box((seed >> 40) as f64 + k as f64 * 0.5));
    // Each value separately, so that each may get a register of its own.
    let [i0, i1, i2, i3, i4, i5, i6, i7, i8, i9] = i;
    let [f0, f1, f2, f3, f4, f5, f6, f7] = f;
    let outcome = module.call_raw(entry, buffer);
    (
        outcome,
        [i0, i1, i2, i3, i4, i5, i6, i7, i8, i9],
        [f0, f1, f2, f3, f4, f5, f6, f7],
    )
}

fn expected(seed: u64) -> ([u64; 10], [f64; 8]) {
    (
        std::array::from_fn(|k| seed.rotate_left(k as u32 * 6) ^ k as u64),
        std::array::from_fn(|k| (seed >> 40) as f64 + k as f64 * 0.5),
    )
}

#[test]
fn host_values_survive_every_way_a_call_ends() {
    let module = module();
    let endianness = Arch::host().unwrap().endianness();
    for (round, cc) in CONVENTIONS.iter().cycle().take(6).enumerate() {
        let name = format!("clobber_{cc}");
        let entry = module.raw_entry(&name).unwrap();
        let sig = module.signature(&name).unwrap().clone();
        let round = round as u64;
        for kind in 0..4i64 {
            let mut buffer = encode_arguments(&sig, &[DataValue::I64(kind)], endianness).unwrap();
            let seed = 0x5eed_0000_0000_0001 ^ (round << 56) ^ ((kind as u64) << 48);
            let (outcome, ints, floats) = call_keeping_values(&module, &entry, &mut buffer, seed);
            match (kind, &outcome) {
                (0, Ok(())) => {
                    let at = VALUES_OFFSET as usize;
                    let result = i64::from_ne_bytes(buffer[at..at + 8].try_into().unwrap());
                    // 0x1111 × (1 + … + 15), plus the floats' sum
                    // 8 × 4369 + 2.125 × (1 + … + 8), truncated.
                    assert_eq!(result, 524_280 + 35_028, "{name}(0) returned its sum");
                }
                (1, Err(CallError::Exception { tag: 7, payloads })) => {
                    assert_eq!(*payloads, [11, 11])
                }
                (2, Err(CallError::Exception { tag: 9, .. })) => {}
                (3, Err(CallError::Trap { function, .. })) => assert_eq!(function, "%act"),
                _ => panic!("{name}({kind}): unexpected outcome {outcome:?}"),
            }
            let (want_ints, want_floats) = expected(seed);
            assert_eq!(ints, want_ints, "{name}({kind}): integers after the call");
            assert_eq!(floats, want_floats, "{name}({kind}): floats after the call");
        }
    }
}
