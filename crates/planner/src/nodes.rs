//! Logical extension nodes for graph patterns.
//!
//! Column naming: a node variable `a` becomes columns `a.__ord` (its ordinal in the label's
//! snapshot) and `a.<property>`; a relationship `r` becomes `r.__ord`, `r._src`, `r._dst` and
//! `r.<property>`. Names are unqualified DataFusion columns, so `a.name` is one identifier.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, DFSchemaRef, Result, plan_err};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use crate::source::{EdgeTableInfo, NodeTableInfo};

pub const ORD: &str = "__ord";

pub fn column_name(var: &str, property: &str) -> String {
    format!("{var}.{property}")
}

/// Fields of a node variable, as NodeScan and GraphExpand produce them.
pub fn node_fields(var: &str, table: &NodeTableInfo, nullable: bool) -> Vec<Field> {
    let mut fields = vec![Field::new(
        column_name(var, ORD),
        DataType::UInt32,
        nullable,
    )];
    for f in table.schema.fields() {
        fields.push(Field::new(
            column_name(var, f.name()),
            f.data_type().clone(),
            nullable || f.is_nullable(),
        ));
    }
    fields
}

/// Fields of a relationship variable.
pub fn rel_fields(var: &str, table: &EdgeTableInfo, nullable: bool) -> Vec<Field> {
    let mut fields = vec![Field::new(
        column_name(var, ORD),
        DataType::UInt32,
        nullable,
    )];
    for f in table.schema.fields() {
        let name = match f.name().as_str() {
            "src" => "_src".to_string(),
            "dst" => "_dst".to_string(),
            other => other.to_string(),
        };
        fields.push(Field::new(
            column_name(var, &name),
            f.data_type().clone(),
            nullable || f.is_nullable(),
        ));
    }
    fields
}

fn df_schema(fields: Vec<Field>) -> Result<DFSchemaRef> {
    Ok(Arc::new(DFSchema::try_from(Schema::new(fields))?))
}

/// Leaf: every node of one label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeScan {
    pub label: String,
    pub var: String,
    pub schema: DFSchemaRef,
}

impl NodeScan {
    pub fn try_new(var: &str, table: &NodeTableInfo) -> Result<Self> {
        Ok(NodeScan {
            label: table.label.clone(),
            var: var.to_string(),
            schema: df_schema(node_fields(var, table, false))?,
        })
    }
}

impl PartialOrd for NodeScan {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.label, &self.var).partial_cmp(&(&other.label, &other.var))
    }
}

impl UserDefinedLogicalNodeCore for NodeScan {
    fn name(&self) -> &str {
        "NodeScan"
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
        write!(f, "NodeScan: ({}:{})", self.var, self.label)
    }
    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        if !exprs.is_empty() || !inputs.is_empty() {
            return plan_err!("NodeScan takes no expressions or inputs");
        }
        Ok(self.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum ExpandDirection {
    /// Follow edges from `src` to `dst`.
    Out,
    /// Follow edges from `dst` back to `src`.
    In,
    /// Both (undirected pattern); a self-loop is matched once.
    Both,
}

/// For each input row, one output row per edge of `rel_type` at the node in `from_column`,
/// with the relationship's and the neighbour's columns appended. With `optional`, a row
/// without edges is kept once with nulls (OPTIONAL MATCH).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GraphExpand {
    pub input: LogicalPlan,
    pub from_column: String,
    pub rel_type: String,
    pub direction: ExpandDirection,
    pub rel_var: String,
    pub to_var: String,
    pub to_label: String,
    pub optional: bool,
    pub schema: DFSchemaRef,
}

impl GraphExpand {
    #[allow(clippy::too_many_arguments)]
    pub fn try_new(
        input: LogicalPlan,
        from_var: &str,
        edge: &EdgeTableInfo,
        direction: ExpandDirection,
        rel_var: &str,
        to_var: &str,
        to_table: &NodeTableInfo,
        optional: bool,
    ) -> Result<Self> {
        let from_column = column_name(from_var, ORD);
        if input
            .schema()
            .index_of_column_by_name(None, &from_column)
            .is_none()
        {
            return plan_err!("GraphExpand input has no column {from_column}");
        }
        let mut fields: Vec<Field> = input
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(rel_fields(rel_var, edge, optional));
        fields.extend(node_fields(to_var, to_table, optional));
        Ok(GraphExpand {
            input,
            from_column,
            rel_type: edge.rel_type.clone(),
            direction,
            rel_var: rel_var.to_string(),
            to_var: to_var.to_string(),
            to_label: to_table.label.clone(),
            optional,
            schema: df_schema(fields)?,
        })
    }
}

impl PartialOrd for GraphExpand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (
            &self.from_column,
            &self.rel_type,
            &self.rel_var,
            &self.to_var,
        )
            .partial_cmp(&(
                &other.from_column,
                &other.rel_type,
                &other.rel_var,
                &other.to_var,
            ))
    }
}

impl UserDefinedLogicalNodeCore for GraphExpand {
    fn name(&self) -> &str {
        "GraphExpand"
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
        write!(
            f,
            "GraphExpand: ({from}){l}[{}:{}]{r}({}:{}){}",
            self.rel_var,
            self.rel_type,
            self.to_var,
            self.to_label,
            if self.optional { " optional" } else { "" }
        )
    }
    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        if !exprs.is_empty() || inputs.len() != 1 {
            return plan_err!("GraphExpand takes exactly one input and no expressions");
        }
        let input = inputs.remove(0);
        // The optimizer may rewrite the input (e.g. prune columns); keep our columns after it.
        let mut fields: Vec<Field> = input
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let own = self.schema.fields().len() - self.input.schema().fields().len();
        fields.extend(
            self.schema.fields()[self.schema.fields().len() - own..]
                .iter()
                .map(|f| f.as_ref().clone()),
        );
        Ok(GraphExpand {
            input,
            schema: df_schema(fields)?,
            ..self.clone()
        })
    }
}
