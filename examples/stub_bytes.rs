//! Prints every ISA's stubs as the Rust tables hold them, one line per
//! stub: `<arch> <throw|resume|to_entry> <hex bytes>`.
//! `scripts/check-stubs` compares them with `src/isa/<arch>/stubs.s`
//! assembled by GNU as.

use cranelift_exn::isa::Arch;

fn main() {
    for arch in Arch::ALL {
        let spec = arch.spec();
        for (what, stub) in [
            ("throw", spec.throw_stub()),
            ("resume", spec.resume_stub()),
            ("to_entry", spec.to_entry_stub()),
        ] {
            let hex: String = stub.code.iter().map(|b| format!("{b:02x}")).collect();
            println!("{arch} {what} {hex}");
        }
    }
}
