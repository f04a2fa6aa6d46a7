//! Typed handles to JIT functions: `module.typed::<(i64, i64), i64>("add")`
//! checks the signature once, then calls take and return Rust values.

use std::marker::PhantomData;

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir::{Type, types};

use crate::error::Error;
use crate::isa::Endianness;
use crate::machine::Machine;
use crate::module::{CallError, JitModule, RawEntry, symbol_name};
use crate::trampoline::{BufferWord, SLOT_SIZE, VALUES_OFFSET};
use crate::values::{read_bits, read_scalar, scalar_bits, write_bits};

/// A Rust type that crosses a JIT call as one CLIF value.
pub trait Value: Sized {
    /// Its CLIF type.
    const TYPE: Type;
    /// As a [`DataValue`].
    fn into_data(self) -> DataValue {
        let bits = self.to_bits().to_le_bytes();
        read_scalar(
            &bits[..Self::TYPE.bytes() as usize],
            Self::TYPE,
            Endianness::Little,
        )
    }
    /// From a [`DataValue`] of type [`Value::TYPE`].
    fn from_data(value: &DataValue) -> Option<Self> {
        if value.ty() != Self::TYPE {
            return None;
        }
        scalar_bits(value).map(Self::from_bits)
    }

    /// Its bits, zero-extended to 128.
    fn to_bits(self) -> u128;
    /// The value whose [`Value::to_bits`] are the low
    /// [`Value::TYPE`]`.bytes()` bytes of `bits`.
    fn from_bits(bits: u128) -> Self;

    /// Write the value into the buffer slot starting at `slot[0]` (see
    /// [`crate::trampoline`]) in the target's byte order.
    #[inline]
    fn write_slot(self, slot: &mut [u8], endianness: Endianness) {
        write_bits(
            self.to_bits(),
            &mut slot[..Self::TYPE.bytes() as usize],
            endianness,
        );
    }

    /// Read a value written in the target's byte order from the buffer slot
    /// starting at `slot[0]`.
    #[inline]
    fn read_slot(slot: &[u8], endianness: Endianness) -> Option<Self> {
        Some(Self::from_bits(read_bits(
            &slot[..Self::TYPE.bytes() as usize],
            endianness,
        )))
    }
}

/// `impl Value` for Rust scalars: `rust => CLIF type, into bits, from
/// bits;`.
macro_rules! scalar_value {
    ($($rust:ty => $clif:ident, $to:expr, $from:expr;)*) => {$(
        impl Value for $rust {
            const TYPE: Type = types::$clif;
            #[inline]
            fn to_bits(self) -> u128 {
                $to(self)
            }
            #[inline]
            fn from_bits(bits: u128) -> Self {
                $from(bits)
            }
        }
    )*};
}

scalar_value! {
    i8 => I8, |v: i8| u128::from(v as u8), |b: u128| b as u8 as i8;
    u8 => I8, u128::from, |b: u128| b as u8;
    i16 => I16, |v: i16| u128::from(v as u16), |b: u128| b as u16 as i16;
    u16 => I16, u128::from, |b: u128| b as u16;
    i32 => I32, |v: i32| u128::from(v as u32), |b: u128| b as u32 as i32;
    u32 => I32, u128::from, |b: u128| b as u32;
    i64 => I64, |v: i64| u128::from(v as u64), |b: u128| b as u64 as i64;
    u64 => I64, u128::from, |b: u128| b as u64;
    i128 => I128, |v: i128| v as u128, |b: u128| b as i128;
    u128 => I128, |v: u128| v, |b: u128| b;
    f32 => F32, |v: f32| u128::from(v.to_bits()), |b: u128| f32::from_bits(b as u32);
    f64 => F64, |v: f64| u128::from(v.to_bits()), |b: u128| f64::from_bits(b as u64);
}

/// The parameters of a typed call: `()`, a [`Value`], or a tuple of them.
pub trait Params {
    /// The CLIF types, in order.
    fn types() -> Vec<Type>;
    /// The values, in order.
    fn into_values(self) -> Vec<DataValue>;
    /// Write the values into the value slots of a call buffer.
    fn write_slots(self, buffer: &mut [u8], endianness: Endianness);
}

/// The results of a typed call: `()`, a [`Value`], or a tuple of them.
pub trait Results: Sized {
    /// The CLIF types, in order.
    fn types() -> Vec<Type>;
    /// From the values a call returned (checked against [`Results::types`]).
    fn from_values(values: &[DataValue]) -> Option<Self>;
    /// Read the values from the value slots of a call buffer.
    fn read_slots(buffer: &[u8], endianness: Endianness) -> Option<Self>;
}

impl<T: Value> Params for T {
    fn types() -> Vec<Type> {
        vec![T::TYPE]
    }
    fn into_values(self) -> Vec<DataValue> {
        vec![self.into_data()]
    }
    fn write_slots(self, buffer: &mut [u8], endianness: Endianness) {
        self.write_slot(&mut buffer[slot(0)..], endianness);
    }
}

impl<T: Value> Results for T {
    fn types() -> Vec<Type> {
        vec![T::TYPE]
    }
    fn from_values(values: &[DataValue]) -> Option<Self> {
        match values {
            [one] => T::from_data(one),
            _ => None,
        }
    }
    fn read_slots(buffer: &[u8], endianness: Endianness) -> Option<Self> {
        T::read_slot(&buffer[slot(0)..], endianness)
    }
}

/// Offset of value slot `i` in a call buffer.
fn slot(i: usize) -> usize {
    VALUES_OFFSET as usize + SLOT_SIZE as usize * i
}

macro_rules! tuple {
    ($($name:ident),*) => {
        impl<$($name: Value),*> Params for ($($name,)*) {
            fn types() -> Vec<Type> {
                vec![$($name::TYPE),*]
            }
            #[allow(non_snake_case)]
            fn into_values(self) -> Vec<DataValue> {
                let ($($name,)*) = self;
                vec![$($name.into_data()),*]
            }
            #[allow(non_snake_case, unused_variables, unused_mut)]
            fn write_slots(self, buffer: &mut [u8], endianness: Endianness) {
                let ($($name,)*) = self;
                let mut i = 0;
                $($name.write_slot(&mut buffer[slot(i)..], endianness); i += 1;)*
            }
        }

        impl<$($name: Value),*> Results for ($($name,)*) {
            fn types() -> Vec<Type> {
                vec![$($name::TYPE),*]
            }
            #[allow(unused_variables, unused_mut, non_snake_case)]
            fn from_values(values: &[DataValue]) -> Option<Self> {
                let mut iter = values.iter();
                $(let $name = $name::from_data(iter.next()?)?;)*
                iter.next().is_none().then_some(($($name,)*))
            }
            #[allow(unused_variables, unused_mut, unused_assignments, non_snake_case)]
            fn read_slots(buffer: &[u8], endianness: Endianness) -> Option<Self> {
                let mut i = 0;
                $(let $name = $name::read_slot(&buffer[slot(i)..], endianness)?; i += 1;)*
                Some(($($name,)*))
            }
        }
    };
}

tuple!();
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);
tuple!(A, B, C, D, E, F);

/// A JIT function with a checked signature. Get one with [`JitModule::typed`].
pub struct TypedFunc<'m, P, R, M: ?Sized + Machine = dyn Machine> {
    module: &'m JitModule<M>,
    name: String,
    entry: RawEntry,
    endianness: Endianness,
    _types: PhantomData<fn(P) -> R>,
}

/// The largest call buffer a typed call needs: the header and six slots
/// (the longest tuple), in 16-byte words so that it is aligned as the
/// trampoline's loads and stores require.
const TYPED_BUFFER_WORDS: usize = (VALUES_OFFSET as usize + 6 * SLOT_SIZE as usize) / 16;

impl<P: Params, R: Results, M: ?Sized + Machine> TypedFunc<'_, P, R, M> {
    /// Call it: the arguments go into a buffer on this stack, the call goes
    /// straight to the entry trampoline resolved when the handle was made.
    #[inline]
    pub fn call(&self, params: P) -> Result<R, CallError> {
        let mut words = [BufferWord::ZERO; TYPED_BUFFER_WORDS];
        // SAFETY: plain bytes of `words`, which outlives the borrow.
        let buffer: &mut [u8] = unsafe {
            std::slice::from_raw_parts_mut(
                words.as_mut_ptr().cast::<u8>(),
                self.entry.buffer_size(),
            )
        };
        let endianness = self.endianness;
        params.write_slots(buffer, endianness);
        self.module.call_raw(&self.entry, buffer)?;
        R::read_slots(buffer, endianness).ok_or_else(|| {
            CallError::Failed(Error::Signature(format!(
                "{} returned values that are not {:?}",
                self.name,
                R::types()
            )))
        })
    }
}

impl<M: ?Sized + Machine> JitModule<M> {
    /// A typed handle to loaded function `id` (see [`JitModule::typed`]).
    pub fn typed_function<P: Params, R: Results>(
        &self,
        id: cranelift_module::FuncId,
    ) -> Result<TypedFunc<'_, P, R, M>, Error> {
        self.typed(&self.func_key(id))
    }

    /// A typed handle to the function called `name`, if its signature's
    /// parameter and result types are `P` and `R`'s.
    pub fn typed<P: Params, R: Results>(
        &self,
        name: &str,
    ) -> Result<TypedFunc<'_, P, R, M>, Error> {
        let symbol = symbol_name(name);
        let sig = self
            .signature(&symbol)
            .ok_or_else(|| Error::Signature(format!("no function {symbol} in this module")))?;
        let params: Vec<Type> = sig.params.iter().map(|p| p.value_type).collect();
        let returns: Vec<Type> = sig.returns.iter().map(|p| p.value_type).collect();
        if params != P::types() || returns != R::types() {
            return Err(Error::Signature(format!(
                "{symbol} is {sig}, not ({:?}) -> ({:?})",
                P::types(),
                R::types()
            )));
        }
        let entry = self.raw_entry(&symbol).map_err(|e| match e {
            CallError::Failed(e) => e,
            other => Error::Signature(other.to_string()),
        })?;
        if entry.buffer_size() > TYPED_BUFFER_WORDS * 16 {
            return Err(Error::Signature(format!(
                "{symbol} has more values than a typed handle carries"
            )));
        }
        Ok(TypedFunc {
            module: self,
            name: symbol,
            entry,
            endianness: self.machine().arch().endianness(),
            _types: PhantomData,
        })
    }
}

#[cfg(test)]
mod value_tests {
    use super::*;

    #[test]
    fn values_convert_to_their_data_values_and_back() {
        assert_eq!((-2i8).into_data(), DataValue::I8(-2));
        assert_eq!(0xfeu8.into_data(), DataValue::I8(-2));
        assert_eq!((-300i16).into_data(), DataValue::I16(-300));
        assert_eq!(u32::MAX.into_data(), DataValue::I32(-1));
        assert_eq!((-5i64).into_data(), DataValue::I64(-5));
        assert_eq!((-1i128).into_data(), DataValue::I128(-1));
        assert_eq!(1.5f32.into_data(), DataValue::F32(1.5f32.into()));
        assert_eq!((-0.25f64).into_data(), DataValue::F64((-0.25f64).into()));
        assert_eq!(i8::from_data(&DataValue::I8(-2)), Some(-2));
        assert_eq!(u8::from_data(&DataValue::I8(-2)), Some(0xfe));
        assert_eq!(u64::from_data(&DataValue::I64(-1)), Some(u64::MAX));
        assert_eq!(f64::from_data(&DataValue::F64(2.0f64.into())), Some(2.0));
        // Another type is not converted.
        assert_eq!(i32::from_data(&DataValue::I64(1)), None);
        assert_eq!(f32::from_data(&DataValue::I32(1)), None);
    }

    #[test]
    fn slots_hold_the_target_byte_order() {
        let mut slot = [0u8; 16];
        (-2i16).write_slot(&mut slot, Endianness::Big);
        assert_eq!(slot[..2], [0xff, 0xfe]);
        assert_eq!(i16::read_slot(&slot, Endianness::Big), Some(-2));
        1.0f64.write_slot(&mut slot, Endianness::Little);
        assert_eq!(slot[..8], 1.0f64.to_le_bytes());
        assert_eq!(f64::read_slot(&slot, Endianness::Little), Some(1.0));
    }
}
