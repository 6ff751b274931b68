//! The ContextDB server: Arrow Flight SQL on tonic (ContextQL and SQL statements, prepared
//! statements, catalog metadata, cancellation), with `/health` and `/metrics` over HTTP.
//!
//! ```text
//!  client ─ gRPC ─► auth (bearer token → session) ─► service ─► engine Session ─► stream
//!                                                      │                          │
//!                                   pending results ◄──┘  DoGet ◄─ FlightData ◄───┘
//! ```
//!
//! The engine knows no protocol; this crate knows no storage format.

pub mod auth;
pub mod config;
mod http;
mod ingest;
mod metadata;
mod metrics;
mod service;
mod status;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use contextdb_engine::{Database, DbConfig};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use config::{ConfigError, Flags, LogFormat, ServerConfig, User};
pub use service::{
    INGEST_IDLE, MAX_BOUND_ROWS, MAX_PENDING_RESULTS, MAX_PREPARED_STATEMENTS, PENDING_RESULT_TTL,
    PREPARED_IDLE, ROWS_AFFECTED_METADATA,
};

/// Largest gRPC message accepted or sent (a parameter batch, an ingested batch, a result
/// batch); tonic's default of 4 MiB is smaller than one batch of 384-d vectors.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A server that failed to start or stopped on an error.
#[derive(Debug)]
pub struct ServeError(pub String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

/// The addresses a started server listens on (the ports chosen when the configuration said 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub flight: SocketAddr,
    pub http: SocketAddr,
}

/// Opens the database and serves it until `shutdown` completes; then stops taking calls,
/// lets running ones finish, and closes the database. `engine` adjusts the database's
/// settings; `on_bound` hears the addresses once both listeners are bound.
pub async fn serve(
    config: ServerConfig,
    engine: impl FnOnce(DbConfig) -> DbConfig,
    on_bound: impl FnOnce(Bound),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let db = Database::open(engine(DbConfig::local(&config.data_dir)))
        .await
        .map_err(|e| ServeError(format!("cannot open {}: {e}", config.data_dir.display())))?;
    let result = serve_database(db.clone(), &config, on_bound, shutdown).await;
    db.shutdown().await;
    result
}

async fn serve_database(
    db: Arc<Database>,
    config: &ServerConfig,
    on_bound: impl FnOnce(Bound),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if config.users.is_empty() {
        tracing::warn!(
            target: "contextdb::auth",
            "no user is configured: anyone who reaches the server may use it"
        );
    }
    let auth = auth::Auth::new(db.clone(), &config.users);
    let service = service::Service::new(db, auth, config.max_concurrent_statements);

    let bind = |addr: SocketAddr, what: &str| {
        let what = what.to_string();
        async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError(format!("cannot bind the {what} address {addr}: {e}")))
        }
    };
    let flight = bind(config.flight_addr, "Flight SQL").await?;
    let http = bind(config.http_addr, "HTTP").await?;
    let bound = Bound {
        flight: flight.local_addr().map_err(|e| ServeError(e.to_string()))?,
        http: http.local_addr().map_err(|e| ServeError(e.to_string()))?,
    };

    let mut server = Server::builder();
    if let Some(tls) = &config.tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| ServeError(format!("cannot read {}: {e}", path.display())))
        };
        let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServeError(format!("TLS: {e}")))?;
    }
    let flight_service = FlightServiceServer::new(service.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let http_task = tokio::spawn(http::serve(
        http,
        service.clone(),
        config.data_dir.clone(),
        stopped(stop_rx.clone()),
    ));
    tracing::info!(
        target: "contextdb::server",
        flight = %bound.flight,
        http = %bound.http,
        tls = config.tls.is_some(),
        data_dir = %config.data_dir.display(),
        "listening"
    );
    on_bound(bound);
    let result = server
        .add_service(flight_service)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a small response waits for the client's delayed ACK
            // (about 40 ms per round trip, measured with the ADBC client).
            TcpIncoming::from(flight).with_nodelay(Some(true)),
            {
                let stop = stopped(stop_rx);
                async move {
                    stop.await;
                    tracing::info!(
                        target: "contextdb::server",
                        "shutting down: running statements finish, new calls are refused"
                    );
                }
            },
        )
        .await
        .map_err(|e| ServeError(format!("Flight SQL server: {e}")));
    let _ = http_task.await;
    result
}
