//! Runs DataFusion's own `.slt` files (vendored in `sqllogictest/datafusion/`, see the README
//! there) record by record through plain DataFusion and through ContextDB, and counts how
//! many of the records DataFusion passes also pass through ContextDB.
//!
//! Both engines' results are rendered by DataFusion's own code ([`df_normalize`]) and compared
//! with DataFusion's validator, normalizer and strict column types, as DataFusion's runner
//! does. Each file runs on its own thread with a time limit, once per engine.
//!
//! The run fails when ContextDB's count drops below `datafusion/BASELINE`. The records
//! DataFusion passes and ContextDB fails are listed in `target/datafusion_slt_report.txt`.
//! A bare argument (after `cargo test -p contextdb-sqllogictest --test datafusion_slt --`)
//! keeps the files whose path contains it; the baseline is then not checked.

// The ContextDB connection's setup future nests the engine's statement future deeply.
#![recursion_limit = "256"]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use contextdb_cli::status;
use contextdb_engine::{Database, DbConfig, Session};
use contextdb_sqllogictest::df_normalize::{
    DFColumnType, DFOutput, convert_batches, convert_schema_to_types, df_value_validator,
    value_normalizer,
};
use contextdb_sqllogictest::{isolate, slt_files, workspace_dir};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::common::collect;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SessionConfig, SessionContext};
use sqllogictest::{
    AsyncDB, DBOutput, MakeConnection, Record, RecordOutput, Runner, TestError, TestErrorKind,
    strict_column_validator,
};

/// A file (one engine's run of it) that runs longer than this keeps the records it finished;
/// the rest count as failed.
const FILE_TIME_LIMIT: Duration = Duration::from_secs(120);
/// The label DataFusion's runner adds, so `skipif`/`onlyif` pick the same records.
const LABEL: &str = "Datafusion";

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("datafusion");
    let files = match slt_files(&dir, &filters) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("datafusion-slt: cannot list {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let (mut total_df, mut total_both, mut total_run) = (0usize, 0usize, 0usize);
    let mut report = String::new();
    let mut df_failures = String::new();
    let mut per_file = String::new();
    // `file:line` of every record DataFusion passes and ContextDB fails.
    let mut failing = Vec::new();
    for (name, file) in files {
        let datafusion = run_isolated(&name, "datafusion", file.clone(), Engine::DataFusion);
        let contextdb = run_isolated(&name, "contextdb", file.clone(), Engine::ContextDb);
        let (mut df_passed, mut both_passed) = (0, 0);
        total_run += datafusion.records.len();
        for (line, outcome) in &datafusion.records {
            if !outcome.passed {
                df_failures.push_str(&format!(
                    "{name}:{line}\t{}\t{}\n",
                    outcome.sql,
                    one_line(&outcome.detail)
                ));
                continue;
            }
            df_passed += 1;
            if !contextdb.records.get(line).is_some_and(|c| c.passed) {
                failing.push(format!("{name}:{line}"));
            }
            match contextdb.records.get(line) {
                Some(c) if c.passed => both_passed += 1,
                Some(c) => report.push_str(&format!(
                    "{name}:{line}\t{}\t{}\n",
                    outcome.sql,
                    one_line(&c.detail)
                )),
                None => report.push_str(&format!(
                    "{name}:{line}\t{}\tnot run: {}\n",
                    outcome.sql,
                    contextdb
                        .aborted
                        .as_deref()
                        .unwrap_or("record never reached")
                )),
            }
        }
        let mut line = format!("{name}: {both_passed} of {df_passed}");
        for (engine, run) in [("datafusion", &datafusion), ("contextdb", &contextdb)] {
            if let Some(abort) = &run.aborted {
                line.push_str(&format!(" ({engine}: {abort})"));
            }
        }
        println!("{line}");
        per_file.push_str(&line);
        per_file.push('\n');
        total_df += df_passed;
        total_both += both_passed;
    }
    let percent = if total_df == 0 {
        0.0
    } else {
        100.0 * total_both as f64 / total_df as f64
    };
    let summary = format!(
        "datafusion-slt: {total_both} of {total_df} records that DataFusion passes pass through ContextDB ({percent:.1}%)"
    );
    println!("{summary} in {:.0}s", started.elapsed().as_secs_f64());
    println!(
        "datafusion-slt: plain DataFusion passes {total_df} of the {total_run} records it runs"
    );
    let report_path = report_path();
    let text = format!(
        "{summary}\n\n# per file: ContextDB passes of DataFusion passes\n{per_file}\n\
         # records DataFusion passes and ContextDB fails: file:line, SQL, ContextDB's outcome\n{report}\n\
         # records plain DataFusion fails (not counted): file:line, SQL, outcome\n{df_failures}"
    );
    match std::fs::write(&report_path, text) {
        Ok(()) => println!("datafusion-slt: report in {}", report_path.display()),
        Err(e) => eprintln!(
            "datafusion-slt: cannot write {}: {e}",
            report_path.display()
        ),
    }
    if !filters.is_empty() {
        return ExitCode::SUCCESS;
    }
    let baseline = check_baseline(&dir.join("BASELINE"), total_both);
    let listed = check_listed(&workspace_dir().join(GAPS_DOC), &failing);
    if baseline == ExitCode::SUCCESS {
        listed
    } else {
        baseline
    }
}

/// The page that lists every record DataFusion passes and ContextDB fails, with its reason.
const GAPS_DOC: &str = "docs/datafusion-slt-gaps.md";

/// Fails when a record fails that the gaps page does not list (as `file.slt:line`); prints the
/// listed records that pass now.
fn check_listed(doc: &Path, failing: &[String]) -> ExitCode {
    let text = match std::fs::read_to_string(doc) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("datafusion-slt: cannot read {}: {e}", doc.display());
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let listed: std::collections::BTreeSet<&str> = text
        .split(|c: char| c.is_whitespace() || c == '`')
        .filter(|word| {
            word.split_once(".slt:").is_some_and(|(_, line)| {
                !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .collect();
    let unlisted: Vec<&String> = failing
        .iter()
        .filter(|f| !listed.contains(f.as_str()))
        .collect();
    let failing: std::collections::BTreeSet<&str> = failing.iter().map(String::as_str).collect();
    let passing_now: Vec<&&str> = listed.iter().filter(|l| !failing.contains(**l)).collect();
    if !passing_now.is_empty() {
        println!(
            "datafusion-slt: {} record(s) listed in {GAPS_DOC} pass now: {}",
            passing_now.len(),
            passing_now
                .iter()
                .map(|s| **s)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if unlisted.is_empty() {
        println!("datafusion-slt: every failing record is listed in {GAPS_DOC}");
        println!("1 passed, 0 failed");
        ExitCode::SUCCESS
    } else {
        println!(
            "datafusion-slt: FAILED: {} failing record(s) not listed in {GAPS_DOC} (fix them, or \
             list them with their reason): {}",
            unlisted.len(),
            unlisted
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!("0 passed, 1 failed");
        ExitCode::FAILURE
    }
}

/// Fails when fewer records pass through ContextDB than the baseline says.
fn check_baseline(path: &Path, passed: usize) -> ExitCode {
    let baseline = match std::fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("datafusion-slt: {} is not a count: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("datafusion-slt: cannot read {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if passed < baseline {
        println!(
            "datafusion-slt: FAILED: {passed} records pass through ContextDB, below the baseline of {baseline} ({})",
            path.display()
        );
        // The baseline check, counted like the other runners' checks by `.ci/run`.
        println!("0 passed, 1 failed");
        ExitCode::FAILURE
    } else {
        println!("datafusion-slt: {passed} records pass through ContextDB, baseline {baseline}");
        println!("1 passed, 0 failed");
        ExitCode::SUCCESS
    }
}

fn report_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"));
    target.join("datafusion_slt_report.txt")
}

fn one_line(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 300 {
        format!("{}...", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

#[derive(Clone, Copy)]
enum Engine {
    DataFusion,
    ContextDb,
}

/// How one `statement` or `query` record went.
struct Outcome {
    passed: bool,
    /// The first line of the record's SQL.
    sql: String,
    /// Why it failed: the engine's error, or the first differing row.
    detail: String,
}

/// Records by line, filled in as they run, so a timed-out file keeps what it finished.
type Log = Arc<Mutex<BTreeMap<u32, Outcome>>>;

struct FileRun {
    records: BTreeMap<u32, Outcome>,
    aborted: Option<String>,
}

fn run_isolated(name: &str, engine_name: &str, file: PathBuf, engine: Engine) -> FileRun {
    let log: Log = Arc::default();
    let case_log = log.clone();
    let outcome = isolate::run(
        &format!("{engine_name} {name}"),
        FILE_TIME_LIMIT,
        move || async move {
            match engine {
                Engine::DataFusion => run_datafusion(file, case_log).await,
                Engine::ContextDb => run_contextdb(file, case_log).await,
            }
        },
    );
    let aborted = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(abort) => Some(abort.to_string()),
    };
    let records = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    FileRun { records, aborted }
}

/// The partitions DataFusion's runner configures.
const TARGET_PARTITIONS: usize = 4;

/// A `SessionContext` as DataFusion's runner makes one for a file without special setup
/// (`TestContext::try_new_for_test_file`).
fn datafusion_context() -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(TARGET_PARTITIONS);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(Arc::new(RuntimeEnv::default()))
        .with_default_features()
        .build();
    SessionContext::new_with_state(state)
}

async fn run_datafusion(file: PathBuf, log: Log) -> Result<(), String> {
    let ctx = datafusion_context();
    let runner = Runner::new(move || {
        let ctx = ctx.clone();
        async move { Ok::<_, EngineError>(PlainDataFusion { ctx }) }
    });
    run_records(&file, runner, &log).await
}

async fn run_contextdb(file: PathBuf, log: Log) -> Result<(), String> {
    let db = Database::open(DbConfig::memory())
        .await
        .map_err(|e| format!("cannot open a database: {e}"))?;
    let connection_db = db.clone();
    let runner = Runner::new(move || {
        let session = Session::new(connection_db.clone());
        async move {
            // The partitions DataFusion's runner gives its sessions (`datafusion_context`),
            // which its EXPLAIN outputs show.
            session
                .execute(&format!(
                    "SET datafusion.execution.target_partitions = {TARGET_PARTITIONS}"
                ))
                .await
                .map_err(|e| EngineError(e.to_string()))?;
            Ok::<_, EngineError>(ContextDbSession { session })
        }
    });
    let outcome = run_records(&file, runner, &log).await;
    db.shutdown().await;
    outcome
}

/// Runs every record of the file, going on after failures, as DataFusion's runner does.
async fn run_records<D, M>(file: &Path, mut runner: Runner<D, M>, log: &Log) -> Result<(), String>
where
    D: AsyncDB<ColumnType = DFColumnType>,
    M: MakeConnection<Conn = D>,
{
    runner.add_label(LABEL);
    runner.with_column_validator(strict_column_validator);
    runner.with_normalizer(value_normalizer);
    runner.with_validator(df_value_validator);
    let records = sqllogictest::parse_file::<DFColumnType>(file).map_err(|e| e.to_string())?;
    for record in records {
        let counted = match &record {
            Record::Statement { loc, sql, .. } | Record::Query { loc, sql, .. } => {
                Some((loc.line(), sql.lines().next().unwrap_or("").to_owned()))
            }
            Record::Halt { .. } => break,
            _ => None,
        };
        let result = runner.run_async(record).await;
        let Some((line, sql)) = counted else {
            continue;
        };
        let (passed, detail) = match result {
            // Skipped by `skipif`/`onlyif`.
            Ok(RecordOutput::Nothing) => continue,
            Ok(_) => (true, String::new()),
            Err(e) => (false, failure_detail(&e)),
        };
        log.lock().unwrap_or_else(|e| e.into_inner()).insert(
            line,
            Outcome {
                passed,
                sql,
                detail,
            },
        );
    }
    runner.shutdown_async().await;
    Ok(())
}

/// A failure in a few words: the engine's error, or the first row that differs.
fn failure_detail(error: &TestError) -> String {
    match error.kind() {
        TestErrorKind::Fail { err, .. } => format!("error: {err}"),
        TestErrorKind::ErrorMismatch {
            err, expected_err, ..
        } => format!("other error: {err} (expected /{expected_err}/)"),
        TestErrorKind::Ok { .. } => "succeeded, an error was expected".to_owned(),
        TestErrorKind::QueryResultMismatch {
            expected, actual, ..
        } => {
            let (expected, actual): (Vec<_>, Vec<_>) =
                (expected.lines().collect(), actual.lines().collect());
            let at = (0..expected.len().max(actual.len()))
                .find(|&i| expected.get(i) != actual.get(i))
                .unwrap_or(0);
            format!(
                "row {} differs: expected `{}`, got `{}` ({} rows expected, {} got)",
                at + 1,
                expected.get(at).copied().unwrap_or("<none>"),
                actual.get(at).copied().unwrap_or("<none>"),
                expected.len(),
                actual.len()
            )
        }
        TestErrorKind::QueryResultColumnsMismatch {
            expected, actual, ..
        } => format!("column types: expected {expected}, got {actual}"),
        other => other.to_string(),
    }
}

/// An engine's error as the `.slt` files match it.
#[derive(Debug)]
struct EngineError(String);

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineError {}

/// Rows as DataFusion's runner returns them: a bare completion when there are neither rows
/// nor columns.
fn df_output(
    schema: &arrow::datatypes::Schema,
    batches: Vec<RecordBatch>,
) -> Result<DFOutput, EngineError> {
    let types = convert_schema_to_types(schema.fields());
    let rows = convert_batches(schema, batches, false).map_err(|e| EngineError(e.to_string()))?;
    if rows.is_empty() && types.is_empty() {
        Ok(DBOutput::StatementComplete(0))
    } else {
        Ok(DBOutput::Rows { types, rows })
    }
}

/// Plain DataFusion, run as DataFusion's runner runs a statement (`run_query`).
struct PlainDataFusion {
    ctx: SessionContext,
}

#[async_trait::async_trait]
impl AsyncDB for PlainDataFusion {
    type Error = EngineError;
    type ColumnType = DFColumnType;

    async fn run(&mut self, sql: &str) -> Result<DFOutput, EngineError> {
        let df_error = |e: datafusion::error::DataFusionError| {
            EngineError(format!("DataFusion error: {}", e.strip_backtrace()))
        };
        let df = self.ctx.sql(sql).await.map_err(df_error)?;
        let task_ctx = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await.map_err(df_error)?;
        let schema = plan.schema();
        let stream = execute_stream(plan, task_ctx).map_err(df_error)?;
        let batches = collect(stream).await.map_err(df_error)?;
        df_output(&schema, batches)
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "DataFusion"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// A ContextDB session; the last statement's result is the record's.
struct ContextDbSession {
    session: Session,
}

#[async_trait::async_trait]
impl AsyncDB for ContextDbSession {
    type Error = EngineError;
    type ColumnType = DFColumnType;

    async fn run(&mut self, sql: &str) -> Result<DFOutput, EngineError> {
        // Errors DataFusion raised are shown as DataFusion's runner shows them; ContextDB's
        // own (kind and message) as they are.
        let results = self.session.execute(sql).await.map_err(|mut e| {
            e.detail = None;
            EngineError(match e.datafusion_text.take() {
                Some(text) => format!("DataFusion error: {text}"),
                None => e.to_string(),
            })
        })?;
        match results.into_iter().last() {
            // ContextDB reports DDL with a one-row `status` column, which the shell prints as
            // a status line; DataFusion answers DDL with no columns at all.
            Some(result)
                if status::is_report_only(&result)
                    && result.schema.fields().len() == 1
                    && result.schema.field(0).name() == status::STATUS_COLUMN =>
            {
                Ok(DBOutput::StatementComplete(0))
            }
            Some(result) => df_output(&result.schema, result.batches),
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
