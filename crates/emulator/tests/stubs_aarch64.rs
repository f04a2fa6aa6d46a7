//! The aarch64 throw and resume stubs, executed in unicorn-engine.
//!
//! Memory: `[host literal][throw stub][resume stub]` at `CODE`; the literal
//! holds `HOST`, a "host function" that is a single `ret`, with a code hook on
//! it standing in for the host unwinder: it checks the captured context and
//! writes a resume state. The `ret` then returns to the throw stub (pc = lr,
//! as a real host function would), which falls through into the resume stub.
//! Emulation stops when pc reaches `LANDING`.

use std::cell::RefCell;
use std::rc::Rc;

use cranelift_exn::isa::{Arch, context};
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode, Prot};
use unicorn_engine::{RegisterARM64 as R, Unicorn};

const CODE: u64 = 0x1_0000;
const HOST: u64 = 0x2_0000;
const LANDING: u64 = 0x3_0000;
/// The throw stub's return address (lr on entry); never executed.
const RETURN_ADDRESS: u64 = 0x3_8004;
const STACK: u64 = 0x8_0000;
const STACK_SIZE: u64 = 0x1_0000;
/// sp on entry to the throw stub (16-byte aligned, as AAPCS64 requires).
const ENTRY_SP: u64 = 0x8_f000;
/// x29 on entry: the throwing frame's fp.
const ENTRY_FP: u64 = 0x8_f0a0;

const RET: u32 = 0xd65f_03c0;
const NOP: u32 = 0xd503_201f;

const XSAVED: [R; 10] = [
    R::X19,
    R::X20,
    R::X21,
    R::X22,
    R::X23,
    R::X24,
    R::X25,
    R::X26,
    R::X27,
    R::X28,
];
const DSAVED: [R; 8] = [R::D8, R::D9, R::D10, R::D11, R::D12, R::D13, R::D14, R::D15];
const ARGS: [R; 6] = [R::X0, R::X1, R::X2, R::X3, R::X4, R::X5];

/// The registers of `callee_saved()` order: x19–x28, then d8–d15.
fn saved_regs() -> Vec<R> {
    XSAVED.iter().chain(DSAVED.iter()).copied().collect()
}

fn code_words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A fresh aarch64 machine with the stubs, the host function, a landing pad
/// and a stack mapped. Returns it with the throw and resume stub addresses.
fn machine<'a>() -> (Unicorn<'a, ()>, u64, u64) {
    let spec = Arch::Aarch64.spec();
    let (throw, resume) = (spec.throw_stub(), spec.resume_stub());
    let mut uc = Unicorn::new(UcArch::ARM64, Mode::LITTLE_ENDIAN).unwrap();
    for (base, size) in [
        (CODE, 0x1000),
        (HOST, 0x1000),
        (LANDING, 0x1_0000),
        (STACK, STACK_SIZE),
    ] {
        uc.mem_map(base, size, Prot::ALL).unwrap();
    }
    let throw_at = CODE + 8;
    let resume_at = throw_at + throw.code.len() as u64;
    uc.mem_write(CODE, &HOST.to_le_bytes()).unwrap();
    uc.mem_write(throw_at, throw.code).unwrap();
    uc.mem_write(resume_at, resume.code).unwrap();
    uc.mem_write(HOST, &code_words(&[RET])).unwrap();
    uc.mem_write(LANDING, &code_words(&[NOP; 4])).unwrap();
    // FP/SIMD access on (CPACR_EL1.FPEN = 0b11), as a Linux process has it.
    // unicorn 2.1.5 ran the d8–d15 pair stores and loads without this too
    // (CPACR_EL1 reads 0 there), so it is belt and braces.
    uc.reg_write(R::CPACR_EL1, 0x30_0000).unwrap();
    (uc, throw_at, resume_at)
}

fn read_words(uc: &Unicorn<'_, ()>, at: u64, n: usize) -> Vec<u64> {
    let bytes = uc.mem_read_as_vec(at, n * 8).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn write_words(uc: &mut Unicorn<'_, ()>, at: u64, words: &[u64]) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    uc.mem_write(at, &bytes).unwrap();
}

fn context_words() -> usize {
    context::size_bytes(Arch::Aarch64.spec().callee_saved().len()) / 8
}

/// A resume state: every value distinct from each other and from what the
/// registers held before.
struct ResumeState {
    pc: u64,
    sp: u64,
    fp: u64,
    payloads: [u64; 2],
    saved: Vec<u64>,
}

impl ResumeState {
    fn new(sp: u64, fp: u64) -> ResumeState {
        ResumeState {
            pc: LANDING,
            sp,
            fp,
            payloads: [0x5a5a_0000_0000_0e00, 0x5a5a_0000_0000_0e01],
            saved: (0..18)
                .map(|i| 0x7e57_0000_0000_0000 | (i << 8) | i)
                .collect(),
        }
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

    /// Every register the resume stub installs holds what was asked for.
    fn check(&self, uc: &Unicorn<'_, ()>) {
        assert_eq!(uc.reg_read(R::PC).unwrap(), self.pc, "pc");
        assert_eq!(uc.reg_read(R::SP).unwrap(), self.sp, "sp");
        assert_eq!(uc.reg_read(R::X29).unwrap(), self.fp, "x29");
        assert_eq!(uc.reg_read(R::X0).unwrap(), self.payloads[0], "x0");
        assert_eq!(uc.reg_read(R::X1).unwrap(), self.payloads[1], "x1");
        for (reg, &want) in saved_regs().iter().zip(&self.saved) {
            assert_eq!(uc.reg_read(*reg).unwrap(), want, "{reg:?}");
        }
    }
}

/// What the hook saw when the host function was called.
#[derive(Default)]
struct HostCall {
    calls: usize,
    x0: u64,
    sp: u64,
    lr: u64,
    context: Vec<u64>,
}

#[test]
fn throw_captures_and_resumes() {
    let (mut uc, throw_at, _) = machine();
    let args: [u64; 6] = std::array::from_fn(|i| 0xa000_0000_0000_00a0 + i as u64);
    let saved: Vec<u64> = (0..18).map(|i| 0xca11_ee00_0000_0000 | i).collect();
    for (reg, value) in ARGS.iter().zip(args) {
        uc.reg_write(*reg, value).unwrap();
    }
    for (reg, &value) in saved_regs().iter().zip(&saved) {
        uc.reg_write(*reg, value).unwrap();
    }
    uc.reg_write(R::X29, ENTRY_FP).unwrap();
    uc.reg_write(R::SP, ENTRY_SP).unwrap();
    uc.reg_write(R::X30, RETURN_ADDRESS).unwrap();
    // Scratch registers the stubs may use, set to noise.
    for reg in [R::X9, R::X16, R::X17] {
        uc.reg_write(reg, 0xbad0_bad0_bad0_bad0).unwrap();
    }

    // The resume state: sp above the context (as for a real catching frame,
    // which is older than the throw stub's), all values distinct.
    let resume = ResumeState::new(ENTRY_SP + 0x400, ENTRY_SP + 0x4a0);
    let resume_words = resume.to_context();
    let seen = Rc::new(RefCell::new(HostCall::default()));
    let hook_seen = Rc::clone(&seen);
    uc.add_code_hook(HOST, HOST, move |uc, _, _| {
        let mut seen = hook_seen.borrow_mut();
        seen.calls += 1;
        seen.x0 = uc.reg_read(R::X0).unwrap();
        seen.sp = uc.reg_read(R::SP).unwrap();
        seen.lr = uc.reg_read(R::X30).unwrap();
        seen.context = read_words(uc, seen.x0, context_words());
        // The host unwinder's answer.
        let at = seen.x0;
        write_words(uc, at, &resume_words);
    })
    .unwrap();

    uc.emu_start(throw_at, LANDING, 1_000_000, 10_000).unwrap();

    let seen = seen.borrow();
    assert_eq!(seen.calls, 1, "host function called once");
    assert_eq!(seen.x0, seen.sp, "context is at the host call's sp");
    assert_eq!(seen.sp % 16, 0, "sp 16-byte aligned at the host call");
    let size = context::size_bytes(18) as u64;
    assert_eq!(
        seen.sp,
        ENTRY_SP - size,
        "context reserved on the stub's stack"
    );
    assert_eq!(seen.lr, throw_at + 0x4c, "host returns after the blr");
    let ctx = &seen.context;
    assert_eq!(ctx[context::PC], RETURN_ADDRESS, "captured pc");
    assert_eq!(ctx[context::SP], ENTRY_SP, "captured sp");
    assert_eq!(ctx[context::FP], ENTRY_FP, "captured fp");
    assert_eq!(
        &ctx[context::ARGS..context::ARGS + context::ARG_COUNT],
        &args,
        "captured arguments"
    );
    assert_eq!(
        &ctx[context::SAVED..context::SAVED + 18],
        &saved[..],
        "captured callee-saved registers"
    );
    resume.check(&uc);
}

/// The resume stub entered directly. The context lies where neither the
/// payloads nor the new fp/sp point, so a stub that wrote x0 (the context
/// pointer and payload0), x29 or sp before its last load would read garbage
/// or fault.
#[test]
fn resume_installs_everything() {
    let (mut uc, _, resume_at) = machine();
    let ctx_at = STACK + 0x2000;
    let resume = ResumeState::new(STACK + 0x9000, STACK + 0x9100);
    assert_ne!(resume.payloads[0], ctx_at);
    write_words(&mut uc, ctx_at, &resume.to_context());
    uc.reg_write(R::X0, ctx_at).unwrap();
    uc.reg_write(R::SP, ENTRY_SP).unwrap();
    for reg in saved_regs()
        .into_iter()
        .chain([R::X1, R::X9, R::X16, R::X17, R::X29, R::X30])
    {
        uc.reg_write(reg, 0xbad0_bad0_bad0_bad0).unwrap();
    }
    uc.emu_start(resume_at, LANDING, 1_000_000, 1000).unwrap();
    resume.check(&uc);
    // The context itself is left as it was.
    assert_eq!(
        read_words(&uc, ctx_at, context_words()),
        resume.to_context()
    );
}
