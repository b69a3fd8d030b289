//! Webhook notifications: a JSON message on every deploy, promote and rollback, and on every
//! step of a canary, a shadow or a watch as it ends. The URL is a secret (it usually embeds a
//! token): it is never printed, and errors do not quote it.

use std::time::Duration;

use crate::canary::StepAnalysis;
use crate::http;
use crate::ledger::Event;

/// The variable that holds the webhook's URL (a secret).
pub const WEBHOOK_VAR: &str = "SLIPWAY_WEBHOOK_URL";

/// Posts `event` to `url` (http only; put an HTTPS relay such as a sidecar in front for others).
pub async fn send(url: &str, event: &Event) -> anyhow::Result<()> {
    let text =
        format!("{} {:?} {} on {}: {:?}", event.who, event.kind, event.release.version, event.env, event.outcome);
    post(url, serde_json::json!({ "text": text, "event": event })).await
}

/// Posts one step of `version` on `env` as it ends (or, `waiting`, as it starts to wait for
/// approval).
pub async fn step(url: &str, env: &str, version: &str, step: &StepAnalysis) -> anyhow::Result<()> {
    let verdict = serde_json::to_value(step.verdict).ok().and_then(|v| v.as_str().map(str::to_string));
    let text =
        format!("{env}: {version} {} at {}%: {}: {}", step.kind, step.weight, verdict.unwrap_or_default(), step.reason);
    post(url, serde_json::json!({ "text": text, "env": env, "version": version, "step": step })).await
}

/// The longest a webhook takes to answer in whole, and the most of its answer read (only its
/// status is used).
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER_BYTES: usize = 64 * 1024;

async fn post(url: &str, body: serde_json::Value) -> anyhow::Result<()> {
    let request = http::Request { method: "POST", url, body: Some(body.to_string()), token: None };
    // The error would quote the URL, a secret: it is replaced.
    let reply = http::send_within(request, TIMEOUT, MAX_ANSWER_BYTES)
        .await
        .map_err(|_| anyhow::anyhow!("the webhook did not answer in whole within {TIMEOUT:?} and 64 KiB"))?;
    anyhow::ensure!(reply.status < 300, "the webhook answered HTTP {}", reply.status);
    Ok(())
}
