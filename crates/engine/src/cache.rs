//! The hot tier: table snapshots held in memory as Arrow, with key indexes and adjacency.
//!
//! Data files are immutable, so rows are cached per data file and a new snapshot that keeps
//! most files (an append, a copy-on-write update) reuses them; only new files are read.
//! Everything is under one memory budget, evicted least-recently-used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef};
use contextdb_graph::Adjacency;
use contextdb_planner::nodes::ID;
use contextdb_planner::source::Chunked;
use contextdb_storage::table_io;
use iceberg::table::Table;

use crate::error::{Error, Result};
use crate::schema::{TableInfo, user_schema};

/// A primary key value (node tables use BIGINT/INT or VARCHAR keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Str(String),
}

impl Key {
    /// The key of each row of `array` (None for null).
    pub fn column(array: &ArrayRef) -> Result<Vec<Option<Key>>> {
        Ok(match array.data_type() {
            DataType::Int64 => array
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(Key::Int))
                .collect(),
            DataType::Int32 => array
                .as_primitive::<Int32Type>()
                .iter()
                .map(|v| v.map(|v| Key::Int(v as i64)))
                .collect(),
            DataType::Utf8 => array
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(|s| Key::Str(s.to_string())))
                .collect(),
            DataType::LargeUtf8 => array
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(|s| Key::Str(s.to_string())))
                .collect(),
            DataType::Utf8View => array
                .as_string_view()
                .iter()
                .map(|v| v.map(|s| Key::Str(s.to_string())))
                .collect(),
            other => {
                return Err(Error::execution(format!(
                    "key columns must be integers or strings, not {other}"
                )));
            }
        })
    }
}

/// One data file's place in a snapshot's concatenated rows.
#[derive(Debug, Clone)]
pub struct FileSpan {
    pub path: String,
    pub start: usize,
    pub len: usize,
}

/// One table snapshot in memory.
#[derive(Debug)]
pub struct TableData {
    pub table: Table,
    pub info: TableInfo,
    pub snapshot_id: Option<i64>,
    /// All rows in the user-facing schema, with their stable ids, chunk by chunk (data file
    /// by data file); row `i` has ordinal `i`.
    pub rows: Arc<Chunked>,
    pub files: Vec<FileSpan>,
    key_index: std::sync::OnceLock<std::result::Result<Arc<HashMap<Key, u32>>, Error>>,
    /// Property value → rows, per column looked up by an inline pattern property.
    property_indexes: std::sync::Mutex<HashMap<String, Option<Arc<PropertyIndex>>>>,
}

/// Rows of a table by the value of one integer or text column.
pub type PropertyIndex = HashMap<Key, Vec<u32>>;

/// The most property indexes one table snapshot builds; lookups past it scan.
pub const MAX_PROPERTY_INDEXES: usize = 16;

impl TableData {
    pub fn schema(&self) -> SchemaRef {
        self.rows.schema().clone()
    }

    /// The keys of column `name` for every row, in row order.
    pub(crate) fn keys(&self, name: &str) -> Result<Vec<Option<Key>>> {
        let parts = self.rows.column(name).ok_or_else(|| {
            Error::internal(format!("{} lacks its column {name}", self.info.name))
        })?;
        let mut keys = Vec::with_capacity(self.rows.num_rows());
        for part in &parts {
            keys.extend(Key::column(part)?);
        }
        Ok(keys)
    }

    /// Primary key → ordinal, built on first use.
    pub fn key_index(&self) -> Result<Arc<HashMap<Key, u32>>> {
        self.key_index
            .get_or_init(|| {
                let pk = self.info.primary_key.as_deref().ok_or_else(|| {
                    Error::internal(format!("{} has no primary key", self.info.name))
                })?;
                let keys = self.keys(pk)?;
                let mut index = HashMap::with_capacity(keys.len());
                for (ord, key) in keys.into_iter().enumerate() {
                    if let Some(key) = key {
                        index.insert(key, ord as u32);
                    }
                }
                Ok(Arc::new(index))
            })
            .clone()
    }

    /// The rows of each value of `column`, built on first use; None for a column that is not
    /// an integer or text (or past [`MAX_PROPERTY_INDEXES`]), which callers scan instead.
    pub fn property_index(&self, column: &str) -> Option<Arc<PropertyIndex>> {
        let mut indexes = self.property_indexes.lock().expect("property index lock");
        if let Some(index) = indexes.get(column) {
            return index.clone();
        }
        if indexes.len() >= MAX_PROPERTY_INDEXES {
            return None;
        }
        let index = self
            .rows
            .column(column)
            .filter(|_| column != ID)
            .and_then(|_| self.keys(column).ok())
            .map(|keys| {
                let mut index = PropertyIndex::new();
                for (row, key) in keys.into_iter().enumerate() {
                    if let Some(key) = key {
                        index.entry(key).or_default().push(row as u32);
                    }
                }
                Arc::new(index)
            });
        indexes.insert(column.to_string(), index.clone());
        index
    }

    /// Memory held: rows and ids, and the key and property indexes built so far (estimated
    /// per entry).
    pub fn bytes(&self) -> usize {
        const ENTRY: usize = std::mem::size_of::<Key>() + 16;
        let keys = match self.key_index.get() {
            Some(Ok(index)) => index.capacity() * ENTRY,
            _ => 0,
        };
        let properties: usize = self
            .property_indexes
            .lock()
            .map(|indexes| {
                indexes
                    .values()
                    .flatten()
                    .map(|i| {
                        i.capacity() * (ENTRY + 8) + i.values().map(|v| v.len() * 4).sum::<usize>()
                    })
                    .sum()
            })
            .unwrap_or(0);
        self.rows.memory_size() + keys + properties
    }

    /// Rows `start..start + len` with their ids in the hidden column, as writers store them.
    pub fn stored_rows(&self, start: usize, len: usize) -> Result<RecordBatch> {
        let (rows, ids) = self.rows.slice(start, len)?;
        Ok(table_io::with_row_ids(&rows, ids)?)
    }
}

/// The memory budget default: 4 GiB.
pub const DEFAULT_CACHE_BYTES: usize = 4 << 30;

/// One data file's rows as a snapshot presents them: in the table's user schema (of one
/// schema version), with the ids split off.
type FileChunks = Arc<Vec<(RecordBatch, ArrayRef)>>;

#[derive(Default)]
struct Entries {
    /// By (data file path, table schema id).
    files: HashMap<(String, i32), (FileChunks, usize, u64)>,
    tables: HashMap<(String, Option<i64>), (Arc<TableData>, u64)>,
    adjacency: HashMap<AdjacencyKey, (Arc<Adjacency>, u64)>,
    clock: u64,
}

impl Entries {
    fn used_bytes(&self) -> usize {
        self.files.values().map(|(_, b, _)| *b).sum::<usize>()
            + self.tables.values().map(|(t, _)| t.bytes()).sum::<usize>()
            + self
                .adjacency
                .values()
                .map(|(a, _)| a.heap_bytes())
                .sum::<usize>()
    }
}

/// What the hot tier holds: for monitoring, and for tests of what a statement loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotTierStats {
    pub budget_bytes: usize,
    pub used_bytes: usize,
    /// Tables with rows in memory (any snapshot), by name.
    pub tables: Vec<String>,
}

/// Adjacency depends on the edge snapshot and both endpoint snapshots and their places in
/// the global numbering.
type AdjacencyKey = (String, Option<i64>, Option<i64>, Option<i64>, u32, u32);

pub struct Cache {
    budget_bytes: usize,
    entries: Mutex<Entries>,
    /// Each table's user schema with the metadata file it was derived from: every statement
    /// needs every table's schema, and converting it from Iceberg each time is wasted work.
    /// One entry per table (a newer metadata file replaces the older).
    schemas: Mutex<HashMap<String, (String, SchemaRef)>>,
}

impl Cache {
    pub fn new(budget_bytes: usize) -> Self {
        Cache {
            budget_bytes,
            entries: Mutex::new(Entries::default()),
            schemas: Mutex::new(HashMap::new()),
        }
    }

    /// The table's columns as users see them, converted once per metadata file.
    pub fn user_schema(&self, table: &Table, info: &TableInfo) -> Result<SchemaRef> {
        let uuid = table.metadata().uuid().to_string();
        let location = table.metadata_location().unwrap_or_default().to_string();
        let mut schemas = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        if !location.is_empty()
            && let Some((cached_at, schema)) = schemas.get(&uuid)
            && *cached_at == location
        {
            return Ok(schema.clone());
        }
        let schema = user_schema(table_io::arrow_schema(table)?.as_ref(), info);
        if !location.is_empty() {
            schemas.insert(uuid, (location, schema.clone()));
        }
        Ok(schema)
    }

    /// The memory budget, in bytes.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// What the hot tier holds now.
    pub fn stats(&self) -> HotTierStats {
        let e = self.lock();
        let mut tables: Vec<String> = e
            .tables
            .values()
            .map(|(t, _)| t.info.name.clone())
            .collect();
        tables.sort();
        tables.dedup();
        HotTierStats {
            budget_bytes: self.budget_bytes,
            used_bytes: e.used_bytes(),
            tables,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshot's rows (None: no snapshot yet, so no rows), from cache or read; only
    /// files not cached are read.
    pub async fn table_data(
        &self,
        table: &Table,
        info: &TableInfo,
        snapshot_id: Option<i64>,
    ) -> Result<Arc<TableData>> {
        let key = (table.metadata().uuid().to_string(), snapshot_id);
        {
            let mut e = self.lock();
            e.clock += 1;
            let clock = e.clock;
            if let Some((data, used)) = e.tables.get_mut(&key)
                && data.table.metadata().current_schema_id() == table.metadata().current_schema_id()
            {
                *used = clock;
                return Ok(data.clone());
            }
        }
        let data = Arc::new(self.load(table, info, snapshot_id).await?);
        let mut e = self.lock();
        e.clock += 1;
        let clock = e.clock;
        e.tables.insert(key, (data.clone(), clock));
        drop(e);
        self.evict();
        Ok(data)
    }

    async fn load(
        &self,
        table: &Table,
        info: &TableInfo,
        snapshot_id: Option<i64>,
    ) -> Result<TableData> {
        let storage_schema = table_io::arrow_schema(table)?;
        let schema = user_schema(&storage_schema, info);
        let Ok(id_column) = storage_schema.index_of(table_io::ROW_ID) else {
            // Says why, and what to do.
            table_io::RowIds::of(table)?;
            return Err(Error::internal(format!(
                "{} has no {} column",
                info.name,
                table_io::ROW_ID
            )));
        };
        let schema_id = table.metadata().current_schema_id();
        let mut files = Vec::new();
        let mut chunks = Vec::new();
        let mut ids = Vec::new();
        let mut start = 0;
        for task in self.file_tasks(table, snapshot_id).await? {
            let path = task.data_file_path.clone();
            let key = (path.clone(), schema_id);
            let cached = {
                let mut e = self.lock();
                e.clock += 1;
                let clock = e.clock;
                e.files.get_mut(&key).map(|(b, _, used)| {
                    *used = clock;
                    b.clone()
                })
            };
            let file_chunks = match cached {
                Some(b) => b,
                None => {
                    // Converted once per file and schema version: a snapshot that keeps the
                    // file reuses the chunks as they are.
                    let mut converted = Vec::new();
                    for b in read_file(table, task).await? {
                        // Older files may predate columns added since: present the current
                        // schema.
                        let mut b = table_io::conform_batch(&b, &storage_schema)?;
                        let file_ids = b.remove_column(id_column);
                        converted.push((to_user(&b, &schema)?, file_ids));
                    }
                    let bytes = converted
                        .iter()
                        .map(|(b, i)| b.get_array_memory_size() + i.get_array_memory_size())
                        .sum();
                    let converted = Arc::new(converted);
                    let mut e = self.lock();
                    e.clock += 1;
                    let clock = e.clock;
                    e.files.insert(key, (converted.clone(), bytes, clock));
                    converted
                }
            };
            let mut len = 0;
            for (b, i) in file_chunks.iter() {
                len += b.num_rows();
                chunks.push(b.clone());
                ids.push(i.clone());
            }
            files.push(FileSpan { path, start, len });
            start += len;
        }
        Ok(TableData {
            table: table.clone(),
            info: info.clone(),
            snapshot_id,
            rows: Arc::new(Chunked::try_new(schema, chunks, ids)?),
            files,
            key_index: std::sync::OnceLock::new(),
            property_indexes: Default::default(),
        })
    }

    async fn file_tasks(
        &self,
        table: &Table,
        snapshot_id: Option<i64>,
    ) -> Result<Vec<iceberg::scan::FileScanTask>> {
        use futures::TryStreamExt;
        let Some(id) = snapshot_id else {
            return Ok(vec![]);
        };
        let scan = table.scan().snapshot_id(id).select_all().build()?;
        let tasks: Vec<_> = scan.plan_files().await?.try_collect().await?;
        Ok(tasks)
    }

    /// Adjacency of `edge` over global ordinals: endpoint rows plus their table's offset.
    pub fn adjacency(
        &self,
        edge: &TableData,
        (from, from_offset): (&TableData, u32),
        (to, to_offset): (&TableData, u32),
    ) -> Result<Arc<Adjacency>> {
        let key = (
            edge.table.metadata().uuid().to_string(),
            edge.snapshot_id,
            from.snapshot_id,
            to.snapshot_id,
            from_offset,
            to_offset,
        );
        {
            let mut e = self.lock();
            e.clock += 1;
            let clock = e.clock;
            if let Some((adj, used)) = e.adjacency.get_mut(&key) {
                *used = clock;
                return Ok(adj.clone());
            }
        }
        let from_index = from.key_index()?;
        let to_index = to.key_index()?;
        let src = edge.keys("src")?;
        let dst = edge.keys("dst")?;
        // Edge rows keep their ordinals; an edge whose endpoint is missing is left out.
        let mut pairs = Vec::with_capacity(src.len());
        let mut rows = Vec::with_capacity(src.len());
        for (row, (s, d)) in src.iter().zip(dst.iter()).enumerate() {
            if let (Some(s), Some(d)) = (s, d)
                && let (Some(&s), Some(&d)) = (from_index.get(s), to_index.get(d))
            {
                pairs.push((from_offset + s, to_offset + d));
                rows.push(row as u32);
            }
        }
        let adjacency = if rows.len() == src.len() {
            Adjacency::build(&pairs)
        } else {
            Adjacency::build_with_rows(&pairs, &rows)
        }
        .map_err(|e| Error::new(crate::ErrorKind::Resource, e.to_string()))?;
        let adjacency = Arc::new(adjacency);
        let mut e = self.lock();
        e.clock += 1;
        let clock = e.clock;
        e.adjacency.insert(key, (adjacency.clone(), clock));
        drop(e);
        self.evict();
        Ok(adjacency)
    }

    /// Drops least-recently-used entries until the cache fits its budget.
    fn evict(&self) {
        let mut e = self.lock();
        loop {
            if e.used_bytes() <= self.budget_bytes {
                return;
            }
            let oldest_file = e.files.iter().map(|(k, v)| (v.2, k.clone())).min();
            let oldest_table = e.tables.iter().map(|(k, v)| (v.1, k.clone())).min();
            let oldest_adj = e.adjacency.iter().map(|(k, v)| (v.1, k.clone())).min();
            let candidates = [
                oldest_file.as_ref().map(|x| x.0),
                oldest_table.as_ref().map(|x| x.0),
                oldest_adj.as_ref().map(|x| x.0),
            ];
            let Some(min) = candidates.iter().flatten().min().copied() else {
                return;
            };
            if oldest_file.as_ref().is_some_and(|x| x.0 == min) {
                let k = oldest_file.expect("checked").1;
                e.files.remove(&k);
            } else if oldest_table.as_ref().is_some_and(|x| x.0 == min) {
                let k = oldest_table.expect("checked").1;
                e.tables.remove(&k);
            } else if let Some((_, k)) = oldest_adj {
                e.adjacency.remove(&k);
            }
        }
    }
}

async fn read_file(table: &Table, task: iceberg::scan::FileScanTask) -> Result<Vec<RecordBatch>> {
    use futures::{StreamExt, TryStreamExt};
    let reader = table
        .reader_builder()
        .with_batch_size(table_io::SCAN_BATCH_ROWS)
        .build();
    let stream = reader
        .read(futures::stream::iter([Ok(task)]).boxed())?
        .stream();
    Ok(stream.try_collect().await?)
}

/// Converts a storage batch (iceberg types, field ids) to the user schema (vectors as
/// FixedSizeList, no field-id metadata).
pub fn to_user(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    for (f, c) in schema.fields().iter().zip(&columns) {
        if !f.is_nullable() && c.null_count() > 0 {
            return Err(Error::execution(format!("`{}` must not be null", f.name())));
        }
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}
