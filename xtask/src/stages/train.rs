//! Training: the team's script, keyed on all of its code, each parameter, the data and the
//! training environment.

use std::path::Path;

use anyhow::Result;
use engine::{Command, Stage, StageContext, StageError};

use crate::paths::{DATA_DIR, METRICS, MODEL, MODELS, TRAIN_ENV, TRAIN_PARAMS, TRAIN_SCRIPT, TRAINING};

/// Runs `training/train.py` with the training environment's Python, after the data gate.
pub fn stage(root: &Path, config: &crate::config::Config) -> Result<Stage> {
    let mut stage = engine::stage!("train", "train the model")
        .uses("deps")
        .uses("pull")
        .after("check-data")
        // Everything the script may import or read lives here: the estimator and the ONNX
        // export are in `model.py`, not `train.py`.
        .code(TRAINING)
        .pipeline_code(crate::config::CODE)
        .pipeline_code(crate::paths::CODE)
        // MLflow is told of each training; what it answers changes nothing, so it is not keyed.
        .pipeline_code(crate::mlflow::CODE)
        .pipeline_code(crate::who::CODE)
        // To the action only: the training script never sees them, so they cannot change it.
        .action_secrets(crate::mlflow::VARS)
        .action_env(&["GITHUB_SHA", "GITHUB_ACTOR"])
        .command(Command::new("train the model", format!("{TRAIN_ENV}/bin/python")).args([
            TRAIN_SCRIPT,
            "--data",
            DATA_DIR,
            "--params",
            TRAIN_PARAMS,
            "--out",
            MODELS,
        ]))
        .output(MODELS);
    // Each parameter on its own, so `status` names the one that changed.
    let params = crate::config::training_params(root, TRAIN_PARAMS)?;
    for (name, value) in &params {
        stage = stage.param(name, value.clone());
    }
    let mlflow = config.mlflow.clone();
    Ok(stage.run(move |ctx| train(ctx, &mlflow, &params)))
}

/// Trains; a script that exits 0 without writing the model is an error, and the engine then
/// puts the previous model back. Then MLflow, when set, gets the run.
fn train(
    ctx: &StageContext,
    mlflow: &crate::mlflow::MlflowConfig,
    params: &[(String, serde_json::Value)],
) -> Result<(), StageError> {
    let started_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    ctx.run_commands()?;
    for file in [MODEL, METRICS] {
        if !ctx.root().join(file).is_file() {
            return Err(StageError::Failed(anyhow::anyhow!("{TRAIN_SCRIPT} exited 0 but wrote no {file}")));
        }
    }
    crate::mlflow::after_training(ctx, mlflow, params, started_ms)
}
