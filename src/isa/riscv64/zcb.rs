//! Decoding and semantics of the 16-bit Zcb instructions (the RISC-V
//! "simple code-size saving" extension, ratified 2023), for machines whose
//! CPU lacks them and that carry them out themselves: unicorn's QEMU 5
//! runs them silently as other instructions, QEMU 7.2 user mode stops with
//! `SIGILL` at them.
//!
//! * `c.lbu`, `c.lhu`, `c.lh` (zero-/sign-extended loads), `c.sb`, `c.sh`;
//! * `c.zext.b`, `c.sext.b`, `c.zext.h`, `c.sext.h`, `c.zext.w`, `c.not`,
//!   `c.mul`.
//!
//! Registers are the compressed set x8–x15 (never `x0`). [`decode`] reads a
//! halfword, [`Zcb::access`] names the memory a load or store touches (for
//! a machine that checks it first) and [`Zcb::execute`] carries an
//! instruction out on a [`Hart`], the registers and memory a machine gives
//! it. Each instruction is [`LEN`] bytes long.
//!
//! Finding them in code: RISC-V instructions start at any 2-byte boundary
//! and code may hold data, so [`offsets`] lists every halfword whose bits
//! decode as a Zcb instruction, without decoding linearly. Some of them may
//! be the upper half of a 32-bit instruction or data; a halfword is a Zcb
//! instruction only where execution reaches an instruction start.

/// The length of every Zcb instruction, in bytes.
pub const LEN: u64 = 2;

/// A Zcb instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zcb {
    /// `c.lbu`/`c.lhu`/`c.lh rd', uimm(rs1')`.
    Load {
        /// Bytes loaded: 1 or 2.
        size: usize,
        /// Sign-extended (`c.lh`) rather than zero-extended.
        signed: bool,
        /// The destination register number.
        rd: u8,
        /// The base-address register number.
        rs1: u8,
        /// The unsigned offset added to the base.
        offset: u64,
    },
    /// `c.sb`/`c.sh rs2', uimm(rs1')`.
    Store {
        /// Bytes stored: 1 or 2.
        size: usize,
        /// The register number whose low bytes are stored.
        rs2: u8,
        /// The base-address register number.
        rs1: u8,
        /// The unsigned offset added to the base.
        offset: u64,
    },
    /// `c.mul rd', rs2'`: `rd = rd * rs2` (low 64 bits).
    Mul {
        /// The destination and first operand register number.
        rd: u8,
        /// The second operand register number.
        rs2: u8,
    },
    /// A unary operation on `rd'` in place.
    Unary {
        /// The operation.
        op: Unary,
        /// The register number operated on.
        rd: u8,
    },
}

/// The in-place operations of Zcb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    /// `c.zext.b`: the low byte, zero-extended.
    ZextB,
    /// `c.sext.b`: the low byte, sign-extended (needs Zbb).
    SextB,
    /// `c.zext.h`: the low halfword, zero-extended (needs Zbb).
    ZextH,
    /// `c.sext.h`: the low halfword, sign-extended (needs Zbb).
    SextH,
    /// `c.zext.w`: the low word, zero-extended (needs Zba).
    ZextW,
    /// `c.not`: every bit inverted.
    Not,
}

impl Unary {
    /// The result for the register's value `x`.
    pub fn apply(self, x: u64) -> u64 {
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

/// The memory a Zcb load or store accesses: `size` bytes at `x[rs1] +
/// offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The base-address register number.
    pub rs1: u8,
    /// The unsigned offset added to the base.
    pub offset: u64,
    /// Bytes accessed: 1 or 2.
    pub size: usize,
    /// A store rather than a load.
    pub write: bool,
}

/// The integer registers and memory a Zcb instruction works on, as a
/// machine provides them. Memory is little-endian, as on every RISC-V
/// Linux target.
pub trait Hart {
    /// What a failed register or memory access reports.
    type Error;

    /// Integer register `x{n}` (`n` in 8..=15).
    fn x(&mut self, n: u8) -> Result<u64, Self::Error>;

    /// Set integer register `x{n}` (`n` in 8..=15).
    fn set_x(&mut self, n: u8, value: u64) -> Result<(), Self::Error>;

    /// Read `bytes.len()` bytes at `address` as the program would (a load
    /// of inaccessible memory is the program's fault, for the machine to
    /// report).
    fn load(&mut self, address: u64, bytes: &mut [u8]) -> Result<(), Self::Error>;

    /// Write `bytes` at `address` as the program would.
    fn store(&mut self, address: u64, bytes: &[u8]) -> Result<(), Self::Error>;
}

impl Zcb {
    /// The memory a load or store accesses; `None` for the others.
    pub fn access(self) -> Option<Access> {
        match self {
            Zcb::Load {
                size, rs1, offset, ..
            } => Some(Access {
                rs1,
                offset,
                size,
                write: false,
            }),
            Zcb::Store {
                size, rs1, offset, ..
            } => Some(Access {
                rs1,
                offset,
                size,
                write: true,
            }),
            Zcb::Mul { .. } | Zcb::Unary { .. } => None,
        }
    }

    /// Carry the instruction out on `hart` (the program counter is the
    /// caller's: the next instruction is [`LEN`] bytes on). A load or store
    /// accesses memory once, with its size, wherever the address is
    /// (misaligned included, as QEMU's own accesses are); a failed access
    /// is `hart`'s error and changes no register.
    pub fn execute<H: Hart + ?Sized>(self, hart: &mut H) -> Result<(), H::Error> {
        match self {
            Zcb::Load {
                size,
                signed,
                rd,
                rs1,
                offset,
            } => {
                let address = hart.x(rs1)?.wrapping_add(offset);
                let mut bytes = [0u8; 2];
                let bytes = &mut bytes[..size.min(2)];
                hart.load(address, bytes)?;
                let value = match *bytes {
                    [b] => u64::from(b),
                    [lo, hi] if signed => i16::from_le_bytes([lo, hi]) as i64 as u64,
                    [lo, hi] => u64::from(u16::from_le_bytes([lo, hi])),
                    _ => 0,
                };
                hart.set_x(rd, value)
            }
            Zcb::Store {
                size,
                rs2,
                rs1,
                offset,
            } => {
                let address = hart.x(rs1)?.wrapping_add(offset);
                let value = hart.x(rs2)?.to_le_bytes();
                hart.store(address, &value[..size.min(2)])
            }
            Zcb::Mul { rd, rs2 } => {
                let product = hart.x(rd)?.wrapping_mul(hart.x(rs2)?);
                hart.set_x(rd, product)
            }
            Zcb::Unary { op, rd } => {
                let value = op.apply(hart.x(rd)?);
                hart.set_x(rd, value)
            }
        }
    }
}

/// The register number of a compressed register field (x8–x15).
fn creg(field: u16) -> u8 {
    8 + (field & 7) as u8
}

/// Decode `h` if it is a Zcb instruction.
pub fn decode(h: u16) -> Option<Zcb> {
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
pub fn offsets(code: &[u8]) -> Vec<usize> {
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

    #[test]
    fn offsets_find_every_aligned_halfword() {
        // c.nop, c.not a0, the 32-bit `ret`, c.mul s0, a1.
        let code = [0x01, 0x00, 0x75, 0x9d, 0x67, 0x80, 0x00, 0x00, 0x4d, 0x9c];
        assert_eq!(offsets(&code), [2, 8]);
        assert_eq!(offsets(&code[..9]), [2]);
    }

    /// Registers x8..x15 and 16 bytes of memory at 0x100; other addresses
    /// fail.
    struct Toy {
        x: [u64; 8],
        memory: [u8; 16],
    }

    impl Toy {
        fn range(&self, address: u64, len: usize) -> Result<std::ops::Range<usize>, String> {
            let start = address
                .checked_sub(0x100)
                .filter(|&s| s + len as u64 <= 16)
                .ok_or_else(|| format!("no memory at {address:#x}"))?;
            Ok(start as usize..start as usize + len)
        }
    }

    impl Hart for Toy {
        type Error = String;
        fn x(&mut self, n: u8) -> Result<u64, String> {
            Ok(self.x[usize::from(n - 8)])
        }
        fn set_x(&mut self, n: u8, value: u64) -> Result<(), String> {
            self.x[usize::from(n - 8)] = value;
            Ok(())
        }
        fn load(&mut self, address: u64, bytes: &mut [u8]) -> Result<(), String> {
            let range = self.range(address, bytes.len())?;
            bytes.copy_from_slice(&self.memory[range]);
            Ok(())
        }
        fn store(&mut self, address: u64, bytes: &[u8]) -> Result<(), String> {
            let range = self.range(address, bytes.len())?;
            self.memory[range].copy_from_slice(bytes);
            Ok(())
        }
    }

    fn toy() -> Toy {
        let mut memory = [0u8; 16];
        for (i, b) in memory.iter_mut().enumerate() {
            *b = 0xf0 | i as u8;
        }
        Toy {
            x: [0x100, 0x1_2345_8081, 3, 0, 0, 0, 0, u64::MAX],
            memory,
        }
    }

    fn run(insn: Zcb) -> Result<Toy, String> {
        let mut hart = toy();
        insn.execute(&mut hart)?;
        Ok(hart)
    }

    #[test]
    fn execute_extends_loads_and_truncates_stores() {
        let load = |size, signed, offset| Zcb::Load {
            size,
            signed,
            rd: 10,
            rs1: 8,
            offset,
        };
        assert_eq!(run(load(1, false, 3)).unwrap().x[2], 0xf3);
        assert_eq!(run(load(2, false, 2)).unwrap().x[2], 0xf3f2);
        assert_eq!(run(load(2, true, 2)).unwrap().x[2], 0xffff_ffff_ffff_f3f2);
        let store = Zcb::Store {
            size: 2,
            rs2: 9,
            rs1: 8,
            offset: 2,
        };
        let hart = run(store).unwrap();
        assert_eq!(hart.memory[1..5], [0xf1, 0x81, 0x80, 0xf4]);
        assert_eq!(
            store.access(),
            Some(Access {
                rs1: 8,
                offset: 2,
                size: 2,
                write: true
            })
        );
        // A failed access leaves the destination alone.
        let far = Zcb::Load {
            size: 1,
            signed: false,
            rd: 9,
            rs1: 15,
            offset: 0,
        };
        let mut hart = toy();
        assert_eq!(
            far.execute(&mut hart).err(),
            Some("no memory at 0xffffffffffffffff".into())
        );
        assert_eq!(hart.x[1], 0x1_2345_8081);
    }

    #[test]
    fn execute_arithmetic() {
        let mul = run(Zcb::Mul { rd: 9, rs2: 10 }).unwrap();
        assert_eq!(mul.x[1], 0x1_2345_8081u64.wrapping_mul(3));
        assert_eq!(Zcb::Mul { rd: 9, rs2: 10 }.access(), None);
        let cases = [
            (Unary::ZextB, 0x81),
            (Unary::SextB, 0xffff_ffff_ffff_ff81),
            (Unary::ZextH, 0x8081),
            (Unary::SextH, 0xffff_ffff_ffff_8081),
            (Unary::ZextW, 0x2345_8081),
            (Unary::Not, !0x1_2345_8081u64),
        ];
        for (op, want) in cases {
            assert_eq!(run(Zcb::Unary { op, rd: 9 }).unwrap().x[1], want, "{op:?}");
        }
    }
}
