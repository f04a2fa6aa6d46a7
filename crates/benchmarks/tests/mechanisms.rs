//! Every mechanism the benchmarks time does what its row claims, at every
//! depth: caught throws return the payload, O(1) deliveries end at the entry
//! with the right outcome, the chains are as deep as asked.

use cranelift_exn::CallError;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn_benchmarks::c::{self, CReturningTrapHandlers, CTrapHandlers, TrapKind};
use cranelift_exn_benchmarks::jit::{JitBench, Thrower};
use cranelift_exn_benchmarks::{DEPTHS, PAYLOAD, rust_panic};

/// Tests that raise SIGILL or SIGFPE run one at a time: the C handlers
/// replace the process-wide ones while they are installed.
static SIGNALS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn signals() -> std::sync::MutexGuard<'static, ()> {
    SIGNALS.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn jit_throwers_at_every_depth() {
    let _signals = signals();
    let mut bench = JitBench::new().unwrap();
    for depth in DEPTHS {
        for thrower in Thrower::ALL {
            let outcome = bench.run(thrower, depth);
            let expected = match thrower {
                // %rec(1) returns -1, each level above adds one.
                Thrower::NoThrow => Ok(depth as i64 - 2),
                Thrower::StackWalk | Thrower::StackWalkFromHost | Thrower::Wasmtime => Ok(PAYLOAD),
                Thrower::ToEntry | Thrower::ToEntryFromHost => Err(CallError::Exception {
                    tag: 1,
                    payloads: [PAYLOAD as u64, 0],
                }),
                Thrower::Trap => match &outcome {
                    Err(CallError::Trap { code, function, .. })
                        if *code == TrapCode::user(1).unwrap() && function == "%trap_here" =>
                    {
                        continue;
                    }
                    _ => panic!("{thrower:?} at depth {depth}: {outcome:?}"),
                },
            };
            assert_eq!(outcome, expected, "{thrower:?} at depth {depth}");
        }
        assert_eq!(
            bench.longjmp_over_jit(depth, PAYLOAD),
            PAYLOAD,
            "depth {depth}"
        );
    }
}

#[test]
fn entry_paths_return_the_argument() {
    let mut bench = JitBench::new().unwrap();
    assert_eq!(bench.ret_fn()(41), 41);
    assert_eq!(bench.ret_via_trampoline(-3), -3);
    assert_eq!(bench.ret_tail_via_trampoline(-4), -4);
    assert_eq!(bench.ret_via_bare_wrapper(-5), -5);
    assert_eq!(bench.ret_via_call_raw(99).unwrap(), 99);
    assert_eq!(c::setjmp_entry(bench.ret_fn(), 7), 7);
    assert_eq!(c::sigsetjmp_entry(bench.ret_fn(), 8), 8);
}

#[test]
fn jit_traps_reach_the_entry() {
    let _signals = signals();
    let mut bench = JitBench::new().unwrap();
    match bench.trap(false) {
        Err(CallError::Trap { code, function, .. }) => {
            assert_eq!(code, TrapCode::user(2).unwrap());
            assert_eq!(function, "%trap_ud2");
        }
        other => panic!("{other:?}"),
    }
    match bench.trap(true) {
        Err(CallError::Trap { code, function, .. }) => {
            assert_eq!(code, TrapCode::INTEGER_DIVISION_BY_ZERO);
            assert_eq!(function, "%trap_divz");
        }
        other => panic!("{other:?}"),
    }
}

/// The fault kinds the C trap benchmark takes apart, on this host.
fn c_trap_kinds() -> Vec<TrapKind> {
    let mut kinds = vec![TrapKind::Ud2, TrapKind::DivideByZero];
    if cfg!(target_arch = "x86_64") {
        kinds.extend([
            TrapKind::Int3,
            TrapKind::Hlt,
            TrapKind::IntN,
            TrapKind::PageFault,
            TrapKind::Tgkill,
        ]);
    }
    kinds
}

/// The C handlers replace the process's fault handlers while they live,
/// every kind comes back with its own signal; JIT traps work again once
/// they are dropped.
#[test]
fn c_traps_come_back_by_siglongjmp() {
    let _signals = signals();
    let mut bench = JitBench::new().unwrap();
    assert_eq!(TrapKind::Ud2.signal(), 4); // SIGILL
    assert_eq!(TrapKind::DivideByZero.signal(), 8); // SIGFPE
    for nodefer in [false, true] {
        let handlers = CTrapHandlers::install(nodefer).unwrap();
        assert!(CTrapHandlers::install(nodefer).is_err(), "installed twice");
        for _ in 0..3 {
            for kind in c_trap_kinds() {
                assert_eq!(handlers.trap(kind, !nodefer), kind.signal(), "{kind:?}");
            }
        }
        drop(handlers);
        assert!(matches!(bench.trap(true), Err(CallError::Trap { .. })));
        assert!(matches!(bench.trap(false), Err(CallError::Trap { .. })));
    }
}

/// The returning C handlers resume after the instruction (x86_64), and
/// exclude the other C handlers while installed.
#[test]
fn c_returning_handlers_resume_after_the_fault() {
    let _signals = signals();
    let mut bench = JitBench::new().unwrap();
    let handlers = CReturningTrapHandlers::install().unwrap();
    assert!(CTrapHandlers::install(true).is_err(), "installed twice");
    for _ in 0..3 {
        for kind in [TrapKind::Ud2, TrapKind::DivideByZero] {
            let expected = cfg!(target_arch = "x86_64").then_some(kind.signal());
            assert_eq!(handlers.trap(kind), expected, "{kind:?}");
        }
    }
    assert_eq!(handlers.trap(TrapKind::Int3), None);
    drop(handlers);
    assert!(matches!(bench.trap(false), Err(CallError::Trap { .. })));
}

/// The phase timing takes the traps it counts, and on x86_64 counts time
/// in both phases.
#[test]
fn c_trap_phases_are_timed() {
    let _signals = signals();
    let handlers = CTrapHandlers::install(true).unwrap();
    for kind in c_trap_kinds() {
        let ([enter, leave], signal) = handlers.phases(kind, false, 10);
        assert_eq!(signal, kind.signal(), "{kind:?}");
        if cfg!(target_arch = "x86_64") {
            assert!(enter > 0 && leave > 0, "{kind:?}: {enter}, {leave}");
        }
    }
    let ([enter, _], _) = handlers.phases(TrapKind::Ud2, false, 0);
    assert_eq!(enter, 0, "no iterations, no ticks");
}

#[test]
fn c_cxx_and_rust_chains() {
    rust_panic::quiet_bench_panics();
    for depth in DEPTHS {
        assert_eq!(c::longjmp(depth, PAYLOAD), PAYLOAD, "longjmp {depth}");
        assert_eq!(c::cxx_throw(depth, PAYLOAD), PAYLOAD, "C++ {depth}");
        assert_eq!(c::c_calls(depth), depth as i64, "C calls {depth}");
        assert_eq!(
            rust_panic::panic_catch(depth, PAYLOAD),
            PAYLOAD,
            "panic {depth}"
        );
        assert_eq!(
            rust_panic::no_panic(depth, PAYLOAD),
            PAYLOAD + depth as i64 - 1,
            "Rust calls {depth}"
        );
    }
}

/// The wasmtime table answers for `%catch`'s try_call exactly what our
/// table says, and nothing for a pc outside any call site.
#[test]
fn wasmtime_table_agrees_with_ours() {
    let bench = JitBench::new().unwrap();
    let image = bench.module().image();
    let index = image
        .table
        .functions()
        .iter()
        .position(|f| f.name == "%catch")
        .unwrap();
    let catch = &image.table.functions()[index];
    let site = image.table.call_sites(index).next().unwrap();
    let pc = (catch.start + u64::from(site.return_offset())) as usize;
    let fp = 0x7000_0000usize;
    let handler = site.select_handler(1).unwrap();
    assert_eq!(
        bench.wasmtime().handler_at(pc, fp, 1),
        Some((
            (catch.start + u64::from(handler)) as usize,
            fp - site.frame_offset().unwrap() as usize
        ))
    );
    assert_eq!(
        bench.wasmtime().handler_at(pc, fp, 2),
        None,
        "no tag2 handler"
    );
    assert_eq!(bench.wasmtime().handler_at(pc + 1, fp, 1), None);
    assert!(bench.wasmtime().table_bytes() > 0);
}
