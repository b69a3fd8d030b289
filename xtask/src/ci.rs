//! `cargo xtask ci [STAGE…]` (and the single-stage commands): run the pipeline with the step
//! cache; with `--trace-inputs`, run its subprocess stages under `strace` and report every file
//! they read without declaring it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use engine::{Outcome, RunOptions, TraceOptions, Workspace, report};

use crate::Env;
use crate::flags::Common;
use crate::paths::TRACES;
use crate::pipeline::pipeline;

/// What to run.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// These stages and what they need; every stage when empty.
    pub targets: &'a [String],
    /// Trace the subprocess stages among them.
    pub trace_inputs: bool,
    /// Write the run report (`reports/run.html`, and the step summary in GitHub Actions):
    /// `ci` does, the single-stage commands do not.
    pub report: bool,
}

/// Runs the pipeline (or `plan.targets` and what they need); returns the exit code.
pub fn run(root: &Path, env: &Env, common: &Common, plan: &Plan<'_>) -> Result<u8> {
    let mut pipeline = pipeline(&crate::root::program_root(env, root)?, root)?;
    if !plan.targets.is_empty() {
        check_names(&pipeline, plan.targets, "")?;
        pipeline = pipeline.select(plan.targets)?;
    }
    check_names(&pipeline, &common.force, "--force ")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let ws = Arc::new(open_workspace(root, env, &pipeline, &runtime)?);
    // The run report writes the whole step summary, the stage table with it.
    let mut shown = ws.env().clone();
    if plan.report {
        shown.remove("GITHUB_STEP_SUMMARY");
    }
    let shown: Arc<dyn engine::Reporter> = report::for_environment(&shown, common.verbose).into();
    // The run report lists the run's warnings too (an MLflow that was not told, a result not
    // cached): they are collected on their way to the screen.
    let collected = Arc::new(crate::report::Collecting::new(shown));
    let reporter: Arc<dyn engine::Reporter> = collected.clone();
    let mut opts = RunOptions { no_cache: common.no_cache, force: common.force.clone(), trace: None };
    if plan.trace_inputs {
        opts.trace = Some(trace_options(root, &pipeline, env)?);
    }
    let summary = runtime.block_on(engine::run(&pipeline, ws.clone(), &opts, reporter));
    if plan.report {
        crate::report::after_run(root, env, &summary, &collected.warnings(), &|text| ws.redact(text));
    }
    let Some(trace) = &opts.trace else { return Ok(summary.exit_code()) };
    let undeclared = report_traces(&pipeline, &ws, &summary, trace)?;
    Ok(match summary.exit_code() {
        0 if undeclared => 1,
        code => code,
    })
}

fn check_names(pipeline: &engine::Pipeline, names: &[String], flag: &str) -> Result<()> {
    for name in names {
        anyhow::ensure!(
            pipeline.get(name).is_some(),
            "{flag}{name}: there is no such stage (stages: {})",
            stage_names(pipeline)
        );
    }
    Ok(())
}

/// Every stage with commands, traced into a fresh directory under `.slipway/trace`.
fn trace_options(root: &Path, pipeline: &engine::Pipeline, env: &Env) -> Result<TraceOptions> {
    let sh = xshell::Shell::new()?;
    let path = env.get("PATH").cloned().unwrap_or_default();
    if xshell::cmd!(sh, "strace -V").env("PATH", path).quiet().ignore_stdout().ignore_stderr().run().is_err() {
        anyhow::bail!(
            "--trace-inputs needs strace, which is not installed\n  help: the tools stage installs it (`cargo xtask ci tools`), or apt-get install strace"
        );
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let dir = root.join(TRACES).join(now.as_millis().to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stages = pipeline.stages().iter().filter(|s| !s.commands().is_empty()).map(|s| s.name().to_string()).collect();
    Ok(TraceOptions { dir, stages })
}

/// Prints what each traced stage read without declaring it; whether any did.
fn report_traces(
    pipeline: &engine::Pipeline,
    ws: &Workspace,
    summary: &engine::RunSummary,
    trace: &TraceOptions,
) -> Result<bool> {
    let mut reports = BTreeMap::new();
    for s in summary.stages.iter().filter(|s| trace.stages.contains(&s.stage)) {
        let stage = pipeline.get(&s.stage).expect("a stage of the run");
        if s.outcome != Outcome::Ran {
            eprintln!("{}: not traced: it did not run ({})", s.stage, s.outcome.word());
            continue;
        }
        let last = ws.last_record(&s.stage).with_context(|| format!("no record of the run of `{}`", s.stage))?;
        let report = engine::trace::analyse(
            pipeline,
            stage,
            ws.root(),
            ws.program_root() != ws.root(),
            &last.inputs,
            &trace.dir,
        )?;
        reports.insert(s.stage.clone(), report);
    }
    print!("{}", engine::trace::render(&reports));
    let json = serde_json::to_vec_pretty(&reports)?;
    engine::write_atomic(&trace.dir.join("report.json"), &json)?;
    eprintln!("traces and report.json are in {}", trace.dir.display());
    Ok(reports.values().any(|r| !r.undeclared.is_empty()))
}

/// The workspace of this process. Its step cache is local, backed by the artifact remote when
/// that is S3 (shared by CI and laptops) or when `SLIPWAY_STEP_CACHE=remote`;
/// `SLIPWAY_STEP_CACHE=local` keeps it local. Every secret a stage of `pipeline` declares is
/// masked wherever the run prints.
pub fn open_workspace(
    root: &Path,
    env: &Env,
    pipeline: &engine::Pipeline,
    runtime: &tokio::runtime::Runtime,
) -> Result<Workspace> {
    let ws = Workspace::new(root, env.clone())
        .with_program_root(&crate::root::program_root(env, root)?)
        .with_secrets(&pipeline.secrets());
    let choice = ws.env().get("SLIPWAY_STEP_CACHE").map(String::as_str).unwrap_or("");
    let resolved = store::resolve(root, ws.env())?;
    let remote_cache = match choice {
        "local" => false,
        "remote" => true,
        "" => matches!(resolved.spec, store::RemoteSpec::S3(_)),
        other => anyhow::bail!("SLIPWAY_STEP_CACHE={other}: use `local` or `remote`"),
    };
    if !remote_cache {
        return Ok(ws);
    }
    let remote = std::sync::Arc::from(resolved.open()?);
    let local = engine::LocalStore::new(ws.state_path("cache"));
    let shared = store::RemoteStepStore::new(remote, runtime.handle().clone());
    Ok(ws.with_store(Box::new(store::TieredStore::new(local, shared))))
}

/// The stage names, in order, for messages.
pub fn stage_names(pipeline: &engine::Pipeline) -> String {
    pipeline.stages().iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
}
