//! `cosine_similarity(a, b)`, `l2_distance(a, b)` and `inner_product(a, b)` as DataFusion
//! scalar functions: registered in every session, so SQL and ContextQL share them.

use std::any::Any;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float64Builder, ListArray};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};

use crate::Metric;

/// The names of the vector functions.
pub const FUNCTIONS: [&str; 3] = ["cosine_similarity", "l2_distance", "inner_product"];

static COSINE: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::from(VectorFunction::new(Metric::Cosine))));
static L2: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::from(VectorFunction::new(Metric::L2))));
static DOT: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::from(VectorFunction::new(Metric::Dot))));

/// `cosine_similarity(a, b)`: in [-1, 1]; NULL when a vector is NULL, holds a NULL, or has a
/// zero norm.
pub fn cosine_similarity_udf() -> Arc<ScalarUDF> {
    COSINE.clone()
}

/// `l2_distance(a, b)`: the Euclidean distance; NULL when a vector is or holds NULL.
pub fn l2_distance_udf() -> Arc<ScalarUDF> {
    L2.clone()
}

/// `inner_product(a, b)`: the dot product; NULL when a vector is or holds NULL.
pub fn inner_product_udf() -> Arc<ScalarUDF> {
    DOT.clone()
}

/// The `similarity_score` (higher is closer) and `distance` (lower is closer) of `target`
/// against `query` under `metric`, as ContextQL's VECTOR SIMILAR TO and SQL's
/// `vector_search` define them: cosine gives the cosine similarity and 1 − it; l2 gives
/// 1 / (1 + d) and the Euclidean distance d; dot gives the inner product and its negation.
pub fn score_and_distance(metric: Metric, target: Expr, query: Expr) -> (Expr, Expr) {
    match metric {
        Metric::Cosine => {
            let s = cosine_similarity_udf().call(vec![target, query]);
            (s.clone(), lit(1.0) - s)
        }
        Metric::L2 => {
            let d = l2_distance_udf().call(vec![target, query]);
            (lit(1.0) / (lit(1.0) + d.clone()), d)
        }
        Metric::Dot => {
            let s = inner_product_udf().call(vec![target, query]);
            (s.clone(), -s)
        }
    }
}

/// Every vector function, to register in a session.
pub fn udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        cosine_similarity_udf(),
        l2_distance_udf(),
        inner_product_udf(),
    ]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorFunction {
    metric: Metric,
    signature: Signature,
}

impl VectorFunction {
    fn new(metric: Metric) -> Self {
        VectorFunction {
            metric,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// Whether values of `t` are vectors this module computes with.
fn is_vector(t: &DataType) -> bool {
    match t {
        DataType::Null => true,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().is_numeric() || f.data_type() == &DataType::Null
        }
        _ => false,
    }
}

impl ScalarUDFImpl for VectorFunction {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        match self.metric {
            Metric::Cosine => FUNCTIONS[0],
            Metric::L2 => FUNCTIONS[1],
            Metric::Dot => FUNCTIONS[2],
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        match types {
            [a, b] if is_vector(a) && is_vector(b) => Ok(types.to_vec()),
            [a, b] => plan_err!(
                "{name}() takes two vectors (lists of numbers, such as VECTOR properties or \
                 [0.1, 0.2]), not {a} and {b}"
            ),
            _ => plan_err!("{name}() takes two vectors, not {} arguments", types.len()),
        }
    }

    fn return_type(&self, _types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [a, b] = args.args.as_slice() else {
            return exec_err!("{}() takes two vectors", self.name());
        };
        let (a, b) = (Vectors::new(a)?, Vectors::new(b)?);
        let mut out = Float64Builder::with_capacity(rows);
        for i in 0..rows {
            let (Some(x), Some(y)) = (a.row(i), b.row(i)) else {
                out.append_null();
                continue;
            };
            if x.len() != y.len() {
                return exec_err!(
                    "{}(): the vectors have {} and {} dimensions",
                    self.name(),
                    x.len(),
                    y.len()
                );
            }
            out.append_option(match (x, y) {
                (Row::F32(x), Row::F32(y)) => self.apply(x, y),
                (Row::F32(x), Row::F64(y)) => self.apply(x, y),
                (Row::F64(x), Row::F32(y)) => self.apply(x, y),
                (Row::F64(x), Row::F64(y)) => self.apply(x, y),
            });
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

impl VectorFunction {
    fn apply<A, B>(&self, x: &[A], y: &[B]) -> Option<f64>
    where
        A: Copy + Into<f64>,
        B: Copy + Into<f64>,
    {
        match self.metric {
            Metric::Cosine => crate::cosine_similarity(x, y),
            Metric::L2 => Some(crate::l2_distance(x, y)),
            Metric::Dot => Some(crate::inner_product(x, y)),
        }
    }
}

/// One argument's vectors, read in place: a `VECTOR` column's f32 values as they are, any
/// other list cast once to f64, a constant converted once (not repeated per row).
enum Vectors {
    Constant(Option<Vec<f64>>),
    F32 {
        list: FixedSizeListArray,
        values: ScalarBuffer<f32>,
    },
    F64 {
        list: ListArray,
        values: ScalarBuffer<f64>,
    },
}

/// One row's vector.
enum Row<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Row<'_> {
    fn len(&self) -> usize {
        match self {
            Row::F32(v) => v.len(),
            Row::F64(v) => v.len(),
        }
    }
}

impl Vectors {
    fn new(value: &ColumnarValue) -> Result<Vectors> {
        let as_f64 = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        match value {
            ColumnarValue::Scalar(scalar) => {
                let array = arrow::compute::cast(&scalar.to_array_of_size(1)?, &as_f64)?;
                let list = array.as_list::<i32>();
                let row = (list.is_valid(0)).then(|| list.value(0)).and_then(|v| {
                    let v = v.as_primitive::<Float64Type>();
                    (v.null_count() == 0).then(|| v.values().to_vec())
                });
                Ok(Vectors::Constant(row))
            }
            ColumnarValue::Array(array) => match array.data_type() {
                DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32 => {
                    let list = array.as_fixed_size_list().clone();
                    let values = list.values().as_primitive::<Float32Type>().values().clone();
                    Ok(Vectors::F32 { list, values })
                }
                _ => {
                    let list = arrow::compute::cast(array, &as_f64)?
                        .as_list::<i32>()
                        .clone();
                    let values = list.values().as_primitive::<Float64Type>().values().clone();
                    Ok(Vectors::F64 { list, values })
                }
            },
        }
    }

    /// Row `i`'s vector; None when it is null or holds a null.
    fn row(&self, i: usize) -> Option<Row<'_>> {
        match self {
            Vectors::Constant(v) => v.as_deref().map(Row::F64),
            Vectors::F32 { list, values } => {
                let d = list.value_length() as usize;
                let start = list.value_offset(i) as usize;
                (list.is_valid(i) && !holds_null(list.values(), start, d))
                    .then(|| Row::F32(&values[start..start + d]))
            }
            Vectors::F64 { list, values } => {
                let offsets = list.value_offsets();
                let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
                (list.is_valid(i) && !holds_null(list.values(), start, end - start))
                    .then(|| Row::F64(&values[start..end]))
            }
        }
    }
}

/// Whether `values[start..start + len]` holds a null.
fn holds_null(values: &ArrayRef, start: usize, len: usize) -> bool {
    values
        .nulls()
        .is_some_and(|n| n.slice(start, len).null_count() > 0)
}
