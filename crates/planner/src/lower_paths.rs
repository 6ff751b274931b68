//! Named paths: `p = (a)-[..]->(b)` binds `p` to a path value, a struct of a `nodes` list
//! and a `relationships` list (DESIGN.md), in the order the pattern is written. The value is
//! built from the pattern's columns once the pattern is matched; `length(p)`, `nodes(p)` and
//! `relationships(p)` read it (see `expr.rs`). Nodes of different labels and relationships of
//! different types share one struct type per path: the union of their properties, null where
//! one has none (a missing property reads as null in openCypher).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields};
use contextql::ast::{self, ExprKind, PatternPart};
use datafusion::common::DFSchema;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::functions::expr_fn as f;
use datafusion::functions_nested::expr_fn as nested;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlanBuilder, cast, lit, when};
use datafusion::optimizer::analyzer::type_coercion::TypeCoercionRewriter;

use crate::PlanError;
use crate::expr::ExprContext;
use crate::lower::{BoundRel, ChainLabels, Lowering, State, column};
use crate::nodes::{ID, LABEL, ORD, TYPE, UNLABELED, column_name, node_fields};
use crate::scope::{Scope, VarKind};
use crate::source::EdgeTableInfo;
use crate::var_length::{StepFilter, between_column, ordinals_column, rel_struct_fields};

/// The struct fields of one named path's nodes and relationships.
#[derive(Debug, Clone)]
pub(crate) struct PathFields {
    /// The path variable.
    pub(crate) var: String,
    pub(crate) nodes: Fields,
    pub(crate) relationships: Fields,
}

/// What a `WHERE all(x IN <list> WHERE body)` (or `none`) conjunct ranges over.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StepList {
    /// `relationships(p)` or a variable-length relationship variable.
    Relationships(String),
    /// `nodes(p)`.
    Nodes(String),
}

/// A conjunct of a MATCH's WHERE that every step of a walk must satisfy: the list it ranges
/// over, the element variable and the predicate on it (negated for `none`).
#[derive(Debug, Clone)]
pub(crate) struct StepCondition {
    pub(crate) list: StepList,
    pub(crate) variable: String,
    pub(crate) predicate: ast::Expr,
    pub(crate) negated: bool,
}

/// The `all(..)` / `none(..)` conjuncts of `predicate` over a path's or a relationship list's
/// elements.
pub(crate) fn step_conditions(predicate: &ast::Expr) -> Vec<StepCondition> {
    let mut out = Vec::new();
    let mut stack = vec![predicate];
    while let Some(e) = stack.pop() {
        match &e.kind {
            ExprKind::Binary(ast::BinaryOp::And, a, b) => {
                stack.push(b);
                stack.push(a);
            }
            ExprKind::Quantifier {
                kind: kind @ (ast::Quantifier::All | ast::Quantifier::None),
                variable,
                list,
                predicate,
            } => {
                let list = match &list.kind {
                    ExprKind::Variable(r) => Some(StepList::Relationships(r.clone())),
                    ExprKind::Function { name, args, .. } if args.len() == 1 => {
                        match (&args[0].kind, name.to_ascii_lowercase().as_str()) {
                            (ExprKind::Variable(p), "relationships") => {
                                Some(StepList::Relationships(p.clone()))
                            }
                            (ExprKind::Variable(p), "nodes") => Some(StepList::Nodes(p.clone())),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                if let Some(list) = list {
                    out.push(StepCondition {
                        list,
                        variable: variable.clone(),
                        predicate: (**predicate).clone(),
                        negated: *kind == ast::Quantifier::None,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// The labels at either end of the edge tables: what a node inside a walk over them may be.
pub(crate) fn endpoint_labels(edges: &[EdgeTableInfo]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for e in edges {
        for l in [&e.from, &e.to] {
            if !labels.contains(l) {
                labels.push(l.clone());
            }
        }
    }
    labels
}

/// The column a step filter reads its relationship or node from.
const STEP_COLUMN: &str = "__step";

/// The column beside a named path `p` holding its length.
pub(crate) fn length_column(path: &str) -> String {
    column_name(path, "__length")
}

/// A list of `fields` structs, as a path's lists hold them.
fn list_of(fields: &Fields) -> DataType {
    DataType::List(Arc::new(Field::new_struct("item", fields.clone(), true)))
}

impl Lowering<'_> {
    /// The filter every step of a walk must pass, from the WHERE conditions over `list`, over
    /// elements that are structs of `fields`; None when there are none or one reads more
    /// than its element (it then stays in the WHERE alone).
    pub(crate) fn step_filter(&self, list: &StepList, fields: &Fields) -> Option<StepFilter> {
        let mut predicate: Option<Expr> = None;
        for condition in self.step_conditions.iter().filter(|c| &c.list == list) {
            let element = Field::new(&condition.variable, DataType::Struct(fields.clone()), true);
            let schema = DFSchema::try_from(arrow::datatypes::Schema::new(vec![element])).ok()?;
            let mut scope = Scope::default();
            scope.bind(&condition.variable, VarKind::Value, false);
            let converted = ExprContext {
                scope: &scope,
                schema: &schema,
                params: self.params,
                text: self.text,
                aggregates: None,
                depth: 0,
                patterns: &[],
            }
            .convert(&condition.predicate)
            .ok()?;
            let converted = converted
                .rewrite(&mut TypeCoercionRewriter::new(&schema))
                .ok()?
                .data;
            // Each step passes when the body is true (all) or false (none) for it.
            let converted = if condition.negated {
                converted.is_false()
            } else {
                converted.is_true()
            };
            // Rename the element to one column every condition shares.
            let converted = converted
                .transform(|e| match e {
                    Expr::Column(c) if c.name == condition.variable => {
                        Ok(Transformed::yes(column(STEP_COLUMN)))
                    }
                    other => Ok(Transformed::no(other)),
                })
                .ok()?
                .data;
            predicate = Some(match predicate {
                Some(p) => p.and(converted),
                None => converted,
            });
        }
        predicate.map(|predicate| StepFilter {
            column: STEP_COLUMN.to_string(),
            predicate,
            fields: fields.clone(),
        })
    }

    /// The struct fields a named path over `part` gives its nodes and relationships.
    pub(crate) fn path_fields(&self, labels: &ChainLabels, part: &PatternPart) -> PathFields {
        let mut node_labels: Vec<String> = Vec::new();
        let mut add = |l: &String| {
            if !node_labels.contains(l) {
                node_labels.push(l.clone());
            }
        };
        labels.labels.iter().flatten().for_each(&mut add);
        let mut edges: Vec<EdgeTableInfo> = Vec::new();
        for (i, (rel, _)) in part.element.chain.iter().enumerate() {
            if rel.length.is_some() {
                endpoint_labels(&labels.types[i]).iter().for_each(&mut add);
            }
            for e in &labels.types[i] {
                if !edges.iter().any(|x| x.table == e.table) {
                    edges.push(e.clone());
                }
            }
        }
        let mut nodes = vec![
            Field::new("_id", DataType::Int64, true),
            Field::new("_label", DataType::Utf8, true),
        ];
        for field in node_fields("n", &self.node_tables(&node_labels), true) {
            let name = &field.name()["n.".len()..];
            if !name.starts_with('_') {
                nodes.push(Field::new(name, field.data_type().clone(), true));
            }
        }
        PathFields {
            var: part
                .variable
                .as_ref()
                .map(|v| v.name.clone())
                .unwrap_or_default(),
            nodes: nodes.into(),
            relationships: rel_struct_fields("r", &edges),
        }
    }

    /// Binds `var` to the path from node `first` over `steps` (each a relationship and the
    /// node it reaches, in the order written), as a column of the rows.
    pub(crate) fn bind_path(
        &mut self,
        state: State,
        var: &str,
        first: &str,
        steps: &[(BoundRel, String)],
        fields: &PathFields,
    ) -> Result<State, PlanError> {
        let schema = state.plan.schema().clone();
        let has = |name: &str| schema.index_of_column_by_name(None, name).is_some();
        // One entity's struct in the path's layout: its own columns, typed nulls for the rest.
        let entity = |var: &str, fields: &Fields| -> Result<Expr, PlanError> {
            let mut args = Vec::with_capacity(2 * fields.len());
            for field in fields.iter() {
                let name = field.name().as_str();
                let value = match name {
                    "_id" => column(&column_name(var, ID)),
                    "_label" => {
                        let label = column(&column_name(var, LABEL));
                        when(
                            label.clone().eq(lit(UNLABELED)),
                            lit(ScalarValue::Utf8(None)),
                        )
                        .otherwise(label)?
                    }
                    "_type" => column(&column_name(var, TYPE)),
                    _ if has(&column_name(var, name)) => {
                        cast(column(&column_name(var, name)), field.data_type().clone())
                    }
                    _ => lit(ScalarValue::try_from(field.data_type())?),
                };
                args.push(lit(name));
                args.push(value);
            }
            Ok(nested::make_array(vec![f::named_struct(args)]))
        };
        let (node_list, rel_list) = (list_of(&fields.nodes), list_of(&fields.relationships));
        let mut nodes = vec![cast(entity(first, &fields.nodes)?, node_list.clone())];
        let mut relationships = Vec::with_capacity(steps.len());
        for ((rel, _, list), node) in steps {
            if *list {
                relationships.push(cast(column(rel), rel_list.clone()));
                nodes.push(cast(column(&between_column(rel)), node_list.clone()));
            } else {
                relationships.push(cast(entity(rel, &fields.relationships)?, rel_list.clone()));
            }
            nodes.push(cast(entity(node, &fields.nodes)?, node_list.clone()));
        }
        let concat = |mut parts: Vec<Expr>, item: &Fields| -> Expr {
            match parts.len() {
                // `p = (a)`: one node and no relationships.
                0 => lit(ScalarValue::List(ScalarValue::new_list_nullable(
                    &[],
                    &DataType::Struct(item.clone()),
                ))),
                1 => parts.remove(0),
                _ => nested::array_concat(parts),
            }
        };
        let value = f::named_struct(vec![
            lit("nodes"),
            concat(nodes, &fields.nodes),
            lit("relationships"),
            concat(relationships, &fields.relationships),
        ]);
        // An unmatched OPTIONAL node makes no path.
        let value = when(
            column(&column_name(first, ORD)).is_null(),
            lit(ScalarValue::Null),
        )
        .otherwise(value)?;
        let _ = value.get_type(&schema)?;
        // Its length beside it, so `length(p)` builds no lists.
        let length = steps
            .iter()
            .map(|((rel, _, list), _)| {
                if *list {
                    cast(
                        nested::cardinality(column(&ordinals_column(rel))),
                        DataType::Int64,
                    )
                } else {
                    lit(1i64)
                }
            })
            .reduce(|a, b| a + b)
            .unwrap_or(lit(0i64));
        let mut exprs: Vec<Expr> = schema.fields().iter().map(|f| column(f.name())).collect();
        exprs.push(value.alias(var));
        exprs.push(length.alias(length_column(var)));
        let plan = LogicalPlanBuilder::from(state.plan)
            .project(exprs)?
            .build()?;
        let mut scope = state.scope;
        scope.bind(var, VarKind::Value, false);
        Ok(State {
            plan,
            scope,
            ..state
        })
    }
}
