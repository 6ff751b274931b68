//! ContextQL: the grammar (`grammar/contextql.pest`), the parser and the typed AST.
//!
//! ```
//! let script = contextql::parse("MATCH (n:Package) RETURN n.name; RETURN 1").unwrap();
//! assert_eq!(script.statements.len(), 2);
//! ```

pub mod ast;
mod build;
mod error;
mod lex;
mod parser;

pub use error::snippet;
pub use parser::{MAX_EXPRESSION_DEPTH, MAX_NESTING_DEPTH, ParseError, parse, parse_statement};
