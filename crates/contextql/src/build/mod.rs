//! Turns pest pairs into AST nodes. Every method takes the pair of one grammar rule; tokens
//! (keywords, punctuation) are pairs too and are skipped unless their presence matters
//! (`DISTINCT`, `DETACH`, arrow heads, ...). A pair shape the grammar cannot produce becomes an
//! "internal parser error" instead of a panic.

mod ddl;
mod expr;

use std::cell::Cell;

use crate::ast::*;
use crate::error::ParseError;
use crate::lex::Trivia;
use crate::parser::{P, Result, Rule};
use expr::{join, mk};

pub(crate) struct Builder<'t> {
    text: &'t str,
    trivia: Trivia,
    /// Current number of nested `expr` calls (bounded by MAX_NESTING_DEPTH).
    nesting: Cell<usize>,
    /// Upper bound of the depth of the expression tree being built (MAX_EXPRESSION_DEPTH).
    depth: Cell<usize>,
}

impl<'t> Builder<'t> {
    pub(crate) fn new(text: &'t str, trivia: Trivia) -> Builder<'t> {
        Builder {
            text,
            trivia,
            nesting: Cell::new(0),
            depth: Cell::new(0),
        }
    }

    // --- helpers ------------------------------------------------------------------------------

    fn span(&self, p: &P) -> Span {
        let s = p.as_span();
        Span::new(s.start(), self.trivia.trimmed_end(s.start(), s.end()))
    }

    fn slice(&self, span: Span) -> &'t str {
        self.text.get(span.start..span.end).unwrap_or("")
    }

    fn err(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError::at(self.text, offset, message)
    }

    /// A pair shape the grammar does not produce; reported instead of panicking.
    fn internal(&self, offset: usize, what: &str) -> ParseError {
        self.err(offset, format!("internal parser error: {what}"))
    }

    fn need<T>(&self, v: Option<T>, p: &P, what: &str) -> Result<T> {
        v.ok_or_else(|| self.internal(p.as_span().start(), &format!("missing {what}")))
    }

    fn ident(&self, p: &P) -> Ident {
        Ident {
            name: unquote_name(p.as_str()),
            span: self.span(p),
        }
    }

    fn first_inner<'i>(&self, p: &P<'i>, rule: Rule) -> Option<P<'i>> {
        p.clone().into_inner().find(|c| c.as_rule() == rule)
    }

    fn has_inner(&self, p: &P, rule: Rule) -> bool {
        p.clone().into_inner().any(|c| c.as_rule() == rule)
    }

    // --- statements ---------------------------------------------------------------------------

    pub(crate) fn statement(&self, p: P) -> Result<Statement> {
        let span = self.span(&p);
        let mut explain = None;
        let mut at = None;
        let mut at_offset = 0;
        let mut body = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::explain => {
                    explain = Some(if self.has_inner(&c, Rule::kw_analyze) {
                        Explain::Analyze
                    } else {
                        Explain::Plan
                    })
                }
                Rule::time_travel => {
                    at_offset = c.as_span().start();
                    at = Some(self.time_travel(c)?);
                }
                Rule::create_node_table => {
                    body = Some(StatementBody::CreateNodeTable(self.create_node_table(c)?))
                }
                Rule::create_edge_table => {
                    body = Some(StatementBody::CreateEdgeTable(self.create_edge_table(c)?))
                }
                Rule::create_vector_index => {
                    body = Some(StatementBody::CreateVectorIndex(
                        self.create_vector_index(c)?,
                    ))
                }
                Rule::drop_stmt => body = Some(StatementBody::Drop(self.drop_object(c)?)),
                Rule::copy_stmt => body = Some(StatementBody::Copy(self.copy_from(c)?)),
                Rule::maintain_stmt => body = Some(StatementBody::Maintain(self.maintain(c)?)),
                Rule::show_indexes => body = Some(StatementBody::ShowIndexes),
                Rule::query => body = Some(StatementBody::Query(self.query(c)?)),
                _ => {}
            }
        }
        let body = self.need(body, &p, "statement body")?;
        if at.is_some() && !matches!(body, StatementBody::Query(_)) {
            return Err(self.err(
                at_offset,
                "AT SNAPSHOT / AT TIMESTAMP applies only to queries",
            ));
        }
        Ok(Statement {
            explain,
            at,
            body,
            span,
        })
    }

    fn time_travel(&self, p: P) -> Result<TimeTravel> {
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::snapshot_ref => {
                    let n = self.need(self.first_inner(&c, Rule::signed_integer), &c, "id")?;
                    return Ok(TimeTravel::Snapshot(self.signed_i64(&n)?));
                }
                Rule::timestamp_ref => {
                    let s = self.need(self.first_inner(&c, Rule::string_lit), &c, "string")?;
                    return Ok(TimeTravel::Timestamp(self.string(&s)?));
                }
                _ => {}
            }
        }
        Err(self.internal(p.as_span().start(), "time travel"))
    }

    // --- queries ------------------------------------------------------------------------------

    fn query(&self, p: P) -> Result<Query> {
        let mut parts = Vec::new();
        let mut union_all = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::single_query => parts.push(self.single_query(c)?),
                Rule::union_op => union_all.push(self.has_inner(&c, Rule::kw_all)),
                _ => {}
            }
        }
        Ok(Query { parts, union_all })
    }

    fn single_query(&self, p: P) -> Result<SingleQuery> {
        let mut clauses = Vec::new();
        for c in p.into_inner() {
            let clause = match c.as_rule() {
                Rule::match_clause => Clause::Match(self.match_clause(c)?),
                Rule::unwind_clause => Clause::Unwind(self.unwind(c)?),
                Rule::with_clause => Clause::With(self.projection(c)?),
                Rule::return_clause => Clause::Return(self.projection(c)?),
                Rule::create_clause => Clause::Create(self.create_clause(c)?),
                Rule::merge_clause => Clause::Merge(self.merge_clause(c)?),
                Rule::set_clause => Clause::Set(self.set_clause(c)?),
                Rule::remove_clause => Clause::Remove(self.remove_clause(c)?),
                Rule::delete_clause => Clause::Delete(self.delete_clause(c)?),
                Rule::vector_clause => Clause::VectorSimilar(self.vector_clause(c)?),
                _ => continue,
            };
            clauses.push(clause);
        }
        Ok(SingleQuery { clauses })
    }

    fn match_clause(&self, p: P) -> Result<MatchClause> {
        let span = self.span(&p);
        let mut optional = false;
        let mut pattern = None;
        let mut where_ = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::kw_optional => optional = true,
                Rule::pattern => pattern = Some(self.pattern(c)?),
                Rule::where_clause => where_ = Some(self.inner_expr(c)?),
                _ => {}
            }
        }
        Ok(MatchClause {
            optional,
            pattern: self.need(pattern, &p, "pattern")?,
            where_,
            span,
        })
    }

    /// The expression of a keyword-plus-expression pair (WHERE, SKIP, LIMIT, ELSE, ...).
    fn inner_expr(&self, p: P) -> Result<Expr> {
        let e = self.need(self.first_inner(&p, Rule::expr), &p, "expression")?;
        self.expr(e)
    }

    fn unwind(&self, p: P) -> Result<Unwind> {
        let span = self.span(&p);
        let e = self.need(self.first_inner(&p, Rule::expr), &p, "expression")?;
        let v = self.need(self.first_inner(&p, Rule::variable), &p, "alias")?;
        Ok(Unwind {
            expr: self.expr(e)?,
            alias: self.ident(&v),
            span,
        })
    }

    /// WITH or RETURN.
    fn projection(&self, p: P) -> Result<Projection> {
        let mut proj = Projection {
            distinct: false,
            star: false,
            items: Vec::new(),
            order_by: Vec::new(),
            skip: None,
            limit: None,
            where_: None,
            span: self.span(&p),
        };
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::projection_body => self.projection_body(c, &mut proj)?,
                Rule::where_clause => proj.where_ = Some(self.inner_expr(c)?),
                _ => {}
            }
        }
        Ok(proj)
    }

    fn projection_body(&self, p: P, proj: &mut Projection) -> Result<()> {
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_distinct => proj.distinct = true,
                Rule::projection_items => {
                    proj.star = self.has_inner(&c, Rule::star);
                    for item in c.into_inner() {
                        if item.as_rule() == Rule::projection_item {
                            proj.items.push(self.projection_item(item)?);
                        }
                    }
                }
                Rule::order_by => {
                    for s in c.into_inner() {
                        if s.as_rule() == Rule::sort_item {
                            proj.order_by.push(self.sort_item(s)?);
                        }
                    }
                }
                Rule::skip_clause => proj.skip = Some(self.inner_expr(c)?),
                Rule::limit_clause => proj.limit = Some(self.inner_expr(c)?),
                _ => {}
            }
        }
        Ok(())
    }

    fn projection_item(&self, p: P) -> Result<ProjectionItem> {
        let span = self.span(&p);
        let e = self.need(self.first_inner(&p, Rule::expr), &p, "expression")?;
        let text = self.slice(self.span(&e)).trim().to_string();
        let alias = self.first_inner(&p, Rule::variable).map(|v| self.ident(&v));
        Ok(ProjectionItem {
            expr: self.expr(e)?,
            alias,
            text,
            span,
        })
    }

    fn sort_item(&self, p: P) -> Result<SortItem> {
        let e = self.need(self.first_inner(&p, Rule::expr), &p, "expression")?;
        let descending =
            self.has_inner(&p, Rule::kw_desc) || self.has_inner(&p, Rule::kw_descending);
        Ok(SortItem {
            expr: self.expr(e)?,
            descending,
        })
    }

    fn create_clause(&self, p: P) -> Result<CreateClause> {
        let span = self.span(&p);
        let pat = self.need(self.first_inner(&p, Rule::pattern), &p, "pattern")?;
        Ok(CreateClause {
            pattern: self.pattern(pat)?,
            span,
        })
    }

    fn merge_clause(&self, p: P) -> Result<MergeClause> {
        let span = self.span(&p);
        let mut pattern = None;
        let mut on_create = Vec::new();
        let mut on_match = Vec::new();
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::pattern_part => pattern = Some(self.pattern_part(c)?),
                Rule::merge_action => {
                    let on_create_action = self.has_inner(&c, Rule::kw_create);
                    let items = self.set_items(c)?;
                    if on_create_action {
                        on_create.extend(items);
                    } else {
                        on_match.extend(items);
                    }
                }
                _ => {}
            }
        }
        Ok(MergeClause {
            pattern: self.need(pattern, &p, "pattern")?,
            on_create,
            on_match,
            span,
        })
    }

    fn set_clause(&self, p: P) -> Result<SetClause> {
        let span = self.span(&p);
        Ok(SetClause {
            items: self.set_items(p)?,
            span,
        })
    }

    fn set_items(&self, p: P) -> Result<Vec<SetItem>> {
        let mut items = Vec::new();
        for c in p.into_inner() {
            let rule = c.as_rule();
            if !matches!(
                rule,
                Rule::set_property | Rule::set_merge | Rule::set_replace | Rule::set_labels
            ) {
                continue;
            }
            let value = match self.first_inner(&c, Rule::expr) {
                Some(e) => Some(self.expr(e)?),
                None => None,
            };
            let variable = self.first_inner(&c, Rule::variable).map(|v| self.ident(&v));
            let item = match rule {
                Rule::set_property => {
                    let t = self.need(self.first_inner(&c, Rule::property_target), &c, "target")?;
                    SetItem::Property {
                        target: self.property_target(t)?,
                        value: self.need(value, &c, "value")?,
                    }
                }
                Rule::set_merge => SetItem::Merge {
                    variable: self.need(variable, &c, "variable")?,
                    value: self.need(value, &c, "value")?,
                },
                Rule::set_replace => SetItem::Replace {
                    variable: self.need(variable, &c, "variable")?,
                    value: self.need(value, &c, "value")?,
                },
                _ => SetItem::Labels {
                    variable: self.need(variable, &c, "variable")?,
                    labels: self.labels(&c),
                },
            };
            items.push(item);
        }
        Ok(items)
    }

    /// `n.a.b` as nested Property expressions.
    fn property_target(&self, p: P) -> Result<Expr> {
        let mut expr: Option<Expr> = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::variable => {
                    let id = self.ident(&c);
                    expr = Some(mk(ExprKind::Variable(id.name), id.span));
                }
                Rule::prop_lookup => {
                    let base = self.need(expr.take(), &p, "variable")?;
                    let key = self.need(self.first_inner(&c, Rule::prop_key), &c, "key")?;
                    let span = join(base.span, self.span(&c));
                    expr = Some(mk(
                        ExprKind::Property(Box::new(base), unquote_name(key.as_str())),
                        span,
                    ));
                }
                _ => {}
            }
        }
        self.need(expr, &p, "property")
    }

    /// All label names below `p` (node_labels / label_test children).
    fn labels(&self, p: &P) -> Vec<Ident> {
        p.clone()
            .into_inner()
            .flatten()
            .filter(|c| c.as_rule() == Rule::label_name)
            .map(|c| self.ident(&c))
            .collect()
    }

    fn remove_clause(&self, p: P) -> Result<RemoveClause> {
        let span = self.span(&p);
        let mut items = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::remove_property => {
                    let t = self.need(self.first_inner(&c, Rule::property_target), &c, "target")?;
                    items.push(RemoveItem::Property(self.property_target(t)?));
                }
                Rule::remove_labels => {
                    let v = self.need(self.first_inner(&c, Rule::variable), &c, "variable")?;
                    items.push(RemoveItem::Labels {
                        variable: self.ident(&v),
                        labels: self.labels(&c),
                    });
                }
                _ => {}
            }
        }
        Ok(RemoveClause { items, span })
    }

    fn delete_clause(&self, p: P) -> Result<DeleteClause> {
        let span = self.span(&p);
        let detach = self.has_inner(&p, Rule::kw_detach);
        let exprs = self.exprs_in(p)?;
        Ok(DeleteClause {
            detach,
            exprs,
            span,
        })
    }

    fn exprs_in(&self, p: P) -> Result<Vec<Expr>> {
        p.into_inner()
            .filter(|c| c.as_rule() == Rule::expr)
            .map(|c| self.expr(c))
            .collect()
    }

    fn vector_clause(&self, p: P) -> Result<VectorSimilar> {
        let span = self.span(&p);
        let mut query = None;
        let mut on = None;
        let mut metric = None;
        let mut limit = None;
        let mut threshold = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::expr => query = Some(self.expr(c)?),
                Rule::vector_on => {
                    let v = self.need(self.first_inner(&c, Rule::variable), &c, "variable")?;
                    let k = self.need(self.first_inner(&c, Rule::prop_key), &c, "property")?;
                    on = Some((self.ident(&v), self.ident(&k)));
                }
                Rule::vector_metric => {
                    let m = self.need(self.first_inner(&c, Rule::metric_name), &c, "metric")?;
                    metric = Some(match m.as_str().to_ascii_lowercase().as_str() {
                        "cosine" => Metric::Cosine,
                        "l2" => Metric::L2,
                        _ => Metric::Dot,
                    });
                }
                Rule::vector_limit => limit = Some(self.inner_expr(c)?),
                Rule::vector_threshold => threshold = Some(self.inner_expr(c)?),
                _ => {}
            }
        }
        Ok(VectorSimilar {
            query: self.need(query, &p, "query vector")?,
            on,
            metric,
            limit: self.need(limit, &p, "LIMIT")?,
            threshold,
            span,
        })
    }

    // --- patterns -----------------------------------------------------------------------------

    fn pattern(&self, p: P) -> Result<Vec<PatternPart>> {
        p.into_inner()
            .filter(|c| c.as_rule() == Rule::pattern_part)
            .map(|c| self.pattern_part(c))
            .collect()
    }

    fn pattern_part(&self, p: P) -> Result<PatternPart> {
        let span = self.span(&p);
        let mut variable = None;
        let mut kind = PatternKind::Plain;
        let mut element = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::variable => variable = Some(self.ident(&c)),
                Rule::pattern_element => element = Some(self.pattern_element(c)?),
                Rule::shortest_path | Rule::all_shortest_paths => {
                    kind = if c.as_rule() == Rule::shortest_path {
                        PatternKind::ShortestPath
                    } else {
                        PatternKind::AllShortestPaths
                    };
                    let e =
                        self.need(self.first_inner(&c, Rule::pattern_element), &c, "pattern")?;
                    element = Some(self.pattern_element(e)?);
                }
                _ => {}
            }
        }
        Ok(PatternPart {
            variable,
            kind,
            element: self.need(element, &p, "pattern")?,
            span,
        })
    }

    fn pattern_element(&self, p: P) -> Result<PatternElement> {
        // `((a)-->(b))`: recursion bounded by the bracket pre-scan.
        if let Some(inner) = self.first_inner(&p, Rule::pattern_element) {
            return self.pattern_element(inner);
        }
        let mut start = None;
        let mut chain = Vec::new();
        let mut rel = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::node_pattern => {
                    let node = self.node_pattern(c)?;
                    match rel.take() {
                        Some(r) => chain.push((r, node)),
                        None => start = Some(node),
                    }
                }
                Rule::rel_pattern => rel = Some(self.rel_pattern(c)?),
                _ => {}
            }
        }
        Ok(PatternElement {
            start: self.need(start, &p, "node")?,
            chain,
        })
    }

    fn pattern_chain(&self, p: P) -> Result<Vec<(RelPattern, NodePattern)>> {
        let mut chain = Vec::new();
        let mut rel = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::rel_pattern => rel = Some(self.rel_pattern(c)?),
                Rule::node_pattern => {
                    let r = self.need(rel.take(), &c, "relationship")?;
                    chain.push((r, self.node_pattern(c)?));
                }
                _ => {}
            }
        }
        Ok(chain)
    }

    fn node_pattern(&self, p: P) -> Result<NodePattern> {
        let span = self.span(&p);
        let mut node = self.node_body(p)?;
        node.span = span;
        Ok(node)
    }

    /// The inside of `( ... )` (node_pattern or node_only_body); span is set by the caller.
    fn node_body(&self, p: P) -> Result<NodePattern> {
        let mut node = NodePattern {
            variable: None,
            labels: Vec::new(),
            properties: None,
            span: Span::default(),
        };
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::variable => node.variable = Some(self.ident(&c)),
                Rule::node_labels => node.labels = self.labels(&c),
                Rule::map_literal | Rule::parameter => node.properties = Some(self.properties(c)?),
                _ => {}
            }
        }
        Ok(node)
    }

    fn properties(&self, p: P) -> Result<Expr> {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::map_literal => Ok(mk(self.map_literal(p)?, span)),
            _ => Ok(mk(ExprKind::Parameter(parameter_name(p.as_str())), span)),
        }
    }

    fn rel_pattern(&self, p: P) -> Result<RelPattern> {
        let span = self.span(&p);
        let left = self.has_inner(&p, Rule::arrow_left);
        let right = self.has_inner(&p, Rule::arrow_right);
        let mut rel = RelPattern {
            variable: None,
            types: Vec::new(),
            length: None,
            properties: None,
            direction: match (left, right) {
                (true, false) => Direction::Incoming,
                (false, true) => Direction::Outgoing,
                _ => Direction::Both,
            },
            span,
        };
        if let Some(detail) = self.first_inner(&p, Rule::rel_detail) {
            for c in detail.into_inner() {
                match c.as_rule() {
                    Rule::variable => rel.variable = Some(self.ident(&c)),
                    Rule::rel_types => {
                        rel.types = c
                            .into_inner()
                            .filter(|t| t.as_rule() == Rule::rel_type_name)
                            .map(|t| self.ident(&t))
                            .collect()
                    }
                    Rule::range_spec => rel.length = Some(self.range_spec(c)?),
                    Rule::map_literal | Rule::parameter => {
                        rel.properties = Some(self.properties(c)?)
                    }
                    _ => {}
                }
            }
        }
        Ok(rel)
    }

    fn range_spec(&self, p: P) -> Result<(Option<u64>, Option<u64>)> {
        let (mut min, mut max, mut dots) = (None, None, false);
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::range_dots => dots = true,
                Rule::range_int => {
                    let n = c.as_str().parse::<u64>().map_err(|_| {
                        self.err(c.as_span().start(), "relationship length is out of range")
                    })?;
                    if dots {
                        max = Some(n);
                    } else {
                        min = Some(n);
                    }
                }
                _ => {}
            }
        }
        if !dots {
            max = min; // `*2` is exactly two hops.
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return Err(self.err(
                p.as_span().start(),
                format!("invalid relationship length range *{lo}..{hi}: minimum exceeds maximum"),
            ));
        }
        Ok((min, max))
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers on token text
// ---------------------------------------------------------------------------------------------

/// `` `a``b` `` -> "a`b"; other names unchanged.
fn unquote_name(s: &str) -> String {
    match s.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        Some(inner) => inner.replace("``", "`"),
        None => s.to_string(),
    }
}

/// A dotted function name whose parts may be backquoted: `` a.`b c`.d ``.
fn unquote_dotted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '`' if quoted && chars.peek() == Some(&'`') => {
                chars.next();
                out.push('`');
            }
            '`' => quoted = !quoted,
            c => out.push(c),
        }
    }
    out
}

fn parameter_name(s: &str) -> String {
    unquote_name(s.strip_prefix('$').unwrap_or(s))
}

/// Value of an unsigned decimal, `0x` hex or `0o` octal integer; `None` on overflow.
fn int_value(s: &str) -> Option<u128> {
    let (digits, radix) = match s.get(..2) {
        Some("0x" | "0X") => (&s[2..], 16),
        Some("0o" | "0O") => (&s[2..], 8),
        _ => (s, 10),
    };
    u128::from_str_radix(digits, radix).ok()
}
