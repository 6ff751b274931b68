//! Flight SQL against the engine in-process, on the Debian graph, in one run: the round trip
//! of `SELECT 1` and of a point query, and streaming a large result (every package with its
//! 384-d embedding) over DoGet. The in-process baseline runs the same statements through a
//! `Session` on the same data directory before the server opens it. Prints ratios.

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use common::median;
use contextdb_benches::load;
use contextdb_engine::{DbConfig, Params, Session};
use criterion::{Criterion, criterion_group, criterion_main};
use futures::TryStreamExt;
use tonic::transport::Channel;

const SELECT_ONE: &str = "SELECT 1";
const POINT: &str = "MATCH (p:Package {name: 'libssl3'}) RETURN p.name, p.version";
const LARGE: &str = "SELECT * FROM Package";
/// Times the large result is streamed to take its median.
const LARGE_RUNS: usize = 7;

async fn in_process(session: &Session, text: &str) -> Vec<RecordBatch> {
    let stream = session.query_typed(text, &Params::new()).await.expect(text);
    stream.collect().await.expect(text).batches
}

async fn over_flight(client: &mut FlightSqlServiceClient<Channel>, text: &str) -> Vec<RecordBatch> {
    let info = client.execute(text.to_string(), None).await.expect(text);
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("the batches")
}

fn rows_and_bytes(batches: &[RecordBatch]) -> (usize, usize) {
    (
        batches.iter().map(|b| b.num_rows()).sum(),
        batches.iter().map(|b| b.get_array_memory_size()).sum(),
    )
}

/// The median time of `runs` calls of `f`.
fn median_of(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn server(c: &mut Criterion) {
    let runtime = contextdb_benches::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, load_time) = runtime.block_on(load(DbConfig::local(dir.path())));
    println!(
        "load: whole Debian graph in {:.1} s",
        load_time.as_secs_f64()
    );

    // In-process, on the same data directory (closed before the server opens it).
    let session = Session::new(db.clone());
    let (rows, bytes) = rows_and_bytes(&runtime.block_on(in_process(&session, LARGE)));
    let local_one = median(c, "in-process SELECT 1", || {
        std::hint::black_box(runtime.block_on(in_process(&session, SELECT_ONE)));
    });
    let local_point = median(c, "in-process point query", || {
        std::hint::black_box(runtime.block_on(in_process(&session, POINT)));
    });
    let local_large = median_of(LARGE_RUNS, || {
        std::hint::black_box(runtime.block_on(in_process(&session, LARGE)));
    });
    drop(session);
    runtime.block_on(db.shutdown());
    drop(db);

    // The server, on free loopback ports.
    let flags = contextdb_server::Flags {
        data_dir: Some(dir.path().to_path_buf()),
        flight_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let config = contextdb_server::ServerConfig::resolve(&flags, &|_| None).expect("config");
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = runtime.spawn(contextdb_server::serve(
        config,
        |db| db,
        move |bound| bound_tx.send(bound).expect("report the address"),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let bound = bound_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the server started");
    let mut client = runtime.block_on(async {
        let channel = Channel::from_shared(format!("http://{}", bound.flight))
            .expect("a URL")
            .connect()
            .await
            .expect("connect");
        FlightSqlServiceClient::new(channel)
    });
    // Same answers first.
    let streamed = runtime.block_on(over_flight(&mut client, LARGE));
    assert_eq!(
        rows_and_bytes(&streamed).0,
        rows,
        "the same rows over Flight SQL"
    );
    assert_eq!(
        runtime.block_on(over_flight(&mut client, POINT))[0].num_rows(),
        1
    );
    let flight_one = median(c, "flight sql SELECT 1", || {
        std::hint::black_box(runtime.block_on(over_flight(&mut client, SELECT_ONE)));
    });
    let flight_point = median(c, "flight sql point query", || {
        std::hint::black_box(runtime.block_on(over_flight(&mut client, POINT)));
    });
    let flight_large = median_of(LARGE_RUNS, || {
        std::hint::black_box(runtime.block_on(over_flight(&mut client, LARGE)));
    });
    let _ = stop_tx.send(());
    runtime
        .block_on(served)
        .expect("the server task")
        .expect("the server stopped cleanly");

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "SELECT 1: flight sql median {flight_one:?}, in-process median {local_one:?}, ratio {:.1}x",
        ratio(flight_one, local_one)
    );
    println!(
        "point query: flight sql median {flight_point:?}, in-process median {local_point:?}, ratio {:.1}x",
        ratio(flight_point, local_point)
    );
    let mb = bytes as f64 / (1024.0 * 1024.0);
    for (name, took) in [("flight sql", flight_large), ("in-process", local_large)] {
        println!(
            "large result ({rows} rows, {mb:.0} MiB in Arrow): {name} median {took:?}, \
             {:.0} rows/s, {:.0} MiB/s",
            rows as f64 / took.as_secs_f64(),
            mb / took.as_secs_f64()
        );
    }
    println!(
        "large result: flight sql / in-process ratio {:.1}x",
        ratio(flight_large, local_large)
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(4));
    targets = server
}
criterion_main!(benches);
