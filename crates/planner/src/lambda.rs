//! List comprehensions (`[x IN list WHERE pred | expr]`) and quantifiers
//! (`all/any/none/single(x IN list WHERE pred)`). DataFusion has no lambdas, so each is a
//! scalar function over the list and the outer columns its body reads, holding the body as an
//! expression over one element (`x`) and those columns. It evaluates the body once per call
//! over all elements of all rows at once (a batch of elements, the outer columns repeated per
//! element), not row by row.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, ListArray, RecordBatch, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::{cast, filter, take};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::analyzer::type_coercion::TypeCoercionRewriter;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

/// What a [`ListLambda`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LambdaKind {
    /// The elements the predicate keeps, each projected.
    Comprehension,
    All,
    Any,
    None,
    Single,
}

/// The body of a comprehension or quantifier, as a scalar function (see the module doc).
#[derive(Debug)]
pub struct ListLambda {
    kind: LambdaKind,
    name: String,
    /// The element (field 0) and the outer columns the body reads, in argument order.
    body_schema: SchemaRef,
    predicate: Option<Expr>,
    projection: Option<Expr>,
    return_type: DataType,
    signature: Signature,
    compiled: OnceLock<Compiled>,
}

type Compiled = (Option<Arc<dyn PhysicalExpr>>, Option<Arc<dyn PhysicalExpr>>);

impl PartialEq for ListLambda {
    fn eq(&self, other: &Self) -> bool {
        (
            self.kind,
            &self.body_schema,
            &self.predicate,
            &self.projection,
            &self.return_type,
        ) == (
            other.kind,
            &other.body_schema,
            &other.predicate,
            &other.projection,
            &other.return_type,
        )
    }
}

impl Eq for ListLambda {}

impl Hash for ListLambda {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (
            self.kind,
            &self.predicate,
            &self.projection,
            &self.return_type,
        )
            .hash(state);
    }
}

impl ListLambda {
    /// A call of the body over `list` (an expression of a list type) where `element` is the
    /// element field and `captured` the outer columns the body reads (expressions and their
    /// fields), in the order the body's schema names them.
    pub fn call(
        kind: LambdaKind,
        list: Expr,
        element: Field,
        captured: Vec<(Expr, Field)>,
        predicate: Option<Expr>,
        projection: Option<Expr>,
        body: &DFSchema,
    ) -> Result<Expr> {
        // The plan's analyzer never sees the body (it hides inside this function): coerce
        // its types here, as the analyzer would (`x + 0.5` of an integer `x`).
        let coerce = |e: Option<Expr>| -> Result<Option<Expr>> {
            e.map(|e| {
                e.rewrite(&mut TypeCoercionRewriter::new(body))
                    .map(|t| t.data)
            })
            .transpose()
        };
        let (predicate, projection) = (coerce(predicate)?, coerce(projection)?);
        let mut fields = vec![element.clone()];
        fields.extend(captured.iter().map(|(_, f)| f.clone()));
        let body_schema = Arc::new(Schema::new(fields));
        let return_type = match kind {
            LambdaKind::Comprehension => {
                let item = match &projection {
                    Some(p) => datafusion::logical_expr::ExprSchemable::get_type(p, body)?,
                    None => element.data_type().clone(),
                };
                DataType::List(Arc::new(Field::new("item", item, true)))
            }
            _ => DataType::Boolean,
        };
        let volatile = predicate.as_ref().is_some_and(|p| p.is_volatile())
            || projection.as_ref().is_some_and(|p| p.is_volatile());
        let name = match kind {
            LambdaKind::Comprehension => "list_comprehension",
            LambdaKind::All => "all",
            LambdaKind::Any => "any",
            LambdaKind::None => "none",
            LambdaKind::Single => "single",
        };
        let udf = ListLambda {
            kind,
            name: name.to_string(),
            body_schema,
            predicate,
            projection,
            return_type,
            signature: Signature::variadic_any(if volatile {
                Volatility::Volatile
            } else {
                Volatility::Immutable
            }),
            compiled: OnceLock::new(),
        };
        let mut args = vec![list];
        args.extend(captured.into_iter().map(|(e, _)| e));
        Ok(ScalarUDF::new_from_impl(udf).call(args))
    }

    fn compiled(&self) -> Result<&Compiled> {
        if let Some(c) = self.compiled.get() {
            return Ok(c);
        }
        let schema = DFSchema::try_from(self.body_schema.as_ref().clone())?;
        let props = ExecutionProps::new();
        let compile = |e: &Option<Expr>| -> Result<Option<Arc<dyn PhysicalExpr>>> {
            e.as_ref()
                .map(|e| create_physical_expr(e, &schema, &props))
                .transpose()
        };
        let compiled = (compile(&self.predicate)?, compile(&self.projection)?);
        Ok(self.compiled.get_or_init(|| compiled))
    }
}

impl ScalarUDFImpl for ListLambda {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some((list, captured)) = arrays.split_first() else {
            return Err(DataFusionError::Internal(format!(
                "{} takes a list",
                self.name
            )));
        };
        let list_type = DataType::List(Arc::new(Field::new(
            "item",
            self.body_schema.field(0).data_type().clone(),
            true,
        )));
        let list = if list.data_type() == &list_type {
            list.clone()
        } else {
            cast(list, &list_type)?
        };
        let list: &ListArray = list.as_list::<i32>();
        // Every element of every non-null row, with the row it belongs to.
        let offsets = list.value_offsets();
        let (first, last) = (offsets[0] as usize, offsets[rows] as usize);
        let values = list.values().slice(first, last - first);
        let mut owner: Vec<u32> = Vec::with_capacity(last - first);
        for row in 0..rows {
            let n = (offsets[row + 1] - offsets[row]) as usize;
            owner.extend(std::iter::repeat_n(row as u32, n));
        }
        let owner = UInt32Array::from(owner);
        let mut columns: Vec<ArrayRef> = vec![values.clone()];
        for c in captured {
            columns.push(take(c.as_ref(), &owner, None)?);
        }
        let batch = RecordBatch::try_new_with_options(
            self.body_schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(values.len())),
        )?;
        let (predicate, projection) = self.compiled()?;
        let tests: Option<BooleanArray> = match predicate {
            Some(p) => {
                let result = p.evaluate(&batch)?.into_array(batch.num_rows())?;
                Some(cast(&result, &DataType::Boolean)?.as_boolean().clone())
            }
            None => None,
        };
        let result: ArrayRef = match self.kind {
            LambdaKind::Comprehension => {
                let projected = match projection {
                    Some(p) => p.evaluate(&batch)?.into_array(batch.num_rows())?,
                    None => values,
                };
                // Kept: the predicate is true (null drops the element, as WHERE does).
                let keep = match &tests {
                    Some(t) if t.null_count() > 0 => arrow::compute::prep_null_mask_filter(t),
                    Some(t) => t.clone(),
                    None => BooleanArray::from(vec![true; projected.len()]),
                };
                let kept = filter(projected.as_ref(), &keep)?;
                let mut new_offsets = Vec::with_capacity(rows + 1);
                new_offsets.push(0i32);
                let mut at = 0usize;
                let mut total = 0i32;
                for row in 0..rows {
                    let n = (offsets[row + 1] - offsets[row]) as usize;
                    total += (at..at + n).filter(|&i| keep.value(i)).count() as i32;
                    at += n;
                    new_offsets.push(total);
                }
                let field: FieldRef = match &self.return_type {
                    DataType::List(f) => f.clone(),
                    _ => Arc::new(Field::new("item", kept.data_type().clone(), true)),
                };
                let field = Arc::new(
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(kept.data_type().clone()),
                );
                Arc::new(ListArray::try_new(
                    field,
                    OffsetBuffer::new(new_offsets.into()),
                    kept,
                    list.nulls().cloned(),
                )?)
            }
            kind => {
                let Some(tests) = tests else {
                    return Err(DataFusionError::Internal(format!(
                        "{} needs a predicate",
                        self.name
                    )));
                };
                let mut out = BooleanBuilder::with_capacity(rows);
                let mut at = 0usize;
                for row in 0..rows {
                    let n = (offsets[row + 1] - offsets[row]) as usize;
                    if list.is_null(row) {
                        out.append_null();
                        at += n;
                        continue;
                    }
                    let (mut yes, mut no, mut unknown) = (0usize, 0usize, 0usize);
                    for i in at..at + n {
                        if tests.is_null(i) {
                            unknown += 1;
                        } else if tests.value(i) {
                            yes += 1;
                        } else {
                            no += 1;
                        }
                    }
                    at += n;
                    // openCypher: a null test leaves the answer null unless the others
                    // settle it.
                    let answer = match kind {
                        LambdaKind::All if no > 0 => Some(false),
                        LambdaKind::All => (unknown == 0).then_some(true),
                        LambdaKind::Any if yes > 0 => Some(true),
                        LambdaKind::Any => (unknown == 0).then_some(false),
                        LambdaKind::None if yes > 0 => Some(false),
                        LambdaKind::None => (unknown == 0).then_some(true),
                        LambdaKind::Single if yes > 1 => Some(false),
                        LambdaKind::Single if unknown > 0 => None,
                        LambdaKind::Single => Some(yes == 1),
                        LambdaKind::Comprehension => unreachable!("handled above"),
                    };
                    out.append_option(answer);
                }
                Arc::new(out.finish())
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}
