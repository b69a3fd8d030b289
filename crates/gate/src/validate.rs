//! Judging a model: load it with ONNX Runtime, predict the holdout in chunks, compute every
//! metric, time single-row predictions, compare with production, and decide.
//!
//! Every check fails closed: a metric that could not be computed is a failed check, and a
//! validation that could not run still produces a report saying why.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use model::{Model, RuntimeSearch};

use crate::dataset::{Dataset, Table};
use crate::metrics::{Latency, classify};
use crate::report::{Artifact, Machine, REPORT_SCHEMA, Regression, RuntimeInfo, Thresholds, ValidationReport};

/// The most sessions validation opens by default, whatever the number of cores.
pub const MAX_SESSIONS: usize = 8;

/// What to validate, against what.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// The candidate model.
    pub model_path: PathBuf,
    /// The labelled holdout.
    pub data_path: PathBuf,
    /// The names of its label and text columns.
    pub columns: crate::Columns,
    /// The thresholds.
    pub thresholds: Thresholds,
    /// The model in production, to check for regressions against, if there is one.
    pub production_model: Option<PathBuf>,
    /// Where ONNX Runtime is.
    pub runtime: RuntimeSearch,
    /// Timed single-row predictions (at least 100).
    pub latency_samples: usize,
    /// Rows per batch when predicting the holdout. Small batches are as fast per row as large
    /// ones for the demo model (16 rows: 121–131 µs a row; 256 rows: 130–137 µs) and keep ONNX
    /// Runtime's working memory small: at 256 rows a TF-IDF of 20,000 features is a 20 MB dense
    /// tensor per session, and validation's peak memory was 220 MiB against 57 MiB at 16.
    pub chunk: usize,
    /// ONNX Runtime sessions, one per thread, that predict the holdout: each thread takes the
    /// next chunk of rows when it has finished one. The first thread times the single rows
    /// before it takes chunks, on a session of its own while the others predict.
    /// [`MAX_SESSIONS`] at most by default: each session holds its own copy of the model.
    pub sessions: usize,
}

impl ValidateOptions {
    /// Options with the reference script's defaults.
    pub fn new(model_path: PathBuf, data_path: PathBuf, runtime: RuntimeSearch) -> ValidateOptions {
        ValidateOptions {
            model_path,
            data_path,
            columns: crate::Columns::default(),
            thresholds: Thresholds::default(),
            production_model: None,
            runtime,
            latency_samples: 200,
            chunk: 16,
            sessions: std::thread::available_parallelism().map_or(1, usize::from).min(MAX_SESSIONS),
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
    // The holdout is read while ONNX Runtime loads the model; which of its columns count is
    // known only once the model's signature is.
    let (runtime, model, data) = std::thread::scope(|scope| {
        let read = || Table::read(&opts.data_path);
        let reading = std::thread::Builder::new().name("read-holdout".into()).spawn_scoped(scope, read);
        let runtime = model::load_runtime(&opts.runtime).map_err(|e| fail(report, "model_loads", with_help(e)))?;
        report.onnxruntime =
            Some(RuntimeInfo { version: runtime.version().into(), library: runtime.path().display().to_string() });
        let model = Model::load(runtime, &opts.model_path, opts.sessions)
            .map_err(|e| fail(report, "model_loads", with_help(e)))?;
        report.checks.insert("model_loads".into(), true);
        let table = match reading {
            Ok(thread) => thread.join().unwrap_or_else(|_| Table::read(&opts.data_path)),
            Err(_) => Table::read(&opts.data_path),
        };
        let data = table
            .and_then(|t| t.dataset(&model.signature().kind, &opts.columns))
            .map_err(|e| fail(report, "data_loads", e.to_string()))?;
        Ok::<_, String>((runtime, model, data))
    })?;
    report.checks.insert("data_loads".into(), true);
    report.rows = data.len();

    // The rows the latency check times are predicted there, one at a time, and their answers
    // count like any other: every row is predicted exactly once. The first prediction thread
    // times them on its own session before it takes chunks, while the others predict chunks.
    let timed_rows = latency_rows(data.len(), opts.latency_samples.max(100));
    let chunks = untimed_chunks(data.len(), opts.chunk, &timed_rows);
    let timed = std::sync::Mutex::new(None);
    let time_them = || *timed.lock().unwrap_or_else(|e| e.into_inner()) = Some(time_rows(&model, &data, &timed_rows));
    let start = Instant::now();
    let mut predicted =
        predict_rows(&model, &data, &chunks, &time_them).map_err(|e| fail(report, "model_predicts", with_help(e)))?;
    let elapsed = start.elapsed();
    let timed = timed.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or_default();
    judge_latency(report, &timed);
    for (row, label) in &timed.answers {
        predicted[*row] = Some(label.clone());
    }
    let predicted: Vec<String> = match timed.failed {
        // A model that fails one row at a time may still predict in batches (a fixed batch
        // dimension): the latency check has failed, and accuracy comes from a batched pass.
        Some(_) => predict_all(&model, &data, opts.chunk).map_err(|e| fail(report, "model_predicts", with_help(e)))?,
        None => predicted
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| fail(report, "model_predicts", "a row of the holdout got no prediction".to_string()))?,
    };
    report.throughput_rows_per_s = Some(data.len() as f64 / elapsed.as_secs_f64().max(1e-9));
    report.checks.insert("model_predicts".into(), true);

    let classification = classify(&data.labels, &predicted);
    check_accuracy_and_recall(report, &classification, &data.labels);
    report.classification = Some(classification);
    if let Some(prod) = &opts.production_model {
        check_regression(report, runtime, prod, &data, opts.chunk, opts.sessions);
    }
    Ok(())
}

fn fail(report: &mut ValidationReport, check: &str, message: String) -> String {
    report.checks.insert(check.into(), false);
    message
}

/// Predicts every row, in chunks of `chunk` rows, on one thread per session. Each thread takes
/// the next chunk as soon as it has finished one, so a run of long texts never leaves a core
/// idle at the end, as fixed halves did. Labels come back in row order.
fn predict_all(model: &Model, data: &Dataset, chunk: usize) -> Result<Vec<String>, model::ModelError> {
    let labels = predict_rows(model, data, &untimed_chunks(data.len(), chunk, &[]), &|| {})?;
    Ok(labels.into_iter().map(Option::unwrap_or_default).collect())
}

/// The label of every row of `chunks`, on one thread per session, the first of which runs
/// `first` before it takes chunks; `None` for rows outside them.
fn predict_rows(
    model: &Model,
    data: &Dataset,
    chunks: &[Range<usize>],
    first: &(dyn Fn() + Sync),
) -> Result<Vec<Option<String>>, model::ModelError> {
    let predict = |rows| Ok(model.predict(data.batch(rows))?.labels);
    let batched = in_chunks(chunks, model.sessions(), first, &predict)?;
    let mut labels = vec![None; data.len()];
    for (row, label) in chunks.iter().cloned().flatten().zip(batched) {
        labels[row] = Some(label);
    }
    Ok(labels)
}

/// The rows the latency check times: `samples` of them spread over the whole holdout,
/// deterministically (a row may come twice in a holdout smaller than `samples`).
fn latency_rows(n: usize, samples: usize) -> Vec<usize> {
    match n {
        0 => Vec::new(),
        n => (0..samples).map(|i| (i * 7919) % n).collect(),
    }
}

/// `0..n` without the rows of `timed`, in ranges of at most `chunk` rows.
fn untimed_chunks(n: usize, chunk: usize, timed: &[usize]) -> Vec<Range<usize>> {
    let chunk = chunk.max(1);
    let mut skip = vec![false; n];
    for &row in timed {
        skip[row] = true;
    }
    let mut chunks = Vec::new();
    let mut row = 0;
    while row < n {
        if skip[row] {
            row += 1;
            continue;
        }
        let start = row;
        while row < n && !skip[row] && row - start < chunk {
            row += 1;
        }
        chunks.push(start..row);
    }
    chunks
}

/// The chunks one thread predicted: each chunk's index and its answers.
type Done<T> = Vec<(usize, Vec<T>)>;

/// Runs `predict` over each of `chunks` on `workers` threads (at least one) that each take the
/// next chunk when they finish one; the first thread runs `first` before it starts. The results
/// in order. Stops at the first error.
fn in_chunks<T: Send>(
    chunks: &[Range<usize>],
    workers: usize,
    first: &(dyn Fn() + Sync),
    predict: &(dyn Fn(Range<usize>) -> Result<Vec<T>, model::ModelError> + Sync),
) -> Result<Vec<T>, model::ModelError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let (next, count) = (AtomicUsize::new(0), chunks.len());
    let failed = AtomicBool::new(false);
    let work = |worker: usize| {
        if worker == 0 {
            first();
        }
        let mut done = Vec::new();
        while !failed.load(Relaxed) {
            let i = next.fetch_add(1, Relaxed);
            if i >= count {
                break;
            }
            match predict(chunks[i].clone()) {
                Ok(out) => done.push((i, out)),
                Err(e) => {
                    failed.store(true, Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(done)
    };
    let per_worker: Vec<Result<Done<T>, model::ModelError>> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..workers.clamp(1, count.max(1))).map(|w| scope.spawn(move || work(w))).collect();
        running
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(model::ModelError::Inference { detail: "a prediction thread panicked".into() })
                })
            })
            .collect()
    });
    let mut parts = Vec::with_capacity(count);
    for done in per_worker {
        parts.extend(done?);
    }
    parts.sort_unstable_by_key(|(i, _)| *i);
    Ok(parts.into_iter().flat_map(|(_, out)| out).collect())
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

/// What the single-row loop saw: each timed row's answer and time, up to the row whose
/// prediction failed, if one did.
#[derive(Default)]
struct Timed {
    answers: Vec<(usize, String)>,
    times_ms: Vec<f64>,
    /// The row whose prediction failed, and why.
    failed: Option<(usize, String)>,
}

/// Times a single-row prediction of each of `rows`, after five untimed ones.
fn time_rows(model: &Model, data: &Dataset, rows: &[usize]) -> Timed {
    for i in 0..5.min(data.len()) {
        let _ = model.predict(data.batch(i..i + 1));
    }
    let mut timed = Timed { times_ms: Vec::with_capacity(rows.len()), ..Timed::default() };
    for &row in rows {
        let start = Instant::now();
        let prediction = match model.predict(data.batch(row..row + 1)) {
            Ok(prediction) => prediction,
            Err(e) => {
                timed.failed = Some((row, e.to_string()));
                break;
            }
        };
        timed.times_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        timed.answers.extend(prediction.labels.into_iter().next().map(|label| (row, label)));
    }
    timed
}

/// The latency check, from what the single-row loop saw. A loop that timed nothing fails it.
fn judge_latency(report: &mut ValidationReport, timed: &Timed) {
    let times = &timed.times_ms;
    if timed.failed.is_some() || times.is_empty() {
        report.checks.insert("latency_acceptable".into(), false);
        let why = match &timed.failed {
            Some((row, e)) => format!("a single-row prediction failed (row {row}: {e})"),
            None => "no single-row prediction was timed".to_string(),
        };
        report.errors.push(format!("{why}; latency not measured"));
        return;
    }
    let latency = Latency::of(times);
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
    sessions: usize,
) {
    let mut regression =
        Regression { production_model: artifact(prod), production_accuracy: None, accuracy_drop: None };
    let prod_accuracy = Model::load(runtime, prod, sessions)
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

#[cfg(test)]
mod tests {
    use super::{in_chunks, latency_rows, untimed_chunks};

    #[test]
    fn every_row_is_predicted_once_and_answers_come_back_in_order() {
        for n in [0, 1, 7, 255, 256, 257, 1000, 10_201] {
            for chunk in [0, 1, 3, 16, 256] {
                for samples in [0, 100, 200] {
                    let timed = latency_rows(n, samples);
                    let chunks = untimed_chunks(n, chunk, &timed);
                    for workers in [0, 1, 2, 3, 8] {
                        let calls = std::sync::Mutex::new(Vec::new());
                        let got = in_chunks(&chunks, workers, &|| {}, &|rows| {
                            assert!(!rows.is_empty() && rows.len() <= chunk.max(1), "{rows:?}");
                            calls.lock().unwrap().push(rows.clone());
                            Ok(rows.collect())
                        })
                        .unwrap();
                        // Every row either in one chunk, in order, or timed; none both.
                        let mut all: Vec<usize> = got.iter().copied().chain(timed.iter().copied()).collect();
                        all.sort_unstable();
                        all.dedup();
                        assert_eq!(all, (0..n).collect::<Vec<_>>(), "{n} {chunk} {samples} {workers}");
                        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, once each");
                        assert!(got.iter().all(|r| !timed.contains(r)), "a timed row was batched too");
                        assert_eq!(calls.into_inner().unwrap().len(), chunks.len());
                    }
                }
            }
        }
    }

    #[test]
    fn the_first_job_runs_once_whatever_the_chunks() {
        for (n, workers) in [(0, 1), (0, 4), (10, 1), (1000, 3)] {
            let runs = std::sync::atomic::AtomicUsize::new(0);
            let first = || {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            };
            let got = in_chunks(&untimed_chunks(n, 16, &[]), workers, &first, &|rows| Ok(rows.collect())).unwrap();
            assert_eq!((got.len(), runs.into_inner()), (n, 1), "{n} rows on {workers} workers");
        }
    }

    #[test]
    fn timed_rows_are_spread_over_the_holdout() {
        let rows = latency_rows(10_000, 200);
        assert_eq!(rows.len(), 200);
        assert!(rows.iter().any(|r| *r < 1_000) && rows.iter().any(|r| *r > 9_000), "{rows:?}");
        assert_eq!(latency_rows(3, 100).len(), 100, "a small holdout is timed as often, rows repeated");
    }

    #[test]
    fn the_first_error_stops_the_run() {
        let chunks = untimed_chunks(1000, 10, &[]);
        let err = in_chunks(&chunks, 2, &|| {}, &|rows| match rows.start {
            500 => Err(model::ModelError::Inference { detail: "boom".into() }),
            _ => Ok(vec![0u8; rows.len()]),
        })
        .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
