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
}
