//! What small writes cost as tables grow, against the same work on a small table in the same
//! run:
//!
//! - single-row `CREATE`s into Package, each followed by the 1-hop reverse-dependency count
//!   of libc6, on the whole Debian graph (63k packages) and on a 6,000-package subset: the
//!   ratio of the medians of a pair (target: at most 2x, cost does not grow with the table);
//! - a cold full scan (open the database, scan, close) of a table written by many single-row
//!   commits against the same rows written in one commit (target: at most 1.5x: compaction
//!   keeps the files few).
//!
//! `BENCH_WRITE_PAIRS` (default 1000) and `BENCH_COMMITS` (default 10000) scale the runs;
//! `BENCH_RETENTION=none` or `=a` runs the many-commit part with one retention only (no
//! retention, or the default week). `BENCH_WRITE_PAIRS=0` skips the first part.
//! `BENCH_MANY_DIR=DIR` keeps the many-commit database in `DIR` (with one retention) and, when
//! `DIR` already holds it, only scans it: for profiling the scan without redoing the commits.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use contextdb_benches::{ONE_HOP, count, data_dir, load, load_script, read_parquet};
use contextdb_engine::{Database, DbConfig};
use parquet::arrow::ArrowWriter;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn write(path: &Path, batches: &[RecordBatch]) {
    let f = std::fs::File::create(path).expect("create");
    let mut w = ArrowWriter::try_new(f, batches[0].schema(), None).expect("writer");
    for b in batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
}

/// The Debian data set cut to `keep` packages (libc6 among them) and the edges between them,
/// written to `dir` with the same file names.
fn subset(dir: &Path, keep: usize) {
    let packages = read_parquet(&data_dir().join("package.parquet"));
    let mut kept = std::collections::HashSet::new();
    let mut out = Vec::new();
    for b in &packages {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let names = arrow::compute::cast(b.column_by_name("name").unwrap(), &DataType::Utf8)
            .expect("names");
        let names = names.as_string::<i32>();
        let mask: BooleanArray = (0..b.num_rows())
            .map(|i| {
                let take = kept.len() < keep - 1 || names.value(i) == "libc6";
                if take {
                    kept.insert(ids.value(i));
                }
                Some(take)
            })
            .collect();
        out.push(arrow::compute::filter_record_batch(b, &mask).expect("filter"));
    }
    write(&dir.join("package.parquet"), &out);
    for name in [
        "depends",
        "recommends",
        "suggests",
        "maintains",
        "tagged",
        "in_section",
        "maintainer",
        "tag",
        "section",
    ] {
        let file = format!("{name}.parquet");
        let batches = read_parquet(&data_dir().join(&file));
        let filtered: Vec<RecordBatch> = batches
            .iter()
            .map(|b| {
                let inside = |column: &str| -> Vec<bool> {
                    match b.column_by_name(column) {
                        Some(c) => {
                            let c = c.as_primitive::<Int64Type>();
                            (0..b.num_rows())
                                .map(|i| kept.contains(&c.value(i)))
                                .collect()
                        }
                        None => vec![true; b.num_rows()],
                    }
                };
                let src_is_package = !matches!(name, "maintains");
                let dst_is_package =
                    matches!(name, "depends" | "recommends" | "suggests" | "maintains");
                let src = if src_is_package {
                    inside("src")
                } else {
                    vec![true; b.num_rows()]
                };
                let dst = if dst_is_package {
                    inside("dst")
                } else {
                    vec![true; b.num_rows()]
                };
                let mask: BooleanArray =
                    src.iter().zip(&dst).map(|(s, d)| Some(*s && *d)).collect();
                arrow::compute::filter_record_batch(b, &mask).expect("filter")
            })
            .collect();
        write(&dir.join(&file), &filtered);
    }
}

/// Median of `pairs` single-row CREATE + 1-hop count pairs.
async fn create_count_pairs(db: &Database, pairs: usize) -> Duration {
    let mut samples = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let start = Instant::now();
        db.execute(&format!(
            "CREATE (:Package {{id: {}, name: 'bench-{i}'}})",
            10_000_000 + i
        ))
        .await
        .expect("create");
        std::hint::black_box(count(db, ONE_HOP).await);
        samples.push(start.elapsed());
    }
    median(samples)
}

/// Median time of the first full scan of `Item` after opening the database in `dir` (nothing
/// of it in memory yet: table metadata and data files are read).
async fn cold_scan(
    dir: &Path,
    retention: Option<Duration>,
    runs: usize,
    expected: i64,
) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..runs {
        let mut config = DbConfig::local(dir);
        if let Some(retention) = retention {
            config = config.with_snapshot_retention(retention);
        }
        let db = Database::open(config).await.expect("open");
        let start = Instant::now();
        assert_eq!(count(&db, "MATCH (x:Item) RETURN sum(x.v)").await, expected);
        samples.push(start.elapsed());
        db.shutdown().await;
    }
    median(samples)
}

fn main() {
    let runtime = contextdb_benches::runtime();
    let pairs = env_count("BENCH_WRITE_PAIRS", 1000);
    let keep_dir = std::env::var_os("BENCH_MANY_DIR").map(std::path::PathBuf::from);
    let commits = env_count("BENCH_COMMITS", 10_000);

    runtime.block_on(async {
        if pairs > 0 {
            write_pairs(pairs).await;
        }
        if commits > 0 {
            many_commits(commits, keep_dir.as_deref()).await;
        }
    });
}

async fn write_pairs(pairs: usize) {
    // Small writes on a large and a small Package table.
    let (big, _) = load(DbConfig::memory()).await;
    let small_dir = tempfile::tempdir().expect("temp dir");
    subset(small_dir.path(), 6000);
    let small = Database::open(DbConfig::memory().with_file_root(small_dir.path()))
        .await
        .expect("open");
    let script = load_script().replace(
        &data_dir().display().to_string(),
        &small_dir.path().display().to_string(),
    );
    small.execute(&script).await.expect("load subset");
    assert_eq!(
        count(&small, "MATCH (p:Package) RETURN count(*)").await,
        6000
    );
    let small_pair = create_count_pairs(&small, pairs).await;
    let big_pair = create_count_pairs(&big, pairs).await;
    println!(
        "create + 1-hop, {pairs} pairs: 63k packages median {big_pair:?}, 6,000 packages \
             median {small_pair:?}, ratio {:.2}x (target <= 2x)",
        big_pair.as_secs_f64() / small_pair.as_secs_f64()
    );
}

async fn many_commits(commits: usize, keep_dir: Option<&Path>) {
    // Many single-row commits against one, with the default snapshot retention (every
    // snapshot stays in the table's metadata for time travel) and with none (snapshots
    // expire in batches as they are replaced).
    let one = tempfile::tempdir().expect("temp dir");
    let schema = "CREATE NODE TABLE Item (id BIGINT PRIMARY KEY, v BIGINT)";
    let db = Database::open(DbConfig::local(one.path()))
        .await
        .expect("open");
    db.execute(&format!(
        "{schema}; UNWIND range(1, {commits}) AS i CREATE (:Item {{id: i, v: i}})"
    ))
    .await
    .expect("one commit");
    db.shutdown().await;
    let expected = (commits as i64) * (commits as i64 + 1) / 2;
    let scan_one = cold_scan(one.path(), None, 10, expected).await;
    let which = std::env::var("BENCH_RETENTION").unwrap_or_default();
    assert!(
        keep_dir.is_none() || !which.is_empty(),
        "BENCH_MANY_DIR keeps one database: set BENCH_RETENTION too"
    );
    for (retention_name, retention) in [
        (
            "a week (default)",
            contextdb_engine::DEFAULT_SNAPSHOT_RETENTION,
        ),
        ("none", Duration::ZERO),
    ]
    .into_iter()
    .filter(|(name, _)| which.is_empty() || name.starts_with(which.as_str()))
    {
        let temp = tempfile::tempdir().expect("temp dir");
        let many = keep_dir.unwrap_or(temp.path());
        let existing = many.join("raft").exists();
        let config = || DbConfig::local(many).with_snapshot_retention(retention);
        let db = Arc::new(Database::open(config()).await.expect("open"));
        let start = Instant::now();
        if !existing {
            db.execute(schema).await.expect("schema");
            for i in 1..=commits {
                db.execute(&format!("CREATE (:Item {{id: {i}, v: {i}}})"))
                    .await
                    .expect("commit");
            }
        }
        let commit_time = start.elapsed();
        let current = db
            .execute(
                "SELECT data_files FROM system.snapshots WHERE table_name = 'Item' AND is_current",
            )
            .await
            .expect("files");
        let files =
            arrow::compute::cast(current[0].batches[0].column(0), &DataType::Int64).expect("cast");
        let files = files.as_primitive::<Int64Type>().value(0);
        let snapshots = db
            .execute("SELECT count(*) FROM system.snapshots WHERE table_name = 'Item'")
            .await
            .expect("snapshots");
        let snapshots = arrow::compute::cast(snapshots[0].batches[0].column(0), &DataType::Int64)
            .expect("cast");
        let snapshots = snapshots.as_primitive::<Int64Type>().value(0);
        db.shutdown().await;
        let scan_many = cold_scan(many, Some(retention), 10, expected).await;
        println!(
            "{commits} single-row commits, retention {retention_name}, in {:.1} s ({:?} \
                 each), {files} data files and {snapshots} snapshots after them; cold scan \
                 median {scan_many:?} against {scan_one:?} for one commit, ratio {:.2}x \
                 (target <= 1.5x)",
            commit_time.as_secs_f64(),
            commit_time / commits as u32,
            scan_many.as_secs_f64() / scan_one.as_secs_f64()
        );
    }
}
