//! SQL's tables: a DataFusion `TableProvider` over one Iceberg table of a statement's snapshot.
//!
//! A scan reads the hot tier when it holds the table at the snapshot; otherwise it streams
//! the data files the filters leave, pruned by their column statistics (and Parquet row groups
//! by theirs), without loading the table into memory. Writes go through DataFusion's DML
//! hooks: the plan they return computes the statement's edits (filters and SET expressions
//! evaluated by DataFusion) and leaves them with the statement, which commits them once the
//! plan has run.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::{and, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Constraint, Constraints, DFSchema, Statistics};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::coop::cooperative;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::expr::Predicate;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;

use crate::cache::{TableData, to_user};
use crate::error::{Error, Result};
use crate::graph_source::{Snapshot, TableSlot};
use crate::predicate;
use crate::schema::{TableInfo, TableKind};
use crate::write::TableEdits;
use contextdb_storage::table_io;

/// What one SQL write statement's hooks produced, for the statement to commit.
#[derive(Default)]
pub(crate) struct StatementWrites {
    edits: Mutex<HashMap<String, TableEdits>>,
    /// Set when DataFusion's plan of the DELETE or UPDATE kept a WHERE: a hook that then gets
    /// no filters refuses instead of touching every row (apache/datafusion#24654).
    pub filtered: AtomicBool,
}

impl StatementWrites {
    /// The edits the statement's plan produced (once).
    pub fn take(&self) -> HashMap<String, TableEdits> {
        std::mem::take(&mut *self.edits.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn add(&self, name: &str, edit: TableEdits) -> DfResult<()> {
        let mut edits = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        if edits.insert(name.to_string(), edit).is_some() {
            // A DML plan has one write node; two would be a planner bug, not two commits.
            return Err(DataFusionError::Internal(format!(
                "`{name}` written twice by one statement"
            )));
        }
        Ok(())
    }
}

/// A SQL scan loads a table into the hot tier when its data files take at most this share
/// of the tier's budget (1/256: 16 MiB of Parquet under the default 4 GiB); larger tables
/// stream from their files, pruned by the scan's filters, and stay out of memory.
pub const SCAN_LOAD_BUDGET_SHARE: u64 = 256;

/// A table of the statement's snapshot, as SQL sees it, with its columns' defaults (which
/// DataFusion puts in an INSERT's missing columns) and its primary key (a functional
/// dependency for the planner: `GROUP BY id` may select the other columns).
#[derive(Debug)]
pub(crate) struct SnapshotTable(Target, HashMap<String, Expr>, Constraints);

impl fmt::Debug for StatementWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatementWrites")
    }
}

impl SnapshotTable {
    pub fn new(
        snapshot: Arc<Snapshot>,
        name: String,
        schema: SchemaRef,
        writes: Arc<StatementWrites>,
    ) -> Self {
        let defaults = match snapshot.current.get(&name) {
            Some(table) => crate::schema::column_defaults(table)
                .into_iter()
                .filter_map(|(column, value)| {
                    let field = schema.field_with_name(&column).ok()?;
                    let value = value.cast_to(field.data_type()).ok()?;
                    Some((column, Expr::Literal(value, None)))
                })
                .collect(),
            None => HashMap::new(),
        };
        // Writes refuse duplicate keys (`check_unique_keys`), so the key holds.
        let key = snapshot
            .tables
            .get(&name)
            .and_then(|slot| slot.info.primary_key.as_deref())
            .and_then(|pk| schema.index_of(pk).ok());
        let constraints = Constraints::new_unverified(
            key.map(|i| Constraint::PrimaryKey(vec![i]))
                .into_iter()
                .collect(),
        );
        SnapshotTable(
            Target {
                snapshot,
                name,
                schema,
                writes,
            },
            defaults,
            constraints,
        )
    }

    fn slot(&self) -> DfResult<&TableSlot> {
        let Target { snapshot, name, .. } = &self.0;
        snapshot
            .tables
            .get(name)
            .ok_or_else(|| DataFusionError::Internal(format!("`{name}` is not in the snapshot")))
    }

    fn table(&self) -> DfResult<&Table> {
        let Target { snapshot, name, .. } = &self.0;
        snapshot.current.get(name).ok_or_else(|| {
            DataFusionError::Internal(format!("`{name}` has no metadata in the snapshot"))
        })
    }

    /// The table's rows if the statement or the hot tier holds them at this snapshot.
    fn in_memory(&self) -> DfResult<Option<Arc<TableData>>> {
        let slot = self.slot()?;
        if let Ok(data) = slot.data() {
            return Ok(Some(data.clone()));
        }
        Ok(self
            .0
            .snapshot
            .cache
            .peek(self.table()?, slot.snapshot_id)
            .filter(|d| d.rows.num_rows() == slot.rows))
    }

    /// Whether a scan loads the table into the hot tier: its data files take at most
    /// [`SCAN_LOAD_BUDGET_SHARE`] of the tier's budget, so later statements read it from
    /// memory as well.
    fn small(&self) -> DfResult<bool> {
        let slot = self.slot()?;
        let budget = self.0.snapshot.cache.budget_bytes() as u64;
        Ok(table_io::snapshot_bytes(self.table()?, slot.snapshot_id)
            .is_some_and(|bytes| bytes <= budget / SCAN_LOAD_BUDGET_SHARE))
    }

    /// Filters as physical expressions over the table's columns (the hooks get them
    /// unqualified; a qualified one is made so).
    fn physical(
        &self,
        state: &dyn Session,
        exprs: &[Expr],
    ) -> DfResult<Vec<Arc<dyn PhysicalExpr>>> {
        let df_schema = DFSchema::try_from(self.0.schema.as_ref().clone())?;
        exprs
            .iter()
            .map(|e| {
                let e = e
                    .clone()
                    .transform_up(|e| match e {
                        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(
                            Expr::Column(Column::new_unqualified(c.name)),
                        )),
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                state.create_physical_expr(e, &df_schema)
            })
            .collect()
    }

    fn write(&self, write: Write, input: Option<Arc<dyn ExecutionPlan>>) -> Arc<WriteExec> {
        Arc::new(WriteExec::new(self.0.clone(), write, input))
    }
}

/// SQL deletes no nodes: their relationships would dangle.
pub(crate) fn check_deletable(info: &TableInfo) -> Result<()> {
    if info.kind == TableKind::Node {
        return Err(Error::plan(format!(
            "delete nodes of `{}` with ContextQL (MATCH ... DETACH DELETE) so their relationships go too",
            info.name
        )));
    }
    Ok(())
}

/// `value`, the new values of `field` for some rows of `table`, in the column's type; an
/// error when the column takes no nulls and gets one.
pub(crate) fn assigned_values(table: &str, field: &Field, value: ArrayRef) -> Result<ArrayRef> {
    let value = if value.data_type() == field.data_type() {
        value
    } else {
        arrow::compute::cast(&value, field.data_type())?
    };
    if !field.is_nullable() && value.null_count() > 0 {
        return Err(Error::execution(format!(
            "`{table}.{}` must not be null",
            field.name()
        )));
    }
    Ok(value)
}

#[async_trait::async_trait]
impl TableProvider for SnapshotTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.0.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.1.get(column)
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.2)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: files are pruned by statistics, and DataFusion filters the rows. A scan
        // from memory prunes nothing.
        let memory = self.small()? || self.in_memory()?.is_some();
        Ok(filters
            .iter()
            .map(|f| {
                if !memory && predicate::pushable(f, &self.0.schema) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut data = self.in_memory()?;
        if data.is_none() && self.small()? {
            self.0
                .snapshot
                .load([self.0.name.as_str()])
                .await
                .map_err(Error::into_datafusion)?;
            data = self.in_memory()?;
        }
        if let Some(data) = data {
            let source = MemorySourceConfig::try_new(
                &[data.rows.batches().to_vec()],
                self.0.schema.clone(),
                projection.cloned(),
            )?
            .with_limit(limit);
            return Ok(datafusion::datasource::source::DataSourceExec::from_data_source(source));
        }
        let schema = &self.0.schema;
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        let predicate = predicate::to_predicate(filters, schema);
        let scan = FileScanExec::plan(
            self.table()?.clone(),
            self.0.name.clone(),
            self.slot()?.snapshot_id,
            Arc::new(schema.project(&columns)?),
            predicate,
            limit,
            state.config().target_partitions(),
        )
        .await
        .map_err(Error::into_datafusion)?;
        Ok(Arc::new(scan))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let what = match insert_op {
            InsertOp::Append => None,
            InsertOp::Overwrite => Some("INSERT OVERWRITE"),
            InsertOp::Replace => Some("REPLACE INTO"),
        };
        if let Some(what) = what {
            return Err(Error::plan(format!(
                "{what} is not supported; DELETE the rows, then INSERT"
            ))
            .into_datafusion());
        }
        Ok(self.write(Write::Insert, Some(input)))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        check_deletable(&self.slot()?.info).map_err(Error::into_datafusion)?;
        check_filtered(&self.0.writes, &filters, "DELETE")?;
        let filters = self.physical(state, &filters)?;
        Ok(self.write(Write::Delete { filters }, None))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        check_filtered(&self.0.writes, &filters, "UPDATE")?;
        let info = &self.slot()?.info;
        let mut columns = Vec::with_capacity(assignments.len());
        let mut values = Vec::with_capacity(assignments.len());
        for (column, expr) in assignments {
            if info.is_fixed(&column) {
                return Err(Error::plan(format!("`{column}` cannot be updated")).into_datafusion());
            }
            columns.push(self.0.schema.index_of(&column)?);
            values.push(expr);
        }
        let assigned = columns
            .into_iter()
            .zip(self.physical(state, &values)?)
            .collect();
        let filters = self.physical(state, &filters)?;
        Ok(self.write(Write::Update { filters, assigned }, None))
    }

    async fn truncate(&self, _state: &dyn Session) -> DfResult<Arc<dyn ExecutionPlan>> {
        check_deletable(&self.slot()?.info).map_err(Error::into_datafusion)?;
        Ok(self.write(Write::Delete { filters: vec![] }, None))
    }
}

/// A hook with no filters writes every row: refuse when the statement had a WHERE.
fn check_filtered(writes: &StatementWrites, filters: &[Expr], what: &str) -> DfResult<()> {
    if filters.is_empty() && writes.filtered.load(Ordering::Acquire) {
        return Err(Error::internal(format!(
            "DataFusion's plan of this {what} lost its WHERE clause (apache/datafusion#24654); \
             nothing was changed"
        ))
        .into_datafusion());
    }
    Ok(())
}

/// Streams the data files of one table snapshot that its filters do not rule out.
#[derive(Debug)]
pub(crate) struct FileScanExec {
    table: Table,
    name: String,
    snapshot_id: Option<i64>,
    /// Planned files, dealt round-robin to the partitions.
    partitions: Vec<Vec<FileScanTask>>,
    /// The projected user columns; `storage` is the same columns as Iceberg stores them.
    schema: SchemaRef,
    storage: SchemaRef,
    predicate: Option<Predicate>,
    limit: Option<usize>,
    /// Files scanned and files in the snapshot (None when its summary does not say).
    files: (usize, Option<u64>),
    properties: Arc<PlanProperties>,
}

impl FileScanExec {
    async fn plan(
        table: Table,
        name: String,
        snapshot_id: Option<i64>,
        schema: SchemaRef,
        predicate: Option<Predicate>,
        limit: Option<usize>,
        target_partitions: usize,
    ) -> crate::Result<FileScanExec> {
        let storage_all = table_io::arrow_schema(&table)?;
        let storage = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| storage_all.field_with_name(f.name()).cloned())
                .collect::<Result<Vec<Field>, _>>()?,
        ));
        // With no columns (count(*)), read the id column for the row counts.
        let mut names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        if names.is_empty() {
            names.push(table_io::ROW_ID.to_string());
        }
        let (tasks, predicate) = match snapshot_id {
            None => (vec![], predicate),
            Some(id) => {
                match table_io::plan_tasks(&table, id, Some(&names), predicate.clone()).await {
                    Ok(tasks) => (tasks, predicate),
                    // A predicate Iceberg cannot bind (a type it compares differently) prunes
                    // nothing; DataFusion still filters the rows.
                    Err(e) if predicate.is_some() => {
                        tracing::debug!(table = %name, error = %e, "scan without pushed filters");
                        (
                            table_io::plan_tasks(&table, id, Some(&names), None).await?,
                            None,
                        )
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let total = snapshot_id.and_then(|id| {
            table
                .metadata()
                .snapshot_by_id(id)?
                .summary()
                .additional_properties
                .get(table_io::TOTAL_DATA_FILES)?
                .parse()
                .ok()
        });
        let scanned = tasks.len();
        let n = target_partitions.clamp(1, scanned.max(1));
        let mut partitions = vec![Vec::new(); n];
        for (i, task) in tasks.into_iter().enumerate() {
            partitions[i % n].push(task);
        }
        // The stream takes from the task's budget (`cooperative` below), so a statement
        // that is cancelled or shares its thread gets a turn between batches.
        let properties = Arc::new(
            PlanProperties::new(
                EquivalenceProperties::new(schema.clone()),
                Partitioning::UnknownPartitioning(n),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )
            .with_scheduling_type(SchedulingType::Cooperative),
        );
        Ok(FileScanExec {
            table,
            name,
            snapshot_id,
            partitions,
            schema,
            storage,
            predicate,
            limit,
            files: (scanned, total),
            properties,
        })
    }

    fn rows(&self, tasks: &[&FileScanTask]) -> Precision<usize> {
        let mut rows = 0usize;
        for t in tasks {
            match t.record_count {
                Some(n) if t.deletes.is_empty() => rows += n as usize,
                _ => return Precision::Absent,
            }
        }
        // The reader drops rows a pushed predicate rules out; a limit stops early.
        if self.predicate.is_some() {
            return Precision::Inexact(rows);
        }
        match self.limit {
            Some(limit) if limit < rows => Precision::Exact(limit),
            _ => Precision::Exact(rows),
        }
    }
}

impl DisplayAs for FileScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "IcebergFileScan: {}", self.name)?;
        if let Some(id) = self.snapshot_id {
            write!(f, " snapshot={id}")?;
        }
        match self.files {
            (scanned, Some(total)) => write!(f, " files={scanned}/{total}")?,
            (scanned, None) => write!(f, " files={scanned}")?,
        }
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(f, " projection=[{}]", names.join(", "))?;
        if let Some(p) = &self.predicate {
            write!(f, " predicate={p}")?;
        }
        if let Some(limit) = self.limit {
            write!(f, " limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for FileScanExec {
    fn name(&self) -> &str {
        "IcebergFileScan"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Statistics> {
        let tasks: Vec<&FileScanTask> = match partition {
            Some(p) => self.partitions.get(p).into_iter().flatten().collect(),
            None => self.partitions.iter().flatten().collect(),
        };
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = self.rows(&tasks);
        Ok(stats)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let tasks = self.partitions.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!("IcebergFileScan has no partition {partition}"))
        })?;
        let reader = self
            .table
            .reader_builder()
            .with_batch_size(table_io::SCAN_BATCH_ROWS)
            .with_row_group_filtering_enabled(true)
            .build();
        let batches = reader
            .read(futures::stream::iter(tasks.into_iter().map(Ok)).boxed())
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .stream();
        let (storage, schema) = (self.storage.clone(), self.schema.clone());
        let stream = batches
            .map_err(|e| DataFusionError::External(Box::new(e)))
            .and_then(move |b| {
                // Files written before a column was added lack it: null, as in the hot tier.
                let converted = table_io::conform_batch(&b, &storage)
                    .map_err(Error::from)
                    .and_then(|b| to_user(&b, &schema))
                    .map_err(Error::into_datafusion);
                futures::future::ready(converted)
            })
            // A limit is exact (the statistics say so): the last batch is cut to it.
            .scan(self.limit.unwrap_or(usize::MAX), |left, item| {
                let out = match item {
                    Ok(_) if *left == 0 => None,
                    Ok(b) => {
                        let n = b.num_rows().min(*left);
                        *left -= n;
                        Some(Ok(if n < b.num_rows() { b.slice(0, n) } else { b }))
                    }
                    Err(e) => Some(Err(e)),
                };
                futures::future::ready(out)
            });
        Ok(Box::pin(cooperative(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        ))))
    }
}

/// The table a write hook changes, and where its edits go.
#[derive(Debug, Clone)]
struct Target {
    snapshot: Arc<Snapshot>,
    name: String,
    schema: SchemaRef,
    writes: Arc<StatementWrites>,
}

#[derive(Debug, Clone)]
enum Write {
    /// The rows of the child plan, in the table's columns.
    Insert,
    /// Rows where every filter holds (no filters: every row).
    Delete { filters: Vec<Arc<dyn PhysicalExpr>> },
    /// Columns (by index) set to expressions over the old row, where every filter holds.
    Update {
        filters: Vec<Arc<dyn PhysicalExpr>>,
        assigned: Vec<(usize, Arc<dyn PhysicalExpr>)>,
    },
}

/// Computes one statement's edits of one table and yields the count of rows they touch.
#[derive(Debug)]
struct WriteExec {
    target: Target,
    write: Write,
    input: Option<Arc<dyn ExecutionPlan>>,
    properties: Arc<PlanProperties>,
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

impl WriteExec {
    fn new(target: Target, write: Write, input: Option<Arc<dyn ExecutionPlan>>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        WriteExec {
            target,
            write,
            input,
            properties,
        }
    }
}

impl DisplayAs for WriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let name = &self.target.name;
        match &self.write {
            Write::Insert => write!(f, "IcebergWrite: INSERT INTO {name}"),
            Write::Delete { filters } => {
                write!(f, "IcebergWrite: DELETE FROM {name}")?;
                where_clause(f, filters)
            }
            Write::Update { filters, assigned } => {
                let set: Vec<String> = assigned
                    .iter()
                    .map(|(i, e)| format!("{} = {e}", self.target.schema.field(*i).name()))
                    .collect();
                write!(f, "IcebergWrite: UPDATE {name} SET {}", set.join(", "))?;
                where_clause(f, filters)
            }
        }
    }
}

fn where_clause(f: &mut fmt::Formatter, filters: &[Arc<dyn PhysicalExpr>]) -> fmt::Result {
    if filters.is_empty() {
        return write!(f, " (every row)");
    }
    let parts: Vec<String> = filters.iter().map(|e| e.to_string()).collect();
    write!(f, " WHERE {}", parts.join(" AND "))
}

impl ExecutionPlan for WriteExec {
    fn name(&self) -> &str {
        "IcebergWrite"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.input.iter().collect()
    }
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != usize::from(self.input.is_some()) {
            return Err(DataFusionError::Internal(
                "IcebergWrite got the wrong number of children".into(),
            ));
        }
        Ok(Arc::new(WriteExec::new(
            self.target.clone(),
            self.write.clone(),
            children.pop(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "IcebergWrite has one partition, asked for {partition}"
            )));
        }
        let (target, write, input) = (self.target.clone(), self.write.clone(), self.input.clone());
        let done = async move {
            let (edit, rows) = match (write, input) {
                (Write::Insert, Some(input)) => inserted(&target, input, context).await?,
                (Write::Delete { filters }, None) => deleted(&target, &filters).await?,
                (Write::Update { filters, assigned }, None) => {
                    updated(&target, &filters, &assigned).await?
                }
                _ => {
                    return Err(DataFusionError::Internal(
                        "IcebergWrite without the input it needs".into(),
                    ));
                }
            };
            target.writes.add(&target.name, edit)?;
            Ok(RecordBatch::try_new(
                count_schema(),
                vec![Arc::new(UInt64Array::from(vec![rows]))],
            )?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            futures::stream::once(done),
        )))
    }
}

async fn loaded(target: &Target) -> DfResult<Arc<TableData>> {
    target
        .snapshot
        .load([target.name.as_str()])
        .await
        .map_err(Error::into_datafusion)?;
    Ok(target
        .snapshot
        .tables
        .get(&target.name)
        .ok_or_else(|| DataFusionError::Internal(format!("no table `{}`", target.name)))?
        .data()?
        .clone())
}

async fn inserted(
    target: &Target,
    input: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
) -> DfResult<(TableEdits, u64)> {
    // Loaded for the key check at commit.
    loaded(target).await?;
    let mut appended = Vec::new();
    let mut rows = 0u64;
    let mut stream = datafusion::physical_plan::execute_stream(input, context)?;
    while let Some(batch) = stream.try_next().await? {
        rows += batch.num_rows() as u64;
        // The plan projects onto the table's columns in order; align names and types.
        let batch = to_user(&batch, &target.schema).map_err(|e| {
            Error::execution(format!("`{}`: {}", target.name, e.message)).into_datafusion()
        })?;
        appended.push(batch);
    }
    Ok((
        TableEdits {
            appended,
            ..Default::default()
        },
        rows,
    ))
}

/// Rows of `chunk` where every filter is true (null counts as false).
fn selected(
    chunk: &RecordBatch,
    filters: &[Arc<dyn PhysicalExpr>],
) -> DfResult<Option<BooleanArray>> {
    let mut mask: Option<BooleanArray> = None;
    for f in filters {
        let value = f.evaluate(chunk)?.into_array(chunk.num_rows())?;
        let value = value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| {
                DataFusionError::Plan(format!("WHERE must be boolean, not {}", value.data_type()))
            })?
            .clone();
        mask = Some(match mask {
            Some(m) => and(&m, &value)?,
            None => value,
        });
    }
    Ok(mask)
}

fn positions(start: usize, len: usize, mask: Option<&BooleanArray>) -> Vec<u32> {
    (0..len)
        .filter(|&i| mask.is_none_or(|m| m.is_valid(i) && m.value(i)))
        .map(|i| (start + i) as u32)
        .collect()
}

async fn deleted(
    target: &Target,
    filters: &[Arc<dyn PhysicalExpr>],
) -> DfResult<(TableEdits, u64)> {
    let data = loaded(target).await?;
    let mut edit = TableEdits::default();
    for (start, chunk, _) in data.rows.chunks() {
        let mask = selected(chunk, filters)?;
        edit.deleted
            .extend(positions(start, chunk.num_rows(), mask.as_ref()));
    }
    let rows = edit.deleted.len() as u64;
    Ok((edit, rows))
}

async fn updated(
    target: &Target,
    filters: &[Arc<dyn PhysicalExpr>],
    assigned: &[(usize, Arc<dyn PhysicalExpr>)],
) -> DfResult<(TableEdits, u64)> {
    let data = loaded(target).await?;
    let mut edit = TableEdits::default();
    for (start, chunk, _) in data.rows.chunks() {
        let mask = selected(chunk, filters)?;
        let rows = positions(start, chunk.num_rows(), mask.as_ref());
        if rows.is_empty() {
            continue;
        }
        let hit = match &mask {
            Some(m) => {
                // Null is false: a row is updated only where the WHERE is true.
                let m: BooleanArray = m.iter().map(|v| Some(v == Some(true))).collect();
                filter_record_batch(chunk, &m)?
            }
            None => chunk.clone(),
        };
        let mut values: Vec<(String, ArrayRef)> = Vec::new();
        for (index, expr) in assigned {
            let field = target.schema.field(*index);
            let value = expr.evaluate(&hit)?.into_array(hit.num_rows())?;
            let value =
                assigned_values(&target.name, field, value).map_err(Error::into_datafusion)?;
            values.push((field.name().clone(), value));
        }
        for (k, row) in rows.into_iter().enumerate() {
            let changes = values
                .iter()
                .map(|(column, array)| (column.clone(), array.clone(), k))
                .collect();
            edit.updates.insert(row, changes);
        }
    }
    let rows = edit.updates.len() as u64;
    Ok((edit, rows))
}
