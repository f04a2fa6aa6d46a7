//! The call running on each thread, and delivering faults and interrupts
//! to it. What runs in a signal handler here allocates nothing and takes
//! no locks.

use std::cell::Cell;
use std::ptr;

use super::region::{Region, contains_code, page_size};
use crate::abi::{HANDLER_FP_OFFSET, HANDLER_PC_OFFSET, HANDLER_SP_OFFSET, THROW_TO_ENTRY_SYMBOL};
use crate::error::Error;
use crate::interrupt::{self, CallInterrupt, ThreadHandle};
use crate::machine::{Fault, FaultKind, HostServices};
use crate::memory::HostMemory;

/// Where to resume after a delivered fault.
#[derive(Clone, Copy, Debug)]
pub(super) struct Resume {
    pub pc: u64,
    pub sp: u64,
    pub fp: u64,
}

/// A synchronous fault signal and what the native machine needs to read of
/// its context to decide whether, and how, the fault is a JIT code's.
#[derive(Clone, Copy, Debug)]
pub(super) struct SignalFault {
    /// The fault as the machine reports it to the call's services (`fp` not
    /// yet filled in: see `frame_pointer`).
    pub fault: Fault,
    /// The faulting frame's frame-pointer value as the unwinder reads
    /// frames (on s390x the back-chain word at the stack pointer, read only
    /// if the stack pointer lies in `stack`).
    pub frame_pointer: fn(*mut libc::c_void, (u64, u64)) -> Option<u64>,
    /// For a fetch from an address that is not code: where the call that
    /// got there would have returned to (the link register, or the word at
    /// the stack pointer on x86-64), read only if the stack pointer lies in
    /// `stack`.
    pub return_address: fn(*mut libc::c_void, (u64, u64)) -> Option<u64>,
    /// The ucontext, for `return_address`.
    pub context: *mut libc::c_void,
}

/// The call in progress on this thread: its host services and buffer. It
/// lives in the frame of the `call_entry` that made it; the buffer header
/// holds the entry trampoline's handler record, and the previous call (the
/// next entry out) is put back by that `call_entry` when it returns.
struct ActiveCall {
    /// The code regions of the machine the call runs on.
    code: *const [Region],
    host: *mut dyn HostServices,
    buffer: u64,
    buffer_len: usize,
    /// What the call observes of interrupts (lifetime erased like `host`'s).
    interrupt: Option<CallInterrupt<'static>>,
    /// Whether the thread is running JIT code of this call (rather than
    /// Rust code of the machine or the services): where an interrupt can
    /// be delivered.
    in_jit: Cell<bool>,
}

/// This thread's state: plain `Cell`s without a destructor, so that every
/// access is one load or store relative to the thread pointer (a call pays
/// for two of them).
struct ThreadState {
    /// The innermost [`ActiveCall`], or null.
    active: Cell<*const ActiveCall>,
    /// The thread's interrupt slot, once a call registered it; reset by the
    /// registration's destructor (through [`forget_interrupt_slot`]), so that a call
    /// from a later thread-local destructor looks again (and gets a
    /// detached slot).
    interrupts: Cell<Option<ThreadHandle>>,
    /// The thread's stack as `(lowest, highest)`, once the first call on
    /// this thread has looked it up (which can mean parsing /proc/self/maps,
    /// so never in a signal handler).
    stack: Cell<Option<(u64, u64)>>,
}

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState {
            active: Cell::new(ptr::null()),
            interrupts: Cell::new(None),
            stack: Cell::new(None),
        }
    };
}

/// Below the lowest stack address, how far a fault still counts as a stack
/// overflow (the guard page(s), or the main thread's stack guard gap).
const STACK_GUARD_REACH: u64 = 1 << 20;

/// Before the thread's first call: an alternate signal stack (so that a
/// stack overflow can be delivered), the thread's interrupt slot, then the
/// stack's bounds (set last: they mark the thread as ready). Again for each
/// call after the interrupt registration was destroyed: then only the
/// (detached) slot, which is not kept.
#[cold]
fn first_call_on_thread(state: &ThreadState) -> Result<ThreadHandle, Error> {
    if state.stack.get().is_some() {
        return Ok(interrupt::this_thread(forget_interrupt_slot));
    }
    super::signals::ensure_alt_stack()?;
    let interrupts = interrupt::this_thread(forget_interrupt_slot);
    state.interrupts.set(Some(interrupts));
    let bounds = thread_stack_bounds().unwrap_or((0, u64::MAX));
    state.stack.set(Some(bounds));
    Ok(interrupts)
}

/// Called by the interrupt registration's destructor: the slot this
/// thread's state keeps is about to be freed.
fn forget_interrupt_slot() {
    // `THREAD` has no destructor: always accessible.
    let _ = THREAD.try_with(|t| t.interrupts.set(None));
}

/// The innermost call on this thread and the thread's stack bounds.
fn active_call() -> Option<(&'static ActiveCall, (u64, u64))> {
    let (active, stack) = THREAD.try_with(|t| (t.active.get(), t.stack.get())).ok()?;
    // SAFETY: a non-null `active` points at the `ActiveCall` in the frame of
    // a `call_entry` below us on this thread, which outlives every use made
    // of it here (during that call).
    // A call is active only after `first_call_on_thread` set the stack.
    unsafe { active.as_ref() }.zip(stack)
}

/// Called by the fault signal handler: classifies a fetch fault (JIT code
/// jumped to an address that holds no code, or not), reads the faulting
/// frame's fp, then delivers as [`deliver_fault`] does. Runs in a signal
/// handler: no allocation, no locks.
pub(super) fn deliver_signal_fault(signal_fault: SignalFault) -> Option<Resume> {
    let (active, stack) = active_call()?;
    let mut fault = signal_fault.fault;
    if fault.kind == FaultKind::InstructionFetch {
        // SAFETY: the machine outlives the call (`enter` borrows it), and
        // its regions are not changed while it runs (that takes `&mut`).
        let code = unsafe { &*active.code };
        // A fetch from an address that is not this machine's code, by a
        // call from its code (not, say, a host function's null function
        // pointer): the JIT code jumped there.
        let caller = (signal_fault.return_address)(signal_fault.context, stack)
            .filter(|&ra| contains_code(code, ra));
        if contains_code(code, fault.pc) || caller.is_none() {
            fault.kind = FaultKind::MemoryAccess;
        } else {
            fault.caller = caller;
        }
    }
    fault.fp = (signal_fault.frame_pointer)(signal_fault.context, stack);
    deliver_fault(fault)
}

/// If `fault` happened in JIT code of this thread's innermost call and its
/// services accept it, where to resume. Runs in a signal handler: no
/// allocation, no locks.
fn deliver_fault(mut fault: Fault) -> Option<Resume> {
    let (active, stack) = active_call()?;
    let low = stack.0;
    if fault.kind == FaultKind::MemoryAccess
        && let Some(address) = fault.address
        && address < low.saturating_add(page_size() as u64)
        && address >= low.saturating_sub(STACK_GUARD_REACH)
    {
        fault.kind = FaultKind::StackOverflow;
    }
    let word = |offset: i32| {
        // SAFETY: the buffer is the live, 16-byte aligned copy `call_entry`
        // made; the header words lie inside it.
        unsafe { ((active.buffer + offset as u64) as *const u64).read() }
    };
    let resume = Resume {
        pc: word(HANDLER_PC_OFFSET),
        sp: word(HANDLER_SP_OFFSET),
        fp: word(HANDLER_FP_OFFSET),
    };
    // Before the entry trampoline has recorded its handler there is nowhere
    // to go.
    if resume.pc == 0 {
        return None;
    }
    // SAFETY: `host` is the services object borrowed by the `call_entry`
    // frame below us on this thread; the fault interrupted JIT code, so no
    // other reference to it is in use.
    let host = unsafe { &mut *active.host };
    host.fault(&fault, &call_memory(active, stack))
        .then_some(resume)
}

/// What the interrupt signal handler does.
pub(super) enum InterruptDelivery {
    /// No interrupted call on this thread: the signal is someone else's.
    NotOurs,
    /// Resume here: the innermost call is interrupted in JIT code.
    Resume(Resume),
    /// The call is interrupted but not in JIT code; the signal will be
    /// resent.
    Later,
}

/// Called by the interrupt signal handler with the interrupted pc. Runs in
/// a signal handler: no allocation, no locks.
pub(super) fn deliver_interrupt(pc: u64) -> InterruptDelivery {
    let Some((active, _)) = active_call() else {
        return InterruptDelivery::NotOurs;
    };
    let Some(call) = active.interrupt.as_ref() else {
        return InterruptDelivery::NotOurs;
    };
    if !call.is_interrupted() {
        interrupt::acknowledge(call);
        return InterruptDelivery::NotOurs;
    }
    if !active.in_jit.get() {
        return InterruptDelivery::Later;
    }
    let fault = Fault {
        pc,
        kind: FaultKind::Interrupted,
        address: None,
        fp: None,
        caller: None,
    };
    match deliver_fault(fault) {
        Some(resume) => {
            interrupt::acknowledge(call);
            InterruptDelivery::Resume(resume)
        }
        None => InterruptDelivery::Later,
    }
}

/// What the unwinder and host functions of `active` may touch: this
/// thread's stack (where the throw stub's context sits below the suspended
/// JIT frames) and the call's buffer.
fn call_memory(active: &ActiveCall, stack: (u64, u64)) -> HostMemory {
    let buffer = (active.buffer, active.buffer + active.buffer_len as u64);
    // SAFETY: both ranges are live memory of this thread for the duration of
    // the call: its stack, and the buffer `call_entry` passed to the entry.
    unsafe { HostMemory::new([stack, buffer]) }
}

/// The current thread's stack as `(lowest, highest)` address.
fn thread_stack_bounds() -> Option<(u64, u64)> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; we
    // destroy it after reading the stack range.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (rc == 0).then(|| (addr as u64, addr as u64 + size as u64))
    }
}

/// [`active_call`] for `what`, a host function JIT code called: without a
/// call on this thread (JIT code run outside any entry) there is nowhere to
/// return a failure to, so the process aborts with a message.
fn active_call_of(what: &str) -> (&'static ActiveCall, (u64, u64)) {
    active_call().unwrap_or_else(|| {
        eprintln!("cranelift-exn: {what} called outside any entry; aborting");
        std::process::abort()
    })
}

/// The host function behind the throw stub (C ABI, called from JIT code).
pub(super) extern "C" fn native_throw(context: *mut u64) {
    let (active, stack) = active_call_of("__cranelift_throw");
    active.in_jit.set(false);
    let mut memory = call_memory(active, stack);
    // SAFETY: `host` points at the `&mut dyn HostServices` borrowed by the
    // `call_entry` frame below us on this thread, which outlives this call.
    let host = unsafe { &mut *active.host };
    let served = host.throw(&mut memory, context as u64, active.buffer);
    active.in_jit.set(true);
    if let Err(e) = served {
        // Returning would resume at a garbage context; the services deliver
        // every recoverable failure to the entry, so this is unrecoverable.
        eprintln!("cranelift-exn: __cranelift_throw failed and could not reach the entry: {e}");
        std::process::abort();
    }
}

/// The host function behind the throw-to-entry stub (C ABI, called from JIT
/// code with the stub's own arguments): records the exception as the
/// innermost call's outcome and returns that call's buffer, whose handler
/// record the stub then installs. The thread stays out of JIT code from here
/// on, so an interrupt no longer stops the call: it is ending anyway.
pub(super) extern "C" fn native_throw_to_entry(tag: u32, payload0: u64, payload1: u64) -> u64 {
    let (active, _) = active_call_of(THROW_TO_ENTRY_SYMBOL);
    active.in_jit.set(false);
    // SAFETY: as in `native_throw`.
    let host = unsafe { &mut *active.host };
    if let Err(e) = host.throw_to_entry(tag, [payload0, payload1]) {
        // The stub cannot return to the thrower; nothing else recovers.
        eprintln!("cranelift-exn: {THROW_TO_ENTRY_SYMBOL} failed: {e}");
        std::process::abort();
    }
    active.buffer
}

/// The host function behind [`HostFunction::Call`] (C ABI, called from the
/// glue of a host function).
pub(super) extern "C" fn native_host_call(index: u64, frame: u64) -> u64 {
    let (active, stack) = active_call_of("a host function");
    active.in_jit.set(false);
    let mut memory = call_memory(active, stack);
    // SAFETY: as in `native_throw`; a nested `call_entry` made by the host
    // function installs its own `ActiveCall` and restores this one.
    let host = unsafe { &mut *active.host };
    let status = host.call_host(&mut memory, index, frame);
    active.in_jit.set(true);
    match status {
        Ok(status) => status,
        Err(e) => {
            // The services turn every failure of the host function into a
            // throw to the entry; an error here means there is no way back.
            eprintln!("cranelift-exn: host function {index} failed: {e}");
            std::process::abort();
        }
    }
}

/// Run the entry trampoline `entry(callee, buffer)` as this thread's
/// innermost call, on a machine whose code is `code`: faults, throws and
/// host calls in it find the call's `host` services through this thread's
/// state.
///
/// # Safety
///
/// The contract of [`crate::machine::Machine::call_entry`]; `buffer` is
/// 16-byte aligned, and `entry` is installed code of `code`.
#[inline(always)]
pub(super) unsafe fn run(
    code: &[Region],
    entry: u64,
    callee: u64,
    buffer: &mut [u8],
    host: &mut dyn HostServices,
) -> Result<(), Error> {
    let state: *const ThreadState = THREAD.with(|t| t as *const ThreadState);
    // SAFETY: this thread's state, which lives as long as the thread.
    let state = unsafe { &*state };
    let thread = match state.interrupts.get() {
        Some(thread) => thread,
        None => first_call_on_thread(state)?,
    };
    // SAFETY: lifetime erasure only; the call is unlinked (the previous
    // one restored) before this function returns, while `host` is still
    // borrowed.
    let interrupt: Option<CallInterrupt<'static>> =
        unsafe { std::mem::transmute(host.interrupt()) };
    let host: *mut (dyn HostServices + '_) = host;
    let host: *mut (dyn HostServices + 'static) = unsafe { std::mem::transmute(host) };
    let call = ActiveCall {
        code,
        host,
        buffer: buffer.as_mut_ptr() as u64,
        buffer_len: buffer.len(),
        interrupt,
        in_jit: Cell::new(false),
    };
    let previous = state.active.replace(&call);
    if !interrupt::enter_native(thread, call.interrupt.as_ref())
        || !interrupted_before_running(&call, entry, state)
    {
        call.in_jit.set(true);
        // SAFETY: `entry` is an entry trampoline in our executable memory
        // with the C signature `fn(callee, buffer)`; the buffer is large
        // enough for the callee's signature and 16-byte aligned, and stays
        // borrowed until it returns (our caller's contract).
        unsafe { super::call::call_entry(entry, callee, call.buffer) };
        call.in_jit.set(false);
    }
    // SAFETY: `previous` is null or the live call this one is nested in.
    let outer = unsafe { previous.as_ref() }.and_then(|p| p.interrupt.as_ref());
    interrupt::leave_native(thread, outer);
    state.active.set(previous);
    Ok(())
}

/// A call interrupted before any signal could reach it ends at its entry
/// without running, if its services take the interrupt; whether they did.
#[cold]
fn interrupted_before_running(call: &ActiveCall, entry: u64, state: &ThreadState) -> bool {
    let fault = Fault {
        pc: entry,
        kind: FaultKind::Interrupted,
        address: None,
        fp: None,
        caller: None,
    };
    let stack = state.stack.get().unwrap_or_default();
    // SAFETY: `host` is the services object the call was given, not in use
    // elsewhere (the call has not started).
    unsafe { (*call.host).fault(&fault, &call_memory(call, stack)) }
}
