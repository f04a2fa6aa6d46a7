//! Vector-facility instructions of z14 that unicorn 2.1.5 (QEMU 5.0's TCG)
//! lacks, carried out in Rust when they raise an operation or specification
//! exception. Semantics follow the z/Architecture Principles of Operation
//! (vector facility and vector-enhancements facility 1):
//!
//! * Binary floating point on short (`…sb`, four `f32` lanes) and long
//!   (`…db`, two `f64` lanes) formats, all-elements and single-element
//!   (`w…`, M bit 8) forms: `VFA`, `VFS`, `VFM`, `VFD`, `VFSQ`, `VFPSO`
//!   (`vflcsb`, `vflnsb`, `vflpsb`), `VFMA`, `VFMS`, `VFNMA`, `VFNMS`, `VFI`
//!   (rounding modes 0, 1, 3–7 of M5), `VFCE`, `VFCH`, `VFCHE` (with the
//!   condition-code-set bit), `WFC`, `WFK`, `VFMIN` and `VFMAX` (every M6
//!   mode: IEEE, Java, C macro, C++, C `fmin`, and their magnitude forms).
//!   QEMU 5 only has the long format of the vector facility, and neither
//!   `VFMIN`/`VFMAX` nor `VFNMA`/`VFNMS` at all.
//! * `VBPERM` (vector bit permute) and `VPOPCT` with halfword, word and
//!   doubleword elements (QEMU 5 only counts bytes).
//!
//! NaNs follow the architecture: an operation with NaN operands delivers the
//! first signalling NaN (of the second, third, fourth operand, in that
//! order) made quiet, else the first quiet NaN; an invalid operation on
//! non-NaN operands (`inf - inf`, `0 * inf`, `sqrt(-1)`) delivers the default
//! NaN, positive with only the leftmost fraction bit set. The elements of a
//! single-element form's result other than element 0 are set to zero (the
//! architecture leaves them unpredictable; later QEMUs zero them).
//!
//! Limits: only the default FPC (round to nearest even, no IEEE trap
//! enabled) is supported — any other FPC leaves the exception to be reported;
//! FPC flags are not updated; the extended format (`…xb`) is not handled.

use cranelift_exn::Error;
use unicorn_engine::RegisterS390X;

use crate::core::Core;

/// The fields of a 6-byte `E7` instruction, by position; each format names
/// them differently (see the callers).
struct Fields {
    v1: u8,
    v2: u8,
    v3: u8,
    v4: u8,
    /// Bits 20–23 (VRR-e M6).
    b20: u8,
    /// Bits 24–27 (VRR-a M5, VRR-c M6).
    b24: u8,
    /// Bits 28–31 (VRR-a M4, VRR-c M5, VRR-e M5).
    b28: u8,
    /// Bits 32–35 (VRR-a M3, VRR-c M4).
    b32: u8,
    op: u8,
}

impl Fields {
    fn decode(insn: &[u8; 6]) -> Fields {
        // RXB extends each register field to 5 bits.
        let rxb = insn[4] & 0xf;
        Fields {
            v1: (insn[1] >> 4) | (rxb & 8) << 1,
            v2: (insn[1] & 0xf) | (rxb & 4) << 2,
            v3: (insn[2] >> 4) | (rxb & 2) << 3,
            v4: (insn[4] >> 4) | (rxb & 1) << 4,
            b20: insn[2] & 0xf,
            b24: insn[3] >> 4,
            b28: insn[3] & 0xf,
            b32: insn[4] >> 4,
            op: insn[5],
        }
    }
}

/// Read vector register `v` as a 128-bit big-endian value (element 0 in the
/// most significant bits).
pub(super) fn read_vr(core: &Core<'_>, v: u8) -> Result<u128, Error> {
    let high = core.read_raw(RegisterS390X::F0 as i32 + i32::from(v), "vr")?;
    let low = core.read_raw(RegisterS390X::F0_HI as i32 + i32::from(v), "vr")?;
    Ok(u128::from(high) << 64 | u128::from(low))
}

/// Write vector register `v`.
pub(super) fn write_vr(core: &mut Core<'_>, v: u8, value: u128) -> Result<(), Error> {
    core.write_raw(
        RegisterS390X::F0 as i32 + i32::from(v),
        "vr",
        (value >> 64) as u64,
    )?;
    core.write_raw(
        RegisterS390X::F0_HI as i32 + i32::from(v),
        "vr",
        value as u64,
    )
}

/// Element `i` of `bits`-bit elements.
fn element(vector: u128, bits: u32, i: u32) -> u64 {
    let shift = 128 - bits * (i + 1);
    ((vector >> shift) & ((1u128 << bits) - 1)) as u64
}

/// `vector` with element `i` of `bits`-bit elements replaced.
fn with_element(vector: u128, bits: u32, i: u32, value: u64) -> u128 {
    let shift = 128 - bits * (i + 1);
    let mask = ((1u128 << bits) - 1) << shift;
    (vector & !mask) | ((u128::from(value) << shift) & mask)
}

/// Set the PSW condition code.
fn set_cc(core: &mut Core<'_>, cc: u64) -> Result<(), Error> {
    let id = RegisterS390X::PSWM as i32;
    let mask = core.read_raw(id, "psw mask")?;
    core.write_raw(id, "psw mask", (mask & !(3 << 44)) | (cc << 44))
}

/// Whether the FPC is the default one this module supports: round to
/// nearest even, no IEEE exception enabled.
fn default_fpc(core: &Core<'_>) -> Result<bool, Error> {
    let fpc = core.read_raw(RegisterS390X::FPC as i32, "fpc")? as u32;
    Ok(fpc & 0xf800_0007 == 0)
}

/// Carry out the `E7` instruction if it is one of this module's; `false`
/// leaves the exception to be reported.
pub(super) fn emulate(core: &mut Core<'_>, insn: &[u8; 6]) -> Result<bool, Error> {
    let f = Fields::decode(insn);
    match f.op {
        // VPOPCT: VRR-a, M3 = element size.
        0x50 if f.b32 <= 3 && f.b28 == 0 && f.b24 == 0 => {
            let bits = 8u32 << f.b32;
            let source = read_vr(core, f.v2)?;
            let mut result = 0;
            for i in 0..128 / bits {
                let count = element(source, bits, i).count_ones();
                result = with_element(result, bits, i, u64::from(count));
            }
            write_vr(core, f.v1, result)?;
            Ok(true)
        }
        // VBPERM: VRR-c. Each byte of V3 selects a bit of V2 (0 = leftmost;
        // 128 and above select zero); the 16 bits go to bits 48–63.
        0x85 => {
            let (source, indices) = (read_vr(core, f.v2)?, read_vr(core, f.v3)?);
            let mut bits = 0u128;
            for i in 0..16 {
                let index = element(indices, 8, i);
                if index < 128 {
                    bits |= ((source >> (127 - index)) & 1) << (15 - i);
                }
            }
            write_vr(core, f.v1, bits << 64)?;
            Ok(true)
        }
        _ => floating_point(core, &f),
    }
}

/// The floating-point format of an M field: short or long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Short,
    Long,
}

impl Format {
    fn from_field(m: u8) -> Option<Format> {
        match m {
            2 => Some(Format::Short),
            3 => Some(Format::Long),
            _ => None,
        }
    }

    fn bits(self) -> u32 {
        match self {
            Format::Short => 32,
            Format::Long => 64,
        }
    }
}

/// Which operation, with the operands it takes.
#[derive(Clone, Copy, Debug)]
enum FpOp {
    /// Two operands: add, subtract, multiply, divide.
    Arith(Arith),
    /// `VFSQ`.
    Sqrt,
    /// `VFPSO` with its M5 operation: 0 complement, 1 negative, 2 positive.
    Sign(u8),
    /// `VFI` with its M5 rounding method.
    Round(u8),
    /// Fused multiply-add: subtract the addend, negate the result.
    Fma { subtract: bool, negate: bool },
    /// `VFCE` (0), `VFCHE` (1), `VFCH` (2); whether to set the condition
    /// code.
    Compare { kind: Cmp, set_cc: bool },
    /// `WFC`/`WFK`: the condition code of element 0 only.
    CompareScalar,
    /// `VFMIN`/`VFMAX` with the M6 mode.
    MinMax { max: bool, mode: u8 },
}

#[derive(Clone, Copy, Debug)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug)]
enum Cmp {
    Equal,
    HighOrEqual,
    High,
}

/// Decode and run a floating-point instruction.
fn floating_point(core: &mut Core<'_>, f: &Fields) -> Result<bool, Error> {
    // Per format: VRR-c (fpf = M4 at bit 32, single = M5 at bit 28, M6 at
    // bit 24), VRR-a (fpf = M3 at bit 32, M4 at bit 28, M5 at bit 24),
    // VRR-e (fpf = M6 at bit 20, single = M5 at bit 28).
    let (fpf, m_single, op) = match f.op {
        0xe3 | 0xe2 | 0xe7 | 0xe5 if f.b24 == 0 => {
            let arith = match f.op {
                0xe3 => Arith::Add,
                0xe2 => Arith::Sub,
                0xe7 => Arith::Mul,
                _ => Arith::Div,
            };
            (f.b32, f.b28, FpOp::Arith(arith))
        }
        0xce if f.b24 == 0 => (f.b32, f.b28, FpOp::Sqrt),
        0xcc if f.b24 <= 2 => (f.b32, f.b28, FpOp::Sign(f.b24)),
        // M4's XxC bit (4) only suppresses the inexact flag, which is not
        // kept; mode 2 is invalid.
        0xc7 if f.b24 <= 7 && f.b24 != 2 => (f.b32, f.b28 & 8, FpOp::Round(f.b24)),
        0x8f | 0x8e | 0x9f | 0x9e => (
            f.b20,
            f.b28,
            FpOp::Fma {
                subtract: f.op & 1 == 0,
                negate: f.op & 0xf0 == 0x90,
            },
        ),
        // M5 bit 4 (SQ, the signalling compares) only matters for traps.
        0xe8 | 0xea | 0xeb if f.b24 & !1 == 0 => {
            let kind = match f.op {
                0xe8 => Cmp::Equal,
                0xea => Cmp::HighOrEqual,
                _ => Cmp::High,
            };
            let op = FpOp::Compare {
                kind,
                set_cc: f.b24 & 1 != 0,
            };
            (f.b32, f.b28 & !4, op)
        }
        0xcb | 0xca if f.b28 == 0 && f.b24 == 0 => (f.b32, 8, FpOp::CompareScalar),
        0xee | 0xef if matches!(f.b24, 0..=4 | 8..=12) => (
            f.b32,
            f.b28,
            FpOp::MinMax {
                max: f.op == 0xef,
                mode: f.b24,
            },
        ),
        _ => return Ok(false),
    };
    let Some(format) = Format::from_field(fpf) else {
        return Ok(false);
    };
    let single = match m_single {
        0 => false,
        8 => true,
        _ => return Ok(false),
    };
    if !default_fpc(core)? {
        return Ok(false);
    }
    let bits = format.bits();
    let lanes = if single { 1 } else { 128 / bits };
    let a = read_vr(core, f.v2)?;
    let b = read_vr(core, f.v3)?;
    let c = read_vr(core, f.v4)?;
    if let FpOp::CompareScalar = op {
        // WFC/WFK compare V1 with V2.
        let first = read_vr(core, f.v1)?;
        let cc = match compare(format, element(first, bits, 0), element(a, bits, 0)) {
            Some(std::cmp::Ordering::Equal) => 0,
            Some(std::cmp::Ordering::Less) => 1,
            Some(std::cmp::Ordering::Greater) => 2,
            None => 3,
        };
        set_cc(core, cc)?;
        return Ok(true);
    }
    let mut result = 0u128;
    let mut true_count = 0;
    for i in 0..lanes {
        let (x, y, z) = (
            element(a, bits, i),
            element(b, bits, i),
            element(c, bits, i),
        );
        let value = match op {
            FpOp::Arith(arith) => arithmetic(format, arith, x, y),
            FpOp::Sqrt => square_root(format, x),
            FpOp::Sign(how) => sign_operation(format, how, x),
            FpOp::Round(mode) => round_to_integer(format, mode, x),
            FpOp::Fma { subtract, negate } => fused(format, x, y, z, subtract, negate),
            FpOp::Compare { kind, .. } => {
                let ordering = compare(format, x, y);
                let holds = match kind {
                    Cmp::Equal => ordering == Some(std::cmp::Ordering::Equal),
                    Cmp::HighOrEqual => matches!(
                        ordering,
                        Some(std::cmp::Ordering::Equal | std::cmp::Ordering::Greater)
                    ),
                    Cmp::High => ordering == Some(std::cmp::Ordering::Greater),
                };
                true_count += u32::from(holds);
                if holds { u64::MAX } else { 0 }
            }
            FpOp::MinMax { max, mode } => min_max(format, max, mode, x, y),
            // Returned above.
            FpOp::CompareScalar => return Ok(false),
        };
        result = with_element(result, bits, i, value);
    }
    write_vr(core, f.v1, result)?;
    if let FpOp::Compare { set_cc: true, .. } = op {
        // 0: true for every element compared, 1: for some, 3: for none.
        let cc = match true_count {
            0 => 3,
            n if n == lanes => 0,
            _ => 1,
        };
        set_cc(core, cc)?;
    }
    Ok(true)
}

// ---- IEEE values as bit patterns ----

/// The parameters of a binary floating-point format.
#[derive(Clone, Copy)]
struct Layout {
    sign: u64,
    exponent: u64,
    quiet: u64,
    default_nan: u64,
}

const SHORT: Layout = Layout {
    sign: 0x8000_0000,
    exponent: 0x7f80_0000,
    quiet: 0x0040_0000,
    default_nan: 0x7fc0_0000,
};

const LONG: Layout = Layout {
    sign: 0x8000_0000_0000_0000,
    exponent: 0x7ff0_0000_0000_0000,
    quiet: 0x0008_0000_0000_0000,
    default_nan: 0x7ff8_0000_0000_0000,
};

fn layout(format: Format) -> Layout {
    match format {
        Format::Short => SHORT,
        Format::Long => LONG,
    }
}

impl Layout {
    fn magnitude(self, x: u64) -> u64 {
        x & !self.sign
    }

    fn is_nan(self, x: u64) -> bool {
        self.magnitude(x) > self.exponent
    }

    fn is_signalling(self, x: u64) -> bool {
        self.is_nan(x) && x & self.quiet == 0
    }

    fn is_zero(self, x: u64) -> bool {
        self.magnitude(x) == 0
    }

    fn is_infinite(self, x: u64) -> bool {
        self.magnitude(x) == self.exponent
    }

    fn is_negative(self, x: u64) -> bool {
        x & self.sign != 0
    }

    /// The NaN an operation on `operands` delivers, if one is a NaN: the
    /// first signalling one made quiet, else the first quiet one.
    fn propagate(self, operands: &[u64]) -> Option<u64> {
        operands
            .iter()
            .find(|&&x| self.is_signalling(x))
            .map(|&x| x | self.quiet)
            .or_else(|| operands.iter().copied().find(|&x| self.is_nan(x)))
    }

    /// A computed result: a NaN from non-NaN operands is the default NaN.
    fn computed(self, x: u64) -> u64 {
        if self.is_nan(x) { self.default_nan } else { x }
    }
}

/// `f32`/`f64` by format: run `$body` with `$t` as the Rust type and
/// `$from`/`$to` converting bit patterns.
macro_rules! by_format {
    ($format:expr, |$t:ident| $body:expr) => {
        match $format {
            Format::Short => {
                #[allow(non_camel_case_types)]
                type $t = f32;
                let from = |x: u64| f32::from_bits(x as u32);
                let to = |x: f32| u64::from(x.to_bits());
                $body(from, to)
            }
            Format::Long => {
                #[allow(non_camel_case_types)]
                type $t = f64;
                let from = f64::from_bits;
                let to = |x: f64| x.to_bits();
                $body(from, to)
            }
        }
    };
}

fn arithmetic(format: Format, op: Arith, x: u64, y: u64) -> u64 {
    let l = layout(format);
    if let Some(nan) = l.propagate(&[x, y]) {
        return nan;
    }
    let value = by_format!(format, |T| |from: fn(u64) -> T, to: fn(T) -> u64| {
        let (a, b) = (from(x), from(y));
        to(match op {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
        })
    });
    l.computed(value)
}

fn square_root(format: Format, x: u64) -> u64 {
    let l = layout(format);
    if let Some(nan) = l.propagate(&[x]) {
        return nan;
    }
    let value = by_format!(format, |T| |from: fn(u64) -> T, to: fn(T) -> u64| to(from(
        x
    )
    .sqrt()));
    l.computed(value)
}

/// `VFPSO`: sign operations never touch a NaN's payload or quiet it.
fn sign_operation(format: Format, how: u8, x: u64) -> u64 {
    let sign = layout(format).sign;
    match how {
        0 => x ^ sign,
        1 => x | sign,
        _ => x & !sign,
    }
}

/// `VFI`: round to an integral value with M5's method (0 is the FPC's,
/// which [`default_fpc`] makes round to nearest even).
fn round_to_integer(format: Format, mode: u8, x: u64) -> u64 {
    let l = layout(format);
    if let Some(nan) = l.propagate(&[x]) {
        return nan;
    }
    by_format!(format, |T| |from: fn(u64) -> T, to: fn(T) -> u64| {
        let a = from(x);
        let rounded = match mode {
            1 => a.round(),
            3 => {
                // Round to prepare for shorter precision: truncate, and
                // if that was inexact make the integer odd.
                let t = a.trunc();
                if t != a && t % 2.0 == 0.0 {
                    t + a.signum()
                } else {
                    t
                }
            }
            5 => a.trunc(),
            6 => a.ceil(),
            7 => a.floor(),
            // 0 (FPC: nearest even) and 4.
            _ => a.round_ties_even(),
        };
        // Keep the operand's sign on a zero result (-0.4 rounds to -0).
        to(rounded.copysign(a))
    })
}

/// `VFMA` family: `±(x * y ± z)`.
fn fused(format: Format, x: u64, y: u64, z: u64, subtract: bool, negate: bool) -> u64 {
    let l = layout(format);
    // `0 * inf` is invalid even when the addend is a quiet NaN.
    let zero_times_infinity =
        (l.is_zero(x) && l.is_infinite(y)) || (l.is_infinite(x) && l.is_zero(y));
    if zero_times_infinity && !l.is_nan(z) {
        return l.default_nan;
    }
    if let Some(nan) = l.propagate(&[x, y, z]) {
        return if zero_times_infinity {
            l.default_nan
        } else {
            nan
        };
    }
    let addend = if subtract { z ^ l.sign } else { z };
    let value = by_format!(format, |T| |from: fn(u64) -> T, to: fn(T) -> u64| to(from(
        x
    )
    .mul_add(from(y), from(addend))));
    let value = l.computed(value);
    if negate && !l.is_nan(value) {
        value ^ l.sign
    } else {
        value
    }
}

/// IEEE comparison; `None` when unordered.
fn compare(format: Format, x: u64, y: u64) -> Option<std::cmp::Ordering> {
    by_format!(format, |T| |from: fn(u64) -> T, _to: fn(T) -> u64| from(x)
        .partial_cmp(&from(y)))
}

/// `VFMIN`/`VFMAX` of `x` (the second operand) and `y` (the third) with
/// M6 `mode`: 0 IEEE minNum/maxNum, 1 Java `Math.min`, 2 C macro
/// `x < y ? x : y` (for max `x > y ? x : y`), 3 C++ `std::min`
/// (`y < x ? y : x`), 4 C `fmin`; 8–12 the same on magnitudes.
fn min_max(format: Format, max: bool, mode: u8, x: u64, y: u64) -> u64 {
    use std::cmp::Ordering;
    let l = layout(format);
    let magnitude = mode >= 8;
    let mode = mode & 7;
    let (a, b) = if magnitude {
        (l.magnitude(x), l.magnitude(y))
    } else {
        (x, y)
    };
    // Whether `a` is the smaller (for min) or larger (for max) of two
    // ordered, not both zero values.
    let pick_a = |ordering: Ordering| {
        if max {
            ordering == Ordering::Greater
        } else {
            ordering == Ordering::Less
        }
    };
    if l.is_nan(a) || l.is_nan(b) {
        return match mode {
            // C fmin: the other operand unless the third is a number.
            4 => {
                if l.is_nan(b) {
                    a
                } else {
                    b
                }
            }
            // IEEE: a quiet NaN loses to a number; a signalling one is
            // delivered made quiet.
            0 => {
                if l.is_signalling(a) || l.is_signalling(b) {
                    l.propagate(&[a, b]).unwrap_or(l.default_nan)
                } else if l.is_nan(a) && l.is_nan(b) {
                    a
                } else if l.is_nan(a) {
                    b
                } else {
                    a
                }
            }
            1 => l.propagate(&[a, b]).unwrap_or(l.default_nan),
            // The C macro's comparison is false: its second choice.
            2 => b,
            // std::min's comparison is false: its first choice.
            _ => a,
        };
    }
    if l.is_zero(a) && l.is_zero(b) {
        let a_negative = l.is_negative(a);
        return match mode {
            // -0 is below +0.
            0 | 1 | 4 => {
                if a_negative != max {
                    a
                } else {
                    b
                }
            }
            2 => b,
            _ => a,
        };
    }
    match compare(format, a, b) {
        Some(Ordering::Equal) => match mode {
            2 => b,
            _ => a,
        },
        Some(ordering) => {
            if pick_a(ordering) {
                a
            } else {
                b
            }
        }
        // Unordered: impossible, NaNs are handled above.
        None => l.default_nan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_big_endian() {
        let v = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128;
        assert_eq!(element(v, 32, 0), 0x0011_2233);
        assert_eq!(element(v, 64, 1), 0x8899_aabb_ccdd_eeff);
        assert_eq!(with_element(0, 16, 7, 0xabcd), 0xabcd);
    }

    #[test]
    fn nan_propagation_prefers_signalling_then_first() {
        let snan = 0x7f80_0001u64;
        let qnan = 0xffc0_0002u64;
        let one = 1f32.to_bits() as u64;
        assert_eq!(
            arithmetic(Format::Short, Arith::Add, qnan, snan),
            0x7fc0_0001
        );
        assert_eq!(arithmetic(Format::Short, Arith::Add, one, qnan), qnan);
        let inf = f32::INFINITY.to_bits() as u64;
        assert_eq!(
            arithmetic(Format::Short, Arith::Sub, inf, inf),
            SHORT.default_nan
        );
    }

    #[test]
    fn java_min_max_order_zeros_and_propagate_nans() {
        let (pz, nz) = (0u64, SHORT.sign);
        assert_eq!(min_max(Format::Short, false, 1, pz, nz), nz);
        assert_eq!(min_max(Format::Short, true, 1, nz, pz), pz);
        let qnan = 0x7fc0_0005u64;
        assert_eq!(min_max(Format::Short, false, 1, pz, qnan), qnan);
        // C++ mode passes the first operand through on NaN.
        assert_eq!(min_max(Format::Short, false, 3, qnan, pz), qnan);
        assert_eq!(min_max(Format::Short, false, 3, pz, qnan), pz);
    }
}
