//! Every ISA's throw and resume stubs, executed in the emulator (x86_64
//! included), through one ISA-agnostic harness.
//!
//! * Capture: Cranelift code calls the throw stub as `__cranelift_throw` with
//!   six distinct arguments (so the ABI, not this test, decides where each one
//!   goes — the sixth is on the stack on s390x) while every callee-saved
//!   register holds a distinct value (except those the caller itself saves
//!   and reuses). The host side checks the captured
//!   context word by word, then resumes at the caller's own handler, which
//!   stores the payloads it receives.
//! * Resume: the resume stub is entered directly with a context whose
//!   payload0 differs from the context's address (the address arrives in the
//!   first argument register, which is payload0 on aarch64 and riscv64), and
//!   whose saved values differ from the payloads (r6/r7 are both on s390x).
//!   Every register is read back where the stub jumped.

use std::collections::HashMap;

use cranelift_exn::Error;
use cranelift_exn::compile::{CallSite, CompiledFunction, Handler, compile_function, default_isa};
use cranelift_exn::isa::{Arch, context};
use cranelift_exn::link::{image_size, link};
use cranelift_exn::machine::{HostServices, Machine};
use cranelift_exn::memory::Memory;
use cranelift_exn::module::{StubAddresses, THROW_SYMBOL, install_stubs};
use cranelift_exn_emulator::EmulatedMachine;

const ARGS: [u64; 6] = [
    0, // replaced by the frame pointer: entry_fp = get_frame_pointer
    0x2222_0000_0000_0002,
    0x3333_0000_0000_0003,
    0x4444_0004, // the tag, an i32
    0x5555_0000_0000_0005,
    0x6666_0000_0000_0006,
];
const PAYLOADS: [u64; 2] = [0x7070_7070_0000_0001, 0x7171_7171_0000_0002];

fn saved_value(i: usize) -> u64 {
    0x5a5a_0000_0000_0000 + ((i as u64 + 1) << 8)
}

/// `%t(callee, buffer)`: try_calls the throw stub; its handler stores the
/// two payloads at `buffer` and `buffer + 8`.
const CALLER: &str = "
function %t(i64, i64) system_v {
    sig0 = (i64, i64, i64, i32, i64, i64) system_v
    fn0 = %__cranelift_throw(i64, i64, i64, i32, i64, i64) system_v
block0(v0: i64, v1: i64):
    v2 = get_frame_pointer.i64
    v3 = iconst.i64 0x2222000000000002
    v4 = iconst.i64 0x3333000000000003
    v5 = iconst.i32 0x44440004
    v6 = iconst.i64 0x5555000000000005
    v7 = iconst.i64 0x6666000000000006
    try_call fn0(v2, v3, v4, v5, v6, v7), sig0, block1(), [ default: block2(exn0, exn1) ]
block1:
    return
block2(v8: i64, v9: i64):
    store notrap aligned v8, v1
    store notrap aligned v9, v1+8
    return
}
";

/// The host side of the capture test: checks the context and resumes at the
/// handler of `%t`'s call site.
struct Checker {
    arch: Arch,
    function: CompiledFunction,
    start: u64,
    seen: Option<Vec<u64>>,
}

/// An emulated machine for `arch` with the throw and resume stubs
/// installed.
fn machine_with_stubs(arch: Arch) -> (EmulatedMachine, StubAddresses) {
    let mut m = EmulatedMachine::new(arch).unwrap();
    let stubs = install_stubs(&mut m).unwrap();
    (m, stubs)
}

impl Checker {
    /// The function's call site with handlers (the throwing call).
    fn handled_site(&self) -> &CallSite {
        let sites = &self.function.call_sites;
        sites.iter().find(|s| !s.handlers.is_empty()).unwrap()
    }
}

impl HostServices for Checker {
    fn throw(&mut self, memory: &mut dyn Memory, ctx: u64, _buffer: u64) -> Result<(), Error> {
        let n = context::SAVED + self.arch.spec().callee_saved().len();
        let words: Vec<u64> = (0..n)
            .map(|i| memory.read_u64(ctx + 8 * i as u64))
            .collect::<Result<_, _>>()?;
        assert_eq!(ctx % 8, 0, "{}: context alignment", self.arch);
        let site = self.handled_site();
        let Handler::Default { offset } = site.handlers[0] else {
            panic!("expected a default handler")
        };
        let fp = words[context::FP];
        let writes = [
            (context::PC, self.start + u64::from(offset)),
            (context::SP, fp - u64::from(site.frame_offset.unwrap())),
            (context::PAYLOAD0, PAYLOADS[0]),
            (context::PAYLOAD1, PAYLOADS[1]),
        ];
        for (index, value) in writes {
            memory.write_u64(ctx + 8 * index as u64, value)?;
        }
        self.seen = Some(words);
        Ok(())
    }
}

#[test]
fn throw_stub_captures_the_callers_state_and_resumes_at_its_handler() {
    for arch in Arch::ALL {
        let spec = arch.spec();
        let (mut m, stubs) = machine_with_stubs(arch);
        let isa = default_isa(arch).unwrap();
        let func = cranelift_exn::reader::parse_functions(CALLER)
            .unwrap()
            .remove(0);
        let compiled = compile_function(isa.as_ref(), func).unwrap();
        let functions = vec![compiled.clone()];
        let base = m.allocate_code(image_size(arch, &functions)).unwrap();
        let host = HashMap::from([(THROW_SYMBOL.to_string(), stubs.throw)]);
        let image = link(arch, &functions, base, &host).unwrap();
        m.install_code(base, &image.code).unwrap();

        for (i, &reg) in spec.callee_saved().iter().enumerate() {
            m.write_reg(reg, saved_value(i)).unwrap();
        }
        let mut checker = Checker {
            arch,
            function: compiled,
            start: base,
            seen: None,
        };
        let mut buffer = [0u8; 16];
        m.call_entry(base, 0, &mut buffer, &mut checker).unwrap();

        let words = checker.seen.clone().expect("the host was called");
        let site = checker.handled_site();
        assert_eq!(
            words[context::PC],
            base + u64::from(site.return_offset),
            "{arch} PC"
        );
        let fp = words[context::FP];
        assert_eq!(words[context::ARGS], fp, "{arch}: FP is %t's frame pointer");
        assert_eq!(
            words[context::SP],
            fp - u64::from(site.frame_offset.unwrap()),
            "{arch}: SP is %t's stack pointer after the return"
        );
        for (i, &expected) in ARGS.iter().enumerate().skip(1) {
            let got = words[context::ARGS + i];
            let got = if i == 3 { got & 0xffff_ffff } else { got };
            assert_eq!(got, expected, "{arch} argument {i}");
        }
        // Registers %t saved in its prologue hold %t's own values at the
        // throw; every other callee-saved register still holds the host's.
        let used_by_t: Vec<_> = checker
            .function
            .saved_registers
            .iter()
            .map(|s| s.reg)
            .collect();
        for (i, reg) in spec.callee_saved().iter().enumerate() {
            if used_by_t.contains(reg) {
                continue;
            }
            assert_eq!(
                words[context::SAVED + i],
                saved_value(i),
                "{arch} captured {}",
                spec.register_name(*reg)
            );
        }
        // The handler ran with the payloads, and `%t` returned normally to
        // the host with every callee-saved register as the host left it.
        let endianness = arch.endianness();
        let word = |at: usize| endianness.read_u64(buffer[at..at + 8].try_into().unwrap());
        assert_eq!(
            [word(0), word(8)],
            PAYLOADS,
            "{arch} payloads at the handler"
        );
        assert_eq!(
            m.pc().unwrap(),
            m.layout().halt,
            "{arch} returned to the host"
        );
        for (i, &reg) in spec.callee_saved().iter().enumerate() {
            if spec.payload_regs().contains(&reg) {
                continue; // s390x: r6/r7 carried the payloads into the handler
            }
            assert_eq!(
                m.read_reg(reg).unwrap(),
                saved_value(i),
                "{arch} {} after the catch",
                spec.register_name(reg)
            );
        }
    }
}

/// The resume stub needs no host services.
struct NoHost;

impl HostServices for NoHost {
    fn throw(&mut self, _: &mut dyn Memory, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::Machine("unexpected host call".into()))
    }
}

#[test]
fn resume_stub_installs_every_register_before_jumping() {
    for arch in Arch::ALL {
        let spec = arch.spec();
        let (m, stubs) = machine_with_stubs(arch);
        let layout = m.layout();
        // The context is the call buffer, so its address arrives as the
        // callee argument, in the first argument register.
        let ctx = layout.buffer;
        let n = context::size_bytes(spec.callee_saved().len()) / 8;
        let new_sp = layout.stack_base + layout.stack_size / 2;
        let new_fp = new_sp + 0x100;
        let mut words = vec![0u64; n];
        words[context::PC] = layout.halt;
        words[context::SP] = new_sp;
        words[context::FP] = new_fp;
        words[context::PAYLOAD0] = PAYLOADS[0];
        words[context::PAYLOAD1] = PAYLOADS[1];
        // x86_64 drops that many return-predictor entries first (a `push;
        // ret` each); the others ignore the word.
        words[context::RETURN_STACK_DROPS] = spec.return_stack_depth() as u64;
        for i in 0..spec.callee_saved().len() {
            words[context::SAVED + i] = saved_value(i) ^ 0xffff;
        }
        assert_ne!(PAYLOADS[0], ctx);
        let mut buffer: Vec<u8> = words
            .iter()
            .flat_map(|w| arch.endianness().write_u64(*w))
            .collect();
        m.call_entry(stubs.resume, ctx, &mut buffer, &mut NoHost)
            .unwrap();

        assert_eq!(m.pc().unwrap(), layout.halt, "{arch} pc");
        assert_eq!(
            m.read_reg(spec.stack_pointer()).unwrap(),
            new_sp,
            "{arch} sp"
        );
        if let Some(fp) = spec.frame_pointer() {
            assert_eq!(m.read_reg(fp).unwrap(), new_fp, "{arch} fp");
        }
        let [p0, p1] = spec.payload_regs();
        assert_eq!(m.read_reg(p0).unwrap(), PAYLOADS[0], "{arch} payload0");
        assert_eq!(m.read_reg(p1).unwrap(), PAYLOADS[1], "{arch} payload1");
        for (i, &reg) in spec.callee_saved().iter().enumerate() {
            if spec.payload_regs().contains(&reg) {
                continue; // payloads win, checked above
            }
            assert_eq!(
                m.read_reg(reg).unwrap(),
                saved_value(i) ^ 0xffff,
                "{arch} {}",
                spec.register_name(reg)
            );
        }
    }
}
