//! A calculator whose expressions are compiled to native code with Cranelift
//! and run through cranelift-exn's embedder runtime.
//!
//! ```text
//! cargo run --example calculator                 # the built-in tour
//! cargo run --example calculator -- "7 * (3 - 1)" "cell[2000]"
//! ```
//!
//! The language: integers, `+ - * /`, parentheses, and
//! * `cell[i]`: the i-th 64-bit cell of a memory of 512 cells followed by a
//!   guard region; an index past the end faults on the guard page, which
//!   comes back as a `heap_oob` trap (no bounds check is compiled);
//! * `raise(e)`: a host function that throws tag 1 with payload `e`;
//! * `try(a) else(b)`: `a`, or `b` if `a` raised.
//!
//! Each outcome is printed: a value, a trap (division by zero, out of
//! bounds), an uncaught exception, or a caught one.

use std::fmt::Write as _;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{AbiParam, Signature, types};
use cranelift_exn::codegen::isa::CallConv;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::{CallError, HostThrow, ModuleBuilder};

/// Cells of the calculator's memory.
const CELLS: usize = 512;
/// Bytes of inaccessible memory after the cells.
const GUARD: usize = 1 << 20;
/// The tag `raise` throws.
const RAISE_TAG: u32 = 1;

#[derive(Debug)]
enum Expr {
    Number(i64),
    Binary(char, Box<Expr>, Box<Expr>),
    Cell(Box<Expr>),
    Raise(Box<Expr>),
    Try(Box<Expr>, Box<Expr>),
}

/// A recursive-descent parser over the expression text.
struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Result<Expr, String> {
        let mut p = Parser {
            text: text.as_bytes(),
            at: 0,
        };
        let e = p.expr()?;
        p.skip_spaces();
        match p.text.get(p.at) {
            None => Ok(e),
            Some(c) => Err(format!(
                "unexpected `{}` at column {}",
                *c as char,
                p.at + 1
            )),
        }
    }

    fn skip_spaces(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        let found = self.text[self.at..].starts_with(token.as_bytes());
        if found {
            self.at += token.len();
        }
        found
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected `{token}` at column {}", self.at + 1))
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.left_assoc(['+', '-'], Self::term)
    }

    fn term(&mut self) -> Result<Expr, String> {
        self.left_assoc(['*', '/'], Self::factor)
    }

    /// Operands read by `operand`, joined left to right by any of `ops`.
    fn left_assoc(
        &mut self,
        ops: [char; 2],
        operand: fn(&mut Self) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        let mut e = operand(self)?;
        loop {
            let Some(op) = ops
                .into_iter()
                .find(|op| self.eat(op.encode_utf8(&mut [0; 4])))
            else {
                return Ok(e);
            };
            e = Expr::Binary(op, Box::new(e), Box::new(operand(self)?));
        }
    }

    fn factor(&mut self) -> Result<Expr, String> {
        if self.eat("(") {
            let e = self.expr()?;
            self.expect(")")?;
            return Ok(e);
        }
        if self.eat("cell") {
            self.expect("[")?;
            let e = self.expr()?;
            self.expect("]")?;
            return Ok(Expr::Cell(Box::new(e)));
        }
        if self.eat("raise") {
            self.expect("(")?;
            let e = self.expr()?;
            self.expect(")")?;
            return Ok(Expr::Raise(Box::new(e)));
        }
        if self.eat("try") {
            self.expect("(")?;
            let body = self.expr()?;
            self.expect(")")?;
            self.expect("else")?;
            self.expect("(")?;
            let fallback = self.expr()?;
            self.expect(")")?;
            return Ok(Expr::Try(Box::new(body), Box::new(fallback)));
        }
        self.skip_spaces();
        let start = self.at;
        while self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = std::str::from_utf8(&self.text[start..self.at]).unwrap_or("");
        digits
            .parse()
            .map(Expr::Number)
            .map_err(|_| format!("expected a number at column {}", start + 1))
    }
}

/// Emits CLIF: one function per expression, plus one per `try` body (a
/// `try_call` needs a callee).
struct Compiler {
    cells: u64,
    functions: Vec<String>,
}

impl Compiler {
    /// Compile `e` as `%name() -> i64` (with the `tail` convention when it
    /// is a `try` body) and return the function's text.
    fn function(&mut self, name: &str, call_conv: &str, e: &Expr) -> String {
        let mut body = String::new();
        let mut next = 0;
        let mut preamble = String::new();
        let result = self.emit(e, &mut body, &mut preamble, &mut next);
        let text = format!(
            "function %{name}() -> i64 {call_conv} {{\n\
             \x20   sig0 = (i64) -> i64 tail\n\
             \x20   sig1 = () -> i64 tail\n\
             \x20   fn0 = %raise sig0\n{preamble}\
             block0:\n{body}    return {result}\n}}\n"
        );
        self.functions.push(text.clone());
        text
    }

    fn emit(&mut self, e: &Expr, out: &mut String, pre: &mut String, next: &mut usize) -> String {
        let mut fresh = || {
            *next += 1;
            format!("v{next}")
        };
        match e {
            Expr::Number(n) => {
                let v = fresh();
                let _ = writeln!(out, "    {v} = iconst.i64 {n}");
                v
            }
            Expr::Binary(op, a, b) => {
                let a = self.emit(a, out, pre, next);
                let b = self.emit(b, out, pre, next);
                let v = format!("v{}", {
                    *next += 1;
                    *next
                });
                let inst = match op {
                    '+' => "iadd",
                    '-' => "isub",
                    '*' => "imul",
                    _ => "sdiv",
                };
                let _ = writeln!(out, "    {v} = {inst} {a}, {b}");
                v
            }
            Expr::Cell(index) => {
                let index = self.emit(index, out, pre, next);
                let [eight, offset, base, address, v] = [(); 5].map(|_| {
                    *next += 1;
                    format!("v{next}")
                });
                let _ = writeln!(out, "    {eight} = iconst.i64 8");
                let _ = writeln!(out, "    {offset} = imul {index}, {eight}");
                let _ = writeln!(out, "    {base} = iconst.i64 {}", self.cells);
                let _ = writeln!(out, "    {address} = iadd {base}, {offset}");
                let _ = writeln!(out, "    {v} = load.i64 heap_oob {address}");
                v
            }
            Expr::Raise(payload) => {
                let payload = self.emit(payload, out, pre, next);
                *next += 1;
                let v = format!("v{next}");
                let _ = writeln!(out, "    {v} = call fn0({payload})");
                v
            }
            Expr::Try(body, fallback) => {
                // The body becomes its own function, try_called with a tag-1
                // handler; the fallback is computed in the handler block.
                let id = self.functions.len();
                let callee = format!("try_body{id}");
                self.function(&callee, "tail", body);
                *next += 1;
                let fref = format!("fn{}", 100 + *next);
                let _ = writeln!(pre, "    {fref} = %{callee} sig1");
                let [result, payload0, payload1] = [(); 3].map(|_| {
                    *next += 1;
                    format!("v{next}")
                });
                let (normal, handler, join) = (100 + *next, 101 + *next, 102 + *next);
                *next += 3;
                let _ = writeln!(
                    out,
                    "    try_call {fref}(), sig1, block{normal}(ret0), \
                     [ tag{RAISE_TAG}: block{handler}(exn0, exn1) ]"
                );
                let _ = writeln!(out, "block{normal}({result}: i64):");
                let _ = writeln!(out, "    jump block{join}({result})");
                let _ = writeln!(out, "block{handler}({payload0}: i64, {payload1}: i64):");
                let fallback = self.emit(fallback, out, pre, next);
                let _ = writeln!(out, "    jump block{join}({fallback})");
                *next += 1;
                let v = format!("v{next}");
                let _ = writeln!(out, "block{join}({v}: i64):");
                v
            }
        }
    }
}

/// The cells: one read-write region followed by an inaccessible guard.
fn map_cells() -> u64 {
    let size = CELLS * 8;
    // SAFETY: a fresh anonymous mapping; the first page becomes readable
    // and writable, the rest stays PROT_NONE. It lives for the process.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            size + GUARD,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(base, libc::MAP_FAILED, "mapping the cells");
        assert_eq!(
            libc::mprotect(base, size, libc::PROT_READ | libc::PROT_WRITE),
            0
        );
        let cells = std::slice::from_raw_parts_mut(base.cast::<i64>(), CELLS);
        for (i, cell) in cells.iter_mut().enumerate() {
            *cell = i as i64 * 10;
        }
        base as u64
    }
}

fn evaluate(source: &str, cells: u64) -> Result<String, String> {
    let expr = Parser::parse(source)?;
    let mut compiler = Compiler {
        cells,
        functions: Vec::new(),
    };
    compiler.function("main", "system_v", &expr);

    let arch = Arch::host().ok_or("unsupported host")?;
    let isa = default_isa(arch).map_err(|e| e.to_string())?;
    let mut builder = ModuleBuilder::new(isa);
    for text in &compiler.functions {
        builder.define_clif(text).map_err(|e| e.to_string())?;
    }
    let mut raise = Signature::new(CallConv::Tail);
    raise.params.push(AbiParam::new(types::I64));
    raise.returns.push(AbiParam::new(types::I64));
    builder
        .define_host_function("raise", raise, |_, args| match args {
            [DataValue::I64(payload)] => Err(HostThrow::Exception {
                tag: RAISE_TAG,
                payloads: [*payload as u64, 0],
            }),
            _ => unreachable!("the glue passes one i64"),
        })
        .map_err(|e| e.to_string())?;
    let machine = NativeMachine::new().map_err(|e| e.to_string())?;
    let module = builder
        .finalize(Box::new(machine))
        .map_err(|e| e.to_string())?;
    let main = module.typed::<(), i64>("main").map_err(|e| e.to_string())?;
    Ok(match main.call(()) {
        Ok(value) => format!("= {value}"),
        Err(CallError::Trap { code, function, .. }) => format!("trap: {code} in {function}"),
        Err(CallError::Exception { tag, payloads }) => {
            format!(
                "uncaught exception: tag {tag}, payload {}",
                payloads[0] as i64
            )
        }
        Err(CallError::Interrupted) => "interrupted".to_string(),
        Err(CallError::Failed(e)) => format!("failed: {e}"),
    })
}

fn main() {
    let cells = map_cells();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tour = [
        "1 + 2 * 3",
        "10 / (5 - 5)",
        "cell[3] + cell[4000]",
        "raise(42)",
        "try(raise(7) + 1) else(100)",
        "try(cell[2]) else(0)",
        "try(10 / 0) else(1)",
    ];
    let sources: Vec<&str> = if args.is_empty() {
        tour.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    for source in sources {
        match evaluate(source, cells) {
            Ok(outcome) => println!("{source:32} {outcome}"),
            Err(e) => println!("{source:32} error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tour_prints_every_kind_of_outcome() {
        let cells = map_cells();
        let outcome = |source: &str| evaluate(source, cells).unwrap();
        assert_eq!(outcome("1 + 2 * 3"), "= 7");
        assert_eq!(outcome("10 / (5 - 5)"), "trap: int_divz in %main");
        assert_eq!(outcome("cell[3] + cell[4000]"), "trap: heap_oob in %main");
        assert_eq!(outcome("cell[511]"), "= 5110");
        assert_eq!(
            outcome("raise(42)"),
            "uncaught exception: tag 1, payload 42"
        );
        assert_eq!(outcome("try(raise(7) + 1) else(100)"), "= 100");
        assert_eq!(outcome("try(cell[2]) else(0)"), "= 20");
        assert_eq!(
            outcome("try(10 / 0) else(1)"),
            "trap: int_divz in %try_body0"
        );
        assert!(evaluate("1 +", cells).is_err());
    }
}
