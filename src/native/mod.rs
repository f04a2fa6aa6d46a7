//! Running code on the host CPU.
//!
//! Layers, bottom up: `region` (mapped memory), `call` (the call of an
//! entry trampoline), `thread` (the call running on each thread, and
//! delivering faults to it), `signals` (the process's signal handlers,
//! which deliver through `thread`), and this module's [`NativeMachine`] on
//! top.

mod call;
mod region;
mod signals;
mod thread;

use std::ptr;

use region::{Region, page_size};
use thread::{native_host_call, native_throw, native_throw_to_entry};

use crate::error::Error;
use crate::isa::Arch;
use crate::machine::{HostFunction, HostServices, Machine};
use crate::trampoline::BufferWord;

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
    /// Code memory, sorted by address.
    regions: Vec<Region>,
    /// Where code and data regions come from; it unmaps them when the
    /// machine is dropped, when nothing runs there any more.
    space: region::JitSpace,
    /// Data memory ([`Machine::allocate_data`]), never executable, sorted
    /// by address.
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

pub use signals::handle_signal;

/// 16-byte words of call buffer kept on the stack (larger ones go to the
/// heap): 32 value slots.
const INLINE_BUFFER_WORDS: usize = 34;

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
        crate::interrupt::prepare_native();
        if options.signal_handlers {
            signals::install()?;
        }
        signals::install_interrupt()?;
        Ok(NativeMachine {
            arch,
            regions: Vec::new(),
            space: region::JitSpace::default(),
            data: Vec::new(),
        })
    }

    fn region(&mut self, base: u64) -> Option<&mut Region> {
        region::starting_at(&mut self.regions, base)
    }
}

impl Machine for NativeMachine {
    fn arch(&self) -> Arch {
        self.arch
    }

    fn allocate_code(&mut self, size: usize) -> Result<u64, Error> {
        let region = self.space.allocate(size)?;
        let addr = region.addr as u64;
        region::insert_sorted(&mut self.regions, region);
        Ok(addr)
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
        let mut region = self.space.allocate(size)?;
        // A data region's whole mapping is usable.
        region.size = region.len;
        let addr = region.addr as u64;
        region::insert_sorted(&mut self.data, region);
        Ok(addr)
    }

    fn install_data(&mut self, base: u64, bytes: &[u8], writable: bool) -> Result<(), Error> {
        let region = region::starting_at(&mut self.data, base).ok_or_else(|| Error::Memory {
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

    #[inline]
    unsafe fn call_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        if !self.contains_code(entry) {
            return Err(not_loaded(entry));
        }
        // SAFETY: the caller keeps `call_entry`'s contract, which is
        // `enter`'s; `entry` is installed (checked).
        unsafe { self.enter(entry, callee, buffer, host) }
    }

    #[inline]
    unsafe fn call_installed_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        // SAFETY: the caller keeps `call_installed_entry`'s contract, which
        // is `enter`'s.
        unsafe { self.enter(entry, callee, buffer, host) }
    }

    fn shares_process_memory(&self) -> bool {
        true
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

impl NativeMachine {
    /// [`Machine::call_installed_entry`]: inlined where the machine type is
    /// known (`JitModule<NativeMachine>`).
    ///
    /// # Safety
    ///
    /// The contract of [`Machine::call_entry`], and `entry` is installed
    /// code of this machine (not checked here).
    #[inline(always)]
    pub(crate) unsafe fn enter(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        // The trampoline's loads and stores are `aligned`: run on the
        // caller's buffer when it is 16-byte aligned (allocations usually
        // are), else on an aligned copy.
        if !(buffer.as_ptr() as usize).is_multiple_of(16) {
            // SAFETY: our caller's contract.
            return unsafe { self.enter_unaligned(entry, callee, buffer, host) };
        }
        signals::reinstall_if_displaced();
        // SAFETY: our caller's contract.
        unsafe { thread::run(&self.regions, entry, callee, buffer, host) }
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
        let mut inline = [BufferWord::ZERO; INLINE_BUFFER_WORDS];
        let mut heap: Vec<BufferWord>;
        let words: &mut [BufferWord] = if len <= INLINE_BUFFER_WORDS * 16 {
            &mut inline
        } else {
            heap = vec![BufferWord::ZERO; len.div_ceil(16)];
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
        region::contains_code(&self.regions, address)
    }
}

#[cold]
fn not_loaded(entry: u64) -> Error {
    Error::Machine(format!("entry {entry:#x} is not loaded code"))
}
