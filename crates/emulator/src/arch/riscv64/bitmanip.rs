//! The 32-bit instructions of Zba, Zbb, Zbs, Zbkb and Zicond, which QEMU
//! 5.0 (unicorn 2.1.5) does not decode: each raises an illegal-instruction
//! exception and is carried out here from the interrupt hook
//! (`EmuArch::emulate_missing`), with the RV64 semantics of the ratified
//! specifications:
//!
//! * Zba: `add.uw`, `sh1add`, `sh2add`, `sh3add`, `sh1add.uw`, `sh2add.uw`,
//!   `sh3add.uw`, `slli.uw`.
//! * Zbb: `andn`, `orn`, `xnor`, `clz`, `clzw`, `ctz`, `ctzw`, `cpop`,
//!   `cpopw`, `max`, `maxu`, `min`, `minu`, `sext.b`, `sext.h`, `zext.h`,
//!   `rol`, `rolw`, `ror`, `rori`, `roriw`, `rorw`, `orc.b`, `rev8`.
//! * Zbs: `bclr`, `bclri`, `bext`, `bexti`, `binv`, `binvi`, `bset`, `bseti`.
//! * Zbkb: `pack`, `packh`, `packw` (whose `rs2 = x0` form is Zbb's
//!   `zext.h`), `brev8`; its other instructions are Zbb's.
//! * Zicond: `czero.eqz`, `czero.nez`.
//!
//! W forms compute on the low 32 bits and sign-extend the 32-bit result.
//! Every other encoding (reserved ones included) is left alone, so that it
//! is reported as the illegal instruction it is. Zbc (carry-less multiply)
//! is not here: Cranelift 0.135.8 never emits it.

/// One decoded instruction: `rd = op(rs1, rs2 or the immediate)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BitOp {
    /// What is computed.
    pub op: Op,
    /// Destination register number (x0: the result is dropped).
    pub rd: u8,
    /// First source register number.
    pub rs1: u8,
    /// Second source register number (0 for immediate and unary forms).
    pub rs2: u8,
    /// The shift amount or bit index of immediate forms.
    pub shamt: u32,
}

/// The operations of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    AddUw,
    ShAdd(u32),
    ShAddUw(u32),
    SlliUw,
    Andn,
    Orn,
    Xnor,
    Clz,
    Clzw,
    Ctz,
    Ctzw,
    Cpop,
    Cpopw,
    Max,
    Maxu,
    Min,
    Minu,
    SextB,
    SextH,
    Rol,
    Rolw,
    Ror,
    Rorw,
    Rori,
    Roriw,
    OrcB,
    Rev8,
    Bclr,
    Bclri,
    Bext,
    Bexti,
    Binv,
    Binvi,
    Bset,
    Bseti,
    Pack,
    Packh,
    Packw,
    Brev8,
    CzeroEqz,
    CzeroNez,
}

/// Decode `word` if it is one of this module's instructions.
pub(crate) fn decode(word: u32) -> Option<BitOp> {
    let opcode = word & 0x7f;
    let rd = ((word >> 7) & 31) as u8;
    let funct3 = (word >> 12) & 7;
    let rs1 = ((word >> 15) & 31) as u8;
    let rs2 = ((word >> 20) & 31) as u8;
    let funct7 = word >> 25;
    let imm12 = word >> 20;
    let top6 = word >> 26;
    let shamt6 = (word >> 20) & 63;
    let reg = |op| {
        Some(BitOp {
            op,
            rd,
            rs1,
            rs2,
            shamt: 0,
        })
    };
    let imm = |op, shamt| {
        Some(BitOp {
            op,
            rd,
            rs1,
            rs2: 0,
            shamt,
        })
    };
    let unary = |op| imm(op, 0);
    match (opcode, funct3) {
        // OP
        (0x33, _) => reg(match (funct7, funct3) {
            (0b000_0100, 0b100) => Op::Pack,
            (0b000_0100, 0b111) => Op::Packh,
            (0b001_0000, 0b010) => Op::ShAdd(1),
            (0b001_0000, 0b100) => Op::ShAdd(2),
            (0b001_0000, 0b110) => Op::ShAdd(3),
            (0b010_0000, 0b111) => Op::Andn,
            (0b010_0000, 0b110) => Op::Orn,
            (0b010_0000, 0b100) => Op::Xnor,
            (0b000_0101, 0b100) => Op::Min,
            (0b000_0101, 0b101) => Op::Minu,
            (0b000_0101, 0b110) => Op::Max,
            (0b000_0101, 0b111) => Op::Maxu,
            (0b011_0000, 0b001) => Op::Rol,
            (0b011_0000, 0b101) => Op::Ror,
            (0b010_0100, 0b001) => Op::Bclr,
            (0b010_0100, 0b101) => Op::Bext,
            (0b011_0100, 0b001) => Op::Binv,
            (0b001_0100, 0b001) => Op::Bset,
            (0b000_0111, 0b101) => Op::CzeroEqz,
            (0b000_0111, 0b111) => Op::CzeroNez,
            _ => return None,
        }),
        // OP-32
        (0x3b, _) => reg(match (funct7, funct3) {
            (0b000_0100, 0b000) => Op::AddUw,
            (0b000_0100, 0b100) => Op::Packw,
            (0b001_0000, 0b010) => Op::ShAddUw(1),
            (0b001_0000, 0b100) => Op::ShAddUw(2),
            (0b001_0000, 0b110) => Op::ShAddUw(3),
            (0b011_0000, 0b001) => Op::Rolw,
            (0b011_0000, 0b101) => Op::Rorw,
            _ => return None,
        }),
        // OP-IMM
        (0x13, 0b001) => match (top6, imm12) {
            (0b01_0010, _) => imm(Op::Bclri, shamt6),
            (0b01_1010, _) => imm(Op::Binvi, shamt6),
            (0b00_1010, _) => imm(Op::Bseti, shamt6),
            (_, 0x600) => unary(Op::Clz),
            (_, 0x601) => unary(Op::Ctz),
            (_, 0x602) => unary(Op::Cpop),
            (_, 0x604) => unary(Op::SextB),
            (_, 0x605) => unary(Op::SextH),
            _ => None,
        },
        (0x13, 0b101) => match (top6, imm12) {
            (0b01_0010, _) => imm(Op::Bexti, shamt6),
            (0b01_1000, _) => imm(Op::Rori, shamt6),
            (_, 0x6b8) => unary(Op::Rev8),
            (_, 0x287) => unary(Op::OrcB),
            (_, 0x687) => unary(Op::Brev8),
            _ => None,
        },
        // OP-IMM-32
        (0x1b, 0b001) => match (top6, imm12) {
            (0b00_0010, _) => imm(Op::SlliUw, shamt6),
            (_, 0x600) => unary(Op::Clzw),
            (_, 0x601) => unary(Op::Ctzw),
            (_, 0x602) => unary(Op::Cpopw),
            _ => None,
        },
        (0x1b, 0b101) if funct7 == 0b011_0000 => imm(Op::Roriw, u32::from(rs2)),
        _ => None,
    }
}

/// A 32-bit result, sign-extended to 64 bits.
fn sext32(x: u32) -> u64 {
    x as i32 as i64 as u64
}

/// The low 32 bits, zero-extended.
fn zext32(x: u64) -> u64 {
    x & 0xffff_ffff
}

/// `x` with the bits of each byte reversed, bytes in place.
fn brev8(x: u64) -> u64 {
    u64::from_le_bytes(x.to_le_bytes().map(u8::reverse_bits))
}

/// `x` with each nonzero byte replaced by `0xff`.
fn orc_b(x: u64) -> u64 {
    u64::from_le_bytes(x.to_le_bytes().map(|b| if b == 0 { 0 } else { 0xff }))
}

/// The result of `op` given the values of rs1 and rs2 (`b` is ignored by
/// immediate and unary forms) and the immediate `shamt`.
pub(crate) fn compute(op: Op, a: u64, b: u64, shamt: u32) -> u64 {
    let bit = |index: u64| 1u64 << (index & 63);
    match op {
        Op::AddUw => b.wrapping_add(zext32(a)),
        Op::ShAdd(n) => b.wrapping_add(a << n),
        Op::ShAddUw(n) => b.wrapping_add(zext32(a) << n),
        Op::SlliUw => zext32(a) << shamt,
        Op::Andn => a & !b,
        Op::Orn => a | !b,
        Op::Xnor => !(a ^ b),
        Op::Clz => u64::from(a.leading_zeros()),
        Op::Clzw => u64::from((a as u32).leading_zeros()),
        Op::Ctz => u64::from(a.trailing_zeros()),
        Op::Ctzw => u64::from((a as u32).trailing_zeros()),
        Op::Cpop => u64::from(a.count_ones()),
        Op::Cpopw => u64::from((a as u32).count_ones()),
        Op::Max => (a as i64).max(b as i64) as u64,
        Op::Maxu => a.max(b),
        Op::Min => (a as i64).min(b as i64) as u64,
        Op::Minu => a.min(b),
        Op::SextB => a as i8 as i64 as u64,
        Op::SextH => a as i16 as i64 as u64,
        Op::Rol => a.rotate_left((b & 63) as u32),
        Op::Rolw => sext32((a as u32).rotate_left((b & 31) as u32)),
        Op::Ror => a.rotate_right((b & 63) as u32),
        Op::Rorw => sext32((a as u32).rotate_right((b & 31) as u32)),
        Op::Rori => a.rotate_right(shamt & 63),
        Op::Roriw => sext32((a as u32).rotate_right(shamt & 31)),
        Op::OrcB => orc_b(a),
        Op::Rev8 => a.swap_bytes(),
        Op::Bclr => a & !bit(b),
        Op::Bclri => a & !bit(u64::from(shamt)),
        Op::Bext => (a >> (b & 63)) & 1,
        Op::Bexti => (a >> (shamt & 63)) & 1,
        Op::Binv => a ^ bit(b),
        Op::Binvi => a ^ bit(u64::from(shamt)),
        Op::Bset => a | bit(b),
        Op::Bseti => a | bit(u64::from(shamt)),
        Op::Pack => zext32(a) | (b << 32),
        Op::Packh => (a & 0xff) | ((b & 0xff) << 8),
        Op::Packw => sext32(((a & 0xffff) | ((b & 0xffff) << 16)) as u32),
        Op::Brev8 => brev8(a),
        Op::CzeroEqz => {
            if b == 0 {
                0
            } else {
                a
            }
        }
        Op::CzeroNez => {
            if b != 0 {
                0
            } else {
                a
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Assemble an R-type word.
    fn r(opcode: u32, funct3: u32, funct7: u32) -> u32 {
        opcode | 5 << 7 | funct3 << 12 | 6 << 15 | 7 << 20 | funct7 << 25
    }

    #[test]
    fn decodes_fields_and_rejects_base_and_reserved_encodings() {
        let add_uw = decode(r(0x3b, 0, 0b000_0100)).unwrap();
        assert_eq!(
            add_uw,
            BitOp {
                op: Op::AddUw,
                rd: 5,
                rs1: 6,
                rs2: 7,
                shamt: 0
            }
        );
        // add, mul, slli, srai, addw: base instructions.
        for word in [
            r(0x33, 0, 0),
            r(0x33, 0, 1),
            0x0030_9093,
            0x4030_d093,
            r(0x3b, 0, 0),
        ] {
            assert_eq!(decode(word), None, "{word:#x}");
        }
        // clz with a nonzero rs2 field other than 1, 2, 4, 5: reserved.
        assert_eq!(decode(0x6031_1093), None);
        // rori by 63 and bseti 40.
        assert_eq!(
            decode(0x63f0_d093).map(|d| (d.op, d.shamt)),
            Some((Op::Rori, 63))
        );
        assert_eq!(
            decode(0x2a80_9093).map(|d| (d.op, d.shamt)),
            Some((Op::Bseti, 40))
        );
    }

    #[test]
    fn byte_helpers() {
        assert_eq!(orc_b(0x0100_0000_00ff_0080), 0xff00_0000_00ff_00ff);
        assert_eq!(brev8(0x0102_0304_0506_0780), 0x8040_c020_a060_e001);
    }
}
