//! Engine errors: each says whose fault it is, which maps to a stable status.

use std::fmt;

/// Whose fault an error is. The discriminants are stable (they become exit and wire codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The statement text does not parse.
    Syntax = 1,
    /// The statement parses but cannot be planned (unknown table, bound variable, type...).
    Plan = 2,
    /// Bad data met while running (constraint, conversion, missing file...).
    Execution = 3,
    /// A named limit was hit (memory budget, traversal depth, ...).
    Resource = 4,
    /// A concurrent commit won; the statement may be retried.
    Conflict = 5,
    /// A bug in ContextDB.
    Internal = 6,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax error",
            ErrorKind::Plan => "plan error",
            ErrorKind::Execution => "execution error",
            ErrorKind::Resource => "resource error",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal error",
        }
    }
}

/// An error from one statement, with its position in the statement text when known.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// 1-based (line, column) in the submitted text.
    pub position: Option<(usize, usize)>,
    /// Extra lines shown under the message (a snippet with a caret).
    pub detail: Option<String>,
    /// The error as DataFusion wrote it, when it raised it (`Error during planning: ...`):
    /// for clients and tests that compare against DataFusion's own text.
    pub datafusion_text: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            position: None,
            detail: None,
            datafusion_text: None,
        }
    }

    pub fn plan(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Plan, message)
    }

    pub fn execution(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Execution, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn at(mut self, position: (usize, usize)) -> Self {
        self.position = Some(position);
        self
    }

    /// A SQL syntax error located in `text`, its statement: sqlparser's "at Line: L, Column:
    /// C" becomes the error's position (the end of the text when the input ended too soon),
    /// with the line and a caret under it, as ContextQL's syntax errors have.
    pub(crate) fn located_in(mut self, text: &str) -> Self {
        if self.kind != ErrorKind::Syntax || self.detail.is_some() {
            return self;
        }
        if self.position.is_none() {
            if let Some((at, line, column)) = sqlparser_location(&self.message) {
                self.position = Some((line, column));
                let tail = if self.message.ends_with("\")") {
                    "\")"
                } else {
                    ""
                };
                self.message = format!("{}{tail}", &self.message[..at]);
            } else if self.message.contains("found: EOF") {
                let line = text.lines().count().max(1);
                let column = text.lines().last().map_or(0, |l| l.chars().count()) + 1;
                self.position = Some((line, column));
            }
        }
        // A position must lie in the text (a message may quote user text that looks like
        // one): on a line of it, at most one past its last character.
        if let Some((line, column)) = self.position {
            match line.checked_sub(1).and_then(|i| text.lines().nth(i)) {
                Some(line_text) if column >= 1 && column <= line_text.chars().count() + 1 => {
                    self.detail = Some(contextql::snippet(line_text, column));
                }
                _ => self.position = None,
            }
        }
        self
    }

    /// The error of a statement that starts at byte `offset` of `script`, with its position
    /// counted from the start of the script.
    pub fn moved_to(mut self, script: &str, offset: usize) -> Self {
        if let Some(p) = self.position {
            self.position = Some(crate::route::script_position(script, offset, p));
        }
        self
    }
}

/// sqlparser's location at the very end of its message (`... at Line: L, Column: C` then
/// nothing, or the `")` of DataFusion's wrapping): where it starts, and the line and column.
/// Only the end is read, so user text quoted earlier in the message cannot pose as one.
fn sqlparser_location(message: &str) -> Option<(usize, usize, usize)> {
    let body = message.strip_suffix("\")").unwrap_or(message);
    let at = body.rfind(" at Line: ")?;
    let (line, column) = body[at + " at Line: ".len()..].split_once(", Column: ")?;
    let line = line.parse::<usize>().ok()?;
    let column = column.parse::<usize>().ok()?;
    Some((at, line, column))
}

impl Error {
    /// This error inside DataFusion (from a table provider), keeping a resource error a
    /// resource error.
    pub fn into_datafusion(self) -> datafusion::error::DataFusionError {
        use datafusion::error::DataFusionError as D;
        match self.kind {
            ErrorKind::Resource => D::ResourcesExhausted(self.message),
            ErrorKind::Plan => D::Plan(self.message),
            ErrorKind::Internal => D::Internal(self.message),
            _ => D::Execution(self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.as_str())?;
        if let Some((line, column)) = self.position {
            write!(f, " at line {line}, column {column}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, "\n{detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<contextql::ParseError> for Error {
    fn from(e: contextql::ParseError) -> Self {
        Error {
            kind: ErrorKind::Syntax,
            message: e.message.clone(),
            position: Some((e.line, e.column)),
            detail: Some(e.snippet.clone()),
            datafusion_text: None,
        }
    }
}

impl From<iceberg::Error> for Error {
    fn from(e: iceberg::Error) -> Self {
        let kind = match e.kind() {
            iceberg::ErrorKind::CatalogCommitConflicts => ErrorKind::Conflict,
            iceberg::ErrorKind::DataInvalid
            | iceberg::ErrorKind::TableNotFound
            | iceberg::ErrorKind::NamespaceNotFound
            | iceberg::ErrorKind::TableAlreadyExists
            | iceberg::ErrorKind::NamespaceAlreadyExists
            | iceberg::ErrorKind::FeatureUnsupported => ErrorKind::Execution,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, format!("{e:#}"))
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        let text = e.strip_backtrace();
        let e = e.find_root();
        let kind = match e {
            D::SQL(..) => ErrorKind::Syntax,
            D::Plan(..) | D::SchemaError(..) | D::NotImplemented(..) => ErrorKind::Plan,
            D::ResourcesExhausted(..) => ErrorKind::Resource,
            D::Internal(..) => ErrorKind::Internal,
            _ => ErrorKind::Execution,
        };
        let message = match e {
            D::Plan(m) | D::Execution(m) | D::NotImplemented(m) => m.clone(),
            // DataFusion's memory pools: the statement's own (`statement_memory_bytes`).
            D::ResourcesExhausted(m) => format!(
                "{m} (the statement is over its memory limit, `--statement-memory`; \
                 other statements go on)"
            ),
            other => other.to_string(),
        };
        Error {
            datafusion_text: Some(text),
            ..Error::new(kind, message)
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::execution(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_syntax_errors_get_their_position_and_a_caret() {
        let text = "SELECT a\nFROM t WHERE = 1";
        let e = Error::new(
            ErrorKind::Syntax,
            "SQL error: ParserError(\"Expected: an expression, found: = at Line: 2, Column: 14\")",
        )
        .located_in(text);
        assert_eq!(e.position, Some((2, 14)));
        assert_eq!(
            e.message,
            "SQL error: ParserError(\"Expected: an expression, found: =\")"
        );
        assert_eq!(
            e.detail.as_deref(),
            Some("FROM t WHERE = 1\n             ^")
        );
        // The input ended too soon: the position is the end of the text.
        let e = Error::new(
            ErrorKind::Syntax,
            "SQL error: ParserError(\"Expected: an expression, found: EOF\")",
        )
        .located_in("SELECT 1 +");
        assert_eq!(e.position, Some((1, 11)));
        // Other errors are left alone.
        let e = Error::plan("at Line: 1, Column: 2").located_in("x");
        assert_eq!(e.position, None);
        // User text quoted in a message does not pose as a position, and a position off the
        // text is dropped.
        let quoted = "SQL error: ParserError(\"duplicate alias \\\"x at Line: 1, Column: \
                      999999999999\\\"\")";
        let e = Error::new(ErrorKind::Syntax, quoted).located_in("SELECT 1");
        assert_eq!(e.position, None);
        let e = Error::new(
            ErrorKind::Syntax,
            "SQL error: ParserError(\"x at Line: 1, Column: 999999999999\")",
        )
        .located_in("SELECT 1");
        assert_eq!((e.position, e.detail), (None, None));
        let e = Error::new(ErrorKind::Syntax, "x at Line: 0, Column: 1").located_in("SELECT 1");
        assert_eq!(e.position, None);
    }
}
