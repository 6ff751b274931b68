//! Shared set-up for the benchmarks: the Debian graph (`../shared/data/debian`) loaded into
//! ContextDB, and the same DEPENDS edges as a bare adjacency for the baseline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use contextdb_engine::{Database, DbConfig};
use contextdb_graph::Adjacency;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/debian")
}

fn read(file: &str) -> Vec<RecordBatch> {
    read_parquet(&data_dir().join(file))
}

/// Every batch of a Parquet file.
pub fn read_parquet(path: &std::path::Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).expect("Debian data set beside the repository");
    ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch"))
        .collect()
}

fn ints(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(name).expect("column");
            c.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

/// The DDL and COPY statements that load the whole graph (`tests/debian/load.cql`).
pub fn load_script() -> String {
    include_str!("../../tests/debian/load.cql")
        .replace("__DATA__", &data_dir().display().to_string())
}

/// The runtime every benchmark runs on: two worker threads, as the machine has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Opens an in-memory database with the whole graph; returns it and the load time.
pub async fn load(config: DbConfig) -> (Arc<Database>, Duration) {
    let db = Database::open(config.with_file_root(data_dir()))
        .await
        .expect("open");
    let start = Instant::now();
    db.execute(&load_script()).await.expect("load");
    (db, start.elapsed())
}

/// The baseline: DEPENDS as a bare adjacency over package row positions, and libc6's ordinal.
pub struct Baseline {
    pub adjacency: Adjacency,
    pub libc6: u32,
    /// Each package's id and name, by row position.
    pub ids: Vec<i64>,
    pub names: Vec<String>,
}

impl Baseline {
    pub fn build() -> Baseline {
        let packages = read("package.parquet");
        let ids = ints(&packages, "id");
        let ordinal: HashMap<i64, u32> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        let mut libc6 = None;
        let mut row = 0u32;
        let mut all_names = Vec::with_capacity(ids.len());
        for b in &packages {
            let names =
                arrow::compute::cast(b.column_by_name("name").expect("name"), &DataType::Utf8)
                    .expect("cast");
            let names = names.as_string::<i32>();
            for i in 0..names.len() {
                if names.value(i) == "libc6" {
                    libc6 = Some(row);
                }
                all_names.push(names.value(i).to_string());
                row += 1;
            }
        }
        let depends = read("depends.parquet");
        let pairs: Vec<(u32, u32)> = ints(&depends, "src")
            .iter()
            .zip(ints(&depends, "dst"))
            .filter_map(|(s, d)| Some((*ordinal.get(s)?, *ordinal.get(&d)?)))
            .collect();
        Baseline {
            adjacency: Adjacency::build(&pairs).expect("fits"),
            libc6: libc6.expect("libc6 is in the data set"),
            ids,
            names: all_names,
        }
    }

    /// Number of (a)-[:DEPENDS]->(libc6) matches.
    pub fn one_hop(&self) -> i64 {
        self.adjacency.in_degree(self.libc6) as i64
    }

    /// Number of (a)-[:DEPENDS]->()-[:DEPENDS]->(libc6) matches (paths, as MATCH counts).
    pub fn two_hop(&self) -> i64 {
        let mut total = 0i64;
        self.adjacency.for_each_in(self.libc6, |b, _| {
            total += self.adjacency.in_degree(b) as i64;
        });
        total
    }
}

pub const ONE_HOP: &str =
    "MATCH (a:Package)-[:DEPENDS]->(b:Package {name:'libc6'}) RETURN count(*)";
pub const TWO_HOP: &str = "MATCH (a:Package)-[:DEPENDS]->(:Package)-[:DEPENDS]->(b:Package {name:'libc6'}) RETURN count(*)";

/// Runs a one-row one-column count query.
pub async fn count(db: &Database, text: &str) -> i64 {
    let r = db.execute(text).await.expect("query");
    let c = arrow::compute::cast(r[0].batches[0].column(0), &DataType::Int64).expect("cast");
    c.as_primitive::<Int64Type>().value(0)
}
