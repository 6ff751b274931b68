//! The `contextdb` binary end to end: scripts, output formats, parameters and exit codes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn contextdb(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextdb"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start contextdb");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("run contextdb")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

const SETUP: &str = "CREATE NODE TABLE Person (id BIGINT PRIMARY KEY, name VARCHAR);
                     CREATE (:Person {id: 1, name: 'Ada'})";

#[test]
fn a_script_prints_earlier_results_then_stops_at_the_first_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = format!(
        "{SETUP}; MATCH (p:Person) RETURN p.id, p.name; MATCH (x:Broken RETURN x; \
         MATCH (p:Person) RETURN p.name AS never"
    );
    let out = contextdb(dir.path(), &["shell", "-c", &script], "");
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("OK").count(), 2, "{stdout}");
    assert!(stdout.contains("OK, 1 row affected"), "{stdout}");
    assert!(stdout.contains("┆ Ada "), "{stdout}");
    assert!(stdout.contains("(1 row)"), "{stdout}");
    assert!(!stdout.contains("never"), "{stdout}");
    // The position counts from the start of the script, not of the failing statement.
    let stderr = text(&out.stderr);
    let line = script.lines().nth(1).expect("two lines");
    let column = line.find("RETURN x").expect("the broken statement") + 1;
    assert!(
        stderr.starts_with(&format!("syntax error at line 2, column {column}")),
        "{stderr}"
    );
}

#[test]
fn json_lines_keep_types_and_column_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = format!(
        "{SETUP}; MATCH (p:Person) RETURN p.name AS z, p.id AS a, 1.0 AS f, [1, 2] AS l, p"
    );
    let out = contextdb(
        dir.path(),
        &["shell", "--format", "json", "-c", &script],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "status lines belong on stderr: {stdout}");
    assert!(
        lines[0].starts_with(r#"{"z":"Ada","a":1,"f":1.0,"l":[1,2],"p":{"#),
        "{stdout}"
    );
    let row: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON object");
    assert_eq!(row["p"]["_label"], "Person");
    assert_eq!(row["p"]["name"], "Ada");
    assert!(text(&out.stderr).contains("OK, 1 row affected"));
}

#[test]
fn json_lines_keep_both_columns_of_a_join_without_aliases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = "CREATE TABLE a (id INT, v VARCHAR); CREATE TABLE b (id INT, v VARCHAR); \
                  INSERT INTO a VALUES (1, 'x'); INSERT INTO b VALUES (1, 'y'); \
                  SELECT * FROM a JOIN b ON a.id = b.id";
    let out = contextdb(dir.path(), &["shell", "--format", "json", "-c", script], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"id\":1,\"v\":\"x\",\"id_1\":1,\"v_1\":\"y\"}\n"
    );
}

#[test]
fn csv_quotes_fields_and_parameters_bind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = [
        "shell",
        "--format",
        "csv",
        "--param",
        "n=5",
        "--param",
        "s=a, \"b\"",
        "-c",
        "RETURN $n AS n, $s AS s",
    ];
    let out = contextdb(dir.path(), &args, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "n,s\n5,\"a, \"\"b\"\"\"\n");
}

#[test]
fn standard_input_is_the_script_when_it_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = "RETURN 1 AS one;\nRETURN 'two' AS two;\n";
    let out = contextdb(dir.path(), &["shell", "--format", "csv"], script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\n1\ntwo\ntwo\n");
}

#[test]
fn data_outlives_the_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = contextdb(dir.path(), &["shell", "-c", SETUP], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let query = "MATCH (p:Person) RETURN p.name";
    let out = contextdb(dir.path(), &["shell", "--format", "csv", "-c", query], "");
    assert_eq!(text(&out.stdout), "p.name\nAda\n");
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad_format = contextdb(
        dir.path(),
        &["shell", "--format", "xml", "-c", "RETURN 1"],
        "",
    );
    assert_eq!(bad_format.status.code(), Some(2));
    let bad_param = contextdb(
        dir.path(),
        &["shell", "--param", "novalue", "-c", "RETURN 1"],
        "",
    );
    assert_eq!(bad_param.status.code(), Some(2));
    let serve = contextdb(dir.path(), &["serve", "--bogus"], "");
    assert_eq!(serve.status.code(), Some(2));
    // A setting clap accepts but the server cannot use names where it came from.
    let serve = contextdb(dir.path(), &["serve", "--flight-addr", "nowhere"], "");
    assert_eq!(serve.status.code(), Some(1));
    assert!(text(&serve.stderr).contains("--flight-addr: `nowhere`"));
}

#[test]
fn load_reports_rows_and_fails_on_a_missing_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "id,name\n1,Ada\n2,Alan\n").expect("write csv");
    let data = dir.path().join("db");
    let setup = "CREATE NODE TABLE Person (id BIGINT PRIMARY KEY, name VARCHAR)";
    assert!(
        contextdb(&data, &["shell", "-c", setup], "")
            .status
            .success()
    );
    let csv_path = csv.to_str().expect("UTF-8 path");
    let out = contextdb(&data, &["load", "--table", "Person", csv_path], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("Loaded 2 rows into Person from "));
    let count = "MATCH (p:Person) RETURN count(*) AS n";
    let out = contextdb(&data, &["shell", "--format", "csv", "-c", count], "");
    assert_eq!(text(&out.stdout), "n\n2\n");
    let missing = contextdb(&data, &["load", "--table", "Nope", csv_path], "");
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn copy_reads_only_under_the_file_roots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    for d in [root.path(), outside.path()] {
        std::fs::write(d.join("p.csv"), "id,name\n7,Grace\n").expect("write csv");
    }
    let root_arg = root.path().to_str().expect("UTF-8 path");
    let copy = |from: &Path| {
        format!(
            "{SETUP}; COPY Person FROM '{}'; MATCH (p:Person) RETURN count(*) AS n",
            from.join("p.csv").display()
        )
    };
    let out = contextdb(
        dir.path(),
        &[
            "shell",
            "--format",
            "csv",
            "--file-root",
            root_arg,
            "-c",
            &copy(root.path()),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "n\n2\n");

    let other = tempfile::tempdir().expect("temp dir");
    let out = contextdb(
        other.path(),
        &[
            "shell",
            "--file-root",
            root_arg,
            "-c",
            &copy(outside.path()),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("file roots"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn repair_log_leaves_a_healthy_log_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = contextdb(dir.path(), &["shell", "-c", SETUP], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = contextdb(dir.path(), &["repair-log"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = contextdb(
        dir.path(),
        &[
            "shell",
            "--format",
            "csv",
            "-c",
            "MATCH (p:Person) RETURN p.name",
        ],
        "",
    );
    assert_eq!(text(&out.stdout), "p.name\nAda\n");
}

#[test]
fn engine_flags_set_the_budget_and_the_retention() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = contextdb(
        dir.path(),
        &[
            "shell",
            "-c",
            &format!("{SETUP}; MATCH (p:Person) SET p.name = 'Ada L.'"),
        ],
        "",
    );
    assert_eq!(setup.status.code(), Some(0), "{}", text(&setup.stderr));
    // A budget smaller than the table: the statement fails with a resource error.
    let small = contextdb(
        dir.path(),
        &[
            "shell",
            "--cache-size",
            "16B",
            "-c",
            "MATCH (p:Person) RETURN p.name",
        ],
        "",
    );
    assert_eq!(small.status.code(), Some(1));
    assert!(
        text(&small.stderr).contains("budget"),
        "{}",
        text(&small.stderr)
    );
    // With no retention, VACUUM expires the replaced snapshot and removes its file.
    let vacuum = contextdb(
        dir.path(),
        &[
            "shell",
            "--snapshot-retention",
            "0s",
            "--format",
            "csv",
            "-c",
            "VACUUM TABLE Person; MATCH (p:Person) RETURN p.name",
        ],
        "",
    );
    assert_eq!(vacuum.status.code(), Some(0), "{}", text(&vacuum.stderr));
    let stdout = text(&vacuum.stdout);
    assert!(stdout.contains("Person,1,"), "{stdout}");
    assert!(stdout.contains("Ada L."), "{stdout}");
    for bad in [
        ["--cache-size", "lots"],
        ["--snapshot-retention", "7 weeks"],
    ] {
        let out = contextdb(dir.path(), &["shell", bad[0], bad[1], "-c", "RETURN 1"], "");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

/// A row of every type a table stores (issue 7): Iceberg's own, and the mapped ones.
const EVERY_TYPE: &str = "SELECT 1 AS id, CAST(12.34 AS DECIMAL(10, 2)) AS d, X'CAFE' AS b, \
    arrow_cast(X'0102', 'FixedSizeBinary(2)') AS fx, DATE '2024-01-02' AS dt, \
    TIME '01:02:03.456789' AS tm, TIMESTAMP '2024-01-02 03:04:05.123456' AS ts, \
    arrow_cast(TIMESTAMP '2024-01-02 03:04:05', 'Timestamp(Microsecond, Some(\"+02:00\"))') AS tz, \
    named_struct('x', 1, 'y', 'a') AS s, [[1, 2], [3]] AS l, MAP(['k'], [7]) AS m, \
    arrow_cast(7, 'UInt8') AS u, arrow_cast('v', 'Dictionary(Int32, Utf8)') AS dict, \
    arrow_cast(1.5, 'Float16') AS h";

/// Every stored type round-trips: CREATE TABLE AS, COPY ... TO Parquet, then COPY ... FROM and
/// `contextdb load` into empty tables of the same columns read back the same row, in all three
/// output formats, in a new process; ContextQL properties of a node table too.
#[test]
fn every_stored_type_round_trips_through_copy_load_and_every_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("db");
    let root = dir.path().to_str().expect("UTF-8 path");
    let file = dir.path().join("src.parquet");
    let file = file.to_str().expect("UTF-8 path");
    let setup = format!(
        "CREATE TABLE src AS {EVERY_TYPE}; COPY (SELECT * FROM src) TO '{file}'; \
         CREATE TABLE via_copy AS SELECT * FROM src WHERE false; \
         CREATE TABLE via_load AS SELECT * FROM src WHERE false; \
         COPY via_copy FROM '{file}'"
    );
    let out = contextdb(&data, &["shell", "--file-root", root, "-c", &setup], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = contextdb(&data, &["load", "--table", "via_load", file], "");
    assert!(out.status.success(), "{}", text(&out.stderr));

    let expected = [
        (
            "csv",
            "1,12.34,cafe,0102,2024-01-02,01:02:03.456789,2024-01-02T03:04:05.123456,\
             2024-01-02T03:04:05+02:00,\"{\"\"x\"\":1,\"\"y\"\":\"\"a\"\"}\",\"[[1,2],[3]]\",\
             \"{\"\"k\"\":7}\",7,v,1.5",
        ),
        (
            "json",
            "{\"id\":1,\"d\":12.34,\"b\":\"cafe\",\"fx\":\"0102\",\"dt\":\"2024-01-02\",\
             \"tm\":\"01:02:03.456789\",\"ts\":\"2024-01-02T03:04:05.123456\",\
             \"tz\":\"2024-01-02T03:04:05+02:00\",\"s\":{\"x\":1,\"y\":\"a\"},\"l\":[[1,2],[3]],\
             \"m\":{\"k\":7},\"u\":7,\"dict\":\"v\",\"h\":1.5}",
        ),
        (
            "table",
            "│  1 ┆ 12.34 ┆ cafe ┆ 0102 ┆ 2024-01-02 ┆ 01:02:03.456789 ┆ \
             2024-01-02T03:04:05.123456 ┆ 2024-01-02T03:04:05+02:00 ┆ {x: 1, y: 'a'} ┆ \
             [[1, 2], [3]] ┆ {k: 7} ┆ 7 ┆ v    ┆ 1.5 │",
        ),
    ];
    for table in ["src", "via_copy", "via_load"] {
        let types = format!(
            "SELECT arrow_typeof(u), arrow_typeof(dict), arrow_typeof(tz), arrow_typeof(h) FROM {table}"
        );
        let out = contextdb(&data, &["shell", "--format", "csv", "-c", &types], "");
        assert!(
            text(&out.stdout).ends_with(
                "UInt8,\"Dictionary(Int32, Utf8)\",\"Timestamp(µs, \"\"+02:00\"\")\",Float16\n"
            ),
            "{table}: {}",
            text(&out.stdout)
        );
        for (format, row) in expected {
            let query = format!("SELECT * FROM {table}");
            let out = contextdb(&data, &["shell", "--format", format, "-c", &query], "");
            assert!(out.status.success(), "{}", text(&out.stderr));
            let stdout = text(&out.stdout);
            assert!(
                stdout.lines().any(|l| l == row),
                "{table} as {format}:\n{stdout}"
            );
        }
    }

    // ContextQL properties of the types ContextQL's DDL names, loaded by COPY.
    let node = format!(
        "CREATE NODE TABLE Ev (id BIGINT PRIMARY KEY, at TIMESTAMPTZ, tod TIME, raw BLOB, \
         l INT[][], day DATE); COPY (SELECT 1 AS id, TIMESTAMP '2024-05-06 07:08:09Z' AS at, \
         TIME '10:11:12' AS tod, X'00FF' AS raw, [[1], [2, 3]] AS l, DATE '2024-05-06' AS day) \
         TO '{root}/ev.parquet'; COPY Ev FROM '{root}/ev.parquet'"
    );
    let out = contextdb(&data, &["shell", "--file-root", root, "-c", &node], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let query = "MATCH (e:Ev) RETURN e.at, e.tod, e.raw, e.l, e.day";
    let out = contextdb(&data, &["shell", "--format", "json", "-c", query], "");
    assert_eq!(
        text(&out.stdout),
        "{\"e.at\":\"2024-05-06T07:08:09Z\",\"e.tod\":\"10:11:12\",\"e.raw\":\"00ff\",\
         \"e.l\":[[1],[2,3]],\"e.day\":\"2024-05-06\"}\n"
    );
}
