//! Running code on the host CPU.

use std::cell::Cell;
use std::ptr;

use crate::error::Error;
use crate::isa::Arch;
use crate::machine::{FaultKind, HostFunction, HostServices, Machine};
use crate::memory::{HostMemory, Memory};
use crate::module::THROW_TO_ENTRY_SYMBOL;
use crate::signals::{self, Interrupted, Resume};
use crate::trampoline::{HANDLER_FP_OFFSET, HANDLER_PC_OFFSET, HANDLER_SP_OFFSET};

/// One region of code memory: mapped read-write, then read-execute.
struct Region {
    addr: *mut libc::c_void,
    len: usize,
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
pub struct NativeMachine {
    arch: Arch,
    regions: Vec<Region>,
}

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
    /// nothing is installed: the embedder's own handlers must call
    /// [`handle_signal`] first, or JIT traps reach them as ordinary faults
    /// (handlers another machine installed stay installed: they are
    /// process-wide).
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
        Ok(NativeMachine {
            arch,
            regions: Vec::new(),
        })
    }

    fn region(&self, base: u64) -> Option<&Region> {
        self.regions.iter().find(|r| r.addr as u64 == base)
    }
}

impl Drop for NativeMachine {
    fn drop(&mut self) {
        for r in &self.regions {
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

/// Called by the signal handler: if `fault` happened in JIT code of this
/// thread's innermost call and its services accept it, where to resume.
/// Runs in a signal handler: no allocation, no locks.
pub(crate) fn deliver_fault(interrupted: Interrupted) -> Option<Resume> {
    let (active, stack) = active_call()?;
    let low = stack.0;
    let mut fault = interrupted.fault;
    if fault.kind == FaultKind::InstructionFetch {
        // SAFETY: the machine outlives the call (`enter` borrows it).
        let machine = unsafe { &*active.machine };
        // A fetch from an address that is not this machine's code, by a
        // call from its code (not, say, a host function's null function
        // pointer): the JIT code jumped there.
        let from_jit = !machine.contains_code(fault.pc)
            && (interrupted.return_address)(interrupted.context, stack)
                .is_some_and(|ra| machine.contains_code(ra));
        if !from_jit {
            fault.kind = FaultKind::MemoryAccess;
        }
    }
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
    host.fault(&fault).then_some(resume)
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
    let mut memory = call_memory(active, stack);
    // SAFETY: `host` points at the `&mut dyn HostServices` borrowed by the
    // `call_entry` frame below us on this thread, which outlives this call.
    let host = unsafe { &mut *active.host };
    if let Err(e) = serve(host, &mut memory, context as u64, active.buffer) {
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
    let mut memory = call_memory(active, stack);
    // SAFETY: as in `native_throw`; a nested `call_entry` made by the host
    // function installs its own `ActiveCall` and restores this one.
    let host = unsafe { &mut *active.host };
    match host.call_host(&mut memory, index, frame) {
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
        self.regions.push(Region { addr, len });
        Ok(addr as u64)
    }

    fn install_code(&mut self, base: u64, bytes: &[u8]) -> Result<(), Error> {
        let region = self.region(base).ok_or_else(|| Error::Memory {
            address: base,
            message: "not a region from allocate_code".into(),
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
        // SAFETY: the region is ours, writable, and at least `bytes.len()` long.
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), region.addr as *mut u8, bytes.len());
            if libc::mprotect(region.addr, region.len, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                return Err(Error::Memory {
                    address: base,
                    message: format!("mprotect: {}", std::io::Error::last_os_error()),
                });
            }
        }
        flush_icache(base, bytes.len());
        Ok(())
    }

    fn host_function_address(&mut self, function: HostFunction) -> Result<u64, Error> {
        match function {
            HostFunction::Throw => Ok(native_throw as *const () as u64),
            HostFunction::ThrowToEntry => Ok(native_throw_to_entry as *const () as u64),
            HostFunction::Call => Ok(native_host_call as *const () as u64),
        }
    }

    fn call_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        self.enter(entry, callee, buffer, host)
    }

    fn as_native(&self) -> Option<&NativeMachine> {
        Some(self)
    }
}

impl NativeMachine {
    /// [`Machine::call_entry`], inlined into [`crate::Module::call_raw`].
    #[inline]
    pub(crate) fn enter(
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
            return self.enter_unaligned(entry, callee, buffer, host);
        }
        if THREAD.with(|t| t.stack.get()).is_none() {
            first_call_on_thread()?;
        }
        signals::reinstall_if_displaced();
        // SAFETY: lifetime erasure only; the call is unlinked (the previous
        // one restored) before this function returns, while `host` is still
        // borrowed.
        let host: *mut (dyn HostServices + '_) = host;
        let host: *mut (dyn HostServices + 'static) = unsafe { std::mem::transmute(host) };
        let call = ActiveCall {
            machine: self,
            host,
            buffer: buffer.as_mut_ptr() as u64,
            buffer_len: buffer.len(),
        };
        let previous = THREAD.with(|t| t.active.replace(&call));
        // SAFETY: `entry` is an entry trampoline in our executable memory with
        // the C signature `fn(callee, buffer)`; the buffer is large enough for
        // the callee's signature (checked by the caller that built it) and
        // 16-byte aligned, and stays borrowed until it returns.
        let f: extern "C" fn(u64, u64) = unsafe { std::mem::transmute(entry as usize) };
        f(callee, call.buffer);
        THREAD.with(|t| t.active.set(previous));
        Ok(())
    }

    /// [`NativeMachine::enter`] on an aligned copy of `buffer` (on this
    /// stack when it is small).
    #[cold]
    fn enter_unaligned(
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
        self.enter(entry, callee, copy, host)?;
        buffer.copy_from_slice(copy);
        Ok(())
    }

    fn contains_code(&self, address: u64) -> bool {
        self.regions
            .iter()
            .any(|r| address >= r.addr as u64 && address < r.addr as u64 + r.len as u64)
    }
}

#[cold]
fn not_loaded(entry: u64) -> Error {
    Error::Machine(format!("entry {entry:#x} is not loaded code"))
}

#[cfg(target_arch = "x86_64")]
fn flush_icache(_base: u64, _len: usize) {
    // x86-64 keeps instruction fetch coherent with stores.
}

#[cfg(not(target_arch = "x86_64"))]
fn flush_icache(base: u64, len: usize) {
    unsafe extern "C" {
        fn __clear_cache(start: *mut libc::c_char, end: *mut libc::c_char);
    }
    // SAFETY: the range is mapped code we just wrote.
    unsafe {
        __clear_cache(
            base as *mut libc::c_char,
            (base + len as u64) as *mut libc::c_char,
        )
    };
}
