//! Table sizes over a small corpus written here, with known counts.

use cranelift_exn_benchmarks::table_size::{measure, try_call_files};

const FILE: &str = "
test run
target x86_64

function %a(i64) -> i64 {
    sig0 = (i64) -> i64 tail
    fn0 = %g(i64) -> i64 tail
block0(v0: i64):
    try_call fn0(v0), sig0, block1(ret0), [ tag1: block2(exn0), tag2: block2(exn0), default: block2(exn0) ]
block1(v1: i64):
    v2 = call fn0(v1)
    return v2
block2(v3: i64):
    return v3
}

function %reg(i64, i64) -> i64 {
    sig0 = (i64) -> i64 system_v
    fn0 = %h(i64) -> i64 system_v
block0(v0: i64, v1: i64):
    try_call fn0(v0), sig0, block1(ret0), [ context v1, tag1: block2(exn0) ]
block1(v2: i64):
    return v2
block2(v3: i64):
    return v3
}
";

#[test]
fn counts_and_sizes_of_a_known_corpus() {
    let dir = std::env::temp_dir().join(format!("exn-table-size-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/a.clif"), FILE).unwrap();
    std::fs::write(
        dir.join("no.clif"),
        "test run\nfunction %x() {\nblock0:\n return\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("bad.clif"), "try_call ???").unwrap();
    let files = try_call_files(&dir).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let sizes = measure(&files).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(sizes.unparsed_files, 1);
    // %reg keeps its context in a callee-saved register: left out.
    assert_eq!(sizes.register_context_functions, 1);
    assert_eq!(sizes.functions, 1);
    assert_eq!((sizes.call_sites, sizes.try_call_sites), (2, 1));
    assert_eq!((sizes.handlers, sizes.contexts), (3, 0));
    // Wasmtime: two counts, then 3 words for the one try_call site and 3
    // per handler.
    assert_eq!(sizes.wasmtime_bytes, 8 + 12 + 3 * 12);
    assert!(sizes.ours_bytes > sizes.ours_try_only_bytes);
}
