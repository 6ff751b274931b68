//! `contextdb`: one binary with a subcommand per role.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use contextdb_cli::format::{self, OutputFormat};
use contextdb_cli::remote::{self, Remote, RemoteStream};
use contextdb_cli::status;
use contextdb_engine::route;
use contextdb_engine::{Database, DbConfig, LoadPhase, StatementResult};
use indicatif::{ProgressBar, ProgressStyle};
use rustyline::error::ReadlineError;

const DEFAULT_DATA_DIR: &str = "./contextdb-data";
const HISTORY_FILE_NAME: &str = ".contextdb_history";
const EXIT_STATEMENT_FAILED: u8 = 1;
const PROGRESS_TICK: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Parser)]
#[command(
    name = "contextdb",
    version,
    about = "ContextDB: graph + vector + SQL in one engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ContextQL and SQL statements against an embedded database: the `-c` text, a script
    /// on standard input, or an interactive prompt.
    #[command(alias = "query")]
    Shell(ShellArgs),
    /// Bulk load Parquet or CSV files into an existing node or edge table.
    Load(LoadArgs),
    /// Cut the catalog log at its first damaged record, after copying it aside. Run it only
    /// when the database refuses to open because of damage in the middle of its log (the error
    /// says so and names this command); the database must not be running.
    RepairLog {
        /// Directory holding the database.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Serve the database over Arrow Flight SQL (ContextQL and SQL), with `/health` and
    /// `/metrics` over HTTP. Settings come from a TOML file, then `CONTEXTDB_*` variables,
    /// then flags, each overriding the one before (docs/server.md).
    #[command(after_long_help = serve_settings_help())]
    Serve(ServeArgs),
    /// Print the Argon2 hash of a password read from standard input (one line), for a
    /// `[[users]]` entry of the server's configuration file.
    HashPassword,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (also CONTEXTDB_CONFIG).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory holding the database [default: contextdb-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Flight SQL listener [default: 127.0.0.1:50051]; port 0 picks a free one.
    #[arg(long, value_name = "HOST:PORT")]
    flight_addr: Option<String>,
    /// HTTP listener for /health and /metrics [default: 127.0.0.1:8077].
    #[arg(long, value_name = "HOST:PORT")]
    http_addr: Option<String>,
    /// A user who may connect (repeat for more); replaces the file's and environment's users.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<String>,
    /// Bind a non-loopback address although no user is configured.
    #[arg(long)]
    allow_remote_without_users: bool,
    /// PEM certificate chain: serve Flight SQL over TLS (with --tls-key).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Statements running at once; one more fails with RESOURCE_EXHAUSTED [default: 16].
    #[arg(long, value_name = "N")]
    max_concurrent_statements: Option<usize>,
    /// Log lines as `text` or `json` [default: text]; RUST_LOG filters them (default info).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// A directory on the server under which `COPY ... FROM/TO` may read and write files.
    /// Repeat for several; without any, COPY is refused (clients send data by bulk ingest).
    #[arg(long = "file-root", value_name = "DIR")]
    file_roots: Vec<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Every server setting with its TOML key, variable, flag and default.
fn serve_settings_help() -> String {
    let mut text = String::from("Settings (TOML key / environment variable / flag, default):\n");
    for (key, var, flag, default, what) in contextdb_server::config::SETTINGS {
        text.push_str(&format!(
            "  {key} / {var} / {flag}  [{default}]\n      {what}\n"
        ));
    }
    text
}

/// Engine settings shared by every command that opens a database.
#[derive(Args, Clone)]
struct EngineArgs {
    /// Memory budget of the hot tier (table rows, indexes, adjacency), e.g. `256MiB`, `4GiB`.
    /// Past it the tier evicts; a statement that alone needs more fails with a resource error.
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_bytes)]
    cache_size: usize,
    /// Memory one statement's sorts, aggregations and joins may hold, e.g. `512MiB`, `2GiB`.
    /// Past it a sort spills to disk, and a join or aggregation fails with a resource error
    /// while other statements go on.
    #[arg(long, value_name = "SIZE", default_value = "2GiB", value_parser = parse_bytes)]
    statement_memory: usize,
    /// How long a replaced snapshot stays readable by time travel before `VACUUM` may expire it
    /// and remove its files, e.g. `7d`, `12h`, `30m`, `0s`.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    snapshot_retention: std::time::Duration,
    /// Do not compact small data files after commits (`COMPACT` still does).
    #[arg(long)]
    no_auto_compact: bool,
}

impl EngineArgs {
    fn apply(&self, mut config: DbConfig) -> DbConfig {
        config.cache_bytes = self.cache_size;
        config.statement_memory_bytes = self.statement_memory;
        config.snapshot_retention = self.snapshot_retention;
        config.auto_compact = !self.no_auto_compact;
        config
    }
}

/// `123`, `64KiB`, `256MiB`, `4GiB` (also `KB`/`MB`/`GB`, read as powers of 1024).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("expected a size such as 256MiB, got `{text}`"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("unknown size unit in `{text}` (use KiB, MiB, GiB)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `90s`, `30m`, `12h`, `7d` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a duration such as 7d, got `{text}`"))?;
    let seconds = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown duration unit in `{text}` (use s, m, h, d)"
            ));
        }
    };
    n.checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[derive(Args)]
struct ShellArgs {
    /// Directory holding the database; created when missing.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
    /// `;`-separated statements to run instead of reading standard input or prompting.
    #[arg(short = 'c', long = "command", value_name = "STATEMENTS")]
    command: Option<String>,
    /// How results are printed.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// A statement parameter `$name`, as `name=JSON` (text that is not JSON is taken as a
    /// string). Repeat for several parameters.
    #[arg(long = "param", value_name = "NAME=JSON", value_parser = parse_param)]
    params: Vec<(String, serde_json::Value)>,
    /// A directory under which `COPY ... FROM/TO` may read and write files. Repeat for
    /// several; without any, the current directory.
    #[arg(long = "file-root", value_name = "DIR")]
    file_roots: Vec<PathBuf>,
    /// Send the statements to a `contextdb serve` at this address (`grpc://HOST:PORT`, or
    /// `grpc+tls://HOST:PORT`) instead of opening a data directory.
    #[arg(long, value_name = "URL", conflicts_with_all = ["data_dir", "file_roots"])]
    url: Option<String>,
    /// With --url: the user to sign in as; the password is read from CONTEXTDB_PASSWORD.
    #[arg(long, value_name = "NAME", requires = "url")]
    user: Option<String>,
    /// With a grpc+tls:// --url: a PEM certificate to trust besides the system's.
    #[arg(long, value_name = "FILE", requires = "url")]
    tls_ca: Option<PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    /// Directory holding the database.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
    /// The node or edge table to load into; it must exist.
    #[arg(long, value_name = "NAME")]
    table: String,
    /// Parquet (`.parquet`) or CSV (`.csv`, with a header row) files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

fn parse_param(text: &str) -> Result<(String, serde_json::Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=JSON, got `{text}`"))?;
    let name = name.trim().trim_start_matches('$');
    if name.is_empty() {
        return Err(format!("parameter name missing in `{text}`"));
    }
    let value =
        serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

fn hash_password() -> Result<(), Failure> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::Message(format!("cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(Failure::Message(
            "no password on standard input (one line)".into(),
        ));
    }
    let hash = contextdb_server::auth::hash_password(password).map_err(Failure::Message)?;
    println!("{hash}");
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let flags = contextdb_server::Flags {
        config: args.config,
        data_dir: args.data_dir,
        flight_addr: args.flight_addr,
        http_addr: args.http_addr,
        users: args.users,
        allow_remote_without_users: args.allow_remote_without_users,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        max_concurrent_statements: args.max_concurrent_statements,
        log_format: args.log_format,
    };
    let config = contextdb_server::ServerConfig::resolve(&flags, &|name| std::env::var(name).ok())
        .map_err(|e| Failure::Message(format!("contextdb serve: {e}")))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The catalog's Raft library logs its elections at info; they are not news here.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        contextdb_server::LogFormat::Json => logs.json().init(),
        contextdb_server::LogFormat::Text => logs.with_ansi(false).init(),
    }
    let tls = config.tls.is_some();
    let engine = args.engine;
    let file_roots = args.file_roots;
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    };
    contextdb_server::serve(
        config,
        move |db| {
            let mut db = engine.apply(db);
            db.file_roots = file_roots;
            db
        },
        move |bound| {
            // Scripts wait for this line to know the server is up and where.
            let scheme = if tls { "grpc+tls" } else { "grpc" };
            println!(
                "contextdb serve: flight {scheme}://{} http http://{}",
                bound.flight, bound.http
            );
            let _ = std::io::stdout().flush();
        },
        shutdown,
    )
    .await
    .map_err(|e| Failure::Message(format!("contextdb serve: {e}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => with_runtime(|runtime| runtime.block_on(serve(args))),
        Command::HashPassword => hash_password(),
        Command::Shell(args) => with_runtime(|runtime| shell(runtime, args)),
        Command::Load(args) => with_runtime(|runtime| runtime.block_on(load(args))),
        Command::RepairLog { data_dir } => match contextdb_engine::repair_log(&data_dir) {
            Ok(report) => {
                println!("{report}");
                Ok(())
            }
            Err(e) => Err(Failure::Message(e.to_string())),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reported) => ExitCode::from(EXIT_STATEMENT_FAILED),
        Err(Failure::Message(message)) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_STATEMENT_FAILED)
        }
    }
}

fn with_runtime(
    command: impl FnOnce(&tokio::runtime::Runtime) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Message(format!("cannot start the async runtime: {e}")))?;
    command(&runtime)
}

/// Why one statement of a script failed: the engine refused it, the server did (its
/// message), or its output could not be written.
enum StatementFailure {
    Engine(contextdb_engine::Error),
    Remote(String),
    Output(Failure),
}

impl From<contextdb_engine::Error> for StatementFailure {
    fn from(e: contextdb_engine::Error) -> Self {
        StatementFailure::Engine(e)
    }
}

impl From<Failure> for StatementFailure {
    fn from(f: Failure) -> Self {
        StatementFailure::Output(f)
    }
}

/// Why a command failed; `Reported` means the message is already on stderr.
enum Failure {
    Reported,
    Message(String),
}

async fn open(
    data_dir: &Path,
    engine: &EngineArgs,
    file_roots: Vec<PathBuf>,
) -> Result<Arc<Database>, Failure> {
    let mut config = engine.apply(DbConfig::local(data_dir));
    config.file_roots = file_roots;
    Database::open(config)
        .await
        .map_err(|e| Failure::Message(format!("cannot open {}: {e}", data_dir.display())))
}

fn shell(runtime: &tokio::runtime::Runtime, args: ShellArgs) -> Result<(), Failure> {
    let params: HashMap<String, serde_json::Value> = args.params.into_iter().collect();
    let (backend, db, place) = match &args.url {
        Some(url) => {
            let password = match &args.user {
                Some(_) => Some(std::env::var("CONTEXTDB_PASSWORD").map_err(|_| {
                    Failure::Message(
                        "--user needs the password in the environment variable CONTEXTDB_PASSWORD"
                            .into(),
                    )
                })?),
                None => None,
            };
            let user = args.user.as_deref().zip(password.as_deref());
            let remote = runtime
                .block_on(Remote::connect(url, user, args.tls_ca.as_deref()))
                .map_err(Failure::Message)?;
            (Backend::Remote(remote), None, url.clone())
        }
        None => {
            let file_roots = if args.file_roots.is_empty() {
                vec![PathBuf::from(".")]
            } else {
                args.file_roots
            };
            let db = runtime.block_on(open(&args.data_dir, &args.engine, file_roots))?;
            let session = contextdb_engine::Session::new(db.clone());
            let place = args.data_dir.display().to_string();
            (Backend::Embedded(session), Some(db), place)
        }
    };
    let mut session = Session {
        backend,
        params,
        format: args.format,
    };
    let outcome = if let Some(text) = args.command {
        runtime.block_on(session.run_script(&text))
    } else if std::io::stdin().is_terminal() {
        // The history stays on this machine: in the data directory, or the current one.
        let history = match &db {
            Some(_) => args.data_dir.join(HISTORY_FILE_NAME),
            None => PathBuf::from(HISTORY_FILE_NAME),
        };
        repl(runtime, &mut session, &place, &history)
    } else {
        let mut text = String::new();
        match std::io::stdin().read_to_string(&mut text) {
            Ok(_) => runtime.block_on(session.run_script(&text)),
            Err(e) => Err(Failure::Message(format!("cannot read standard input: {e}"))),
        }
    };
    if let Some(db) = db {
        runtime.block_on(db.shutdown());
    }
    outcome
}

/// Where the shell's statements run.
enum Backend {
    /// The engine session: `SET` holds for the statements after it.
    Embedded(contextdb_engine::Session),
    /// A server's session (its token): `SET` holds there the same way.
    Remote(Remote),
}

/// One statement's rows, from either backend.
enum Rows {
    Embedded(contextdb_engine::QueryStream),
    Remote(RemoteStream),
}

impl Rows {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        match self {
            Rows::Embedded(s) => s.schema(),
            Rows::Remote(s) => s.schema.clone(),
        }
    }

    /// Whether the rows are a write's or DDL statement's report, printed as a status line.
    fn is_report(&self) -> bool {
        match self {
            Rows::Embedded(s) => s.rows_affected.is_some(),
            Rows::Remote(s) => s.rows_affected().is_some(),
        }
    }

    async fn next(&mut self) -> Result<Option<arrow::array::RecordBatch>, StatementFailure> {
        match self {
            Rows::Embedded(s) => Ok(s.next().await?),
            Rows::Remote(s) => s.next().await.map_err(StatementFailure::Remote),
        }
    }

    async fn collect(self) -> Result<StatementResult, StatementFailure> {
        match self {
            Rows::Embedded(s) => Ok(s.collect().await?),
            Rows::Remote(s) => s.collect().await.map_err(StatementFailure::Remote),
        }
    }
}

struct Session {
    backend: Backend,
    params: HashMap<String, serde_json::Value>,
    format: OutputFormat,
}

impl Session {
    /// Runs the statements one by one, printing each result; stops at the first error.
    async fn run_script(&self, text: &str) -> Result<(), Failure> {
        for piece in route::split(text) {
            match self.run_statement(piece.text).await {
                Ok(()) => {}
                Err(StatementFailure::Engine(e)) => {
                    // Positions count from the start of the script, not of the statement.
                    eprintln!("{}", e.moved_to(text, piece.offset));
                    return Err(Failure::Reported);
                }
                Err(StatementFailure::Remote(message)) => {
                    eprintln!("{}", remote::moved_to(&message, text, piece.offset));
                    return Err(Failure::Reported);
                }
                Err(StatementFailure::Output(failure)) => return Err(failure),
            }
        }
        Ok(())
    }

    /// Runs one statement. A query's rows in csv or json are printed batch by batch as the
    /// engine produces them; a table needs every row for its column widths, so it waits.
    async fn run_statement(&self, text: &str) -> Result<(), StatementFailure> {
        let mut rows = match &self.backend {
            Backend::Embedded(db) => Rows::Embedded(db.query(text, &self.params).await?),
            Backend::Remote(remote) => Rows::Remote(
                remote
                    .query(text, &self.params)
                    .await
                    .map_err(StatementFailure::Remote)?,
            ),
        };
        if rows.is_report() || self.format == OutputFormat::Table {
            let result = rows.collect().await?;
            return Ok(self.print(&result)?);
        }
        let schema = rows.schema();
        let mut header = self.format == OutputFormat::Csv;
        while let Some(batch) = rows.next().await? {
            let rows = format::batch_rows(&[batch])
                .map_err(|e| Failure::Message(format!("cannot format the result: {e}")))?;
            let text = match self.format {
                OutputFormat::Csv => format::render_csv_part(&schema, &rows, header),
                _ => format::render_json_lines(&schema, &rows),
            };
            header = false;
            write_stdout(&text)?;
        }
        if header {
            write_stdout(&format::render_csv_part(&schema, &[], true))?;
        }
        Ok(())
    }

    fn print(&self, result: &StatementResult) -> Result<(), Failure> {
        if !status::is_report_only(result) {
            let text = format::render(self.format, &result.schema, &result.batches)
                .map_err(|e| Failure::Message(format!("cannot format the result: {e}")))?;
            write_stdout(&text)?;
        }
        if let Some(line) = status::status_line(result) {
            // Machine-readable formats keep stdout for rows only.
            if self.format == OutputFormat::Table {
                write_stdout(&format!("{line}\n"))?;
            } else {
                eprintln!("{line}");
            }
        }
        Ok(())
    }
}

fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        // The reader went away (`| head`): nothing more to say, and no error to report.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::Reported),
        Err(e) => Err(Failure::Message(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

const REPL_HELP: &str = "\
Statements end with `;` and may span several lines. Each statement is routed to ContextQL
(MATCH, CREATE (...), CREATE NODE TABLE, COPY ... FROM, ...) or to SQL (SELECT, INSERT, ...).

  .help           show this text
  .format FORMAT  print results as table, csv or json
  .quit / .exit   leave (Ctrl-D works too; Ctrl-C drops the statement being typed)
";

fn repl(
    runtime: &tokio::runtime::Runtime,
    session: &mut Session,
    place: &str,
    history: &Path,
) -> Result<(), Failure> {
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| Failure::Message(format!("cannot start the line editor: {e}")))?;
    // A missing history file is normal on the first run.
    let _ = editor.load_history(history);
    println!(
        "ContextDB {} on {place}. Statements end with `;`; .help for help.",
        env!("CARGO_PKG_VERSION"),
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "contextdb> "
        } else {
            "       ..> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("cannot read input: {e}");
                break;
            }
        };
        if buffer.is_empty() && line.trim_start().starts_with('.') {
            let _ = editor.add_history_entry(line.trim());
            if !dot_command(line.trim(), session) {
                break;
            }
            continue;
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        if buffer.trim().is_empty() {
            buffer.clear();
            continue;
        }
        if route::is_complete(&buffer) {
            let _ = editor.add_history_entry(buffer.as_str());
            match runtime.block_on(session.run_script(&buffer)) {
                Ok(()) | Err(Failure::Reported) => {}
                Err(Failure::Message(message)) => eprintln!("{message}"),
            }
            buffer.clear();
        }
    }
    if let Err(e) = editor.save_history(history) {
        eprintln!("cannot save history to {}: {e}", history.display());
    }
    Ok(())
}

/// Runs one `.command`; returns false when the shell should end.
fn dot_command(line: &str, session: &mut Session) -> bool {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(".quit" | ".exit"), None) => return false,
        (Some(".help"), None) => print!("{REPL_HELP}"),
        (Some(".format"), None) => println!("format: {:?}", session.format),
        (Some(".format"), Some(name)) => match OutputFormat::from_str(name, true) {
            Ok(format) => session.format = format,
            Err(_) => eprintln!("unknown format `{name}`: use table, csv or json"),
        },
        _ => eprintln!("unknown command `{line}`: .help lists the commands"),
    }
    true
}

async fn load(args: LoadArgs) -> Result<(), Failure> {
    let db = open(&args.data_dir, &args.engine, Vec::new()).await?;
    let outcome = load_files(&db, &args.table, &args.files).await;
    db.shutdown().await;
    outcome
}

async fn load_files(db: &Database, table: &str, files: &[PathBuf]) -> Result<(), Failure> {
    let style = ProgressStyle::with_template(
        "{msg} {spinner} {bar:40} {human_pos}/{human_len} rows, {elapsed} (eta {eta})",
    )
    .expect("the progress template is valid");
    let started = Instant::now();
    let mut total_rows = 0;
    for file in files {
        let bar = ProgressBar::new(0).with_style(style.clone());
        let short_name = file.file_name().unwrap_or(file.as_os_str());
        bar.set_message(short_name.to_string_lossy().into_owned());
        // The engine may report progress rarely; the ticking spinner shows it is alive.
        bar.enable_steady_tick(PROGRESS_TICK);
        let progress_bar = bar.clone();
        let file_label = short_name.to_string_lossy().into_owned();
        let progress = move |phase: LoadPhase, done: u64, total: u64| {
            if phase == LoadPhase::Indexing {
                progress_bar.set_message(format!("{file_label}: vector index"));
            }
            progress_bar.set_length(total);
            progress_bar.set_position(done);
        };
        let file_started = Instant::now();
        let outcome = db.load(table, file, &progress).await;
        bar.finish_and_clear();
        let rows = outcome.map_err(|e| {
            Failure::Message(format!("cannot load {} into {table}: {e}", file.display()))
        })?;
        total_rows += rows;
        println!(
            "Loaded {rows} rows into {table} from {} in {:.2}s",
            file.display(),
            file_started.elapsed().as_secs_f64()
        );
    }
    if files.len() > 1 {
        println!(
            "Loaded {total_rows} rows into {table} from {} files in {:.2}s",
            files.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_json_or_else_text() {
        assert_eq!(
            parse_param("k=3").unwrap(),
            ("k".into(), serde_json::json!(3))
        );
        assert_eq!(
            parse_param("$q=[0.5, 1]").unwrap(),
            ("q".into(), serde_json::json!([0.5, 1]))
        );
        assert_eq!(parse_param("name=vim").unwrap().1, serde_json::json!("vim"));
        assert_eq!(
            parse_param("s=\"a=b\"").unwrap().1,
            serde_json::json!("a=b")
        );
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=1").is_err());
    }

    #[test]
    fn command_line_parses() {
        let cli = Cli::try_parse_from([
            "contextdb",
            "shell",
            "-c",
            "RETURN 1;",
            "--format",
            "json",
            "--param",
            "a=1",
        ])
        .unwrap();
        match cli.command {
            Command::Shell(args) => {
                assert_eq!(args.format, OutputFormat::Json);
                assert_eq!(args.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
                assert_eq!(args.params.len(), 1);
            }
            _ => panic!("expected the shell subcommand"),
        }
        assert!(Cli::try_parse_from(["contextdb", "shell", "--format", "xml"]).is_err());
        assert!(Cli::try_parse_from(["contextdb", "load", "--table", "T"]).is_err());
    }
}
