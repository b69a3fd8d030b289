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
use crate::names;

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
    /// The image's config digest, which is the image ID `docker load` gives it: the docker
    /// target runs the image by this, never by a tag that may have moved.
    #[serde(default)]
    pub image_config: Option<String>,
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
    /// Checks every field a release carries into paths, keys, commands or manifests.
    pub fn check(&self) -> Result<(), String> {
        let bad = |what: &str, value: &str| Err(format!("{what} `{}` is not valid", value.escape_debug()));
        if !names::is_version(&self.version) {
            return bad("version", &self.version);
        }
        for (what, digest) in [
            ("model digest", &self.model_digest),
            ("server digest", &self.serve_digest),
            ("config digest", &self.config_digest),
        ] {
            if !names::is_hex64(digest) {
                return bad(what, digest);
            }
        }
        if let Some(d) = self.image_digest.as_deref().filter(|d| !names::is_oci_digest(d)) {
            return bad("image digest", d);
        }
        if let Some(d) = self.image_config.as_deref().filter(|d| !names::is_oci_digest(d)) {
            return bad("image config digest", d);
        }
        if !names::is_git_sha(&self.git_sha) {
            return bad("git commit", &self.git_sha);
        }
        if let Some(t) = self.tags.iter().find(|t| !names::is_tag(t)) {
            return bad("image tag", t);
        }
        for (name, digest) in &self.files {
            if !names::RELEASE_FILES.contains(&name.as_str()) {
                return bad("release file name", name);
            }
            if !names::is_hex64(digest) {
                return bad(&format!("digest of {name}"), digest);
            }
        }
        Ok(())
    }

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
#[serde(deny_unknown_fields)]
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
    /// Who ran it: `GITHUB_ACTOR` in CI, else the git identity, else the OS account.
    pub who: String,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// The approval, for promotions.
    pub approval: Option<Approval>,
    /// The smoke checks run.
    pub smoke: Vec<SmokeCheck>,
    /// A canary's steps: the weight, the verdict and why, what was observed of the candidate
    /// and of stable, and the thresholds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<crate::canary::StepAnalysis>,
}

impl Event {
    /// Checks an event read from a remote or the mirror before any of it is used.
    pub fn check(&self) -> Result<(), String> {
        if self.schema != EVENT_SCHEMA {
            return Err(format!("unknown schema `{}`", self.schema.escape_debug()));
        }
        if self.seq == 0 {
            return Err("seq is 0; the ledger counts from 1".into());
        }
        if !names::is_env_name(&self.env) {
            return Err(format!("environment `{}` is not valid", self.env.escape_debug()));
        }
        self.release.check()?;
        if let Some(p) = self.previous.as_deref().filter(|p| !names::is_version(p)) {
            return Err(format!("previous version `{}` is not valid", p.escape_debug()));
        }
        let approval = self.approval.iter().flat_map(|a| [&a.by, &a.how]);
        if let Some(t) = std::iter::once(&self.who).chain(approval).find(|t| !names::is_text(t, 256)) {
            return Err(format!("name `{}` is not valid text", t.escape_debug()));
        }
        if self.smoke.len() > 1000
            || self.smoke.iter().any(|c| !names::is_text(&c.name, 4096) || !names::is_text(&c.detail, 16384))
        {
            return Err("the smoke checks are too many or not valid text".into());
        }
        let numbers = |o: &crate::canary::Observed| {
            (0.0..=1.0).contains(&o.error_rate) && o.errors <= o.requests && o.p99_ms.is_none_or(|p| p >= 0.0)
        };
        let agreement = |a: &Option<crate::canary::Agreement>| {
            a.as_ref().is_none_or(|a| {
                a.agreed <= a.rows && (0.0..=1.0).contains(&a.share) && (0.0..=1.0).contains(&a.mean_probability_diff)
            })
        };
        if self.analysis.len() > MAX_ANALYSIS
            || self.analysis.iter().any(|a| {
                !names::is_text(&a.reason, 4096)
                    || !["canary", "approval", "shadow", "watch"].contains(&a.kind.as_str())
                    || a.approved.as_ref().is_some_and(|a| !names::is_text(&a.by, 256) || !names::is_text(&a.how, 64))
                    || a.weight > 100
                    || !a.seconds.is_finite()
                    || !numbers(&a.candidate)
                    || !numbers(&a.stable)
                    || !agreement(&a.agreement)
            })
        {
            return Err("the canary analysis is too long or not valid".into());
        }
        Ok(())
    }
}

/// What reading the ledger found.
#[derive(Clone, Debug, Default)]
pub struct Read {
    /// The valid events, in order.
    pub events: Vec<Event>,
    /// The remote could not be reached: the events come from the local mirror.
    pub offline: bool,
    /// Entries that could not be used, each with why. They are never rewritten; they are
    /// skipped, so one bad entry does not block a rollback to a good release.
    pub corrupt: Vec<String>,
    /// The highest entry number on the remote, corrupt ones included: the next is one more.
    pub last_seq: u64,
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

    /// Every valid event, in order. Reads the remote and refreshes the mirror; when the remote
    /// cannot be reached, the mirror is used and `offline` is set.
    pub async fn read(&self) -> Result<Read, DeployError> {
        match self.remote.list(LEDGER_PREFIX).await {
            Ok(keys) => self.sync(keys).await,
            Err(StoreError::Unreachable { .. }) => Ok(Read { offline: true, ..self.read_mirror()? }),
            Err(e) => Err(e.into()),
        }
    }

    /// The valid events and whether they come from the mirror only.
    pub async fn events(&self) -> Result<(Vec<Event>, bool), DeployError> {
        let read = self.read().await?;
        Ok((read.events, read.offline))
    }

    async fn sync(&self, keys: Vec<String>) -> Result<Read, DeployError> {
        std::fs::create_dir_all(&self.mirror).map_err(anyhow::Error::from)?;
        let mut strays = Vec::new();
        let mut last_seq = 0;
        for key in keys {
            // Only `NNNNNNNN.json` names are entries; anything else is reported, never used.
            let Some(seq) = key.strip_prefix(&format!("{LEDGER_PREFIX}/")).and_then(entry_seq) else {
                strays.push(format!("{key}: not a ledger entry name"));
                continue;
            };
            last_seq = last_seq.max(seq);
            let local = self.mirror.join(entry_name(seq));
            if !local.is_file() {
                let bytes = match self.remote.read_small(&key, MAX_ENTRY_BYTES).await {
                    Err(e @ store::StoreError::TooLarge { .. }) => {
                        strays.push(format!("{key}: {e}"));
                        continue;
                    }
                    other => other?,
                };
                engine::write_atomic(&local, &bytes).map_err(|e| anyhow::anyhow!("cannot mirror {key}: {e}"))?;
            }
        }
        let mut read = self.read_mirror()?;
        read.corrupt.extend(strays);
        read.last_seq = read.last_seq.max(last_seq);
        Ok(read)
    }

    fn read_mirror(&self) -> Result<Read, DeployError> {
        let mut read = Read::default();
        let Ok(dir) = std::fs::read_dir(&self.mirror) else { return Ok(read) };
        let mut entries: Vec<(u64, std::path::PathBuf)> =
            dir.flatten().filter_map(|e| Some((entry_seq(e.file_name().to_str()?)?, e.path()))).collect();
        entries.sort();
        for (seq, path) in entries {
            read.last_seq = read.last_seq.max(seq);
            let bytes = std::fs::read(&path).map_err(anyhow::Error::from)?;
            match parse_event(&entry_name(seq), &bytes).and_then(|e| match e.seq == seq {
                true => Ok(e),
                false => Err(corrupt(&entry_name(seq), format!("it says it is entry {}", e.seq))),
            }) {
                Ok(event) => read.events.push(event),
                Err(e) => read.corrupt.push(e.to_string()),
            }
        }
        Ok(read)
    }

    /// Keeps an event that could not reach the remote; the next append uploads it first.
    pub fn keep_pending(&self, event: &Event) -> Result<(), DeployError> {
        let dir = self.mirror.join("pending");
        let bytes = serde_json::to_vec_pretty(event).map_err(anyhow::Error::from)?;
        // Ordered by time, then unique by content and the moment it was kept: two events in
        // one second never share a name.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let id = blake3::hash(&[bytes.as_slice(), &nanos.to_le_bytes()].concat()).to_hex();
        let name = format!("{:020}-{nanos:039}-{}.json", event.at, &id[..16]);
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
            let mut kept: Event = serde_json::from_slice(&std::fs::read(&path).map_err(anyhow::Error::from)?)
                .map_err(|e| corrupt(&path.display().to_string(), e.to_string()))?;
            // Its number is chosen when it reaches the remote.
            kept.seq = 1;
            kept.check().map_err(|detail| corrupt(&path.display().to_string(), detail))?;
            self.append_one(kept).await?;
            let _ = std::fs::remove_file(&path);
        }
        self.append_one(event).await
    }

    async fn append_one(&self, mut event: Event) -> Result<Event, DeployError> {
        // Bounded: a writer that loses the race this many times in a row gives up.
        for _ in 0..1000 {
            let read = self.read().await?;
            if read.offline {
                return Err(DeployError::RemoteUnreachable { what: "record the release in the ledger".into() });
            }
            event.seq = read.last_seq.checked_add(1).filter(|s| *s <= MAX_SEQ).ok_or_else(|| {
                corrupt(&entry_name(read.last_seq), "the ledger is full: its last entry number is the largest".into())
            })?;
            let bytes = serde_json::to_vec_pretty(&event).map_err(anyhow::Error::from)?;
            if bytes.len() as u64 > MAX_ENTRY_BYTES {
                return Err(
                    anyhow::anyhow!("the ledger entry is {} bytes, more than an entry can be", bytes.len()).into()
                );
            }
            let key = format!("{LEDGER_PREFIX}/{}", entry_name(event.seq));
            if self.remote.put_if_absent(&key, bytes.clone()).await? {
                let local = self.mirror.join(entry_name(event.seq));
                engine::write_atomic(&local, &bytes).map_err(anyhow::Error::from)?;
                return Ok(event);
            }
        }
        Err(anyhow::anyhow!("could not append to the ledger: 1,000 concurrent appends won the race").into())
    }
}

/// The most steps an entry's analysis holds: per canary step, its judgements (one, and one
/// more per wait for traffic) and an approval hold; a shadow or a watch has fewer.
pub const MAX_ANALYSIS: usize = (crate::canary::MAX_WAITS as usize + 2) * crate::canary::MAX_STEPS;
/// The largest entry read or written. [`Event::check`] lets through more only in theory (a
/// thousand smoke checks, each with the longest name and detail, all escaped); a deploy's real
/// entries are a few KiB to a few hundred.
pub const MAX_ENTRY_BYTES: u64 = 32 << 20;

/// The largest entry number: eight digits.
const MAX_SEQ: u64 = 99_999_999;

/// `00000042.json` for entry 42.
fn entry_name(seq: u64) -> String {
    format!("{seq:08}.json")
}

/// The number of an entry's file name, if it is one: exactly eight digits and `.json`.
fn entry_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|n| *n > 0)
}

fn corrupt(entry: &str, detail: String) -> DeployError {
    DeployError::CorruptLedger { entry: entry.to_string(), detail }
}

/// Parses and checks one entry.
pub fn parse_event(name: &str, bytes: &[u8]) -> Result<Event, DeployError> {
    let event: Event = serde_json::from_slice(bytes).map_err(|e| corrupt(name, e.to_string()))?;
    event.check().map_err(|detail| corrupt(name, detail))?;
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
