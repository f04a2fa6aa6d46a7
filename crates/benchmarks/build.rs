//! Builds the C and C++ comparison points (always optimized, `-O2`, so that
//! they compare with the release-built Rust side whatever the profile).

fn main() {
    println!("cargo:rerun-if-changed=csrc/native.c");
    println!("cargo:rerun-if-changed=csrc/throw.cpp");
    cc::Build::new()
        .file("csrc/native.c")
        .opt_level(2)
        .flag("-fno-optimize-sibling-calls")
        .warnings(true)
        .compile("exn_bench_c");
    cc::Build::new()
        .cpp(true)
        .file("csrc/throw.cpp")
        .opt_level(2)
        .flag("-fno-optimize-sibling-calls")
        .warnings(true)
        .compile("exn_bench_cxx");
}
