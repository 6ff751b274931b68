//! Turns Arrow results into text: boxed tables, CSV (RFC 4180) and JSON Lines.
//!
//! Every output goes through one intermediate [`Value`] tree, so the three formats agree on
//! what a value is (a node is a struct with `_label`, a relationship one with `_type`) and
//! differ only in how they spell it.

use std::fmt::Write as _;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use comfy_table::{CellAlignment, ContentArrangement, Table, presets};

/// Longest cell a table shows before cutting it short; whole values are in csv and json.
/// EXPLAIN's plans are never cut ([`is_explain`]).
pub const TABLE_CELL_CHARS_MAX: usize = 120;

/// Whether a result is an EXPLAIN's (`plan_type`, `plan`), whose plan cells a table prints
/// whole: a plan cut short hides the operators it is read for.
fn is_explain(schema: &arrow::datatypes::Schema) -> bool {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names == ["plan_type", "plan"]
}

/// How the shell prints query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A boxed, aligned table with a `(N rows)` footer.
    Table,
    /// A header row, then one RFC 4180 record per row.
    Csv,
    /// One JSON object per row (JSON Lines), keys in column order.
    Json,
}

/// One result value, independent of its Arrow encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Exact decimal text, e.g. `12.50`.
    Decimal(String),
    Text(String),
    /// Dates, times, timestamps, durations, binary: Arrow's ISO 8601 / hex display text.
    Other(String),
    List(Vec<Value>),
    /// Struct fields or map entries, in order.
    Struct(Vec<(String, Value)>),
}

/// Converts every row of an Arrow array into a [`Value`].
pub fn column_values(array: &dyn Array) -> Result<Vec<Value>, ArrowError> {
    let nulls = array.logical_nulls();
    let is_null = |row: usize| nulls.as_ref().is_some_and(|n| n.is_null(row));
    let values = match array.data_type() {
        DataType::Null => vec![Value::Null; array.len()],
        DataType::Boolean => {
            let a = array.as_boolean();
            rows(a.len(), is_null, |i| Value::Bool(a.value(i)))
        }
        DataType::Int8 => ints(array.as_primitive::<Int8Type>(), is_null),
        DataType::Int16 => ints(array.as_primitive::<Int16Type>(), is_null),
        DataType::Int32 => ints(array.as_primitive::<Int32Type>(), is_null),
        DataType::Int64 => ints(array.as_primitive::<Int64Type>(), is_null),
        DataType::UInt8 => ints(array.as_primitive::<UInt8Type>(), is_null),
        DataType::UInt16 => ints(array.as_primitive::<UInt16Type>(), is_null),
        DataType::UInt32 => ints(array.as_primitive::<UInt32Type>(), is_null),
        DataType::UInt64 => {
            let a = array.as_primitive::<UInt64Type>();
            rows(a.len(), is_null, |i| Value::UInt(a.value(i)))
        }
        DataType::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            rows(a.len(), is_null, |i| {
                Value::Float(f32_to_f64(a.value(i).to_f32()))
            })
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            rows(a.len(), is_null, |i| Value::Float(f32_to_f64(a.value(i))))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            rows(a.len(), is_null, |i| Value::Float(a.value(i)))
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            rows(a.len(), is_null, |i| Value::Text(a.value(i).to_owned()))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            rows(a.len(), is_null, |i| Value::Text(a.value(i).to_owned()))
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            rows(a.len(), is_null, |i| Value::Text(a.value(i).to_owned()))
        }
        DataType::List(_) => {
            let a = array.as_list::<i32>();
            let offsets: Vec<usize> = a.value_offsets().iter().map(|&o| o as usize).collect();
            lists(column_values(a.values().as_ref())?, &offsets, is_null)
        }
        DataType::LargeList(_) => {
            let a = array.as_list::<i64>();
            let offsets: Vec<usize> = a.value_offsets().iter().map(|&o| o as usize).collect();
            lists(column_values(a.values().as_ref())?, &offsets, is_null)
        }
        DataType::FixedSizeList(_, _) => {
            let a = array.as_fixed_size_list();
            let size = a.value_length() as usize;
            let start = if a.is_empty() {
                0
            } else {
                a.value_offset(0) as usize
            };
            let offsets: Vec<usize> = (0..=a.len()).map(|i| start + i * size).collect();
            lists(column_values(a.values().as_ref())?, &offsets, is_null)
        }
        DataType::Struct(_) => {
            let a = array.as_struct();
            let mut columns = Vec::with_capacity(a.num_columns());
            for column in a.columns() {
                columns.push(column_values(column.as_ref())?);
            }
            let names: Vec<&str> = a.column_names();
            rows(a.len(), is_null, |i| {
                let fields = names.iter().zip(&columns);
                Value::Struct(fields.map(|(n, c)| (n.to_string(), c[i].clone())).collect())
            })
        }
        DataType::Map(_, _) => {
            let a = array.as_map();
            let keys = column_values(a.keys().as_ref())?;
            let values = column_values(a.values().as_ref())?;
            let entries: Vec<Value> = keys
                .into_iter()
                .zip(values)
                .map(|(k, v)| Value::Struct(vec![(k.to_cell_text(), v)]))
                .collect();
            let offsets: Vec<usize> = a.value_offsets().iter().map(|&o| o as usize).collect();
            let maps = lists(entries, &offsets, is_null);
            maps.into_iter().map(flatten_map_entries).collect()
        }
        DataType::Dictionary(_, value_type) => {
            column_values(arrow::compute::cast(array, value_type)?.as_ref())?
        }
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => displayed(array, is_null, Value::Decimal)?,
        _ => displayed(array, is_null, Value::Other)?,
    };
    debug_assert_eq!(values.len(), array.len());
    Ok(values)
}

/// Converts a result (its batches) into rows of values.
pub fn batch_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>, ArrowError> {
    let mut out = Vec::new();
    for batch in batches {
        let mut columns = Vec::with_capacity(batch.num_columns());
        for column in batch.columns() {
            columns.push(column_values(column.as_ref())?.into_iter());
        }
        for _ in 0..batch.num_rows() {
            out.push(
                columns
                    .iter_mut()
                    .map(|c| c.next().unwrap_or(Value::Null))
                    .collect(),
            );
        }
    }
    Ok(out)
}

fn rows(len: usize, is_null: impl Fn(usize) -> bool, value: impl Fn(usize) -> Value) -> Vec<Value> {
    (0..len)
        .map(|i| if is_null(i) { Value::Null } else { value(i) })
        .collect()
}

fn ints<T>(a: &arrow::array::PrimitiveArray<T>, is_null: impl Fn(usize) -> bool) -> Vec<Value>
where
    T: arrow::datatypes::ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    rows(a.len(), is_null, |i| Value::Int(a.value(i).into()))
}

/// Cuts the flat child values into one list per row; `offsets` has one more entry than rows.
fn lists(child: Vec<Value>, offsets: &[usize], is_null: impl Fn(usize) -> bool) -> Vec<Value> {
    let mut child = child.into_iter();
    let mut position = 0;
    let mut out = Vec::with_capacity(offsets.len().saturating_sub(1));
    for (row, pair) in offsets.windows(2).enumerate() {
        let (start, end) = (pair[0], pair[1]);
        assert!(
            position <= start && start <= end,
            "list offsets must not decrease"
        );
        child.by_ref().take(start - position).for_each(drop);
        let items: Vec<Value> = child.by_ref().take(end - start).collect();
        position = end;
        out.push(if is_null(row) {
            Value::Null
        } else {
            Value::List(items)
        });
    }
    out
}

fn flatten_map_entries(map: Value) -> Value {
    match map {
        Value::List(entries) => Value::Struct(
            entries
                .into_iter()
                .flat_map(|e| match e {
                    Value::Struct(fields) => fields,
                    _ => Vec::new(),
                })
                .collect(),
        ),
        other => other,
    }
}

fn displayed(
    array: &dyn Array,
    is_null: impl Fn(usize) -> bool,
    wrap: fn(String) -> Value,
) -> Result<Vec<Value>, ArrowError> {
    let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())?;
    Ok(rows(array.len(), is_null, |i| {
        wrap(formatter.value(i).to_string())
    }))
}

/// Widens an f32 through its shortest decimal text, so 1.3f32 becomes 1.3, not 1.2999999523.
pub fn f32_to_f64(value: f32) -> f64 {
    if value.is_finite() {
        value.to_string().parse().unwrap_or(value as f64)
    } else {
        value as f64
    }
}

/// Spells a float so it always reads as one: `1.0`, `0.5`, `1e300`, `NaN`, `inf`, `-inf`.
pub fn format_float(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    let mut text = if magnitude != 0.0 && !(1e-6..1e16).contains(&magnitude) {
        format!("{value:e}")
    } else {
        value.to_string()
    };
    if !text.contains(['.', 'e']) {
        text.push_str(".0");
    }
    text
}

impl Value {
    /// The value as JSON: floats keep a decimal point, NaN and infinities become null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Decimal(text) => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(J::Null, J::Number),
            Value::Text(s) | Value::Other(s) => J::String(s.clone()),
            Value::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Struct(fields) => J::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The value as one table cell: text as is, `NULL` for null, nested values in ContextQL
    /// notation (nodes as `(:Label {p: 1})`, relationships as `[:TYPE {p: 1}]`).
    pub fn to_cell_text(&self) -> String {
        match self {
            Value::Null => "NULL".to_owned(),
            Value::Text(s) => s.clone(),
            other => {
                let mut out = String::new();
                other.write_nested(&mut out);
                out
            }
        }
    }

    /// The value as one CSV field: empty for null, nested values as compact JSON.
    pub fn to_csv_field(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::List(_) | Value::Struct(_) => self.to_json().to_string(),
            other => other.to_cell_text(),
        }
    }

    fn write_nested(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::UInt(u) => out.push_str(&u.to_string()),
            Value::Float(f) => out.push_str(&format_float(*f)),
            Value::Decimal(s) | Value::Other(s) => out.push_str(s),
            Value::Text(s) => write_quoted(s, out),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_nested(out);
                }
                out.push(']');
            }
            Value::Struct(fields) => write_struct(fields, out),
        }
    }
}

fn write_struct(fields: &[(String, Value)], out: &mut String) {
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let (open, close, tag) = if let Some(label) = field("_label") {
        ("(", ")", label)
    } else if let Some(rel_type) = field("_type") {
        ("[", "]", rel_type)
    } else {
        write_map(fields.iter(), out);
        return;
    };
    out.push_str(open);
    match tag {
        Value::Text(name) => {
            let _ = write!(out, ":{name}");
        }
        Value::List(names) => {
            for name in names {
                let _ = write!(out, ":{}", name.to_cell_text());
            }
        }
        _ => {}
    }
    // Graph entities show their properties; the bookkeeping fields and absent (null)
    // properties are left out, as openCypher prints them.
    let properties: Vec<&(String, Value)> = fields
        .iter()
        .filter(|(name, value)| !name.starts_with('_') && *value != Value::Null)
        .collect();
    if !properties.is_empty() {
        if tag != &Value::Null {
            out.push(' ');
        }
        write_map(properties.into_iter(), out);
    }
    out.push_str(close);
}

fn write_map<'a>(fields: impl Iterator<Item = &'a (String, Value)>, out: &mut String) {
    out.push('{');
    for (i, (name, value)) in fields.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{name}: ");
        value.write_nested(out);
    }
    out.push('}');
}

fn write_quoted(text: &str, out: &mut String) {
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// A boxed table with a header and a `(N rows)` footer.
pub fn render_table(schema: &arrow::datatypes::Schema, rows: &[Vec<Value>]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(schema.fields().iter().map(|f| f.name().clone()));
    let whole = is_explain(schema);
    for row in rows {
        table.add_row(row.iter().map(|v| {
            let text = v.to_cell_text();
            if whole { text } else { truncate(text) }
        }));
    }
    for (index, field) in schema.fields().iter().enumerate() {
        if field.data_type().is_numeric()
            && let Some(column) = table.column_mut(index)
        {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let noun = if rows.len() == 1 { "row" } else { "rows" };
    format!("{table}\n({} {noun})\n", rows.len())
}

fn truncate(text: String) -> String {
    match text.char_indices().nth(TABLE_CELL_CHARS_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A header record and one record per row, quoted as RFC 4180 requires.
pub fn render_csv(schema: &arrow::datatypes::Schema, rows: &[Vec<Value>]) -> String {
    render_csv_part(schema, rows, true)
}

/// CSV records of some rows of a result, with the header record when `header` (the first
/// part of a streamed result).
pub fn render_csv_part(
    schema: &arrow::datatypes::Schema,
    rows: &[Vec<Value>],
    header: bool,
) -> String {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    // Writing to a Vec cannot fail, and every record has the header's length.
    if header {
        writer
            .write_record(schema.fields().iter().map(|f| f.name().as_str()))
            .expect("csv header");
    }
    for row in rows {
        writer
            .write_record(row.iter().map(Value::to_csv_field))
            .expect("csv record");
    }
    let bytes = writer.into_inner().expect("csv flush");
    String::from_utf8(bytes).expect("csv output is UTF-8 because its input is")
}

/// The JSON key of each column: its name, except that a name seen before in the row (a join
/// without aliases has two `id`s) gets the first free `_1`, `_2`, ... suffix, so no column is
/// lost.
pub fn json_keys(schema: &arrow::datatypes::Schema) -> Vec<String> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut keys = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let mut key = name.to_string();
        if !taken.insert(key.clone()) {
            let mut n = 1;
            loop {
                key = format!("{name}_{n}");
                // Not a later column's own name either.
                if !names[i + 1..].contains(&key.as_str()) && taken.insert(key.clone()) {
                    break;
                }
                n += 1;
            }
        }
        keys.push(key);
    }
    keys
}

/// One JSON object per row, keys in column order ([`json_keys`]).
pub fn render_json_lines(schema: &arrow::datatypes::Schema, rows: &[Vec<Value>]) -> String {
    let keys = json_keys(schema);
    let mut out = String::new();
    for row in rows {
        let object: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .zip(row)
            .map(|(key, value)| (key.clone(), value.to_json()))
            .collect();
        out.push_str(&serde_json::Value::Object(object).to_string());
        out.push('\n');
    }
    out
}

/// Renders a result in the chosen format.
pub fn render(
    format: OutputFormat,
    schema: &arrow::datatypes::Schema,
    batches: &[RecordBatch],
) -> Result<String, ArrowError> {
    let rows = batch_rows(batches)?;
    Ok(match format {
        OutputFormat::Table => render_table(schema, &rows),
        OutputFormat::Csv => render_csv(schema, &rows),
        OutputFormat::Json => render_json_lines(schema, &rows),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanArray, Date32Array, FixedSizeListArray, Float32Array, Float64Array,
        Int64Array, ListArray, StringArray, StructArray,
    };
    use arrow::buffer::NullBuffer;
    use arrow::datatypes::{Field, Fields, Int64Type, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> (Schema, RecordBatch) {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        ((*batch.schema()).clone(), batch)
    }

    fn node_column() -> ArrayRef {
        let fields = Fields::from(vec![
            Field::new("_id", DataType::Int64, false),
            Field::new("_label", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("size", DataType::Int64, true),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["Package", "Package", "Package"])),
            Arc::new(StringArray::from(vec![Some("vim"), Some("it's"), None])),
            Arc::new(Int64Array::from(vec![Some(10), None, None])),
        ];
        let nulls = NullBuffer::from(vec![true, true, false]);
        Arc::new(StructArray::new(fields, columns, Some(nulls)))
    }

    #[test]
    fn json_keeps_every_column_of_duplicate_names() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("id", DataType::Int64, false),
            Field::new("id_1", DataType::Int64, false),
            Field::new("id", DataType::Int64, false),
        ]);
        assert_eq!(json_keys(&schema), vec!["id", "id_2", "id_1", "id_3"]);
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            (1..=4)
                .map(|i| Arc::new(Int64Array::from(vec![i])) as ArrayRef)
                .collect(),
        )
        .unwrap();
        let text = render(OutputFormat::Json, &schema, &[batch]).unwrap();
        assert_eq!(text, "{\"id\":1,\"id_2\":2,\"id_1\":3,\"id_3\":4}\n");
    }

    #[test]
    fn json_keeps_integers_floats_and_column_order() {
        let (schema, batch) = batch(vec![
            (
                "z",
                Arc::new(Int64Array::from(vec![Some(3), None])) as ArrayRef,
            ),
            ("a", Arc::new(Float64Array::from(vec![1.0, f64::NAN]))),
            ("s", Arc::new(StringArray::from(vec![Some("x\"y"), None]))),
            ("b", Arc::new(BooleanArray::from(vec![true, false]))),
        ]);
        let text = render(OutputFormat::Json, &schema, &[batch]).unwrap();
        assert_eq!(
            text,
            "{\"z\":3,\"a\":1.0,\"s\":\"x\\\"y\",\"b\":true}\n{\"z\":null,\"a\":null,\"s\":null,\"b\":false}\n"
        );
    }

    #[test]
    fn json_turns_nodes_into_objects() {
        let (schema, batch) = batch(vec![("p", node_column())]);
        let text = render(OutputFormat::Json, &schema, &[batch]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                r#"{"p":{"_id":1,"_label":"Package","name":"vim","size":10}}"#,
                r#"{"p":{"_id":2,"_label":"Package","name":"it's","size":null}}"#,
                r#"{"p":null}"#,
            ]
        );
    }

    #[test]
    fn float32_widens_through_its_shortest_text() {
        let values = column_values(&Float32Array::from(vec![1.3f32, 2.0])).unwrap();
        assert_eq!(values, vec![Value::Float(1.3), Value::Float(2.0)]);
        assert_eq!(values[1].to_json().to_string(), "2.0");
    }

    #[test]
    fn floats_always_read_as_floats() {
        assert_eq!(format_float(1.0), "1.0");
        assert_eq!(format_float(-0.5), "-0.5");
        assert_eq!(format_float(1e300), "1e300");
        assert_eq!(format_float(2.5e-9), "2.5e-9");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn lists_respect_offsets_nulls_and_slices() {
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
            Some(vec![Some(3), None]),
        ]);
        let sliced = list.slice(1, 3);
        let values = column_values(&sliced).unwrap();
        assert_eq!(
            values,
            vec![
                Value::Null,
                Value::List(vec![]),
                Value::List(vec![Value::Int(3), Value::Null]),
            ]
        );
        assert_eq!(values[2].to_cell_text(), "[3, null]");
        assert_eq!(values[2].to_json().to_string(), "[3,null]");
    }

    #[test]
    fn fixed_size_lists_become_lists() {
        let floats = Arc::new(Float32Array::from(vec![0.5, 1.0, 1.5, 2.0]));
        let field = Arc::new(Field::new("item", DataType::Float32, true));
        let vectors = FixedSizeListArray::new(field, 2, floats, None);
        let values = column_values(&vectors.slice(1, 1)).unwrap();
        assert_eq!(values[0].to_cell_text(), "[1.5, 2.0]");
    }

    #[test]
    fn table_is_boxed_with_a_footer() {
        let (schema, batch) = batch(vec![
            (
                "name",
                Arc::new(StringArray::from(vec![Some("vim"), None])) as ArrayRef,
            ),
            ("n", Arc::new(Int64Array::from(vec![7, 12345]))),
        ]);
        let text = render(OutputFormat::Table, &schema, &[batch]).unwrap();
        let expected = "\
┌──────┬───────┐
│ name ┆     n │
╞══════╪═══════╡
│ vim  ┆     7 │
│ NULL ┆ 12345 │
└──────┴───────┘
(2 rows)
";
        assert_eq!(text, expected);
    }

    #[test]
    fn table_shows_nodes_in_contextql_notation() {
        let (schema, batch) = batch(vec![("p", node_column())]);
        let rows = batch_rows(&[batch]).unwrap();
        let cells: Vec<String> = rows.iter().map(|r| r[0].to_cell_text()).collect();
        assert_eq!(
            cells,
            vec![
                "(:Package {name: 'vim', size: 10})",
                "(:Package {name: 'it\\'s'})",
                "NULL",
            ]
        );
        assert!(render_table(&schema, &rows).ends_with("(3 rows)\n"));
    }

    #[test]
    fn relationships_and_plain_structs_read_differently() {
        let relationship = Value::Struct(vec![
            ("_id".into(), Value::Int(9)),
            ("_type".into(), Value::Text("DEPENDS".into())),
            ("_src".into(), Value::Int(1)),
            ("_dst".into(), Value::Int(2)),
        ]);
        assert_eq!(relationship.to_cell_text(), "[:DEPENDS]");
        let map = Value::Struct(vec![("k".into(), Value::List(vec![Value::Float(1.0)]))]);
        assert_eq!(map.to_cell_text(), "{k: [1.0]}");
        assert_eq!(map.to_csv_field(), r#"{"k":[1.0]}"#);
    }

    #[test]
    fn csv_quotes_as_rfc_4180_requires() {
        let (schema, batch) = batch(vec![
            (
                "a,b",
                Arc::new(StringArray::from(vec![Some("say \"hi\""), None])) as ArrayRef,
            ),
            ("x", Arc::new(Float64Array::from(vec![1.0, 2.5]))),
            ("d", Arc::new(Date32Array::from(vec![0, 19723]))),
        ]);
        let text = render(OutputFormat::Csv, &schema, &[batch]).unwrap();
        assert_eq!(
            text,
            "\"a,b\",x,d\n\"say \"\"hi\"\"\",1.0,1970-01-01\n,2.5,2024-01-01\n"
        );
    }

    #[test]
    fn dates_are_iso_strings_in_json() {
        let (schema, batch) = batch(vec![(
            "d",
            Arc::new(Date32Array::from(vec![19723])) as ArrayRef,
        )]);
        let text = render(OutputFormat::Json, &schema, &[batch]).unwrap();
        assert_eq!(text, "{\"d\":\"2024-01-01\"}\n");
    }

    #[test]
    fn long_cells_are_cut_in_tables_only() {
        let long = "x".repeat(TABLE_CELL_CHARS_MAX + 5);
        assert_eq!(
            truncate(long.clone()).chars().count(),
            TABLE_CELL_CHARS_MAX + 1
        );
        assert_eq!(Value::Text(long.clone()).to_csv_field(), long);
    }

    #[test]
    fn explain_plans_are_printed_whole() {
        let plan = format!(
            "IcebergFileScan: t {}",
            "x".repeat(TABLE_CELL_CHARS_MAX * 2)
        );
        let schema = Schema::new(vec![
            Field::new("plan_type", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
        ]);
        let rows = vec![vec![
            Value::Text("physical_plan".into()),
            Value::Text(plan.clone()),
        ]];
        assert!(render_table(&schema, &rows).contains(&plan));
        let other = Schema::new(vec![Field::new("plan", DataType::Utf8, false)]);
        let rows = vec![vec![Value::Text(plan.clone())]];
        assert!(!render_table(&other, &rows).contains(&plan));
    }
}
