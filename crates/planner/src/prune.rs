//! Column pruning for the graph operators.
//!
//! DataFusion's projection pushdown cannot shrink what an extension node produces, so a
//! `NodeScan` or `GraphExpand` would carry every property of every node and relationship it
//! reaches (embeddings included) to a plan that reads one of them. This rule runs after
//! DataFusion's: where a projection reads a graph operator, the operator keeps only the columns
//! the projection reads, and asks its input for only what it passes on and expands from.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, Projection};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::nodes::{GraphExpand, NodeScan, ORD, column_name, df_schema};
use crate::var_length::VarLengthExpand;
use crate::vector::{AnnScan, DISTANCE, SIMILARITY_SCORE, VectorTopK};

#[derive(Debug, Default)]
pub struct PruneGraphColumns;

impl OptimizerRule for PruneGraphColumns {
    fn name(&self) -> &str {
        "prune_graph_columns"
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
            let LogicalPlan::Projection(projection) = &node else {
                return Ok(Transformed::no(node));
            };
            let required: HashSet<String> = projection
                .expr
                .iter()
                .flat_map(|e| e.column_refs())
                .map(|c| c.name.clone())
                .collect();
            match prune(&projection.input, &required)? {
                None => Ok(Transformed::no(node)),
                Some(input) => Ok(Transformed::yes(LogicalPlan::Projection(
                    Projection::try_new(projection.expr.clone(), Arc::new(input))?,
                ))),
            }
        })
    }
}

fn fields_where(schema: &DFSchema, keep: impl Fn(&str) -> bool) -> Vec<Field> {
    schema
        .fields()
        .iter()
        .filter(|f| keep(f.name()))
        .map(|f| f.as_ref().clone())
        .collect()
}

/// `plan` producing only the `required` columns, if it is a graph operator with more.
fn prune(plan: &LogicalPlan, required: &HashSet<String>) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::Extension(Extension { node }) = plan else {
        return Ok(None);
    };
    let width = plan.schema().fields().len();
    if let Some(scan) = node.as_any().downcast_ref::<NodeScan>() {
        let ord = column_name(&scan.var, ORD);
        // The ordinal stays: it is cheap, and a scan read for its row count needs a column.
        let fields = fields_where(&scan.schema, |n| required.contains(n) || n == ord);
        if fields.len() == width {
            return Ok(None);
        }
        let pruned = NodeScan {
            schema: df_schema(fields)?,
            ..scan.clone()
        };
        return Ok(Some(LogicalPlan::Extension(Extension {
            node: Arc::new(pruned),
        })));
    }
    if let Some(scan) = node.as_any().downcast_ref::<AnnScan>() {
        let ord = column_name(&scan.spec.var, ORD);
        let fields = fields_where(&scan.schema, |n| {
            required.contains(n) || n == ord || n == SIMILARITY_SCORE || n == DISTANCE
        });
        if fields.len() == width {
            return Ok(None);
        }
        let pruned = AnnScan {
            schema: df_schema(fields)?,
            ..scan.clone()
        };
        return Ok(Some(LogicalPlan::Extension(Extension {
            node: Arc::new(pruned),
        })));
    }
    if let Some(top) = node.as_any().downcast_ref::<VectorTopK>() {
        // A graph operator right below passes on only what is required above and the ranked
        // variable's ordinal (DataFusion's own pushdown stops at extension nodes).
        let mut wanted = required.clone();
        wanted.insert(column_name(&top.spec.var, ORD));
        // The alternate is projected to the pruned input's columns; the rule prunes below that
        // projection when it gets there.
        let Some(input) = prune(&top.input, &wanted)? else {
            return Ok(None);
        };
        let pruned = VectorTopK::try_new(
            top.source.clone(),
            input,
            top.spec.clone(),
            top.alternate.clone(),
        )?;
        return Ok(Some(LogicalPlan::Extension(Extension {
            node: Arc::new(pruned),
        })));
    }
    if let Some(walk) = node.as_any().downcast_ref::<VarLengthExpand>() {
        let Some((input, own)) =
            prune_expansion(&walk.input, &walk.from_column, walk.own_fields(), required)?
        else {
            return Ok(None);
        };
        return Ok(Some(LogicalPlan::Extension(Extension {
            node: Arc::new(walk.with_input(input, own)?),
        })));
    }
    let Some(expand) = node.as_any().downcast_ref::<GraphExpand>() else {
        return Ok(None);
    };
    let Some((input, own)) = prune_expansion(
        &expand.input,
        &expand.from_column,
        expand.own_fields(),
        required,
    )?
    else {
        return Ok(None);
    };
    let pruned = expand.with_input(input, own)?;
    Ok(Some(LogicalPlan::Extension(Extension {
        node: Arc::new(pruned),
    })))
}

/// An expansion's input and own columns cut to the `required` ones (None: nothing to cut):
/// the input passes on what is required and what the expansion starts from.
fn prune_expansion(
    input: &LogicalPlan,
    from_column: &str,
    own_fields: &[FieldRef],
    required: &HashSet<String>,
) -> Result<Option<(LogicalPlan, Vec<FieldRef>)>> {
    let input_schema = input.schema();
    let input_width = input_schema.fields().len();
    let own: Vec<FieldRef> = own_fields
        .iter()
        .filter(|f| required.contains(f.name()))
        .cloned()
        .collect();
    let wanted: Vec<Expr> = input_schema
        .fields()
        .iter()
        .filter(|f| required.contains(f.name()) || f.name() == from_column)
        .map(|f| Expr::Column(Column::new_unqualified(f.name())))
        .collect();
    if wanted.len() == input_width && own.len() == own_fields.len() {
        return Ok(None);
    }
    let input = if wanted.len() < input_width {
        LogicalPlan::Projection(Projection::try_new(wanted, Arc::new(input.clone()))?)
    } else {
        input.clone()
    };
    Ok(Some((input, own)))
}
