//! The whole Debian graph (../shared/data/debian) loaded with COPY, queried with ContextQL and
//! SQL, and checked against answers computed here directly from the Parquet files.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use contextdb_engine::{Database, DbConfig};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/debian")
}

fn read(file: &str) -> Vec<RecordBatch> {
    let f = std::fs::File::open(data_dir().join(file)).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn int_column(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn names(batches: &[RecordBatch]) -> HashMap<i64, String> {
    let mut out = HashMap::new();
    for b in batches {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let names = arrow::compute::cast(
            b.column_by_name("name").unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let names = names.as_string::<i32>();
        for i in 0..b.num_rows() {
            out.insert(ids.value(i), names.value(i).to_string());
        }
    }
    out
}

async fn scalar(db: &Database, text: &str) -> i64 {
    let r = db
        .execute(text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let batch = &r[0].batches[0];
    let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Int64).unwrap();
    column.as_primitive::<Int64Type>().value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_graph_loads_and_answers_match() {
    let dir = data_dir();
    assert!(
        dir.join("package.parquet").exists(),
        "missing {}",
        dir.display()
    );
    let db = Database::open(DbConfig::memory().with_file_root(&dir))
        .await
        .unwrap();
    let d = dir.display();
    let script = include_str!("../../../tests/debian/load.cql").replace("__DATA__", &d.to_string());
    db.execute(&script).await.unwrap();

    // Independent answers, straight from the files.
    let packages = read("package.parquet");
    let package_names = names(&packages);
    let by_name: HashMap<&str, i64> = package_names
        .iter()
        .map(|(k, v)| (v.as_str(), *k))
        .collect();
    let depends = read("depends.parquet");
    let src = int_column(&depends, "src");
    let dst = int_column(&depends, "dst");
    let libc6 = by_name["libc6"];
    let one_hop = dst.iter().filter(|&&d| d == libc6).count() as i64;
    let direct: HashSet<i64> = src
        .iter()
        .zip(&dst)
        .filter(|(_, d)| **d == libc6)
        .map(|(s, _)| *s)
        .collect();
    // Two-hop paths a->b->libc6 (counting paths, as MATCH does).
    let mut into: HashMap<i64, i64> = HashMap::new();
    for (s, d) in src.iter().zip(&dst) {
        if *d == libc6 {
            *into.entry(*s).or_default() += 1;
        }
    }
    let two_hop: i64 = src
        .iter()
        .zip(&dst)
        .map(|(_, d)| into.get(d).copied().unwrap_or(0))
        .sum();
    let vim = by_name["vim"];
    let mut vim_deps: Vec<String> = src
        .iter()
        .zip(&dst)
        .filter(|(s, _)| **s == vim)
        .map(|(_, d)| package_names[d].clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    vim_deps.sort();

    assert_eq!(
        scalar(&db, "MATCH (p:Package) RETURN count(*)").await,
        packages.iter().map(|b| b.num_rows() as i64).sum::<i64>()
    );
    assert_eq!(
        scalar(
            &db,
            "MATCH (:Package)-[:DEPENDS]->(:Package) RETURN count(*)"
        )
        .await,
        src.len() as i64
    );
    assert_eq!(
        scalar(
            &db,
            "MATCH (a:Package)-[:DEPENDS]->(b:Package {name:'libc6'}) RETURN count(*)"
        )
        .await,
        one_hop
    );
    assert_eq!(
        scalar(
            &db,
            "MATCH (b:Package {name:'libc6'})<-[:DEPENDS]-(a) RETURN count(DISTINCT a)"
        )
        .await,
        direct.len() as i64
    );
    assert_eq!(
        scalar(&db, "MATCH (a:Package)-[:DEPENDS]->(:Package)-[:DEPENDS]->(b:Package {name:'libc6'}) RETURN count(*)").await,
        two_hop
    );
    // Several patterns sharing a variable, and the same through SQL joins. The two IN_SECTION
    // relationships of one MATCH must differ (openCypher), hence `b.src <> a.src` in SQL:
    // every package has one IN_SECTION edge.
    let main_section: i64 = scalar(
        &db,
        "MATCH (p:Package {name:'vim'})-[:IN_SECTION]->(s:Section), (q:Package)-[:IN_SECTION]->(s) RETURN count(q)",
    )
    .await;
    let sql_section: i64 = scalar(
        &db,
        "SELECT count(*) FROM IN_SECTION a JOIN Package p ON a.src = p.id JOIN IN_SECTION b ON b.dst = a.dst WHERE p.name = 'vim' AND b.src <> a.src",
    )
    .await;
    assert_eq!(main_section, sql_section);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM DEPENDS d JOIN Package p ON d.dst = p.id WHERE p.name = 'libc6'"
        )
        .await,
        one_hop
    );
    let r = db
        .execute("MATCH (a:Package {name:'vim'})-[:DEPENDS]->(b:Package) RETURN DISTINCT b.name ORDER BY b.name")
        .await
        .unwrap();
    let got: Vec<String> = r[0]
        .batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
            (0..c.len())
                .map(|i| c.as_string::<i32>().value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(got, vim_deps);
    // Aggregation: the package with the most dependants.
    let mut counts: HashMap<i64, i64> = HashMap::new();
    for d in &dst {
        *counts.entry(*d).or_default() += 1;
    }
    let max = counts.values().copied().max().unwrap();
    assert_eq!(
        scalar(
            &db,
            "MATCH (a:Package)-[:DEPENDS]->(b:Package) WITH b, count(a) AS n RETURN max(n)"
        )
        .await,
        max
    );

    variable_length_answers_match(&db, &src, &dst, &by_name).await;

    // Vector search, exact, against cosine similarities computed here from the files: the
    // whole graph, a section (a filter keeping few rows) and dependents of libssl3 (a graph
    // constraint, one row per DEPENDS edge).
    let embeddings = embeddings(&packages);
    let sections = string_column(&packages, "section");
    let query = embeddings[&vim].clone();
    let params = HashMap::from([(
        "q".to_string(),
        serde_json::Value::from(query.iter().map(|x| *x as f64).collect::<Vec<f64>>()),
    )]);
    let libssl3 = by_name["libssl3"];
    let cases: Vec<(&str, Vec<i64>)> = vec![
        (
            "MATCH (p:Package) VECTOR SIMILAR TO $q LIMIT 10 RETURN p.id, similarity_score",
            embeddings.keys().copied().collect(),
        ),
        (
            "MATCH (p:Package) WHERE p.section = 'games' VECTOR SIMILAR TO $q LIMIT 10 \
             RETURN p.id, similarity_score",
            sections
                .iter()
                .filter(|(_, s)| s.as_str() == "games")
                .map(|(id, _)| *id)
                .collect(),
        ),
        (
            "MATCH (p:Package)-[:DEPENDS]->(:Package {name: 'libssl3'}) \
             VECTOR SIMILAR TO $q ON p.embedding LIMIT 10 RETURN p.id, similarity_score",
            src.iter()
                .zip(&dst)
                .filter(|(_, d)| **d == libssl3)
                .map(|(s, _)| *s)
                .collect(),
        ),
    ];
    for (text, candidates) in &cases {
        let recall = ranked(&db, text, &params, candidates, &embeddings, &query).await;
        assert_eq!(recall, 1.0, "{text}: exact search");
    }

    // With a usearch index: recall@10 against exact search, over several queries, for the
    // whole graph, filters keeping about 50%, 10% and 1% of the packages, and dependents of
    // libssl3. Every search returns 10 rows (never short) with each row's own score.
    db.execute("CREATE VECTOR INDEX package_embedding ON Package(embedding)")
        .await
        .unwrap();
    let mut filtered: Vec<(String, Vec<i64>)> = cases
        .iter()
        .filter(|(text, _)| !text.contains("section"))
        .map(|(t, c)| (t.to_string(), c.clone()))
        .collect();
    for modulus in [2, 10, 100] {
        filtered.push((
            format!(
                "MATCH (p:Package) WHERE p.id % {modulus} = 0 VECTOR SIMILAR TO $q LIMIT 10 \
                 RETURN p.id, similarity_score"
            ),
            embeddings
                .keys()
                .copied()
                .filter(|id| id % modulus == 0)
                .collect(),
        ));
    }
    let queries: Vec<Vec<f32>> = ["vim", "libssl3", "python3", "gcc", "bash"]
        .iter()
        .filter_map(|n| by_name.get(*n))
        .map(|id| embeddings[id].clone())
        .collect();
    assert_eq!(queries.len(), 5);
    for (text, candidates) in &filtered {
        let mut total = 0.0;
        for q in &queries {
            let params = HashMap::from([(
                "q".to_string(),
                serde_json::Value::from(q.iter().map(|x| *x as f64).collect::<Vec<f64>>()),
            )]);
            total += ranked(&db, text, &params, candidates, &embeddings, q).await;
        }
        let recall = total / queries.len() as f64;
        assert!(recall >= 0.95, "{text}: recall@10 {recall}");
    }
}

/// Variable-length patterns (issue 10) against walks computed here over the DEPENDS rows: the
/// distinct packages that reach a target in 1..2 and 1..3 hops, for libc6 (tens of thousands
/// of dependents) and a package with few, and the number of trails (no edge twice) for the
/// latter.
async fn variable_length_answers_match(
    db: &Database,
    src: &[i64],
    dst: &[i64],
    by_name: &HashMap<&str, i64>,
) {
    let mut into: HashMap<i64, Vec<(usize, i64)>> = HashMap::new();
    for (row, (s, d)) in src.iter().zip(dst).enumerate() {
        into.entry(*d).or_default().push((row, *s));
    }
    // The packages with a walk of exactly k hops to `target`, for k = 1..=hops, united.
    let reaching = |target: i64, hops: usize| -> HashSet<i64> {
        let mut all = HashSet::new();
        let mut level: HashSet<i64> = HashSet::from([target]);
        for _ in 0..hops {
            level = level
                .iter()
                .flat_map(|n| into.get(n).into_iter().flatten().map(|(_, s)| *s))
                .collect();
            all.extend(level.iter().copied());
        }
        all
    };
    // Trails of 1..=hops edges ending at `target`, counted by walking them back.
    fn trails(
        into: &HashMap<i64, Vec<(usize, i64)>>,
        node: i64,
        used: &mut Vec<usize>,
        hops: usize,
    ) -> i64 {
        let mut count = 0;
        for (row, s) in into.get(&node).into_iter().flatten() {
            if used.contains(row) {
                continue;
            }
            count += 1;
            if used.len() + 1 < hops {
                used.push(*row);
                count += trails(into, *s, used, hops);
                used.pop();
            }
        }
        count
    }
    // A package with a few dependents, some of them with dependents of their own.
    let mut few: Vec<(&str, i64)> = by_name
        .iter()
        .filter(|(_, id)| {
            let n = into.get(id).map_or(0, |v| v.len());
            (3..=6).contains(&n) && reaching(**id, 3).len() > n
        })
        .map(|(name, id)| (*name, *id))
        .collect();
    few.sort();
    let (small, small_id) = few[0];
    for (name, id) in [("libc6", by_name["libc6"]), (small, small_id)] {
        for hops in [2, 3] {
            let expected = reaching(id, hops).len() as i64;
            let text = format!(
                "MATCH (a:Package)-[:DEPENDS*1..{hops}]->(:Package {{name: '{name}'}}) \
                 RETURN count(DISTINCT a)"
            );
            assert_eq!(scalar(db, &text).await, expected, "{text}");
        }
    }
    assert!(reaching(by_name["libc6"], 3).len() > 10_000);
    shortest_paths_match(db, src, dst, by_name).await;
    for hops in [2, 3] {
        let expected = trails(&into, small_id, &mut Vec::new(), hops);
        let text = format!(
            "MATCH (a:Package)-[:DEPENDS*1..{hops}]->(:Package {{name: '{small}'}}) RETURN count(*)"
        );
        assert_eq!(scalar(db, &text).await, expected, "{text}");
    }
}

/// Shortest path lengths (issue 10) against breadth-first searches over the DEPENDS rows:
/// from 20 packages spread over the ids to the farthest package each reaches within 6 hops,
/// from vim to libc6 (tens of thousands of dependents), and a pair with no path.
async fn shortest_paths_match(
    db: &Database,
    src: &[i64],
    dst: &[i64],
    by_name: &HashMap<&str, i64>,
) {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    for (s, d) in src.iter().zip(dst) {
        out.entry(*s).or_default().push(*d);
    }
    let distances = |from: i64| -> HashMap<i64, usize> {
        let mut seen = HashMap::from([(from, 0)]);
        let mut frontier = vec![from];
        let mut depth = 0;
        while !frontier.is_empty() {
            depth += 1;
            let mut next = Vec::new();
            for n in frontier {
                for d in out.get(&n).into_iter().flatten() {
                    if !seen.contains_key(d) {
                        seen.insert(*d, depth);
                        next.push(*d);
                    }
                }
            }
            frontier = next;
        }
        seen
    };
    let length = |a: i64, b: i64| {
        format!(
            "MATCH p = shortestPath((a:Package {{id: {a}}})-[:DEPENDS*]->(b:Package {{id: {b}}})) \
             RETURN length(p)"
        )
    };
    let mut sources: Vec<i64> = out.keys().copied().collect();
    sources.sort();
    let step = sources.len() / 20;
    let mut checked = 0;
    for from in sources.iter().step_by(step).take(20) {
        let reach = distances(*from);
        // The farthest within 6 hops, the smallest id among equals.
        let Some((to, hops)) = reach
            .iter()
            .filter(|(_, d)| **d <= 6)
            .map(|(n, d)| (*n, *d))
            .max_by_key(|(n, d)| (*d, -n))
        else {
            continue;
        };
        if hops == 0 {
            continue;
        }
        assert_eq!(
            scalar(db, &length(*from, to)).await,
            hops as i64,
            "{from} -> {to}"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} pairs had a path");
    let (vim, libc6) = (by_name["vim"], by_name["libc6"]);
    assert_eq!(
        scalar(db, &length(vim, libc6)).await,
        distances(vim)[&libc6] as i64
    );
    // libc6 depends on nothing that reaches vim.
    assert!(!distances(libc6).contains_key(&vim));
    let none = db.execute(&length(libc6, vim)).await.unwrap();
    assert_eq!(
        none[0].batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        0
    );
}

/// Runs a top-10 search and checks each row qualifies and carries its own score; returns its
/// recall@10 against the exact top 10 of the candidates (ties count as found).
async fn ranked(
    db: &Database,
    text: &str,
    params: &HashMap<String, serde_json::Value>,
    candidates: &[i64],
    embeddings: &HashMap<i64, Vec<f32>>,
    query: &[f32],
) -> f64 {
    assert!(candidates.len() > 10, "{text}: too few candidates");
    let mut expected: Vec<f64> = candidates
        .iter()
        .map(|id| cosine(&embeddings[id], query))
        .collect();
    expected.sort_by(|a, b| b.total_cmp(a));
    expected.truncate(10);
    let r = db
        .execute_with_params(text, params)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let mut got = Vec::new();
    for b in &r[0].batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let scores = b.column(1).as_primitive::<arrow::datatypes::Float64Type>();
        for i in 0..b.num_rows() {
            let id = ids.value(i);
            assert!(candidates.contains(&id), "{text}: {id} does not qualify");
            let own = cosine(&embeddings[&id], query);
            assert!(
                (scores.value(i) - own).abs() < 1e-9,
                "{text}: score of {id}"
            );
            got.push(scores.value(i));
        }
    }
    assert_eq!(got.len(), 10, "{text}: never short");
    let tenth = expected[9];
    got.iter().filter(|g| **g >= tenth - 1e-9).count() as f64 / 10.0
}

/// Each package's embedding.
fn embeddings(batches: &[RecordBatch]) -> HashMap<i64, Vec<f32>> {
    let mut out = HashMap::new();
    for b in batches {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let vectors = b.column_by_name("embedding").unwrap().as_fixed_size_list();
        for i in 0..b.num_rows() {
            let v = vectors.value(i);
            let v = v.as_primitive::<arrow::datatypes::Float32Type>();
            out.insert(ids.value(i), v.values().to_vec());
        }
    }
    out
}

fn string_column(batches: &[RecordBatch], name: &str) -> HashMap<i64, String> {
    let mut out = HashMap::new();
    for b in batches {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let values = arrow::compute::cast(
            b.column_by_name(name).unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let values = values.as_string::<i32>();
        for i in 0..b.num_rows() {
            if values.is_valid(i) {
                out.insert(ids.value(i), values.value(i).to_string());
            }
        }
    }
    out
}

/// Cosine similarity in f64, written out here rather than taken from the engine.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    dot / (aa.sqrt() * bb.sqrt())
}
