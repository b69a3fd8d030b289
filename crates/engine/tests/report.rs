//! What a run prints: GitHub Actions workflow commands and step summary, and plain lines.

use std::io::Write;
use std::sync::{Arc, Mutex};

use engine::report::{GitHub, Plain};
use engine::{Pipeline, RunOptions, Stage, StageError};

use crate::fixture::Repo;

/// A `Write` whose bytes the test can read afterwards.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Replaces durations such as `12.3s` with `T`, so snapshots do not depend on the machine.
fn without_times(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split(' ')
                .map(|w| {
                    let (secs, rest) = match w.strip_suffix("s:") {
                        Some(n) => (n, "T:"),
                        None => (w.strip_suffix('s').unwrap_or(""), "T"),
                    };
                    if secs.contains('.') && secs.parse::<f64>().is_ok() { rest } else { w }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn pipeline() -> Pipeline {
    let ok = Stage::new("build", "build it").secret_env("TOKEN").run(|ctx| {
        ctx.log_line(&format!("using token {}", ctx.env()["TOKEN"]));
        Ok(())
    });
    let gate = Stage::new("gate", "judge it")
        .uses("build")
        .run(|_| Err(StageError::rejected("accuracy 0.61 < 0.85\nsee report")));
    let after = Stage::new("ship", "ship it").uses("gate");
    Pipeline::new().stage(ok).unwrap().stage(gate).unwrap().stage(after).unwrap()
}

fn run_with(reporter: Arc<dyn engine::Reporter>) -> Repo {
    let mut repo = Repo::new();
    repo.env.insert("TOKEN".into(), "tok-4242-secret".into());
    repo.secrets.push("TOKEN".into());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let summary =
        runtime.block_on(engine::run(&pipeline(), Arc::new(repo.workspace()), &RunOptions::default(), reporter));
    assert_eq!(summary.exit_code(), 1);
    repo
}

#[test]
fn github_actions_gets_groups_errors_masks_and_a_step_summary() {
    let out = Buffer::default();
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("step-summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    run_with(Arc::new(GitHub::new(Box::new(out.clone()), Some(summary.clone()))));
    insta::assert_snapshot!("github_log", without_times(&out.text()));
    insta::assert_snapshot!("github_step_summary", without_times(&std::fs::read_to_string(&summary).unwrap()));
}

#[test]
fn plain_output_is_one_line_per_event_and_a_table() {
    let out = Buffer::default();
    run_with(Arc::new(Plain::to(Box::new(out.clone()), false)));
    insta::assert_snapshot!("plain_log", without_times(&out.text()));
}
