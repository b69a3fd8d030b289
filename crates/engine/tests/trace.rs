//! Tracing a stage's commands with the real `strace`: an undeclared read is caught, a declared
//! one is not reported, and neither are files the commands wrote first.

use engine::{Command, Pipeline, RunOptions, Stage, TraceOptions};

use crate::fixture::Repo;

/// Whether this test already runs under a tracer (`cargo xtask ci --trace-inputs` tracing the
/// `test` stage): a traced process cannot trace its children, so strace cannot run here. Never
/// the case in CI or for the README's test command.
pub fn under_a_tracer() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().any(|l| l.strip_prefix("TracerPid:").is_some_and(|pid| pid.trim() != "0"))
}

fn traced(repo: &mut Repo, stage: Stage) -> Option<engine::trace::TraceReport> {
    if under_a_tracer() {
        eprintln!("running under a tracer: strace cannot trace from here; the outer trace covers this");
        return None;
    }
    let name = stage.name().to_string();
    let pipeline = Pipeline::new().stage(stage).unwrap();
    let dir = repo.path(".slipway/trace");
    std::fs::create_dir_all(&dir).unwrap();
    repo.env.insert("PATH".into(), std::env::var("PATH").unwrap());
    let opts =
        RunOptions { trace: Some(TraceOptions { dir: dir.clone(), stages: vec![name.clone()] }), ..Default::default() };
    let run = repo.run_with(&pipeline, &opts);
    assert_eq!(run.summary.exit_code(), 0, "{:?}", run.events);
    let ws = repo.workspace();
    let last = ws.last_record(&name).unwrap();
    let stage = pipeline.get(&name).unwrap();
    Some(engine::trace::analyse(&pipeline, stage, repo.root(), false, &last.inputs, &dir).unwrap())
}

#[test]
fn an_undeclared_read_is_caught_and_declared_ones_are_not() {
    let mut repo = Repo::new();
    repo.write(
        "training/train.sh",
        "cat data/in.csv training/extra.cfg > model.txt\necho tmp > tmp.txt\ncat tmp.txt\n",
    );
    repo.write("data/in.csv", "1,2\n");
    repo.write("training/extra.cfg", "lr=1\n");
    repo.write("training/unused.txt", "never read\n");
    let stage = Stage::new("train", "train with a script")
        .code("training/train.sh")
        .files("data", &["data"])
        .files("docs", &["training/unused.txt"])
        .command(Command::new("train", "sh").arg("training/train.sh"))
        .output("model.txt")
        .output("tmp.txt");
    let Some(report) = traced(&mut repo, stage) else { return };
    assert_eq!(report.undeclared, ["training/extra.cfg"]);
    assert_eq!(report.unused, ["`training/unused.txt` is declared and was never opened"]);
}

#[test]
fn a_fully_declared_stage_reports_nothing() {
    let mut repo = Repo::new();
    repo.write("training/train.sh", "cat training/params.txt > out.txt\n");
    repo.write("training/params.txt", "C=1\n");
    let stage = Stage::new("train", "")
        .code("training")
        .command(Command::new("train", "sh").arg("training/train.sh"))
        .output("out.txt");
    let Some(report) = traced(&mut repo, stage) else { return };
    assert!(report.undeclared.is_empty(), "{report:?}");
}
