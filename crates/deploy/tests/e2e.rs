//! End to end on the local target: real `slipway-serve` processes with real models and ONNX
//! Runtime behind real routers, a client on loopback sending requests throughout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploy::{Approval, Deployer, EnvConfig, EventKind, Outcome, SmokeConfig, TargetKind};
use store::{DirRemote, Remote};

use crate::fixture::{Cleanup, Load, binaries, candidate, model};

fn free_port() -> u16 {
    crate::fixture::stable_port()
}

struct World {
    root: tempfile::TempDir,
    remote: Arc<dyn Remote>,
    envs: BTreeMap<String, EnvConfig>,
    said: Arc<Mutex<Vec<String>>>,
    webhook: Option<String>,
}

impl World {
    fn new(production_soak: f64) -> World {
        World::on(TargetKind::Local, production_soak)
    }

    fn on(target: TargetKind, production_soak: f64) -> World {
        let root = tempfile::tempdir().unwrap();
        let remote: Arc<dyn Remote> = Arc::new(DirRemote::new(root.path().join("remote")));
        let env = |soak: f64| EnvConfig {
            target,
            port: free_port(),
            smoke: SmokeConfig { soak_seconds: soak, ..SmokeConfig::default() },
            kubernetes: None,
            strategy: Default::default(),
            canary: None,
            shadow: None,
            watch: None,
        };
        let envs =
            [("staging".to_string(), env(0.2)), ("production".to_string(), env(production_soak))].into_iter().collect();
        World { root, remote, envs, said: Arc::default(), webhook: None }
    }

    fn deployer(&self) -> Deployer {
        self.deployer_with(self.remote.clone())
    }

    fn deployer_with(&self, remote: Arc<dyn Remote>) -> Deployer {
        let said = self.said.clone();
        Deployer {
            root: self.root.path().to_path_buf(),
            envs: self.envs.clone(),
            remote,
            who: "tester".into(),
            webhook: self.webhook.clone(),
            say: Box::new(move |l| said.lock().unwrap().push(l.to_string())),
            kill_at: None,
            term_at: None,
        }
    }

    fn url(&self, env: &str) -> String {
        format!("http://127.0.0.1:{}/predict", self.envs[env].port)
    }

    fn cleanup(&self) -> Cleanup {
        Cleanup(self.root.path().to_path_buf())
    }
}

fn approval() -> Approval {
    Approval { by: "tester".into(), how: "--approve".into() }
}

async fn digest_served(url: &str) -> String {
    let body = Some(r#"{"text":"a good film"}"#.to_string());
    deploy::http::send("POST", url, body, Duration::from_secs(10))
        .await
        .unwrap()
        .header("x-model-digest")
        .unwrap_or_default()
}

fn b3(path: &Path) -> String {
    format!("blake3:{}", blake3::hash(&std::fs::read(path).unwrap()).to_hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_promote_deploy_rollback_under_load_loses_no_request() {
    let (serve, router) = binaries();
    let world = World::new(1.0);
    let _cleanup = world.cleanup();
    let models = tempfile::tempdir().unwrap();
    let (m1, m2) = (model(models.path(), "m1", 120, false), model(models.path(), "m2", 240, false));
    let (c1, c2) = (candidate(&serve, &router, &m1, "1111aaaa"), candidate(&serve, &router, &m2, "2222bbbb"));
    let d = world.deployer();

    assert_eq!(d.deploy("staging", &c1).await.unwrap().exit_code, 0);
    assert_eq!(d.promote("staging", "production", approval()).await.unwrap().exit_code, 0);
    let load = Load::start(world.url("production"), 3);
    assert_eq!(d.deploy("staging", &c2).await.unwrap().exit_code, 0);
    let promoted = d.promote("staging", "production", approval()).await.unwrap();
    assert_eq!((promoted.exit_code, promoted.events[0].release.version.as_str()), (0, "v2"));
    assert_eq!(digest_served(&world.url("production")).await, b3(&m2));

    let start = Instant::now();
    let url = world.url("production");
    let v1 = b3(&m1);
    let watcher = tokio::spawn(async move {
        loop {
            if digest_served(&url).await == v1 {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let rolled = d.rollback("v1", "production").await.unwrap();
    let restored_in = watcher.await.unwrap();
    let stats = load.stop().await;
    println!(
        "time to restore: rollback --version v1 answered from v1 after {restored_in:?} (command took {:?})",
        start.elapsed()
    );
    println!("requests during promote and rollback: {} ok, {} failed", stats.ok, stats.failed);
    assert_eq!(stats.failed, 0, "{:?}", stats.failures);
    assert!(stats.ok > 20);
    assert_eq!(stats.digests, [b3(&m1), b3(&m2)].into_iter().collect(), "both releases answered under load");
    assert_eq!(rolled.exit_code, 0);
    assert_eq!(digest_served(&world.url("production")).await, b3(&m1));

    let events = d.events().await.unwrap();
    let story: Vec<(EventKind, &str, &str, Outcome)> =
        events.iter().map(|e| (e.kind, e.release.version.as_str(), e.env.as_str(), e.outcome)).collect();
    assert_eq!(
        story,
        [
            (EventKind::Deploy, "v1", "staging", Outcome::Live),
            (EventKind::Promote, "v1", "production", Outcome::Live),
            (EventKind::Deploy, "v2", "staging", Outcome::Live),
            (EventKind::Promote, "v2", "production", Outcome::Live),
            (EventKind::Rollback, "v1", "production", Outcome::Live),
        ]
    );
    assert_eq!(events[3].approval, Some(approval()));
    assert_eq!(events[4].previous.as_deref(), Some("v2"));
    for env in ["staging", "production"] {
        d.stop(env).await.unwrap();
    }
}

/// A server that works, then crashes: the real one, killed 8 s after it starts — long enough to
/// pass staging even on a loaded machine, and inside the production soak (12 s).
fn crashing_server(dir: &Path, serve: &Path) -> PathBuf {
    let script = dir.join("crashing-serve");
    let text = format!("#!/bin/sh\n\"{}\" \"$@\" &\nchild=$!\nsleep 8\nkill -9 $child\n", serve.display());
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_releases_never_reach_production_or_are_rolled_back_at_once() {
    let (serve, router) = binaries();
    let world = World::new(12.0);
    let _cleanup = world.cleanup();
    let models = tempfile::tempdir().unwrap();
    let good = model(models.path(), "good", 120, false);
    let flipped = model(models.path(), "flipped", 120, true);
    let d = world.deployer();
    d.deploy("staging", &candidate(&serve, &router, &good, "aaaa0001")).await.unwrap();
    d.promote("staging", "production", approval()).await.unwrap();

    // Fails its smoke cases: rejected on staging, which keeps serving the good model.
    let rejected = d.deploy("staging", &candidate(&serve, &router, &flipped, "bbbb0002")).await.unwrap();
    assert_eq!((rejected.exit_code, rejected.events[0].outcome), (1, Outcome::Rejected));
    assert!(rejected.events[0].smoke.iter().any(|c| !c.passed && c.name.starts_with("predict")));
    assert_eq!(digest_served(&world.url("staging")).await, b3(&good));

    // Passes staging's short checks, then crashes in production: put back automatically.
    let crashing = crashing_server(models.path(), &serve);
    let late = d.deploy("staging", &candidate(&crashing, &router, &good, "cccc0003")).await.unwrap();
    assert_eq!(late.exit_code, 0, "{:?}", late.events);
    let load = Load::start(world.url("production"), 2);
    let promoted = d.promote("staging", "production", approval()).await.unwrap();
    let stats = load.stop().await;
    println!("requests during the failed promotion: {} ok, {} failed (the crash itself)", stats.ok, stats.failed);
    assert_eq!(promoted.exit_code, 1);
    let kinds: Vec<(EventKind, Outcome, &str)> =
        promoted.events.iter().map(|e| (e.kind, e.outcome, e.release.version.as_str())).collect();
    assert_eq!(
        kinds,
        [(EventKind::Promote, Outcome::RolledBack, "v3"), (EventKind::AutoRollback, Outcome::Live, "v1")]
    );
    assert_eq!(digest_served(&world.url("production")).await, b3(&good));
    let events = d.events().await.unwrap();
    assert!(
        !events.iter().any(|e| e.env == "production" && e.release.version == "v2"),
        "the flipped model never reached production"
    );
    for env in ["staging", "production"] {
        d.stop(env).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_are_clear_errors_and_rollback_works_without_the_remote() {
    let (serve, router) = binaries();
    let mut world = World::new(0.2);
    let _cleanup = world.cleanup();
    let secret = "hook-token-5ec2e7-do-not-print";
    let hook = crate::fixture::echo_backend("ok", Duration::ZERO).await.0;
    world.webhook = Some(format!("http://{hook}/hooks/{secret}"));
    let models = tempfile::tempdir().unwrap();
    let m1 = model(models.path(), "m1", 120, false);
    let d = world.deployer();

    let unknown_env = d.deploy("qa", &candidate(&serve, &router, &m1, "aaaa")).await.unwrap_err();
    assert_eq!(unknown_env.to_string(), "there is no environment `qa` (environments: production, staging)");
    let nothing = d.promote("staging", "production", approval()).await.unwrap_err();
    assert_eq!(nothing.to_string(), "nothing is live on staging; deploy there first");

    // Two deploys at once: one waits for nobody and is refused.
    let c1 = candidate(&serve, &router, &m1, "aaaa1111");
    let other = world.deployer();
    let (a, b) = tokio::join!(d.deploy("staging", &c1), other.deploy("staging", &c1));
    let refused: Vec<String> = [a, b].into_iter().filter_map(Result::err).map(|e| e.to_string()).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].starts_with("another deploy to staging is running (by tester"), "{refused:?}");
    d.promote("staging", "production", approval()).await.unwrap();

    // A release whose server cannot start: a clear error, and staging keeps serving v1.
    let broken_bin = models.path().join("broken-serve");
    std::fs::write(&broken_bin, "#!/bin/sh\necho 'cannot start' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&broken_bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let broken = d.deploy("staging", &candidate(&broken_bin, &router, &m1, "dead0001")).await.unwrap_err();
    assert!(broken.to_string().contains("did not become ready"), "{broken}");
    assert_eq!(digest_served(&world.url("staging")).await, b3(&m1));

    let unknown_version = d.rollback("v7", "production").await.unwrap_err();
    assert_eq!(unknown_version.to_string(), "no release matches `v7` (releases: v1)");

    // The remote goes away: the rollback runs from the local copies and is kept to record later.
    // Port 1 refuses every connection: a port picked as free could be taken by a server of a
    // test running at the same time, which would answer instead of refusing.
    let settings = store::config::S3Settings {
        bucket: "gone".into(),
        prefix: String::new(),
        endpoint: Some("http://127.0.0.1:1".to_string()),
        region: "us-east-1".into(),
        keys: Some(("k".into(), "s".into())),
        session_token: None,
        profile: None,
        shared_files: store::aws_profile::SharedFiles { credentials: None, config: None },
    };
    let unreachable: Arc<dyn Remote> = Arc::new(store::s3::S3Remote::connect(&settings).unwrap());
    let offline = world.deployer_with(unreachable);
    let rolled = offline.rollback("v1", "production").await.unwrap();
    assert_eq!(rolled.exit_code, 0);
    assert_eq!(digest_served(&world.url("production")).await, b3(&m1));
    assert!(world.said.lock().unwrap().iter().any(|l| l.contains("rolling back from the local copies")));

    // The secret never appears in anything Slipway wrote or said.
    let mut written = world.said.lock().unwrap().join("\n");
    for entry in walkdir::WalkDir::new(world.root.path()).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        if entry.metadata().unwrap().len() < 5_000_000 {
            written.push_str(&String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()));
        }
    }
    assert!(!written.contains(secret), "the webhook secret leaked");
    for env in ["staging", "production"] {
        d.stop(env).await.unwrap();
    }
}

/// A candidate whose release carries an OCI image of `model` (built daemonless), for the
/// docker target.
pub(crate) fn image_candidate(dir: &Path, serve: &Path, router: &Path, model: &Path, sha: &str) -> deploy::Candidate {
    let out = dir.join(format!("image-{sha}"));
    let spec = image::ImageSpec {
        repository: "slipway-serve".into(),
        serve_binary: serve.to_path_buf(),
        onnxruntime: crate::fixture::onnxruntime(),
        model: model.to_path_buf(),
        source_date_epoch: 1_700_000_000,
        labels: Default::default(),
        out_dir: out,
        tags: vec![format!("test-{sha}")],
        sbom: b"{}".to_vec(),
        libraries: None,
    };
    let built = image::build(&spec).unwrap();
    let mut c = candidate(serve, router, model, sha);
    c.files.push(("image.tar".into(), built.archive.clone()));
    c.image_digest = Some(built.manifest_digest);
    c.image_config = Some(built.config_digest);
    c.tags = spec.tags;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_docker_target_promotes_and_rolls_back_without_losing_a_request() {
    let sh = xshell::Shell::new().unwrap();
    xshell::cmd!(sh, "docker info")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .expect("the docker target needs a running Docker engine");
    let (serve, router) = binaries();
    let world = World::on(TargetKind::Docker, 1.0);
    let _cleanup = world.cleanup();
    let dir = tempfile::tempdir().unwrap();
    let (m1, m2) = (model(dir.path(), "m1", 120, false), model(dir.path(), "m2", 240, false));
    let c1 = image_candidate(dir.path(), &serve, &router, &m1, "d0c1");
    let c2 = image_candidate(dir.path(), &serve, &router, &m2, "d0c2");
    // The tag v1 was built under has since moved to another image (a hand-made build, an old
    // load): the deploy must still run v1's own image, by its digest.
    let tar2 = &c2.files.iter().find(|(n, _)| n == "image.tar").unwrap().1;
    xshell::cmd!(sh, "docker load -q -i {tar2}").quiet().ignore_stdout().run().unwrap();
    let (moved, other) = (format!("slipway-serve:{}", c1.tags[0]), format!("slipway-serve:{}", c2.tags[0]));
    xshell::cmd!(sh, "docker tag {other} {moved}").quiet().run().unwrap();
    let d = world.deployer();
    assert_eq!(d.deploy("staging", &c1).await.unwrap().exit_code, 0);
    assert_eq!(digest_served(&world.url("staging")).await, b3(&m1), "ran the image the tag points at now");
    assert_eq!(d.promote("staging", "production", approval()).await.unwrap().exit_code, 0);
    let load = Load::start(world.url("production"), 3);
    assert_eq!(d.deploy("staging", &c2).await.unwrap().exit_code, 0);
    assert_eq!(d.promote("staging", "production", approval()).await.unwrap().exit_code, 0);
    assert_eq!(digest_served(&world.url("production")).await, b3(&m2));
    let rolled = d.rollback("v1", "production").await.unwrap();
    let stats = load.stop().await;
    println!("docker target: requests during promote and rollback: {} ok, {} failed", stats.ok, stats.failed);
    assert_eq!((rolled.exit_code, stats.failed), (0, 0), "{:?}", stats.failures);
    assert_eq!(digest_served(&world.url("production")).await, b3(&m1));
    let events = d.events().await.unwrap();
    assert_eq!(events.len(), 5);
    assert!(events.iter().all(|e| e.outcome == Outcome::Live && e.release.image_digest.is_some()));
    for env in ["staging", "production"] {
        d.stop(env).await.unwrap();
    }
}
