//! The real `cargo xtask` binary on scratch copies of this repository: two clones that share a
//! target directory (and so one binary) each act on their own files, and `ci --trace-inputs`
//! over this repository's pipeline finds nothing undeclared but a read planted in the copy.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).expect("cargo sets CARGO_MANIFEST_DIR");
    dir.parent().unwrap().to_path_buf()
}

/// The binary cargo built for this test; every clone below runs this same file, as clones that
/// share a target directory do.
fn xtask() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_xtask"))
}

/// The target directory that binary lives in (`<target>/debug/xtask`).
fn target_dir() -> PathBuf {
    xtask().parent().and_then(Path::parent).unwrap().to_path_buf()
}

#[path = "common/scratch.rs"]
mod scratch;
use scratch::Scratch;
#[path = "common/mlflow_server.rs"]
mod mlflow_server;
#[path = "common/page.rs"]
mod page;

/// Runs the shared binary in `clone` as `cargo xtask ARGS` would: from the clone, with cargo's
/// `CARGO_MANIFEST_DIR`, and the shared target directory.
fn xtask_in(clone: &Scratch, args: &[&str], env: &BTreeMap<&str, String>) -> (i32, String, String) {
    xtask_from(clone.root(), clone, args, env)
}

/// Runs the shared binary from the directory `cwd` as `cargo xtask ARGS` would with the
/// workspace `clone`'s manifest (`--manifest-path`, or a plain `cargo xtask` inside it).
fn xtask_from(cwd: &Path, clone: &Scratch, args: &[&str], env: &BTreeMap<&str, String>) -> (i32, String, String) {
    let sh = xshell::Shell::new().unwrap();
    sh.change_dir(cwd);
    sh.set_var("CARGO_MANIFEST_DIR", clone.root().join("xtask"));
    sh.set_var("CARGO_TARGET_DIR", target_dir());
    // Empty counts as unset for Slipway; xshell 0.2 cannot unset.
    sh.set_var("SLIPWAY_ROOT", "");
    for (k, v) in env {
        sh.set_var(k, v);
    }
    let xtask = xtask();
    let out = xshell::cmd!(sh, "{xtask} {args...}").ignore_status().quiet().output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A small labelled data set the data gate accepts, as `(train, holdout)`.
fn tiny_data() -> (String, String) {
    let row = |i: usize| {
        format!("review number {i} {},{}\n", "x".repeat(i), if i.is_multiple_of(2) { "fresh" } else { "rotten" })
    };
    let train: String = std::iter::once("text,label\n".to_string()).chain((0..20).map(row)).collect();
    let holdout: String = std::iter::once("text,label\n".to_string()).chain((100..108).map(row)).collect();
    (train, holdout)
}

#[test]
fn two_clones_sharing_one_binary_each_act_on_their_own_files() {
    let (a, b) = (Scratch::of(&repo_root()), Scratch::of(&repo_root()));
    let remote = tempfile::tempdir().unwrap();
    let env: BTreeMap<&str, String> = [("SLIPWAY_REMOTE", remote.path().display().to_string())].into();
    // Clone B tracks its own small data set and puts it on the remote.
    let (train, holdout) = tiny_data();
    b.write("data/train.csv", &train);
    b.write("data/holdout.csv", &holdout);
    for args in [&["add", "data"][..], &["push"]] {
        let (code, _, err) = xtask_in(&b, args, &env);
        assert_eq!(code, 0, "{args:?} in B: {err}");
    }
    fs::remove_dir_all(b.root().join("data")).unwrap();
    let (code, out, err) = xtask_in(&b, &["ci", "check-data"], &env);
    assert_eq!(code, 0, "ci check-data in B:\n{out}\n{err}");
    assert_eq!(fs::read_to_string(b.root().join("data/train.csv")).unwrap(), train);
    assert!(b.root().join("reports/data-check.json").is_file());
    for untouched in ["data", "reports", ".slipway/last/pull.json"] {
        assert!(!a.root().join(untouched).exists(), "ci in B wrote {untouched} in A");
    }
    let status = |clone: &Scratch| {
        let (code, out, err) = xtask_in(clone, &["status", "--json"], &env);
        assert_eq!(code, 0, "{err}");
        let all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        all.into_iter().map(|s| (s["stage"].as_str().unwrap().to_string(), s)).collect::<BTreeMap<_, _>>()
    };
    let (in_a, in_b) = (status(&a), status(&b));
    assert_eq!(in_b["pull"]["state"], "fresh", "{:?}", in_b["pull"]);
    assert_eq!(in_b["check-data"]["state"], "fresh", "{:?}", in_b["check-data"]);
    assert_eq!(in_a["pull"]["reasons"], serde_json::json!(["never run here"]), "{:?}", in_a["pull"]);
    assert_eq!(in_a["check-data"]["state"], "stale");

    // A file of the user's in a tracked directory survives `pull` and `ci`, and is reported.
    b.write("data/my-notes.txt", "mine");
    let (code, _, err) = xtask_in(&b, &["pull"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: data/my-notes.txt is not tracked by any .dvc file; left in place"), "{err}");
    let (code, out, err) = xtask_in(&b, &["ci", "check-data"], &env);
    assert_eq!(code, 0, "ci check-data in B:\n{out}\n{err}");
    assert!(err.contains("pull ran"), "what data/ holds changed, so pull ran again:\n{err}");
    assert_eq!(fs::read_to_string(b.root().join("data/my-notes.txt")).unwrap(), "mine");
    assert!(!b.root().join(".slipway/lost+found").exists(), "nothing of the user's was moved");
}

/// Every stage that runs commands, except `test`: tracing it runs this whole suite inside
/// itself (this test included). `cargo xtask ci --trace-inputs` traces it too; the closing note
/// of the issue that added tracing records that run.
const TRACED: &[&str] = &["tools", "deps", "lint", "train", "build"];

#[test]
fn tracing_the_pipeline_finds_only_the_planted_read() {
    // Under `ci --trace-inputs` tracing the `test` stage, strace cannot trace from here (a
    // traced process cannot trace its children); the outer trace is doing this test's job.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.strip_prefix("TracerPid:").is_some_and(|pid| pid.trim() != "0")) {
        eprintln!("running under a tracer: this trace is covered by the outer one");
        return;
    }
    let clone = Scratch::of(&repo_root());
    // The training code reads one file it has no business reading.
    let script = fs::read_to_string(clone.root().join("training/train.py")).unwrap();
    let planted = script.replacen("def main(", "NOTES = Path(\"notes.txt\").read_text()\n\n\ndef main(", 1);
    assert_ne!(planted, script, "train.py has no main() to plant the read before");
    clone.write("training/train.py", &planted);
    clone.write("notes.txt", "not an input of anything\n");
    let mut args = vec!["ci", "--trace-inputs"];
    args.extend(TRACED);
    let (code, out, err) = xtask_in(&clone, &args, &BTreeMap::new());
    assert_eq!(code, 1, "one undeclared read means exit 1\n{out}\n{err}");
    let undeclared: Vec<&str> = out.lines().filter(|l| l.contains("which it does not declare")).collect();
    assert_eq!(undeclared, ["train: reads `notes.txt`, which it does not declare"], "{out}\n{err}");
    for stage in TRACED.iter().filter(|s| **s != "train") {
        assert!(
            out.contains(&format!("{stage}: every file it read is declared")),
            "{stage} was not traced:\n{out}\n{err}"
        );
    }
}

/// Stops what a run left serving in `clone`'s project `dir`, however the test ends.
struct StopAll<'a> {
    clone: &'a Scratch,
    project: &'a str,
    env: BTreeMap<&'a str, String>,
}

impl Drop for StopAll<'_> {
    fn drop(&mut self) {
        let _ = xtask_in(self.clone, &["--project", self.project, "stop", "--all"], &self.env);
    }
}

/// Two free ports on 127.0.0.1 for stable addresses, below the kernel's ephemeral range: the
/// servers a deploy starts get ports from `bind(0)`, which could hand one of these out again
/// while its router is being replaced.
/// Tests of one process that run at once each take ports of their own, from a range that starts
/// at a place of this process's: a port found free is not bound until the deploy starts.
fn two_free_ports() -> (u16, u16) {
    static TAKEN: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low = range.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(32768);
    let start =
        10_000 + (std::process::id() % 1000) as u16 * 7 + TAKEN.fetch_add(100, std::sync::atomic::Ordering::SeqCst);
    let mut free = (start..low).filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok());
    (free.next().expect("a free port"), free.next().expect("a second free port"))
}

/// A machine of its own: `cache` as an empty cache directory (so an empty embedded remote), but
/// uv's package cache kept, so environments install without downloading everything again.
fn new_machine(cache: &Path) -> BTreeMap<&'static str, String> {
    let home = std::env::var("HOME").unwrap_or_default();
    let uv_cache = std::env::var("UV_CACHE_DIR")
        .or_else(|_| std::env::var("XDG_CACHE_HOME").map(|x| format!("{x}/uv")))
        .unwrap_or_else(|_| format!("{home}/.cache/uv"));
    [("XDG_CACHE_HOME", cache.display().to_string()), ("UV_CACHE_DIR", uv_cache), ("SLIPWAY_REMOTE", String::new())]
        .into()
}

/// `examples/tabular`, a project of its own, through the whole pipeline with this same binary on
/// a fresh machine's defaults (the embedded remote is empty, so its data is rebuilt from the
/// pinned scikit-learn wheel and checked against its `data.dvc`): the data gate on a feature
/// table, training, validation that agrees with the training script's ONNX Runtime accuracy,
/// the image, staging serving feature rows on `/predict` and the Open Inference Protocol. Then a
/// second `ci` runs nothing.
#[test]
fn the_tabular_example_ships_end_to_end_and_a_second_run_is_cached() {
    const PROJECT: &str = "examples/tabular";
    let clone = Scratch::of(&repo_root());
    let config = format!("{PROJECT}/slipway.toml");
    let (staging, production) = two_free_ports();
    let text = fs::read_to_string(clone.root().join(&config)).unwrap();
    let moved = text
        .replace("port = 18090", &format!("port = {staging}"))
        .replace("port = 18091", &format!("port = {production}"));
    assert_ne!(moved, text, "the example's ports moved to free ones");
    clone.write(&config, &moved);
    let cache = tempfile::tempdir().unwrap();
    let env = new_machine(cache.path());
    let _stop = StopAll { clone: &clone, project: PROJECT, env: env.clone() };

    let (code, out, err) = xtask_in(&clone, &["--project", PROJECT, "ci"], &env);
    assert_eq!(code, 0, "ci of the example:\n{out}\n{err}");
    let summary = format!("{out}\n{err}");
    for stage in ["deps", "lint", "test", "pull", "check-data", "train", "validate", "build", "image", "deploy-staging"]
    {
        assert!(
            summary.lines().any(|l| l.starts_with(stage) && l.contains(" ran ")),
            "{stage} did not run:\n{summary}"
        );
    }
    assert!(!summary.lines().any(|l| l.starts_with("tools ")), "a project below the root has no tools stage");
    let project = clone.root().join(PROJECT);
    let json = |rel: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(project.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))).unwrap()
    };
    let data = json("reports/data-check.json");
    assert_eq!(data["passed"], true, "{data}");
    assert_eq!(data["train"]["columns"].as_array().map(Vec::len), Some(13), "{data}");
    assert!(data["checks"]["holdout_within_train_range[proline]"].as_bool().is_some(), "{data}");
    let (report, metrics) = (json("reports/validation_report.json"), json("models/metrics.json"));
    let (ours, theirs) = (report["accuracy"].as_f64().unwrap(), metrics["holdout_accuracy_onnx"].as_f64().unwrap());
    assert!(
        (ours - theirs).abs() < 1e-6,
        "validation says {ours}, the training script's ONNX Runtime run says {theirs}"
    );
    assert_eq!(report["passed"], true, "{report}");
    assert!(project.join("dist/image/image.tar").is_file(), "the image was built");

    // Staging serves the tabular model: a holdout row of each class gets its label, on both APIs.
    let holdout = fs::read_to_string(project.join("data/holdout.csv")).unwrap();
    let rows: Vec<(Vec<f64>, String)> = holdout
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let (label, features) = cells.split_last().unwrap();
            (features.iter().map(|c| c.parse().unwrap()).collect(), label.to_string())
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let post = |path: &str, body: serde_json::Value| -> (u16, serde_json::Value) {
        let url = format!("http://127.0.0.1:{staging}{path}");
        let mut r = agent.post(&url).header("content-type", "application/json").send(body.to_string()).unwrap();
        (r.status().as_u16(), serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap())
    };
    for (features, label) in rows.iter().take(5) {
        let (status, answer) = post("/predict", serde_json::json!({ "features": features }));
        assert_eq!((status, answer["label"].as_str()), (200, Some(label.as_str())), "{answer}");
    }
    let batch: Vec<&Vec<f64>> = rows.iter().map(|(f, _)| f).collect();
    let infer = serde_json::json!({
        "inputs": [{ "name": "features", "shape": [batch.len(), 13], "datatype": "FP32", "data": batch }],
    });
    let (status, answer) = post("/v2/models/model/infer", infer);
    assert_eq!(status, 200, "{answer}");
    let labels: Vec<&str> =
        answer["outputs"][0]["data"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let right = labels.iter().zip(&rows).filter(|(got, (_, want))| *got == want).count();
    assert_eq!(right as f64 / rows.len() as f64, ours, "the served model is the validated one");
    let (status, answer) = post("/predict", serde_json::json!({ "features": [1.0, 2.0] }));
    assert_eq!(status, 422, "{answer}");
    // The example's releases are its own on the shared remote.
    let ledger = cache.path().join("slipway/remote/projects/examples/tabular/slipway/ledger/v1");
    assert!(ledger.is_dir(), "no ledger under the project's prefix: {}", ledger.display());
    let unprefixed = cache.path().join("slipway/remote/slipway");
    assert!(!unprefixed.exists(), "the example wrote outside its prefix: {}", unprefixed.display());

    let (code, out, err) = xtask_in(&clone, &["--project", PROJECT, "ci"], &env);
    assert_eq!(code, 0, "second ci:\n{out}\n{err}");
    assert!(format!("{out}\n{err}").contains("10 stages: 0 ran, 10 cached"), "second ci ran something:\n{out}\n{err}");
}

/// A team's repository of its own, as `docs/adopting.md` sets one up: the tabular example's
/// files at its root, committed, and Slipway checked out beside it, run as its `cargo xtask`
/// alias runs it (`--manifest-path` to Slipway's workspace, from the team's directory). Its
/// pipeline ships through staging, its releases sit under its own prefix on the shared remote,
/// and a second run does nothing.
#[test]
fn a_repository_of_its_own_ships_with_slipway_beside_it() {
    // MLflow takes half a minute to start; it does so while the team's repository is set up.
    let mlflow = std::thread::spawn(mlflow_server::MlflowServer::start);
    let slipway = Scratch::of(&repo_root());
    let team = tempfile::tempdir().unwrap();
    let team_root = team.path().canonicalize().unwrap().join("churn");
    let example = slipway.root().join("examples/tabular");
    let sh = xshell::Shell::new().unwrap();
    sh.change_dir(&example);
    let files = xshell::cmd!(sh, "git ls-files -z").read().unwrap();
    for rel in files.split('\0').filter(|f| !f.is_empty()) {
        let dest = team_root.join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(example.join(rel), dest).unwrap();
    }
    let (staging, production) = two_free_ports();
    let config = team_root.join("slipway.toml");
    let text = fs::read_to_string(&config).unwrap();
    let moved = text
        .replace("port = 18090", &format!("port = {staging}"))
        .replace("port = 18091", &format!("port = {production}"));
    fs::write(&config, format!("{moved}\n[mlflow]\nexperiment = \"churn\"\nmodel = \"churn\"\n")).unwrap();
    sh.change_dir(&team_root);
    let git: [&[&str]; 5] = [
        &["init", "-q"],
        &["config", "user.name", "Team Bot"],
        &["config", "user.email", "bot@example.com"],
        &["add", "-A"],
        &["commit", "-qm", "ours"],
    ];
    for args in git {
        xshell::cmd!(sh, "git {args...}").quiet().run().unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let mut env = new_machine(cache.path());
    // Who deployed comes from the repository's git identity when CI names no actor.
    for var in ["GITHUB_ACTOR", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL"] {
        env.insert(var, String::new());
    }
    struct Stop<'a>(&'a Path, &'a Scratch, BTreeMap<&'static str, String>);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = xtask_from(self.0, self.1, &["stop", "--all"], &self.2);
        }
    }
    let _stop = Stop(&team_root, &slipway, env.clone());
    let mlflow = mlflow.join().unwrap();
    env.insert("MLFLOW_TRACKING_URI", mlflow.url.clone());

    let (code, out, err) = xtask_from(&team_root, &slipway, &["ci"], &env);
    let summary = format!("{out}\n{err}");
    assert_eq!(code, 0, "ci of the team's repository:\n{summary}");
    for stage in ["deps", "lint", "test", "pull", "check-data", "train", "validate", "build", "image", "deploy-staging"]
    {
        assert!(
            summary.lines().any(|l| l.starts_with(stage) && l.contains(" ran ")),
            "{stage} did not run:\n{summary}"
        );
    }
    assert!(team_root.join("dist/slipway-serve").is_file(), "the server was built into the team's dist/");
    assert!(!slipway.root().join("models").exists(), "the team's run wrote into Slipway's checkout");
    let ledger = cache.path().join("slipway/remote/external/churn/slipway/ledger/v1");
    assert!(ledger.is_dir(), "no ledger under the repository's prefix: {}", ledger.display());
    assert!(!cache.path().join("slipway/remote/slipway").exists(), "the team's releases are not apart");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut answer = agent
        .post(&format!("http://127.0.0.1:{staging}/predict"))
        .header("content-type", "application/json")
        .send(serde_json::json!({ "features": vec![1.0; 13] }).to_string())
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{}", answer.body_mut().read_to_string().unwrap());
    let (code, out, err) = xtask_from(&team_root, &slipway, &["releases", "--json"], &env);
    assert_eq!(code, 0, "{err}");
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(events[0]["who"], "Team Bot <bot@example.com>", "{events}");
    // The image's provenance names the image and the model the ledger holds, and the release
    // carries it.
    let statement = fs::read(team_root.join("dist/image/provenance.intoto.json")).unwrap();
    let provenance: serde_json::Value = serde_json::from_slice(&statement).unwrap();
    let built: serde_json::Value =
        serde_json::from_slice(&fs::read(team_root.join("dist/image/built.json")).unwrap()).unwrap();
    assert_eq!(provenance["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(provenance["predicateType"], "https://slsa.dev/provenance/v1");
    let subject = format!("sha256:{}", provenance["subject"][0]["digest"]["sha256"].as_str().unwrap());
    assert_eq!(subject, built["manifest_digest"].as_str().unwrap());
    let deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    let model = deps.iter().find(|d| d["name"] == "model.onnx").expect("the model among the dependencies");
    assert_eq!(model["digest"]["blake3"], events[0]["release"]["model_digest"], "{provenance}");
    let head = xshell::cmd!(sh, "git rev-parse HEAD").read().unwrap();
    assert!(deps.iter().any(|d| d["digest"]["gitCommit"] == head.as_str()), "the commit: {provenance}");
    let linked = &events[0]["release"]["files"]["provenance.intoto.json"];
    assert_eq!(linked.as_str(), Some(blake3::hash(&statement).to_hex().as_str()), "the release links it");
    let v1_model = events[0]["release"]["model_digest"].as_str().unwrap().to_string();
    run_report_renders(&team_root, &built);
    // MLflow got the training as a run, the validated model as version 1, and staging's alias.
    let runs = mlflow.runs("churn");
    assert_eq!(runs.len(), 1, "one run per training: {runs:?}\n{}", mlflow.log());
    let tags = mlflow_server::MlflowServer::tags(&runs[0]);
    assert_eq!(tags["slipway.model_blake3"], v1_model, "{tags:?}");
    assert_eq!(tags["mlflow.source.git.commit"], head, "{tags:?}");
    assert!(
        mlflow.has_artifact(&runs[0], "model/model.onnx")
            && mlflow.has_artifact(&runs[0], "validation/validation_report.json")
    );
    assert_eq!(mlflow.versions("churn"), vec![("1".to_string(), v1_model.clone())]);
    assert_eq!(mlflow.alias("churn", "staging").as_deref(), Some("1"));

    let (code, out, err) = xtask_from(&team_root, &slipway, &["ci"], &env);
    assert_eq!(code, 0, "second ci:\n{out}\n{err}");
    assert!(format!("{out}\n{err}").contains("10 stages: 0 ran, 10 cached"), "second ci ran something:\n{out}\n{err}");
    assert_eq!(mlflow.runs("churn").len(), 1, "a restored training logs no second run");

    // ci → promote → a second release → promote it → roll production back to v1; then the
    // trace of v1 and of its model, held to what the ledger and the records say.
    let run = |args: &[&str]| {
        let (code, out, err) = xtask_from(&team_root, &slipway, args, &env);
        assert_eq!(code, 0, "{args:?}:\n{out}\n{err}");
        out
    };
    run(&["promote", "production", "--approve"]);
    assert_eq!(mlflow.alias("churn", "production").as_deref(), Some("1"), "production's alias follows the promote");
    // A new parameter, and the team's tests of what it ships updated with it.
    let params = team_root.join("training/params.toml");
    fs::write(&params, fs::read_to_string(&params).unwrap().replace("C = 1.0", "C = 0.5")).unwrap();
    let tests = team_root.join("training/tests/test_train.py");
    let text = fs::read_to_string(&tests).unwrap();
    let moved = text
        .replace(r#"metrics["params"] == {"C": 1.0,"#, r#"metrics["params"] == {"C": 0.5,"#)
        .replace("train.Params(C=1.0, max_iter=1000", "train.Params(C=0.5, max_iter=1000");
    assert_ne!(moved, text);
    fs::write(&tests, moved).unwrap();
    run(&["ci"]);
    assert_eq!(mlflow.runs("churn").len(), 2, "a second training, a second run");
    assert_eq!(mlflow.versions("churn").len(), 2);
    assert_eq!(mlflow.alias("churn", "staging").as_deref(), Some("2"));
    run(&["promote", "production", "--approve"]);
    assert_eq!(mlflow.alias("churn", "production").as_deref(), Some("2"));
    run(&["rollback", "--version", "v1", "--env", "production"]);
    assert_eq!(mlflow.alias("churn", "production").as_deref(), Some("1"), "and back with the rollback");
    let trace: serde_json::Value = serde_json::from_str(&run(&["trace", "v1", "--json"])).unwrap();
    assert_eq!(trace["kind"], "release");
    let models = trace["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{trace}");
    let m = &models[0];
    assert_eq!(m["model"], v1_model.as_str());
    let fingerprint = m["train"]["fingerprint"].as_str().unwrap();
    assert!(team_root.join(format!(".slipway/cache/records/train/{fingerprint}.json")).is_file(), "{trace}");
    assert_eq!(m["train"]["params"]["C"], 1.0, "v1 was trained with the first parameters: {trace}");
    assert_eq!(m["validation"]["report"]["passed"], true, "{trace}");
    assert_eq!(m["images"][0]["manifest_digest"], built["manifest_digest"], "{trace}");
    assert_eq!(m["images"][0]["provenance"].as_str(), Some(blake3::hash(&statement).to_hex().as_str()));
    let holdout = blake3::hash(&fs::read(team_root.join("data/holdout.csv")).unwrap()).to_hex().to_string();
    assert!(m["data"]["files"].as_array().unwrap().iter().any(|f| f["digest"] == holdout.as_str()), "{trace}");
    let kinds: Vec<(String, String, String)> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().into(),
                e["env"].as_str().unwrap().into(),
                e["release"]["version"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = |k: &str, e: &str| kinds.contains(&(k.to_string(), e.to_string(), "v1".to_string()));
    assert!(want("deploy", "staging") && want("promote", "production") && want("rollback", "production"), "{kinds:?}");
    assert!(kinds.iter().all(|(_, _, v)| v == "v1"), "only v1 holds this model: {kinds:?}");
    // The same chain from the model's digest; the reverse one from a data file's.
    let by_model: serde_json::Value = serde_json::from_str(&run(&["trace", &v1_model, "--json"])).unwrap();
    assert_eq!((by_model["kind"].as_str(), &by_model["models"]), (Some("model"), &trace["models"]));
    let by_data: serde_json::Value = serde_json::from_str(&run(&["trace", &holdout, "--json"])).unwrap();
    assert_eq!(by_data["kind"], "data");
    let trained: Vec<&str> =
        by_data["models"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
    assert_eq!(trained.len(), 2, "both models were trained on this holdout: {by_data}");
    assert!(trained.contains(&v1_model.as_str()));
    let text = run(&["trace", "v1"]);
    assert!(text.contains("rollback to production: live"), "{text}");

    // New data (one training row fewer, tracked and pushed as a team would) and, with MLflow
    // down, a new training: it still ships, the run says MLflow was unreachable, and the new
    // image's provenance names the new data.
    let url = mlflow.url.clone();
    drop(mlflow);
    let train_csv = team_root.join("data/train.csv");
    let rows = fs::read_to_string(&train_csv).unwrap();
    fs::write(&train_csv, &rows[..rows.trim_end().rfind('\n').unwrap() + 1]).unwrap();
    run(&["add", "data"]);
    run(&["push"]);
    let (code, out, err) = xtask_from(&team_root, &slipway, &["ci"], &env);
    assert_eq!(code, 0, "ci with MLflow down:\n{out}\n{err}");
    let data_md5 = |statement: &serde_json::Value| {
        let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap().clone();
        deps.iter()
            .find(|d| d["name"] == "data")
            .map(|d| d["digest"]["md5"].clone())
            .expect("the data among the materials")
    };
    let again: serde_json::Value =
        serde_json::from_slice(&fs::read(team_root.join("dist/image/provenance.intoto.json")).unwrap()).unwrap();
    let pointer = fs::read_to_string(team_root.join("data.dvc")).unwrap();
    assert_ne!(data_md5(&again), data_md5(&provenance), "new data, new materials");
    let md5 = data_md5(&again);
    assert!(pointer.contains(&format!("md5: {}.dir", md5.as_str().unwrap())), "{md5} is not data.dvc's:\n{pointer}");
    // The URI is a secret, so the server shows as `***` where it is exactly the URI.
    for stage in ["train", "validate", "deploy-staging"] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("warning: {stage}:")) && l.contains("MLflow at *** is unreachable")),
            "{stage} does not say MLflow was unreachable:\n{err}"
        );
    }
    assert!(!err.contains(&url) && !out.contains(&url), "the tracking URI was printed:\n{err}");
}

/// `reports/run.html` of the first `ci`: strictly valid HTML5, and in headless Chromium a page
/// of the expected size with pictures on it; it names the image the run built.
fn run_report_renders(root: &Path, built: &serde_json::Value) {
    let html = root.join("reports/run.html");
    let text = fs::read_to_string(&html).expect("ci writes reports/run.html");
    page::parses_strictly(&html);
    for part in
        ["Stages", "Data gate", "Validation", "Confusion matrix", "Single-row latency", "Image", "Staging deploy"]
    {
        assert!(text.contains(&format!(">{part}</h")), "the page has no {part} section");
    }
    assert!(text.contains(built["manifest_digest"].as_str().unwrap()), "the page names the image");
    assert!(text.contains("aria-label=\"latency histogram\"") && text.contains("aria-label=\"confusion matrix\""));
    assert!(!text.contains("<script") && !text.contains("src=\"http"), "no script, nothing fetched");
    let png = root.join("reports/run.png");
    let shot = page::screenshot(&html, &png);
    assert_eq!((shot.width, shot.height), (page::WIDTH, page::HEIGHT), "the screenshot has the window's size");
    assert!(shot.inked > 0.05, "the page rendered blank or nearly: {:.3} of it is not background", shot.inked);
    assert!(
        shot.coloured > 0.005 && shot.colours > 50,
        "no pictures: {:.4} coloured, {} colours",
        shot.coloured,
        shot.colours
    );
    let record: serde_json::Value = serde_json::from_slice(&fs::read(root.join("reports/run.json")).unwrap()).unwrap();
    assert_eq!(record["schema"], "slipway.run.v1");
    assert!(record["stages"].as_array().unwrap().iter().all(|s| s["result"] == "ran"), "{record}");
}
