//! The JIT side of the benchmarks: one module whose functions every throw
//! mechanism runs through.
//!
//! `%catch(throw_fn, d, payload)` `try_call`s `%rec`, which recurses until
//! `d` frames of it are on the stack; the innermost calls `throw_fn` with
//! upstream's `__cranelift_throw` arguments `(entry_fp, exit_fp, exit_pc,
//! tag, payload, 0)`. Only `throw_fn` changes between mechanisms, so they
//! all unwind exactly the same compiled frames.

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{AbiParam, Signature, types};
use cranelift_exn::codegen::isa::CallConv;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::module::RawEntry;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::trampoline::{SLOT_SIZE, VALUES_OFFSET};
use cranelift_exn::{CallError, HostThrow, Module, ModuleBuilder};

use crate::wasmtime::WasmtimeUnwinder;

/// The benchmark's CLIF. `%rec`'s recursive call is followed by an add, so
/// every level keeps its frame; `%catch` passes its caller's frame pointer
/// (the entry trampoline's) as `entry_fp`, so the search covers
/// `%catch` itself and stops above it.
pub const PROGRAM: &str = "
function %catch(i64, i64, i64) -> i64 tail {
    sig0 = (i64, i64, i64, i64) -> i64 tail
    fn0 = %rec(i64, i64, i64, i64) -> i64 tail
block0(v0: i64, v1: i64, v2: i64):
    v3 = get_frame_pointer.i64
    v4 = load.i64 notrap aligned v3
    try_call fn0(v4, v0, v1, v2), sig0, block1(ret0), [ tag1: block2(exn0, exn1) ]
block1(v5: i64):
    return v5
block2(v6: i64, v7: i64):
    return v6
}

function %rec(i64, i64, i64, i64) -> i64 tail {
    sig0 = (i64, i64, i64, i32, i64, i64) system_v
    fn0 = %rec(i64, i64, i64, i64) -> i64 tail
block0(v0: i64, v1: i64, v2: i64, v3: i64):
    v13 = iconst.i64 1
    v4 = icmp ugt v2, v13
    brif v4, block1, block2
block1:
    v5 = isub v2, v13
    v6 = call fn0(v0, v1, v5, v3)
    v7 = iadd v6, v13
    return v7
block2:
    v8 = get_frame_pointer.i64
    v9 = func_addr.i64 fn0       ; a pc in the exit frame's function
    v10 = iconst.i32 1
    v11 = iconst.i64 0
    call_indirect sig0, v1(v0, v8, v9, v10, v3, v11)
    v12 = iconst.i64 -1
    return v12
}

;; (b): the same arguments, thrown straight to the entry (tag, payload).
function %to_entry(i64, i64, i64, i32, i64, i64) system_v {
    fn0 = %__cranelift_exn_throw_to_entry(i32, i64, i64) system_v
block0(v0: i64, v1: i64, v2: i64, v3: i32, v4: i64, v5: i64):
    call fn0(v3, v4, v5)
    return
}

;; (f'): the same `%rec` frames under a plain call, for C's setjmp/longjmp.
function %lj_catch(i64, i64, i64) -> i64 system_v {
    sig0 = (i64, i64, i64, i64) -> i64 tail
    fn0 = %rec(i64, i64, i64, i64) -> i64 tail
block0(v0: i64, v1: i64, v2: i64):
    v3 = get_frame_pointer.i64
    v4 = call fn0(v3, v0, v1, v2)
    return v4
}

function %no_throw(i64, i64, i64, i32, i64, i64) system_v {
block0(v0: i64, v1: i64, v2: i64, v3: i32, v4: i64, v5: i64):
    return
}

function %trap_here(i64, i64, i64, i32, i64, i64) system_v {
block0(v0: i64, v1: i64, v2: i64, v3: i32, v4: i64, v5: i64):
    trap user1
}

function %ret(i64) -> i64 system_v {
block0(v0: i64):
    return v0
}

function %ret_tail(i64) -> i64 tail {
block0(v0: i64):
    return v0
}

;; The floor of any entry through a buffer: load the argument, call,
;; store the result; no handler, no callee-saved registers.
function %bare_wrapper(i64, i64) system_v {
    sig0 = (i64) -> i64 system_v
block0(v0: i64, v1: i64):
    v2 = load.i64 notrap aligned v1+32
    v3 = call_indirect sig0, v0(v2)
    store notrap aligned v3, v1+32
    return
}

function %trap_ud2(i64) -> i64 system_v {
block0(v0: i64):
    trap user2
}

function %trap_divz(i64, i64) -> i64 system_v {
block0(v0: i64, v1: i64):
    v2 = udiv v0, v1
    return v2
}
";

/// What the innermost `%rec` frame calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Thrower {
    /// Nothing thrown: a JIT function that returns (the cost of the calls).
    NoThrow,
    /// (a) `%__cranelift_throw`: our throw stub, then the stack walk to the
    /// nearest handler (`%catch`).
    StackWalk,
    /// (a') A host function returning `HostThrow::Exception`: host-function
    /// glue and dispatch, then the same stack walk.
    StackWalkFromHost,
    /// (b) `%__cranelift_exn_throw_to_entry` (through `%to_entry`, which
    /// takes the throw arguments): delivered to the entry trampoline in
    /// O(1), without a walk.
    ToEntry,
    /// (b') A host function returning `HostThrow::ToEntry`: host-function
    /// glue and dispatch, then the same O(1) delivery.
    ToEntryFromHost,
    /// (b'') A `trap` (ud2): delivered to the entry in O(1) by rewriting the
    /// signal context.
    Trap,
    /// (c) wasmtime-internal-unwinder: its frame walker and exception table
    /// find `%catch`'s handler, its `resume_tailcc` jumps there.
    Wasmtime,
}

impl Thrower {
    /// Every mechanism.
    pub const ALL: [Thrower; 7] = [
        Thrower::NoThrow,
        Thrower::StackWalk,
        Thrower::StackWalkFromHost,
        Thrower::ToEntry,
        Thrower::ToEntryFromHost,
        Thrower::Trap,
        Thrower::Wasmtime,
    ];
}

/// The module, its resolved entries and a reusable argument buffer.
pub struct JitBench {
    module: Module,
    catch: RawEntry,
    ret: RawEntry,
    ret_tail: RawEntry,
    trap_ud2: RawEntry,
    trap_divz: RawEntry,
    buffer: Vec<u8>,
    /// A 16-byte aligned buffer for calling the entry trampoline directly.
    aligned: Vec<u128>,
    no_throw: u64,
    to_entry: u64,
    lj_catch: u64,
    bare_wrapper: u64,
    trap_here: u64,
    host_throw: u64,
    host_to_entry: u64,
    wasmtime: WasmtimeUnwinder,
}

fn throw_signature() -> Signature {
    let mut sig = Signature::new(CallConv::SystemV);
    sig.params = [
        types::I64,
        types::I64,
        types::I64,
        types::I32,
        types::I64,
        types::I64,
    ]
    .into_iter()
    .map(AbiParam::new)
    .collect();
    sig
}

/// The payload argument of a throw function's arguments.
fn payload_of(args: &[DataValue]) -> u64 {
    match args.get(4) {
        Some(DataValue::I64(p)) => *p as u64,
        _ => 0,
    }
}

impl JitBench {
    /// Compile and load [`PROGRAM`] natively, with the two host functions
    /// and the wasmtime-internal-unwinder table over the image.
    pub fn new() -> Result<JitBench, String> {
        let arch = Arch::host().ok_or("unsupported host")?;
        let isa = default_isa(arch).map_err(|e| e.to_string())?;
        let mut builder = ModuleBuilder::new(isa);
        builder.define_clif(PROGRAM).map_err(|e| e.to_string())?;
        builder
            .define_host_function("host_throw", throw_signature(), |_, args| {
                Err(HostThrow::Exception {
                    tag: 1,
                    payloads: [payload_of(args), 0],
                })
            })
            .map_err(|e| e.to_string())?;
        builder
            .define_host_function("host_to_entry", throw_signature(), |_, args| {
                Err(HostThrow::ToEntry {
                    tag: 1,
                    payloads: [payload_of(args), 0],
                })
            })
            .map_err(|e| e.to_string())?;
        let machine = NativeMachine::new().map_err(|e| e.to_string())?;
        let module = builder
            .finalize(Box::new(machine))
            .map_err(|e| e.to_string())?;
        let entry = |name: &str| module.raw_entry(name).map_err(|e| e.to_string());
        let symbol = |name: &str| {
            module
                .image()
                .symbol(name)
                .ok_or_else(|| format!("no symbol {name}"))
        };
        let catch = entry("catch")?;
        let ret = entry("ret")?;
        let ret_tail = entry("ret_tail")?;
        let trap_ud2 = entry("trap_ud2")?;
        let trap_divz = entry("trap_divz")?;
        let no_throw = symbol("%no_throw")?;
        let to_entry = symbol("%to_entry")?;
        let lj_catch = symbol("%lj_catch")?;
        let bare_wrapper = symbol("%bare_wrapper")?;
        let trap_here = symbol("%trap_here")?;
        let host_throw = symbol("%host_throw")?;
        let host_to_entry = symbol("%host_to_entry")?;
        let wasmtime = WasmtimeUnwinder::new(module.image())?;
        let size = catch
            .buffer_size()
            .max(ret.buffer_size())
            .max(trap_divz.buffer_size());
        Ok(JitBench {
            catch,
            ret,
            ret_tail,
            trap_ud2,
            trap_divz,
            buffer: vec![0; size],
            aligned: vec![0; ret.buffer_size().div_ceil(16)],
            no_throw,
            to_entry,
            lj_catch,
            bare_wrapper,
            trap_here,
            host_throw,
            host_to_entry,
            wasmtime,
            module,
        })
    }

    /// The module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The wasmtime-internal-unwinder view of the module.
    pub fn wasmtime(&self) -> &WasmtimeUnwinder {
        &self.wasmtime
    }

    fn throw_fn(&self, thrower: Thrower) -> u64 {
        match thrower {
            Thrower::NoThrow => self.no_throw,
            Thrower::StackWalk => self.module.throw_stub(),
            Thrower::StackWalkFromHost => self.host_throw,
            Thrower::ToEntry => self.to_entry,
            Thrower::ToEntryFromHost => self.host_to_entry,
            Thrower::Trap => self.trap_here,
            Thrower::Wasmtime => crate::wasmtime::throw_function(),
        }
    }

    fn set_args(&mut self, args: &[i64]) {
        for (i, a) in args.iter().enumerate() {
            let at = VALUES_OFFSET as usize + SLOT_SIZE as usize * i;
            self.buffer[at..at + 8].copy_from_slice(&a.to_ne_bytes());
        }
    }

    fn result(&self) -> i64 {
        let at = VALUES_OFFSET as usize;
        i64::from_ne_bytes(self.buffer[at..at + 8].try_into().expect("8 bytes"))
    }

    /// `%catch` over `depth` frames with `thrower` at the bottom. Caught
    /// throws return the payload ([`crate::PAYLOAD`]); `NoThrow` returns
    /// `depth - 2`; the O(1) paths return their [`CallError`].
    pub fn run(&mut self, thrower: Thrower, depth: u64) -> Result<i64, CallError> {
        if thrower == Thrower::Wasmtime {
            self.wasmtime.activate();
        }
        let throw_fn = self.throw_fn(thrower) as i64;
        self.set_args(&[throw_fn, depth.max(1) as i64, crate::PAYLOAD]);
        self.module.call_raw(&self.catch, &mut self.buffer)?;
        Ok(self.result())
    }

    /// `%ret` as a plain C function pointer (it returns its argument).
    pub fn ret_fn(&self) -> extern "C" fn(i64) -> i64 {
        // SAFETY: `%ret` is `system_v` `(i64) -> i64`, loaded and executable
        // for as long as the module lives (the caller keeps `self`).
        unsafe {
            std::mem::transmute::<usize, extern "C" fn(i64) -> i64>(self.ret.callee() as usize)
        }
    }

    /// (f') C's `setjmp`, then `%lj_catch` → `depth` frames of `%rec` (the
    /// frames every JIT row unwinds), then a C function that `longjmp`s
    /// back; returns `payload`. No entry trampoline: JIT code is called as
    /// a plain C function.
    pub fn longjmp_over_jit(&self, depth: u64, payload: i64) -> i64 {
        // SAFETY: `%lj_catch` is `system_v` `(i64, i64, i64) -> i64`, loaded
        // for as long as `self` lives; the JIT frames the `longjmp` abandons
        // hold nothing that needs cleaning up.
        unsafe {
            let f = std::mem::transmute::<usize, extern "C" fn(i64, i64, i64) -> i64>(
                self.lj_catch as usize,
            );
            crate::c::longjmp_over(f, depth.max(1), payload)
        }
    }

    /// `%ret(x)` through its entry trampoline called directly: the
    /// trampoline's own cost, without host services.
    pub fn ret_via_trampoline(&mut self, x: i64) -> i64 {
        let ret = self.ret;
        self.via_trampoline(&ret, x)
    }

    /// [`JitBench::ret_via_trampoline`] of `%ret_tail`, the same function
    /// with the `tail` convention, whose trampoline saves every callee-saved
    /// register.
    pub fn ret_tail_via_trampoline(&mut self, x: i64) -> i64 {
        let ret = self.ret_tail;
        self.via_trampoline(&ret, x)
    }

    /// `%ret(x)` through `%bare_wrapper`, called directly: a frame that
    /// moves the value through the buffer and registers nothing — what any
    /// buffer-based entry costs at least.
    pub fn ret_via_bare_wrapper(&mut self, x: i64) -> i64 {
        let bytes = self.aligned.as_mut_ptr().cast::<u8>();
        let at = VALUES_OFFSET as usize;
        // SAFETY: as in `via_trampoline`; `%bare_wrapper` is `system_v`
        // `(callee, buffer)` and `%ret` returns.
        unsafe {
            bytes.add(at).cast::<i64>().write(x);
            let f: extern "C" fn(u64, u64) = std::mem::transmute(self.bare_wrapper as usize);
            f(self.ret.callee(), bytes as u64);
            bytes.add(at).cast::<i64>().read()
        }
    }

    fn via_trampoline(&mut self, entry: &RawEntry, x: i64) -> i64 {
        let bytes = self.aligned.as_mut_ptr().cast::<u8>();
        let at = VALUES_OFFSET as usize;
        // SAFETY: `aligned` holds at least `ret.buffer_size()` bytes, 16-byte
        // aligned; the trampoline is `%ret`'s signature's, and `%ret`
        // neither throws nor traps.
        unsafe {
            bytes.add(at).cast::<i64>().write(x);
            let f: extern "C" fn(u64, u64) = std::mem::transmute(entry.trampoline() as usize);
            f(entry.callee(), bytes as u64);
            bytes.add(at).cast::<i64>().read()
        }
    }

    /// [`JitBench::run`] as one number, what the timed loops keep (so that
    /// they time the call, not copies of a `CallError`): the value, an
    /// uncaught exception's first payload, -2 for a trap, -3 for a failure
    /// or an interrupt.
    pub fn run_value(&mut self, thrower: Thrower, depth: u64) -> i64 {
        match self.run(thrower, depth) {
            Ok(value) => value,
            Err(CallError::Exception { payloads, .. }) => payloads[0] as i64,
            Err(CallError::Trap { .. }) => -2,
            Err(CallError::Failed(_) | CallError::Interrupted) => -3,
        }
    }

    /// `%ret(x)` through [`Module::call_raw`]: trampoline plus the native
    /// machine's call (thread state for traps and throws).
    pub fn ret_via_call_raw(&mut self, x: i64) -> Result<i64, CallError> {
        self.set_args(&[x]);
        self.module.call_raw(&self.ret, &mut self.buffer)?;
        Ok(self.result())
    }

    /// [`JitBench::ret_via_call_raw`] for the timed loop: the result, or -1
    /// if the call failed.
    pub fn ret_value_via_call_raw(&mut self, x: i64) -> i64 {
        self.set_args(&[x]);
        match self.module.call_raw(&self.ret, &mut self.buffer) {
            Ok(()) => self.result(),
            Err(_) => -1,
        }
    }

    /// Run `%trap_ud2` (`divide` false) or `%trap_divz(1, 0)` (`divide`
    /// true) through [`Module::call_raw`]; both end in a [`CallError::Trap`].
    pub fn trap(&mut self, divide: bool) -> Result<i64, CallError> {
        let entry = if divide {
            self.set_args(&[1, 0]);
            self.trap_divz
        } else {
            self.set_args(&[1]);
            self.trap_ud2
        };
        self.module.call_raw(&entry, &mut self.buffer)?;
        Ok(self.result())
    }
}
