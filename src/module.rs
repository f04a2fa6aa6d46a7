//! Compile, link, load and call: a set of CLIF functions on one machine.

use std::collections::HashMap;

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir;
use cranelift_codegen::isa::TargetIsa;

use std::sync::Arc;

use cranelift_codegen::ir::{TrapCode, types};
use cranelift_codegen::isa::OwnedTargetIsa;

use crate::compile::{CompiledFunction, RelocTarget, compile_function};
use crate::error::Error;
use crate::host::{self, HostImport, HostResult, HostStatus, HostThrow};
use crate::isa::{Arch, Endianness};
use crate::link::{Image, image_size, link};
use crate::machine::{Fault, FaultKind, HostFunction, HostServices, Machine};
use crate::memory::Memory;
use crate::trampoline::{self, STATUS_EXCEPTION, STATUS_OFFSET, STATUS_RETURNED, VALUES_OFFSET};
use crate::unwind::{self, Delivery};
use crate::values::{decode_results, decode_slots, encode_arguments, encode_slots, header_word};

/// The symbol JIT code calls to throw, as upstream's run tests name it.
pub const THROW_SYMBOL: &str = "%__cranelift_throw";

/// The symbol JIT code calls to throw straight to the innermost entry, in
/// O(1): `fn(tag: i32, payload1: i64, payload2: i64)` with the target's C
/// convention (`system_v`); it does not return. The call's outcome is
/// [`CallError::Exception`] with that tag and those payloads, whatever
/// handlers the frames in between have.
pub const THROW_TO_ENTRY_SYMBOL: &str = "%__cranelift_exn_throw_to_entry";

/// The trap code of a call or jump from JIT code to an address that holds
/// no code (`call_indirect` to 0, or to a data page): the
/// [`CallError::Trap`]'s `pc` is that address and its `function` is empty.
/// It is the highest user trap code, `user250`; CLIF that traps with
/// `user250` itself cannot be told apart from it.
pub const BAD_CODE_ADDRESS: TrapCode = TrapCode::unwrap_user(250);

/// Why a call did not return values.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    },
    /// Something failed: bad arguments, the machine, the unwinder, or a host
    /// function that panicked.
    Failed(Error),
}

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
            CallError::Trap { code, pc, function } => {
                write!(f, "trap {code} at {pc:#x} in {function}")
            }
            CallError::Failed(e) => e.fmt(f),
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
    Failed(Error),
}

/// The host side of one call: throws, faults and host functions.
struct CallServices<'m> {
    module: &'m Module,
    pending: Pending,
    /// A fault delivered to the entry (written from a signal handler
    /// natively, so a plain `Copy` value).
    fault: Option<Fault>,
    /// Set by a host function's outcome: the next throw goes straight to the
    /// entry (a [`HostThrow::ToEntry`], or a panic) with this pending state.
    direct: Option<Pending>,
}

impl CallServices<'_> {
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
        let args = decode_slots(&sig.params, bytes, endianness)?;
        let module = self.module;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (import.func)(module, &args)
        }));
        let throw = |memory: &mut dyn Memory, tag: u32, payloads: [u64; 2]| {
            // The glue loads the tag as an i32 from the frame's first word.
            let tag = match memory.endianness() {
                Endianness::Little => tag.to_le_bytes(),
                Endianness::Big => tag.to_be_bytes(),
            };
            memory.write(frame + host::TAG_OFFSET, &tag)?;
            memory.write_u64(frame + host::PAYLOAD0_OFFSET, payloads[0])?;
            memory.write_u64(frame + host::PAYLOAD1_OFFSET, payloads[1])?;
            Ok::<_, Error>(HostStatus::Threw)
        };
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
                    throw(memory, 0, [0; 2])
                }
            },
            Ok(Err(HostThrow::Exception { tag, payloads })) => throw(memory, tag, payloads),
            Ok(Err(HostThrow::ToEntry { tag, payloads })) => {
                self.direct = Some(Pending::Uncaught { tag, payloads });
                throw(memory, tag, payloads)
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                self.direct = Some(Pending::Failed(Error::Machine(format!(
                    "host function {} panicked: {message}",
                    import.name
                ))));
                throw(memory, 0, [0; 2])
            }
        }
    }
}

impl HostServices for CallServices<'_> {
    fn throw_to_entry(
        &mut self,
        memory: &mut dyn Memory,
        ctx: u64,
        buffer: u64,
    ) -> Result<(), Error> {
        let (tag, payloads) = unwind::throw_to_entry(memory, ctx, buffer)?;
        self.pending = Pending::Uncaught { tag, payloads };
        Ok(())
    }

    fn throw(&mut self, memory: &mut dyn Memory, ctx: u64, buffer: u64) -> Result<(), Error> {
        if let Some(pending) = self.direct.take() {
            // O(1): no walk at all.
            self.pending = pending;
            return unwind::to_entry(memory, ctx, buffer, [0; 2]);
        }
        match unwind::throw(
            self.module.image.arch,
            &self.module.image.table,
            memory,
            ctx,
        ) {
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

    fn fault(&mut self, fault: &Fault) -> bool {
        // Runs in a signal handler natively: a lookup and a `Copy` store.
        // A fetch fault's pc is outside any code (the machine saw JIT code
        // jump there).
        if fault.kind != FaultKind::InstructionFetch
            && self.module.image.table.function(fault.pc).is_none()
        {
            return false;
        }
        self.fault = Some(*fault);
        true
    }

    fn call_host(&mut self, memory: &mut dyn Memory, index: u64, frame: u64) -> Result<u64, Error> {
        self.run_host(memory, index, frame).map(|s| s as u64)
    }
}

/// Collects functions (CLIF text or built with `cranelift_frontend`) and
/// host functions, then compiles, links and loads them as a [`Module`].
///
/// Names are CLIF names: `%name` for test-case names (the `%` may be
/// omitted in this API) or `u0:1` for user names. A function may call any
/// function or host function of the builder, and Cranelift libcalls
/// (`CeilF32`, `FmaF64`, ...) that the target lacks instructions for.
pub struct ModuleBuilder {
    isa: OwnedTargetIsa,
    functions: Vec<ir::Function>,
    declared: Vec<(String, ir::Signature)>,
    hosts: Vec<HostImport>,
}

/// `name` as a CLIF symbol: `%name` unless it already is one (`%x`, `u0:1`).
pub fn symbol_name(name: &str) -> String {
    let is_user = name.strip_prefix('u').is_some_and(|rest| {
        rest.contains(':') && rest.chars().all(|c| c.is_ascii_digit() || c == ':')
    });
    if name.starts_with('%') || is_user {
        name.to_string()
    } else {
        format!("%{name}")
    }
}

impl ModuleBuilder {
    /// An empty module for `isa` (see [`crate::compile::build_isa`]).
    pub fn new(isa: OwnedTargetIsa) -> ModuleBuilder {
        ModuleBuilder {
            isa,
            functions: Vec::new(),
            declared: Vec::new(),
            hosts: Vec::new(),
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
        if let Some((_, existing)) = self.declared.iter().find(|(n, _)| *n == symbol)
            && *existing != signature
        {
            return Err(Error::Signature(format!(
                "{symbol} is declared as {existing}, not {signature}"
            )));
        }
        self.declared.push((symbol.clone(), signature));
        Ok(symbol)
    }

    /// Define a function (its name is its symbol).
    pub fn define_function(&mut self, func: ir::Function) -> Result<(), Error> {
        let symbol = func.name.to_string();
        if self.is_defined(&symbol) {
            return Err(Error::Compile {
                function: symbol,
                message: "defined twice".into(),
            });
        }
        if let Some((_, declared)) = self.declared.iter().find(|(n, _)| *n == symbol)
            && *declared != func.signature
        {
            return Err(Error::Signature(format!(
                "{symbol} is declared as {declared} but defined as {}",
                func.signature
            )));
        }
        self.functions.push(func);
        Ok(())
    }

    /// Define every function in CLIF `text`; returns their symbols.
    pub fn define_clif(&mut self, text: &str) -> Result<Vec<String>, Error> {
        let functions = cranelift_reader::parse_functions(text).map_err(|e| Error::Parse {
            location: format!("line {}", e.location.line_number),
            message: e.message,
        })?;
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
        if self.is_defined(&symbol) {
            return Err(Error::Compile {
                function: symbol,
                message: "defined twice".into(),
            });
        }
        self.hosts.push(HostImport {
            name: symbol.clone(),
            signature,
            func: Arc::new(func),
        });
        Ok(symbol)
    }

    fn is_defined(&self, symbol: &str) -> bool {
        self.functions.iter().any(|f| f.name.to_string() == symbol)
            || self.hosts.iter().any(|h| h.name == symbol)
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
        Module::build(machine, self.isa.as_ref(), self.functions, self.hosts)
    }
}

/// A set of functions compiled, linked and loaded on one [`Machine`].
///
/// Calls take `&self`: a host function may call back into the module
/// (entries nest), and each call gets its own outcome.
pub struct Module {
    machine: Box<dyn Machine>,
    image: Image,
    signatures: HashMap<String, ir::Signature>,
    entries: HashMap<ir::Signature, u64>,
    unusable: HashMap<ir::Signature, Error>,
    hosts: Vec<HostImport>,
    throw_stub: u64,
    /// Tells this module's [`RawEntry`]s from other modules'.
    id: u64,
}

/// A function's entry resolved by [`Module::raw_entry`], for
/// [`Module::call_raw`].
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

/// Source of [`Module`] ids.
static NEXT_MODULE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Module {
    /// Compile `functions` for `isa`, add entry trampolines for their
    /// signatures, link and load everything on `machine`.
    pub fn new(
        machine: Box<dyn Machine>,
        isa: &dyn TargetIsa,
        functions: Vec<ir::Function>,
    ) -> Result<Module, Error> {
        Module::build(machine, isa, functions, Vec::new())
    }

    fn build(
        mut machine: Box<dyn Machine>,
        isa: &dyn TargetIsa,
        functions: Vec<ir::Function>,
        mut hosts: Vec<HostImport>,
    ) -> Result<Module, Error> {
        let arch = machine.arch();
        if Arch::from_triple(isa.triple()) != Some(arch) {
            return Err(Error::Machine(format!(
                "a {arch} machine cannot run code for {}",
                isa.triple()
            )));
        }
        let stubs = install_stubs(machine.as_mut())?;
        let dispatcher = machine.host_function_address(HostFunction::Call)?;

        let mut signatures = HashMap::new();
        let mut compiled: Vec<CompiledFunction> = Vec::new();
        let mut distinct: Vec<ir::Signature> = Vec::new();
        for func in functions {
            let sig = func.signature.clone();
            if !distinct.contains(&sig) {
                distinct.push(sig.clone());
            }
            let f = compile_function(isa, func)?;
            signatures.insert(f.name.clone(), sig);
            compiled.push(f);
        }

        // Libcalls the code refers to and nothing defines become host
        // functions.
        let mut wanted_libcalls = Vec::new();
        for f in &compiled {
            for r in &f.relocs {
                if let RelocTarget::Symbol(name) = &r.target
                    && !signatures.contains_key(name)
                    && !hosts.iter().any(|h| h.name == *name)
                    && let Some(call) = host::libcall_named(name)
                    && let Some(op) = host::libcall(call)
                    && !wanted_libcalls.iter().any(|(n, _)| n == name)
                {
                    wanted_libcalls.push((name.clone(), (call, op)));
                }
            }
        }
        for (name, (call, op)) in wanted_libcalls {
            let signature = call.signature(isa.default_call_conv(), types::I64);
            hosts.push(HostImport {
                name: name.clone(),
                signature,
                func: Arc::new(move |_, args| {
                    op(args).map(|v| vec![v]).ok_or(HostThrow::ToEntry {
                        tag: 0,
                        payloads: [0; 2],
                    })
                }),
            });
        }
        let unpadded = crate::compile::glue_isa(isa)?;
        let glue_isa = unpadded.as_deref().unwrap_or(isa);
        for (index, import) in hosts.iter().enumerate() {
            let text = host::glue_clif(import, index);
            let funcs = cranelift_reader::parse_functions(&text).map_err(|e| Error::Compile {
                function: import.name.clone(),
                message: format!("host function glue: {e}"),
            })?;
            for func in funcs {
                compiled.push(compile_function(glue_isa, func)?);
            }
        }

        // A signature whose trampoline does not compile (say, a vector type
        // the target flags cannot load) only makes calls of that signature
        // fail, not the whole module.
        let mut entry_names = Vec::new();
        let mut unusable = HashMap::new();
        for (index, sig) in distinct.iter().enumerate() {
            match compile_trampolines(glue_isa, sig, index) {
                Ok(pair) => {
                    compiled.extend(pair);
                    entry_names.push((sig.clone(), trampoline::names(index).0));
                }
                // A Cranelift panic is not a limit of the target's flags.
                Err(e @ Error::CompilerPanic { .. }) => return Err(e),
                Err(e) => {
                    unusable.insert(sig.clone(), e);
                }
            }
        }

        let size = image_size(arch, &compiled);
        let base = machine.allocate_code(size)?;
        let host_symbols = HashMap::from([
            (THROW_SYMBOL.to_string(), stubs.throw),
            (THROW_TO_ENTRY_SYMBOL.to_string(), stubs.throw_to_entry),
            (host::DISPATCH_SYMBOL.to_string(), dispatcher),
        ]);
        let image = link(arch, &compiled, base, &host_symbols)?;
        machine.install_code(base, &image.code)?;
        let entries = entry_names
            .into_iter()
            .map(|(sig, name)| (sig, image.symbols[&name]))
            .collect();
        Ok(Module {
            machine,
            image,
            signatures,
            entries,
            unusable,
            hosts,
            throw_stub: stubs.throw,
            id: NEXT_MODULE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The linked image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Address of the throw stub (what `%__cranelift_throw` resolves to).
    pub fn throw_stub(&self) -> u64 {
        self.throw_stub
    }

    /// The machine the module runs on.
    pub fn machine(&self) -> &dyn Machine {
        self.machine.as_ref()
    }

    /// The signature of the function called `name` (`%name`, `name` or
    /// `u0:1`).
    pub fn signature(&self, name: &str) -> Option<&ir::Signature> {
        self.signatures.get(&symbol_name(name))
    }

    /// Call the function called `name` (`%name`, `name` or `u0:1`) with
    /// `args`. Entries nest: a host function may call this again.
    pub fn call(&self, name: &str, args: &[DataValue]) -> Result<Vec<DataValue>, CallError> {
        let symbol = symbol_name(name);
        let sig = self
            .signatures
            .get(&symbol)
            .ok_or_else(|| Error::Signature(format!("no function {symbol} in this module")))?;
        let callee = self.image.symbols[&symbol];
        let Some(&entry) = self.entries.get(sig) else {
            return Err(CallError::Failed(
                self.unusable
                    .get(sig)
                    .cloned()
                    .unwrap_or_else(|| Error::Signature(format!("no entry trampoline for {sig}"))),
            ));
        };
        let endianness = self.machine.arch().endianness();
        let mut buffer = encode_arguments(sig, args, endianness)?;
        let mut services = CallServices {
            module: self,
            pending: Pending::None,
            fault: None,
            direct: None,
        };
        self.machine
            .call_entry(entry, callee, &mut buffer, &mut services)?;
        self.outcome(&mut services, &buffer)?;
        Ok(decode_results(sig, &buffer, endianness)?)
    }

    /// What a finished `call_entry` means: `Ok` when the callee returned
    /// (its results are in `buffer`), else the trap, exception or failure.
    #[inline]
    fn outcome(&self, services: &mut CallServices<'_>, buffer: &[u8]) -> Result<(), CallError> {
        let status = header_word(buffer, STATUS_OFFSET, self.image.arch.endianness());
        if status == STATUS_RETURNED && services.fault.is_none() {
            return Ok(());
        }
        Err(self.failed_outcome(services, status))
    }

    /// [`Module::outcome`] of a call that did not return.
    #[cold]
    fn failed_outcome(&self, services: &mut CallServices<'_>, status: u64) -> CallError {
        if let Some(fault) = services.fault {
            return self.trap(&fault);
        }
        if status != STATUS_EXCEPTION {
            return CallError::Failed(Error::Machine(format!(
                "the entry trampoline left status {status:#x}"
            )));
        }
        match std::mem::take(&mut services.pending) {
            Pending::Uncaught { tag, payloads } => CallError::Exception { tag, payloads },
            Pending::Failed(e) => CallError::Failed(e),
            Pending::None => CallError::Failed(Error::Unwind(
                "an exception reached the entry without passing the throw service".into(),
            )),
        }
    }

    /// Resolve the function called `name` once, for [`Module::call_raw`]:
    /// its address, its signature's entry trampoline and the buffer size a
    /// call needs.
    pub fn raw_entry(&self, name: &str) -> Result<RawEntry, CallError> {
        let symbol = symbol_name(name);
        let sig = self
            .signatures
            .get(&symbol)
            .ok_or_else(|| Error::Signature(format!("no function {symbol} in this module")))?;
        let Some(&trampoline) = self.entries.get(sig) else {
            return Err(CallError::Failed(
                self.unusable
                    .get(sig)
                    .cloned()
                    .unwrap_or_else(|| Error::Signature(format!("no entry trampoline for {sig}"))),
            ));
        };
        Ok(RawEntry {
            module: self.id,
            trampoline,
            callee: self.image.symbols[&symbol],
            buffer_size: trampoline::buffer_size(sig),
        })
    }

    /// Call through `entry` (from [`Module::raw_entry`] of this module) with
    /// a buffer the caller encoded: the [`crate::trampoline`] header
    /// followed by one [`crate::trampoline::SLOT_SIZE`]-byte slot per value,
    /// in the target's byte order (what [`crate::values::encode_arguments`]
    /// produces). On `Ok` the results are in the slots. Outcomes are those of
    /// [`Module::call`]; what this skips is the name lookup and the
    /// `DataValue` encoding and decoding, so a caller can reuse one buffer.
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
        let mut services = CallServices {
            module: self,
            pending: Pending::None,
            fault: None,
            direct: None,
        };
        match self.machine.as_native() {
            Some(native) => native.enter(entry.trampoline, entry.callee, buffer, &mut services)?,
            None => {
                self.machine
                    .call_entry(entry.trampoline, entry.callee, buffer, &mut services)?
            }
        }
        self.outcome(&mut services, buffer)
    }

    /// What a fault delivered to the entry means.
    fn trap(&self, fault: &Fault) -> CallError {
        if fault.kind == FaultKind::InstructionFetch {
            return CallError::Trap {
                code: BAD_CODE_ADDRESS,
                pc: fault.pc,
                function: String::new(),
            };
        }
        let Some(function) = self.image.table.function(fault.pc) else {
            return CallError::Failed(Error::Machine(format!(
                "{:?} at {:#x}, outside JIT code",
                fault.kind, fault.pc
            )));
        };
        // A trap site wins over the stack-guard guess: a heap access may
        // fault on memory that happens to lie just below a thread's stack,
        // while the accesses that overflow the stack (pushes, calls, spill
        // stores) are not trap sites.
        let skew = self.image.arch.spec().trap_record_skew();
        let code = function
            .trap_at_instruction(fault.pc, skew)
            .map(|t| t.code)
            .or((fault.kind == FaultKind::StackOverflow).then_some(TrapCode::STACK_OVERFLOW));
        match code {
            Some(code) => CallError::Trap {
                code,
                pc: fault.pc,
                function: function.name.clone(),
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

fn compile_trampolines(
    isa: &dyn TargetIsa,
    sig: &ir::Signature,
    index: usize,
) -> Result<Vec<CompiledFunction>, Error> {
    let text = trampoline::clif(sig, index);
    let funcs = cranelift_reader::parse_functions(&text).map_err(|e| Error::Compile {
        function: trampoline::names(index).0,
        message: format!("entry trampoline for {sig}: {e}"),
    })?;
    funcs
        .into_iter()
        .map(|func| compile_function(isa, func))
        .collect()
}

/// Where [`install_stubs`] put the ISA's stubs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StubAddresses {
    /// The throw stub: what `%__cranelift_throw` resolves to.
    pub throw: u64,
    /// The resume stub (`fn(context)` with the C convention, never returns).
    pub resume: u64,
    /// The throw stub's code again, calling [`HostFunction::ThrowToEntry`]:
    /// what [`THROW_TO_ENTRY_SYMBOL`] resolves to.
    pub throw_to_entry: u64,
}

/// Install `[host literal][throw stub][resume stub]` twice on `machine`
/// (the second copy 8-byte aligned), the literals pointing at the machine's
/// [`HostFunction::Throw`] and [`HostFunction::ThrowToEntry`]. A throw stub
/// reads its literal from the 8 bytes before its first instruction and
/// falls through into the resume stub after its last.
pub fn install_stubs(machine: &mut dyn Machine) -> Result<StubAddresses, Error> {
    let arch = machine.arch();
    let spec = arch.spec();
    let throw = spec.throw_stub();
    let resume = spec.resume_stub();
    let mut bytes = Vec::with_capacity(2 * (16 + throw.code.len() + resume.code.len()));
    let mut throw_at = [0; 2];
    for (i, host) in [HostFunction::Throw, HostFunction::ThrowToEntry]
        .into_iter()
        .enumerate()
    {
        bytes.resize(bytes.len().next_multiple_of(8), 0);
        let address = machine.host_function_address(host)?;
        bytes.extend_from_slice(&arch.endianness().write_u64(address));
        throw_at[i] = bytes.len() as u64;
        bytes.extend_from_slice(throw.code);
        bytes.extend_from_slice(resume.code);
    }
    let base = machine.allocate_code(bytes.len())?;
    machine.install_code(base, &bytes)?;
    Ok(StubAddresses {
        throw: base + throw_at[0],
        resume: base + throw_at[0] + throw.code.len() as u64,
        throw_to_entry: base + throw_at[1],
    })
}
