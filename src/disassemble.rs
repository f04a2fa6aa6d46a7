//! Capstone listings of machine code, as Cranelift's own `precise-output`
//! filetests print them: what the stub tables and tests compare against.

use crate::isa::Arch;

/// Disassemble `code` with Cranelift's capstone set-up for `arch`, one
/// instruction per line as `mnemonic operands` (the format of [`crate::isa::StubRow`]).
pub fn disassemble(arch: Arch, code: &[u8]) -> Result<String, String> {
    let lines: Vec<String> = disassemble_rows(arch, code)?
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    Ok(lines.join("\n"))
}

/// Disassemble `code` as [`disassemble`] does, keeping each instruction's
/// bytes beside its text.
pub fn disassemble_rows(arch: Arch, code: &[u8]) -> Result<Vec<(Vec<u8>, String)>, String> {
    let isa = crate::compile::default_isa(arch).map_err(|e| e.to_string())?;
    let cs = isa.to_capstone().map_err(|e| e.to_string())?;
    let insns = cs.disasm_all(code, 0).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut decoded = 0;
    for insn in insns.iter() {
        decoded += insn.bytes().len();
        let mnemonic = insn.mnemonic().unwrap_or("");
        let operands = insn.op_str().unwrap_or("");
        let text = if operands.is_empty() {
            mnemonic.to_string()
        } else {
            format!("{mnemonic} {operands}")
        };
        rows.push((insn.bytes().to_vec(), text));
    }
    if decoded != code.len() {
        return Err(format!(
            "capstone decoded {decoded} of {} bytes for {arch}",
            code.len()
        ));
    }
    Ok(rows)
}
