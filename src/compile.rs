//! CLIF → per-function artifacts for one target.

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{self, TrapCode};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{
    Context, ExceptionContextLoc, FinalizedMachExceptionHandler, FinalizedRelocTarget,
};

use crate::error::Error;
use crate::isa::{Arch, SavedRegister};

/// Build a Cranelift ISA for `arch` from shared flags and ISA flags, as a
/// filetest's `set` and `target` lines give them. `preserve_frame_pointers`
/// and `unwind_info` are always forced on: the unwinder needs both.
pub fn build_isa(
    arch: Arch,
    shared: &settings::Flags,
    isa_flags: &[settings::Value],
) -> Result<OwnedTargetIsa, Error> {
    let mut builder = settings::builder();
    for value in shared.iter() {
        if value.kind() == settings::SettingKind::Preset {
            continue;
        }
        builder
            .set(value.name, &value.value_string())
            .map_err(|e| isa_error(arch, e))?;
    }
    builder
        .set("preserve_frame_pointers", "true")
        .map_err(|e| isa_error(arch, e))?;
    builder
        .set("unwind_info", "true")
        .map_err(|e| isa_error(arch, e))?;
    let mut isa_builder =
        cranelift_codegen::isa::lookup(arch.triple()).map_err(|e| isa_error(arch, e))?;
    for value in isa_flags {
        if value.kind() == settings::SettingKind::Preset {
            continue;
        }
        isa_builder
            .set(value.name, &value.value_string())
            .map_err(|e| isa_error(arch, e))?;
    }
    isa_builder
        .finish(settings::Flags::new(builder))
        .map_err(|e| isa_error(arch, e))
}

/// The ISA with default flags (plus the forced ones) for `arch`.
pub fn default_isa(arch: Arch) -> Result<OwnedTargetIsa, Error> {
    build_isa(arch, &settings::Flags::new(settings::builder()), &[])
}

fn isa_error(arch: Arch, e: impl std::fmt::Display) -> Error {
    Error::Compile {
        function: format!("<isa {arch}>"),
        message: e.to_string(),
    }
}

/// What a relocation points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelocTarget {
    /// A symbol: another function or a host symbol, named as CLIF prints it
    /// (`%name` or `u0:1`).
    Symbol(String),
    /// An offset inside the same function (a label relocation).
    Label(u32),
}

/// One relocation of a compiled function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Offset of the patched field in the function's code.
    pub offset: u32,
    /// Kind.
    pub kind: Reloc,
    /// Target.
    pub target: RelocTarget,
    /// Addend.
    pub addend: i64,
}

/// One entry of a call site's handler list; the first match wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Exceptions with this tag go to `offset`.
    Tag {
        /// The tag number (`tagN` in CLIF).
        tag: u32,
        /// Handler offset in the function's code.
        offset: u32,
    },
    /// Every exception goes to `offset`.
    Default {
        /// Handler offset in the function's code.
        offset: u32,
    },
    /// The dynamic context for the following tags; recorded, not interpreted.
    Context(ExceptionContextLoc),
}

/// A call instruction's return point, with its handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSite {
    /// Offset of the return address in the function's code.
    pub return_offset: u32,
    /// Distance from the frame-pointer value down to the stack pointer at the
    /// call (for `try_call` sites).
    pub frame_offset: Option<u32>,
    /// Handlers, in order.
    pub handlers: Vec<Handler>,
}

/// An instruction that traps, and with what code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapSite {
    /// Offset of the trapping instruction.
    pub offset: u32,
    /// Trap code.
    pub code: TrapCode,
}

/// A compiled function, ready to link.
#[derive(Clone, Debug)]
pub struct CompiledFunction {
    /// The function's name as CLIF prints it (`%name` or `u0:1`).
    pub name: String,
    /// Its signature.
    pub signature: ir::Signature,
    /// Architecture the code is for.
    pub arch: Arch,
    /// Machine code.
    pub code: Vec<u8>,
    /// Relocations to apply.
    pub relocs: Vec<Relocation>,
    /// Call sites (every call, `try_call` or not).
    pub call_sites: Vec<CallSite>,
    /// Trap sites.
    pub traps: Vec<TrapSite>,
    /// Where the prologue saves callee-saved registers.
    pub saved_registers: Vec<SavedRegister>,
    /// Cranelift's VCode listing, when requested.
    pub vcode: Option<String>,
}

/// Compile one function for `isa`.
pub fn compile_function(
    isa: &dyn TargetIsa,
    func: ir::Function,
) -> Result<CompiledFunction, Error> {
    let arch = Arch::from_triple(isa.triple()).ok_or_else(|| Error::Compile {
        function: func.name.to_string(),
        message: format!("unsupported target {}", isa.triple()),
    })?;
    let name = func.name.to_string();
    let params = func.params.clone();
    let signature = func.signature.clone();
    let mut ctx = Context::for_function(func);
    let compiled = ctx
        .compile(isa, &mut ControlPlane::default())
        .map_err(|e| Error::Compile {
            function: name.clone(),
            message: cranelift_codegen::print_errors::pretty_error(e.func, e.inner),
        })?;
    let buffer = &compiled.buffer;
    let relocs = buffer
        .relocs()
        .iter()
        .map(|r| Relocation {
            offset: r.offset,
            kind: r.kind,
            target: match &r.target {
                FinalizedRelocTarget::ExternalName(ext) => {
                    RelocTarget::Symbol(ext.display(Some(&params)).to_string())
                }
                FinalizedRelocTarget::Func(offset) => RelocTarget::Label(*offset),
            },
            addend: r.addend,
        })
        .collect();
    let call_sites = buffer
        .call_sites()
        .map(|site| CallSite {
            return_offset: site.ret_addr,
            frame_offset: site.frame_offset,
            handlers: site
                .exception_handlers
                .iter()
                .map(|h| match *h {
                    FinalizedMachExceptionHandler::Tag(tag, offset) => Handler::Tag {
                        tag: tag.as_u32(),
                        offset,
                    },
                    FinalizedMachExceptionHandler::Default(offset) => Handler::Default { offset },
                    FinalizedMachExceptionHandler::Context(loc) => Handler::Context(loc),
                })
                .collect(),
        })
        .collect();
    let traps = buffer
        .traps()
        .iter()
        .map(|t| TrapSite {
            offset: t.offset,
            code: t.code,
        })
        .collect();
    let saved_registers = arch
        .spec()
        .saved_registers(&buffer.unwind_info)
        .map_err(|message| Error::Compile {
            function: name.clone(),
            message: format!("reading unwind info: {message}"),
        })?;
    Ok(CompiledFunction {
        name,
        signature,
        arch,
        code: buffer.data().to_vec(),
        relocs,
        call_sites,
        traps,
        saved_registers,
        vcode: compiled.vcode.clone(),
    })
}
