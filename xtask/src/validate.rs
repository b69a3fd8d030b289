//! `cargo xtask validate --model-path M --test-data D …`: the model gate standalone, a drop-in
//! for the reference pipeline's `scripts/validate_model.py` (same flags, same defaults, same
//! report fields, same exit codes), and the report writing the `validate` stage shares.

use std::path::{Path, PathBuf};

use anyhow::Result;
use gate::{ValidateOptions, ValidationReport};

use crate::Env;
use crate::flags::ValidateArgs;

/// This module, as code of the `validate` stage.
pub const CODE: &str = file!();

/// `cargo xtask validate --model-path M --test-data D …`, standalone and uncached.
pub fn run_standalone(root: &Path, env: &Env, args: &ValidateArgs, model: &Path, data: &Path) -> Result<u8> {
    let mut opts = ValidateOptions::new(model.to_path_buf(), data.to_path_buf(), crate::ort::search(root, env));
    opts.thresholds = gate::Thresholds {
        min_accuracy: args.min_accuracy,
        min_recall: args.min_recall,
        max_latency_ms: args.max_latency_ms,
        max_accuracy_drop: args.max_accuracy_drop,
    };
    opts.production_model = args.production_model.clone();
    opts.columns = gate::Columns { label: args.label_column.clone(), text: args.text_column.clone() };
    let (report, verdict) = gate::validate(&opts);
    print!("{}", report.summary());
    if let Some(out) = &args.output_file {
        write_report(out, &report)?;
        println!("report written to {}", out.display());
    }
    append_step_summary(env, &report.markdown());
    Ok(verdict.exit_code())
}

/// Writes the report as pretty JSON, atomically.
pub fn write_report(path: &Path, report: &ValidationReport) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(report)?;
    json.push(b'\n');
    engine::write_atomic(path, &json).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// In GitHub Actions, adds `markdown` to the job's step summary.
pub fn append_step_summary(env: &Env, markdown: &str) {
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
