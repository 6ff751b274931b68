//! Vector indexes end to end: built once, opened (not rebuilt) after a restart, correct at
//! every snapshot, rebuilt as the table grows, and their files removed once dropped.

use std::path::Path;
use std::sync::Arc;

mod common;

use common::query;
use contextdb_engine::{Database, DbConfig};

/// The first column of each row.
async fn ids(db: &Database, text: &str) -> Vec<String> {
    query(db, text)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

/// `n` documents `from..from + n` with 8-d vectors spread over the cube (each coordinate a
/// multiplicative hash of the id modulo its own prime).
async fn insert_docs(db: &Database, from: u64, n: u64) {
    let coordinates: Vec<String> = [
        (7919, 1009),
        (7927, 1013),
        (7933, 1019),
        (7937, 1021),
        (7949, 1031),
        (7951, 1033),
        (7963, 1039),
        (7993, 1049),
    ]
    .iter()
    .map(|(a, m)| format!("(i * {a} % {m}) / {m}.0 - 0.5"))
    .collect();
    query(
        db,
        &format!(
            "UNWIND range({from}, {}) AS i CREATE (:Doc {{id: i, emb: [{}]}})",
            from + n - 1,
            coordinates.join(", ")
        ),
    )
    .await;
}

const QUERY: &str = "[0.3, -0.2, 0.9, 0.1, -0.5, 0.4, 0.2, -0.1]";

fn ann(k: usize) -> String {
    format!("MATCH (d:Doc) VECTOR SIMILAR TO {QUERY} LIMIT {k} RETURN d.id")
}

/// The exact answer, by SQL over the same table.
fn exact(k: usize) -> String {
    format!("SELECT id FROM \"Doc\" ORDER BY cosine_similarity(emb, {QUERY}) DESC, id LIMIT {k}")
}

/// The top-k search among the documents whose id is a multiple of `modulus`, and its exact
/// answer by SQL.
fn every_nth(modulus: u64, k: usize) -> (String, String) {
    (
        format!(
            "MATCH (d:Doc) WHERE d.id % {modulus} = 0 VECTOR SIMILAR TO {QUERY} LIMIT {k} \
             RETURN d.id"
        ),
        format!(
            "SELECT id FROM \"Doc\" WHERE id % {modulus} = 0 ORDER BY \
             cosine_similarity(emb, {QUERY}) DESC, id LIMIT {k}"
        ),
    )
}

fn recall(found: &[String], truth: &[String]) -> f64 {
    let hits = found.iter().filter(|f| truth.contains(f)).count();
    hits as f64 / truth.len() as f64
}

async fn docs(config: DbConfig) -> Arc<Database> {
    let db = Database::open(config).await.unwrap();
    query(
        &db,
        "CREATE NODE TABLE Doc (id BIGINT PRIMARY KEY, emb VECTOR(8))",
    )
    .await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_survives_a_restart_without_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let db = docs(DbConfig::local(dir.path())).await;
    insert_docs(&db, 1, 3000).await;
    let built = query(&db, "CREATE VECTOR INDEX doc_emb ON Doc(emb) WITH (m = 12)").await;
    assert_eq!(
        built,
        vec![vec!["vector index built over 3000 rows".to_string()]]
    );
    assert_eq!(db.vector_index_stats().builds, 1);
    let before = ids(&db, &ann(10)).await;
    let truth = ids(&db, &exact(10)).await;
    assert!(recall(&before, &truth) >= 0.9, "{before:?} vs {truth:?}");
    let snapshot = ids(
        &db,
        "SELECT snapshot_id FROM system.snapshots WHERE table_name = 'Doc' \
         ORDER BY committed_at DESC LIMIT 1",
    )
    .await;
    let shown = query(&db, "SHOW INDEXES").await;
    assert_eq!(
        shown,
        vec![vec![
            "doc_emb".to_string(),
            "Doc".into(),
            "emb".into(),
            "cosine".into(),
            "m=12, ef_construction=64, ef_search=64, quantization=f16".into(),
            "3000".into(),
            snapshot[0].clone(),
        ]]
    );
    db.shutdown().await;
    drop(db);

    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    assert_eq!(ids(&db, &ann(10)).await, before);
    let stats = db.vector_index_stats();
    assert_eq!((stats.builds, stats.opens), (0, 1), "opened, not rebuilt");
    // The open index serves later statements.
    assert_eq!(ids(&db, &ann(10)).await, before);
    assert_eq!(db.vector_index_stats().opens, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_snapshot_gets_correct_answers() {
    // In memory: the index file is downloaded from the store to be mapped.
    let db = docs(DbConfig::memory()).await;
    insert_docs(&db, 1, 800).await;
    query(&db, "CREATE VECTOR INDEX doc_emb ON Doc(emb)").await;
    let at_build = ids(&db, &ann(10)).await;
    let build_snapshot = ids(
        &db,
        "SELECT snapshot_id FROM system.snapshots WHERE table_name = 'Doc' \
         ORDER BY committed_at DESC LIMIT 1",
    )
    .await[0]
        .clone();
    // Rows appended, the best of the old ones deleted, and one old row's vector moved onto
    // the query: each answer must follow.
    insert_docs(&db, 801, 200).await;
    let gone = &at_build[..3];
    query(
        &db,
        &format!("MATCH (d:Doc) WHERE d.id IN [{}] DELETE d", gone.join(", ")),
    )
    .await;
    query(
        &db,
        &format!("MATCH (d:Doc {{id: 400}}) SET d.emb = {QUERY}"),
    )
    .await;
    let now = ids(&db, &ann(10)).await;
    let truth = ids(&db, &exact(10)).await;
    assert_eq!(now[0], "400", "the moved row ranks first: {now:?}");
    assert!(!now.iter().any(|id| gone.contains(id)), "{now:?}");
    assert!(recall(&now, &truth) >= 0.9, "{now:?} vs {truth:?}");
    // The snapshot the index was built over reads as it was.
    let then = ids(&db, &format!("AT SNAPSHOT {build_snapshot} {}", ann(10))).await;
    assert_eq!(then, at_build);
    // Filtered: the k best of the rows that pass, at any selectivity.
    for modulus in [2, 10, 100] {
        let (filtered, exact) = every_nth(modulus, 5);
        let found = ids(&db, &filtered).await;
        let truth = ids(&db, &exact).await;
        assert_eq!(found.len(), 5, "1/{modulus}: {found:?}");
        assert!(
            recall(&found, &truth) >= 0.8,
            "1/{modulus}: {found:?} vs {truth:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_is_extended_as_the_table_grows_and_rebuilt_when_rows_go() {
    let db = docs(DbConfig::memory()).await;
    insert_docs(&db, 1, 100).await;
    query(&db, "CREATE VECTOR INDEX doc_emb ON Doc(emb)").await;
    // Fewer new rows than the refresh threshold: searched exactly, the index stays.
    insert_docs(&db, 101, 100).await;
    let stats = db.vector_index_stats();
    assert_eq!((stats.builds, stats.extensions), (1, 0));
    // Past it: the new rows are added to the index, which is not rebuilt.
    let grown = contextdb_engine::REFRESH_MIN_ROWS as u64;
    insert_docs(&db, 201, grown).await;
    let stats = db.vector_index_stats();
    assert_eq!((stats.builds, stats.extensions), (1, 1));
    let shown = query(&db, "SHOW INDEXES").await;
    assert_eq!(shown[0][5], (200 + grown).to_string());
    let found = ids(&db, &ann(10)).await;
    let truth = ids(&db, &exact(10)).await;
    assert!(recall(&found, &truth) >= 0.9, "{found:?} vs {truth:?}");
    // Most rows deleted: the index would hold more deleted rows than live ones; rebuilt.
    query(&db, "MATCH (d:Doc) WHERE d.id > 200 DELETE d").await;
    let stats = db.vector_index_stats();
    assert_eq!((stats.builds, stats.extensions), (2, 1));
    assert_eq!(query(&db, "SHOW INDEXES").await[0][5], "200");
    let found = ids(&db, &ann(10)).await;
    let truth = ids(&db, &exact(10)).await;
    assert_eq!(found.len(), 10);
    assert!(recall(&found, &truth) >= 0.9, "{found:?} vs {truth:?}");
}

fn index_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.parent().is_some_and(|p| p.ends_with("vector-index")) {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_removes_the_files_of_dropped_indexes_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DbConfig::local(dir.path());
    config.snapshot_retention = std::time::Duration::ZERO;
    let db = docs(config).await;
    insert_docs(&db, 1, 50).await;
    query(&db, "CREATE VECTOR INDEX doc_emb ON Doc(emb)").await;
    assert_eq!(
        index_files(dir.path()).len(),
        2,
        "the index and its covered files"
    );
    query(&db, "VACUUM").await;
    assert_eq!(
        index_files(dir.path()).len(),
        2,
        "a live index keeps its files"
    );
    query(&db, "DROP VECTOR INDEX doc_emb").await;
    query(&db, "VACUUM").await;
    assert_eq!(index_files(dir.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_extends_the_index_and_reports_it() {
    use arrow::array::{FixedSizeListArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Float32Type, Schema};
    use contextdb_engine::LoadPhase;

    let dir = tempfile::tempdir().unwrap();
    let db = docs(DbConfig::memory()).await;
    insert_docs(&db, 1, 10).await;
    query(&db, "CREATE VECTOR INDEX doc_emb ON Doc(emb)").await;
    // A file of more rows than an index may leave uncovered.
    let n = contextdb_engine::REFRESH_MIN_ROWS as i64 + 1000;
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("emb", DataType::FixedSizeList(item, 8), true),
    ]));
    let vectors = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
        (0..n).map(|i| {
            Some((0..8).map(move |d| Some((((i + 11) * (7919 + d)) % 1009) as f32 / 1009.0 - 0.5)))
        }),
        8,
    );
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(11..11 + n)),
            Arc::new(vectors),
        ],
    )
    .unwrap();
    let path = dir.path().join("docs.parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None)
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let reports = std::sync::Mutex::new(Vec::new());
    let loaded = db
        .load("Doc", &path, &|phase, done, total| {
            reports.lock().unwrap().push((phase, done, total))
        })
        .await
        .unwrap();
    assert_eq!(loaded, n as u64);
    let reports = reports.into_inner().unwrap();
    assert!(reports.iter().any(|r| r.0 == LoadPhase::Reading));
    let indexing: Vec<_> = reports
        .iter()
        .filter(|r| r.0 == LoadPhase::Indexing)
        .collect();
    assert_eq!(
        indexing.last().map(|r| (r.1, r.2)),
        Some((n as u64, n as u64)),
        "the loaded rows were indexed: {indexing:?}"
    );
    let stats = db.vector_index_stats();
    assert_eq!(
        (stats.builds, stats.extensions),
        (1, 1),
        "extended, not rebuilt"
    );
    assert_eq!(query(&db, "SHOW INDEXES").await[0][5], (n + 10).to_string());
    let found = ids(&db, &ann(10)).await;
    let truth = ids(&db, &exact(10)).await;
    assert!(recall(&found, &truth) >= 0.9, "{found:?} vs {truth:?}");
}

/// A metric of the VectorTopK line of an EXPLAIN ANALYZE (0 when it is not printed); DataFusion
/// prints counts from 1,000 up rounded to three digits ("1.50 K").
fn metric(plan: &str, name: &str) -> usize {
    let line = plan
        .lines()
        .find(|l| l.contains("VectorTopKExec"))
        .unwrap_or_else(|| panic!("no VectorTopKExec in {plan}"));
    let Some((_, after)) = line
        .split_once(&format!(" {name}="))
        .or_else(|| line.split_once(&format!("[{name}=")))
    else {
        return 0;
    };
    let value = after.split([',', ']']).next().unwrap_or_default().trim();
    let (number, scale) = match value.split_once(' ') {
        Some((n, "K")) => (n, 1e3),
        Some((n, "M")) => (n, 1e6),
        _ => (value, 1.0),
    };
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("{name}={value} in {line}"));
    (number * scale).round() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_is_searched_ann_first_and_widens_or_goes_filter_first_by_its_selectivity() {
    let db = docs(DbConfig::memory()).await;
    insert_docs(&db, 1, 3000).await;
    query(&db, "CREATE VECTOR INDEX doc_emb ON Doc(emb)").await;
    // Rows written since the build take part uncovered (searched exactly in every round).
    insert_docs(&db, 3001, 100).await;
    // (modulus, rounds at least, rounds at most, went filter-first)
    for (modulus, least, most, abandoned) in [(2, 1, 1, 0), (10, 1, 3, 0), (1000, 1, 3, 1)] {
        let (filtered, exact) = every_nth(modulus, 3);
        let found = ids(&db, &filtered).await;
        let truth = ids(&db, &exact).await;
        assert_eq!(found.len(), 3, "1/{modulus}: {found:?}");
        assert!(
            recall(&found, &truth) >= 0.66,
            "1/{modulus}: {found:?} vs {truth:?}"
        );
        let explained = query(&db, &format!("EXPLAIN {filtered}")).await;
        assert!(
            explained
                .iter()
                .any(|r| r[1].contains("index doc_emb's nearest 64 rows through the input")),
            "{explained:?}"
        );
        let analyzed = analyzed(&db, &filtered).await;
        let rounds = metric(&analyzed, "ann_first_rounds");
        assert!(
            (least..=most).contains(&rounds),
            "1/{modulus}: {rounds} rounds\n{analyzed}"
        );
        assert_eq!(
            metric(&analyzed, "ann_first_abandoned"),
            abandoned,
            "1/{modulus}\n{analyzed}"
        );
    }
    // A lookup that finds few rows bounds the candidates before the search: no ANN-first round.
    let ids_in: Vec<String> = (1..=40).map(|i| (i * 37).to_string()).collect();
    let looked_up = format!(
        "MATCH (d:Doc) WHERE d.id IN [{}] VECTOR SIMILAR TO {QUERY} LIMIT 3 RETURN d.id",
        ids_in.join(", ")
    );
    let analyzed = analyzed(&db, &looked_up).await;
    assert_eq!(metric(&analyzed, "lookup_rows"), 40, "{analyzed}");
    assert_eq!(metric(&analyzed, "ann_first_rounds"), 0, "{analyzed}");
    let truth = ids(
        &db,
        &format!(
            "SELECT id FROM \"Doc\" WHERE id IN ({}) ORDER BY cosine_similarity(emb, {QUERY}) \
             DESC, id LIMIT 3",
            ids_in.join(", ")
        ),
    )
    .await;
    assert_eq!(ids(&db, &looked_up).await, truth);
    // An aggregate between the scan and the search: the whole input runs first.
    let grouped = format!(
        "MATCH (d:Doc) WITH d, count(*) AS c WHERE c = 1 VECTOR SIMILAR TO {QUERY} ON d.emb \
         LIMIT 3 RETURN d.id"
    );
    let explained = query(&db, &format!("EXPLAIN {grouped}")).await;
    assert!(
        !explained.iter().any(|r| r[1].contains("ann-first")),
        "{explained:?}"
    );
    assert_eq!(ids(&db, &grouped).await, ids(&db, &ann(3)).await);
}

/// EXPLAIN ANALYZE of `text`, one line per row.
async fn analyzed(db: &Database, text: &str) -> String {
    query(db, &format!("EXPLAIN ANALYZE {text}"))
        .await
        .into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_citers_of_a_node_are_searched_ann_first_when_its_degree_is_high() {
    let db = docs(DbConfig::memory()).await;
    insert_docs(&db, 1, 3000).await;
    query(&db, "CREATE EDGE TABLE CITES (FROM Doc TO Doc)").await;
    // Doc 1 is cited by every even doc (1,500), doc 2 by every hundredth (30).
    for (target, modulus) in [(1, 2), (2, 100)] {
        query(
            &db,
            &format!(
                "MATCH (a:Doc), (b:Doc {{id: {target}}}) WHERE a.id % {modulus} = 0 \
                 CREATE (a)-[:CITES]->(b)"
            ),
        )
        .await;
    }
    query(&db, "CREATE VECTOR INDEX doc_emb ON Doc(emb)").await;
    let citers = |target: u64, filter: &str| {
        (
            format!(
                "MATCH (d:Doc)-[:CITES]->(:Doc {{id: {target}}}) {filter} VECTOR SIMILAR TO \
                 {QUERY} LIMIT 3 RETURN d.id"
            ),
            format!(
                "SELECT d.id FROM \"Doc\" d JOIN \"CITES\" c ON c.src = d.id WHERE c.dst = \
                 {target} {} ORDER BY cosine_similarity(d.emb, {QUERY}) DESC, d.id LIMIT 3",
                filter.replace("WHERE", "AND")
            ),
        )
    };
    // (target, filter, graph-first rows estimated, ANN-first rounds, abandoned)
    let cases = [
        // 1,500 citers, half the docs: the index's nearest docs run through the pattern
        // from d, and enough of them cite doc 1 in one round.
        (1, "", 1500, 1..=1, 0),
        // 30 citers: expanding from doc 2 costs less than a search.
        (2, "", 30, 0..=0, 0),
        // The filter keeps 1 in 1,000 of the citers, which the estimate does not know: the
        // rounds sample that and the search goes graph-first.
        (1, "WHERE d.id % 1000 = 0", 1500, 1..=3, 1),
    ];
    for (target, filter, estimated, rounds, abandoned) in cases {
        let (pattern, exact) = citers(target, filter);
        let found = ids(&db, &pattern).await;
        let truth = ids(&db, &exact).await;
        assert_eq!(found.len(), 3, "{pattern}: {found:?}");
        assert!(
            recall(&found, &truth) >= 0.66,
            "{pattern}: {found:?} vs {truth:?}"
        );
        let explained = query(&db, &format!("EXPLAIN {pattern}")).await;
        let choice = match target {
            1 => {
                "ann-first through the alternate input (second) from d: lookups and degrees \
                  estimate 1500 input rows of 3000 (share 0.500), so index doc_emb's nearest 64 \
                  rows first"
            }
            _ => "graph-first: lookups and degrees estimate 30 input rows",
        };
        assert!(
            explained.iter().any(|r| r[1].contains(choice)),
            "{explained:?}"
        );
        let analyzed = analyzed(&db, &pattern).await;
        let metric = |name| metric(&analyzed, name);
        assert_eq!(
            metric("graph_first_rows_estimated"),
            estimated,
            "{analyzed}"
        );
        assert!(
            rounds.contains(&metric("ann_first_rounds")),
            "{pattern}\n{analyzed}"
        );
        assert_eq!(metric("ann_first_abandoned"), abandoned, "{analyzed}");
    }
    // Written the other way round, the pattern still starts at doc 1 and has the alternate.
    let from_d = format!(
        "MATCH (:Doc {{id: 1}})<-[:CITES]-(d:Doc) VECTOR SIMILAR TO {QUERY} LIMIT 3 RETURN d.id"
    );
    let explained = query(&db, &format!("EXPLAIN {from_d}")).await;
    assert!(
        explained
            .iter()
            .any(|r| r[1].contains("alternate input (second)")),
        "{explained:?}"
    );
    // Without an index on the property there is nothing to search first: no alternate.
    let exact = format!(
        "MATCH (d:Doc)-[:CITES]->(:Doc {{id: 1}}) VECTOR SIMILAR TO {QUERY} METRIC l2 LIMIT 3 \
         RETURN d.id"
    );
    let explained = query(&db, &format!("EXPLAIN {exact}")).await;
    assert!(
        !explained.iter().any(|r| r[1].contains("alternate")),
        "{explained:?}"
    );
    assert_eq!(ids(&db, &from_d).await, ids(&db, &citers(1, "").0).await);
    // Either choice is planned once and then served from the plan cache.
    for target in [1, 2] {
        let hits = db.plan_cache_hits();
        for _ in 0..3 {
            ids(&db, &citers(target, "").0).await;
        }
        assert_eq!(db.plan_cache_hits(), hits + 3, "doc {target}");
    }
}
