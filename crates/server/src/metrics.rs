//! Counters for `/metrics`, written in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the statement latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Error,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

#[derive(Default)]
struct Histogram {
    /// Per bucket of [`LATENCY_BUCKETS`], then +Inf: counts (not cumulative).
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
}

/// What the server has done since it started.
pub struct Metrics {
    started: Instant,
    /// (language, kind, outcome) → statements.
    statements: Mutex<BTreeMap<(&'static str, &'static str, Outcome), u64>>,
    /// kind → latency.
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    rows_streamed: AtomicU64,
    bytes_streamed: AtomicU64,
    rows_written: AtomicU64,
    writes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            statements: Mutex::default(),
            latency: Mutex::default(),
            rows_streamed: AtomicU64::new(0),
            bytes_streamed: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }
}

/// Gauges read when `/metrics` is asked for.
pub struct Gauges {
    pub open_sessions: usize,
    pub prepared_statements: usize,
    pub running_statements: usize,
    pub hot_tier_bytes: usize,
    pub catalog_version: u64,
}

impl Metrics {
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn statement(
        &self,
        language: &'static str,
        kind: &'static str,
        outcome: Outcome,
        took: Duration,
    ) {
        *self
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((language, kind, outcome))
            .or_default() += 1;
        let seconds = took.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = latency.entry(kind).or_default();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        h.counts[bucket] += 1;
        h.sum += seconds;
    }

    pub fn streamed(&self, rows: u64, bytes: u64) {
        self.rows_streamed.fetch_add(rows, Ordering::Relaxed);
        self.bytes_streamed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A statement that wrote `rows` rows and committed.
    pub fn wrote(&self, rows: u64) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.rows_written.fetch_add(rows, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        metric(
            "contextdb_statements_total",
            "counter",
            "Statements finished, by language, kind and outcome.",
        );
        for ((language, kind, outcome), n) in self
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "contextdb_statements_total{{language=\"{language}\",kind=\"{kind}\",outcome=\"{}\"}} {n}",
                outcome.as_str()
            );
        }
        let _ = writeln!(
            out,
            "# HELP contextdb_statement_duration_seconds Statement time from the request to \
             the last batch sent, by kind.\n# TYPE contextdb_statement_duration_seconds histogram"
        );
        for (kind, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += h.counts[i];
                let _ = writeln!(
                    out,
                    "contextdb_statement_duration_seconds_bucket{{kind=\"{kind}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += h.counts[LATENCY_BUCKETS.len()];
            let _ = writeln!(
                out,
                "contextdb_statement_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {cumulative}\n\
                 contextdb_statement_duration_seconds_sum{{kind=\"{kind}\"}} {}\n\
                 contextdb_statement_duration_seconds_count{{kind=\"{kind}\"}} {cumulative}",
                h.sum
            );
        }
        let resident = resident_bytes();
        let scalars: [(&str, &str, &str, u64); 11] = [
            (
                "contextdb_rows_streamed_total",
                "counter",
                "Rows sent to clients in result streams.",
                self.rows_streamed.load(Ordering::Relaxed),
            ),
            (
                "contextdb_bytes_streamed_total",
                "counter",
                "Arrow bytes of the batches sent to clients.",
                self.bytes_streamed.load(Ordering::Relaxed),
            ),
            (
                "contextdb_commits_total",
                "counter",
                "Statements that wrote rows and committed.",
                self.writes.load(Ordering::Relaxed),
            ),
            (
                "contextdb_rows_written_total",
                "counter",
                "Rows written by committed statements.",
                self.rows_written.load(Ordering::Relaxed),
            ),
            (
                "contextdb_open_sessions",
                "gauge",
                "Sessions (bearer tokens) open.",
                gauges.open_sessions as u64,
            ),
            (
                "contextdb_prepared_statements",
                "gauge",
                "Prepared statements open.",
                gauges.prepared_statements as u64,
            ),
            (
                "contextdb_running_statements",
                "gauge",
                "Statements planned and not yet finished streaming.",
                gauges.running_statements as u64,
            ),
            (
                "contextdb_hot_tier_bytes",
                "gauge",
                "Bytes of table data held in the hot tier.",
                gauges.hot_tier_bytes as u64,
            ),
            (
                "contextdb_memory_resident_bytes",
                "gauge",
                "Resident memory of the process.",
                resident,
            ),
            (
                "contextdb_catalog_version",
                "gauge",
                "The catalog log entry last applied.",
                gauges.catalog_version,
            ),
            (
                "contextdb_uptime_seconds",
                "gauge",
                "Seconds since the server started.",
                self.uptime().as_secs(),
            ),
        ];
        for (name, kind, help, value) in scalars {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

/// Resident memory from /proc (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counted() {
        let m = Metrics::default();
        m.statement("sql", "query", Outcome::Ok, Duration::from_micros(300));
        m.statement("sql", "query", Outcome::Ok, Duration::from_millis(20));
        m.statement(
            "contextql",
            "query",
            Outcome::Error,
            Duration::from_secs(60),
        );
        let text = m.render(&Gauges {
            open_sessions: 1,
            prepared_statements: 2,
            running_statements: 0,
            hot_tier_bytes: 0,
            catalog_version: 7,
        });
        assert!(text.contains(
            "contextdb_statements_total{language=\"sql\",kind=\"query\",outcome=\"ok\"} 2"
        ));
        assert!(text.contains(
            "contextdb_statement_duration_seconds_bucket{kind=\"query\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "contextdb_statement_duration_seconds_bucket{kind=\"query\",le=\"0.025\"} 2"
        ));
        assert!(
            text.contains(
                "contextdb_statement_duration_seconds_bucket{kind=\"query\",le=\"+Inf\"} 3"
            )
        );
        assert!(text.contains("contextdb_prepared_statements 2"));
        assert!(text.contains("contextdb_catalog_version 7"));
    }
}
