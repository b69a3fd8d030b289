//! The data gate on small text and feature files: each check passes and fails for its reason.

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
        report.errors.iter().any(|e| e.contains("of holdout rows repeat an earlier text") && e.ends_with("lines 5"))
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
    assert!(report.errors.iter().any(|e| e.starts_with("`rotten` is 25.00% of train (1 rows)")), "{:?}", report.errors);
}

#[test]
fn bad_input_could_not_run() {
    let rules = DataRules { labels: vec!["fresh".into(), "rotten".into()], ..DataRules::default() };
    let cases = [
        ("text,y\na,b\n", "has no `label` column"),
        ("text,label\n", "has no rows"),
        ("text,label\na,fresh\nb,meh\n", "has the label `meh`"),
        ("", "has no `label` column"),
        ("x,label\na,fresh\n", "both must be text or both a feature table"),
    ];
    for (train, expect) in cases {
        let (report, verdict) = check(train, "text,label\nx,fresh\n", &rules);
        assert_eq!(verdict, Verdict::CouldNotRun, "{train:?}");
        assert!(report.errors.iter().any(|e| e.contains(expect)), "{train:?}: {:?}", report.errors);
        assert!(!report.passed);
    }
}

const TABLE: &str = "f0,f1,label\n0.5,1,a\n1.5,2,b\n2.5,3,a\n3.5,4,b\n";

#[test]
fn a_clean_feature_table_passes_with_its_column_ranges() {
    let (report, verdict) = check(TABLE, "f0,f1,label\n1,2.5,a\n2,3.5,b\n", &DataRules::default());
    assert_eq!(verdict, Verdict::Passed, "{:?}", report.errors);
    let train = report.train.unwrap();
    assert_eq!(train.columns[0], ColumnSummary { name: "f0".into(), min: Some(0.5), max: Some(3.5), missing: 0 });
    assert!(report.checks["holdout_schema_matches_train"] && report.checks["holdout_within_train_range[f1]"]);
    assert!(!report.checks.contains_key("train_no_empty_texts"), "no text checks on a table");
}

#[test]
fn a_feature_table_is_checked_for_missing_values_schema_ranges_and_leaks() {
    let train = "f0,f1,label\n0.5,1,a\n1.5,,b\n2.5,nan,a\n3.5,inf,b\n0.5,1,a\n4,x,b\n";
    let holdout = "f1,f0,label\n1,0.5,a\n";
    let (report, verdict) = check(train, holdout, &DataRules::default());
    assert_eq!(verdict, Verdict::Failed);
    let has = |s: &str| report.errors.iter().any(|e| e.contains(s));
    assert!(has("train has 3 row(s) with a missing or non-finite value, lines 3, 4, 5"), "{:?}", report.errors);
    assert!(has("train has 1 row(s) with a value that is not a number, lines 7"), "{:?}", report.errors);
    assert!(has("of train rows repeat an earlier row"), "{:?}", report.errors);
    assert!(has("holdout's feature columns are f1,f0; train's are f0,f1"), "{:?}", report.errors);

    let holdout = "f0,f1,label\n0.5,1,a\n9,2,b\n1,2,a\n";
    let (report, verdict) = check(TABLE, holdout, &DataRules::default());
    assert_eq!(verdict, Verdict::Failed);
    assert!(!report.checks["no_leakage"] && !report.checks["holdout_within_train_range[f0]"], "{:?}", report.checks);
    assert!(report.checks["holdout_within_train_range[f1]"], "{:?}", report.checks);
    assert_eq!(report.leaked[0].text, "0.5,1");
    let range = "33.33% of holdout rows (1) hold a `f0` outside train's range 0.5..3.5 (max 5.00%), lines 3";
    assert!(report.errors.iter().any(|e| e == range), "{:?}", report.errors);
    let lenient = DataRules { max_out_of_range_share: 0.5, max_leaked_rows: 1, ..DataRules::default() };
    assert_eq!(check(TABLE, holdout, &lenient).1, Verdict::Passed);
}

#[test]
fn declared_features_are_the_schema() {
    let rules = DataRules { features: vec!["f0".into(), "f2".into()], ..DataRules::default() };
    let (report, verdict) = check(TABLE, "f0,f1,label\n1,2,a\n", &rules);
    assert_eq!(verdict, Verdict::Failed);
    assert!(report.errors.iter().any(|e| e.contains("`[data] features` in slipway.toml declares f0,f2")));
    let (_, verdict) = check("text,label\na,fresh\n", TABLE, &DataRules::default());
    assert_eq!(verdict, Verdict::CouldNotRun, "text against a table is bad input");
    let (report, verdict) = check("text,label\na,fresh\n", "text,label\nb,fresh\n", &rules);
    assert_eq!(verdict, Verdict::CouldNotRun, "declared features on text data");
    assert!(report.errors.iter().any(|e| e.contains("has a `text` column")), "{:?}", report.errors);
}

#[test]
fn the_label_and_text_columns_are_named_by_the_rules() {
    let rules = DataRules { label_column: "sentiment".into(), text_column: "review".into(), ..DataRules::default() };
    let train = "review,sentiment\ngood film,fresh\nbad film,rotten\nfine film,fresh\ndull film,rotten\n";
    let (report, verdict) = check(train, "review,sentiment\ngreat,fresh\nawful,rotten\n", &rules);
    assert_eq!(verdict, Verdict::Passed, "{:?}", report.errors);
    assert_eq!(report.train.as_ref().unwrap().classes["rotten"], 2);
    assert!(report.train.unwrap().columns.is_empty(), "read as text, not as a feature table");
    // The same files under the default names: no `label` column.
    let (report, verdict) = check(train, "review,sentiment\ngreat,fresh\n", &DataRules::default());
    assert_eq!(verdict, Verdict::CouldNotRun);
    assert!(report.errors.iter().any(|e| e.contains("has no `label` column")), "{:?}", report.errors);
}
