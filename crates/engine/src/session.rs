//! The DataFusion sessions of a database, built once and shared by every statement.
//!
//! Building a `SessionState` registers every built-in function and optimizer rule, which costs
//! far more than planning a small statement. So a database builds two at open (one with
//! DataFusion's default parallelism, one with a single partition) and a statement binds only
//! what is its own: its snapshot (carried by the plan's graph nodes), its parameters (already
//! literals in the plan) and its start time (for `now()`).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use contextdb_planner::GraphQueryPlanner;
use contextdb_planner::nodes::{NodeScan, WrittenRows};
use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use datafusion::common::alias::AliasGenerator;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::context::SessionState;
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::registry::FunctionRegistry;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::OptimizerConfig;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionConfig;

use crate::error::Result;
use crate::schema::DEFAULT_GRAPH;

/// The most rows a graph plan's leaves may produce (as far as the plan can tell before it
/// runs) for it to run in one partition. Below it, repartitioning and two-phase aggregation
/// cost more than they save: a 1-hop count from a looked-up node is a few thousand rows.
pub const SERIAL_PLAN_ROWS_MAX: usize = 32 * 1024;

/// The catalog every table lives in, as SQL names it.
pub const DEFAULT_CATALOG: &str = "contextdb";

/// DataFusion optimizer rules the sessions leave out (see `Shared::new`).
const SPLITS_DOTTED_NAMES: [&str; 2] = ["extract_leaf_expressions", "push_down_leaf_projections"];

/// One session state and the task context its plans run in.
struct Shared {
    state: SessionState,
    task: Arc<TaskContext>,
}

impl Shared {
    fn new(target_partitions: Option<usize>) -> Shared {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(DEFAULT_CATALOG, DEFAULT_GRAPH)
            // Table and column names are case-sensitive, as in ContextQL.
            .set_bool("datafusion.sql_parser.enable_ident_normalization", false)
            .set_bool(
                "datafusion.execution.parquet.schema_force_view_types",
                false,
            )
            // No scan here takes a dynamic filter, and a plan holding one could not be run
            // again from the plan cache (a reset does not clear it).
            .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false)
            // `contextql.*`: set and shown as DataFusion's are; ContextQL reads them.
            .with_option_extension(contextdb_planner::var_length::ContextQlOptions::default());
        if let Some(partitions) = target_partitions {
            config = config.with_target_partitions(partitions);
        }
        // DataFusion's rules, less the two that move struct field reads towards the scans:
        // they rebuild columns from their names, and ContextQL's columns are named
        // `var.property` (a dot in one unqualified name), which they split into a qualifier
        // and a name and then find twice ("duplicate unqualified field name"). Nothing here
        // reads Parquet through them (the graph's rows are in memory).
        let rules: Vec<_> = datafusion::optimizer::Optimizer::new()
            .rules
            .into_iter()
            .filter(|r| !SPLITS_DOTTED_NAMES.contains(&r.name()))
            .collect();
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_optimizer_rules(rules)
            .with_query_planner(Arc::new(GraphQueryPlanner))
            .with_optimizer_rule(Arc::new(contextdb_planner::prune::PruneGraphColumns))
            .with_optimizer_rule(Arc::new(contextdb_planner::var_length::ReachWhenDistinct))
            .build();
        let mut state = state;
        // The vector functions, for SQL and for ContextQL's plans alike.
        for udf in contextdb_vector::udfs() {
            if let Err(e) = state.register_udf(udf) {
                tracing::error!(error = %e, "a vector function could not be registered");
            }
        }
        let task = Arc::new(TaskContext::from(&state));
        Shared { state, task }
    }
}

/// The sessions of one database.
pub(crate) struct Sessions {
    parallel: Shared,
    serial: Shared,
    /// Bytes each statement's operators (sorts, aggregations, joins) may hold
    /// (`DbConfig::statement_memory_bytes`).
    statement_memory: usize,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// What the optimizer sees of one statement: the shared options and functions, the
/// statement's own start time and alias names.
struct StatementConfig<'a> {
    state: &'a SessionState,
    start: DateTime<Utc>,
    aliases: Arc<AliasGenerator>,
}

impl OptimizerConfig for StatementConfig<'_> {
    fn query_execution_start_time(&self) -> Option<DateTime<Utc>> {
        Some(self.start)
    }
    fn alias_generator(&self) -> &Arc<AliasGenerator> {
        &self.aliases
    }
    fn options(&self) -> Arc<ConfigOptions> {
        self.state.config_options().clone()
    }
    fn function_registry(&self) -> Option<&dyn FunctionRegistry> {
        Some(self.state)
    }
}

impl Sessions {
    pub(crate) fn new(statement_memory: usize) -> Sessions {
        Sessions {
            parallel: Shared::new(None),
            serial: Shared::new(Some(1)),
            statement_memory,
        }
    }

    /// A runtime of the statement's own: the shared one's disk manager, caches and object
    /// stores, with a memory pool of `statement_memory` bytes, so one statement's sorts and
    /// joins fail (or spill) at its limit while the others go on. Every plan a statement
    /// runs (each write block and what it returns) runs in this one runtime.
    pub(crate) fn statement_runtime(&self) -> Result<Arc<RuntimeEnv>> {
        let pool = TrackConsumersPool::new(
            GreedyMemoryPool::new(self.statement_memory),
            NonZeroUsize::new(3).expect("3 is not 0"),
        );
        Ok(
            RuntimeEnvBuilder::from_runtime_env(self.parallel.state.runtime_env())
                .with_memory_pool(Arc::new(pool))
                .build_arc()?,
        )
    }

    /// The task context one run of a plan gets: `template`'s options and the statement's
    /// runtime ([`Sessions::statement_runtime`]). Functions are bound in the physical plan,
    /// so the context carries none (copying the registry would cost more than a point query).
    pub(crate) fn statement_task(
        template: &TaskContext,
        runtime: Arc<RuntimeEnv>,
    ) -> Arc<TaskContext> {
        Arc::new(TaskContext::new(
            None,
            template.session_id(),
            template.session_config().clone(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            runtime,
        ))
    }

    fn pick(&self, plan: &LogicalPlan) -> &Shared {
        if leaf_rows(plan) <= SERIAL_PLAN_ROWS_MAX {
            &self.serial
        } else {
            &self.parallel
        }
    }

    /// Optimizes and plans a ContextQL plan on the shared session its size calls for, to run
    /// in the statement's `runtime`.
    pub(crate) async fn physical_plan(
        &self,
        plan: &LogicalPlan,
        runtime: &Arc<RuntimeEnv>,
    ) -> Result<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)> {
        let shared = self.pick(plan);
        let state = &shared.state;
        let analyzed =
            state
                .analyzer()
                .execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
        let config = StatementConfig {
            state,
            start: Utc::now(),
            aliases: Arc::new(AliasGenerator::new()),
        };
        let optimized = state.optimizer().optimize(analyzed, &config, |_, _| {})?;
        let physical = state
            .query_planner()
            .create_physical_plan(&optimized, state)
            .await?;
        Ok((
            physical,
            Self::statement_task(&shared.task, runtime.clone()),
        ))
    }

    /// Runs a plan to completion (write blocks, which the sink consumes whole) in the
    /// statement's `runtime`.
    pub(crate) async fn collect(
        &self,
        plan: &LogicalPlan,
        runtime: &Arc<RuntimeEnv>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let (physical, task) = self.physical_plan(plan, runtime).await?;
        let batches = datafusion::physical_plan::collect(physical, task).await?;
        Ok((schema, batches))
    }

    /// `EXPLAIN [ANALYZE]` of a plan: DataFusion's explain output, graph operators included.
    pub(crate) async fn explain(
        &self,
        plan: LogicalPlan,
        analyze: bool,
    ) -> Result<SendableRecordBatchStream> {
        let shared = self.pick(&plan);
        let explain = LogicalPlanBuilder::from(plan)
            .explain(false, analyze)?
            .build()?;
        // Rare enough to pay for a statement-owned state (DataFusion's explain path records
        // each rule's output through it).
        let mut state = shared.state.clone();
        let options = state.config_options().clone();
        state.execution_props_mut().mark_start_execution(options);
        let physical = state.create_physical_plan(&explain).await?;
        let task = Self::statement_task(&TaskContext::from(&state), self.statement_runtime()?);
        Ok(execute_stream(physical, task)?)
    }

    /// A session state of the statement's own, for SQL: the shared state's functions and
    /// options with `catalogs` as its tables (DataFusion's SQL planner resolves names through
    /// the session's catalog list, which must not be shared between statements).
    pub(crate) fn sql_state(
        &self,
        catalogs: Arc<MemoryCatalogProviderList>,
    ) -> Result<SessionState> {
        let mut state = SessionStateBuilder::new_from_existing(self.parallel.state.clone())
            .with_runtime_env(self.statement_runtime()?)
            .build();
        state.register_catalog_list(catalogs as Arc<dyn CatalogProviderList>);
        let options = state.config_options().clone();
        state.execution_props_mut().mark_start_execution(options);
        Ok(state)
    }
}

/// Rows the plan's leaves produce, as far as the plan can tell without running: a looked-up
/// scan counts as one row per label, a full scan and written rows as what they hold, and any
/// other leaf (a table scan, a values list) as unbounded.
fn leaf_rows(plan: &LogicalPlan) -> usize {
    let mut rows = 0usize;
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::Extension(ext) => {
                let any = ext.node.as_any();
                if let Some(scan) = any.downcast_ref::<NodeScan>() {
                    for label in &scan.labels {
                        let n = match (&scan.lookup, scan.source.node_count(label)) {
                            (Some((_, values)), _) => values.len(),
                            (None, Ok(n)) => n,
                            (None, Err(_)) => usize::MAX,
                        };
                        rows = rows.saturating_add(n);
                    }
                } else if let Some(scan) = any.downcast_ref::<contextdb_planner::vector::AnnScan>()
                {
                    rows = rows.saturating_add(scan.spec.k);
                } else if let Some(written) = any.downcast_ref::<WrittenRows>() {
                    let n = written
                        .slot
                        .get()
                        .map(|b| b.iter().map(|b| b.num_rows()).sum())
                        .unwrap_or(usize::MAX);
                    rows = rows.saturating_add(n);
                }
            }
            LogicalPlan::TableScan(_) => rows = usize::MAX,
            LogicalPlan::Values(v) => rows = rows.saturating_add(v.values.len()),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    rows
}
