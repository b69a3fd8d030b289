//! The canary's indefinite pause (Argo Rollouts' `pause: {}`): a step with `approval = true`
//! holds its weight, still judged every second, until someone runs
//! `cargo xtask promote ENV --approve`, on this machine or any other that shares the remote.
//!
//! Like the lock, a pause is a pair of immutable objects on the artifact remote, named by the
//! lock generation of the deploy that waits: `slipway/pauses/v1/ENV/GGGGGGGGGGGG.pause` (the
//! release, the weight and who waits) and, created only if absent, `GGGGGGGGGGGG.approved` (who
//! approved, and how). A pause is pending only while its generation still holds the
//! environment's lock, so a pause left by a deploy that was killed can never be approved, and
//! nothing is ever deleted.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use store::Remote;

use crate::ledger::Approval;
use crate::{DeployError, lock, names};

/// Where pauses live on a remote.
pub const PAUSES_PREFIX: &str = "slipway/pauses/v1";
/// The largest pause or approval object read.
const MAX_OBJECT_BYTES: u64 = 4096;

/// A canary step that waits for approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    /// The environment.
    pub env: String,
    /// The release whose canary waits.
    pub version: String,
    /// Its share of requests while it waits.
    pub weight: u8,
    /// Who runs the deploy that waits.
    pub who: String,
    /// The lock generation of that deploy.
    pub generation: u64,
}

impl Pause {
    fn check(&self) -> Result<(), String> {
        if !names::is_env_name(&self.env) || !names::is_version(&self.version) {
            return Err("a pause names an environment and a version".into());
        }
        if !(1..=99).contains(&self.weight) || !names::is_text(&self.who, 256) {
            return Err("a pause has a weight of 1 to 99 and a plain `who`".into());
        }
        Ok(())
    }
}

fn key(env: &str, generation: u64, what: &str) -> String {
    format!("{PAUSES_PREFIX}/{env}/{generation:012}.{what}")
}

/// Reads a small JSON object, within [`MAX_OBJECT_BYTES`]; `None` when it is missing.
async fn read<T: serde::de::DeserializeOwned>(remote: &dyn Remote, key: &str) -> Result<Option<T>, DeployError> {
    if !remote.exists(key).await? {
        return Ok(None);
    }
    let tmp = tempfile::NamedTempFile::new().map_err(anyhow::Error::from)?.into_temp_path();
    remote.get(key, &tmp, &|_| {}).await?;
    let size = std::fs::metadata(&tmp).map_err(anyhow::Error::from)?.len();
    if size > MAX_OBJECT_BYTES {
        return Err(
            anyhow::anyhow!("{key} is {size} bytes, more than a pause object can be ({MAX_OBJECT_BYTES})").into()
        );
    }
    let bytes = std::fs::read(&tmp).map_err(anyhow::Error::from)?;
    let value = serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{key} cannot be read: {e}"))?;
    Ok(Some(value))
}

/// Opens the pause of the deploy holding `generation` of the environment's lock.
pub(crate) async fn open(remote: &Arc<dyn Remote>, pause: &Pause) -> Result<(), DeployError> {
    let body = serde_json::to_vec(pause).map_err(anyhow::Error::from)?;
    if !remote.put_if_absent(&key(&pause.env, pause.generation, "pause"), body).await? {
        // The same deploy holds a second approval step: the first pause object names it already.
        let known: Option<Pause> = read(&**remote, &key(&pause.env, pause.generation, "pause")).await?;
        if known.as_ref().is_none_or(|p| p.version != pause.version) {
            return Err(
                anyhow::anyhow!("another pause holds lock generation {} of {}", pause.generation, pause.env).into()
            );
        }
    }
    Ok(())
}

/// The approval of the pause held at `generation`, once someone gave it.
pub(crate) async fn approval(remote: &dyn Remote, env: &str, generation: u64) -> Result<Option<Approval>, DeployError> {
    let approval: Option<Approval> = read(remote, &key(env, generation, "approved")).await?;
    match approval {
        Some(a) if names::is_text(&a.by, 256) && names::is_text(&a.how, 64) => Ok(Some(a)),
        Some(_) => Err(anyhow::anyhow!("the approval of {env}'s pause is not valid").into()),
        None => Ok(None),
    }
}

/// The pause that waits on `env`, if any: the one of the deploy that holds its lock now, not yet
/// approved.
pub async fn pending(remote: &dyn Remote, env: &str) -> Result<Option<Pause>, DeployError> {
    let Some(generation) = lock::held_generation(remote, env).await? else { return Ok(None) };
    let Some(pause) = read::<Pause>(remote, &key(env, generation, "pause")).await? else { return Ok(None) };
    pause.check().map_err(|e| anyhow::anyhow!("the pause of {env} is not valid: {e}"))?;
    if pause.env != env || pause.generation != generation {
        return Err(anyhow::anyhow!("the pause of {env} names another environment or lock").into());
    }
    if remote.exists(&key(env, generation, "approved")).await? {
        return Ok(None);
    }
    Ok(Some(pause))
}

/// Approves the pause that waits on `env`. `None` when none waits (nothing is written).
pub async fn approve(remote: &dyn Remote, env: &str, approval: &Approval) -> Result<Option<Pause>, DeployError> {
    let Some(pause) = pending(remote, env).await? else { return Ok(None) };
    let body = serde_json::to_vec(approval).map_err(anyhow::Error::from)?;
    // Two approvers at once: the first one's is kept; both are told the canary goes on.
    remote.put_if_absent(&key(env, pause.generation, "approved"), body).await?;
    Ok(Some(pause))
}
