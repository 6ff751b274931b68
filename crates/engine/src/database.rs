//! Opening a database and running statements.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use contextdb_catalog::{RaftCatalog, RaftCatalogConfig, TableChange};
use contextdb_planner::var_length::PathLimits;
use contextdb_planner::{GraphSource, Lowering, Params};

use crate::plan_cache::{CachedPlan, PlanCache, PlanKey, PlanVersion};
use contextdb_storage::{StoreConfig, Warehouse, table_io};
use contextql::ast::{self, StatementBody};
use datafusion::common::ScalarValue;
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use tokio::sync::Mutex;

use crate::cache::{Cache, DEFAULT_CACHE_BYTES, HotTierStats};
use crate::error::{Error, ErrorKind, Result};
use crate::files::{self, Access};
use crate::graph_source::Snapshot;
use crate::route::{self, Language};
use crate::schema::{DEFAULT_GRAPH, TableInfo};
use crate::session::Sessions;
use crate::settings::Settings;
use crate::{Description, QueryStream, StatementResult, write};

/// Schema evolution rounds one statement may take (each adds a table or columns).
pub const MAX_SCHEMA_ROUNDS: usize = 64;

/// The raft log and snapshots of a local database, inside its data directory.
const RAFT_DIR: &str = "raft";

/// Cuts the catalog log of the database in `data_dir` at its first damaged record, after
/// copying the whole log aside: the operator's answer to a log that refuses to open because
/// of damage in its middle (`contextdb repair-log`). Returns a report of what was done.
pub fn repair_log(data_dir: &Path) -> Result<String> {
    contextdb_catalog::repair_log(&data_dir.join(RAFT_DIR))
        .map(|repair| repair.to_string())
        .map_err(|e| Error::execution(format!("cannot repair the log: {e}")))
}

/// Where a database keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    /// `<data_dir>/warehouse` and `<data_dir>/raft` on the local filesystem.
    Local,
    /// Tables in memory, the raft log in a temporary directory (tests).
    Memory,
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub data_dir: PathBuf,
    pub storage: StorageKind,
    /// Memory budget of the hot tier.
    pub cache_bytes: usize,
    /// Directories under which `COPY` statements may read and write files; none by default
    /// (the shell adds its current directory). See `files.rs`.
    pub file_roots: Vec<PathBuf>,
    /// How long a replaced snapshot stays readable by time travel before VACUUM may expire
    /// it and remove its files.
    pub snapshot_retention: std::time::Duration,
    /// Whether a commit that leaves many small data files compacts them right away.
    pub auto_compact: bool,
    /// Memory each statement's sorts, aggregations and joins may hold (a DataFusion memory
    /// pool per statement); past it a sort spills to disk and the others fail with a
    /// resource error, while other statements go on. Table data is the hot tier's
    /// (`cache_bytes`), not counted here.
    pub statement_memory_bytes: usize,
}

/// The default memory of one statement's operators: 2 GiB.
pub const DEFAULT_STATEMENT_MEMORY_BYTES: usize = 2 << 30;

/// The default snapshot retention: 7 days.
pub const DEFAULT_SNAPSHOT_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

impl DbConfig {
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        DbConfig {
            data_dir: data_dir.into(),
            storage: StorageKind::Local,
            cache_bytes: DEFAULT_CACHE_BYTES,
            file_roots: Vec::new(),
            snapshot_retention: DEFAULT_SNAPSHOT_RETENTION,
            auto_compact: true,
            statement_memory_bytes: DEFAULT_STATEMENT_MEMORY_BYTES,
        }
    }

    pub fn memory() -> Self {
        DbConfig {
            data_dir: PathBuf::new(),
            storage: StorageKind::Memory,
            cache_bytes: DEFAULT_CACHE_BYTES,
            file_roots: Vec::new(),
            snapshot_retention: DEFAULT_SNAPSHOT_RETENTION,
            auto_compact: true,
            statement_memory_bytes: DEFAULT_STATEMENT_MEMORY_BYTES,
        }
    }

    /// Keeps replaced snapshots for `retention` (see [`DbConfig::snapshot_retention`]).
    pub fn with_snapshot_retention(mut self, retention: std::time::Duration) -> Self {
        self.snapshot_retention = retention;
        self
    }

    /// Gives the hot tier a memory budget of `bytes` (see [`DbConfig::cache_bytes`]).
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Lets `COPY` reach files under `dir` too.
    pub fn with_file_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.file_roots.push(dir.into());
        self
    }
}

/// An open ContextDB database.
pub struct Database {
    pub(crate) catalog: Arc<RaftCatalog>,
    pub(crate) cache: Arc<Cache>,
    /// Vector indexes this process has open.
    pub(crate) vector_indexes: Arc<crate::vector_index::VectorIndexes>,
    /// DataFusion's sessions, built once: a statement binds only its snapshot and parameters.
    pub(crate) sessions: Sessions,
    /// Plans of read-only statements, reused while the catalog and the hot tier stay put.
    pub(crate) plans: PlanCache,
    /// Writers commit one at a time: a single node gains nothing from optimistic retries.
    pub(crate) write_lock: Mutex<()>,
    /// The warehouse's object store and location, for maintenance that lists files.
    pub(crate) store: Arc<dyn object_store::ObjectStore>,
    pub(crate) warehouse_location: String,
    pub(crate) snapshot_retention_ms: i64,
    pub(crate) auto_compact: bool,
    pub(crate) namespace: NamespaceIdent,
    /// Where COPY may read and write files.
    pub(crate) file_roots: Vec<PathBuf>,
    /// The last metadata read of each table. A metadata file never changes once written, so
    /// a table whose catalog pointer did not move is not read again.
    metadata: std::sync::Mutex<HashMap<TableIdent, Table>>,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

fn open_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Execution, format!("cannot open database: {e}"))
}

impl Database {
    pub async fn open(config: DbConfig) -> Result<Arc<Database>> {
        let (store, raft_dir, temp) = match config.storage {
            StorageKind::Local => {
                // Durable: a new database's own directory entry must survive a power failure.
                contextdb_storage::fs::create_dir_all_durable(
                    &contextdb_storage::fs::RealFs,
                    &config.data_dir,
                )
                .map_err(open_error)?;
                (
                    StoreConfig::Local {
                        root: config.data_dir.join("warehouse"),
                    },
                    config.data_dir.join(RAFT_DIR),
                    None,
                )
            }
            StorageKind::Memory => {
                let temp = tempfile::tempdir().map_err(open_error)?;
                (StoreConfig::Memory, temp.path().join(RAFT_DIR), Some(temp))
            }
        };
        let warehouse = Warehouse::open(&store).map_err(open_error)?;
        let catalog = RaftCatalog::open(RaftCatalogConfig::new(
            raft_dir,
            warehouse.file_io.clone(),
            warehouse.location.clone(),
        ))
        .await
        .map_err(open_error)?;
        let namespace = NamespaceIdent::new(DEFAULT_GRAPH.to_string());
        if !catalog.namespace_exists(&namespace).await? {
            catalog.create_namespace(&namespace, HashMap::new()).await?;
        }
        Ok(Arc::new(Database {
            catalog,
            cache: Arc::new(Cache::new(config.cache_bytes)),
            vector_indexes: Arc::new(crate::vector_index::VectorIndexes::new(
                warehouse.store.clone(),
            )),
            sessions: Sessions::new(config.statement_memory_bytes),
            plans: PlanCache::default(),
            write_lock: Mutex::new(()),
            store: warehouse.store.clone(),
            warehouse_location: warehouse.location.clone(),
            snapshot_retention_ms: i64::try_from(config.snapshot_retention.as_millis())
                .unwrap_or(i64::MAX),
            auto_compact: config.auto_compact,
            namespace,
            file_roots: config.file_roots,
            metadata: Default::default(),
            _temp: temp,
        }))
    }

    /// What the hot tier holds now.
    /// Plans of read-only statements cached now (see `plan_cache.rs`).
    pub fn cached_plans(&self) -> usize {
        self.plans.len(self.plan_version())
    }

    /// Statements served by a cached plan since the database opened.
    pub fn plan_cache_hits(&self) -> u64 {
        self.plans.hits()
    }

    /// What a cached plan depends on: the catalog version and the hot tier's generation.
    fn plan_version(&self) -> PlanVersion {
        (self.catalog.applied_index(), self.cache.generation())
    }

    /// What this process did with vector indexes.
    pub fn vector_index_stats(&self) -> crate::VectorIndexStats {
        self.vector_indexes.stats()
    }

    pub fn hot_tier(&self) -> HotTierStats {
        self.cache.stats()
    }

    pub async fn shutdown(&self) {
        self.catalog.shutdown().await;
    }

    /// The catalog identifier of the table with key `key` (see `schema::table_key`).
    pub(crate) fn ident(&self, key: &str) -> TableIdent {
        match crate::schema::split_key(key) {
            (Some(schema), name) => {
                TableIdent::new(NamespaceIdent::new(schema.to_string()), name.to_string())
            }
            (None, name) => TableIdent::new(self.namespace.clone(), name.to_string()),
        }
    }

    /// The key of a table of the default graph or of a SQL schema (None for any other
    /// namespace).
    pub(crate) fn key(&self, ident: &TableIdent) -> Option<String> {
        if ident.namespace() == &self.namespace {
            return Some(ident.name().to_string());
        }
        match ident.namespace().as_ref().as_slice() {
            [schema] => Some(crate::schema::table_key(Some(schema), ident.name())),
            _ => None,
        }
    }

    /// The SQL schemas (every top-level namespace but the default graph's). Only SQL
    /// statements list them: ContextQL reads the default graph alone.
    pub(crate) async fn sql_schemas(&self) -> Result<std::collections::BTreeSet<String>> {
        Ok(self
            .catalog
            .list_namespaces(None)
            .await?
            .into_iter()
            .filter(|n| *n != self.namespace)
            .filter_map(|n| match n.as_ref().as_slice() {
                [schema] => Some(schema.clone()),
                _ => None,
            })
            .collect())
    }

    /// Every table of the default graph at one catalog version, rows at `at` (time travel),
    /// none loaded yet: a reader loads the tables its plan reads.
    ///
    /// `AT SNAPSHOT n` names one table's Iceberg snapshot; the other tables are read as they
    /// were when it was committed (commits are serialised, so that is one consistent state).
    pub(crate) async fn snapshot_unloaded(
        &self,
        at: Option<&ast::TimeTravel>,
    ) -> Result<Arc<Snapshot>> {
        self.snapshot_unloaded_with(at, Vec::new()).await
    }

    /// [`Database::snapshot_unloaded`] with tables staged by this statement (created or
    /// altered, not yet in the catalog) in place of the catalog's, for the statement to write
    /// into.
    pub(crate) async fn snapshot_unloaded_with(
        &self,
        at: Option<&ast::TimeTravel>,
        staged: Vec<Table>,
    ) -> Result<Arc<Snapshot>> {
        let mut loaded = Vec::new();
        for (ident, location) in self.catalog.table_locations().await {
            if self.key(&ident).is_some() {
                let table = self.load_at(&ident, &location).await?;
                loaded.push((ident, table));
            }
        }
        // Forget dropped tables.
        self.metadata
            .lock()
            .expect("metadata cache lock")
            .retain(|ident, _| loaded.iter().any(|(i, _)| i == ident));
        for table in staged {
            let ident = table.identifier().clone();
            loaded.retain(|(i, _)| *i != ident);
            loaded.push((ident, table));
        }
        let as_of_ms = match at {
            None => None,
            Some(ast::TimeTravel::Timestamp(ts)) => Some(check_in_range(
                ts,
                parse_timestamp_ms(ts)?,
                loaded.iter().map(|(_, t)| t),
            )?),
            Some(ast::TimeTravel::Snapshot(id)) => Some(
                loaded
                    .iter()
                    .find_map(|(_, t)| t.metadata().snapshot_by_id(*id))
                    .map(|s| s.timestamp_ms())
                    .ok_or_else(|| Error::plan(format!("no table has snapshot {id}")))?,
            ),
        };
        let mut tables = BTreeMap::new();
        let mut current = BTreeMap::new();
        for (ident, table) in loaded {
            let Some(key) = self.key(&ident) else {
                continue;
            };
            // The name messages show: `schema.name` for a SQL schema's table.
            let info = TableInfo::from_properties(
                &crate::schema::display_key(&key),
                table.metadata().properties(),
            );
            let snapshot_id = match (at, as_of_ms) {
                (Some(ast::TimeTravel::Snapshot(id)), _)
                    if table.metadata().snapshot_by_id(*id).is_some() =>
                {
                    Some(*id)
                }
                (_, Some(ms)) => table_io::snapshot_at(&table, ms),
                (_, None) => table.metadata().current_snapshot_id(),
            };
            let slot = Snapshot::slot(&self.cache, &table, info, snapshot_id).await?;
            tables.insert(key.clone(), slot);
            current.insert(key, table);
        }
        Ok(Arc::new(Snapshot::new(
            tables,
            current,
            self.cache.clone(),
            self.vector_indexes.clone(),
        )?))
    }

    async fn load_at(&self, ident: &TableIdent, location: &str) -> Result<Table> {
        if let Some(table) = self
            .metadata
            .lock()
            .expect("metadata cache lock")
            .get(ident)
            .filter(|t| t.metadata_location() == Some(location))
        {
            return Ok(table.clone());
        }
        let metadata =
            iceberg::spec::TableMetadata::read_from(self.catalog.file_io(), location).await?;
        let table = Table::builder()
            .metadata(metadata)
            .metadata_location(location)
            .identifier(ident.clone())
            .file_io(self.catalog.file_io().clone())
            .runtime(iceberg::Runtime::try_current()?)
            .build()?;
        self.metadata
            .lock()
            .expect("metadata cache lock")
            .insert(ident.clone(), table.clone());
        Ok(table)
    }

    /// Runs `;`-separated statements, stopping at the first error.
    pub async fn execute(&self, text: &str) -> Result<Vec<StatementResult>> {
        self.execute_with_params(text, &HashMap::new()).await
    }

    /// Runs `;`-separated statements with parameters, collecting each one's result. The
    /// statements share settings (a `SET` holds for the ones after it); a [`crate::Session`]
    /// keeps them across calls.
    pub async fn execute_with_params(
        &self,
        text: &str,
        params: &HashMap<String, serde_json::Value>,
    ) -> Result<Vec<StatementResult>> {
        self.execute_in(text, params, &std::sync::Mutex::new(Settings::default()))
            .await
    }

    pub(crate) async fn execute_in(
        &self,
        text: &str,
        params: &HashMap<String, serde_json::Value>,
        settings: &std::sync::Mutex<Settings>,
    ) -> Result<Vec<StatementResult>> {
        let params = json_params(params)?;
        let mut results = Vec::new();
        for piece in route::split(text) {
            let result = async {
                self.run(piece.text, &params, settings)
                    .await?
                    .collect()
                    .await
            }
            .await
            .map_err(|e| e.moved_to(text, piece.offset))?;
            results.push(result);
        }
        Ok(results)
    }

    /// Runs one statement and returns its rows as a stream: the schema is known before the
    /// first batch, and a query's batches are computed as the stream is polled, so a client
    /// can send the first rows before the last exist. Writes have committed when this returns.
    pub async fn query(
        &self,
        statement: &str,
        params: &HashMap<String, serde_json::Value>,
    ) -> Result<QueryStream> {
        self.query_in(
            statement,
            params,
            &std::sync::Mutex::new(Settings::default()),
        )
        .await
    }

    pub(crate) async fn query_in(
        &self,
        statement: &str,
        params: &HashMap<String, serde_json::Value>,
        settings: &std::sync::Mutex<Settings>,
    ) -> Result<QueryStream> {
        self.run(statement, &json_params(params)?, settings).await
    }

    pub(crate) async fn query_typed_in(
        &self,
        statement: &str,
        params: &Params,
        settings: &std::sync::Mutex<Settings>,
    ) -> Result<QueryStream> {
        self.run(statement, params, settings).await
    }

    /// What `statement` would return, without running it: a SQL statement from its plan; a
    /// ContextQL query that only reads is planned (its rows are computed only when a stream
    /// is polled, and this one never is); a write or DDL statement describes no columns.
    pub(crate) async fn describe_in(
        &self,
        statement: &str,
        settings: &std::sync::Mutex<Settings>,
    ) -> Result<Description> {
        let nothing = || Description {
            language: Language::ContextQL,
            columns: Arc::new(Schema::empty()),
            parameters: Arc::new(Schema::empty()),
        };
        match route::parse(statement)? {
            route::Routed::Sql => {
                return crate::sql::describe(self, statement, settings)
                    .await
                    .map_err(|e| e.located_in(statement));
            }
            route::Routed::ContextQL(parsed) => {
                let snapshot = self.snapshot_unloaded(None).await?;
                let parameters = crate::parameters::parameter_schema(&parsed, &snapshot);
                let described = Description {
                    parameters: parameters.clone(),
                    ..nothing()
                };
                match parsed.body {
                    StatementBody::Query(query) if !writes(&query) => {}
                    _ => return Ok(described),
                }
                // Planned with a stand-in for each parameter (zero, or a typed null where a
                // type has no zero; a LIMIT takes no null): the columns do not depend on the
                // values, and the stream is never polled.
                let mut nulls = Params::new();
                for field in parameters.fields() {
                    let t = field.data_type();
                    let stand_in = ScalarValue::new_zero(t)
                        .or_else(|_| ScalarValue::try_from(t))
                        .unwrap_or(ScalarValue::Null);
                    nulls.insert(field.name().clone(), stand_in);
                }
                match self.run(statement, &nulls, settings).await {
                    Ok(stream) => Ok(Description {
                        columns: stream.schema(),
                        ..described
                    }),
                    // The plan needs the values (a vector to search, a LIMIT): the columns
                    // are known once they are bound.
                    Err(_) if !nulls.is_empty() => Ok(described),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn run(
        &self,
        text: &str,
        params: &Params,
        settings: &std::sync::Mutex<Settings>,
    ) -> Result<QueryStream> {
        // Read before anything is planned: a plan cached under this version read a snapshot
        // at least this new.
        let version = self.plan_version();
        let limits = settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .path_limits();
        let key = PlanKey::new(text, params, limits);
        if let Some(key) = &key
            && let Some(cached) = self.plans.get(version, key)
        {
            let plan = datafusion::physical_plan::execution_plan::reset_plan_states(cached.plan)?;
            let task = Sessions::statement_task(&cached.task, self.sessions.statement_runtime()?);
            let stream = datafusion::physical_plan::execute_stream(plan, task)?;
            return Ok(QueryStream::rows(Language::ContextQL, stream));
        }
        // Each statement is parsed once: routing hands over the ContextQL it parsed.
        match route::parse(text)? {
            // Boxed: SQL planning nests deep futures, and callers' futures (a test runner's
            // scenario) would otherwise exceed rustc's layout depth.
            route::Routed::Sql => Box::pin(crate::sql::execute(self, text, params, settings))
                .await
                .map_err(|e| e.located_in(text)),
            route::Routed::ContextQL(statement) => {
                let cache_as = key.map(|k| (version, k));
                self.execute_contextql(text, &statement, params, limits, cache_as)
                    .await
            }
        }
    }

    async fn execute_contextql(
        &self,
        text: &str,
        statement: &ast::Statement,
        params: &Params,
        limits: PathLimits,
        cache_as: Option<(PlanVersion, PlanKey)>,
    ) -> Result<QueryStream> {
        match &statement.body {
            StatementBody::Query(query) => {
                self.run_query(text, statement, query, params, limits, cache_as)
                    .await
            }
            StatementBody::Copy(c) => {
                let path = files::check(&self.file_roots, Path::new(&c.path), Access::Read)?;
                let rows = self.load(&c.table.name, &path, &|_, _, _| {}).await?;
                Ok(rows_affected(Language::ContextQL, rows).into_stream())
            }
            _ => self.execute_ddl(statement).await,
        }
    }

    /// Runs a DDL or maintenance statement; each takes the write lock (one writer at a time).
    async fn execute_ddl(&self, statement: &ast::Statement) -> Result<QueryStream> {
        let done = |result: StatementResult| Ok(result.into_stream());
        match &statement.body {
            StatementBody::CreateNodeTable(c) => {
                done(crate::ddl::create_node_table(self, c).await?)
            }
            StatementBody::CreateEdgeTable(c) => {
                done(crate::ddl::create_edge_table(self, c).await?)
            }
            StatementBody::CreateVectorIndex(c) => {
                done(crate::ddl::create_vector_index(self, c).await?)
            }
            StatementBody::Drop(d) => done(crate::ddl::drop(self, d).await?),
            StatementBody::Maintain(m) => {
                let _guard = self.write_lock.lock().await;
                let only = m.table.as_ref().map(|t| t.name.as_str());
                done(match m.kind {
                    ast::MaintainKind::Compact => {
                        crate::maintenance::compact_statement(self, only).await?
                    }
                    ast::MaintainKind::Vacuum => {
                        crate::maintenance::vacuum_statement(self, only).await?
                    }
                })
            }
            StatementBody::ShowIndexes => done(crate::ddl::show_indexes(self).await?),
            StatementBody::Query(_) | StatementBody::Copy(_) => {
                Err(Error::internal("a query reached the DDL path"))
            }
        }
    }

    async fn run_query(
        &self,
        text: &str,
        statement: &ast::Statement,
        query: &ast::Query,
        params: &Params,
        limits: PathLimits,
        cache_as: Option<(PlanVersion, PlanKey)>,
    ) -> Result<QueryStream> {
        let writes = writes(query);
        if writes && statement.at.is_some() {
            return Err(Error::plan(
                "AT SNAPSHOT / AT TIMESTAMP queries are read-only",
            ));
        }
        // Writers hold the lock from reading to commit, so what they read is what they change.
        let _guard = if writes {
            Some(self.write_lock.lock().await)
        } else {
            None
        };
        // Schema evolution: a CREATE of an unknown label, type or property says what it needs;
        // create it and plan again (each round adds schema, so few rounds are ever needed).
        // The schema it creates commits with its data, or not at all (`StagedSchema`). The
        // clauses after a write block are planned once it ran, so a need may turn up then:
        // the statement starts over (nothing is committed before its end).
        let mut round = 0;
        let mut staged = crate::ddl::StagedSchema::default();
        let mut unstaged = crate::cache::ForgetOnDrop::new(&self.cache);
        'statement: loop {
            // Rows are loaded once the plan says which tables it reads and writes (below).
            let snapshot = self
                .snapshot_unloaded_with(statement.at.as_ref(), staged.tables.clone())
                .await?;
            let source: Arc<dyn GraphSource> = snapshot.clone();
            let lowered = match Lowering::new(&source, params, text)
                .with_limits(limits)
                .lower(query)
            {
                Ok(lowered) => lowered,
                Err(e) if writes => {
                    self.evolve(e, &snapshot, &mut staged, &mut unstaged, &mut round)
                        .await?;
                    continue 'statement;
                }
                Err(e) => return Err(plan_error(e)),
            };
            load_for(&snapshot, &lowered).await?;
            if let Some(mode) = statement.explain {
                if lowered.block.is_some() && mode == ast::Explain::Analyze {
                    return Err(Error::plan(
                        "EXPLAIN ANALYZE of a writing query is not supported",
                    ));
                }
                let stream = self
                    .sessions
                    .explain(lowered.plan, mode == ast::Explain::Analyze)
                    .await?;
                return Ok(QueryStream::rows(Language::ContextQL, stream));
            }
            if lowered.block.is_none() {
                let runtime = self.sessions.statement_runtime()?;
                let (plan, task) = self.sessions.physical_plan(&lowered.plan, &runtime).await?;
                if let Some((version, key)) = cache_as
                    && crate::plan_cache::replannable(&lowered.plan)
                {
                    let cached = CachedPlan {
                        plan: plan.clone(),
                        task: task.clone(),
                    };
                    self.plans.put(version, key, cached);
                }
                let stream = datafusion::physical_plan::execute_stream(plan, task)?;
                return Ok(QueryStream::rows(Language::ContextQL, stream));
            }
            // Each write block runs on the rows the one before it left; what the query returns
            // is computed before the commit, so a failed commit returns nothing.
            let mut sink = write::Sink::new(&snapshot);
            // One memory pool for the whole statement: its blocks and what it returns.
            let memory = self.sessions.statement_runtime()?;
            let mut part = lowered;
            let returned = loop {
                let mut view = None;
                if let Some(block) = &part.block {
                    let (schema, batches) = self.sessions.collect(&block.plan, &memory).await?;
                    let mut rows = sink.apply(&block.writes, &schema, &batches)?;
                    // The clauses after the block read the graph with its writes.
                    if part.rest.is_some() {
                        let staged = Arc::new(sink.stage(snapshot.clone())?);
                        rows = sink.renumber(rows, staged.clone())?;
                        view = Some(staged);
                    }
                    block.output.fill(vec![rows]);
                }
                let (Some(rest), Some(view)) = (part.rest, view) else {
                    break match part.returning {
                        Some(plan) => Some(self.sessions.collect(&plan, &memory).await?),
                        None => None,
                    };
                };
                let source: Arc<dyn GraphSource> = view;
                part = match Lowering::new(&source, params, text)
                    .with_limits(limits)
                    .resume(query, rest)
                {
                    Ok(next) => next,
                    Err(e) => {
                        self.evolve(e, &snapshot, &mut staged, &mut unstaged, &mut round)
                            .await?;
                        continue 'statement;
                    }
                };
                load_for(&snapshot, &part).await?;
            };
            let written = sink.commit(self, staged).await?;
            unstaged.disarm();
            return Ok(match returned {
                Some((schema, batches)) => StatementResult {
                    language: Language::ContextQL,
                    schema,
                    batches,
                    rows_affected: Some(written),
                }
                .into_stream(),
                None => rows_affected(Language::ContextQL, written).into_stream(),
            });
        }
    }

    /// Stages the schema a writing statement's planning asked for (a CREATE of an unknown
    /// label, type or property), for the statement to be planned again; the planning error
    /// itself when it asked for none, or after `MAX_SCHEMA_ROUNDS` rounds.
    async fn evolve(
        &self,
        e: contextdb_planner::PlanError,
        snapshot: &Snapshot,
        staged: &mut crate::ddl::StagedSchema,
        unstaged: &mut crate::cache::ForgetOnDrop<'_>,
        round: &mut usize,
    ) -> Result<()> {
        match e.need {
            Some(need) if *round < MAX_SCHEMA_ROUNDS => {
                crate::ddl::evolve(self, snapshot, *need, staged).await?;
                unstaged.set(&staged.tables);
                *round += 1;
                Ok(())
            }
            _ => Err(plan_error(e)),
        }
    }

    /// Reads the graph namespace's properties, lets `change` edit them, and writes them back
    /// as one catalog entry (`change` may refuse, and then nothing is written). The caller
    /// holds the write lock, so no other change comes between the read and the write.
    pub(crate) async fn update_graph_properties<T>(
        &self,
        change: impl FnOnce(&mut HashMap<String, String>) -> Result<T>,
    ) -> Result<T> {
        let namespace = self.catalog.get_namespace(&self.namespace).await?;
        let mut properties = namespace.properties().clone();
        let out = change(&mut properties)?;
        self.catalog
            .update_namespace(&self.namespace, properties)
            .await?;
        Ok(out)
    }

    /// Commits data and schema changes of several tables as one catalog log entry.
    /// The caller holds the write lock; tables left with many small files are compacted.
    pub(crate) async fn commit(&self, changes: Vec<TableChange>) -> Result<()> {
        self.commit_creating(Vec::new(), changes).await
    }

    /// [`Database::commit`] that also creates the staged tables `created` (`ddl::stage`) in
    /// the same log entry.
    pub(crate) async fn commit_creating(
        &self,
        created: Vec<contextdb_catalog::StagedTable>,
        changes: Vec<TableChange>,
    ) -> Result<()> {
        self.commit_reporting(created, changes, &|_, _| {}).await
    }

    /// [`Database::commit_creating`] that reports the progress of the vector index work the
    /// commit sets off (`indexing(rows done, rows in all)`).
    pub(crate) async fn commit_reporting(
        &self,
        created: Vec<contextdb_catalog::StagedTable>,
        changes: Vec<TableChange>,
        indexing: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<()> {
        if changes.is_empty() && created.is_empty() {
            return Ok(());
        }
        let mut names: Vec<String> = changes.iter().filter_map(|c| self.key(&c.ident)).collect();
        names.dedup();
        self.catalog
            .commit_changes_creating(created, changes)
            .await?;
        crate::maintenance::after_commit(self, &names, indexing).await;
        Ok(())
    }

    /// Every table the catalog points at, in every namespace, at its current metadata.
    pub(crate) async fn tables(&self) -> Result<Vec<Table>> {
        let mut tables = Vec::new();
        for (ident, location) in self.catalog.table_locations().await {
            tables.push(self.load_at(&ident, &location).await?);
        }
        Ok(tables)
    }

    /// The keys of the default graph's tables and of the SQL schemas' tables.
    pub(crate) async fn table_names(&self) -> Vec<String> {
        self.catalog
            .table_locations()
            .await
            .into_keys()
            .filter_map(|ident| self.key(&ident))
            .collect()
    }

    pub(crate) async fn load_table(&self, name: &str) -> Result<Table> {
        self.catalog
            .load_table(&self.ident(name))
            .await
            .map_err(|e| {
                if e.kind() == iceberg::ErrorKind::TableNotFound {
                    Error::plan(format!("table `{name}` does not exist"))
                } else {
                    e.into()
                }
            })
    }

    /// Bulk loads a Parquet or CSV file into an existing table.
    /// Loads a Parquet or CSV file into a node or edge table in one commit. `progress` hears
    /// the rows read (`LoadPhase::Reading`, done and total; 0 when unknown), then the rows
    /// added to the table's vector indexes when the load makes them extend or rebuild
    /// (`LoadPhase::Indexing`).
    pub async fn load(
        &self,
        table: &str,
        path: &Path,
        progress: &(dyn Fn(LoadPhase, u64, u64) + Send + Sync),
    ) -> Result<u64> {
        let _guard = self.write_lock.lock().await;
        crate::ddl::load_file(self, table, path, progress).await
    }
}

/// What a bulk load is doing when it reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadPhase {
    /// Reading the file: rows read so far, of the file's rows (0: unknown).
    Reading,
    /// Adding the loaded rows to the table's vector indexes: rows done, of rows to index.
    Indexing,
}

pub(crate) fn rows_affected(language: Language, rows: u64) -> StatementResult {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "rows_affected",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow::array::UInt64Array::from(vec![rows]))],
    )
    .expect("one column of one row");
    StatementResult {
        language,
        schema,
        batches: vec![batch],
        rows_affected: Some(rows),
    }
}

pub(crate) fn message(language: Language, text: &str) -> StatementResult {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "status",
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec![text]))],
    )
    .expect("one column of one row");
    StatementResult {
        language,
        schema,
        batches: vec![batch],
        rows_affected: Some(0),
    }
}

/// A time-travel timestamp must fall between the first commit and now: before the first
/// commit there is nothing to read, and a future time would answer differently later.
fn check_in_range<'a>(text: &str, ms: i64, tables: impl Iterator<Item = &'a Table>) -> Result<i64> {
    if ms > table_io::now_ms() {
        return Err(Error::plan(format!(
            "AT TIMESTAMP '{text}' is in the future"
        )));
    }
    let first_ms = tables
        .flat_map(|t| t.metadata().snapshots().map(|s| s.timestamp_ms()))
        .min();
    match first_ms {
        Some(first) if ms >= first => Ok(ms),
        Some(first) => Err(Error::plan(format!(
            "AT TIMESTAMP '{text}' is before the first commit ({first} ms after the epoch)"
        ))),
        None => Err(Error::plan(format!(
            "AT TIMESTAMP '{text}': the graph has no commits to travel to"
        ))),
    }
}

fn parse_timestamp_ms(ts: &str) -> Result<i64> {
    let parsed = chrono_like::parse(ts).ok_or_else(|| {
        Error::plan(format!(
            "invalid timestamp '{ts}' (use RFC 3339, e.g. 2026-01-01T00:00:00Z)"
        ))
    })?;
    Ok(parsed)
}

/// Parameters from JSON values.
/// Whether a ContextQL query has a writing clause.
fn writes(query: &ast::Query) -> bool {
    query.parts.iter().flat_map(|p| p.clauses.iter()).any(|c| {
        matches!(
            c,
            ast::Clause::Create(_)
                | ast::Clause::Set(_)
                | ast::Clause::Delete(_)
                | ast::Clause::Merge(_)
                | ast::Clause::Remove(_)
        )
    })
}

fn json_params(params: &HashMap<String, serde_json::Value>) -> Result<Params> {
    params
        .iter()
        .map(|(k, v)| Ok((k.clone(), json_scalar(v)?)))
        .collect()
}

/// A parameter value from JSON.
pub fn json_scalar(v: &serde_json::Value) -> Result<ScalarValue> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Array(items) => {
            let scalars = items.iter().map(json_scalar).collect::<Result<Vec<_>>>()?;
            let data_type = scalars
                .iter()
                .map(|s| s.data_type())
                .find(|t| t != &DataType::Null)
                .unwrap_or(DataType::Null);
            let scalars = scalars
                .into_iter()
                .map(|s| {
                    if s.is_null() {
                        ScalarValue::try_from(&data_type)
                    } else if s.data_type() != data_type {
                        s.cast_to(&data_type)
                    } else {
                        Ok(s)
                    }
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::plan(format!("parameter list mixes types: {e}")))?;
            ScalarValue::List(ScalarValue::new_list_nullable(&scalars, &data_type))
        }
        Value::Object(map) => {
            let mut fields = Vec::new();
            let mut arrays = Vec::new();
            for (k, v) in map {
                let s = json_scalar(v)?;
                fields.push(Field::new(k, s.data_type(), true));
                arrays.push(s.to_array().map_err(|e| Error::internal(e.to_string()))?);
            }
            let array = arrow::array::StructArray::try_new(fields.into(), arrays, None)
                .map_err(|e| Error::plan(format!("invalid map parameter: {e}")))?;
            ScalarValue::Struct(Arc::new(array))
        }
    })
}

/// Minimal RFC 3339 parsing without another dependency.
mod chrono_like {
    /// Milliseconds since the epoch of `YYYY-MM-DD[THH:MM:SS[.fff]][Z|+HH:MM]`.
    pub fn parse(s: &str) -> Option<i64> {
        let s = s.trim();
        let (date, rest) = s.split_at(s.find(['T', ' ']).unwrap_or(s.len()));
        let mut d = date.split('-');
        let (y, m, day): (i64, i64, i64) = (
            d.next()?.parse().ok()?,
            d.next()?.parse().ok()?,
            d.next()?.parse().ok()?,
        );
        if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
            return None;
        }
        let rest = rest.trim_start_matches(['T', ' ']);
        let (time, offset_min) = if let Some(t) = rest.strip_suffix('Z') {
            (t, 0)
        } else if let Some(i) = rest.rfind(['+', '-']).filter(|&i| i > 0) {
            let (t, o) = rest.split_at(i);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let mut hm = o[1..].split(':');
            let h: i64 = hm.next()?.parse().ok()?;
            let mi: i64 = hm.next().unwrap_or("0").parse().ok()?;
            (t, sign * (h * 60 + mi))
        } else {
            (rest, 0)
        };
        let mut ms = 0i64;
        if !time.is_empty() {
            let mut t = time.split(':');
            let h: i64 = t.next()?.parse().ok()?;
            let mi: i64 = t.next()?.parse().ok()?;
            let sec: f64 = t.next().unwrap_or("0").parse().ok()?;
            ms = (h * 3600 + mi * 60) * 1000 + (sec * 1000.0).round() as i64;
        }
        // Days from civil (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146097 + doe - 719468;
        Some(days * 86_400_000 + ms - offset_min * 60_000)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn parses_rfc3339() {
            assert_eq!(super::parse("1970-01-01T00:00:00Z"), Some(0));
            assert_eq!(super::parse("1970-01-02"), Some(86_400_000));
            assert_eq!(
                super::parse("2000-03-01T00:00:00.5Z"),
                Some(951_868_800_500)
            );
            assert_eq!(super::parse("1970-01-01T01:00:00+01:00"), Some(0));
            assert_eq!(super::parse("nope"), None);
        }
    }
}

/// A planning error as the engine reports it (an execution error where lowering found a
/// value the query cannot run with).
fn plan_error(e: contextdb_planner::PlanError) -> Error {
    Error {
        kind: if e.execution {
            ErrorKind::Execution
        } else {
            ErrorKind::Plan
        },
        message: e.message,
        position: e.position,
        detail: None,
        datafusion_text: None,
    }
}

/// Loads the tables `lowered` reads and writes, and opens the vector indexes it searches.
async fn load_for(snapshot: &Snapshot, lowered: &contextdb_planner::Lowered) -> Result<()> {
    let mut names = snapshot.tables_read(&lowered.plan);
    if let Some(block) = &lowered.block {
        names.extend(snapshot.tables_read(&block.plan));
        write::tables_written(snapshot, &block.writes, &mut names);
    }
    if let Some(returning) = &lowered.returning {
        names.extend(snapshot.tables_read(returning));
    }
    snapshot.load(names.iter().map(String::as_str)).await?;
    snapshot.open_vector_indexes(&lowered.plan).await?;
    if let Some(block) = &lowered.block {
        snapshot.open_vector_indexes(&block.plan).await?;
    }
    Ok(())
}
