//! Crash-consistent deploys. Before each step that changes what runs, a deploy writes what it is
//! doing to `intent.json` in the environment's state directory: the release, what was live,
//! the candidate's server once it exists, and the phase. A deploy that ends removes it. A deploy
//! killed half-way leaves it behind, and the next deploy, promote or rollback of the
//! environment (holding the lock) reads it and puts things right before anything else:
//!
//! - killed before the switch: the candidate's server is stopped, the environment is as it was,
//!   and the ledger records the attempt as rejected;
//! - killed after the switch, before the soak passed: the previous release is put back on the
//!   router, the candidate is stopped, and the ledger records the release as rolled back;
//! - killed after the soak passed, before the ledger write: the release stays, and the ledger
//!   records it as live.
//!
//! The router is the truth of what serves; `live.json` and the ledger are brought in line with
//! it, and every repair is said.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::flow::Deployer;
use crate::ledger::{Approval, Event, EventKind, Outcome, Release, SmokeCheck};
use crate::target::{self, Backend, Router};
use crate::{DeployError, TargetKind};

/// Where a deploy is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Starting the candidate's server.
    Starting,
    /// Smoke-testing the candidate beside the live release.
    Checking,
    /// The router has just been switched to the candidate.
    Switched,
    /// Checking the candidate again through the stable port.
    Soaking,
    /// The candidate failed after the switch; the previous release is being put back.
    RollingBack,
    /// The soak passed and the old server is stopped; the ledger write is next.
    Recording,
}

/// What a deploy in progress is doing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Intent {
    /// Deploy, promote or rollback.
    pub kind: EventKind,
    /// The release being put live.
    pub release: Release,
    /// Its approval, for a promotion.
    pub approval: Option<Approval>,
    /// The release live before, per the ledger.
    pub previous: Option<Release>,
    /// The server that was live before, per `live.json`.
    pub previous_backend: Option<Backend>,
    /// The candidate's server, once started.
    pub candidate: Option<Backend>,
    /// Where the candidate's server listens, chosen before it starts: a server started just
    /// before a kill, and not yet recorded as `candidate`, is found by it.
    #[serde(default)]
    pub candidate_addr: Option<std::net::SocketAddr>,
    /// Where the deploy is.
    pub phase: Phase,
}

const INTENT_FILE: &str = "intent.json";
const LIVE_FILE: &str = "live.json";

/// The server `live.json` names for the environment in `dir`, if any.
pub fn live_backend(dir: &Path) -> Option<Backend> {
    std::fs::read(dir.join(LIVE_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Records `backend` as what the environment in `dir` serves.
pub fn set_live(dir: &Path, backend: &Backend) -> Result<(), DeployError> {
    let bytes = serde_json::to_vec_pretty(backend).map_err(anyhow::Error::from)?;
    engine::write_atomic(&dir.join(LIVE_FILE), &bytes).map_err(anyhow::Error::from)?;
    Ok(())
}

impl Deployer {
    /// Writes `intent` at `phase`; with [`Deployer::kill_at`] set to that phase, the process
    /// then kills itself (SIGKILL), for the crash tests.
    pub(crate) fn checkpoint(&self, env: &str, intent: &mut Intent, phase: Phase) -> Result<(), DeployError> {
        intent.phase = phase;
        let bytes = serde_json::to_vec_pretty(intent).map_err(anyhow::Error::from)?;
        engine::write_atomic(&target::env_dir(&self.root, env).join(INTENT_FILE), &bytes)
            .map_err(anyhow::Error::from)?;
        // The starting phase is interrupted once the server is started (see `started`).
        if phase != Phase::Starting {
            self.interrupt_at(phase);
        }
        Ok(())
    }

    /// Where the test hooks interrupt the starting phase: the candidate's server is running,
    /// and only `candidate_addr` records it.
    pub(crate) fn started(&self) {
        self.interrupt_at(Phase::Starting);
    }

    fn interrupt_at(&self, phase: Phase) {
        let signal = match (self.kill_at == Some(phase), self.term_at == Some(phase)) {
            (true, _) => "KILL",
            (_, true) => "TERM",
            _ => return,
        };
        let Ok(sh) = xshell::Shell::new() else { return };
        let pid = std::process::id().to_string();
        let _ = xshell::cmd!(sh, "kill -{signal} {pid}").quiet().run();
        if signal == "KILL" {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }

    /// Runs `work` (a deploy, promote or rollback of `env`) until it ends or this process gets
    /// SIGINT or SIGTERM. On a signal the work is stopped where it is, what it left half-done is
    /// repaired under the lock, and the error says so: the lock is released and the environment
    /// consistent either way.
    pub async fn until_signal(
        &self,
        env: &str,
        work: impl std::future::Future<Output = Result<crate::Report, DeployError>>,
    ) -> Result<crate::Report, DeployError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(anyhow::Error::from)?;
        let mut int = signal(SignalKind::interrupt()).map_err(anyhow::Error::from)?;
        let name = tokio::select! {
            done = work => return done,
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        (self.say)(&format!("{name}: stopping the change to {env} and putting it in order"));
        // The work and its lock are dropped: take the lock again to repair.
        let _lock = crate::lock::acquire(&self.remote, env, &self.who).await?;
        self.reconcile(env).await?;
        Err(DeployError::Interrupted { signal: name.into(), env: env.into() })
    }

    /// The deploy ended, however it ended: there is nothing to repair.
    pub(crate) fn finished(&self, env: &str) {
        let _ = std::fs::remove_file(target::env_dir(&self.root, env).join(INTENT_FILE));
    }

    /// Puts right what a deploy of `env` that was killed half-way left behind, and records it.
    /// Returns the event it recorded, if there was anything to repair. Call with the lock held.
    pub async fn reconcile(&self, env: &str) -> Result<Option<Event>, DeployError> {
        let dir = target::env_dir(&self.root, env);
        let Some(bytes) = std::fs::read(dir.join(INTENT_FILE)).ok() else { return Ok(None) };
        let Ok(intent) = serde_json::from_slice::<Intent>(&bytes) else {
            (self.say)(&format!("warning: {env}: an unreadable intent.json was left by a deploy; removing it"));
            self.finished(env);
            return Ok(None);
        };
        intent
            .release
            .check()
            .map_err(|d| anyhow::anyhow!("{env}: the interrupted deploy's release is not valid: {d}"))?;
        let router =
            std::fs::read(dir.join("router.json")).ok().and_then(|b| serde_json::from_slice::<Router>(&b).ok());
        let serving = match &router {
            Some(r) => r.backend().await.ok().flatten(),
            None => None,
        };
        let candidate_serving = intent.candidate.as_ref().is_some_and(|c| Some(c.addr) == serving);
        let outcome = match intent.phase {
            Phase::Starting | Phase::Checking => Outcome::Rejected,
            Phase::Recording if candidate_serving => Outcome::Live,
            Phase::Switched | Phase::Soaking | Phase::RollingBack | Phase::Recording => Outcome::RolledBack,
        };
        let kind = self.env(env).map_or(TargetKind::Local, |e| e.target);
        let mut done = Vec::new();
        match outcome {
            Outcome::Live => {
                let candidate = intent.candidate.clone().expect("serving, so started");
                set_live(&dir, &candidate)?;
                if let Some(old) =
                    intent.previous_backend.as_ref().filter(|o| target::alive(&o.handle) && o.addr != candidate.addr)
                {
                    target::stop(old).await.map_err(DeployError::Target)?;
                    done.push(format!("stopped the previous server {}", old.addr));
                }
            }
            Outcome::Rejected | Outcome::RolledBack => {
                // A canary share to a candidate that is about to stop goes back to stable.
                // Before the candidate stops: a router that still gave it a share would send that
                // share to a stopped server. A router that does not answer routes nothing.
                if let Some(router) = &router
                    && router.answers().await
                {
                    router.clear_canary().await.map_err(DeployError::Target)?;
                    router.clear_shadow().await.map_err(DeployError::Target)?;
                }
                if candidate_serving && let Some(router) = &router {
                    done.push(self.put_previous_back(env, &intent, router).await?);
                }
                if let Some(c) = intent.candidate.as_ref().filter(|c| target::alive(&c.handle)) {
                    target::stop(c).await.map_err(DeployError::Target)?;
                    done.push(format!("stopped the candidate's server {}", c.addr));
                } else if intent.candidate.is_none()
                    && let Some(addr) = intent.candidate_addr
                    && let Some(c) = target::find_started(kind, &intent.release.version, addr)
                {
                    target::stop(&c).await.map_err(DeployError::Target)?;
                    done.push(format!("stopped the candidate's server {}, started just before the stop", c.addr));
                }
            }
        }
        let phase =
            serde_json::to_value(intent.phase).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let detail = format!(
            "the {} of {} stopped while {phase}; the router {}; {}",
            format!("{:?}", intent.kind).to_lowercase(),
            intent.release.version,
            if candidate_serving { "was on it" } else { "was not on it" },
            if done.is_empty() { "nothing to undo".to_string() } else { done.join("; ") }
        );
        (self.say)(&format!("{env}: repaired an interrupted deploy: {detail}"));
        let check = SmokeCheck { name: "interrupted".into(), passed: outcome == Outcome::Live, detail };
        let event = self
            .record(env, &intent.release, intent.kind, outcome, &intent.previous, intent.approval.clone(), vec![check])
            .await?;
        self.finished(env);
        Ok(Some(event))
    }

    /// Points the router back at the release that was live before; says what it did.
    async fn put_previous_back(&self, env: &str, intent: &Intent, router: &Router) -> Result<String, DeployError> {
        let dir = target::env_dir(&self.root, env);
        let backend = match intent.previous_backend.clone().filter(|b| target::alive(&b.handle)) {
            Some(b) => b,
            None => {
                let Some(previous) = &intent.previous else {
                    router.shutdown().await.map_err(DeployError::Target)?;
                    let _ = std::fs::remove_file(dir.join(LIVE_FILE));
                    let _ = std::fs::remove_file(dir.join("router.json"));
                    return Ok("there was no release before it, so the environment serves nothing".into());
                };
                let kind = self.env(env)?.target;
                if kind == TargetKind::Kubernetes {
                    return Err(anyhow::anyhow!("kubernetes deploys keep no intent").into());
                }
                let bundle = self.root.join(engine::STATE_DIR).join("releases").join(&previous.version);
                self.blobs().materialise(&previous.files, &bundle).await?;
                target::start(kind, previous, &bundle, &dir.join("logs")).await.map_err(DeployError::Target)?
            }
        };
        router.switch(backend.addr).await.map_err(DeployError::Target)?;
        set_live(&dir, &backend)?;
        Ok(format!("put {} back on the router", backend.version))
    }
}
