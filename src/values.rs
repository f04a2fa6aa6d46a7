//! Moving [`DataValue`]s through an entry trampoline's buffer, in the
//! target's byte order.

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir::{self, types};

use crate::error::Error;
use crate::isa::Endianness;
use crate::trampoline::{SLOT_SIZE, VALUES_OFFSET, buffer_size};

/// A zeroed buffer for `sig` holding `args`.
pub fn encode_arguments(
    sig: &ir::Signature,
    args: &[DataValue],
    endianness: Endianness,
) -> Result<Vec<u8>, Error> {
    if args.len() != sig.params.len() {
        return Err(Error::Signature(format!(
            "{} arguments given, the signature {sig} takes {}",
            args.len(),
            sig.params.len()
        )));
    }
    let mut buffer = vec![0u8; buffer_size(sig)];
    encode_slots(&sig.params, args, &mut buffer, endianness)?;
    Ok(buffer)
}

/// Write `values`, typed by `types`, into the value slots of `buffer` (a
/// buffer or glue frame: slot `i` at `VALUES_OFFSET + i * SLOT_SIZE`).
pub fn encode_slots(
    types: &[ir::AbiParam],
    values: &[DataValue],
    buffer: &mut [u8],
    endianness: Endianness,
) -> Result<(), Error> {
    if values.len() != types.len() {
        return Err(Error::Signature(format!(
            "{} values given for {} slots",
            values.len(),
            types.len()
        )));
    }
    for (i, (value, param)) in values.iter().zip(types).enumerate() {
        let start = (VALUES_OFFSET + SLOT_SIZE * i as i32) as usize;
        // The common scalars of the slot's type first (inline: a host
        // function's results are encoded here); anything else, a mismatch
        // or a slot cut short by the buffer's end included, below.
        if buffer
            .get_mut(start..)
            .is_some_and(|slot| write_common_scalar(value, param.value_type, slot, endianness))
        {
            continue;
        }
        // Run lines write vector constants as bytes (`i8x16`) whatever the
        // lane type: any vector of the parameter's size fits.
        let fits = value.ty() == param.value_type
            || (value.ty().is_vector()
                && param.value_type.is_vector()
                && value.ty().bytes() == param.value_type.bytes());
        if !fits {
            return Err(Error::Signature(format!(
                "value {i} is {} but the slot is {}",
                value.ty(),
                param.value_type
            )));
        }
        let bytes = param.value_type.bytes() as usize;
        let len = buffer.len();
        let slot = buffer.get_mut(start..start + bytes).ok_or_else(|| {
            Error::Signature(format!("slot {i} lies outside a {len}-byte buffer"))
        })?;
        if param.value_type.is_vector() {
            // A vector DataValue holds the little-endian memory image (lane
            // 0 first), whatever the host.
            value.write_to_slice_ne(slot);
            to_lane_order(slot, param.value_type, endianness);
        } else {
            write_scalar(value, slot, endianness);
        }
    }
    Ok(())
}

/// Write `value` into the start of `slot` in `endianness` if it is an `i8`,
/// `i16`, `i32`, `i64`, `f32` or `f64` of type `ty` and `slot` has room;
/// whether it did.
#[inline(always)]
fn write_common_scalar(
    value: &DataValue,
    ty: ir::Type,
    slot: &mut [u8],
    endianness: Endianness,
) -> bool {
    // Sizes known at compile time: `write_bits` then copies no run-time
    // length.
    fn put<const N: usize>(slot: &mut [u8], bits: u128, endianness: Endianness) -> bool {
        slot.first_chunk_mut::<N>()
            .map(|chunk| write_bits(bits, chunk, endianness))
            .is_some()
    }
    let Some(bits) = scalar_bits(value).filter(|_| value.ty() == ty) else {
        return false;
    };
    match ty {
        types::I8 => put::<1>(slot, bits, endianness),
        types::I16 => put::<2>(slot, bits, endianness),
        types::I32 | types::F32 => put::<4>(slot, bits, endianness),
        types::I64 | types::F64 => put::<8>(slot, bits, endianness),
        _ => false,
    }
}

/// Write a scalar into the first `value.ty().bytes()` bytes of `slot`, in
/// the target's byte order.
pub(crate) fn write_scalar(value: &DataValue, slot: &mut [u8], endianness: Endianness) {
    match scalar_bits(value) {
        Some(bits) => write_bits(bits, slot, endianness),
        // Not a scalar: its own image (callers pass scalars).
        None => match endianness {
            Endianness::Little => value.write_to_slice_le(slot),
            Endianness::Big => value.write_to_slice_be(slot),
        },
    }
}

/// The bits of a scalar `value`, zero-extended (`None` for a vector).
pub(crate) fn scalar_bits(value: &DataValue) -> Option<u128> {
    Some(match *value {
        DataValue::I8(v) => u128::from(v as u8),
        DataValue::I16(v) => u128::from(v as u16),
        DataValue::I32(v) => u128::from(v as u32),
        DataValue::I64(v) => u128::from(v as u64),
        DataValue::I128(v) => v as u128,
        DataValue::F16(v) => u128::from(v.bits()),
        DataValue::F32(v) => u128::from(v.bits()),
        DataValue::F64(v) => u128::from(v.bits()),
        DataValue::F128(v) => v.bits(),
        DataValue::V128(_) | DataValue::V64(_) | DataValue::V32(_) | DataValue::V16(_) => {
            return None;
        }
    })
}

/// Write the low `slot.len()` bytes of `bits` (1, 2, 4, 8 or 16) in
/// `endianness`: the one scalar encoder of slots, for [`DataValue`]s and
/// [`crate::typed`] handles alike.
#[inline]
pub(crate) fn write_bits(bits: u128, slot: &mut [u8], endianness: Endianness) {
    let size = slot.len().min(16);
    match endianness {
        Endianness::Little => slot[..size].copy_from_slice(&bits.to_le_bytes()[..size]),
        Endianness::Big => slot[..size].copy_from_slice(&bits.to_be_bytes()[16 - size..]),
    }
}

/// Read a `slot.len()`-byte scalar (1, 2, 4, 8 or 16 bytes) in
/// `endianness`, zero-extended: the decoder matching [`write_bits`].
#[inline]
pub(crate) fn read_bits(slot: &[u8], endianness: Endianness) -> u128 {
    let size = slot.len().min(16);
    let mut bytes = [0u8; 16];
    match endianness {
        Endianness::Little => {
            bytes[..size].copy_from_slice(&slot[..size]);
            u128::from_le_bytes(bytes)
        }
        Endianness::Big => {
            bytes[16 - size..].copy_from_slice(&slot[..size]);
            u128::from_be_bytes(bytes)
        }
    }
}

pub(crate) fn read_scalar(slot: &[u8], ty: ir::Type, endianness: Endianness) -> DataValue {
    // The common types at their fixed sizes: every host function call
    // decodes its arguments here, and the general path below (`Type`
    // arithmetic, copies of run-time length, `read_from_slice_ne`'s match)
    // took several times the instructions.
    read_common_scalar(slot, ty, endianness)
        .unwrap_or_else(|| read_any_scalar(slot, ty, endianness))
}

/// [`read_scalar`] for any scalar type, through the value's native image.
fn read_any_scalar(slot: &[u8], ty: ir::Type, endianness: Endianness) -> DataValue {
    let bits = read_bits(&slot[..ty.bytes() as usize], endianness);
    // The same bits in native order, read back as `ty`.
    let native = bits.to_ne_bytes();
    let image = if cfg!(target_endian = "little") {
        &native[..]
    } else {
        &native[16 - ty.bytes() as usize..]
    };
    DataValue::read_from_slice_ne(image, ty)
}

/// [`read_scalar`] of an `i8`, `i16`, `i32`, `i64`, `f32` or `f64` from the
/// start of `slot` (`None` for other types, or a slot too short for the
/// type).
#[inline(always)]
fn read_common_scalar(slot: &[u8], ty: ir::Type, endianness: Endianness) -> Option<DataValue> {
    use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
    // Sizes known at compile time: `read_bits` then copies no run-time
    // length.
    fn bits<const N: usize>(slot: &[u8], endianness: Endianness) -> Option<u128> {
        Some(read_bits(slot.first_chunk::<N>()?, endianness))
    }
    Some(match ty {
        types::I8 => DataValue::I8(bits::<1>(slot, endianness)? as i8),
        types::I16 => DataValue::I16(bits::<2>(slot, endianness)? as i16),
        types::I32 => DataValue::I32(bits::<4>(slot, endianness)? as i32),
        types::F32 => DataValue::F32(Ieee32::with_bits(bits::<4>(slot, endianness)? as u32)),
        types::I64 => DataValue::I64(bits::<8>(slot, endianness)? as i64),
        types::F64 => DataValue::F64(Ieee64::with_bits(bits::<8>(slot, endianness)? as u64)),
        _ => return None,
    })
}

fn to_lane_order(slot: &mut [u8], ty: ir::Type, endianness: Endianness) {
    if endianness == Endianness::Big {
        let lane = ty.lane_type().bytes() as usize;
        for chunk in slot.chunks_mut(lane) {
            chunk.reverse();
        }
    }
}

/// The results of `sig` read back from `buffer`.
pub fn decode_results(
    sig: &ir::Signature,
    buffer: &[u8],
    endianness: Endianness,
) -> Result<Vec<DataValue>, Error> {
    if buffer.len() < buffer_size(sig) {
        return Err(Error::Signature("result buffer too small".into()));
    }
    decode_slots(&sig.returns, buffer, endianness)
}

/// The values typed by `types` in the value slots of `buffer`.
pub fn decode_slots(
    types: &[ir::AbiParam],
    buffer: &[u8],
    endianness: Endianness,
) -> Result<Vec<DataValue>, Error> {
    let mut values = Vec::with_capacity(types.len());
    decode_slots_each(types, buffer, endianness, |value| values.push(value))?;
    Ok(values)
}

/// [`decode_slots`], handing each value to `put` in order instead of
/// collecting them (a caller with room for them need not allocate).
pub(crate) fn decode_slots_each(
    types: &[ir::AbiParam],
    buffer: &[u8],
    endianness: Endianness,
    mut put: impl FnMut(DataValue),
) -> Result<(), Error> {
    for (i, param) in types.iter().enumerate() {
        let start = (VALUES_OFFSET + SLOT_SIZE * i as i32) as usize;
        // The common scalars first (inline: host calls decode every
        // argument here); a slot cut short by the buffer's end falls
        // through to the error below.
        if let Some(value) = buffer
            .get(start..)
            .and_then(|slot| read_common_scalar(slot, param.value_type, endianness))
        {
            put(value);
            continue;
        }
        let bytes = param.value_type.bytes() as usize;
        let slot = buffer.get(start..start + bytes).ok_or_else(|| {
            Error::Signature(format!(
                "slot {i} lies outside a {}-byte buffer",
                buffer.len()
            ))
        })?;
        put(if param.value_type.is_vector() {
            let mut image = [0u8; 16];
            let image = image.get_mut(..bytes).ok_or_else(|| {
                Error::Signature(format!("a {}-byte vector does not fit a slot", bytes))
            })?;
            image.copy_from_slice(slot);
            to_lane_order(image, param.value_type, endianness);
            DataValue::read_from_slice_ne(image, param.value_type)
        } else {
            read_scalar(slot, param.value_type, endianness)
        });
    }
    Ok(())
}

/// Read a header word of the buffer.
#[inline]
pub fn header_word(buffer: &[u8], offset: i32, endianness: Endianness) -> u64 {
    let at = offset as usize;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buffer[at..at + 8]);
    endianness.read_u64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_bits_round_trip_in_both_byte_orders() {
        let mut slot = [0u8; 4];
        write_bits(0x1122_3344, &mut slot, Endianness::Little);
        assert_eq!(slot, [0x44, 0x33, 0x22, 0x11]);
        write_bits(0x1122_3344, &mut slot, Endianness::Big);
        assert_eq!(slot, [0x11, 0x22, 0x33, 0x44]);
        assert_eq!(read_bits(&slot, Endianness::Big), 0x1122_3344);
        assert_eq!(read_bits(&slot, Endianness::Little), 0x4433_2211);
        // Only the slot's bytes are written: the rest of a buffer stays.
        let mut buffer = [0xaau8; 3];
        write_bits(0xffff_ff01, &mut buffer[..1], Endianness::Big);
        assert_eq!(buffer, [0x01, 0xaa, 0xaa]);
    }

    #[test]
    fn common_scalars_read_as_the_general_path_reads_them() {
        let patterns: [[u8; 8]; 4] = [
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
            [0xff; 8],
            // NaN payloads and negative zero, in either byte order.
            [0x7f, 0xc0, 0x00, 0x01, 0x7f, 0xf8, 0x00, 0x01],
            [0x80, 0, 0, 0, 0, 0, 0, 0x80],
        ];
        for endianness in [Endianness::Little, Endianness::Big] {
            for ty in [
                types::I8,
                types::I16,
                types::I32,
                types::I64,
                types::F32,
                types::F64,
            ] {
                for slot in &patterns {
                    let fast = read_common_scalar(slot, ty, endianness).expect("a common type");
                    let general = read_any_scalar(slot, ty, endianness);
                    // Bitwise: `DataValue`'s float equality is IEEE's.
                    assert_eq!(fast.ty(), ty);
                    assert_eq!(scalar_bits(&fast), scalar_bits(&general), "{ty} {slot:x?}");
                    let size = ty.bytes() as usize;
                    assert_eq!(
                        scalar_bits(&fast),
                        Some(read_bits(&slot[..size], endianness))
                    );
                }
            }
            assert_eq!(read_common_scalar(&[1, 2, 3], types::I32, endianness), None);
            assert_eq!(read_common_scalar(&[0; 16], types::I128, endianness), None);
        }
    }

    #[test]
    fn common_scalars_write_as_the_general_path_writes_them() {
        for endianness in [Endianness::Little, Endianness::Big] {
            for value in [
                DataValue::I8(-2),
                DataValue::I16(-300),
                DataValue::I32(0x1234_5678),
                DataValue::I64(-5),
                DataValue::F32(f32::from_bits(0x7fc0_0001).into()),
                DataValue::F64((-0.25f64).into()),
            ] {
                let ty = value.ty();
                let mut fast = [0xaau8; 10];
                assert!(
                    write_common_scalar(&value, ty, &mut fast, endianness),
                    "{ty}"
                );
                let mut general = [0xaau8; 10];
                write_scalar(&value, &mut general[..ty.bytes() as usize], endianness);
                // The same bytes, and none past the value's.
                assert_eq!(fast, general, "{ty} {endianness:?}");
            }
            // A value of another type, or a slot too short: not written.
            let mut slot = [0u8; 8];
            assert!(!write_common_scalar(
                &DataValue::I32(1),
                types::I64,
                &mut slot,
                endianness
            ));
            assert!(!write_common_scalar(
                &DataValue::I64(1),
                types::I64,
                &mut slot[..4],
                endianness
            ));
            assert!(!write_common_scalar(
                &DataValue::I128(1),
                types::I128,
                &mut [0; 16],
                endianness
            ));
            assert_eq!(slot, [0; 8]);
        }
    }

    #[test]
    fn data_values_and_bits_agree() {
        for endianness in [Endianness::Little, Endianness::Big] {
            for value in [
                DataValue::I8(-2),
                DataValue::I16(-300),
                DataValue::I32(0x1234_5678),
                DataValue::I64(-5),
                DataValue::I128(-(1 << 100)),
                DataValue::F32(1.5f32.into()),
                DataValue::F64((-0.25f64).into()),
            ] {
                let ty = value.ty();
                let mut slot = vec![0u8; ty.bytes() as usize];
                write_scalar(&value, &mut slot, endianness);
                assert_eq!(
                    read_scalar(&slot, ty, endianness),
                    value,
                    "{ty} {endianness:?}"
                );
                let expected = match endianness {
                    Endianness::Little => {
                        let mut image = vec![0u8; slot.len()];
                        value.write_to_slice_le(&mut image);
                        image
                    }
                    Endianness::Big => {
                        let mut image = vec![0u8; slot.len()];
                        value.write_to_slice_be(&mut image);
                        image
                    }
                };
                assert_eq!(slot, expected, "{ty} {endianness:?}");
            }
        }
        assert_eq!(
            read_scalar(&[0xff], types::I8, Endianness::Big),
            DataValue::I8(-1)
        );
    }
}
