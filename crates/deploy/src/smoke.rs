//! Smoke tests: is the server ready, does it answer known inputs with the expected labels, fast
//! enough, and is it the model the release names?

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::http;
use crate::ledger::SmokeCheck;

/// One input and the label it must get.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeCase {
    /// The text sent to `/predict`, for a text model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The feature row sent to `/predict`, for a model over feature rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<f64>>,
    /// The label expected back.
    pub label: String,
}

impl SmokeCase {
    /// A case for a text model.
    pub fn text(text: &str, label: &str) -> SmokeCase {
        SmokeCase { text: Some(text.into()), features: None, label: label.into() }
    }

    /// The `/predict` body.
    fn body(&self) -> String {
        match (&self.text, &self.features) {
            (Some(text), _) => serde_json::json!({ "text": text }).to_string(),
            (None, features) => serde_json::json!({ "features": features }).to_string(),
        }
    }

    /// What the case sends, for a check's name.
    fn describe(&self) -> String {
        match (&self.text, &self.features) {
            (Some(text), _) => format!("{text:?}"),
            (None, Some(features)) => format!("{features:?}"),
            (None, None) => "nothing".into(),
        }
    }
}

/// An environment's smoke tests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmokeConfig {
    /// Inputs and expected labels.
    pub cases: Vec<SmokeCase>,
    /// Slowest acceptable answer to a case.
    pub max_latency_ms: f64,
    /// After a switch, how long to keep checking through the stable port before calling it good.
    pub soak_seconds: f64,
}

impl Default for SmokeConfig {
    fn default() -> SmokeConfig {
        let case = SmokeCase::text;
        SmokeConfig {
            cases: vec![
                case("a wonderful, moving film with a brilliant cast", "fresh"),
                case("a dull, lifeless and boring mess", "rotten"),
            ],
            max_latency_ms: 500.0,
            soak_seconds: 2.0,
        }
    }
}

/// The longest soak a setting may ask for.
pub const MAX_SOAK_SECONDS: f64 = 3600.0;

impl SmokeConfig {
    /// Checks settings read from `slipway.toml`: at least one case, at most 1,000, each within
    /// the server's text limit; a latency bound and a soak that are numbers in range.
    pub fn check(&self) -> Result<(), String> {
        if self.cases.is_empty() || self.cases.len() > 1000 {
            return Err(format!("`cases` holds {} entries; give between 1 and 1000", self.cases.len()));
        }
        for c in &self.cases {
            let label = c.label.escape_debug();
            match (&c.text, &c.features) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(format!("the case for `{label}` needs exactly one of `text` and `features`"));
                }
                (Some(text), None) if text.chars().count() > 20_000 => {
                    return Err(format!("the case for `{label}` is too long (texts up to 20000 characters)"));
                }
                (None, Some(f))
                    if f.is_empty()
                        || f.len() > 10_000
                        || f.iter().any(|x| !x.is_finite() || x.abs() > f64::from(f32::MAX)) =>
                {
                    return Err(format!(
                        "the case for `{label}` needs 1 to 10000 `features`, each a number float32 holds (it has {})",
                        f.len()
                    ));
                }
                _ if c.label.len() > 256 => return Err(format!("the case's label `{label}` is over 256 bytes")),
                _ => {}
            }
        }
        if !(self.max_latency_ms.is_finite() && self.max_latency_ms > 0.0) {
            return Err(format!("`max_latency_ms` is {}; give a positive number of milliseconds", self.max_latency_ms));
        }
        if !(0.0..=MAX_SOAK_SECONDS).contains(&self.soak_seconds) {
            return Err(format!("`soak_seconds` is {}; give 0 to {MAX_SOAK_SECONDS}", self.soak_seconds));
        }
        Ok(())
    }
}

/// Runs every check against `base` (e.g. `http://127.0.0.1:18080`); `model_digest` is the
/// BLAKE3 the server must report.
pub async fn run(base: &str, config: &SmokeConfig, model_digest: &str) -> Vec<SmokeCheck> {
    let mut checks = Vec::new();
    let ready = http::send("GET", &format!("{base}/readyz"), None, Duration::from_secs(5)).await;
    checks.push(match ready {
        Ok(r) => check("readyz", r.status == 200, format!("HTTP {}", r.status)),
        Err(e) => check("readyz", false, format!("{e:#}")),
    });
    let mut slowest = 0.0f64;
    for case in &config.cases {
        let start = Instant::now();
        let body = case.body();
        let answer = http::send("POST", &format!("{base}/predict"), Some(body), Duration::from_secs(10)).await;
        slowest = slowest.max(start.elapsed().as_secs_f64() * 1000.0);
        let name = format!("predict {}", case.describe());
        checks.push(match answer {
            Ok(r) => {
                let label = serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v["label"].as_str().map(str::to_string));
                let digest = r.header("x-model-digest").unwrap_or_default();
                let want_digest = format!("blake3:{model_digest}");
                let ok = r.status == 200 && label.as_deref() == Some(case.label.as_str()) && digest == want_digest;
                check(
                    &name,
                    ok,
                    format!(
                        "HTTP {}, label {label:?} (want {:?}), model {digest} (want {want_digest})",
                        r.status, case.label
                    ),
                )
            }
            Err(e) => check(&name, false, format!("{e:#}")),
        });
    }
    let fast = slowest <= config.max_latency_ms;
    checks.push(check("latency", fast, format!("slowest case {slowest:.1} ms, bound {} ms", config.max_latency_ms)));
    checks
}

/// Repeats the checks through the stable port for the soak window; stops at the first failure.
pub async fn soak(base: &str, config: &SmokeConfig, model_digest: &str) -> Vec<SmokeCheck> {
    // Settings are checked when read; a soak out of range here is no soak rather than a panic.
    let soak = Duration::try_from_secs_f64(config.soak_seconds.min(MAX_SOAK_SECONDS)).unwrap_or_default();
    let end = Instant::now() + soak;
    loop {
        let checks = run(base, config, model_digest).await;
        if checks.iter().any(|c| !c.passed) || Instant::now() >= end {
            return checks;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn check(name: &str, passed: bool, detail: String) -> SmokeCheck {
    SmokeCheck { name: name.into(), passed, detail }
}

/// The model digest (`blake3:…`) the server at `base` reports on `/readyz`, if it answers ready:
/// whether what a deploy left running is still there.
pub async fn serving_digest(base: &str) -> Result<String, String> {
    let reply = http::send("GET", &format!("{base}/readyz"), None, Duration::from_secs(2))
        .await
        .map_err(|e| format!("nothing answers on {base}: {e:#}"))?;
    if reply.status != 200 {
        return Err(format!("{base}/readyz answers HTTP {}", reply.status));
    }
    reply.header("x-model-digest").ok_or_else(|| format!("{base}/readyz names no model (no x-model-digest)"))
}
