//! One statement's view of the database: every table at one catalog version.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use contextdb_graph::Adjacency;
use contextdb_planner::{EdgeTableInfo, GraphSource, NodeTableInfo};
use datafusion::error::{DataFusionError, Result as DfResult};

use crate::cache::{Cache, Key, TableData};
use crate::schema::TableKind;
use datafusion::common::ScalarValue;

/// Tables by name (the default graph), all read at one catalog version.
pub struct Snapshot {
    pub tables: BTreeMap<String, Arc<TableData>>,
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
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Snapshot {
    /// Numbers the nodes and the edges of `tables` (see `contextdb_planner::source`).
    pub fn new(
        tables: BTreeMap<String, Arc<TableData>>,
        current: BTreeMap<String, iceberg::table::Table>,
        cache: Arc<Cache>,
    ) -> crate::Result<Snapshot> {
        let offsets = |kind: TableKind| -> crate::Result<(Vec<(String, u32)>, u32)> {
            let mut next = 0u64;
            let mut out = Vec::new();
            for (name, t) in tables.iter().filter(|(_, t)| t.info.kind == kind) {
                out.push((name.clone(), next as u32));
                next += t.rows.num_rows() as u64;
                if next > contextdb_planner::source::MAX_ORDINALS {
                    return Err(crate::Error::new(
                        crate::ErrorKind::Resource,
                        format!(
                            "more than {} {}s in one graph",
                            contextdb_planner::source::MAX_ORDINALS,
                            kind.as_str()
                        ),
                    ));
                }
            }
            Ok((out, next as u32))
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
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<TableData>> {
        self.tables.get(name)
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

    fn of_kind(&self, name: &str, kind: TableKind) -> DfResult<&Arc<TableData>> {
        self.tables
            .get(name)
            .filter(|t| t.info.kind == kind)
            .ok_or_else(|| DataFusionError::Plan(format!("no {} table `{name}`", kind.as_str())))
    }

    fn edge_info(data: &TableData) -> Option<EdgeTableInfo> {
        Some(EdgeTableInfo {
            table: data.info.name.clone(),
            rel_type: data
                .info
                .rel_type
                .clone()
                .unwrap_or_else(|| data.info.name.clone()),
            from: data.info.from.clone()?,
            to: data.info.to.clone()?,
            schema: data.schema(),
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
                    schema: data.schema(),
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

    fn node_rows(&self, label: &str) -> DfResult<Arc<RecordBatch>> {
        Ok(self.of_kind(label, TableKind::Node)?.rows.clone())
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

    fn edge_rows(&self, rel_type: &str) -> DfResult<Arc<RecordBatch>> {
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
