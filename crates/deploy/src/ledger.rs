//! The release ledger: an append-only list of deploy events in the artifact remote, mirrored
//! locally so that a rollback works while the remote is unreachable.
//!
//! Each event is its own object, `slipway/ledger/v1/NNNNNNNN.json`, created with a conditional
//! put: two writers racing for the same number cannot both win, so the history never forks.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use store::{Remote, StoreError};

use crate::DeployError;

/// Where the ledger lives on a remote. Bump the version when an event's meaning changes.
pub const LEDGER_PREFIX: &str = "slipway/ledger/v1";
/// The `schema` of an event.
pub const EVENT_SCHEMA: &str = "slipway.ledger-event.v1";

/// What is deployed: an immutable set of digests, named `v1`, `v2`, … in the order first made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// `v1`, `v2`, …
    pub version: String,
    /// The OCI image's manifest digest, when an image was built.
    pub image_digest: Option<String>,
    /// BLAKE3 of the model file.
    pub model_digest: String,
    /// BLAKE3 of the server binary.
    pub serve_digest: String,
    /// BLAKE3 of the deploy configuration of the release.
    pub config_digest: String,
    /// The commit it was built from.
    pub git_sha: String,
    /// Image tags, for `rollback --version TAG`.
    pub tags: Vec<String>,
    /// Every file of the release bundle, by name → BLAKE3 (see `bundle.rs`).
    pub files: std::collections::BTreeMap<String, String>,
}

impl Release {
    /// Whether `other` is the same artifacts (versions aside).
    pub fn same_artifacts(&self, other: &Release) -> bool {
        (&self.image_digest, &self.model_digest, &self.serve_digest, &self.config_digest, &self.files)
            == (&other.image_digest, &other.model_digest, &other.serve_digest, &other.config_digest, &other.files)
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A release was deployed to an environment.
    Deploy,
    /// A release that passed staging was moved to another environment.
    Promote,
    /// A recorded release was put back by hand.
    Rollback,
    /// A release failed its smoke tests after the switch and the previous one was put back.
    AutoRollback,
}

/// How a deploy ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The release serves the environment.
    Live,
    /// It failed its smoke tests before the switch; the environment did not change.
    Rejected,
    /// It failed after the switch and was replaced by the previous release.
    RolledBack,
}

/// Who approved a promotion, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The user.
    pub by: String,
    /// `--approve`, `prompt`, …
    pub how: String,
}

/// One smoke check's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmokeCheck {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// One ledger entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// [`EVENT_SCHEMA`].
    pub schema: String,
    /// Position in the ledger, from 1.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// How it ended.
    pub outcome: Outcome,
    /// The environment.
    pub env: String,
    /// The release involved.
    pub release: Release,
    /// The version that was live before, if any.
    pub previous: Option<String>,
    /// Who ran it (`$USER`, or `$GITHUB_ACTOR` in CI).
    pub who: String,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// The approval, for promotions.
    pub approval: Option<Approval>,
    /// The smoke checks run.
    pub smoke: Vec<SmokeCheck>,
}

/// The ledger on a remote, with its local mirror.
pub struct Ledger {
    remote: Arc<dyn Remote>,
    mirror: PathBuf,
}

impl Ledger {
    /// The ledger on `remote`, mirrored under `mirror` (e.g. `.slipway/ledger`).
    pub fn new(remote: Arc<dyn Remote>, mirror: PathBuf) -> Ledger {
        Ledger { remote, mirror }
    }

    /// Every event, in order. Reads the remote and refreshes the mirror; when the remote cannot
    /// be reached, the mirror is used and `offline` is set.
    pub async fn events(&self) -> Result<(Vec<Event>, bool), DeployError> {
        match self.remote.list(LEDGER_PREFIX).await {
            Ok(keys) => Ok((self.sync(keys).await?, false)),
            Err(StoreError::Unreachable { .. }) => Ok((self.read_mirror()?, true)),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync(&self, mut keys: Vec<String>) -> Result<Vec<Event>, DeployError> {
        keys.sort();
        std::fs::create_dir_all(&self.mirror).map_err(anyhow::Error::from)?;
        for key in keys {
            let name = key.rsplit('/').next().unwrap_or(&key).to_string();
            let local = self.mirror.join(&name);
            if !local.is_file() {
                let tmp = tempfile::NamedTempFile::new_in(&self.mirror).map_err(anyhow::Error::from)?.into_temp_path();
                self.remote.get(&key, &tmp, &|_| {}).await?;
                parse_event(&name, &std::fs::read(&tmp).map_err(anyhow::Error::from)?)?;
                tmp.persist(&local).map_err(|e| anyhow::anyhow!("cannot mirror {key}: {}", e.error))?;
            }
        }
        self.read_mirror()
    }

    fn read_mirror(&self) -> Result<Vec<Event>, DeployError> {
        let Ok(dir) = std::fs::read_dir(&self.mirror) else { return Ok(Vec::new()) };
        let mut names: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| parse_event(n, &std::fs::read(self.mirror.join(n)).map_err(anyhow::Error::from)?))
            .collect()
    }

    /// Keeps an event that could not reach the remote; the next append uploads it first.
    pub fn keep_pending(&self, event: &Event) -> Result<(), DeployError> {
        let dir = self.mirror.join("pending");
        let name = format!("{}-{}.json", event.at, blake3::hash(event.env.as_bytes()).to_hex().get(..8).unwrap_or("0"));
        let bytes = serde_json::to_vec_pretty(event).map_err(anyhow::Error::from)?;
        engine::write_atomic(&dir.join(name), &bytes).map_err(anyhow::Error::from)?;
        Ok(())
    }

    /// Appends `event` (its `seq` is chosen here), retrying on a concurrent append. Events kept
    /// while the remote was unreachable go first, in the order they happened.
    pub async fn append(&self, event: Event) -> Result<Event, DeployError> {
        let pending_dir = self.mirror.join("pending");
        let mut pending: Vec<PathBuf> =
            std::fs::read_dir(&pending_dir).map_or(Vec::new(), |d| d.flatten().map(|e| e.path()).collect());
        pending.sort();
        for path in pending {
            let kept = parse_event(&path.display().to_string(), &std::fs::read(&path).map_err(anyhow::Error::from)?)?;
            self.append_one(kept).await?;
            let _ = std::fs::remove_file(&path);
        }
        self.append_one(event).await
    }

    async fn append_one(&self, mut event: Event) -> Result<Event, DeployError> {
        loop {
            let (events, offline) = self.events().await?;
            if offline {
                return Err(DeployError::RemoteUnreachable { what: "record the release in the ledger".into() });
            }
            event.seq = events.last().map_or(1, |e| e.seq + 1);
            let bytes = serde_json::to_vec_pretty(&event).map_err(anyhow::Error::from)?;
            let key = format!("{LEDGER_PREFIX}/{:08}.json", event.seq);
            if self.remote.put_if_absent(&key, bytes.clone()).await? {
                let local = self.mirror.join(format!("{:08}.json", event.seq));
                engine::write_atomic(&local, &bytes).map_err(anyhow::Error::from)?;
                return Ok(event);
            }
        }
    }
}

fn parse_event(name: &str, bytes: &[u8]) -> Result<Event, DeployError> {
    let event: Event = serde_json::from_slice(bytes)
        .map_err(|e| DeployError::CorruptLedger { entry: name.to_string(), detail: e.to_string() })?;
    if event.schema != EVENT_SCHEMA {
        return Err(DeployError::CorruptLedger {
            entry: name.to_string(),
            detail: format!("unknown schema `{}`", event.schema),
        });
    }
    Ok(event)
}

/// The release live on `env` and the one before it, from the events.
pub fn live(events: &[Event], env: &str) -> Option<Release> {
    events.iter().rev().find(|e| e.env == env && e.outcome == Outcome::Live).map(|e| e.release.clone())
}

/// Every release ever made, by version, first seen first.
pub fn releases(events: &[Event]) -> Vec<Release> {
    let mut out: Vec<Release> = Vec::new();
    for e in events {
        if !out.iter().any(|r| r.version == e.release.version) {
            out.push(e.release.clone());
        }
    }
    out
}

/// The release `spec` names: a version (`v3`), a git sha prefix (4+ hex digits) or an image tag.
pub fn find(events: &[Event], spec: &str) -> Result<Release, DeployError> {
    let all = releases(events);
    let by_version = all.iter().find(|r| r.version == spec);
    let by_tag = || all.iter().rev().find(|r| r.tags.iter().any(|t| t == spec));
    let by_sha = || (spec.len() >= 4).then(|| all.iter().rev().find(|r| r.git_sha.starts_with(spec))).flatten();
    by_version.or_else(by_tag).or_else(by_sha).cloned().ok_or_else(|| DeployError::UnknownRelease {
        spec: spec.to_string(),
        known: all.iter().map(|r| r.version.clone()).collect(),
    })
}
