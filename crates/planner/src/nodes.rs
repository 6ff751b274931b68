//! Logical extension nodes for graph patterns.
//!
//! Column naming: a node variable `a` becomes columns `a.__ord` (its ordinal in the label's
//! snapshot), `a.__label`, `a.__id` (its stable id) and `a.<property>`; a relationship `r`
//! becomes `r.__ord`, `r.__type`, `r.__id`, `r._src`, `r._dst` and `r.<property>`. Names are unqualified DataFusion columns, so `a.name` is one identifier.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, DFSchemaRef, Result, plan_err};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use crate::source::{EdgeTableInfo, NodeTableInfo, SourceRef};

pub const ORD: &str = "__ord";
/// The stable id of a node or relationship (what `id()` returns; see the storage crate's
/// `RowIds`). Unlike the ordinal it survives rewrites, compaction and other tables' writes.
pub const ID: &str = "__id";
/// The label of a node variable / the type of a relationship variable, per row.
pub const LABEL: &str = "__label";
pub const TYPE: &str = "__type";
/// The node table of nodes created without a label; `labels(n)` of its nodes is `[]`.
pub const UNLABELED: &str = "_unlabeled";

pub fn column_name(var: &str, property: &str) -> String {
    format!("{var}.{property}")
}

/// One type for values that have several: equal types stay, integers widen to Int64,
/// numbers to Float64, anything else becomes text.
pub fn unify_types(types: &[DataType]) -> DataType {
    let Some(first) = types.first() else {
        return DataType::Null;
    };
    if types.iter().all(|t| t == first) {
        return first.clone();
    }
    if types.iter().all(|t| t.is_integer()) {
        DataType::Int64
    } else if types.iter().all(|t| t.is_numeric()) {
        DataType::Float64
    } else {
        DataType::Utf8
    }
}

/// Union of the columns of several tables by name, in first-seen order: (name, type,
/// nullable). A column missing from some table is nullable.
fn union_columns<'a>(
    tables: impl Iterator<Item = Vec<&'a Field>> + Clone,
) -> Vec<(String, DataType, bool)> {
    let count = tables.clone().count();
    let mut out: Vec<(String, Vec<DataType>, bool, usize)> = Vec::new();
    for fields in tables {
        for f in fields {
            match out.iter_mut().find(|(n, ..)| n == f.name()) {
                Some(entry) => {
                    entry.1.push(f.data_type().clone());
                    entry.2 |= f.is_nullable();
                    entry.3 += 1;
                }
                None => out.push((
                    f.name().clone(),
                    vec![f.data_type().clone()],
                    f.is_nullable(),
                    1,
                )),
            }
        }
    }
    out.into_iter()
        .map(|(n, types, nullable, seen)| (n, unify_types(&types), nullable || seen < count))
        .collect()
}

/// Fields of a node variable ranging over `tables`.
pub fn node_fields(var: &str, tables: &[NodeTableInfo], nullable: bool) -> Vec<Field> {
    entity_fields(
        var,
        LABEL,
        tables.iter().map(|t| &t.schema),
        nullable,
        |c| c,
    )
}

/// Fields of a relationship variable ranging over `tables`; `src`/`dst` become `_src`/`_dst`.
pub fn rel_fields(var: &str, tables: &[EdgeTableInfo], nullable: bool) -> Vec<Field> {
    fn plan_column(column: &str) -> &str {
        match column {
            "src" => "_src",
            "dst" => "_dst",
            other => other,
        }
    }
    entity_fields(
        var,
        TYPE,
        tables.iter().map(|t| &t.schema),
        nullable,
        plan_column,
    )
}

/// `var.__ord`, `var.<tag>` and the union of the tables' columns, named by `plan_column`.
fn entity_fields<'a>(
    var: &str,
    tag: &str,
    schemas: impl Iterator<Item = &'a arrow::datatypes::SchemaRef> + Clone,
    nullable: bool,
    plan_column: fn(&str) -> &str,
) -> Vec<Field> {
    let mut fields = vec![
        Field::new(column_name(var, ORD), DataType::UInt32, nullable),
        Field::new(column_name(var, tag), DataType::Utf8, nullable),
        Field::new(column_name(var, ID), DataType::Int64, nullable),
    ];
    let columns = union_columns(schemas.map(|s| s.fields().iter().map(|f| f.as_ref()).collect()));
    for (name, data_type, n) in columns {
        fields.push(Field::new(
            column_name(var, plan_column(&name)),
            data_type,
            nullable || n,
        ));
    }
    fields
}

/// The table column behind a relationship variable's plan column name.
pub fn rel_table_column(name: &str) -> &str {
    match name {
        "_src" => "src",
        "_dst" => "dst",
        other => other,
    }
}

/// The names of the columns an operator adds (from `skip` on), for EXPLAIN.
fn own_columns(schema: &DFSchema, skip: usize) -> String {
    schema.fields()[skip..]
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn df_schema(fields: Vec<Field>) -> Result<DFSchemaRef> {
    Ok(Arc::new(DFSchema::try_from(Schema::new(fields))?))
}

/// The columns of `input` followed by `own`.
fn after_input(input: &DFSchemaRef, own: impl IntoIterator<Item = Field>) -> Result<DFSchemaRef> {
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(own);
    df_schema(fields)
}

/// Leaf: every node of the given labels (all labels for a label-less pattern).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeScan {
    pub labels: Vec<String>,
    pub var: String,
    pub schema: DFSchemaRef,
    /// `(property, values)`: only rows whose property equals one of the values are needed (an
    /// inline `{k: v}` of the start node, a WHERE equality or IN list), so an index may find
    /// them instead of a scan.
    pub lookup: Option<(String, Vec<datafusion::common::ScalarValue>)>,
    /// The snapshot the scan reads.
    pub source: SourceRef,
}

impl NodeScan {
    pub fn try_new(source: SourceRef, var: &str, tables: &[NodeTableInfo]) -> Result<Self> {
        Ok(NodeScan {
            labels: tables.iter().map(|t| t.label.clone()).collect(),
            var: var.to_string(),
            schema: df_schema(node_fields(var, tables, false))?,
            lookup: None,
            source,
        })
    }
}

impl PartialOrd for NodeScan {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.labels, &self.var).partial_cmp(&(&other.labels, &other.var))
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
        write!(
            f,
            "NodeScan: ({}:{}) columns=[{}]",
            self.var,
            self.labels.join("|"),
            own_columns(&self.schema, 0)
        )?;
        match &self.lookup {
            Some((property, values)) => match values.as_slice() {
                [value] => write!(f, " lookup {property} = {value}"),
                _ => {
                    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                    write!(f, " lookup {property} IN [{}]", values.join(", "))
                }
            },
            None => Ok(()),
        }
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

/// For each input row, one output row per edge of the `rel_types` at the node in
/// `from_column` whose other end has one of `to_labels`, with the relationship's and the
/// neighbour's columns appended. With `optional`, a row without such edges is kept once with
/// nulls (OPTIONAL MATCH).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GraphExpand {
    pub input: LogicalPlan,
    pub from_column: String,
    /// Edge tables to follow, and the relationship type of each.
    pub rel_types: Vec<String>,
    pub type_names: Vec<String>,
    pub direction: ExpandDirection,
    pub rel_var: String,
    pub to_var: String,
    pub to_labels: Vec<String>,
    pub optional: bool,
    pub schema: DFSchemaRef,
    /// The snapshot whose adjacency and rows the expansion reads.
    pub source: SourceRef,
}

impl GraphExpand {
    #[allow(clippy::too_many_arguments)]
    pub fn try_new(
        source: SourceRef,
        input: LogicalPlan,
        from_var: &str,
        edges: &[EdgeTableInfo],
        direction: ExpandDirection,
        rel_var: &str,
        to_var: &str,
        to_tables: &[NodeTableInfo],
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
        let mut own = rel_fields(rel_var, edges, optional);
        own.extend(node_fields(to_var, to_tables, optional));
        let schema = after_input(input.schema(), own)?;
        Ok(GraphExpand {
            input,
            from_column,
            rel_types: edges.iter().map(|e| e.table.clone()).collect(),
            type_names: edges.iter().map(|e| e.rel_type.clone()).collect(),
            direction,
            rel_var: rel_var.to_string(),
            to_var: to_var.to_string(),
            to_labels: to_tables.iter().map(|t| t.label.clone()).collect(),
            optional,
            schema,
            source,
        })
    }
}

impl GraphExpand {
    /// The columns this node adds after its input's: the relationship's, then the neighbour's.
    pub fn own_fields(&self) -> &[arrow::datatypes::FieldRef] {
        &self.schema.fields()[self.input.schema().fields().len()..]
    }

    /// This expansion over another input, adding the `own` columns (a subset of its own).
    pub fn with_input(
        &self,
        input: LogicalPlan,
        own: Vec<arrow::datatypes::FieldRef>,
    ) -> Result<Self> {
        // The optimizer hands most nodes their input back unchanged: then so is the schema
        // (building it again cost a tenth of planning a 1-hop).
        let schema = if Arc::ptr_eq(input.schema(), self.input.schema())
            && own.as_slice() == self.own_fields()
        {
            self.schema.clone()
        } else {
            after_input(input.schema(), own.iter().map(|f| f.as_ref().clone()))?
        };
        Ok(GraphExpand {
            input,
            schema,
            ..self.clone()
        })
    }
}

impl PartialOrd for GraphExpand {
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
            "GraphExpand: ({from}){l}[{}:{}]{r}({}:{}){} columns=[{}]",
            self.rel_var,
            self.rel_types.join("|"),
            self.to_var,
            self.to_labels.join("|"),
            if self.optional { " optional" } else { "" },
            own_columns(&self.schema, self.input.schema().fields().len())
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
        // The optimizer may rewrite the input (e.g. prune columns); keep our columns after it.
        self.with_input(inputs.remove(0), self.own_fields().to_vec())
    }
}

/// Where the write sink leaves the rows of a write block for the clauses after it: the rows
/// with the ordinals of created elements and every property as written.
#[derive(Debug, Clone, Default)]
pub struct RowSlot(Arc<std::sync::Mutex<Option<Vec<arrow::array::RecordBatch>>>>);

impl RowSlot {
    pub fn fill(&self, batches: Vec<arrow::array::RecordBatch>) {
        *self.0.lock().expect("row slot lock") = Some(batches);
    }

    pub fn get(&self) -> Option<Vec<arrow::array::RecordBatch>> {
        self.0.lock().expect("row slot lock").clone()
    }
}

impl PartialEq for RowSlot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RowSlot {}

impl std::hash::Hash for RowSlot {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state)
    }
}

/// Whether column `name` of a write block's rows holds node ordinals (`Some(true)`: a node
/// variable's `__ord`, a walk's `__nodes`) or relationship ordinals (`Some(false)`: a
/// relationship's `__ord`, a walk's `__ords`): the columns renumbered when the clauses after
/// the block read the graph with its writes (null where the element was deleted).
pub fn ordinal_column(schema: &arrow::datatypes::Schema, name: &str) -> Option<bool> {
    let field = schema.field_with_name(name).ok()?;
    let nodes = if let Some(var) = name.strip_suffix(&format!(".{ORD}")) {
        if schema.index_of(&column_name(var, LABEL)).is_ok() {
            true
        } else if schema.index_of(&column_name(var, TYPE)).is_ok() {
            false
        } else {
            return None;
        }
    } else if name.ends_with(".__nodes") {
        true
    } else if name.ends_with(".__ords") {
        false
    } else {
        return None;
    };
    match field.data_type() {
        DataType::UInt32 => Some(nodes),
        DataType::List(item) if item.data_type() == &DataType::UInt32 => Some(nodes),
        _ => None,
    }
}

/// An [`ordinal_column`]'s field once renumbered: null allowed, in lists too.
pub fn renumbered_field(field: &Field) -> Field {
    let data_type = match field.data_type() {
        DataType::List(item) => DataType::List(Arc::new(item.as_ref().clone().with_nullable(true))),
        other => other.clone(),
    };
    field.clone().with_data_type(data_type).with_nullable(true)
}

/// Leaf: the rows a write block left in its [`RowSlot`] (filled before this plan runs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WrittenRows {
    pub slot: RowSlot,
    pub schema: DFSchemaRef,
}

impl PartialOrd for WrittenRows {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (Arc::as_ptr(&self.slot.0) as usize).partial_cmp(&(Arc::as_ptr(&other.slot.0) as usize))
    }
}

impl UserDefinedLogicalNodeCore for WrittenRows {
    fn name(&self) -> &str {
        "WrittenRows"
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
        write!(f, "WrittenRows")
    }
    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        if !exprs.is_empty() || !inputs.is_empty() {
            return plan_err!("WrittenRows takes no expressions or inputs");
        }
        Ok(self.clone())
    }
}
