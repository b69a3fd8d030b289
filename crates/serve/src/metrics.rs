//! The server's Prometheus metrics, kept in memory and written in the text exposition format by
//! hand: four metrics do not justify a metrics library.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Upper bounds of the request-duration buckets, in seconds: from half a millisecond (a cached
/// single-text prediction) to five seconds (something is badly wrong).
const BUCKETS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Counters and the histogram, behind one lock: a few increments per request do not contend.
#[derive(Default)]
pub(crate) struct Metrics {
    counts: Mutex<Counts>,
    in_flight: AtomicI64,
}

#[derive(Default)]
struct Counts {
    requests: BTreeMap<(String, u16), u64>,
    buckets: [u64; BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
    predictions: BTreeMap<String, u64>,
}

/// Counts a request as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The model identity for `slipway_model_info`.
pub(crate) struct ModelInfo<'a> {
    pub(crate) version: &'a str,
    pub(crate) digest: &'a str,
}

impl Metrics {
    /// Marks a request as started.
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Records an answered request.
    pub(crate) fn observe(&self, path: &str, status: u16, elapsed: Duration) {
        let mut c = self.lock();
        *c.requests.entry((path.to_string(), status)).or_default() += 1;
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            c.buckets[i] += 1;
        }
        c.duration_sum += secs;
        c.duration_count += 1;
    }

    /// Records one predicted label per row.
    pub(crate) fn predicted<'a>(&self, labels: impl IntoIterator<Item = &'a String>) {
        let mut c = self.lock();
        for label in labels {
            *c.predictions.entry(label.clone()).or_default() += 1;
        }
    }

    /// The text exposition of every metric.
    pub(crate) fn render(&self, model: Option<ModelInfo<'_>>) -> String {
        let c = self.lock();
        let mut out = String::new();
        header(&mut out, "slipway_requests_total", "counter", "HTTP requests answered, by route and status.");
        for ((path, status), n) in &c.requests {
            let _ = writeln!(out, "slipway_requests_total{{path=\"{}\",status=\"{status}\"}} {n}", escape(path));
        }
        render_histogram(&mut out, &c);
        header(&mut out, "slipway_predictions_total", "counter", "Rows predicted, by predicted label.");
        for (label, n) in &c.predictions {
            let _ = writeln!(out, "slipway_predictions_total{{label=\"{}\"}} {n}", escape(label));
        }
        header(&mut out, "slipway_model_info", "gauge", "The model being served (absent until it is loaded).");
        if let Some(m) = model {
            let (version, digest) = (escape(m.version), escape(m.digest));
            let _ = writeln!(out, "slipway_model_info{{version=\"{version}\",digest=\"{digest}\"}} 1");
        }
        header(&mut out, "slipway_requests_in_flight", "gauge", "Requests being answered now.");
        let _ = writeln!(out, "slipway_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn render_histogram(out: &mut String, c: &Counts) {
    let name = "slipway_request_duration_seconds";
    header(out, name, "histogram", "Time from a request's headers to its response, in seconds.");
    let mut cumulative = 0;
    for (le, n) in BUCKETS.iter().zip(c.buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", c.duration_count);
    let _ = writeln!(out, "{name}_sum {}", c.duration_sum);
    let _ = writeln!(out, "{name}_count {}", c.duration_count);
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the exposition format requires: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_metric() {
        let m = Metrics::default();
        m.observe("/predict", 200, Duration::from_micros(300));
        m.observe("/predict", 200, Duration::from_millis(3));
        m.observe("/predict", 400, Duration::from_secs(9));
        m.predicted(&["fresh".to_string(), "a \"quoted\"\\label\n".to_string(), "fresh".to_string()]);
        let _busy = m.start();
        let text = m.render(Some(ModelInfo { version: "v1", digest: "blake3:abc" }));
        // The sum's last digits depend on float rounding; everything else is exact.
        let text: String = text.lines().filter(|l| !l.contains("_sum ")).map(|l| format!("{l}\n")).collect();
        insta::assert_snapshot!(text);
    }

    #[test]
    fn model_info_is_absent_until_loaded() {
        let text = Metrics::default().render(None);
        assert!(text.contains("# TYPE slipway_model_info gauge"), "{text}");
        assert!(!text.contains("slipway_model_info{"), "{text}");
        assert!(text.contains("slipway_requests_in_flight 0"), "{text}");
    }
}
