//! Stack safety on the host CPU: a frame of any size that overflows a
//! thread's stack is a `stk_ovf` trap, and nothing outside the stack is
//! written — not even a neighbouring thread's stack right below the guard
//! page.

use std::sync::mpsc;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::codegen::settings::{self, Configurable};
use cranelift_exn::compile::{build_isa, default_isa, has_stack_probes, probed_isa};
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::{CallError, Module, ModuleBuilder};
use cranelift_exn_testkit::traps::deep_recursion;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The stack of the thread running JIT code.
const JIT_STACK: usize = 2 * MIB;
/// The neighbouring thread's stack, below the JIT stack's guard page.
const CANARY_STACK: usize = 4 * MIB;
/// Between the neighbour's stack and the guard page: mapped memory nothing
/// uses, larger than any frame tested, so that a probe that lands beyond
/// the guard page (a frame's far end probed first) writes where it shows.
const NO_MANS_LAND: usize = 2 * MIB;
const GUARD: usize = 4 * KIB;
/// What the neighbour's stack is filled with.
const PATTERN: u8 = 0xa5;
/// Bytes the neighbour keeps on its live stack and checks when it wakes.
const CANARY_LOCAL: usize = 16 * KIB;

/// Run `job` on a new thread whose stack is `stack..stack + size`, and wait
/// for it.
fn run_on_stack(stack: *mut u8, size: usize, job: Box<dyn FnOnce() + Send>) -> libc::pthread_t {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the box `run_on_stack` leaked for this thread.
        let job = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) };
        // A panic must not unwind out of this C function: it drops the
        // job's channel ends, which the waiting side reports.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(job)).cast::<libc::c_void>();
    // SAFETY: a valid attribute object, a stack we mapped for this thread
    // alone, and a start routine taking ownership of `arg`.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_attr_init(&mut attr), 0);
        assert_eq!(
            libc::pthread_attr_setstack(&mut attr, stack.cast(), size),
            0
        );
        let mut thread: libc::pthread_t = 0;
        assert_eq!(
            libc::pthread_create(&mut thread, &attr, start, arg),
            0,
            "pthread_create"
        );
        libc::pthread_attr_destroy(&mut attr);
        thread
    }
}

fn join(thread: libc::pthread_t) {
    // SAFETY: a joinable thread we created, joined once.
    assert_eq!(
        unsafe { libc::pthread_join(thread, std::ptr::null_mut()) },
        0
    );
}

/// Call `%deep` with frames of `slot` bytes on a 2 MiB stack whose
/// neighbours below (past a 4 KiB guard page) are 2 MiB of mapped memory
/// nothing uses, then another thread's live stack; returns the outcome,
/// after checking that neither was written.
fn overflow_next_to_a_neighbour(slot: u32) -> Result<Vec<DataValue>, CallError> {
    let total = CANARY_STACK + NO_MANS_LAND + GUARD + JIT_STACK;
    // SAFETY: an anonymous private mapping; the guard page is made
    // inaccessible inside it.
    let base = unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        assert_ne!(base, libc::MAP_FAILED);
        let base = base.cast::<u8>();
        let guard = base.add(CANARY_STACK + NO_MANS_LAND);
        assert_eq!(libc::mprotect(guard.cast(), GUARD, libc::PROT_NONE), 0);
        std::ptr::write_bytes(base, PATTERN, CANARY_STACK + NO_MANS_LAND);
        base
    };
    let canary_stack = base;
    // SAFETY: inside the mapping.
    let jit_stack = unsafe { base.add(CANARY_STACK + NO_MANS_LAND + GUARD) };

    // The neighbour: a live frame full of the pattern, parked until the JIT
    // call is over, then checked.
    let (parked_tx, parked_rx) = mpsc::channel::<usize>();
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    let (verdict_tx, verdict_rx) = mpsc::channel::<bool>();
    let canary = run_on_stack(
        canary_stack,
        CANARY_STACK,
        Box::new(move || {
            let local = std::hint::black_box([PATTERN; CANARY_LOCAL]);
            parked_tx.send(local.as_ptr() as usize).unwrap();
            wake_rx.recv().unwrap();
            let intact = std::hint::black_box(&local).iter().all(|&b| b == PATTERN);
            verdict_tx.send(intact).unwrap();
        }),
    );
    let canary_local = parked_rx.recv().unwrap();
    // Below its live frames (with room for what it still calls), the
    // neighbour never writes its stack.
    let untouched_end = canary_local - 256 * KIB;
    let untouched_start = canary_stack as usize;

    let (outcome_tx, outcome_rx) = mpsc::channel();
    let jit = run_on_stack(
        jit_stack,
        JIT_STACK,
        Box::new(move || {
            let arch = Arch::host().unwrap();
            let mut builder = ModuleBuilder::new(default_isa(arch).unwrap());
            builder.define_clif(&deep_recursion(slot)).unwrap();
            let module = builder
                .finalize(Box::new(NativeMachine::new().unwrap()))
                .unwrap();
            let outcome = module.call("deep", &[DataValue::I64(0)]);
            outcome_tx.send(outcome).unwrap();
        }),
    );
    let outcome = outcome_rx.recv().unwrap();
    join(jit);

    // SAFETY: the range lies in the neighbour's mapped stack, below any
    // frame it has or will have.
    let below = unsafe {
        std::slice::from_raw_parts(
            untouched_start as *const u8,
            untouched_end - untouched_start,
        )
    };
    let clobbered = below.iter().filter(|&&b| b != PATTERN).count();
    // SAFETY: the unused range between the neighbour's stack and the guard
    // page, inside the mapping.
    let no_mans_land =
        unsafe { std::slice::from_raw_parts(base.add(CANARY_STACK).cast_const(), NO_MANS_LAND) };
    let stray = no_mans_land.iter().filter(|&&b| b != PATTERN).count();
    wake_tx.send(()).unwrap();
    let intact = verdict_rx.recv().unwrap();
    join(canary);
    assert_eq!(
        stray, 0,
        "{slot}-byte frames wrote {stray} bytes beyond the guard page"
    );
    assert_eq!(
        clobbered, 0,
        "{slot}-byte frames wrote {clobbered} bytes of the neighbour's stack"
    );
    assert!(
        intact,
        "{slot}-byte frames overwrote the neighbour's live frame"
    );
    // SAFETY: both threads are gone; nothing uses the mapping.
    unsafe { libc::munmap(base.cast(), total) };
    outcome
}

fn assert_stack_overflow(outcome: Result<Vec<DataValue>, CallError>, slot: u32) {
    match outcome {
        Err(CallError::Trap { code, function, .. }) => {
            assert_eq!(code, TrapCode::STACK_OVERFLOW, "{slot}-byte frames");
            assert_eq!(function, "%deep");
        }
        other => panic!("{slot}-byte frames: expected a stk_ovf trap, got {other:?}"),
    }
}

#[test]
fn frames_of_64k_and_1m_cannot_step_over_the_guard_page() {
    if Arch::host().is_none() {
        return;
    }
    for slot in [64 * KIB as u32, MIB as u32] {
        assert_stack_overflow(overflow_next_to_a_neighbour(slot), slot);
    }
}

#[test]
fn default_isa_probes_the_stack_on_every_isa() {
    for arch in Arch::ALL {
        let isa = default_isa(arch).unwrap();
        assert!(has_stack_probes(isa.as_ref()), "{arch}");
        assert!(probed_isa(isa.as_ref()).unwrap().is_none(), "{arch}");
    }
}

#[test]
fn an_isa_without_probes_is_rebuilt_with_them_keeping_its_flags() {
    for arch in Arch::ALL {
        let mut shared = settings::builder();
        shared.set("opt_level", "speed_and_size").unwrap();
        shared.set("probestack_size_log2", "16").unwrap();
        let isa = build_isa(arch, &settings::Flags::new(shared), &[]).unwrap();
        assert!(!has_stack_probes(isa.as_ref()), "{arch}");
        let probed = probed_isa(isa.as_ref()).unwrap().expect("rebuilt");
        assert!(has_stack_probes(probed.as_ref()), "{arch}");
        let flags = probed.flags();
        assert_eq!(
            flags.opt_level(),
            settings::OptLevel::SpeedAndSize,
            "{arch}"
        );
        // Probes at most one 4 KiB page apart, whatever was asked.
        assert_eq!(flags.probestack_size_log2(), 12, "{arch}");
        assert!(flags.preserve_frame_pointers(), "{arch}");
    }
}

#[test]
fn a_module_given_an_isa_without_probes_still_traps_on_overflow() {
    let Some(arch) = Arch::host() else {
        return;
    };
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(JIT_STACK)
        .spawn(move || {
            let isa = build_isa(arch, &settings::Flags::new(settings::builder()), &[]).unwrap();
            let module = Module::new(
                Box::new(NativeMachine::new().unwrap()),
                isa.as_ref(),
                cranelift_exn::reader::parse_functions(&deep_recursion(MIB as u32)).unwrap(),
            )
            .unwrap();
            tx.send(module.call("deep", &[DataValue::I64(0)])).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    assert_stack_overflow(rx.recv().unwrap(), MIB as u32);
}
