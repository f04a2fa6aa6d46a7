//! [`EmulatedMachine`]: a [`Machine`] backed by unicorn-engine.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::ptr::NonNull;
use std::time::Duration;

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg};
use cranelift_exn::machine::entry::{CallFrame, EntryHandler, argument_registers, host_arguments};
use cranelift_exn::machine::regions::{CodeRegions, DataRegions, align_up};
use cranelift_exn::machine::{
    CallInterrupt, Fault, FaultKind, HostFunction, HostServices, Machine, dispatch_host_function,
};
use cranelift_exn::memory::Memory;
use unicorn_engine::unicorn_const::{HookType, MemType, Prot, TlbType, uc_error};
use unicorn_engine::{UcHookId, Unicorn};

use crate::arch::{self, EmuArch};
use crate::core::{self, Core};
use crate::memory::EmulatedMemory;

/// Host-function page: one 16-byte slot per [`HostFunction`], filled with
/// undefined instructions; a code hook on the slots runs the host side.
/// It and code are the mappings without write permission (see
/// [`writable`]).
const HOST_BASE: u64 = 0x1000_0000;
const HOST_SIZE: u64 = 0x1_0000;
/// The size of a host-function slot; [`HostFunction::index`] numbers them.
const HOST_SLOT: u64 = 16;
/// Where the entry trampoline returns to; reaching it ends a call.
const HALT_ADDRESS: u64 = HOST_BASE + 0x8000;

/// The `call_entry` buffer is copied here.
const BUFFER_BASE: u64 = 0x2000_0000;
const BUFFER_INITIAL: u64 = 0x1_0000;
/// The buffer area ends 1 MiB below the stack, unmapped.
const BUFFER_MAX: u64 = 0x0f00_0000;

const STACK_BASE: u64 = 0x3000_0000;
const STACK_SIZE: u64 = 0x80_0000;
/// The stack pointer starts 256 bytes below the end of the stack mapping.
const STACK_TOP: u64 = STACK_BASE + STACK_SIZE - 0x100;
/// An access this far below the stack is a stack overflow: the stack's guard
/// page. Code compiled with stack probes (what [`cranelift_exn::Module`]
/// compiles) touches it before anything further down; an access further
/// down (the 1 MiB below the stack is never mapped) is a wild one, as
/// natively a write into a neighbouring thread's stack would be.
const STACK_GUARD: u64 = 0x1000;
/// The frame of an outermost call: its buffer in the buffer area, its stack
/// at the top of the stack.
const OUTERMOST: CallFrame = CallFrame {
    buffer: BUFFER_BASE,
    stack_top: STACK_TOP,
};

/// Code is bump-allocated from here, mapped read-execute in chunks.
const CODE_BASE: u64 = 0x4000_0000;
const CODE_LIMIT: u64 = 0x8000_0000;
const CODE_CHUNK: u64 = 0x10_0000;

/// Data objects ([`Machine::allocate_data`]) are bump-allocated from here,
/// each in its own pages so that read-only ones can be protected; within
/// PC-relative reach (±2 GiB) of all code.
const DATA_BASE: u64 = 0x8000_0000;
const DATA_LIMIT: u64 = 0xA000_0000;
const DATA_PAGE: u64 = 0x1000;

/// The default bound on instructions per [`Machine::call_entry`].
pub const DEFAULT_INSTRUCTION_LIMIT: u64 = 2_000_000_000;

/// Where an [`EmulatedMachine`] puts things. Addresses below
/// [`Layout::host_functions`] are never mapped, so any access there faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Start of the host-function page; `host_function_address` values are
    /// inside it.
    pub host_functions: u64,
    /// The return address `call_entry` gives the entry trampoline.
    pub halt: u64,
    /// Where `call_entry` copies its buffer.
    pub buffer: u64,
    /// Lowest stack address.
    pub stack_base: u64,
    /// Size of the stack mapping in bytes.
    pub stack_size: u64,
    /// The 16-byte-aligned address the stack pointer is derived from at each
    /// call (x86-64: minus the pushed return address; s390x: minus the
    /// 160-byte register save area).
    pub stack_top: u64,
    /// Start of the code region.
    pub code_base: u64,
}

/// An invalid memory access recorded by the memory hook.
#[derive(Clone, Copy, Debug)]
struct MemFault {
    kind: MemType,
    address: u64,
    size: usize,
}

impl fmt::Display for MemFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            MemType::READ_UNMAPPED => "read of unmapped memory",
            MemType::WRITE_UNMAPPED => "write to unmapped memory",
            MemType::FETCH_UNMAPPED => "instruction fetch from unmapped memory",
            MemType::READ_PROT => "read of read-protected memory",
            MemType::WRITE_PROT => "write to write-protected memory",
            MemType::FETCH_PROT => "instruction fetch from non-executable memory",
            _ => "invalid memory access",
        };
        write!(f, "{what}: {} bytes at {:#x}", self.size, self.address)
    }
}

/// State shared between the machine and its hooks (unicorn's per-engine
/// data).
#[derive(Default)]
pub(crate) struct HookState {
    /// The `host` argument of the running [`Machine::call_entry`], with its
    /// lifetime erased.
    ///
    /// Safety argument: it is set from a `&mut dyn HostServices` at the start
    /// of `call_entry`'s emulation and reset to `None` (by [`HostGuard`]'s
    /// `Drop`, so on every path) before `call_entry` returns, i.e. strictly
    /// within that borrow. It is dereferenced only by the host-call hook,
    /// which unicorn runs only inside `emu_start`, on the calling thread (the
    /// engine is `!Send`), while `call_entry` is blocked in `emu_start` and
    /// does not touch `host` itself — so the `&mut` it recreates is the only
    /// live access. Host services get only an [`EmulatedMemory`], never the
    /// machine, so they cannot re-enter `call_entry`.
    host: Option<NonNull<dyn HostServices>>,
    /// The target address of the running call's buffer.
    buffer: u64,
    /// What the running call observes of interrupts (lifetime erased as for
    /// `host`, under the same argument).
    interrupt: Option<CallInterrupt<'static>>,
    /// The pc of the block where the block hook stopped an interrupted
    /// call.
    interrupted: Option<u64>,
    /// An error raised inside a hook; it stopped the emulation and wins over
    /// whatever unicorn reports.
    error: Option<Error>,
    /// The last invalid memory access, for the error message.
    fault: Option<MemFault>,
    /// The pc of a CPU exception the interrupt hook did not handle: a fault
    /// to deliver or report.
    exception: Option<u64>,
    /// The pc of an intercepted instruction whose data access faults (see
    /// `EmuArch::faulting_access`); `fault` describes the access.
    access: Option<u64>,
}

/// Restores [`HookState::host`] and the buffer address of the enclosing
/// call (none for the outermost) when dropped.
struct HostGuard {
    uc: Unicorn<'static, HookState>,
    host: Option<NonNull<dyn HostServices>>,
    buffer: u64,
    interrupt: Option<CallInterrupt<'static>>,
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        let (host, buffer, interrupt) = (self.host, self.buffer, self.interrupt);
        let state = self.uc.get_data_mut();
        state.host = host;
        state.buffer = buffer;
        state.interrupt = interrupt;
    }
}

/// A [`Machine`] that runs aarch64, riscv64, s390x or x86-64 code in
/// unicorn-engine.
///
/// Memory ([`Layout`]): a host-function page, a buffer area for
/// [`Machine::call_entry`], an 8 MiB stack (whose guard page is the 4 KiB
/// below it) and a code region that grows in 1 MiB read-execute chunks,
/// written only by [`EmulatedMachine::install_code`], once per
/// [`Machine::allocate_code`] region. Calls to [`HostFunction`] addresses are
/// intercepted by a code hook and dispatched to the [`HostServices`] given to
/// `call_entry`, which then returns to the caller as a C function would.
/// Instructions unicorn executes wrongly are found in code as it is
/// installed and carried out by the machine from a code hook on each of
/// their addresses ([`EmulatedMachine::intercepted`], see the crate docs).
///
/// A call whose [`HostServices::interrupt`] says it has been interrupted is
/// stopped at the next basic block of JIT code (see
/// [`cranelift_exn::interrupt`]).
///
/// Each call runs at most [`DEFAULT_INSTRUCTION_LIMIT`] instructions unless
/// changed with [`EmulatedMachine::set_instruction_limit`]; running out, any
/// emulator fault and any host-service error end the call with an `Err`.
///
/// The machine is not `Send`: unicorn engines stay on the thread that
/// created them.
pub struct EmulatedMachine {
    uc: Unicorn<'static, HookState>,
    emu: &'static dyn EmuArch,
    /// Every `allocate_code` region.
    code: CodeRegions,
    /// End of the mapped code region.
    code_end: u64,
    /// The `allocate_data` regions.
    data: DataRegions,
    /// Size of the mapped buffer area.
    buffer_size: Cell<u64>,
    instruction_limit: Option<u64>,
    timeout: Option<Duration>,
    /// The CPU state right after set-up (see `EmuArch::resets_after_fault`).
    clean: unicorn_engine::Context,
    /// The code hook on each installed instruction the machine carries out
    /// itself (`EmuArch::intercepts`), by address.
    intercepts: BTreeMap<u64, UcHookId>,
}

impl fmt::Debug for EmulatedMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedMachine")
            .field("arch", &self.emu.arch())
            .field("cpu_model", &self.emu.cpu_model().name)
            .field("code", &(CODE_BASE..self.code.next()))
            .field("instruction_limit", &self.instruction_limit)
            .field("timeout", &self.timeout)
            .field("intercepted_instructions", &self.intercepts.len())
            .finish_non_exhaustive()
    }
}

fn engine_error(arch: Arch, what: &str, e: uc_error) -> Error {
    Error::Machine(format!("{arch}: {what}: {e} ({e:?})"))
}

fn map_error(arch: Arch, address: u64, size: u64, e: uc_error) -> Error {
    Error::Memory {
        address,
        message: format!("{arch}: mapping {size:#x} bytes: {e} ({e:?})"),
    }
}

impl EmulatedMachine {
    /// A fresh machine for `arch`, with its CPU model selected and set up to
    /// run Cranelift code.
    pub fn new(arch: Arch) -> Result<Self, Error> {
        let emu = arch::for_arch(arch);
        let (uc_arch, mode) = emu.unicorn_mode();
        let mut uc = Unicorn::new_with_data(uc_arch, mode, HookState::default())
            .map_err(|e| engine_error(arch, "opening unicorn", e))?;
        let model = emu.cpu_model();
        uc.ctl_set_cpu_model(model.id)
            .map_err(|e| engine_error(arch, &format!("selecting CPU model {}", model.name), e))?;
        if emu.virtual_tlb() {
            uc.ctl_set_tlb_type(TlbType::VIRTUAL)
                .map_err(|e| engine_error(arch, "selecting the virtual TLB", e))?;
        }

        for (base, size, prot) in [
            (HOST_BASE, HOST_SIZE, Prot::READ | Prot::EXEC),
            (BUFFER_BASE, BUFFER_INITIAL, Prot::READ | Prot::WRITE),
            (STACK_BASE, STACK_SIZE, Prot::READ | Prot::WRITE),
        ] {
            uc.mem_map(base, size, prot)
                .map_err(|e| map_error(arch, base, size, e))?;
        }
        let fill = emu.trap_fill();
        let page: Vec<u8> = fill
            .iter()
            .copied()
            .cycle()
            .take(HOST_SIZE as usize)
            .collect();
        uc.mem_write(HOST_BASE, &page).map_err(|e| Error::Memory {
            address: HOST_BASE,
            message: format!("{arch}: filling the host-function page: {e}"),
        })?;

        emu.setup(&mut Core::new(&mut uc, emu))?;

        let slots_end = HOST_BASE + HOST_SLOT * HostFunction::ALL.len() as u64 - 1;
        uc.add_code_hook(HOST_BASE, slots_end, move |uc, address, _size| {
            on_host_call(uc, emu, address);
        })
        .map_err(|e| engine_error(arch, "adding the host-function hook", e))?;
        // begin > end: every address.
        uc.add_mem_hook(
            HookType::MEM_INVALID,
            1,
            0,
            |uc, kind, address, size, _value| {
                uc.get_data_mut().fault = Some(MemFault {
                    kind,
                    address,
                    size,
                });
                false
            },
        )
        .map_err(|e| engine_error(arch, "adding the memory-fault hook", e))?;
        // begin > end: every block. Stops interrupted calls.
        uc.add_block_hook(1, 0, move |uc, address, _size| on_block(uc, emu, address))
            .map_err(|e| engine_error(arch, "adding the interrupt hook", e))?;
        if emu.hooks_exceptions() {
            uc.add_intr_hook(move |uc, intno| on_exception(uc, emu, intno))
                .map_err(|e| engine_error(arch, "adding the exception hook", e))?;
        }

        let clean = uc
            .context_init()
            .map_err(|e| engine_error(arch, "saving the initial CPU state", e))?;
        Ok(EmulatedMachine {
            clean,
            uc,
            emu,
            code: CodeRegions::new(arch, CODE_BASE, CODE_LIMIT),
            code_end: CODE_BASE,
            data: DataRegions::new(arch, DATA_BASE, DATA_LIMIT, DATA_PAGE),
            buffer_size: Cell::new(BUFFER_INITIAL),
            instruction_limit: Some(DEFAULT_INSTRUCTION_LIMIT),
            timeout: None,
            intercepts: BTreeMap::new(),
        })
    }

    /// The addresses of the installed instructions this machine carries out
    /// itself instead of unicorn (which executes them wrongly), in order:
    /// each has a code hook. Addresses found in data rather than code may be
    /// among them; their hooks never run.
    pub fn intercepted(&self) -> Vec<u64> {
        self.intercepts.keys().copied().collect()
    }

    /// Replace the intercept hooks of `base..base + bytes.len()` with those
    /// of `bytes`, the code now there.
    fn hook_intercepts(&mut self, base: u64, bytes: &[u8]) -> Result<(), Error> {
        let arch = self.emu.arch();
        let end = base + bytes.len() as u64;
        let stale: Vec<u64> = self.intercepts.range(base..end).map(|(&a, _)| a).collect();
        for address in stale {
            if let Some(id) = self.intercepts.remove(&address) {
                self.uc
                    .remove_hook(id)
                    .map_err(|e| engine_error(arch, "removing an instruction hook", e))?;
            }
        }
        let emu = self.emu;
        for offset in emu.intercepts(bytes) {
            let address = base + offset as u64;
            let id = self
                .uc
                .add_code_hook(address, address, move |uc, address, _size| {
                    on_intercept(uc, emu, address);
                })
                .map_err(|e| engine_error(arch, "adding an instruction hook", e))?;
            self.intercepts.insert(address, id);
        }
        Ok(())
    }

    /// The unicorn CPU model this machine emulates (see the crate docs).
    pub fn cpu_model(&self) -> &'static str {
        self.emu.cpu_model().name
    }

    /// Where this machine puts things.
    pub fn layout(&self) -> Layout {
        Layout {
            host_functions: HOST_BASE,
            halt: HALT_ADDRESS,
            buffer: BUFFER_BASE,
            stack_base: STACK_BASE,
            stack_size: STACK_SIZE,
            stack_top: STACK_TOP,
            code_base: CODE_BASE,
        }
    }

    /// The bound on instructions executed per `call_entry`; `None` means
    /// unbounded.
    pub fn instruction_limit(&self) -> Option<u64> {
        self.instruction_limit
    }

    /// Bound the instructions executed per `call_entry` (`None`: unbounded;
    /// `Some(0)` behaves as `Some(1)`). Exceeding it makes the call fail.
    pub fn set_instruction_limit(&mut self, limit: Option<u64>) {
        self.instruction_limit = limit;
    }

    /// The wall-clock bound per `call_entry`; `None` (the default) means
    /// unbounded.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Bound the wall-clock time per `call_entry` (microsecond resolution).
    /// Exceeding it makes the call fail.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Read a register: integer registers whole, float registers' low 64
    /// bits.
    pub fn read_reg(&self, reg: Reg) -> Result<u64, Error> {
        core::read_reg(&self.uc, self.emu, reg)
    }

    /// Write a register (a float register's low 64 bits; the rest of the
    /// vector register is kept).
    pub fn write_reg(&mut self, reg: Reg, value: u64) -> Result<(), Error> {
        core::write_reg(&mut self.uc, self.emu, reg, value)
    }

    /// The program counter.
    pub fn pc(&self) -> Result<u64, Error> {
        core::read_pc(&self.uc, self.emu)
    }

    /// Set the program counter.
    pub fn set_pc(&mut self, pc: u64) -> Result<(), Error> {
        core::write_pc(&mut self.uc, self.emu, pc)
    }

    /// The machine's memory.
    pub fn memory(&mut self) -> EmulatedMemory<'_> {
        let endianness = self.emu.arch().endianness();
        EmulatedMemory::new(&mut self.uc, endianness)
    }

    /// Make the buffer area at least `len` bytes.
    fn reserve_buffer(&self, len: usize) -> Result<(), Error> {
        let arch = self.emu.arch();
        let len = len as u64;
        if len <= self.buffer_size.get() {
            return Ok(());
        }
        let mut uc = self.uc.clone();
        let size = align_up(len, BUFFER_INITIAL)
            .filter(|&size| size <= BUFFER_MAX)
            .ok_or_else(|| Error::Memory {
                address: BUFFER_BASE,
                message: format!(
                    "{arch}: call buffer of {len:#x} bytes exceeds the {BUFFER_MAX:#x}-byte area"
                ),
            })?;
        let old = self.buffer_size.get();
        if old > 0 {
            uc.mem_unmap(BUFFER_BASE, old)
                .map_err(|e| map_error(arch, BUFFER_BASE, old, e))?;
            self.buffer_size.set(0);
        }
        uc.mem_map(BUFFER_BASE, size, Prot::READ | Prot::WRITE)
            .map_err(|e| map_error(arch, BUFFER_BASE, size, e))?;
        self.buffer_size.set(size);
        Ok(())
    }

    /// Run from `entry` until the halt address, dispatching host calls to
    /// `host` and delivering faults it accepts to the entry trampoline whose
    /// buffer is at `buffer`.
    fn run(&self, entry: u64, buffer: u64, host: &mut dyn HostServices) -> Result<(), Error> {
        let arch = self.emu.arch();
        let mut uc = self.uc.clone();
        // SAFETY: lifetime erasure only, as for `host_ptr` below.
        let interrupt: Option<CallInterrupt<'static>> =
            unsafe { std::mem::transmute(host.interrupt()) };
        let host_ptr = NonNull::from(&mut *host);
        // SAFETY: only the trait object's lifetime bound changes (same
        // layout); see `HookState::host` for why the pointer is never used
        // after the borrow ends.
        let host_ptr = unsafe {
            std::mem::transmute::<NonNull<dyn HostServices + '_>, NonNull<dyn HostServices>>(
                host_ptr,
            )
        };
        let guard = {
            let state = uc.get_data_mut();
            let guard = HostGuard {
                uc: self.uc.clone(),
                host: state.host.replace(host_ptr),
                buffer: std::mem::replace(&mut state.buffer, buffer),
                interrupt: std::mem::replace(&mut state.interrupt, interrupt),
            };
            state.interrupted = None;
            state.error = None;
            state.fault = None;
            state.exception = None;
            state.access = None;
            guard
        };
        let count = self
            .instruction_limit
            .map_or(0, |n| usize::try_from(n.max(1)).unwrap_or(usize::MAX));
        let timeout = self.timeout.map_or(0, |t| {
            u64::try_from(t.as_micros()).unwrap_or(u64::MAX).max(1)
        });
        let mut start = entry;
        let began = std::time::Instant::now();
        let result = loop {
            let outcome = uc.emu_start(start, HALT_ADDRESS, timeout, count);
            let state = uc.get_data_mut();
            let hook_error = state.error.take();
            let mem_fault = state.fault.take();
            let exception = state.exception.take();
            let access = state.access.take();
            let interrupted = state.interrupted.take();
            if let Some(error) = hook_error {
                break Err(error);
            }
            if interrupted.is_some() {
                // The services accepted the interrupt (see `on_block`).
                start = self.redirect_to_entry(&mut uc, buffer)?;
                continue;
            }
            let mut pc = core::read_pc(&uc, self.emu)?;
            if outcome == Err(uc_error::EXCEPTION) {
                pc = self.emu.exception_pc(pc);
                core::write_pc(&mut uc, self.emu, pc)?;
            }
            let kind = match (outcome, exception.or(access)) {
                (_, Some(at)) if access.is_some() => {
                    pc = at;
                    Some(FaultKind::MemoryAccess)
                }
                (_, Some(at)) => {
                    pc = at;
                    Some(FaultKind::IllegalInstruction)
                }
                (Ok(()), None) if pc == HALT_ADDRESS => break Ok(()),
                (Ok(()), None) => {
                    // Unicorn does not say which limit stopped it.
                    let why = match (self.timeout, self.instruction_limit) {
                        (Some(t), _) if began.elapsed() >= t => {
                            format!("reached its timeout of {} s", t.as_secs_f64())
                        }
                        (_, Some(n)) => format!("reached its instruction limit ({n} instructions)"),
                        (_, None) => "stopped early".to_string(),
                    };
                    break Err(Error::Machine(format!(
                        "{arch}: emulation stopped at pc {pc:#x} before the entry returned: {why}"
                    )));
                }
                (Err(e), None) => fault_kind(e),
            };
            // The faulting frame's frame-pointer value: the frame pointer,
            // or on s390x the back-chain word at the stack pointer; when that
            // is unreadable (a stack overflow faulting on the prologue's
            // back-chain store), the register holding the value stored.
            let fp = match arch.spec().frame_pointer() {
                Some(fp) => core::read_reg(&uc, self.emu, fp).ok(),
                None => core::read_reg(&uc, self.emu, arch.spec().stack_pointer())
                    .ok()
                    .and_then(|sp| {
                        EmulatedMemory::new(&mut uc, arch.endianness())
                            .read_u64(sp)
                            .ok()
                    })
                    .or_else(|| {
                        let reg = arch.spec().prologue_frame_value()?;
                        core::read_reg(&uc, self.emu, reg).ok()
                    }),
            };
            // A fetch from an address without code counts as the JIT code's
            // only when the call that got there came from installed code;
            // its backtrace starts at that caller.
            let mut caller = None;
            let kind = match kind {
                Some(FaultKind::InstructionFetch) => {
                    caller = self
                        .return_address(&mut uc)
                        .filter(|&ra| self.in_installed_code(ra));
                    (caller.is_some() && !self.in_installed_code(pc))
                        .then_some(FaultKind::InstructionFetch)
                }
                kind => kind,
            };
            let fault = kind.map(|kind| {
                let address = mem_fault
                    .filter(|_| kind != FaultKind::InstructionFetch)
                    .map(|f| f.address);
                let overflow = kind == FaultKind::MemoryAccess
                    && address.is_some_and(|a| (STACK_BASE - STACK_GUARD..STACK_BASE).contains(&a));
                Fault {
                    pc,
                    kind: if overflow {
                        FaultKind::StackOverflow
                    } else {
                        kind
                    },
                    address,
                    fp,
                    caller,
                }
            });
            // Before the entry trampoline has recorded its handler there is
            // nowhere to deliver a fault to.
            let recorded =
                EntryHandler::is_recorded(&EmulatedMemory::new(&mut uc, arch.endianness()), buffer);
            if let Some(fault) = fault
                && recorded
                && host.fault(&fault, &EmulatedMemory::new(&mut uc, arch.endianness()))
            {
                if self.emu.resets_after_fault() {
                    uc.context_restore(&self.clean)
                        .map_err(|e| engine_error(arch, "resetting the CPU after a fault", e))?;
                }
                start = self.redirect_to_entry(&mut uc, buffer)?;
                continue;
            }
            let detail = mem_fault.map(|f| format!("; {f}")).unwrap_or_default();
            let what = match outcome {
                Err(e) => format!("{e} ({e:?})"),
                Ok(()) => "CPU exception".to_string(),
            };
            break Err(Error::Machine(format!(
                "{arch}: emulation failed at pc {pc:#x}: {what}{detail}"
            )));
        };
        drop(guard);
        result
    }

    /// Point the CPU at the entry trampoline's handler recorded in the
    /// buffer at `buffer`; returns the handler's address.
    fn redirect_to_entry(
        &self,
        uc: &mut Unicorn<'static, HookState>,
        buffer: u64,
    ) -> Result<u64, Error> {
        let arch = self.emu.arch();
        let handler = EntryHandler::read(&EmulatedMemory::new(uc, arch.endianness()), buffer)?;
        let mut core = Core::new(uc, self.emu);
        for (reg, value) in handler.registers(arch) {
            core.write_reg(reg, value)?;
        }
        core.set_pc(handler.pc)?;
        Ok(handler.pc)
    }
}

/// The fault a unicorn error stands for, if it can be delivered as a trap.
fn fault_kind(e: uc_error) -> Option<FaultKind> {
    match e {
        uc_error::READ_UNMAPPED
        | uc_error::WRITE_UNMAPPED
        | uc_error::READ_PROT
        | uc_error::WRITE_PROT
        | uc_error::READ_UNALIGNED
        | uc_error::WRITE_UNALIGNED => Some(FaultKind::MemoryAccess),
        uc_error::INSN_INVALID | uc_error::EXCEPTION => Some(FaultKind::IllegalInstruction),
        uc_error::FETCH_UNMAPPED | uc_error::FETCH_PROT => Some(FaultKind::InstructionFetch),
        _ => None,
    }
}

/// The code hook on the host-function slots.
fn on_host_call(uc: &mut Unicorn<'_, HookState>, emu: &'static dyn EmuArch, address: u64) {
    if let Err(error) = dispatch_host_call(uc, emu, address) {
        uc.get_data_mut().error = Some(error);
        // Stopping can only fail if the engine is not running, and it is.
        let _ = uc.emu_stop();
    }
}

/// The block hook: stop an interrupted call at a block of its JIT code, once
/// its entry trampoline has recorded the handler to resume at.
fn on_block(uc: &mut Unicorn<'_, HookState>, emu: &'static dyn EmuArch, address: u64) {
    let state = uc.get_data();
    let (Some(interrupt), Some(host)) = (state.interrupt, state.host) else {
        return;
    };
    if !interrupt.is_interrupted() {
        return;
    }
    let buffer = state.buffer;
    let recorded = EntryHandler::is_recorded(
        &EmulatedMemory::new(&mut *uc, emu.arch().endianness()),
        buffer,
    );
    let fault = Fault {
        caller: None,
        pc: address,
        kind: FaultKind::Interrupted,
        address: None,
        fp: None,
    };
    // SAFETY: `host` is the live `&mut dyn HostServices` of the running
    // `call_entry`; see `HookState::host`.
    if recorded
        && unsafe { &mut *host.as_ptr() }.fault(
            &fault,
            &EmulatedMemory::new(&mut *uc, emu.arch().endianness()),
        )
    {
        let state = uc.get_data_mut();
        state.interrupted = Some(address);
        // Once: the entry's handler runs to its end.
        state.interrupt = None;
        // Stopping can only fail if the engine is not running, and it is.
        let _ = uc.emu_stop();
    }
}

/// The interrupt hook, on architectures with instructions to emulate: carry
/// out the faulting instruction if it is one unicorn lacks, else stop with
/// the exception.
fn on_exception(uc: &mut Unicorn<'_, HookState>, emu: &'static dyn EmuArch, _intno: u32) {
    let outcome = core::read_pc(&*uc, emu).and_then(|reported| {
        let pc = emu.exception_pc(reported);
        let mut core = Core::new(&mut *uc, emu);
        let next = emu.emulate_missing(&mut core, pc)?;
        match next {
            Some(next) => core.set_pc(next),
            None => {
                // A real exception: a fault the run loop delivers or reports,
                // with the CPU left at the faulting instruction.
                core.set_pc(pc)?;
                uc.get_data_mut().exception = Some(pc);
                let _ = uc.emu_stop();
                Ok(())
            }
        }
    });
    if let Err(error) = outcome {
        uc.get_data_mut().error = Some(error);
        // Stopping can only fail if the engine is not running, and it is.
        let _ = uc.emu_stop();
    }
}

/// Whether the program may store `len` bytes at `address`, given that they
/// are mapped: every mapping but the host-function page and code is
/// writable (the stack and the buffer area, see `EmulatedMachine::new`,
/// `reserve_buffer`, `allocate_code`).
fn writable(address: u64, len: u64) -> bool {
    let end = address.saturating_add(len);
    let outside = |base: u64, limit: u64| end <= base || address >= limit;
    outside(HOST_BASE, HOST_BASE + HOST_SIZE) && outside(CODE_BASE, CODE_LIMIT)
}

/// The code hook on an instruction the machine carries out itself: do so
/// and continue after it, or let unicorn execute it (see
/// `EmuArch::carry_out`).
fn on_intercept(uc: &mut Unicorn<'_, HookState>, emu: &'static dyn EmuArch, address: u64) {
    let outcome = emu
        .faulting_access(&mut Core::new(&mut *uc, emu), address, &writable)
        .and_then(|access| match access {
            // Deliver the fault the instruction raises on the hardware.
            Some(access) => {
                let kind = match (access.write, access.mapped) {
                    (false, _) => MemType::READ_UNMAPPED,
                    (true, false) => MemType::WRITE_UNMAPPED,
                    (true, true) => MemType::WRITE_PROT,
                };
                let state = uc.get_data_mut();
                state.fault = Some(MemFault {
                    kind,
                    address: access.address,
                    size: access.size,
                });
                state.access = Some(address);
                // Stopping can only fail if the engine is not running, and it is.
                let _ = uc.emu_stop();
                Ok(())
            }
            None => {
                let mut core = Core::new(&mut *uc, emu);
                emu.carry_out(&mut core, address, &writable)
                    .and_then(|next| next.map_or(Ok(()), |next| core.set_pc(next)))
            }
        });
    if let Err(error) = outcome {
        uc.get_data_mut().error = Some(error);
        // Stopping can only fail if the engine is not running, and it is.
        let _ = uc.emu_stop();
    }
}

/// Run the host side of the host function at `address`, then return to its
/// caller.
fn dispatch_host_call(
    uc: &mut Unicorn<'_, HookState>,
    emu: &'static dyn EmuArch,
    address: u64,
) -> Result<(), Error> {
    let arch = emu.arch();
    let offset = address.wrapping_sub(HOST_BASE);
    let function = HostFunction::ALL
        .get((offset / HOST_SLOT) as usize)
        .filter(|_| offset.is_multiple_of(HOST_SLOT))
        .copied()
        .ok_or_else(|| {
            Error::Machine(format!(
                "{arch}: jump to {address:#x}, inside the host-function page but not to a host function"
            ))
        })?;
    let (host, buffer) = {
        let state = uc.get_data();
        (state.host, state.buffer)
    };
    let host = host.ok_or_else(|| {
        Error::Machine(format!(
            "{arch}: host function {function:?} called outside call_entry"
        ))
    })?;
    let spec = arch.spec();
    let args = host_arguments(arch, |reg| core::read_reg(&*uc, emu, reg))?;

    // SAFETY: `host` is the live `&mut dyn HostServices` of the running
    // `call_entry`; see `HookState::host`.
    let host = unsafe { &mut *host.as_ptr() };
    let result = dispatch_host_function(
        arch,
        function,
        host,
        &mut EmulatedMemory::new(&mut *uc, arch.endianness()),
        args,
        buffer,
    )?;
    let mut core = Core::new(uc, emu);
    if let Some(value) = result {
        core.write_reg(spec.result_register(), value)?;
    }
    emu.return_from_host(&mut core)
}

impl EmulatedMachine {
    /// Whether `address` lies in code installed on this machine.
    fn in_installed_code(&self, address: u64) -> bool {
        self.code.is_installed_code(address)
    }

    /// Where the call that reached the current pc returns to: the link
    /// register, or on x86-64 the word `call` pushed at the stack pointer.
    fn return_address(&self, uc: &mut Unicorn<'_, HookState>) -> Option<u64> {
        let spec = self.emu.arch().spec();
        match spec.link_register() {
            Some(lr) => core::read_reg(uc, self.emu, lr).ok(),
            None => {
                let sp = core::read_reg(uc, self.emu, spec.stack_pointer()).ok()?;
                EmulatedMemory::new(uc, self.emu.arch().endianness())
                    .read_u64(sp)
                    .ok()
            }
        }
    }

    /// [`Machine::install_code`], safe here: emulated code cannot reach
    /// host memory. Code is installed once per [`Machine::allocate_code`]
    /// region, at its start; it is mapped read-execute (the emulated
    /// program cannot write it).
    pub fn install_code(&mut self, base: u64, bytes: &[u8]) -> Result<(), Error> {
        let arch = self.emu.arch();
        self.code.check_install(base, bytes.len())?;
        self.code.mark_installed(base);
        if bytes.is_empty() {
            return Ok(());
        }
        // Host writes ignore the mapping's protection: code stays read-execute
        // for the emulated program.
        self.memory().write(base, bytes)?;
        self.hook_intercepts(base, bytes)?;
        // Drop any translation of the old bytes (instruction-cache coherence),
        // and of code translated before its instructions' hooks existed:
        // unicorn decides at translation time whether an instruction calls
        // its code hooks.
        let end = base + bytes.len() as u64;
        self.uc
            .ctl_remove_cache(base, end)
            .map_err(|e| engine_error(arch, "invalidating translated code", e))
    }

    /// [`Machine::call_entry`], safe here: emulated code reaches the host
    /// only through `host` and sees only the emulator's memory, so any
    /// bytes at `entry` end in values or an `Err`.
    pub fn call_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        let arch = self.emu.arch();
        let uc = self.uc.clone();
        if uc.get_data().host.is_none() {
            self.reserve_buffer(buffer.len())?;
            return self.call_at(entry, callee, buffer, OUTERMOST, host);
        }

        // A host function called back into JIT code: run the inner call on
        // the stack below the interrupted code, then put every register
        // back so the outer call continues where it was.
        let saved = uc
            .context_init()
            .map_err(|e| engine_error(arch, "saving registers for a nested call", e))?;
        let sp = core::read_reg(&uc, self.emu, arch.spec().stack_pointer())?;
        let nested = CallFrame::nested_below(arch, sp, buffer.len() as u64, STACK_BASE)?;
        let outcome = self.call_at(entry, callee, buffer, nested, host);
        uc.context_restore(&saved)
            .map_err(|e| engine_error(arch, "restoring registers after a nested call", e))?;
        outcome
    }

    /// Call `entry(callee, frame.buffer)` with the stack below
    /// `frame.stack_top`, `buffer` copied to `frame.buffer` and back.
    fn call_at(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        frame: CallFrame,
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        let arch = self.emu.arch();
        let [arg0, arg1, _] = argument_registers(arch)?;
        let mut uc = self.uc.clone();
        EmulatedMemory::new(&mut uc, arch.endianness()).write(frame.buffer, buffer)?;
        {
            let mut core = Core::new(&mut uc, self.emu);
            if let Some(fp) = arch.spec().frame_pointer() {
                core.write_reg(fp, 0)?;
            }
            self.emu.enter(&mut core, frame.stack_top, HALT_ADDRESS)?;
            core.write_reg(arg0, callee)?;
            core.write_reg(arg1, frame.buffer)?;
        }
        self.run(entry, frame.buffer, host)?;
        EmulatedMemory::new(&mut uc, arch.endianness()).read(frame.buffer, buffer)
    }
}

impl Machine for EmulatedMachine {
    fn arch(&self) -> Arch {
        self.emu.arch()
    }

    fn allocate_code(&mut self, size: usize) -> Result<u64, Error> {
        let arch = self.emu.arch();
        let (uc, code_end) = (&mut self.uc, &mut self.code_end);
        self.code.allocate(size, 16, |_start, end| {
            if end > *code_end {
                // `end` is within the region, so rounding it up cannot
                // overflow; the last chunk ends at the limit.
                let new_end = align_up(end, CODE_CHUNK).map_or(CODE_LIMIT, |e| e.min(CODE_LIMIT));
                let grow = new_end - *code_end;
                uc.mem_map(*code_end, grow, Prot::READ | Prot::EXEC)
                    .map_err(|e| map_error(arch, *code_end, grow, e))?;
                *code_end = new_end;
            }
            Ok(())
        })
    }

    fn allocate_data(&mut self, size: usize, align: u64) -> Result<u64, Error> {
        let arch = self.emu.arch();
        let uc = &mut self.uc;
        self.data.allocate(size, align, |start, len| {
            uc.mem_map(start, len, Prot::READ | Prot::WRITE)
                .map_err(|e| map_error(arch, start, len, e))
        })
    }

    fn install_data(&mut self, base: u64, bytes: &[u8], writable: bool) -> Result<(), Error> {
        let arch = self.emu.arch();
        self.data.check_install(base, bytes.len())?;
        self.memory().write(base, bytes)?;
        if !writable {
            // The object's pages: up to the next page boundary after it
            // (every allocation is whole pages).
            let len = self.data.pages(bytes.len());
            self.uc
                .mem_protect(base, len, Prot::READ)
                .map_err(|e| map_error(arch, base, len, e))?;
        }
        Ok(())
    }

    unsafe fn install_code(&mut self, base: u64, bytes: &[u8]) -> Result<(), Error> {
        EmulatedMachine::install_code(self, base, bytes)
    }

    fn host_function_address(&mut self, function: HostFunction) -> Result<u64, Error> {
        Ok(HOST_BASE + HOST_SLOT * function.index() as u64)
    }

    unsafe fn call_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        EmulatedMachine::call_entry(self, entry, callee, buffer, host)
    }
}
