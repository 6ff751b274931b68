//! Syntax errors with a position, the expected tokens and a source snippet.

use std::fmt::Write as _;

/// A ContextQL syntax error (also used for literal-level problems found while building the
/// AST, e.g. an integer literal out of range or an invalid escape).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error at line {line}, column {column}: {message}\n{snippet}")]
pub struct ParseError {
    /// 1-based line of the error position.
    pub line: usize,
    /// 1-based column (in characters) of the error position.
    pub column: usize,
    /// Byte offset of the error position in the full input text.
    pub offset: usize,
    /// Readable names of what would have been accepted (`"RETURN"`, `"identifier"`, `"')'"`);
    /// empty for errors that are not about a missing token.
    pub expected: Vec<String>,
    /// The offending token, or `"end of input"`.
    pub found: String,
    /// The source line and a caret line under the column.
    pub snippet: String,
    /// The whole description, e.g. `expected one of RETURN, WITH, found 'RETRUN'`.
    pub message: String,
}

/// `found` when the error is at the end of the text.
pub(crate) const END_OF_INPUT: &str = "end of input";

/// Longest token echoed back in `found`.
const MAX_FOUND_CHARS: usize = 40;
/// Longest source line shown whole in the snippet; longer lines are cut around the column.
const MAX_SNIPPET_CHARS: usize = 120;

impl ParseError {
    /// An error at `offset` with a free-form message.
    pub(crate) fn at(text: &str, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError::new(text, offset, message.into(), Vec::new())
    }

    /// An error at `offset`; `found` is the token at that position.
    pub(crate) fn new(
        text: &str,
        offset: usize,
        message: String,
        expected: Vec<String>,
    ) -> ParseError {
        let offset = clamp_to_boundary(text, offset);
        let (line, column, line_text) = locate(text, offset);
        ParseError {
            line,
            column,
            offset,
            expected,
            found: token_at(text, offset),
            snippet: snippet(line_text, column),
            message,
        }
    }

    /// `'tok'`, or `end of input` unquoted.
    pub(crate) fn found_display(found: &str) -> String {
        if found == END_OF_INPUT {
            found.to_string()
        } else {
            format!("'{found}'")
        }
    }
}

/// The largest char boundary not after `offset` (offsets come from pest and are boundaries,
/// but this keeps slicing total).
fn clamp_to_boundary(text: &str, offset: usize) -> usize {
    let mut o = offset.min(text.len());
    while !text.is_char_boundary(o) {
        o -= 1;
    }
    o
}

/// 1-based line and column of `offset`, and the text of that line.
fn locate(text: &str, offset: usize) -> (usize, usize, &str) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let column = text[line_start..offset].chars().count() + 1;
    let line_text = text[line_start..line_end].trim_end_matches('\r');
    (line, column, line_text)
}

/// The line and a caret under `column`; long lines are cut to a window around the column.
pub fn snippet(line_text: &str, column: usize) -> String {
    let chars: Vec<char> = line_text.chars().collect();
    // At most one past the line's end, whatever the caller says.
    let col0 = column.saturating_sub(1).min(chars.len());
    let (from, to) = if chars.len() <= MAX_SNIPPET_CHARS {
        (0, chars.len())
    } else {
        let half = MAX_SNIPPET_CHARS / 2;
        let from = col0.saturating_sub(half);
        (from, (from + MAX_SNIPPET_CHARS).min(chars.len()))
    };
    let mut out = String::new();
    let mut caret_pad = String::new();
    if from > 0 {
        out.push_str("...");
        caret_pad.push_str("   ");
    }
    out.extend(&chars[from..to]);
    if to < chars.len() {
        out.push_str("...");
    }
    // Reuse tabs so the caret lines up however the terminal renders them.
    for &c in chars.iter().take(col0.min(chars.len())).skip(from) {
        caret_pad.push(if c == '\t' { '\t' } else { ' ' });
    }
    for _ in chars.len()..col0 {
        caret_pad.push(' ');
    }
    let _ = write!(out, "\n{caret_pad}^");
    out
}

/// The token starting at `offset`, for "found '...'" (never longer than MAX_FOUND_CHARS).
pub(crate) fn token_at(text: &str, offset: usize) -> String {
    let rest = &text[clamp_to_boundary(text, offset)..];
    let Some(first) = rest.chars().next() else {
        return END_OF_INPUT.to_string();
    };
    let len = if first.is_alphanumeric() || first == '_' {
        rest.find(|c: char| {
            !(c.is_alphanumeric() || c == '_' || (first.is_ascii_digit() && c == '.'))
        })
        .unwrap_or(rest.len())
    } else if first == '\'' || first == '"' || first == '`' {
        quoted_len(rest, first)
    } else {
        const TWO: [&str; 11] = [
            "<>", "<=", ">=", "!=", "=~", "..", "->", "<-", "+=", "--", "/*",
        ];
        if TWO.iter().any(|t| rest.starts_with(t)) {
            2
        } else {
            first.len_utf8()
        }
    };
    let tok = &rest[..len];
    if tok.chars().count() > MAX_FOUND_CHARS {
        let cut: String = tok.chars().take(MAX_FOUND_CHARS).collect();
        format!("{cut}...")
    } else {
        tok.to_string()
    }
}

/// Byte length of the quoted token at the start of `s` (to the end of `s` if unterminated).
fn quoted_len(s: &str, quote: char) -> usize {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote != '`' {
            escaped = true;
        } else if c == quote {
            return i + c.len_utf8();
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_has_caret_under_column() {
        let e = ParseError::at("MATCH (n) RETRUN n", 10, "boom");
        assert_eq!((e.line, e.column), (1, 11));
        assert_eq!(e.found, "RETRUN");
        assert_eq!(e.snippet, "MATCH (n) RETRUN n\n          ^");
    }

    #[test]
    fn second_line_and_end_of_input() {
        let text = "MATCH (n)\nRETURN";
        let e = ParseError::at(text, text.len(), "boom");
        assert_eq!((e.line, e.column), (2, 7));
        assert_eq!(e.found, END_OF_INPUT);
        assert_eq!(e.snippet, "RETURN\n      ^");
    }

    #[test]
    fn long_lines_are_windowed() {
        let text = format!("{}x{}", "a ".repeat(200), " b".repeat(200));
        let e = ParseError::at(&text, 400, "boom");
        let mut lines = e.snippet.lines();
        let (src, caret) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        assert!(src.starts_with("...") && src.ends_with("..."));
        assert_eq!(src.chars().nth(caret.len() - 1), Some('x'));
    }

    #[test]
    fn found_tokens() {
        assert_eq!(token_at("'abc' x", 0), "'abc'");
        assert_eq!(token_at("<> 1", 0), "<>");
        assert_eq!(token_at("12.5e3", 0), "12.5e3");
        assert_eq!(token_at("é", 1), "é");
    }
}
