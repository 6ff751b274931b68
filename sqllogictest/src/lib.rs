//! Test runners for ContextDB: `.slt` files (sqllogictest) and the openCypher TCK.
//!
//! Both run every file or scenario against a fresh in-memory [`Database`], each on its own
//! thread with a time limit ([`isolate`]), so one hang or panic cannot stall or end the run.

pub mod df_normalize;
pub mod isolate;
pub mod tck;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::DataType;
use contextdb_cli::format::{self, Value};
use contextdb_cli::status;
use contextdb_engine::{Database, Session, StatementResult};
use sqllogictest::{DBOutput, DefaultColumnType};

/// Replaced in `.slt` text by the absolute path of the shared data directory.
pub const SHARED_PLACEHOLDER: &str = "__SHARED__";
/// Replaced in `.slt` text by a temporary directory that lives as long as the file's run.
pub const TMP_PLACEHOLDER: &str = "__TMP__";
/// Significant digits kept when an `.slt` result shows a float; few enough that f32
/// arithmetic and summation order do not change the text.
pub const SLT_FLOAT_DIGITS: usize = 6;

/// The workspace root (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives inside the workspace")
        .to_path_buf()
}

/// The `shared` directory beside the repository (real data sets), absolute when it exists.
pub fn shared_dir() -> PathBuf {
    let dir = workspace_dir().join("..").join("shared");
    dir.canonicalize().unwrap_or(dir)
}

/// The `.slt` files below `dir`, sorted, each with its path relative to `dir` (its name in
/// reports); with `filters`, only those whose name contains one of them.
pub fn slt_files(dir: &Path, filters: &[String]) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    collect_files(dir, "slt", &mut files)?;
    files.sort();
    Ok(files
        .into_iter()
        .map(|file| {
            let name = file
                .strip_prefix(dir)
                .unwrap_or(&file)
                .display()
                .to_string();
            (name, file)
        })
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect())
}

/// Appends the files below `dir` (recursively) whose extension is `extension`.
pub fn collect_files(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, extension, out)?;
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
    Ok(())
}

/// An error as `.slt` files see it: kind, position and message, without the snippet, so
/// `statement error <regex>` lines stay on one line.
#[derive(Debug)]
pub struct SltError(pub contextdb_engine::Error);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut error = self.0.clone();
        error.detail = None;
        write!(f, "{error}")
    }
}

impl std::error::Error for SltError {}

/// One sqllogictest connection: a session on the file's database.
pub struct ContextDb {
    db: Session,
    shared_dir: String,
    tmp_dir: String,
}

impl ContextDb {
    pub fn new(db: Arc<Database>, shared_dir: &Path, tmp_dir: &Path) -> Self {
        ContextDb {
            db: Session::new(db),
            shared_dir: shared_dir.display().to_string(),
            tmp_dir: tmp_dir.display().to_string(),
        }
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for ContextDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let text = sql
            .replace(SHARED_PLACEHOLDER, &self.shared_dir)
            .replace(TMP_PLACEHOLDER, &self.tmp_dir);
        let results = self.db.execute(&text).await.map_err(SltError)?;
        match results.last() {
            Some(result) => slt_output(result).map_err(SltError),
            None => Ok(DBOutput::StatementComplete(0)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "contextdb"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// What sqllogictest sees of a result: rows for queries, a count for writes and DDL.
pub fn slt_output(
    result: &StatementResult,
) -> Result<DBOutput<DefaultColumnType>, contextdb_engine::Error> {
    if status::is_report_only(result) {
        return Ok(DBOutput::StatementComplete(
            result.rows_affected.unwrap_or(0),
        ));
    }
    let types = result
        .schema
        .fields()
        .iter()
        .map(|f| column_type(f.data_type()))
        .collect();
    let mut rows = Vec::new();
    for row in format::batch_rows(&result.batches)? {
        let cells: Vec<String> = row.iter().map(slt_text).collect();
        rows.extend(split_lines(cells));
    }
    Ok(DBOutput::Rows { types, rows })
}

/// A row whose cells hold several lines (an EXPLAIN plan) as one `.slt` line per line: the
/// first line of every cell, then each further line alone. The validator compares line by
/// line with whitespace collapsed, so a cell's line breaks must be rows of their own.
fn split_lines(cells: Vec<String>) -> Vec<Vec<String>> {
    if !cells.iter().any(|c| c.contains('\n')) {
        return vec![cells];
    }
    let lines: Vec<Vec<&str>> = cells
        .iter()
        .map(|c| c.trim_end_matches('\n').lines().collect())
        .collect();
    let depth = lines.iter().map(Vec::len).max().unwrap_or(1);
    let mut out = vec![
        lines
            .iter()
            .map(|l| l.first().copied().unwrap_or_default().to_string())
            .collect::<Vec<_>>(),
    ];
    for i in 1..depth {
        out.push(
            lines
                .iter()
                .filter_map(|l| l.get(i))
                .map(|s| s.to_string())
                .collect(),
        );
    }
    out
}

/// `I` for integers, `R` for floats and decimals, `T` for everything else.
pub fn column_type(data_type: &DataType) -> DefaultColumnType {
    if data_type.is_integer() {
        DefaultColumnType::Integer
    } else if data_type.is_floating() || data_type.is_decimal() {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// A result cell as `.slt` text: `NULL`, `(empty)` for an empty string, floats rounded to
/// [`SLT_FLOAT_DIGITS`] significant digits, lists as `[1, 2]`, structs (nodes too) as
/// `{_id: 1, _label: Package, name: vim}`.
pub fn slt_text(value: &Value) -> String {
    match value {
        Value::Text(s) if s.is_empty() => "(empty)".to_owned(),
        Value::Text(s) => s.clone(),
        other => {
            let mut out = String::new();
            write_slt(other, &mut out);
            out
        }
    }
}

fn write_slt(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("NULL"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::UInt(u) => out.push_str(&u.to_string()),
        Value::Float(f) => out.push_str(&format::format_float(round_significant(
            *f,
            SLT_FLOAT_DIGITS,
        ))),
        Value::Decimal(s) | Value::Text(s) | Value::Other(s) => out.push_str(s),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_slt(item, out);
            }
            out.push(']');
        }
        Value::Struct(fields) => {
            out.push('{');
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(name);
                out.push_str(": ");
                write_slt(item, out);
            }
            out.push('}');
        }
    }
}

/// Rounds to `digits` significant decimal digits (through decimal text, so it is exact).
pub fn round_significant(value: f64, digits: usize) -> f64 {
    assert!(digits > 0, "at least one significant digit");
    if !value.is_finite() || value == 0.0 {
        return value;
    }
    format!("{value:.prec$e}", prec = digits - 1)
        .parse()
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_cells_become_one_row_per_line() {
        let rows = split_lines(vec!["plan".into(), "a\n  b\n".into()]);
        assert_eq!(rows, vec![vec!["plan", "a"], vec!["  b"]]);
        assert_eq!(split_lines(vec!["x".into()]), vec![vec!["x"]]);
    }

    #[test]
    fn floats_round_to_a_few_digits() {
        assert_eq!(slt_text(&Value::Float(0.1 + 0.2)), "0.3");
        assert_eq!(slt_text(&Value::Float(2.0)), "2.0");
        assert_eq!(slt_text(&Value::Float(1.0 / 3.0)), "0.333333");
        assert_eq!(slt_text(&Value::Float(1234567.0)), "1234570.0");
        assert_eq!(slt_text(&Value::Float(-0.000123456789)), "-0.000123457");
        assert_eq!(slt_text(&Value::Float(f64::NAN)), "NaN");
    }

    #[test]
    fn nested_values_read_as_in_the_design() {
        let node = Value::Struct(vec![
            ("_id".into(), Value::Int(1)),
            ("_label".into(), Value::Text("Package".into())),
            ("name".into(), Value::Text("vim".into())),
            ("tags".into(), Value::List(vec![Value::Int(1), Value::Null])),
        ]);
        assert_eq!(
            slt_text(&node),
            "{_id: 1, _label: Package, name: vim, tags: [1, NULL]}"
        );
        assert_eq!(slt_text(&Value::Null), "NULL");
        assert_eq!(slt_text(&Value::Text(String::new())), "(empty)");
    }

    #[test]
    fn column_types_follow_arrow_types() {
        assert_eq!(column_type(&DataType::Int64), DefaultColumnType::Integer);
        assert_eq!(column_type(&DataType::UInt8), DefaultColumnType::Integer);
        assert_eq!(
            column_type(&DataType::Float32),
            DefaultColumnType::FloatingPoint
        );
        assert_eq!(
            column_type(&DataType::Decimal128(10, 2)),
            DefaultColumnType::FloatingPoint
        );
        assert_eq!(column_type(&DataType::Utf8), DefaultColumnType::Text);
        assert_eq!(column_type(&DataType::Boolean), DefaultColumnType::Text);
    }
}
