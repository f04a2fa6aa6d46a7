//! Moving [`DataValue`]s through an entry trampoline's buffer, in the
//! target's byte order.

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir;

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
    for (i, (arg, param)) in args.iter().zip(&sig.params).enumerate() {
        // Run lines write vector constants as bytes (`i8x16`) whatever the
        // lane type: any vector of the parameter's size fits.
        let fits = arg.ty() == param.value_type
            || (arg.ty().is_vector()
                && param.value_type.is_vector()
                && arg.ty().bytes() == param.value_type.bytes());
        if !fits {
            return Err(Error::Signature(format!(
                "argument {i} is {} but the parameter is {}",
                arg.ty(),
                param.value_type
            )));
        }
        let start = (VALUES_OFFSET + SLOT_SIZE * i as i32) as usize;
        let bytes = param.value_type.bytes() as usize;
        let slot = &mut buffer[start..start + bytes];
        if param.value_type.is_vector() {
            // A vector DataValue holds the little-endian memory image (lane
            // 0 first), whatever the host.
            arg.write_to_slice_ne(slot);
            to_lane_order(slot, param.value_type, endianness);
        } else {
            match endianness {
                Endianness::Little => arg.write_to_slice_le(slot),
                Endianness::Big => arg.write_to_slice_be(slot),
            }
        }
    }
    Ok(buffer)
}

/// Turn a vector's little-endian memory image into the target's (or back):
/// lane `i` stays at offset `i * lane size`; on a big-endian target each
/// lane's bytes are reversed. (Reversing all 16 bytes, as
/// `DataValue::write_to_slice_be` does, would also reverse the lane order.)
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
    Ok(sig
        .returns
        .iter()
        .enumerate()
        .map(|(i, ret)| {
            let start = (VALUES_OFFSET + SLOT_SIZE * i as i32) as usize;
            let bytes = ret.value_type.bytes() as usize;
            let slot = &buffer[start..start + bytes];
            if ret.value_type.is_vector() {
                let mut image = slot.to_vec();
                to_lane_order(&mut image, ret.value_type, endianness);
                DataValue::read_from_slice_ne(&image, ret.value_type)
            } else {
                match endianness {
                    Endianness::Little => DataValue::read_from_slice_le(slot, ret.value_type),
                    Endianness::Big => DataValue::read_from_slice_be(slot, ret.value_type),
                }
            }
        })
        .collect())
}

/// Read a header word of the buffer.
pub fn header_word(buffer: &[u8], offset: i32, endianness: Endianness) -> u64 {
    let at = offset as usize;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buffer[at..at + 8]);
    endianness.read_u64(bytes)
}
