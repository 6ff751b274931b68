//! The graph as the later clauses of a writing statement see it: the statement's snapshot
//! with the writes of its earlier blocks applied, not yet committed.
//!
//! openCypher has a MATCH after a CREATE find what the CREATE made. A statement's writes
//! stay in its sink until the one commit, so the clauses after a write block are planned
//! against this view. Tables the statement has not changed are the snapshot's own, at the
//! same ordinals. A changed table is rebuilt (its untouched chunks shared) and numbered
//! after every ordinal of the snapshot, as its rows no longer fit its old range. Edge tables
//! whose rows or endpoints changed get their adjacency built here; the others keep the
//! snapshot's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use contextdb_graph::Adjacency;
use contextdb_planner::source::{Chunked, SnapshotVectorIndex};
use contextdb_planner::{EdgeTableInfo, GraphSource, NodeTableInfo};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};

use crate::cache::Key;
use crate::error::{Error, Result};
use crate::graph_source::{Snapshot, number};
use crate::schema::TableKind;

/// Marks a row of the sink's numbering that the statement deleted.
const GONE: u32 = u32::MAX;

/// A table the statement changed, as the view shows it.
pub(crate) struct ChangedTable {
    rows: Arc<Chunked>,
    /// Row here → row in the sink's numbering (the stored rows, then the appended ones).
    sink_rows: Vec<u32>,
    /// Row in the sink's numbering → row here ([`GONE`]: deleted).
    view_rows: Vec<u32>,
    /// Primary key → row here, built when an edge table's adjacency needs it.
    keys: OnceLock<std::result::Result<HashMap<Key, u32>, String>>,
}

impl ChangedTable {
    /// `rows`, where row `i` is row `sink_rows[i]` of the sink's `sink_len` rows.
    pub(crate) fn new(rows: Chunked, sink_rows: Vec<u32>, sink_len: usize) -> ChangedTable {
        assert_eq!(rows.num_rows(), sink_rows.len(), "one sink row per row");
        let mut view_rows = vec![GONE; sink_len];
        for (i, &r) in sink_rows.iter().enumerate() {
            view_rows[r as usize] = i as u32;
        }
        ChangedTable {
            rows: Arc::new(rows),
            sink_rows,
            view_rows,
            keys: OnceLock::new(),
        }
    }

    fn keys(&self, pk: &str) -> DfResult<&HashMap<Key, u32>> {
        self.keys
            .get_or_init(|| {
                let mut keys = HashMap::with_capacity(self.rows.num_rows());
                for (start, chunk, _) in self.rows.chunks() {
                    let column = chunk
                        .column_by_name(pk)
                        .ok_or_else(|| format!("no key column `{pk}`"))?;
                    for (i, k) in Key::column(column)
                        .map_err(|e| e.to_string())?
                        .into_iter()
                        .enumerate()
                    {
                        if let Some(k) = k {
                            keys.insert(k, (start + i) as u32);
                        }
                    }
                }
                Ok(keys)
            })
            .as_ref()
            .map_err(|e| DataFusionError::Internal(e.clone()))
    }
}

/// See the module documentation.
pub(crate) struct Staged {
    base: Arc<Snapshot>,
    changed: HashMap<String, ChangedTable>,
    /// Tables with their first ordinal, ascending (a changed table's old range is a gap).
    node_offsets: Vec<(String, u32)>,
    edge_offsets: Vec<(String, u32)>,
    /// Past every ordinal of the view: where elements created after it are numbered.
    pub(crate) node_end: u32,
    pub(crate) edge_end: u32,
    adjacency: Mutex<HashMap<String, Arc<Adjacency>>>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("changed", &self.changed.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Staged {
    pub(crate) fn new(
        base: Arc<Snapshot>,
        changed: HashMap<String, ChangedTable>,
    ) -> Result<Staged> {
        // Unchanged tables keep their ordinals; changed ones are numbered after the snapshot's.
        let renumber = |offsets: &[(String, u32)], end: u32, kind: TableKind| {
            let mut moved: Vec<&String> = changed
                .keys()
                .filter(|name| base.tables.get(*name).is_some_and(|t| t.info.kind == kind))
                .collect();
            moved.sort();
            let (mut out, end) = number(
                moved
                    .into_iter()
                    .map(|name| (name, changed[name].rows.num_rows())),
                end,
                kind,
            )?;
            out.extend(
                offsets
                    .iter()
                    .filter(|(name, _)| !changed.contains_key(name))
                    .cloned(),
            );
            out.sort_by_key(|(_, o)| *o);
            Ok::<_, Error>((out, end))
        };
        let (node_offsets, node_end) =
            renumber(&base.node_offsets, base.node_end, TableKind::Node)?;
        let (edge_offsets, edge_end) =
            renumber(&base.edge_offsets, base.edge_end, TableKind::Edge)?;
        Ok(Staged {
            base,
            changed,
            node_offsets,
            edge_offsets,
            node_end,
            edge_end,
            adjacency: Mutex::new(HashMap::new()),
        })
    }

    fn offsets(&self, nodes: bool) -> &[(String, u32)] {
        if nodes {
            &self.node_offsets
        } else {
            &self.edge_offsets
        }
    }

    /// The table and sink row of an ordinal of this view (None: none, or deleted).
    pub(crate) fn locate(&self, nodes: bool, ordinal: u32) -> Option<(String, u32)> {
        let offsets = self.offsets(nodes);
        let i = offsets
            .partition_point(|(_, o)| *o <= ordinal)
            .checked_sub(1)?;
        let (name, offset) = &offsets[i];
        let row = ordinal - offset;
        match self.changed.get(name) {
            Some(t) => t.sink_rows.get(row as usize).map(|&r| (name.clone(), r)),
            None => {
                ((row as usize) < self.base.tables.get(name)?.rows).then(|| (name.clone(), row))
            }
        }
    }

    /// The ordinal in this view of sink row `row` of `table` (None: deleted).
    pub(crate) fn ordinal(&self, nodes: bool, table: &str, row: u32) -> Option<u32> {
        let (_, offset) = self.offsets(nodes).iter().find(|(n, _)| n == table)?;
        let row = match self.changed.get(table) {
            Some(t) => *t.view_rows.get(row as usize).filter(|&&r| r != GONE)?,
            None => row,
        };
        Some(offset + row)
    }

    fn offset_of(&self, nodes: bool, name: &str) -> DfResult<u32> {
        self.offsets(nodes)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| *o)
            .ok_or_else(|| DataFusionError::Plan(format!("no table `{name}` in this snapshot")))
    }

    fn info(&self, table: &str) -> DfResult<&crate::schema::TableInfo> {
        self.base
            .tables
            .get(table)
            .map(|t| &t.info)
            .ok_or_else(|| DataFusionError::Plan(format!("no table `{table}`")))
    }

    /// Adjacency of an edge table whose rows or endpoint tables the statement changed, over
    /// this view's ordinals; edges whose endpoint is gone are left out, as the snapshot's are.
    fn build_adjacency(&self, table: &str) -> DfResult<Arc<Adjacency>> {
        let info = self.info(table)?;
        let (Some(from), Some(to)) = (&info.from, &info.to) else {
            return Err(DataFusionError::Internal(format!(
                "{table} has no endpoints"
            )));
        };
        let rows = self.edge_rows(table)?;
        let mut ends = Vec::with_capacity(2);
        for label in [from, to] {
            let offset = self.offset_of(true, label)?;
            let pk = self
                .base
                .tables
                .get(label)
                .and_then(|t| t.info.primary_key.clone())
                .ok_or_else(|| DataFusionError::Internal(format!("`{label}` has no key")))?;
            ends.push((label, offset, pk));
        }
        let find = |end: usize, key: &Key| -> DfResult<Option<u32>> {
            let (label, offset, pk) = &ends[end];
            let row = match self.changed.get(*label) {
                Some(t) => t.keys(pk)?.get(key).copied(),
                None => self
                    .base
                    .get(label)
                    .ok_or_else(|| DataFusionError::Internal(format!("`{label}` not loaded")))?
                    .key_index()
                    .map_err(Error::into_datafusion)?
                    .get(key)
                    .copied(),
            };
            Ok(row.map(|r| offset + r))
        };
        let mut pairs = Vec::with_capacity(rows.num_rows());
        let mut edge_rows = Vec::with_capacity(rows.num_rows());
        for (start, chunk, _) in rows.chunks() {
            let column = |name: &str| -> DfResult<Vec<Option<Key>>> {
                let values = chunk.column_by_name(name).ok_or_else(|| {
                    DataFusionError::Internal(format!("{table} lacks its `{name}` column"))
                })?;
                Key::column(values).map_err(Error::into_datafusion)
            };
            for (i, (s, d)) in column("src")?.iter().zip(column("dst")?.iter()).enumerate() {
                let (Some(s), Some(d)) = (s, d) else { continue };
                if let (Some(s), Some(d)) = (find(0, s)?, find(1, d)?) {
                    pairs.push((s, d));
                    edge_rows.push((start + i) as u32);
                }
            }
        }
        let adjacency = Adjacency::build_with_rows(&pairs, &edge_rows)
            .map_err(|e| DataFusionError::ResourcesExhausted(e.to_string()))?;
        Ok(Arc::new(adjacency))
    }
}

impl GraphSource for Staged {
    fn node_tables(&self) -> Vec<NodeTableInfo> {
        self.base.node_tables()
    }

    fn edge_tables(&self) -> Vec<EdgeTableInfo> {
        self.base.edge_tables()
    }

    fn node_offset(&self, label: &str) -> DfResult<u32> {
        self.offset_of(true, label)
    }

    fn edge_offset(&self, table: &str) -> DfResult<u32> {
        self.offset_of(false, table)
    }

    fn node_rows(&self, label: &str) -> DfResult<Arc<Chunked>> {
        match self.changed.get(label) {
            Some(t) => Ok(t.rows.clone()),
            None => self.base.node_rows(label),
        }
    }

    fn node_count(&self, label: &str) -> DfResult<usize> {
        match self.changed.get(label) {
            Some(t) => Ok(t.rows.num_rows()),
            None => self.base.node_count(label),
        }
    }

    /// A changed table has no property index here: it is scanned.
    fn node_lookup(
        &self,
        label: &str,
        property: &str,
        value: &ScalarValue,
    ) -> DfResult<Option<Vec<u32>>> {
        if self.changed.contains_key(label) {
            return Ok(None);
        }
        self.base.node_lookup(label, property, value)
    }

    fn prepare_vector_search<'a>(
        &'a self,
        label: &'a str,
        property: &'a str,
    ) -> futures::future::BoxFuture<'a, DfResult<()>> {
        if self.changed.contains_key(label) {
            return Box::pin(async { Ok(()) });
        }
        self.base.prepare_vector_search(label, property)
    }

    /// A changed table is searched exactly: its index knows the committed rows only.
    fn vector_index(
        &self,
        label: &str,
        property: &str,
    ) -> DfResult<Option<Arc<dyn SnapshotVectorIndex>>> {
        if self.changed.contains_key(label) {
            return Ok(None);
        }
        self.base.vector_index(label, property)
    }

    fn edge_rows(&self, table: &str) -> DfResult<Arc<Chunked>> {
        match self.changed.get(table) {
            Some(t) => Ok(t.rows.clone()),
            None => self.base.edge_rows(table),
        }
    }

    fn adjacency(&self, table: &str) -> DfResult<Arc<Adjacency>> {
        let info = self.info(table)?;
        let touched = [Some(table), info.from.as_deref(), info.to.as_deref()]
            .into_iter()
            .flatten()
            .any(|t| self.changed.contains_key(t));
        if !touched {
            return self.base.adjacency(table);
        }
        if let Some(a) = self
            .adjacency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
        {
            return Ok(a.clone());
        }
        let built = self.build_adjacency(table)?;
        self.adjacency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_string(), built.clone());
        Ok(built)
    }
}
