//! [`StagingCatalog`]: collects table commits from several transactions and commits them as one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation,
    TableIdent,
};
use tokio::sync::Mutex;

use crate::catalog::{RaftCatalog, TableChange};

/// A catalog that stages table updates in memory and commits them atomically.
///
/// Pass it to [`iceberg::transaction::Transaction::commit`] for every table a statement writes;
/// each commit is checked against the table as staged so far and recorded, and nothing is
/// written or proposed until [`StagingCatalog::commit`], which commits every staged change in one
/// raft log entry. Loading a staged table returns the staged version, so a second transaction on
/// the same table builds on the first.
///
/// Only table updates are staged: namespace and table DDL go to the [`RaftCatalog`] directly and
/// are refused here. A conflict at commit time (another writer moved a table's pointer, or a
/// requirement no longer holds) fails the whole commit; the caller re-runs its transactions on a
/// fresh staging catalog.
pub struct StagingCatalog {
    inner: Arc<RaftCatalog>,
    staged: Mutex<StagedTables>,
}

#[derive(Default)]
struct StagedTables {
    /// Tables in the order they were first staged.
    order: Vec<TableIdent>,
    tables: HashMap<TableIdent, StagedTable>,
}

struct StagedTable {
    /// The table with every staged change applied in memory (metadata location unchanged).
    table: Table,
    changes: Vec<TableChange>,
}

impl fmt::Debug for StagingCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagingCatalog")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl StagingCatalog {
    /// An empty staging area over `inner`.
    pub fn new(inner: Arc<RaftCatalog>) -> Self {
        Self {
            inner,
            staged: Mutex::new(StagedTables::default()),
        }
    }

    /// The catalog this one commits to.
    pub fn catalog(&self) -> &Arc<RaftCatalog> {
        &self.inner
    }

    /// Tables with staged changes, in the order they were first staged.
    pub async fn staged_tables(&self) -> Vec<TableIdent> {
        self.staged.lock().await.order.clone()
    }

    /// Commits every staged change as one atomic catalog commit; returns the committed tables in
    /// the order they were first staged.
    pub async fn commit(self) -> Result<Vec<Table>> {
        let StagedTables { order, mut tables } = self.staged.into_inner();
        let changes = order
            .iter()
            .flat_map(|ident| {
                tables
                    .remove(ident)
                    .expect("every ordered table is staged")
                    .changes
            })
            .collect();
        self.inner.commit_changes(changes).await
    }

    fn unsupported(operation: &str) -> Error {
        Error::new(
            ErrorKind::FeatureUnsupported,
            format!("{operation} is not staged; run it on the RaftCatalog directly"),
        )
    }
}

#[async_trait]
impl Catalog for StagingCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        Err(Self::unsupported("create_namespace"))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> Result<()> {
        Err(Self::unsupported("update_namespace"))
    }

    async fn drop_namespace(&self, _namespace: &NamespaceIdent) -> Result<()> {
        Err(Self::unsupported("drop_namespace"))
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        _namespace: &NamespaceIdent,
        _creation: TableCreation,
    ) -> Result<Table> {
        Err(Self::unsupported("create_table"))
    }

    async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        if let Some(staged) = self.staged.lock().await.tables.get(ident) {
            return Ok(staged.table.clone());
        }
        self.inner.load_table(ident).await
    }

    async fn drop_table(&self, _ident: &TableIdent) -> Result<()> {
        Err(Self::unsupported("drop_table"))
    }

    async fn purge_table(&self, _ident: &TableIdent) -> Result<()> {
        Err(Self::unsupported("purge_table"))
    }

    async fn table_exists(&self, ident: &TableIdent) -> Result<bool> {
        self.inner.table_exists(ident).await
    }

    async fn rename_table(&self, _source: &TableIdent, _target: &TableIdent) -> Result<()> {
        Err(Self::unsupported("rename_table"))
    }

    async fn register_table(
        &self,
        _ident: &TableIdent,
        _metadata_location: String,
    ) -> Result<Table> {
        Err(Self::unsupported("register_table"))
    }

    /// Records the commit and returns the table with it applied in memory.
    async fn update_table(&self, mut commit: TableCommit) -> Result<Table> {
        let ident = commit.identifier().clone();
        let change = TableChange {
            ident: ident.clone(),
            requirements: commit.take_requirements(),
            updates: commit.take_updates(),
        };
        let mut staged = self.staged.lock().await;
        let current = match staged.tables.get(&ident) {
            Some(staged_table) => staged_table.table.clone(),
            None => self.inner.load_table(&ident).await?,
        };
        // Checked now so that a transaction fails at its own commit, and again against the
        // committed base when the staging catalog commits.
        for requirement in &change.requirements {
            requirement.check(Some(current.metadata()))?;
        }
        let mut builder = current.metadata().clone().into_builder(None);
        for update in &change.updates {
            builder = update.clone().apply(builder)?;
        }
        let metadata = builder.build()?.metadata;
        let table = self.inner.build_table(
            ident.clone(),
            current.metadata_location_result()?.to_string(),
            metadata,
        )?;
        match staged.tables.get_mut(&ident) {
            Some(staged_table) => {
                staged_table.table = table.clone();
                staged_table.changes.push(change);
            }
            None => {
                staged.order.push(ident.clone());
                staged.tables.insert(
                    ident,
                    StagedTable {
                        table: table.clone(),
                        changes: vec![change],
                    },
                );
            }
        }
        Ok(table)
    }
}
