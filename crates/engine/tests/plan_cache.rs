//! The plan cache: a repeated read-only statement reuses its plan, and never an answer from
//! before a commit, with other parameters, or of a function that is not immutable.

use std::collections::HashMap;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type};
use contextdb_engine::{Database, DbConfig};

async fn ints(db: &Database, text: &str, params: &HashMap<String, serde_json::Value>) -> Vec<i64> {
    let results = db
        .execute_with_params(text, params)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let mut out = Vec::new();
    for batch in &results.last().unwrap().batches {
        let column = arrow::compute::cast(batch.column(0), &DataType::Int64).unwrap();
        out.extend(
            column
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.unwrap()),
        );
    }
    out
}

const GRAPH: &str = "
    CREATE NODE TABLE P (id BIGINT PRIMARY KEY, age BIGINT);
    CREATE EDGE TABLE KNOWS (FROM P TO P);
    UNWIND range(1, 50) AS i CREATE (:P {id: i, age: i % 7});
    MATCH (a:P), (b:P) WHERE b.id = a.id + 1 CREATE (a)-[:KNOWS]->(b)
";

#[tokio::test]
async fn a_repeated_read_reuses_its_plan_and_sees_every_commit() {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(GRAPH).await.unwrap();
    let none = HashMap::new();
    let queries = [
        ("MATCH (a:P {id: 1})-[:KNOWS]->(b) RETURN b.id", vec![2]),
        (
            "MATCH (a:P)-[:KNOWS]->(b) WHERE a.age = 3 RETURN count(*)",
            vec![7],
        ),
        // Top-k, aggregates, DISTINCT: operators with execution state, run again.
        (
            "MATCH (a:P) RETURN a.id ORDER BY a.age DESC, a.id LIMIT 3",
            vec![6, 13, 20],
        ),
        (
            "MATCH (a:P) RETURN DISTINCT a.age ORDER BY a.age",
            (0..7).collect(),
        ),
        ("MATCH (a:P) RETURN max(a.id) - min(a.id)", vec![49]),
    ];
    for (text, want) in &queries {
        for run in 0..3 {
            assert_eq!(&ints(&db, text, &none).await, want, "{text}, run {run}");
        }
    }
    assert_eq!(db.cached_plans(), queries.len());

    // A commit: the next run plans again and sees it.
    db.execute("MATCH (a:P {id: 1}) CREATE (a)-[:KNOWS]->(:P {id: 100, age: 3})")
        .await
        .unwrap();
    assert_eq!(db.cached_plans(), 0);
    let text = "MATCH (a:P {id: 1})-[:KNOWS]->(b) RETURN b.id ORDER BY b.id";
    assert_eq!(ints(&db, text, &none).await, [2, 100]);
    assert_eq!(ints(&db, text, &none).await, [2, 100]);
    // A SQL write moves the catalog version too.
    db.execute("DELETE FROM KNOWS WHERE dst = 100")
        .await
        .unwrap();
    assert_eq!(ints(&db, text, &none).await, [2]);

    // The same text with other parameters is another plan.
    let text = "MATCH (a:P {id: $id})-[:KNOWS]->(b) RETURN b.id";
    for id in [5, 9, 5] {
        let params = HashMap::from([("id".to_string(), serde_json::json!(id))]);
        assert_eq!(ints(&db, text, &params).await, [id + 1]);
    }
    // Lists too, and a key holds every parameter by name (values kept, not printed).
    let text = "RETURN toInteger($v[1] + $w) AS x";
    for (v, w, x) in [
        (vec![1.0, 2.0], 1, 3),
        (vec![1.0, 5.0], 1, 6),
        (vec![1.0, 2.0], 2, 4),
    ] {
        let params = HashMap::from([
            ("v".to_string(), serde_json::json!(v)),
            ("w".to_string(), serde_json::json!(w)),
        ]);
        assert_eq!(ints(&db, text, &params).await, [x]);
    }
    db.shutdown().await;
}

#[tokio::test]
async fn plans_with_functions_that_are_not_immutable_are_not_cached() {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(GRAPH).await.unwrap();
    let none = HashMap::new();
    let before = db.cached_plans();
    for _ in 0..2 {
        let text = "MATCH (a:P) WHERE rand() < 2.0 RETURN count(*)";
        assert_eq!(ints(&db, text, &none).await, [50]);
    }
    assert_eq!(db.cached_plans(), before);
    // Writes and EXPLAIN are never cached.
    db.execute("CREATE (:P {id: 1000})").await.unwrap();
    db.execute("EXPLAIN MATCH (a:P) RETURN a.id").await.unwrap();
    assert_eq!(db.cached_plans(), 0);
    assert_eq!(ints(&db, "MATCH (a:P) RETURN count(*)", &none).await, [51]);
    assert_eq!(db.cached_plans(), 1);
    db.shutdown().await;
}

#[tokio::test]
async fn an_eviction_from_the_hot_tier_drops_the_plans_that_hold_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
        db.execute(GRAPH).await.unwrap();
        db.execute(
            "CREATE NODE TABLE Big (id BIGINT PRIMARY KEY, text VARCHAR);
             UNWIND range(1, 3000) AS i CREATE (:Big {id: i, text: 'some text ' + toString(i)})",
        )
        .await
        .unwrap();
        db.shutdown().await;
    }
    let mut config = DbConfig::local(dir.path());
    config.cache_bytes = 96 * 1024;
    let db = Database::open(config).await.unwrap();
    let none = HashMap::new();
    assert_eq!(ints(&db, "MATCH (a:P) RETURN count(*)", &none).await, [50]);
    assert_eq!(db.cached_plans(), 1);
    // Reading the big table pushes P out of the hot tier: the plan holding P's rows goes.
    let _ = db.execute("MATCH (b:Big) RETURN count(*)").await;
    assert!(db.hot_tier().used_bytes <= db.hot_tier().budget_bytes);
    assert!(!db.hot_tier().tables.contains(&"P".to_string()));
    assert_eq!(db.cached_plans(), 0, "{:?}", db.hot_tier());
    assert_eq!(ints(&db, "MATCH (a:P) RETURN count(*)", &none).await, [50]);
    db.shutdown().await;
}
