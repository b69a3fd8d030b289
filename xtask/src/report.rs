//! The run report: `reports/run.html` after every `ci` (and `cargo xtask report` to rebuild
//! it), and the same facts as Markdown in GitHub Actions' step summary.
//!
//! A run writes `reports/run.json` (its stage timeline) first; the page is built from that and
//! from what the stages left: the data gate's and the validation's reports, the image record
//! and the staging deploy in the release ledger. Every file is read within a byte limit and
//! parsed into its type before any of it is shown; a missing or unreadable part is said on the
//! page, never guessed.

mod html;
mod markdown;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::Env;
use crate::paths::{DATA_REPORT, IMAGE_RECORD, RUN_RECORD, RUN_REPORT, VALIDATION_REPORT};

/// The `schema` of `reports/run.json`.
pub const RUN_SCHEMA: &str = "slipway.run.v1";

/// The largest report file read (the data gate lists duplicate lines, so it can be long).
const MAX_FILE: u64 = 32 << 20;
/// The most stages a run record may hold, and "why" lines per stage.
const MAX_STAGES: usize = 256;
const MAX_WHY: usize = 32;
/// The most warnings a run record keeps, and the longest.
const MAX_WARNINGS: usize = 100;
const MAX_WARNING: usize = 2000;

/// What a run did, stage by stage, as `reports/run.json` keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`RUN_SCHEMA`].
    pub schema: String,
    /// When the run ended, in seconds since the Unix epoch.
    pub finished_at: u64,
    /// The commit the run was on, when git could say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The run's exit code.
    pub exit_code: u8,
    /// The stages, in pipeline order.
    pub stages: Vec<StageRow>,
    /// What the run warned of without failing (an MLflow that was not told, a result not cached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One stage of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRow {
    /// The stage.
    pub stage: String,
    /// `ran`, `cached`, `restored`, `rejected`, `failed` or `skipped`.
    pub result: String,
    /// Why it was rejected, failed or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When it started, in milliseconds from the start of the run.
    pub started_ms: u64,
    /// How long it took.
    pub elapsed_ms: u64,
    /// Why it ran instead of being restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<String>,
}

const RESULTS: [&str; 6] = engine::report::OUTCOME_WORDS;

impl RunRecord {
    /// The record of `summary`, ended now.
    pub fn of(summary: &engine::RunSummary, commit: Option<String>, warnings: &[String]) -> RunRecord {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let stages = summary
            .stages
            .iter()
            .map(|s| StageRow {
                stage: s.stage.clone(),
                result: s.outcome.word().to_string(),
                detail: match &s.outcome {
                    engine::Outcome::Rejected(d) | engine::Outcome::Failed(d) | engine::Outcome::Skipped(d) => {
                        Some(d.clone())
                    }
                    _ => None,
                },
                started_ms: ms(s.started),
                elapsed_ms: ms(s.elapsed),
                why: s.why.iter().take(MAX_WHY).cloned().collect(),
            })
            .collect();
        RunRecord {
            schema: RUN_SCHEMA.to_string(),
            finished_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            commit,
            exit_code: summary.exit_code(),
            stages,
            warnings: warnings.iter().take(MAX_WARNINGS).map(|w| clip(w, MAX_WARNING)).collect(),
        }
    }

    /// Refuses a record this version did not write, or one that is out of bounds.
    fn check(&self) -> Result<(), String> {
        if self.schema != RUN_SCHEMA {
            return Err(format!("unknown schema `{}` (this Slipway writes {RUN_SCHEMA})", self.schema.escape_debug()));
        }
        if self.stages.len() > MAX_STAGES {
            return Err(format!("{} stages, more than {MAX_STAGES}", self.stages.len()));
        }
        for s in &self.stages {
            if !RESULTS.contains(&s.result.as_str()) {
                return Err(format!(
                    "stage `{}` has an unknown result `{}`",
                    s.stage.escape_debug(),
                    s.result.escape_debug()
                ));
            }
            if s.why.len() > MAX_WHY {
                return Err(format!("stage `{}` gives more than {MAX_WHY} reasons", s.stage.escape_debug()));
            }
        }
        if self.warnings.len() > MAX_WARNINGS {
            return Err(format!("more than {MAX_WARNINGS} warnings"));
        }
        Ok(())
    }

    /// The result of `stage` in this run: `None` when the run did not include it.
    fn result_of(&self, stage: &str) -> Option<&str> {
        self.stages.iter().find(|s| s.stage == stage).map(|s| s.result.as_str())
    }

    /// How many stages ended with `result`.
    fn count(&self, result: &str) -> usize {
        self.stages.iter().filter(|s| s.result == result).count()
    }

    /// `11 stages: 3 ran, 8 cached`, as the run's summary says it.
    fn totals(&self) -> String {
        engine::report::totals_line(self.stages.len(), |r| self.count(r))
    }
}

/// The image as `dist/image/built.json` records it.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageFacts {
    pub manifest_digest: String,
    pub config_digest: String,
    pub tags: Vec<String>,
    pub layers: Vec<LayerFacts>,
    #[serde(default)]
    pub pushed: Option<String>,
}

/// One layer of the image.
#[derive(Clone, Debug, Deserialize)]
pub struct LayerFacts {
    pub name: String,
    pub digest: String,
    pub size: u64,
}

/// Everything the page shows; each part that could not be read says why instead.
pub struct Facts {
    pub run: RunRecord,
    pub data: Result<gate::DataReport, String>,
    pub validation: Result<gate::ValidationReport, String>,
    pub image: Result<ImageFacts, String>,
    pub deploy: Result<deploy::ledger::Event, String>,
}

impl Facts {
    /// Reads what the stages of `run` left in `root`, and staging's latest ledger entry.
    pub fn gather(root: &Path, env: &Env, run: RunRecord, redact: &dyn Fn(&str) -> String) -> Facts {
        let data = read_json(root, DATA_REPORT).and_then(|r: gate::DataReport| {
            (r.schema == gate::data_check::DATA_REPORT_SCHEMA)
                .then_some(r)
                .ok_or_else(|| format!("{DATA_REPORT}: not a report of this version"))
        });
        let validation = read_json(root, VALIDATION_REPORT).and_then(|r: gate::ValidationReport| {
            (r.schema == gate::REPORT_SCHEMA)
                .then_some(r)
                .ok_or_else(|| format!("{VALIDATION_REPORT}: not a report of this version"))
        });
        let image = read_json(root, IMAGE_RECORD);
        let deploy = staging_event(root, env).map_err(|e| redact(&e));
        Facts { run, data, validation, image, deploy }
    }
}

/// Reads `rel` under `root` as JSON of type `T`, within [`MAX_FILE`] bytes.
fn read_json<T: serde::de::DeserializeOwned>(root: &Path, rel: &str) -> Result<T, String> {
    let path = root.join(rel);
    let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{rel} is not there: the stage that writes it did not run here"),
        _ => format!("cannot read {rel}: {e}"),
    })?;
    let mut bytes = Vec::new();
    use std::io::Read;
    file.take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {rel}: {e}"))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("{rel} is over {} MiB; it is left out", MAX_FILE >> 20));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{rel} does not parse: {e}"))
}

/// The newest ledger entry of the environment `ci` deploys to.
fn staging_event(root: &Path, env: &Env) -> Result<deploy::ledger::Event, String> {
    let staging = crate::stages::deploy::ENV;
    let events = crate::root::program_root(env, root)
        .and_then(|program| crate::release::deployer(&program, root, env, Box::new(|_: &str| {})))
        .and_then(|d| crate::release::block_on(d.events()).map_err(anyhow::Error::from))
        .map_err(|e| format!("the release ledger could not be read: {e:#}"))?;
    events
        .into_iter()
        .filter(|e| e.env == staging)
        .max_by_key(|e| e.seq)
        .ok_or_else(|| format!("the ledger has no release on {staging} yet"))
}

/// After a `ci` run: writes `reports/run.json` and `reports/run.html`, and in GitHub Actions
/// the step summary. A report that cannot be written is a warning: the run's verdict stands.
pub fn after_run(
    root: &Path,
    env: &Env,
    summary: &engine::RunSummary,
    warnings: &[String],
    redact: &dyn Fn(&str) -> String,
) {
    let commit = git_commit(root, env);
    let run = RunRecord::of(summary, commit, warnings);
    let facts = Facts::gather(root, env, run, redact);
    // The step summary goes out even when the page cannot be written.
    crate::validate::append_step_summary(env, &redact(&markdown::page(&facts)));
    match write(root, &facts, redact) {
        Ok(()) => eprintln!("report: {RUN_REPORT}"),
        Err(e) => eprintln!("warning: the run report was not written: {e:#}"),
    }
}

/// A reporter that passes everything on and keeps the warnings, for the run report.
pub struct Collecting {
    inner: std::sync::Arc<dyn engine::Reporter>,
    warnings: std::sync::Mutex<Vec<String>>,
}

impl Collecting {
    pub fn new(inner: std::sync::Arc<dyn engine::Reporter>) -> Collecting {
        Collecting { inner, warnings: std::sync::Mutex::new(Vec::new()) }
    }

    /// The warnings so far (already masked by the engine), at most [`MAX_WARNINGS`].
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl engine::Reporter for Collecting {
    fn stage_started(&self, stage: &str, about: &str) {
        self.inner.stage_started(stage, about);
    }
    fn hashing(&self, stage: &str, bytes: u64) {
        self.inner.hashing(stage, bytes);
    }
    fn running(&self, stage: &str) {
        self.inner.running(stage);
    }
    fn stage_finished(&self, report: &engine::StageReport, log: &str) {
        self.inner.stage_finished(report, log);
    }
    fn secret(&self, value: &str) {
        self.inner.secret(value);
    }
    fn warn(&self, message: &str) {
        let mut kept = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < MAX_WARNINGS {
            kept.push(clip(message, MAX_WARNING));
        }
        drop(kept);
        self.inner.warn(message);
    }
    fn finished(&self, summary: &engine::RunSummary) {
        self.inner.finished(summary);
    }
}

/// `cargo xtask report`: rebuilds `reports/run.html` from the last run's record.
pub fn rebuild(root: &Path, env: &Env) -> Result<u8> {
    let run: RunRecord = read_json(root, RUN_RECORD).map_err(|e| {
        anyhow::anyhow!("{e}\n  help: `cargo xtask ci` records a run; `cargo xtask report` rebuilds its page")
    })?;
    if let Err(why) = run.check() {
        bail!("{RUN_RECORD}: {why}; run `cargo xtask ci` again to record a new one");
    }
    // Whatever a stage of this pipeline declares secret is masked on the page, as in a run.
    let pipeline = crate::pipeline::pipeline(&crate::root::program_root(env, root)?, root)?;
    let ws = engine::Workspace::new(root, env.clone()).with_secrets(&pipeline.secrets());
    let redact = |text: &str| ws.redact(text);
    write_page(root, &Facts::gather(root, env, run, &redact), &redact)?;
    println!("{RUN_REPORT}");
    Ok(0)
}

fn write(root: &Path, facts: &Facts, redact: &dyn Fn(&str) -> String) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(&facts.run)?;
    json.push(b'\n');
    std::fs::create_dir_all(root.join("reports")).context("cannot create reports/")?;
    let json = redact(&String::from_utf8_lossy(&json));
    engine::write_atomic(&root.join(RUN_RECORD), json.as_bytes())
        .with_context(|| format!("cannot write {RUN_RECORD}"))?;
    write_page(root, facts, redact)
}

fn write_page(root: &Path, facts: &Facts, redact: &dyn Fn(&str) -> String) -> Result<()> {
    engine::write_atomic(&root.join(RUN_REPORT), redact(&html::page(facts)).as_bytes())
        .with_context(|| format!("cannot write {RUN_REPORT}"))
}

fn git_commit(root: &Path, env: &Env) -> Option<String> {
    let sh = xshell::Shell::new().ok()?;
    sh.change_dir(root);
    let path = env.get("PATH").cloned().unwrap_or_default();
    let out = xshell::cmd!(sh, "git rev-parse HEAD").env("PATH", path).quiet().ignore_stderr().read().ok()?;
    let out = out.trim();
    (out.len() == 40 && out.bytes().all(|b| b.is_ascii_hexdigit())).then(|| out.to_string())
}

/// `1.2 MiB`.
fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[unit]) }
}

/// `12.3 s` or `850 ms`.
fn duration(ms: u64) -> String {
    if ms >= 1000 { format!("{:.1} s", ms as f64 / 1000.0) } else { format!("{ms} ms") }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
