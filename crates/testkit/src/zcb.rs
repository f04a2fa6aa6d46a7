//! The riscv64 Zcb instructions Cranelift emits, as cases both emulated
//! machines run: unicorn's and QEMU's CPUs lack Zcb, and each machine
//! carries the instructions out itself.

/// A 16-bit instruction, any registers: the mask of its fixed bits and
/// their value.
pub type Encoding = (u16, u16);

/// `c.lbu`.
pub const C_LBU: Encoding = (0xfc03, 0x8000);
/// `c.lhu`.
pub const C_LHU: Encoding = (0xfc43, 0x8400);
/// `c.lh`.
pub const C_LH: Encoding = (0xfc43, 0x8440);
/// `c.sb`.
pub const C_SB: Encoding = (0xfc03, 0x8800);
/// `c.sh`.
pub const C_SH: Encoding = (0xfc43, 0x8c00);
/// `c.zext.b`.
pub const C_ZEXT_B: Encoding = (0xfc7f, 0x9c61);
/// `c.sext.b`.
pub const C_SEXT_B: Encoding = (0xfc7f, 0x9c65);
/// `c.zext.h`.
pub const C_ZEXT_H: Encoding = (0xfc7f, 0x9c69);
/// `c.sext.h`.
pub const C_SEXT_H: Encoding = (0xfc7f, 0x9c6d);
/// `c.zext.w`.
pub const C_ZEXT_W: Encoding = (0xfc7f, 0x9c71);
/// `c.not`.
pub const C_NOT: Encoding = (0xfc7f, 0x9c75);
/// `c.mul`.
pub const C_MUL: Encoding = (0xfc63, 0x9c41);

/// The offset of the first 16-bit instruction `h` with `h & mask == want`
/// in the linear decoding of `code`.
pub fn find_compressed(code: &[u8], (mask, want): Encoding) -> Option<u64> {
    let mut at = 0;
    while at + 2 <= code.len() {
        let h = u16::from_le_bytes([code[at], code[at + 1]]);
        if h & 3 == 3 {
            at += 4;
        } else if h & mask == want {
            return Some(at as u64);
        } else {
            at += 2;
        }
    }
    None
}

/// One Zcb instruction: the flags that make Cranelift emit it, the body of
/// `function %f(i64, i64) -> i64` after `block0(v0, v1)` (instructions
/// separated by `; `, stack slots first) whose code must hold `encoding`,
/// and the result it must give for `(a, b)`.
#[derive(Clone, Copy, Debug)]
pub struct ZcbCase {
    /// ISA flags to enable.
    pub flags: &'static [&'static str],
    /// The function body.
    pub body: &'static str,
    /// The 16-bit instruction the code must hold.
    pub encoding: Encoding,
    /// The expected result for the arguments `(a, b)`.
    pub expected: fn(u64, u64) -> u64,
}

/// Stores `v0` and `v1` in a stack slot, then passes its address through
/// `v1 - v1 + addr` so that the access uses a register base (compressible)
/// rather than `sp`.
macro_rules! slot_body {
    ($tail:literal) => {
        concat!(
            "ss0 = explicit_slot 16, align = 8; v2 = stack_addr.i64 ss0; store v0, v2; ",
            "store v1, v2+8; v3 = isub v1, v1; v4 = iadd v2, v3; ",
            $tail
        )
    };
}

/// Groups of cases, each `@ flags;` then one case a row: the encoding, the
/// body, then `=>` the expected result of `|a, b|`.
macro_rules! cases {
    ($(@ $flags:expr; $($encoding:expr, $body:expr => $expected:expr;)*)*) => {
        &[$($(ZcbCase { flags: $flags, body: $body, encoding: $encoding, expected: $expected },)*)*]
    };
}

const ZCB: &[&str] = &["has_c", "has_zcb"];

/// Every Zcb instruction Cranelift 0.135.8 emits: arithmetic (some only
/// with Zbb or Zba too), then loads and stores.
pub const ZCB_CASES: &[ZcbCase] = cases! {
    @ ZCB;
    C_MUL, "v2 = imul v0, v1; return v2" => |a, b| a.wrapping_mul(b);
    C_NOT, "v2 = bnot v0; return v2" => |a, _| !a;
    C_ZEXT_B, "v2 = iconst.i64 0xff; v3 = band v0, v2; return v3" => |a, _| a & 0xff;
    @ &["has_c", "has_zcb", "has_zbb"];
    C_SEXT_B, "v2 = ireduce.i8 v0; v3 = sextend.i64 v2; return v3"
        => |a, _| a as i8 as i64 as u64;
    C_ZEXT_H, "v2 = ireduce.i16 v0; v3 = uextend.i64 v2; return v3" => |a, _| a & 0xffff;
    C_SEXT_H, "v2 = ireduce.i16 v0; v3 = sextend.i64 v2; return v3"
        => |a, _| a as i16 as i64 as u64;
    @ &["has_c", "has_zcb", "has_zba"];
    C_ZEXT_W, "v2 = ireduce.i32 v0; v3 = uextend.i64 v2; return v3" => |a, _| a & 0xffff_ffff;
    @ ZCB;
    C_LBU, slot_body!("v5 = uload8.i64 v4+3; return v5") => |a, _| (a >> 24) & 0xff;
    C_LHU, slot_body!("v5 = uload16.i64 v4+2; return v5") => |a, _| (a >> 16) & 0xffff;
    C_LH, slot_body!("v5 = sload16.i64 v4+2; return v5")
        => |a, _| (a >> 16) as i16 as i64 as u64;
    C_SB, slot_body!("istore8 v1, v4+2; v5 = load.i64 v4; return v5")
        => |a, b| (a & !0xff_0000) | ((b & 0xff) << 16);
    C_SH, slot_body!("istore16 v1, v4+2; v5 = load.i64 v4; return v5")
        => |a, b| (a & !0xffff_0000) | ((b & 0xffff) << 16);
};
