//! WITH / RETURN / UNWIND and the writing clauses.

use std::collections::HashSet;

use contextql::ast::{self, ExprKind, Projection};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, SortExpr};

use crate::PlanError;
use crate::SchemaNeed;
use crate::expr::{ExprContext, is_aggregate};
use crate::lower::{Endpoint, Lowering, State, Target, Virtual, WriteOp};
use crate::nodes::{ORD, UNLABELED, column_name};
use crate::scope::{Scope, VarKind};
use arrow::datatypes::DataType;
use datafusion::logical_expr::ExprSchemable;

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
    fn constant_count(&self, e: &ast::Expr, what: &str) -> Result<usize, PlanError> {
        let empty = State {
            plan: LogicalPlanBuilder::empty(true).build()?,
            scope: Scope::default(),
            unit: true,
        };
        let converted = self
            .convert(&empty, e)
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
            let aggs: Vec<Expr> = aggregates
                .into_iter()
                .map(|(e, name)| e.alias(name))
                .collect();
            let plan = LogicalPlanBuilder::from(state.plan)
                .aggregate(groups, aggs)
                .map_err(|e| {
                    PlanError::new(format!(
                        "ambiguous aggregation expression (every non-aggregated value must be a grouping key): {e}"
                    ))
                })?
                .build()?;
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
                let ctx = ExprContext {
                    scope: &state.scope,
                    schema: state.plan.schema(),
                    params: self.params,
                    text: self.text,
                    aggregates: None,
                };
                ctx.entity_struct(&v)?
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
        let mut exprs: Vec<Expr> = state
            .plan
            .schema()
            .fields()
            .iter()
            .map(|f| column(f.name()))
            .collect();
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

    fn value_column(
        &mut self,
        state: &State,
        e: &ast::Expr,
        columns: &mut Vec<Expr>,
    ) -> Result<String, PlanError> {
        Ok(self.typed_value_column(state, e, columns)?.0)
    }

    /// Adds a column computing `e` for the write sink; returns its name and type (a bare
    /// null is typed as text, so a new column for it has a type).
    fn typed_value_column(
        &mut self,
        state: &State,
        e: &ast::Expr,
        columns: &mut Vec<Expr>,
    ) -> Result<(String, DataType), PlanError> {
        let converted = self.convert(state, e)?;
        let data_type = match converted.get_type(state.plan.schema())? {
            DataType::Null => DataType::Utf8,
            t => t,
        };
        let name = format!("__w{}", columns.len());
        columns.push(converted.alias(&name));
        Ok((name, data_type))
    }

    /// Properties written to `table_schema` that it lacks.
    fn missing_columns(
        table_schema: &arrow::datatypes::Schema,
        written: &[(String, DataType)],
    ) -> Vec<(String, DataType)> {
        written
            .iter()
            .filter(|(name, _)| table_schema.index_of(name).is_err())
            .cloned()
            .collect()
    }

    fn map_entries<'e>(
        &self,
        props: Option<&'e ast::Expr>,
    ) -> Result<Vec<(&'e String, &'e ast::Expr)>, PlanError> {
        match props {
            None => Ok(vec![]),
            Some(ast::Expr {
                kind: ExprKind::Map(entries),
                ..
            }) => Ok(entries.iter().map(|(k, v)| (k, v)).collect()),
            Some(other) => Err(self.err(other.span, "properties must be a map literal")),
        }
    }

    pub(crate) fn lower_create(
        &mut self,
        state: &State,
        c: &ast::CreateClause,
        writes: &mut Vec<WriteOp>,
        columns: &mut Vec<Expr>,
        created: &mut Vec<(String, Endpoint)>,
    ) -> Result<(), PlanError> {
        let mut created_count = writes
            .iter()
            .filter(|w| matches!(w, WriteOp::CreateNode { .. }))
            .count();
        for part in &c.pattern {
            if part.variable.is_some() || part.kind != ast::PatternKind::Plain {
                return Err(self.err(part.span, "named paths in CREATE are not supported yet"));
            }
            let el = &part.element;
            let nodes: Vec<&ast::NodePattern> = std::iter::once(&el.start)
                .chain(el.chain.iter().map(|(_, n)| n))
                .collect();
            let mut endpoints: Vec<(Endpoint, Option<String>)> = Vec::new();
            for n in &nodes {
                let bound_var = n
                    .variable
                    .as_ref()
                    .and_then(|v| state.scope.get(&v.name).map(|k| (v, k.clone())));
                let earlier = n
                    .variable
                    .as_ref()
                    .and_then(|v| created.iter().find(|(name, _)| name == &v.name).cloned());
                if let Some((v, kind)) = bound_var {
                    if !n.labels.is_empty() || n.properties.is_some() {
                        return Err(
                            self.err(v.span, format!("variable `{}` already declared", v.name))
                        );
                    }
                    let VarKind::Node { labels, .. } = kind else {
                        return Err(
                            self.err(v.span, format!("type mismatch: `{}` is not a node", v.name))
                        );
                    };
                    endpoints.push((
                        Endpoint::Bound {
                            ord_column: column_name(&v.name, ORD),
                        },
                        (labels.len() == 1).then(|| labels[0].clone()),
                    ));
                    continue;
                }
                if let Some((_, endpoint)) = earlier {
                    if !n.labels.is_empty() || n.properties.is_some() {
                        return Err(self.err(n.span, "variable already declared"));
                    }
                    let label = match &endpoint {
                        Endpoint::Created(i) => match writes
                            .iter()
                            .filter(|w| matches!(w, WriteOp::CreateNode { .. }))
                            .nth(*i)
                        {
                            Some(WriteOp::CreateNode { label, .. }) => Some(label.clone()),
                            _ => unreachable!("created index in range"),
                        },
                        Endpoint::Bound { .. } => None,
                    };
                    endpoints.push((endpoint, label));
                    continue;
                }
                if n.labels.len() > 1 {
                    return Err(self.err(
                        n.labels[1].span,
                        "a node has at most one label in ContextDB",
                    ));
                }
                let label = n
                    .labels
                    .first()
                    .map(|l| l.name.clone())
                    .unwrap_or_else(|| UNLABELED.to_string());
                let mut properties = Vec::new();
                let mut written = Vec::new();
                for (k, v) in self.map_entries(n.properties.as_ref())? {
                    let (column, data_type) = self.typed_value_column(state, v, columns)?;
                    properties.push((k.clone(), column));
                    written.push((k.clone(), data_type));
                }
                match self.source.node_table(&label) {
                    None => {
                        return Err(PlanError::needs(SchemaNeed::NodeTable {
                            label,
                            columns: written,
                        }));
                    }
                    Some(table) => {
                        let missing = Self::missing_columns(&table.schema, &written);
                        if !missing.is_empty() {
                            return Err(PlanError::needs(SchemaNeed::Columns {
                                table: label,
                                columns: missing,
                            }));
                        }
                    }
                }
                if let Some(v) = &n.variable {
                    self.virtuals.push(Virtual::Created {
                        var: v.name.clone(),
                        kind: VarKind::Node {
                            labels: vec![label.clone()],
                            primary_key: None,
                        },
                        tag: label.clone(),
                        properties: properties.clone(),
                    });
                }
                writes.push(WriteOp::CreateNode {
                    label: label.clone(),
                    properties,
                });
                let endpoint = Endpoint::Created(created_count);
                created_count += 1;
                if let Some(v) = &n.variable {
                    created.push((v.name.clone(), endpoint.clone()));
                }
                endpoints.push((endpoint, Some(label)));
            }
            for (i, (rel, _)) in el.chain.iter().enumerate() {
                if rel.types.len() != 1 {
                    return Err(
                        self.err(rel.span, "a relationship in CREATE needs exactly one type")
                    );
                }
                if rel.length.is_some() {
                    return Err(
                        self.err(rel.span, "variable-length relationships cannot be created")
                    );
                }
                let (src, dst) = match rel.direction {
                    ast::Direction::Outgoing => (&endpoints[i], &endpoints[i + 1]),
                    ast::Direction::Incoming => (&endpoints[i + 1], &endpoints[i]),
                    ast::Direction::Both => {
                        return Err(
                            self.err(rel.span, "a relationship in CREATE needs a direction")
                        );
                    }
                };
                let rel_type = rel.types[0].name.clone();
                let (Some(from), Some(to)) = (src.1.clone(), dst.1.clone()) else {
                    return Err(self.err(
                        rel.span,
                        "a relationship is created between nodes of one known label each (give the MATCH a label)",
                    ));
                };
                let mut properties = Vec::new();
                let mut written = Vec::new();
                for (k, v) in self.map_entries(rel.properties.as_ref())? {
                    let (column, data_type) = self.typed_value_column(state, v, columns)?;
                    properties.push((k.clone(), column));
                    written.push((k.clone(), data_type));
                }
                let Some(edge) = self.source.edge_table(&rel_type, &from, &to) else {
                    return Err(PlanError::needs(SchemaNeed::EdgeTable {
                        rel_type,
                        from,
                        to,
                        columns: written,
                    }));
                };
                let missing = Self::missing_columns(&edge.schema, &written);
                if !missing.is_empty() {
                    return Err(PlanError::needs(SchemaNeed::Columns {
                        table: edge.table,
                        columns: missing,
                    }));
                }
                if let Some(v) = &rel.variable {
                    self.virtuals.push(Virtual::Created {
                        var: v.name.clone(),
                        kind: VarKind::Rel {
                            types: vec![edge.table.clone()],
                        },
                        tag: edge.rel_type.clone(),
                        properties: properties.clone(),
                    });
                }
                writes.push(WriteOp::CreateEdge {
                    rel_type: edge.table.clone(),
                    src: src.0.clone(),
                    dst: dst.0.clone(),
                    properties,
                });
            }
        }
        Ok(())
    }

    fn target(&self, state: &State, var: &ast::Ident) -> Result<Target, PlanError> {
        match state.scope.get(&var.name) {
            Some(VarKind::Node { .. }) => Ok(Target::Node {
                ord_column: column_name(&var.name, ORD),
            }),
            Some(VarKind::Rel { .. }) => Ok(Target::Rel {
                ord_column: column_name(&var.name, ORD),
            }),
            Some(VarKind::Value) => Err(self.err(
                var.span,
                format!("`{}` is not a node or relationship", var.name),
            )),
            None => Err(self.err(var.span, format!("variable `{}` not defined", var.name))),
        }
    }

    pub(crate) fn lower_set(
        &mut self,
        state: &State,
        s: &ast::SetClause,
        writes: &mut Vec<WriteOp>,
        columns: &mut Vec<Expr>,
    ) -> Result<(), PlanError> {
        for item in &s.items {
            match item {
                ast::SetItem::Property { target, value } => {
                    let ExprKind::Property(base, key) = &target.kind else {
                        return Err(self.err(target.span, "SET needs a property"));
                    };
                    let ExprKind::Variable(v) = &base.kind else {
                        return Err(self.err(base.span, "SET needs a variable's property"));
                    };
                    let ident = ast::Ident {
                        name: v.clone(),
                        span: base.span,
                    };
                    let target = self.target(state, &ident)?;
                    let column = self.value_column(state, value, columns)?;
                    self.virtuals.push(Virtual::Set {
                        var: v.clone(),
                        property: key.clone(),
                        column: column.clone(),
                    });
                    writes.push(WriteOp::SetProperty {
                        target,
                        property: key.clone(),
                        column,
                    });
                }
                ast::SetItem::Merge { variable, value }
                | ast::SetItem::Replace { variable, value } => {
                    if matches!(item, ast::SetItem::Replace { .. }) {
                        return Err(self.err(
                            variable.span,
                            "SET n = {map} is not supported yet; use SET n += {map}",
                        ));
                    }
                    let target = self.target(state, variable)?;
                    for (k, v) in self.map_entries(Some(value))? {
                        let column = self.value_column(state, v, columns)?;
                        self.virtuals.push(Virtual::Set {
                            var: variable.name.clone(),
                            property: k.clone(),
                            column: column.clone(),
                        });
                        writes.push(WriteOp::SetProperty {
                            target: target.clone(),
                            property: k.clone(),
                            column,
                        });
                    }
                }
                ast::SetItem::Labels { variable, .. } => {
                    return Err(self.err(
                        variable.span,
                        "a node's label cannot change in ContextDB (one table per label)",
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn lower_delete(
        &mut self,
        state: &State,
        d: &ast::DeleteClause,
        writes: &mut Vec<WriteOp>,
    ) -> Result<(), PlanError> {
        for e in &d.exprs {
            let ExprKind::Variable(v) = &e.kind else {
                return Err(self.err(e.span, "DELETE needs a node or relationship variable"));
            };
            let target = self.target(
                state,
                &ast::Ident {
                    name: v.clone(),
                    span: e.span,
                },
            )?;
            writes.push(WriteOp::Delete {
                target,
                detach: d.detach,
            });
        }
        Ok(())
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
