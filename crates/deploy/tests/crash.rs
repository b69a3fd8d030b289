//! Crash consistency on the local target with real servers: a deploy killed (SIGKILL) at each
//! step — just after starting the candidate, before the switch, just after it, during the soak,
//! before the ledger write — is repaired by the next deploy, which finds the router,
//! `live.json` and the ledger in line and no server left running but the live one; a deploy
//! stopped by SIGTERM repairs itself and releases the lock at once.
//!
//! The deploy that dies is this test binary itself, run again with `SLIPWAY_DEPLOY_CHILD` set so
//! that it runs only [`child_deploy_entry_point`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy::{Deployer, EnvConfig, Outcome, Phase, SmokeConfig, TargetKind};
use serde::{Deserialize, Serialize};
use store::{DirRemote, Remote};

use crate::fixture::{binaries, candidate, model};

/// Everything a deploy needs, for the child process.
#[derive(Clone, Serialize, Deserialize)]
struct Plan {
    root: PathBuf,
    port: u16,
    serve: PathBuf,
    router: PathBuf,
    model: PathBuf,
    sha: String,
    kill_at: Option<Phase>,
    term_at: Option<Phase>,
}

fn deployer(plan: &Plan) -> Deployer {
    let remote: Arc<dyn Remote> = Arc::new(DirRemote::new(plan.root.join("remote")));
    let env = EnvConfig {
        target: TargetKind::Local,
        port: plan.port,
        smoke: SmokeConfig { soak_seconds: 1.5, ..SmokeConfig::default() },
        kubernetes: None,
        strategy: Default::default(),
        canary: None,
        shadow: None,
        watch: None,
    };
    Deployer {
        root: plan.root.clone(),
        envs: [("staging".to_string(), env)].into_iter().collect::<BTreeMap<_, _>>(),
        remote,
        who: "tester".into(),
        webhook: None,
        say: Box::new(|line| eprintln!("{line}")),
        kill_at: plan.kill_at,
        term_at: plan.term_at,
    }
}

async fn deploy(plan: &Plan) -> Result<deploy::Report, deploy::DeployError> {
    let d = deployer(plan);
    let c = candidate(&plan.serve, &plan.router, &plan.model, &plan.sha);
    d.until_signal("staging", d.deploy("staging", &c)).await
}

/// Not a test by itself: the deploy that the test below kills. Without `SLIPWAY_DEPLOY_CHILD`
/// it returns at once.
#[test]
fn child_deploy_entry_point() {
    let Some(json) = std::env::var_os("SLIPWAY_DEPLOY_CHILD") else { return };
    let plan: Plan = serde_json::from_str(json.to_str().unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stopped = plan.kill_at.is_some() || plan.term_at.is_some();
    match runtime.block_on(deploy(&plan)) {
        Err(deploy::DeployError::Interrupted { .. }) => std::process::exit(3),
        Ok(report) if !stopped => std::process::exit(report.exit_code.into()),
        other => panic!("the child deploy was to be stopped, and ended with {:?}", other.map(|r| r.exit_code)),
    }
}

fn run_child(plan: &Plan) -> std::process::ExitStatus {
    run_child_with(plan, &[])
}

#[allow(
    clippy::disallowed_methods,
    reason = "the test waits for the child's death by signal, which xshell does not report"
)]
fn run_child_with(plan: &Plan, env: &[(&str, &str)]) -> std::process::ExitStatus {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args(["--exact", "crash::child_deploy_entry_point", "--nocapture", "--test-threads", "1"])
        .envs(env.iter().copied())
        .env("SLIPWAY_DEPLOY_CHILD", serde_json::to_string(plan).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the child deploy neither died nor ended within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids of this world's `slipway-serve` and `slipway-router` processes.
fn processes_of(root: &Path) -> (Vec<u32>, Vec<u32>) {
    let (mut serve, mut router) = (Vec::new(), Vec::new());
    let root = root.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z'));
        if zombie || !cmdline.contains(&root) {
            continue;
        }
        if cmdline.contains("slipway-serve --model") {
            serve.push(pid);
        } else if cmdline.contains("slipway-router") {
            router.push(pid);
        }
    }
    (serve, router)
}

fn stop_all(root: &Path) {
    let (serve, router) = processes_of(root);
    let sh = xshell::Shell::new().unwrap();
    for pid in serve.into_iter().chain(router).map(|p| p.to_string()) {
        let _ = xshell::cmd!(sh, "kill -9 {pid}").quiet().ignore_stderr().run();
    }
}

/// A test's scratch directory, whose servers and routers are killed when it goes, however the
/// test ends: a failed assertion must not leave processes behind on the machine.
struct World(tempfile::TempDir);

impl World {
    fn new() -> World {
        World(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        stop_all(self.0.path());
    }
}

struct Models {
    serve: PathBuf,
    router: PathBuf,
    m: [PathBuf; 3],
    _dir: tempfile::TempDir,
}

fn models() -> Models {
    let (serve, router) = binaries();
    let dir = tempfile::tempdir().unwrap();
    let m = [60, 120, 180].map(|rows| model(dir.path(), &format!("m{rows}"), rows, false));
    Models { serve, router, m, _dir: dir }
}

fn plan(root: &Path, port: u16, models: &Models, i: usize) -> Plan {
    Plan {
        root: root.to_path_buf(),
        port,
        serve: models.serve.clone(),
        router: models.router.clone(),
        model: models.m[i].clone(),
        sha: format!("{i}{i}{i}{i}aaaa"),
        kill_at: None,
        term_at: None,
    }
}

/// The model digest the environment on `port` serves.
async fn served_digest(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let served = deploy::http::send("GET", &url, None, Duration::from_secs(5)).await.unwrap();
    served.header("x-model-digest").unwrap()
}

fn b3(path: &Path) -> String {
    format!("blake3:{}", blake3::hash(&std::fs::read(path).unwrap()).to_hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_killed_at_any_step_is_repaired_by_the_next() {
    let models = models();
    // The outcome the repair must record for the killed deploy of v2, and what was live before v3.
    let cases = [
        // Killed with the candidate's server just started, before its pid was recorded.
        (Phase::Starting, Outcome::Rejected, "v1"),
        (Phase::Checking, Outcome::Rejected, "v1"),
        (Phase::Switched, Outcome::RolledBack, "v1"),
        (Phase::Soaking, Outcome::RolledBack, "v1"),
        (Phase::Recording, Outcome::Live, "v2"),
    ];
    for (phase, outcome, before_v3) in cases {
        let world = World::new();
        let port = crate::fixture::stable_port();
        assert_eq!(deploy(&plan(world.path(), port, &models, 0)).await.unwrap().exit_code, 0);
        let status = run_child(&Plan { kill_at: Some(phase), ..plan(world.path(), port, &models, 1) });
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{phase:?}: {status:?}");
        // A crash leaves the lock behind; take it as a later deploy would once it is stale.
        std::fs::remove_dir_all(world.path().join("remote/slipway/locks")).unwrap();
        let third = deploy(&plan(world.path(), port, &models, 2)).await.unwrap();
        assert_eq!(third.exit_code, 0, "{phase:?}");
        let events = deployer(&plan(world.path(), port, &models, 2)).events().await.unwrap();
        let summary: Vec<(String, Outcome)> = events.iter().map(|e| (e.release.version.clone(), e.outcome)).collect();
        let want =
            vec![("v1".to_string(), Outcome::Live), ("v2".to_string(), outcome), ("v3".to_string(), Outcome::Live)];
        assert_eq!(summary, want, "{phase:?}: the ledger tells the truth");
        assert_eq!(events[1].smoke[0].name, "interrupted", "{phase:?}");
        assert_eq!(events[2].previous.as_deref(), Some(before_v3), "{phase:?}: v3 replaced the release really live");
        assert_eq!(served_digest(port).await, b3(&models.m[2]), "{phase:?}");
        let (serve, router) = processes_of(world.path());
        assert_eq!((serve.len(), router.len()), (1, 1), "{phase:?}: servers {serve:?}, routers {router:?}");
        assert!(!world.path().join(".slipway/deploy/staging/intent.json").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_stopped_by_sigterm_repairs_itself_and_releases_the_lock() {
    let models = models();
    for phase in [Phase::Checking, Phase::Soaking] {
        let world = World::new();
        let port = crate::fixture::stable_port();
        assert_eq!(deploy(&plan(world.path(), port, &models, 0)).await.unwrap().exit_code, 0);
        let status = run_child(&Plan { term_at: Some(phase), ..plan(world.path(), port, &models, 1) });
        assert_eq!(status.code(), Some(3), "{phase:?}: the child reports the interruption");
        let d = deployer(&plan(world.path(), port, &models, 2));
        let events = d.events().await.unwrap();
        let want = if phase == Phase::Checking { Outcome::Rejected } else { Outcome::RolledBack };
        assert_eq!(events.last().map(|e| (e.release.version.as_str(), e.outcome)), Some(("v2", want)), "{phase:?}");
        assert_eq!(served_digest(port).await, b3(&models.m[0]), "{phase:?}: v1 serves, as before");
        let (serve, _) = processes_of(world.path());
        assert_eq!(serve.len(), 1, "{phase:?}: {serve:?}");
        // The lock was released: the next deploy proceeds at once.
        assert_eq!(deploy(&plan(world.path(), port, &models, 2)).await.unwrap().exit_code, 0, "{phase:?}");
    }
}

#[test]
fn a_planted_secret_reaches_no_server_or_router() {
    let models = models();
    let world = World::new();
    let port = crate::fixture::stable_port();
    let secret = format!("planted-{}", std::process::id());
    let webhook = format!("https://hooks.example.invalid/{secret}");
    let planted = [
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ("AWS_ACCESS_KEY_ID", secret.as_str()),
        ("SLIPWAY_REGISTRY_PASSWORD", secret.as_str()),
        ("SLIPWAY_WEBHOOK_URL", webhook.as_str()),
        ("SOME_TEAM_TOKEN", secret.as_str()),
    ];
    // Two deploys: the second starts a server while the first's router is running.
    for i in 0..2 {
        let status = run_child_with(&plan(world.path(), port, &models, i), &planted);
        assert_eq!(status.code(), Some(0), "deploy {i}: {status:?}");
    }
    let (serve, router) = processes_of(world.path());
    assert_eq!((serve.len(), router.len()), (1, 1), "servers {serve:?}, routers {router:?}");
    for pid in serve.iter().chain(&router) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(!environ.contains(&secret), "pid {pid} holds the secret: {environ}");
        for (name, _) in planted {
            assert!(!environ.contains(&format!("{name}=")), "pid {pid} has {name}");
        }
    }
    // The check reads real environments: the server's holds what it was given.
    let environ = std::fs::read(format!("/proc/{}/environ", serve[0])).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains("ORT_DYLIB_PATH="));
}

/// A deploy killed after starting the router and before writing `router.json` leaves a router
/// that holds the stable port and that no file names; the next deploy stops it and takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_router_that_no_file_names_is_replaced() {
    let models = models();
    let world = World::new();
    let port = crate::fixture::stable_port();
    assert_eq!(deploy(&plan(world.path(), port, &models, 0)).await.unwrap().exit_code, 0);
    std::fs::remove_file(world.path().join(".slipway/deploy/staging/router.json")).unwrap();
    let (_, before) = processes_of(world.path());
    assert_eq!(before.len(), 1);
    assert_eq!(deploy(&plan(world.path(), port, &models, 1)).await.unwrap().exit_code, 0);
    assert_eq!(served_digest(port).await, b3(&models.m[1]));
    let (serve, router) = processes_of(world.path());
    assert_eq!((serve.len(), router.len()), (1, 1), "servers {serve:?}, routers {router:?}");
    assert_ne!(router, before, "the orphan router was replaced");
}
