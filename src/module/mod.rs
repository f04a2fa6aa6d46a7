//! Calling JIT code: [`JitModule`] (loaded functions and data on one
//! machine, called with exception and trap outcomes), [`ModuleBuilder`] (the
//! CLIF-text convenience layer over it) and [`CallError`]. The definition
//! side of `JitModule` is in [`jit`].

pub mod jit;

use std::collections::HashMap;
use std::sync::Arc;

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir;
use cranelift_codegen::ir::TrapCode;
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_module::{FuncId, ModuleDeclarations};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::Error;
use crate::exception_table::ExceptionTable;
use crate::host::{self, HostResult, HostStatus, HostThrow};
use crate::interrupt::{CallInterrupt, InterruptHandle};
use crate::isa::{Arch, Endianness};
use crate::link::Image;
use crate::machine::entry::EntryHandler;
use crate::machine::{Fault, FaultKind, HostFunction, HostServices, Machine};
use crate::memory::Memory;
use crate::native::NativeMachine;
use crate::trampoline::{self, STATUS_EXCEPTION, STATUS_OFFSET, STATUS_RETURNED, VALUES_OFFSET};
use crate::unwind::{self, Delivery};
use crate::values::{
    decode_results, decode_slots, decode_slots_each, encode_arguments, encode_slots, header_word,
};
use jit::{PendingData, PendingFunction};

pub use crate::abi::{THROW_SYMBOL, THROW_TO_ENTRY_SYMBOL};

/// The trap code of a call or jump from JIT code to an address that holds
/// no code (`call_indirect` to 0, or to a data page): the
/// [`CallError::Trap`]'s `pc` is that address and its `function` is empty.
/// It is the highest user trap code, `user250`; CLIF that traps with
/// `user250` itself cannot be told apart from it.
pub const BAD_CODE_ADDRESS: TrapCode = TrapCode::unwrap_user(250);

/// A host function: gets the module (to call back into JIT code: calls
/// nest) and the arguments, in the order of its signature's parameters.
pub type HostFunc<M = dyn Machine> =
    Arc<dyn Fn(&JitModule<M>, &[DataValue]) -> HostResult + Send + Sync>;

/// A host function with the name and signature JIT code uses.
pub struct HostImport<M: ?Sized + Machine = dyn Machine> {
    /// CLIF name (`%name`).
    pub name: String,
    /// The signature JIT code calls it with (its calling convention is the
    /// glue's).
    pub signature: ir::Signature,
    /// The Rust function.
    pub func: HostFunc<M>,
}

impl<M: ?Sized + Machine> Clone for HostImport<M> {
    fn clone(&self) -> Self {
        HostImport {
            name: self.name.clone(),
            signature: self.signature.clone(),
            func: self.func.clone(),
        }
    }
}

impl<M: ?Sized + Machine> std::fmt::Debug for HostImport<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostImport({} {})", self.name, self.signature)
    }
}

/// Why a call did not return values.
///
/// `Debug` prints trap codes by name (`stk_ovf`, `user3`), as `Display`
/// does.
#[derive(Clone, PartialEq, Eq)]
pub enum CallError {
    /// An exception no JIT handler caught reached the entry.
    Exception {
        /// Its tag.
        tag: u32,
        /// Its two payloads.
        payloads: [u64; 2],
    },
    /// JIT code trapped: a trap instruction, a faulting access, a division
    /// by zero, a stack overflow. Delivered to the entry in O(1).
    Trap {
        /// The trap code Cranelift recorded for the instruction (for a stack
        /// overflow on the guard page, `stk_ovf`).
        code: TrapCode,
        /// Address of the faulting instruction.
        pc: u64,
        /// The function it belongs to.
        function: String,
        /// For a memory fault, the data address accessed, when the machine
        /// reports it.
        address: Option<u64>,
        /// The JIT frames from the fault out to the call's entry, innermost
        /// first: each frame's function and the offset in it (of the faulting
        /// instruction, then of each return address). At most
        /// [`MAX_BACKTRACE`] frames; empty when the machine gives no frame
        /// pointer.
        backtrace: Vec<BacktraceFrame>,
    },
    /// The call was interrupted through an [`InterruptHandle`] of its
    /// module (see [`crate::interrupt`]).
    Interrupted,
    /// Something failed: bad arguments, the machine, the unwinder, or a host
    /// function that panicked.
    Failed(Error),
}

/// One frame of a [`CallError::Trap`] backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BacktraceFrame {
    /// The function (`%name` or `u0:1`).
    pub function: String,
    /// Offset in it: of the faulting instruction in the innermost frame,
    /// of the return address in the others.
    pub offset: u64,
}

/// The most frames a trap's backtrace records.
pub const MAX_BACKTRACE: usize = 64;

/// The outcome of a call that did not return values (the name used by the
/// embedder API).
pub type Outcome = CallError;

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Exception { tag, payloads } => write!(
                f,
                "uncaught exception tag{tag} (payloads {:#x}, {:#x})",
                payloads[0], payloads[1]
            ),
            CallError::Trap {
                code,
                pc,
                function,
                address,
                ..
            } => {
                if function.is_empty() {
                    write!(
                        f,
                        "trap {code}: a call or jump to {pc:#x}, which holds no code"
                    )?;
                } else {
                    write!(f, "trap {code} at {pc:#x} in {function}")?;
                }
                match address {
                    Some(a) => write!(f, ", accessing {a:#x}"),
                    None => Ok(()),
                }
            }
            CallError::Interrupted => write!(f, "interrupted"),
            CallError::Failed(e) => e.fmt(f),
        }
    }
}

impl std::fmt::Debug for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Exception { tag, payloads } => f
                .debug_struct("Exception")
                .field("tag", tag)
                .field(
                    "payloads",
                    &format_args!("[{:#x}, {:#x}]", payloads[0], payloads[1]),
                )
                .finish(),
            CallError::Trap {
                code,
                pc,
                function,
                address,
                backtrace,
            } => f
                .debug_struct("Trap")
                // TrapCode's own Debug prints `TrapCode(251)`.
                .field("code", &format_args!("{code}"))
                .field("pc", &format_args!("{pc:#x}"))
                .field("function", function)
                .field("address", &format_args!("{address:#x?}"))
                .field(
                    "backtrace",
                    &backtrace
                        .iter()
                        .map(|b| format!("{}+{:#x}", b.function, b.offset))
                        .collect::<Vec<_>>(),
                )
                .finish(),
            CallError::Interrupted => f.write_str("Interrupted"),
            CallError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl std::error::Error for CallError {}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        CallError::Failed(e)
    }
}

/// What the services of one call left for its caller.
#[derive(Debug, Default)]
enum Pending {
    #[default]
    None,
    Uncaught {
        tag: u32,
        payloads: [u64; 2],
    },
    Interrupted,
    Failed(Error),
}

/// The host side of one call: throws, faults and host functions.
struct CallServices<'m, M: ?Sized + Machine> {
    module: &'m JitModule<M>,
    pending: Pending,
    /// A fault delivered to the entry (written from a signal handler
    /// natively, so a plain `Copy` value).
    fault: Option<Fault>,
    /// Set by a host function's outcome that ends the call at its entry (a
    /// [`HostThrow::ToEntry`], a failure, a panic or an interrupt): its
    /// glue then calls the throw-to-entry stub, which records this.
    direct: Option<Pending>,
    /// The pcs of a delivered fault's frames (see [`CallError::Trap`]),
    /// recorded while the frames exist. Left uninitialised: a call that does
    /// not trap pays nothing for it.
    frames: [std::mem::MaybeUninit<u64>; MAX_BACKTRACE],
    /// How many of `frames` are set (the first `depth`).
    depth: usize,
    /// Whether the module's interrupt handle interrupted this call.
    interrupt: CallInterrupt<'m>,
}

/// Host function arguments decoded on the stack; more are allocated.
const INLINE_HOST_ARGS: usize = 8;

impl<M: ?Sized + Machine> CallServices<'_, M> {
    /// Services for one call of `module`.
    fn new(module: &JitModule<M>) -> CallServices<'_, M> {
        CallServices {
            module,
            pending: Pending::None,
            fault: None,
            direct: None,
            frames: [const { std::mem::MaybeUninit::uninit() }; MAX_BACKTRACE],
            depth: 0,
            interrupt: module.interrupt.begin(),
        }
    }

    /// Walk the frame-pointer chain of `fault` out to the entry (or the
    /// first frame that is not JIT code), recording each frame's pc. Native
    /// memory is read only where [`HostMemory::contains`] allows, so nothing
    /// allocates or faults.
    ///
    /// [`HostMemory::contains`]: crate::memory::HostMemory::contains
    fn record_frames(&mut self, fault: &Fault, memory: &dyn Memory) {
        let links = self.module.arch.spec().frame_links();
        let host = memory.host_view();
        let read = |addr: u64| match &host {
            Some(h) => h.contains(addr, 8).then(|| h.read_u64(addr).ok()).flatten(),
            None => memory.read_u64(addr).ok(),
        };
        self.depth = 0;
        // A fetch from an address without code starts at its caller: the
        // frame pointer is still the caller's.
        let (mut pc, mut fp, at_return_address) = match fault.caller {
            Some(caller) if fault.kind == FaultKind::InstructionFetch => (caller, fault.fp, true),
            _ => (fault.pc, fault.fp, false),
        };
        while self.depth < MAX_BACKTRACE {
            // A return address may be one past its function's last byte.
            let at = if self.depth == 0 && !at_return_address {
                pc
            } else {
                pc.wrapping_sub(1)
            };
            match self.module.table.function(at) {
                Some(f) if !f.name.starts_with(crate::abi::RESERVED_PREFIX) => {}
                _ => break,
            }
            self.frames[self.depth].write(pc);
            self.depth += 1;
            let Some(frame) = fp else { break };
            let next_pc = read(frame.wrapping_add_signed(links.return_address_offset));
            let next_fp = read(frame.wrapping_add_signed(links.caller_fp_offset));
            match (next_pc, next_fp) {
                (Some(p), Some(f)) if f > frame => {
                    pc = p & links.return_address_mask;
                    fp = Some(f);
                }
                _ => break,
            }
        }
    }

    fn run_host(
        &mut self,
        memory: &mut dyn Memory,
        index: u64,
        frame: u64,
    ) -> Result<HostStatus, Error> {
        let import = usize::try_from(index)
            .ok()
            .and_then(|i| self.module.hosts.get(i))
            .ok_or_else(|| Error::Machine(format!("no host function {index}")))?;
        let sig = &import.signature;
        let endianness = memory.endianness();
        // The glue frame, on this stack when it is small.
        let size = host::frame_size(sig) as usize;
        let mut inline = [0u8; 512];
        let mut heap = Vec::new();
        let bytes: &mut [u8] = if size <= inline.len() {
            &mut inline[..size]
        } else {
            heap.resize(size, 0);
            &mut heap
        };
        memory.read(frame, bytes)?;
        // The arguments, on this stack when there are few (a host call
        // otherwise allocates for them).
        let count = sig.params.len();
        let mut inline_args: [DataValue; INLINE_HOST_ARGS] =
            std::array::from_fn(|_| DataValue::I8(0));
        let heap_args: Vec<DataValue>;
        let args: &[DataValue] = if count <= INLINE_HOST_ARGS {
            let mut next = 0;
            decode_slots_each(&sig.params, bytes, endianness, |value| {
                inline_args[next] = value;
                next += 1;
            })?;
            &inline_args[..count]
        } else {
            heap_args = decode_slots(&sig.params, bytes, endianness)?;
            &heap_args
        };
        let module = self.module;
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (import.func)(module, args)));
        // The tag and payloads for the glue's throw (`Threw`), or for its
        // call of the throw-to-entry stub (`ToEntry`: the outcome is in
        // `direct`).
        let throw = |memory: &mut dyn Memory, status: HostStatus, tag: u32, payloads: [u64; 2]| {
            // The glue loads the tag as an i32 from the frame's first word.
            let tag = match memory.endianness() {
                Endianness::Little => tag.to_le_bytes(),
                Endianness::Big => tag.to_be_bytes(),
            };
            memory.write(frame + host::TAG_OFFSET, &tag)?;
            memory.write_u64(frame + host::PAYLOAD0_OFFSET, payloads[0])?;
            memory.write_u64(frame + host::PAYLOAD1_OFFSET, payloads[1])?;
            Ok::<_, Error>(status)
        };
        // An interrupt that came while the host function ran stops the call
        // as it returns to JIT code.
        if self.interrupt.is_interrupted() {
            self.direct = Some(Pending::Interrupted);
            return throw(memory, HostStatus::ToEntry, 0, [0; 2]);
        }
        match outcome {
            Ok(Ok(values)) => match encode_slots(&sig.returns, &values, bytes, endianness) {
                Ok(()) => {
                    let start = VALUES_OFFSET as usize;
                    memory.write(frame + start as u64, &bytes[start..])?;
                    Ok(HostStatus::Returned)
                }
                Err(e) => {
                    self.direct = Some(Pending::Failed(Error::Signature(format!(
                        "host function {} returned values that do not match {sig}: {e}",
                        import.name
                    ))));
                    throw(memory, HostStatus::ToEntry, 0, [0; 2])
                }
            },
            Ok(Err(HostThrow::Exception { tag, payloads })) => {
                throw(memory, HostStatus::Threw, tag, payloads)
            }
            Ok(Err(HostThrow::ToEntry { tag, payloads })) => {
                self.direct = Some(Pending::Uncaught { tag, payloads });
                throw(memory, HostStatus::ToEntry, tag, payloads)
            }
            Err(panic) => {
                let message = crate::error::panic_message(&*panic);
                self.direct = Some(Pending::Failed(Error::Machine(format!(
                    "host function {} panicked: {message}",
                    import.name
                ))));
                throw(memory, HostStatus::ToEntry, 0, [0; 2])
            }
        }
    }
}

impl<M: ?Sized + Machine> HostServices for CallServices<'_, M> {
    fn throw_to_entry(&mut self, tag: u32, payloads: [u64; 2]) -> Result<(), Error> {
        // From host glue, the outcome the host function left; from JIT
        // code, its exception.
        self.pending = self
            .direct
            .take()
            .unwrap_or(Pending::Uncaught { tag, payloads });
        Ok(())
    }

    fn throw(&mut self, memory: &mut dyn Memory, ctx: u64, buffer: u64) -> Result<(), Error> {
        match unwind::throw(self.module.arch, &self.module.table, memory, ctx) {
            Ok((_, Delivery::Caught { .. })) => Ok(()),
            Ok((request, Delivery::Uncaught { .. })) => {
                self.pending = Pending::Uncaught {
                    tag: request.tag,
                    payloads: request.payloads,
                };
                Ok(())
            }
            Err(error) => {
                // The walk failed (corrupt chain, pc outside JIT code): go
                // straight to the entry.
                self.pending = Pending::Failed(error);
                unwind::to_entry(memory, ctx, buffer, [0; 2])
            }
        }
    }

    fn fault(&mut self, fault: &Fault, memory: &dyn Memory) -> bool {
        // Runs in a signal handler natively: lookups, bounds-checked reads
        // and `Copy` stores only.
        if fault.kind == FaultKind::Interrupted && !self.interrupt.is_interrupted() {
            return false;
        }
        // A fetch fault's pc is outside any code (the machine saw JIT code
        // jump there).
        if fault.kind != FaultKind::InstructionFetch
            && self.module.table.function(fault.pc).is_none()
        {
            return false;
        }
        self.fault = Some(*fault);
        self.record_frames(fault, memory);
        true
    }

    fn call_host(&mut self, memory: &mut dyn Memory, index: u64, frame: u64) -> Result<u64, Error> {
        self.run_host(memory, index, frame).map(|s| s as u64)
    }

    fn interrupt(&self) -> Option<CallInterrupt<'_>> {
        Some(self.interrupt)
    }
}

/// Collects functions (CLIF text or built with `cranelift_frontend`) and
/// host functions, then compiles, links and loads them as a [`Module`].
///
/// A convenience layer over [`JitModule`]: `finalize` defines everything in
/// a fresh `JitModule` and calls [`JitModule::finalize_definitions`] once.
///
/// Names are CLIF names: `%name` for test-case names (the `%` may be
/// omitted in this API) or `u0:1` for user names. A function may call any
/// function or host function of the builder, and Cranelift libcalls
/// (`CeilF32`, `FmaF64`, ...) that the target lacks instructions for.
pub struct ModuleBuilder {
    isa: OwnedTargetIsa,
    functions: Vec<ir::Function>,
    declared: Vec<(String, ir::Signature)>,
    /// `declared` by symbol.
    declared_index: FxHashMap<String, usize>,
    hosts: Vec<HostImport>,
    /// The symbols of `functions` and `hosts`: a definition looks its
    /// name up here (scanning them made defining n functions O(n²)).
    defined: FxHashSet<String>,
}

/// `name` as a CLIF symbol: `%name` unless it already is one (`%x`, `u0:1`).
pub fn symbol_name(name: &str) -> String {
    if is_symbol(name) {
        name.to_string()
    } else {
        let mut symbol = String::with_capacity(name.len() + 1);
        symbol.push('%');
        symbol.push_str(name);
        symbol
    }
}

/// Whether `name` is a CLIF symbol already (`%x`, `u0:1`).
fn is_symbol(name: &str) -> bool {
    name.starts_with('%')
        || name.strip_prefix('u').is_some_and(|rest| {
            rest.contains(':') && rest.chars().all(|c| c.is_ascii_digit() || c == ':')
        })
}

/// `f` of [`symbol_name`]`(name)`, built on the stack for names of up to
/// 63 bytes: a call by name looks its function up without allocating.
fn with_symbol_name<R>(name: &str, f: impl FnOnce(&str) -> R) -> R {
    if is_symbol(name) {
        return f(name);
    }
    let mut bytes = [0u8; 64];
    if let Some(rest) = bytes.get_mut(1..=name.len()) {
        rest.copy_from_slice(name.as_bytes());
        bytes[0] = b'%';
        // '%' followed by a `str` is UTF-8.
        if let Ok(symbol) = std::str::from_utf8(&bytes[..=name.len()]) {
            return f(symbol);
        }
    }
    f(&symbol_name(name))
}

impl ModuleBuilder {
    /// An empty module for `isa` (see [`crate::compile::build_isa`]).
    pub fn new(isa: OwnedTargetIsa) -> ModuleBuilder {
        ModuleBuilder {
            isa,
            functions: Vec::new(),
            declared: Vec::new(),
            declared_index: FxHashMap::default(),
            hosts: Vec::new(),
            defined: FxHashSet::default(),
        }
    }

    /// The target.
    pub fn isa(&self) -> &dyn TargetIsa {
        self.isa.as_ref()
    }

    /// Declare a function that will be defined later with `signature`; its
    /// definition must match. Returns its CLIF symbol.
    pub fn declare_function(
        &mut self,
        name: &str,
        signature: ir::Signature,
    ) -> Result<String, Error> {
        let symbol = symbol_name(name);
        if let Some((_, existing)) = self.declared_index.get(&symbol).map(|&i| &self.declared[i])
            && *existing != signature
        {
            return Err(Error::Signature(format!(
                "{symbol} is declared as {existing}, not {signature}"
            )));
        }
        if !self.declared_index.contains_key(&symbol) {
            self.declared_index
                .insert(symbol.clone(), self.declared.len());
            self.declared.push((symbol.clone(), signature));
        }
        Ok(symbol)
    }

    /// Define a function (its name is its symbol).
    pub fn define_function(&mut self, func: ir::Function) -> Result<(), Error> {
        let symbol = func.name.to_string();
        jit::check_not_reserved(&symbol)?;
        if self.is_defined(&symbol) {
            return Err(Error::Compile {
                function: symbol,
                message: "defined twice".into(),
            });
        }
        if let Some((_, declared)) = self.declared_index.get(&symbol).map(|&i| &self.declared[i])
            && *declared != func.signature
        {
            return Err(Error::Signature(format!(
                "{symbol} is declared as {declared} but defined as {}",
                func.signature
            )));
        }
        self.defined.insert(symbol);
        self.functions.push(func);
        Ok(())
    }

    /// Define every function in CLIF `text`; returns their symbols.
    pub fn define_clif(&mut self, text: &str) -> Result<Vec<String>, Error> {
        let functions = jit::parse_clif(text)?;
        let mut symbols = Vec::new();
        for func in functions {
            symbols.push(func.name.to_string());
            self.define_function(func)?;
        }
        Ok(symbols)
    }

    /// Define a host function JIT code calls as `name` with `signature`
    /// (whose calling convention the generated glue uses).
    pub fn define_host_function(
        &mut self,
        name: &str,
        signature: ir::Signature,
        func: impl Fn(&Module, &[DataValue]) -> HostResult + Send + Sync + 'static,
    ) -> Result<String, Error> {
        let symbol = symbol_name(name);
        jit::check_not_reserved(&symbol)?;
        if self.is_defined(&symbol) {
            return Err(Error::Compile {
                function: symbol,
                message: "defined twice".into(),
            });
        }
        self.defined.insert(symbol.clone());
        self.hosts.push(HostImport {
            name: symbol.clone(),
            signature,
            func: Arc::new(func),
        });
        Ok(symbol)
    }

    fn is_defined(&self, symbol: &str) -> bool {
        self.defined.contains(symbol)
    }

    /// Compile, link and load everything on `machine`.
    pub fn finalize(self, machine: Box<dyn Machine>) -> Result<Module, Error> {
        for (symbol, _) in &self.declared {
            if !self.is_defined(symbol) {
                return Err(Error::Compile {
                    function: symbol.clone(),
                    message: "declared but never defined".into(),
                });
            }
        }
        let mut module = JitModule::from_boxed_machine(machine, self.isa.as_ref())?;
        module.define_all(self.functions, self.hosts)?;
        Ok(module)
    }
}

/// A JIT module on a [`Machine`]: functions and data objects declared and
/// defined through [`cranelift_module::Module`] (or as CLIF), compiled,
/// linked and loaded by [`JitModule::finalize_definitions`] — as often as
/// needed: each finalize loads the new definitions into new memory, and
/// code already loaded is never moved or rewritten.
///
/// Calls take `&self`: a host function may call back into the module
/// (entries nest), and each call gets its own outcome. A
/// `JitModule<NativeMachine>` is `Send + Sync`: threads may call one module
/// concurrently (trap and throw state is per thread). `JitModule<dyn
/// Machine>` ([`Module`]) and modules on an emulated machine are not.
pub struct JitModule<M: ?Sized + Machine = dyn Machine> {
    pub(crate) arch: Arch,
    pub(crate) isa: OwnedTargetIsa,
    /// The ISA of the generated glue and trampolines (see
    /// [`crate::compile::glue_isa`]), when it differs from `isa`.
    pub(crate) glue_isa: Option<OwnedTargetIsa>,
    pub(crate) declarations: ModuleDeclarations,
    /// Every declaration by its key, kept up to date by `finalize`.
    pub(crate) declared_keys: DeclarationIndex,
    pub(crate) stubs: StubAddresses,
    /// Address of every loaded symbol by its key ([`symbol_name`] of its
    /// name): functions, host-function glue, data objects, native symbols,
    /// imported modules' exports and the reserved stubs.
    pub(crate) symbols: FxHashMap<String, u64>,
    /// The signature of every loaded JIT function, by key.
    pub(crate) signatures: FxHashMap<String, ir::Signature>,
    /// Signatures of symbols JIT code may call that are not JIT functions
    /// (native symbols registered with one, imported modules' exports).
    pub(crate) foreign_signatures: HashMap<String, ir::Signature>,
    /// Resolvers of names no definition provides (like
    /// `JITBuilder::symbol_lookup_fn`).
    pub(crate) lookups: Vec<SymbolLookup>,
    /// The key of every function, data object and host function defined,
    /// pending or loaded (definitions are never taken back): what a new
    /// definition is checked against, in one lookup.
    pub(crate) defined: FxHashSet<String>,
    /// Functions defined but not loaded yet.
    pub(crate) pending: Vec<PendingFunction>,
    /// Data objects defined but not loaded yet.
    pub(crate) pending_data: Vec<PendingData>,
    /// Loaded data objects: address and size.
    pub(crate) data_objects: HashMap<cranelift_module::DataId, (u64, usize)>,
    pub(crate) hosts: Vec<HostImport<M>>,
    /// How many of `hosts` have glue loaded.
    pub(crate) hosts_loaded: usize,
    pub(crate) images: Vec<Image>,
    /// Every loaded function of this module and of the modules it imports
    /// from: what the unwinder and the trap lookup search.
    pub(crate) table: ExceptionTable,
    pub(crate) entries: FxHashMap<ir::Signature, u64>,
    pub(crate) unusable: FxHashMap<ir::Signature, Error>,
    /// Trampoline pairs compiled so far (their names' index).
    pub(crate) trampolines: usize,
    /// Modules whose exports this one links to: kept alive while it is.
    pub(crate) imported: Vec<Arc<JitModule<NativeMachine>>>,
    /// Tells this module's [`RawEntry`]s from other modules'.
    pub(crate) id: u64,
    pub(crate) machine: Box<M>,
    /// Whether `machine` is the host CPU's [`NativeMachine`] (see
    /// [`JitModule::native_machine`]).
    native: bool,
    pub(crate) interrupt: InterruptHandle,
}

/// The declarations of a module by key ([`symbol_name`] of the name, or
/// `%__anon_func<id>`): declarations are only ever added, with dense ids,
/// so the index records how many of each kind it holds.
#[derive(Default)]
pub(crate) struct DeclarationIndex {
    /// Declaration by key.
    pub(crate) keys: FxHashMap<String, cranelift_module::FuncOrDataId>,
    /// How many function declarations are in `keys`.
    pub(crate) functions: usize,
    /// How many data object declarations are in `keys`.
    pub(crate) data_objects: usize,
    /// How many functions are declared (one more than the highest id the
    /// module's declaring methods returned).
    pub(crate) declared_functions: usize,
    /// How many data objects are declared (likewise).
    pub(crate) declared_data_objects: usize,
}

impl DeclarationIndex {
    /// A declaring method returned function `id`.
    pub(crate) fn saw_function(&mut self, id: cranelift_module::FuncId) {
        self.declared_functions = self.declared_functions.max(id.as_u32() as usize + 1);
    }

    /// A declaring method returned data object `id`.
    pub(crate) fn saw_data_object(&mut self, id: cranelift_module::DataId) {
        self.declared_data_objects = self.declared_data_objects.max(id.as_u32() as usize + 1);
    }
}

/// A resolver of symbol names to addresses.
pub type SymbolLookup = Box<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// The module type of the [`ModuleBuilder`] API: a [`JitModule`] on any
/// machine.
pub type Module = JitModule<dyn Machine>;

/// A function's entry resolved by [`JitModule::raw_entry`], for
/// [`JitModule::call_raw`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEntry {
    module: u64,
    trampoline: u64,
    callee: u64,
    buffer_size: usize,
}

impl RawEntry {
    /// Address of the entry trampoline: C convention, `fn(callee: u64,
    /// buffer: u64)`. Calling it directly skips the host services, so only
    /// a callee that neither throws nor traps may be called that way.
    pub fn trampoline(&self) -> u64 {
        self.trampoline
    }

    /// Address of the function itself (its own calling convention).
    pub fn callee(&self) -> u64 {
        self.callee
    }

    /// Bytes a buffer for this function's signature needs.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }
}

/// Whether `machine` is a [`NativeMachine`]: its `as_any` answers with
/// itself as one (the same address and size).
fn is_native<M: ?Sized + Machine>(machine: &M) -> bool {
    machine
        .as_any()
        .and_then(|any| any.downcast_ref::<NativeMachine>())
        .is_some_and(|native| {
            std::ptr::addr_eq(native, machine)
                && std::mem::size_of_val(native) == std::mem::size_of_val(machine)
        })
}

/// Source of [`JitModule`] ids.
static NEXT_MODULE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Module {
    /// Compile `functions` for `isa`, add entry trampolines for their
    /// signatures, link and load everything on `machine`.
    pub fn new(
        machine: Box<dyn Machine>,
        isa: &dyn TargetIsa,
        functions: Vec<ir::Function>,
    ) -> Result<Module, Error> {
        let mut module = JitModule::from_boxed_machine(machine, isa)?;
        module.define_all(functions, Vec::new())?;
        Ok(module)
    }
}

impl<M: Machine> JitModule<M> {
    /// An empty module for `isa` on `machine` (which gets the throw and
    /// resume stubs now). `isa` must target the machine's architecture;
    /// `preserve_frame_pointers` and `unwind_info` are forced on.
    pub fn with_machine(machine: M, isa: &dyn TargetIsa) -> Result<JitModule<M>, Error> {
        JitModule::from_boxed_machine(Box::new(machine), isa)
    }
}

impl<M: ?Sized + Machine> JitModule<M> {
    /// [`JitModule::with_machine`] for a boxed (possibly `dyn`) machine.
    pub fn from_boxed_machine(
        mut machine: Box<M>,
        isa: &dyn TargetIsa,
    ) -> Result<JitModule<M>, Error> {
        let arch = machine.arch();
        if Arch::from_triple(isa.triple()) != Some(arch) {
            return Err(Error::Machine(format!(
                "a {arch} machine cannot run code for {}",
                isa.triple()
            )));
        }
        let isa = crate::compile::build_isa(arch, isa.flags(), &isa.isa_flags())?;
        // Every function gets stack probes (see `compile::probed_isa`).
        let isa = match crate::compile::probed_isa(isa.as_ref())? {
            Some(probed) => probed,
            None => isa,
        };
        let glue_isa = crate::compile::glue_isa(isa.as_ref())?;
        let stubs = install_stubs(machine.as_mut())?;
        let dispatcher = machine.host_function_address(HostFunction::Call)?;
        let symbols = FxHashMap::from_iter([
            (THROW_SYMBOL.to_string(), stubs.throw),
            (THROW_TO_ENTRY_SYMBOL.to_string(), stubs.throw_to_entry),
            (host::DISPATCH_SYMBOL.to_string(), dispatcher),
        ]);
        Ok(JitModule {
            arch,
            isa,
            glue_isa,
            declarations: ModuleDeclarations::default(),
            declared_keys: DeclarationIndex::default(),
            stubs,
            symbols,
            signatures: FxHashMap::default(),
            foreign_signatures: HashMap::new(),
            lookups: Vec::new(),
            defined: FxHashSet::default(),
            pending: Vec::new(),
            pending_data: Vec::new(),
            data_objects: HashMap::new(),
            hosts: Vec::new(),
            hosts_loaded: 0,
            images: Vec::new(),
            table: ExceptionTable::default(),
            entries: FxHashMap::default(),
            unusable: FxHashMap::default(),
            trampolines: 0,
            imported: Vec::new(),
            id: NEXT_MODULE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            native: is_native(machine.as_ref()),
            machine,
            interrupt: InterruptHandle::new(),
        })
    }

    /// A handle that interrupts the calls of this module from any thread
    /// (see [`crate::interrupt`]).
    pub fn interrupt_handle(&self) -> InterruptHandle {
        self.interrupt.clone()
    }

    /// Define `functions` and `hosts`, then finalize: all must load.
    fn define_all(
        &mut self,
        functions: Vec<ir::Function>,
        hosts: Vec<HostImport<M>>,
    ) -> Result<(), Error> {
        for import in hosts {
            self.define_host_import(import)?;
        }
        for func in functions {
            self.define_ir_function(func)?;
        }
        self.finalize()?;
        if let Some(waiting) = self.pending.first() {
            return Err(Error::Link {
                function: waiting.compiled.name.clone(),
                offset: 0,
                kind: "symbol".into(),
                message: format!("undefined symbol {}", waiting.missing(self)),
            });
        }
        Ok(())
    }

    /// The linked images, one per [`JitModule::finalize_definitions`] that
    /// loaded code, in order.
    pub fn images(&self) -> &[Image] {
        &self.images
    }

    /// The first linked image (for a module made by [`ModuleBuilder`] or
    /// [`Module::new`], its only one).
    pub fn image(&self) -> &Image {
        static EMPTY: std::sync::OnceLock<HashMap<Arch, Image>> = std::sync::OnceLock::new();
        self.images.first().unwrap_or_else(|| {
            &EMPTY.get_or_init(|| {
                Arch::ALL
                    .into_iter()
                    .map(|arch| {
                        (
                            arch,
                            Image {
                                arch,
                                base: 0,
                                code: Vec::new(),
                                symbols: HashMap::new(),
                                table: ExceptionTable::default(),
                            },
                        )
                    })
                    .collect()
            })[&self.arch]
        })
    }

    /// Every loaded function of this module (and of the modules it imports
    /// from), for pc lookups.
    pub fn table(&self) -> &ExceptionTable {
        &self.table
    }

    /// Address of the throw stub (what `%__cranelift_throw` resolves to).
    pub fn throw_stub(&self) -> u64 {
        self.stubs.throw
    }

    /// The machine the module runs on.
    pub fn machine(&self) -> &M {
        self.machine.as_ref()
    }

    /// The address of the loaded symbol `name` (`%name`, `name` or `u0:1`):
    /// a function, a data object, a native symbol or a stub.
    pub fn symbol_address(&self, name: &str) -> Option<u64> {
        self.symbols.get(&symbol_name(name)).copied()
    }

    /// The signature of the loaded function called `name` (`%name`, `name`
    /// or `u0:1`).
    pub fn signature(&self, name: &str) -> Option<&ir::Signature> {
        self.signatures.get(&symbol_name(name))
    }

    /// Call the function called `name` (`%name`, `name` or `u0:1`) with
    /// `args`. Entries nest: a host function may call this again.
    pub fn call(&self, name: &str, args: &[DataValue]) -> Result<Vec<DataValue>, CallError> {
        let (sig, callee) = with_symbol_name(name, |symbol| {
            let sig = self
                .signatures
                .get(symbol)
                .ok_or_else(|| Error::Signature(format!("no function {symbol} in this module")))?;
            let callee = self.symbols.get(symbol).copied().ok_or_else(|| {
                Error::Machine(format!("{symbol} has a signature but no address"))
            })?;
            Ok::<_, Error>((sig, callee))
        })?;
        let entry = self.entry_for(sig)?;
        let endianness = self.arch.endianness();
        let mut buffer = encode_arguments(sig, args, endianness)?;
        let mut services = CallServices::new(self);
        // SAFETY: `entry` is the trampoline of `callee`'s signature, both in
        // code this module compiled from checked CLIF and installed, and the
        // buffer was encoded for that signature.
        unsafe {
            self.machine
                .call_entry(entry, callee, &mut buffer, &mut services)?
        };
        self.outcome(&mut services, &buffer)?;
        Ok(decode_results(sig, &buffer, endianness)?)
    }

    fn entry_for(&self, sig: &ir::Signature) -> Result<u64, CallError> {
        match self.entries.get(sig) {
            Some(&entry) => Ok(entry),
            None => Err(CallError::Failed(
                self.unusable
                    .get(sig)
                    .cloned()
                    .unwrap_or_else(|| Error::Signature(format!("no entry trampoline for {sig}"))),
            )),
        }
    }

    /// What a finished `call_entry` means: `Ok` when the callee returned
    /// (its results are in `buffer`), else the trap, exception or failure.
    #[inline]
    fn outcome(&self, services: &mut CallServices<'_, M>, buffer: &[u8]) -> Result<(), CallError> {
        let status = header_word(buffer, STATUS_OFFSET, self.arch.endianness());
        if status == STATUS_RETURNED && services.fault.is_none() {
            return Ok(());
        }
        Err(self.failed_outcome(services, status))
    }

    /// [`JitModule::outcome`] of a call that did not return.
    #[cold]
    fn failed_outcome(&self, services: &mut CallServices<'_, M>, status: u64) -> CallError {
        if let Some(fault) = services.fault {
            if fault.kind == FaultKind::Interrupted {
                return CallError::Interrupted;
            }
            let recorded = &services.frames[..services.depth];
            // SAFETY: `record_frames` wrote the first `depth` entries, and
            // `MaybeUninit<u64>` has `u64`'s layout (read in place: no
            // allocation on the trap path).
            let frames =
                unsafe { &*(recorded as *const [std::mem::MaybeUninit<u64>] as *const [u64]) };
            return self.trap(&fault, frames);
        }
        if status != STATUS_EXCEPTION {
            return CallError::Failed(Error::Machine(format!(
                "the entry trampoline left status {status:#x}"
            )));
        }
        match std::mem::take(&mut services.pending) {
            Pending::Uncaught { tag, payloads } => CallError::Exception { tag, payloads },
            Pending::Interrupted => CallError::Interrupted,
            Pending::Failed(e) => CallError::Failed(e),
            Pending::None => CallError::Failed(Error::Unwind(
                "an exception reached the entry without passing the throw service".into(),
            )),
        }
    }

    /// Resolve the function called `name` once, for [`JitModule::call_raw`]:
    /// its address, its signature's entry trampoline and the buffer size a
    /// call needs.
    pub fn raw_entry(&self, name: &str) -> Result<RawEntry, CallError> {
        let symbol = symbol_name(name);
        let sig = self
            .signatures
            .get(&symbol)
            .ok_or_else(|| Error::Signature(format!("no function {symbol} in this module")))?;
        let trampoline = self.entry_for(sig)?;
        Ok(RawEntry {
            module: self.id,
            trampoline,
            callee: self.symbols[&symbol],
            buffer_size: trampoline::buffer_size(sig),
        })
    }

    /// Call through `entry` (from [`JitModule::raw_entry`] of this module)
    /// with a buffer the caller encoded: the [`crate::trampoline`] header
    /// followed by one [`crate::trampoline::SLOT_SIZE`]-byte slot per value,
    /// in the target's byte order (what [`crate::values::encode_arguments`]
    /// produces). On `Ok` the results are in the slots. Outcomes are those of
    /// [`JitModule::call`]; what this skips is the name lookup and the
    /// `DataValue` encoding and decoding, so a caller can reuse one buffer
    /// (the header's handler record is cleared before each call).
    pub fn call_raw(&self, entry: &RawEntry, buffer: &mut [u8]) -> Result<(), CallError> {
        if entry.module != self.id {
            return Err(CallError::Failed(Error::Signature(
                "a RawEntry of another module".into(),
            )));
        }
        if buffer.len() < entry.buffer_size {
            return Err(CallError::Failed(Error::Signature(format!(
                "a buffer of {} bytes, the signature needs {}",
                buffer.len(),
                entry.buffer_size
            ))));
        }
        // A reused buffer still holds its last call's handler record.
        EntryHandler::clear(buffer);
        let mut services = CallServices::new(self);
        // SAFETY: `entry` was resolved by this module (checked above): its
        // trampoline and callee are installed code of this module, the
        // buffer is at least the size the signature needs, and its handler
        // record is cleared.
        unsafe {
            // The host CPU's machine directly: its entry inlines here.
            match self.native_machine() {
                Some(native) => {
                    native.enter(entry.trampoline, entry.callee, buffer, &mut services)?
                }
                None => self.machine.call_installed_entry(
                    entry.trampoline,
                    entry.callee,
                    buffer,
                    &mut services,
                )?,
            }
        }
        self.outcome(&mut services, buffer)
    }

    /// The machine as the [`NativeMachine`] it is, if it is one: known
    /// without a dynamic call, so that `call_raw` inlines its entry.
    #[inline(always)]
    fn native_machine(&self) -> Option<&NativeMachine> {
        // SAFETY: `native` says the machine answered `as_any` with itself
        // as a `NativeMachine` (`is_native` checked the type and the
        // address), and the box keeps that value, in place, as long as the
        // module.
        self.native
            .then(|| unsafe { &*(self.machine.as_ref() as *const M).cast::<NativeMachine>() })
    }

    /// The key ([`symbol_name`]) of function `id`.
    pub(crate) fn func_key(&self, id: FuncId) -> String {
        jit::func_key(&self.declarations, id)
    }

    /// What a fault delivered to the entry means.
    fn trap(&self, fault: &Fault, frames: &[u64]) -> CallError {
        let backtrace = || {
            frames
                .iter()
                .enumerate()
                .filter_map(|(i, &pc)| {
                    let f = self.table.function(if i == 0 { pc } else { pc - 1 })?;
                    Some(BacktraceFrame {
                        function: f.name.clone(),
                        offset: pc - f.start,
                    })
                })
                .collect()
        };
        if fault.kind == FaultKind::InstructionFetch {
            return CallError::Trap {
                code: BAD_CODE_ADDRESS,
                pc: fault.pc,
                function: String::new(),
                address: None,
                backtrace: backtrace(),
            };
        }
        let Some(function) = self.table.function(fault.pc) else {
            return CallError::Failed(Error::Machine(format!(
                "{:?} at {:#x}, outside JIT code",
                fault.kind, fault.pc
            )));
        };
        // A trap site wins over the stack-guard guess: a heap access may
        // fault on memory that happens to lie just below a thread's stack,
        // while the accesses that overflow the stack (pushes, calls, spill
        // stores) are not trap sites.
        let skew = self.arch.spec().trap_record_skew();
        let code = function
            .trap_at_instruction(fault.pc, skew)
            .map(|t| t.code)
            .or((fault.kind == FaultKind::StackOverflow).then_some(TrapCode::STACK_OVERFLOW));
        match code {
            Some(code) => CallError::Trap {
                code,
                pc: fault.pc,
                function: function.name.clone(),
                backtrace: backtrace(),
                address: fault.address.filter(|_| {
                    matches!(
                        fault.kind,
                        FaultKind::MemoryAccess | FaultKind::StackOverflow
                    )
                }),
            },
            None => CallError::Failed(Error::Machine(format!(
                "{:?} at {:#x} ({}+{:#x}{}), which is not a trap site",
                fault.kind,
                fault.pc,
                function.name,
                fault.pc - function.start,
                fault
                    .address
                    .map(|a| format!(", accessing {a:#x}"))
                    .unwrap_or_default()
            ))),
        }
    }
}

/// Where [`install_stubs`] put the ISA's stubs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StubAddresses {
    /// The throw stub: what `%__cranelift_throw` resolves to.
    pub throw: u64,
    /// The resume stub (`fn(context)` with the C convention, never returns).
    pub resume: u64,
    /// The throw-to-entry stub, calling [`HostFunction::ThrowToEntry`]:
    /// what [`THROW_TO_ENTRY_SYMBOL`] resolves to.
    pub throw_to_entry: u64,
}

/// Install `[host literal][throw stub][resume stub]` and `[host
/// literal][throw-to-entry stub]` on `machine` (each literal 8-byte
/// aligned), the literals pointing at the machine's [`HostFunction::Throw`]
/// and [`HostFunction::ThrowToEntry`]. A stub reads its literal from the 8
/// bytes before its first instruction; the throw stub falls through into
/// the resume stub after its last.
pub fn install_stubs<M: ?Sized + Machine>(machine: &mut M) -> Result<StubAddresses, Error> {
    let arch = machine.arch();
    let spec = arch.spec();
    let stubs: [(HostFunction, &[&[u8]]); 2] = [
        (
            HostFunction::Throw,
            &[spec.throw_stub().code, spec.resume_stub().code],
        ),
        (HostFunction::ThrowToEntry, &[spec.to_entry_stub().code]),
    ];
    let mut bytes = Vec::new();
    let mut at = [0; 2];
    for (i, (host, code)) in stubs.into_iter().enumerate() {
        bytes.resize(bytes.len().next_multiple_of(8), 0);
        let address = machine.host_function_address(host)?;
        bytes.extend_from_slice(&arch.endianness().write_u64(address));
        at[i] = bytes.len() as u64;
        code.iter().for_each(|c| bytes.extend_from_slice(c));
    }
    let base = machine.allocate_code(bytes.len())?;
    // SAFETY: the ISA's own stubs, whose literals are the machine's host
    // functions.
    unsafe { machine.install_code(base, &bytes)? };
    Ok(StubAddresses {
        throw: base + at[0],
        resume: base + at[0] + spec.throw_stub().code.len() as u64,
        throw_to_entry: base + at[1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_built_on_the_stack_are_the_symbol_names() {
        let long = "x".repeat(100);
        for name in [
            "f",
            "%f",
            "u0:1",
            "u1",
            "é",
            &long[..63],
            &long[..64],
            &long,
        ] {
            let expected = symbol_name(name);
            with_symbol_name(name, |symbol| assert_eq!(symbol, expected, "{name}"));
        }
        assert_eq!(symbol_name("f"), "%f");
        assert_eq!(symbol_name("%f"), "%f");
        assert_eq!(symbol_name("u0:1"), "u0:1");
        assert_eq!(symbol_name("u1"), "%u1");
    }
}
