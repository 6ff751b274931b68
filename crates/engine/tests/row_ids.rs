//! Stable row ids: `id(n)` and `id(r)` stay with their element through rewrites of its data
//! file, other writes, restarts and compaction, and are never handed out twice.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use contextdb_engine::{Database, DbConfig};

const SCHEMA: &str = "
    CREATE NODE TABLE Author (id BIGINT PRIMARY KEY, name VARCHAR);
    CREATE NODE TABLE Book (id BIGINT PRIMARY KEY, title VARCHAR);
    CREATE EDGE TABLE WROTE (FROM Author TO Book, year BIGINT);
    UNWIND range(1, 50) AS i CREATE (:Author {id: i, name: 'a' + toString(i)});
    UNWIND range(1, 200) AS i CREATE (:Book {id: i, title: 'b' + toString(i)});
    MATCH (a:Author), (b:Book) WHERE b.id % 50 = a.id % 50 CREATE (a)-[:WROTE {year: b.id}]->(b);
";

/// Rows of a two-column integer result as (first, second) pairs.
async fn pairs(db: &Database, text: &str) -> Vec<(i64, Option<i64>)> {
    let results = db
        .execute(text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let mut out = Vec::new();
    for batch in &results.last().unwrap().batches {
        let a = arrow::compute::cast(batch.column(0), &DataType::Int64).unwrap();
        let b = arrow::compute::cast(batch.column(1), &DataType::Int64).unwrap();
        let (a, b) = (a.as_primitive::<Int64Type>(), b.as_primitive::<Int64Type>());
        for i in 0..batch.num_rows() {
            out.push((a.value(i), b.is_valid(i).then(|| b.value(i))));
        }
    }
    out
}

/// key → id for `MATCH (x:Label) RETURN x.id, id(x)`.
async fn ids_of(db: &Database, label: &str) -> BTreeMap<i64, i64> {
    pairs(db, &format!("MATCH (x:{label}) RETURN x.id, id(x)"))
        .await
        .into_iter()
        .map(|(k, id)| (k, id.expect("every node has an id")))
        .collect()
}

/// year → id for every WROTE relationship (years are unique).
async fn rel_ids(db: &Database) -> BTreeMap<i64, i64> {
    pairs(db, "MATCH ()-[r:WROTE]->() RETURN r.year, id(r)")
        .await
        .into_iter()
        .map(|(k, id)| (k, id.expect("every relationship has an id")))
        .collect()
}

#[tokio::test]
async fn ids_stay_through_updates_deletes_other_writes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    let books = ids_of(&db, "Book").await;
    let authors = ids_of(&db, "Author").await;
    let wrote = rel_ids(&db).await;
    assert_eq!((books.len(), authors.len(), wrote.len()), (200, 50, 200));

    // Node ids are unique across labels, relationship ids across relationships.
    let all: BTreeSet<i64> = books.values().chain(authors.values()).copied().collect();
    assert_eq!(all.len(), 250);
    assert_eq!(wrote.values().collect::<BTreeSet<_>>().len(), 200);

    // Rewrites of the files holding them (ContextQL SET, SQL UPDATE, a delete nearby), writes
    // to other tables, and a created node numbered before nothing else changes.
    db.execute(
        "MATCH (b:Book {id: 7}) SET b.title = 'changed';
         MATCH (b:Book {id: 8}) DETACH DELETE b;
         CREATE (:Author {id: 51, name: 'new'});
         MATCH (a:Author {id: 3})-[r:WROTE]->(b:Book {id: 53}) SET r.year = 1053",
    )
    .await
    .unwrap();
    db.execute("UPDATE Book SET title = 'sql' WHERE id = 9")
        .await
        .unwrap();
    let mut expected_books = books.clone();
    expected_books.remove(&8);
    assert_eq!(ids_of(&db, "Book").await, expected_books);
    let after = ids_of(&db, "Author").await;
    assert_eq!(after.len(), 51);
    assert!(authors.iter().all(|(k, id)| after[k] == *id));
    let mut expected_wrote = wrote.clone();
    expected_wrote.remove(&8);
    let moved = expected_wrote.remove(&53).unwrap();
    expected_wrote.insert(1053, moved);
    assert_eq!(rel_ids(&db).await, expected_wrote);
    db.shutdown().await;

    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    assert_eq!(ids_of(&db, "Book").await, expected_books);
    assert_eq!(rel_ids(&db).await, expected_wrote);
    db.shutdown().await;
}

#[tokio::test]
async fn ids_are_never_handed_out_twice() {
    let db = Database::open(DbConfig::memory()).await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    let mut seen: BTreeSet<i64> = ids_of(&db, "Book").await.into_values().collect();
    seen.extend(ids_of(&db, "Author").await.into_values());

    // The newest node goes, and a new one comes: it does not get the id that was freed.
    db.execute("MATCH (b:Book {id: 200}) DETACH DELETE b; CREATE (:Book {id: 201})")
        .await
        .unwrap();
    let created = ids_of(&db, "Book").await[&201];
    assert!(seen.insert(created), "id {created} handed out again");

    // A created node's id is the one later statements see, also when the statement that
    // created it reads it back.
    let returned = pairs(&db, "CREATE (b:Book {id: 202}) RETURN b.id, id(b)").await;
    assert_eq!(returned[0].1, Some(ids_of(&db, "Book").await[&202]));
    assert!(seen.insert(returned[0].1.unwrap()));

    // A table dropped and created again under its name numbers its rows anew.
    db.execute(
        "DROP EDGE TABLE WROTE;
         DROP NODE TABLE Book;
         CREATE NODE TABLE Book (id BIGINT PRIMARY KEY, title VARCHAR);
         UNWIND range(1, 10) AS i CREATE (:Book {id: i})",
    )
    .await
    .unwrap();
    for id in ids_of(&db, "Book").await.into_values() {
        assert!(
            seen.insert(id),
            "id {id} of a dropped table handed out again"
        );
    }
    db.shutdown().await;
}

#[tokio::test]
async fn every_way_in_gives_ids_and_sql_never_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("books.csv");
    std::fs::write(&csv, "id,title\n301,x\n302,y\n").unwrap();
    let db = Database::open(DbConfig::memory().with_file_root(dir.path()))
        .await
        .unwrap();
    db.execute(SCHEMA).await.unwrap();
    db.execute(&format!("COPY Book FROM '{}'", csv.display()))
        .await
        .unwrap();
    db.execute("INSERT INTO Book VALUES (303, 'sql')")
        .await
        .unwrap();
    // A label without a declared table (schema evolution gives it a hidden key).
    db.execute("CREATE (:Thing {id: 1}), (:Thing {id: 2})")
        .await
        .unwrap();
    let books = ids_of(&db, "Book").await;
    assert_eq!(books.len(), 203);
    let things = ids_of(&db, "Thing").await;
    assert_eq!(things.len(), 2);
    let all: BTreeSet<i64> = books.values().chain(things.values()).copied().collect();
    assert_eq!(all.len(), 205);

    // SQL tables have ids too, and no SQL statement sees the hidden column.
    let results = db.execute("SELECT * FROM Book LIMIT 1").await.unwrap();
    let names: Vec<String> = results[0]
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "title"]);
    let err = db
        .execute("CREATE TABLE t (__id BIGINT)")
        .await
        .expect_err("a reserved column name");
    assert!(err.message.contains("reserved"), "{err}");
    let node = db
        .execute("MATCH (b:Book {id: 301}) RETURN b")
        .await
        .unwrap();
    let batch = &node[0].batches[0];
    let value = batch.column(0).as_struct();
    let id = value.column_by_name("_id").unwrap();
    let id = arrow::compute::cast(id, &DataType::Int64).unwrap();
    assert_eq!(id.as_primitive::<Int64Type>().value(0), books[&301]);
    assert!(value.column_by_name("__id").is_none());
    db.shutdown().await;
}
