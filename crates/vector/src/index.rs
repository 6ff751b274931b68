//! HNSW vector indexes on usearch: parameters, a multi-threaded build, a file the index is
//! saved to and memory-mapped from, and (filtered) search.
//!
//! The index is keyed by the caller's keys (the engine uses stable row ids). It answers which
//! keys are near a query; the caller scores the rows it returns exactly, so quantization and
//! the index's own distance never change a reported score.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::Metric;

/// Default HNSW connectivity (usearch's `connectivity`, `m` in the literature).
pub const DEFAULT_M: usize = 16;
/// Default candidate list while building (`ef_construction`). With f16 storage it builds the
/// Debian index (63,666 × 384-d) in 8–10 s on two cores, where 128 and f32 took 34.9 s;
/// recall@10 stays at least 0.95 in the Debian test (docs/vectors.md, "Measurements").
pub const DEFAULT_EF_CONSTRUCTION: usize = 64;
/// Default candidate list while searching (`ef_search`); a search of k > ef_search uses k.
pub const DEFAULT_EF_SEARCH: usize = 64;
/// Default storage of vectors in the index: half the memory and file of f32, and faster to
/// build and search; scores still come from the table's f32 vectors.
pub const DEFAULT_QUANTIZATION: Quantization = Quantization::F16;
/// Largest accepted connectivity: each node keeps up to 2m links on the base level.
pub const MAX_M: usize = 128;
/// Largest accepted candidate list for building or searching.
pub const MAX_EF: usize = 4096;
/// Threads a build uses at most (it uses every core up to this).
pub const MAX_BUILD_THREADS: usize = 64;
/// Searches one index serves at once; more wait for a slot (usearch keeps one search context
/// per slot and refuses a search without one).
pub const SEARCH_SLOTS: usize = 64;
/// Rows a build adds between two progress reports.
const PROGRESS_EVERY: usize = 1024;

/// How vectors are stored in the index (scores are always computed from the table's f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantization {
    F32,
    F16,
    I8,
}

impl Quantization {
    pub fn parse(name: &str) -> Option<Quantization> {
        match name.to_ascii_lowercase().as_str() {
            "f32" => Some(Quantization::F32),
            "f16" => Some(Quantization::F16),
            "i8" => Some(Quantization::I8),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::F32 => "f32",
            Quantization::F16 => "f16",
            Quantization::I8 => "i8",
        }
    }

    fn scalar(self) -> ScalarKind {
        match self {
            Quantization::F32 => ScalarKind::F32,
            Quantization::F16 => ScalarKind::F16,
            Quantization::I8 => ScalarKind::I8,
        }
    }
}

/// What `CREATE VECTOR INDEX ... WITH (...)` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexParams {
    pub metric: Metric,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub quantization: Quantization,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            metric: Metric::Cosine,
            m: DEFAULT_M,
            ef_construction: DEFAULT_EF_CONSTRUCTION,
            ef_search: DEFAULT_EF_SEARCH,
            quantization: DEFAULT_QUANTIZATION,
        }
    }
}

/// The option names `IndexParams::set` accepts.
pub const INDEX_OPTIONS: &[&str] = &[
    "metric",
    "m",
    "ef_construction",
    "ef_search",
    "quantization",
];

impl IndexParams {
    /// Sets one option from its text (numbers as written); the error says what is accepted.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let number = |max: usize| -> Result<usize, String> {
            match value.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!(
                    "vector index option `{name}` must be an integer from 1 to {max}, not `{value}`"
                )),
            }
        };
        match name.to_ascii_lowercase().as_str() {
            "metric" => {
                self.metric = Metric::parse(value).ok_or_else(|| {
                    format!("unknown metric `{value}` (use 'cosine', 'l2' or 'dot')")
                })?
            }
            "m" => {
                self.m = number(MAX_M)?;
                if self.m < 2 {
                    return Err("vector index option `m` must be at least 2".into());
                }
            }
            "ef_construction" => self.ef_construction = number(MAX_EF)?,
            "ef_search" => self.ef_search = number(MAX_EF)?,
            "quantization" => {
                self.quantization = Quantization::parse(value).ok_or_else(|| {
                    format!("unknown quantization `{value}` (use 'f32', 'f16' or 'i8')")
                })?
            }
            _ => {
                return Err(format!(
                    "unknown vector index option `{name}` (accepted: {})",
                    INDEX_OPTIONS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The options as `name=value` pairs joined by commas, in [`INDEX_OPTIONS`] order: the
    /// form the catalog keeps and `SHOW INDEXES` prints.
    pub fn to_text(&self) -> String {
        format!(
            "metric={},m={},ef_construction={},ef_search={},quantization={}",
            self.metric.as_str(),
            self.m,
            self.ef_construction,
            self.ef_search,
            self.quantization.as_str()
        )
    }

    /// Reads [`IndexParams::to_text`]; a bare metric name (what earlier versions kept) gives
    /// that metric with default parameters.
    pub fn from_text(text: &str) -> Result<IndexParams, String> {
        let mut params = IndexParams::default();
        if !text.contains('=') {
            params.set("metric", text)?;
            return Ok(params);
        }
        for pair in text.split(',') {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("malformed vector index options `{text}`"))?;
            params.set(k, v)?;
        }
        Ok(params)
    }

    /// usearch's options for these parameters (the benchmarks build raw usearch with them).
    pub fn options(&self, dimensions: usize) -> IndexOptions {
        IndexOptions {
            dimensions,
            metric: match self.metric {
                Metric::Cosine => MetricKind::Cos,
                Metric::L2 => MetricKind::L2sq,
                Metric::Dot => MetricKind::IP,
            },
            quantization: self.quantization.scalar(),
            connectivity: self.m,
            expansion_add: self.ef_construction,
            expansion_search: self.ef_search,
            multi: false,
        }
    }
}

/// Counts free search slots; a search waits for one.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            while *free == 0 {
                free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
            }
            *free -= 1;
        }
        let out = f();
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
        out
    }
}

/// An HNSW index over keyed vectors of one dimension.
pub struct HnswIndex {
    index: Index,
    params: IndexParams,
    slots: Slots,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("params", &self.params)
            .field("dimensions", &self.index.dimensions())
            .field("len", &self.index.size())
            .finish()
    }
}

fn usearch_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("vector index {what}: {e}")
}

impl HnswIndex {
    /// Builds an index of `keys[i]` → `vectors[i * dimensions..][..dimensions]` with every core
    /// (up to [`MAX_BUILD_THREADS`]), calling `progress` with the rows added so far.
    pub fn build(
        params: IndexParams,
        dimensions: usize,
        keys: &[u64],
        vectors: &[f32],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<HnswIndex, String> {
        assert!(dimensions > 0, "a vector index needs a dimension");
        assert_eq!(
            keys.len() * dimensions,
            vectors.len(),
            "one vector of {dimensions} values per key"
        );
        let index =
            Index::new(&params.options(dimensions)).map_err(|e| usearch_err("create", e))?;
        let built = HnswIndex {
            index,
            params,
            slots: Slots::new(SEARCH_SLOTS),
        };
        built.add_all(dimensions, keys, vectors, progress)?;
        Ok(built)
    }

    /// Loads a saved index into memory (not mapped), to be extended.
    pub fn load(path: &Path, params: IndexParams) -> Result<HnswIndex, String> {
        let path = path.to_str().ok_or("vector index path is not UTF-8")?;
        let index = Index::restore(path).map_err(|e| usearch_err("load", e))?;
        // The file keeps the graph's shape, not these: restored, they are usearch's defaults.
        index.change_expansion_add(params.ef_construction);
        index.change_expansion_search(params.ef_search);
        Ok(HnswIndex {
            index,
            params,
            slots: Slots::new(SEARCH_SLOTS),
        })
    }

    /// Adds `keys[i]` → `vectors[i * d..]` to a loaded or built index, replacing the vector of a
    /// key it holds already, with every core; `progress` gets the rows added so far.
    pub fn extend(
        &self,
        keys: &[u64],
        vectors: &[f32],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(), String> {
        let dimensions = self.dimensions();
        assert_eq!(keys.len() * dimensions, vectors.len(), "one vector per key");
        for key in keys {
            if self.index.contains(*key) {
                self.index
                    .remove(*key)
                    .map_err(|e| usearch_err("remove", e))?;
            }
        }
        self.add_all(dimensions, keys, vectors, progress)
    }

    fn add_all(
        &self,
        dimensions: usize,
        keys: &[u64],
        vectors: &[f32],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(), String> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_BUILD_THREADS);
        self.index
            .reserve_capacity_and_threads(self.index.size() + keys.len(), threads.max(SEARCH_SLOTS))
            .map_err(|e| usearch_err("reserve", e))?;
        let added = AtomicUsize::new(0);
        let chunk = keys.len().div_ceil(threads).max(1);
        let failed: Mutex<Option<String>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for (t, part) in keys.chunks(chunk).enumerate() {
                let (index, added, failed) = (&self.index, &added, &failed);
                let base = t * chunk;
                scope.spawn(move || {
                    for (i, key) in part.iter().enumerate() {
                        let row = base + i;
                        let vector = &vectors[row * dimensions..(row + 1) * dimensions];
                        if let Err(e) = index.add(*key, vector) {
                            *failed.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(usearch_err("add", e));
                            return;
                        }
                        let n = added.fetch_add(1, Ordering::Relaxed) + 1;
                        if n % PROGRESS_EVERY == 0 {
                            progress(n);
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        progress(keys.len());
        Ok(())
    }

    /// Writes the index to `path` (usearch's format; its header holds the dimension, metric
    /// and quantization).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let path = path.to_str().ok_or("vector index path is not UTF-8")?;
        self.index.save(path).map_err(|e| usearch_err("save", e))
    }

    /// Opens a saved index by memory-mapping `path`: nothing is rebuilt or copied into memory.
    /// The file must stay in place while the index is open.
    pub fn view(path: &Path, params: IndexParams) -> Result<HnswIndex, String> {
        let path = path.to_str().ok_or("vector index path is not UTF-8")?;
        let index = Index::restore_view(path).map_err(|e| usearch_err("view", e))?;
        index.change_expansion_search(params.ef_search);
        Ok(HnswIndex {
            index,
            params,
            // A viewed index has usearch's default search contexts: one per hardware thread.
            slots: Slots::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
        })
    }

    pub fn params(&self) -> IndexParams {
        self.params
    }

    pub fn dimensions(&self) -> usize {
        self.index.dimensions()
    }

    pub fn len(&self) -> usize {
        self.index.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k` keys nearest `query` (nearest first) among those `filter` accepts, with
    /// usearch's distance. A search explores at least `ef_search` candidates.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<(u64, f32)>, String> {
        if query.len() != self.dimensions() {
            return Err(format!(
                "the query vector has {} dimensions; the index has {}",
                query.len(),
                self.dimensions()
            ));
        }
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let matches = self.slots.run(|| match filter {
            None => self.index.search(query, k),
            Some(f) => self.index.filtered_search(query, k, f),
        });
        let matches = matches.map_err(|e| usearch_err("search", e))?;
        Ok(matches.keys.into_iter().zip(matches.distances).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, d: usize) -> (Vec<u64>, Vec<f32>) {
        let keys: Vec<u64> = (0..n as u64).map(|k| k * 7 + 1).collect();
        // splitmix64: distinct, evenly spread values.
        let vectors = (0..(n * d) as u64)
            .map(|i| {
                let mut z = i.wrapping_add(1).wrapping_mul(0x9E3779B97F4A7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
                (z ^ (z >> 31)) as f32 / u64::MAX as f32 - 0.5
            })
            .collect();
        (keys, vectors)
    }

    #[test]
    fn options_round_trip_and_are_checked() {
        let mut p = IndexParams::default();
        p.set("M", "32").unwrap();
        p.set("quantization", "i8").unwrap();
        p.set("metric", "L2").unwrap();
        assert_eq!(IndexParams::from_text(&p.to_text()).unwrap(), p);
        assert_eq!(
            IndexParams::from_text("dot").unwrap().metric,
            Metric::Dot,
            "a bare metric is what earlier versions kept"
        );
        assert!(p.set("m", "0").unwrap_err().contains("from 1 to 128"));
        assert!(p.set("m", "1").unwrap_err().contains("at least 2"));
        assert!(p.set("ef_search", "x").is_err());
        assert!(p.set("quantization", "b1").unwrap_err().contains("'f16'"));
        assert!(
            p.set("colour", "red")
                .unwrap_err()
                .contains("accepted: metric")
        );
    }

    #[test]
    fn builds_saves_views_and_finds_every_vector() {
        let d = 8;
        let (keys, vectors) = grid(2000, d);
        let reported = AtomicUsize::new(0);
        let index = HnswIndex::build(IndexParams::default(), d, &keys, &vectors, &|n| {
            reported.fetch_max(n, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(index.len(), 2000);
        assert_eq!(reported.load(Ordering::Relaxed), 2000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.usearch");
        index.save(&path).unwrap();
        let viewed = HnswIndex::view(&path, index.params()).unwrap();
        assert_eq!(viewed.len(), 2000);
        let mut found = 0;
        for (row, key) in keys.iter().enumerate().step_by(10) {
            let q = &vectors[row * d..(row + 1) * d];
            let hits = viewed.search(q, 1, None).unwrap();
            found += usize::from(hits.first().map(|h| h.0) == Some(*key));
        }
        assert!(found >= 195, "{found} of 200 vectors found themselves");
        // A filter keeps the keys it accepts and no other.
        let even = |k: u64| k.is_multiple_of(2);
        let hits = viewed.search(&vectors[..d], 10, Some(&even)).unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|(k, _)| k.is_multiple_of(2)));
        assert!(
            viewed
                .search(&[0.0; 3], 1, None)
                .unwrap_err()
                .contains("3 dimensions")
        );
    }

    #[test]
    fn an_extended_index_holds_new_keys_and_new_vectors() {
        let d = 4;
        let (keys, vectors) = grid(600, d);
        let params = IndexParams {
            ef_construction: 40,
            ef_search: 24,
            ..IndexParams::default()
        };
        let index =
            HnswIndex::build(params, d, &keys[..500], &vectors[..500 * d], &|_| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.usearch");
        index.save(&path).unwrap();
        let loaded = HnswIndex::load(&path, params).unwrap();
        // Extended with the parameters it was built with, not usearch's defaults.
        assert_eq!(
            (
                loaded.index.expansion_add(),
                loaded.index.expansion_search()
            ),
            (40, 24)
        );
        // 100 new keys, and the first key moved onto the last new vector.
        let mut new_keys = keys[500..].to_vec();
        let mut new_vectors = vectors[500 * d..].to_vec();
        new_keys.push(keys[0]);
        new_vectors.extend_from_slice(&vectors[599 * d..]);
        loaded.extend(&new_keys, &new_vectors, &|_| {}).unwrap();
        assert_eq!(loaded.len(), 600);
        let hits = loaded.search(&vectors[550 * d..551 * d], 1, None).unwrap();
        assert_eq!(hits[0].0, keys[550]);
        let hits = loaded.search(&vectors[..d], 600, None).unwrap();
        let first = hits.iter().find(|(k, _)| *k == keys[0]).unwrap();
        assert!(
            first.1 > 1e-3,
            "the first key no longer holds its old vector: {first:?}"
        );
    }

    #[test]
    fn an_empty_index_saves_views_and_finds_nothing() {
        let index = HnswIndex::build(IndexParams::default(), 3, &[], &[], &|_| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.usearch");
        index.save(&path).unwrap();
        let viewed = HnswIndex::view(&path, index.params()).unwrap();
        assert!(viewed.is_empty());
        assert_eq!(viewed.search(&[1.0, 0.0, 0.0], 5, None).unwrap(), vec![]);
    }

    #[test]
    fn searches_run_from_many_threads_at_once() {
        let d = 4;
        let (keys, vectors) = grid(500, d);
        let index = HnswIndex::build(IndexParams::default(), d, &keys, &vectors, &|_| {}).unwrap();
        std::thread::scope(|s| {
            for t in 0..16 {
                let (index, vectors) = (&index, &vectors);
                s.spawn(move || {
                    for i in 0..50 {
                        let row = (t * 50 + i) % 500;
                        let hits = index
                            .search(&vectors[row * d..(row + 1) * d], 5, None)
                            .unwrap();
                        assert_eq!(hits.len(), 5);
                    }
                });
            }
        });
    }
}
