//! Running code on the host CPU.

use std::cell::Cell;
use std::ptr;

use crate::error::Error;
use crate::interrupt::{self, CallInterrupt};
use crate::isa::Arch;
use crate::machine::{Fault, FaultKind, HostFunction, HostServices, Machine};
use crate::memory::{HostMemory, Memory};
use crate::module::THROW_TO_ENTRY_SYMBOL;
use crate::signals::{self, Resume, SignalFault};
use crate::trampoline::{HANDLER_FP_OFFSET, HANDLER_PC_OFFSET, HANDLER_SP_OFFSET};

/// One region of code memory: mapped read-write, then, once installed,
/// read-execute.
struct Region {
    addr: *mut libc::c_void,
    len: usize,
    /// The size `allocate_code` was asked for.
    size: usize,
    installed: bool,
}

/// The host CPU as a [`Machine`]. Code memory is never writable and
/// executable at once (W^X).
///
/// Trap delivery works on x86_64, aarch64, riscv64 and s390x Linux hosts;
/// on any other host [`NativeMachine::new`] is an `Err`.
///
/// By default, creating one installs process-wide handlers for SIGILL,
/// SIGSEGV, SIGBUS and SIGFPE (once per process): a synchronous fault in
/// JIT code that the running call's [`HostServices::fault`] accepts resumes
/// at that call's entry trampoline (no setjmp/longjmp); every other signal —
/// a fault outside JIT code, or an asynchronous one (`kill`, `tkill`,
/// `sigqueue`) — goes to the handler installed before, or gets the default
/// action, exactly as without this crate. A handler installed *after* ours
/// must chain to the one it replaced (as `sigaction`'s `oldact` allows) or
/// call [`handle_signal`] first; embedders that own signal handling use
/// [`NativeOptions::signal_handlers`] to keep this crate's handlers out
/// entirely. See [`handle_signal`].
///
/// It also installs, always, the handler of
/// [`crate::interrupt::INTERRUPT_SIGNAL`], which stops interrupted calls
/// the same way and passes every other delivery of that signal on to the
/// handler installed before.
pub struct NativeMachine {
    arch: Arch,
    regions: Vec<Region>,
    /// Data memory ([`Machine::allocate_data`]), never executable.
    data: Vec<Region>,
}

// SAFETY: the regions are plain mappings owned by the machine; `&self`
// methods only read their bounds, and mutation (allocation, installation)
// takes `&mut self`. Calls keep their state per thread (`THREAD`).
unsafe impl Send for NativeMachine {}
// SAFETY: as above; concurrent `call_entry`s share nothing but read-only
// region bounds.
unsafe impl Sync for NativeMachine {}

/// How a [`NativeMachine`] is set up; [`NativeOptions::default`] is what
/// [`NativeMachine::new`] uses.
#[derive(Clone, Debug)]
pub struct NativeOptions {
    signal_handlers: bool,
}

impl Default for NativeOptions {
    fn default() -> Self {
        NativeOptions {
            signal_handlers: true,
        }
    }
}

impl NativeOptions {
    /// The defaults: this crate installs its signal handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the machine installs this crate's process-wide handlers for
    /// SIGILL, SIGSEGV, SIGBUS and SIGFPE (default `true`). With `false`,
    /// nothing is installed for them: the embedder's own handlers must call
    /// [`handle_signal`] first, or JIT traps reach them as ordinary faults
    /// (handlers another machine installed stay installed: they are
    /// process-wide). The interrupt signal's handler is installed either
    /// way.
    pub fn signal_handlers(mut self, install: bool) -> Self {
        self.signal_handlers = install;
        self
    }
}

pub use crate::signals::handle_signal;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

impl NativeMachine {
    /// A machine for the host, if the host is one of the four ISAs, with
    /// this crate's signal handlers installed.
    pub fn new() -> Result<NativeMachine, Error> {
        Self::with_options(NativeOptions::default())
    }

    /// A machine for the host set up as `options` say.
    pub fn with_options(options: NativeOptions) -> Result<NativeMachine, Error> {
        let arch = Arch::host()
            .ok_or_else(|| Error::Machine("the host architecture is not supported".into()))?;
        signals::check_host()?;
        if options.signal_handlers {
            signals::install()?;
        }
        signals::install_interrupt()?;
        Ok(NativeMachine {
            arch,
            regions: Vec::new(),
            data: Vec::new(),
        })
    }

    fn region(&mut self, base: u64) -> Option<&mut Region> {
        self.regions.iter_mut().find(|r| r.addr as u64 == base)
    }
}

impl Drop for NativeMachine {
    fn drop(&mut self) {
        for r in self.regions.iter().chain(&self.data) {
            // SAFETY: each region was mapped by us with this length; nothing
            // runs in it once the machine is dropped.
            unsafe { libc::munmap(r.addr, r.len) };
        }
    }
}

/// The call in progress on this thread: its host services and buffer. It
/// lives in the frame of the `call_entry` that made it; the buffer header
/// holds the entry trampoline's handler record, and the previous call (the
/// next entry out) is put back by that `call_entry` when it returns.
struct ActiveCall {
    /// The machine the call runs on (its code regions).
    machine: *const NativeMachine,
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
    /// The thread's stack as `(lowest, highest)`, once the first call on
    /// this thread has looked it up (which can mean parsing /proc/self/maps,
    /// so never in a signal handler).
    stack: Cell<Option<(u64, u64)>>,
}

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState {
            active: Cell::new(ptr::null()),
            stack: Cell::new(None),
        }
    };
}

/// Sixteen bytes, 16-byte aligned on every host (`u128` is only 8-byte
/// aligned on s390x, which made an "aligned" copy unaligned there).
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Word16([u8; 16]);

/// 16-byte words of call buffer kept on the stack (larger ones go to the
/// heap): 32 value slots.
const INLINE_BUFFER_WORDS: usize = 34;

/// Below the lowest stack address, how far a fault still counts as a stack
/// overflow (the guard page(s), or the main thread's stack guard gap).
const STACK_GUARD_REACH: u64 = 1 << 20;

/// Once per thread, before its first call: its stack bounds and an
/// alternate signal stack (so that a stack overflow can be delivered).
#[cold]
fn first_call_on_thread() -> Result<(), Error> {
    signals::ensure_alt_stack()?;
    let bounds = thread_stack_bounds().unwrap_or((0, u64::MAX));
    THREAD.with(|t| t.stack.set(Some(bounds)));
    Ok(())
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
pub(crate) fn deliver_signal_fault(signal_fault: SignalFault) -> Option<Resume> {
    let (active, stack) = active_call()?;
    let mut fault = signal_fault.fault;
    if fault.kind == FaultKind::InstructionFetch {
        // SAFETY: the machine outlives the call (`enter` borrows it).
        let machine = unsafe { &*active.machine };
        // A fetch from an address that is not this machine's code, by a
        // call from its code (not, say, a host function's null function
        // pointer): the JIT code jumped there.
        let caller = (signal_fault.return_address)(signal_fault.context, stack)
            .filter(|&ra| machine.contains_code(ra));
        if machine.contains_code(fault.pc) || caller.is_none() {
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
pub(crate) enum InterruptDelivery {
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
pub(crate) fn deliver_interrupt(pc: u64) -> InterruptDelivery {
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

/// The host function behind the throw stub (C ABI, called from JIT code).
extern "C" fn native_throw(context: *mut u64) {
    serve_throw(
        context,
        "__cranelift_throw",
        |host, memory, context, buffer| host.throw(memory, context, buffer),
    );
}

/// The host function behind the throw-to-entry stub (C ABI, called from JIT
/// code).
extern "C" fn native_throw_to_entry(context: *mut u64) {
    serve_throw(
        context,
        THROW_TO_ENTRY_SYMBOL,
        |host, memory, context, buffer| host.throw_to_entry(memory, context, buffer),
    );
}

/// Run `serve` on the thread's active call for the throw stub's `context`
/// (`what` names the symbol JIT code called).
#[inline(always)]
fn serve_throw(
    context: *mut u64,
    what: &str,
    serve: impl FnOnce(&mut dyn HostServices, &mut dyn Memory, u64, u64) -> Result<(), Error>,
) {
    let Some((active, stack)) = active_call() else {
        eprintln!("cranelift-exn: {what} called outside any entry; aborting");
        std::process::abort();
    };
    active.in_jit.set(false);
    let mut memory = call_memory(active, stack);
    // SAFETY: `host` points at the `&mut dyn HostServices` borrowed by the
    // `call_entry` frame below us on this thread, which outlives this call.
    let host = unsafe { &mut *active.host };
    let served = serve(host, &mut memory, context as u64, active.buffer);
    active.in_jit.set(true);
    if let Err(e) = served {
        // Returning would resume at a garbage context; the services deliver
        // every recoverable failure to the entry, so this is unrecoverable.
        eprintln!("cranelift-exn: {what} failed and could not reach the entry: {e}");
        std::process::abort();
    }
}

/// The host function behind [`HostFunction::Call`] (C ABI, called from the
/// glue of a host function).
extern "C" fn native_host_call(index: u64, frame: u64) -> u64 {
    let Some((active, stack)) = active_call() else {
        eprintln!("cranelift-exn: a host function was called outside any entry; aborting");
        std::process::abort();
    };
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

impl Machine for NativeMachine {
    fn arch(&self) -> Arch {
        self.arch
    }

    fn allocate_code(&mut self, size: usize) -> Result<u64, Error> {
        let len = size.max(1).next_multiple_of(page_size());
        // SAFETY: an anonymous private mapping with no address hint.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Error::Memory {
                address: 0,
                message: format!("mmap of {len} bytes: {}", std::io::Error::last_os_error()),
            });
        }
        self.regions.push(Region {
            addr,
            len,
            size,
            installed: false,
        });
        Ok(addr as u64)
    }

    unsafe fn install_code(&mut self, base: u64, bytes: &[u8]) -> Result<(), Error> {
        let region = self.region(base).ok_or_else(|| Error::Memory {
            address: base,
            message: "not an address allocate_code returned".into(),
        })?;
        if region.installed {
            return Err(Error::Memory {
                address: base,
                message: "code is already installed here (install_code runs once per region)"
                    .into(),
            });
        }
        if bytes.len() > region.size {
            return Err(Error::Memory {
                address: base,
                message: format!(
                    "{} bytes do not fit the {} bytes allocated",
                    bytes.len(),
                    region.size
                ),
            });
        }
        // Whatever happens next, the region is never written again.
        region.installed = true;
        // SAFETY: the region is ours, still writable (never installed), and
        // at least `bytes.len()` long; no code runs in it yet.
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), region.addr as *mut u8, bytes.len());
            if libc::mprotect(region.addr, region.len, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                return Err(Error::Memory {
                    address: base,
                    message: format!("mprotect: {}", std::io::Error::last_os_error()),
                });
            }
            // Instruction-cache coherence for the new code, then a pipeline
            // flush on every core running a thread of this process (no-ops
            // where the hardware keeps them coherent, as on x86-64).
            wasmtime_jit_icache_coherence::clear_cache(region.addr.cast_const(), bytes.len())
                .and_then(|()| wasmtime_jit_icache_coherence::pipeline_flush_mt())
                .map_err(|e| Error::Memory {
                    address: base,
                    message: format!("instruction-cache flush: {e}"),
                })?;
        }
        Ok(())
    }

    fn allocate_data(&mut self, size: usize, align: u64) -> Result<u64, Error> {
        if !align.is_power_of_two() || align > page_size() as u64 {
            return Err(Error::Memory {
                address: 0,
                message: format!("data alignment {align} (at most the page size is supported)"),
            });
        }
        let len = size.max(1).next_multiple_of(page_size());
        // SAFETY: an anonymous private mapping with no address hint.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Error::Memory {
                address: 0,
                message: format!("mmap of {len} bytes: {}", std::io::Error::last_os_error()),
            });
        }
        self.data.push(Region {
            addr,
            len,
            size: len,
            installed: false,
        });
        Ok(addr as u64)
    }

    fn install_data(&mut self, base: u64, bytes: &[u8], writable: bool) -> Result<(), Error> {
        let region = self
            .data
            .iter()
            .find(|r| r.addr as u64 == base)
            .ok_or_else(|| Error::Memory {
                address: base,
                message: "not a region from allocate_data".into(),
            })?;
        if bytes.len() > region.len {
            return Err(Error::Memory {
                address: base,
                message: format!(
                    "{} bytes do not fit a {}-byte region",
                    bytes.len(),
                    region.len
                ),
            });
        }
        // SAFETY: the region is ours and at least `bytes.len()` long; it is
        // still writable (only this call makes it read-only).
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), region.addr as *mut u8, bytes.len());
            if !writable && libc::mprotect(region.addr, region.len, libc::PROT_READ) != 0 {
                return Err(Error::Memory {
                    address: base,
                    message: format!("mprotect: {}", std::io::Error::last_os_error()),
                });
            }
        }
        Ok(())
    }

    fn host_function_address(&mut self, function: HostFunction) -> Result<u64, Error> {
        match function {
            HostFunction::Throw => Ok(native_throw as *const () as u64),
            HostFunction::ThrowToEntry => Ok(native_throw_to_entry as *const () as u64),
            HostFunction::Call => Ok(native_host_call as *const () as u64),
        }
    }

    unsafe fn call_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        // SAFETY: the caller keeps `call_entry`'s contract, which is
        // `enter`'s.
        unsafe { self.enter(entry, callee, buffer, host) }
    }

    fn as_native(&self) -> Option<&NativeMachine> {
        Some(self)
    }
}

impl NativeMachine {
    /// [`Machine::call_entry`], inlined into [`crate::Module::call_raw`].
    ///
    /// # Safety
    ///
    /// The contract of [`Machine::call_entry`].
    #[inline]
    pub(crate) unsafe fn enter(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        if !self.contains_code(entry) {
            return Err(not_loaded(entry));
        }
        // The trampoline's loads and stores are `aligned`: run on the
        // caller's buffer when it is 16-byte aligned (allocations usually
        // are), else on an aligned copy.
        if !(buffer.as_ptr() as usize).is_multiple_of(16) {
            // SAFETY: our caller's contract.
            return unsafe { self.enter_unaligned(entry, callee, buffer, host) };
        }
        if THREAD.with(|t| t.stack.get()).is_none() {
            first_call_on_thread()?;
        }
        signals::reinstall_if_displaced();
        // SAFETY: lifetime erasure only; the call is unlinked (the previous
        // one restored) before this function returns, while `host` is still
        // borrowed.
        let interrupt: Option<CallInterrupt<'static>> =
            unsafe { std::mem::transmute(host.interrupt()) };
        let host: *mut (dyn HostServices + '_) = host;
        let host: *mut (dyn HostServices + 'static) = unsafe { std::mem::transmute(host) };
        let call = ActiveCall {
            machine: self,
            host,
            buffer: buffer.as_mut_ptr() as u64,
            buffer_len: buffer.len(),
            interrupt,
            in_jit: Cell::new(false),
        };
        let previous = THREAD.with(|t| t.active.replace(&call));
        let interrupted_early = interrupt::enter_native(call.interrupt.as_ref()) && {
            // Interrupted before any signal could reach it: it ends at its
            // entry without running, if the services take it.
            let fault = Fault {
                pc: entry,
                kind: FaultKind::Interrupted,
                address: None,
                fp: None,
                caller: None,
            };
            let stack = THREAD.with(|t| t.stack.get()).unwrap_or_default();
            // SAFETY: `host` is the services object we were given, not in
            // use elsewhere.
            unsafe { (*call.host).fault(&fault, &call_memory(&call, stack)) }
        };
        if !interrupted_early {
            // SAFETY: `entry` is an entry trampoline in our executable memory
            // with the C signature `fn(callee, buffer)`; the buffer is large
            // enough for the callee's signature and 16-byte aligned, and stays
            // borrowed until it returns (our caller's contract).
            let f: extern "C" fn(u64, u64) = unsafe { std::mem::transmute(entry as usize) };
            call.in_jit.set(true);
            f(callee, call.buffer);
            call.in_jit.set(false);
        }
        // SAFETY: `previous` is null or the live call this one is nested in.
        let outer = unsafe { previous.as_ref() }.and_then(|p| p.interrupt.as_ref());
        interrupt::leave_native(outer);
        THREAD.with(|t| t.active.set(previous));
        Ok(())
    }

    /// [`NativeMachine::enter`] on an aligned copy of `buffer` (on this
    /// stack when it is small).
    ///
    /// # Safety
    ///
    /// As for [`NativeMachine::enter`].
    #[cold]
    unsafe fn enter_unaligned(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        let len = buffer.len();
        let mut inline = [Word16([0; 16]); INLINE_BUFFER_WORDS];
        let mut heap: Vec<Word16>;
        let words: &mut [Word16] = if len <= INLINE_BUFFER_WORDS * 16 {
            &mut inline
        } else {
            heap = vec![Word16([0; 16]); len.div_ceil(16)];
            &mut heap
        };
        // SAFETY: `words` has at least `len` bytes; any bytes are valid `u8`s.
        let copy = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) };
        copy.copy_from_slice(buffer);
        // SAFETY: our caller's contract; the copy has the buffer's size.
        unsafe { self.enter(entry, callee, copy, host)? };
        buffer.copy_from_slice(copy);
        Ok(())
    }

    fn contains_code(&self, address: u64) -> bool {
        self.regions.iter().any(|r| {
            r.installed && address >= r.addr as u64 && address < r.addr as u64 + r.len as u64
        })
    }
}

#[cold]
fn not_loaded(entry: u64) -> Error {
    Error::Machine(format!("entry {entry:#x} is not loaded code"))
}
