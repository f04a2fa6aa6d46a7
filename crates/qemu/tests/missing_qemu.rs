//! Without `qemu-<arch>` on `PATH`, creating a machine fails with a message
//! that names the program and how to install it. (A test binary of its
//! own: it empties `PATH` for the whole process.)

use cranelift_exn::isa::Arch;
use cranelift_exn_qemu::QemuMachine;

#[test]
fn missing_qemu_is_a_clear_error() {
    // SAFETY: this test binary runs no other thread that reads the
    // environment.
    unsafe { std::env::set_var("PATH", "/nonexistent") };
    for arch in Arch::ALL {
        assert!(!QemuMachine::is_installed(arch));
        let message = QemuMachine::new(arch).unwrap_err().to_string();
        assert!(
            message.contains(&format!("qemu-{arch}")) && message.contains("qemu-user"),
            "{message}"
        );
    }
}
