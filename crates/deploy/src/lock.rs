//! One deploy per environment at a time, across machines, on the artifact remote.
//!
//! The lock is a sequence of immutable objects, one per holder: `GGGGGGGGGGGG.lock` (its token,
//! who, the pid) created with a conditional put, `GGGGGGGGGGGG.beat.NNNNNNNN` renewing it, and
//! `GGGGGGGGGGGG.end` releasing it. Nothing is ever deleted or overwritten, so no step needs more
//! than a conditional create:
//!
//! - Taking it creates generation `G + 1` when `G` has ended, or when `G` is stale: its last
//!   activity (the lock or its newest beat) is older than [`STALE_AFTER`] by the store's own
//!   clock (its `Last-Modified` times, compared with a probe object written now). Of two
//!   deploys racing for `G + 1`, exactly one creates it.
//! - The holder renews it every [`BEAT_EVERY`] while held; a holder that finds `G + 1` taken
//!   has lost the lock and says so before its next step ([`EnvLock::ensure_held`]).
//! - Only the holder, which knows the token in the immutable `G.lock`, writes `G.end`, and only
//!   if no one superseded it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use store::Remote;

use crate::{DeployError, names};

/// Where the locks live on a remote. Bump the version when the layout changes.
pub const LOCKS_PREFIX: &str = "slipway/locks/v2";
/// A lock whose holder has shown no sign of life for this long is taken to be left by a crash.
pub const STALE_AFTER: Duration = Duration::from_secs(5 * 60);
/// How often a holder renews its lock.
pub const BEAT_EVERY: Duration = Duration::from_secs(30);

/// How locks are judged; [`Default`] for real deploys.
#[derive(Clone, Copy, Debug)]
pub struct LockTimes {
    /// See [`STALE_AFTER`].
    pub stale_after: Duration,
    /// See [`BEAT_EVERY`].
    pub beat_every: Duration,
}

impl Default for LockTimes {
    fn default() -> LockTimes {
        LockTimes { stale_after: STALE_AFTER, beat_every: BEAT_EVERY }
    }
}

/// The body of a `.lock` object.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Holder {
    token: String,
    who: String,
    pid: u32,
}

/// Which holder of an environment's lock: its generation, and a tag of its token (the token
/// is random per holder, so a generation reused under a new layout is a different holder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockId {
    /// The generation.
    pub generation: u64,
    /// The first 16 hex digits of the BLAKE3 of the holder's token.
    pub tag: String,
}

fn tag_of(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex()[..16].to_string()
}

/// Held while an environment is being changed; renewed while held; released on drop.
pub struct EnvLock {
    remote: Arc<dyn Remote>,
    env: String,
    generation: u64,
    tag: String,
    lost: Arc<AtomicBool>,
    beat: Option<tokio::task::JoinHandle<()>>,
}

fn key(env: &str, generation: u64, what: &str) -> String {
    format!("{LOCKS_PREFIX}/{env}/{generation:012}.{what}")
}

/// What the remote says about an environment's lock: the newest generation, whether it ended,
/// and its newest beat.
#[derive(Debug, Default)]
struct Scan {
    top: Option<u64>,
    ended: bool,
    beat: Option<u64>,
}

async fn scan(remote: &dyn Remote, env: &str) -> Result<Scan, DeployError> {
    let prefix = format!("{LOCKS_PREFIX}/{env}/");
    let mut locks: Vec<u64> = Vec::new();
    let mut ends: Vec<u64> = Vec::new();
    let mut beats: Vec<(u64, u64)> = Vec::new();
    for k in remote.list(&prefix).await? {
        let Some(name) = k.strip_prefix(&prefix) else { continue };
        // Names that are not the lock's own are ignored, never parsed further.
        let Some((g, rest)) = name.split_once('.') else { continue };
        let Some(g) = digits(g, 12) else { continue };
        match rest {
            "lock" => locks.push(g),
            "end" => ends.push(g),
            _ => {
                if let Some(n) = rest.strip_prefix("beat.").and_then(|n| digits(n, 8)) {
                    beats.push((g, n));
                }
            }
        }
    }
    let top = locks.iter().copied().max();
    Ok(Scan {
        top,
        ended: top.is_some_and(|t| ends.contains(&t)),
        beat: top.and_then(|t| beats.iter().filter(|(g, _)| *g == t).map(|(_, n)| *n).max()),
    })
}

/// `s` as a number, if it is exactly `n` decimal digits.
pub(crate) fn digits(s: &str, n: usize) -> Option<u64> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// The store's clock: the `Last-Modified` of an object written now.
async fn store_now(remote: &dyn Remote) -> Result<SystemTime, DeployError> {
    let random = blake3::hash(format!("{:?}{}", SystemTime::now(), std::process::id()).as_bytes()).to_hex();
    let probe = format!("{LOCKS_PREFIX}/clock/{}", &random[..16]);
    remote.put_if_absent(&probe, Vec::new()).await?;
    let now = remote.modified(&probe).await?;
    let _ = remote.delete(&probe).await;
    now.ok_or_else(|| anyhow::anyhow!("the remote lost the clock probe {probe}").into())
}

/// The store's clock now, and how long generation `top` has shown no sign of life (its lock or
/// its newest beat, by the store's clock); one whose objects are gone is idle for ever.
async fn idleness(
    remote: &dyn Remote,
    env: &str,
    state: &Scan,
    top: u64,
) -> Result<(SystemTime, Duration), DeployError> {
    let now = store_now(remote).await?;
    let last_key = state.beat.map_or_else(|| key(env, top, "lock"), |n| key(env, top, &format!("beat.{n:08}")));
    let last = remote.modified(&last_key).await?.unwrap_or(SystemTime::UNIX_EPOCH);
    Ok((now, now.duration_since(last).unwrap_or_default()))
}

async fn read_holder(remote: &dyn Remote, key: &str) -> Option<Holder> {
    let bytes = remote.read_small(key, 4096).await.ok()?;
    serde_json::from_slice::<Holder>(&bytes).ok().filter(|h| names::is_hex64(&h.token) && names::is_text(&h.who, 256))
}

/// The holder of the lock of `env` now, if one holds it and is alive: not ended, and active
/// within [`STALE_AFTER`] by the store's clock. A lock left by a deploy that was killed is no
/// one's, though it stays until someone takes it over.
pub async fn live_holder(remote: &dyn Remote, env: &str) -> Result<Option<LockId>, DeployError> {
    let state = scan(remote, env).await?;
    let Some(top) = state.top.filter(|_| !state.ended) else { return Ok(None) };
    if idleness(remote, env, &state, top).await?.1 >= STALE_AFTER {
        return Ok(None);
    }
    let holder = read_holder(remote, &key(env, top, "lock")).await;
    Ok(holder.map(|h| LockId { generation: top, tag: tag_of(&h.token) }))
}

/// Takes the lock of `env`, or says who holds it.
pub async fn acquire(remote: &Arc<dyn Remote>, env: &str, who: &str) -> Result<EnvLock, DeployError> {
    acquire_with(remote, env, who, LockTimes::default()).await
}

/// [`acquire`], with the times to judge and renew it by.
pub async fn acquire_with(
    remote: &Arc<dyn Remote>,
    env: &str,
    who: &str,
    times: LockTimes,
) -> Result<EnvLock, DeployError> {
    if !names::is_env_name(env) {
        return Err(anyhow::anyhow!("`{}` is not a valid environment name", env.escape_debug()).into());
    }
    for _ in 0..16 {
        let state = scan(&**remote, env).await?;
        let next = match state.top {
            None => 1,
            Some(top) if state.ended => top + 1,
            Some(top) => {
                let (now, idle) = idleness(&**remote, env, &state, top).await?;
                if idle < times.stale_after {
                    let holder = read_holder(&**remote, &key(env, top, "lock")).await;
                    let by = holder.map_or_else(|| "someone (an unreadable lock)".to_string(), |h| h.who);
                    let since = remote.modified(&key(env, top, "lock")).await?.unwrap_or(now);
                    let seconds = now.duration_since(since).unwrap_or_default().as_secs();
                    return Err(DeployError::Locked { env: env.into(), by, seconds });
                }
                top + 1
            }
        };
        let token = blake3::hash(format!("{env}{who}{}{:?}", std::process::id(), SystemTime::now()).as_bytes())
            .to_hex()
            .to_string();
        let tag = tag_of(&token);
        let body = serde_json::to_vec(&Holder { token, who: who.into(), pid: std::process::id() })
            .map_err(anyhow::Error::from)?;
        if remote.put_if_absent(&key(env, next, "lock"), body).await? {
            let lost = Arc::new(AtomicBool::new(false));
            let beat = tokio::spawn(heartbeat(remote.clone(), env.to_string(), next, lost.clone(), times.beat_every));
            let (remote, env) = (remote.clone(), env.to_string());
            return Ok(EnvLock { remote, env, generation: next, tag, lost, beat: Some(beat) });
        }
        // Another deploy took this generation first: look again.
    }
    Err(DeployError::Locked { env: env.into(), by: "a concurrent deploy".into(), seconds: 0 })
}

/// Renews generation `generation` until superseded or stopped.
async fn heartbeat(remote: Arc<dyn Remote>, env: String, generation: u64, lost: Arc<AtomicBool>, every: Duration) {
    for n in 1..=99_999_999u64 {
        tokio::time::sleep(every).await;
        if remote.exists(&key(&env, generation + 1, "lock")).await.unwrap_or(false) {
            lost.store(true, Ordering::SeqCst);
            return;
        }
        // A failed beat is retried at the next one; others cannot take the lock while the
        // remote is unreachable either.
        let _ = remote.put_if_absent(&key(&env, generation, &format!("beat.{n:08}")), Vec::new()).await;
    }
}

impl EnvLock {
    /// Fails if another deploy took the lock over (this one looked dead to it).
    pub fn ensure_held(&self) -> Result<(), DeployError> {
        match self.lost.load(Ordering::SeqCst) {
            false => Ok(()),
            true => Err(DeployError::LockLost { env: self.env.clone() }),
        }
    }

    /// The generation held.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Which holder this is.
    pub fn id(&self) -> LockId {
        LockId { generation: self.generation, tag: self.tag.clone() }
    }
}

impl Drop for EnvLock {
    fn drop(&mut self) {
        if let Some(beat) = self.beat.take() {
            beat.abort();
        }
        let (remote, env, generation) = (self.remote.clone(), self.env.clone(), self.generation);
        let release = async move {
            // Ended only by us, and only if no one took over.
            if !remote.exists(&key(&env, generation + 1, "lock")).await.unwrap_or(true) {
                let _ = remote.put_if_absent(&key(&env, generation, "end"), Vec::new()).await;
            }
        };
        // Dropped inside the runtime: release the lock on a thread of its own.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let _ = std::thread::spawn(move || handle.block_on(release)).join();
        }
    }
}
