//! `VECTOR SIMILAR TO`: ranks the rows at that point of the query by the similarity of a
//! vector property to a query vector and keeps the best `LIMIT` (or those at or above the
//! `THRESHOLD`), binding `similarity_score` and `distance` for the clauses after it.
//!
//! A constant query vector (a literal or a parameter) over one label's property is searched by
//! the vector operators (`crate::vector`): `AnnScan` when the clause ranks every node of the
//! label (the index finds them), `VectorTopK` over whatever rows reach the clause otherwise.
//! A query vector that changes per row (another variable's property) is ranked by a
//! projection of the scores (`contextdb_vector`'s functions) and DataFusion's sort with a
//! fetch, which keeps the top k in a bounded heap.

use contextdb_vector::Metric;
use contextql::ast::{self, ExprKind};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};

use std::sync::Arc;

use datafusion::logical_expr::{Extension, LogicalPlan};

use crate::PlanError;
use crate::lower::{Lowering, State, all_columns};
use crate::nodes::{NodeScan, column_name};
use crate::scope::VarKind;
use crate::source::VectorIndexInfo;
use crate::vector::{
    AnnScan, VectorSpec, VectorTopK, constant_value as constant, constant_vector, ordered,
};

pub use crate::vector::{DISTANCE, SIMILARITY_SCORE};

/// The metric when neither the clause nor a vector index names one.
const DEFAULT_METRIC: Metric = Metric::Cosine;

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

impl Lowering<'_> {
    pub(crate) fn lower_vector_similar(
        &mut self,
        state: State,
        v: &ast::VectorSimilar,
    ) -> Result<State, PlanError> {
        for name in [SIMILARITY_SCORE, DISTANCE] {
            if state.scope.get(name).is_some() {
                return Err(self.err(
                    v.span,
                    format!(
                        "`{name}` is already bound: one VECTOR SIMILAR TO per query part (WITH \
                         ... AS another name ends a part)"
                    ),
                ));
            }
        }
        let Target {
            var,
            labels,
            property,
            dimension,
            f32_values,
            index,
        } = self.vector_target(&state, v)?;
        let metric = v
            .metric
            .map(metric_of)
            .or(index.as_ref().map(|i| i.params.metric))
            .unwrap_or(DEFAULT_METRIC);
        // A literal or parameter of the wrong length is the query's fault, found now.
        if let Some(n) = self.constant_length(&v.query)
            && n != dimension
        {
            let mut err = self.err(
                v.query.span,
                format!("the query vector has {n} dimensions; `{var}.{property}` has {dimension}"),
            );
            // A parameter's value is the data's fault; a literal is the query's.
            err.execution = matches!(v.query.kind, ExprKind::Parameter(_));
            return Err(err);
        }
        let null_parameter = matches!(&v.query.kind, ExprKind::Parameter(p)
            if self.params.get(p).is_some_and(ScalarValue::is_null));
        if matches!(v.query.kind, ExprKind::Literal(ast::Literal::Null)) || null_parameter {
            let mut err = self.err(v.query.span, "the query vector is null");
            // A parameter's value is the data's fault.
            err.execution = null_parameter;
            return Err(err);
        }
        // Another variable's vector property: its dimension is known now too.
        if let ExprKind::Property(base, other) = &v.query.kind
            && let ExprKind::Variable(w) = &base.kind
            && let Some(VarKind::Node { labels, .. }) = state.scope.get(w)
            && let Some(d) = labels
                .iter()
                .filter_map(|l| self.source.node_table(l))
                .find_map(
                    |t| match t.schema.field_with_name(other).map(|f| f.data_type()) {
                        Ok(DataType::FixedSizeList(_, d)) => Some(*d as usize),
                        _ => None,
                    },
                )
            && d != dimension
        {
            return Err(self.err(
                v.query.span,
                format!("`{w}.{other}` has {d} dimensions; `{var}.{property}` has {dimension}"),
            ));
        }
        let query = self.convert(&state, &v.query)?;
        let limit = self.constant_count(&v.limit, "LIMIT")?;
        let threshold = match &v.threshold {
            None => Some(None),
            Some(t) => constant(&self.convert(&state, t)?)
                .and_then(|t| t.cast_to(&DataType::Float64).ok())
                .and_then(|t| match t {
                    ScalarValue::Float64(Some(t)) => Some(Some(ordered::F64(t))),
                    _ => None,
                }),
        };
        // The MATCH before lowered again to start at the ranked variable, if it was.
        let alternate = self
            .alternate
            .take()
            .filter(|(v, _)| *v == var)
            .map(|(_, plan)| plan);
        let searchable = constant(&query).and_then(|q| constant_vector(&q));
        if let ([label], Some(query), Some(threshold), true) =
            (labels.as_slice(), searchable, threshold, f32_values)
            && query.len() == dimension
        {
            let spec = VectorSpec {
                var: var.clone(),
                label: label.clone(),
                property,
                query: query.into_iter().map(ordered::F64).collect(),
                metric,
                k: limit,
                threshold,
                // An index ranks by its own metric: another one is searched exactly.
                index: index.filter(|i| i.params.metric == metric).map(|i| i.name),
                table_rows: self.source.node_count(label).unwrap_or(0),
            };
            let source = crate::source::SourceRef(self.source.clone());
            // Without an index there is nothing to search first.
            let alternate = alternate.filter(|_| spec.index.is_some());
            let node: Arc<dyn datafusion::logical_expr::UserDefinedLogicalNode> =
                match bare_scan(&state.plan, &var, label) {
                    Some(table) => Arc::new(AnnScan::try_new(source, spec, &table)?),
                    None => Arc::new(VectorTopK::try_new(source, state.plan, spec, alternate)?),
                };
            let mut scope = state.scope;
            scope.bind(SIMILARITY_SCORE, VarKind::Value, false);
            scope.bind(DISTANCE, VarKind::Value, false);
            return Ok(State {
                plan: LogicalPlan::Extension(Extension { node }),
                scope,
                unit: false,
            });
        }
        let target = column(&column_name(&var, &property));
        let (score, distance) = contextdb_vector::score_and_distance(metric, target, query);
        let mut exprs = all_columns(&state.plan);
        exprs.push(score.alias(SIMILARITY_SCORE));
        exprs.push(distance.alias(DISTANCE));
        // Rows without a score (a null vector) cannot be ranked.
        let mut keep = column(SIMILARITY_SCORE).is_not_null();
        if let Some(t) = &v.threshold {
            keep = keep.and(column(SIMILARITY_SCORE).gt_eq(self.convert(&state, t)?));
        }
        let plan = LogicalPlanBuilder::from(state.plan)
            .project(exprs)
            .map_err(|e| self.err(v.span, e.strip_backtrace()))?
            .filter(keep)?
            .sort_with_limit(
                vec![column(SIMILARITY_SCORE).sort(false, false)],
                Some(limit),
            )?
            .build()?;
        let mut scope = state.scope;
        scope.bind(SIMILARITY_SCORE, VarKind::Value, false);
        scope.bind(DISTANCE, VarKind::Value, false);
        Ok(State {
            plan,
            scope,
            unit: false,
        })
    }

    /// The variable and vector property the clause ranks by.
    pub(crate) fn vector_target(
        &self,
        state: &State,
        v: &ast::VectorSimilar,
    ) -> Result<Target, PlanError> {
        let (var, labels, span) = match &v.on {
            Some((var, _)) => match state.scope.get(&var.name) {
                Some(VarKind::Node { labels, .. }) => (var.name.clone(), labels.clone(), var.span),
                Some(_) => {
                    return Err(self.err(var.span, format!("`{}` is not a node", var.name)));
                }
                None => {
                    return Err(self.err(var.span, format!("variable `{}` not defined", var.name)));
                }
            },
            None => match state
                .scope
                .visible()
                .filter_map(|(name, kind)| match kind {
                    VarKind::Node { labels, .. } => Some((name.to_string(), labels.clone())),
                    _ => None,
                })
                .last()
            {
                Some((var, labels)) => (var, labels, v.span),
                None => {
                    return Err(self.err(
                        v.span,
                        "VECTOR SIMILAR TO needs a node variable with a vector property",
                    ));
                }
            },
        };
        // Vector properties of the variable's labels: (name, dimension, f32 values, index).
        type Found = (String, usize, bool, Option<VectorIndexInfo>);
        let mut vectors: Vec<Found> = Vec::new();
        for table in labels.iter().filter_map(|l| self.source.node_table(l)) {
            for field in table.schema.fields() {
                if let DataType::FixedSizeList(item, d) = field.data_type()
                    && item.data_type().is_floating()
                    && !vectors.iter().any(|(n, ..)| n == field.name())
                {
                    let index = table.vector_indexes.get(field.name()).cloned();
                    let f32_values = item.data_type() == &DataType::Float32;
                    vectors.push((field.name().clone(), *d as usize, f32_values, index));
                }
            }
        }
        let property = match &v.on {
            Some((_, property)) => match vectors.iter().find(|(n, ..)| *n == property.name) {
                Some(found) => found.clone(),
                None => {
                    return Err(self.err(
                        property.span,
                        format!(
                            "`{var}.{}` is not a vector property (VECTOR(d))",
                            property.name
                        ),
                    ));
                }
            },
            None => match vectors.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(
                        self.err(span, format!("`{var}` has no vector property to rank by"))
                    );
                }
                several => {
                    let names: Vec<&str> = several.iter().map(|(n, ..)| n.as_str()).collect();
                    return Err(self.err(
                        span,
                        format!(
                            "`{var}` has several vector properties ({}); say which with ON \
                             {var}.<property>",
                            names.join(", ")
                        ),
                    ));
                }
            },
        };
        let (property, dimension, f32_values, index) = property;
        Ok(Target {
            var,
            labels,
            property,
            dimension,
            f32_values,
            index,
        })
    }

    /// The length of a query vector known before the query runs: a list literal, or a list
    /// parameter.
    fn constant_length(&self, e: &ast::Expr) -> Option<usize> {
        match &e.kind {
            ExprKind::List(items) => Some(items.len()),
            ExprKind::Parameter(name) => match self.params.get(name)? {
                ScalarValue::List(list) => Some(list.value_length(0) as usize),
                ScalarValue::LargeList(list) => Some(list.value_length(0) as usize),
                ScalarValue::FixedSizeList(list) => Some(list.value_length() as usize),
                _ => None,
            },
            _ => None,
        }
    }
}
/// What a VECTOR SIMILAR TO clause ranks by.
pub(crate) struct Target {
    pub(crate) var: String,
    /// The variable's labels.
    labels: Vec<String>,
    property: String,
    dimension: usize,
    /// Whether the property holds f32 vectors (`VECTOR(d)`), which the vector operators read.
    f32_values: bool,
    /// The property's vector index (with one label).
    index: Option<VectorIndexInfo>,
}

/// The node table of `plan` when it is a plain scan of every node of `label` bound to `var`
/// (what an `AnnScan` can replace).
fn bare_scan(plan: &LogicalPlan, var: &str, label: &str) -> Option<crate::source::NodeTableInfo> {
    let LogicalPlan::Extension(ext) = plan else {
        return None;
    };
    let scan = ext.node.as_any().downcast_ref::<NodeScan>()?;
    if scan.var != var || scan.lookup.is_some() || scan.labels != [label] {
        return None;
    }
    scan.source.node_table(label)
}

/// The metric a VECTOR SIMILAR TO clause names.
fn metric_of(m: ast::Metric) -> Metric {
    match m {
        ast::Metric::Cosine => Metric::Cosine,
        ast::Metric::L2 => Metric::L2,
        ast::Metric::Dot => Metric::Dot,
    }
}
