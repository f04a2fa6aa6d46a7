//! The riscv64 throw and resume stubs, run in unicorn-engine.
//!
//! The throw stub is called the way JIT code calls `__cranelift_throw`; a
//! code hook stands in for the host function: it checks the captured context
//! word by word, writes a resume state and returns. Execution must then fall
//! through into the resume stub and arrive at the landing pc with exactly the
//! requested registers.

use std::cell::RefCell;
use std::rc::Rc;

use cranelift_exn::isa::{Arch, Reg, RegClass, context};
use unicorn_engine::{Arch as UcArch, Mode, Prot, RegisterRISCV, Unicorn};

/// Code: [host literal][throw stub][resume stub].
const CODE: u64 = 0x1_0000;
const CODE_SIZE: u64 = 0x1_0000;
/// The "host function": a page holding one `ebreak`, so executing it
/// instead of the hook's simulated return fails the run. (Not zeros: unicorn
/// raises the illegal-instruction exception for them before the code hook
/// runs.)
const HOST: u64 = 0x4_0000;
const EBREAK: u32 = 0x0010_0073;
/// Where resumed execution must land (zeros too; `emu_start` stops there).
const LANDING: u64 = CODE + 0x8000;
/// The throw stub's return address: captured, never executed.
const RETURN_ADDRESS: u64 = CODE + 0x4444;
const STACK: u64 = 0x10_0000;
const STACK_SIZE: u64 = 0x1_0000;
/// sp at the call of the throw stub (16-byte aligned, as the psABI requires).
const ENTRY_SP: u64 = STACK + 0x8000;

const SPEC_ARCH: Arch = Arch::Riscv64;

fn uc_reg(reg: Reg) -> i32 {
    let base = match reg.class {
        RegClass::Int => RegisterRISCV::X0,
        RegClass::Float => RegisterRISCV::F0,
    };
    i32::from(base) + i32::from(reg.hw)
}

fn int(hw: u8) -> i32 {
    uc_reg(Reg::int(hw))
}

/// A full resume state, all values distinct from each other and from the
/// state at the throw.
#[derive(Clone, Debug, PartialEq)]
struct Resume {
    pc: u64,
    sp: u64,
    fp: u64,
    payloads: [u64; 2],
    saved: Vec<u64>,
}

fn resume_state(salt: u64) -> Resume {
    let n = SPEC_ARCH.spec().callee_saved().len();
    Resume {
        pc: LANDING,
        sp: STACK + 0xc000 - 0x30,
        fp: STACK + 0xc100 + salt,
        payloads: [0x5041_594c_4f41_4430 ^ salt, 0x5041_594c_4f41_4431 ^ salt],
        saved: (0..n as u64)
            .map(|i| 0x5e5e_0000_0000_0000 | (salt << 16) | (i * 0x101 + 7))
            .collect(),
    }
}

fn context_words() -> usize {
    context::size_bytes(SPEC_ARCH.spec().callee_saved().len()) / 8
}

fn write_words(uc: &mut Unicorn<'_, ()>, address: u64, words: &[u64]) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    uc.mem_write(address, &bytes).unwrap();
}

fn read_words(uc: &Unicorn<'_, ()>, address: u64, count: usize) -> Vec<u64> {
    uc.mem_read_as_vec(address, count * 8)
        .unwrap()
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The resume state as context words (ARGS left as `args`).
fn encode(state: &Resume, args: &[u64]) -> Vec<u64> {
    let mut words = vec![0; context_words()];
    words[context::PC] = state.pc;
    words[context::SP] = state.sp;
    words[context::FP] = state.fp;
    words[context::PAYLOAD0] = state.payloads[0];
    words[context::PAYLOAD1] = state.payloads[1];
    words[context::ARGS..context::ARGS + context::ARG_COUNT].copy_from_slice(args);
    words[context::SAVED..context::SAVED + state.saved.len()].copy_from_slice(&state.saved);
    words
}

/// A riscv64 machine with code, stack and host pages mapped, the stubs
/// loaded and float instructions enabled. Returns it with the throw and
/// resume stub addresses.
fn machine() -> (Unicorn<'static, ()>, u64, u64) {
    let spec = SPEC_ARCH.spec();
    let mut uc = Unicorn::new(UcArch::RISCV, Mode::RISCV64).unwrap();
    uc.mem_map(CODE, CODE_SIZE, Prot::ALL).unwrap();
    uc.mem_map(HOST, 0x1000, Prot::ALL).unwrap();
    uc.mem_write(HOST, &EBREAK.to_le_bytes()).unwrap();
    uc.mem_map(STACK, STACK_SIZE, Prot::READ | Prot::WRITE)
        .unwrap();
    let throw = spec.throw_stub().code;
    let resume = spec.resume_stub().code;
    let mut image = HOST.to_le_bytes().to_vec();
    image.extend_from_slice(throw);
    image.extend_from_slice(resume);
    uc.mem_write(CODE, &image).unwrap();
    // mstatus.FS = dirty: without it the first fsd/fld traps.
    uc.reg_write(RegisterRISCV::MSTATUS, 0x6000).unwrap();
    let throw_at = CODE + 8;
    (uc, throw_at, throw_at + throw.len() as u64)
}

/// Every register of `state` as the hart holds it now, in `Resume` form.
fn current_state(uc: &Unicorn<'_, ()>) -> Resume {
    let spec = SPEC_ARCH.spec();
    let [p0, p1] = spec.payload_regs();
    Resume {
        pc: uc.pc_read().unwrap(),
        sp: uc.reg_read(uc_reg(spec.stack_pointer())).unwrap(),
        fp: uc.reg_read(uc_reg(spec.frame_pointer().unwrap())).unwrap(),
        payloads: [
            uc.reg_read(uc_reg(p0)).unwrap(),
            uc.reg_read(uc_reg(p1)).unwrap(),
        ],
        saved: spec
            .callee_saved()
            .iter()
            .map(|r| uc.reg_read(uc_reg(*r)).unwrap())
            .collect(),
    }
}

#[test]
fn register_facts_used_here() {
    let spec = SPEC_ARCH.spec();
    let names: Vec<String> = spec
        .callee_saved()
        .iter()
        .map(|r| spec.register_name(*r))
        .collect();
    assert_eq!(
        names.join(" "),
        "s1 s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 fs0 fs1 fs2 fs3 fs4 fs5 fs6 fs7 fs8 fs9 fs10 fs11"
    );
    assert_eq!(spec.payload_regs(), [Reg::int(10), Reg::int(11)]);
    assert_eq!(spec.frame_pointer(), Some(Reg::int(8)));
    assert_eq!(spec.stack_pointer(), Reg::int(2));
    assert_eq!(spec.link_register(), Some(Reg::int(1)));
    assert_eq!(
        &spec.int_arg_regs()[..6],
        &(10..16).map(Reg::int).collect::<Vec<_>>()[..]
    );
}

/// What the stand-in host function saw.
#[derive(Debug, Default)]
struct HostCall {
    /// a0, sp and ra on entry to the host function.
    a0: u64,
    sp: u64,
    ra: u64,
    /// The context as the throw stub filled it.
    context: Vec<u64>,
}

#[test]
fn throw_captures_and_resume_installs_through_the_host() {
    let spec = SPEC_ARCH.spec();
    let (mut uc, throw_at, resume_at) = machine();

    // State at the call of __cranelift_throw.
    let args: [u64; 6] = [
        0xa000_0000_0000_0001,
        0xa000_0000_0000_0002,
        0xa000_0000_0000_0003,
        0xa000_0000_0000_0004,
        0xa000_0000_0000_0005,
        0xa000_0000_0000_0006,
    ];
    for (reg, value) in spec.int_arg_regs().iter().zip(args) {
        uc.reg_write(uc_reg(*reg), value).unwrap();
    }
    let old_fp = STACK + 0x9000;
    let old_saved: Vec<u64> = (0..spec.callee_saved().len() as u64)
        .map(|i| 0xc0de_0000_0000_0000 | (i * 0x1111 + 3))
        .collect();
    for (reg, value) in spec.callee_saved().iter().zip(&old_saved) {
        uc.reg_write(uc_reg(*reg), *value).unwrap();
    }
    uc.reg_write(RegisterRISCV::S0, old_fp).unwrap();
    uc.reg_write(RegisterRISCV::SP, ENTRY_SP).unwrap();
    uc.reg_write(RegisterRISCV::RA, RETURN_ADDRESS).unwrap();

    let wanted = resume_state(1);
    let seen = Rc::new(RefCell::new(Vec::<HostCall>::new()));
    {
        let seen = Rc::clone(&seen);
        let wanted = wanted.clone();
        let words = context_words();
        // The hook only records and writes: assertions happen after the run
        // (a panic must not unwind through unicorn's C frames).
        uc.add_code_hook(HOST, HOST, move |uc, _, _| {
            let a0 = uc.reg_read(RegisterRISCV::A0).unwrap();
            let sp = uc.reg_read(RegisterRISCV::SP).unwrap();
            let ra = uc.reg_read(RegisterRISCV::RA).unwrap();
            let context = read_words(uc, a0, words);
            let args = context[context::ARGS..context::ARGS + context::ARG_COUNT].to_vec();
            write_words(uc, a0, &encode(&wanted, &args));
            // Clobber what a host function may clobber: every caller-saved
            // integer register (but not a0's context, already read).
            for hw in [5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 28, 29, 30, 31] {
                uc.reg_write(int(hw), 0xbad0_0000 + u64::from(hw)).unwrap();
            }
            seen.borrow_mut().push(HostCall {
                a0,
                sp,
                ra,
                context,
            });
            // Return from the host function.
            uc.set_pc(ra).unwrap();
        })
        .unwrap();
    }

    uc.emu_start(throw_at, LANDING, 0, 10_000).unwrap();

    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "the host function ran once");
    let call = &seen[0];
    let size = context::size_bytes(spec.callee_saved().len()) as u64;
    assert_eq!(call.a0, ENTRY_SP - size, "context on the stub's stack");
    assert_eq!(call.sp, call.a0, "context at sp");
    assert!(call.sp.is_multiple_of(16), "sp aligned at the host call");
    assert_eq!(
        call.ra,
        resume_at - 4,
        "host returns to the stub's last instruction"
    );
    let ctx = &call.context;
    assert_eq!(
        ctx[context::PC],
        RETURN_ADDRESS,
        "captured pc = ra at entry"
    );
    assert_eq!(ctx[context::SP], ENTRY_SP, "captured sp = sp at entry");
    assert_eq!(ctx[context::FP], old_fp, "captured fp = s0");
    assert_eq!(
        &ctx[context::ARGS..context::ARGS + context::ARG_COUNT],
        &args
    );
    assert_eq!(
        &ctx[context::SAVED..context::SAVED + old_saved.len()],
        &old_saved[..],
        "every callee-saved register captured in order"
    );

    assert_eq!(current_state(&uc), wanted);
}

/// Calls the resume stub directly with a context whose payload0 differs from
/// the context address: a stub that wrote a0 before its last load through a0
/// would read the rest from the payload "address" and fail or install junk.
/// The context also lies below the new sp, as it does after a throw.
#[test]
fn resume_stub_installs_a_context_without_clobbering_its_base() {
    let spec = SPEC_ARCH.spec();
    let (mut uc, _, resume_at) = machine();
    let ctx_at = STACK + 0x2000;
    let wanted = resume_state(2);
    assert_ne!(wanted.payloads[0], ctx_at);
    assert!(wanted.sp > ctx_at + context_words() as u64 * 8);
    write_words(&mut uc, ctx_at, &encode(&wanted, &[0; 6]));
    // Junk in every register the stub is to write.
    for (i, reg) in spec.callee_saved().iter().enumerate() {
        uc.reg_write(uc_reg(*reg), 0x1111_0000 + i as u64).unwrap();
    }
    uc.reg_write(RegisterRISCV::A1, 0x2222).unwrap();
    uc.reg_write(RegisterRISCV::S0, 0x3333).unwrap();
    uc.reg_write(RegisterRISCV::SP, STACK + 0x1000).unwrap();
    uc.reg_write(RegisterRISCV::A0, ctx_at).unwrap();

    uc.emu_start(resume_at, LANDING, 0, 1_000).unwrap();

    assert_eq!(current_state(&uc), wanted);
    // The context is read, never written.
    assert_eq!(
        read_words(&uc, ctx_at, context_words()),
        encode(&wanted, &[0; 6])
    );
}
