//! `validation_report.json`: the reference script's fields, unchanged, so tools that read its
//! report keep working, followed by everything else Slipway measured.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::metrics::{Classification, Latency};

/// The `schema` field. Bump when a field changes meaning or is removed (adding one is fine).
pub const REPORT_SCHEMA: &str = "slipway.validation-report.v1";

/// Thresholds a model must meet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Minimum accuracy (`--min-accuracy`, default 0.85).
    pub min_accuracy: f64,
    /// Minimum recall of every class (`--min-recall`, default 0.70).
    pub min_recall: f64,
    /// Maximum single-row p99 latency (`--max-latency-ms`, default 100).
    pub max_latency_ms: f64,
    /// Maximum accuracy loss against the production model, when there is one.
    pub max_accuracy_drop: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds { min_accuracy: 0.85, min_recall: 0.70, max_latency_ms: 100.0, max_accuracy_drop: 0.02 }
    }
}

/// A file that was judged or used, by content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// As given.
    pub path: String,
    /// BLAKE3 of its bytes, if it could be read.
    pub blake3: Option<String>,
    /// Its size, if it could be read.
    pub bytes: Option<u64>,
}

/// The comparison with the model in production.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// The production model.
    pub production_model: Artifact,
    /// Its accuracy on the same holdout, if it could be computed.
    pub production_accuracy: Option<f64>,
    /// Production accuracy minus candidate accuracy.
    pub accuracy_drop: Option<f64>,
}

/// The ONNX Runtime that judged the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// e.g. `1.32.0`.
    pub version: String,
    /// The library file.
    pub library: String,
}

/// Where the validation ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `linux`, `macos`, …
    pub os: String,
    /// `x86_64`, `aarch64`, …
    pub arch: String,
    /// Logical CPUs.
    pub cpus: usize,
}

impl Machine {
    /// This machine.
    pub fn current() -> Machine {
        Machine {
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// Whether every check passed.
    pub passed: bool,
    /// Share of holdout rows predicted right (0 if not computed).
    pub accuracy: f64,
    /// `--min-accuracy`.
    pub accuracy_threshold: f64,
    /// Median single-row latency (0 if not measured).
    pub latency_p50_ms: f64,
    /// 99th percentile single-row latency (0 if not measured).
    pub latency_p99_ms: f64,
    /// `--max-latency-ms`.
    pub latency_threshold_ms: f64,
    /// Recall of every class in the holdout.
    pub per_class_recall: BTreeMap<String, f64>,
    /// `--min-recall`.
    pub recall_threshold: f64,
    /// Check name → passed. A check that could not be computed is `false`.
    pub checks: BTreeMap<String, bool>,
    /// Why checks failed or could not run.
    pub errors: Vec<String>,
    /// [`REPORT_SCHEMA`].
    pub schema: String,
    /// The model judged.
    pub model: Artifact,
    /// The holdout.
    pub data: Artifact,
    /// Holdout rows.
    pub rows: usize,
    /// Every threshold in force.
    pub thresholds: Thresholds,
    /// Accuracy, precision / recall / F1 / support per class, confusion matrix.
    pub classification: Option<Classification>,
    /// Single-row latency statistics.
    pub latency: Option<Latency>,
    /// Rows per second when predicting the holdout: every row over the time spent predicting
    /// them (the batches on every session, and the single rows the latency check times).
    pub throughput_rows_per_s: Option<f64>,
    /// Against production, when a production model is known.
    pub regression: Option<Regression>,
    /// The runtime used.
    pub onnxruntime: Option<RuntimeInfo>,
    /// The machine.
    pub machine: Machine,
}

/// One line of the human summary: check, observed value, threshold, sample size.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Passed?
    pub pass: bool,
    /// What was checked.
    pub check: String,
    /// What was seen.
    pub observed: String,
    /// What was required.
    pub threshold: String,
    /// On how many samples.
    pub samples: String,
}

impl ValidationReport {
    /// The summary lines, one per threshold check.
    pub fn lines(&self) -> Vec<Line> {
        let mut out = Vec::new();
        let rows = format!("{} rows", self.rows);
        let check = |name: &str| self.checks.get(name).copied().unwrap_or(false);
        if let Some(c) = &self.classification {
            out.push(Line {
                pass: check("accuracy_above_threshold"),
                check: "accuracy".into(),
                observed: format!("{:.4}", c.accuracy),
                threshold: format!(">= {:.4}", self.thresholds.min_accuracy),
                samples: rows.clone(),
            });
            for (label, recall) in &self.per_class_recall {
                out.push(Line {
                    pass: *recall >= self.thresholds.min_recall,
                    check: format!("recall[{label}]"),
                    observed: format!("{recall:.4}"),
                    threshold: format!(">= {:.4}", self.thresholds.min_recall),
                    samples: format!("{} rows", c.per_class.get(label).map_or(0, |m| m.support)),
                });
            }
        }
        if let Some(l) = &self.latency {
            out.push(Line {
                pass: check("latency_acceptable"),
                check: "latency p99".into(),
                observed: format!("{:.3} ms", l.p99_ms),
                threshold: format!("<= {} ms", self.thresholds.max_latency_ms),
                samples: format!("{} predictions", l.samples),
            });
        }
        if let Some(r) = &self.regression {
            out.push(Line {
                pass: check("no_accuracy_regression"),
                check: "accuracy vs production".into(),
                observed: r.accuracy_drop.map_or("not computed".into(), |d| format!("drop {d:.4}")),
                threshold: format!("<= {:.4}", self.thresholds.max_accuracy_drop),
                samples: rows.clone(),
            });
        }
        out
    }

    /// The summary for a terminal: a PASS/FAIL line per check, errors, and the verdict.
    pub fn summary(&self) -> String {
        let mut s = format!("validation of {} on {} ({} rows)\n", self.model.path, self.data.path, self.rows);
        for l in self.lines() {
            let word = if l.pass { "PASS" } else { "FAIL" };
            let _ = writeln!(s, "  {word}  {:<24} {:>14}  {:<14} ({})", l.check, l.observed, l.threshold, l.samples);
        }
        for e in &self.errors {
            let _ = writeln!(s, "  error: {e}");
        }
        let _ = writeln!(s, "{}", if self.passed { "VALIDATION PASSED" } else { "VALIDATION FAILED" });
        s
    }

    /// The summary as a Markdown table, for `$GITHUB_STEP_SUMMARY`.
    pub fn markdown(&self) -> String {
        let verdict = if self.passed { "passed" } else { "failed" };
        let mut s = format!("### Model validation {verdict}\n\n`{}` on `{}`\n\n", self.model.path, self.data.path);
        s.push_str("| check | result | observed | threshold | samples |\n|---|---|---:|---|---:|\n");
        for l in self.lines() {
            let word = if l.pass { "✅ pass" } else { "❌ fail" };
            let _ = writeln!(s, "| {} | {word} | {} | {} | {} |", l.check, l.observed, l.threshold, l.samples);
        }
        for e in &self.errors {
            let _ = writeln!(s, "\n- {}", e.replace('|', "\\|"));
        }
        s
    }
}
