//! ContextDB's Iceberg catalog, replicated as an openraft state machine.
//!
//! ```text
//!  iceberg::Catalog / Transaction::commit        StagingCatalog (several tables, one commit)
//!               │                                          │
//!  RaftCatalog: write metadata JSON via FileIO ─► propose one Command (pointer swaps)
//!               │                                          │
//!  openraft ── LogStore (raft_dir/log, vote, purged) ── StateMachine (CatalogState in memory,
//!                                                        raft_dir/snapshot)
//! ```
//!
//! The replicated state is only pointers: namespaces with properties, and each table's current
//! metadata file location. A commit writes the new metadata files first and then proposes one
//! [`Command::Commit`] that compare-and-sets every table's pointer, so a multi-table commit is a
//! single log entry that applies entirely or not at all. The state machine does no I/O while
//! applying, which keeps replicas deterministic.
//!
//! A single node is a one-member raft group: [`RaftCatalog::open`] initialises it on first start,
//! recovers it from the snapshot and the log on restart, and waits until the node leads.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use contextdb_catalog::{RaftCatalog, RaftCatalogConfig, StagingCatalog};
//! use iceberg::io::FileIO;
//! use iceberg::transaction::{ApplyTransactionAction, Transaction};
//! use iceberg::{Catalog, NamespaceIdent, TableIdent};
//!
//! let config = RaftCatalogConfig::new("/data/raft", FileIO::new_with_fs(), "file:///data/warehouse");
//! let catalog = RaftCatalog::open(config).await?;
//! catalog.create_namespace(&NamespaceIdent::new("main".into()), Default::default()).await?;
//! # let person = TableIdent::from_strs(["main", "Person"])?;
//! # let knows = TableIdent::from_strs(["main", "KNOWS"])?;
//!
//! // Two tables, one atomic commit.
//! let staging = StagingCatalog::new(catalog.clone());
//! for ident in [&person, &knows] {
//!     let table = staging.load_table(ident).await?;
//!     let tx = Transaction::new(&table);
//!     let tx = tx.update_table_properties().set("k".into(), "v".into()).apply(tx)?;
//!     tx.commit(&staging).await?;
//! }
//! staging.commit().await?;
//! catalog.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod catalog;
pub mod command;
mod error;
mod log_store;
pub mod network;
mod record;
mod repair;
mod staging;
mod state_machine;
pub mod types;

pub use catalog::{
    CatalogView, DEFAULT_NODE_ID, DEFAULT_SNAPSHOT_EVERY_ENTRIES, RaftCatalog, RaftCatalogConfig,
    StagedTable, TableChange,
};
pub use command::{CatalogState, Command, CommandResponse, PointerSwap, Rejection};
pub use error::CatalogError;
pub use repair::{LogRepair, repair_command, repair_log};
pub use staging::StagingCatalog;
pub use types::{CatalogRaft, NodeId, TypeConfig};

/// Files inside the raft directory, for operators and crash tests.
pub mod layout {
    pub use crate::catalog::LOCK_FILE;
    pub use crate::log_store::{LOG_FILE, PURGED_FILE, VOTE_FILE};
    pub use crate::state_machine::SNAPSHOT_FILE;
}
