//! The gradual strategies of a deploy, between the smoke tests and the switch: the canary's
//! steps and the shadow, each judged from what the router saw (see [`crate::canary`]).

use crate::DeployError;
use crate::canary::{CanaryConfig, ShadowConfig, StepAnalysis};
use crate::flow::Deployer;
use crate::target::{Backend, Router};

impl Deployer {
    /// The canary steps: a share of live requests to `candidate`, then an analysis of each step
    /// against stable over the same time. `Ok(false)` when a step failed (or stayed
    /// inconclusive where that fails); every step is pushed onto `analysis`.
    pub(crate) async fn canary(
        &self,
        env: &str,
        router: &Router,
        candidate: &Backend,
        plan: &CanaryConfig,
        analysis: &mut Vec<StepAnalysis>,
    ) -> Result<bool, DeployError> {
        use crate::canary::{Inconclusive, MAX_WAITS, Verdict, judge, pause};
        let Some(stable) = router.backend().await.map_err(DeployError::Target)? else {
            (self.say)(&format!("{env}: nothing is live yet, so the first release takes every request at once"));
            return Ok(true);
        };
        let (stable, name) = (stable.to_string(), candidate.addr.to_string());
        for step in &plan.steps {
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
                analysis.push(StepAnalysis {
                    kind: "canary".into(),
                    agreement: None,
                    min_agreement: None,
                    weight: step.weight,
                    seconds: started.elapsed().as_secs_f64(),
                    verdict,
                    reason,
                    candidate: c,
                    stable: s,
                    thresholds: plan.analysis.clone(),
                });
                match (verdict, plan.analysis.inconclusive) {
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
        env: &str,
        router: &Router,
        candidate: &Backend,
        plan: &ShadowConfig,
        analysis: &mut Vec<StepAnalysis>,
    ) -> Result<bool, DeployError> {
        use crate::canary::{Inconclusive, MAX_WAITS, Verdict, judge_shadow};
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
            tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)).await;
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
            analysis.push(StepAnalysis {
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
            });
            match (verdict, plan.analysis.inconclusive) {
                (Verdict::Successful, _) | (Verdict::Inconclusive, Inconclusive::Pass) => return Ok(true),
                (Verdict::Inconclusive, Inconclusive::Wait) if waits < MAX_WAITS => waits += 1,
                _ => return Ok(false),
            }
        }
    }
}
