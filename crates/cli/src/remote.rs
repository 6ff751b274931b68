//! `contextdb shell --url grpc://HOST:PORT` (or `grpc+tls://`): the shell's statements sent to
//! a `contextdb serve` over Arrow Flight SQL instead of an embedded database. Statements,
//! parameters and output formats are the embedded shell's; the server routes and runs them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
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

    /// The rows a write wrote, as the server announces them in the result's schema (None: a
    /// query).
    pub fn rows_affected(&self) -> Option<u64> {
        self.schema
            .metadata()
            .get(contextdb_server::ROWS_AFFECTED_METADATA)
            .and_then(|rows| rows.parse().ok())
    }

    /// Every batch, as the embedded shell's result.
    pub async fn collect(mut self) -> Result<StatementResult, String> {
        let rows_affected = self.rows_affected();
        let mut batches = Vec::new();
        while let Some(batch) = self.next().await? {
            batches.push(batch);
        }
        Ok(StatementResult {
            language: self.language,
            schema: self.schema,
            batches,
            rows_affected,
        })
    }
}

/// A server's error message (`<kind> at LINE:COLUMN: ...`) for the statement at byte `offset`
/// of `script`, its position counted from the start of the script as the embedded shell
/// counts it.
pub fn moved_to(message: &str, script: &str, offset: usize) -> String {
    let Some((kind, rest)) = message.split_once(" at ") else {
        return message.to_string();
    };
    let Some((position, tail)) = rest.split_once(": ") else {
        return message.to_string();
    };
    let Some((line, column)) = position.split_once(':') else {
        return message.to_string();
    };
    match (line.parse::<usize>(), column.parse::<usize>()) {
        (Ok(line), Ok(column)) if !kind.contains(' ') || kind.ends_with("error") => {
            let (line, column) =
                contextdb_engine::route::script_position(script, offset, (line, column));
            format!("{kind} at line {line}, column {column}: {tail}")
        }
        _ => message.to_string(),
    }
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
            let mut prepared = client
                .prepare(text.to_string(), None)
                .await
                .map_err(|e| flight_message(&e))?;
            // Only the parameters the statement takes, as the embedded shell ignores others
            // (a statement that declares none gets them all).
            let declared: Vec<String> = prepared
                .parameter_schema()
                .map(|s| s.fields().iter().map(|f| f.name().clone()).collect())
                .unwrap_or_default();
            let batch = parameter_batch(params, &declared)?;
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
fn parameter_batch(
    params: &HashMap<String, serde_json::Value>,
    declared: &[String],
) -> Result<RecordBatch, String> {
    let mut names: Vec<&String> = params
        .keys()
        .filter(|name| declared.is_empty() || declared.contains(name))
        .collect();
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
    use arrow::datatypes::DataType;

    #[test]
    fn parameters_are_one_typed_row_and_write_reports_give_their_count() {
        let params = HashMap::from([
            ("name".to_string(), serde_json::json!("libssl3")),
            ("k".to_string(), serde_json::json!(5)),
            ("v".to_string(), serde_json::json!([0.5, 1])),
        ]);
        let batch = parameter_batch(&params, &[]).unwrap();
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

        // Only the declared ones, when the statement declares them.
        let only = parameter_batch(&params, &["name".to_string()]).unwrap();
        assert_eq!(only.num_columns(), 1);
        // Positions move to the script, as the embedded shell prints them.
        let script = "SELECT 1;\nMATCH (p RETURN p";
        assert_eq!(
            moved_to("syntax error at 1:10: expected )", script, 10),
            "syntax error at line 2, column 10: expected )"
        );
        assert_eq!(moved_to("no position here", script, 10), "no position here");
        let refused = futures::executor::block_on(Remote::connect("http://x:1", None, None));
        assert!(refused.err().unwrap().contains("grpc://HOST:PORT"));
    }
}
