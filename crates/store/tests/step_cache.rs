//! The engine's step cache on S3: a stage run in one clone is restored in another.

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
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let env = server.env("steps", "ci");
    let remote: Arc<dyn store::Remote> = store::resolve(root, &env).unwrap().open().unwrap().into();
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
