//! The crate's error type.

use std::fmt;

/// Everything that can go wrong between CLIF text and a returned value.
///
/// Every variant carries a message that names what failed and where; none is
/// produced by a panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// CLIF text did not parse (`location` is `line N` or `file:line`).
    Parse {
        /// Where.
        location: String,
        /// What.
        message: String,
    },
    /// Cranelift rejected or failed to compile a function.
    Compile {
        /// The function's name.
        function: String,
        /// Cranelift's message (verifier errors included).
        message: String,
    },
    /// Cranelift panicked compiling a function (an assertion on input its
    /// verifier accepted); the panic was caught.
    CompilerPanic {
        /// The function's name.
        function: String,
        /// The panic's message.
        message: String,
    },
    /// A relocation could not be applied, or a symbol is undefined.
    Link {
        /// The function containing the relocation.
        function: String,
        /// Offset of the relocation inside that function.
        offset: u32,
        /// The relocation kind (`Debug` form) or `symbol`.
        kind: String,
        /// What went wrong.
        message: String,
    },
    /// Memory could not be mapped, read, written or protected.
    Memory {
        /// The address involved.
        address: u64,
        /// What went wrong.
        message: String,
    },
    /// The unwinder could not walk the stack or found malformed tables.
    Unwind(String),
    /// A call's arguments or results do not fit the signature.
    Signature(String),
    /// The machine (native or emulated) failed to run code.
    Machine(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Parse { location, message } => write!(f, "{location}: {message}"),
            Error::Compile { function, message } => {
                write!(f, "compiling {function}: {message}")
            }
            Error::CompilerPanic { function, message } => {
                write!(f, "compiling {function}: Cranelift panicked: {message}")
            }
            Error::Link {
                function,
                offset,
                kind,
                message,
            } => write!(f, "linking {function}+{offset:#x} ({kind}): {message}"),
            Error::Memory { address, message } => write!(f, "memory at {address:#x}: {message}"),
            Error::Unwind(message) => write!(f, "unwinding: {message}"),
            Error::Signature(message) => write!(f, "signature: {message}"),
            Error::Machine(message) => write!(f, "machine: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The text of a caught panic's payload (`panic!` with a literal or a
/// formatted message), or `"non-string panic payload"` for any other payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string())
}
