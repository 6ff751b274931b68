//! Graph DDL (CREATE/DROP NODE TABLE, EDGE TABLE, VECTOR INDEX) and bulk loading.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use contextdb_catalog::{StagedTable, TableChange};
use contextdb_storage::table_io::{self, DataChange};
use contextql::ast::{self, ObjectKind};
use iceberg::spec::{PrimitiveType, Type};
use iceberg::{Catalog, TableCreation, TableRequirement, TableUpdate};

use crate::StatementResult;
use crate::cache::Key;
use crate::database::{Database, message};
use crate::error::{Error, Result};
use crate::graph_source::Snapshot;
use crate::route::Language;
use crate::schema::{
    GENERATED_KEY, PROP_VECTOR_INDEX_PREFIX, TableInfo, TableKind, ast_type, display_key,
    iceberg_schema, iceberg_type,
};
use contextdb_planner::SchemaNeed;
use contextdb_planner::nodes::UNLABELED;

/// Rows per bulk-load write (each write rolls its own data files).
pub const LOAD_CHUNK_ROWS: usize = 1 << 20;
/// Bytes of batches a bulk load holds in memory before it writes them (wide rows, such as
/// embeddings, reach this before [`LOAD_CHUNK_ROWS`]).
pub const LOAD_CHUNK_BYTES: usize = 256 << 20;
/// Rows per batch read from a Parquet or CSV file.
pub const LOAD_BATCH_ROWS: usize = 8192;

pub(crate) fn check_name(name: &ast::Ident) -> Result<()> {
    if name.name.starts_with("__") || name.name.contains('.') {
        return Err(Error::plan(format!(
            "invalid name `{}`: names may not start with `__` or contain `.`",
            name.name
        )));
    }
    crate::schema::check_sql_name("label or type", &name.name)
}

async fn exists(db: &Database, name: &str) -> Result<bool> {
    Ok(db.catalog.table_exists(&db.ident(name)).await?)
}

/// Namespace property: the highest table number handed out (see [`next_table_number`]).
pub const PROP_LAST_TABLE_NUMBER: &str = "contextdb.last-table-number";

/// A number for a new table, one past the highest ever handed out: the namespace keeps that
/// mark, so a table created after another was dropped never gets its row ids. The caller
/// holds the write lock (every DDL statement does), so no two tables get one number.
async fn next_table_number(db: &Database) -> Result<u64> {
    db.update_graph_properties(|properties| {
        let last = match properties.get(PROP_LAST_TABLE_NUMBER) {
            None => 0,
            Some(v) => v.parse::<u64>().map_err(|_| {
                Error::internal(format!(
                    "namespace property {PROP_LAST_TABLE_NUMBER} is {v}"
                ))
            })?,
        };
        let number = last + 1;
        if number > table_io::MAX_TABLE_NUMBER {
            return Err(Error::new(
                crate::ErrorKind::Resource,
                format!(
                    "a database numbers at most {} tables over its life",
                    table_io::MAX_TABLE_NUMBER
                ),
            ));
        }
        properties.insert(PROP_LAST_TABLE_NUMBER.to_string(), number.to_string());
        Ok(number)
    })
    .await
}

/// Creates an empty table with the hidden row id column and a table number of its own.
pub(crate) async fn create(
    db: &Database,
    name: &str,
    columns: Vec<(String, ast::DataType, bool)>,
    info: TableInfo,
    defaults: &HashMap<String, iceberg::spec::Literal>,
) -> Result<()> {
    let creation = creation(db, name, &columns, &info, defaults).await?;
    db.catalog
        .create_table(db.ident(name).namespace(), creation)
        .await?;
    Ok(())
}

/// Like [`create`], but the table stays invisible until a commit creates it together with
/// its first data (`Database::commit_creating`): a statement's DDL and data commit together.
/// With `replace`, the new table takes the place of the one of that name in that commit.
pub(crate) async fn stage(
    db: &Database,
    name: &str,
    columns: Vec<(String, ast::DataType, bool)>,
    info: TableInfo,
    defaults: &HashMap<String, iceberg::spec::Literal>,
    replace: bool,
) -> Result<StagedTable> {
    let creation = creation(db, name, &columns, &info, defaults).await?;
    let ident = db.ident(name);
    Ok(if replace {
        db.catalog
            .stage_replace_table(ident.namespace(), creation)
            .await?
    } else {
        StagedTable::new(
            db.catalog
                .stage_create_table(ident.namespace(), creation)
                .await?,
        )
    })
}

async fn creation(
    db: &Database,
    name: &str,
    columns: &[(String, ast::DataType, bool)],
    info: &TableInfo,
    defaults: &HashMap<String, iceberg::spec::Literal>,
) -> Result<TableCreation> {
    let schema = crate::schema::with_write_defaults(iceberg_schema(columns)?, defaults)?;
    let mut properties = info.properties();
    properties.insert(
        table_io::PROP_TABLE_NUMBER.to_string(),
        next_table_number(db).await?.to_string(),
    );
    Ok(TableCreation::builder()
        .name(db.ident(name).name().to_string())
        .schema(schema)
        .properties(properties)
        .build())
}

/// For CREATE ... [IF NOT EXISTS] of a table that exists: the statement's answer.
async fn existing(
    db: &Database,
    name: &ast::Ident,
    if_not_exists: bool,
) -> Result<Option<StatementResult>> {
    if !exists(db, &name.name).await? {
        return Ok(None);
    }
    if if_not_exists {
        return Ok(Some(message(Language::ContextQL, "table exists")));
    }
    Err(Error::plan(format!("table `{}` already exists", name.name)))
}

pub async fn create_node_table(db: &Database, c: &ast::CreateNodeTable) -> Result<StatementResult> {
    check_name(&c.name)?;
    let _guard = db.write_lock.lock().await;
    if let Some(answer) = existing(db, &c.name, c.if_not_exists).await? {
        return Ok(answer);
    }
    let mut seen = HashSet::new();
    for col in &c.columns {
        check_name(&col.name)?;
        if !seen.insert(col.name.name.to_ascii_lowercase()) {
            return Err(Error::plan(format!(
                "column `{}` is declared twice",
                col.name.name
            )));
        }
    }
    let pk = c
        .primary_key
        .as_ref()
        .or_else(|| {
            c.columns
                .iter()
                .find(|col| col.primary_key)
                .map(|col| &col.name)
        })
        .ok_or_else(|| Error::plan(format!("node table `{}` needs a PRIMARY KEY", c.name.name)))?;
    let pk_column = c
        .columns
        .iter()
        .find(|col| col.name.name == pk.name)
        .ok_or_else(|| Error::plan(format!("primary key `{}` is not a column", pk.name)))?;
    if !matches!(
        pk_column.data_type,
        ast::DataType::Int64 | ast::DataType::Int32 | ast::DataType::String
    ) {
        return Err(Error::plan("a primary key must be BIGINT, INT or VARCHAR"));
    }
    let mut info = TableInfo::from_properties(&c.name.name, &Default::default());
    info.kind = TableKind::Node;
    info.primary_key = Some(pk.name.clone());
    let columns = c
        .columns
        .iter()
        .map(|col| {
            if let ast::DataType::Vector(d) = col.data_type {
                if d == 0 {
                    return Err(Error::plan("VECTOR dimension must be at least 1"));
                }
                info.vectors.insert(col.name.name.clone(), d as i32);
            }
            Ok((
                col.name.name.clone(),
                col.data_type.clone(),
                col.name.name == pk.name,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    create(db, &c.name.name, columns, info, &defaults(&c.columns)?).await?;
    Ok(message(Language::ContextQL, "node table created"))
}

/// The `DEFAULT`s of ContextQL column definitions, as Iceberg write-defaults.
fn defaults(columns: &[ast::ColumnDef]) -> Result<HashMap<String, iceberg::spec::Literal>> {
    let mut out = HashMap::new();
    for col in columns {
        let Some(value) = &col.default else {
            continue;
        };
        let value = contextdb_planner::expr::literal_scalar(value);
        let name = &col.name.name;
        if let Some(value) = crate::schema::write_default(name, &col.data_type, &value)? {
            out.insert(name.clone(), value);
        }
    }
    Ok(out)
}

pub async fn create_edge_table(db: &Database, c: &ast::CreateEdgeTable) -> Result<StatementResult> {
    check_name(&c.name)?;
    let _guard = db.write_lock.lock().await;
    if let Some(answer) = existing(db, &c.name, c.if_not_exists).await? {
        return Ok(answer);
    }
    let [(from, to)] = c.endpoints.as_slice() else {
        return Err(Error::plan(
            "an edge table connects exactly one FROM/TO pair for now (several pairs are a known gap)",
        ));
    };
    let key_type = |label: &ast::Ident| {
        let label = label.clone();
        async move {
            let table = db.load_table(&label.name).await?;
            let info = TableInfo::from_properties(&label.name, table.metadata().properties());
            if info.kind != TableKind::Node {
                return Err(Error::plan(format!("`{}` is not a node table", label.name)));
            }
            let pk = info.primary_key.clone().unwrap_or_default();
            let field = table
                .metadata()
                .current_schema()
                .field_by_name(&pk)
                .ok_or_else(|| Error::internal(format!("{} lost its key column", label.name)))?;
            Ok(match &*field.field_type {
                Type::Primitive(PrimitiveType::String) => ast::DataType::String,
                Type::Primitive(PrimitiveType::Int) => ast::DataType::Int32,
                _ => ast::DataType::Int64,
            })
        }
    };
    let src_type = key_type(from).await?;
    let dst_type = key_type(to).await?;
    let mut columns = vec![
        ("src".to_string(), src_type, true),
        ("dst".to_string(), dst_type, true),
    ];
    let mut info = TableInfo::from_properties(&c.name.name, &Default::default());
    info.kind = TableKind::Edge;
    info.from = Some(from.name.clone());
    info.to = Some(to.name.clone());
    let mut seen: HashSet<String> = ["src".into(), "dst".into()].into();
    for col in &c.columns {
        check_name(&col.name)?;
        if !seen.insert(col.name.name.to_ascii_lowercase()) {
            return Err(Error::plan(format!(
                "column `{}` is declared twice (src and dst are implicit)",
                col.name.name
            )));
        }
        if let ast::DataType::Vector(d) = col.data_type {
            info.vectors.insert(col.name.name.clone(), d as i32);
        }
        columns.push((col.name.name.clone(), col.data_type.clone(), false));
    }
    create(db, &c.name.name, columns, info, &defaults(&c.columns)?).await?;
    Ok(message(Language::ContextQL, "edge table created"))
}

pub async fn create_vector_index(
    db: &Database,
    c: &ast::CreateVectorIndex,
) -> Result<StatementResult> {
    let _guard = db.write_lock.lock().await;
    let label = &c.label.name;
    let table = db.load_table(label).await?;
    let info = TableInfo::from_properties(label, table.metadata().properties());
    if !info.vectors.contains_key(&c.property.name) {
        return Err(Error::plan(format!(
            "`{label}.{}` is not a VECTOR column",
            c.property.name
        )));
    }
    if let Some((table, _, _)) = find_vector_index(db, &c.name.name).await? {
        return Err(Error::plan(format!(
            "vector index `{}` already exists (on `{table}`)",
            c.name.name
        )));
    }
    if let Some(existing) = info.vector_indexes.get(&c.property.name) {
        return Err(Error::plan(format!(
            "`{label}.{}` already has vector index `{}`; DROP VECTOR INDEX {} first",
            c.property.name, existing.name, existing.name
        )));
    }
    let mut params = contextdb_vector::IndexParams::default();
    for (k, v) in &c.options {
        let text = match v {
            ast::Literal::String(s) => s.clone(),
            ast::Literal::Integer(i) => i.to_string(),
            ast::Literal::Float(f) => f.to_string(),
            ast::Literal::Bool(b) => b.to_string(),
            ast::Literal::Null => "null".to_string(),
        };
        params.set(k, &text).map_err(Error::plan)?;
    }
    // Built over the table as it is now; rows written later are searched exactly until the
    // index is refreshed.
    let snapshot = db.snapshot_unloaded(None).await?;
    snapshot.load([label.as_str()]).await?;
    let data = snapshot
        .get(label)
        .ok_or_else(|| Error::plan(format!("table `{label}` does not exist")))?
        .clone();
    let def = db
        .vector_indexes
        .build(&data, &c.property.name, &c.name.name, params, &|_, _| {})
        .await?;
    let key = format!("{PROP_VECTOR_INDEX_PREFIX}{}", c.property.name);
    let change = TableChange {
        ident: db.ident(label),
        requirements: vec![TableRequirement::UuidMatch {
            uuid: table.metadata().uuid(),
        }],
        updates: vec![TableUpdate::SetProperties {
            updates: [(key, def.to_property())].into(),
        }],
    };
    db.commit(vec![change]).await?;
    Ok(message(
        Language::ContextQL,
        &format!("vector index built over {} rows", def.rows),
    ))
}

/// `SHOW [VECTOR] INDEXES`: one row per vector index of the graph.
pub async fn show_indexes(db: &Database) -> Result<StatementResult> {
    use arrow::array::{ArrayRef, Int64Array, StringArray, UInt64Array};
    use arrow::datatypes::{Field, Schema};
    // name, table, property, metric, parameters, rows, snapshot
    let mut rows: Vec<([String; 5], u64, Option<i64>)> = Vec::new();
    for ident in db.catalog.list_tables(&db.namespace).await? {
        let table = db.catalog.load_table(&ident).await?;
        for (column, def) in crate::vector_index::definitions(table.metadata().properties()) {
            let p = def.params()?;
            let parameters = format!(
                "m={}, ef_construction={}, ef_search={}, quantization={}",
                p.m,
                p.ef_construction,
                p.ef_search,
                p.quantization.as_str()
            );
            let text = [
                def.name.clone(),
                ident.name().to_string(),
                column,
                p.metric.as_str().to_string(),
                parameters,
            ];
            rows.push((text, def.rows, def.snapshot));
        }
    }
    rows.sort_by(|a, b| a.0[0].cmp(&b.0[0]));
    let names = ["name", "table", "property", "metric", "parameters"];
    let mut fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, false))
        .collect();
    fields.push(Field::new("rows", DataType::UInt64, false));
    fields.push(Field::new("snapshot", DataType::Int64, true));
    let mut columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0[i]))) as ArrayRef)
        .collect();
    columns.push(Arc::new(UInt64Array::from_iter_values(
        rows.iter().map(|r| r.1),
    )));
    columns.push(Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(StatementResult {
        language: Language::ContextQL,
        schema,
        batches: vec![batch],
        rows_affected: None,
    })
}

/// The graph table holding vector index `name`: its name, metadata and the property that
/// defines the index. Index names are unique in the graph.
async fn find_vector_index(
    db: &Database,
    name: &str,
) -> Result<Option<(String, iceberg::table::Table, String)>> {
    for ident in db.catalog.list_tables(&db.namespace).await? {
        let table = db.catalog.load_table(&ident).await?;
        let found = table.metadata().properties().iter().find_map(|(k, v)| {
            (k.starts_with(PROP_VECTOR_INDEX_PREFIX)
                && crate::vector_index::VectorIndexDef::parse(v).is_some_and(|d| d.name == name))
            .then(|| k.clone())
        });
        if let Some(key) = found {
            return Ok(Some((ident.name().to_string(), table, key)));
        }
    }
    Ok(None)
}

pub async fn drop(db: &Database, d: &ast::DropObject) -> Result<StatementResult> {
    let _guard = db.write_lock.lock().await;
    let name = &d.name.name;
    if d.kind == ObjectKind::VectorIndex {
        let Some((_, table, key)) = find_vector_index(db, name).await? else {
            if d.if_exists {
                return Ok(message(Language::ContextQL, "nothing to drop"));
            }
            return Err(Error::plan(format!("vector index `{name}` does not exist")));
        };
        let change = TableChange {
            ident: table.identifier().clone(),
            requirements: vec![TableRequirement::UuidMatch {
                uuid: table.metadata().uuid(),
            }],
            updates: vec![TableUpdate::RemoveProperties {
                removals: vec![key],
            }],
        };
        db.commit(vec![change]).await?;
        return Ok(message(Language::ContextQL, "vector index dropped"));
    }
    if !exists(db, name).await? {
        if d.if_exists {
            return Ok(message(Language::ContextQL, "nothing to drop"));
        }
        return Err(Error::plan(format!("table `{name}` does not exist")));
    }
    let table = db.load_table(name).await?;
    let info = TableInfo::from_properties(name, table.metadata().properties());
    let want = if d.kind == ObjectKind::NodeTable {
        TableKind::Node
    } else {
        TableKind::Edge
    };
    if info.kind != want {
        return Err(Error::plan(format!(
            "`{name}` is not a {} table",
            want.as_str()
        )));
    }
    if want == TableKind::Node {
        for ident in db.catalog.list_tables(&db.namespace).await? {
            let other = db.catalog.load_table(&ident).await?;
            let oi = TableInfo::from_properties(ident.name(), other.metadata().properties());
            if oi.connects(name) {
                return Err(Error::plan(format!(
                    "edge table `{}` connects `{name}`; drop it first",
                    ident.name()
                )));
            }
        }
    }
    db.catalog.drop_table(&db.ident(name)).await?;
    Ok(message(Language::ContextQL, "dropped"))
}

/// Batches read from a file to load.
type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Reads a Parquet or CSV file in batches of [`LOAD_BATCH_ROWS`]; also returns the row
/// count when the format tells it up front (0 otherwise).
fn read_file(path: &Path, schema: &SchemaRef) -> Result<(Batches, u64)> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::execution(format!("cannot open {}: {e}", path.display())))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "parquet" => {
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| {
                        Error::execution(format!(
                            "{}: not a readable Parquet file: {e}",
                            path.display()
                        ))
                    })?;
            let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
            let reader = builder
                .with_batch_size(LOAD_BATCH_ROWS)
                .build()
                .map_err(|e| Error::execution(format!("{}: {e}", path.display())))?;
            Ok((Box::new(reader.map(|b| b.map_err(Error::from))), total))
        }
        "csv" => {
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let has_vectors = schema.fields().iter().any(|f| {
                matches!(
                    f.data_type(),
                    DataType::FixedSizeList(..) | DataType::List(..)
                )
            });
            if has_vectors {
                return Err(Error::execution(
                    "CSV cannot carry VECTOR or list columns; use Parquet",
                ));
            }
            let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .with_batch_size(LOAD_BATCH_ROWS)
                .build(file)
                .map_err(|e| Error::execution(format!("{}: {e}", path.display())))?;
            // CSV has no row count up front; progress is reported in rows with total unknown (0).
            let _ = size;
            Ok((Box::new(reader.map(|b| b.map_err(Error::from))), 0))
        }
        _ => Err(Error::execution(format!(
            "{}: only .parquet and .csv files can be loaded",
            path.display()
        ))),
    }
}

pub async fn load_file(
    db: &Database,
    name: &str,
    path: &Path,
    progress: &(dyn Fn(crate::LoadPhase, u64, u64) + Send + Sync),
) -> Result<u64> {
    // Only the target is read (for its keys); loading touches no other table.
    let snapshot = db.snapshot_unloaded(None).await?;
    snapshot.load([name]).await?;
    let data = snapshot
        .get(name)
        .ok_or_else(|| Error::plan(format!("table `{name}` does not exist")))?;
    let (reader, total) = read_file(path, &data.schema())?;
    let source = path.display().to_string();
    let batches = futures::stream::iter(reader);
    append_stream(
        db,
        &snapshot,
        name,
        &source,
        batches,
        total,
        Vec::new(),
        progress,
    )
    .await
}

/// Appends `batches` to table `name` of `snapshot` (loaded) in one commit, which also creates
/// the tables `created` (staged, `stage`); the batches are written to data files as they
/// come, at most [`LOAD_CHUNK_ROWS`] rows or [`LOAD_CHUNK_BYTES`] at a time held in memory.
/// A batch may lack columns (null, or the column's default) but may not have columns the
/// table lacks. `source` names the input in messages; `total` is its rows when known (0).
/// The caller holds the write lock.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn append_stream(
    db: &Database,
    snapshot: &Snapshot,
    name: &str,
    source: &str,
    mut batches: impl futures::Stream<Item = Result<RecordBatch>> + Unpin,
    total: u64,
    created: Vec<StagedTable>,
    progress: &(dyn Fn(crate::LoadPhase, u64, u64) + Send + Sync),
) -> Result<u64> {
    use futures::StreamExt;
    let data = snapshot
        .get(name)
        .ok_or_else(|| Error::plan(format!("table `{name}` does not exist")))?
        .clone();
    let table = snapshot
        .current
        .get(name)
        .expect("listed with its data")
        .clone();
    let storage_schema = table_io::arrow_schema(&table)?;
    let user_schema = data.schema();
    let table_columns: HashSet<&str> = user_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    // Keys already stored, and those this load adds: a duplicate of either is refused.
    // A node table's key, and a SQL table's PRIMARY KEY, as INSERT checks it.
    let mut keys = match data.info.primary_key {
        Some(_) => Some((data.key_index()?, HashSet::new())),
        None => None,
    };
    let mut row_ids = table_io::RowIds::of(&table)?;
    let mut added = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    let mut pending_bytes = 0;
    let mut done = 0u64;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        if let Some(extra) = batch
            .schema()
            .fields()
            .iter()
            .find(|f| !table_columns.contains(f.name().as_str()))
        {
            return Err(Error::execution(format!(
                "{source}: column `{}` is not in table `{}`",
                extra.name(),
                display_key(name)
            )));
        }
        let ids = row_ids.take(batch.num_rows())?;
        let batch = table_io::with_row_ids(&batch, std::sync::Arc::new(ids))?;
        let batch = table_io::conform_batch(&batch, &storage_schema)
            .map_err(|e| Error::execution(format!("{source}: {e}")))?;
        if let (Some((stored, added)), Some(pk)) = (&mut keys, &data.info.primary_key) {
            let column = batch
                .column_by_name(pk)
                .expect("conformed to the table schema");
            for key in Key::column(column)? {
                let key = key.ok_or_else(|| {
                    Error::execution(format!("primary key `{pk}` must not be null"))
                })?;
                if stored.get(&key).is_some() || !added.insert(key.clone()) {
                    return Err(Error::execution(format!(
                        "duplicate primary key {key:?} in `{}`",
                        display_key(name)
                    )));
                }
            }
        }
        done += batch.num_rows() as u64;
        pending_rows += batch.num_rows();
        // The rows' own bytes: a batch decoded from one IPC message shares its buffer, which
        // `get_array_memory_size` would count once per column.
        pending_bytes += batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
            .sum::<usize>();
        pending.push(batch);
        if pending_rows >= LOAD_CHUNK_ROWS || pending_bytes >= LOAD_CHUNK_BYTES {
            added.extend(table_io::write_data_files(&table, &pending).await?);
            pending.clear();
            pending_rows = 0;
            pending_bytes = 0;
        }
        progress(crate::LoadPhase::Reading, done, total.max(done));
    }
    added.extend(table_io::write_data_files(&table, &pending).await?);
    let mut changes = Vec::new();
    if !added.is_empty() {
        let (requirements, updates) = table_io::produce_snapshot(
            &table,
            DataChange {
                added,
                removed: Default::default(),
                next_row: row_ids.advanced(),
                rewrite: false,
                replaced: Vec::new(),
            },
            table_io::commit_timestamp_ms(snapshot.current.values()),
        )
        .await?;
        changes.push(TableChange {
            ident: db.ident(name),
            requirements,
            updates,
        });
    }
    let indexing = |done, total| progress(crate::LoadPhase::Indexing, done, total);
    db.commit_reporting(created, changes, &indexing).await?;
    Ok(done)
}

/// Schema a statement creates for its own writes (schema evolution), not yet committed: it
/// commits with the statement's data, in the same catalog entry, or not at all.
#[derive(Debug, Default)]
pub(crate) struct StagedSchema {
    /// Tables the statement creates (their first metadata, from `stage`).
    pub created: Vec<StagedTable>,
    /// Columns added (to existing or created tables), committed before the data.
    pub changes: Vec<TableChange>,
    /// Every created or altered table as the statement sees it, changes applied in memory.
    pub tables: Vec<iceberg::table::Table>,
}

impl StagedSchema {
    fn table(&self, name: &str) -> Option<&iceberg::table::Table> {
        self.tables.iter().find(|t| t.identifier().name() == name)
    }

    fn set(&mut self, table: iceberg::table::Table) {
        self.tables
            .retain(|t| t.identifier().name() != table.identifier().name());
        self.tables.push(table);
    }
}

/// `table` with `columns` added (optional, new field ids), in memory, and the change that
/// adds them when committed.
fn add_columns(
    table: &iceberg::table::Table,
    columns: Vec<(String, ast::DataType, bool)>,
) -> Result<(iceberg::table::Table, TableChange)> {
    let metadata = table.metadata();
    let current = metadata.current_schema();
    let mut next_id = metadata.last_column_id();
    let mut fields = current.as_struct().fields().to_vec();
    for (name, t, _) in columns {
        next_id += 1;
        let id = next_id;
        // Nested ids (list elements) follow the column's own.
        let ty = iceberg_type(&t, &mut next_id);
        fields.push(std::sync::Arc::new(iceberg::spec::NestedField::optional(
            id, name, ty,
        )));
    }
    let schema = iceberg::spec::Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_identifier_field_ids(current.identifier_field_ids())
        .with_fields(fields)
        .build()
        .map_err(|e| Error::plan(format!("invalid table schema: {e}")))?;
    let requirements = vec![
        TableRequirement::UuidMatch {
            uuid: metadata.uuid(),
        },
        TableRequirement::CurrentSchemaIdMatch {
            current_schema_id: current.schema_id(),
        },
        TableRequirement::LastAssignedFieldIdMatch {
            last_assigned_field_id: metadata.last_column_id(),
        },
    ];
    let updates = vec![
        TableUpdate::AddSchema { schema },
        // -1: the schema just added.
        TableUpdate::SetCurrentSchema { schema_id: -1 },
    ];
    let mut builder = metadata.clone().into_builder(None);
    for update in &updates {
        builder = update.clone().apply(builder)?;
    }
    let altered = iceberg::table::Table::builder()
        .metadata(builder.build()?.metadata)
        .metadata_location(table.metadata_location().unwrap_or_default())
        .identifier(table.identifier().clone())
        .file_io(table.file_io().clone())
        .runtime(iceberg::Runtime::try_current()?)
        .build()?;
    let change = TableChange {
        ident: table.identifier().clone(),
        requirements,
        updates,
    };
    Ok((altered, change))
}

/// Creates what a writing query needs (schema evolution, DESIGN.md "ContextQL"): a node
/// table with a generated key, an edge table for a new FROM/TO pair, or new columns. The
/// caller holds the write lock. Nothing is committed: the schema goes into `staged`, which
/// commits with the statement's data (`Sink::commit`).
pub(crate) async fn evolve(
    db: &Database,
    snapshot: &Snapshot,
    need: SchemaNeed,
    staged: &mut StagedSchema,
) -> Result<()> {
    let to_columns =
        |columns: &[(String, DataType)]| -> Result<Vec<(String, ast::DataType, bool)>> {
            columns
                .iter()
                .map(|(name, t)| {
                    if name.starts_with('_') {
                        return Err(Error::plan(format!(
                            "property `{name}`: names starting with `_` are reserved"
                        )));
                    }
                    Ok((name.clone(), ast_type(t)?, false))
                })
                .collect()
        };
    match need {
        SchemaNeed::NodeTable { label, columns } => {
            check_name(&ast::Ident {
                name: label.clone(),
                span: Default::default(),
            })
            .or_else(|e| if label == UNLABELED { Ok(()) } else { Err(e) })?;
            let mut all = vec![(GENERATED_KEY.to_string(), ast::DataType::Int64, true)];
            all.extend(to_columns(&columns)?);
            let mut info = TableInfo::from_properties(&label, &Default::default());
            info.kind = TableKind::Node;
            info.primary_key = Some(GENERATED_KEY.to_string());
            let table = stage(db, &label, all, info, &HashMap::new(), false).await?;
            staged.set(table.table.clone());
            staged.created.push(table);
            Ok(())
        }
        SchemaNeed::EdgeTable {
            rel_type,
            from,
            to,
            columns,
        } => {
            check_name(&ast::Ident {
                name: rel_type.clone(),
                span: Default::default(),
            })?;
            let key_type = |label: &str| -> Result<ast::DataType> {
                snapshot
                    .tables
                    .get(label)
                    .ok_or_else(|| Error::plan(format!("no node table `{label}`")))?
                    .key_type()
            };
            let mut all = vec![
                ("src".to_string(), key_type(&from)?, true),
                ("dst".to_string(), key_type(&to)?, true),
            ];
            all.extend(to_columns(&columns)?);
            // The first pair of a type is named after it; later pairs get their own tables.
            let name = if !snapshot.tables.contains_key(&rel_type) {
                rel_type.clone()
            } else {
                format!("{rel_type}.{from}.{to}")
            };
            let mut info = TableInfo::from_properties(&name, &Default::default());
            info.kind = TableKind::Edge;
            info.from = Some(from);
            info.to = Some(to);
            info.rel_type = Some(rel_type);
            let table = stage(db, &name, all, info, &HashMap::new(), false).await?;
            staged.set(table.table.clone());
            staged.created.push(table);
            Ok(())
        }
        SchemaNeed::Columns { table, columns } => {
            let current = staged
                .table(&table)
                .or_else(|| snapshot.current.get(&table))
                .ok_or_else(|| Error::plan(format!("no table `{table}`")))?;
            let (altered, change) = add_columns(current, to_columns(&columns)?)?;
            staged.changes.push(change);
            staged.set(altered);
            Ok(())
        }
    }
}
