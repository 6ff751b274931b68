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
    let serve = contextdb(dir.path(), &["serve"], "");
    assert_eq!(serve.status.code(), Some(2));
    assert!(text(&serve.stderr).contains("not yet available"));
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
