//! The 16-bit Zcb instructions, which QEMU 5.0 (unicorn 2.1.5) runs as
//! something else without any exception (`c.mul` leaves rd alone, `c.lbu`
//! loads nothing, ...): found when code is installed and carried out here
//! from a code hook on each of their addresses (`EmuArch::intercepts`,
//! `EmuArch::carry_out`), with the semantics of the ratified Zcb:
//!
//! * `c.lbu`, `c.lhu`, `c.lh` (zero-/sign-extended loads), `c.sb`, `c.sh`;
//! * `c.zext.b`, `c.sext.b`, `c.zext.h`, `c.sext.h`, `c.zext.w`, `c.not`,
//!   `c.mul`.
//!
//! Registers are the compressed set x8–x15. A load or store whose bytes are
//! not all mapped, or a store to memory the program may not write, is a
//! memory-access fault at the instruction (`EmuArch::faulting_access`), as
//! on the hardware; like QEMU's own loads and stores, misaligned accesses
//! are performed.
//!
//! Finding them: RISC-V instructions start at any 2-byte boundary and code
//! may hold data, so every halfword whose two low bits are not `0b11` and
//! whose bits decode as a Zcb instruction gets a hook, without decoding
//! linearly (as on s390x). A match inside a 32-bit instruction or in data
//! costs only an idle hook: unicorn runs code hooks at instruction starts
//! only. When a hook runs, the bytes at the pc are an instruction start,
//! and a halfword with low bits other than `0b11` is a whole 16-bit
//! instruction, so the decoded Zcb instruction is the one executing.

/// A Zcb instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Zcb {
    /// `c.lbu`/`c.lhu`/`c.lh rd', uimm(rs1')`.
    Load {
        /// Bytes loaded: 1 or 2.
        size: usize,
        signed: bool,
        rd: u8,
        rs1: u8,
        offset: u64,
    },
    /// `c.sb`/`c.sh rs2', uimm(rs1')`.
    Store {
        /// Bytes stored: 1 or 2.
        size: usize,
        rs2: u8,
        rs1: u8,
        offset: u64,
    },
    /// `c.mul rd', rs2'`: `rd = rd * rs2` (low 64 bits).
    Mul { rd: u8, rs2: u8 },
    /// A unary operation on `rd'` in place.
    Unary { op: Unary, rd: u8 },
}

/// The in-place operations of Zcb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unary {
    ZextB,
    SextB,
    ZextH,
    SextH,
    ZextW,
    Not,
}

impl Unary {
    /// The result for the register's value `x`.
    pub(crate) fn apply(self, x: u64) -> u64 {
        match self {
            Unary::ZextB => x & 0xff,
            Unary::SextB => x as i8 as i64 as u64,
            Unary::ZextH => x & 0xffff,
            Unary::SextH => x as i16 as i64 as u64,
            Unary::ZextW => x & 0xffff_ffff,
            Unary::Not => !x,
        }
    }
}

/// The register number of a compressed register field (x8–x15).
fn creg(field: u16) -> u8 {
    8 + (field & 7) as u8
}

/// Decode `h` if it is a Zcb instruction.
pub(crate) fn decode(h: u16) -> Option<Zcb> {
    let funct6 = h >> 10;
    let rs1 = creg(h >> 7);
    let low = creg(h >> 2);
    let (bit6, bit5) = ((h >> 6) & 1, (h >> 5) & 1);
    match h & 3 {
        0 => {
            // Byte offsets: uimm[0] is bit 6, uimm[1] bit 5; halfwords: uimm[1]
            // is bit 5 and bit 6 selects c.lh.
            let byte_offset = u64::from(bit6 | (bit5 << 1));
            let half_offset = u64::from(bit5 << 1);
            match funct6 {
                0b10_0000 => Some(Zcb::Load {
                    size: 1,
                    signed: false,
                    rd: low,
                    rs1,
                    offset: byte_offset,
                }),
                0b10_0001 => Some(Zcb::Load {
                    size: 2,
                    signed: bit6 == 1,
                    rd: low,
                    rs1,
                    offset: half_offset,
                }),
                0b10_0010 => Some(Zcb::Store {
                    size: 1,
                    rs2: low,
                    rs1,
                    offset: byte_offset,
                }),
                0b10_0011 if bit6 == 0 => Some(Zcb::Store {
                    size: 2,
                    rs2: low,
                    rs1,
                    offset: half_offset,
                }),
                _ => None,
            }
        }
        1 if funct6 == 0b10_0111 => match (h >> 5) & 3 {
            0b10 => Some(Zcb::Mul { rd: rs1, rs2: low }),
            0b11 => {
                let op = match (h >> 2) & 7 {
                    0b000 => Unary::ZextB,
                    0b001 => Unary::SextB,
                    0b010 => Unary::ZextH,
                    0b011 => Unary::SextH,
                    0b100 => Unary::ZextW,
                    0b101 => Unary::Not,
                    _ => return None,
                };
                Some(Zcb::Unary { op, rd: rs1 })
            }
            // c.subw, c.addw.
            _ => None,
        },
        _ => None,
    }
}

/// Offsets in `code` of every halfword that decodes as a Zcb instruction.
pub(crate) fn offsets(code: &[u8]) -> Vec<usize> {
    code.chunks_exact(2)
        .enumerate()
        .filter(|(_, pair)| decode(u16::from_le_bytes([pair[0], pair[1]])).is_some())
        .map(|(index, _)| 2 * index)
        .collect()
}

// Binary literals are grouped by instruction field.
#[cfg(test)]
#[allow(clippy::unusual_byte_groupings)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_spec_encodings() {
        // c.lbu a0, 3(s1): 100 000 001 0 1 010 00 (uimm[0] = bit 6, uimm[1] = bit 5).
        assert_eq!(
            decode(0b100_000_001_11_010_00),
            Some(Zcb::Load {
                size: 1,
                signed: false,
                rd: 10,
                rs1: 9,
                offset: 3
            })
        );
        // c.lh a5, 2(s0).
        assert_eq!(
            decode(0b100_001_000_11_111_00),
            Some(Zcb::Load {
                size: 2,
                signed: true,
                rd: 15,
                rs1: 8,
                offset: 2
            })
        );
        // c.sh with bit 6 set is reserved.
        assert_eq!(decode(0b100_011_000_10_111_00), None);
        // c.mul s0, a1; c.not a0; c.zext.w a5.
        assert_eq!(
            decode(0b100_111_000_10_011_01),
            Some(Zcb::Mul { rd: 8, rs2: 11 })
        );
        assert_eq!(
            decode(0b100_111_010_11_101_01),
            Some(Zcb::Unary {
                op: Unary::Not,
                rd: 10
            })
        );
        assert_eq!(
            decode(0b100_111_111_11_100_01),
            Some(Zcb::Unary {
                op: Unary::ZextW,
                rd: 15
            })
        );
        // c.subw, c.addw, reserved unary 110, c.and, any 32-bit low half.
        for h in [
            0b100_111_000_00_001_01u16,
            0b100_111_000_01_001_01,
            0b100_111_000_11_110_01,
            0b100_011_000_11_001_01,
            0b100_000_000_00_000_11,
        ] {
            assert_eq!(decode(h), None, "{h:#06x}");
        }
    }
}
