//! Lowering a ContextQL query onto a DataFusion logical plan.
//!
//! Reading clauses become plan operators (NodeScan, GraphExpand, Filter, Join, Aggregate,
//! Projection, Sort, Limit); writing clauses become [`WriteOp`]s that read the columns of the
//! final plan, which the engine's write sink turns into one atomic commit.

use std::sync::Arc;

use contextql::ast::{
    self, Clause, Direction, ExprKind, MatchClause, PatternPart, Query, SingleQuery,
};
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, LogicalPlanBuilder, lit};

use crate::PlanError;
use crate::expr::{ExprContext, Params, is_aggregate};
use crate::nodes::{ExpandDirection, GraphExpand, NodeScan, ORD, column_name};
use crate::scope::{Scope, VarKind};
use crate::source::{EdgeTableInfo, GraphSource, NodeTableInfo};

/// The most steps one pattern may have (a named limit on planning work).
pub const MAX_PATTERN_STEPS: usize = 64;

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Where a created relationship's endpoint comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// A node bound by the reading part: its primary key is in `key_column`.
    Bound { label: String, key_column: String },
    /// The `n`th node created by this statement's CREATE clauses (per row).
    Created(usize),
}

/// A node or relationship to change, identified by its ordinal column.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Node {
        label: String,
        ord_column: String,
    },
    Rel {
        rel_type: String,
        ord_column: String,
    },
}

/// One write, evaluated for every row of the plan's output.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    CreateNode {
        label: String,
        /// (property, plan column holding its value)
        properties: Vec<(String, String)>,
    },
    CreateEdge {
        rel_type: String,
        src: Endpoint,
        dst: Endpoint,
        properties: Vec<(String, String)>,
    },
    SetProperty {
        target: Target,
        property: String,
        column: String,
    },
    Delete {
        target: Target,
        detach: bool,
    },
}

/// A lowered query: the plan and, for writing queries, what to write from its rows.
#[derive(Debug)]
pub struct Lowered {
    pub plan: LogicalPlan,
    pub writes: Vec<WriteOp>,
}

pub(crate) struct State {
    pub(crate) plan: LogicalPlan,
    pub(crate) scope: Scope,
    /// The plan is the one-row start of a query (nothing read yet).
    pub(crate) unit: bool,
}

pub struct Lowering<'a> {
    pub(crate) source: &'a dyn GraphSource,
    pub(crate) params: &'a Params,
    pub(crate) text: &'a str,
    counter: usize,
}

impl<'a> Lowering<'a> {
    pub fn new(source: &'a dyn GraphSource, params: &'a Params, text: &'a str) -> Self {
        Lowering {
            source,
            params,
            text,
            counter: 0,
        }
    }

    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("_{what}{}", self.counter)
    }

    pub(crate) fn err(&self, span: ast::Span, message: impl Into<String>) -> PlanError {
        PlanError::at(self.text, span, message)
    }

    pub fn lower(&mut self, query: &Query) -> Result<Lowered, PlanError> {
        let mut parts = Vec::new();
        for part in &query.parts {
            parts.push(self.lower_single(part)?);
        }
        let mut parts = parts.into_iter();
        let first = parts.next().ok_or_else(|| PlanError::new("empty query"))?;
        if query.parts.len() == 1 {
            return Ok(first);
        }
        if !first.writes.is_empty() {
            return Err(PlanError::new("UNION of writing queries is not supported"));
        }
        let mut builder = LogicalPlanBuilder::from(first.plan);
        for (all, part) in query.union_all.iter().zip(parts) {
            if !part.writes.is_empty() {
                return Err(PlanError::new("UNION of writing queries is not supported"));
            }
            let left: Vec<String> = builder
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let right: Vec<String> = part
                .plan
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            if left != right {
                return Err(PlanError::new(
                    "all sub queries in a UNION must have the same return column names",
                ));
            }
            builder = if *all {
                builder.union(part.plan)?
            } else {
                builder.union_distinct(part.plan)?
            };
        }
        Ok(Lowered {
            plan: builder.build()?,
            writes: vec![],
        })
    }

    fn lower_single(&mut self, query: &SingleQuery) -> Result<Lowered, PlanError> {
        let mut state = State {
            plan: LogicalPlanBuilder::empty(true).build()?,
            scope: Scope::default(),
            unit: true,
        };
        let mut writes = Vec::new();
        let mut write_columns: Vec<Expr> = Vec::new();
        let mut created: Vec<(String, Endpoint)> = Vec::new();
        let mut returned = false;
        for (i, clause) in query.clauses.iter().enumerate() {
            if returned {
                return Err(PlanError::new("RETURN must be the last clause"));
            }
            let writing = !writes.is_empty();
            match clause {
                Clause::Match(m) if !writing => state = self.lower_match(state, m)?,
                Clause::Unwind(u) if !writing => state = self.lower_unwind(state, u)?,
                Clause::With(p) if !writing => state = self.lower_projection(state, p, false)?,
                Clause::Return(p) if !writing => {
                    state = self.lower_projection(state, p, true)?;
                    returned = true;
                }
                Clause::Create(c) => {
                    self.lower_create(&state, c, &mut writes, &mut write_columns, &mut created)?
                }
                Clause::Set(s) => self.lower_set(&state, s, &mut writes, &mut write_columns)?,
                Clause::Delete(d) => self.lower_delete(&state, d, &mut writes)?,
                Clause::VectorSimilar(v) => {
                    return Err(
                        self.err(v.span, "VECTOR SIMILAR TO is parsed but not executable yet")
                    );
                }
                Clause::Merge(m) => {
                    return Err(self.err(m.span, "MERGE is not supported yet"));
                }
                Clause::Remove(r) => {
                    return Err(self.err(r.span, "REMOVE is not supported yet"));
                }
                _ => {
                    return Err(PlanError::new(format!(
                        "clause {} after a writing clause is not supported yet",
                        i + 1
                    )));
                }
            }
        }
        if writes.is_empty() {
            if !returned {
                return Err(PlanError::new(
                    "query cannot conclude with MATCH, UNWIND or WITH (must be RETURN or an update clause)",
                ));
            }
            return Ok(Lowered {
                plan: state.plan,
                writes,
            });
        }
        // The sink reads the ordinals and keys of bound variables and the computed values.
        let mut exprs: Vec<Expr> = state
            .plan
            .schema()
            .fields()
            .iter()
            .map(|f| column(f.name()))
            .collect();
        exprs.extend(write_columns);
        let plan = LogicalPlanBuilder::from(state.plan)
            .project(exprs)?
            .build()?;
        Ok(Lowered { plan, writes })
    }

    // ----------------------------------------------------------------------------------
    // MATCH
    // ----------------------------------------------------------------------------------

    fn lower_match(&mut self, state: State, m: &MatchClause) -> Result<State, PlanError> {
        if m.optional {
            return self.lower_optional_match(state, m);
        }
        let mut state = state;
        let mut rels: Vec<(String, String)> = Vec::new();
        for part in &m.pattern {
            state = self.lower_part(state, part, &mut rels)?;
        }
        state = self.rel_uniqueness(state, &rels)?;
        if let Some(w) = &m.where_ {
            state = self.filter(state, w)?;
        }
        Ok(state)
    }

    pub(crate) fn filter(
        &mut self,
        state: State,
        predicate: &ast::Expr,
    ) -> Result<State, PlanError> {
        if is_aggregate(predicate) {
            return Err(self.err(
                predicate.span,
                "invalid use of aggregating function in WHERE",
            ));
        }
        let e = self.convert(&state, predicate)?;
        let plan = LogicalPlanBuilder::from(state.plan).filter(e)?.build()?;
        Ok(State { plan, ..state })
    }

    pub(crate) fn convert(&self, state: &State, e: &ast::Expr) -> Result<Expr, PlanError> {
        ExprContext {
            scope: &state.scope,
            schema: state.plan.schema(),
            params: self.params,
            text: self.text,
            aggregates: None,
        }
        .convert(e)
    }

    fn rel_uniqueness(
        &mut self,
        state: State,
        rels: &[(String, String)],
    ) -> Result<State, PlanError> {
        let mut predicate: Option<Expr> = None;
        for (i, (a, ta)) in rels.iter().enumerate() {
            for (b, tb) in &rels[i + 1..] {
                if ta == tb {
                    let ne = column(&column_name(a, ORD)).not_eq(column(&column_name(b, ORD)));
                    predicate = Some(match predicate {
                        Some(p) => p.and(ne),
                        None => ne,
                    });
                }
            }
        }
        match predicate {
            None => Ok(state),
            Some(p) => Ok(State {
                plan: LogicalPlanBuilder::from(state.plan).filter(p)?.build()?,
                ..state
            }),
        }
    }

    /// OPTIONAL MATCH: a single step from a bound node without WHERE is an outer expansion;
    /// anything else is a left join of the rows so far with the pattern matched from them.
    fn lower_optional_match(&mut self, state: State, m: &MatchClause) -> Result<State, PlanError> {
        if m.where_.is_none()
            && m.pattern.len() == 1
            && m.pattern[0].element.chain.len() == 1
            && m.pattern[0].variable.is_none()
        {
            let part = &m.pattern[0];
            let (rel, end) = &part.element.chain[0];
            let start_bound =
                part.element.start.variable.as_ref().is_some_and(|v| {
                    matches!(state.scope.get(&v.name), Some(VarKind::Node { .. }))
                });
            let end_free = end
                .variable
                .as_ref()
                .is_none_or(|v| state.scope.get(&v.name).is_none());
            let rel_free = rel
                .variable
                .as_ref()
                .is_none_or(|v| state.scope.get(&v.name).is_none());
            if start_bound
                && end_free
                && rel_free
                && end.properties.is_none()
                && rel.properties.is_none()
                && rel.length.is_none()
                && part.element.start.properties.is_none()
            {
                let labels = self.resolve_labels(&state.scope, part)?;
                let from = part
                    .element
                    .start
                    .variable
                    .as_ref()
                    .expect("bound")
                    .name
                    .clone();
                let (state, _, _) = self.expand_step(state, part, &labels, 0, true, true, &from)?;
                return Ok(state);
            }
        }
        // Number the rows so far, match from them, and join the matches back on the number.
        let row = self.fresh("row");
        let numbered = LogicalPlanBuilder::from(state.plan.clone())
            .window(vec![row_number().alias(&row)])?
            .build()?;
        let base = State {
            plan: numbered.clone(),
            scope: state.scope.clone(),
            unit: state.unit,
        };
        let mut rels = Vec::new();
        let mut matched = base;
        for part in &m.pattern {
            matched = self.lower_part(matched, part, &mut rels)?;
        }
        matched = self.rel_uniqueness(matched, &rels)?;
        if let Some(w) = &m.where_ {
            matched = self.filter(matched, w)?;
        }
        // Right side: the row number and the newly bound columns only.
        let before: std::collections::HashSet<String> = numbered
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let right_row = format!("{row}#r");
        let mut right_exprs = vec![column(&row).alias(&right_row)];
        for f in matched.plan.schema().fields() {
            if !before.contains(f.name()) {
                right_exprs.push(column(f.name()));
            }
        }
        let right = LogicalPlanBuilder::from(matched.plan)
            .project(right_exprs)?
            .build()?;
        let joined = LogicalPlanBuilder::from(numbered)
            .join(
                right,
                JoinType::Left,
                (vec![row.clone()], vec![right_row.clone()]),
                None,
            )?
            .build()?;
        let keep: Vec<Expr> = joined
            .schema()
            .fields()
            .iter()
            .filter(|f| f.name() != &row && f.name() != &right_row)
            .map(|f| column(f.name()))
            .collect();
        let plan = LogicalPlanBuilder::from(joined).project(keep)?.build()?;
        Ok(State {
            plan,
            scope: matched.scope,
            unit: false,
        })
    }

    /// Resolves the label of every node and the type of every relationship in a chain.
    fn resolve_labels(&self, scope: &Scope, part: &PatternPart) -> Result<ChainLabels, PlanError> {
        let el = &part.element;
        if el.chain.len() > MAX_PATTERN_STEPS {
            return Err(self.err(
                part.span,
                format!("patterns are limited to {MAX_PATTERN_STEPS} steps"),
            ));
        }
        let nodes: Vec<&ast::NodePattern> = std::iter::once(&el.start)
            .chain(el.chain.iter().map(|(_, n)| n))
            .collect();
        let mut labels: Vec<Option<String>> = Vec::with_capacity(nodes.len());
        for n in &nodes {
            if n.labels.len() > 1 {
                return Err(self.err(n.span, "a node has at most one label in ContextDB"));
            }
            let bound = n.variable.as_ref().and_then(|v| match scope.get(&v.name) {
                Some(VarKind::Node { label, .. }) => Some(label.clone()),
                _ => None,
            });
            if let Some(v) = &n.variable
                && matches!(
                    scope.get(&v.name),
                    Some(VarKind::Rel { .. } | VarKind::Value)
                )
            {
                return Err(self.err(v.span, format!("type mismatch: `{}` is not a node", v.name)));
            }
            let written = n.labels.first().map(|l| l.name.clone());
            if let (Some(b), Some(w)) = (&bound, &written)
                && b != w
            {
                labels.push(Some(format!("{w}\u{0}conflict")));
                continue;
            }
            labels.push(written.or(bound));
        }
        let mut types: Vec<Option<String>> = Vec::with_capacity(el.chain.len());
        for (rel, _) in &el.chain {
            if rel.length.is_some() {
                return Err(self.err(
                    rel.span,
                    "variable-length relationships are not supported yet",
                ));
            }
            if rel.types.len() > 1 {
                return Err(self.err(
                    rel.span,
                    "relationship type alternatives are not supported yet",
                ));
            }
            if let Some(v) = &rel.variable
                && scope.get(&v.name).is_some()
            {
                return Err(self.err(v.span, format!("variable `{}` already declared", v.name)));
            }
            types.push(rel.types.first().map(|t| t.name.clone()));
        }
        // Propagate labels along known edge types until nothing changes.
        for _ in 0..=el.chain.len() {
            let mut changed = false;
            for (i, (rel, _)) in el.chain.iter().enumerate() {
                let edge = match &types[i] {
                    Some(t) => Some(self.source.edge_table(t).ok_or_else(|| {
                        self.err(rel.span, format!("unknown relationship type `{t}`"))
                    })?),
                    None => {
                        let (Some(l), Some(r)) = (&labels[i], &labels[i + 1]) else {
                            continue;
                        };
                        let candidates: Vec<EdgeTableInfo> = self
                            .source
                            .edge_tables()
                            .into_iter()
                            .filter(|e| {
                                endpoint_labels(e, rel.direction, Some(l), Some(r)).is_some()
                            })
                            .collect();
                        if candidates.len() != 1 {
                            return Err(self.err(
                                rel.span,
                                format!(
                                    "relationship without a type between {l} and {r} must name its type ({} candidates)",
                                    candidates.len()
                                ),
                            ));
                        }
                        types[i] = Some(candidates[0].rel_type.clone());
                        changed = true;
                        Some(candidates[0].clone())
                    }
                };
                let Some(edge) = edge else { continue };
                if let Some((l, r)) = endpoint_labels(
                    &edge,
                    rel.direction,
                    labels[i].as_deref(),
                    labels[i + 1].as_deref(),
                ) {
                    if labels[i].is_none() {
                        labels[i] = Some(l);
                        changed = true;
                    }
                    if labels[i + 1].is_none() {
                        labels[i + 1] = Some(r);
                        changed = true;
                    }
                } else {
                    // The written labels cannot be endpoints of this type: no rows can match.
                    return Ok(ChainLabels {
                        labels,
                        types,
                        empty: true,
                    });
                }
            }
            if !changed {
                break;
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            match &labels[i] {
                None => {
                    return Err(self.err(
                        n.span,
                        "a node without a label needs a labelled neighbour or a relationship type (label-less scans are not supported yet)",
                    ));
                }
                Some(l) if l.ends_with("\u{0}conflict") => {
                    return Ok(ChainLabels {
                        labels,
                        types,
                        empty: true,
                    });
                }
                Some(l) if self.source.node_table(l).is_none() => {
                    return Err(self.err(
                        n.labels.first().map(|l| l.span).unwrap_or(n.span),
                        format!("unknown node label `{l}`"),
                    ));
                }
                _ => {}
            }
        }
        Ok(ChainLabels {
            labels,
            types,
            empty: false,
        })
    }

    fn node_table(&self, label: &str) -> Result<NodeTableInfo, PlanError> {
        self.source
            .node_table(label)
            .ok_or_else(|| PlanError::new(format!("unknown node label `{label}`")))
    }

    /// Plans one pattern part onto `state`.
    fn lower_part(
        &mut self,
        state: State,
        part: &PatternPart,
        rels: &mut Vec<(String, String)>,
    ) -> Result<State, PlanError> {
        if part.kind != ast::PatternKind::Plain {
            return Err(self.err(part.span, "shortestPath is not supported yet"));
        }
        if let Some(v) = &part.variable {
            return Err(self.err(v.span, "named paths are not supported yet"));
        }
        let labels = self.resolve_labels(&state.scope, part)?;
        let el = &part.element;
        let nodes: Vec<&ast::NodePattern> = std::iter::once(&el.start)
            .chain(el.chain.iter().map(|(_, n)| n))
            .collect();
        // Start where the state already binds a node, else at the first node with properties.
        let bound_at = nodes.iter().position(|n| {
            n.variable
                .as_ref()
                .is_some_and(|v| state.scope.get(&v.name).is_some())
        });
        let start = bound_at
            .or_else(|| nodes.iter().position(|n| n.properties.is_some()))
            .unwrap_or(0);
        let start_var = match &nodes[start].variable {
            Some(v) => v.name.clone(),
            None => self.fresh("n"),
        };
        let mut state = if bound_at.is_some() {
            state
        } else {
            let node = nodes[start];
            let var = start_var.clone();
            let label = labels.labels[start].clone().expect("resolved");
            let table = self.node_table(label.trim_end_matches("\u{0}conflict"))?;
            let scan = LogicalPlan::Extension(Extension {
                node: Arc::new(NodeScan::try_new(&var, &table)?),
            });
            let mut scope = Scope::default();
            scope.bind(
                &var,
                VarKind::Node {
                    label: table.label.clone(),
                    primary_key: table.primary_key.clone(),
                },
                node.variable.is_none(),
            );
            let mut scanned = State {
                plan: scan,
                scope,
                unit: false,
            };
            scanned = self.node_properties(scanned, &var, node)?;
            self.cross(state, scanned)?
        };
        if labels.empty {
            let plan = LogicalPlanBuilder::from(state.plan)
                .filter(lit(false))?
                .build()?;
            state.plan = plan;
        }
        if bound_at.is_some() {
            let node = nodes[start];
            let var = node
                .variable
                .as_ref()
                .map(|v| v.name.clone())
                .expect("bound");
            if let (Some(VarKind::Node { label, .. }), Some(written)) =
                (state.scope.get(&var), node.labels.first())
                && label != &written.name
            {
                state.plan = LogicalPlanBuilder::from(state.plan)
                    .filter(lit(false))?
                    .build()?;
            }
            state = self.node_properties(state, &var, node)?;
        }
        // Walk right from the start, then left.
        let mut from = start_var.clone();
        for step in start..el.chain.len() {
            let (next, to, rel) =
                self.expand_step(state, part, &labels, step, true, false, &from)?;
            (state, from) = (next, to);
            rels.push(rel);
        }
        let mut from = start_var;
        for step in (0..start).rev() {
            let (next, to, rel) =
                self.expand_step(state, part, &labels, step, false, false, &from)?;
            (state, from) = (next, to);
            rels.push(rel);
        }
        Ok(state)
    }

    /// Cross product of the rows so far with an independent pattern (the unit plan vanishes).
    fn cross(&mut self, left: State, right: State) -> Result<State, PlanError> {
        if left.unit {
            return Ok(right);
        }
        let plan = LogicalPlanBuilder::from(left.plan)
            .cross_join(right.plan)?
            .build()?;
        let mut scope = left.scope;
        for (name, kind) in right.scope.all() {
            let hidden = !right.scope.visible().any(|(n, _)| n == name);
            scope.bind(name, kind.clone(), hidden);
        }
        Ok(State {
            plan,
            scope,
            unit: false,
        })
    }

    /// Filters on a node pattern's inline properties `{k: v}`.
    fn node_properties(
        &mut self,
        state: State,
        var: &str,
        node: &ast::NodePattern,
    ) -> Result<State, PlanError> {
        self.inline_properties(state, var, node.properties.as_ref())
    }

    fn inline_properties(
        &mut self,
        state: State,
        var: &str,
        properties: Option<&ast::Expr>,
    ) -> Result<State, PlanError> {
        let Some(props) = properties else {
            return Ok(state);
        };
        let ExprKind::Map(entries) = &props.kind else {
            return Err(self.err(props.span, "pattern properties must be a map literal"));
        };
        let mut predicate: Option<Expr> = None;
        for (key, value) in entries {
            let lhs = column(&column_name(var, key));
            let lhs = if state
                .plan
                .schema()
                .index_of_column_by_name(None, &column_name(var, key))
                .is_some()
            {
                lhs
            } else {
                lit(ScalarValue::Null)
            };
            let rhs = self.convert(&state, value)?;
            let eq = lhs.eq(rhs);
            predicate = Some(match predicate {
                Some(p) => p.and(eq),
                None => eq,
            });
        }
        match predicate {
            None => Ok(state),
            Some(p) => Ok(State {
                plan: LogicalPlanBuilder::from(state.plan).filter(p)?.build()?,
                ..state
            }),
        }
    }
}

/// Labels and types of one chain after resolution.
struct ChainLabels {
    labels: Vec<Option<String>>,
    types: Vec<Option<String>>,
    /// The written labels contradict the schema: the pattern matches nothing.
    empty: bool,
}

/// The (left, right) labels a step of `edge` connects for the written direction, if the
/// known labels allow it.
fn endpoint_labels(
    edge: &EdgeTableInfo,
    direction: Direction,
    left: Option<&str>,
    right: Option<&str>,
) -> Option<(String, String)> {
    let fits = |want: Option<&str>, have: &str| want.is_none_or(|w| w == have);
    let forward = (edge.from.clone(), edge.to.clone());
    let backward = (edge.to.clone(), edge.from.clone());
    let candidates = match direction {
        Direction::Outgoing => vec![forward],
        Direction::Incoming => vec![backward],
        Direction::Both => vec![forward, backward],
    };
    candidates
        .into_iter()
        .find(|(l, r)| fits(left, l) && fits(right, r))
}

impl Lowering<'_> {
    /// Expands step `step` of the chain from `from_var`. `rightwards`: from node `step` to
    /// `step + 1`; otherwise from `step + 1` back to `step`. Returns the new state, the
    /// variable of the node reached and the (variable, type) of the relationship.
    #[allow(clippy::too_many_arguments)]
    fn expand_step(
        &mut self,
        state: State,
        part: &PatternPart,
        labels: &ChainLabels,
        step: usize,
        rightwards: bool,
        optional: bool,
        from_var: &str,
    ) -> Result<(State, String, (String, String)), PlanError> {
        let el = &part.element;
        let nodes: Vec<&ast::NodePattern> = std::iter::once(&el.start)
            .chain(el.chain.iter().map(|(_, n)| n))
            .collect();
        let (rel, _) = &el.chain[step];
        let (from_i, to_i) = if rightwards {
            (step, step + 1)
        } else {
            (step + 1, step)
        };
        let rel_type = labels.types[step].clone().expect("resolved");
        let edge = self
            .source
            .edge_table(&rel_type)
            .ok_or_else(|| self.err(rel.span, format!("unknown relationship type `{rel_type}`")))?;
        let from_label = match state.scope.get(from_var) {
            Some(VarKind::Node { label, .. }) => label.clone(),
            _ => return Err(self.err(nodes[from_i].span, "expansion must start at a node")),
        };
        // Direction relative to the expansion, from the written arrow.
        let written_out = match (rel.direction, rightwards) {
            (Direction::Outgoing, true) | (Direction::Incoming, false) => Some(true),
            (Direction::Outgoing, false) | (Direction::Incoming, true) => Some(false),
            (Direction::Both, _) => None,
        };
        let (direction, to_label) = match written_out {
            Some(true) => (ExpandDirection::Out, edge.to.clone()),
            Some(false) => (ExpandDirection::In, edge.from.clone()),
            None if edge.from == edge.to => (ExpandDirection::Both, edge.to.clone()),
            None if from_label == edge.from => (ExpandDirection::Out, edge.to.clone()),
            None => (ExpandDirection::In, edge.from.clone()),
        };
        let to_table = self.node_table(&to_label)?;
        let rel_var = match &rel.variable {
            Some(v) => v.name.clone(),
            None => self.fresh("r"),
        };
        let to_node = nodes[to_i];
        let to_bound = to_node
            .variable
            .as_ref()
            .filter(|v| state.scope.get(&v.name).is_some())
            .map(|v| v.name.clone());
        let to_var = match (&to_bound, &to_node.variable) {
            (Some(_), _) | (None, None) => self.fresh("n"),
            (None, Some(v)) => v.name.clone(),
        };
        let expand = GraphExpand::try_new(
            state.plan, from_var, &edge, direction, &rel_var, &to_var, &to_table, optional,
        )?;
        let mut scope = state.scope;
        scope.bind(
            &rel_var,
            VarKind::Rel {
                rel_type: rel_type.clone(),
            },
            rel.variable.is_none(),
        );
        scope.bind(
            &to_var,
            VarKind::Node {
                label: to_table.label.clone(),
                primary_key: to_table.primary_key.clone(),
            },
            to_node.variable.is_none() || to_bound.is_some(),
        );
        let mut state = State {
            plan: LogicalPlan::Extension(Extension {
                node: Arc::new(expand),
            }),
            scope,
            unit: false,
        };
        let reached = to_bound.clone().unwrap_or_else(|| to_var.clone());
        if let Some(bound) = to_bound {
            // The pattern closes on a node bound before: keep rows that reach that very node.
            let same = column(&column_name(&to_var, ORD)).eq(column(&column_name(&bound, ORD)));
            state.plan = LogicalPlanBuilder::from(state.plan).filter(same)?.build()?;
            let mut s = self.node_properties(state, &bound, to_node)?;
            if let Some(written) = to_node.labels.first()
                && written.name != to_table.label
            {
                s.plan = LogicalPlanBuilder::from(s.plan)
                    .filter(lit(false))?
                    .build()?;
            }
            state = s;
        } else {
            state = self.node_properties(state, &to_var, to_node)?;
        }
        state = self.inline_properties(state, &rel_var, rel.properties.as_ref())?;
        Ok((state, reached, (rel_var, rel_type)))
    }
}
