//! Typed handles to JIT functions: `module.typed::<(i64, i64), i64>("add")`
//! checks the signature once, then calls take and return Rust values.

use std::marker::PhantomData;

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir::{Type, types};

use crate::error::Error;
use crate::module::{CallError, Module, symbol_name};

/// A Rust type that crosses a JIT call as one CLIF value.
pub trait Value: Sized {
    /// Its CLIF type.
    const TYPE: Type;
    /// As a [`DataValue`].
    fn into_data(self) -> DataValue;
    /// From a [`DataValue`] of type [`Value::TYPE`].
    fn from_data(value: &DataValue) -> Option<Self>;
}

macro_rules! int_value {
    ($($rust:ty => $clif:ident, $variant:ident, $as:ty;)*) => {$(
        impl Value for $rust {
            const TYPE: Type = types::$clif;
            fn into_data(self) -> DataValue {
                DataValue::$variant(self as $as)
            }
            fn from_data(value: &DataValue) -> Option<Self> {
                match *value {
                    DataValue::$variant(v) => Some(v as $rust),
                    _ => None,
                }
            }
        }
    )*};
}

int_value! {
    i8 => I8, I8, i8;
    u8 => I8, I8, i8;
    i16 => I16, I16, i16;
    u16 => I16, I16, i16;
    i32 => I32, I32, i32;
    u32 => I32, I32, i32;
    i64 => I64, I64, i64;
    u64 => I64, I64, i64;
    i128 => I128, I128, i128;
    u128 => I128, I128, i128;
}

impl Value for f32 {
    const TYPE: Type = types::F32;
    fn into_data(self) -> DataValue {
        DataValue::F32(self.into())
    }
    fn from_data(value: &DataValue) -> Option<Self> {
        match value {
            DataValue::F32(v) => Some(v.as_f32()),
            _ => None,
        }
    }
}

impl Value for f64 {
    const TYPE: Type = types::F64;
    fn into_data(self) -> DataValue {
        DataValue::F64(self.into())
    }
    fn from_data(value: &DataValue) -> Option<Self> {
        match value {
            DataValue::F64(v) => Some(v.as_f64()),
            _ => None,
        }
    }
}

/// The parameters of a typed call: `()`, a [`Value`], or a tuple of them.
pub trait Params {
    /// The CLIF types, in order.
    fn types() -> Vec<Type>;
    /// The values, in order.
    fn into_values(self) -> Vec<DataValue>;
}

/// The results of a typed call: `()`, a [`Value`], or a tuple of them.
pub trait Results: Sized {
    /// The CLIF types, in order.
    fn types() -> Vec<Type>;
    /// From the values a call returned (checked against [`Results::types`]).
    fn from_values(values: &[DataValue]) -> Option<Self>;
}

impl<T: Value> Params for T {
    fn types() -> Vec<Type> {
        vec![T::TYPE]
    }
    fn into_values(self) -> Vec<DataValue> {
        vec![self.into_data()]
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
        }
    };
}

tuple!();
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);
tuple!(A, B, C, D, E, F);

/// A JIT function with a checked signature. Get one with [`Module::typed`].
pub struct TypedFunc<'m, P, R> {
    module: &'m Module,
    name: String,
    _types: PhantomData<fn(P) -> R>,
}

impl<P: Params, R: Results> TypedFunc<'_, P, R> {
    /// Call it.
    pub fn call(&self, params: P) -> Result<R, CallError> {
        let values = self.module.call(&self.name, &params.into_values())?;
        R::from_values(&values).ok_or_else(|| {
            CallError::Failed(Error::Signature(format!(
                "{} returned {values:?}, not {:?}",
                self.name,
                R::types()
            )))
        })
    }
}

impl Module {
    /// A typed handle to the function called `name`, if its signature's
    /// parameter and result types are `P` and `R`'s.
    pub fn typed<P: Params, R: Results>(&self, name: &str) -> Result<TypedFunc<'_, P, R>, Error> {
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
        Ok(TypedFunc {
            module: self,
            name: symbol,
            _types: PhantomData,
        })
    }
}
