//! Table maintenance: compaction of small data files (automatic after a commit that leaves
//! enough of them, and by `COMPACT`), expiry of snapshots past the retention (automatic in
//! batches, and by `VACUUM`) and removal of files that nothing references (`VACUUM`).
//!
//! Each runs under the write lock, so no writer of this process has files in flight, and
//! commits through the catalog like any write: readers of an earlier catalog version keep
//! their snapshot, whose files stay until it is past the retention.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use contextdb_catalog::TableChange;
use contextdb_storage::maintenance::{self, COMPACT_MIN_FILES};
use contextdb_storage::table_io;

use crate::StatementResult;
use crate::database::Database;
use crate::error::{Error, Result};
use crate::route::Language;

/// The most compaction rounds one table gets per call (each round reads a bounded amount).
pub const MAX_COMPACT_ROUNDS: usize = 64;

/// What compacting one table did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub files_merged: u64,
    pub files_written: u64,
}

/// Merges small data files of `name` until nothing is worth merging: the size-tiered rule
/// of automatic compaction, or with `all` every file below the target size.
pub(crate) async fn compact(db: &Database, name: &str, all: bool) -> Result<Compacted> {
    let mut done = Compacted::default();
    for _ in 0..MAX_COMPACT_ROUNDS {
        let table = db.load_table(name).await?;
        let files = maintenance::live_files(&table).await?;
        let picked = maintenance::pick(&files, all);
        if picked.is_empty() {
            break;
        }
        let change = maintenance::compact_files(&table, &picked).await?;
        let written = change.added.len() as u64;
        let commit_ms = table_io::commit_timestamp_ms(db.tables().await?.iter());
        commit_one(
            db,
            name,
            table_io::produce_snapshot(&table, change, commit_ms).await?,
        )
        .await?;
        done.files_merged += picked.len() as u64;
        done.files_written += written;
    }
    Ok(done)
}

/// Commits one table's maintenance change straight to the catalog (not through
/// `Database::commit`, which would start maintenance again).
async fn commit_one(
    db: &Database,
    name: &str,
    (requirements, updates): (Vec<iceberg::TableRequirement>, Vec<iceberg::TableUpdate>),
) -> Result<()> {
    db.catalog
        .commit_changes(vec![TableChange {
            ident: db.ident(name),
            requirements,
            updates,
        }])
        .await?;
    Ok(())
}

/// Snapshots past the retention a table keeps before a commit expires them. Expiring
/// rewrites the table's metadata like any commit, so it is done in batches; between batches
/// the metadata holds at most this many snapshots beyond those within the retention.
pub const EXPIRE_BATCH_SNAPSHOTS: usize = 64;

/// After a commit: compacts the tables it wrote that now hold enough data files for a tier
/// to be full (unless automatic compaction is off), rebuilds their vector indexes that cover
/// too little of them (`vector_index::refresh_after_commit`), then expires their snapshots past the
/// retention once a batch of them has gathered (their files stay until `VACUUM`). A failure
/// here does not undo the commit; it is logged and tried again after the next one.
pub(crate) async fn after_commit(
    db: &Database,
    tables: &[String],
    indexing: &(dyn Fn(u64, u64) + Send + Sync),
) {
    for name in tables {
        let Ok(table) = db.load_table(name).await else {
            continue;
        };
        // The snapshot summary counts files without opening a manifest.
        let current = table.metadata().current_snapshot_id();
        let files = table_io::snapshot_files(&table, current).unwrap_or(u64::MAX);
        if db.auto_compact
            && files >= COMPACT_MIN_FILES as u64
            && let Err(e) = compact(db, name, false).await
        {
            tracing::warn!(table = %name, error = %e, "automatic compaction failed");
        }
        if let Err(e) = crate::vector_index::refresh_after_commit(db, name, indexing).await {
            tracing::warn!(table = %name, error = %e, "vector index refresh failed");
        }
        let boundary = table_io::now_ms().saturating_sub(db.snapshot_retention_ms);
        if let Err(e) = expire(db, name, boundary, EXPIRE_BATCH_SNAPSHOTS).await {
            tracing::warn!(table = %name, error = %e, "automatic snapshot expiry failed");
        }
    }
}

/// Expires the snapshots of `name` replaced before `boundary` when there are at least
/// `at_least`; returns how many.
async fn expire(db: &Database, name: &str, boundary: i64, at_least: usize) -> Result<usize> {
    let table = db.load_table(name).await?;
    let expired = maintenance::expired_snapshots(&table, boundary);
    let n = expired.len();
    if n == 0 || n < at_least {
        return Ok(0);
    }
    commit_one(db, name, maintenance::expire_change(&table, expired)).await?;
    Ok(n)
}

/// What vacuuming one table did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Vacuumed {
    pub snapshots_expired: u64,
    pub files_removed: u64,
}

/// Expires the snapshots of `only` (or of every table) that the retention lets go, then
/// removes the files no remaining snapshot references (files of expired snapshots, of
/// failed commits and of dropped tables) once they are older than the retention too. Returns
/// what it did per table (`*` for files that belonged to no table).
pub(crate) async fn vacuum(db: &Database, only: Option<&str>) -> Result<Vec<(String, Vacuumed)>> {
    let boundary = table_io::now_ms().saturating_sub(db.snapshot_retention_ms);
    let names: Vec<String> = match only {
        Some(name) => vec![db.load_table(name).await?.identifier().name().to_string()],
        None => db.table_names().await,
    };
    let mut report = Vec::new();
    for name in &names {
        let mut done = Vacuumed {
            snapshots_expired: expire(db, name, boundary, 1).await? as u64,
            ..Default::default()
        };
        let table = db.load_table(name).await?;
        let mut keep = maintenance::referenced_files(&table, boundary).await?;
        // The files of the table's vector indexes; those of dropped or replaced indexes go.
        for def in crate::vector_index::definitions(table.metadata().properties()).values() {
            for location in def.locations(table.metadata().location()) {
                keep.insert(
                    contextdb_storage::object_io::object_path(&location)
                        .map_err(|e| crate::Error::internal(e.to_string()))?,
                );
            }
        }
        let removed = maintenance::remove_unreferenced(
            db.store.as_ref(),
            table.metadata().location(),
            &keep,
            &[],
            boundary,
        )
        .await?;
        done.files_removed = removed.len() as u64;
        report.push((name.clone(), done));
    }
    if only.is_none() {
        // Files under the warehouse that belong to no table (dropped tables, tables whose
        // creation failed). Every table of every namespace keeps its own.
        let live: Vec<String> = db
            .tables()
            .await?
            .iter()
            .map(|t| t.metadata().location().to_string())
            .collect();
        let removed = maintenance::remove_unreferenced(
            db.store.as_ref(),
            &db.warehouse_location,
            &HashSet::new(),
            &live,
            boundary,
        )
        .await?;
        if !removed.is_empty() {
            report.push((
                "*".to_string(),
                Vacuumed {
                    snapshots_expired: 0,
                    files_removed: removed.len() as u64,
                },
            ));
        }
    }
    Ok(report)
}

/// `COMPACT [TABLE t]`: one row per table with the files merged and written.
pub(crate) async fn compact_statement(
    db: &Database,
    only: Option<&str>,
) -> Result<StatementResult> {
    let names = match only {
        Some(name) => vec![name.to_string()],
        None => db.table_names().await,
    };
    let mut rows = Vec::new();
    for name in names {
        let done = compact(db, &name, true).await?;
        rows.push((name, done.files_merged, done.files_written));
    }
    result(["table", "files_merged", "files_written"], rows)
}

/// `VACUUM [TABLE t]`: one row per table with the snapshots expired and files removed.
pub(crate) async fn vacuum_statement(db: &Database, only: Option<&str>) -> Result<StatementResult> {
    let rows = vacuum(db, only)
        .await?
        .into_iter()
        .map(|(name, v)| (name, v.snapshots_expired, v.files_removed))
        .collect();
    result(["table", "snapshots_expired", "files_removed"], rows)
}

fn result(names: [&str; 3], rows: Vec<(String, u64, u64)>) -> Result<StatementResult> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(names[0], DataType::Utf8, false),
        Field::new(names[1], DataType::UInt64, false),
        Field::new(names[2], DataType::UInt64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .map_err(|e| Error::internal(e.to_string()))?;
    Ok(StatementResult {
        language: Language::ContextQL,
        schema,
        batches: vec![batch],
        rows_affected: Some(0),
    })
}
