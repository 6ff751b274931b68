//! Paths on the Debian graph (issue 10): distinct reverse dependents within 1, 2 and 3 hops of
//! libc6 and of a package with few dependents, shortest path lengths between 50 connected pairs
//! and between two named packages, and `RETURN 1`, through ContextQL against a plain traversal
//! of the same Csr adjacency in the same run. Answers are checked equal before timing; the
//! ratios of medians (ContextQL / baseline) are printed, since absolute times on a shared
//! machine are noisy.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use common::median;
use contextdb_benches::{Baseline, count, load};
use contextdb_engine::DbConfig;
use contextdb_graph::Adjacency;
use criterion::{Criterion, criterion_group, criterion_main};

/// The baseline's breadth-first search: how many nodes have a walk of 1..=hops edges to
/// `target` (its reverse dependents), each node visited once, over the Csr's distinct
/// neighbours (as the walk reads them).
fn reverse_reach(adjacency: &Adjacency, target: u32, hops: usize, seen: &mut [bool]) -> i64 {
    seen.iter_mut().for_each(|s| *s = false);
    let mut count = 0i64;
    let mut frontier = vec![target];
    let mut start_counted = false;
    seen[target as usize] = true;
    for _ in 0..hops {
        let mut next = Vec::new();
        for &n in &frontier {
            for &a in adjacency.neighbours_in(n) {
                if a == target && !start_counted {
                    start_counted = true;
                    count += 1;
                }
                if !seen[a as usize] {
                    seen[a as usize] = true;
                    count += 1;
                    next.push(a);
                }
            }
        }
        frontier = next;
    }
    count
}

/// The baseline's shortest path length: a breadth-first search from `from` until `to`.
fn shortest(adjacency: &Adjacency, from: u32, to: u32, depth: &mut [u32]) -> Option<u32> {
    depth.iter_mut().for_each(|d| *d = u32::MAX);
    depth[from as usize] = 0;
    let mut frontier = vec![from];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for &n in &frontier {
            let d = depth[n as usize];
            let mut found = false;
            for &m in adjacency.neighbours_out(n) {
                if depth[m as usize] == u32::MAX {
                    depth[m as usize] = d + 1;
                    found |= m == to;
                    next.push(m);
                }
            }
            if found {
                return Some(d + 1);
            }
        }
        frontier = next;
    }
    None
}

fn paths(c: &mut Criterion) {
    let runtime = contextdb_benches::runtime();
    let (db, load_time) = runtime.block_on(load(DbConfig::memory()));
    println!(
        "load: whole Debian graph in {:.1} s",
        load_time.as_secs_f64()
    );
    let base = Baseline::build();
    let nodes = base.ids.len();
    let a = &base.adjacency;
    let mut seen = vec![false; nodes];
    let mut depth = vec![0u32; nodes];

    // A package with few dependents (3 to 6) whose dependents have dependents: the smallest
    // id among them.
    let few = (0..nodes as u32)
        .filter(|&n| (3..=6).contains(&a.in_degree(n)))
        .find(|&n| reverse_reach(a, n, 3, &mut seen) > a.in_degree(n) as i64)
        .expect("a package with few dependents");
    let targets = [
        ("libc6", base.libc6),
        (base.names[few as usize].as_str(), few),
    ];

    // 50 connected pairs, from a fixed pseudo-random sequence: a package with dependencies and
    // the farthest package it reaches (the smallest id among equals).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut pairs: Vec<(u32, u32, u32)> = Vec::new();
    while pairs.len() < 50 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let from = (state % nodes as u64) as u32;
        if a.out_degree(from) == 0 {
            continue;
        }
        shortest(a, from, u32::MAX - 1, &mut depth);
        let far = (0..nodes as u32)
            .filter(|&n| depth[n as usize] != u32::MAX && n != from)
            .max_by_key(|&n| (depth[n as usize], std::cmp::Reverse(n)));
        if let Some(to) = far {
            pairs.push((from, to, depth[to as usize]));
        }
    }
    let vim = base.names.iter().position(|n| n == "vim").expect("vim") as u32;
    let shortest_text = |from: u32, to: u32| {
        format!(
            "MATCH p = shortestPath((a:Package {{id: {}}})-[:DEPENDS*]->(b:Package {{id: {}}})) \
             RETURN length(p)",
            base.ids[from as usize], base.ids[to as usize]
        )
    };
    let named = "MATCH p = shortestPath((a:Package {name: 'vim'})-[:DEPENDS*]->\
                 (b:Package {name: 'libc6'})) RETURN length(p)";

    // Same answers first; a fast wrong answer is no result.
    let reach_text = |name: &str, hops: usize| {
        format!(
            "MATCH (a:Package)-[:DEPENDS*1..{hops}]->(:Package {{name: '{name}'}}) \
             RETURN count(DISTINCT a)"
        )
    };
    for (name, target) in targets {
        for hops in 1..=3 {
            assert_eq!(
                runtime.block_on(count(&db, &reach_text(name, hops))),
                reverse_reach(a, target, hops, &mut seen),
                "{name}, {hops} hops"
            );
        }
    }
    for &(from, to, hops) in &pairs {
        assert_eq!(
            runtime.block_on(count(&db, &shortest_text(from, to))),
            hops as i64
        );
    }
    let vim_libc6 = shortest(a, vim, base.libc6, &mut depth).expect("vim reaches libc6");
    assert_eq!(runtime.block_on(count(&db, named)), vim_libc6 as i64);

    let mut results: Vec<(String, Duration, Duration)> = Vec::new();
    for (name, target) in targets {
        for hops in 1..=3 {
            let text = reach_text(name, hops);
            let q = median(c, &format!("contextql {name} {hops}-hop distinct"), || {
                std::hint::black_box(runtime.block_on(count(&db, &text)));
            });
            let b = median(c, &format!("csr bfs {name} {hops}-hop distinct"), || {
                std::hint::black_box(reverse_reach(a, target, hops, &mut seen));
            });
            results.push((
                format!("{name} {hops}-hop distinct reverse dependents"),
                q,
                b,
            ));
        }
    }
    let texts: Vec<String> = pairs.iter().map(|&(f, t, _)| shortest_text(f, t)).collect();
    let q = median(c, "contextql shortest path, 50 pairs", || {
        for text in &texts {
            std::hint::black_box(runtime.block_on(count(&db, text)));
        }
    });
    let b = median(c, "csr bfs shortest path, 50 pairs", || {
        for &(from, to, _) in &pairs {
            std::hint::black_box(shortest(a, from, to, &mut depth));
        }
    });
    results.push((
        "shortest path length, per pair of 50".into(),
        q / 50,
        b / 50,
    ));
    let q = median(c, "contextql shortest path vim to libc6", || {
        std::hint::black_box(runtime.block_on(count(&db, named)));
    });
    let b = median(c, "csr bfs shortest path vim to libc6", || {
        std::hint::black_box(shortest(a, vim, base.libc6, &mut depth));
    });
    results.push(("shortest path length vim to libc6".into(), q, b));
    let floor = median(c, "contextql RETURN 1", || {
        std::hint::black_box(runtime.block_on(count(&db, "RETURN 1")));
    });

    println!("statement floor (RETURN 1): median {floor:?}");
    for (name, q, b) in results {
        println!(
            "{name}: contextql median {q:?}, csr baseline median {b:?}, ratio {:.1}x",
            q.as_secs_f64() / b.as_secs_f64().max(1e-9)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3));
    targets = paths
}
criterion_main!(benches);
