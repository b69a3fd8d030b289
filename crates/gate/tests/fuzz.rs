//! Property tests of what the gate reads: holdout and training CSVs, for a text model and a
//! features model, and the metrics over any labels. No file may panic the gate; a file it
//! cannot judge gives "could not run", never a pass.

use gate::{DataRules, Dataset, Inputs, Verdict, check_data};
use model::InputKind;
use proptest::prelude::*;

#[path = "../../engine/tests/mutate.rs"]
mod mutate;

const TEXT_CSVS: &[&str] = &[
    "text,label\ngood film,pos\n\"bad, really bad\",neg\n\"she said \"\"no\"\"\",neg\nfine,pos\nok,pos\n",
    "label,text,extra\npos,a,1\nneg,b,2\npos,c,3\nneg,d,4\n",
    "text,label\ncaf\u{e9},pos\n\u{1f600},neg\n",
];

const FEATURE_CSVS: &[&str] = &["f0,f1,label\n1.5,2,a\n-3e2,0.25,b\n4,NaN,a\n", "label,x\n1,0\n0,1e-9\n"];

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_text_csv_is_read_or_refused() {
    mutate::run("gate: text CSV", mutate::inputs(TEXT_CSVS), |bytes| {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "holdout.csv", &bytes);
        let Ok(data) = Dataset::read(&path, &InputKind::Text, &gate::Columns::default()) else { return Ok(false) };
        let Inputs::Texts(texts) = &data.inputs else { panic!("a text model reads texts") };
        prop_assert!(!data.is_empty() && texts.len() == data.len());
        Ok(true)
    });
}

#[test]
fn a_features_csv_is_read_or_refused() {
    mutate::run("gate: features CSV", mutate::inputs(FEATURE_CSVS), |bytes| {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "holdout.csv", &bytes);
        let Ok(data) = Dataset::read(&path, &InputKind::Features { width: None }, &gate::Columns::default()) else {
            return Ok(false);
        };
        let Inputs::Features { columns, rows } = &data.inputs else { panic!("a features model reads rows") };
        prop_assert!(!data.is_empty() && rows.len() == data.len());
        prop_assert!(rows.iter().all(|r| r.len() == columns.len()));
        Ok(true)
    });
}

/// The data gate over two edited files: a verdict every time, "passed" only with every check
/// recorded as passed, anything else with a reason.
#[test]
fn the_data_gate_judges_any_pair_of_files() {
    let files = (mutate::inputs(TEXT_CSVS), mutate::inputs(TEXT_CSVS));
    mutate::run("gate: data gate", files, |(train, holdout)| {
        let dir = tempfile::tempdir().unwrap();
        let (t, h) = (write(dir.path(), "train.csv", &train), write(dir.path(), "holdout.csv", &holdout));
        let rules = DataRules {
            min_class_share: 0.0,
            max_duplicate_share: 1.0,
            max_leaked_rows: usize::MAX,
            ..DataRules::default()
        };
        let (report, verdict) = check_data(&t, &h, &rules);
        prop_assert_eq!(report.passed, verdict == Verdict::Passed);
        if verdict == Verdict::Passed {
            prop_assert!(!report.checks.is_empty() && report.checks.values().all(|ok| *ok));
        } else {
            prop_assert!(!report.errors.is_empty(), "{verdict:?} without a reason");
        }
        Ok(verdict == Verdict::Passed)
    });
}

#[test]
fn metrics_stay_in_range_for_any_labels() {
    mutate::run("gate: metrics", prop::collection::vec((0..5u8, 0..6u8), 1..200), |pairs| {
        let truth: Vec<String> = pairs.iter().map(|(t, _)| format!("c{t}")).collect();
        let predicted: Vec<String> = pairs.iter().map(|(_, p)| format!("c{p}")).collect();
        let m = gate::metrics::classify(&truth, &predicted);
        let right = pairs.iter().filter(|(t, p)| t == p).count();
        prop_assert!((m.accuracy - right as f64 / pairs.len() as f64).abs() < 1e-12);
        for c in m.per_class.values() {
            for x in [c.precision, c.recall, c.f1] {
                prop_assert!((0.0..=1.0).contains(&x), "{c:?}");
            }
        }
        let counted: usize = m.confusion.values().flat_map(|row| row.values()).sum();
        prop_assert_eq!(counted, pairs.len());
        Ok(true)
    });
}
