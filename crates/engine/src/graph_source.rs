//! One statement's view of the database: every table at one catalog version.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use contextdb_graph::Adjacency;
use contextdb_planner::nodes::{GraphExpand, NodeScan};
use contextdb_planner::source::{Chunked, SnapshotVectorIndex};
use contextdb_planner::var_length::VarLengthExpand;
use contextdb_planner::vector::{AnnScan, VectorTopK};
use contextdb_planner::{EdgeTableInfo, GraphSource, NodeTableInfo};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::LogicalPlan;

use arrow::datatypes::SchemaRef;
use contextdb_storage::table_io;

use crate::cache::{Cache, Key, TableData};
use crate::schema::{TableInfo, TableKind};
use crate::vector_index::{IndexAtSnapshot, VectorIndexes};
use datafusion::common::ScalarValue;

/// One table of a snapshot: what planning needs (schema, row count) at once, its rows when
/// a statement asks for them.
pub struct TableSlot {
    pub info: TableInfo,
    pub snapshot_id: Option<i64>,
    /// User columns, in table order.
    pub schema: SchemaRef,
    /// Rows in the snapshot (ordinals are numbered from it before any row is read).
    pub rows: usize,
    data: OnceLock<Arc<TableData>>,
}

impl TableSlot {
    /// The stored type of the table's primary key (as edge tables store a node table's).
    pub fn key_type(&self) -> crate::Result<contextql::ast::DataType> {
        let pk = self.info.primary_key.as_deref().ok_or_else(|| {
            crate::Error::plan(format!("`{}` has no primary key", self.info.name))
        })?;
        crate::schema::ast_type(self.schema.field_with_name(pk)?.data_type())
    }

    /// The loaded rows; an internal error when the statement did not load the table.
    pub fn data(&self) -> DfResult<&Arc<TableData>> {
        self.data.get().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "table `{}` was read without being loaded for the statement",
                self.info.name
            ))
        })
    }
}

/// Tables by name (the default graph), all at one catalog version. Rows are loaded per
/// table, on request: a statement loads only the tables its plan reads.
pub struct Snapshot {
    pub tables: BTreeMap<String, TableSlot>,
    /// Node tables with the global ordinal of their first row, ascending.
    pub node_offsets: Vec<(String, u32)>,
    /// Edge tables with the global ordinal of their first row, ascending.
    pub edge_offsets: Vec<(String, u32)>,
    /// The first node / edge ordinal past every stored one (where created ones start).
    pub node_end: u32,
    pub edge_end: u32,
    /// The tables' metadata at this catalog version (writers build on it).
    pub current: BTreeMap<String, iceberg::table::Table>,
    pub cache: Arc<Cache>,
    /// Bytes of table rows this statement has loaded; bounded by the cache budget.
    loaded_bytes: AtomicUsize,
    /// The process's open vector indexes, and those this statement searches, by (label,
    /// property), as this snapshot sees them.
    indexes: Arc<VectorIndexes>,
    searched: Mutex<HashMap<(String, String), Arc<dyn SnapshotVectorIndex>>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Gives each of `tables` (name, rows), in order, the next range of ordinals from `first`:
/// their first ordinals and the ordinal past the last. More than `MAX_ORDINALS` elements of
/// one kind is a resource error.
pub(crate) fn number<'a>(
    tables: impl IntoIterator<Item = (&'a String, usize)>,
    first: u32,
    kind: TableKind,
) -> crate::Result<(Vec<(String, u32)>, u32)> {
    let max = contextdb_planner::source::MAX_ORDINALS;
    let mut next = u64::from(first);
    let mut out = Vec::new();
    for (name, rows) in tables {
        out.push((name.clone(), next as u32));
        next += rows as u64;
        if next > max {
            return Err(crate::Error::new(
                crate::ErrorKind::Resource,
                format!("more than {max} {}s in one graph", kind.as_str()),
            ));
        }
    }
    Ok((out, next as u32))
}

impl Snapshot {
    /// Numbers the nodes and the edges of `tables` (see `contextdb_planner::source`).
    pub fn new(
        tables: BTreeMap<String, TableSlot>,
        current: BTreeMap<String, iceberg::table::Table>,
        cache: Arc<Cache>,
        indexes: Arc<VectorIndexes>,
    ) -> crate::Result<Snapshot> {
        let offsets = |kind: TableKind| {
            let of_kind = tables.iter().filter(|(_, t)| t.info.kind == kind);
            number(of_kind.map(|(name, t)| (name, t.rows)), 0, kind)
        };
        let (node_offsets, node_end) = offsets(TableKind::Node)?;
        let (edge_offsets, edge_end) = offsets(TableKind::Edge)?;
        Ok(Snapshot {
            tables,
            node_offsets,
            edge_offsets,
            node_end,
            edge_end,
            current,
            cache,
            loaded_bytes: AtomicUsize::new(0),
            indexes,
            searched: Mutex::new(HashMap::new()),
        })
    }

    /// A table of the snapshot before its rows are read: its row count from the snapshot
    /// summary, or (for snapshots written without one) from its rows, read now.
    pub async fn slot(
        cache: &Cache,
        table: &iceberg::table::Table,
        info: TableInfo,
        snapshot_id: Option<i64>,
    ) -> crate::Result<TableSlot> {
        let schema = cache.user_schema(table, &info)?;
        let data = OnceLock::new();
        let rows = match table_io::snapshot_rows(table, snapshot_id) {
            Some(rows) => usize::try_from(rows)
                .map_err(|_| crate::Error::internal("row count beyond this machine's range"))?,
            None => {
                let loaded = cache.table_data(table, &info, snapshot_id).await?;
                let rows = loaded.rows.num_rows();
                let _ = data.set(loaded);
                rows
            }
        };
        Ok(TableSlot {
            info,
            snapshot_id,
            schema,
            rows,
            data,
        })
    }

    /// Loads the rows of the named tables (those not loaded yet). Fails with a resource error
    /// when the statement's tables together exceed the hot tier's budget.
    pub async fn load<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> crate::Result<()> {
        for name in names {
            let Some(slot) = self.tables.get(name) else {
                continue;
            };
            if slot.data.get().is_some() {
                continue;
            }
            let table = self
                .current
                .get(name)
                .ok_or_else(|| crate::Error::internal(format!("no metadata for `{name}`")))?;
            let data = self
                .cache
                .table_data(table, &slot.info, slot.snapshot_id)
                .await?;
            if data.rows.num_rows() != slot.rows {
                return Err(crate::Error::internal(format!(
                    "`{name}` holds {} rows but its snapshot summary says {}",
                    data.rows.num_rows(),
                    slot.rows
                )));
            }
            let bytes = data.bytes();
            let total = self.loaded_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
            if total > self.cache.budget_bytes() {
                return Err(crate::Error::new(
                    crate::ErrorKind::Resource,
                    format!(
                        "the statement reads {total} bytes of table rows, more than the hot \
                         tier's budget of {} bytes (setting `cache_bytes`)",
                        self.cache.budget_bytes()
                    ),
                ));
            }
            let _ = slot.data.set(data);
        }
        Ok(())
    }

    /// The tables a plan reads: the labels its scans and expansions reach, the edge tables
    /// they follow and those tables' endpoint labels (adjacency is keyed through them).
    pub fn tables_read(&self, plan: &LogicalPlan) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::Extension(ext) = node {
                let any = ext.node.as_any();
                if let Some(scan) = any.downcast_ref::<NodeScan>() {
                    names.extend(scan.labels.iter().cloned());
                } else if let Some(scan) = any.downcast_ref::<AnnScan>() {
                    names.insert(scan.spec.label.clone());
                } else if let Some(top) = any.downcast_ref::<VectorTopK>() {
                    names.insert(top.spec.label.clone());
                } else if let Some((to_labels, rel_types)) = any
                    .downcast_ref::<GraphExpand>()
                    .map(|e| (&e.to_labels, &e.rel_types))
                    .or_else(|| {
                        any.downcast_ref::<VarLengthExpand>()
                            .map(|e| (&e.to_labels, &e.rel_types))
                    })
                {
                    names.extend(to_labels.iter().cloned());
                    for edge in rel_types {
                        names.insert(edge.clone());
                        if let Some(slot) = self.tables.get(edge) {
                            names.extend(slot.info.from.iter().cloned());
                            names.extend(slot.info.to.iter().cloned());
                        }
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        names
    }

    /// Opens the vector indexes the plan's searches use (their tables must be loaded).
    pub async fn open_vector_indexes(&self, plan: &LogicalPlan) -> crate::Result<()> {
        let mut wanted = BTreeSet::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::Extension(ext) = node {
                let any = ext.node.as_any();
                let spec = match (
                    any.downcast_ref::<AnnScan>(),
                    any.downcast_ref::<VectorTopK>(),
                ) {
                    (Some(scan), _) => Some(&scan.spec),
                    (_, Some(top)) => Some(&top.spec),
                    _ => None,
                };
                if let Some(spec) = spec
                    && spec.index.is_some()
                {
                    wanted.insert((spec.label.clone(), spec.property.clone()));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        for (label, property) in wanted {
            self.open_vector_index(&label, &property).await?;
        }
        Ok(())
    }

    /// Opens the vector index of `label.property` for this snapshot, if it has one and it is
    /// not open yet (the label's rows must be loaded).
    async fn open_vector_index(&self, label: &str, property: &str) -> crate::Result<()> {
        let key = (label.to_string(), property.to_string());
        if self
            .searched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&key)
        {
            return Ok(());
        }
        let (Some(slot), Some(table)) = (self.tables.get(label), self.current.get(label)) else {
            return Ok(());
        };
        let Some(def) = slot.info.vector_indexes.get(property) else {
            return Ok(());
        };
        let open = self.indexes.open(table.metadata().location(), def).await?;
        let data = slot
            .data()
            .map_err(|e| crate::Error::internal(e.to_string()))?
            .clone();
        let at: Arc<dyn SnapshotVectorIndex> = Arc::new(IndexAtSnapshot::new(open, data));
        self.searched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, at);
        Ok(())
    }

    /// The loaded rows of a table; None when there is no such table. The statement must have
    /// loaded it (a bug otherwise, asserted in debug builds).
    pub fn get(&self, name: &str) -> Option<&Arc<TableData>> {
        let slot = self.tables.get(name)?;
        debug_assert!(
            slot.data.get().is_some(),
            "`{name}` read before it was loaded"
        );
        slot.data.get()
    }

    fn locate(offsets: &[(String, u32)], ordinal: u32) -> Option<(&str, u32)> {
        let i = offsets
            .partition_point(|(_, o)| *o <= ordinal)
            .checked_sub(1)?;
        let (name, offset) = &offsets[i];
        Some((name.as_str(), ordinal - offset))
    }

    /// The label and row of a global node ordinal.
    pub fn node_at(&self, ordinal: u32) -> Option<(&str, u32)> {
        Self::locate(&self.node_offsets, ordinal)
    }

    /// The edge table and row of a global edge ordinal.
    pub fn edge_at(&self, ordinal: u32) -> Option<(&str, u32)> {
        Self::locate(&self.edge_offsets, ordinal)
    }

    fn offset_of(offsets: &[(String, u32)], name: &str) -> DfResult<u32> {
        offsets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| *o)
            .ok_or_else(|| DataFusionError::Plan(format!("no table `{name}` in this snapshot")))
    }

    fn slot_of_kind(&self, name: &str, kind: TableKind) -> DfResult<&TableSlot> {
        self.tables
            .get(name)
            .filter(|t| t.info.kind == kind)
            .ok_or_else(|| DataFusionError::Plan(format!("no {} table `{name}`", kind.as_str())))
    }

    fn of_kind(&self, name: &str, kind: TableKind) -> DfResult<&Arc<TableData>> {
        self.slot_of_kind(name, kind)?.data()
    }

    fn edge_info(data: &TableSlot) -> Option<EdgeTableInfo> {
        Some(EdgeTableInfo {
            table: data.info.name.clone(),
            rel_type: data
                .info
                .rel_type
                .clone()
                .unwrap_or_else(|| data.info.name.clone()),
            from: data.info.from.clone()?,
            to: data.info.to.clone()?,
            schema: data.schema.clone(),
        })
    }
}

impl GraphSource for Snapshot {
    fn node_tables(&self) -> Vec<NodeTableInfo> {
        self.node_offsets
            .iter()
            .filter_map(|(label, _)| {
                let data = &self.tables[label];
                Some(NodeTableInfo {
                    label: label.clone(),
                    primary_key: data.info.primary_key.clone()?,
                    schema: data.schema.clone(),
                    vector_indexes: data
                        .info
                        .vector_indexes
                        .iter()
                        .filter_map(|(column, def)| {
                            let info = contextdb_planner::source::VectorIndexInfo {
                                name: def.name.clone(),
                                params: def.params().ok()?,
                            };
                            Some((column.clone(), info))
                        })
                        .collect(),
                })
            })
            .collect()
    }

    fn edge_tables(&self) -> Vec<EdgeTableInfo> {
        self.edge_offsets
            .iter()
            .filter_map(|(name, _)| Self::edge_info(&self.tables[name]))
            .collect()
    }

    fn node_offset(&self, label: &str) -> DfResult<u32> {
        Self::offset_of(&self.node_offsets, label)
    }

    fn edge_offset(&self, rel_type: &str) -> DfResult<u32> {
        Self::offset_of(&self.edge_offsets, rel_type)
    }

    fn node_rows(&self, label: &str) -> DfResult<Arc<Chunked>> {
        Ok(self.of_kind(label, TableKind::Node)?.rows.clone())
    }

    fn node_count(&self, label: &str) -> DfResult<usize> {
        Ok(self.slot_of_kind(label, TableKind::Node)?.rows)
    }

    fn node_lookup(
        &self,
        label: &str,
        property: &str,
        value: &ScalarValue,
    ) -> DfResult<Option<Vec<u32>>> {
        let key = match value {
            ScalarValue::Int64(Some(v)) => Key::Int(*v),
            ScalarValue::Int32(Some(v)) => Key::Int(i64::from(*v)),
            ScalarValue::Utf8(Some(v)) | ScalarValue::LargeUtf8(Some(v)) => Key::Str(v.clone()),
            _ => return Ok(None),
        };
        let table = self.of_kind(label, TableKind::Node)?;
        Ok(table
            .property_index(property)
            .map(|index| index.get(&key).cloned().unwrap_or_default()))
    }

    fn prepare_vector_search<'a>(
        &'a self,
        label: &'a str,
        property: &'a str,
    ) -> futures::future::BoxFuture<'a, DfResult<()>> {
        Box::pin(async move {
            let ready = async {
                self.load([label]).await?;
                self.open_vector_index(label, property).await
            };
            ready.await.map_err(crate::Error::into_datafusion)
        })
    }

    fn vector_index(
        &self,
        label: &str,
        property: &str,
    ) -> DfResult<Option<Arc<dyn SnapshotVectorIndex>>> {
        Ok(self
            .searched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(label.to_string(), property.to_string()))
            .cloned())
    }

    fn edge_rows(&self, rel_type: &str) -> DfResult<Arc<Chunked>> {
        Ok(self.of_kind(rel_type, TableKind::Edge)?.rows.clone())
    }

    fn adjacency(&self, rel_type: &str) -> DfResult<Arc<Adjacency>> {
        let edge = self.of_kind(rel_type, TableKind::Edge)?;
        let (Some(from), Some(to)) = (&edge.info.from, &edge.info.to) else {
            return Err(DataFusionError::Internal(format!(
                "{rel_type} has no endpoints"
            )));
        };
        let from_offset = self.node_offset(from)?;
        let to_offset = self.node_offset(to)?;
        let from = self.of_kind(from, TableKind::Node)?;
        let to = self.of_kind(to, TableKind::Node)?;
        self.cache
            .adjacency(edge, (from, from_offset), (to, to_offset))
            .map_err(|e| DataFusionError::Execution(e.to_string()))
    }
}
