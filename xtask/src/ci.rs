//! `cargo xtask ci` (and single-stage commands): run the pipeline with the step cache.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use engine::{RunOptions, Workspace, report};

use crate::flags::Common;
use crate::pipeline::pipeline;

/// Runs the whole pipeline, or only `target` and what it needs; returns the exit code.
pub fn run(root: &Path, common: &Common, target: Option<&str>) -> Result<u8> {
    let mut pipeline = pipeline()?;
    if let Some(target) = target {
        pipeline = pipeline.select(&[target])?;
    }
    for stage in &common.force {
        if pipeline.get(stage).is_none() {
            anyhow::bail!("--force {stage}: there is no such stage (stages: {})", stage_names(&pipeline));
        }
    }
    let ws = Arc::new(Workspace::from_process_env(root));
    let reporter: Arc<dyn engine::Reporter> = report::for_environment(ws.env(), common.verbose).into();
    let opts = RunOptions { no_cache: common.no_cache, force: common.force.clone() };
    let runtime = tokio::runtime::Runtime::new()?;
    let summary = runtime.block_on(engine::run(&pipeline, ws, &opts, reporter));
    Ok(summary.exit_code())
}

pub fn stage_names(pipeline: &engine::Pipeline) -> String {
    pipeline.stages().iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
}
