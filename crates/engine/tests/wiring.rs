//! How stages are wired: what is keyed on what, what waits for what, and the wirings the engine
//! refuses because they would let a stale result or an unchecked release through.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::{Freshness, Pipeline, Stage, StageError};

use crate::fixture::Repo;

fn counted(name: &str, runs: &Arc<AtomicUsize>) -> Stage {
    let runs = runs.clone();
    let out = format!("out/{name}.txt");
    Stage::new(name, "write a file").output(&out).run(move |ctx| {
        runs.fetch_add(1, Ordering::SeqCst);
        let text = fs::read_to_string(ctx.root().join("src.txt")).unwrap_or_default();
        fs::create_dir_all(ctx.root().join("out"))?;
        fs::write(ctx.root().join(&out), text)?;
        Ok(())
    })
}

fn check_refused(pipeline: Result<Pipeline, engine::PipelineError>, expect: &str) {
    match pipeline {
        Ok(_) => panic!("the pipeline was accepted; expected: {expect}"),
        Err(e) => assert_eq!(e.to_string(), expect),
    }
}

#[test]
fn keying_is_transitive() {
    let repo = Repo::new();
    repo.write("src.txt", "one");
    let (a, b, c) = (Arc::default(), Arc::default(), Arc::default());
    let pipeline = || {
        Pipeline::new()
            .stage(counted("a", &a).files("src", &["src.txt"]))
            .unwrap()
            .stage(counted("b", &b).uses("a").param("fixed", 1))
            .unwrap()
            // `c` uses `b` only; `a`'s outputs are keyed through it.
            .stage(counted("c", &c).uses("b"))
            .unwrap()
    };
    repo.run(&pipeline());
    let status = engine::status(&pipeline(), &repo.workspace(), false).unwrap();
    assert!(status.iter().all(|s| s.freshness == Freshness::Fresh), "{status:?}");
    let p = pipeline();
    let keyed: Vec<&str> = p.keyed_on("c").iter().map(|s| s.name()).collect();
    assert_eq!(keyed, ["a", "b"]);
    repo.write("src.txt", "two");
    let run = repo.run(&pipeline());
    assert_eq!(run.outcomes(), ["a=ran", "b=ran", "c=ran"]);
    let last = fs::read_to_string(repo.path(".slipway/last/c.json")).unwrap();
    assert!(last.contains("\"upstream:a\"") && last.contains("\"upstream:b\""), "{last}");
}

#[test]
fn after_orders_and_gates_without_keying() {
    let repo = Repo::new();
    repo.write("src.txt", "one");
    let ship_runs = Arc::new(AtomicUsize::new(0));
    let pipeline = |verdict: Result<(), &'static str>, gate_param: i64| {
        let gate = Stage::new("gate", "judge")
            .gate()
            .param("p", gate_param)
            .run(move |_| verdict.map_err(StageError::rejected));
        Pipeline::new().stage(gate).unwrap().stage(counted("ship", &ship_runs).ships().after("gate")).unwrap()
    };
    assert_eq!(repo.run(&pipeline(Ok(()), 1)).outcomes(), ["gate=ran", "ship=ran"]);
    // The gate's inputs change and it passes again: what ships is not rebuilt.
    assert_eq!(repo.run(&pipeline(Ok(()), 2)).outcomes(), ["gate=ran", "ship=cached"]);
    // Its inputs change and it fails: nothing ships, even though the shipping stage is cached.
    let failed = repo.run(&pipeline(Err("tests failed"), 3));
    assert_eq!(failed.outcomes(), ["gate=rejected", "ship=skipped"]);
    assert_eq!(failed.summary.exit_code(), 1);
    assert_eq!(ship_runs.load(Ordering::SeqCst), 1);
    // While the gate must run, the shipping stage is not fresh either.
    let status = engine::status(&pipeline(Ok(()), 4), &repo.workspace(), false).unwrap();
    assert_eq!(status[1].freshness, Freshness::Stale { reasons: vec!["waits for `gate`, which runs first".into()] });
}

#[test]
fn a_stage_that_ships_must_run_after_every_gate() {
    let gate = || Stage::new("test", "").gate();
    check_refused(
        Pipeline::new().stage(gate()).unwrap().stage(Stage::new("deploy", "").ships()),
        "stage `deploy` ships but does not run after the gate `test`; declare `.after(\"test\")`",
    );
    let through = Pipeline::new()
        .stage(gate())
        .unwrap()
        .stage(Stage::new("image", "").ships().after("test"))
        .unwrap()
        .stage(Stage::new("deploy", "").ships().uses("image"));
    assert!(through.is_ok(), "waiting through another stage counts");
    check_refused(
        Pipeline::new().stage(Stage::new("deploy", "").ships()).unwrap().stage(gate()),
        "gate `test` is declared after `deploy`, which ships; declare gates before what ships",
    );
}

#[test]
fn reading_another_stages_output_requires_using_it() {
    let writer = || Stage::new("train", "").output("models");
    check_refused(
        Pipeline::new()
            .stage(writer())
            .unwrap()
            .stage(Stage::new("validate", "").files("model", &["models/model.onnx"])),
        "stage `validate` reads `models/model.onnx`, which stage `train` writes; declare `.uses(\"train\")`",
    );
    check_refused(
        Pipeline::new().stage(Stage::new("lint", "").files("src", &["models"])).unwrap().stage(writer()),
        "stage `train` writes `models`, which stage `lint`, declared before it, reads",
    );
    check_refused(
        Pipeline::new().stage(writer()).unwrap().stage(Stage::new("other", "").updates("models/x")),
        "stages `train` and `other` both write `models/x`",
    );
    let ok = Pipeline::new().stage(writer()).unwrap().stage(Stage::new("v", "").uses("train").files("m", &["models"]));
    assert!(ok.is_ok());
}

#[test]
fn pipeline_wiring_mistakes_are_refused() {
    let dup = Pipeline::new().stage(Stage::new("a", "")).unwrap().stage(Stage::new("a", ""));
    check_refused(dup, "two stages are named `a`");
    check_refused(
        Pipeline::new().stage(Stage::new("b", "").uses("a")),
        "stage `b` runs after `a`, which is not declared before it",
    );
    check_refused(
        Pipeline::new().stage(Stage::new("c", "").env("X").env("X")),
        "stage `c` declares the input `env:X` twice",
    );
}

#[test]
fn select_takes_a_stage_and_everything_it_waits_for() {
    let p = Pipeline::new()
        .stage(Stage::new("gate", "").gate())
        .unwrap()
        .stage(Stage::new("build", ""))
        .unwrap()
        .stage(Stage::new("image", "").ships().uses("build").after("gate"))
        .unwrap()
        .stage(Stage::new("other", ""))
        .unwrap();
    let names = |p: &Pipeline| p.stages().iter().map(|s| s.name().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&p.select(&["image"]).unwrap()), ["gate", "build", "image"]);
    assert!(p.select(&["nope"]).is_err());
}

#[test]
fn the_diagram_lists_roles_uses_and_gates() {
    let p = Pipeline::new()
        .stage(Stage::new("test", "").gate())
        .unwrap()
        .stage(Stage::new("build", ""))
        .unwrap()
        .stage(Stage::new("image", "").ships().uses("build").after("test"))
        .unwrap();
    let expect = "\
stage  role   uses (keyed on its outputs)  runs after
test   gate
build
image  ships  build                        test
";
    assert_eq!(p.diagram(), expect);
}
