//! Writes `docs/benchmarks.md` and `docs/benchmarks.svg` from criterion's
//! results (`target/criterion/**/new/{benchmark,estimates}.json`) and the
//! exception-table sizes measured over the filetests corpora.
//!
//! ```text
//! report [--criterion DIR] [--out DIR] [--corpus DIR]...
//! ```
//! Defaults: the workspace's `target/criterion`, `docs/`, and the corpus
//! `filetests/`; `scripts/bench` adds upstream's corpus with `--corpus`
//! where one lies beside the clone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cranelift_exn_benchmarks::DEPTHS;
use cranelift_exn_benchmarks::table_size::{TableSizes, measure, try_call_files};
use plotters::prelude::*;

/// The report's prose: sections, each after a line `@@ name`, with
/// `{placeholders}` that [`text`] fills with numbers.
const TEMPLATE: &str = include_str!("../../templates/report.md");

/// Section `name` of [`TEMPLATE`] (without its trailing new lines), each
/// `{key}` replaced by its value.
fn text(name: &str, values: &[(&str, String)]) -> String {
    let start = TEMPLATE
        .match_indices("@@ ")
        .find(|&(i, _)| {
            (i == 0 || TEMPLATE.as_bytes()[i - 1] == b'\n')
                && TEMPLATE[i + 3..].split('\n').next() == Some(name)
        })
        .map(|(i, _)| i + 3 + name.len() + 1)
        .unwrap_or_else(|| panic!("templates/report.md has no section {name}"));
    let end = TEMPLATE[start..]
        .find("\n@@ ")
        .map_or(TEMPLATE.len(), |i| start + i);
    let mut out = TEMPLATE[start..end].trim_end_matches('\n').to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{key}}}"), value);
    }
    out
}

/// Medians in nanoseconds by (group, function, parameter).
type Medians = BTreeMap<(String, String, String), f64>;

struct Args {
    criterion: PathBuf,
    out: PathBuf,
    corpora: Vec<PathBuf>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse_args() -> Result<Args, String> {
    let root = workspace_root();
    let mut args = Args {
        criterion: std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("criterion"),
        out: root.join("docs"),
        corpora: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--criterion" => args.criterion = PathBuf::from(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            "--corpus" => args.corpora.push(PathBuf::from(value()?)),
            "-h" | "--help" => {
                return Err("usage: report [--criterion DIR] [--out DIR] [--corpus DIR]...".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.corpora.is_empty() {
        args.corpora = vec![root.join("filetests")];
    }
    Ok(args)
}

/// Every `new/` result under `dir`.
fn read_medians(dir: &Path) -> Result<Medians, String> {
    let mut medians = Medians::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", d.display()))?.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let bench = path.join("benchmark.json");
                let estimates = path.join("estimates.json");
                if !bench.is_file() || !estimates.is_file() {
                    continue;
                }
                let read = |p: &Path| -> Result<serde_json::Value, String> {
                    let text =
                        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
                };
                let b = read(&bench)?;
                let e = read(&estimates)?;
                let field = |key: &str| b[key].as_str().unwrap_or("").to_string();
                let median = e["median"]["point_estimate"]
                    .as_f64()
                    .ok_or_else(|| format!("{}: no median.point_estimate", estimates.display()))?;
                medians.insert(
                    (field("group_id"), field("function_id"), field("value_str")),
                    median,
                );
            } else {
                stack.push(path);
            }
        }
    }
    Ok(medians)
}

fn get(m: &Medians, group: &str, function: &str, value: &str) -> Option<f64> {
    m.get(&(group.into(), function.into(), value.into()))
        .copied()
}

/// Nanoseconds, readably.
fn ns(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v < 0.0 => format!("−{}", ns(Some(-v))),
        Some(v) if v >= 100_000.0 => format!("{:.0} µs", v / 1000.0),
        Some(v) if v >= 10_000.0 => format!("{:.1} µs", v / 1000.0),
        Some(v) if v >= 1000.0 => format!("{:.2} µs", v / 1000.0),
        Some(v) if v >= 100.0 => format!("{v:.0} ns"),
        Some(v) => format!("{v:.1} ns"),
    }
}

/// `a − b`, a time one row adds to another, for the prose: a negative
/// difference (noise larger than what is measured) says so.
fn added(a: Option<f64>, b: Option<f64>) -> String {
    match a.zip(b).map(|(a, b)| a - b) {
        Some(d) if d < 0.0 => format!(
            "nothing measurable ({}: the noise between the two rows exceeds it)",
            ns(Some(d))
        ),
        d => ns(d),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn x(r: Option<f64>) -> String {
    match r {
        None => "—".into(),
        Some(r) if r >= 100.0 => format!("{r:.0}×"),
        Some(r) if r >= 10.0 => format!("{r:.1}×"),
        Some(r) => format!("{r:.2}×"),
    }
}

/// One row of the throw table: (id, label).
const THROW_ROWS: [(&str, &str); 13] = [
    (
        "a_stack_walk",
        "(a) ours: stack-walk throw (`%__cranelift_throw`)",
    ),
    (
        "a_stack_walk_from_host",
        "(a′) ours: stack walk, thrown by a host function",
    ),
    (
        "b_to_entry",
        "(b) ours: O(1) to the entry (`%__cranelift_exn_throw_to_entry`)",
    ),
    (
        "b_to_entry_from_host",
        "(b′) ours: O(1) to the entry, thrown by a host function (`HostThrow::ToEntry`)",
    ),
    (
        "b_trap_to_entry",
        "(b″) ours: O(1) to the entry, a trap (ud2)",
    ),
    ("c_wasmtime_unwinder", "(c) wasmtime-internal-unwinder 48"),
    ("d_rust_panic", "(d) Rust panic + `catch_unwind`"),
    ("e_cxx_throw", "(e) C++ throw/catch"),
    ("f_longjmp", "(f) C setjmp/longjmp through C frames"),
    (
        "f_longjmp_over_jit",
        "(f′) C setjmp/longjmp through the same JIT frames",
    ),
    ("jit_calls_no_throw", "baseline: the JIT calls, no throw"),
    ("c_calls_no_throw", "baseline: the C calls, no throw"),
    (
        "rust_calls_no_panic",
        "baseline: the Rust calls under `catch_unwind`, no panic",
    ),
];

fn depth_str(d: u64) -> String {
    d.to_string()
}

struct Verdict {
    target: String,
    measured: String,
    met: bool,
    note: String,
}

/// `id / baseline` at every depth, as text, and the worst ratio.
fn per_depth(m: &Medians, id: &str, baseline: &str) -> (String, f64) {
    let t = |f: &str, d: u64| get(m, "throw", f, &depth_str(d));
    let ratios: Vec<Option<f64>> = DEPTHS
        .iter()
        .map(|&d| ratio(t(id, d), t(baseline, d)))
        .collect();
    let worst = ratios.iter().flatten().copied().fold(f64::NAN, f64::max);
    let text = DEPTHS
        .iter()
        .zip(&ratios)
        .map(|(d, r)| format!("d={d}: {}", x(*r)))
        .collect::<Vec<_>>()
        .join(", ");
    (text, worst)
}

fn verdicts(m: &Medians) -> Vec<Verdict> {
    let t = |f: &str, d: u64| get(m, "throw", f, &depth_str(d));
    let e = |f: &str| get(m, "entry", f, "");
    let slope = |id: &str| t(id, 1000).zip(t(id, 100)).map(|(a, b)| (a - b) / 900.0);
    let mut out = Vec::new();

    // O(1) delivery against longjmp over the same frames.
    let (measured, worst) = per_depth(m, "b_to_entry", "f_longjmp_over_jit");
    let (c_frames, _) = per_depth(m, "b_to_entry", "f_longjmp");
    let met = worst <= 1.0;
    out.push(Verdict {
        target: "O(1) delivery (`%__cranelift_exn_throw_to_entry`) ≤ 1.0× `longjmp` over the \
                 same JIT frames (f′), every depth"
            .into(),
        measured: format!("{measured}; against (f), C frames: {c_frames}"),
        met,
        note: if met {
            String::new()
        } else {
            text(
                "o1_missed",
                &[
                    ("worst", format!("{worst:.2}")),
                    ("call_raw", ns(e("our_call_raw"))),
                    ("setjmp", ns(e("c_setjmp_entry"))),
                    (
                        "call_raw_extra",
                        added(e("our_call_raw"), e("our_trampoline")),
                    ),
                    (
                        "throw_cost",
                        added(t("b_to_entry", 1), t("jit_calls_no_throw", 1)),
                    ),
                    (
                        "longjmp_cost",
                        added(t("f_longjmp_over_jit", 1), e("c_setjmp_entry")),
                    ),
                ],
            )
        },
    });

    out.push(trap_verdict(m));

    // Host -> JIT entry.
    let typed = ratio(e("our_typed_call"), e("c_setjmp_entry"));
    let trampoline = ratio(e("our_trampoline"), e("c_setjmp_entry"));
    let tail = ratio(e("our_trampoline_tail_callee"), e("c_setjmp_entry"));
    let typed_met = typed.is_some_and(|r| r <= 1.0);
    let trampoline_met = trampoline.is_some_and(|r| r <= 0.7);
    out.push(Verdict {
        target: "Host→JIT entry: `TypedFunc::call` ≤ 1.0× a setjmp-based entry, the raw entry \
                 trampoline ≤ 0.7×"
            .into(),
        measured: format!(
            "`TypedFunc::call` {}; trampoline {} (`tail` callee: {}); `Module::call_raw` {}",
            x(typed),
            x(trampoline),
            x(tail),
            x(ratio(e("our_call_raw"), e("c_setjmp_entry"))),
        ),
        met: typed_met && trampoline_met,
        note: if typed_met && trampoline_met {
            String::new()
        } else {
            text(
                "entry_missed",
                &[
                    ("typed_by", x(typed.map(|r| r / 1.0))),
                    ("trampoline_by", x(trampoline.map(|r| r / 0.7))),
                    ("tail_by", x(tail.map(|r| r / 0.7))),
                    ("bare", x(ratio(e("bare_wrapper"), e("c_setjmp_entry")))),
                    ("rust_extra", added(e("our_call_raw"), e("our_trampoline"))),
                    ("typed_extra", added(e("our_typed_call"), e("our_call_raw"))),
                    (
                        "sigsetjmp",
                        x(ratio(e("our_trampoline"), e("c_sigsetjmp_entry"))),
                    ),
                ],
            )
        },
    });

    // Stack walk: against longjmp at d = 10, against wasmtime everywhere.
    let walk_lj = ratio(t("a_stack_walk", 10), t("f_longjmp_over_jit", 10));
    let (vs_wasmtime, worst_wasmtime) = per_depth(m, "a_stack_walk", "c_wasmtime_unwinder");
    let lj_met = walk_lj.is_some_and(|r| r <= 2.0);
    let wasmtime_met = worst_wasmtime <= 0.5;
    out.push(Verdict {
        target: "Stack-walk throw (`%__cranelift_throw`) at d=10 ≤ 2.0× `longjmp` over the same \
                 frames (f′), and ≤ 0.5× wasmtime-internal-unwinder at every depth"
            .into(),
        measured: format!("d=10: {} (f′); / wasmtime: {vs_wasmtime}", x(walk_lj)),
        met: lj_met && wasmtime_met,
        note: if lj_met && wasmtime_met {
            String::new()
        } else {
            text(
                "walk_missed",
                &[
                    ("lj_by", x(walk_lj.map(|r| r / 2.0))),
                    ("wasmtime_worst", format!("{worst_wasmtime:.2}")),
                    ("ours", ns(slope("a_stack_walk"))),
                    ("wasmtime", ns(slope("c_wasmtime_unwinder"))),
                    ("walk10", ns(t("a_stack_walk", 10))),
                    ("to_entry10", ns(t("b_to_entry", 10))),
                    ("lj10", ns(t("f_longjmp_over_jit", 10))),
                ],
            )
        },
    });

    // Panic against our throw at depth 10, each less its own baseline.
    let ours = t("a_stack_walk", 10)
        .zip(t("jit_calls_no_throw", 10))
        .map(|(a, b)| a - b);
    let panic = t("d_rust_panic", 10)
        .zip(t("rust_calls_no_panic", 10))
        .map(|(a, b)| a - b);
    let speedup = ratio(panic, ours);
    let met = speedup.is_some_and(|r| r >= 100.0);
    out.push(Verdict {
        target: "At d=10, (throw − no-throw baseline) ≥ 100× smaller than (panic + \
                 `catch_unwind` − its baseline)"
            .into(),
        measured: format!(
            "{} smaller: {} against {}; without subtracting the baselines {}",
            x(speedup),
            ns(ours),
            ns(panic),
            x(ratio(t("d_rust_panic", 10), t("a_stack_walk", 10))),
        ),
        met,
        note: text(
            if met { "panic_met" } else { "panic_missed" },
            &[
                ("missed_by", x(speedup.map(|r| 100.0 / r))),
                ("ours", ns(ours)),
                ("panic", ns(panic)),
                ("per_frame", ns(slope("a_stack_walk"))),
                ("panic_per_frame", ns(slope("d_rust_panic"))),
            ],
        ),
    });
    out
}

/// A trap row's median (group `trap`).
fn tr(m: &Medians, function: &str) -> Option<f64> {
    get(m, "trap", function, "")
}

/// Trap delivery against `sigsetjmp(env, 1)` + `siglongjmp`, both faults.
fn trap_verdict(m: &Medians) -> Verdict {
    let target =
        "Trap delivery ≤ 1.0× sigsetjmp/siglongjmp (`sigsetjmp(env, 1)`), ud2 and division by zero"
            .to_string();
    let ud2 = ratio(tr(m, "jit_ud2"), tr(m, "c_sigsetjmp_ud2"));
    let divz = ratio(tr(m, "jit_divz"), tr(m, "c_sigsetjmp_divz"));
    let (Some(ud2), Some(divz)) = (ud2, divz) else {
        return Verdict {
            target,
            measured: "not measured".into(),
            met: false,
            note: "No results: run `cargo bench -p cranelift-exn-benchmarks --bench trap`.".into(),
        };
    };
    let met = ud2 <= 1.0 && divz <= 1.0;
    let (worst_fault, worst) = if ud2 >= divz {
        ("ud2", ud2)
    } else {
        ("division by zero", divz)
    };
    // What each side adds to the bare fault and delivery (the SA_NODEFER
    // round trip): ours user-space work, C its two sigprocmask calls.
    let over_nodefer = |a: &str, b: &str| added(tr(m, a), tr(m, b));
    Verdict {
        target,
        measured: format!("ud2: {}, division by zero: {}", x(Some(ud2)), x(Some(divz))),
        met,
        note: text(
            if met { "trap_met" } else { "trap_missed" },
            &[
                ("worst_fault", worst_fault.to_string()),
                ("worst", x(Some(worst))),
                ("missed_by", format!("{:.0} %", (worst - 1.0) * 100.0)),
                (
                    "ours_divz",
                    over_nodefer("jit_divz", "c_nodefer_setjmp_divz"),
                ),
                ("ours_ud2", over_nodefer("jit_ud2", "c_nodefer_setjmp_ud2")),
                (
                    "c_divz",
                    over_nodefer("c_sigsetjmp_divz", "c_nodefer_setjmp_divz"),
                ),
                (
                    "c_ud2",
                    over_nodefer("c_sigsetjmp_ud2", "c_nodefer_setjmp_ud2"),
                ),
                ("sort_after_ud2", ns(sort_after(m, "ud2"))),
                ("sort_after_divz", ns(sort_after(m, "divz"))),
                ("sort_alone", ns(tr(m, "sort_alone"))),
            ],
        ),
    }
}

/// How long the sort takes right after a trap of `kind`.
fn sort_after(m: &Medians, kind: &str) -> Option<f64> {
    tr(m, &format!("sort_after_{kind}"))
}

/// Whether /proc/cpuinfo says the kernel runs under a hypervisor.
fn under_hypervisor() -> Option<bool> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = info.lines().find(|l| l.starts_with("flags"))?;
    Some(flags.split_whitespace().any(|f| f == "hypervisor"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Issue 15's table target: ours ≤ 1.5× wasmtime's serialized table on
/// every corpus measured (a corpus that could not be measured misses it).
fn table_verdict(tables: &[(PathBuf, Result<TableSizes, String>)]) -> Verdict {
    const TARGET: f64 = 1.5;
    let measured = tables
        .iter()
        .map(|(path, sizes)| match sizes {
            Ok(t) => format!(
                "`{}`: {} ({} B against {} B)",
                display_corpus(path),
                x(Some(t.ratio())),
                t.ours_bytes,
                t.wasmtime_bytes
            ),
            Err(e) => format!("`{}`: not measured ({e})", display_corpus(path)),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let ratios: Vec<f64> = tables
        .iter()
        .filter_map(|(_, t)| t.as_ref().ok().map(TableSizes::ratio))
        .collect();
    let worst = ratios.iter().copied().fold(f64::NAN, f64::max);
    let met = !tables.is_empty() && ratios.len() == tables.len() && worst <= TARGET;
    let note = if met {
        text(
            "table_met",
            &[
                ("worst", x(Some(worst))),
                ("margin", x(Some(TARGET / worst))),
            ],
        )
    } else {
        text(
            "table_missed",
            &[("worst", x(Some(worst).filter(|w| !w.is_nan())))],
        )
    };
    Verdict {
        target: "Exception-table memory ≤ 1.5× wasmtime's serialized format, index included".into(),
        measured: if measured.is_empty() {
            "no corpus measured".into()
        } else {
            measured
        },
        met,
        note,
    }
}

fn markdown(m: &Medians, tables: &[(PathBuf, Result<TableSizes, String>)]) -> String {
    let mut s = String::new();
    let t = |f: &str, d: u64| get(m, "throw", f, &depth_str(d));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let _ = writeln!(
        s,
        "{}\n",
        text(
            "intro",
            &[("cpu", cpu_model()), ("cores", cores.to_string())]
        )
    );

    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(s, "| target | measured | met? |\n|---|---|---|");
    let mut vs = verdicts(m);
    vs.push(table_verdict(tables));
    for v in &vs {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            v.target,
            v.measured,
            if v.met { "yes" } else { "**no**" }
        );
    }
    let _ = writeln!(s);
    for v in vs.iter().filter(|v| !v.met || !v.note.is_empty()) {
        let _ = writeln!(s, "- **{}** — {}\n", v.target, v.note);
    }

    let _ = writeln!(s, "{}\n", text("throw_intro", &[]));
    let _ = write!(s, "| mechanism |");
    for d in DEPTHS {
        let _ = write!(s, " d={d} |");
    }
    let _ = writeln!(s, " per extra frame (d=1→1000) |");
    let _ = writeln!(s, "|---|{}---|", "---|".repeat(DEPTHS.len()));
    for (id, label) in THROW_ROWS {
        let _ = write!(s, "| {label} |");
        for d in DEPTHS {
            let _ = write!(s, " {} |", ns(t(id, d)));
        }
        let slope = t(id, 1000).zip(t(id, 1)).map(|(a, b)| (a - b) / 999.0);
        let _ = writeln!(s, " {} |", ns(slope));
    }

    let _ = writeln!(s, "\n### Ratios (same run)\n");
    let _ = write!(s, "| ratio |");
    for d in DEPTHS {
        let _ = write!(s, " d={d} |");
    }
    let _ = writeln!(s, "\n|---|{}", "---|".repeat(DEPTHS.len()));
    let ratio_rows: [(&str, &str, &str); 9] = [
        (
            "(a) stack walk / (c) wasmtime",
            "a_stack_walk",
            "c_wasmtime_unwinder",
        ),
        ("(b) to entry / (f) longjmp", "b_to_entry", "f_longjmp"),
        (
            "(b) to entry / (f′) longjmp, same frames",
            "b_to_entry",
            "f_longjmp_over_jit",
        ),
        (
            "(b′) from host / (b) from JIT code",
            "b_to_entry_from_host",
            "b_to_entry",
        ),
        ("(b″) trap / (f) longjmp", "b_trap_to_entry", "f_longjmp"),
        ("(a) stack walk / (f) longjmp", "a_stack_walk", "f_longjmp"),
        ("(d) panic / (a) stack walk", "d_rust_panic", "a_stack_walk"),
        ("(e) C++ / (a) stack walk", "e_cxx_throw", "a_stack_walk"),
        (
            "(a′) from host / (a) stub",
            "a_stack_walk_from_host",
            "a_stack_walk",
        ),
    ];
    for (label, a, b) in ratio_rows {
        let _ = write!(s, "| {label} |");
        for d in DEPTHS {
            let _ = write!(s, " {} |", x(ratio(t(a, d), t(b, d))));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "\n{}", text("throw_after", &[]));

    let e = |f: &str| get(m, "entry", f, "");
    let _ = writeln!(s, "\n{}", text("entry_intro", &[]));
    for (id, label) in [
        (
            "plain_indirect_call",
            "plain indirect call (fn pointer to `%ret`)",
        ),
        (
            "bare_wrapper",
            "a bare JIT frame: argument from the buffer, call, result back (no handler)",
        ),
        (
            "our_trampoline",
            "our handler-registering entry trampoline, called directly",
        ),
        (
            "our_trampoline_tail_callee",
            "the same for `%ret_tail`, a `tail` callee (its trampoline saves every callee-saved register)",
        ),
        ("c_setjmp_entry", "C: `setjmp`, then the indirect call"),
        (
            "c_sigsetjmp_entry",
            "C: `sigsetjmp(env, 1)`, then the indirect call",
        ),
        (
            "our_call_raw",
            "ours: `Module::call_raw` (trampoline + native machine's call)",
        ),
        ("our_typed_call", "ours: `TypedFunc::call`"),
        ("our_module_call", "ours: `Module::call` with `DataValue`s"),
    ] {
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} |",
            ns(e(id)),
            x(ratio(e(id), e("plain_indirect_call"))),
            x(ratio(e(id), e("c_setjmp_entry")))
        );
    }

    let f = |n: &str| get(m, "finalize", &format!("one_function_into_{n}"), "");
    let _ = writeln!(s, "\n{}", text("finalize_intro", &[]));
    for (n, label) in [("1000", "1,000 functions"), ("100000", "100,000 functions")] {
        let _ = writeln!(
            s,
            "| {label} | {} | {} |",
            ns(f(n)),
            x(ratio(f(n), f("1000")))
        );
    }
    let growth = ratio(f("100000"), f("1000"));
    let verdict = match growth {
        Some(r) if r <= 1.25 => format!(
            "The cost does not grow with the module ({} at a hundred times the size).",
            x(Some(r))
        ),
        Some(r) => format!(
            "The cost grows with the module: {} at a hundred times the size.",
            x(Some(r))
        ),
        None => "Not measured in this run.".to_string(),
    };
    let _ = writeln!(s, "\n{}", text("finalize_after", &[("verdict", verdict)]));

    let tr = |f: &str| tr(m, f);
    let _ = writeln!(s, "\n{}", text("trap_intro", &[]));
    for (label, kind) in [
        ("ud2 (SIGILL)", "ud2"),
        ("division by zero (SIGFPE)", "divz"),
    ] {
        let ours = tr(&format!("jit_{kind}"));
        let c1 = tr(&format!("c_sigsetjmp_{kind}"));
        let c0 = tr(&format!("c_nodefer_setjmp_{kind}"));
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            ns(ours),
            ns(c1),
            x(ratio(ours, c1)),
            ns(c0),
            x(ratio(ours, c0)),
            ns(tr(&format!("c_return_{kind}"))),
        );
    }
    let machine = match under_hypervisor() {
        Some(true) => "a virtual machine (`hypervisor` in /proc/cpuinfo's flags)",
        Some(false) => "no hypervisor (no `hypervisor` flag in /proc/cpuinfo)",
        None => "an unknown machine (no /proc/cpuinfo)",
    };
    let _ = writeln!(
        s,
        "\n{}",
        text("trap_kinds_intro", &[("machine", machine.to_string())])
    );
    let divz = tr("c_nodefer_setjmp_divz");
    for (label, kind) in [
        ("`ud2`", "ud2"),
        ("`idiv` by zero", "divz"),
        ("`int3`", "int3"),
        ("`hlt`", "hlt"),
        ("`int $0x41`", "int_n"),
        ("load from page 0", "page_fault"),
        (
            "`tgkill` (a system call, no exception; its round trip also pays `getpid` and `gettid`)",
            "tgkill",
        ),
    ] {
        let (exception, signal) = match kind {
            "ud2" => ("#UD", "SIGILL"),
            "divz" => ("#DE", "SIGFPE"),
            "int3" => ("#BP", "SIGTRAP"),
            "hlt" | "int_n" => ("#GP", "SIGSEGV"),
            "page_fault" => ("#PF", "SIGSEGV"),
            _ => ("—", "SIGILL"),
        };
        let round = tr(&format!("c_nodefer_setjmp_{kind}"));
        let _ = writeln!(
            s,
            "| {label} | {exception} | {signal} | {} | {} | {} |",
            ns(tr(&format!("c_enter_{kind}"))),
            ns(round),
            x(ratio(round, divz)),
        );
    }
    let _ = writeln!(
        s,
        "\n| a sort of 24 numbers through a `dyn Fn` comparator (time-stamp counter): alone | right after a division by zero | right after `ud2` |\n|---|---|---|\n| {} | {} | {} |",
        ns(tr("sort_alone")),
        ns(sort_after(m, "divz")),
        ns(sort_after(m, "ud2")),
    );
    let enter = |kind: &str| tr(&format!("c_enter_{kind}"));
    let _ = writeln!(
        s,
        "\n{}",
        text(
            "trap_kinds_after",
            &[
                ("ud2_enter", ns(enter("ud2"))),
                ("divz_enter", ns(enter("divz"))),
                ("ud2_extra", added(enter("ud2"), enter("divz"))),
                ("int3_enter", ns(enter("int3"))),
                ("gp_enter", ns(enter("int_n"))),
                ("pf_enter", ns(enter("page_fault"))),
                ("tgkill_enter", ns(enter("tgkill"))),
                ("ud2_round", ns(tr("c_nodefer_setjmp_ud2"))),
                ("int3_round", ns(tr("c_nodefer_setjmp_int3"))),
                ("gp_round", ns(tr("c_nodefer_setjmp_int_n"))),
                ("cpu", cpu_model()),
                ("sort_alone", ns(tr("sort_alone"))),
                ("sort_after_ud2", ns(sort_after(m, "ud2"))),
                ("sort_after_divz", ns(sort_after(m, "divz"))),
                (
                    "sigreturn",
                    ns(tr("c_return_divz").zip(divz).map(|(a, b)| a - b))
                ),
                (
                    "sigprocmask",
                    ns(tr("c_sigsetjmp_divz").zip(divz).map(|(a, b)| (a - b) / 2.0))
                ),
            ]
        )
    );

    let _ = writeln!(s, "\n{}\n", text("table_intro", &[]));
    let _ = writeln!(
        s,
        "| corpus | files | functions | call sites (try_call) | handlers (+contexts) | ours: site columns + handler columns + index | ours: B / try_call site, B / handler | wasmtime: B / site, B / handler | ours / wasmtime |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for (path, sizes) in tables {
        match sizes {
            Ok(t) => {
                let per = |b: usize| {
                    format!(
                        "{:.1}, {:.1}",
                        TableSizes::per_site(b, t.try_call_sites),
                        TableSizes::per_site(b, t.handlers)
                    )
                };
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} (left out: {} not compiling for x86_64, {} with register contexts; {} files unparsed) | {} ({}) | {} (+{}) | {} + {} + {} = {} B | {} | {} ({} B) | {} |",
                    display_corpus(path),
                    t.files,
                    t.functions,
                    t.uncompiled_functions,
                    t.register_context_functions,
                    t.unparsed_files,
                    t.call_sites,
                    t.try_call_sites,
                    t.handlers,
                    t.contexts,
                    t.ours_site_bytes,
                    t.ours_handler_bytes,
                    t.ours_index_bytes,
                    t.ours_bytes,
                    per(t.ours_bytes),
                    per(t.wasmtime_bytes),
                    t.wasmtime_bytes,
                    x(Some(t.ratio())),
                );
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "| `{}` | error: {e} | | | | | | | |",
                    display_corpus(path)
                );
            }
        }
    }
    let _ = writeln!(s, "\n{}\n", text("table_after", &[]));

    let _ = writeln!(s, "{}\n", text("wasmtime", &[]));
    let _ = writeln!(s, "{}\n", text("method", &[]));
    s
}

fn display_corpus(path: &Path) -> String {
    let root = workspace_root();
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let (p, r) = (canon(path), canon(&root));
    if let Ok(rel) = p.strip_prefix(&r) {
        return format!("{}/", rel.display());
    }
    if let Some(parent) = r.parent()
        && let Ok(rel) = p.strip_prefix(parent)
    {
        return format!("../{}/", rel.display());
    }
    p.display().to_string()
}

fn plot(m: &Medians, path: &Path) -> Result<(), String> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = THROW_ROWS
        .iter()
        .map(|(id, label)| {
            let points = DEPTHS
                .iter()
                .filter_map(|&d| get(m, "throw", id, &depth_str(d)).map(|v| (d as f64, v)))
                .collect();
            (*label, points)
        })
        .filter(|(_, p): &(&str, Vec<(f64, f64)>)| !p.is_empty())
        .collect();
    let all = series.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v));
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if series.is_empty() {
        return Err("no throw results to plot".into());
    }
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throw → catch latency against call depth (median)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0.8f64..1250f64).log_scale(),
            ((lo / 8.0)..(hi * 1.5)).log_scale(),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("call depth d (frames between throw and catch)")
        .y_desc("ns per throw + catch")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| {
            if *v >= 1000.0 {
                format!("{:.0} µs", v / 1000.0)
            } else {
                format!("{v:.0} ns")
            }
        })
        .draw()
        .map_err(|e| err(&e))?;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(23, 190, 207),
        RGBColor(255, 127, 14),
        RGBColor(188, 189, 34),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(44, 160, 44),
        RGBColor(127, 127, 127),
        RGBColor(190, 190, 190),
    ];
    for (i, (label, points)) in series.iter().enumerate() {
        let color = palette[i % palette.len()];
        let style = ShapeStyle::from(&color).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(|e| err(&e))?
            .label(label.replace('`', ""))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 3, ShapeStyle::from(&color).filled())),
            )
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let medians = read_medians(&args.criterion)?;
    if medians.is_empty() {
        return Err(format!(
            "no results under {} (run `cargo bench -p cranelift-exn-benchmarks` first)",
            args.criterion.display()
        ));
    }
    // A bench that has not run leaves its rows at "—".
    let has_throw = medians.keys().any(|(g, _, _)| g == "throw");
    // Cranelift panics on a few corpus functions (they are counted as not
    // compiling); keep its panic messages off the terminal meanwhile.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let tables: Vec<(PathBuf, Result<TableSizes, String>)> = args
        .corpora
        .iter()
        .map(|dir| (dir.clone(), try_call_files(dir).and_then(|f| measure(&f))))
        .collect();
    std::panic::set_hook(hook);
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let md = args.out.join("benchmarks.md");
    let svg = args.out.join("benchmarks.svg");
    std::fs::write(&md, markdown(&medians, &tables))
        .map_err(|e| format!("{}: {e}", md.display()))?;
    println!("wrote {}", md.display());
    if has_throw {
        plot(&medians, &svg)?;
        println!("wrote {}", svg.display());
    } else {
        eprintln!(
            "report: no throw results, {} left as it was (run the throw bench)",
            svg.display()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("report: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_keep_their_sign_and_a_negative_one_says_so() {
        assert_eq!(ns(Some(-2286.2)), "−2.29 µs");
        assert_eq!(ns(Some(-14.25)), "−14.2 ns");
        assert_eq!(added(Some(3500.0), Some(2530.0)), "970 ns");
        assert_eq!(
            added(Some(10_100.0), Some(12_400.0)),
            "nothing measurable (−2.30 µs: the noise between the two rows exceeds it)"
        );
        assert_eq!(added(None, Some(1.0)), "—");
    }
}
