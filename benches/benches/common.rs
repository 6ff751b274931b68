//! What the criterion benchmarks share.

use std::time::Duration;

use criterion::Criterion;

/// Runs `f` as the criterion benchmark `name` and returns the median time of one call.
pub fn median(c: &mut Criterion, name: &str, mut f: impl FnMut()) -> Duration {
    let mut samples = Vec::new();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                f();
            }
            let elapsed = start.elapsed();
            samples.push(elapsed / iters.max(1) as u32);
            elapsed
        })
    });
    samples.sort();
    // No samples: criterion filtered this benchmark out (a `--profile-time` run of another).
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}
