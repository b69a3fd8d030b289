//! The data gate and the training stage's actions.

use engine::{StageContext, StageError};
use gate::validate::Verdict;
use xshell::cmd;

use crate::validate::TRAIN_ENV;

/// Where the data gate writes its report.
pub const DATA_REPORT: &str = "reports/data-check.json";

/// Checks `data/train.csv` and `data/holdout.csv` against `rules`; the report names the
/// offending lines.
pub fn check_data(ctx: &StageContext, rules: &gate::DataRules) -> Result<(), StageError> {
    let root = ctx.root();
    let (report, verdict) = gate::check_data(&root.join("data/train.csv"), &root.join("data/holdout.csv"), rules);
    ctx.log_line(&report.summary());
    let mut json = serde_json::to_vec_pretty(&report).map_err(anyhow::Error::from)?;
    json.push(b'\n');
    engine::write_atomic(&root.join(DATA_REPORT), &json)?;
    match verdict {
        Verdict::Passed => Ok(()),
        Verdict::Failed => {
            Err(StageError::rejected(format!("the data failed its checks: {}", report.errors.join("; "))))
        }
        Verdict::CouldNotRun => Err(StageError::Failed(anyhow::anyhow!("{}", report.errors.join("; ")))),
    }
}

/// Runs the training script with the training environment's Python. A script that fails or
/// writes no model is an error; the engine then puts the previous model back.
pub fn train(ctx: &StageContext, script: &str, params: &str) -> Result<(), StageError> {
    let sh = ctx.shell();
    let python = format!("{TRAIN_ENV}/bin/python");
    ctx.run("train the model", cmd!(sh, "{python} {script} --data data --params {params} --out models"))?;
    for file in ["models/model.onnx", "models/metrics.json"] {
        if !ctx.root().join(file).is_file() {
            return Err(StageError::Failed(anyhow::anyhow!("{script} exited 0 but wrote no {file}")));
        }
    }
    Ok(())
}
