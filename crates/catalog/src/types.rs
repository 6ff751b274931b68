//! The openraft type configuration of the catalog group.

use std::io::Cursor;

use crate::command::{Command, CommandResponse};

/// Raft node identifier.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Raft types of the catalog: log entries carry [`Command`]s and produce
    /// [`CommandResponse`]s; snapshots are an in-memory byte buffer.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The raft handle of the catalog group.
pub type CatalogRaft = openraft::Raft<TypeConfig>;

pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
