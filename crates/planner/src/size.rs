//! openCypher's `size(x)` where planning cannot tell the argument's type (an aggregate inside
//! the call, `size(collect(a))`, is typed only after the aggregation it is lowered into): the
//! length of a list, or the characters of a string, decided by the value's type when it runs.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `size(x)` typed when it runs (see the module doc).
pub fn size_of_any(x: Expr) -> Expr {
    ScalarUDF::new_from_impl(SizeOfAny {
        signature: Signature::any(1, Volatility::Immutable),
    })
    .call(vec![x])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SizeOfAny {
    signature: Signature,
}

impl ScalarUDFImpl for SizeOfAny {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "size"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = args.args[0].to_array(args.number_rows)?;
        let valid = |i: usize| array.is_valid(i);
        let sizes: Int64Array = match array.data_type() {
            DataType::Null => Int64Array::new_null(array.len()),
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                (0..list.len())
                    .map(|i| valid(i).then(|| list.value_length(i) as i64))
                    .collect()
            }
            DataType::LargeList(_) => {
                let list = array.as_list::<i64>();
                (0..list.len())
                    .map(|i| valid(i).then(|| list.value_length(i)))
                    .collect()
            }
            DataType::FixedSizeList(_, n) => (0..array.len())
                .map(|i| valid(i).then_some(i64::from(*n)))
                .collect(),
            DataType::Utf8 => array
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(|s| s.chars().count() as i64))
                .collect(),
            DataType::LargeUtf8 => array
                .as_string::<i64>()
                .iter()
                .map(|s| s.map(|s| s.chars().count() as i64))
                .collect(),
            DataType::Utf8View => array
                .as_string_view()
                .iter()
                .map(|s| s.map(|s| s.chars().count() as i64))
                .collect(),
            other => return exec_err!("size() takes a list or a string, not {other}"),
        };
        Ok(ColumnarValue::Array(Arc::new(sizes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ListArray, StringArray};
    use arrow::datatypes::{Field, Int32Type};
    use datafusion::config::ConfigOptions;

    fn size(array: Arc<dyn Array>) -> Result<Vec<Option<i64>>> {
        let udf = SizeOfAny {
            signature: Signature::any(1, Volatility::Immutable),
        };
        let rows = array.len();
        let out = udf.invoke_with_args(ScalarFunctionArgs {
            arg_fields: vec![Arc::new(Field::new("x", array.data_type().clone(), true))],
            args: vec![ColumnarValue::Array(array)],
            number_rows: rows,
            return_field: Arc::new(Field::new("size", DataType::Int64, true)),
            config_options: Arc::new(ConfigOptions::default()),
        })?;
        let out = out.to_array(rows)?;
        Ok(out
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .collect())
    }

    #[test]
    fn size_is_a_list_s_length_or_a_string_s_characters() {
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
            Some(vec![]),
        ]);
        assert_eq!(size(Arc::new(lists)).unwrap(), vec![Some(2), None, Some(0)]);
        let strings = StringArray::from(vec![Some("héllo"), None]);
        assert_eq!(size(Arc::new(strings)).unwrap(), vec![Some(5), None]);
        assert!(size(Arc::new(Int64Array::from(vec![1]))).is_err());
    }
}
