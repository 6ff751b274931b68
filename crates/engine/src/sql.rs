//! SQL statements through DataFusion over the same tables.
//!
//! Queries run as DataFusion plans over the statement's snapshot (in-memory tables of the hot
//! tier). INSERT/UPDATE/DELETE and CREATE/DROP TABLE are intercepted after DataFusion plans
//! them and applied to the Iceberg tables, committed like every other write.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::Session;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::Constraint;
use datafusion::datasource::MemTable;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{DdlStatement, DmlStatement, Expr, LogicalPlan, WriteOp};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use iceberg::{Catalog, TableCreation};

use crate::QueryStream;
use crate::StatementResult;
use crate::database::{Database, message, rows_affected};
use crate::error::{Error, Result};
use crate::graph_source::Snapshot;
use crate::route::Language;
use crate::schema::{DEFAULT_GRAPH, TableInfo, TableKind, ast_type, iceberg_schema};
use crate::session::DEFAULT_CATALOG;
use crate::write::{TableEdits, commit_edits};

fn first_word(text: &str) -> String {
    let mut rest = text.trim_start();
    loop {
        if rest.starts_with("--") {
            rest = rest
                .split_once('\n')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            break;
        }
    }
    rest.split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// A session for one SQL statement: the database's shared functions and options, with every
/// table of `snapshot` in the default schema and `system.snapshots`.
pub(crate) fn sql_context(db: &Database, snapshot: &Arc<Snapshot>) -> Result<SessionContext> {
    let main = Arc::new(MemorySchemaProvider::new());
    for (name, slot) in &snapshot.tables {
        let table = SnapshotTable {
            snapshot: snapshot.clone(),
            name: name.clone(),
            schema: slot.schema.clone(),
        };
        main.register_table(name.clone(), Arc::new(table))?;
    }
    let system = Arc::new(MemorySchemaProvider::new());
    system.register_table(
        "snapshots".to_string(),
        Arc::new(snapshots_table(snapshot)?),
    )?;
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog.register_schema(DEFAULT_GRAPH, main)?;
    catalog.register_schema("system", system)?;
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    catalogs.register_catalog(DEFAULT_CATALOG.to_string(), catalog);
    Ok(SessionContext::new_with_state(
        db.sessions.sql_state(catalogs),
    ))
}

/// A table of the statement's snapshot whose rows are loaded when a plan scans it, so a
/// query reads only the tables it names.
#[derive(Debug)]
struct SnapshotTable {
    snapshot: Arc<Snapshot>,
    name: String,
    schema: SchemaRef,
}

#[async_trait::async_trait]
impl TableProvider for SnapshotTable {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.snapshot
            .load([self.name.as_str()])
            .await
            .map_err(Error::into_datafusion)?;
        let data = self.snapshot.get(&self.name).ok_or_else(|| {
            DataFusionError::Internal(format!("`{}` is not in the snapshot", self.name))
        })?;
        MemTable::try_new(self.schema.clone(), vec![vec![(*data.rows).clone()]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// `system.snapshots`: every snapshot of every table, for time travel.
fn snapshots_table(snapshot: &Snapshot) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("snapshot_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new(
            "committed_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("operation", DataType::Utf8, false),
        Field::new("is_current", DataType::Boolean, false),
    ]));
    let (mut names, mut ids, mut parents, mut times, mut ops, mut current) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (name, table) in &snapshot.current {
        let cur = table.metadata().current_snapshot_id();
        for s in table.metadata().snapshots() {
            names.push(name.clone());
            ids.push(s.snapshot_id());
            parents.push(s.parent_snapshot_id());
            times.push(s.timestamp_ms());
            ops.push(s.summary().operation.as_str().to_string());
            current.push(Some(s.snapshot_id()) == cur);
        }
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(parents)),
            Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
            Arc::new(StringArray::from(ops)),
            Arc::new(BooleanArray::from(current)),
        ],
    )?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

pub async fn execute(db: &Database, text: &str) -> Result<QueryStream> {
    let ctx_and_plan = plan(db, text).await?;
    match ctx_and_plan {
        Planned::Done(result) => Ok(result.into_stream()),
        Planned::Query(query) => {
            let (ctx, plan) = *query;
            let df = ctx.execute_logical_plan(plan).await?;
            Ok(QueryStream::rows(Language::Sql, df.execute_stream().await?))
        }
    }
}

/// A SQL statement that has run (DDL, DML), or a query to stream.
enum Planned {
    Done(StatementResult),
    /// Boxed: a session is large, and most statements never build this variant.
    Query(Box<(SessionContext, LogicalPlan)>),
}

async fn plan(db: &Database, text: &str) -> Result<Planned> {
    let writes = matches!(
        first_word(text).as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "CREATE" | "DROP"
    );
    let _guard = if writes {
        Some(db.write_lock.lock().await)
    } else {
        None
    };
    // A reader loads the tables its plan scans; a writer may touch any table.
    let snapshot = if writes {
        db.snapshot(None).await?
    } else {
        db.snapshot_unloaded(None).await?
    };
    let ctx = sql_context(db, &snapshot)?;
    let plan = ctx.state().create_logical_plan(text).await?;
    let done = match plan {
        LogicalPlan::Dml(dml) => dml_statement(db, &ctx, &snapshot, dml).await,
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) => {
            let name = c.name.table().to_string();
            if snapshot.get(&name).is_some() {
                if c.if_not_exists {
                    return Ok(Planned::Done(message(Language::Sql, "table exists")));
                }
                return Err(Error::plan(format!("table `{name}` already exists")));
            }
            let schema = c.input.schema().as_arrow().clone();
            let mut info = TableInfo::from_properties(&name, &Default::default());
            info.kind = TableKind::Table;
            for constraint in c.constraints.iter() {
                if let Constraint::PrimaryKey(indices) = constraint
                    && let [i] = indices.as_slice()
                {
                    info.primary_key = Some(schema.field(*i).name().clone());
                }
            }
            let columns = schema
                .fields()
                .iter()
                .map(|f| {
                    let t = ast_type(f.data_type())?;
                    if let contextql::ast::DataType::Vector(d) = t {
                        info.vectors.insert(f.name().clone(), d as i32);
                    }
                    let required =
                        !f.is_nullable() || info.primary_key.as_deref() == Some(f.name());
                    Ok((f.name().clone(), t, required))
                })
                .collect::<Result<Vec<_>>>()?;
            let creation = TableCreation::builder()
                .name(name.clone())
                .schema(iceberg_schema(&columns)?)
                .properties(info.properties())
                .build();
            db.catalog.create_table(&db.namespace, creation).await?;
            let batches = ctx
                .execute_logical_plan((*c.input).clone())
                .await?
                .collect()
                .await?;
            if batches.iter().any(|b| b.num_rows() > 0) {
                // CREATE TABLE AS SELECT: the rows go in with the next catalog version.
                let snapshot = db.snapshot(None).await?;
                let rows = append(db, &snapshot, &name, batches).await?;
                return Ok(Planned::Done(rows_affected(Language::Sql, rows)));
            }
            Ok(message(Language::Sql, "table created"))
        }
        LogicalPlan::Ddl(DdlStatement::DropTable(d)) => {
            let name = d.name.table().to_string();
            let Some(data) = snapshot.get(&name) else {
                if d.if_exists {
                    return Ok(Planned::Done(message(Language::Sql, "nothing to drop")));
                }
                return Err(Error::plan(format!("table `{name}` does not exist")));
            };
            if data.info.kind == TableKind::Node
                && let Some(edge) = snapshot.tables.values().find(|t| {
                    t.info.kind == TableKind::Edge
                        && (t.info.from.as_deref() == Some(&name)
                            || t.info.to.as_deref() == Some(&name))
                })
            {
                return Err(Error::plan(format!(
                    "edge table `{}` connects `{name}`; drop it first",
                    edge.info.name
                )));
            }
            db.catalog.drop_table(&db.ident(&name)).await?;
            Ok(message(Language::Sql, "table dropped"))
        }
        LogicalPlan::Ddl(other) => Err(Error::plan(format!("{} is not supported", other.name()))),
        LogicalPlan::Copy(copy) => {
            if copy.output_url.contains("://") {
                return Err(Error::plan("COPY ... TO writes local files only"));
            }
            let path = std::path::Path::new(&copy.output_url);
            crate::files::check(&db.file_roots, path, crate::files::Access::Write)?;
            return Ok(Planned::Query(Box::new((ctx, LogicalPlan::Copy(copy)))));
        }
        plan => return Ok(Planned::Query(Box::new((ctx, plan)))),
    };
    done.map(Planned::Done)
}

/// Appends rows (already in the table's column order) to one table.
async fn append(
    db: &Database,
    snapshot: &Snapshot,
    name: &str,
    batches: Vec<RecordBatch>,
) -> Result<u64> {
    let data = snapshot
        .get(name)
        .ok_or_else(|| Error::plan(format!("table `{name}` does not exist")))?;
    let schema = data.schema();
    let mut appended = Vec::new();
    let mut rows = 0;
    for b in batches {
        // INSERT plans project onto the table's columns in order; align names and types.
        let batch = crate::cache::to_user(&b, &schema)
            .map_err(|e| Error::execution(format!("`{name}`: {}", e.message)))?;
        rows += b.num_rows() as u64;
        appended.push(batch);
    }
    let edits = HashMap::from([(
        name.to_string(),
        TableEdits {
            appended,
            ..Default::default()
        },
    )]);
    commit_edits(db, snapshot, &edits).await?;
    Ok(rows)
}

/// A DML input taken apart: the UPDATE projection, the WHERE predicate and the scan.
struct DmlParts<'a> {
    projection: Option<Vec<Expr>>,
    predicate: Option<Expr>,
    scan: &'a LogicalPlan,
}

/// Peels Projection / Filter / alias off a DML input down to its scan.
fn dml_parts(plan: &LogicalPlan) -> Result<DmlParts<'_>> {
    let mut projection = None;
    let mut predicate = None;
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Projection(p) if projection.is_none() => {
                projection = Some(p.expr.clone());
                node = &p.input;
            }
            LogicalPlan::Filter(f) if predicate.is_none() => {
                predicate = Some(f.predicate.clone());
                node = &f.input;
            }
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::TableScan(_) => {
                return Ok(DmlParts {
                    projection,
                    predicate,
                    scan: node,
                });
            }
            _ => {
                return Err(Error::plan(
                    "UPDATE/DELETE support a WHERE over the target table only (no joins or subqueries yet)",
                ));
            }
        }
    }
}

async fn dml_statement(
    db: &Database,
    ctx: &SessionContext,
    snapshot: &Arc<Snapshot>,
    dml: DmlStatement,
) -> Result<StatementResult> {
    let name = dml.table_name.table().to_string();
    let data = snapshot
        .get(&name)
        .ok_or_else(|| Error::plan(format!("table `{name}` does not exist")))?
        .clone();
    match dml.op {
        WriteOp::Insert(_) => {
            let batches = ctx
                .execute_logical_plan((*dml.input).clone())
                .await?
                .collect()
                .await
                .map_err(|e| {
                    // DataFusion checks NOT NULL while building rows; name the table.
                    let e = Error::from(e);
                    if e.message.contains("non-nullable") {
                        Error::execution(format!(
                            "INSERT into `{name}`: a column that must not be null gets null"
                        ))
                    } else {
                        e
                    }
                })?;
            let rows = append(db, snapshot, &name, batches).await?;
            Ok(rows_affected(Language::Sql, rows))
        }
        WriteOp::Delete | WriteOp::Update => {
            let DmlParts {
                projection,
                predicate,
                scan,
            } = dml_parts(&dml.input)?;
            let batch = (*data.rows).clone();
            let n = batch.num_rows();
            let scan_schema = scan.schema();
            let mask: BooleanArray = match &predicate {
                Some(p) => {
                    let expr = ctx.create_physical_expr(p.clone(), scan_schema)?;
                    let value = expr.evaluate(&batch)?.into_array(n)?;
                    value
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| Error::plan("WHERE must be a boolean condition"))?
                        .clone()
                }
                None => BooleanArray::from(vec![true; n]),
            };
            let hits: Vec<u32> = (0..n)
                .filter(|&i| mask.is_valid(i) && mask.value(i))
                .map(|i| i as u32)
                .collect();
            let mut edit = TableEdits::default();
            if matches!(dml.op, WriteOp::Delete) {
                if data.info.kind == TableKind::Node {
                    return Err(Error::plan(format!(
                        "delete nodes of `{name}` with ContextQL (MATCH ... DETACH DELETE) so their relationships go too"
                    )));
                }
                edit.deleted = hits.iter().copied().collect();
            } else {
                let exprs =
                    projection.ok_or_else(|| Error::internal("UPDATE without projection"))?;
                for (expr, field) in exprs.iter().zip(data.schema().fields()) {
                    // Unassigned columns project themselves.
                    if let Expr::Column(c) = expr.clone().unalias()
                        && c.name == *field.name()
                    {
                        continue;
                    }
                    if data.info.primary_key.as_deref() == Some(field.name().as_str())
                        || (data.info.kind == TableKind::Edge
                            && (field.name() == "src" || field.name() == "dst"))
                    {
                        return Err(Error::plan(format!("`{}` cannot be updated", field.name())));
                    }
                    let physical = ctx.create_physical_expr(expr.clone(), scan_schema)?;
                    let values = physical.evaluate(&batch)?.into_array(n)?;
                    let values = if values.data_type() == field.data_type() {
                        values
                    } else {
                        arrow::compute::cast(&values, field.data_type())?
                    };
                    if !field.is_nullable() && hits.iter().any(|&i| values.is_null(i as usize)) {
                        return Err(Error::execution(format!(
                            "`{name}.{}` must not be null",
                            field.name()
                        )));
                    }
                    for &i in &hits {
                        edit.updates.entry(i).or_default().push((
                            field.name().clone(),
                            values.clone(),
                            i as usize,
                        ));
                    }
                }
            }
            let edits = HashMap::from([(name.clone(), edit)]);
            commit_edits(db, snapshot, &edits).await?;
            Ok(rows_affected(Language::Sql, hits.len() as u64))
        }
        other => Err(Error::plan(format!("{other} is not supported"))),
    }
}
