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

/// Splits at `;` outside string literals, quoted identifiers and comments. Empty pieces
/// (only whitespace and comments) are dropped.
pub fn split(script: &str) -> Vec<Piece<'_>> {
    let bytes = script.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' && quote != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            // `--` starts a SQL comment only after whitespace and before whitespace, so
            // undirected patterns such as `(a)--(b)` stay code.
            b'-' if bytes.get(i + 1) == Some(&b'-')
                && (i == 0 || bytes[i - 1].is_ascii_whitespace())
                && bytes.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b';' => {
                push_piece(script, start, i, &mut pieces);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push_piece(script, start, script.len(), &mut pieces);
    pieces
}

fn push_piece<'a>(script: &'a str, start: usize, end: usize, pieces: &mut Vec<Piece<'a>>) {
    let end = end.min(script.len());
    if start >= end {
        return;
    }
    let text = &script[start..end];
    if words(text, 1).is_empty() {
        return;
    }
    pieces.push(Piece {
        text,
        offset: start,
    });
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

/// Routes one statement by its shape (DESIGN.md, "ContextQL").
pub fn route(statement: &str) -> Language {
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
    match first {
        "MATCH" | "OPTIONAL" | "UNWIND" | "MERGE" | "DETACH" | "RETURN" | "AT" => {
            Language::ContextQL
        }
        "CREATE" if matches!(second, "(" | "NODE" | "EDGE" | "VECTOR") => Language::ContextQL,
        "DROP" if matches!(second, "NODE" | "EDGE" | "VECTOR") => Language::ContextQL,
        "COPY" if w.get(2).map(String::as_str) == Some("FROM") => Language::ContextQL,
        // A clause chain (`WITH 1 AS x RETURN x`, `SET ...`) is ContextQL when it parses as such.
        "WITH" | "SET" | "DELETE" => {
            if contextql::parse_statement(statement).is_ok() {
                Language::ContextQL
            } else {
                Language::Sql
            }
        }
        _ => Language::Sql,
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
        let p: Vec<&str> = split(s).iter().map(|p| p.text.trim()).collect();
        assert_eq!(p, vec!["SELECT ';'", "-- x;y\n MATCH (n) RETURN 'a;b'"]);
    }

    #[test]
    fn undirected_patterns_are_not_comments() {
        let s = "MATCH (a)--(b) RETURN a; SELECT 1 -- a comment; x\nSELECT 2";
        let p: Vec<&str> = split(s).iter().map(|p| p.text.trim()).collect();
        assert_eq!(
            p,
            vec![
                "MATCH (a)--(b) RETURN a",
                "SELECT 1 -- a comment; x\nSELECT 2"
            ]
        );
    }

    #[test]
    fn positions_move_to_the_script() {
        let s = "SELECT 1;\nMATCH x";
        let pieces = split(s);
        assert_eq!(script_position(s, pieces[1].offset, (2, 3)), (2, 3));
        assert_eq!(script_position(s, 9, (1, 1)), (1, 10));
    }
}
