//! [`QemuMachine`]: a [`Machine`] that is a QEMU user-mode process, driven
//! through QEMU's GDB stub.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Endianness, Reg};
use cranelift_exn::machine::entry::{CallFrame, EntryHandler, argument_registers, host_arguments};
use cranelift_exn::machine::regions::{CodeRegions, DataRegions, align_up};
use cranelift_exn::machine::{
    Fault, FaultKind, HostFunction, HostServices, Machine, dispatch_host_function,
};
use cranelift_exn::memory::Memory;

use crate::arch::{self, QemuArch};
use crate::elf::{self, Segment};
use crate::gdb::{Gdb, Stop, signal};

mod zcb;

/// The stub page: ELF headers, then (at [`STUB`]) the system-call stub, the
/// host-function slots and the halt address, all in a page filled with
/// faulting instructions, read-only and executable. Breakpoints on the
/// slots, on the halt address and after the system call stop the process.
const HOST_BASE: u64 = 0x1000_0000;
const HOST_SIZE: u64 = 0x1_0000;
/// File offset and address offset of the stub code.
const STUB_OFFSET: u64 = 0x1000;
const STUB_SIZE: u64 = 0x1000;
/// The system-call instruction.
const SYSCALL: u64 = HOST_BASE + STUB_OFFSET;
/// The host-function slots, 16 bytes each, numbered by
/// [`HostFunction::index`].
const SLOTS: u64 = HOST_BASE + STUB_OFFSET + 0x100;
const HOST_SLOT: u64 = 16;
/// Where the entry trampoline returns to; reaching it ends a call.
const HALT_ADDRESS: u64 = HOST_BASE + STUB_OFFSET + 0x800;

/// The outermost `call_entry` buffer is copied here.
const BUFFER_BASE: u64 = 0x2000_0000;
const BUFFER_SIZE: u64 = 0x100_0000;

const STACK_BASE: u64 = 0x3000_0000;
const STACK_SIZE: u64 = 0x80_0000;
/// The stack pointer starts 256 bytes below the end of the stack segment.
const STACK_TOP: u64 = STACK_BASE + STACK_SIZE - 0x100;
/// An access this far below the stack is a stack overflow (the image maps
/// nothing accessible there).
const STACK_GUARD: u64 = 0x10_0000;
/// The frame of an outermost call: its buffer in the buffer area, its stack
/// at the top of the stack segment.
const OUTERMOST: CallFrame = CallFrame {
    buffer: BUFFER_BASE,
    stack_top: STACK_TOP,
};

/// Code is bump-allocated from this segment, each region in pages of its
/// own: written once through the GDB stub, then made read-execute.
const CODE_BASE: u64 = 0x4000_0000;
const CODE_LIMIT: u64 = 0x6000_0000;

/// Data objects are bump-allocated from this read-write segment, each in
/// pages of its own so that read-only ones can be protected; within
/// PC-relative reach (±2 GiB) of all code.
const DATA_BASE: u64 = 0x8000_0000;
const DATA_LIMIT: u64 = 0xA000_0000;
const PAGE: u64 = 0x1000;

/// How long [`QemuMachine::new`] waits for QEMU's GDB stub.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Distinguishes the working directories of machines in one process.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A [`Machine`] that runs aarch64, riscv64, s390x or x86-64 code in a QEMU
/// user-mode process (`qemu-<arch>`, QEMU 7.2 or later), controlled through
/// QEMU's GDB stub over a Unix socket.
///
/// The process runs a static ELF image written by this crate: a stub page
/// (host-function slots, the halt address and a system-call instruction,
/// each stopped at by a breakpoint), a 16 MiB buffer area, an 8 MiB stack,
/// a 512 MiB code segment and a 512 MiB data segment, everything else
/// inaccessible. Host-function calls stop at their slot's breakpoint, run
/// the [`HostServices`] with a [`QemuMemory`] and return to the caller as a
/// C function would. `SIGSEGV`, `SIGBUS`, `SIGILL` and `SIGFPE` stops are
/// faults, delivered to the entry trampoline's handler when the services
/// accept them (the signal itself is discarded).
///
/// CPUs: x86_64 and aarch64 `max`, riscv64
/// `rv64,v=true,vlen=128,elen=64,Zfh=true,zbkb=true`, s390x QEMU's default (z15-class
/// on QEMU 7.2) — all newer than unicorn's.
pub struct QemuMachine {
    arch: &'static QemuArch,
    gdb: RefCell<Gdb>,
    child: Child,
    dir: PathBuf,
    /// Each [`Machine::allocate_code`] region.
    code: CodeRegions,
    /// The [`Machine::allocate_data`] regions.
    data: DataRegions,
    /// The buffer address of the innermost running `call_entry`.
    current: Cell<Option<u64>>,
    timeout: Option<Duration>,
}

impl fmt::Debug for QemuMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QemuMachine")
            .field("arch", &self.arch.arch)
            .field("program", &self.arch.program)
            .field("cpu", &self.arch.cpu)
            .field("pid", &self.child.id())
            .field("code", &(CODE_BASE..self.code.next()))
            .finish_non_exhaustive()
    }
}

/// The [`Memory`] of a [`QemuMachine`], read and written through the GDB
/// stub, words in the target's byte order. An inaccessible address is an
/// [`Error::Memory`], never a fault.
pub struct QemuMemory<'m> {
    gdb: &'m RefCell<Gdb>,
    endianness: Endianness,
}

impl Memory for QemuMemory<'_> {
    fn endianness(&self) -> Endianness {
        self.endianness
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        let result = self.gdb.borrow_mut().read_memory(addr, buf);
        result.map_err(|e| gdb_memory_error(addr, "reading", buf.len(), e))
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
        let result = self.gdb.borrow_mut().write_memory(addr, data);
        result.map_err(|e| gdb_memory_error(addr, "writing", data.len(), e))
    }
}

/// A GDB-stub memory access (`doing` such as `reading`) of `len` bytes at
/// `addr` that failed with `error`.
fn gdb_memory_error(addr: u64, doing: &str, len: usize, error: impl fmt::Display) -> Error {
    Error::Memory {
        address: addr,
        message: format!("{doing} {len} bytes through the GDB stub: {error}"),
    }
}

/// Whether `program` is an executable file in a `PATH` directory.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// An error of the GDB connection to `qa`'s process.
fn gdb_error(qa: &QemuArch, e: io::Error) -> Error {
    Error::Machine(format!("{}: GDB stub of `{}`: {e}", qa.arch, qa.program))
}

/// The name of GDB signal `sig`, for messages.
fn signal_name(sig: u8) -> String {
    match sig {
        signal::INT => "SIGINT".into(),
        signal::ILL => "SIGILL".into(),
        signal::TRAP => "SIGTRAP".into(),
        signal::FPE => "SIGFPE".into(),
        signal::BUS => "SIGBUS".into(),
        signal::SEGV => "SIGSEGV".into(),
        other => format!("GDB signal {other}"),
    }
}

impl QemuMachine {
    /// Whether `qemu-<arch>` is on `PATH`, so that [`QemuMachine::new`] can
    /// start it (what a runner's `auto` choice of machine asks).
    pub fn is_installed(arch: Arch) -> bool {
        on_path(arch::for_arch(arch).program)
    }

    /// Start `qemu-<arch>` on a fresh image and connect to its GDB stub.
    /// Fails with a message naming the program when it is not installed.
    ///
    /// On Linux the QEMU process is killed when the thread that called
    /// `new` ends (`PR_SET_PDEATHSIG`), so that no QEMU outlives a process
    /// that was killed; use the machine on that thread, or one that
    /// outlives it.
    pub fn new(arch: Arch) -> Result<Self, Error> {
        let qa = arch::for_arch(arch);
        if !on_path(qa.program) {
            return Err(Error::Machine(format!(
                "{arch}: `{}` is not on PATH; install QEMU user-mode emulation \
                 (Debian/Ubuntu: `apt-get install qemu-user`, which scripts/dev does)",
                qa.program
            )));
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("cranelift-exn-qemu-{}-{id}", std::process::id()));
        let io_error = |what: &str, e: io::Error| {
            Error::Machine(format!("{arch}: {what} in {}: {e}", dir.display()))
        };
        fs::create_dir_all(&dir).map_err(|e| io_error("creating the working directory", e))?;
        let image = dir.join("image");
        let socket = dir.join("gdb.sock");
        let log = dir.join("qemu.log");
        fs::write(&image, Self::image(qa)).map_err(|e| io_error("writing the ELF image", e))?;
        // QEMU loads only executable files.
        fs::set_permissions(&image, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("making the ELF image executable", e))?;
        let stderr = fs::File::create(&log).map_err(|e| io_error("creating the log", e))?;

        let mut command = Command::new(qa.program);
        if let Some(cpu) = qa.cpu {
            command.arg("-cpu").arg(cpu);
        }
        // A QEMU process must not outlive its machine's process: one killed
        // (a test runner's time limit) or crashed leaves no process behind.
        // Linux ties that to the thread that starts QEMU, see `new`.
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the closure calls only prctl,
            // which is async-signal-safe, and allocates nothing.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .arg("-g")
            .arg(&socket)
            .arg(&image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                let _ = fs::remove_dir_all(&dir);
                Error::Machine(format!("{arch}: starting `{}`: {e}", qa.program))
            })?;
        let gdb = match Self::connect(qa, &mut child, &socket, &log) {
            Ok(gdb) => gdb,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // From here on, dropping the machine ends the process and removes
        // the directory.
        let mut machine = QemuMachine {
            arch: qa,
            gdb: RefCell::new(gdb),
            child,
            dir,
            code: CodeRegions::new(arch, CODE_BASE, CODE_LIMIT),
            data: DataRegions::new(arch, DATA_BASE, DATA_LIMIT, PAGE),
            current: Cell::new(None),
            timeout: None,
        };
        machine.set_up()?;
        Ok(machine)
    }

    /// Wait for the stub's socket and speak to it.
    fn connect(qa: &QemuArch, child: &mut Child, socket: &Path, log: &Path) -> Result<Gdb, Error> {
        let arch = qa.arch;
        let started = Instant::now();
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(stream) => break stream,
                Err(e) if started.elapsed() < CONNECT_TIMEOUT => {
                    // Not listening yet, unless it already died.
                    if let Ok(Some(status)) = child.try_wait() {
                        let output = fs::read_to_string(log).unwrap_or_default();
                        return Err(Error::Machine(format!(
                            "{arch}: `{}` exited ({status}) before its GDB stub listened ({e}): {}",
                            qa.program,
                            output.trim()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    let output = fs::read_to_string(log).unwrap_or_default();
                    return Err(Error::Machine(format!(
                        "{arch}: no GDB stub at {} after {CONNECT_TIMEOUT:?}: {e}; {}",
                        socket.display(),
                        output.trim()
                    )));
                }
            }
        };
        Gdb::new(stream, child.id()).map_err(|e| {
            Error::Machine(format!(
                "{arch}: talking to `{}`'s GDB stub: {e}",
                qa.program
            ))
        })
    }

    /// The ELF image for `qa`.
    fn image(qa: &QemuArch) -> Vec<u8> {
        let mut stub: Vec<u8> = qa
            .trap_fill
            .iter()
            .copied()
            .cycle()
            .take(STUB_SIZE as usize)
            .collect();
        stub[..qa.syscall.len()].copy_from_slice(qa.syscall);
        let segment = |address, size, writable, executable| Segment {
            address,
            size,
            readable: true,
            writable,
            executable,
        };
        let segments = [
            segment(HOST_BASE, HOST_SIZE, false, true),
            segment(BUFFER_BASE, BUFFER_SIZE, true, false),
            segment(STACK_BASE, STACK_SIZE, true, false),
            segment(CODE_BASE, CODE_LIMIT - CODE_BASE, true, true),
            segment(DATA_BASE, DATA_LIMIT - DATA_BASE, true, false),
        ];
        elf::image(qa, &segments, &stub, STUB_OFFSET as usize, HALT_ADDRESS)
    }

    /// Check the process stopped at its start and set the breakpoints.
    fn set_up(&mut self) -> Result<(), Error> {
        let arch = self.arch.arch;
        let kind = self.arch.breakpoint_kind;
        let gdb = self.gdb.get_mut();
        let stop = gdb.stop_reason().map_err(|e| gdb_error(self.arch, e))?;
        if stop != Stop::Signal(signal::TRAP) {
            return Err(Error::Machine(format!(
                "{arch}: `{}` started in state {stop:?}, not stopped at its entry",
                self.arch.program
            )));
        }
        let mut breakpoints = vec![HALT_ADDRESS, SYSCALL + self.arch.syscall.len() as u64];
        breakpoints.extend((0..HostFunction::ALL.len() as u64).map(|i| SLOTS + HOST_SLOT * i));
        for address in breakpoints {
            gdb.insert_breakpoint(address, kind)
                .map_err(|e| Error::Machine(format!("{arch}: breakpoint at {address:#x}: {e}")))?;
        }
        Ok(())
    }

    fn gdb_error(&self, e: io::Error) -> Error {
        gdb_error(self.arch, e)
    }

    /// The QEMU program this machine runs.
    pub fn program(&self) -> &'static str {
        self.arch.program
    }

    /// The `-cpu` argument given to QEMU, if any.
    pub fn cpu(&self) -> Option<&'static str> {
        self.arch.cpu
    }

    /// The wall-clock bound per `call_entry`; `None` (the default) means
    /// unbounded.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Bound the wall-clock time of each `call_entry` (the time of host
    /// services included): past it the process is interrupted and the call
    /// fails.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The machine's memory.
    pub fn memory(&self) -> QemuMemory<'_> {
        QemuMemory {
            gdb: &self.gdb,
            endianness: self.arch.arch.endianness(),
        }
    }

    fn read_gdb_register(&self, number: usize) -> Result<u64, Error> {
        let bytes = self
            .gdb
            .borrow_mut()
            .read_register(number)
            .map_err(|e| self.gdb_error(e))?;
        let word: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
            Error::Machine(format!(
                "{}: GDB register {number} has {} bytes, not 8",
                self.arch.arch,
                bytes.len()
            ))
        })?;
        Ok(self.arch.arch.endianness().read_u64(word))
    }

    fn write_gdb_register(&self, number: usize, value: u64) -> Result<(), Error> {
        let bytes = self.arch.arch.endianness().write_u64(value);
        self.gdb
            .borrow_mut()
            .write_register(number, &bytes)
            .map_err(|e| self.gdb_error(e))
    }

    fn gdb_number(&self, reg: Reg) -> Result<usize, Error> {
        self.arch.gdb_register(reg).ok_or_else(|| {
            Error::Machine(format!(
                "{}: register {reg:?} is not an integer register this machine reaches",
                self.arch.arch
            ))
        })
    }

    /// Read an integer register.
    pub fn read_reg(&self, reg: Reg) -> Result<u64, Error> {
        self.read_gdb_register(self.gdb_number(reg)?)
    }

    /// Write an integer register.
    pub fn write_reg(&self, reg: Reg, value: u64) -> Result<(), Error> {
        self.write_gdb_register(self.gdb_number(reg)?, value)
    }

    /// The program counter.
    pub fn pc(&self) -> Result<u64, Error> {
        self.read_gdb_register(self.arch.pc)
    }

    /// Set the program counter.
    pub fn set_pc(&self, pc: u64) -> Result<(), Error> {
        self.write_gdb_register(self.arch.pc, pc)
    }

    /// Set the protection of the `len` bytes (whole pages) at `base` to
    /// `prot` (`PROT_*` bits) in the process.
    fn mprotect(&self, base: u64, len: u64, prot: u64) -> Result<(), Error> {
        let result = self.syscall(self.arch.sys_mprotect, &[base, len, prot])?;
        if result != 0 {
            return Err(Error::Memory {
                address: base,
                message: format!(
                    "{}: mprotect of {len:#x} bytes failed with errno {}",
                    self.arch.arch,
                    (result as i64).wrapping_neg()
                ),
            });
        }
        Ok(())
    }

    /// Run system call `number` with `args` in the process (through the
    /// stub's system-call instruction); returns its result (a negated errno
    /// on failure). Only between calls: it clobbers registers.
    fn syscall(&self, number: u64, args: &[u64]) -> Result<u64, Error> {
        let arch = self.arch.arch;
        self.write_gdb_register(self.arch.syscall_number, number)?;
        for (&reg, &value) in self.arch.syscall_args.iter().zip(args) {
            self.write_gdb_register(reg, value)?;
        }
        self.set_pc(SYSCALL)?;
        let stop = self
            .gdb
            .borrow_mut()
            .resume(Some(CONNECT_TIMEOUT))
            .map_err(|e| self.gdb_error(e))?;
        let pc = self.pc()?;
        let done = SYSCALL + self.arch.syscall.len() as u64;
        if stop != Stop::Signal(signal::TRAP) || pc != done {
            return Err(Error::Machine(format!(
                "{arch}: system call {number} stopped with {stop:?} at {pc:#x}"
            )));
        }
        self.read_gdb_register(self.arch.syscall_result)
    }

    /// Make the C function about to start at the next continue return to
    /// `return_address`, with its stack below `stack_top`.
    fn enter(&self, stack_top: u64, return_address: u64) -> Result<(), Error> {
        let arch = self.arch.arch;
        let spec = arch.spec();
        let sp = stack_top
            .checked_sub(self.arch.call_reserve)
            .ok_or_else(|| Error::Machine(format!("{arch}: stack top {stack_top:#x} too low")))?;
        match spec.link_register() {
            Some(lr) => {
                self.write_reg(spec.stack_pointer(), sp)?;
                self.write_reg(lr, return_address)?;
                if arch == Arch::S390x {
                    // The outermost frame's back chain is zero.
                    self.memory().write_u64(sp, 0)?;
                }
            }
            None => {
                // x86-64: as if `call` had pushed the return address onto a
                // 16-byte aligned stack.
                let sp = sp.checked_sub(8).ok_or_else(|| {
                    Error::Machine(format!("{arch}: stack top {stack_top:#x} too low"))
                })?;
                self.memory().write_u64(sp, return_address)?;
                self.write_reg(spec.stack_pointer(), sp)?;
            }
        }
        Ok(())
    }

    /// Leave a host function as its C `return` would.
    fn return_from_host(&self) -> Result<(), Error> {
        let spec = self.arch.arch.spec();
        match spec.link_register() {
            Some(lr) => self.set_pc(self.read_reg(lr)?),
            None => {
                let sp = self.read_reg(spec.stack_pointer())?;
                let target = self.memory().read_u64(sp)?;
                self.write_reg(spec.stack_pointer(), sp + 8)?;
                self.set_pc(target)
            }
        }
    }

    /// Run the host side of host function `function`, then return to its
    /// caller.
    fn dispatch_host_call(
        &self,
        function: HostFunction,
        buffer: u64,
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        let arch = self.arch.arch;
        let spec = arch.spec();
        let args = host_arguments(arch, |reg| self.read_reg(reg))?;
        let result =
            dispatch_host_function(arch, function, host, &mut self.memory(), args, buffer)?;
        if let Some(value) = result {
            self.write_reg(spec.result_register(), value)?;
        }
        self.return_from_host()
    }

    /// The host function whose slot is at `pc`.
    fn host_function_at(pc: u64) -> Option<HostFunction> {
        let offset = pc.checked_sub(SLOTS)?;
        if !offset.is_multiple_of(HOST_SLOT) {
            return None;
        }
        HostFunction::ALL
            .get((offset / HOST_SLOT) as usize)
            .copied()
    }

    /// Run from `entry` until the halt address, dispatching host calls to
    /// `host` and delivering faults it accepts to the entry trampoline whose
    /// buffer is at `buffer`.
    fn run(&self, entry: u64, buffer: u64, host: &mut dyn HostServices) -> Result<(), Error> {
        let arch = self.arch.arch;
        let spec = arch.spec();
        self.set_pc(entry)?;
        loop {
            let stop = self
                .gdb
                .borrow_mut()
                .resume(self.timeout)
                .map_err(|e| self.gdb_error(e))?;
            let sig = match stop {
                Stop::Signal(sig) => sig,
                Stop::Exited(status) => {
                    return Err(Error::Machine(format!(
                        "{arch}: the QEMU process exited with status {status}"
                    )));
                }
                Stop::Terminated(sig) => {
                    return Err(Error::Machine(format!(
                        "{arch}: the QEMU process was killed by {}",
                        signal_name(sig)
                    )));
                }
            };
            let pc = self.pc()?;
            // riscv64 Zcb, which QEMU 7.2 lacks, is carried out here.
            let sig = match sig {
                signal::ILL => match self.carry_out_zcb(pc)? {
                    zcb::Carried::Done => continue,
                    zcb::Carried::Faulted => signal::SEGV,
                    zcb::Carried::NotZcb => sig,
                },
                _ => sig,
            };
            let kind = match sig {
                signal::TRAP if pc == HALT_ADDRESS => return Ok(()),
                signal::TRAP => match Self::host_function_at(pc) {
                    Some(function) => {
                        self.dispatch_host_call(function, buffer, host)?;
                        continue;
                    }
                    None => {
                        return Err(Error::Machine(format!(
                            "{arch}: unexpected SIGTRAP at pc {pc:#x}"
                        )));
                    }
                },
                signal::ILL => FaultKind::IllegalInstruction,
                signal::FPE => FaultKind::Arithmetic,
                signal::SEGV | signal::BUS => FaultKind::MemoryAccess,
                other => {
                    return Err(Error::Machine(format!(
                        "{arch}: stopped by {} at pc {pc:#x}",
                        signal_name(other)
                    )));
                }
            };
            if (HOST_BASE..HOST_BASE + HOST_SIZE).contains(&pc) {
                return Err(Error::Machine(format!(
                    "{arch}: jump to {pc:#x}, inside the host-function page but not to a host function"
                )));
            }
            let pc = match sig {
                signal::ILL | signal::FPE if arch == Arch::S390x => self.s390x_trapping(pc),
                _ => pc,
            };
            let sp = self.read_reg(spec.stack_pointer())?;
            // The faulting frame's frame-pointer value: the frame pointer,
            // or on s390x the back-chain word at the stack pointer.
            let fp = match spec.frame_pointer() {
                Some(fp) => self.read_reg(fp).ok(),
                None => self.memory().read_u64(sp).ok(),
            };
            // QEMU 7.2's stub does not report the faulting data address;
            // a memory fault with the stack pointer at or below the stack's
            // lowest page is taken for a stack overflow.
            let overflow = kind == FaultKind::MemoryAccess
                && (STACK_BASE - STACK_GUARD..STACK_BASE + PAGE).contains(&sp);
            let fault = Fault {
                caller: None,
                pc,
                kind: if overflow {
                    FaultKind::StackOverflow
                } else {
                    kind
                },
                address: None,
                fp,
            };
            // Before the entry trampoline has recorded its handler there is
            // nowhere to deliver a fault to.
            let recorded = EntryHandler::is_recorded(&self.memory(), buffer);
            if recorded && host.fault(&fault, &self.memory()) {
                self.redirect_to_entry(buffer)?;
                continue;
            }
            return Err(Error::Machine(format!(
                "{arch}: {} at pc {pc:#x} ({kind:?})",
                signal_name(sig)
            )));
        }
    }

    /// The address of the s390x instruction a `SIGILL` or `SIGFPE` stop at
    /// `after` reports: QEMU, like the kernel, leaves the PSW after the
    /// trapping instruction. It is the one instruction of 2, 4 or 6 bytes
    /// ending at `after` whose first byte encodes that length; if that is
    /// ambiguous, the instruction's last byte (where Cranelift records an
    /// s390x trap site, see `IsaSpec::trap_record_skew`).
    fn s390x_trapping(&self, after: u64) -> u64 {
        let memory = self.memory();
        let starts: Vec<u64> = [2u64, 4, 6]
            .into_iter()
            .filter(|&len| {
                let mut first = [0u8];
                let start = after.wrapping_sub(len);
                memory.read(start, &mut first).is_ok()
                    && match first[0] >> 6 {
                        0 => 2,
                        1 | 2 => 4,
                        _ => 6,
                    } == len
            })
            .map(|len| after.wrapping_sub(len))
            .collect();
        match starts[..] {
            [start] => start,
            _ => after.wrapping_sub(1),
        }
    }

    /// Point the CPU at the entry trampoline's handler recorded in the
    /// buffer at `buffer`.
    fn redirect_to_entry(&self, buffer: u64) -> Result<(), Error> {
        let handler = EntryHandler::read(&self.memory(), buffer)?;
        for (reg, value) in handler.registers(self.arch.arch) {
            self.write_reg(reg, value)?;
        }
        self.set_pc(handler.pc)
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
        let arch = self.arch.arch;
        let spec = arch.spec();
        let [arg0, arg1, _] = argument_registers(arch)?;
        self.memory().write(frame.buffer, buffer)?;
        if let Some(fp) = spec.frame_pointer() {
            self.write_reg(fp, 0)?;
        }
        self.enter(frame.stack_top, HALT_ADDRESS)?;
        self.write_reg(arg0, callee)?;
        self.write_reg(arg1, frame.buffer)?;
        let outer = self.current.replace(Some(frame.buffer));
        let outcome = self.run(entry, frame.buffer, host);
        self.current.set(outer);
        outcome?;
        self.memory().read(frame.buffer, buffer)
    }
}

impl Drop for QemuMachine {
    fn drop(&mut self) {
        self.gdb.get_mut().kill();
        // It may have exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Machine for QemuMachine {
    fn arch(&self) -> Arch {
        self.arch.arch
    }

    fn allocate_code(&mut self, size: usize) -> Result<u64, Error> {
        // Page-aligned, so that making one region read-execute never
        // protects another not yet installed. The code segment is mapped
        // from the start.
        self.code.allocate(size, PAGE, |_, _| Ok(()))
    }

    /// Installs code once per region at its start, then maps the region's
    /// pages read-execute, so the emulated program cannot write it.
    unsafe fn install_code(&mut self, base: u64, bytes: &[u8]) -> Result<(), Error> {
        let arch = self.arch.arch;
        let size = self.code.check_install(base, bytes.len())?;
        if self.current.get().is_some() {
            return Err(Error::Machine(format!(
                "{arch}: installing code while a call runs"
            )));
        }
        // QEMU's debug write invalidates translations of the range.
        self.memory().write(base, bytes)?;
        let len = align_up(size.max(1), PAGE).unwrap_or(PAGE);
        // PROT_READ | PROT_EXEC
        self.mprotect(base, len, 5)?;
        self.code.mark_installed(base);
        Ok(())
    }

    fn allocate_data(&mut self, size: usize, align: u64) -> Result<u64, Error> {
        // The data segment is mapped read-write from the start.
        self.data.allocate(size, align, |_, _| Ok(()))
    }

    fn install_data(&mut self, base: u64, bytes: &[u8], writable: bool) -> Result<(), Error> {
        let arch = self.arch.arch;
        self.data.check_install(base, bytes.len())?;
        if self.current.get().is_some() {
            return Err(Error::Machine(format!(
                "{arch}: installing data while a call runs"
            )));
        }
        self.memory().write(base, bytes)?;
        if !writable {
            let len = self.data.pages(bytes.len());
            // PROT_READ
            self.mprotect(base, len, 1)?;
        }
        Ok(())
    }

    fn host_function_address(&mut self, function: HostFunction) -> Result<u64, Error> {
        Ok(SLOTS + HOST_SLOT * function.index() as u64)
    }

    unsafe fn call_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        let arch = self.arch.arch;
        let len = buffer.len() as u64;
        if self.current.get().is_none() {
            if len > BUFFER_SIZE {
                return Err(Error::Memory {
                    address: BUFFER_BASE,
                    message: format!(
                        "{arch}: call buffer of {len:#x} bytes exceeds the {BUFFER_SIZE:#x}-byte area"
                    ),
                });
            }
            return self.call_at(entry, callee, buffer, OUTERMOST, host);
        }

        // A host function called back into JIT code: run the inner call on
        // the stack below the interrupted code, then put every integer
        // register and the pc back so the outer call continues where it was.
        let saved: Vec<(usize, Vec<u8>)> = self
            .arch
            .saved_registers()
            .into_iter()
            .map(|n| Ok((n, self.gdb.borrow_mut().read_register(n)?)))
            .collect::<io::Result<_>>()
            .map_err(|e| self.gdb_error(e))?;
        let sp = self.read_reg(arch.spec().stack_pointer())?;
        let nested = CallFrame::nested_below(arch, sp, len, STACK_BASE)?;
        let outcome = self.call_at(entry, callee, buffer, nested, host);
        for (number, bytes) in saved {
            self.gdb
                .borrow_mut()
                .write_register(number, &bytes)
                .map_err(|e| self.gdb_error(e))?;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_slots_round_trip() {
        for (index, function) in HostFunction::ALL.into_iter().enumerate() {
            let address = SLOTS + HOST_SLOT * index as u64;
            assert_eq!(QemuMachine::host_function_at(address), Some(function));
            assert_eq!(QemuMachine::host_function_at(address + 2), None);
        }
        assert_eq!(QemuMachine::host_function_at(HALT_ADDRESS), None);
    }
}
