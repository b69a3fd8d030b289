//! Canary releases on the local and docker targets: the router sends a share of live traffic
//! to the candidate, step by step (Argo Rollouts' `setWeight` and `pause`), and each step ends
//! in an analysis of what the router saw of the candidate and of the stable release over the
//! same time: Successful, Failed or Inconclusive (too few requests for a verdict). A failed
//! step aborts: the weight goes back to 0 and the candidate is stopped; the ledger keeps every
//! step with the values observed and the thresholds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an environment takes a new release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Smoke tests on the candidate, then every request at once.
    #[default]
    BlueGreen,
    /// Smoke tests, then the canary steps, then every request.
    Canary,
    /// Smoke tests, then a copy of live predictions to the candidate, whose answers are
    /// compared with the live ones and dropped; then, if it agreed, every request at once.
    ShadowThenBlueGreen,
}

/// `[environments.NAME.shadow]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowConfig {
    /// Percent of live `POST /predict` requests mirrored, 1 to 100.
    pub share: u8,
    /// How long the shadow runs before it is judged.
    pub seconds: f64,
    /// The least share of compared rows whose label must be the live release's.
    pub min_agreement: f64,
    /// The most the class probabilities may differ from the live ones, on average per row.
    pub max_probability_diff: f64,
    /// Its errors, latency and the requests a verdict needs, as for a canary step.
    pub analysis: Thresholds,
}

impl Default for ShadowConfig {
    fn default() -> ShadowConfig {
        ShadowConfig {
            share: 100,
            seconds: 60.0,
            min_agreement: 0.9,
            max_probability_diff: 0.1,
            analysis: Thresholds::default(),
        }
    }
}

impl ShadowConfig {
    /// Checks the settings before any is used.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.share) {
            return Err(format!("share is 1 to 100 (got {})", self.share));
        }
        if !(self.seconds.is_finite() && (0.0..=MAX_PAUSE_SECONDS).contains(&self.seconds)) {
            return Err(format!("seconds is 0 to {MAX_PAUSE_SECONDS}"));
        }
        let share = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !share(self.min_agreement) || !share(self.max_probability_diff) {
            return Err("min_agreement and max_probability_diff are from 0 to 1".into());
        }
        CanaryConfig { steps: vec![Step::new(1, 0.0)], analysis: self.analysis.clone(), ..CanaryConfig::default() }
            .check()
    }
}

/// How a shadow's predictions compared with the live ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Rows compared.
    pub rows: u64,
    /// Of them, rows with the live label.
    pub agreed: u64,
    /// `agreed / rows`.
    pub share: f64,
    /// The mean over rows of the mean absolute difference of class probabilities.
    pub mean_probability_diff: f64,
    /// Mirrored requests the shadow gave no comparable answer to.
    pub unanswered: u64,
}

/// `[environments.NAME.canary]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryConfig {
    /// The steps, in order; after the last, the candidate gets every request.
    pub steps: Vec<Step>,
    /// What a step must show.
    pub analysis: Thresholds,
    /// How long a step with `approval = true` waits for it before the canary is aborted.
    pub approval_timeout_seconds: f64,
}

impl Default for CanaryConfig {
    fn default() -> CanaryConfig {
        CanaryConfig {
            steps: vec![Step::new(10, 60.0), Step::new(50, 60.0)],
            analysis: Thresholds::default(),
            approval_timeout_seconds: DEFAULT_APPROVAL_TIMEOUT_SECONDS,
        }
    }
}

/// One step: this share of requests for this long, then an analysis; with `approval`, then a
/// hold at this share until `cargo xtask promote ENV --approve` (Argo Rollouts' `pause: {}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Percent of requests, 1 to 99.
    pub weight: u8,
    /// How long the step lasts before it is judged.
    #[serde(default)]
    pub pause_seconds: f64,
    /// After a successful analysis, hold the weight (still judged every second) until approved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approval: bool,
}

impl Step {
    /// A step of `weight` percent for `pause_seconds`, with no approval.
    pub fn new(weight: u8, pause_seconds: f64) -> Step {
        Step { weight, pause_seconds, approval: false }
    }
}

/// What an inconclusive step does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Inconclusive {
    /// Wait as long again, up to three times, then fail.
    #[default]
    Wait,
    /// Go on to the next step.
    Pass,
    /// Abort.
    Fail,
}

/// The thresholds of a step's analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// The largest share of the candidate's requests that may fail (5xx or no answer).
    pub max_error_rate: f64,
    /// The slowest the candidate's p99 may be, in milliseconds.
    pub max_p99_latency_ms: f64,
    /// The most the candidate's p99 may be, as a multiple of stable's over the same time.
    pub max_p99_ratio: f64,
    /// How much slower than stable's p99 the candidate's may always be, in milliseconds: a few
    /// milliseconds of scheduling noise on a small share of traffic is not a regression.
    pub p99_slack_ms: f64,
    /// Below this many candidate requests in a step, there is no verdict.
    pub min_requests: u64,
    /// What a step without a verdict does.
    pub inconclusive: Inconclusive,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            max_error_rate: 0.01,
            max_p99_latency_ms: 500.0,
            max_p99_ratio: 2.0,
            p99_slack_ms: 10.0,
            min_requests: 20,
            inconclusive: Inconclusive::Wait,
        }
    }
}

/// The most steps, and the longest pause, a configuration may ask for.
pub const MAX_STEPS: usize = 20;
pub const MAX_PAUSE_SECONDS: f64 = 3600.0;
/// How long an approval step waits by default (a day), and at most (a week).
pub const DEFAULT_APPROVAL_TIMEOUT_SECONDS: f64 = 86_400.0;
pub const MAX_APPROVAL_TIMEOUT_SECONDS: f64 = 7.0 * 86_400.0;
/// How often an inconclusive step waits again under [`Inconclusive::Wait`].
pub const MAX_WAITS: u32 = 3;

impl CanaryConfig {
    /// Checks the settings before any is used.
    pub fn check(&self) -> Result<(), String> {
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(format!("1 to {MAX_STEPS} steps"));
        }
        let mut last = 0;
        for s in &self.steps {
            if !(1..=99).contains(&s.weight) || s.weight <= last {
                return Err(format!("step weights rise from 1 to 99 (got {} after {last})", s.weight));
            }
            if !(s.pause_seconds.is_finite() && (0.0..=MAX_PAUSE_SECONDS).contains(&s.pause_seconds)) {
                return Err(format!("a pause is 0 to {MAX_PAUSE_SECONDS} seconds (got {})", s.pause_seconds));
            }
            last = s.weight;
        }
        let t = self.approval_timeout_seconds;
        if !(t.is_finite() && (1.0..=MAX_APPROVAL_TIMEOUT_SECONDS).contains(&t)) {
            return Err(format!("approval_timeout_seconds is 1 to {MAX_APPROVAL_TIMEOUT_SECONDS}"));
        }
        let a = &self.analysis;
        let fine = |v: f64, lo: f64, hi: f64| v.is_finite() && (lo..=hi).contains(&v);
        if !fine(a.max_error_rate, 0.0, 1.0) {
            return Err("max_error_rate is a share from 0 to 1".into());
        }
        if !fine(a.max_p99_latency_ms, 0.0, 3_600_000.0) || !fine(a.max_p99_ratio, 1.0, 1000.0) {
            return Err("max_p99_latency_ms is 0 to 3,600,000 and max_p99_ratio 1 to 1000".into());
        }
        if !fine(a.p99_slack_ms, 0.0, 60_000.0) {
            return Err("p99_slack_ms is 0 to 60,000".into());
        }
        Ok(())
    }
}

/// What the router saw of one backend over a step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Requests answered or failed.
    pub requests: u64,
    /// Of them, 5xx answers and no answers.
    pub errors: u64,
    /// `errors / requests` (0 without requests).
    pub error_rate: f64,
    /// The 99th percentile latency, read from the router's histogram (within 25 %), if any
    /// request was seen.
    pub p99_ms: Option<f64>,
}

/// A step's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Successful,
    Failed,
    Inconclusive,
}

/// One step as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepAnalysis {
    /// `canary`; `approval` (a canary step held until approved); `shadow` (the candidate saw
    /// copies, users saw only live answers); or `watch` (a live release's rollback criteria).
    #[serde(default = "canary_kind")]
    pub kind: String,
    /// The share of requests the candidate got (or was sent copies of).
    pub weight: u8,
    /// How long the step lasted.
    pub seconds: f64,
    pub verdict: Verdict,
    /// Why, in words: the metric, its value and the threshold.
    pub reason: String,
    pub candidate: Observed,
    pub stable: Observed,
    pub thresholds: Thresholds,
    /// A shadow's agreement with live, and the least it had to reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Agreement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agreement: Option<f64>,
    /// Who let an approval step go on, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<crate::ledger::Approval>,
}

fn canary_kind() -> String {
    "canary".into()
}

/// Counters of the router's `/metrics`, by backend: requests, errors and the cumulative
/// latency buckets (upper bound in seconds → count).
#[derive(Clone, Debug, Default)]
pub struct Reading {
    backends: BTreeMap<String, Counters>,
}

#[derive(Clone, Debug, Default)]
struct Counters {
    requests: u64,
    errors: u64,
    buckets: Vec<(f64, u64)>,
    rows: u64,
    agreed: u64,
    diff: f64,
    unanswered: u64,
}

/// The most lines of `/metrics` read, and the most backends kept.
const MAX_LINES: usize = 20_000;
const MAX_BACKENDS: usize = 64;

impl Reading {
    /// Parses the router's Prometheus text; lines it does not know are skipped, and what it
    /// reads is bounded.
    pub fn parse(text: &str) -> Reading {
        let mut r = Reading::default();
        for line in text.lines().take(MAX_LINES) {
            if line.starts_with('#') {
                continue;
            }
            let Some((head, value)) = line.rsplit_once(' ') else { continue };
            let Some((name, labels)) = head.split_once('{') else { continue };
            let labels = labels.trim_end_matches('}');
            let label = |key: &str| {
                labels.split(',').find_map(|kv| kv.strip_prefix(key)?.strip_prefix("=\"")?.strip_suffix('"'))
            };
            let Some(backend) = label("backend") else { continue };
            if !r.backends.contains_key(backend) && r.backends.len() >= MAX_BACKENDS {
                continue;
            }
            let c = r.backends.entry(backend.to_string()).or_default();
            match name {
                "slipway_router_requests_total" => c.requests = value.parse().unwrap_or(0),
                "slipway_router_errors_total" => c.errors = value.parse().unwrap_or(0),
                "slipway_router_shadow_rows_total" => c.rows = value.parse().unwrap_or(0),
                "slipway_router_shadow_agreed_total" => c.agreed = value.parse().unwrap_or(0),
                "slipway_router_shadow_probability_diff_sum" => {
                    c.diff = value.parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0).unwrap_or(0.0);
                }
                "slipway_router_shadow_unanswered_total" => c.unanswered = value.parse().unwrap_or(0),
                "slipway_router_request_duration_seconds_bucket" => {
                    let le = match label("le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(v) => v.parse().unwrap_or(f64::NAN),
                        None => continue,
                    };
                    if !le.is_nan() && c.buckets.len() < 1000 {
                        c.buckets.push((le, value.parse().unwrap_or(0)));
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// What `backend` did between `before` and this reading.
    pub fn since(&self, before: &Reading, backend: &str) -> Observed {
        let now = self.backends.get(backend).cloned().unwrap_or_default();
        let then = before.backends.get(backend).cloned().unwrap_or_default();
        let requests = now.requests.saturating_sub(then.requests);
        let errors = now.errors.saturating_sub(then.errors).min(requests);
        let counts: Vec<(f64, u64)> = now
            .buckets
            .iter()
            .map(|(le, n)| {
                let was = then.buckets.iter().find(|(l, _)| l == le).map_or(0, |(_, n)| *n);
                (*le, n.saturating_sub(was))
            })
            .collect();
        let total = counts.last().map_or(0, |(_, n)| *n);
        // Buckets as the router writes them: rising bounds from 0, rising counts, `+Inf` last.
        // Anything else is read as the worst latency, so it can never pass a step.
        let sane = counts.last().is_some_and(|(le, _)| le.is_infinite())
            && counts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            && counts.first().is_some_and(|(le, _)| *le >= 0.0);
        let p99_ms = (total > 0 || (requests > 0 && !sane)).then(|| {
            let want = (total as f64 * 0.99).ceil() as u64;
            match counts.iter().find(|(_, n)| *n >= want) {
                Some((le, _)) if sane && le.is_finite() => le * 1000.0,
                // Slower than the last bound, or unreadable: slower than any threshold can be.
                _ => f64::MAX,
            }
        });
        Observed {
            requests,
            errors,
            error_rate: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
            p99_ms,
        }
    }
}

impl Reading {
    /// How the shadow `backend` agreed with live between `before` and this reading.
    pub fn agreement_since(&self, before: &Reading, backend: &str) -> Agreement {
        let now = self.backends.get(backend).cloned().unwrap_or_default();
        let then = before.backends.get(backend).cloned().unwrap_or_default();
        let rows = now.rows.saturating_sub(then.rows);
        let agreed = now.agreed.saturating_sub(then.agreed).min(rows);
        let diff = (now.diff - then.diff).max(0.0);
        Agreement {
            rows,
            agreed,
            share: if rows == 0 { 0.0 } else { agreed as f64 / rows as f64 },
            mean_probability_diff: if rows == 0 { 0.0 } else { (diff / rows as f64).min(1.0) },
            unanswered: now.unanswered.saturating_sub(then.unanswered),
        }
    }
}

/// Judges a shadow: its own errors and latency as a canary step's, then its agreement with
/// the live answers on the same requests.
pub fn judge_shadow(candidate: &Observed, stable: &Observed, a: &Agreement, c: &ShadowConfig) -> (Verdict, String) {
    let (verdict, reason) = judge(candidate, stable, &c.analysis);
    if verdict != Verdict::Successful {
        return (verdict, reason);
    }
    // A mirrored request the shadow did not answer in kind counts as a disagreement.
    let seen = a.rows.saturating_add(a.unanswered);
    let share = if seen == 0 { 0.0 } else { a.agreed as f64 / seen as f64 };
    let a = &Agreement { share, ..a.clone() };
    if a.rows < c.analysis.min_requests {
        return (
            Verdict::Inconclusive,
            format!("{} rows compared, fewer than the {} a verdict needs", a.rows, c.analysis.min_requests),
        );
    }
    if a.share < c.min_agreement {
        return (
            Verdict::Failed,
            format!(
                "agreement {:.3} ({} of {} rows) is below min_agreement {}",
                a.share, a.agreed, a.rows, c.min_agreement
            ),
        );
    }
    if a.mean_probability_diff > c.max_probability_diff {
        return (
            Verdict::Failed,
            format!(
                "mean probability difference {:.4} is above max_probability_diff {}",
                a.mean_probability_diff, c.max_probability_diff
            ),
        );
    }
    (
        Verdict::Successful,
        format!(
            "agreement {:.3} over {} rows, mean probability difference {:.4}; {reason}",
            a.share, a.rows, a.mean_probability_diff
        ),
    )
}

/// Judges a step: the candidate's error rate and p99 (absolute, and against stable's), once it
/// has had enough requests.
pub fn judge(candidate: &Observed, stable: &Observed, t: &Thresholds) -> (Verdict, String) {
    if candidate.requests < t.min_requests {
        return (
            Verdict::Inconclusive,
            format!("{} candidate requests, fewer than the {} a verdict needs", candidate.requests, t.min_requests),
        );
    }
    if candidate.error_rate > t.max_error_rate {
        return (
            Verdict::Failed,
            format!(
                "error rate {:.3} ({} of {}) is above max_error_rate {}",
                candidate.error_rate, candidate.errors, candidate.requests, t.max_error_rate
            ),
        );
    }
    let p99 = candidate.p99_ms.unwrap_or(f64::INFINITY);
    if p99 > t.max_p99_latency_ms {
        return (
            Verdict::Failed,
            format!("p99 latency {p99:.1} ms is above max_p99_latency_ms {}", t.max_p99_latency_ms),
        );
    }
    if let Some(base) = stable.p99_ms.filter(|_| stable.requests >= t.min_requests) {
        // Bucketed readings: an allowance of one bucket (25 %) keeps equal releases apart from
        // the threshold, and `p99_slack_ms` absorbs scheduling noise.
        let allowed = (base * t.max_p99_ratio * 1.25).max(base + t.p99_slack_ms);
        if p99 > allowed {
            return (
                Verdict::Failed,
                format!(
                    "p99 latency {p99:.1} ms is over {} × stable's {base:.1} ms (max_p99_ratio {})",
                    t.max_p99_ratio, t.max_p99_ratio
                ),
            );
        }
    }
    (
        Verdict::Successful,
        format!(
            "error rate {:.3} over {} requests, p99 {p99:.1} ms{}",
            candidate.error_rate,
            candidate.requests,
            stable.p99_ms.map(|s| format!(" (stable {s:.1} ms)")).unwrap_or_default()
        ),
    )
}

/// A duration in words: `45 s`, `10 min`, `24 h`.
pub fn span(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// A pause as a duration.
pub fn pause(step: &Step) -> Duration {
    let s = step.pause_seconds;
    Duration::from_secs_f64(if s.is_finite() { s.clamp(0.0, MAX_PAUSE_SECONDS) } else { 0.0 })
}

#[cfg(test)]
mod tests;
