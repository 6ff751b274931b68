//! Engine foundations: what a statement loads, the memory budget, streamed results, COPY's
//! file roots and planning on a small thread stack.

use std::collections::HashMap;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use contextdb_engine::{Database, DbConfig, ErrorKind, SNAPSHOTS_PER_TABLE};

/// Two node tables with a relationship type between them, and a third table nobody reads.
const SCHEMA: &str = "
    CREATE NODE TABLE Author (id BIGINT PRIMARY KEY, name VARCHAR);
    CREATE NODE TABLE Book (id BIGINT PRIMARY KEY, title VARCHAR, blurb VARCHAR);
    CREATE EDGE TABLE WROTE (FROM Author TO Book);
    CREATE NODE TABLE Unread (id BIGINT PRIMARY KEY);
    CREATE (:Author {id: 1, name: 'Ann'})-[:WROTE]->(:Book {id: 10, title: 'A', blurb: 'x'});
    CREATE (:Unread {id: 1});
    UNWIND range(11, 2000) AS i
      CREATE (:Book {id: i, title: 'b' + toString(i), blurb: 'a rather long blurb ' + toString(i)});
";

async fn count(db: &Database, text: &str) -> i64 {
    let results = db
        .execute(text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let batch = &results.last().unwrap().batches[0];
    let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Int64).unwrap();
    column.as_primitive::<Int64Type>().value(0)
}

async fn filled(dir: &std::path::Path) {
    let db = Database::open(DbConfig::local(dir)).await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    db.shutdown().await;
}

#[tokio::test]
async fn a_statement_loads_only_the_tables_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path()).await;

    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    assert!(db.hot_tier().tables.is_empty(), "{:?}", db.hot_tier());
    assert_eq!(count(&db, "MATCH (a:Author) RETURN count(*)").await, 1);
    assert_eq!(db.hot_tier().tables, vec!["Author".to_string()]);

    // An expansion reads the edge table and both of its endpoint labels, nothing else.
    assert_eq!(
        count(
            &db,
            "MATCH (a:Author {name: 'Ann'})-[:WROTE]->(b) RETURN count(b)"
        )
        .await,
        1
    );
    assert_eq!(db.hot_tier().tables, vec!["Author", "Book", "WROTE"]);
    db.shutdown().await;

    // SQL streams a table whose files are large for the hot tier (more than 1/256 of its
    // budget: 8 KiB here) from its data files and loads nothing into the tier...
    let db = Database::open(DbConfig::local(dir.path()).with_cache_bytes(2 << 20))
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM Book WHERE id >= 10").await,
        1991
    );
    assert!(db.hot_tier().tables.is_empty(), "{:?}", db.hot_tier());
    let explain = db
        .execute("EXPLAIN SELECT title FROM Book WHERE id = 10")
        .await
        .unwrap();
    let text = format!("{:?}", explain[0].batches);
    assert!(text.contains("IcebergFileScan"), "{text}");
    // ...loads a small one, where later statements find it...
    assert_eq!(
        count(&db, "SELECT count(*) FROM Unread WHERE id > 0").await,
        1
    );
    assert_eq!(db.hot_tier().tables, vec!["Unread".to_string()]);
    // ...and reads a large one from memory when a graph statement has put it there.
    assert_eq!(count(&db, "MATCH (b:Book) RETURN count(*)").await, 1991);
    let explain = db
        .execute("EXPLAIN SELECT title FROM Book WHERE id = 10")
        .await
        .unwrap();
    let text = format!("{:?}", explain[0].batches);
    assert!(text.contains("DataSourceExec"), "{text}");
    assert!(!text.contains("IcebergFileScan"), "{text}");
    db.shutdown().await;

    // A writer loads what it reads and writes: a CREATE its label...
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    db.execute("CREATE (:Unread {id: 2})").await.unwrap();
    assert_eq!(db.hot_tier().tables, vec!["Unread".to_string()]);
    // ...a delete also the relationships that may hang off the deleted nodes.
    db.execute("MATCH (b:Book {id: 11}) DETACH DELETE b")
        .await
        .unwrap();
    assert_eq!(db.hot_tier().tables, vec!["Book", "Unread", "WROTE"]);
    // A SQL write loads the table it changes.
    db.execute("UPDATE Author SET name = 'Anne' WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        db.hot_tier().tables,
        vec!["Author", "Book", "Unread", "WROTE"]
    );
    db.shutdown().await;
}

#[tokio::test]
async fn a_statement_over_the_memory_budget_fails_and_the_database_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path()).await;

    // Room for the small tables, not for 2,000 books.
    let mut config = DbConfig::local(dir.path());
    config.cache_bytes = 64 * 1024;
    let db = Database::open(config).await.unwrap();
    for text in [
        "MATCH (b:Book) RETURN count(*)",
        "MATCH (a:Author)-[:WROTE]->(b:Book) RETURN count(*)",
    ] {
        let e = db.execute(text).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Resource, "{text}: {e}");
        assert!(e.message.contains("budget"), "{e}");
    }
    // SQL streams the table from its files in bounded memory instead.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM Book WHERE blurb LIKE 'a rather%'"
        )
        .await,
        1990
    );
    // The database goes on: statements within the budget still answer.
    assert_eq!(count(&db, "MATCH (a:Author) RETURN count(*)").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM Unread").await, 1);
    assert!(db.hot_tier().used_bytes <= db.hot_tier().budget_bytes);
    db.shutdown().await;
}

#[tokio::test]
async fn a_statement_over_its_memory_limit_fails_alone() {
    let config = DbConfig {
        statement_memory_bytes: 8 << 20,
        ..DbConfig::memory()
    };
    let db = Database::open(config).await.unwrap();
    // A hash join's build side and a distinct count each need far more than 8 MiB.
    let join = "SELECT count(*) FROM generate_series(1, 3000000) a \
                JOIN generate_series(1, 3000000) b ON a.value = b.value";
    let distinct = "UNWIND range(1, 3000000) AS x RETURN count(DISTINCT x)";
    let small = "UNWIND range(1, 1000) AS x RETURN count(DISTINCT x)";
    for text in [join, distinct] {
        // Run beside a small statement: it fails alone, the other answers.
        let (big, other) = tokio::join!(db.execute(text), db.execute(small));
        let e = big.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Resource, "{text}: {e}");
        assert!(e.message.contains("--statement-memory"), "{e}");
        let other = other.unwrap();
        assert_eq!(
            other[0].batches[0]
                .column(0)
                .as_primitive::<Int64Type>()
                .value(0),
            1000
        );
    }
    // Each statement has a limit of its own: the pool of a failed one is gone.
    assert_eq!(count(&db, small).await, 1000);
    assert_eq!(
        count(&db, "SELECT count(*) FROM generate_series(1, 100000)").await,
        100000
    );
    db.shutdown().await;
}

#[tokio::test]
async fn results_stream_batch_by_batch_with_the_schema_first() {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(
        "CREATE NODE TABLE N (id BIGINT PRIMARY KEY);
         UNWIND range(1, 30000) AS i CREATE (:N {id: i})",
    )
    .await
    .unwrap();
    let mut stream = db
        .query("MATCH (n:N) RETURN n.id AS i", &HashMap::new())
        .await
        .unwrap();
    assert_eq!(stream.schema().field(0).name(), "i");
    let mut batches = 0;
    let mut rows = 0;
    while let Some(batch) = stream.next().await.unwrap() {
        batches += 1;
        rows += batch.num_rows();
    }
    assert_eq!(rows, 30_000);
    assert!(batches > 1, "one batch of {rows} rows: not streamed");

    // SQL queries stream too.
    let mut stream = db
        .query("SELECT * FROM generate_series(1, 100000)", &HashMap::new())
        .await
        .unwrap();
    let mut batches = 0;
    while stream.next().await.unwrap().is_some() {
        batches += 1;
    }
    assert!(batches > 1);
    db.shutdown().await;
}

#[tokio::test]
async fn where_equalities_find_the_start_node_by_index() {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    let results = db
        .execute("EXPLAIN MATCH (a:Author)-[:WROTE]->(b:Book) WHERE b.title = 'A' RETURN a.name")
        .await
        .unwrap();
    let text = format!("{:?}", results[0].batches);
    assert!(text.contains("lookup title = A"), "{text}");
    assert_eq!(
        count(
            &db,
            "MATCH (a:Author)-[:WROTE]->(b:Book) WHERE b.title = 'A' AND a.id = 1 RETURN count(*)"
        )
        .await,
        1
    );
    // The filter still applies where the index cannot answer (a float never matches a key).
    assert_eq!(
        count(
            &db,
            "MATCH (b:Book) WHERE 'A' = b.title OR b.id = 11 RETURN count(*)"
        )
        .await,
        2
    );
    db.shutdown().await;
}

#[tokio::test]
async fn copy_reaches_only_files_under_the_file_roots() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    for dir in [root.path(), outside.path()] {
        std::fs::write(dir.join("t.csv"), "id,name\n1,a\n2,b\n").unwrap();
    }
    let db = Database::open(DbConfig::memory().with_file_root(root.path()))
        .await
        .unwrap();
    db.execute("CREATE NODE TABLE T (id BIGINT PRIMARY KEY, name VARCHAR)")
        .await
        .unwrap();
    let inside = root.path().join("t.csv");
    db.execute(&format!("COPY T FROM '{}'", inside.display()))
        .await
        .unwrap();
    let e = db
        .execute(&format!(
            "COPY T FROM '{}'",
            outside.path().join("t.csv").display()
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Plan, "{e}");
    assert!(e.message.contains("file roots"), "{e}");
    // SQL COPY ... TO writes under a root only.
    db.execute(&format!(
        "COPY (SELECT 1 AS x) TO '{}'",
        root.path().join("out.csv").display()
    ))
    .await
    .unwrap();
    let e = db
        .execute(&format!(
            "COPY (SELECT 1 AS x) TO '{}'",
            outside.path().join("out.csv").display()
        ))
        .await
        .unwrap_err();
    assert!(e.message.contains("file roots"), "{e}");
    assert!(!outside.path().join("out.csv").exists());
    assert_eq!(count(&db, "MATCH (t:T) RETURN count(*)").await, 2);
    db.shutdown().await;
}

/// Statements up to the parser's depth limits, on a thread stack half the size of a tokio
/// worker's, answer or fail with a clean error (the parser checks the stack it has left, the
/// planner refuses expressions deeper than `MAX_PLAN_EXPRESSION_DEPTH`). Nothing overflows.
#[test]
fn deep_statements_run_on_a_small_thread_stack() {
    const SMALL_STACK_BYTES: usize = 1024 * 1024;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(SMALL_STACK_BYTES)
        .enable_all()
        .build()
        .unwrap();
    let sum = |terms: usize| vec!["1"; terms].join(" + ");
    let nested = |depth: usize| format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
    let statements = vec![
        (format!("RETURN {} AS n", sum(200)), Some(200)),
        (format!("RETURN {} AS n", nested(100)), Some(1)),
        (
            format!("RETURN {} AS n", sum(contextql::MAX_EXPRESSION_DEPTH - 10)),
            None,
        ),
        (
            format!("RETURN {} AS n", nested(contextql::MAX_NESTING_DEPTH - 4)),
            None,
        ),
        (
            format!("SELECT {} AS n", sum(contextql::MAX_EXPRESSION_DEPTH - 10)),
            None,
        ),
    ];
    let outcome = std::thread::Builder::new()
        .stack_size(SMALL_STACK_BYTES)
        .spawn(move || {
            runtime.block_on(async move {
                let db = Database::open(DbConfig::memory()).await.unwrap();
                let mut outcomes = Vec::new();
                for (text, expected) in statements {
                    let outcome = db.execute(&text).await;
                    outcomes.push((text.len(), expected, outcome.map(|r| r.len())));
                }
                db.shutdown().await;
                outcomes
            })
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    for (len, expected, outcome) in outcome {
        match (expected, outcome) {
            (_, Ok(results)) => assert_eq!(results, 1),
            (None, Err(e)) => assert!(
                matches!(
                    e.kind,
                    ErrorKind::Syntax | ErrorKind::Plan | ErrorKind::Resource
                ),
                "{len}-byte statement: {e}"
            ),
            (Some(_), Err(e)) => panic!("{len}-byte statement within reach failed: {e}"),
        }
    }
}

#[tokio::test]
async fn time_travel_shows_whole_commits() {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(
        "CREATE NODE TABLE Author (id BIGINT PRIMARY KEY, name VARCHAR);
         CREATE NODE TABLE Book (id BIGINT PRIMARY KEY, title VARCHAR);
         CREATE EDGE TABLE WROTE (FROM Author TO Book);
         CREATE (:Author {id: 1, name: 'Ann'})-[:WROTE]->(:Book {id: 10, title: 'A'})",
    )
    .await
    .unwrap();
    db.execute("CREATE (:Author {id: 2, name: 'Bo'})")
        .await
        .unwrap();
    // Three tables in the first commit, one in the second: two commit times.
    assert_eq!(count(&db, "SELECT count(*) FROM system.snapshots").await, 4);
    assert_eq!(
        count(
            &db,
            "SELECT count(DISTINCT committed_at) FROM system.snapshots"
        )
        .await,
        2
    );
    // The first commit's snapshot of Book shows the Author table as that commit left it.
    let book_snapshot = count(
        &db,
        "SELECT snapshot_id FROM system.snapshots WHERE table_name = 'Book'",
    )
    .await;
    assert_eq!(
        count(
            &db,
            &format!("AT SNAPSHOT {book_snapshot} MATCH (a:Author) RETURN count(*)")
        )
        .await,
        1
    );
    assert_eq!(count(&db, "MATCH (a:Author) RETURN count(*)").await, 2);
    for (at, says) in [
        ("2000-01-01T00:00:00Z", "before the first commit"),
        ("2999-01-01T00:00:00Z", "in the future"),
    ] {
        let e = db
            .execute(&format!(
                "AT TIMESTAMP '{at}' MATCH (a:Author) RETURN count(*)"
            ))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Plan, "{e}");
        assert!(e.message.contains(says), "{e}");
    }
    db.shutdown().await;
}

/// Appends extend the indexes and adjacency of the snapshot before them; what they reuse must
/// still answer as a rebuild would.
#[tokio::test]
async fn appends_extend_indexes_and_adjacency_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let edges = dir.path().join("e.csv");
    // Edge 1 -> 3 names a node that does not exist yet.
    std::fs::write(&edges, "src,dst\n1,2\n1,3\n").unwrap();
    let db = Database::open(DbConfig::memory().with_file_root(dir.path()))
        .await
        .unwrap();
    db.execute(&format!(
        "CREATE NODE TABLE P (id BIGINT PRIMARY KEY, tag VARCHAR);
         CREATE EDGE TABLE E (FROM P TO P);
         CREATE (:P {{id: 1, tag: 'a'}}), (:P {{id: 2, tag: 'a'}});
         COPY E FROM '{}'",
        edges.display()
    ))
    .await
    .unwrap();
    let out = "MATCH (:P {id: 1})-[:E]->(b) RETURN count(b)";
    assert_eq!(count(&db, out).await, 1);
    for i in 3..40 {
        // Each statement reads (building indexes and adjacency), then one node is appended.
        assert_eq!(
            count(&db, "MATCH (p:P {tag: 'a'}) RETURN count(*)").await,
            i - 1
        );
        db.execute(&format!("CREATE (:P {{id: {i}, tag: 'a'}})"))
            .await
            .unwrap();
        // Node 3 connects the dangling edge as soon as it exists.
        assert_eq!(count(&db, out).await, 2, "after creating {i}");
        let dup = db.execute(&format!("CREATE (:P {{id: {i}}})")).await;
        assert!(dup.is_err(), "the key index knows {i}");
    }
    assert_eq!(
        count(&db, "MATCH (p:P {tag: 'a'}) RETURN count(*)").await,
        39
    );
    db.shutdown().await;
}

/// A stream of commits leaves a snapshot behind for each; the tier keeps a few per table and
/// counts what they share once, so neither its bookkeeping nor its reported memory grows
/// with the number of commits.
#[tokio::test]
async fn the_hot_tier_keeps_few_snapshots_and_counts_shared_rows_once() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path()).await;
    // Without compaction every snapshot below shares all but its newest data file.
    let config = DbConfig {
        auto_compact: false,
        ..DbConfig::local(dir.path())
    };
    let db = Database::open(config).await.unwrap();
    let books = "MATCH (b:Book) RETURN count(*)";
    assert_eq!(count(&db, books).await, 1991);
    let create = |i: usize| {
        format!(
            "CREATE (:Book {{id: {}, title: 't', blurb: 'b'}})",
            5000 + i
        )
    };
    db.execute(&create(0)).await.unwrap();
    assert_eq!(count(&db, books).await, 1992);
    let two = db.hot_tier();
    assert_eq!(two.snapshots, 2, "{two:?}");
    for i in 1..=3 * SNAPSHOTS_PER_TABLE {
        db.execute(&create(i)).await.unwrap();
        assert_eq!(count(&db, books).await, 1992 + i as i64);
    }
    let many = db.hot_tier();
    assert_eq!(many.snapshots, SNAPSHOTS_PER_TABLE, "{many:?}");
    assert_eq!(many.tables, vec!["Book"]);
    // Rows, ids and the key index's base are shared: the tier holds little more than one
    // snapshot's worth.
    assert!(
        many.used_bytes < two.used_bytes + two.used_bytes / 4,
        "{} snapshots count {} bytes, two counted {}",
        many.snapshots,
        many.used_bytes,
        two.used_bytes
    );
    // A time-travel read of a snapshot no longer held loads it again.
    let first = count(
        &db,
        "SELECT snapshot_id FROM system.snapshots WHERE table_name = 'Book' \
         ORDER BY committed_at LIMIT 1",
    )
    .await;
    let at_first = format!("AT SNAPSHOT {first} MATCH (b:Book) RETURN count(*)");
    assert_eq!(count(&db, &at_first).await, 1);
    assert_eq!(db.hot_tier().snapshots, SNAPSHOTS_PER_TABLE);
    db.shutdown().await;
}

#[tokio::test]
async fn updates_rewrite_files_in_place_and_keep_indexes_and_adjacency() {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    db.execute("MATCH (a:Author {id: 1}), (b:Book) WHERE b.id % 10 = 0 CREATE (a)-[:WROTE]->(b)")
        .await
        .unwrap();
    // Book 10 twice: once from SCHEMA, once from here.
    let hop = "MATCH (a:Author {name: 'Ann'})-[:WROTE]->(b:Book) RETURN count(b)";
    assert_eq!(count(&db, hop).await, 201);
    assert_eq!(
        count(&db, "MATCH (b:Book {title: 'b500'}) RETURN count(*)").await,
        1
    );
    let built = db.hot_tier();
    let rebuilt = |db: &Database| {
        let now = db.hot_tier();
        (
            now.key_index_builds - built.key_index_builds,
            now.adjacency_builds - built.adjacency_builds,
        )
    };

    // Book 10 is the only row of Book's first data file. A one-row SET rewrites that file in
    // place (appending the new file would move every row after it): positions, the key index
    // and the adjacency stay, and the title index holds (its column did not change).
    db.execute("MATCH (b:Book {id: 10}) SET b.blurb = 'changed'")
        .await
        .unwrap();
    assert_eq!(count(&db, hop).await, 201);
    assert_eq!(
        count(&db, "MATCH (b:Book {title: 'b500'}) RETURN count(*)").await,
        1
    );
    assert_eq!(rebuilt(&db), (0, 0), "{:?}", db.hot_tier());
    // SQL's UPDATE goes the same way.
    db.execute("UPDATE Book SET blurb = 'sql' WHERE id = 10")
        .await
        .unwrap();
    assert_eq!(count(&db, hop).await, 201);
    assert_eq!(
        count(&db, "MATCH (b:Book) WHERE b.blurb = 'sql' RETURN count(*)").await,
        1
    );
    assert_eq!(rebuilt(&db), (0, 0), "{:?}", db.hot_tier());

    // Changing an indexed property: the lookup finds the new value, not the old.
    db.execute("MATCH (b:Book {id: 10}) SET b.title = 'renamed'")
        .await
        .unwrap();
    assert_eq!(
        count(&db, "MATCH (b:Book {title: 'A'}) RETURN count(*)").await,
        0
    );
    assert_eq!(
        count(
            &db,
            "MATCH (a:Author)-[:WROTE]->(b:Book {title: 'renamed'}) RETURN count(*)"
        )
        .await,
        2
    );
    assert_eq!(rebuilt(&db).1, 0);

    // A delete moves positions: what was built over them is built again, and answers hold.
    db.execute("MATCH (b:Book {id: 20}) DETACH DELETE b")
        .await
        .unwrap();
    assert_eq!(count(&db, hop).await, 200);
    assert!(rebuilt(&db).1 > 0);
    db.shutdown().await;
}
