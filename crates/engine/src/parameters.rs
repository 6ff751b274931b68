//! The parameters of a ContextQL statement and their types, for clients that bind by a
//! declared schema (the Flight SQL JDBC driver sizes and types its parameter slots from a
//! prepared statement's parameter schema). SQL gets this from DataFusion's plan; ContextQL
//! infers each parameter's type from where it meets a property of a known label:
//!
//! - a pattern's property map, `(p:Person {id: $1})`, `-[:KNOWS {since: $2}]->`;
//! - a comparison with a property, `WHERE p.name = $name`, `$1 < p.age`;
//! - a property it sets, `SET p.name = $2`;
//! - `SKIP`, `LIMIT` and a vector search's `LIMIT`: BIGINT; its `THRESHOLD`: DOUBLE; its
//!   query: the searched property's vector type.
//!
//! A parameter met nowhere of those is VARCHAR. Parameters are listed in the order they first
//! appear: `$1, $2, ...` by number, then named ones.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use contextdb_planner::expr::walk;
use contextql::ast::{self, Clause, ExprKind, PatternPart, SetItem};

use crate::graph_source::Snapshot;

/// The parameter schema of `statement`: one nullable field per parameter.
pub(crate) fn parameter_schema(statement: &ast::Statement, snapshot: &Snapshot) -> SchemaRef {
    let ast::StatementBody::Query(query) = &statement.body else {
        return Arc::new(Schema::empty());
    };
    let mut found = Found::default();
    for part in &query.parts {
        found.labels = labels(&part.clauses);
        for clause in &part.clauses {
            found.clause(clause, snapshot);
        }
    }
    let mut names = found.order;
    // `$1, $2, ...` by number first: binding by position follows them.
    names.sort_by_key(|n| n.parse::<u64>().map_or((1, u64::MAX), |i| (0, i)));
    let fields: Vec<Field> = names
        .iter()
        .map(|name| {
            let t = found.types.get(name).cloned().unwrap_or(DataType::Utf8);
            Field::new(name, t, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The label (or relationship type) each variable of `clauses` is bound to.
fn labels(clauses: &[Clause]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut bind = |part: &PatternPart| {
        let nodes =
            std::iter::once(&part.element.start).chain(part.element.chain.iter().map(|(_, n)| n));
        for node in nodes {
            if let (Some(v), Some(l)) = (&node.variable, node.labels.first()) {
                out.insert(v.name.clone(), l.name.clone());
            }
        }
        for (rel, _) in &part.element.chain {
            if let (Some(v), [t]) = (&rel.variable, rel.types.as_slice()) {
                out.insert(v.name.clone(), t.name.clone());
            }
        }
    };
    for clause in clauses {
        match clause {
            Clause::Match(m) => m.pattern.iter().for_each(&mut bind),
            Clause::Create(c) => c.pattern.iter().for_each(&mut bind),
            Clause::Merge(m) => bind(&m.pattern),
            _ => {}
        }
    }
    out
}

#[derive(Default)]
struct Found {
    /// Parameter names in the order first met, and as a set (a statement may hold many).
    order: Vec<String>,
    seen: HashSet<String>,
    types: HashMap<String, DataType>,
    labels: HashMap<String, String>,
}

impl Found {
    fn met(&mut self, name: &str, t: Option<DataType>) {
        if self.seen.insert(name.to_string()) {
            self.order.push(name.to_string());
        }
        if let Some(t) = t {
            self.types.entry(name.to_string()).or_insert(t);
        }
    }

    /// Every parameter in `e`, typed where `e`'s comparisons say.
    fn expr(&mut self, e: &ast::Expr, snapshot: &Snapshot) {
        let mut typed = Vec::new();
        let mut all = Vec::new();
        walk(e, &mut |x| match &x.kind {
            ExprKind::Parameter(name) => all.push(name.clone()),
            ExprKind::Comparison(first, rest) => {
                let sides: Vec<&ast::Expr> = std::iter::once(first.as_ref())
                    .chain(rest.iter().map(|(_, x)| x))
                    .collect();
                for pair in sides.windows(2) {
                    for (a, b) in [(pair[0], pair[1]), (pair[1], pair[0])] {
                        if let ExprKind::Parameter(name) = &b.kind
                            && let Some(t) = self.property_type(a, snapshot)
                        {
                            typed.push((name.clone(), t));
                        }
                    }
                }
            }
            _ => {}
        });
        for (name, t) in typed {
            self.met(&name, Some(t));
        }
        for name in all {
            self.met(&name, None);
        }
    }

    /// The stored type of `v.key` when `v` is bound to a label with that column.
    fn property_type(&self, e: &ast::Expr, snapshot: &Snapshot) -> Option<DataType> {
        let ExprKind::Property(base, key) = &e.kind else {
            return None;
        };
        let ExprKind::Variable(v) = &base.kind else {
            return None;
        };
        column_type(snapshot, self.labels.get(v)?, key)
    }

    /// A pattern's property maps: `{key: $p}` takes the label's column type.
    fn pattern(&mut self, part: &PatternPart, snapshot: &Snapshot) {
        let mut maps = vec![(
            part.element.start.labels.first(),
            &part.element.start.properties,
        )];
        for (rel, node) in &part.element.chain {
            maps.push((rel.types.first(), &rel.properties));
            maps.push((node.labels.first(), &node.properties));
        }
        for (label, properties) in maps {
            let Some(properties) = properties else {
                continue;
            };
            if let (ExprKind::Map(entries), Some(label)) = (&properties.kind, label) {
                for (key, value) in entries {
                    if let ExprKind::Parameter(name) = &value.kind {
                        self.met(name, column_type(snapshot, &label.name, key));
                    }
                }
            }
            self.expr(properties, snapshot);
        }
    }

    fn set_items(&mut self, items: &[SetItem], snapshot: &Snapshot) {
        for item in items {
            match item {
                SetItem::Property { target, value } => {
                    if let ExprKind::Parameter(name) = &value.kind {
                        self.met(name, self.property_type(target, snapshot));
                    }
                    self.expr(target, snapshot);
                    self.expr(value, snapshot);
                }
                SetItem::Replace { value, .. } | SetItem::Merge { value, .. } => {
                    self.expr(value, snapshot)
                }
                SetItem::Labels { .. } => {}
            }
        }
    }

    fn projection(&mut self, p: &ast::Projection, snapshot: &Snapshot) {
        for item in &p.items {
            self.expr(&item.expr, snapshot);
        }
        if let Some(w) = &p.where_ {
            self.expr(w, snapshot);
        }
        for s in &p.order_by {
            self.expr(&s.expr, snapshot);
        }
        for count in [&p.skip, &p.limit].into_iter().flatten() {
            self.count(count, snapshot);
        }
    }

    /// A SKIP or LIMIT: a parameter there is a BIGINT.
    fn count(&mut self, e: &ast::Expr, snapshot: &Snapshot) {
        if let ExprKind::Parameter(name) = &e.kind {
            self.met(name, Some(DataType::Int64));
        }
        self.expr(e, snapshot);
    }

    fn clause(&mut self, clause: &Clause, snapshot: &Snapshot) {
        match clause {
            Clause::Match(m) => {
                for part in &m.pattern {
                    self.pattern(part, snapshot);
                }
                if let Some(w) = &m.where_ {
                    self.expr(w, snapshot);
                }
            }
            Clause::Unwind(u) => self.expr(&u.expr, snapshot),
            Clause::With(p) | Clause::Return(p) => self.projection(p, snapshot),
            Clause::Create(c) => {
                for part in &c.pattern {
                    self.pattern(part, snapshot);
                }
            }
            Clause::Merge(m) => {
                self.pattern(&m.pattern, snapshot);
                self.set_items(&m.on_create, snapshot);
                self.set_items(&m.on_match, snapshot);
            }
            Clause::Set(s) => self.set_items(&s.items, snapshot),
            Clause::Remove(_) => {}
            Clause::Delete(d) => {
                for e in &d.exprs {
                    self.expr(e, snapshot);
                }
            }
            Clause::VectorSimilar(v) => {
                if let ExprKind::Parameter(name) = &v.query.kind {
                    let t = v.on.as_ref().and_then(|(var, prop)| {
                        column_type(snapshot, self.labels.get(&var.name)?, &prop.name)
                    });
                    self.met(name, t);
                }
                self.expr(&v.query, snapshot);
                self.count(&v.limit, snapshot);
                if let Some(t) = &v.threshold {
                    if let ExprKind::Parameter(name) = &t.kind {
                        self.met(name, Some(DataType::Float64));
                    }
                    self.expr(t, snapshot);
                }
            }
        }
    }
}

/// The type of column `key` of table `label`, as a query reads it.
fn column_type(snapshot: &Snapshot, label: &str, key: &str) -> Option<DataType> {
    let slot = snapshot.tables.get(label)?;
    Some(slot.schema.field_with_name(key).ok()?.data_type().clone())
}
