//! SQL over Iceberg tables through DataFusion's interfaces: scans that prune data files by
//! their statistics and stream them, served from the hot tier when it holds the table, and
//! writes through the DML hooks.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use contextdb_engine::{Database, DbConfig};

async fn ints(db: &Database, text: &str) -> Vec<Option<i64>> {
    let results = db
        .execute(text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let mut out = Vec::new();
    for batch in &results.last().unwrap().batches {
        let column = arrow::compute::cast(batch.column(0), &DataType::Int64).unwrap();
        out.extend(column.as_primitive::<Int64Type>().iter());
    }
    out
}

async fn explain(db: &Database, text: &str) -> String {
    let results = db
        .execute(&format!("EXPLAIN {text}"))
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let batch = &results[0].batches[0];
    let plans = batch.column(1).as_string::<i32>();
    (0..plans.len())
        .map(|i| plans.value(i).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A hot tier so small that SQL scans stream every table of these tests from its files
/// (a scan loads only tables whose files take at most 1/256 of the budget: 1 KiB here).
fn streaming(dir: &std::path::Path) -> DbConfig {
    DbConfig::local(dir).with_cache_bytes(256 << 10)
}

/// Four commits of 1,000 rows each, with disjoint ranges of `a`: four data files.
async fn four_files(dir: &std::path::Path) {
    let db = Database::open(DbConfig::local(dir)).await.unwrap();
    db.execute("CREATE TABLE t (a BIGINT, b VARCHAR)")
        .await
        .unwrap();
    for part in 0..4 {
        let from = part * 1000;
        db.execute(&format!(
            "INSERT INTO t SELECT value, 'row ' || CAST(value AS VARCHAR) \
             FROM generate_series({from}, {}) AS s(value)",
            from + 999
        ))
        .await
        .unwrap();
    }
    db.shutdown().await;
}

#[tokio::test]
async fn a_filtered_scan_reads_only_the_files_its_filter_can_match() {
    let dir = tempfile::tempdir().unwrap();
    four_files(dir.path()).await;
    let db = Database::open(streaming(dir.path())).await.unwrap();

    let plan = explain(&db, "SELECT b FROM t WHERE a BETWEEN 1500 AND 1600").await;
    assert!(plan.contains("IcebergFileScan: t"), "{plan}");
    assert!(plan.contains("files=1/4"), "{plan}");
    // The scan yields to the scheduler itself: DataFusion needs no CooperativeExec over it.
    let whole = explain(&db, "SELECT * FROM t").await;
    assert!(whole.contains("IcebergFileScan: t"), "{whole}");
    assert!(!whole.contains("CooperativeExec"), "{whole}");
    assert_eq!(
        ints(&db, "SELECT count(*) FROM t WHERE a BETWEEN 1500 AND 1600").await,
        [Some(101)]
    );
    // Every form the statistics can decide, and results equal to an unpruned read.
    for (filter, files, rows) in [
        ("a = 2500", 1, 1),
        ("a >= 3000 OR a < 10", 2, 1010),
        ("a IN (5, 3999)", 2, 2),
        ("NOT (a < 2000)", 2, 2000),
        ("a > 100000", 0, 0),
        ("a IS NULL", 0, 0),
        ("b LIKE 'row 12%' AND a < 1000", 1, 11),
        // Not decidable by statistics: every file is read, DataFusion filters.
        ("a + 1 = 11", 4, 1),
    ] {
        let plan = explain(&db, &format!("SELECT a FROM t WHERE {filter}")).await;
        assert!(
            plan.contains(&format!("files={files}/4")),
            "{filter}: {plan}"
        );
        assert_eq!(
            ints(&db, &format!("SELECT count(*) FROM t WHERE {filter}")).await,
            [Some(rows)],
            "{filter}"
        );
    }
    // Streamed in batches, and a LIMIT stops early.
    assert_eq!(ints(&db, "SELECT a FROM t LIMIT 3").await.len(), 3);
    assert_eq!(ints(&db, "SELECT a FROM t").await.len(), 4000);
    // A count with no filter comes from the files' row counts: no file is read.
    assert_eq!(ints(&db, "SELECT count(*) FROM t").await, [Some(4000)]);
    let plan = explain(&db, "SELECT count(*) FROM t").await;
    assert!(!plan.contains("IcebergFileScan"), "{plan}");
    assert!(db.hot_tier().tables.is_empty(), "{:?}", db.hot_tier());
    db.shutdown().await;
}

#[tokio::test]
async fn files_written_before_a_column_was_added_read_it_as_null() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
        db.execute(
            "CREATE NODE TABLE P (id BIGINT PRIMARY KEY, name VARCHAR);
             CREATE (:P {id: 1, name: 'old'});
             CREATE (:P {id: 2, name: 'new', rank: 7})",
        )
        .await
        .unwrap();
        db.shutdown().await;
    }
    let db = Database::open(streaming(dir.path())).await.unwrap();
    assert!(
        explain(&db, "SELECT id FROM P WHERE rank > 1")
            .await
            .contains("IcebergFileScan")
    );
    assert_eq!(
        ints(&db, "SELECT id FROM P WHERE rank > 1").await,
        [Some(2)]
    );
    assert_eq!(
        ints(&db, "SELECT rank FROM P ORDER BY id").await,
        [None, Some(7)]
    );
    db.shutdown().await;
}

#[tokio::test]
async fn writes_go_through_the_dml_hooks_and_subqueries_select_exactly_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    four_files(dir.path()).await;
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();

    // A plain WHERE reaches the table's hook as a filter DataFusion evaluates.
    let plan = explain(&db, "DELETE FROM t WHERE a < 10").await;
    assert!(
        plan.contains("IcebergWrite: DELETE FROM t WHERE a@0 < 10"),
        "{plan}"
    );
    let plan = explain(&db, "UPDATE t SET b = 'x' WHERE a = 1").await;
    assert!(plan.contains("IcebergWrite: UPDATE t SET b = x"), "{plan}");
    assert!(
        explain(&db, "INSERT INTO t VALUES (1, 'x')")
            .await
            .contains("IcebergWrite: INSERT INTO t")
    );
    assert_eq!(ints(&db, "DELETE FROM t WHERE a < 10").await, [Some(10)]);
    assert_eq!(
        ints(&db, "UPDATE t SET a = a + 10000 WHERE a >= 3990").await,
        [Some(10)]
    );
    assert_eq!(
        ints(&db, "SELECT count(*) FROM t WHERE a > 10000").await,
        [Some(10)]
    );

    // Subqueries: DataFusion 53's hooks would get no filter for these
    // (apache/datafusion#24654); they must touch exactly the rows they select.
    db.execute("CREATE TABLE k (x BIGINT); INSERT INTO k VALUES (20), (21)")
        .await
        .unwrap();
    assert_eq!(
        ints(&db, "DELETE FROM t WHERE a IN (SELECT x FROM k)").await,
        [Some(2)]
    );
    assert_eq!(
        ints(
            &db,
            "UPDATE t SET b = 'seen' WHERE EXISTS (SELECT 1 FROM k WHERE k.x + 2 = t.a)"
        )
        .await,
        [Some(2)]
    );
    assert_eq!(ints(&db, "DELETE FROM t WHERE 1 = 0").await, [Some(0)]);
    assert_eq!(ints(&db, "SELECT count(*) FROM t").await, [Some(3988)]);
    assert_eq!(
        ints(&db, "SELECT a FROM t WHERE b = 'seen' ORDER BY a").await,
        [Some(22), Some(23)]
    );
    db.shutdown().await;

    // Everything committed reads back after a restart.
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    assert_eq!(ints(&db, "SELECT count(*) FROM t").await, [Some(3988)]);
    assert_eq!(ints(&db, "SELECT min(a) FROM t").await, [Some(10)]);
    db.shutdown().await;
}

/// Column defaults live in the table's Iceberg schema and views in the catalog: a restarted
/// database still applies and plans them; a replaced table stays replaced, and a failed
/// CREATE TABLE AS leaves nothing to find after a restart either.
#[tokio::test]
async fn defaults_views_and_create_table_as_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    db.execute("CREATE TABLE d (a BIGINT, b BIGINT DEFAULT 500) AS VALUES (1, 1)")
        .await
        .unwrap();
    // Defaults of types written in the metadata file as strings and hex.
    db.execute(
        "CREATE TABLE d3 (a BIGINT, m DECIMAL(10, 2) DEFAULT 2.25, t TIME DEFAULT '00:00:07', \
         b BYTEA DEFAULT X'0102')",
    )
    .await
    .unwrap();
    db.execute("CREATE TABLE broken AS SELECT 1 / (column1 - 1) AS x FROM (VALUES (1))")
        .await
        .unwrap_err();
    db.execute("CREATE VIEW dv AS SELECT a * 10 AS a10 FROM d")
        .await
        .unwrap();
    db.execute("CREATE OR REPLACE TABLE gone (x INT) AS VALUES (1)")
        .await
        .unwrap();
    db.execute("CREATE OR REPLACE TABLE gone (y INT) AS VALUES (2)")
        .await
        .unwrap();
    db.shutdown().await;

    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    db.execute("INSERT INTO d(a) VALUES (2)").await.unwrap();
    db.execute("CREATE NODE TABLE N (id BIGINT PRIMARY KEY, b BIGINT DEFAULT 7)")
        .await
        .unwrap();
    db.shutdown().await;

    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    db.execute("CREATE (:N {id: 1})").await.unwrap();
    assert_eq!(
        ints(&db, "SELECT b FROM d ORDER BY a").await,
        vec![Some(1), Some(500)]
    );
    assert_eq!(ints(&db, "MATCH (n:N) RETURN n.b").await, vec![Some(7)]);
    assert_eq!(
        ints(&db, "SELECT a10 FROM dv ORDER BY a10").await,
        vec![Some(10), Some(20)]
    );
    assert_eq!(ints(&db, "SELECT y FROM gone").await, vec![Some(2)]);
    db.execute("INSERT INTO d3(a) VALUES (1)").await.unwrap();
    assert_eq!(
        ints(&db, "SELECT CAST(m * 100 AS BIGINT) FROM d3").await,
        vec![Some(225)]
    );
    assert_eq!(
        ints(&db, "SELECT CAST(date_part('second', t) AS BIGINT) FROM d3").await,
        vec![Some(7)]
    );
    assert_eq!(
        ints(&db, "SELECT CAST(b = X'0102' AS BIGINT) FROM d3").await,
        vec![Some(1)]
    );
    assert_eq!(
        ints(
            &db,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'broken'"
        )
        .await,
        vec![Some(0)]
    );
    db.shutdown().await;
}

/// A schema and its tables are catalog entries: they survive a restart, and so does their
/// removal.
#[tokio::test]
async fn schemas_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    db.execute("CREATE SCHEMA s; CREATE TABLE s.t (a BIGINT); INSERT INTO s.t VALUES (7)")
        .await
        .unwrap();
    db.execute("CREATE TABLE t (a BIGINT) AS VALUES (1)")
        .await
        .unwrap();
    db.shutdown().await;

    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    assert_eq!(ints(&db, "SELECT a FROM s.t").await, vec![Some(7)]);
    assert_eq!(ints(&db, "SELECT a FROM t").await, vec![Some(1)]);
    db.execute("INSERT INTO s.t VALUES (8)").await.unwrap();
    // Maintenance reaches the schema's tables too.
    db.execute("VACUUM").await.unwrap();
    assert_eq!(
        ints(&db, "SELECT a FROM s.t ORDER BY a").await,
        vec![Some(7), Some(8)]
    );
    db.execute("DROP SCHEMA s CASCADE").await.unwrap();
    db.shutdown().await;

    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    assert!(db.execute("SELECT a FROM s.t").await.is_err());
    assert_eq!(
        ints(
            &db,
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 's'"
        )
        .await,
        vec![Some(0)]
    );
    assert_eq!(ints(&db, "SELECT a FROM t").await, vec![Some(1)]);
    db.shutdown().await;
}

/// A SQL table reads back the Arrow types it was declared with, also after a restart, while
/// Iceberg stores the wider types; the stored type is what the data files hold.
#[tokio::test]
async fn declared_column_types_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    db.execute(
        "CREATE TABLE ty (a TINYINT, b VARCHAR, c INT) AS SELECT 1, 'x', 2 UNION ALL \
         SELECT 3, 'y', arrow_cast(4, 'Int32')",
    )
    .await
    .unwrap();
    db.execute(
        "CREATE TABLE tz AS SELECT arrow_cast(TIMESTAMP '2024-01-02 03:04:05', \
         'Timestamp(Millisecond, Some(\"+02:00\"))') AS at",
    )
    .await
    .unwrap();
    db.shutdown().await;

    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    let types = |results: &[contextdb_engine::StatementResult]| {
        let schema = results[0].schema.clone();
        schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect::<Vec<_>>()
    };
    let ty = db.execute("SELECT * FROM ty ORDER BY a").await.unwrap();
    assert_eq!(
        types(&ty),
        vec![DataType::Int8, DataType::Utf8View, DataType::Int32]
    );
    let tz = db.execute("SELECT at FROM tz").await.unwrap();
    assert_eq!(
        types(&tz),
        vec![DataType::Timestamp(
            arrow::datatypes::TimeUnit::Millisecond,
            Some("+02:00".into())
        )]
    );
    assert_eq!(
        ints(&db, "SELECT a FROM ty WHERE a > 1").await,
        vec![Some(3)]
    );
    // What Iceberg holds: the stored type in the data files, the declared one in the
    // table's metadata.
    let files = files_under(dir.path());
    let data = files
        .iter()
        .find(|f| f.to_string_lossy().contains("/ty/") && f.extension() == Some("parquet".as_ref()))
        .expect("a data file of ty");
    let parquet = datafusion::prelude::SessionContext::new()
        .read_parquet(
            data.to_string_lossy().as_ref(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        parquet
            .schema()
            .field_with_name(None, "a")
            .unwrap()
            .data_type(),
        &DataType::Int32
    );
    let metadata = files
        .iter()
        .filter(|f| {
            f.to_string_lossy().contains("/ty/") && f.to_string_lossy().ends_with(".metadata.json")
        })
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<String>();
    assert!(
        metadata.contains(r#""contextdb.arrow-type.a":"Int8""#),
        "{metadata}"
    );
    assert!(!metadata.contains("contextdb.arrow-type.c"));
    db.shutdown().await;
}

/// `SET` holds for the session that ran it, for its later statements, and for no other.
#[tokio::test]
async fn settings_belong_to_their_session() {
    use contextdb_engine::Session;
    let db = Database::open(DbConfig::memory()).await.unwrap();
    let batch_size = |results: Vec<contextdb_engine::StatementResult>| {
        let batch = &results.last().unwrap().batches[0];
        batch.column(1).as_string::<i32>().value(0).to_string()
    };
    let show = "SHOW datafusion.execution.batch_size";
    let a = Session::new(db.clone());
    let b = Session::new(db.clone());
    a.execute("SET datafusion.execution.batch_size = 100")
        .await
        .unwrap();
    assert_eq!(batch_size(a.execute(show).await.unwrap()), "100");
    assert_eq!(batch_size(b.execute(show).await.unwrap()), "8192");
    // Without a session, a SET lasts for the rest of its own call only.
    let both = db
        .execute(&format!("SET datafusion.execution.batch_size = 7; {show}"))
        .await
        .unwrap();
    assert_eq!(batch_size(both), "7");
    assert_eq!(batch_size(db.execute(show).await.unwrap()), "8192");
    assert_eq!(a.settings(), {
        let mut s = contextdb_engine::Settings::default();
        s.set("datafusion.execution.batch_size", "100").unwrap();
        s
    });
}

/// Typed parameters reach SQL and ContextQL alike, `$1` by position and `$name` by name; a
/// statement is described (its columns and parameters) without running it.
#[tokio::test]
async fn typed_parameters_bind_in_both_languages_and_statements_describe_without_running() {
    use contextdb_engine::{Language, Params, Session};
    use datafusion::common::ScalarValue;
    let db = Database::open(DbConfig::memory()).await.unwrap();
    let session = Session::new(db.clone());
    session
        .execute(
            "CREATE NODE TABLE P (id BIGINT PRIMARY KEY, name VARCHAR);
             CREATE (:P {id: 1, name: 'a'}), (:P {id: 2, name: 'b'}), (:P {id: 3, name: 'c'})",
        )
        .await
        .unwrap();
    let params: Params = [
        ("1".to_string(), ScalarValue::Int64(Some(2))),
        ("who".to_string(), ScalarValue::Utf8(Some("c".into()))),
    ]
    .into();
    let names = |text: &'static str| {
        let session = &session;
        let params = &params;
        async move {
            let result = session
                .query_typed(text, params)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let mut names = Vec::new();
            for batch in &result.batches {
                let column = batch.column(0).as_string::<i32>();
                names.extend((0..batch.num_rows()).map(|i| column.value(i).to_string()));
            }
            names
        }
    };
    assert_eq!(
        names("SELECT name FROM P WHERE id >= $1 ORDER BY id").await,
        ["b", "c"]
    );
    assert_eq!(names("SELECT name FROM P WHERE name = $who").await, ["c"]);
    assert_eq!(
        names("MATCH (p:P) WHERE p.id >= $1 RETURN p.name ORDER BY p.id").await,
        ["b", "c"]
    );
    // A write binds too (DataFusion's VALUES takes positional placeholders only).
    let written = session
        .query_typed("INSERT INTO P VALUES ($1 + 10, 'd')", &params)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(written.rows_affected, Some(1));

    let sql = session
        .describe("SELECT id, name FROM P WHERE id = $1 AND name = $2")
        .await
        .unwrap();
    assert_eq!(sql.language, Language::Sql);
    let columns: Vec<_> = sql
        .columns
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(columns, ["id", "name"]);
    let parameters: Vec<_> = sql
        .parameters
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(
        parameters,
        [
            ("1".to_string(), DataType::Int64),
            ("2".to_string(), DataType::Utf8)
        ]
    );
    let cql = session
        .describe("MATCH (p:P) RETURN p.name AS name")
        .await
        .unwrap();
    assert_eq!(cql.language, Language::ContextQL);
    assert_eq!(cql.columns.field(0).name(), "name");
    // ContextQL parameters take the type of the property they meet, in order: `$1, $2, ...`
    // then named ones; one met nowhere typed is VARCHAR. A query's columns are known without
    // the values.
    let types = |d: &contextdb_engine::Description| -> Vec<(String, DataType)> {
        d.parameters
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    let cql = session
        .describe(
            "MATCH (p:P {id: $1}) WHERE p.name = $n OR $2 > p.id \
             RETURN p.name AS name, $free AS free LIMIT $k",
        )
        .await
        .unwrap();
    assert_eq!(
        types(&cql),
        [
            ("1".to_string(), DataType::Int64),
            ("2".to_string(), DataType::Int64),
            ("n".to_string(), DataType::Utf8),
            ("free".to_string(), DataType::Utf8),
            ("k".to_string(), DataType::Int64),
        ]
    );
    assert_eq!(cql.columns.field(0).name(), "name");
    let write = session
        .describe("MATCH (p:P {id: $1}) SET p.name = $2")
        .await
        .unwrap();
    assert_eq!(
        types(&write),
        [
            ("1".to_string(), DataType::Int64),
            ("2".to_string(), DataType::Utf8)
        ]
    );
    // Writes describe no columns; nothing ran.
    for text in [
        "MATCH (p:P {id: $1}) SET p.name = $2",
        "CREATE (:P {id: 9, name: 'z'})",
        "DELETE FROM P",
    ] {
        let described = session.describe(text).await.unwrap();
        assert!(described.columns.fields().is_empty(), "{text}");
    }
    assert_eq!(
        ints(&db, "SELECT count(*) FROM P").await,
        [Some(4)],
        "describing ran nothing"
    );
    // What does not parse or plan is an error at once.
    assert!(session.describe("SELEC 1").await.is_err());
    assert!(session.describe("SELECT nope FROM P").await.is_err());
    db.shutdown().await;
}

/// Batches of `(id, name)` rows for ingest.
fn people(ids: &[i64]) -> (arrow::datatypes::SchemaRef, arrow::array::RecordBatch) {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let names: Vec<String> = ids.iter().map(|i| format!("p{i}")).collect();
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap();
    (schema, batch)
}

/// The error of an ingest that must fail.
async fn refused(
    db: &Database,
    target: &contextdb_engine::Ingest,
    schema: arrow::datatypes::SchemaRef,
    batches: impl futures::Stream<Item = contextdb_engine::Result<arrow::array::RecordBatch>>
    + Unpin
    + Send,
) -> contextdb_engine::Error {
    db.ingest(target, schema, batches).await.unwrap_err()
}

fn ingest_of(
    table: &str,
    if_exists: contextdb_engine::IfExists,
    if_missing: contextdb_engine::IfMissing,
    new_table: Option<contextdb_engine::NewTable>,
) -> contextdb_engine::Ingest {
    contextdb_engine::Ingest {
        schema: None,
        table: table.to_string(),
        if_exists,
        if_missing,
        new_table,
    }
}

#[tokio::test]
async fn ingest_creates_appends_and_replaces_node_edge_and_sql_tables_in_one_commit() {
    use contextdb_engine::{Error, IfExists, IfMissing, NewTable};
    use futures::stream;
    let db = Database::open(DbConfig::memory()).await.unwrap();
    let ok = |b: &arrow::array::RecordBatch| Ok::<_, Error>(b.clone());

    // A new node table, keyed as asked, created with its rows in one commit.
    let (schema, batch) = people(&[1, 2, 3]);
    let node = ingest_of(
        "Person",
        IfExists::Fail,
        IfMissing::Create,
        Some(NewTable::Node {
            primary_key: "id".into(),
        }),
    );
    let rows = db
        .ingest(&node, schema.clone(), stream::iter([ok(&batch)]))
        .await
        .unwrap();
    assert_eq!(rows, 3);
    // A creation whose rows fail leaves no table behind.
    let e = refused(
        &db,
        &ingest_of("Ghost", IfExists::Fail, IfMissing::Create, None),
        schema.clone(),
        stream::iter([ok(&batch), Err(Error::execution("the client went away"))]),
    )
    .await;
    assert!(e.message.contains("went away"), "{e}");
    assert!(
        db.execute("SELECT * FROM Ghost").await.is_err(),
        "no table `Ghost`"
    );
    // Mode create refuses a table that exists; mode append refuses one that does not.
    let e = refused(&db, &node, schema.clone(), stream::iter([ok(&batch)])).await;
    assert!(e.message.contains("already exists"), "{e}");
    let e = refused(
        &db,
        &ingest_of("Nobody", IfExists::Append, IfMissing::Fail, None),
        schema.clone(),
        stream::iter([ok(&batch)]),
    )
    .await;
    assert!(e.message.contains("does not exist"), "{e}");

    // An edge table between its node tables: src and dst take the key's type.
    use arrow::array::Int32Array;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;
    let knows = Arc::new(Schema::new(vec![
        Field::new("src", DataType::Int32, false),
        Field::new("dst", DataType::Int32, false),
        Field::new("since", DataType::Int32, true),
    ]));
    let edges = arrow::array::RecordBatch::try_new(
        knows.clone(),
        vec![
            Arc::new(Int32Array::from(vec![1, 2])),
            Arc::new(Int32Array::from(vec![2, 3])),
            Arc::new(Int32Array::from(vec![2020, 2021])),
        ],
    )
    .unwrap();
    let edge = ingest_of(
        "KNOWS",
        IfExists::Append,
        IfMissing::Create,
        Some(NewTable::Edge {
            from: "Person".into(),
            to: "Person".into(),
        }),
    );
    db.ingest(&edge, knows.clone(), stream::iter([ok(&edges)]))
        .await
        .unwrap();
    assert_eq!(
        ints(
            &db,
            "MATCH (a:Person {id: 1})-[:KNOWS]->(b)-[:KNOWS]->(c) RETURN c.id"
        )
        .await,
        vec![Some(3)]
    );

    // create_append appends to what exists; a duplicate key anywhere in the request commits
    // nothing, even after good batches.
    let append = ingest_of("Person", IfExists::Append, IfMissing::Create, None);
    let (_, more) = people(&[4, 5]);
    let (_, dup) = people(&[6, 1]);
    let version = db.catalog_version();
    let e = refused(
        &db,
        &append,
        schema.clone(),
        stream::iter([ok(&more), ok(&dup)]),
    )
    .await;
    assert!(e.message.contains("duplicate primary key"), "{e}");
    assert_eq!(db.catalog_version(), version, "nothing committed");
    // A failing input stream commits nothing either.
    let e = refused(
        &db,
        &append,
        schema.clone(),
        stream::iter([ok(&more), Err(Error::execution("the client went away"))]),
    )
    .await;
    assert!(e.message.contains("went away"), "{e}");
    assert_eq!(
        ints(&db, "SELECT count(*) FROM Person").await,
        vec![Some(3)]
    );
    db.ingest(&append, schema.clone(), stream::iter([ok(&more)]))
        .await
        .unwrap();
    assert_eq!(
        ints(&db, "SELECT count(*) FROM Person").await,
        vec![Some(5)]
    );

    // Replace keeps a node table a node table (the edges still reach it) with only the new
    // rows, in one commit.
    let replace = ingest_of("Person", IfExists::Replace, IfMissing::Create, None);
    let (_, fresh) = people(&[2, 3, 9]);
    db.ingest(&replace, schema.clone(), stream::iter([ok(&fresh)]))
        .await
        .unwrap();
    assert_eq!(
        ints(&db, "MATCH (p:Person) RETURN p.id ORDER BY p.id").await,
        vec![Some(2), Some(3), Some(9)]
    );
    assert_eq!(
        ints(&db, "MATCH (:Person {id: 2})-[:KNOWS]->(b) RETURN b.id").await,
        vec![Some(3)]
    );
    // A SQL table by default; a column the table lacks is refused with its name.
    let plain = ingest_of("scores", IfExists::Fail, IfMissing::Create, None);
    db.ingest(&plain, schema.clone(), stream::iter([ok(&batch)]))
        .await
        .unwrap();
    assert_eq!(
        ints(&db, "SELECT sum(id) FROM main.scores").await,
        vec![Some(6)]
    );
    // What an ingest refuses, and says why; none of it commits. Replacing a node table that
    // edges connect keeps it a node table keyed by a column of the same type (the edges store
    // the keys); a SQL table's PRIMARY KEY holds as for INSERT; a node table needs its key
    // column, an edge table node tables at both ends.
    let (_, ones) = people(&[1, 1]);
    let node = |pk: &str| {
        Some(NewTable::Node {
            primary_key: pk.into(),
        })
    };
    let keyed = Some(NewTable::Table {
        primary_key: Some("id".into()),
    });
    let likes = Some(NewTable::Edge {
        from: "Person".into(),
        to: "scores".into(),
    });
    let (replace, append, fail, create) = (
        IfExists::Replace,
        IfExists::Append,
        IfExists::Fail,
        IfMissing::Create,
    );
    let table = Some(NewTable::Table { primary_key: None });
    #[rustfmt::skip]
    let cases = [
        ("Person", replace, create, table, &schema, &fresh, "must be a node table"),
        ("Person", replace, create, node("name"), &schema, &fresh, "of the same type"),
        ("keyed", append, create, keyed, &schema, &ones, "duplicate primary key"),
        ("scores", append, IfMissing::Fail, None, &knows, &edges,
         "column `src` is not in table `scores`"),
        ("Bad", fail, create, node("missing"), &schema, &batch, "no column `missing`"),
        ("LIKES", fail, create, likes, &knows, &edges, "`scores` is not a node table"),
    ];
    for (name, if_exists, if_missing, new_table, schema, batch, says) in cases {
        let target = ingest_of(name, if_exists, if_missing, new_table);
        let e = refused(&db, &target, schema.clone(), stream::iter([ok(batch)])).await;
        assert!(e.message.contains(says), "{name}: {e}");
    }
    db.shutdown().await;
}
