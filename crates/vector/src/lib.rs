//! Vectors: the metrics ContextDB ranks by, and the scalar functions that expose them to SQL
//! and ContextQL (`cosine_similarity`, `l2_distance`, `inner_product`).
//!
//! A vector is a list of numbers: a `VECTOR(d)` property (Arrow `FixedSizeList<Float32>`), a
//! list column of any numeric type, or a literal such as `[0.1, 0.2]`. Arithmetic is in f64.

mod functions;
pub mod index;

pub use index::{HnswIndex, INDEX_OPTIONS, IndexParams, Quantization};

pub use functions::{
    FUNCTIONS, cosine_similarity_udf, inner_product_udf, l2_distance_udf, score_and_distance, udfs,
};

/// How two vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// The cosine of the angle between them: 1 for the same direction.
    Cosine,
    /// The Euclidean distance between them.
    L2,
    /// Their inner (dot) product.
    Dot,
}

impl Metric {
    /// The metric named `name` (`cosine`, `l2`, `dot`; case-insensitive).
    pub fn parse(name: &str) -> Option<Metric> {
        match name.to_ascii_lowercase().as_str() {
            "cosine" => Some(Metric::Cosine),
            "l2" => Some(Metric::L2),
            "dot" => Some(Metric::Dot),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        }
    }
}

/// `(similarity_score, distance)` of `target` to `query` under `metric`, as
/// [`score_and_distance`] computes them in a plan (None: a cosine of a zero vector).
pub fn score<A, B>(metric: Metric, target: &[A], query: &[B]) -> Option<(f64, f64)>
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    match metric {
        Metric::Cosine => cosine_similarity(target, query).map(|s| (s, 1.0 - s)),
        Metric::L2 => {
            let d = l2_distance(target, query);
            Some((1.0 / (1.0 + d), d))
        }
        Metric::Dot => {
            let s = inner_product(target, query);
            Some((s, -s))
        }
    }
}

/// Asks the processor to start loading `v` into its cache: a hint that never faults and
/// changes no result. Scoring candidates scattered over a large table waits on memory for each
/// vector (a 384-d row is 24 cache lines); hinting the next few rows while one is scored
/// overlaps those waits.
#[inline]
pub fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        let base = v.as_ptr().cast::<i8>();
        for at in (0..std::mem::size_of_val(v)).step_by(LINE) {
            // SAFETY: `base + at` lies inside `v`, and a prefetch reads nothing the program
            // sees.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(at)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// Partial sums kept side by side: no add waits for the one before it (a single running sum
/// makes every add wait for the previous: about 4x slower at 384 dimensions), and the compiler
/// keeps the lanes in vector registers. Each lane adds in a fixed order, so a result does not
/// depend on the instruction set the code runs on.
const LANES: usize = 8;

/// The `N` sums over the elements of `a` and `b` of `term(a[i], b[i])`, in f64: with AVX
/// registers (four f64 lanes) where the processor has them, else SSE2's two; the same result.
#[inline(always)]
fn sums<A, B, const N: usize>(a: &[A], b: &[B], term: impl Fn(f64, f64) -> [f64; N]) -> [f64; N]
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    #[cfg(target_arch = "x86_64")]
    {
        /// `lane_sums` compiled for AVX.
        #[target_feature(enable = "avx")]
        fn with_avx<A, B, const N: usize>(
            a: &[A],
            b: &[B],
            term: impl Fn(f64, f64) -> [f64; N],
        ) -> [f64; N]
        where
            A: Copy + Into<f64>,
            B: Copy + Into<f64>,
        {
            lane_sums(a, b, term)
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the processor has AVX (checked just above).
            return unsafe { with_avx(a, b, term) };
        }
    }
    lane_sums(a, b, term)
}

#[inline(always)]
fn lane_sums<A, B, const N: usize>(
    a: &[A],
    b: &[B],
    term: impl Fn(f64, f64) -> [f64; N],
) -> [f64; N]
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [[0.0f64; LANES]; N];
    let (xs, ys) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (x_tail, y_tail) = (xs.remainder(), ys.remainder());
    for (x, y) in xs.zip(ys) {
        for lane in 0..LANES {
            let t = term(x[lane].into(), y[lane].into());
            for n in 0..N {
                acc[n][lane] += t[n];
            }
        }
    }
    for (lane, (x, y)) in x_tail.iter().zip(y_tail).enumerate() {
        let t = term((*x).into(), (*y).into());
        for n in 0..N {
            acc[n][lane] += t[n];
        }
    }
    acc.map(|l| ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])))
}

/// Scores many stored vectors against one query: [`score`] with the query's norm computed
/// once (the same sums in the same order, so the same result to the last bit).
#[derive(Debug, Clone)]
pub struct Scorer {
    metric: Metric,
    query: Vec<f64>,
    /// The square root of the query's sum of squares (cosine only).
    query_norm: f64,
}

impl Scorer {
    pub fn new(metric: Metric, query: Vec<f64>) -> Scorer {
        let [squares] = sums(&query, &query, |_, y| [y * y]);
        Scorer {
            metric,
            query,
            query_norm: squares.sqrt(),
        }
    }

    pub fn query(&self) -> &[f64] {
        &self.query
    }

    /// `(similarity_score, distance)` of `target`, as [`score`] gives them.
    pub fn score(&self, target: &[f32]) -> Option<(f64, f64)> {
        match self.metric {
            Metric::Cosine => {
                let [dot, aa] = sums(target, &self.query, |x, y| [x * y, x * x]);
                let norms = aa.sqrt() * self.query_norm;
                (norms > 0.0).then(|| {
                    let s = (dot / norms).clamp(-1.0, 1.0);
                    (s, 1.0 - s)
                })
            }
            _ => score(self.metric, target, &self.query),
        }
    }
}

/// The cosine similarity of two vectors of one length; None when either has no direction
/// (a zero norm), where the cosine is undefined. Computed in f64 whatever the element types.
pub fn cosine_similarity<A, B>(a: &[A], b: &[B]) -> Option<f64>
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    let [dot, aa, bb] = sums(a, b, |x, y| [x * y, x * x, y * y]);
    let norms = aa.sqrt() * bb.sqrt();
    (norms > 0.0).then(|| (dot / norms).clamp(-1.0, 1.0))
}

/// The Euclidean distance between two vectors of one length.
pub fn l2_distance<A, B>(a: &[A], b: &[B]) -> f64
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    let [squares] = sums(a, b, |x, y| [(x - y) * (x - y)]);
    squares.sqrt()
}

/// The inner (dot) product of two vectors of one length.
pub fn inner_product<A, B>(a: &[A], b: &[B]) -> f64
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    let [dot] = sums(a, b, |x, y| [x * y]);
    dot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_agree_with_hand_computed_values() {
        let (a, b) = ([1.0f64, 0.0, 0.0], [0.0f64, 2.0, 0.0]);
        assert_eq!(cosine_similarity(&a, &b), Some(0.0));
        assert_eq!(cosine_similarity(&a, &[3.0f32, 0.0, 0.0]), Some(1.0));
        assert_eq!(cosine_similarity(&a, &[-1.0f64, 0.0, 0.0]), Some(-1.0));
        assert_eq!(cosine_similarity(&a, &[0.0f64, 0.0, 0.0]), None);
        assert_eq!(l2_distance(&[0.0f32, 0.0], &[3.0f64, 4.0]), 5.0);
        assert_eq!(
            inner_product(&[1.0f64, 2.0, 3.0], &[4.0f32, 5.0, 6.0]),
            32.0
        );
        assert_eq!(Metric::parse("COSINE"), Some(Metric::Cosine));
        assert_eq!(cosine_similarity::<f32, f64>(&[], &[]), None);
        assert_eq!(inner_product::<f32, f64>(&[], &[]), 0.0);
        assert_eq!(Metric::parse("manhattan"), None);
    }

    #[test]
    fn a_scorer_gives_the_scores_of_score_to_the_last_bit() {
        let query: Vec<f64> = (0..384).map(|i| (i as f64 * 0.11).sin()).collect();
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let scorer = Scorer::new(metric, query.clone());
            for seed in 0..20 {
                let t: Vec<f32> = (0..384).map(|i| ((i * seed) as f32 * 0.07).cos()).collect();
                assert_eq!(scorer.score(&t), score(metric, &t, &query), "{metric:?}");
            }
            assert_eq!(
                scorer.score(&[0.0; 384]),
                score(metric, &[0.0f32; 384], &query)
            );
        }
    }

    #[test]
    fn lane_sums_agree_with_one_running_sum_at_every_length() {
        // Lengths below, at and past the lanes, with a tail of every size.
        for len in 0..=3 * LANES + 1 {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37 + 0.1).sin()).collect();
            let b: Vec<f64> = (0..len).map(|i| (i as f64 * 1.3).cos() - 0.2).collect();
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * y).sum();
            let l2: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (f64::from(*x) - y).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!((inner_product(&a, &b) - dot).abs() < 1e-12, "{len}");
            assert!((l2_distance(&a, &b) - l2).abs() < 1e-12, "{len}");
            if len > 0 {
                let na = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
                let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
                let cos = cosine_similarity(&a, &b).expect("non-zero vectors");
                assert!((cos - dot / (na * nb)).abs() < 1e-12, "{len}");
            }
        }
    }
}
