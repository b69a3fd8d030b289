//! The runner: stages in dependency order, independent ones at the same time, each either
//! restored from the step cache or run, and a summary at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::watch;

use crate::cache_key::Digest;
use crate::context::StageContext;
use crate::outputs::{Stash, restore_outputs, store_outputs};
use crate::pipeline::Pipeline;
use crate::plan::{differing_outputs, environment_matches, mark_environment, observe_outputs, resolve, stage_env};
use crate::record::{RECORD_SCHEMA, StageRecord, environment_outputs_digest, outputs_digest};
use crate::report::Reporter;
use crate::stage::{Stage, StageError};
use crate::workspace::Workspace;

/// How a run treats the step cache.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Run every stage, ignoring recorded results (results are still recorded).
    pub no_cache: bool,
    /// Run these stages even if a record matches.
    pub force: Vec<String>,
    /// Run the commands of these stages under `strace`, writing the traces into this directory
    /// (see [`crate::trace`]); a traced stage always runs.
    pub trace: Option<TraceOptions>,
}

/// Which stages a run traces, and where the traces go.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// The directory the traces are written to.
    pub dir: std::path::PathBuf,
    /// The stages to trace.
    pub stages: Vec<String>,
}

impl RunOptions {
    fn traces(&self, stage: &Stage) -> Option<std::path::PathBuf> {
        let t = self.trace.as_ref()?;
        (t.stages.contains(&stage.name) && !stage.commands.is_empty()).then(|| t.dir.clone())
    }
}

/// What happened to one stage.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Its action ran and succeeded.
    Ran,
    /// A record matched and the outputs were already in place.
    Cached,
    /// A record matched and the outputs were restored from the step cache.
    Restored,
    /// A gate said no (exit 1).
    Rejected(String),
    /// The stage could not do its job (exit 2).
    Failed(String),
    /// Not run because an upstream stage did not succeed.
    Skipped(String),
}

impl Outcome {
    /// One word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::Cached => "cached",
            Outcome::Restored => "restored",
            Outcome::Rejected(_) => "rejected",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }

    /// Whether dependents may run.
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Ran | Outcome::Cached | Outcome::Restored)
    }
}

/// One row of the summary.
#[derive(Clone, Debug)]
pub struct StageReport {
    /// The stage.
    pub stage: String,
    /// What happened.
    pub outcome: Outcome,
    /// Wall time, including hashing.
    pub elapsed: Duration,
    /// When it started, from the start of the run.
    pub started: Duration,
    /// Why it ran rather than being restored: what changed since its last record in this
    /// workspace, or the flag that made it run. Empty when it did not run its action.
    pub why: Vec<String>,
}

/// The result of a run.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// One row per stage, in declaration order.
    pub stages: Vec<StageReport>,
}

impl RunSummary {
    /// 0 when every stage succeeded, 2 when any could not do its job, else 1.
    pub fn exit_code(&self) -> u8 {
        let any = |f: fn(&Outcome) -> bool| self.stages.iter().any(|s| f(&s.outcome));
        if any(|o| matches!(o, Outcome::Failed(_))) {
            2
        } else if any(|o| !o.succeeded()) {
            1
        } else {
            0
        }
    }

    /// How many stages ended with `word` (see [`Outcome::word`]).
    pub fn count(&self, word: &str) -> usize {
        self.stages.iter().filter(|s| s.outcome.word() == word).count()
    }
}

type Done = Option<(Outcome, Option<Digest>)>;

/// What `execute` gives back: the outcome, the outputs digest, and why the stage ran.
type Executed = (Outcome, Option<Digest>, Vec<String>);

/// Runs `pipeline` in `ws`, reporting progress to `reporter`.
pub async fn run(
    pipeline: &Pipeline,
    ws: Arc<Workspace>,
    opts: &RunOptions,
    reporter: Arc<dyn Reporter>,
) -> RunSummary {
    for secret in ws.secret_values() {
        reporter.secret(secret);
    }
    // Every stage's probes start at once: in a run where nothing changes they are the longest
    // part of planning, and each stage would otherwise wait for its own after its upstream. An
    // answer is forgotten as soon as any stage runs or restores (`Workspace::forget_probes`), so
    // no stage is keyed on what a tool printed before an earlier stage changed it.
    ws.prefetch_probes(pipeline.stages().iter().flat_map(|s| crate::plan::probes(s, &ws)).collect());
    let shared = Arc::new(pipeline.clone());
    let mut done: BTreeMap<String, watch::Receiver<Done>> = BTreeMap::new();
    let mut tasks = Vec::new();
    let begun = Instant::now();
    for stage in pipeline.stages() {
        let (tx, rx) = watch::channel(None);
        let upstream: Vec<(String, watch::Receiver<Done>)> =
            pipeline.waits_for(&stage.name).iter().map(|up| (up.name.clone(), done[&up.name].clone())).collect();
        done.insert(stage.name.clone(), rx);
        let job = Job {
            pipeline: shared.clone(),
            stage: stage.clone(),
            ws: ws.clone(),
            opts: opts.clone(),
            reporter: reporter.clone(),
            begun,
        };
        tasks.push(tokio::spawn(async move {
            let report = job.run_after(upstream).await;
            let _ = tx.send(Some((report.0.outcome.clone(), report.1)));
            report.0
        }));
    }
    let mut summary = RunSummary::default();
    for task in tasks {
        summary.stages.push(task.await.expect("stage tasks do not panic"));
    }
    if let Err(e) = ws.save_stat_cache() {
        reporter.warn(&format!("{e:#}"));
    }
    reporter.finished(&summary);
    summary
}

struct Job {
    pipeline: Arc<Pipeline>,
    stage: Stage,
    ws: Arc<Workspace>,
    opts: RunOptions,
    reporter: Arc<dyn Reporter>,
    begun: Instant,
}

impl Job {
    async fn run_after(self, upstream: Vec<(String, watch::Receiver<Done>)>) -> (StageReport, Option<Digest>) {
        let mut digests = BTreeMap::new();
        for (name, mut rx) in upstream {
            let done = rx.wait_for(Option::is_some).await.expect("upstream tasks always send").clone();
            match done {
                Some((outcome, Some(digest))) if outcome.succeeded() => drop(digests.insert(name, digest)),
                _ => {
                    let skipped = Outcome::Skipped(format!("`{name}` did not succeed"));
                    return self.finish((skipped, None, Vec::new()), Instant::now(), Duration::ZERO);
                }
            }
        }
        let start = Instant::now();
        let name = self.stage.name.clone();
        let (pipeline, ws, opts, reporter, stage) =
            (self.pipeline.clone(), self.ws.clone(), self.opts.clone(), self.reporter.clone(), self.stage.clone());
        let result =
            tokio::task::spawn_blocking(move || execute(&pipeline, &stage, &ws, &opts, &*reporter, &digests)).await;
        let executed =
            result.unwrap_or_else(|e| (Outcome::Failed(format!("stage `{name}` panicked: {e}")), None, Vec::new()));
        self.finish(executed, start, start.elapsed())
    }

    fn finish(&self, executed: Executed, start: Instant, elapsed: Duration) -> (StageReport, Option<Digest>) {
        let (outcome, digest, why) = executed;
        let started = start.saturating_duration_since(self.begun);
        let report = StageReport { stage: self.stage.name.clone(), outcome, elapsed, started, why };
        let log = std::fs::read_to_string(log_path(&self.ws, &self.stage.name)).unwrap_or_default();
        self.reporter.stage_finished(&report, &log);
        (report, digest)
    }
}

fn log_path(ws: &Workspace, stage: &str) -> std::path::PathBuf {
    ws.state_path(crate::workspace::LOGS_DIR).join(format!("{stage}.log"))
}

/// Plans, restores or runs one stage; returns its outcome and outputs digest.
fn execute(
    pipeline: &Pipeline,
    stage: &Stage,
    ws: &Workspace,
    opts: &RunOptions,
    reporter: &dyn Reporter,
    upstream: &BTreeMap<String, Digest>,
) -> Executed {
    let log = log_path(ws, &stage.name);
    let _ = std::fs::create_dir_all(log.parent().expect("logs live in a directory"));
    let _ = std::fs::write(&log, b"");
    reporter.stage_started(&stage.name, &stage.about);
    let mut why = Vec::new();
    let result = try_execute(pipeline, stage, ws, opts, reporter, upstream, &mut why);
    let why = why.iter().map(|line| ws.redact(line)).collect();
    match result {
        Ok((outcome, digest)) => (outcome, Some(digest), why),
        Err(StageError::Rejected(reason)) => (Outcome::Rejected(ws.redact(&reason)), None, why),
        Err(StageError::Failed(e)) => (Outcome::Failed(ws.redact(&format!("{e:#}"))), None, why),
    }
}

/// Why a stage that could have been restored runs instead, in the words of `status`.
fn why_it_runs(
    stage: &Stage,
    ws: &Workspace,
    opts: &RunOptions,
    resolved: &crate::plan::Resolved,
    environment: Result<(), String>,
) -> Vec<String> {
    if opts.traces(stage).is_some() {
        return vec!["traced (--trace-inputs): a traced stage always runs".into()];
    }
    if opts.no_cache {
        return vec!["--no-cache".into()];
    }
    if opts.force.contains(&stage.name) {
        return vec![format!("--force {}", stage.name)];
    }
    if let Err(why) = environment {
        return vec![why];
    }
    let Some(last) = ws.last_record(&stage.name) else {
        return vec!["no earlier run in this workspace".into()];
    };
    let changed = crate::explain::diff_inputs(&last.inputs, &resolved.inputs);
    match changed.is_empty() {
        true => vec!["the step cache holds no usable result for these inputs".into()],
        false => changed,
    }
}

fn try_execute(
    pipeline: &Pipeline,
    stage: &Stage,
    ws: &Workspace,
    opts: &RunOptions,
    reporter: &dyn Reporter,
    upstream: &BTreeMap<String, Digest>,
    why: &mut Vec<String>,
) -> Result<(Outcome, Digest), StageError> {
    let progress = |n: u64| reporter.hashing(&stage.name, n);
    let resolved = resolve(pipeline, stage, ws, upstream, &progress).context("cannot read the stage's inputs")?;
    let traced = opts.traces(stage);
    let use_cache = !opts.no_cache && !opts.force.contains(&stage.name) && traced.is_none();
    // Asked once: `alive` probes a live service, which could answer differently a second time.
    let environment = if use_cache { environment_matches(stage, ws, &resolved.fingerprint) } else { Ok(()) };
    if use_cache
        && environment.is_ok()
        && let Some(record) = ws.store().record(&stage.name, &resolved.fingerprint)?
    {
        if let Err(why) = record.check_paths(&stage.outputs, &stage.updates) {
            return Err(StageError::Failed(anyhow::anyhow!(
                "the step-cache record of stage `{}` ({}) in {} is refused: {why}; remove it from the step cache",
                stage.name,
                resolved.fingerprint.short(),
                ws.store().describe()
            )));
        }
        match reuse(stage, ws, &record, reporter) {
            Ok(Some(outcome)) => {
                ws.set_last_record(&record)?;
                return Ok((outcome, record.outputs_digest));
            }
            Ok(None) => {}
            Err(e) => reporter.warn(&format!("{}: cannot reuse the cached result, running instead: {e:#}", stage.name)),
        }
    }
    *why = why_it_runs(stage, ws, opts, &resolved, environment);
    reporter.running(&stage.name);
    let start = Instant::now();
    let known = ws.last_record(&stage.name).map(|r| r.outputs).unwrap_or_default();
    ws.forget_probes();
    let stash = Stash::take(ws, &stage.outputs)?;
    let ctx = StageContext {
        stage: &stage.name,
        workspace: ws,
        log: log_path(ws, &stage.name).into(),
        env: stage_env(stage, ws),
        probes: resolved.probes.clone(),
        commands: &stage.commands,
        ran: std::sync::Mutex::new(vec![false; stage.commands.len()]),
        trace: traced,
        reporter,
        action_only: &stage.action_only,
    };
    let acted = act(stage, &ctx);
    // What the stage did may change what a probe prints, its own included (checked below).
    ws.forget_probes();
    let ran = acted.and_then(|()| {
        record_run(pipeline, stage, ws, upstream, resolved, start.elapsed(), reporter).map_err(Into::into)
    });
    let settled = match &ran {
        Ok(_) => stash.settle(ws, &stage.name, &known),
        Err(_) if stage.keep_failed_outputs => stash.settle(ws, &stage.name, &known),
        Err(_) => stash.put_back(&stage.outputs).map(|()| Vec::new()),
    };
    // Settling moved files too; a probe asked meanwhile may have seen them half done.
    ws.forget_probes();
    for line in settled.context("cannot put the previous outputs back")? {
        reporter.warn(&format!("{}: {line}", stage.name));
    }
    ran.map(|digest| (Outcome::Ran, digest))
}

/// The stage's action, or its commands in order; then every required command must have run.
fn act(stage: &Stage, ctx: &StageContext<'_>) -> Result<(), StageError> {
    match &stage.action {
        Some(action) => action(ctx)?,
        None => ctx.run_commands()?,
    }
    let missed = ctx.not_run();
    if !missed.is_empty() {
        return Err(StageError::Failed(anyhow::anyhow!(
            "stage `{}` declares commands it did not run: {}; run them or mark them optional",
            stage.name,
            missed.join("; ")
        )));
    }
    Ok(())
}

/// Uses a matching record: the outputs are either in place already or restored. `None` when
/// the paths the stage updates no longer hold what the record says: the stage must run.
fn reuse(
    stage: &Stage,
    ws: &Workspace,
    record: &StageRecord,
    reporter: &dyn Reporter,
) -> anyhow::Result<Option<Outcome>> {
    let (outputs, updates) = observe_outputs(stage, ws)?;
    if !differing_outputs(&record.updates, &updates).is_empty() {
        return Ok(None);
    }
    if differing_outputs(&record.outputs, &outputs).is_empty() {
        return Ok(Some(Outcome::Cached));
    }
    let known = ws.last_record(&stage.name).map(|r| r.outputs).unwrap_or_default();
    ws.forget_probes();
    let restored = restore_outputs(ws, &stage.name, &stage.outputs, &record.outputs, &known);
    // Before and after: a probe asked while the files moved may have seen them half done.
    ws.forget_probes();
    for line in restored? {
        // Restoring never deletes a file Slipway did not write; say where it went.
        reporter.warn(&format!("{}: {line}", stage.name));
    }
    Ok(Some(Outcome::Restored))
}

/// Records a successful run, unless its inputs changed while it ran: a record must say which
/// inputs produced the outputs, and those inputs are gone. The stage then counts as run, and
/// runs again next time.
fn record_run(
    pipeline: &Pipeline,
    stage: &Stage,
    ws: &Workspace,
    upstream: &BTreeMap<String, Digest>,
    resolved: crate::plan::Resolved,
    elapsed: Duration,
    reporter: &dyn Reporter,
) -> anyhow::Result<Digest> {
    let (outputs, updates) = observe_outputs(stage, ws)?;
    let again = resolve(pipeline, stage, ws, upstream, &|_| {}).context("cannot read the stage's inputs again")?;
    if again.fingerprint != resolved.fingerprint {
        let changed = crate::explain::diff_inputs(&resolved.inputs, &again.inputs);
        reporter.warn(&format!(
            "{}: its inputs changed while it ran ({}); the result is not cached",
            stage.name,
            changed.join("; ")
        ));
        return Ok(record_digest(stage, &outputs, &updates, &again.fingerprint));
    }
    store_outputs(ws, &outputs)?;
    mark_environment(stage, ws, &resolved.fingerprint)?;
    let record = StageRecord {
        schema: RECORD_SCHEMA.to_string(),
        stage: stage.name.clone(),
        fingerprint: resolved.fingerprint,
        inputs: resolved.inputs,
        outputs_digest: record_digest(stage, &outputs, &updates, &resolved.fingerprint),
        outputs,
        updates,
        duration_ms: elapsed.as_millis() as u64,
        finished_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    ws.store().put_record(&record)?;
    ws.set_last_record(&record)?;
    Ok(record.outputs_digest)
}

/// What dependents see of a run: its outputs, and for an environment the fingerprint too.
fn record_digest(
    stage: &Stage,
    outputs: &[crate::tree::FileEntry],
    updates: &[crate::tree::FileEntry],
    fingerprint: &Digest,
) -> Digest {
    match stage.environment {
        Some(_) => environment_outputs_digest(outputs, updates, fingerprint),
        None => outputs_digest(outputs, updates),
    }
}
