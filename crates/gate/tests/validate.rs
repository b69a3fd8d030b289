//! `gate::validate` on real models: metrics against scikit-learn, and every bad input.

use std::fs;
use std::path::Path;

use gate::{Thresholds, ValidateOptions, Verdict};

use crate::fixture::{features_model, search, sklearn_metrics, text_model, write_text_data};

fn options(model: &Path, data: &Path) -> ValidateOptions {
    let mut o = ValidateOptions::new(model.to_path_buf(), data.to_path_buf(), search());
    o.thresholds = Thresholds { min_accuracy: 0.5, min_recall: 0.5, max_latency_ms: 1_000.0, max_accuracy_drop: 0.02 };
    o
}

/// Every metric of the report equals scikit-learn's, to the last bit that floats allow.
fn assert_matches_sklearn(report: &gate::ValidationReport, model: &Path, holdout: &Path) {
    let want = sklearn_metrics(model, holdout);
    let c = report.classification.as_ref().expect("metrics were computed");
    let close = |a: f64, b: &serde_json::Value| assert!((a - b.as_f64().unwrap()).abs() < 1e-12, "{a} vs {b}");
    close(c.accuracy, &want["accuracy"]);
    let labels: Vec<String> = serde_json::from_value(want["labels"].clone()).unwrap();
    assert_eq!(c.per_class.keys().cloned().collect::<Vec<_>>(), labels);
    for (i, label) in labels.iter().enumerate() {
        let m = &c.per_class[label];
        close(m.precision, &want["precision"][i]);
        close(m.recall, &want["recall"][i]);
        close(m.f1, &want["f1"][i]);
        assert_eq!(m.support as u64, want["support"][i].as_u64().unwrap());
        for (j, predicted) in labels.iter().enumerate() {
            assert_eq!(
                c.confusion[label][predicted] as u64,
                want["confusion"][i][j].as_u64().unwrap(),
                "confusion[{label}][{predicted}]"
            );
        }
    }
}

#[test]
fn a_text_model_is_judged_exactly_as_scikit_learn_would() {
    let dir = tempfile::tempdir().unwrap();
    let (model, holdout) = text_model(dir.path());
    let (report, verdict) = gate::validate(&options(&model, &holdout));
    assert_eq!(verdict, Verdict::Passed, "{}", report.summary());
    assert_eq!(report.rows, 300);
    assert_matches_sklearn(&report, &model, &holdout);
    let latency = report.latency.as_ref().unwrap();
    assert!(latency.samples >= 100);
    assert!(latency.p50_ms <= latency.p95_ms && latency.p95_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    assert_eq!((report.latency_p50_ms, report.latency_p99_ms), (latency.p50_ms, latency.p99_ms));
    assert!(report.throughput_rows_per_s.unwrap() > 0.0);
    assert_eq!(report.per_class_recall.keys().collect::<Vec<_>>(), ["fresh", "rotten"]);
    assert!(report.onnxruntime.as_ref().unwrap().version.starts_with("1."));
    assert_eq!(report.model.blake3.as_deref(), Some(blake3::hash(&fs::read(&model).unwrap()).to_hex().as_str()));
}

#[test]
fn a_features_model_is_judged_exactly_as_scikit_learn_would() {
    let dir = tempfile::tempdir().unwrap();
    let (model, holdout) = features_model(dir.path());
    let (report, verdict) = gate::validate(&options(&model, &holdout));
    assert_eq!(verdict, Verdict::Passed, "{}", report.summary());
    assert_matches_sklearn(&report, &model, &holdout);
}

#[test]
fn thresholds_fail_closed_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (model, holdout) = text_model(dir.path());
    let mut strict = options(&model, &holdout);
    strict.thresholds.min_accuracy = 0.999;
    strict.thresholds.max_latency_ms = 0.0;
    let (report, verdict) = gate::validate(&strict);
    assert_eq!((verdict, verdict.exit_code(), report.passed), (Verdict::Failed, 1, false));
    assert!(!report.checks["accuracy_above_threshold"]);
    assert!(!report.checks["latency_acceptable"]);
    assert!(report.errors.iter().any(|e| e.contains("below the threshold 99.90%")), "{:?}", report.errors);
    assert!(report.summary().contains("FAIL  accuracy"), "{}", report.summary());
}

#[test]
fn a_label_the_model_never_predicts_has_recall_0_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = text_model(dir.path());
    let holdout = dir.path().join("with-meh.csv");
    write_text_data(&holdout, 50, 3);
    let mut text = fs::read_to_string(&holdout).unwrap();
    text.push_str("an entirely new kind of row,meh\nanother one,meh\n");
    fs::write(&holdout, text).unwrap();
    let (report, verdict) = gate::validate(&options(&model, &holdout));
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(report.per_class_recall["meh"], 0.0);
    assert!(!report.checks["recall_above_threshold"]);
    assert!(report.errors.iter().any(|e| e.starts_with("recall of `meh` is 0.00%")), "{:?}", report.errors);
}

#[test]
fn bad_input_could_not_run_and_still_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (text, holdout) = text_model(dir.path());
    let (features, features_csv) = features_model(dir.path());
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        p
    };
    let model_bytes = fs::read(&text).unwrap();
    let cases: Vec<(std::path::PathBuf, std::path::PathBuf, &str, &str)> = vec![
        (dir.path().join("missing.onnx"), holdout.clone(), "model_loads", "does not exist"),
        (
            write("garbage.onnx", b"this is not a protobuf"),
            holdout.clone(),
            "model_loads",
            "is not a usable ONNX model",
        ),
        (
            write("truncated.onnx", &model_bytes[..model_bytes.len() / 2]),
            holdout.clone(),
            "model_loads",
            "is not a usable ONNX model",
        ),
        (features.clone(), holdout.clone(), "data_loads", "not a number"),
        (text.clone(), features_csv.clone(), "data_loads", "has no `text` column"),
        (text.clone(), write("nolabel.csv", b"text,y\nfine,1\n"), "data_loads", "has no `label` column"),
        (text.clone(), write("empty.csv", b"text,label\n"), "data_loads", "has no rows"),
        (
            features.clone(),
            write("narrow.csv", b"f0,f1,label\n1,2,a\n"),
            "model_predicts",
            "takes 4 features per row; the data has 2",
        ),
    ];
    for (model, data, check, message) in cases {
        let (report, verdict) = gate::validate(&options(&model, &data));
        assert_eq!(
            (verdict, verdict.exit_code()),
            (Verdict::CouldNotRun, 2),
            "{model:?} on {data:?}: {:?}",
            report.errors
        );
        assert!(!report.passed);
        assert_eq!(report.checks.get(check), Some(&false), "{model:?} on {data:?}: {:?}", report.checks);
        assert!(report.errors.iter().any(|e| e.contains(message)), "{model:?} on {data:?}: {:?}", report.errors);
    }
}

#[test]
fn an_accuracy_regression_against_production_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (good, holdout) = text_model(dir.path());
    // A worse candidate: trained on data whose labels are flipped on every third row.
    let small = dir.path().join("noisy.csv");
    write_text_data(&small, 300, 9);
    let noisy: String = fs::read_to_string(&small)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| match (i % 3, l.rsplit_once(',')) {
            (1, Some((text, "fresh"))) => format!("{text},rotten\n"),
            (1, Some((text, "rotten"))) => format!("{text},fresh\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    fs::write(&small, noisy).unwrap();
    let worse = dir.path().join("worse.onnx");
    let (python, script) = (crate::fixture::python(), crate::fixture::root().join("training/build_test_models.py"));
    let sh = xshell::Shell::new().unwrap();
    xshell::cmd!(sh, "{python} {script} --kind text --data {small} --out {worse}")
        .quiet()
        .ignore_stderr()
        .run()
        .unwrap();

    let mut same = options(&good, &holdout);
    same.production_model = Some(good.clone());
    let (report, _) = gate::validate(&same);
    assert!(report.checks["no_accuracy_regression"]);
    assert_eq!(report.regression.as_ref().unwrap().accuracy_drop, Some(0.0));

    let mut regressed = options(&worse, &holdout);
    regressed.thresholds.min_accuracy = 0.0;
    regressed.thresholds.min_recall = 0.0;
    regressed.production_model = Some(good.clone());
    let (report, verdict) = gate::validate(&regressed);
    let drop = report.regression.as_ref().unwrap().accuracy_drop.unwrap();
    assert!(drop > 0.02, "the small model is not worse: drop {drop}");
    assert_eq!((verdict, report.checks["no_accuracy_regression"]), (Verdict::Failed, false));

    let mut missing_prod = options(&good, &holdout);
    missing_prod.production_model = Some(dir.path().join("gone.onnx"));
    let (report, verdict) = gate::validate(&missing_prod);
    assert_eq!((verdict, report.checks["no_accuracy_regression"]), (Verdict::Failed, false), "fails closed");
}
