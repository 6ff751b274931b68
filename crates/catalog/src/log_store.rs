//! Durable raft log: one append-only segment file plus small atomically replaced files.
//!
//! Layout inside the raft directory:
//! - `log`: records `[len u32 LE][crc32 u32 LE][serde_json of the Entry]` with consecutive
//!   indexes. An append is acknowledged (the `LogFlushed` callback) only after `sync_data`.
//! - `vote`: the last saved vote, replaced atomically.
//! - `purged`: the last purged log id, replaced atomically.
//!
//! Live entries are also kept in memory: the catalog purges its log after every snapshot, so the
//! log holds at most a few snapshot intervals of small commands, and reads never touch the disk.
//!
//! Recovery reads the segment up to the first record with a short header, a short payload, a
//! zero length or a bad CRC. What follows decides what that record is:
//! - nothing from which a later entry decodes: a torn tail. Every record before it was fsynced
//!   before any later record was written, and an entry is acknowledged only after its fsync, so
//!   the cut-off bytes were never acknowledged to anyone; the file is truncated there.
//! - a valid record of a later entry: damage in the middle of the log. Cutting there could drop
//!   acknowledged entries, so the node refuses to start with [`CatalogError::DamagedLog`], which
//!   names the file, the offset and the repair command ([`crate::repair_log`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use contextdb_storage::fs::{Fs, create_dir_all_durable, write_file_atomic};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};
use tokio::sync::Mutex;

use crate::error::CatalogError;
use crate::record::{
    Decoded, MAX_RECORD_BYTES, decode_record, encode_record, invalid_data, read_framed_file,
    write_framed_file_atomic,
};
use crate::repair::repair_command;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// File name of the log segment inside the raft directory.
pub const LOG_FILE: &str = "log";
/// File name of the saved vote inside the raft directory.
pub const VOTE_FILE: &str = "vote";
/// File name of the purge marker inside the raft directory.
pub const PURGED_FILE: &str = "purged";

/// Largest payload of the vote and purge marker files (a few dozen bytes of JSON in practice).
const MAX_SMALL_FILE_BYTES: u32 = 64 * 1024;

/// The raft log store; clones share one log (the clone handed to replication reads it).
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

struct LogInner {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    /// Bytes of the segment that hold valid records.
    file_len: u64,
    /// Live entries (index > last purged) with their byte offsets in the segment.
    entries: BTreeMap<u64, StoredEntry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    /// Set when a write failed half way: the file may no longer match memory, so every further
    /// operation fails until the node restarts and recovery trims the file.
    failed: Option<String>,
}

struct StoredEntry {
    offset: u64,
    entry: Entry,
}

/// What recovery found in the segment file.
pub(crate) struct Scan {
    entries: BTreeMap<u64, StoredEntry>,
    /// Bytes before the first invalid record (the whole file when there is none).
    pub(crate) valid_len: u64,
    pub(crate) damage: Option<Damage>,
}

impl Scan {
    /// Live entries decoded before the damage (or in the whole file).
    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.len() as u64
    }
}

/// The first invalid record of a segment.
#[derive(Debug)]
pub(crate) struct Damage {
    /// Where the invalid record starts (equal to [`Scan::valid_len`]).
    pub(crate) offset: u64,
    pub(crate) reason: String,
    /// The first valid record of a later entry after the damage, if any: then the damage is in
    /// the middle of the log, not a torn tail.
    pub(crate) resumes: Option<Resumption>,
}

/// Valid records found after a damaged one.
#[derive(Debug)]
pub(crate) struct Resumption {
    pub(crate) offset: u64,
    pub(crate) first_index: u64,
    /// Consecutive valid records from `offset` on.
    pub(crate) records: u64,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering from a torn tail and refusing damage in
    /// the middle of the log.
    pub(crate) async fn open(fs: Arc<dyn Fs>, dir: PathBuf) -> Result<Self, CatalogError> {
        let path = dir.clone();
        let inner = spawn_io(move || LogInner::open(fs, dir))
            .await
            .map_err(|source| CatalogError::Storage { path, source })??;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }
}

impl LogInner {
    fn open(fs: Arc<dyn Fs>, dir: PathBuf) -> Result<Self, CatalogError> {
        let storage_error = |source| CatalogError::Storage {
            path: dir.clone(),
            source,
        };
        create_dir_all_durable(&*fs, &dir).map_err(storage_error)?;
        let vote = read_json_file::<Vote>(&*fs, &dir.join(VOTE_FILE)).map_err(storage_error)?;
        let last_purged =
            read_json_file::<LogId>(&*fs, &dir.join(PURGED_FILE)).map_err(storage_error)?;
        let path = dir.join(LOG_FILE);
        let bytes = match fs.read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(storage_error(e)),
        };
        let scan = scan_segment(bytes.as_deref().unwrap_or_default(), last_purged.as_ref())
            .map_err(storage_error)?;
        match (&scan.damage, &bytes) {
            (None, Some(_)) => {}
            (None, None) => {
                // A fresh segment: its directory entry must be durable before anything in it is.
                fs.write(&path, &[]).map_err(storage_error)?;
                fs.sync_file(&path).map_err(storage_error)?;
                fs.sync_dir(&dir).map_err(storage_error)?;
            }
            (Some(damage), bytes) => {
                let file_len = bytes.as_ref().map_or(0, |b| b.len() as u64);
                if let Some(resumes) = &damage.resumes {
                    return Err(damaged_log(&dir, damage, resumes));
                }
                tracing::warn!(
                    path = %path.display(),
                    valid_bytes = scan.valid_len,
                    dropped_bytes = file_len - scan.valid_len,
                    reason = %damage.reason,
                    "raft log ends in a damaged record (torn write); truncating it"
                );
                fs.set_len(&path, scan.valid_len).map_err(storage_error)?;
                fs.sync_file(&path).map_err(storage_error)?;
            }
        }
        Ok(Self {
            fs,
            dir,
            file_len: scan.valid_len,
            entries: scan.entries,
            last_purged,
            vote,
            failed: None,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    fn check_not_failed(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(reason) => Err(invalid_data(format!(
                "log store stopped after an earlier write failure: {reason}"
            ))),
        }
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .last_key_value()
            .map(|(_, stored)| stored.entry.log_id)
            .or(self.last_purged)
    }

    /// The index the next appended entry must have, when it is constrained.
    fn next_index(&self) -> Option<u64> {
        self.last_log_id().map(|log_id| log_id.index + 1)
    }
}

/// Encodes entries as a segment; returns the bytes and each entry's offset in them.
fn encode_segment<'a>(entries: impl Iterator<Item = &'a Entry>) -> io::Result<(Vec<u8>, Vec<u64>)> {
    let mut buf = Vec::new();
    let mut offsets = Vec::new();
    for entry in entries {
        let payload = serde_json::to_vec(entry).map_err(io::Error::other)?;
        if payload.len() > MAX_RECORD_BYTES as usize {
            return Err(invalid_data(format!(
                "log entry {} is {} bytes, above the limit of {MAX_RECORD_BYTES}",
                entry.log_id.index,
                payload.len()
            )));
        }
        offsets.push(buf.len() as u64);
        encode_record(&payload, MAX_RECORD_BYTES, &mut buf);
    }
    Ok((buf, offsets))
}

/// The error for damage followed by valid entries.
fn damaged_log(dir: &Path, damage: &Damage, resumes: &Resumption) -> CatalogError {
    CatalogError::DamagedLog {
        path: dir.join(LOG_FILE),
        offset: damage.offset,
        reason: damage.reason.clone(),
        resume_offset: resumes.offset,
        first_index_after: resumes.first_index,
        entries_after: resumes.records,
        repair_command: repair_command(dir),
    }
}

/// Decodes the segment up to the first damaged record, and looks past it for valid entries.
pub(crate) fn scan_segment(bytes: &[u8], last_purged: Option<&LogId>) -> io::Result<Scan> {
    let mut entries = BTreeMap::new();
    let mut offset = 0usize;
    let mut previous_index: Option<u64> = None;
    let damage = loop {
        let (payload, next_offset) = match decode_record(bytes, offset, MAX_RECORD_BYTES) {
            Decoded::End => break None,
            Decoded::Invalid { reason } => {
                let after_index = previous_index.or(last_purged.map(|purged| purged.index));
                break Some(Damage {
                    offset: offset as u64,
                    reason,
                    resumes: find_resumption(bytes, offset, after_index),
                });
            }
            Decoded::Record {
                payload,
                next_offset,
            } => (payload, next_offset),
        };
        // A record with a valid CRC that does not decode is not a torn write but a bug or a
        // format change; refusing to start is safer than dropping acknowledged entries.
        let entry: Entry = serde_json::from_slice(payload).map_err(|e| {
            invalid_data(format!("log record at byte {offset} does not decode: {e}"))
        })?;
        let index = entry.log_id.index;
        if let Some(previous) = previous_index
            && index != previous + 1
        {
            return Err(invalid_data(format!(
                "log record at byte {offset} has index {index} after index {previous}"
            )));
        }
        previous_index = Some(index);
        // Entries at or below the purge marker are left over from a purge that crashed before
        // rewriting the segment; they are dropped here and from the file at the next purge.
        if last_purged.is_none_or(|purged| index > purged.index) {
            entries.insert(
                index,
                StoredEntry {
                    offset: offset as u64,
                    entry,
                },
            );
        }
        offset = next_offset;
    };
    if let (Some(purged), Some((&first, _))) = (last_purged, entries.first_key_value())
        && first != purged.index + 1
    {
        return Err(invalid_data(format!(
            "log starts at index {first} but the purge marker is at index {}",
            purged.index
        )));
    }
    Ok(Scan {
        entries,
        valid_len: offset as u64,
        damage,
    })
}

/// The first record after the invalid one at `damage_offset` that holds an entry with an index
/// above `after_index` (any entry when `None`), with the count of valid records from it on.
///
/// Tries every byte offset: a damaged record's length cannot be trusted. This runs only on a
/// damaged log, whose size purging bounds, and a candidate costs a CRC only when its length
/// field is plausible, so the search stays near linear.
fn find_resumption(
    bytes: &[u8],
    damage_offset: usize,
    after_index: Option<u64>,
) -> Option<Resumption> {
    (damage_offset + 1..bytes.len()).find_map(|offset| {
        let Decoded::Record {
            payload,
            next_offset,
        } = decode_record(bytes, offset, MAX_RECORD_BYTES)
        else {
            return None;
        };
        let entry: Entry = serde_json::from_slice(payload).ok()?;
        let index = entry.log_id.index;
        if after_index.is_some_and(|after| index <= after) {
            return None;
        }
        let mut records = 1;
        let mut cursor = next_offset;
        while let Decoded::Record { next_offset, .. } =
            decode_record(bytes, cursor, MAX_RECORD_BYTES)
        {
            records += 1;
            cursor = next_offset;
        }
        Some(Resumption {
            offset: offset as u64,
            first_index: index,
            records,
        })
    })
}

pub(crate) fn read_json_file<T: serde::de::DeserializeOwned>(
    fs: &dyn Fs,
    path: &Path,
) -> io::Result<Option<T>> {
    read_framed_file(fs, path, MAX_SMALL_FILE_BYTES)?
        .map(|payload| {
            serde_json::from_slice(&payload)
                .map_err(|e| invalid_data(format!("{}: {e}", path.display())))
        })
        .transpose()
}

/// Runs blocking file I/O off the async worker threads.
async fn spawn_io<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking I/O task failed: {e}")))
}

fn write_error(e: &io::Error) -> StorageError {
    StorageIOError::write_logs(e).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock().await;
        Ok(inner
            .entries
            .range(range)
            .map(|(_, stored)| stored.entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.inner.lock().await;
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: inner.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().await;
        inner.check_not_failed().map_err(|e| write_error(&e))?;
        let payload = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let (fs, dir) = (Arc::clone(&inner.fs), inner.dir.clone());
        spawn_io(move || {
            write_framed_file_atomic(&*fs, &dir, VOTE_FILE, &payload, MAX_SMALL_FILE_BYTES)
        })
        .await
        .and_then(|result| result)
        .map_err(|e| StorageIOError::write_vote(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().await.vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        inner.check_not_failed().map_err(|e| write_error(&e))?;
        // Entries at or below the purge point are already covered by a durable snapshot; openraft
        // does not send them, but dropping them (instead of failing) is harmless.
        let purged_index = inner.last_purged.map(|log_id| log_id.index);
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|entry| purged_index.is_none_or(|purged| entry.log_id.index > purged))
            .collect();
        if entries.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let mut expected = inner.next_index();
        for entry in &entries {
            let index = entry.log_id.index;
            if let Some(expected) = expected
                && index != expected
            {
                return Err(write_error(&invalid_data(format!(
                    "append of index {index} would leave a hole or overwrite: next index is {expected}"
                ))));
            }
            expected = Some(index + 1);
        }
        let (buf, offsets) = encode_segment(entries.iter()).map_err(|e| write_error(&e))?;
        let (fs, path) = (Arc::clone(&inner.fs), inner.path());
        let written = buf.len() as u64;
        let result = spawn_io(move || {
            fs.append(&path, &buf)?;
            fs.sync_file(&path)
        })
        .await
        .and_then(|result| result);
        if let Err(e) = result {
            inner.failed = Some(e.to_string());
            callback.log_io_completed(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(write_error(&e));
        }
        let base_offset = inner.file_len;
        inner.file_len += written;
        for (entry, offset) in entries.into_iter().zip(offsets) {
            let offset = base_offset + offset;
            inner
                .entries
                .insert(entry.log_id.index, StoredEntry { offset, entry });
        }
        // Durable now: only at this point may raft count these entries as persisted.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().await;
        inner.check_not_failed().map_err(|e| write_error(&e))?;
        let Some(offset) = inner
            .entries
            .range(log_id.index..)
            .next()
            .map(|(_, stored)| stored.offset)
        else {
            return Ok(());
        };
        let (fs, path) = (Arc::clone(&inner.fs), inner.path());
        let result = spawn_io(move || {
            fs.set_len(&path, offset)?;
            fs.sync_file(&path)
        })
        .await
        .and_then(|result| result);
        if let Err(e) = result {
            inner.failed = Some(e.to_string());
            return Err(write_error(&e));
        }
        let _truncated = inner.entries.split_off(&log_id.index);
        inner.file_len = offset;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().await;
        inner.check_not_failed().map_err(|e| write_error(&e))?;
        if inner
            .last_purged
            .is_some_and(|purged| purged.index >= log_id.index)
        {
            return Ok(());
        }
        // The marker goes first: a crash before the rewrite leaves purged entries in the segment,
        // which recovery skips; the other order could lose the marker and leave a hole.
        let payload = serde_json::to_vec(&log_id).map_err(|e| write_error(&io::Error::other(e)))?;
        let (fs, dir) = (Arc::clone(&inner.fs), inner.dir.clone());
        spawn_io(move || {
            write_framed_file_atomic(&*fs, &dir, PURGED_FILE, &payload, MAX_SMALL_FILE_BYTES)
        })
        .await
        .and_then(|result| result)
        .map_err(|e| write_error(&e))?;
        inner.last_purged = Some(log_id);
        inner.entries = inner.entries.split_off(&(log_id.index + 1));

        // Replace the segment by one holding only the live entries, so it stays bounded.
        let (buf, offsets) = encode_segment(inner.entries.values().map(|stored| &stored.entry))
            .map_err(|e| write_error(&e))?;
        let segment_len = buf.len() as u64;
        let (fs, dir) = (Arc::clone(&inner.fs), inner.dir.clone());
        let result = spawn_io(move || write_file_atomic(&*fs, &dir, LOG_FILE, &buf))
            .await
            .and_then(|result| result);
        if let Err(e) = result {
            inner.failed = Some(e.to_string());
            return Err(write_error(&e));
        }
        inner.file_len = segment_len;
        for (stored, offset) in inner.entries.values_mut().zip(offsets) {
            stored.offset = offset;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs::{self, OpenOptions};
    use std::io::Write;

    use contextdb_storage::fs::RealFs;
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, Membership, RaftLogReader};
    use tempfile::TempDir;

    use super::*;
    use crate::command::Command;
    use crate::record::RECORD_HEADER_BYTES;
    use crate::state_machine::StateMachine;
    use crate::types::LogId;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 0), index)
    }

    fn normal(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: openraft::EntryPayload::Normal(Command::CreateNamespace {
                namespace: iceberg::NamespaceIdent::new(format!("ns{index}")),
                properties: BTreeMap::new(),
            }),
        }
    }

    async fn open_store(dir: &Path) -> LogStore {
        LogStore::open(Arc::new(RealFs), dir.to_path_buf())
            .await
            .unwrap()
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        store.blocking_append(entries).await.unwrap();
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        store
            .try_get_log_entries(..)
            .await
            .unwrap()
            .iter()
            .map(|entry| entry.log_id.index)
            .collect()
    }

    #[tokio::test]
    async fn entries_vote_and_purge_survive_reopen() {
        let dir = TempDir::new().unwrap();
        let mut store = open_store(dir.path()).await;
        append(&mut store, (1..=6).map(|i| normal(1, i)).collect()).await;
        store.save_vote(&Vote::new(3, 7)).await.unwrap();
        store.purge(log_id(1, 2)).await.unwrap();
        store.truncate(log_id(1, 5)).await.unwrap();
        append(&mut store, vec![normal(2, 5)]).await;
        drop(store);

        let mut store = open_store(dir.path()).await;
        assert_eq!(indexes(&mut store).await, vec![3, 4, 5]);
        let entries = store.try_get_log_entries(5..6).await.unwrap();
        assert_eq!(entries[0].log_id, log_id(2, 5));
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(2, 5)));
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_at_the_last_valid_record() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut store = open_store(dir.path()).await;
        append(&mut store, (1..=3).map(|i| normal(1, i)).collect()).await;
        drop(store);
        let valid_len = fs::metadata(&path).unwrap().len();

        // A record cut in the middle of its payload, as a crash during write leaves it.
        let mut extra = Vec::new();
        let payload = serde_json::to_vec(&normal(1, 4)).unwrap();
        encode_record(&payload, MAX_RECORD_BYTES, &mut extra);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&extra[..extra.len() - 3]).unwrap();
        drop(file);

        let mut store = open_store(dir.path()).await;
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3]);
        assert_eq!(fs::metadata(&path).unwrap().len(), valid_len);
        // The log continues cleanly after the cut.
        append(&mut store, vec![normal(1, 4)]).await;
        drop(store);

        // Garbage with a bad CRC after the last record is dropped the same way.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[
            9, 0, 0, 0, 1, 2, 3, 4, b'x', b'y', b'z', b'w', b'v', b'u', b't', b's', b'r',
        ])
        .unwrap();
        drop(file);
        let mut store = open_store(dir.path()).await;
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3, 4]);
    }

    /// A log of entries 1..=5 in `dir`; returns each record's byte offset.
    async fn five_entries(dir: &Path) -> Vec<u64> {
        let mut store = open_store(dir).await;
        append(&mut store, (1..=5).map(|i| normal(1, i)).collect()).await;
        let inner = store.inner.lock().await;
        inner.entries.values().map(|stored| stored.offset).collect()
    }

    fn flip_byte(path: &Path, offset: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[offset as usize] ^= 0x40;
        fs::write(path, bytes).unwrap();
    }

    #[tokio::test]
    async fn damage_before_valid_entries_refuses_to_open_until_repaired() {
        let data = TempDir::new().unwrap();
        let dir = data.path().join("raft");
        let path = dir.join(LOG_FILE);
        let offsets = five_entries(&dir).await;
        let original = fs::read(&path).unwrap();
        // A flipped bit inside entry 3's payload: entries 4 and 5 are intact after it.
        flip_byte(&path, offsets[2] + RECORD_HEADER_BYTES as u64 + 5);

        let Err(error) = LogStore::open(Arc::new(RealFs), dir.clone()).await else {
            panic!("a log damaged in the middle must not open");
        };
        let CatalogError::DamagedLog {
            offset,
            entries_after,
            first_index_after,
            resume_offset,
            ..
        } = &error
        else {
            panic!("expected DamagedLog, got {error}");
        };
        assert_eq!(
            (*offset, *entries_after, *first_index_after, *resume_offset),
            (offsets[2], 2, 4, offsets[3])
        );
        let message = error.to_string();
        for needle in [
            path.display().to_string(),
            format!("byte {}", offsets[2]),
            format!("contextdb repair-log --data-dir {}", data.path().display()),
        ] {
            assert!(message.contains(&needle), "{needle:?} not in: {message}");
        }
        // Refusing changed nothing.
        assert_eq!(fs::read(&path).unwrap().len(), original.len());

        let report = crate::repair_log(&dir).unwrap();
        assert_eq!(report.cut_at, Some(offsets[2]));
        assert_eq!((report.entries_kept, report.entries_dropped), (2, 2));
        assert_eq!(
            report.bytes_dropped,
            original.len() as u64 - offsets[2],
            "{report}"
        );
        let backup = report.backup_path.clone().unwrap();
        assert_eq!(fs::read(&backup).unwrap().len(), original.len());
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[2]);

        let mut store = open_store(&dir).await;
        assert_eq!(indexes(&mut store).await, vec![1, 2]);
        append(&mut store, vec![normal(1, 3)]).await;
        drop(store);
        // A second repair finds nothing to do.
        let report = crate::repair_log(&dir).unwrap();
        assert_eq!((report.cut_at, report.entries_kept), (None, 3));
    }

    #[tokio::test]
    async fn damage_in_the_last_record_is_a_torn_tail() {
        let data = TempDir::new().unwrap();
        let dir = data.path().join("raft");
        let path = dir.join(LOG_FILE);
        let offsets = five_entries(&dir).await;
        flip_byte(&path, offsets[4] + RECORD_HEADER_BYTES as u64 + 5);
        let mut store = open_store(&dir).await;
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3, 4]);
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[4]);

        // Zeroes after the end (a size extended by a crash before its data landed) too.
        drop(store);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0; 64]).unwrap();
        drop(file);
        let mut store = open_store(&dir).await;
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn repair_refuses_an_open_log() {
        let data = TempDir::new().unwrap();
        let dir = data.path().join("raft");
        let fs = RealFs;
        let _offsets = five_entries(&dir).await;
        let lock = fs.try_lock(&dir.join(crate::layout::LOCK_FILE)).unwrap();
        assert!(lock.is_some());
        assert!(matches!(
            crate::repair_log(&dir),
            Err(CatalogError::Locked { .. })
        ));
    }

    #[tokio::test]
    async fn appends_that_leave_a_hole_are_refused() {
        let dir = TempDir::new().unwrap();
        let mut store = open_store(dir.path()).await;
        append(&mut store, vec![normal(1, 1)]).await;
        assert!(store.blocking_append(vec![normal(1, 3)]).await.is_err());
        assert_eq!(indexes(&mut store).await, vec![1]);
    }

    #[tokio::test]
    async fn purge_bounds_the_segment_size() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut store = open_store(dir.path()).await;
        append(&mut store, (1..=100).map(|i| normal(1, i)).collect()).await;
        let full = fs::metadata(&path).unwrap().len();
        store.purge(log_id(1, 95)).await.unwrap();
        let after = fs::metadata(&path).unwrap().len();
        assert!(
            after * 10 < full,
            "segment {after} bytes after purge, {full} before"
        );
        assert_eq!(indexes(&mut store).await, vec![96, 97, 98, 99, 100]);
        // Truncation after a rewrite uses the rewritten offsets.
        store.truncate(log_id(1, 98)).await.unwrap();
        drop(store);
        let mut store = open_store(dir.path()).await;
        assert_eq!(indexes(&mut store).await, vec![96, 97]);
    }

    #[test]
    fn membership_entries_round_trip() {
        // Membership entries go through the same JSON path as commands.
        let entry = Entry {
            log_id: log_id(1, 1),
            payload: openraft::EntryPayload::Membership(Membership::new(
                vec![std::collections::BTreeSet::from([1u64])],
                None,
            )),
        };
        let json = serde_json::to_vec(&entry).unwrap();
        let back: Entry = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.log_id, entry.log_id);
    }

    /// Builds a fresh log store and state machine in a temporary directory for the suite.
    struct TempStoreBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for TempStoreBuilder {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
            let dir = TempDir::new().map_err(|e| StorageIOError::write_logs(&e))?;
            let log = LogStore::open(Arc::new(RealFs), dir.path().to_path_buf())
                .await
                .map_err(|e| StorageIOError::write_logs(&e))?;
            let (sm, _shared) = StateMachine::open(Arc::new(RealFs), dir.path().to_path_buf())
                .await
                .map_err(|e| StorageIOError::write_logs(&e))?;
            Ok((dir, log, sm))
        }
    }

    /// The upstream openraft storage conformance suite. It creates its own runtimes, so it runs
    /// in a plain test.
    #[test]
    fn openraft_storage_suite() {
        Suite::<TypeConfig, LogStore, StateMachine, TempStoreBuilder, TempDir>::test_all(
            TempStoreBuilder,
        )
        .unwrap();
    }
}
