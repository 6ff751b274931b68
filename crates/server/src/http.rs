//! HTTP `/health` (JSON) and `/metrics` (Prometheus text), beside the Flight SQL listener.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::service::Service;

/// Time one HTTP connection may take to send its request headers.
pub const HTTP_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a response from a status, one header and a body")
}

fn answer(
    service: &Service,
    data_dir: &std::path::Path,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/health" => {
            let body = serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "data_dir": data_dir.display().to_string(),
                "catalog_version": service.state.db.catalog_version(),
                "uptime_seconds": service.state.metrics.uptime().as_secs_f64(),
            });
            reply(StatusCode::OK, "application/json", format!("{body}\n"))
        }
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            service.state.metrics.render(&service.gauges()),
        ),
        other => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no {other} here: /health or /metrics\n"),
        ),
    }
}

/// Serves HTTP on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    data_dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(target: "contextdb::http", error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let service = service.clone();
        let data_dir = data_dir.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req: Request<Incoming>| {
                let response = answer(&service, &data_dir, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HTTP_HEADER_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), handler)
                .await
            {
                tracing::debug!(target: "contextdb::http", error = %e, "connection ended");
            }
        });
    }
}
