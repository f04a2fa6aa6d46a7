//! aarch64: frame layout, registers, relocations and stubs. (Being written.)

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::isa::unwind::UnwindInst;

use super::{Arch, FrameLinks, IsaSpec, Reg, RelocError, RelocSite, SavedRegister, Stub};

/// aarch64.
pub struct Aarch64;

impl IsaSpec for Aarch64 {
    fn arch(&self) -> Arch {
        Arch::Aarch64
    }
    fn frame_links(&self) -> FrameLinks {
        FrameLinks { caller_fp_offset: 0, return_address_offset: 8 }
    }
    fn payload_regs(&self) -> [Reg; 2] {
        [Reg::int(0), Reg::int(1)]
    }
    fn callee_saved(&self) -> &'static [Reg] {
        &[]
    }
    fn stack_pointer(&self) -> Reg {
        Reg::int(31)
    }
    fn frame_pointer(&self) -> Option<Reg> {
        None
    }
    fn int_arg_regs(&self) -> &'static [Reg] {
        &[]
    }
    fn link_register(&self) -> Option<Reg> {
        None
    }
    fn register_name(&self, reg: Reg) -> String {
        format!("{reg:?}")
    }
    fn uses_got(&self, _kind: Reloc) -> bool {
        false
    }
    fn apply_relocation(&self, _site: RelocSite<'_>) -> Result<(), RelocError> {
        Err(RelocError::Unsupported)
    }
    fn saved_registers(&self, _unwind: &[(u32, UnwindInst)]) -> Result<Vec<SavedRegister>, String> {
        Err("not yet".into())
    }
    fn throw_stub(&self) -> Stub {
        Stub { code: &[], listing: "" }
    }
    fn resume_stub(&self) -> Stub {
        Stub { code: &[], listing: "" }
    }
}
