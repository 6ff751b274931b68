//! Runs every `.slt` file under `sqllogictest/slt/`, each against a fresh in-memory database.
//!
//! Flags (after `cargo test -p contextdb-sqllogictest --test slt --`): `--complete` rewrites
//! the expected output of the files from what the engine returns; a bare argument keeps the
//! files whose path contains it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use contextdb_engine::{Database, DbConfig};
use contextdb_sqllogictest::{ContextDb, SltError, isolate, shared_dir, slt_files};
use sqllogictest::{default_normalizer, default_validator, strict_column_validator};

/// A file that runs longer than this is reported as failed, so a hang cannot stall CI.
const FILE_TIME_LIMIT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let mut complete = false;
    let mut filters = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--complete" {
            complete = true;
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
        // Other flags come from `cargo test` and mean nothing here.
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let files = match slt_files(&dir, &filters) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("slt: cannot list {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, file) in files {
        let outcome = isolate::run(&name, FILE_TIME_LIMIT, move || run_file(file, complete));
        match outcome.unwrap_or_else(|abort| Err(abort.to_string())) {
            Ok(()) => {
                passed += 1;
                println!("{name} ... ok");
            }
            Err(reason) => {
                failed += 1;
                println!("{name} ... FAILED\n{reason}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_file(path: PathBuf, complete: bool) -> Result<(), String> {
    let db = Database::open(DbConfig::memory())
        .await
        .map_err(|e| format!("cannot open a database: {e}"))?;
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let shared = shared_dir();
    let tmp_path = tmp.path().to_path_buf();
    let connection_db = db.clone();
    // Every connection of a file is a session on the file's one database.
    let mut runner = sqllogictest::Runner::new(move || {
        let connection = ContextDb::new(connection_db.clone(), &shared, &tmp_path);
        async move { Ok::<_, SltError>(connection) }
    });
    runner.with_column_validator(strict_column_validator);
    let outcome = if complete {
        runner
            .update_test_file(
                &path,
                " ",
                default_validator,
                default_normalizer,
                strict_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    } else {
        runner
            .run_file_async(&path)
            .await
            .map_err(|e| e.display(false).to_string())
    };
    runner.shutdown_async().await;
    db.shutdown().await;
    outcome
}
