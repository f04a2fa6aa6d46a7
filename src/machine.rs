//! Where linked code runs: the host CPU or an emulator.

use crate::error::Error;
use crate::isa::Arch;
use crate::memory::Memory;

/// Host functions that JIT code can call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostFunction {
    /// The Rust side of the throw stub: `fn(context: *mut u64)` with the C
    /// calling convention. See [`crate::isa::IsaSpec`] for the contract.
    Throw,
}

/// What the host does when JIT code calls a [`HostFunction`].
pub trait HostServices {
    /// Handle [`HostFunction::Throw`]: `context` is the address of the
    /// register context the throw stub filled; on `Ok` it holds the resume
    /// state the stub will install. `buffer` is the target address of the
    /// innermost [`Machine::call_entry`] buffer (its header holds the entry
    /// trampoline's handler record).
    fn throw(&mut self, memory: &mut dyn Memory, context: u64, buffer: u64) -> Result<(), Error>;
}

/// A target that can hold code and run it: the host CPU or an emulated one.
///
/// A call always enters through an *entry trampoline* with the C calling
/// convention `fn(callee: u64, buffer: u64)`, so no implementation needs to
/// know how Cranelift passes arguments.
pub trait Machine {
    /// The architecture this machine executes.
    fn arch(&self) -> Arch;
    /// Reserve `size` bytes of code memory, 16-byte aligned; returns its
    /// address.
    fn allocate_code(&mut self, size: usize) -> Result<u64, Error>;
    /// Copy `bytes` to `base` (from [`Machine::allocate_code`]) and make them
    /// executable, with instruction-cache coherence.
    fn install_code(&mut self, base: u64, bytes: &[u8]) -> Result<(), Error>;
    /// The address JIT code calls to reach `function` on the host.
    fn host_function_address(&mut self, function: HostFunction) -> Result<u64, Error>;
    /// Run `entry(callee, buffer)`: `buffer` is copied into target memory
    /// (8-byte aligned), the call runs, and the buffer is copied back. Calls to
    /// host functions are dispatched to `host`.
    fn call_entry(
        &mut self,
        entry: u64,
        callee: u64,
        buffer: &mut [u8],
        host: &mut dyn HostServices,
    ) -> Result<(), Error>;
}
