//! `contextdb shell --url grpc://HOST:PORT` (or `grpc+tls://`): the shell's statements sent to
//! a `contextdb serve` over Arrow Flight SQL instead of an embedded database. Statements,
//! parameters and output formats are the embedded shell's; the server routes and runs them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::FlightInfo;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use contextdb_engine::{Language, StatementResult};
use futures::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// How long connecting to the server may take before the shell gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a server, holding its session (its bearer token).
pub struct Remote {
    client: FlightSqlServiceClient<Channel>,
}

/// The rows of one statement, as the server streams them.
pub struct RemoteStream {
    pub language: Language,
    pub schema: SchemaRef,
    streams: Vec<FlightRecordBatchStream>,
}

impl RemoteStream {
    /// The next batch, or None at the end.
    pub async fn next(&mut self) -> Result<Option<RecordBatch>, String> {
        while let Some(stream) = self.streams.first_mut() {
            match stream.next().await {
                Some(batch) => return batch.map(Some).map_err(|e| flight_message(&e)),
                None => {
                    self.streams.remove(0);
                }
            }
        }
        Ok(None)
    }

    /// Every batch, as the embedded shell's result: a write's report (one `rows_affected`
    /// column) gives its row count.
    pub async fn collect(mut self) -> Result<StatementResult, String> {
        let mut batches = Vec::new();
        while let Some(batch) = self.next().await? {
            batches.push(batch);
        }
        let rows_affected = rows_affected(&self.schema, &batches);
        Ok(StatementResult {
            language: self.language,
            schema: self.schema,
            batches,
            rows_affected,
        })
    }
}

/// The rows a write reports (its one `rows_affected` column, or DataFusion's `count`), or
/// None for a query's own rows.
fn rows_affected(schema: &Schema, batches: &[RecordBatch]) -> Option<u64> {
    let [field] = schema.fields().as_ref() else {
        return None;
    };
    if field.name() != crate::status::ROWS_AFFECTED_COLUMN {
        return None;
    }
    let mut total = 0u64;
    for batch in batches {
        let column = arrow::compute::cast(batch.column(0), &DataType::UInt64).ok()?;
        let values = column.as_primitive::<arrow::datatypes::UInt64Type>();
        total += values.iter().flatten().sum::<u64>();
    }
    Some(total)
}

/// The text of a Flight error: the server's message (which starts with the error's kind and
/// position), without the transport's wrapping.
fn flight_message(e: &FlightError) -> String {
    match e {
        FlightError::Tonic(status) => status_message(status),
        other => other.to_string(),
    }
}

fn status_message(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_string()
    }
}

impl Remote {
    /// Connects to `url` (`grpc://HOST:PORT` or `grpc+tls://HOST:PORT`), with `user`'s
    /// credentials when given; `tls_ca` is a PEM certificate to trust besides the system's.
    pub async fn connect(
        url: &str,
        user: Option<(&str, &str)>,
        tls_ca: Option<&Path>,
    ) -> Result<Remote, String> {
        let (tls, address) = if let Some(rest) = url.strip_prefix("grpc+tls://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("grpc://") {
            (false, rest)
        } else {
            return Err(format!(
                "`{url}` is not a Flight SQL address: use grpc://HOST:PORT or grpc+tls://HOST:PORT"
            ));
        };
        let scheme = if tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| format!("`{url}`: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if tls {
            let mut config = ClientTlsConfig::new().with_enabled_roots();
            if let Some(path) = tls_ca {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| format!("TLS for `{url}`: {e}"))?;
        } else if tls_ca.is_some() {
            return Err("--tls-ca needs a grpc+tls:// address".into());
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {url}: {}", source_chain(&e)))?;
        let mut client = FlightSqlServiceClient::new(channel);
        if let Some((name, password)) = user {
            client
                .handshake(name, password)
                .await
                .map_err(|e| format!("cannot sign in to {url}: {}", flight_message(&e)))?;
        }
        Ok(Remote { client })
    }

    /// Runs one statement with `params` bound (`$name`; a prepared statement then carries
    /// them as one parameter row) and returns its rows as they stream.
    pub async fn query(
        &self,
        text: &str,
        params: &HashMap<String, serde_json::Value>,
    ) -> Result<RemoteStream, String> {
        // Each statement uses its own handle on the channel (and the session's token).
        let mut client = self.client.clone();
        let info = if params.is_empty() {
            client
                .execute(text.to_string(), None)
                .await
                .map_err(|e| flight_message(&e))?
        } else {
            let batch = parameter_batch(params)?;
            let mut prepared = client
                .prepare(text.to_string(), None)
                .await
                .map_err(|e| flight_message(&e))?;
            prepared
                .set_parameters(batch)
                .map_err(|e| flight_message(&e))?;
            let info = prepared.execute().await.map_err(|e| flight_message(&e));
            // Closing is best effort: the server also closes idle prepared statements.
            let _ = prepared.close().await;
            info?
        };
        fetch(&mut client, text, info).await
    }
}

/// The result `info` describes: its schema, and a stream per endpoint.
async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    text: &str,
    info: FlightInfo,
) -> Result<RemoteStream, String> {
    {
        let schema = std::sync::Arc::new(
            info.clone()
                .try_decode_schema()
                .map_err(|e| format!("the server's result schema: {e}"))?,
        );
        let mut streams = Vec::with_capacity(info.endpoint.len());
        for endpoint in &info.endpoint {
            let ticket = endpoint
                .ticket
                .clone()
                .ok_or("the server's result has no ticket")?;
            streams.push(
                client
                    .do_get(ticket)
                    .await
                    .map_err(|e| flight_message(&e))?,
            );
        }
        Ok(RemoteStream {
            language: contextdb_engine::route(text),
            schema,
            streams,
        })
    }
}

/// One parameter row: a column per parameter, named as the parameter, typed as the embedded
/// shell types the same JSON.
fn parameter_batch(params: &HashMap<String, serde_json::Value>) -> Result<RecordBatch, String> {
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    let mut fields = Vec::with_capacity(names.len());
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        let value = contextdb_engine::json_scalar(&params[name])
            .map_err(|e| format!("parameter ${name}: {e}"))?;
        let array = value
            .to_array_of_size(1)
            .map_err(|e| format!("parameter ${name}: {e}"))?;
        fields.push(Field::new(name, array.data_type().clone(), true));
        columns.push(array);
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .map_err(|e| format!("the parameters: {e}"))
}

/// An error with its causes, for a connection failure (tonic's own text is only "transport
/// error").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_one_typed_row_and_write_reports_give_their_count() {
        let params = HashMap::from([
            ("name".to_string(), serde_json::json!("libssl3")),
            ("k".to_string(), serde_json::json!(5)),
            ("v".to_string(), serde_json::json!([0.5, 1])),
        ]);
        let batch = parameter_batch(&params).unwrap();
        assert_eq!(batch.num_rows(), 1);
        let schema = batch.schema();
        let types: Vec<(&str, &DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(types[0], ("k", &DataType::Int64));
        assert_eq!(types[1], ("name", &DataType::Utf8));
        assert!(matches!(types[2].1, DataType::List(_)), "{types:?}");

        let report = std::sync::Arc::new(Schema::new(vec![Field::new(
            crate::status::ROWS_AFFECTED_COLUMN,
            DataType::Int64,
            false,
        )]));
        let batch = RecordBatch::try_new(
            report.clone(),
            vec![std::sync::Arc::new(arrow::array::Int64Array::from(vec![3]))],
        )
        .unwrap();
        assert_eq!(rows_affected(&report, &[batch]), Some(3));
        let rows = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
        assert_eq!(rows_affected(&rows, &[]), None);
        let refused = futures::executor::block_on(Remote::connect("http://x:1", None, None));
        assert!(refused.err().unwrap().contains("grpc://HOST:PORT"));
    }
}
