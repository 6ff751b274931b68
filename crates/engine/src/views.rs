//! SQL views: `CREATE [OR REPLACE] VIEW` / `DROP VIEW`, kept in the catalog as properties of
//! the graph's namespace (`contextdb.view.<name>` = the CREATE VIEW statement), so they
//! survive a restart and commit through the raft log like any catalog change. Each SQL
//! statement plans the views again over its own snapshot and registers them as DataFusion
//! `ViewTable`s, which information_schema lists as views.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::SchemaProvider;
use datafusion::datasource::ViewTable;
use datafusion::logical_expr::{CreateView, DdlStatement, DropView, LogicalPlan};
use datafusion::prelude::SessionContext;
use iceberg::Catalog;

use crate::StatementResult;
use crate::database::{Database, message};
use crate::error::{Error, Result};
use crate::graph_source::Snapshot;
use crate::route::Language;
use crate::schema::DEFAULT_GRAPH;

/// Namespace property prefix of a view's definition.
pub const PROP_VIEW_PREFIX: &str = "contextdb.view.";

/// The most views a graph holds (each SQL statement plans them all).
pub const MAX_VIEWS: usize = 1024;

/// The views of the graph: name → CREATE VIEW statement.
pub(crate) async fn views(db: &Database) -> Result<HashMap<String, String>> {
    let namespace = db.catalog.get_namespace(&db.namespace).await?;
    Ok(namespace
        .properties()
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(PROP_VIEW_PREFIX)?.to_string(), v.clone())))
        .collect())
}

fn check_schema(schema: Option<&str>, name: &str) -> Result<()> {
    match schema {
        None => Ok(()),
        Some(s) if s == DEFAULT_GRAPH => Ok(()),
        Some(s) => Err(Error::plan(format!(
            "view `{s}.{name}`: views live in schema `{DEFAULT_GRAPH}` (other schemas are not \
             supported yet)"
        ))),
    }
}

/// `CREATE [OR REPLACE] VIEW`: DataFusion has planned the query (so it is valid now); the
/// statement text is stored. The caller holds the write lock.
pub(crate) async fn create_view(
    db: &Database,
    snapshot: &Snapshot,
    view: &CreateView,
) -> Result<StatementResult> {
    let name = view.name.table().to_string();
    check_schema(view.name.schema(), &name)?;
    if view.temporary {
        return Err(Error::plan(
            "TEMPORARY views are not supported; a view is stored with the graph",
        ));
    }
    if snapshot.tables.contains_key(&name) {
        return Err(Error::plan(format!(
            "`{name}` is a table; a view needs a name of its own"
        )));
    }
    let definition = view
        .definition
        .clone()
        .ok_or_else(|| Error::internal("CREATE VIEW without its statement text"))?;
    db.update_graph_properties(|properties| {
        let key = format!("{PROP_VIEW_PREFIX}{name}");
        if properties.contains_key(&key) && !view.or_replace {
            return Err(Error::plan(format!("view `{name}` already exists")));
        }
        let count = properties
            .keys()
            .filter(|k| k.starts_with(PROP_VIEW_PREFIX))
            .count();
        if !properties.contains_key(&key) && count >= MAX_VIEWS {
            return Err(Error::new(
                crate::ErrorKind::Resource,
                format!("a graph holds at most {MAX_VIEWS} views"),
            ));
        }
        properties.insert(key, definition);
        Ok(())
    })
    .await?;
    Ok(message(Language::Sql, "view created"))
}

/// `DROP VIEW [IF EXISTS]`. The caller holds the write lock.
pub(crate) async fn drop_view(db: &Database, drop: &DropView) -> Result<StatementResult> {
    let name = drop.name.table().to_string();
    check_schema(drop.name.schema(), &name)?;
    if !views(db).await?.contains_key(&name) {
        if drop.if_exists {
            return Ok(message(Language::Sql, "no such view"));
        }
        return Err(Error::plan(format!("view `{name}` does not exist")));
    }
    db.update_graph_properties(|properties| {
        properties.remove(&format!("{PROP_VIEW_PREFIX}{name}"));
        Ok(())
    })
    .await?;
    Ok(message(Language::Sql, "view dropped"))
}

/// Plans every view over the statement's tables and registers it in `schema`. A view may
/// read another, so views are planned until no more succeed; one that cannot be planned now
/// (a table it reads was dropped) is left out with a warning, and naming it is an error.
pub(crate) async fn register(
    ctx: &SessionContext,
    schema: &Arc<dyn SchemaProvider>,
    views: &HashMap<String, String>,
) -> Result<()> {
    let mut pending: Vec<(String, String)> = views
        .iter()
        .filter(|(name, _)| !schema.table_exist(name))
        .map(|(name, definition)| (name.clone(), definition.clone()))
        .collect();
    pending.sort();
    loop {
        let mut failed = Vec::new();
        let before = pending.len();
        for (name, definition) in pending {
            match ctx.state().create_logical_plan(&definition).await {
                Ok(LogicalPlan::Ddl(DdlStatement::CreateView(view))) => {
                    let table = ViewTable::new(view.input.as_ref().clone(), Some(definition));
                    schema.register_table(name, Arc::new(table))?;
                }
                Ok(_) => {
                    return Err(Error::internal(format!(
                        "the stored definition of view `{name}` is not a CREATE VIEW"
                    )));
                }
                Err(e) => failed.push((name, definition, e)),
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        if failed.len() == before {
            for (name, _, e) in &failed {
                tracing::warn!(view = %name, error = %e, "view cannot be planned; left out");
            }
            return Ok(());
        }
        pending = failed.into_iter().map(|(n, d, _)| (n, d)).collect();
    }
}
