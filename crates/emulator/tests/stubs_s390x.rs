//! The s390x throw and resume stubs, executed in unicorn-engine.
//!
//! Memory: `[host literal][throw stub][resume stub]` at `CODE`; the literal
//! holds `HOST`, a "host function" that is a single `br %r14`, with a code
//! hook on it standing in for the host unwinder: it records the captured
//! context and writes a resume state. The `br %r14` then returns to the throw
//! stub (pc = r14, as a real host function would), which falls through into
//! the resume stub. A code hook on `LANDING` records the arrival; the
//! landing pad is a `nopr` (changes no register) and emulation stops after
//! it, at `HALT`.
//!
//! (unicorn 2.1.5's s390x raises a program interruption — intno 3, so
//! `emu_start` fails with `EXCEPTION` unless an interrupt hook stops it —
//! when a *branch* targets the `until` address; reaching `until`
//! sequentially is fine. Hence `HALT` one instruction after `LANDING`.)
//!
//! The caller's side is laid out as Cranelift's `system_v` code leaves it at
//! a call (see `src/isa/s390x.rs`): r15 = the caller's stack pointer, the
//! caller's back chain (its fp value) at `0(%r15)`, the 160-byte register
//! save area above it, and the sixth integer argument of the call at
//! `160(%r15)` — r2–r6 carry only the first five.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use cranelift_exn::isa::{Arch, context};
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode, Prot};
use unicorn_engine::{RegisterS390X as R, S390xCpuModel, Unicorn};

const CODE: u64 = 0x1_0000;
const HOST: u64 = 0x2_0000;
const LANDING: u64 = 0x3_0000;
/// Where emulation stops: right after the `nopr` at `LANDING`.
const HALT: u64 = LANDING + 2;
/// The throw stub's return address (r14 on entry); never executed.
const RETURN_ADDRESS: u64 = 0x3_8006;
const STACK: u64 = 0x8_0000;
const STACK_SIZE: u64 = 0x1_0000;
/// r15 on entry to the throw stub: the throwing frame's stack pointer.
const ENTRY_SP: u64 = 0x8_f000;
/// The back chain at `0(ENTRY_SP)`: the throwing frame's fp value.
const ENTRY_FP: u64 = 0x8_f1e8;
/// The register save area a caller provides above its stack pointer.
const SAVE_AREA: u64 = 160;

/// `br %r14`.
const BR_R14: [u8; 2] = [0x07, 0xfe];
/// `nopr %r7` (`bcr 0, %r7`).
const NOPR: [u8; 2] = [0x07, 0x07];

/// CR0: AFP-register control (0x40000) and vector enablement (0x20000);
/// without them unicorn faults on `std %f8`.
const CR0_AFP_VECTOR: u64 = 0x6_0000;

const GSAVED: [R; 8] = [R::R6, R::R7, R::R8, R::R9, R::R10, R::R11, R::R12, R::R13];
const FSAVED: [R; 8] = [R::F8, R::F9, R::F10, R::F11, R::F12, R::F13, R::F14, R::F15];
/// The register arguments of the C convention; the sixth is on the stack.
const ARG_REGS: [R; 5] = [R::R2, R::R3, R::R4, R::R5, R::R6];

/// The registers of `callee_saved()` order: r6–r13, then f8–f15.
fn saved_regs() -> Vec<R> {
    GSAVED.iter().chain(FSAVED.iter()).copied().collect()
}

fn saved_count() -> usize {
    Arch::S390x.spec().callee_saved().len()
}

fn context_words() -> usize {
    context::size_bytes(saved_count()) / 8
}

/// A fresh s390x machine with the stubs, the host function, a landing pad
/// and a stack mapped. Returns it with the throw and resume stub addresses.
fn machine<'a>() -> (Unicorn<'a, ()>, u64, u64) {
    let spec = Arch::S390x.spec();
    assert_eq!(saved_count(), 16);
    let (throw, resume) = (spec.throw_stub(), spec.resume_stub());
    let mut uc = Unicorn::new(UcArch::S390X, Mode::BIG_ENDIAN).unwrap();
    // Same model as the emulator crate's s390x machine; must precede any
    // other use of the engine.
    uc.ctl_set_cpu_model(S390xCpuModel::GEN15A as i32).unwrap();
    for (base, size) in [
        (CODE, 0x1000),
        (HOST, 0x1000),
        (LANDING, 0x1000),
        (STACK, STACK_SIZE),
    ] {
        uc.mem_map(base, size, Prot::ALL).unwrap();
    }
    let throw_at = CODE + 8;
    let resume_at = throw_at + throw.code.len() as u64;
    uc.mem_write(CODE, &HOST.to_be_bytes()).unwrap();
    uc.mem_write(throw_at, throw.code).unwrap();
    uc.mem_write(resume_at, resume.code).unwrap();
    uc.mem_write(HOST, &BR_R14).unwrap();
    uc.mem_write(LANDING, &NOPR.repeat(8)).unwrap();
    let cr0 = uc.reg_read(R::CR0).unwrap();
    uc.reg_write(R::CR0, cr0 | CR0_AFP_VECTOR).unwrap();
    (uc, throw_at, resume_at)
}

fn read_words(uc: &Unicorn<'_, ()>, at: u64, n: usize) -> Vec<u64> {
    let bytes = uc.mem_read_as_vec(at, n * 8).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn write_words(uc: &mut Unicorn<'_, ()>, at: u64, words: &[u64]) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    uc.mem_write(at, &bytes).unwrap();
}

/// Run from `start` until `HALT`; returns the address of the first
/// instruction executed on the landing page (only `LANDING` is valid there).
fn run_to_landing(uc: &mut Unicorn<'_, ()>, start: u64, count: usize) -> Option<u64> {
    let arrival = Rc::new(Cell::new(None));
    let hook_arrival = Rc::clone(&arrival);
    let hook = uc
        .add_code_hook(LANDING, LANDING + 0xfff, move |_, address, _| {
            if hook_arrival.get().is_none() {
                hook_arrival.set(Some(address));
            }
        })
        .unwrap();
    uc.emu_start(start, HALT, 1_000_000, count).unwrap();
    uc.remove_hook(hook).unwrap();
    arrival.get()
}

/// A resume state: every value distinct from each other and from what the
/// registers held before. The saved values of r6/r7 differ from the
/// payloads, which must win.
struct ResumeState {
    pc: u64,
    sp: u64,
    fp: u64,
    payloads: [u64; 2],
    saved: Vec<u64>,
}

impl ResumeState {
    fn new(sp: u64, fp: u64) -> ResumeState {
        let state = ResumeState {
            pc: LANDING,
            sp,
            fp,
            payloads: [0x5a5a_0000_0000_0e00, 0x5a5a_0000_0000_0e01],
            saved: (0..16)
                .map(|i| 0x7e57_0000_0000_0000 | (i << 8) | i)
                .collect(),
        };
        assert_ne!(state.saved[0], state.payloads[0]);
        assert_ne!(state.saved[1], state.payloads[1]);
        state
    }

    fn to_context(&self) -> Vec<u64> {
        let mut words = vec![0xdead_0000_0000_0000; context_words()];
        words[context::PC] = self.pc;
        words[context::SP] = self.sp;
        words[context::FP] = self.fp;
        words[context::PAYLOAD0] = self.payloads[0];
        words[context::PAYLOAD1] = self.payloads[1];
        words[context::SAVED..context::SAVED + self.saved.len()].copy_from_slice(&self.saved);
        words
    }

    /// Every register the resume stub installs holds what was asked for:
    /// r8–r13 and f8–f15 the saved values, r6/r7 the payloads, r15 the sp.
    /// s390x has no frame-pointer register, so FP is not installed anywhere.
    fn check(&self, uc: &Unicorn<'_, ()>, arrival: Option<u64>) {
        assert_eq!(arrival, Some(self.pc), "jumped to pc");
        assert_eq!(
            uc.reg_read(R::PC).unwrap(),
            HALT,
            "stopped after the landing nopr"
        );
        assert_eq!(uc.reg_read(R::R15).unwrap(), self.sp, "r15");
        assert_eq!(
            uc.reg_read(R::R6).unwrap(),
            self.payloads[0],
            "r6 = payload 0"
        );
        assert_eq!(
            uc.reg_read(R::R7).unwrap(),
            self.payloads[1],
            "r7 = payload 1"
        );
        for (reg, &want) in saved_regs().iter().zip(&self.saved).skip(2) {
            assert_eq!(uc.reg_read(*reg).unwrap(), want, "{reg:?}");
        }
        for reg in 0..16 {
            let r = R::R0 as i32 + reg;
            assert_ne!(uc.reg_read(r).unwrap(), self.fp, "fp landed in r{reg}");
        }
    }
}

/// What the hook saw when the host function was called.
#[derive(Default)]
struct HostCall {
    calls: usize,
    r2: u64,
    r15: u64,
    r14: u64,
    context: Vec<u64>,
}

#[test]
fn throw_captures_and_resumes() {
    let (mut uc, throw_at, _) = machine();
    let args: [u64; 6] = std::array::from_fn(|i| 0xa000_0000_0000_00a0 + i as u64);
    // r6 is both the fifth argument and the first callee-saved register.
    let mut saved: Vec<u64> = (0..16).map(|i| 0xca11_ee00_0000_0000 | i).collect();
    saved[0] = args[4];
    for (reg, &value) in saved_regs().iter().zip(&saved) {
        uc.reg_write(*reg, value).unwrap();
    }
    for (reg, value) in ARG_REGS.iter().zip(args) {
        uc.reg_write(*reg, value).unwrap();
    }
    // The caller's frame: back chain at 0(%r15), sixth argument in its
    // outgoing argument area at 160(%r15).
    uc.reg_write(R::R15, ENTRY_SP).unwrap();
    write_words(&mut uc, ENTRY_SP, &[ENTRY_FP]);
    write_words(&mut uc, ENTRY_SP + SAVE_AREA, &[args[5]]);
    uc.reg_write(R::R14, RETURN_ADDRESS).unwrap();
    // Scratch registers the stubs may use, set to noise.
    for reg in [R::R0, R::R1] {
        uc.reg_write(reg, 0xbad0_bad0_bad0_bad0).unwrap();
    }

    // The resume state: sp above the stub's frame (as for a real catching
    // frame, which is older than the throw stub's), all values distinct.
    let resume = ResumeState::new(ENTRY_SP + 0x400, ENTRY_SP + 0x4a0);
    let resume_words = resume.to_context();
    let seen = Rc::new(RefCell::new(HostCall::default()));
    let hook_seen = Rc::clone(&seen);
    uc.add_code_hook(HOST, HOST, move |uc, _, _| {
        let mut seen = hook_seen.borrow_mut();
        seen.calls += 1;
        seen.r2 = uc.reg_read(R::R2).unwrap();
        seen.r15 = uc.reg_read(R::R15).unwrap();
        seen.r14 = uc.reg_read(R::R14).unwrap();
        seen.context = read_words(uc, seen.r2, context_words());
        // The host unwinder's answer.
        let at = seen.r2;
        write_words(uc, at, &resume_words);
    })
    .unwrap();

    let arrival = run_to_landing(&mut uc, throw_at, 10_000);

    let seen = seen.borrow();
    assert_eq!(seen.calls, 1, "host function called once");
    // The stub's frame: 160-byte save area for the host, then the context.
    let size = context::size_bytes(16) as u64;
    assert_eq!(seen.r15, ENTRY_SP - SAVE_AREA - size, "stub frame");
    assert_eq!(seen.r2, seen.r15 + SAVE_AREA, "context above the save area");
    assert_eq!(seen.r15 % 8, 0, "stack 8-byte aligned at the host call");
    assert_eq!(
        read_words(&uc, seen.r15, 1)[0],
        ENTRY_SP,
        "the stub's back chain"
    );
    assert_eq!(
        read_words(&uc, ENTRY_SP + 112, 2),
        [RETURN_ADDRESS, ENTRY_SP],
        "r14/r15 in the caller-provided save area, as in any s390x prologue"
    );
    assert_eq!(
        read_words(&uc, ENTRY_SP, 1)[0],
        ENTRY_FP,
        "the caller's back chain is left alone"
    );
    let basr_end = throw_at + Arch::S390x.spec().throw_stub().code.len() as u64 - 4;
    assert_eq!(seen.r14, basr_end, "host returns after the basr");

    let ctx = &seen.context;
    assert_eq!(ctx[context::PC], RETURN_ADDRESS, "captured pc");
    assert_eq!(ctx[context::SP], ENTRY_SP, "captured sp");
    assert_eq!(ctx[context::FP], ENTRY_FP, "captured fp = back chain");
    assert_eq!(
        &ctx[context::ARGS..context::ARGS + context::ARG_COUNT],
        &args,
        "captured arguments, the sixth from 160(%r15)"
    );
    assert_eq!(
        &ctx[context::SAVED..context::SAVED + 16],
        &saved[..],
        "captured callee-saved registers"
    );
    resume.check(&uc, arrival);
    // The resume stub left its input alone.
    assert_eq!(uc.reg_read(R::R2).unwrap(), seen.r2);
}

/// The resume stub entered directly. The context lies where neither the
/// payloads nor the new sp point, and its saved r6/r7 differ from the
/// payloads: a stub that wrote r2 (the context pointer) or r15 before its
/// last load would read garbage, one that installed the saved registers
/// after the payloads would lose them.
#[test]
fn resume_installs_everything() {
    let (mut uc, _, resume_at) = machine();
    let ctx_at = STACK + 0x2000;
    let resume = ResumeState::new(STACK + 0x9000, STACK + 0x9100);
    assert_ne!(resume.payloads[0], ctx_at);
    write_words(&mut uc, ctx_at, &resume.to_context());
    uc.reg_write(R::R2, ctx_at).unwrap();
    uc.reg_write(R::R15, ENTRY_SP).unwrap();
    for reg in saved_regs()
        .into_iter()
        .chain([R::R0, R::R1, R::R3, R::R4, R::R5, R::R14])
    {
        uc.reg_write(reg, 0xbad0_bad0_bad0_bad0).unwrap();
    }
    let arrival = run_to_landing(&mut uc, resume_at, 1000);
    resume.check(&uc, arrival);
    assert_eq!(uc.reg_read(R::R2).unwrap(), ctx_at, "r2 untouched");
    // The context itself is left as it was.
    assert_eq!(
        read_words(&uc, ctx_at, context_words()),
        resume.to_context()
    );
}
