//! A small in-memory driver for the unit tests of the kinds in this crate:
//! parse a file, then run each of its `test` lines as the runner would
//! (verifier first when the kind needs it; once per target when it needs an
//! ISA).

use anyhow::{Context as _, anyhow, bail};
use cranelift_codegen::print_errors::pretty_verifier_error;
use cranelift_codegen::settings::FlagsOrIsa;
use cranelift_codegen::verify_function;
use cranelift_reader::{IsaSpec, ParseOptions, parse_test};

use crate::bless::FileUpdate;
use crate::kinds::{RunEnv, new_subtest};
use crate::subtest::SourceFile;

/// Run every test of the CLIF file `text`.
pub(crate) fn run_text(text: &str) -> anyhow::Result<()> {
    let file_path = "<memory>.clif";
    let testfile = parse_test(text, ParseOptions::default()).map_err(|e| anyhow!("parse: {e}"))?;
    let file_update = FileUpdate::new(file_path);
    let flags = match &testfile.isa_spec {
        IsaSpec::None(flags) => flags,
        IsaSpec::Some(isas) => isas.last().context("no ISA")?.flags(),
    };
    let unique = testfile.isa_spec.unique_isa();
    let file = SourceFile {
        testfile: &testfile,
        update: &file_update,
        path: file_path,
        text,
    };
    for command in &testfile.commands {
        let test = new_subtest(command, &RunEnv::default())?
            .with_context(|| format!("test {} is not available here", command.command))?;
        if test.needs_verifier() {
            for (func, _) in &testfile.functions {
                let fisa = FlagsOrIsa { flags, isa: unique };
                verify_function(func, fisa)
                    .map_err(|e| anyhow!("{}", pretty_verifier_error(func, None, e)))?;
            }
        }
        match (&testfile.isa_spec, test.needs_isa()) {
            (IsaSpec::Some(isas), true) => {
                for isa in isas {
                    test.run_target(&file, FlagsOrIsa::from(&**isa))?;
                }
            }
            (IsaSpec::None(_), true) => bail!("test {} requires an ISA", test.name()),
            (_, false) => test.run_target(&file, FlagsOrIsa { flags, isa: unique })?,
        }
    }
    Ok(())
}

/// Run `text` as [`run_text`] does, expecting it to fail: its error in full
/// (`{:#}`, with every context).
pub(crate) fn run_text_error(text: &str) -> String {
    match run_text(text) {
        Ok(()) => panic!("the file passed, but was expected to fail:\n{text}"),
        Err(e) => format!("{e:#}"),
    }
}

/// Check that `text` passes as written, and that with each `(from, to)` of
/// `edits` applied in turn it fails with an error that contains every
/// string of `wanted`. Each `from` must occur in the text, so that an edit
/// cannot silently miss.
pub(crate) fn assert_fails_with(text: &str, edits: &[(&str, &str)], wanted: &[&str]) {
    if let Err(e) = run_text(text) {
        panic!("the file fails before the edits: {e:#}\n{text}");
    }
    let mut edited = text.to_string();
    for (from, to) in edits {
        assert!(
            edited.contains(from),
            "{from:?} is not in the file:\n{edited}"
        );
        edited = edited.replace(from, to);
    }
    let err = run_text_error(&edited);
    for want in wanted {
        assert!(err.contains(want), "{want:?} is not in the error:\n{err}");
    }
}
