//! One statement's view of the database: every table at one catalog version.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use contextdb_graph::Adjacency;
use contextdb_planner::{EdgeTableInfo, GraphSource, NodeTableInfo};
use datafusion::error::{DataFusionError, Result as DfResult};

use crate::cache::{Cache, TableData};
use crate::schema::TableKind;

/// Tables by name (the default graph), all read at one catalog version.
pub struct Snapshot {
    pub tables: BTreeMap<String, Arc<TableData>>,
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
    pub fn get(&self, name: &str) -> Option<&Arc<TableData>> {
        self.tables.get(name)
    }

    fn of_kind(&self, name: &str, kind: TableKind) -> DfResult<&Arc<TableData>> {
        self.tables
            .get(name)
            .filter(|t| t.info.kind == kind)
            .ok_or_else(|| DataFusionError::Plan(format!("no {} table `{name}`", kind.as_str())))
    }

    fn edge_info(data: &TableData) -> Option<EdgeTableInfo> {
        Some(EdgeTableInfo {
            rel_type: data.info.name.clone(),
            from: data.info.from.clone()?,
            to: data.info.to.clone()?,
            schema: data.schema(),
        })
    }
}

impl GraphSource for Snapshot {
    fn node_table(&self, label: &str) -> Option<NodeTableInfo> {
        let data = self
            .tables
            .get(label)
            .filter(|t| t.info.kind == TableKind::Node)?;
        Some(NodeTableInfo {
            label: label.to_string(),
            primary_key: data.info.primary_key.clone()?,
            schema: data.schema(),
        })
    }

    fn edge_table(&self, rel_type: &str) -> Option<EdgeTableInfo> {
        let data = self
            .tables
            .get(rel_type)
            .filter(|t| t.info.kind == TableKind::Edge)?;
        Self::edge_info(data)
    }

    fn edge_tables(&self) -> Vec<EdgeTableInfo> {
        self.tables
            .values()
            .filter(|t| t.info.kind == TableKind::Edge)
            .filter_map(|t| Self::edge_info(t))
            .collect()
    }

    fn node_rows(&self, label: &str) -> DfResult<Arc<RecordBatch>> {
        Ok(self.of_kind(label, TableKind::Node)?.rows.clone())
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
        let from = self.of_kind(from, TableKind::Node)?;
        let to = self.of_kind(to, TableKind::Node)?;
        self.cache
            .adjacency(edge, from, to)
            .map_err(|e| DataFusionError::Execution(e.to_string()))
    }
}
