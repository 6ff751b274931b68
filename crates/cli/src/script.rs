//! Splits script text into statements at `;` outside quotes and comments.
//!
//! The shell runs statements one at a time so that the results of the statements before a
//! failing one are still printed, and its REPL needs to know when input is complete.
//!
//! Quotes: `'...'` and `"..."` with backslash escapes (ContextQL) or doubled quotes (SQL),
//! and `` `...` `` (no escapes). Comments: `//` and `--` to the end of the line, `/* ... */`. A `--` only
//! starts a comment at the start of a line or after whitespace, and when followed by
//! whitespace, so undirected patterns such as `(a)--(b)` and `(a)<--(b)` stay code.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    Quoted(char),
    LineComment,
    BlockComment,
}

/// The statements of `text`, trimmed, without their `;`. A final statement without `;` is
/// included; pieces holding only whitespace and comments are dropped.
pub fn split_statements(text: &str) -> Vec<String> {
    let scan = scan(text);
    let mut statements = Vec::new();
    let mut start = 0;
    for &end in &scan.terminators {
        push_statement(&text[start..end], &mut statements);
        start = end + 1;
    }
    push_statement(&text[start..], &mut statements);
    statements
}

/// True when `text` ends with a `;` that is outside quotes and comments (trailing whitespace
/// and comments allowed): the REPL then runs it instead of asking for more lines.
pub fn is_complete(text: &str) -> bool {
    let scan = scan(text);
    let open = matches!(scan.state, State::Quoted(_) | State::BlockComment);
    match scan.terminators.last() {
        Some(&last) => !open && !has_code(&text[last + 1..]),
        None => false,
    }
}

/// Keeps the code of `piece`, without the comments and whitespace around it: the engine
/// routes a statement by its first word.
fn push_statement(piece: &str, statements: &mut Vec<String>) {
    let scan = scan(piece);
    if let Some(start) = scan.code_start {
        statements.push(piece[start..scan.code_end].to_owned());
    }
}

/// Whether `piece` holds anything besides whitespace and comments.
fn has_code(piece: &str) -> bool {
    let scan = scan(piece);
    scan.code_start.is_some() || !scan.terminators.is_empty()
}

struct Scan {
    /// Byte offsets of the `;` that end statements.
    terminators: Vec<usize>,
    /// The state at the end of the text.
    state: State,
    /// Byte offset of the first character outside comments that is not whitespace.
    code_start: Option<usize>,
    /// Byte offset just past the last such character (or the end of an open quote).
    code_end: usize,
}

fn scan(text: &str) -> Scan {
    let bytes = text.as_bytes();
    let mut terminators = Vec::new();
    let mut state = State::Code;
    let mut code_start = None;
    let mut code_end = 0;
    let mut i = 0;
    // Only ASCII bytes change the state, so walking bytes is safe on UTF-8 text.
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        match state {
            State::Code => {
                let slashes = c == b'/' && next == Some(b'/');
                let dashes = c == b'-' && next == Some(b'-') && starts_dash_comment(bytes, i);
                if slashes || dashes {
                    state = State::LineComment;
                    i += 1;
                } else if c == b'/' && next == Some(b'*') {
                    state = State::BlockComment;
                    i += 1;
                } else if c == b';' {
                    terminators.push(i);
                } else if !c.is_ascii_whitespace() {
                    if matches!(c, b'\'' | b'"' | b'`') {
                        state = State::Quoted(c as char);
                    }
                    code_start.get_or_insert(i);
                    code_end = i + 1;
                }
            }
            State::Quoted(quote) => {
                if c == b'\\' && quote != '`' {
                    i += 1;
                } else if c == quote as u8 {
                    state = State::Code;
                }
                code_end = (i + 1).min(bytes.len());
            }
            State::LineComment => {
                if c == b'\n' {
                    state = State::Code;
                }
            }
            State::BlockComment => {
                if c == b'*' && next == Some(b'/') {
                    state = State::Code;
                    i += 1;
                }
            }
        }
        i += 1;
    }
    if matches!(state, State::Quoted(_)) {
        code_end = bytes.len();
    }
    Scan {
        terminators,
        state,
        code_start,
        code_end,
    }
}

fn starts_dash_comment(bytes: &[u8], at: usize) -> bool {
    let before_ok = at == 0 || bytes[at - 1].is_ascii_whitespace();
    let after_ok = bytes.get(at + 2).is_none_or(|b| b.is_ascii_whitespace());
    before_ok && after_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_outside_quotes() {
        let text = "CREATE (:P {name: 'a;b'}); MATCH (p) RETURN \"x;\" AS `y;`;\nSELECT 1";
        assert_eq!(
            split_statements(text),
            vec![
                "CREATE (:P {name: 'a;b'})",
                "MATCH (p) RETURN \"x;\" AS `y;`",
                "SELECT 1"
            ]
        );
    }

    #[test]
    fn handles_escapes_and_doubled_quotes() {
        let text = r"RETURN 'it\'s;'; SELECT 'it''s;'";
        assert_eq!(
            split_statements(text),
            vec![r"RETURN 'it\'s;'", "SELECT 'it''s;'"]
        );
    }

    #[test]
    fn skips_comments_and_empty_pieces() {
        let text = "-- a comment; still comment\n;; // another; one\nSELECT 1 -- one\n; /* x; y */";
        assert_eq!(split_statements(text), vec!["SELECT 1"]);
        assert_eq!(
            split_statements("/* a */ RETURN 'x' // b"),
            vec!["RETURN 'x'"]
        );
        assert_eq!(split_statements("RETURN 'open"), vec!["RETURN 'open"]);
    }

    #[test]
    fn undirected_patterns_are_not_comments() {
        let text = "MATCH (a)--(b) RETURN a; MATCH (a)<--(b) RETURN b";
        assert_eq!(split_statements(text).len(), 2);
    }

    #[test]
    fn completeness_needs_a_final_semicolon_outside_quotes() {
        assert!(!is_complete("MATCH (n)"));
        assert!(!is_complete("RETURN 'a;"));
        assert!(!is_complete("RETURN 1; RETURN 2"));
        assert!(!is_complete("RETURN 1 /* ; */"));
        assert!(is_complete("MATCH (n)\nRETURN n;"));
        assert!(is_complete("RETURN 1;  -- done\n"));
        assert!(is_complete("RETURN 'a;';"));
    }
}
