//! Errors of opening and running the catalog's raft node.
//!
//! Catalog operations themselves return [`iceberg::Error`], as the [`iceberg::Catalog`] trait
//! requires; this type covers what happens around them: bad configuration, the raft directory,
//! and the raft node.

use std::path::PathBuf;

use crate::types::NodeId;

/// Why the catalog could not be opened or its raft node failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The configuration is unusable; the message names the field.
    #[error("invalid catalog configuration: {0}")]
    InvalidConfig(String),

    /// Another catalog (in this or another process) has the raft directory open.
    #[error("raft directory {} is in use by another catalog", path.display())]
    Locked { path: PathBuf },

    /// Reading or writing the raft directory failed, or its files are damaged.
    #[error("raft storage in {}: {source}", path.display())]
    Storage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The raft log is damaged before its end: valid entries follow the damaged record, so
    /// cutting the log there, as recovery does with a torn tail, could drop acknowledged
    /// commits. The node refuses to start until an operator runs `repair_command`
    /// ([`crate::repair_log`]), which keeps a copy of the file and cuts it at `offset`.
    #[error(
        "raft log {} is damaged at byte {offset} ({reason}), and {entries_after} valid entries \
         follow it (from index {first_index_after} at byte {resume_offset}): refusing to start \
         rather than silently drop them. To cut the log at byte {offset}, keeping a copy of the \
         file, run: {repair_command}  (the entries after the damage are then lost unless a \
         backup or another replica has them; if the machine lost power during a write they may \
         be an unacknowledged write torn out of order, and nothing acknowledged is lost)",
        path.display()
    )]
    DamagedLog {
        path: PathBuf,
        offset: u64,
        reason: String,
        resume_offset: u64,
        first_index_after: u64,
        entries_after: u64,
        repair_command: String,
    },

    /// The raft node refused an operation or stopped.
    #[error("raft node {node_id}: {message}")]
    Raft { node_id: NodeId, message: String },

    /// The node did not become leader of its single-member group in time.
    #[error("raft node {node_id} did not become leader within {timeout_ms} ms")]
    LeaderTimeout { node_id: NodeId, timeout_ms: u64 },
}
