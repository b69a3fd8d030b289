//! The model gate, with ONNX Runtime, on the exact model that would ship.

use engine::{Stage, StageContext, StageError};
use gate::{ValidateOptions, Verdict};

use crate::config::ValidateConfig;
use crate::paths::{HOLDOUT_DATA, MODEL, VALIDATION_REPORT};

/// Judges the trained model against the `[validate]` thresholds of `slipway.toml`.
pub fn stage(config: &crate::config::Config) -> Stage {
    let v = config.validate.clone();
    let columns = config.data.columns();
    let mut stage = engine::stage!("validate", "validate the model with ONNX Runtime")
        .gate()
        .uses("train")
        .pipeline_code(crate::validate::CODE)
        .pipeline_code(crate::ort::CODE)
        .pipeline_code(crate::config::CODE)
        .pipeline_code(crate::paths::CODE)
        .pipeline_code(crate::flags::CODE)
        .crates(&["slipway-gate", "slipway-model"])
        // A passed model becomes an MLflow version; that answer changes nothing, so it is not keyed.
        .pipeline_code(crate::mlflow::CODE)
        .pipeline_code(crate::who::CODE)
        .action_secrets(crate::mlflow::VARS)
        .env(crate::ort::DYLIB_VAR)
        .param("thresholds", serde_json::to_value(&v).expect("thresholds serialize"))
        .param("columns", serde_json::to_value(&columns).expect("column names serialize"))
        .output(VALIDATION_REPORT)
        .keep_failed_outputs();
    if let Some(prod) = &v.production_model {
        stage = stage.files("production-model", &[prod]);
    }
    let mlflow = config.mlflow.clone();
    stage.run(move |ctx| action(ctx, &v, &columns, &mlflow))
}

/// The gate on the trained model and the holdout data.
fn action(
    ctx: &StageContext,
    config: &ValidateConfig,
    columns: &gate::Columns,
    mlflow: &crate::mlflow::MlflowConfig,
) -> Result<(), StageError> {
    let root = ctx.root();
    let mut opts = ValidateOptions::new(root.join(MODEL), root.join(HOLDOUT_DATA), crate::ort::search(root, ctx.env()));
    opts.columns = columns.clone();
    opts.thresholds = config.thresholds();
    opts.production_model = config.production_model.as_ref().map(|p| root.join(p));
    let (report, verdict) = gate::validate(&opts);
    ctx.log_line(&report.summary());
    crate::validate::write_report(&root.join(VALIDATION_REPORT), &report)?;
    match verdict {
        Verdict::Passed => crate::mlflow::after_validation(ctx, mlflow, &report),
        Verdict::Failed => {
            Err(StageError::rejected(format!("the model failed validation: {}", report.errors.join("; "))))
        }
        Verdict::CouldNotRun => {
            Err(StageError::Failed(anyhow::anyhow!("validation could not run: {}", report.errors.join("; "))))
        }
    }
}
