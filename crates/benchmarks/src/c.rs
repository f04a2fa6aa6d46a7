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
        pub fn exn_bench_trap_install(nodefer: libc_int) -> libc_int;
        pub fn exn_bench_trap_restore();
        pub fn exn_bench_sigsetjmp_trap(kind: libc_int, savemask: libc_int) -> i64;
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

/// Which instruction the C trap benchmark executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapKind {
    /// `ud2` (SIGILL).
    Ud2 = 0,
    /// Integer division by zero (SIGFPE).
    DivideByZero = 1,
}

/// While alive, SIGILL and SIGFPE go to the C benchmark's handler, which
/// `siglongjmp`s out; dropping it puts the previous handlers back.
pub struct CTrapHandlers(());

impl CTrapHandlers {
    /// Install the handlers; `nodefer` makes them `SA_NODEFER` (see
    /// [`CTrapHandlers::trap`]). Fails if already installed.
    pub fn install(nodefer: bool) -> Result<CTrapHandlers, String> {
        // SAFETY: sigaction calls on valid structures.
        match unsafe { ffi::exn_bench_trap_install(nodefer.into()) } {
            0 => Ok(CTrapHandlers(())),
            _ => Err("installing the C trap handlers failed (already installed?)".into()),
        }
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
}

impl Drop for CTrapHandlers {
    fn drop(&mut self) {
        // SAFETY: restores what install saved.
        unsafe { ffi::exn_bench_trap_restore() }
    }
}
