//! Printing a [`Program`] as CLIF, and as a standalone `test run` file.

use std::fmt::Write as _;

use cranelift_exn::codegen::ir::immediates::Ieee64;

use crate::program::{
    Action, ArithOp, Condition, Conv, Ending, Function, Handlers, HostAction, Key, Program, Stmt,
};

/// The function reference of host function `%hN` is `fn{HOST_FN_REF + N}`
/// (JIT callees `%fK` are `fn{10 + K}`).
const HOST_FN_REF: usize = 100;

/// The user trap code after a call to `%__cranelift_throw`, which never
/// returns.
pub const UNREACHABLE_TRAP: u8 = 100;

/// The CLIF of every function of `program`, `%main` first.
pub fn print(program: &Program) -> String {
    let mut text = main_function(program);
    let mut hosts = 0;
    for (index, function) in program.functions.iter().enumerate() {
        text.push('\n');
        text.push_str(&Emitter::function(program, index, function, &mut hosts));
    }
    for (n, (action, in_clif)) in program.hosts().into_iter().enumerate() {
        if in_clif {
            text.push('\n');
            text.push_str(&Emitter::host_in_clif(program, n, action));
        }
    }
    text
}

/// A `test run` file for `targets` (target lines such as `x86_64`) whose run
/// line expects `expected`, with `comment` lines on top. Only a value can be
/// expected in a run line: for another outcome the run line is a `; print:`
/// and the expectation is stated in a comment.
pub fn run_test(program: &Program, targets: &[String], expected: &Ending, comment: &str) -> String {
    let mut text = String::from("test run\n");
    for target in targets {
        let _ = writeln!(text, "target {target}");
    }
    text.push('\n');
    for line in comment.lines() {
        let _ = writeln!(text, ";; {line}");
    }
    text.push('\n');
    let mut functions = print(program);
    // The run line follows `%main`, the first function.
    let main_end = functions.find("\n}\n").map_or(functions.len(), |i| i + 3);
    let run = match expected {
        Ending::Value(v) => format!("; run: %main({}) == {v}\n", program.argument),
        other => format!(
            ";; expected outcome: {other}\n; print: %main({})\n",
            program.argument
        ),
    };
    functions.insert_str(main_end, &run);
    text.push_str(&functions);
    text
}

fn conv_name(conv: Conv) -> &'static str {
    match conv {
        Conv::Tail => "tail",
        Conv::SystemV => "system_v",
    }
}

fn main_function(program: &Program) -> String {
    let conv = conv_name(program.functions[0].conv);
    let call = if program.main_catches {
        "    try_call fn0(v0, v1), sig0, block1(ret0), [ default: block2(exn0, exn1) ]
block1(v2: i64):
    return v2
block2(v3: i64, v4: i64):
    v5 = iconst.i64 1000003
    v6 = imul v3, v5
    v7 = iadd v6, v4
    return v7
"
    } else {
        "    v2 = call fn0(v0, v1)
    return v2
"
    };
    format!(
        "function %main(i64) -> i64 system_v {{
    sig0 = (i64, f64) -> i64 {conv}
    fn0 = %f0 sig0
block0(v0: i64):
    v1 = f64const {}
{call}}}
",
        Ieee64::with_float(1.25)
    )
}

/// Emits one function's body in SSA form, tracking the accumulator and
/// float values and the open block.
struct Emitter<'p> {
    program: &'p Program,
    /// The number of the next host statement's host function.
    next_host: usize,
    out: String,
    values: u32,
    blocks: u32,
    block: String,
    acc: String,
    float: String,
}

impl<'p> Emitter<'p> {
    /// An emitter at the start of a `(i64, f64)` function's entry block
    /// (`v0`, `v1`), whose first host statement calls `%h{next_host}`.
    fn new(program: &'p Program, next_host: usize) -> Emitter<'p> {
        Emitter {
            program,
            next_host,
            out: String::new(),
            values: 2,
            blocks: 1,
            block: "block0".into(),
            acc: "v0".into(),
            float: "v1".into(),
        }
    }

    /// The CLIF of `%f{index}`, whose host statements call `%h{hosts}`,
    /// `%h{hosts + 1}`, ... (`hosts` is advanced past them).
    fn function(program: &Program, index: usize, function: &Function, hosts: &mut usize) -> String {
        let first_host = *hosts;
        let mut e = Emitter::new(program, first_host);
        e.body(&function.body);
        let fi = e.value();
        let r = e.value();
        let _ = writeln!(e.out, "    {fi} = fcvt_to_sint_sat.i64 {}", e.float);
        let _ = writeln!(e.out, "    {r} = iadd {}, {fi}", e.acc);
        let _ = writeln!(e.out, "    return {r}");

        let mut callees: Vec<usize> = Vec::new();
        collect_callees(&function.body, &mut callees);
        let mut preamble = String::from(
            "    sig0 = (i64, i64, i64, i32, i64, i64) system_v\n    fn0 = %__cranelift_throw sig0\n    sig1 = (i64, f64) -> i64 tail\n    sig2 = (i64, f64) -> i64 system_v\n",
        );
        for callee in callees {
            let sig = match program.functions[callee].conv {
                Conv::Tail => "sig1",
                Conv::SystemV => "sig2",
            };
            let _ = writeln!(preamble, "    fn{} = %f{callee} {sig}", 10 + callee);
        }
        for host in first_host..e.next_host {
            let _ = writeln!(preamble, "    fn{} = %h{host} sig2", HOST_FN_REF + host);
        }
        *hosts = e.next_host;
        format!(
            "function %f{index}(i64, f64) -> i64 {} {{\n{preamble}block0(v0: i64, v1: f64):\n{}}}\n",
            conv_name(function.conv),
            e.out
        )
    }

    /// `%h{n}` as a CLIF function doing what the host function of `action`
    /// does; for `Reenter`, a plain call (see [`Stmt::Host`]).
    fn host_in_clif(program: &Program, n: usize, action: HostAction) -> String {
        let mut e = Emitter::new(program, 0);
        let mut preamble = String::from(
            "    sig0 = (i64, i64, i64, i32, i64, i64) system_v
    fn0 = %__cranelift_throw sig0
    sig1 = (i32, i64, i64) system_v
    fn1 = %__cranelift_exn_throw_to_entry sig1
    sig2 = (i64, f64) -> i64 tail
    sig3 = (i64, f64) -> i64 system_v
",
        );
        let (tag, when, to_entry, constant) = match action {
            HostAction::Return { constant } => (0, None, false, constant),
            HostAction::Throw { tag, when } => (tag, Some(when), false, 0),
            HostAction::ToEntry { tag, when } => (tag, Some(when), true, 0),
            HostAction::Reenter { callee } => {
                let sig = match program.functions[callee].conv {
                    Conv::Tail => "sig2",
                    Conv::SystemV => "sig3",
                };
                let _ = writeln!(preamble, "    fn2 = %f{callee} {sig}");
                let r = e.value();
                e.line(format!("{r} = call fn2(v0, v1)"));
                let one = e.constant("i64", 1);
                let result = e.value();
                e.line(format!("{result} = iadd {r}, {one}"));
                e.line(format!("return {result}"));
                return e.host_function_text(n, &preamble);
            }
        };
        if let Some(when) = when {
            let cond = e.condition(&when);
            let (throw_block, cont) = (e.new_block(), e.new_block());
            e.line(format!("brif {cond}, {throw_block}, {cont}"));
            e.open(&throw_block, &[]);
            let acc = e.acc.clone();
            if to_entry {
                let tag_value = e.constant("i32", i64::from(tag));
                let payload1 = e.constant("i64", i64::from(tag + 32));
                e.line(format!("call fn1({tag_value}, {acc}, {payload1})"));
                e.line(format!("trap user{UNREACHABLE_TRAP}"));
            } else {
                let payload1 = e.constant("i64", i64::from(tag + 16));
                e.throw(tag, &acc, &payload1);
            }
            e.open(&cont, &[]);
        }
        // acc * 5 + (float * 2.0) as i64 + constant
        let five = e.constant("i64", 5);
        let scaled = e.value();
        e.line(format!("{scaled} = imul {}, {five}", e.acc));
        let two = e.f64_constant(2.0);
        let doubled = e.value();
        e.line(format!("{doubled} = fmul {}, {two}", e.float));
        let converted = e.value();
        e.line(format!("{converted} = fcvt_to_sint_sat.i64 {doubled}"));
        let sum = e.value();
        e.line(format!("{sum} = iadd {scaled}, {converted}"));
        let c = e.constant("i64", constant);
        let result = e.value();
        e.line(format!("{result} = iadd {sum}, {c}"));
        e.line(format!("return {result}"));
        e.host_function_text(n, &preamble)
    }

    fn host_function_text(&self, n: usize, preamble: &str) -> String {
        format!(
            "function %h{n}(i64, f64) -> i64 system_v {{\n{preamble}block0(v0: i64, v1: f64):\n{}}}\n",
            self.out
        )
    }

    fn value(&mut self) -> String {
        self.values += 1;
        format!("v{}", self.values)
    }

    fn new_block(&mut self) -> String {
        self.blocks += 1;
        format!("block{}", self.blocks)
    }

    fn line(&mut self, text: String) {
        self.out.push_str("    ");
        self.out.push_str(&text);
        self.out.push('\n');
    }

    fn constant(&mut self, ty: &str, value: i64) -> String {
        let v = self.value();
        self.line(format!("{v} = iconst.{ty} {value}"));
        v
    }

    fn f64_constant(&mut self, value: f64) -> String {
        let v = self.value();
        self.line(format!("{v} = f64const {}", Ieee64::with_float(value)));
        v
    }

    /// Open `block` (with typed parameters), making it current.
    fn open(&mut self, block: &str, params: &[(&str, &str)]) {
        let params: Vec<String> = params.iter().map(|(v, t)| format!("{v}: {t}")).collect();
        if params.is_empty() {
            let _ = writeln!(self.out, "{block}:");
        } else {
            let _ = writeln!(self.out, "{block}({}):", params.join(", "));
        }
        self.block = block.to_string();
    }

    fn body(&mut self, body: &[Stmt]) {
        for stmt in body {
            self.stmt(stmt);
        }
    }

    fn stmt(&mut self, stmt: &Stmt) {
        match stmt {
            Stmt::Arith { op, constant } => {
                let c = self.constant("i64", *constant);
                let acc = self.value();
                let inst = match op {
                    ArithOp::Add => "iadd",
                    ArithOp::Mul => "imul",
                    ArithOp::Xor => "bxor",
                };
                self.line(format!("{acc} = {inst} {}, {c}", self.acc));
                let half = self.f64_constant(0.5);
                let scaled = self.value();
                self.line(format!("{scaled} = fmul {}, {half}", self.float));
                let addend = self.f64_constant((constant % 16) as f64);
                let float = self.value();
                self.line(format!("{float} = fadd {scaled}, {addend}"));
                self.acc = acc;
                self.float = float;
            }
            Stmt::Call {
                callee,
                indirect,
                handlers,
                handler_address,
            } => {
                let sig = match self.program.functions[*callee].conv {
                    Conv::Tail => "sig1",
                    Conv::SystemV => "sig2",
                };
                let fref = format!("fn{}", 10 + callee);
                self.call(&fref, sig, *indirect, handlers.as_ref(), *handler_address);
            }
            Stmt::Host { handlers, .. } => {
                let fref = format!("fn{}", HOST_FN_REF + self.next_host);
                self.next_host += 1;
                self.call(&fref, "sig2", false, handlers.as_ref(), None);
            }
            Stmt::Throw { tag, when } => {
                let cond = self.condition(when);
                let throw_block = self.new_block();
                let cont = self.new_block();
                self.line(format!("brif {cond}, {throw_block}, {cont}"));
                self.open(&throw_block, &[]);
                let acc = self.acc.clone();
                let p1 = self.constant("i64", i64::from(*tag));
                self.throw(*tag, &acc, &p1);
                self.open(&cont, &[]);
            }
            Stmt::Trap { code, when } => {
                let cond = self.condition(when);
                self.line(format!("trapnz {cond}, user{code}"));
            }
            Stmt::Loop { count, body } => {
                let n = self.constant("i64", i64::from(*count));
                let head = self.new_block();
                let exit = self.new_block();
                self.line(format!("jump {head}({}, {}, {n})", self.acc, self.float));
                let (a, f, k) = (self.value(), self.value(), self.value());
                self.open(&head, &[(&a, "i64"), (&f, "f64"), (&k, "i64")]);
                self.acc = a;
                self.float = f;
                self.body(body);
                let one = self.constant("i64", 1);
                let k2 = self.value();
                self.line(format!("{k2} = isub {k}, {one}"));
                self.line(format!(
                    "brif {k2}, {head}({acc}, {float}, {k2}), {exit}({acc}, {float})",
                    acc = self.acc,
                    float = self.float
                ));
                let (a, f) = (self.value(), self.value());
                self.open(&exit, &[(&a, "i64"), (&f, "f64")]);
                self.acc = a;
                self.float = f;
            }
        }
    }

    /// `(acc & mask) == equals` as an `i8`.
    fn condition(&mut self, when: &Condition) -> String {
        let mask = self.constant("i64", when.mask);
        let masked = self.value();
        self.line(format!("{masked} = band {}, {mask}", self.acc));
        let equals = self.constant("i64", when.equals);
        let cond = self.value();
        self.line(format!("{cond} = icmp eq {masked}, {equals}"));
        cond
    }

    /// Call `%__cranelift_throw` (walking from this frame) and end the block.
    fn throw(&mut self, tag: u32, payload0: &str, payload1: &str) {
        let fp = self.value();
        self.line(format!("{fp} = get_frame_pointer.i64"));
        let ra = self.value();
        self.line(format!("{ra} = get_return_address.i64"));
        let zero = self.constant("i64", 0);
        let tag = self.constant("i32", i64::from(tag));
        self.line(format!(
            "call fn0({zero}, {fp}, {ra}, {tag}, {payload0}, {payload1})"
        ));
        self.line(format!("trap user{UNREACHABLE_TRAP}"));
    }

    /// Call `fref` (with signature `sig`) with `(acc, float)`, adding the
    /// result to `acc` or running `handlers`.
    fn call(
        &mut self,
        fref: &str,
        sig: &str,
        indirect: bool,
        handlers: Option<&Handlers>,
        handler_address: Option<usize>,
    ) {
        let target = if indirect {
            let addr = self.value();
            self.line(format!("{addr} = func_addr.i64 {fref}"));
            addr
        } else {
            fref.to_string()
        };
        let args = format!("({}, {})", self.acc, self.float);
        let Some(handlers) = handlers else {
            let r = self.value();
            if indirect {
                self.line(format!("{r} = call_indirect {sig}, {target}{args}"));
            } else {
                self.line(format!("{r} = call {target}{args}"));
            }
            let acc = self.value();
            self.line(format!("{acc} = iadd {}, {r}", self.acc));
            self.acc = acc;
            return;
        };
        if handler_address.is_some() && self.block == "block0" {
            // get_exception_handler_address may not name the entry block.
            let block = self.new_block();
            self.line(format!("jump {block}"));
            self.open(&block, &[]);
        }
        let try_block = self.block.clone();
        let normal = self.new_block();
        let action_blocks: Vec<String> =
            handlers.actions.iter().map(|_| self.new_block()).collect();
        let join = self.new_block();
        let table: Vec<String> = handlers
            .entries
            .iter()
            .map(|(key, action)| {
                let key = match key {
                    Key::Tag(t) => format!("tag{t}"),
                    Key::Default => "default".into(),
                };
                format!("{key}: {}(exn0, exn1)", action_blocks[*action])
            })
            .collect();
        let inst = if indirect {
            "try_call_indirect"
        } else {
            "try_call"
        };
        self.line(format!(
            "{inst} {target}{args}, {sig}, {normal}(ret0), [ {} ]",
            table.join(", ")
        ));
        let (acc, float) = (self.acc.clone(), self.float.clone());

        let r = self.value();
        self.open(&normal, &[(&r, "i64")]);
        let sum = self.value();
        self.line(format!("{sum} = iadd {acc}, {r}"));
        self.line(format!("jump {join}({sum}, {float})"));

        for (action, block) in handlers.actions.iter().zip(&action_blocks) {
            let (p0, p1) = (self.value(), self.value());
            self.open(block, &[(&p0, "i64"), (&p1, "i64")]);
            match action {
                Action::Resume { constant } => {
                    let three = self.constant("i64", 3);
                    let t1 = self.value();
                    self.line(format!("{t1} = imul {acc}, {three}"));
                    let t2 = self.value();
                    self.line(format!("{t2} = iadd {t1}, {p0}"));
                    let seven = self.constant("i64", 7);
                    let t3 = self.value();
                    self.line(format!("{t3} = imul {p1}, {seven}"));
                    let t4 = self.value();
                    self.line(format!("{t4} = iadd {t2}, {t3}"));
                    let c = self.constant("i64", *constant);
                    let t5 = self.value();
                    self.line(format!("{t5} = iadd {t4}, {c}"));
                    let one = self.f64_constant(1.0);
                    let f2 = self.value();
                    self.line(format!("{f2} = fadd {float}, {one}"));
                    self.line(format!("jump {join}({t5}, {f2})"));
                }
                Action::Rethrow { tag } => {
                    let payload0 = self.value();
                    self.line(format!("{payload0} = iadd {acc}, {p0}"));
                    let payload1 = self.constant("i64", i64::from(*tag));
                    self.throw(*tag, &payload0, &payload1);
                }
            }
        }

        let (a, f) = (self.value(), self.value());
        self.open(&join, &[(&a, "i64"), (&f, "f64")]);
        self.acc = a;
        self.float = f;
        if let Some(index) = handler_address {
            let address = self.value();
            self.line(format!(
                "{address} = get_exception_handler_address.i64 {try_block}, {index}"
            ));
            let zero = self.constant("i64", 0);
            let nonzero = self.value();
            self.line(format!("{nonzero} = icmp ne {address}, {zero}"));
            let one = self.value();
            self.line(format!("{one} = uextend.i64 {nonzero}"));
            let acc = self.value();
            self.line(format!("{acc} = iadd {}, {one}", self.acc));
            self.acc = acc;
        }
    }
}

fn collect_callees(body: &[Stmt], callees: &mut Vec<usize>) {
    for stmt in body {
        match stmt {
            Stmt::Call { callee, .. } if !callees.contains(callee) => callees.push(*callee),
            Stmt::Loop { body, .. } => collect_callees(body, callees),
            _ => {}
        }
    }
}
