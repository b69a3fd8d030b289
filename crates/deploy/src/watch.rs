//! Watching a live release against rollback criteria: its error rate and p99 as the router
//! sees them (p99 against the release that was live before it, as the router saw that one),
//! and the mix of labels it predicts against the mix of true labels validation measured on the
//! holdout (a population stability index). A breach rolls back to the previous release at
//! once, recorded as `auto-rollback` with the metric, the value and the threshold.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::canary::{Observed, Reading, StepAnalysis, Thresholds, Verdict};
use crate::flow::{Deployer, Report, Seen};
use crate::ledger::{self, EventKind, Outcome};
use crate::{DeployError, target};

/// `[environments.NAME.watch]`: how long `promote` watches, and what rolls back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// How long a promote watches the release it made live (0: not at all).
    pub seconds: f64,
    /// How often the criteria are judged.
    pub interval_seconds: f64,
    /// The most a share of requests may fail.
    pub max_error_rate: f64,
    /// The most its p99 may be, as a multiple of the previous release's.
    pub max_p99_ratio: f64,
    /// Always allowed over the previous p99, in milliseconds.
    pub p99_slack_ms: f64,
    /// The largest population stability index of the predicted labels against the holdout's.
    pub max_psi: f64,
    /// Below this many requests (or predicted rows), no criterion is judged yet.
    pub min_requests: u64,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            seconds: 600.0,
            interval_seconds: 10.0,
            max_error_rate: 0.01,
            max_p99_ratio: 2.0,
            p99_slack_ms: 10.0,
            max_psi: 0.25,
            min_requests: 50,
        }
    }
}

impl WatchConfig {
    /// Checks the settings before any is used.
    pub fn check(&self) -> Result<(), String> {
        let fine = |v: f64, lo: f64, hi: f64| v.is_finite() && (lo..=hi).contains(&v);
        if !fine(self.seconds, 0.0, 86_400.0) || !fine(self.interval_seconds, 0.1, 3600.0) {
            return Err("seconds is 0 to 86,400 and interval_seconds 0.1 to 3,600".into());
        }
        if !fine(self.max_error_rate, 0.0, 1.0) || !fine(self.max_p99_ratio, 1.0, 1000.0) {
            return Err("max_error_rate is 0 to 1 and max_p99_ratio 1 to 1000".into());
        }
        if !fine(self.p99_slack_ms, 0.0, 60_000.0) || !fine(self.max_psi, 0.0, 100.0) {
            return Err("p99_slack_ms is 0 to 60,000 and max_psi 0 to 100".into());
        }
        Ok(())
    }
}

/// The population stability index of `live` counts against `expected` counts, over the
/// labels of either; shares are floored at 1e-4 so that a label one side never shows counts
/// heavily but finitely.
pub fn psi(expected: &BTreeMap<String, u64>, live: &BTreeMap<String, u64>) -> f64 {
    let (e_total, l_total) = (expected.values().sum::<u64>().max(1) as f64, live.values().sum::<u64>().max(1) as f64);
    let labels: std::collections::BTreeSet<&String> = expected.keys().chain(live.keys()).collect();
    labels
        .into_iter()
        .map(|k| {
            let p = (expected.get(k).copied().unwrap_or(0) as f64 / e_total).max(1e-4);
            let q = (live.get(k).copied().unwrap_or(0) as f64 / l_total).max(1e-4);
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// The true label counts of the holdout, from a release's `validation_report.json`.
pub fn holdout_mix(report: &[u8]) -> Option<BTreeMap<String, u64>> {
    let v: serde_json::Value = serde_json::from_slice(report).ok()?;
    let per_class = v.get("classification")?.get("per_class")?.as_object()?;
    let mix: BTreeMap<String, u64> = per_class
        .iter()
        .take(1000)
        .filter_map(|(k, m)| Some((k.chars().take(256).collect(), m.get("support")?.as_u64()?)))
        .collect();
    (!mix.is_empty()).then_some(mix)
}

/// The counts of `slipway_predictions_total{label="…"}` in a server's metrics.
pub fn predicted(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().take(20_000) {
        let Some(rest) = line.strip_prefix("slipway_predictions_total{label=\"") else { continue };
        let Some((label, value)) = rest.rsplit_once("\"} ") else { continue };
        if out.len() < 1000 {
            out.insert(label.chars().take(256).collect(), value.trim().parse().unwrap_or(0));
        }
    }
    out
}

impl Deployer {
    /// Watches what is live on `env` for `seconds` (see the module); rolls back on a breach.
    pub async fn watch(&self, env: &str, config: &WatchConfig) -> Result<Report, DeployError> {
        let events = self.read_ledger().await?.events;
        let live = ledger::live(&events, env).ok_or_else(|| DeployError::NothingLive { env: env.into() })?;
        let entry = events.iter().rev().find(|e| e.env == env && e.outcome == Outcome::Live).cloned();
        let previous = entry.as_ref().and_then(|e| e.previous.clone()).and_then(|v| ledger::find(&events, &v).ok());
        let dir = target::env_dir(&self.root, env);
        let router = self.router_of(env)?;
        let backend = router.backend().await.map_err(DeployError::Target)?.map(|a| a.to_string());
        let Some(backend) = backend else { return Err(DeployError::NothingLive { env: env.into() }) };
        let bundle = self.root.join(engine::STATE_DIR).join("releases").join(&live.version);
        let expected = std::fs::read(bundle.join("validation_report.json")).ok().and_then(|b| holdout_mix(&b));
        if expected.is_none() {
            (self.say)(&format!(
                "warning: {env}: {} carries no validation report: its label mix is not watched",
                live.version
            ));
        }
        let previous_backend: Option<String> = previous.as_ref().and_then(|_| {
            std::fs::read(dir.join("previous-backend")).ok().map(|b| String::from_utf8_lossy(&b).trim().to_string())
        });
        let start = router.reading().await.map_err(DeployError::Target)?;
        let before_all = Reading::default();
        let baseline = previous_backend.as_ref().map(|b| start.since(&before_all, b)).unwrap_or_default();
        let metrics_url = format!("http://{}/metrics", router.public);
        let labels_at = |text: String| predicted(&text);
        let first = labels_at(
            crate::http::send("GET", &metrics_url, None, Duration::from_secs(5))
                .await
                .map(|r| r.text())
                .unwrap_or_default(),
        );
        let began = Instant::now();
        let interval = Duration::from_secs_f64(config.interval_seconds);
        (self.say)(&format!("{env}: watching {} for {:.0} s", live.version, config.seconds));
        while began.elapsed().as_secs_f64() < config.seconds {
            tokio::time::sleep(
                interval.min(Duration::from_secs_f64((config.seconds - began.elapsed().as_secs_f64()).max(0.0))),
            )
            .await;
            let now = router.reading().await.map_err(DeployError::Target)?;
            let seen = now.since(&start, &backend);
            let text = crate::http::send("GET", &metrics_url, None, Duration::from_secs(5))
                .await
                .map(|r| r.text())
                .unwrap_or_default();
            let counts = labels_at(text);
            let mix: BTreeMap<String, u64> =
                counts.iter().map(|(k, n)| (k.clone(), n.saturating_sub(first.get(k).copied().unwrap_or(0)))).collect();
            let rows: u64 = mix.values().sum();
            let drift = expected.as_ref().filter(|_| rows >= config.min_requests).map(|e| psi(e, &mix));
            let breach = judge(config, &seen, &baseline, drift);
            (self.say)(&format!(
                "{env}: watch {:.0} s: {} requests, error rate {:.3}, p99 {}, label PSI {}",
                began.elapsed().as_secs_f64(),
                seen.requests,
                seen.error_rate,
                seen.p99_ms.map_or("-".into(), |p| format!("{p:.1} ms")),
                drift.map_or("-".into(), |d| format!("{d:.3}"))
            ));
            let Some(reason) = breach else { continue };
            let Some(previous) = previous.clone() else {
                (self.say)(&format!("{env}: {reason}, but there is no previous release to roll back to"));
                return Ok(Report { events: Vec::new(), exit_code: 1 });
            };
            (self.say)(&format!("{env}: {reason}: rolling back to {}", previous.version));
            let step = StepAnalysis {
                kind: "watch".into(),
                weight: 100,
                seconds: began.elapsed().as_secs_f64(),
                verdict: Verdict::Failed,
                reason: format!(
                    "{reason}; label mix {mix:?} against the holdout's {:?}",
                    expected.clone().unwrap_or_default()
                ),
                candidate: seen,
                stable: baseline,
                thresholds: Thresholds {
                    max_error_rate: config.max_error_rate,
                    max_p99_ratio: config.max_p99_ratio,
                    p99_slack_ms: config.p99_slack_ms,
                    ..Thresholds::default()
                },
                agreement: None,
                min_agreement: None,
                approved: None,
            };
            let why = Seen::because(step);
            let failed = self
                .record(env, &live, EventKind::AutoRollback, Outcome::RolledBack, &Some(previous.clone()), None, why)
                .await?;
            let mut put_back = self.rollback_to(env, previous, EventKind::AutoRollback).await?;
            put_back.events.insert(0, failed);
            put_back.exit_code = 1;
            return Ok(put_back);
        }
        (self.say)(&format!("{env}: {} held up for {:.0} s", live.version, config.seconds));
        Ok(Report { events: Vec::new(), exit_code: 0 })
    }
}

/// The first criterion breached, in words, if any.
fn judge(config: &WatchConfig, seen: &Observed, baseline: &Observed, drift: Option<f64>) -> Option<String> {
    if seen.requests >= config.min_requests && seen.error_rate > config.max_error_rate {
        return Some(format!("error rate {:.3} is above max_error_rate {}", seen.error_rate, config.max_error_rate));
    }
    if let (Some(p99), Some(base)) = (seen.p99_ms, baseline.p99_ms.filter(|_| baseline.requests >= config.min_requests))
        && seen.requests >= config.min_requests
    {
        let allowed = (base * config.max_p99_ratio * 1.25).max(base + config.p99_slack_ms);
        if p99 > allowed {
            return Some(format!(
                "p99 latency {p99:.1} ms spiked over {} × the previous release's {base:.1} ms",
                config.max_p99_ratio
            ));
        }
    }
    match drift {
        Some(d) if d > config.max_psi => {
            Some(format!("the predicted labels drifted: PSI {d:.3} is above max_psi {}", config.max_psi))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_for_the_same_mix_and_large_for_one_class() {
        let m = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
        assert!(psi(&m(&[("a", 50), ("b", 50)]), &m(&[("a", 500), ("b", 500)])).abs() < 1e-12);
        let biased = psi(&m(&[("a", 50), ("b", 50)]), &m(&[("a", 1000)]));
        assert!(biased > 4.0, "{biased}");
        let mild = psi(&m(&[("a", 50), ("b", 50)]), &m(&[("a", 55), ("b", 45)]));
        assert!(mild < 0.05, "{mild}");
        assert_eq!(
            predicted(
                "x\nslipway_predictions_total{label=\"fresh\"} 12\nslipway_predictions_total{label=\"ro\\\"t\"} 3\n"
            )
            .get("fresh"),
            Some(&12)
        );
        assert_eq!(
            holdout_mix(br#"{"classification":{"per_class":{"a":{"support":3},"b":{"support":4}}}}"#),
            Some(m(&[("a", 3), ("b", 4)]))
        );
        assert_eq!(holdout_mix(b"[]"), None);
    }
}
