//! Exact vector search on the Debian graph (63,666 packages, 384-d embeddings): ContextQL's
//! `VECTOR SIMILAR TO ... LIMIT 10` over every package and over the dependents of libssl3,
//! and SQL's `vector_search`, against a plain loop over the same vectors (the same cosine
//! kernel, top 10 by a partial sort) in the same run. Answers are checked equal before
//! timing; the ratio of medians is printed.
//!
//! Then ANN: `CREATE VECTOR INDEX` against a raw usearch index built with the same parameters
//! over the same vectors, and ContextQL's indexed top-10 (all packages, and a filter keeping
//! 10% of them, and the dependents of libc6) against raw usearch's `search` /
//! `filtered_search`, with each side's recall@10 against exact search printed beside the times.

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use common::median;
use contextdb_benches::{data_dir, load, read_parquet};
use contextdb_engine::{Database, DbConfig};
use contextdb_vector::cosine_similarity;
use criterion::{Criterion, criterion_group, criterion_main};

/// Package ids and their embeddings, in file order.
struct Vectors {
    ids: Vec<i64>,
    values: Vec<Vec<f32>>,
    by_name: HashMap<String, usize>,
}

fn vectors() -> Vectors {
    let (mut ids, mut values, mut by_name) = (Vec::new(), Vec::new(), HashMap::new());
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
        let emb = b
            .column_by_name("embedding")
            .expect("embedding")
            .as_fixed_size_list()
            .clone();
        for i in 0..b.num_rows() {
            by_name.insert(name.as_string::<i32>().value(i).to_string(), ids.len());
            ids.push(id.value(i));
            values.push(emb.value(i).as_primitive::<Float32Type>().values().to_vec());
        }
    }
    Vectors {
        ids,
        values,
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
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
            dependents,
        ),
    ];
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
    ann(c, &runtime, &db, &v, &q, &params, &libc6_dependents);
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
    libc6_dependents: &std::collections::HashSet<usize>,
) {
    use usearch::{Index, IndexOptions, MetricKind, ScalarKind};
    let started = std::time::Instant::now();
    runtime
        .block_on(db.execute("CREATE VECTOR INDEX package_embedding ON Package(embedding)"))
        .expect("create index");
    let engine_build = started.elapsed();
    let options = IndexOptions {
        dimensions: q.len(),
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: contextdb_vector::index::DEFAULT_M,
        expansion_add: contextdb_vector::index::DEFAULT_EF_CONSTRUCTION,
        expansion_search: contextdb_vector::index::DEFAULT_EF_SEARCH,
        multi: false,
    };
    let started = std::time::Instant::now();
    let raw = Index::new(&options).expect("usearch index");
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
    // (name, statement, which package positions qualify)
    type Keep<'a> = Box<dyn Fn(usize) -> bool + Sync + 'a>;
    let cases: Vec<(&str, String, Option<Keep<'_>>)> = vec![
        (
            "ann top-10 of all packages",
            "MATCH (p:Package) VECTOR SIMILAR TO $q LIMIT 10 RETURN p.id, similarity_score".into(),
            None,
        ),
        (
            "ann top-10 of 10% of packages",
            "MATCH (p:Package) WHERE p.id % 10 = 0 VECTOR SIMILAR TO $q LIMIT 10 \
             RETURN p.id, similarity_score"
                .into(),
            Some(Box::new(|i: usize| (v.ids[i] as u64).is_multiple_of(10)) as Keep<'_>),
        ),
        (
            "ann top-10 dependents of libc6",
            "MATCH (p:Package)-[:DEPENDS]->(:Package {name: 'libc6'}) VECTOR SIMILAR TO $q \
             ON p.embedding LIMIT 10 RETURN p.id, similarity_score"
                .into(),
            Some(Box::new(|i: usize| libc6_dependents.contains(&i)) as Keep<'_>),
        ),
    ];
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
        let engine = median(c, &format!("contextql {name}"), || {
            std::hint::black_box(runtime.block_on(scores(db, &text, params)));
        });
        let base = median(c, &format!("raw usearch {name}"), || {
            std::hint::black_box(raw_search());
        });
        println!(
            "{name}: contextql median {engine:?} (recall@10 {:.2}), raw usearch median {base:?} \
             (recall@10 {:.2}), ratio {:.2}x",
            recall(&got, &exact),
            recall(&raw_scores, &exact),
            engine.as_secs_f64() / base.as_secs_f64().max(1e-9)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = vector_search
}
criterion_main!(benches);
