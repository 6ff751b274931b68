//! Arrow types as clients read them. DataFusion produces view types (`Utf8View`,
//! `BinaryView`) for strings and binaries, and the Flight SQL JDBC driver (DBeaver's) reads
//! neither in results, schemas nor parameters (arrow-java 18: `SqlTypes` and its accessor
//! factory have no view types). So the server sends them as `Utf8` and `Binary`, at every
//! place a schema or batch leaves it.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::error::ArrowError;

/// `t` with view types replaced by their plain forms, nested ones too.
pub fn wire_type(t: &DataType) -> DataType {
    let field = |f: &FieldRef| -> FieldRef {
        Arc::new(f.as_ref().clone().with_data_type(wire_type(f.data_type())))
    };
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(field(f)),
        DataType::ListView(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::LargeListView(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        DataType::Dictionary(key, value) => {
            DataType::Dictionary(key.clone(), Box::new(wire_type(value)))
        }
        other => other.clone(),
    }
}

/// `schema` as sent: the same one when it holds no view type.
pub fn wire_schema(schema: &SchemaRef) -> SchemaRef {
    if schema
        .fields()
        .iter()
        .all(|f| wire_type(f.data_type()) == *f.data_type())
    {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(wire_type(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` cast to `schema` (its [`wire_schema`]); untouched when they are one.
pub fn wire_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema_ref() == schema
        || batch
            .schema_ref()
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.data_type() == b.data_type())
    {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, StringViewArray};

    #[test]
    fn view_types_leave_as_plain_ones() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true))),
                true,
            ),
            Field::new("n", DataType::Int64, false),
        ]));
        let wire = wire_schema(&schema);
        assert_eq!(wire.field(0).data_type(), &DataType::Utf8);
        assert_eq!(
            wire.field(1).data_type(),
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
        assert_eq!(wire.field(2).data_type(), &DataType::Int64);
        let plain = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        assert!(Arc::ptr_eq(&wire_schema(&plain), &plain));

        let one = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, true)]));
        let batch = RecordBatch::try_new(
            one.clone(),
            vec![Arc::new(StringViewArray::from(vec![Some("a"), None]))],
        )
        .unwrap();
        let sent = wire_batch(batch, &wire_schema(&one)).unwrap();
        assert_eq!(sent.column(0).data_type(), &DataType::Utf8);
        assert_eq!(sent.column(0).null_count(), 1);
    }
}
