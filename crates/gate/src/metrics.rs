//! Classification metrics and latency statistics, computed exactly as the reference script
//! and scikit-learn do, so the numbers can be compared across tools.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Precision, recall, F1 and support of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Of the rows predicted as this class, the share that are.
    pub precision: f64,
    /// Of the rows of this class, the share predicted as it.
    pub recall: f64,
    /// The harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Rows of this class.
    pub support: usize,
}

/// Everything computed from true and predicted labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Share of rows predicted right.
    pub accuracy: f64,
    /// Per class, for every label that occurs in the truth or the predictions.
    pub per_class: BTreeMap<String, ClassMetrics>,
    /// `confusion[true][predicted]` = rows.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
}

/// Compares `truth` with `predicted` (same length, non-empty).
pub fn classify(truth: &[String], predicted: &[String]) -> Classification {
    assert_eq!(truth.len(), predicted.len(), "one prediction per row");
    let labels: std::collections::BTreeSet<&String> = truth.iter().chain(predicted).collect();
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> =
        labels.iter().map(|t| ((*t).clone(), labels.iter().map(|p| ((*p).clone(), 0)).collect())).collect();
    for (t, p) in truth.iter().zip(predicted) {
        *confusion.get_mut(t).and_then(|row| row.get_mut(p)).expect("both labels are in the set") += 1;
    }
    let correct = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
    let per_class = labels.iter().map(|l| ((*l).clone(), class_metrics(l, &confusion))).collect();
    Classification { accuracy: ratio(correct, truth.len()), per_class, confusion }
}

fn class_metrics(label: &str, confusion: &BTreeMap<String, BTreeMap<String, usize>>) -> ClassMetrics {
    let tp = confusion[label][label];
    let support: usize = confusion[label].values().sum();
    let predicted: usize = confusion.values().map(|row| row[label]).sum();
    let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    ClassMetrics { precision, recall, f1, support }
}

/// `n / d`, or 0 when `d` is 0 (scikit-learn's `zero_division=0`).
fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// Latency statistics of single-row predictions, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Timed predictions (after warm-up).
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// How the samples spread, for pictures (absent in reports from before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
}

/// Samples in bins whose widths grow geometrically from the fastest sample to the slowest, so
/// a tail a hundred times the median is drawn as clearly as the bulk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bin edges, ascending: bin `i` holds samples in `[edges[i], edges[i + 1])` (the last
    /// includes its upper edge).
    pub edges_ms: Vec<f64>,
    /// Samples per bin (one fewer than edges).
    pub counts: Vec<u64>,
}

/// Bins in a latency histogram.
pub const HISTOGRAM_BINS: usize = 40;

impl Histogram {
    /// The histogram of sorted, non-empty samples.
    fn of(sorted: &[f64]) -> Histogram {
        let from = sorted[0].max(1e-6);
        let to = sorted[sorted.len() - 1].max(from * 1.01);
        let ratio = (to / from).powf(1.0 / HISTOGRAM_BINS as f64);
        let mut edges_ms: Vec<f64> = (0..=HISTOGRAM_BINS).map(|i| from * ratio.powi(i as i32)).collect();
        edges_ms[0] = sorted[0].min(from);
        edges_ms[HISTOGRAM_BINS] = to;
        let mut counts = vec![0u64; HISTOGRAM_BINS];
        for &x in sorted {
            let i = edges_ms[1..].partition_point(|&edge| edge <= x).min(HISTOGRAM_BINS - 1);
            counts[i] += 1;
        }
        Histogram { edges_ms, counts }
    }
}

impl Latency {
    /// Statistics of `samples_ms` (non-empty).
    pub fn of(samples_ms: &[f64]) -> Latency {
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        Latency {
            samples: sorted.len(),
            p50_ms: percentile(&sorted, 50.0),
            p95_ms: percentile(&sorted, 95.0),
            p99_ms: percentile(&sorted, 99.0),
            mean_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
            max_ms: *sorted.last().expect("non-empty"),
            histogram: Some(Histogram::of(&sorted)),
        }
    }
}

/// The `q`th percentile of sorted values, interpolating linearly between the closest ranks
/// (numpy's default), as the reference script computes it.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn metrics_match_a_hand_computation() {
        // truth:     a a a b b c
        // predicted: a a b b a a
        let c = classify(&s(&["a", "a", "a", "b", "b", "c"]), &s(&["a", "a", "b", "b", "a", "a"]));
        assert!((c.accuracy - 3.0 / 6.0).abs() < 1e-12);
        let a = &c.per_class["a"];
        assert_eq!((a.support, a.precision, a.recall), (3, 0.5, 2.0 / 3.0));
        assert!((a.f1 - 2.0 * 0.5 * (2.0 / 3.0) / (0.5 + 2.0 / 3.0)).abs() < 1e-12);
        let cc = &c.per_class["c"];
        assert_eq!((cc.support, cc.precision, cc.recall, cc.f1), (1, 0.0, 0.0, 0.0));
        assert_eq!(c.confusion["b"]["a"], 1);
        assert_eq!(c.confusion["c"]["a"], 1);
        assert_eq!(c.confusion["a"]["c"], 0);
    }

    #[test]
    fn a_label_only_predicted_still_gets_a_row() {
        let c = classify(&s(&["a", "a"]), &s(&["a", "z"]));
        assert_eq!(c.per_class["z"].support, 0);
        assert_eq!(c.per_class["z"].precision, 0.0);
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        // numpy.percentile(range(1, 11), [50, 95, 99]) == [5.5, 9.55, 9.91]
        assert!((percentile(&v, 50.0) - 5.5).abs() < 1e-12);
        assert!((percentile(&v, 95.0) - 9.55).abs() < 1e-12);
        assert!((percentile(&v, 99.0) - 9.91).abs() < 1e-12);
        let l = Latency::of(&[3.0, 1.0, 2.0]);
        assert_eq!((l.samples, l.p50_ms, l.mean_ms, l.max_ms), (3, 2.0, 2.0, 3.0));
    }

    #[test]
    fn the_histogram_counts_every_sample_once_and_spans_them_all() {
        let mut v: Vec<f64> = (0..1000).map(|i| 0.05 + f64::from(i % 100) / 1000.0).collect();
        v.push(5.0);
        let h = Latency::of(&v).histogram.expect("a histogram");
        assert_eq!(h.counts.iter().sum::<u64>(), 1001);
        assert_eq!((h.edges_ms.len(), h.counts.len()), (HISTOGRAM_BINS + 1, HISTOGRAM_BINS));
        assert_eq!((h.edges_ms[0], h.edges_ms[HISTOGRAM_BINS]), (0.05, 5.0));
        assert!(h.edges_ms.windows(2).all(|w| w[0] < w[1]), "{:?}", h.edges_ms);
        assert_eq!(h.counts[HISTOGRAM_BINS - 1], 1, "the slowest sample is in the last bin");
        let ratio = h.edges_ms[2] / h.edges_ms[1];
        assert!((h.edges_ms[31] / h.edges_ms[30] - ratio).abs() < 1e-9, "geometric bins");
        let same = Latency::of(&[2.0; 10]).histogram.expect("a histogram");
        assert_eq!(same.counts.iter().sum::<u64>(), 10);
        let zero = Latency::of(&[0.0, 0.0, 1.0]).histogram.expect("a histogram");
        assert_eq!(zero.counts.iter().sum::<u64>(), 3);
    }
}
