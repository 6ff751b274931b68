//! Helpers the engine's integration tests share.

use arrow::util::display::{ArrayFormatter, FormatOptions};
use contextdb_engine::{Database, StatementResult};

/// A result's rows as text (`NULL` for nulls).
pub fn rows(result: &StatementResult) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in &result.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    out
}

/// The rows of the last statement of `text`; panics with the text on an error.
pub async fn query(db: &Database, text: &str) -> Vec<Vec<String>> {
    let results = db
        .execute(text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    rows(results.last().expect("a result"))
}
