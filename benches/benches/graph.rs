//! 1-hop and 2-hop reverse-dependency counts on the Debian graph through ContextQL, against a
//! plain traversal of the same Csr adjacency in the same run. Prints the load time and the
//! ratio of medians (ContextQL / baseline), since absolute times on a shared machine are noisy.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use common::median;
use contextdb_benches::{Baseline, ONE_HOP, TWO_HOP, count, load};
use contextdb_engine::DbConfig;
use criterion::{Criterion, criterion_group, criterion_main};

/// The start of the 1-hop and 2-hop patterns on its own.
const START_NODE: &str = "MATCH (b:Package {name: 'libc6'}) RETURN count(*)";

fn graph(c: &mut Criterion) {
    let runtime = contextdb_benches::runtime();
    let (db, load_time) = runtime.block_on(load(DbConfig::memory()));
    println!(
        "load: whole Debian graph in {:.1} s",
        load_time.as_secs_f64()
    );
    let baseline = Baseline::build();
    // Same answers first; a fast wrong answer is no result.
    assert_eq!(runtime.block_on(count(&db, ONE_HOP)), baseline.one_hop());
    assert_eq!(runtime.block_on(count(&db, TWO_HOP)), baseline.two_hop());

    let mut group_ratio = Vec::new();
    for (name, query, base) in [
        (
            "1-hop",
            ONE_HOP,
            Box::new(|| baseline.one_hop()) as Box<dyn Fn() -> i64>,
        ),
        ("2-hop", TWO_HOP, Box::new(|| baseline.two_hop())),
    ] {
        let q = median(c, &format!("contextql {name}"), || {
            std::hint::black_box(runtime.block_on(count(&db, query)));
        });
        let b = median(c, &format!("csr baseline {name}"), || {
            std::hint::black_box(base());
        });
        group_ratio.push((name, q, b));
    }
    // Where the time of a 1-hop goes: the cost of any statement, and finding the start node.
    let floor = median(c, "contextql statement floor", || {
        std::hint::black_box(runtime.block_on(count(&db, "RETURN 1")));
    });
    let lookup = median(c, "contextql start node", || {
        std::hint::black_box(runtime.block_on(count(&db, START_NODE)));
    });
    // The same statements planned every time: each text differs (`+ 0 * n` on the count),
    // and they cycle through more texts than the plan cache holds, so it never hits.
    let mut n = 0usize;
    let mut fresh = |query: &str| {
        n = (n + 1) % (2 * contextdb_engine::PLAN_CACHE_ENTRIES);
        format!("{query} + 0 * {n}")
    };
    let floor_planned = median(c, "contextql statement floor, planned", || {
        let text = fresh("RETURN 1");
        std::hint::black_box(runtime.block_on(count(&db, &text)));
    });
    let one_hop_planned = median(c, "contextql 1-hop, planned", || {
        let text = fresh(ONE_HOP);
        std::hint::black_box(runtime.block_on(count(&db, &text)));
    });
    println!("statement floor (RETURN 1): median {floor:?}; start node alone: median {lookup:?}");
    println!(
        "planned every time (no plan cache): RETURN 1 median {floor_planned:?}, 1-hop median {one_hop_planned:?}"
    );
    for (name, q, b) in group_ratio {
        println!(
            "{name}: contextql median {:?}, csr baseline median {:?}, ratio {:.1}x",
            q,
            b,
            q.as_secs_f64() / b.as_secs_f64().max(1e-9)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = graph
}
criterion_main!(benches);
