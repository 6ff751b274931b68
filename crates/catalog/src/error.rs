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

    /// The raft node refused an operation or stopped.
    #[error("raft node {node_id}: {message}")]
    Raft { node_id: NodeId, message: String },

    /// The node did not become leader of its single-member group in time.
    #[error("raft node {node_id} did not become leader within {timeout_ms} ms")]
    LeaderTimeout { node_id: NodeId, timeout_ms: u64 },
}
