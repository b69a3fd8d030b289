"""Train Slipway's tabular classifier and export it to ONNX: OUT/model.onnx and OUT/metrics.json.

The model is a scikit-learn pipeline, standard scaling then logistic regression, trained on
DATA/train.csv: every column but ``label`` is a float feature, in file order. It is exported
with skl2onnx and, when DATA/holdout.csv exists (with the same columns), judged by running
the exported model in ONNX Runtime, the library the Rust side serves it with. The model
takes a float32 tensor ``features`` of shape [N, n_features] and gives ``label`` (strings,
the class names) and ``probabilities`` (float32, [N, n_classes], columns in ``classes``
order), without ZipMap; its metadata property ``classes`` holds the JSON list of class names.

Training is deterministic: the same data and parameters give byte-identical files (the graph
is named, doc strings cleared, opset imports sorted, thread pools held to one thread). Both
outputs are written to temporary files and renamed into place, so a failure never leaves a
half-written pair. scikit-learn is imported only once the inputs are checked, so bad input
fails at once.

Usage: python training/train.py --data DATA_DIR --params training/params.toml --out OUT_DIR
Exit codes: 0 trained; 2 could not train (bad input, unwritable output, or a bug), with one
line on stderr naming the file and the problem.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import tomllib
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

EXIT_ERROR = 2
LABEL = "label"
GRAPH_NAME = "slipway_tabular_classifier"
# ai.onnx opset of the exported graph, pinned as the text project pins it.
TARGET_OPSET = 21
FLOAT32_MAX = 3.4028234663852886e38


class TrainError(Exception):
    """Training cannot go on, for a reason the user can fix; the message names the file."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Params:
    """The ``[train]`` table of params.toml; every key is required."""

    C: float  # named as in scikit-learn and params.toml
    max_iter: int
    seed: int


@dataclass(frozen=True)
class Table:
    columns: list[str]  # the feature columns, in file order
    features: list[list[float]]
    labels: list[str]


@contextmanager
def reading(path: Path):
    """Turn the errors of reading path into TrainErrors that name it."""
    try:
        yield
    except FileNotFoundError:
        raise TrainError(path, "file not found") from None
    except UnicodeDecodeError as e:
        raise TrainError(path, f"not valid UTF-8 (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise TrainError(path, f"not valid TOML: {e}") from None
    except csv.Error as e:
        raise TrainError(path, f"not valid CSV: {e}") from None
    except OSError as e:
        raise TrainError(path, e.strerror or str(e)) from None


def load_params(path: Path) -> Params:
    with reading(path), path.open("rb") as f:
        table = tomllib.load(f).get("train")
    if not isinstance(table, dict):
        raise TrainError(path, "missing the [train] table")
    expected = Params.__dataclass_fields__.keys()
    if unknown := sorted(table.keys() - expected):
        raise TrainError(path, f"unknown key(s) in [train]: {', '.join(unknown)}")
    if missing := [k for k in expected if k not in table]:
        raise TrainError(path, f"missing key(s) in [train]: {', '.join(missing)}")
    for key, lowest in (("max_iter", 1), ("seed", 0)):
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise TrainError(path, f"[train] {key} must be an integer >= {lowest}, got {value!r}")
    c = table["C"]
    if isinstance(c, bool) or not isinstance(c, int | float) or not 0 < c < math.inf:
        raise TrainError(path, f"[train] C must be a positive number, got {c!r}")
    return Params(**{**table, "C": float(c)})


def read_table(path: Path) -> Table:
    """Read a CSV of float features and ``label``, refusing anything doubtful."""
    # utf-8-sig: a byte-order mark would otherwise become part of the first column name.
    with reading(path), path.open(encoding="utf-8-sig", newline="") as f:
        return parse_table(path, csv.reader(f))


def parse_table(path: Path, reader) -> Table:
    header = next(reader, None)
    if header is None:
        raise TrainError(path, "file is empty")
    if LABEL not in header:
        raise TrainError(path, f"missing column '{LABEL}' (header has: {', '.join(header)})")
    if len(set(header)) != len(header) or "" in header:
        raise TrainError(path, f"line 1: empty or repeated column names: {', '.join(header)}")
    if len(header) < 2:
        raise TrainError(path, "no feature columns besides 'label'")
    at = header.index(LABEL)
    columns = [c for i, c in enumerate(header) if i != at]
    features, labels = [], []
    for row in reader:
        line = reader.line_num
        if not row:
            continue  # a blank line, as csv.DictReader skips it
        if len(row) != len(header):
            raise TrainError(path, f"line {line}: {len(row)} fields, the header has {len(header)}")
        label = row.pop(at)
        if not label.strip():
            raise TrainError(path, f"line {line}, column '{LABEL}': empty label")
        features.append([parse_cell(path, line, c, v) for c, v in zip(columns, row, strict=True)])
        labels.append(label)
    if not labels:
        raise TrainError(path, "no data rows after the header")
    return Table(columns, features, labels)


def parse_cell(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell.replace("_", "x"))  # float() takes "1_0"; Rust's parse does not
    except ValueError:
        raise TrainError(path, f"line {line}, column '{column}': not a number: {cell!r}") from None
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise TrainError(path, f"line {line}, column '{column}': not a finite float32: {cell!r}")
    return value


def write_atomic(files: dict[Path, bytes]) -> None:
    """Write each file beside its target, then rename them all, so the pair stays matched."""
    temps = {path: path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in files}
    current = next(iter(files))
    try:
        for current, data in files.items():
            with temps[current].open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for current, tmp in temps.items():
            os.replace(tmp, current)
    except OSError as e:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        raise TrainError(current, f"cannot write: {e.strerror or e}") from None


def as_float32(features: list[list[float]]):
    import numpy as np  # float32 for training too: scikit-learn sees what the server feeds

    return np.asarray(features, dtype=np.float32)


def fit_pipeline(params: Params, table: Table):
    """Fit on one thread, so the floats do not depend on the core count; return the pipeline
    and its accuracy on the training data."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    # lbfgs draws no random numbers; the seed keeps a change of solver deterministic.
    clf = LogisticRegression(C=params.C, max_iter=params.max_iter, random_state=params.seed)
    pipeline = Pipeline([("scaler", StandardScaler()), ("clf", clf)])
    features = as_float32(table.features)
    with threadpool_limits(limits=1):
        pipeline.fit(features, table.labels)
        return pipeline, float(pipeline.score(features, table.labels))


def export_onnx(pipeline, n_features: int) -> bytes:
    """Export with skl2onnx, with everything that varies between runs fixed or cleared."""
    from onnx.helper import make_opsetid
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    onx = convert_sklearn(
        pipeline,
        name=GRAPH_NAME,
        initial_types=[("features", FloatTensorType([None, n_features]))],
        options={LogisticRegression: {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    outputs = [o.name for o in onx.graph.output]
    if outputs != ["label", "probabilities"]:
        raise RuntimeError(f"skl2onnx named the outputs {outputs}, not label, probabilities")
    onx.doc_string = onx.graph.doc_string = ""
    for node in onx.graph.node:
        node.doc_string = ""
    # Sorted (set order follows PYTHONHASHSEED) and without the repeats skl2onnx may list.
    imports = sorted({(o.domain, o.version) for o in onx.opset_import})
    del onx.opset_import[:]
    onx.opset_import.extend(make_opsetid(domain, version) for domain, version in imports)
    classes = onx.metadata_props.add()
    classes.key = "classes"  # read by Slipway's server, which reports probabilities by class
    classes.value = json.dumps([str(c) for c in pipeline.classes_])
    return onx.SerializeToString(deterministic=True)


def onnx_predict(model_bytes: bytes, features: list[list[float]]):
    """Labels and probabilities as ONNX Runtime computes them, on one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(["label", "probabilities"], {"features": as_float32(features)})


def run(data_dir: Path, params_path: Path, out_dir: Path) -> str:
    """Check the inputs, train, judge and write everything; return the one-line summary."""
    started = time.monotonic()
    params = load_params(params_path)
    train_path, holdout_path = data_dir / "train.csv", data_dir / "holdout.csv"
    train = read_table(train_path)
    if len(classes := sorted(set(train.labels))) < 2:
        raise TrainError(train_path, f"need at least 2 classes in '{LABEL}', found {classes}")
    holdout = read_table(holdout_path) if holdout_path.exists() else None
    if holdout is not None and holdout.columns != train.columns:
        raise TrainError(holdout_path, f"feature columns differ from {train_path.name}'s")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainError(out_dir, f"cannot create directory: {e.strerror or e}") from None

    pipeline, train_accuracy = fit_pipeline(params, train)
    onnx_bytes = export_onnx(pipeline, len(train.columns))
    metrics = {
        "classes": [str(c) for c in pipeline.classes_],
        "n_features": len(train.columns),
        "params": asdict(params),
        "train_accuracy": round(train_accuracy, 6),
        "train_rows": len(train.labels),
    }
    summary = f"{len(train.labels)} rows x {len(train.columns)} features, classes "
    summary += f"{'/'.join(metrics['classes'])}, train accuracy {train_accuracy:.4f}"
    if holdout is not None:
        labels, _ = onnx_predict(onnx_bytes, holdout.features)
        correct = sum(p == y for p, y in zip(labels, holdout.labels, strict=True))
        accuracy = correct / len(labels)
        metrics |= {"holdout_accuracy_onnx": round(accuracy, 6), "holdout_rows": len(labels)}
        summary += f", holdout accuracy (onnx) {accuracy:.4f} on {len(labels)} rows"

    model_path = out_dir / "model.onnx"
    metrics_bytes = (json.dumps(metrics, sort_keys=True, indent=2) + "\n").encode()
    write_atomic({model_path: onnx_bytes, out_dir / "metrics.json": metrics_bytes})
    elapsed = time.monotonic() - started
    return f"{summary}; wrote {model_path} ({len(onnx_bytes)} bytes) in {elapsed:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train the tabular classifier and export it to ONNX.",
        epilog="exit codes: 0 trained; 2 could not train (bad input, unwritable output, bug)",
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv")
    parser.add_argument("--params", type=Path, required=True, help="params.toml")
    parser.add_argument("--out", type=Path, required=True, help="folder for model.onnx")
    args = parser.parse_args(argv)
    prog = Path(sys.argv[0]).name
    try:
        summary = run(args.data, args.params, args.out)
    except TrainError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        # Exit 1 means "a gate rejected the model" in Slipway; a crash is not that.
        traceback.print_exc()
        print(f"{prog}: internal error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{prog}: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
