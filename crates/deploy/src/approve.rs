//! The canary's indefinite pause (Argo Rollouts' `pause: {}`): a step with `approval = true`
//! holds its weight, still judged every second, until someone runs
//! `cargo xtask approve ENV` (or `promote ENV --approve`), on this machine or any other that
//! shares the remote.
//!
//! Like the lock, a pause is a pair of immutable objects on the artifact remote, named by the
//! holder of the lock of the deploy that waits and by the step:
//! `slipway/pauses/v2/ENV/GGGGGGGGGGGG-TTTTTTTTTTTTTTTT/SS.pause` (the release, the weight and
//! who waits) and, created only if absent, `SS.approved` (who approved, and how). `G` is the
//! lock's generation and `T` a tag of its holder's token, so each approval step of each deploy
//! has a pause of its own. A pause is pending only while its holder still holds the
//! environment's lock and is alive, so a pause left by a deploy that was killed can never be
//! approved, and nothing is ever deleted.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use store::Remote;

use crate::lock::{self, LockId};
use crate::{DeployError, ledger::Approval, names};

/// Where pauses live on a remote. Bump the version when the layout changes.
pub const PAUSES_PREFIX: &str = "slipway/pauses/v2";
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
    /// Which canary step waits, from 1.
    pub step: usize,
    /// Its share of requests while it waits.
    pub weight: u8,
    /// Who runs the deploy that waits.
    pub who: String,
    /// The lock generation of that deploy.
    pub generation: u64,
    /// The tag of its hold on the lock (see [`LockId`]).
    pub lock: String,
}

impl Pause {
    fn check(&self) -> Result<(), String> {
        if !names::is_env_name(&self.env) || !names::is_version(&self.version) {
            return Err("a pause names an environment and a version".into());
        }
        if !(1..=crate::canary::MAX_STEPS).contains(&self.step) || !(1..=99).contains(&self.weight) {
            return Err(format!("a pause is of step 1 to {} at a weight of 1 to 99", crate::canary::MAX_STEPS));
        }
        if !names::is_text(&self.who, 256) || !is_tag(&self.lock) {
            return Err("a pause has a plain `who` and a lock tag of 16 hex digits".into());
        }
        Ok(())
    }

    fn key(&self, what: &str) -> String {
        format!("{}/{:02}.{what}", dir(&self.env, self.generation, &self.lock), self.step)
    }
}

fn is_tag(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn dir(env: &str, generation: u64, tag: &str) -> String {
    format!("{PAUSES_PREFIX}/{env}/{generation:012}-{tag}")
}

/// Reads a small JSON object, within [`MAX_OBJECT_BYTES`]; `None` when it is missing.
async fn read<T: serde::de::DeserializeOwned>(remote: &dyn Remote, key: &str) -> Result<Option<T>, DeployError> {
    let bytes = match remote.read_small(key, MAX_OBJECT_BYTES).await {
        Err(store::StoreError::Missing { .. }) => return Ok(None),
        other => other?,
    };
    let value = serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{key} cannot be read: {e}"))?;
    Ok(Some(value))
}

/// Opens the pause of step `step` (from 1) of the deploy that holds `lock`.
pub(crate) async fn open(
    remote: &Arc<dyn Remote>,
    lock: &LockId,
    env: &str,
    version: &str,
    step: usize,
    weight: u8,
    who: &str,
) -> Result<Pause, DeployError> {
    let pause = Pause {
        env: env.into(),
        version: version.into(),
        step,
        weight,
        who: who.into(),
        generation: lock.generation,
        lock: lock.tag.clone(),
    };
    pause.check().map_err(|e| anyhow::anyhow!("cannot open the pause of {env}: {e}"))?;
    let body = serde_json::to_vec(&pause).map_err(anyhow::Error::from)?;
    if !remote.put_if_absent(&pause.key("pause"), body).await? {
        return Err(anyhow::anyhow!("{} exists already: another deploy holds this pause", pause.key("pause")).into());
    }
    Ok(pause)
}

/// The approval of `pause`, once someone gave it. An object there that is not a valid approval
/// is an error: the caller takes it as no approval.
pub(crate) async fn approval(remote: &dyn Remote, pause: &Pause) -> Result<Option<Approval>, DeployError> {
    let key = pause.key("approved");
    match read::<Approval>(remote, &key).await? {
        Some(a) if names::is_text(&a.by, 256) && names::is_text(&a.how, 64) => Ok(Some(a)),
        Some(_) => Err(anyhow::anyhow!("{key} is not a valid approval").into()),
        None => Ok(None),
    }
}

/// The pauses on `env` by (generation, tag, step), from a listing; other names are ignored.
fn pauses(keys: &[String], env: &str) -> Vec<(u64, String, usize, &'static str)> {
    let prefix = format!("{PAUSES_PREFIX}/{env}/");
    let digits = lock::digits;
    keys.iter()
        .filter_map(|k| {
            let (holder, name) = k.strip_prefix(&prefix)?.split_once('/')?;
            let (generation, tag) = holder.split_once('-')?;
            let (step, what) = name.split_once('.')?;
            let what = match what {
                "pause" => "pause",
                "approved" => "approved",
                _ => return None,
            };
            Some((digits(generation, 12)?, tag.to_string(), digits(step, 2)? as usize, what)).filter(|p| is_tag(&p.1))
        })
        .collect()
}

/// Reads and checks the pause at (generation, tag, step) of `env`.
async fn read_pause(
    remote: &dyn Remote,
    env: &str,
    (generation, tag, step): (u64, &str, usize),
) -> Result<Option<Pause>, DeployError> {
    let key = format!("{}/{step:02}.pause", dir(env, generation, tag));
    let Some(pause) = read::<Pause>(remote, &key).await? else { return Ok(None) };
    pause.check().map_err(|e| anyhow::anyhow!("{key} is not a valid pause: {e}"))?;
    if pause.env != env || pause.generation != generation || pause.lock != tag || pause.step != step {
        return Err(anyhow::anyhow!("{key} names another environment, lock or step").into());
    }
    Ok(Some(pause))
}

/// How many of the newest pause objects are tried before giving up on finding a valid one:
/// an object no deploy wrote is skipped, never trusted, and never blocks an approval.
const MAX_TRIED: usize = 8;

/// The newest valid pause among `found` (newest first); the objects that are not valid are
/// skipped.
async fn newest_valid(
    remote: &dyn Remote,
    env: &str,
    mut found: Vec<(u64, String, usize, &'static str)>,
) -> Result<Option<Pause>, DeployError> {
    found.retain(|p| p.3 == "pause");
    found.sort_by_key(|p| std::cmp::Reverse((p.0, p.2)));
    for (generation, tag, step, _) in found.into_iter().take(MAX_TRIED) {
        match read_pause(remote, env, (generation, &tag, step)).await {
            Ok(Some(pause)) => return Ok(Some(pause)),
            Err(DeployError::Store(e)) if !matches!(e, store::StoreError::TooLarge { .. }) => {
                return Err(DeployError::Store(e));
            }
            Ok(None) | Err(_) => {}
        }
    }
    Ok(None)
}

/// The pause that waits on `env`, if any: the newest step's of the deploy that holds its lock
/// now and is alive, not yet approved.
pub async fn pending(remote: &dyn Remote, env: &str) -> Result<Option<Pause>, DeployError> {
    let Some(holder) = lock::live_holder(remote, env).await? else { return Ok(None) };
    let keys = remote.list(&format!("{}/", dir(env, holder.generation, &holder.tag))).await?;
    let found = pauses(&keys, env);
    let approved: Vec<usize> = found.iter().filter(|p| p.3 == "approved").map(|p| p.2).collect();
    let Some(pause) = newest_valid(remote, env, found).await? else { return Ok(None) };
    Ok(Some(pause).filter(|p| !approved.contains(&p.step)))
}

/// The newest pause ever opened on `env`, pending or not: what the last canary that waited
/// for approval there was of.
pub async fn newest(remote: &dyn Remote, env: &str) -> Result<Option<Pause>, DeployError> {
    let keys = remote.list(&format!("{PAUSES_PREFIX}/{env}/")).await?;
    newest_valid(remote, env, pauses(&keys, env)).await
}

/// Whether the deploy that opened `pause` still holds the lock of its environment and is alive.
pub async fn still_runs(remote: &dyn Remote, pause: &Pause) -> Result<bool, DeployError> {
    let holder = lock::live_holder(remote, &pause.env).await?;
    Ok(holder.is_some_and(|h| h.generation == pause.generation && h.tag == pause.lock))
}

/// Approves the pause that waits on `env`, whichever it is. `None` when none waits (nothing is
/// written).
pub async fn approve(remote: &dyn Remote, env: &str, approval: &Approval) -> Result<Option<Pause>, DeployError> {
    let Some(pause) = pending(remote, env).await? else { return Ok(None) };
    approve_exactly(remote, &pause, approval).await.map(|done| done.then_some(pause))
}

/// Approves `pause` (one a person was shown) and only it: `false`, writing nothing, when it no
/// longer waits, because another approver let it go on, or its deploy ended or moved on to
/// another step.
pub async fn approve_exactly(remote: &dyn Remote, pause: &Pause, approval: &Approval) -> Result<bool, DeployError> {
    if pending(remote, &pause.env).await?.as_ref() != Some(pause) {
        return Ok(false);
    }
    let body = serde_json::to_vec(approval).map_err(anyhow::Error::from)?;
    // Two approvers at once: the first one's is kept; both are told the canary goes on.
    remote.put_if_absent(&pause.key("approved"), body).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_of_pauses_are_read_from_a_listing() {
        let p = |s: &str| format!("{PAUSES_PREFIX}/production/{s}");
        let keys = [
            p("000000000003-0123456789abcdef/02.pause"),
            p("000000000003-0123456789abcdef/02.approved"),
            p("000000000004-0123456789abcdef/01.pause"),
            p("000000000004-0123456789ABCDEF/01.pause"),
            p("000000000004-0123456789abcdef/1.pause"),
            p("00000000004-0123456789abcdef/01.pause"),
            p("000000000004-0123456789abcdef/01.other"),
            p("000000000004-0123456789abcdef/01.pause/x"),
            format!("{PAUSES_PREFIX}/staging/000000000009-0123456789abcdef/01.pause"),
        ];
        let tag = "0123456789abcdef".to_string();
        assert_eq!(
            pauses(&keys, "production"),
            vec![(3, tag.clone(), 2, "pause"), (3, tag.clone(), 2, "approved"), (4, tag, 1, "pause")]
        );
    }

    fn reviewer() -> Approval {
        Approval { by: "reviewer".into(), how: "--approve".into() }
    }

    /// Makes every object under `dir` look `age` old, as if its writer had died that long ago.
    fn age(dir: &std::path::Path, age: std::time::Duration) {
        let then = std::time::SystemTime::now() - age;
        for e in walkdir::WalkDir::new(dir).into_iter().flatten().filter(|e| e.file_type().is_file()) {
            std::fs::File::options().append(true).open(e.path()).unwrap().set_modified(then).unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn each_step_waits_for_its_own_approval_and_only_a_live_holder_can_be_approved() {
        let dir = tempfile::tempdir().unwrap();
        let remote: Arc<dyn Remote> = Arc::new(store::DirRemote::new(dir.path()));
        let held = lock::acquire(&remote, "production", "deployer").await.unwrap();
        let id = held.id();
        let open_step = |step, weight| open(&remote, &id, "production", "v7", step, weight, "deployer");
        let first = open_step(1, 10).await.unwrap();
        assert_eq!(pending(&*remote, "production").await.unwrap().as_ref(), Some(&first));
        assert_eq!(approval(&*remote, &first).await.unwrap(), None);
        assert_eq!(approve(&*remote, "production", &reviewer()).await.unwrap().as_ref(), Some(&first));
        assert_eq!(approval(&*remote, &first).await.unwrap(), Some(reviewer()));

        // The next step's pause is its own: the first approval does not let it go on.
        let second = open_step(3, 50).await.unwrap();
        assert_eq!(approval(&*remote, &second).await.unwrap(), None, "not approved by the first step's approval");
        assert_eq!(pending(&*remote, "production").await.unwrap().as_ref(), Some(&second));
        assert!(open_step(3, 50).await.is_err(), "a pause is opened once");
        assert!(!approve_exactly(&*remote, &first, &reviewer()).await.unwrap(), "what was shown no longer waits");
        assert!(still_runs(&*remote, &first).await.unwrap());

        // Junk where a later step's pause would be is skipped: it never blocks the real one.
        let junk = format!("{}/09.pause", super::dir("production", id.generation, &id.tag));
        remote.put_if_absent(&junk, b"not json".to_vec()).await.unwrap();
        assert_eq!(pending(&*remote, "production").await.unwrap().as_ref(), Some(&second));

        // An object where the approval goes that is no approval is refused, never taken.
        let bad = Pause { step: 4, ..second.clone() };
        remote.put_if_absent(&bad.key("approved"), b"{\"by\": \"x\"}".to_vec()).await.unwrap();
        assert!(approval(&*remote, &bad).await.is_err());
        let huge = Pause { step: 5, ..second.clone() };
        remote.put_if_absent(&huge.key("approved"), vec![b' '; 5000]).await.unwrap();
        assert!(approval(&*remote, &huge).await.unwrap_err().to_string().contains("larger than 4096"));

        // A holder that stopped beating (killed) has no pause anyone can approve, and the deploy
        // that takes its lock over, at the next generation, is another holder.
        age(&dir.path().join(lock::LOCKS_PREFIX), lock::STALE_AFTER * 2);
        assert_eq!(pending(&*remote, "production").await.unwrap(), None, "a stale holder waits for no one");
        assert!(!still_runs(&*remote, &second).await.unwrap());
        assert_eq!(approve(&*remote, "production", &reviewer()).await.unwrap(), None);
        let next = lock::acquire(&remote, "production", "another").await.unwrap();
        assert_eq!(next.id().generation, held.id().generation + 1);
        assert_ne!(next.id().tag, held.id().tag);
        assert_eq!(pending(&*remote, "production").await.unwrap(), None, "its predecessor's pause is not its own");
        assert_eq!(newest(&*remote, "production").await.unwrap(), Some(second), "the last pause opened");
        drop((held, next));
    }
}
