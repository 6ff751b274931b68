//! Execution of the graph extension nodes, and the planners that put them in physical plans.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array, new_null_array};
use arrow::compute::{cast, interleave, take};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::common::{Result, internal_err};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

use crate::nodes::{ExpandDirection, GraphExpand, NodeScan, ORD, WrittenRows, column_name};
use crate::source::{Chunked, GraphSource};
use crate::var_length::{VarLengthExpand, VarLengthExpandExec};

/// Rows per batch emitted by the graph operators.
pub const GRAPH_BATCH_ROWS: usize = 8192;

pub(crate) fn properties(schema: SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

/// Scans the snapshot rows of one or more labels onto the union schema, adding the global
/// ordinal and label columns.
#[derive(Debug)]
pub struct NodeScanExec {
    labels: Vec<String>,
    lookup: Option<(String, Vec<datafusion::common::ScalarValue>)>,
    /// Table rows (ascending) the scan of a single label is limited to for one execution:
    /// set by `VectorTopK`'s ANN-first search on a copy of the plan (see [`restrict_scan`]).
    restrict: Option<Arc<Vec<u32>>>,
    var: String,
    source: Arc<dyn GraphSource>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for NodeScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "NodeScanExec: ({}:{})", self.var, self.labels.join("|"))
    }
}

impl ExecutionPlan for NodeScanExec {
    fn name(&self) -> &str {
        "NodeScanExec"
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
    /// The exact row count (what the lookup finds, else the tables' rows): DataFusion adds no
    /// round-robin repartition above a scan of at most a batch of rows. Without it a lookup
    /// of one node went through a repartition and a coalesce (0.3 ms of the dependents of
    /// libssl3's 0.8 ms in the vector benchmark).
    fn partition_statistics(
        &self,
        _partition: Option<usize>,
    ) -> Result<datafusion::common::Statistics> {
        let mut rows = 0;
        for label in &self.labels {
            rows += match self.picked(label)? {
                Some(found) => found.len(),
                None => self.source.node_count(label)?,
            };
        }
        let mut statistics = datafusion::common::Statistics::new_unknown(&self.schema());
        statistics.num_rows = datafusion::common::stats::Precision::Exact(rows);
        Ok(statistics)
    }
    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("NodeScanExec has one partition, asked for {partition}");
        }
        let schema = self.schema();
        // (label, its rows, its offset, the rows to emit: a range or the rows an index found)
        let mut chunks: Vec<(String, Arc<Chunked>, u32, Rows)> = Vec::new();
        for label in &self.labels {
            let rows = self.source.node_rows(label)?;
            let offset = self.source.node_offset(label)?;
            if let Some(found) = self.picked(label)? {
                for part in found.chunks(GRAPH_BATCH_ROWS) {
                    chunks.push((
                        label.clone(),
                        rows.clone(),
                        offset,
                        Rows::Picked(part.to_vec()),
                    ));
                }
                continue;
            }
            // Ranges never cross a chunk, so each is a zero-copy slice.
            for (start, chunk, _) in rows.chunks() {
                let total = chunk.num_rows();
                for piece in 0..total.div_ceil(GRAPH_BATCH_ROWS) {
                    let from = piece * GRAPH_BATCH_ROWS;
                    let len = GRAPH_BATCH_ROWS.min(total - from);
                    chunks.push((
                        label.clone(),
                        rows.clone(),
                        offset,
                        Rows::Range(start + from, len),
                    ));
                }
            }
        }
        let out_schema = schema.clone();
        let batches = chunks.into_iter().map(move |(label, rows, offset, part)| {
            let columns = columns_of(out_schema.fields(), &label, &rows, offset, &part)?;
            Ok(RecordBatch::try_new_with_options(
                out_schema.clone(),
                columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(part.len())),
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches),
        )))
    }
}

impl NodeScanExec {
    /// The rows of `label` the scan emits (ascending) when its lookup or restriction picks
    /// them; None when it emits the whole table.
    fn picked(&self, label: &str) -> Result<Option<Vec<u32>>> {
        let found = match &self.lookup {
            Some((property, values)) => lookup_rows(self.source.as_ref(), label, property, values)?,
            None => None,
        };
        Ok(match (found, &self.restrict) {
            (Some(found), Some(only)) => Some(
                found
                    .into_iter()
                    .filter(|r| only.binary_search(r).is_ok())
                    .collect(),
            ),
            (None, Some(only)) => Some(only.to_vec()),
            (found, None) => found,
        })
    }
}

/// The rows of `label` whose `property` is one of `values`, per distinct value (so no row
/// twice), by its property index; None when it has none (the caller scans).
fn lookup_parts(
    source: &dyn GraphSource,
    label: &str,
    property: &str,
    values: &[datafusion::common::ScalarValue],
) -> Result<Option<Vec<Vec<u32>>>> {
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    let mut parts = Vec::with_capacity(values.len());
    for value in values.iter().filter(|v| seen.insert(*v)) {
        match source.node_lookup(label, property, value)? {
            Some(found) => parts.push(found),
            None => return Ok(None),
        }
    }
    Ok(Some(parts))
}

/// The rows of `label` whose `property` is one of `values`, ascending (see [`lookup_parts`]).
fn lookup_rows(
    source: &dyn GraphSource,
    label: &str,
    property: &str,
    values: &[datafusion::common::ScalarValue],
) -> Result<Option<Vec<u32>>> {
    Ok(lookup_parts(source, label, property, values)?.map(|parts| {
        let several = parts.len() > 1;
        let mut rows = parts.concat();
        if several {
            rows.sort_unstable();
        }
        rows
    }))
}

/// How many rows the lookup of `var`'s scan (see [`ranked_scan`]) finds: an upper bound on
/// the nodes of `var` the plan can produce, known before it runs. None when the scan has no
/// lookup, has no property index for it, or is not reached row by row.
pub(crate) fn lookup_bound(
    plan: &Arc<dyn ExecutionPlan>,
    var: &str,
    label: &str,
) -> Result<Option<usize>> {
    let Some(NodeScanExec {
        lookup: Some((property, values)),
        source,
        ..
    }) = ranked_scan(plan, var, label)
    else {
        return Ok(None);
    };
    Ok(lookup_parts(source.as_ref(), label, property, values)?
        .map(|parts| parts.iter().map(Vec::len).sum()))
}

/// An estimate, before `plan` runs, of the rows it produces, when it is a path of row-by-row
/// operators (see [`row_by_row`]) over one scan; an upper bound but for its filters. The
/// scan gives the rows its lookup finds (exact) or its tables' rows; each expansion
/// multiplies them by a degree: the first, from looked-up nodes, by their exact degrees in
/// the adjacency, any other by its edge tables' average degree (edges over the nodes of the
/// label they leave). None when `plan` is not such a path.
pub(crate) fn reach_estimate(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<f64>> {
    let mut expansions: Vec<&GraphExpandExec> = Vec::new();
    let mut at = plan;
    let scan = loop {
        if let Some(scan) = at.as_any().downcast_ref::<NodeScanExec>() {
            break scan;
        }
        if let Some(expand) = at.as_any().downcast_ref::<GraphExpandExec>() {
            expansions.push(expand);
        }
        match at.children().as_slice() {
            [child] if row_by_row(at.as_ref()) => at = child,
            _ => return Ok(None),
        }
    };
    let source = scan.source.as_ref();
    // The ordinals the lookup found; None: the scan reads whole tables (`rows` of them).
    let mut found: Option<Vec<u32>> = Some(Vec::new());
    let mut rows = 0usize;
    for label in &scan.labels {
        match (scan.picked(label)?, &mut found) {
            (Some(hits), Some(ordinals)) => {
                let offset = source.node_offset(label)?;
                rows += hits.len();
                ordinals.extend(hits.iter().map(|r| r + offset));
            }
            _ => {
                found = None;
                rows += source.node_count(label)?;
            }
        }
    }
    let mut estimate = rows as f64;
    let from_scan = column_name(&scan.var, ORD);
    for (i, expand) in expansions.iter().rev().enumerate() {
        let node = &expand.node;
        match (&found, i) {
            (Some(ordinals), 0) if node.from_column == from_scan => {
                let mut degrees = 0usize;
                for rel_type in &node.rel_types {
                    let adjacency = source.adjacency(rel_type)?;
                    for &o in ordinals {
                        degrees += match node.direction {
                            ExpandDirection::Out => adjacency.out_degree(o),
                            ExpandDirection::In => adjacency.in_degree(o),
                            ExpandDirection::Both => {
                                adjacency.out_degree(o) + adjacency.in_degree(o)
                            }
                        };
                    }
                }
                estimate = degrees as f64;
            }
            _ => estimate *= average_degree(source, node)?,
        }
    }
    Ok(Some(estimate))
}

/// The average number of edges an expansion follows from one node: per edge table, its edges
/// over the nodes of the label it leaves from (both ends for an undirected one).
fn average_degree(source: &dyn GraphSource, expand: &GraphExpand) -> Result<f64> {
    let tables = source.edge_tables();
    let mut degree = 0.0;
    for rel_type in &expand.rel_types {
        let Some(table) = tables.iter().find(|t| &t.table == rel_type) else {
            return internal_err!("expansion over unknown edge table {rel_type}");
        };
        let edges = source.adjacency(rel_type)?.edge_count() as f64;
        let per = |label: &str| -> Result<f64> {
            let nodes = source.node_count(label)?;
            Ok(if nodes == 0 {
                0.0
            } else {
                edges / nodes as f64
            })
        };
        degree += match expand.direction {
            ExpandDirection::Out => per(&table.from)?,
            ExpandDirection::In => per(&table.to)?,
            ExpandDirection::Both => per(&table.from)? + per(&table.to)?,
        };
    }
    Ok(degree)
}

/// The single-label scan of `var` over `label` in `plan`, when it is reached through
/// row-by-row operators alone (see [`row_by_row`]): then limiting it to some nodes limits
/// the plan's output to those nodes' rows and changes no other row.
pub(crate) fn ranked_scan<'a>(
    plan: &'a Arc<dyn ExecutionPlan>,
    var: &str,
    label: &str,
) -> Option<&'a NodeScanExec> {
    if let Some(scan) = plan.as_any().downcast_ref::<NodeScanExec>() {
        return (scan.var == var && scan.labels == [label]).then_some(scan);
    }
    match plan.children().as_slice() {
        [child] if row_by_row(plan.as_ref()) => ranked_scan(child, var, label),
        _ => None,
    }
}

/// Operators that pass each input row on by itself (or drop it), so that limiting a scan below
/// them to some nodes limits their output to the rows of those nodes and changes no other row.
fn row_by_row(plan: &dyn ExecutionPlan) -> bool {
    use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
    use datafusion::physical_plan::coop::CooperativeExec;
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::projection::ProjectionExec;
    use datafusion::physical_plan::repartition::RepartitionExec;
    let any = plan.as_any();
    any.is::<FilterExec>()
        || any.is::<ProjectionExec>()
        || any.is::<CooperativeExec>()
        || any.is::<CoalescePartitionsExec>()
        || any.is::<RepartitionExec>()
        || any.is::<GraphExpandExec>()
}

/// `plan` with its [`ranked_scan`] of `var` limited to the table rows `rows` (ascending);
/// None when it has none (an aggregate, a limit, a join on the way).
pub(crate) fn restrict_scan(
    plan: &Arc<dyn ExecutionPlan>,
    var: &str,
    label: &str,
    rows: &Arc<Vec<u32>>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if ranked_scan(plan, var, label).is_none() {
        return Ok(None);
    }
    limited(plan, rows).map(Some)
}

/// `plan`, a path that [`ranked_scan`] accepted, with its scan limited to `rows`.
fn limited(plan: &Arc<dyn ExecutionPlan>, rows: &Arc<Vec<u32>>) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(scan) = plan.as_any().downcast_ref::<NodeScanExec>() {
        return Ok(Arc::new(NodeScanExec {
            labels: scan.labels.clone(),
            lookup: scan.lookup.clone(),
            restrict: Some(rows.clone()),
            var: scan.var.clone(),
            source: scan.source.clone(),
            properties: scan.properties.clone(),
        }));
    }
    let [child] = plan.children()[..] else {
        return internal_err!("a limited scan's path has one child per operator");
    };
    plan.clone().with_new_children(vec![limited(child, rows)?])
}

/// The node columns `fields` (as `NodeScan` names them) of `part`'s rows of one label.
fn columns_of(
    fields: &[arrow::datatypes::FieldRef],
    label: &str,
    rows: &Chunked,
    offset: u32,
    part: &Rows,
) -> Result<Vec<ArrayRef>> {
    let len = part.len();
    let slice = match part {
        Rows::Range(start, len) => Some(rows.slice(*start, *len)?),
        Rows::Picked(_) => None,
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for field in fields {
        let name = &field.name()[field.name().find('.').map(|i| i + 1).unwrap_or(0)..];
        let values = match (name, &slice, part) {
            (crate::nodes::ORD, ..) => Some(Arc::new(part.ordinals(offset)) as ArrayRef),
            (crate::nodes::LABEL, ..) => {
                Some(Arc::new(StringArray::from(vec![label; len])) as ArrayRef)
            }
            (crate::nodes::ID, Some((_, ids)), _) => Some(ids.clone()),
            (name, Some((batch, _)), _) => batch.column_by_name(name).cloned(),
            (name, None, Rows::Picked(picked)) => rows.take(name, picked)?,
            (_, None, Rows::Range(..)) => {
                return internal_err!("a range without its slice");
            }
        };
        columns.push(match values {
            Some(c) => conform(&c, field.data_type())?,
            None => new_null_array(field.data_type(), len),
        });
    }
    Ok(columns)
}

/// The node columns `fields` of the label's table rows `picked`, in that order.
pub(crate) fn node_columns(
    fields: &[arrow::datatypes::FieldRef],
    label: &str,
    rows: &Chunked,
    offset: u32,
    picked: &[u32],
) -> Result<Vec<ArrayRef>> {
    columns_of(fields, label, rows, offset, &Rows::Picked(picked.to_vec()))
}

/// The rows of a label one NodeScan batch holds.
enum Rows {
    /// `len` table rows from `start`, all in one chunk.
    Range(usize, usize),
    /// The table rows an index lookup found.
    Picked(Vec<u32>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Range(_, len) => *len,
            Rows::Picked(rows) => rows.len(),
        }
    }

    fn ordinals(&self, offset: u32) -> UInt32Array {
        match self {
            Rows::Range(start, len) => UInt32Array::from_iter_values(
                (offset + *start as u32)..(offset + (start + len) as u32),
            ),
            Rows::Picked(rows) => UInt32Array::from_iter_values(rows.iter().map(|r| offset + r)),
        }
    }
}

/// Casts a column to the unified type of its union column.
fn conform(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        Ok(array.clone())
    } else {
        Ok(cast(array, to)?)
    }
}

/// Expands each input row along the edges of one type (see [`GraphExpand`]).
#[derive(Debug)]
pub struct GraphExpandExec {
    input: Arc<dyn ExecutionPlan>,
    node: GraphExpand,
    from_index: usize,
    source: Arc<dyn GraphSource>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for GraphExpandExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "GraphExpandExec: ")?;
        UserDefinedLogicalNode::fmt_for_explain(&self.node, f)
    }
}

impl ExecutionPlan for GraphExpandExec {
    fn name(&self) -> &str {
        "GraphExpandExec"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn required_input_distribution(&self) -> Vec<datafusion::physical_plan::Distribution> {
        vec![datafusion::physical_plan::Distribution::SinglePartition]
    }
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("GraphExpandExec takes one child");
        }
        Ok(Arc::new(GraphExpandExec {
            input: children.remove(0),
            node: self.node.clone(),
            from_index: self.from_index,
            source: self.source.clone(),
            properties: self.properties.clone(),
        }))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let types = EdgeSide::load(
            self.source.as_ref(),
            &self.node.rel_types,
            &self.node.type_names,
        )?;
        let targets = NodeSide::load(self.source.as_ref(), &self.node.to_labels)?;
        let expander = Expander {
            schema: self.schema(),
            input_columns: self.input.schema().fields().len(),
            rel_prefix: format!("{}.", self.node.rel_var),
            node_prefix: format!("{}.", self.node.to_var),
            from_index: self.from_index,
            direction: self.node.direction,
            optional: self.node.optional,
            types,
            targets,
        };
        let schema = self.schema();
        // Output goes out batch by batch as it is produced: an input batch whose rows fan
        // out widely is expanded a slice of rows at a time, never all at once.
        let state = ExpandState {
            input,
            expander,
            current: None,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some((batch, row)) = state.current.take() {
                    match state.expander.expand_from(&batch, row) {
                        Err(e) => return Some((Err(e), state)),
                        Ok((out, next)) => {
                            state.current = next.map(|next| (batch, next));
                            if let Some(out) = out {
                                return Some((Ok(out), state));
                            }
                            continue;
                        }
                    }
                }
                match state.input.next().await {
                    None => return None,
                    Some(Err(e)) => return Some((Err(e), state)),
                    Some(Ok(batch)) => state.current = Some((batch, 0)),
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Where a GraphExpand stream is: the input, and the input batch being expanded with the
/// next row to expand.
struct ExpandState {
    input: SendableRecordBatchStream,
    expander: Expander,
    current: Option<(RecordBatch, usize)>,
}

pub(crate) struct EdgeSide {
    pub(crate) name: String,
    pub(crate) adjacency: Arc<contextdb_graph::Adjacency>,
    pub(crate) rows: Arc<Chunked>,
    pub(crate) offset: u32,
}

impl EdgeSide {
    /// The edge tables `tables` (of relationship types `names`) at the source's snapshot.
    pub(crate) fn load(
        source: &dyn GraphSource,
        tables: &[String],
        names: &[String],
    ) -> Result<Vec<EdgeSide>> {
        let mut types = Vec::with_capacity(tables.len());
        for (table, name) in tables.iter().zip(names) {
            types.push(EdgeSide {
                name: name.clone(),
                adjacency: source.adjacency(table)?,
                rows: source.edge_rows(table)?,
                offset: source.edge_offset(table)?,
            });
        }
        Ok(types)
    }
}

pub(crate) struct NodeSide {
    pub(crate) name: String,
    pub(crate) offset: u32,
    pub(crate) end: u32,
    pub(crate) rows: Arc<Chunked>,
}

impl NodeSide {
    /// The node tables of `labels`, sorted by their first ordinal (see [`target_of`]).
    pub(crate) fn load(source: &dyn GraphSource, labels: &[String]) -> Result<Vec<NodeSide>> {
        let mut targets = Vec::with_capacity(labels.len());
        for label in labels {
            let rows = source.node_rows(label)?;
            let offset = source.node_offset(label)?;
            targets.push(NodeSide {
                name: label.clone(),
                end: offset + rows.num_rows() as u32,
                offset,
                rows,
            });
        }
        targets.sort_by_key(|t| t.offset);
        Ok(targets)
    }
}

/// The index in `targets` (sorted by offset) of the label a global ordinal belongs to.
pub(crate) fn target_of(targets: &[NodeSide], ordinal: u32) -> Option<usize> {
    let i = targets.partition_point(|t| t.end <= ordinal);
    (i < targets.len() && targets[i].offset <= ordinal).then_some(i)
}

/// One match: input row, edge type index, edge row in its table, neighbour ordinal.
type Hit = (u32, Option<(usize, u32, u32)>);

struct Expander {
    schema: SchemaRef,
    input_columns: usize,
    /// `rel.` and `node.`: the prefixes of the relationship's and the neighbour's columns,
    /// which follow the input's (only those the plan reads: see `prune`).
    rel_prefix: String,
    node_prefix: String,
    from_index: usize,
    direction: ExpandDirection,
    optional: bool,
    types: Vec<EdgeSide>,
    /// Sorted by offset: the labels a neighbour may have.
    targets: Vec<NodeSide>,
}

impl Expander {
    /// The target label index of a global ordinal, if it is one of ours.
    fn target_of(&self, ordinal: u32) -> Option<usize> {
        target_of(&self.targets, ordinal)
    }

    /// Expands the rows of `batch` from `start` until at least [`GRAPH_BATCH_ROWS`] matches
    /// are found or the batch ends: the output batch (None if nothing matched) and the next
    /// row to expand (None at the end). An output batch holds at most `GRAPH_BATCH_ROWS` plus
    /// the largest degree of one node's matches.
    fn expand_from(
        &self,
        batch: &RecordBatch,
        start: usize,
    ) -> Result<(Option<RecordBatch>, Option<usize>)> {
        let from = batch
            .column(self.from_index)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "GraphExpand source column is not UInt32".into(),
                )
            })?;
        let mut hits: Vec<Hit> = Vec::with_capacity(GRAPH_BATCH_ROWS);
        let mut row = start;
        while row < batch.num_rows() && hits.len() < GRAPH_BATCH_ROWS {
            let before = hits.len();
            if from.is_valid(row) {
                let node = from.value(row);
                for (t, side) in self.types.iter().enumerate() {
                    let mut push = |neighbour: u32, edge: u32| {
                        if self.target_of(neighbour).is_some() {
                            hits.push((row as u32, Some((t, edge, neighbour))));
                        }
                    };
                    match self.direction {
                        ExpandDirection::Out => side.adjacency.for_each_out(node, &mut push),
                        ExpandDirection::In => side.adjacency.for_each_in(node, &mut push),
                        ExpandDirection::Both => {
                            side.adjacency.for_each_out(node, &mut push);
                            side.adjacency.for_each_in(node, |n, e| {
                                // A self-loop was already matched going out.
                                if n != node {
                                    push(n, e)
                                }
                            });
                        }
                    }
                }
            }
            if hits.len() == before && self.optional {
                hits.push((row as u32, None));
            }
            row += 1;
        }
        let out = if hits.is_empty() {
            None
        } else {
            Some(self.emit(batch, &hits)?)
        };
        Ok((out, (row < batch.num_rows()).then_some(row)))
    }

    fn emit(&self, batch: &RecordBatch, hits: &[Hit]) -> Result<RecordBatch> {
        use crate::nodes::{LABEL, ORD, TYPE, rel_table_column};
        let rows = UInt32Array::from_iter_values(hits.iter().map(|h| h.0));
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for column in batch.columns() {
            columns.push(take(column.as_ref(), &rows, None)?);
        }
        let edge_sources = |name: &str| -> Vec<(Option<Vec<ArrayRef>>, &Chunked)> {
            self.types
                .iter()
                .map(|side| (side.rows.column(name), side.rows.as_ref()))
                .collect()
        };
        let node_sources = |name: &str| -> Vec<(Option<Vec<ArrayRef>>, &Chunked)> {
            self.targets
                .iter()
                .map(|side| (side.rows.column(name), side.rows.as_ref()))
                .collect()
        };
        for field in &self.schema.fields()[self.input_columns..] {
            let name = field.name();
            let column: ArrayRef = if let Some(p) = name.strip_prefix(&self.rel_prefix) {
                match p {
                    ORD => Arc::new(UInt32Array::from_iter(
                        hits.iter()
                            .map(|h| h.1.map(|(t, e, _)| self.types[t].offset + e)),
                    )),
                    TYPE => Arc::new(StringArray::from_iter(
                        hits.iter()
                            .map(|h| h.1.map(|(t, _, _)| self.types[t].name.as_str())),
                    )),
                    p => {
                        let picks = hits.iter().map(|h| h.1.map(|(t, e, _)| (t, e as usize)));
                        pick(&edge_sources(rel_table_column(p)), picks, field.data_type())?
                    }
                }
            } else if let Some(p) = name.strip_prefix(&self.node_prefix) {
                match p {
                    ORD => Arc::new(UInt32Array::from_iter(
                        hits.iter().map(|h| h.1.map(|(_, _, n)| n)),
                    )),
                    LABEL => Arc::new(StringArray::from_iter(hits.iter().map(|h| {
                        h.1.and_then(|(_, _, n)| self.target_of(n))
                            .map(|i| self.targets[i].name.as_str())
                    }))),
                    p => {
                        let picks = hits.iter().map(|h| {
                            h.1.and_then(|(_, _, n)| {
                                let i = self.target_of(n)?;
                                Some((i, (n - self.targets[i].offset) as usize))
                            })
                        });
                        pick(&node_sources(p), picks, field.data_type())?
                    }
                }
            } else {
                return internal_err!(
                    "GraphExpand column {name} is neither the relationship's nor the neighbour's"
                );
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(hits.len())),
        )?)
    }
}

/// Builds a column of `to` values, row `i` taken from table row `r` of `sources[s]` for
/// `picks[i] = Some((s, r))`, null for None or for a source without that column.
pub(crate) fn pick(
    sources: &[(Option<Vec<ArrayRef>>, &Chunked)],
    picks: impl Iterator<Item = Option<(usize, usize)>>,
    to: &DataType,
) -> Result<ArrayRef> {
    let nulls = new_null_array(to, 1);
    let mut arrays: Vec<ArrayRef> = Vec::new();
    // The index in `arrays` of each source's first chunk (None: the source lacks the column).
    let mut first: Vec<Option<usize>> = Vec::with_capacity(sources.len());
    for (column, _) in sources {
        match column {
            Some(parts) => {
                first.push(Some(arrays.len()));
                for part in parts {
                    arrays.push(conform(part, to)?);
                }
            }
            None => first.push(None),
        }
    }
    let null_source = arrays.len();
    arrays.push(nulls);
    let indices: Vec<(usize, usize)> = picks
        .map(|p| match p {
            Some((s, r)) => match first[s] {
                Some(base) => {
                    let (chunk, row) = sources[s].1.locate(r);
                    (base + chunk, row)
                }
                None => (null_source, 0),
            },
            None => (null_source, 0),
        })
        .collect();
    let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
    Ok(interleave(&refs, &indices)?)
}

/// Plans [`NodeScan`] and [`GraphExpand`] into their operators, over the snapshot each node
/// carries.
#[derive(Debug)]
pub struct GraphExtensionPlanner;

#[async_trait]
impl ExtensionPlanner for GraphExtensionPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session_state: &SessionState,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let any = node.as_any();
        if let Some(scan) = any.downcast_ref::<NodeScan>() {
            let schema = Arc::new(scan.schema.as_arrow().clone());
            return Ok(Some(Arc::new(NodeScanExec {
                labels: scan.labels.clone(),
                lookup: scan.lookup.clone(),
                restrict: None,
                var: scan.var.clone(),
                source: scan.source.0.clone(),
                properties: properties(schema),
            })));
        }
        if let Some(expand) = any.downcast_ref::<GraphExpand>() {
            let [input] = physical_inputs else {
                return internal_err!("GraphExpand has one input");
            };
            let from_index = input.schema().index_of(&expand.from_column)?;
            let schema = Arc::new(expand.schema.as_arrow().clone());
            return Ok(Some(Arc::new(GraphExpandExec {
                input: input.clone(),
                node: expand.clone(),
                from_index,
                source: expand.source.0.clone(),
                properties: properties(schema),
            })));
        }
        if let Some(walk) = any.downcast_ref::<VarLengthExpand>() {
            let [input] = physical_inputs else {
                return internal_err!("VarLengthExpand has one input");
            };
            let from_index = input.schema().index_of(&walk.from_column)?;
            let schema = Arc::new(walk.schema.as_arrow().clone());
            return Ok(Some(Arc::new(VarLengthExpandExec {
                input: input.clone(),
                node: walk.clone(),
                from_index,
                source: walk.source.0.clone(),
                properties: properties(schema),
            })));
        }
        if let Some(exec) = crate::vector::plan_vector_node(node, physical_inputs)? {
            return Ok(Some(exec));
        }
        if let Some(written) = any.downcast_ref::<WrittenRows>() {
            let Some(batches) = written.slot.get() else {
                return internal_err!("the rows of a write block were read before it ran");
            };
            let schema = Arc::new(written.schema.as_arrow().clone());
            let exec: Arc<dyn ExecutionPlan> =
                datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                    &[batches],
                    schema,
                    None,
                )?;
            return Ok(Some(exec));
        }
        Ok(None)
    }
}

/// The session's query planner: DataFusion's, plus the graph operators. It holds no
/// snapshot, so one session serves every statement of a database.
#[derive(Debug)]
pub struct GraphQueryPlanner;

#[async_trait]
impl QueryPlanner for GraphQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &SessionState,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(GraphExtensionPlanner)]);
        planner
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}
