//! `EmulatedMachine` on all four architectures: real Cranelift code called
//! through an entry trampoline compiled here, host-function dispatch, and
//! every way a call can fail.

use std::time::Duration;

use cranelift_exn::Error;
use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::codegen::settings::{self, Configurable};
use cranelift_exn::compile::{compile_function, default_isa};
use cranelift_exn::isa::{Arch, Reg};
use cranelift_exn::machine::{HostFunction, HostServices, Machine};
use cranelift_exn::memory::Memory;
use cranelift_exn_emulator::{DEFAULT_INSTRUCTION_LIMIT, EmulatedMachine};
use cranelift_exn_testkit::interrupts::COUNT_UP;

/// Offset of the first argument / the result in the call buffer.
const ARGS: usize = 32;

/// An entry trampoline `%entry(callee, buffer)` for a callee taking
/// `params` (CLIF types) and returning one `ret`: argument `i` is loaded
/// from `buffer + 32 + 8*i`, the result is stored at `buffer + 32`.
fn entry_clif(params: &[&str], ret: &str) -> String {
    let mut loads = String::new();
    let mut names = Vec::new();
    for (i, ty) in params.iter().enumerate() {
        let v = 10 + i;
        loads.push_str(&format!("    v{v} = load.{ty} v1+{}\n", ARGS + 8 * i));
        names.push(format!("v{v}"));
    }
    format!(
        "function %entry(i64, i64) system_v {{
    sig0 = ({}) -> {ret} system_v
block0(v0: i64, v1: i64):
{loads}    v2 = call_indirect sig0, v0({})
    store v2, v1+{ARGS}
    return
}}
",
        params.join(", "),
        names.join(", "),
    )
}

/// Compile every function in `clif` with the machine's default ISA and
/// install it; returns the functions' addresses in order.
fn install(machine: &mut EmulatedMachine, clif: &str) -> Vec<u64> {
    let isa = default_isa(machine.arch()).unwrap();
    install_with(machine, &*isa, clif).0
}

/// Compile every function in `clif` for `isa` and install it; returns the
/// functions' addresses and their code, in order.
fn install_with(
    machine: &mut EmulatedMachine,
    isa: &dyn TargetIsa,
    clif: &str,
) -> (Vec<u64>, Vec<Vec<u8>>) {
    let arch = machine.arch();
    let functions = cranelift_exn::reader::parse_functions(clif).unwrap();
    let mut addresses = Vec::new();
    let mut codes = Vec::new();
    for function in functions {
        let compiled = compile_function(isa, function).unwrap();
        assert!(
            compiled.relocs.is_empty(),
            "{arch} {}: unexpected relocations {:?}",
            compiled.name,
            compiled.relocs
        );
        let base = machine.allocate_code(compiled.code.len()).unwrap();
        assert_eq!(base % 16, 0);
        machine.install_code(base, &compiled.code).unwrap();
        addresses.push(base);
        codes.push(compiled.code);
    }
    (addresses, codes)
}

/// Host services for calls that must not reach the host.
struct NoHost;

impl HostServices for NoHost {
    fn throw(&mut self, _: &mut dyn Memory, context: u64, _: u64) -> Result<(), Error> {
        panic!("unexpected host call with context {context:#x}");
    }
}

/// Call `callee` (the only function of `callee_clif`, taking `params` and
/// returning `ret`) with `args` through a fresh entry trampoline; returns the
/// result word.
fn call(
    machine: &mut EmulatedMachine,
    callee_clif: &str,
    params: &[&str],
    ret: &str,
    args: &[u64],
    host: &mut dyn HostServices,
) -> Result<u64, Error> {
    let isa = default_isa(machine.arch()).unwrap();
    call_with(machine, &*isa, callee_clif, params, ret, args, host).map(|(result, _)| result)
}

/// [`call`] with code compiled for `isa`; also returns the callee's code.
fn call_with(
    machine: &mut EmulatedMachine,
    isa: &dyn TargetIsa,
    callee_clif: &str,
    params: &[&str],
    ret: &str,
    args: &[u64],
    host: &mut dyn HostServices,
) -> Result<(u64, Vec<u8>), Error> {
    let endianness = machine.arch().endianness();
    let clif = format!("{}\n{callee_clif}", entry_clif(params, ret));
    let (addresses, mut codes) = install_with(machine, isa, &clif);
    let mut buffer = vec![0xa5; ARGS + 8 * args.len().max(1)];
    for (i, arg) in args.iter().enumerate() {
        buffer[ARGS + 8 * i..ARGS + 8 * i + 8].copy_from_slice(&endianness.write_u64(*arg));
    }
    machine.call_entry(addresses[0], addresses[1], &mut buffer, host)?;
    let result: [u8; 8] = buffer[ARGS..ARGS + 8].try_into().unwrap();
    Ok((endianness.read_u64(result), codes.remove(1)))
}

fn machine(arch: Arch) -> EmulatedMachine {
    EmulatedMachine::new(arch).unwrap()
}

fn machine_message(result: Result<u64, Error>) -> String {
    match result {
        Err(Error::Machine(message)) => message,
        other => panic!("expected Error::Machine, got {other:?}"),
    }
}

const ADD_ONE: &str = "
function %add_one(i64) -> i64 system_v {
block0(v0: i64):
    v9 = iconst.i64 1
    v1 = iadd v0, v9
    return v1
}
";

#[test]
fn iadd_imm_on_every_arch() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let result = call(&mut m, ADD_ONE, &["i64"], "i64", &[41], &mut NoHost).unwrap();
        assert_eq!(result, 42, "{arch}");
        // A second call on the same machine, with new code, works too.
        let result = call(&mut m, ADD_ONE, &["i64"], "i64", &[99], &mut NoHost).unwrap();
        assert_eq!(result, 100, "{arch}");
    }
}

#[test]
fn float_arithmetic_through_bitcasts() {
    let clif = "
function %f(i64) -> i64 system_v {
block0(v0: i64):
    v1 = bitcast.f64 v0
    v2 = f64const 0x1.8p1
    v3 = fmul v1, v2
    v4 = sqrt v3
    v5 = fadd v4, v1
    v6 = bitcast.i64 v5
    return v6
}
";
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let x = 12.0f64;
        let result = call(&mut m, clif, &["i64"], "i64", &[x.to_bits()], &mut NoHost).unwrap();
        assert_eq!(f64::from_bits(result), 18.0, "{arch}");
    }
}

#[test]
fn float_arguments_and_results_in_registers() {
    let clif = "
function %g(f64, f64) -> f64 system_v {
block0(v0: f64, v1: f64):
    v2 = fdiv v0, v1
    v3 = fneg v2
    return v3
}
";
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let args = [7.5f64.to_bits(), 2.5f64.to_bits()];
        let result = call(&mut m, clif, &["f64", "f64"], "f64", &args, &mut NoHost).unwrap();
        assert_eq!(f64::from_bits(result), -3.0, "{arch}");
    }
}

#[test]
fn ten_arguments_use_the_stack() {
    let params: Vec<String> = (0..10).map(|i| format!("v{i}: i64")).collect();
    let mut body = String::from("    v100 = iconst.i64 0\n    v99 = iconst.i64 10\n");
    for i in 0..10 {
        // acc = acc * 10 + arg_i, so the order of every argument matters.
        body.push_str(&format!(
            "    v{} = imul v{}, v99\n    v{} = iadd v{}, v{i}\n",
            200 + i,
            100 + i,
            101 + i,
            200 + i
        ));
    }
    let clif = format!(
        "function %sum10({}) -> i64 system_v {{\nblock0({}):\n{body}    return v110\n}}\n",
        ["i64"; 10].join(", "),
        params.join(", ")
    );
    let args: Vec<u64> = (1..=10).map(|i| i % 10).collect();
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let result = call(&mut m, &clif, &["i64"; 10], "i64", &args, &mut NoHost).unwrap();
        assert_eq!(result, 1_234_567_890, "{arch}");
    }
}

#[test]
fn infinite_loop_hits_the_instruction_limit() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        assert_eq!(m.instruction_limit(), Some(DEFAULT_INSTRUCTION_LIMIT));
        m.set_instruction_limit(Some(100_000));
        let message = machine_message(call(&mut m, COUNT_UP, &["i64"], "i64", &[0], &mut NoHost));
        assert!(message.contains("instruction limit"), "{arch}: {message}");
        // The machine is still usable afterwards.
        let result = call(&mut m, ADD_ONE, &["i64"], "i64", &[1], &mut NoHost).unwrap();
        assert_eq!(result, 2, "{arch}");
    }
}

#[test]
fn infinite_loop_hits_the_timeout() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        m.set_instruction_limit(None);
        m.set_timeout(Some(Duration::from_millis(50)));
        let message = machine_message(call(&mut m, COUNT_UP, &["i64"], "i64", &[0], &mut NoHost));
        assert!(message.contains("timeout"), "{arch}: {message}");
    }
}

#[test]
fn load_from_unmapped_address_is_an_error() {
    let clif = "
function %peek(i64) -> i64 system_v {
block0(v0: i64):
    v1 = load.i64 v0
    return v1
}
";
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let message = machine_message(call(
            &mut m,
            clif,
            &["i64"],
            "i64",
            &[0xdead_0000],
            &mut NoHost,
        ));
        assert!(message.contains("0xdead0000"), "{arch}: {message}");
        assert!(message.contains("unmapped"), "{arch}: {message}");
        assert!(message.contains("pc 0x"), "{arch}: {message}");
    }
}

#[test]
fn undefined_instruction_is_an_error_with_its_pc() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let code: &[u8] = match arch {
            Arch::X86_64 => &[0x0f, 0x0b],
            _ => &[0, 0, 0, 0],
        };
        let base = m.allocate_code(code.len()).unwrap();
        m.install_code(base, code).unwrap();
        let mut buffer = [0u8; 8];
        let result = m.call_entry(base, 0, &mut buffer, &mut NoHost);
        let message = machine_message(result.map(|()| 0));
        assert!(
            message.contains(&format!("pc {base:#x}")),
            "{arch}: {message}"
        );
    }
}

#[test]
fn jump_to_unmapped_code_is_an_error() {
    for arch in Arch::ALL {
        let m = machine(arch);
        let mut buffer = [0u8; 8];
        let result = m.call_entry(0x7000, 0, &mut buffer, &mut NoHost);
        let message = machine_message(result.map(|()| 0));
        assert!(message.contains("0x7000"), "{arch}: {message}");
    }
}

/// A callee that puts its argument in a stack slot, calls the host Throw
/// function with the slot's address (C convention), and returns what the
/// slot holds afterwards.
fn calls_host(host_address: u64) -> String {
    format!(
        "
function %calls_host(i64) -> i64 system_v {{
    sig0 = (i64) system_v
    ss0 = explicit_slot 16, align = 16
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    store v0, v1
    v2 = iconst.i64 {host_address:#x}
    call_indirect sig0, v2(v1)
    v3 = load.i64 v1
    return v3
}}
"
    )
}

/// Records every throw call and doubles the word at the context address.
#[derive(Default)]
struct RecordingHost {
    calls: Vec<(u64, u64, u64)>,
}

impl HostServices for RecordingHost {
    fn throw(&mut self, memory: &mut dyn Memory, context: u64, buffer: u64) -> Result<(), Error> {
        let value = memory.read_u64(context)?;
        self.calls.push((context, buffer, value));
        memory.write_u64(context, value * 2 + 1)
    }
}

#[test]
fn host_throw_call_is_dispatched_and_returns() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let layout = m.layout();
        let host_address = m.host_function_address(HostFunction::Throw).unwrap();
        assert!(host_address >= layout.host_functions, "{arch}");
        let mut host = RecordingHost::default();
        let result = call(
            &mut m,
            &calls_host(host_address),
            &["i64"],
            "i64",
            &[20],
            &mut host,
        )
        .unwrap();
        assert_eq!(result, 41, "{arch}");
        assert_eq!(host.calls.len(), 1, "{arch}");
        let (context, buffer, value) = host.calls[0];
        assert_eq!(value, 20, "{arch}");
        assert_eq!(buffer, layout.buffer, "{arch}");
        let stack = layout.stack_base..layout.stack_base + layout.stack_size;
        assert!(stack.contains(&context), "{arch}: context {context:#x}");
    }
}

#[test]
fn host_error_stops_the_call() {
    struct Failing;
    impl HostServices for Failing {
        fn throw(&mut self, _: &mut dyn Memory, _: u64, _: u64) -> Result<(), Error> {
            Err(Error::Unwind("no handler".into()))
        }
    }
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let host_address = m.host_function_address(HostFunction::Throw).unwrap();
        let result = call(
            &mut m,
            &calls_host(host_address),
            &["i64"],
            "i64",
            &[1],
            &mut Failing,
        );
        assert_eq!(result, Err(Error::Unwind("no handler".into())), "{arch}");
    }
}

#[test]
fn host_panic_becomes_an_error() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let host_address = m.host_function_address(HostFunction::Throw).unwrap();
        let message = machine_message(call(
            &mut m,
            &calls_host(host_address),
            &["i64"],
            "i64",
            &[1],
            &mut NoHost,
        ));
        assert!(message.contains("panicked"), "{arch}: {message}");
        assert!(
            message.contains("unexpected host call"),
            "{arch}: {message}"
        );
    }
}

#[test]
fn memory_words_follow_target_endianness() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let at = m.layout().buffer;
        let mut memory = m.memory();
        assert_eq!(memory.endianness(), arch.endianness());
        memory.write_u64(at, 0x0102_0304_0506_0708).unwrap();
        let mut bytes = [0; 8];
        memory.read(at, &mut bytes).unwrap();
        assert_eq!(bytes, arch.endianness().write_u64(0x0102_0304_0506_0708));
        assert_eq!(memory.read_u64(at).unwrap(), 0x0102_0304_0506_0708);
        match memory.read_u64(0x5000) {
            Err(Error::Memory { address, .. }) => assert_eq!(address, 0x5000, "{arch}"),
            other => panic!("{arch}: expected Error::Memory, got {other:?}"),
        }
        assert!(matches!(
            memory.write(0x5000, &[1]),
            Err(Error::Memory {
                address: 0x5000,
                ..
            })
        ));
    }
}

#[test]
fn registers_round_trip() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let spec = arch.spec();
        let mut regs: Vec<Reg> = spec.int_arg_regs().to_vec();
        regs.push(spec.stack_pointer());
        regs.extend(spec.callee_saved());
        regs.extend(spec.payload_regs());
        regs.extend(spec.link_register());
        regs.extend(spec.frame_pointer());
        regs.extend([Reg::float(0), Reg::float(1), Reg::float(15)]);
        for (i, reg) in regs.iter().enumerate() {
            let value = 0x1111_2222_3333_0000 + i as u64 * 8;
            m.write_reg(*reg, value).unwrap();
            assert_eq!(m.read_reg(*reg).unwrap(), value, "{arch} {reg:?}");
        }
        m.set_pc(0x4000_0010).unwrap();
        assert_eq!(m.pc().unwrap(), 0x4000_0010, "{arch}");
        assert!(m.read_reg(Reg::int(200)).is_err(), "{arch}");
    }
}

#[test]
fn code_region_grows_and_rejects_stray_installs() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let a = m.allocate_code(3).unwrap();
        let b = m.allocate_code(3 << 20).unwrap();
        let c = m.allocate_code(5).unwrap();
        assert_eq!(a, m.layout().code_base);
        assert_eq!(b, a + 16);
        assert_eq!(c, b + (3 << 20));
        m.install_code(c, &[0; 5]).unwrap();
        let big = vec![0x11; 3 << 20];
        m.install_code(b, &big).unwrap();
        let mut back = vec![0; 16];
        m.memory().read(b + (3 << 20) - 16, &mut back).unwrap();
        assert_eq!(back, vec![0x11; 16]);
        assert!(m.install_code(c, &[0; 6]).is_err(), "{arch}");
        assert!(m.install_code(0x1000, &[0]).is_err(), "{arch}");
        // Once per region, at its start, within its size.
        assert!(m.install_code(c, &[0; 5]).is_err(), "{arch}");
        assert!(m.install_code(b + 16, &[0; 5]).is_err(), "{arch}");
        let d = m.allocate_code(8).unwrap();
        assert!(m.install_code(d, &[0; 9]).is_err(), "{arch}");
        m.install_code(d, &[0; 8]).unwrap();
        assert!(m.allocate_code(usize::MAX).is_err(), "{arch}");
    }
}

#[test]
fn large_buffers_are_copied_both_ways() {
    let clif = "
function %last(i64) -> i64 system_v {
block0(v0: i64):
    v1 = bnot v0
    return v1
}
";
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let addresses = install(&mut m, &format!("{}\n{clif}", entry_clif(&["i64"], "i64")));
        let mut buffer = vec![0x5a; 200_000];
        buffer[ARGS..ARGS + 8].copy_from_slice(&arch.endianness().write_u64(0));
        m.call_entry(addresses[0], addresses[1], &mut buffer, &mut NoHost)
            .unwrap();
        assert_eq!(&buffer[ARGS..ARGS + 8], &[0xff; 8], "{arch}");
        assert!(buffer[ARGS + 8..].iter().all(|&b| b == 0x5a), "{arch}");
    }
}

#[test]
fn stray_jumps_into_the_host_page_are_errors() {
    for arch in Arch::ALL {
        let m = machine(arch);
        let base = m.layout().host_functions;
        let mut buffer = [0u8; 8];
        let message = machine_message(
            m.call_entry(base + 2, 0, &mut buffer, &mut NoHost)
                .map(|()| 0),
        );
        assert!(
            message.contains("not to a host function"),
            "{arch}: {message}"
        );
        let message = machine_message(
            m.call_entry(base + 0x100, 0, &mut buffer, &mut NoHost)
                .map(|()| 0),
        );
        assert!(message.contains("pc 0x10000100"), "{arch}: {message}");
    }
}

/// Whether the disassembly of `code` for `arch` uses `mnemonic`.
fn uses(arch: Arch, code: &[u8], mnemonic: &str) -> bool {
    let listing = cranelift_exn::disassemble::disassemble(arch, code).unwrap_or_default();
    listing
        .lines()
        .any(|line| line.split_whitespace().next() == Some(mnemonic))
}

/// Integer multiplies Cranelift emits as z14 MIE2 instructions, which
/// unicorn lacks and the s390x machine carries out itself. Checked against
/// Rust on every architecture.
#[test]
fn multiplies_match_rust_on_every_arch() {
    // (s390x mnemonic, body, Rust, architectures whose Cranelift lacks it)
    type Case = (
        &'static str,
        &'static str,
        fn(u64, u64) -> u64,
        &'static [Arch],
    );
    let cases: [Case; 5] = [
        ("msgrkc", "v2 = imul v0, v1", |a, b| a.wrapping_mul(b), &[]),
        (
            "msrkc",
            "v10 = ireduce.i32 v0\n    v11 = ireduce.i32 v1\n    v12 = imul v10, v11\n    v2 = sextend.i64 v12",
            |a, b| (a as i32).wrapping_mul(b as i32) as i64 as u64,
            &[],
        ),
        (
            "mgrk",
            "v2 = smulhi v0, v1",
            |a, b| ((i128::from(a as i64) * i128::from(b as i64)) >> 64) as u64,
            &[],
        ),
        // The condition code of MSGRKC/MSRKC (overflow).
        (
            "msgrkc",
            "v10, v11 = smul_overflow v0, v1\n    v12 = uextend.i64 v11\n    v13 = iconst.i64 0x100000000\n    v14 = imul v12, v13\n    v2 = bxor v10, v14",
            |a, b| {
                let (product, overflow) = (a as i64).overflowing_mul(b as i64);
                product as u64 ^ (u64::from(overflow) << 32)
            },
            &[Arch::Riscv64],
        ),
        (
            "msrkc",
            "v20 = ireduce.i32 v0\n    v21 = ireduce.i32 v1\n    v10, v11 = smul_overflow v20, v21\n    v12 = uextend.i64 v11\n    v13 = iconst.i64 0x100000000\n    v14 = imul v12, v13\n    v15 = uextend.i64 v10\n    v2 = bxor v15, v14",
            |a, b| {
                let (product, overflow) = (a as i32).overflowing_mul(b as i32);
                u64::from(product as u32) ^ (u64::from(overflow) << 32)
            },
            &[Arch::Riscv64],
        ),
    ];
    let inputs = [
        (6u64, 7u64),
        ((-3i64) as u64, 0x1234_5678_9abc),
        (0x7fff_ffff_ffff_ffff, 3),
        (0xffff_fff0_0001_0001, 0x0000_0001_8000_0003),
        (0, (-1i64) as u64),
    ];
    let mut seen_on_s390x = Vec::new();
    for arch in Arch::ALL {
        let isa = default_isa(arch).unwrap();
        let mut m = machine(arch);
        for (mnemonic, body, expected, skip) in cases {
            if skip.contains(&arch) {
                continue;
            }
            let clif = format!(
                "function %mul(i64, i64) -> i64 system_v {{\nblock0(v0: i64, v1: i64):\n    {body}\n    return v2\n}}\n"
            );
            for (a, b) in inputs {
                let (result, code) = call_with(
                    &mut m,
                    &*isa,
                    &clif,
                    &["i64", "i64"],
                    "i64",
                    &[a, b],
                    &mut NoHost,
                )
                .unwrap();
                assert_eq!(result, expected(a, b), "{arch} {body} ({a:#x}, {b:#x})");
                if arch == Arch::S390x && uses(arch, &code, mnemonic) {
                    seen_on_s390x.push(mnemonic);
                }
            }
        }
    }
    // Register allocation decides between these and two-operand forms
    // unicorn has; each must have been exercised somewhere.
    for mnemonic in ["msgrkc", "msrkc", "mgrk"] {
        assert!(
            seen_on_s390x.contains(&mnemonic),
            "{mnemonic} not used: {seen_on_s390x:?}"
        );
    }
}

/// `f32` arithmetic, which Cranelift emits on s390x as z14 vector-enhancement
/// instructions (`w…sb`) when values live in v16–v31. Checked against Rust
/// on every architecture.
#[test]
fn f32_arithmetic_matches_rust_on_every_arch() {
    type Op = fn(f32, f32, f32) -> f32;
    let cases: [(&str, &str, Op); 9] = [
        ("wfasb", "v20 = fadd v10, v11", |a, b, _| a + b),
        ("wfssb", "v20 = fsub v10, v11", |a, b, _| a - b),
        ("wfmsb", "v20 = fmul v10, v11", |a, b, _| a * b),
        ("wfdsb", "v20 = fdiv v10, v11", |a, b, _| a / b),
        // Operating on a `w…sb` result keeps the value in a vector register.
        (
            "wfsqsb",
            "v13 = fadd v10, v11\n    v20 = sqrt v13",
            |a, b, _| (a + b).sqrt(),
        ),
        (
            "wflcsb",
            "v13 = fadd v10, v11\n    v20 = fneg v13",
            |a, b, _| -(a + b),
        ),
        (
            "wflpsb",
            "v13 = fadd v10, v11\n    v20 = fabs v13",
            |a, b, _| (a + b).abs(),
        ),
        ("wfmasb", "v20 = fma v10, v11, v12", |a, b, c| {
            a.mul_add(b, c)
        }),
        (
            "wfcsb",
            "v21 = fcmp lt v10, v11\n    v22 = fcmp gt v10, v11\n    v23 = select v21, v11, v12\n    v20 = select v22, v10, v23",
            |a, b, c| {
                if a < b {
                    b
                } else if a > b {
                    a
                } else {
                    c
                }
            },
        ),
    ];
    let inputs = [
        (1.5f32, 2.25f32, -0.5f32),
        (-7.0, 3.0, 100.0),
        (1e30, 1e-30, 1.0),
        (2.0, 2.0, 0.1),
    ];
    let mut seen_on_s390x = Vec::new();
    for arch in Arch::ALL {
        let isa = default_isa(arch).unwrap();
        let mut m = machine(arch);
        for (mnemonic, body, expected) in cases {
            if arch == Arch::X86_64 && mnemonic.starts_with("wfm") && body.contains("fma") {
                // Without `has_fma`, x86-64 calls a libcall for `fma`.
                continue;
            }
            let clif = format!(
                "function %f(i64, i64, i64) -> i64 system_v {{
block0(v0: i64, v1: i64, v2: i64):
    v3 = ireduce.i32 v0
    v4 = ireduce.i32 v1
    v5 = ireduce.i32 v2
    v10 = bitcast.f32 v3
    v11 = bitcast.f32 v4
    v12 = bitcast.f32 v5
    {body}
    v30 = bitcast.i32 v20
    v31 = uextend.i64 v30
    return v31
}}
"
            );
            for (a, b, c) in inputs {
                let args = [a, b, c].map(|x| u64::from(x.to_bits()));
                let (result, code) =
                    call_with(&mut m, &*isa, &clif, &["i64"; 3], "i64", &args, &mut NoHost)
                        .unwrap();
                let want = expected(a, b, c);
                if want.is_nan() {
                    // NaN sign and payload differ between ISAs.
                    assert!(f32::from_bits(result as u32).is_nan(), "{arch} {body}");
                    continue;
                }
                assert_eq!(
                    result,
                    u64::from(want.to_bits()),
                    "{arch} {body} ({a}, {b}, {c}): got {}, want {want}",
                    f32::from_bits(result as u32)
                );
                if arch == Arch::S390x && uses(arch, &code, mnemonic) {
                    seen_on_s390x.push(mnemonic);
                }
            }
        }
    }
    // Register allocation decides between the FPR forms (which unicorn has)
    // and the vector forms; each vector form must have been exercised.
    for mnemonic in [
        "wfasb", "wfssb", "wfmsb", "wfdsb", "wfsqsb", "wflcsb", "wflpsb", "wfmasb", "wfcsb",
    ] {
        assert!(
            seen_on_s390x.contains(&mnemonic),
            "{mnemonic} not used: {seen_on_s390x:?}"
        );
    }
}

/// The x86-64 CPU model runs code compiled for SSE4.2, POPCNT, LZCNT, BMI1
/// and BMI2, with the same results as baseline code.
#[test]
fn x86_64_extensions_run_on_the_cpu_model() {
    let clif = "
function %ext(i64) -> i64 system_v {
block0(v0: i64):
    v1 = bitcast.f64 v0
    v2 = ceil v1
    v3 = fcvt_to_sint.i64 v2
    v4 = popcnt v0
    v5 = clz v0
    v6 = ctz v0
    v8 = ishl v0, v4
    v9 = bnot v8
    v10 = band v0, v9
    v11 = iadd v3, v4
    v12 = iadd v5, v6
    v13 = iadd v11, v12
    v14 = iadd v13, v10
    return v14
}
";
    let expected = |x: u64| {
        (f64::from_bits(x).ceil() as i64 as u64)
            .wrapping_add(u64::from(
                x.count_ones() + x.leading_zeros() + x.trailing_zeros(),
            ))
            .wrapping_add(x & !(x << (x.count_ones() % 64)))
    };
    let mut builder = cranelift_exn::codegen::isa::lookup(Arch::X86_64.triple()).unwrap();
    for flag in [
        "has_sse3",
        "has_ssse3",
        "has_sse41",
        "has_sse42",
        "has_popcnt",
        "has_lzcnt",
        "has_bmi1",
        "has_bmi2",
    ] {
        builder.set(flag, "true").unwrap();
    }
    let mut shared = settings::builder();
    shared.set("preserve_frame_pointers", "true").unwrap();
    let isa = builder.finish(settings::Flags::new(shared)).unwrap();
    let mut m = machine(Arch::X86_64);
    for x in [2.5f64.to_bits(), (-1.25f64).to_bits(), 1000.75f64.to_bits()] {
        let (result, code) =
            call_with(&mut m, &*isa, clif, &["i64"], "i64", &[x], &mut NoHost).unwrap();
        assert_eq!(result, expected(x), "{x:#x}");
        for mnemonic in ["roundsd", "popcntq", "lzcntq", "tzcntq", "andnq", "shlxq"] {
            assert!(uses(Arch::X86_64, &code, mnemonic), "no {mnemonic}");
        }
    }
}

/// The emulated s390x instructions Cranelift does not emit in the tests
/// above (`WFMS`, `WFPSO` negative-absolute), from hand-assembled bytes.
#[test]
fn s390x_emulates_wfmssb_and_wflnsb() {
    let code = [
        0xe7, 0x01, 0x22, 0x08, 0x30, 0x8e, // wfmssb %f0, %f1, %f2, %f3
        0xe7, 0x41, 0x00, 0x18, 0x20, 0xcc, // wflnsb %f4, %f1
        0x07, 0xfe, // br %r14
    ];
    assert_eq!(
        cranelift_exn::disassemble::disassemble(Arch::S390x, &code).unwrap(),
        "wfmssb %f0, %f1, %f2, %f3\nwflnsb %f4, %f1\nbr %r14"
    );
    let mut m = machine(Arch::S390x);
    let base = m.allocate_code(code.len()).unwrap();
    m.install_code(base, &code).unwrap();
    // Short BFP lives in the leftmost word of the register.
    let short = |x: f32| u64::from(x.to_bits()) << 32;
    for (reg, value) in [(1, 2.0f32), (2, 3.0), (3, 0.5)] {
        m.write_reg(Reg::float(reg), short(value)).unwrap();
    }
    m.call_entry(base, 0, &mut [0; 8], &mut NoHost).unwrap();
    assert_eq!(m.read_reg(Reg::float(0)).unwrap(), short(5.5));
    assert_eq!(m.read_reg(Reg::float(4)).unwrap(), short(-2.0));
}

/// A Cranelift trap stops the call with an error naming the trapping
/// instruction's address, as the trap table records it.
#[test]
fn cranelift_trap_reports_its_pc() {
    let callee = "
function %t(i64) -> i64 system_v {
block0(v0: i64):
    v1 = iconst.i64 0
    v2 = icmp eq v0, v1
    trapnz v2, user1
    v3 = iconst.i64 1
    v4 = iadd v0, v3
    return v4
}
";
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let isa = default_isa(arch).unwrap();
        let clif = format!("{}\n{callee}", entry_clif(&["i64"], "i64"));
        let functions = cranelift_exn::reader::parse_functions(&clif).unwrap();
        let compiled: Vec<_> = functions
            .into_iter()
            .map(|f| compile_function(&*isa, f).unwrap())
            .collect();
        let mut addresses = Vec::new();
        for c in &compiled {
            let base = m.allocate_code(c.code.len()).unwrap();
            m.install_code(base, &c.code).unwrap();
            addresses.push(base);
        }
        // s390x records a trap at the last byte of its 2-byte trap
        // instruction (where the hardware's PSW points after the program
        // check, minus one); the machine reports the instruction's address.
        let recorded = addresses[1] + u64::from(compiled[1].traps[0].offset);
        let trap_pc = match arch {
            Arch::S390x => recorded - 1,
            _ => recorded,
        };
        let mut buffer = vec![0u8; ARGS + 8];
        // Non-zero: no trap.
        buffer[ARGS..].copy_from_slice(&arch.endianness().write_u64(5));
        m.call_entry(addresses[0], addresses[1], &mut buffer, &mut NoHost)
            .unwrap();
        assert_eq!(buffer[ARGS..], arch.endianness().write_u64(6), "{arch}");
        // Zero: trap.
        buffer[ARGS..].copy_from_slice(&arch.endianness().write_u64(0));
        let result = m.call_entry(addresses[0], addresses[1], &mut buffer, &mut NoHost);
        let message = machine_message(result.map(|()| 0));
        assert!(
            message.contains(&format!("pc {trap_pc:#x}")),
            "{arch}: {message}"
        );
        assert_eq!(m.pc().unwrap(), trap_pc, "{arch}");
    }
}
