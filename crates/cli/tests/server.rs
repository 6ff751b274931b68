//! `contextdb serve` end to end: a real server process and the Arrow Flight SQL client of
//! arrow-flight (the Python and Java clients are tested in `tests/clients/`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetTables,
    CommandGetXdbcTypeInfo, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{Action, CancelFlightInfoRequest, FlightInfo, Ticket};
use futures::TryStreamExt;
use prost::Message;
use tonic::transport::Channel;

/// How long the server may take to open its database and bind.
const START_TIMEOUT: Duration = Duration::from_secs(120);

struct Server {
    child: Child,
    flight: String,
    http: String,
}

impl Server {
    fn start(data_dir: &Path, log: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_contextdb"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--flight-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start contextdb serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "the server did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
        // contextdb serve: flight grpc://127.0.0.1:PORT http http://127.0.0.1:PORT
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.get(..3),
            Some(&["contextdb", "serve:", "flight"][..]),
            "{line}"
        );
        Server {
            child,
            flight: words[3].replace("grpc://", "http://"),
            http: words[5].trim_start_matches("http://").to_string(),
        }
    }

    async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let channel = Channel::from_shared(self.flight.clone())
            .expect("a URL")
            .connect()
            .await
            .expect("connect to the server");
        FlightSqlServiceClient::new(channel)
    }

    /// `GET path` over HTTP: the status code and the body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.http).expect("connect to HTTP");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("send the request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the response");
        let code = response[9..12].parse().expect("a status code");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows behind a FlightInfo.
async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("a ticket");
        let stream = client.do_get(ticket).await.expect("do_get");
        batches.extend(stream.try_collect::<Vec<_>>().await.expect("the batches"));
    }
    batches
}

async fn query(client: &mut FlightSqlServiceClient<Channel>, text: &str) -> Vec<RecordBatch> {
    let info = client
        .execute(text.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let announced = info
        .clone()
        .try_decode_schema()
        .expect("the FlightInfo's schema");
    let batches = fetch(client, info).await;
    if let Some(first) = batches.first() {
        assert_eq!(
            *first.schema(),
            announced,
            "the stream's schema is the announced one"
        );
    }
    batches
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = arrow::compute::cast(b.column(column), &DataType::Utf8).expect("cast");
        let c = c.as_string::<i32>();
        out.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    out
}

/// The error, with its gRPC code's name (`Unauthenticated`, `InvalidArgument`, ...).
fn error_of<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, E>) -> String {
    format!("{:?}", result.expect_err("an error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_sql_client_runs_both_languages_prepared_statements_and_metadata() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("server.log");
    let server = Server::start(
        &dir.path().join("db"),
        &log,
        &[
            "--user",
            "ada:secret",
            "--max-concurrent-statements",
            "2",
            "--statement-memory",
            "16MiB",
        ],
    );

    // Credentials first.
    let mut client = server.client().await;
    let refused = error_of(client.execute("SELECT 1".into(), None).await);
    assert!(refused.contains("Unauthenticated"), "{refused}");
    let refused = error_of(client.handshake("ada", "wrong").await);
    // The client writes the code's description here, not its name.
    assert!(
        refused.contains("invalid user name or password"),
        "{refused}"
    );
    client.set_token("made-up".into());
    let refused = error_of(client.execute("SELECT 1".into(), None).await);
    assert!(refused.contains("Unauthenticated"), "{refused}");
    client.clear_token();
    client.handshake("ada", "secret").await.expect("handshake");
    assert!(client.token().is_some());

    // Writes in both languages, with row counts.
    for ddl in [
        "CREATE NODE TABLE Person (id BIGINT PRIMARY KEY, name VARCHAR)",
        "CREATE EDGE TABLE KNOWS (FROM Person TO Person)",
    ] {
        assert_eq!(client.execute_update(ddl.into(), None).await.expect(ddl), 0);
    }
    client
        .execute_update(
            "CREATE (:Person {id: 1, name: 'Ada'}), (:Person {id: 2, name: 'Alan'})".into(),
            None,
        )
        .await
        .expect("create");
    let inserted = client
        .execute_update("INSERT INTO Person VALUES (3, 'Grace')".into(), None)
        .await
        .expect("insert");
    assert_eq!(inserted, 1);
    client
        .execute_update(
            "MATCH (a:Person {id: 1}), (b:Person {id: 2}) CREATE (a)-[:KNOWS]->(b)".into(),
            None,
        )
        .await
        .expect("create an edge");

    // Queries in both languages.
    let rows = query(&mut client, "SELECT id, name FROM main.Person ORDER BY id").await;
    assert_eq!(strings(&rows, 1), ["Ada", "Alan", "Grace"]);
    let rows = query(
        &mut client,
        "MATCH (a:Person)-[:KNOWS]->(b:Person) RETURN a.name AS a, b.name AS b",
    )
    .await;
    assert_eq!(
        (strings(&rows, 0), strings(&rows, 1)),
        (vec!["Ada".to_string()], vec!["Alan".to_string()])
    );

    // Prepared statements, reused with new parameters.
    let mut sql = client
        .prepare("SELECT name FROM Person WHERE id = $1".into(), None)
        .await
        .expect("prepare SQL");
    let parameters = sql.parameter_schema().unwrap().clone();
    assert_eq!(parameters.fields().len(), 1);
    assert_eq!(parameters.field(0).data_type(), &DataType::Int64);
    assert_eq!(sql.dataset_schema().unwrap().field(0).name(), "name");
    for (id, name) in [(2, "Alan"), (3, "Grace")] {
        let batch = RecordBatch::try_new(
            Arc::new(parameters.clone()),
            vec![Arc::new(Int64Array::from(vec![id]))],
        )
        .unwrap();
        sql.set_parameters(batch).unwrap();
        let info = sql.execute().await.expect("execute prepared SQL");
        assert_eq!(strings(&fetch(&mut client, info).await, 0), [name]);
    }
    // Parameters of the wrong shape are refused; the statement is still there.
    let two = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Int64, false),
    ]));
    let wrong = RecordBatch::try_new(
        two,
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int64Array::from(vec![2])),
        ],
    )
    .unwrap();
    sql.set_parameters(wrong).unwrap();
    let refused = error_of(sql.execute().await);
    assert!(
        refused.contains("InvalidArgument") && refused.contains("takes 1 parameters"),
        "{refused}"
    );
    sql.set_parameters(
        RecordBatch::try_new(
            Arc::new(parameters.clone()),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap(),
    )
    .unwrap();
    let info = sql.execute().await.expect("execute after a refusal");
    assert_eq!(strings(&fetch(&mut client, info).await, 0), ["Ada"]);
    sql.close().await.expect("close");

    let mut cql = client
        .prepare(
            "MATCH (p:Person) WHERE p.id = $id RETURN p.name AS name".into(),
            None,
        )
        .await
        .expect("prepare ContextQL");
    let by_name = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    cql.set_parameters(
        RecordBatch::try_new(by_name, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap(),
    )
    .unwrap();
    let info = cql.execute().await.expect("execute prepared ContextQL");
    assert_eq!(strings(&fetch(&mut client, info).await, 0), ["Ada"]);

    let mut insert = client
        .prepare("INSERT INTO Person VALUES ($1, $2)".into(), None)
        .await
        .expect("prepare an insert");
    let two = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    insert
        .set_parameters(
            RecordBatch::try_new(
                two,
                vec![
                    Arc::new(Int64Array::from(vec![4, 5])),
                    Arc::new(StringArray::from(vec!["Barbara", "Edsger"])),
                ],
            )
            .unwrap(),
        )
        .unwrap();
    assert_eq!(insert.execute_update().await.expect("prepared insert"), 2);
    let rows = query(&mut client, "MATCH (p:Person) RETURN count(*) AS n").await;
    assert_eq!(rows[0].column(0).as_primitive::<Int64Type>().value(0), 5);

    // Metadata: tables with their kinds and schemas, keys, server information.
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("main".into()),
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        })
        .await
        .expect("get_tables");
    let tables = fetch(&mut client, info).await;
    let names = strings(&tables, 2);
    let types = strings(&tables, 3);
    assert_eq!(names, ["KNOWS", "Person"]);
    assert_eq!(types, ["EDGE TABLE", "NODE TABLE"]);
    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "Person".into(),
        })
        .await
        .expect("get_primary_keys");
    assert_eq!(strings(&fetch(&mut client, info).await, 3), ["id"]);
    let info = client
        .get_imported_keys(CommandGetImportedKeys {
            catalog: None,
            db_schema: None,
            table: "KNOWS".into(),
        })
        .await
        .expect("get_imported_keys");
    let keys = fetch(&mut client, info).await;
    assert_eq!(strings(&keys, 2), ["Person", "Person"]);
    assert_eq!(strings(&keys, 7), ["dst", "src"]);
    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .expect("get_sql_info");
    assert_eq!(fetch(&mut client, info).await[0].num_rows(), 1);
    let info = client.get_catalogs().await.expect("get_catalogs");
    assert_eq!(strings(&fetch(&mut client, info).await, 0), ["contextdb"]);
    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .expect("get_db_schemas");
    assert_eq!(strings(&fetch(&mut client, info).await, 1), ["main"]);
    let info = client.get_table_types().await.expect("get_table_types");
    assert_eq!(fetch(&mut client, info).await[0].num_rows(), 4);
    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .expect("get_xdbc_type_info");
    assert!(fetch(&mut client, info).await[0].num_rows() > 5);

    // Errors say whose fault, with the position; the server keeps answering.
    let syntax = error_of(
        client
            .execute("MATCH (p:Person RETURN p".into(), None)
            .await,
    );
    assert!(
        syntax.contains("InvalidArgument") && syntax.contains("at 1:"),
        "{syntax}"
    );
    let missing = error_of(client.execute("SELECT * FROM nope".into(), None).await);
    assert!(missing.contains("NotFound"), "{missing}");
    let garbage = client.do_get(Ticket::new(b"garbage".to_vec())).await;
    assert!(garbage.is_err());
    // A well-typed command whose message does not decode.
    let malformed = arrow_flight::sql::Any {
        type_url: "type.googleapis.com/arrow.flight.protocol.sql.TicketStatementQuery".into(),
        value: vec![0xff, 0xff, 0xff].into(),
    };
    let malformed = client.do_get(Ticket::new(malformed.encode_to_vec())).await;
    assert!(malformed.is_err());
    let unknown = TicketStatementQuery {
        statement_handle: uuid_bytes(),
    };
    let unknown = client
        .do_get(Ticket::new(unknown.as_any().encode_to_vec()))
        .await;
    assert!(format!("{:?}", unknown.err()).contains("NotFound"));
    // A statement over its memory limit fails as it runs; the next one answers.
    let big = "SELECT count(*) FROM generate_series(1, 3000000) a \
               JOIN generate_series(1, 3000000) b ON a.value = b.value";
    let info = client.execute(big.into(), None).await.expect("planned");
    let over = match client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
    {
        Ok(stream) => format!("{:?}", stream.try_collect::<Vec<_>>().await.err()),
        Err(e) => format!("{e:?}"),
    };
    assert!(
        over.contains("ResourceExhausted") && over.contains("--statement-memory"),
        "{over}"
    );
    assert_eq!(strings(&query(&mut client, "SELECT 5").await, 0), ["5"]);

    // Writes commit at GetFlightInfo and give their permit back at once: reports nobody
    // fetches (ADBC's DB-API leaves a DDL statement's unread) block no one.
    for text in [
        "CREATE TABLE unfetched (a INT)",
        "INSERT INTO unfetched VALUES (1)",
        "INSERT INTO unfetched VALUES (2)",
        "MATCH (p:Person {id: 1}) SET p.seen = true",
    ] {
        client.execute(text.into(), None).await.expect(text);
    }
    // Two statements planned and not fetched hold both permits: a third is refused.
    let first = client
        .execute("SELECT 1".into(), None)
        .await
        .expect("first");
    let second = client
        .execute("SELECT 2".into(), None)
        .await
        .expect("second");
    let over = error_of(client.execute("SELECT 3".into(), None).await);
    assert!(over.contains("ResourceExhausted"), "{over}");
    // Cancelling one frees its permit; its ticket then has no result.
    let cancel = CancelFlightInfoRequest {
        info: Some(second.clone()),
    };
    let mut flight = client.inner().clone();
    let mut action = tonic::Request::new(Action::new("CancelFlightInfo", cancel.encode_to_vec()));
    action.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", client.token().unwrap())
            .parse()
            .unwrap(),
    );
    flight.do_action(action).await.expect("cancel");
    let gone = client
        .do_get(second.endpoint[0].ticket.clone().unwrap())
        .await;
    assert!(format!("{:?}", gone.err()).contains("NotFound"));
    assert_eq!(strings(&fetch(&mut client, first).await, 0), ["1"]);
    assert_eq!(strings(&query(&mut client, "SELECT 4").await, 0), ["4"]);

    // Health and metrics over HTTP.
    let (code, health) = server.get("/health");
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&health).expect("JSON");
    assert_eq!(health["status"], "ok");
    assert!(health["catalog_version"].as_u64().unwrap() > 0);
    let (code, metrics) = server.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains("contextdb_statements_total{language=\"sql\",kind=\"query\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("contextdb_statements_total{language=\"contextql\""));
    assert!(metrics.contains("contextdb_rows_streamed_total"));
    assert_eq!(server.get("/nothing").0, 404);

    // The shell over Flight SQL: the embedded shell's statements, parameters and formats.
    let url = server.flight.replace("http://", "grpc://");
    let (ok, out, err) = shell(
        &url,
        "secret",
        &[
            "--format",
            "csv",
            "--param",
            "k=2",
            "-c",
            "CREATE NODE TABLE Shell (id BIGINT PRIMARY KEY, name VARCHAR); \
             INSERT INTO Shell VALUES (1, 'a'), (2, 'b'); \
             MATCH (s:Shell) WHERE s.id = $k RETURN s.name AS name",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "name\nb\n");
    assert!(
        err.contains("OK, node table created") && err.contains("OK, 2 rows affected"),
        "{err}"
    );
    let (ok, out, err) = shell(
        &url,
        "secret",
        &[
            "--format",
            "json",
            "-c",
            "SELECT id, name FROM main.Shell ORDER BY id",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "{\"id\":1,\"name\":\"a\"}\n{\"id\":2,\"name\":\"b\"}\n"
    );
    let (ok, out, _) = shell(
        &url,
        "secret",
        &["-c", "MATCH (s:Shell) RETURN count(*) AS n"],
    );
    assert!(ok && out.contains('n') && out.contains('2'), "{out}");
    // A query's column named like a report is rows; unused parameters are left out.
    let (ok, out, err) = shell(
        &url,
        "secret",
        &[
            "--format",
            "csv",
            "--param",
            "unused=1",
            "-c",
            "SELECT 'shipped' AS status",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "status\nshipped\n");
    // Positions count from the start of the script, as in the embedded shell.
    let (ok, _, err) = shell(
        &url,
        "secret",
        &["-c", "SELECT 1;\nMATCH (s:Shell RETURN s"],
    );
    assert!(!ok && err.contains("at line 2, column 16"), "{err}");
    let (ok, _, err) = shell(&url, "wrong", &["-c", "SELECT 1"]);
    assert!(!ok && err.contains("cannot sign in"), "{err}");

    // SIGTERM: the server drains and exits cleanly; each statement left one log line.
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait(&mut server.child, Duration::from_secs(60));
    assert!(status.success(), "exit status {status}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("shutting down"), "{logged}");
    assert!(
        logged.contains("statement=SELECT id, name FROM main.Person ORDER BY id"),
        "{logged}"
    );
    assert!(
        logged.contains("outcome=\"error\"") || logged.contains("outcome=error"),
        "{logged}"
    );
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the TLS test makes its certificates with it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn tls_serves_the_shell_with_a_certificate_from_the_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    // A CA and a server certificate for 127.0.0.1 that it signed.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=ContextDB test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::write(
        d.join("server.toml"),
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            d.join("server.pem"),
            d.join("server.key")
        ),
    )
    .unwrap();
    let config = d.join("server.toml");
    let server = Server::start(
        &d.join("db"),
        &d.join("server.log"),
        &["--config", config.to_str().unwrap()],
    );
    // It prints its address as grpc+tls://HOST:PORT.
    assert!(
        server.flight.starts_with("grpc+tls://"),
        "{}",
        server.flight
    );
    let address = server.flight.trim_start_matches("grpc+tls://").to_string();
    let ca = d.join("ca.pem");
    let run = |url: &str, ca: Option<&Path>| {
        let mut args = vec![
            "shell",
            "--url",
            url,
            "--format",
            "csv",
            "-c",
            "SELECT 1 AS one",
        ];
        if let Some(ca) = ca {
            args.extend(["--tls-ca", ca.to_str().unwrap()]);
        }
        contextdb(&args, &[])
    };
    let (ok, out, err) = run(&format!("grpc+tls://{address}"), Some(&ca));
    assert!(ok, "{err}");
    assert_eq!(out, "one\n1\n");
    // Without the CA the certificate is not trusted; plain text gets no answer.
    let (ok, _, err) = run(&format!("grpc+tls://{address}"), None);
    assert!(!ok, "an untrusted certificate was accepted");
    assert!(!err.is_empty());
    let (ok, _, _) = run(&format!("grpc://{address}"), None);
    assert!(!ok, "plain text reached a TLS server");
}

/// `contextdb ARGS` with `env` set: success, stdout and stderr.
fn contextdb(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_contextdb"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run contextdb");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `contextdb shell --url URL --user ada ARGS` with `password`.
fn shell(url: &str, password: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["shell", "--url", url, "--user", "ada"];
    all.extend(args);
    contextdb(&all, &[("CONTEXTDB_PASSWORD", password)])
}

fn uuid_bytes() -> bytes::Bytes {
    bytes::Bytes::from(vec![7u8; 16])
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Without users the server still hands out tokens (a session keeps its settings) and takes
/// calls without one; it refuses to bind beyond loopback unless told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_server_takes_anyone_and_keeps_a_session_s_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("server.log");
    let server = Server::start(&dir.path().join("db"), &log, &[]);
    let mut anonymous = server.client().await;
    assert_eq!(
        strings(&query(&mut anonymous, "RETURN 1 AS one").await, 0),
        ["1"]
    );
    let mut client = server.client().await;
    client
        .handshake("anyone", "anything")
        .await
        .expect("handshake");
    client
        .execute_update("SET datafusion.execution.batch_size = 100".into(), None)
        .await
        .expect("SET");
    let shown = query(&mut client, "SHOW datafusion.execution.batch_size").await;
    assert_eq!(strings(&shown, 1), ["100"]);
    let shown = query(&mut anonymous, "SHOW datafusion.execution.batch_size").await;
    assert_eq!(strings(&shown, 1), ["8192"]);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("no user is configured"), "{logged}");

    // A query being streamed stops with CANCELLED once cancelled; the server goes on.
    let info = client
        .execute(
            "SELECT value FROM generate_series(1, 100000000)".into(),
            None,
        )
        .await
        .expect("planned");
    let mut stream = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .expect("streaming");
    let first = stream.try_next().await.expect("a first batch");
    assert!(first.is_some_and(|b| b.num_rows() > 0));
    let cancel = CancelFlightInfoRequest { info: Some(info) };
    let mut flight = client.inner().clone();
    flight
        .do_action(tonic::Request::new(Action::new(
            "CancelFlightInfo",
            cancel.encode_to_vec(),
        )))
        .await
        .expect("cancel");
    let mut streamed = 0usize;
    let ended = loop {
        match stream.try_next().await {
            Ok(Some(batch)) => streamed += batch.num_rows(),
            Ok(None) => break "the stream ended".to_string(),
            Err(e) => break format!("{e:?}"),
        }
    };
    assert!(
        ended.contains("Cancelled"),
        "{ended} after {streamed} more rows"
    );
    assert!(streamed < 100_000_000 - 8192, "{streamed}");
    assert_eq!(strings(&query(&mut client, "SELECT 6").await, 0), ["6"]);

    let refused = Command::new(env!("CARGO_BIN_EXE_contextdb"))
        .args(["serve", "--flight-addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("other"))
        .output()
        .expect("run contextdb serve");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--allow-remote-without-users"), "{stderr}");
}
