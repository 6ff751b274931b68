//! Crash safety: a `contextdb` process is killed with SIGKILL while it commits statements that
//! each write three tables at once. After every restart each table must be at its old or its
//! new snapshot: the three tables hold the same keys, the keys are exactly 1..=n with no hole,
//! and every statement the writer acknowledged before it died is there.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kill-and-restart rounds.
const ROUNDS: usize = 6;
/// Statements a writer is given per round (it is killed long before finishing).
const STATEMENTS_PER_ROUND: usize = 2000;
/// How long a round's writer waits for a first acknowledgement before it is killed anyway.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(60);

fn contextdb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_contextdb"))
}

fn run(dir: &Path, statements: &str) -> String {
    let out = contextdb()
        .args(["shell", "--data-dir"])
        .arg(dir)
        .args(["--format", "csv", "-c", statements])
        .stdin(Stdio::null())
        .output()
        .expect("run contextdb");
    assert!(
        out.status.success(),
        "contextdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Sorted keys of one node label.
fn keys(dir: &Path, query: &str) -> Vec<i64> {
    let text = run(dir, query);
    let mut keys: Vec<i64> = text
        .lines()
        .skip(1)
        .map(|l| l.trim().parse().expect("an integer key"))
        .collect();
    keys.sort();
    keys
}

#[test]
fn sigkill_during_commits_leaves_every_table_old_or_new() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    run(
        data,
        "CREATE NODE TABLE A (id BIGINT PRIMARY KEY);
         CREATE NODE TABLE B (id BIGINT PRIMARY KEY);
         CREATE EDGE TABLE L (FROM A TO B)",
    );
    let mut committed = 0usize;
    for round in 0..ROUNDS {
        let first = committed + 1;
        let script: String = (first..first + STATEMENTS_PER_ROUND)
            .map(|k| format!("CREATE (:A {{id: {k}}})-[:L]->(:B {{id: {k}}});\n"))
            .collect();
        let mut writer = contextdb()
            .args(["shell", "--data-dir"])
            .arg(data)
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start writer");
        let stdout = writer.stdout.take().expect("piped stdout");
        // Count acknowledgements on a thread; kill after a varying number of them.
        let target = 3 + round * 7;
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acked = 0usize;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("OK") {
                    acked += 1;
                    let _ = tx.send(acked);
                }
            }
            acked
        });
        let start = Instant::now();
        let mut acked_before_kill = 0;
        while start.elapsed() < FIRST_ACK_TIMEOUT {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(n) => {
                    acked_before_kill = n;
                    if n >= target {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        writer.kill().expect("SIGKILL the writer");
        writer.wait().expect("reap the writer");
        let acked = reader.join().expect("reader thread").max(acked_before_kill);

        let a = keys(data, "MATCH (a:A) RETURN a.id");
        let b = keys(data, "MATCH (b:B) RETURN b.id");
        let l = keys(
            data,
            "MATCH (a:A)-[:L]->(b:B) WHERE a.id = b.id RETURN a.id",
        );
        let n = a.len();
        assert_eq!(
            a,
            (1..=n as i64).collect::<Vec<_>>(),
            "round {round}: keys of A have a hole"
        );
        assert_eq!(
            a, b,
            "round {round}: A and B differ: a statement was half applied"
        );
        assert_eq!(a, l, "round {round}: edges differ from their nodes");
        assert!(
            n >= committed + acked,
            "round {round}: {acked} acknowledged statements but only {} new rows",
            n - committed
        );
        assert!(n <= committed + STATEMENTS_PER_ROUND);
        committed = n;
    }
    assert!(committed > 0, "no statement ever committed");
}
