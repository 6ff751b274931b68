//! openCypher's equality of lists and maps, where it differs from SQL's (Arrow compares nested
//! nulls as equal, and a list of numbers never equals a list of strings there only because the
//! types do not match): two lists are equal when they have the same length and their elements
//! are pairwise equal, unequal when some pair is, and null when no pair is unequal but some pair
//! is unknown (a null element); maps likewise over the same keys. Values of different kinds are
//! never equal; integers and floats compare as numbers.

use std::any::Any;

use arrow::array::{Array, BooleanBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `left = right` by openCypher's rules (see the module doc).
pub fn cypher_equal(left: Expr, right: Expr) -> Expr {
    ScalarUDF::new_from_impl(CypherEqual {
        signature: Signature::any(2, Volatility::Immutable),
    })
    .call(vec![left, right])
}

/// Whether openCypher's equality differs from SQL's for values of type `t`.
pub fn nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
    )
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CypherEqual {
    signature: Signature,
}

impl ScalarUDFImpl for CypherEqual {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "cypher_equal"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (left, right) = (&arrays[0], &arrays[1]);
        let mut out = BooleanBuilder::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let a = ScalarValue::try_from_array(left.as_ref(), row)?;
            let b = ScalarValue::try_from_array(right.as_ref(), row)?;
            out.append_option(equal(&a, &b)?);
        }
        Ok(ColumnarValue::Array(std::sync::Arc::new(out.finish())))
    }
}

/// The elements of a list value (None: not a list).
fn elements(v: &ScalarValue) -> Result<Option<Vec<ScalarValue>>> {
    let array = match v {
        ScalarValue::List(a) => a.value(0),
        ScalarValue::LargeList(a) => a.value(0),
        ScalarValue::FixedSizeList(a) => a.value(0),
        _ => return Ok(None),
    };
    (0..array.len())
        .map(|i| ScalarValue::try_from_array(array.as_ref(), i))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The entries of a map value by key (None: not a map).
fn entries(v: &ScalarValue) -> Result<Option<Vec<(String, ScalarValue)>>> {
    let ScalarValue::Struct(s) = v else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(s.num_columns());
    for (field, column) in s.fields().iter().zip(s.columns()) {
        out.push((
            field.name().clone(),
            ScalarValue::try_from_array(column, 0)?,
        ));
    }
    out.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(Some(out))
}

/// Pairwise: false if some pair is unequal, else null if some pair is unknown, else true.
fn all_equal<'a>(
    pairs: impl Iterator<Item = (&'a ScalarValue, &'a ScalarValue)>,
) -> Result<Option<bool>> {
    let mut unknown = false;
    for (x, y) in pairs {
        match equal(x, y)? {
            Some(false) => return Ok(Some(false)),
            None => unknown = true,
            Some(true) => {}
        }
    }
    Ok((!unknown).then_some(true))
}

fn equal(a: &ScalarValue, b: &ScalarValue) -> Result<Option<bool>> {
    if a.is_null() || b.is_null() {
        return Ok(None);
    }
    if let (Some(x), Some(y)) = (elements(a)?, elements(b)?) {
        if x.len() != y.len() {
            return Ok(Some(false));
        }
        return all_equal(x.iter().zip(&y));
    }
    if let (Some(x), Some(y)) = (entries(a)?, entries(b)?) {
        if x.len() != y.len() || x.iter().zip(&y).any(|(p, q)| p.0 != q.0) {
            return Ok(Some(false));
        }
        return all_equal(x.iter().map(|p| &p.1).zip(y.iter().map(|q| &q.1)));
    }
    let (ta, tb) = (a.data_type(), b.data_type());
    if ta.is_numeric() && tb.is_numeric() {
        if ta.is_integer() && tb.is_integer() {
            let x = a.cast_to(&DataType::Int64)?;
            let y = b.cast_to(&DataType::Int64)?;
            return Ok(Some(x == y));
        }
        let (ScalarValue::Float64(Some(x)), ScalarValue::Float64(Some(y))) = (
            a.cast_to(&DataType::Float64)?,
            b.cast_to(&DataType::Float64)?,
        ) else {
            return Ok(None);
        };
        return Ok(Some(x == y));
    }
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    if text(&ta) && text(&tb) {
        return Ok(Some(
            a.cast_to(&DataType::Utf8)? == b.cast_to(&DataType::Utf8)?,
        ));
    }
    if ta != tb || elements(a)?.is_some() != elements(b)?.is_some() {
        // Values of different kinds: never equal.
        return Ok(Some(false));
    }
    Ok(Some(a == b))
}
