//! Models and holdouts for the gate's tests, built with the training environment's Python.

use std::path::{Path, PathBuf};

use xshell::cmd;

pub fn root() -> PathBuf {
    manifest_dir().join("../..")
}

/// The training environment's Python.
pub fn python() -> PathBuf {
    let python = root().join(".slipway/train-env/bin/python");
    assert!(
        python.is_file(),
        "the training environment is missing: run `cargo xtask deps` (or `cargo xtask ci`) first"
    );
    python
}

pub fn search() -> model::RuntimeSearch {
    model::RuntimeSearch::new(std::env::var("ORT_DYLIB_PATH").ok().as_deref(), &[root().join(".slipway/train-env")])
}

/// Writes a small, learnable sentiment set: words that mean fresh or rotten, some mixed.
pub fn write_text_data(path: &Path, rows: usize, seed: u64) {
    let good = ["good", "great", "fine", "moving", "funny", "smart"];
    let bad = ["bad", "awful", "dull", "boring", "weak", "silly"];
    let filler = ["film", "plot", "cast", "story", "scene", "ending"];
    let mut rng = seed;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    let mut csv = String::from("text,label\n");
    for i in 0..rows {
        let fresh = i % 2 == 0;
        let (a, b) = if fresh { (good, bad) } else { (bad, good) };
        // One word in ten comes from the other side, so the model is good but not perfect.
        let w: Vec<&str> = (0..4).map(|k| if (next() + k) % 10 == 0 { b[next() % 6] } else { a[next() % 6] }).collect();
        csv.push_str(&format!(
            "the {} {} was {} and {},{}\n",
            filler[next() % 6],
            w[0],
            w[1],
            w[2],
            if fresh { "fresh" } else { "rotten" }
        ));
        let _ = w[3];
    }
    std::fs::write(path, csv).unwrap();
}

/// A text model trained by `training/build_test_models.py`, and a holdout for it.
pub fn text_model(dir: &Path) -> (PathBuf, PathBuf) {
    let (train, holdout, model) = (dir.join("train.csv"), dir.join("holdout.csv"), dir.join("text.onnx"));
    write_text_data(&train, 400, 1);
    write_text_data(&holdout, 300, 2);
    let (python, script) = (python(), root().join("training/build_test_models.py"));
    let sh = xshell::Shell::new().unwrap();
    cmd!(sh, "{python} {script} --kind text --data {train} --out {model}").quiet().ignore_stderr().run().unwrap();
    (model, holdout)
}

/// A model over 4 float features, and its holdout.
pub fn features_model(dir: &Path) -> (PathBuf, PathBuf) {
    let (model, holdout) = (dir.join("features.onnx"), dir.join("features.csv"));
    let (python, script) = (python(), root().join("training/build_test_models.py"));
    let sh = xshell::Shell::new().unwrap();
    cmd!(sh, "{python} {script} --kind features --out {model} --data-out {holdout}")
        .quiet()
        .ignore_stderr()
        .run()
        .unwrap();
    (model, holdout)
}

/// Accuracy, per-class precision / recall / F1 / support and the confusion matrix, computed by
/// scikit-learn on predictions from ONNX Runtime's Python binding: an independent oracle.
pub fn sklearn_metrics(model: &Path, holdout: &Path) -> serde_json::Value {
    const SCRIPT: &str = r#"
import csv, json, sys
import numpy as np
import onnxruntime as ort
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
model, data = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(data, newline="", encoding="utf-8")))
y = [r["label"] for r in rows]
s = ort.InferenceSession(model)
if "text" in rows[0]:
    x = np.array([[r["text"]] for r in rows], dtype=object)
else:
    cols = [c for c in rows[0] if c != "label"]
    x = np.array([[float(r[c]) for c in cols] for r in rows], dtype=np.float32)
pred = [str(p) for p in s.run(None, {s.get_inputs()[0].name: x})[0].tolist()]
labels = sorted(set(y) | set(pred))
p, r, f, n = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
cm = confusion_matrix(y, pred, labels=labels)
print(json.dumps({"accuracy": accuracy_score(y, pred), "labels": labels, "precision": p.tolist(),
    "recall": r.tolist(), "f1": f.tolist(), "support": n.tolist(), "confusion": cm.tolist()}))
"#;
    let python = python();
    let sh = xshell::Shell::new().unwrap();
    let out = cmd!(sh, "{python} -c {SCRIPT} {model} {holdout}").quiet().read().unwrap();
    serde_json::from_str(&out).unwrap()
}

/// This crate's directory, from cargo when the test or bench runs: a binary in a target
/// directory that clones share may have been compiled in another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}
