//! One deploy per environment at a time: a lock object created with a conditional put on the
//! artifact remote, so two machines cannot both hold it.

use std::time::Duration;

use store::Remote;

use crate::DeployError;

/// A lock older than this is taken to be left by a crashed deploy and is broken.
const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// Held while an environment is being changed; released on drop.
pub struct EnvLock {
    remote: std::sync::Arc<dyn Remote>,
    key: String,
}

/// Takes the lock of `env`, or says who holds it.
pub async fn acquire(remote: &std::sync::Arc<dyn Remote>, env: &str, who: &str) -> Result<EnvLock, DeployError> {
    let key = format!("slipway/locks/v1/{env}.lock");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let body = serde_json::json!({ "who": who, "since": now, "pid": std::process::id() });
    for _ in 0..2 {
        if remote.put_if_absent(&key, body.to_string().into_bytes()).await? {
            return Ok(EnvLock { remote: remote.clone(), key });
        }
        let holder = read_holder(&**remote, &key).await;
        let since = holder.as_ref().and_then(|h| h["since"].as_u64()).unwrap_or(now);
        if now.saturating_sub(since) < STALE_AFTER.as_secs() {
            let by =
                holder.as_ref().and_then(|h| h["who"].as_str().map(str::to_string)).unwrap_or_else(|| "someone".into());
            return Err(DeployError::Locked { env: env.into(), by, seconds: now.saturating_sub(since) });
        }
        remote.delete(&key).await?;
    }
    Err(DeployError::Locked { env: env.into(), by: "a concurrent deploy".into(), seconds: 0 })
}

async fn read_holder(remote: &dyn Remote, key: &str) -> Option<serde_json::Value> {
    let tmp = tempfile::NamedTempFile::new().ok()?.into_temp_path();
    remote.get(key, &tmp, &|_| {}).await.ok()?;
    serde_json::from_slice(&std::fs::read(&tmp).ok()?).ok()
}

impl Drop for EnvLock {
    fn drop(&mut self) {
        let (remote, key) = (self.remote.clone(), self.key.clone());
        // Dropped inside the runtime: release the lock on a thread of its own.
        let handle = tokio::runtime::Handle::current();
        let _ = std::thread::spawn(move || handle.block_on(remote.delete(&key))).join();
    }
}
