//! Execution of the graph extension nodes, and the planners that put them in physical plans.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayBuilder, ArrayRef, RecordBatch, UInt32Array, UInt32Builder};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;
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

use crate::nodes::{ExpandDirection, GraphExpand, NodeScan};
use crate::source::GraphSource;

/// Rows per batch emitted by the graph operators.
pub const GRAPH_BATCH_ROWS: usize = 8192;

fn properties(schema: SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

/// Scans a label's snapshot rows, adding the ordinal column.
#[derive(Debug)]
pub struct NodeScanExec {
    label: String,
    var: String,
    source: Arc<dyn GraphSource>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for NodeScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "NodeScanExec: ({}:{})", self.var, self.label)
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
    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("NodeScanExec has one partition, asked for {partition}");
        }
        let rows = self.source.node_rows(&self.label)?;
        let schema = self.schema();
        let total = rows.num_rows();
        let out_schema = schema.clone();
        let batches = (0..total.div_ceil(GRAPH_BATCH_ROWS)).map(move |chunk| {
            let start = chunk * GRAPH_BATCH_ROWS;
            let len = GRAPH_BATCH_ROWS.min(total - start);
            let ords: ArrayRef = Arc::new(UInt32Array::from_iter_values(
                start as u32..(start + len) as u32,
            ));
            let mut columns = vec![ords];
            columns.extend(rows.columns().iter().map(|c| c.slice(start, len)));
            Ok(RecordBatch::try_new(out_schema.clone(), columns)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches),
        )))
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
        let adjacency = self.source.adjacency(&self.node.rel_type)?;
        let edges = self.source.edge_rows(&self.node.rel_type)?;
        let targets = self.source.node_rows(&self.node.to_label)?;
        let expander = Expander {
            schema: self.schema(),
            from_index: self.from_index,
            direction: self.node.direction,
            optional: self.node.optional,
            adjacency,
            edges,
            targets,
        };
        let schema = self.schema();
        let stream = input.flat_map(move |batch| {
            let out = batch.and_then(|b| expander.expand(&b));
            futures::stream::iter(match out {
                Ok(batches) => batches.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

struct Expander {
    schema: SchemaRef,
    from_index: usize,
    direction: ExpandDirection,
    optional: bool,
    adjacency: Arc<contextdb_graph::Adjacency>,
    edges: Arc<RecordBatch>,
    targets: Arc<RecordBatch>,
}

impl Expander {
    fn expand(&self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let from = batch
            .column(self.from_index)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "GraphExpand source column is not UInt32".into(),
                )
            })?;
        let mut out = Vec::new();
        let mut rows = UInt32Builder::with_capacity(GRAPH_BATCH_ROWS);
        let mut edge_rows = UInt32Builder::with_capacity(GRAPH_BATCH_ROWS);
        let mut neighbours = UInt32Builder::with_capacity(GRAPH_BATCH_ROWS);
        for row in 0..batch.num_rows() {
            let mut found = false;
            if from.is_valid(row) {
                let node = from.value(row);
                let mut push = |neighbour: u32, edge: u32| {
                    rows.append_value(row as u32);
                    edge_rows.append_value(edge);
                    neighbours.append_value(neighbour);
                    found = true;
                };
                match self.direction {
                    ExpandDirection::Out => self.adjacency.for_each_out(node, &mut push),
                    ExpandDirection::In => self.adjacency.for_each_in(node, &mut push),
                    ExpandDirection::Both => {
                        self.adjacency.for_each_out(node, &mut push);
                        self.adjacency.for_each_in(node, |n, e| {
                            // A self-loop was already matched going out.
                            if n != node {
                                push(n, e)
                            }
                        });
                    }
                }
            }
            if !found && self.optional {
                rows.append_value(row as u32);
                edge_rows.append_null();
                neighbours.append_null();
            }
            if rows.len() >= GRAPH_BATCH_ROWS {
                out.push(self.emit(batch, &mut rows, &mut edge_rows, &mut neighbours)?);
            }
        }
        if !rows.is_empty() {
            out.push(self.emit(batch, &mut rows, &mut edge_rows, &mut neighbours)?);
        }
        Ok(out)
    }

    fn emit(
        &self,
        batch: &RecordBatch,
        rows: &mut UInt32Builder,
        edge_rows: &mut UInt32Builder,
        neighbours: &mut UInt32Builder,
    ) -> Result<RecordBatch> {
        let rows = rows.finish();
        let edge_rows = edge_rows.finish();
        let neighbours = neighbours.finish();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for column in batch.columns() {
            columns.push(take(column.as_ref(), &rows, None)?);
        }
        columns.push(Arc::new(edge_rows.clone()));
        for column in self.edges.columns() {
            columns.push(take(column.as_ref(), &edge_rows, None)?);
        }
        columns.push(Arc::new(neighbours.clone()));
        for column in self.targets.columns() {
            columns.push(take(column.as_ref(), &neighbours, None)?);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Plans [`NodeScan`] and [`GraphExpand`] into their operators.
#[derive(Debug)]
pub struct GraphExtensionPlanner {
    pub source: Arc<dyn GraphSource>,
}

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
                label: scan.label.clone(),
                var: scan.var.clone(),
                source: self.source.clone(),
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
                source: self.source.clone(),
                properties: properties(schema),
            })));
        }
        Ok(None)
    }
}

/// The session's query planner: DataFusion's, plus the graph operators.
#[derive(Debug)]
pub struct GraphQueryPlanner {
    pub source: Arc<dyn GraphSource>,
}

#[async_trait]
impl QueryPlanner for GraphQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &SessionState,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(
            GraphExtensionPlanner {
                source: self.source.clone(),
            },
        )]);
        planner
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}
