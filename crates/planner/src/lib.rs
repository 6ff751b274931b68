//! ContextQL planning onto DataFusion.
//!
//! - [`lower`]: AST → `LogicalPlan` with the graph extension nodes of [`nodes`] and a list of
//!   [`lower::WriteOp`]s for writing queries.
//! - [`exec`]: the operators for those nodes and the query planner that plans them.
//! - [`source::GraphSource`]: what the engine provides (schema and one snapshot of data).

mod equality;
pub mod exec;
pub mod expr;
mod lambda;
pub mod lower;
mod lower_paths;
mod lower_project;
mod lower_vector;
pub mod lower_write;
pub mod nodes;
pub mod prune;
pub mod scope;
mod size;
pub mod source;
#[cfg(test)]
mod tests;
pub mod var_length;
pub mod vector;

pub use exec::GraphQueryPlanner;
pub use expr::Params;
pub use lower::{Lowered, Lowering};
pub use lower_write::{MergeOp, Target, WriteBlock, WriteOp};
pub use source::{EdgeTableInfo, GraphSource, NodeTableInfo, SourceRef};

use arrow::datatypes::DataType;
use contextql::ast::Span;

/// Schema that a writing query needs and the graph lacks (schema evolution): the engine
/// creates it and plans the query again.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaNeed {
    NodeTable {
        label: String,
        columns: Vec<(String, DataType)>,
    },
    Columns {
        table: String,
        columns: Vec<(String, DataType)>,
    },
    EdgeTable {
        rel_type: String,
        from: String,
        to: String,
        columns: Vec<(String, DataType)>,
    },
}

/// A query that cannot be planned (openCypher's semantic errors and our own limits).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    pub message: String,
    /// 1-based (line, column) in the statement text.
    pub position: Option<(usize, usize)>,
    /// Set when the query could be planned once this schema exists.
    pub need: Option<Box<SchemaNeed>>,
    /// The query is fine but a value in it is not (a negative LIMIT from a parameter).
    pub execution: bool,
}

impl PlanError {
    pub fn new(message: impl Into<String>) -> Self {
        PlanError {
            message: message.into(),
            position: None,
            need: None,
            execution: false,
        }
    }

    pub fn at(text: &str, span: Span, message: impl Into<String>) -> Self {
        PlanError {
            message: message.into(),
            position: Some(span.line_col(text)),
            need: None,
            execution: false,
        }
    }

    pub fn needs(need: SchemaNeed) -> Self {
        PlanError {
            message: format!("the graph lacks {need:?}"),
            position: None,
            need: Some(Box::new(need)),
            execution: false,
        }
    }
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((l, c)) => write!(f, "line {l}, column {c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PlanError {}

impl From<datafusion::error::DataFusionError> for PlanError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        PlanError::new(e.strip_backtrace())
    }
}
