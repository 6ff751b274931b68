//! The Flight SQL service: statements in ContextQL and SQL, prepared statements, catalog
//! metadata, cancellation. The engine plans and runs; this file speaks the protocol.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::GetCatalogsBuilder;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use contextdb_engine::{Database, Description, Language, Params, QueryStream, Session};
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::auth::Auth;
use crate::metadata;
use crate::metrics::{Gauges, Metrics, Outcome};
use crate::status::status;
use crate::wire::{wire_batch, wire_schema};

/// Results planned by GetFlightInfo and not yet fetched with DoGet.
pub const MAX_PENDING_RESULTS: usize = 1024;
/// A result not fetched this long after its GetFlightInfo is dropped (its statement ends).
pub const PENDING_RESULT_TTL: Duration = Duration::from_secs(5 * 60);
/// Prepared statements open at once, over all sessions.
pub const MAX_PREPARED_STATEMENTS: usize = 4096;
/// A prepared statement unused this long is closed.
pub const PREPARED_IDLE: Duration = Duration::from_secs(60 * 60);
/// Parameter rows one DoPut may bind (each runs the statement once).
pub const MAX_BOUND_ROWS: usize = 65_536;
/// Schema metadata of a write's result: the rows it wrote (see [`announced`]).
pub const ROWS_AFFECTED_METADATA: &str = "contextdb.rows_affected";
/// How long an ingest may wait for its next batch: it holds the database's write lock.
pub const INGEST_IDLE: Duration = Duration::from_secs(60);
/// Characters of a statement's text written to its log line.
pub const LOGGED_STATEMENT_CHARS: usize = 500;

type DoGetStream = <Service as FlightService>::DoGetStream;

/// What the service holds; cloned cheaply into each request (tonic needs `Clone`).
#[derive(Clone)]
pub struct Service {
    pub(crate) state: Arc<State>,
}

pub(crate) struct State {
    pub db: Arc<Database>,
    pub auth: Auth,
    pub metrics: Metrics,
    permits: Arc<Semaphore>,
    max_statements: usize,
    pending: Mutex<HashMap<Uuid, Pending>>,
    prepared: Mutex<HashMap<Uuid, Prepared>>,
    /// Cancel flags of results being streamed.
    running: Mutex<HashMap<Uuid, Arc<AtomicBool>>>,
}

struct Pending {
    stream: QueryStream,
    tracked: Tracked,
    created: Instant,
}

struct Prepared {
    text: String,
    session: Arc<Session>,
    description: Description,
    /// Parameter rows bound by the last DoPut; the statement runs once per row (once without
    /// parameters when none were bound).
    bindings: Vec<Params>,
    used: Instant,
}

/// One statement on its way: counted, logged and holding its concurrency permit until it ends.
struct Tracked {
    state: Arc<State>,
    handle: Uuid,
    text: String,
    user: String,
    language: &'static str,
    kind: &'static str,
    started: Instant,
    rows: u64,
    /// A write that has committed: dropping its result unread does not undo it.
    committed: bool,
    cancel: Arc<AtomicBool>,
    /// Held while the statement runs; a committed write gives it back at once (what is left
    /// is its report, which clients often never fetch).
    permit: Option<OwnedSemaphorePermit>,
    done: bool,
}

impl Tracked {
    fn finish(&mut self, outcome: Outcome, error: Option<&str>) {
        if self.done {
            return;
        }
        self.done = true;
        let took = self.started.elapsed();
        self.state
            .metrics
            .statement(self.language, self.kind, outcome, took);
        self.state
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.handle);
        let duration_ms = took.as_secs_f64() * 1000.0;
        match error {
            None => tracing::info!(
                target: "contextdb::statement",
                user = %self.user,
                language = self.language,
                kind = self.kind,
                outcome = outcome.as_str(),
                rows = self.rows,
                duration_ms,
                statement = %self.text,
            ),
            Some(error) => tracing::warn!(
                target: "contextdb::statement",
                user = %self.user,
                language = self.language,
                kind = self.kind,
                outcome = outcome.as_str(),
                rows = self.rows,
                duration_ms,
                statement = %self.text,
                error,
            ),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // A stream dropped before its end: the client went away or the result expired (a
        // committed write's rows are only its count; clients often close it unread).
        let outcome = if self.committed {
            Outcome::Ok
        } else {
            Outcome::Cancelled
        };
        self.finish(outcome, None);
    }
}

/// A result stream on its way to the client: counts what it sends, stops when cancelled,
/// and sends view types as plain ones (`schema`, the [`wire_schema`] of the stream's).
struct Streamed {
    inner: SendableRecordBatchStream,
    schema: SchemaRef,
    tracked: Tracked,
}

impl Stream for Streamed {
    type Item = Result<RecordBatch, FlightError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.tracked.done {
            return Poll::Ready(None);
        }
        if self.tracked.cancel.load(Ordering::Relaxed) {
            self.tracked.finish(Outcome::Cancelled, None);
            return Poll::Ready(Some(Err(FlightError::Tonic(Box::new(Status::cancelled(
                "the statement was cancelled",
            ))))));
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                let batch = match wire_batch(batch, &self.schema) {
                    Ok(batch) => batch,
                    Err(e) => {
                        let e = format!("the result's view types: {e}");
                        self.tracked.finish(Outcome::Error, Some(&e));
                        return Poll::Ready(Some(Err(FlightError::Tonic(Box::new(
                            Status::internal(e),
                        )))));
                    }
                };
                let rows = batch.num_rows() as u64;
                // A write's log line counts the rows it wrote, not the row of its count.
                if !self.tracked.committed {
                    self.tracked.rows += rows;
                }
                self.tracked
                    .state
                    .metrics
                    .streamed(rows, batch.get_array_memory_size() as u64);
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e = contextdb_engine::Error::from(e);
                self.tracked.finish(Outcome::Error, Some(&e.to_string()));
                Poll::Ready(Some(Err(FlightError::Tonic(Box::new(status(&e))))))
            }
            Poll::Ready(None) => {
                self.tracked.finish(Outcome::Ok, None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn language_name(language: Language) -> &'static str {
    match language {
        Language::ContextQL => "contextql",
        Language::Sql => "sql",
    }
}

fn logged(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(LOGGED_STATEMENT_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// The language a statement goes to, for metrics before it has run.
fn routed(text: &str) -> &'static str {
    match contextdb_engine::route(text) {
        Language::ContextQL => "contextql",
        Language::Sql => "sql",
    }
}

/// An Arrow schema as the IPC message Flight SQL carries in prepared statement results.
fn schema_bytes(schema: &SchemaRef) -> Result<bytes::Bytes, Status> {
    let schema = wire_schema(schema);
    let message: IpcMessage = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(format!("schema: {e}")))?;
    Ok(message.0)
}

/// A FlightInfo whose one endpoint's ticket is `ticket`, served by this server.
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The schema a statement's result is announced and streamed with: its [`wire_schema`], and
/// for a write the rows it wrote in [`ROWS_AFFECTED_METADATA`], so a client tells a write's
/// report (or its `RETURN` rows) from a query's rows without guessing from column names.
fn announced(stream: &QueryStream) -> SchemaRef {
    let schema = wire_schema(&stream.schema());
    match stream.rows_affected {
        None => schema,
        Some(rows) => {
            let mut metadata = schema.metadata().clone();
            metadata.insert(ROWS_AFFECTED_METADATA.to_string(), rows.to_string());
            Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata))
        }
    }
}

/// One batch as a DoGet stream.
fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
    let schema = batch.schema();
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("building a metadata result: {e}"))
}

fn handle_of(bytes: &[u8]) -> Result<Uuid, Status> {
    Uuid::from_slice(bytes).map_err(|_| {
        Status::invalid_argument("the handle is not one this server issued (not 16 bytes)")
    })
}

/// Parameter rows of a bound batch: each column by its position (`1`, `2`, ...) and by its
/// name, as ContextQL and SQL take them.
fn parameter_rows(batches: &[RecordBatch]) -> Result<Vec<Params>, Status> {
    let mut rows = Vec::new();
    for batch in batches {
        if rows.len() + batch.num_rows() > MAX_BOUND_ROWS {
            return Err(Status::resource_exhausted(format!(
                "one request binds at most {MAX_BOUND_ROWS} parameter rows (MAX_BOUND_ROWS)"
            )));
        }
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let mut params = Params::new();
            for (i, field) in schema.fields().iter().enumerate() {
                let value = ScalarValue::try_from_array(batch.column(i), row).map_err(|e| {
                    Status::invalid_argument(format!(
                        "parameter {} (`{}`): {e}",
                        i + 1,
                        field.name()
                    ))
                })?;
                if !field.name().is_empty() {
                    params.insert(field.name().clone(), value.clone());
                }
                params.insert((i + 1).to_string(), value);
            }
            rows.push(params);
        }
    }
    Ok(rows)
}

/// The batches of a DoPut, as they arrive. Messages without an IPC header (the first one of
/// a request that carries only its command) are skipped.
fn put_batches(stream: PeekableFlightDataStream) -> FlightRecordBatchStream {
    let messages = stream
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from);
    FlightRecordBatchStream::new_from_flight_data(messages)
}

/// The parameter batches a DoPut binds, all of them.
async fn bound_batches(stream: PeekableFlightDataStream) -> Result<Vec<RecordBatch>, Status> {
    put_batches(stream)
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("the bound batches: {e}")))
}

impl Service {
    pub fn new(db: Arc<Database>, auth: Auth, max_statements: usize) -> Service {
        Service {
            state: Arc::new(State {
                db,
                auth,
                metrics: Metrics::default(),
                permits: Arc::new(Semaphore::new(max_statements)),
                max_statements,
                pending: Mutex::new(HashMap::new()),
                prepared: Mutex::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn session<T>(&self, request: &Request<T>) -> Result<(Arc<Session>, String), Status> {
        self.state.auth.session(request.metadata())
    }

    /// A permit to run one statement, or RESOURCE_EXHAUSTED at the limit.
    fn track(&self, text: &str, user: String, kind: &'static str) -> Result<Tracked, Status> {
        let permit = self
            .state
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "the server runs at most {} statements at once (max_concurrent_statements); \
                 retry when one has finished",
                    self.state.max_statements
                ))
            })?;
        Ok(Tracked {
            state: self.state.clone(),
            handle: Uuid::new_v4(),
            text: logged(text),
            user,
            language: routed(text),
            kind,
            started: Instant::now(),
            rows: 0,
            committed: false,
            cancel: Arc::new(AtomicBool::new(false)),
            permit: Some(permit),
            done: false,
        })
    }

    /// Runs one statement for each parameter row (once when there are none) and returns its
    /// rows as one stream; a failure ends the statement's tracking with its error.
    async fn run(
        &self,
        session: &Session,
        text: &str,
        bindings: &[Params],
        tracked: &mut Tracked,
    ) -> Result<QueryStream, Status> {
        let result = async {
            let none = [Params::new()];
            let bindings = if bindings.is_empty() {
                &none[..]
            } else {
                bindings
            };
            let mut streams = Vec::with_capacity(bindings.len());
            for params in bindings {
                streams.push(session.query_typed(text, params).await?);
            }
            Ok::<_, contextdb_engine::Error>(streams)
        }
        .await;
        let mut streams = match result {
            Ok(streams) => streams,
            Err(e) => {
                tracked.finish(Outcome::Error, Some(&e.to_string()));
                return Err(status(&e));
            }
        };
        tracked.language = language_name(streams[0].language);
        let written: Option<u64> = streams.iter().map(|s| s.rows_affected).sum();
        if let Some(rows) = written {
            self.state.metrics.wrote(rows);
            tracked.rows = rows;
            tracked.committed = true;
            tracked.permit = None;
        }
        if streams.len() == 1 {
            return Ok(streams.pop().expect("one stream"));
        }
        let schema = streams[0].schema();
        if let Some(other) = streams.iter().find(|s| s.schema() != schema) {
            let e = format!(
                "the parameter rows give results of different columns ({} and {})",
                schema,
                other.schema()
            );
            tracked.finish(Outcome::Error, Some(&e));
            return Err(Status::invalid_argument(e));
        }
        let language = streams[0].language;
        let inner = futures::stream::iter(streams.into_iter().map(|s| s.stream)).flatten();
        Ok(QueryStream {
            language,
            rows_affected: written,
            stream: Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, inner),
            ),
        })
    }

    /// Keeps a planned result for DoGet and describes it.
    fn pend(
        &self,
        stream: QueryStream,
        tracked: Tracked,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = announced(&stream);
        let handle = tracked.handle;
        {
            let mut pending = self.state.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.retain(|_, p| p.created.elapsed() < PENDING_RESULT_TTL);
            if pending.len() >= MAX_PENDING_RESULTS {
                // Committed writes' reports go first: their statements are done, and clients
                // (ADBC's DB-API among them) often never fetch them.
                let oldest = pending
                    .iter()
                    .filter(|(_, p)| p.tracked.committed)
                    .min_by_key(|(_, p)| p.created)
                    .map(|(handle, _)| *handle);
                if let Some(handle) = oldest {
                    pending.remove(&handle);
                }
            }
            if pending.len() >= MAX_PENDING_RESULTS {
                return Err(Status::resource_exhausted(format!(
                    "{MAX_PENDING_RESULTS} results are waiting to be fetched \
                     (MAX_PENDING_RESULTS); fetch or cancel some first"
                )));
            }
            self.state
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(handle, tracked.cancel.clone());
            pending.insert(
                handle,
                Pending {
                    stream,
                    tracked,
                    created: Instant::now(),
                },
            );
        }
        let ticket = TicketStatementQuery {
            statement_handle: handle.as_bytes().to_vec().into(),
        };
        flight_info(&schema, ticket.as_any().encode_to_vec(), descriptor)
    }

    /// Runs `text` to its end and returns the rows it wrote (0 for a statement that writes
    /// none).
    async fn update(
        &self,
        session: &Session,
        user: String,
        text: &str,
        bindings: &[Params],
        kind: &'static str,
    ) -> Result<i64, Status> {
        let mut tracked = self.track(text, user, kind)?;
        let stream = self.run(session, text, bindings, &mut tracked).await?;
        let rows_affected = stream.rows_affected;
        let mut inner = stream.stream;
        // Drain what it returns (a write's count, a DDL message): the statement ends here.
        while let Some(batch) = inner.next().await {
            if let Err(e) = batch {
                let e = contextdb_engine::Error::from(e);
                tracked.finish(Outcome::Error, Some(&e.to_string()));
                return Err(status(&e));
            }
        }
        tracked.rows = rows_affected.unwrap_or(0);
        tracked.finish(Outcome::Ok, None);
        Ok(rows_affected.unwrap_or(0).min(i64::MAX as u64) as i64)
    }

    fn prepared(&self, handle: &[u8]) -> Result<(String, Arc<Session>, Vec<Params>), Status> {
        let handle = handle_of(handle)?;
        let mut prepared = self
            .state
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let p = prepared
            .get_mut(&handle)
            .filter(|p| p.used.elapsed() < PREPARED_IDLE)
            .ok_or_else(|| {
                Status::not_found(
                    "no such prepared statement (closed or expired); prepare it again",
                )
            })?;
        p.used = Instant::now();
        Ok((p.text.clone(), p.session.clone(), p.bindings.clone()))
    }

    /// Cancels the statement behind `handle`: a result not fetched yet is dropped, one being
    /// streamed stops at its next batch.
    fn cancel(&self, handle: Uuid) -> bool {
        let waiting = self
            .state
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle);
        if let Some(mut waiting) = waiting {
            waiting.tracked.finish(Outcome::Cancelled, None);
            return true;
        }
        match self
            .state
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&handle)
        {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The statement handles in a FlightInfo's tickets.
    fn cancel_info(&self, info: &FlightInfo) -> Result<bool, Status> {
        let mut cancelled = false;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let any = Any::decode(ticket.ticket.clone())
                .map_err(|_| Status::invalid_argument("the FlightInfo's ticket does not decode"))?;
            if let Ok(Some(t)) = any.unpack::<TicketStatementQuery>() {
                cancelled |= self.cancel(handle_of(&t.statement_handle)?);
            }
        }
        Ok(cancelled)
    }

    /// The FlightInfo of a metadata command: its result's columns, and the command itself as
    /// the ticket (DoGet decodes it and answers from the catalog as it is then).
    fn metadata_info(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: &impl ProstMessageExt,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request)?;
        flight_info(
            schema,
            command.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn tables(&self) -> Result<Vec<contextdb_engine::TableDescription>, Status> {
        self.state
            .db
            .describe_tables()
            .await
            .map_err(|e| status(&e))
    }

    /// The edge tables' foreign keys that `keep` selects, as a DoGet stream.
    async fn keys<T>(
        &self,
        request: &Request<T>,
        keep: impl Fn(&metadata::ForeignKey) -> bool,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request)?;
        let keys: Vec<_> = metadata::foreign_keys(&self.tables().await?)
            .into_iter()
            .filter(|k| keep(k))
            .collect();
        Ok(batch_stream(
            metadata::keys_batch(&keys).map_err(arrow_status)?,
        ))
    }

    pub fn gauges(&self) -> Gauges {
        Gauges {
            open_sessions: self.state.auth.open_sessions(),
            prepared_statements: self
                .state
                .prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
            running_statements: self.state.max_statements - self.state.permits.available_permits(),
            hot_tier_bytes: self.state.db.hot_tier().used_bytes,
            catalog_version: self.state.db.catalog_version(),
        }
    }
}

#[tonic::async_trait]
impl FlightSqlService for Service {
    type FlightService = Service;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let (token, user) = self.state.auth.handshake(request.metadata())?;
        tracing::info!(target: "contextdb::auth", user = %user, "handshake");
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        // Clients (the Go and Java Flight clients) read the token from this header.
        let bearer = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("a token is not a header value"))?;
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (session, user) = self.session(&request)?;
        let mut tracked = self.track(&query.query, user, "query")?;
        let stream = self.run(&session, &query.query, &[], &mut tracked).await?;
        self.pend(stream, tracked, request.into_inner())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (_, user) = self.session(&request)?;
        let (text, session, bindings) = self.prepared(&query.prepared_statement_handle)?;
        let mut tracked = self.track(&text, user, "prepared_query")?;
        let stream = self.run(&session, &text, &bindings, &mut tracked).await?;
        self.pend(stream, tracked, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request)?;
        let handle = handle_of(&ticket.statement_handle)?;
        let pending = self
            .state
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle)
            .ok_or_else(|| {
                Status::not_found(
                    "no result for this ticket: fetched already, cancelled or expired \
                     (PENDING_RESULT_TTL)",
                )
            })?;
        let schema = announced(&pending.stream);
        let streamed = Streamed {
            inner: pending.stream.stream,
            schema: schema.clone(),
            tracked: pending.tracked,
        };
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(streamed)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (session, user) = self.session(&request)?;
        self.update(&session, user, &command.query, &[], "update")
            .await
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (_, user) = self.session(&request)?;
        let target = crate::ingest::target(&command, request.metadata())?;
        let text = format!(
            "ingest into {}{} (if exists: {:?}, if missing: {:?})",
            target
                .schema
                .as_deref()
                .map(|s| format!("{s}."))
                .unwrap_or_default(),
            target.table,
            target.if_exists,
            target.if_missing
        );
        let mut tracked = self.track(&text, user, "ingest")?;
        tracked.language = "arrow";
        let mut batches = put_batches(request.into_inner());
        let bad_input = |e: FlightError| {
            contextdb_engine::Error::execution(format!("the ingested batches: {e}"))
        };
        let first = match batches.next().await.transpose() {
            Ok(first) => first,
            Err(e) => {
                let e = bad_input(e);
                tracked.finish(Outcome::Error, Some(&e.to_string()));
                return Err(status(&e));
            }
        };
        let Some(schema) = first
            .as_ref()
            .map(|b| b.schema())
            .or_else(|| batches.schema().cloned())
        else {
            tracked.finish(Outcome::Error, Some("no schema"));
            return Err(Status::invalid_argument(
                "the ingest sent no schema and no batches",
            ));
        };
        // The engine holds the write lock while it reads: a client that stops sending must
        // not hold it past INGEST_IDLE.
        let rest = futures::stream::unfold(batches, |mut batches| async move {
            match tokio::time::timeout(INGEST_IDLE, batches.next()).await {
                Ok(Some(batch)) => Some((batch.map_err(bad_input), batches)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(contextdb_engine::Error::new(
                        contextdb_engine::ErrorKind::Resource,
                        format!(
                            "the ingest sent no batch for {} s (INGEST_IDLE); nothing was \
                             committed",
                            INGEST_IDLE.as_secs()
                        ),
                    )),
                    batches,
                )),
            }
        });
        let input = futures::stream::iter(first.map(Ok)).chain(Box::pin(rest));
        match self.state.db.ingest(&target, schema, input).await {
            Ok(rows) => {
                self.state.metrics.wrote(rows);
                tracked.rows = rows;
                tracked.committed = true;
                tracked.finish(Outcome::Ok, None);
                Ok(rows.min(i64::MAX as u64) as i64)
            }
            Err(e) => {
                tracked.finish(Outcome::Error, Some(&e.to_string()));
                Err(status(&e))
            }
        }
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (session, _) = self.session(&request)?;
        let description = session
            .describe(&query.query)
            .await
            .map_err(|e| status(&e))?;
        let result = ActionCreatePreparedStatementResult {
            prepared_statement_handle: Default::default(),
            dataset_schema: schema_bytes(&description.columns)?,
            parameter_schema: schema_bytes(&description.parameters)?,
        };
        let handle = Uuid::new_v4();
        {
            let mut prepared = self
                .state
                .prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            prepared.retain(|_, p| p.used.elapsed() < PREPARED_IDLE);
            if prepared.len() >= MAX_PREPARED_STATEMENTS {
                return Err(Status::resource_exhausted(format!(
                    "{MAX_PREPARED_STATEMENTS} prepared statements are open \
                     (MAX_PREPARED_STATEMENTS); close some first"
                )));
            }
            prepared.insert(
                handle,
                Prepared {
                    text: query.query,
                    session,
                    description,
                    bindings: Vec::new(),
                    used: Instant::now(),
                },
            );
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.as_bytes().to_vec().into(),
            ..result
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.session(&request)?;
        let handle = handle_of(&query.prepared_statement_handle)?;
        self.state
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.session(&request)?;
        let handle = handle_of(&query.prepared_statement_handle)?;
        let batches = bound_batches(request.into_inner()).await?;
        let rows = parameter_rows(&batches)?;
        let mut prepared = self
            .state
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let p = prepared.get_mut(&handle).ok_or_else(|| {
            Status::not_found("no such prepared statement (closed or expired); prepare it again")
        })?;
        let expected = p.description.parameters.fields().len();
        if let Some(batch) = batches.first()
            && expected > 0
            && batch.num_columns() != expected
        {
            return Err(Status::invalid_argument(format!(
                "the statement takes {expected} parameters; the bound batch has {} columns",
                batch.num_columns()
            )));
        }
        p.bindings = rows;
        p.used = Instant::now();
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (_, user) = self.session(&request)?;
        let handle = query.prepared_statement_handle.clone();
        // Parameters may come with the update itself (one DoPut carrying the rows).
        let batches = bound_batches(request.into_inner()).await?;
        let (text, session, bound) = self.prepared(&handle)?;
        let rows = parameter_rows(&batches)?;
        let bindings = if rows.is_empty() { bound } else { rows };
        self.update(&session, user, &text, &bindings, "prepared_update")
            .await
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        self.session(&request)?;
        let info = FlightInfo::decode(query.info).map_err(|_| {
            Status::invalid_argument("the cancel request's FlightInfo does not decode")
        })?;
        // ActionCancelQueryResult.CancelResult (arrow-flight does not export the enum).
        const CANCELLED: i32 = 1;
        const NOT_CANCELLABLE: i32 = 3;
        let result = if self.cancel_info(&info)? {
            CANCELLED
        } else {
            NOT_CANCELLABLE
        };
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        self.session(&request)?;
        let action = request.into_inner();
        if action.r#type != "CancelFlightInfo" {
            return Err(Status::invalid_argument(format!(
                "unknown action `{}`",
                action.r#type
            )));
        }
        let cancel = CancelFlightInfoRequest::decode(action.body)
            .map_err(|_| Status::invalid_argument("CancelFlightInfoRequest does not decode"))?;
        let info = cancel
            .info
            .ok_or_else(|| Status::invalid_argument("CancelFlightInfo needs a FlightInfo"))?;
        let status = if self.cancel_info(&info)? {
            CancelStatus::Cancelled
        } else {
            CancelStatus::NotCancellable
        };
        let result = CancelFlightInfoResult {
            status: status as i32,
        };
        let body = arrow_flight::Result {
            body: result.encode_to_vec().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(body)]))))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, &query.into_builder().schema(), &query)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request)?;
        let mut builder: GetCatalogsBuilder = query.into_builder();
        builder.append(contextdb_engine::DEFAULT_CATALOG);
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, &query.clone().into_builder().schema(), &query)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request)?;
        let mut builder = query.into_builder();
        for schema in self.state.db.schemas().await.map_err(|e| status(&e))? {
            builder.append(contextdb_engine::DEFAULT_CATALOG, schema);
        }
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, &query.clone().into_builder().schema(), &query)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request)?;
        let mut builder = query.into_builder();
        for table in self.tables().await? {
            builder
                .append(
                    contextdb_engine::DEFAULT_CATALOG,
                    &table.schema,
                    &table.name,
                    table.table_type.as_str(),
                    &wire_schema(&table.columns),
                )
                .map_err(arrow_status)?;
        }
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, &query.into_builder().schema(), &query)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request)?;
        let mut builder = query.into_builder();
        for t in contextdb_engine::TableType::ALL {
            builder.append(t.as_str());
        }
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(metadata::sql_info()).schema();
        self.metadata_info(request, &schema, &query)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request)?;
        let builder = query.into_builder(metadata::sql_info());
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(metadata::xdbc_types()).schema();
        self.metadata_info(request, &schema, &query)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request)?;
        let builder = query.into_builder(metadata::xdbc_types());
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, &metadata::primary_keys_schema(), &query)
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request)?;
        let batch = metadata::primary_keys(&self.tables().await?, &query).map_err(arrow_status)?;
        Ok(batch_stream(batch))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, &metadata::keys_schema(), &query)
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (catalog, schema) = (query.catalog.as_deref(), query.db_schema.as_deref());
        self.keys(&request, |k| k.matches_fk(catalog, schema, &query.table))
            .await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, &metadata::keys_schema(), &query)
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (catalog, schema) = (query.catalog.as_deref(), query.db_schema.as_deref());
        self.keys(&request, |k| k.matches_pk(catalog, schema, &query.table))
            .await
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, &metadata::keys_schema(), &query)
    }

    async fn do_get_cross_reference(
        &self,
        q: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.keys(&request, |k| {
            k.matches_pk(
                q.pk_catalog.as_deref(),
                q.pk_db_schema.as_deref(),
                &q.pk_table,
            ) && k.matches_fk(
                q.fk_catalog.as_deref(),
                q.fk_db_schema.as_deref(),
                &q.fk_table,
            )
        })
        .await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
