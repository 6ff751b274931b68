//! Splitting a script into statements and routing each to ContextQL or SQL.

/// The language a statement is run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    ContextQL,
    Sql,
}

/// One statement of a script: its text and byte offset in the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece<'a> {
    pub text: &'a str,
    pub offset: usize,
}

/// Splits a script at `;` outside string literals, quoted identifiers and comments. Each
/// piece is trimmed of the whitespace and comments around it; pieces holding nothing else are
/// dropped. A final statement without `;` is included.
///
/// Quotes: `'...'` and `"..."` with backslash escapes (ContextQL) or doubled quotes (SQL),
/// and `` `...` `` (no escapes). Comments: `//` and `--` to the end of the line, `/* ... */`.
/// A `--` starts a comment only at the start of a line or after whitespace, and when followed
/// by whitespace, so undirected patterns such as `(a)--(b)` and `(a)<--(b)` stay code.
pub fn split(script: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for end in scan(script).terminators {
        push_piece(script, start, end, &mut pieces);
        start = end + 1;
    }
    push_piece(script, start, script.len(), &mut pieces);
    pieces
}

/// True when `text` ends with a `;` outside quotes and comments (trailing whitespace and
/// comments allowed): an interactive shell then runs it instead of asking for more lines.
pub fn is_complete(text: &str) -> bool {
    let scan = scan(text);
    let open = matches!(scan.state, State::Quoted(_) | State::BlockComment);
    match scan.terminators.last() {
        Some(&last) => !open && scan_code(&text[last + 1..]).is_none(),
        None => false,
    }
}

fn push_piece<'a>(script: &'a str, start: usize, end: usize, pieces: &mut Vec<Piece<'a>>) {
    let piece = &script[start..end];
    if let Some((from, to)) = scan_code(piece) {
        pieces.push(Piece {
            text: &piece[from..to],
            offset: start + from,
        });
    }
}

/// The byte range of `piece` from its first to its last character of code, if it has any.
fn scan_code(piece: &str) -> Option<(usize, usize)> {
    let scan = scan(piece);
    if !scan.terminators.is_empty() {
        return Some((0, piece.len()));
    }
    scan.code_start.map(|start| (start, scan.code_end))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    Quoted(u8),
    LineComment,
    BlockComment,
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
    // Whether the statement being scanned has code yet: no statement of either language
    // starts with `-`, so there `--` starts a comment whatever follows it (`-->`, `-----`).
    let mut in_statement = false;
    let mut i = 0;
    // Only ASCII bytes change the state, so walking bytes is safe on UTF-8 text.
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        match state {
            State::Code => {
                let slashes = c == b'/' && next == Some(b'/');
                let dashes = c == b'-'
                    && next == Some(b'-')
                    && (!in_statement || starts_dash_comment(bytes, i));
                if slashes || dashes {
                    state = State::LineComment;
                    i += 1;
                } else if c == b'/' && next == Some(b'*') {
                    state = State::BlockComment;
                    i += 1;
                } else if c == b';' {
                    terminators.push(i);
                    in_statement = false;
                } else if !c.is_ascii_whitespace() {
                    in_statement = true;
                    if matches!(c, b'\'' | b'"' | b'`') {
                        state = State::Quoted(c);
                    }
                    code_start.get_or_insert(i);
                    code_end = i + 1;
                }
            }
            State::Quoted(quote) => {
                if c == b'\\' && quote != b'`' {
                    i += 1;
                } else if c == quote {
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

/// The first `n` words of `text` in upper case, skipping comments; `(` counts as a word.
fn words(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while out.len() < n {
        rest = rest.trim_start();
        if rest.starts_with("--") || rest.starts_with("//") {
            rest = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
            continue;
        }
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map(|(_, r)| r).unwrap_or("");
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        if c == '(' {
            out.push("(".to_string());
            rest = &rest[1..];
            continue;
        }
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            out.push(c.to_string());
            rest = &rest[c.len_utf8()..];
            continue;
        }
        out.push(rest[..len].to_ascii_uppercase());
        rest = &rest[len..];
    }
    out
}

/// What the first words of a statement say about its language.
enum Shape {
    Is(Language),
    /// A clause chain (`WITH 1 AS x RETURN x`, `DELETE ...`): ContextQL when it parses as such.
    Chain,
}

/// Routes one statement by its shape (DESIGN.md, "ContextQL").
pub fn route(statement: &str) -> Language {
    match shape(statement) {
        Shape::Is(language) => language,
        Shape::Chain if contextql::parse_statement(statement).is_ok() => Language::ContextQL,
        Shape::Chain => Language::Sql,
    }
}

fn shape(statement: &str) -> Shape {
    let mut w = words(statement, 6);
    // EXPLAIN [ANALYZE] [VERBOSE] routes by what follows.
    if w.first().map(String::as_str) == Some("EXPLAIN") {
        w.remove(0);
        while matches!(w.first().map(String::as_str), Some("ANALYZE" | "VERBOSE")) {
            w.remove(0);
        }
    }
    let first = w.first().map(String::as_str).unwrap_or("");
    let second = w.get(1).map(String::as_str).unwrap_or("");
    Shape::Is(match first {
        "MATCH" | "OPTIONAL" | "UNWIND" | "MERGE" | "DETACH" | "RETURN" | "AT" => {
            Language::ContextQL
        }
        "CREATE" if matches!(second, "(" | "NODE" | "EDGE" | "VECTOR") => Language::ContextQL,
        "DROP" if matches!(second, "NODE" | "EDGE" | "VECTOR") => Language::ContextQL,
        "COPY" if w.get(2).map(String::as_str) == Some("FROM") => Language::ContextQL,
        "COMPACT" | "VACUUM" => Language::ContextQL,
        "SHOW" if matches!(second, "INDEXES" | "VECTOR") => Language::ContextQL,
        // A ContextQL chain cannot begin with SET (nothing is bound yet): a statement that
        // does is SQL's `SET option = value`.
        "SET" => Language::Sql,
        "WITH" | "DELETE" => return Shape::Chain,
        _ => Language::Sql,
    })
}

/// A statement routed to its language, with the ContextQL already parsed.
#[derive(Debug)]
pub enum Routed {
    ContextQL(contextql::ast::Statement),
    Sql,
}

/// Routes a statement and parses it if it is ContextQL, once: a clause chain that routing
/// had to parse to decide is not parsed again.
pub fn parse(statement: &str) -> Result<Routed, contextql::ParseError> {
    match shape(statement) {
        Shape::Is(Language::Sql) => Ok(Routed::Sql),
        Shape::Is(Language::ContextQL) => {
            contextql::parse_statement(statement).map(Routed::ContextQL)
        }
        Shape::Chain => Ok(match contextql::parse_statement(statement) {
            Ok(ast) => Routed::ContextQL(ast),
            Err(_) => Routed::Sql,
        }),
    }
}

/// Moves a (line, column) within a piece to the whole script.
pub fn script_position(
    script: &str,
    offset: usize,
    (line, column): (usize, usize),
) -> (usize, usize) {
    let before = &script[..offset.min(script.len())];
    let lines_before = before.matches('\n').count();
    if line == 1 {
        let col_before = before
            .rsplit('\n')
            .next()
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (1 + lines_before, column + col_before)
    } else {
        (line + lines_before, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_shape() {
        assert_eq!(route("MATCH (n) RETURN n"), Language::ContextQL);
        assert_eq!(route("  optional match (n) return n"), Language::ContextQL);
        assert_eq!(route("CREATE (:A)"), Language::ContextQL);
        assert_eq!(
            route("CREATE NODE TABLE A (id BIGINT PRIMARY KEY)"),
            Language::ContextQL
        );
        assert_eq!(route("CREATE TABLE t (a INT)"), Language::Sql);
        assert_eq!(route("DROP TABLE t"), Language::Sql);
        assert_eq!(route("DROP EDGE TABLE T"), Language::ContextQL);
        assert_eq!(route("show indexes"), Language::ContextQL);
        assert_eq!(route("SHOW VECTOR INDEXES"), Language::ContextQL);
        assert_eq!(route("SHOW datafusion.execution.batch_size"), Language::Sql);
        assert_eq!(route("COPY Package FROM 'x.parquet'"), Language::ContextQL);
        assert_eq!(route("COPY t TO 'x.parquet'"), Language::Sql);
        assert_eq!(route("SELECT 1"), Language::Sql);
        assert_eq!(route("EXPLAIN MATCH (n:A) RETURN n"), Language::ContextQL);
        assert_eq!(route("EXPLAIN SELECT 1"), Language::Sql);
        assert_eq!(route("-- c\nMATCH (n:A) RETURN n"), Language::ContextQL);
        assert_eq!(
            route("AT SNAPSHOT 1 MATCH (n:A) RETURN n"),
            Language::ContextQL
        );
    }

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = "SELECT ';' ; -- x;y\n MATCH (n) RETURN 'a;b' ; /* ; */ ;";
        let p: Vec<&str> = split(s).iter().map(|p| p.text).collect();
        assert_eq!(p, vec!["SELECT ';'", "MATCH (n) RETURN 'a;b'"]);
    }

    #[test]
    fn undirected_patterns_are_not_comments() {
        let s = "MATCH (a)--(b) RETURN a; SELECT 1 -- a comment; x\nSELECT 2";
        let p: Vec<&str> = split(s).iter().map(|p| p.text).collect();
        assert_eq!(
            p,
            vec![
                "MATCH (a)--(b) RETURN a",
                "SELECT 1 -- a comment; x\nSELECT 2"
            ]
        );
        assert_eq!(split("MATCH (a)<--(b) RETURN b; RETURN 1").len(), 2);
        // Before a statement's first code, `--` is a comment whatever follows it.
        assert_eq!(
            texts(
                "SELECT 1; --> a note
"
            ),
            vec!["SELECT 1"]
        );
        assert_eq!(
            texts(
                "SELECT 1;
-------"
            ),
            vec!["SELECT 1"]
        );
        assert_eq!(
            texts(
                "-->x
SELECT 2"
            ),
            vec!["SELECT 2"]
        );
    }

    #[test]
    fn positions_move_to_the_script() {
        let s = "SELECT 1;\nMATCH x";
        let pieces = split(s);
        // Pieces start at their first character of code.
        assert_eq!(pieces[1].text, "MATCH x");
        assert_eq!(script_position(s, pieces[1].offset, (1, 7)), (2, 7));
        assert_eq!(script_position(s, 9, (1, 1)), (1, 10));
    }

    fn texts(script: &str) -> Vec<&str> {
        split(script).iter().map(|p| p.text).collect()
    }

    #[test]
    fn pieces_keep_quotes_and_escapes_whole() {
        let text = "CREATE (:P {name: 'a;b'}); MATCH (p) RETURN \"x;\" AS `y;`;\nSELECT 1";
        assert_eq!(
            texts(text),
            vec![
                "CREATE (:P {name: 'a;b'})",
                "MATCH (p) RETURN \"x;\" AS `y;`",
                "SELECT 1"
            ]
        );
        let text = r"RETURN 'it\'s;'; SELECT 'it''s;'";
        assert_eq!(texts(text), vec![r"RETURN 'it\'s;'", "SELECT 'it''s;'"]);
        assert_eq!(texts("RETURN 'open"), vec!["RETURN 'open"]);
    }

    #[test]
    fn pieces_of_only_comments_are_dropped() {
        let text = "-- a comment; still comment\n;; // another; one\nSELECT 1 -- one\n; /* x; y */";
        assert_eq!(texts(text), vec!["SELECT 1"]);
        assert_eq!(texts("/* a */ RETURN 'x' // b"), vec!["RETURN 'x'"]);
        let pieces = split("  -- c\n  RETURN 1");
        assert_eq!(pieces[0].offset, "  -- c\n  ".len());
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
