//! `cargo xtask ci` (and single-stage commands): run the pipeline with the step cache.

use std::path::Path;

use std::sync::Arc;

use anyhow::Result;
use engine::{RunOptions, Workspace, report};

use crate::flags::Common;
use crate::pipeline::pipeline;

/// Runs the whole pipeline, or only `target` and what it needs; returns the exit code.
pub fn run(root: &Path, common: &Common, target: Option<&str>) -> Result<u8> {
    let mut pipeline = pipeline(root)?;
    if let Some(target) = target {
        pipeline = pipeline.select(&[target])?;
    }
    for stage in &common.force {
        if pipeline.get(stage).is_none() {
            anyhow::bail!("--force {stage}: there is no such stage (stages: {})", stage_names(&pipeline));
        }
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let ws = Arc::new(open_workspace(root, &runtime)?);
    let reporter: Arc<dyn engine::Reporter> = report::for_environment(ws.env(), common.verbose).into();
    let opts = RunOptions { no_cache: common.no_cache, force: common.force.clone() };
    let summary = runtime.block_on(engine::run(&pipeline, ws, &opts, reporter));
    Ok(summary.exit_code())
}

/// Secrets that must never be printed; stages that read them also declare them as inputs.
pub const SECRETS: &[&str] =
    &["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "SLIPWAY_WEBHOOK_URL", "SLIPWAY_REGISTRY_PASSWORD"];

/// The workspace of this process. Its step cache is local, backed by the artifact remote when
/// that is S3 (shared by CI and laptops) or when `SLIPWAY_STEP_CACHE=remote`;
/// `SLIPWAY_STEP_CACHE=local` keeps it local.
pub fn open_workspace(root: &Path, runtime: &tokio::runtime::Runtime) -> Result<Workspace> {
    let ws = Workspace::from_process_env(root).with_secrets(SECRETS);
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

pub fn stage_names(pipeline: &engine::Pipeline) -> String {
    pipeline.stages().iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
}
