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

/// The cosine similarity of two vectors of one length; None when either has no direction
/// (a zero norm), where the cosine is undefined. Computed in f64 whatever the element types.
pub fn cosine_similarity<A, B>(a: &[A], b: &[B]) -> Option<f64>
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    debug_assert_eq!(a.len(), b.len());
    let (mut dot, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (x, y): (f64, f64) = ((*x).into(), (*y).into());
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    let norms = aa.sqrt() * bb.sqrt();
    (norms > 0.0).then(|| (dot / norms).clamp(-1.0, 1.0))
}

/// The Euclidean distance between two vectors of one length.
pub fn l2_distance<A, B>(a: &[A], b: &[B]) -> f64
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    debug_assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d: f64 = (*x).into() - (*y).into();
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// The inner (dot) product of two vectors of one length.
pub fn inner_product<A, B>(a: &[A], b: &[B]) -> f64
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    debug_assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x).into() * (*y).into())
        .sum()
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
        assert_eq!(Metric::parse("manhattan"), None);
    }
}
