//! End-to-end behaviour of the engine through its public API.

mod common;

use std::sync::Arc;

use arrow::array::RecordBatch;
use common::{query, rows};
use contextdb_engine::{Database, DbConfig, ErrorKind, Language};

fn sorted(mut v: Vec<Vec<String>>) -> Vec<Vec<String>> {
    v.sort();
    v
}

fn s(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

async fn people() -> Arc<Database> {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(
        "CREATE NODE TABLE Person (id BIGINT PRIMARY KEY, name VARCHAR, age INT);
         CREATE NODE TABLE City (name VARCHAR PRIMARY KEY);
         CREATE EDGE TABLE KNOWS (FROM Person TO Person, since INT);
         CREATE EDGE TABLE LIVES_IN (FROM Person TO City);
         CREATE (:Person {id: 1, name: 'Ann', age: 30});
         CREATE (:Person {id: 2, name: 'Bob', age: 40});
         CREATE (:Person {id: 3, name: 'Cy', age: 50});
         CREATE (:City {name: 'Oslo'});
         MATCH (a:Person {id: 1}), (b:Person {id: 2}) CREATE (a)-[:KNOWS {since: 2001}]->(b);
         MATCH (a:Person {id: 2}), (b:Person {id: 3}) CREATE (a)-[:KNOWS {since: 2002}]->(b);
         MATCH (a:Person {id: 1}), (b:Person {id: 3}) CREATE (a)-[:KNOWS {since: 2003}]->(b);
         MATCH (a:Person), (c:City) WHERE a.id < 3 CREATE (a)-[:LIVES_IN]->(c);",
    )
    .await
    .unwrap();
    db
}

#[tokio::test]
async fn one_hop_both_directions_and_undirected() {
    let db = people().await;
    assert_eq!(
        sorted(
            query(
                &db,
                "MATCH (a:Person)-[:KNOWS]->(b:Person) RETURN a.name, b.name"
            )
            .await
        ),
        s(&[&["Ann", "Bob"], &["Ann", "Cy"], &["Bob", "Cy"]])
    );
    assert_eq!(
        sorted(
            query(
                &db,
                "MATCH (b:Person {name: 'Cy'})<-[k:KNOWS]-(a) RETURN a.name, k.since"
            )
            .await
        ),
        s(&[&["Ann", "2003"], &["Bob", "2002"]])
    );
    assert_eq!(
        sorted(
            query(
                &db,
                "MATCH (a:Person {name: 'Bob'})-[:KNOWS]-(b) RETURN b.name"
            )
            .await
        ),
        s(&[&["Ann"], &["Cy"]])
    );
}

#[tokio::test]
async fn two_hops_aggregation_order_and_limit() {
    let db = people().await;
    assert_eq!(
        query(
            &db,
            "MATCH (a:Person)-[:KNOWS]->(:Person)-[:KNOWS]->(c:Person) RETURN a.name, c.name"
        )
        .await,
        s(&[&["Ann", "Cy"]])
    );
    assert_eq!(
        query(
            &db,
            "MATCH (a:Person)-[:KNOWS]->(b:Person) RETURN a.name AS who, count(*) AS n ORDER BY n DESC, who LIMIT 1"
        )
        .await,
        s(&[&["Ann", "2"]])
    );
    assert_eq!(
        query(
            &db,
            "MATCH (p:Person) WITH p WHERE p.age > 35 RETURN sum(p.age) AS total"
        )
        .await,
        s(&[&["90"]])
    );
}

#[tokio::test]
async fn several_patterns_and_optional_match() {
    let db = people().await;
    assert_eq!(
        sorted(
            query(
                &db,
                "MATCH (a:Person)-[:KNOWS]->(b:Person), (b)-[:LIVES_IN]->(c:City) RETURN a.name, b.name, c.name"
            )
            .await
        ),
        s(&[&["Ann", "Bob", "Oslo"]])
    );
    assert_eq!(
        sorted(
            query(
                &db,
                "MATCH (a:Person) OPTIONAL MATCH (a)-[:LIVES_IN]->(c) RETURN a.name, c.name"
            )
            .await
        ),
        s(&[&["Ann", "Oslo"], &["Bob", "Oslo"], &["Cy", "NULL"]])
    );
}

#[tokio::test]
async fn nodes_come_back_as_structs() {
    let db = people().await;
    let result = db
        .execute("MATCH (a:Person {id: 1}) RETURN a")
        .await
        .unwrap();
    let batch: &RecordBatch = &result[0].batches[0];
    let field = batch.schema().field(0).clone();
    let arrow::datatypes::DataType::Struct(fields) = field.data_type() else {
        panic!("node is not a struct: {field:?}");
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["_id", "_label", "id", "name", "age"]);
}

#[tokio::test]
async fn sql_sees_the_same_tables_and_writes() {
    let db = people().await;
    assert_eq!(
        query(
            &db,
            "SELECT a.name, b.name FROM KNOWS k JOIN Person a ON k.src = a.id JOIN Person b ON k.dst = b.id ORDER BY k.since"
        )
        .await,
        s(&[&["Ann", "Bob"], &["Bob", "Cy"], &["Ann", "Cy"]])
    );
    db.execute("UPDATE Person SET age = age + 1 WHERE name = 'Ann'")
        .await
        .unwrap();
    db.execute("DELETE FROM KNOWS WHERE since = 2003")
        .await
        .unwrap();
    assert_eq!(
        query(
            &db,
            "MATCH (a:Person {name: 'Ann'})-[:KNOWS]->(b) RETURN a.age, b.name"
        )
        .await,
        s(&[&["31", "Bob"]])
    );
    let results = db.execute("SELECT count(*) FROM Person").await.unwrap();
    assert_eq!(results[0].language, Language::Sql);
}

#[tokio::test]
async fn set_delete_and_detach_delete() {
    let db = people().await;
    db.execute("MATCH (p:Person {name: 'Cy'}) SET p.age = 51")
        .await
        .unwrap();
    assert_eq!(
        query(&db, "MATCH (p:Person {name: 'Cy'}) RETURN p.age").await,
        s(&[&["51"]])
    );
    let err = db
        .execute("MATCH (p:Person {name: 'Bob'}) DELETE p")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Execution, "{err}");
    db.execute("MATCH (p:Person {name: 'Bob'}) DETACH DELETE p")
        .await
        .unwrap();
    assert_eq!(
        sorted(query(&db, "MATCH (a:Person)-[:KNOWS]->(b) RETURN a.name, b.name").await),
        s(&[&["Ann", "Cy"]])
    );
    assert_eq!(
        query(&db, "MATCH (p:Person) RETURN count(*)").await,
        s(&[&["2"]])
    );
}

#[tokio::test]
async fn time_travel_reads_an_earlier_snapshot() {
    let db = people().await;
    let snaps = query(
        &db,
        "SELECT snapshot_id FROM system.snapshots WHERE table_name = 'Person' ORDER BY committed_at",
    )
    .await;
    let first = &snaps[0][0];
    assert_eq!(
        query(
            &db,
            &format!("AT SNAPSHOT {first} MATCH (p:Person) RETURN count(*)")
        )
        .await,
        s(&[&["1"]])
    );
    assert_eq!(
        query(&db, "MATCH (p:Person) RETURN count(*)").await,
        s(&[&["3"]])
    );
}

#[tokio::test]
async fn errors_say_whose_fault_with_a_position() {
    let db = people().await;
    let err = db.execute("MATCH (a:Person) RETRUN a").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Syntax);
    assert_eq!(err.position.map(|p| p.0), Some(1));
    // openCypher: an unknown label matches nothing, it is not an error.
    let none = db.execute("MATCH (a:Nope) RETURN a").await.unwrap();
    assert_eq!(none[0].num_rows(), 0);
    let err = db
        .execute("MATCH (a:Person)\n RETURN a.name, count(*) + a.age")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Plan, "{err}");
    let err = db.execute("MATCH (a:Person) RETURN zz").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Plan, "{err}");
    assert_eq!(err.position, Some((1, 25)), "{err}");
    let err = db
        .execute("SELECT 1;\nMATCH (a:Person) RETURN b")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Plan, "{err}");
    assert_eq!(err.position.map(|p| p.0), Some(2), "{err}");
    let err = db
        .execute("CREATE (:Person {id: 1, name: 'dup'})")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Execution, "{err}");
}

#[tokio::test]
async fn label_less_patterns_range_over_every_label() {
    let db = people().await;
    // (x) has no label: it can be a Person or a City, whatever the relationship allows.
    assert_eq!(
        sorted(
            query(
                &db,
                "MATCH (a:Person {name: 'Ann'})-->(x) RETURN labels(x), x.name"
            )
            .await
        ),
        s(&[
            &["[City]", "Oslo"],
            &["[Person]", "Bob"],
            &["[Person]", "Cy"]
        ])
    );
    assert_eq!(query(&db, "MATCH (n) RETURN count(*)").await, s(&[&["4"]]));
    assert_eq!(
        sorted(query(&db, "MATCH ()-[r]->(:City) RETURN type(r), count(*)").await),
        s(&[&["LIVES_IN", "2"]])
    );
    assert_eq!(
        query(&db, "MATCH (n) WHERE n:City RETURN n.name").await,
        s(&[&["Oslo"]])
    );
}

#[tokio::test]
async fn create_evolves_the_schema() {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(
        "CREATE (:Lang {name: 'Rust', year: 2015})-[:INFLUENCED_BY {how: 'types'}]->(:Lang {name: 'OCaml'});
         CREATE ({note: 'no label'});
         MATCH (r:Lang {name: 'Rust'}) CREATE (r)-[:MENTIONED_IN]->({note: 'doc'});
         CREATE (:Lang {name: 'Zig', paradigm: 'imperative'})",
    )
    .await
    .unwrap();
    assert_eq!(
        query(
            &db,
            "MATCH (a:Lang)-[r:INFLUENCED_BY]->(b) RETURN a.name, r.how, b.name, b.year"
        )
        .await,
        s(&[&["Rust", "types", "OCaml", "NULL"]])
    );
    assert_eq!(
        sorted(
            query(
                &db,
                "MATCH (n) WHERE n.note IS NOT NULL RETURN n.note, labels(n)"
            )
            .await
        ),
        s(&[&["doc", "[]"], &["no label", "[]"]])
    );
    assert_eq!(
        query(
            &db,
            "MATCH (:Lang {name: 'Rust'})-->(x) WHERE x.note IS NOT NULL RETURN x.note"
        )
        .await,
        s(&[&["doc"]])
    );
    assert_eq!(
        query(
            &db,
            "MATCH (l:Lang) WHERE l.paradigm IS NOT NULL RETURN l.name"
        )
        .await,
        s(&[&["Zig"]])
    );
    // Generated keys stay out of node values.
    let r = db
        .execute("MATCH (l:Lang {name: 'Zig'}) RETURN l")
        .await
        .unwrap();
    let names: Vec<String> = match r[0].schema.field(0).data_type() {
        arrow::datatypes::DataType::Struct(f) => f.iter().map(|f| f.name().clone()).collect(),
        other => panic!("{other}"),
    };
    assert_eq!(names, ["_id", "_label", "name", "year", "paradigm"]);
}

#[tokio::test]
async fn clauses_after_writes_see_the_written_values() {
    let db = people().await;
    assert_eq!(
        query(
            &db,
            "CREATE (n:Person {id: 10, name: 'Dee'}) RETURN n.name, labels(n)"
        )
        .await,
        s(&[&["Dee", "[Person]"]])
    );
    assert_eq!(
        query(&db, "MATCH (p:Person) WHERE p.age > 35 SET p.age = p.age + 1 RETURN p.name, p.age ORDER BY p.name").await,
        s(&[&["Bob", "41"], &["Cy", "51"]])
    );
    assert_eq!(
        query(
            &db,
            "UNWIND [1, 2, 3] AS i CREATE (:Tally {i: i}) WITH count(*) AS n RETURN n"
        )
        .await,
        s(&[&["3"]])
    );
    assert_eq!(
        query(&db, "MATCH (t:Tally) RETURN sum(t.i)").await,
        s(&[&["6"]])
    );
    assert_eq!(
        query(&db, "MATCH (p:Person {name: 'Bob'}) RETURN p.age").await,
        s(&[&["41"]])
    );
}

#[tokio::test]
async fn explain_shows_graph_operators() {
    let db = people().await;
    let results = db
        .execute("EXPLAIN MATCH (a:Person)-[:KNOWS]->(b:Person) RETURN b.name")
        .await
        .unwrap();
    let text = rows(&results[0]).concat().join("\n");
    assert!(text.contains("GraphExpand"), "{text}");
    assert!(text.contains("NodeScan"), "{text}");
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
        db.execute(
            "CREATE NODE TABLE T (id BIGINT PRIMARY KEY, v VARCHAR); CREATE (:T {id: 1, v: 'x'})",
        )
        .await
        .unwrap();
        db.shutdown().await;
    }
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    assert_eq!(
        query(&db, "MATCH (t:T) RETURN t.id, t.v").await,
        s(&[&["1", "x"]])
    );
}

/// A query vector passed as a parameter is checked like a literal: a null one and one of the
/// wrong length are the data's fault, at the vector's position, and nothing panics.
#[tokio::test]
async fn vector_parameters_are_checked() {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(
        "CREATE NODE TABLE Doc (id BIGINT PRIMARY KEY, emb VECTOR(2)); \
         CREATE (:Doc {id: 1, emb: [1.0, 0.0]})",
    )
    .await
    .unwrap();
    let text = "MATCH (d:Doc) VECTOR SIMILAR TO $q LIMIT 1 RETURN d.id";
    let run = |q: serde_json::Value| {
        let db = db.clone();
        async move {
            db.execute_with_params(text, &std::collections::HashMap::from([("q".into(), q)]))
                .await
        }
    };
    let err = run(serde_json::Value::Null).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Execution, "{err}");
    assert!(
        err.to_string().contains("the query vector is null"),
        "{err}"
    );
    assert_eq!(err.position, Some((1, 33)), "{err}");
    let err = run(serde_json::json!([1.0, 0.0, 0.0])).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Execution, "{err}");
    assert!(
        err.to_string()
            .contains("the query vector has 3 dimensions"),
        "{err}"
    );
    let ok = run(serde_json::json!([0.0, 1.0])).await.unwrap();
    assert_eq!(ok[0].batches[0].num_rows(), 1);
}
