//! The gradual strategies of a deploy, between the smoke tests and the switch: the canary's
//! steps and the shadow, each judged from what the router saw (see [`crate::canary`]), each
//! printed and told to the webhook as it ends; and the hold of a step that waits for approval
//! (see [`crate::approve`]).

use std::time::{Duration, Instant};

use crate::DeployError;
use crate::approve;
use crate::canary::{CanaryConfig, Reading, ShadowConfig, Step, StepAnalysis, Verdict, judge};
use crate::flow::Deployer;
use crate::target::{Backend, Router};

/// Which deploy runs the gradual strategy: its release and its hold on the environment's lock.
pub(crate) struct Run<'a> {
    pub env: &'a str,
    pub version: &'a str,
    /// The deploy's hold on the environment's lock (a pause is named by it).
    pub lock: Option<&'a crate::lock::EnvLock>,
}

impl Run<'_> {
    /// Fails once another deploy took the lock over, as the lock's heartbeat last found it
    /// (every [`crate::lock::BEAT_EVERY`]).
    fn held(&self) -> Result<(), DeployError> {
        self.lock.map_or(Ok(()), crate::lock::EnvLock::ensure_held)
    }
}

impl Deployer {
    /// The canary steps: a share of live requests to `candidate`, then an analysis of each step
    /// against stable over the same time. `Ok(false)` when a step failed (or stayed
    /// inconclusive where that fails); every step is pushed onto `analysis`.
    pub(crate) async fn canary(
        &self,
        run: &Run<'_>,
        router: &Router,
        candidate: &Backend,
        plan: &CanaryConfig,
        analysis: &mut Vec<StepAnalysis>,
    ) -> Result<bool, DeployError> {
        use crate::canary::{Inconclusive, MAX_WAITS, pause};
        let env = run.env;
        let Some(stable) = router.backend().await.map_err(DeployError::Target)? else {
            (self.say)(&format!("{env}: nothing is live yet, so the first release takes every request at once"));
            return Ok(true);
        };
        let (stable, name) = (stable.to_string(), candidate.addr.to_string());
        for (index, step) in plan.steps.iter().enumerate() {
            router.set_canary(candidate.addr, step.weight).await.map_err(DeployError::Target)?;
            // One window per step: a wait for more traffic adds to what the step saw.
            let before = router.reading().await.map_err(DeployError::Target)?;
            let started = std::time::Instant::now();
            let mut waits = 0;
            loop {
                // Judged every second too: a candidate that already fails with enough requests
                // is aborted at once, not at the end of its pause.
                let end = std::time::Instant::now() + pause(step);
                let (c, s, verdict, reason) = loop {
                    let left = end.saturating_duration_since(std::time::Instant::now());
                    tokio::time::sleep(left.min(std::time::Duration::from_secs(1))).await;
                    run.held()?;
                    let after = router.reading().await.map_err(DeployError::Target)?;
                    let (c, s) = (after.since(&before, &name), after.since(&before, &stable));
                    let (verdict, reason) = judge(&c, &s, &plan.analysis);
                    if verdict == Verdict::Failed || std::time::Instant::now() >= end {
                        break (c, s, verdict, reason);
                    }
                };
                let ms = |p: Option<f64>| p.map_or("-".to_string(), |p| format!("{p:.1} ms"));
                (self.say)(&format!(
                    "{env}: canary {}%: {} requests, error rate {:.3}, p99 {} (stable: {} requests, p99 {}): {}: {reason}",
                    step.weight,
                    c.requests,
                    c.error_rate,
                    ms(c.p99_ms),
                    s.requests,
                    ms(s.p99_ms),
                    serde_json::to_value(verdict).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
                ));
                let judged = StepAnalysis {
                    kind: "canary".into(),
                    agreement: None,
                    min_agreement: None,
                    approved: None,
                    weight: step.weight,
                    seconds: started.elapsed().as_secs_f64(),
                    verdict,
                    reason,
                    candidate: c,
                    stable: s,
                    thresholds: plan.analysis.clone(),
                };
                let goes_on = match (verdict, plan.analysis.inconclusive) {
                    (Verdict::Successful, _) | (Verdict::Inconclusive, Inconclusive::Pass) => true,
                    (Verdict::Inconclusive, Inconclusive::Wait) => waits < MAX_WAITS,
                    _ => false,
                };
                if !goes_on {
                    back_to_stable(router).await;
                }
                self.tell(run, &judged).await;
                analysis.push(judged);
                match (verdict, plan.analysis.inconclusive) {
                    // A step that passes for want of traffic still waits for its approval.
                    (Verdict::Successful, _) | (Verdict::Inconclusive, Inconclusive::Pass) if step.approval => {
                        let window = Window { stable: &stable, candidate: &name, before: &before, started };
                        if !self.hold(run, router, (index + 1, step), plan, &window, analysis).await? {
                            return Ok(false);
                        }
                        break;
                    }
                    (Verdict::Successful, _) | (Verdict::Inconclusive, Inconclusive::Pass) => break,
                    (Verdict::Inconclusive, Inconclusive::Wait) if waits < MAX_WAITS => waits += 1,
                    _ => return Ok(false),
                }
            }
        }
        Ok(true)
    }

    /// The shadow: a copy of a share of live predictions to `candidate` for a while, its
    /// answers compared with the live ones and dropped; users see only live answers. Then one
    /// verdict, as a canary step's, plus the agreement.
    pub(crate) async fn shadow(
        &self,
        run: &Run<'_>,
        router: &Router,
        candidate: &Backend,
        plan: &ShadowConfig,
        analysis: &mut Vec<StepAnalysis>,
    ) -> Result<bool, DeployError> {
        use crate::canary::{Inconclusive, MAX_WAITS, judge_shadow};
        let env = run.env;
        let Some(stable) = router.backend().await.map_err(DeployError::Target)? else {
            (self.say)(&format!("{env}: nothing is live yet to shadow, so the first release goes live at once"));
            return Ok(true);
        };
        let (stable, name) = (stable.to_string(), candidate.addr.to_string());
        router.set_shadow(candidate.addr, plan.share).await.map_err(DeployError::Target)?;
        // One window: a wait for more traffic adds to what the shadow saw.
        let before = router.reading().await.map_err(DeployError::Target)?;
        let started = std::time::Instant::now();
        let mut waits = 0;
        loop {
            let seconds =
                if plan.seconds.is_finite() { plan.seconds.clamp(0.0, crate::canary::MAX_PAUSE_SECONDS) } else { 0.0 };
            let end = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < end {
                tokio::time::sleep(end.saturating_duration_since(Instant::now()).min(Duration::from_secs(1))).await;
                run.held()?;
            }
            let after = router.reading().await.map_err(DeployError::Target)?;
            let (c, s) = (after.since(&before, &name), after.since(&before, &stable));
            let agreement = after.agreement_since(&before, &name);
            let (verdict, reason) = judge_shadow(&c, &s, &agreement, plan);
            (self.say)(&format!(
                "{env}: shadow {}%: {} mirrored, agreement {:.3} over {} rows, error rate {:.3}: {}: {reason}",
                plan.share,
                c.requests,
                agreement.share,
                agreement.rows,
                c.error_rate,
                serde_json::to_value(verdict).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ));
            let judged = StepAnalysis {
                kind: "shadow".into(),
                weight: plan.share,
                seconds: started.elapsed().as_secs_f64(),
                verdict,
                reason,
                candidate: c,
                stable: s,
                thresholds: plan.analysis.clone(),
                agreement: Some(agreement),
                min_agreement: Some(plan.min_agreement),
                approved: None,
            };
            self.tell(run, &judged).await;
            analysis.push(judged);
            match (verdict, plan.analysis.inconclusive) {
                (Verdict::Successful, _) | (Verdict::Inconclusive, Inconclusive::Pass) => return Ok(true),
                (Verdict::Inconclusive, Inconclusive::Wait) if waits < MAX_WAITS => waits += 1,
                _ => return Ok(false),
            }
        }
    }

    /// Holds a canary step at its weight until someone approves it, judging it every second
    /// over the step's whole window: a failure while it waits aborts, and so does no approval
    /// within `approval_timeout_seconds`. `Ok(true)` once approved.
    async fn hold(
        &self,
        run: &Run<'_>,
        router: &Router,
        (number, step): (usize, &Step),
        plan: &CanaryConfig,
        window: &Window<'_>,
        analysis: &mut Vec<StepAnalysis>,
    ) -> Result<bool, DeployError> {
        let env = run.env;
        let lock = run.lock.ok_or_else(|| {
            anyhow::anyhow!(
                "{env}: a canary step that waits for approval needs the deploy lock, and this deploy has none"
            )
        })?;
        let pause = approve::open(&self.remote, &lock.id(), env, run.version, number, step.weight, &self.who).await?;
        let limit = Duration::from_secs_f64(
            plan.approval_timeout_seconds.clamp(1.0, crate::canary::MAX_APPROVAL_TIMEOUT_SECONDS),
        );
        let waiting = format!(
            "waiting for `cargo xtask approve {env}` (at most {}); still judged every second",
            crate::canary::span(limit)
        );
        (self.say)(&format!("{env}: canary {}% holds: {waiting}", step.weight));
        let (mut warned, waited) = (None, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            run.held()?;
            let after = router.reading().await.map_err(DeployError::Target)?;
            let (c, s) = (after.since(window.before, window.candidate), after.since(window.before, window.stable));
            let (verdict, reason) = judge(&c, &s, &plan.analysis);
            // A failure aborts at once, whatever the remote says; and a remote that is slow to
            // answer holds up the next judgement by 2 s at most.
            let read = match verdict {
                Verdict::Failed => Ok(Ok(None)),
                _ => tokio::time::timeout(Duration::from_secs(2), approve::approval(&*self.remote, &pause)).await,
            };
            let approved =
                match read.map_err(|_| DeployError::from(anyhow::anyhow!("the remote did not answer within 2 s"))) {
                    Ok(Ok(a)) => a,
                    // The remote may come back, and a bad object is no approval: the wait goes on,
                    // and so does the analysis, up to the timeout.
                    Ok(Err(e)) | Err(e) => {
                        let said = e.to_string();
                        if warned.as_ref() != Some(&said) {
                            (self.say)(&format!("warning: {env}: no approval could be read, so none is taken: {said}"));
                            warned = Some(said);
                        }
                        None
                    }
                };
            let timed_out = waited.elapsed() >= limit;
            let (verdict, reason) = match (verdict, &approved) {
                (Verdict::Failed, _) => (Verdict::Failed, format!("while it waited for approval: {reason}")),
                (_, Some(a)) => (Verdict::Successful, format!("approved by {} ({}); {reason}", a.by, a.how)),
                _ if timed_out => (Verdict::Failed, format!("no approval within {}", crate::canary::span(limit))),
                _ => continue,
            };
            let held = StepAnalysis {
                kind: "approval".into(),
                weight: step.weight,
                seconds: window.started.elapsed().as_secs_f64(),
                verdict,
                reason,
                candidate: c,
                stable: s,
                thresholds: plan.analysis.clone(),
                agreement: None,
                min_agreement: None,
                approved,
            };
            (self.say)(&format!("{env}: canary {}%: {}", step.weight, held.reason));
            if verdict != Verdict::Successful {
                back_to_stable(router).await;
            }
            self.tell(run, &held).await;
            analysis.push(held);
            return Ok(verdict == Verdict::Successful);
        }
    }

    /// Tells the webhook, if there is one, how a step ended.
    async fn tell(&self, run: &Run<'_>, step: &StepAnalysis) {
        if let Some(url) = &self.webhook
            && let Err(e) = crate::notify::step(url, run.env, run.version, step).await
        {
            (self.say)(&format!("warning: the webhook was not told of the step: {e}"));
        }
    }
}

/// Sends every request back to stable at once, as an aborted canary does before the webhook is
/// told: a slow webhook must not keep users on a failing candidate. A router that cannot be
/// told here is told again when the candidate is discarded, and that one's error is reported.
async fn back_to_stable(router: &Router) {
    let _ = router.clear_canary().await;
}

/// A step's window: the backends' names and the reading it started from.
struct Window<'a> {
    stable: &'a str,
    candidate: &'a str,
    before: &'a Reading,
    started: Instant,
}
