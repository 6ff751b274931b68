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
use datafusion::common::internal_err;
use datafusion::error::Result;

/// The most nodes (and, separately, edges) one snapshot can number with `u32` ordinals.
pub const MAX_ORDINALS: u64 = u32::MAX as u64;

/// A table snapshot's rows as a list of batches (one or more per data file, in snapshot
/// order) with each row's stable id beside it. Row `i` of the table is row `i - start(k)` of
/// chunk `k`. Snapshots that keep most data files share those files' chunks, so building a
/// new snapshot after a small write copies nothing of the rest.
#[derive(Debug, Clone)]
pub struct Chunked {
    schema: SchemaRef,
    chunks: Vec<RecordBatch>,
    /// `ids[k]` (Int64) holds the ids of `chunks[k]`'s rows.
    ids: Vec<ArrayRef>,
    /// `starts[k]`: the table row of chunk `k`'s first row; one more entry for the end.
    starts: Vec<usize>,
}

impl Chunked {
    /// `chunks` (all in `schema`) with their rows' ids.
    pub fn try_new(
        schema: SchemaRef,
        chunks: Vec<RecordBatch>,
        ids: Vec<ArrayRef>,
    ) -> Result<Chunked> {
        if chunks.len() != ids.len()
            || chunks
                .iter()
                .zip(&ids)
                .any(|(c, i)| c.num_rows() != i.len())
        {
            return internal_err!("row ids do not line up with the rows");
        }
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut at = 0;
        for c in &chunks {
            starts.push(at);
            at += c.num_rows();
        }
        starts.push(at);
        Ok(Chunked {
            schema,
            chunks,
            ids,
            starts,
        })
    }

    /// No rows.
    pub fn empty(schema: SchemaRef) -> Chunked {
        Chunked {
            schema,
            chunks: vec![],
            ids: vec![],
            starts: vec![0],
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn num_rows(&self) -> usize {
        *self.starts.last().expect("starts has an end entry")
    }

    /// The chunks with the table row each starts at.
    pub fn chunks(&self) -> impl Iterator<Item = (usize, &RecordBatch, &ArrayRef)> {
        self.starts
            .iter()
            .zip(&self.chunks)
            .zip(&self.ids)
            .map(|((s, c), i)| (*s, c, i))
    }

    /// The chunk holding table row `row`, and the row within it.
    pub fn locate(&self, row: usize) -> (usize, usize) {
        let k = self.starts.partition_point(|s| *s <= row) - 1;
        (k, row - self.starts[k])
    }

    /// Column `name` of every chunk (None: no such column); [`ID`](crate::nodes::ID) names
    /// the ids.
    pub fn column(&self, name: &str) -> Option<Vec<ArrayRef>> {
        if name == crate::nodes::ID {
            return Some(self.ids.clone());
        }
        let i = self.schema.index_of(name).ok()?;
        Some(self.chunks.iter().map(|c| c.column(i).clone()).collect())
    }

    /// The values of column `name` at table rows `rows` (None: no such column).
    pub fn take(&self, name: &str, rows: &[u32]) -> Result<Option<ArrayRef>> {
        let Some(parts) = self.column(name) else {
            return Ok(None);
        };
        if let [one] = parts.as_slice() {
            let indices = arrow::array::UInt32Array::from(rows.to_vec());
            return Ok(Some(arrow::compute::take(one.as_ref(), &indices, None)?));
        }
        let indices: Vec<(usize, usize)> = rows.iter().map(|r| self.locate(*r as usize)).collect();
        let refs: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
        if refs.is_empty() {
            if !rows.is_empty() {
                return internal_err!("rows asked of a table without rows");
            }
            let data_type = if name == crate::nodes::ID {
                arrow::datatypes::DataType::Int64
            } else {
                self.schema.field_with_name(name)?.data_type().clone()
            };
            return Ok(Some(arrow::array::new_empty_array(&data_type)));
        }
        Ok(Some(arrow::compute::interleave(&refs, &indices)?))
    }

    /// Rows `start..start + len` as one batch (with the ids beside it); copies only when the
    /// range spans chunks.
    pub fn slice(&self, start: usize, len: usize) -> Result<(RecordBatch, ArrayRef)> {
        if len == 0 {
            return Ok((
                RecordBatch::new_empty(self.schema.clone()),
                arrow::array::new_empty_array(&arrow::datatypes::DataType::Int64),
            ));
        }
        let (first, offset) = self.locate(start);
        if offset + len <= self.chunks[first].num_rows() {
            return Ok((
                self.chunks[first].slice(offset, len),
                self.ids[first].slice(offset, len),
            ));
        }
        let mut batches = Vec::new();
        let mut ids = Vec::new();
        let end = start + len;
        for (k, chunk) in self.chunks.iter().enumerate() {
            let (s, e) = (self.starts[k], self.starts[k + 1]);
            if e <= start || s >= end {
                continue;
            }
            let from = start.max(s) - s;
            let to = end.min(e) - s;
            batches.push(chunk.slice(from, to - from));
            ids.push(self.ids[k].slice(from, to - from));
        }
        let id_refs: Vec<&dyn arrow::array::Array> = ids.iter().map(|a| a.as_ref()).collect();
        Ok((
            arrow::compute::concat_batches(&self.schema, &batches)?,
            arrow::compute::concat(&id_refs)?,
        ))
    }

    /// Every row as one batch (copies when there are several chunks).
    pub fn concat(&self) -> Result<RecordBatch> {
        Ok(arrow::compute::concat_batches(&self.schema, &self.chunks)?)
    }

    /// The chunks as they are (for scans that take any number of batches).
    pub fn batches(&self) -> &[RecordBatch] {
        &self.chunks
    }
}

/// A node table (one label).
#[derive(Debug, Clone)]
pub struct NodeTableInfo {
    pub label: String,
    pub primary_key: String,
    /// User columns, in table order.
    pub schema: SchemaRef,
    /// The vector index of each vector property that has one.
    pub vector_indexes: std::collections::HashMap<String, VectorIndexInfo>,
}

/// A vector index as planning sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorIndexInfo {
    pub name: String,
    pub params: contextdb_vector::IndexParams,
}

/// A vector index as one snapshot of its table sees it. The index was built over some
/// snapshot of the table; the rows this snapshot added or rewrote since are `uncovered` and
/// searched exactly, and a search never returns a row this snapshot does not hold as indexed
/// (deleted, or rewritten with another vector).
pub trait SnapshotVectorIndex: Debug + Send + Sync {
    /// Table rows of this snapshot the index does not cover.
    fn uncovered(&self) -> &[std::ops::Range<u32>];
    /// The candidates a search keeps (`ef_search`): a search for more rows keeps that many.
    fn ef_search(&self) -> usize;
    /// Up to `k` covered table rows near `query`, nearest first, among those `accept` takes.
    fn search(
        &self,
        query: &[f32],
        k: usize,
        accept: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Result<Vec<u32>>;
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

    /// Every row of the label's snapshot, with ids; row `i` is ordinal `offset + i`.
    fn node_rows(&self, label: &str) -> Result<Arc<Chunked>>;
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
    /// Makes a vector search of `label.property` ready to run: the label's rows loaded and its
    /// vector index opened. A ContextQL statement has this done before it runs; a plan built
    /// without that step (SQL's `vector_search`) asks here when it starts.
    fn prepare_vector_search<'a>(
        &'a self,
        _label: &'a str,
        _property: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// The vector index on `label.property` at this snapshot (None: none, or not opened for
    /// this statement; the search is then exact).
    fn vector_index(
        &self,
        _label: &str,
        _property: &str,
    ) -> Result<Option<Arc<dyn SnapshotVectorIndex>>> {
        Ok(None)
    }
    /// Every row of the edge table's snapshot, with ids.
    fn edge_rows(&self, table: &str) -> Result<Arc<Chunked>>;
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn table() -> Chunked {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let chunk = |values: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        let ids = |values: Vec<i64>| Arc::new(Int64Array::from(values)) as ArrayRef;
        Chunked::try_new(
            schema.clone(),
            vec![chunk(vec![0, 1, 2]), chunk(vec![]), chunk(vec![3, 4])],
            vec![ids(vec![100, 101, 102]), ids(vec![]), ids(vec![103, 104])],
        )
        .unwrap()
    }

    fn ints(a: &ArrayRef) -> Vec<i64> {
        a.as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn rows_are_addressed_across_chunks() {
        let t = table();
        assert_eq!(t.num_rows(), 5);
        assert_eq!(t.locate(2), (0, 2));
        assert_eq!(t.locate(3), (2, 0));
        assert_eq!(ints(&t.take("v", &[4, 0, 3]).unwrap().unwrap()), [4, 0, 3]);
        assert_eq!(
            ints(&t.take(crate::nodes::ID, &[1, 4]).unwrap().unwrap()),
            [101, 104]
        );
        assert!(t.take("missing", &[0]).unwrap().is_none());
        let (rows, ids) = t.slice(1, 3).unwrap();
        assert_eq!(ints(rows.column(0)), [1, 2, 3]);
        assert_eq!(ints(&ids), [101, 102, 103]);
        let (rows, _) = t.slice(3, 2).unwrap();
        assert_eq!(ints(rows.column(0)), [3, 4]);
    }

    #[test]
    fn ids_must_line_up_with_rows() {
        let t = table();
        let err = Chunked::try_new(
            t.schema().clone(),
            t.batches().to_vec(),
            vec![Arc::new(Int64Array::from(vec![1])) as ArrayRef; 3],
        );
        assert!(err.is_err());
        assert_eq!(Chunked::empty(t.schema().clone()).num_rows(), 0);
    }
}
