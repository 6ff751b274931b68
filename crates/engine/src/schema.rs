//! The graph schema, kept in Iceberg table properties so the catalog is its only source.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use contextql::ast;
use datafusion::common::ScalarValue;
use iceberg::spec::{
    ListType, Literal, NestedField, PrimitiveLiteral, PrimitiveType, Schema as IcebergSchema, Type,
};

use crate::error::{Error, Result};
use contextdb_storage::table_io::ROW_ID;

pub const PROP_KIND: &str = "contextdb.kind";
pub const PROP_PRIMARY_KEY: &str = "contextdb.primary-key";
pub const PROP_FROM: &str = "contextdb.edge.from";
pub const PROP_TO: &str = "contextdb.edge.to";
/// The relationship type of an edge table, when not the table's name (a type's second and
/// later FROM/TO pairs live in tables named `<type>.<from>.<to>`).
pub const PROP_EDGE_TYPE: &str = "contextdb.edge.type";
/// The hidden key column of tables made by schema evolution.
pub const GENERATED_KEY: &str = "_key";
/// `contextdb.vector.<column>` = dimension.
pub const PROP_VECTOR_PREFIX: &str = "contextdb.vector.";
/// `contextdb.vector-index.<column>` = `<name>;<metric>`.
pub const PROP_VECTOR_INDEX_PREFIX: &str = "contextdb.vector-index.";

/// `contextdb.arrow-type.<column>` = the Arrow type a SQL column was declared with (in
/// Arrow's own text form) where Iceberg stores it as another type: `TINYINT` stored as `int`,
/// `VARCHAR` (DataFusion's `Utf8View`) stored as `string`, a zone stored as UTC. Reads cast
/// the stored values back (`presented_type` says which types qualify).
pub const PROP_ARROW_TYPE_PREFIX: &str = "contextdb.arrow-type.";

/// The zone Iceberg's `timestamptz` values read back in.
const UTC: &str = "+00:00";

/// The namespace of the default graph.
pub const DEFAULT_GRAPH: &str = "main";

/// Separates a SQL schema from a table's name in the key of a table outside the default
/// graph (`schema\u{1f}name`): snapshots and statements key tables by one string, and no
/// table or schema name holds a control character ([`check_sql_name`]).
pub const SCHEMA_SEPARATOR: char = '\u{1f}';

/// The key of table `name` of SQL schema `schema` (None, or the default graph's: the name).
pub fn table_key(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(schema) if schema != DEFAULT_GRAPH => format!("{schema}{SCHEMA_SEPARATOR}{name}"),
        _ => name.to_string(),
    }
}

/// A table key's schema (None: the default graph) and name.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once(SCHEMA_SEPARATOR) {
        Some((schema, name)) => (Some(schema), name),
        None => (None, key),
    }
}

/// A table key as users write it: `name`, or `schema.name`.
pub fn display_key(key: &str) -> String {
    match split_key(key) {
        (Some(schema), name) => format!("{schema}.{name}"),
        (None, name) => name.to_string(),
    }
}

/// Refuses a SQL table or schema name holding a control character (the key separator among
/// them) or nothing at all.
pub fn check_sql_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(Error::plan(format!(
            "invalid {what} name {name:?}: names may not be empty or hold control characters"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Node,
    Edge,
    /// A plain SQL table.
    Table,
}

impl TableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Node => "node",
            TableKind::Edge => "edge",
            TableKind::Table => "table",
        }
    }
}

/// What the engine knows of a table from its properties.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The table as messages name it (`schema.name` for a SQL schema's table; snapshots key
    /// tables by `table_key`).
    pub name: String,
    pub kind: TableKind,
    pub primary_key: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// For edge tables: the relationship type (None: the table's name).
    pub rel_type: Option<String>,
    /// Vector columns and their dimension.
    pub vectors: HashMap<String, i32>,
    /// Columns presented as the Arrow type they were declared with ([`PROP_ARROW_TYPE_PREFIX`]).
    pub declared: HashMap<String, DataType>,
    /// Vector columns with a vector index, and its definition ([`PROP_VECTOR_INDEX_PREFIX`];
    /// not written back by [`TableInfo::properties`]: the index DDL sets it).
    pub vector_indexes: HashMap<String, crate::vector_index::VectorIndexDef>,
}

impl TableInfo {
    /// Whether this is an edge table with node table `node` at either end (whose keys it
    /// stores).
    pub fn connects(&self, node: &str) -> bool {
        self.kind == TableKind::Edge
            && (self.from.as_deref() == Some(node) || self.to.as_deref() == Some(node))
    }

    /// Whether `column` identifies a row to the graph and cannot be updated: the primary key,
    /// and an edge's endpoints.
    pub fn is_fixed(&self, column: &str) -> bool {
        self.primary_key.as_deref() == Some(column)
            || (self.kind == TableKind::Edge && (column == "src" || column == "dst"))
    }

    pub fn from_properties(name: &str, props: &HashMap<String, String>) -> TableInfo {
        let kind = match props.get(PROP_KIND).map(String::as_str) {
            Some("node") => TableKind::Node,
            Some("edge") => TableKind::Edge,
            _ => TableKind::Table,
        };
        let vectors = props
            .iter()
            .filter_map(|(k, v)| {
                let column = k.strip_prefix(PROP_VECTOR_PREFIX)?;
                Some((column.to_string(), v.parse().ok()?))
            })
            .collect();
        let declared = props
            .iter()
            .filter_map(|(k, v)| {
                let column = k.strip_prefix(PROP_ARROW_TYPE_PREFIX)?;
                match v.parse::<DataType>() {
                    Ok(t) => Some((column.to_string(), t)),
                    // Written by a later Arrow's text form: the stored type is still right.
                    Err(e) => {
                        tracing::warn!(table = name, column, error = %e, "ignoring a declared type");
                        None
                    }
                }
            })
            .collect();
        let vector_indexes = crate::vector_index::definitions(props);
        TableInfo {
            name: name.to_string(),
            kind,
            primary_key: props.get(PROP_PRIMARY_KEY).cloned(),
            from: props.get(PROP_FROM).cloned(),
            to: props.get(PROP_TO).cloned(),
            rel_type: props.get(PROP_EDGE_TYPE).cloned(),
            vectors,
            declared,
            vector_indexes,
        }
    }

    pub fn properties(&self) -> HashMap<String, String> {
        let mut p = HashMap::from([(PROP_KIND.to_string(), self.kind.as_str().to_string())]);
        if let Some(pk) = &self.primary_key {
            p.insert(PROP_PRIMARY_KEY.into(), pk.clone());
        }
        if let Some(f) = &self.from {
            p.insert(PROP_FROM.into(), f.clone());
        }
        if let Some(t) = &self.to {
            p.insert(PROP_TO.into(), t.clone());
        }
        if let Some(t) = &self.rel_type {
            p.insert(PROP_EDGE_TYPE.into(), t.clone());
        }
        for (c, d) in &self.vectors {
            p.insert(format!("{PROP_VECTOR_PREFIX}{c}"), d.to_string());
        }
        for (c, t) in &self.declared {
            p.insert(format!("{PROP_ARROW_TYPE_PREFIX}{c}"), t.to_string());
        }
        p
    }
}

/// The Arrow schema users see: storage schema without field ids, vectors as FixedSizeList,
/// declared types where they differ from the stored ones.
pub fn user_schema(storage: &Schema, info: &TableInfo) -> SchemaRef {
    let fields: Vec<Field> = storage
        .fields()
        .iter()
        .filter(|f| f.name() != ROW_ID)
        .map(|f| {
            let data_type = match (info.vectors.get(f.name()), info.declared.get(f.name())) {
                (Some(&d), _) => DataType::FixedSizeList(
                    Arc::new(Field::new("item", DataType::Float32, true)),
                    d,
                ),
                (None, Some(declared)) => declared.clone(),
                (None, None) => strip_metadata(f.data_type()),
            };
            Field::new(f.name(), data_type, f.is_nullable())
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn strip_metadata(t: &DataType) -> DataType {
    match t {
        DataType::List(f) => DataType::List(Arc::new(Field::new(
            "item",
            strip_metadata(f.data_type()),
            f.is_nullable(),
        ))),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Field::new(f.name(), strip_metadata(f.data_type()), f.is_nullable()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The type a SQL column declared as `declared` (stored as `stored`) is presented as, when
/// not the stored type's own: the declared one, if values cast there and back. Dictionaries
/// with keys narrower than 32 bits, and run-end encoded values with 16-bit run ends, are
/// presented as their values: a scan's batch may hold more values than such keys count.
pub fn presented_type(declared: &DataType, stored: &ast::DataType) -> Option<DataType> {
    if matches!(stored, ast::DataType::Vector(_)) {
        return None;
    }
    let read = iceberg::arrow::type_to_arrow_type(&iceberg_type(stored, &mut 0)).ok()?;
    if loose(declared) == loose(&read) {
        return None;
    }
    if let DataType::Dictionary(key, _) = declared
        && !matches!(
            key.as_ref(),
            DataType::Int32 | DataType::Int64 | DataType::UInt32 | DataType::UInt64
        )
    {
        return None;
    }
    if let DataType::RunEndEncoded(run_ends, _) = declared
        && run_ends.data_type() == &DataType::Int16
    {
        return None;
    }
    let castable = arrow::compute::can_cast_types(&read, declared)
        && arrow::compute::can_cast_types(declared, &read);
    castable.then(|| declared.clone())
}

/// A column of a table being created: name, type, and whether it is required (not null).
pub type StoredColumn = (String, ast::DataType, bool);

/// The stored columns of a table created from Arrow `schema` (CREATE TABLE AS, bulk ingest):
/// each column's stored type, and whether it is required (declared non-null, or the
/// primary key). Vector columns and the Arrow types columns are presented as go into `info`.
pub fn stored_columns(schema: &Schema, info: &mut TableInfo) -> Result<Vec<StoredColumn>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let t = ast_type(f.data_type())?;
            if let ast::DataType::Vector(d) = t {
                info.vectors.insert(f.name().clone(), d as i32);
            }
            if let Some(declared) = presented_type(f.data_type(), &t) {
                info.declared.insert(f.name().clone(), declared);
            }
            let required = !f.is_nullable() || info.primary_key.as_deref() == Some(f.name());
            Ok((f.name().clone(), t, required))
        })
        .collect()
}

/// `t` with nested fields reduced to name and type (no metadata, all nullable).
fn loose(t: &DataType) -> DataType {
    let field = |f: &Field| Arc::new(Field::new(f.name(), loose(f.data_type()), true));
    match t {
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(|f| field(f)).collect()),
        other => other.clone(),
    }
}

/// Iceberg type of a ContextQL column type.
pub fn iceberg_type(t: &ast::DataType, next_id: &mut i32) -> Type {
    match t {
        ast::DataType::Boolean => Type::Primitive(PrimitiveType::Boolean),
        ast::DataType::Int32 => Type::Primitive(PrimitiveType::Int),
        ast::DataType::Int64 => Type::Primitive(PrimitiveType::Long),
        ast::DataType::Float32 => Type::Primitive(PrimitiveType::Float),
        ast::DataType::Float64 => Type::Primitive(PrimitiveType::Double),
        ast::DataType::String => Type::Primitive(PrimitiveType::String),
        ast::DataType::Date => Type::Primitive(PrimitiveType::Date),
        ast::DataType::Timestamp => Type::Primitive(PrimitiveType::Timestamp),
        ast::DataType::TimestampTz => Type::Primitive(PrimitiveType::Timestamptz),
        ast::DataType::Time => Type::Primitive(PrimitiveType::Time),
        ast::DataType::Binary => Type::Primitive(PrimitiveType::Binary),
        ast::DataType::Fixed(n) => Type::Primitive(PrimitiveType::Fixed(*n as u64)),
        ast::DataType::Decimal(precision, scale) => Type::Primitive(PrimitiveType::Decimal {
            precision: *precision as u32,
            scale: *scale as u32,
        }),
        ast::DataType::Struct(fields) => Type::Struct(iceberg::spec::StructType::new(
            fields
                .iter()
                .map(|(name, t)| {
                    *next_id += 1;
                    let id = *next_id;
                    let ty = iceberg_type(t, next_id);
                    Arc::new(NestedField::optional(id, name, ty))
                })
                .collect(),
        )),
        ast::DataType::Map(key, value) => {
            *next_id += 1;
            let key_id = *next_id;
            *next_id += 1;
            let value_id = *next_id;
            let key = iceberg_type(key, next_id);
            let value = iceberg_type(value, next_id);
            Type::Map(iceberg::spec::MapType::new(
                Arc::new(NestedField::map_key_element(key_id, key)),
                Arc::new(NestedField::map_value_element(value_id, value, false)),
            ))
        }
        ast::DataType::Vector(_) => {
            *next_id += 1;
            Type::List(ListType::new(Arc::new(NestedField::list_element(
                *next_id,
                Type::Primitive(PrimitiveType::Float),
                false,
            ))))
        }
        ast::DataType::List(inner) => {
            *next_id += 1;
            let id = *next_id;
            let inner = iceberg_type(inner, next_id);
            Type::List(ListType::new(Arc::new(NestedField::list_element(
                id, inner, false,
            ))))
        }
    }
}

/// Builds an Iceberg schema from column definitions; `required` columns are NOT NULL. The
/// hidden row id column ([`ROW_ID`]) comes last.
pub fn iceberg_schema(columns: &[(String, ast::DataType, bool)]) -> Result<IcebergSchema> {
    if let Some((name, ..)) = columns.iter().find(|(n, ..)| n.starts_with("__")) {
        return Err(Error::plan(format!(
            "invalid column name `{name}`: names starting with `__` are reserved"
        )));
    }
    let mut columns = columns.to_vec();
    columns.push((ROW_ID.to_string(), ast::DataType::Int64, true));
    // Top-level fields get ids 1..=n; nested ids follow.
    let mut next_id = columns.len() as i32;
    let fields: Vec<_> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, t, required))| {
            let id = i as i32 + 1;
            let ty = iceberg_type(t, &mut next_id);
            Arc::new(if *required {
                NestedField::required(id, name, ty)
            } else {
                NestedField::optional(id, name, ty)
            })
        })
        .collect();
    IcebergSchema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(|e| Error::plan(format!("invalid table schema: {e}")))
}

/// ContextQL type of an Arrow type (for SQL CREATE TABLE and schema evolution).
pub fn ast_type(t: &DataType) -> Result<ast::DataType> {
    Ok(match t {
        DataType::Boolean => ast::DataType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            ast::DataType::Int32
        }
        DataType::Int64 | DataType::UInt32 => ast::DataType::Int64,
        DataType::Float16 | DataType::Float32 => ast::DataType::Float32,
        DataType::Float64 => ast::DataType::Float64,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ast::DataType::String,
        DataType::Date32 | DataType::Date64 => ast::DataType::Date,
        DataType::Timestamp(_, None) => ast::DataType::Timestamp,
        DataType::Timestamp(_, Some(_)) => ast::DataType::TimestampTz,
        DataType::Time32(_) | DataType::Time64(_) => ast::DataType::Time,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => ast::DataType::Binary,
        DataType::FixedSizeBinary(n) if *n > 0 => ast::DataType::Fixed(*n as u32),
        // The next wider signed type: Iceberg has no unsigned integers, nor one past 64 bits.
        DataType::UInt64 => ast::DataType::Decimal(20, 0),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => {
            if *p > 38 || *s < 0 || *s as u8 > *p {
                return Err(Error::plan(format!(
                    "column type {t} cannot be stored: Iceberg decimals have a precision of at \
                     most 38 and a scale from 0 to the precision; use DOUBLE, or VARCHAR for \
                     exact digits"
                )));
            }
            ast::DataType::Decimal(*p, *s as u8)
        }
        DataType::Dictionary(_, value) => ast_type(value)?,
        DataType::RunEndEncoded(_, values) => ast_type(values.data_type())?,
        DataType::Struct(fields) => ast::DataType::Struct(
            fields
                .iter()
                .map(|f| Ok((f.name().clone(), ast_type(f.data_type())?)))
                .collect::<Result<_>>()?,
        ),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => ast::DataType::Map(
                Box::new(ast_type(kv[0].data_type())?),
                Box::new(ast_type(kv[1].data_type())?),
            ),
            other => {
                return Err(Error::plan(format!(
                    "map entries of type {other} are not supported"
                )));
            }
        },
        DataType::Interval(_) | DataType::Duration(_) => {
            return Err(Error::plan(format!(
                "column type {t} cannot be stored (Iceberg has no interval type); store a count \
                 of units as BIGINT (e.g. seconds), or the text as VARCHAR"
            )));
        }
        DataType::FixedSizeList(f, d) if f.data_type() == &DataType::Float32 => {
            ast::DataType::Vector(*d as u32)
        }
        DataType::List(f) | DataType::LargeList(f) => {
            ast::DataType::List(Box::new(ast_type(f.data_type())?))
        }
        other => {
            return Err(Error::plan(format!("column type {other} is not supported")));
        }
    })
}

/// A column's `DEFAULT` as the Iceberg field's write-default (the table format's own place
/// for it, so other Iceberg engines apply it too): `value` cast to the column's type. None
/// for `DEFAULT NULL`, which is the same as no default.
pub fn write_default(
    column: &str,
    t: &ast::DataType,
    value: &ScalarValue,
) -> Result<Option<Literal>> {
    if value.is_null() {
        return Ok(None);
    }
    let to = match t {
        ast::DataType::Boolean => DataType::Boolean,
        ast::DataType::Int32 => DataType::Int32,
        ast::DataType::Int64 => DataType::Int64,
        ast::DataType::Float32 => DataType::Float32,
        ast::DataType::Float64 => DataType::Float64,
        ast::DataType::String => DataType::Utf8,
        ast::DataType::Date => DataType::Date32,
        ast::DataType::Timestamp => {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
        }
        ast::DataType::TimestampTz => {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some(UTC.into()))
        }
        ast::DataType::Time => DataType::Time64(arrow::datatypes::TimeUnit::Microsecond),
        ast::DataType::Decimal(p, s) => DataType::Decimal128(*p, *s as i8),
        ast::DataType::Binary => DataType::LargeBinary,
        ast::DataType::Fixed(n) => DataType::FixedSizeBinary(*n as i32),
        ast::DataType::Vector(_)
        | ast::DataType::List(_)
        | ast::DataType::Struct(_)
        | ast::DataType::Map(..) => {
            return Err(Error::plan(format!(
                "column `{column}`: DEFAULT is not supported for list, vector, struct and map \
                 columns"
            )));
        }
    };
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let cast = value.cast_to_with_options(&to, &options).map_err(|e| {
        Error::plan(format!(
            "column `{column}`: the DEFAULT value `{value}` does not cast to {to} ({e})"
        ))
    })?;
    Ok(Some(match cast {
        ScalarValue::Boolean(Some(v)) => Literal::bool(v),
        ScalarValue::Int32(Some(v)) => Literal::int(v),
        ScalarValue::Int64(Some(v)) => Literal::long(v),
        ScalarValue::Float32(Some(v)) => Literal::float(v),
        ScalarValue::Float64(Some(v)) => Literal::double(v),
        ScalarValue::Utf8(Some(v)) => Literal::string(v),
        ScalarValue::Date32(Some(v)) => Literal::date(v),
        ScalarValue::TimestampMicrosecond(Some(v), None) => Literal::timestamp(v),
        ScalarValue::TimestampMicrosecond(Some(v), Some(_)) => Literal::timestamptz(v),
        ScalarValue::Time64Microsecond(Some(v)) => Literal::time(v),
        ScalarValue::Decimal128(Some(v), ..) => Literal::decimal(v),
        ScalarValue::LargeBinary(Some(v)) => Literal::binary(v),
        ScalarValue::FixedSizeBinary(_, Some(v)) => Literal::fixed(v),
        other => {
            return Err(Error::internal(format!(
                "column `{column}`: DEFAULT cast to {to} gave {other:?}"
            )));
        }
    }))
}

/// `schema` with each column named in `defaults` given its write-default.
pub fn with_write_defaults(
    schema: IcebergSchema,
    defaults: &HashMap<String, Literal>,
) -> Result<IcebergSchema> {
    if defaults.is_empty() {
        return Ok(schema);
    }
    let fields = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| match defaults.get(&f.name) {
            Some(value) => Arc::new((**f).clone().with_write_default(value.clone())),
            None => f.clone(),
        })
        .collect::<Vec<_>>();
    IcebergSchema::builder()
        .with_schema_id(schema.schema_id())
        .with_fields(fields)
        .build()
        .map_err(|e| Error::plan(format!("invalid table schema: {e}")))
}

/// The write-defaults of `table`'s current columns as values of their Arrow types. A default
/// this engine cannot read (written by another one) is left out, with a warning.
pub fn column_defaults(table: &iceberg::table::Table) -> HashMap<String, ScalarValue> {
    let mut defaults = HashMap::new();
    for field in table.metadata().current_schema().as_struct().fields() {
        let Some(value) = &field.write_default else {
            continue;
        };
        let Type::Primitive(t) = field.field_type.as_ref() else {
            continue;
        };
        let scalar = match (t, value) {
            (PrimitiveType::Boolean, Literal::Primitive(PrimitiveLiteral::Boolean(v))) => {
                ScalarValue::Boolean(Some(*v))
            }
            (PrimitiveType::Int, Literal::Primitive(PrimitiveLiteral::Int(v))) => {
                ScalarValue::Int32(Some(*v))
            }
            (PrimitiveType::Long, Literal::Primitive(PrimitiveLiteral::Long(v))) => {
                ScalarValue::Int64(Some(*v))
            }
            (PrimitiveType::Float, Literal::Primitive(PrimitiveLiteral::Float(v))) => {
                ScalarValue::Float32(Some(v.0))
            }
            (PrimitiveType::Double, Literal::Primitive(PrimitiveLiteral::Double(v))) => {
                ScalarValue::Float64(Some(v.0))
            }
            (PrimitiveType::String, Literal::Primitive(PrimitiveLiteral::String(v))) => {
                ScalarValue::Utf8(Some(v.clone()))
            }
            (PrimitiveType::Date, Literal::Primitive(PrimitiveLiteral::Int(v))) => {
                ScalarValue::Date32(Some(*v))
            }
            (PrimitiveType::Timestamp, Literal::Primitive(PrimitiveLiteral::Long(v))) => {
                ScalarValue::TimestampMicrosecond(Some(*v), None)
            }
            (PrimitiveType::Timestamptz, Literal::Primitive(PrimitiveLiteral::Long(v))) => {
                ScalarValue::TimestampMicrosecond(Some(*v), Some(UTC.into()))
            }
            (PrimitiveType::Time, Literal::Primitive(PrimitiveLiteral::Long(v))) => {
                ScalarValue::Time64Microsecond(Some(*v))
            }
            (
                PrimitiveType::Decimal { precision, scale },
                Literal::Primitive(PrimitiveLiteral::Int128(v)),
            ) => ScalarValue::Decimal128(Some(*v), *precision as u8, *scale as i8),
            (PrimitiveType::Binary, Literal::Primitive(PrimitiveLiteral::Binary(v))) => {
                ScalarValue::LargeBinary(Some(v.clone()))
            }
            (PrimitiveType::Fixed(n), Literal::Primitive(PrimitiveLiteral::Binary(v))) => {
                ScalarValue::FixedSizeBinary(*n as i32, Some(v.clone()))
            }
            _ => {
                tracing::warn!(
                    table = %table.identifier(),
                    column = %field.name,
                    "ignoring a write-default this engine cannot read"
                );
                continue;
            }
        };
        defaults.insert(field.name.clone(), scalar);
    }
    defaults
}
