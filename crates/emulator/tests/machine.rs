//! `EmulatedMachine` on all four architectures: real Cranelift code called
//! through an entry trampoline compiled here, host-function dispatch, and
//! every way a call can fail.

use std::time::Duration;

use cranelift_exn::Error;
use cranelift_exn::compile::{compile_function, default_isa};
use cranelift_exn::isa::{Arch, Reg};
use cranelift_exn::machine::{HostFunction, HostServices, Machine};
use cranelift_exn::memory::Memory;
use cranelift_exn_emulator::{DEFAULT_INSTRUCTION_LIMIT, EmulatedMachine};

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

/// Compile every function in `clif` for `arch` and install it; returns the
/// functions' addresses in order.
fn install(machine: &mut EmulatedMachine, clif: &str) -> Vec<u64> {
    let arch = machine.arch();
    let isa = default_isa(arch).unwrap();
    let functions = cranelift_exn::reader::parse_functions(clif).unwrap();
    let mut addresses = Vec::new();
    for function in functions {
        let compiled = compile_function(&*isa, function).unwrap();
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
    }
    addresses
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
    let endianness = machine.arch().endianness();
    let addresses = install(machine, &format!("{}\n{callee_clif}", entry_clif(params, ret)));
    let mut buffer = vec![0xa5; ARGS + 8 * args.len().max(1)];
    for (i, arg) in args.iter().enumerate() {
        buffer[ARGS + 8 * i..ARGS + 8 * i + 8].copy_from_slice(&endianness.write_u64(*arg));
    }
    machine.call_entry(addresses[0], addresses[1], &mut buffer, host)?;
    let result: [u8; 8] = buffer[ARGS..ARGS + 8].try_into().unwrap();
    Ok(endianness.read_u64(result))
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
        vec!["i64"; 10].join(", "),
        params.join(", ")
    );
    let args: Vec<u64> = (1..=10).map(|i| i % 10).collect();
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let result = call(&mut m, &clif, &["i64"; 10], "i64", &args, &mut NoHost).unwrap();
        assert_eq!(result, 1_234_567_890, "{arch}");
    }
}

const SPIN: &str = "
function %spin(i64) -> i64 system_v {
block0(v0: i64):
    jump block1(v0)
block1(v1: i64):
    v9 = iconst.i64 1
    v2 = iadd v1, v9
    jump block1(v2)
}
";

#[test]
fn infinite_loop_hits_the_instruction_limit() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        assert_eq!(m.instruction_limit(), Some(DEFAULT_INSTRUCTION_LIMIT));
        m.set_instruction_limit(Some(100_000));
        let message = machine_message(call(&mut m, SPIN, &["i64"], "i64", &[0], &mut NoHost));
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
        let message = machine_message(call(&mut m, SPIN, &["i64"], "i64", &[0], &mut NoHost));
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
        assert!(message.contains(&format!("pc {base:#x}")), "{arch}: {message}");
    }
}

#[test]
fn jump_to_unmapped_code_is_an_error() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
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
        let result = call(&mut m, &calls_host(host_address), &["i64"], "i64", &[1], &mut Failing);
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
        assert!(message.contains("unexpected host call"), "{arch}: {message}");
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
            Err(Error::Memory { address: 0x5000, .. })
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
fn scratch_riscv_host() {
    let arch = Arch::Riscv64;
    let mut m = machine(arch);
    let host_address = m.host_function_address(HostFunction::Throw).unwrap();
    let mut host = RecordingHost::default();
    let r = call(&mut m, &calls_host(host_address), &["i64"], "i64", &[20], &mut host);
    eprintln!("{r:?} calls {:x?} ra {:#x} sp {:#x}", host.calls, m.read_reg(Reg::int(1)).unwrap(), m.read_reg(Reg::int(2)).unwrap());
    let isa = default_isa(arch).unwrap();
    let f = cranelift_exn::reader::parse_functions(&calls_host(host_address)).unwrap().remove(0);
    let c = compile_function(&*isa, f).unwrap();
    eprintln!("{}", cranelift_exn::isa::disassemble(arch, &c.code).unwrap());
}

#[test]
fn scratch_riscv_raw() {
    use unicorn_engine::unicorn_const::{Arch as UA, Mode, Prot};
    use unicorn_engine::{RegisterRISCV as R, Unicorn};
    for (model, fill) in [(0, 0u32), (0, 0x13), (0, 0x00100073), (0, 0xffffffff), (3, 0x13)] {
        let mut uc = Unicorn::new(UA::RISCV, Mode::RISCV64).unwrap();
        uc.ctl_set_cpu_model(model).unwrap();
        uc.mem_map(0x1000_0000, 0x1_0000, Prot::READ | Prot::EXEC).unwrap();
        uc.mem_write(0x1000_0000, &[fill.to_le_bytes(); 16].concat()).unwrap();
        uc.mem_map(0x4000_0000, 0x1_0000, Prot::ALL).unwrap();
        // lui a2, 0x10000 ; jalr a2 ; (ret target) nop...
        let code: [u32; 4] = [0x10000637, 0x000600e7, 0x00000013, 0x00000013];
        let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        uc.mem_write(0x4000_0000, &bytes).unwrap();
        uc.add_code_hook(0x1000_0000, 0x1000_000f, |uc, addr, size| {
            eprintln!("hook at {addr:#x} size {size}");
            let ra = uc.reg_read(R::X1).unwrap();
            uc.reg_write(R::PC, ra).unwrap();
        }).unwrap();
        let r = uc.emu_start(0x4000_0000, 0x4000_000c, 0, 1000);
        eprintln!("model {model} fill {fill:#x}: {r:?} pc {:#x} mcause {:#x} mepc {:#x} mtval {:#x}", uc.reg_read(R::PC).unwrap(), uc.reg_read(R::MCAUSE).unwrap(), uc.reg_read(R::MEPC).unwrap(), uc.reg_read(R::MTVAL).unwrap());
    }
}

#[test]
fn scratch_s390x_raw() {
    use unicorn_engine::unicorn_const::{Arch as UA, Mode, Prot};
    use unicorn_engine::{RegisterS390X as R, Unicorn, S390xCpuModel};
    for (base, pswm) in [(0x1_0000u64, None), (0x4000_0000, None), (0x4000_0000, Some(0x0000_0001_8000_0000u64))] {
        let mut uc = Unicorn::new(UA::S390X, Mode::BIG_ENDIAN).unwrap();
        uc.ctl_set_cpu_model(S390xCpuModel::GEN15A as i32).unwrap();
        uc.mem_map(base, 0x1_0000, Prot::ALL).unwrap();
        eprintln!("pswm before {:#x}", uc.reg_read(R::PSWM).unwrap());
        if let Some(m) = pswm { uc.reg_write(R::PSWM, m).unwrap(); }
        // lghi %r2, 5 ; nopr ; nopr
        uc.mem_write(base, &[0xa7, 0x29, 0x00, 0x05, 0x07, 0x07, 0x07, 0x07]).unwrap();
        let r = uc.emu_start(base, base + 6, 0, 1000);
        eprintln!("base {base:#x} pswm {pswm:x?}: {r:?} pc {:#x} r2 {} pswm {:#x}", uc.reg_read(R::PC).unwrap(), uc.reg_read(R::R2).unwrap(), uc.reg_read(R::PSWM).unwrap());
    }
}

#[test]
fn scratch_s390x_halt() {
    use unicorn_engine::unicorn_const::{Arch as UA, Mode, Prot};
    use unicorn_engine::{RegisterS390X as R, Unicorn, S390xCpuModel};
    for (fill, model) in [([0u8, 0], S390xCpuModel::GEN15A), ([0x07, 0x07], S390xCpuModel::GEN15A), ([0u8, 0], S390xCpuModel::QEMU)] {
        let mut uc = Unicorn::new(UA::S390X, Mode::BIG_ENDIAN).unwrap();
        uc.ctl_set_cpu_model(model as i32).unwrap();
        uc.mem_map(0x1000_0000, 0x1_0000, Prot::ALL).unwrap();
        uc.mem_write(0x1000_0000, &fill.repeat(0x8000)).unwrap();
        uc.mem_map(0x4000_0000, 0x1_0000, Prot::ALL).unwrap();
        uc.reg_write(R::PSWM, 0x1_8000_0000).unwrap();
        uc.reg_write(R::R14, 0x1000_8000).unwrap();
        uc.add_code_hook(0x1000_0000, 0x1000_000f, |uc, addr, size| {
            eprintln!("hook at {addr:#x} size {size}");
            let ra = uc.reg_read(R::R14).unwrap();
            uc.reg_write(R::PC, ra).unwrap();
        }).unwrap();
        // lghi %r2, 5 ; br %r14
        uc.mem_write(0x4000_0000, &[0xa7, 0x29, 0x00, 0x05, 0x07, 0xfe]).unwrap();
        let r = uc.emu_start(0x4000_0000, 0x1000_8000, 0, 1000);
        eprintln!("{fill:?} {model:?}: {r:?} pc {:#x} r2 {}", uc.reg_read(R::PC).unwrap(), uc.reg_read(R::R2).unwrap());
        let r = uc.emu_start(0x4000_0000, 0x1000_8000, 0, 0);
        eprintln!("{fill:?} {model:?} no count: {r:?} pc {:#x} r2 {}", uc.reg_read(R::PC).unwrap(), uc.reg_read(R::R2).unwrap());
        // basr %r14, %r1 with r1 = host fn; then br to halt via r13
        uc.mem_write(0x4000_0100, &[0x0d, 0xe1, 0x07, 0xfd]).unwrap();
        uc.reg_write(R::R1, 0x1000_0000).unwrap();
        uc.reg_write(R::R13, 0x1000_8000).unwrap();
        let r = uc.emu_start(0x4000_0100, 0x1000_8000, 0, 1000);
        eprintln!("{fill:?} {model:?} host: {r:?} pc {:#x}", uc.reg_read(R::PC).unwrap());
    }
}

#[test]
fn scratch_s390x_tlb() {
    use unicorn_engine::unicorn_const::{Arch as UA, Mode, Prot, HookType, TlbType};
    use unicorn_engine::{RegisterS390X as R, Unicorn, S390xCpuModel};
    for (virt, fill) in [(false, [1u8, 0]), (true, [1u8, 0]), (true, [0u8, 0]), (true, [7, 7])] {
        let mut uc = Unicorn::new(UA::S390X, Mode::BIG_ENDIAN).unwrap();
        uc.ctl_set_cpu_model(S390xCpuModel::GEN15A as i32).unwrap();
        if virt { uc.ctl_set_tlb_type(TlbType::VIRTUAL).unwrap(); }
        uc.mem_map(0x1000_0000, 0x1_0000, Prot::READ | Prot::EXEC).unwrap();
        uc.mem_write(0x1000_0000, &fill.repeat(0x8000)).unwrap();
        uc.mem_map(0x4000_0000, 0x1_0000, Prot::ALL).unwrap();
        uc.reg_write(R::PSWM, 0x1_8000_0000).unwrap();
        uc.add_code_hook(0x1000_0000, 0x1000_000f, |uc, addr, size| {
            eprintln!("hook at {addr:#x} size {size}");
            let ra = uc.reg_read(R::R14).unwrap();
            uc.reg_write(R::PC, ra).unwrap();
        }).unwrap();
        uc.add_mem_hook(HookType::MEM_INVALID, 1, 0, |_, kind, addr, size, _| { eprintln!("fault {kind:?} {addr:#x} {size}"); false }).unwrap();
        // basr %r14, %r1 ; br %r13
        uc.mem_write(0x4000_0100, &[0x0d, 0xe1, 0x07, 0xfd]).unwrap();
        uc.reg_write(R::R1, 0x1000_0000).unwrap();
        uc.reg_write(R::R13, 0x1000_8000).unwrap();
        let r = uc.emu_start(0x4000_0100, 0x1000_8000, 0, 1000);
        eprintln!("virt {virt} fill {fill:?} host: {r:?} pc {:#x}", uc.reg_read(R::PC).unwrap());
        // lg %r2, 0(%r3) with r3 unmapped
        uc.mem_write(0x4000_0200, &[0xe3, 0x20, 0x30, 0x00, 0x00, 0x04, 0x07, 0xfd]).unwrap();
        uc.reg_write(R::R3, 0xdead_0000).unwrap();
        let r = uc.emu_start(0x4000_0200, 0x1000_8000, 0, 1000);
        eprintln!("virt {virt} load: {r:?} pc {:#x}", uc.reg_read(R::PC).unwrap());
        uc.reg_write(R::R3, 0x4000_0000).unwrap();
        let r = uc.emu_start(0x4000_0200, 0x1000_8000, 0, 1000);
        eprintln!("virt {virt} good load: {r:?} pc {:#x} r2 {:#x}", uc.reg_read(R::PC).unwrap(), uc.reg_read(R::R2).unwrap());
    }
}
