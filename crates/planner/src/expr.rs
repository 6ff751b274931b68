//! ContextQL expressions to DataFusion expressions.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field};
use contextql::ast::{self, BinaryOp, CompareOp, ExprKind, Literal, UnaryOp};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::functions::expr_fn as f;
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::functions_nested::expr_fn as nested;
use datafusion::logical_expr::{Expr, ExprSchemable, cast, lit, when};
use std::sync::Arc;

use crate::PlanError;
use crate::lambda::{LambdaKind, ListLambda};
use crate::nodes::{ID, LABEL, ORD, TYPE, UNLABELED, column_name};
use crate::scope::{Scope, VarKind};

/// Values bound to `$name` parameters.
pub type Params = HashMap<String, ScalarValue>;

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Converts expressions of one clause. Aggregates are collected into `aggregates` when
/// `collect_aggregates` is set (RETURN/WITH with aggregation), otherwise they are an error.
pub struct ExprContext<'a> {
    pub scope: &'a Scope,
    pub schema: &'a DFSchema,
    pub params: &'a Params,
    pub text: &'a str,
    pub aggregates: Option<&'a mut Vec<(Expr, String)>>,
    /// How deep [`ExprContext::convert`] is in the expression now.
    pub depth: usize,
    /// The pattern predicates of the expression (by their position) and the boolean column
    /// that says, per row, whether each has a match (see `Lowering::filter`).
    pub patterns: &'a [(ast::Span, String)],
}

/// The deepest expression the planner converts. The parser accepts deeper ones
/// (`contextql::MAX_EXPRESSION_DEPTH`), but DataFusion walks expressions recursively in many
/// places, and past this depth a 1 MiB thread stack no longer suffices in a debug build.
pub const MAX_PLAN_EXPRESSION_DEPTH: usize = 256;

fn err(text: &str, span: ast::Span, message: impl Into<String>) -> PlanError {
    PlanError::at(text, span, message)
}

pub const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "collect",
    "stdev",
    "stdevp",
    "percentiledisc",
    "percentilecont",
];

pub fn is_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    walk(e, &mut |e| {
        if let ExprKind::Function { name, .. } = &e.kind
            && AGGREGATES.contains(&name.to_ascii_lowercase().as_str())
        {
            found = true;
        }
        if matches!(e.kind, ExprKind::CountStar) {
            found = true;
        }
    });
    found
}

/// The kind of value an Arrow type holds, for openCypher's comparability: numbers, strings
/// and booleans compare only within their kind. None: a kind this rule leaves to SQL's
/// comparison (nulls, temporal values, lists, maps).
pub(crate) fn value_kind(t: &DataType) -> Option<u8> {
    if t.is_numeric() {
        Some(0)
    } else if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        Some(1)
    } else if *t == DataType::Boolean {
        Some(2)
    } else {
        None
    }
}

/// `array_agg(x)` over the non-null values of `x` (openCypher's `collect()` skips nulls).
fn collect_non_null(x: Expr, distinct: bool) -> Expr {
    match datafusion::functions_aggregate::array_agg::array_agg_udaf().call(vec![x.clone()]) {
        Expr::AggregateFunction(mut af) => {
            af.params.filter = Some(Box::new(x.is_not_null()));
            af.params.distinct = distinct;
            Expr::AggregateFunction(af)
        }
        other => other,
    }
}

/// Visits `e` and its sub-expressions.
pub fn walk(e: &ast::Expr, visit: &mut dyn FnMut(&ast::Expr)) {
    visit(e);
    for child in children(e) {
        walk(child, visit);
    }
}

/// The direct sub-expressions of `e`.
pub fn children(e: &ast::Expr) -> Vec<&ast::Expr> {
    match &e.kind {
        ExprKind::Property(x, _)
        | ExprKind::Unary(_, x)
        | ExprKind::HasLabels(x, _)
        | ExprKind::IsNull { expr: x, .. } => vec![x],
        ExprKind::List(xs) | ExprKind::Function { args: xs, .. } => xs.iter().collect(),
        ExprKind::Map(kv) => kv.iter().map(|(_, x)| x).collect(),
        ExprKind::Binary(_, a, b) | ExprKind::Index(a, b) => vec![a, b],
        ExprKind::Comparison(a, rest) => std::iter::once(a.as_ref())
            .chain(rest.iter().map(|(_, x)| x))
            .collect(),
        ExprKind::Slice(a, b, c) => std::iter::once(a.as_ref())
            .chain(b.iter().map(|x| x.as_ref()))
            .chain(c.iter().map(|x| x.as_ref()))
            .collect(),
        ExprKind::Case {
            operand,
            whens,
            else_,
        } => operand
            .iter()
            .map(|x| x.as_ref())
            .chain(whens.iter().flat_map(|(a, b)| [a, b]))
            .chain(else_.iter().map(|x| x.as_ref()))
            .collect(),
        ExprKind::ListComprehension {
            list,
            predicate,
            projection,
            ..
        } => std::iter::once(list.as_ref())
            .chain(predicate.iter().map(|x| x.as_ref()))
            .chain(projection.iter().map(|x| x.as_ref()))
            .collect(),
        ExprKind::Quantifier {
            list, predicate, ..
        } => vec![list, predicate],
        _ => vec![],
    }
}

/// Variables and variable properties of `e` read outside aggregate functions.
pub fn non_aggregate_leaves<'e>(e: &'e ast::Expr, out: &mut Vec<&'e ast::Expr>) {
    match &e.kind {
        ExprKind::Function { name, .. }
            if AGGREGATES.contains(&name.to_ascii_lowercase().as_str()) => {}
        ExprKind::CountStar => {}
        ExprKind::Variable(_) => out.push(e),
        ExprKind::Property(base, _) if matches!(base.kind, ExprKind::Variable(_)) => out.push(e),
        _ => children(e)
            .into_iter()
            .for_each(|c| non_aggregate_leaves(c, out)),
    }
}

/// A JSON-ish parameter value as a scalar.
pub fn literal_scalar(l: &Literal) -> ScalarValue {
    match l {
        Literal::Null => ScalarValue::Null,
        Literal::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Literal::Integer(i) => ScalarValue::Int64(Some(*i)),
        Literal::Float(x) => ScalarValue::Float64(Some(*x)),
        Literal::String(s) => ScalarValue::Utf8(Some(s.clone())),
    }
}

impl ExprContext<'_> {
    fn type_of(&self, e: &Expr) -> Option<DataType> {
        e.get_type(self.schema).ok()
    }

    /// The node or relationship value of `var` as a struct (null when unbound by OPTIONAL).
    pub fn entity_struct(&self, var: &str) -> Result<Expr, PlanError> {
        let kind = self.scope.get(var).cloned();
        let id = column(&column_name(var, ID));
        let (tag_name, tag, id) = match &kind {
            Some(VarKind::Node { .. }) => {
                let label = column(&column_name(var, LABEL));
                let label = when(
                    label.clone().eq(lit(UNLABELED)),
                    lit(ScalarValue::Utf8(None)),
                )
                .otherwise(label)?;
                ("_label", label, id)
            }
            Some(VarKind::Rel { .. }) => ("_type", column(&column_name(var, TYPE)), id),
            _ => {
                return Err(PlanError::new(format!(
                    "{var} is not a node or relationship"
                )));
            }
        };
        let mut args = vec![lit("_id"), id, lit(tag_name), tag];
        let prefix = format!("{var}.");
        for field in self.schema.fields() {
            let Some(prop) = field.name().strip_prefix(&prefix) else {
                continue;
            };
            // Internal columns (`_key` of tables made by schema evolution) stay hidden.
            if prop == ORD
                || prop == ID
                || prop == LABEL
                || prop == TYPE
                || (prop.starts_with('_') && prop != "_src" && prop != "_dst")
            {
                continue;
            }
            args.push(lit(prop));
            args.push(column(field.name()));
        }
        let value = f::named_struct(args);
        when(
            column(&column_name(var, ORD)).is_null(),
            lit(ScalarValue::Null),
        )
        .otherwise(value)
        .map_err(PlanError::from)
    }

    /// Converts one expression, refusing one nested deeper than
    /// [`MAX_PLAN_EXPRESSION_DEPTH`].
    pub fn convert(&mut self, e: &ast::Expr) -> Result<Expr, PlanError> {
        if self.depth >= MAX_PLAN_EXPRESSION_DEPTH {
            return Err(err(
                self.text,
                e.span,
                format!("expression nested deeper than {MAX_PLAN_EXPRESSION_DEPTH} levels"),
            ));
        }
        self.depth += 1;
        let converted = self.convert_kind(e);
        self.depth -= 1;
        converted
    }

    /// One level of [`ExprContext::convert`]. The stack grows on the heap when a thread's own
    /// runs short, so a small thread stack is not a crash.
    #[recursive::recursive]
    fn convert_kind(&mut self, e: &ast::Expr) -> Result<Expr, PlanError> {
        let text = self.text;
        Ok(match &e.kind {
            ExprKind::Literal(l) => lit(literal_scalar(l)),
            ExprKind::Parameter(name) => match self.params.get(name) {
                Some(v) => lit(v.clone()),
                None => return Err(err(text, e.span, format!("missing parameter ${name}"))),
            },
            ExprKind::Variable(name) => match self.scope.get(name) {
                Some(VarKind::Value) => column(name),
                Some(VarKind::Node { .. } | VarKind::Rel { .. }) => self.entity_struct(name)?,
                None => {
                    return Err(err(text, e.span, format!("variable `{name}` not defined")));
                }
            },
            ExprKind::Property(base, key) => {
                if let ExprKind::Variable(v) = &base.kind
                    && matches!(
                        self.scope.get(v),
                        Some(VarKind::Node { .. } | VarKind::Rel { .. })
                    )
                {
                    let name = column_name(v, key);
                    if self.schema.index_of_column_by_name(None, &name).is_some() {
                        column(&name)
                    } else {
                        // openCypher: a missing property reads as null.
                        lit(ScalarValue::Null)
                    }
                } else {
                    let base = self.convert(base)?;
                    match self.type_of(&base) {
                        Some(t) if is_path(&t) => {
                            return Err(err(
                                text,
                                e.span,
                                format!(
                                    "type mismatch: a path has no properties (`{key}`); \
                                     read them from nodes(p) or relationships(p)"
                                ),
                            ));
                        }
                        // A map without the key reads as null, as a node without the property.
                        Some(DataType::Struct(fields)) if fields.find(key).is_none() => {
                            lit(ScalarValue::Null)
                        }
                        Some(DataType::Struct(_)) => f::get_field(base, key.as_str()),
                        Some(DataType::Null) => lit(ScalarValue::Null),
                        _ => {
                            return Err(err(
                                text,
                                e.span,
                                format!(
                                    "type mismatch: cannot read property `{key}` of this value"
                                ),
                            ));
                        }
                    }
                }
            }
            ExprKind::List(items) => {
                let items = items
                    .iter()
                    .map(|x| self.convert(x))
                    .collect::<Result<Vec<_>, _>>()?;
                nested::make_array(items)
            }
            ExprKind::Map(entries) => {
                if entries.is_empty() {
                    let empty = arrow::array::StructArray::new_empty_fields(1, None);
                    return Ok(lit(ScalarValue::Struct(std::sync::Arc::new(empty))));
                }
                let mut args = Vec::new();
                for (k, v) in entries {
                    args.push(lit(k.as_str()));
                    args.push(self.convert(v)?);
                }
                f::named_struct(args)
            }
            ExprKind::Unary(op, x) => {
                let x = self.convert(x)?;
                match op {
                    UnaryOp::Not => Expr::Not(Box::new(x)),
                    UnaryOp::Neg => Expr::Negative(Box::new(x)),
                    UnaryOp::Plus => x,
                }
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b)?,
            ExprKind::Comparison(first, rest) => {
                let mut left = self.convert_comparable(first)?;
                let mut out: Option<Expr> = None;
                for (op, right) in rest {
                    let right = self.convert_comparable(right)?;
                    let kinds = (
                        self.type_of(&left).as_ref().and_then(value_kind),
                        self.type_of(&right).as_ref().and_then(value_kind),
                    );
                    let nested_values = [&left, &right].iter().any(|x| {
                        self.type_of(x)
                            .as_ref()
                            .is_some_and(crate::equality::nested)
                    });
                    let cmp = match kinds {
                        // openCypher's equality of lists and maps (nulls inside, kinds).
                        _ if nested_values && matches!(op, CompareOp::Eq | CompareOp::NotEq) => {
                            let equal = crate::equality::cypher_equal(left.clone(), right.clone());
                            if *op == CompareOp::Eq {
                                equal
                            } else {
                                Expr::Not(Box::new(equal))
                            }
                        }
                        // openCypher: values of different kinds (a string and a number, a
                        // boolean and a string) are never equal and have no order, where SQL
                        // would convert one to the other. A null operand still gives null.
                        (Some(a), Some(b)) if a != b => {
                            let null = lit(ScalarValue::Boolean(None));
                            let either_null = left.clone().is_null().or(right.clone().is_null());
                            match op {
                                CompareOp::Eq | CompareOp::NotEq => when(either_null, null)
                                    .otherwise(lit(*op == CompareOp::NotEq))
                                    .map_err(|x| err(text, e.span, format!("comparison: {x}")))?,
                                _ => null,
                            }
                        }
                        _ => {
                            let cmp = match op {
                                CompareOp::Eq => left.clone().eq(right.clone()),
                                CompareOp::NotEq => left.clone().not_eq(right.clone()),
                                CompareOp::Lt => left.clone().lt(right.clone()),
                                CompareOp::LtEq => left.clone().lt_eq(right.clone()),
                                CompareOp::Gt => left.clone().gt(right.clone()),
                                CompareOp::GtEq => left.clone().gt_eq(right.clone()),
                            };
                            // openCypher: NaN equals nothing, itself included, and is neither
                            // less nor greater than anything; SQL orders it above every
                            // number. A null operand still gives null (isnan of null is null).
                            let nans: Vec<Expr> = [&left, &right]
                                .into_iter()
                                .filter(|x| self.type_of(x).is_some_and(|t| t.is_floating()))
                                .map(|x| f::isnan(x.clone()))
                                .collect();
                            // The comparison stays a conjunct of its own, for pushdown.
                            match nans.into_iter().reduce(Expr::or) {
                                Some(nan) if *op == CompareOp::NotEq => cmp.or(nan),
                                Some(nan) => cmp.and(!nan),
                                None => cmp,
                            }
                        }
                    };
                    out = Some(match out {
                        Some(prev) => prev.and(cmp),
                        None => cmp,
                    });
                    left = right;
                }
                out.ok_or_else(|| err(text, e.span, "empty comparison"))?
            }
            ExprKind::IsNull { expr, negated } => {
                let x = self.convert_comparable(expr)?;
                if *negated {
                    x.is_not_null()
                } else {
                    x.is_null()
                }
            }
            ExprKind::HasLabels(x, labels) => {
                let ExprKind::Variable(v) = &x.kind else {
                    return Err(err(text, e.span, "label test needs a node variable"));
                };
                match self.scope.get(v) {
                    Some(VarKind::Node { .. }) => {
                        // One label per node: `n:A:B` holds only when A and B are the same.
                        let label = column(&column_name(v, LABEL));
                        labels
                            .iter()
                            .map(|l| label.clone().eq(lit(l.name.clone())))
                            .reduce(|a, b| a.and(b))
                            .unwrap_or(lit(true))
                    }
                    _ => return Err(err(text, x.span, format!("`{v}` is not a node"))),
                }
            }
            ExprKind::Index(list, index) => {
                let list_expr = self.convert(list)?;
                let index_expr = self.convert(index)?;
                match self.type_of(&list_expr) {
                    Some(DataType::Struct(_)) => match &index.kind {
                        ExprKind::Literal(Literal::String(key)) => {
                            f::get_field(list_expr, key.as_str())
                        }
                        _ => return Err(err(text, index.span, "map keys must be string literals")),
                    },
                    _ => {
                        // Cypher lists are 0-based and negative indexes count from the end;
                        // array_element is 1-based with the same negative convention.
                        let one_based = when(index_expr.clone().lt(lit(0i64)), index_expr.clone())
                            .otherwise(index_expr + lit(1i64))?;
                        nested::array_element(list_expr, one_based)
                    }
                }
            }
            ExprKind::Function {
                name,
                distinct,
                args,
            } => self.function(e, name, *distinct, args)?,
            ExprKind::CountStar => self.aggregate(agg::count(lit(1i64)), e)?,
            ExprKind::Case {
                operand,
                whens,
                else_,
            } => {
                let operand = operand.as_ref().map(|o| self.convert(o)).transpose()?;
                let mut builder: Option<
                    datafusion::logical_expr::conditional_expressions::CaseBuilder,
                > = None;
                for (w, t) in whens {
                    let mut w = self.convert(w)?;
                    if let Some(o) = &operand {
                        w = o.clone().eq(w);
                    }
                    let t = self.convert(t)?;
                    builder = Some(match builder {
                        None => when(w, t),
                        Some(mut b) => b.when(w, t),
                    });
                }
                let mut builder = builder.ok_or_else(|| err(text, e.span, "CASE needs a WHEN"))?;
                match else_ {
                    Some(x) => builder.otherwise(self.convert(x)?)?,
                    None => builder.otherwise(lit(ScalarValue::Null))?,
                }
            }
            ExprKind::Star => return Err(err(text, e.span, "`*` is not an expression here")),
            ExprKind::Slice(list, from, to) => {
                let list = self.convert(list)?;
                let from = match from {
                    Some(x) => self.convert(x)? + lit(1i64),
                    None => lit(1i64),
                };
                let to = match to {
                    Some(x) => self.convert(x)?,
                    None => nested::cardinality(list.clone()),
                };
                nested::array_slice(list, from, to, None)
            }
            ExprKind::ListComprehension {
                variable,
                list,
                predicate,
                projection,
            } => self.lambda(
                LambdaKind::Comprehension,
                variable,
                list,
                predicate.as_deref(),
                projection.as_deref(),
            )?,
            ExprKind::Quantifier {
                kind,
                variable,
                list,
                predicate,
            } => {
                let kind = match kind {
                    ast::Quantifier::All => LambdaKind::All,
                    ast::Quantifier::Any => LambdaKind::Any,
                    ast::Quantifier::None => LambdaKind::None,
                    ast::Quantifier::Single => LambdaKind::Single,
                };
                self.lambda(kind, variable, list, Some(predicate), None)?
            }
            ExprKind::PatternPredicate(_) => match self.patterns.iter().find(|(s, _)| *s == e.span)
            {
                Some((_, name)) => column(name),
                None => {
                    return Err(err(
                        text,
                        e.span,
                        "a pattern predicate is only supported in WHERE",
                    ));
                }
            },
        })
    }

    /// A list comprehension or quantifier: `variable` ranges over the elements of `list`
    /// in `predicate` and `projection`, beside the variables in scope (it hides one of the
    /// same name).
    fn lambda(
        &mut self,
        kind: LambdaKind,
        variable: &str,
        list: &ast::Expr,
        predicate: Option<&ast::Expr>,
        projection: Option<&ast::Expr>,
    ) -> Result<Expr, PlanError> {
        let text = self.text;
        let list_expr = self.convert(list)?;
        let element = match self.type_of(&list_expr) {
            Some(
                DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _),
            ) => item.data_type().clone(),
            Some(DataType::Null) => {
                return Ok(lit(match kind {
                    LambdaKind::Comprehension => ScalarValue::Null,
                    _ => ScalarValue::Boolean(None),
                }));
            }
            _ => {
                return Err(err(
                    text,
                    list.span,
                    "type mismatch: `IN` of a list comprehension or quantifier takes a list",
                ));
            }
        };
        // The body sees the outer columns and the element as `variable`.
        let mut fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .filter(|f| f.name() != variable)
            .map(|f| f.as_ref().clone())
            .collect();
        let element_field = Field::new(variable, element, true);
        fields.push(element_field.clone());
        let inner =
            DFSchema::try_from(arrow::datatypes::Schema::new(fields)).map_err(PlanError::from)?;
        let mut scope = Scope::default();
        for (name, var_kind) in self.scope.all() {
            if name != variable {
                scope.bind(name, var_kind.clone(), false);
            }
        }
        scope.bind(variable, VarKind::Value, false);
        let mut body = ExprContext {
            scope: &scope,
            schema: &inner,
            params: self.params,
            text,
            aggregates: None,
            depth: self.depth,
            patterns: self.patterns,
        };
        let predicate = predicate.map(|p| body.convert(p)).transpose()?;
        let projection = projection.map(|p| body.convert(p)).transpose()?;
        // The outer columns the body reads, passed to it as arguments.
        let mut captured: Vec<String> = predicate
            .iter()
            .chain(&projection)
            .flat_map(|e| e.column_refs())
            .map(|c| c.name.clone())
            .filter(|n| n != variable)
            .collect();
        captured.sort();
        captured.dedup();
        let captured = captured
            .into_iter()
            .map(|name| {
                let field = inner
                    .field_with_unqualified_name(&name)
                    .map_err(PlanError::from)?
                    .as_ref()
                    .clone();
                Ok((column(&name), field))
            })
            .collect::<Result<Vec<_>, PlanError>>()?;
        Ok(ListLambda::call(
            kind,
            list_expr,
            element_field,
            captured,
            predicate,
            projection,
            &inner,
        )?)
    }

    /// Nodes and relationships compare and test for null by identity (their ordinal).
    fn convert_comparable(&mut self, e: &ast::Expr) -> Result<Expr, PlanError> {
        if let ExprKind::Variable(v) = &e.kind
            && matches!(
                self.scope.get(v),
                Some(VarKind::Node { .. } | VarKind::Rel { .. })
            )
        {
            return Ok(column(&column_name(v, ORD)));
        }
        self.convert(e)
    }

    fn binary(&mut self, op: BinaryOp, a: &ast::Expr, b: &ast::Expr) -> Result<Expr, PlanError> {
        let l = self.convert(a)?;
        let r = self.convert(b)?;
        Ok(match op {
            BinaryOp::Or => l.or(r),
            BinaryOp::And => l.and(r),
            BinaryOp::Xor => l.clone().not_eq(r.clone()),
            BinaryOp::Add => {
                let (lt, rt) = (self.type_of(&l), self.type_of(&r));
                let is_str = |t: &Option<DataType>| {
                    matches!(
                        t,
                        Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                    )
                };
                let is_list = |t: &Option<DataType>| {
                    matches!(t, Some(DataType::List(_) | DataType::LargeList(_)))
                };
                if is_list(&lt) || is_list(&rt) {
                    let wrap = |x: Expr, t: &Option<DataType>| {
                        if is_list(t) {
                            x
                        } else {
                            nested::make_array(vec![x])
                        }
                    };
                    nested::array_concat(vec![wrap(l, &lt), wrap(r, &rt)])
                } else if is_str(&lt) || is_str(&rt) {
                    // Cypher `+` concatenates strings; null stays null (concat skips nulls).
                    when(
                        l.clone().is_null().or(r.clone().is_null()),
                        lit(ScalarValue::Utf8(None)),
                    )
                    .otherwise(f::concat(vec![
                        l.cast_to(&DataType::Utf8, self.schema)?,
                        r.cast_to(&DataType::Utf8, self.schema)?,
                    ]))?
                } else {
                    l + r
                }
            }
            BinaryOp::Sub => l - r,
            BinaryOp::Mul => l * r,
            BinaryOp::Div => l / r,
            BinaryOp::Mod => l % r,
            BinaryOp::Pow => f::power(
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(l),
                    DataType::Float64,
                )),
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(r),
                    DataType::Float64,
                )),
            ),
            BinaryOp::In => match self.type_of(&r) {
                Some(DataType::Null) => lit(ScalarValue::Boolean(None)),
                Some(
                    DataType::List(item)
                    | DataType::LargeList(item)
                    | DataType::FixedSizeList(item, _),
                ) if !plain_list(&r) => {
                    // openCypher: found is true; not found is null if the value is null or
                    // the list holds a null (it might have been equal), else false; nothing
                    // is in an empty list, not even null.
                    let element = Field::new("__in_element", item.data_type().clone(), true);
                    let body =
                        DFSchema::try_from(arrow::datatypes::Schema::new(vec![element.clone()]))
                            .map_err(PlanError::from)?;
                    let holds_null = ListLambda::call(
                        LambdaKind::Any,
                        r.clone(),
                        element,
                        vec![],
                        Some(column("__in_element").is_null()),
                        None,
                        &body,
                    )?;
                    let unknown = lit(ScalarValue::Boolean(None));
                    when(r.clone().is_null(), unknown.clone())
                        .when(nested::cardinality(r.clone()).eq(lit(0u64)), lit(false))
                        .when(l.clone().is_null(), unknown.clone())
                        .when(nested::array_has(r, l), lit(true))
                        .when(holds_null, unknown)
                        .otherwise(lit(false))?
                }
                _ => nested::array_has(r, l),
            },
            BinaryOp::StartsWith => f::starts_with(l, r),
            BinaryOp::EndsWith => f::ends_with(l, r),
            BinaryOp::Contains => f::strpos(l, r).gt(lit(0i32)),
            BinaryOp::RegexMatch => {
                let anchored = f::concat(vec![lit("^(?:"), r, lit(")$")]);
                f::regexp_like(l, anchored, None)
            }
        })
    }

    fn aggregate(&mut self, expr: Expr, e: &ast::Expr) -> Result<Expr, PlanError> {
        let Some(aggregates) = self.aggregates.as_deref_mut() else {
            return Err(err(
                self.text,
                e.span,
                "aggregate functions are only allowed in RETURN and WITH",
            ));
        };
        if expr.is_volatile() {
            // openCypher: an aggregate of a value that changes per call (`count(rand())`).
            return Err(err(
                self.text,
                e.span,
                "an aggregate of a non-constant expression (such as rand()) is not allowed",
            ));
        }
        let name = format!("__agg{}", aggregates.len());
        aggregates.push((expr, name.clone()));
        Ok(column(&name))
    }

    /// `percentileCont(x, p)` and `percentileDisc(x, p)` as openCypher (and Neo4j) define
    /// them over a group's non-null values, `p` from 0.0 to 1.0: the continuous one
    /// interpolates linearly at `p * (n - 1)` (a float); the discrete one is the value at
    /// position `max(ceil(p * n), 1)` of the sorted values (of the values' type).
    fn percentile(
        &mut self,
        e: &ast::Expr,
        name: &str,
        lower: &str,
        args: &[ast::Expr],
    ) -> Result<Expr, PlanError> {
        let text = self.text;
        if args.len() != 2 {
            return Err(err(
                text,
                e.span,
                format!("{name}() takes a value and a percentile"),
            ));
        }
        if args.iter().any(is_aggregate) {
            return Err(err(text, e.span, "aggregate functions cannot be nested"));
        }
        let saved = self.aggregates.take();
        let value = self.convert(&args[0]);
        let percentile = self.convert(&args[1]);
        self.aggregates = saved;
        let (value, percentile) = (value?, percentile?);
        // The percentile is a number from 0.0 to 1.0, known when the statement is planned.
        let percentile = match &percentile {
            Expr::Literal(v, _) if !v.is_null() => match v.cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(Some(p))) if (0.0..=1.0).contains(&p) => p,
                _ => {
                    return Err(err(
                        text,
                        args[1].span,
                        format!("{name}(): the percentile must be a number from 0.0 to 1.0"),
                    ));
                }
            },
            _ => {
                return Err(err(
                    text,
                    args[1].span,
                    format!("{name}(): the percentile must be a literal or a parameter"),
                ));
            }
        };
        let float = |x: Expr| cast(x, DataType::Float64);
        if lower == "percentilecont" {
            let cont = datafusion::functions_aggregate::percentile_cont::percentile_cont(
                float(value).sort(true, false),
                lit(percentile),
            );
            return self.aggregate(cont, e);
        }
        let collected = self.aggregate(collect_non_null(value.clone(), false), e)?;
        let n = self.aggregate(agg::count(value), e)?;
        let position = cast(
            f::greatest(vec![f::ceil(lit(percentile) * float(n)), lit(1.0)]),
            DataType::Int64,
        );
        let sorted = nested::array_sort(collected, lit("ASC"), lit("NULLS LAST"));
        Ok(nested::array_element(sorted, position))
    }

    fn function(
        &mut self,
        e: &ast::Expr,
        name: &str,
        distinct: bool,
        args: &[ast::Expr],
    ) -> Result<Expr, PlanError> {
        let text = self.text;
        let lower = name.to_ascii_lowercase();
        if lower == "percentiledisc" || lower == "percentilecont" {
            return self.percentile(e, name, &lower, args);
        }
        if AGGREGATES.contains(&lower.as_str()) {
            if args.len() != 1 {
                return Err(err(text, e.span, format!("{name}() takes one argument")));
            }
            if args.iter().any(is_aggregate) {
                return Err(err(text, e.span, "aggregate functions cannot be nested"));
            }
            // Aggregates see the row-level scope; nested aggregation is rejected above.
            let saved = self.aggregates.take();
            let arg = self.convert_comparable(&args[0]);
            self.aggregates = saved;
            let arg = arg?;
            let value = match lower.as_str() {
                "count" if distinct => agg::count_distinct(arg),
                "count" => agg::count(arg),
                "sum" => agg::sum(arg),
                "avg" => agg::avg(Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(arg),
                    DataType::Float64,
                ))),
                "min" => agg::min(arg),
                "max" => agg::max(arg),
                "stdev" => agg::stddev(arg),
                "stdevp" => agg::stddev_pop(arg),
                "collect" => {
                    let arg = match &args[0].kind {
                        ExprKind::Variable(v)
                            if matches!(
                                self.scope.get(v),
                                Some(VarKind::Node { .. } | VarKind::Rel { .. })
                            ) =>
                        {
                            self.entity_struct(v)?
                        }
                        _ => arg,
                    };
                    let collected = collect_non_null(arg, distinct);
                    // An all-null group collects to [] rather than null.
                    return self
                        .aggregate(collected, e)
                        .map(|c| f::coalesce(vec![c, nested::make_array(vec![])]));
                }
                _ => unreachable!("listed in AGGREGATES"),
            };
            let value = if distinct && lower != "count" && lower != "collect" {
                match value {
                    Expr::AggregateFunction(mut af) => {
                        af.params.distinct = true;
                        Expr::AggregateFunction(af)
                    }
                    other => other,
                }
            } else {
                value
            };
            return self.aggregate(value, e);
        }
        let arity = |n: usize| -> Result<(), PlanError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(err(
                    text,
                    e.span,
                    format!("{name}() takes {n} argument(s), got {}", args.len()),
                ))
            }
        };
        // Functions on the entity itself.
        match lower.as_str() {
            "id" | "labels" | "type" | "keys" | "properties" => {
                arity(1)?;
                let entity_var = match &args[0].kind {
                    ExprKind::Variable(v)
                        if matches!(
                            self.scope.get(v),
                            Some(VarKind::Node { .. } | VarKind::Rel { .. })
                        ) =>
                    {
                        Some(v)
                    }
                    _ => None,
                };
                let Some(v) = entity_var else {
                    // A node or relationship value (a path's, a list's item): its struct.
                    let x = self.convert(&args[0])?;
                    let field = match lower.as_str() {
                        "id" => "_id",
                        "type" => "_type",
                        "labels" => "_label",
                        _ => "",
                    };
                    return match self.type_of(&x) {
                        Some(DataType::Null) => Ok(lit(ScalarValue::Null)),
                        Some(DataType::Struct(fields)) if fields.find(field).is_some() => {
                            let value = f::get_field(x, field);
                            Ok(if field == "_label" {
                                let empty = nested::array_remove_all(
                                    nested::make_array(vec![lit(UNLABELED)]),
                                    lit(UNLABELED),
                                );
                                when(value.clone().is_null(), empty)
                                    .otherwise(nested::make_array(vec![value]))?
                            } else {
                                value
                            })
                        }
                        _ => Err(err(
                            text,
                            args[0].span,
                            format!("type mismatch: {name}() of this value"),
                        )),
                    };
                };
                let kind = self.scope.get(v).cloned();
                let ord = column(&column_name(v, ORD));
                return Ok(match (lower.as_str(), kind) {
                    ("id", Some(VarKind::Node { .. } | VarKind::Rel { .. })) => {
                        column(&column_name(v, ID))
                    }
                    ("labels", Some(VarKind::Node { .. })) => {
                        let label = column(&column_name(v, LABEL));
                        let empty = nested::array_remove_all(
                            nested::make_array(vec![lit(UNLABELED)]),
                            lit(UNLABELED),
                        );
                        when(ord.is_null(), lit(ScalarValue::Null))
                            .when(label.clone().eq(lit(UNLABELED)), empty)
                            .otherwise(nested::make_array(vec![label]))?
                    }
                    ("type", Some(VarKind::Rel { .. })) => column(&column_name(v, TYPE)),
                    ("keys", Some(VarKind::Node { .. } | VarKind::Rel { .. })) => {
                        let prefix = format!("{v}.");
                        let keys: Vec<Expr> = self
                            .schema
                            .fields()
                            .iter()
                            .filter_map(|f| f.name().strip_prefix(&prefix))
                            .filter(|p| !p.starts_with("__") && !p.starts_with('_'))
                            .map(lit)
                            .collect();
                        nested::make_array(keys)
                    }
                    ("properties", Some(VarKind::Node { .. } | VarKind::Rel { .. })) => {
                        self.entity_struct(v)?
                    }
                    _ => {
                        return Err(err(
                            text,
                            args[0].span,
                            format!("type mismatch: {name}() of `{v}`"),
                        ));
                    }
                });
            }
            _ => {}
        }
        let converted = args
            .iter()
            .map(|a| self.convert(a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut a = converted.into_iter();
        let mut next = || a.next().expect("arity checked");
        let cast = |x: Expr, t: DataType| {
            Expr::TryCast(datafusion::logical_expr::TryCast::new(Box::new(x), t))
        };
        Ok(match lower.as_str() {
            "toupper" | "upper" => {
                arity(1)?;
                f::upper(next())
            }
            "tolower" | "lower" => {
                arity(1)?;
                f::lower(next())
            }
            "trim" => {
                arity(1)?;
                f::btrim(vec![next()])
            }
            "ltrim" => {
                arity(1)?;
                f::ltrim(vec![next()])
            }
            "rtrim" => {
                arity(1)?;
                f::rtrim(vec![next()])
            }
            "reverse" => {
                arity(1)?;
                f::reverse(next())
            }
            "replace" => {
                arity(3)?;
                f::replace(next(), next(), next())
            }
            "substring" => {
                let s = next();
                let start = next() + lit(1i64);
                if args.len() == 3 {
                    f::substring(s, start, next())
                } else {
                    arity(2)?;
                    f::substr(s, start)
                }
            }
            "left" => {
                arity(2)?;
                f::left(next(), next())
            }
            "right" => {
                arity(2)?;
                f::right(next(), next())
            }
            "split" => {
                arity(2)?;
                nested::string_to_array(next(), next(), lit(ScalarValue::Utf8(None)))
            }
            "nodes" | "relationships" => {
                arity(1)?;
                let x = next();
                match self.type_of(&x) {
                    Some(t) if is_path(&t) => f::get_field(x, lower.as_str()),
                    Some(DataType::Null) => lit(ScalarValue::Null),
                    _ => {
                        return Err(err(
                            text,
                            args[0].span,
                            format!("type mismatch: {name}() takes a path"),
                        ));
                    }
                }
            }
            "size" | "length" => {
                arity(1)?;
                let x = next();
                // A path the pattern named: its length is a column of its own.
                if let ExprKind::Variable(v) = &args[0].kind
                    && is_path(&self.type_of(&x).unwrap_or(DataType::Null))
                    && self
                        .schema
                        .index_of_column_by_name(None, &crate::lower_paths::length_column(v))
                        .is_some()
                {
                    return Ok(column(&crate::lower_paths::length_column(v)));
                }
                match self.type_of(&x) {
                    // The length of a path is its number of relationships.
                    Some(t) if is_path(&t) => cast(
                        nested::cardinality(f::get_field(x, "relationships")),
                        DataType::Int64,
                    ),
                    Some(
                        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..),
                    ) => cast(nested::cardinality(x), DataType::Int64),
                    Some(_) => cast(f::character_length(x), DataType::Int64),
                    // Typed only once it runs (an aggregate inside the call).
                    None => crate::size::size_of_any(x),
                }
            }
            "cosine_similarity" | "l2_distance" | "inner_product" => {
                arity(2)?;
                let udf = match lower.as_str() {
                    "cosine_similarity" => contextdb_vector::cosine_similarity_udf(),
                    "l2_distance" => contextdb_vector::l2_distance_udf(),
                    _ => contextdb_vector::inner_product_udf(),
                };
                udf.call(vec![next(), next()])
            }
            "abs" => {
                arity(1)?;
                f::abs(next())
            }
            "ceil" => {
                arity(1)?;
                f::ceil(next())
            }
            "floor" => {
                arity(1)?;
                f::floor(next())
            }
            "round" => {
                arity(1)?;
                f::round(vec![next()])
            }
            "sqrt" => {
                arity(1)?;
                f::sqrt(cast(next(), DataType::Float64))
            }
            "sign" => {
                arity(1)?;
                cast(f::signum(cast(next(), DataType::Float64)), DataType::Int64)
            }
            "exp" => {
                arity(1)?;
                f::exp(cast(next(), DataType::Float64))
            }
            "log" => {
                arity(1)?;
                f::ln(cast(next(), DataType::Float64))
            }
            "log10" => {
                arity(1)?;
                f::log10(cast(next(), DataType::Float64))
            }
            "rand" => {
                arity(0)?;
                f::random()
            }
            "pi" => {
                arity(0)?;
                f::pi()
            }
            "coalesce" => {
                let all: Vec<Expr> = (0..args.len()).map(|_| next()).collect();
                f::coalesce(all)
            }
            "tostring" => {
                arity(1)?;
                cast(next(), DataType::Utf8)
            }
            "tointeger" => {
                arity(1)?;
                let x = next();
                match self.type_of(&x) {
                    Some(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => {
                        cast(f::trunc(vec![cast(x, DataType::Float64)]), DataType::Int64)
                    }
                    _ => cast(x, DataType::Int64),
                }
            }
            "tofloat" => {
                arity(1)?;
                cast(next(), DataType::Float64)
            }
            "toboolean" => {
                arity(1)?;
                cast(next(), DataType::Boolean)
            }
            "head" => {
                arity(1)?;
                nested::array_element(next(), lit(1i64))
            }
            "last" => {
                arity(1)?;
                nested::array_element(next(), lit(-1i64))
            }
            "tail" => {
                arity(1)?;
                let l = next();
                nested::array_slice(l.clone(), lit(2i64), nested::cardinality(l), None)
            }
            "range" => {
                let start = next();
                let end = next();
                if args.len() == 3 {
                    nested::gen_series(start, end, next())
                } else {
                    arity(2)?;
                    nested::gen_series(start, end, lit(1i64))
                }
            }
            "exists" => {
                arity(1)?;
                next().is_not_null()
            }
            _ => return Err(err(text, e.span, format!("unknown function {name}()"))),
        })
    }
}

/// A field for a scalar parameter value, used when a parameter's type is needed up front.
pub fn scalar_field(name: &str, value: &ScalarValue) -> Arc<Field> {
    Arc::new(Field::new(name, value.data_type(), true))
}

/// Whether a value of type `t` is a path (see `lower_paths.rs`): a struct of exactly a
/// `nodes` and a `relationships` list.
pub(crate) fn is_path(t: &DataType) -> bool {
    match t {
        DataType::Struct(fields) => {
            fields.len() == 2
                && fields
                    .iter()
                    .zip(["nodes", "relationships"])
                    .all(|(f, name)| f.name() == name && matches!(f.data_type(), DataType::List(_)))
        }
        _ => false,
    }
}

/// A literal list, not empty and without nulls: `x IN` it is what `array_has` says (null for
/// a null `x`), so the filter keeps its plain form (`x = a OR x = b`).
fn plain_list(e: &Expr) -> bool {
    use arrow::array::Array;
    match e {
        Expr::Literal(ScalarValue::List(list), _) => {
            list.len() == 1 && {
                let values = list.value(0);
                !values.is_empty() && values.null_count() == 0
            }
        }
        // `[a, b]` as written: make_array of non-null literals.
        Expr::ScalarFunction(call) => {
            call.func.name() == "make_array"
                && !call.args.is_empty()
                && call
                    .args
                    .iter()
                    .all(|a| matches!(a, Expr::Literal(v, _) if !v.is_null()))
        }
        _ => false,
    }
}
