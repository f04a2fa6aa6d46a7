//! CLIF → per-function artifacts for one target.

use std::borrow::Borrow;

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{self, TrapCode};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{
    Context, ExceptionContextLoc, FinalizedMachCallSite, FinalizedMachExceptionHandler,
    FinalizedRelocTarget,
};

use crate::error::Error;
use crate::isa::{Arch, Reg, SavedRegister};

/// Build a Cranelift ISA for `arch` from shared flags and ISA flags, as a
/// filetest's `set` and `target` lines give them. `preserve_frame_pointers`
/// and `unwind_info` are always forced on: the unwinder needs both. Stack
/// probes are as `shared` says (so that compile filetests see upstream's
/// code); a [`crate::Module`] turns them on ([`probed_isa`]).
pub fn build_isa(
    arch: Arch,
    shared: &settings::Flags,
    isa_flags: &[settings::Value],
) -> Result<OwnedTargetIsa, Error> {
    let forced = ["preserve_frame_pointers", "unwind_info"].map(|name| (name, "true".into()));
    let mut builder = settings::builder();
    set_all(&mut builder, arch, non_presets(shared.iter()).chain(forced))?;
    let mut isa_builder =
        cranelift_codegen::isa::lookup(arch.triple()).map_err(|e| isa_error(arch, e))?;
    set_all(&mut isa_builder, arch, non_presets(isa_flags))?;
    isa_builder
        .finish(settings::Flags::new(builder))
        .map_err(|e| isa_error(arch, e))
}

/// The name and value of each of `values` that is not a preset.
fn non_presets(
    values: impl IntoIterator<Item = impl Borrow<settings::Value>>,
) -> impl Iterator<Item = (&'static str, String)> {
    values
        .into_iter()
        .filter(|value| value.borrow().kind() != settings::SettingKind::Preset)
        .map(|value| (value.borrow().name, value.borrow().value_string()))
}

/// Set each `(name, value)` of `settings` on `builder`.
fn set_all(
    builder: &mut dyn settings::Configurable,
    arch: Arch,
    settings: impl IntoIterator<Item = (&'static str, String)>,
) -> Result<(), Error> {
    for (name, value) in settings {
        builder.set(name, &value).map_err(|e| isa_error(arch, e))?;
    }
    Ok(())
}

/// The ISA for the code this crate generates around a module's functions
/// (entry trampolines, host-function glue): `None` when that is `isa`
/// itself, else `isa` without basic-block padding.
///
/// `bb_padding_log2_minus_one` is a test knob for the branch ranges of the
/// user's code; padding the glue only makes it huge, and on aarch64 it makes
/// Cranelift 0.135 panic on the trampoline's own branches (a conditional
/// branch beyond its range). Every flag that can change an ABI is kept.
pub fn glue_isa(isa: &dyn TargetIsa) -> Result<Option<OwnedTargetIsa>, Error> {
    const PADDING: &str = "bb_padding_log2_minus_one";
    let padded = isa
        .flags()
        .iter()
        .any(|v| v.name == PADDING && v.value_string() != "0");
    if !padded {
        return Ok(None);
    }
    let arch = Arch::from_triple(isa.triple())
        .ok_or_else(|| Error::Machine(format!("no supported ISA for {}", isa.triple())))?;
    let mut shared = settings::builder();
    for value in isa.flags().iter() {
        if value.kind() == settings::SettingKind::Preset || value.name == PADDING {
            continue;
        }
        shared
            .set(value.name, &value.value_string())
            .map_err(|e| isa_error(arch, e))?;
    }
    build_isa(arch, &settings::Flags::new(shared), &isa.isa_flags()).map(Some)
}

/// The ISA with default flags (plus the forced ones, and stack probes) for
/// `arch`.
pub fn default_isa(arch: Arch) -> Result<OwnedTargetIsa, Error> {
    let mut shared = settings::builder();
    set_stack_probes(arch, &mut shared, PROBE_INTERVAL_LOG2)?;
    build_isa(arch, &settings::Flags::new(shared), &[])
}

/// log2 of the distance between stack probes: 4 KiB, the smallest guard
/// page of every supported host (a larger `probestack_size_log2` is lowered
/// to it).
pub const PROBE_INTERVAL_LOG2: u8 = 12;

/// Turn on Cranelift's inline stack probes in `shared`, at most
/// `1 << interval_log2` bytes apart.
fn set_stack_probes(
    arch: Arch,
    shared: &mut settings::Builder,
    interval_log2: u8,
) -> Result<(), Error> {
    for (name, value) in [
        ("enable_probestack", "true".to_string()),
        ("probestack_strategy", "inline".to_string()),
        (
            "probestack_size_log2",
            interval_log2.min(PROBE_INTERVAL_LOG2).to_string(),
        ),
    ] {
        shared.set(name, &value).map_err(|e| isa_error(arch, e))?;
    }
    Ok(())
}

/// Whether code compiled for `isa` probes the stack: no frame it sets up
/// can step over a guard page of [`PROBE_INTERVAL_LOG2`] bytes or more.
pub fn has_stack_probes(isa: &dyn TargetIsa) -> bool {
    let flags = isa.flags();
    flags.enable_probestack()
        && flags.probestack_strategy() == settings::ProbestackStrategy::Inline
        && flags.probestack_size_log2() <= PROBE_INTERVAL_LOG2
}

/// The ISA a [`crate::Module`] compiles for when given `isa`: `None` when
/// `isa` already has stack probes ([`has_stack_probes`]), else `isa`
/// rebuilt with the same flags plus inline stack probes (as
/// [`default_isa`] has them).
///
/// Stack safety is not left to the embedder's flags: with probes, a frame
/// of any size that overflows the stack touches the guard page below it
/// before anything beyond, so the overflow is a `stk_ovf` trap and nothing
/// outside the thread's stack is written. Cranelift 0.135 implements
/// inline probes on all four ISAs (x86_64, aarch64, riscv64, s390x); an
/// ISA this crate does not support is an `Err`.
pub fn probed_isa(isa: &dyn TargetIsa) -> Result<Option<OwnedTargetIsa>, Error> {
    if has_stack_probes(isa) {
        return Ok(None);
    }
    let arch = Arch::from_triple(isa.triple()).ok_or_else(|| Error::Compile {
        function: format!("<isa {}>", isa.triple()),
        message: "no stack probes for an unsupported target".into(),
    })?;
    let mut shared = settings::builder();
    for value in isa.flags().iter() {
        if value.kind() == settings::SettingKind::Preset {
            continue;
        }
        shared
            .set(value.name, &value.value_string())
            .map_err(|e| isa_error(arch, e))?;
    }
    set_stack_probes(arch, &mut shared, isa.flags().probestack_size_log2())?;
    let probed = build_isa(arch, &settings::Flags::new(shared), &isa.isa_flags())?;
    if !has_stack_probes(probed.as_ref()) {
        return Err(isa_error(
            arch,
            "Cranelift did not enable inline stack probes",
        ));
    }
    Ok(Some(probed))
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
    /// The dynamic context for the following tags (`context vN` in the
    /// CLIF exception table): where its value lives while the call is in
    /// progress. Recorded for runtimes that interpret tags per context
    /// ([`crate::exception_table::SiteRef::context_value`] reads it for a
    /// frame); this crate's own handler selection matches tags alone.
    Context(ContextLocation),
}

/// Where a call site's exception context value can be read while the callee
/// runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextLocation {
    /// In the caller's frame, this many bytes above the stack pointer at the
    /// call (which is the frame-pointer value minus the call site's
    /// `frame_offset`).
    Stack {
        /// Offset from the stack pointer at the call.
        sp_offset: u32,
    },
    /// In a register the callee preserves (one of the ISA's
    /// [`crate::isa::IsaSpec::callee_saved`] registers, whose value for each
    /// frame the unwinder recovers from the frames below it).
    Register(Reg),
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
    /// What the function is: code of a module, or glue the crate made.
    pub kind: FunctionKind,
}

/// What a compiled function is, as far as the unwinder cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FunctionKind {
    /// A module's own code (or any other function).
    #[default]
    Code,
    /// An entry trampoline: the unwinder delivers exceptions no handler in
    /// the search window caught to its catch-all handler.
    EntryTrampoline,
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
    // Cranelift asserts on some input its verifier accepts (a callee
    // convention the target cannot call, a branch out of range): that is an
    // error for this function, not the end of the process.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.compile(isa, &mut ControlPlane::default())
            .map(|_| ())
            .map_err(|e| cranelift_codegen::print_errors::pretty_error(e.func, e.inner))
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            return Err(Error::Compile {
                function: name,
                message,
            });
        }
        Err(panic) => {
            let message = crate::error::panic_message(&*panic);
            return Err(Error::CompilerPanic {
                function: name,
                message,
            });
        }
    }
    let compiled = ctx.compiled_code().ok_or_else(|| Error::Compile {
        function: name.clone(),
        message: "Cranelift produced no code".into(),
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
        .map(|site| call_site(arch, &name, &site))
        .collect::<Result<Vec<_>, Error>>()?;
    let traps = buffer
        .traps()
        .iter()
        .filter(|t| !is_stack_probe_store(arch, buffer.data(), t.offset))
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
        kind: FunctionKind::Code,
    })
}

/// Whether the trap record at `offset` is the store of Cranelift's riscv64
/// stack-probe loop, `sb zero, 0(t5)`, which Cranelift 0.135 emits with
/// default memory flags and so records as a `heap_oob` trap site. It is no
/// trap site: a fault there is a stack overflow (the machine's stack-guard
/// check says so). `t5` (x30) is a register Cranelift never allocates, so
/// no other instruction has this encoding.
fn is_stack_probe_store(arch: Arch, code: &[u8], offset: u32) -> bool {
    const PROBE_STORE: [u8; 4] = 0x000f_0023_u32.to_le_bytes();
    arch == Arch::Riscv64
        && code
            .get(offset as usize..offset as usize + 4)
            .is_some_and(|bytes| bytes == PROBE_STORE)
}

/// Our record of one of Cranelift's call sites, with each exception context
/// location checked to be one the unwinder can read.
fn call_site(
    arch: Arch,
    function: &str,
    site: &FinalizedMachCallSite<'_>,
) -> Result<CallSite, Error> {
    let error = |message: String| Error::Compile {
        function: function.to_string(),
        message: format!(
            "try_call returning to offset {:#x}: {message}",
            site.ret_addr
        ),
    };
    let mut handlers = Vec::with_capacity(site.exception_handlers.len());
    for handler in site.exception_handlers {
        handlers.push(match *handler {
            FinalizedMachExceptionHandler::Tag(tag, offset) => Handler::Tag {
                tag: tag.as_u32(),
                offset,
            },
            FinalizedMachExceptionHandler::Default(offset) => Handler::Default { offset },
            FinalizedMachExceptionHandler::Context(ExceptionContextLoc::SPOffset(sp_offset)) => {
                if site.frame_offset.is_none() {
                    return Err(error(format!(
                        "exception context at sp+{sp_offset:#x}, but Cranelift gave no frame \
                         offset to find sp from the frame pointer"
                    )));
                }
                Handler::Context(ContextLocation::Stack { sp_offset })
            }
            FinalizedMachExceptionHandler::Context(ExceptionContextLoc::GPR(hw)) => {
                let reg = Reg::int(hw);
                let spec = arch.spec();
                if !spec.callee_saved().contains(&reg) {
                    // Register allocation keeps the context out of registers
                    // the call clobbers, but a callee convention may preserve
                    // registers beyond the platform ABI's set the unwinder
                    // tracks (e.g. `windows_fastcall`'s rsi/rdi).
                    return Err(error(format!(
                        "exception context in {}, which is not a callee-saved register \
                         of the {arch} C ABI, so an unwinder cannot recover its value",
                        spec.register_name(reg)
                    )));
                }
                Handler::Context(ContextLocation::Register(reg))
            }
        });
    }
    Ok(CallSite {
        return_offset: site.ret_addr,
        frame_offset: site.frame_offset,
        handlers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `%stack` calls a `tail` callee, whose `try_call` clobbers every
    /// register, so the context is spilled; `%reg` calls a `system_v` callee
    /// and keeps the context in a callee-saved register.
    const CONTEXTS: &str = "
function %stack(i64, i64) -> i64 {
    sig0 = (i64) -> i64 tail
    fn0 = %g(i64) -> i64 tail
block0(v0: i64, v1: i64):
    try_call fn0(v0), sig0, block1(ret0), [ context v1, tag1: block2(exn0), default: block2(exn0) ]
block1(v2: i64):
    return v2
block2(v3: i64):
    return v3
}

function %reg(i64, i64) -> i64 {
    sig0 = (i64) -> i64 system_v
    fn0 = %h(i64) -> i64 system_v
block0(v0: i64, v1: i64):
    try_call fn0(v0), sig0, block1(ret0), [ context v1, tag1: block2(exn0), context v0, default: block2(exn0) ]
block1(v2: i64):
    return v2
block2(v3: i64):
    return v3
}
";

    fn contexts(f: &CompiledFunction) -> Vec<ContextLocation> {
        let [site] = &f.call_sites[..] else {
            panic!("{}: {:?}", f.name, f.call_sites);
        };
        site.handlers
            .iter()
            .filter_map(|h| match h {
                Handler::Context(loc) => Some(*loc),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn exception_contexts_on_the_stack_and_in_registers_on_every_isa() {
        for arch in Arch::ALL {
            let isa = default_isa(arch).unwrap();
            let functions = cranelift_reader::parse_functions(CONTEXTS).unwrap();
            let compiled: Vec<_> = functions
                .into_iter()
                .map(|f| compile_function(&*isa, f).unwrap())
                .collect();

            let stack = &compiled[0];
            let frame_offset = stack.call_sites[0].frame_offset.unwrap();
            match contexts(stack)[..] {
                [ContextLocation::Stack { sp_offset }] => {
                    // The slot lies inside the caller's frame, below the
                    // frame-pointer value.
                    assert!(
                        sp_offset + 8 <= frame_offset,
                        "{arch}: {sp_offset} {frame_offset}"
                    );
                }
                ref other => panic!("{arch} %stack: {other:?}"),
            }

            let reg = &compiled[1];
            let locations = contexts(reg);
            assert_eq!(locations.len(), 2, "{arch}: {locations:?}");
            let mut regs = Vec::new();
            for loc in locations {
                match loc {
                    ContextLocation::Register(r) => {
                        assert!(arch.spec().callee_saved().contains(&r), "{arch}: {r:?}");
                        regs.push(r);
                    }
                    other => panic!("{arch} %reg: {other:?}"),
                }
            }
            // Two different values, two registers.
            assert_ne!(regs[0], regs[1], "{arch}");
        }
    }

    #[test]
    fn a_context_register_the_unwinder_cannot_recover_is_a_compile_error() {
        // Cranelift 0.135.8's register allocation never produces this for
        // the callee conventions `try_call` accepts; a caller-saved register
        // here would hold garbage by the time a throw unwinds to the frame.
        let handlers = [
            FinalizedMachExceptionHandler::Context(ExceptionContextLoc::GPR(0)),
            FinalizedMachExceptionHandler::Default(0x40),
        ];
        let site = FinalizedMachCallSite {
            ret_addr: 0x1c,
            frame_offset: Some(0x20),
            exception_handlers: &handlers,
        };
        let err = call_site(Arch::X86_64, "%f", &site).unwrap_err();
        let Error::Compile { function, message } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(function, "%f");
        assert!(message.contains("offset 0x1c"), "{message}");
        assert!(message.contains("rax"), "{message}");

        // A stack context without a frame offset cannot be located either.
        let handlers = [FinalizedMachExceptionHandler::Context(
            ExceptionContextLoc::SPOffset(8),
        )];
        let site = FinalizedMachCallSite {
            ret_addr: 0x10,
            frame_offset: None,
            exception_handlers: &handlers,
        };
        let message = call_site(Arch::Aarch64, "%g", &site)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("%g") && message.contains("0x10"),
            "{message}"
        );

        // The callee-saved registers are accepted.
        for arch in Arch::ALL {
            for reg in arch
                .spec()
                .callee_saved()
                .iter()
                .filter(|r| r.class == crate::isa::RegClass::Int)
            {
                let handlers = [FinalizedMachExceptionHandler::Context(
                    ExceptionContextLoc::GPR(reg.hw),
                )];
                let site = FinalizedMachCallSite {
                    ret_addr: 4,
                    frame_offset: Some(16),
                    exception_handlers: &handlers,
                };
                let site = call_site(arch, "%h", &site).unwrap();
                assert_eq!(
                    site.handlers,
                    [Handler::Context(ContextLocation::Register(*reg))]
                );
            }
        }
    }

    #[test]
    fn glue_is_compiled_without_block_padding_and_with_every_other_flag() {
        assert!(
            glue_isa(&*default_isa(Arch::Aarch64).unwrap())
                .unwrap()
                .is_none()
        );

        let mut shared = settings::builder();
        shared.set("bb_padding_log2_minus_one", "21").unwrap();
        shared
            .set("enable_multi_ret_implicit_sret", "true")
            .unwrap();
        let mut isa_builder = cranelift_codegen::isa::lookup(Arch::Aarch64.triple()).unwrap();
        isa_builder.set("sign_return_address", "true").unwrap();
        let padded = build_isa(
            Arch::Aarch64,
            &settings::Flags::new(shared),
            &isa_builder
                .finish(settings::Flags::new(settings::builder()))
                .unwrap()
                .isa_flags(),
        )
        .unwrap();
        let glue = glue_isa(&*padded)
            .unwrap()
            .expect("a padded ISA needs glue");
        let flag = |isa: &dyn TargetIsa, name: &str| {
            isa.flags()
                .iter()
                .chain(isa.isa_flags())
                .find(|v| v.name == name)
                .map(|v| v.value_string())
                .unwrap()
        };
        assert_eq!(flag(&*padded, "bb_padding_log2_minus_one"), "21");
        assert_eq!(flag(&*glue, "bb_padding_log2_minus_one"), "0");
        for name in [
            "enable_multi_ret_implicit_sret",
            "sign_return_address",
            "preserve_frame_pointers",
        ] {
            assert_eq!(flag(&*glue, name), "true", "{name}");
        }
        assert_eq!(glue.triple(), padded.triple());
    }
}
