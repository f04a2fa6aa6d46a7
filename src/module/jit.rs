//! The definition side of [`JitModule`]: [`cranelift_module::Module`],
//! CLIF definitions, host functions, native symbols, data objects, imports
//! from other modules, and incremental [`JitModule::finalize_definitions`].
//!
//! # Names
//! Every symbol has one *key*: [`symbol_name`] of its name (`foo` and
//! `%foo` are the same symbol; `u0:1` stays as it is). A function declared
//! through `cranelift_module` as `"foo"` is what CLIF text calls `%foo`.
//! Anonymous functions and data get `%__anon_func<N>` / `%__anon_data<N>`.
//!
//! # Incremental definitions
//! Each finalize compiles nothing (functions are compiled when defined); it
//! links the functions defined since the last one into a new code region
//! and the data objects into new data regions, resolving references to
//! everything loaded before by absolute address. Loaded code is never
//! moved or rewritten. A function that refers to a function or data object
//! declared but not defined yet is *deferred*: it stays pending (not
//! callable) and is loaded by the first finalize after which everything it
//! refers to is loaded. No GOT or PLT is involved, so calls stay direct.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cranelift_codegen::Context;
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir;
use cranelift_codegen::isa::TargetIsa;
use cranelift_module::{
    DataDescription, DataId, FuncId, FuncOrDataId, Init, Linkage, ModuleDeclarations, ModuleError,
    ModuleRelocTarget, ModuleResult,
};

use rustc_hash::FxHashMap;

use super::{HostImport, JitModule, symbol_name};
use crate::abi::THROW_SYMBOL;
use crate::compile::{CompiledFunction, FunctionKind, RelocTarget, compile_function};
use crate::error::Error;
use crate::host::{self, HostResult, HostThrow};
use crate::link::{image_size, link_with};
use crate::machine::Machine;
use crate::native::NativeMachine;
use crate::trampoline;

pub use crate::abi::RESERVED_PREFIX;

/// A function compiled but not loaded yet.
pub(crate) struct PendingFunction {
    /// Compiled code; its name and relocation targets are keys.
    pub compiled: CompiledFunction,
    /// The functions it calls by name, with the signature it calls them by.
    pub calls: Vec<(String, ir::Signature)>,
}

impl PendingFunction {
    /// The first symbol it refers to that is not loaded.
    pub(crate) fn missing<M: ?Sized + Machine>(&self, module: &JitModule<M>) -> String {
        self.compiled
            .relocs
            .iter()
            .find_map(|r| match &r.target {
                RelocTarget::Symbol(s) if !module.symbols.contains_key(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// A data object defined but not loaded yet.
pub(crate) struct PendingData {
    id: DataId,
    key: String,
    bytes: Vec<u8>,
    align: u64,
    writable: bool,
    /// `(offset, target key, addend)`: an absolute 64-bit address.
    relocs: Vec<(u32, String, i64)>,
}

/// `Err` when `symbol` (a key) is reserved for the crate's own code.
pub(crate) fn check_not_reserved(symbol: &str) -> Result<(), Error> {
    if symbol == THROW_SYMBOL || symbol.starts_with(RESERVED_PREFIX) {
        return Err(Error::Compile {
            function: symbol.to_string(),
            message: format!(
                "{symbol} is reserved (the throw stubs, host dispatcher, entry trampolines \
                 and glue use {THROW_SYMBOL} and {RESERVED_PREFIX}*); it cannot be defined"
            ),
        });
    }
    Ok(())
}

/// Parse CLIF `text` into functions ([`crate::clif_text::parse_functions`]).
pub(crate) fn parse_clif(text: &str) -> Result<Vec<ir::Function>, Error> {
    crate::clif_text::parse_functions(text).map_err(|e| Error::Parse {
        location: format!("line {}", e.location.line_number),
        message: e.message,
    })
}

/// The key of function `id`.
pub(crate) fn func_key(declarations: &ModuleDeclarations, id: FuncId) -> String {
    match &declarations.get_function_decl(id).name {
        Some(name) => symbol_name(name),
        None => format!("%__anon_func{}", id.as_u32()),
    }
}

/// The key of data object `id`.
fn data_key(declarations: &ModuleDeclarations, id: DataId) -> String {
    match &declarations.get_data_decl(id).name {
        Some(name) => symbol_name(name),
        None => format!("%__anon_data{}", id.as_u32()),
    }
}

/// The declaration name of a key: `%foo` is declared as `foo`.
fn decl_name(key: &str) -> &str {
    key.strip_prefix('%').unwrap_or(key)
}

/// Whether two signatures are the same ABI: calling convention, parameter
/// and result types.
fn same_abi(a: &ir::Signature, b: &ir::Signature) -> bool {
    let types = |p: &[ir::AbiParam]| p.iter().map(|p| p.value_type).collect::<Vec<_>>();
    a.call_conv == b.call_conv
        && types(&a.params) == types(&b.params)
        && types(&a.returns) == types(&b.returns)
}

fn backend(e: impl std::fmt::Display) -> ModuleError {
    ModuleError::Backend(anyhow::anyhow!("{e}"))
}

fn from_error(e: Error) -> ModuleError {
    ModuleError::Backend(anyhow::Error::new(e))
}

impl<M: ?Sized + Machine> JitModule<M> {
    /// Define every function in CLIF `text` (exported, named as in the
    /// text); returns their keys. They load at the next finalize. Malformed
    /// text, entity numbers above [`crate::clif_text`]'s limits included, is
    /// an [`Error::Parse`] naming the line.
    pub fn define_clif(&mut self, text: &str) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        for func in parse_clif(text)? {
            keys.push(func.name.to_string());
            self.define_ir_function(func)?;
        }
        Ok(keys)
    }

    /// Define `func`, named and referring to others by CLIF name (`%name`,
    /// `u0:1`), as an exported function.
    pub fn define_ir_function(&mut self, func: ir::Function) -> Result<FuncId, Error> {
        let key = func.name.to_string();
        check_not_reserved(&key)?;
        let id = self
            .declarations
            .declare_function(decl_name(&key), Linkage::Export, &func.signature)
            .map_err(|e| Error::Signature(format!("{key}: {e}")))?
            .0;
        self.declared_keys.saw_function(id);
        if self.is_defined(&key) {
            return Err(Error::Compile {
                function: key,
                message: "defined twice".into(),
            });
        }
        let calls = called(&func, &|s| s.to_string());
        let compiled = compile_function(self.isa.as_ref(), func)?;
        self.add_pending(PendingFunction { compiled, calls });
        Ok(id)
    }

    /// Whether `key` is a loaded or pending function, data object or host
    /// function.
    fn is_defined(&self, key: &str) -> bool {
        self.defined.contains(key) || self.symbols.contains_key(key)
    }

    /// Add a function defined here to those waiting for the next finalize.
    fn add_pending(&mut self, function: PendingFunction) {
        self.defined.insert(function.compiled.name.clone());
        self.pending.push(function);
    }

    /// Add a host function (its glue loads at the next finalize).
    fn add_host(&mut self, host: HostImport<M>) {
        self.defined.insert(host.name.clone());
        self.hosts.push(host);
    }

    /// Define a host function JIT code calls as `name` with `signature`.
    /// Unlike a native symbol it runs as Rust with [`DataValue`]s, may throw
    /// into JIT handlers ([`HostThrow`]) and may call back into the module;
    /// generated glue adapts the calling convention. Declare it with
    /// `Linkage::Import` and the same signature to call it from code built
    /// through `cranelift_module`. Returns its key.
    pub fn define_host_function(
        &mut self,
        name: &str,
        signature: ir::Signature,
        func: impl Fn(&JitModule<M>, &[DataValue]) -> HostResult + Send + Sync + 'static,
    ) -> Result<String, Error> {
        let key = symbol_name(name);
        self.define_host_import(HostImport {
            name: key.clone(),
            signature,
            func: Arc::new(func),
        })?;
        Ok(key)
    }

    pub(crate) fn define_host_import(&mut self, import: HostImport<M>) -> Result<(), Error> {
        check_not_reserved(&import.name)?;
        if self.is_defined(&import.name) {
            return Err(Error::Compile {
                function: import.name,
                message: "defined twice".into(),
            });
        }
        self.add_host(import);
        Ok(())
    }

    /// Register a native symbol: JIT code calling or taking the address of
    /// `name` (declared `Linkage::Import`) uses `address` directly, with
    /// the ABI it declares and no glue — like `JITBuilder::symbol`. The
    /// code at `address` must not throw or unwind, and on an emulated
    /// machine `address` is a target address. With `signature`, calls from
    /// JIT code are checked against it at finalize.
    pub fn define_native_symbol(
        &mut self,
        name: &str,
        address: u64,
        signature: Option<ir::Signature>,
    ) -> Result<(), Error> {
        let key = symbol_name(name);
        check_not_reserved(&key)?;
        if self.is_defined(&key) {
            return Err(Error::Compile {
                function: key,
                message: "defined twice".into(),
            });
        }
        self.symbols.insert(key.clone(), address);
        if let Some(sig) = signature {
            self.foreign_signatures.insert(key, sig);
        }
        Ok(())
    }

    /// Resolve names that nothing defines with `lookup` (given the name as
    /// declared, without `%`), like `JITBuilder::symbol_lookup_fn`. Later
    /// lookups are asked first.
    pub fn add_symbol_lookup(
        &mut self,
        lookup: impl Fn(&str) -> Option<u64> + Send + Sync + 'static,
    ) {
        self.lookups.insert(0, Box::new(lookup));
    }

    /// Make every exported (`Linkage::Export` or `Preemptible`) loaded
    /// function of `other` callable from this module's code by its name
    /// (declare it `Linkage::Import`). `other` stays alive as long as this
    /// module; throws and traps in its code, called from this module's code,
    /// reach this module's handlers and entries. Both modules must run
    /// natively (on one process's memory).
    pub fn import_module(&mut self, other: &Arc<JitModule<NativeMachine>>) -> Result<(), Error> {
        if !self.machine.shares_process_memory() {
            return Err(Error::Machine(
                "only a native module can call another module's code".into(),
            ));
        }
        for (id, decl) in other.declarations.get_functions() {
            if !matches!(decl.linkage, Linkage::Export | Linkage::Preemptible) {
                continue;
            }
            let key = func_key(&other.declarations, id);
            let (Some(&address), Some(sig)) = (other.symbols.get(&key), other.signatures.get(&key))
            else {
                continue;
            };
            if self.is_defined(&key) {
                return Err(Error::Compile {
                    function: key,
                    message: "defined in this module and exported by the imported one".into(),
                });
            }
            self.symbols.insert(key.clone(), address);
            self.foreign_signatures.insert(key, sig.clone());
        }
        self.table.merge(&other.table)?;
        self.imported.push(other.clone());
        Ok(())
    }

    /// The address of loaded function `id`.
    pub fn get_finalized_function(&self, id: FuncId) -> Result<u64, Error> {
        let key = self.func_key(id);
        self.symbols.get(&key).copied().ok_or_else(|| {
            Error::Signature(format!(
                "{key} is not loaded (not defined, or waiting for a symbol it refers to)"
            ))
        })
    }

    /// Address and size of loaded data object `id`.
    pub fn get_finalized_data(&self, id: DataId) -> Result<(u64, usize), Error> {
        self.data_objects.get(&id).copied().ok_or_else(|| {
            Error::Signature(format!(
                "data {} is not loaded",
                data_key(&self.declarations, id)
            ))
        })
    }

    /// Call loaded function `id` (see [`JitModule::call`]).
    pub fn call_function(
        &self,
        id: FuncId,
        args: &[DataValue],
    ) -> Result<Vec<DataValue>, crate::CallError> {
        self.call(&self.func_key(id), args)
    }

    /// [`JitModule::raw_entry`] of loaded function `id`.
    pub fn raw_entry_of(&self, id: FuncId) -> Result<crate::module::RawEntry, crate::CallError> {
        self.raw_entry(&self.func_key(id))
    }

    /// The functions defined but not loaded, each with a symbol it waits
    /// for.
    pub fn waiting(&self) -> Vec<(String, String)> {
        self.pending
            .iter()
            .map(|p| (p.compiled.name.clone(), p.missing(self)))
            .collect()
    }

    /// [`JitModule::finalize`] with `cranelift_module`'s error type (the
    /// signature of cranelift-jit's `finalize_definitions`).
    #[allow(clippy::result_large_err)]
    pub fn finalize_definitions(&mut self) -> ModuleResult<()> {
        self.finalize().map_err(from_error)
    }

    /// Load everything defined since the last finalize whose references
    /// resolve: new code and data regions, linked against everything loaded
    /// before. Functions waiting for a declared but undefined symbol stay
    /// pending ([`JitModule::waiting`]). On `Err` nothing new is callable.
    pub fn finalize(&mut self) -> Result<(), Error> {
        self.add_wanted_libcalls();
        self.index_new_declarations();
        self.check_call_signatures()?;
        let ready = self.ready_functions()?;

        // Data objects: one region for the writable ones, one for the rest.
        let mut data_symbols = HashMap::new();
        let mut regions = Vec::new();
        for writable in [true, false] {
            let objects: Vec<usize> = (0..self.pending_data.len())
                .filter(|&i| self.pending_data[i].writable == writable)
                .collect();
            if objects.is_empty() {
                continue;
            }
            let mut offsets = Vec::new();
            let mut size = 0u64;
            let mut align = 1u64;
            for &i in &objects {
                let d = &self.pending_data[i];
                size = size.next_multiple_of(d.align);
                offsets.push(size);
                size += d.bytes.len() as u64;
                align = align.max(d.align);
            }
            let base = self.machine.allocate_data(size as usize, align)?;
            for (&i, &offset) in objects.iter().zip(&offsets) {
                data_symbols.insert(self.pending_data[i].key.clone(), base + offset);
            }
            regions.push((base, size as usize, writable, objects, offsets));
        }

        // Code: the ready functions, new host functions' glue, trampolines
        // for new signatures.
        let mut batch: Vec<CompiledFunction> = Vec::new();
        let mut new_signatures = Vec::new();
        let mut waiting = Vec::new();
        let mut calls = Vec::new();
        for (i, p) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            if ready.contains(&i) {
                calls.push(p.calls);
                let sig = p.compiled.signature.clone();
                if !self.entries.contains_key(&sig)
                    && !self.unusable.contains_key(&sig)
                    && !new_signatures.contains(&sig)
                {
                    new_signatures.push(sig);
                }
                batch.push(p.compiled);
            } else {
                waiting.push(p);
            }
        }
        let user_functions = batch.len();
        let mut restore = |module: &mut Self, batch: Vec<CompiledFunction>, waiting| {
            // Put the user functions back as they were.
            module.pending = batch
                .into_iter()
                .take(user_functions)
                .zip(std::mem::take(&mut calls))
                .map(|(compiled, calls)| PendingFunction { compiled, calls })
                .chain(waiting)
                .collect();
        };
        match self.link_and_load(&mut batch, &new_signatures, &data_symbols, &regions) {
            Ok(()) => {
                self.pending = waiting;
                self.pending_data.clear();
                Ok(())
            }
            Err(e) => {
                restore(self, batch, waiting);
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn link_and_load(
        &mut self,
        batch: &mut Vec<CompiledFunction>,
        new_signatures: &[ir::Signature],
        data_symbols: &HashMap<String, u64>,
        regions: &[(u64, usize, bool, Vec<usize>, Vec<u64>)],
    ) -> Result<(), Error> {
        let arch = self.arch;
        let user_functions = batch.len();
        let glue_isa: &dyn TargetIsa = self.glue_isa.as_deref().unwrap_or(self.isa.as_ref());
        for index in self.hosts_loaded..self.hosts.len() {
            let text =
                host::glue_clif(&self.hosts[index].name, &self.hosts[index].signature, index);
            let funcs = cranelift_reader::parse_functions(&text).map_err(|e| Error::Compile {
                function: self.hosts[index].name.clone(),
                message: format!("host function glue: {e}"),
            })?;
            for func in funcs {
                batch.push(compile_function(glue_isa, func)?);
            }
        }
        // A signature whose trampoline does not compile (say, a vector type
        // the target flags cannot load) only makes calls of that signature
        // fail, not the whole module.
        let mut entry_names = Vec::new();
        let mut unusable = Vec::new();
        let mut index = self.trampolines;
        for sig in new_signatures {
            match compile_trampolines(glue_isa, sig, index) {
                Ok(functions) => {
                    batch.extend(functions);
                    entry_names.push((sig.clone(), trampoline::name(index)));
                }
                Err(e @ Error::CompilerPanic { .. }) => return Err(e),
                Err(e) => unusable.push((sig.clone(), e)),
            }
            index += 1;
        }

        // Names resolve to the data about to load, then to what is loaded
        // (looked up in place: copying every symbol for each finalize made
        // incremental definitions quadratic).
        let image = if batch.is_empty() {
            None
        } else {
            let size = image_size(arch, batch);
            let base = self.machine.allocate_code(size)?;
            let symbols = &self.symbols;
            let external = |name: &str| {
                data_symbols
                    .get(name)
                    .or_else(|| symbols.get(name))
                    .copied()
            };
            let image = link_with(arch, batch, base, &external)?;
            // SAFETY: the image is Cranelift's code for this module's
            // verified functions, trampolines and glue, linked against this
            // machine's stubs, host functions, data and earlier code.
            unsafe { self.machine.install_code(base, &image.code)? };
            Some(image)
        };
        let resolved = |name: &str| {
            image
                .as_ref()
                .and_then(|image| image.symbols.get(name))
                .or_else(|| data_symbols.get(name))
                .or_else(|| self.symbols.get(name))
                .copied()
        };

        for (base, size, writable, objects, offsets) in regions {
            let mut bytes = vec![0u8; *size];
            for (&i, &offset) in objects.iter().zip(offsets) {
                let d = &self.pending_data[i];
                let at = offset as usize;
                bytes[at..at + d.bytes.len()].copy_from_slice(&d.bytes);
                for (reloc_offset, target, addend) in &d.relocs {
                    let value = resolved(target).ok_or_else(|| Error::Link {
                        function: d.key.clone(),
                        offset: *reloc_offset,
                        kind: "Abs8".into(),
                        message: format!("undefined symbol {target} (define it before finalizing)"),
                    })?;
                    let field = at + *reloc_offset as usize;
                    if *reloc_offset as usize + 8 > d.bytes.len() {
                        return Err(Error::Link {
                            function: d.key.clone(),
                            offset: *reloc_offset,
                            kind: "Abs8".into(),
                            message: "the address does not fit the data object".into(),
                        });
                    }
                    bytes[field..field + 8].copy_from_slice(
                        &arch
                            .endianness()
                            .write_u64(value.wrapping_add_signed(*addend)),
                    );
                }
            }
            self.machine.install_data(*base, &bytes, *writable)?;
        }

        // Everything is loaded: publish it.
        for d in &self.pending_data {
            self.data_objects
                .insert(d.id, (data_symbols[&d.key], d.bytes.len()));
        }
        self.symbols
            .extend(data_symbols.iter().map(|(k, v)| (k.clone(), *v)));
        if let Some(image) = image {
            self.table.merge(&image.table)?;
            for f in &batch[..user_functions] {
                self.signatures.insert(f.name.clone(), f.signature.clone());
            }
            for (sig, name) in entry_names {
                self.entries.insert(sig, image.symbols[&name]);
            }
            self.symbols
                .extend(image.symbols.iter().map(|(k, v)| (k.clone(), *v)));
            self.images.push(image);
        }
        self.unusable.extend(unusable);
        self.trampolines = index;
        self.hosts_loaded = self.hosts.len();
        batch.truncate(user_functions);
        Ok(())
    }

    /// Libcalls pending code refers to and nothing defines become host
    /// functions.
    fn add_wanted_libcalls(&mut self) {
        let mut wanted = Vec::new();
        for p in &self.pending {
            for r in &p.compiled.relocs {
                if let RelocTarget::Symbol(name) = &r.target
                    && !self.is_defined(name)
                    && !wanted.iter().any(|(n, _, _)| n == name)
                    && let Some(call) = host::libcall_named(name)
                    && let Some(op) = host::libcall(call)
                {
                    wanted.push((name.clone(), call, op));
                }
            }
        }
        for (name, call, op) in wanted {
            let signature = call.signature(self.isa.default_call_conv(), ir::types::I64);
            self.add_host(HostImport {
                name,
                signature,
                func: Arc::new(move |_, args| {
                    op(args).map(|v| vec![v]).ok_or(HostThrow::ToEntry {
                        tag: 0,
                        payloads: [0; 2],
                    })
                }),
            });
        }
    }

    /// Add the declarations made since the last call to
    /// [`JitModule::declared_keys`]: each finalize looks names up there
    /// instead of keying every declaration again (which made a module that
    /// finalizes one function at a time quadratic in its size).
    fn index_new_declarations(&mut self) {
        let index = &mut self.declared_keys;
        // By id: `skip` on the declarations' iterators steps through every
        // earlier one (a cost per finalize that grew with the module).
        let functions = index.declared_functions;
        for id in (index.functions..functions).map(|i| FuncId::from_u32(i as u32)) {
            index
                .keys
                .insert(func_key(&self.declarations, id), FuncOrDataId::Func(id));
        }
        index.functions = functions;
        let data_objects = index.declared_data_objects;
        for id in (index.data_objects..data_objects).map(|i| DataId::from_u32(i as u32)) {
            index
                .keys
                .insert(data_key(&self.declarations, id), FuncOrDataId::Data(id));
        }
        index.data_objects = data_objects;
    }

    /// The declaration whose key is `key`, and whether it is to be defined
    /// in this module (not an import).
    fn declared(&self, key: &str) -> Option<(FuncOrDataId, bool)> {
        let id = *self.declared_keys.keys.get(key)?;
        let linkage = match id {
            FuncOrDataId::Func(f) => self.declarations.get_function_decl(f).linkage,
            FuncOrDataId::Data(d) => self.declarations.get_data_decl(d).linkage,
        };
        Some((id, linkage != Linkage::Import))
    }

    /// Every call of pending code to a function whose signature is known
    /// must use that signature's ABI.
    fn check_call_signatures(&self) -> Result<(), Error> {
        // The first that knows the name decides: host functions (the last
        // of a name), pending functions (likewise), then what is loaded
        // (native symbols and imports, then JIT functions), then
        // declarations.
        let mut known: FxHashMap<&str, &ir::Signature> = FxHashMap::default();
        for h in self.hosts.iter().rev() {
            known.entry(&h.name).or_insert(&h.signature);
        }
        for p in self.pending.iter().rev() {
            known
                .entry(&p.compiled.name)
                .or_insert(&p.compiled.signature);
        }
        for p in &self.pending {
            for (callee, used) in &p.calls {
                let defined = known
                    .get(callee.as_str())
                    .copied()
                    .or_else(|| self.foreign_signatures.get(callee))
                    .or_else(|| self.signatures.get(callee))
                    .or_else(|| match self.declared(callee)? {
                        (FuncOrDataId::Func(id), _) => {
                            Some(&self.declarations.get_function_decl(id).signature)
                        }
                        (FuncOrDataId::Data(_), _) => None,
                    });
                if let Some(defined) = defined
                    && !same_abi(defined, used)
                {
                    return Err(Error::Signature(format!(
                        "{} calls {callee} as {used}, but {callee} is {defined}",
                        p.compiled.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Indices of the pending functions whose every reference resolves now
    /// (to loaded symbols, to data objects about to load or to other ready
    /// functions). A reference to a declared but undefined function or data
    /// object defers the function; any other unresolved name is an error.
    fn ready_functions(&mut self) -> Result<HashSet<usize>, Error> {
        // Names a lookup function resolves become symbols now.
        let mut unresolved = Vec::new();
        for p in &self.pending {
            for r in &p.compiled.relocs {
                if let RelocTarget::Symbol(s) = &r.target
                    && !self.symbols.contains_key(s)
                {
                    unresolved.push(s.clone());
                }
            }
        }
        for s in unresolved {
            if self.is_defined(&s) {
                continue;
            }
            if let Some(address) = self.lookups.iter().find_map(|l| l(decl_name(&s))) {
                self.symbols.insert(s, address);
            }
        }
        let data: HashSet<&str> = self.pending_data.iter().map(|d| d.key.as_str()).collect();
        let hosts: HashSet<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        let mut ready: HashSet<usize> = (0..self.pending.len()).collect();
        loop {
            let keys: HashSet<&str> = ready
                .iter()
                .map(|&i| self.pending[i].compiled.name.as_str())
                .collect();
            let mut deferred = Vec::new();
            for &i in &ready {
                let f = &self.pending[i].compiled;
                for r in &f.relocs {
                    let RelocTarget::Symbol(s) = &r.target else {
                        continue;
                    };
                    let s = s.as_str();
                    if self.symbols.contains_key(s)
                        || keys.contains(s)
                        || data.contains(s)
                        || hosts.contains(s)
                    {
                        continue;
                    }
                    // Declared to be defined in this module (not an
                    // import): a reference to it waits.
                    let declared_here = self.declared(s).is_some_and(|(_, here)| here);
                    // (Defined, and none of the above: a function that
                    // waits itself.)
                    let pending_elsewhere = self.defined.contains(s);
                    if declared_here || pending_elsewhere {
                        deferred.push(i);
                        break;
                    }
                    return Err(Error::Link {
                        function: f.name.clone(),
                        offset: r.offset,
                        kind: format!("{:?}", r.kind),
                        message: format!("undefined symbol {s}"),
                    });
                }
            }
            if deferred.is_empty() {
                return Ok(ready);
            }
            for i in deferred {
                ready.remove(&i);
            }
        }
    }
}

/// The functions `func` calls or takes the address of by name, with the
/// signature it uses, names mapped by `key`.
fn called(func: &ir::Function, key: &dyn Fn(&str) -> String) -> Vec<(String, ir::Signature)> {
    func.dfg
        .ext_funcs
        .values()
        .filter(|e| !matches!(e.name, ir::ExternalName::LibCall(_)))
        // A placeholder entry (no signature) declares nothing.
        .filter_map(|e| {
            let sig = func.dfg.signatures.get(e.signature)?;
            let name = e.name.display(Some(&func.params)).to_string();
            Some((key(&name), sig.clone()))
        })
        .collect()
}

/// The entry trampoline for `sig` and the inner trampoline it calls, if
/// it needs one.
fn compile_trampolines(
    isa: &dyn TargetIsa,
    sig: &ir::Signature,
    index: usize,
) -> Result<Vec<CompiledFunction>, Error> {
    let text = trampoline::clif(sig, index);
    let entry = trampoline::name(index);
    let funcs = cranelift_reader::parse_functions(&text).map_err(|e| Error::Compile {
        function: entry.clone(),
        message: format!("entry trampoline for {sig}: {e}"),
    })?;
    funcs
        .into_iter()
        .map(|func| {
            let mut compiled = compile_function(isa, func)?;
            if compiled.name == entry {
                compiled.kind = FunctionKind::EntryTrampoline;
            }
            Ok(compiled)
        })
        .collect()
}

/// The key a `cranelift_module` reference names: `u0:N` is function `N`,
/// `u1:N` data object `N`; other names are keys already.
fn module_key(declarations: &ModuleDeclarations, name: &str) -> String {
    let user = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
    };
    if let Some(i) = user("u0:")
        && (i as usize) < declarations.get_functions().count()
    {
        return func_key(declarations, FuncId::from_u32(i));
    }
    if let Some(i) = user("u1:")
        && (i as usize) < declarations.get_data_objects().count()
    {
        return data_key(declarations, DataId::from_u32(i));
    }
    name.to_string()
}

fn reloc_target_key(
    declarations: &ModuleDeclarations,
    target: &ModuleRelocTarget,
) -> Option<String> {
    match target {
        ModuleRelocTarget::User { namespace, index } => {
            Some(module_key(declarations, &format!("u{namespace}:{index}")))
        }
        _ => None,
    }
}

impl<M: ?Sized + Machine> cranelift_module::Module for JitModule<M> {
    fn isa(&self) -> &dyn TargetIsa {
        self.isa.as_ref()
    }

    fn declarations(&self) -> &ModuleDeclarations {
        &self.declarations
    }

    fn declare_function(
        &mut self,
        name: &str,
        linkage: Linkage,
        signature: &ir::Signature,
    ) -> ModuleResult<FuncId> {
        if linkage != Linkage::Import {
            check_not_reserved(&symbol_name(name)).map_err(from_error)?;
        }
        let (id, _) = self
            .declarations
            .declare_function(name, linkage, signature)?;
        self.declared_keys.saw_function(id);
        Ok(id)
    }

    fn declare_anonymous_function(&mut self, signature: &ir::Signature) -> ModuleResult<FuncId> {
        let id = self.declarations.declare_anonymous_function(signature)?;
        self.declared_keys.saw_function(id);
        Ok(id)
    }

    fn declare_data(
        &mut self,
        name: &str,
        linkage: Linkage,
        writable: bool,
        tls: bool,
    ) -> ModuleResult<DataId> {
        if tls {
            return Err(backend(format!(
                "{name}: thread-local data objects are not supported by this JIT"
            )));
        }
        if linkage != Linkage::Import {
            check_not_reserved(&symbol_name(name)).map_err(from_error)?;
        }
        let (id, _) = self
            .declarations
            .declare_data(name, linkage, writable, tls)?;
        self.declared_keys.saw_data_object(id);
        Ok(id)
    }

    fn declare_anonymous_data(&mut self, writable: bool, tls: bool) -> ModuleResult<DataId> {
        if tls {
            return Err(backend(
                "thread-local data objects are not supported by this JIT",
            ));
        }
        let id = self.declarations.declare_anonymous_data(writable, tls)?;
        self.declared_keys.saw_data_object(id);
        Ok(id)
    }

    fn define_function_with_control_plane(
        &mut self,
        id: FuncId,
        ctx: &mut Context,
        _ctrl_plane: &mut ControlPlane,
    ) -> ModuleResult<()> {
        let decl = self.declarations.get_function_decl(id);
        let key = self.func_key(id);
        if decl.linkage == Linkage::Import {
            return Err(ModuleError::InvalidImportDefinition(key));
        }
        if self.is_defined(&key) {
            return Err(ModuleError::DuplicateDefinition(key));
        }
        if !same_abi(&decl.signature, &ctx.func.signature) {
            return Err(ModuleError::IncompatibleSignature(
                key,
                decl.signature.clone(),
                ctx.func.signature.clone(),
            ));
        }
        let declarations = &self.declarations;
        let calls = called(&ctx.func, &|s| module_key(declarations, s));
        let mut compiled =
            compile_function(self.isa.as_ref(), ctx.func.clone()).map_err(from_error)?;
        compiled.name = key;
        for r in &mut compiled.relocs {
            if let RelocTarget::Symbol(s) = &mut r.target {
                *s = module_key(declarations, s);
            }
        }
        self.add_pending(PendingFunction { compiled, calls });
        Ok(())
    }

    fn define_function_bytes(
        &mut self,
        id: FuncId,
        _alignment: u64,
        _bytes: &[u8],
        _relocs: &[cranelift_module::ModuleReloc],
    ) -> ModuleResult<()> {
        Err(backend(format!(
            "{}: functions from raw bytes are not supported (the unwinder needs Cranelift's \
             call-site and unwind records); define it from IR",
            self.func_key(id)
        )))
    }

    fn define_data(&mut self, id: DataId, data: &DataDescription) -> ModuleResult<()> {
        let decl = self.declarations.get_data_decl(id);
        let key = data_key(&self.declarations, id);
        if decl.linkage == Linkage::Import {
            return Err(ModuleError::InvalidImportDefinition(key));
        }
        if self.is_defined(&key) {
            return Err(ModuleError::DuplicateDefinition(key));
        }
        let bytes = match &data.init {
            Init::Uninitialized => {
                return Err(backend(format!("{key}: data object without contents")));
            }
            Init::Zeros { size } => vec![0; *size],
            Init::Bytes { contents } => contents.to_vec(),
        };
        let align = data.align.unwrap_or(1);
        if !align.is_power_of_two() {
            return Err(backend(format!(
                "{key}: alignment {align} is not a power of two"
            )));
        }
        let mut relocs = Vec::new();
        for r in data.all_relocs(Reloc::Abs8) {
            let target = reloc_target_key(&self.declarations, &r.name).ok_or_else(|| {
                backend(format!(
                    "{key}: a relocation to {:?} is not supported",
                    r.name
                ))
            })?;
            relocs.push((r.offset, target, r.addend));
        }
        let writable = decl.writable;
        self.defined.insert(key.clone());
        self.pending_data.push(PendingData {
            id,
            key,
            bytes,
            align,
            writable,
            relocs,
        });
        Ok(())
    }
}
