//! The deploy protocol, written once for every target: start the release beside the live one
//! and smoke-test it; run the environment's gradual strategy (canary steps or a shadow) where the
//! target has a router; switch; check it again through the stable address for the soak; record
//! it live — or put the previous release back, check that, and record both.
//!
//! A [`Target`] says only how each step is done where the release runs: a router and
//! processes or containers ([`Routed`], the local and docker targets), or manifests applied to a
//! cluster ([`crate::kube::Kube`]). So no target can skip a check, pass an empty smoke set, or
//! record a rollback it did not check.

use crate::canary::Strategy;
use crate::flow::{Deployer, EnvConfig, Report, Seen};
use crate::intent::{Intent, Phase, live_backend, set_live};
use crate::ledger::{Approval, Event, EventKind, Outcome, Release, SmokeCheck};
use crate::target::{self, Backend, Router};
use crate::{DeployError, lock, smoke};

/// How each step of the protocol is done on one kind of target.
pub(crate) trait Target {
    /// Starts the release beside the live one and returns its own address, to be checked before
    /// any user sees it; `None` where the target cannot run it beside (a cluster rolls it out
    /// in place, behind readiness), so the checks after the switch are its only ones.
    async fn start(&mut self) -> Result<Option<String>, DeployError>;
    /// The router and the candidate, for a canary or a shadow; `None` without a router. From
    /// then on the router may send the candidate a share.
    fn gradual(&mut self) -> Option<(&Router, &Backend)>;
    /// Stops a candidate that is not going live: every request back to the live release first.
    async fn discard(&mut self) -> Result<(), DeployError>;
    /// Makes the candidate the live release.
    async fn switch(&mut self) -> Result<(), DeployError>;
    /// Where users reach the environment.
    fn live_url(&self) -> String;
    /// Stops what served before, once the new release held up.
    async fn retire(&mut self) -> Result<(), DeployError>;
    /// Puts `previous` back after the new release failed after the switch.
    async fn restore(&mut self, previous: &Release) -> Result<(), DeployError>;
    /// Records, for a deploy killed from here on, where the protocol is.
    fn reached(&mut self, _phase: Phase) -> Result<(), DeployError> {
        Ok(())
    }
    /// The change is over, whatever its outcome.
    fn done(&self) {}
}

/// One change to an environment: what goes live, why, and under which lock.
pub(crate) struct Change<'a> {
    pub env: &'a str,
    pub config: &'a EnvConfig,
    pub release: Release,
    pub kind: EventKind,
    pub approval: Option<Approval>,
    pub previous: Option<Release>,
    pub lock: Option<&'a lock::EnvLock>,
}

/// Whether a set of smoke checks passed: an empty set passes nothing.
pub(crate) fn passed(checks: &[SmokeCheck]) -> bool {
    !checks.is_empty() && checks.iter().all(|c| c.passed)
}

impl Deployer {
    /// Puts `release` on `env` as `kind`, through the environment's target.
    pub(crate) async fn put_live(
        &self,
        env: &str,
        release: Release,
        kind: EventKind,
        approval: Option<Approval>,
        events: &[Event],
        lock: Option<&lock::EnvLock>,
    ) -> Result<Report, DeployError> {
        let config = self.env(env)?.clone();
        let previous = crate::ledger::live(events, env);
        let change = Change { env, config: &config, release, kind, approval, previous, lock };
        if config.target == crate::TargetKind::Kubernetes {
            let mut kube = crate::kube::Kube::new(env, &config, &change.release)?;
            return self.run_change(&mut kube, change).await;
        }
        let mut routed = Routed::new(self, &change).await?;
        self.run_change(&mut routed, change).await
    }

    /// The protocol itself. A change that ends in an error leaves its intent for the next
    /// deploy to repair (see [`crate::intent`]); one that ends, in any outcome, clears it.
    async fn run_change(&self, t: &mut impl Target, c: Change<'_>) -> Result<Report, DeployError> {
        let report = self.run_steps(t, &c).await?;
        t.done();
        Ok(report)
    }

    async fn run_steps(&self, t: &mut impl Target, c: &Change<'_>) -> Result<Report, DeployError> {
        let Change { env, config, release, kind, .. } = c;
        let (env, kind) = (*env, *kind);
        let held = || c.lock.map_or(Ok(()), lock::EnvLock::ensure_held);
        let record = |outcome: Outcome, seen: Seen| {
            self.record(env, release, kind, outcome, &c.previous, c.approval.clone(), seen)
        };
        let mut analysis = Vec::new();
        let mut checks = Vec::new();
        if let Some(url) = t.start().await? {
            checks = smoke::run(&url, &config.smoke, &release.model_digest).await;
            if !passed(&checks) {
                t.discard().await?;
                let event = record(Outcome::Rejected, checks.into()).await?;
                (self.say)(&format!("{env}: {} failed its smoke tests; {env} is unchanged", release.version));
                return Ok(Report { events: vec![event], exit_code: 1 });
            }
        }
        if let Err(lost) = held() {
            t.discard().await?;
            return Err(lost);
        }
        // A rollback puts back what already served: at once, never through a canary or shadow.
        let gradual = matches!(kind, EventKind::Deploy | EventKind::Promote) && config.strategy != Strategy::BlueGreen;
        if gradual {
            let passed = self.gradual(t, c, &mut analysis).await;
            if !matches!(passed, Ok(true)) {
                t.discard().await?;
                passed?;
                let event = record(Outcome::Rejected, Seen { smoke: checks, analysis }).await?;
                let why = event.analysis.last().map_or(String::new(), |a| format!(": {}", a.reason));
                (self.say)(&format!(
                    "{env}: {} was refused before the switch{why}; {env} is unchanged",
                    release.version
                ));
                return Ok(Report { events: vec![event], exit_code: 1 });
            }
            if let Err(lost) = held() {
                t.discard().await?;
                return Err(lost);
            }
        }
        t.switch().await?;
        let live = t.live_url();
        let after = smoke::soak(&live, &config.smoke, &release.model_digest).await;
        if passed(&after) {
            t.retire().await?;
            t.reached(Phase::Recording)?;
            held()?;
            let event = record(Outcome::Live, Seen { smoke: after, analysis }).await?;
            (self.say)(&format!("{env}: {} is live on {live}", release.version));
            return Ok(Report { events: vec![event], exit_code: 0 });
        }
        t.reached(Phase::RollingBack)?;
        // The steps that led to the switch stay with the record of the soak that failed after it.
        let failed = record(Outcome::RolledBack, Seen { smoke: after, analysis }).await?;
        let Some(previous) = c.previous.clone() else {
            (self.say)(&format!(
                "{env}: {} failed after the switch and there is no previous release to put back",
                release.version
            ));
            return Ok(Report { events: vec![failed], exit_code: 1 });
        };
        (self.say)(&format!("{env}: {} failed after the switch; putting {} back", release.version, previous.version));
        t.restore(&previous).await?;
        // What was put back is checked like anything else that goes live, and recorded as it is.
        let checks = smoke::run(&t.live_url(), &config.smoke, &previous.model_digest).await;
        let outcome = if passed(&checks) { Outcome::Live } else { Outcome::RolledBack };
        let back = self.record(env, &previous, EventKind::AutoRollback, outcome, &None, None, checks).await?;
        Ok(Report { events: vec![failed, back], exit_code: 1 })
    }

    /// The environment's canary or shadow; `Ok(false)` when the candidate did not pass it.
    async fn gradual(
        &self,
        t: &mut impl Target,
        c: &Change<'_>,
        analysis: &mut Vec<crate::canary::StepAnalysis>,
    ) -> Result<bool, DeployError> {
        let Some((router, candidate)) = t.gradual() else {
            return Err(anyhow::anyhow!(
                "{}: this target has no router, so it cannot run a {:?} release",
                c.env,
                c.config.strategy
            )
            .into());
        };
        let run = crate::progressive::Run { env: c.env, version: &c.release.version, lock: c.lock };
        if c.config.strategy == Strategy::Canary {
            let plan = c.config.canary.clone().unwrap_or_default();
            return self.canary(&run, router, candidate, &plan, analysis).await;
        }
        let plan = c.config.shadow.clone().unwrap_or_default();
        let judged = self.shadow(&run, router, candidate, &plan, analysis).await;
        let cleared = router.clear_shadow().await.map_err(DeployError::Target);
        judged.and_then(|ok| cleared.map(|()| ok))
    }
}

/// The local and docker targets: the release's server (a process or a container) beside the
/// live one, and the environment's router in front, which owns the stable port.
pub(crate) struct Routed<'a> {
    d: &'a Deployer,
    env: &'a str,
    config: &'a EnvConfig,
    bundle: std::path::PathBuf,
    router: Router,
    intent: Intent,
    candidate: Option<Backend>,
    /// Whether a canary or shadow may have given the candidate a share.
    shared: bool,
    /// What served before the switch, while it still runs.
    old: Option<Backend>,
}

impl<'a> Routed<'a> {
    /// Materialises the release and makes sure the environment's router runs.
    pub(crate) async fn new(d: &'a Deployer, c: &Change<'a>) -> Result<Routed<'a>, DeployError> {
        let bundle = d.root.join(engine::STATE_DIR).join("releases").join(&c.release.version);
        d.blobs().materialise(&c.release.files, &bundle).await?;
        let dir = target::env_dir(&d.root, c.env);
        let router = d.router(c.env, c.config, &bundle).await?;
        let addr = target::pick_addr().map_err(DeployError::Target)?;
        let intent = Intent {
            kind: c.kind,
            release: c.release.clone(),
            approval: c.approval.clone(),
            previous: c.previous.clone(),
            previous_backend: live_backend(&dir),
            candidate: None,
            candidate_addr: Some(addr),
            phase: Phase::Starting,
        };
        Ok(Routed {
            d,
            env: c.env,
            config: c.config,
            bundle,
            router,
            intent,
            candidate: None,
            shared: false,
            old: None,
        })
    }

    fn dir(&self) -> std::path::PathBuf {
        target::env_dir(&self.d.root, self.env)
    }

    async fn point_router_at(&self, backend: &Backend) -> Result<(), DeployError> {
        if let target::Switched::Undrained(said) =
            self.router.switch(backend.addr).await.map_err(DeployError::Target)?
        {
            (self.d.say)(&format!("warning: {}: {said}", self.env));
        }
        Ok(())
    }
}

impl Target for Routed<'_> {
    async fn start(&mut self) -> Result<Option<String>, DeployError> {
        let (d, env) = (self.d, self.env);
        let release = self.intent.release.clone();
        let addr = self.intent.candidate_addr.ok_or_else(|| anyhow::anyhow!("no address was picked"))?;
        d.checkpoint(env, &mut self.intent, Phase::Starting)?;
        (d.say)(&format!("{env}: starting {} ({})", release.version, crate::flow::short(&release.model_digest)));
        let logs = self.dir().join("logs");
        // A server that did not start or get ready is stopped by `target`: nothing to repair.
        let spawned = target::spawn_at(self.config.target, &release, &self.bundle, addr, &logs)
            .inspect_err(|_| d.finished(env))
            .map_err(DeployError::Target)?;
        d.started();
        self.intent.candidate = Some(spawned.clone());
        d.checkpoint(env, &mut self.intent, Phase::Checking)?;
        let ready = target::ready(spawned, &release.version, &logs).await;
        let candidate = ready.inspect_err(|_| d.finished(env)).map_err(DeployError::Target)?;
        let url = format!("http://{}", candidate.addr);
        self.candidate = Some(candidate);
        Ok(Some(url))
    }

    fn gradual(&mut self) -> Option<(&Router, &Backend)> {
        let candidate = self.candidate.as_ref()?;
        self.shared = true;
        Some((&self.router, candidate))
    }

    async fn discard(&mut self) -> Result<(), DeployError> {
        // A router that kept a share would send it to a stopped server: it is cleared first,
        // and if it cannot be, the candidate keeps running.
        if self.shared
            && let Err(e) = self.router.clear_canary().await
        {
            (self.d.say)(&format!("{}: the router kept the canary's share; the candidate keeps running", self.env));
            return Err(DeployError::Target(e));
        }
        if let Some(candidate) = self.candidate.take() {
            target::stop(&candidate).await.map_err(DeployError::Target)?;
        }
        Ok(())
    }

    async fn switch(&mut self) -> Result<(), DeployError> {
        let (d, env) = (self.d, self.env);
        let candidate = self.candidate.clone().ok_or_else(|| anyhow::anyhow!("{env}: no candidate to switch to"))?;
        let dir = self.dir();
        let old = live_backend(&dir);
        // The router keeps what it saw of the old backend: a watch compares the new one with it.
        if let Some(o) = &old {
            let _ = std::fs::write(dir.join("previous-backend"), o.addr.to_string());
        }
        self.point_router_at(&candidate).await?;
        d.checkpoint(env, &mut self.intent, Phase::Switched)?;
        set_live(&dir, &candidate)?;
        self.old = old.filter(|o| target::alive(&o.handle));
        if std::mem::take(&mut self.shared) {
            // The candidate is the backend now; a canary share for it is moot.
            self.router.clear_canary().await.map_err(DeployError::Target)?;
        }
        d.checkpoint(env, &mut self.intent, Phase::Soaking)
    }

    fn live_url(&self) -> String {
        format!("http://{}", self.router.public)
    }

    async fn retire(&mut self) -> Result<(), DeployError> {
        if let Some(old) = self.old.take() {
            target::stop(&old).await.map_err(DeployError::Target)?;
        }
        Ok(())
    }

    async fn restore(&mut self, previous: &Release) -> Result<(), DeployError> {
        let dir = self.dir();
        // The old server if it still runs, else the previous release started again.
        let backend = match self.old.take() {
            Some(old) => old,
            None => {
                let bundle = self.d.root.join(engine::STATE_DIR).join("releases").join(&previous.version);
                self.d.blobs().materialise(&previous.files, &bundle).await?;
                target::start(self.config.target, previous, &bundle, &dir.join("logs"))
                    .await
                    .map_err(DeployError::Target)?
            }
        };
        let failing = live_backend(&dir);
        self.point_router_at(&backend).await?;
        set_live(&dir, &backend)?;
        if let Some(failing) = failing {
            target::stop(&failing).await.map_err(DeployError::Target)?;
        }
        self.candidate = None;
        Ok(())
    }

    fn reached(&mut self, phase: Phase) -> Result<(), DeployError> {
        self.d.checkpoint(self.env, &mut self.intent, phase)
    }

    fn done(&self) {
        self.d.finished(self.env);
    }
}
