//! Table maintenance: compaction (automatic and COMPACT), snapshot expiry and removal of
//! unreferenced files (VACUUM), with ids, time travel and reads unharmed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use contextdb_engine::{Database, DbConfig};

async fn rows(db: &Database, text: &str) -> Vec<Vec<Option<i64>>> {
    let results = db
        .execute(text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let mut out = Vec::new();
    for batch in &results.last().unwrap().batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Int64).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| {
                        let c = c.as_primitive::<Int64Type>();
                        c.is_valid(i).then(|| c.value(i))
                    })
                    .collect(),
            );
        }
    }
    out
}

/// key → id of every node of `label`.
async fn ids(db: &Database, label: &str) -> BTreeMap<i64, i64> {
    rows(db, &format!("MATCH (x:{label}) RETURN x.id, id(x)"))
        .await
        .into_iter()
        .map(|r| (r[0].unwrap(), r[1].unwrap()))
        .collect()
}

/// Parquet files on disk under `table`'s directory (live or not).
fn parquet_files(dir: &Path, table: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.join("warehouse")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet")
                && p.components().any(|c| c.as_os_str() == table)
            {
                n += 1;
            }
        }
    }
    n
}

/// One `(table, a, b)` result row of COMPACT or VACUUM.
fn report(db_rows: &[arrow::array::RecordBatch], table: &str) -> (u64, u64) {
    for batch in db_rows {
        let names = batch.column(0).as_string::<i32>();
        for i in 0..batch.num_rows() {
            if names.value(i) == table {
                return (
                    batch.column(1).as_primitive::<UInt64Type>().value(i),
                    batch.column(2).as_primitive::<UInt64Type>().value(i),
                );
            }
        }
    }
    (0, 0)
}

#[tokio::test]
async fn many_small_commits_are_compacted_and_ids_survive() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    db.execute("CREATE NODE TABLE Item (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    let mut before = BTreeMap::new();
    for i in 0..40 {
        db.execute(&format!("CREATE (:Item {{id: {i}, v: {i}}})"))
            .await
            .unwrap();
        if i == 20 {
            before = ids(&db, "Item").await;
        }
    }
    // Automatic compaction keeps the live files few (a tier merges at 8 files), and every
    // commit keeps its snapshot for time travel.
    let live = rows(
        &db,
        "SELECT data_files, total_rows FROM system.snapshots
         WHERE table_name = 'Item' AND is_current",
    )
    .await;
    assert!(live[0][0].unwrap() < 8, "{live:?} files after 40 commits");
    assert_eq!(live[0][1], Some(40));
    let replaced = rows(
        &db,
        "SELECT count(*) FROM system.snapshots WHERE table_name = 'Item' AND operation = 'replace'",
    )
    .await;
    assert!(replaced[0][0].unwrap() >= 4, "{replaced:?} compactions");
    let after = ids(&db, "Item").await;
    assert_eq!(after.len(), 40);
    assert!(before.iter().all(|(k, id)| after[k] == *id), "ids moved");

    // COMPACT merges what is left into one file; rows, ids and time travel are unchanged.
    let result = db.execute("COMPACT TABLE Item").await.unwrap();
    let (merged, written) = report(&result[0].batches, "Item");
    assert!(
        merged >= 2 && written == 1,
        "merged {merged}, wrote {written}"
    );
    assert_eq!(ids(&db, "Item").await, after);
    let again = db.execute("COMPACT").await.unwrap();
    assert_eq!(
        report(&again[0].batches, "Item"),
        (0, 0),
        "nothing left to merge"
    );
    db.shutdown().await;

    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    assert_eq!(ids(&db, "Item").await, after);
    assert_eq!(
        rows(&db, "MATCH (x:Item) RETURN sum(x.v)").await[0][0],
        Some((0..40).sum())
    );
    db.shutdown().await;
}

#[tokio::test]
async fn vacuum_expires_old_snapshots_and_removes_unreferenced_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = || DbConfig::local(dir.path()).with_snapshot_retention(Duration::from_secs(2));
    let db = Database::open(config()).await.unwrap();
    db.execute(
        "CREATE NODE TABLE Item (id BIGINT PRIMARY KEY, v BIGINT);
         CREATE NODE TABLE Gone (id BIGINT PRIMARY KEY);
         UNWIND range(1, 100) AS i CREATE (:Item {id: i, v: i});
         CREATE (:Gone {id: 1})",
    )
    .await
    .unwrap();
    let ids_before = ids(&db, "Item").await;
    // Each rewrite replaces the file; the old ones stay for time travel.
    let mut mid = String::new();
    for i in 1..=5 {
        db.execute(&format!("MATCH (x:Item {{id: {i}}}) SET x.v = 0"))
            .await
            .unwrap();
        if i == 2 {
            mid = chrono_now();
        }
    }
    db.execute("DROP NODE TABLE Gone").await.unwrap();
    assert!(parquet_files(dir.path(), "Item") >= 6);
    assert_eq!(parquet_files(dir.path(), "Gone"), 1);
    // A file left by a commit that never finished.
    let data_dir = std::fs::read_dir(dir.path().join("warehouse"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap()
        .join("Item")
        .join("data");
    std::fs::write(data_dir.join("orphan.parquet"), b"not referenced").unwrap();

    // Within the retention, VACUUM keeps everything time travel may read: the snapshot
    // after the second update needs files three later updates replaced.
    let kept = db.execute("VACUUM").await.unwrap();
    assert_eq!(report(&kept[0].batches, "Item"), (0, 0));
    // Files nothing references wait out the retention too (a commit may still be writing).
    assert!(data_dir.join("orphan.parquet").exists());
    assert_eq!(parquet_files(dir.path(), "Gone"), 1);
    assert_eq!(
        rows(
            &db,
            &format!("AT TIMESTAMP '{mid}' MATCH (x:Item) RETURN sum(x.v)")
        )
        .await[0][0],
        Some(5050 - 3)
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let result = db.execute("VACUUM").await.unwrap();
    let (expired, removed) = report(&result[0].batches, "Item");
    assert!(expired >= 5, "expired {expired}");
    assert!(removed >= 6, "removed {removed}");
    assert_eq!(parquet_files(dir.path(), "Item"), 1);
    assert_eq!(
        parquet_files(dir.path(), "Gone"),
        0,
        "a dropped table's files go"
    );
    assert!(!data_dir.join("orphan.parquet").exists());

    // Everything current still reads, now and after a restart.
    assert_eq!(ids(&db, "Item").await, ids_before);
    db.shutdown().await;
    let db = Database::open(config()).await.unwrap();
    assert_eq!(
        rows(&db, "MATCH (x:Item) RETURN sum(x.v)").await[0][0],
        Some(5050 - 15)
    );
    assert_eq!(ids(&db, "Item").await, ids_before);
    db.shutdown().await;
}

/// Now as RFC 3339 with milliseconds, after a short pause so it lies strictly between commits.
fn chrono_now() -> String {
    std::thread::sleep(Duration::from_millis(5));
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[tokio::test]
async fn snapshots_past_the_retention_expire_by_themselves_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    // No retention: every replaced snapshot is past it at once.
    let config = || DbConfig::local(dir.path()).with_snapshot_retention(Duration::ZERO);
    let db = Database::open(config()).await.unwrap();
    db.execute("CREATE NODE TABLE Item (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    let snapshots = |db: std::sync::Arc<Database>| async move {
        rows(
            &db,
            "SELECT count(*) FROM system.snapshots WHERE table_name = 'Item'",
        )
        .await[0][0]
            .unwrap()
    };
    let mut most = 0;
    for i in 0..150 {
        db.execute(&format!("CREATE (:Item {{id: {i}, v: {i}}})"))
            .await
            .unwrap();
        most = most.max(snapshots(db.clone()).await);
    }
    // 150 commits and their compactions, but never more than a batch past the retention.
    let batch = contextdb_engine::EXPIRE_BATCH_SNAPSHOTS as i64;
    assert!(most <= batch + 1, "{most} snapshots at once");
    // (A commit and its compaction may add two at once, so the most seen is a batch less one.)
    assert!(
        most >= batch - 1,
        "{most}: expiry ran before a batch gathered"
    );
    assert_eq!(
        rows(&db, "MATCH (x:Item) RETURN count(*), sum(x.v)").await[0],
        [Some(150), Some((0..150).sum())]
    );
    db.shutdown().await;

    // With the default retention (a week) every snapshot stays for time travel.
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(DbConfig::local(dir.path())).await.unwrap();
    db.execute("CREATE NODE TABLE Item (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    for i in 0..80 {
        db.execute(&format!("CREATE (:Item {{id: {i}, v: {i}}})"))
            .await
            .unwrap();
    }
    assert!(snapshots(db.clone()).await > 80);
    db.shutdown().await;
}
