//! `Module::raw_entry` and `Module::call_raw`: the call path without name
//! lookup or `DataValue` encoding, with the same outcomes as `Module::call`.

use std::any::Any;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cranelift_exn::Error;
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::{HostFunction, HostServices, Machine};
use cranelift_exn::native::NativeMachine;
use cranelift_exn::trampoline::{HANDLER_PC_OFFSET, SLOT_SIZE, VALUES_OFFSET};
use cranelift_exn::values::encode_arguments;
use cranelift_exn::{CallError, Module, ModuleBuilder};
use cranelift_exn_testkit::traps::TRAPPING;

/// With the testkit's [`TRAPPING`] functions: `%divide` is the call that
/// returns (or, by zero, traps).
const PROGRAM: &str = "
function %throwing(i64) -> i64 {
    sig0 = (i64, i64, i64, i32, i64, i64) system_v
    fn0 = %__cranelift_throw sig0
block0(v0: i64):
    v1 = iconst.i64 0
    v2 = get_frame_pointer.i64
    v3 = iconst.i32 9
    call fn0(v1, v2, v1, v3, v0, v1)
    return v0
}
";

fn module() -> Module {
    module_on(Box::new(NativeMachine::new().unwrap()))
}

/// The testkit's trapping functions and [`PROGRAM`] on `machine`.
fn module_on(machine: Box<dyn Machine>) -> Module {
    let arch = Arch::host().expect("a supported host");
    let mut builder = ModuleBuilder::new(default_isa(arch).unwrap());
    builder
        .define_clif(&format!("{TRAPPING}{PROGRAM}"))
        .unwrap();
    builder.finalize(machine).unwrap()
}

fn slot(buffer: &[u8], i: usize) -> i64 {
    let at = VALUES_OFFSET as usize + SLOT_SIZE as usize * i;
    i64::from_ne_bytes(buffer[at..at + 8].try_into().unwrap())
}

fn buffer_for(module: &Module, name: &str, args: &[i64]) -> Vec<u8> {
    let sig = module.signature(name).unwrap();
    let args: Vec<DataValue> = args.iter().map(|&a| DataValue::I64(a)).collect();
    encode_arguments(sig, &args, Arch::host().unwrap().endianness()).unwrap()
}

#[test]
fn raw_calls_return_results_in_the_buffer_and_reuse_it() {
    let module = module();
    let entry = module.raw_entry("divide").unwrap();
    assert_eq!(entry.callee(), module.image().symbol("%divide").unwrap());
    assert_ne!(entry.trampoline(), entry.callee());
    let mut buffer = buffer_for(&module, "divide", &[84, 2]);
    assert_eq!(buffer.len(), entry.buffer_size());
    module.call_raw(&entry, &mut buffer).unwrap();
    assert_eq!(slot(&buffer, 0), 42);
    // Same buffer again: the result slot is the first argument's slot.
    module.call_raw(&entry, &mut buffer).unwrap();
    assert_eq!(slot(&buffer, 0), 42 / 2);
}

#[test]
fn raw_calls_report_traps_and_exceptions_like_call() {
    let module = module();
    let divide = module.raw_entry("%divide").unwrap();
    let mut buffer = buffer_for(&module, "divide", &[1, 0]);
    match module.call_raw(&divide, &mut buffer) {
        Err(CallError::Trap { code, function, .. }) => {
            assert_eq!(code, TrapCode::INTEGER_DIVISION_BY_ZERO);
            assert_eq!(function, "%divide");
        }
        other => panic!("{other:?}"),
    }
    let throwing = module.raw_entry("throwing").unwrap();
    let mut buffer = buffer_for(&module, "throwing", &[77]);
    assert_eq!(
        module.call_raw(&throwing, &mut buffer),
        Err(CallError::Exception {
            tag: 9,
            payloads: [77, 0]
        })
    );
    // The module still works after both.
    let mut buffer = buffer_for(&module, "divide", &[4, 2]);
    module.call_raw(&divide, &mut buffer).unwrap();
    assert_eq!(slot(&buffer, 0), 2);
}

#[test]
fn foreign_entries_short_buffers_and_unknown_names_are_errors() {
    let a = module();
    let b = module();
    let entry = a.raw_entry("divide").unwrap();
    let mut buffer = buffer_for(&a, "divide", &[1, 1]);
    let err = b.call_raw(&entry, &mut buffer).unwrap_err();
    assert!(err.to_string().contains("another module"), "{err}");
    let mut short = vec![0u8; entry.buffer_size() - 1];
    let err = a.call_raw(&entry, &mut short).unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
    let err = a.raw_entry("nope").unwrap_err();
    assert!(err.to_string().contains("%nope"), "{err}");
}

/// The entry trampoline is a plain C function `fn(callee, buffer)`: called
/// directly (no host services) it runs a callee that returns.
#[test]
fn the_trampoline_can_be_called_directly() {
    let module = module();
    let entry = module.raw_entry("divide").unwrap();
    // 16-byte aligned, as the trampoline's `aligned` loads want.
    let mut buffer = vec![0u128; entry.buffer_size().div_ceil(16)];
    let bytes: &mut [u8] =
        unsafe { std::slice::from_raw_parts_mut(buffer.as_mut_ptr().cast(), entry.buffer_size()) };
    bytes.copy_from_slice(&buffer_for(&module, "divide", &[12, 2]));
    // SAFETY: the trampoline of `%divide`'s signature with `%divide` as
    // callee and a buffer of the size it needs; `%divide` by 2 neither
    // throws nor traps.
    let f: extern "C" fn(u64, u64) = unsafe { std::mem::transmute(entry.trampoline() as usize) };
    f(entry.callee(), bytes.as_mut_ptr() as u64);
    assert_eq!(slot(bytes, 0), 6);
}

/// A buffer that is not 16-byte aligned runs on an aligned copy, and the
/// results come back into it; an aligned one is used in place.
#[test]
fn unaligned_buffers_are_copied_and_results_come_back() {
    let module = module();
    let entry = module.raw_entry("divide").unwrap();
    let args = buffer_for(&module, "divide", &[198, 2]);
    let mut storage = vec![0u128; entry.buffer_size().div_ceil(16) + 1];
    // SAFETY: `storage` has buffer_size + 16 bytes; the slice starts 8 bytes
    // in, so it is 8-byte but not 16-byte aligned.
    let shifted: &mut [u8] = unsafe {
        std::slice::from_raw_parts_mut(
            storage.as_mut_ptr().cast::<u8>().add(8),
            entry.buffer_size(),
        )
    };
    assert!(!(shifted.as_ptr() as usize).is_multiple_of(16));
    shifted.copy_from_slice(&args);
    module.call_raw(&entry, shifted).unwrap();
    assert_eq!(slot(shifted, 0), 99);
    // And a throw through an unaligned buffer still reports its outcome.
    let throwing = module.raw_entry("throwing").unwrap();
    let args = buffer_for(&module, "throwing", &[5]);
    let mut storage = vec![0u128; throwing.buffer_size().div_ceil(16) + 1];
    // SAFETY: as above.
    let shifted: &mut [u8] = unsafe {
        std::slice::from_raw_parts_mut(
            storage.as_mut_ptr().cast::<u8>().add(8),
            throwing.buffer_size(),
        )
    };
    shifted.copy_from_slice(&args);
    assert_eq!(
        module.call_raw(&throwing, shifted),
        Err(CallError::Exception {
            tag: 9,
            payloads: [5, 0]
        })
    );
}

/// A machine that runs everything on an inner [`NativeMachine`] and counts
/// the calls it is asked to run, keeping the handler address word each
/// buffer's header held when it arrived; its `as_any` answers `None` or the
/// inner machine, which lies at another address.
#[repr(C)]
struct Delegating {
    calls: AtomicUsize,
    inner: NativeMachine,
    any_is_inner: bool,
    arrived_handler_pcs: Mutex<Vec<u64>>,
}

impl Machine for Delegating {
    fn arch(&self) -> Arch {
        self.inner.arch()
    }
    fn allocate_code(&mut self, size: usize) -> Result<u64, Error> {
        self.inner.allocate_code(size)
    }
    unsafe fn install_code(&mut self, base: u64, bytes: &[u8]) -> Result<(), Error> {
        // SAFETY: our caller's contract, passed on.
        unsafe { self.inner.install_code(base, bytes) }
    }
    fn allocate_data(&mut self, size: usize, align: u64) -> Result<u64, Error> {
        self.inner.allocate_data(size, align)
    }
    fn install_data(&mut self, base: u64, bytes: &[u8], writable: bool) -> Result<(), Error> {
        self.inner.install_data(base, bytes, writable)
    }
    fn host_function_address(&mut self, function: HostFunction) -> Result<u64, Error> {
        self.inner.host_function_address(function)
    }
    unsafe fn call_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let pc = HANDLER_PC_OFFSET as usize;
        self.arrived_handler_pcs
            .lock()
            .unwrap()
            .push(u64::from_ne_bytes(buffer[pc..pc + 8].try_into().unwrap()));
        // SAFETY: our caller's contract, passed on.
        unsafe { self.inner.call_entry(entry, callee, buffer, host) }
    }
    fn shares_process_memory(&self) -> bool {
        true
    }
    fn as_any(&self) -> Option<&dyn Any> {
        self.any_is_inner.then_some(&self.inner as &dyn Any)
    }
}

/// A module takes the direct native path only for a machine that is a
/// `NativeMachine` itself; any other machine — one that answers `as_any`
/// with nothing, or with a `NativeMachine` that is not itself — gets every
/// call through `Machine::call_installed_entry`, with the same outcomes.
#[test]
fn only_a_native_machine_itself_is_called_directly() {
    for any_is_inner in [false, true] {
        let module = delegating_module(any_is_inner);
        let divide = module.raw_entry("divide").unwrap();
        let mut buffer = buffer_for(&module, "divide", &[84, 2]);
        module.call_raw(&divide, &mut buffer).unwrap();
        assert_eq!(slot(&buffer, 0), 42);
        let throwing = module.raw_entry("throwing").unwrap();
        let mut buffer = buffer_for(&module, "throwing", &[7]);
        assert!(matches!(
            module.call_raw(&throwing, &mut buffer),
            Err(CallError::Exception {
                tag: 9,
                payloads: [7, 0]
            })
        ));
        let mut buffer = buffer_for(&module, "divide", &[1, 0]);
        assert!(matches!(
            module.call_raw(&divide, &mut buffer),
            Err(CallError::Trap {
                code: TrapCode::INTEGER_DIVISION_BY_ZERO,
                ..
            })
        ));
        assert_eq!(
            delegating(&module).calls.load(Ordering::Relaxed),
            3,
            "as_any answers the inner machine: {any_is_inner}"
        );
    }
}

/// A reused buffer reaches the machine with its handler record cleared:
/// the record the last call's trampoline left there names a frame that is
/// gone, and a fault or interrupt before the next trampoline records its own
/// would be delivered to it.
#[test]
fn a_reused_buffer_reaches_the_machine_with_its_handler_record_cleared() {
    let module = delegating_module(false);
    let divide = module.raw_entry("divide").unwrap();
    let mut buffer = buffer_for(&module, "divide", &[84, 2]);
    let pc = HANDLER_PC_OFFSET as usize;
    for _ in 0..3 {
        module.call_raw(&divide, &mut buffer).unwrap();
        // The trampoline recorded its handler.
        assert_ne!(buffer[pc..pc + 8], [0; 8]);
    }
    assert_eq!(
        *delegating(&module).arrived_handler_pcs.lock().unwrap(),
        [0, 0, 0]
    );
}

/// [`module_on`] a [`Delegating`] machine whose `as_any` answers the inner
/// machine or not.
fn delegating_module(any_is_inner: bool) -> Module {
    module_on(Box::new(Delegating {
        inner: NativeMachine::new().unwrap(),
        calls: AtomicUsize::new(0),
        any_is_inner,
        arrived_handler_pcs: Mutex::default(),
    }))
}

/// The [`Delegating`] machine of a [`delegating_module`].
fn delegating(module: &Module) -> &Delegating {
    let machine: *const dyn Machine = module.machine();
    // SAFETY: the module's machine is the `Delegating` it was finalized
    // with, alive as long as the module (which the result borrows).
    unsafe { &*machine.cast::<Delegating>() }
}
