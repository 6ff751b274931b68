//! The hot tier: table snapshots held in memory as Arrow, with key indexes and adjacency.
//!
//! Data files are immutable, so rows are cached per data file and a new snapshot that keeps
//! most files (an append, a copy-on-write update) reuses them; only new files are read.
//! Everything is under one memory budget, evicted least-recently-used.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
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
            // Narrower integers and other string encodings (declared SQL types).
            DataType::Int8
            | DataType::Int16
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => Self::column(&arrow::compute::cast(array, &DataType::Int64)?)?,
            DataType::Dictionary(_, value) => Self::column(&arrow::compute::cast(array, value)?)?,
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
    /// Memory of the file's rows and ids (shared with the tier's entry for the file).
    pub bytes: usize,
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
    key_index: std::sync::OnceLock<std::result::Result<Arc<KeyIndex>, Error>>,
    /// Property value → rows, per column looked up by an inline pattern property.
    property_indexes: std::sync::Mutex<HashMap<String, Option<Arc<PropertyIndex>>>>,
    /// Earlier snapshots whose rows are this one's first rows, with their row counts (newest
    /// last): adjacency built over them still holds here.
    pub prefixes: Vec<(Option<i64>, usize)>,
    predecessor: Predecessor,
    builds: Arc<Builds>,
}

/// Entries a delta layer may hold beyond an eighth of its base before the two are folded.
pub const INDEX_DELTA_MIN: usize = 4096;

/// A map in two layers: a shared base and a delta of what rows appended since added. A
/// snapshot after an append extends its predecessor's index (cloning only the delta) instead
/// of rebuilding it; past an eighth of the base the delta is folded in, so the cost per
/// appended row stays constant on average.
#[derive(Debug, Clone, Default)]
pub struct Layered<V> {
    base: Arc<HashMap<Key, V>>,
    delta: HashMap<Key, V>,
}

impl<V: Clone> Layered<V> {
    fn new(base: HashMap<Key, V>) -> Self {
        Layered {
            base: Arc::new(base),
            delta: HashMap::new(),
        }
    }

    /// This map with `entries` added; `merge` combines a value with one already there.
    fn extended(
        &self,
        entries: impl IntoIterator<Item = (Key, V)>,
        merge: impl Fn(&mut V, V),
    ) -> Self {
        let mut delta = self.delta.clone();
        for (k, v) in entries {
            match delta.entry(k) {
                std::collections::hash_map::Entry::Occupied(mut o) => merge(o.get_mut(), v),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    // The delta holds a key's whole value: start from the base's.
                    let mut value = match self.base.get(slot.key()) {
                        Some(old) => old.clone(),
                        None => {
                            slot.insert(v);
                            continue;
                        }
                    };
                    merge(&mut value, v);
                    slot.insert(value);
                }
            }
        }
        if delta.len() > self.base.len() / 8 + INDEX_DELTA_MIN {
            let mut base = (*self.base).clone();
            base.extend(delta);
            return Layered::new(base);
        }
        Layered {
            base: self.base.clone(),
            delta,
        }
    }

    pub fn get(&self, key: &Key) -> Option<&V> {
        self.delta.get(key).or_else(|| self.base.get(key))
    }

    /// Every key and its value (delta values replace base values).
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.delta.iter().chain(
            self.base
                .iter()
                .filter(|(k, _)| !self.delta.contains_key(*k)),
        )
    }

    /// Estimated heap bytes, with `per_entry` bytes of heap beside each entry (without
    /// walking the entries: this is asked often). A base shared with a map already counted
    /// (its address in `seen`) counts once.
    fn bytes(&self, per_entry: usize, seen: &mut HashSet<usize>) -> usize {
        const ENTRY: usize = std::mem::size_of::<Key>() + 16;
        let base = if seen.insert(Arc::as_ptr(&self.base) as *const () as usize) {
            self.base.capacity()
        } else {
            0
        };
        (base + self.delta.capacity()) * (ENTRY + per_entry)
    }
}

/// Primary key → row.
pub type KeyIndex = Layered<u32>;

/// Rows of a table by the value of one integer or text column.
pub type PropertyIndex = Layered<Vec<u32>>;

/// What a snapshot reuses of an earlier snapshot of its table whose rows are its first rows
/// (a snapshot after appends): the indexes that snapshot had built.
#[derive(Debug, Default)]
struct Predecessor {
    rows: usize,
    key_index: Option<Arc<KeyIndex>>,
    property_indexes: HashMap<String, Arc<PropertyIndex>>,
}

/// The most earlier snapshots a snapshot remembers as its prefixes.
const MAX_PREFIX_SNAPSHOTS: usize = 32;

/// The most property indexes one table snapshot builds; lookups past it scan.
pub const MAX_PROPERTY_INDEXES: usize = 16;

impl TableData {
    pub fn schema(&self) -> SchemaRef {
        self.rows.schema().clone()
    }

    /// The keys of column `name` for rows `start..`, in row order.
    pub(crate) fn keys_from(&self, name: &str, start: usize) -> Result<Vec<Option<Key>>> {
        let parts = self.rows.column(name).ok_or_else(|| {
            Error::internal(format!("{} lacks its column {name}", self.info.name))
        })?;
        let mut keys = Vec::with_capacity(self.rows.num_rows().saturating_sub(start));
        for ((first, chunk, _), part) in self.rows.chunks().zip(&parts) {
            let end = first + chunk.num_rows();
            if end <= start {
                continue;
            }
            let skip = start.saturating_sub(first);
            keys.extend(Key::column(&part.slice(skip, part.len() - skip))?);
        }
        Ok(keys)
    }

    /// Primary key → ordinal, built on first use; after an append, the predecessor's index
    /// extended by the appended rows.
    pub fn key_index(&self) -> Result<Arc<KeyIndex>> {
        self.key_index
            .get_or_init(|| {
                let pk = self.info.primary_key.as_deref().ok_or_else(|| {
                    Error::internal(format!("{} has no primary key", self.info.name))
                })?;
                let (start, base) = match &self.predecessor.key_index {
                    Some(index) => (self.predecessor.rows, (**index).clone()),
                    None => (0, KeyIndex::default()),
                };
                if start == 0 {
                    self.builds.key_indexes.fetch_add(1, Ordering::Relaxed);
                }
                let keys = self.keys_from(pk, start)?;
                let entries = keys
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, k)| Some((k?, (start + i) as u32)));
                Ok(Arc::new(if start == 0 {
                    KeyIndex::new(entries.collect())
                } else {
                    base.extended(entries, |old, new| *old = new)
                }))
            })
            .clone()
    }

    /// The rows of each value of `column`, built on first use (after an append, extended from
    /// the predecessor's); None for a column that is not an integer or text (or past
    /// [`MAX_PROPERTY_INDEXES`]), which callers scan instead.
    pub fn property_index(&self, column: &str) -> Option<Arc<PropertyIndex>> {
        let mut indexes = self.property_indexes.lock().expect("property index lock");
        if let Some(index) = indexes.get(column) {
            return index.clone();
        }
        if indexes.len() >= MAX_PROPERTY_INDEXES || column == ID {
            return None;
        }
        self.rows.column(column)?;
        let (start, base) = match self.predecessor.property_indexes.get(column) {
            Some(index) => (self.predecessor.rows, (**index).clone()),
            None => (0, PropertyIndex::default()),
        };
        let index = self.keys_from(column, start).ok().map(|keys| {
            let entries = keys
                .into_iter()
                .enumerate()
                .filter_map(|(i, k)| Some((k?, vec![(start + i) as u32])));
            Arc::new(if start == 0 {
                let mut map: HashMap<Key, Vec<u32>> = HashMap::new();
                for (k, rows) in entries {
                    map.entry(k).or_default().extend(rows);
                }
                PropertyIndex::new(map)
            } else {
                base.extended(entries, |old, new| old.extend(new))
            })
        });
        indexes.insert(column.to_string(), index.clone());
        index
    }

    /// Memory held: rows and ids, and the key and property indexes built so far.
    pub fn bytes(&self) -> usize {
        self.files.iter().map(|f| f.bytes).sum::<usize>() + self.index_bytes(&mut HashSet::new())
    }

    /// Memory of the key and property indexes built so far (estimated per entry), leaving
    /// out index layers already in `seen`. The rows are the data files' ([`FileSpan::bytes`]).
    fn index_bytes(&self, seen: &mut HashSet<usize>) -> usize {
        let keys = match self.key_index.get() {
            Some(Ok(index)) => index.bytes(0, seen),
            _ => 0,
        };
        let properties: usize = self
            .property_indexes
            .lock()
            .map(|indexes| indexes.values().flatten().map(|i| i.bytes(8, seen)).sum())
            .unwrap_or(0);
        keys + properties
    }

    /// Rows `start..start + len` with their ids in the hidden column, as writers store them.
    pub fn stored_rows(&self, start: usize, len: usize) -> Result<RecordBatch> {
        let (rows, ids) = self.rows.slice(start, len)?;
        Ok(table_io::with_row_ids(&rows, ids)?)
    }
}

/// Data files a table load reads at once.
pub const FILE_READS_AT_ONCE: usize = 4;

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
    /// Adjacency, when last used, and the endpoint keys its edges named but no node had.
    adjacency: HashMap<AdjacencyKey, AdjacencyEntry>,
    clock: u64,
}

impl Entries {
    /// Memory held, each shared part counted once: snapshots of a table share the chunks of
    /// the data files they have in common (and those of the file entries), the base layers
    /// of their indexes, and adjacency reused across snapshots.
    fn used_bytes(&self) -> usize {
        let mut files: HashSet<(&str, i32)> = HashSet::with_capacity(self.files.len());
        let mut bytes = 0;
        for ((path, schema_id), (_, b, _)) in &self.files {
            files.insert((path, *schema_id));
            bytes += b;
        }
        let mut seen = HashSet::new();
        for (t, _) in self.tables.values() {
            let schema_id = t.table.metadata().current_schema_id();
            for span in &t.files {
                if files.insert((&span.path, schema_id)) {
                    bytes += span.bytes;
                }
            }
            bytes += t.index_bytes(&mut seen);
        }
        for (a, _, d) in self.adjacency.values() {
            if seen.insert(Arc::as_ptr(a) as usize) {
                bytes += a.heap_bytes();
            }
            bytes += d.len() * std::mem::size_of::<Key>();
        }
        bytes
    }

    /// Drops all but the [`SNAPSHOTS_PER_TABLE`] most recently used snapshots of table
    /// `uuid`, the file entries only the dropped ones read, and all but as many adjacency
    /// entries of it as an edge table; returns whether anything went.
    fn keep_recent(&mut self, uuid: &str) -> bool {
        let mut snapshots: Vec<(u64, Option<i64>)> = self
            .tables
            .iter()
            .filter(|((u, _), _)| u == uuid)
            .map(|((_, s), (_, used))| (*used, *s))
            .collect();
        let mut adjacency: Vec<(u64, AdjacencyKey)> = self
            .adjacency
            .iter()
            .filter(|(k, _)| k.0 == uuid)
            .map(|(k, (_, used, _))| (*used, k.clone()))
            .collect();
        if snapshots.len() <= SNAPSHOTS_PER_TABLE && adjacency.len() <= SNAPSHOTS_PER_TABLE {
            return false;
        }
        snapshots.sort_unstable_by_key(|(used, _)| std::cmp::Reverse(*used));
        let mut dropped_files = HashSet::new();
        for (_, snapshot) in snapshots.iter().skip(SNAPSHOTS_PER_TABLE) {
            if let Some((t, _)) = self.tables.remove(&(uuid.to_string(), *snapshot)) {
                let schema_id = t.table.metadata().current_schema_id();
                dropped_files.extend(t.files.iter().map(|f| (f.path.clone(), schema_id)));
            }
        }
        for (_, (t, _)) in self.tables.iter().filter(|((u, _), _)| u == uuid) {
            let schema_id = t.table.metadata().current_schema_id();
            for f in &t.files {
                dropped_files.remove(&(f.path.clone(), schema_id));
            }
        }
        for file in &dropped_files {
            self.files.remove(file);
        }
        adjacency.sort_unstable_by_key(|(used, _)| std::cmp::Reverse(*used));
        for (_, key) in adjacency.iter().skip(SNAPSHOTS_PER_TABLE) {
            self.adjacency.remove(key);
        }
        true
    }
}

/// Forgets what the tier holds of tables a statement altered in memory, unless the
/// statement commits (`disarm`): a schema staged and then abandoned has the schema id the
/// next committed change of the table will have, with other columns, and the tier tells
/// schema versions apart by id.
pub(crate) struct ForgetOnDrop<'a> {
    cache: &'a Cache,
    tables: Vec<(String, String)>,
}

impl<'a> ForgetOnDrop<'a> {
    pub fn new(cache: &'a Cache) -> Self {
        ForgetOnDrop {
            cache,
            tables: Vec::new(),
        }
    }

    /// Forget these tables (uuid and location) if dropped armed.
    pub fn set(&mut self, tables: &[Table]) {
        self.tables = tables
            .iter()
            .map(|t| {
                (
                    t.metadata().uuid().to_string(),
                    t.metadata().location().to_string(),
                )
            })
            .collect();
    }

    pub fn disarm(&mut self) {
        self.tables.clear();
    }
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        for (uuid, location) in &self.tables {
            self.cache.forget(uuid, location);
        }
    }
}

/// Snapshots of one table the tier keeps (most recently used first), and as many adjacency
/// entries per edge table: enough for a writer's snapshot, the one it commits, and readers a
/// little behind. Older ones are read again if asked for; keeping every snapshot a stream of
/// commits leaves behind would make each lookup and budget check slower as they pile up.
pub const SNAPSHOTS_PER_TABLE: usize = 4;

/// What the hot tier holds: for monitoring, and for tests of what a statement loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotTierStats {
    pub budget_bytes: usize,
    pub used_bytes: usize,
    /// Tables with rows in memory (any snapshot), by name.
    pub tables: Vec<String>,
    /// Table snapshots held (at most [`SNAPSHOTS_PER_TABLE`] per table).
    pub snapshots: usize,
    /// Key indexes and adjacency built from scratch since the database opened (not those
    /// extended or reused from an earlier snapshot): what a write made the reads after it redo.
    pub key_index_builds: u64,
    pub adjacency_builds: u64,
}

/// Counts of indexes built from scratch.
#[derive(Debug, Default)]
pub struct Builds {
    key_indexes: AtomicU64,
    adjacency: AtomicU64,
}

/// Adjacency, when it was last used, and the endpoint keys its edges named but no node had.
type AdjacencyEntry = (Arc<Adjacency>, u64, Arc<HashSet<Key>>);

/// Adjacency depends on the edge snapshot and both endpoint snapshots and their places in
/// the global numbering.
type AdjacencyKey = (String, Option<i64>, Option<i64>, Option<i64>, u32, u32);

/// A metadata file and the id of the schema current in it (a statement's staged schema
/// change keeps its metadata file).
type SchemaVersion = (String, i32);

pub struct Cache {
    budget_bytes: usize,
    entries: Mutex<Entries>,
    /// Each table's user schema with the metadata file it was derived from: every statement
    /// needs every table's schema, and converting it from Iceberg each time is wasted work.
    /// One entry per table (a newer metadata file replaces the older).
    /// By table uuid: the user schema of one metadata file and schema id.
    schemas: Mutex<HashMap<String, (SchemaVersion, SchemaRef)>>,
    evictions: AtomicU64,
    builds: Arc<Builds>,
}

impl Cache {
    pub fn new(budget_bytes: usize) -> Self {
        Cache {
            budget_bytes,
            entries: Mutex::new(Entries::default()),
            schemas: Mutex::new(HashMap::new()),
            evictions: Default::default(),
            builds: Default::default(),
        }
    }

    /// The table's columns as users see them, converted once per metadata file and schema
    /// (a statement's staged schema change keeps the metadata file it was made from).
    pub fn user_schema(&self, table: &Table, info: &TableInfo) -> Result<SchemaRef> {
        let uuid = table.metadata().uuid().to_string();
        let location = table.metadata_location().unwrap_or_default().to_string();
        let version = (location, table.metadata().current_schema_id());
        let mut schemas = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        if !version.0.is_empty()
            && let Some((cached_at, schema)) = schemas.get(&uuid)
            && *cached_at == version
        {
            return Ok(schema.clone());
        }
        let schema = user_schema(table_io::arrow_schema(table)?.as_ref(), info);
        if !version.0.is_empty() {
            schemas.insert(uuid, (version, schema.clone()));
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
            snapshots: e.tables.len(),
            key_index_builds: self.builds.key_indexes.load(Ordering::Relaxed),
            adjacency_builds: self.builds.adjacency.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshot's rows if the hot tier holds them now (nothing is read).
    pub fn peek(&self, table: &Table, snapshot_id: Option<i64>) -> Option<Arc<TableData>> {
        let key = (table.metadata().uuid().to_string(), snapshot_id);
        let mut e = self.lock();
        e.clock += 1;
        let clock = e.clock;
        let (data, used) = e.tables.get_mut(&key)?;
        if data.table.metadata().current_schema_id() != table.metadata().current_schema_id() {
            return None;
        }
        *used = clock;
        Some(data.clone())
    }

    /// The snapshot's rows (None: no snapshot yet, so no rows), from cache or read; only
    /// files not cached are read.
    pub async fn table_data(
        &self,
        table: &Table,
        info: &TableInfo,
        snapshot_id: Option<i64>,
    ) -> Result<Arc<TableData>> {
        if let Some(data) = self.peek(table, snapshot_id) {
            return Ok(data);
        }
        let key = (table.metadata().uuid().to_string(), snapshot_id);
        let data = Arc::new(self.load(table, info, snapshot_id).await?);
        let mut e = self.lock();
        e.clock += 1;
        let clock = e.clock;
        e.tables.insert(key.clone(), (data.clone(), clock));
        self.keep_recent(&mut e, &key.0);
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
        let mut per_file = Vec::new();
        let mut chunks = Vec::new();
        let mut ids = Vec::new();
        let mut start = 0;
        // Files are read a few at a time (their opening and footer reads overlap), and come
        // back in manifest order.
        {
            let tasks = self.file_tasks(table, snapshot_id).await?;
            let read = futures::StreamExt::buffered(
                futures::StreamExt::map(futures::stream::iter(tasks), |task| {
                    let (storage_schema, schema) = (&storage_schema, &schema);
                    async move {
                        let path = task.data_file_path.clone();
                        let key = (path.clone(), schema_id);
                        let cached = {
                            let mut e = self.lock();
                            e.clock += 1;
                            let clock = e.clock;
                            e.files.get_mut(&key).map(|(b, bytes, used)| {
                                *used = clock;
                                (b.clone(), *bytes)
                            })
                        };
                        if let Some((chunks, bytes)) = cached {
                            return Ok::<_, Error>((path, chunks, bytes));
                        }
                        // Converted once per file and schema version: a snapshot that keeps the
                        // file reuses the chunks as they are.
                        let mut converted = Vec::new();
                        for b in table_io::read_task(table, task).await? {
                            // Older files may predate columns added since: present the current
                            // schema.
                            let mut b = table_io::conform_batch(&b, storage_schema)?;
                            let file_ids = b.remove_column(id_column);
                            converted.push((to_user(&b, schema)?, file_ids));
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
                        Ok((path, converted, bytes))
                    }
                }),
                FILE_READS_AT_ONCE,
            );
            futures::pin_mut!(read);
            while let Some((path, file_chunks, bytes)) =
                futures::TryStreamExt::try_next(&mut read).await?
            {
                let mut len = 0;
                for (b, i) in file_chunks.iter() {
                    len += b.num_rows();
                    chunks.push(b.clone());
                    ids.push(i.clone());
                }
                files.push(FileSpan {
                    path,
                    start,
                    len,
                    bytes,
                });
                per_file.push(file_chunks);
                start += len;
            }
        }
        let (prefixes, predecessor) = self.predecessor(table, info, &files, &per_file);
        Ok(TableData {
            table: table.clone(),
            info: info.clone(),
            snapshot_id,
            rows: Arc::new(Chunked::try_new(schema, chunks, ids)?),
            files,
            key_index: std::sync::OnceLock::new(),
            property_indexes: Default::default(),
            prefixes,
            predecessor,
            builds: self.builds.clone(),
        })
    }

    /// The latest snapshot of `table` in memory whose rows are the first rows here, key for
    /// key: its data files are the first of `files`, except files rewritten in place (same
    /// ids and keys in the same order, other values changed). Returns its prefixes plus
    /// itself, and the indexes it built that still hold, for the new snapshot to extend.
    fn predecessor(
        &self,
        table: &Table,
        info: &TableInfo,
        files: &[FileSpan],
        per_file: &[FileChunks],
    ) -> (Vec<(Option<i64>, usize)>, Predecessor) {
        let uuid = table.metadata().uuid().to_string();
        let schema_id = table.metadata().current_schema_id();
        let mut candidates: Vec<Arc<TableData>> = self
            .lock()
            .tables
            .iter()
            .filter(|((u, _), _)| *u == uuid)
            .map(|(_, (data, _))| data.clone())
            .filter(|d| {
                d.table.metadata().current_schema_id() == schema_id && d.files.len() <= files.len()
            })
            .collect();
        candidates.sort_by_key(|d| std::cmp::Reverse(d.rows.num_rows()));
        // Columns an in-place rewrite must leave as they were for positions to mean the same.
        let mut keys: Vec<&str> = vec![ID];
        keys.extend(info.primary_key.as_deref());
        if info.kind == crate::schema::TableKind::Edge {
            keys.extend(["src", "dst"]);
        }
        for before in candidates {
            let mut rewritten = Vec::new();
            let same = before
                .files
                .iter()
                .zip(files)
                .enumerate()
                .all(|(i, (a, b))| {
                    if a.path == b.path {
                        return true;
                    }
                    rewritten.push(i);
                    a.len == b.len
                        && keys
                            .iter()
                            .all(|k| same_values(&before, a, &per_file[i], k).unwrap_or(false))
                });
            if !same {
                continue;
            }
            let mut prefixes = before.prefixes.clone();
            prefixes.push((before.snapshot_id, before.rows.num_rows()));
            if prefixes.len() > MAX_PREFIX_SNAPSHOTS {
                prefixes.remove(0);
            }
            // A property index holds where no rewritten file changed its column.
            let property_indexes = before
                .property_indexes
                .lock()
                .map(|m| {
                    m.iter()
                        .filter_map(|(c, i)| Some((c.clone(), i.clone()?)))
                        .filter(|(c, _)| {
                            rewritten.iter().all(|&i| {
                                same_values(&before, &before.files[i], &per_file[i], c)
                                    .unwrap_or(false)
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let predecessor = Predecessor {
                rows: before.rows.num_rows(),
                key_index: before
                    .key_index
                    .get()
                    .and_then(|k| k.as_ref().ok())
                    .cloned(),
                property_indexes,
            };
            return (prefixes, predecessor);
        }
        (Vec::new(), Predecessor::default())
    }

    async fn file_tasks(
        &self,
        table: &Table,
        snapshot_id: Option<i64>,
    ) -> Result<Vec<iceberg::scan::FileScanTask>> {
        let Some(id) = snapshot_id else {
            return Ok(vec![]);
        };
        let mut tasks = table_io::plan_tasks(table, id, None, None).await?;
        // In manifest order, so a snapshot after appends starts with the files (and rows) of
        // the one before it, and what that one built can be extended.
        let order: HashMap<String, usize> = table_io::data_files(table, id)
            .await?
            .into_iter()
            .enumerate()
            .map(|(i, f)| (f.path, i))
            .collect();
        tasks.sort_by_key(|t| {
            (
                order.get(&t.data_file_path).copied(),
                t.data_file_path.clone(),
            )
        });
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
            if let Some((adj, used, _)) = e.adjacency.get_mut(&key) {
                *used = clock;
                return Ok(adj.clone());
            }
            // Built over earlier snapshots of the endpoints whose rows are the first rows of
            // these (appends since): still right, unless an appended node has the key of an
            // edge that had no endpoint then.
            // The edge rows must all be the same too (key for key: rewritten in place at most).
            let edges = edge.rows.num_rows();
            let reusable = e
                .adjacency
                .iter()
                .filter(|(k, _)| {
                    (&k.0, k.4, k.5) == (&key.0, from_offset, to_offset)
                        && prefix_rows(edge, k.1) == Some(edges)
                })
                .find_map(|(k, (adj, _, dangling))| {
                    let from_rows = prefix_rows(from, k.2)?;
                    let to_rows = prefix_rows(to, k.3)?;
                    Some((k.clone(), adj.clone(), dangling.clone(), from_rows, to_rows))
                });
            drop(e);
            if let Some((_, adjacency, dangling, from_rows, to_rows)) = reusable {
                let pk = |t: &TableData| t.info.primary_key.clone().unwrap_or_default();
                let connects = |t: &TableData, start: usize| -> Result<bool> {
                    if dangling.is_empty() || start == t.rows.num_rows() {
                        return Ok(false);
                    }
                    Ok(t.keys_from(&pk(t), start)?
                        .iter()
                        .flatten()
                        .any(|k| dangling.contains(k)))
                };
                if !connects(from, from_rows)? && !connects(to, to_rows)? {
                    let mut e = self.lock();
                    e.clock += 1;
                    let clock = e.clock;
                    let edge_uuid = key.0.clone();
                    e.adjacency
                        .insert(key, (adjacency.clone(), clock, dangling.clone()));
                    self.keep_recent(&mut e, &edge_uuid);
                    return Ok(adjacency);
                }
            }
        }
        self.builds.adjacency.fetch_add(1, Ordering::Relaxed);
        let from_index = from.key_index()?;
        let to_index = to.key_index()?;
        let src = edge.keys_from("src", 0)?;
        let dst = edge.keys_from("dst", 0)?;
        // Edge rows keep their ordinals; an edge whose endpoint is missing is left out, and
        // the missing keys are kept (a node created later with one must be connected).
        let mut pairs = Vec::with_capacity(src.len());
        let mut rows = Vec::with_capacity(src.len());
        let mut dangling = HashSet::new();
        for (row, (s, d)) in src.iter().zip(dst.iter()).enumerate() {
            let (Some(s), Some(d)) = (s, d) else {
                continue;
            };
            match (from_index.get(s), to_index.get(d)) {
                (Some(&s), Some(&d)) => {
                    pairs.push((from_offset + s, to_offset + d));
                    rows.push(row as u32);
                }
                (found_s, found_d) => {
                    if found_s.is_none() {
                        dangling.insert(s.clone());
                    }
                    if found_d.is_none() {
                        dangling.insert(d.clone());
                    }
                }
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
        let edge_uuid = key.0.clone();
        e.adjacency
            .insert(key, (adjacency.clone(), clock, Arc::new(dangling)));
        self.keep_recent(&mut e, &edge_uuid);
        drop(e);
        self.evict();
        Ok(adjacency)
    }

    /// [`Entries::keep_recent`] for table `uuid`; what it drops counts as an eviction (cached
    /// plans holding those rows let go of them).
    fn keep_recent(&self, e: &mut Entries, uuid: &str) {
        if e.keep_recent(uuid) {
            self.evictions.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Drops everything held of the table with this uuid whose files are under `location`:
    /// its snapshots, adjacency and file chunks (of every schema version).
    pub fn forget(&self, uuid: &str, location: &str) {
        let prefix = format!("{}/", location.trim_end_matches('/'));
        let mut e = self.lock();
        e.tables.retain(|(u, _), _| u != uuid);
        e.adjacency.retain(|k, _| k.0 != uuid);
        e.files.retain(|(path, _), _| !path.starts_with(&prefix));
        self.evictions.fetch_add(1, Ordering::AcqRel);
        drop(e);
        self.schemas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uuid);
    }

    /// How many times entries were evicted: what holds rows outside the tier (cached plans)
    /// lets go of them when it moves.
    pub fn generation(&self) -> u64 {
        self.evictions.load(Ordering::Acquire)
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
            self.evictions.fetch_add(1, Ordering::AcqRel);
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
                // A value the declared type cannot hold is an error, never a null.
                let options = arrow::compute::CastOptions {
                    safe: false,
                    ..Default::default()
                };
                arrow::compute::cast_with_options(c, f.data_type(), &options)
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

/// Whether `column` (`ID`: the row ids) of `file`'s rows in `before` equals the same column of
/// `chunks` (a file's rows in a later snapshot).
fn same_values(
    before: &TableData,
    file: &FileSpan,
    chunks: &FileChunks,
    column: &str,
) -> Result<bool> {
    let (old_rows, old_ids) = before.rows.slice(file.start, file.len)?;
    let old = if column == ID {
        old_ids
    } else {
        match old_rows.column_by_name(column) {
            Some(c) => c.clone(),
            None => return Ok(false),
        }
    };
    let mut parts = Vec::with_capacity(chunks.len());
    for (batch, ids) in chunks.iter() {
        parts.push(if column == ID {
            ids.clone()
        } else {
            match batch.column_by_name(column) {
                Some(c) => c.clone(),
                None => return Ok(false),
            }
        });
    }
    let refs: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
    let new = arrow::compute::concat(&refs)?;
    Ok(old.as_ref() == new.as_ref())
}

/// The rows `data` had at `snapshot`, if that snapshot's rows are its first rows.
fn prefix_rows(data: &TableData, snapshot: Option<i64>) -> Option<usize> {
    if data.snapshot_id == snapshot {
        return Some(data.rows.num_rows());
    }
    data.prefixes
        .iter()
        .find(|(s, _)| *s == snapshot)
        .map(|(_, rows)| *rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layered_map_extends_and_folds() {
        let base = Layered::new(HashMap::from([(Key::Int(1), vec![0u32])]));
        let grown = base.extended(
            [(Key::Int(1), vec![5]), (Key::Int(2), vec![6])],
            |old, new| old.extend(new),
        );
        assert_eq!(grown.get(&Key::Int(1)), Some(&vec![0, 5]));
        assert_eq!(grown.get(&Key::Int(2)), Some(&vec![6]));
        // The base is shared, not copied, and the original is unchanged.
        assert!(Arc::ptr_eq(&base.base, &grown.base));
        assert_eq!(base.get(&Key::Int(1)), Some(&vec![0]));
        // Past the delta bound, the layers fold into a new base.
        let many = (0..INDEX_DELTA_MIN as i64 + 2).map(|i| (Key::Int(100 + i), vec![1]));
        let folded = grown.extended(many, |old, new| old.extend(new));
        assert!(folded.delta.is_empty());
        assert_eq!(folded.get(&Key::Int(1)), Some(&vec![0, 5]));
        assert_eq!(folded.iter().count(), INDEX_DELTA_MIN + 4);
    }
}
