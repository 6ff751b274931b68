//! [`RaftCatalog`]: an [`iceberg::Catalog`] whose pointers live in a raft state machine.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contextdb_storage::fs::{Fs, FsLock, RealFs, create_dir_all_durable};
use iceberg::io::FileIO;
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, Runtime,
    TableCommit, TableCreation, TableIdent, TableRequirement, TableUpdate,
};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, RaftNetworkFactory, SnapshotPolicy};

use crate::command::{Command, PointerSwap, Rejection};
use crate::error::CatalogError;
use crate::log_store::LogStore;
use crate::network::UnreachableNetwork;
use crate::record::MAX_RECORD_BYTES;
use crate::state_machine::{SharedState, StateMachine};
use crate::types::{CatalogRaft, NodeId, TypeConfig};

/// Node id of a single-node catalog unless configured otherwise.
pub const DEFAULT_NODE_ID: NodeId = 1;

/// Log entries between snapshots unless configured otherwise.
pub const DEFAULT_SNAPSHOT_EVERY_ENTRIES: u64 = 1000;

/// File name of the lock that keeps two catalogs from opening one raft directory.
pub const LOCK_FILE: &str = "LOCK";

/// How long [`RaftCatalog::open`] waits for the node to lead its group and catch up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`RaftCatalog::open`] waits for the raft directory lock. A catalog dropped without
/// [`RaftCatalog::shutdown`] releases it only once its raft node has stopped in the background.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Pause between two attempts to take the raft directory lock.
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// Largest serialized command accepted for proposal: below the log's record limit, leaving room
/// for the entry envelope, so that an oversized proposal is refused instead of failing the log.
const MAX_COMMAND_BYTES: usize = MAX_RECORD_BYTES as usize - 64 * 1024;

/// Namespace property that overrides where the namespace's tables are placed.
const NAMESPACE_LOCATION_PROPERTY: &str = "location";

/// Name of the raft cluster, checked by openraft between peers.
const CLUSTER_NAME: &str = "contextdb-catalog";

/// How to open a [`RaftCatalog`].
#[derive(Clone, Debug)]
pub struct RaftCatalogConfig {
    /// This node's raft id.
    pub node_id: NodeId,
    /// Directory of the raft log, vote and snapshot; created if missing.
    pub raft_dir: PathBuf,
    /// Where table metadata files are written and read.
    pub file_io: FileIO,
    /// Root of table locations, e.g. `file:///abs/dir/warehouse` or `memory:///warehouse`; a
    /// table goes in `{warehouse}/{namespace path}/{table}/` unless its namespace has a
    /// `location` property or the table creation names a location.
    pub warehouse_location: String,
    /// Log entries applied between two snapshots; the log is purged after each snapshot.
    pub snapshot_every_entries: u64,
    /// The file system of the raft directory: the operating system's, or a power-failure
    /// simulation in tests.
    pub fs: Arc<dyn Fs>,
}

impl RaftCatalogConfig {
    /// A single-node configuration with default node id and snapshot interval.
    pub fn new(
        raft_dir: impl Into<PathBuf>,
        file_io: FileIO,
        warehouse_location: impl Into<String>,
    ) -> Self {
        Self {
            node_id: DEFAULT_NODE_ID,
            raft_dir: raft_dir.into(),
            file_io,
            warehouse_location: warehouse_location.into(),
            snapshot_every_entries: DEFAULT_SNAPSHOT_EVERY_ENTRIES,
            fs: Arc::new(RealFs),
        }
    }

    /// The same configuration on another file system (tests: [`contextdb_storage::fault`]).
    pub fn with_fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = fs;
        self
    }

    fn validate(&self) -> std::result::Result<(), CatalogError> {
        if self.snapshot_every_entries == 0 {
            return Err(CatalogError::InvalidConfig(
                "snapshot_every_entries must be at least 1".to_string(),
            ));
        }
        if self.warehouse_location.trim_end_matches('/').is_empty() {
            return Err(CatalogError::InvalidConfig(
                "warehouse_location must not be empty".to_string(),
            ));
        }
        Ok(())
    }

    fn raft_config(&self) -> std::result::Result<Config, CatalogError> {
        let every = self.snapshot_every_entries;
        let config = Config {
            cluster_name: CLUSTER_NAME.to_string(),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(every),
            // Keep one interval of logs behind the snapshot so that a slightly lagging follower
            // catches up from the log rather than a full snapshot.
            max_in_snapshot_log_to_keep: every,
            purge_batch_size: 1,
            // openraft asks for this to exceed the snapshot interval (see its docs).
            replication_lag_threshold: every
                .saturating_mul(2)
                .max(Config::default().replication_lag_threshold),
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| CatalogError::InvalidConfig(format!("raft configuration: {e}")))
    }
}

/// A table staged by [`RaftCatalog::stage_create_table`] or
/// [`RaftCatalog::stage_replace_table`], for [`RaftCatalog::commit_changes_creating`].
#[derive(Debug, Clone)]
pub struct StagedTable {
    pub table: Table,
    /// The metadata location of the table it replaces (None: a new table).
    pub replaces: Option<String>,
}

impl StagedTable {
    /// A new table.
    pub fn new(table: Table) -> StagedTable {
        StagedTable {
            table,
            replaces: None,
        }
    }
}

/// The changes one transaction makes to one table: what must hold, and what to change.
#[derive(Clone, Debug)]
pub struct TableChange {
    pub ident: TableIdent,
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
}

/// The table pointers at one catalog version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogView {
    /// Index of the last applied log entry: the catalog version.
    pub applied_index: u64,
    /// Every table's current metadata location at that version.
    pub tables: BTreeMap<TableIdent, String>,
}

/// An [`iceberg::Catalog`] replicated through raft.
///
/// Every change is one raft log entry; reads are served from this node's applied state.
pub struct RaftCatalog {
    node_id: NodeId,
    raft_dir: PathBuf,
    raft: CatalogRaft,
    shared: Arc<SharedState>,
    file_io: FileIO,
    warehouse_location: String,
    runtime: Runtime,
    /// Held while open; released by [`RaftCatalog::shutdown`].
    dir_lock: std::sync::Mutex<Option<FsLock>>,
}

impl fmt::Debug for RaftCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftCatalog")
            .field("node_id", &self.node_id)
            .field("raft_dir", &self.raft_dir)
            .field("warehouse_location", &self.warehouse_location)
            .field("applied_index", &self.applied_index())
            .finish_non_exhaustive()
    }
}

impl RaftCatalog {
    /// Opens the catalog as a single-member raft group, without networking.
    ///
    /// On first start the group is initialised with this node as its only member; on restart
    /// the state is recovered from the snapshot and the log. Returns once this node leads the
    /// group and has applied everything committed before.
    pub async fn open(config: RaftCatalogConfig) -> std::result::Result<Arc<Self>, CatalogError> {
        Self::open_with_network(config, UnreachableNetwork).await
    }

    /// [`RaftCatalog::open`] with a raft transport of the caller's choice. Group formation is
    /// still the single-member bootstrap: this node initialises a group of itself when the
    /// directory is fresh and waits until it leads.
    pub async fn open_with_network<N>(
        config: RaftCatalogConfig,
        network: N,
    ) -> std::result::Result<Arc<Self>, CatalogError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config()?);
        let dir = config.raft_dir.clone();
        let storage_error = |source| CatalogError::Storage {
            path: dir.clone(),
            source,
        };
        let fs = Arc::clone(&config.fs);
        create_dir_all_durable(&*fs, &dir).map_err(storage_error)?;
        let dir_lock = lock_raft_dir(&*fs, &dir).await?;
        let log_store = LogStore::open(Arc::clone(&fs), dir.clone()).await?;
        let (state_machine, shared) = StateMachine::open(fs, dir.clone())
            .await
            .map_err(storage_error)?;

        let node_id = config.node_id;
        let raft_error = |message: String| CatalogError::Raft { node_id, message };
        let raft = CatalogRaft::new(node_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| raft_error(e.to_string()))?;
        let catalog = Arc::new(Self {
            node_id,
            raft_dir: dir.clone(),
            raft,
            shared,
            file_io: config.file_io,
            warehouse_location: config.warehouse_location.trim_end_matches('/').to_string(),
            runtime: Runtime::current(),
            dir_lock: std::sync::Mutex::new(Some(dir_lock)),
        });
        if let Err(e) = catalog.become_leader().await {
            catalog.shutdown().await;
            return Err(e);
        }
        tracing::info!(
            node_id,
            raft_dir = %dir.display(),
            applied_index = catalog.applied_index(),
            "raft catalog open"
        );
        Ok(catalog)
    }

    /// Initialises a fresh group, then waits for leadership and for the state to catch up.
    async fn become_leader(&self) -> std::result::Result<(), CatalogError> {
        let node_id = self.node_id;
        let raft_error = |message: String| CatalogError::Raft { node_id, message };
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| raft_error(e.to_string()))?;
        if initialized {
            // A directory written under another node id would leave this node waiting forever for
            // an election it cannot take part in; say so instead.
            let voters: Vec<NodeId> = self
                .raft
                .with_raft_state(|state| state.membership_state.effective().voter_ids().collect())
                .await
                .map_err(|e| raft_error(e.to_string()))?;
            if !voters.contains(&node_id) {
                return Err(CatalogError::InvalidConfig(format!(
                    "node id {node_id} is not a voter of the group stored in {} (voters: {voters:?})",
                    self.raft_dir.display()
                )));
            }
        } else {
            let members = BTreeMap::from([(node_id, BasicNode::default())]);
            self.raft
                .initialize(members)
                .await
                .map_err(|e| raft_error(format!("initialising a one-member group: {e}")))?;
        }
        let timeout = CatalogError::LeaderTimeout {
            node_id,
            timeout_ms: OPEN_TIMEOUT.as_millis() as u64,
        };
        self.raft
            .wait(Some(OPEN_TIMEOUT))
            .metrics(
                |metrics| metrics.current_leader == Some(node_id),
                "catalog node leads its group",
            )
            .await
            .map_err(|_| timeout)?;
        // Wait until the state machine has applied everything this leader has committed, which
        // covers every entry acknowledged before a restart, so reads are complete from the start.
        let wait = tokio::time::timeout(OPEN_TIMEOUT, self.raft.ensure_linearizable());
        match wait.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(raft_error(format!("catching up after election: {e}"))),
            Err(_) => Err(CatalogError::LeaderTimeout {
                node_id,
                timeout_ms: OPEN_TIMEOUT.as_millis() as u64,
            }),
        }
    }

    /// Stops the raft node and releases the raft directory. Reads keep answering from the last
    /// applied state; writes fail.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node_id = self.node_id, error = %e, "raft node did not stop cleanly");
        }
        let lock = self
            .dir_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(lock);
    }

    /// The catalog version: the index of the last applied raft log entry.
    pub fn applied_index(&self) -> u64 {
        self.shared.read().applied_index()
    }

    /// Every table's current metadata location, all read at one applied index.
    pub async fn table_locations(&self) -> BTreeMap<TableIdent, String> {
        self.shared.read().catalog.table_locations().clone()
    }

    /// Every table's metadata location together with the version they were read at.
    pub fn catalog_view(&self) -> CatalogView {
        let applied = self.shared.read();
        CatalogView {
            applied_index: applied.applied_index(),
            tables: applied.catalog.table_locations().clone(),
        }
    }

    /// This node's raft id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The raft handle, for serving peer RPCs and metrics.
    pub fn raft(&self) -> &CatalogRaft {
        &self.raft
    }

    /// The FileIO table metadata is read and written with.
    pub fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    /// Commits changes to several tables atomically: all of them become visible, or none.
    ///
    /// For each table this loads its current metadata, checks the requirements of its changes
    /// (in order; several changes to one table apply one after the other), applies the updates
    /// and writes the new metadata file. Then one `Commit` log entry swaps every pointer,
    /// expecting each to still point where it was loaded from. A table whose changes have no
    /// updates is only checked: its pointer must not have moved, but no file is written.
    ///
    /// Returns the committed tables in the order in which they first appear in `changes`.
    pub async fn commit_changes(&self, changes: Vec<TableChange>) -> Result<Vec<Table>> {
        self.commit_changes_creating(Vec::new(), changes).await
    }

    /// Writes the first metadata file of a new table that will take the place of the existing
    /// table of that name (CREATE OR REPLACE), without touching it: committed by
    /// [`RaftCatalog::commit_changes_creating`] only if the table still points where it does
    /// now, so the old table is replaced whole, in one log entry, or not at all.
    pub async fn stage_replace_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<StagedTable> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let current = self
            .shared
            .read()
            .catalog
            .table_location(&ident)
            .map(str::to_string)
            .ok_or_else(|| rejection_error(Rejection::TableNotFound { ident }))?;
        let table = self.stage_table(namespace, creation, true).await?;
        Ok(StagedTable {
            table,
            replaces: Some(current),
        })
    }

    /// [`RaftCatalog::commit_changes`] that also creates the tables `created` (from
    /// [`RaftCatalog::stage_create_table`] or [`RaftCatalog::stage_replace_table`]), in the
    /// same log entry: a table and its first data become visible together, or neither does.
    /// A new table must still not exist; a replacement's predecessor must not have moved.
    pub async fn commit_changes_creating(
        &self,
        created: Vec<StagedTable>,
        changes: Vec<TableChange>,
    ) -> Result<Vec<Table>> {
        let mut order: Vec<TableIdent> = Vec::new();
        let mut grouped: HashMap<TableIdent, Vec<TableChange>> = HashMap::new();
        // By ident: the staged metadata file, and where the pointer must be (None: nowhere).
        let mut staged: HashMap<TableIdent, (String, Option<String>)> = HashMap::new();
        for StagedTable { table, replaces } in &created {
            let location = table.metadata_location().ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("staged table {} has no metadata file", table.identifier()),
                )
            })?;
            if staged
                .insert(
                    table.identifier().clone(),
                    (location.to_string(), replaces.clone()),
                )
                .is_some()
            {
                return Err(Error::new(
                    ErrorKind::DataInvalid,
                    format!(
                        "table {} is created twice in one commit",
                        table.identifier()
                    ),
                ));
            }
            order.push(table.identifier().clone());
            grouped.insert(table.identifier().clone(), Vec::new());
        }
        for change in changes {
            if !grouped.contains_key(&change.ident) {
                order.push(change.ident.clone());
            }
            grouped
                .entry(change.ident.clone())
                .or_default()
                .push(change);
        }
        if order.is_empty() {
            return Ok(Vec::new());
        }
        // Every base pointer is read at one applied index, and must still be there when the
        // commit applies. A staged table's base is its staged metadata, and its pointer must
        // be where staging found it: nowhere for a new table.
        let bases: Vec<(Option<String>, Option<String>)> = {
            let applied = self.shared.read();
            order
                .iter()
                .map(|ident| match staged.get(ident) {
                    Some((location, replaces)) => (Some(location.clone()), replaces.clone()),
                    None => {
                        let base = applied.catalog.table_location(ident).map(str::to_string);
                        (base.clone(), base)
                    }
                })
                .collect()
        };
        let prepared = futures::future::join_all(order.into_iter().zip(bases).map(
            |(ident, (base, expected))| {
                let changes = grouped.remove(&ident).expect("every ident has changes");
                self.prepare_table_commit(ident, base, expected, changes)
            },
        ))
        .await;
        let mut tables = Vec::with_capacity(prepared.len());
        let mut swaps = Vec::with_capacity(prepared.len());
        let mut written = Vec::new();
        let mut first_error = None;
        for result in prepared {
            match result {
                Ok(table) => {
                    written.extend(table.written.clone());
                    swaps.push(table.swap);
                    tables.push(table.table);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // On failure the staged tables' first metadata files go too: nothing will use them.
        written.extend(staged.into_values().map(|(location, _)| location));
        if let Some(e) = first_error {
            self.delete_unreferenced(written).await;
            return Err(e);
        }
        match self.propose(Command::Commit { changes: swaps }).await? {
            Ok(_) => Ok(tables),
            Err(rejection) => {
                // Rejected commands never point at these files.
                self.delete_unreferenced(written).await;
                Err(rejection_error(rejection))
            }
        }
    }

    /// Writes the first metadata file of a new table without making the table visible (the
    /// checks of `create_table` apply now and again when it is committed). Pass the table to
    /// [`RaftCatalog::commit_changes_creating`] to create it with its first changes; one never
    /// committed leaves only that file behind, which VACUUM removes.
    pub async fn stage_create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        self.stage_table(namespace, creation, false).await
    }

    async fn stage_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
        replacing: bool,
    ) -> Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        if ident.name.is_empty() {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                "table name must not be empty",
            ));
        }
        let namespace_properties = {
            let applied = self.shared.read();
            if !replacing && applied.catalog.table_location(&ident).is_some() {
                return Err(rejection_error(Rejection::TableAlreadyExists { ident }));
            }
            applied
                .catalog
                .namespace_properties(namespace)
                .ok_or_else(|| Self::namespace_not_found(namespace))?
        };
        let location = match &creation.location {
            Some(location) => location.clone(),
            None => self.default_table_location(namespace, &namespace_properties, &ident.name),
        };
        let creation = TableCreation {
            location: Some(location.clone()),
            ..creation
        };
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(&location, &metadata);
        metadata.write_to(&self.file_io, &metadata_location).await?;
        let metadata_location = metadata_location.to_string();
        self.build_table(ident, metadata_location, metadata)
    }

    /// Checks and applies one table's changes and writes its new metadata file; the swap
    /// expects the pointer at `expected` (None: no table yet).
    async fn prepare_table_commit(
        &self,
        ident: TableIdent,
        base_location: Option<String>,
        expected: Option<String>,
        changes: Vec<TableChange>,
    ) -> Result<PreparedTable> {
        let Some(base_location) = base_location else {
            for requirement in changes.iter().flat_map(|change| &change.requirements) {
                requirement.check(None)?;
            }
            return Err(Error::new(
                ErrorKind::TableNotFound,
                format!(
                    "table {ident} does not exist; create it with create_table before committing to it"
                ),
            ));
        };
        let base = self.load_table_at(&ident, &base_location).await?;
        let Some(metadata) = apply_changes(base.metadata().clone(), &base_location, changes)
            .map_err(|e| e.with_context("table", ident.to_string()))?
        else {
            let swap = PointerSwap {
                ident,
                expected,
                new_location: base_location,
            };
            return Ok(PreparedTable {
                table: base,
                swap,
                written: None,
            });
        };
        let new_location = next_metadata_location(&base_location, &metadata);
        metadata.write_to(&self.file_io, &new_location).await?;
        let new_location = new_location.to_string();
        let table = self.build_table(ident.clone(), new_location.clone(), metadata)?;
        Ok(PreparedTable {
            table,
            swap: PointerSwap {
                ident,
                expected,
                new_location: new_location.clone(),
            },
            written: Some(new_location),
        })
    }

    /// Proposes one command. The outer error is a raft failure (the outcome may be unknown);
    /// the inner one is the state machine's refusal (nothing changed).
    async fn propose(&self, command: Command) -> Result<std::result::Result<u64, Rejection>> {
        let size = serde_json::to_vec(&command)
            .map_err(|e| {
                Error::new(ErrorKind::Unexpected, "serializing a catalog command").with_source(e)
            })?
            .len();
        if size > MAX_COMMAND_BYTES {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!("catalog command of {size} bytes exceeds the limit of {MAX_COMMAND_BYTES}"),
            ));
        }
        match self.raft.client_write(command).await {
            Ok(response) => {
                let index = response.log_id.index;
                Ok(response.data.map(|()| index))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "catalog node {} is not the raft leader (leader: {:?}); the change was not applied",
                    self.node_id, forward.leader_id
                ),
            )
            .with_retryable(true)),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => Err(Error::new(
                ErrorKind::Unexpected,
                format!("catalog raft membership change failed: {e}"),
            )),
            Err(RaftError::Fatal(fatal)) => Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "catalog raft node {} stopped ({fatal}); whether the change was applied is unknown",
                    self.node_id
                ),
            )),
        }
    }

    /// Proposes a command whose refusal is an ordinary catalog error.
    async fn propose_checked(&self, command: Command) -> Result<()> {
        self.propose(command)
            .await?
            .map(|_| ())
            .map_err(rejection_error)
    }

    /// Best-effort removal of metadata files that no pointer references.
    async fn delete_unreferenced(&self, locations: Vec<String>) {
        for location in locations {
            if let Err(e) = self.file_io.delete(&location).await {
                tracing::warn!(%location, error = %e, "could not delete unreferenced metadata file");
            }
        }
    }

    async fn load_table_at(&self, ident: &TableIdent, location: &str) -> Result<Table> {
        let metadata = TableMetadata::read_from(&self.file_io, location)
            .await
            .map_err(|e| {
                e.with_context("table", ident.to_string())
                    .with_context("metadata_location", location)
            })?;
        self.build_table(ident.clone(), location.to_string(), metadata)
    }

    pub(crate) fn build_table(
        &self,
        ident: TableIdent,
        metadata_location: String,
        metadata: TableMetadata,
    ) -> Result<Table> {
        Table::builder()
            .identifier(ident)
            .metadata(metadata)
            .metadata_location(metadata_location)
            .file_io(self.file_io.clone())
            .runtime(self.runtime.clone())
            .build()
    }

    fn namespace_not_found(namespace: &NamespaceIdent) -> Error {
        rejection_error(Rejection::NamespaceNotFound {
            namespace: namespace.clone(),
        })
    }

    /// Where a new table goes when its creation names no location.
    fn default_table_location(
        &self,
        namespace: &NamespaceIdent,
        namespace_properties: &HashMap<String, String>,
        table_name: &str,
    ) -> String {
        let prefix = match namespace_properties.get(NAMESPACE_LOCATION_PROPERTY) {
            Some(location) => location.trim_end_matches('/').to_string(),
            None => format!("{}/{}", self.warehouse_location, namespace.join("/")),
        };
        format!("{prefix}/{table_name}")
    }
}

impl Drop for RaftCatalog {
    /// A catalog dropped without [`RaftCatalog::shutdown`] stops its raft node in the background
    /// and keeps the directory locked until the node has stopped, so that a reopen never runs
    /// next to a node that still writes the same files.
    fn drop(&mut self) {
        let lock = self
            .dir_lock
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(lock) = lock else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            handle.spawn(async move {
                let _ = raft.shutdown().await;
                drop(lock);
            });
        }
    }
}

/// One table of a multi-table commit, ready to be swapped in.
struct PreparedTable {
    table: Table,
    swap: PointerSwap,
    /// The metadata file written for this commit, if any.
    written: Option<String>,
}

/// Applies a sequence of changes to one table's metadata, as `TableCommit::apply` does for one.
/// Returns `None` when no change has updates (a pure requirements check).
fn apply_changes(
    mut metadata: TableMetadata,
    base_location: &str,
    changes: Vec<TableChange>,
) -> Result<Option<TableMetadata>> {
    let mut changed = false;
    for change in changes {
        for requirement in &change.requirements {
            requirement.check(Some(&metadata))?;
        }
        if change.updates.is_empty() {
            continue;
        }
        // Only the base file goes into the metadata log: intermediate versions between two
        // changes of one commit are never written.
        let previous_file = (!changed).then(|| base_location.to_string());
        let mut builder = metadata.into_builder(previous_file);
        for update in change.updates {
            builder = update.apply(builder)?;
        }
        metadata = builder.build()?.metadata;
        changed = true;
    }
    Ok(changed.then_some(metadata))
}

/// The location of the metadata version after `base_location`.
fn next_metadata_location(base_location: &str, metadata: &TableMetadata) -> MetadataLocation {
    match MetadataLocation::from_str(base_location) {
        Ok(base) => base.with_next_version().with_new_metadata(metadata),
        // A registered table may use another file naming scheme; number afresh under the table
        // location (the UUID in the name keeps it unique).
        Err(_) => MetadataLocation::new_with_metadata(metadata.location(), metadata),
    }
}

/// Turns a state machine refusal into the iceberg error callers expect.
fn rejection_error(rejection: Rejection) -> Error {
    let (kind, retryable) = match &rejection {
        Rejection::NamespaceNotFound { .. } => (ErrorKind::NamespaceNotFound, false),
        Rejection::NamespaceAlreadyExists { .. } => (ErrorKind::NamespaceAlreadyExists, false),
        Rejection::NamespaceNotEmpty { .. } => (ErrorKind::PreconditionFailed, false),
        Rejection::TableNotFound { .. } => (ErrorKind::TableNotFound, false),
        Rejection::TableAlreadyExists { .. } => (ErrorKind::TableAlreadyExists, false),
        // Another commit moved a pointer first: reload and try again.
        Rejection::Conflict { .. } => (ErrorKind::CatalogCommitConflicts, true),
        Rejection::Invalid { .. } => (ErrorKind::DataInvalid, false),
    };
    Error::new(kind, rejection.to_string()).with_retryable(retryable)
}

/// Takes the exclusive lock on the raft directory, waiting up to [`LOCK_WAIT`] for a previous
/// owner to finish stopping.
async fn lock_raft_dir(fs: &dyn Fs, dir: &Path) -> std::result::Result<FsLock, CatalogError> {
    let path = dir.join(LOCK_FILE);
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match fs.try_lock(&path) {
            Ok(Some(lock)) => return Ok(lock),
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(LOCK_RETRY_INTERVAL).await;
            }
            Ok(None) => {
                return Err(CatalogError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(source) => return Err(CatalogError::Storage { path, source }),
        }
    }
}

fn to_sorted(properties: HashMap<String, String>) -> BTreeMap<String, String> {
    properties.into_iter().collect()
}

#[async_trait]
impl Catalog for RaftCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        let applied = self.shared.read();
        if let Some(parent) = parent
            && !applied.catalog.namespace_exists(parent)
        {
            return Err(Self::namespace_not_found(parent));
        }
        Ok(applied.catalog.list_namespaces(parent))
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.propose_checked(Command::CreateNamespace {
            namespace: namespace.clone(),
            properties: to_sorted(properties.clone()),
        })
        .await?;
        Ok(Namespace::with_properties(namespace.clone(), properties))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        let properties = self
            .shared
            .read()
            .catalog
            .namespace_properties(namespace)
            .ok_or_else(|| Self::namespace_not_found(namespace))?;
        Ok(Namespace::with_properties(namespace.clone(), properties))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        Ok(self.shared.read().catalog.namespace_exists(namespace))
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.propose_checked(Command::UpdateNamespaceProperties {
            namespace: namespace.clone(),
            properties: to_sorted(properties),
        })
        .await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.propose_checked(Command::DropNamespace {
            namespace: namespace.clone(),
        })
        .await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        let applied = self.shared.read();
        if !applied.catalog.namespace_exists(namespace) {
            return Err(Self::namespace_not_found(namespace));
        }
        Ok(applied.catalog.list_tables(namespace))
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let staged = self.stage_create_table(namespace, creation).await?;
        let metadata_location = staged
            .metadata_location()
            .expect("a staged table has its metadata file")
            .to_string();
        let outcome = self
            .propose(Command::CreateTable {
                ident: staged.identifier().clone(),
                metadata_location: metadata_location.clone(),
            })
            .await?;
        if let Err(rejection) = outcome {
            self.delete_unreferenced(vec![metadata_location]).await;
            return Err(rejection_error(rejection));
        }
        Ok(staged)
    }

    async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        let location = {
            let applied = self.shared.read();
            match applied.catalog.table_location(ident) {
                Some(location) => location.to_string(),
                None if applied.catalog.namespace_exists(&ident.namespace) => {
                    return Err(rejection_error(Rejection::TableNotFound {
                        ident: ident.clone(),
                    }));
                }
                None => return Err(Self::namespace_not_found(&ident.namespace)),
            }
        };
        self.load_table_at(ident, &location).await
    }

    async fn drop_table(&self, ident: &TableIdent) -> Result<()> {
        self.propose_checked(Command::DropTable {
            ident: ident.clone(),
        })
        .await
    }

    /// Drops the table, then deletes its files best-effort: the table is gone from the catalog
    /// even if some files could not be deleted (they are logged and left for cleanup).
    async fn purge_table(&self, ident: &TableIdent) -> Result<()> {
        let table = self.load_table(ident).await?;
        self.drop_table(ident).await?;
        if let Err(e) = iceberg::drop_table_data(&table).await {
            tracing::warn!(table = %ident, error = %e, "dropped table but could not delete all of its files");
        }
        Ok(())
    }

    async fn table_exists(&self, ident: &TableIdent) -> Result<bool> {
        Ok(self.shared.read().catalog.table_location(ident).is_some())
    }

    async fn rename_table(&self, source: &TableIdent, target: &TableIdent) -> Result<()> {
        self.propose_checked(Command::RenameTable {
            source: source.clone(),
            target: target.clone(),
        })
        .await
    }

    async fn register_table(&self, ident: &TableIdent, metadata_location: String) -> Result<Table> {
        let metadata = TableMetadata::read_from(&self.file_io, &metadata_location)
            .await
            .map_err(|e| e.with_context("metadata_location", metadata_location.clone()))?;
        self.propose_checked(Command::CreateTable {
            ident: ident.clone(),
            metadata_location: metadata_location.clone(),
        })
        .await?;
        self.build_table(ident.clone(), metadata_location, metadata)
    }

    async fn update_table(&self, mut commit: TableCommit) -> Result<Table> {
        let change = TableChange {
            ident: commit.identifier().clone(),
            requirements: commit.take_requirements(),
            updates: commit.take_updates(),
        };
        let mut tables = self.commit_changes(vec![change]).await?;
        assert_eq!(tables.len(), 1, "one change commits one table");
        Ok(tables.pop().expect("length checked"))
    }
}
