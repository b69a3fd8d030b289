//! What the router saw of each backend: requests, errors (a 5xx answer or no answer) and a
//! latency histogram, as counters that only grow. `GET /metrics` on the admin port gives them
//! in Prometheus' text format; a canary analysis takes two readings and compares the
//! difference of the candidate with that of the stable backend over the same time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: 0.1 ms to 60 s, each 1.25 times the last
/// (so a percentile read from them is within 25 %), then `+Inf`.
pub fn bounds() -> &'static [f64] {
    static BOUNDS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        let mut out = vec![0.000_1];
        while *out.last().expect("non-empty") < 60.0 {
            let next = out.last().expect("non-empty") * 1.25;
            out.push(next);
        }
        out
    })
}

/// The most backends the router keeps figures for; the oldest goes first past this.
const MAX_BACKENDS: usize = 64;

/// One backend's counters.
#[derive(Default)]
pub struct Backend {
    requests: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
    /// One per bound, and one for `+Inf`.
    buckets: Vec<AtomicU64>,
}

impl Backend {
    fn new() -> Backend {
        Backend { buckets: (0..=bounds().len()).map(|_| AtomicU64::new(0)).collect(), ..Backend::default() }
    }

    /// Counts one request that took `took` and ended as `error` or not.
    pub fn observe(&self, took: Duration, error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let i = bounds().partition_point(|b| *b < seconds);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// A backend's counters, the role it last had, and when it was last asked for (to let the
/// oldest go).
type Entry = (Arc<Backend>, &'static str, u64);

/// How a shadow's predictions compared with the live release's on the same requests.
#[derive(Default)]
pub struct Agreement {
    rows: AtomicU64,
    agreed: AtomicU64,
    /// The sum over rows of the mean absolute difference of class probabilities, in millionths.
    diff_micros: AtomicU64,
    unanswered: AtomicU64,
}

impl Agreement {
    /// Adds one request's comparison: `None` when the shadow gave no answer to compare.
    pub fn add(&self, compared: Option<(u64, u64, f64)>) {
        let Some((rows, agreed, diff)) = compared else {
            self.unanswered.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.agreed.fetch_add(agreed, Ordering::Relaxed);
        self.diff_micros.fetch_add((diff.clamp(0.0, 1e12) * 1e6) as u64, Ordering::Relaxed);
    }
}

/// Every backend's counters, with the role each last had.
#[derive(Default)]
pub struct Stats {
    backends: Mutex<BTreeMap<String, Entry>>,
    agreement: Mutex<BTreeMap<String, Arc<Agreement>>>,
    order: AtomicU64,
}

impl Stats {
    /// The counters of `backend`, which now serves as `role` (`stable` or `canary`).
    pub fn of(&self, backend: &str, role: &'static str) -> Arc<Backend> {
        let mut all = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let order = self.order.fetch_add(1, Ordering::Relaxed);
        if !all.contains_key(backend) && all.len() >= MAX_BACKENDS {
            let oldest = all.iter().min_by_key(|(_, (_, _, o))| *o).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                all.remove(&oldest);
            }
        }
        let entry = all.entry(backend.to_string()).or_insert_with(|| (Arc::new(Backend::new()), role, order));
        entry.1 = role;
        entry.2 = order;
        entry.0.clone()
    }

    /// The agreement counters of the shadow `backend`.
    pub fn agreement(&self, backend: &str) -> Arc<Agreement> {
        let mut all = self.agreement.lock().unwrap_or_else(|e| e.into_inner());
        if !all.contains_key(backend) && all.len() >= MAX_BACKENDS {
            let first = all.keys().next().cloned();
            if let Some(first) = first {
                all.remove(&first);
            }
        }
        all.entry(backend.to_string()).or_default().clone()
    }

    /// The Prometheus text exposition of every backend.
    pub fn render(&self) -> String {
        let mut s = String::new();
        {
            let agreement = self.agreement.lock().unwrap_or_else(|e| e.into_inner());
            let metrics = [
                ("slipway_router_shadow_rows_total", "Rows a shadow answered that were compared with the live answer."),
                ("slipway_router_shadow_agreed_total", "Of them, rows whose label was the live one."),
                (
                    "slipway_router_shadow_probability_diff_sum",
                    "Sum over rows of the mean absolute difference of class probabilities.",
                ),
                (
                    "slipway_router_shadow_unanswered_total",
                    "Mirrored requests the shadow gave no comparable answer to.",
                ),
            ];
            for (k, (name, help)) in metrics.iter().enumerate() {
                let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
                for (backend, a) in agreement.iter() {
                    let value = match k {
                        0 => a.rows.load(Ordering::Relaxed).to_string(),
                        1 => a.agreed.load(Ordering::Relaxed).to_string(),
                        2 => format!("{:.6}", a.diff_micros.load(Ordering::Relaxed) as f64 / 1e6),
                        _ => a.unanswered.load(Ordering::Relaxed).to_string(),
                    };
                    let _ = writeln!(s, "{name}{{backend=\"{backend}\"}} {value}");
                }
            }
        }
        let all = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        s.push_str("# HELP slipway_router_requests_total Requests forwarded to a backend.\n");
        s.push_str("# TYPE slipway_router_requests_total counter\n");
        for (name, (b, role, _)) in all.iter() {
            let _ = writeln!(
                s,
                "slipway_router_requests_total{{backend=\"{name}\",role=\"{role}\"}} {}",
                b.requests.load(Ordering::Relaxed)
            );
        }
        s.push_str("# HELP slipway_router_errors_total Requests a backend answered with a 5xx, or not at all.\n");
        s.push_str("# TYPE slipway_router_errors_total counter\n");
        for (name, (b, role, _)) in all.iter() {
            let _ = writeln!(
                s,
                "slipway_router_errors_total{{backend=\"{name}\",role=\"{role}\"}} {}",
                b.errors.load(Ordering::Relaxed)
            );
        }
        s.push_str(
            "# HELP slipway_router_request_duration_seconds Time from forwarding a request to its whole answer.\n",
        );
        s.push_str("# TYPE slipway_router_request_duration_seconds histogram\n");
        for (name, (b, role, _)) in all.iter() {
            let mut cumulative = 0;
            for (i, bucket) in b.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = bounds().get(i).map_or("+Inf".to_string(), |b| format!("{b:.6}"));
                let _ = writeln!(
                    s,
                    "slipway_router_request_duration_seconds_bucket{{backend=\"{name}\",role=\"{role}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = b.micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                s,
                "slipway_router_request_duration_seconds_sum{{backend=\"{name}\",role=\"{role}\"}} {sum:.6}"
            );
            let _ = writeln!(
                s,
                "slipway_router_request_duration_seconds_count{{backend=\"{name}\",role=\"{role}\"}} {cumulative}"
            );
        }
        s
    }
}
