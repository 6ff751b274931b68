//! Catalog metadata in the shapes the Flight SQL spec gives: server information (GetSqlInfo),
//! type information, primary keys and the foreign keys of edge tables.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt8Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetPrimaryKeys, Nullable, Searchable, SqlInfo, SqlNullOrdering,
    SqlOuterJoinsSupportLevel, SqlSupportedCaseSensitivity, SqlSupportedTransaction, XdbcDataType,
};
use contextdb_engine::{DEFAULT_CATALOG, TableDescription, TableType};

/// Words ContextQL reserves beyond SQL's.
const KEYWORDS: &[&str] = &[
    "MATCH",
    "OPTIONAL",
    "RETURN",
    "WITH",
    "UNWIND",
    "MERGE",
    "DETACH",
    "REMOVE",
    "VECTOR",
    "SIMILAR",
    "METRIC",
    "THRESHOLD",
    "NODE",
    "EDGE",
    "INDEX",
    "INDEXES",
    "SNAPSHOT",
    "COPY",
    "COMPACT",
    "VACUUM",
    "SHOW",
    "EXPLAIN",
    "ANALYZE",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs",
    "acos",
    "asin",
    "atan",
    "atan2",
    "cbrt",
    "ceil",
    "cos",
    "cosine_similarity",
    "cot",
    "degrees",
    "exp",
    "floor",
    "inner_product",
    "l2_distance",
    "ln",
    "log",
    "log10",
    "log2",
    "pi",
    "power",
    "radians",
    "random",
    "round",
    "signum",
    "sin",
    "sqrt",
    "tan",
    "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "chr",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "octet_length",
    "regexp_match",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "to_hex",
    "translate",
    "trim",
    "upper",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "from_unixtime",
    "now",
    "to_timestamp",
    "to_timestamp_millis",
    "to_timestamp_micros",
    "to_timestamp_seconds",
];
const SYSTEM_FUNCTIONS: &[&str] = &["arrow_typeof", "version"];

/// What GetSqlInfo answers, built once.
pub fn sql_info() -> &'static SqlInfoData {
    static DATA: OnceLock<SqlInfoData> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "ContextDB");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
        b.append(SqlInfo::FlightSqlServerReadOnly, false);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        b.append(SqlInfo::FlightSqlServerCancel, true);
        b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
        b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
        b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
        b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, true);
        b.append(SqlInfo::SqlDdlTable, true);
        // Names are case-sensitive and kept as written, quoted or not (the engine turns off
        // DataFusion's folding). Flight SQL has no such value; lower case makes JDBC clients
        // (DBeaver) quote every name not in lower case, which then matches exactly.
        b.append(
            SqlInfo::SqlIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
        );
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(
            SqlInfo::SqlQuotedIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
        );
        b.append(SqlInfo::SqlAllTablesAreSelectable, true);
        // DataFusion sorts nulls as the largest values (last ascending, first descending).
        b.append(
            SqlInfo::SqlNullOrdering,
            SqlNullOrdering::SqlNullsSortedHigh as i32,
        );
        b.append(SqlInfo::SqlKeywords, KEYWORDS);
        b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
        b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
        b.append(SqlInfo::SqlSystemFunctions, SYSTEM_FUNCTIONS);
        b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
        b.append(SqlInfo::SqlSearchStringEscape, "\\");
        b.append(SqlInfo::SqlExtraNameCharacters, "");
        b.append(SqlInfo::SqlSupportsColumnAliasing, true);
        b.append(SqlInfo::SqlNullPlusNullIsNull, true);
        b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
        b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
        b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
        b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
        b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
        b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
        b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
        b.append(SqlInfo::SqlCatalogAtStart, true);
        b.append(SqlInfo::SqlSchemaTerm, "schema");
        b.append(SqlInfo::SqlProcedureTerm, "procedure");
        b.append(SqlInfo::SqlCatalogTerm, "catalog");
        b.append(SqlInfo::SqlSelectForUpdateSupported, false);
        b.append(SqlInfo::SqlStoredProceduresSupported, false);
        b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
        b.append(SqlInfo::SqlTransactionsSupported, false);
        b.append(SqlInfo::SqlBatchUpdatesSupported, true);
        b.append(SqlInfo::SqlSavepointsSupported, false);
        b.append(SqlInfo::SqlNamedParametersSupported, true);
        b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
        b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
        b.append(SqlInfo::SqlMaxColumnNameLength, 0i64);
        b.append(SqlInfo::SqlMaxTableNameLength, 0i64);
        b.append(SqlInfo::SqlMaxStatementLength, 0i64);
        // The JDBC driver unboxes these when asked (DBeaver asks on connect): an absent one
        // is a NullPointerException in the client. Bitmasks set bit n for enum value n; 0
        // for a length or count means "no limit known".
        b.append(SqlInfo::SqlSupportsConvert, HashMap::<i32, Vec<i32>>::new());
        // GROUP BY unrelated columns and beyond the SELECT list.
        b.append(SqlInfo::SqlSupportedGroupBy, 0b11i32);
        // Minimum and core SQL grammar; ANSI-92 entry and intermediate levels.
        b.append(SqlInfo::SqlSupportedGrammar, 0b011i32);
        b.append(SqlInfo::SqlAnsi92SupportedLevel, 0b011i32);
        b.append(
            SqlInfo::SqlOuterJoinsSupportLevel,
            SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
        );
        b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
        b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
        b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
        // Subqueries in comparisons, EXISTS, IN and quantified comparisons.
        b.append(SqlInfo::SqlSupportedSubqueries, 0b1111i32);
        // UNION and UNION ALL.
        b.append(SqlInfo::SqlSupportedUnions, 0b11i32);
        b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
        // Forward-only result sets (SqlSupportedResultSetType 1).
        b.append(SqlInfo::SqlSupportedResultSetTypes, 1i32 << 1);
        for unlimited in [
            SqlInfo::SqlMaxBinaryLiteralLength,
            SqlInfo::SqlMaxCharLiteralLength,
            SqlInfo::SqlMaxColumnsInGroupBy,
            SqlInfo::SqlMaxColumnsInIndex,
            SqlInfo::SqlMaxColumnsInOrderBy,
            SqlInfo::SqlMaxColumnsInSelect,
            SqlInfo::SqlMaxColumnsInTable,
            SqlInfo::SqlMaxConnections,
            SqlInfo::SqlMaxCursorNameLength,
            SqlInfo::SqlMaxIndexLength,
            SqlInfo::SqlDbSchemaNameLength,
            SqlInfo::SqlMaxProcedureNameLength,
            SqlInfo::SqlMaxCatalogNameLength,
            SqlInfo::SqlMaxRowSize,
            SqlInfo::SqlMaxStatements,
            SqlInfo::SqlMaxTablesInSelect,
            SqlInfo::SqlMaxUsernameLength,
        ] {
            b.append(unlimited, 0i64);
        }
        b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
        b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
        b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
        // The spec says int32, but the JDBC driver reads it as a Long: TRANSACTION_NONE.
        b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
        b.build().expect("the server information is well-formed")
    })
}

fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    quoted: bool,
    radix: Option<i32>,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size,
        literal_prefix: quoted.then(|| "'".into()),
        literal_suffix: quoted.then(|| "'".into()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: quoted,
        searchable: Searchable::Full,
        unsigned_attribute: radix.map(|_| false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: radix,
        interval_precision: None,
    }
}

/// The SQL types tables store (docs/sql.md lists how each maps to Arrow).
pub fn xdbc_types() -> &'static XdbcTypeInfoData {
    static DATA: OnceLock<XdbcTypeInfoData> = OnceLock::new();
    DATA.get_or_init(|| {
        use XdbcDataType as T;
        let mut b = XdbcTypeInfoDataBuilder::new();
        for info in [
            xdbc("BOOLEAN", T::XdbcBit, Some(1), false, None),
            xdbc("TINYINT", T::XdbcTinyint, Some(3), false, Some(10)),
            xdbc("BIGINT", T::XdbcBigint, Some(19), false, Some(10)),
            xdbc("BYTEA", T::XdbcBinary, None, false, None),
            xdbc("VARCHAR", T::XdbcVarchar, None, true, None),
            {
                let mut d = xdbc("DECIMAL", T::XdbcDecimal, Some(38), false, Some(10));
                d.create_params = Some(vec!["precision".into(), "scale".into()]);
                d.fixed_prec_scale = true;
                d.minimum_scale = Some(0);
                d.maximum_scale = Some(38);
                d
            },
            xdbc("INTEGER", T::XdbcInteger, Some(10), false, Some(10)),
            xdbc("SMALLINT", T::XdbcSmallint, Some(5), false, Some(10)),
            xdbc("REAL", T::XdbcReal, Some(24), false, Some(2)),
            xdbc("DOUBLE", T::XdbcDouble, Some(53), false, Some(2)),
            xdbc("DATE", T::XdbcDate, Some(10), true, None),
            xdbc("TIME", T::XdbcTime, Some(15), true, None),
            xdbc("TIMESTAMP", T::XdbcTimestamp, Some(26), true, None),
        ] {
            b.append(info);
        }
        b.build().expect("the type information is well-formed")
    })
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// GetPrimaryKeys' columns, as the spec lists them.
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("catalog_name", true),
        utf8("db_schema_name", true),
        utf8("table_name", false),
        utf8("column_name", false),
        utf8("key_name", true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// Whether `value` is asked for: a filter that is absent matches all.
fn wanted(filter: Option<&str>, value: &str) -> bool {
    filter.is_none_or(|f| f == value)
}

/// The primary key of the table a GetPrimaryKeys names (one column at most: ContextDB keys
/// are single columns).
pub fn primary_keys(
    tables: &[TableDescription],
    query: &CommandGetPrimaryKeys,
) -> Result<RecordBatch, ArrowError> {
    let mut rows: Vec<(&str, &str, &str)> = Vec::new();
    for t in tables {
        if wanted(query.catalog.as_deref(), DEFAULT_CATALOG)
            && wanted(query.db_schema.as_deref(), &t.schema)
            && t.name == query.table
            && let Some(key) = &t.primary_key
        {
            rows.push((&t.schema, &t.name, key));
        }
    }
    let names: Vec<String> = rows.iter().map(|(_, t, _)| format!("{t}_pkey")).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![DEFAULT_CATALOG; rows.len()])),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(StringArray::from_iter_values(names)),
        Arc::new(Int32Array::from(vec![1; rows.len()])),
    ];
    RecordBatch::try_new(primary_keys_schema(), columns)
}

/// GetImportedKeys', GetExportedKeys' and GetCrossReference's columns, as the spec lists them.
pub fn keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("pk_catalog_name", true),
        utf8("pk_db_schema_name", true),
        utf8("pk_table_name", false),
        utf8("pk_column_name", false),
        utf8("fk_catalog_name", true),
        utf8("fk_db_schema_name", true),
        utf8("fk_table_name", false),
        utf8("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        utf8("fk_key_name", true),
        utf8("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// An edge table's endpoint column referring to a node table's primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub schema: String,
    pub pk_table: String,
    pub pk_column: String,
    pub fk_table: String,
    pub fk_column: &'static str,
}

impl ForeignKey {
    pub fn matches_pk(&self, catalog: Option<&str>, schema: Option<&str>, table: &str) -> bool {
        wanted(catalog, DEFAULT_CATALOG) && wanted(schema, &self.schema) && self.pk_table == table
    }

    pub fn matches_fk(&self, catalog: Option<&str>, schema: Option<&str>, table: &str) -> bool {
        wanted(catalog, DEFAULT_CATALOG) && wanted(schema, &self.schema) && self.fk_table == table
    }
}

/// Every edge table's `src` → its FROM table's key and `dst` → its TO table's key.
pub fn foreign_keys(tables: &[TableDescription]) -> Vec<ForeignKey> {
    let key_of = |schema: &str, name: &str| {
        tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
            .and_then(|t| t.primary_key.clone())
    };
    let mut keys = Vec::new();
    for edge in tables.iter().filter(|t| t.table_type == TableType::Edge) {
        for (column, label) in [("src", &edge.from), ("dst", &edge.to)] {
            let Some(label) = label else { continue };
            let Some(pk_column) = key_of(&edge.schema, label) else {
                continue;
            };
            keys.push(ForeignKey {
                schema: edge.schema.clone(),
                pk_table: label.clone(),
                pk_column,
                fk_table: edge.name.clone(),
                fk_column: column,
            });
        }
    }
    keys
}

/// Rows of a keys result, ordered as the spec asks (by the primary key's table, then key).
pub fn keys_batch(keys: &[ForeignKey]) -> Result<RecordBatch, ArrowError> {
    let mut keys = keys.to_vec();
    keys.sort_by(|a, b| {
        (&a.schema, &a.pk_table, &a.fk_table, a.fk_column).cmp(&(
            &b.schema,
            &b.pk_table,
            &b.fk_table,
            b.fk_column,
        ))
    });
    let n = keys.len();
    let catalogs = || Arc::new(StringArray::from(vec![DEFAULT_CATALOG; n])) as ArrayRef;
    let column = |f: &dyn Fn(&ForeignKey) -> String| {
        Arc::new(StringArray::from_iter_values(keys.iter().map(f))) as ArrayRef
    };
    // NO ACTION (3): an edge keeps its endpoints' keys; deleting a node detaches its edges
    // only when asked (DETACH DELETE).
    const NO_ACTION: u8 = 3;
    let columns: Vec<ArrayRef> = vec![
        catalogs(),
        column(&|k| k.schema.clone()),
        column(&|k| k.pk_table.clone()),
        column(&|k| k.pk_column.clone()),
        catalogs(),
        column(&|k| k.schema.clone()),
        column(&|k| k.fk_table.clone()),
        column(&|k| k.fk_column.to_string()),
        Arc::new(Int32Array::from(vec![1; n])),
        column(&|k| format!("{}_{}_fkey", k.fk_table, k.fk_column)),
        column(&|k| format!("{}_pkey", k.pk_table)),
        Arc::new(UInt8Array::from(vec![NO_ACTION; n])),
        Arc::new(UInt8Array::from(vec![NO_ACTION; n])),
    ];
    RecordBatch::try_new(keys_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, table_type: TableType, pk: Option<&str>) -> TableDescription {
        TableDescription {
            schema: "main".into(),
            name: name.into(),
            table_type,
            columns: Arc::new(Schema::empty()),
            primary_key: pk.map(String::from),
            from: None,
            to: None,
        }
    }

    #[test]
    fn an_edge_table_refers_to_its_endpoints_keys() {
        let mut depends = table("DEPENDS", TableType::Edge, None);
        depends.from = Some("Package".into());
        depends.to = Some("Package".into());
        let mut owns = table("OWNS", TableType::Edge, None);
        owns.from = Some("Person".into());
        owns.to = Some("Package".into());
        let tables = [
            table("Package", TableType::Node, Some("id")),
            table("Person", TableType::Node, Some("name")),
            depends,
            owns,
        ];
        let keys = foreign_keys(&tables);
        assert_eq!(keys.len(), 4);
        let imported: Vec<_> = keys
            .iter()
            .filter(|k| k.matches_fk(None, Some("main"), "OWNS"))
            .map(|k| (k.fk_column, k.pk_table.as_str(), k.pk_column.as_str()))
            .collect();
        assert_eq!(
            imported,
            [("src", "Person", "name"), ("dst", "Package", "id")]
        );
        let exported = keys
            .iter()
            .filter(|k| k.matches_pk(None, None, "Package"))
            .count();
        assert_eq!(exported, 3);
        let batch = keys_batch(&keys).unwrap();
        assert_eq!(batch.num_rows(), 4);
        assert_eq!(batch.schema(), keys_schema());
        let query = CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "Person".into(),
        };
        let pk = primary_keys(&tables, &query).unwrap();
        assert_eq!(pk.num_rows(), 1);
    }

    #[test]
    fn server_and_type_information_build() {
        sql_info();
        xdbc_types();
    }
}
