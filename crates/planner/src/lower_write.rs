//! The writing clauses: CREATE, MERGE, SET, REMOVE, DELETE.
//!
//! Writes are collected per *write block* (consecutive writing clauses) as [`WriteOp`]s that
//! read columns of the block's rows. Created elements get ordinal columns in those rows that the
//! sink fills in, so later operations of the block (a relationship to a created node, a SET on a
//! merged one) address every element the same way: by its ordinal column.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use contextql::ast::{self, ExprKind};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, ExprSchemable, Extension, LogicalPlan, LogicalPlanBuilder};

use crate::PlanError;
use crate::SchemaNeed;
use crate::lower::{Lowering, State};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::nodes::{
    ORD, RowSlot, UNLABELED, WrittenRows, column_name, node_fields, ordinal_column, rel_fields,
    renumbered_field,
};
use crate::scope::VarKind;
use crate::source::{EdgeTableInfo, NodeTableInfo};

/// A node or relationship to change, identified by its global ordinal column (rows where it
/// is null are skipped).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Node { ord_column: String },
    Rel { ord_column: String },
}

/// One write, evaluated for every row of its block.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Creates one node per row and writes its ordinal into `ord_column`.
    CreateNode {
        label: String,
        /// (property, plan column holding its value)
        properties: Vec<(String, String)>,
        ord_column: String,
    },
    /// Creates one relationship per row between the nodes in the `src` and `dst` ordinal
    /// columns and writes its ordinal into `ord_column`.
    CreateEdge {
        /// The edge table.
        rel_type: String,
        src: String,
        dst: String,
        properties: Vec<(String, String)>,
        ord_column: String,
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
    Merge(MergeOp),
}

/// MERGE: rows where the pattern matched run `on_match`; the other rows create the pattern,
/// once per distinct `key` (rows that would merge the same pattern share what one of them
/// created), and run `on_create`.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeOp {
    /// Ordinal column of an element the pattern binds anew: null where nothing matched.
    pub matched: String,
    /// Columns whose values identify the pattern instance: ordinals of bound nodes and the
    /// values of the pattern's properties.
    pub key: Vec<String>,
    /// (property, column) of the pattern's property values, which must not be null.
    pub properties: Vec<(String, String)>,
    /// CreateNode / CreateEdge of the elements the pattern binds anew.
    pub create: Vec<WriteOp>,
    pub on_create: Vec<WriteOp>,
    pub on_match: Vec<WriteOp>,
}

/// The rows of a write block and what to write from them.
#[derive(Debug)]
pub struct WriteBlock {
    /// Every bound column, the computed values and the columns of created elements.
    pub plan: LogicalPlan,
    pub writes: Vec<WriteOp>,
    /// Where the sink leaves the rows after the writes, for the clauses after the block.
    pub output: RowSlot,
}

/// The write block being lowered.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) writes: Vec<WriteOp>,
    /// Value columns the writes read.
    columns: Vec<Expr>,
    /// Null columns of created elements, filled in by the sink.
    placeholders: Vec<Expr>,
    /// Elements created by CREATE in this block: (variable, kind, hidden).
    created: Vec<(String, VarKind, bool)>,
    /// Variables whose elements this block deletes.
    deleted: Vec<String>,
}

impl Pending {
    fn created(&self, var: &str) -> Option<&VarKind> {
        self.created
            .iter()
            .find(|(v, ..)| v == var)
            .map(|(_, k, _)| k)
    }
}

/// A pattern element's written properties: (property, value column) pairs, and (property,
/// value type) pairs for the schema they need.
type WrittenProperties = (Vec<(String, String)>, Vec<(String, DataType)>);

fn typed_null(field: &Field) -> Result<Expr, PlanError> {
    Ok(Expr::Literal(ScalarValue::try_from(field.data_type())?, None).alias(field.name()))
}

impl Lowering<'_> {
    /// Ends a write block: its rows go to the sink; the clauses after it read the rows the
    /// sink leaves, where created elements are bound like matched ones. Returns those rows
    /// (the state after the block) and the block.
    pub(crate) fn end_block(
        &mut self,
        state: State,
        pending: &mut Pending,
    ) -> Result<(State, WriteBlock), PlanError> {
        let pending = std::mem::take(pending);
        let mut exprs: Vec<Expr> = crate::lower::all_columns(&state.plan);
        exprs.extend(pending.columns);
        exprs.extend(pending.placeholders);
        let plan = LogicalPlanBuilder::from(state.plan)
            .project(exprs)?
            .build()?;
        let output = RowSlot::default();
        // Ordinals are renumbered before later clauses read the rows, and a deleted
        // element's become null.
        let arrow_schema = plan.schema().as_arrow().clone();
        let fields = plan
            .schema()
            .iter()
            .map(|(q, f)| {
                let f = if ordinal_column(&arrow_schema, f.name()).is_some() {
                    Arc::new(renumbered_field(f))
                } else {
                    f.clone()
                };
                (q.cloned(), f)
            })
            .collect();
        let schema = DFSchema::new_with_metadata(fields, plan.schema().metadata().clone())?;
        let rows = LogicalPlan::Extension(Extension {
            node: Arc::new(WrittenRows {
                slot: output.clone(),
                schema: Arc::new(schema),
            }),
        });
        let block = WriteBlock {
            plan,
            writes: pending.writes,
            output,
        };
        let mut scope = state.scope;
        for (var, kind, hidden) in pending.created {
            scope.bind(&var, kind, hidden);
        }
        let rows = deleted_properties(rows, &pending.deleted)?;
        let state = State {
            plan: rows,
            scope,
            unit: false,
        };
        Ok((state, block))
    }

    /// Adds a column computing `e` for the write sink; returns its name and type (a bare
    /// null is typed as text, so a new column for it has a type).
    fn typed_value_column(
        &mut self,
        state: &State,
        e: &ast::Expr,
        pending: &mut Pending,
    ) -> Result<(String, DataType), PlanError> {
        let converted = self.convert(state, e)?;
        let data_type = match converted.get_type(state.plan.schema())? {
            DataType::Null => DataType::Utf8,
            t => t,
        };
        let name = self.fresh("w");
        pending.columns.push(converted.alias(&name));
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

    /// Value columns for a pattern element's `{k: v}` and the table they go to, or the
    /// schema the graph needs first.
    fn written_properties(
        &mut self,
        state: &State,
        properties: Option<&ast::Expr>,
        pending: &mut Pending,
    ) -> Result<WrittenProperties, PlanError> {
        let mut columns = Vec::new();
        let mut written = Vec::new();
        for (k, v) in self.map_entries(properties)? {
            let (column, data_type) = self.typed_value_column(state, v, pending)?;
            columns.push((k.clone(), column));
            written.push((k.clone(), data_type));
        }
        Ok((columns, written))
    }

    /// The node table of a created node, after checking it has the written columns.
    fn node_table_for(
        &self,
        label: &str,
        written: &[(String, DataType)],
    ) -> Result<NodeTableInfo, PlanError> {
        let Some(table) = self.source.node_table(label) else {
            return Err(PlanError::needs(SchemaNeed::NodeTable {
                label: label.to_string(),
                columns: written.to_vec(),
            }));
        };
        let missing = Self::missing_columns(&table.schema, written);
        if !missing.is_empty() {
            return Err(PlanError::needs(SchemaNeed::Columns {
                table: label.to_string(),
                columns: missing,
            }));
        }
        Ok(table)
    }

    /// The edge table of a created relationship, after checking it has the written columns.
    fn edge_table_for(
        &self,
        rel_type: &str,
        from: &str,
        to: &str,
        written: &[(String, DataType)],
    ) -> Result<EdgeTableInfo, PlanError> {
        let Some(edge) = self.source.edge_table(rel_type, from, to) else {
            return Err(PlanError::needs(SchemaNeed::EdgeTable {
                rel_type: rel_type.to_string(),
                from: from.to_string(),
                to: to.to_string(),
                columns: written.to_vec(),
            }));
        };
        let missing = Self::missing_columns(&edge.schema, written);
        if !missing.is_empty() {
            return Err(PlanError::needs(SchemaNeed::Columns {
                table: edge.table,
                columns: missing,
            }));
        }
        Ok(edge)
    }

    /// The one label a bound node can have: its only candidate, or else the only candidate
    /// whose table has nodes at this source (a node bound by MATCH lies in such a table; a
    /// label a statement staged, still empty, is no candidate for it).
    fn single_label(&self, kind: &VarKind) -> Option<String> {
        let VarKind::Node { labels, .. } = kind else {
            return None;
        };
        if let [one] = labels.as_slice() {
            return Some(one.clone());
        }
        let mut with_nodes = labels
            .iter()
            .filter(|l| self.source.node_count(l).is_ok_and(|n| n > 0));
        match (with_nodes.next(), with_nodes.next()) {
            (Some(one), None) => Some(one.clone()),
            _ => None,
        }
    }

    fn check_rel_shape(&self, rel: &ast::RelPattern, clause: &str) -> Result<(), PlanError> {
        if rel.types.len() != 1 {
            return Err(self.err(
                rel.span,
                format!("a relationship in {clause} needs exactly one type"),
            ));
        }
        if rel.length.is_some() {
            return Err(self.err(
                rel.span,
                format!("variable-length relationships cannot be used in {clause}"),
            ));
        }
        Ok(())
    }

    pub(crate) fn lower_create(
        &mut self,
        state: &State,
        c: &ast::CreateClause,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        for part in &c.pattern {
            if part.variable.is_some() || part.kind != ast::PatternKind::Plain {
                return Err(self.err(part.span, "named paths in CREATE are not supported yet"));
            }
            let el = &part.element;
            let nodes: Vec<&ast::NodePattern> = std::iter::once(&el.start)
                .chain(el.chain.iter().map(|(_, n)| n))
                .collect();
            // (ordinal column, label if known) of every node of the pattern.
            let mut endpoints: Vec<(String, Option<String>)> = Vec::new();
            for n in &nodes {
                let known = n.variable.as_ref().and_then(|v| {
                    state
                        .scope
                        .get(&v.name)
                        .or_else(|| pending.created(&v.name))
                        .map(|k| (v, k.clone()))
                });
                if let Some((v, kind)) = known {
                    if !n.labels.is_empty() || n.properties.is_some() {
                        return Err(
                            self.err(v.span, format!("variable `{}` already declared", v.name))
                        );
                    }
                    if !matches!(kind, VarKind::Node { .. }) {
                        return Err(
                            self.err(v.span, format!("type mismatch: `{}` is not a node", v.name))
                        );
                    }
                    endpoints.push((column_name(&v.name, ORD), self.single_label(&kind)));
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
                let (properties, written) =
                    self.written_properties(state, n.properties.as_ref(), pending)?;
                let table = self.node_table_for(&label, &written)?;
                let var = self.created_node(&n.variable, &table, pending)?;
                pending.writes.push(WriteOp::CreateNode {
                    label: label.clone(),
                    properties,
                    ord_column: column_name(&var, ORD),
                });
                endpoints.push((column_name(&var, ORD), Some(label)));
            }
            for (i, (rel, _)) in el.chain.iter().enumerate() {
                self.check_rel_shape(rel, "CREATE")?;
                if let Some(v) = &rel.variable
                    && (state.scope.get(&v.name).is_some() || pending.created(&v.name).is_some())
                {
                    return Err(self.err(v.span, format!("variable `{}` already declared", v.name)));
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
                let (properties, written) =
                    self.written_properties(state, rel.properties.as_ref(), pending)?;
                let edge = self.edge_table_for(&rel_type, &from, &to, &written)?;
                let var = self.created_rel(&rel.variable, &edge, pending)?;
                pending.writes.push(WriteOp::CreateEdge {
                    rel_type: edge.table.clone(),
                    src: src.0.clone(),
                    dst: dst.0.clone(),
                    properties,
                    ord_column: column_name(&var, ORD),
                });
            }
        }
        Ok(())
    }

    /// Declares a node created by CREATE: placeholder columns the sink fills in, bound to
    /// the variable (a hidden one for an anonymous node) when the block ends.
    fn created_node(
        &mut self,
        variable: &Option<ast::Ident>,
        table: &NodeTableInfo,
        pending: &mut Pending,
    ) -> Result<String, PlanError> {
        let (var, hidden) = match variable {
            Some(v) => (v.name.clone(), false),
            None => (self.fresh("n"), true),
        };
        for f in node_fields(&var, std::slice::from_ref(table), true) {
            pending.placeholders.push(typed_null(&f)?);
        }
        pending.created.push((
            var.clone(),
            VarKind::Node {
                labels: vec![table.label.clone()],
                primary_key: Some(table.primary_key.clone()),
            },
            hidden,
        ));
        Ok(var)
    }

    fn created_rel(
        &mut self,
        variable: &Option<ast::Ident>,
        edge: &EdgeTableInfo,
        pending: &mut Pending,
    ) -> Result<String, PlanError> {
        let (var, hidden) = match variable {
            Some(v) => (v.name.clone(), false),
            None => (self.fresh("r"), true),
        };
        for f in rel_fields(&var, std::slice::from_ref(edge), true) {
            pending.placeholders.push(typed_null(&f)?);
        }
        pending.created.push((
            var.clone(),
            VarKind::Rel {
                types: vec![edge.table.clone()],
            },
            hidden,
        ));
        Ok(var)
    }

    /// MERGE: an OPTIONAL MATCH of the pattern, then a [`MergeOp`] that creates it where
    /// nothing matched.
    pub(crate) fn lower_merge(
        &mut self,
        state: State,
        m: &ast::MergeClause,
        pending: &mut Pending,
    ) -> Result<State, PlanError> {
        let part = &m.pattern;
        if part.variable.is_some() || part.kind != ast::PatternKind::Plain {
            return Err(self.err(part.span, "named paths in MERGE are not supported yet"));
        }
        // Name every element, so each has columns to test and fill in.
        let mut named = part.clone();
        let mut anonymous: Vec<String> = Vec::new();
        let mut name = |this: &mut Self, v: &mut Option<ast::Ident>, what: &str, span| {
            if v.is_none() {
                let fresh = this.fresh(what);
                anonymous.push(fresh.clone());
                *v = Some(ast::Ident { name: fresh, span });
            }
        };
        let span = named.element.start.span;
        name(self, &mut named.element.start.variable, "n", span);
        for (rel, node) in named.element.chain.iter_mut() {
            name(self, &mut rel.variable, "r", rel.span);
            name(self, &mut node.variable, "n", node.span);
        }
        let el = &named.element;
        let nodes: Vec<&ast::NodePattern> = std::iter::once(&el.start)
            .chain(el.chain.iter().map(|(_, n)| n))
            .collect();
        let var = |n: &ast::NodePattern| n.variable.as_ref().expect("named").clone();
        // Bound nodes are endpoints only; everything else is matched or created.
        let mut bound = Vec::new();
        for n in &nodes {
            let v = var(n);
            match state.scope.get(&v.name) {
                Some(VarKind::Node { .. }) => {
                    if !n.labels.is_empty() || n.properties.is_some() || el.chain.is_empty() {
                        return Err(
                            self.err(v.span, format!("variable `{}` already declared", v.name))
                        );
                    }
                    bound.push(v.name.clone());
                }
                Some(_) => {
                    return Err(
                        self.err(v.span, format!("type mismatch: `{}` is not a node", v.name))
                    );
                }
                None => {}
            }
            if n.labels.len() > 1 {
                return Err(self.err(
                    n.labels[1].span,
                    "a node has at most one label in ContextDB",
                ));
            }
        }
        for (rel, _) in &el.chain {
            self.check_rel_shape(rel, "MERGE")?;
        }
        let matched_clause = ast::MatchClause {
            optional: true,
            pattern: vec![named.clone()],
            where_: None,
            span: m.span,
        };
        let mut state = self.lower_optional_match(state, &matched_clause)?;
        for v in &anonymous {
            state.scope.hide(v);
        }
        // What to create where nothing matched; the first new element tells whether it did.
        let mut create = Vec::new();
        let mut key: Vec<String> = bound.iter().map(|b| column_name(b, ORD)).collect();
        let mut properties = Vec::new();
        let mut labels: Vec<String> = Vec::new();
        let mut matched: Option<String> = None;
        for n in &nodes {
            let v = var(n);
            if bound.contains(&v.name) {
                let kind = state.scope.get(&v.name).expect("bound").clone();
                labels.push(self.single_label(&kind).unwrap_or_default());
                continue;
            }
            let label = n
                .labels
                .first()
                .map(|l| l.name.clone())
                .unwrap_or_else(|| UNLABELED.to_string());
            let (props, written) =
                self.written_properties(&state, n.properties.as_ref(), pending)?;
            self.node_table_for(&label, &written)?;
            key.extend(props.iter().map(|(_, c)| c.clone()));
            properties.extend(props.iter().cloned());
            matched.get_or_insert_with(|| column_name(&v.name, ORD));
            create.push(WriteOp::CreateNode {
                label: label.clone(),
                properties: props,
                ord_column: column_name(&v.name, ORD),
            });
            labels.push(label);
        }
        for (i, (rel, _)) in el.chain.iter().enumerate() {
            let v = rel.variable.as_ref().expect("named");
            let (l, r) = (var(nodes[i]).name, var(nodes[i + 1]).name);
            // An undirected MERGE creates its relationship left to right.
            let (src, dst, from, to) = match rel.direction {
                ast::Direction::Incoming => (r, l, &labels[i + 1], &labels[i]),
                _ => (l, r, &labels[i], &labels[i + 1]),
            };
            if from.is_empty() || to.is_empty() {
                return Err(self.err(
                    rel.span,
                    "a relationship is merged between nodes of one known label each (give the MATCH a label)",
                ));
            }
            let (props, written) =
                self.written_properties(&state, rel.properties.as_ref(), pending)?;
            let edge = self.edge_table_for(&rel.types[0].name, from, to, &written)?;
            key.extend(props.iter().map(|(_, c)| c.clone()));
            properties.extend(props.iter().cloned());
            matched.get_or_insert_with(|| column_name(&v.name, ORD));
            create.push(WriteOp::CreateEdge {
                rel_type: edge.table.clone(),
                src: column_name(&src, ORD),
                dst: column_name(&dst, ORD),
                properties: props,
                ord_column: column_name(&v.name, ORD),
            });
        }
        let matched = matched.expect("a MERGE pattern binds at least one new element");
        let mut on_create = Vec::new();
        self.lower_set_items(&state, &m.on_create, &mut on_create, pending)?;
        let mut on_match = Vec::new();
        self.lower_set_items(&state, &m.on_match, &mut on_match, pending)?;
        pending.writes.push(WriteOp::Merge(MergeOp {
            matched,
            key,
            properties,
            create,
            on_create,
            on_match,
        }));
        Ok(state)
    }

    fn target(
        &self,
        state: &State,
        pending: &Pending,
        var: &ast::Ident,
    ) -> Result<(Target, Vec<String>), PlanError> {
        let kind = state
            .scope
            .get(&var.name)
            .or_else(|| pending.created(&var.name));
        match kind {
            Some(VarKind::Node { labels, .. }) => Ok((
                Target::Node {
                    ord_column: column_name(&var.name, ORD),
                },
                labels.clone(),
            )),
            Some(VarKind::Rel { types }) => Ok((
                Target::Rel {
                    ord_column: column_name(&var.name, ORD),
                },
                types.clone(),
            )),
            Some(VarKind::Value) => Err(self.err(
                var.span,
                format!("`{}` is not a node or relationship", var.name),
            )),
            None => Err(self.err(var.span, format!("variable `{}` not defined", var.name))),
        }
    }

    /// `SET v.property = <value>` on a target of `tables`; a property the target's one table
    /// lacks is added first (schema evolution).
    fn set_property(
        &mut self,
        state: &State,
        var: &ast::Ident,
        property: &str,
        value: Option<&ast::Expr>,
        ops: &mut Vec<WriteOp>,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        let (target, tables) = self.target(state, pending, var)?;
        let (column, data_type) = match value {
            Some(v) => self.typed_value_column(state, v, pending)?,
            None => {
                let name = self.fresh("w");
                pending
                    .columns
                    .push(Expr::Literal(ScalarValue::Utf8(None), None).alias(&name));
                (name, DataType::Utf8)
            }
        };
        if let [table] = tables.as_slice() {
            let schema = self.target_table(table).map(|(schema, _)| schema);
            // Removing a property a table does not have changes nothing: no column needed.
            if let Some(schema) = schema
                && value.is_some()
                && schema.index_of(property).is_err()
            {
                return Err(PlanError::needs(SchemaNeed::Columns {
                    table: table.clone(),
                    columns: vec![(property.to_string(), data_type)],
                }));
            }
        }
        ops.push(WriteOp::SetProperty {
            target,
            property: property.to_string(),
            column,
        });
        Ok(())
    }

    pub(crate) fn lower_set_items(
        &mut self,
        state: &State,
        items: &[ast::SetItem],
        ops: &mut Vec<WriteOp>,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        for item in items {
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
                    self.set_property(state, &ident, key, Some(value), ops, pending)?;
                }
                ast::SetItem::Merge { variable, value } => {
                    for (k, v) in self.map_entries(Some(value))? {
                        self.set_property(state, variable, k, Some(v), ops, pending)?;
                    }
                }
                ast::SetItem::Replace { variable, value } => {
                    // `SET n = {map}`: the map's properties, every other one removed.
                    let entries = self.map_entries(Some(value))?;
                    let (_, tables) = self.target(state, pending, variable)?;
                    let [table] = tables.as_slice() else {
                        return Err(self.err(
                            variable.span,
                            "SET n = {map} needs a variable of one label or type",
                        ));
                    };
                    let others = self.replaced_columns(table, &entries);
                    for (k, v) in entries {
                        self.set_property(state, variable, k, Some(v), ops, pending)?;
                    }
                    for k in others {
                        self.set_property(state, variable, &k, None, ops, pending)?;
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

    /// The schema of a node or edge table (names are unique across both), and the columns
    /// no SET may change: a node's key, a relationship's endpoints.
    fn target_table(&self, table: &str) -> Option<(arrow::datatypes::SchemaRef, Vec<String>)> {
        if let Some(t) = self.source.node_table(table) {
            return Some((t.schema, vec![t.primary_key]));
        }
        self.source
            .edge_tables()
            .into_iter()
            .find(|e| e.table == table)
            .map(|e| (e.schema, vec!["src".into(), "dst".into()]))
    }

    /// The nullable property columns of `table` that `SET n = {map}` clears.
    fn replaced_columns(&self, table: &str, entries: &[(&String, &ast::Expr)]) -> Vec<String> {
        let Some((schema, fixed)) = self.target_table(table) else {
            return vec![];
        };
        schema
            .fields()
            .iter()
            .filter(|f| f.is_nullable())
            .map(|f| f.name().clone())
            .filter(|n| !fixed.contains(n) && !entries.iter().any(|(k, _)| *k == n))
            .collect()
    }

    pub(crate) fn lower_set(
        &mut self,
        state: &State,
        s: &ast::SetClause,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        let mut ops = Vec::new();
        self.lower_set_items(state, &s.items, &mut ops, pending)?;
        pending.writes.extend(ops);
        Ok(())
    }

    /// `REMOVE n.property` sets it to null; labels cannot be removed (one table per label).
    pub(crate) fn lower_remove(
        &mut self,
        state: &State,
        r: &ast::RemoveClause,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        let mut ops = Vec::new();
        for item in &r.items {
            match item {
                ast::RemoveItem::Property(target) => {
                    let ExprKind::Property(base, key) = &target.kind else {
                        return Err(self.err(target.span, "REMOVE needs a property"));
                    };
                    let ExprKind::Variable(v) = &base.kind else {
                        return Err(self.err(base.span, "REMOVE needs a variable's property"));
                    };
                    let ident = ast::Ident {
                        name: v.clone(),
                        span: base.span,
                    };
                    self.set_property(state, &ident, key, None, &mut ops, pending)?;
                }
                ast::RemoveItem::Labels { variable, .. } => {
                    return Err(self.err(
                        variable.span,
                        "a node's label cannot change in ContextDB (one table per label)",
                    ));
                }
            }
        }
        pending.writes.extend(ops);
        Ok(())
    }

    pub(crate) fn lower_delete(
        &mut self,
        state: &State,
        d: &ast::DeleteClause,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        for e in &d.exprs {
            let ExprKind::Variable(v) = &e.kind else {
                return Err(self.err(e.span, "DELETE needs a node or relationship variable"));
            };
            let (target, _) = self.target(
                state,
                pending,
                &ast::Ident {
                    name: v.clone(),
                    span: e.span,
                },
            )?;
            pending.writes.push(WriteOp::Delete {
                target,
                detach: d.detach,
            });
            pending.deleted.push(v.clone());
        }
        Ok(())
    }
}

/// The rows after a block that deleted `deleted`: each deleted element's properties and label
/// read as an error on any row where it was bound (openCypher's EntityNotFound), never as
/// the values it had. Its ordinal, id and type stay readable. A column nothing reads is
/// dropped by the optimizer, so only reading a deleted element fails.
fn deleted_properties(rows: LogicalPlan, deleted: &[String]) -> Result<LogicalPlan, PlanError> {
    if deleted.is_empty() {
        return Ok(rows);
    }
    let mut exprs = Vec::with_capacity(rows.schema().fields().len());
    for field in rows.schema().fields() {
        let name = field.name();
        let of_deleted = deleted.iter().find(|v| {
            name.strip_prefix(v.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|p| p != ORD && p != crate::nodes::ID && p != crate::nodes::TYPE)
        });
        exprs.push(match of_deleted {
            Some(var) => ScalarUDF::new_from_impl(DeletedAccess {
                variable: var.clone(),
                signature: Signature::any(2, Volatility::Immutable),
            })
            .call(vec![
                // Where the element was bound: its id (its ordinal is null once later clauses
                // read the graph without it).
                crate::lower::column(&bound_by(rows.schema(), var)),
                crate::lower::column(name),
            ])
            .alias(name),
            None => crate::lower::column(name),
        });
    }
    Ok(LogicalPlanBuilder::from(rows).project(exprs)?.build()?)
}

/// The column that is non-null where `var` is bound: its id, or else its ordinal.
fn bound_by(schema: &datafusion::common::DFSchemaRef, var: &str) -> String {
    let id = column_name(var, crate::nodes::ID);
    if schema.field_with_unqualified_name(&id).is_ok() {
        id
    } else {
        column_name(var, ORD)
    }
}

/// A property of an element the statement deleted: an error where the element is bound.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DeletedAccess {
    variable: String,
    signature: Signature,
}

impl ScalarUDFImpl for DeletedAccess {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        "deleted_entity_access"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(arg_types.get(1).cloned().unwrap_or(DataType::Null))
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let bound = match &args.args[0] {
            ColumnarValue::Array(a) => a.len() > a.null_count(),
            ColumnarValue::Scalar(v) => !v.is_null() && args.number_rows > 0,
        };
        if bound {
            return Err(datafusion::error::DataFusionError::Execution(format!(
                "EntityNotFound: `{}` was deleted by this statement; its properties and \
                 labels can no longer be read (DeletedEntityAccess)",
                self.variable
            )));
        }
        Ok(args.args[1].clone())
    }
}
