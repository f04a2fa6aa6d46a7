//! Where linked code runs: the host CPU or an emulator.

pub mod entry;
pub mod regions;

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, panic_message};
pub use crate::interrupt::CallInterrupt;
use crate::isa::Arch;
use crate::memory::Memory;

/// Host functions that JIT code can call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostFunction {
    /// The Rust side of the throw stub: `fn(context: *mut u64)` with the C
    /// calling convention. See [`crate::isa::IsaSpec`] for the contract.
    Throw,
    /// The Rust side of the throw-to-entry stub
    /// ([`crate::isa::IsaSpec::to_entry_stub`]): `fn(tag: u32, payload0:
    /// u64, payload1: u64) -> u64` with the C calling convention. It records
    /// the exception as the innermost call's outcome
    /// ([`HostServices::throw_to_entry`]) and returns that call's buffer
    /// address, whose header holds the handler record the stub jumps to.
    ThrowToEntry,
    /// The dispatcher of host functions defined by an embedder (and of
    /// Cranelift libcalls): `fn(index: u64, frame: u64) -> u64` with the C
    /// calling convention. `frame` is the address of the calling glue's
    /// [`crate::host`] frame; the result is a [`crate::host::HostStatus`].
    Call,
}

impl HostFunction {
    /// Every host function, in the order of [`HostFunction::index`].
    pub const ALL: [HostFunction; 3] = [
        HostFunction::Throw,
        HostFunction::Call,
        HostFunction::ThrowToEntry,
    ];

    /// The position of this function in [`HostFunction::ALL`]: the slot an
    /// emulated machine gives it in its page of host-function addresses.
    pub fn index(self) -> usize {
        match self {
            HostFunction::Throw => 0,
            HostFunction::Call => 1,
            HostFunction::ThrowToEntry => 2,
        }
    }
}

/// What kind of synchronous fault JIT code raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// An undefined or trapping instruction (`ud2`, `udf`, ...).
    IllegalInstruction,
    /// A load, store or fetch of memory that is not accessible.
    MemoryAccess,
    /// An access to the guard region below the stack: a stack overflow.
    StackOverflow,
    /// An arithmetic exception (integer division by zero or overflow).
    Arithmetic,
    /// Not a fault of the code: the call was interrupted (see
    /// [`crate::interrupt`]) while `pc` was executing. Delivered like a trap,
    /// to the innermost entry, when the services accept it.
    Interrupted,
    /// An instruction fetch from an address that is not executable code
    /// (unmapped, or a data page), reached by a call or jump from JIT code:
    /// `pc` is that address. Machines report it only when the code that got
    /// there is JIT code of the running call.
    InstructionFetch,
}

/// A synchronous fault raised by code running under [`Machine::call_entry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Address of the faulting instruction.
    pub pc: u64,
    /// What went wrong.
    pub kind: FaultKind,
    /// The data address of a memory fault, when the machine knows it.
    pub address: Option<u64>,
    /// The faulting frame's frame-pointer value as the unwinder reads frames
    /// ([`crate::isa::FrameLinks`]; on s390x the back-chain word at the
    /// stack pointer), when the machine knows it: where a backtrace starts.
    pub fp: Option<u64>,
    /// For an [`FaultKind::InstructionFetch`]: the return address of the
    /// call that reached `pc` (in JIT code), when the machine knows it; the
    /// backtrace then starts there.
    pub caller: Option<u64>,
}

/// What the host does when JIT code calls a [`HostFunction`].
pub trait HostServices {
    /// Handle [`HostFunction::Throw`]: `context` is the address of the
    /// register context the throw stub filled; on `Ok` it holds the resume
    /// state the stub will install. `buffer` is the target address of the
    /// innermost [`Machine::call_entry`] buffer (its header holds the entry
    /// trampoline's handler record).
    fn throw(&mut self, memory: &mut dyn Memory, context: u64, buffer: u64) -> Result<(), Error>;

    /// Handle [`HostFunction::ThrowToEntry`]: JIT code threw `tag` with
    /// `payloads` straight to the innermost entry trampoline's handler, in
    /// O(1), without a walk; record them as the call's outcome. On `Ok` the
    /// throw-to-entry stub resumes at the handler record in the call's
    /// buffer header; the services are not asked anything else about it.
    fn throw_to_entry(&mut self, tag: u32, payloads: [u64; 2]) -> Result<(), Error> {
        let _ = (tag, payloads);
        Err(Error::Machine("no throw-to-entry service".into()))
    }

    /// JIT code raised `fault`. Return `true` to have the machine deliver it
    /// to the innermost entry trampoline's handler (recorded in the buffer
    /// header), `false` to leave it unhandled (natively: to the previously
    /// installed signal handler).
    ///
    /// `memory` is the call's memory (its stack), in which the frames of
    /// the faulting code can still be read. Natively this runs inside a
    /// signal handler: it must not allocate, lock or unwind.
    fn fault(&mut self, fault: &Fault, memory: &dyn Memory) -> bool {
        let _ = (fault, memory);
        false
    }

    /// Whether the running call can be interrupted, and how to tell that it
    /// has been: a machine checks [`CallInterrupt::is_interrupted`] while
    /// the call runs (natively when the interrupt signal arrives, emulated
    /// at each basic block) and then reports a [`FaultKind::Interrupted`]
    /// fault to [`HostServices::fault`]. `None` (the default): never.
    fn interrupt(&self) -> Option<CallInterrupt<'_>> {
        None
    }

    /// Handle [`HostFunction::Call`]: run host function `index` on the glue
    /// frame at `frame`; returns the glue's status word.
    fn call_host(&mut self, memory: &mut dyn Memory, index: u64, frame: u64) -> Result<u64, Error> {
        let _ = (memory, frame);
        Err(Error::Machine(format!("no host function {index}")))
    }
}

/// Run the host side of `function` for an emulated machine of `arch`, with
/// the first three integer arguments `args` (`buffer` is the innermost
/// call's buffer): [`HostServices::throw`] on the context at `args[0]`,
/// [`HostServices::throw_to_entry`] of tag `args[0]` (its low 32 bits) and
/// payloads `args[1..3]`, returning `buffer`, or
/// [`HostServices::call_host`] of host function `args[0]` on the frame at
/// `args[1]`. Returns the value for the result register, if the function
/// has one. A panic of `host` is caught and becomes an `Err`, so that it
/// never unwinds through the machine.
pub fn dispatch_host_function(
    arch: Arch,
    function: HostFunction,
    host: &mut dyn HostServices,
    memory: &mut dyn Memory,
    args: [u64; 3],
    buffer: u64,
) -> Result<Option<u64>, Error> {
    let [first, second, third] = args;
    let outcome = catch_unwind(AssertUnwindSafe(|| match function {
        HostFunction::Throw => host.throw(memory, first, buffer).map(|()| None),
        // The tag is an i32 argument: the low half of its register.
        HostFunction::ThrowToEntry => host
            .throw_to_entry(first as u32, [second, third])
            .map(|()| Some(buffer)),
        HostFunction::Call => host.call_host(memory, first, second).map(Some),
    }));
    match outcome {
        Ok(result) => result,
        Err(panic) => Err(Error::Machine(format!(
            "{arch}: host function {function:?} panicked: {}",
            panic_message(&*panic)
        ))),
    }
}

/// A target that can hold code and run it: the host CPU or an emulated one.
///
/// A call always enters through an *entry trampoline* with the C calling
/// convention `fn(callee: u64, buffer: u64)`, so no implementation needs to
/// know how Cranelift passes arguments.
///
/// This is the raw layer below [`crate::Module`] (which is the safe API):
/// like cranelift-jit, it leaves to its caller the promise that the bytes it
/// installs and runs are code that keeps the contract below, hence
/// [`Machine::install_code`] and [`Machine::call_entry`] are `unsafe`. What
/// can be checked is, by every implementation: code is installed once per
/// [`Machine::allocate_code`] region, at the address that call returned, and
/// never writable while it can run.
pub trait Machine {
    /// The architecture this machine executes.
    fn arch(&self) -> Arch;
    /// Reserve `size` bytes of code memory, 16-byte aligned; returns its
    /// address.
    fn allocate_code(&mut self, size: usize) -> Result<u64, Error>;
    /// Copy `bytes` to `base` and make them executable (not writable), with
    /// instruction-cache coherence.
    ///
    /// `Err` (and nothing installed) unless `base` is an address
    /// [`Machine::allocate_code`] returned, not installed before, and
    /// `bytes` fit the size asked for there.
    ///
    /// # Safety
    ///
    /// Once installed, the bytes can run on this machine through
    /// [`Machine::call_entry`]: the caller promises that they are code for
    /// [`Machine::arch`] that keeps the contract of `call_entry` (on the
    /// host CPU, code can do anything the process can).
    unsafe fn install_code(&mut self, base: u64, bytes: &[u8]) -> Result<(), Error>;
    /// Reserve `size` bytes of data memory for JIT data objects, readable
    /// and writable, zero-filled, aligned to at least `align` bytes (a power
    /// of two); returns its address. A region is never moved or reused
    /// while the machine lives. Machines without data memory return an
    /// error (the default).
    fn allocate_data(&mut self, size: usize, align: u64) -> Result<u64, Error> {
        let _ = (size, align);
        Err(Error::Machine("this machine has no data memory".into()))
    }
    /// Copy `bytes` to the start of the region at `base` (from
    /// [`Machine::allocate_data`]) and, unless `writable`, make the whole
    /// region read-only, so that a store to it faults.
    fn install_data(&mut self, base: u64, bytes: &[u8], writable: bool) -> Result<(), Error> {
        let _ = (base, bytes, writable);
        Err(Error::Machine("this machine has no data memory".into()))
    }
    /// The address JIT code calls to reach `function` on the host.
    fn host_function_address(&mut self, function: HostFunction) -> Result<u64, Error>;
    /// Run `entry(callee, buffer)`: `buffer` is copied into target memory
    /// (8-byte aligned), the call runs, and the buffer is copied back. Calls to
    /// host functions are dispatched to `host`.
    ///
    /// Calls nest: a host function may call back into JIT code on the same
    /// machine, which is why this takes `&self`. A fault in JIT code that
    /// `host` accepts (see [`HostServices::fault`]) resumes at the entry
    /// trampoline's handler, which returns with the exception status.
    ///
    /// `Err` when the call cannot run (natively: when `entry` is not in
    /// code installed on this machine).
    ///
    /// # Safety
    ///
    /// `entry` is an entry trampoline ([`crate::trampoline`]) installed on
    /// this machine, and `callee` a function installed on it whose signature
    /// the trampoline was made for; `buffer` is at least
    /// [`crate::trampoline::buffer_size`] of that signature, and the handler
    /// address word of its header is zero ([`entry::EntryHandler::clear`]):
    /// machines take a nonzero one as the trampoline's recorded handler, so
    /// a buffer reused from an earlier call must be cleared. All code the
    /// call can reach is installed code keeping the same contract, which
    /// reaches the host only through [`Machine::host_function_address`]es,
    /// with the arguments [`HostFunction`] documents, and touches no memory
    /// but its stack, the buffer and memory `host` hands out.
    unsafe fn call_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error>;

    /// [`Machine::call_entry`] for an `entry` this machine has already been
    /// shown to hold (a module's resolved entry): the machine may skip
    /// checking it. The default calls [`Machine::call_entry`].
    ///
    /// # Safety
    ///
    /// As for [`Machine::call_entry`]; `entry` is installed on this machine.
    unsafe fn call_installed_entry(
        &self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error> {
        // SAFETY: our caller keeps `call_entry`'s contract.
        unsafe { self.call_entry(entry, callee, buffer, host) }
    }

    /// Whether this machine runs code in this process's own address space
    /// (the host CPU), so that code installed on one such machine can call
    /// code installed on another by address. `false` (the default) for
    /// emulators, whose addresses are their own.
    fn shares_process_memory(&self) -> bool {
        false
    }

    /// This machine itself as [`Any`](std::any::Any), for callers that take
    /// a faster path on a machine type they know (a module holding the host
    /// CPU's machine as a `dyn Machine` calls its entry directly, without a
    /// dynamic call per call). `None` (the default) opts out; an answer
    /// that is not this machine itself is ignored.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// What a machine runs code on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MachineKind {
    /// The host CPU (the `native` module's machine).
    Native,
    /// An emulator (the `cranelift-exn-emulator` crate's machine: unicorn,
    /// in this process).
    Emulated,
    /// A QEMU user-mode process driven through its GDB stub (the
    /// `cranelift-exn-qemu` crate's machine), for instructions unicorn's
    /// CPUs lack.
    Qemu,
}

impl MachineKind {
    /// The usual choice for `arch`: native on the host's architecture,
    /// emulated elsewhere.
    pub fn for_arch(arch: Arch) -> MachineKind {
        if Arch::host() == Some(arch) {
            MachineKind::Native
        } else {
            MachineKind::Emulated
        }
    }

    /// `native`, `emulated` or `qemu`.
    pub fn name(self) -> &'static str {
        match self {
            MachineKind::Native => "native",
            MachineKind::Emulated => "emulated",
            MachineKind::Qemu => "qemu",
        }
    }

    /// Whether code runs on the host CPU (not in an emulator of either
    /// kind).
    pub fn is_native(self) -> bool {
        self == MachineKind::Native
    }
}

/// Supplies machines to whatever runs code on several architectures (the
/// CLI, the filetests runner, the fuzzer).
pub trait MachineProvider: Send + Sync {
    /// The kind of machine `arch` runs on when the caller does not choose.
    fn kind(&self, arch: Arch) -> MachineKind;

    /// A fresh machine of `kind` for `arch`, or an error naming why the
    /// provider has none.
    fn machine(&self, arch: Arch, kind: MachineKind) -> Result<Box<dyn Machine>, Error>;

    /// The kind of machine that runs code compiled for `isa` (an ISA of
    /// `arch`): by default [`MachineProvider::kind`] of `arch`. A provider
    /// with more than one emulator picks the one whose CPU has the ISA's
    /// flags.
    fn kind_for_isa(&self, arch: Arch, isa: &dyn cranelift_codegen::isa::TargetIsa) -> MachineKind {
        let _ = isa;
        self.kind(arch)
    }

    /// Why code for `isa` cannot run on the machine
    /// [`MachineProvider::kind_for_isa`] picks for it (a flag the CPU
    /// lacks), or `None` when it can.
    fn unsupported(&self, isa: &dyn cranelift_codegen::isa::TargetIsa) -> Option<String> {
        let _ = isa;
        None
    }

    /// Why `code`, one compiled function for `arch`, would not run correctly
    /// on a machine of `kind` for `arch` although its flags are supported
    /// (an instruction the emulated CPU mis-executes), or `None` when it
    /// can.
    fn unsupported_code(&self, arch: Arch, kind: MachineKind, code: &[u8]) -> Option<String> {
        let _ = (arch, kind, code);
        None
    }
}

/// Why code for `isa` cannot run on `cpu` (such as `riscv64 emulated
/// CPU`), which lacks each `(flag, what it adds)` of `lacking`: every such
/// boolean ISA flag the ISA enables, e.g. `riscv64 emulated CPU lacks has_v
/// (vector)`; `None` when it enables none of them.
pub fn cpu_lacks<'a>(
    isa: &dyn cranelift_codegen::isa::TargetIsa,
    cpu: &str,
    lacking: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let flags = isa.isa_flags();
    let enabled = |flag: &str| {
        flags
            .iter()
            .any(|v| v.name == flag && v.as_bool() == Some(true))
    };
    let named: Vec<String> = lacking
        .into_iter()
        .filter(|(flag, _)| enabled(flag))
        .map(|(flag, what)| format!("{flag} ({what})"))
        .collect();
    (!named.is_empty()).then(|| format!("{cpu} lacks {}", named.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Endianness;

    /// Memory with nothing in it.
    struct NoMemory;

    impl Memory for NoMemory {
        fn endianness(&self) -> Endianness {
            Endianness::Little
        }

        fn read(&self, addr: u64, _buf: &mut [u8]) -> Result<(), Error> {
            Err(Error::Memory {
                address: addr,
                message: "no memory".into(),
            })
        }

        fn write(&mut self, addr: u64, _data: &[u8]) -> Result<(), Error> {
            Err(Error::Memory {
                address: addr,
                message: "no memory".into(),
            })
        }
    }

    /// Provides no service but throwing.
    struct NoServices;

    impl HostServices for NoServices {
        fn throw(&mut self, _: &mut dyn Memory, _: u64, _: u64) -> Result<(), Error> {
            Ok(())
        }
    }

    /// Records what it is asked and with what; host function 7 panics.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<(&'static str, [u64; 3])>,
    }

    impl HostServices for Recorder {
        fn throw(&mut self, _: &mut dyn Memory, context: u64, buffer: u64) -> Result<(), Error> {
            self.calls.push(("throw", [context, buffer, 0]));
            Ok(())
        }

        fn throw_to_entry(&mut self, tag: u32, payloads: [u64; 2]) -> Result<(), Error> {
            let [first, second] = payloads;
            self.calls
                .push(("throw_to_entry", [u64::from(tag), first, second]));
            Ok(())
        }

        fn call_host(&mut self, _: &mut dyn Memory, index: u64, frame: u64) -> Result<u64, Error> {
            self.calls.push(("call_host", [index, frame, 0]));
            match index {
                7 => panic!("host function seven"),
                _ => Ok(index + frame),
            }
        }
    }

    #[test]
    fn host_function_indices_follow_all() {
        for (index, function) in HostFunction::ALL.into_iter().enumerate() {
            assert_eq!(function.index(), index);
        }
    }

    #[test]
    fn host_functions_dispatch_to_their_service() {
        let mut host = Recorder::default();
        let dispatch = |host: &mut Recorder, function, args| {
            dispatch_host_function(Arch::Riscv64, function, host, &mut NoMemory, args, 0x20)
        };
        assert_eq!(
            dispatch(&mut host, HostFunction::Throw, [1, 2, 9]),
            Ok(None)
        );
        assert_eq!(
            dispatch(&mut host, HostFunction::Call, [3, 4, 9]),
            Ok(Some(7))
        );
        // The tag is the low half of its word; the buffer comes back.
        assert_eq!(
            dispatch(
                &mut host,
                HostFunction::ThrowToEntry,
                [0xffff_ffff_0000_0005, 6, 7]
            ),
            Ok(Some(0x20))
        );
        assert_eq!(
            dispatch_host_function(
                Arch::X86_64,
                HostFunction::ThrowToEntry,
                &mut NoServices,
                &mut NoMemory,
                [5, 6, 7],
                0x20
            ),
            Err(Error::Machine("no throw-to-entry service".into()))
        );
        assert_eq!(
            dispatch(&mut host, HostFunction::Call, [7, 0, 9]),
            Err(Error::Machine(
                "riscv64: host function Call panicked: host function seven".into()
            ))
        );
        assert_eq!(
            host.calls,
            [
                ("throw", [1, 0x20, 0]),
                ("call_host", [3, 4, 0]),
                ("throw_to_entry", [5, 6, 7]),
                ("call_host", [7, 0, 0])
            ]
        );
    }
}
