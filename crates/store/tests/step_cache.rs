//! The engine's step cache on a remote: a stage run in one clone is restored in another, and a
//! record tampered with on the remote is refused before any of its paths is used.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::{LocalStore, Pipeline, Stage, Workspace};

use crate::fixture::{Seaweed, write_tree};

fn pipeline(runs: Arc<AtomicUsize>) -> Pipeline {
    let stage =
        Stage::new("train", "pretend to train").files("data", &["data"]).output("models/model.bin").run(move |ctx| {
            runs.fetch_add(1, Ordering::SeqCst);
            let input = std::fs::read(ctx.root().join("data/train.csv"))?;
            std::fs::create_dir_all(ctx.root().join("models"))?;
            std::fs::write(ctx.root().join("models/model.bin"), blake3::hash(&input).as_bytes())?;
            Ok(())
        });
    Pipeline::new().stage(stage).unwrap()
}

fn run_in(root: &std::path::Path, server: &Seaweed, runs: Arc<AtomicUsize>) -> engine::RunSummary {
    let env = server.env("steps", "ci");
    let remote: Arc<dyn store::Remote> = store::resolve(root, &env).unwrap().open().unwrap().into();
    run_with(root, remote, env, runs)
}

fn run_with(
    root: &std::path::Path,
    remote: Arc<dyn store::Remote>,
    env: std::collections::BTreeMap<String, String>,
    runs: Arc<AtomicUsize>,
) -> engine::RunSummary {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shared = store::RemoteStepStore::new(remote, runtime.handle().clone());
    let local = LocalStore::new(root.join(".slipway/cache"));
    let ws = Workspace::new(root, env).with_store(Box::new(store::TieredStore::new(local, shared)));
    let reporter = Arc::new(engine::report::Plain::new(false));
    runtime.block_on(engine::run(&pipeline(runs), Arc::new(ws), &Default::default(), reporter))
}

#[test]
fn a_second_clone_restores_from_the_remote_without_running() {
    let server = Seaweed::start();
    server.create_bucket("steps");
    let files = vec![("data/train.csv", b"text,label\ngreat,1\n".to_vec())];
    let (ci, laptop) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_tree(ci.path(), &files);
    write_tree(laptop.path(), &files);
    let runs = Arc::new(AtomicUsize::new(0));

    let first = run_in(ci.path(), &server, runs.clone());
    assert_eq!(first.stages[0].outcome, engine::Outcome::Ran);
    let second = run_in(laptop.path(), &server, runs.clone());
    assert_eq!(second.stages[0].outcome, engine::Outcome::Restored);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the laptop must not train again");
    assert_eq!(
        std::fs::read(laptop.path().join("models/model.bin")).unwrap(),
        std::fs::read(ci.path().join("models/model.bin")).unwrap()
    );
}

/// Rewrites the first output path of every record on `remote` to `path`.
fn tamper(remote: &Arc<dyn store::Remote>, path: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let keys = remote.list(&format!("{}/records", store::STEP_CACHE_PREFIX)).await.unwrap();
        assert!(!keys.is_empty(), "no record to tamper with");
        for key in keys {
            let tmp = tempfile::NamedTempFile::new().unwrap();
            remote.get(&key, tmp.path(), &|_| {}).await.unwrap();
            let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(tmp.path()).unwrap()).unwrap();
            record["outputs"][0]["path"] = path.into();
            std::fs::write(tmp.path(), serde_json::to_vec(&record).unwrap()).unwrap();
            remote.put(&key, tmp.path()).await.unwrap();
        }
    });
}

#[test]
fn a_tampered_record_on_a_remote_is_refused_and_writes_nothing_outside() {
    let server = Seaweed::start();
    server.create_bucket("steps");
    let files = vec![("data/train.csv", b"text,label\ngreat,1\n".to_vec())];
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let dir_remote = tempfile::tempdir().unwrap();
    type Env = std::collections::BTreeMap<String, String>;
    let remotes: Vec<(&str, Arc<dyn store::Remote>, Env)> = vec![
        ("a directory", Arc::new(store::DirRemote::new(dir_remote.path())), Default::default()),
        (
            "SeaweedFS",
            store::resolve(outside.path(), &server.env("steps", "ci")).unwrap().open().unwrap().into(),
            server.env("steps", "ci"),
        ),
    ];
    let attacks = [
        (victim.display().to_string(), "is not a plain relative path"),
        ("models/../../victim.txt".to_string(), "is not a plain relative path"),
        ("../victim.txt".to_string(), "is not a plain relative path"),
        ("data/train.csv".to_string(), "is outside the stage's declared outputs"),
    ];
    for (name, remote, env) in remotes {
        let ci = tempfile::tempdir().unwrap();
        write_tree(ci.path(), &files);
        let runs = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            run_with(ci.path(), remote.clone(), env.clone(), runs.clone()).stages[0].outcome,
            engine::Outcome::Ran
        );
        for (path, why) in &attacks {
            tamper(&remote, path);
            let laptop = tempfile::tempdir().unwrap();
            write_tree(laptop.path(), &files);
            let run = run_with(laptop.path(), remote.clone(), env.clone(), runs.clone());
            let engine::Outcome::Failed(message) = &run.stages[0].outcome else {
                panic!("{name}, {path}: {:?}", run.stages[0].outcome)
            };
            assert!(message.contains("is refused") && message.contains(why), "{name}, {path}: {message}");
            assert_eq!(run.exit_code(), 2);
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious", "{name}, {path}");
            assert_eq!(
                std::fs::read_dir(outside.path()).unwrap().count(),
                1,
                "{name}, {path}: a file appeared outside"
            );
            assert_eq!(std::fs::read(laptop.path().join("data/train.csv")).unwrap(), files[0].1, "{name}, {path}");
            assert!(!laptop.path().join("models").exists(), "{name}, {path}: nothing was restored");
        }
    }
}
