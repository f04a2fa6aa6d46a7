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
    // Ours: 4 u32 columns for the one try_call site (the plain call is not
    // stored), 2 u32 per handler row, two u32 index slots per site.
    assert_eq!(
        (
            sizes.ours_site_bytes,
            sizes.ours_handler_bytes,
            sizes.ours_index_bytes
        ),
        (16, 3 * 8, 2 * 4)
    );
    assert_eq!(sizes.ours_bytes, 16 + 24 + 8);
    assert!(sizes.ratio() <= 1.5, "{}", sizes.ratio());
}

/// The target of issue 15 on the repository's own corpus: ours at most
/// 1.5× wasmtime's serialized table, index included.
#[test]
fn ours_is_within_one_and_a_half_times_wasmtime_on_filetests() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../filetests");
    let files = try_call_files(&dir).unwrap();
    assert!(!files.is_empty());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let sizes = measure(&files);
    std::panic::set_hook(hook);
    let sizes = sizes.unwrap();
    assert!(sizes.try_call_sites > 0 && sizes.handlers > 0, "{sizes:?}");
    assert!(sizes.ratio() <= 1.5, "{sizes:?}");
}
