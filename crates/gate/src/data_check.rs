//! The data gate before training: columns, empty texts, the label set, class balance,
//! duplicates, and rows shared by train and holdout (leakage). It fails closed and names the
//! offending lines.
//!
//! Two kinds of data: a text column (`text,label`), or a feature table — every column but the
//! label a number. Which one is read off the header (a `text` column means text), and a table
//! is also checked for its schema (the same feature columns in train and holdout, and those
//! `[data] features` declares, if it does), missing and non-finite values, and holdout values
//! outside the range train covers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::validate::{Verdict, artifact};

/// The `schema` of the data-check report.
pub const DATA_REPORT_SCHEMA: &str = "slipway.data-check.v1";

/// How many offending lines a report lists per problem.
const MAX_LISTED: usize = 20;

/// What the data must satisfy. Configured in `slipway.toml` under `[data]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataRules {
    /// The label column's name.
    pub label_column: String,
    /// A text data set's text column (a table without it is a feature table).
    pub text_column: String,
    /// The allowed labels; any other is bad input. Empty: whatever train holds.
    pub labels: Vec<String>,
    /// Every class must hold at least this share of the training rows.
    pub min_class_share: f64,
    /// At most this share of a file's rows may repeat an earlier row's text.
    pub max_duplicate_share: f64,
    /// At most this many holdout texts (or feature rows) may also be in train.
    pub max_leaked_rows: usize,
    /// A feature table's feature columns, in order; empty: whatever train has.
    pub features: Vec<String>,
    /// In each column of a feature table, at most this share of the holdout rows may hold a
    /// value outside the range train covers for that column.
    pub max_out_of_range_share: f64,
}

impl DataRules {
    /// The names of the label and text columns, as validation reads them too.
    pub fn columns(&self) -> crate::Columns {
        crate::Columns { label: self.label_column.clone(), text: self.text_column.clone() }
    }
}

impl Default for DataRules {
    fn default() -> DataRules {
        let columns = crate::Columns::default();
        DataRules {
            label_column: columns.label,
            text_column: columns.text,
            labels: Vec::new(),
            min_class_share: 0.1,
            max_duplicate_share: 0.01,
            max_leaked_rows: 0,
            features: Vec::new(),
            max_out_of_range_share: 0.05,
        }
    }
}

/// One file's summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileSummary {
    /// Path and digest.
    pub file: crate::report::Artifact,
    /// Data rows.
    pub rows: usize,
    /// Rows per label.
    pub classes: BTreeMap<String, usize>,
    /// Lines (1-based, header = 1) whose text is empty.
    pub empty_texts: Vec<u64>,
    /// Lines whose text (or feature row) repeats an earlier line's.
    pub duplicates: Vec<u64>,
    /// A feature table's columns: name, range and missing values. Empty for text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnSummary>,
    /// Lines of a feature table with a missing or non-finite value (empty, `nan`, `inf`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_values: Vec<u64>,
    /// Lines of a feature table with a value that is not a number at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_numbers: Vec<u64>,
}

/// One feature column of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnSummary {
    /// Its header.
    pub name: String,
    /// The smallest finite value (absent when the column has none).
    pub min: Option<f64>,
    /// The largest finite value.
    pub max: Option<f64>,
    /// Rows whose value is missing or not finite.
    pub missing: usize,
}

/// A holdout row whose text (or feature row) is also in train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leak {
    /// Its line in train.
    pub train_line: u64,
    /// Its line in the holdout.
    pub holdout_line: u64,
    /// The start of the text (or of the feature row, as `1.5,2,…`).
    pub text: String,
}

/// The data gate's report, written to `reports/data-check.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    /// [`DATA_REPORT_SCHEMA`].
    pub schema: String,
    /// Whether every check passed.
    pub passed: bool,
    /// Check → passed.
    pub checks: BTreeMap<String, bool>,
    /// What is wrong, with line numbers.
    pub errors: Vec<String>,
    /// The rules applied.
    pub rules: DataRules,
    /// The training file.
    pub train: Option<FileSummary>,
    /// The holdout file.
    pub holdout: Option<FileSummary>,
    /// Holdout rows also in train (the first few).
    pub leaked: Vec<Leak>,
}

struct Rows {
    summary: FileSummary,
    /// Each row's line and what duplicates and leaks are judged on: the text, or the row's
    /// feature values as parsed.
    texts: Vec<(u64, String)>,
    /// A feature table's feature column names; `None` for text.
    features: Option<Vec<String>>,
    /// A feature table's parsed values, per row (non-finite where missing).
    values: Vec<Vec<f64>>,
}

/// Checks `train` and `holdout` against `rules`. Bad input (unreadable file, missing column,
/// no rows, a label outside the allowed set) is [`Verdict::CouldNotRun`]; a failed check is
/// [`Verdict::Failed`].
pub fn check_data(train: &Path, holdout: &Path, rules: &DataRules) -> (DataReport, Verdict) {
    let mut report = DataReport {
        schema: DATA_REPORT_SCHEMA.into(),
        passed: false,
        checks: BTreeMap::new(),
        errors: Vec::new(),
        rules: rules.clone(),
        train: None,
        holdout: None,
        leaked: Vec::new(),
    };
    let ran = run_checks(train, holdout, rules, &mut report);
    let verdict = Verdict::of(ran, &report.checks, &mut report.errors);
    report.passed = verdict == Verdict::Passed;
    (report, verdict)
}

fn run_checks(train: &Path, holdout: &Path, rules: &DataRules, report: &mut DataReport) -> Result<(), String> {
    let t = read(train, rules)?;
    let h = read(holdout, rules)?;
    let allowed: Vec<String> =
        if rules.labels.is_empty() { t.summary.classes.keys().cloned().collect() } else { rules.labels.clone() };
    for (name, rows) in [("train", &t), ("holdout", &h)] {
        if let Some(bad) = rows.summary.classes.keys().find(|l| !allowed.contains(l)) {
            return Err(format!(
                "{name} has the label `{bad}`, which is not one of {allowed:?}; fix the data or `[data] labels` in slipway.toml"
            ));
        }
    }
    let mut check = |name: &str, ok: bool, error: String| {
        report.checks.insert(name.into(), ok);
        if !ok {
            report.errors.push(error);
        }
    };
    match (&t.features, &h.features) {
        (None, None) if !rules.features.is_empty() => {
            let text = &rules.text_column;
            return Err(format!(
                "`[data] features` in slipway.toml lists feature columns, but the data has a `{text}` column; drop `features` or the `{text}` column"
            ));
        }
        (None, None) => {}
        (Some(train_cols), Some(holdout_cols)) => {
            if !rules.features.is_empty() {
                check(
                    "train_schema",
                    train_cols == &rules.features,
                    format!(
                        "train's feature columns are {}; `[data] features` in slipway.toml declares {}",
                        train_cols.join(","),
                        rules.features.join(",")
                    ),
                );
            }
            check(
                "holdout_schema_matches_train",
                holdout_cols == train_cols,
                format!(
                    "holdout's feature columns are {}; train's are {}",
                    holdout_cols.join(","),
                    train_cols.join(",")
                ),
            );
            for (name, rows) in [("train", &t), ("holdout", &h)] {
                let s = &rows.summary;
                check(
                    &format!("{name}_all_numbers"),
                    s.not_numbers.is_empty(),
                    format!(
                        "{name} has {} row(s) with a value that is not a number, lines {}",
                        s.not_numbers.len(),
                        lines(&s.not_numbers)
                    ),
                );
                check(
                    &format!("{name}_no_missing_values"),
                    s.missing_values.is_empty(),
                    format!(
                        "{name} has {} row(s) with a missing or non-finite value, lines {}",
                        s.missing_values.len(),
                        lines(&s.missing_values)
                    ),
                );
            }
            if holdout_cols == train_cols {
                // Per column: a drifted feature shows as its own share, whatever the width.
                for (c, outside) in out_of_range(&t, &h).into_iter().enumerate() {
                    let share = outside.len() as f64 / h.summary.rows as f64;
                    let col = &t.summary.columns[c];
                    if col.min.is_none() {
                        // No finite value in train: the missing-value check has failed already.
                        continue;
                    }
                    check(
                        &format!("holdout_within_train_range[{}]", col.name),
                        share <= rules.max_out_of_range_share,
                        format!(
                            "{:.2}% of holdout rows ({}) hold a `{}` outside train's range {}..{} (max {:.2}%), lines {}",
                            share * 100.0,
                            outside.len(),
                            col.name,
                            col.min.unwrap_or(f64::NAN),
                            col.max.unwrap_or(f64::NAN),
                            rules.max_out_of_range_share * 100.0,
                            lines(&outside)
                        ),
                    );
                }
            }
        }
        _ => {
            return Err(format!(
                "one of train and holdout has a `{}` column and the other does not; both must be text or both a feature table",
                rules.text_column
            ));
        }
    }
    for (name, rows) in [("train", &t), ("holdout", &h)] {
        let s = &rows.summary;
        if rows.features.is_none() {
            check(
                &format!("{name}_no_empty_texts"),
                s.empty_texts.is_empty(),
                format!("{name} has {} empty text(s) at lines {}", s.empty_texts.len(), lines(&s.empty_texts)),
            );
        }
        let share = s.duplicates.len() as f64 / s.rows as f64;
        check(
            &format!("{name}_duplicates_below_threshold"),
            share <= rules.max_duplicate_share,
            format!(
                "{:.2}% of {name} rows repeat an earlier {} (max {:.2}%), lines {}",
                share * 100.0,
                if rows.features.is_some() { "row" } else { "text" },
                rules.max_duplicate_share * 100.0,
                lines(&s.duplicates)
            ),
        );
    }
    for label in &allowed {
        let n = t.summary.classes.get(label).copied().unwrap_or(0);
        let share = n as f64 / t.summary.rows as f64;
        check(
            &format!("class_balance[{label}]"),
            share >= rules.min_class_share,
            format!(
                "`{label}` is {:.2}% of train ({n} rows), below the {:.2}% minimum",
                share * 100.0,
                rules.min_class_share * 100.0
            ),
        );
    }
    let in_train: HashMap<&str, u64> = t.texts.iter().rev().map(|(line, text)| (text.as_str(), *line)).collect();
    let leaks: Vec<Leak> = h
        .texts
        .iter()
        .filter(|(_, text)| !text.is_empty())
        .filter_map(|(line, text)| {
            in_train.get(text.as_str()).map(|tl| Leak {
                train_line: *tl,
                holdout_line: *line,
                text: text.chars().take(80).collect(),
            })
        })
        .collect();
    let leak_lines: Vec<u64> = leaks.iter().map(|l| l.holdout_line).collect();
    check(
        "no_leakage",
        leaks.len() <= rules.max_leaked_rows,
        format!(
            "{} holdout row(s) also appear in train (max {}), holdout lines {}",
            leaks.len(),
            rules.max_leaked_rows,
            lines(&leak_lines)
        ),
    );
    report.leaked = leaks.into_iter().take(MAX_LISTED).collect();
    report.train = Some(t.summary);
    report.holdout = Some(h.summary);
    Ok(())
}

fn read(path: &Path, rules: &DataRules) -> Result<Rows, String> {
    let name = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new().from_path(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let header: Vec<String> =
        reader.headers().map_err(|e| format!("cannot read {name}: {e}"))?.iter().map(str::to_string).collect();
    let col = |c: &str| {
        header
            .iter()
            .position(|h| h == c)
            .ok_or_else(|| format!("{name} has no `{c}` column (columns: {})", header.join(",")))
    };
    let label_col = col(&rules.label_column)?;
    let text_col = header.iter().position(|h| *h == rules.text_column);
    let feature_cols: Vec<usize> = (0..header.len()).filter(|i| *i != label_col).collect();
    if text_col.is_none() && feature_cols.is_empty() {
        let text = &rules.text_column;
        return Err(format!("{name} has no `{text}` column and no feature columns (columns: {})", header.join(",")));
    }
    if let Some(dup) = header.iter().enumerate().find(|(i, h)| header[..*i].contains(h)).map(|(_, h)| h) {
        return Err(format!("{name} has the column `{dup}` twice"));
    }
    let mut summary = FileSummary {
        file: artifact(path),
        rows: 0,
        classes: BTreeMap::new(),
        empty_texts: Vec::new(),
        duplicates: Vec::new(),
        columns: Vec::new(),
        missing_values: Vec::new(),
        not_numbers: Vec::new(),
    };
    let mut texts = Vec::new();
    let mut values = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("cannot read {name}: {e}"))?;
        let line = record.position().map_or(0, |p| p.line());
        let label = record.get(label_col).unwrap_or_default().trim().to_string();
        if label.is_empty() {
            return Err(format!("{name} line {line} has an empty label"));
        }
        summary.rows += 1;
        *summary.classes.entry(label).or_default() += 1;
        let key = match text_col {
            Some(t) => {
                let text = record.get(t).unwrap_or_default().trim().to_string();
                if text.is_empty() {
                    summary.empty_texts.push(line);
                }
                text
            }
            None => {
                let (row, missing, not_number) = parse_row(&record, &feature_cols);
                if missing {
                    summary.missing_values.push(line);
                }
                if not_number {
                    summary.not_numbers.push(line);
                }
                let key = row.iter().map(f64::to_string).collect::<Vec<_>>().join(",");
                values.push(row);
                key
            }
        };
        if !key.is_empty() && seen.insert(key.clone(), line).is_some() {
            summary.duplicates.push(line);
        }
        texts.push((line, key));
    }
    if summary.rows == 0 {
        return Err(format!("{name} has no rows"));
    }
    let features = text_col.is_none().then(|| feature_cols.iter().map(|i| header[*i].clone()).collect::<Vec<_>>());
    if let Some(names) = &features {
        summary.columns = names
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let finite = values.iter().map(|r: &Vec<f64>| r[c]).filter(|x| x.is_finite());
                let (min, max) = finite.fold((None, None), |(lo, hi): (Option<f64>, Option<f64>), x| {
                    (Some(lo.map_or(x, |l| l.min(x))), Some(hi.map_or(x, |h| h.max(x))))
                });
                let missing = values.iter().filter(|r| !r[c].is_finite()).count();
                ColumnSummary { name: name.clone(), min, max, missing }
            })
            .collect();
    }
    Ok(Rows { summary, texts, features, values })
}

/// A feature row's values (NaN where missing or not a number), whether one is missing or not
/// finite, and whether one is not a number at all.
fn parse_row(record: &csv::StringRecord, cols: &[usize]) -> (Vec<f64>, bool, bool) {
    let (mut missing, mut not_number) = (false, false);
    let row = cols
        .iter()
        .map(|&c| {
            let cell = record.get(c).unwrap_or_default().trim();
            let lower = cell.to_ascii_lowercase();
            if cell.is_empty() || matches!(lower.as_str(), "na" | "n/a" | "nan" | "null" | "none") {
                missing = true;
                return f64::NAN;
            }
            match cell.parse::<f64>() {
                Ok(x) if x.is_finite() => x,
                Ok(_) => {
                    missing = true;
                    f64::NAN
                }
                Err(_) => {
                    not_number = true;
                    f64::NAN
                }
            }
        })
        .collect();
    (row, missing, not_number)
}

/// Per feature column, the holdout lines whose finite value lies outside the range train
/// covers for it.
fn out_of_range(train: &Rows, holdout: &Rows) -> Vec<Vec<u64>> {
    train
        .summary
        .columns
        .iter()
        .enumerate()
        .map(|(c, col)| {
            let (lo, hi) = (col.min.unwrap_or(f64::INFINITY), col.max.unwrap_or(f64::NEG_INFINITY));
            holdout
                .values
                .iter()
                .zip(&holdout.texts)
                .filter(|(row, _)| row[c].is_finite() && (row[c] < lo || row[c] > hi))
                .map(|(_, (line, _))| *line)
                .collect()
        })
        .collect()
}

/// `3, 7, 9 and 12 more`.
fn lines(lines: &[u64]) -> String {
    let shown: Vec<String> = lines.iter().take(MAX_LISTED).map(u64::to_string).collect();
    match lines.len().saturating_sub(MAX_LISTED) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

impl DataReport {
    /// A line per check, then the errors, for a terminal or a log.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for (check, ok) in &self.checks {
            s.push_str(&format!("  {}  {check}\n", if *ok { "PASS" } else { "FAIL" }));
        }
        for e in &self.errors {
            s.push_str(&format!("  error: {e}\n"));
        }
        s.push_str(if self.passed { "DATA CHECK PASSED\n" } else { "DATA CHECK FAILED\n" });
        s
    }
}

#[cfg(test)]
mod tests;
