"""Train Slipway's text classifier and export it to ONNX: OUT/model.onnx and OUT/metrics.json.

The model is a scikit-learn pipeline, TF-IDF then logistic regression, trained on
DATA/train.csv (columns ``text`` and ``label``). It is exported with skl2onnx and, when
DATA/holdout.csv exists, judged by running the exported ONNX model in ONNX Runtime: the Rust
side serves that same model with that same library, and its predictions differ from
scikit-learn's on a fraction of a percent of rows (tokenisation), so only the ONNX model's
accuracy counts.

The ONNX model takes a string tensor ``text`` of shape [N, 1] and gives ``label`` (strings,
the class names) and ``probabilities`` (float32, [N, n_classes], columns in ``classes``
order). It is built without ZipMap, and the string normaliser gets the locale ``C.UTF-8``:
skl2onnx's default ``en_US.UTF-8`` is missing on Slipway's machines and the model then fails
to load.

Training is deterministic: the same data and parameters give byte-identical files (model.py
says how). Both outputs are written to a temporary file and renamed into place, so a failure
never leaves a half-written model. Inputs are checked before scikit-learn is even imported,
so bad input fails at once.

Usage: python training/train.py --data DATA_DIR --params training/params.toml --out OUT_DIR
Exit codes: 0 trained; 2 could not train (bad input, unwritable output, or a bug), with one
line on stderr naming the file and the problem.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import tomllib
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

EXIT_ERROR = 2


class TrainError(Exception):
    """Training cannot go on, for a reason the user can fix; the message names the file."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Params:
    """The ``[train]`` table of params.toml; every key is required."""

    C: float  # named as in scikit-learn and params.toml
    max_features: int
    ngram_max: int
    min_df: int
    max_iter: int
    seed: int


@dataclass(frozen=True)
class Examples:
    texts: list[str]
    labels: list[str]


def load_params(path: Path) -> Params:
    try:
        with path.open("rb") as f:
            table = tomllib.load(f).get("train")
    except FileNotFoundError:
        raise TrainError(path, "file not found") from None
    except OSError as e:
        raise TrainError(path, e.strerror or str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise TrainError(path, f"not valid TOML: {e}") from None
    if not isinstance(table, dict):
        raise TrainError(path, "missing the [train] table")
    return params_from_table(path, table)


def params_from_table(path: Path | str, table: dict) -> Params:
    expected = Params.__dataclass_fields__.keys()
    unknown = sorted(table.keys() - expected)
    missing = [k for k in expected if k not in table]
    if unknown:
        raise TrainError(path, f"unknown key(s) in [train]: {', '.join(unknown)}")
    if missing:
        raise TrainError(path, f"missing key(s) in [train]: {', '.join(missing)}")
    for key in ("max_features", "ngram_max", "min_df", "max_iter", "seed"):
        value, lowest = table[key], 0 if key == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise TrainError(path, f"[train] {key} must be an integer >= {lowest}, got {value!r}")
    c = table["C"]
    if isinstance(c, bool) or not isinstance(c, int | float) or not c > 0:
        raise TrainError(path, f"[train] C must be a positive number, got {c!r}")
    return Params(**{**table, "C": float(c)})


def read_examples(path: Path) -> Examples:
    """Read a ``text,label`` CSV, refusing anything that would train a wrong model quietly."""
    try:
        # utf-8-sig: a byte-order mark would otherwise become part of the first column name.
        with path.open(encoding="utf-8-sig", newline="") as f:
            return parse_examples(path, csv.DictReader(f))
    except FileNotFoundError:
        raise TrainError(path, "file not found") from None
    except UnicodeDecodeError as e:
        raise TrainError(path, f"not valid UTF-8 (byte {e.start})") from None
    except csv.Error as e:
        raise TrainError(path, f"not valid CSV: {e}") from None
    except OSError as e:
        raise TrainError(path, e.strerror or str(e)) from None


def parse_examples(path: Path, reader: csv.DictReader) -> Examples:
    if reader.fieldnames is None:
        raise TrainError(path, "file is empty")
    for column in ("text", "label"):
        if column not in reader.fieldnames:
            found = ", ".join(reader.fieldnames)
            raise TrainError(path, f"missing column '{column}' (header has: {found})")
    texts, labels = [], []
    for row in reader:
        text, label = row["text"], row["label"]
        if text is None or label is None:
            raise TrainError(path, f"line {reader.line_num}: too few fields")
        if not text.strip():
            raise TrainError(path, f"line {reader.line_num}: empty text")
        if not label.strip():
            raise TrainError(path, f"line {reader.line_num}: empty label")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise TrainError(path, "no data rows after the header")
    return Examples(texts, labels)


def require_two_classes(path: Path, examples: Examples) -> None:
    classes = sorted(set(examples.labels))
    if len(classes) < 2:
        raise TrainError(path, f"need at least 2 classes in 'label', found {classes}")


def write_atomic(files: dict[Path, bytes]) -> None:
    """Write each file to a temporary file beside it, then rename them all into place.

    Renaming only once every file is written keeps model.onnx and metrics.json a matching
    pair when a write fails (a full disk, say): the old pair stays.
    """
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


def metrics_json(metrics: dict) -> bytes:
    return (json.dumps(metrics, sort_keys=True, indent=2) + "\n").encode()


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainError(path, f"cannot create directory: {e.strerror or e}") from None


def run(data_dir: Path, params_path: Path, out_dir: Path) -> str:
    """Check the inputs, train, judge and write everything; return the one-line summary."""
    started = time.monotonic()
    params = load_params(params_path)
    train_path, holdout_path = data_dir / "train.csv", data_dir / "holdout.csv"
    train = read_examples(train_path)
    require_two_classes(train_path, train)
    holdout = read_examples(holdout_path) if holdout_path.exists() else None
    make_dir(out_dir)

    # Imported only now that the inputs are known to be good: it takes seconds.
    import model

    onnx_bytes, classes, train_accuracy = model.train_text_model(params, train.texts, train.labels)
    metrics = {
        "train_rows": len(train.texts),
        "classes": classes,
        "train_accuracy": round(train_accuracy, 6),
        "params": asdict(params),
    }
    summary = f"{len(train.texts)} rows, classes {'/'.join(classes)}"
    summary += f", train accuracy {train_accuracy:.4f}"
    if holdout is not None:
        holdout_accuracy = model.onnx_text_accuracy(onnx_bytes, holdout.texts, holdout.labels)
        metrics["holdout_accuracy_onnx"] = round(holdout_accuracy, 6)
        summary += f", holdout accuracy (onnx) {holdout_accuracy:.4f} on {len(holdout.texts)} rows"

    model_path = out_dir / "model.onnx"
    write_atomic({model_path: onnx_bytes, out_dir / "metrics.json": metrics_json(metrics)})
    elapsed = time.monotonic() - started
    return f"{summary}; wrote {model_path} ({len(onnx_bytes)} bytes) in {elapsed:.1f} s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the text classifier and export it to ONNX.",
        epilog="exit codes: 0 trained; 2 could not train (bad input, unwritable output, bug)",
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv")
    parser.add_argument("--params", type=Path, required=True, help="params.toml")
    parser.add_argument("--out", type=Path, required=True, help="folder for model.onnx")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
