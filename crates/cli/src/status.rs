//! Tells a statement's own rows from the engine's report of a write or DDL statement.
//!
//! The engine answers a write with one `rows_affected` column (and `rows_affected: Some(n)`),
//! a DDL statement with one `status` text column, and DataFusion answers a SQL write with one
//! `count` column. Those are reports, not rows the user asked for: the shell prints them as a
//! status line, sqllogictest as a statement count, and the TCK as an empty result.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use contextdb_engine::{Language, StatementResult};

/// The one column of a write's report from the engine.
pub const ROWS_AFFECTED_COLUMN: &str = "rows_affected";
/// The one column of a DDL statement's report from the engine.
pub const STATUS_COLUMN: &str = "status";
/// The one column DataFusion returns for a SQL write.
const SQL_COUNT_COLUMN: &str = "count";

/// True when the result is only the engine's report of a write or DDL statement, with no
/// rows of the statement's own (a `RETURN` after a write would add some).
pub fn is_report_only(result: &StatementResult) -> bool {
    let fields = result.schema.fields();
    if fields.is_empty() {
        return true;
    }
    if result.rows_affected.is_none() || fields.len() != 1 {
        return false;
    }
    let name = fields[0].name().as_str();
    name == ROWS_AFFECTED_COLUMN
        || name == STATUS_COLUMN
        || (name == SQL_COUNT_COLUMN && matches!(result.language, Language::Sql))
}

/// The status line the shell prints for a result, if any: `OK, 3 rows affected` for writes,
/// `OK, <status>` for DDL, `OK` for a statement that returned nothing at all.
pub fn status_line(result: &StatementResult) -> Option<String> {
    let fields = result.schema.fields();
    if fields.is_empty() && result.rows_affected.is_none() {
        return Some("OK".to_owned());
    }
    if is_report_only(result)
        && fields.len() == 1
        && fields[0].name() == STATUS_COLUMN
        && let Some(text) = status_text(result)
    {
        return Some(format!("OK, {text}"));
    }
    match result.rows_affected {
        Some(1) => Some("OK, 1 row affected".to_owned()),
        Some(n) => Some(format!("OK, {n} rows affected")),
        None => None,
    }
}

/// The texts of a `status` column, joined; None when the column is not text.
fn status_text(result: &StatementResult) -> Option<String> {
    let mut texts = Vec::new();
    for batch in &result.batches {
        let column = batch.column(0);
        if column.data_type() != &DataType::Utf8 {
            return None;
        }
        let strings = column.as_string::<i32>();
        texts.extend(
            (0..strings.len())
                .filter(|&i| strings.is_valid(i))
                .map(|i| strings.value(i)),
        );
    }
    (!texts.is_empty()).then(|| texts.join("; "))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
    use arrow::datatypes::Schema;

    use super::*;

    fn result(
        language: Language,
        column: Option<(&str, ArrayRef)>,
        rows_affected: Option<u64>,
    ) -> StatementResult {
        let (schema, batches) = match column {
            Some(column) => {
                let batch = RecordBatch::try_from_iter(vec![column]).unwrap();
                (batch.schema(), vec![batch])
            }
            None => (Arc::new(Schema::empty()), vec![]),
        };
        StatementResult {
            language,
            schema,
            batches,
            rows_affected,
        }
    }

    #[test]
    fn write_reports_become_status_lines() {
        let rows = Arc::new(UInt64Array::from(vec![3])) as ArrayRef;
        let write = result(Language::ContextQL, Some(("rows_affected", rows)), Some(3));
        assert!(is_report_only(&write));
        assert_eq!(status_line(&write).unwrap(), "OK, 3 rows affected");

        let count = Arc::new(UInt64Array::from(vec![1])) as ArrayRef;
        let insert = result(Language::Sql, Some(("count", count)), Some(1));
        assert!(is_report_only(&insert));
        assert_eq!(status_line(&insert).unwrap(), "OK, 1 row affected");
    }

    #[test]
    fn ddl_reports_show_their_text() {
        let text = Arc::new(StringArray::from(vec!["node table created"])) as ArrayRef;
        let ddl = result(Language::ContextQL, Some(("status", text)), Some(0));
        assert!(is_report_only(&ddl));
        assert_eq!(status_line(&ddl).unwrap(), "OK, node table created");

        let nothing = result(Language::Sql, None, None);
        assert!(is_report_only(&nothing));
        assert_eq!(status_line(&nothing).unwrap(), "OK");
    }

    #[test]
    fn query_rows_are_not_reports() {
        let counts = Arc::new(Int64Array::from(vec![5])) as ArrayRef;
        let query = result(Language::ContextQL, Some(("count", counts.clone())), None);
        assert!(!is_report_only(&query));
        assert_eq!(status_line(&query), None);

        // A ContextQL write that returns its own `count` column keeps it.
        let returning = result(Language::ContextQL, Some(("count", counts)), Some(2));
        assert!(!is_report_only(&returning));
        assert_eq!(status_line(&returning).unwrap(), "OK, 2 rows affected");
    }
}
