//! A lexical pre-scan run before pest: it rejects nesting deeper than
//! [`MAX_NESTING_DEPTH`](crate::MAX_NESTING_DEPTH) before pest can recurse into it, measures
//! how deep the input nests (to pick the stack the parse runs on), and records where whitespace
//! and comments are (to trim spans). It knows just enough of the lexical grammar (strings,
//! backquoted names, comments) to agree with pest on what is code.

use crate::error::ParseError;
use crate::parser::{MAX_EXPRESSION_DEPTH, MAX_NESTING_DEPTH, Result};

/// Maximal runs `[start, end)` of whitespace and comments, sorted. pest spans of rules that
/// end in an optional part include the whitespace skipped before it; spans are trimmed with
/// this so that they (and `ProjectionItem::text`) end at the last real token.
pub(crate) struct Trivia {
    runs: Vec<(usize, usize)>,
}

impl Trivia {
    fn push(&mut self, start: usize, end: usize) {
        match self.runs.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => self.runs.push((start, end)),
        }
    }

    /// `end` moved back over trailing whitespace and comments, but not before `start`.
    pub(crate) fn trimmed_end(&self, start: usize, end: usize) -> usize {
        let i = self.runs.partition_point(|r| r.1 < end);
        match self.runs.get(i) {
            Some(&(s, e)) if s < end && end <= e => s.max(start),
            _ => end,
        }
    }
}

/// What the pre-scan learned about the input.
pub(crate) struct Scan {
    pub(crate) trivia: Trivia,
    /// Deepest bracket nesting.
    pub(crate) max_brackets: usize,
    /// Number of CASE keywords: an upper bound of CASE nesting that, unlike the heuristic
    /// END matching, cannot be fooled.
    pub(crate) case_words: usize,
    /// Longest run of consecutive `NOT` / `-` / `+` tokens.
    pub(crate) max_unary_run: usize,
}

/// Scans `text`; fails on nesting deeper than [`MAX_NESTING_DEPTH`] or a run of more than
/// [`MAX_EXPRESSION_DEPTH`] unary operators.
pub(crate) fn prescan(text: &str) -> Result<Scan> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        trivia: Trivia { runs: Vec::new() },
        brackets: 0,
        max_brackets: 0,
        cases: 0,
        case_words: 0,
        unary_run: 0,
        unary_start: 0,
        max_unary_run: 0,
        prev_significant: 0,
    };
    let mut i = 0;
    while i < s.b.len() {
        i = s.token(i)?;
    }
    Ok(Scan {
        trivia: s.trivia,
        max_brackets: s.max_brackets,
        case_words: s.case_words,
        max_unary_run: s.max_unary_run,
    })
}

struct Scanner<'t> {
    text: &'t str,
    b: &'t [u8],
    trivia: Trivia,
    brackets: usize,
    max_brackets: usize,
    /// CASE nesting, matching END heuristically (see `word`).
    cases: usize,
    case_words: usize,
    unary_run: usize,
    unary_start: usize,
    max_unary_run: usize,
    /// First byte of the previous token that was not whitespace or a comment.
    prev_significant: u8,
}

impl Scanner<'_> {
    /// Scans the token at `i` and returns where the next one starts.
    fn token(&mut self, i: usize) -> Result<usize> {
        let b = self.b;
        let c = b[i];
        let mut unary = false;
        let next = match c {
            b' ' | b'\t' | b'\r' | b'\n' | 0x0B | 0x0C => return Ok(self.trivia_to(i, i + 1)),
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = find_byte(b, i, b'\n').unwrap_or(b.len());
                return Ok(self.trivia_to(i, end));
            }
            b'/' if b.get(i + 1) == Some(&b'*') => match find_seq(b, i + 2, b"*/") {
                Some(j) => return Ok(self.trivia_to(i, j + 2)),
                // Unterminated: not a comment for pest either.
                None => b.len(),
            },
            b'\'' | b'"' => string_end(b, i),
            b'`' => find_byte(b, i + 1, b'`').map_or(b.len(), |j| j + 1),
            b'(' | b'[' | b'{' => {
                self.brackets += 1;
                self.max_brackets = self.max_brackets.max(self.brackets);
                i + 1
            }
            b')' | b']' | b'}' => {
                self.brackets = self.brackets.saturating_sub(1);
                i + 1
            }
            b'-' | b'+' => {
                unary = true;
                i + 1
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = word_end(b, i);
                unary = self.word(i, end);
                end
            }
            _ => i + 1,
        };
        self.prev_significant = c;
        self.count_unary(unary, i)?;
        if self.brackets + self.cases > MAX_NESTING_DEPTH {
            return Err(ParseError::at(
                self.text,
                i,
                format!("nesting deeper than {MAX_NESTING_DEPTH}"),
            ));
        }
        Ok(next)
    }

    fn trivia_to(&mut self, start: usize, end: usize) -> usize {
        self.trivia.push(start, end);
        end
    }

    /// Tracks CASE/END nesting; returns whether the word is `NOT`.
    fn word(&mut self, start: usize, end: usize) -> bool {
        let word = &self.b[start..end];
        let is = |kw: &[u8]| word.eq_ignore_ascii_case(kw);
        if is(b"case") {
            self.case_words += 1;
        }
        // `n.end`, `$end`, `:End`, `{end: 1}` are names, not CASE/END.
        let name_position = matches!(self.prev_significant, b'.' | b'$' | b':' | b'|')
            || next_significant(self.b, end) == Some(b':');
        if name_position {
            return false;
        }
        if is(b"case") {
            self.cases += 1;
        } else if is(b"end") {
            self.cases = self.cases.saturating_sub(1);
        }
        is(b"not")
    }

    /// Each unary operator is one level of the expression tree (and of Pratt recursion): fail
    /// before pest has to chew through a huge run.
    fn count_unary(&mut self, unary: bool, at: usize) -> Result<()> {
        if !unary {
            self.unary_run = 0;
            return Ok(());
        }
        if self.unary_run == 0 {
            self.unary_start = at;
        }
        self.unary_run += 1;
        self.max_unary_run = self.max_unary_run.max(self.unary_run);
        if self.unary_run > MAX_EXPRESSION_DEPTH {
            return Err(ParseError::at(
                self.text,
                self.unary_start,
                format!("expression nested deeper than {MAX_EXPRESSION_DEPTH} operators"),
            ));
        }
        Ok(())
    }
}

/// End of the quoted string starting at `start` (backslash escapes skipped), or of the text.
fn string_end(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() && b[i] != quote {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    (i + 1).min(b.len())
}

/// End of the name starting at `start`; non-ASCII bytes count as name characters.
fn word_end(b: &[u8], start: usize) -> usize {
    let len = b[start..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80))
        .unwrap_or(b.len() - start);
    start + len
}

/// The next byte at or after `from` that is not ASCII whitespace.
fn next_significant(b: &[u8], from: usize) -> Option<u8> {
    b.get(from..)?
        .iter()
        .copied()
        .find(|c| !c.is_ascii_whitespace())
}

fn find_byte(b: &[u8], from: usize, needle: u8) -> Option<usize> {
    b.get(from..)?
        .iter()
        .position(|&x| x == needle)
        .map(|p| from + p)
}

fn find_seq(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Scan {
        match prescan(text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn trims_whitespace_and_comments() {
        let text = "RETURN a /* x */ // y\n  ";
        let s = scan(text);
        assert_eq!(s.trivia.trimmed_end(7, text.len()), 8);
        assert_eq!(s.trivia.trimmed_end(7, 8), 8);
        // Never before the start of the span.
        assert_eq!(s.trivia.trimmed_end(9, text.len()), 9);
    }

    #[test]
    fn strings_names_and_comments_hide_brackets_and_words() {
        let s = scan(r"RETURN '(\'(' + `((` /* ( */ // (");
        assert_eq!(s.max_brackets, 0);
        let s = scan("RETURN 'CASE' + `case` + n.case + $case + {case: 1}");
        // Name positions still count towards the (conservative) CASE word total.
        assert_eq!((s.case_words, s.max_brackets), (3, 1));
    }

    #[test]
    fn measures_nesting_and_unary_runs() {
        let s = scan("RETURN [(1)], CASE WHEN NOT NOT - 1 THEN 2 END");
        assert_eq!((s.max_brackets, s.case_words, s.max_unary_run), (2, 1, 3));
    }
}
