//! Judging a model: load it with ONNX Runtime, predict the holdout in chunks, compute every
//! metric, time single-row predictions, compare with production, and decide.
//!
//! Every check fails closed: a metric that could not be computed is a failed check, and a
//! validation that could not run still produces a report saying why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use model::{Model, RuntimeSearch};

use crate::dataset::Dataset;
use crate::metrics::{Latency, classify};
use crate::report::{Artifact, Machine, REPORT_SCHEMA, Regression, RuntimeInfo, Thresholds, ValidationReport};

/// What to validate, against what.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// The candidate model.
    pub model_path: PathBuf,
    /// The labelled holdout.
    pub data_path: PathBuf,
    /// The thresholds.
    pub thresholds: Thresholds,
    /// The model in production, to check for regressions against, if there is one.
    pub production_model: Option<PathBuf>,
    /// Where ONNX Runtime is.
    pub runtime: RuntimeSearch,
    /// Timed single-row predictions (at least 100).
    pub latency_samples: usize,
    /// Rows per batch when predicting the holdout.
    pub chunk: usize,
}

impl ValidateOptions {
    /// Options with the reference script's defaults.
    pub fn new(model_path: PathBuf, data_path: PathBuf, runtime: RuntimeSearch) -> ValidateOptions {
        ValidateOptions {
            model_path,
            data_path,
            thresholds: Thresholds::default(),
            production_model: None,
            runtime,
            latency_samples: 200,
            chunk: 256,
        }
    }
}

/// The decision, which is also the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed (exit 0).
    Passed,
    /// A check failed (exit 1).
    Failed,
    /// Validation could not run (exit 2); the report says why.
    CouldNotRun,
}

impl Verdict {
    /// The verdict of a gate: could not run if `ran` failed (its reason joins `errors`), else
    /// passed exactly when every check passed.
    pub fn of(ran: Result<(), String>, checks: &BTreeMap<String, bool>, errors: &mut Vec<String>) -> Verdict {
        match ran {
            Ok(()) if checks.values().all(|c| *c) => Verdict::Passed,
            Ok(()) => Verdict::Failed,
            Err(e) => {
                errors.push(e);
                Verdict::CouldNotRun
            }
        }
    }

    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Failed => 1,
            Verdict::CouldNotRun => 2,
        }
    }
}

/// Runs every check; always returns a report.
pub fn validate(opts: &ValidateOptions) -> (ValidationReport, Verdict) {
    let mut report = empty_report(opts);
    let ran = judge(opts, &mut report);
    let verdict = Verdict::of(ran, &report.checks, &mut report.errors);
    report.passed = verdict == Verdict::Passed;
    (report, verdict)
}

/// Fills `report`; an `Err` means validation could not run at all.
fn judge(opts: &ValidateOptions, report: &mut ValidationReport) -> Result<(), String> {
    let with_help = |e: model::ModelError| match e.help() {
        Some(help) => format!("{e} (help: {help})"),
        None => e.to_string(),
    };
    let runtime = model::load_runtime(&opts.runtime).map_err(|e| fail(report, "model_loads", with_help(e)))?;
    report.onnxruntime =
        Some(RuntimeInfo { version: runtime.version().into(), library: runtime.path().display().to_string() });
    let model = Model::load(runtime, &opts.model_path, 1).map_err(|e| fail(report, "model_loads", with_help(e)))?;
    report.checks.insert("model_loads".into(), true);
    let data = Dataset::read(&opts.data_path, &model.signature().kind)
        .map_err(|e| fail(report, "data_loads", e.to_string()))?;
    report.checks.insert("data_loads".into(), true);
    report.rows = data.len();

    let start = Instant::now();
    let predicted = predict_all(&model, &data, opts.chunk).map_err(|e| fail(report, "model_predicts", with_help(e)))?;
    report.throughput_rows_per_s = Some(data.len() as f64 / start.elapsed().as_secs_f64().max(1e-9));
    report.checks.insert("model_predicts".into(), true);

    let classification = classify(&data.labels, &predicted);
    check_accuracy_and_recall(report, &classification, &data.labels);
    report.classification = Some(classification);
    check_latency(report, &model, &data, opts.latency_samples.max(100));
    if let Some(prod) = &opts.production_model {
        check_regression(report, runtime, prod, &data, opts.chunk);
    }
    Ok(())
}

fn fail(report: &mut ValidationReport, check: &str, message: String) -> String {
    report.checks.insert(check.into(), false);
    message
}

fn predict_all(model: &Model, data: &Dataset, chunk: usize) -> Result<Vec<String>, model::ModelError> {
    let mut labels = Vec::with_capacity(data.len());
    for start in (0..data.len()).step_by(chunk.max(1)) {
        let end = (start + chunk.max(1)).min(data.len());
        labels.extend(model.predict(data.batch(start..end))?.labels);
    }
    Ok(labels)
}

fn check_accuracy_and_recall(report: &mut ValidationReport, c: &crate::metrics::Classification, truth: &[String]) {
    let t = report.thresholds.clone();
    report.accuracy = c.accuracy;
    let ok = c.accuracy >= t.min_accuracy;
    report.checks.insert("accuracy_above_threshold".into(), ok);
    if !ok {
        report.errors.push(format!(
            "accuracy {:.2}% is below the threshold {:.2}%",
            c.accuracy * 100.0,
            t.min_accuracy * 100.0
        ));
    }
    // Recall is judged for every class the holdout contains, as the reference script does; a
    // class the model never predicts has recall 0 and fails.
    let classes: std::collections::BTreeSet<&String> = truth.iter().collect();
    report.per_class_recall = classes.iter().map(|l| ((*l).clone(), c.per_class[*l].recall)).collect();
    let low: Vec<(String, f64)> =
        report.per_class_recall.iter().filter(|(_, r)| **r < t.min_recall).map(|(l, r)| (l.clone(), *r)).collect();
    report.checks.insert("recall_above_threshold".into(), low.is_empty());
    for (label, recall) in low {
        report.errors.push(format!(
            "recall of `{label}` is {:.2}%, below {:.2}%",
            recall * 100.0,
            t.min_recall * 100.0
        ));
    }
}

fn check_latency(report: &mut ValidationReport, model: &Model, data: &Dataset, samples: usize) {
    let n = data.len();
    for i in 0..5.min(n) {
        let _ = model.predict(data.batch(i..i + 1));
    }
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        // Spread the timed rows over the whole holdout, deterministically.
        let row = (i * 7919) % n;
        let start = Instant::now();
        if model.predict(data.batch(row..row + 1)).is_err() {
            report.checks.insert("latency_acceptable".into(), false);
            report.errors.push(format!("a single-row prediction failed (row {row}); latency not measured"));
            return;
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let latency = Latency::of(&times);
    report.latency_p50_ms = latency.p50_ms;
    report.latency_p99_ms = latency.p99_ms;
    let ok = latency.p99_ms <= report.thresholds.max_latency_ms;
    report.checks.insert("latency_acceptable".into(), ok);
    if !ok {
        report
            .errors
            .push(format!("p99 latency {:.2} ms exceeds {} ms", latency.p99_ms, report.thresholds.max_latency_ms));
    }
    report.latency = Some(latency);
}

fn check_regression(
    report: &mut ValidationReport,
    runtime: &model::Runtime,
    prod: &Path,
    data: &Dataset,
    chunk: usize,
) {
    let mut regression =
        Regression { production_model: artifact(prod), production_accuracy: None, accuracy_drop: None };
    let prod_accuracy = Model::load(runtime, prod, 1)
        .and_then(|m| predict_all(&m, data, chunk))
        .map(|labels| classify(&data.labels, &labels).accuracy);
    match prod_accuracy {
        Ok(acc) => {
            let drop = acc - report.accuracy;
            regression.production_accuracy = Some(acc);
            regression.accuracy_drop = Some(drop);
            let ok = drop <= report.thresholds.max_accuracy_drop;
            report.checks.insert("no_accuracy_regression".into(), ok);
            if !ok {
                report.errors.push(format!(
                    "accuracy dropped by {:.2} points against production ({:.2}% → {:.2}%), more than the {:.2} allowed",
                    drop * 100.0,
                    acc * 100.0,
                    report.accuracy * 100.0,
                    report.thresholds.max_accuracy_drop * 100.0
                ));
            }
        }
        Err(e) => {
            report.checks.insert("no_accuracy_regression".into(), false);
            report.errors.push(format!("cannot judge the production model, so the regression check fails: {e}"));
        }
    }
    report.regression = Some(regression);
}

fn empty_report(opts: &ValidateOptions) -> ValidationReport {
    ValidationReport {
        passed: false,
        accuracy: 0.0,
        accuracy_threshold: opts.thresholds.min_accuracy,
        latency_p50_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_threshold_ms: opts.thresholds.max_latency_ms,
        per_class_recall: BTreeMap::new(),
        recall_threshold: opts.thresholds.min_recall,
        checks: BTreeMap::new(),
        errors: Vec::new(),
        schema: REPORT_SCHEMA.into(),
        model: artifact(&opts.model_path),
        data: artifact(&opts.data_path),
        rows: 0,
        thresholds: opts.thresholds.clone(),
        classification: None,
        latency: None,
        throughput_rows_per_s: None,
        regression: None,
        onnxruntime: None,
        machine: Machine::current(),
    }
}

/// The path, digest and size of a file (digest and size absent if it cannot be read).
pub fn artifact(path: &Path) -> Artifact {
    let bytes = std::fs::read(path).ok();
    Artifact {
        path: path.display().to_string(),
        blake3: bytes.as_ref().map(|b| blake3::hash(b).to_hex().to_string()),
        bytes: bytes.map(|b| b.len() as u64),
    }
}
