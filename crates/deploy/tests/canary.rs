//! Canary releases on the local target under load from a client on loopback: real servers and
//! routers, and releases made faulty by a wrapper in front of the real server that fails every
//! fifth request the router marks as the canary's, or delays each by 50 ms. Requests the
//! router does not mark (the smoke tests, which go straight to the candidate) pass, so the
//! faults show only in live traffic, as they would.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deploy::canary::{CanaryConfig, Step, Strategy, Thresholds, Verdict};
use deploy::{Deployer, EnvConfig, Outcome, SmokeConfig, TargetKind};
use store::{DirRemote, Remote};

use crate::fixture::{Cleanup, Load, binaries, candidate, model, stable_port};

/// A release's server with a fault in front of it, for the requests the router sends it as the
/// canary: `errors` fails every fifth with a 500, `slow` delays each by 50 ms.
fn faulty_server(dir: &Path, serve: &Path, fault: &str) -> PathBuf {
    let script = dir.join(format!("{fault}-serve"));
    let text = format!(
        r#"#!/usr/bin/env python3
import os, signal, socket, subprocess, sys, threading, time, urllib.error, urllib.request
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
SERVE, FAULT = {serve:?}, {fault:?}
args = sys.argv[1:]
i = args.index("--listen")
host, port = args[i + 1].rsplit(":", 1)
s = socket.socket(); s.bind(("127.0.0.1", 0)); inner = s.getsockname()[1]; s.close()
args[i + 1] = "127.0.0.1:%d" % inner
child = subprocess.Popen([SERVE] + args)
signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), child.wait(), os._exit(0)))
seen, lock = [0], threading.Lock()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self): self.forward("GET")
    def do_POST(self): self.forward("POST")
    def forward(self, method):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else None
        if self.headers.get("x-slipway-route") == "canary":
            with lock:
                seen[0] += 1
                k = seen[0]
            if FAULT == "errors" and k % 5 == 0:
                return self.reply(500, b"injected fault\n", {{}})
            if FAULT == "slow":
                time.sleep(0.05)
        keep = {{k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}}
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (inner, self.path), data=body, method=method, headers=keep)
        try:
            r = urllib.request.urlopen(req, timeout=10)
            status, data, headers = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, data, headers = e.code, e.read(), e.headers
        except Exception as e:
            return self.reply(502, str(e).encode(), {{}})
        self.reply(status, data, {{k: v for k, v in headers.items() if k.lower().startswith(("content-type", "x-"))}})
    def reply(self, status, data, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
"#,
        serve = serve.display().to_string(),
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

fn deployer(root: &Path, port: u16, said: Arc<Mutex<Vec<String>>>) -> Deployer {
    deployer_on(TargetKind::Local, root, port, said)
}

/// A canary deployer of `production` on `target`, saying into `said`.
pub(crate) fn deployer_on(target: TargetKind, root: &Path, port: u16, said: Arc<Mutex<Vec<String>>>) -> Deployer {
    let remote: Arc<dyn Remote> = Arc::new(DirRemote::new(root.join("remote")));
    let canary = CanaryConfig {
        steps: vec![Step::new(20, 3.0), Step::new(50, 3.0)],
        // The slack absorbs a loaded machine's p99 spikes (41 ms against a stable 9 ms was seen
        // under the test suite); the slow fault adds 50 ms to every request, still well past it.
        analysis: Thresholds { p99_slack_ms: 40.0, min_requests: 20, ..Thresholds::default() },
        ..CanaryConfig::default()
    };
    let env = EnvConfig {
        target,
        port,
        smoke: SmokeConfig { soak_seconds: 0.5, ..SmokeConfig::default() },
        kubernetes: None,
        strategy: Strategy::Canary,
        canary: Some(canary),
        shadow: None,
        watch: None,
    };
    Deployer {
        root: root.to_path_buf(),
        envs: [("production".to_string(), env)].into_iter().collect(),
        remote,
        who: "tester".into(),
        webhook: None,
        say: Box::new(move |l| said.lock().unwrap().push(l.to_string())),
        kill_at: None,
        term_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_good_canary_goes_through_and_a_failing_or_slow_one_is_aborted_at_its_first_step() {
    let (serve, router) = binaries();
    let root = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let said = Arc::new(Mutex::new(Vec::new()));
    let port = stable_port();
    let d = deployer(root.path(), port, said.clone());
    let _cleanup = Cleanup(root.path().to_path_buf());
    let url = format!("http://127.0.0.1:{port}/predict");
    let first = model(models.path(), "first", 120, false);
    let v1 = d.deploy("production", &candidate(&serve, &router, &first, "aaaa0001")).await.unwrap();
    assert_eq!(v1.exit_code, 0, "{:?}", said.lock().unwrap());
    assert!(v1.events[0].analysis.is_empty(), "the first release has nothing to be a canary beside");

    // A good release (another model, the same behaviour) under load: every step passes and no
    // request fails.
    let second = model(models.path(), "second", 130, false);
    let load = Load::start(url.clone(), 4);
    let good = d.deploy("production", &candidate(&serve, &router, &second, "bbbb0002")).await.unwrap();
    let stats = load.stop().await;
    let steps = &good.events[0].analysis;
    assert_eq!((good.exit_code, good.events[0].outcome), (0, Outcome::Live), "{:?}", said.lock().unwrap());
    assert_eq!(
        steps.iter().map(|s| (s.weight, s.verdict)).collect::<Vec<_>>(),
        [(20, Verdict::Successful), (50, Verdict::Successful)]
    );
    assert!(steps.iter().all(|s| s.candidate.requests >= 20 && s.stable.requests > 0), "{steps:?}");
    assert_eq!(stats.failed, 0, "a good canary fails no request: {:?}", &stats.failures[..stats.failures.len().min(5)]);
    println!("good canary: {} requests, 0 failed; steps {steps:?}", stats.ok);

    // A release that fails a fifth of its requests, and one that adds 50 ms: each is aborted at
    // its first step, stable keeps serving, and only the canary's share failed.
    for (fault, metric) in [("errors", "error rate"), ("slow", "p99 latency")] {
        let bad = faulty_server(models.path(), &serve, fault);
        let load = Load::start(url.clone(), 4);
        let r = d
            .deploy("production", &candidate(&bad, &router, &second, &format!("cccc000{}", fault.len())))
            .await
            .unwrap();
        let stats = load.stop().await;
        let e = &r.events[0];
        assert_eq!((r.exit_code, e.outcome), (1, Outcome::Rejected), "{fault}: {:?}", said.lock().unwrap());
        assert_eq!(e.analysis.len(), 1, "{fault}: aborted at the first step: {:?}", e.analysis);
        let step = &e.analysis[0];
        assert_eq!((step.weight, step.verdict), (20, Verdict::Failed));
        assert!(step.reason.contains(metric), "{fault}: {}", step.reason);
        assert_eq!(step.thresholds.max_error_rate, 0.01, "the ledger keeps the thresholds");
        // Every failed request was one of the canary's: about a fifth of what it got in its one
        // step (a few more arrive between the router's readings and the abort).
        let failed = stats.failed as u64;
        let bound = step.candidate.requests / 5 + 10;
        assert!(
            failed >= step.candidate.errors && failed <= bound,
            "{fault}: {failed} failed, bound {bound}: {:?}",
            &stats.failures[..stats.failures.len().min(5)]
        );
        assert!(step.candidate.requests < (stats.ok + stats.failed) as u64 / 2, "the canary had a minority share");
        println!(
            "{fault} canary: aborted after {:.1} s at {}%: {} of {} requests failed ({} to the canary); {}",
            step.seconds,
            step.weight,
            stats.failed,
            stats.ok + stats.failed,
            step.candidate.requests,
            step.reason
        );
        let served = deploy::http::send(
            "POST",
            &url,
            Some(r#"{"text":"a good film"}"#.into()),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(
            served.header("x-model-digest"),
            Some(format!("blake3:{}", blake3::hash(&std::fs::read(&second).unwrap()).to_hex()))
        );
    }
    d.stop("production").await.unwrap();
}

/// Live traffic of both kinds of review, counting what answered it.
pub(crate) struct Reviews {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(usize, usize, std::collections::BTreeSet<String>)>>,
}

impl Reviews {
    pub(crate) fn start(url: &str, clients: usize) -> Reviews {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|i| {
                let (stop, url) = (stop.clone(), url.to_string());
                tokio::spawn(async move {
                    let (mut ok, mut failed, mut digests) = (0, 0, std::collections::BTreeSet::new());
                    let texts = [r#"{"text":"a wonderful and moving film"}"#, r#"{"text":"a dull and boring film"}"#];
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
                    let mut n = i;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < deadline {
                        n += 1;
                        let body = Some(texts[n % 2].to_string());
                        match deploy::http::send("POST", &url, body, std::time::Duration::from_secs(10)).await {
                            Ok(r) if r.status == 200 => {
                                ok += 1;
                                digests.extend(r.header("x-model-digest"));
                            }
                            _ => failed += 1,
                        }
                    }
                    (ok, failed, digests)
                })
            })
            .collect();
        Reviews { stop, tasks }
    }

    pub(crate) async fn stop(self) -> (usize, usize, std::collections::BTreeSet<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut total = (0, 0, std::collections::BTreeSet::new());
        for t in self.tasks {
            let (ok, failed, digests) = t.await.unwrap();
            total.0 += ok;
            total.1 += failed;
            total.2.extend(digests);
        }
        total
    }
}

/// A model that calls every review fresh: it passes a smoke set that checks only a good review,
/// and disagrees with the live model on every bad one.
pub(crate) fn always_fresh(dir: &Path) -> PathBuf {
    let words = ["wonderful", "moving", "brilliant", "dull", "lifeless", "boring"];
    let mut csv = String::from("text,label\n");
    for i in 0..120 {
        csv.push_str(&format!(
            "a {} and {} film,{}\n",
            words[i % 6],
            words[(i / 6) % 6],
            if i % 7 == 0 { "rotten" } else { "fresh" }
        ));
    }
    let data = dir.join("always-fresh.csv");
    std::fs::write(&data, csv).unwrap();
    let out = dir.join("always-fresh.onnx");
    let python = crate::fixture::train_env().join("bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../training/build_test_models.py");
    let sh = xshell::Shell::new().unwrap();
    xshell::cmd!(sh, "{python} {script} --kind text --data {data} --out {out}").quiet().ignore_stderr().run().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadow_refuses_a_model_that_disagrees_before_any_user_sees_it_and_passes_a_rebuilt_one() {
    let (serve, router) = binaries();
    let root = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let said = Arc::new(Mutex::new(Vec::new()));
    let port = stable_port();
    let mut d = deployer(root.path(), port, said.clone());
    let env = d.envs.get_mut("production").unwrap();
    env.strategy = Strategy::ShadowThenBlueGreen;
    env.smoke.cases = vec![deploy::SmokeCase::text("a wonderful, moving film with a brilliant cast", "fresh")];
    env.shadow = Some(deploy::canary::ShadowConfig {
        share: 100,
        seconds: 3.0,
        // Agreement is what this test judges; mirroring every request doubles the load on two
        // cores, so the shadow's latency is held loosely.
        analysis: Thresholds { p99_slack_ms: 10_000.0, max_p99_ratio: 1000.0, ..Thresholds::default() },
        ..deploy::canary::ShadowConfig::default()
    });
    let _cleanup = Cleanup(root.path().to_path_buf());
    let url = format!("http://127.0.0.1:{port}/predict");
    let live = model(models.path(), "live", 120, false);
    assert_eq!(d.deploy("production", &candidate(&serve, &router, &live, "aaaa0001")).await.unwrap().exit_code, 0);
    let live_digest = format!("blake3:{}", blake3::hash(&std::fs::read(&live).unwrap()).to_hex());

    let biased = always_fresh(models.path());
    let load = Reviews::start(&url, 4);
    let r = d.deploy("production", &candidate(&serve, &router, &biased, "bbbb0002")).await.unwrap();
    let (ok, failed, digests) = load.stop().await;
    let e = &r.events[0];
    assert_eq!((r.exit_code, e.outcome), (1, Outcome::Rejected), "{:?}", said.lock().unwrap());
    let step = &e.analysis[0];
    assert_eq!((step.kind.as_str(), step.verdict), ("shadow", Verdict::Failed), "{step:?}");
    let agreement = step.agreement.clone().unwrap();
    assert!(agreement.share < 0.9 && agreement.rows >= 20, "{agreement:?}");
    assert!(step.reason.contains("below min_agreement 0.9"), "{}", step.reason);
    assert_eq!(failed, 0, "mirroring failed no live request");
    assert_eq!(digests, [live_digest.clone()].into(), "every user saw only the live model's answers");
    println!(
        "biased shadow: refused with agreement {:.3} over {} rows; {ok} live requests, 0 failed",
        agreement.share, agreement.rows
    );

    // The same model rebuilt (the same bytes, a server binary that differs by a byte): 1.0.
    let rebuilt = models.path().join("slipway-serve-rebuilt");
    let mut bytes = std::fs::read(&serve).unwrap();
    bytes.push(0);
    std::fs::write(&rebuilt, bytes).unwrap();
    std::fs::set_permissions(&rebuilt, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let load = Reviews::start(&url, 4);
    let r = d.deploy("production", &candidate(&rebuilt, &router, &live, "cccc0003")).await.unwrap();
    let (_, failed, _) = load.stop().await;
    let step = &r.events[0].analysis[0];
    assert_eq!(
        (r.exit_code, r.events[0].outcome, step.verdict),
        (0, Outcome::Live, Verdict::Successful),
        "{:?}",
        said.lock().unwrap()
    );
    let agreement = step.agreement.clone().unwrap();
    assert_eq!((agreement.share, agreement.agreed), (1.0, agreement.rows), "{agreement:?}");
    assert!(agreement.mean_probability_diff < 1e-6, "{agreement:?}");
    assert_eq!(failed, 0);
    println!("rebuilt shadow: agreement {:.3} over {} rows", agreement.share, agreement.rows);
    d.stop("production").await.unwrap();
}

/// A validation report whose holdout is half fresh, half rotten.
fn balanced_report(dir: &Path) -> PathBuf {
    let path = dir.join("validation_report.json");
    let report = r#"{"classification":{"per_class":{"fresh":{"support":50},"rotten":{"support":50}}}}"#;
    std::fs::write(&path, report).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_keeps_a_release_that_holds_up_and_rolls_back_one_whose_labels_drift() {
    let (serve, router) = binaries();
    let root = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let said = Arc::new(Mutex::new(Vec::new()));
    let port = stable_port();
    let mut d = deployer(root.path(), port, said.clone());
    let env = d.envs.get_mut("production").unwrap();
    env.strategy = Strategy::BlueGreen;
    env.smoke.cases = vec![deploy::SmokeCase::text("a wonderful, moving film with a brilliant cast", "fresh")];
    let watch = deploy::watch::WatchConfig {
        seconds: 4.0,
        interval_seconds: 1.0,
        min_requests: 30,
        // This test is about the label mix: latency on a loaded machine is not what it judges.
        max_p99_ratio: 1000.0,
        p99_slack_ms: 10_000.0,
        ..Default::default()
    };
    let _cleanup = Cleanup(root.path().to_path_buf());
    let url = format!("http://127.0.0.1:{port}/predict");
    let with_report = |mut c: deploy::Candidate| {
        c.files.push(("validation_report.json".into(), balanced_report(models.path())));
        c
    };
    let live = model(models.path(), "live", 120, false);
    let first = d.deploy("production", &with_report(candidate(&serve, &router, &live, "aaaa0001"))).await.unwrap();
    assert_eq!(first.exit_code, 0);
    let load = Reviews::start(&url, 4);
    let held = d.watch("production", &watch).await.unwrap();
    load.stop().await;
    assert_eq!((held.exit_code, held.events.len()), (0, 0), "{:?}", said.lock().unwrap());

    let biased = always_fresh(models.path());
    let second = d.deploy("production", &with_report(candidate(&serve, &router, &biased, "bbbb0002"))).await.unwrap();
    assert_eq!(second.exit_code, 0, "the biased model passes a smoke set of one good review");
    let load = Reviews::start(&url, 4);
    let watched = d.watch("production", &watch).await.unwrap();
    let (_, failed, _) = load.stop().await;
    assert_eq!(watched.exit_code, 1, "{:?}", said.lock().unwrap());
    let kinds: Vec<(deploy::EventKind, Outcome, &str)> =
        watched.events.iter().map(|e| (e.kind, e.outcome, e.release.version.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (deploy::EventKind::AutoRollback, Outcome::RolledBack, "v2"),
            (deploy::EventKind::AutoRollback, Outcome::Live, "v1")
        ]
    );
    let why = &watched.events[0].analysis[0];
    assert!(why.kind == "watch" && why.reason.contains("PSI") && why.reason.contains("max_psi 0.25"), "{}", why.reason);
    println!("drift watch: {}; {failed} live requests failed during it", why.reason);
    let served = deploy::http::send(
        "POST",
        &url,
        Some(r#"{"text":"a dull and boring film"}"#.into()),
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(
        served.header("x-model-digest"),
        Some(format!("blake3:{}", blake3::hash(&std::fs::read(&live).unwrap()).to_hex()))
    );
    d.stop("production").await.unwrap();
}
