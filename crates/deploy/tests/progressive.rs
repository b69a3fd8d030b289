//! The canary's indefinite pause, approved from outside the deploy as `promote --approve` does
//! it (through the remote) or left to time out; the webhook told of every step; and canary and
//! shadow releases on the docker target, with images built from real models.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploy::canary::{CanaryConfig, Inconclusive, ShadowConfig, Step, Strategy, Thresholds, Verdict};
use deploy::{Approval, Outcome, TargetKind};

use crate::canary::{Reviews, always_fresh, deployer_on};
use crate::e2e::image_candidate;
use crate::fixture::{Cleanup, Load, binaries, candidate, hook_recorder, model, stable_port};

fn b3(path: &std::path::Path) -> String {
    format!("blake3:{}", blake3::hash(&std::fs::read(path).unwrap()).to_hex())
}

async fn served_digest(url: &str) -> Option<String> {
    let body = Some(r#"{"text":"a good film"}"#.to_string());
    let r = deploy::http::send("POST", url, body, Duration::from_secs(5)).await.ok()?;
    r.header("x-model-digest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_that_waits_for_approval_holds_until_approved_and_one_never_approved_is_aborted() {
    let (serve, router) = binaries();
    let root = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let said = Arc::new(Mutex::new(Vec::new()));
    let port = stable_port();
    let mut d = deployer_on(TargetKind::Local, root.path(), port, said.clone());
    let (hook, told) = hook_recorder().await;
    d.webhook = Some(format!("http://{hook}/hook"));
    let held = CanaryConfig {
        steps: vec![Step::new(20, 1.0), Step { weight: 50, pause_seconds: 1.0, approval: true }],
        // This test is about approvals: a latency spike of a loaded machine must not abort it.
        analysis: Thresholds {
            p99_slack_ms: 10_000.0,
            max_p99_ratio: 1000.0,
            min_requests: 20,
            ..Thresholds::default()
        },
        approval_timeout_seconds: 120.0,
    };
    d.envs.get_mut("production").unwrap().canary = Some(held.clone());
    let _cleanup = Cleanup(root.path().to_path_buf());
    let url = format!("http://127.0.0.1:{port}/predict");
    let remote = d.remote.clone();
    let reviewer = Approval { by: "reviewer".into(), how: "--approve".into() };
    let first = model(models.path(), "first", 120, false);
    assert_eq!(d.deploy("production", &candidate(&serve, &router, &first, "aaaa0001")).await.unwrap().exit_code, 0);
    assert_eq!(deploy::approve::approve(&*remote, "production", &reviewer).await.unwrap(), None, "nothing waits");

    // The deploy holds at 50 % until the approval arrives, with no request failing meanwhile.
    let second = model(models.path(), "second", 130, false);
    let load = Load::start(url.clone(), 4);
    let approver = async {
        let deadline = Instant::now() + Duration::from_secs(120);
        let pause = loop {
            assert!(Instant::now() < deadline, "the canary never waited: {:?}", said.lock().unwrap());
            if let Some(p) = deploy::approve::pending(&*remote, "production").await.unwrap() {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!((pause.version.as_str(), pause.weight, pause.who.as_str()), ("v2", 50, "tester"));
        // Held, not finished: it is still pending a few seconds later.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(deploy::approve::pending(&*remote, "production").await.unwrap().is_some());
        let approved = deploy::approve::approve(&*remote, "production", &reviewer).await.unwrap();
        assert_eq!(approved.map(|p| p.version), Some("v2".to_string()));
        Instant::now()
    };
    let c2 = candidate(&serve, &router, &second, "bbbb0002");
    let (report, approved_at) = tokio::join!(d.deploy("production", &c2), approver);
    let (report, finished) = (report.unwrap(), Instant::now());
    let stats = load.stop().await;
    let e = &report.events[0];
    assert_eq!((report.exit_code, e.outcome), (0, Outcome::Live), "{:?}", said.lock().unwrap());
    let steps: Vec<(&str, u8, Verdict)> = e.analysis.iter().map(|a| (a.kind.as_str(), a.weight, a.verdict)).collect();
    assert_eq!(
        steps,
        [
            ("canary", 20, Verdict::Successful),
            ("canary", 50, Verdict::Successful),
            ("approval", 50, Verdict::Successful)
        ]
    );
    let hold = &e.analysis[2];
    assert_eq!(hold.approved.as_ref(), Some(&reviewer), "the ledger names who approved");
    assert!(hold.reason.starts_with("approved by reviewer (--approve)"), "{}", hold.reason);
    assert!(hold.seconds >= 3.0 && hold.candidate.requests > e.analysis[1].candidate.requests, "{hold:?}");
    assert!(finished >= approved_at, "went on only once approved");
    assert_eq!(stats.failed, 0, "{:?}", &stats.failures[..stats.failures.len().min(5)]);
    assert_eq!(served_digest(&url).await, Some(b3(&second)));
    assert_eq!(deploy::approve::pending(&*remote, "production").await.unwrap(), None, "an approved pause is done");
    // `promote --approve` now would start another canary of v2: it takes `--again`.
    let ended = d.ended_wait("production", "production").await.unwrap();
    assert_eq!(ended.map(|p| (p.version, p.step)), Some(("v2".to_string(), 2)));
    println!("approved canary: held {:.1} s at 50 %; {} requests, 0 failed", hold.seconds, stats.ok);

    // Every step, and the approval, reached the webhook as it ended; the steps in order.
    let steps_told: Vec<(String, u64)> = told
        .lock()
        .unwrap()
        .iter()
        .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .filter_map(|v| Some((v["step"]["kind"].as_str()?.to_string(), v["step"]["weight"].as_u64()?)))
        .collect();
    assert_eq!(steps_told, [("canary".to_string(), 20), ("canary".into(), 50), ("approval".into(), 50)]);

    // No one approves: the canary is aborted when the wait runs out, and v2 keeps serving.
    d.envs.get_mut("production").unwrap().canary = Some(CanaryConfig { approval_timeout_seconds: 4.0, ..held });
    let third = model(models.path(), "third", 140, false);
    let load = Load::start(url.clone(), 4);
    // What lies where the approval goes, not written by an approver, is no approval.
    let forger = async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "the canary never waited: {:?}", said.lock().unwrap());
            if let Some(p) = deploy::approve::pending(&*remote, "production").await.unwrap() {
                let prefix = deploy::approve::PAUSES_PREFIX;
                let key = format!("{prefix}/production/{:012}-{}/{:02}.approved", p.generation, p.lock, p.step);
                assert!(remote.put_if_absent(&key, br#"{"by":"nobody"}"#.to_vec()).await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let c3 = candidate(&serve, &router, &third, "cccc0003");
    let (r, ()) = tokio::join!(d.deploy("production", &c3), forger);
    let r = r.unwrap();
    let stats = load.stop().await;
    assert!(
        said.lock().unwrap().iter().any(|s| s.contains("no approval could be read, so none is taken")),
        "{:?}",
        said.lock().unwrap()
    );
    let last = r.events[0].analysis.last().unwrap();
    assert_eq!((r.exit_code, r.events[0].outcome), (1, Outcome::Rejected), "{:?}", said.lock().unwrap());
    assert_eq!((last.kind.as_str(), last.verdict, last.approved.as_ref()), ("approval", Verdict::Failed, None));
    assert!(last.reason.contains("no approval within 4 s"), "{}", last.reason);
    assert_eq!(stats.failed, 0);
    assert_eq!(served_digest(&url).await, Some(b3(&second)), "the live release kept serving");
    // Its pause object stays (nothing is deleted), but it is no longer pending: the deploy that
    // waited has let go of the lock, so an approval now would approve nothing.
    let objects = remote.list(deploy::approve::PAUSES_PREFIX).await.unwrap();
    assert_eq!(objects.iter().filter(|k| k.ends_with(".pause")).count(), 2, "{objects:?}");
    assert_eq!(deploy::approve::approve(&*remote, "production", &reviewer).await.unwrap(), None);

    // A step that passes for want of traffic (`inconclusive = "pass"`) still waits for approval.
    let thin = Thresholds {
        min_requests: 1_000_000,
        inconclusive: Inconclusive::Pass,
        p99_slack_ms: 10_000.0,
        max_p99_ratio: 1000.0,
        ..Thresholds::default()
    };
    let steps = vec![Step { weight: 30, pause_seconds: 1.0, approval: true }];
    let plan = CanaryConfig { steps, analysis: thin, approval_timeout_seconds: 120.0 };
    d.envs.get_mut("production").unwrap().canary = Some(plan);
    let fourth = model(models.path(), "fourth", 150, false);
    let c4 = candidate(&serve, &router, &fourth, "dddd0004");
    let approver = async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "the thin canary never waited: {:?}", said.lock().unwrap());
            if let Some(p) = deploy::approve::pending(&*remote, "production").await.unwrap() {
                assert!(deploy::approve::approve_exactly(&*remote, &p, &reviewer).await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (r, ()) = tokio::join!(d.deploy("production", &c4), approver);
    let r = r.unwrap();
    let steps: Vec<(&str, Verdict)> = r.events[0].analysis.iter().map(|a| (a.kind.as_str(), a.verdict)).collect();
    assert_eq!(steps, [("canary", Verdict::Inconclusive), ("approval", Verdict::Successful)]);
    assert_eq!((r.exit_code, r.events[0].outcome), (0, Outcome::Live));
    d.stop("production").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_docker_target_runs_canary_and_shadow_releases() {
    let sh = xshell::Shell::new().unwrap();
    xshell::cmd!(sh, "docker info")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .expect("the docker target needs a running Docker engine");
    let (serve, router) = binaries();
    let root = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let said = Arc::new(Mutex::new(Vec::new()));
    let port = stable_port();
    let mut d = deployer_on(TargetKind::Docker, root.path(), port, said.clone());
    let env = d.envs.get_mut("production").unwrap();
    env.smoke.cases = vec![deploy::SmokeCase::text("a wonderful, moving film with a brilliant cast", "fresh")];
    let _cleanup = Cleanup(root.path().to_path_buf());
    let url = format!("http://127.0.0.1:{port}/predict");
    let image = |m: &std::path::Path, serve: &std::path::Path, sha: &str| {
        image_candidate(models.path(), serve, &router, m, sha)
    };
    let live = model(models.path(), "live", 120, false);
    assert_eq!(d.deploy("production", &image(&live, &serve, "d0c10001")).await.unwrap().exit_code, 0);

    // A canary of a good release, in containers: every step passes, no request fails.
    let second = model(models.path(), "second", 130, false);
    let load = Load::start(url.clone(), 4);
    let r = d.deploy("production", &image(&second, &serve, "d0c10002")).await.unwrap();
    let stats = load.stop().await;
    assert_eq!((r.exit_code, r.events[0].outcome), (0, Outcome::Live), "{:?}", said.lock().unwrap());
    let verdicts: Vec<Verdict> = r.events[0].analysis.iter().map(|a| a.verdict).collect();
    assert_eq!(verdicts, [Verdict::Successful, Verdict::Successful]);
    assert_eq!(stats.failed, 0, "{:?}", &stats.failures[..stats.failures.len().min(5)]);
    assert_eq!(served_digest(&url).await, Some(b3(&second)));
    println!("docker canary: {} requests, 0 failed", stats.ok);

    // A shadow in containers: the biased model is refused on agreement before any user sees it;
    // the live model in an image rebuilt around another server binary agrees on every row.
    let env = d.envs.get_mut("production").unwrap();
    env.strategy = Strategy::ShadowThenBlueGreen;
    env.shadow = Some(ShadowConfig {
        seconds: 3.0,
        analysis: Thresholds { p99_slack_ms: 10_000.0, max_p99_ratio: 1000.0, ..Thresholds::default() },
        ..ShadowConfig::default()
    });
    let biased = always_fresh(models.path());
    let load = Reviews::start(&url, 4);
    let r = d.deploy("production", &image(&biased, &serve, "d0c10003")).await.unwrap();
    let (ok, failed, digests) = load.stop().await;
    let step = &r.events[0].analysis[0];
    assert_eq!((r.exit_code, step.kind.as_str(), step.verdict), (1, "shadow", Verdict::Failed), "{step:?}");
    assert!(step.agreement.as_ref().is_some_and(|a| a.share < 0.9 && a.rows >= 20), "{step:?}");
    assert_eq!((failed, digests), (0, [b3(&second)].into()), "users saw only the live answers");
    let rebuilt = models.path().join("slipway-serve-rebuilt");
    let mut bytes = std::fs::read(&serve).unwrap();
    bytes.push(0);
    std::fs::write(&rebuilt, bytes).unwrap();
    std::fs::set_permissions(&rebuilt, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let load = Reviews::start(&url, 4);
    let r = d.deploy("production", &image(&second, &rebuilt, "d0c10004")).await.unwrap();
    let (_, failed, _) = load.stop().await;
    let step = &r.events[0].analysis[0];
    assert_eq!((r.exit_code, step.verdict, failed), (0, Verdict::Successful, 0), "{:?}", said.lock().unwrap());
    assert_eq!(step.agreement.as_ref().map(|a| a.share), Some(1.0), "{step:?}");
    println!(
        "docker shadow: biased refused ({ok} live requests, 0 failed); rebuilt agreed on {} rows",
        step.agreement.as_ref().map_or(0, |a| a.rows)
    );
    d.stop("production").await.unwrap();
}
