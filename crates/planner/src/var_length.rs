//! Variable-length relationship patterns (`-[:T*1..3]->`): the [`VarLengthExpand`] node, its
//! operator, the rule that lets it visit each node once when only distinct end nodes are read
//! ([`ReachWhenDistinct`]), and the limits that keep a walk from running away
//! ([`ContextQlOptions`]).
//!
//! openCypher matches trails: no relationship twice in one match, nodes may repeat. The
//! operator walks the edge tables' `Csr`s depth first, one trail per output row, and streams
//! them out a batch at a time; the stack is as deep as the longest trail, never wider than
//! one node's neighbours per level.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ListArray, RecordBatch, StringArray, StructArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, SchemaRef};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{
    Column, DFSchemaRef, DataFusionError, Result, ScalarValue, internal_err, plan_err,
};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Aggregate, Distinct, Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::exec::{EdgeSide, GRAPH_BATCH_ROWS, NodeSide, pick, target_of};
use crate::expr::value_kind;
use crate::nodes::{
    ExpandDirection, GraphExpand, ID, LABEL, ORD, TYPE, column_name, df_schema, node_fields,
    rel_fields, rel_table_column,
};
use crate::source::{Chunked, EdgeTableInfo, GraphSource, NodeTableInfo, SourceRef};

/// Default of `contextql.max_hops`.
pub const DEFAULT_MAX_HOPS: u64 = 32;
/// Default of `contextql.max_expand_rows`.
pub const DEFAULT_MAX_EXPAND_ROWS: u64 = 100_000_000;

/// ContextQL's settings: `SET contextql.<name> = <value>` holds for the session's statements
/// after it (`docs/paths.md`). A DataFusion config extension, so SET, RESET, SHOW and
/// `information_schema.df_settings` know them; written out rather than by DataFusion's macro,
/// whose entries lack the `contextql.` prefix that SHOW looks them up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextQlOptions {
    /// Hops an unbounded variable-length pattern (`*`, `*2..`) may take.
    pub max_hops: u64,
    /// Rows one variable-length expansion may produce in one statement.
    pub max_expand_rows: u64,
}

impl Default for ContextQlOptions {
    fn default() -> Self {
        ContextQlOptions {
            max_hops: DEFAULT_MAX_HOPS,
            max_expand_rows: DEFAULT_MAX_EXPAND_ROWS,
        }
    }
}

const MAX_HOPS_DOC: &str = "Hops an unbounded variable-length pattern (`*`, `*2..`) may take; a \
     walk that could go further fails with an error naming this setting, rather than hang.";
const MAX_EXPAND_ROWS_DOC: &str = "Rows one variable-length expansion may produce in one \
     statement; past it the statement fails with an error naming this setting.";

impl ExtensionOptions for ContextQlOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let field = match key {
            "max_hops" => &mut self.max_hops,
            "max_expand_rows" => &mut self.max_expand_rows,
            _ => {
                return Err(DataFusionError::Configuration(format!(
                    "unknown setting `contextql.{key}`; ContextQL's settings are \
                     contextql.max_hops and contextql.max_expand_rows"
                )));
            }
        };
        let parsed: u64 = value.trim().parse().map_err(|_| {
            DataFusionError::Configuration(format!(
                "contextql.{key} takes a whole number of at least 1, not `{value}`"
            ))
        })?;
        if parsed == 0 {
            return Err(DataFusionError::Configuration(format!(
                "contextql.{key} takes a whole number of at least 1, not 0"
            )));
        }
        *field = parsed;
        Ok(())
    }
    fn entries(&self) -> Vec<ConfigEntry> {
        vec![
            ConfigEntry {
                key: "contextql.max_hops".into(),
                value: Some(self.max_hops.to_string()),
                description: MAX_HOPS_DOC,
            },
            ConfigEntry {
                key: "contextql.max_expand_rows".into(),
                value: Some(self.max_expand_rows.to_string()),
                description: MAX_EXPAND_ROWS_DOC,
            },
        ]
    }
}

impl ConfigExtension for ContextQlOptions {
    const PREFIX: &'static str = "contextql";
}

/// What a statement's walks may do (from [`ContextQlOptions`], fixed when it is planned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub struct PathLimits {
    pub max_hops: u32,
    pub max_rows: u64,
}

impl Default for PathLimits {
    fn default() -> Self {
        PathLimits::from(&ContextQlOptions::default())
    }
}

impl From<&ContextQlOptions> for PathLimits {
    fn from(o: &ContextQlOptions) -> Self {
        PathLimits {
            max_hops: o.max_hops.min(u32::MAX as u64) as u32,
            max_rows: o.max_expand_rows,
        }
    }
}

/// How a [`VarLengthExpand`] walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum Walk {
    /// Every trail, one row each: what the pattern means.
    Trails,
    /// Each end node once per input row, found breadth first with each node visited once
    /// (Neo4j's pruning var-length expand). Only where the rows above read distinct end nodes
    /// (see [`ReachWhenDistinct`]).
    Reach,
    /// [`Walk::Reach`] that hands on each end node once over all input rows, not once per
    /// row: where the rows above count distinct end nodes and nothing else (see
    /// [`ReachWhenDistinct`]), so the count needs no set of its own.
    ReachOnce,
    /// `shortestPath`: one shortest trail to the node in `target`, by a breadth-first search
    /// from both ends.
    Shortest,
    /// `allShortestPaths`: every shortest trail to the node in `target`.
    AllShortest,
}

/// The column of a variable-length relationship variable `r` holding its relationships'
/// global ordinals (for relationship uniqueness); the variable's own column `r` holds the
/// relationships as a list of structs.
pub fn ordinals_column(rel_var: &str) -> String {
    column_name(rel_var, "__ords")
}

/// The column of a variable-length relationship in a named path holding the nodes between its
/// ends, in the order written (a list of node structs).
pub fn between_column(rel_var: &str) -> String {
    column_name(rel_var, "__nodes")
}

/// What a variable-length expansion hands on besides its end node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TrailShape {
    /// In a named path: the labels a node between the ends may have, and the struct fields
    /// of the path's nodes (the column [`between_column`]).
    pub between: Option<(Vec<String>, Fields)>,
    /// The struct fields of the relationships (a named path's, shared by all its steps);
    /// None: the walk's own tables'.
    pub relationship: Option<Fields>,
    /// The pattern is walked from its right end: the lists are reversed to the written order.
    pub reversed: bool,
}

/// For each input row, one output row per trail of `min..=max` relationships of
/// `rel_types` from the node in `from_column` to a node of `to_labels`, with the list of the
/// trail's relationships and the end node's columns appended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VarLengthExpand {
    pub input: LogicalPlan,
    pub from_column: String,
    pub rel_types: Vec<String>,
    pub type_names: Vec<String>,
    pub direction: ExpandDirection,
    pub min: u32,
    /// None: unbounded, up to `limits.max_hops` (past it, an error).
    pub max: Option<u32>,
    pub limits: PathLimits,
    /// Every relationship of a trail has these property values (`[:T* {k: v}]`).
    pub hop_properties: Vec<(String, ScalarValue)>,
    /// Every relationship / every node a step reaches satisfies these.
    pub hop_filter: Option<StepFilter>,
    pub node_filter: Option<StepFilter>,
    pub walk: Walk,
    /// For the shortest walks: the column of the node the path must end at.
    pub target: Option<String>,
    pub rel_var: String,
    pub to_var: String,
    pub to_labels: Vec<String>,
    pub shape: TrailShape,
    pub schema: DFSchemaRef,
    pub source: SourceRef,
}

/// The struct fields of one relationship of a list, as `entity_struct` builds a single one:
/// `_id`, `_type`, then the tables' columns (`_src`, `_dst` and properties).
pub(crate) fn rel_struct_fields(rel_var: &str, edges: &[EdgeTableInfo]) -> Fields {
    let prefix = format!("{rel_var}.");
    let mut fields = vec![
        Field::new("_id", DataType::Int64, true),
        Field::new("_type", DataType::Utf8, true),
    ];
    for f in rel_fields(rel_var, edges, true) {
        let name = f.name().strip_prefix(&prefix).unwrap_or(f.name());
        if name == ORD
            || name == ID
            || name == TYPE
            || (name.starts_with('_') && name != "_src" && name != "_dst")
        {
            continue;
        }
        fields.push(Field::new(name, f.data_type().clone(), true));
    }
    fields.into()
}

impl VarLengthExpand {
    #[allow(clippy::too_many_arguments)]
    pub fn try_new(
        source: SourceRef,
        input: LogicalPlan,
        from_var: &str,
        edges: &[EdgeTableInfo],
        direction: ExpandDirection,
        (min, max): (u32, Option<u32>),
        limits: PathLimits,
        hop_properties: Vec<(String, ScalarValue)>,
        rel_var: &str,
        to_var: &str,
        to_tables: &[NodeTableInfo],
        shape: TrailShape,
    ) -> Result<Self> {
        let from_column = column_name(from_var, ORD);
        if input
            .schema()
            .index_of_column_by_name(None, &from_column)
            .is_none()
        {
            return plan_err!("VarLengthExpand input has no column {from_column}");
        }
        let relationship = shape
            .relationship
            .clone()
            .unwrap_or_else(|| rel_struct_fields(rel_var, edges));
        let item = Field::new_struct("item", relationship, true);
        let mut own = vec![
            Field::new(
                ordinals_column(rel_var),
                DataType::List(Arc::new(Field::new("item", DataType::UInt32, true))),
                false,
            ),
            Field::new(rel_var, DataType::List(Arc::new(item)), false),
        ];
        if let Some((_, fields)) = &shape.between {
            own.push(Field::new(
                between_column(rel_var),
                DataType::List(Arc::new(Field::new_struct("item", fields.clone(), true))),
                false,
            ));
        }
        own.extend(node_fields(to_var, to_tables, false));
        let schema = after_input(input.schema(), own.into_iter().map(Arc::new))?;
        Ok(VarLengthExpand {
            input,
            from_column,
            rel_types: edges.iter().map(|e| e.table.clone()).collect(),
            type_names: edges.iter().map(|e| e.rel_type.clone()).collect(),
            direction,
            min,
            max,
            limits,
            hop_properties,
            hop_filter: None,
            node_filter: None,
            walk: Walk::Trails,
            target: None,
            rel_var: rel_var.to_string(),
            to_var: to_var.to_string(),
            to_labels: to_tables.iter().map(|t| t.label.clone()).collect(),
            shape,
            schema,
            source,
        })
    }

    /// The columns this node adds after its input's.
    pub fn own_fields(&self) -> &[FieldRef] {
        &self.schema.fields()[self.input.schema().fields().len()..]
    }

    /// This expansion over another input, adding the `own` columns (a subset of its own).
    pub fn with_input(&self, input: LogicalPlan, own: Vec<FieldRef>) -> Result<Self> {
        let schema = if Arc::ptr_eq(input.schema(), self.input.schema())
            && own.as_slice() == self.own_fields()
        {
            self.schema.clone()
        } else {
            after_input(input.schema(), own)?
        };
        Ok(VarLengthExpand {
            input,
            schema,
            ..self.clone()
        })
    }

    /// Whether the rows above read the trail (its relationships), not only where it ends.
    fn reads_trail(&self) -> bool {
        let (list, between) = (
            ordinals_column(&self.rel_var),
            between_column(&self.rel_var),
        );
        self.own_fields()
            .iter()
            .any(|f| f.name() == &self.rel_var || f.name() == &list || f.name() == &between)
    }

    /// Whether a breadth-first walk that visits each node once finds the same end nodes as
    /// the trails: with at most one hop required, every node other than the start that a walk
    /// reaches, a shortest walk reaches, and a shortest walk is a trail. The start itself is
    /// reached again only over a cycle; directed, the shortest such cycle is a trail, but
    /// undirected a walk may go out and back over one relationship, so there the start must
    /// be a zero-hop match.
    fn may_reach(&self) -> bool {
        self.min == 0 || (self.min == 1 && self.direction != ExpandDirection::Both)
    }
}

fn after_input(
    input: &DFSchemaRef,
    own: impl IntoIterator<Item = FieldRef>,
) -> Result<DFSchemaRef> {
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(own.into_iter().map(|f| f.as_ref().clone()));
    df_schema(fields)
}

impl PartialOrd for VarLengthExpand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (
            &self.from_column,
            &self.rel_types,
            &self.rel_var,
            &self.to_var,
        )
            .partial_cmp(&(
                &other.from_column,
                &other.rel_types,
                &other.rel_var,
                &other.to_var,
            ))
    }
}

impl UserDefinedLogicalNodeCore for VarLengthExpand {
    fn name(&self) -> &str {
        "VarLengthExpand"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let from = self.from_column.trim_end_matches(".__ord");
        let (l, r) = match self.direction {
            ExpandDirection::Out => ("-", "->"),
            ExpandDirection::In => ("<-", "-"),
            ExpandDirection::Both => ("-", "-"),
        };
        let max = match self.max {
            Some(max) => max.to_string(),
            None => String::new(),
        };
        write!(
            f,
            "VarLengthExpand: ({from}){l}[{}:{}*{}..{max}]{r}({}:{}) walk={} columns=[{}]",
            self.rel_var,
            self.type_names.join("|"),
            self.min,
            self.to_var,
            self.to_labels.join("|"),
            match self.walk {
                Walk::Trails => "trails",
                Walk::Reach => "reach (breadth-first, each node once)",
                Walk::ReachOnce => "reach once (breadth-first, each end once over all rows)",
                Walk::Shortest => "shortest (breadth-first from both ends)",
                Walk::AllShortest => "all shortest (breadth-first)",
            },
            self.own_fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        if let Some(target) = &self.target {
            write!(f, " to {}", target.trim_end_matches(".__ord"))?;
        }
        for (property, value) in &self.hop_properties {
            write!(f, " every {property} = {value}")?;
        }
        if let Some(filter) = &self.hop_filter {
            write!(f, " every relationship: {}", filter.predicate)?;
        }
        if let Some(filter) = &self.node_filter {
            write!(f, " every node: {}", filter.predicate)?;
        }
        Ok(())
    }
    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        if !exprs.is_empty() || inputs.len() != 1 {
            return plan_err!("VarLengthExpand takes exactly one input and no expressions");
        }
        self.with_input(inputs.remove(0), self.own_fields().to_vec())
    }
}

// ---------------------------------------------------------------------------------------------
// The optimizer rule
// ---------------------------------------------------------------------------------------------

/// Where the rows of a variable-length expansion reach only a DISTINCT, or an aggregation
/// whose results do not depend on how often a row comes (grouping keys, `count(DISTINCT ..)`,
/// `min`, `max`), and nothing reads the trails themselves, the expansion visits each node once
/// ([`Walk::Reach`]) instead of enumerating trails: on a dense graph that is the difference
/// between millions of rows and thousands. Runs after the column pruning, which drops the
/// trail columns nothing reads.
#[derive(Debug, Default)]
pub struct ReachWhenDistinct;

impl OptimizerRule for ReachWhenDistinct {
    fn name(&self) -> &str {
        "reach_when_distinct"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_down(|node| {
            let input = match &node {
                LogicalPlan::Distinct(Distinct::All(input)) => input.as_ref(),
                LogicalPlan::Aggregate(aggregate) if repeats_do_not_count(aggregate) => {
                    aggregate.input.as_ref()
                }
                _ => return Ok(Transformed::no(node)),
            };
            let Some(input) = reach_below(input)? else {
                return Ok(Transformed::no(node));
            };
            if let LogicalPlan::Aggregate(aggregate) = &node
                && let Some(counted) = count_once(aggregate, &input)?
            {
                return Ok(Transformed::yes(counted));
            }
            Ok(Transformed::yes(
                node.with_new_exprs(node.expressions(), vec![input])?,
            ))
        })
    }
}

/// `count(DISTINCT e.__ord)` (and nothing else, no grouping) over a reaching walk that ends
/// at `e`, through projections only: the walk hands each end once over all its rows
/// ([`Walk::ReachOnce`]) and the count becomes a plain `count`, with no set of seen values.
/// (A filter between could drop an end where it came with one start and keep it with
/// another, so none may stand between.)
fn count_once(aggregate: &Aggregate, input: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    if !aggregate.group_expr.is_empty() {
        return Ok(None);
    }
    let mut counted: Option<&Column> = None;
    for e in &aggregate.aggr_expr {
        let Expr::AggregateFunction(f) = unaliased(e) else {
            return Ok(None);
        };
        let params = &f.params;
        let [Expr::Column(c)] = params.args.as_slice() else {
            return Ok(None);
        };
        if f.func.name() != "count"
            || !params.distinct
            || params.filter.is_some()
            || !params.order_by.is_empty()
            || counted.is_some_and(|d| d != c)
        {
            return Ok(None);
        }
        counted = Some(c);
    }
    let Some(counted) = counted else {
        return Ok(None);
    };
    let Some(input) = reach_once_below(input, &counted.name)? else {
        return Ok(None);
    };
    let aggr_expr = aggregate
        .aggr_expr
        .iter()
        .map(|e| {
            datafusion::functions_aggregate::count::count(Expr::Column(counted.clone()))
                .alias(e.schema_name().to_string())
        })
        .collect();
    Ok(Some(LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::new(input),
        vec![],
        aggr_expr,
    )?)))
}

/// `plan` with the reaching walk that ends at the node whose ordinal column is `column`
/// handing each end once, looking down through projections that pass the column on.
fn reach_once_below(plan: &LogicalPlan, column: &str) -> Result<Option<LogicalPlan>> {
    let input = match plan {
        LogicalPlan::Projection(p)
            if p.expr.iter().any(
                |e| matches!(e, Expr::Column(c) if c.name == column && c.relation.is_none()),
            ) =>
        {
            p.input.as_ref()
        }
        LogicalPlan::SubqueryAlias(s) => s.input.as_ref(),
        LogicalPlan::Extension(ext) => {
            let Some(walk) = ext.node.as_any().downcast_ref::<VarLengthExpand>() else {
                return Ok(None);
            };
            if walk.walk != Walk::Reach || column_name(&walk.to_var, ORD) != column {
                return Ok(None);
            }
            let mut once = walk.clone();
            once.walk = Walk::ReachOnce;
            return Ok(Some(LogicalPlan::Extension(Extension {
                node: Arc::new(once),
            })));
        }
        _ => return Ok(None),
    };
    match reach_once_below(input, column)? {
        None => Ok(None),
        Some(input) => Ok(Some(plan.with_new_exprs(plan.expressions(), vec![input])?)),
    }
}

/// `e` without the aliases around it (an aggregate's expressions are named by them).
fn unaliased(mut e: &Expr) -> &Expr {
    while let Expr::Alias(alias) = e {
        e = alias.expr.as_ref();
    }
    e
}

/// Whether the aggregation's result is the same with each input row once as with repeats.
fn repeats_do_not_count(aggregate: &Aggregate) -> bool {
    aggregate.aggr_expr.iter().all(|e| match unaliased(e) {
        Expr::AggregateFunction(f) => {
            f.params.distinct || matches!(f.func.name(), "min" | "max" | "bool_and" | "bool_or")
        }
        _ => false,
    })
}

/// `plan` with its variable-length expansions walking [`Walk::Reach`] where they may, looking
/// down through operators that pass rows on one by one (a repeat above stays a repeat below).
fn reach_below(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let input = match plan {
        LogicalPlan::Projection(p) => p.input.as_ref(),
        LogicalPlan::Filter(f) => f.input.as_ref(),
        LogicalPlan::SubqueryAlias(s) => s.input.as_ref(),
        LogicalPlan::Sort(s) if s.fetch.is_none() => s.input.as_ref(),
        LogicalPlan::Extension(ext) => {
            let any = ext.node.as_any();
            if let Some(expand) = any.downcast_ref::<GraphExpand>() {
                &expand.input
            } else if let Some(walk) = any.downcast_ref::<VarLengthExpand>() {
                let below = reach_below(&walk.input)?;
                let becomes_reach =
                    walk.walk == Walk::Trails && !walk.reads_trail() && walk.may_reach();
                if below.is_none() && !becomes_reach {
                    return Ok(None);
                }
                let input = below.unwrap_or_else(|| walk.input.clone());
                let mut walked = walk.with_input(input, walk.own_fields().to_vec())?;
                if becomes_reach {
                    walked.walk = Walk::Reach;
                }
                return Ok(Some(LogicalPlan::Extension(Extension {
                    node: Arc::new(walked),
                })));
            } else {
                return Ok(None);
            }
        }
        _ => return Ok(None),
    };
    match reach_below(input)? {
        None => Ok(None),
        Some(input) => Ok(Some(plan.with_new_exprs(plan.expressions(), vec![input])?)),
    }
}

// ---------------------------------------------------------------------------------------------
// The operator
// ---------------------------------------------------------------------------------------------

/// Runs a [`VarLengthExpand`].
#[derive(Debug)]
pub struct VarLengthExpandExec {
    pub(crate) input: Arc<dyn ExecutionPlan>,
    pub(crate) node: VarLengthExpand,
    pub(crate) from_index: usize,
    pub(crate) source: Arc<dyn GraphSource>,
    pub(crate) properties: Arc<PlanProperties>,
}

impl DisplayAs for VarLengthExpandExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "VarLengthExpandExec: ")?;
        UserDefinedLogicalNodeCore::fmt_for_explain(&self.node, f)
    }
}

impl ExecutionPlan for VarLengthExpandExec {
    fn name(&self) -> &str {
        "VarLengthExpandExec"
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
        // One partition: the row limit counts the whole expansion.
        vec![datafusion::physical_plan::Distribution::SinglePartition]
    }
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("VarLengthExpandExec takes one child");
        }
        Ok(Arc::new(VarLengthExpandExec {
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
        let node = &self.node;
        let types = EdgeSide::load(self.source.as_ref(), &node.rel_types, &node.type_names)?;
        let mut masks = types
            .iter()
            .map(|side| hop_mask(&side.rows, &node.hop_properties))
            .collect::<Result<Vec<_>>>()?;
        if let Some(filter) = &node.hop_filter {
            for (t, side) in types.iter().enumerate() {
                let edges: Vec<(u16, u32)> = (0..side.rows.num_rows() as u32)
                    .map(|e| (t as u16, e))
                    .collect();
                let passed = filter.test(relationship_structs(&types, &edges, &filter.fields)?)?;
                masks[t] = Some(match masks[t].take() {
                    Some(mask) => mask.iter().zip(&passed).map(|(a, b)| *a && *b).collect(),
                    None => passed,
                });
            }
        }
        // The nodes a step may reach, by label (sorted by offset).
        let node_masks = match &node.node_filter {
            None => None,
            Some(filter) => {
                let mut labels: Vec<String> = Vec::new();
                for edge in self.source.edge_tables() {
                    if node.rel_types.contains(&edge.table) {
                        for label in [edge.from, edge.to] {
                            if !labels.contains(&label) {
                                labels.push(label);
                            }
                        }
                    }
                }
                let sides = NodeSide::load(self.source.as_ref(), &labels)?;
                let mut out = Vec::with_capacity(sides.len());
                for side in &sides {
                    let ordinals: Vec<u32> = (side.offset..side.end).collect();
                    let passed = filter.test(node_structs(&sides, &ordinals, &filter.fields)?)?;
                    out.push((side.offset, side.end, passed));
                }
                Some(out)
            }
        };
        let targets = NodeSide::load(self.source.as_ref(), &node.to_labels)?;
        // Whether every node a step can reach has one of the end's labels: then a reaching
        // walk checks no label per node.
        let every_node_an_end = self
            .source
            .edge_tables()
            .into_iter()
            .filter(|e| node.rel_types.contains(&e.table))
            .flat_map(|e| match node.direction {
                ExpandDirection::Out => vec![e.to],
                ExpandDirection::In => vec![e.from],
                ExpandDirection::Both => vec![e.from, e.to],
            })
            .all(|label| node.to_labels.contains(&label));
        let between_field = self
            .schema()
            .field_with_name(&between_column(&node.rel_var))
            .ok()
            .cloned();
        let between = match (&node.shape.between, between_field) {
            (Some((labels, _)), Some(field)) => match field.data_type() {
                DataType::List(item) => match item.data_type() {
                    DataType::Struct(fields) => Some(Between {
                        item: item.clone(),
                        fields: fields.clone(),
                        sides: NodeSide::load(self.source.as_ref(), labels)?,
                    }),
                    _ => return internal_err!("a node list holds structs"),
                },
                _ => return internal_err!("a node list is a list"),
            },
            _ => None,
        };
        let item_fields = match self
            .schema()
            .field_with_name(&node.rel_var)
            .map(|f| f.data_type().clone())
        {
            Ok(DataType::List(item)) => match item.data_type() {
                DataType::Struct(fields) => Some((item.clone(), fields.clone())),
                _ => return internal_err!("a relationship list holds structs"),
            },
            _ => None,
        };
        let target_index = match &node.target {
            Some(column) => Some(self.input.schema().index_of(column)?),
            None => None,
        };
        let walker = Walker {
            target_index,
            schema: self.schema(),
            input_columns: self.input.schema().fields().len(),
            rel_var: node.rel_var.clone(),
            ordinals: ordinals_column(&node.rel_var),
            between_name: between_column(&node.rel_var),
            between,
            reversed: node.shape.reversed,
            node_prefix: format!("{}.", node.to_var),
            item_fields,
            from_index: self.from_index,
            direction: node.direction,
            min: node.min,
            // A shortest walk ends with the graph: it visits each node at most once.
            max: node.max.unwrap_or(match node.walk {
                Walk::Shortest | Walk::AllShortest => u32::MAX,
                _ => node.limits.max_hops,
            }),
            unbounded: node.max.is_none(),
            limits: node.limits,
            walk: node.walk,
            types,
            masks,
            node_masks,
            targets,
            every_node_an_end,
            produced: 0,
            stamps: Vec::new(),
            epoch: 0,
            handed: Vec::new(),
            scratch: Vec::new(),
        };
        let state = WalkState {
            input,
            walker,
            current: None,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(mut current) = state.current.take() {
                    match state.walker.fill(&mut current) {
                        Err(e) => return Some((Err(e), state)),
                        Ok(hits) => {
                            let batch = current.batch.clone();
                            if !current.finished() {
                                state.current = Some(current);
                            }
                            if hits.len() > 0 {
                                return Some((state.walker.emit(&batch, &hits), state));
                            }
                            continue;
                        }
                    }
                }
                match state.input.next().await {
                    None => return None,
                    Some(Err(e)) => return Some((Err(e), state)),
                    Some(Ok(batch)) => match Current::new(
                        batch,
                        state.walker.from_index,
                        state.walker.target_index,
                    ) {
                        Ok(current) => state.current = Some(current),
                        Err(e) => return Some((Err(e), state)),
                    },
                }
            }
        });
        let schema: SchemaRef = self.schema();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Which edge rows of one table every hop may take (None: all).
fn hop_mask(rows: &Chunked, properties: &[(String, ScalarValue)]) -> Result<Option<Vec<bool>>> {
    if properties.is_empty() {
        return Ok(None);
    }
    let mut mask = vec![true; rows.num_rows()];
    for (property, value) in properties {
        let Some(chunks) = rows.column(rel_table_column(property)) else {
            mask.fill(false);
            break;
        };
        let mut at = 0;
        for chunk in chunks {
            let len = chunk.len();
            let part = &mut mask[at..at + len];
            at += len;
            match comparable(value, chunk.data_type()) {
                None => part.fill(false),
                Some(value) => {
                    let equal = arrow::compute::kernels::cmp::eq(
                        &chunk,
                        &arrow::array::Scalar::new(value.to_array()?),
                    )?;
                    for (i, keep) in part.iter_mut().enumerate() {
                        *keep &= equal.is_valid(i) && equal.value(i);
                    }
                }
            }
        }
    }
    Ok(Some(mask))
}

/// `value` as a `to` scalar, if a property of that type can equal it (openCypher: a null
/// equals nothing, and values of different kinds are never equal).
fn comparable(value: &ScalarValue, to: &DataType) -> Option<ScalarValue> {
    if value.is_null() || value_kind(&value.data_type()) != value_kind(to) {
        return None;
    }
    value.cast_to(to).ok()
}

/// Where the walk of one input batch is.
struct Current {
    batch: RecordBatch,
    from: UInt32Array,
    /// The node each row's shortest walk ends at.
    to: Option<UInt32Array>,
    /// The next input row to start from.
    row: usize,
    /// The walk from the row before `row`, if it was left with more to give.
    search: Option<Search>,
}

impl Current {
    fn new(batch: RecordBatch, from_index: usize, to_index: Option<usize>) -> Result<Current> {
        let ordinals = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<UInt32Array>()
                .cloned()
                .ok_or_else(|| {
                    DataFusionError::Internal("VarLengthExpand node column is not UInt32".into())
                })
        };
        let from = ordinals(from_index)?;
        let to = to_index.map(ordinals).transpose()?;
        Ok(Current {
            batch,
            from,
            to,
            row: 0,
            search: None,
        })
    }

    fn finished(&self) -> bool {
        self.search.is_none() && self.row >= self.batch.num_rows()
    }
}

/// One input row's walk, left where the output batch filled up.
enum Search {
    /// Depth first: `frames[..depth + 1]` hold each level's neighbours and the next to take;
    /// `path` the relationships taken, one per level below the top.
    Trails {
        row: u32,
        frames: Vec<Frame>,
        depth: usize,
        path: Vec<(u16, u32)>,
        /// The node each relationship of `path` reaches.
        nodes: Vec<u32>,
    },
    /// Breadth first: the end nodes found, and how many went out.
    Reach {
        row: u32,
        found: Vec<u32>,
        sent: usize,
    },
    /// Shortest walks without a given end: the trails found, each with its end.
    Each {
        row: u32,
        trails: Vec<(u32, Trail)>,
        sent: usize,
    },
    /// Shortest walks: the trails found (relationships and the node each reaches), and how
    /// many went out.
    Found {
        row: u32,
        end: u32,
        trails: Vec<Trail>,
        sent: usize,
    },
}

/// One trail: its relationships (type index, edge row) and the node each reaches.
type Trail = (Vec<(u16, u32)>, Vec<u32>);

/// One edge of a walk: the node at its other end, its type index and its edge row.
type Step = (u32, u16, u32);

/// What a breadth-first search keeps of each node it reaches: its depth and the edges that
/// first reach it there (see `Walker::first_depth_edges`).
type Parents = std::collections::HashMap<u32, (u32, Vec<Step>)>;

#[derive(Default)]
struct Frame {
    /// (neighbour, edge type index, edge row).
    steps: Vec<(u32, u16, u32)>,
    next: usize,
}

/// The rows of one output batch: input row, end node and the range of `edges` (type index,
/// edge row) that is its trail.
#[derive(Default)]
struct Hits {
    rows: Vec<u32>,
    ends: Vec<u32>,
    offsets: Vec<i32>,
    edges: Vec<(u16, u32)>,
    /// The node each edge reaches (same offsets).
    nodes: Vec<u32>,
}

/// The nodes between a trail's ends, for a named path.
struct Between {
    item: FieldRef,
    fields: Fields,
    sides: Vec<NodeSide>,
}

impl Hits {
    fn len(&self) -> usize {
        self.rows.len()
    }
}

struct WalkState {
    input: SendableRecordBatchStream,
    walker: Walker,
    current: Option<Current>,
}

struct Walker {
    /// The input column of the node a shortest walk ends at.
    target_index: Option<usize>,
    schema: SchemaRef,
    input_columns: usize,
    rel_var: String,
    ordinals: String,
    between_name: String,
    between: Option<Between>,
    reversed: bool,
    node_prefix: String,
    /// The relationship struct's field and fields, when the list is read.
    item_fields: Option<(FieldRef, Fields)>,
    from_index: usize,
    direction: ExpandDirection,
    min: u32,
    max: u32,
    unbounded: bool,
    limits: PathLimits,
    walk: Walk,
    types: Vec<EdgeSide>,
    masks: Vec<Option<Vec<bool>>>,
    /// (first ordinal, end, which pass) per label a step may reach, when nodes are filtered.
    node_masks: Option<Vec<(u32, u32, Vec<bool>)>>,
    targets: Vec<NodeSide>,
    /// Every node a step can reach has one of the end's labels (see `execute`).
    every_node_an_end: bool,
    /// Rows produced so far (against `limits.max_rows`).
    produced: u64,
    /// Breadth first: `stamps[n] == epoch` marks node `n` seen from the current start.
    stamps: Vec<u32>,
    epoch: u32,
    /// [`Walk::ReachOnce`]: the end nodes handed on so far, over all input rows.
    handed: Vec<bool>,
    scratch: Vec<(u32, u16, u32)>,
}

/// Whether a reaching walk hands end `n` on: always, but a [`Walk::ReachOnce`] only the
/// first time over all its starts (`handed` is sized to every target).
#[inline(always)]
fn hand(once: bool, handed: &mut [bool], n: u32) -> bool {
    !once || !std::mem::replace(&mut handed[n as usize], true)
}

impl Walker {
    /// The edges the walk may take from `node`: (neighbour, type index, edge row).
    fn neighbours(&self, node: u32, out: &mut Vec<(u32, u16, u32)>) {
        self.neighbours_along(node, self.direction, out)
    }

    /// The edges from `node` in `direction`.
    fn neighbours_along(
        &self,
        node: u32,
        direction: ExpandDirection,
        out: &mut Vec<(u32, u16, u32)>,
    ) {
        out.clear();
        for (t, side) in self.types.iter().enumerate() {
            let mask = self.masks[t].as_deref();
            let node_ok = |n: u32| match &self.node_masks {
                None => true,
                Some(labels) => {
                    let i = labels.partition_point(|(_, end, _)| *end <= n);
                    labels
                        .get(i)
                        .is_some_and(|(start, _, pass)| *start <= n && pass[(n - start) as usize])
                }
            };
            let mut push = |n: u32, e: u32| {
                if mask.is_none_or(|m| m[e as usize]) && node_ok(n) {
                    out.push((n, t as u16, e));
                }
            };
            match direction {
                ExpandDirection::Out => side.adjacency.for_each_out(node, &mut push),
                ExpandDirection::In => side.adjacency.for_each_in(node, &mut push),
                ExpandDirection::Both => {
                    side.adjacency.for_each_out(node, &mut push);
                    // A self-loop was already taken going out.
                    side.adjacency.for_each_in(node, |n, e| {
                        if n != node {
                            push(n, e)
                        }
                    });
                }
            }
        }
    }

    fn is_target(&self, node: u32) -> bool {
        target_of(&self.targets, node).is_some()
    }

    fn count(&mut self) -> Result<()> {
        self.produced += 1;
        if self.produced > self.limits.max_rows {
            return Err(self.too_many());
        }
        Ok(())
    }

    fn too_deep(&self) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "an unbounded variable-length pattern walked {} hops and could go further \
             (contextql.max_hops); give it an upper bound (`*..n`) or SET contextql.max_hops \
             to a larger value",
            self.limits.max_hops
        ))
    }

    /// Walks from the rows of `current` until an output batch is full or the batch ends.
    fn fill(&mut self, current: &mut Current) -> Result<Hits> {
        let mut hits = Hits {
            offsets: vec![0],
            ..Hits::default()
        };
        while hits.len() < GRAPH_BATCH_ROWS {
            let search = match current.search.take() {
                Some(search) => search,
                None => {
                    if current.row >= current.batch.num_rows() {
                        break;
                    }
                    let row = current.row;
                    current.row += 1;
                    if !current.from.is_valid(row) {
                        continue;
                    }
                    let from = current.from.value(row);
                    match &current.to {
                        Some(to) if !to.is_valid(row) => continue,
                        Some(to) => self.shortest(row as u32, from, to.value(row))?,
                        None => self.start(row as u32, from, &mut hits)?,
                    }
                }
            };
            current.search = self.resume(search, &mut hits)?;
        }
        Ok(hits)
    }

    fn push(
        &mut self,
        hits: &mut Hits,
        row: u32,
        end: u32,
        path: &[(u16, u32)],
        nodes: &[u32],
    ) -> Result<()> {
        self.count()?;
        hits.rows.push(row);
        hits.ends.push(end);
        hits.edges.extend_from_slice(path);
        hits.nodes.extend_from_slice(nodes);
        hits.offsets.push(hits.edges.len() as i32);
        Ok(())
    }

    /// Begins the walk from `start` for input row `row`.
    fn start(&mut self, row: u32, start: u32, hits: &mut Hits) -> Result<Search> {
        match self.walk {
            Walk::Trails => {
                if self.min == 0 && self.is_target(start) {
                    self.push(hits, row, start, &[], &[])?;
                }
                let mut frames = vec![Frame::default()];
                self.neighbours(start, &mut frames[0].steps);
                if self.max == 0 {
                    frames[0].steps.clear();
                }
                Ok(Search::Trails {
                    row,
                    frames,
                    depth: 0,
                    path: Vec::new(),
                    nodes: Vec::new(),
                })
            }
            Walk::Reach | Walk::ReachOnce => Ok(Search::Reach {
                row,
                found: self.reach(start)?,
                sent: 0,
            }),
            Walk::Shortest | Walk::AllShortest => Ok(Search::Each {
                row,
                trails: self.shortest_to_each(start)?,
                sent: 0,
            }),
        }
    }

    /// Without a given end: the shortest trail (or all of them) from `start` to each node of
    /// the end's labels it reaches within `min..=max` hops, by one breadth-first search that
    /// keeps each node's first-depth edges.
    fn shortest_to_each(&mut self, start: u32) -> Result<Vec<(u32, Trail)>> {
        let all = self.walk == Walk::AllShortest;
        let (parents, order) = self.first_depth_edges(start, None, all)?;
        let mut out = Vec::new();
        if self.min == 0 && self.is_target(start) {
            out.push((start, (vec![], vec![])));
        }
        for end in order {
            if self.is_target(end) {
                self.ways_back(&parents, start, end, &mut out)?;
            }
        }
        Ok(out)
    }

    /// A breadth-first search from `start` within `max` hops, stopping at the depth where
    /// `until` is found: the nodes it reaches in the order found, and for each its depth and
    /// the edges (previous node, type, edge row) that first reach it at that depth (every
    /// one with `all`, else the first).
    fn first_depth_edges(
        &mut self,
        start: u32,
        until: Option<u32>,
        all: bool,
    ) -> Result<(Parents, Vec<u32>)> {
        let mut seen = Parents::new();
        seen.insert(start, (0, vec![]));
        let mut order = Vec::new();
        let mut frontier = vec![start];
        let mut depth = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        while !frontier.is_empty()
            && until.is_none_or(|end| !seen.contains_key(&end))
            && depth < self.max
        {
            depth += 1;
            let mut next = Vec::new();
            for &node in &frontier {
                self.neighbours(node, &mut scratch);
                for &(n, t, e) in &scratch {
                    match seen.get_mut(&n) {
                        Some((d, previous)) if *d == depth && all => previous.push((node, t, e)),
                        Some(_) => {}
                        None => {
                            seen.insert(n, (depth, vec![(node, t, e)]));
                            next.push(n);
                            order.push(n);
                        }
                    }
                }
            }
            if let Err(e) = self.count_frontier(next.len()) {
                self.scratch = scratch;
                return Err(e);
            }
            frontier = next;
        }
        self.scratch = scratch;
        Ok((seen, order))
    }

    /// Each way back from `end` to `start` over `parents`, depth first, as trails from
    /// `start`, added to `out` with their end; every trail counts against the row limit.
    fn ways_back(
        &self,
        parents: &Parents,
        start: u32,
        end: u32,
        out: &mut Vec<(u32, Trail)>,
    ) -> Result<()> {
        // (node, the trail back from the end so far)
        let mut stack: Vec<(u32, Trail)> = vec![(end, (vec![], vec![]))];
        while let Some((node, (edges, nodes))) = stack.pop() {
            if node == start {
                let (mut edges, mut nodes) = (edges, nodes);
                edges.reverse();
                nodes.reverse();
                out.push((end, (edges, nodes)));
                if out.len() as u64 > self.limits.max_rows {
                    return Err(self.too_many());
                }
                continue;
            }
            for &(previous, t, e) in &parents[&node].1 {
                let mut edges = edges.clone();
                edges.push((t, e));
                let mut nodes = nodes.clone();
                nodes.push(node);
                stack.push((previous, (edges, nodes)));
            }
        }
        Ok(())
    }

    /// The shortest trails of `min..=max` hops from `start` to `end` (one, or all of them).
    fn shortest(&mut self, row: u32, start: u32, end: u32) -> Result<Search> {
        let mut trails = Vec::new();
        if start == end {
            // A path of no relationships, where the pattern allows one; openCypher's shortest
            // path never goes round a cycle back to where it began.
            if self.min == 0 && self.is_target(end) {
                trails.push((vec![], vec![]));
            }
        } else if self.is_target(end) {
            trails = match self.walk {
                Walk::AllShortest => self.all_shortest(start, end)?,
                _ => self.one_shortest(start, end)?.into_iter().collect(),
            };
            trails.retain(|(edges, _)| edges.len() as u32 >= self.min);
        }
        Ok(Search::Found {
            row,
            end,
            trails,
            sent: 0,
        })
    }

    /// The edges from `node` in the walk's direction (`forward`) or against it.
    fn steps(&self, node: u32, forward: bool, out: &mut Vec<(u32, u16, u32)>) {
        if forward {
            return self.neighbours(node, out);
        }
        let reverse = match self.direction {
            ExpandDirection::Out => ExpandDirection::In,
            ExpandDirection::In => ExpandDirection::Out,
            ExpandDirection::Both => ExpandDirection::Both,
        };
        self.neighbours_along(node, reverse, out);
    }

    /// One shortest trail from `start` to `end`, searched breadth first from both ends a
    /// level at a time, always on the side whose frontier is smaller: on a graph where a few
    /// nodes have tens of thousands of neighbours, the search stays on the thin side.
    fn one_shortest(&mut self, start: u32, end: u32) -> Result<Option<Trail>> {
        use std::collections::HashMap;
        // node -> (previous node, type, edge, depth); the ends have no previous node.
        type Seen = HashMap<u32, (u32, u16, u32, u32)>;
        let mut seen: [Seen; 2] = [HashMap::new(), HashMap::new()];
        seen[0].insert(start, (u32::MAX, 0, 0, 0));
        seen[1].insert(end, (u32::MAX, 0, 0, 0));
        let mut frontiers = [vec![start], vec![end]];
        let mut depths = [0u32, 0u32];
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut found: Option<(u32, u32)> = None; // (meeting node, total length)
        while found.is_none()
            && !frontiers[0].is_empty()
            && !frontiers[1].is_empty()
            && depths[0] + depths[1] < self.max
        {
            let side = usize::from(frontiers[1].len() < frontiers[0].len());
            let other = 1 - side;
            let mut next = Vec::new();
            for &node in &frontiers[side] {
                self.steps(node, side == 0, &mut scratch);
                for &(n, t, e) in &scratch {
                    if seen[side].contains_key(&n) {
                        continue;
                    }
                    seen[side].insert(n, (node, t, e, depths[side] + 1));
                    next.push(n);
                    if let Some(&(_, _, _, d)) = seen[other].get(&n) {
                        let length = depths[side] + 1 + d;
                        if found.is_none_or(|(_, best)| length < best) {
                            found = Some((n, length));
                        }
                    }
                }
            }
            self.count_frontier(next.len())?;
            depths[side] += 1;
            frontiers[side] = next;
        }
        self.scratch = scratch;
        let Some((meeting, length)) = found else {
            return Ok(None);
        };
        if length > self.max {
            return Ok(None);
        }
        // Back from the meeting node to the start, then on from it to the end.
        let mut edges = Vec::new();
        let mut nodes = Vec::new();
        let mut at = meeting;
        while at != start {
            let (previous, t, e, _) = seen[0][&at];
            edges.push((t, e));
            nodes.push(at);
            at = previous;
        }
        edges.reverse();
        nodes.reverse();
        let mut at = meeting;
        while at != end {
            let (next, t, e, _) = seen[1][&at];
            edges.push((t, e));
            nodes.push(next);
            at = next;
        }
        Ok(Some((edges, nodes)))
    }

    /// Every shortest trail from `start` to `end`: a breadth-first search from `start` that
    /// keeps every edge by which a node is first reached at its depth, up to the depth `end`
    /// is found at, then each way back from `end`.
    fn all_shortest(&mut self, start: u32, end: u32) -> Result<Vec<Trail>> {
        let (parents, _) = self.first_depth_edges(start, Some(end), true)?;
        let mut out = Vec::new();
        if parents.contains_key(&end) {
            self.ways_back(&parents, start, end, &mut out)?;
        }
        Ok(out.into_iter().map(|(_, trail)| trail).collect())
    }

    /// A frontier of `n` nodes more, against the row limit (a breadth-first search holds
    /// at most every node once, but a limit keeps one search from taking all the memory a
    /// statement may have).
    fn count_frontier(&self, n: usize) -> Result<()> {
        if n as u64 > self.limits.max_rows {
            return Err(self.too_many());
        }
        Ok(())
    }

    fn too_many(&self) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "a variable-length pattern produced more than {} rows \
             (contextql.max_expand_rows); narrow the pattern, bound its length, read \
             distinct end nodes, or SET contextql.max_expand_rows to a larger value",
            self.limits.max_rows
        ))
    }

    /// Every node a trail of `min..=max` hops from `start` ends at, each once (see
    /// [`VarLengthExpand::may_reach`] for when that equals the trails' ends).
    fn reach(&mut self, start: u32) -> Result<Vec<u32>> {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamps.fill(0);
            self.epoch = 1;
        }
        let epoch = self.epoch;
        let mut found = Vec::new();
        let mut start_found = false;
        // Walk::ReachOnce: the ends handed on over all starts (sized to every target).
        let once = self.walk == Walk::ReachOnce;
        let mut handed = std::mem::take(&mut self.handed);
        if once && handed.is_empty() {
            handed = vec![false; self.targets.last().map_or(0, |t| t.end as usize)];
        }
        if self.min == 0 && self.is_target(start) {
            if hand(once, &mut handed, start) {
                found.push(start);
            }
            start_found = true;
        }
        self.mark(start);
        let mut frontier = vec![start];
        let mut next = Vec::new();
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut depth = 0;
        // Without per-step filters the search reads the adjacency directly, not through a
        // list of each node's steps: the common case, and the one worth the speed.
        let plain = self.node_masks.is_none() && self.masks.iter().all(Option::is_none);
        while !frontier.is_empty() && depth < self.max {
            depth += 1;
            if plain {
                let (types, targets, direction) = (&self.types, &self.targets, self.direction);
                let every_node_an_end = self.every_node_an_end;
                let stamps = &mut self.stamps;
                for &node in &frontier {
                    for side in types {
                        // Distinct neighbours straight from the Csr: no call per edge, and
                        // parallel edges once.
                        let out: &[u32] = match direction {
                            ExpandDirection::In => &[],
                            _ => side.adjacency.neighbours_out(node),
                        };
                        let inc: &[u32] = match direction {
                            ExpandDirection::Out => &[],
                            _ => side.adjacency.neighbours_in(node),
                        };
                        for &n in out.iter().chain(inc) {
                            if n == start {
                                if !start_found
                                    && target_of(targets, n).is_some()
                                    && hand(once, &mut handed, n)
                                {
                                    found.push(n);
                                }
                                start_found = true;
                                continue;
                            }
                            let i = n as usize;
                            if i >= stamps.len() {
                                stamps.resize(i + 1, 0);
                            }
                            if stamps[i] == epoch {
                                continue;
                            }
                            stamps[i] = epoch;
                            next.push(n);
                            if (every_node_an_end || target_of(targets, n).is_some())
                                && hand(once, &mut handed, n)
                            {
                                found.push(n);
                            }
                        }
                    }
                }
                std::mem::swap(&mut frontier, &mut next);
                next.clear();
                continue;
            }
            for &node in &frontier {
                self.neighbours(node, &mut scratch);
                for &(n, _, _) in &scratch {
                    if n == start {
                        if !start_found && self.is_target(n) && hand(once, &mut handed, n) {
                            found.push(n);
                        }
                        start_found = true;
                        continue;
                    }
                    if self.stamps.get(n as usize) == Some(&epoch) {
                        continue;
                    }
                    self.mark(n);
                    next.push(n);
                    if self.is_target(n) && hand(once, &mut handed, n) {
                        found.push(n);
                    }
                }
            }
            std::mem::swap(&mut frontier, &mut next);
            next.clear();
        }
        // Unbounded and stopped at the limit: fail if the walk had anywhere left to go.
        if self.unbounded && depth == self.max && !frontier.is_empty() {
            for &node in &frontier {
                self.neighbours(node, &mut scratch);
                if scratch.iter().any(|&(n, _, _)| {
                    (n == start && !start_found) || self.stamps.get(n as usize) != Some(&epoch)
                }) {
                    self.scratch = scratch;
                    self.handed = handed;
                    return Err(self.too_deep());
                }
            }
        }
        self.scratch = scratch;
        self.handed = handed;
        Ok(found)
    }

    fn mark(&mut self, node: u32) {
        let i = node as usize;
        if i >= self.stamps.len() {
            self.stamps.resize(i + 1, 0);
        }
        self.stamps[i] = self.epoch;
    }

    /// Goes on with `search` until the batch is full (then returns it to resume) or it ends.
    fn resume(&mut self, search: Search, hits: &mut Hits) -> Result<Option<Search>> {
        match search {
            Search::Reach {
                row,
                found,
                mut sent,
            } => {
                // Ends without trails, handed on a batch's worth at a time.
                let n = (found.len() - sent).min(GRAPH_BATCH_ROWS.saturating_sub(hits.len()));
                self.produced += n as u64;
                if self.produced > self.limits.max_rows {
                    return Err(self.too_many());
                }
                hits.rows.extend(std::iter::repeat_n(row, n));
                hits.ends.extend_from_slice(&found[sent..sent + n]);
                let at = hits.edges.len() as i32;
                hits.offsets.extend(std::iter::repeat_n(at, n));
                sent += n;
                Ok((sent < found.len()).then_some(Search::Reach { row, found, sent }))
            }
            Search::Each {
                row,
                trails,
                mut sent,
            } => {
                while sent < trails.len() && hits.len() < GRAPH_BATCH_ROWS {
                    let (end, (edges, nodes)) = &trails[sent];
                    self.push(hits, row, *end, edges, nodes)?;
                    sent += 1;
                }
                Ok((sent < trails.len()).then_some(Search::Each { row, trails, sent }))
            }
            Search::Found {
                row,
                end,
                trails,
                mut sent,
            } => {
                while sent < trails.len() && hits.len() < GRAPH_BATCH_ROWS {
                    let (edges, nodes) = &trails[sent];
                    self.push(hits, row, end, edges, nodes)?;
                    sent += 1;
                }
                Ok((sent < trails.len()).then_some(Search::Found {
                    row,
                    end,
                    trails,
                    sent,
                }))
            }
            Search::Trails {
                row,
                mut frames,
                mut depth,
                mut path,
                mut nodes,
            } => loop {
                if hits.len() >= GRAPH_BATCH_ROWS {
                    return Ok(Some(Search::Trails {
                        row,
                        frames,
                        depth,
                        path,
                        nodes,
                    }));
                }
                let frame = &mut frames[depth];
                if frame.next == frame.steps.len() {
                    if depth == 0 {
                        return Ok(None);
                    }
                    depth -= 1;
                    path.pop();
                    nodes.pop();
                    continue;
                }
                let (node, t, e) = frame.steps[frame.next];
                frame.next += 1;
                if path.contains(&(t, e)) {
                    continue;
                }
                path.push((t, e));
                nodes.push(node);
                let hops = path.len() as u32;
                if hops >= self.min && self.is_target(node) {
                    self.push(hits, row, node, &path, &nodes)?;
                }
                if hops < self.max {
                    depth += 1;
                    if frames.len() == depth {
                        frames.push(Frame::default());
                    }
                    let mut steps = std::mem::take(&mut frames[depth].steps);
                    self.neighbours(node, &mut steps);
                    frames[depth] = Frame { steps, next: 0 };
                } else {
                    if self.unbounded {
                        let mut scratch = std::mem::take(&mut self.scratch);
                        self.neighbours(node, &mut scratch);
                        let more = scratch.iter().any(|&(_, t, e)| !path.contains(&(t, e)));
                        self.scratch = scratch;
                        if more {
                            return Err(self.too_deep());
                        }
                    }
                    path.pop();
                    nodes.pop();
                }
            },
        }
    }

    fn emit(&self, batch: &RecordBatch, hits: &Hits) -> Result<RecordBatch> {
        let rows = UInt32Array::from(hits.rows.clone());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for column in batch.columns() {
            columns.push(take(column.as_ref(), &rows, None)?);
        }
        let offsets = OffsetBuffer::new(hits.offsets.clone().into());
        // Each trail in the order written (walked from the pattern's right end, reversed).
        let edges: Vec<(u16, u32)> = if self.reversed {
            hits.offsets
                .windows(2)
                .flat_map(|w| {
                    hits.edges[w[0] as usize..w[1] as usize]
                        .iter()
                        .rev()
                        .copied()
                })
                .collect()
        } else {
            hits.edges.clone()
        };
        for field in &self.schema.fields()[self.input_columns..] {
            let name = field.name();
            let column: ArrayRef = if name == &self.ordinals {
                let values = UInt32Array::from_iter_values(
                    edges
                        .iter()
                        .map(|&(t, e)| self.types[t as usize].offset + e),
                );
                Arc::new(ListArray::try_new(
                    Arc::new(Field::new("item", DataType::UInt32, true)),
                    offsets.clone(),
                    Arc::new(values),
                    None,
                )?)
            } else if name == &self.rel_var {
                let Some((item, fields)) = &self.item_fields else {
                    return internal_err!("relationship list fields are missing");
                };
                let values = self.relationships(&edges, fields)?;
                Arc::new(ListArray::try_new(
                    item.clone(),
                    offsets.clone(),
                    values,
                    None,
                )?)
            } else if name == &self.between_name {
                let Some(between) = &self.between else {
                    return internal_err!("the nodes of a trail were not asked for");
                };
                self.between_nodes(hits, between)?
            } else if let Some(p) = name.strip_prefix(&self.node_prefix) {
                match p {
                    ORD => Arc::new(UInt32Array::from(hits.ends.clone())),
                    LABEL => Arc::new(StringArray::from_iter(hits.ends.iter().map(|&n| {
                        target_of(&self.targets, n).map(|i| self.targets[i].name.as_str())
                    }))),
                    p => {
                        let sources: Vec<_> = self
                            .targets
                            .iter()
                            .map(|side| (side.rows.column(p), side.rows.as_ref()))
                            .collect();
                        let picks = hits.ends.iter().map(|&n| {
                            let i = target_of(&self.targets, n)?;
                            Some((i, (n - self.targets[i].offset) as usize))
                        });
                        pick(&sources, picks, field.data_type())?
                    }
                }
            } else {
                return internal_err!(
                    "VarLengthExpand column {name} is neither the relationships' nor the end node's"
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

    /// The nodes strictly between each trail's ends, in the order written.
    fn between_nodes(&self, hits: &Hits, between: &Between) -> Result<ArrayRef> {
        let mut ordinals: Vec<u32> = Vec::with_capacity(hits.nodes.len());
        let mut offsets: Vec<i32> = Vec::with_capacity(hits.offsets.len());
        offsets.push(0);
        for w in hits.offsets.windows(2) {
            // The nodes each edge reaches, less the last (the end node).
            let reached = &hits.nodes[w[0] as usize..w[1] as usize];
            let inner = &reached[..reached.len().saturating_sub(1)];
            if self.reversed {
                ordinals.extend(inner.iter().rev());
            } else {
                ordinals.extend(inner);
            }
            offsets.push(ordinals.len() as i32);
        }
        let values = node_structs(&between.sides, &ordinals, &between.fields)?;
        Ok(Arc::new(ListArray::try_new(
            between.item.clone(),
            OffsetBuffer::new(offsets.into()),
            values,
            None,
        )?))
    }

    /// The relationships `edges` as structs of `fields`.
    fn relationships(&self, edges: &[(u16, u32)], fields: &Fields) -> Result<ArrayRef> {
        relationship_structs(&self.types, edges, fields)
    }
}

/// The nodes `ordinals` (of the labels `sides`, sorted by offset) as structs of `fields`.
fn node_structs(sides: &[NodeSide], ordinals: &[u32], fields: &Fields) -> Result<ArrayRef> {
    let mut children: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for field in fields {
        let column: ArrayRef = match field.name().as_str() {
            "_label" => Arc::new(StringArray::from_iter(ordinals.iter().map(|&n| {
                target_of(sides, n)
                    .map(|i| sides[i].name.as_str())
                    .filter(|l| *l != crate::nodes::UNLABELED)
            }))),
            name => {
                let table_column = if name == "_id" { ID } else { name };
                let sources: Vec<_> = sides
                    .iter()
                    .map(|side| (side.rows.column(table_column), side.rows.as_ref()))
                    .collect();
                let picks = ordinals.iter().map(|&n| {
                    let i = target_of(sides, n)?;
                    Some((i, (n - sides[i].offset) as usize))
                });
                pick(&sources, picks, field.data_type())?
            }
        };
        children.push(column);
    }
    Ok(Arc::new(StructArray::try_new(
        fields.clone(),
        children,
        None,
    )?))
}

/// The relationships `edges` (type index, edge row) as structs of `fields`.
fn relationship_structs(
    types: &[EdgeSide],
    edges: &[(u16, u32)],
    fields: &Fields,
) -> Result<ArrayRef> {
    let mut children: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for field in fields {
        let column: ArrayRef = match field.name().as_str() {
            "_type" => Arc::new(StringArray::from_iter_values(
                edges.iter().map(|&(t, _)| types[t as usize].name.as_str()),
            )),
            name => {
                let table_column = if name == "_id" {
                    ID
                } else {
                    rel_table_column(name)
                };
                let sources: Vec<_> = types
                    .iter()
                    .map(|side| (side.rows.column(table_column), side.rows.as_ref()))
                    .collect();
                let picks = edges.iter().map(|&(t, e)| Some((t as usize, e as usize)));
                pick(&sources, picks, field.data_type())?
            }
        };
        children.push(column);
    }
    Ok(Arc::new(StructArray::try_new(
        fields.clone(),
        children,
        None,
    )?))
}

/// A predicate every relationship (or every node) of a walk must satisfy, over the column
/// `column` holding one as a struct of `fields`: from a `WHERE all(r IN relationships(p)
/// WHERE ...)` (or `none`), checked as the walk takes each step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepFilter {
    pub column: String,
    pub predicate: Expr,
    pub fields: Fields,
}

impl StepFilter {
    /// Which of the `values` (structs of `self.fields`) satisfy the predicate (null: no).
    fn test(&self, values: ArrayRef) -> Result<Vec<bool>> {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![Field::new(
            &self.column,
            DataType::Struct(self.fields.clone()),
            true,
        )]));
        let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())?;
        let predicate = create_physical_expr(
            &self.predicate,
            &df_schema,
            &datafusion::execution::context::ExecutionProps::new(),
        )?;
        let batch = RecordBatch::try_new(schema, vec![values])?;
        let result = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
        let result = arrow::compute::cast(&result, &DataType::Boolean)?;
        let result = result
            .as_any()
            .downcast_ref::<arrow::array::BooleanArray>()
            .ok_or_else(|| DataFusionError::Internal("a step filter is not boolean".into()))?;
        Ok((0..result.len())
            .map(|i| result.is_valid(i) && result.value(i))
            .collect())
    }
}
