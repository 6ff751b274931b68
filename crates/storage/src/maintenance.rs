//! Table maintenance on Iceberg metadata: which small data files to merge, which snapshots a
//! retention period lets go, and which files nothing references any more.
//!
//! Every step is safe to interrupt. Compaction and expiry produce catalog updates like any
//! commit (nothing changes until the catalog swaps the pointer); files are deleted only when
//! no retained snapshot reaches them, so a crash leaves at worst files a later VACUUM removes.

use std::collections::{HashMap, HashSet};

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use iceberg::spec::MAIN_BRANCH;
use iceberg::table::Table;
use iceberg::{Error, ErrorKind, Result, TableRequirement, TableUpdate};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::object_io::object_path;
use crate::table_io::{self, DataChange};

/// Data files of at least this size are never merged.
pub const COMPACT_TARGET_BYTES: u64 = 64 << 20;
/// Files in one size tier that make automatic compaction merge the tier.
pub const COMPACT_MIN_FILES: usize = 8;
/// The most bytes of data files one compaction round reads (its memory is bounded by it).
pub const COMPACT_MAX_INPUT_BYTES: u64 = 64 << 20;

pub use crate::table_io::LiveFile;

/// The data files of the table's current snapshot.
pub async fn live_files(table: &Table) -> Result<Vec<LiveFile>> {
    match table.metadata().current_snapshot_id() {
        Some(id) => table_io::data_files(table, id).await,
        None => Ok(vec![]),
    }
}

/// Data files below this size share the lowest tier: merging them costs little, and a table
/// written by many tiny commits then keeps fewer than [`COMPACT_MIN_FILES`] of them instead of
/// a few per size class.
pub const COMPACT_SMALL_BYTES: u64 = 1 << 20;

/// A file's size tier: files within a factor of 4 of each other share one, and every file
/// below [`COMPACT_SMALL_BYTES`] the lowest.
fn tier(bytes: u64) -> u32 {
    if bytes < COMPACT_SMALL_BYTES {
        return 0;
    }
    (64 - bytes.max(1).leading_zeros()) / 2
}

/// The files to merge now, smallest first; empty when there is nothing worth doing.
///
/// Size-tiered: merging the smallest tier that has [`COMPACT_MIN_FILES`] files (and every
/// smaller file) makes a file of a higher tier, so a row is rewritten about once per tier,
/// not once per commit. With `all` (a COMPACT statement), every file below the target size is
/// merged as long as there are two. One round reads at most [`COMPACT_MAX_INPUT_BYTES`].
pub fn pick(files: &[LiveFile], all: bool) -> Vec<LiveFile> {
    let mut small: Vec<&LiveFile> = files
        .iter()
        .filter(|f| f.bytes < COMPACT_TARGET_BYTES)
        .collect();
    small.sort_by_key(|f| (f.bytes, f.path.clone()));
    let limit = if all {
        small.last().map_or(0, |f| tier(f.bytes))
    } else {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for f in &small {
            *counts.entry(tier(f.bytes)).or_default() += 1;
        }
        match counts
            .iter()
            .filter(|(_, n)| **n >= COMPACT_MIN_FILES)
            .map(|(t, _)| *t)
            .min()
        {
            Some(t) => t,
            None => return vec![],
        }
    };
    let mut picked = Vec::new();
    let mut bytes = 0;
    for f in small.into_iter().filter(|f| tier(f.bytes) <= limit) {
        if bytes + f.bytes > COMPACT_MAX_INPUT_BYTES && picked.len() >= 2 {
            break;
        }
        bytes += f.bytes;
        picked.push(f.clone());
    }
    if picked.len() < 2 {
        return vec![];
    }
    picked
}

/// Reads the rows of some of the current snapshot's data files in the table's storage schema
/// (the hidden row id column included).
pub async fn read_files(table: &Table, paths: &HashSet<String>) -> Result<Vec<RecordBatch>> {
    let Some(id) = table.metadata().current_snapshot_id() else {
        return Ok(vec![]);
    };
    let schema = table_io::arrow_schema(table)?;
    let mut tasks = table_io::plan_tasks(table, id, None, None).await?;
    tasks.retain(|t| paths.contains(&t.data_file_path));
    let mut batches = Vec::new();
    for task in tasks {
        for batch in table_io::read_task(table, task).await? {
            batches.push(table_io::conform_batch(&batch, &schema)?);
        }
    }
    Ok(batches)
}

/// Merges `files` of the table's current snapshot into new data files: the change to commit
/// (the same rows, ids included, in fewer files).
pub async fn compact_files(table: &Table, files: &[LiveFile]) -> Result<DataChange> {
    let paths: HashSet<String> = files.iter().map(|f| f.path.clone()).collect();
    let batches = read_files(table, &paths).await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let expected: u64 = files.iter().map(|f| f.rows).sum();
    if rows as u64 != expected {
        return Err(Error::new(
            ErrorKind::DataInvalid,
            format!("compaction read {rows} rows from files that hold {expected}"),
        ));
    }
    let added = table_io::write_data_files(table, &batches).await?;
    Ok(DataChange {
        added,
        removed: paths,
        next_row: None,
        rewrite: true,
        replaced: Vec::new(),
    })
}

/// Snapshots that a retention reaching back to `boundary_ms` lets go: those replaced by a
/// later snapshot of the main branch before the boundary (and any other snapshot older than
/// it). The current snapshot and the one that was current at the boundary stay, so time
/// travel to any moment within the retention still finds its snapshot.
pub fn expired_snapshots(table: &Table, boundary_ms: i64) -> Vec<i64> {
    let metadata = table.metadata();
    let mut chain = Vec::new();
    let mut next = metadata.current_snapshot();
    while let Some(snapshot) = next {
        chain.push(snapshot.clone());
        next = snapshot
            .parent_snapshot_id()
            .and_then(|p| metadata.snapshot_by_id(p));
        if chain.len() > metadata.snapshots().len() {
            break; // a parent cycle: corrupt metadata; keep everything
        }
    }
    let on_chain: HashSet<i64> = chain.iter().map(|s| s.snapshot_id()).collect();
    let mut expired: Vec<i64> = chain
        .windows(2)
        .filter(|w| w[0].timestamp_ms() <= boundary_ms)
        .map(|w| w[1].snapshot_id())
        .collect();
    expired.extend(
        metadata
            .snapshots()
            .filter(|s| !on_chain.contains(&s.snapshot_id()) && s.timestamp_ms() <= boundary_ms)
            .map(|s| s.snapshot_id()),
    );
    expired.sort_unstable();
    expired
}

/// The catalog change that removes `snapshot_ids` from the table, valid only while the table
/// is where it was read.
pub fn expire_change(
    table: &Table,
    snapshot_ids: Vec<i64>,
) -> (Vec<TableRequirement>, Vec<TableUpdate>) {
    let metadata = table.metadata();
    (
        vec![
            TableRequirement::UuidMatch {
                uuid: metadata.uuid(),
            },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: metadata.current_snapshot_id(),
            },
        ],
        vec![TableUpdate::RemoveSnapshots { snapshot_ids }],
    )
}

/// Every file the table still needs, as object keys: its current metadata file, metadata
/// files it logged after `boundary_ms`, and each snapshot's manifest list, manifests and
/// live data files.
pub async fn referenced_files(table: &Table, boundary_ms: i64) -> Result<HashSet<ObjectPath>> {
    let metadata = table.metadata();
    let mut keep = HashSet::new();
    if let Some(location) = table.metadata_location() {
        keep.insert(object_path(location)?);
    }
    for log in metadata.metadata_log() {
        if log.timestamp_ms > boundary_ms {
            keep.insert(object_path(&log.metadata_file)?);
        }
    }
    let mut manifests_seen = HashSet::new();
    for snapshot in metadata.snapshots() {
        keep.insert(object_path(snapshot.manifest_list())?);
        let list = table.manifest_list_reader(snapshot).load().await?;
        for manifest_file in list.entries() {
            if !manifests_seen.insert(manifest_file.manifest_path.clone()) {
                continue;
            }
            keep.insert(object_path(&manifest_file.manifest_path)?);
            let manifest = manifest_file.load_manifest(table.file_io()).await?;
            for entry in manifest.entries() {
                if entry.is_alive() {
                    keep.insert(object_path(entry.file_path())?);
                }
            }
        }
    }
    Ok(keep)
}

/// Deletes every object under `prefix` (a location) that `keep` does not hold, that is not
/// under one of `live_prefixes` (locations of tables that keep their own files) and that was
/// last written at or before `written_before_ms`; returns the keys deleted.
///
/// The age bound protects files a commit still in flight has written but not yet published
/// (another process's, or a table being created) and files of a table dropped while a
/// statement that started before still reads it.
pub async fn remove_unreferenced(
    store: &dyn ObjectStore,
    prefix: &str,
    keep: &HashSet<ObjectPath>,
    live_prefixes: &[String],
    written_before_ms: i64,
) -> Result<Vec<ObjectPath>> {
    let prefix = object_path(prefix)?;
    let live: Vec<String> = live_prefixes
        .iter()
        .map(|p| object_path(p).map(|p| format!("{p}/")))
        .collect::<Result<_>>()?;
    let listed: Vec<_> =
        store.list(Some(&prefix)).try_collect().await.map_err(|e| {
            Error::new(ErrorKind::Unexpected, "listing files failed").with_source(e)
        })?;
    let mut deleted = Vec::new();
    for object in listed {
        let key = object.location;
        if keep.contains(&key)
            || live.iter().any(|p| key.as_ref().starts_with(p.as_str()))
            || object.last_modified.timestamp_millis() > written_before_ms
        {
            continue;
        }
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted.push(key),
            Err(e) => {
                return Err(
                    Error::new(ErrorKind::Unexpected, format!("deleting {key} failed"))
                        .with_source(e),
                );
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: u64) -> LiveFile {
        LiveFile {
            path: name.into(),
            rows: 1,
            bytes,
        }
    }

    #[test]
    fn picks_the_smallest_full_tier_and_everything_below_it() {
        // Seven tiny files: not enough for a tier.
        let mut files: Vec<LiveFile> = (0..7).map(|i| file(&format!("t{i}"), 1500)).collect();
        assert!(pick(&files, false).is_empty());
        assert_eq!(pick(&files, true).len(), 7);
        // The eighth fills it.
        files.push(file("t7", 1600));
        assert_eq!(pick(&files, false).len(), 8);
        // Larger files of a tier that is not full stay; a full larger tier takes smaller
        // files along.
        files.truncate(3);
        files.extend((0..8).map(|i| file(&format!("m{i}"), 100_000)));
        files.push(file("big", COMPACT_TARGET_BYTES));
        let picked: Vec<String> = pick(&files, false).into_iter().map(|f| f.path).collect();
        assert_eq!(picked.len(), 11);
        assert!(!picked.contains(&"big".to_string()));
    }

    #[test]
    fn one_round_reads_a_bounded_amount() {
        let files: Vec<LiveFile> = (0..100)
            .map(|i| file(&format!("f{i}"), COMPACT_MAX_INPUT_BYTES / 10))
            .collect();
        let picked = pick(&files, true);
        let bytes: u64 = picked.iter().map(|f| f.bytes).sum();
        assert!(bytes <= COMPACT_MAX_INPUT_BYTES, "{bytes}");
        assert_eq!(picked.len(), 10);
    }
}
