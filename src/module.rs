//! Compile, link, load and call: a set of CLIF functions on one machine.

use std::collections::HashMap;

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir;
use cranelift_codegen::isa::TargetIsa;

use crate::compile::{CompiledFunction, compile_function};
use crate::error::Error;
use crate::exception_table::ExceptionTable;
use crate::isa::{Arch, context};
use crate::link::{Image, image_size, link};
use crate::machine::{HostFunction, HostServices, Machine};
use crate::memory::Memory;
use crate::trampoline::{
    self, HANDLER_FP_OFFSET, HANDLER_PC_OFFSET, HANDLER_SP_OFFSET, STATUS_EXCEPTION, STATUS_OFFSET,
};
use crate::unwind::{self, Delivery};
use crate::values::{decode_results, encode_arguments, header_word};

/// The symbol JIT code calls to throw, as upstream's run tests name it.
pub const THROW_SYMBOL: &str = "%__cranelift_throw";

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
    /// Something failed: bad arguments, the machine, or the unwinder.
    Failed(Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Exception { tag, payloads } => write!(
                f,
                "uncaught exception tag{tag} (payloads {:#x}, {:#x})",
                payloads[0], payloads[1]
            ),
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

/// What the throw service left for the entry trampoline's caller.
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

/// The host side of `__cranelift_throw` for one module.
struct ThrowService {
    arch: Arch,
    table: ExceptionTable,
    pending: Pending,
}

impl HostServices for ThrowService {
    fn throw(&mut self, memory: &mut dyn Memory, ctx: u64, buffer: u64) -> Result<(), Error> {
        match unwind::throw(self.arch, &self.table, memory, ctx) {
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
                // straight to the entry trampoline's handler, whose address,
                // stack and frame pointer it recorded in the buffer. Its
                // try_call clobbers every register, so no other state is due.
                self.pending = Pending::Failed(error);
                let pc = memory.read_u64(buffer + HANDLER_PC_OFFSET as u64)?;
                let sp = memory.read_u64(buffer + HANDLER_SP_OFFSET as u64)?;
                let fp = memory.read_u64(buffer + HANDLER_FP_OFFSET as u64)?;
                for (index, value) in [
                    (context::PC, pc),
                    (context::SP, sp),
                    (context::FP, fp),
                    (context::PAYLOAD0, 0),
                    (context::PAYLOAD1, 0),
                ] {
                    memory.write_u64(ctx + 8 * index as u64, value)?;
                }
                Ok(())
            }
        }
    }
}

/// A set of functions compiled, linked and loaded on one [`Machine`].
pub struct Module {
    machine: Box<dyn Machine>,
    image: Image,
    signatures: HashMap<String, ir::Signature>,
    entries: HashMap<ir::Signature, u64>,
    unusable: HashMap<ir::Signature, Error>,
    service: ThrowService,
    throw_stub: u64,
}

impl Module {
    /// Compile `functions` for `isa`, add entry trampolines for their
    /// signatures, link and load everything on `machine`.
    pub fn new(
        mut machine: Box<dyn Machine>,
        isa: &dyn TargetIsa,
        functions: Vec<ir::Function>,
    ) -> Result<Module, Error> {
        let arch = machine.arch();
        if Arch::from_triple(isa.triple()) != Some(arch) {
            return Err(Error::Machine(format!(
                "a {arch} machine cannot run code for {}",
                isa.triple()
            )));
        }
        let throw_stub = install_stubs(machine.as_mut())?.throw;

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
        // A signature whose trampoline does not compile (say, a vector type
        // the target flags cannot load) only makes calls of that signature
        // fail, not the whole module.
        let mut entry_names = Vec::new();
        let mut unusable = HashMap::new();
        for (index, sig) in distinct.iter().enumerate() {
            match compile_trampolines(isa, sig, index) {
                Ok(pair) => {
                    compiled.extend(pair);
                    entry_names.push((sig.clone(), trampoline::names(index).0));
                }
                Err(e) => {
                    unusable.insert(sig.clone(), e);
                }
            }
        }

        let size = image_size(arch, &compiled);
        let base = machine.allocate_code(size)?;
        let host = HashMap::from([(THROW_SYMBOL.to_string(), throw_stub)]);
        let image = link(arch, &compiled, base, &host)?;
        machine.install_code(base, &image.code)?;
        let entries = entry_names
            .into_iter()
            .map(|(sig, name)| (sig, image.symbols[&name]))
            .collect();
        Ok(Module {
            machine,
            service: ThrowService {
                arch,
                table: image.table.clone(),
                pending: Pending::None,
            },
            image,
            signatures,
            entries,
            unusable,
            throw_stub,
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
    pub fn machine(&mut self) -> &mut dyn Machine {
        self.machine.as_mut()
    }

    /// The signature of the function called `name`.
    pub fn signature(&self, name: &str) -> Option<&ir::Signature> {
        self.signatures.get(name)
    }

    /// Call the function called `name` (`%name` or `u0:1`) with `args`.
    pub fn call(&mut self, name: &str, args: &[DataValue]) -> Result<Vec<DataValue>, CallError> {
        let sig = self
            .signatures
            .get(name)
            .ok_or_else(|| Error::Signature(format!("no function {name} in this module")))?
            .clone();
        let callee = self.image.symbols[name];
        let Some(&entry) = self.entries.get(&sig) else {
            return Err(CallError::Failed(
                self.unusable
                    .get(&sig)
                    .cloned()
                    .unwrap_or_else(|| Error::Signature(format!("no entry trampoline for {sig}"))),
            ));
        };
        let endianness = self.machine.arch().endianness();
        let mut buffer = encode_arguments(&sig, args, endianness)?;
        self.service.pending = Pending::None;
        self.machine
            .call_entry(entry, callee, &mut buffer, &mut self.service)?;
        let status = header_word(&buffer, STATUS_OFFSET, endianness);
        let pending = std::mem::take(&mut self.service.pending);
        if status == STATUS_EXCEPTION {
            return Err(match pending {
                Pending::Uncaught { tag, payloads } => CallError::Exception { tag, payloads },
                Pending::Failed(e) => CallError::Failed(e),
                Pending::None => CallError::Failed(Error::Unwind(
                    "an exception reached the entry without passing the throw service".into(),
                )),
            });
        }
        Ok(decode_results(&sig, &buffer, endianness)?)
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
}

/// Install `[host literal][throw stub][resume stub]` on `machine`, the
/// literal pointing at the machine's [`HostFunction::Throw`].
pub fn install_stubs(machine: &mut dyn Machine) -> Result<StubAddresses, Error> {
    let arch = machine.arch();
    let spec = arch.spec();
    let throw = spec.throw_stub();
    let resume = spec.resume_stub();
    let mut bytes = Vec::with_capacity(8 + throw.code.len() + resume.code.len());
    let host = machine.host_function_address(HostFunction::Throw)?;
    bytes.extend_from_slice(&arch.endianness().write_u64(host));
    bytes.extend_from_slice(throw.code);
    bytes.extend_from_slice(resume.code);
    let base = machine.allocate_code(bytes.len())?;
    machine.install_code(base, &bytes)?;
    Ok(StubAddresses {
        throw: base + 8,
        resume: base + 8 + throw.code.len() as u64,
    })
}
