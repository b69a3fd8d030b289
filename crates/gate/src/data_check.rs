//! The data gate before training: columns, empty texts, the label set, class balance,
//! duplicates, and rows shared by train and holdout (leakage). It fails closed and names the
//! offending lines.

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
    /// The allowed labels; any other is bad input. Empty: whatever train holds.
    pub labels: Vec<String>,
    /// Every class must hold at least this share of the training rows.
    pub min_class_share: f64,
    /// At most this share of a file's rows may repeat an earlier row's text.
    pub max_duplicate_share: f64,
    /// At most this many holdout texts may also be in train.
    pub max_leaked_rows: usize,
}

impl Default for DataRules {
    fn default() -> DataRules {
        DataRules { labels: Vec::new(), min_class_share: 0.1, max_duplicate_share: 0.01, max_leaked_rows: 0 }
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
    /// Lines whose text repeats an earlier line's.
    pub duplicates: Vec<u64>,
}

/// A holdout row whose text is also in train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leak {
    /// Its line in train.
    pub train_line: u64,
    /// Its line in the holdout.
    pub holdout_line: u64,
    /// The start of the text.
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
    texts: Vec<(u64, String)>,
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
    let t = read(train)?;
    let h = read(holdout)?;
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
    for (name, rows) in [("train", &t), ("holdout", &h)] {
        let s = &rows.summary;
        check(
            &format!("{name}_no_empty_texts"),
            s.empty_texts.is_empty(),
            format!("{name} has {} empty text(s) at lines {}", s.empty_texts.len(), lines(&s.empty_texts)),
        );
        let share = s.duplicates.len() as f64 / s.rows as f64;
        check(
            &format!("{name}_duplicates_below_threshold"),
            share <= rules.max_duplicate_share,
            format!(
                "{:.2}% of {name} rows repeat an earlier text (max {:.2}%), lines {}",
                share * 100.0,
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

fn read(path: &Path) -> Result<Rows, String> {
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
    let (text_col, label_col) = (col("text")?, col("label")?);
    let mut summary = FileSummary {
        file: artifact(path),
        rows: 0,
        classes: BTreeMap::new(),
        empty_texts: Vec::new(),
        duplicates: Vec::new(),
    };
    let mut texts = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("cannot read {name}: {e}"))?;
        let line = record.position().map_or(0, |p| p.line());
        let text = record.get(text_col).unwrap_or_default().trim().to_string();
        let label = record.get(label_col).unwrap_or_default().trim().to_string();
        if label.is_empty() {
            return Err(format!("{name} line {line} has an empty label"));
        }
        summary.rows += 1;
        *summary.classes.entry(label).or_default() += 1;
        if text.is_empty() {
            summary.empty_texts.push(line);
        } else if seen.insert(text.clone(), line).is_some() {
            summary.duplicates.push(line);
        }
        texts.push((line, text));
    }
    if summary.rows == 0 {
        return Err(format!("{name} has no rows"));
    }
    Ok(Rows { summary, texts })
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
mod tests {
    use super::*;

    fn files(train: &str, holdout: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (t, h) = (dir.path().join("train.csv"), dir.path().join("holdout.csv"));
        std::fs::write(&t, train).unwrap();
        std::fs::write(&h, holdout).unwrap();
        (dir, t, h)
    }

    fn check(train: &str, holdout: &str, rules: &DataRules) -> (DataReport, Verdict) {
        let (_dir, t, h) = files(train, holdout);
        check_data(&t, &h, rules)
    }

    const TRAIN: &str = "text,label\ngood film,fresh\nbad film,rotten\nfine film,fresh\ndull film,rotten\n";

    #[test]
    fn clean_data_passes() {
        let (report, verdict) = check(TRAIN, "text,label\ngreat,fresh\nawful,rotten\n", &DataRules::default());
        assert_eq!(verdict, Verdict::Passed, "{:?}", report.errors);
        assert_eq!(report.train.unwrap().classes["fresh"], 2);
    }

    #[test]
    fn leakage_duplicates_and_empty_texts_name_their_lines() {
        let holdout = "text,label\ngood film,fresh\n,rotten\nnew,fresh\nnew,fresh\n";
        let (report, verdict) = check(TRAIN, holdout, &DataRules::default());
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(report.leaked, vec![Leak { train_line: 2, holdout_line: 2, text: "good film".into() }]);
        assert!(report.errors.contains(&"holdout has 1 empty text(s) at lines 3".to_string()), "{:?}", report.errors);
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.contains("of holdout rows repeat an earlier text") && e.ends_with("lines 5"))
        );
        assert!(!report.checks["no_leakage"]);
    }

    #[test]
    fn class_balance_is_checked_against_the_allowed_labels() {
        let rules =
            DataRules { labels: vec!["fresh".into(), "rotten".into()], min_class_share: 0.4, ..DataRules::default() };
        let train = "text,label\na,fresh\nb,fresh\nc,fresh\nd,rotten\n";
        let (report, verdict) = check(train, "text,label\nx,fresh\n", &rules);
        assert_eq!(verdict, Verdict::Failed);
        assert!(
            report.errors.iter().any(|e| e.starts_with("`rotten` is 25.00% of train (1 rows)")),
            "{:?}",
            report.errors
        );
    }

    #[test]
    fn bad_input_could_not_run() {
        let rules = DataRules { labels: vec!["fresh".into(), "rotten".into()], ..DataRules::default() };
        let cases = [
            ("text,y\na,b\n", "has no `label` column"),
            ("text,label\n", "has no rows"),
            ("text,label\na,fresh\nb,meh\n", "has the label `meh`"),
            ("", "has no `text` column"),
        ];
        for (train, expect) in cases {
            let (report, verdict) = check(train, "text,label\nx,fresh\n", &rules);
            assert_eq!(verdict, Verdict::CouldNotRun, "{train:?}");
            assert!(report.errors.iter().any(|e| e.contains(expect)), "{train:?}: {:?}", report.errors);
            assert!(!report.passed);
        }
    }
}
