//! DataFusion filters as Iceberg predicates, so a scan skips the data files (and Parquet row
//! groups) whose column statistics rule every row out.
//!
//! The pushdown is inexact: DataFusion applies every filter again to the rows a scan yields.
//! A predicate here therefore only has to be implied by the filter (it may keep rows the filter
//! drops, never the reverse). Conversions that hold exactly are marked so, and only those may
//! sit under NOT, where "implied" turns around.

use arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Like, Operator};
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::Datum;

/// An Iceberg predicate implied by every filter (None: nothing to push down).
pub(crate) fn to_predicate(filters: &[Expr], schema: &Schema) -> Option<Predicate> {
    filters
        .iter()
        .filter_map(|f| convert(f, schema))
        .map(|(p, _)| p)
        .reduce(Predicate::and)
}

/// Whether some of `filter` can be pushed down.
pub(crate) fn pushable(filter: &Expr, schema: &Schema) -> bool {
    convert(filter, schema).is_some()
}

/// The predicate and whether it is exactly the filter (false: only implied by it).
fn convert(expr: &Expr, schema: &Schema) -> Option<(Predicate, bool)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => match (convert(left, schema), convert(right, schema)) {
                (Some((l, le)), Some((r, re))) => Some((l.and(r), le && re)),
                (Some((p, _)), None) | (None, Some((p, _))) => Some((p, false)),
                (None, None) => None,
            },
            Operator::Or => {
                let (l, le) = convert(left, schema)?;
                let (r, re) = convert(right, schema)?;
                Some((l.or(r), le && re))
            }
            _ => comparison(left, *op, right, schema)
                .or_else(|| comparison(right, flip(*op)?, left, schema))
                .map(|p| (p, true)),
        },
        Expr::Not(inner) => match convert(inner, schema)? {
            (p, true) => Some((!p, true)),
            _ => None,
        },
        Expr::IsNull(inner) => Some((column(inner, schema)?.0.is_null(), true)),
        Expr::IsNotNull(inner) => Some((column(inner, schema)?.0.is_not_null(), true)),
        Expr::InList(list) => {
            let (reference, data_type) = column(&list.expr, schema)?;
            let values = list
                .list
                .iter()
                .map(|e| literal(e, data_type))
                .collect::<Option<Vec<_>>>()?;
            let p = if list.negated {
                reference.is_not_in(values)
            } else {
                reference.is_in(values)
            };
            Some((p, true))
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let (reference, data_type) = column(expr, schema)?;
            let p = reference
                .clone()
                .greater_than_or_equal_to(literal(low, data_type)?)
                .and(reference.less_than_or_equal_to(literal(high, data_type)?));
            Some((if *negated { !p } else { p }, true))
        }
        Expr::Like(Like {
            negated,
            expr,
            pattern,
            escape_char: None,
            case_insensitive: false,
        }) => {
            let (reference, data_type) = column(expr, schema)?;
            let Expr::Literal(
                ScalarValue::Utf8(Some(pattern))
                | ScalarValue::Utf8View(Some(pattern))
                | ScalarValue::LargeUtf8(Some(pattern)),
                _,
            ) = pattern.as_ref()
            else {
                return None;
            };
            // Only `prefix%` is a prefix test.
            let prefix = pattern.strip_suffix('%')?;
            let string = matches!(
                data_type,
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            );
            if !string || prefix.contains(['%', '_', '\\']) {
                return None;
            }
            let p = if *negated {
                reference.not_starts_with(Datum::string(prefix))
            } else {
                reference.starts_with(Datum::string(prefix))
            };
            Some((p, true))
        }
        _ => None,
    }
}

/// `column op literal`, with the literal of the column's own type (DataFusion's coercion has
/// put casts on the literal side by the time filters reach a scan).
fn comparison(left: &Expr, op: Operator, right: &Expr, schema: &Schema) -> Option<Predicate> {
    let (reference, data_type) = column(left, schema)?;
    let value = literal(right, data_type)?;
    Some(match op {
        Operator::Eq => reference.equal_to(value),
        Operator::NotEq => reference.not_equal_to(value),
        Operator::Lt => reference.less_than(value),
        Operator::LtEq => reference.less_than_or_equal_to(value),
        Operator::Gt => reference.greater_than(value),
        Operator::GtEq => reference.greater_than_or_equal_to(value),
        _ => return None,
    })
}

fn flip(op: Operator) -> Option<Operator> {
    Some(match op {
        Operator::Eq | Operator::NotEq => op,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        _ => return None,
    })
}

fn column<'a>(expr: &Expr, schema: &'a Schema) -> Option<(Reference, &'a DataType)> {
    let Expr::Column(c) = expr else {
        return None;
    };
    let field = schema.field_with_name(&c.name).ok()?;
    Some((Reference::new(c.name.clone()), field.data_type()))
}

/// A literal of exactly `data_type` as an Iceberg value. NaN and null are not pushed down:
/// their comparisons follow rules of their own.
fn literal(expr: &Expr, data_type: &DataType) -> Option<Datum> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    if &value.data_type() != data_type {
        return None;
    }
    Some(match value {
        ScalarValue::Boolean(Some(v)) => Datum::bool(*v),
        ScalarValue::Int32(Some(v)) => Datum::int(*v),
        ScalarValue::Int64(Some(v)) => Datum::long(*v),
        ScalarValue::Float32(Some(v)) if !v.is_nan() => Datum::float(*v),
        ScalarValue::Float64(Some(v)) if !v.is_nan() => Datum::double(*v),
        ScalarValue::Utf8(Some(v))
        | ScalarValue::Utf8View(Some(v))
        | ScalarValue::LargeUtf8(Some(v)) => Datum::string(v),
        // Declared narrower integers, stored as Iceberg's int and long.
        ScalarValue::Int8(Some(v)) => Datum::int(*v as i32),
        ScalarValue::Int16(Some(v)) => Datum::int(*v as i32),
        ScalarValue::UInt8(Some(v)) => Datum::int(*v as i32),
        ScalarValue::UInt16(Some(v)) => Datum::int(*v as i32),
        ScalarValue::UInt32(Some(v)) => Datum::long(*v as i64),
        ScalarValue::Date32(Some(v)) => Datum::date(*v),
        ScalarValue::TimestampMicrosecond(Some(v), None)
            if data_type == &DataType::Timestamp(TimeUnit::Microsecond, None) =>
        {
            Datum::timestamp_micros(*v)
        }
        ScalarValue::TimestampMicrosecond(Some(v), Some(_)) => Datum::timestamptz_micros(*v),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use datafusion::prelude::{col, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("f", DataType::Float64, true),
            Field::new("v", DataType::Utf8View, true),
            Field::new("t", DataType::Int8, true),
        ])
    }

    fn pushed(filter: Expr) -> Option<String> {
        to_predicate(&[filter], &schema()).map(|p| p.to_string())
    }

    #[test]
    fn comparisons_of_a_column_with_a_literal_push_down() {
        assert_eq!(pushed(col("a").gt(lit(5i64))).unwrap(), "a > 5");
        // Literal first: the operator turns around.
        assert_eq!(pushed(lit(5i64).gt(col("a"))).unwrap(), "a < 5");
        assert!(
            pushed(col("s").like(lit("ab%")))
                .unwrap()
                .contains("STARTS WITH")
        );
        assert!(pushed(col("a").in_list(vec![lit(1i64), lit(2i64)], false)).is_some());
        assert!(pushed(col("a").between(lit(1i64), lit(3i64))).is_some());
        assert!(pushed(col("s").is_null()).is_some());
        // Declared types stored as wider ones compare as the stored type.
        assert_eq!(
            pushed(col("v").eq(lit(ScalarValue::Utf8View(Some("x".into()))))).unwrap(),
            "v = \"x\""
        );
        assert!(pushed(col("v").like(lit(ScalarValue::Utf8View(Some("x%".into()))))).is_some());
        assert_eq!(pushed(col("t").lt(lit(5i8))).unwrap(), "t < 5");
    }

    #[test]
    fn what_cannot_be_decided_by_statistics_stays_with_datafusion() {
        // A literal of another type, a function of the column, NaN, a general LIKE.
        assert!(pushed(col("a").eq(lit(5i32))).is_none());
        assert!(pushed((col("a") + lit(1i64)).eq(lit(5i64))).is_none());
        assert!(pushed(col("f").eq(lit(f64::NAN))).is_none());
        assert!(pushed(col("s").like(lit("a%b"))).is_none());
        assert!(pushed(col("s").like(lit("a_%"))).is_none());
    }

    #[test]
    fn a_partly_converted_conjunction_is_not_negated() {
        let partial = col("a")
            .gt(lit(5i64))
            .and((col("a") + lit(1i64)).eq(lit(3i64)));
        // Under AND the converted half is implied by the whole...
        assert_eq!(pushed(partial.clone()).unwrap(), "a > 5");
        // ...but NOT of the whole does not imply NOT of the half.
        assert!(pushed(!partial).is_none());
        // An OR needs both sides.
        assert!(pushed(col("a").gt(lit(5i64)).or(col("f").eq(lit(f64::NAN)))).is_none());
        assert!(pushed(!col("a").gt(lit(5i64))).is_some());
    }
}
