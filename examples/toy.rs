//! A toy language compiled by a frontend written against
//! `cranelift_module::Module` alone, run on this crate's `JitModule` (with
//! exceptions and traps as outcomes). The same frontend runs on
//! cranelift-jit's `JITModule` in `tests/toy_vs_cranelift_jit.rs`.
//!
//! The language: 64-bit integers, functions, globals, `while`, `if`,
//! `return`, `throw expr;` and `try { ... } catch name { ... }`.
//!
//! ```text
//! global calls = 0;
//! fn fib(n) { a = 0; b = 1; while n > 0 { t = a + b; a = b; b = t; n = n - 1; } calls = calls + 1; return a; }
//! ```
//!
//! Run with `cargo run --example toy`.

use std::collections::HashMap;

use cranelift_exn::codegen::ir::{
    self, AbiParam, BlockArg, ExceptionTableData, ExceptionTableItem, ExceptionTag, InstBuilder,
    MemFlagsData, condcodes::IntCC, types,
};
use cranelift_exn::cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};
use cranelift_exn::frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

/// The tag `throw` uses.
pub const TOY_TAG: u32 = 1;
/// The function `throw` calls: `raise(value) -> i64`, which never returns
/// normally; the embedder provides it (a host function that throws
/// [`TOY_TAG`] with `value` as the first payload).
pub const RAISE: &str = "raise";

/// Define [`RAISE`] in `module`: a host function that throws [`TOY_TAG`]
/// with its argument as the first payload.
pub fn define_raise<M: ?Sized + cranelift_exn::machine::Machine>(
    module: &mut cranelift_exn::JitModule<M>,
) -> Result<(), cranelift_exn::Error> {
    use cranelift_exn::HostThrow;
    use cranelift_exn::codegen::data_value::DataValue;

    let raise_sig = signature(&*module, 1);
    module.define_host_function(RAISE, raise_sig, |_, args| match args {
        [DataValue::I64(v)] => Err(HostThrow::Exception {
            tag: TOY_TAG,
            payloads: [*v as u64, 0],
        }),
        _ => Ok(vec![DataValue::I64(0)]),
    })?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Num(i64),
    Name(String),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<Token>, String> {
    const SYMS: [&str; 19] = [
        "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "{", "}", ",", ";",
        "=", "!",
    ];
    let mut out = Vec::new();
    let mut rest = src;
    'outer: while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c.is_ascii_digit() {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let n = rest[..end]
                .parse()
                .map_err(|e| format!("number {}: {e}", &rest[..end]))?;
            out.push(Token::Num(n));
            rest = &rest[end..];
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push(Token::Name(rest[..end].to_string()));
            rest = &rest[end..];
            continue;
        }
        for s in SYMS {
            if let Some(r) = rest.strip_prefix(s) {
                out.push(Token::Sym(s));
                rest = r;
                continue 'outer;
            }
        }
        return Err(format!("unexpected character {c:?}"));
    }
    Ok(out)
}

#[derive(Clone, Debug)]
enum Expr {
    Num(i64),
    Var(String),
    Call(String, Vec<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
}

#[derive(Clone, Debug)]
enum Stmt {
    Assign(String, Expr),
    While(Expr, Vec<Stmt>),
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    Return(Expr),
    Throw(Expr),
    Try(Vec<Stmt>, String, Vec<Stmt>),
    Expr(Expr),
}

struct FnDef {
    name: String,
    params: Vec<String>,
    body: Vec<Stmt>,
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }
    fn next(&mut self) -> Result<Token, String> {
        let t = self.tokens.get(self.at).cloned().ok_or("unexpected end")?;
        self.at += 1;
        Ok(t)
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.peek() == Some(&Token::Sym(sym(s))) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    /// Items read by `item`, separated by commas, up to and with the `)`
    /// that closes the list (its `(` already read).
    fn list<T>(&mut self, item: impl Fn(&mut Self) -> Result<T, String>) -> Result<Vec<T>, String> {
        let mut items = Vec::new();
        if !self.eat(")") {
            loop {
                items.push(item(self)?);
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok(items)
    }

    fn expect(&mut self, s: &str) -> Result<(), String> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(format!("expected {s:?}, found {:?}", self.peek()))
        }
    }
    fn name(&mut self) -> Result<String, String> {
        match self.next()? {
            Token::Name(n) => Ok(n),
            t => Err(format!("expected a name, found {t:?}")),
        }
    }
    fn keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Token::Name(n)) if n == k) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn block(&mut self) -> Result<Vec<Stmt>, String> {
        self.expect("{")?;
        let mut stmts = Vec::new();
        while !self.eat("}") {
            stmts.push(self.stmt()?);
        }
        Ok(stmts)
    }

    fn stmt(&mut self) -> Result<Stmt, String> {
        if self.keyword("while") {
            let cond = self.expr()?;
            return Ok(Stmt::While(cond, self.block()?));
        }
        if self.keyword("if") {
            let cond = self.expr()?;
            let then = self.block()?;
            let els = if self.keyword("else") {
                self.block()?
            } else {
                Vec::new()
            };
            return Ok(Stmt::If(cond, then, els));
        }
        if self.keyword("return") {
            let e = self.expr()?;
            self.expect(";")?;
            return Ok(Stmt::Return(e));
        }
        if self.keyword("throw") {
            let e = self.expr()?;
            self.expect(";")?;
            return Ok(Stmt::Throw(e));
        }
        if self.keyword("try") {
            let body = self.block()?;
            if !self.keyword("catch") {
                return Err("expected catch".into());
            }
            let name = self.name()?;
            return Ok(Stmt::Try(body, name, self.block()?));
        }
        if let (Some(Token::Name(n)), Some(Token::Sym("="))) =
            (self.tokens.get(self.at), self.tokens.get(self.at + 1))
        {
            let n = n.clone();
            self.at += 2;
            let e = self.expr()?;
            self.expect(";")?;
            return Ok(Stmt::Assign(n, e));
        }
        let e = self.expr()?;
        self.expect(";")?;
        Ok(Stmt::Expr(e))
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.binary(0)
    }

    fn binary(&mut self, level: usize) -> Result<Expr, String> {
        const LEVELS: [&[&str]; 3] = [
            &["==", "!=", "<", "<=", ">", ">="],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        loop {
            let Some(&op) = LEVELS[level]
                .iter()
                .find(|op| self.peek() == Some(&Token::Sym(sym(op))))
            else {
                return Ok(lhs);
            };
            self.at += 1;
            let rhs = self.binary(level + 1)?;
            lhs = Expr::Bin(sym(op), Box::new(lhs), Box::new(rhs));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        match self.next()? {
            Token::Num(n) => Ok(Expr::Num(n)),
            Token::Name(n) => {
                if self.eat("(") {
                    Ok(Expr::Call(n, self.list(Self::expr)?))
                } else {
                    Ok(Expr::Var(n))
                }
            }
            Token::Sym("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            t => Err(format!("unexpected {t:?}")),
        }
    }
}

/// The `&'static str` of a symbol token.
fn sym(s: &str) -> &'static str {
    const ALL: [&str; 19] = [
        "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "{", "}", ",", ";",
        "=", "!",
    ];
    ALL.iter().find(|a| **a == s).copied().unwrap_or("?")
}

/// What a compiled program defined in the module.
#[derive(Debug, Default)]
pub struct Program {
    /// Functions by name, with their parameter count.
    pub functions: HashMap<String, (FuncId, usize)>,
    /// Globals by name.
    pub globals: HashMap<String, DataId>,
}

/// Compile the toy program `src` into `module` (any `cranelift_module`
/// backend). Functions are exported under their names; globals are
/// writable 8-byte data objects. Call `finalize_definitions` afterwards.
/// `known` are functions of earlier programs in the same module, callable
/// from this one.
pub fn compile<M: Module>(module: &mut M, src: &str, known: &Program) -> Result<Program, String> {
    let mut p = Parser {
        tokens: lex(src)?,
        at: 0,
    };
    let mut program = Program {
        functions: known.functions.clone(),
        globals: known.globals.clone(),
    };
    let mut defs = Vec::new();
    let endianness = module.isa().endianness();
    while p.peek().is_some() {
        if p.keyword("global") {
            let name = p.name()?;
            p.expect("=")?;
            let neg = p.eat("-");
            let value = match p.next()? {
                Token::Num(n) if neg => -n,
                Token::Num(n) => n,
                t => return Err(format!("expected a number, found {t:?}")),
            };
            p.expect(";")?;
            let id = module
                .declare_data(&name, Linkage::Export, true, false)
                .map_err(|e| e.to_string())?;
            let mut data = DataDescription::new();
            let bytes = match endianness {
                ir::Endianness::Little => value.to_le_bytes(),
                ir::Endianness::Big => value.to_be_bytes(),
            };
            data.define(Box::new(bytes));
            data.set_align(8);
            module.define_data(id, &data).map_err(|e| e.to_string())?;
            program.globals.insert(name, id);
        } else if p.keyword("fn") {
            let name = p.name()?;
            p.expect("(")?;
            let params = p.list(Parser::name)?;
            let body = p.block()?;
            let id = module
                .declare_function(&name, Linkage::Export, &signature(module, params.len()))
                .map_err(|e| e.to_string())?;
            program.functions.insert(name.clone(), (id, params.len()));
            defs.push((id, FnDef { name, params, body }));
        } else {
            return Err(format!("expected fn or global, found {:?}", p.peek()));
        }
    }
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    for (id, def) in defs {
        ctx.func.signature = signature(module, def.params.len());
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let mut cg = Codegen {
            module,
            program: &program,
            b,
            vars: HashMap::new(),
            handler: None,
        };
        for (i, param) in def.params.iter().enumerate() {
            let v = cg.b.block_params(entry)[i];
            let var = cg.b.declare_var(types::I64);
            cg.b.def_var(var, v);
            cg.vars.insert(param.clone(), var);
        }
        cg.stmts(&def.body)
            .map_err(|e| format!("{}: {e}", def.name))?;
        let zero = cg.b.ins().iconst(types::I64, 0);
        cg.b.ins().return_(&[zero]);
        cg.b.seal_all_blocks();
        let config = cg.module.isa().frontend_config();
        cg.b.finalize(config);
        module
            .define_function(id, &mut ctx)
            .map_err(|e| format!("{}: {e:?}", def.name))?;
        module.clear_context(&mut ctx);
    }
    Ok(program)
}

fn signature<M: Module>(module: &M, params: usize) -> ir::Signature {
    let mut sig = module.make_signature();
    sig.params
        .extend((0..params).map(|_| AbiParam::new(types::I64)));
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

struct Codegen<'a, M: Module> {
    module: &'a mut M,
    program: &'a Program,
    b: FunctionBuilder<'a>,
    vars: HashMap<String, Variable>,
    /// Inside `try`: the catch block (one i64 parameter: the payload).
    handler: Option<ir::Block>,
}

impl<M: Module> Codegen<'_, M> {
    fn stmts(&mut self, stmts: &[Stmt]) -> Result<(), String> {
        for s in stmts {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), String> {
        match s {
            Stmt::Assign(name, e) => {
                let v = self.expr(e)?;
                if let Some(&var) = self.vars.get(name) {
                    self.b.def_var(var, v);
                } else if let Some(addr) = self.global_addr(name) {
                    self.b.ins().store(MemFlagsData::trusted(), v, addr, 0);
                } else {
                    let var = self.b.declare_var(types::I64);
                    self.b.def_var(var, v);
                    self.vars.insert(name.clone(), var);
                }
            }
            Stmt::While(cond, body) => {
                let (head, body_block, exit) = (
                    self.b.create_block(),
                    self.b.create_block(),
                    self.b.create_block(),
                );
                self.b.ins().jump(head, &[]);
                self.b.switch_to_block(head);
                let c = self.expr(cond)?;
                self.b.ins().brif(c, body_block, &[], exit, &[]);
                self.b.switch_to_block(body_block);
                self.stmts(body)?;
                self.b.ins().jump(head, &[]);
                self.b.switch_to_block(exit);
            }
            Stmt::If(cond, then, els) => {
                let (t, e, merge) = (
                    self.b.create_block(),
                    self.b.create_block(),
                    self.b.create_block(),
                );
                let c = self.expr(cond)?;
                self.b.ins().brif(c, t, &[], e, &[]);
                self.b.switch_to_block(t);
                self.stmts(then)?;
                self.b.ins().jump(merge, &[]);
                self.b.switch_to_block(e);
                self.stmts(els)?;
                self.b.ins().jump(merge, &[]);
                self.b.switch_to_block(merge);
            }
            Stmt::Return(e) => {
                let v = self.expr(e)?;
                self.b.ins().return_(&[v]);
                let dead = self.b.create_block();
                self.b.switch_to_block(dead);
            }
            Stmt::Throw(e) => {
                let v = self.expr(e)?;
                let raise = self
                    .module
                    .declare_function(RAISE, Linkage::Import, &signature(&*self.module, 1))
                    .map_err(|e| e.to_string())?;
                self.call(raise, &[v]);
            }
            Stmt::Try(body, name, catch) => {
                let catch_block = self.b.create_block();
                let payload = self.b.append_block_param(catch_block, types::I64);
                let after = self.b.create_block();
                let outer = self.handler.replace(catch_block);
                self.stmts(body)?;
                self.handler = outer;
                self.b.ins().jump(after, &[]);
                self.b.switch_to_block(catch_block);
                let var = *self
                    .vars
                    .entry(name.clone())
                    .or_insert_with(|| self.b.declare_var(types::I64));
                self.b.def_var(var, payload);
                self.stmts(catch)?;
                self.b.ins().jump(after, &[]);
                self.b.switch_to_block(after);
            }
            Stmt::Expr(e) => {
                self.expr(e)?;
            }
        }
        Ok(())
    }

    fn global_addr(&mut self, name: &str) -> Option<ir::Value> {
        let id = *self.program.globals.get(name)?;
        let gv = self.module.declare_data_in_func(id, self.b.func);
        Some(self.b.ins().symbol_value(types::I64, gv))
    }

    /// A call, or inside `try` a `try_call` whose tag-[`TOY_TAG`] handler
    /// is the catch block.
    fn call(&mut self, callee: FuncId, args: &[ir::Value]) -> ir::Value {
        let fref = self.module.declare_func_in_func(callee, self.b.func);
        let Some(catch_block) = self.handler else {
            let call = self.b.ins().call(fref, args);
            return self.b.inst_results(call)[0];
        };
        let next = self.b.create_block();
        let result = self.b.append_block_param(next, types::I64);
        let sig = self.b.func.dfg.ext_funcs[fref].signature;
        let dfg = &mut self.b.func.dfg;
        let normal = dfg.block_call(next, &[BlockArg::TryCallRet(0)]);
        let caught = dfg.block_call(catch_block, &[BlockArg::TryCallExn(0)]);
        let tag = ExceptionTag::with_number(TOY_TAG).expect("a valid tag");
        let table = dfg.exception_tables.push(ExceptionTableData::new(
            sig,
            normal,
            [ExceptionTableItem::Tag(tag, caught)],
        ));
        self.b.ins().try_call(fref, args, table);
        self.b.switch_to_block(next);
        result
    }

    fn expr(&mut self, e: &Expr) -> Result<ir::Value, String> {
        Ok(match e {
            Expr::Num(n) => self.b.ins().iconst(types::I64, *n),
            Expr::Var(name) => {
                if let Some(&var) = self.vars.get(name) {
                    self.b.use_var(var)
                } else if let Some(addr) = self.global_addr(name) {
                    self.b
                        .ins()
                        .load(types::I64, MemFlagsData::trusted(), addr, 0)
                } else {
                    return Err(format!("unknown variable {name}"));
                }
            }
            Expr::Neg(x) => {
                let v = self.expr(x)?;
                self.b.ins().ineg(v)
            }
            Expr::Call(name, args) => {
                let &(id, arity) = self
                    .program
                    .functions
                    .get(name)
                    .ok_or_else(|| format!("unknown function {name}"))?;
                if arity != args.len() {
                    return Err(format!("{name} takes {arity} arguments"));
                }
                let values = args
                    .iter()
                    .map(|a| self.expr(a))
                    .collect::<Result<Vec<_>, _>>()?;
                self.call(id, &values)
            }
            Expr::Bin(op, l, r) => {
                let (l, r) = (self.expr(l)?, self.expr(r)?);
                let cmp = |cc| Some(cc);
                let cc = match *op {
                    "==" => cmp(IntCC::Equal),
                    "!=" => cmp(IntCC::NotEqual),
                    "<" => cmp(IntCC::SignedLessThan),
                    "<=" => cmp(IntCC::SignedLessThanOrEqual),
                    ">" => cmp(IntCC::SignedGreaterThan),
                    ">=" => cmp(IntCC::SignedGreaterThanOrEqual),
                    _ => None,
                };
                if let Some(cc) = cc {
                    let c = self.b.ins().icmp(cc, l, r);
                    return Ok(self.b.ins().uextend(types::I64, c));
                }
                match *op {
                    "+" => self.b.ins().iadd(l, r),
                    "-" => self.b.ins().isub(l, r),
                    "*" => self.b.ins().imul(l, r),
                    "/" => self.b.ins().sdiv(l, r),
                    "%" => self.b.ins().srem(l, r),
                    other => return Err(format!("unknown operator {other}")),
                }
            }
        })
    }
}

/// A program using every feature: loops, calls, a global, throw/try.
pub const DEMO: &str = "
global calls = 0;
fn fib(n) {
    a = 0; b = 1;
    while n > 0 { t = a + b; a = b; b = t; n = n - 1; }
    calls = calls + 1;
    return a;
}
fn checked_div(x, y) {
    if y == 0 { throw 1000 + x; }
    return x / y;
}
fn safe_div(x, y) {
    try { return checked_div(x, y); } catch e { return -e; }
}
fn raw_div(x, y) { return x / y; }
fn uncaught(x) { throw x; }
";

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use cranelift_exn::codegen::data_value::DataValue;
    use cranelift_exn::{CallError, JitModule};

    let arch = cranelift_exn::isa::Arch::host().ok_or("unsupported host")?;
    let isa = cranelift_exn::compile::default_isa(arch)?;
    let mut module = JitModule::with_machine(cranelift_exn::native::NativeMachine::new()?, &*isa)?;
    // `throw` calls this host function, which throws into JIT handlers.
    define_raise(&mut module)?;
    let program = compile(&mut module, DEMO, &Program::default())?;
    module.finalize_definitions()?;

    let call = |name: &str, args: &[i64]| {
        let (id, _) = program.functions[name];
        let args: Vec<DataValue> = args.iter().map(|&a| DataValue::I64(a)).collect();
        match module.call_function(id, &args) {
            Ok(v) => format!("{v:?}"),
            Err(CallError::Exception { tag, payloads }) => {
                format!("uncaught exception tag{tag} payload {}", payloads[0] as i64)
            }
            Err(e) => format!("{e}"),
        }
    };
    println!("fib(40)           = {}", call("fib", &[40]));
    println!("safe_div(84, 2)   = {}", call("safe_div", &[84, 2]));
    println!("safe_div(5, 0)    = {}", call("safe_div", &[5, 0]));
    println!("raw_div(5, 0)     = {}", call("raw_div", &[5, 0]));
    println!("uncaught(7)       = {}", call("uncaught", &[7]));

    // Incremental: a second program calls the first one's code.
    let more = compile(
        &mut module,
        "fn fib_sum(n) { return fib(n) + fib(n + 1); }",
        &program,
    )?;
    module.finalize_definitions()?;
    let (id, _) = more.functions["fib_sum"];
    println!(
        "fib_sum(10)       = {:?}",
        module.call_function(id, &[DataValue::I64(10)])?
    );
    let (addr, _) = module.get_finalized_data(program.globals["calls"])?;
    // SAFETY: a live 8-byte data object of this (native) module.
    println!("calls             = {}", unsafe {
        (addr as *const i64).read()
    });
    Ok(())
}
