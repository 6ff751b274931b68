//! What the planner and the graph operators need from the engine: the graph schema and, at
//! execution, one consistent snapshot of table rows and adjacency.
//!
//! Nodes are numbered with *global ordinals*: the node tables of the snapshot in a fixed
//! order, each taking the next range (`node_offset(label) + row`). One number per node lets a
//! variable range over several labels and lets adjacency connect any two labels. Edges are
//! numbered the same way across edge tables.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use contextdb_graph::Adjacency;
use datafusion::error::Result;

/// The most nodes (and, separately, edges) one snapshot can number with `u32` ordinals.
pub const MAX_ORDINALS: u64 = u32::MAX as u64;

/// A node table (one label).
#[derive(Debug, Clone)]
pub struct NodeTableInfo {
    pub label: String,
    pub primary_key: String,
    /// User columns, in table order.
    pub schema: SchemaRef,
}

/// An edge table: the edges of one relationship type between one pair of labels. A type
/// that connects several pairs has one table per pair, all with the same `rel_type`.
#[derive(Debug, Clone)]
pub struct EdgeTableInfo {
    /// The table's name; the first table of a type is named after the type.
    pub table: String,
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
    /// Node tables in ordinal order.
    fn node_tables(&self) -> Vec<NodeTableInfo>;
    fn edge_tables(&self) -> Vec<EdgeTableInfo>;

    fn node_table(&self, label: &str) -> Option<NodeTableInfo> {
        self.node_tables().into_iter().find(|t| t.label == label)
    }
    /// The edge table of `rel_type` from `from` to `to`.
    fn edge_table(&self, rel_type: &str, from: &str, to: &str) -> Option<EdgeTableInfo> {
        self.edge_tables()
            .into_iter()
            .find(|t| t.rel_type == rel_type && t.from == from && t.to == to)
    }

    /// Global ordinal of the label's first node.
    fn node_offset(&self, label: &str) -> Result<u32>;
    /// Global ordinal of the edge table's first edge.
    fn edge_offset(&self, table: &str) -> Result<u32>;

    /// Every row of the label's snapshot in one batch; row `i` is ordinal `offset + i`.
    fn node_rows(&self, label: &str) -> Result<Arc<RecordBatch>>;
    /// How many nodes the label has, without loading them where the source can tell.
    fn node_count(&self, label: &str) -> Result<usize> {
        Ok(self.node_rows(label)?.num_rows())
    }
    /// The rows of the label whose `property` equals `value`, when an index can tell (None:
    /// scan). Only a superset is promised: the plan filters the rows it gets again.
    fn node_lookup(
        &self,
        _label: &str,
        _property: &str,
        _value: &datafusion::common::ScalarValue,
    ) -> Result<Option<Vec<u32>>> {
        Ok(None)
    }
    /// The stable id of each row of `node_rows(label)` (Int64, aligned with the rows).
    fn node_ids(&self, label: &str) -> Result<ArrayRef>;
    /// Every row of the edge table's snapshot in one batch.
    fn edge_rows(&self, table: &str) -> Result<Arc<RecordBatch>>;
    /// The stable id of each row of `edge_rows(table)`.
    fn edge_ids(&self, table: &str) -> Result<ArrayRef>;
    /// Adjacency of the edge table over global node ordinals; edge ids are table rows.
    fn adjacency(&self, table: &str) -> Result<Arc<Adjacency>>;
}

/// A statement's snapshot, carried by the plan nodes that read it. One DataFusion session
/// plans every statement of a database, so the snapshot cannot live in the session; each plan
/// holds the one it was lowered against. Compared by identity: two plans over the same
/// snapshot are equal, over different snapshots they are not.
#[derive(Clone)]
pub struct SourceRef(pub Arc<dyn GraphSource>);

impl SourceRef {
    fn address(&self) -> *const () {
        Arc::as_ptr(&self.0) as *const ()
    }
}

impl Debug for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceRef({:p})", self.address())
    }
}

impl PartialEq for SourceRef {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.address(), other.address())
    }
}

impl Eq for SourceRef {}

impl std::hash::Hash for SourceRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.address().hash(state)
    }
}

impl std::ops::Deref for SourceRef {
    type Target = dyn GraphSource;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}
