/* C comparison points for the benchmarks: setjmp/longjmp through a chain of
 * frames, a setjmp-based entry, and traps delivered by sigsetjmp/siglongjmp
 * out of a signal handler. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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

/* ---- traps delivered by siglongjmp out of a signal handler: ud2
 * (SIGILL), division by zero (SIGFPE), and, to take the trap cost apart,
 * int3 (#BP: SIGTRAP), hlt and `int $0x41` (#GP: SIGSEGV), a load from an
 * unmapped page (#PF: SIGSEGV), and tgkill (a signal without any CPU
 * exception) ---- */

#define NSIG_HANDLED 5
static const int handled[NSIG_HANDLED] = {SIGILL, SIGFPE, SIGTRAP, SIGSEGV, SIGBUS};
static __thread sigjmp_buf *trap_target;
static struct sigaction old_actions[NSIG_HANDLED];
static int installed;

/* Time-stamp counter reads around the fault (x86_64 only; 0 elsewhere):
 * just before the faulting instruction, and at the handler's first
 * statement. */
static __thread volatile uint64_t tsc_before, tsc_handler;

static inline uint64_t tsc(void) {
#if defined(__x86_64__)
    uint32_t lo, hi;
    /* lfence: the read waits for every earlier instruction to complete. */
    __asm__ volatile("lfence\n\trdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

static void restore_all(void) {
    for (int i = 0; i < NSIG_HANDLED; i++) {
        sigaction(handled[i], &old_actions[i], NULL);
    }
    installed = 0;
}

static void on_trap(int sig, siginfo_t *info, void *uc) {
    tsc_handler = tsc();
    (void)info;
    (void)uc;
    if (trap_target == NULL) {
        /* Not ours: put the old actions back; the instruction faults again. */
        restore_all();
        return;
    }
    siglongjmp(*trap_target, sig);
}

/* The returning variant's state: the length of the faulting instruction
 * (the handler moves the pc past it), and the signal that came. */
static __thread volatile int skip_bytes;
static __thread volatile int returned_signal;

/* Our handler's way: rewrite the interrupted context and return, so that
 * the kernel's rt_sigreturn resumes there (here: after the instruction). */
static void on_trap_return(int sig, siginfo_t *info, void *uc) {
    (void)info;
    if (skip_bytes == 0) {
        restore_all();
        return;
    }
#if defined(__x86_64__)
    ((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP] += skip_bytes;
#else
    (void)uc;
#endif
    skip_bytes = 0;
    returned_signal = sig;
}

/* Install the handlers of SIGILL, SIGFPE, SIGTRAP, SIGSEGV and SIGBUS
 * (remembering the old ones). Mode 0: they siglongjmp out; 1: the same
 * with SA_NODEFER, so the signal is not blocked in the handler and a
 * siglongjmp that does not restore the mask is correct; 2: SA_NODEFER,
 * and they return (x86_64 only). Returns 0 on success. */
int exn_bench_trap_install(int mode) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = mode == 2 ? on_trap_return : on_trap;
    action.sa_flags = SA_SIGINFO | (mode != 0 ? SA_NODEFER : 0);
    sigemptyset(&action.sa_mask);
    if (installed) {
        return -1;
    }
    for (int i = 0; i < NSIG_HANDLED; i++) {
        if (sigaction(handled[i], &action, &old_actions[i]) != 0) {
            while (i-- > 0) {
                sigaction(handled[i], &old_actions[i], NULL);
            }
            return -1;
        }
    }
    installed = 1;
    return 0;
}

/* Put back the handlers exn_bench_trap_install replaced. */
void exn_bench_trap_restore(void) {
    if (installed) {
        restore_all();
    }
}

static volatile i64 zero = 0;

/* Each fault function takes a nonzero `x`, records the time stamp and
 * faults; none returns. */
FRAME static i64 do_ud2(i64 x) {
    tsc_before = tsc();
    if (x != 0) {
        __builtin_trap(); /* ud2 on x86_64 */
    }
    return x;
}

FRAME static i64 do_divz(i64 x) {
    i64 d = zero;
    tsc_before = tsc();
    __asm__ volatile("" : "+r"(d)); /* the division stays after the read */
    return x / d; /* idiv by zero: SIGFPE */
}

FRAME static i64 do_int3(i64 x) {
    tsc_before = tsc();
#if defined(__x86_64__)
    __asm__ volatile("int3");
#else
    __builtin_trap();
#endif
    return x;
}

FRAME static i64 do_hlt(i64 x) {
    tsc_before = tsc();
#if defined(__x86_64__)
    __asm__ volatile("hlt"); /* privileged: #GP in user mode */
#else
    __builtin_trap();
#endif
    return x;
}

FRAME static i64 do_int_n(i64 x) {
    tsc_before = tsc();
#if defined(__x86_64__)
    /* Two bytes, like ud2; the gate of vector 0x41 is not user-callable:
     * #GP. */
    __asm__ volatile("int $0x41");
#else
    __builtin_trap();
#endif
    return x;
}

/* Page 0 is never mapped (vm.mmap_min_addr). */
static volatile char *volatile unmapped = (volatile char *)(uintptr_t)16;

FRAME static i64 do_page_fault(i64 x) {
    volatile char *p = unmapped;
    tsc_before = tsc();
    return x + *p;
}

FRAME static i64 do_tgkill(i64 x) {
    pid_t pid = getpid();
    pid_t tid = (pid_t)syscall(SYS_gettid);
    tsc_before = tsc();
    syscall(SYS_tgkill, pid, tid, SIGILL);
    return x;
}

/* Kinds, as `TrapKind` in src/c.rs numbers them. */
static i64 fault(int kind) {
    switch (kind) {
    case 0:
        return do_ud2(1);
    case 1:
        return do_divz(1);
    case 2:
        return do_int3(1);
    case 3:
        return do_hlt(1);
    case 4:
        return do_int_n(1);
    case 5:
        return do_page_fault(1);
    default:
        return do_tgkill(1);
    }
}

/* Trap (`kind`: see `fault`) under sigsetjmp(env, savemask); returns the
 * signal number that came back. */
i64 exn_bench_sigsetjmp_trap(int kind, int savemask) {
    sigjmp_buf env;
    sigjmp_buf *prev = trap_target;
    int sig = sigsetjmp(env, savemask);
    if (sig != 0) {
        trap_target = prev;
        return sig;
    }
    trap_target = &env;
    i64 r = fault(kind);
    trap_target = prev;
    return -r; /* not reached */
}

/* `iterations` traps of `kind` as exn_bench_sigsetjmp_trap takes them;
 * adds to phases[0] the time-stamp-counter ticks from just before each
 * faulting instruction to the handler's first statement (the CPU exception,
 * any hypervisor exit, the kernel's signal delivery), and to phases[1] those
 * from there to the landing after siglongjmp (the handler, siglongjmp and,
 * with `savemask`, its sigprocmask). Returns the last signal number. */
i64 exn_bench_trap_phases(int kind, int savemask, uint64_t iterations, uint64_t phases[2]) {
    i64 sig = 0;
    for (uint64_t i = 0; i < iterations; i++) {
        sig = exn_bench_sigsetjmp_trap(kind, savemask);
        uint64_t landed = tsc();
        phases[0] += tsc_handler - tsc_before;
        phases[1] += landed - tsc_handler;
    }
    return sig;
}

/* With the returning handlers (mode 2): ud2 (`kind` 0) or a division by
 * zero (1), resumed after the instruction by the handler's return; returns
 * the signal number, or -1 where this is not implemented (not x86_64). */
i64 exn_bench_trap_and_return(int kind) {
#if defined(__x86_64__)
    returned_signal = 0;
    if (kind == 0) {
        skip_bytes = 2;
        __asm__ volatile("ud2" ::: "memory");
    } else {
        int64_t lo = 1, hi = 0, d = zero;
        skip_bytes = 3; /* idivq %reg: REX.W F7 /7 */
        __asm__ volatile("idivq %2" : "+a"(lo), "+d"(hi) : "r"(d) : "memory");
    }
    return returned_signal;
#else
    (void)kind;
    return -1;
#endif
}

/* The time-stamp counter (0 where there is none: not x86_64). */
uint64_t exn_bench_tsc(void) {
    return tsc();
}
