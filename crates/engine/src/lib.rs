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
pub mod files;
mod graph_source;
mod ingest;
mod maintenance;
mod parameters;
mod plan_cache;
mod predicate;
mod provider;
pub mod route;
mod schema;
mod session;
mod settings;
mod sql;
mod staged;
mod tables;
mod vector_index;
mod vector_search;
mod views;
mod write;

pub use cache::{DEFAULT_CACHE_BYTES, HotTierStats, SNAPSHOTS_PER_TABLE};
pub use contextdb_planner::Params;
pub use database::{
    DEFAULT_SNAPSHOT_RETENTION, DEFAULT_STATEMENT_MEMORY_BYTES, Database, DbConfig, LoadPhase,
    StorageKind, json_scalar, repair_log,
};
pub use ddl::{LOAD_CHUNK_BYTES, LOAD_CHUNK_ROWS};
pub use error::{Error, ErrorKind, Result};
pub use ingest::{IfExists, IfMissing, Ingest, NewTable};
pub use maintenance::EXPIRE_BATCH_SNAPSHOTS;
pub use plan_cache::{PLAN_CACHE_ENTRIES, PLAN_CACHE_MAX_TEXT};
pub use route::{Language, route};
pub use session::{DEFAULT_CATALOG, SERIAL_PLAN_ROWS_MAX};
pub use settings::{MAX_PREPARED_STATEMENTS, MAX_SESSION_SETTINGS, Session, Settings};
pub use tables::{TableDescription, TableType};
pub use vector_index::{REFRESH_MIN_ROWS, REFRESH_SHARE, VectorIndexStats};
pub use vector_search::VECTOR_SEARCH_K_MAX;
pub use views::MAX_VIEWS;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;

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

impl StatementResult {
    /// The result as a stream over its batches (already computed).
    pub fn into_stream(self) -> QueryStream {
        let schema = self.schema.clone();
        let batches = self.batches.into_iter().map(Ok);
        QueryStream {
            language: self.language,
            rows_affected: self.rows_affected,
            stream: Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::iter(batches),
            )),
        }
    }
}

/// What a statement would return and which parameters it takes, known before it runs.
#[derive(Debug, Clone)]
pub struct Description {
    pub language: Language,
    /// The columns of its rows; empty when they are known only once it has run (a write, a
    /// DDL statement, a ContextQL query whose plan needs its parameters' values).
    pub columns: SchemaRef,
    /// Its parameters in order (`$1, $2, ...`, then by name), with the type the plan expects
    /// (`Null` when any type does); empty when unknown.
    pub parameters: SchemaRef,
}

/// What a statement returns, as a stream of batches. The schema is known before the first
/// batch; a query computes its batches as the stream is polled (a write has committed by the
/// time its stream exists).
pub struct QueryStream {
    pub language: Language,
    /// Rows written, for statements that write (None for queries).
    pub rows_affected: Option<u64>,
    pub stream: SendableRecordBatchStream,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("language", &self.language)
            .field("rows_affected", &self.rows_affected)
            .field("schema", &self.stream.schema())
            .finish_non_exhaustive()
    }
}

impl QueryStream {
    pub(crate) fn rows(language: Language, stream: SendableRecordBatchStream) -> Self {
        QueryStream {
            language,
            rows_affected: None,
            stream,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }

    /// The next batch, or None at the end.
    pub async fn next(&mut self) -> Result<Option<RecordBatch>> {
        Ok(self.stream.try_next().await?)
    }

    /// Reads the whole stream.
    pub async fn collect(self) -> Result<StatementResult> {
        let schema = self.stream.schema();
        let batches: Vec<RecordBatch> = self.stream.try_collect().await?;
        Ok(StatementResult {
            language: self.language,
            schema,
            batches,
            rows_affected: self.rows_affected,
        })
    }
}
