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
//! Recovery reads the segment and stops at the first record with a short header, a short payload
//! or a bad CRC, truncating the file there. Only the tail can be damaged that way: every record
//! before it was fsynced before any later record was written, and an entry is acknowledged only
//! after its fsync, so a cut-off record was never acknowledged to anyone.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};
use tokio::sync::Mutex;

use crate::record::{
    self, Decoded, MAX_RECORD_BYTES, decode_record, encode_record, invalid_data, read_framed_file,
    write_file_atomic, write_framed_file_atomic,
};
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
    dir: PathBuf,
    /// Append handle of the segment; shared with blocking I/O tasks.
    file: Arc<File>,
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
struct Scan {
    entries: BTreeMap<u64, StoredEntry>,
    valid_len: u64,
    damaged_tail: Option<String>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering from a torn tail.
    pub(crate) async fn open(dir: PathBuf) -> io::Result<Self> {
        let inner = spawn_io(move || LogInner::open(dir)).await??;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }
}

impl LogInner {
    fn open(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        let vote = read_json_file::<Vote>(&dir.join(VOTE_FILE))?;
        let last_purged = read_json_file::<LogId>(&dir.join(PURGED_FILE))?;
        let path = dir.join(LOG_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let scan = scan_segment(&bytes, last_purged.as_ref())?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if let Some(reason) = &scan.damaged_tail {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = scan.valid_len,
                dropped_bytes = bytes.len() as u64 - scan.valid_len,
                reason = %reason,
                "raft log ends in a damaged record (torn write); truncating it"
            );
            file.set_len(scan.valid_len)?;
            file.sync_all()?;
        }
        // The segment may have just been created: make its directory entry durable.
        record::sync_dir(&dir)?;
        Ok(Self {
            dir,
            file: Arc::new(file),
            file_len: scan.valid_len,
            entries: scan.entries,
            last_purged,
            vote,
            failed: None,
        })
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

/// Decodes the segment, stopping at the first damaged record.
fn scan_segment(bytes: &[u8], last_purged: Option<&LogId>) -> io::Result<Scan> {
    let mut entries = BTreeMap::new();
    let mut offset = 0usize;
    let mut previous_index: Option<u64> = None;
    let damaged_tail = loop {
        let (payload, next_offset) = match decode_record(bytes, offset, MAX_RECORD_BYTES) {
            Decoded::End => break None,
            Decoded::Invalid { reason } => break Some(format!("at byte {offset}: {reason}")),
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
        damaged_tail,
    })
}

fn read_json_file<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    read_framed_file(path, MAX_SMALL_FILE_BYTES)?
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
        let dir = inner.dir.clone();
        spawn_io(move || write_framed_file_atomic(&dir, VOTE_FILE, &payload, MAX_SMALL_FILE_BYTES))
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
        let file = Arc::clone(&inner.file);
        let written = buf.len() as u64;
        let result = spawn_io(move || {
            (&*file).write_all(&buf)?;
            file.sync_data()
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
        let file = Arc::clone(&inner.file);
        let result = spawn_io(move || {
            file.set_len(offset)?;
            file.sync_data()
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
        let dir = inner.dir.clone();
        spawn_io(move || {
            write_framed_file_atomic(&dir, PURGED_FILE, &payload, MAX_SMALL_FILE_BYTES)
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
        let dir = inner.dir.clone();
        let result = spawn_io(move || {
            write_file_atomic(&dir, LOG_FILE, &buf)?;
            OpenOptions::new().append(true).open(dir.join(LOG_FILE))
        })
        .await
        .and_then(|result| result);
        let file = match result {
            Ok(file) => file,
            Err(e) => {
                inner.failed = Some(e.to_string());
                return Err(write_error(&e));
            }
        };
        inner.file = Arc::new(file);
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

    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, Membership, RaftLogReader};
    use tempfile::TempDir;

    use super::*;
    use crate::command::Command;
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
        let mut store = LogStore::open(dir.path().to_path_buf()).await.unwrap();
        append(&mut store, (1..=6).map(|i| normal(1, i)).collect()).await;
        store.save_vote(&Vote::new(3, 7)).await.unwrap();
        store.purge(log_id(1, 2)).await.unwrap();
        store.truncate(log_id(1, 5)).await.unwrap();
        append(&mut store, vec![normal(2, 5)]).await;
        drop(store);

        let mut store = LogStore::open(dir.path().to_path_buf()).await.unwrap();
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
        let mut store = LogStore::open(dir.path().to_path_buf()).await.unwrap();
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

        let mut store = LogStore::open(dir.path().to_path_buf()).await.unwrap();
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
        let mut store = LogStore::open(dir.path().to_path_buf()).await.unwrap();
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn appends_that_leave_a_hole_are_refused() {
        let dir = TempDir::new().unwrap();
        let mut store = LogStore::open(dir.path().to_path_buf()).await.unwrap();
        append(&mut store, vec![normal(1, 1)]).await;
        assert!(store.blocking_append(vec![normal(1, 3)]).await.is_err());
        assert_eq!(indexes(&mut store).await, vec![1]);
    }

    #[tokio::test]
    async fn purge_bounds_the_segment_size() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut store = LogStore::open(dir.path().to_path_buf()).await.unwrap();
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
        let mut store = LogStore::open(dir.path().to_path_buf()).await.unwrap();
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
            let log = LogStore::open(dir.path().to_path_buf())
                .await
                .map_err(|e| StorageIOError::write_logs(&e))?;
            let (sm, _shared) = StateMachine::open(dir.path().to_path_buf())
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
