//! CLIF text the reader can take without exhausting memory.
//!
//! `cranelift-reader` makes every entity of a kind up to the highest number
//! the text names: `block2147483647` or `v4000000000` asks it for billions
//! of entries, and the process aborts when the allocation fails (the
//! reader's own limit of 100,000 blocks is checked only after the blocks
//! are made). [`check_entity_numbers`] rejects such numbers first, naming
//! the line, so that bad text is an error, not an abort; [`parse_functions`]
//! checks, then parses.
//!
//! The check scans the text as the reader's lexer splits it into tokens
//! (comments, quoted strings, `%names`, numbers, `#hex` and `@srcloc`s hold
//! no entities), so it flags exactly the words the reader takes for entity
//! numbers.

use cranelift_codegen::ir;
use cranelift_reader::{Location, ParseError};

/// The highest block number accepted: the reader's own limit (it refuses
/// 100,000 blocks or more, but only after making them).
pub const MAX_BLOCK_NUMBER: u32 = 99_999;

/// The highest number accepted for the other kinds the reader makes every
/// entity of up to the number named (values, stack slots, dynamic stack
/// slots, dynamic types, global values, signatures and function
/// references): a few hundred megabytes at most. Upstream's filetests name
/// at most `v24643`.
pub const MAX_ENTITY_NUMBER: u32 = (1 << 22) - 1;

/// `Err` (at the line of the first offending word) when `text` names a
/// block above [`MAX_BLOCK_NUMBER`] or another densely allocated entity
/// above [`MAX_ENTITY_NUMBER`].
pub fn check_entity_numbers(text: &str) -> Result<(), ParseError> {
    let bytes = text.as_bytes();
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b';' => i = end_of(bytes, i, |b| b != b'\n'),
            b'"' => {
                // A string runs to the next quote, across lines.
                let end = end_of(bytes, i + 1, |b| b != b'"');
                line += bytes[i..end].iter().filter(|&&b| b == b'\n').count();
                i = end + 1;
            }
            b'%' => i = end_of(bytes, i + 1, is_word_byte),
            b'#' | b'@' => i = end_of(bytes, i + 1, |b| b.is_ascii_hexdigit()),
            b'-' if bytes.get(i + 1) == Some(&b'>') => i += 2,
            b'+' | b'-' => {
                i += 1;
                // A sign before anything but a number is a token of its own.
                if numeric_at(bytes, i) {
                    i = number_end(bytes, i);
                }
            }
            b'0'..=b'9' => i = number_end(bytes, i),
            c if c.is_ascii_alphabetic() => {
                if bytes[i..].starts_with(b"NaN") || bytes[i..].starts_with(b"Inf") {
                    i = number_end(bytes, i);
                } else {
                    let end = end_of(bytes, i, is_word_byte);
                    check_word(&text[i..end], line)?;
                    i = end;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Parse CLIF `text` into functions, as `cranelift_reader::parse_functions`
/// does, after [`check_entity_numbers`].
pub fn parse_functions(text: &str) -> Result<Vec<ir::Function>, ParseError> {
    check_entity_numbers(text)?;
    cranelift_reader::parse_functions(text)
}

/// `Err` if `word`, a lexer word on `line`, is an entity the reader would
/// make too many of.
fn check_word(word: &str, line: usize) -> Result<(), ParseError> {
    let digits = word.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (prefix, number) = word.split_at(word.len() - digits);
    // The reader's `split_entity_name`: no leading zeros, a `u32`.
    if digits == 0 || (digits > 1 && number.starts_with('0')) {
        return Ok(());
    }
    let Ok(number) = number.parse::<u32>() else {
        return Ok(());
    };
    let (kind, max) = match prefix {
        // `u32::MAX` is no value or block number (the reader takes the word
        // for an identifier).
        "v" | "block" if number == u32::MAX => return Ok(()),
        "block" => ("block", MAX_BLOCK_NUMBER),
        "v" => ("value", MAX_ENTITY_NUMBER),
        "ss" => ("stack slot", MAX_ENTITY_NUMBER),
        "dss" => ("dynamic stack slot", MAX_ENTITY_NUMBER),
        "dt" => ("dynamic type", MAX_ENTITY_NUMBER),
        "gv" => ("global value", MAX_ENTITY_NUMBER),
        "sig" => ("signature", MAX_ENTITY_NUMBER),
        "fn" => ("function reference", MAX_ENTITY_NUMBER),
        _ => return Ok(()),
    };
    if number <= max {
        return Ok(());
    }
    Err(ParseError {
        location: Location { line_number: line },
        message: format!(
            "{word}: {kind} numbers above {max} are not supported (the reader makes every \
             {kind} up to the number named)"
        ),
        is_warning: false,
    })
}

/// The index of the first byte at or after `from` that `keep` rejects (or
/// the end).
fn end_of(bytes: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> usize {
    let from = from.min(bytes.len());
    bytes[from..]
        .iter()
        .position(|&b| !keep(b))
        .map_or(bytes.len(), |n| from + n)
}

/// A byte of a lexer word or `%name`.
fn is_word_byte(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// The lexer's test for a number after a sign.
fn numeric_at(bytes: &[u8], i: usize) -> bool {
    let rest = &bytes[i.min(bytes.len())..];
    matches!(rest.first(), Some(b'0'..=b'9' | b'-' | b'+' | b'.'))
        || rest.starts_with(b"NaN")
        || rest.starts_with(b"Inf")
        || rest.starts_with(b"sNaN")
}

/// The end of the number token whose first character (after any sign) is
/// at `i`: that character, then the characters the lexer's number loop
/// takes (`NaN:` and `sNaN:` payloads skip to their colon first).
fn number_end(bytes: &[u8], mut i: usize) -> usize {
    let rest = &bytes[i..];
    if rest.starts_with(b"NaN:") || rest.starts_with(b"sNaN:") {
        i = end_of(bytes, i, |b| b != b':');
    }
    end_of(bytes, i + 1, |b| {
        matches!(b, b'-' | b'_' | b'.') || b.is_ascii_alphanumeric()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_at(text: &str) -> (usize, String) {
        let e = check_entity_numbers(text).expect_err("accepted");
        (e.location.line_number, e.message)
    }

    #[test]
    fn numbers_within_the_limits_pass() {
        let text = format!(
            "function %f(i64) {{\n    ss{m} = explicit_slot 8\nblock{b}(v{m}: i64):\n    return\n}}\n",
            m = MAX_ENTITY_NUMBER,
            b = MAX_BLOCK_NUMBER
        );
        check_entity_numbers(&text).unwrap();
    }

    #[test]
    fn each_densely_made_kind_is_limited() {
        for prefix in ["v", "ss", "dss", "dt", "gv", "sig", "fn"] {
            let text = format!(
                "function %f() {{\nblock0:\n    {prefix}{} = x\n}}",
                MAX_ENTITY_NUMBER + 1
            );
            let (line, message) = error_at(&text);
            assert_eq!(line, 3, "{prefix}: {message}");
            assert!(
                message.starts_with(&format!("{prefix}{}: ", MAX_ENTITY_NUMBER + 1)),
                "{message}"
            );
        }
        let (line, message) = error_at("function %f() {\n\nblock100000:\n    return\n}");
        assert_eq!(line, 3);
        assert!(message.contains("block numbers above 99999"), "{message}");
    }

    #[test]
    fn words_the_reader_does_not_take_for_entities_pass() {
        for text in [
            // Comments, names, strings, hex sequences and source locations.
            "; block2147483647 v4000000000\n",
            "function %v4000000000() {}",
            "\"block2147483647\"",
            "#ffff @block1",
            // Numbers, including what follows a sign or a NaN payload.
            "-0xv4000000000 +NaN:0x1v4000000000",
            // Not entity numbers: leading zeros, above u32, the reserved
            // value, other prefixes.
            "v04000000000 v4294967296 v4294967295 block4294967295 u4000000000 tag4000000000",
        ] {
            check_entity_numbers(text).unwrap_or_else(|e| panic!("{text}: {}", e.message));
        }
    }

    #[test]
    fn lines_count_across_strings_and_comments() {
        let (line, _) = error_at("; one\n\"two\nthree\" ; four\n -v4000000000");
        assert_eq!(line, 4);
    }

    #[test]
    fn a_sign_before_a_word_is_its_own_token() {
        // The reader lexes `-` then the word.
        assert_eq!(error_at("x -v4000000000").0, 1);
    }

    #[test]
    fn parse_functions_rejects_before_the_reader_allocates() {
        let e = parse_functions("function %f() {\nblock2147483647:\n    return\n}\n").unwrap_err();
        assert_eq!(e.location.line_number, 2);
        let functions = parse_functions("function %f() {\nblock3:\n    return\n}\n").unwrap();
        assert_eq!(functions.len(), 1);
    }
}
