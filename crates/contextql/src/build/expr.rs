//! Expressions: operator precedence (pest's Pratt parser), operands and literals.

use std::sync::LazyLock;

use pest::pratt_parser::{Assoc, Op, PrattParser};

use super::{Builder, int_value, parameter_name, unquote_dotted, unquote_name};
use crate::ast::*;
use crate::error::ParseError;
use crate::parser::{MAX_EXPRESSION_DEPTH, MAX_NESTING_DEPTH, P, Result, Rule};

/// openCypher precedence, lowest first.
static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    use Rule::*;
    let l = Assoc::Left;
    PrattParser::new()
        .op(Op::infix(op_or, l))
        .op(Op::infix(op_xor, l))
        .op(Op::infix(op_and, l))
        .op(Op::prefix(op_not))
        .op(Op::infix(op_eq, l)
            | Op::infix(op_neq, l)
            | Op::infix(op_lt, l)
            | Op::infix(op_lte, l)
            | Op::infix(op_gt, l)
            | Op::infix(op_gte, l))
        .op(Op::infix(op_in, l)
            | Op::infix(op_starts_with, l)
            | Op::infix(op_ends_with, l)
            | Op::infix(op_contains, l)
            | Op::infix(op_regex, l)
            | Op::postfix(null_check))
        .op(Op::infix(op_add, l) | Op::infix(op_sub, l))
        .op(Op::infix(op_mul, l) | Op::infix(op_div, l) | Op::infix(op_mod, l))
        // Left-associative as in openCypher: 2^3^2 = 64.
        .op(Op::infix(op_pow, l))
        .op(Op::prefix(op_neg) | Op::prefix(op_pos))
        .op(Op::postfix(prop_lookup) | Op::postfix(bracket_op) | Op::postfix(label_test))
});

fn is_prefix(r: Rule) -> bool {
    matches!(r, Rule::op_not | Rule::op_neg | Rule::op_pos)
}

fn is_postfix(r: Rule) -> bool {
    matches!(
        r,
        Rule::null_check | Rule::prop_lookup | Rule::bracket_op | Rule::label_test
    )
}

fn is_infix(r: Rule) -> bool {
    use Rule::*;
    matches!(
        r,
        op_or
            | op_xor
            | op_and
            | op_eq
            | op_neq
            | op_lt
            | op_lte
            | op_gt
            | op_gte
            | op_in
            | op_starts_with
            | op_ends_with
            | op_contains
            | op_regex
            | op_add
            | op_sub
            | op_mul
            | op_div
            | op_mod
            | op_pow
    )
}

/// What the Pratt closures pass around.
struct Item {
    expr: Expr,
    /// The expression is a comparison chain that a following comparison extends
    /// (`a < b < c`); false once parenthesised.
    open_chain: bool,
    /// The literal 9223372036854775808, valid only right after a unary minus (i64::MIN).
    pending_min: bool,
}

impl Item {
    fn new(expr: Expr) -> Item {
        Item {
            expr,
            open_chain: false,
            pending_min: false,
        }
    }
}

pub(super) fn mk(kind: ExprKind, span: Span) -> Expr {
    Expr { kind, span }
}

pub(super) fn join(a: Span, b: Span) -> Span {
    Span::new(a.start.min(b.start), a.end.max(b.end))
}

impl Builder<'_> {
    pub(super) fn expr(&self, p: P) -> Result<Expr> {
        let offset = p.as_span().start();
        let seq: Vec<P> = p.into_inner().collect();
        let operators = seq.iter().filter(|c| c.as_rule() != Rule::primary).count();
        self.check_sequence(&seq, offset)?;

        let nesting = self.nesting.get() + 1;
        let depth = self.depth.get() + operators + 1;
        // The outermost expression is not nested in anything, hence the + 1.
        if nesting > MAX_NESTING_DEPTH + 1 {
            return Err(self.err(offset, format!("nesting deeper than {MAX_NESTING_DEPTH}")));
        }
        if depth > MAX_EXPRESSION_DEPTH {
            return Err(self.err(
                offset,
                format!("expression nested deeper than {MAX_EXPRESSION_DEPTH} operators"),
            ));
        }
        self.nesting.set(nesting);
        self.depth.set(depth);
        let result = self.pratt(seq);
        self.nesting.set(nesting - 1);
        self.depth.set(depth - operators - 1);

        let item = result?;
        self.settled(item)
    }

    /// pest's Pratt parser panics on a malformed operator sequence; the grammar never produces
    /// one, but check instead of trusting that.
    fn check_sequence(&self, seq: &[P], offset: usize) -> Result<()> {
        let mut want_operand = true;
        for c in seq {
            let r = c.as_rule();
            let ok = if want_operand {
                if r == Rule::primary {
                    want_operand = false;
                    true
                } else {
                    is_prefix(r)
                }
            } else if is_infix(r) {
                want_operand = true;
                true
            } else {
                is_postfix(r)
            };
            if !ok {
                return Err(self.internal(offset, "malformed expression"));
            }
        }
        if want_operand {
            return Err(self.internal(offset, "expression without operand"));
        }
        Ok(())
    }

    /// An operand that is complete: a pending i64::MIN magnitude without its minus is an error.
    fn settled(&self, item: Item) -> Result<Expr> {
        if item.pending_min {
            return Err(self.int_out_of_range(item.expr.span));
        }
        Ok(item.expr)
    }

    fn int_out_of_range(&self, span: Span) -> ParseError {
        self.err(
            span.start,
            format!(
                "integer literal {} is out of range (64-bit signed)",
                self.slice(span)
            ),
        )
    }

    fn pratt(&self, seq: Vec<P>) -> Result<Item> {
        PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(|op, rhs| self.prefix(op, rhs?))
            .map_postfix(|lhs, op| self.postfix(lhs?, op))
            .map_infix(|lhs, op, rhs| self.infix(lhs?, op, rhs?))
            .parse(seq.into_iter())
    }

    fn prefix(&self, op: P, rhs: Item) -> Result<Item> {
        let span = join(self.span(&op), rhs.expr.span);
        let kind = match op.as_rule() {
            Rule::op_neg => {
                // Fold `-<number>` into the literal; this is also the only way to write i64::MIN.
                if rhs.pending_min {
                    return Ok(Item::new(mk(
                        ExprKind::Literal(Literal::Integer(i64::MIN)),
                        span,
                    )));
                }
                match rhs.expr.kind {
                    ExprKind::Literal(Literal::Integer(n)) if n != i64::MIN => {
                        ExprKind::Literal(Literal::Integer(-n))
                    }
                    ExprKind::Literal(Literal::Float(f)) => ExprKind::Literal(Literal::Float(-f)),
                    kind => ExprKind::Unary(UnaryOp::Neg, Box::new(mk(kind, rhs.expr.span))),
                }
            }
            Rule::op_pos => ExprKind::Unary(UnaryOp::Plus, Box::new(self.settled(rhs)?)),
            _ => ExprKind::Unary(UnaryOp::Not, Box::new(self.settled(rhs)?)),
        };
        Ok(Item::new(mk(kind, span)))
    }

    fn postfix(&self, lhs: Item, op: P) -> Result<Item> {
        let lhs = self.settled(lhs)?;
        let span = join(lhs.span, self.span(&op));
        let kind = match op.as_rule() {
            Rule::prop_lookup => {
                let key = self.need(self.first_inner(&op, Rule::prop_key), &op, "key")?;
                ExprKind::Property(Box::new(lhs), unquote_name(key.as_str()))
            }
            Rule::label_test => ExprKind::HasLabels(Box::new(lhs), self.labels(&op)),
            Rule::null_check => ExprKind::IsNull {
                expr: Box::new(lhs),
                negated: self.has_inner(&op, Rule::kw_not),
            },
            _ => {
                // bracket_op: `[i]`, `[a..b]`, `[..b]`, `[a..]`, `[..]`
                let (mut from, mut to, mut dots) = (None, None, false);
                for c in op.clone().into_inner() {
                    match c.as_rule() {
                        Rule::range_dots => dots = true,
                        Rule::expr if dots => to = Some(Box::new(self.expr(c)?)),
                        Rule::expr => from = Some(Box::new(self.expr(c)?)),
                        _ => {}
                    }
                }
                if dots {
                    ExprKind::Slice(Box::new(lhs), from, to)
                } else {
                    ExprKind::Index(Box::new(lhs), self.need(from, &op, "index")?)
                }
            }
        };
        Ok(Item::new(mk(kind, span)))
    }

    fn infix(&self, lhs: Item, op: P, rhs: Item) -> Result<Item> {
        use Rule::*;
        let cmp = match op.as_rule() {
            op_eq => Some(CompareOp::Eq),
            op_neq => Some(CompareOp::NotEq),
            op_lt => Some(CompareOp::Lt),
            op_lte => Some(CompareOp::LtEq),
            op_gt => Some(CompareOp::Gt),
            op_gte => Some(CompareOp::GtEq),
            _ => None,
        };
        let open_chain = lhs.open_chain;
        let lhs = self.settled(lhs)?;
        let rhs = self.settled(rhs)?;
        let span = join(lhs.span, rhs.span);
        if let Some(cmp) = cmp {
            // `a < b < c` extends the chain started by `a < b`.
            let kind = match lhs.kind {
                ExprKind::Comparison(first, mut rest) if open_chain => {
                    rest.push((cmp, rhs));
                    ExprKind::Comparison(first, rest)
                }
                kind => ExprKind::Comparison(Box::new(mk(kind, lhs.span)), vec![(cmp, rhs)]),
            };
            return Ok(Item {
                expr: mk(kind, span),
                open_chain: true,
                pending_min: false,
            });
        }
        let bin = match op.as_rule() {
            op_or => BinaryOp::Or,
            op_xor => BinaryOp::Xor,
            op_and => BinaryOp::And,
            op_add => BinaryOp::Add,
            op_sub => BinaryOp::Sub,
            op_mul => BinaryOp::Mul,
            op_div => BinaryOp::Div,
            op_mod => BinaryOp::Mod,
            op_pow => BinaryOp::Pow,
            op_in => BinaryOp::In,
            op_starts_with => BinaryOp::StartsWith,
            op_ends_with => BinaryOp::EndsWith,
            op_contains => BinaryOp::Contains,
            op_regex => BinaryOp::RegexMatch,
            _ => return Err(self.internal(op.as_span().start(), "unknown operator")),
        };
        Ok(Item::new(mk(
            ExprKind::Binary(bin, Box::new(lhs), Box::new(rhs)),
            span,
        )))
    }

    fn primary(&self, p: P) -> Result<Item> {
        let span = self.span(&p);
        let inner = self.need(p.clone().into_inner().next(), &p, "operand")?;
        let lit = |l: Literal| Ok(Item::new(mk(ExprKind::Literal(l), span)));
        match inner.as_rule() {
            Rule::dec_int | Rule::hex_int | Rule::oct_int => {
                let v = int_value(inner.as_str());
                match v {
                    Some(v) if v <= i64::MAX as u128 => lit(Literal::Integer(v as i64)),
                    Some(v) if v == i64::MIN.unsigned_abs() as u128 => Ok(Item {
                        expr: mk(ExprKind::Literal(Literal::Integer(0)), span),
                        open_chain: false,
                        pending_min: true,
                    }),
                    _ => Err(self.int_out_of_range(span)),
                }
            }
            Rule::float_lit => lit(Literal::Float(self.float(&inner)?)),
            Rule::string_lit => lit(Literal::String(self.string(&inner)?)),
            Rule::kw_true => lit(Literal::Bool(true)),
            Rule::kw_false => lit(Literal::Bool(false)),
            Rule::kw_null => lit(Literal::Null),
            Rule::parameter => Ok(Item::new(mk(
                ExprKind::Parameter(parameter_name(inner.as_str())),
                span,
            ))),
            Rule::variable => Ok(Item::new(mk(
                ExprKind::Variable(unquote_name(inner.as_str())),
                span,
            ))),
            Rule::count_star => Ok(Item::new(mk(ExprKind::CountStar, span))),
            Rule::case_expr => Ok(Item::new(mk(self.case_expr(inner)?, span))),
            Rule::quantifier => Ok(Item::new(mk(self.quantifier(inner)?, span))),
            Rule::function_call => Ok(Item::new(mk(self.function_call(inner)?, span))),
            Rule::list_comprehension => Ok(Item::new(mk(self.comprehension(inner)?, span))),
            Rule::list_literal => Ok(Item::new(mk(ExprKind::List(self.exprs_in(inner)?), span))),
            Rule::map_literal => Ok(Item::new(mk(self.map_literal(inner)?, span))),
            Rule::paren_expr => Ok(Item::new(self.paren_expr(inner)?)),
            _ => Err(self.internal(span.start, "unknown operand")),
        }
    }

    pub(super) fn float(&self, p: &P) -> Result<f64> {
        match p.as_str().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err(self.err(
                p.as_span().start(),
                format!("float literal {} is out of range", p.as_str()),
            )),
        }
    }

    fn case_expr(&self, p: P) -> Result<ExprKind> {
        let mut operand = None;
        let mut whens = Vec::new();
        let mut else_ = None;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::case_operand => operand = Some(Box::new(self.inner_expr(c)?)),
                Rule::case_when => {
                    let mut es = self.exprs_in(c.clone())?.into_iter();
                    let (w, t) = (es.next(), es.next());
                    whens.push((self.need(w, &c, "WHEN")?, self.need(t, &c, "THEN")?));
                }
                Rule::case_else => else_ = Some(Box::new(self.inner_expr(c)?)),
                _ => {}
            }
        }
        Ok(ExprKind::Case {
            operand,
            whens,
            else_,
        })
    }

    fn quantifier(&self, p: P) -> Result<ExprKind> {
        let mut kind = None;
        let mut variable = None;
        let mut exprs = Vec::new();
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::kw_all => kind = Some(Quantifier::All),
                Rule::kw_any => kind = Some(Quantifier::Any),
                Rule::kw_none => kind = Some(Quantifier::None),
                Rule::kw_single => kind = Some(Quantifier::Single),
                Rule::variable => variable = Some(unquote_name(c.as_str())),
                Rule::expr => exprs.push(self.expr(c)?),
                _ => {}
            }
        }
        let mut exprs = exprs.into_iter();
        let list = self.need(exprs.next(), &p, "list")?;
        let Some(predicate) = exprs.next() else {
            let name = p.as_str().split('(').next().unwrap_or("").trim();
            return Err(self.err(
                p.as_span().start(),
                format!("{name}(variable IN list WHERE predicate) requires a WHERE predicate"),
            ));
        };
        Ok(ExprKind::Quantifier {
            kind: self.need(kind, &p, "quantifier")?,
            variable: self.need(variable, &p, "variable")?,
            list: Box::new(list),
            predicate: Box::new(predicate),
        })
    }

    fn function_call(&self, p: P) -> Result<ExprKind> {
        let name = self.need(self.first_inner(&p, Rule::function_name), &p, "name")?;
        Ok(ExprKind::Function {
            name: unquote_dotted(name.as_str()),
            distinct: self.has_inner(&p, Rule::kw_distinct),
            args: self.exprs_in(p)?,
        })
    }

    fn comprehension(&self, p: P) -> Result<ExprKind> {
        let mut variable = None;
        let mut list = None;
        let mut predicate = None;
        let mut projection = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::variable => variable = Some(unquote_name(c.as_str())),
                Rule::expr => list = Some(Box::new(self.expr(c)?)),
                Rule::comp_where => predicate = Some(Box::new(self.inner_expr(c)?)),
                Rule::comp_projection => projection = Some(Box::new(self.inner_expr(c)?)),
                _ => {}
            }
        }
        Ok(ExprKind::ListComprehension {
            variable: self.need(variable, &p, "variable")?,
            list: self.need(list, &p, "list")?,
            predicate,
            projection,
        })
    }

    pub(super) fn map_literal(&self, p: P) -> Result<ExprKind> {
        let mut entries = Vec::new();
        for c in p.into_inner() {
            if c.as_rule() == Rule::map_entry {
                let k = self.need(self.first_inner(&c, Rule::prop_key), &c, "key")?;
                let v = self.need(self.first_inner(&c, Rule::expr), &c, "value")?;
                entries.push((unquote_name(k.as_str()), self.expr(v)?));
            }
        }
        Ok(ExprKind::Map(entries))
    }

    /// `( expr )` or a pattern predicate starting with a parenthesised node.
    fn paren_expr(&self, p: P) -> Result<Expr> {
        let span = self.span(&p);
        let mut inner = None;
        let mut node_body = None;
        let mut chain = None;
        let mut close = span.end;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::expr => inner = Some(self.expr(c)?),
                Rule::node_only_body => node_body = Some(self.node_body(c)?),
                Rule::rparen => close = c.as_span().end(),
                Rule::pattern_chain => chain = Some(self.pattern_chain(c)?),
                _ => {}
            }
        }
        let node_span = Span::new(span.start, close);
        let Some(chain) = chain else {
            // A plain parenthesised expression; its span covers the parentheses.
            let mut e = self.need(inner, &p, "expression")?;
            e.span = span;
            return Ok(e);
        };
        let mut start = match inner {
            Some(e) => self.expr_to_node(e)?,
            None => node_body.unwrap_or(NodePattern {
                variable: None,
                labels: Vec::new(),
                properties: None,
                span: node_span,
            }),
        };
        start.span = node_span;
        Ok(mk(
            ExprKind::PatternPredicate(Box::new(PatternElement { start, chain })),
            span,
        ))
    }

    /// `(a)`, `(a:L)`, `({k: v})`, `($p)` were parsed as expressions; as the first node of a
    /// pattern predicate they become node patterns.
    fn expr_to_node(&self, e: Expr) -> Result<NodePattern> {
        let mut node = NodePattern {
            variable: None,
            labels: Vec::new(),
            properties: None,
            span: e.span,
        };
        match e.kind {
            ExprKind::Variable(name) => {
                node.variable = Some(Ident { name, span: e.span });
            }
            ExprKind::HasLabels(inner, labels) if matches!(inner.kind, ExprKind::Variable(_)) => {
                if let ExprKind::Variable(name) = inner.kind {
                    node.variable = Some(Ident {
                        name,
                        span: inner.span,
                    });
                }
                node.labels = labels;
            }
            ExprKind::Map(_) | ExprKind::Parameter(_) => node.properties = Some(e),
            _ => {
                return Err(self.err(
                    e.span.start,
                    "expected a node pattern before the relationship pattern",
                ));
            }
        }
        Ok(node)
    }

    // --- literals -----------------------------------------------------------------------------

    /// Decodes a quoted string literal (quotes included in `p`).
    pub(super) fn string(&self, p: &P) -> Result<String> {
        let raw = p.as_str();
        let base = p.as_span().start() + 1;
        let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or("");
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let at = base + i;
            let Some((_, e)) = chars.next() else {
                return Err(self.err(at, "unterminated escape sequence"));
            };
            match e {
                '\'' | '"' | '\\' => out.push(e),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{C}'),
                'u' | 'U' => {
                    let digits = if e == 'u' { 4 } else { 8 };
                    let mut code = self.hex_escape(&mut chars, digits, at)?;
                    // A UTF-16 surrogate pair written as two \u escapes.
                    if (0xD800..0xDC00).contains(&code) {
                        let mut look = chars.clone();
                        if let (Some((_, '\\')), Some((_, 'u'))) = (look.next(), look.next())
                            && let Ok(low) = self.hex_escape(&mut look, 4, at)
                            && (0xDC00..0xE000).contains(&low)
                        {
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            chars = look;
                        }
                    }
                    match char::from_u32(code) {
                        Some(ch) => out.push(ch),
                        None => {
                            return Err(self.err(
                                at,
                                format!("invalid unicode escape: U+{code:04X} is not a character"),
                            ));
                        }
                    }
                }
                other => {
                    return Err(self.err(at, format!("invalid escape sequence \\{other}")));
                }
            }
        }
        Ok(out)
    }

    fn hex_escape(
        &self,
        chars: &mut std::iter::Peekable<std::str::CharIndices>,
        digits: usize,
        at: usize,
    ) -> Result<u32> {
        let mut code = 0u32;
        for _ in 0..digits {
            match chars.next().and_then(|(_, d)| d.to_digit(16)) {
                Some(d) => code = code * 16 + d,
                None => {
                    return Err(self.err(
                        at,
                        format!("invalid unicode escape: expected {digits} hex digits"),
                    ));
                }
            }
        }
        Ok(code)
    }
}
