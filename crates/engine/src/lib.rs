//! The ContextDB engine: opens a database (warehouse + replicated catalog), routes each
//! statement to ContextQL or SQL, plans it onto DataFusion and commits its writes atomically.
//!
//! ```text
//!  text ─► route ─► ContextQL: contextql::parse ─► planner (GraphExpand, NodeScan) ─┐
//!                └► SQL: DataFusion SQL planner ───────────────────────────────────┤
//!                                                                                   ▼
//!           statement snapshot (one catalog version, hot-tier cached table data)  execute
//!                                                                                   │
//!                     writes: data files + new snapshots ─► one catalog log entry ◄─┘
//! ```

pub mod error;

mod cache;
mod database;
mod ddl;
mod graph_source;
pub mod route;
mod schema;
mod sql;
mod write;

pub use database::{Database, DbConfig, StorageKind};
pub use error::{Error, ErrorKind, Result};
pub use route::{Language, route};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

/// What a statement returned.
#[derive(Debug, Clone)]
pub struct StatementResult {
    /// Which language the statement was routed to.
    pub language: Language,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Rows written, for statements that write (None for queries).
    pub rows_affected: Option<u64>,
}

impl StatementResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}
