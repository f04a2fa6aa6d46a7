//! The C and C++ comparison points of `csrc/` (see `build.rs`).

mod ffi {
    unsafe extern "C" {
        pub fn exn_bench_longjmp(depth: i64, payload: i64) -> i64;
        pub fn exn_bench_longjmp_over(
            entry: extern "C" fn(i64, i64, i64) -> i64,
            depth: i64,
            payload: i64,
        ) -> i64;
        pub fn exn_bench_c_calls(depth: i64) -> i64;
        pub fn exn_bench_setjmp_entry(f: extern "C" fn(i64) -> i64, x: i64) -> i64;
        pub fn exn_bench_sigsetjmp_entry(f: extern "C" fn(i64) -> i64, x: i64) -> i64;
        pub fn exn_bench_trap_install(mode: libc_int) -> libc_int;
        pub fn exn_bench_trap_restore();
        pub fn exn_bench_sigsetjmp_trap(kind: libc_int, savemask: libc_int) -> i64;
        pub fn exn_bench_trap_phases(
            kind: libc_int,
            savemask: libc_int,
            iterations: u64,
            phases: *mut [u64; 2],
        ) -> i64;
        pub fn exn_bench_trap_and_return(kind: libc_int) -> i64;
        pub fn exn_bench_tsc() -> u64;
        pub fn exn_bench_cxx_throw(depth: i64, payload: i64) -> i64;
    }

    #[allow(non_camel_case_types)]
    pub type libc_int = std::ffi::c_int;
}

/// `setjmp` at the top, `longjmp` from the innermost of `depth` C frames;
/// returns `payload`.
pub fn longjmp(depth: u64, payload: i64) -> i64 {
    // SAFETY: plain C; the jump only crosses the C frames of the chain.
    unsafe { ffi::exn_bench_longjmp(depth.max(1) as i64, payload) }
}

/// `setjmp`, then `entry(thrower, depth, payload)`, where `thrower` is a C
/// function with `__cranelift_throw`'s arguments that `longjmp`s back with
/// its payload; returns that payload.
///
/// # Safety
///
/// `entry` must eventually call `thrower` (or return), and every frame
/// between must be one that may be abandoned without cleanup.
pub unsafe fn longjmp_over(
    entry: extern "C" fn(i64, i64, i64) -> i64,
    depth: u64,
    payload: i64,
) -> i64 {
    // SAFETY: the caller's contract.
    unsafe { ffi::exn_bench_longjmp_over(entry, depth as i64, payload) }
}

/// `depth` C frames that return normally; returns `depth`.
pub fn c_calls(depth: u64) -> i64 {
    // SAFETY: plain C.
    unsafe { ffi::exn_bench_c_calls(depth.max(1) as i64) }
}

/// A C++ exception thrown in the innermost of `depth` frames, caught at the
/// top; returns `payload`.
pub fn cxx_throw(depth: u64, payload: i64) -> i64 {
    // SAFETY: the exception is caught inside the C++ entry function.
    unsafe { ffi::exn_bench_cxx_throw(depth.max(1) as i64, payload) }
}

/// Call `f(x)` from C after `setjmp` (glibc's `setjmp`, which does not save
/// the signal mask), as an entry that could be left by `longjmp` would.
pub fn setjmp_entry(f: extern "C" fn(i64) -> i64, x: i64) -> i64 {
    // SAFETY: `f` is a C-ABI function the caller vouches for.
    unsafe { ffi::exn_bench_setjmp_entry(f, x) }
}

/// [`setjmp_entry`] with `sigsetjmp(env, 1)` (saves the signal mask).
pub fn sigsetjmp_entry(f: extern "C" fn(i64) -> i64, x: i64) -> i64 {
    // SAFETY: as in `setjmp_entry`.
    unsafe { ffi::exn_bench_sigsetjmp_entry(f, x) }
}

/// Which instruction the C trap benchmark executes (off x86_64, the kinds
/// that name an x86_64 instruction are a `__builtin_trap`, and
/// [`TrapKind::signal`] need not hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapKind {
    /// `ud2`: #UD, SIGILL.
    Ud2 = 0,
    /// Integer division by zero: #DE, SIGFPE.
    DivideByZero = 1,
    /// `int3`: #BP, SIGTRAP.
    Int3 = 2,
    /// `hlt` in user mode: #GP, SIGSEGV.
    Hlt = 3,
    /// `int $0x41` (two bytes, like `ud2`), a gate user mode may not use:
    /// #GP, SIGSEGV.
    IntN = 4,
    /// A load from page 0, never mapped: #PF, SIGSEGV.
    PageFault = 5,
    /// `tgkill(getpid(), gettid(), SIGILL)`: a signal without a CPU
    /// exception (a system call instead).
    Tgkill = 6,
}

impl TrapKind {
    /// The signal number the kind raises (Linux x86_64 numbering).
    pub fn signal(self) -> i64 {
        match self {
            TrapKind::Ud2 | TrapKind::Tgkill => 4,
            TrapKind::DivideByZero => 8,
            TrapKind::Int3 => 5,
            TrapKind::Hlt | TrapKind::IntN | TrapKind::PageFault => 11,
        }
    }
}

/// The time-stamp counter (x86_64's `rdtsc`, after an `lfence`); 0 on other
/// hosts.
pub fn tsc() -> u64 {
    // SAFETY: plain C.
    unsafe { ffi::exn_bench_tsc() }
}

/// While alive, SIGILL, SIGFPE, SIGTRAP, SIGSEGV and SIGBUS go to the C
/// benchmark's handler, which `siglongjmp`s out; dropping it puts the
/// previous handlers back.
pub struct CTrapHandlers(());

impl CTrapHandlers {
    /// Install the handlers; `nodefer` makes them `SA_NODEFER` (see
    /// [`CTrapHandlers::trap`]). Fails if already installed.
    pub fn install(nodefer: bool) -> Result<CTrapHandlers, String> {
        install_c_handlers(nodefer.into()).map(|()| CTrapHandlers(()))
    }

    /// Trap under `sigsetjmp(env, savemask)` and come back by `siglongjmp`
    /// from the handler; returns the signal number. `savemask` is what a
    /// handler installed without `SA_NODEFER` needs (the signal stays
    /// blocked otherwise); without it one system call less.
    pub fn trap(&self, kind: TrapKind, savemask: bool) -> i64 {
        // SAFETY: our handlers are installed (self is alive); the jump only
        // crosses C frames.
        unsafe { ffi::exn_bench_sigsetjmp_trap(kind as ffi::libc_int, savemask.into()) }
    }

    /// `iterations` traps as [`CTrapHandlers::trap`] takes them, timed in
    /// two phases with the time-stamp counter: `[fault → handler entry,
    /// handler entry → landing after siglongjmp]`, in ticks summed over the
    /// iterations, and the last signal number. The first phase is the CPU
    /// exception (and any hypervisor exit) and the kernel's delivery; the
    /// second the handler and `siglongjmp` (with `savemask`, its
    /// `sigprocmask`).
    pub fn phases(&self, kind: TrapKind, savemask: bool, iterations: u64) -> ([u64; 2], i64) {
        let mut phases = [0u64; 2];
        // SAFETY: as in `trap`; `phases` is a valid array.
        let signal = unsafe {
            ffi::exn_bench_trap_phases(
                kind as ffi::libc_int,
                savemask.into(),
                iterations,
                &mut phases,
            )
        };
        (phases, signal)
    }
}

impl Drop for CTrapHandlers {
    fn drop(&mut self) {
        // SAFETY: restores what install saved.
        unsafe { ffi::exn_bench_trap_restore() }
    }
}

/// Install the C handlers in `mode` (see `exn_bench_trap_install`).
fn install_c_handlers(mode: ffi::libc_int) -> Result<(), String> {
    // SAFETY: sigaction calls on valid structures.
    match unsafe { ffi::exn_bench_trap_install(mode) } {
        0 => Ok(()),
        _ => Err("installing the C trap handlers failed (already installed?)".into()),
    }
}

/// While alive, SIGILL and SIGFPE (and the others of [`CTrapHandlers`]) go
/// to a C handler (`SA_NODEFER`) that does what ours does instead of
/// `siglongjmp`: it rewrites the interrupted context (here: the pc, past
/// the faulting instruction) and returns, so that the kernel resumes there
/// by `rt_sigreturn`. Dropping it puts the previous handlers back.
pub struct CReturningTrapHandlers(());

impl CReturningTrapHandlers {
    /// Install the handlers. Fails if these or [`CTrapHandlers`] are
    /// installed.
    pub fn install() -> Result<CReturningTrapHandlers, String> {
        install_c_handlers(2).map(|()| CReturningTrapHandlers(()))
    }

    /// `ud2` or a division by zero, resumed after the instruction when the
    /// handler returns; the signal number, or `None` where this is not
    /// implemented (hosts other than x86_64) or for another kind.
    pub fn trap(&self, kind: TrapKind) -> Option<i64> {
        if !matches!(kind, TrapKind::Ud2 | TrapKind::DivideByZero) {
            return None;
        }
        // SAFETY: the returning handlers are installed (self is alive); the
        // C function resumes in itself.
        let signal = unsafe { ffi::exn_bench_trap_and_return(kind as ffi::libc_int) };
        (signal >= 0).then_some(signal)
    }
}

impl Drop for CReturningTrapHandlers {
    fn drop(&mut self) {
        // SAFETY: restores what install saved.
        unsafe { ffi::exn_bench_trap_restore() }
    }
}
