//! The canary's judgement, the reading of the router's metrics, and the bounds of its settings.

use super::*;

fn observed(requests: u64, errors: u64, p99_ms: Option<f64>) -> Observed {
    Observed { requests, errors, error_rate: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 }, p99_ms }
}

#[test]
fn a_step_fails_on_errors_or_latency_and_needs_enough_requests() {
    let t = Thresholds::default();
    let stable = observed(900, 0, Some(2.0));
    assert_eq!(judge(&observed(100, 0, Some(2.4)), &stable, &t).0, Verdict::Successful);
    let (v, why) = judge(&observed(100, 20, Some(2.0)), &stable, &t);
    assert_eq!(v, Verdict::Failed);
    assert!(why.contains("error rate 0.200") && why.contains("max_error_rate 0.01"), "{why}");
    let (v, why) = judge(&observed(100, 0, Some(55.0)), &stable, &t);
    assert_eq!(v, Verdict::Failed);
    assert!(why.contains("p99 latency 55.0 ms") && why.contains("stable's 2.0 ms"), "{why}");
    let (v, why) = judge(&observed(100, 0, Some(900.0)), &observed(0, 0, None), &t);
    assert!(v == Verdict::Failed && why.contains("max_p99_latency_ms 500"), "{why}");
    let (v, why) = judge(&observed(5, 5, Some(1.0)), &stable, &t);
    assert!(v == Verdict::Inconclusive && why.contains("fewer than the 20"), "{why}");
    // A few milliseconds of noise over a fast stable release is not a regression.
    assert_eq!(judge(&observed(100, 0, Some(9.0)), &observed(900, 0, Some(0.5)), &t).0, Verdict::Successful);
}

#[test]
fn a_reading_of_the_routers_metrics_gives_the_step_between_two() {
    let stats = router::stats::Stats::default();
    let (a, b) = (stats.of("127.0.0.1:1", "stable"), stats.of("127.0.0.1:2", "canary"));
    for _ in 0..98 {
        a.observe(Duration::from_millis(2), false);
    }
    let before = Reading::parse(&stats.render());
    for i in 0..100 {
        a.observe(Duration::from_millis(2), false);
        b.observe(Duration::from_millis(if i < 95 { 3 } else { 60 }), i % 10 == 0);
    }
    let after = Reading::parse(&stats.render());
    let s = after.since(&before, "127.0.0.1:1");
    assert_eq!((s.requests, s.errors), (100, 0));
    let p = s.p99_ms.unwrap();
    assert!((2.0..=2.5).contains(&p), "{p}");
    let c = after.since(&before, "127.0.0.1:2");
    assert_eq!((c.requests, c.errors), (100, 10));
    assert!((60.0..=75.0).contains(&c.p99_ms.unwrap()), "{:?}", c.p99_ms);
    assert_eq!(after.since(&before, "127.0.0.1:3"), Observed::default(), "an unknown backend saw nothing");
    let junk = Reading::parse("garbage\nslipway_router_requests_total{backend=\"x\"} notanumber\n{}} 1\n");
    assert_eq!(junk.since(&Reading::default(), "x").requests, 0);
}

#[test]
fn settings_out_of_bounds_are_refused() {
    assert!(CanaryConfig::default().check().is_ok());
    let with = |steps: Vec<(u8, f64)>| CanaryConfig {
        steps: steps.into_iter().map(|(weight, pause_seconds)| Step::new(weight, pause_seconds)).collect(),
        ..CanaryConfig::default()
    };
    for bad in
        [vec![], vec![(0, 1.0)], vec![(100, 1.0)], vec![(50, 1.0), (10, 1.0)], vec![(10, -1.0)], vec![(10, f64::NAN)]]
    {
        assert!(with(bad.clone()).check().is_err(), "{bad:?}");
    }
    let mut c = CanaryConfig::default();
    c.analysis.max_error_rate = 2.0;
    assert!(c.check().is_err());
    for timeout in [0.0, -1.0, f64::INFINITY, 8.0 * 86_400.0] {
        let c = CanaryConfig { approval_timeout_seconds: timeout, ..CanaryConfig::default() };
        assert!(c.check().is_err(), "{timeout}");
    }
    // An indefinite pause: a step with no length of its own that waits for approval.
    let held: CanaryConfig =
        toml::from_str("steps = [{ weight = 10, pause_seconds = 30 }, { weight = 50, approval = true }]\n").unwrap();
    assert_eq!(held.steps[1], Step { weight: 50, pause_seconds: 0.0, approval: true });
    assert!(held.check().is_ok());
    assert!(
        toml::from_str::<CanaryConfig>("steps = [{ weight = 10, approve = true }]\n").is_err(),
        "a typo is refused"
    );
    let parsed: CanaryConfig = toml::from_str(
        "steps = [{ weight = 10, pause_seconds = 5 }]\n[analysis]\nmax_error_rate = 0.05\ninconclusive = \"fail\"\n",
    )
    .unwrap();
    assert_eq!((parsed.steps.len(), parsed.analysis.inconclusive), (1, Inconclusive::Fail));
}
