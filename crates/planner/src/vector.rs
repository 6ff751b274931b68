//! The vector search operators: `AnnScan`, a leaf that ranks every node of one label (by its
//! vector index where it has one), and `VectorTopK`, which ranks the rows of its input by a
//! node variable's vector property.
//!
//! Both search with a constant query vector and keep the best `k` (and those at or above a
//! threshold). Scores are always computed exactly from the stored f32 vectors, so the index
//! only decides *which* rows are ranked, never their scores.
//!
//! Strategy:
//! - no index on the property: exact over the candidates;
//! - `AnnScan` with an index: the index's search, plus an exact search of the rows the index
//!   does not cover at this snapshot (appended or rewritten since it was built);
//! - `VectorTopK` with an index, over an input whose scan of the ranked variable can be
//!   limited to chosen rows (reached through row-by-row operators; decided when the plan is
//!   built and shown by EXPLAIN): ANN-first, the index's nearest rows through the input,
//!   widened from the share of them that qualified (a sample of the input's selectivity near
//!   the query) or, when that predicts too wide a search, filter-first;
//! - `VectorTopK` filter- or graph-first: the whole input; exact when at most
//!   [`EXACT_MAX_CANDIDATES`] distinct nodes reach it, else the index's filtered search
//!   restricted to the candidates.
//!
//! A search never comes back short: when the index returns fewer than k rows although more
//! candidates exist (a selective filter can cut the HNSW graph apart), the candidates are
//! ranked exactly instead, and ANN-first ends only when no row it left out can rank above
//! the k it found.

use std::any::Any;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float64Array, RecordBatch, UInt32Array,
};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Field, Float32Type, SchemaRef};
use contextdb_vector::{Metric, Scorer};
use datafusion::common::{DFSchemaRef, Result, ScalarValue, exec_err, internal_err, plan_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::TryStreamExt;

use crate::nodes::{ORD, column_name, df_schema};
use crate::source::{Chunked, GraphSource, NodeTableInfo, SourceRef};

/// Distinct candidate nodes up to which `VectorTopK` ranks exactly even when an index exists:
/// on the Debian embeddings (384-d) exact scoring costs about 0.43 µs a row and usearch's
/// filtered search over 10% of 63,666 rows 3.5 ms, so the two meet near 8,000 candidates
/// (docs/vectors.md, "Measurements").
pub const EXACT_MAX_CANDIDATES: usize = 8192;

/// ANN-first (`VectorTopK` over an input that can be limited to the rows the index finds):
/// the first round searches `k ×` [`ANN_FIRST_WIDTH`] rows, at least [`ANN_FIRST_MIN_ROWS`]
/// (usearch searches that many at the cost of its default `ef_search` anyway). A round that
/// finds fewer than k estimates the width needed from the share that qualified, times
/// [`ANN_FIRST_MARGIN`]; above [`ANN_FIRST_MAX_ROWS`] the search goes filter-first instead:
/// an HNSW search of that many rows costs about what a filter over the Debian table does
/// (docs/vectors.md, "Measurements").
pub const ANN_FIRST_WIDTH: usize = 4;
pub const ANN_FIRST_MIN_ROWS: usize = 64;
pub const ANN_FIRST_MARGIN: f64 = 2.0;
pub const ANN_FIRST_MAX_ROWS: usize = 1024;

/// The most rows a filtered index search asks for (its beam, widened for a selective filter),
/// and the margin it is widened by beyond the filter's share: with the share alone, a filter
/// keeping 46% of the Debian packages (one of the query's 64 nearest) came back with recall@10
/// 0.90 in one of two benchmark runs (each run builds the index anew).
pub const FILTERED_MAX_BEAM: usize = 4096;
pub const FILTERED_BEAM_MARGIN: f64 = 2.0;

/// Heap slots reserved up front for a top-k (more grow as rows come).
const RANK_RESERVE: usize = 1024;

/// The names the search binds.
pub const SIMILARITY_SCORE: &str = "similarity_score";
pub const DISTANCE: &str = "distance";

/// What a search ranks by: one label's vector property against a constant query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct VectorSpec {
    /// The node variable ranked (its ordinal column names the node of each input row).
    pub var: String,
    pub label: String,
    pub property: String,
    /// The query vector (values already checked to be numbers, as many as the dimension).
    pub query: Vec<ordered::F64>,
    pub metric: Metric,
    pub k: usize,
    pub threshold: Option<ordered::F64>,
    /// The vector index on the property when the query was planned, and the rows of the
    /// label then (for EXPLAIN).
    pub index: Option<String>,
    pub table_rows: usize,
}

/// An `f64` that is `Eq` and `Hash` by its bits, for plan nodes.
pub mod ordered {
    #[derive(Debug, Clone, Copy, PartialOrd)]
    pub struct F64(pub f64);
    impl PartialEq for F64 {
        fn eq(&self, other: &Self) -> bool {
            self.0.to_bits() == other.0.to_bits()
        }
    }
    impl Eq for F64 {}
    impl std::hash::Hash for F64 {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.0.to_bits().hash(state)
        }
    }
}

impl VectorSpec {
    fn query(&self) -> Vec<f64> {
        self.query.iter().map(|v| v.0).collect()
    }

    fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}.{} {} k={}",
            self.var,
            self.property,
            self.metric.as_str(),
            self.k
        )?;
        if let Some(t) = self.threshold {
            write!(f, " threshold={}", t.0)?;
        }
        Ok(())
    }
}

/// The two columns a search adds.
fn score_fields() -> [Field; 2] {
    [
        Field::new(SIMILARITY_SCORE, DataType::Float64, false),
        Field::new(DISTANCE, DataType::Float64, false),
    ]
}

/// Leaf: the `k` nodes of one label nearest the query, best first, with their columns (as
/// `NodeScan` gives them) and the two scores.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnnScan {
    pub spec: VectorSpec,
    pub schema: DFSchemaRef,
    pub source: SourceRef,
}

impl AnnScan {
    pub fn try_new(source: SourceRef, spec: VectorSpec, table: &NodeTableInfo) -> Result<Self> {
        let mut fields = crate::nodes::node_fields(&spec.var, std::slice::from_ref(table), false);
        fields.extend(score_fields());
        Ok(AnnScan {
            spec,
            schema: df_schema(fields)?,
            source,
        })
    }
}

impl PartialOrd for AnnScan {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.spec.partial_cmp(&other.spec)
    }
}

fn explain_strategy(spec: &VectorSpec, f: &mut fmt::Formatter, leaf: bool) -> fmt::Result {
    match (&spec.index, leaf) {
        (None, _) => write!(
            f,
            ", exact: no {} vector index, {} rows",
            spec.metric.as_str(),
            spec.table_rows
        ),
        (Some(name), true) => write!(
            f,
            ", index {name} over {} rows (rows it does not cover exactly)",
            spec.table_rows
        ),
        (Some(name), false) => write!(
            f,
            ", exact if at most {EXACT_MAX_CANDIDATES} candidates reach it, else index {name} \
             filtered to them ({} rows)",
            spec.table_rows
        ),
    }
}

/// The choice a `VectorTopKExec` line with an estimate of its input's rows (a pattern that
/// reaches the ranked node by expansion) made, before the strategy it falls back to.
fn explain_estimate(
    spec: &VectorSpec,
    name: &str,
    reach: f64,
    alternate: bool,
    f: &mut fmt::Formatter,
) -> fmt::Result {
    let (rows, var) = (reach.round(), &spec.var);
    if !alternate {
        return write!(
            f,
            ", graph-first: lookups and degrees estimate {rows} input rows (ann-first through \
             the pattern from {var} above {ANN_FIRST_MAX_ROWS} when k is found within \
             {ANN_FIRST_MAX_ROWS})"
        );
    }
    let k = spec.k.min(spec.table_rows);
    let width = estimated_width(k, spec.table_rows, reach);
    write!(
        f,
        ", ann-first through the alternate input (second) from {var}: lookups and degrees \
         estimate {rows} input rows of {} (share {:.3}), so index {name}'s nearest {width} rows \
         first, widened while the share that qualifies predicts k within {ANN_FIRST_MAX_ROWS} \
         rows; else graph-first",
        spec.table_rows,
        reach / spec.table_rows.max(1) as f64,
    )
}

/// The ANN-first part of a `VectorTopKExec` line, before the filter-first strategy it falls
/// back to.
fn explain_ann_first(spec: &VectorSpec, name: &str, f: &mut fmt::Formatter) -> fmt::Result {
    let first = first_width(spec.k, spec.table_rows);
    write!(
        f,
        ", ann-first (unless a lookup finds at most {ANN_FIRST_MAX_ROWS} rows): index {name}'s \
         nearest {first} rows through the input, widened while the share that qualifies \
         predicts k within {ANN_FIRST_MAX_ROWS} rows; else filter-first"
    )
}

impl UserDefinedLogicalNodeCore for AnnScan {
    fn name(&self) -> &str {
        "AnnScan"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "AnnScan: ({}:{}) by ", self.spec.var, self.spec.label)?;
        self.spec.describe(f)?;
        explain_strategy(&self.spec, f, true)
    }
    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        if !exprs.is_empty() || !inputs.is_empty() {
            return plan_err!("AnnScan takes no expressions or inputs");
        }
        Ok(self.clone())
    }
}

/// The input's rows whose node (`spec.var`) ranks among the `k` best, best first, with the two
/// scores appended. Rows whose node has no vector are dropped (they cannot be ranked).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VectorTopK {
    pub input: LogicalPlan,
    /// The same rows planned to start at the ranked variable's scan, when the input starts
    /// elsewhere (a pattern that reaches the ranked node by expansion): the plan an ANN-first
    /// search runs the nodes it found through. Its columns are the input's, in order.
    pub alternate: Option<LogicalPlan>,
    pub spec: VectorSpec,
    pub schema: DFSchemaRef,
    pub source: SourceRef,
}

/// `plan` projected to the columns of `schema` (by name, in order), reading below a
/// projection that `plan` has on top.
fn aligned(plan: LogicalPlan, schema: &DFSchemaRef) -> Result<LogicalPlan> {
    let below = match &plan {
        LogicalPlan::Projection(p)
            if schema.fields().iter().all(|f| {
                p.input
                    .schema()
                    .index_of_column_by_name(None, f.name())
                    .is_some()
            }) =>
        {
            p.input.as_ref().clone()
        }
        _ => plan,
    };
    let columns: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|f| Expr::Column(datafusion::common::Column::new_unqualified(f.name())))
        .collect();
    datafusion::logical_expr::LogicalPlanBuilder::from(below)
        .project(columns)?
        .build()
}

impl VectorTopK {
    pub fn try_new(
        source: SourceRef,
        input: LogicalPlan,
        spec: VectorSpec,
        alternate: Option<LogicalPlan>,
    ) -> Result<Self> {
        // The alternate follows the input's columns (DataFusion narrows only the input, see
        // `necessary_children_exprs`): a projection over the input would change how
        // DataFusion distributes it (a round-robin repartition and a coalesce appeared
        // under it, 0.3 ms a query).
        let alternate = alternate
            .map(|alt| aligned(alt, input.schema()))
            .transpose()?;
        let mut fields: Vec<Field> = input
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(score_fields());
        Ok(VectorTopK {
            input,
            alternate,
            spec,
            schema: df_schema(fields)?,
            source,
        })
    }
}

impl PartialOrd for VectorTopK {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (&self.input, &self.alternate).partial_cmp(&(&other.input, &other.alternate)) {
            Some(Ordering::Equal) => self.spec.partial_cmp(&other.spec),
            other => other,
        }
    }
}

impl UserDefinedLogicalNodeCore for VectorTopK {
    fn name(&self) -> &str {
        "VectorTopK"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        std::iter::once(&self.input)
            .chain(&self.alternate)
            .collect()
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    /// DataFusion's projection pushdown may narrow the input to the columns asked of this
    /// node and the ranked variable's ordinal; the alternate is left whole and projected to
    /// the input's columns (`VectorTopK::try_new`), so it always has them.
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let schema = self.input.schema();
        let ord = schema.index_of_column_by_name(None, &column_name(&self.spec.var, ORD))?;
        let width = schema.fields().len();
        let mut needed: Vec<usize> = output_columns
            .iter()
            .copied()
            .filter(|i| *i < width)
            .collect();
        needed.push(ord);
        needed.sort_unstable();
        needed.dedup();
        let mut children = vec![needed];
        if let Some(alternate) = &self.alternate {
            children.push((0..alternate.schema().fields().len()).collect());
        }
        Some(children)
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "VectorTopK: by ")?;
        self.spec.describe(f)?;
        if self.alternate.is_some() {
            write!(f, ", alternate input from {}", self.spec.var)?;
        }
        explain_strategy(&self.spec, f, false)
    }
    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        if !exprs.is_empty() {
            return plan_err!("VectorTopK takes no expressions");
        }
        let mut inputs = inputs.into_iter();
        let (Some(input), alternate, None) = (inputs.next(), inputs.next(), inputs.next()) else {
            return plan_err!("VectorTopK takes one input and an optional alternate");
        };
        VectorTopK::try_new(self.source.clone(), input, self.spec.clone(), alternate)
    }
}

// ---------------------------------------------------------------------------------------------
// Ranking
// ---------------------------------------------------------------------------------------------

/// One ranked table row.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    row: u32,
    score: f64,
    distance: f64,
}

/// Best first: higher score, then lower row (deterministic among equal scores).
fn better(a: &Ranked, b: &Ranked) -> Ordering {
    b.score.total_cmp(&a.score).then(a.row.cmp(&b.row))
}

/// Heap entry ordered so the heap's top is the worst kept row.
struct Worst(Ranked);
impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        better(&self.0, &other.0) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        better(&self.0, &other.0)
    }
}

/// The label's vector column, chunk by chunk, for reading one row's vector in place.
struct Vectors {
    /// (first table row, the chunk's vectors)
    parts: Vec<(usize, FixedSizeListArray)>,
    dimension: usize,
}

impl Vectors {
    fn new(rows: &Chunked, property: &str) -> Result<Vectors> {
        let Some(columns) = rows.column(property) else {
            return exec_err!("no vector property `{property}`");
        };
        let mut parts = Vec::with_capacity(columns.len());
        let mut dimension = 0;
        for ((start, _, _), column) in rows.chunks().zip(columns) {
            let Some(list) = column.as_fixed_size_list_opt() else {
                return exec_err!("`{property}` is not a vector property");
            };
            if list.value_type() != DataType::Float32 {
                return exec_err!("`{property}` does not hold f32 vectors");
            }
            dimension = list.value_length() as usize;
            parts.push((start, list.clone()));
        }
        Ok(Vectors { parts, dimension })
    }

    /// Row `row`'s vector; None when it is null.
    fn get(&self, row: u32) -> Option<&[f32]> {
        let row = row as usize;
        let i = self.parts.partition_point(|(start, _)| *start <= row) - 1;
        let (start, list) = &self.parts[i];
        let at = row - start;
        if list.is_null(at) {
            return None;
        }
        let values = list.values().as_primitive::<Float32Type>().values();
        let from = list.value_offset(at) as usize;
        Some(&values[from..from + self.dimension])
    }
}

/// What one search did, for EXPLAIN ANALYZE.
#[derive(Debug, Default)]
struct Searched {
    candidates: usize,
    scored_exactly: usize,
    index_searches: usize,
    fallbacks: usize,
    /// ANN-first rounds run, and whether the search then went filter- or graph-first.
    ann_first_rounds: usize,
    ann_first_abandoned: usize,
    /// The share of the searched rows that qualified in the last round that fell short.
    sampled_selectivity: Option<f64>,
    /// The rows the ranked variable's lookup found, when it has one (an upper bound on the
    /// candidates).
    lookup_bound: Option<usize>,
    /// The rows the graph-first input was estimated to produce, when an alternate input
    /// could take the search ANN-first.
    reach_estimate: Option<f64>,
}

/// Ranks `rows` (every row when None) exactly, keeping the best `k`.
/// How many rows ahead [`rank_exactly`] hints vectors into cache: enough to cover a memory
/// access while one row is scored, few enough to stay in the first-level cache (4 × 1.5 KiB
/// at 384 dimensions).
const PREFETCH_ROWS: usize = 4;

fn rank_exactly(
    vectors: &Vectors,
    scorer: &Scorer,
    k: usize,
    mut rows: impl Iterator<Item = u32>,
    searched: &mut Searched,
) -> Vec<Ranked> {
    let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(k.min(RANK_RESERVE) + 1);
    // The rows PREFETCH_ROWS ahead are hinted into cache while one is scored.
    let mut ahead: std::collections::VecDeque<u32> = std::collections::VecDeque::new();
    while let Some(row) = ahead.pop_front().or_else(|| rows.next()) {
        while ahead.len() < PREFETCH_ROWS {
            let Some(next) = rows.next() else { break };
            if let Some(v) = vectors.get(next) {
                contextdb_vector::prefetch(v);
            }
            ahead.push_back(next);
        }
        searched.scored_exactly += 1;
        let Some(v) = vectors.get(row) else { continue };
        let Some((score, distance)) = scorer.score(v) else {
            continue;
        };
        let r = Ranked {
            row,
            score,
            distance,
        };
        if heap.len() < k {
            heap.push(Worst(r));
        } else if let Some(top) = heap.peek()
            && better(&r, &top.0) == Ordering::Less
        {
            heap.pop();
            heap.push(Worst(r));
        }
    }
    let mut out: Vec<Ranked> = heap.into_iter().map(|w| w.0).collect();
    out.sort_by(better);
    out
}

/// The `k` best rows of `spec.label` among `candidates` (a flag per table row; None: all).
fn rank(
    source: &dyn GraphSource,
    spec: &VectorSpec,
    candidates: Option<(&[bool], &[u32])>,
    searched: &mut Searched,
) -> Result<Vec<Ranked>> {
    let rows = source.node_rows(&spec.label)?;
    let vectors = Vectors::new(&rows, &spec.property)?;
    let query = spec.query();
    if vectors.dimension != query.len() && rows.num_rows() > 0 {
        return exec_err!(
            "the query vector has {} dimensions; `{}.{}` has {}",
            query.len(),
            spec.var,
            spec.property,
            vectors.dimension
        );
    }
    let scorer = Scorer::new(spec.metric, query);
    let n = rows.num_rows() as u32;
    // No more rows than the table has can be ranked (and LIMIT may be any size).
    let k = spec.k.min(n as usize);
    let count = candidates.map_or(n as usize, |(_, list)| list.len());
    searched.candidates = count;
    // Only the index the plan was made for (of the query's metric).
    let index = match spec.index {
        Some(_) => source.vector_index(&spec.label, &spec.property)?,
        None => None,
    };
    let use_index = match (&index, candidates) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(_), Some(_)) => count > EXACT_MAX_CANDIDATES,
    };
    let mut ranked = if let (true, Some(index)) = (use_index, index) {
        searched.index_searches += 1;
        let q32 = index_query(&scorer);
        let accept = |row: u32| candidates.is_none_or(|(flags, _)| flags[row as usize]);
        let hits = match candidates {
            None => index.search(&q32, k, None)?,
            Some(_) => {
                // A filtered search walks past nodes that do not qualify: its beam is widened
                // by the share that does, so it keeps as many qualifying candidates as an
                // unfiltered search keeps rows, and by a margin, as the qualifying rows may lie
                // away from the query (the extra rows found are ranked exactly).
                let beam = FILTERED_BEAM_MARGIN * index.ef_search().max(k) as f64 * f64::from(n)
                    / count.max(1) as f64;
                index.search(
                    &q32,
                    (beam.ceil() as usize).clamp(k, FILTERED_MAX_BEAM),
                    Some(&accept),
                )?
            }
        };
        // Rows the index does not cover, and those it found, ranked together exactly.
        let uncovered = index
            .uncovered()
            .iter()
            .flat_map(|r| r.clone())
            .filter(|row| accept(*row));
        let found = rank_exactly(
            &vectors,
            &scorer,
            k,
            hits.into_iter().chain(uncovered),
            searched,
        );
        if found.len() < k.min(count) {
            // Short: the index could not reach k candidates. Rank them all instead.
            searched.fallbacks += 1;
            rank_exactly(&vectors, &scorer, k, rows_of(candidates, n), searched)
        } else {
            found
        }
    } else {
        rank_exactly(&vectors, &scorer, k, rows_of(candidates, n), searched)
    };
    if let Some(t) = spec.threshold {
        ranked.retain(|r| r.score >= t.0);
    }
    Ok(ranked)
}

fn scores_columns(ranked: &[&Ranked]) -> [ArrayRef; 2] {
    [
        Arc::new(Float64Array::from_iter_values(
            ranked.iter().map(|r| r.score),
        )),
        Arc::new(Float64Array::from_iter_values(
            ranked.iter().map(|r| r.distance),
        )),
    ]
}

fn properties(schema: SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Final,
        Boundedness::Bounded,
    ))
}

fn record(metrics: &ExecutionPlanMetricsSet, searched: &Searched) {
    let counter = |name: &'static str, v: usize| {
        MetricBuilder::new(metrics).global_counter(name).add(v);
    };
    counter("candidates", searched.candidates);
    counter("rows_scored_exactly", searched.scored_exactly);
    counter("index_searches", searched.index_searches);
    counter("short_index_fallbacks", searched.fallbacks);
    counter("ann_first_rounds", searched.ann_first_rounds);
    counter("ann_first_abandoned", searched.ann_first_abandoned);
    if let Some(bound) = searched.lookup_bound {
        MetricBuilder::new(metrics)
            .global_gauge("lookup_rows")
            .set(bound);
    }
    // A counter, not a gauge: gauges print rounded ("1.50 K").
    if let Some(reach) = searched.reach_estimate {
        counter("graph_first_rows_estimated", reach.round() as usize);
    }
    if let Some(share) = searched.sampled_selectivity {
        MetricBuilder::new(metrics)
            .global_gauge("sampled_selectivity_permille")
            .set((share * 1000.0).round() as usize);
    }
}

/// Runs [`AnnScan`].
#[derive(Debug)]
pub struct AnnScanExec {
    spec: VectorSpec,
    source: Arc<dyn GraphSource>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for AnnScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "AnnScanExec: ({}:{}) by ",
            self.spec.var, self.spec.label
        )?;
        self.spec.describe(f)?;
        explain_strategy(&self.spec, f, true)
    }
}

impl ExecutionPlan for AnnScanExec {
    fn name(&self) -> &str {
        "AnnScanExec"
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("AnnScanExec has one partition, asked for {partition}");
        }
        let schema = self.schema();
        let (source, spec, metrics) =
            (self.source.clone(), self.spec.clone(), self.metrics.clone());
        let out = schema.clone();
        // The search is CPU work on data in memory; it runs when the stream is first polled.
        let batch = futures::stream::once(async move {
            source
                .prepare_vector_search(&spec.label, &spec.property)
                .await?;
            let mut searched = Searched::default();
            let ranked = rank(source.as_ref(), &spec, None, &mut searched)?;
            record(&metrics, &searched);
            let rows = source.node_rows(&spec.label)?;
            let offset = source.node_offset(&spec.label)?;
            let picked: Vec<u32> = ranked.iter().map(|r| r.row).collect();
            let node_fields = &out.fields()[..out.fields().len() - 2];
            let mut columns =
                crate::exec::node_columns(node_fields, &spec.label, &rows, offset, &picked)?;
            columns.extend(scores_columns(&ranked.iter().collect::<Vec<_>>()));
            Ok(RecordBatch::try_new(out, columns)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batch)))
    }
}

/// Runs [`VectorTopK`]: collects its input, ranks the distinct nodes it names, and emits the
/// rows of the best ones.
#[derive(Debug)]
pub struct VectorTopKExec {
    input: Arc<dyn ExecutionPlan>,
    /// The logical node's alternate input, planned (same columns as `input`), when the search
    /// goes ANN-first through it; dropped at planning when `reach` says graph-first.
    alternate: Option<Arc<dyn ExecutionPlan>>,
    /// The input's rows estimated at planning from lookups and degrees, when the logical node
    /// had an alternate (a cached plan is dropped by any commit, so it stays true).
    reach: Option<f64>,
    spec: VectorSpec,
    ord_index: usize,
    source: Arc<dyn GraphSource>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for VectorTopKExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "VectorTopKExec: by ")?;
        self.spec.describe(f)?;
        match (&self.spec.index, self.ann_first(), self.reach) {
            (Some(name), true, _) => explain_ann_first(&self.spec, name, f)?,
            (Some(name), false, Some(reach)) => {
                explain_estimate(&self.spec, name, reach, self.alternate.is_some(), f)?
            }
            _ => {}
        }
        explain_strategy(&self.spec, f, false)
    }
}

impl ExecutionPlan for VectorTopKExec {
    fn name(&self) -> &str {
        "VectorTopKExec"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        std::iter::once(&self.input)
            .chain(&self.alternate)
            .collect()
    }
    fn required_input_distribution(&self) -> Vec<datafusion::physical_plan::Distribution> {
        vec![datafusion::physical_plan::Distribution::SinglePartition; self.children().len()]
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut children = children.into_iter();
        let (Some(input), alternate, None) = (children.next(), children.next(), children.next())
        else {
            return internal_err!("VectorTopKExec takes one input and an optional alternate");
        };
        Ok(Arc::new(VectorTopKExec {
            input,
            alternate,
            reach: self.reach,
            spec: self.spec.clone(),
            ord_index: self.ord_index,
            source: self.source.clone(),
            properties: self.properties.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("VectorTopKExec has one partition, asked for {partition}");
        }
        let schema = self.schema();
        let (input, source, spec, metrics, ord_index) = (
            self.input.clone(),
            self.source.clone(),
            self.spec.clone(),
            self.metrics.clone(),
            self.ord_index,
        );
        let ann_first = self.ann_first();
        let (alternate, reach) = (self.alternate.clone(), self.reach);
        let out = schema.clone();
        let batch = futures::stream::once(async move {
            source
                .prepare_vector_search(&spec.label, &spec.property)
                .await?;
            let input_schema = input.schema();
            let offset = source.node_offset(&spec.label)?;
            let table_rows = source.node_count(&spec.label)? as u32;
            let candidates = |all: &RecordBatch| {
                Candidates::of(all.column(ord_index).as_ref(), offset, table_rows)
            };
            let mut searched = Searched::default();
            let index = source.vector_index(&spec.label, &spec.property)?;
            // A lookup that finds few rows bounds the candidates before anything runs: then
            // the whole input costs no more than one ANN-first round would.
            let bound = match ann_first {
                true => crate::exec::lookup_bound(&input, &spec.var, &spec.label)?,
                false => None,
            };
            searched.lookup_bound = bound;
            searched.reach_estimate = reach;
            // The plan an ANN-first search runs its nodes through, and the rows the input
            // was estimated at (None: unknown).
            let through = match (ann_first, alternate.as_ref()) {
                (true, _) if bound.is_none_or(|b| b > ANN_FIRST_MAX_ROWS) => Some((&input, None)),
                (true, _) => None,
                // The input reaches the ranked node by expansion; planning kept the
                // alternate, which starts at it, because the input was estimated large.
                (false, Some(alternate)) => Some((alternate, reach)),
                (false, None) => None,
            };
            let first = match (index, through) {
                (Some(index), Some((plan, estimate))) => {
                    search_first(
                        source.as_ref(),
                        &spec,
                        index.as_ref(),
                        plan,
                        estimate,
                        &context,
                        &candidates,
                        &mut searched,
                    )
                    .await?
                }
                _ => None,
            };
            let (all, found, ranked) = match first {
                Some(done) => done,
                None => {
                    // Filter- or graph-first: the whole input, then its candidates ranked.
                    let batches: Vec<RecordBatch> =
                        input.execute(0, context.clone())?.try_collect().await?;
                    let all = concat_batches(&input_schema, &batches)?;
                    let found = candidates(&all)?;
                    let ranked = rank(
                        source.as_ref(),
                        &spec,
                        Some((&found.flags, &found.list)),
                        &mut searched,
                    )?;
                    (all, found, ranked)
                }
            };
            record(&metrics, &searched);
            let by_row: HashMap<u32, (usize, Ranked)> = ranked
                .iter()
                .enumerate()
                .map(|(i, r)| (r.row, (i, *r)))
                .collect();
            // The input rows of the ranked nodes, best node first, input order among a node's
            // rows; at most k.
            let mut picked: Vec<(usize, usize)> = found
                .rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((by_row.get(&(*r)?)?.0, i)))
                .collect();
            picked.sort();
            picked.truncate(spec.k);
            let indices = UInt32Array::from_iter_values(picked.iter().map(|(_, i)| *i as u32));
            let taken = take_record_batch(&all, &indices)?;
            let chosen: Vec<&Ranked> = picked.iter().map(|(rank, _)| &ranked[*rank]).collect();
            let mut columns = taken.columns().to_vec();
            columns.extend(scores_columns(&chosen));
            Ok(RecordBatch::try_new_with_options(
                out,
                columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(picked.len())),
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batch)))
    }
}

impl VectorTopKExec {
    /// Whether the search may go first: an index was there at planning, and the ranked
    /// variable's scan is reached through row-by-row operators (so the input can be run over
    /// the nodes the index found).
    fn ann_first(&self) -> bool {
        self.spec.index.is_some()
            && crate::exec::ranked_scan(&self.input, &self.spec.var, &self.spec.label).is_some()
    }
}

/// The nodes of the ranked label among the input rows.
struct Candidates {
    /// The table row of each input row's node (None: another label, or no node).
    rows: Vec<Option<u32>>,
    /// A flag per table row: a candidate.
    flags: Vec<bool>,
    /// The candidates' table rows, ascending (a few candidates of a large table are ranked
    /// without a pass over every flag).
    list: Vec<u32>,
}

impl Candidates {
    fn of(ords: &dyn Array, offset: u32, table_rows: u32) -> Result<Candidates> {
        let Some(ords) = ords.as_primitive_opt::<arrow::datatypes::UInt32Type>() else {
            return internal_err!("the ranked variable's ordinals are not UInt32");
        };
        let rows: Vec<Option<u32>> = ords
            .iter()
            .map(|o| {
                o.and_then(|o| o.checked_sub(offset))
                    .filter(|r| *r < table_rows)
            })
            .collect();
        let mut flags = vec![false; table_rows as usize];
        let mut list = Vec::new();
        for r in rows.iter().flatten() {
            if !flags[*r as usize] {
                flags[*r as usize] = true;
                list.push(*r);
            }
        }
        list.sort_unstable();
        Ok(Candidates { rows, flags, list })
    }
}

/// The candidates' rows (ascending), or every row of a table of `n`.
fn rows_of<'a>(
    candidates: Option<(&'a [bool], &'a [u32])>,
    n: u32,
) -> Box<dyn Iterator<Item = u32> + 'a> {
    match candidates {
        None => Box::new(0..n),
        Some((_, list)) => Box::new(list.iter().copied()),
    }
}

/// The query vector as the index takes it.
fn index_query(scorer: &Scorer) -> Vec<f32> {
    scorer.query().iter().map(|v| *v as f32).collect()
}

/// The rows ANN-first's first round searches for the best `k` of a table of `rows`.
fn first_width(k: usize, rows: usize) -> usize {
    (k * ANN_FIRST_WIDTH).max(ANN_FIRST_MIN_ROWS).min(rows)
}

/// The rows an ANN-first search should search to find `k` where `share` of them qualify.
fn needed_width(k: usize, share: f64) -> usize {
    (k as f64 / share.max(f64::MIN_POSITIVE) * ANN_FIRST_MARGIN).ceil() as usize
}

/// The first width of an ANN-first search for `k` of `rows` when the input was estimated at
/// `reach` rows (an upper bound on the qualifying nodes, so a lower bound on the width).
fn estimated_width(k: usize, rows: usize, reach: f64) -> usize {
    let share = (reach / rows.max(1) as f64).min(1.0);
    needed_width(k, share).max(first_width(k, rows))
}

/// ANN-first: the `width` nearest rows by the index (and every row it does not cover) go
/// through the input, which keeps those that qualify; the k best of them are the answer when
/// the k-th is at least as near as the farthest row searched (no row left out can rank above
/// it). Else the round is a sample: from the share of rows that qualified, the width that
/// should find k is estimated, and the search widens to it, unless that is more than
/// [`ANN_FIRST_MAX_ROWS`], where running the whole input (filter- or graph-first) costs less.
/// `reach`, the input's rows estimated before anything ran, sets the first width (see
/// [`estimated_width`]); none is tried when that is more than [`ANN_FIRST_MAX_ROWS`].
/// None: go filter- or graph-first.
#[allow(clippy::too_many_arguments)]
async fn search_first(
    source: &dyn GraphSource,
    spec: &VectorSpec,
    index: &dyn crate::source::SnapshotVectorIndex,
    input: &Arc<dyn ExecutionPlan>,
    reach: Option<f64>,
    context: &Arc<TaskContext>,
    candidates: &(dyn Fn(&RecordBatch) -> Result<Candidates> + Sync),
    searched: &mut Searched,
) -> Result<Option<(RecordBatch, Candidates, Vec<Ranked>)>> {
    let rows = source.node_rows(&spec.label)?;
    let vectors = Vectors::new(&rows, &spec.property)?;
    let n = rows.num_rows();
    let k = spec.k.min(n);
    if k == 0 || vectors.dimension != spec.query.len() {
        // Nothing to find, or an error the filter-first path reports.
        return Ok(None);
    }
    let scorer = Scorer::new(spec.metric, spec.query());
    let q32 = index_query(&scorer);
    let uncovered: Vec<u32> = index.uncovered().iter().flat_map(|r| r.clone()).collect();
    let mut width = match reach {
        Some(reach) => estimated_width(k, n, reach),
        None => first_width(k, n),
    };
    if width > ANN_FIRST_MAX_ROWS {
        return Ok(None);
    }
    loop {
        searched.index_searches += 1;
        searched.ann_first_rounds += 1;
        let hits = index.search(&q32, width, None)?;
        let mut limit: Vec<u32> = hits.iter().chain(&uncovered).copied().collect();
        limit.sort_unstable();
        limit.dedup();
        let sample = limit.len();
        let Some(plan) =
            crate::exec::restrict_scan(input, &spec.var, &spec.label, &Arc::new(limit))?
        else {
            return internal_err!("VectorTopK's input can no longer be limited to rows");
        };
        let batches: Vec<RecordBatch> = plan.execute(0, context.clone())?.try_collect().await?;
        let all = concat_batches(&input.schema(), &batches)?;
        let found = candidates(&all)?;
        searched.candidates = found.list.len();
        let mut ranked = rank_exactly(&vectors, &scorer, k, found.list.iter().copied(), searched);
        // The farthest row the search returned, by its exact score.
        let farthest = hits
            .iter()
            .filter_map(|r| scorer.score(vectors.get(*r)?))
            .map(|(score, _)| score)
            .min_by(f64::total_cmp);
        let complete = ranked.len() == k && farthest.is_none_or(|f| ranked[k - 1].score >= f);
        if complete {
            if let Some(t) = spec.threshold {
                ranked.retain(|r| r.score >= t.0);
            }
            return Ok(Some((all, found, ranked)));
        }
        // The round as a sample of the input's selectivity (half a row when none qualified).
        let share = (found.list.len() as f64).max(0.5) / sample.max(1) as f64;
        let needed = needed_width(k, share);
        searched.sampled_selectivity = Some(share);
        if width >= n || needed > ANN_FIRST_MAX_ROWS {
            searched.ann_first_abandoned += 1;
            return Ok(None);
        }
        width = needed.max(width * 2).min(n);
    }
}

/// Plans the two nodes (called by the graph extension planner).
pub(crate) fn plan_vector_node(
    node: &dyn datafusion::logical_expr::UserDefinedLogicalNode,
    physical_inputs: &[Arc<dyn ExecutionPlan>],
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let any = node.as_any();
    if let Some(scan) = any.downcast_ref::<AnnScan>() {
        return Ok(Some(Arc::new(AnnScanExec {
            spec: scan.spec.clone(),
            source: scan.source.0.clone(),
            properties: properties(Arc::new(scan.schema.as_arrow().clone())),
            metrics: ExecutionPlanMetricsSet::new(),
        })));
    }
    if let Some(top) = any.downcast_ref::<VectorTopK>() {
        let (input, alternate) = match physical_inputs {
            [input] => (input, None),
            [input, alternate] => (input, Some(alternate.clone())),
            _ => return internal_err!("VectorTopK has one input and an optional alternate"),
        };
        let ord_index = input.schema().index_of(&column_name(&top.spec.var, ORD))?;
        // Either input's rows come out under this node's schema.
        let same = |a: &SchemaRef| {
            let types = |s: &SchemaRef| -> Vec<(String, DataType)> {
                let fields = s.fields().iter();
                fields
                    .map(|f| (f.name().clone(), f.data_type().clone()))
                    .collect()
            };
            types(a) == types(&input.schema())
        };
        if let Some(alternate) = &alternate
            && !same(&alternate.schema())
        {
            return internal_err!(
                "VectorTopK's alternate input has other columns than its input: {} and {}",
                alternate.schema(),
                input.schema()
            );
        }
        // The alternate serves when the input reaches the ranked node by expansion, the
        // alternate starts at it, and lookups and degrees estimate the input large enough
        // that an ANN-first search is expected to find k within `ANN_FIRST_MAX_ROWS`.
        let spec = &top.spec;
        let (var, label) = (&spec.var, &spec.label);
        let alternative = alternate.filter(|a| {
            spec.index.is_some()
                && crate::exec::ranked_scan(input, var, label).is_none()
                && crate::exec::ranked_scan(a, var, label).is_some()
        });
        let reach = match &alternative {
            Some(_) => crate::exec::reach_estimate(input)?,
            None => None,
        };
        let rows = top.source.0.node_count(label).unwrap_or(spec.table_rows);
        let alternate = alternative.filter(|_| {
            reach.is_none_or(|r| {
                r > ANN_FIRST_MAX_ROWS as f64
                    && estimated_width(spec.k.min(rows), rows, r) <= ANN_FIRST_MAX_ROWS
            })
        });
        return Ok(Some(Arc::new(VectorTopKExec {
            input: input.clone(),
            alternate,
            reach,
            spec: top.spec.clone(),
            ord_index,
            source: top.source.0.clone(),
            properties: properties(Arc::new(top.schema.as_arrow().clone())),
            metrics: ExecutionPlanMetricsSet::new(),
        })));
    }
    Ok(None)
}

/// The value of an expression that reads no column (a literal, a parameter, a function of
/// them), evaluated now; None when it reads a column or cannot be evaluated.
pub fn constant_value(expr: &Expr) -> Option<ScalarValue> {
    if !expr.column_refs().is_empty() {
        return None;
    }
    let props = datafusion::execution::context::ExecutionProps::new();
    let physical = datafusion::physical_expr::create_physical_expr(
        expr,
        &datafusion::common::DFSchema::empty(),
        &props,
    )
    .ok()?;
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(arrow::datatypes::Schema::empty()),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .ok()?;
    match physical.evaluate(&one_row).ok()? {
        datafusion::logical_expr::ColumnarValue::Scalar(s) => Some(s),
        datafusion::logical_expr::ColumnarValue::Array(a) => {
            ScalarValue::try_from_array(&a, 0).ok()
        }
    }
}

/// The query vector of a constant list value: its values as f64 (None: not a list of
/// numbers without nulls).
pub fn constant_vector(value: &ScalarValue) -> Option<Vec<f64>> {
    let values: ArrayRef = match value {
        ScalarValue::List(l) if l.len() == 1 && !l.is_null(0) => l.value(0),
        ScalarValue::LargeList(l) if l.len() == 1 && !l.is_null(0) => l.value(0),
        ScalarValue::FixedSizeList(l) if l.len() == 1 && !l.is_null(0) => l.value(0),
        _ => return None,
    };
    if !values.data_type().is_numeric() || values.null_count() > 0 {
        return None;
    }
    let values = arrow::compute::cast(&values, &DataType::Float64).ok()?;
    Some(
        values
            .as_primitive::<arrow::datatypes::Float64Type>()
            .values()
            .to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(values: &[Option<[f32; 2]>]) -> Vectors {
        let list = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
            values.iter().map(|v| v.map(|v| v.map(Some))),
            2,
        );
        Vectors {
            parts: vec![(0, list)],
            dimension: 2,
        }
    }

    #[test]
    fn exact_ranking_keeps_the_best_k_and_skips_nulls() {
        let v = vectors(&[
            Some([1.0, 0.0]),
            None,
            Some([0.0, 1.0]),
            Some([1.0, 1.0]),
            Some([0.0, 0.0]),
        ]);
        let mut s = Searched::default();
        let top = rank_exactly(
            &v,
            &Scorer::new(Metric::Cosine, vec![1.0, 0.0]),
            2,
            0..5,
            &mut s,
        );
        let rows: Vec<u32> = top.iter().map(|r| r.row).collect();
        assert_eq!(rows, vec![0, 3]);
        assert_eq!(s.scored_exactly, 5);
        // A zero vector has no cosine; a null has no vector: neither is ranked.
        let all = rank_exactly(
            &v,
            &Scorer::new(Metric::Cosine, vec![1.0, 0.0]),
            10,
            0..5,
            &mut s,
        );
        assert_eq!(all.len(), 3);
        // Equal scores keep table order.
        let l2 = rank_exactly(
            &v,
            &Scorer::new(Metric::L2, vec![0.5, 0.5]),
            2,
            0..5,
            &mut s,
        );
        assert_eq!(l2.iter().map(|r| r.row).collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn constant_vectors_are_lists_of_numbers_without_nulls() {
        let list = |v: Vec<Option<f64>>| {
            ScalarValue::List(Arc::new(arrow::array::ListArray::from_iter_primitive::<
                arrow::datatypes::Float64Type,
                _,
                _,
            >(vec![Some(v)])))
        };
        assert_eq!(
            constant_vector(&list(vec![Some(1.0), Some(2.5)])),
            Some(vec![1.0, 2.5])
        );
        assert_eq!(constant_vector(&list(vec![Some(1.0), None])), None);
        assert_eq!(constant_vector(&ScalarValue::Int64(Some(1))), None);
    }
}
