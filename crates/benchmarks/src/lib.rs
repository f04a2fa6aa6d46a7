//! The pieces the benchmarks time, each usable (and tested) on its own:
//!
//! * [`jit`]: one set of JIT functions — a catching frame, `d` recursive
//!   frames, and a call at the bottom to a *throw function* given as an
//!   argument — run with every throw mechanism of this crate, and with
//!   `wasmtime-internal-unwinder` ([`wasmtime`]);
//! * [`c`]: setjmp/longjmp, sigsetjmp/siglongjmp and C++ throw/catch chains
//!   (built by `build.rs` with the `cc` crate);
//! * [`rust_panic`]: a panic caught by `catch_unwind` through `d` frames;
//! * [`table_size`]: exception-table bytes per call site and handler, ours
//!   against wasmtime-internal-unwinder's serialized format;
//! * [`paired`]: measuring mechanisms in alternating batches.

pub mod c;
pub mod jit;
pub mod paired;
pub mod rust_panic;
pub mod table_size;
pub mod wasmtime;

/// The call depths the throw benchmarks use.
pub const DEPTHS: [u64; 4] = [1, 10, 100, 1000];

/// The payload every throw carries (checked on the catching side).
pub const PAYLOAD: i64 = 0x5eed;
