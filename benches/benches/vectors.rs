//! Vector search on the Debian graph (63,666 packages, 384-d embeddings), each case against a
//! baseline measured in the same run, printed as a ratio of medians after the answers are
//! checked.
//!
//! Exact (no index): ContextQL's `VECTOR SIMILAR TO ... LIMIT 10` over every package and over
//! the dependents of libssl3, and SQL's `vector_search`, against a plain loop over the same
//! vectors (the same kernel, top 10 by a partial sort).
//!
//! ANN: `CREATE VECTOR INDEX` (default parameters) against raw usearch built with the same
//! parameters and threads; then ContextQL's indexed top-10 of all packages, of sections keeping
//! about 1%, 10% and 50% of them, and of the dependents of libssl3 (small) and libc6 (large),
//! against raw usearch's `search` / `filtered_search` given the qualifying keys, with queries
//! per second (one query at a time) and each side's recall@10 against exact search. Last, a
//! database on local disk loaded with the index defined before its rows, reopened: the index's
//! open and first search against raw usearch's `view` of the same index.

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use common::median;
use contextdb_benches::{data_dir, load, load_script, read_parquet};
use contextdb_engine::{Database, DbConfig};
use contextdb_vector::cosine_similarity;
use criterion::{Criterion, criterion_group, criterion_main};

/// Package ids and their embeddings, in file order.
struct Vectors {
    ids: Vec<i64>,
    values: Vec<Vec<f32>>,
    sections: Vec<String>,
    by_name: HashMap<String, usize>,
}

fn vectors() -> Vectors {
    let (mut ids, mut values, mut by_name) = (Vec::new(), Vec::new(), HashMap::new());
    let mut sections = Vec::new();
    for b in read_parquet(&data_dir().join("package.parquet")) {
        let id = b
            .column_by_name("id")
            .expect("id")
            .as_primitive::<Int64Type>()
            .clone();
        let name = arrow::compute::cast(
            b.column_by_name("name").expect("name"),
            &arrow::datatypes::DataType::Utf8,
        )
        .expect("names");
        let section = arrow::compute::cast(
            b.column_by_name("section").expect("section"),
            &arrow::datatypes::DataType::Utf8,
        )
        .expect("sections");
        let emb = b
            .column_by_name("embedding")
            .expect("embedding")
            .as_fixed_size_list()
            .clone();
        for i in 0..b.num_rows() {
            by_name.insert(name.as_string::<i32>().value(i).to_string(), ids.len());
            ids.push(id.value(i));
            sections.push(section.as_string::<i32>().value(i).to_string());
            values.push(emb.value(i).as_primitive::<Float32Type>().values().to_vec());
        }
    }
    Vectors {
        ids,
        values,
        sections,
        by_name,
    }
}

/// The ten best scores among `candidates` (positions into `v`): the baseline.
fn top10(v: &Vectors, candidates: &[usize], q: &[f32]) -> Vec<f64> {
    let mut scores: Vec<f64> = candidates
        .iter()
        // As the engine, a vector without a direction is not ranked.
        .filter_map(|&i| cosine_similarity(&v.values[i], q))
        .collect();
    let k = 10.min(scores.len());
    scores.select_nth_unstable_by(k.saturating_sub(1), |a, b| b.total_cmp(a));
    scores.truncate(k);
    scores.sort_by(|a, b| b.total_cmp(a));
    scores
}

/// The scores (second column) a statement returns, best first.
async fn scores(
    db: &Database,
    text: &str,
    params: &HashMap<String, serde_json::Value>,
) -> Vec<f64> {
    let r = db.execute_with_params(text, params).await.expect("query");
    let mut out: Vec<f64> = r[0]
        .batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Float64Type>().values().to_vec())
        .collect();
    out.sort_by(|a, b| b.total_cmp(a));
    out
}

fn vector_search(c: &mut Criterion) {
    let runtime = contextdb_benches::runtime();
    let (db, load_time) = runtime.block_on(load(DbConfig::memory()));
    println!(
        "load: whole Debian graph in {:.1} s",
        load_time.as_secs_f64()
    );
    let v = vectors();
    let q = v.values[v.by_name["vim"]].clone();
    let params = HashMap::from([(
        "q".to_string(),
        serde_json::Value::from(q.iter().map(|x| *x as f64).collect::<Vec<_>>()),
    )]);
    let all: Vec<usize> = (0..v.ids.len()).collect();
    // Dependents of libssl3, one row per DEPENDS edge, as the pattern matches them.
    let position: HashMap<i64, usize> = v.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let libssl3 = v.ids[v.by_name["libssl3"]];
    let libc6 = v.ids[v.by_name["libc6"]];
    let mut dependents = Vec::new();
    let mut libc6_dependents = std::collections::HashSet::new();
    for b in read_parquet(&data_dir().join("depends.parquet")) {
        let src = b
            .column_by_name("src")
            .expect("src")
            .as_primitive::<Int64Type>();
        let dst = b
            .column_by_name("dst")
            .expect("dst")
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            if dst.value(i) == libssl3 {
                dependents.push(position[&src.value(i)]);
            }
            if dst.value(i) == libc6 {
                libc6_dependents.insert(position[&src.value(i)]);
            }
        }
    }
    let cases = [
        (
            "top-10 of all packages",
            "MATCH (p:Package) VECTOR SIMILAR TO $q LIMIT 10 RETURN p.id, similarity_score",
            all.clone(),
        ),
        (
            "top-10 dependents of libssl3",
            "MATCH (p:Package)-[:DEPENDS]->(:Package {name: 'libssl3'}) VECTOR SIMILAR TO $q ON p.embedding LIMIT 10 RETURN p.id, similarity_score",
            dependents.clone(),
        ),
    ];
    let dependents_of_libssl3 = dependents;
    let mut lines = Vec::new();
    for (name, text, candidates) in cases {
        let expected = top10(&v, &candidates, &q);
        let got = runtime.block_on(scores(&db, text, &params));
        assert_eq!(got.len(), expected.len(), "{name}");
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-9, "{name}: {got:?} against {expected:?}");
        }
        let engine = median(c, &format!("contextql exact {name}"), || {
            std::hint::black_box(runtime.block_on(scores(&db, text, &params)));
        });
        let base = median(c, &format!("plain loop {name}"), || {
            std::hint::black_box(top10(&v, &candidates, &q));
        });
        lines.push((name, engine, base));
    }
    let literal = q
        .iter()
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("SELECT key, score FROM vector_search('Package', 'embedding', [{literal}], 10)");
    assert_eq!(
        runtime.block_on(scores(&db, &sql, &HashMap::new())).len(),
        10
    );
    let sql_time = median(c, "sql vector_search top-10", || {
        std::hint::black_box(runtime.block_on(scores(&db, &sql, &HashMap::new())));
    });
    for (name, engine, base) in lines {
        println!(
            "{name}: contextql exact median {engine:?}, plain loop median {base:?}, ratio {:.2}x",
            engine.as_secs_f64() / base.as_secs_f64().max(1e-9)
        );
    }
    println!("sql vector_search top-10 of all packages: median {sql_time:?}");
    let dependents = [
        ("libssl3", dependents_of_libssl3.into_iter().collect()),
        ("libc6", libc6_dependents),
    ];
    ann(c, &runtime, &db, &v, &q, &params, &dependents);
}

/// Recall@10 of `found` scores against the exact top 10 (ties count as found).
fn recall(found: &[f64], exact: &[f64]) -> f64 {
    let tenth = exact[exact.len() - 1];
    found.iter().filter(|s| **s >= tenth - 1e-9).count() as f64 / exact.len() as f64
}

fn ann(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    db: &Database,
    v: &Vectors,
    q: &[f32],
    params: &HashMap<String, serde_json::Value>,
    dependents: &[(&str, std::collections::HashSet<usize>)],
) {
    use usearch::Index;
    let started = std::time::Instant::now();
    runtime
        .block_on(db.execute("CREATE VECTOR INDEX package_embedding ON Package(embedding)"))
        .expect("create index");
    let engine_build = started.elapsed();
    let started = std::time::Instant::now();
    let raw = Index::new(&raw_options(q.len())).expect("usearch index");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    raw.reserve_capacity_and_threads(v.values.len(), threads)
        .expect("reserve");
    let chunk = v.values.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (t, part) in v.values.chunks(chunk).enumerate() {
            let raw = &raw;
            s.spawn(move || {
                for (i, x) in part.iter().enumerate() {
                    raw.add((t * chunk + i) as u64, x).expect("add");
                }
            });
        }
    });
    let raw_build = started.elapsed();
    println!(
        "index build over {} packages: contextdb {:.2} s, raw usearch {:.2} s, ratio {:.2}x",
        v.values.len(),
        engine_build.as_secs_f64(),
        raw_build.as_secs_f64(),
        engine_build.as_secs_f64() / raw_build.as_secs_f64().max(1e-9)
    );
    println!(
        "usearch hardware acceleration: {} (available: {})",
        raw.hardware_acceleration(),
        usearch::hardware_acceleration_available()
    );
    // (name, statement, which package positions qualify)
    type Keep<'a> = Box<dyn Fn(usize) -> bool + Sync + 'a>;
    let mut cases: Vec<(String, String, Option<Keep<'_>>)> = vec![(
        "ann top-10 of all packages".into(),
        "MATCH (p:Package) VECTOR SIMILAR TO $q LIMIT 10 RETURN p.id, similarity_score".into(),
        None,
    )];
    for share in [0.01, 0.10, 0.50] {
        let chosen = sections_near(v, share);
        let kept = v.sections.iter().filter(|s| chosen.contains(*s)).count();
        let list = chosen
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        cases.push((
            format!(
                "ann top-10 of {:.1}% of packages ({} sections)",
                100.0 * kept as f64 / v.ids.len() as f64,
                chosen.len()
            ),
            format!(
                "MATCH (p:Package) WHERE p.section IN [{list}] VECTOR SIMILAR TO $q LIMIT 10 \
                 RETURN p.id, similarity_score"
            ),
            Some(Box::new(move |i: usize| chosen.contains(&v.sections[i])) as Keep<'_>),
        ));
    }
    for (x, dependents) in dependents {
        cases.push((
            format!("ann top-10 dependents of {x} ({})", dependents.len()),
            format!(
                "MATCH (p:Package)-[:DEPENDS]->(:Package {{name: '{x}'}}) VECTOR SIMILAR TO $q \
                 ON p.embedding LIMIT 10 RETURN p.id, similarity_score"
            ),
            Some(Box::new(|i: usize| dependents.contains(&i)) as Keep<'_>),
        ));
    }
    for (name, text, keep) in cases {
        let candidates: Vec<usize> = (0..v.ids.len())
            .filter(|i| keep.as_ref().is_none_or(|k| k(*i)))
            .collect();
        let exact = top10(v, &candidates, q);
        let raw_search = || {
            let found = match &keep {
                None => raw.search(q, 10),
                Some(k) => raw.filtered_search(q, 10, |key: u64| k(key as usize)),
            }
            .expect("search");
            found.keys
        };
        let raw_scores: Vec<f64> = raw_search()
            .iter()
            .filter_map(|k| cosine_similarity(&v.values[*k as usize], q))
            .collect();
        let got = runtime.block_on(scores(db, &text, params));
        assert_eq!(got.len(), 10, "{name}");
        // What the search did (the plan's operator line with its metrics).
        let analyzed = runtime
            .block_on(db.execute_with_params(&format!("EXPLAIN ANALYZE {text}"), params))
            .expect("explain analyze");
        for b in &analyzed[0].batches {
            let plans = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8)
                .expect("plan text");
            for line in plans
                .as_string::<i32>()
                .iter()
                .flatten()
                .flat_map(str::lines)
            {
                if line.contains("VectorTopKExec") || line.contains("AnnScanExec") {
                    let metrics = line.find("metrics=").map_or(line, |at| &line[at..]);
                    println!("{name}: {}", metrics.trim());
                }
            }
        }
        let engine = median(c, &format!("contextql {name}"), || {
            std::hint::black_box(runtime.block_on(scores(db, &text, params)));
        });
        let base = median(c, &format!("raw usearch {name}"), || {
            std::hint::black_box(raw_search());
        });
        println!(
            "{name}: contextql median {engine:?} ({:.0} queries/s, recall@10 {:.2}), \
             raw usearch median {base:?} (recall@10 {:.2}), ratio {:.2}x",
            1.0 / engine.as_secs_f64().max(1e-9),
            recall(&got, &exact),
            recall(&raw_scores, &exact),
            engine.as_secs_f64() / base.as_secs_f64().max(1e-9)
        );
    }
    restart(runtime, &raw, q, params);
}

/// Sections whose packages make up about `share` of all: the largest that fit, greedily.
fn sections_near(v: &Vectors, share: f64) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in &v.sections {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    let mut by_size: Vec<(&str, usize)> = counts.into_iter().collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let target = share * v.ids.len() as f64;
    let (mut chosen, mut sum) = (Vec::new(), 0usize);
    for (name, n) in by_size {
        if (sum + n) as f64 <= target * 1.1 {
            chosen.push(name.to_string());
            sum += n;
        }
        if sum as f64 >= target * 0.9 {
            break;
        }
    }
    chosen
}

/// Loading the whole graph into a database on local disk with the index defined before the
/// rows arrive, then reopening it: the open of the index (a memory map) against raw usearch's
/// `view` of the same kind of file, and the first search after the restart.
fn restart(
    runtime: &tokio::runtime::Runtime,
    raw: &usearch::Index,
    q: &[f32],
    params: &HashMap<String, serde_json::Value>,
) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = || DbConfig::local(dir.path().join("db")).with_file_root(data_dir());
    let script = load_script().replacen(
        "CREATE NODE TABLE Maintainer",
        "CREATE VECTOR INDEX package_embedding ON Package(embedding);\nCREATE NODE TABLE Maintainer",
        1,
    );
    let text = "MATCH (p:Package) VECTOR SIMILAR TO $q LIMIT 10 RETURN p.id, similarity_score";
    let load_time = runtime.block_on(async {
        let db = Database::open(config()).await.expect("open");
        let started = std::time::Instant::now();
        db.execute(&script).await.expect("load with index");
        let elapsed = started.elapsed();
        let stats = db.vector_index_stats();
        println!(
            "load with index defined first: {:.1} s on local disk ({} builds, {} extensions)",
            elapsed.as_secs_f64(),
            stats.builds,
            stats.extensions
        );
        assert_eq!(scores(&db, text, params).await.len(), 10);
        db.shutdown().await;
        elapsed
    });
    let (open, first) = runtime.block_on(async {
        let started = std::time::Instant::now();
        let db = Database::open(config()).await.expect("reopen");
        let open = started.elapsed();
        // Read the table first, so the search's time is the index's open and search.
        db.execute("MATCH (p:Package) RETURN sum(p.installed_size_kb)")
            .await
            .expect("read the table");
        let started = std::time::Instant::now();
        assert_eq!(scores(&db, text, params).await.len(), 10);
        let first = started.elapsed();
        let stats = db.vector_index_stats();
        assert_eq!((stats.builds, stats.opens), (0, 1), "reopened, not rebuilt");
        db.shutdown().await;
        (open, first)
    });
    let file = dir.path().join("raw.usearch");
    raw.save(file.to_str().expect("utf-8 path")).expect("save");
    let started = std::time::Instant::now();
    let view = usearch::Index::new(&raw_options(q.len())).expect("index");
    view.view(file.to_str().expect("utf-8 path")).expect("view");
    assert_eq!(view.search(q, 10).expect("search").keys.len(), 10);
    let raw_open = started.elapsed();
    println!(
        "restart: open {:.1} ms; after the table is read, the first indexed top-10 (the index \
         opened by the memory map) {:.1} ms; raw usearch view of the same index and one search {:.1} ms \
         (load {:.1} s)",
        open.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        raw_open.as_secs_f64() * 1e3,
        load_time.as_secs_f64()
    );
}

/// Raw usearch with the engine's default parameters.
fn raw_options(dimensions: usize) -> usearch::IndexOptions {
    contextdb_vector::IndexParams::default().options(dimensions)
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = vector_search
}
criterion_main!(benches);
