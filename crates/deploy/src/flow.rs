//! Deploy, promote and rollback: start the release next to the live one, smoke-test it, switch
//! the stable port to it, check it again through that port, record it — and put the previous
//! release back if it fails after the switch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use store::Remote;

use crate::bundle::Blobs;
use crate::intent::Phase;
use crate::ledger::{self, Approval, Event, EventKind, Ledger, Outcome, Release, SmokeCheck};
use crate::smoke::SmokeConfig;
use crate::target::{self, Backend, Router, TargetKind};
use crate::{DeployError, lock, notify};

/// One environment's settings (`[environments.NAME]` in `slipway.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Where it runs.
    pub target: TargetKind,
    /// The stable port on 127.0.0.1 (local and docker targets).
    pub port: u16,
    /// Its smoke tests.
    #[serde(default)]
    pub smoke: SmokeConfig,
    /// Kubernetes settings, for the kubernetes target.
    #[serde(default)]
    pub kubernetes: Option<crate::kube::KubeConfig>,
    /// How a new release takes over: all at once after its smoke tests, or in canary steps.
    #[serde(default)]
    pub strategy: crate::canary::Strategy,
    /// The canary's steps and analysis (`strategy = "canary"`); the defaults when absent.
    #[serde(default)]
    pub canary: Option<crate::canary::CanaryConfig>,
    /// The shadow's share, length and gate (`strategy = "shadow-then-blue-green"`).
    #[serde(default)]
    pub shadow: Option<crate::canary::ShadowConfig>,
    /// What `promote` and `watch` hold the live release to, and for how long.
    #[serde(default)]
    pub watch: Option<crate::watch::WatchConfig>,
}

impl EnvConfig {
    /// Checks an environment's settings as read from `slipway.toml`, before any is used.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if !crate::names::is_env_name(name) {
            return Err(format!(
                "environment `{}`: a name is 1–40 lowercase letters, digits and `-`",
                name.escape_debug()
            ));
        }
        if self.port == 0 && self.target != TargetKind::Kubernetes {
            return Err(format!("environment {name}: `port` must be a fixed port, not 0"));
        }
        if self.target == TargetKind::Kubernetes && self.kubernetes.is_none() {
            return Err(format!("environment {name} uses kubernetes but has no [environments.{name}.kubernetes]"));
        }
        if self.strategy != crate::canary::Strategy::BlueGreen && self.target == TargetKind::Kubernetes {
            return Err(format!(
                "environment {name}: the kubernetes target releases blue-green only (README says why); use strategy = \"blue-green\""
            ));
        }
        if let Some(c) = &self.canary {
            c.check().map_err(|e| format!("[environments.{name}.canary]: {e}"))?;
        }
        if let Some(c) = &self.shadow {
            c.check().map_err(|e| format!("[environments.{name}.shadow]: {e}"))?;
        }
        if let Some(c) = &self.watch {
            c.check().map_err(|e| format!("[environments.{name}.watch]: {e}"))?;
        }
        self.smoke.check().map_err(|e| format!("[environments.{name}.smoke]: {e}"))
    }
}

/// The files of a release candidate, as built by the pipeline.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// name → path: `slipway-serve`, `slipway-router`, `libonnxruntime.so`, `model.onnx`, and
    /// `image.tar` when an image was built.
    pub files: Vec<(String, PathBuf)>,
    /// The image's manifest digest, if built.
    pub image_digest: Option<String>,
    /// The image's config digest (its ID once loaded into Docker), if built.
    pub image_config: Option<String>,
    /// The image's tags.
    pub tags: Vec<String>,
    /// BLAKE3 of the deploy configuration.
    pub config_digest: String,
    /// The commit.
    pub git_sha: String,
}

/// What a deploy checked, for the ledger: smoke tests, and a canary's steps.
pub(crate) struct Seen {
    pub(crate) smoke: Vec<SmokeCheck>,
    pub(crate) analysis: Vec<crate::canary::StepAnalysis>,
}

impl Seen {
    /// A record of why something was decided, with no smoke tests.
    pub(crate) fn because(step: crate::canary::StepAnalysis) -> Seen {
        Seen { smoke: Vec::new(), analysis: vec![step] }
    }
}

impl From<Vec<SmokeCheck>> for Seen {
    fn from(smoke: Vec<SmokeCheck>) -> Seen {
        Seen { smoke, analysis: Vec::new() }
    }
}

/// What a deploy did, for the exit code and the summary.
#[derive(Clone, Debug)]
pub struct Report {
    /// The events recorded, in order.
    pub events: Vec<Event>,
    /// 0 live, 1 rejected or rolled back.
    pub exit_code: u8,
}

/// Deploys releases to environments and records it.
pub struct Deployer {
    /// The repository root.
    pub root: PathBuf,
    /// The environments.
    pub envs: BTreeMap<String, EnvConfig>,
    /// The artifact remote.
    pub remote: Arc<dyn Remote>,
    /// Who is acting.
    pub who: String,
    /// The webhook to tell, if any (a secret).
    pub webhook: Option<String>,
    /// Where progress lines go.
    pub say: Box<dyn Fn(&str) + Send + Sync>,
    /// For crash tests only: kill this process (SIGKILL) when a deploy reaches this phase.
    pub kill_at: Option<Phase>,
    /// For crash tests only: send this process SIGTERM when a deploy reaches this phase.
    pub term_at: Option<Phase>,
}

impl Deployer {
    fn ledger(&self) -> Ledger {
        Ledger::new(self.remote.clone(), self.root.join(engine::STATE_DIR).join("ledger"))
    }

    pub(crate) fn blobs(&self) -> Blobs {
        Blobs::new(self.remote.clone(), self.root.join(engine::STATE_DIR).join("blobs"))
    }

    /// The configuration of environment `name`, or an error that lists the known ones.
    pub fn env(&self, name: &str) -> Result<&EnvConfig, DeployError> {
        self.envs.get(name).ok_or_else(|| DeployError::UnknownEnvironment {
            env: name.into(),
            known: self.envs.keys().cloned().collect(),
        })
    }

    /// Every valid event of the ledger (from the local copy when the remote is unreachable).
    pub async fn events(&self) -> Result<Vec<Event>, DeployError> {
        Ok(self.read_ledger().await?.events)
    }

    /// Reads the ledger, saying which entries are skipped as corrupt.
    /// The router that serves `env`, as its state file names it; an error when none runs.
    pub(crate) fn router_of(&self, env: &str) -> Result<Router, DeployError> {
        let file = target::env_dir(&self.root, env).join("router.json");
        std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Router>(&b).ok())
            .ok_or_else(|| DeployError::NothingLive { env: env.into() })
    }

    /// Puts `release` on `env` as `kind`, under the environment's lock (an automatic rollback).
    pub(crate) async fn rollback_to(
        &self,
        env: &str,
        release: Release,
        kind: EventKind,
    ) -> Result<Report, DeployError> {
        let lock = lock::acquire(&self.remote, env, &self.who).await?;
        self.reconcile(env).await?;
        let events = self.read_ledger().await?.events;
        self.put_live(env, release, kind, None, &events, Some(&lock)).await
    }

    pub(crate) async fn read_ledger(&self) -> Result<ledger::Read, DeployError> {
        let read = self.ledger().read().await?;
        for bad in &read.corrupt {
            (self.say)(&format!("warning: skipping a ledger entry that cannot be used: {bad}"));
        }
        Ok(read)
    }

    /// Deploys `candidate` to `env` as a new release (or the existing one with the same files).
    pub async fn deploy(&self, env: &str, candidate: &Candidate) -> Result<Report, DeployError> {
        self.env(env)?;
        let lock = lock::acquire(&self.remote, env, &self.who).await?;
        self.reconcile(env).await?;
        let events = self.read_ledger().await?.events;
        let files = self.blobs().store(&candidate.files).await?;
        let mut release = Release {
            version: String::new(),
            image_digest: candidate.image_digest.clone(),
            image_config: candidate.image_config.clone(),
            model_digest: files.get("model.onnx").cloned().unwrap_or_default(),
            serve_digest: files.get("slipway-serve").cloned().unwrap_or_default(),
            config_digest: candidate.config_digest.clone(),
            git_sha: candidate.git_sha.clone(),
            tags: candidate.tags.clone(),
            files,
        };
        let known = ledger::releases(&events);
        release.version = match known.iter().find(|r| r.same_artifacts(&release)) {
            Some(same) => same.version.clone(),
            None => {
                let last = known.iter().filter_map(|r| crate::names::version_number(&r.version)).max().unwrap_or(0);
                format!("v{}", last + 1)
            }
        };
        release.check().map_err(|detail| anyhow::anyhow!("the release to deploy is not valid: {detail}"))?;
        self.put_live(env, release, EventKind::Deploy, None, &events, Some(&lock)).await
    }

    /// Moves the release live on `from` to `to`, exactly as it is.
    pub async fn promote(&self, from: &str, to: &str, approval: Approval) -> Result<Report, DeployError> {
        self.env(from)?;
        self.env(to)?;
        let lock = lock::acquire(&self.remote, to, &self.who).await?;
        self.reconcile(to).await?;
        let events = self.read_ledger().await?.events;
        let release = ledger::live(&events, from).ok_or_else(|| DeployError::NothingLive { env: from.into() })?;
        self.put_live(to, release, EventKind::Promote, Some(approval), &events, Some(&lock)).await
    }

    /// The pause of the last canary on `to` that waited for approval, when it is over and of
    /// the release a promotion from `from` would move now: someone who meant to approve it would
    /// start another canary of the same release instead.
    pub async fn ended_wait(&self, from: &str, to: &str) -> Result<Option<crate::approve::Pause>, DeployError> {
        if crate::approve::pending(&*self.remote, to).await?.is_some() {
            return Ok(None);
        }
        let Some(last) = crate::approve::newest(&*self.remote, to).await? else { return Ok(None) };
        // Still running, past its approval: the promotion meets the lock and is refused anyway.
        if crate::approve::still_runs(&*self.remote, &last).await? {
            return Ok(None);
        }
        let moved = ledger::live(&self.events().await?, from);
        Ok(moved.filter(|r| r.version == last.version).map(|_| last))
    }

    /// Puts the recorded release `spec` back on `env`. Works from the local copies of the ledger
    /// and the release files when the remote is unreachable.
    pub async fn rollback(&self, spec: &str, env: &str) -> Result<Report, DeployError> {
        self.env(env)?;
        // Held to the end of the rollback; without the remote there is no lock to take.
        let lock = match lock::acquire(&self.remote, env, &self.who).await {
            Err(DeployError::Store(store::StoreError::Unreachable { .. })) => {
                (self.say)(
                    "warning: the remote is unreachable: rolling back from the local copies, without the deploy lock",
                );
                None
            }
            other => Some(other?),
        };
        if lock.is_some() {
            self.reconcile(env).await?;
        }
        let read = self.read_ledger().await?;
        let (events, offline) = (read.events, read.offline);
        if offline {
            (self.say)(
                "warning: the ledger is read from the local copy; this rollback is recorded when the remote is back",
            );
        }
        let release = ledger::find(&events, spec)?;
        self.put_live(env, release, EventKind::Rollback, None, &events, lock.as_ref()).await
    }

    /// The environment's router, started if it is not running.
    pub(crate) async fn router(&self, env: &str, config: &EnvConfig, bundle: &Path) -> Result<Router, DeployError> {
        let dir = target::env_dir(&self.root, env);
        let file = dir.join("router.json");
        let bytes = std::fs::read(&file).ok();
        let known = bytes.as_ref().and_then(|b| serde_json::from_slice::<Router>(b).ok());
        let stale = known.is_none();
        if let Some(router) = known
            && router.answers().await
        {
            return Ok(router);
        }
        let old_pid =
            bytes.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).and_then(|v| v["pid"].as_u64());
        // Only a process that is a router: after a reboot the pid may be anyone's.
        let is_router = |pid: u64| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(14).any(|w| w == b"slipway-router"))
        };
        // Routers that hold the stable port but that no one can reach through `router.json`: one
        // started by a deploy killed before it wrote the file, a hung one, or one from an older
        // Slipway (no admin token). Each is stopped before a new one takes the port.
        let mut orphans = target::routers_of(&dir);
        if stale && let Some(pid) = old_pid.filter(|p| is_router(*p)).and_then(|p| u32::try_from(p).ok()) {
            orphans.push(pid);
        }
        orphans.sort_unstable();
        orphans.dedup();
        for pid in orphans {
            (self.say)(&format!("{env}: stopping a router that router.json does not reach (pid {pid})"));
            let old = target::Backend {
                version: "router".into(),
                addr: ([127, 0, 0, 1], config.port).into(),
                handle: target::Handle::Pid(pid),
            };
            target::stop(&old).await.map_err(DeployError::Target)?;
        }
        // A router just stopped may hold the port for a moment longer while it exits.
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !free(config.port) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let router =
            Router::start(&bundle.join("slipway-router"), config.port, &dir).await.map_err(DeployError::Target)?;
        engine::write_atomic(&file, &serde_json::to_vec_pretty(&router).map_err(anyhow::Error::from)?)
            .map_err(anyhow::Error::from)?;
        Ok(router)
    }

    /// Stops what runs for `env`: its backend and its router.
    pub async fn stop(&self, env: &str) -> Result<(), DeployError> {
        let dir = target::env_dir(&self.root, env);
        if let Some(live) =
            std::fs::read(dir.join("live.json")).ok().and_then(|b| serde_json::from_slice::<Backend>(&b).ok())
        {
            target::stop(&live).await.map_err(DeployError::Target)?;
            let _ = std::fs::remove_file(dir.join("live.json"));
        }
        if let Some(router) =
            std::fs::read(dir.join("router.json")).ok().and_then(|b| serde_json::from_slice::<Router>(&b).ok())
        {
            router.shutdown().await.map_err(DeployError::Target)?;
            let _ = std::fs::remove_file(dir.join("router.json"));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record(
        &self,
        env: &str,
        release: &Release,
        kind: EventKind,
        outcome: Outcome,
        previous: &Option<Release>,
        approval: Option<Approval>,
        seen: impl Into<Seen>,
    ) -> Result<Event, DeployError> {
        let Seen { smoke, analysis } = seen.into();
        let event = Event {
            schema: ledger::EVENT_SCHEMA.into(),
            seq: 0,
            kind,
            outcome,
            env: env.into(),
            release: release.clone(),
            previous: previous.as_ref().map(|p| p.version.clone()),
            who: self.who.clone(),
            at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            approval,
            smoke,
            analysis,
        };
        // Nothing is written, here or kept for later, that a reader of the ledger would refuse.
        let numbered = Event { seq: 1, ..event.clone() };
        numbered.check().map_err(|e| {
            anyhow::anyhow!("{env}: the record of {} is not valid, so it was not written: {e}", release.version)
        })?;
        let recorded = match self.ledger().append(event.clone()).await {
            Ok(e) => e,
            Err(DeployError::RemoteUnreachable { .. } | DeployError::Store(store::StoreError::Unreachable { .. })) => {
                self.ledger().keep_pending(&event)?;
                event
            }
            Err(e) => return Err(e),
        };
        if let Some(url) = &self.webhook
            && let Err(e) = notify::send(url, &recorded).await
        {
            (self.say)(&format!("warning: the webhook was not told: {e}"));
        }
        Ok(recorded)
    }
}

/// A model digest, short, for progress lines.
pub(crate) fn short(digest: &str) -> String {
    format!("model {}", &digest[..digest.len().min(12)])
}
