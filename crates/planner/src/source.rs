//! What the planner and the graph operators need from the engine: the graph schema and, at
//! execution, one consistent snapshot of table rows and adjacency.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use contextdb_graph::Adjacency;
use datafusion::error::Result;

/// A node table (one label).
#[derive(Debug, Clone)]
pub struct NodeTableInfo {
    pub label: String,
    pub primary_key: String,
    /// User columns, in table order.
    pub schema: SchemaRef,
}

/// An edge table (one relationship type) with its endpoint labels.
#[derive(Debug, Clone)]
pub struct EdgeTableInfo {
    pub rel_type: String,
    pub from: String,
    pub to: String,
    /// `src`, `dst` and the property columns, in table order.
    pub schema: SchemaRef,
}

impl EdgeTableInfo {
    /// Property columns (everything but the endpoint keys).
    pub fn properties(&self) -> impl Iterator<Item = &arrow::datatypes::FieldRef> {
        self.schema
            .fields()
            .iter()
            .filter(|f| f.name() != "src" && f.name() != "dst")
    }
}

/// The graph as one statement sees it: a fixed catalog version.
pub trait GraphSource: Debug + Send + Sync {
    fn node_table(&self, label: &str) -> Option<NodeTableInfo>;
    fn edge_table(&self, rel_type: &str) -> Option<EdgeTableInfo>;
    fn edge_tables(&self) -> Vec<EdgeTableInfo>;

    /// Every row of the label's snapshot in one batch; row `i` is the node with ordinal `i`.
    fn node_rows(&self, label: &str) -> Result<Arc<RecordBatch>>;
    /// Every row of the edge table's snapshot in one batch; row `i` is edge `i`.
    fn edge_rows(&self, rel_type: &str) -> Result<Arc<RecordBatch>>;
    /// Adjacency of the edge table over the endpoint labels' ordinals.
    fn adjacency(&self, rel_type: &str) -> Result<Arc<Adjacency>>;
}
