//! Training: the team's script, keyed on all of its code, each parameter, the data and the
//! training environment.

use std::path::Path;

use anyhow::Result;
use engine::{Command, Stage, StageContext, StageError};

use crate::paths::{DATA_DIR, METRICS, MODEL, MODELS, TRAIN_ENV, TRAIN_PARAMS, TRAIN_SCRIPT, TRAINING};

/// Runs `training/train.py` with the training environment's Python, after the data gate.
pub fn stage(root: &Path) -> Result<Stage> {
    let mut stage = engine::stage!("train", "train the model")
        .uses("deps")
        .uses("pull")
        .after("check-data")
        // Everything the script may import or read lives here: the estimator and the ONNX
        // export are in `model.py`, not `train.py`.
        .code(TRAINING)
        .pipeline_code(crate::config::CODE)
        .pipeline_code(crate::paths::CODE)
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
    for (name, value) in crate::config::training_params(root, TRAIN_PARAMS)? {
        stage = stage.param(&name, value);
    }
    Ok(stage.run(train))
}

/// Trains; a script that exits 0 without writing the model is an error, and the engine then
/// puts the previous model back.
fn train(ctx: &StageContext) -> Result<(), StageError> {
    ctx.run_commands()?;
    for file in [MODEL, METRICS] {
        if !ctx.root().join(file).is_file() {
            return Err(StageError::Failed(anyhow::anyhow!("{TRAIN_SCRIPT} exited 0 but wrote no {file}")));
        }
    }
    Ok(())
}
