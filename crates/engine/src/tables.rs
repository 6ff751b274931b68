//! What a client browses: the SQL schemas, and each table and view with its columns, primary
//! key and, for an edge table, the node tables its endpoints refer to.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::database::Database;
use crate::error::Result;
use crate::schema::{DEFAULT_GRAPH, TableKind, split_key};
use crate::settings::Settings;

/// What a table is, as catalogs list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableType {
    /// A node label.
    Node,
    /// An edge type.
    Edge,
    /// A plain SQL table.
    Table,
    View,
}

impl TableType {
    /// The name clients see in `table_type` (JDBC's `getTableTypes`).
    pub fn as_str(self) -> &'static str {
        match self {
            TableType::Node => "NODE TABLE",
            TableType::Edge => "EDGE TABLE",
            TableType::Table => "TABLE",
            TableType::View => "VIEW",
        }
    }

    pub const ALL: [TableType; 4] = [
        TableType::Node,
        TableType::Edge,
        TableType::Table,
        TableType::View,
    ];
}

/// One table or view at the current catalog version.
#[derive(Debug, Clone)]
pub struct TableDescription {
    /// Its SQL schema (`main` for the graph's node and edge tables).
    pub schema: String,
    pub name: String,
    pub table_type: TableType,
    /// Its columns as SQL reads them.
    pub columns: SchemaRef,
    pub primary_key: Option<String>,
    /// For an edge table: the node tables its `src` and `dst` refer to (by primary key).
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Database {
    /// The SQL schemas: `main` (the graph) and every schema created with CREATE SCHEMA.
    pub async fn schemas(&self) -> Result<Vec<String>> {
        let mut schemas = vec![DEFAULT_GRAPH.to_string()];
        schemas.extend(self.sql_schemas().await?);
        Ok(schemas)
    }

    /// The catalog's version: the index of the last catalog log entry applied here (each
    /// commit, DDL statement and maintenance run adds one).
    pub fn catalog_version(&self) -> u64 {
        self.catalog.applied_index()
    }

    /// Every table and view at the current catalog version, ordered by schema and name.
    pub async fn describe_tables(&self) -> Result<Vec<TableDescription>> {
        let snapshot = self.snapshot_unloaded(None).await?;
        let mut tables = Vec::new();
        for (key, slot) in &snapshot.tables {
            let (schema, name) = split_key(key);
            let info = &slot.info;
            let table_type = match info.kind {
                TableKind::Node => TableType::Node,
                TableKind::Edge => TableType::Edge,
                TableKind::Table => TableType::Table,
            };
            tables.push(TableDescription {
                schema: schema.unwrap_or(DEFAULT_GRAPH).to_string(),
                name: name.to_string(),
                table_type,
                columns: slot.schema.clone(),
                primary_key: info.primary_key.clone(),
                from: info.from.clone(),
                to: info.to.clone(),
            });
        }
        // A view's columns are those of its plan over the current tables.
        let settings = std::sync::Mutex::new(Settings::default());
        for key in crate::views::views(self).await?.keys() {
            let (schema, name) = split_key(key);
            let schema = schema.unwrap_or(DEFAULT_GRAPH);
            let select = format!("SELECT * FROM {}.{}", quoted(schema), quoted(name));
            let described = crate::sql::describe(self, &select, &settings).await?;
            tables.push(TableDescription {
                schema: schema.to_string(),
                name: name.to_string(),
                table_type: TableType::View,
                columns: Arc::clone(&described.columns),
                primary_key: None,
                from: None,
                to: None,
            });
        }
        tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        Ok(tables)
    }
}

/// `name` as a SQL identifier in double quotes.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
