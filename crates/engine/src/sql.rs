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
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::{Constraint, ParamValues, SchemaReference, TableReference};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{DdlStatement, DmlStatement, Expr, LogicalPlan, Statement, WriteOp};
use datafusion::prelude::SessionContext;
use iceberg::{Catalog, NamespaceIdent};

use crate::StatementResult;
use crate::database::{Database, message, rows_affected};
use crate::error::{Error, Result};
use crate::graph_source::Snapshot;
use crate::provider::{SnapshotTable, StatementWrites, assigned_values, check_deletable};
use crate::route::Language;
use crate::schema::{
    DEFAULT_GRAPH, TableInfo, TableKind, check_sql_name, display_key, split_key, table_key,
};
use crate::session::DEFAULT_CATALOG;
use crate::settings::Settings;
use crate::write::{TableEdits, commit_edits, commit_edits_creating};
use crate::{Description, QueryStream};
use contextdb_planner::Params;
use contextdb_storage::table_io;

fn first_word(text: &str) -> String {
    skip_comments(text)
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// `SET TIME ZONE value` (standard SQL, which DataFusion 53's planner does not take) as the
/// statement it means: `SET datafusion.execution.time_zone = value`, or its RESET for
/// `LOCAL` and `DEFAULT`.
fn time_zone_statement(text: &str) -> Option<String> {
    let rest = skip_comments(text);
    let mut words = rest.split_whitespace();
    for expected in ["SET", "TIME", "ZONE"] {
        if !words.next()?.eq_ignore_ascii_case(expected) {
            return None;
        }
    }
    // The first ZONE is the third word: SET and TIME hold none.
    let after = rest.to_ascii_uppercase().find("ZONE")? + "ZONE".len();
    let value = rest[after..].trim().trim_end_matches(';').trim_end();
    // `SET TIME ZONE = 'x'` and `SET TIME ZONE TO 'x'` (MySQL and Postgres spellings).
    let value = match value.strip_prefix('=') {
        Some(v) => v.trim_start(),
        None if value.len() > 3 && value[..3].eq_ignore_ascii_case("TO ") => {
            value[3..].trim_start()
        }
        None => value,
    };
    if value.eq_ignore_ascii_case("LOCAL") || value.eq_ignore_ascii_case("DEFAULT") {
        return Some("RESET datafusion.execution.time_zone".to_string());
    }
    Some(format!("SET datafusion.execution.time_zone = {value}"))
}

/// `text` from its first character that is not whitespace or inside a comment.
fn skip_comments(text: &str) -> &str {
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
    rest
}

/// A session for one SQL statement: the database's shared functions and options, with every
/// table of `snapshot` in the default schema and `system.snapshots`.
pub(crate) fn sql_context(
    db: &Database,
    snapshot: &Arc<Snapshot>,
    sql_schemas: &Arc<SqlSchemas>,
    writes: &Arc<StatementWrites>,
    settings: &Settings,
) -> Result<SessionContext> {
    let main = Arc::new(MemorySchemaProvider::new());
    let schemas: HashMap<&str, Arc<MemorySchemaProvider>> = sql_schemas
        .iter()
        .map(|s| (s.as_str(), Arc::new(MemorySchemaProvider::new())))
        .collect();
    for (key, slot) in &snapshot.tables {
        let table = SnapshotTable::new(
            snapshot.clone(),
            key.clone(),
            slot.schema.clone(),
            writes.clone(),
        );
        let (schema, name) = split_key(key);
        let provider = match schema {
            None => &main,
            Some(schema) => schemas.get(schema).ok_or_else(|| {
                Error::internal(format!("table `{}` of an unknown schema", display_key(key)))
            })?,
        };
        provider.register_table(name.to_string(), Arc::new(table))?;
    }
    let system = Arc::new(MemorySchemaProvider::new());
    system.register_table(
        "snapshots".to_string(),
        Arc::new(snapshots_table(snapshot)?),
    )?;
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog.register_schema(DEFAULT_GRAPH, main)?;
    catalog.register_schema("system", system)?;
    for (name, provider) in schemas {
        catalog.register_schema(name, provider)?;
    }
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    catalogs.register_catalog(DEFAULT_CATALOG.to_string(), catalog);
    let mut state = db.sessions.sql_state(catalogs)?;
    settings.apply(&mut state)?;
    let ctx = SessionContext::new_with_state(state);
    ctx.register_udtf(
        crate::vector_search::NAME,
        Arc::new(crate::vector_search::VectorSearch {
            snapshot: snapshot.clone(),
            schemas: sql_schemas.clone(),
            writes: writes.clone(),
        }),
    );
    Ok(ctx)
}

/// Schemas no CREATE SCHEMA may make or DROP SCHEMA remove: the default graph's, and those
/// every session has.
const RESERVED_SCHEMAS: [&str; 3] = [DEFAULT_GRAPH, "system", "information_schema"];

/// The SQL schemas of the catalog when a statement started (`Database::sql_schemas`).
pub(crate) type SqlSchemas = std::collections::BTreeSet<String>;

/// The key of the table a SQL statement names (`t`, `schema.t`, `contextdb.schema.t`).
pub(crate) fn table_key_of(schemas: &SqlSchemas, name: &TableReference) -> Result<String> {
    if let Some(catalog) = name.catalog()
        && catalog != DEFAULT_CATALOG
    {
        return Err(Error::plan(format!(
            "catalog `{catalog}` does not exist: a ContextDB database has one catalog, \
             `{DEFAULT_CATALOG}`"
        )));
    }
    match name.schema() {
        None => Ok(name.table().to_string()),
        Some(schema) if schema == DEFAULT_GRAPH => Ok(name.table().to_string()),
        Some(schema) if schemas.contains(schema) => Ok(table_key(Some(schema), name.table())),
        Some(schema) => Err(Error::plan(format!(
            "schema `{schema}` does not exist (CREATE SCHEMA {schema} makes it)"
        ))),
    }
}

/// The schema a CREATE or DROP SCHEMA names, after checking its catalog.
fn schema_name(name: &str) -> Result<&str> {
    let (catalog, schema) = match name.split_once('.') {
        Some((catalog, schema)) => (Some(catalog), schema),
        None => (None, name),
    };
    if let Some(catalog) = catalog
        && catalog != DEFAULT_CATALOG
    {
        return Err(Error::plan(format!(
            "catalog `{catalog}` does not exist: a ContextDB database has one catalog, \
             `{DEFAULT_CATALOG}`"
        )));
    }
    check_sql_name("schema", schema)?;
    if RESERVED_SCHEMAS.contains(&schema) {
        return Err(Error::plan(format!(
            "schema `{schema}` is built in: it can be neither created nor dropped"
        )));
    }
    Ok(schema)
}

/// CREATE SCHEMA: a namespace of the catalog beside the graph's, for SQL tables.
async fn create_schema(
    db: &Database,
    schemas: &SqlSchemas,
    name: &str,
    if_not_exists: bool,
) -> Result<StatementResult> {
    let schema = schema_name(name)?;
    if schemas.contains(schema) {
        if if_not_exists {
            return Ok(message(Language::Sql, "schema exists"));
        }
        return Err(Error::plan(format!("schema `{schema}` already exists")));
    }
    db.catalog
        .create_namespace(&NamespaceIdent::new(schema.to_string()), HashMap::new())
        .await?;
    Ok(message(Language::Sql, "schema created"))
}

/// DROP SCHEMA: refused while the schema holds tables, unless CASCADE drops them first (one
/// catalog entry each; a DROP cut short leaves the schema with the tables not yet dropped,
/// and running it again finishes it).
async fn drop_schema(
    db: &Database,
    snapshot: &Snapshot,
    schemas: &SqlSchemas,
    name: &SchemaReference,
    if_exists: bool,
    cascade: bool,
) -> Result<StatementResult> {
    let name = name.to_string();
    let schema = schema_name(&name)?;
    if !schemas.contains(schema) {
        if if_exists {
            return Ok(message(Language::Sql, "nothing to drop"));
        }
        return Err(Error::plan(format!("schema `{schema}` does not exist")));
    }
    let tables: Vec<&String> = snapshot
        .tables
        .keys()
        .filter(|key| split_key(key).0 == Some(schema))
        .collect();
    if !tables.is_empty() && !cascade {
        return Err(Error::plan(format!(
            "schema `{schema}` holds {} table(s); DROP SCHEMA {schema} CASCADE drops them too",
            tables.len()
        )));
    }
    for key in tables {
        db.catalog.drop_table(&db.ident(key)).await?;
    }
    db.catalog
        .drop_namespace(&NamespaceIdent::new(schema.to_string()))
        .await?;
    Ok(message(Language::Sql, "schema dropped"))
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
        Field::new("total_rows", DataType::Int64, true),
        Field::new("data_files", DataType::Int64, true),
    ]));
    let (mut names, mut ids, mut parents, mut times, mut ops, mut current) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut total_rows, mut data_files) = (vec![], vec![]);
    for (name, table) in &snapshot.current {
        let cur = table.metadata().current_snapshot_id();
        for s in table.metadata().snapshots() {
            names.push(display_key(name));
            ids.push(s.snapshot_id());
            parents.push(s.parent_snapshot_id());
            times.push(s.timestamp_ms());
            ops.push(s.summary().operation.as_str().to_string());
            current.push(Some(s.snapshot_id()) == cur);
            let summary =
                |key: &str| -> Option<i64> { i64::try_from(table_io::summary_count(s, key)?).ok() };
            total_rows.push(summary(table_io::TOTAL_RECORDS));
            data_files.push(summary(table_io::TOTAL_DATA_FILES));
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
            Arc::new(Int64Array::from(total_rows)),
            Arc::new(Int64Array::from(data_files)),
        ],
    )?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

pub async fn execute(
    db: &Database,
    text: &str,
    params: &Params,
    settings: &std::sync::Mutex<Settings>,
) -> Result<QueryStream> {
    let ctx_and_plan = plan(db, text, params, settings).await?;
    match ctx_and_plan {
        Planned::Done(result) => Ok(result.into_stream()),
        Planned::Query(query) => {
            let (ctx, plan) = *query;
            let df = ctx.execute_logical_plan(plan).await?;
            Ok(QueryStream::rows(Language::Sql, df.execute_stream().await?))
        }
    }
}

/// What a SQL statement is planned with: the statement's snapshot and a DataFusion session
/// over it, with the session's settings and the catalog's views.
struct Planning {
    snapshot: Arc<Snapshot>,
    schemas: Arc<SqlSchemas>,
    outbox: Arc<StatementWrites>,
    ctx: SessionContext,
    views: HashMap<String, String>,
}

async fn planning(db: &Database, settings: &std::sync::Mutex<Settings>) -> Result<Planning> {
    // Tables are loaded when a plan needs their rows: a scan reads the hot tier or the data
    // files, a write loads the table it changes.
    let snapshot = db.snapshot_unloaded(None).await?;
    let schemas = Arc::new(db.sql_schemas().await?);
    let outbox = Arc::new(StatementWrites::default());
    let current = settings.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ctx = sql_context(db, &snapshot, &schemas, &outbox, &current)?;
    let views = crate::views::views(db).await?;
    if !views.is_empty() {
        let schema = ctx
            .catalog(DEFAULT_CATALOG)
            .and_then(|c| c.schema(DEFAULT_GRAPH))
            .ok_or_else(|| Error::internal("the session has no graph schema"))?;
        crate::views::register(&ctx, &schema, &views).await?;
    }
    Ok(Planning {
        snapshot,
        schemas,
        outbox,
        ctx,
        views,
    })
}

/// The columns a SQL statement returns and the parameters it takes, from its plan, without
/// running it. Statements other than queries describe no columns (what they return is known
/// once they have run).
pub(crate) async fn describe(
    db: &Database,
    text: &str,
    settings: &std::sync::Mutex<Settings>,
) -> Result<Description> {
    let time_zone = time_zone_statement(text);
    let text = time_zone.as_deref().unwrap_or(text);
    let ctx = planning(db, settings).await?.ctx;
    let plan = ctx.state().create_logical_plan(text).await?;
    let columns = match &plan {
        LogicalPlan::Statement(_) | LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) => {
            Arc::new(Schema::empty())
        }
        query => Arc::new(query.schema().as_arrow().clone()),
    };
    let mut parameters: Vec<(String, Option<DataType>)> =
        plan.get_parameter_types()?.into_iter().collect();
    // `$1, $2, ...` in their order, then names alphabetically.
    parameters.sort_by_cached_key(|(name, _)| {
        let name = name.trim_start_matches('$').to_string();
        (name.parse::<u64>().unwrap_or(u64::MAX), name)
    });
    let parameters = parameters
        .into_iter()
        .map(|(name, ty)| {
            Field::new(
                name.trim_start_matches('$'),
                ty.unwrap_or(DataType::Null),
                true,
            )
        })
        .collect::<Vec<_>>();
    Ok(Description {
        language: Language::Sql,
        columns,
        parameters: Arc::new(Schema::new(parameters)),
    })
}

/// A SQL statement that has run (DDL, DML), or a query to stream.
enum Planned {
    Done(StatementResult),
    /// Boxed: a session is large, and most statements never build this variant.
    Query(Box<(SessionContext, LogicalPlan)>),
}

async fn plan(
    db: &Database,
    text: &str,
    params: &Params,
    settings: &std::sync::Mutex<Settings>,
) -> Result<Planned> {
    let writes = matches!(
        first_word(text).as_str(),
        // EXECUTE may run a prepared write.
        "INSERT" | "UPDATE" | "DELETE" | "CREATE" | "DROP" | "TRUNCATE" | "EXECUTE"
    );
    let _guard = if writes {
        Some(db.write_lock.lock().await)
    } else {
        None
    };
    let time_zone = time_zone_statement(text);
    let text = time_zone.as_deref().unwrap_or(text);
    let Planning {
        snapshot,
        schemas,
        outbox,
        ctx,
        views,
    } = planning(db, settings).await?;
    let plan = ctx.state().create_logical_plan(text).await?;
    let plan = match plan {
        // The session keeps the statement's text; DataFusion checks it now and binds it at
        // each EXECUTE, planned over that statement's snapshot.
        LogicalPlan::Statement(Statement::Prepare(prepare)) => {
            let name = prepare.name.clone();
            ctx.execute_logical_plan(LogicalPlan::Statement(Statement::Prepare(prepare)))
                .await?;
            let mut settings = settings.lock().unwrap_or_else(|p| p.into_inner());
            settings.prepare(&name, text)?;
            return Ok(Planned::Done(message(Language::Sql, "prepared")));
        }
        LogicalPlan::Statement(Statement::Execute(execute)) => {
            let prepared = settings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .prepared(&execute.name)
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::execution(format!(
                        "Prepared statement '{}' does not exist",
                        execute.name
                    ))
                })?;
            ctx.sql(&prepared).await?;
            // DataFusion binds the parameters; the bound plan runs as any other statement.
            let bound = ctx
                .execute_logical_plan(LogicalPlan::Statement(Statement::Execute(execute)))
                .await?;
            bound.logical_plan().clone()
        }
        LogicalPlan::Statement(Statement::Deallocate(deallocate)) => {
            let mut settings = settings.lock().unwrap_or_else(|p| p.into_inner());
            if !settings.deallocate(&deallocate.name) {
                return Err(Error::execution(format!(
                    "Prepared statement '{}' does not exist",
                    deallocate.name
                )));
            }
            return Ok(Planned::Done(message(Language::Sql, "deallocated")));
        }
        // Bound parameters: `$1` by position and `$name` by name, as in ContextQL (a
        // client binding by position sends both keys).
        other if !params.is_empty() => other.with_param_values(ParamValues::Map(
            params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        ))?,
        other => other,
    };
    let done = match plan {
        // SHOW is a query of information_schema.df_settings, which the statement's session
        // state answers with the session's settings applied.
        LogicalPlan::Statement(Statement::SetVariable(set)) => {
            let mut settings = settings.lock().unwrap_or_else(|p| p.into_inner());
            settings.set(&set.variable, &set.value)?;
            Ok(message(Language::Sql, "set"))
        }
        LogicalPlan::Statement(Statement::ResetVariable(reset)) => {
            let mut settings = settings.lock().unwrap_or_else(|p| p.into_inner());
            settings.reset(&reset.variable)?;
            Ok(message(Language::Sql, "reset"))
        }
        LogicalPlan::Dml(_) if !writes => Err(Error::internal(
            "a write statement was planned without the write lock",
        )),
        LogicalPlan::Dml(dml) => dml_statement(db, &ctx, &snapshot, &schemas, &outbox, dml).await,
        LogicalPlan::Ddl(DdlStatement::CreateView(v)) => {
            crate::views::create_view(db, &snapshot, &v).await
        }
        LogicalPlan::Ddl(DdlStatement::DropView(d)) => crate::views::drop_view(db, &d).await,
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) => {
            let name = table_key_of(&schemas, &c.name)?;
            check_sql_name("table", c.name.table())?;
            if views.contains_key(&name) {
                return Err(Error::plan(format!(
                    "`{name}` is a view; a table needs a name of its own"
                )));
            }
            let replace = match snapshot.tables.get(&name) {
                None => false,
                Some(_) if c.if_not_exists => {
                    return Ok(Planned::Done(message(Language::Sql, "table exists")));
                }
                Some(existing) if c.or_replace => {
                    if existing.info.kind != TableKind::Table {
                        return Err(Error::plan(format!(
                            "`{name}` is a {} table of the graph; CREATE OR REPLACE TABLE \
                             replaces SQL tables only (drop it with DROP {} TABLE)",
                            existing.info.kind.as_str(),
                            existing.info.kind.as_str().to_ascii_uppercase(),
                        )));
                    }
                    true
                }
                Some(_) => {
                    return Err(Error::plan(format!(
                        "table `{}` already exists",
                        display_key(&name)
                    )));
                }
            };
            let schema = c.input.schema().as_arrow().clone();
            let mut info = TableInfo::from_properties(&display_key(&name), &Default::default());
            info.kind = TableKind::Table;
            for constraint in c.constraints.iter() {
                if let Constraint::PrimaryKey(indices) = constraint
                    && let [i] = indices.as_slice()
                {
                    info.primary_key = Some(schema.field(*i).name().clone());
                }
            }
            let columns = crate::schema::stored_columns(&schema, &mut info)?;
            let defaults = column_defaults(&c.column_defaults, &columns)?;
            // The query runs before anything is written, and the table is created in the
            // commit of its first rows: a failed CREATE TABLE AS leaves nothing behind.
            let batches = ctx
                .execute_logical_plan((*c.input).clone())
                .await?
                .collect()
                .await?;
            // A replacement is a new table (new id, new row ids) that takes the old one's
            // place in the same commit; the old one's files go at VACUUM.
            let staged = crate::ddl::stage(db, &name, columns, info, &defaults, replace).await?;
            let snapshot = db
                .snapshot_unloaded_with(None, vec![staged.table.clone()])
                .await?;
            snapshot.load([name.as_str()]).await?;
            let rows = append(db, &snapshot, &name, batches, vec![staged]).await?;
            if rows > 0 {
                return Ok(Planned::Done(rows_affected(Language::Sql, rows)));
            }
            Ok(message(Language::Sql, "table created"))
        }
        LogicalPlan::Ddl(DdlStatement::DropTable(d)) => {
            let name = match table_key_of(&schemas, &d.name) {
                Ok(name) => name,
                Err(_) if d.if_exists => {
                    return Ok(Planned::Done(message(Language::Sql, "nothing to drop")));
                }
                Err(e) => return Err(e),
            };
            let Some(data) = snapshot.tables.get(&name) else {
                if d.if_exists {
                    return Ok(Planned::Done(message(Language::Sql, "nothing to drop")));
                }
                return Err(Error::plan(format!(
                    "table `{}` does not exist",
                    display_key(&name)
                )));
            };
            if data.info.kind == TableKind::Node
                && let Some(edge) = snapshot.tables.values().find(|t| t.info.connects(&name))
            {
                return Err(Error::plan(format!(
                    "edge table `{}` connects `{name}`; drop it first",
                    edge.info.name
                )));
            }
            db.catalog.drop_table(&db.ident(&name)).await?;
            Ok(message(Language::Sql, "table dropped"))
        }
        LogicalPlan::Ddl(DdlStatement::CreateCatalogSchema(c)) => {
            create_schema(db, &schemas, &c.schema_name, c.if_not_exists).await
        }
        LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(d)) => {
            drop_schema(db, &snapshot, &schemas, &d.name, d.if_exists, d.cascade).await
        }
        LogicalPlan::Ddl(DdlStatement::CreateCatalog(c)) => Err(Error::plan(format!(
            "CREATE DATABASE `{}`: a ContextDB database has one catalog, `{DEFAULT_CATALOG}`; \
             use CREATE SCHEMA to group tables",
            c.catalog_name
        ))),
        LogicalPlan::Ddl(other) => Err(Error::plan(format!("{} is not supported", other.name()))),
        LogicalPlan::Analyze(analyze) if matches!(*analyze.input, LogicalPlan::Dml(_)) => {
            Err(Error::plan(
                "EXPLAIN ANALYZE of INSERT, UPDATE or DELETE is not supported (it would run the \
                 write); EXPLAIN shows its plan",
            ))
        }
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
/// The `DEFAULT`s of a CREATE TABLE as values of their columns' types. A default must fold
/// to a constant: `now()` or `random()` would need evaluating at each write, and a default is
/// stored as one value (an Iceberg write-default).
fn column_defaults(
    defaults: &[(String, Expr)],
    columns: &[(String, contextql::ast::DataType, bool)],
) -> Result<HashMap<String, iceberg::spec::Literal>> {
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
    let simplifier = ExprSimplifier::new(SimplifyContext::default());
    let mut out = HashMap::new();
    for (name, expr) in defaults {
        let (_, t, _) = columns
            .iter()
            .find(|(c, ..)| c == name)
            .ok_or_else(|| Error::plan(format!("DEFAULT for unknown column `{name}`")))?;
        let value = match simplifier.simplify(expr.clone())? {
            Expr::Literal(value, _) => value,
            other => {
                return Err(Error::plan(format!(
                    "column `{name}`: DEFAULT must be a constant, not {other}; defaults are \
                     stored as values"
                )));
            }
        };
        if let Some(value) = crate::schema::write_default(name, t, &value)? {
            out.insert(name.clone(), value);
        }
    }
    Ok(out)
}

/// Appends `batches` to `name` and commits, creating the staged tables `created` with them.
async fn append(
    db: &Database,
    snapshot: &Snapshot,
    name: &str,
    batches: Vec<RecordBatch>,
    created: Vec<contextdb_catalog::StagedTable>,
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
    let schema = crate::ddl::StagedSchema {
        created,
        ..Default::default()
    };
    commit_edits_creating(db, snapshot, &edits, schema).await?;
    Ok(rows)
}

/// The column that carries each row's position in the table snapshot through a DELETE or
/// UPDATE plan, so the rows DataFusion selects can be traced back to the rows to change.
const DML_ROW_COLUMN: &str = "__contextdb_dml_row";

/// Runs the statement's own input plan (WHERE with any subqueries, SET expressions) through
/// DataFusion over the target's rows with their positions added: batches of the new value of
/// each column in table order (UPDATE only), then the row position. Nothing is evaluated by
/// hand, and a WHERE that DataFusion cannot plan is an error, never "every row" (the DML hook
/// of DataFusion 53 loses subquery and constant-false filters: apache/datafusion#24654; this
/// path does not use it).
async fn dml_rows(
    ctx: &SessionContext,
    data: &crate::cache::TableData,
    name: &str,
    input: &LogicalPlan,
    op: &WriteOp,
) -> Result<Vec<RecordBatch>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::datasource::provider_as_source;
    use datafusion::logical_expr::{Projection, TableScan, col};

    let mut fields: Vec<Field> = data
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(DML_ROW_COLUMN, DataType::UInt32, false));
    let schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for (start, chunk, _) in data.rows.chunks() {
        let positions = arrow::array::UInt32Array::from_iter_values(
            start as u32..(start + chunk.num_rows()) as u32,
        );
        let mut columns = chunk.columns().to_vec();
        columns.push(Arc::new(positions));
        batches.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    let numbered = Arc::new(MemTable::try_new(schema, vec![batches])?);
    // Only the target's own scan is replaced: plans inside subqueries are not visited.
    let rewritten = input
        .clone()
        .transform_up(|node| match node {
            LogicalPlan::TableScan(scan) if scans_table(&scan.table_name, name) => {
                let source = provider_as_source(numbered.clone());
                let scan = TableScan::try_new(
                    scan.table_name.clone(),
                    source,
                    None,
                    scan.filters.clone(),
                    scan.fetch,
                )?;
                Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
            }
            other => Ok(Transformed::yes(other.recompute_schema()?)),
        })?
        .data;
    let plan = match (op, rewritten) {
        (WriteOp::Update, LogicalPlan::Projection(p)) => {
            let mut exprs = p.expr.clone();
            // Aliased: the other outputs are unqualified, and the optimizer checks that a
            // rewritten plan keeps its schema to the qualifier.
            exprs.push(col(DML_ROW_COLUMN).alias(DML_ROW_COLUMN));
            LogicalPlan::Projection(Projection::try_new(exprs, p.input)?)
        }
        (WriteOp::Update, _) => {
            return Err(Error::internal("UPDATE plan without its SET projection"));
        }
        (_, plan) => LogicalPlan::Projection(Projection::try_new(
            vec![col(DML_ROW_COLUMN).alias(DML_ROW_COLUMN)],
            Arc::new(plan),
        )?),
    };
    Ok(ctx.execute_logical_plan(plan).await?.collect().await?)
}

/// How DataFusion's optimized plan of a DELETE or UPDATE reads its target.
enum Shape {
    /// The WHERE folded to false: no row is touched.
    Nothing,
    /// One scan of the target under projections and filters: the hooks get the whole WHERE
    /// as filters (true: there is one).
    Filtered(bool),
    /// Joins, subqueries or other tables: DataFusion 53's hooks would lose part of the WHERE
    /// (apache/datafusion#24654), so rows are selected by running the plan itself.
    Joined,
}

/// Whether a scan of `scan` (as the plan names it) reads the table with key `key`.
fn scans_table(scan: &TableReference, key: &str) -> bool {
    let (schema, name) = split_key(key);
    scan.table() == name
        && match scan.schema() {
            None => schema.is_none(),
            Some(s) => Some(s) == schema || (schema.is_none() && s == DEFAULT_GRAPH),
        }
}

fn shape(plan: &LogicalPlan, name: &str) -> Shape {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let LogicalPlan::Dml(dml) = plan else {
        return Shape::Joined;
    };
    let subquery = |e: &Expr| {
        e.exists(|e| {
            Ok(matches!(
                e,
                Expr::Exists(_)
                    | Expr::InSubquery(_)
                    | Expr::ScalarSubquery(_)
                    | Expr::OuterReferenceColumn(..)
            ))
        })
        .unwrap_or(true)
    };
    let (mut scans, mut filtered, mut empty, mut other) = (0, false, false, false);
    let _ = dml.input.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) if scans_table(&scan.table_name, name) => {
                scans += 1;
                filtered |= !scan.filters.is_empty();
                other |= scan.filters.iter().any(subquery);
            }
            LogicalPlan::Filter(f) => {
                filtered = true;
                other |= subquery(&f.predicate);
            }
            LogicalPlan::Projection(p) => other |= p.expr.iter().any(subquery),
            LogicalPlan::SubqueryAlias(_) => {}
            LogicalPlan::EmptyRelation(e) => empty |= !e.produce_one_row,
            _ => other = true,
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match (scans, other, empty) {
        (1, false, _) => Shape::Filtered(filtered),
        (0, false, true) => Shape::Nothing,
        _ => Shape::Joined,
    }
}

/// INSERT, UPDATE, DELETE and TRUNCATE through the table's DataFusion DML hooks; the edits
/// they leave in `outbox` commit once the plan has run.
async fn dml_statement(
    db: &Database,
    ctx: &SessionContext,
    snapshot: &Arc<Snapshot>,
    schemas: &SqlSchemas,
    outbox: &Arc<StatementWrites>,
    dml: DmlStatement,
) -> Result<StatementResult> {
    let name = table_key_of(schemas, &dml.table_name)?;
    let Some(slot) = snapshot.tables.get(&name) else {
        return Err(Error::plan(format!(
            "table `{}` does not exist",
            display_key(&name)
        )));
    };
    // Optimized once: the shape checked below is the plan that runs.
    let state = ctx.state();
    let optimized = state.optimize(&LogicalPlan::Dml(dml.clone()))?;
    match dml.op {
        WriteOp::Insert(_) => {}
        WriteOp::Truncate => check_deletable(&slot.info)?,
        WriteOp::Delete | WriteOp::Update => {
            if matches!(dml.op, WriteOp::Delete) {
                check_deletable(&slot.info)?;
            }
            match shape(&optimized, &name) {
                Shape::Nothing => return Ok(rows_affected(Language::Sql, 0)),
                Shape::Joined => return by_position(db, ctx, snapshot, &name, dml).await,
                Shape::Filtered(filtered) => {
                    outbox
                        .filtered
                        .store(filtered, std::sync::atomic::Ordering::Release);
                }
            }
        }
        other => return Err(Error::plan(format!("{other} is not supported"))),
    }
    let run = async {
        let physical = state
            .query_planner()
            .create_physical_plan(&optimized, &state)
            .await?;
        datafusion::physical_plan::collect(physical, state.task_ctx()).await
    };
    let batches = run.await.map_err(|e| {
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
    let mut rows = 0u64;
    for batch in &batches {
        let counts = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .ok_or_else(|| Error::internal("a DML plan's count is not UInt64"))?;
        rows += counts.values().iter().sum::<u64>();
    }
    let edits = outbox.take();
    commit_edits(db, snapshot, &edits).await?;
    Ok(rows_affected(Language::Sql, rows))
}

/// DELETE or UPDATE by row position: the statement's own input plan runs over the target's
/// rows numbered by position, so a WHERE with subqueries or joins selects exactly its rows.
async fn by_position(
    db: &Database,
    ctx: &SessionContext,
    snapshot: &Arc<Snapshot>,
    name: &str,
    dml: DmlStatement,
) -> Result<StatementResult> {
    let name = name.to_string();
    snapshot.load([name.as_str()]).await?;
    let data = snapshot
        .get(&name)
        .ok_or_else(|| Error::plan(format!("table `{}` does not exist", display_key(&name))))?
        .clone();
    let selected = dml_rows(ctx, &data, &name, &dml.input, &dml.op).await?;
    let assigned = match dml.op {
        WriteOp::Update => assigned_columns(&data, &dml.input)?,
        _ => Default::default(),
    };
    let schema = data.schema();
    let mut columns = schema.fields().iter().map(|f| f.name());
    if let Some(column) = columns.find(|c| assigned.contains(*c) && data.info.is_fixed(c)) {
        return Err(Error::plan(format!("`{column}` cannot be updated")));
    }
    let mut edit = TableEdits::default();
    let mut hits = 0u64;
    for batch in &selected {
        let rows = batch
            .column(batch.num_columns() - 1)
            .as_any()
            .downcast_ref::<arrow::array::UInt32Array>()
            .ok_or_else(|| Error::internal("DML row positions are not UInt32"))?
            .clone();
        // The new values of the assigned columns, in the columns' types.
        let mut values = Vec::new();
        for (i, field) in data.schema().fields().iter().enumerate() {
            if assigned.contains(field.name()) {
                let column = assigned_values(&name, field, batch.column(i).clone())?;
                values.push((field.name().clone(), column));
            }
        }
        for (k, &row) in rows.values().iter().enumerate() {
            if matches!(dml.op, WriteOp::Delete) {
                if edit.deleted.insert(row) {
                    hits += 1;
                }
                continue;
            }
            if edit.updates.contains_key(&row) {
                return Err(Error::execution(format!(
                    "UPDATE of `{name}` sets one row twice (its WHERE joins to several rows)"
                )));
            }
            hits += 1;
            let changes = values
                .iter()
                .map(|(column, array)| (column.clone(), array.clone(), k))
                .collect();
            edit.updates.insert(row, changes);
        }
    }
    let edits = HashMap::from([(name.clone(), edit)]);
    commit_edits(db, snapshot, &edits).await?;
    Ok(rows_affected(Language::Sql, hits))
}

/// The columns an UPDATE assigns: the SET projection's expressions that are not the column
/// itself.
fn assigned_columns(
    data: &crate::cache::TableData,
    input: &LogicalPlan,
) -> Result<std::collections::HashSet<String>> {
    let LogicalPlan::Projection(p) = input else {
        return Err(Error::internal("UPDATE plan without its SET projection"));
    };
    Ok(p.expr
        .iter()
        .zip(data.schema().fields())
        .filter(|(expr, field)| {
            !matches!((*expr).clone().unalias(), Expr::Column(c) if c.name == *field.name())
        })
        .map(|(_, field)| field.name().clone())
        .collect())
}
