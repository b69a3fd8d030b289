//! `cargo xtask validate`: the model gate. With `--model-path` and `--test-data` it is a
//! drop-in for the reference pipeline's `scripts/validate_model.py` (same flags, same defaults,
//! same report fields, same exit codes); without them it runs the pipeline up to `validate`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use engine::{StageContext, StageError};
use gate::{ValidateOptions, ValidationReport, Verdict};

use crate::flags::ValidateArgs;

/// The Python environment whose `onnxruntime` wheel ships the runtime library.
pub const TRAIN_ENV: &str = ".slipway/train-env";
/// Where the pipeline's `validate` stage writes its report.
pub const REPORT: &str = "reports/validation_report.json";

/// Where ONNX Runtime is looked for: `ORT_DYLIB_PATH`, then the training environment.
pub fn runtime_search(root: &Path, env: &std::collections::BTreeMap<String, String>) -> model::RuntimeSearch {
    model::RuntimeSearch::new(env.get("ORT_DYLIB_PATH").map(String::as_str), &[root.join(TRAIN_ENV)])
}

/// `cargo xtask validate --model-path M --test-data D …`, standalone and uncached.
pub fn run_standalone(root: &Path, args: &ValidateArgs, model: &Path, data: &Path) -> Result<u8> {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let mut opts = ValidateOptions::new(model.to_path_buf(), data.to_path_buf(), runtime_search(root, &env));
    opts.thresholds = gate::Thresholds {
        min_accuracy: args.min_accuracy,
        min_recall: args.min_recall,
        max_latency_ms: args.max_latency_ms,
        max_accuracy_drop: args.max_accuracy_drop,
    };
    opts.production_model = args.production_model.clone();
    let (report, verdict) = gate::validate(&opts);
    print!("{}", report.summary());
    if let Some(out) = &args.output_file {
        write_report(out, &report)?;
        println!("report written to {}", out.display());
    }
    append_step_summary(&env, &report.markdown());
    Ok(verdict.exit_code())
}

/// The pipeline's `validate` stage: the same gate on `models/model.onnx` and `data/holdout.csv`.
pub fn stage_action(ctx: &StageContext, config: &crate::config::ValidateConfig) -> Result<(), StageError> {
    let root = ctx.root();
    let mut opts = ValidateOptions::new(
        root.join("models/model.onnx"),
        root.join("data/holdout.csv"),
        runtime_search(root, ctx.env()),
    );
    opts.thresholds = config.thresholds();
    opts.production_model = config.production_model.as_ref().map(|p| root.join(p));
    let (report, verdict) = gate::validate(&opts);
    ctx.log_line(&report.summary());
    write_report(&root.join(REPORT), &report)?;
    append_step_summary(ctx.env(), &report.markdown());
    match verdict {
        Verdict::Passed => Ok(()),
        Verdict::Failed => {
            Err(StageError::rejected(format!("the model failed validation: {}", report.errors.join("; "))))
        }
        Verdict::CouldNotRun => {
            Err(StageError::Failed(anyhow::anyhow!("validation could not run: {}", report.errors.join("; "))))
        }
    }
}

fn write_report(path: &Path, report: &ValidationReport) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(report)?;
    json.push(b'\n');
    engine::write_atomic(path, &json).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// In GitHub Actions, adds `markdown` to the job's step summary.
pub fn append_step_summary(env: &std::collections::BTreeMap<String, String>, markdown: &str) {
    if env.get("GITHUB_ACTIONS").map(String::as_str) != Some("true") {
        return;
    }
    let Some(path) = env.get("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else { return };
    use std::io::Write;
    let file = std::fs::OpenOptions::new().create(true).append(true).open(PathBuf::from(path));
    if let Err(e) = file.and_then(|mut f| f.write_all(markdown.as_bytes())) {
        eprintln!("warning: cannot write the step summary: {e}");
    }
}
