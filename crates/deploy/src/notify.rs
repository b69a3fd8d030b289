//! Webhook notifications: a JSON message on every deploy, promote and rollback. The URL is a
//! secret (it usually embeds a token): it is never printed, and errors do not quote it.

use std::time::Duration;

use crate::http;
use crate::ledger::Event;

/// The variable that holds the webhook's URL (a secret).
pub const WEBHOOK_VAR: &str = "SLIPWAY_WEBHOOK_URL";

/// Posts `event` to `url` (http only; put an HTTPS relay such as a sidecar in front for others).
pub async fn send(url: &str, event: &Event) -> anyhow::Result<()> {
    let text =
        format!("{} {:?} {} on {}: {:?}", event.who, event.kind, event.release.version, event.env, event.outcome);
    let body = serde_json::json!({ "text": text, "event": event }).to_string();
    let reply = http::send("POST", url, Some(body), Duration::from_secs(10))
        .await
        .map_err(|_| anyhow::anyhow!("the webhook could not be reached"))?;
    anyhow::ensure!(reply.status < 300, "the webhook answered HTTP {}", reply.status);
    Ok(())
}
