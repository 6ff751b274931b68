//! Bulk ingest of Arrow batches into a table that exists or that the ingest creates (what
//! Flight SQL's DoPut ingest and ADBC's `adbc_ingest` ask for), in one commit: the table's
//! creation or replacement and all of its rows are visible together or not at all.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use contextql::ast;
use futures::Stream;

use crate::database::Database;
use crate::error::{Error, Result};
use crate::schema::{
    DEFAULT_GRAPH, StoredColumn, TableInfo, TableKind, ast_type, display_key, table_key,
};

/// What an ingest does when its table exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    /// Refuse (ADBC mode `create`).
    Fail,
    /// Add the rows (`append`, `create_append`).
    Append,
    /// Replace the table by a new one of the batches' columns holding only these rows
    /// (`replace`). It keeps the table's kind, key and endpoints; its vector indexes go.
    Replace,
}

/// What an ingest does when its table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Refuse (ADBC mode `append`).
    Fail,
    /// Create it from the batches' schema (`create`, `replace`, `create_append`).
    Create,
}

/// The kind of table an ingest creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewTable {
    /// A SQL table, with an optional primary key.
    Table { primary_key: Option<String> },
    /// A node table keyed by `primary_key` (a BIGINT, INT or VARCHAR column).
    Node { primary_key: String },
    /// An edge table from node table `from` to node table `to`; the batches carry `src` and
    /// `dst`, the endpoints' keys.
    Edge { from: String, to: String },
}

/// Where an ingest goes and what it does there.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// The SQL schema (None: `main`, the graph's).
    pub schema: Option<String>,
    pub table: String,
    pub if_exists: IfExists,
    pub if_missing: IfMissing,
    /// The table to create (None: a SQL table, or for a replacement the replaced table's
    /// kind).
    pub new_table: Option<NewTable>,
}

impl Database {
    /// Ingests `batches` (of schema `input`) as `target` says, in one commit, holding the
    /// write lock throughout; returns the rows ingested. Rows are checked as `COPY` checks
    /// them (columns the table has, types that convert, unique non-null node keys) and written
    /// to data files as they arrive, so memory holds at most one chunk
    /// ([`crate::LOAD_CHUNK_BYTES`]). An error anywhere commits nothing.
    pub async fn ingest<S>(&self, target: &Ingest, input: SchemaRef, batches: S) -> Result<u64>
    where
        S: Stream<Item = Result<RecordBatch>> + Unpin + Send,
    {
        let schema = target.schema.as_deref().filter(|s| *s != DEFAULT_GRAPH);
        if let Some(s) = schema
            && !self.sql_schemas().await?.iter().any(|known| known == s)
        {
            return Err(Error::plan(format!(
                "schema `{s}` does not exist (CREATE SCHEMA {s} first)"
            )));
        }
        let key = table_key(schema, &target.table);
        let shown = display_key(&key);
        let _guard = self.write_lock.lock().await;
        if crate::views::views(self).await?.contains_key(&key) {
            return Err(Error::plan(format!(
                "`{shown}` is a view; ingest into a table"
            )));
        }
        let snapshot = self.snapshot_unloaded(None).await?;
        let existing = snapshot.tables.get(&key).map(|slot| slot.info.clone());
        let (new_table, replace) = match (&existing, target.if_exists, target.if_missing) {
            (Some(_), IfExists::Fail, _) => {
                return Err(Error::plan(format!(
                    "table `{shown}` already exists (ingest mode create; append, replace or \
                     create_append write to an existing table)"
                )));
            }
            (Some(_), IfExists::Append, _) => (None, false),
            (Some(info), IfExists::Replace, _) => {
                let kept = match &info.kind {
                    TableKind::Node => NewTable::Node {
                        primary_key: info.primary_key.clone().unwrap_or_default(),
                    },
                    TableKind::Edge => NewTable::Edge {
                        from: info.from.clone().unwrap_or_default(),
                        to: info.to.clone().unwrap_or_default(),
                    },
                    TableKind::Table => NewTable::Table {
                        primary_key: info.primary_key.clone(),
                    },
                };
                let new_table = target.new_table.clone().unwrap_or(kept);
                if let Some(edge) = snapshot.tables.values().find(|t| t.info.connects(&key)) {
                    // The edges store this table's keys: the replacement keeps their type.
                    let old = snapshot.tables[&key].key_type().ok();
                    let same = match &new_table {
                        NewTable::Node { primary_key } => {
                            let new = input.field_with_name(primary_key).ok();
                            old.is_some() && new.and_then(|f| ast_type(f.data_type()).ok()) == old
                        }
                        _ => false,
                    };
                    if !same {
                        return Err(Error::plan(format!(
                            "edge table `{}` connects node table `{shown}`; a replacement must \
                             be a node table keyed by a column of the same type",
                            edge.info.name
                        )));
                    }
                }
                (Some(new_table), true)
            }
            (None, _, IfMissing::Fail) => {
                return Err(Error::plan(format!(
                    "table `{shown}` does not exist (ingest mode append; create, replace or \
                     create_append create it)"
                )));
            }
            (None, _, IfMissing::Create) => (
                Some(
                    target
                        .new_table
                        .clone()
                        .unwrap_or(NewTable::Table { primary_key: None }),
                ),
                false,
            ),
        };
        let mut created = Vec::new();
        if let Some(new_table) = new_table {
            let (columns, info) = self.new_table(&snapshot, &key, &input, &new_table)?;
            created.push(
                crate::ddl::stage(self, &key, columns, info, &HashMap::new(), replace).await?,
            );
        }
        let snapshot = self
            .snapshot_unloaded_with(None, created.iter().map(|t| t.table.clone()).collect())
            .await?;
        snapshot.load([key.as_str()]).await?;
        crate::ddl::append_stream(
            self,
            &snapshot,
            &key,
            "ingest",
            batches,
            0,
            created,
            &|_, _, _| {},
        )
        .await
    }

    /// The columns and description of table `key`, created by an ingest of `input`.
    fn new_table(
        &self,
        snapshot: &crate::graph_source::Snapshot,
        key: &str,
        input: &SchemaRef,
        new_table: &NewTable,
    ) -> Result<(Vec<StoredColumn>, TableInfo)> {
        let shown = display_key(key);
        let (schema, name) = crate::schema::split_key(key);
        let mut info = TableInfo::from_properties(&shown, &Default::default());
        if !matches!(new_table, NewTable::Table { .. }) {
            if schema.is_some() {
                return Err(Error::plan(format!(
                    "`{shown}`: node and edge tables live in schema `{DEFAULT_GRAPH}`"
                )));
            }
            crate::ddl::check_name(&ident(name))?;
            for field in input.fields() {
                crate::ddl::check_name(&ident(field.name()))?;
            }
        } else {
            crate::schema::check_sql_name("table", name)?;
        }
        let column = |name: &str| {
            input.field_with_name(name).map_err(|_| {
                Error::plan(format!(
                    "`{shown}`: the ingested batches have no column `{name}`"
                ))
            })
        };
        match new_table {
            NewTable::Table { primary_key } => {
                info.kind = TableKind::Table;
                if let Some(pk) = primary_key {
                    column(pk)?;
                }
                info.primary_key = primary_key.clone();
            }
            NewTable::Node { primary_key } => {
                let field = column(primary_key)?;
                if !matches!(
                    ast_type(field.data_type())?,
                    ast::DataType::Int64 | ast::DataType::Int32 | ast::DataType::String
                ) {
                    return Err(Error::plan(format!(
                        "`{shown}`: primary key `{primary_key}` is {}; a node table's key must \
                         be BIGINT, INT or VARCHAR",
                        field.data_type()
                    )));
                }
                info.kind = TableKind::Node;
                info.primary_key = Some(primary_key.clone());
            }
            NewTable::Edge { from, to } => {
                column("src")?;
                column("dst")?;
                info.kind = TableKind::Edge;
                info.from = Some(from.clone());
                info.to = Some(to.clone());
            }
        }
        let mut columns = crate::schema::stored_columns(input, &mut info)?;
        if let NewTable::Edge { from, to } = new_table {
            // An edge's endpoints are stored as its node tables' keys are.
            for (column, label) in [("src", from), ("dst", to)] {
                let node = snapshot
                    .tables
                    .get(label.as_str())
                    .filter(|t| t.info.kind == TableKind::Node)
                    .ok_or_else(|| {
                        Error::plan(format!(
                            "`{shown}`: `{label}` is not a node table (an edge table connects two)"
                        ))
                    })?;
                let key_type = node.key_type()?;
                let slot = columns
                    .iter_mut()
                    .find(|(name, ..)| name == column)
                    .expect("checked above");
                *slot = (column.to_string(), key_type, true);
            }
        }
        Ok((columns, info))
    }
}

fn ident(name: &str) -> ast::Ident {
    ast::Ident {
        name: name.to_string(),
        span: Default::default(),
    }
}
