//! A temporary repository per test, and helpers to run a pipeline in it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engine::{Pipeline, Reporter, RunOptions, RunSummary, StageReport, Workspace};

/// A repository in a temporary directory with its own environment snapshot.
pub struct Repo {
    dir: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<String>,
}

impl Repo {
    /// A small Cargo workspace for the crate-closure tests: `pkg-a` depends on `pkg-b` and
    /// `serde`, `pkg-c` on `itoa`, locked at `serde` and `itoa`. Member files already there are
    /// kept, so rewriting the lock keeps a test's edits.
    pub fn cargo_workspace(&self, serde: &str, itoa: &str) {
        self.write("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\n");
        for (dir, name, deps) in [
            ("a", "pkg-a", "pkg-b = { path = \"../b\" }\nserde = \"1\"\n"),
            ("b", "pkg-b", ""),
            ("c", "pkg-c", "itoa = \"1\"\n"),
        ] {
            let manifest = format!("crates/{dir}/Cargo.toml");
            if !self.path(&manifest).exists() {
                self.write(&manifest, format!("[package]\nname = \"{name}\"\n[dependencies]\n{deps}"));
                self.write(&format!("crates/{dir}/src/lib.rs"), "// code\n");
            }
        }
        if !self.path("crates/a/tests/t.rs").exists() {
            self.write("crates/a/tests/t.rs", "// a test\n");
        }
        let reg = "registry+https://github.com/rust-lang/crates.io-index";
        self.write(
            "Cargo.lock",
            format!(
                "version = 4\n\n[[package]]\nname = \"pkg-a\"\nversion = \"0.1.0\"\ndependencies = [\"pkg-b\", \"serde\"]\n\n\
                 [[package]]\nname = \"pkg-b\"\nversion = \"0.1.0\"\n\n\
                 [[package]]\nname = \"pkg-c\"\nversion = \"0.1.0\"\ndependencies = [\"itoa\"]\n\n\
                 [[package]]\nname = \"serde\"\nversion = \"{serde}\"\nsource = \"{reg}\"\nchecksum = \"s{serde}\"\n\n\
                 [[package]]\nname = \"itoa\"\nversion = \"{itoa}\"\nsource = \"{reg}\"\nchecksum = \"i{itoa}\"\n"
            ),
        );
    }

    pub fn new() -> Repo {
        Repo { dir: tempfile::tempdir().unwrap(), env: BTreeMap::new(), secrets: Vec::new() }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    /// A fresh workspace, as a new `cargo xtask` process would make.
    pub fn workspace(&self) -> Workspace {
        Workspace::new(self.root(), self.env.clone()).with_secrets(&self.secrets)
    }

    pub fn run(&self, pipeline: &Pipeline) -> Run {
        self.run_with(pipeline, &RunOptions::default())
    }

    pub fn run_with(&self, pipeline: &Pipeline, opts: &RunOptions) -> Run {
        let recorder = Arc::new(Recorder::default());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let ws = Arc::new(self.workspace());
        let summary = runtime.block_on(engine::run(pipeline, ws, opts, recorder.clone()));
        let events = recorder.events.lock().unwrap().clone();
        Run { summary, events }
    }

    /// Every file under the repository, as text, for greps.
    pub fn all_text(&self) -> String {
        let mut text = String::new();
        for entry in walkdir::WalkDir::new(self.root()) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                text.push_str(&String::from_utf8_lossy(&fs::read(entry.path()).unwrap()));
            }
        }
        text
    }
}

pub struct Run {
    pub summary: RunSummary,
    pub events: Vec<String>,
}

impl Run {
    /// `stage=word` for every stage, e.g. `["up=ran", "down=cached"]`.
    pub fn outcomes(&self) -> Vec<String> {
        self.summary.stages.iter().map(|s| format!("{}={}", s.stage, s.outcome.word())).collect()
    }

    pub fn outcome(&self, stage: &str) -> &'static str {
        self.summary.stages.iter().find(|s| s.stage == stage).unwrap().outcome.word()
    }
}

/// Records every event as a line, as a plain reporter would print it.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Recorder {
    fn push(&self, line: String) {
        self.events.lock().unwrap().push(line);
    }
}

impl Reporter for Recorder {
    fn stage_started(&self, stage: &str, about: &str) {
        self.push(format!("start {stage}: {about}"));
    }
    fn hashing(&self, _: &str, _: u64) {}
    fn stage_finished(&self, report: &StageReport, log: &str) {
        self.push(format!("finish {} {:?}\n{log}", report.stage, report.outcome));
    }
    fn secret(&self, _: &str) {}
    fn warn(&self, message: &str) {
        self.push(format!("warning: {message}"));
    }
    fn finished(&self, summary: &RunSummary) {
        self.push(engine::report::summary_table(summary));
    }
}
