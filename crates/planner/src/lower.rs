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
use datafusion::functions_nested::expr_fn as nested;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, LogicalPlanBuilder, UserDefinedLogicalNode, lit, not,
};

use crate::PlanError;
use crate::expr::{ExprContext, Params, is_aggregate};
use crate::lower_paths::{PathFields, StepCondition, StepList, endpoint_labels, step_conditions};
use crate::lower_write::{Pending, WriteBlock};
use crate::nodes::{ExpandDirection, GraphExpand, LABEL, NodeScan, ORD, column_name};
use crate::scope::{Scope, VarKind};
use crate::source::{EdgeTableInfo, GraphSource, NodeTableInfo, SourceRef};
use crate::var_length::{
    PathLimits, StepFilter, TrailShape, VarLengthExpand, Walk, ordinals_column, rel_struct_fields,
};

/// The most steps one pattern may have (a named limit on planning work).
pub const MAX_PATTERN_STEPS: usize = 64;

pub(crate) fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Every column of `plan`, to project them and more.
pub(crate) fn all_columns(plan: &LogicalPlan) -> Vec<Expr> {
    plan.schema()
        .fields()
        .iter()
        .map(|f| column(f.name()))
        .collect()
}

/// A lowered query: a read-only plan, or the write blocks of a writing query and what it
/// returns.
#[derive(Debug)]
pub struct Lowered {
    /// The query's plan; for a writing query the rows of its first write block (EXPLAIN).
    pub plan: LogicalPlan,
    /// The write block of a writing query. A query has one per part: lowering stops after a
    /// block that more clauses follow (`rest`), and the block after it reads its rows.
    pub block: Option<WriteBlock>,
    /// For a writing query that goes on to RETURN: its rows, over the last block's rows.
    pub returning: Option<LogicalPlan>,
    /// The clauses after the write block, which read the graph with the block's writes:
    /// lowered by [`Lowering::resume`] over a source that shows them, once the block ran.
    pub rest: Option<Rest>,
}

/// Where lowering stopped after a write block: the clause to go on at and the rows so far
/// (the block's output). Later clauses must see the block's writes (openCypher: a MATCH
/// after a CREATE finds what it created), so they are lowered against the graph as the
/// block left it, not the snapshot the statement began with.
#[derive(Debug)]
pub struct Rest {
    clause: usize,
    state: State,
    counter: usize,
    anonymous: std::collections::HashSet<String>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) plan: LogicalPlan,
    pub(crate) scope: Scope,
    /// The plan is the one-row start of a query (nothing read yet).
    pub(crate) unit: bool,
}

pub struct Lowering<'a> {
    pub(crate) source: &'a Arc<dyn GraphSource>,
    pub(crate) params: &'a Params,
    pub(crate) text: &'a str,
    counter: usize,
    /// `var.property = constant` conjuncts of the WHERE of the MATCH being lowered: a start
    /// node may be found through them as through inline properties.
    where_equalities: Vec<(String, String, ast::Expr)>,
    /// The names given to anonymous pattern elements (hidden from RETURN *).
    anonymous: std::collections::HashSet<String>,
    /// While lowering a MATCH a second time: the variable its pattern must start at.
    forced_start: Option<String>,
    /// A MATCH right before a VECTOR SIMILAR TO lowered again to start at the ranked
    /// variable (its name and plan), for the search to run ANN-first through.
    pub(crate) alternate: Option<(String, LogicalPlan)>,
    /// What variable-length walks may do (the session's `contextql.*` settings).
    pub(crate) limits: PathLimits,
    /// While lowering a named path: the struct fields of its nodes and relationships.
    pub(crate) path: Option<PathFields>,
    /// While lowering `shortestPath` (false) or `allShortestPaths` (true).
    shortest: Option<bool>,
    /// The `all(..)`/`none(..)` conditions of the MATCH's WHERE on its walks' steps.
    pub(crate) step_conditions: Vec<StepCondition>,
}

impl<'a> Lowering<'a> {
    pub fn new(source: &'a Arc<dyn GraphSource>, params: &'a Params, text: &'a str) -> Self {
        Lowering {
            source,
            params,
            text,
            counter: 0,
            where_equalities: Vec::new(),
            anonymous: Default::default(),
            forced_start: None,
            alternate: None,
            limits: PathLimits::default(),
            path: None,
            shortest: None,
            step_conditions: Vec::new(),
        }
    }

    /// Lowering with the session's path limits (`contextql.max_hops`, ...).
    pub fn with_limits(mut self, limits: PathLimits) -> Self {
        self.limits = limits;
        self
    }

    pub(crate) fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("_{what}{}", self.counter)
    }

    pub(crate) fn err(&self, span: ast::Span, message: impl Into<String>) -> PlanError {
        PlanError::at(self.text, span, message)
    }

    pub fn lower(&mut self, query: &Query) -> Result<Lowered, PlanError> {
        let mut parts = Vec::new();
        for part in &query.parts {
            parts.push(self.lower_single(part, None)?);
        }
        let mut parts = parts.into_iter();
        let first = parts.next().ok_or_else(|| PlanError::new("empty query"))?;
        if query.parts.len() == 1 {
            return Ok(first);
        }
        if first.block.is_some() || first.rest.is_some() {
            return Err(PlanError::new("UNION of writing queries is not supported"));
        }
        let mut builder = LogicalPlanBuilder::from(first.plan);
        for (all, part) in query.union_all.iter().zip(parts) {
            if part.block.is_some() {
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
            block: None,
            returning: None,
            rest: None,
        })
    }

    /// Lowers the clauses of a writing query after the write block that `rest` ends, against
    /// this lowering's source (the graph with the statement's writes so far).
    pub fn resume(&mut self, query: &Query, rest: Rest) -> Result<Lowered, PlanError> {
        let [part] = query.parts.as_slice() else {
            return Err(PlanError::new("UNION of writing queries is not supported"));
        };
        self.counter = rest.counter;
        self.anonymous = rest.anonymous.clone();
        self.lower_single(part, Some(rest))
    }

    /// Lowers `query` from its first clause, or from where `rest` stopped. Lowering stops
    /// after each write block that more clauses follow (see [`Rest`]).
    fn lower_single(
        &mut self,
        query: &SingleQuery,
        rest: Option<Rest>,
    ) -> Result<Lowered, PlanError> {
        let resumed = rest.is_some();
        let (first, mut state) = match rest {
            Some(rest) => (rest.clause, rest.state),
            None => (
                0,
                State {
                    plan: LogicalPlanBuilder::empty(true).build()?,
                    scope: Scope::default(),
                    unit: true,
                },
            ),
        };
        let mut pending = Pending::default();
        let mut returned = false;
        // A resumed query follows a write block: it may end without RETURN.
        let mut last_write = resumed;
        for (i, clause) in query.clauses.iter().enumerate().skip(first) {
            if returned {
                return Err(PlanError::new("RETURN must be the last clause"));
            }
            let is_write = matches!(
                clause,
                Clause::Create(_)
                    | Clause::Set(_)
                    | Clause::Delete(_)
                    | Clause::Merge(_)
                    | Clause::Remove(_)
            );
            // A write block ends at the first reading clause, and before a MERGE (which
            // matches, so it must see the rows the writes before it produced). What follows
            // is lowered once the block ran, against the graph with its writes.
            if !pending.writes.is_empty() && (!is_write || matches!(clause, Clause::Merge(_))) {
                let (state, block) = self.end_block(state, &mut pending)?;
                return Ok(Lowered {
                    plan: block.plan.clone(),
                    block: Some(block),
                    returning: None,
                    rest: Some(Rest {
                        clause: i,
                        state,
                        counter: self.counter,
                        anonymous: self.anonymous.clone(),
                    }),
                });
            }
            last_write = is_write;
            match clause {
                Clause::Match(m) => {
                    let (unit, counter) = (state.unit, self.counter);
                    state = self.lower_match(state, m)?;
                    if let (true, Some(Clause::VectorSimilar(v))) = (unit, query.clauses.get(i + 1))
                    {
                        self.alternate = self.started_at_ranked(&state, m, v, counter);
                    }
                }
                Clause::Unwind(u) => state = self.lower_unwind(state, u)?,
                Clause::With(p) => state = self.lower_projection(state, p, false)?,
                Clause::Return(p) => {
                    state = self.lower_projection(state, p, true)?;
                    returned = true;
                }
                Clause::Create(c) => self.lower_create(&state, c, &mut pending)?,
                Clause::Merge(m) => state = self.lower_merge(state, m, &mut pending)?,
                Clause::Set(s) => self.lower_set(&state, s, &mut pending)?,
                Clause::Remove(r) => self.lower_remove(&state, r, &mut pending)?,
                Clause::Delete(d) => self.lower_delete(&state, d, &mut pending)?,
                Clause::VectorSimilar(v) => state = self.lower_vector_similar(state, v)?,
            }
        }
        let mut block = None;
        if !pending.writes.is_empty() {
            let (rows, written) = self.end_block(state, &mut pending)?;
            state = rows;
            block = Some(written);
        }
        if block.is_none() && !resumed {
            if !returned {
                return Err(PlanError::new(
                    "query cannot conclude with MATCH, UNWIND or WITH (must be RETURN or an update clause)",
                ));
            }
            return Ok(Lowered {
                plan: state.plan,
                block,
                returning: None,
                rest: None,
            });
        }
        if !returned && !last_write {
            return Err(PlanError::new(
                "query cannot conclude with WITH or UNWIND (must be RETURN or an update clause)",
            ));
        }
        Ok(Lowered {
            plan: block
                .as_ref()
                .map_or_else(|| state.plan.clone(), |b| b.plan.clone()),
            block,
            returning: returned.then_some(state.plan),
            rest: None,
        })
    }

    // ----------------------------------------------------------------------------------
    // MATCH
    // ----------------------------------------------------------------------------------

    fn lower_match(&mut self, state: State, m: &MatchClause) -> Result<State, PlanError> {
        if m.optional {
            return self.lower_optional_match(state, m);
        }
        let mut state = state;
        let named = self.name_anonymous(m);
        let m = &named;
        let mut rels: Vec<BoundRel> = Vec::new();
        self.where_equalities = m.where_.as_ref().map(equalities).unwrap_or_default();
        self.step_conditions = m.where_.as_ref().map(step_conditions).unwrap_or_default();
        let lowered = m
            .pattern
            .iter()
            .try_fold(state, |state, part| self.lower_part(state, part, &mut rels));
        self.where_equalities.clear();
        self.step_conditions.clear();
        state = self.rel_uniqueness(lowered?, &rels)?;
        if let Some(w) = &m.where_ {
            state = self.filter(state, w)?;
        }
        Ok(state)
    }

    /// `m` with a fresh name for each anonymous node and relationship, in pattern order: two
    /// lowerings of the same MATCH from the same counter name its columns alike, whichever
    /// node each starts at.
    fn name_anonymous(&mut self, m: &MatchClause) -> MatchClause {
        let mut m = m.clone();
        for part in &mut m.pattern {
            let el = &mut part.element;
            let name = |this: &mut Self, var: &mut Option<ast::Ident>, span, what| {
                if var.is_none() {
                    let name = this.fresh(what);
                    this.anonymous.insert(name.clone());
                    *var = Some(ast::Ident { name, span });
                }
            };
            name(self, &mut el.start.variable, el.start.span, "n");
            for (rel, node) in &mut el.chain {
                name(self, &mut rel.variable, rel.span, "r");
                name(self, &mut node.variable, node.span, "n");
            }
        }
        m
    }

    /// Whether a pattern element's variable is internal: none written, or named by
    /// [`Self::name_anonymous`].
    fn hidden(&self, var: &Option<ast::Ident>) -> bool {
        var.as_ref()
            .is_none_or(|v| self.anonymous.contains(&v.name))
    }

    /// The MATCH `m` (the query's first clause) lowered again to start at the node the VECTOR
    /// SIMILAR TO after it ranks, when `lowered` starts elsewhere: then the search can go
    /// ANN-first, the nodes the index finds run through the pattern from that end (see
    /// `crate::vector`). Only for one pattern without a repeated variable, whose two plans
    /// then bind the same columns; None otherwise, or when the second lowering fails (the
    /// first stands on its own).
    fn started_at_ranked(
        &mut self,
        lowered: &State,
        m: &MatchClause,
        v: &ast::VectorSimilar,
        counter: usize,
    ) -> Option<(String, LogicalPlan)> {
        let [part] = m.pattern.as_slice() else {
            return None;
        };
        let var = self.vector_target(lowered, v).ok()?.var;
        let el = &part.element;
        let mut names: Vec<&str> = std::iter::once(&el.start.variable)
            .chain(
                el.chain
                    .iter()
                    .flat_map(|(r, n)| [&r.variable, &n.variable]),
            )
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        let written = names.len();
        names.sort_unstable();
        names.dedup();
        if m.optional || names.len() < written || scans(&lowered.plan, &var) {
            return None;
        }
        let after = self.counter;
        self.counter = counter;
        self.forced_start = Some(var.clone());
        let unit = State {
            plan: LogicalPlanBuilder::empty(true).build().ok()?,
            scope: Scope::default(),
            unit: true,
        };
        let again = self.lower_match(unit, m);
        self.forced_start = None;
        self.counter = self.counter.max(after);
        let again = again.ok()?;
        scans(&again.plan, &var).then_some((var, again.plan))
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
        // Each pattern predicate becomes a column saying whether the row's pattern matches.
        let mut found: Vec<(ast::Span, ast::PatternElement)> = Vec::new();
        crate::expr::walk(predicate, &mut |e| {
            if let ExprKind::PatternPredicate(element) = &e.kind {
                found.push((e.span, (**element).clone()));
            }
        });
        let mut state = state;
        let mut patterns = Vec::with_capacity(found.len());
        for (span, element) in found {
            let name = self.fresh("exists");
            state = self.exists_column(state, &name, span, element)?;
            patterns.push((span, name));
        }
        let e = self.context(&state, &patterns).convert(predicate)?;
        let plan = LogicalPlanBuilder::from(state.plan).filter(e)?.build()?;
        Ok(State { plan, ..state })
    }

    /// `state` with a boolean column `name`: whether the pattern `element` (over the
    /// variables bound so far) has a match from the row. The rows are numbered, the pattern
    /// is matched from them as OPTIONAL MATCH does, and the numbers it matched from are joined
    /// back.
    fn exists_column(
        &mut self,
        state: State,
        name: &str,
        span: ast::Span,
        element: ast::PatternElement,
    ) -> Result<State, PlanError> {
        let row = self.fresh("row");
        let numbered = number_rows(state.plan.clone(), &row)?;
        let base = State {
            plan: numbered.clone(),
            scope: state.scope.clone(),
            unit: false,
        };
        let part = PatternPart {
            variable: None,
            kind: ast::PatternKind::Plain,
            element,
            span,
        };
        let mut rels = Vec::new();
        let matched = self.lower_part(base, &part, &mut rels)?;
        let matched = self.rel_uniqueness(matched, &rels)?;
        let right_row = format!("{row}#r");
        let right = LogicalPlanBuilder::from(matched.plan)
            .aggregate(vec![column(&row).alias(&right_row)], Vec::<Expr>::new())?
            .build()?;
        let joined = join_back(numbered, right, &row, &right_row)?;
        let mut keep: Vec<Expr> = state
            .plan
            .schema()
            .fields()
            .iter()
            .map(|f| column(f.name()))
            .collect();
        keep.push(column(&right_row).is_not_null().alias(name));
        let plan = LogicalPlanBuilder::from(joined).project(keep)?.build()?;
        let mut scope = state.scope;
        scope.bind(name, VarKind::Value, true);
        Ok(State {
            plan,
            scope,
            unit: false,
        })
    }

    pub(crate) fn convert(&self, state: &State, e: &ast::Expr) -> Result<Expr, PlanError> {
        self.context(state, &[]).convert(e)
    }

    /// Expressions over `state`'s rows, with `patterns` the columns that stand for its
    /// pattern predicates (see `filter`).
    pub(crate) fn context<'s>(
        &'s self,
        state: &'s State,
        patterns: &'s [(ast::Span, String)],
    ) -> ExprContext<'s> {
        ExprContext {
            scope: &state.scope,
            schema: state.plan.schema(),
            params: self.params,
            text: self.text,
            aggregates: None,
            depth: 0,
            patterns,
        }
    }

    fn rel_uniqueness(&mut self, state: State, rels: &[BoundRel]) -> Result<State, PlanError> {
        let mut predicate: Option<Expr> = None;
        for (i, (a, ta, a_list)) in rels.iter().enumerate() {
            for (b, tb, b_list) in &rels[i + 1..] {
                // Relationship ordinals are global, so comparing them is enough; a
                // variable-length relationship shares none of its list with another.
                if ta.iter().any(|t| tb.contains(t)) {
                    let ords = |var: &str, list: bool| {
                        column(&if list {
                            ordinals_column(var)
                        } else {
                            column_name(var, ORD)
                        })
                    };
                    let (x, y) = (ords(a, *a_list), ords(b, *b_list));
                    let distinct = match (a_list, b_list) {
                        (false, false) => x.not_eq(y),
                        (true, false) => not(nested::array_has(x, y)),
                        (false, true) => not(nested::array_has(y, x)),
                        (true, true) => not(nested::array_has_any(x, y)),
                    };
                    predicate = Some(match predicate {
                        Some(p) => p.and(distinct),
                        None => distinct,
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
    pub(crate) fn lower_optional_match(
        &mut self,
        state: State,
        m: &MatchClause,
    ) -> Result<State, PlanError> {
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
                && part.element.start.labels.is_empty()
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
        let numbered = number_rows(state.plan.clone(), &row)?;
        // Never the unit plan: the row numbers must survive a pattern with no bound node.
        let base = State {
            plan: numbered.clone(),
            scope: state.scope.clone(),
            unit: false,
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
        let joined = join_back(numbered, right, &row, &right_row)?;
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

    /// Resolves the candidate labels of every node and types of every relationship in a
    /// chain: written labels and types, labels of variables bound before, all labels and types
    /// otherwise, then narrowed along the schema's edge endpoints until nothing changes. An
    /// empty candidate set matches nothing (openCypher: an unknown label is not an error).
    pub(crate) fn resolve_labels(
        &self,
        scope: &Scope,
        part: &PatternPart,
    ) -> Result<ChainLabels, PlanError> {
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
        let all_labels: Vec<String> = self
            .source
            .node_tables()
            .into_iter()
            .map(|t| t.label)
            .collect();
        let mut labels: Vec<Vec<String>> = Vec::with_capacity(nodes.len());
        for n in &nodes {
            if n.labels.len() > 1 {
                return Err(self.err(
                    n.labels[1].span,
                    "a node has at most one label in ContextDB",
                ));
            }
            let mut candidates = match n
                .variable
                .as_ref()
                .and_then(|v| scope.get(&v.name).map(|k| (v, k)))
            {
                Some((_, VarKind::Node { labels, .. })) => labels.clone(),
                Some((v, _)) => {
                    return Err(
                        self.err(v.span, format!("type mismatch: `{}` is not a node", v.name))
                    );
                }
                None => all_labels.clone(),
            };
            if let Some(written) = n.labels.first() {
                candidates.retain(|l| l == &written.name);
            }
            labels.push(candidates);
        }
        let all_types = self.source.edge_tables();
        let mut types: Vec<Vec<EdgeTableInfo>> = Vec::with_capacity(el.chain.len());
        for (rel, _) in &el.chain {
            // A relationship bound before is matched again: only its own type can match.
            let bound: Option<&Vec<String>> = match &rel.variable {
                Some(v) => match scope.get(&v.name) {
                    None => None,
                    Some(VarKind::Rel { types }) if rel.length.is_none() => Some(types),
                    Some(VarKind::Rel { .. }) => {
                        return Err(self.err(
                            v.span,
                            format!(
                                "`{}` is one relationship; a variable-length pattern binds a list",
                                v.name
                            ),
                        ));
                    }
                    Some(_) => {
                        return Err(
                            self.err(v.span, format!("variable `{}` already declared", v.name))
                        );
                    }
                },
                None => None,
            };
            types.push(
                all_types
                    .iter()
                    .filter(|t| {
                        rel.types.is_empty() || rel.types.iter().any(|w| w.name == t.rel_type)
                    })
                    .filter(|t| bound.is_none_or(|b| b.contains(&t.table)))
                    .cloned()
                    .collect(),
            );
        }
        // Narrow along the endpoints; each pass only removes, so it ends within a few passes.
        for _ in 0..=2 * el.chain.len() {
            let mut changed = false;
            for (i, (rel, _)) in el.chain.iter().enumerate() {
                let (left, right) = (labels[i].clone(), labels[i + 1].clone());
                let before = (types[i].len(), left.len(), right.len());
                types[i].retain(|t| {
                    left.iter()
                        .any(|l| right.iter().any(|r| fits(t, rel.direction, l, r)))
                });
                let kept = &types[i];
                labels[i].retain(|l| {
                    kept.iter()
                        .any(|t| right.iter().any(|r| fits(t, rel.direction, l, r)))
                });
                labels[i + 1].retain(|r| {
                    kept.iter()
                        .any(|t| left.iter().any(|l| fits(t, rel.direction, l, r)))
                });
                changed |= before != (types[i].len(), labels[i].len(), labels[i + 1].len());
            }
            if !changed {
                break;
            }
        }
        Ok(ChainLabels { labels, types })
    }

    pub(crate) fn node_tables(&self, labels: &[String]) -> Vec<NodeTableInfo> {
        labels
            .iter()
            .filter_map(|l| self.source.node_table(l))
            .collect()
    }

    fn node_kind(&self, labels: &[String]) -> VarKind {
        let tables = self.node_tables(labels);
        let first = tables.first().map(|t| t.primary_key.clone());
        let shared = first.filter(|pk| tables.iter().all(|t| &t.primary_key == pk));
        VarKind::Node {
            labels: labels.to_vec(),
            primary_key: shared,
        }
    }

    /// Plans one pattern part onto `state`.
    fn lower_part(
        &mut self,
        state: State,
        part: &PatternPart,
        rels: &mut Vec<BoundRel>,
    ) -> Result<State, PlanError> {
        let shortest = match part.kind {
            ast::PatternKind::Plain => None,
            kind => {
                let chain = &part.element.chain;
                if chain.len() != 1 {
                    return Err(self.err(
                        part.span,
                        "shortestPath and allShortestPaths take a pattern of one relationship",
                    ));
                }
                if let Some((Some(min), _)) = chain[0].0.length
                    && min > 1
                {
                    return Err(self.err(
                        chain[0].0.span,
                        "a shortest path has a minimum length of 0 or 1",
                    ));
                }
                Some(kind == ast::PatternKind::AllShortestPaths)
            }
        };
        if let Some(v) = &part.variable
            && state.scope.get(&v.name).is_some()
        {
            return Err(self.err(v.span, format!("variable `{}` already declared", v.name)));
        }
        let el = &part.element;
        let labels = self.resolve_labels(&state.scope, part)?;
        self.path = part
            .variable
            .as_ref()
            .map(|_| self.path_fields(&labels, part));
        let nodes: Vec<&ast::NodePattern> = std::iter::once(&el.start)
            .chain(el.chain.iter().map(|(_, n)| n))
            .collect();
        // Start where the state already binds a node, else at the first node with properties
        // or a label.
        let bound_at = nodes.iter().position(|n| {
            n.variable
                .as_ref()
                .is_some_and(|v| state.scope.get(&v.name).is_some())
        });
        let forced = self.forced_start.as_ref().and_then(|var| {
            nodes
                .iter()
                .position(|n| n.variable.as_ref().is_some_and(|v| &v.name == var))
        });
        let start = bound_at
            .or(forced)
            .or_else(|| {
                nodes
                    .iter()
                    .position(|n| n.properties.is_some() || self.where_equality(n).is_some())
            })
            .or_else(|| nodes.iter().position(|n| !n.labels.is_empty()))
            .unwrap_or(0);
        let start_var = match &nodes[start].variable {
            Some(v) => v.name.clone(),
            None => self.fresh("n"),
        };
        let mut state = if bound_at.is_some() {
            // Narrow a bound variable to the labels this pattern allows.
            let allowed = &labels.labels[start];
            let bound_labels = match state.scope.get(&start_var) {
                Some(VarKind::Node { labels, .. }) => labels.clone(),
                _ => vec![],
            };
            if allowed.len() < bound_labels.len() {
                let list: Vec<Expr> = allowed.iter().map(|l| lit(l.clone())).collect();
                let keep = column(&column_name(&start_var, LABEL)).in_list(list, false);
                let plan = LogicalPlanBuilder::from(state.plan).filter(keep)?.build()?;
                State { plan, ..state }
            } else {
                state
            }
        } else {
            self.scan_node(state, &start_var, &labels.labels[start], nodes[start])?
        };
        state = self.node_properties(state, &start_var, nodes[start])?;
        // A shortest path searches between two nodes: an end found by its properties is
        // looked up first, and the search runs between the two; an end with no properties
        // is every node of its labels the one search from the start reaches.
        if shortest.is_some() {
            let end = 1 - start;
            if let Some(v) = &nodes[end].variable
                && state.scope.get(&v.name).is_none()
                && (nodes[end].properties.is_some() || self.where_equality(nodes[end]).is_some())
            {
                state = self.scan_node(state, &v.name, &labels.labels[end], nodes[end])?;
                state = self.node_properties(state, &v.name, nodes[end])?;
            }
        }
        self.shortest = shortest;
        // Walk right from the start, then left; note each position's node and relationship
        // for a named path.
        let mut node_vars = vec![String::new(); nodes.len()];
        let mut rel_vars: Vec<Option<BoundRel>> = vec![None; el.chain.len()];
        node_vars[start] = start_var.clone();
        let mut from = start_var.clone();
        for step in start..el.chain.len() {
            let (next, to, rel) =
                self.expand_step(state, part, &labels, step, true, false, &from)?;
            (state, from) = (next, to);
            node_vars[step + 1] = from.clone();
            rel_vars[step] = Some(rel.clone());
            rels.push(rel);
        }
        let mut from = start_var;
        for step in (0..start).rev() {
            let (next, to, rel) =
                self.expand_step(state, part, &labels, step, false, false, &from)?;
            (state, from) = (next, to);
            node_vars[step] = from.clone();
            rel_vars[step] = Some(rel.clone());
            rels.push(rel);
        }
        self.shortest = None;
        match (&part.variable, self.path.take()) {
            (Some(var), Some(fields)) => {
                let steps: Vec<(BoundRel, String)> = rel_vars
                    .into_iter()
                    .zip(&node_vars[1..])
                    .map(|(rel, node)| (rel.expect("every step expanded"), node.clone()))
                    .collect();
                self.bind_path(state, &var.name, &node_vars[0], &steps, &fields)
            }
            _ => Ok(state),
        }
    }

    /// `state` crossed with every node of `labels` (those an index finds by the node's inline
    /// properties or WHERE equalities, if any), bound to `var`.
    fn scan_node(
        &mut self,
        state: State,
        var: &str,
        labels: &[String],
        node: &ast::NodePattern,
    ) -> Result<State, PlanError> {
        let tables = self.node_tables(labels);
        let mut scan = NodeScan::try_new(SourceRef(self.source.clone()), var, &tables)?;
        scan.lookup = self.scan_lookup(node);
        let scan = LogicalPlan::Extension(Extension {
            node: Arc::new(scan),
        });
        let mut scope = Scope::default();
        scope.bind(var, self.node_kind(labels), self.hidden(&node.variable));
        let scanned = State {
            plan: scan,
            scope,
            unit: false,
        };
        self.cross(state, scanned)
    }

    /// An inline property of a scanned node, or a WHERE equality or IN list on it, whose
    /// values are integer or text literals (or parameters): the scan may find its rows by
    /// index (the filters on inline properties and WHERE still apply). Nothing is evaluated:
    /// this runs for every pattern, so anything but a literal is left to the scan.
    fn scan_lookup(&self, node: &ast::NodePattern) -> Option<(String, Vec<ScalarValue>)> {
        let inline = match &node.properties {
            Some(ast::Expr {
                kind: ExprKind::Map(entries),
                ..
            }) => entries.as_slice(),
            _ => &[],
        };
        let from_where = self
            .where_equality(node)
            .map(|(property, value)| (property.clone(), value.clone()));
        inline
            .iter()
            .cloned()
            .chain(from_where)
            .find_map(|(key, value)| {
                let key_value = |e: &ast::Expr| match self.convert_constant(e).ok()? {
                    Expr::Literal(
                        v @ (ScalarValue::Int64(Some(_))
                        | ScalarValue::Int32(Some(_))
                        | ScalarValue::Utf8(Some(_))),
                        _,
                    ) => Some(v),
                    _ => None,
                };
                let values = match &value.kind {
                    ExprKind::List(items) if items.len() <= MAX_LOOKUP_VALUES => {
                        items.iter().map(key_value).collect::<Option<Vec<_>>>()?
                    }
                    ExprKind::List(_) => return None,
                    _ => vec![key_value(&value)?],
                };
                Some((key, values))
            })
    }

    /// The first WHERE equality on the node's variable, else its first IN list of constants:
    /// (property, value or list).
    fn where_equality(&self, node: &ast::NodePattern) -> Option<(&String, &ast::Expr)> {
        let var = &node.variable.as_ref()?.name;
        let mut on_var = self.where_equalities.iter().filter(|(v, ..)| v == var);
        let list = |(_, _, e): &&(String, String, ast::Expr)| matches!(e.kind, ExprKind::List(_));
        on_var
            .clone()
            .find(|c| !list(c))
            .or_else(|| on_var.find(list))
            .map(|(_, property, value)| (property, value))
    }

    /// Converts an expression that may read no variable (SKIP, LIMIT, a lookup value).
    pub(crate) fn convert_constant(&self, e: &ast::Expr) -> Result<Expr, PlanError> {
        let empty = State {
            plan: LogicalPlanBuilder::empty(true).build()?,
            scope: Scope::default(),
            unit: true,
        };
        self.convert(&empty, e)
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

/// `plan` with each row's number in a column `row` (to match a pattern from the rows and
/// join what it finds back, see [`join_back`]).
fn number_rows(plan: LogicalPlan, row: &str) -> Result<LogicalPlan, PlanError> {
    Ok(LogicalPlanBuilder::from(plan)
        .window(vec![row_number().alias(row)])?
        .build()?)
}

/// The numbered rows, each with the rows of `right` whose `right_row` is its number (nulls
/// where none is): OPTIONAL MATCH and pattern predicates match from numbered rows.
fn join_back(
    numbered: LogicalPlan,
    right: LogicalPlan,
    row: &str,
    right_row: &str,
) -> Result<LogicalPlan, PlanError> {
    Ok(LogicalPlanBuilder::from(numbered)
        .join(
            right,
            JoinType::Left,
            (vec![row.to_string()], vec![right_row.to_string()]),
            None,
        )?
        .build()?)
}

/// A relationship variable, its candidate types and whether it is a variable-length list (for
/// relationship uniqueness).
pub(crate) type BoundRel = (String, Vec<String>, bool);

/// Candidate labels of the nodes and types of the relationships of one chain.
pub(crate) struct ChainLabels {
    pub(crate) labels: Vec<Vec<String>>,
    pub(crate) types: Vec<Vec<EdgeTableInfo>>,
}

/// Values an IN list may hold to be looked up (a longer list is filtered row by row).
const MAX_LOOKUP_VALUES: usize = 4096;

/// The `var.property = constant` conjuncts of a WHERE (either side), the constant a literal
/// or a parameter, and the `var.property IN [constants]` ones.
fn equalities(predicate: &ast::Expr) -> Vec<(String, String, ast::Expr)> {
    fn property_of(e: &ast::Expr) -> Option<(String, String)> {
        match &e.kind {
            ExprKind::Property(target, property) => match &target.kind {
                ExprKind::Variable(var) => Some((var.clone(), property.clone())),
                _ => None,
            },
            _ => None,
        }
    }
    fn constant(e: &ast::Expr) -> bool {
        matches!(e.kind, ExprKind::Literal(_) | ExprKind::Parameter(_))
    }
    let mut out = Vec::new();
    let mut stack = vec![predicate];
    // Bounded by the predicate's size: each conjunct is visited once.
    while let Some(e) = stack.pop() {
        match &e.kind {
            ExprKind::Binary(ast::BinaryOp::And, left, right) => {
                stack.push(right);
                stack.push(left);
            }
            ExprKind::Binary(ast::BinaryOp::In, left, right) => {
                if let (Some((v, p)), ExprKind::List(items)) = (property_of(left), &right.kind)
                    && items.iter().all(constant)
                {
                    out.push((v, p, (**right).clone()));
                }
            }
            ExprKind::Comparison(left, rest) if rest.len() == 1 => {
                let (op, right) = &rest[0];
                if *op != ast::CompareOp::Eq {
                    continue;
                }
                let found = match (property_of(left), property_of(right)) {
                    (Some((v, p)), None) if constant(right) => Some((v, p, right.clone())),
                    (None, Some((v, p))) if constant(left) => Some((v, p, (**left).clone())),
                    _ => None,
                };
                out.extend(found);
            }
            _ => {}
        }
    }
    out
}

/// Whether `plan` reads `var`'s nodes by a scan that passes each row on by itself (through
/// filters, projections and expansions): the plan a search can limit to the nodes it found.
fn scans(plan: &LogicalPlan, var: &str) -> bool {
    match plan {
        LogicalPlan::Extension(ext) => {
            if let Some(scan) = ext.node.as_any().downcast_ref::<NodeScan>() {
                return scan.var == var;
            }
            match ext.node.as_any().downcast_ref::<GraphExpand>() {
                Some(expand) => scans(&expand.input, var),
                None => false,
            }
        }
        LogicalPlan::Filter(f) => scans(&f.input, var),
        LogicalPlan::Projection(p) => scans(&p.input, var),
        _ => false,
    }
}

/// Can an edge of `edge` connect a `left` node to a `right` node, written in `direction`?
fn fits(edge: &EdgeTableInfo, direction: Direction, left: &str, right: &str) -> bool {
    let forward = edge.from == left && edge.to == right;
    let backward = edge.to == left && edge.from == right;
    match direction {
        Direction::Outgoing => forward,
        Direction::Incoming => backward,
        Direction::Both => forward || backward,
    }
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
    ) -> Result<(State, String, BoundRel), PlanError> {
        let el = &part.element;
        let nodes: Vec<&ast::NodePattern> = std::iter::once(&el.start)
            .chain(el.chain.iter().map(|(_, n)| n))
            .collect();
        let (rel, _) = &el.chain[step];
        let to_i = if rightwards { step + 1 } else { step };
        // Direction relative to the expansion, from the written arrow.
        let direction = match (rel.direction, rightwards) {
            (Direction::Outgoing, true) | (Direction::Incoming, false) => ExpandDirection::Out,
            (Direction::Outgoing, false) | (Direction::Incoming, true) => ExpandDirection::In,
            (Direction::Both, _) => ExpandDirection::Both,
        };
        let edges = labels.types[step].clone();
        let to_tables = self.node_tables(&labels.labels[to_i]);
        // A relationship or node bound before: expand under a name of its own, then keep the
        // rows where it is that very element.
        let (rel_bound, rel_var) = self.expansion_name(&state.scope, &rel.variable, "r");
        let to_node = nodes[to_i];
        let (to_bound, to_var) = self.expansion_name(&state.scope, &to_node.variable, "n");
        let rel_types: Vec<String> = edges.iter().map(|e| e.table.clone()).collect();
        let length = rel.length.or(self.shortest.map(|_| (Some(1), Some(1))));
        let (plan, rel_kind, list) = match length {
            None => {
                let expand = GraphExpand::try_new(
                    SourceRef(self.source.clone()),
                    state.plan,
                    from_var,
                    &edges,
                    direction,
                    &rel_var,
                    &to_var,
                    &to_tables,
                    optional,
                )?;
                let kind = VarKind::Rel {
                    types: rel_types.clone(),
                };
                (
                    Arc::new(expand) as Arc<dyn UserDefinedLogicalNode>,
                    kind,
                    false,
                )
            }
            Some((min, max)) => {
                let hops = |n: u64| {
                    u32::try_from(n).map_err(|_| {
                        self.err(rel.span, format!("relationship length {n} is out of range"))
                    })
                };
                let length = (hops(min.unwrap_or(1))?, max.map(hops).transpose()?);
                let hop_properties = self.hop_properties(rel)?;
                let shape = TrailShape {
                    between: self
                        .path
                        .as_ref()
                        .map(|p| (endpoint_labels(&edges), p.nodes.clone())),
                    relationship: self.path.as_ref().map(|p| p.relationships.clone()),
                    reversed: !rightwards,
                };
                let walk = VarLengthExpand::try_new(
                    SourceRef(self.source.clone()),
                    state.plan,
                    from_var,
                    &edges,
                    direction,
                    length,
                    self.limits,
                    hop_properties,
                    &rel_var,
                    &to_var,
                    &to_tables,
                    shape,
                )?;
                let mut walk = walk;
                // WHERE conditions on every relationship or node of the walk are checked as
                // it steps (they stay in the WHERE too): a shortest path must be shortest
                // among the paths that pass them, and a walk need not go where none can.
                let relationships = walk
                    .shape
                    .relationship
                    .clone()
                    .unwrap_or_else(|| rel_struct_fields(&rel_var, &edges));
                let mut hop_filter =
                    self.step_filter(&StepList::Relationships(rel_var.clone()), &relationships);
                if let Some(path) = &self.path {
                    let from_path = self
                        .step_filter(&StepList::Relationships(path.var.clone()), &relationships);
                    hop_filter = match (hop_filter, from_path) {
                        (Some(a), Some(b)) => Some(StepFilter {
                            predicate: a.predicate.and(b.predicate),
                            ..a
                        }),
                        (a, b) => a.or(b),
                    };
                    walk.node_filter =
                        self.step_filter(&StepList::Nodes(path.var.clone()), &path.nodes);
                }
                walk.hop_filter = hop_filter;
                if let Some(all) = self.shortest {
                    walk.walk = if all {
                        Walk::AllShortest
                    } else {
                        Walk::Shortest
                    };
                    walk.target = to_bound.as_ref().map(|b| column_name(b, ORD));
                }
                (
                    Arc::new(walk) as Arc<dyn UserDefinedLogicalNode>,
                    VarKind::Value,
                    true,
                )
            }
        };
        let mut scope = state.scope;
        scope.bind(
            &rel_var,
            rel_kind,
            self.hidden(&rel.variable) || rel_bound.is_some(),
        );
        scope.bind(
            &to_var,
            self.node_kind(&labels.labels[to_i]),
            self.hidden(&to_node.variable) || to_bound.is_some(),
        );
        let mut state = State {
            plan: LogicalPlan::Extension(Extension { node: plan }),
            scope,
            unit: false,
        };
        let reached = to_bound.clone().unwrap_or_else(|| to_var.clone());
        if let Some(bound) = to_bound {
            // The pattern closes on a node bound before: keep rows that reach that very node.
            let same = column(&column_name(&to_var, ORD)).eq(column(&column_name(&bound, ORD)));
            state.plan = LogicalPlanBuilder::from(state.plan).filter(same)?.build()?;
            state = self.node_properties(state, &bound, to_node)?;
        } else {
            state = self.node_properties(state, &to_var, to_node)?;
        }
        if let Some(bound) = &rel_bound {
            let same = column(&column_name(&rel_var, ORD)).eq(column(&column_name(bound, ORD)));
            state.plan = LogicalPlanBuilder::from(state.plan).filter(same)?.build()?;
        }
        if !list {
            state = self.inline_properties(state, &rel_var, rel.properties.as_ref())?;
        }
        Ok((state, reached, (rel_var, rel_types, list)))
    }

    /// The variable an expansion binds for a pattern element written as `variable`: the
    /// element's own name, or a fresh one when it has none or is bound before (then also
    /// that name, for the rows to be kept where both are the same element).
    fn expansion_name(
        &mut self,
        scope: &Scope,
        variable: &Option<ast::Ident>,
        what: &str,
    ) -> (Option<String>, String) {
        match variable {
            Some(v) if scope.get(&v.name).is_some() => (Some(v.name.clone()), self.fresh(what)),
            Some(v) => (None, v.name.clone()),
            None => (None, self.fresh(what)),
        }
    }

    /// The inline properties of a variable-length relationship, which every hop must have:
    /// constants (literals or parameters), checked as the walk takes each relationship.
    fn hop_properties(
        &self,
        rel: &ast::RelPattern,
    ) -> Result<Vec<(String, ScalarValue)>, PlanError> {
        let Some(props) = &rel.properties else {
            return Ok(vec![]);
        };
        let ExprKind::Map(entries) = &props.kind else {
            return Err(self.err(props.span, "pattern properties must be a map literal"));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match self.convert_constant(value) {
                Ok(Expr::Literal(v, _)) => out.push((key.clone(), v)),
                _ => {
                    return Err(self.err(
                        value.span,
                        "a property of a variable-length relationship must be a literal or a \
                         parameter (every hop is checked against it)",
                    ));
                }
            }
        }
        Ok(out)
    }
}
