//! Persistent vector indexes: usearch HNSW files in the object store beside their table,
//! opened by memory-mapping, and searched at any snapshot of the table.
//!
//! - **Definition.** The table property `contextdb.vector-index.<column>` holds the index's
//!   name, parameters and, once built, the index file, the file listing the data files it
//!   covers, the snapshot it was built over and its row count ([`VectorIndexDef`]).
//! - **Files.** `<table>/vector-index/<uuid>.usearch` (usearch's format, keyed by stable row
//!   id) and `<uuid>.files` (JSON: the data files whose rows it holds). Written once, never
//!   changed; VACUUM keeps the files a definition names and removes the others once they are
//!   older than the retention.
//! - **Any snapshot.** Data files never change, so a row of a snapshot that lives in a covered
//!   file is in the index with the vector it has there. Rows in other files (appended or
//!   rewritten since the build, or a snapshot older than it) are searched exactly, and the
//!   index's answers are filtered to keys whose row in this snapshot lives in a covered file:
//!   a deleted row, or one rewritten with a new vector, never comes back from the index.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float32Type, Int64Type};
use contextdb_planner::source::SnapshotVectorIndex;
use contextdb_vector::{HnswIndex, IndexParams};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::cache::TableData;
use crate::error::{Error, ErrorKind, Result};

/// Where a table keeps its vector index files, under its location.
pub const INDEX_DIR: &str = "vector-index";
/// Indexes kept open at once; past it the least recently opened is closed (its file stays).
pub const MAX_OPEN_INDEXES: usize = 64;

/// A vector index as its table's property describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorIndexDef {
    pub name: String,
    /// [`IndexParams::to_text`].
    pub params: String,
    /// The index file and the covered-files list, relative to the table's location (None:
    /// defined by an earlier version, not built).
    pub file: Option<String>,
    pub covers: Option<String>,
    /// The snapshot the index was built over (None: the table had none).
    pub snapshot: Option<i64>,
    /// Vectors in the index.
    pub rows: u64,
}

impl VectorIndexDef {
    /// Reads a property value: JSON, or `name;metric` as earlier versions wrote (not built).
    pub fn parse(value: &str) -> Option<VectorIndexDef> {
        if let Ok(def) = serde_json::from_str::<VectorIndexDef>(value) {
            return Some(def);
        }
        let (name, metric) = value.split_once(';')?;
        Some(VectorIndexDef {
            name: name.to_string(),
            params: metric.to_string(),
            file: None,
            covers: None,
            snapshot: None,
            rows: 0,
        })
    }

    pub fn to_property(&self) -> String {
        serde_json::to_string(self).expect("a definition serializes")
    }

    pub fn params(&self) -> Result<IndexParams> {
        IndexParams::from_text(&self.params).map_err(|e| {
            Error::internal(format!(
                "vector index `{}` has bad parameters: {e}",
                self.name
            ))
        })
    }

    /// The locations of its files under `table_location`.
    pub fn locations(&self, table_location: &str) -> Vec<String> {
        [&self.file, &self.covers]
            .into_iter()
            .flatten()
            .map(|f| format!("{}/{f}", table_location.trim_end_matches('/')))
            .collect()
    }
}

/// An index opened from its file, with the data files it covers.
#[derive(Debug)]
pub struct OpenIndex {
    pub index: HnswIndex,
    pub covered: HashSet<String>,
}

/// The indexes this process has open, by index file location.
pub struct VectorIndexes {
    store: Arc<dyn ObjectStore>,
    open: Mutex<Vec<(String, Arc<OpenIndex>)>>,
    /// Where indexes of a store without local files (memory, S3) are downloaded to be mapped.
    downloads: OnceLock<tempfile::TempDir>,
    builds: AtomicU64,
    extensions: AtomicU64,
    opens: AtomicU64,
}

/// What the process did with vector indexes (for monitoring, and for tests that a restart
/// opens an index instead of rebuilding it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VectorIndexStats {
    /// Indexes built (CREATE VECTOR INDEX and rebuilds after writes).
    pub builds: u64,
    /// Indexes extended with the rows written since they were built.
    pub extensions: u64,
    /// Index files opened (memory-mapped) from the store.
    pub opens: u64,
    /// Indexes open now.
    pub open: usize,
}

impl std::fmt::Debug for VectorIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndexes").finish_non_exhaustive()
    }
}

fn store_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Execution, format!("vector index {what}: {e}"))
}

fn object_path(location: &str) -> Result<ObjectPath> {
    contextdb_storage::object_io::object_path(location)
        .map_err(|e| Error::internal(format!("bad location {location}: {e}")))
}

impl VectorIndexes {
    pub fn new(store: Arc<dyn ObjectStore>) -> VectorIndexes {
        VectorIndexes {
            store,
            open: Mutex::new(Vec::new()),
            downloads: OnceLock::new(),
            builds: AtomicU64::new(0),
            extensions: AtomicU64::new(0),
            opens: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> VectorIndexStats {
        VectorIndexStats {
            builds: self.builds.load(Ordering::Relaxed),
            extensions: self.extensions.load(Ordering::Relaxed),
            opens: self.opens.load(Ordering::Relaxed),
            open: self.open.lock().unwrap_or_else(|e| e.into_inner()).len(),
        }
    }

    fn cached(&self, location: &str) -> Option<Arc<OpenIndex>> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.iter()
            .find(|(l, _)| l == location)
            .map(|(_, i)| i.clone())
    }

    fn remember(&self, location: String, index: Arc<OpenIndex>) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(l, _)| *l != location);
        if open.len() >= MAX_OPEN_INDEXES {
            open.remove(0);
        }
        open.push((location, index));
    }

    /// Opens the index `def` describes (a table at `table_location`): memory-maps its file,
    /// downloading it first from a store without local files. Never rebuilds.
    pub async fn open(&self, table_location: &str, def: &VectorIndexDef) -> Result<Arc<OpenIndex>> {
        let (Some(file), Some(covers)) = (&def.file, &def.covers) else {
            return Err(Error::plan(format!(
                "vector index `{}` was defined by an earlier version and never built; DROP \
                 VECTOR INDEX {} and create it again",
                def.name, def.name
            )));
        };
        let base = table_location.trim_end_matches('/');
        let location = format!("{base}/{file}");
        if let Some(open) = self.cached(&location) {
            return Ok(open);
        }
        let listed = self
            .store
            .get(&object_path(&format!("{base}/{covers}"))?)
            .await
            .map_err(|e| store_err("covered files", e))?
            .bytes()
            .await
            .map_err(|e| store_err("covered files", e))?;
        let covered: Vec<String> =
            serde_json::from_slice(&listed).map_err(|e| store_err("covered files", e))?;
        let path = self.local_path(&location, file).await?;
        let params = def.params()?;
        let index = tokio::task::spawn_blocking(move || HnswIndex::view(&path, params))
            .await
            .map_err(|e| Error::internal(format!("vector index open: {e}")))?
            .map_err(|e| store_err("open", e))?;
        let open = Arc::new(OpenIndex {
            index,
            covered: covered.into_iter().collect(),
        });
        self.opens.fetch_add(1, Ordering::Relaxed);
        self.remember(location, open.clone());
        Ok(open)
    }

    /// A local path of the index file at `location` (`file` relative to its table): the file
    /// itself on a local store, else a copy downloaded once.
    async fn local_path(&self, location: &str, file: &str) -> Result<PathBuf> {
        if let Some(local) = location.strip_prefix("file://") {
            return Ok(PathBuf::from(local));
        }
        let dir = match self.downloads.get() {
            Some(d) => d,
            None => {
                let d = tempfile::tempdir().map_err(|e| store_err("download", e))?;
                self.downloads.get_or_init(|| d)
            }
        };
        let path = dir.path().join(file.replace('/', "_"));
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let bytes = self
            .store
            .get(&object_path(location)?)
            .await
            .map_err(|e| store_err("download", e))?
            .bytes()
            .await
            .map_err(|e| store_err("download", e))?;
        // Written aside and renamed: a file at `path` is always whole.
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, &bytes)
            .await
            .map_err(|e| store_err("download", e))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| store_err("download", e))?;
        Ok(path)
    }

    /// Extends the index `def` describes with the rows of `data` it does not cover (appended,
    /// or rewritten with possibly new vectors, since it was built), writes the result as new
    /// files and keeps it open; returns the definition to commit. Rows deleted since stay in
    /// the index (searches filter them out) until a rebuild.
    pub async fn extend(
        &self,
        at: &IndexAtSnapshot,
        column: &str,
        def: &VectorIndexDef,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<VectorIndexDef> {
        let Some(file) = &def.file else {
            return Err(Error::internal("extending an index that was never built"));
        };
        let data = &at.data;
        let base = table_base(data);
        let path = self.local_path(&format!("{base}/{file}"), file).await?;
        let mut uncovered = vec![false; data.rows.num_rows()];
        for range in &at.uncovered {
            uncovered[range.start as usize..range.end as usize].fill(true);
        }
        let (_, keys, vectors) = vectors_of(data, column, Some(uncovered.as_slice()))?;
        let params = def.params()?;
        let added = keys.len();
        let started = std::time::Instant::now();
        let index = indexing("vector index extension", added, progress, move |report| {
            let index = HnswIndex::load(&path, params)?;
            index.extend(&keys, &vectors, report)?;
            Ok(index)
        })
        .await?;
        self.extensions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            index = def.name,
            added,
            ms = started.elapsed().as_millis() as u64,
            "vector index extended"
        );
        self.store_index(index, data, &def.name, params).await
    }

    /// Builds an index of `column` over `data` (every core), writes its files beside the table
    /// and keeps it open; returns the definition to commit.
    pub async fn build(
        &self,
        data: &Arc<TableData>,
        column: &str,
        name: &str,
        params: IndexParams,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<VectorIndexDef> {
        let (dimension, keys, vectors) = vectors_of(data, column, None)?;
        let started = std::time::Instant::now();
        let rows = keys.len();
        let index = indexing("vector index build", rows, progress, move |report| {
            HnswIndex::build(params, dimension, &keys, &vectors, report)
        })
        .await?;
        self.builds.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            index = name,
            rows,
            ms = started.elapsed().as_millis() as u64,
            "vector index built"
        );
        self.store_index(index, data, name, params).await
    }

    /// Writes `index` (covering every data file of `data`) and its covered-files list beside
    /// the table under new names, and keeps it open; returns its definition.
    async fn store_index(
        &self,
        index: HnswIndex,
        data: &Arc<TableData>,
        name: &str,
        params: IndexParams,
    ) -> Result<VectorIndexDef> {
        let id = uuid::Uuid::new_v4();
        let file = format!("{INDEX_DIR}/{id}.usearch");
        let covers = format!("{INDEX_DIR}/{id}.files");
        let base = table_base(data);
        let saved = tokio::task::spawn_blocking(move || -> std::result::Result<_, String> {
            let temp = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
            index.save(temp.path())?;
            let bytes = std::fs::read(temp.path()).map_err(|e| e.to_string())?;
            Ok((index, bytes))
        })
        .await
        .map_err(|e| Error::internal(format!("vector index save: {e}")))?
        .map_err(|e| store_err("save", e))?;
        let (index, bytes) = saved;
        let rows = index.len() as u64;
        let covered: Vec<String> = data.files.iter().map(|f| f.path.clone()).collect();
        let listed = serde_json::to_vec(&covered).map_err(|e| store_err("covered files", e))?;
        // The covered-files list first: an index file is useless without it.
        for (location, payload) in [
            (format!("{base}/{covers}"), listed),
            (format!("{base}/{file}"), bytes),
        ] {
            self.store
                .put(&object_path(&location)?, payload.into())
                .await
                .map_err(|e| store_err("write", e))?;
        }
        self.remember(
            format!("{base}/{file}"),
            Arc::new(OpenIndex {
                index,
                covered: covered.into_iter().collect(),
            }),
        );
        Ok(VectorIndexDef {
            name: name.to_string(),
            params: params.to_text(),
            file: Some(file),
            covers: Some(covers),
            snapshot: data.snapshot_id,
            rows,
        })
    }
}

/// How often a long index build or extension reports its progress.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs index work (`what`) of `total` rows on a blocking thread; the rows it reports done
/// go to `progress` every [`PROGRESS_INTERVAL`] and once at the end. A failure of the work is
/// an execution error, a panic an internal one.
async fn indexing<T: Send + 'static>(
    what: &str,
    total: usize,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
    work: impl FnOnce(&(dyn Fn(usize) + Sync)) -> std::result::Result<T, String> + Send + 'static,
) -> Result<T> {
    let done = Arc::new(AtomicU64::new(0));
    let counter = done.clone();
    let mut work =
        tokio::task::spawn_blocking(move || work(&|n| counter.store(n as u64, Ordering::Relaxed)));
    let total = total as u64;
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    let finished = loop {
        tokio::select! {
            finished = &mut work => {
                progress(total, total);
                break finished;
            }
            _ = tick.tick() => progress(done.load(Ordering::Relaxed).min(total), total),
        }
    };
    finished
        .map_err(|e| Error::internal(format!("{what}: {e}")))?
        .map_err(|e| Error::new(ErrorKind::Execution, e))
}

/// The location of `data`'s table, without a trailing slash.
fn table_base(data: &TableData) -> String {
    data.table
        .metadata()
        .location()
        .trim_end_matches('/')
        .to_string()
}

/// The non-null vectors of `column` in `data` (of the rows `only` flags, when given):
/// dimension, row ids, values row after row.
fn vectors_of(
    data: &TableData,
    column: &str,
    only: Option<&[bool]>,
) -> Result<(usize, Vec<u64>, Vec<f32>)> {
    let dimension = match data
        .schema()
        .field_with_name(column)
        .map(|f| f.data_type().clone())
    {
        Ok(DataType::FixedSizeList(item, d)) if item.data_type() == &DataType::Float32 => {
            d as usize
        }
        _ => return Err(Error::plan(format!("`{column}` is not a VECTOR column"))),
    };
    let mut keys = Vec::with_capacity(data.rows.num_rows());
    let mut values = Vec::with_capacity(data.rows.num_rows() * dimension);
    let columns = data
        .rows
        .column(column)
        .ok_or_else(|| Error::internal(format!("no column `{column}`")))?;
    for ((start, _, ids), column) in data.rows.chunks().zip(columns) {
        let list = column.as_fixed_size_list();
        let flat = list.values().as_primitive::<Float32Type>().values();
        let ids = ids.as_primitive::<Int64Type>();
        for row in 0..list.len() {
            if list.is_null(row) || only.is_some_and(|o| !o[start + row]) {
                continue;
            }
            let from = list.value_offset(row) as usize;
            keys.push(ids.value(row) as u64);
            values.extend_from_slice(&flat[from..from + dimension]);
        }
    }
    Ok((dimension, keys, values))
}

/// An open index as one snapshot of its table sees it.
#[derive(Debug)]
pub struct IndexAtSnapshot {
    open: Arc<OpenIndex>,
    data: Arc<TableData>,
    /// Per data file of the snapshot: its first row and whether the index covers it.
    spans: Vec<(u32, bool)>,
    uncovered: Vec<Range<u32>>,
    /// Every index key is a row of this snapshot in a covered file: the snapshot holds exactly
    /// the covered files, and the index was built over them alone.
    keys_all_live: bool,
    /// Built by the first filtered search.
    key_rows: std::sync::OnceLock<KeyRows>,
}

/// Index key (row id) → row of the snapshot, for the rows in covered files only: what a
/// filtered search asks of every node it visits, so one array read when the keys are dense
/// (row ids are a table number and a growing sequence), a hash lookup otherwise.
#[derive(Debug)]
enum KeyRows {
    Dense { base: u64, rows: Vec<u32> },
    Sparse(HashMap<u64, u32>),
}

/// A dense key map may hold at most this many slots per row it maps (plus a constant), so
/// deletions that leave gaps in the sequence cannot make it large.
const DENSE_KEY_SLOTS_PER_ROW: u64 = 4;
const NO_ROW: u32 = u32::MAX;

impl KeyRows {
    fn get(&self, key: u64) -> Option<u32> {
        match self {
            KeyRows::Dense { base, rows } => {
                let at = usize::try_from(key.checked_sub(*base)?).ok()?;
                rows.get(at).copied().filter(|r| *r != NO_ROW)
            }
            KeyRows::Sparse(map) => map.get(&key).copied(),
        }
    }
}

impl IndexAtSnapshot {
    pub fn new(open: Arc<OpenIndex>, data: Arc<TableData>) -> IndexAtSnapshot {
        let mut spans = Vec::with_capacity(data.files.len());
        let mut uncovered: Vec<Range<u32>> = Vec::new();
        let mut all_covered = true;
        for f in &data.files {
            let covered = open.covered.contains(&f.path);
            all_covered &= covered;
            let (start, end) = (f.start as u32, (f.start + f.len) as u32);
            spans.push((start, covered));
            if !covered && end > start {
                match uncovered.last_mut() {
                    Some(last) if last.end == start => last.end = end,
                    _ => uncovered.push(start..end),
                }
            }
        }
        let keys_all_live = all_covered
            && data.files.len() == open.covered.len()
            && open.index.len() == data.rows.num_rows();
        IndexAtSnapshot {
            open,
            data,
            spans,
            uncovered,
            keys_all_live,
            key_rows: std::sync::OnceLock::new(),
        }
    }

    fn key_rows(&self) -> &KeyRows {
        self.key_rows.get_or_init(|| {
            let mut covered = Vec::new();
            for (start, _, ids) in self.data.rows.chunks() {
                let ids = ids.as_primitive::<Int64Type>();
                for (i, id) in ids.values().iter().enumerate() {
                    let row = (start + i) as u32;
                    if self.covered(row) {
                        covered.push((*id as u64, row));
                    }
                }
            }
            let (Some(min), Some(max)) = (
                covered.iter().map(|(k, _)| *k).min(),
                covered.iter().map(|(k, _)| *k).max(),
            ) else {
                return KeyRows::Sparse(HashMap::new());
            };
            if max - min < DENSE_KEY_SLOTS_PER_ROW * covered.len() as u64 + 1024 {
                let mut rows = vec![NO_ROW; (max - min + 1) as usize];
                for (key, row) in covered {
                    rows[(key - min) as usize] = row;
                }
                KeyRows::Dense { base: min, rows }
            } else {
                KeyRows::Sparse(covered.into_iter().collect())
            }
        })
    }

    fn covered(&self, row: u32) -> bool {
        let i = self.spans.partition_point(|(start, _)| *start <= row);
        i > 0 && self.spans[i - 1].1
    }

    /// How many rows of the snapshot the index does not cover.
    fn uncovered_rows(&self) -> usize {
        self.uncovered.iter().map(|r| r.len()).sum()
    }
}

impl SnapshotVectorIndex for IndexAtSnapshot {
    fn ef_search(&self) -> usize {
        self.open.index.params().ef_search
    }

    fn uncovered(&self) -> &[Range<u32>] {
        &self.uncovered
    }

    fn search(
        &self,
        query: &[f32],
        k: usize,
        accept: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> datafusion::error::Result<Vec<u32>> {
        let rows = self.key_rows();
        let hits = if self.keys_all_live && accept.is_none() {
            self.open.index.search(query, k, None)
        } else {
            let filter = |key: u64| {
                rows.get(key)
                    .is_some_and(|row| accept.is_none_or(|a| a(row)))
            };
            self.open.index.search(query, k, Some(&filter))
        }
        .map_err(datafusion::error::DataFusionError::Execution)?;
        Ok(hits
            .into_iter()
            .filter_map(|(key, _)| rows.get(key))
            .collect())
    }
}

/// Rows of a snapshot its vector index may leave uncovered (searched exactly) before a commit
/// rebuilds the index: at least this many, and at least 1/[`REFRESH_SHARE`] of the rows it
/// holds, so the rebuilds of a growing table cost a constant per row on average.
pub const REFRESH_MIN_ROWS: usize = 8192;
pub const REFRESH_SHARE: usize = 4;

/// After a commit to `name`: extends each of its vector indexes that leaves too many rows
/// uncovered with those rows, or rebuilds it when it holds too many rows the table no longer
/// has (deleted, or rewritten with another vector), and commits the new definition. The old
/// files stay until VACUUM.
pub(crate) async fn refresh_after_commit(
    db: &crate::database::Database,
    name: &str,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<()> {
    let table = db.load_table(name).await?;
    let props = table.metadata().properties();
    let defs: Vec<(String, VectorIndexDef)> = definitions(props)
        .into_iter()
        .filter(|(_, d)| d.file.is_some())
        .collect();
    if defs.is_empty() {
        return Ok(());
    }
    let info = crate::schema::TableInfo::from_properties(name, props);
    let current = table.metadata().current_snapshot_id();
    if defs.iter().all(|(_, d)| d.snapshot == current) {
        return Ok(());
    }
    let data = db.cache.table_data(&table, &info, current).await?;
    let mut updates = HashMap::new();
    for (column, def) in defs {
        let open = db
            .vector_indexes
            .open(table.metadata().location(), &def)
            .await?;
        let indexed = open.index.len();
        let at = IndexAtSnapshot::new(open, data.clone());
        let uncovered = at.uncovered_rows();
        let live = data.rows.num_rows() - uncovered;
        let stale = indexed.saturating_sub(live);
        let limit = REFRESH_MIN_ROWS.max(indexed / REFRESH_SHARE);
        if uncovered < limit && stale < limit {
            continue;
        }
        // Rows deleted or rewritten since stay in the index until a rebuild drops them.
        let rebuilt = if stale < limit {
            db.vector_indexes
                .extend(&at, &column, &def, progress)
                .await?
        } else {
            db.vector_indexes
                .build(&data, &column, &def.name, def.params()?, progress)
                .await?
        };
        updates.insert(
            format!("{}{column}", crate::schema::PROP_VECTOR_INDEX_PREFIX),
            rebuilt.to_property(),
        );
    }
    if updates.is_empty() {
        return Ok(());
    }
    db.catalog
        .commit_changes(vec![contextdb_catalog::TableChange {
            ident: table.identifier().clone(),
            requirements: vec![
                iceberg::TableRequirement::UuidMatch {
                    uuid: table.metadata().uuid(),
                },
                iceberg::TableRequirement::RefSnapshotIdMatch {
                    r#ref: "main".to_string(),
                    snapshot_id: current,
                },
            ],
            updates: vec![iceberg::TableUpdate::SetProperties { updates }],
        }])
        .await?;
    Ok(())
}

/// Vector index definitions of a table's properties, by column.
pub fn definitions(props: &HashMap<String, String>) -> HashMap<String, VectorIndexDef> {
    props
        .iter()
        .filter_map(|(k, v)| {
            let column = k.strip_prefix(crate::schema::PROP_VECTOR_INDEX_PREFIX)?;
            Some((column.to_string(), VectorIndexDef::parse(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_round_trip_and_read_the_old_form() {
        let def = VectorIndexDef {
            name: "emb".into(),
            params: IndexParams::default().to_text(),
            file: Some("vector-index/x.usearch".into()),
            covers: Some("vector-index/x.files".into()),
            snapshot: Some(7),
            rows: 3,
        };
        assert_eq!(VectorIndexDef::parse(&def.to_property()), Some(def.clone()));
        assert_eq!(
            def.locations("file:///w/t/"),
            vec![
                "file:///w/t/vector-index/x.usearch",
                "file:///w/t/vector-index/x.files"
            ]
        );
        let old = VectorIndexDef::parse("emb;l2").unwrap();
        assert_eq!(old.params().unwrap().metric, contextdb_vector::Metric::L2);
        assert_eq!(old.file, None);
    }
}
