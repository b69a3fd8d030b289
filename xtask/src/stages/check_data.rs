//! The data gate: fails closed on bad data before any training time is spent.

use engine::{Stage, StageContext, StageError};
use gate::validate::Verdict;

use crate::paths::{DATA_REPORT, HOLDOUT_DATA, TRAIN_DATA};

/// Checks the pulled data against the `[data]` rules of `slipway.toml`.
pub fn stage(config: &crate::config::Config) -> Stage {
    let rules = config.data.clone();
    engine::stage!("check-data", "check the data: columns, labels, balance, duplicates, leakage")
        .gate()
        .uses("pull")
        .pipeline_code(crate::config::CODE)
        .pipeline_code(crate::paths::CODE)
        .crates(&["slipway-gate"])
        .param("rules", serde_json::to_value(&rules).expect("rules serialize"))
        .output(DATA_REPORT)
        .keep_failed_outputs()
        .run(move |ctx| check(ctx, &rules))
}

/// Checks the training and holdout data against `rules`; the report names the offending lines.
fn check(ctx: &StageContext, rules: &gate::DataRules) -> Result<(), StageError> {
    let root = ctx.root();
    let (report, verdict) = gate::check_data(&root.join(TRAIN_DATA), &root.join(HOLDOUT_DATA), rules);
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
