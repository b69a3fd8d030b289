"""Tests of train.py and build_test_models.py, run as Slipway runs them: as subprocesses.

Each training subprocess spends about four seconds importing scikit-learn, so the trainings
that several tests share run once per session, two at a time; bad input fails before that
import, so those cases cost milliseconds each.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import train

TRAINING = Path(__file__).resolve().parent.parent
TRAIN_PY = TRAINING / "train.py"
BUILD_TEST_MODELS_PY = TRAINING / "build_test_models.py"
PARAMS_TOML = TRAINING / "params.toml"

FRESH_WORDS = ["wonderful", "brilliant", "superb", "moving", "delightful", "masterful"]
ROTTEN_WORDS = ["dull", "tedious", "awful", "boring", "clumsy", "lifeless"]
FILLER_WORDS = ["the", "film", "story", "cast", "plot", "director", "this", "movie", "is"]


def separable_rows(count: int, seed: int) -> list[tuple[str, str]]:
    """Rows whose label is plain from their words: three sentiment words among filler."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = "fresh" if i % 2 == 0 else "rotten"
        words = rng.sample(FRESH_WORDS if label == "fresh" else ROTTEN_WORDS, 3)
        words += rng.sample(FILLER_WORDS, 4)
        rng.shuffle(words)
        rows.append((" ".join(words).capitalize() + ".", label))
    return rows


def write_csv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_data_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    write_csv(path / "train.csv", ["text", "label"], separable_rows(200, seed=1))
    write_csv(path / "holdout.csv", ["text", "label"], separable_rows(40, seed=2))
    return path


def start(script: Path, *args: object, hash_seed: str = "0") -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    argv = [sys.executable, str(script), *map(str, args)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout.decode(), stderr.decode())


def finish_ok(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    done = finish(proc)
    assert done.returncode == 0, done.stderr
    return done


@dataclass(frozen=True)
class Trained:
    first: Path
    second: Path
    stderr: str


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """The same training twice, at once, under different string hash seeds."""
    root = tmp_path_factory.mktemp("trained")
    data = make_data_dir(root / "data")
    outs = [root / "out1", root / "out2"]
    procs = [
        start(TRAIN_PY, "--data", data, "--params", PARAMS_TOML, "--out", out, hash_seed=seed)
        for out, seed in zip(outs, ["1", "2"], strict=True)
    ]
    results = [finish_ok(p) for p in procs]
    return Trained(outs[0], outs[1], results[0].stderr)


def predict(model_path: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(None, {"text": np.array(texts, dtype=object)[:, None]})
    return label, probabilities


def test_model_predicts_clear_examples(trained):
    texts = ["A wonderful, brilliant and superb film.", "Dull, tedious and awful to sit through."]
    label, probabilities = predict(trained.first / "model.onnx", texts)
    assert list(label) == ["fresh", "rotten"]
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # Columns follow metrics.json's "classes": fresh first.
    assert probabilities[0, 0] > 0.5 > probabilities[1, 0]


def tensor_signature(value: onnx.ValueInfoProto) -> tuple[str, str, list[int | None]]:
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return value.name, onnx.TensorProto.DataType.Name(tensor.elem_type), dims


def test_model_inputs_and_outputs_are_the_agreed_ones(trained):
    graph = onnx.load(trained.first / "model.onnx").graph
    assert [tensor_signature(v) for v in graph.input] == [("text", "STRING", [None, 1])]
    assert [tensor_signature(v) for v in graph.output] == [
        ("label", "STRING", [None]),
        ("probabilities", "FLOAT", [None, 2]),
    ]


def test_model_loads_without_en_us_locale(trained):
    # The locale must be one every machine has; en_US.UTF-8 is missing on Slipway's.
    graph = onnx.load(trained.first / "model.onnx").graph
    (normalizer,) = [n for n in graph.node if n.op_type == "StringNormalizer"]
    locale = {a.name: a.s for a in normalizer.attribute}["locale"]
    assert locale == b"C.UTF-8"


def test_training_is_deterministic(trained):
    for name in ["model.onnx", "metrics.json"]:
        first, second = (trained.first / name).read_bytes(), (trained.second / name).read_bytes()
        assert first == second, f"{name} differs between two identical trainings"


def test_metrics_json(trained):
    text = (trained.first / "metrics.json").read_text()
    metrics = json.loads(text)
    assert text == json.dumps(metrics, sort_keys=True, indent=2) + "\n"
    assert metrics["train_rows"] == 200
    assert metrics["classes"] == ["fresh", "rotten"]
    assert metrics["train_accuracy"] == 1.0
    assert metrics["holdout_accuracy_onnx"] == 1.0
    assert metrics["params"]["max_features"] == 20000
    assert sorted(metrics) == [
        "classes",
        "holdout_accuracy_onnx",
        "params",
        "train_accuracy",
        "train_rows",
    ]


def test_success_prints_one_summary_line(trained):
    lines = trained.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("train.py: 200 rows, classes fresh/rotten")


GOOD_HEADER = "text,label\n"
GOOD_ROWS = "Superb.,fresh\nAwful.,rotten\n"


@pytest.mark.parametrize(
    ("file_name", "content", "problem"),
    [
        ("train.csv", None, "train.csv: file not found"),
        ("train.csv", "", "train.csv: file is empty"),
        ("train.csv", GOOD_HEADER, "train.csv: no data rows after the header"),
        ("train.csv", "review,label\nGood.,fresh\n", "train.csv: missing column 'text'"),
        ("train.csv", "text,stars\nGood.,5\n", "train.csv: missing column 'label'"),
        ("train.csv", GOOD_HEADER + "Good.,fresh\nFine.,fresh\n", "need at least 2 classes"),
        ("train.csv", GOOD_HEADER + GOOD_ROWS + ",fresh\n", "train.csv: line 4: empty text"),
        ("train.csv", GOOD_HEADER + GOOD_ROWS + '"  ",rotten\n', "line 4: empty text"),
        ("train.csv", GOOD_HEADER + GOOD_ROWS + "Fine.,\n", "train.csv: line 4: empty label"),
        ("train.csv", GOOD_HEADER + "Just text\n", "train.csv: line 2: too few fields"),
        ("train.csv", b"text,label\n\xff\xfe,fresh\n", "train.csv: not valid UTF-8"),
        ("holdout.csv", GOOD_HEADER + ",fresh\n", "holdout.csv: line 2: empty text"),
        ("params.toml", "[train]\nC = 1.0\n", "params.toml: missing key(s) in [train]: max_"),
        ("params.toml", "[train\n", "params.toml: not valid TOML"),
    ],
)
def test_bad_input_exits_2_naming_file_and_problem(tmp_path, file_name, content, problem):
    data = tmp_path / "data"
    data.mkdir()
    params = PARAMS_TOML
    if file_name != "train.csv":
        (data / "train.csv").write_text(GOOD_HEADER + GOOD_ROWS)
    if file_name == "params.toml":
        params = tmp_path / "params.toml"
    if content is not None:
        target = params if file_name == "params.toml" else data / file_name
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    done = finish(start(TRAIN_PY, "--data", data, "--params", params, "--out", out))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("train.py: error: "), done.stderr
    assert problem in done.stderr
    assert not (out / "model.onnx").exists()


GOOD_PARAMS = {"C": 1.0, "max_features": 10, "ngram_max": 1, "min_df": 1, "max_iter": 9, "seed": 0}


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({}, None),
        ({"C": 2}, None),
        ({"C": 0}, "[train] C must be a positive number, got 0"),
        ({"C": "1"}, "[train] C must be a positive number, got '1'"),
        ({"max_features": 0}, "[train] max_features must be an integer >= 1, got 0"),
        ({"min_df": 1.5}, "[train] min_df must be an integer >= 1, got 1.5"),
        ({"seed": -1}, "[train] seed must be an integer >= 0, got -1"),
        ({"seed": True}, "[train] seed must be an integer >= 0, got True"),
        ({"max_iter": None}, "missing key(s) in [train]: max_iter"),
        ({"ngram": 2}, "unknown key(s) in [train]: ngram"),
    ],
)
def test_params_are_checked(tmp_path, overrides, problem):
    table = {k: v for k, v in {**GOOD_PARAMS, **overrides}.items() if v is not None}
    path = tmp_path / "params.toml"
    path.write_text("[train]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items()))
    if problem is None:
        assert train.load_params(path) == train.Params(**{**table, "C": float(table["C"])})
    else:
        with pytest.raises(train.TrainError) as raised:
            train.load_params(path)
        assert str(raised.value) == f"{path}: {problem}"


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else str(value)


def test_shipped_params_load():
    params = train.load_params(PARAMS_TOML)
    assert params.seed == 0


def test_build_test_models_both_kinds(tmp_path):
    csv_path = write_csv(tmp_path / "text.csv", ["text", "label"], separable_rows(60, seed=3))
    text_model, features_model = tmp_path / "text.onnx", tmp_path / "features.onnx"
    features_csv = tmp_path / "features.csv"
    procs = [
        start(BUILD_TEST_MODELS_PY, "--kind", "text", "--data", csv_path, "--out", text_model),
        start(
            BUILD_TEST_MODELS_PY,
            *["--kind", "features", "--out", features_model, "--data-out", features_csv],
        ),
    ]
    for proc in procs:
        finish_ok(proc)

    label, _ = predict(text_model, ["Superb and moving.", "Boring and clumsy."])
    assert list(label) == ["fresh", "rotten"]

    graph = onnx.load(features_model).graph
    assert [tensor_signature(v) for v in graph.input] == [("features", "FLOAT", [None, 4])]
    assert [tensor_signature(v) for v in graph.output] == [
        ("label", "STRING", [None]),
        ("probabilities", "FLOAT", [None, 2]),
    ]
    with features_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["f0", "f1", "f2", "f3", "label"]
    features = np.array([[float(r[f"f{i}"]) for i in range(4)] for r in rows], np.float32)
    session = ort.InferenceSession(str(features_model), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(None, {"features": features})
    assert set(label) == {"a", "b"}
    assert probabilities.shape == (len(rows), 2)
    accuracy = np.mean(label == np.array([r["label"] for r in rows]))
    assert 0.8 < accuracy < 1.0  # separable enough to learn, noisy enough to be uncertain
