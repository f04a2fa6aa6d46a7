//! The contract between generated code, the ISA stubs and the host: the
//! symbols JIT code calls but never defines, and the layout of the call
//! buffer every entry trampoline reads and writes.
//!
//! This is the bottom layer: every other module may use it, it uses none.

/// The symbol JIT code calls to throw, as upstream's run tests name it.
pub const THROW_SYMBOL: &str = "%__cranelift_throw";

/// The symbol JIT code calls to throw straight to the innermost entry, in
/// O(1): `fn(tag: i32, payload1: i64, payload2: i64)` with the target's C
/// convention (`system_v`); it does not return. The call's outcome is
/// [`crate::CallError::Exception`] with that tag and those payloads, whatever
/// handlers the frames in between have.
pub const THROW_TO_ENTRY_SYMBOL: &str = "%__cranelift_exn_throw_to_entry";

/// Symbols JIT code may call but never define (the throw stubs, the host
/// dispatcher, trampolines and glue): `%__cranelift_throw` and every name
/// starting with this prefix.
pub const RESERVED_PREFIX: &str = "%__cranelift_exn_";

/// Buffer header: status word (0 = returned, 1 = exception reached the
/// entry trampoline).
pub const STATUS_OFFSET: i32 = 0;
/// Buffer header: handler address recorded by the entry trampoline.
pub const HANDLER_PC_OFFSET: i32 = 8;
/// Buffer header: stack pointer recorded by the entry trampoline.
pub const HANDLER_SP_OFFSET: i32 = 16;
/// Buffer header: frame-pointer value recorded by the entry trampoline.
pub const HANDLER_FP_OFFSET: i32 = 24;
/// Offset of the first value slot.
pub const VALUES_OFFSET: i32 = 32;
/// Bytes per value slot (fits every scalar and 128-bit vector).
pub const SLOT_SIZE: i32 = 16;

/// Status word value: the callee returned normally.
pub const STATUS_RETURNED: u64 = 0;
/// Status word value: an exception (or an unwind error) reached the entry.
pub const STATUS_EXCEPTION: u64 = 1;
