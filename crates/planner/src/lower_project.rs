//! WITH / RETURN / UNWIND and the writing clauses.

use std::collections::HashSet;

use contextql::ast::{self, ExprKind, Projection};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, SortExpr};

use crate::PlanError;
use crate::expr::{ExprContext, is_aggregate};
use crate::lower::{Lowering, State};
use crate::nodes::column_name;
use crate::scope::{Scope, VarKind};

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

impl Lowering<'_> {
    fn columns_of(state: &State, var: &str) -> Vec<String> {
        let prefix = format!("{var}.");
        state
            .plan
            .schema()
            .fields()
            .iter()
            .filter(|f| f.name().starts_with(&prefix))
            .map(|f| f.name().clone())
            .collect()
    }

    /// SKIP and LIMIT take a constant expression (literals, parameters and functions of
    /// them), evaluated here; a bad value is the data's fault (an execution error).
    pub(crate) fn constant_count(&self, e: &ast::Expr, what: &str) -> Result<usize, PlanError> {
        let converted = self
            .convert_constant(e)
            .map_err(|_| self.err(e.span, format!("{what} must be a constant expression")))?;
        let value = evaluate_constant(converted)
            .map_err(|m| self.err(e.span, format!("{what} must be a constant expression: {m}")))?;
        // A literal is wrong when written (a plan error); a parameter's value when run.
        let mut from_parameter = false;
        crate::expr::walk(e, &mut |x| {
            from_parameter |= matches!(x.kind, ExprKind::Parameter(_))
        });
        let bad = |message: String| {
            let mut err = self.err(e.span, message);
            err.execution = from_parameter;
            err
        };
        match value {
            ScalarValue::Int64(Some(n)) if n >= 0 => Ok(n as usize),
            ScalarValue::Int64(Some(n)) => {
                Err(bad(format!("{what} must not be negative, got {n}")))
            }
            other => Err(bad(format!("{what} must be an integer, got {other}"))),
        }
    }

    /// openCypher's AmbiguousAggregationExpression: next to an aggregate, an item may read
    /// only grouping keys (items without aggregates), their variables, or properties of them.
    fn check_grouping(&self, items: &[(String, ast::Expr)]) -> Result<(), PlanError> {
        let text = |e: &ast::Expr| self.text[e.span.start..e.span.end].trim().to_string();
        let keys: Vec<String> = items
            .iter()
            .filter(|(_, e)| !is_aggregate(e))
            .flat_map(|(name, e)| [text(e), name.clone()])
            .collect();
        for (_, e) in items.iter().filter(|(_, e)| is_aggregate(e)) {
            let mut leaves = Vec::new();
            crate::expr::non_aggregate_leaves(e, &mut leaves);
            for leaf in leaves {
                let ok = keys.contains(&text(leaf))
                    || matches!(&leaf.kind, ExprKind::Property(base, _)
                        if matches!(&base.kind, ExprKind::Variable(v) if keys.contains(v)));
                if !ok {
                    return Err(self.err(
                        leaf.span,
                        format!(
                            "ambiguous aggregation expression: `{}` is not a grouping key",
                            text(leaf)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// WITH (`is_return == false`) and RETURN.
    pub(crate) fn lower_projection(
        &mut self,
        state: State,
        p: &Projection,
        is_return: bool,
    ) -> Result<State, PlanError> {
        // A bare `WITH * [WHERE ..]` keeps every variable (even when there are none).
        if !is_return
            && p.star
            && p.items.is_empty()
            && p.order_by.is_empty()
            && p.skip.is_none()
            && p.limit.is_none()
            && !p.distinct
        {
            return match &p.where_ {
                Some(w) => self.filter(state, w),
                None => Ok(state),
            };
        }
        // (output name, expression)
        let mut items: Vec<(String, ast::Expr)> = Vec::new();
        if p.star {
            // openCypher orders the columns of `*` by name.
            let mut names: Vec<&str> = state.scope.visible().map(|(n, _)| n).collect();
            names.sort_unstable();
            for name in names {
                items.push((
                    name.to_string(),
                    ast::Expr {
                        kind: ExprKind::Variable(name.to_string()),
                        span: p.span,
                    },
                ));
            }
            if items.is_empty() {
                return Err(self.err(
                    p.span,
                    "RETURN * is not allowed when there are no variables in scope",
                ));
            }
        }
        for item in &p.items {
            let name = match &item.alias {
                Some(a) => a.name.clone(),
                None => {
                    if !is_return && !matches!(item.expr.kind, ExprKind::Variable(_)) {
                        return Err(
                            self.err(item.span, "expression in WITH must be aliased (use AS)")
                        );
                    }
                    item.text.clone()
                }
            };
            items.push((name, item.expr.clone()));
        }
        let mut seen = HashSet::new();
        for (name, e) in &items {
            if !seen.insert(name.clone()) {
                return Err(self.err(
                    e.span,
                    format!("multiple result columns with the same name `{name}`"),
                ));
            }
        }
        let aggregating = items.iter().any(|(_, e)| is_aggregate(e));
        // ORDER BY items with aggregates are computed with the projection as hidden items;
        // output aliases in them stand for the aliased expressions.
        let mut hidden: HashSet<String> = HashSet::new();
        let mut sort_columns: Vec<Option<String>> = vec![None; p.order_by.len()];
        if aggregating {
            for (k, s) in p.order_by.iter().enumerate() {
                if is_aggregate(&s.expr) {
                    let name = format!("__sort{k}");
                    items.push((name.clone(), substitute_aliases(&s.expr, &items)));
                    hidden.insert(name.clone());
                    sort_columns[k] = Some(name);
                }
            }
            self.check_grouping(&items)?;
        }
        let entity = |scope: &Scope, e: &ast::Expr| -> Option<(String, VarKind)> {
            match &e.kind {
                ExprKind::Variable(v) => match scope.get(v) {
                    Some(k @ (VarKind::Node { .. } | VarKind::Rel { .. })) => {
                        Some((v.clone(), k.clone()))
                    }
                    _ => None,
                },
                _ => None,
            }
        };

        // 1. Aggregation, if any: group by the non-aggregate items.
        let mut state = state;
        let mut agg_items: Vec<Option<Expr>> = vec![None; items.len()];
        if aggregating {
            let mut groups: Vec<Expr> = Vec::new();
            let mut aggregates: Vec<(Expr, String)> = Vec::new();
            let mut group_names: HashSet<String> = HashSet::new();
            for (i, (name, e)) in items.iter().enumerate() {
                if is_aggregate(e) {
                    let mut ctx = ExprContext {
                        scope: &state.scope,
                        schema: state.plan.schema(),
                        params: self.params,
                        text: self.text,
                        aggregates: Some(&mut aggregates),
                        depth: 0,
                        patterns: &[],
                    };
                    agg_items[i] = Some(ctx.convert(e)?);
                } else if let Some((v, _)) = entity(&state.scope, e) {
                    for c in Self::columns_of(&state, &v) {
                        if group_names.insert(c.clone()) {
                            groups.push(column(&c));
                        }
                    }
                } else {
                    let converted = self.convert(&state, e)?;
                    // A column keeps its name, so expressions next to aggregates can read it.
                    let key = match &converted {
                        Expr::Column(c) => c.name.clone(),
                        _ => format!("__grp{i}"),
                    };
                    if group_names.insert(key.clone()) {
                        groups.push(converted.alias(&key));
                    }
                    agg_items[i] = Some(column(&key).alias(name));
                }
            }
            let mut aggs: Vec<Expr> = aggregates
                .into_iter()
                .map(|(e, name)| e.alias(name))
                .collect();
            // Grouping keys that read no column (a property no table has is a null
            // constant): DataFusion drops constant keys and aggregates globally, which gives
            // one row for no input. openCypher gives a group per distinct key, so none: count
            // the rows and keep the group only if there were any.
            let constant_keys =
                !groups.is_empty() && groups.iter().all(|g| g.column_refs().is_empty());
            let rows = "__group_rows";
            if constant_keys {
                aggs.push(
                    datafusion::functions_aggregate::expr_fn::count(datafusion::logical_expr::lit(
                        1i64,
                    ))
                    .alias(rows),
                );
            }
            let mut builder = LogicalPlanBuilder::from(state.plan)
                .aggregate(groups, aggs)
                .map_err(|e| {
                    PlanError::new(format!(
                        "ambiguous aggregation expression (every non-aggregated value must be a grouping key): {e}"
                    ))
                })?;
            if constant_keys {
                builder = builder.filter(column(rows).gt(datafusion::logical_expr::lit(0i64)))?;
            }
            let plan = builder.build()?;
            state = State { plan, ..state };
        }

        // 2. Projection of the items (plus, for sorting, the columns they hide).
        let mut exprs: Vec<Expr> = Vec::new();
        let mut new_scope = Scope::default();
        let mut out_columns: Vec<String> = Vec::new();
        for (i, (name, e)) in items.iter().enumerate() {
            if let Some(converted) = agg_items[i].take() {
                if is_aggregate(e) {
                    exprs.push(converted.alias(name));
                } else {
                    exprs.push(converted);
                }
                out_columns.push(name.clone());
                new_scope.bind(name, VarKind::Value, false);
                continue;
            }
            if let Some((v, kind)) = entity(&state.scope, e)
                && !is_return
            {
                // WITH passes a node or relationship on whole, renamed if aliased.
                for c in Self::columns_of(&state, &v) {
                    let suffix = &c[v.len() + 1..];
                    let out = column_name(name, suffix);
                    exprs.push(column(&c).alias(&out));
                    out_columns.push(out);
                }
                new_scope.bind(name, kind, false);
                continue;
            }
            let converted = if let Some((v, _)) = entity(&state.scope, e) {
                self.context(&state, &[]).entity_struct(&v)?
            } else {
                self.convert(&state, e)?
            };
            exprs.push(converted.alias(name));
            out_columns.push(name.clone());
            new_scope.bind(name, VarKind::Value, false);
        }
        let out_set: HashSet<String> = out_columns.iter().cloned().collect();
        // Sorting may use variables the projection drops, unless it aggregates or is DISTINCT.
        let keep_hidden = !p.order_by.is_empty() && !aggregating && !p.distinct;
        let mut sort_scope = new_scope.clone();
        if keep_hidden {
            for f in state.plan.schema().fields() {
                if !out_set.contains(f.name()) {
                    exprs.push(column(f.name()));
                }
            }
            for (name, kind) in state.scope.all() {
                if new_scope.get(name).is_none() {
                    sort_scope.bind(name, kind.clone(), true);
                }
            }
        }
        let mut builder = LogicalPlanBuilder::from(state.plan).project(exprs)?;
        if p.distinct {
            builder = builder.distinct()?;
        }
        let mut plan = builder.build()?;

        // 3. ORDER BY, SKIP, LIMIT.
        if !p.order_by.is_empty() {
            let sort_state = State {
                plan: plan.clone(),
                scope: sort_scope,
                unit: false,
            };
            let mut sorts = Vec::new();
            for s in &p.order_by {
                // An item written again in ORDER BY refers to its output column.
                let by_text = p
                    .items
                    .iter()
                    .find(|i| {
                        i.alias.is_none()
                            && i.text == self.text[s.expr.span.start..s.expr.span.end].trim()
                    })
                    .map(|i| column(&i.text));
                let e = match by_text.or_else(|| sort_columns[sorts.len()].as_deref().map(column)) {
                    Some(c) => c,
                    None => {
                        if is_aggregate(&s.expr) {
                            return Err(self.err(
                                s.expr.span,
                                "aggregations in ORDER BY must also be projected",
                            ));
                        }
                        self.convert(&sort_state, &s.expr)?
                    }
                };
                // Cypher sorts nulls last ascending and first descending.
                sorts.push(SortExpr::new(e, !s.descending, s.descending));
            }
            plan = LogicalPlanBuilder::from(plan).sort(sorts)?.build()?;
        }
        let skip = p
            .skip
            .as_ref()
            .map(|e| self.constant_count(e, "SKIP"))
            .transpose()?;
        let limit = p
            .limit
            .as_ref()
            .map(|e| self.constant_count(e, "LIMIT"))
            .transpose()?;
        if skip.is_some() || limit.is_some() {
            plan = LogicalPlanBuilder::from(plan)
                .limit(skip.unwrap_or(0), limit)?
                .build()?;
        }
        if keep_hidden || !hidden.is_empty() {
            let only: Vec<Expr> = out_columns
                .iter()
                .filter(|c| !hidden.contains(*c))
                .map(|c| column(c))
                .collect();
            plan = LogicalPlanBuilder::from(plan).project(only)?.build()?;
        }
        let mut state = State {
            plan,
            scope: new_scope,
            unit: false,
        };
        if let Some(w) = &p.where_ {
            state = self.filter(state, w)?;
        }
        Ok(state)
    }

    pub(crate) fn lower_unwind(
        &mut self,
        state: State,
        u: &ast::Unwind,
    ) -> Result<State, PlanError> {
        if state.scope.get(&u.alias.name).is_some() {
            return Err(self.err(
                u.alias.span,
                format!("variable `{}` already declared", u.alias.name),
            ));
        }
        let list = self.convert(&state, &u.expr)?;
        let mut exprs: Vec<Expr> = crate::lower::all_columns(&state.plan);
        exprs.push(list.alias(&u.alias.name));
        let plan = LogicalPlanBuilder::from(state.plan)
            .project(exprs)?
            .unnest_column(u.alias.name.as_str())?
            .build()?;
        let mut scope = state.scope;
        scope.bind(&u.alias.name, VarKind::Value, false);
        Ok(State {
            plan,
            scope,
            unit: false,
        })
    }
}

/// Evaluates an expression that reads no column.
fn evaluate_constant(e: Expr) -> Result<ScalarValue, String> {
    use datafusion::common::DFSchema;
    // The session coerces types (`1.5 * 2`) before the expression is built.
    let physical = datafusion::prelude::SessionContext::new()
        .create_physical_expr(e, &DFSchema::empty())
        .map_err(|e| e.strip_backtrace())?;
    let batch = arrow::array::RecordBatch::try_new_with_options(
        std::sync::Arc::new(arrow::datatypes::Schema::empty()),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .map_err(|e| e.to_string())?;
    let value = physical.evaluate(&batch).map_err(|e| e.strip_backtrace())?;
    let array = value.into_array(1).map_err(|e| e.strip_backtrace())?;
    ScalarValue::try_from_array(&array, 0).map_err(|e| e.strip_backtrace())
}

/// `e` with each variable that names an output item replaced by that item's expression
/// (`ORDER BY total + count(*)` where `total` is `x.total AS total`).
fn substitute_aliases(e: &ast::Expr, items: &[(String, ast::Expr)]) -> ast::Expr {
    if let ExprKind::Variable(v) = &e.kind
        && let Some((_, item)) = items.iter().find(|(name, _)| name == v)
        && !matches!(&item.kind, ExprKind::Variable(w) if w == v)
    {
        return item.clone();
    }
    let mut out = e.clone();
    let sub = |x: &ast::Expr| substitute_aliases(x, items);
    match &mut out.kind {
        ExprKind::Property(x, _) | ExprKind::Unary(_, x) => **x = sub(x),
        ExprKind::Binary(_, a, b) => {
            **a = sub(a);
            **b = sub(b);
        }
        ExprKind::Comparison(a, rest) => {
            **a = sub(a);
            for (_, x) in rest.iter_mut() {
                *x = sub(x);
            }
        }
        ExprKind::Function { args, .. } | ExprKind::List(args) => {
            for x in args.iter_mut() {
                *x = sub(x);
            }
        }
        _ => {}
    }
    out
}
