/* C comparison points for the benchmarks: setjmp/longjmp through a chain of
 * frames, a setjmp-based entry, and traps delivered by sigsetjmp/siglongjmp
 * out of a signal handler. */
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Every frame of a chain must really exist: no inlining, no interprocedural
 * rewriting of the recursion into a loop, and (with
 * -fno-optimize-sibling-calls and the work after each call) no tail calls.
 * The recursion also goes through a volatile function pointer, which no
 * optimizer can see through. */
#if defined(__clang__)
#define FRAME __attribute__((noinline))
#else
#define FRAME __attribute__((noinline, noipa))
#endif

typedef int64_t i64;

/* ---- setjmp/longjmp through `depth` frames ---- */

static __thread jmp_buf *lj_target;
static __thread i64 lj_payload;

FRAME static i64 lj_rec(i64 depth, i64 payload);
static i64 (*volatile lj_next)(i64, i64) = lj_rec;

FRAME static i64 lj_rec(i64 depth, i64 payload) {
    if (depth <= 1) {
        lj_payload = payload;
        longjmp(*lj_target, 1);
    }
    i64 r = lj_next(depth - 1, payload);
    return r + 1;
}

/* setjmp here, longjmp from the innermost of `depth` frames below; returns
 * the payload. */
i64 exn_bench_longjmp(i64 depth, i64 payload) {
    jmp_buf env;
    jmp_buf *prev = lj_target;
    if (setjmp(env) != 0) {
        lj_target = prev;
        return lj_payload;
    }
    lj_target = &env;
    i64 r = lj_next(depth, payload);
    lj_target = prev;
    return -r; /* not reached: the chain always jumps */
}

/* setjmp here, then `entry(throw_fn, depth, payload)`: JIT code that
 * descends `depth` frames and calls `throw_fn` with __cranelift_throw's
 * arguments; `lj_over_throw` longjmps back with the payload. */
static void lj_over_throw(i64 entry_fp, i64 exit_fp, i64 exit_pc, int32_t tag, i64 payload,
                          i64 unused) {
    (void)entry_fp;
    (void)exit_fp;
    (void)exit_pc;
    (void)tag;
    (void)unused;
    lj_payload = payload;
    longjmp(*lj_target, 1);
}

i64 exn_bench_longjmp_over(i64 (*entry)(i64, i64, i64), i64 depth, i64 payload) {
    jmp_buf env;
    jmp_buf *prev = lj_target;
    if (setjmp(env) != 0) {
        lj_target = prev;
        return lj_payload;
    }
    lj_target = &env;
    i64 r = entry((i64)(intptr_t)&lj_over_throw, depth, payload);
    lj_target = prev;
    return -r; /* not reached: the chain always jumps */
}

/* The same chain returning normally (the cost of the calls alone). */
FRAME static i64 calls_rec(i64 depth);
static i64 (*volatile calls_next)(i64) = calls_rec;

FRAME static i64 calls_rec(i64 depth) {
    if (depth <= 1) {
        return 1;
    }
    return calls_next(depth - 1) + 1;
}

/* Calls `depth` frames that return normally; returns `depth`. */
i64 exn_bench_c_calls(i64 depth) {
    return calls_next(depth);
}

/* ---- a setjmp-based entry: what a runtime without unwinding does to be
 * able to abandon the callee ---- */

static __thread jmp_buf *entry_target;

i64 exn_bench_setjmp_entry(i64 (*f)(i64), i64 x) {
    jmp_buf env;
    jmp_buf *prev = entry_target;
    if (setjmp(env) != 0) {
        entry_target = prev;
        return -1;
    }
    entry_target = &env;
    i64 r = f(x);
    entry_target = prev;
    return r;
}

/* The same with sigsetjmp(env, 1), which saves the signal mask (one
 * sigprocmask system call per entry): what an entry that a signal handler
 * may leave by siglongjmp needs. */
static __thread sigjmp_buf *sig_entry_target;

i64 exn_bench_sigsetjmp_entry(i64 (*f)(i64), i64 x) {
    sigjmp_buf env;
    sigjmp_buf *prev = sig_entry_target;
    if (sigsetjmp(env, 1) != 0) {
        sig_entry_target = prev;
        return -1;
    }
    sig_entry_target = &env;
    i64 r = f(x);
    sig_entry_target = prev;
    return r;
}

/* ---- traps: ud2 / division by zero, delivered by siglongjmp out of a
 * SIGILL / SIGFPE handler ---- */

static __thread sigjmp_buf *trap_target;
static struct sigaction old_ill, old_fpe;
static int installed;

static void on_trap(int sig, siginfo_t *info, void *uc) {
    (void)info;
    (void)uc;
    if (trap_target == NULL) {
        /* Not ours: put the old action back; the instruction faults again. */
        sigaction(SIGILL, &old_ill, NULL);
        sigaction(SIGFPE, &old_fpe, NULL);
        installed = 0;
        return;
    }
    siglongjmp(*trap_target, sig);
}

/* Install the SIGILL and SIGFPE handlers (remembering the old ones).
 * `nodefer` adds SA_NODEFER, so the signal is not blocked in the handler
 * and a siglongjmp that does not restore the mask is correct. Returns 0 on
 * success. */
int exn_bench_trap_install(int nodefer) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_trap;
    action.sa_flags = SA_SIGINFO | (nodefer ? SA_NODEFER : 0);
    sigemptyset(&action.sa_mask);
    if (installed) {
        return -1;
    }
    if (sigaction(SIGILL, &action, &old_ill) != 0) {
        return -1;
    }
    if (sigaction(SIGFPE, &action, &old_fpe) != 0) {
        sigaction(SIGILL, &old_ill, NULL);
        return -1;
    }
    installed = 1;
    return 0;
}

/* Put back the handlers exn_bench_trap_install replaced. */
void exn_bench_trap_restore(void) {
    if (installed) {
        sigaction(SIGILL, &old_ill, NULL);
        sigaction(SIGFPE, &old_fpe, NULL);
        installed = 0;
    }
}

static volatile i64 zero = 0;

FRAME static i64 do_ud2(i64 x) {
    if (x != 0) {
        __builtin_trap(); /* ud2 on x86_64 */
    }
    return x;
}

FRAME static i64 do_divz(i64 x) {
    return x / zero; /* idiv by zero: SIGFPE */
}

/* Trap (`kind` 0: ud2, 1: division by zero) under sigsetjmp(env,
 * savemask); returns the signal number that came back. */
i64 exn_bench_sigsetjmp_trap(int kind, int savemask) {
    sigjmp_buf env;
    sigjmp_buf *prev = trap_target;
    int sig = sigsetjmp(env, savemask);
    if (sig != 0) {
        trap_target = prev;
        return sig;
    }
    trap_target = &env;
    i64 r = kind == 0 ? do_ud2(1) : do_divz(1);
    trap_target = prev;
    return -r; /* not reached */
}
