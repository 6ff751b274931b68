//! The raft state machine: applies catalog commands and persists snapshots.
//!
//! `apply` only changes memory; durability comes from the log plus snapshots. Every snapshot,
//! built locally or installed from a leader, is written to `raft_dir/snapshot` (atomically, see
//! [`crate::record`]) before openraft learns about it, so openraft only purges log entries that a
//! durable snapshot covers. On restart the state machine starts from that snapshot and openraft
//! re-applies the committed log after it.

use std::io::{self, Cursor};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use contextdb_storage::fs::Fs;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::command::{CatalogState, CommandResponse};
use crate::record::{MAX_SNAPSHOT_BYTES, invalid_data, read_framed_file, write_framed_file_atomic};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// File name of the snapshot inside the raft directory.
pub const SNAPSHOT_FILE: &str = "snapshot";

/// Version of the snapshot file layout; bumped when [`SnapshotFile`] changes incompatibly.
const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// The applied catalog, shared between the state machine (the only writer) and the catalog.
#[derive(Debug, Default)]
pub(crate) struct SharedState {
    applied: RwLock<AppliedState>,
}

/// Everything the state machine has applied, read together under one lock.
#[derive(Clone, Debug, Default)]
pub(crate) struct AppliedState {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) last_membership: StoredMembership,
    pub(crate) catalog: CatalogState,
}

impl AppliedState {
    /// The catalog version: the index of the last applied log entry (0 before any).
    pub(crate) fn applied_index(&self) -> u64 {
        self.last_applied.map_or(0, |log_id| log_id.index)
    }
}

impl SharedState {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        // Apply validates a command before changing anything, so a panic cannot leave a half
        // applied command behind: a poisoned lock still holds a consistent state.
        self.applied
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, AppliedState> {
        self.applied
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The snapshot file's payload.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format_version: u32,
    meta: SnapshotMeta,
    state: CatalogState,
}

/// The current snapshot: its metadata and the bytes sent to followers (JSON of the state).
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine handed to openraft; clones share everything (the clone is the snapshot
/// builder).
#[derive(Clone)]
pub(crate) struct StateMachine {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    shared: Arc<SharedState>,
    /// Serializes snapshot writes and holds the latest durable snapshot.
    current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    /// Makes snapshot ids unique among snapshots built by this process.
    snapshot_counter: Arc<AtomicU64>,
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from the snapshot file when there is one.
    pub(crate) async fn open(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
    ) -> io::Result<(Self, Arc<SharedState>)> {
        let path = dir.join(SNAPSHOT_FILE);
        let reader = Arc::clone(&fs);
        let loaded = tokio::task::spawn_blocking(move || {
            read_framed_file(&*reader, &path, MAX_SNAPSHOT_BYTES)
        })
        .await
        .map_err(io::Error::other)??;
        let (applied, current) = match loaded {
            None => (AppliedState::default(), None),
            Some(payload) => {
                let file: SnapshotFile = serde_json::from_slice(&payload).map_err(|e| {
                    invalid_data(format!(
                        "snapshot file in {} does not decode: {e}",
                        dir.display()
                    ))
                })?;
                if file.format_version != SNAPSHOT_FORMAT_VERSION {
                    return Err(invalid_data(format!(
                        "snapshot file in {} has format version {}, expected {SNAPSHOT_FORMAT_VERSION}",
                        dir.display(),
                        file.format_version
                    )));
                }
                let data = serde_json::to_vec(&file.state).map_err(io::Error::other)?;
                let applied = AppliedState {
                    last_applied: file.meta.last_log_id,
                    last_membership: file.meta.last_membership.clone(),
                    catalog: file.state,
                };
                (
                    applied,
                    Some(StoredSnapshot {
                        meta: file.meta,
                        data,
                    }),
                )
            }
        };
        let shared = Arc::new(SharedState {
            applied: RwLock::new(applied),
        });
        let sm = Self {
            fs,
            dir,
            shared: Arc::clone(&shared),
            current_snapshot: Arc::new(Mutex::new(current)),
            snapshot_counter: Arc::new(AtomicU64::new(0)),
        };
        Ok((sm, shared))
    }

    /// Writes a snapshot file durably; the caller holds the `current_snapshot` lock.
    async fn persist(&self, meta: &SnapshotMeta, state: CatalogState) -> Result<(), StorageError> {
        let file = SnapshotFile {
            format_version: SNAPSHOT_FORMAT_VERSION,
            meta: meta.clone(),
            state,
        };
        let signature = meta.signature();
        let (fs, dir) = (Arc::clone(&self.fs), self.dir.clone());
        tokio::task::spawn_blocking(move || {
            let payload = serde_json::to_vec(&file).map_err(io::Error::other)?;
            write_framed_file_atomic(&*fs, &dir, SNAPSHOT_FILE, &payload, MAX_SNAPSHOT_BYTES)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|result| result)
        .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e).into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let applied = self.shared.read().clone();
        let data = serde_json::to_vec(&applied.catalog)
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let counter = self.snapshot_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot_id = match applied.last_applied {
            Some(log_id) => format!("{}-{}-{counter}", log_id.leader_id, log_id.index),
            None => format!("--{counter}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership,
            snapshot_id,
        };

        let mut current = self.current_snapshot.lock().await;
        // An installed snapshot may have overtaken this build; never replace it with an older one.
        let newer_exists = current
            .as_ref()
            .is_some_and(|snapshot| snapshot.meta.last_log_id > meta.last_log_id);
        if !newer_exists {
            self.persist(&meta, applied.catalog).await?;
            *current = Some(StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            });
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.shared.write();
        let mut responses = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Ok(()),
                EntryPayload::Normal(command) => applied.catalog.apply(&command),
                EntryPayload::Membership(membership) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Ok(())
                }
            };
            if let Err(rejection) = &response {
                tracing::debug!(log_id = %entry.log_id, %rejection, "catalog command rejected");
            }
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state: CatalogState = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut current = self.current_snapshot.lock().await;
        // Durable first: openraft purges the log up to this snapshot once this returns.
        self.persist(meta, state.clone()).await?;
        *self.shared.write() = AppliedState {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            catalog: state,
        };
        *current = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.current_snapshot.lock().await;
        Ok(current.as_ref().map(|snapshot| Snapshot {
            meta: snapshot.meta.clone(),
            snapshot: Box::new(Cursor::new(snapshot.data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use iceberg::NamespaceIdent;
    use openraft::{CommittedLeaderId, Membership};

    use contextdb_storage::fs::RealFs;

    use super::*;
    use crate::command::Command;

    #[tokio::test]
    async fn snapshot_survives_reopen_and_installs_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, shared) = StateMachine::open(Arc::new(RealFs), dir.path().to_path_buf())
            .await
            .unwrap();
        let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
        let responses = sm
            .apply(vec![
                Entry {
                    log_id: log_id(1),
                    payload: EntryPayload::Membership(Membership::new(
                        vec![std::collections::BTreeSet::from([1])],
                        None,
                    )),
                },
                Entry {
                    log_id: log_id(2),
                    payload: EntryPayload::Normal(Command::CreateNamespace {
                        namespace: NamespaceIdent::new("g".into()),
                        properties: BTreeMap::new(),
                    }),
                },
                Entry {
                    log_id: log_id(3),
                    payload: EntryPayload::Normal(Command::DropNamespace {
                        namespace: NamespaceIdent::new("missing".into()),
                    }),
                },
            ])
            .await
            .unwrap();
        assert!(responses[1].is_ok());
        assert!(
            responses[2].is_err(),
            "dropping a missing namespace is rejected"
        );
        assert_eq!(shared.read().applied_index(), 3);

        let built = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(built.meta.last_log_id, Some(log_id(3)));
        drop(sm);

        let (mut reopened, shared) = StateMachine::open(Arc::new(RealFs), dir.path().to_path_buf())
            .await
            .unwrap();
        assert_eq!(shared.read().applied_index(), 3);
        assert!(
            shared
                .read()
                .catalog
                .namespace_exists(&NamespaceIdent::new("g".into()))
        );
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, built.meta);

        let other_dir = tempfile::tempdir().unwrap();
        let (mut follower, follower_shared) =
            StateMachine::open(Arc::new(RealFs), other_dir.path().to_path_buf())
                .await
                .unwrap();
        follower
            .install_snapshot(&current.meta, current.snapshot)
            .await
            .unwrap();
        assert_eq!(follower_shared.read().catalog, shared.read().catalog);
        let (applied, membership) = follower.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(3)));
        assert_eq!(membership.log_id(), &Some(log_id(1)));
    }
}
