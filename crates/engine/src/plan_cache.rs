//! Physical plans of read-only ContextQL statements, reused while nothing they read changes.
//!
//! A statement repeated with the same text and parameters at the same catalog version reads
//! the same snapshot, so planning it again would give the same plan: a hit skips parsing,
//! lowering, optimization and physical planning, resets the plan's execution state
//! (DataFusion's `reset_plan_states`) and runs it. Any commit moves the catalog version and
//! any hot-tier eviction its generation; either empties the cache, so a cached plan never
//! reads an old snapshot nor keeps evicted rows alive. Plans that call functions whose value
//! is fixed when planning (`now()`, `rand()`) are never cached, and the sessions that plan
//! ContextQL create no dynamic filters (state a reset would not clear).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;

use contextdb_planner::Params;
use contextdb_planner::var_length::PathLimits;

/// Plans kept at most; past it the least recently used goes.
pub const PLAN_CACHE_ENTRIES: usize = 256;

/// Statement text longer than this is not cached (the key holds the text).
pub const PLAN_CACHE_MAX_TEXT: usize = 16 * 1024;

/// What a cached plan depends on besides its statement: the catalog version and the hot
/// tier's eviction generation.
pub(crate) type PlanVersion = (u64, u64);

/// A statement's text and its parameters (by name), as a cache key. The values are kept as
/// they are, not printed (a query vector has hundreds of numbers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PlanKey {
    text: String,
    params: Vec<(String, ScalarValue)>,
    /// The session's path limits, which plans carry.
    limits: PathLimits,
}

impl PlanKey {
    /// None for a statement too long to key by its text.
    pub fn new(text: &str, params: &Params, limits: PathLimits) -> Option<PlanKey> {
        if text.len() > PLAN_CACHE_MAX_TEXT {
            return None;
        }
        let mut params: Vec<(String, ScalarValue)> =
            params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Some(PlanKey {
            text: text.to_string(),
            params,
            limits,
        })
    }
}

#[derive(Clone)]
pub(crate) struct CachedPlan {
    pub plan: Arc<dyn ExecutionPlan>,
    pub task: Arc<TaskContext>,
}

#[derive(Default)]
struct Inner {
    version: PlanVersion,
    entries: HashMap<PlanKey, (CachedPlan, u64)>,
    clock: u64,
}

#[derive(Default)]
pub(crate) struct PlanCache {
    inner: Mutex<Inner>,
    /// Statements served from the cache since the database opened.
    hits: std::sync::atomic::AtomicU64,
}

impl PlanCache {
    /// The cache at `version`: emptied first when it moved (stale plans are dropped, and
    /// the rows they hold with them, by the next statement).
    fn lock(&self, version: PlanVersion) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.version != version {
            inner.entries.clear();
            inner.version = version;
        }
        inner
    }

    pub fn get(&self, version: PlanVersion, key: &PlanKey) -> Option<CachedPlan> {
        let mut inner = self.lock(version);
        inner.clock += 1;
        let clock = inner.clock;
        let (plan, used) = inner.entries.get_mut(key)?;
        *used = clock;
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(plan.clone())
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn put(&self, version: PlanVersion, key: PlanKey, plan: CachedPlan) {
        let mut inner = self.lock(version);
        inner.clock += 1;
        let clock = inner.clock;
        if inner.entries.len() >= PLAN_CACHE_ENTRIES
            && let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            inner.entries.remove(&oldest);
        }
        inner.entries.insert(key, (plan, clock));
    }

    /// Plans valid at `version`.
    pub fn len(&self, version: PlanVersion) -> usize {
        self.lock(version).entries.len()
    }
}

/// Whether planning `plan` again would give the same plan: every function it calls, in
/// subqueries too, is immutable (`now()` is fixed when planning, `rand()` is volatile).
pub(crate) fn replannable(plan: &LogicalPlan) -> bool {
    let mut fixed = true;
    let _ = plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    fixed = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(if fixed {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    fixed
}
